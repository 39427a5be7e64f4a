use super::*;
use agora_actors::resources::{Key, Value};
use agora_actors::Milli;

/// A re-registration saying the same about itself as before (if the master knows the agent).
fn reregister(
    h: &Harness,
    agent: &AgentId,
    r: &str,
    tasks: Vec<TaskReport>,
    frameworks: Vec<FrameworkInfo>,
) -> Message {
    let known = h.core.agents.get(agent);
    Message::ReregisterAgent {
        agent_id: agent.clone(),
        hostname: known.map_or("host".to_string(), |a| a.hostname.clone()),
        endpoint: "10.0.0.9:5051".into(),
        resources: res(r),
        attributes: known.map(|a| a.attributes.clone()).unwrap_or_default(),
        tasks,
        frameworks,
    }
}

#[test]
fn registration_assigns_an_id_and_tells_the_allocator() {
    let mut h = Harness::new();
    let conn = h.connect(NodeKind::Agent);
    let actions = h.send(
        conn,
        Message::RegisterAgent {
            hostname: "a1".into(),
            endpoint: "10.0.0.1:5051".into(),
            resources: res("cpus:4;mem:4096"),
            attributes: Default::default(),
        },
    );
    let Message::AgentRegistered {
        agent_id,
        ping_interval_ms,
    } = &sent_to(&actions, conn)[0]
    else {
        panic!("{actions:?}");
    };
    assert_eq!(*ping_interval_ms, 2_000);
    assert_eq!(agent_id.as_str(), "agent-7-1");
    match &alloc_events(&actions)[..] {
        [AllocatorEvent::AddAgent {
            agent_id: a,
            total,
            used,
            hostname,
            ..
        }] => {
            assert_eq!(a, agent_id);
            assert_eq!(total, &res("cpus:4;mem:4096"));
            assert!(used.is_empty());
            assert_eq!(hostname, "a1");
        }
        other => panic!("{other:?}"),
    }
    let state = h.core.state();
    assert_eq!(state.agents.len(), 1);
    assert!(state.agents[0].connected);
    assert_eq!(state.agents[0].total, "cpus:4;mem:4096");
    assert_eq!(h.core.counters().agents_registered, 1);
    // A retry on the same connection gets the same id and adds nothing.
    let again = h.send(
        conn,
        Message::RegisterAgent {
            hostname: "a1".into(),
            endpoint: "10.0.0.1:5051".into(),
            resources: res("cpus:4;mem:4096"),
            attributes: Default::default(),
        },
    );
    assert!(
        matches!(&sent_to(&again, conn)[..], [Message::AgentRegistered { agent_id: a, .. }] if a == agent_id)
    );
    assert!(alloc_events(&again).is_empty());
}

#[test]
fn bad_registrations_are_refused_and_closed() {
    let mut negative = Resources::new();
    negative
        .add_entry(
            Key {
                name: "cpus".into(),
                role: None,
            },
            Value::Scalar(Milli(-1000)),
        )
        .unwrap();
    let cases = [
        ("host", Resources::new(), "no resources"),
        ("host", negative, "out of range"),
        ("", res("cpus:1"), "hostname is empty"),
    ];
    for (hostname, resources, expect) in cases {
        let mut h = Harness::new();
        let conn = h.connect(NodeKind::Agent);
        let msg = Message::RegisterAgent {
            hostname: hostname.into(),
            endpoint: "e:1".into(),
            resources,
            attributes: Default::default(),
        };
        let actions = h.send(conn, msg);
        assert!(closed(&actions, conn), "{actions:?}");
        let errs = errors(&actions, conn);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, ErrorCode::BadRequest);
        assert!(errs[0].1.contains(expect), "{}", errs[0].1);
        assert!(errs[0].2, "fatal");
        assert!(alloc_events(&actions).is_empty());
        assert_eq!(h.core.counters().invalid_messages, 1);
        assert!(h.core.state().agents.is_empty());
    }
}

#[test]
fn agent_messages_from_a_scheduler_are_refused() {
    let mut h = Harness::new();
    let conn = h.connect(NodeKind::Scheduler);
    let actions = h.send(
        conn,
        Message::RegisterAgent {
            hostname: "h".into(),
            endpoint: "e:1".into(),
            resources: res("cpus:1"),
            attributes: Default::default(),
        },
    );
    let errs = errors(&actions, conn);
    assert_eq!(errs.len(), 1);
    assert!(!errs[0].2);
    assert!(errs[0].1.contains("register_agent"), "{}", errs[0].1);
    assert!(h.core.state().agents.is_empty());
    // A status update from an agent connection that never registered.
    let agent_conn = h.connect(NodeKind::Agent);
    let fw = FrameworkId::new("fw-x").unwrap();
    let actions = h.status(agent_conn, &fw, "t1", TaskState::Running, 1);
    assert_eq!(errors(&actions, agent_conn)[0].0, ErrorCode::NotSubscribed);
    assert_eq!(h.core.counters().invalid_messages, 2);
}

#[test]
fn reregistration_of_a_known_agent_moves_it_to_the_new_connection() {
    let mut h = Harness::new();
    let (old, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1;mem:128");
    h.status(old, &fw, "t1", TaskState::Running, 1);
    let new = h.connect(NodeKind::Agent);
    let report = h.report(&fw, "t1");
    let actions = h.send(
        new,
        reregister(&h, &agent, "cpus:4;mem:1024", vec![report], vec![]),
    );
    assert!(
        matches!(&sent_to(&actions, new)[..], [Message::AgentRegistered { agent_id, .. }] if *agent_id == agent)
    );
    assert!(closed(&actions, old), "stale connection closed");
    assert!(
        alloc_events(&actions).is_empty(),
        "nothing changed for the allocator: {actions:?}"
    );
    assert_eq!(h.task_state(&fw, "t1"), Some(TaskState::Running));
    // The old connection's late disconnect does not touch the agent.
    assert!(h.disconnect(old).is_empty());
    assert!(h.core.state().agents[0].connected);
    // Pings now go to the new connection.
    let actions = h.timer(MasterTimer::PingAgents);
    assert_eq!(sent_to(&actions, new), vec![Message::Ping]);
    assert_eq!(h.core.counters().agents_reregistered, 1);
}

#[test]
fn reregistration_without_a_task_declares_it_lost_and_recovers_it() {
    let mut h = Harness::new();
    let (old, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1;mem:128");
    h.launch(sched, &fw, &agent, "t2", "cpus:2;mem:128");
    h.disconnect(old);
    let new = h.connect(NodeKind::Agent);
    let report = h.report(&fw, "t2");
    let actions = h.send(
        new,
        reregister(&h, &agent, "cpus:4;mem:1024", vec![report], vec![]),
    );
    let ups = updates(&actions, sched);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].task_id, tid("t1"));
    assert_eq!(ups[0].state, TaskState::Lost);
    assert_eq!(ups[0].reason.as_deref(), Some(reasons::TASK_MISSING));
    assert_eq!(ups[0].uuid, None);
    assert_eq!(recovers(&actions), vec![(res("cpus:1;mem:128"), None)]);
    assert_eq!(h.task_state(&fw, "t2"), Some(TaskState::Staging));
}

/// Found by the simulator (faults-ha seed 164): an agent retried its re-registration on the
/// same connection before the answer came; the master answered the first, launched a task
/// there, then read the retry, which could not mention that task (its RunTask was still on its
/// way). The task must not be declared lost; one launched before the connection was bound
/// still is.
#[test]
fn repeated_reregistration_on_one_connection_keeps_launches_in_flight() {
    let mut h = Harness::new();
    let (old, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1;mem:128");
    h.disconnect(old);
    h.advance(10);
    let conn = h.connect(NodeKind::Agent);
    let again = reregister(&h, &agent, "cpus:4;mem:1024", vec![], vec![]);
    let first = h.send(conn, again.clone());
    let lost = updates(&first, sched);
    assert_eq!(lost.len(), 1, "t1 was launched on the old connection");
    assert_eq!(lost[0].state, TaskState::Lost);
    h.advance(10);
    h.launch(sched, &fw, &agent, "t2", "cpus:1;mem:128");
    let retry = h.send(conn, again);
    assert!(updates(&retry, sched).is_empty(), "{retry:?}");
    assert_eq!(h.task_state(&fw, "t2"), Some(TaskState::Staging));
}

#[test]
fn master_restart_rebuilds_agents_frameworks_and_tasks_from_reports() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1;mem:128");
    let mut report = h.report(&fw, "t1");
    report.state = TaskState::Running;
    let info = h.core.frameworks[&fw].info.clone();

    // A new master incarnation knows nothing.
    let mut h = Harness::with_config(MasterConfig::default());
    let conn = h.connect(NodeKind::Agent);
    let actions = h.send(
        conn,
        reregister(
            &h,
            &agent,
            "cpus:4;mem:1024",
            vec![report],
            vec![info.clone()],
        ),
    );
    assert!(
        matches!(&sent_to(&actions, conn)[..], [Message::AgentRegistered { agent_id, .. }] if *agent_id == agent)
    );
    let events = alloc_events(&actions);
    assert!(
        matches!(&events[0], AllocatorEvent::AddFramework { framework_id, active: false, .. } if *framework_id == fw)
    );
    match &events[1] {
        AllocatorEvent::AddAgent { used, .. } => assert_eq!(used[&fw], res("cpus:1;mem:128")),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.task_state(&fw, "t1"), Some(TaskState::Running));
    let state = h.core.state();
    assert_eq!(state.frameworks.len(), 1);
    assert!(!state.frameworks[0].active);
    assert_eq!(state.agents[0].used, "cpus:1;mem:128");
    // The scheduler comes back with its id: a failover, not a new framework.
    let (sched, actions) = h.subscribe_info(info);
    assert!(
        matches!(&sent_to(&actions, sched)[..], [Message::Subscribed { framework_id, .. }] if *framework_id == fw)
    );
    assert!(matches!(
        &alloc_events(&actions)[..],
        [AllocatorEvent::ActivateFramework { .. }]
    ));
    let actions = h.send(
        sched,
        Message::Kill {
            framework_id: fw.clone(),
            task_id: tid("t1"),
            agent_id: None,
        },
    );
    assert!(matches!(
        &sent_to(&actions, conn)[..],
        [Message::KillTask {
            grace_ms: 3_000,
            ..
        }]
    ));
}

#[test]
fn reregistration_reporting_more_than_the_agent_has_is_refused() {
    let mut h = Harness::new();
    let conn = h.connect(NodeKind::Agent);
    let agent = AgentId::new("agent-old-1").unwrap();
    let fw = FrameworkId::new("fw-old-1").unwrap();
    let report = TaskReport {
        framework_id: fw,
        executor_id: ExecutorId::new("t1").unwrap(),
        task: task("t1", &agent, "cpus:8"),
        state: TaskState::Running,
    };
    let actions = h.send(conn, reregister(&h, &agent, "cpus:4", vec![report], vec![]));
    assert!(closed(&actions, conn));
    assert!(errors(&actions, conn)[0].1.contains("only has"));
    assert!(h.core.state().agents.is_empty());
}

#[test]
fn a_task_reported_by_two_agents_is_killed_on_the_second() {
    let mut h = Harness::new();
    let (_a, agent_a) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent_a, "t1", "cpus:1");
    let mut report = h.report(&fw, "t1");
    let conn_b = h.connect(NodeKind::Agent);
    let agent_b = AgentId::new("agent-old-9").unwrap();
    report.task.agent_id = agent_b.clone();
    let actions = h.send(
        conn_b,
        reregister(&h, &agent_b, "cpus:4", vec![report], vec![]),
    );
    assert!(sent_to(&actions, conn_b)
        .iter()
        .any(|m| matches!(m, Message::KillTask { task_id, .. } if *task_id == tid("t1"))));
    assert_eq!(h.core.tasks[&(fw, tid("t1"))].agent_id, agent_a);
}

#[test]
fn pongs_keep_an_agent_and_silence_removes_it() {
    let mut h = Harness::new();
    let (conn, _agent) = h.register_agent("cpus:4");
    for _ in 0..20 {
        let actions = h.timer(MasterTimer::PingAgents);
        assert_eq!(sent_to(&actions, conn), vec![Message::Ping]);
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::SetTimer {
                timer: MasterTimer::PingAgents,
                ..
            }
        )));
        h.send(conn, Message::Pong);
    }
    assert_eq!(h.core.state().agents.len(), 1);
    // Silence: every round after an unanswered ping counts a miss; the fifth miss removes it.
    for round in 1..=5 {
        h.timer(MasterTimer::PingAgents);
        assert_eq!(h.core.state().agents[0].missed_pings, round - 1);
    }
    let actions = h.timer(MasterTimer::PingAgents);
    assert!(h.core.state().agents.is_empty(), "{actions:?}");
    assert_eq!(h.core.counters().agents_removed, 1);
}

#[test]
fn a_pong_resets_the_miss_count() {
    let mut h = Harness::new();
    let (conn, _agent) = h.register_agent("cpus:4");
    for _ in 0..4 {
        h.timer(MasterTimer::PingAgents);
    }
    assert_eq!(h.core.state().agents[0].missed_pings, 3);
    h.send(conn, Message::Pong);
    assert_eq!(h.core.state().agents[0].missed_pings, 0);
    for _ in 0..4 {
        h.timer(MasterTimer::PingAgents);
    }
    assert_eq!(h.core.state().agents.len(), 1);
}

#[test]
fn removing_an_agent_loses_its_tasks_and_tells_every_framework() {
    let mut h = Harness::new();
    let (conn, agent) = h.register_agent("cpus:4;mem:1024");
    let (other_conn, _other) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    let (sched2, _fw2) = h.subscribe("batch");
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    let offer = h.offer(&fw, &agent, "cpus:1");
    let mut last = Vec::new();
    for _ in 0..6 {
        last = h.timer(MasterTimer::PingAgents);
        h.send(other_conn, Message::Pong);
        if h.core.agents.len() == 1 {
            break;
        }
    }
    let ups = updates(&last, sched);
    assert_eq!(ups.len(), 1, "{last:?}");
    assert_eq!(ups[0].state, TaskState::Lost);
    assert_eq!(ups[0].reason.as_deref(), Some(reasons::AGENT_REMOVED));
    assert_eq!(ups[0].source, UpdateSource::Master);
    assert_eq!(ups[0].uuid, None);
    assert!(sent_to(&last, sched).contains(&Message::Rescind {
        offer_id: offer.id.clone()
    }));
    for s in [sched, sched2] {
        assert!(sent_to(&last, s).contains(&Message::AgentLost {
            agent_id: agent.clone()
        }));
    }
    // RemoveAgent releases everything: no per-offer or per-task Recover.
    let events = alloc_events(&last);
    assert_eq!(
        events,
        vec![AllocatorEvent::RemoveAgent {
            agent_id: agent.clone()
        }]
    );
    assert!(closed(&last, conn));
    let state = h.core.state();
    assert_eq!(state.completed_tasks[0].state, "TASK_LOST");
    assert!(state.offers.is_empty());
    assert_eq!(state.counters.tasks_terminal["TASK_LOST"], 1);
}

#[test]
fn a_disconnected_agent_loses_its_offers_then_is_removed() {
    let mut h = Harness::new();
    let (conn, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:4");
    let actions = h.disconnect(conn);
    assert_eq!(
        sent_to(&actions, sched),
        vec![Message::Rescind { offer_id: offer.id }]
    );
    assert_eq!(recovers(&actions), vec![(res("cpus:4"), None)]);
    assert!(!h.core.state().agents[0].connected);
    for _ in 0..4 {
        h.timer(MasterTimer::PingAgents);
    }
    assert_eq!(h.core.state().agents.len(), 1);
    let actions = h.timer(MasterTimer::PingAgents);
    assert!(h.core.state().agents.is_empty());
    assert!(!closed(&actions, conn), "already closed");
}

/// Found by the simulator (bug D, seed 120 of faults.toml): the master removed an agent and
/// told the framework TASK_LOST; the agent came back from its checkpoint with the task, the
/// master adopted it again, and the framework later got TASK_FINISHED too. A task the master
/// declared lost stays lost: the returning agent is told to kill it and its updates are
/// acknowledged to the agent but never reach the framework.
#[test]
fn a_removed_agent_comes_back_and_its_lost_tasks_stay_lost() {
    let mut h = Harness::new();
    let (conn, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    h.status(conn, &fw, "t1", TaskState::Running, 1);
    let report = h.report(&fw, "t1");
    h.disconnect(conn);
    let mut removal = Vec::new();
    for _ in 0..5 {
        removal.extend(h.timer(MasterTimer::PingAgents));
    }
    let lost = updates(&removal, sched);
    assert_eq!(lost.len(), 1, "{removal:?}");
    assert_eq!(lost[0].state, TaskState::Lost);
    let conn = h.connect(NodeKind::Agent);
    let actions = h.send(conn, reregister(&h, &agent, "cpus:4", vec![report], vec![]));
    assert!(matches!(
        sent_to(&actions, conn).first(),
        Some(Message::AgentRegistered { .. })
    ));
    assert!(
        sent_to(&actions, conn).contains(&Message::KillTask {
            framework_id: fw.clone(),
            task_id: tid("t1"),
            grace_ms: h.core.config().default_kill_grace_ms,
        }),
        "{actions:?}"
    );
    match &alloc_events(&actions)[..] {
        [AllocatorEvent::AddAgent { used, .. }] => assert!(used.is_empty(), "{used:?}"),
        other => panic!("{other:?}"),
    }
    assert!(updates(&actions, sched).is_empty(), "{actions:?}");
    assert_eq!(h.task_state(&fw, "t1"), None, "not adopted again");
    // The killed (or finished) copy reports its end: acknowledged to the agent so it stops
    // retrying, never forwarded (the framework already has TASK_LOST), books unchanged.
    for (state, uuid) in [
        (TaskState::Finished, 7),
        (TaskState::Finished, 7),
        (TaskState::Killed, 8),
    ] {
        let actions = h.status(conn, &fw, "t1", state, uuid);
        assert!(updates(&actions, sched).is_empty(), "{actions:?}");
        assert_eq!(
            sent_to(&actions, conn),
            vec![Message::StatusUpdateAck {
                framework_id: fw.clone(),
                task_id: tid("t1"),
                uuid,
            }]
        );
    }
    let state = h.core.state();
    assert_eq!(state.counters.tasks_terminal["TASK_LOST"], 1);
    assert_eq!(state.counters.tasks_terminal.get("TASK_FINISHED"), None);
    assert_eq!(h.task_state(&fw, "t1"), None);
}

/// Tasks the returning agent did not have before its removal are still adopted, and a task
/// id relaunched on it later is an ordinary task again.
#[test]
fn a_removed_agent_keeps_tasks_it_was_not_declared_lost_with() {
    let mut h = Harness::new();
    let (conn, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    h.launch(sched, &fw, &agent, "t2", "cpus:1");
    let other = h.report(&fw, "t2");
    // t2 ends before the removal: not declared lost, so not remembered.
    h.status(conn, &fw, "t2", TaskState::Finished, 1);
    h.disconnect(conn);
    for _ in 0..5 {
        h.timer(MasterTimer::PingAgents);
    }
    let conn = h.connect(NodeKind::Agent);
    let mut relaunched = other.clone();
    relaunched.task.task_id = tid("t3");
    h.send(
        conn,
        reregister(&h, &agent, "cpus:4", vec![relaunched], vec![]),
    );
    assert!(
        h.task_state(&fw, "t3").is_some(),
        "a task not declared lost is adopted"
    );
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    let actions = h.status(conn, &fw, "t1", TaskState::Running, 2);
    assert_eq!(
        updates(&actions, sched).len(),
        1,
        "a relaunched t1 is live again"
    );
    assert_eq!(h.task_state(&fw, "t1"), Some(TaskState::Running));
}

#[test]
fn a_removed_agent_may_come_back_with_its_id() {
    let mut h = Harness::new();
    let (conn, agent) = h.register_agent("cpus:4");
    h.disconnect(conn);
    for _ in 0..5 {
        h.timer(MasterTimer::PingAgents);
    }
    assert!(h.core.state().agents.is_empty());
    let conn = h.connect(NodeKind::Agent);
    let actions = h.send(conn, reregister(&h, &agent, "cpus:4", vec![], vec![]));
    assert!(matches!(
        &alloc_events(&actions)[..],
        [AllocatorEvent::AddAgent { .. }]
    ));
    assert_eq!(h.core.state().agents[0].id, agent.to_string());
}

#[test]
fn peers_of_another_cluster_or_kind_are_refused() {
    let mut h = Harness::new();
    let peer = Hello::new("other-cluster", NodeKind::Agent, "x");
    let actions = h.input(Input::Connected { conn: 99, peer });
    assert!(closed(&actions, 99));
    assert_eq!(errors(&actions, 99)[0].0, ErrorCode::ClusterMismatch);
    // Its messages are then ignored as from a closed connection.
    assert!(h.send(99, Message::Pong).is_empty());
    let cli = h.connect(NodeKind::Cli);
    let actions = h.send(
        cli,
        Message::Subscribe {
            framework: FrameworkInfo::new("web"),
        },
    );
    assert_eq!(errors(&actions, cli)[0].0, ErrorCode::BadRequest);
    assert!(h.core.state().frameworks.is_empty());
}

#[test]
fn a_new_master_answers_reconciliation_of_a_task_that_ended_unacknowledged_with_its_end() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4;mem:1024");
    let (old_sched, fw) = h.subscribe("web");
    let info = h.core.frameworks[&fw].info.clone();
    let mut h2 = Harness::new();
    h.launch(old_sched, &fw, &agent, "t1", "cpus:1;mem:128");
    let mut report = h.report(&fw, "t1");
    // It ended while no master led; its update waits, unacknowledged, at the agent.
    report.state = TaskState::Finished;
    let conn = h2.connect(NodeKind::Agent);
    h2.send(
        conn,
        reregister(
            &h2,
            &agent,
            "cpus:4;mem:1024",
            vec![report],
            vec![info.clone()],
        ),
    );
    let (sched, _) = h2.subscribe_info(info);
    let actions = h2.send(
        sched,
        Message::Reconcile {
            framework_id: fw.clone(),
            tasks: vec![(tid("t1"), Some(agent.clone()))],
        },
    );
    let ups = updates(&actions, sched);
    assert_eq!(ups.len(), 1, "{actions:?}");
    // Not TASK_GONE: the framework would launch it a second time.
    assert_eq!(ups[0].state, TaskState::Finished);
}

#[test]
fn registry_agents_that_miss_the_window_are_unreachable_and_their_tasks_lost() {
    let mut h = Harness::new();
    let gone = AgentId::new("agent-old-1").unwrap();
    let (_ac, back) = h.register_agent("cpus:2;mem:1024");
    let acts = h.input(Input::RegistryAgents {
        agent_ids: vec![gone.clone(), back],
        reregister_timeout_ms: 5_000,
    });
    // Only the agent not already here is waited for.
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::SetTimer {
            timer: MasterTimer::AgentReregisterTimeout,
            ..
        }
    )));
    let (sc, fw) = h.subscribe("fw");
    let reconcile = |h: &mut Harness| {
        let msg = Message::Reconcile {
            framework_id: fw.clone(),
            tasks: vec![(tid("t1"), Some(gone.clone()))],
        };
        updates(&h.send(sc, msg), sc)
    };
    assert_eq!(reconcile(&mut h)[0].state, TaskState::Unknown);
    h.advance(5_000);
    let acts = h.timer(MasterTimer::AgentReregisterTimeout);
    assert!(sent_to(&acts, sc)
        .iter()
        .any(|m| matches!(m, Message::AgentLost { agent_id } if *agent_id == gone)));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::AgentUnreachable { agent_id } if *agent_id == gone)));
    let answer = reconcile(&mut h);
    assert_eq!(answer[0].state, TaskState::Lost, "{answer:?}");
    assert_eq!(h.core.counters().agents_unreachable, 1);
}
