//! What the agent shows operators (`GET /state`, `/metrics`): a serialisable snapshot of the
//! core and its counters.

use super::executors::ExecPhase;
use super::AgentCore;
use agora_actors::{AgentId, Attributes, ContainerId, ExecutorId, FrameworkId, TaskId};
use serde::Serialize;

/// Monotonic counters, for `/metrics` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentCounters {
    pub registration_attempts: u64,
    pub registrations: u64,
    pub reregistrations: u64,
    /// `Error` messages received from the master.
    pub master_errors: u64,
    pub tasks_accepted: u64,
    pub tasks_rejected: u64,
    /// `RunTask`s handed to executors.
    pub tasks_sent_to_executors: u64,
    pub containers_launched: u64,
    pub container_launch_failures: u64,
    pub containers_exited: u64,
    pub executors_registered: u64,
    pub executor_register_timeouts: u64,
    /// Updates received from executors (duplicates included).
    pub status_updates_received: u64,
    /// Duplicate executor updates (same uuid) acknowledged again but not forwarded.
    pub duplicate_status_updates: u64,
    /// Updates the agent produced itself (rejections, executor deaths, kills).
    pub status_updates_generated: u64,
    /// `StatusUpdate`s sent to the master, retries included.
    pub status_updates_sent: u64,
    pub status_update_retries: u64,
    pub status_updates_acked: u64,
    /// Dropped because the pending-update queue was full.
    pub status_updates_dropped: u64,
    /// Master acknowledgements matching no in-flight update.
    pub stale_acks: u64,
    /// Messages refused because they came from the wrong peer, in the wrong state, or were bad.
    pub invalid_messages: u64,
    /// Best-effort messages (framework ↔ executor) dropped because the peer was unreachable.
    pub messages_dropped: u64,
}

/// Snapshot of the agent for `GET /state`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentState {
    pub id: Option<AgentId>,
    pub cluster: String,
    pub hostname: String,
    pub endpoint: String,
    pub connected: bool,
    pub registered: bool,
    pub attributes: Attributes,
    pub resources: ResourcesView,
    pub frameworks: Vec<FrameworkView>,
    pub executors: Vec<ExecutorView>,
    pub tasks: Vec<TaskView>,
    /// Status updates not yet acknowledged by the master.
    pub pending_updates: usize,
}

/// Resources in their text form (`cpus:4;mem:4096`), which is also what operators type.
#[derive(Debug, Clone, Serialize)]
pub struct ResourcesView {
    pub total: String,
    pub used: String,
    pub free: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkView {
    pub id: FrameworkId,
    pub name: String,
    pub user: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExecutorView {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub name: String,
    pub container_id: ContainerId,
    pub pid: Option<i32>,
    pub sandbox: String,
    /// `launching`, `registered`, `disconnected`, or `terminating`.
    pub status: &'static str,
    pub resources: String,
    /// Tasks handed to the executor.
    pub tasks: Vec<TaskId>,
    /// Tasks waiting for the executor to register.
    pub queued_tasks: Vec<TaskId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub framework_id: FrameworkId,
    pub task_id: TaskId,
    pub name: String,
    pub executor_id: ExecutorId,
    /// `TASK_RUNNING` and so on.
    pub state: &'static str,
    pub resources: String,
}

impl AgentCore {
    /// Builds the `/state` snapshot.
    pub fn state(&self) -> AgentState {
        let used = self.used_resources();
        let (used_text, free_text) = match &used {
            Ok(u) => (
                u.to_string(),
                self.config
                    .resources
                    .checked_sub(u)
                    .map(|f| f.to_string())
                    .unwrap_or_else(|e| format!("inconsistent: {e}")),
            ),
            Err(e) => (format!("inconsistent: {e}"), String::new()),
        };
        AgentState {
            id: self.reg.agent_id.clone(),
            cluster: self.config.cluster.clone(),
            hostname: self.config.hostname.clone(),
            endpoint: self.config.endpoint.clone(),
            connected: self.reg.connected,
            registered: self.reg.registered,
            attributes: self.config.attributes.clone(),
            resources: ResourcesView {
                total: self.config.resources.to_string(),
                used: used_text,
                free: free_text,
            },
            frameworks: self.frameworks_view(),
            executors: self.executors_view(),
            tasks: self.tasks_view(),
            pending_updates: self.updates.len(),
        }
    }

    fn frameworks_view(&self) -> Vec<FrameworkView> {
        self.frameworks
            .iter()
            .map(|(id, f)| FrameworkView {
                id: id.clone(),
                name: f.name.clone(),
                user: f.user.clone(),
                roles: f.roles.clone(),
            })
            .collect()
    }

    fn executors_view(&self) -> Vec<ExecutorView> {
        self.executors
            .iter()
            .map(|((fw, eid), e)| ExecutorView {
                framework_id: fw.clone(),
                executor_id: eid.clone(),
                name: e.info.name.clone(),
                container_id: e.container_id.clone(),
                pid: e.pid,
                sandbox: e.sandbox.clone(),
                status: match (&e.termination, &e.phase) {
                    (Some(_), _) => "terminating",
                    (None, ExecPhase::Launching) => "launching",
                    (None, ExecPhase::Registered { .. }) => "registered",
                    (None, ExecPhase::Disconnected) => "disconnected",
                },
                resources: e.info.resources.to_string(),
                tasks: e.tasks.iter().cloned().collect(),
                queued_tasks: e.queued.clone(),
            })
            .collect()
    }

    fn tasks_view(&self) -> Vec<TaskView> {
        self.tasks
            .iter()
            .map(|((fw, tid), t)| TaskView {
                framework_id: fw.clone(),
                task_id: tid.clone(),
                name: t.info.name.clone(),
                executor_id: t.executor_id.clone(),
                state: t.state.name(),
                resources: t.info.resources.to_string(),
            })
            .collect()
    }
}
