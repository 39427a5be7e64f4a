//! One posix container: its identity, what is known about its main process, and the only
//! places that send signals.
//!
//! Signal safety rests on one rule: a process group is signalled only while its leader (the
//! container's main process, pid == pgid) is known to still exist. For a child of this process
//! that is guaranteed by reaping it only under the state lock after setting `leader_gone`: an
//! unreaped leader (even a zombie) keeps its pid, and so its group id, from being recycled.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::Signal;
use tokio::sync::watch;

use crate::procfs;
use crate::{
    ContainerCheckpoint, IsolationError, Limits, Termination, Usage, REASON_EXIT_STATUS_UNKNOWN,
    REASON_KILLED,
};

/// How this process is related to the container's main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// We forked it: we reap it and get its exit status.
    Child,
    /// Started by an earlier agent process: we can only watch `/proc` for it to disappear.
    Recovered,
}

/// Mutable facts about the main process, guarded by one lock (see the module comment).
#[derive(Debug, Default)]
pub(super) struct ProcState {
    /// The main process is gone (reaped, or vanished for a recovered container). Its pid and
    /// group id may now be recycled, so nothing is signalled through them any more.
    pub leader_gone: bool,
    /// agora sent it a termination signal.
    pub killed: bool,
    /// Highest CPU time seen (samples of a shrinking group could otherwise go backwards).
    pub cpu_time_ms: u64,
    pub peak_rss_bytes: u64,
}

pub(super) struct Container {
    pub id: String,
    /// Main process id; also its process group and session id (it called `setsid`).
    pub pid: i32,
    pub sandbox: PathBuf,
    pub limits: Limits,
    pub start_ticks: u64,
    pub origin: Origin,
    state: Mutex<ProcState>,
    exit: watch::Sender<Option<Termination>>,
}

impl Container {
    pub fn new(checkpoint: ContainerCheckpoint, origin: Origin) -> Arc<Self> {
        let (exit, _) = watch::channel(None);
        Arc::new(Container {
            id: checkpoint.id,
            pid: checkpoint.pid,
            sandbox: checkpoint.sandbox,
            limits: checkpoint.limits,
            start_ticks: checkpoint.start_ticks,
            origin,
            state: Mutex::new(ProcState::default()),
            exit,
        })
    }

    pub fn checkpoint(&self) -> ContainerCheckpoint {
        ContainerCheckpoint {
            id: self.id.clone(),
            pid: self.pid,
            sandbox: self.sandbox.clone(),
            limits: self.limits,
            start_ticks: self.start_ticks,
        }
    }

    /// The state lock. A panic while holding it cannot leave the plain-data state
    /// inconsistent, so a poisoned lock is simply taken over.
    pub fn lock_state(&self) -> MutexGuard<'_, ProcState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Records how the container ended and wakes every `wait`er. Only the first call counts.
    pub fn publish(&self, termination: Termination) {
        self.exit.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(termination);
            true
        });
    }

    /// Resolves once the termination is published.
    pub async fn wait_exit(&self) -> Result<Termination, IsolationError> {
        let mut rx = self.exit.subscribe();
        let result = rx.wait_for(|t| t.is_some()).await;
        match result.ok().and_then(|t| t.clone()) {
            Some(termination) => Ok(termination),
            // Unreachable while `self` holds the sender; kept as an error, not a panic.
            None => Err(IsolationError::Lost {
                id: self.id.clone(),
                reason: "exit notification channel closed".into(),
            }),
        }
    }

    /// Sends `signal` to the container's process group if its main process is still there.
    /// Returns false (and sends nothing) when the main process is already gone.
    pub fn signal_group(&self, signal: Signal, as_kill: bool) -> Result<bool, IsolationError> {
        let mut state = self.lock_state();
        if state.leader_gone || !self.leader_present() {
            return Ok(false);
        }
        if as_kill {
            state.killed = true;
        }
        tracing::debug!(id = %self.id, pgid = self.pid, signal = signal.as_str(), "signalling container");
        kill_group(self.pid, signal).map_err(|source| IsolationError::Signal {
            id: self.id.clone(),
            source,
        })?;
        Ok(true)
    }

    /// Whether the group id still belongs to this container. A child is pinned until we reap it
    /// (checked by the caller through `leader_gone`); a recovered process is re-identified by
    /// its start time. (For a recovered process the check and the signal are not atomic; the
    /// pid would have to be recycled in between, which the start-time check makes unlikely.)
    fn leader_present(&self) -> bool {
        match self.origin {
            Origin::Child => true,
            Origin::Recovered => is_same_leader(self.pid, self.start_ticks),
        }
    }

    /// Usage now, or the last figures once the main process is gone.
    pub fn usage(&self) -> Result<Usage, IsolationError> {
        let mut state = self.lock_state();
        let mut rss_bytes = 0;
        if !state.leader_gone && self.leader_present() {
            let sample = procfs::sample_group(self.pid).map_err(|e| IsolationError::Usage {
                id: self.id.clone(),
                reason: format!("cannot scan /proc: {e}"),
            })?;
            rss_bytes = sample.rss_bytes;
            state.cpu_time_ms = state.cpu_time_ms.max(sample.cpu_time_ms);
            state.peak_rss_bytes = state
                .peak_rss_bytes
                .max(sample.rss_bytes)
                .max(sample.max_hwm_bytes);
        }
        Ok(Usage {
            cpu_time_ms: state.cpu_time_ms,
            mem_rss_bytes: rss_bytes,
            mem_peak_bytes: state.peak_rss_bytes,
            limits: self.limits,
        })
    }
}

/// True when `pid` is still the session and group leader that started at `start_ticks`, i.e.
/// a live main process of a container (not recycled, not a zombie).
pub(super) fn is_same_leader(pid: i32, start_ticks: u64) -> bool {
    match procfs::read_stat(pid) {
        Ok(stat) => {
            stat.start_ticks == start_ticks
                && stat.pgrp == pid
                && stat.session == pid
                && !stat.is_zombie()
        }
        Err(_) => false,
    }
}

/// `kill(-pgid, signal)`, refusing the groups that can never be a container's: pgid <= 1
/// (`kill(-1)` would signal every process) and our own group. A group that no longer exists is
/// not an error.
pub(super) fn kill_group(pgid: i32, signal: Signal) -> io::Result<()> {
    // SAFETY: getpgrp has no preconditions.
    let own_group = unsafe { libc::getpgrp() };
    if pgid <= 1 || pgid == own_group {
        return Err(refused("process group", pgid));
    }
    // SAFETY: plain syscall; the target was checked above.
    if unsafe { libc::kill(-pgid, signal as libc::c_int) } == 0 {
        return Ok(());
    }
    ignore_vanished(io::Error::last_os_error())
}

/// `kill(pid, signal)` for one process, refusing pid <= 1 and ourselves.
pub(super) fn kill_process(pid: i32, signal: Signal) -> io::Result<()> {
    if pid <= 1 || pid == std::process::id() as i32 {
        return Err(refused("process", pid));
    }
    // SAFETY: plain syscall; the target was checked above.
    if unsafe { libc::kill(pid, signal as libc::c_int) } == 0 {
        return Ok(());
    }
    ignore_vanished(io::Error::last_os_error())
}

fn ignore_vanished(error: io::Error) -> io::Result<()> {
    if error.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(error)
    }
}

fn refused(what: &str, id: i32) -> io::Error {
    tracing::error!(what, id, "refusing to signal a target agora did not start");
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("refusing to signal {what} {id}"),
    )
}

/// SIGKILLs what is left of a group whose leader is gone and cannot pin the group id any more
/// (a recovered container). Members keep the id from being recycled, so a group without a
/// leader is still ours; a group *with* a leader other than ours means the id was recycled by
/// an unrelated session, which is left alone. Each process is also checked to be in our session
/// and younger than our leader. Returns how many processes were signalled.
pub(super) fn kill_leaderless_group(pgid: i32, leader_start_ticks: u64) -> usize {
    let members = match procfs::group_members(pgid) {
        Ok(members) => members,
        Err(e) => {
            tracing::warn!(pgid, error = %e, "cannot scan /proc for leftover processes");
            return 0;
        }
    };
    if members
        .iter()
        .any(|m| m.pid == pgid && m.start_ticks != leader_start_ticks)
    {
        return 0;
    }
    let mut killed = 0;
    for member in members {
        let ours = member.session == pgid && member.start_ticks >= leader_start_ticks;
        if member.pid != pgid && ours && !member.is_zombie() {
            match kill_process(member.pid, Signal::SIGKILL) {
                Ok(()) => killed += 1,
                Err(e) => {
                    tracing::warn!(pid = member.pid, error = %e, "cannot kill leftover process")
                }
            }
        }
    }
    killed
}

/// The termination of a reaped child from its `wait` status.
pub(super) fn termination_from_status(status: libc::c_int, killed: bool) -> Termination {
    let reason = killed.then(|| REASON_KILLED.to_string());
    let prefix = if killed { "killed by agora; " } else { "" };
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        Termination {
            exit_code: Some(code),
            signal: None,
            reason,
            message: format!("{prefix}exited with code {code}"),
        }
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        let name = Signal::try_from(signal)
            .map(Signal::as_str)
            .unwrap_or("unknown");
        Termination {
            exit_code: None,
            signal: Some(signal),
            reason,
            message: format!("{prefix}terminated by signal {signal} ({name})"),
        }
    } else {
        unknown_termination(killed, &format!("unexpected wait status {status:#x}"))
    }
}

/// The termination of a container whose exit status could not be collected.
pub(super) fn unknown_termination(killed: bool, why: &str) -> Termination {
    let reason = if killed {
        REASON_KILLED
    } else {
        REASON_EXIT_STATUS_UNKNOWN
    };
    Termination {
        exit_code: None,
        signal: None,
        reason: Some(reason.to_string()),
        message: format!("exit status unknown: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_signals_init_everyone_or_ourselves() {
        for pgid in [-5, 0, 1] {
            assert!(kill_group(pgid, Signal::SIGTERM).is_err());
            assert!(kill_process(pgid, Signal::SIGTERM).is_err());
        }
        // SAFETY: getpgrp has no preconditions.
        let own_group = unsafe { libc::getpgrp() };
        assert!(kill_group(own_group, Signal::SIGTERM).is_err());
        assert!(kill_process(std::process::id() as i32, Signal::SIGTERM).is_err());
    }

    #[test]
    fn statuses_become_terminations() {
        let exited = termination_from_status(3 << 8, false);
        assert_eq!((exited.exit_code, exited.signal), (Some(3), None));
        assert_eq!(exited.reason, None);
        assert_eq!(exited.message, "exited with code 3");

        let signalled = termination_from_status(libc::SIGKILL, true);
        assert_eq!((signalled.exit_code, signalled.signal), (None, Some(9)));
        assert_eq!(signalled.reason.as_deref(), Some(REASON_KILLED));
        assert!(
            signalled.message.contains("SIGKILL"),
            "{}",
            signalled.message
        );

        let unknown = unknown_termination(false, "gone");
        assert_eq!(unknown.reason.as_deref(), Some(REASON_EXIT_STATUS_UNKNOWN));
    }
}
