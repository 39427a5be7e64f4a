//! The libcontainer containerizer through a real `agora agent --isolation libcontainer`:
//! a task over its memory limit ends TASK_FAILED with reason "memory limit", a normal task
//! finishes, and every cgroup the agent created is gone afterwards.
//!
//! Needs root and cgroups; skipped without them unless AGORA_REQUIRE_CGROUPS=1 (CI).

mod common;

use agora_actors::*;
use common::*;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(30);
static RESTART_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether this machine can run libcontainer containers; panics under AGORA_REQUIRE_CGROUPS=1.
fn cgroups_usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let why = if !root {
        Some("not root".to_string())
    } else {
        agora_isolation::detect_cgroups().err()
    };
    match why {
        None => true,
        Some(why) if std::env::var("AGORA_REQUIRE_CGROUPS").as_deref() == Ok("1") => {
            panic!("AGORA_REQUIRE_CGROUPS=1 but cgroups are unusable: {why}")
        }
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

fn cluster_with_libcontainer_agent(cgroup_root: &str) -> Cluster {
    cluster_and_agent_args("libcontainer", cgroup_root).0
}

/// The cluster, and the arguments its agent was started with (to start it again).
fn cluster_and_agent_args(isolation: &str, cgroup_root: &str) -> (Cluster, Vec<String>) {
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        master_flags: ["--allocation-interval-ms", "100", "--kill-grace-ms", "500"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    });
    let http = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "agent",
        "--master",
        &c.master_addr,
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--http",
        &http,
        "--work-dir",
        &c.dir.path().join("agent0").display().to_string(),
        "--resources",
        "cpus:2;mem:1024;disk:1000;ports:[31000-31010]",
        "--isolation",
        isolation,
        "--disk-watch-interval-ms",
        "200",
        "--cgroup-root",
        cgroup_root,
        "--usage-report-interval-ms",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let p = spawn(c.dir.path(), "agent0", &args);
    wait_until("agent health", SECS, || {
        http_get::get(&http, "/health").ok()
    });
    c.agents.push((p, http));
    (c, args)
}

/// Terminal updates of `tasks`, in whatever order they come, each acknowledged.
fn wait_terminal(
    fw: &mut RawClient,
    tasks: &[&str],
) -> std::collections::BTreeMap<String, TaskStatus> {
    let fid = fw.fid();
    let mut ended = std::collections::BTreeMap::new();
    while ended.len() < tasks.len() {
        let st = fw.expect("terminal updates", SECS, |m| match m {
            Message::Update { status } => Some(status.clone()),
            _ => None,
        });
        if let (Some(uuid), Some(agent_id)) = (st.uuid, st.agent_id.clone()) {
            fw.send(&Message::Acknowledge {
                framework_id: fid.clone(),
                agent_id,
                task_id: st.task_id.clone(),
                uuid,
            });
        }
        if st.state.is_terminal() && tasks.contains(&st.task_id.as_str()) {
            ended.insert(st.task_id.as_str().to_string(), st);
        }
    }
    ended
}

#[test]
fn memory_hog_fails_with_memory_limit_and_cgroups_are_removed() {
    if !cgroups_usable() {
        return;
    }
    let root = format!("agora-itest-{}", std::process::id());
    let guard = CgroupRootGuard(root.clone());
    let c = cluster_with_libcontainer_agent(&root);
    assert!(
        c.agents[0]
            .0
            .log_text()
            .contains("containerizer: libcontainer"),
        "{}",
        c.logs()
    );
    let mut fw = RawClient::subscribe(&c.master_addr, "isolation-test");
    let offers = fw.next_offers(SECS);
    let o = &offers[0];
    let hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' x); echo survived ${#x}";
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![
                task("hog-1", &o.agent_id, "cpus:0.5;mem:64", hog),
                task(
                    "ok-1",
                    &o.agent_id,
                    "cpus:0.5;mem:64",
                    "test -w /sandbox && ! test -w /usr",
                ),
            ],
        }],
        filters: Filters::default(),
    });
    let ended = wait_terminal(&mut fw, &["hog-1", "ok-1"]);
    let hog = &ended["hog-1"];
    assert_eq!(hog.state, TaskState::Failed, "{hog:?}\n{}", c.logs());
    assert_eq!(hog.reason.as_deref(), Some("memory limit"), "{hog:?}");
    assert_eq!(
        ended["ok-1"].state,
        TaskState::Finished,
        "{:?}",
        ended["ok-1"]
    );
    // Both executors end once their task is over; their containers' cgroups go with them.
    wait_until("containers destroyed", SECS, || {
        guard.dirs().is_empty().then_some(())
    });
    drop(c);
}

#[test]
fn agent_killed_and_restarted_reattaches_and_delivers_the_update_made_while_down() {
    if !cgroups_usable() {
        return;
    }
    let root = format!("agora-rtest-{}", std::process::id());
    let guard = CgroupRootGuard(root.clone());
    let (c, args) = cluster_and_agent_args("libcontainer", &root);
    kill_restart_and_finish(c, args);
    wait_until("container destroyed", SECS, || {
        guard.dirs().is_empty().then_some(())
    });
}

/// The same with the posix containerizer (no cgroups needed).
#[test]
fn posix_agent_killed_and_restarted_reattaches_and_delivers_the_update_made_while_down() {
    let (c, args) = cluster_and_agent_args("posix", "agora-unused");
    kill_restart_and_finish(c, args);
}

/// Runs a 1 s task, kills the agent with SIGKILL right after TASK_RUNNING, starts it again
/// 1.5 s later on the same work dir: the task's TASK_FINISHED (produced while the agent was
/// down) must arrive, through the re-attached executor.
///
/// The restart tests run one at a time so that their timing does not depend on each other.
fn kill_restart_and_finish(mut c: Cluster, args: Vec<String>) {
    let _one_at_a_time = RESTART_TESTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut fw = RawClient::subscribe(&c.master_addr, "recovery-test");
    let offers = fw.next_offers(SECS);
    let o = &offers[0];
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task(
                "survivor-1",
                &o.agent_id,
                "cpus:0.5;mem:64",
                "sleep 1; echo done",
            )],
        }],
        filters: Filters::default(),
    });
    fw.wait_update("survivor-1", TaskState::Running, SECS);
    let first_log = {
        let agent = &mut c.agents[0].0;
        agent.kill9();
        agent.log_text()
    };
    // The task finishes while the agent is down; its executor keeps the update until the
    // agent is back.
    // Down for 1.5 s: the task ends meanwhile, and the command executor keeps its update for up
    // to 5 s after that (its stop bound) while redialling with backoff.
    std::thread::sleep(Duration::from_millis(1500));
    let p = spawn(c.dir.path(), "agent0-restarted", &args);
    c.agents[0].0 = p;
    let st = fw.wait_update("survivor-1", TaskState::Finished, SECS);
    assert_eq!(st.agent_id.as_ref(), Some(&o.agent_id), "{st:?}");
    let log = c.agents[0].0.log_text();
    assert!(
        log.contains("recovering from the checkpoint"),
        "{first_log}\n---\n{log}"
    );
    assert!(log.contains("container reattached"), "{log}");
    wait_until("agent re-registered and task gone", SECS, || {
        let s = c.state();
        let agents = s["agents"].as_array()?;
        (agents.len() == 1 && agents[0]["id"] == o.agent_id.as_str()).then_some(())
    });
}

/// A task writing more into its sandbox than its `disk` is killed: TASK_FAILED, `disk limit`.
#[test]
fn disk_hog_is_killed_with_reason_disk_limit() {
    let with_cgroups = cgroups_usable();
    let root = format!("agora-dtest-{}", std::process::id());
    let guard = CgroupRootGuard(root.clone());
    let isolation = if with_cgroups {
        "libcontainer"
    } else {
        "posix"
    };
    let (c, _) = cluster_and_agent_args(isolation, &root);
    let mut fw = RawClient::subscribe(&c.master_addr, "disk-test");
    let offers = fw.next_offers(SECS);
    let o = &offers[0];
    let hog = "dd if=/dev/zero of=big bs=1M count=8 2>/dev/null; sync; sleep 30";
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task(
                "diskhog-1",
                &o.agent_id,
                "cpus:0.5;mem:64;disk:2",
                hog,
            )],
        }],
        filters: Filters::default(),
    });
    let ended = wait_terminal(&mut fw, &["diskhog-1"]);
    let st = &ended["diskhog-1"];
    assert_eq!(st.state, TaskState::Failed, "{st:?}\n{}", c.logs());
    assert_eq!(st.reason.as_deref(), Some("disk limit"), "{st:?}");
    if with_cgroups {
        wait_until("container destroyed", SECS, || {
            guard.dirs().is_empty().then_some(())
        });
    }
}

/// The checkpoint says another boot id: the host "rebooted" while the agent was down, so its
/// containers cannot have survived. The restarted agent ends their tasks TASK_LOST with
/// reason `agent_rebooted` and removes what is left of the containers.
#[test]
fn a_reboot_seen_in_the_boot_id_ends_the_tasks_lost() {
    let with_cgroups = cgroups_usable();
    let root = format!("agora-btest-{}", std::process::id());
    let guard = CgroupRootGuard(root.clone());
    let isolation = if with_cgroups {
        "libcontainer"
    } else {
        "posix"
    };
    let (mut c, args) = cluster_and_agent_args(isolation, &root);
    let mut fw = RawClient::subscribe(&c.master_addr, "reboot-test");
    let offers = fw.next_offers(SECS);
    let o = &offers[0];
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task(
                "rebooted-1",
                &o.agent_id,
                "cpus:0.5;mem:64",
                "sleep 60",
            )],
        }],
        filters: Filters::default(),
    });
    fw.wait_update("rebooted-1", TaskState::Running, SECS);
    c.note_executors();
    c.agents[0].0.kill9();
    let work_dir = c.dir.path().join("agent0");
    let mut store = agora_agent::checkpoint::CheckpointStore::open(&work_dir).expect("open");
    let mut record = store.load(CLUSTER).expect("load").expect("a checkpoint");
    assert!(!record.containers.is_empty(), "{record:?}");
    record.boot_id = "00000000-fake-boot-id".into();
    store.save(&record).expect("save");
    drop(store);
    c.agents[0].0 = spawn(c.dir.path(), "agent0-after-reboot", &args);
    let st = fw.wait_update("rebooted-1", TaskState::Lost, SECS);
    assert_eq!(st.reason.as_deref(), Some("agent_rebooted"), "{st:?}");
    assert!(
        c.agents[0].0.log_text().contains("boot id changed"),
        "{}",
        c.logs()
    );
    if with_cgroups {
        wait_until("leftover container removed", SECS, || {
            guard.dirs().is_empty().then_some(())
        });
    }
}

fn with_container(mut t: TaskInfo, c: ContainerInfo) -> TaskInfo {
    t.container = Some(c);
    t
}

/// What a task asks of its container: its own network namespace (only loopback, up), a disk
/// IO weight on its cgroup, another user; a user or rootfs that does not exist fails the task
/// with the reason. And the agent's usage reports show up per task in the master's /state.
#[test]
fn container_requests_network_io_weight_and_user_are_honoured() {
    if !cgroups_usable() {
        return;
    }
    let root = format!("agora-ctest-{}", std::process::id());
    let guard = CgroupRootGuard(root.clone());
    let c = cluster_with_libcontainer_agent(&root);
    let mut fw = RawClient::subscribe(&c.master_addr, "container-info-test");
    let offers = fw.next_offers(SECS);
    let a = &offers[0].agent_id;
    let r = "cpus:0.2;mem:64";
    let isolated = ContainerInfo {
        network: NetworkMode::Isolated,
        ..Default::default()
    };
    let net =
        "test $(tail -n +3 /proc/net/dev | wc -l) -eq 1 && grep -q 127.0.0.1 /proc/net/fib_trie";
    let user = |u: &str| ContainerInfo {
        user: Some(u.into()),
        ..Default::default()
    };
    let tasks = vec![
        with_container(task("net-1", a, r, net), isolated),
        task(
            "host-net-1",
            a,
            r,
            "test $(tail -n +3 /proc/net/dev | wc -l) -gt 1",
        ),
        with_container(
            task("io-1", a, r, "sleep 3"),
            ContainerInfo {
                io_weight: Some(300),
                ..Default::default()
            },
        ),
        with_container(
            task("user-1", a, r, "test $(id -u) = 65534"),
            user("nobody"),
        ),
        with_container(task("nouser-1", a, r, "true"), user("no-such-user-x")),
        with_container(
            task("norootfs-1", a, r, "true"),
            ContainerInfo {
                rootfs: Some("/no/such/rootfs".into()),
                ..Default::default()
            },
        ),
    ];
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![offers[0].id.clone()],
        operations: vec![Operation::Launch { tasks }],
        filters: Filters::default(),
    });
    // The IO weight is on the container's blkio (v1) or io (v2) cgroup while it runs.
    let weight = wait_until("io weight applied", SECS, || {
        guard.dirs().into_iter().find_map(|d| {
            [
                "blkio.weight",
                "blkio.bfq.weight",
                "io.weight",
                "io.bfq.weight",
            ]
            .iter()
            .find_map(|f| std::fs::read_to_string(d.join(f)).ok())
            .filter(|w| w.contains("300"))
        })
    });
    assert!(weight.contains("300"), "{weight}");
    // Usage of the running task reaches the master's /state.
    wait_until("usage in the master's /state", SECS, || {
        let s = c.state();
        let t = s["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == "io-1")?
            .clone();
        (t["usage"]["mem_rss_bytes"].as_u64()? > 0).then_some(())
    });
    let ended = wait_terminal(
        &mut fw,
        &[
            "net-1",
            "host-net-1",
            "io-1",
            "user-1",
            "nouser-1",
            "norootfs-1",
        ],
    );
    for ok in ["net-1", "host-net-1", "io-1", "user-1"] {
        assert_eq!(
            ended[ok].state,
            TaskState::Finished,
            "{ok}: {:?}\n{}",
            ended[ok],
            c.logs()
        );
    }
    for (bad, why) in [("nouser-1", "no such user"), ("norootfs-1", "rootfs")] {
        let st = &ended[bad];
        assert_eq!(st.state, TaskState::Failed, "{st:?}");
        assert!(st.message.contains(why), "{bad}: {st:?}");
    }
    drop(c);
}
