//! The master's task commands: `RunTask` admission, `KillTask`, `ShutdownFramework`, and the
//! master's acknowledgements that end a task's life on the agent.

use super::executors::{executor_info_for, ExecPhase, Termination};
use super::updates::AckOutcome;
use super::{Action, AgentCore, ExecKey, TaskEnd, TaskKey};
use agora_actors::{
    ErrorCode, ExecutorId, FrameworkId, FrameworkInfo, IdError, Message, ResourceError, Resources,
    TaskInfo, TaskState, TaskStatus, Time, UpdateSource,
};
use std::collections::VecDeque;

/// Executor update uuids remembered per task to recognise an executor's retries.
const RECENT_UUIDS: usize = 32;

#[derive(Debug, Clone)]
pub(crate) struct TaskRecord {
    pub info: TaskInfo,
    pub executor_id: ExecutorId,
    pub state: TaskState,
    /// Set when a kill was requested (with its grace); the task ends KILLED if its executor dies.
    pub kill_grace_ms: Option<u64>,
    recent_uuids: VecDeque<u64>,
}

impl TaskRecord {
    pub fn new(info: TaskInfo, executor_id: ExecutorId) -> Self {
        TaskRecord {
            info,
            executor_id,
            state: TaskState::Staging,
            kill_grace_ms: None,
            recent_uuids: VecDeque::new(),
        }
    }

    /// Records an executor update uuid; false if it was seen recently (an executor retry).
    pub fn remember_uuid(&mut self, uuid: u64) -> bool {
        if self.recent_uuids.contains(&uuid) {
            return false;
        }
        if self.recent_uuids.len() >= RECENT_UUIDS {
            self.recent_uuids.pop_front();
        }
        self.recent_uuids.push_back(uuid);
        true
    }
}

/// Why a `RunTask` is refused; each maps to the task state and reason the master receives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunTaskError {
    #[error("task is for agent {wanted}, but this agent is {ours}")]
    WrongAgent { wanted: String, ours: String },
    #[error("invalid id: {0}")]
    BadId(#[from] IdError),
    #[error("task has neither an executor nor a command")]
    MissingCommand,
    #[error("command is empty")]
    EmptyCommand,
    #[error("executor {0} already runs here with a different ExecutorInfo")]
    ExecutorMismatch(ExecutorId),
    #[error("executor {0} is shutting down")]
    ExecutorTerminating(ExecutorId),
    #[error("not enough free resources: need {need}, free {free}")]
    Insufficient { need: String, free: String },
    #[error("resource accounting failed: {0}")]
    Resources(#[from] ResourceError),
    #[error("agent already holds {0} tasks (limit)")]
    TooManyTasks(usize),
    #[error("agent already runs {0} executors (limit)")]
    TooManyExecutors(usize),
    #[error("executor {executor} already has {limit} tasks waiting for it to register")]
    QueueFull { executor: ExecutorId, limit: usize },
    #[error("an isolated network is available to command tasks only (the command executor creates the namespace), not to custom executors")]
    IsolatedNetworkNeedsCommandExecutor,
}

impl RunTaskError {
    /// Invalid tasks are errors (retrying cannot help); the rest are drops (it may fit later).
    pub fn state(&self) -> TaskState {
        match self {
            RunTaskError::BadId(_)
            | RunTaskError::MissingCommand
            | RunTaskError::EmptyCommand
            | RunTaskError::IsolatedNetworkNeedsCommandExecutor
            | RunTaskError::ExecutorMismatch(_) => TaskState::Error,
            _ => TaskState::Dropped,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            RunTaskError::WrongAgent { .. } => "wrong_agent",
            RunTaskError::BadId(_)
            | RunTaskError::MissingCommand
            | RunTaskError::EmptyCommand
            | RunTaskError::IsolatedNetworkNeedsCommandExecutor => "invalid_task",
            RunTaskError::ExecutorMismatch(_) => "executor_mismatch",
            RunTaskError::ExecutorTerminating(_) => "executor_terminating",
            RunTaskError::Insufficient { .. } | RunTaskError::Resources(_) => {
                "insufficient_resources"
            }
            RunTaskError::TooManyTasks(_)
            | RunTaskError::TooManyExecutors(_)
            | RunTaskError::QueueFull { .. } => "agent_overloaded",
        }
    }
}

/// A task that passed admission.
pub(crate) struct Admitted {
    pub executor: agora_actors::ExecutorInfo,
    pub new_executor: bool,
    /// What the admission reserved: the task, plus the executor if it is new.
    pub need: Resources,
}

impl AgentCore {
    pub(super) fn run_task(
        &mut self,
        now: Time,
        framework: FrameworkInfo,
        task: TaskInfo,
        out: &mut Vec<Action>,
    ) {
        let Some(fw) = framework.id.clone() else {
            let text = format!("RunTask for task {} without a framework id", task.task_id);
            return self.refuse_master(ErrorCode::BadRequest, text, out);
        };
        if let Err(e) = fw.validate() {
            return self.refuse_master(ErrorCode::BadRequest, format!("RunTask: {e}"), out);
        }
        let key = (fw.clone(), task.task_id.clone());
        if self.tasks.contains_key(&key) {
            // Not a status update: it would land in the stream of the live task of that id.
            self.counters.tasks_rejected += 1;
            let text = format!(
                "task {} of framework {fw} already exists here",
                task.task_id
            );
            return self.refuse_master(ErrorCode::BadRequest, text, out);
        }
        match self.admit(&fw, &task) {
            Ok(admitted) => self.accept_task(now, framework, task, admitted, out),
            Err(e) => {
                self.counters.tasks_rejected += 1;
                tracing::warn!(framework = %fw, task = %task.task_id, error = %e, "task refused");
                if self.updates.has_pending_terminal(&key) {
                    return; // The master has an unacknowledged refusal of this task already.
                }
                let mut status =
                    TaskStatus::new(task.task_id.clone(), e.state(), UpdateSource::Agent)
                        .with_reason(e.reason(), e.to_string());
                status.executor_id = task.executor.as_ref().map(|x| x.executor_id.clone());
                self.emit_agent_update(now, fw, status, out);
            }
        }
    }

    fn admit(&self, fw: &FrameworkId, task: &TaskInfo) -> Result<Admitted, RunTaskError> {
        if self.reg.agent_id.as_ref() != Some(&task.agent_id) {
            return Err(RunTaskError::WrongAgent {
                wanted: task.agent_id.to_string(),
                ours: self
                    .reg
                    .agent_id
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            });
        }
        task.task_id.validate()?;
        let executor = executor_info_for(task)?;
        let isolated = task
            .container
            .as_ref()
            .is_some_and(|c| c.network == agora_actors::NetworkMode::Isolated);
        if isolated && executor.command.is_some() {
            return Err(RunTaskError::IsolatedNetworkNeedsCommandExecutor);
        }
        if self.tasks.len() >= self.config.max_tasks {
            return Err(RunTaskError::TooManyTasks(self.tasks.len()));
        }
        let (need, new_executor) = match self
            .executors
            .get(&(fw.clone(), executor.executor_id.clone()))
        {
            Some(e) if e.info != executor => {
                return Err(RunTaskError::ExecutorMismatch(executor.executor_id))
            }
            Some(e) if e.termination.is_some() => {
                return Err(RunTaskError::ExecutorTerminating(executor.executor_id))
            }
            Some(e) if e.queued.len() >= self.config.max_queued_tasks_per_executor => {
                return Err(RunTaskError::QueueFull {
                    executor: executor.executor_id,
                    limit: self.config.max_queued_tasks_per_executor,
                })
            }
            Some(_) => (task.resources.clone(), false),
            None if self.executors.len() >= self.config.max_executors => {
                return Err(RunTaskError::TooManyExecutors(self.executors.len()))
            }
            None => (task.resources.checked_add(&executor.resources)?, true),
        };
        let free = self.free_resources()?;
        if !free.contains(&need) {
            return Err(RunTaskError::Insufficient {
                need: need.to_string(),
                free: free.to_string(),
            });
        }
        Ok(Admitted {
            executor,
            new_executor,
            need,
        })
    }

    fn accept_task(
        &mut self,
        now: Time,
        framework: FrameworkInfo,
        task: TaskInfo,
        admitted: Admitted,
        out: &mut Vec<Action>,
    ) {
        let Some(fw) = framework.id.clone() else {
            return;
        };
        self.counters.tasks_accepted += 1;
        tracing::info!(framework = %fw, task = %task.task_id,
            executor = %admitted.executor.executor_id, resources = %task.resources, "task accepted");
        self.frameworks.insert(fw.clone(), framework.clone());
        let executor_id = admitted.executor.executor_id.clone();
        let task_id = task.task_id.clone();
        let record = TaskRecord::new(task.clone(), executor_id.clone());
        self.tasks.insert((fw.clone(), task_id.clone()), record);
        if admitted.new_executor {
            let container = task.container.clone().unwrap_or_default();
            let first = (task_id, container);
            return self.launch_executor(now, &fw, admitted.executor, admitted.need, first, out);
        }
        let Some(exec) = self.executors.get_mut(&(fw, executor_id)) else {
            return; // admission saw it a moment ago; nothing in between can remove it
        };
        match exec.phase {
            ExecPhase::Registered { conn } => {
                exec.tasks.insert(task_id);
                self.counters.tasks_sent_to_executors += 1;
                out.push(Action::SendExecutor {
                    conn,
                    msg: Message::RunTask { framework, task },
                });
            }
            ExecPhase::Launching | ExecPhase::Disconnected => exec.queued.push(task_id),
        }
    }

    pub(super) fn kill_task(
        &mut self,
        now: Time,
        key: TaskKey,
        grace_ms: u64,
        out: &mut Vec<Action>,
    ) {
        let grace_ms = grace_ms.min(self.config.max_kill_grace_ms);
        let Some(task) = self.tasks.get_mut(&key) else {
            return self.kill_unknown_task(now, key, out);
        };
        if task.state.is_terminal() {
            tracing::debug!(task = %key.1, "kill of a task that already ended; its update is pending");
            return;
        }
        task.kill_grace_ms = Some(grace_ms);
        let ekey: ExecKey = (key.0.clone(), task.executor_id.clone());
        let Some(exec) = self.executors.get_mut(&ekey) else {
            let end = TaskEnd::new(
                TaskState::Lost,
                "executor_gone",
                "the task's executor is gone",
            );
            return self.end_task(now, &key, end, out);
        };
        if let Some(pos) = exec.queued.iter().position(|t| *t == key.1) {
            exec.queued.remove(pos);
            let end = TaskEnd::new(
                TaskState::Killed,
                "killed",
                "killed before its executor registered",
            );
            self.end_task(now, &key, end, out);
            return self.stop_idle_unregistered_executor(&ekey, out);
        }
        match exec.phase {
            ExecPhase::Registered { conn } => out.push(Action::SendExecutor {
                conn,
                msg: Message::KillTask {
                    framework_id: key.0,
                    task_id: key.1,
                    grace_ms,
                },
            }),
            // Forwarded when the executor re-registers; if it never does, the register timeout
            // kills the container and the task ends KILLED.
            ExecPhase::Launching | ExecPhase::Disconnected => {
                tracing::info!(task = %key.1, "kill for an unreachable executor deferred")
            }
        }
    }

    /// Mesos-like: the master believes the task is here, the agent does not know it; tell the
    /// master it is lost so it stops waiting for it.
    fn kill_unknown_task(&mut self, now: Time, key: TaskKey, out: &mut Vec<Action>) {
        if self.updates.has_pending_terminal(&key) {
            tracing::debug!(task = %key.1, "kill of a task whose terminal update is pending");
            return;
        }
        tracing::warn!(framework = %key.0, task = %key.1, "kill of an unknown task: reporting it lost");
        let status = TaskStatus::new(key.1, TaskState::Lost, UpdateSource::Agent)
            .with_reason("unknown_task", "the agent does not know this task");
        self.emit_agent_update(now, key.0, status, out);
    }

    /// An executor that never registered and no longer has anything to run is killed, so a
    /// per-task command executor does not linger after its only task was killed.
    fn stop_idle_unregistered_executor(&mut self, ekey: &ExecKey, out: &mut Vec<Action>) {
        let tasks = &self.tasks;
        let Some(exec) = self.executors.get_mut(ekey) else {
            return;
        };
        let registered = matches!(exec.phase, ExecPhase::Registered { .. });
        let live = exec.tasks.iter().any(|t| {
            tasks
                .get(&(ekey.0.clone(), t.clone()))
                .is_some_and(|r| !r.state.is_terminal())
        });
        if registered || live || !exec.queued.is_empty() || exec.termination.is_some() {
            return;
        }
        exec.termination = Some(Termination::Idle);
        out.push(Action::Kill {
            container_id: exec.container_id.clone(),
            grace_ms: self.config.default_kill_grace_ms,
        });
    }

    /// `ShutdownExecutor` to every registered executor of the framework, and a kill of every one
    /// of its containers; tasks end KILLED when the containers exit.
    pub(super) fn shutdown_framework(&mut self, fw: &FrameworkId, out: &mut Vec<Action>) {
        let grace_ms = self.config.default_kill_grace_ms;
        let mut count = 0;
        for ((efw, _), exec) in self.executors.iter_mut() {
            if efw != fw || exec.termination == Some(Termination::Framework) {
                continue;
            }
            count += 1;
            exec.termination = Some(Termination::Framework);
            if let ExecPhase::Registered { conn } = exec.phase {
                out.push(Action::SendExecutor {
                    conn,
                    msg: Message::ShutdownExecutor { grace_ms },
                });
            }
            out.push(Action::Kill {
                container_id: exec.container_id.clone(),
                grace_ms,
            });
        }
        tracing::info!(framework = %fw, executors = count, "framework shut down");
    }

    pub(super) fn master_ack(&mut self, now: Time, key: TaskKey, uuid: u64, out: &mut Vec<Action>) {
        let online = self.online();
        match self
            .updates
            .ack(now, online, &key, uuid, &mut self.counters, out)
        {
            AckOutcome::Stale => {
                self.counters.stale_acks += 1;
                tracing::debug!(task = %key.1, uuid, "acknowledgement matches no in-flight update");
            }
            AckOutcome::Acked { terminal: false } => {}
            AckOutcome::Acked { terminal: true } => self.forget_task(&key),
        }
    }

    /// The master knows the task ended: drop its record (its resources were freed when it ended).
    fn forget_task(&mut self, key: &TaskKey) {
        let terminal = self.tasks.get(key).is_some_and(|t| t.state.is_terminal());
        if !terminal {
            return; // e.g. a refusal of an earlier task with the same id; the live one stays
        }
        if let Some(task) = self.tasks.remove(key) {
            if let Some(exec) = self.executors.get_mut(&(key.0.clone(), task.executor_id)) {
                exec.tasks.remove(&key.1);
            }
        }
        self.gc_framework(&key.0);
    }

    /// Tasks of the agent for one framework (for tests and `/state`).
    #[cfg(test)]
    pub(crate) fn task_state(
        &self,
        fw: &FrameworkId,
        task: &agora_actors::TaskId,
    ) -> Option<TaskState> {
        self.tasks.get(&(fw.clone(), task.clone())).map(|t| t.state)
    }
}
