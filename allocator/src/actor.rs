//! The allocator actor: a thin shell over any `Box<dyn Allocator>`.
//!
//! It owns the clock (the policy never reads one) and decides *when* to allocate:
//! - after a burst of events: the first event of a burst arms a `coalesce_ms` timer and the
//!   events that follow ride on it, so a hundred events cost one allocation run and the delay
//!   after the first event is bounded by `coalesce_ms`;
//! - every `allocation_interval_ms`, to pick up anything left over;
//! - at the policy's `next_wakeup()` (a decline filter expiring).
//!
//! Decisions go to the `Recipient<Allocations>` given at construction (the master).
//!
//! `AllocatorEvent` itself is the actix message (`impl Message for AllocatorEvent`, result
//! `()`), no wrapper: the master sends the same value it would hand to a policy directly.

use crate::error::AllocatorError;
use crate::{Allocation, Allocator, AllocatorEvent, ShareReport};
use actix::prelude::*;
use agora_actors::time::MonoClock;
use agora_actors::Time;
use std::time::{Duration, Instant};

/// Longest accepted allocation interval (one hour): longer would mean offers effectively stop.
pub const MAX_ALLOCATION_INTERVAL_MS: u64 = 3_600_000;

/// Timing of the allocator actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatorConfig {
    /// A full allocation run at least this often (Mesos's `--allocation_interval`, 1 s).
    pub allocation_interval_ms: u64,
    /// How long to gather a burst of events before running once.
    pub coalesce_ms: u64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            allocation_interval_ms: 1000,
            coalesce_ms: 5,
        }
    }
}

impl AllocatorConfig {
    pub fn validate(&self) -> Result<(), AllocatorError> {
        let interval = self.allocation_interval_ms;
        if interval == 0 || interval > MAX_ALLOCATION_INTERVAL_MS {
            return Err(AllocatorError::Config(format!(
                "allocation_interval_ms must be in 1..={MAX_ALLOCATION_INTERVAL_MS}, got {interval}"
            )));
        }
        if self.coalesce_ms > interval {
            return Err(AllocatorError::Config(format!(
                "coalesce_ms ({}) must not exceed allocation_interval_ms ({interval})",
                self.coalesce_ms
            )));
        }
        Ok(())
    }
}

impl Message for AllocatorEvent {
    type Result = ();
}

/// The decisions of one allocation run (never sent empty).
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Allocations {
    pub allocations: Vec<Allocation>,
    /// Resources the policy wants back from over-share frameworks (usually empty).
    pub revocations: Vec<crate::RevocationRequest>,
    /// How long the policy took to decide, in microseconds.
    pub run_micros: u64,
}

/// Asks for the operator view (`/state`, `/metrics`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SharesReport")]
pub struct GetShares;

/// Answer to `GetShares`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SharesReport {
    /// The policy's name (`drf`).
    pub allocator: &'static str,
    pub shares: Vec<ShareReport>,
    /// Duration of the last allocation run (0 before the first).
    pub last_run_micros: u64,
    /// Allocation runs so far, including those that offered nothing.
    pub runs: u64,
    /// Clock time of the last run, milliseconds since the actor started.
    pub last_run_at: Option<Time>,
}

/// Runs an allocation now (tests, operator "kick"); answers how many allocations it made.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "usize")]
pub struct AllocateNow;

pub struct AllocatorActor {
    allocator: Box<dyn Allocator>,
    config: AllocatorConfig,
    recipient: Recipient<Allocations>,
    clock: MonoClock,
    /// Armed by the first event of a burst; a run disarms it.
    coalesce_timer: Option<SpawnHandle>,
    /// The pending `next_wakeup` timer and the time it is for.
    wakeup: Option<(Time, SpawnHandle)>,
    last_run_micros: u64,
    last_run_at: Option<Time>,
    runs: u64,
}

impl AllocatorActor {
    pub fn new(
        allocator: Box<dyn Allocator>,
        config: AllocatorConfig,
        recipient: Recipient<Allocations>,
    ) -> Result<Self, AllocatorError> {
        config.validate()?;
        Ok(AllocatorActor {
            allocator,
            config,
            recipient,
            clock: MonoClock::new(),
            coalesce_timer: None,
            wakeup: None,
            last_run_micros: 0,
            last_run_at: None,
            runs: 0,
        })
    }

    /// One allocation run. It covers every event received so far, so a pending coalesced run
    /// is cancelled.
    fn run(&mut self, ctx: &mut Context<Self>) -> usize {
        if let Some(handle) = self.coalesce_timer.take() {
            ctx.cancel_future(handle);
        }
        let now = self.clock.now();
        let started = Instant::now();
        let allocations = self.allocator.allocate(now);
        let revocations = self.allocator.revocations(now);
        let run_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_run_micros = run_micros;
        self.last_run_at = Some(now);
        self.runs += 1;
        let count = allocations.len();
        tracing::debug!(
            allocator = self.allocator.name(),
            count,
            run_micros,
            "allocation run"
        );
        if count > 0 || !revocations.is_empty() {
            self.recipient.do_send(Allocations {
                allocations,
                revocations,
                run_micros,
            });
        }
        self.schedule_wakeup(ctx);
        count
    }

    /// The first change of a burst arms one run `coalesce_ms` later; the rest ride on it.
    fn arm_coalesced_run(&mut self, ctx: &mut Context<Self>) {
        if self.coalesce_timer.is_none() {
            let delay = Duration::from_millis(self.config.coalesce_ms);
            let handle = ctx.run_later(delay, |act, ctx| {
                act.coalesce_timer = None;
                act.run(ctx);
            });
            self.coalesce_timer = Some(handle);
        }
    }

    /// Keeps exactly one timer for the policy's earliest wakeup.
    fn schedule_wakeup(&mut self, ctx: &mut Context<Self>) {
        let wanted = self.allocator.next_wakeup();
        if self.wakeup.as_ref().map(|(at, _)| *at) == wanted {
            return;
        }
        if let Some((_, handle)) = self.wakeup.take() {
            ctx.cancel_future(handle);
        }
        if let Some(at) = wanted {
            let handle = ctx.run_later(self.clock.until(at), |act, ctx| {
                act.wakeup = None;
                act.run(ctx);
            });
            self.wakeup = Some((at, handle));
        }
    }
}

impl Actor for AllocatorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(
            allocator = self.allocator.name(),
            interval_ms = self.config.allocation_interval_ms,
            coalesce_ms = self.config.coalesce_ms,
            "allocator started"
        );
        let interval = Duration::from_millis(self.config.allocation_interval_ms);
        ctx.run_interval(interval, |act, ctx| {
            act.run(ctx);
        });
    }
}

impl Handler<AllocatorEvent> for AllocatorActor {
    type Result = ();

    fn handle(&mut self, event: AllocatorEvent, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        self.allocator.handle(now, event);
        self.arm_coalesced_run(ctx);
    }
}

impl Handler<GetShares> for AllocatorActor {
    type Result = MessageResult<GetShares>;

    fn handle(&mut self, _: GetShares, _: &mut Context<Self>) -> Self::Result {
        MessageResult(SharesReport {
            allocator: self.allocator.name(),
            shares: self.allocator.shares(),
            last_run_micros: self.last_run_micros,
            runs: self.runs,
            last_run_at: self.last_run_at,
        })
    }
}

impl Handler<AllocateNow> for AllocatorActor {
    type Result = MessageResult<AllocateNow>;

    fn handle(&mut self, _: AllocateNow, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.run(ctx))
    }
}

/// An operator command (weights, priorities, policy switch); answered with the outcome. A
/// successful command triggers an allocation run soon, so a change takes effect at once.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), AllocatorError>")]
pub struct Operate(pub crate::OperatorCommand);

/// Asks for the per-role view (`GET /roles`, `/weights`, `/allocator`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "RolesView")]
pub struct GetRoles;

/// Answer to `GetRoles`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolesView {
    /// The running policy's name.
    pub allocator: String,
    pub roles: Vec<crate::RoleReport>,
    /// Weights other than 1.
    pub weights: std::collections::BTreeMap<String, f64>,
}

impl Handler<Operate> for AllocatorActor {
    type Result = Result<(), AllocatorError>;

    fn handle(&mut self, msg: Operate, ctx: &mut Context<Self>) -> Self::Result {
        let kind = format!("{:?}", msg.0);
        match self.allocator.operate(msg.0) {
            Ok(()) => {
                tracing::info!(command = %kind, "allocator: operator command applied");
                self.arm_coalesced_run(ctx);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(command = %kind, error = %e, "allocator: operator command refused");
                Err(e)
            }
        }
    }
}

impl Handler<GetRoles> for AllocatorActor {
    type Result = MessageResult<GetRoles>;

    fn handle(&mut self, _: GetRoles, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RolesView {
            allocator: self.allocator.name().to_string(),
            roles: self.allocator.roles(),
            weights: self.allocator.weights(),
        })
    }
}
