//! Every message that crosses a process boundary. One enum, `Message`, is the frame body; the
//! transport is point-to-point, so the connection itself says who sent it.

use crate::ids::*;
use crate::resources::Resources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any incompatible change of `Message`; checked in the hello handshake.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    Master,
    Agent,
    Scheduler,
    Executor,
    Cli,
}

/// First frame each way on every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub cluster: String,
    pub node_kind: NodeKind,
    /// Free-form name of the node for logs (hostname:port, framework name...).
    pub node_id: String,
}

impl Hello {
    pub fn new(cluster: &str, node_kind: NodeKind, node_id: &str) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster: cluster.to_string(),
            node_kind,
            node_id: node_id.to_string(),
        }
    }
}

/// Attributes of an agent (`rack:r1;zone:a`): text key/value pairs used by filters/constraints.
pub type Attributes = BTreeMap<String, String>;

/// Parses `rack:r1;zone:a`. Keys and values: letters, digits, `_-./`.
pub fn parse_attributes(s: &str) -> Result<Attributes, String> {
    let ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
    };
    let mut out = Attributes::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once(':')
            .ok_or_else(|| format!("bad attribute {part:?}: expected KEY:VALUE"))?;
        let (k, v) = (k.trim(), v.trim());
        if !ok(k) || !ok(v) {
            return Err(format!(
                "bad attribute {part:?}: use letters, digits and _-./"
            ));
        }
        out.insert(k.to_string(), v.to_string());
    }
    if out.len() > 64 {
        return Err("too many attributes (limit 64)".into());
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// Set on re-subscribe (failover); `None` on first subscribe, the master assigns one.
    pub id: Option<FrameworkId>,
    pub name: String,
    pub user: String,
    /// Roles the framework subscribes with; empty means `["*"]`.
    pub roles: Vec<String>,
    /// How long the master keeps the framework's tasks after its scheduler disconnects.
    pub failover_timeout_ms: u64,
    pub hostname: String,
    /// How long the master warns before killing this framework's tasks to revoke resources
    /// (`None`: the master's `--revocation-grace-ms`).
    #[serde(default)]
    pub revocation_grace_ms: Option<u64>,
    /// Strict-priority level of this framework for the `priority` allocator (`None`: its
    /// role's level).
    #[serde(default)]
    pub priority: Option<u32>,
    /// Up-front filters: what the framework always refuses, so the allocator never offers it.
    #[serde(default)]
    pub offer_filters: crate::constraints::OfferFilters,
}

impl FrameworkInfo {
    pub fn new(name: &str) -> FrameworkInfo {
        FrameworkInfo {
            id: None,
            name: name.to_string(),
            user: "root".to_string(),
            roles: vec!["*".to_string()],
            failover_timeout_ms: 0,
            hostname: String::new(),
            revocation_grace_ms: None,
            priority: None,
            offer_filters: crate::constraints::OfferFilters::default(),
        }
    }
    /// The first role, which is what this version allocates to.
    pub fn role(&self) -> &str {
        self.roles.first().map(String::as_str).unwrap_or("*")
    }
}

/// What to run: `shell` true runs `value` with `/bin/sh -c`; otherwise `value` is the program and
/// `arguments` its argv (argv[0] included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    pub shell: bool,
    pub value: String,
    pub arguments: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl CommandInfo {
    pub fn shell(cmd: &str) -> CommandInfo {
        CommandInfo {
            shell: true,
            value: cmd.to_string(),
            arguments: vec![],
            env: vec![],
        }
    }
    /// argv form: `argv[0]` is the program.
    pub fn argv(argv: &[String]) -> CommandInfo {
        CommandInfo {
            shell: false,
            value: argv.first().cloned().unwrap_or_default(),
            arguments: argv.to_vec(),
            env: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    pub executor_id: ExecutorId,
    pub name: String,
    /// `None`: the built-in command executor (`agora executor`), which runs each task's
    /// `CommandInfo` as a child process and can hold many tasks.
    pub command: Option<CommandInfo>,
    /// Resources of the executor itself (on top of its tasks').
    pub resources: Resources,
}

/// Most entries in one [`Message::AgentUsage`].
pub const MAX_USAGE_ENTRIES: usize = 10_000;

/// Resource usage of one executor's container, as its agent measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFigures {
    /// User + system CPU time so far.
    pub cpu_time_ms: u64,
    pub mem_rss_bytes: u64,
    pub mem_peak_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorUsage {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub usage: UsageFigures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub task_id: TaskId,
    pub name: String,
    pub agent_id: AgentId,
    pub resources: Resources,
    /// For the command executor: what to run.
    pub command: Option<CommandInfo>,
    /// `None`: the agent makes a command executor for this task alone (executor id = task id).
    pub executor: Option<ExecutorInfo>,
    /// Opaque bytes for a custom executor.
    pub data: Vec<u8>,
    /// How the task's container is set up (for the task that starts an executor; later tasks
    /// of a running executor share its container). `None`: the agent's defaults.
    pub container: Option<ContainerInfo>,
}

/// Network of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The agent host's network (default).
    #[default]
    Host,
    /// A network namespace of its own with only loopback up.
    Isolated,
}

/// What a task asks of its container beyond resources. Honoured by the libcontainer
/// containerizer; the posix one refuses what it cannot do (except `user`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub network: NetworkMode,
    /// Disk IO weight 10..=1000 (blkio.weight on cgroup v1, io.weight on v2), applied when
    /// the agent has that controller.
    pub io_weight: Option<u16>,
    /// Absolute path of a root filesystem directory on the agent host (must exist) instead
    /// of the host's directories.
    pub rootfs: Option<String>,
    /// Run the executor and its tasks as this user (must exist on the agent host).
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Staging,
    Starting,
    Running,
    Killing,
    Finished,
    Failed,
    Killed,
    Error,
    Lost,
    Dropped,
    Unreachable,
    Gone,
    Unknown,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
        )
    }
    /// Upper-case name as operators know it (`TASK_RUNNING`).
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }
}

/// Who produced a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateSource {
    Master,
    Agent,
    Executor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: TaskId,
    pub state: TaskState,
    /// Short machine-readable reason (`agent_removed`, `invalid_offers`, `memory limit`,
    /// `preempted`, `killed`, `command exited`...).
    pub reason: Option<String>,
    /// Human-readable explanation.
    pub message: String,
    pub source: UpdateSource,
    pub agent_id: Option<AgentId>,
    pub executor_id: Option<ExecutorId>,
    pub exit_code: Option<i32>,
    /// Sandbox directory on the agent, when known.
    pub sandbox: Option<String>,
    /// Set on updates that must be acknowledged (agent/executor-generated); the scheduler echoes
    /// it back. Master-generated updates carry `None` and need no acknowledgement.
    pub uuid: Option<u64>,
    /// When the update was produced, in the producer's clock (ms); for display only.
    pub timestamp_ms: u64,
}

impl TaskStatus {
    pub fn new(task_id: TaskId, state: TaskState, source: UpdateSource) -> TaskStatus {
        TaskStatus {
            task_id,
            state,
            reason: None,
            message: String::new(),
            source,
            agent_id: None,
            executor_id: None,
            exit_code: None,
            sandbox: None,
            uuid: None,
            timestamp_ms: 0,
        }
    }
    pub fn with_reason(mut self, reason: &str, message: impl Into<String>) -> TaskStatus {
        self.reason = Some(reason.to_string());
        self.message = message.into();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    pub resources: Resources,
    pub attributes: Attributes,
    /// Executors of this framework already running on the agent.
    pub executor_ids: Vec<ExecutorId>,
}

/// How long the declined resources of an agent are withheld from the framework.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    pub refuse_seconds: f64,
}

/// Mesos's default: a declined offer is withheld for 5 s.
pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;
/// Longest refusal accepted (one year); larger values are clamped, not rejected.
pub const MAX_REFUSE_SECONDS: f64 = 365.0 * 86_400.0;

impl Default for Filters {
    fn default() -> Self {
        Filters {
            refuse_seconds: DEFAULT_REFUSE_SECONDS,
        }
    }
}

impl Filters {
    /// Validated refusal in ms: NaN and negatives are an error, huge values are clamped.
    pub fn refuse_ms(&self) -> Result<u64, String> {
        let s = self.refuse_seconds;
        if s.is_nan() || s < 0.0 {
            return Err(format!(
                "refuse_seconds must be a non-negative number, got {s}"
            ));
        }
        Ok((s.min(MAX_REFUSE_SECONDS) * 1000.0) as u64)
    }
}

/// Operations of an `Accept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Launch {
        tasks: Vec<TaskInfo>,
    },
    /// Reserves part of the offer for one of the framework's roles: `resources` names the
    /// reserved form (`cpus(eng):2;mem(eng):1024`), taken from the offer's unreserved part.
    /// Later operations of the same accept see the reserved resources.
    Reserve {
        resources: Resources,
    },
    /// Gives reserved resources of the offer back to the unreserved pool (`cpus(eng):2`).
    Unreserve {
        resources: Resources,
    },
}

/// Error categories on the wire, so callers can react without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    BadRequest,
    NotFound,
    Forbidden,
    VersionMismatch,
    ClusterMismatch,
    TooLarge,
    NotSubscribed,
    Internal,
    /// The master is a standby; the message names the leader if one is known. Clients try
    /// the next master address.
    NotLeader,
}

/// One task as an agent reports it when re-registering or as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub task: TaskInfo,
    pub state: TaskState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    // ---- handshake -------------------------------------------------------------------------
    Hello(Hello),

    // ---- agent <-> master ------------------------------------------------------------------
    RegisterAgent {
        hostname: String,
        /// Where the agent listens (for operators and executors).
        endpoint: String,
        resources: Resources,
        attributes: Attributes,
    },
    ReregisterAgent {
        agent_id: AgentId,
        hostname: String,
        endpoint: String,
        resources: Resources,
        attributes: Attributes,
        tasks: Vec<TaskReport>,
        frameworks: Vec<FrameworkInfo>,
    },
    AgentRegistered {
        agent_id: AgentId,
        ping_interval_ms: u64,
    },
    Ping,
    Pong,
    /// agent -> master, periodically: what its executors' containers use (at most
    /// [`MAX_USAGE_ENTRIES`] entries; the master shows it per task in `/state`).
    AgentUsage {
        executors: Vec<ExecutorUsage>,
    },
    /// master -> agent: run `task` for `framework` (executor resolved by the agent).
    RunTask {
        framework: FrameworkInfo,
        task: TaskInfo,
    },
    /// master -> agent, agent -> executor.
    KillTask {
        framework_id: FrameworkId,
        task_id: TaskId,
        grace_ms: u64,
    },
    /// agent -> master (and executor -> agent): a task changed state.
    StatusUpdate {
        framework_id: FrameworkId,
        status: TaskStatus,
    },
    /// master -> agent (and agent -> executor): the update with this uuid is acknowledged.
    StatusUpdateAck {
        framework_id: FrameworkId,
        task_id: TaskId,
        uuid: u64,
    },
    /// master -> agent: the framework is gone; kill its executors.
    ShutdownFramework {
        framework_id: FrameworkId,
    },
    FrameworkToExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        agent_id: AgentId,
        data: Vec<u8>,
    },
    ExecutorToFramework {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        agent_id: AgentId,
        data: Vec<u8>,
    },

    // ---- scheduler -> master (calls) -------------------------------------------------------
    Subscribe {
        framework: FrameworkInfo,
    },
    Accept {
        framework_id: FrameworkId,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
    },
    Decline {
        framework_id: FrameworkId,
        offer_ids: Vec<OfferId>,
        filters: Filters,
    },
    Revive {
        framework_id: FrameworkId,
    },
    Suppress {
        framework_id: FrameworkId,
    },
    Kill {
        framework_id: FrameworkId,
        task_id: TaskId,
        agent_id: Option<AgentId>,
    },
    Acknowledge {
        framework_id: FrameworkId,
        agent_id: AgentId,
        task_id: TaskId,
        uuid: u64,
    },
    /// Empty `tasks` = implicit reconciliation (all the framework's known tasks).
    Reconcile {
        framework_id: FrameworkId,
        tasks: Vec<(TaskId, Option<AgentId>)>,
    },
    Teardown {
        framework_id: FrameworkId,
    },

    // ---- master -> scheduler (events) ------------------------------------------------------
    Subscribed {
        framework_id: FrameworkId,
        heartbeat_interval_ms: u64,
    },
    Offers {
        offers: Vec<Offer>,
    },
    Rescind {
        offer_id: OfferId,
    },
    Update {
        status: TaskStatus,
    },
    AgentLost {
        agent_id: AgentId,
    },
    /// The master will take back `resources` on `agent_id` (an inverse offer): after
    /// `deadline_ms` (from when this is sent) it kills `task_ids`, which end `TASK_KILLED`
    /// with reason `preempted`, because a role below its guarantee is waiting for them.
    RevocationWarning {
        agent_id: AgentId,
        resources: Resources,
        task_ids: Vec<TaskId>,
        deadline_ms: u64,
    },
    Heartbeat,

    // ---- executor <-> agent ----------------------------------------------------------------
    RegisterExecutor {
        framework_id: FrameworkId,
        executor_id: ExecutorId,
    },
    ExecutorRegistered {
        agent_id: AgentId,
        framework: FrameworkInfo,
        executor: ExecutorInfo,
    },
    ShutdownExecutor {
        grace_ms: u64,
    },

    // ---- anyone ----------------------------------------------------------------------------
    /// A request was refused. `fatal`: the sender will close the connection after this.
    Error {
        code: ErrorCode,
        message: String,
        fatal: bool,
    },

    // ---- master <-> master -----------------------------------------------------------------
    /// A raft message of the master registry (protobuf-encoded `eraftpb::Message`; it names
    /// its sender and receiver, which the receiver checks against the connection's peer).
    Raft {
        data: Vec<u8>,
    },

    // ---- standby schedulers (appended so older variants keep their wire tags) --------------
    /// A second scheduler instance of an existing framework (`framework.id` set) asks to
    /// stand by: while the framework's active scheduler is connected the master answers
    /// `StandingBy`; when it disconnects the master promotes a standby (`Subscribed`).
    /// Re-sent periodically by the standby, which doubles as its liveness check.
    SubscribeStandby {
        framework: FrameworkInfo,
    },
    /// The answer to `SubscribeStandby` while another instance is active: not an error, the
    /// standby keeps its connection and waits.
    StandingBy {
        framework_id: FrameworkId,
        message: String,
    },
}

impl Message {
    /// Variant name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::RegisterAgent { .. } => "register_agent",
            Message::ReregisterAgent { .. } => "reregister_agent",
            Message::AgentRegistered { .. } => "agent_registered",
            Message::Ping => "ping",
            Message::Pong => "pong",
            Message::AgentUsage { .. } => "agent_usage",
            Message::RunTask { .. } => "run_task",
            Message::KillTask { .. } => "kill_task",
            Message::StatusUpdate { .. } => "status_update",
            Message::StatusUpdateAck { .. } => "status_update_ack",
            Message::ShutdownFramework { .. } => "shutdown_framework",
            Message::FrameworkToExecutor { .. } => "framework_to_executor",
            Message::ExecutorToFramework { .. } => "executor_to_framework",
            Message::Subscribe { .. } => "subscribe",
            Message::Accept { .. } => "accept",
            Message::Decline { .. } => "decline",
            Message::Revive { .. } => "revive",
            Message::Suppress { .. } => "suppress",
            Message::Kill { .. } => "kill",
            Message::Acknowledge { .. } => "acknowledge",
            Message::Reconcile { .. } => "reconcile",
            Message::Teardown { .. } => "teardown",
            Message::Subscribed { .. } => "subscribed",
            Message::Offers { .. } => "offers",
            Message::Rescind { .. } => "rescind",
            Message::Update { .. } => "update",
            Message::AgentLost { .. } => "agent_lost",
            Message::RevocationWarning { .. } => "revocation_warning",
            Message::Heartbeat => "heartbeat",
            Message::RegisterExecutor { .. } => "register_executor",
            Message::ExecutorRegistered { .. } => "executor_registered",
            Message::ShutdownExecutor { .. } => "shutdown_executor",
            Message::Error { .. } => "error",
            Message::Raft { .. } => "raft",
            Message::SubscribeStandby { .. } => "subscribe_standby",
            Message::StandingBy { .. } => "standing_by",
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Message {
        Message::Error {
            code,
            message: message.into(),
            fatal: false,
        }
    }
    pub fn fatal(code: ErrorCode, message: impl Into<String>) -> Message {
        Message::Error {
            code,
            message: message.into(),
            fatal: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_and_reject() {
        let a = parse_attributes("rack:r1; zone:a").unwrap();
        assert_eq!(a.get("rack").map(String::as_str), Some("r1"));
        assert!(parse_attributes("rack").is_err());
        assert!(parse_attributes("ra ck:x").is_err());
    }

    #[test]
    fn refuse_seconds_validated() {
        assert_eq!(
            Filters {
                refuse_seconds: 1.5
            }
            .refuse_ms(),
            Ok(1500)
        );
        assert!(Filters {
            refuse_seconds: f64::NAN
        }
        .refuse_ms()
        .is_err());
        assert!(Filters {
            refuse_seconds: -1.0
        }
        .refuse_ms()
        .is_err());
        assert_eq!(
            Filters {
                refuse_seconds: 1e300
            }
            .refuse_ms(),
            Ok((MAX_REFUSE_SECONDS * 1000.0) as u64)
        );
    }
}
