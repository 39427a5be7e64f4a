//! End-to-end tests on real processes: `agora master` and two `agora agent`s on 127.0.0.1.

mod common;

use agora_actors::*;
use common::*;
use std::time::{Duration, Instant};

fn fast_master() -> Vec<String> {
    [
        "--agent-ping-interval-ms",
        "200",
        "--max-missed-pings",
        "3",
        "--allocation-interval-ms",
        "100",
        "--kill-grace-ms",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn cluster() -> Cluster {
    Cluster::start(ClusterOpts {
        master_flags: fast_master(),
        ..Default::default()
    })
}

const SECS: Duration = Duration::from_secs(20);

#[test]
fn two_frameworks_run_tasks_at_once() {
    let c = cluster();
    let m = c.master_addr.clone();
    let run = |name: &'static str| {
        let m = m.clone();
        std::thread::spawn(move || {
            let out = std::process::Command::new(agora_bin())
                .args([
                    "run",
                    "--master",
                    &m,
                    "--name",
                    name,
                    "--instances",
                    "6",
                    "--cpus",
                    "0.5",
                    "--mem",
                    "32",
                    "--",
                    "sh",
                    "-c",
                    "sleep 0.3",
                ])
                .output()
                .expect("agora run");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        })
    };
    let (a, b) = (run("fw-a"), run("fw-b"));
    let (ra, rb) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!(ra.0, Some(0), "fw-a: {}", ra.1);
    assert_eq!(rb.0, Some(0), "fw-b: {}", rb.1);
    assert!(
        ra.1.contains("6 finished") && rb.1.contains("6 finished"),
        "{}\n{}",
        ra.1,
        rb.1
    );
    // The master saw both frameworks and 12 finished tasks.
    let s = c.state();
    let done = s["completed_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "TASK_FINISHED")
        .count();
    assert_eq!(done, 12, "{s:#}");
    // The frameworks tore themselves down: their shared executors are shut down on every agent.
    wait_until("executors shut down", SECS, || {
        c.agents
            .iter()
            .all(|(_, http)| {
                get_json(http, "/state")
                    .is_some_and(|s| s["executors"].as_array().is_some_and(|e| e.is_empty()))
            })
            .then_some(())
    });
}

#[test]
fn single_task_exit_code_and_sandbox_are_reported() {
    let c = cluster();
    let (code, out) = c.run_cli(&[
        "run",
        "--master",
        &c.master_addr,
        "--",
        "sh",
        "-c",
        "echo hi-from-task; exit 3",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("TASK_RUNNING") && out.contains("TASK_FAILED"),
        "{out}"
    );
    let sandbox = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("sandbox: "))
        .expect("sandbox line")
        .to_string();
    let stdout = std::fs::read_to_string(format!("{sandbox}/stdout")).expect("sandbox stdout");
    assert!(stdout.contains("hi-from-task"), "{stdout}");
    let (code, out) = c.run_cli(&["run", "--master", &c.master_addr, "--", "true"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TASK_FINISHED"), "{out}");
}

#[test]
fn killed_agent_tasks_are_reported_lost() {
    let mut c = cluster();
    let mut fw = RawClient::subscribe(&c.master_addr, "lost-test");
    let offers = fw.next_offers(SECS);
    let o = &offers[0];
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task("long-1", &o.agent_id, "cpus:0.1;mem:32", "sleep 60")],
        }],
        filters: Filters::default(),
    });
    fw.wait_update("long-1", TaskState::Running, SECS);
    c.note_executors();
    let idx = c
        .agents
        .iter()
        .position(|(_, http)| {
            get_json(http, "/state").is_some_and(|s| s["id"] == o.agent_id.as_str())
        })
        .expect("agent of the offer");
    c.agents[idx].0.kill9();
    let st = fw.wait_update("long-1", TaskState::Lost, SECS);
    assert_eq!(st.reason.as_deref(), Some("agent_removed"), "{st:?}");
    fw.expect("agent lost", SECS, |m| {
        matches!(m, Message::AgentLost { agent_id } if *agent_id == o.agent_id).then_some(())
    });
    wait_until("agent removed from /state", SECS, || {
        let s = c.state();
        (s["agents"].as_array()?.len() == 1).then_some(())
    });
}

#[test]
fn unanswered_offer_is_rescinded_and_offered_to_the_other_framework() {
    let mut flags = fast_master();
    flags.extend(["--offer-timeout-ms".to_string(), "700".to_string()]);
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        master_flags: flags,
        ..Default::default()
    });
    let mut lazy = RawClient::subscribe(&c.master_addr, "lazy");
    let first = lazy.next_offers(SECS);
    let mut eager = RawClient::subscribe(&c.master_addr, "eager");
    // The single agent is held by `lazy`'s offer, so `eager` is offered it only after the rescind.
    let t0 = Instant::now();
    let rescinded = lazy.expect("rescind", SECS, |m| match m {
        Message::Rescind { offer_id } => Some(offer_id.clone()),
        _ => None,
    });
    assert_eq!(rescinded, first[0].id);
    assert!(t0.elapsed() < Duration::from_secs(5));
    let offers = eager.next_offers(SECS);
    assert_eq!(offers[0].agent_id, first[0].agent_id);
    // A launch on the rescinded offer is refused: the task is dropped, not run.
    lazy.send(&Message::Accept {
        framework_id: lazy.fid(),
        offer_ids: vec![first[0].id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task("late", &first[0].agent_id, "cpus:0.1;mem:32", "true")],
        }],
        filters: Filters::default(),
    });
    let st = lazy.expect("dropped", SECS, |m| match m {
        Message::Update { status } if status.task_id.as_str() == "late" => Some(status.clone()),
        _ => None,
    });
    assert_eq!(st.state, TaskState::Dropped, "{st:?}");
    let s = c.state();
    assert!(
        s["counters"]["offers_rescinded"].as_u64().unwrap_or(0) >= 1,
        "{s:#}"
    );
}

#[test]
fn declined_agent_is_withheld_for_refuse_seconds() {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        master_flags: fast_master(),
        ..Default::default()
    });
    let mut fw = RawClient::subscribe(&c.master_addr, "decliner");
    let offers = fw.next_offers(SECS);
    let t0 = Instant::now();
    fw.send(&Message::Decline {
        framework_id: fw.fid(),
        offer_ids: vec![offers[0].id.clone()],
        filters: Filters {
            refuse_seconds: 2.0,
        },
    });
    let again = fw.next_offers(Duration::from_secs(10));
    let waited = t0.elapsed();
    assert_eq!(again[0].agent_id, offers[0].agent_id);
    assert!(
        waited >= Duration::from_millis(1900),
        "re-offered after only {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "re-offered only after {waited:?}"
    );
}

#[test]
fn a_task_can_be_killed() {
    let c = cluster();
    let mut fw = RawClient::subscribe(&c.master_addr, "killer");
    let o = fw.next_offers(SECS).remove(0);
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task("victim", &o.agent_id, "cpus:0.1;mem:32", "sleep 60")],
        }],
        filters: Filters::default(),
    });
    fw.wait_update("victim", TaskState::Running, SECS);
    fw.send(&Message::Kill {
        framework_id: fw.fid(),
        task_id: TaskId::new("victim").unwrap(),
        agent_id: Some(o.agent_id.clone()),
    });
    fw.wait_update("victim", TaskState::Killed, SECS);
    wait_until("resources recovered", SECS, || {
        let s = c.state();
        let a = s["agents"]
            .as_array()?
            .iter()
            .find(|a| a["id"] == o.agent_id.as_str())?
            .clone();
        (a["used"] == "").then_some(())
    });
}

#[test]
fn cli_tables_and_http_endpoints_show_the_cluster() {
    let c = cluster();
    let (code, out) = c.run_cli(&[
        "run",
        "--master",
        &c.master_addr,
        "--name",
        "tabled",
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.run_cli(&["agents", "--master", &c.master_http, "--json"]);
    assert_eq!(code, 0, "{out}");
    let agents: serde_json::Value = serde_json::from_str(&out).expect("agents --json");
    assert_eq!(agents.as_array().map(|a| a.len()), Some(2), "{out}");
    let (code, out) = c.run_cli(&["agents", "--master", &c.master_http]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ID") && out.contains("127.0.0.1:") && out.lines().count() == 3,
        "{out}"
    );
    let (code, out) = c.run_cli(&["tasks", "--master", &c.master_http, "--all"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("tabled-0") && out.contains("TASK_FINISHED"),
        "{out}"
    );
    let (code, out) = c.run_cli(&["state", "--master", &c.master_http]);
    assert_eq!(code, 0);
    assert!(out.contains("\"completed_tasks\""), "{out}");
    let metrics = common::http_get::get(&c.master_http, "/metrics").unwrap();
    assert!(
        metrics.contains("agora_master_offers_made_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agora_master_tasks{state=\"TASK_FINISHED\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agora_master_allocation_run_seconds"),
        "{metrics}"
    );
    let agent_state = get_json(&c.agents[0].1, "/state").expect("agent /state");
    assert!(
        agent_state["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("agent-")),
        "{agent_state}"
    );
    assert!(common::http_get::get(&c.agents[0].1, "/monitor/statistics").is_ok());
    // A master that is not there gives a clear error, not a hang or a panic.
    let (code, out) = c.run_cli(&["agents", "--master", "127.0.0.1:1"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("127.0.0.1:1"), "{out}");
}

#[test]
fn a_restarted_scheduler_keeps_its_tasks_and_reconciles_them() {
    let c = cluster();
    let mut info = FrameworkInfo::new("phoenix");
    info.failover_timeout_ms = 60_000;
    let mut fw = RawClient::subscribe_with(&c.master_addr, info.clone());
    let o = fw.next_offers(SECS).remove(0);
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch {
            tasks: vec![task("survivor", &o.agent_id, "cpus:0.1;mem:32", "sleep 60")],
        }],
        filters: Filters::default(),
    });
    fw.wait_update("survivor", TaskState::Running, SECS);
    let id = fw.fid();
    drop(fw); // the scheduler process dies
    wait_until("framework inactive", SECS, || {
        let s = c.state();
        let f = s["frameworks"]
            .as_array()?
            .iter()
            .find(|f| f["id"] == id.as_str())?
            .clone();
        (f["active"] == false).then_some(())
    });
    info.id = Some(id.clone());
    let mut again = RawClient::subscribe_with(&c.master_addr, info);
    assert_eq!(again.fid(), id, "re-subscribed under the same id");
    // Implicit reconciliation: the master reports every task it knows for the framework.
    again.send(&Message::Reconcile {
        framework_id: id.clone(),
        tasks: vec![],
    });
    let st = again.expect("reconciled update", SECS, |m| match m {
        Message::Update { status } if status.task_id.as_str() == "survivor" => Some(status.clone()),
        _ => None,
    });
    assert_eq!(st.state, TaskState::Running);
    assert_eq!(st.reason.as_deref(), Some("reconciliation"));
    // Explicit reconciliation of an unknown task.
    again.send(&Message::Reconcile {
        framework_id: id.clone(),
        tasks: vec![(TaskId::new("never").unwrap(), None)],
    });
    let st = again.expect("unknown task", SECS, |m| match m {
        Message::Update { status } if status.task_id.as_str() == "never" => Some(status.clone()),
        _ => None,
    });
    assert_eq!(st.state, TaskState::Unknown, "{st:?}");
    // Teardown kills the task.
    again.send(&Message::Teardown {
        framework_id: id.clone(),
    });
    wait_until("task killed by teardown", SECS, || {
        let s = c.state();
        s["completed_tasks"]
            .as_array()?
            .iter()
            .any(|t| t["id"] == "survivor" && t["state"] == "TASK_KILLED")
            .then_some(())
    });
}
