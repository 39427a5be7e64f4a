use super::*;

#[test]
fn registers_and_retries_until_the_master_answers() {
    let mut a = Agent::new();
    let out = a.handle(Input::MasterConnected);
    let sent = to_master(&out);
    assert_eq!(sent.len(), 1);
    match &sent[0] {
        Message::RegisterAgent {
            hostname,
            endpoint,
            resources,
            ..
        } => {
            assert_eq!(hostname, "node-1");
            assert_eq!(endpoint, "10.0.0.1:5051");
            assert_eq!(resources, &config().resources);
        }
        other => panic!("expected RegisterAgent, got {other:?}"),
    }
    assert_eq!(
        timers(&out),
        vec![(AgentTimer::RetryRegistration, Time(1_000))]
    );

    a.advance(1_000);
    let out = a.handle(Input::Timer(AgentTimer::RetryRegistration));
    assert!(matches!(
        to_master(&out)[..],
        [Message::RegisterAgent { .. }]
    ));
    assert_eq!(
        timers(&out),
        vec![(AgentTimer::RetryRegistration, Time(2_000))]
    );

    let out = a.master(Message::AgentRegistered {
        agent_id: agent_id(),
        ping_interval_ms: 15_000,
    });
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(a.core.agent_id(), Some(&agent_id()));
    // The pending retry timer now does nothing.
    a.advance(1_000);
    assert!(a
        .handle(Input::Timer(AgentTimer::RetryRegistration))
        .is_empty());
    assert_eq!(a.core.counters().registration_attempts, 2);
    assert_eq!(a.core.counters().registrations, 1);
}

#[test]
fn reregisters_with_tasks_and_frameworks_after_reconnecting() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1;mem:128"));
    a.handle(Input::MasterDisconnected);
    let out = a.handle(Input::MasterConnected);
    let sent = to_master(&out);
    let Message::ReregisterAgent {
        agent_id: id,
        tasks,
        frameworks,
        ..
    } = &sent[0]
    else {
        panic!("expected ReregisterAgent, got {sent:?}");
    };
    assert_eq!(id, &agent_id());
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].task.task_id, tid("t1"));
    assert_eq!(tasks[0].executor_id, spec.executor_id);
    assert_eq!(tasks[0].state, TaskState::Staging);
    assert_eq!(frameworks, &vec![framework()]);
    assert!(timers(&out).contains(&(AgentTimer::RetryRegistration, Time(1_000))));

    // Retried as a re-registration, not a fresh one.
    a.advance(1_000);
    let out = a.handle(Input::Timer(AgentTimer::RetryRegistration));
    assert!(matches!(
        to_master(&out)[..],
        [Message::ReregisterAgent { .. }]
    ));
    a.master(Message::AgentRegistered {
        agent_id: agent_id(),
        ping_interval_ms: 15_000,
    });
    assert_eq!(a.core.counters().reregistrations, 1);
    assert!(a.core.state().registered);
}

#[test]
fn a_different_agent_id_on_reregistration_is_refused() {
    let mut a = Agent::registered();
    a.handle(Input::MasterDisconnected);
    a.handle(Input::MasterConnected);
    a.master(Message::AgentRegistered {
        agent_id: AgentId::new("someone-else").unwrap(),
        ping_interval_ms: 15_000,
    });
    assert_eq!(a.core.agent_id(), Some(&agent_id()));
    assert!(!a.core.state().registered);
    // Still retrying.
    a.advance(1_000);
    let out = a.handle(Input::Timer(AgentTimer::RetryRegistration));
    assert!(matches!(
        to_master(&out)[..],
        [Message::ReregisterAgent { .. }]
    ));
}

#[test]
fn ping_answered_only_when_registered() {
    let mut a = Agent::new();
    a.handle(Input::MasterConnected);
    assert!(a.master(Message::Ping).is_empty());
    a.master(Message::AgentRegistered {
        agent_id: agent_id(),
        ping_interval_ms: 15_000,
    });
    assert_eq!(to_master(&a.master(Message::Ping)), vec![Message::Pong]);
    a.handle(Input::MasterDisconnected);
    a.handle(Input::MasterConnected);
    assert!(a.master(Message::Ping).is_empty());
}

#[test]
fn master_errors_are_counted_and_unexpected_messages_refused() {
    let mut a = Agent::registered();
    let out = a.master(Message::fatal(ErrorCode::Forbidden, "go away"));
    assert!(out.is_empty());
    assert_eq!(a.core.counters().master_errors, 1);

    let out = a.master(Message::Heartbeat);
    let sent = to_master(&out);
    assert!(matches!(&sent[..], [m] if is_error(m, false)), "{sent:?}");
    assert_eq!(a.core.counters().invalid_messages, 1);

    // Task commands before registration are refused, not acted on.
    let mut b = Agent::new();
    b.handle(Input::MasterConnected);
    let out = b.run(command_task("t1", "cpus:1"));
    assert!(launches(&out).is_empty());
    assert!(matches!(
        &to_master(&out)[..],
        [Message::Error {
            code: ErrorCode::NotSubscribed,
            ..
        }]
    ));
}
