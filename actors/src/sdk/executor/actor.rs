//! The actix shell of the executor driver.

use super::{ExecAction, ExecTimer, ExecutorDriverConfig, ExecutorDriverCore, ExecutorEnv};
use crate::messages::{Hello, NodeKind};
use crate::sdk::client_link::{ClientLink, LinkEvent};
use crate::sdk::driver::{process_seed, DriverExit, STOP_LINGER_MS};
use crate::sdk::{Executor, ExecutorCtx};
use crate::time::MonoClock;
use crate::transport::{Backoff, NetEvent, Transport};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, MessageResult};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

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
    client: ClientLink,
    after_step: Option<AfterStep<E>>,
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
            client: ClientLink::new(tx, NodeKind::Agent),
            after_step: options.after_step,
        };
        (driver.start(), exit)
    }

    fn perform(&mut self, actions: Vec<ExecAction>, ctx: &mut Context<Self>) {
        if let Some(hook) = self.after_step.as_mut() {
            hook(self.core.executor_mut());
        }
        for action in actions {
            match action {
                ExecAction::Send(msg) => self.client.send(msg),
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

    fn exit(&mut self, code: i32, ctx: &mut Context<Self>) {
        if !self.client.begin_stop(code, "executor driver") {
            return;
        }
        ctx.run_later(Duration::from_millis(STOP_LINGER_MS), move |act, ctx| {
            act.client.finish(code);
            ctx.stop();
        });
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
        self.client.set_link(link);
        let actions = self.core.handle_start(self.clock.now());
        self.perform(actions, ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.client.finish(self.core.exited().unwrap_or(1));
    }
}

impl<E: Executor> Handler<NetEvent> for ExecutorDriver<E> {
    type Result = ();

    fn handle(&mut self, ev: NetEvent, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let actions = match self.client.route(ev) {
            Some(LinkEvent::Connected(..)) => self.core.handle_connected(now),
            Some(LinkEvent::Frame(msg)) => self.core.handle_message(now, msg),
            Some(LinkEvent::Closed(reason)) => self.core.handle_disconnected(now, &reason),
            None => return,
        };
        self.perform(actions, ctx);
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
