//! A batch job driven end to end through the pure scheduler driver, with the test playing the
//! master: subscribe, offers, launches, updates (with a duplicate), acknowledgements, teardown.

use agora_actors::sdk::driver::{DriverAction, SchedulerDriverConfig, SchedulerDriverCore};
use agora_actors::*;
use agora_frameworks::{BatchConfig, BatchFramework};

fn sends(actions: &[DriverAction]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            DriverAction::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn offer(id: &str, agent: &str) -> Offer {
    Offer {
        id: OfferId::new(id).unwrap(),
        framework_id: FrameworkId::new("fw-1").unwrap(),
        agent_id: AgentId::new(agent).unwrap(),
        hostname: agent.to_string(),
        resources: Resources::parse("cpus:2;mem:2048").unwrap(),
        attributes: Default::default(),
        executor_ids: vec![],
    }
}

fn update(task: &TaskId, state: TaskState, uuid: u64) -> Message {
    let mut status = TaskStatus::new(task.clone(), state, UpdateSource::Executor);
    status.agent_id = Some(AgentId::new("a1").unwrap());
    status.uuid = Some(uuid);
    Message::Update { status }
}

#[test]
fn batch_job_runs_to_completion_through_the_driver_core() {
    let mut cfg = BatchConfig::new(
        "pipeline",
        3,
        CommandInfo::shell("true"),
        Resources::parse("cpus:1;mem:256").unwrap(),
    );
    cfg.sample_interval_ms = 0;
    let batch = BatchFramework::new(cfg).unwrap();
    let mut core = SchedulerDriverCore::new(batch, SchedulerDriverConfig::default());

    let out = core.handle_connected(Time(0));
    assert!(matches!(sends(&out)[0], Message::Subscribe { .. }));
    core.handle_message(
        Time(1),
        Message::Subscribed {
            framework_id: FrameworkId::new("fw-1").unwrap(),
            heartbeat_interval_ms: 0,
        },
    );

    // Two agents with room for two tasks each: three tasks placed, then offers suppressed.
    let out = core.handle_message(
        Time(2),
        Message::Offers {
            offers: vec![offer("o1", "a1"), offer("o2", "a2")],
        },
    );
    let msgs = sends(&out);
    let mut launched = Vec::new();
    for m in &msgs {
        if let Message::Accept { operations, .. } = m {
            for op in operations {
                if let Operation::Launch { tasks } = op {
                    launched.extend(tasks.iter().map(|t| t.task_id.clone()));
                }
            }
        }
    }
    assert_eq!(launched.len(), 3);
    assert!(msgs.iter().any(|m| matches!(m, Message::Suppress { .. })));

    let mut uuid = 100;
    for task in &launched {
        for state in [TaskState::Running, TaskState::Finished] {
            uuid += 1;
            let out = core.handle_message(Time(10 + uuid), update(task, state, uuid));
            assert!(sends(&out)
                .iter()
                .any(|m| matches!(m, Message::Acknowledge { uuid: u, .. } if *u == uuid)));
            // The agent retries an update: acknowledged again, counted once (until the driver
            // has stopped, after which it answers nothing).
            let again = core.handle_message(Time(10 + uuid), update(task, state, uuid));
            let expected = if core.stopped().is_some() { 0 } else { 1 };
            assert_eq!(sends(&again).len(), expected);
            if let Some(DriverAction::Stop { code }) = out.last() {
                assert_eq!(*code, 0);
                assert!(sends(&out)
                    .iter()
                    .any(|m| matches!(m, Message::Teardown { .. })));
            }
        }
    }
    assert_eq!(core.stopped(), Some(0));
    let p = core.scheduler().progress();
    assert_eq!((p.finished, p.total), (3, 3));
    assert_eq!(core.stats().duplicate_updates, 5);
    assert_eq!(core.stats().updates, 6);
}
