//! The actix shell of the scheduler driver: dials the master, feeds the core, performs its actions.

use super::{DriverAction, DriverTimer, SchedulerDriverConfig, SchedulerDriverCore};
use crate::messages::{Hello, NodeKind};
use crate::sdk::client_link::{ClientLink, LinkEvent};
use crate::sdk::{Scheduler, SchedulerCtx, SdkError};
use crate::time::MonoClock;
use crate::transport::{Backoff, ConnHandle, NetEvent, Transport};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, MessageResult};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::info;

/// How long the driver keeps the connection open after deciding to stop, so that the last calls
/// (e.g. a `Teardown`) are flushed before the link is closed.
pub const STOP_LINGER_MS: u64 = 250;

/// Resolves to a driver's exit code once it has stopped: the code the scheduler (or executor)
/// gave to `ctx.stop`, 1 after a fatal error, or [`SdkError::NoExitCode`] if the actor system
/// went away first.
#[derive(Debug)]
pub struct DriverExit(oneshot::Receiver<i32>);

impl DriverExit {
    pub(crate) fn channel() -> (oneshot::Sender<i32>, DriverExit) {
        let (tx, rx) = oneshot::channel();
        (tx, DriverExit(rx))
    }
}

impl Future for DriverExit {
    type Output = Result<i32, SdkError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|_| SdkError::NoExitCode))
    }
}

/// A seed that differs between processes and runs (pid and start time), for jitter and ids.
pub(crate) fn process_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (std::process::id() as u64).rotate_left(32)
}

/// Runs a closure on the driven scheduler inside the driver actor and returns its result; calls
/// the closure makes on the ctx are performed like any others. This is how a CLI asks a running
/// framework for its progress:
///
/// ```ignore
/// let progress = driver.send(WithScheduler::new(|s: &mut BatchFramework, _| s.progress())).await?;
/// ```
pub struct WithScheduler<S, R> {
    f: SchedulerFn<S, R>,
}

type SchedulerFn<S, R> = Box<dyn FnOnce(&mut S, &mut SchedulerCtx) -> R + Send>;

impl<S, R> WithScheduler<S, R> {
    pub fn new(f: impl FnOnce(&mut S, &mut SchedulerCtx) -> R + Send + 'static) -> Self {
        WithScheduler { f: Box::new(f) }
    }
}

impl<S: 'static, R: 'static> actix::Message for WithScheduler<S, R> {
    type Result = R;
}

/// Stops the driver from outside (e.g. on Ctrl-C) with this exit code. The scheduler is not
/// consulted; to kill its tasks first, use [`WithScheduler`] to call `ctx.teardown()`.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct StopDriver {
    pub code: i32,
}

/// The scheduler driver actor. Create it with [`SchedulerDriver::start`].
pub struct SchedulerDriver<S: Scheduler> {
    /// Boxed so the actor is `Unpin` whatever the scheduler is.
    core: Box<SchedulerDriverCore<S>>,
    transport: Arc<dyn Transport>,
    masters: Vec<String>,
    hello: Hello,
    backoff: Backoff,
    clock: MonoClock,
    client: ClientLink,
}

impl<S: Scheduler> SchedulerDriver<S> {
    /// Starts a driver for `scheduler` in the current actix system: it dials `masters` (tried in
    /// turn, redialed with backoff), subscribes, and runs until the scheduler calls `ctx.stop`,
    /// a fatal error arrives, or [`StopDriver`] is sent. Returns the actor's address and a future
    /// of the exit code.
    pub fn start(
        transport: Arc<dyn Transport>,
        masters: Vec<String>,
        cluster: &str,
        scheduler: S,
    ) -> Result<(Addr<Self>, DriverExit), SdkError> {
        Self::start_defaults(transport, masters, cluster, scheduler, false)
    }

    /// Starts a standby instance: `scheduler.framework_info().id` must name the framework it
    /// stands by for. It waits connected to the leading master and takes over (its
    /// `subscribed` is called) when the active instance disconnects.
    pub fn start_standby(
        transport: Arc<dyn Transport>,
        masters: Vec<String>,
        cluster: &str,
        scheduler: S,
    ) -> Result<(Addr<Self>, DriverExit), SdkError> {
        if scheduler.framework_info().id.is_none() {
            return Err(SdkError::StandbyWithoutId);
        }
        Self::start_defaults(transport, masters, cluster, scheduler, true)
    }

    fn start_defaults(
        transport: Arc<dyn Transport>,
        masters: Vec<String>,
        cluster: &str,
        scheduler: S,
        standby: bool,
    ) -> Result<(Addr<Self>, DriverExit), SdkError> {
        let config = SchedulerDriverConfig {
            jitter_seed: process_seed(),
            standby,
            ..SchedulerDriverConfig::default()
        };
        let backoff = Backoff::default();
        Self::start_with(transport, masters, cluster, scheduler, config, backoff)
    }

    /// [`start`](Self::start) with explicit tunables and redial backoff.
    pub fn start_with(
        transport: Arc<dyn Transport>,
        masters: Vec<String>,
        cluster: &str,
        scheduler: S,
        config: SchedulerDriverConfig,
        backoff: Backoff,
    ) -> Result<(Addr<Self>, DriverExit), SdkError> {
        if masters.is_empty() {
            return Err(SdkError::NoMasters);
        }
        let name = scheduler.framework_info().name;
        let (tx, exit) = DriverExit::channel();
        let driver = SchedulerDriver {
            core: Box::new(SchedulerDriverCore::new(scheduler, config)),
            transport,
            masters,
            hello: Hello::new(cluster, NodeKind::Scheduler, &name),
            backoff,
            clock: MonoClock::new(),
            client: ClientLink::new(tx, NodeKind::Master),
        };
        Ok((driver.start(), exit))
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        info!(masters = ?self.masters, "dialing the master");
        let sink = ctx.address().recipient();
        let link =
            self.transport
                .connect(self.masters.clone(), self.hello.clone(), self.backoff, sink);
        self.client.set_link(link);
    }

    fn perform(&mut self, actions: Vec<DriverAction>, ctx: &mut Context<Self>) {
        for action in actions {
            match action {
                DriverAction::Send(msg) => self.client.send(msg),
                DriverAction::SetTimer { timer, at } => {
                    ctx.run_later(self.clock.until(at), move |act, ctx| {
                        act.fire(timer, ctx);
                    });
                }
                DriverAction::Reconnect => {
                    self.client.drop_link();
                    self.dial(ctx);
                }
                DriverAction::Stop { code } => self.shut_down(code, ctx),
            }
        }
    }

    fn fire(&mut self, timer: DriverTimer, ctx: &mut Context<Self>) {
        let actions = self.core.handle_timer(self.clock.now(), timer);
        self.perform(actions, ctx);
    }

    /// Flushes and closes the connection, then ends the actor after a short linger.
    fn shut_down(&mut self, code: i32, ctx: &mut Context<Self>) {
        if !self.client.begin_stop(code, "scheduler driver") {
            return;
        }
        ctx.run_later(Duration::from_millis(STOP_LINGER_MS), move |act, ctx| {
            act.client.finish(code);
            ctx.stop();
        });
    }

    fn on_connected(&mut self, peer: Hello, handle: ConnHandle, ctx: &mut Context<Self>) {
        info!(master = %peer.node_id, addr = %handle.peer_addr, "connected to the master");
        let actions = self.core.handle_connected(self.clock.now());
        self.perform(actions, ctx);
    }
}

impl<S: Scheduler> Actor for SchedulerDriver<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.dial(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Stopped without a decision (the system is shutting down): report the core's code or 1.
        let code = self.core.stopped().unwrap_or(1);
        self.client.finish(code);
    }
}

impl<S: Scheduler> Handler<NetEvent> for SchedulerDriver<S> {
    type Result = ();

    fn handle(&mut self, ev: NetEvent, ctx: &mut Context<Self>) {
        let actions = match self.client.route(ev) {
            Some(LinkEvent::Connected(peer, handle)) => {
                return self.on_connected(peer, handle, ctx)
            }
            Some(LinkEvent::Frame(msg)) => self.core.handle_message(self.clock.now(), msg),
            Some(LinkEvent::Closed(reason)) => {
                self.core.handle_disconnected(self.clock.now(), &reason)
            }
            None => return,
        };
        self.perform(actions, ctx);
    }
}

impl<S: Scheduler, R: 'static> Handler<WithScheduler<S, R>> for SchedulerDriver<S> {
    type Result = MessageResult<WithScheduler<S, R>>;

    fn handle(&mut self, msg: WithScheduler<S, R>, ctx: &mut Context<Self>) -> Self::Result {
        let (r, actions) = self.core.with_scheduler(self.clock.now(), msg.f);
        self.perform(actions, ctx);
        MessageResult(r)
    }
}

impl<S: Scheduler> Handler<StopDriver> for SchedulerDriver<S> {
    type Result = ();

    fn handle(&mut self, msg: StopDriver, ctx: &mut Context<Self>) {
        let actions = self.core.stop(msg.code);
        self.perform(actions, ctx);
    }
}
