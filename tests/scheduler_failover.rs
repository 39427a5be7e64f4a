//! Framework failover on real processes: a scheduler with a failover timeout disconnects, a new
//! instance with the same framework id takes over (the old one, if still connected, is cut
//! off) and receives its task's updates; after the timeout with no scheduler the framework is
//! torn down and its tasks killed. The master runs with its (single-member) raft registry.

mod common;

use agora_actors::*;
use common::sched_child::{self, *};
use common::*;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(20);

fn subscribe_as(addr: &str, fid: Option<FrameworkId>, failover_timeout_ms: u64) -> RawClient {
    let mut c = RawClient::connect(addr, NodeKind::Scheduler, CLUSTER);
    c.expect("hello", SECS, |m| {
        matches!(m, Message::Hello(_)).then_some(())
    });
    let framework = FrameworkInfo {
        id: fid,
        failover_timeout_ms,
        ..FrameworkInfo::new("failover-test")
    };
    c.send(&Message::Subscribe { framework });
    let id = c.expect("subscribed", SECS, |m| match m {
        Message::Subscribed { framework_id, .. } => Some(framework_id.clone()),
        _ => None,
    });
    c.framework_id = Some(id);
    c
}

#[test]
fn a_new_scheduler_instance_takes_over_then_the_timeout_tears_down() {
    let mut c = Cluster::start(ClusterOpts {
        master_flags: ["--allocation-interval-ms", "100", "--kill-grace-ms", "300"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    // Index 2: agents 0 and 1 come with the cluster (each index is its own work dir).
    c.add_agent(2, "cpus:2;mem:512;disk:100;ports:[31000-31010]", "");
    let mut old = subscribe_as(&c.master_addr, None, 1_500);
    let fid = old.fid();
    wait_until("framework in the registry", SECS, || {
        get_json(&c.master_http, "/raft").filter(|s| s["registry_frameworks"] == 1)
    });
    let o = old.next_offers(SECS).remove(0);
    let launch = |t: &str, cmd: &str| Message::Accept {
        framework_id: fid.clone(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task(t, &o.agent_id, "cpus:0.1;mem:16", cmd)],
        }],
        filters: Filters::default(),
    };
    old.send(&launch("short", "sleep 2"));
    old.wait_update("short", TaskState::Running, SECS);
    c.note_executors();

    // A second instance with the same id takes over while the first is still connected.
    let mut new = subscribe_as(&c.master_addr, Some(fid.clone()), 1_500);
    assert_eq!(new.fid(), fid);
    old.expect("the old instance is cut off", SECS, |m| {
        matches!(m, Message::Error { .. }).then_some(())
    });
    drop(old);
    new.wait_update("short", TaskState::Finished, SECS);

    // The scheduler goes away for longer than its failover timeout: torn down.
    drop(new);
    wait_until("framework torn down", SECS, || {
        let s = c.state();
        s["removed_frameworks"]
            .as_array()?
            .iter()
            .any(|f| f == fid.as_str() || f["id"] == fid.as_str())
            .then_some(())
    });
    // The registry forgets it too.
    wait_until("registry updated", SECS, || {
        get_json(&c.master_http, "/raft").filter(|s| s["registry_frameworks"] == 0)
    });
    // And the id may not come back.
    let mut late = RawClient::connect(&c.master_addr, NodeKind::Scheduler, CLUSTER);
    late.expect("hello", SECS, |m| {
        matches!(m, Message::Hello(_)).then_some(())
    });
    late.send(&Message::Subscribe {
        framework: FrameworkInfo {
            id: Some(fid.clone()),
            ..FrameworkInfo::new("failover-test")
        },
    });
    late.expect("refused", SECS, |m| {
        matches!(m, Message::Error { .. }).then_some(())
    });

    // A framework that is only disconnected (long failover timeout, no tasks anywhere).
    let keeper = subscribe_as(&c.master_addr, None, 600_000).fid();
    wait_until("keeper in the registry", SECS, || {
        get_json(&c.master_http, "/raft").filter(|s| s["registry_frameworks"] == 1)
    });
    // A new leader (the master restarted from its registry) enforces what the registry says:
    // the removed id is refused with a clear error, the admitted one is known before any
    // scheduler or agent tells it.
    restart_master(&mut c);
    wait_until("leader again", SECS, || {
        get_json(&c.master_http, "/raft").filter(|s| s["raft_role"] == "leader")
    });
    let s = wait_until("keeper restored", SECS, || {
        get_json(&c.master_http, "/state").filter(|s| {
            s["frameworks"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["id"] == keeper.as_str()))
        })
    });
    assert!(
        !s["frameworks"].to_string().contains(fid.as_str()),
        "removed framework came back: {s}"
    );
    let mut late = RawClient::connect(&c.master_addr, NodeKind::Scheduler, CLUSTER);
    late.expect("hello", SECS, |m| {
        matches!(m, Message::Hello(_)).then_some(())
    });
    late.send(&Message::Subscribe {
        framework: FrameworkInfo {
            id: Some(fid.clone()),
            ..FrameworkInfo::new("failover-test")
        },
    });
    let why = late.expect("refused by the new leader", SECS, |m| match m {
        Message::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    });
    assert_eq!(why.0, ErrorCode::Forbidden, "{why:?}");
    assert!(why.1.contains("was removed"), "{why:?}");
    // The kept framework's scheduler comes back under its id.
    assert_eq!(
        subscribe_as(&c.master_addr, Some(keeper.clone()), 600_000).fid(),
        keeper
    );
}

/// kill -9 the master and start it again on the same work dir (its registry in sled).
fn restart_master(c: &mut Cluster) {
    c.master.kill9();
    let args: Vec<String> = [
        "master",
        "--listen",
        &c.master_addr,
        "--http",
        &c.master_http,
        "--work-dir",
        &c.dir.path().join("master").display().to_string(),
        "--allocation-interval-ms",
        "100",
    ]
    .map(String::from)
    .to_vec();
    c.master = spawn(c.dir.path(), "master-restarted", &args);
}

// ---- standby scheduler instances (schedulers are child processes: `common::sched_child`) ----

#[test]
#[ignore = "the scheduler process of the standby tests, started by them; not a test of its own"]
fn scheduler_child_process() {
    sched_child::run_if_asked();
}

/// A one-agent cluster and an active scheduler child launching `tasks` (comma-separated) with
/// `command`; returns them with the framework id it subscribed as.
fn cluster_with_active(tasks: &str, command: &str, teardown: &str) -> (Cluster, Proc, String) {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        master_flags: ["--allocation-interval-ms", "100"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    });
    let env = [
        (CHILD_ENV, "active"),
        ("AGORA_TEST_TASKS", tasks),
        ("AGORA_TEST_CMD", command),
        ("AGORA_TEST_TEARDOWN", teardown),
    ];
    let active = spawn_scheduler(c.dir.path(), "active", &c.master_addr, &env);
    let sub = wait_event(&active, "active subscribed", SECS, |e| {
        e.starts_with("subscribed ")
    });
    let fid = sub.split(' ').nth(1).expect("framework id").to_string();
    (c, active, fid)
}

/// A standby scheduler child for framework `fid`, once the master told it to stand by; with
/// the `StandingBy` text.
fn standby_for(c: &Cluster, tasks: &str, fid: &str) -> (Proc, String) {
    let env = [
        (CHILD_ENV, "standby"),
        ("AGORA_TEST_TASKS", tasks),
        ("AGORA_TEST_FID", fid),
    ];
    let standby = spawn_scheduler(c.dir.path(), "standby", &c.master_addr, &env);
    let why = wait_event(&standby, "standby standing by", SECS, |e| {
        e.starts_with("standing_by ")
    });
    (standby, why)
}

#[test]
fn a_standby_scheduler_takes_over_when_the_active_one_is_killed() {
    let tasks = "t1,t2,t3";
    let (c, mut active, fid) = cluster_with_active(tasks, "sleep 6", "0");
    for t in ["t1", "t2", "t3"] {
        wait_event(&active, &format!("{t} running"), SECS, |e| {
            e.starts_with(&format!("update {t} TASK_RUNNING"))
        });
    }
    let (standby, why) = standby_for(&c, tasks, &fid);
    assert!(why.contains("active scheduler"), "{why}");
    let s = c.state();
    assert_eq!(s["frameworks"][0]["standby_schedulers"], 1, "{s}");

    active.kill9();
    let killed_at = std::time::Instant::now();
    wait_event(&standby, "standby takes over", SECS, |e| {
        e == format!("subscribed {fid} true")
    });
    let takeover = killed_at.elapsed();
    assert!(
        takeover < Duration::from_millis(CHILD_FAILOVER_TIMEOUT_MS),
        "{takeover:?}"
    );
    println!(
        "standby took over {} ms after kill -9",
        takeover.as_millis()
    );
    // The tasks were untouched, and each one's terminal update reaches the new instance once.
    wait_until("every task's terminal update", SECS, || {
        (terminal_updates(&standby).len() == 3).then_some(())
    });
    let got = terminal_updates(&standby);
    for (t, states) in &got {
        assert_eq!(states, &["TASK_FINISHED"], "{t}: {states:?}");
    }
    assert!(
        terminal_updates(&active).is_empty(),
        "the tasks outlive the kill"
    );
    assert!(!events(&standby).iter().any(|e| e.starts_with("error")));
    let s = c.state();
    assert_eq!(s["frameworks"][0]["active"], true, "{s}");
    assert_eq!(s["frameworks"][0]["standby_schedulers"], 0, "{s}");
}

#[test]
fn a_standby_never_takes_over_from_a_live_scheduler_and_ends_with_its_framework() {
    let tasks = "t1,t2";
    let (c, mut active, fid) = cluster_with_active(tasks, "sleep 3", "1");
    let (mut standby, _) = standby_for(&c, tasks, &fid);
    // The active instance sees both tasks end, tears the framework down and exits ...
    wait_event(&active, "active exits", SECS, |e| e == "exit 0");
    let got = terminal_updates(&active);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.values().all(|s| s == &["TASK_FINISHED"]), "{got:?}");
    // ... and the standby, which never took over, learns at its next poll that the
    // framework is gone, and stops.
    let why = wait_event(&standby, "standby told", SECS, |e| e.starts_with("error "));
    assert!(
        why.contains("fatal=true") && why.contains("was removed"),
        "{why}"
    );
    wait_event(&standby, "standby exits", SECS, |e| e.starts_with("exit "));
    assert!(
        !events(&standby).iter().any(|e| e.starts_with("subscribed")),
        "{:?}",
        events(&standby)
    );
    assert!(terminal_updates(&standby).is_empty());
    let _ = (active.alive(), standby.alive());
}
