//! What the agent checkpoints to survive a restart, and rebuilding a core from it.
//!
//! A checkpoint holds no `Time`: clock readings of the previous process mean nothing to the
//! next one, so deadlines are set afresh from `now` on recovery. Connections are gone too:
//! every executor comes back `Disconnected` and has the usual re-registration timeout.

use super::executors::{ExecPhase, ExecutorRecord};
use super::tasks::TaskRecord;
use super::{Action, AgentConfig, AgentCore, AgentTimer, Input};
use agora_actors::{
    AgentId, ContainerId, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, TaskId, TaskInfo,
    TaskState, TaskStatus, Time,
};
use serde::{Deserialize, Serialize};

/// Everything of the core that must survive an agent restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreCheckpoint {
    pub agent_id: Option<AgentId>,
    pub frameworks: Vec<(FrameworkId, FrameworkInfo)>,
    pub executors: Vec<ExecutorCheckpoint>,
    pub tasks: Vec<TaskCheckpoint>,
    /// Status updates the master has not acknowledged, oldest first (uuids included).
    pub pending_updates: Vec<(FrameworkId, TaskStatus)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutorCheckpoint {
    pub framework_id: FrameworkId,
    pub info: ExecutorInfo,
    pub container_id: ContainerId,
    pub sandbox: String,
    pub pid: Option<i32>,
    pub queued: Vec<TaskId>,
    pub tasks: Vec<TaskId>,
    /// A kill was under way.
    pub terminating: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCheckpoint {
    pub framework_id: FrameworkId,
    pub info: TaskInfo,
    pub executor_id: ExecutorId,
    pub state: TaskState,
    pub kill_grace_ms: Option<u64>,
}

impl AgentCore {
    /// The state to persist now.
    pub fn checkpoint(&self) -> CoreCheckpoint {
        CoreCheckpoint {
            agent_id: self.reg.agent_id.clone(),
            frameworks: self.frameworks.clone().into_iter().collect(),
            executors: self
                .executors
                .iter()
                .map(|((fw, _), e)| ExecutorCheckpoint {
                    framework_id: fw.clone(),
                    info: e.info.clone(),
                    container_id: e.container_id.clone(),
                    sandbox: e.sandbox.clone(),
                    pid: e.pid,
                    queued: e.queued.clone(),
                    tasks: e.tasks.iter().cloned().collect(),
                    terminating: e.termination.is_some(),
                })
                .collect(),
            tasks: self
                .tasks
                .iter()
                .map(|((fw, _), t)| TaskCheckpoint {
                    framework_id: fw.clone(),
                    info: t.info.clone(),
                    executor_id: t.executor_id.clone(),
                    state: t.state,
                    kill_grace_ms: t.kill_grace_ms,
                })
                .collect(),
            pending_updates: self.updates.pending(),
        }
    }

    /// A core rebuilt from `checkpoint` after a restart, and the timers it needs. Executors
    /// must register again within the usual timeout; the agent re-registers with its old id as
    /// soon as the master link is up, and then re-sends the unacknowledged updates.
    pub fn recover(
        config: AgentConfig,
        epoch: u64,
        now: Time,
        checkpoint: CoreCheckpoint,
    ) -> (Self, Vec<Action>) {
        let mut core = AgentCore::new(config, epoch);
        let mut out = Vec::new();
        core.reg.agent_id = checkpoint.agent_id;
        core.frameworks.extend(checkpoint.frameworks);
        for t in checkpoint.tasks {
            let mut record = TaskRecord::new(t.info, t.executor_id);
            record.state = t.state;
            record.kill_grace_ms = t.kill_grace_ms;
            core.tasks
                .insert((t.framework_id, record.info.task_id.clone()), record);
        }
        let deadline = now.plus_ms(core.config.executor_register_timeout_ms);
        // Containers whose launch had not completed when the agent died (no pid, and their
        // executor never registered: its tasks still wait in `queued`): the launch died with
        // the agent process (the containerizer has no record of them to recover, and removes
        // leftovers), so their executors will never register. Found by the simulator (faults-ha seed 187): waiting
        // for them ended their tasks TASK_FAILED after the register timeout, which frameworks
        // do not retry; they are lost.
        let never_launched: Vec<ContainerId> = checkpoint
            .executors
            .iter()
            .filter(|e| e.pid.is_none() && !e.queued.is_empty())
            .map(|e| e.container_id.clone())
            .collect();
        for e in checkpoint.executors {
            let key = (e.framework_id, e.info.executor_id.clone());
            core.containers.insert(e.container_id.clone(), key.clone());
            out.push(Action::SetTimer {
                timer: AgentTimer::ExecutorRegisterTimeout {
                    container_id: e.container_id.clone(),
                },
                at: deadline,
            });
            let termination = e.terminating.then_some(super::executors::Termination::Idle);
            core.executors.insert(
                key,
                ExecutorRecord {
                    info: e.info,
                    container_id: e.container_id,
                    sandbox: e.sandbox,
                    pid: e.pid,
                    phase: ExecPhase::Disconnected,
                    register_deadline: Some(deadline),
                    queued: e.queued,
                    tasks: e.tasks.into_iter().collect(),
                    termination,
                },
            );
        }
        for (framework_id, status) in checkpoint.pending_updates {
            let Some(uuid) = status.uuid else { continue };
            core.updates.enqueue(
                now,
                false,
                framework_id,
                status,
                uuid,
                &mut core.counters,
                &mut out,
            );
        }
        for container_id in never_launched {
            let input = Input::ContainerExited {
                container_id,
                exit_code: None,
                signal: None,
                reason: Some(super::REASON_CONTAINER_LOST.to_string()),
                message: "the container's launch was cut short by an agent restart".into(),
            };
            out.extend(core.handle(now, input));
        }
        tracing::info!(
            agent = ?core.reg.agent_id,
            executors = core.executors.len(),
            tasks = core.tasks.len(),
            pending_updates = core.updates.len(),
            "agent state recovered from its checkpoint"
        );
        (core, out)
    }
}
