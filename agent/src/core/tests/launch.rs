use super::*;

fn env_of(spec: &LaunchSpec, name: &str) -> Option<String> {
    let found: Vec<&String> = spec
        .env
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect();
    assert!(found.len() <= 1, "{name} set twice: {:?}", spec.env);
    found.first().map(|v| v.to_string())
}

#[test]
fn run_task_launches_a_command_executor() {
    let mut a = Agent::registered();
    let out = a.run(command_task("t1", "cpus:1;mem:128"));
    let spec = launches(&out).pop().expect("a launch");
    assert_eq!(spec.framework_id, fw_id());
    assert_eq!(spec.executor_id, eid("t1"), "command executor id = task id");
    assert_eq!(spec.argv, vec!["/usr/bin/agora", "executor"]);
    let cid = spec.container_id.clone();
    assert_eq!(spec.sandbox, format!("/var/agora/sandboxes/fw-1/t1/{cid}"));
    assert_eq!(spec.resources, res("cpus:1;mem:128"));
    let want = [
        ("AGORA_AGENT_ENDPOINT", "10.0.0.1:5051".to_string()),
        ("AGORA_FRAMEWORK_ID", "fw-1".to_string()),
        ("AGORA_EXECUTOR_ID", "t1".to_string()),
        ("AGORA_CONTAINER_ID", cid.to_string()),
        ("AGORA_SANDBOX", spec.sandbox.clone()),
        ("AGORA_CLUSTER", CLUSTER.to_string()),
        ("AGORA_SHUTDOWN_GRACE_MS", "3000".to_string()),
        ("AGORA_AGENT_ID", AGENT.to_string()),
    ];
    for (k, v) in want {
        assert_eq!(env_of(&spec, k), Some(v), "{k}");
    }
    assert_eq!(
        timers(&out),
        vec![(
            AgentTimer::ExecutorRegisterTimeout { container_id: cid },
            Time(REGISTER_TIMEOUT_MS)
        )]
    );
    assert!(
        to_master(&out).is_empty(),
        "no update before the executor speaks"
    );
    assert_eq!(a.task_state("t1"), Some(TaskState::Staging));
    assert_eq!(a.used(), "cpus:1;mem:128");
}

#[test]
fn queued_task_is_sent_when_the_executor_registers() {
    let mut a = Agent::registered();
    a.run_new(command_task("t1", "cpus:1"));
    let out = a.register(7, "t1");
    let msgs = to_executor(&out, 7);
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    match &msgs[0] {
        Message::ExecutorRegistered {
            agent_id: id,
            framework: f,
            executor,
        } => {
            assert_eq!(id, &agent_id());
            assert_eq!(f, &framework());
            assert_eq!(executor.executor_id, eid("t1"));
            assert_eq!(executor.command, None);
        }
        other => panic!("expected ExecutorRegistered, got {other:?}"),
    }
    assert!(matches!(&msgs[1], Message::RunTask { task, .. } if task.task_id == tid("t1")));
    assert_eq!(a.core.state().executors[0].status, "registered");
    assert_eq!(a.core.counters().tasks_sent_to_executors, 1);
}

#[test]
fn tasks_of_one_executor_share_its_container() {
    let mut a = Agent::registered();
    let spec = a.run_new(custom_task("t1", "exec-a", "cpus:1;mem:100"));
    assert_eq!(spec.argv, vec!["/bin/sh", "-c", "./my-executor --fast"]);
    assert_eq!(env_of(&spec, "MODE"), Some("fast".into()));
    assert_eq!(
        env_of(&spec, "AGORA_AGENT_ID"),
        Some(AGENT.into()),
        "not spoofable"
    );
    assert_eq!(spec.resources, res("cpus:1.5;mem:228"));

    // A second task before registration queues behind the first: no second container.
    let out = a.run(custom_task("t2", "exec-a", "cpus:1"));
    assert!(launches(&out).is_empty(), "{out:?}");
    let out = a.register(3, "exec-a");
    let run: Vec<TaskId> = to_executor(&out, 3)
        .into_iter()
        .filter_map(|m| match m {
            Message::RunTask { task, .. } => Some(task.task_id),
            _ => None,
        })
        .collect();
    assert_eq!(run, vec![tid("t1"), tid("t2")]);

    // Once registered, new tasks go straight to it.
    let out = a.run(custom_task("t3", "exec-a", "cpus:0.5"));
    assert!(launches(&out).is_empty());
    assert!(
        matches!(&to_executor(&out, 3)[..], [Message::RunTask { task, .. }] if task.task_id == tid("t3"))
    );
    assert_eq!(a.used(), "cpus:3;mem:228");
    let state = a.core.state();
    assert_eq!(state.executors.len(), 1);
    assert_eq!(
        state.executors[0].tasks,
        vec![tid("t1"), tid("t2"), tid("t3")]
    );
}

#[test]
fn wrong_agent_duplicate_and_overcommit_are_rejected() {
    let mut a = Agent::registered();
    let mut wrong = command_task("t0", "cpus:1");
    wrong.agent_id = AgentId::new("agent-2").unwrap();
    let out = a.run(wrong);
    assert!(launches(&out).is_empty());
    let u = updates(&out);
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].state, TaskState::Dropped);
    assert_eq!(u[0].reason.as_deref(), Some("wrong_agent"));
    assert_eq!(u[0].source, UpdateSource::Agent);
    assert_eq!(u[0].agent_id, Some(agent_id()));
    assert!(u[0].uuid.is_some());

    a.run_new(command_task("t1", "cpus:3"));
    // Same id again: refused with an error, never a status update into t1's stream.
    let out = a.run(command_task("t1", "cpus:0.5"));
    assert!(launches(&out).is_empty());
    assert!(updates(&out).is_empty());
    assert!(matches!(&to_master(&out)[..], [m] if is_error(m, false)));

    // 3 of 4 cpus used: 2 more do not fit.
    let out = a.run(command_task("t2", "cpus:2"));
    assert!(launches(&out).is_empty());
    let u = updates(&out);
    assert_eq!(u[0].state, TaskState::Dropped);
    assert_eq!(u[0].reason.as_deref(), Some("insufficient_resources"));
    assert_eq!(a.task_state("t2"), None);
    // One more cpu does.
    a.run_new(command_task("t3", "cpus:1"));
    assert_eq!(a.core.counters().tasks_rejected, 3);
    assert_eq!(a.core.counters().tasks_accepted, 2);
}

#[test]
fn executor_resources_count_against_the_agent() {
    let mut a = Agent::registered();
    // Executor takes cpus:0.5, so a task of 3.6 cpus does not fit beside it on 4 cpus.
    let out = a.run(custom_task("t1", "exec-a", "cpus:3.6"));
    assert_eq!(
        updates(&out)[0].reason.as_deref(),
        Some("insufficient_resources")
    );
    a.run_new(custom_task("t1b", "exec-a", "cpus:3.5"));
    assert_eq!(a.used(), "cpus:4;mem:128");
}

#[test]
fn invalid_tasks_end_in_task_error() {
    let mut a = Agent::registered();
    let mut t = command_task("t1", "cpus:1");
    t.command = None;
    let u = updates(&a.run(t));
    assert_eq!(
        (u[0].state, u[0].reason.as_deref()),
        (TaskState::Error, Some("invalid_task"))
    );

    a.run_new(custom_task("t2", "exec-a", "cpus:1"));
    let mut other = custom_task("t3", "exec-a", "cpus:1");
    if let Some(e) = other.executor.as_mut() {
        e.command = Some(CommandInfo::shell("./something-else"));
    }
    let u = updates(&a.run(other));
    assert_eq!(
        (u[0].state, u[0].reason.as_deref()),
        (TaskState::Error, Some("executor_mismatch"))
    );

    let mut no_fw = framework();
    no_fw.id = None;
    let out = a.master(Message::RunTask {
        framework: no_fw,
        task: command_task("t4", "cpus:1"),
    });
    assert!(matches!(&to_master(&out)[..], [m] if is_error(m, false)));
}

#[test]
fn container_ids_are_unique_and_pid_is_recorded() {
    let mut a = Agent::registered();
    let s1 = a.run_new(command_task("t1", "cpus:1"));
    let s2 = a.run_new(command_task("t2", "cpus:1"));
    assert_ne!(s1.container_id, s2.container_id);
    let out = a.handle(Input::ContainerLaunched {
        container_id: s1.container_id.clone(),
        pid: 4242,
        sandbox: s1.sandbox.clone(),
    });
    assert!(out.is_empty());
    let state = a.core.state();
    let e = state
        .executors
        .iter()
        .find(|e| e.container_id == s1.container_id)
        .expect("executor in state");
    assert_eq!(e.pid, Some(4242));
    assert_eq!(e.queued_tasks, vec![tid("t1")]);

    // A container nobody asked for is killed.
    let stray = ContainerId::new("ctr-stray").unwrap();
    let out = a.handle(Input::ContainerLaunched {
        container_id: stray.clone(),
        pid: 1,
        sandbox: String::new(),
    });
    assert_eq!(kills(&out), vec![(stray, 0)]);
}
