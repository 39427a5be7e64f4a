//! The agent core: all of an agent's logic as a plain state machine, Mesos-agent style.
//!
//! The shell (an actix actor) feeds it `Input`s with the current time and performs the returned
//! `Action`s: messages to the master or to executor connections, container launches and kills,
//! timers. The core does no IO, reads no clock and iterates only ordered maps, so the same
//! inputs always give the same actions (unit tests, simulator).
//!
//! Layout: `registration` (master session), `tasks` (master's task commands and status
//! bookkeeping), `executors` (executor connections and container lifecycle), `updates` (reliable
//! status delivery), `state` (operator snapshot), `config`.

mod config;
mod conns;
mod executors;
mod recovery;
mod registration;
mod state;
mod tasks;
mod updates;

#[cfg(test)]
mod tests;

pub use config::{AgentConfig, ConfigError};
pub use executors::{REASON_CONTAINER_LOST, REASON_HOST_REBOOTED, RESERVED_ENV};
pub use recovery::{CoreCheckpoint, ExecutorCheckpoint, TaskCheckpoint};
pub use state::{AgentCounters, AgentState, ExecutorView, FrameworkView, ResourcesView, TaskView};
pub use tasks::RunTaskError;

use agora_actors::transport::ConnId;
use agora_actors::{
    AgentId, ContainerId, ErrorCode, ExecutorId, FrameworkId, FrameworkInfo, Hello, IdGen, Message,
    ResourceError, Resources, TaskId, TaskState, TaskStatus, Time, UpdateSource,
};
use conns::ConnState;
use executors::ExecutorRecord;
use registration::Registration;
use std::collections::BTreeMap;
use tasks::TaskRecord;
use updates::{UpdateManager, UuidGen};

/// Timers the core asks for. The shell fires `Input::Timer(timer)` at the requested time. The
/// core tolerates late, early-cancelled, duplicate and spurious firings (it re-checks its state).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgentTimer {
    /// Re-send `RegisterAgent`/`ReregisterAgent` if still unanswered.
    RetryRegistration,
    /// Re-send the in-flight status updates that are due.
    RetryStatusUpdates,
    /// The executor in this container must have registered by now, or it is killed.
    ExecutorRegisterTimeout { container_id: ContainerId },
}

/// Everything that can happen to an agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The link to the master is up (handshake done).
    MasterConnected,
    MasterDisconnected,
    FromMaster(Message),
    /// An executor process connected to the agent's endpoint (handshake done).
    ExecutorConnected {
        conn: ConnId,
        peer: Hello,
    },
    FromExecutor {
        conn: ConnId,
        msg: Message,
    },
    ExecutorDisconnected {
        conn: ConnId,
    },
    Timer(AgentTimer),
    /// The containerizer started the container of a `Launch`.
    ContainerLaunched {
        container_id: ContainerId,
        pid: i32,
        sandbox: String,
    },
    ContainerLaunchFailed {
        container_id: ContainerId,
        error: String,
    },
    /// The container's init process ended. `reason`: e.g. `memory limit` when the containerizer
    /// knows why (OOM killer); `message`: human-readable details.
    ContainerExited {
        container_id: ContainerId,
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: Option<String>,
        message: String,
    },
}

/// What the containerizer must start for a new executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub container_id: ContainerId,
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    /// `{work_dir}/sandboxes/{framework_id}/{executor_id}/{container_id}`; the shell creates it.
    pub sandbox: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Executor plus its first task, for container limits.
    pub resources: Resources,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    SendMaster(Message),
    SendExecutor {
        conn: ConnId,
        msg: Message,
    },
    /// Close an executor connection (after sending what precedes it).
    CloseExecutor {
        conn: ConnId,
    },
    Launch(LaunchSpec),
    /// Stop the container: SIGTERM, then SIGKILL after `grace_ms` (containerizer's job).
    /// Always answered by `ContainerExited` (or `ContainerLaunchFailed`) for a known container.
    Kill {
        container_id: ContainerId,
        grace_ms: u64,
    },
    SetTimer {
        timer: AgentTimer,
        at: Time,
    },
}

pub(crate) type ExecKey = (FrameworkId, ExecutorId);
pub(crate) type TaskKey = (FrameworkId, TaskId);

/// The agent's state machine. See the module docs.
#[derive(Debug)]
pub struct AgentCore {
    config: AgentConfig,
    reg: Registration,
    /// Latest `FrameworkInfo` of each framework with executors or tasks here.
    frameworks: BTreeMap<FrameworkId, FrameworkInfo>,
    executors: BTreeMap<ExecKey, ExecutorRecord>,
    containers: BTreeMap<ContainerId, ExecKey>,
    /// Live tasks and terminal ones whose terminal update the master has not acknowledged.
    tasks: BTreeMap<TaskKey, TaskRecord>,
    conns: BTreeMap<ConnId, ConnState>,
    updates: UpdateManager,
    uuids: UuidGen,
    container_ids: IdGen,
    counters: AgentCounters,
}

impl AgentCore {
    /// `epoch` distinguishes incarnations of this agent (e.g. its start time): container ids
    /// and agent-generated update uuids derive from it.
    /// The container of the executor bound to `conn`, if any (lets the shell ask the
    /// containerizer about limits the container hit).
    pub fn container_of_conn(&self, conn: ConnId) -> Option<ContainerId> {
        match self.conns.get(&conn)? {
            ConnState::Bound(key) => self.executors.get(key).map(|e| e.container_id.clone()),
            ConnState::Pending => None,
        }
    }

    pub fn new(config: AgentConfig, epoch: u64) -> Self {
        let config = config.sanitized();
        AgentCore {
            updates: UpdateManager::new(
                config.max_pending_updates,
                config.status_retry_base_ms,
                config.status_retry_cap_ms,
            ),
            config,
            reg: Registration::default(),
            frameworks: BTreeMap::new(),
            executors: BTreeMap::new(),
            containers: BTreeMap::new(),
            tasks: BTreeMap::new(),
            conns: BTreeMap::new(),
            uuids: UuidGen::new(epoch),
            container_ids: IdGen::new("ctr", epoch),
            counters: AgentCounters::default(),
        }
    }

    /// Nothing happens before the master link is up; kept so shells have one entry point.
    pub fn start(&mut self, _now: Time) -> Vec<Action> {
        tracing::info!(
            hostname = %self.config.hostname,
            resources = %self.config.resources,
            "agent core started"
        );
        Vec::new()
    }

    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::MasterConnected => self.master_connected(now, &mut out),
            Input::MasterDisconnected => self.master_disconnected(),
            Input::FromMaster(msg) => self.on_master_message(now, msg, &mut out),
            Input::ExecutorConnected { conn, peer } => {
                self.executor_connected(conn, peer, &mut out)
            }
            Input::FromExecutor { conn, msg } => self.on_executor_message(now, conn, msg, &mut out),
            Input::ExecutorDisconnected { conn } => self.executor_disconnected(now, conn, &mut out),
            Input::Timer(timer) => self.timer(now, timer, &mut out),
            Input::ContainerLaunched {
                container_id,
                pid,
                sandbox,
            } => self.container_launched(container_id, pid, sandbox, &mut out),
            Input::ContainerLaunchFailed {
                container_id,
                error,
            } => self.container_launch_failed(now, container_id, error, &mut out),
            Input::ContainerExited {
                container_id,
                exit_code,
                signal,
                reason,
                message,
            } => {
                let exit = executors::Exit::Exited {
                    exit_code,
                    signal,
                    reason,
                    message,
                };
                self.container_exited(now, container_id, exit, &mut out)
            }
        }
        out
    }

    pub fn agent_id(&self) -> Option<&AgentId> {
        self.reg.agent_id.as_ref()
    }

    pub fn counters(&self) -> &AgentCounters {
        &self.counters
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn timer(&mut self, now: Time, timer: AgentTimer, out: &mut Vec<Action>) {
        match timer {
            AgentTimer::RetryRegistration => self.retry_registration(now, out),
            AgentTimer::RetryStatusUpdates => {
                let online = self.online();
                self.updates.on_timer(now, online, &mut self.counters, out);
            }
            AgentTimer::ExecutorRegisterTimeout { container_id } => {
                self.executor_register_timeout(now, container_id, out)
            }
        }
    }

    /// Registered with a connected master: status updates may flow.
    fn online(&self) -> bool {
        self.reg.connected && self.reg.registered
    }

    /// Resources held by executors and by non-terminal tasks. A task's resources are released
    /// as soon as it is terminal (its process is gone), as the master does when it learns of
    /// the terminal state; the record itself stays until the update is acknowledged.
    fn used_resources(&self) -> Result<Resources, ResourceError> {
        let mut used = Resources::new();
        let executors = self.executors.values().map(|e| &e.info.resources);
        let tasks = self
            .tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .map(|t| &t.info.resources);
        for r in executors.chain(tasks) {
            for (k, v) in r.iter() {
                used.add_entry(k.clone(), v.clone())?;
            }
        }
        Ok(used)
    }

    fn free_resources(&self) -> Result<Resources, ResourceError> {
        self.config.resources.checked_sub(&self.used_resources()?)
    }

    /// Stamps an update the agent produced itself and hands it to the update manager.
    fn emit_agent_update(
        &mut self,
        now: Time,
        framework_id: FrameworkId,
        mut status: TaskStatus,
        out: &mut Vec<Action>,
    ) {
        status.source = UpdateSource::Agent;
        status.agent_id = self.reg.agent_id.clone();
        status.timestamp_ms = now.ms();
        let uuid = self.uuids.next();
        self.counters.status_updates_generated += 1;
        tracing::info!(
            framework = %framework_id,
            task = %status.task_id,
            state = status.state.name(),
            reason = status.reason.as_deref().unwrap_or(""),
            "agent-generated status update"
        );
        let online = self.online();
        self.updates.enqueue(
            now,
            online,
            framework_id,
            status,
            uuid,
            &mut self.counters,
            out,
        );
    }

    /// Moves a live task to a terminal `state` decided by the agent and reports it. A task that
    /// is already terminal keeps its first terminal state (the executor's word wins).
    fn end_task(&mut self, now: Time, key: &TaskKey, end: TaskEnd, out: &mut Vec<Action>) {
        let Some(task) = self.tasks.get_mut(key) else {
            return;
        };
        if task.state.is_terminal() {
            return;
        }
        task.state = end.state;
        let mut status = TaskStatus::new(key.1.clone(), end.state, UpdateSource::Agent)
            .with_reason(&end.reason, end.message);
        status.executor_id = Some(task.executor_id.clone());
        status.exit_code = end.exit_code;
        status.sandbox = self
            .executors
            .get(&(key.0.clone(), task.executor_id.clone()))
            .map(|e| e.sandbox.clone());
        self.emit_agent_update(now, key.0.clone(), status, out);
    }

    /// Refuses a message from the master: `Error` reply, warning, counter.
    fn refuse_master(&mut self, code: ErrorCode, message: String, out: &mut Vec<Action>) {
        tracing::warn!(?code, %message, "refusing a message from the master");
        self.counters.invalid_messages += 1;
        out.push(Action::SendMaster(Message::error(code, message)));
    }

    /// Forgets a framework once nothing of it is left on the agent.
    fn gc_framework(&mut self, framework_id: &FrameworkId) {
        let in_use = self.executors.keys().any(|(fw, _)| fw == framework_id)
            || self.tasks.keys().any(|(fw, _)| fw == framework_id);
        if !in_use {
            self.frameworks.remove(framework_id);
        }
    }
}

/// A terminal state the agent gives a task, and why.
#[derive(Debug, Clone)]
pub(crate) struct TaskEnd {
    pub state: TaskState,
    pub reason: String,
    pub message: String,
    pub exit_code: Option<i32>,
}

impl TaskEnd {
    pub fn new(state: TaskState, reason: impl Into<String>, message: impl Into<String>) -> Self {
        TaskEnd {
            state,
            reason: reason.into(),
            message: message.into(),
            exit_code: None,
        }
    }
}
