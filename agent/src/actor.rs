//! The agent's actix shell: one link to the master, a listener for its executors, and the
//! containerizer. Inputs go to `AgentCore`; its actions are performed here.

use crate::checkpoint::{self, AgentRecord, CheckpointStore};
use crate::core::{Action, AgentConfig, AgentCore, AgentState, Input, LaunchSpec};
use actix::prelude::*;
use agora_actors::time::MonoClock;
use agora_actors::transport::{
    Backoff, ConnHandle, ConnId, Link, NetEvent, Transport, TransportError,
};
use agora_actors::{ContainerId, Hello, NodeKind};
use agora_isolation::ContainerCheckpoint;
use agora_isolation::{ContainerConfig, Containerizer, Limits};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct AgentActor {
    core: AgentCore,
    clock: MonoClock,
    master: Option<Box<dyn Link>>,
    master_conn: Option<ConnId>,
    executors: HashMap<ConnId, ConnHandle>,
    containerizer: Arc<dyn Containerizer>,
    /// Where the state is checkpointed (none in tests and the in-process demo).
    store: Option<CheckpointStore>,
    /// The record being kept up to date in `store`.
    record: AgentRecord,
    /// Containerizer checkpoints of the live containers, by container id.
    container_ckpts: BTreeMap<String, ContainerCheckpoint>,
    /// Set at start when recovering: actions of the recovered core, containers to reattach.
    recovery: Option<(Vec<Action>, AgentRecord)>,
    /// How often sandboxes with a `disk` limit are measured (0: never).
    disk_watch_interval_ms: u64,
    /// Containers killed for using more disk than their `disk` resources.
    over_disk: BTreeSet<String>,
}

/// Reason of a task (and container) killed for using more sandbox disk than its `disk`.
pub const REASON_DISK_LIMIT: &str = "disk limit";
/// Grace given to a container over its disk limit before SIGKILL.
const DISK_KILL_GRACE_MS: u64 = 1_000;

/// Sandbox sizes measured off the actor's thread.
#[derive(Message)]
#[rtype(result = "()")]
struct DiskUsage(Vec<(String, u64, Result<u64, String>)>);

/// A container's main process ended (sent by the waiter future to the actor).
#[derive(Message)]
#[rtype(result = "()")]
struct Exited {
    container_id: ContainerId,
    result: Result<agora_isolation::Termination, String>,
}

impl AgentActor {
    fn deliver(&mut self, input: Input, ctx: &mut Context<Self>) {
        let actions = self.core.handle(self.clock.now(), input);
        self.persist();
        self.perform(actions, ctx);
    }

    /// Writes the checkpoint if anything changed, before the step's actions are performed.
    fn persist(&mut self) {
        let Some(store) = &mut self.store else { return };
        self.record.core = self.core.checkpoint();
        self.record.containers = self.container_ckpts.values().cloned().collect();
        if let Err(e) = store.save(&self.record) {
            tracing::error!(error = %e, "checkpoint not written; a restart now would lose state");
        }
    }

    /// Reattaches to the containers of a recovered checkpoint; the ones that cannot be found
    /// (or all of them after a reboot) end with a terminal update.
    fn recover_containers(&mut self, record: AgentRecord, ctx: &mut Context<Self>) {
        let rebooted = record.boot_id != checkpoint::boot_id();
        let wanted: Vec<String> = record.containers.iter().map(|c| c.id.clone()).collect();
        let recovered = if rebooted {
            tracing::warn!("the host rebooted since the checkpoint; its containers are gone");
            Vec::new()
        } else {
            match self.containerizer.recover(record.containers.clone()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "container recovery failed");
                    Vec::new()
                }
            }
        };
        for ckpt in record.containers {
            if recovered.iter().any(|r| r.id == ckpt.id) {
                self.container_ckpts.insert(ckpt.id.clone(), ckpt);
            }
        }
        for r in &recovered {
            tracing::info!(container = %r.id, pid = r.pid, running = r.running, "container reattached");
            match ContainerId::new(r.id.clone()) {
                Ok(id) => self.watch_container(id, ctx),
                Err(e) => {
                    tracing::error!(container = %r.id, error = %e, "bad container id in the checkpoint")
                }
            }
        }
        for id in wanted
            .iter()
            .filter(|id| !recovered.iter().any(|r| &r.id == *id))
        {
            let Ok(container_id) = ContainerId::new(id.clone()) else {
                continue;
            };
            let (reason, message) = if rebooted {
                (
                    crate::core::REASON_HOST_REBOOTED,
                    "the host rebooted while the agent was down",
                )
            } else {
                (
                    crate::core::REASON_CONTAINER_LOST,
                    "the container could not be found after an agent restart",
                )
            };
            self.deliver(
                Input::ContainerExited {
                    container_id,
                    exit_code: None,
                    signal: None,
                    reason: Some(reason.into()),
                    message: message.into(),
                },
                ctx,
            );
        }
    }

    /// Measures every sandbox that has a disk limit in a blocking thread (a big sandbox takes
    /// a while to walk), then reports to [`DiskUsage`]. Re-arms itself.
    fn watch_disks(&mut self, ctx: &mut Context<Self>) {
        let interval = Duration::from_millis(self.disk_watch_interval_ms);
        ctx.run_later(interval, |act, ctx| act.watch_disks(ctx));
        let limited: Vec<(String, PathBuf, u64)> = self
            .container_ckpts
            .values()
            .filter(|c| c.limits.disk_mb > 0 && !self.over_disk.contains(&c.id))
            .map(|c| (c.id.clone(), c.sandbox.clone(), c.limits.disk_mb))
            .collect();
        if limited.is_empty() {
            return;
        }
        let me = ctx.address();
        std::thread::spawn(move || {
            let measured = limited
                .into_iter()
                .map(|(id, sandbox, limit_mb)| {
                    let used = agora_isolation::sandbox_disk_usage_bytes(&sandbox)
                        .map_err(|e| e.to_string());
                    (id, limit_mb, used)
                })
                .collect();
            me.do_send(DiskUsage(measured));
        });
    }

    /// Sends `Exited` to the actor when the container ends.
    fn watch_container(&mut self, container_id: ContainerId, ctx: &mut Context<Self>) {
        let wait = self.containerizer.wait(container_id.as_str());
        let me = ctx.address();
        actix_rt::spawn(async move {
            let result = wait.await.map_err(|e| e.to_string());
            me.do_send(Exited {
                container_id,
                result,
            });
        });
    }

    fn perform(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        for action in actions {
            match action {
                Action::SendMaster(msg) => {
                    if let Some(link) = &self.master {
                        if let Err(e) = link.send(msg) {
                            tracing::debug!(error = %e, "message to master not sent (retried by its owner)");
                        }
                    }
                }
                Action::SendExecutor { conn, msg } => match self.executors.get(&conn) {
                    Some(h) => {
                        if let Err(e) = h.send(msg) {
                            tracing::warn!(conn, error = %e, "send to executor failed");
                        }
                    }
                    None => tracing::debug!(conn, "executor connection gone; message dropped"),
                },
                Action::CloseExecutor { conn } => {
                    if let Some(h) = self.executors.get(&conn) {
                        h.close(None);
                    }
                }
                Action::Launch(spec) => self.launch(spec, ctx),
                Action::Kill {
                    container_id,
                    grace_ms,
                } => {
                    let fut = self
                        .containerizer
                        .kill(container_id.as_str(), Duration::from_millis(grace_ms));
                    let id = container_id.clone();
                    actix_rt::spawn(async move {
                        if let Err(e) = fut.await {
                            tracing::warn!(container = %id, error = %e, "kill failed");
                        }
                    });
                }
                Action::SetTimer { timer, at } => {
                    ctx.run_later(self.clock.until(at), move |act, ctx| {
                        act.deliver(Input::Timer(timer), ctx)
                    });
                }
            }
        }
    }

    fn launch(&mut self, spec: LaunchSpec, ctx: &mut Context<Self>) {
        let config = ContainerConfig {
            id: spec.container_id.to_string(),
            sandbox: PathBuf::from(&spec.sandbox),
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            limits: limits_of(&spec.resources),
            user: None,
        };
        let container_id = spec.container_id.clone();
        match self.containerizer.launch(config) {
            Ok(launched) => {
                tracing::info!(container = %container_id, pid = launched.pid, executor = %spec.executor_id, "container launched");
                let sandbox = launched.sandbox.display().to_string();
                match self.containerizer.checkpoint(container_id.as_str()) {
                    Ok(c) => {
                        self.container_ckpts.insert(c.id.clone(), c);
                    }
                    Err(e) => {
                        tracing::warn!(container = %container_id, error = %e, "container cannot be recovered after a restart")
                    }
                }
                self.deliver(
                    Input::ContainerLaunched {
                        container_id: container_id.clone(),
                        pid: launched.pid,
                        sandbox,
                    },
                    ctx,
                );
                self.watch_container(container_id, ctx);
            }
            Err(e) => {
                tracing::warn!(container = %container_id, error = %e, "container launch failed");
                self.deliver(
                    Input::ContainerLaunchFailed {
                        container_id,
                        error: e.to_string(),
                    },
                    ctx,
                );
            }
        }
    }
}

impl AgentActor {
    /// A task that failed in a container which hit a resource limit (the kernel's OOM killer
    /// acted in its memory cgroup) fails *because of* that limit: the executor only saw a
    /// process killed by SIGKILL, the containerizer knows why.
    fn with_limitation(&self, conn: ConnId, msg: agora_actors::Message) -> agora_actors::Message {
        use agora_actors::{Message, TaskState};
        let Message::StatusUpdate {
            framework_id,
            mut status,
        } = msg
        else {
            return msg;
        };
        let failed = status.state.is_terminal() && status.state != TaskState::Finished;
        let limit = failed
            .then(|| self.core.container_of_conn(conn))
            .flatten()
            .and_then(|id| {
                if self.over_disk.contains(id.as_str()) {
                    Some(REASON_DISK_LIMIT.to_string())
                } else {
                    self.containerizer.limitation(id.as_str())
                }
            });
        if let Some(reason) = limit {
            tracing::info!(task = %status.task_id, %reason, "task failed over its container's limit");
            status.message = format!("{reason} exceeded: {}", status.message);
            status.state = TaskState::Failed;
            status.reason = Some(reason);
        }
        Message::StatusUpdate {
            framework_id,
            status,
        }
    }
}

/// Container limits from a resource bag (`cpus`, `mem` MB, `disk` MB).
pub fn limits_of(r: &agora_actors::Resources) -> Limits {
    Limits {
        cpus_milli: r.scalar_total("cpus").0,
        mem_mb: (r.scalar_total("mem").0 / 1000).max(0) as u64,
        disk_mb: (r.scalar_total("disk").0 / 1000).max(0) as u64,
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 20);
        let mut actions = self.core.start(self.clock.now());
        if let Some((recovered_actions, record)) = self.recovery.take() {
            actions.extend(recovered_actions);
            self.perform(actions, ctx);
            self.recover_containers(record, ctx);
        } else {
            self.perform(actions, ctx);
        }
        self.persist();
        if self.disk_watch_interval_ms > 0 {
            self.watch_disks(ctx);
        }
    }
}

impl Handler<NetEvent> for AgentActor {
    type Result = ();
    fn handle(&mut self, ev: NetEvent, ctx: &mut Context<Self>) {
        match ev {
            NetEvent::Connected { conn, peer, handle } => match peer.node_kind {
                NodeKind::Master => {
                    tracing::info!(master = %handle.peer_addr, "connected to master");
                    self.master_conn = Some(conn);
                    self.deliver(Input::MasterConnected, ctx);
                }
                NodeKind::Executor => {
                    self.executors.insert(conn, handle);
                    self.deliver(Input::ExecutorConnected { conn, peer }, ctx);
                }
                other => {
                    tracing::warn!(conn, kind = ?other, peer = %handle.peer_addr, "unexpected peer kind; closing");
                    handle.close(Some(agora_actors::Message::fatal(
                        agora_actors::ErrorCode::Forbidden,
                        format!("an agent accepts only executors, not {other:?}"),
                    )));
                }
            },
            NetEvent::Frame { conn, msg } => {
                if self.master_conn == Some(conn) {
                    self.deliver(Input::FromMaster(msg), ctx);
                } else if self.executors.contains_key(&conn) {
                    let msg = self.with_limitation(conn, msg);
                    self.deliver(Input::FromExecutor { conn, msg }, ctx);
                }
            }
            NetEvent::Closed { conn, reason } => {
                if self.master_conn == Some(conn) {
                    tracing::warn!(%reason, "lost the master; redialing");
                    self.master_conn = None;
                    self.deliver(Input::MasterDisconnected, ctx);
                } else if self.executors.remove(&conn).is_some() {
                    self.deliver(Input::ExecutorDisconnected { conn }, ctx);
                }
            }
        }
    }
}

impl Handler<DiskUsage> for AgentActor {
    type Result = ();
    fn handle(&mut self, msg: DiskUsage, _: &mut Context<Self>) {
        for (id, limit_mb, used) in msg.0 {
            let used = match used {
                Ok(bytes) => bytes,
                // Too many files to count is treated as over the limit: a task must not hide
                // its usage behind millions of entries.
                Err(e) if e.contains("more than") => u64::MAX,
                Err(e) => {
                    tracing::debug!(container = %id, error = %e, "sandbox not measured");
                    continue;
                }
            };
            if used <= limit_mb.saturating_mul(1 << 20) || !self.container_ckpts.contains_key(&id) {
                continue;
            }
            tracing::warn!(container = %id, used_bytes = used, limit_mb, "sandbox over its disk limit; killing the container");
            self.over_disk.insert(id.clone());
            let fut = self
                .containerizer
                .kill(&id, Duration::from_millis(DISK_KILL_GRACE_MS));
            actix_rt::spawn(async move {
                if let Err(e) = fut.await {
                    tracing::warn!(container = %id, error = %e, "kill over the disk limit failed");
                }
            });
        }
    }
}

impl Handler<Exited> for AgentActor {
    type Result = ();
    fn handle(&mut self, msg: Exited, ctx: &mut Context<Self>) {
        let input = match msg.result {
            Ok(t) => Input::ContainerExited {
                container_id: msg.container_id.clone(),
                exit_code: t.exit_code,
                signal: t.signal,
                reason: t.reason,
                message: t.message,
            },
            Err(e) => Input::ContainerExited {
                container_id: msg.container_id.clone(),
                exit_code: None,
                signal: None,
                reason: Some("executor_terminated".into()),
                message: format!("lost track of the container: {e}"),
            },
        };
        self.container_ckpts.remove(msg.container_id.as_str());
        let input = match input {
            Input::ContainerExited {
                container_id,
                exit_code,
                signal,
                message,
                ..
            } if self.over_disk.remove(container_id.as_str()) => Input::ContainerExited {
                container_id,
                exit_code,
                signal,
                reason: Some(REASON_DISK_LIMIT.into()),
                message: format!(
                    "killed for using more sandbox disk than its disk resources; {message}"
                ),
            },
            other => other,
        };
        if let Err(e) = self.containerizer.destroy(msg.container_id.as_str()) {
            tracing::warn!(container = %msg.container_id, error = %e, "destroy failed");
        }
        self.deliver(input, ctx);
    }
}

/// The agent's `/state` document: the core's view, its counters and the containerizer in use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentSnapshot {
    #[serde(flatten)]
    pub state: AgentState,
    pub counters: crate::core::AgentCounters,
    pub containerizer: &'static str,
}

#[derive(Message)]
#[rtype(result = "AgentSnapshot")]
pub struct GetAgentState;

impl Handler<GetAgentState> for AgentActor {
    type Result = MessageResult<GetAgentState>;
    fn handle(&mut self, _: GetAgentState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(AgentSnapshot {
            state: self.core.state(),
            counters: self.core.counters().clone(),
            containerizer: self.containerizer.name(),
        })
    }
}

/// Per-container usage for the agent's HTTP API.
#[derive(Message)]
#[rtype(result = "Vec<(String, Result<agora_isolation::Usage, String>)>")]
pub struct GetUsage;

impl Handler<GetUsage> for AgentActor {
    type Result = MessageResult<GetUsage>;
    fn handle(&mut self, _: GetUsage, _: &mut Context<Self>) -> Self::Result {
        let ids = self.containerizer.containers();
        MessageResult(
            ids.into_iter()
                .map(|id| {
                    let u = self.containerizer.usage(&id).map_err(|e| e.to_string());
                    (id, u)
                })
                .collect(),
        )
    }
}

pub struct AgentOptions {
    pub config: AgentConfig,
    pub listen: String,
    pub masters: Vec<String>,
    pub epoch: u64,
    /// Checkpoint store and what it held at start (`None`: a fresh agent).
    pub checkpoint: Option<(CheckpointStore, Option<AgentRecord>)>,
    /// How often sandboxes with a `disk` limit are measured; 0 turns the check off.
    pub disk_watch_interval_ms: u64,
}

#[derive(Clone)]
pub struct AgentHandle {
    pub addr: Addr<AgentActor>,
    pub bound: String,
}

/// Starts the agent on the current actix system: listens for executors, dials the master.
pub async fn start_agent(
    mut opts: AgentOptions,
    transport: Arc<dyn Transport>,
    containerizer: Arc<dyn Containerizer>,
) -> Result<AgentHandle, TransportError> {
    let cluster = opts.config.cluster.clone();
    let ctx = Context::<AgentActor>::new();
    let addr = ctx.address();
    let hello = Hello::new(&cluster, NodeKind::Agent, &opts.listen);
    let bound = transport
        .listen(&opts.listen, hello.clone(), addr.clone().recipient())
        .await?;
    // Executors must reach the address actually bound (port 0 resolved).
    opts.config.endpoint = bound.clone();
    let hello = Hello::new(&cluster, NodeKind::Agent, &bound);
    let link = transport.connect(
        opts.masters.clone(),
        hello,
        Backoff::default(),
        addr.clone().recipient(),
    );
    let clock = MonoClock::new();
    let cluster = opts.config.cluster.clone();
    let (store, previous) = match opts.checkpoint {
        Some((store, previous)) => (Some(store), previous),
        None => (None, None),
    };
    let (core, recovery) = match previous {
        Some(record) => {
            let (core, actions) =
                AgentCore::recover(opts.config, opts.epoch, clock.now(), record.core.clone());
            (core, Some((actions, record)))
        }
        None => (AgentCore::new(opts.config, opts.epoch), None),
    };
    let actor = AgentActor {
        core,
        clock,
        store,
        record: checkpoint::new_record(&cluster, containerizer.name()),
        container_ckpts: BTreeMap::new(),
        recovery,
        disk_watch_interval_ms: opts.disk_watch_interval_ms,
        over_disk: BTreeSet::new(),
        master: Some(link),
        master_conn: None,
        executors: HashMap::new(),
        containerizer,
    };
    ctx.run(actor);
    tracing::info!(%bound, "agent listening for executors");
    Ok(AgentHandle { addr, bound })
}
