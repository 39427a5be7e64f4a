//! The scheduler driver: connects a [`Scheduler`] to the master.
//!
//! Two layers, as everywhere in agora:
//!
//! * [`SchedulerDriverCore`] is pure: it is fed "connected", "disconnected", "frame from the
//!   master", "timer fired" (each with the current [`Time`]) and answers with
//!   [`DriverAction`]s (send this message, set this timer, reconnect, stop). It subscribes and
//!   re-subscribes with the same framework id, de-duplicates and acknowledges status updates, turns
//!   the scheduler's [`Call`]s into wire messages and watches the master's heartbeats. It runs
//!   unchanged in unit tests and in a simulator.
//! * [`SchedulerDriver`] is the actix actor that owns a core, dials the master through a
//!   [`Transport`](crate::transport::Transport) and performs the actions.
//!
//! A framework developer usually only writes a `Scheduler` and calls
//! [`SchedulerDriver::start`]:
//!
//! ```ignore
//! let (driver, exit) = SchedulerDriver::start(transport, vec!["127.0.0.1:5050".into()], "agora", my_scheduler)?;
//! // ask the scheduler something while it runs:
//! let done = driver.send(WithScheduler::new(|s: &mut MyScheduler, _ctx| s.done())).await?;
//! let code = exit.await.unwrap_or(1);
//! ```

mod actor;

pub(crate) use actor::process_seed;
pub use actor::{DriverExit, SchedulerDriver, StopDriver, WithScheduler, STOP_LINGER_MS};

use super::{Call, Scheduler, SchedulerCtx};
use crate::ids::{AgentId, ExecutorId, FrameworkId, OfferId, TaskId};
use crate::messages::{ErrorCode, FrameworkInfo, Message, Offer, TaskStatus};
use crate::time::{backoff_ms, Time};
use std::collections::{BTreeSet, VecDeque};
use tracing::{debug, error, info, warn};

/// How many (task, uuid) pairs the driver remembers to filter duplicate updates. Duplicates
/// come from an agent retrying an update whose acknowledgement was lost, so they arrive soon
/// after the original; a window this large covers any realistic retry horizon.
pub const DEFAULT_DEDUP_CAPACITY: usize = 65_536;
/// Most scheduler timers that may be outstanding at once; more are refused with a log line.
pub const DEFAULT_MAX_TIMERS: usize = 10_000;

/// Tunables of the scheduler driver. `Default` gives sensible production values.
#[derive(Debug, Clone)]
pub struct SchedulerDriverConfig {
    /// First wait before re-sending an unanswered `Subscribe`.
    pub subscribe_retry_base_ms: u64,
    /// Longest wait between `Subscribe` retries.
    pub subscribe_retry_cap_ms: u64,
    /// The connection is considered dead after this many heartbeat intervals of silence.
    pub missed_heartbeats_limit: u32,
    /// See [`DEFAULT_DEDUP_CAPACITY`].
    pub dedup_capacity: usize,
    /// See [`DEFAULT_MAX_TIMERS`].
    pub max_timers: usize,
    /// Seeds the jitter of retry backoffs (the shell passes something process-specific).
    pub jitter_seed: u64,
    /// Start as a standby instance of the framework whose id `framework_info().id` names:
    /// connect and wait (`SubscribeStandby`) while another instance is active; the master
    /// promotes this one when the active instance disconnects. Once promoted the driver
    /// behaves like any other (it re-subscribes as the active instance after a reconnect).
    pub standby: bool,
    /// How often a standby repeats `SubscribeStandby`. The master answers each one, so this
    /// is also how a standby notices a silent master (no answer for
    /// [`STANDBY_SILENT_POLLS`] intervals: reconnect, which follows a new leader).
    pub standby_poll_ms: u64,
}

/// Unanswered standby polls after which the master counts as silent.
pub const STANDBY_SILENT_POLLS: u64 = 3;

impl Default for SchedulerDriverConfig {
    fn default() -> Self {
        SchedulerDriverConfig {
            subscribe_retry_base_ms: 1_000,
            subscribe_retry_cap_ms: 30_000,
            missed_heartbeats_limit: 5,
            dedup_capacity: DEFAULT_DEDUP_CAPACITY,
            max_timers: DEFAULT_MAX_TIMERS,
            jitter_seed: 0,
            standby: false,
            standby_poll_ms: 1_000,
        }
    }
}

/// A timer of the scheduler driver. Timers are never cancelled: a stale one is recognised by
/// its generation (bumped on every connect and disconnect) and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriverTimer {
    /// A timer the scheduler set with [`SchedulerCtx::set_timer`]; fires `Scheduler::timer`.
    Scheduler(u64),
    /// Re-send `Subscribe` if no `Subscribed` arrived on this connection.
    SubscribeRetry { generation: u64 },
    /// Check that the master has been heard from recently.
    HeartbeatCheck { generation: u64 },
    /// A standby repeats `SubscribeStandby` (and checks that the master still answers).
    StandbyPoll { generation: u64 },
}

/// What the shell must do for the core.
// Actions live for one step only; boxing the message would cost more than the size.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum DriverAction {
    /// Send on the current master connection (dropped if there is none).
    Send(Message),
    /// Call `handle_timer(timer)` at `at`.
    SetTimer { timer: DriverTimer, at: Time },
    /// The master went silent: drop the connection and dial again.
    Reconnect,
    /// Flush, disconnect and end with this exit code. Always the last action of a batch.
    Stop { code: i32 },
}

/// Counters for logs, CLIs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Updates handed to `Scheduler::update`.
    pub updates: u64,
    /// Updates filtered as duplicates (still acknowledged).
    pub duplicate_updates: u64,
    /// Calls refused because the driver was not subscribed.
    pub dropped_calls: u64,
    /// `Subscribe` messages sent (first subscriptions, retries and re-subscriptions).
    pub subscribe_attempts: u64,
    /// Times the master was declared silent and the connection redialed.
    pub silent_master_reconnects: u64,
    /// `SubscribeStandby` messages sent while standing by.
    pub standby_polls: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Disconnected,
    /// Connected, `Subscribe` sent `attempt + 1` times, no answer yet.
    Subscribing {
        attempt: u32,
    },
    /// A standby: the master confirmed that another instance is active.
    StandingBy,
    Subscribed,
}

/// Remembers the most recent (task, uuid) pairs, evicting the oldest beyond `capacity`.
#[derive(Debug)]
struct SeenUpdates {
    order: VecDeque<(TaskId, u64)>,
    set: BTreeSet<(TaskId, u64)>,
    capacity: usize,
}

impl SeenUpdates {
    fn new(capacity: usize) -> Self {
        SeenUpdates {
            order: VecDeque::new(),
            set: BTreeSet::new(),
            capacity: capacity.max(1),
        }
    }
    /// Records `key`; false if it was already there.
    fn insert(&mut self, key: (TaskId, u64)) -> bool {
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }
}

/// The pure scheduler driver. See the module docs.
pub struct SchedulerDriverCore<S: Scheduler> {
    scheduler: S,
    config: SchedulerDriverConfig,
    framework_id: Option<FrameworkId>,
    conn: ConnState,
    /// Bumped on every connect and disconnect, so timers of an old connection are ignored.
    generation: u64,
    last_heard: Time,
    heartbeat_interval_ms: u64,
    seen: SeenUpdates,
    timers_outstanding: usize,
    stopped: Option<i32>,
    stats: DriverStats,
    /// A standby not (yet) promoted: subscribes with `SubscribeStandby`.
    standing_by: bool,
}

impl<S: Scheduler> SchedulerDriverCore<S> {
    /// Wraps `scheduler`. If its `framework_info().id` is set, the first subscription already
    /// asks for that id (a restarted scheduler failing over to its old framework).
    pub fn new(scheduler: S, config: SchedulerDriverConfig) -> Self {
        let framework_id = scheduler.framework_info().id;
        let seen = SeenUpdates::new(config.dedup_capacity);
        let standing_by = config.standby;
        SchedulerDriverCore {
            scheduler,
            config,
            framework_id,
            conn: ConnState::Disconnected,
            generation: 0,
            last_heard: Time::ZERO,
            heartbeat_interval_ms: 0,
            seen,
            timers_outstanding: 0,
            stopped: None,
            stats: DriverStats::default(),
            standing_by,
        }
    }

    pub fn scheduler(&self) -> &S {
        &self.scheduler
    }
    /// Direct access for tests and simulators; calls made this way bypass the ctx, so prefer
    /// [`with_scheduler`](Self::with_scheduler).
    pub fn scheduler_mut(&mut self) -> &mut S {
        &mut self.scheduler
    }
    /// The framework id, once the master assigned it (or the scheduler brought one).
    pub fn framework_id(&self) -> Option<&FrameworkId> {
        self.framework_id.as_ref()
    }
    pub fn is_subscribed(&self) -> bool {
        self.conn == ConnState::Subscribed
    }
    /// True while this is a standby instance the master has not promoted.
    pub fn is_standing_by(&self) -> bool {
        self.standing_by
    }
    /// The exit code, once the driver has stopped.
    pub fn stopped(&self) -> Option<i32> {
        self.stopped
    }
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// A connection to the master is up: subscribe (with the known framework id, if any).
    pub fn handle_connected(&mut self, now: Time) -> Vec<DriverAction> {
        if self.stopped.is_some() {
            return Vec::new();
        }
        if self.standing_by && self.framework_id.is_none() {
            let why =
                "a standby scheduler needs the framework id of the instance it stands by for \
                       (FrameworkInfo::id)";
            return self.on_error(now, ErrorCode::BadRequest, why, true);
        }
        self.generation += 1;
        self.last_heard = now;
        self.conn = ConnState::Subscribing { attempt: 0 };
        info!(framework_id = ?self.framework_id, standby = self.standing_by, "connected to the master; subscribing");
        self.subscribe_actions(now, 0)
    }

    /// The connection to the master is gone. The scheduler is told; calls it makes while
    /// disconnected are refused (the transport redials and the driver re-subscribes).
    pub fn handle_disconnected(&mut self, now: Time, reason: &str) -> Vec<DriverAction> {
        if self.stopped.is_some() || self.conn == ConnState::Disconnected {
            return Vec::new();
        }
        warn!(reason, "lost the connection to the master");
        self.generation += 1;
        self.conn = ConnState::Disconnected;
        self.run(now, |s, ctx| s.disconnected(ctx)).1
    }

    /// A frame from the master.
    pub fn handle_message(&mut self, now: Time, msg: Message) -> Vec<DriverAction> {
        if self.stopped.is_some() {
            return Vec::new();
        }
        self.last_heard = now;
        match msg {
            Message::Subscribed {
                framework_id,
                heartbeat_interval_ms,
            } => self.on_subscribed(now, framework_id, heartbeat_interval_ms),
            Message::Offers { offers } => self.on_offers(now, offers),
            Message::Rescind { offer_id } => self.run(now, |s, ctx| s.rescinded(ctx, &offer_id)).1,
            Message::Update { status } => self.on_update(now, status),
            Message::AgentLost { agent_id } => {
                self.run(now, |s, ctx| s.agent_lost(ctx, &agent_id)).1
            }
            Message::ExecutorToFramework {
                executor_id,
                agent_id,
                data,
                ..
            } => self.on_executor_message(now, agent_id, executor_id, data),
            Message::Error {
                code,
                message,
                fatal,
            } => self.on_error(now, code, &message, fatal),
            Message::RevocationWarning {
                agent_id,
                resources,
                task_ids,
                deadline_ms,
            } => {
                let w = super::RevocationWarning {
                    agent_id,
                    resources,
                    task_ids,
                    deadline_ms,
                };
                self.run(now, |s, ctx| s.revocation_warning(ctx, &w)).1
            }
            Message::StandingBy {
                framework_id,
                message,
            } => self.on_standing_by(now, framework_id, &message),
            Message::Heartbeat => Vec::new(),
            other => {
                debug!(
                    kind = other.kind(),
                    "ignoring a message not meant for a scheduler"
                );
                Vec::new()
            }
        }
    }

    /// A timer set by an earlier action fired.
    pub fn handle_timer(&mut self, now: Time, timer: DriverTimer) -> Vec<DriverAction> {
        if self.stopped.is_some() {
            return Vec::new();
        }
        match timer {
            DriverTimer::Scheduler(token) => {
                self.timers_outstanding = self.timers_outstanding.saturating_sub(1);
                self.run(now, |s, ctx| s.timer(ctx, token)).1
            }
            DriverTimer::SubscribeRetry { generation } => self.on_subscribe_retry(now, generation),
            DriverTimer::HeartbeatCheck { generation } => self.on_heartbeat_check(now, generation),
            DriverTimer::StandbyPoll { generation } => self.on_standby_poll(now, generation),
        }
    }

    /// Runs `f` on the scheduler with a fresh ctx and performs what it asked for. This is how
    /// code outside the driver (a CLI asking for progress, a user request to scale) reaches the
    /// scheduler. After the driver stopped, `f` still runs but its calls are dropped.
    pub fn with_scheduler<R>(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut S, &mut SchedulerCtx) -> R,
    ) -> (R, Vec<DriverAction>) {
        self.run(now, f)
    }

    /// Stops the driver from outside (e.g. Ctrl-C) with `code`.
    pub fn stop(&mut self, code: i32) -> Vec<DriverAction> {
        if self.stopped.is_some() {
            return Vec::new();
        }
        self.stopped = Some(code);
        vec![DriverAction::Stop { code }]
    }

    // ---- event handlers ---------------------------------------------------------------------

    fn on_subscribed(&mut self, now: Time, id: FrameworkId, hb_ms: u64) -> Vec<DriverAction> {
        if self.conn == ConnState::Disconnected {
            debug!("ignoring Subscribed while disconnected");
            return Vec::new();
        }
        if self.conn == ConnState::Subscribed && self.framework_id.as_ref() == Some(&id) {
            // The answer to a retried Subscribe: already handled.
            debug!(%id, "duplicate Subscribed ignored");
            return Vec::new();
        }
        if let Some(old) = self.framework_id.as_ref().filter(|old| **old != id) {
            warn!(%old, new = %id, "the master assigned a different framework id; tasks of the old one are not ours any more");
        }
        let resubscribed = self.framework_id.is_some();
        if std::mem::take(&mut self.standing_by) {
            info!(framework_id = %id, "promoted: this standby is now the active scheduler");
        }
        info!(framework_id = %id, resubscribed, heartbeat_interval_ms = hb_ms, "subscribed");
        self.framework_id = Some(id.clone());
        self.conn = ConnState::Subscribed;
        self.heartbeat_interval_ms = hb_ms;
        let mut out = self
            .run(now, |s, ctx| s.subscribed(ctx, &id, resubscribed))
            .1;
        if let Some(at) = self.silence_deadline() {
            let timer = DriverTimer::HeartbeatCheck {
                generation: self.generation,
            };
            insert_before_stop(&mut out, DriverAction::SetTimer { timer, at });
        }
        out
    }

    /// The master says another instance is active. Told to the scheduler once per connection
    /// (not on every poll).
    fn on_standing_by(&mut self, now: Time, id: FrameworkId, message: &str) -> Vec<DriverAction> {
        if !self.standing_by || self.conn == ConnState::Disconnected {
            debug!(framework_id = %id, "ignoring StandingBy: not a waiting standby");
            return Vec::new();
        }
        if self.framework_id.as_ref() != Some(&id) {
            warn!(framework_id = %id, "StandingBy for another framework ignored");
            return Vec::new();
        }
        if self.conn == ConnState::StandingBy {
            return Vec::new();
        }
        info!(framework_id = %id, message, "standing by");
        self.conn = ConnState::StandingBy;
        self.run(now, |s, ctx| s.standing_by(ctx, message)).1
    }

    fn on_offers(&mut self, now: Time, offers: Vec<Offer>) -> Vec<DriverAction> {
        if self.conn != ConnState::Subscribed {
            // Answers could not be sent anyway; the master rescinds or times the offers out.
            warn!(
                count = offers.len(),
                "ignoring offers received while not subscribed"
            );
            return Vec::new();
        }
        self.run(now, |s, ctx| s.offers(ctx, offers)).1
    }

    fn on_update(&mut self, now: Time, status: TaskStatus) -> Vec<DriverAction> {
        let ack = self.ack_for(&status);
        if let Some(uuid) = status.uuid {
            if !self.seen.insert((status.task_id.clone(), uuid)) {
                self.stats.duplicate_updates += 1;
                debug!(task = %status.task_id, uuid, "duplicate update; acknowledging again");
                return ack.map(DriverAction::Send).into_iter().collect();
            }
        }
        self.stats.updates += 1;
        let mut out = self.run(now, |s, ctx| s.update(ctx, &status)).1;
        if let Some(ack) = ack {
            // After the scheduler's own calls, before a possible Stop.
            insert_before_stop(&mut out, DriverAction::Send(ack));
        }
        out
    }

    /// The acknowledgement an update needs, if any (only updates carrying a uuid).
    fn ack_for(&self, status: &TaskStatus) -> Option<Message> {
        let uuid = status.uuid?;
        let Some(framework_id) = self.framework_id.clone() else {
            warn!(task = %status.task_id, "cannot acknowledge an update before knowing the framework id");
            return None;
        };
        let Some(agent_id) = status.agent_id.clone() else {
            warn!(task = %status.task_id, uuid, "cannot acknowledge an update that names no agent");
            return None;
        };
        Some(Message::Acknowledge {
            framework_id,
            agent_id,
            task_id: status.task_id.clone(),
            uuid,
        })
    }

    fn on_executor_message(
        &mut self,
        now: Time,
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: Vec<u8>,
    ) -> Vec<DriverAction> {
        self.run(now, |s, ctx| s.message(ctx, &agent_id, &executor_id, &data))
            .1
    }

    fn on_error(
        &mut self,
        now: Time,
        code: ErrorCode,
        message: &str,
        fatal: bool,
    ) -> Vec<DriverAction> {
        if code == ErrorCode::NotSubscribed && !fatal && self.conn != ConnState::Disconnected {
            // The master forgot us (e.g. it failed over): subscribe again on this connection.
            warn!(
                message,
                "the master says we are not subscribed; re-subscribing"
            );
            self.generation += 1;
            self.conn = ConnState::Subscribing { attempt: 0 };
            return self.subscribe_actions(now, 0);
        }
        if fatal {
            error!(?code, message, "fatal error from the master");
        } else {
            warn!(?code, message, "error from the master");
        }
        let ((), mut out) = self.run(now, |s, ctx| s.error(ctx, message, fatal));
        if fatal && self.stopped.is_none() {
            self.stopped = Some(1);
            out.push(DriverAction::Stop { code: 1 });
        }
        out
    }

    fn on_subscribe_retry(&mut self, now: Time, generation: u64) -> Vec<DriverAction> {
        let ConnState::Subscribing { attempt } = self.conn else {
            return Vec::new();
        };
        if generation != self.generation || self.standing_by {
            return Vec::new();
        }
        let attempt = attempt.saturating_add(1);
        self.conn = ConnState::Subscribing { attempt };
        warn!(attempt, "no answer to Subscribe yet; sending it again");
        self.subscribe_actions(now, attempt)
    }

    /// A standby repeats its `SubscribeStandby` at a fixed, bounded interval; a master that
    /// stopped answering is redialed (the transport tries the next address: follows the leader).
    fn on_standby_poll(&mut self, now: Time, generation: u64) -> Vec<DriverAction> {
        let waiting = matches!(
            self.conn,
            ConnState::Subscribing { .. } | ConnState::StandingBy
        );
        if generation != self.generation || !self.standing_by || !waiting {
            return Vec::new();
        }
        let poll_ms = self.config.standby_poll_ms.max(1);
        if now.since(self.last_heard) >= poll_ms.saturating_mul(STANDBY_SILENT_POLLS) {
            warn!(
                silent_ms = now.since(self.last_heard),
                "the master does not answer the standby; reconnecting"
            );
            return self.declare_silent(now);
        }
        self.subscribe_actions(now, 0)
    }

    fn on_heartbeat_check(&mut self, now: Time, generation: u64) -> Vec<DriverAction> {
        if generation != self.generation || self.conn != ConnState::Subscribed {
            return Vec::new();
        }
        let Some(deadline) = self.silence_deadline() else {
            return Vec::new();
        };
        if now < deadline {
            let timer = DriverTimer::HeartbeatCheck { generation };
            return vec![DriverAction::SetTimer {
                timer,
                at: deadline,
            }];
        }
        warn!(
            silent_ms = now.since(self.last_heard),
            "the master has gone silent; reconnecting"
        );
        self.declare_silent(now)
    }

    /// Drops the connection to a silent master and dials again.
    fn declare_silent(&mut self, now: Time) -> Vec<DriverAction> {
        self.stats.silent_master_reconnects += 1;
        self.generation += 1;
        self.conn = ConnState::Disconnected;
        let mut out = self.run(now, |s, ctx| s.disconnected(ctx)).1;
        insert_before_stop(&mut out, DriverAction::Reconnect);
        out
    }

    // ---- helpers ----------------------------------------------------------------------------

    /// When the master counts as silent, if heartbeats are on.
    fn silence_deadline(&self) -> Option<Time> {
        if self.heartbeat_interval_ms == 0 || self.config.missed_heartbeats_limit == 0 {
            return None;
        }
        let limit = self
            .heartbeat_interval_ms
            .saturating_mul(self.config.missed_heartbeats_limit as u64);
        Some(self.last_heard.plus_ms(limit))
    }

    fn subscribe_actions(&mut self, now: Time, attempt: u32) -> Vec<DriverAction> {
        let mut framework: FrameworkInfo = self.scheduler.framework_info();
        if self.framework_id.is_some() {
            // Re-subscribing with the same id is what keeps the framework's tasks alive.
            framework.id = self.framework_id.clone();
        }
        if self.standing_by {
            self.stats.standby_polls += 1;
            let timer = DriverTimer::StandbyPoll {
                generation: self.generation,
            };
            let at = now.plus_ms(self.config.standby_poll_ms.max(1));
            return vec![
                DriverAction::Send(Message::SubscribeStandby { framework }),
                DriverAction::SetTimer { timer, at },
            ];
        }
        self.stats.subscribe_attempts += 1;
        let wait_ms = backoff_ms(
            attempt,
            self.config.subscribe_retry_base_ms,
            self.config.subscribe_retry_cap_ms,
            self.config.jitter_seed ^ self.generation,
        );
        let timer = DriverTimer::SubscribeRetry {
            generation: self.generation,
        };
        vec![
            DriverAction::Send(Message::Subscribe { framework }),
            DriverAction::SetTimer {
                timer,
                at: now.plus_ms(wait_ms),
            },
        ]
    }

    /// Runs one scheduler callback and turns what it collected into actions.
    fn run<R>(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut S, &mut SchedulerCtx) -> R,
    ) -> (R, Vec<DriverAction>) {
        let mut ctx = SchedulerCtx::new(now, self.framework_id.clone());
        let r = f(&mut self.scheduler, &mut ctx);
        (r, self.collect(ctx))
    }

    fn collect(&mut self, ctx: SchedulerCtx) -> Vec<DriverAction> {
        let mut out = Vec::with_capacity(ctx.calls.len() + ctx.timers.len() + 1);
        if self.stopped.is_some() {
            if !ctx.calls.is_empty() {
                debug!(
                    count = ctx.calls.len(),
                    "driver stopped; dropping scheduler calls"
                );
            }
            return out;
        }
        for call in ctx.calls {
            if let Some(msg) = self.translate(call) {
                out.push(DriverAction::Send(msg));
            }
        }
        for (token, at) in ctx.timers {
            if self.timers_outstanding >= self.config.max_timers {
                warn!(
                    token,
                    limit = self.config.max_timers,
                    "too many scheduler timers; refusing this one"
                );
                continue;
            }
            self.timers_outstanding += 1;
            let timer = DriverTimer::Scheduler(token);
            out.push(DriverAction::SetTimer { timer, at });
        }
        if let Some(code) = ctx.stop {
            info!(code, "the scheduler asked to stop");
            self.stopped = Some(code);
            out.push(DriverAction::Stop { code });
        }
        out
    }

    /// The wire message for a call, or `None` (with a log line) if it cannot be sent now.
    /// Calls are never queued: after a reconnect the scheduler is told (`disconnected`,
    /// `subscribed`) and decides again with fresh offers, which is always right, whereas a
    /// replayed Accept of a stale offer never is.
    fn translate(&mut self, call: Call) -> Option<Message> {
        let framework_id = match (&self.framework_id, self.conn) {
            (Some(id), ConnState::Subscribed) => id.clone(),
            _ => {
                self.stats.dropped_calls += 1;
                warn!(
                    call = call_name(&call),
                    "not subscribed to the master; dropping the call"
                );
                return None;
            }
        };
        Some(call_to_message(framework_id, call))
    }
}

/// Short name of a call for logs.
fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Accept { .. } => "accept",
        Call::Decline { .. } => "decline",
        Call::Revive => "revive",
        Call::Suppress => "suppress",
        Call::Kill { .. } => "kill",
        Call::Reconcile { .. } => "reconcile",
        Call::Message { .. } => "message",
        Call::Teardown => "teardown",
    }
}

/// The scheduler→master message for `call`, on behalf of `framework_id`.
pub fn call_to_message(framework_id: FrameworkId, call: Call) -> Message {
    match call {
        Call::Accept {
            offer_ids,
            operations,
            filters,
        } => Message::Accept {
            framework_id,
            offer_ids,
            operations,
            filters,
        },
        Call::Decline { offer_ids, filters } => Message::Decline {
            framework_id,
            offer_ids,
            filters,
        },
        Call::Revive => Message::Revive { framework_id },
        Call::Suppress => Message::Suppress { framework_id },
        Call::Kill { task_id, agent_id } => Message::Kill {
            framework_id,
            task_id,
            agent_id,
        },
        Call::Reconcile { tasks } => Message::Reconcile {
            framework_id,
            tasks,
        },
        Call::Message {
            agent_id,
            executor_id,
            data,
        } => Message::FrameworkToExecutor {
            framework_id,
            executor_id,
            agent_id,
            data,
        },
        Call::Teardown => Message::Teardown { framework_id },
    }
}

/// Inserts `action` before a trailing `Stop`, so the shell performs it before disconnecting.
fn insert_before_stop(out: &mut Vec<DriverAction>, action: DriverAction) {
    match out.last() {
        Some(DriverAction::Stop { .. }) => {
            let at = out.len() - 1;
            out.insert(at, action);
        }
        _ => out.push(action),
    }
}

/// Lets a boxed scheduler be driven like any other (`SchedulerDriver<Box<dyn Scheduler>>`), for
/// programs that pick the framework at run time.
impl Scheduler for Box<dyn Scheduler> {
    fn framework_info(&self) -> FrameworkInfo {
        (**self).framework_info()
    }
    fn subscribed(&mut self, ctx: &mut SchedulerCtx, id: &FrameworkId, resubscribed: bool) {
        (**self).subscribed(ctx, id, resubscribed)
    }
    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        (**self).offers(ctx, offers)
    }
    fn rescinded(&mut self, ctx: &mut SchedulerCtx, offer_id: &OfferId) {
        (**self).rescinded(ctx, offer_id)
    }
    fn update(&mut self, ctx: &mut SchedulerCtx, status: &TaskStatus) {
        (**self).update(ctx, status)
    }
    fn message(
        &mut self,
        ctx: &mut SchedulerCtx,
        agent_id: &AgentId,
        executor_id: &ExecutorId,
        data: &[u8],
    ) {
        (**self).message(ctx, agent_id, executor_id, data)
    }
    fn agent_lost(&mut self, ctx: &mut SchedulerCtx, agent_id: &AgentId) {
        (**self).agent_lost(ctx, agent_id)
    }
    fn error(&mut self, ctx: &mut SchedulerCtx, message: &str, fatal: bool) {
        (**self).error(ctx, message, fatal)
    }
    fn disconnected(&mut self, ctx: &mut SchedulerCtx) {
        (**self).disconnected(ctx)
    }
    fn standing_by(&mut self, ctx: &mut SchedulerCtx, message: &str) {
        (**self).standing_by(ctx, message)
    }
    fn revocation_warning(&mut self, ctx: &mut SchedulerCtx, w: &super::RevocationWarning) {
        (**self).revocation_warning(ctx, w)
    }
    fn timer(&mut self, ctx: &mut SchedulerCtx, token: u64) {
        (**self).timer(ctx, token)
    }
}

#[cfg(test)]
pub(crate) mod tests;
