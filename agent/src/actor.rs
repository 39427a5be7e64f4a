//! The agent's actix shell: one link to the master, a listener for its executors, and the
//! containerizer. Inputs go to `AgentCore`; its actions are performed here.

use crate::checkpoint::{self, AgentRecord, CheckpointStore};
use crate::core::{Action, AgentConfig, AgentCore, AgentState, Input, LaunchSpec};
use crate::workers::{CheckpointWriter, Workers};
use actix::prelude::*;
use agora_actors::time::MonoClock;
use agora_actors::transport::{
    Backoff, ConnHandle, ConnId, Link, NetEvent, Transport, TransportError,
};
use agora_actors::{ContainerId, Hello, NodeKind};
use agora_isolation::ContainerCheckpoint;
use agora_isolation::{ContainerConfig, Containerizer, Limits};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
    /// Writes the checkpoint on its own thread (none in tests and the in-process demo).
    writer: Option<CheckpointWriter>,
    /// The record being kept up to date on disk.
    record: AgentRecord,
    ckpt: GroupCommit,
    /// Runs blocking launches and destroys (none when the containerizer must run inline).
    workers: Option<Arc<Workers>>,
    launches: LaunchQueue,
    /// Containerizer checkpoints of the live containers, by container id.
    container_ckpts: BTreeMap<String, ContainerCheckpoint>,
    /// Set at start when recovering: actions of the recovered core, containers to reattach.
    recovery: Option<(Vec<Action>, AgentRecord)>,
    /// How often sandboxes with a `disk` limit are measured (0: never).
    disk_watch_interval_ms: u64,
    /// Containers killed for using more disk than their `disk` resources.
    over_disk: BTreeSet<String>,
    /// Sandbox garbage collection (none: sandboxes are kept).
    gc: Option<(crate::gc::GcPolicy, Duration)>,
    work_dir: PathBuf,
    /// How often usage is reported to the master (none: never).
    usage_interval: Option<Duration>,
}

/// Usage of the executors' containers, measured off the actor's thread, for the master.
#[derive(Message)]
#[rtype(result = "()")]
struct UsageReady(Vec<agora_actors::ExecutorUsage>);

/// Reason of a task (and container) killed for using more sandbox disk than its `disk`.
pub const REASON_DISK_LIMIT: &str = "disk limit";
/// Grace given to a container over its disk limit before SIGKILL.
const DISK_KILL_GRACE_MS: u64 = 1_000;

/// Checkpoint group commit: the actions of a step are performed only once a record holding
/// that step's state is on disk; steps arriving during a write share the next one.
#[derive(Default)]
struct GroupCommit {
    /// Sequence number of the last record handed to the writer.
    seq: u64,
    /// A write is under way.
    busy: bool,
    /// State changed since the last record handed over.
    dirty: bool,
    /// Actions of steps not yet in any record handed over.
    held: Vec<Action>,
    /// Actions waiting for the write under way.
    in_write: Vec<Action>,
}

/// Launches waiting for a worker, and the ones under way.
struct LaunchQueue {
    waiting: VecDeque<LaunchSpec>,
    /// Container ids being launched, with a kill grace if a kill came meanwhile.
    in_flight: BTreeMap<ContainerId, Option<u64>>,
    /// Executor registration timeouts of queued launches, armed once the launch is done.
    deferred: BTreeMap<ContainerId, Duration>,
    max_parallel: usize,
}

/// What a worker reports about a launch.
type LaunchResult = Result<(agora_isolation::Launched, Option<ContainerCheckpoint>), String>;

#[derive(Message)]
#[rtype(result = "()")]
struct LaunchDone {
    spec: LaunchSpec,
    result: LaunchResult,
}

/// The checkpoint writer finished record `seq`.
#[derive(Message)]
#[rtype(result = "()")]
struct Flushed {
    seq: u64,
    result: Result<(), String>,
}

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
        self.after_persist(actions, ctx);
    }

    /// Performs `actions` once the state that produced them is checkpointed (at once without
    /// a checkpoint). The actor never waits for the disk itself.
    fn after_persist(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        if self.writer.is_none() {
            self.perform(actions, ctx);
            return;
        }
        self.ckpt.held.extend(actions);
        self.ckpt.dirty = true;
        self.flush(ctx);
    }

    /// Hands the current state to the writer unless a write is under way (then the next one,
    /// started when it is done, covers this step too).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let Some(writer) = &self.writer else { return };
        if self.ckpt.busy || !self.ckpt.dirty {
            return;
        }
        self.record.core = self.core.checkpoint();
        self.record.containers = self.container_ckpts.values().cloned().collect();
        self.ckpt.seq += 1;
        self.ckpt.dirty = false;
        self.ckpt.in_write = std::mem::take(&mut self.ckpt.held);
        if writer.write(self.ckpt.seq, self.record.clone()) {
            self.ckpt.busy = true;
        } else {
            tracing::error!("checkpoint writer gone; a restart now would lose state");
            let actions = std::mem::take(&mut self.ckpt.in_write);
            self.perform(actions, ctx);
        }
    }

    /// Reattaches to the containers of a recovered checkpoint; the ones that cannot be found
    /// (or all of them after a reboot) end with a terminal update.
    fn recover_containers(&mut self, record: AgentRecord, ctx: &mut Context<Self>) {
        let rebooted = record.boot_id != checkpoint::boot_id();
        let wanted: Vec<String> = record.containers.iter().map(|c| c.id.clone()).collect();
        let recovered = if rebooted {
            tracing::warn!(
                previous = %record.boot_id,
                "the host rebooted since the checkpoint (boot id changed); its containers are gone and their tasks are lost"
            );
            // Nothing is wanted: whatever a containerizer still finds on disk is removed.
            if let Err(e) = self.containerizer.recover(Vec::new()) {
                tracing::debug!(error = %e, "no container leftovers removed");
            }
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
                    crate::core::REASON_AGENT_REBOOTED,
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

    /// Measures every executor's container (on a thread for blocking containerizers) and
    /// reports to the master through [`UsageReady`]. Re-arms itself.
    fn report_usage(&mut self, ctx: &mut Context<Self>) {
        let Some(interval) = self.usage_interval else {
            return;
        };
        ctx.run_later(interval, |act, ctx| act.report_usage(ctx));
        if self.master_conn.is_none() {
            return;
        }
        let execs: Vec<_> = self
            .core
            .state()
            .executors
            .into_iter()
            .take(agora_actors::MAX_USAGE_ENTRIES)
            .map(|e| (e.framework_id, e.executor_id, e.container_id))
            .collect();
        let containerizer = self.containerizer.clone();
        let measure = move || -> Vec<agora_actors::ExecutorUsage> {
            // Only containers that exist (not the ones still queued for launch).
            let known: BTreeSet<String> = containerizer.containers().into_iter().collect();
            execs
                .into_iter()
                .filter(|(_, _, c)| known.contains(c.as_str()))
                .filter_map(|(framework_id, executor_id, container)| {
                    let u = containerizer.usage(container.as_str()).ok()?;
                    let usage = agora_actors::UsageFigures {
                        cpu_time_ms: u.cpu_time_ms,
                        mem_rss_bytes: u.mem_rss_bytes,
                        mem_peak_bytes: u.mem_peak_bytes,
                    };
                    Some(agora_actors::ExecutorUsage {
                        framework_id,
                        executor_id,
                        usage,
                    })
                })
                .collect()
        };
        if self.workers.is_none() {
            let usage = measure();
            self.send_usage(usage);
            return;
        }
        let me = ctx.address();
        std::thread::spawn(move || me.do_send(UsageReady(measure())));
    }

    fn send_usage(&mut self, executors: Vec<agora_actors::ExecutorUsage>) {
        if let (Some(link), Some(_)) = (&self.master, self.master_conn) {
            if let Err(e) = link.send(agora_actors::Message::AgentUsage { executors }) {
                tracing::debug!(error = %e, "usage report not sent");
            }
        }
    }

    /// One sandbox GC pass on a worker thread, then again after the interval.
    fn collect_sandboxes(&mut self, ctx: &mut Context<Self>) {
        let Some((policy, interval)) = self.gc else {
            return;
        };
        ctx.run_later(interval, |act, ctx| act.collect_sandboxes(ctx));
        let mut live: BTreeSet<String> = self.containerizer.containers().into_iter().collect();
        live.extend(self.container_ckpts.keys().cloned());
        live.extend(self.launches.in_flight.keys().map(|c| c.to_string()));
        live.extend(
            self.launches
                .waiting
                .iter()
                .map(|s| s.container_id.to_string()),
        );
        let work_dir = self.work_dir.clone();
        std::thread::spawn(move || {
            let r = crate::gc::collect(&work_dir, &live, policy, std::time::SystemTime::now());
            for path in &r.removed {
                tracing::info!(sandbox = %path.display(), "sandbox garbage-collected");
            }
            for e in &r.errors {
                tracing::warn!(error = %e, "sandbox not garbage-collected");
            }
            tracing::debug!(
                removed = r.removed.len(),
                kept = r.kept,
                delay_ms = r.delay_ms,
                "sandbox gc pass"
            );
        });
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
                } => self.kill(container_id, grace_ms, ctx),
                Action::SetTimer { timer, at } => {
                    let delay = self.clock.until(at);
                    // An executor's registration time starts when its container has started,
                    // not while its launch waits in the queue.
                    if let crate::core::AgentTimer::ExecutorRegisterTimeout { container_id } =
                        &timer
                    {
                        if self
                            .launches
                            .waiting
                            .iter()
                            .any(|s| &s.container_id == container_id)
                            || self.launches.in_flight.contains_key(container_id)
                        {
                            self.launches.deferred.insert(container_id.clone(), delay);
                            continue;
                        }
                    }
                    ctx.run_later(delay, move |act, ctx| act.deliver(Input::Timer(timer), ctx));
                }
            }
        }
    }

    /// A kill for a container still queued ends its launch; one being launched is killed as
    /// soon as it has started.
    fn kill(&mut self, container_id: ContainerId, grace_ms: u64, ctx: &mut Context<Self>) {
        if let Some(pos) = self
            .launches
            .waiting
            .iter()
            .position(|s| s.container_id == container_id)
        {
            self.launches.waiting.remove(pos);
            self.launches.deferred.remove(&container_id);
            tracing::info!(container = %container_id, "killed before its launch started");
            let error = "killed before the container was started".to_string();
            self.deliver(
                Input::ContainerLaunchFailed {
                    container_id,
                    error,
                },
                ctx,
            );
            return;
        }
        if let Some(slot) = self.launches.in_flight.get_mut(&container_id) {
            *slot = Some(grace_ms);
            return;
        }
        let fut = self
            .containerizer
            .kill(container_id.as_str(), Duration::from_millis(grace_ms));
        actix_rt::spawn(async move {
            if let Err(e) = fut.await {
                tracing::warn!(container = %container_id, error = %e, "kill failed");
            }
        });
    }

    /// Launches inline when the containerizer needs the actor's runtime, else queues the
    /// launch for the worker pool (at most `max_parallel` at once).
    fn launch(&mut self, spec: LaunchSpec, ctx: &mut Context<Self>) {
        if self.workers.is_none() {
            let result = launch_blocking(&*self.containerizer, &spec);
            self.launch_done(spec, result, ctx);
            return;
        }
        self.launches.waiting.push_back(spec);
        self.pump_launches(ctx);
    }

    fn pump_launches(&mut self, ctx: &mut Context<Self>) {
        let Some(workers) = &self.workers else { return };
        while self.launches.in_flight.len() < self.launches.max_parallel {
            let Some(spec) = self.launches.waiting.pop_front() else {
                return;
            };
            self.launches
                .in_flight
                .insert(spec.container_id.clone(), None);
            let containerizer = self.containerizer.clone();
            let me = ctx.address();
            workers.run(move || {
                let result = launch_blocking(&*containerizer, &spec);
                me.do_send(LaunchDone { spec, result });
            });
        }
    }

    fn launch_done(&mut self, spec: LaunchSpec, result: LaunchResult, ctx: &mut Context<Self>) {
        let container_id = spec.container_id.clone();
        match result {
            Ok((launched, ckpt)) => {
                tracing::info!(container = %container_id, pid = launched.pid, executor = %spec.executor_id, "container launched");
                if let Some(c) = ckpt {
                    self.container_ckpts.insert(c.id.clone(), c);
                }
                let sandbox = launched.sandbox.display().to_string();
                let pid = launched.pid;
                self.deliver(
                    Input::ContainerLaunched {
                        container_id: container_id.clone(),
                        pid,
                        sandbox,
                    },
                    ctx,
                );
                self.watch_container(container_id, ctx);
            }
            Err(error) => {
                tracing::warn!(container = %container_id, %error, "container launch failed");
                self.deliver(
                    Input::ContainerLaunchFailed {
                        container_id,
                        error,
                    },
                    ctx,
                );
            }
        }
    }
}

/// Starts the container of `spec` and takes its checkpoint (may block: worker threads).
fn launch_blocking(containerizer: &dyn Containerizer, spec: &LaunchSpec) -> LaunchResult {
    let config = ContainerConfig {
        id: spec.container_id.to_string(),
        sandbox: PathBuf::from(&spec.sandbox),
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        limits: limits_of(&spec.resources),
        user: spec.container.user.clone(),
        isolated_network: spec.container.network == agora_actors::NetworkMode::Isolated,
        io_weight: spec.container.io_weight,
        rootfs: spec.container.rootfs.as_ref().map(PathBuf::from),
    };
    let launched = containerizer.launch(config).map_err(|e| e.to_string())?;
    let ckpt = match containerizer.checkpoint(spec.container_id.as_str()) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(container = %spec.container_id, error = %e, "container cannot be recovered after a restart");
            None
        }
    };
    Ok((launched, ckpt))
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
            self.after_persist(actions, ctx);
            self.recover_containers(record, ctx);
        } else {
            self.after_persist(actions, ctx);
        }
        if self.disk_watch_interval_ms > 0 {
            self.watch_disks(ctx);
        }
        self.collect_sandboxes(ctx);
        self.report_usage(ctx);
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

impl Handler<UsageReady> for AgentActor {
    type Result = ();
    fn handle(&mut self, msg: UsageReady, _: &mut Context<Self>) {
        self.send_usage(msg.0);
    }
}

impl Handler<Flushed> for AgentActor {
    type Result = ();
    fn handle(&mut self, msg: Flushed, ctx: &mut Context<Self>) {
        if msg.seq != self.ckpt.seq {
            return; // not the write under way (cannot happen with one writer)
        }
        if let Err(e) = msg.result {
            tracing::error!(error = %e, "checkpoint not written; a restart now would lose state");
        }
        self.ckpt.busy = false;
        let actions = std::mem::take(&mut self.ckpt.in_write);
        self.perform(actions, ctx);
        self.flush(ctx);
    }
}

impl Handler<LaunchDone> for AgentActor {
    type Result = ();
    fn handle(&mut self, msg: LaunchDone, ctx: &mut Context<Self>) {
        let id = msg.spec.container_id.clone();
        let kill_grace = self.launches.in_flight.remove(&id).flatten();
        let launched = msg.result.is_ok();
        if let Some(delay) = self.launches.deferred.remove(&id) {
            let timer = crate::core::AgentTimer::ExecutorRegisterTimeout {
                container_id: id.clone(),
            };
            ctx.run_later(delay, move |act, ctx| act.deliver(Input::Timer(timer), ctx));
        }
        self.launch_done(msg.spec, msg.result, ctx);
        if let (true, Some(grace_ms)) = (launched, kill_grace) {
            self.kill(id, grace_ms, ctx);
        }
        self.pump_launches(ctx);
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
        if let Some(c) = self.container_ckpts.remove(msg.container_id.as_str()) {
            // The sandbox's age for the garbage collector starts now.
            crate::gc::stamp_ended(&c.sandbox);
        }
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
        let containerizer = self.containerizer.clone();
        let id = msg.container_id.clone();
        let destroy = move || {
            if let Err(e) = containerizer.destroy(id.as_str()) {
                tracing::warn!(container = %id, error = %e, "destroy failed");
            }
        };
        match &self.workers {
            Some(w) => w.run(destroy),
            None => destroy(),
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
    /// Most containers being started at once (containerizers that block, see
    /// `Containerizer::blocking_launch`); more wait in a queue.
    pub max_parallel_launches: usize,
    /// Sandbox garbage collection: policy and how often it runs (none: keep sandboxes).
    pub gc: Option<(crate::gc::GcPolicy, Duration)>,
    /// How often the executors' usage is reported to the master (none: never).
    pub usage_report_interval: Option<Duration>,
}

#[derive(Clone)]
pub struct AgentHandle {
    pub addr: Addr<AgentActor>,
    pub bound: String,
}

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot start the agent's threads: {0}")]
    Threads(String),
}

/// Starts the agent on the current actix system: listens for executors, dials the master.
pub async fn start_agent(
    mut opts: AgentOptions,
    transport: Arc<dyn Transport>,
    containerizer: Arc<dyn Containerizer>,
) -> Result<AgentHandle, StartError> {
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
    let cluster_work_dir = opts.config.work_dir.clone();
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
    let workers = if containerizer.blocking_launch() {
        let n = opts
            .max_parallel_launches
            .clamp(1, crate::workers::MAX_WORKERS);
        Some(Arc::new(Workers::new(n, "agent-launch").map_err(|e| {
            StartError::Threads(format!("launch workers: {e}"))
        })?))
    } else {
        None
    };
    let writer = match store {
        Some(store) => {
            let me = addr.clone();
            let done = move |seq, result| me.do_send(Flushed { seq, result });
            Some(
                CheckpointWriter::start(store, done)
                    .map_err(|e| StartError::Threads(format!("checkpoint writer: {e}")))?,
            )
        }
        None => None,
    };
    let actor = AgentActor {
        core,
        clock,
        writer,
        ckpt: GroupCommit::default(),
        launches: LaunchQueue {
            waiting: VecDeque::new(),
            in_flight: BTreeMap::new(),
            deferred: BTreeMap::new(),
            max_parallel: opts
                .max_parallel_launches
                .clamp(1, crate::workers::MAX_WORKERS),
        },
        workers,
        record: checkpoint::new_record(&cluster, containerizer.name()),
        container_ckpts: BTreeMap::new(),
        recovery,
        disk_watch_interval_ms: opts.disk_watch_interval_ms,
        over_disk: BTreeSet::new(),
        gc: opts.gc,
        usage_interval: opts.usage_report_interval,
        work_dir: PathBuf::from(&cluster_work_dir),
        master: Some(link),
        master_conn: None,
        executors: HashMap::new(),
        containerizer,
    };
    ctx.run(actor);
    tracing::info!(%bound, "agent listening for executors");
    Ok(AgentHandle { addr, bound })
}
