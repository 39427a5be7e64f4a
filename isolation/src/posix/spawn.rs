//! Starting a container's main process: user lookup, sandbox preparation, and the fork/exec.
//!
//! The agent is multi-threaded, so between `fork` and `exec` the child may only make
//! async-signal-safe calls: no allocation, no locks, no logging. Everything that needs those
//! (user and group lookup, limits) is computed in the parent; the child only makes syscalls.
//! Nothing in the child waits for the parent, which would deadlock `Command::spawn`.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::unistd::{Gid, User};

use crate::{ContainerConfig, IsolationError, DEFAULT_PATH};

/// Most supplementary groups carried over to a container's user (Linux's `NGROUPS_MAX`).
const MAX_SUPPLEMENTARY_GROUPS: usize = 65_536;

/// The user a container runs as when it differs from the agent's.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl Identity {
    /// uid, gid and supplementary groups.
    pub(crate) fn ids(&self) -> (u32, u32, Vec<u32>) {
        (self.uid, self.gid, self.groups.clone())
    }
}

/// Looks up `config.user`. `None` when no switch is needed (no user given, or it is the user
/// the agent runs as).
pub(crate) fn resolve_user(config: &ContainerConfig) -> Result<Option<Identity>, IsolationError> {
    let Some(name) = &config.user else {
        return Ok(None);
    };
    let error = |reason: String| IsolationError::User {
        id: config.id.clone(),
        user: name.clone(),
        reason,
    };
    let user = User::from_name(name)
        .map_err(|e| error(format!("cannot look the user up: {e}")))?
        .ok_or_else(|| error("no such user".into()))?;
    // SAFETY: geteuid/getegid have no preconditions.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if user.uid.as_raw() == euid && user.gid.as_raw() == egid {
        return Ok(None);
    }
    if euid != 0 {
        return Err(error(
            "switching users needs the agent to run as root".into(),
        ));
    }
    let c_name = CString::new(name.as_bytes()).map_err(|_| error("name contains NUL".into()))?;
    let groups = nix::unistd::getgrouplist(&c_name, user.gid)
        .map_err(|e| error(format!("cannot list the user's groups: {e}")))?;
    if groups.len() > MAX_SUPPLEMENTARY_GROUPS {
        return Err(error(format!(
            "more than {MAX_SUPPLEMENTARY_GROUPS} groups"
        )));
    }
    Ok(Some(Identity {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: groups.into_iter().map(Gid::as_raw).collect(),
    }))
}

/// Creates the sandbox and opens its `stdout` and `stderr` files for appending (a relaunch in
/// the same sandbox keeps earlier output). When the container runs as another user, the
/// sandbox and the two files are handed to that user.
pub(super) fn prepare_sandbox(
    config: &ContainerConfig,
    identity: Option<&Identity>,
) -> Result<(File, File), IsolationError> {
    let sandbox = &config.sandbox;
    let error = |path: &Path, source: io::Error| IsolationError::Sandbox {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(sandbox).map_err(|e| error(sandbox, e))?;
    let open = |name: &str| {
        let path = sandbox.join(name);
        // O_NOFOLLOW: a task that replaced the file with a symlink must not make the agent
        // (possibly root) append to whatever the link points at.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| error(&path, e))?;
        Ok::<_, IsolationError>((file, path))
    };
    let (stdout, stdout_path) = open("stdout")?;
    let (stderr, stderr_path) = open("stderr")?;
    if let Some(identity) = identity {
        for path in [sandbox.as_path(), &stdout_path, &stderr_path] {
            std::os::unix::fs::lchown(path, Some(identity.uid), Some(identity.gid))
                .map_err(|e| error(path, e))?;
        }
    }
    Ok((stdout, stderr))
}

/// Forks and execs the container's main process. On success the child runs `argv` in a new
/// session; the caller owns reaping it.
pub(super) fn spawn(
    config: &ContainerConfig,
    identity: Option<Identity>,
    (stdout, stderr): (File, File),
    nofile_limit: u64,
) -> Result<Child, IsolationError> {
    let program = &config.argv[0];
    let mut command = Command::new(program);
    command
        .args(&config.argv[1..])
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&config.sandbox)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if !config.env.iter().any(|(key, _)| key == "PATH") {
        command.env("PATH", DEFAULT_PATH);
    }
    let setup = ChildSetup {
        nofile: nofile_rlimit(nofile_limit),
        identity,
    };
    // SAFETY: `ChildSetup::apply` only makes async-signal-safe syscalls on data prepared here.
    unsafe {
        command.pre_exec(move || setup.apply());
    }
    command.spawn().map_err(|source| IsolationError::Spawn {
        id: config.id.clone(),
        program: program.clone(),
        source,
    })
}

/// The open-files limit for containers: `wanted`, capped by the agent's hard limit (raising
/// the hard limit would need privileges and buys nothing).
fn nofile_rlimit(wanted: u64) -> Option<libc::rlimit> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot read RLIMIT_NOFILE; leaving it as is");
        return None;
    }
    Some(libc::rlimit {
        rlim_cur: (wanted as libc::rlim_t).min(current.rlim_max),
        rlim_max: current.rlim_max,
    })
}

/// What the child does between fork and exec, prepared by the parent.
struct ChildSetup {
    nofile: Option<libc::rlimit>,
    identity: Option<Identity>,
}

impl ChildSetup {
    /// Runs in the forked child. Only raw syscalls: no allocation, no locks, no logging.
    /// `io::Error::last_os_error` does not allocate. An error makes `spawn` fail with it.
    fn apply(&self) -> io::Result<()> {
        // SAFETY (whole function): plain syscalls on memory owned by `self`.
        unsafe {
            // A new session makes us leader of a new process group (pgid == pid): that group is
            // what `kill` signals, and no terminal signals from the agent's session reach us.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Descriptors some library opened without O_CLOEXEC must not leak into tasks.
            // Best effort: older kernels lack close_range, and std's own error pipe is already
            // close-on-exec.
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if let Some(limit) = &self.nofile {
                if libc::setrlimit(libc::RLIMIT_NOFILE, limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(id) = &self.identity {
                // Groups first, then gid, then uid: after setuid we could no longer change them.
                if libc::setgroups(id.groups.len(), id.groups.as_ptr()) != 0
                    || libc::setgid(id.gid) != 0
                    || libc::setuid(id.uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}
