//! The executor driver: connects an [`Executor`] to the agent that launched it.
//!
//! * [`ExecutorEnv`] reads what the agent tells every executor through its environment
//!   (`AGORA_AGENT_ENDPOINT`, `AGORA_FRAMEWORK_ID`, ...).
//! * [`ExecutorDriverCore`] is pure: it registers with the agent, hands it tasks to the executor,
//!   stamps the executor's status updates (uuid, source, ids, timestamp) and re-sends each one
//!   with backoff until the agent acknowledges it, also after a reconnect. It ends the executor
//!   once it asked to stop and every update is acknowledged (or a bound passed), or when the
//!   agent stayed unreachable longer than the recovery timeout.
//! * [`ExecutorDriver`] is the actix actor performing the core's actions over a
//!   [`Transport`](crate::transport::Transport).
//!
//! ```ignore
//! let env = ExecutorEnv::from_env()?;
//! let (_driver, exit) = ExecutorDriver::start(transport, &env, MyExecutor::default());
//! std::process::exit(exit.await.unwrap_or(1));
//! ```

mod actor;

pub use actor::{AfterStep, ExecutorDriver, ExecutorDriverOptions, WithExecutor};

use super::{ExecCall, Executor, ExecutorCtx, SdkError};
use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::messages::{ExecutorInfo, FrameworkInfo, Message, TaskInfo, TaskStatus, UpdateSource};
use crate::time::{backoff_ms, Time};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tracing::{debug, error, info, warn};

/// Where the agent listens for this executor (`host:port`).
pub const ENV_AGENT_ENDPOINT: &str = "AGORA_AGENT_ENDPOINT";
pub const ENV_FRAMEWORK_ID: &str = "AGORA_FRAMEWORK_ID";
pub const ENV_EXECUTOR_ID: &str = "AGORA_EXECUTOR_ID";
pub const ENV_AGENT_ID: &str = "AGORA_AGENT_ID";
/// The executor's sandbox directory (absolute); also its working directory.
pub const ENV_SANDBOX: &str = "AGORA_SANDBOX";
/// The cluster name, checked in the connection handshake.
pub const ENV_CLUSTER: &str = "AGORA_CLUSTER";
/// Optional: how long the agent waits after `ShutdownExecutor` before killing the executor.
pub const ENV_SHUTDOWN_GRACE_MS: &str = "AGORA_SHUTDOWN_GRACE_MS";

/// Used when `AGORA_SHUTDOWN_GRACE_MS` is not set.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 5_000;
/// Largest accepted `AGORA_SHUTDOWN_GRACE_MS` (10 minutes).
pub const MAX_SHUTDOWN_GRACE_MS: u64 = 600_000;

/// What the agent tells an executor through its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorEnv {
    pub agent_endpoint: String,
    pub framework_id: FrameworkId,
    pub executor_id: ExecutorId,
    pub agent_id: AgentId,
    pub sandbox: PathBuf,
    pub cluster: String,
    pub shutdown_grace_ms: u64,
}

impl ExecutorEnv {
    /// Reads and checks the process environment.
    pub fn from_env() -> Result<ExecutorEnv, SdkError> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err("not valid UTF-8".to_string()),
        })
    }

    /// Reads and checks variables through `get` (tests, or an agent validating what it will
    /// set). `get` returns `Ok(None)` for a missing variable and `Err(why)` for an unreadable one.
    pub fn from_lookup(
        get: impl Fn(&str) -> Result<Option<String>, String>,
    ) -> Result<ExecutorEnv, SdkError> {
        let optional = |name: &'static str| get(name).map_err(|why| bad(name, "", &why));
        let read = |name: &'static str| -> Result<String, SdkError> {
            optional(name)?.ok_or(SdkError::MissingEnv { name })
        };
        let agent_endpoint = read(ENV_AGENT_ENDPOINT)?;
        check_endpoint(&agent_endpoint)?;
        let framework_id = parse_id(ENV_FRAMEWORK_ID, read(ENV_FRAMEWORK_ID)?, FrameworkId::new)?;
        let executor_id = parse_id(ENV_EXECUTOR_ID, read(ENV_EXECUTOR_ID)?, ExecutorId::new)?;
        let agent_id = parse_id(ENV_AGENT_ID, read(ENV_AGENT_ID)?, AgentId::new)?;
        let sandbox = PathBuf::from(read(ENV_SANDBOX)?);
        if !sandbox.is_absolute() {
            let shown = sandbox.display().to_string();
            return Err(bad(ENV_SANDBOX, &shown, "must be an absolute path"));
        }
        let cluster = read(ENV_CLUSTER)?;
        if cluster.trim().is_empty() {
            return Err(bad(ENV_CLUSTER, &cluster, "must not be empty"));
        }
        let shutdown_grace_ms = match optional(ENV_SHUTDOWN_GRACE_MS)? {
            None => DEFAULT_SHUTDOWN_GRACE_MS,
            Some(v) => parse_grace(&v)?,
        };
        Ok(ExecutorEnv {
            agent_endpoint,
            framework_id,
            executor_id,
            agent_id,
            sandbox,
            cluster,
            shutdown_grace_ms,
        })
    }

    /// The variables an agent sets for this executor (the inverse of [`from_env`](Self::from_env)).
    pub fn to_vars(&self) -> Vec<(String, String)> {
        vec![
            (ENV_AGENT_ENDPOINT.into(), self.agent_endpoint.clone()),
            (ENV_FRAMEWORK_ID.into(), self.framework_id.to_string()),
            (ENV_EXECUTOR_ID.into(), self.executor_id.to_string()),
            (ENV_AGENT_ID.into(), self.agent_id.to_string()),
            (ENV_SANDBOX.into(), self.sandbox.display().to_string()),
            (ENV_CLUSTER.into(), self.cluster.clone()),
            (
                ENV_SHUTDOWN_GRACE_MS.into(),
                self.shutdown_grace_ms.to_string(),
            ),
        ]
    }
}

fn bad(name: &'static str, value: &str, why: &str) -> SdkError {
    SdkError::BadEnv {
        name,
        value: value.to_string(),
        why: why.to_string(),
    }
}

fn parse_id<T>(
    name: &'static str,
    value: String,
    new: impl Fn(String) -> Result<T, crate::ids::IdError>,
) -> Result<T, SdkError> {
    new(value.clone()).map_err(|e| bad(name, &value, &e.to_string()))
}

fn check_endpoint(endpoint: &str) -> Result<(), SdkError> {
    let ok = endpoint
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(bad(ENV_AGENT_ENDPOINT, endpoint, "expected HOST:PORT"))
    }
}

fn parse_grace(v: &str) -> Result<u64, SdkError> {
    let ms: u64 = v
        .trim()
        .parse()
        .map_err(|_| bad(ENV_SHUTDOWN_GRACE_MS, v, "expected milliseconds"))?;
    if ms > MAX_SHUTDOWN_GRACE_MS {
        let why = format!("at most {MAX_SHUTDOWN_GRACE_MS} ms");
        return Err(bad(ENV_SHUTDOWN_GRACE_MS, v, &why));
    }
    Ok(ms)
}

/// Tunables of the executor driver. `Default` gives production values.
#[derive(Debug, Clone)]
pub struct ExecutorDriverConfig {
    /// First wait before re-sending an unacknowledged update; doubles up to the cap.
    pub update_retry_base_ms: u64,
    pub update_retry_cap_ms: u64,
    /// First wait before re-sending an unanswered `RegisterExecutor`.
    pub register_retry_base_ms: u64,
    pub register_retry_cap_ms: u64,
    /// After `ctx.stop()`, exit at the latest this long later even if updates are unacknowledged.
    pub stop_bound_ms: u64,
    /// Exit with an error after being unregistered with the agent this long.
    pub recovery_timeout_ms: u64,
    /// Most updates waiting for acknowledgement; more are refused with an error log.
    pub max_pending_updates: usize,
    /// Most executor timers outstanding at once.
    pub max_timers: usize,
    /// Seeds update uuids and jitter; the shell derives it from the pid and the start time so
    /// uuids differ between executors.
    pub seed: u64,
    /// Wall-clock milliseconds (Unix epoch) at `Time(0)`, to stamp `timestamp_ms`.
    pub wall_clock_origin_ms: u64,
}

impl Default for ExecutorDriverConfig {
    fn default() -> Self {
        ExecutorDriverConfig {
            update_retry_base_ms: 1_000,
            update_retry_cap_ms: 10_000,
            register_retry_base_ms: 1_000,
            register_retry_cap_ms: 5_000,
            stop_bound_ms: 5_000,
            recovery_timeout_ms: 15_000,
            max_pending_updates: 10_000,
            max_timers: 10_000,
            seed: 0,
            wall_clock_origin_ms: 0,
        }
    }
}

/// Timers of the executor driver; stale ones are recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExecTimer {
    /// Set by the executor with [`ExecutorCtx::set_timer`].
    Executor(u64),
    /// Re-send the update with this uuid unless it was acknowledged or re-sent since.
    UpdateRetry { uuid: u64, attempt: u32 },
    /// Re-send `RegisterExecutor` if this connection is still unanswered.
    RegisterRetry { generation: u64 },
    /// Give up if still not registered with the agent.
    Recovery,
    /// Exit even though updates are unacknowledged.
    StopDeadline,
}

/// What the shell must do for the executor driver core.
// Actions live for one step only; boxing the message would cost more than the size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ExecAction {
    /// Send to the agent on the current connection (dropped if there is none).
    Send(Message),
    SetTimer {
        timer: ExecTimer,
        at: Time,
    },
    /// End the executor process (or task) with this code. Always the last action.
    Exit {
        code: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentLink {
    Disconnected,
    /// Connected, `RegisterExecutor` sent `attempt + 1` times.
    Registering {
        attempt: u32,
    },
    Registered,
}

#[derive(Debug, Clone)]
struct PendingUpdate {
    status: TaskStatus,
    attempt: u32,
}

/// The pure executor driver. See the module docs.
pub struct ExecutorDriverCore<E: Executor> {
    executor: E,
    config: ExecutorDriverConfig,
    framework_id: FrameworkId,
    executor_id: ExecutorId,
    agent_id: AgentId,
    link: AgentLink,
    generation: u64,
    /// Since when the executor is not registered (`None` while registered).
    unregistered_since: Option<Time>,
    /// Unacknowledged updates by send order, so a resend keeps each task's order.
    pending: BTreeMap<u64, PendingUpdate>,
    /// uuid → key in `pending`.
    by_uuid: BTreeMap<u64, u64>,
    next_seq: u64,
    stopping: bool,
    exited: Option<i32>,
    timers_outstanding: usize,
}

impl<E: Executor> ExecutorDriverCore<E> {
    pub fn new(executor: E, env: &ExecutorEnv, config: ExecutorDriverConfig) -> Self {
        ExecutorDriverCore {
            executor,
            config,
            framework_id: env.framework_id.clone(),
            executor_id: env.executor_id.clone(),
            agent_id: env.agent_id.clone(),
            link: AgentLink::Disconnected,
            generation: 0,
            unregistered_since: None,
            pending: BTreeMap::new(),
            by_uuid: BTreeMap::new(),
            next_seq: 0,
            stopping: false,
            exited: None,
            timers_outstanding: 0,
        }
    }

    pub fn executor(&self) -> &E {
        &self.executor
    }
    /// Direct access (the shell drains side effects through it); prefer
    /// [`with_executor`](Self::with_executor) for anything that produces updates.
    pub fn executor_mut(&mut self) -> &mut E {
        &mut self.executor
    }
    pub fn is_registered(&self) -> bool {
        self.link == AgentLink::Registered
    }
    /// Updates not yet acknowledged by the agent.
    pub fn pending_updates(&self) -> impl Iterator<Item = &TaskStatus> {
        self.pending.values().map(|p| &p.status)
    }
    pub fn exited(&self) -> Option<i32> {
        self.exited
    }

    /// The driver starts (before any connection): arms the recovery timeout.
    pub fn handle_start(&mut self, now: Time) -> Vec<ExecAction> {
        self.unregistered_since = Some(now);
        vec![self.recovery_timer(now)]
    }

    /// Connected to the agent: register.
    pub fn handle_connected(&mut self, now: Time) -> Vec<ExecAction> {
        if self.exited.is_some() {
            return Vec::new();
        }
        self.generation += 1;
        self.link = AgentLink::Registering { attempt: 0 };
        info!(executor = %self.executor_id, "connected to the agent; registering");
        self.register_actions(now, 0)
    }

    /// The agent connection is gone: wait for the transport to redial, give up after the
    /// recovery timeout.
    pub fn handle_disconnected(&mut self, now: Time, reason: &str) -> Vec<ExecAction> {
        if self.exited.is_some() || self.link == AgentLink::Disconnected {
            return Vec::new();
        }
        warn!(reason, "lost the connection to the agent");
        self.generation += 1;
        let was_registered = self.link == AgentLink::Registered;
        self.link = AgentLink::Disconnected;
        if was_registered {
            self.unregistered_since = Some(now);
            return vec![self.recovery_timer(now)];
        }
        Vec::new()
    }

    /// A frame from the agent.
    pub fn handle_message(&mut self, now: Time, msg: Message) -> Vec<ExecAction> {
        if self.exited.is_some() {
            return Vec::new();
        }
        match msg {
            Message::ExecutorRegistered {
                agent_id,
                framework,
                executor,
            } => self.on_registered(now, agent_id, framework, executor),
            Message::RunTask { task, .. } => self.on_run_task(now, task),
            Message::KillTask {
                framework_id,
                task_id,
                grace_ms,
            } => self.on_kill(now, framework_id, task_id, grace_ms),
            Message::ShutdownExecutor { grace_ms } => {
                info!(grace_ms, "the agent asks the executor to shut down");
                self.run(now, |e, ctx| e.shutdown(ctx, grace_ms)).1
            }
            Message::FrameworkToExecutor {
                executor_id, data, ..
            } if executor_id == self.executor_id => self.run(now, |e, ctx| e.message(ctx, &data)).1,
            Message::StatusUpdateAck { task_id, uuid, .. } => self.on_ack(task_id, uuid),
            Message::Error {
                code,
                message,
                fatal,
            } => {
                if fatal {
                    error!(?code, message, "fatal error from the agent; exiting");
                    return self.exit(1);
                }
                warn!(?code, message, "error from the agent");
                Vec::new()
            }
            other => {
                debug!(
                    kind = other.kind(),
                    "ignoring a message not meant for an executor"
                );
                Vec::new()
            }
        }
    }

    /// A timer set by an earlier action fired.
    pub fn handle_timer(&mut self, now: Time, timer: ExecTimer) -> Vec<ExecAction> {
        if self.exited.is_some() {
            return Vec::new();
        }
        match timer {
            ExecTimer::Executor(token) => {
                self.timers_outstanding = self.timers_outstanding.saturating_sub(1);
                self.run(now, |e, ctx| e.timer(ctx, token)).1
            }
            ExecTimer::UpdateRetry { uuid, attempt } => self.on_update_retry(now, uuid, attempt),
            ExecTimer::RegisterRetry { generation } => self.on_register_retry(now, generation),
            ExecTimer::Recovery => self.on_recovery_check(now),
            ExecTimer::StopDeadline => {
                if let Some(since) = self.unregistered_since.filter(|_| !self.pending.is_empty()) {
                    // The agent is away (restarting): its recovery re-registers us and takes the
                    // updates. Leaving now would turn a finished task into a failed one (found
                    // by the simulator), so wait up to the recovery timeout, which ends us anyway.
                    let until = since.plus_ms(self.config.recovery_timeout_ms);
                    if now < until {
                        return vec![ExecAction::SetTimer {
                            timer: ExecTimer::StopDeadline,
                            at: until,
                        }];
                    }
                }
                warn!(
                    unacknowledged = self.pending.len(),
                    "stopping with status updates the agent never acknowledged"
                );
                self.exit(0)
            }
        }
    }

    /// Runs `f` on the executor (e.g. "this child process exited") and performs what it asked.
    pub fn with_executor<R>(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut E, &mut ExecutorCtx) -> R,
    ) -> (R, Vec<ExecAction>) {
        self.run(now, f)
    }

    // ---- event handlers ---------------------------------------------------------------------

    fn on_registered(
        &mut self,
        now: Time,
        agent_id: AgentId,
        framework: FrameworkInfo,
        executor: ExecutorInfo,
    ) -> Vec<ExecAction> {
        if !matches!(self.link, AgentLink::Registering { .. }) {
            debug!("duplicate or unexpected ExecutorRegistered ignored");
            return Vec::new();
        }
        if executor.executor_id != self.executor_id {
            warn!(ours = %self.executor_id, theirs = %executor.executor_id, "the agent registered us under another executor id");
        }
        if agent_id != self.agent_id {
            info!(old = %self.agent_id, new = %agent_id, "the agent has a new id");
            self.agent_id = agent_id.clone();
        }
        info!(agent = %agent_id, pending = self.pending.len(), "registered with the agent");
        self.link = AgentLink::Registered;
        self.unregistered_since = None;
        let mut out = self.resend_all(now);
        let (_, more) = self.run(now, |e, ctx| {
            e.registered(ctx, &agent_id, &framework, &executor)
        });
        out.extend(more);
        out
    }

    fn on_run_task(&mut self, now: Time, task: TaskInfo) -> Vec<ExecAction> {
        if self.link != AgentLink::Registered {
            warn!(task = %task.task_id, "task arrived before registration completed; launching anyway");
        }
        info!(task = %task.task_id, "launching task");
        self.run(now, |e, ctx| e.launch(ctx, task)).1
    }

    fn on_kill(
        &mut self,
        now: Time,
        framework_id: FrameworkId,
        task_id: TaskId,
        grace_ms: u64,
    ) -> Vec<ExecAction> {
        if framework_id != self.framework_id {
            warn!(%framework_id, task = %task_id, "kill for another framework ignored");
            return Vec::new();
        }
        info!(task = %task_id, grace_ms, "killing task");
        self.run(now, |e, ctx| e.kill(ctx, &task_id, grace_ms)).1
    }

    fn on_ack(&mut self, task_id: TaskId, uuid: u64) -> Vec<ExecAction> {
        let Some(seq) = self.by_uuid.remove(&uuid) else {
            debug!(task = %task_id, uuid, "acknowledgement of an unknown update");
            return Vec::new();
        };
        if let Some(p) = self.pending.remove(&seq) {
            if p.status.task_id != task_id {
                warn!(uuid, acked = %task_id, ours = %p.status.task_id, "acknowledgement names another task");
            }
            debug!(task = %p.status.task_id, state = p.status.state.name(), "update acknowledged");
        }
        if self.stopping && self.pending.is_empty() {
            info!("all updates acknowledged; exiting");
            return self.exit(0);
        }
        Vec::new()
    }

    fn on_update_retry(&mut self, now: Time, uuid: u64, attempt: u32) -> Vec<ExecAction> {
        let Some(seq) = self.by_uuid.get(&uuid).copied() else {
            return Vec::new();
        };
        let registered = self.link == AgentLink::Registered;
        let Some(p) = self.pending.get_mut(&seq) else {
            return Vec::new();
        };
        if p.attempt != attempt || !registered {
            // Re-sent since, or disconnected: the resend after re-registration takes over.
            return Vec::new();
        }
        p.attempt = p.attempt.saturating_add(1);
        debug!(task = %p.status.task_id, uuid, attempt = p.attempt, "re-sending unacknowledged update");
        self.send_pending(now, seq)
    }

    fn on_register_retry(&mut self, now: Time, generation: u64) -> Vec<ExecAction> {
        let AgentLink::Registering { attempt } = self.link else {
            return Vec::new();
        };
        if generation != self.generation {
            return Vec::new();
        }
        let attempt = attempt.saturating_add(1);
        self.link = AgentLink::Registering { attempt };
        warn!(
            attempt,
            "no answer to RegisterExecutor yet; sending it again"
        );
        self.register_actions(now, attempt)
    }

    fn on_recovery_check(&mut self, now: Time) -> Vec<ExecAction> {
        let Some(since) = self.unregistered_since else {
            return Vec::new();
        };
        let deadline = since.plus_ms(self.config.recovery_timeout_ms);
        if now < deadline {
            return vec![ExecAction::SetTimer {
                timer: ExecTimer::Recovery,
                at: deadline,
            }];
        }
        error!(
            unregistered_ms = now.since(since),
            "could not (re-)register with the agent in time; exiting"
        );
        self.exit(1)
    }

    // ---- helpers ----------------------------------------------------------------------------

    fn recovery_timer(&self, now: Time) -> ExecAction {
        ExecAction::SetTimer {
            timer: ExecTimer::Recovery,
            at: now.plus_ms(self.config.recovery_timeout_ms),
        }
    }

    fn register_actions(&self, now: Time, attempt: u32) -> Vec<ExecAction> {
        let wait_ms = backoff_ms(
            attempt,
            self.config.register_retry_base_ms,
            self.config.register_retry_cap_ms,
            self.config.seed ^ self.generation,
        );
        vec![
            ExecAction::Send(Message::RegisterExecutor {
                framework_id: self.framework_id.clone(),
                executor_id: self.executor_id.clone(),
            }),
            ExecAction::SetTimer {
                timer: ExecTimer::RegisterRetry {
                    generation: self.generation,
                },
                at: now.plus_ms(wait_ms),
            },
        ]
    }

    /// After (re-)registration: every pending update again, in the order first sent.
    fn resend_all(&mut self, now: Time) -> Vec<ExecAction> {
        let seqs: Vec<u64> = self.pending.keys().copied().collect();
        let mut out = Vec::with_capacity(seqs.len() * 2);
        for seq in seqs {
            if let Some(p) = self.pending.get_mut(&seq) {
                p.attempt = p.attempt.saturating_add(1);
            }
            out.extend(self.send_pending(now, seq));
        }
        out
    }

    /// Sends one pending update and arms its retry timer.
    fn send_pending(&self, now: Time, seq: u64) -> Vec<ExecAction> {
        let Some(p) = self.pending.get(&seq) else {
            return Vec::new();
        };
        let uuid = p.status.uuid.unwrap_or_default();
        let wait_ms = backoff_ms(
            p.attempt.min(30),
            self.config.update_retry_base_ms,
            self.config.update_retry_cap_ms,
            self.config.seed ^ uuid,
        );
        vec![
            ExecAction::Send(Message::StatusUpdate {
                framework_id: self.framework_id.clone(),
                status: p.status.clone(),
            }),
            ExecAction::SetTimer {
                timer: ExecTimer::UpdateRetry {
                    uuid,
                    attempt: p.attempt,
                },
                at: now.plus_ms(wait_ms),
            },
        ]
    }

    /// A uuid no other update of this executor has: splitmix64's finaliser is a bijection, so
    /// distinct sequence numbers give distinct uuids; the seed makes executors differ.
    fn uuid_for(&self, seq: u64) -> u64 {
        let mut z = self
            .config
            .seed
            .wrapping_add(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn run<R>(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut E, &mut ExecutorCtx) -> R,
    ) -> (R, Vec<ExecAction>) {
        let mut ctx = ExecutorCtx::new(now);
        let r = f(&mut self.executor, &mut ctx);
        (r, self.collect(now, ctx))
    }

    fn collect(&mut self, now: Time, ctx: ExecutorCtx) -> Vec<ExecAction> {
        let mut out = Vec::new();
        if self.exited.is_some() {
            return out;
        }
        for call in ctx.calls {
            match call {
                ExecCall::Update(status) => out.extend(self.add_update(now, status)),
                ExecCall::Message(data) => out.extend(self.framework_message(data)),
            }
        }
        for (token, at) in ctx.timers {
            if self.timers_outstanding >= self.config.max_timers {
                warn!(token, "too many executor timers; refusing this one");
                continue;
            }
            self.timers_outstanding += 1;
            let timer = ExecTimer::Executor(token);
            out.push(ExecAction::SetTimer { timer, at });
        }
        if ctx.stop && !self.stopping {
            out.extend(self.begin_stop(now));
        }
        out
    }

    /// Stamps an update, keeps it until acknowledged and sends it if registered.
    fn add_update(&mut self, now: Time, mut status: TaskStatus) -> Vec<ExecAction> {
        if self.pending.len() >= self.config.max_pending_updates {
            error!(task = %status.task_id, state = status.state.name(), limit = self.config.max_pending_updates,
                "too many unacknowledged updates; dropping this one");
            return Vec::new();
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let uuid = self.uuid_for(seq);
        status.uuid = Some(uuid);
        status.source = UpdateSource::Executor;
        status.executor_id = Some(self.executor_id.clone());
        status.agent_id = Some(self.agent_id.clone());
        status.timestamp_ms = self.config.wall_clock_origin_ms.saturating_add(now.ms());
        info!(task = %status.task_id, state = status.state.name(), "status update");
        self.by_uuid.insert(uuid, seq);
        self.pending
            .insert(seq, PendingUpdate { status, attempt: 0 });
        if self.link == AgentLink::Registered {
            self.send_pending(now, seq)
        } else {
            Vec::new()
        }
    }

    fn framework_message(&self, data: Vec<u8>) -> Option<ExecAction> {
        if self.link != AgentLink::Registered {
            warn!(
                bytes = data.len(),
                "not registered with the agent; dropping the framework message"
            );
            return None;
        }
        Some(ExecAction::Send(Message::ExecutorToFramework {
            framework_id: self.framework_id.clone(),
            executor_id: self.executor_id.clone(),
            agent_id: self.agent_id.clone(),
            data,
        }))
    }

    fn begin_stop(&mut self, now: Time) -> Vec<ExecAction> {
        self.stopping = true;
        if self.pending.is_empty() {
            info!("the executor asked to stop; exiting");
            return self.exit(0);
        }
        info!(
            pending = self.pending.len(),
            "the executor asked to stop; waiting for acknowledgements"
        );
        vec![ExecAction::SetTimer {
            timer: ExecTimer::StopDeadline,
            at: now.plus_ms(self.config.stop_bound_ms),
        }]
    }

    fn exit(&mut self, code: i32) -> Vec<ExecAction> {
        if self.exited.is_some() {
            return Vec::new();
        }
        self.exited = Some(code);
        vec![ExecAction::Exit { code }]
    }
}

#[cfg(test)]
mod tests;
