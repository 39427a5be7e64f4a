use super::*;
use agora_actors::time::backoff_ms;

/// Registered agent with task `t1` (cpus:1) running in a registered command executor on conn 7.
fn running() -> (Agent, LaunchSpec) {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    (a, spec)
}

fn retry_at(out: &[Action]) -> Option<Time> {
    timers(out)
        .into_iter()
        .find(|(t, _)| *t == AgentTimer::RetryStatusUpdates)
        .map(|(_, at)| at)
}

#[test]
fn executor_update_is_acknowledged_and_forwarded() {
    let (mut a, spec) = running();
    let out = a.exec_update(7, "t1", TaskState::Running, 100);
    let ack = Message::StatusUpdateAck {
        framework_id: fw_id(),
        task_id: tid("t1"),
        uuid: 100,
    };
    assert_eq!(to_executor(&out, 7), vec![ack.clone()]);
    // The executor's ack comes first: the agent owns the update from here on.
    assert_eq!(out[0], Action::SendExecutor { conn: 7, msg: ack });
    let u = updates(&out);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, TaskState::Running);
    assert_eq!(u[0].uuid, Some(100));
    assert_eq!(u[0].agent_id, Some(agent_id()));
    assert_eq!(u[0].executor_id, Some(eid("t1")));
    assert_eq!(u[0].sandbox, Some(spec.sandbox));
    assert_eq!(u[0].source, UpdateSource::Executor);
    let at = retry_at(&out).expect("retry timer");
    assert!((500..=625).contains(&at.ms()), "{at:?}");
    assert_eq!(a.task_state("t1"), Some(TaskState::Running));
    assert_eq!(a.core.state().pending_updates, 1);
}

#[test]
fn unacknowledged_head_is_resent_with_growing_backoff() {
    let (mut a, _) = running();
    let out = a.exec_update(7, "t1", TaskState::Running, 100);
    let mut at = retry_at(&out).expect("retry timer");
    // Early (spurious) firing re-sends nothing.
    let out = a.handle(Input::Timer(AgentTimer::RetryStatusUpdates));
    assert!(updates(&out).is_empty());
    let mut delays = vec![];
    for attempt in 1..=6u32 {
        a.now = at;
        let out = a.handle(Input::Timer(AgentTimer::RetryStatusUpdates));
        let u = updates(&out);
        assert_eq!(u.len(), 1, "attempt {attempt}: {out:?}");
        assert_eq!(u[0].uuid, Some(100));
        let next = retry_at(&out).expect("re-armed");
        let delay = next.since(at);
        assert_eq!(delay, backoff_ms(attempt, 500, 10_000, 100));
        delays.push(delay);
        at = next;
    }
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    assert!(
        delays[0] >= 1_000 && *delays.last().unwrap() <= 12_500,
        "{delays:?}"
    );
    assert_eq!(a.core.counters().status_update_retries, 6);
}

#[test]
fn master_ack_advances_the_stream() {
    let (mut a, _) = running();
    let out = a.exec_update(7, "t1", TaskState::Running, 1);
    assert_eq!(updates(&out).len(), 1);
    let out = a.exec_update(7, "t1", TaskState::Finished, 2);
    assert!(updates(&out).is_empty(), "only the head is in flight");
    assert_eq!(
        to_executor(&out, 7).len(),
        1,
        "but the executor is acked at once"
    );

    // An ack for the second one is not for the head: stale.
    assert!(updates(&a.ack("t1", 2)).is_empty());
    assert_eq!(a.core.counters().stale_acks, 1);
    let out = a.ack("t1", 1);
    let u = updates(&out);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].state, u[0].uuid), (TaskState::Finished, Some(2)));
    // A duplicate ack of the first changes nothing.
    assert!(a.ack("t1", 1).is_empty());
    assert_eq!(a.core.counters().stale_acks, 2);
}

#[test]
fn terminal_update_frees_resources_and_its_ack_removes_the_task() {
    let (mut a, spec) = running();
    assert_eq!(a.used(), "cpus:1");
    a.exec_update(7, "t1", TaskState::Running, 1);
    a.ack("t1", 1);
    a.exec_update(7, "t1", TaskState::Finished, 2);
    // The process is gone: the master may re-offer these now, so the agent frees them too.
    assert_eq!(a.used(), "");
    assert_eq!(a.core.state().tasks[0].state, "TASK_FINISHED");
    a.ack("t1", 2);
    assert!(a.core.state().tasks.is_empty());
    assert_eq!(a.core.state().pending_updates, 0);
    // The command executor exits after its task: nothing of the framework is left.
    let out = a.exited(&spec.container_id, Some(0), None, None);
    assert!(updates(&out).is_empty(), "no update for a finished task");
    assert_eq!(out, vec![Action::CloseExecutor { conn: 7 }]);
    let state = a.core.state();
    assert!(state.executors.is_empty() && state.frameworks.is_empty());
    // And the whole agent is free again.
    a.run_new(command_task("t2", "cpus:4"));
}

#[test]
fn updates_made_while_disconnected_are_delivered_after_reregistration() {
    let (mut a, _) = running();
    a.handle(Input::MasterDisconnected);
    let out = a.exec_update(7, "t1", TaskState::Running, 5);
    assert_eq!(to_executor(&out, 7).len(), 1, "executor still acked");
    assert!(updates(&out).is_empty());
    a.advance(60_000);
    assert!(updates(&a.handle(Input::Timer(AgentTimer::RetryStatusUpdates))).is_empty());

    let out = a.handle(Input::MasterConnected);
    assert!(updates(&out).is_empty(), "not before re-registration");
    let out = a.master(Message::AgentRegistered {
        agent_id: agent_id(),
        ping_interval_ms: 15_000,
    });
    let u = updates(&out);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].state, u[0].uuid), (TaskState::Running, Some(5)));
    assert!(retry_at(&out).is_some());
    a.ack("t1", 5);
    assert_eq!(a.core.state().pending_updates, 0);
}

#[test]
fn executor_retries_are_acked_but_forwarded_once() {
    let (mut a, _) = running();
    a.exec_update(7, "t1", TaskState::Running, 9);
    let out = a.exec_update(7, "t1", TaskState::Running, 9);
    assert_eq!(to_executor(&out, 7).len(), 1);
    assert!(updates(&out).is_empty());
    assert_eq!(a.core.state().pending_updates, 1);
    assert_eq!(a.core.counters().duplicate_status_updates, 1);

    // After a terminal state, further updates are acked and dropped.
    a.exec_update(7, "t1", TaskState::Failed, 10);
    let out = a.exec_update(7, "t1", TaskState::Running, 11);
    assert_eq!(to_executor(&out, 7).len(), 1);
    assert_eq!(a.task_state("t1"), Some(TaskState::Failed));
    assert_eq!(a.core.state().pending_updates, 2);
}

#[test]
fn pending_updates_are_bounded_without_losing_terminal_ones() {
    let mut cfg = config();
    cfg.max_pending_updates = 2;
    let mut a = Agent::with_config(cfg);
    a.handle(Input::MasterConnected);
    a.master(Message::AgentRegistered {
        agent_id: agent_id(),
        ping_interval_ms: 15_000,
    });
    a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    a.handle(Input::MasterDisconnected);
    a.exec_update(7, "t1", TaskState::Starting, 1);
    a.exec_update(7, "t1", TaskState::Running, 2);
    a.exec_update(7, "t1", TaskState::Finished, 3);
    assert_eq!(a.core.counters().status_updates_dropped, 1);
    assert_eq!(a.core.state().pending_updates, 2);
    a.handle(Input::MasterConnected);
    let out = a.master(Message::AgentRegistered {
        agent_id: agent_id(),
        ping_interval_ms: 15_000,
    });
    // STARTING (the oldest non-terminal) was dropped; RUNNING is the head now.
    assert_eq!(updates(&out)[0].uuid, Some(2));
    let out = a.ack("t1", 2);
    assert_eq!(updates(&out)[0].state, TaskState::Finished);
}
