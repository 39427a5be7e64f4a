use super::*;

fn kill(a: &mut Agent, task: &str, grace_ms: u64) -> Vec<Action> {
    a.master(Message::KillTask {
        framework_id: fw_id(),
        task_id: tid(task),
        grace_ms,
    })
}

#[test]
fn container_exit_fails_tasks_that_had_not_ended() {
    let mut a = Agent::registered();
    let spec = a.run_new(custom_task("t1", "exec-a", "cpus:1"));
    a.run(custom_task("t2", "exec-a", "cpus:1"));
    a.register(7, "exec-a");
    a.exec_update(7, "t1", TaskState::Finished, 1);
    a.exec_update(7, "t2", TaskState::Running, 2);
    assert_eq!(a.used(), "cpus:1.5;mem:128");

    let out = a.exited(&spec.container_id, None, Some(9), Some("memory limit"));
    assert!(out.contains(&Action::CloseExecutor { conn: 7 }));
    assert!(
        updates(&out).is_empty(),
        "t2's failure waits behind its unacknowledged RUNNING"
    );
    assert_eq!(a.task_state("t2"), Some(TaskState::Failed));
    assert_eq!(
        a.task_state("t1"),
        Some(TaskState::Finished),
        "first terminal state wins"
    );
    assert_eq!(a.used(), "", "executor and tasks released");
    assert!(a.core.state().executors.is_empty());
    let u = updates(&a.ack("t2", 2));
    assert_eq!(u.len(), 1);
    let t2 = &u[0];
    assert_eq!(t2.state, TaskState::Failed);
    assert_eq!(t2.reason.as_deref(), Some("memory limit"));
    assert!(t2.message.contains("signal 9"), "{}", t2.message);
    assert_eq!(t2.source, UpdateSource::Agent);
    assert_eq!(t2.sandbox.as_deref(), Some(spec.sandbox.as_str()));
}

#[test]
fn container_exit_without_reason_reports_executor_terminated() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    let out = a.exited(&spec.container_id, Some(137), None, None);
    let u = updates(&out);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, TaskState::Failed);
    assert_eq!(u[0].reason.as_deref(), Some("executor_terminated"));
    assert_eq!(u[0].exit_code, Some(137));
    assert!(u[0].message.contains("code 137"), "{}", u[0].message);
}

#[test]
fn kill_of_a_running_task_is_forwarded_and_ends_killed() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    let out = kill(&mut a, "t1", 5_000);
    assert_eq!(
        to_executor(&out, 7),
        vec![Message::KillTask {
            framework_id: fw_id(),
            task_id: tid("t1"),
            grace_ms: 5_000
        }]
    );
    assert!(updates(&out).is_empty(), "the executor reports the outcome");
    // The executor dies before reporting: the task still ends KILLED, as asked.
    let u = updates(&a.exited(&spec.container_id, None, Some(15), None));
    assert_eq!(
        (u[0].state, u[0].reason.as_deref()),
        (TaskState::Killed, Some("killed"))
    );
}

#[test]
fn kill_of_a_queued_task_is_answered_by_the_agent() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    let out = kill(&mut a, "t1", 1_000);
    let u = updates(&out);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, TaskState::Killed);
    assert_eq!(u[0].source, UpdateSource::Agent);
    // Its executor has nothing left to run: the container goes too.
    assert_eq!(kills(&out), vec![(spec.container_id.clone(), 3_000)]);
    assert_eq!(
        a.used(),
        "",
        "task ended; executor has no resources of its own"
    );
    // If it registers meanwhile, it is refused (it is shutting down).
    let out = a.register(7, "t1");
    assert!(matches!(&to_executor(&out, 7)[..], [m] if is_error(m, true)));
    let out = a.exited(&spec.container_id, None, Some(15), None);
    assert!(updates(&out).is_empty());
}

#[test]
fn kill_of_an_unknown_task_reports_it_lost_once() {
    let mut a = Agent::registered();
    let u = updates(&kill(&mut a, "ghost", 0));
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].state, u[0].reason.as_deref()),
        (TaskState::Lost, Some("unknown_task"))
    );
    let uuid = u[0].uuid.expect("agent updates carry a uuid");
    assert!(
        kill(&mut a, "ghost", 0).is_empty(),
        "already reported, unacknowledged"
    );
    a.ack("ghost", uuid);
    assert_eq!(a.core.state().pending_updates, 0);
}

#[test]
fn shutdown_framework_stops_all_its_executors() {
    let mut a = Agent::registered();
    let s1 = a.run_new(custom_task("t1", "exec-a", "cpus:1"));
    let s2 = a.run_new(command_task("t2", "cpus:1"));
    a.register(7, "exec-a");
    let out = a.master(Message::ShutdownFramework {
        framework_id: fw_id(),
    });
    assert_eq!(
        to_executor(&out, 7),
        vec![Message::ShutdownExecutor { grace_ms: 3_000 }]
    );
    let mut want = vec![
        (s1.container_id.clone(), 3_000),
        (s2.container_id.clone(), 3_000),
    ];
    want.sort();
    let mut got = kills(&out);
    got.sort();
    assert_eq!(got, want);
    // New tasks for a terminating executor are dropped.
    let u = updates(&a.run(custom_task("t3", "exec-a", "cpus:1")));
    assert_eq!(
        (u[0].state, u[0].reason.as_deref()),
        (TaskState::Dropped, Some("executor_terminating"))
    );

    let u1 = updates(&a.exited(&s1.container_id, None, Some(15), None));
    let u2 = updates(&a.exited(&s2.container_id, None, Some(9), None));
    assert_eq!(u1[0].state, TaskState::Killed);
    assert_eq!(u2[0].state, TaskState::Killed);
    assert_eq!(a.task_state("t2"), Some(TaskState::Killed));
    assert_eq!(a.used(), "");
}

#[test]
fn executor_that_never_registers_is_killed_and_its_tasks_fail() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    let timer = AgentTimer::ExecutorRegisterTimeout {
        container_id: spec.container_id.clone(),
    };
    a.advance(REGISTER_TIMEOUT_MS - 1);
    assert!(
        a.handle(Input::Timer(timer.clone())).is_empty(),
        "not due yet"
    );
    a.advance(1);
    let out = a.handle(Input::Timer(timer.clone()));
    assert_eq!(kills(&out), vec![(spec.container_id.clone(), 3_000)]);
    let u = updates(&out);
    assert_eq!(u.len(), 1);
    assert_eq!(
        (u[0].state, u[0].reason.as_deref()),
        (TaskState::Failed, Some("executor_register_timeout"))
    );
    assert_eq!(a.core.counters().executor_register_timeouts, 1);
    // A late firing does nothing, and the exit adds nothing.
    assert!(a.handle(Input::Timer(timer)).is_empty());
    assert!(updates(&a.exited(&spec.container_id, None, Some(15), None)).is_empty());
    assert_eq!(a.used(), "");
}

#[test]
fn registered_executor_ignores_its_launch_timeout() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    a.advance(REGISTER_TIMEOUT_MS);
    let out = a.handle(Input::Timer(AgentTimer::ExecutorRegisterTimeout {
        container_id: spec.container_id,
    }));
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn container_launch_failure_fails_its_tasks() {
    let mut a = Agent::registered();
    let spec = a.run_new(custom_task("t1", "exec-a", "cpus:1"));
    a.run(custom_task("t2", "exec-a", "cpus:1"));
    let out = a.handle(Input::ContainerLaunchFailed {
        container_id: spec.container_id.clone(),
        error: "no such file: ./my-executor".into(),
    });
    let u = updates(&out);
    assert_eq!(u.len(), 2);
    for s in &u {
        assert_eq!(s.state, TaskState::Failed);
        assert_eq!(s.reason.as_deref(), Some("container_launch_failed"));
        assert!(s.message.contains("no such file"));
    }
    assert_eq!(a.used(), "");
    assert!(a.core.state().executors.is_empty());
    assert_eq!(a.core.counters().container_launch_failures, 1);
}

#[test]
fn disconnected_executor_may_come_back_and_gets_deferred_kills() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    a.advance(100);
    let out = a.handle(Input::ExecutorDisconnected { conn: 7 });
    let deadline = Time(100 + REGISTER_TIMEOUT_MS);
    assert_eq!(
        timers(&out),
        vec![(
            AgentTimer::ExecutorRegisterTimeout {
                container_id: spec.container_id.clone()
            },
            deadline
        )]
    );
    assert_eq!(a.core.state().executors[0].status, "disconnected");
    let out = kill(&mut a, "t1", 2_000);
    assert!(out.is_empty(), "deferred: {out:?}");
    let out = a.register(8, "t1");
    let msgs = to_executor(&out, 8);
    assert!(matches!(msgs[0], Message::ExecutorRegistered { .. }));
    assert!(msgs.contains(&Message::KillTask {
        framework_id: fw_id(),
        task_id: tid("t1"),
        grace_ms: 2_000
    }));
    assert!(
        !msgs.iter().any(|m| matches!(m, Message::RunTask { .. })),
        "t1 was delivered before"
    );
}

#[test]
fn disconnected_executor_that_stays_away_is_killed() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    a.exec_update(7, "t1", TaskState::Running, 1);
    a.handle(Input::ExecutorDisconnected { conn: 7 });
    a.advance(REGISTER_TIMEOUT_MS);
    let out = a.handle(Input::Timer(AgentTimer::ExecutorRegisterTimeout {
        container_id: spec.container_id.clone(),
    }));
    assert_eq!(kills(&out).len(), 1);
    a.exited(&spec.container_id, None, Some(15), None);
    assert_eq!(a.task_state("t1"), Some(TaskState::Failed));
}
