//! Highly available masters on real processes: three `agora master`s with `--peers`, two
//! agents and an `agora run` framework given the list of masters. The leader is killed with
//! SIGKILL, frozen (SIGSTOP) and finally all masters are restarted from their registries.

mod common;

use common::sched_child;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Group {
    dir: tempfile::TempDir,
    /// `--peers` of each master (the same for all unless proxies sit between them).
    peers: Vec<String>,
    /// proxies[i][j]: the proxy master i uses to reach master j (empty without proxies).
    proxies: Vec<Vec<Option<Proxy>>>,
    addrs: Vec<String>,
    https: Vec<String>,
    masters: Vec<Option<Proc>>,
    agents: Vec<(Proc, String)>,
    executor_pids: Vec<i32>,
    /// The agents' own cgroup root (last field: dropped after the processes), so agents
    /// killed with -9 leave nothing under the default root.
    cgroups: CgroupRootGuard,
}

impl Group {
    fn start(n: usize) -> Group {
        Group::start_with(n, false)
    }

    /// With `proxied`, master i reaches master j only through a TCP proxy of its own, so a
    /// test can cut one master off from the others (agents and schedulers still reach it).
    fn start_with(n: usize, proxied: bool) -> Group {
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let https: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let proxies: Vec<Vec<Option<Proxy>>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| (proxied && i != j).then(|| Proxy::start(&addrs[j])))
                    .collect()
            })
            .collect();
        let peers = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| match &proxies[i][j] {
                        Some(p) => format!("{}={}", j + 1, p.addr),
                        None => format!("{}={}", j + 1, addrs[j]),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        let mut g = Group {
            dir: tempfile::tempdir().unwrap(),
            peers,
            proxies,
            addrs,
            https,
            masters: (0..n).map(|_| None).collect(),
            agents: vec![],
            executor_pids: vec![],
            cgroups: CgroupRootGuard::unique(),
        };
        for i in 0..n {
            g.start_master(i);
        }
        g
    }

    fn start_master(&mut self, i: usize) {
        let args: Vec<String> = [
            "master",
            "--id",
            &(i + 1).to_string(),
            "--peers",
            &self.peers[i],
            "--listen",
            &self.addrs[i],
            "--http",
            &self.https[i],
            "--work-dir",
            &self
                .dir
                .path()
                .join(format!("master{}", i + 1))
                .display()
                .to_string(),
            "--agent-ping-interval-ms",
            "300",
            "--allocation-interval-ms",
            "100",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.masters[i] = Some(spawn(self.dir.path(), &format!("master{}", i + 1), &args));
    }

    fn master_list(&self) -> String {
        self.addrs.join(",")
    }

    fn add_agent(&mut self, i: usize) {
        let http = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = vec![
            "agent".into(),
            "--master".into(),
            self.master_list(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--http".into(),
            http.clone(),
            "--work-dir".into(),
            self.dir
                .path()
                .join(format!("agent{i}"))
                .display()
                .to_string(),
            "--resources".into(),
            "cpus:2;mem:1024;disk:1000;ports:[31000-31100]".into(),
            "--cgroup-root".into(),
            self.cgroups.0.clone(),
        ];
        let p = spawn(self.dir.path(), &format!("agent{i}"), &args);
        self.agents.push((p, http));
    }

    /// (index, /state) of the master that says it leads, among those running.
    fn leader(&self) -> Option<(usize, serde_json::Value)> {
        for (i, h) in self.https.iter().enumerate() {
            if self.masters[i].is_none() {
                continue;
            }
            if let Some(s) = get_json(h, "/state") {
                if s["raft_role"] == "leader" {
                    return Some((i, s));
                }
            }
        }
        None
    }

    fn wait_leader(&self, not: Option<usize>) -> (usize, serde_json::Value) {
        wait_until("a leader", Duration::from_secs(20), || {
            self.leader().filter(|(i, _)| Some(*i) != not)
        })
    }

    fn note_executors(&mut self) {
        for (_, http) in &self.agents {
            if let Some(s) = get_json(http, "/state") {
                for e in s["executors"].as_array().cloned().unwrap_or_default() {
                    if let Some(pid) = e["pid"].as_i64() {
                        if !self.executor_pids.contains(&(pid as i32)) {
                            self.executor_pids.push(pid as i32);
                        }
                    }
                }
            }
        }
    }

    /// Cuts (or heals) every link between master i and the others, both directions.
    fn cut_off(&self, i: usize, cut: bool) {
        for (a, row) in self.proxies.iter().enumerate() {
            for (b, p) in row.iter().enumerate() {
                if let Some(p) = p.as_ref().filter(|_| a == i || b == i) {
                    p.set_cut(cut);
                }
            }
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for p in self
            .masters
            .iter()
            .flatten()
            .chain(self.agents.iter().map(|(p, _)| p))
        {
            s.push_str(&format!("--- {}\n{}", p.name, p.log_text()));
        }
        s
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.note_executors();
        for pid in &self.executor_pids {
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A TCP proxy between two masters that a test can cut: while cut, its connections are shut
/// down and new ones closed at once, so no byte passes either way.
struct Proxy {
    addr: String,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: &str) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let p = Proxy {
            addr: l.local_addr().unwrap().to_string(),
            cut: Arc::default(),
            stop: Arc::default(),
            conns: Arc::default(),
        };
        let (cut, stop, conns) = (p.cut.clone(), p.stop.clone(), p.conns.clone());
        let target = target.to_string();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((a, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                if cut.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(b) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = a.set_nonblocking(false);
                let mut list = conns.lock().unwrap();
                for s in [&a, &b] {
                    list.push(s.try_clone().unwrap());
                }
                drop(list);
                pipe(a.try_clone().unwrap(), b.try_clone().unwrap(), cut.clone());
                pipe(b, a, cut.clone());
            }
        });
        p
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for s in self.conns.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set_cut(true);
    }
}

/// Copies `from` to `to` on a thread until either side closes or the proxy is cut.
fn pipe(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cut.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// The contents of every file called `name` under `dir`.
fn collect_files(dir: &std::path::Path, name: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, name, out);
        } else if p.file_name().is_some_and(|f| f == name) {
            out.push(std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
}

fn running_tasks(s: &serde_json::Value) -> usize {
    s["tasks"]
        .as_array()
        .map(|t| t.iter().filter(|t| t["state"] == "TASK_RUNNING").count())
        .unwrap_or(0)
}

#[test]
fn leader_killed_then_frozen_then_all_restarted() {
    let mut g = Group::start(3);
    let (l1, _) = g.wait_leader(None);
    // Standbys name the leader and redirect HTTP to it.
    for i in (0..3).filter(|i| *i != l1) {
        let s = wait_until("standby knows the leader", Duration::from_secs(10), || {
            get_json(&g.https[i], "/state").filter(|s| s["leader"].is_string())
        });
        assert_eq!(s["leader"], g.https[l1].as_str());
        assert_eq!(s["raft_role"], "follower");
        for path in ["/anything", "/weights", "/roles", "/reservations"] {
            let err = http_get::get(&g.https[i], path).unwrap_err().to_string();
            assert!(err.contains("307"), "{path}: {err}");
        }
    }
    // The operator CLI given a standby first reaches the leader's allocator.
    let standby = (0..3).find(|i| *i != l1).unwrap();
    let list = format!("{},{}", g.https[standby], g.https[l1]);
    let (code, out) = run_agora(&["weights", "--master", &list, "set", "ads=2"]);
    assert_eq!(code, 0, "{out}");
    let weights = get_json(&g.https[l1], "/weights").expect("leader /weights");
    assert_eq!(weights["ads"], 2.0, "{weights}");
    g.add_agent(1);
    g.add_agent(2);
    wait_until("agents at the leader", Duration::from_secs(20), || {
        get_json(&g.https[l1], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(2))
    });
    // A framework launching tasks continuously: 15 tasks, 3 at a time, each recording its
    // launch in its executor's sandbox.
    let run = spawn(
        g.dir.path(),
        "run",
        &[
            "run",
            "--master",
            &g.master_list(),
            "--instances",
            "15",
            "--max-in-flight",
            "3",
            "--cpus",
            "0.1",
            "--mem",
            "16",
            "--",
            "echo $AGORA_TASK_ID >> $AGORA_SANDBOX/launches; sleep 2",
        ]
        .map(String::from),
    );
    wait_until("3 running tasks", Duration::from_secs(20), || {
        get_json(&g.https[l1], "/state").filter(|s| running_tasks(s) == 3)
    });
    g.note_executors();

    // 1. kill -9 the leader, three times while tasks launch and end: a new leader each time
    // rebuilds agents and tasks; the killed master comes back as a follower.
    let mut leader = l1;
    for round in 0..3 {
        let t0 = Instant::now();
        g.masters[leader].as_mut().unwrap().kill9();
        g.masters[leader] = None;
        let (next, _) = g.wait_leader(Some(leader));
        let to_leader = t0.elapsed();
        wait_until("agents rebuilt", Duration::from_secs(20), || {
            get_json(&g.https[next], "/state")
                .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(2))
        });
        eprintln!(
            "round {round}: new leader {next} after {to_leader:?}; agents back after {:?}",
            t0.elapsed()
        );
        g.start_master(leader);
        wait_until("killed master follows", Duration::from_secs(20), || {
            get_json(&g.https[leader], "/state").filter(|s| s["leader"] == g.https[next].as_str())
        });
        g.note_executors();
        leader = next;
    }
    let l2 = leader;
    let mut run = run;
    let code = wait_until("agora run to finish", Duration::from_secs(60), || {
        run.child.try_wait().ok().flatten()
    });
    let out = run.log_text();
    // No running task killed or lost, every terminal update received (once: the summary
    // counts each task once, by its terminal state).
    assert_eq!(code.code(), Some(0), "agora run failed:\n{out}");
    assert!(
        out.contains("15 finished, 0 failed, 0 killed, 0 lost"),
        "{out}"
    );
    // No task launched twice: every task wrote one line in its executor's sandbox.
    let mut launches: Vec<String> = vec![];
    collect_files(g.dir.path(), "launches", &mut launches);
    let mut ids: Vec<&str> = launches.iter().flat_map(|t| t.lines()).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(
        (n, ids.len()),
        (15, 15),
        "launch records: {launches:?}\n{out}"
    );

    // 2. Freeze the leader: the others elect another; thawed, the old one stands down and
    // makes no offers.
    let pid = g.masters[l2].as_ref().unwrap().pid();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let l3 = wait_until(
        "a leader while the old one is frozen",
        Duration::from_secs(20),
        || {
            (0..3).filter(|i| *i != l2).find(|i| {
                get_json(&g.https[*i], "/state").is_some_and(|s| s["raft_role"] == "leader")
            })
        },
    );
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let s = wait_until("thawed leader stands down", Duration::from_secs(20), || {
        get_json(&g.https[l2], "/state").filter(|s| s["raft_role"] != "leader")
    });
    assert_eq!(s["offers"].as_array().map(|o| o.len()), Some(0));
    assert_eq!(s["agents"].as_array().map(|a| a.len()), Some(0));

    // 3. Restart every master: the registry comes back from sled.
    wait_until(
        "agents at the third leader",
        Duration::from_secs(20),
        || {
            get_json(&g.https[l3], "/state")
                .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(2))
        },
    );
    for i in 0..3 {
        if let Some(mut p) = g.masters[i].take() {
            p.kill9();
        }
    }
    for i in 0..3 {
        g.start_master(i);
    }
    let (_, s) = g.wait_leader(None);
    assert_eq!(s["raft"]["registry_agents"], 2, "{s}");
    // `agora run` tore its framework down when done: the registry says so too.
    assert_eq!(s["raft"]["registry_frameworks"], 0, "{s}");
}

#[test]
fn a_master_refuses_a_stored_registry_of_another_peer_list() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("m").display().to_string();
    let a = format!("127.0.0.1:{}", free_port());
    let h = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = ["master", "--listen", &a, "--http", &h, "--work-dir", &work]
        .map(String::from)
        .to_vec();
    let mut p = spawn(dir.path(), "m1", &args);
    wait_until("group of one leads", Duration::from_secs(20), || {
        get_json(&h, "/state").filter(|s| s["raft_role"] == "leader")
    });
    p.kill9();
    args.extend(["--peers".to_string(), format!("1={a},2=127.0.0.1:1")]);
    let out = std::process::Command::new(agora_bin())
        .args(&args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text.contains("differs from the one this registry was created with"),
        "{text}"
    );
}

#[test]
fn raft_traffic_only_from_configured_peers() {
    let g = Group::start(1);
    let (l, _) = g.wait_leader(None);
    // A "master" that is not in --peers is refused on hello.
    let hello =
        agora_actors::Hello::new(CLUSTER, agora_actors::NodeKind::Master, "master-9 http=x:1");
    let mut c = RawClient::connect_with(&g.addrs[l], hello);
    let refused = c.expect("refusal", Duration::from_secs(10), |m| match m {
        agora_actors::Message::Error { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(refused, agora_actors::ErrorCode::Forbidden);
    // Raft frames on an agent's connection close it.
    let mut c = RawClient::connect(&g.addrs[l], agora_actors::NodeKind::Agent, CLUSTER);
    c.send(&agora_actors::Message::Raft {
        data: vec![1, 2, 3],
    });
    let refused = c.expect("refusal", Duration::from_secs(10), |m| match m {
        agora_actors::Message::Error {
            code, fatal: true, ..
        } => Some(*code),
        _ => None,
    });
    assert_eq!(refused, agora_actors::ErrorCode::Forbidden);
    assert!(
        get_json(&g.https[l], "/raft").unwrap()["peer_errors"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

#[test]
fn an_agent_that_does_not_come_back_is_dropped_from_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("m").display().to_string();
    let a = format!("127.0.0.1:{}", free_port());
    let h = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "master",
        "--listen",
        &a,
        "--http",
        &h,
        "--work-dir",
        &work,
        "--agent-reregister-timeout-ms",
        "1000",
    ]
    .map(String::from)
    .to_vec();
    let mut m = spawn(dir.path(), "m1", &args);
    let cgroups = CgroupRootGuard::unique();
    let ah = format!("127.0.0.1:{}", free_port());
    let agent_args: Vec<String> = [
        "agent",
        "--cgroup-root",
        &cgroups.0,
        "--master",
        &a,
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--http",
        &ah,
        "--work-dir",
        &dir.path().join("agent").display().to_string(),
        "--resources",
        "cpus:1;mem:256;disk:100;ports:[31000-31010]",
    ]
    .map(String::from)
    .to_vec();
    let mut agent = spawn(dir.path(), "agent", &agent_args);
    wait_until("agent in the registry", Duration::from_secs(20), || {
        get_json(&h, "/raft").filter(|s| s["registry_agents"] == 1)
    });
    agent.kill9();
    m.kill9();
    let _m = spawn(dir.path(), "m1b", &args);
    // Back from sled with the agent, which never returns: dropped after the timeout.
    let t0 = Instant::now();
    wait_until("registry read back", Duration::from_secs(20), || {
        get_json(&h, "/raft").filter(|s| s["raft_role"] == "leader")
    });
    wait_until("agent dropped", Duration::from_secs(20), || {
        get_json(&h, "/raft").filter(|s| s["registry_agents"] == 0)
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "dropped before the timeout"
    );
}

/// Subscribes a raw scheduler at `addr` (retrying while the master is a standby).
fn raw_scheduler(addr: &str) -> RawClient {
    let info = agora_actors::FrameworkInfo {
        failover_timeout_ms: 60_000,
        ..agora_actors::FrameworkInfo::new("cut-off-test")
    };
    RawClient::subscribe_with(addr, info)
}

#[test]
fn a_leader_cut_off_from_the_other_masters_steps_down_and_stops_offering() {
    let mut g = Group::start_with(3, true);
    let (old, _) = g.wait_leader(None);
    g.add_agent(1);
    wait_until("agent at the leader", Duration::from_secs(20), || {
        get_json(&g.https[old], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(1))
    });
    let mut sched = raw_scheduler(&g.addrs[old]);
    assert!(!sched.next_offers(Duration::from_secs(20)).is_empty());

    // Cut it off from both other masters (agents and the scheduler still reach it).
    let t0 = Instant::now();
    g.cut_off(old, true);
    let (new, _) = g.wait_leader(Some(old));
    // It steps down on its own (check-quorum): its scheduler is turned away, no offer after.
    let code = sched.expect("NotLeader", Duration::from_secs(20), |m| match m {
        agora_actors::Message::Error { code, .. } => Some(*code),
        agora_actors::Message::Offers { .. } => None,
        _ => None,
    });
    assert_eq!(code, agora_actors::ErrorCode::NotLeader);
    let stepped = wait_until("old leader steps down", Duration::from_secs(20), || {
        get_json(&g.https[old], "/raft").filter(|s| s["raft_role"] != "leader")
    });
    eprintln!(
        "cut off: new leader {new}, old one {} after {:?}",
        stepped["raft_role"],
        t0.elapsed()
    );
    // While cut off it never leads again and holds no offers, agents or frameworks.
    for _ in 0..10 {
        let s = get_json(&g.https[old], "/state").expect("old leader /state");
        assert_ne!(s["raft_role"], "leader", "{s}");
        assert_eq!(s["offers"].as_array().map(|o| o.len()), Some(0), "{s}");
        assert_eq!(s["agents"].as_array().map(|a| a.len()), Some(0), "{s}");
        assert_eq!(s["frameworks"].as_array().map(|a| a.len()), Some(0), "{s}");
        std::thread::sleep(Duration::from_millis(150));
    }
    // The agent follows the leader of the majority; offers come from there.
    wait_until("agent at the new leader", Duration::from_secs(20), || {
        get_json(&g.https[new], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(1))
    });
    let mut sched = raw_scheduler(&g.addrs[new]);
    assert!(!sched.next_offers(Duration::from_secs(20)).is_empty());
    // Healed, it rejoins as a follower of the new leader.
    g.cut_off(old, false);
    wait_until("healed master follows", Duration::from_secs(20), || {
        get_json(&g.https[old], "/state")
            .filter(|s| s["raft_role"] == "follower" && s["leader"] == g.https[new].as_str())
    });
}

#[test]
fn a_status_update_produced_while_no_master_leads_is_delivered_once() {
    let mut g = Group::start(3);
    let (l, _) = g.wait_leader(None);
    g.add_agent(1);
    wait_until("agent at the leader", Duration::from_secs(20), || {
        get_json(&g.https[l], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(1))
    });
    let mut run = spawn(
        g.dir.path(),
        "run",
        &["run", "--master", &g.master_list(), "--", "sleep 2"].map(String::from),
    );
    wait_until("task running", Duration::from_secs(20), || {
        get_json(&g.https[l], "/state").filter(|s| running_tasks(s) == 1)
    });
    g.note_executors();
    // Two of three masters die: no majority, no leader while the task ends.
    let other = (0..3).find(|i| *i != l).unwrap();
    for i in [l, other] {
        g.masters[i].as_mut().unwrap().kill9();
        g.masters[i] = None;
    }
    let agent_http = g.agents[0].1.clone();
    // The task ends; its terminal update waits at the agent, retried, unacknowledged.
    wait_until("update held by the agent", Duration::from_secs(20), || {
        get_json(&agent_http, "/state").filter(|s| {
            s["pending_updates"].as_u64() >= Some(1) && s.to_string().contains("TASK_FINISHED")
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    // A majority again: the agent retries through the new leader, the scheduler acks it.
    g.start_master(l);
    let code = wait_until("agora run to finish", Duration::from_secs(40), || {
        run.child.try_wait().ok().flatten()
    });
    let out = run.log_text();
    assert_eq!(code.code(), Some(0), "{out}");
    assert_eq!(out.matches("TASK_FINISHED").count(), 1, "{out}");
    wait_until("acknowledged", Duration::from_secs(20), || {
        get_json(&agent_http, "/state").filter(|s| s["pending_updates"] == 0)
    });
}

#[test]
fn two_masters_with_the_same_id_are_refused() {
    let g = Group::start(3);
    let (l, _) = g.wait_leader(None);
    let follower = (0..3).find(|i| *i != l).unwrap();
    // Wait until the real master `follower + 1` has connected to the leader.
    wait_until("peers connected", Duration::from_secs(20), || {
        get_json(&g.https[l], "/raft").filter(|s| {
            s["peers"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["connected"] == true))
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    // A second master claiming that id (another HTTP address) is refused with a clear error.
    let id = follower + 1;
    let hello = agora_actors::Hello::new(
        CLUSTER,
        agora_actors::NodeKind::Master,
        &format!("master-{id} http=127.0.0.1:1"),
    );
    let mut c = RawClient::connect_with(&g.addrs[l], hello);
    let (code, why) = c.expect("refusal", Duration::from_secs(10), |m| match m {
        agora_actors::Message::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    });
    assert_eq!(code, agora_actors::ErrorCode::Forbidden);
    assert!(why.contains(&format!("two masters claim id {id}")), "{why}");
    let raft = get_json(&g.https[l], "/raft").unwrap();
    assert_eq!(raft["duplicate_id_refusals"], 1, "{raft}");
    assert!(raft["last_peer_error"]
        .to_string()
        .contains("two masters claim"));
    let metrics = http_get::get(&g.https[l], "/metrics").unwrap();
    assert!(
        metrics.contains("agora_master_raft_duplicate_id_refusals_total 1"),
        "{metrics}"
    );
    assert!(g.masters[l]
        .as_ref()
        .unwrap()
        .log_text()
        .contains("two masters claim id"));
    // The real one keeps its place: the group still has a leader and all peers.
    g.wait_leader(None);
    // And a master started with an id whose --peers address is not its --listen refuses to
    // start (the usual way two masters end up with one id).
    let out = std::process::Command::new(agora_bin())
        .args([
            "master",
            "--id",
            &id.to_string(),
            "--peers",
            &g.peers[0],
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--http",
            &format!("127.0.0.1:{}", free_port()),
            "--work-dir",
            &g.dir.path().join("impostor").display().to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text.contains("is not this master's address in --peers"),
        "{text}"
    );
}

/// Runs `agora master ARGS` expecting it to refuse to start; returns its stderr.
fn refused_start(args: &[String]) -> String {
    let out = std::process::Command::new(agora_bin())
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn a_registry_of_another_cluster_or_a_damaged_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("m").display().to_string();
    let a = format!("127.0.0.1:{}", free_port());
    let h = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = ["master", "--listen", &a, "--http", &h, "--work-dir", &work]
        .map(String::from)
        .to_vec();
    let mut p = spawn(dir.path(), "m1", &args);
    wait_until("group of one leads", Duration::from_secs(20), || {
        get_json(&h, "/raft").filter(|s| s["raft_role"] == "leader")
    });
    p.kill9();
    // Another cluster's directory.
    let mut other = args.clone();
    other.extend(["--cluster".to_string(), "elsewhere".to_string()]);
    let text = refused_start(&other);
    assert!(text.contains("belongs to cluster"), "{text}");
    // Another master id's directory.
    let mut other = args.clone();
    other.extend(["--id".to_string(), "2".to_string()]);
    let text = refused_start(&other);
    assert!(text.contains("belongs to master id"), "{text}");
    // A damaged log: every sled file cut to half its size.
    let reg = dir.path().join("m").join("registry");
    let mut cut = 0;
    for e in walk(&reg) {
        let len = std::fs::metadata(&e).unwrap().len();
        if len > 0 {
            let f = std::fs::OpenOptions::new().write(true).open(&e).unwrap();
            f.set_len(len / 2).unwrap();
            cut += 1;
        }
    }
    assert!(cut > 0);
    let text = refused_start(&args);
    assert!(text.contains("registry"), "{text}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Subscribes a raw scheduler `name` at master `m` and runs task `long-1` (`sleep 600`) on the
/// agent of its first offer, until TASK_RUNNING; returns the scheduler and that agent.
fn launch_long_task(g: &mut Group, m: usize, name: &str) -> (RawClient, agora_actors::AgentId) {
    use agora_actors::{Filters, FrameworkInfo, Message, Operation, TaskState};
    let info = FrameworkInfo {
        failover_timeout_ms: 60_000,
        ..FrameworkInfo::new(name)
    };
    let mut sched = RawClient::subscribe_with(&g.addrs[m], info);
    let offer = sched.next_offers(Duration::from_secs(20)).remove(0);
    sched.send(&Message::Accept {
        framework_id: sched.fid(),
        offer_ids: vec![offer.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task(
                "long-1",
                &offer.agent_id,
                "cpus:0.5;mem:64",
                "sleep 600",
            )],
        }],
        filters: Filters::default(),
    });
    sched.wait_update("long-1", TaskState::Running, Duration::from_secs(30));
    g.note_executors();
    (sched, offer.agent_id)
}

/// Offers seen within `window`, each declined at once with no refusal, so every agent the
/// allocator may offer comes back again and again. Returns the agents offered.
fn offered_agents(sched: &mut RawClient, window: Duration) -> Vec<agora_actors::AgentId> {
    use agora_actors::{Filters, Message};
    let deadline = Instant::now() + window;
    let mut seen = vec![];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(msg) = sched.recv(left) else { break };
        if let Message::Offers { offers } = msg {
            sched.send(&Message::Decline {
                framework_id: sched.fid(),
                offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
                filters: Filters {
                    refuse_seconds: 0.0,
                },
            });
            seen.extend(offers.into_iter().map(|o| o.agent_id));
        }
    }
    seen
}

fn agent_view(s: &serde_json::Value, agent: &str) -> Option<serde_json::Value> {
    s["agents"]
        .as_array()?
        .iter()
        .find(|a| a["id"] == agent)
        .cloned()
}

#[test]
fn a_draining_agent_stays_draining_on_a_new_leader_until_it_is_up() {
    use agora_actors::Message;
    let mut g = Group::start(3);
    let (l, _) = g.wait_leader(None);
    g.add_agent(0);
    g.add_agent(1);
    wait_until("two agents at the leader", Duration::from_secs(20), || {
        get_json(&g.https[l], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(2))
    });
    let (mut sched, drained) = launch_long_task(&mut g, l, "maint-test");

    // Drain it through the CLI, given every master (the first may be a standby).
    let https = g.https.join(",");
    let (code, out) = run_agora(&[
        "maintenance",
        "--master",
        &https,
        "drain",
        drained.as_str(),
        "--start-ms",
        "1900000000000",
        "--duration-ms",
        "3600000",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(drained.as_str()) && out.contains("draining"),
        "{out}"
    );
    // The framework with a task there is told, with the window.
    let start = sched.expect("agent draining", Duration::from_secs(10), |m| match m {
        Message::AgentDraining { agent_id, window } if *agent_id == drained => {
            window.map(|w| w.start_ms)
        }
        _ => None,
    });
    assert_eq!(start, 1_900_000_000_000);
    let s = get_json(&g.https[l], "/state").expect("leader /state");
    assert_eq!(
        agent_view(&s, drained.as_str()).unwrap()["maintenance"],
        "draining",
        "{s}"
    );
    let seen = offered_agents(&mut sched, Duration::from_millis(1500));
    assert!(
        !seen.contains(&drained),
        "a draining agent was offered: {seen:?}"
    );

    // Priority levels go to the registry too.
    let (code, out) = run_agora(&["priorities", "--master", &g.https[l], "set", "prod=5"]);
    assert_eq!(code, 0, "{out}");

    // The leader dies; the new one has the agent draining from its registry.
    g.masters[l].as_mut().unwrap().kill9();
    g.masters[l] = None;
    let (n, _) = g.wait_leader(Some(l));
    wait_until(
        "agents back, still draining",
        Duration::from_secs(30),
        || {
            let s = get_json(&g.https[n], "/state")?;
            let a = agent_view(&s, drained.as_str())?;
            (s["agents"].as_array()?.len() == 2 && a["maintenance"] == "draining").then_some(())
        },
    );
    let (code, out) = run_agora(&["maintenance", "--master", &https, "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v[drained.as_str()]["mode"], "draining", "{v}");
    assert_eq!(
        v[drained.as_str()]["window"]["duration_ms"],
        3_600_000,
        "{v}"
    );
    let roles = get_json(&g.https[n], "/roles").expect("new leader /roles");
    let prod = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "prod");
    assert_eq!(
        prod.map(|r| r["priority"].clone()),
        Some(5.into()),
        "{roles}"
    );
    let mut sched2 = RawClient::subscribe(&g.addrs[n], "after-failover");
    let seen = offered_agents(&mut sched2, Duration::from_millis(2000));
    assert!(!seen.is_empty(), "the other agent is offered");
    assert!(
        !seen.contains(&drained),
        "offered after the failover: {seen:?}"
    );
    // Its task kept running through all of it.
    let s = get_json(&g.https[n], "/state").expect("new leader /state");
    let running = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == "long-1" && t["state"] == "TASK_RUNNING");
    assert!(running, "{s}");

    // Up: offered again.
    let (code, out) = run_agora(&["maintenance", "--master", &https, "up", drained.as_str()]);
    assert_eq!(code, 0, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut back = false;
    while !back && Instant::now() < deadline {
        back = offered_agents(&mut sched2, Duration::from_millis(500)).contains(&drained);
    }
    assert!(back, "the agent was not offered again after up");
    // Bad input is refused with the reason, and changes nothing.
    let (code, out) = run_agora(&["maintenance", "--master", &https, "up", drained.as_str()]);
    assert_ne!(code, 0);
    assert!(out.contains("not in maintenance"), "{out}");
    let (code, out) = run_agora(&["maintenance", "--master", &https, "down", "agent-nobody"]);
    assert_ne!(code, 0);
    assert!(out.contains("unknown agent"), "{out}");
}

#[test]
fn tasks_lost_with_a_removed_agent_stay_lost_under_a_new_leader() {
    use agora_actors::TaskState;
    let mut g = Group::start(3);
    let (l, _) = g.wait_leader(None);
    g.add_agent(0);
    let (mut sched, _agent) = launch_long_task(&mut g, l, "lost-stays-lost");
    // Frozen, the agent misses its health checks: removed, its task reported lost.
    let agent_pid = g.agents[0].0.pid();
    unsafe { libc::kill(agent_pid, libc::SIGSTOP) };
    let st = sched.wait_update("long-1", TaskState::Lost, Duration::from_secs(30));
    assert_eq!(st.reason.as_deref(), Some("agent_removed"), "{st:?}");
    // Once every master applied what the leader committed, the leader dies.
    wait_until("registry replicated", Duration::from_secs(20), || {
        let commit = get_json(&g.https[l], "/raft")?["commit_index"].as_u64()?;
        let all = (0..3).all(|i| {
            get_json(&g.https[i], "/raft")
                .and_then(|r| r["applied_index"].as_u64())
                .is_some_and(|a| a >= commit)
        });
        all.then_some(())
    });
    g.masters[l].as_mut().unwrap().kill9();
    g.masters[l] = None;
    let (n, _) = g.wait_leader(Some(l));
    unsafe { libc::kill(agent_pid, libc::SIGCONT) };
    // The agent re-registers with the new leader, which kills the task instead of adopting
    // it: its framework was told it is gone.
    wait_until("agent at the new leader", Duration::from_secs(30), || {
        get_json(&g.https[n], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(1))
    });
    let pids = g.executor_pids.clone();
    wait_until(
        "the lost task's executor is killed",
        Duration::from_secs(30),
        || {
            pids.iter()
                .all(|p| unsafe { libc::kill(-*p, 0) } != 0)
                .then_some(())
        },
    );
    let s = get_json(&g.https[n], "/state").expect("new leader /state");
    let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
    assert!(
        !tasks.iter().any(|t| t["id"] == "long-1"),
        "adopted again: {s}"
    );
}

#[test]
#[ignore = "the scheduler process of the standby test, started by it; not a test of its own"]
fn scheduler_child_process() {
    sched_child::run_if_asked();
}

/// A standby scheduler follows the leader: both instances (given all three master addresses)
/// move to the new leader after kill -9 of the old one; there the active instance keeps its
/// framework (a new leader gives it time to come back before a standby may take over) and the
/// standby waits again; when the active instance is killed in turn, the standby takes over at
/// the new leader and receives each task's terminal update once.
#[test]
fn a_standby_scheduler_follows_the_leader_and_takes_over_after_it() {
    use sched_child::*;
    let long = Duration::from_secs(40);
    let mut g = Group::start(3);
    let (l1, _) = g.wait_leader(None);
    g.add_agent(1);
    wait_until("agent at the leader", long, || {
        get_json(&g.https[l1], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(1))
    });
    let masters = g.master_list();
    let env = [
        (CHILD_ENV, "active"),
        ("AGORA_TEST_TASKS", "t1,t2"),
        ("AGORA_TEST_CMD", "sleep 20"),
    ];
    let mut active = spawn_scheduler(g.dir.path(), "active", &masters, &env);
    let sub = wait_event(&active, "active subscribed", long, |e| {
        e.starts_with("subscribed ")
    });
    let fid = sub.split(' ').nth(1).expect("framework id").to_string();
    for t in ["t1", "t2"] {
        wait_event(&active, &format!("{t} running"), long, |e| {
            e.starts_with(&format!("update {t} TASK_RUNNING"))
        });
    }
    g.note_executors();
    let env = [(CHILD_ENV, "standby"), ("AGORA_TEST_FID", fid.as_str())];
    let standby = spawn_scheduler(g.dir.path(), "standby", &masters, &env);
    wait_event(&standby, "standing by", long, |e| {
        e.starts_with("standing_by ")
    });

    g.masters[l1].as_mut().unwrap().kill9();
    let (l2, _) = g.wait_leader(Some(l1));
    let count = |p: &Proc, prefix: &str| events(p).iter().filter(|e| e.starts_with(prefix)).count();
    wait_until("both instances at the new leader", long, || {
        let s = get_json(&g.https[l2], "/state")?;
        let f = &s["frameworks"][0];
        (f["active"] == true && f["standby_schedulers"] == 1).then_some(())
    });
    assert_eq!(count(&active, "subscribed "), 2, "re-subscribed once");
    assert_eq!(
        count(&standby, "subscribed "),
        0,
        "the standby did not take over"
    );

    active.kill9();
    wait_event(&standby, "standby takes over", long, |e| {
        e == format!("subscribed {fid} true")
    });
    wait_until("both terminal updates", long, || {
        (terminal_updates(&standby).len() == 2).then_some(())
    });
    for (t, states) in terminal_updates(&standby) {
        assert_eq!(states, ["TASK_FINISHED"], "{t}");
    }
    assert!(terminal_updates(&active).is_empty());
}
