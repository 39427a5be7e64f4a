//! One small thread per container that notices when its main process ends, cleans up what is
//! left of its group, and publishes the termination.
//!
//! A dedicated blocking thread (rather than `tokio::process`) keeps reaping independent of
//! which runtime or actix arbiter called `launch`, and lets us look at the exit without reaping
//! (`WNOWAIT`), so the group can be cleaned up while the zombie leader still pins its id.

use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::container::{
    is_same_leader, kill_group, kill_leaderless_group, termination_from_status,
    unknown_termination, Container,
};

/// Stack of a watcher thread; they only make a few syscalls and log.
const WATCHER_STACK_BYTES: usize = 256 * 1024;

/// Starts the thread that reaps a container we forked.
pub(super) fn spawn_child_watcher(container: Arc<Container>) -> io::Result<()> {
    spawn_named(container, watch_child)
}

/// Starts the thread that polls `/proc` for a recovered container's main process to vanish.
pub(super) fn spawn_recovered_watcher(container: Arc<Container>, poll: Duration) -> io::Result<()> {
    spawn_named(container, move |c| watch_recovered(c, poll))
}

fn spawn_named(
    container: Arc<Container>,
    body: impl FnOnce(&Container) + Send + 'static,
) -> io::Result<()> {
    thread::Builder::new()
        .name(format!("wait-{}", container.id))
        .stack_size(WATCHER_STACK_BYTES)
        .spawn(move || {
            let guard = PublishOnUnwind(container);
            body(&guard.0);
        })
        .map(drop)
}

/// Makes sure `wait`ers are woken even if a watcher panics.
struct PublishOnUnwind(Arc<Container>);

impl Drop for PublishOnUnwind {
    fn drop(&mut self) {
        if !self.0.has_exited() {
            tracing::error!(id = %self.0.id, "container watcher stopped unexpectedly");
            let killed = {
                let mut state = self.0.lock_state();
                state.leader_gone = true;
                state.killed
            };
            self.0
                .publish(unknown_termination(killed, "agora's watcher thread failed"));
        }
    }
}

fn watch_child(container: &Container) {
    let pid = container.pid;
    let exited = wait_without_reaping(pid);
    let termination = {
        let mut state = container.lock_state();
        let termination = match exited {
            Ok(()) => {
                // The leader is a zombie: its pid pins the group id, so the group can be
                // signalled safely. Whatever it left behind (tasks, daemons that did not leave
                // the group) dies with it rather than outliving the container.
                if let Err(e) = kill_group(pid, Signal::SIGKILL) {
                    tracing::warn!(id = %container.id, error = %e, "cannot kill leftover processes");
                }
                match reap(pid) {
                    Ok((status, rusage)) => {
                        state.cpu_time_ms = state.cpu_time_ms.max(cpu_time_ms(&rusage));
                        // ru_maxrss is in KiB on Linux.
                        let peak = (rusage.ru_maxrss.max(0) as u64).saturating_mul(1024);
                        state.peak_rss_bytes = state.peak_rss_bytes.max(peak);
                        termination_from_status(status, state.killed)
                    }
                    Err(e) => unknown_termination(state.killed, &format!("cannot reap: {e}")),
                }
            }
            // ECHILD: something else in this process reaped our child (a `waitpid(-1)`).
            Err(e) => unknown_termination(state.killed, &format!("cannot wait: {e}")),
        };
        state.leader_gone = true;
        termination
    };
    tracing::info!(id = %container.id, pid, message = %termination.message, "container exited");
    container.publish(termination);
}

fn watch_recovered(container: &Container, poll: Duration) {
    while is_same_leader(container.pid, container.start_ticks) {
        thread::sleep(poll);
    }
    let termination = {
        let mut state = container.lock_state();
        state.leader_gone = true;
        let leftovers = kill_leaderless_group(container.pid, container.start_ticks);
        if leftovers > 0 {
            tracing::info!(id = %container.id, leftovers, "killed leftover processes");
        }
        unknown_termination(
            state.killed,
            "the container was recovered after an agent restart, so its exit status is lost",
        )
    };
    tracing::info!(id = %container.id, pid = container.pid, "recovered container exited");
    container.publish(termination);
}

/// Blocks until child `pid` has exited, leaving it a zombie (`WNOWAIT`).
fn wait_without_reaping(pid: i32) -> io::Result<()> {
    loop {
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: `info` is a valid, writable siginfo_t; the call only writes to it.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                info.as_mut_ptr(),
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Reaps child `pid`, returning its wait status and resource usage.
pub(super) fn reap(pid: i32) -> io::Result<(libc::c_int, libc::rusage)> {
    loop {
        let mut status: libc::c_int = 0;
        let mut rusage = MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: both out-pointers are valid and writable.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, rusage.as_mut_ptr()) };
        if rc == pid {
            // SAFETY: zero is a valid rusage and wait4 filled it in on success.
            return Ok((status, unsafe { rusage.assume_init() }));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

fn cpu_time_ms(rusage: &libc::rusage) -> u64 {
    let ms =
        |tv: &libc::timeval| (tv.tv_sec.max(0) as u64) * 1000 + (tv.tv_usec.max(0) as u64) / 1000;
    ms(&rusage.ru_utime).saturating_add(ms(&rusage.ru_stime))
}
