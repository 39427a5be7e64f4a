//! Plain data exchanged between the agent and a containerizer, plus config validation shared by
//! every implementation.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::IsolationError;

/// `Termination::reason` when agora itself killed the container.
pub const REASON_KILLED: &str = "killed";
/// `Termination::reason` when the container ended while nobody could collect its exit status
/// (it was recovered after an agent restart, or someone else reaped it).
pub const REASON_EXIT_STATUS_UNKNOWN: &str = "exit status unknown";
/// `PATH` given to a container whose environment has none, so `argv[0]` can be a bare name.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Longest container id accepted (ids become directory, cgroup and thread names).
pub const MAX_CONTAINER_ID_LEN: usize = 128;
/// Most `argv` entries accepted.
pub const MAX_ARGV_ENTRIES: usize = 4096;
/// Most environment variables accepted.
pub const MAX_ENV_ENTRIES: usize = 4096;
/// Largest total size in bytes of `argv` plus `env` (Linux refuses more than ~2 MiB anyway).
pub const MAX_ARG_BYTES: usize = 1 << 20;
/// Longest user name accepted.
const MAX_USER_NAME_LEN: usize = 64;

/// Resources given to a container. Enforced where the implementation can (cgroups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// CPU share in milli-CPUs (1000 = one core).
    pub cpus_milli: i64,
    pub mem_mb: u64,
    pub disk_mb: u64,
}

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Container id: 1..=128 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
    pub id: String,
    /// Absolute path of the sandbox directory (created if missing).
    pub sandbox: PathBuf,
    /// Program and arguments; `argv[0]` is looked up in the container's `PATH` if it has no `/`.
    pub argv: Vec<String>,
    /// The container's whole environment (nothing is inherited from the agent).
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    /// Run as this user instead of the agent's user (needs the agent to run as root).
    pub user: Option<String>,
    /// The container's tasks each get a network namespace of their own with only loopback
    /// up. The executor stays on the host network (it must reach the agent) and creates the
    /// namespaces: the container is given `CAP_SYS_ADMIN` for that, which agora's command
    /// executor drops from every task (the agent allows this for command executors only).
    pub isolated_network: bool,
    /// Disk IO weight ([`MIN_IO_WEIGHT`]..=[`MAX_IO_WEIGHT`]), applied where the cgroup
    /// controller exists (blkio on v1, io on v2).
    pub io_weight: Option<u16>,
    /// Root filesystem directory on the host (absolute, must exist) instead of the host's own
    /// directories.
    pub rootfs: Option<PathBuf>,
}

/// Smallest and largest disk IO weight (the kernel's blkio.weight range).
pub const MIN_IO_WEIGHT: u16 = 10;
pub const MAX_IO_WEIGHT: u16 = 1000;

/// A started container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launched {
    /// Pid of the main process (for posix also its process group and session id).
    pub pid: i32,
    pub sandbox: PathBuf,
}

/// How a container's main process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    /// Exit code if the process exited normally.
    pub exit_code: Option<i32>,
    /// Signal number if the process was killed by a signal.
    pub signal: Option<i32>,
    /// Why it ended when that is known beyond the status: [`REASON_KILLED`],
    /// [`REASON_EXIT_STATUS_UNKNOWN`], later e.g. `"memory limit"`.
    pub reason: Option<String>,
    /// Human-readable summary for status updates and logs.
    pub message: String,
}

impl Termination {
    /// True when the process exited with code 0 and agora did not kill it.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && self.reason.is_none()
    }
}

/// Resource usage of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// User + system CPU time of the container's processes; never decreases.
    pub cpu_time_ms: u64,
    /// Resident memory now (0 once the container has exited).
    pub mem_rss_bytes: u64,
    /// Highest resident memory seen (see the implementation for how exact it is).
    pub mem_peak_bytes: u64,
    /// The limits the container was launched with.
    pub limits: Limits,
}

/// What the agent persists per container to reattach to it after an agent restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCheckpoint {
    pub id: String,
    /// Pid of the main process.
    pub pid: i32,
    pub sandbox: PathBuf,
    pub limits: Limits,
    /// Start time of the main process in clock ticks since boot (`/proc/<pid>/stat` field 22).
    /// Together with the pid it identifies the process even if the pid was recycled.
    pub start_ticks: u64,
}

/// A container reattached by [`crate::Containerizer::recover`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovered {
    pub id: String,
    pub pid: i32,
    pub sandbox: PathBuf,
    /// False when the container ended while the agent was away.
    pub running: bool,
}

/// Checks a container id: 1..=128 of `[A-Za-z0-9._-]`, not starting with `.` or `-`, so it is
/// safe as a file name, a cgroup name and a command-line argument.
pub fn validate_container_id(id: &str) -> Result<(), IsolationError> {
    let reason = if id.is_empty() {
        Some("container id is empty".to_string())
    } else if id.len() > MAX_CONTAINER_ID_LEN {
        Some(format!(
            "container id is longer than {MAX_CONTAINER_ID_LEN} bytes"
        ))
    } else if id.starts_with('.') || id.starts_with('-') {
        Some("container id must not start with '.' or '-'".to_string())
    } else {
        id.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(|c| format!("container id contains {c:?}; allowed are A-Z a-z 0-9 . _ -"))
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(IsolationError::InvalidConfig {
            id: id.to_string(),
            reason,
        }),
    }
}

impl ContainerConfig {
    /// Checks everything that can be checked without touching the system, so a bad config is
    /// refused with a precise message before anything is created.
    pub fn validate(&self) -> Result<(), IsolationError> {
        validate_container_id(&self.id)?;
        self.check()
            .map_err(|reason| IsolationError::InvalidConfig {
                id: self.id.clone(),
                reason,
            })
    }

    fn check(&self) -> Result<(), String> {
        if !self.sandbox.is_absolute() {
            return Err(format!(
                "sandbox {:?} is not an absolute path",
                self.sandbox
            ));
        }
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err("argv is empty: nothing to run".to_string());
        }
        if self.argv.len() > MAX_ARGV_ENTRIES {
            return Err(format!("more than {MAX_ARGV_ENTRIES} argv entries"));
        }
        if self.env.len() > MAX_ENV_ENTRIES {
            return Err(format!("more than {MAX_ENV_ENTRIES} environment variables"));
        }
        if self.limits.cpus_milli < 0 {
            return Err(format!("negative cpu limit {}", self.limits.cpus_milli));
        }
        self.check_strings()?;
        if let Some(w) = self.io_weight {
            if !(MIN_IO_WEIGHT..=MAX_IO_WEIGHT).contains(&w) {
                return Err(format!(
                    "io weight {w} is outside {MIN_IO_WEIGHT}..={MAX_IO_WEIGHT}"
                ));
            }
        }
        if let Some(rootfs) = &self.rootfs {
            if !rootfs.is_absolute() {
                return Err(format!("rootfs {rootfs:?} is not an absolute path"));
            }
        }
        if let Some(user) = &self.user {
            if user.is_empty() || user.len() > MAX_USER_NAME_LEN || user.contains(['\0', '/']) {
                return Err(format!("invalid user name {user:?}"));
            }
        }
        Ok(())
    }

    /// NUL bytes cannot cross `execve`; `=` in a key would change which variable is set.
    fn check_strings(&self) -> Result<(), String> {
        let mut total_bytes = 0usize;
        if let Some(arg) = self.argv.iter().find(|a| a.contains('\0')) {
            return Err(format!("argv entry {arg:?} contains a NUL byte"));
        }
        total_bytes += self.argv.iter().map(|a| a.len() + 1).sum::<usize>();
        let mut keys = BTreeSet::new();
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(format!("invalid environment variable name {key:?}"));
            }
            if value.contains('\0') {
                return Err(format!("environment variable {key} contains a NUL byte"));
            }
            if !keys.insert(key.as_str()) {
                return Err(format!("environment variable {key} is set twice"));
            }
            total_bytes += key.len() + value.len() + 2;
        }
        if total_bytes > MAX_ARG_BYTES {
            return Err(format!(
                "argv and environment take {total_bytes} bytes, more than {MAX_ARG_BYTES}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig {
            id: "exec-1.a_b".into(),
            sandbox: PathBuf::from("/tmp/sandbox"),
            argv: vec!["true".into()],
            env: vec![("A".into(), "1".into())],
            limits: Limits::default(),
            user: None,
            isolated_network: false,
            io_weight: None,
            rootfs: None,
        }
    }

    fn reason_of(config: &ContainerConfig) -> String {
        match config.validate() {
            Err(IsolationError::InvalidConfig { reason, .. }) => reason,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn good_config_passes() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn ids_are_checked() {
        for bad in ["", ".hidden", "-x", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(validate_container_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "A-1.2_3", &"x".repeat(128)] {
            assert!(validate_container_id(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let mut c = config();
        c.sandbox = PathBuf::from("relative");
        assert!(reason_of(&c).contains("absolute"));

        let mut c = config();
        c.argv.clear();
        assert!(reason_of(&c).contains("argv is empty"));

        let mut c = config();
        c.env.push(("A".into(), "2".into()));
        assert!(reason_of(&c).contains("set twice"));

        let mut c = config();
        c.env.push(("B=C".into(), "2".into()));
        assert!(reason_of(&c).contains("invalid environment variable name"));

        let mut c = config();
        c.argv.push("a\0b".into());
        assert!(reason_of(&c).contains("NUL"));

        let mut c = config();
        c.limits.cpus_milli = -1;
        assert!(reason_of(&c).contains("negative cpu"));

        let mut c = config();
        c.user = Some("../root".into());
        assert!(reason_of(&c).contains("invalid user"));

        let mut c = config();
        c.io_weight = Some(5);
        assert!(reason_of(&c).contains("io weight"));

        let mut c = config();
        c.rootfs = Some(PathBuf::from("rel/root"));
        assert!(reason_of(&c).contains("rootfs"));

        let mut c = config();
        c.argv = vec!["x".repeat(MAX_ARG_BYTES)];
        assert!(reason_of(&c).contains("bytes"));
    }

    #[test]
    fn succeeded_needs_code_zero_and_no_reason() {
        let mut t = Termination {
            exit_code: Some(0),
            signal: None,
            reason: None,
            message: String::new(),
        };
        assert!(t.succeeded());
        t.reason = Some(REASON_KILLED.into());
        assert!(!t.succeeded());
    }
}
