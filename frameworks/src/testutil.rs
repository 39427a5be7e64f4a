//! Helpers for driving frameworks by hand in tests.

use agora_actors::sdk::{Call, SchedulerCtx};
use agora_actors::{
    AgentId, ExecutorId, FrameworkId, Offer, OfferId, Operation, Resources, TaskId, TaskInfo,
    TaskState, TaskStatus, Time, UpdateSource,
};

pub fn r(s: &str) -> Resources {
    Resources::parse(s).unwrap()
}

pub fn tid(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

pub fn fid() -> FrameworkId {
    FrameworkId::new("f1").unwrap()
}

pub fn ctx(now_ms: u64) -> SchedulerCtx {
    SchedulerCtx::new(Time(now_ms), Some(fid()))
}

pub fn offer(id: &str, agent: &str, resources: &str) -> Offer {
    Offer {
        id: OfferId::new(id).unwrap(),
        framework_id: fid(),
        agent_id: AgentId::new(agent).unwrap(),
        hostname: format!("host-{agent}"),
        resources: r(resources),
        attributes: Default::default(),
        executor_ids: vec![],
    }
}

pub fn offer_with_executor(id: &str, agent: &str, resources: &str, exec: &str) -> Offer {
    Offer {
        executor_ids: vec![ExecutorId::new(exec).unwrap()],
        ..offer(id, agent, resources)
    }
}

pub fn status(task: &TaskId, state: TaskState) -> TaskStatus {
    let mut s = TaskStatus::new(task.clone(), state, UpdateSource::Executor);
    s.agent_id = Some(AgentId::new("a1").unwrap());
    s
}

/// Tasks launched by the ctx's accepts, per offer id.
pub fn launched(c: &SchedulerCtx) -> Vec<(String, Vec<TaskInfo>)> {
    c.calls
        .iter()
        .filter_map(|call| match call {
            Call::Accept {
                offer_ids,
                operations,
                ..
            } => {
                let tasks = operations
                    .iter()
                    .flat_map(|op| match op {
                        Operation::Launch { tasks } => tasks.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                Some((offer_ids[0].to_string(), tasks))
            }
            _ => None,
        })
        .collect()
}

pub fn launched_ids(c: &SchedulerCtx) -> Vec<String> {
    launched(c)
        .into_iter()
        .flat_map(|(_, ts)| ts.into_iter().map(|t| t.task_id.to_string()))
        .collect()
}

pub fn declined(c: &SchedulerCtx) -> Vec<(String, f64)> {
    c.calls
        .iter()
        .filter_map(|call| match call {
            Call::Decline { offer_ids, filters } => {
                Some((offer_ids[0].to_string(), filters.refuse_seconds))
            }
            _ => None,
        })
        .collect()
}

pub fn has(c: &SchedulerCtx, want: &Call) -> bool {
    c.calls.iter().any(|call| call == want)
}
