//! Framework failover on real processes: a scheduler with a failover timeout disconnects, a new
//! instance with the same framework id takes over (the old one, if still connected, is cut
//! off) and receives its task's updates; after the timeout with no scheduler the framework is
//! torn down and its tasks killed. The master runs with its (single-member) raft registry.

mod common;

use agora_actors::*;
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
