use super::*;

/// One agent, one framework, one launched task `t1` using cpus:1.
fn running() -> (Harness, ConnId, AgentId, ConnId, FrameworkId) {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    (h, agent_conn, agent, sched, fw)
}

#[test]
fn updates_are_forwarded_and_acknowledgements_relayed() {
    let (mut h, agent_conn, agent, sched, fw) = running();
    let actions = h.status(agent_conn, &fw, "t1", TaskState::Running, 11);
    let u = &updates(&actions, sched)[0];
    assert_eq!(u.state, TaskState::Running);
    assert_eq!(u.uuid, Some(11));
    assert_eq!(
        u.agent_id.as_ref(),
        Some(&agent),
        "filled in for the acknowledgement"
    );
    assert!(alloc_events(&actions).is_empty());
    assert_eq!(h.task_state(&fw, "t1"), Some(TaskState::Running));
    let ack = Message::Acknowledge {
        framework_id: fw.clone(),
        agent_id: agent.clone(),
        task_id: tid("t1"),
        uuid: 11,
    };
    let actions = h.send(sched, ack);
    assert_eq!(
        sent_to(&actions, agent_conn),
        vec![Message::StatusUpdateAck {
            framework_id: fw.clone(),
            task_id: tid("t1"),
            uuid: 11
        }]
    );
    // An acknowledgement naming an unknown agent is an error.
    let bad = Message::Acknowledge {
        framework_id: fw.clone(),
        agent_id: AgentId::new("agent-nope").unwrap(),
        task_id: tid("t1"),
        uuid: 11,
    };
    assert_eq!(errors(&h.send(sched, bad), sched)[0].0, ErrorCode::NotFound);
}

#[test]
fn a_terminal_update_recovers_exactly_once() {
    let (mut h, agent_conn, agent, sched, fw) = running();
    h.status(agent_conn, &fw, "t1", TaskState::Running, 1);
    let actions = h.status(agent_conn, &fw, "t1", TaskState::Finished, 2);
    assert_eq!(
        alloc_events(&actions),
        vec![AllocatorEvent::Recover {
            framework_id: fw.clone(),
            agent_id: agent.clone(),
            resources: res("cpus:1"),
            refuse_ms: None
        }]
    );
    assert_eq!(updates(&actions, sched)[0].state, TaskState::Finished);
    // The agent retries (the ack was lost): forwarded again, recovered never again.
    let again = h.status(agent_conn, &fw, "t1", TaskState::Finished, 2);
    assert_eq!(updates(&again, sched).len(), 1);
    assert!(alloc_events(&again).is_empty());
    // A late non-terminal update does not bring it back.
    let late = h.status(agent_conn, &fw, "t1", TaskState::Running, 3);
    assert!(alloc_events(&late).is_empty());
    assert_eq!(h.task_state(&fw, "t1"), None);
    let state = h.core.state();
    assert_eq!(state.completed_tasks.len(), 1);
    assert_eq!(state.completed_tasks[0].state, "TASK_FINISHED");
    assert_eq!(state.agents[0].used, "");
    assert_eq!(state.counters.tasks_terminal["TASK_FINISHED"], 1);
    assert_eq!(state.counters.status_updates_unknown_task, 0);
}

#[test]
fn the_last_task_of_an_executor_also_frees_the_executor() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:2;mem:512");
    let mk = |id: &str| {
        let mut t = task(id, &agent, "cpus:0.5;mem:128");
        t.command = None;
        t.executor = Some(executor("exec-1", "cpus:0.5;mem:64"));
        t
    };
    h.send(sched, accept(&fw, &[&offer], vec![mk("t1"), mk("t2")], 5.0));
    let first = h.status(agent_conn, &fw, "t1", TaskState::Finished, 1);
    assert_eq!(recovers(&first), vec![(res("cpus:0.5;mem:128"), None)]);
    let last = h.status(agent_conn, &fw, "t2", TaskState::Failed, 2);
    assert_eq!(recovers(&last), vec![(res("cpus:1;mem:192"), None)]);
    assert_eq!(h.core.state().agents[0].used, "");
}

#[test]
fn updates_for_unknown_tasks_are_forwarded() {
    let (mut h, agent_conn, _agent, sched, fw) = running();
    let actions = h.status(agent_conn, &fw, "ghost", TaskState::Running, 5);
    assert_eq!(updates(&actions, sched)[0].task_id, tid("ghost"));
    assert!(alloc_events(&actions).is_empty());
    assert_eq!(h.core.counters().status_updates_unknown_task, 1);
}

#[test]
fn an_update_for_an_absent_scheduler_is_dropped() {
    let (mut h, agent_conn, _agent, sched, fw) = running();
    h.disconnect(sched);
    let actions = h.status(agent_conn, &fw, "t1", TaskState::Finished, 5);
    assert!(
        actions.iter().all(|a| !matches!(a, Action::Send { .. })),
        "{actions:?}"
    );
    // The books still move on: the resources are free again.
    assert_eq!(recovers(&actions).len(), 1);
}

#[test]
fn kill_of_a_live_task_goes_to_its_agent() {
    let (mut h, agent_conn, _agent, sched, fw) = running();
    let actions = h.send(
        sched,
        Message::Kill {
            framework_id: fw.clone(),
            task_id: tid("t1"),
            agent_id: None,
        },
    );
    assert_eq!(
        sent_to(&actions, agent_conn),
        vec![Message::KillTask {
            framework_id: fw.clone(),
            task_id: tid("t1"),
            grace_ms: 3_000
        }]
    );
    assert!(updates(&actions, sched).is_empty());
}

#[test]
fn kill_of_an_unknown_task_answers_with_its_reconciled_state() {
    let (mut h, agent_conn, agent, sched, fw) = running();
    // Unknown everywhere: TASK_UNKNOWN.
    let actions = h.send(
        sched,
        Message::Kill {
            framework_id: fw.clone(),
            task_id: tid("nope"),
            agent_id: None,
        },
    );
    let u = &updates(&actions, sched)[0];
    assert_eq!(u.state, TaskState::Unknown);
    assert_eq!(u.reason.as_deref(), Some(reasons::RECONCILIATION));
    // Unknown to the master but on a named, connected agent: the agent may know it.
    let actions = h.send(
        sched,
        Message::Kill {
            framework_id: fw.clone(),
            task_id: tid("nope"),
            agent_id: Some(agent.clone()),
        },
    );
    assert!(matches!(
        &sent_to(&actions, agent_conn)[..],
        [Message::KillTask { .. }]
    ));
    // Completed: its terminal state.
    h.status(agent_conn, &fw, "t1", TaskState::Failed, 1);
    let actions = h.send(
        sched,
        Message::Kill {
            framework_id: fw.clone(),
            task_id: tid("t1"),
            agent_id: Some(agent),
        },
    );
    assert!(sent_to(&actions, agent_conn).is_empty());
    assert_eq!(updates(&actions, sched)[0].state, TaskState::Failed);
}

#[test]
fn explicit_reconciliation_answers_each_task() {
    let (mut h, agent_conn, agent, sched, fw) = running();
    h.status(agent_conn, &fw, "t1", TaskState::Running, 1);
    h.launch(sched, &fw, &agent, "t2", "cpus:1");
    h.status(agent_conn, &fw, "t2", TaskState::Finished, 2);
    let msg = Message::Reconcile {
        framework_id: fw.clone(),
        tasks: vec![
            (tid("t1"), None),
            (tid("t2"), Some(agent.clone())),
            (tid("t3"), Some(agent.clone())),
            (tid("t4"), None),
        ],
    };
    let actions = h.send(sched, msg);
    let ups = updates(&actions, sched);
    let states: Vec<TaskState> = ups.iter().map(|u| u.state).collect();
    assert_eq!(
        states,
        vec![
            TaskState::Running,
            TaskState::Finished,
            TaskState::Gone,
            TaskState::Unknown
        ]
    );
    assert!(ups
        .iter()
        .all(|u| u.reason.as_deref() == Some(reasons::RECONCILIATION) && u.uuid.is_none()));
    assert_eq!(ups[0].agent_id.as_ref(), Some(&agent));
}

#[test]
fn implicit_reconciliation_lists_every_live_task() {
    let (mut h, agent_conn, agent, sched, fw) = running();
    h.launch(sched, &fw, &agent, "t2", "cpus:1");
    h.launch(sched, &fw, &agent, "t3", "cpus:1");
    h.status(agent_conn, &fw, "t3", TaskState::Killed, 1);
    let actions = h.send(
        sched,
        Message::Reconcile {
            framework_id: fw.clone(),
            tasks: vec![],
        },
    );
    let ids: Vec<TaskId> = updates(&actions, sched)
        .into_iter()
        .map(|u| u.task_id)
        .collect();
    assert_eq!(ids, vec![tid("t1"), tid("t2")]);
}

#[test]
fn framework_and_executor_messages_are_relayed() {
    let (mut h, agent_conn, agent, sched, fw) = running();
    let exec = ExecutorId::new("t1").unwrap();
    let msg = Message::FrameworkToExecutor {
        framework_id: fw.clone(),
        executor_id: exec.clone(),
        agent_id: agent.clone(),
        data: b"hi".to_vec(),
    };
    let actions = h.send(sched, msg.clone());
    assert_eq!(sent_to(&actions, agent_conn), vec![msg]);
    let back = Message::ExecutorToFramework {
        framework_id: fw.clone(),
        executor_id: exec,
        agent_id: agent.clone(),
        data: b"yo".to_vec(),
    };
    let actions = h.send(agent_conn, back.clone());
    assert_eq!(sent_to(&actions, sched), vec![back]);
    // To an agent the master does not know: an error.
    let lost = Message::FrameworkToExecutor {
        framework_id: fw.clone(),
        executor_id: ExecutorId::new("x").unwrap(),
        agent_id: AgentId::new("agent-nope").unwrap(),
        data: vec![],
    };
    assert_eq!(
        errors(&h.send(sched, lost), sched)[0].0,
        ErrorCode::NotFound
    );
}

#[test]
fn the_completed_ring_is_bounded() {
    let mut h = Harness::with_config(MasterConfig {
        max_completed_tasks: 3,
        ..MasterConfig::default()
    });
    let (agent_conn, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    for i in 0..5 {
        let id = format!("t{i}");
        h.launch(sched, &fw, &agent, &id, "cpus:1");
        h.status(agent_conn, &fw, &id, TaskState::Finished, i);
    }
    let ids: Vec<String> = h
        .core
        .state()
        .completed_tasks
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, vec!["t2", "t3", "t4"]);
    assert_eq!(h.core.counters().tasks_terminal["TASK_FINISHED"], 5);
}

#[test]
fn state_serializes_to_json() {
    let (h, _ac, _agent, _sched, _fw) = running();
    let json = serde_json::to_value(h.core.state()).unwrap();
    assert_eq!(json["tasks"][0]["state"], "TASK_STAGING");
    assert_eq!(json["agents"][0]["used"], "cpus:1");
    assert_eq!(json["frameworks"][0]["active_tasks"], 1);
    assert_eq!(json["counters"]["tasks_launched"], 1);
}
