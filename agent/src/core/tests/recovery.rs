use super::*;

/// A restarted core from a checkpoint re-registers with its old id and the running task,
/// re-sends the unacknowledged update (same uuid), and takes the executor back when it
/// registers again.
#[test]
fn checkpoint_round_trip_resumes_tasks_and_pending_updates() {
    let mut a = Agent::registered();
    a.run_new(command_task("t1", "cpus:1"));
    a.register(7, "t1");
    a.exec_update(7, "t1", TaskState::Running, 100);
    let checkpoint = a.core.checkpoint();
    // Through the codec, as the shell stores it.
    let bytes = agora_actors::codec::encode_value(&checkpoint).expect("serialize");
    let back: CoreCheckpoint = agora_actors::codec::decode_value(&bytes).expect("deserialize");
    assert_eq!(back, checkpoint);
    assert_eq!(back.pending_updates.len(), 1);

    let (core, out) = AgentCore::recover(config(), 43, Time::ZERO, back);
    assert!(timers(&out)
        .iter()
        .any(|(t, _)| matches!(t, AgentTimer::ExecutorRegisterTimeout { .. })));
    let mut b = Agent {
        core,
        now: Time::ZERO,
    };
    let out = b.handle(Input::MasterConnected);
    let reg = to_master(&out);
    let Some(Message::ReregisterAgent {
        agent_id: id,
        tasks,
        ..
    }) = reg.first()
    else {
        panic!("expected ReregisterAgent, got {reg:?}");
    };
    assert_eq!(*id, agent_id());
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].state, TaskState::Running);
    let out = b.master(Message::AgentRegistered {
        agent_id: agent_id(),
        ping_interval_ms: 15_000,
    });
    let resent = updates(&out);
    assert_eq!(resent.len(), 1, "{out:?}");
    assert_eq!(resent[0].uuid, Some(100));
    b.register(9, "t1");
    assert_eq!(b.task_state("t1"), Some(TaskState::Running));
}

/// Found by the simulator (faults-ha seed 187): the agent died while a container launch was
/// in flight (no pid checkpointed). That launch died with it, so the recovered core ends the
/// task `TASK_LOST` (container lost) at once instead of waiting for an executor that never
/// comes and failing the task after the register timeout.
#[test]
fn a_launch_cut_short_by_a_restart_is_lost_not_failed() {
    let mut a = Agent::registered();
    a.run_new(command_task("t1", "cpus:1"));
    let checkpoint = a.core.checkpoint();
    assert!(checkpoint.executors.iter().all(|e| e.pid.is_none()));
    let (core, _out) = AgentCore::recover(config(), 43, Time::ZERO, checkpoint);
    let b = Agent {
        core,
        now: Time::ZERO,
    };
    assert_eq!(b.task_state("t1"), Some(TaskState::Lost));
}
