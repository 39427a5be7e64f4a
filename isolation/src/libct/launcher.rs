//! The launcher: one short-lived-then-waiting process per container that calls libcontainer.
//!
//! libcontainer forks and blocks, which is unsafe from the agent's multi-threaded runtime, so
//! the agent runs `<launcher> <container-dir>` (the hidden `agora launcher` subcommand or the
//! `agora-launcher` binary) in a new session. The launcher, single-threaded:
//! 1. creates and starts the container from `<dir>/bundle` (state under `<dir>/state`);
//! 2. prints `pid <init-pid>` (or `error <message>`) on stdout, which the agent reads;
//! 3. stays as the container's parent, reaps its init process, reads the OOM counter and the
//!    final usage from the cgroup, and writes them to `<dir>/exit.json`;
//! 4. deletes the container (its cgroups) and exits.
//!
//! It survives an agent restart (own session, signals ignored), so a recovered agent still
//! learns the real exit status from `exit.json`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};

use super::cgroup::{CgroupPaths, CgroupVersion};

/// What the agent tells the launcher besides the bundle (`<dir>/launch.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LaunchFile {
    pub id: String,
    pub sandbox: PathBuf,
    pub cgroup_version: CgroupVersion,
    pub cgroup_root: String,
    /// The container's cgroup below the root (prefix + id).
    pub cgroup_name: String,
}

/// What the launcher reports when the container is over (`<dir>/exit.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitFile {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_kills: u64,
    pub cpu_time_ns: u64,
    pub mem_peak_bytes: u64,
    /// Set when the container's cgroups could not be removed.
    pub cleanup_error: Option<String>,
}

pub(crate) const LAUNCH_FILE: &str = "launch.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const BUNDLE_DIR: &str = "bundle";
pub(crate) const STATE_DIR: &str = "state";

/// Entry point of the launcher process: `args` is `[container-dir]`. Returns the exit code.
/// Must be called before any other thread is started in the process.
pub fn launcher_main(args: &[String]) -> i32 {
    let [dir] = args else {
        eprintln!("usage: launcher CONTAINER_DIR");
        return 2;
    };
    // SAFETY: setting dispositions to SIG_IGN has no preconditions; the launcher must outlive
    // the agent's session and a closed stdout pipe.
    unsafe {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let dir = Path::new(dir);
    let launch: LaunchFile = match fs::read(dir.join(LAUNCH_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(l) => l,
        Err(e) => return report_error(&format!("cannot read {LAUNCH_FILE}: {e}")),
    };
    let mut container = match create_and_start(dir, &launch) {
        Ok(c) => c,
        Err(e) => {
            cleanup_failed(dir, &launch);
            return report_error(&e);
        }
    };
    let Some(init_pid) = container.pid().map(|p| p.as_raw()) else {
        let _ = container.delete(true);
        return report_error("libcontainer started the container but reports no pid");
    };
    println!("pid {init_pid}");
    let _ = std::io::stdout().flush();
    detach_stdout();
    let exit = supervise(init_pid, &launch, &mut container);
    write_exit_file(dir, &exit);
    let _ = fs::remove_dir_all(dir.join(STATE_DIR));
    0
}

fn report_error(message: &str) -> i32 {
    let one_line = message.replace('\n', " ");
    println!("error {one_line}");
    eprintln!("launcher: {one_line}");
    1
}

fn create_and_start(dir: &Path, launch: &LaunchFile) -> Result<Container, String> {
    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(launch.sandbox.join(name))
            .map_err(|e| format!("cannot open sandbox {name}: {e}"))
    };
    let stdin = File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let mut container = ContainerBuilder::new(launch.id.clone(), SyscallType::default())
        .with_root_path(dir.join(STATE_DIR))
        .map_err(|e| format!("state root: {e}"))?
        .with_stdin(stdin)
        .with_stdout(open("stdout")?)
        .with_stderr(open("stderr")?)
        .as_init(dir.join(BUNDLE_DIR))
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| format!("cannot create the container: {e}"))?;
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(format!("cannot start the container: {e}"));
    }
    Ok(container)
}

/// After a failed create, removes what libcontainer may have left (its state, the cgroups).
fn cleanup_failed(dir: &Path, launch: &LaunchFile) {
    if let Ok(mut c) = Container::load(dir.join(STATE_DIR).join(&launch.id)) {
        let _ = c.delete(true);
    }
    let paths = CgroupPaths::new(
        launch.cgroup_version,
        &launch.cgroup_root,
        &launch.cgroup_name,
    );
    for d in paths.existing_dirs() {
        let _ = fs::remove_dir(d);
    }
}

/// The agent is not listening any more once it has the pid; later writes must not fail.
fn detach_stdout() {
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto our own stdout descriptor.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

/// Reaps the init process, then collects what the cgroup knows and deletes the container.
fn supervise(init_pid: i32, launch: &LaunchFile, container: &mut Container) -> ExitFile {
    let status = wait_for(init_pid);
    let cgroup = CgroupPaths::new(
        launch.cgroup_version,
        &launch.cgroup_root,
        &launch.cgroup_name,
    );
    let mut exit = ExitFile::default();
    match status {
        Some(s) if libc::WIFEXITED(s) => exit.exit_code = Some(libc::WEXITSTATUS(s)),
        Some(s) if libc::WIFSIGNALED(s) => exit.signal = Some(libc::WTERMSIG(s)),
        _ => {}
    }
    exit.oom_kills = cgroup.oom_kills().unwrap_or(0);
    exit.cpu_time_ns = cgroup.cpu_time_ns().unwrap_or(0);
    exit.mem_peak_bytes = cgroup.memory_bytes().map(|(_, peak)| peak).unwrap_or(0);
    exit.cleanup_error = delete_with_retries(container).err();
    if exit.cleanup_error.is_some() {
        // libcontainer could not delete (e.g. its state dir is gone): the container's processes
        // are dead with its init, so its cgroups are empty and plain rmdir removes them.
        for _ in 0..50 {
            let dirs = cgroup.existing_dirs();
            if dirs.is_empty() {
                break;
            }
            for d in dirs {
                let _ = fs::remove_dir(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    exit
}

fn wait_for(pid: i32) -> Option<libc::c_int> {
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid on our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Some(status);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// The kernel may take a moment to empty a cgroup after its last process died.
fn delete_with_retries(container: &mut Container) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..20u64 {
        match container.delete(true) {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(10 * (attempt + 1).min(10)));
    }
    Err(format!("cannot delete the container: {last}"))
}

/// Written to a temporary name, synced, then renamed: the agent never reads half a file.
fn write_exit_file(dir: &Path, exit: &ExitFile) {
    let tmp = dir.join("exit.json.tmp");
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(exit).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(EXIT_FILE))
    })();
    if let Err(e) = result {
        eprintln!("launcher: cannot write {EXIT_FILE}: {e}");
    }
}
