//! The actix shell of the executor driver.

use super::{ExecAction, ExecTimer, ExecutorDriverConfig, ExecutorDriverCore, ExecutorEnv};
use crate::messages::{Hello, Message, NodeKind};
use crate::sdk::driver::{process_seed, DriverExit, STOP_LINGER_MS};
use crate::sdk::{Executor, ExecutorCtx};
use crate::time::MonoClock;
use crate::transport::{Backoff, ConnHandle, Link, NetEvent, Transport};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, MessageResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

/// See [`ExecutorDriverOptions::after_step`].
pub type AfterStep<E> = Box<dyn FnMut(&mut E)>;

/// How an [`ExecutorDriver`] is started beyond the defaults.
pub struct ExecutorDriverOptions<E> {
    pub config: ExecutorDriverConfig,
    /// Redial policy towards the agent.
    pub backoff: Backoff,
    /// Called with the executor after every step of the driver (each message, timer or
    /// [`WithExecutor`]). An executor whose decisions include IO of its own (the command executor
    /// asks for processes to be spawned and signalled) hands that IO to its own tasks here, so
    /// the executor itself stays pure.
    pub after_step: Option<AfterStep<E>>,
}

impl<E> Default for ExecutorDriverOptions<E> {
    fn default() -> Self {
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        ExecutorDriverOptions {
            config: ExecutorDriverConfig {
                seed: process_seed(),
                wall_clock_origin_ms: wall_ms,
                ..ExecutorDriverConfig::default()
            },
            backoff: Backoff::default(),
            after_step: None,
        }
    }
}

/// Runs a closure on the driven executor inside the driver actor (e.g. "task t1's process
/// exited"); updates it emits are stamped, sent and retried like any others.
pub struct WithExecutor<E, R> {
    f: ExecutorFn<E, R>,
}

type ExecutorFn<E, R> = Box<dyn FnOnce(&mut E, &mut ExecutorCtx) -> R + Send>;

impl<E, R> WithExecutor<E, R> {
    pub fn new(f: impl FnOnce(&mut E, &mut ExecutorCtx) -> R + Send + 'static) -> Self {
        WithExecutor { f: Box::new(f) }
    }
}

impl<E: 'static, R: 'static> actix::Message for WithExecutor<E, R> {
    type Result = R;
}

/// The executor driver actor. Create it with [`ExecutorDriver::start`].
pub struct ExecutorDriver<E: Executor> {
    core: Box<ExecutorDriverCore<E>>,
    transport: Arc<dyn Transport>,
    endpoint: String,
    hello: Hello,
    backoff: Backoff,
    clock: MonoClock,
    link: Option<Box<dyn Link>>,
    conn: Option<ConnHandle>,
    exit: Option<oneshot::Sender<i32>>,
    after_step: Option<AfterStep<E>>,
    exiting: bool,
}

impl<E: Executor> ExecutorDriver<E> {
    /// Starts a driver for `executor` in the current actix system, connected to the agent named
    /// by `env`. The returned future resolves to the exit code the process should end with.
    pub fn start(
        transport: Arc<dyn Transport>,
        env: &ExecutorEnv,
        executor: E,
    ) -> (Addr<Self>, DriverExit) {
        Self::start_with(transport, env, executor, ExecutorDriverOptions::default())
    }

    /// [`start`](Self::start) with explicit options.
    pub fn start_with(
        transport: Arc<dyn Transport>,
        env: &ExecutorEnv,
        executor: E,
        options: ExecutorDriverOptions<E>,
    ) -> (Addr<Self>, DriverExit) {
        let (tx, exit) = DriverExit::channel();
        let driver = ExecutorDriver {
            core: Box::new(ExecutorDriverCore::new(executor, env, options.config)),
            transport,
            endpoint: env.agent_endpoint.clone(),
            hello: Hello::new(&env.cluster, NodeKind::Executor, env.executor_id.as_str()),
            backoff: options.backoff,
            clock: MonoClock::new(),
            link: None,
            conn: None,
            exit: Some(tx),
            after_step: options.after_step,
            exiting: false,
        };
        (driver.start(), exit)
    }

    fn perform(&mut self, actions: Vec<ExecAction>, ctx: &mut Context<Self>) {
        if let Some(hook) = self.after_step.as_mut() {
            hook(self.core.executor_mut());
        }
        for action in actions {
            match action {
                ExecAction::Send(msg) => self.send(msg),
                ExecAction::SetTimer { timer, at } => {
                    ctx.run_later(self.clock.until(at), move |act, ctx| act.fire(timer, ctx));
                }
                ExecAction::Exit { code } => self.exit(code, ctx),
            }
        }
    }

    fn fire(&mut self, timer: ExecTimer, ctx: &mut Context<Self>) {
        let actions = self.core.handle_timer(self.clock.now(), timer);
        self.perform(actions, ctx);
    }

    fn send(&self, msg: Message) {
        let kind = msg.kind();
        match &self.conn {
            Some(conn) => {
                if let Err(e) = conn.send(msg) {
                    warn!(kind, error = %e, "could not send to the agent");
                }
            }
            None => debug!(kind, "not connected to the agent; message dropped"),
        }
    }

    fn exit(&mut self, code: i32, ctx: &mut Context<Self>) {
        if self.exiting {
            return;
        }
        self.exiting = true;
        info!(code, "executor driver exiting");
        if let Some(conn) = self.conn.take() {
            conn.close(None);
        }
        ctx.run_later(Duration::from_millis(STOP_LINGER_MS), move |act, ctx| {
            if let Some(link) = act.link.take() {
                link.close();
            }
            if let Some(tx) = act.exit.take() {
                let _ = tx.send(code);
            }
            ctx.stop();
        });
    }

    fn on_connected(&mut self, peer: Hello, handle: ConnHandle, ctx: &mut Context<Self>) {
        if self.exiting {
            handle.close(None);
            return;
        }
        if peer.node_kind != NodeKind::Agent {
            warn!(peer = %handle.peer_addr, kind = ?peer.node_kind, "the peer is not an agent; closing");
            handle.close(None);
            return;
        }
        self.conn = Some(handle);
        let actions = self.core.handle_connected(self.clock.now());
        self.perform(actions, ctx);
    }
}

impl<E: Executor> Actor for ExecutorDriver<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(agent = %self.endpoint, "executor driver starting");
        let sink = ctx.address().recipient();
        let link = self.transport.connect(
            vec![self.endpoint.clone()],
            self.hello.clone(),
            self.backoff,
            sink,
        );
        self.link = Some(link);
        let actions = self.core.handle_start(self.clock.now());
        self.perform(actions, ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(link) = self.link.take() {
            link.close();
        }
        if let Some(tx) = self.exit.take() {
            let _ = tx.send(self.core.exited().unwrap_or(1));
        }
    }
}

impl<E: Executor> Handler<NetEvent> for ExecutorDriver<E> {
    type Result = ();

    fn handle(&mut self, ev: NetEvent, ctx: &mut Context<Self>) {
        let current = self.conn.as_ref().map(|c| c.conn);
        match ev {
            NetEvent::Connected { peer, handle, .. } => self.on_connected(peer, handle, ctx),
            NetEvent::Frame { conn, msg } if Some(conn) == current => {
                let actions = self.core.handle_message(self.clock.now(), msg);
                self.perform(actions, ctx);
            }
            NetEvent::Closed { conn, reason } if Some(conn) == current => {
                self.conn = None;
                let actions = self.core.handle_disconnected(self.clock.now(), &reason);
                self.perform(actions, ctx);
            }
            NetEvent::Frame { conn, msg } => {
                debug!(
                    conn,
                    kind = msg.kind(),
                    "frame from a stale connection ignored"
                )
            }
            NetEvent::Closed { conn, .. } => debug!(conn, "stale connection closed"),
        }
    }
}

impl<E: Executor, R: 'static> Handler<WithExecutor<E, R>> for ExecutorDriver<E> {
    type Result = MessageResult<WithExecutor<E, R>>;

    fn handle(&mut self, msg: WithExecutor<E, R>, ctx: &mut Context<Self>) -> Self::Result {
        let (r, actions) = self.core.with_executor(self.clock.now(), msg.f);
        self.perform(actions, ctx);
        MessageResult(r)
    }
}
