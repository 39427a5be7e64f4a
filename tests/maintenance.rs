//! Maintenance on real processes: an agent taken down loses its tasks (reason
//! `maintenance`), shuts its executors down, is refused while down and comes back when up.
//! (Draining across a master failover is in `tests/ha.rs`.)

mod common;

use agora_actors::{Filters, Message, Operation, TaskState};
use common::*;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(30);

fn alive(pid: i32) -> bool {
    // Signal 0: only checks that the process (group) exists.
    unsafe { libc::kill(-pid, 0) == 0 }
}

#[test]
fn a_down_agent_loses_its_tasks_is_refused_and_comes_back_when_up() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    });
    let mut fw = RawClient::subscribe(&c.master_addr, "down-test");
    let o = fw.next_offers(SECS).remove(0);
    let agent = o.agent_id.clone();
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task("long-1", &agent, "cpus:0.1;mem:32", "sleep 600")],
        }],
        filters: Filters::default(),
    });
    fw.wait_update("long-1", TaskState::Running, SECS);
    c.note_executors();
    assert!(!c.executor_pids.is_empty());

    let (code, out) = c.run_cli(&[
        "maintenance",
        "--master",
        &c.master_http,
        "down",
        agent.as_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("down"), "{out}");
    let st = fw.wait_update("long-1", TaskState::Lost, SECS);
    assert_eq!(st.reason.as_deref(), Some("maintenance"), "{st:?}");
    fw.expect("agent lost", SECS, |m| {
        matches!(m, Message::AgentLost { agent_id } if *agent_id == agent).then_some(())
    });
    // The agent shut the framework's executor down.
    let pids = c.executor_pids.clone();
    wait_until("executors gone", SECS, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
    // It keeps trying to come back and is refused with the reason.
    wait_until("agent refused", SECS, || {
        c.agents[0]
            .0
            .log_text()
            .contains("down for maintenance")
            .then_some(())
    });
    let s = c.state();
    assert_eq!(s["agents"].as_array().map(|a| a.len()), Some(0), "{s}");
    assert_eq!(s["maintenance"][agent.as_str()]["mode"], "down", "{s}");
    let (code, out) = c.run_cli(&["maintenance", "--master", &c.master_http]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(agent.as_str()) && out.contains("down"),
        "{out}"
    );
    let metrics = http_get::get(&c.master_http, "/metrics").expect("master /metrics");
    assert!(
        metrics.contains("agora_master_agents_down 1\n"),
        "{metrics}"
    );

    // Up: the agent re-registers by itself and is offered again; the lost task stays lost.
    let (code, out) = c.run_cli(&[
        "maintenance",
        "--master",
        &c.master_http,
        "up",
        agent.as_str(),
    ]);
    assert_eq!(code, 0, "{out}");
    wait_until("agent back", Duration::from_secs(60), || {
        let s = c.state();
        (s["agents"].as_array()?.len() == 1).then_some(())
    });
    let offers = fw.next_offers(SECS);
    assert_eq!(offers[0].agent_id, agent);
    let s = c.state();
    let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
    assert!(!tasks.iter().any(|t| t["id"] == "long-1"), "{s}");
    assert!(
        s["maintenance"].as_object().is_some_and(|m| m.is_empty()),
        "{s}"
    );
}
