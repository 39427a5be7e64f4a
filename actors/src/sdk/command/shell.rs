//! The IO half of the command executor: child processes, process groups, signals.

use super::{CommandExecutor, CommandExecutorConfig, KillSignal, ProcAction, ProcExit, SpawnError};
use crate::ids::TaskId;
use crate::messages::CommandInfo;
use crate::sdk::executor::{ExecutorDriver, ExecutorDriverOptions, ExecutorEnv, WithExecutor};
use crate::sdk::SdkError;
use crate::transport::Transport;
use actix::Addr;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::rc::Rc;
use std::sync::Arc;
use tokio::process::Command;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

type Driver = Addr<ExecutorDriver<CommandExecutor>>;
/// Live tasks' process group ids. Shared by the supervisor and the reaping tasks, all on the
/// actix system's single thread.
type Groups = Rc<RefCell<BTreeMap<TaskId, i32>>>;

/// Entry point of `agora executor`: reads the environment the agent set, builds an actix system
/// and runs the command executor in it until it ends. Returns the process exit code (0 after a
/// normal shutdown, 1 when the agent could not be reached in time or refused the executor).
/// `make_transport` is called inside the system, since transports spawn tasks on it.
pub fn run_command_executor<F>(make_transport: F) -> Result<i32, SdkError>
where
    F: FnOnce() -> Arc<dyn Transport>,
{
    let env = ExecutorEnv::from_env()?;
    info!(executor = %env.executor_id, framework = %env.framework_id, agent = %env.agent_endpoint,
        sandbox = %env.sandbox.display(), "agora command executor starting");
    let system = actix::System::new();
    system.block_on(async move {
        let transport = make_transport();
        serve_command_executor(env, transport, true).await
    })
}

/// Runs the command executor inside the current actix system until it ends; returns its exit
/// code. With `handle_sigterm`, a SIGTERM to this process is treated like `ShutdownExecutor`
/// (kill the tasks, then exit) — only for a process of its own, since it takes over the
/// process's SIGTERM. Task processes still alive when the executor ends are SIGKILLed: nothing
/// else would ever reap them.
pub async fn serve_command_executor(
    env: ExecutorEnv,
    transport: Arc<dyn Transport>,
    handle_sigterm: bool,
) -> Result<i32, SdkError> {
    let config = CommandExecutorConfig {
        sandbox: Some(env.sandbox.clone()),
        ..CommandExecutorConfig::default()
    };
    // Unbounded is safe here: the core emits at most three actions per task and caps its tasks.
    let (tx, rx) = mpsc::unbounded_channel();
    let after_step = move |e: &mut CommandExecutor| {
        for action in e.take_proc_actions() {
            if tx.send(action).is_err() {
                warn!("the process supervisor is gone; dropping process work");
            }
        }
    };
    let options = ExecutorDriverOptions {
        after_step: Some(Box::new(after_step)),
        ..ExecutorDriverOptions::default()
    };
    let executor = CommandExecutor::new(config);
    let (addr, exit) = ExecutorDriver::start_with(transport, &env, executor, options);
    let groups: Groups = Rc::default();
    actix::spawn(supervise(rx, addr.clone(), groups.clone()));
    if handle_sigterm {
        actix::spawn(forward_sigterm(addr, env.shutdown_grace_ms));
    }
    let code = exit.await;
    kill_leftovers(&groups);
    code
}

async fn supervise(mut rx: mpsc::UnboundedReceiver<ProcAction>, addr: Driver, groups: Groups) {
    while let Some(action) = rx.recv().await {
        match action {
            ProcAction::Spawn {
                task_id,
                command,
                env,
                cwd,
            } => spawn_task(task_id, &command, &env, cwd.as_deref(), &addr, &groups),
            ProcAction::Signal { task_id, signal } => signal_task(&task_id, signal, &groups),
        }
    }
    debug!("process supervisor done");
}

fn build_command(command: &CommandInfo, env: &[(String, String)], cwd: Option<&Path>) -> Command {
    let mut cmd = if command.shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(&command.value);
        c
    } else {
        let mut c = Command::new(&command.value);
        if let Some((arg0, rest)) = command.arguments.split_first() {
            c.arg0(arg0).args(rest);
        }
        c
    };
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    if std::env::var("AGORA_TASK_NETWORK").as_deref() == Ok("isolated") {
        // SAFETY: `isolate_network` makes only async-signal-safe syscalls (no allocation).
        unsafe {
            cmd.pre_exec(isolate_network);
        }
    }
    // Own process group, so a kill reaches everything the task started (pipelines, children).
    // stdout/stderr are inherited: the agent points the executor's at the sandbox files.
    cmd.process_group(0)
        .stdin(Stdio::null())
        .kill_on_drop(false);
    cmd
}

/// `CAP_NET_ADMIN` and `CAP_SYS_ADMIN` (linux/capability.h): what creating a network
/// namespace and bringing its loopback up need.
const CAP_NET_ADMIN: libc::c_ulong = 12;
const CAP_SYS_ADMIN: libc::c_ulong = 21;

/// In the task's child, before exec: a network namespace of its own with only loopback, up.
/// Then `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` (which the container granted the executor for
/// this) leave the task's bounding set for good, so the task cannot use them.
fn isolate_network() -> std::io::Result<()> {
    let err = std::io::Error::last_os_error;
    // SAFETY: plain syscalls on local, initialised data.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return Err(err());
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(err());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req);
        }
        let saved = err();
        libc::close(fd);
        if rc != 0 {
            return Err(saved);
        }
        for cap in [CAP_SYS_ADMIN, CAP_NET_ADMIN] {
            // EINVAL: the kernel does not know the capability; nothing to drop.
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0
                && *libc::__errno_location() != libc::EINVAL
            {
                return Err(err());
            }
        }
    }
    Ok(())
}

fn spawn_task(
    task_id: TaskId,
    command: &CommandInfo,
    env: &[(String, String)],
    cwd: Option<&Path>,
    addr: &Driver,
    groups: &Groups,
) {
    if let Some(dir) = cwd.filter(|d| !d.is_dir()) {
        // Checked first: a missing cwd would otherwise look like a missing program.
        let err = SpawnError {
            not_found: false,
            message: format!("sandbox {} is not a directory", dir.display()),
        };
        addr.do_send(WithExecutor::new(move |e: &mut CommandExecutor, ctx| {
            e.spawn_failed(ctx, &task_id, err)
        }));
        return;
    }
    let mut child = match build_command(command, env, cwd).spawn() {
        Ok(child) => child,
        Err(e) => {
            let err = SpawnError {
                not_found: e.kind() == std::io::ErrorKind::NotFound,
                message: format!("cannot run {:?}: {e}", command.value),
            };
            addr.do_send(WithExecutor::new(move |e: &mut CommandExecutor, ctx| {
                e.spawn_failed(ctx, &task_id, err)
            }));
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    groups.borrow_mut().insert(task_id.clone(), pid as i32);
    let id = task_id.clone();
    addr.do_send(WithExecutor::new(move |e: &mut CommandExecutor, ctx| {
        e.spawned(ctx, &id, pid)
    }));
    let (addr, groups) = (addr.clone(), groups.clone());
    actix::spawn(async move {
        let exit = match child.wait().await {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(c), _) => ProcExit::Code(c),
                (None, Some(s)) => ProcExit::Signal(s),
                (None, None) => ProcExit::Unknown(format!("{status}")),
            },
            Err(e) => ProcExit::Unknown(e.to_string()),
        };
        groups.borrow_mut().remove(&task_id);
        addr.do_send(WithExecutor::new(move |e: &mut CommandExecutor, ctx| {
            e.exited(ctx, &task_id, exit)
        }));
    });
}

fn signal_task(task_id: &TaskId, signal: KillSignal, groups: &Groups) {
    let Some(pgid) = groups.borrow().get(task_id).copied() else {
        debug!(task = %task_id, ?signal, "no live process to signal");
        return;
    };
    let sig = match signal {
        KillSignal::Term => Signal::SIGTERM,
        KillSignal::Kill => Signal::SIGKILL,
    };
    if pgid <= 1 {
        // Never signal group 0 (our own) or 1: the pid was not known.
        error!(task = %task_id, pgid, "refusing to signal a bogus process group");
        return;
    }
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) => info!(task = %task_id, pgid, signal = %sig, "signalled the task"),
        Err(nix::errno::Errno::ESRCH) => debug!(task = %task_id, "task process group already gone"),
        Err(e) => warn!(task = %task_id, pgid, error = %e, "could not signal the task"),
    }
}

fn kill_leftovers(groups: &Groups) {
    for (task_id, pgid) in groups.borrow().iter() {
        warn!(task = %task_id, pgid, "the executor is ending; killing a task still alive");
        signal_task(task_id, KillSignal::Kill, groups);
    }
}

async fn forward_sigterm(addr: Driver, grace_ms: u64) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGTERM; it will end the executor abruptly");
            return;
        }
    };
    if term.recv().await.is_some() {
        info!(grace_ms, "SIGTERM: shutting the executor down");
        addr.do_send(WithExecutor::new(move |e: &mut CommandExecutor, ctx| {
            crate::sdk::Executor::shutdown(e, ctx, grace_ms)
        }));
    }
}
