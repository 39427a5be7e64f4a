//! agora isolation: the [`Containerizer`] trait the agent uses to start, watch, stop and measure
//! executors, and its implementations.
//!
//! * [`PosixContainerizer`]: plain processes, each in its own session and process group. It
//!   enforces no resource limits (memory and CPU limits need cgroups); usage comes from `/proc`.
//! * [`LibcontainerContainerizer`]: OCI containers created by youki's libcontainer (cgroup v1
//!   or v2 limits, pid/mount/ipc/uts namespaces), each started by a single-threaded launcher
//!   process ([`launcher_main`]) so libcontainer never forks from the agent's threads.
//!
//! The crate depends on nothing else of agora: the agent translates its own task and executor
//! types into [`ContainerConfig`].

mod disk;
mod error;
mod libct;
mod posix;
mod procfs;
mod types;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use disk::{sandbox_disk_usage_bytes, MAX_DISK_WALK_DEPTH, MAX_DISK_WALK_ENTRIES};
pub use error::IsolationError;
pub use libct::cgroup::{check_cgroup_root, detect_cgroups, remove_cgroup_root, CgroupVersion};
pub use libct::launcher::launcher_main;
pub use libct::spec::CONTAINER_SANDBOX;
pub use libct::{LibcontainerContainerizer, LibcontainerOptions, REASON_MEMORY_LIMIT};
pub use posix::{PosixContainerizer, PosixOptions};
pub use types::{
    validate_container_id, ContainerCheckpoint, ContainerConfig, Launched, Limits, Recovered,
    Termination, Usage, DEFAULT_PATH, MAX_ARGV_ENTRIES, MAX_ARG_BYTES, MAX_CONTAINER_ID_LEN,
    MAX_ENV_ENTRIES, MAX_IO_WEIGHT, MIN_IO_WEIGHT, REASON_EXIT_STATUS_UNKNOWN, REASON_KILLED,
};

/// A boxed, sendable, `'static` future: what the asynchronous trait methods return so the trait
/// stays object safe (`Arc<dyn Containerizer>`).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Starts and supervises containers (one per executor) on an agent.
///
/// Contract shared by every implementation:
/// * Container ids are chosen by the caller ([`validate_container_id`]) and unique among the
///   containers the containerizer currently knows; an id becomes free again after [`destroy`].
/// * [`Limits`] are the resources the container was given. An implementation that can enforce
///   them (cgroups) does; one that cannot (posix) still reports them back in [`Usage`]. When a
///   limit is what ended a container, [`Termination::reason`] says so (e.g. `"memory limit"`).
/// * After an agent restart, the agent feeds the [`ContainerCheckpoint`]s it persisted to
///   [`recover`]; the recovered ids then behave like launched ones (`wait`, `kill`, `usage`).
///   Implementations with their own state root (libcontainer) may ignore most checkpoint fields.
/// * The returned futures need a Tokio runtime with timers (actix provides one). The synchronous
///   methods return quickly, except `launch` and `destroy` where [`blocking_launch`] says so.
///
/// [`destroy`]: Containerizer::destroy
/// [`recover`]: Containerizer::recover
/// [`blocking_launch`]: Containerizer::blocking_launch
pub trait Containerizer: Send + Sync + 'static {
    /// Short name for logs and the agent's flags, e.g. `"posix"`.
    fn name(&self) -> &'static str;

    /// True when `launch` and `destroy` may block for a while (fork a launcher, wait for its
    /// answer, remove directories) and need no async runtime: the agent then runs them on its
    /// worker threads instead of its actor thread. An implementation that spawns onto the
    /// caller's runtime (the in-process demo) keeps the default `false` and is called inline.
    fn blocking_launch(&self) -> bool {
        false
    }

    /// Called when the agent shuts down cleanly (its containers keep running): releases what
    /// is no longer needed, e.g. agora's cgroup root directories once they are empty.
    fn agent_exiting(&self) {}

    /// Creates the sandbox directory (and the `stdout` / `stderr` files in it) and starts
    /// `argv[0]` with `argv` in its own session and process group, cwd = sandbox, stdout and
    /// stderr appended to those files, environment exactly `env` plus a minimal `PATH` if absent.
    /// Returns as soon as the process is started; it does not wait for it.
    fn launch(&self, config: ContainerConfig) -> Result<Launched, IsolationError>;

    /// Resolves when the container's main process has exited and been reaped. May be called any
    /// number of times, before or after the exit; every caller gets the same [`Termination`].
    fn wait(&self, id: &str) -> BoxFuture<Result<Termination, IsolationError>>;

    /// Sends SIGTERM to the container's processes, then SIGKILL after `grace`; resolves when the
    /// main process is gone. Killing a container that already exited is `Ok`.
    fn kill(&self, id: &str, grace: Duration) -> BoxFuture<Result<(), IsolationError>>;

    /// Current resource usage of the container (final figures once it has exited).
    fn usage(&self, id: &str) -> Result<Usage, IsolationError>;

    /// Forgets an exited container and releases what the implementation holds for it. The
    /// sandbox directory stays for the operator. A running container must be killed first.
    fn destroy(&self, id: &str) -> Result<(), IsolationError>;

    /// Ids of the containers this containerizer knows about (running or exited, not destroyed),
    /// in ascending order.
    fn containers(&self) -> Vec<String>;

    /// A resource limit the container has run into, as the kernel reports it (e.g.
    /// `"memory limit"` once the OOM killer acted in its memory cgroup), even if the container
    /// itself still runs. The agent uses it to give a failed task the real reason. An
    /// implementation that enforces no limits says `None`.
    fn limitation(&self, id: &str) -> Option<String> {
        let _ = id;
        None
    }

    /// What the agent must persist about a launched container so that [`recover`] can reattach
    /// to it after an agent restart. Call it right after `launch`.
    ///
    /// [`recover`]: Containerizer::recover
    fn checkpoint(&self, id: &str) -> Result<ContainerCheckpoint, IsolationError> {
        let _ = id;
        Err(IsolationError::Unsupported {
            containerizer: self.name(),
            operation: "checkpoint",
        })
    }

    /// Reattaches to containers started by a previous agent process. Every returned id is known
    /// afterwards: a still-running one can be waited on, killed and measured; one that ended
    /// while the agent was away is reported with `running == false` and its `wait` resolves at
    /// once (exit status unknown). Checkpoints missing from the result could not be recovered
    /// (the reason is logged); the agent should treat their tasks as lost.
    fn recover(
        &self,
        checkpoints: Vec<ContainerCheckpoint>,
    ) -> Result<Vec<Recovered>, IsolationError> {
        let _ = checkpoints;
        Err(IsolationError::Unsupported {
            containerizer: self.name(),
            operation: "recover",
        })
    }
}
