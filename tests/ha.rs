//! Highly available masters on real processes: three `agora master`s with `--peers`, two
//! agents and an `agora run` framework given the list of masters. The leader is killed with
//! SIGKILL, frozen (SIGSTOP) and finally all masters are restarted from their registries.

mod common;

use common::*;
use std::time::{Duration, Instant};

struct Group {
    dir: tempfile::TempDir,
    peers: String,
    addrs: Vec<String>,
    https: Vec<String>,
    masters: Vec<Option<Proc>>,
    agents: Vec<(Proc, String)>,
    executor_pids: Vec<i32>,
}

impl Group {
    fn start(n: usize) -> Group {
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let https: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut g = Group {
            dir: tempfile::tempdir().unwrap(),
            peers,
            addrs,
            https,
            masters: (0..n).map(|_| None).collect(),
            agents: vec![],
            executor_pids: vec![],
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
            &self.peers,
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
        let err = http_get::get(&g.https[i], "/anything")
            .unwrap_err()
            .to_string();
        assert!(err.contains("307"), "{err}");
    }
    g.add_agent(1);
    g.add_agent(2);
    wait_until("agents at the leader", Duration::from_secs(20), || {
        get_json(&g.https[l1], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(2))
    });
    let run = spawn(
        g.dir.path(),
        "run",
        &[
            "run",
            "--master",
            &g.master_list(),
            "--instances",
            "3",
            "--cpus",
            "0.1",
            "--mem",
            "16",
            "--",
            "sleep",
            "6",
        ]
        .map(String::from),
    );
    wait_until("3 running tasks", Duration::from_secs(20), || {
        get_json(&g.https[l1], "/state").filter(|s| running_tasks(s) == 3)
    });
    g.note_executors();

    // 1. kill -9 the leader: a new one takes over and rebuilds agents and tasks.
    let t0 = Instant::now();
    g.masters[l1].as_mut().unwrap().kill9();
    g.masters[l1] = None;
    let (l2, _) = g.wait_leader(Some(l1));
    let to_leader = t0.elapsed();
    wait_until("agents and tasks rebuilt", Duration::from_secs(20), || {
        get_json(&g.https[l2], "/state")
            .filter(|s| s["agents"].as_array().map(|a| a.len()) == Some(2) && running_tasks(s) == 3)
    });
    eprintln!(
        "new leader after {to_leader:?}; soft state rebuilt after {:?}",
        t0.elapsed()
    );
    let mut run = run;
    let code = wait_until("agora run to finish", Duration::from_secs(30), || {
        run.child.try_wait().ok().flatten()
    });
    let out = run.log_text();
    assert_eq!(code.code(), Some(0), "agora run failed:\n{out}");
    assert!(
        out.contains("3 finished, 0 failed, 0 killed, 0 lost"),
        "{out}"
    );

    // The killed master comes back as a follower and catches up.
    g.start_master(l1);
    let s = wait_until("restarted master follows", Duration::from_secs(20), || {
        get_json(&g.https[l1], "/state").filter(|s| s["leader"] == g.https[l2].as_str())
    });
    assert_eq!(s["raft_role"], "follower");

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
    let ah = format!("127.0.0.1:{}", free_port());
    let agent_args: Vec<String> = [
        "agent",
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
