use super::*;

fn refused(out: &[Action], conn: ConnId) -> bool {
    matches!(&to_executor(out, conn)[..], [m] if is_error(m, true))
        && out.last() == Some(&Action::CloseExecutor { conn })
}

#[test]
fn unknown_executor_registration_is_refused() {
    let mut a = Agent::registered();
    let out = a.register(5, "nope");
    assert!(refused(&out, 5), "{out:?}");
    assert_eq!(a.core.counters().invalid_messages, 1);
    // The connection is forgotten: anything further is refused again.
    let out = a.exec_update(5, "t1", TaskState::Running, 1);
    assert!(refused(&out, 5), "{out:?}");
}

#[test]
fn executor_cannot_register_twice() {
    let mut a = Agent::registered();
    a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    let out = a.register(8, "t1");
    assert!(refused(&out, 8), "{out:?}");
    assert_eq!(a.core.state().executors[0].status, "registered");
}

#[test]
fn wrong_peers_and_early_messages_are_refused() {
    let mut a = Agent::registered();
    let out = a.handle(Input::ExecutorConnected {
        conn: 1,
        peer: Hello::new(CLUSTER, NodeKind::Scheduler, "sched"),
    });
    assert!(refused(&out, 1));
    let out = a.handle(Input::ExecutorConnected {
        conn: 2,
        peer: Hello::new("other-cluster", NodeKind::Executor, "e"),
    });
    assert!(matches!(
        &to_executor(&out, 2)[..],
        [Message::Error {
            code: ErrorCode::ClusterMismatch,
            fatal: true,
            ..
        }]
    ));
    a.executor_hello(3);
    let out = a.exec_update(3, "t1", TaskState::Running, 1);
    assert!(refused(&out, 3), "update before registering: {out:?}");
    let out = a.handle(Input::FromExecutor {
        conn: 99,
        msg: Message::Pong,
    });
    assert!(refused(&out, 99), "unknown connection: {out:?}");
    assert_eq!(a.core.counters().invalid_messages, 4);
}

#[test]
fn bad_messages_from_a_registered_executor_get_errors_not_panics() {
    let mut a = Agent::registered();
    a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");

    let out = a.handle(Input::FromExecutor {
        conn: 7,
        msg: Message::Ping,
    });
    assert!(matches!(&to_executor(&out, 7)[..], [m] if is_error(m, false)));

    // A task this executor does not run: acked (so it stops retrying) and refused.
    let out = a.exec_update(7, "other", TaskState::Running, 1);
    let msgs = to_executor(&out, 7);
    assert!(matches!(msgs[0], Message::StatusUpdateAck { uuid: 1, .. }));
    assert!(is_error(&msgs[1], false));
    assert!(updates(&out).is_empty());

    // No uuid: cannot be acknowledged, refused.
    let out = a.handle(Input::FromExecutor {
        conn: 7,
        msg: Message::StatusUpdate {
            framework_id: fw_id(),
            status: TaskStatus::new(tid("t1"), TaskState::Running, UpdateSource::Executor),
        },
    });
    assert!(matches!(&to_executor(&out, 7)[..], [m] if is_error(m, false)));

    // Another framework's task.
    let mut status = TaskStatus::new(tid("t1"), TaskState::Running, UpdateSource::Executor);
    status.uuid = Some(3);
    let out = a.handle(Input::FromExecutor {
        conn: 7,
        msg: Message::StatusUpdate {
            framework_id: FrameworkId::new("fw-2").unwrap(),
            status,
        },
    });
    assert!(matches!(&to_executor(&out, 7)[..], [m] if is_error(m, false)));
    assert_eq!(a.task_state("t1"), Some(TaskState::Staging));
    assert_eq!(a.core.counters().invalid_messages, 4);
}

#[test]
fn framework_messages_are_relayed_both_ways() {
    let mut a = Agent::registered();
    a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    let to_exec = Message::FrameworkToExecutor {
        framework_id: fw_id(),
        executor_id: eid("t1"),
        agent_id: agent_id(),
        data: b"hello".to_vec(),
    };
    let out = a.master(to_exec.clone());
    assert_eq!(to_executor(&out, 7), vec![to_exec]);

    let out = a.master(Message::FrameworkToExecutor {
        framework_id: fw_id(),
        executor_id: eid("absent"),
        agent_id: agent_id(),
        data: vec![],
    });
    assert!(out.is_empty());
    assert_eq!(a.core.counters().messages_dropped, 1);

    let out = a.handle(Input::FromExecutor {
        conn: 7,
        msg: Message::ExecutorToFramework {
            framework_id: fw_id(),
            executor_id: eid("t1"),
            agent_id: AgentId::new("whatever").unwrap(),
            data: b"reply".to_vec(),
        },
    });
    assert_eq!(
        to_master(&out),
        vec![Message::ExecutorToFramework {
            framework_id: fw_id(),
            executor_id: eid("t1"),
            agent_id: agent_id(),
            data: b"reply".to_vec(),
        }]
    );

    // Posing as another executor is refused.
    let out = a.handle(Input::FromExecutor {
        conn: 7,
        msg: Message::ExecutorToFramework {
            framework_id: fw_id(),
            executor_id: eid("t2"),
            agent_id: agent_id(),
            data: vec![],
        },
    });
    assert!(to_master(&out).is_empty());
    assert!(matches!(&to_executor(&out, 7)[..], [m] if is_error(m, false)));
}

#[test]
fn state_is_a_json_snapshot() {
    let mut a = Agent::registered();
    let spec = a.run_new(command_task("t1", "cpus:1;mem:64"));
    a.register(7, "t1");
    a.handle(Input::ContainerLaunched {
        container_id: spec.container_id.clone(),
        pid: 321,
        sandbox: spec.sandbox.clone(),
    });
    a.exec_update(7, "t1", TaskState::Running, 1);
    let v = serde_json::to_value(a.core.state()).expect("serialisable");
    assert_eq!(v["id"], AGENT);
    assert_eq!(v["registered"], true);
    assert_eq!(v["resources"]["used"], "cpus:1;mem:64");
    assert_eq!(
        v["resources"]["free"],
        "cpus:3;disk:10000;mem:4032;ports:[31000-32000]"
    );
    assert_eq!(v["frameworks"][0]["id"], "fw-1");
    assert_eq!(v["executors"][0]["pid"], 321);
    assert_eq!(
        v["executors"][0]["container_id"],
        spec.container_id.as_str()
    );
    assert_eq!(v["executors"][0]["tasks"][0], "t1");
    assert_eq!(v["tasks"][0]["state"], "TASK_RUNNING");
    assert_eq!(v["pending_updates"], 1);
    let c = serde_json::to_value(a.core.counters()).expect("serialisable");
    assert_eq!(c["status_updates_received"], 1);
}

#[test]
fn same_inputs_give_same_actions() {
    let script = |a: &mut Agent| -> Vec<Action> {
        let mut all = vec![];
        all.extend(a.run(command_task("t1", "cpus:1")));
        all.extend(a.master(Message::KillTask {
            framework_id: fw_id(),
            task_id: tid("t1"),
            grace_ms: 10,
        }));
        all.extend(a.master(Message::KillTask {
            framework_id: fw_id(),
            task_id: tid("nope"),
            grace_ms: 10,
        }));
        all
    };
    let (mut x, mut y) = (Agent::registered(), Agent::registered());
    assert_eq!(script(&mut x), script(&mut y));
}
