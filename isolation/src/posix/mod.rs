//! The posix containerizer: each container is a process tree in its own session and process
//! group. No resource limits are enforced (that needs cgroups); usage is read from `/proc`.
//!
//! Limitations, inherent to plain processes: a task that starts its own session (`setsid`,
//! daemons) leaves the container's group and escapes `kill`; memory and CPU are not capped.
//!
//! Each container's main process is reaped by its own watcher thread with `waitid(P_PID)`; the
//! rest of the agent must not reap with `waitpid(-1)`, or exit statuses are lost. Processes
//! orphaned by a container are reparented to init (or to a subreaper, which then has to reap
//! them itself).

mod container;
mod spawn;
mod watch;

pub(crate) use self::spawn::resolve_user as resolve_identity;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;

use self::container::{
    is_same_leader, kill_group, kill_leaderless_group, unknown_termination, Container, Origin,
};
use crate::procfs;
use crate::{
    validate_container_id, BoxFuture, ContainerCheckpoint, ContainerConfig, Containerizer,
    IsolationError, Launched, Recovered, Termination, Usage,
};

/// Longest grace period honoured by `kill`; longer requests are shortened to this.
const MAX_KILL_GRACE: Duration = Duration::from_secs(15 * 60);
/// How long `kill` waits for the main process to disappear after SIGKILL before giving up
/// (a process stuck in uninterruptible sleep, e.g. on a dead NFS server).
const KILL_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Tunables of [`PosixContainerizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixOptions {
    /// Most containers known at once (running or exited but not destroyed). Each running one
    /// has a small watcher thread.
    pub max_containers: usize,
    /// Soft `RLIMIT_NOFILE` given to containers (capped by the agent's hard limit).
    pub nofile_limit: u64,
    /// How often a recovered container's main process is checked for having exited.
    pub recovery_poll_interval_ms: u64,
}

impl Default for PosixOptions {
    fn default() -> Self {
        PosixOptions {
            max_containers: 1024,
            nofile_limit: 65_536,
            recovery_poll_interval_ms: 200,
        }
    }
}

/// Containers as plain process groups. Dropping it leaves running containers running (an agent
/// restart recovers them); use [`PosixContainerizer::kill_all_now`] to stop them.
pub struct PosixContainerizer {
    options: PosixOptions,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    containers: BTreeMap<String, Arc<Container>>,
    /// Ids being launched or recovered right now: taken, but not in `containers` yet.
    reserved: BTreeSet<String>,
}

impl Default for PosixContainerizer {
    fn default() -> Self {
        Self::new()
    }
}

impl PosixContainerizer {
    pub fn new() -> Self {
        Self::with_options(PosixOptions::default())
    }

    pub fn with_options(options: PosixOptions) -> Self {
        PosixContainerizer {
            options,
            registry: Mutex::new(Registry::default()),
        }
    }

    /// SIGKILLs every running container's process group without waiting (agent shutdown when
    /// containers must not outlive it, test cleanup). Returns how many groups were signalled.
    pub fn kill_all_now(&self) -> usize {
        let containers: Vec<_> = self.lock().containers.values().cloned().collect();
        let mut signalled = 0;
        for container in containers {
            match container.signal_group(Signal::SIGKILL, true) {
                Ok(true) => signalled += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(id = %container.id, error = %e, "cannot kill container"),
            }
        }
        signalled
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry is plain data that no panic can leave half-updated.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Container>, IsolationError> {
        self.lock()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| IsolationError::NotFound(id.to_string()))
    }

    /// Takes `id` for a launch or recovery in progress, so a concurrent call with the same id
    /// fails instead of starting a second process.
    fn reserve(&self, id: &str) -> Result<Reservation<'_>, IsolationError> {
        let mut registry = self.lock();
        if registry.containers.contains_key(id) || registry.reserved.contains(id) {
            return Err(IsolationError::AlreadyExists(id.to_string()));
        }
        let limit = self.options.max_containers;
        if registry.containers.len() + registry.reserved.len() >= limit {
            return Err(IsolationError::TooManyContainers { limit });
        }
        registry.reserved.insert(id.to_string());
        Ok(Reservation {
            owner: self,
            id: id.to_string(),
        })
    }

    fn launch_inner(&self, config: ContainerConfig) -> Result<Launched, IsolationError> {
        config.validate()?;
        // (Task network namespaces need nothing here: the executor runs as the agent's user.)
        if config.rootfs.is_some() {
            let what = "a rootfs of its own";
            return Err(IsolationError::InvalidConfig {
                id: config.id.clone(),
                reason: format!("the posix containerizer cannot give a container {what}; run the agent with --isolation libcontainer"),
            });
        }
        if config.io_weight.is_some() {
            tracing::info!(id = %config.id, "io weight ignored: the posix containerizer has no cgroups");
        }
        let reservation = self.reserve(&config.id)?;
        let identity = spawn::resolve_user(&config)?;
        let stdio = spawn::prepare_sandbox(&config, identity.as_ref())?;
        let child = spawn::spawn(&config, identity, stdio, self.options.nofile_limit)?;
        let pid = child.id() as i32;
        // Reaping is the watcher's job (it must first look at the zombie without reaping it).
        drop(child);
        let start_ticks = match procfs::read_stat(pid) {
            Ok(stat) => stat.start_ticks,
            Err(e) => {
                return Err(abort_child(
                    &config.id,
                    pid,
                    format!("cannot read /proc: {e}"),
                ))
            }
        };
        let checkpoint = ContainerCheckpoint {
            id: config.id.clone(),
            pid,
            sandbox: config.sandbox.clone(),
            limits: config.limits,
            start_ticks,
        };
        let container = Container::new(checkpoint, Origin::Child);
        if let Err(e) = watch::spawn_child_watcher(container.clone()) {
            let reason = format!("cannot start its watcher thread: {e}");
            return Err(abort_child(&config.id, pid, reason));
        }
        reservation.commit(container);
        tracing::info!(id = %config.id, pid, sandbox = %config.sandbox.display(), argv0 = %config.argv[0], "container launched");
        Ok(Launched {
            pid,
            sandbox: config.sandbox,
        })
    }

    /// Reattaches to one checkpointed container (see [`Containerizer::recover`]).
    fn recover_one(&self, checkpoint: ContainerCheckpoint) -> Result<Recovered, IsolationError> {
        validate_container_id(&checkpoint.id)?;
        if checkpoint.pid <= 1 {
            return Err(IsolationError::InvalidConfig {
                id: checkpoint.id,
                reason: format!("checkpointed pid {} is not a container", checkpoint.pid),
            });
        }
        let reservation = self.reserve(&checkpoint.id)?;
        let running = is_same_leader(checkpoint.pid, checkpoint.start_ticks);
        let container = Container::new(checkpoint, Origin::Recovered);
        if running {
            let poll = Duration::from_millis(self.options.recovery_poll_interval_ms.max(1));
            watch::spawn_recovered_watcher(container.clone(), poll).map_err(|e| {
                IsolationError::Lost {
                    id: container.id.clone(),
                    reason: format!("cannot start its watcher thread: {e}"),
                }
            })?;
        } else {
            container.lock_state().leader_gone = true;
            kill_leaderless_group(container.pid, container.start_ticks);
            container.publish(unknown_termination(
                false,
                "it ended while the agent was down",
            ));
        }
        let recovered = Recovered {
            id: container.id.clone(),
            pid: container.pid,
            sandbox: container.sandbox.clone(),
            running,
        };
        reservation.commit(container);
        Ok(recovered)
    }
}

/// An id taken by [`PosixContainerizer::reserve`]; released on drop unless committed.
struct Reservation<'a> {
    owner: &'a PosixContainerizer,
    id: String,
}

impl Reservation<'_> {
    /// Registers the container and releases the reservation in one step, so the id is never
    /// counted twice against `max_containers`. (The later drop finds nothing to release.)
    fn commit(self, container: Arc<Container>) {
        let mut registry = self.owner.lock();
        registry.reserved.remove(&self.id);
        registry.containers.insert(self.id.clone(), container);
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.owner.lock().reserved.remove(&self.id);
    }
}

/// Kills and reaps a child whose launch cannot be completed, so it neither runs unsupervised
/// nor stays a zombie. Returns the error to report.
fn abort_child(id: &str, pid: i32, reason: String) -> IsolationError {
    // Not reaped yet, so the group id is still ours.
    if let Err(e) = kill_group(pid, Signal::SIGKILL) {
        tracing::error!(id, pid, error = %e, "cannot kill a half-launched container");
    }
    if let Err(e) = watch::reap(pid) {
        tracing::error!(id, pid, error = %e, "cannot reap a half-launched container");
    }
    IsolationError::Lost {
        id: id.to_string(),
        reason,
    }
}

/// SIGTERM, up to `grace` for the main process to exit, then SIGKILL.
async fn kill_container(container: Arc<Container>, grace: Duration) -> Result<(), IsolationError> {
    let grace = grace.min(MAX_KILL_GRACE);
    if container.signal_group(Signal::SIGTERM, true)? {
        tracing::info!(id = %container.id, grace_ms = grace.as_millis() as u64, "container sent SIGTERM");
        if let Ok(result) = tokio::time::timeout(grace, container.wait_exit()).await {
            return result.map(drop);
        }
        tracing::info!(id = %container.id, "container still running after its grace period; SIGKILL");
        container.signal_group(Signal::SIGKILL, true)?;
    }
    // Also reached when the main process was already gone but its exit not yet published.
    match tokio::time::timeout(KILL_CONFIRM_TIMEOUT, container.wait_exit()).await {
        Ok(result) => result.map(drop),
        Err(_) => Err(IsolationError::KillTimeout {
            id: container.id.clone(),
            waited_ms: KILL_CONFIRM_TIMEOUT.as_millis() as u64,
        }),
    }
}

use crate::error::logged;

impl Containerizer for PosixContainerizer {
    fn name(&self) -> &'static str {
        "posix"
    }

    fn blocking_launch(&self) -> bool {
        true
    }

    fn launch(&self, config: ContainerConfig) -> Result<Launched, IsolationError> {
        let id = config.id.clone();
        logged("launch", &id, self.launch_inner(config))
    }

    fn wait(&self, id: &str) -> BoxFuture<Result<Termination, IsolationError>> {
        let found = logged("wait", id, self.get(id));
        Box::pin(async move { found?.wait_exit().await })
    }

    fn kill(&self, id: &str, grace: Duration) -> BoxFuture<Result<(), IsolationError>> {
        let found = logged("kill", id, self.get(id));
        let id = id.to_string();
        Box::pin(async move { logged("kill", &id, kill_container(found?, grace).await) })
    }

    fn usage(&self, id: &str) -> Result<Usage, IsolationError> {
        logged("usage", id, self.get(id).and_then(|c| c.usage()))
    }

    fn destroy(&self, id: &str) -> Result<(), IsolationError> {
        let mut registry = self.lock();
        let result = match registry.containers.get(id) {
            None => Err(IsolationError::NotFound(id.to_string())),
            Some(container) if !container.has_exited() => {
                Err(IsolationError::StillRunning(id.to_string()))
            }
            Some(_) => {
                registry.containers.remove(id);
                tracing::info!(id, "container destroyed");
                Ok(())
            }
        };
        drop(registry);
        logged("destroy", id, result)
    }

    fn containers(&self) -> Vec<String> {
        self.lock().containers.keys().cloned().collect()
    }

    fn checkpoint(&self, id: &str) -> Result<ContainerCheckpoint, IsolationError> {
        logged("checkpoint", id, self.get(id).map(|c| c.checkpoint()))
    }

    fn recover(
        &self,
        checkpoints: Vec<ContainerCheckpoint>,
    ) -> Result<Vec<Recovered>, IsolationError> {
        let mut recovered = Vec::with_capacity(checkpoints.len());
        for checkpoint in checkpoints {
            let id = checkpoint.id.clone();
            if let Ok(container) = logged("recover", &id, self.recover_one(checkpoint)) {
                tracing::info!(
                    id,
                    pid = container.pid,
                    running = container.running,
                    "container recovered"
                );
                recovered.push(container);
            }
        }
        Ok(recovered)
    }
}
