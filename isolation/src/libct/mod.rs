//! The libcontainer containerizer: every container is an OCI container created by youki's
//! libcontainer, with cgroup limits (cpu shares + CFS quota, memory, pids; v1 or v2), its own
//! pid, mount, ipc and uts namespaces, the host's directories read-only and the sandbox
//! writable at `/sandbox`. Host networking.
//!
//! libcontainer runs in a launcher process per container (see [`launcher`]), never in the
//! agent. On disk, per container, under the state root:
//! `<root>/<id>/{launch.json, bundle/{config.json, rootfs/}, state/, shim.json, exit.json,
//! launcher.log}`. `shim.json` (launcher pid and start time, init pid) lets a restarted agent
//! find running containers; `exit.json` carries the exit status, the OOM counter and the
//! final usage even when the agent was down when the container ended.

pub(crate) mod cgroup;
pub(crate) mod launcher;
pub(crate) mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::cgroup::{CgroupPaths, CgroupVersion};
use self::launcher::{ExitFile, LaunchFile, BUNDLE_DIR, EXIT_FILE, LAUNCH_FILE};
use crate::procfs;
use crate::{
    validate_container_id, BoxFuture, ContainerCheckpoint, ContainerConfig, Containerizer,
    IsolationError, Launched, Limits, Recovered, Termination, Usage, REASON_EXIT_STATUS_UNKNOWN,
    REASON_KILLED,
};

/// `Termination::reason` of a container the kernel OOM-killed in its memory cgroup.
pub const REASON_MEMORY_LIMIT: &str = "memory limit";
const SHIM_FILE: &str = "shim.json";
const LAUNCHER_LOG: &str = "launcher.log";
/// Longest wait for the launcher to report the container's pid.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_KILL_GRACE: Duration = Duration::from_secs(15 * 60);
const KILL_CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a recovered container's launcher is checked for having exited.
const RECOVERY_POLL: Duration = Duration::from_millis(100);

/// Tunables of [`LibcontainerContainerizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibcontainerOptions {
    /// Directory for bundles and launcher state (e.g. `<work-dir>/containers`).
    pub state_root: PathBuf,
    /// Program and leading arguments of the launcher; the container dir is appended.
    pub launcher: Vec<String>,
    /// agora's cgroup root below every hierarchy: `agora...` (or `agora.../NAME`).
    pub cgroup_root: String,
    /// Put before the container id in its cgroup name: `<root>/<prefix><id>`. Container ids
    /// are unique per agent only, so agents sharing a host (tests) each use their own prefix.
    /// Flat names leave no per-agent directory behind. `[A-Za-z0-9_-]`, at most 32 bytes.
    pub cgroup_prefix: String,
    /// Most processes per container (the pids controller stops fork bombs).
    pub pids_limit: i64,
    pub max_containers: usize,
}

impl LibcontainerOptions {
    pub fn new(state_root: impl Into<PathBuf>, launcher: Vec<String>) -> Self {
        LibcontainerOptions {
            state_root: state_root.into(),
            launcher,
            cgroup_root: "agora".into(),
            cgroup_prefix: String::new(),
            pids_limit: 4096,
            max_containers: 1024,
        }
    }
}

/// What the agent side writes about a started launcher, for recovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShimFile {
    shim_pid: i32,
    shim_start_ticks: u64,
    init_pid: i32,
    init_start_ticks: u64,
    limits: Limits,
    sandbox: PathBuf,
}

struct Entry {
    id: String,
    dir: PathBuf,
    shim: ShimFile,
    cgroup: CgroupPaths,
    state: Mutex<EntryState>,
    exit: watch::Sender<Option<Termination>>,
}

#[derive(Default)]
struct EntryState {
    killed: bool,
    /// Final figures once the container is over.
    final_usage: Option<Usage>,
    cpu_time_ms: u64,
    peak_bytes: u64,
}

/// Containers created with youki's libcontainer; see the module documentation.
pub struct LibcontainerContainerizer {
    options: LibcontainerOptions,
    version: CgroupVersion,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    containers: BTreeMap<String, Arc<Entry>>,
    reserved: BTreeSet<String>,
}

impl LibcontainerContainerizer {
    /// Checks that cgroups are usable and the options sane. Creates the state root.
    pub fn new(options: LibcontainerOptions) -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("the agent does not run as root".into());
        }
        cgroup::check_cgroup_root(&options.cgroup_root)?;
        let prefix = &options.cgroup_prefix;
        if prefix.len() > 32
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "cgroup prefix {prefix:?}: up to 32 of A-Z a-z 0-9 _ -"
            ));
        }
        if options.launcher.is_empty() || options.pids_limit < 1 {
            return Err("no launcher program, or a pids limit below 1".into());
        }
        let version = cgroup::detect_cgroups()?;
        fs::create_dir_all(&options.state_root)
            .map_err(|e| format!("cannot create {}: {e}", options.state_root.display()))?;
        Ok(LibcontainerContainerizer {
            options,
            version,
            registry: Mutex::new(Registry::default()),
        })
    }

    pub fn cgroup_version(&self) -> CgroupVersion {
        self.version
    }

    /// SIGKILLs the processes of every running container without waiting (agent shutdown
    /// when containers must not outlive it, test cleanup). Returns how many were signalled.
    pub fn kill_all_now(&self) -> usize {
        let entries: Vec<_> = self.lock().containers.values().cloned().collect();
        entries
            .iter()
            .filter(|e| !e.has_exited())
            .map(|e| {
                e.lock().killed = true;
                kill_cgroup(&e.cgroup, libc::SIGKILL)
            })
            .sum()
    }

    fn cgroup_of(&self, id: &str) -> CgroupPaths {
        let name = format!("{}{id}", self.options.cgroup_prefix);
        CgroupPaths::new(self.version, &self.options.cgroup_root, &name)
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Entry>, IsolationError> {
        self.lock()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| IsolationError::NotFound(id.to_string()))
    }

    fn reserve(&self, id: &str) -> Result<(), IsolationError> {
        let mut r = self.lock();
        if r.containers.contains_key(id) || r.reserved.contains(id) {
            return Err(IsolationError::AlreadyExists(id.to_string()));
        }
        if r.containers.len() + r.reserved.len() >= self.options.max_containers {
            return Err(IsolationError::TooManyContainers {
                limit: self.options.max_containers,
            });
        }
        r.reserved.insert(id.to_string());
        Ok(())
    }

    fn commit(&self, id: &str, entry: Option<Arc<Entry>>) {
        let mut r = self.lock();
        r.reserved.remove(id);
        if let Some(entry) = entry {
            r.containers.insert(id.to_string(), entry);
        }
    }

    fn launch_inner(&self, config: ContainerConfig) -> Result<Launched, IsolationError> {
        config.validate()?;
        check_rootfs(&config)?;
        self.reserve(&config.id)?;
        let result = self.start(&config);
        match result {
            Ok(entry) => {
                let launched = Launched {
                    pid: entry.shim.init_pid,
                    sandbox: config.sandbox.clone(),
                };
                spawn_watcher(entry.clone(), true);
                self.commit(&config.id, Some(entry));
                tracing::info!(id = %config.id, pid = launched.pid, "container launched (libcontainer)");
                Ok(launched)
            }
            Err(e) => {
                self.commit(&config.id, None);
                Err(e)
            }
        }
    }

    /// Writes the bundle, runs the launcher and waits for the container's pid.
    fn start(&self, config: &ContainerConfig) -> Result<Arc<Entry>, IsolationError> {
        let id = &config.id;
        let dir = self.options.state_root.join(id);
        let lost = |reason: String| IsolationError::Lost {
            id: id.clone(),
            reason,
        };
        if dir.exists() {
            return Err(IsolationError::AlreadyExists(format!(
                "{id} (leftover {})",
                dir.display()
            )));
        }
        let user = resolve_user(config)?;
        prepare_sandbox(config, &user)?;
        let cgroup = self.cgroup_of(id);
        let io_weight = config.io_weight.filter(|_| {
            let have = cgroup::has_io_controller(self.version);
            if !have {
                tracing::info!(
                    id,
                    "no disk IO controller on this host; io weight not applied"
                );
            }
            have
        });
        let extra = BundleExtra { user, io_weight };
        if let Err(e) = write_bundle(&dir, config, &cgroup, &self.options, extra) {
            let _ = fs::remove_dir_all(&dir);
            return Err(lost(format!("cannot write its bundle: {e}")));
        }
        match run_launcher(&dir, &self.options.launcher) {
            Ok((shim_pid, init_pid)) => {
                let ticks = |pid| procfs::read_stat(pid).map(|s| s.start_ticks).unwrap_or(0);
                let shim = ShimFile {
                    shim_pid,
                    shim_start_ticks: ticks(shim_pid),
                    init_pid,
                    init_start_ticks: ticks(init_pid),
                    limits: config.limits,
                    sandbox: config.sandbox.clone(),
                };
                if let Err(e) = write_json(&dir.join(SHIM_FILE), &shim) {
                    tracing::warn!(id, error = %e, "cannot record the launcher; recovery will not find it");
                }
                Ok(Entry::new(id, dir, shim, cgroup))
            }
            Err(reason) => {
                let _ = fs::remove_dir_all(&dir);
                Err(IsolationError::Spawn {
                    id: id.clone(),
                    program: config.argv[0].clone(),
                    source: std::io::Error::other(reason),
                })
            }
        }
    }

    /// Reattaches to one container from its directory (see [`Containerizer::recover`]).
    fn recover_one(&self, id: &str) -> Result<Recovered, IsolationError> {
        validate_container_id(id)?;
        let dir = self.options.state_root.join(id);
        let lost = |reason: String| IsolationError::Lost {
            id: id.to_string(),
            reason,
        };
        let shim: ShimFile = read_json(&dir.join(SHIM_FILE))
            .map_err(|e| lost(format!("no launcher record: {e}")))?;
        self.reserve(id)?;
        let cgroup = self.cgroup_of(id);
        let entry = Entry::new(id, dir, shim, cgroup);
        let running = is_alive(entry.shim.shim_pid, entry.shim.shim_start_ticks);
        spawn_watcher(entry.clone(), false);
        let recovered = Recovered {
            id: id.to_string(),
            pid: entry.shim.init_pid,
            sandbox: entry.shim.sandbox.clone(),
            running,
        };
        self.commit(id, Some(entry));
        Ok(recovered)
    }

    /// Kills and removes containers on disk that the agent has no record of.
    fn destroy_orphans(&self, known: &BTreeSet<String>) {
        let Ok(entries) = fs::read_dir(&self.options.state_root) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let id = entry.file_name().to_string_lossy().into_owned();
            if known.contains(&id) || validate_container_id(&id).is_err() {
                continue;
            }
            tracing::warn!(id, "destroying a container the agent has no record of");
            let cgroup = self.cgroup_of(&id);
            kill_cgroup(&cgroup, libc::SIGKILL);
            remove_leftovers(&id, &entry.path(), &cgroup);
        }
    }
}

impl Entry {
    fn new(id: &str, dir: PathBuf, shim: ShimFile, cgroup: CgroupPaths) -> Arc<Self> {
        Arc::new(Entry {
            id: id.to_string(),
            dir,
            shim,
            cgroup,
            state: Mutex::new(EntryState::default()),
            exit: watch::channel(None).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    async fn wait_exit(&self) -> Result<Termination, IsolationError> {
        let mut rx = self.exit.subscribe();
        let t = rx
            .wait_for(|t| t.is_some())
            .await
            .ok()
            .and_then(|t| t.clone());
        t.ok_or_else(|| IsolationError::Lost {
            id: self.id.clone(),
            reason: "exit channel closed".into(),
        })
    }

    /// Called by the watcher once the launcher is gone.
    fn finish(&self) {
        let exit: Option<ExitFile> = read_json(&self.dir.join(EXIT_FILE)).ok();
        let mut state = self.lock();
        if exit.is_none() {
            // The launcher died without a report (killed, or the machine rebooted): make sure
            // nothing of the container is left running.
            kill_cgroup(&self.cgroup, libc::SIGKILL);
        }
        let termination = termination_of(exit.as_ref(), state.killed, self.shim.limits.mem_mb);
        let cpu_ms = exit
            .as_ref()
            .map(|e| e.cpu_time_ns / 1_000_000)
            .unwrap_or(0);
        let peak = exit.as_ref().map(|e| e.mem_peak_bytes).unwrap_or(0);
        state.final_usage = Some(Usage {
            cpu_time_ms: state.cpu_time_ms.max(cpu_ms),
            mem_rss_bytes: 0,
            mem_peak_bytes: state.peak_bytes.max(peak),
            limits: self.shim.limits,
        });
        if let Some(err) = exit.as_ref().and_then(|e| e.cleanup_error.clone()) {
            tracing::warn!(id = %self.id, error = %err, "the launcher could not clean up");
        }
        drop(state);
        tracing::info!(id = %self.id, message = %termination.message, "container exited");
        self.exit
            .send_if_modified(|slot| slot.replace(termination).is_none());
    }

    fn usage(&self) -> Result<Usage, IsolationError> {
        let mut state = self.lock();
        if let Some(u) = state.final_usage {
            return Ok(u);
        }
        let err = |e: std::io::Error| IsolationError::Usage {
            id: self.id.clone(),
            reason: e.to_string(),
        };
        let cpu_ms = self.cgroup.cpu_time_ns().map_err(err)? / 1_000_000;
        let (now, peak) = self.cgroup.memory_bytes().map_err(err)?;
        state.cpu_time_ms = state.cpu_time_ms.max(cpu_ms);
        state.peak_bytes = state.peak_bytes.max(peak).max(now);
        Ok(Usage {
            cpu_time_ms: state.cpu_time_ms,
            mem_rss_bytes: now,
            mem_peak_bytes: state.peak_bytes,
            limits: self.shim.limits,
        })
    }
}

/// Termination from the launcher's report. The OOM counter of the container's own memory
/// cgroup decides "memory limit": the kernel says so, nothing is guessed from the signal.
fn termination_of(exit: Option<&ExitFile>, killed: bool, mem_mb: u64) -> Termination {
    let Some(exit) = exit else {
        let reason = if killed {
            REASON_KILLED
        } else {
            REASON_EXIT_STATUS_UNKNOWN
        };
        return Termination {
            exit_code: None,
            signal: None,
            reason: Some(reason.into()),
            message: "exit status unknown: the container's launcher ended without a report".into(),
        };
    };
    let status = match (exit.exit_code, exit.signal) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("terminated by signal {sig}"),
        (None, None) => "ended with an unknown status".into(),
    };
    let (reason, message) = if exit.oom_kills > 0 {
        (
            Some(REASON_MEMORY_LIMIT),
            format!("over its memory limit of {mem_mb} MB: OOM-killed ({status})"),
        )
    } else if killed {
        (Some(REASON_KILLED), format!("killed by agora; {status}"))
    } else {
        (None, status)
    };
    Termination {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: reason.map(str::to_string),
        message,
    }
}

/// A container's operator-given rootfs must be an existing directory.
fn check_rootfs(config: &ContainerConfig) -> Result<(), IsolationError> {
    let Some(rootfs) = &config.rootfs else {
        return Ok(());
    };
    match fs::metadata(rootfs) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(IsolationError::InvalidConfig {
            id: config.id.clone(),
            reason: format!("rootfs {} is not a directory", rootfs.display()),
        }),
        Err(e) => Err(IsolationError::InvalidConfig {
            id: config.id.clone(),
            reason: format!("rootfs {}: {e}", rootfs.display()),
        }),
    }
}

/// uid, gid and groups of the container's processes (root unless `config.user` names another
/// user, which must exist on the host).
fn resolve_user(config: &ContainerConfig) -> Result<(u32, u32, Vec<u32>), IsolationError> {
    Ok(match crate::posix::resolve_identity(config)? {
        Some(identity) => identity.ids(),
        None => (0, 0, vec![]),
    })
}

/// Creates the sandbox (and its output files, which the launcher opens) owned by the
/// container's user.
fn prepare_sandbox(
    config: &ContainerConfig,
    user: &(u32, u32, Vec<u32>),
) -> Result<(), IsolationError> {
    let error = |path: &Path, source: std::io::Error| IsolationError::Sandbox {
        path: path.to_path_buf(),
        source,
    };
    fs::create_dir_all(&config.sandbox).map_err(|e| error(&config.sandbox, e))?;
    if user.0 == 0 {
        return Ok(());
    }
    for path in [
        config.sandbox.clone(),
        config.sandbox.join("stdout"),
        config.sandbox.join("stderr"),
    ] {
        if path != config.sandbox {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| error(&path, e))?;
        }
        std::os::unix::fs::lchown(&path, Some(user.0), Some(user.1))
            .map_err(|e| error(&path, e))?;
    }
    Ok(())
}

/// What the bundle needs besides the config and options.
struct BundleExtra {
    user: (u32, u32, Vec<u32>),
    io_weight: Option<u16>,
}

/// The executor program the agent runs, when the container would not see it at its host
/// path: absent from an operator's rootfs, or, in the host's, under a directory the container
/// gets its own of (`/tmp`: an agora built or unpacked there). It is then bind-mounted under
/// `CONTAINER_EXEC_DIR` and run from there.
fn executor_to_mount(config: &ContainerConfig) -> Option<PathBuf> {
    let exe = PathBuf::from(config.argv.first()?);
    if !exe.is_absolute() || !exe.is_file() {
        return None;
    }
    let rel = exe.strip_prefix("/").ok()?;
    let visible = match &config.rootfs {
        Some(root) => root.join(rel).exists(),
        None => !spec::hidden_from_container(rel),
    };
    (!visible).then_some(exe)
}

fn write_bundle(
    dir: &Path,
    config: &ContainerConfig,
    cgroup: &CgroupPaths,
    options: &LibcontainerOptions,
    extra: BundleExtra,
) -> std::io::Result<()> {
    let bundle = dir.join(BUNDLE_DIR);
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(&rootfs)?;
    let source_root = config.rootfs.clone().unwrap_or_else(|| PathBuf::from("/"));
    let host = spec::host_root_entries(&source_root, config.rootfs.is_some())?;
    let executor = executor_to_mount(config);
    for entry in &host {
        if let spec::HostEntry::Link(name, target) = entry {
            std::os::unix::fs::symlink(target, rootfs.join(name))?;
        }
    }
    let spec = spec::build_spec(&spec::SpecInput {
        config,
        rootfs: &rootfs,
        cgroup,
        host: &host,
        source_root: &source_root,
        executor: executor.as_deref(),
        pids_limit: options.pids_limit,
        nofile_limit: nofile_hard_limit().min(spec::NOFILE_LIMIT),
        user: extra.user,
        io_weight: extra.io_weight,
    });
    write_json(&bundle.join("config.json"), &spec)?;
    write_json(
        &dir.join(LAUNCH_FILE),
        &LaunchFile {
            id: config.id.clone(),
            sandbox: config.sandbox.clone(),
            cgroup_version: cgroup.version,
            cgroup_root: options.cgroup_root.clone(),
            cgroup_name: cgroup
                .relative
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
    )
}

/// Starts the launcher in its own session and reads its one-line answer.
/// Returns (launcher pid, container init pid).
fn run_launcher(dir: &Path, launcher: &[String]) -> Result<(i32, i32), String> {
    let log = fs::File::create(dir.join(LAUNCHER_LOG)).map_err(|e| format!("launcher log: {e}"))?;
    let mut command = Command::new(&launcher[0]);
    command
        .args(&launcher[1..])
        .arg(dir)
        .env_remove("RUST_LOG_STYLE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run the launcher {:?}: {e}", launcher[0]))?;
    let shim_pid = child.id() as i32;
    let line = child
        .stdout
        .take()
        .map(read_line_with_timeout)
        .unwrap_or_else(|| Err("no pipe".into()));
    let answer = line.and_then(|l| parse_answer(&l));
    match answer {
        Ok(init_pid) => {
            // The watcher thread reaps the launcher; `Child` must not.
            std::mem::forget(child);
            Ok((shim_pid, init_pid))
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(dir.join(LAUNCHER_LOG)).unwrap_or_default();
            let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            Err(if tail.is_empty() {
                e
            } else {
                format!("{e} (launcher log: {tail})")
            })
        }
    }
}

fn parse_answer(line: &str) -> Result<i32, String> {
    let line = line.trim();
    if let Some(pid) = line.strip_prefix("pid ") {
        return pid
            .parse()
            .ok()
            .filter(|p| *p > 1)
            .ok_or_else(|| format!("bad pid in {line:?}"));
    }
    Err(line
        .strip_prefix("error ")
        .map(str::to_string)
        .unwrap_or_else(|| {
            if line.is_empty() {
                "the launcher exited without an answer".into()
            } else {
                format!("unexpected launcher answer {line:?}")
            }
        }))
}

fn read_line_with_timeout(mut pipe: std::process::ChildStdout) -> Result<String, String> {
    let deadline = Instant::now() + LAUNCH_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the launcher did not answer within {} s",
                LAUNCH_TIMEOUT.as_secs()
            ));
        }
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if rc <= 0 {
            continue;
        }
        match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the launcher's answer: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// One thread per container: reaps our launcher child, or polls a recovered one.
fn spawn_watcher(entry: Arc<Entry>, is_child: bool) {
    let name = format!("lc-{}", &entry.id[..entry.id.len().min(12)]);
    let body = move || {
        if is_child {
            let mut status = 0;
            // SAFETY: waitpid on our own child, which nothing else reaps.
            while unsafe { libc::waitpid(entry.shim.shim_pid, &mut status, 0) } < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        } else {
            while is_alive(entry.shim.shim_pid, entry.shim.shim_start_ticks) {
                std::thread::sleep(RECOVERY_POLL);
            }
        }
        entry.finish();
    };
    if let Err(e) = std::thread::Builder::new()
        .name(name)
        .stack_size(256 * 1024)
        .spawn(body)
    {
        tracing::error!(error = %e, "cannot start a container watcher thread");
    }
}

/// The process still exists, is the one that started at `start_ticks`, and is not a zombie.
fn is_alive(pid: i32, start_ticks: u64) -> bool {
    procfs::read_stat(pid).is_ok_and(|s| s.start_ticks == start_ticks && !s.is_zombie())
}

/// Signals every process of the container's cgroup (only pids listed in agora's own cgroup).
fn kill_cgroup(cgroup: &CgroupPaths, signal: libc::c_int) -> usize {
    let own = std::process::id() as i32;
    let pids = cgroup.pids().unwrap_or_default();
    let mut sent = 0;
    for pid in pids.into_iter().filter(|p| *p > 1 && *p != own) {
        // SAFETY: plain kill of a process listed in the container's cgroup.
        if unsafe { libc::kill(pid, signal) } == 0 {
            sent += 1;
        }
    }
    sent
}

/// Removes a dead container's cgroups and directory. Refuses to delete a directory tree with
/// anything mounted below it.
fn remove_leftovers(id: &str, dir: &Path, cgroup: &CgroupPaths) {
    for _ in 0..50 {
        let dirs = cgroup.existing_dirs();
        if dirs.is_empty() {
            break;
        }
        for d in dirs {
            let _ = fs::remove_dir(d);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !cgroup.existing_dirs().is_empty() {
        tracing::warn!(id, "cgroups of the container could not be removed");
    }
    if has_mounts_below(dir) {
        tracing::error!(id, dir = %dir.display(), "something is mounted in the container dir; leaving it");
        return;
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(id, error = %e, "cannot remove the container dir");
    }
}

fn has_mounts_below(dir: &Path) -> bool {
    let prefix = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&prefix)))
        })
        .unwrap_or(true)
}

fn nofile_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_max
}

fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(tmp, path)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<T> {
    serde_json::from_slice(&fs::read(path)?).map_err(std::io::Error::other)
}

async fn kill_entry(entry: Arc<Entry>, grace: Duration) -> Result<(), IsolationError> {
    if entry.has_exited() {
        return Ok(());
    }
    entry.lock().killed = true;
    // Every process gets SIGTERM (the namespace's init ignores it unless it has a handler).
    kill_cgroup(&entry.cgroup, libc::SIGTERM);
    let grace = grace.min(MAX_KILL_GRACE);
    if tokio::time::timeout(grace, entry.wait_exit()).await.is_ok() {
        return Ok(());
    }
    let deadline = Instant::now() + KILL_CONFIRM_TIMEOUT;
    while Instant::now() < deadline {
        kill_cgroup(&entry.cgroup, libc::SIGKILL);
        if tokio::time::timeout(Duration::from_millis(200), entry.wait_exit())
            .await
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(IsolationError::KillTimeout {
        id: entry.id.clone(),
        waited_ms: KILL_CONFIRM_TIMEOUT.as_millis() as u64,
    })
}

use crate::error::logged;

impl Containerizer for LibcontainerContainerizer {
    fn name(&self) -> &'static str {
        "libcontainer"
    }

    fn blocking_launch(&self) -> bool {
        true
    }

    /// Removes agora's cgroup root if no container is left in it (rmdir refuses otherwise).
    fn agent_exiting(&self) {
        match cgroup::remove_cgroup_root(self.version, &self.options.cgroup_root) {
            Ok(()) => {
                tracing::info!(root = %self.options.cgroup_root, "removed the empty cgroup root")
            }
            Err(e) => {
                tracing::debug!(root = %self.options.cgroup_root, error = %e, "cgroup root kept (containers still in it)")
            }
        }
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
        Box::pin(async move { logged("kill", &id, kill_entry(found?, grace).await) })
    }

    fn usage(&self, id: &str) -> Result<Usage, IsolationError> {
        logged("usage", id, self.get(id).and_then(|e| e.usage()))
    }

    fn destroy(&self, id: &str) -> Result<(), IsolationError> {
        let entry = {
            let mut r = self.lock();
            match r.containers.get(id) {
                None => return logged("destroy", id, Err(IsolationError::NotFound(id.into()))),
                Some(e) if !e.has_exited() => {
                    return logged("destroy", id, Err(IsolationError::StillRunning(id.into())))
                }
                Some(_) => r.containers.remove(id),
            }
        };
        if let Some(entry) = entry {
            remove_leftovers(id, &entry.dir, &entry.cgroup);
            tracing::info!(id, "container destroyed");
        }
        Ok(())
    }

    fn containers(&self) -> Vec<String> {
        self.lock().containers.keys().cloned().collect()
    }

    fn limitation(&self, id: &str) -> Option<String> {
        let entry = self.get(id).ok()?;
        let oom_kills = match entry.exit.borrow().as_ref() {
            Some(t) => return t.reason.clone().filter(|r| r == REASON_MEMORY_LIMIT),
            None => entry.cgroup.oom_kills().unwrap_or(0),
        };
        (oom_kills > 0).then(|| REASON_MEMORY_LIMIT.to_string())
    }

    fn checkpoint(&self, id: &str) -> Result<ContainerCheckpoint, IsolationError> {
        let entry = logged("checkpoint", id, self.get(id))?;
        Ok(ContainerCheckpoint {
            id: entry.id.clone(),
            pid: entry.shim.init_pid,
            sandbox: entry.shim.sandbox.clone(),
            limits: entry.shim.limits,
            start_ticks: entry.shim.init_start_ticks,
        })
    }

    /// The launcher records are authoritative; the checkpoints only say which containers the
    /// agent still wants. Containers on disk that are not in `checkpoints` are destroyed.
    fn recover(
        &self,
        checkpoints: Vec<ContainerCheckpoint>,
    ) -> Result<Vec<Recovered>, IsolationError> {
        let known: BTreeSet<String> = checkpoints.iter().map(|c| c.id.clone()).collect();
        self.destroy_orphans(&known);
        let mut recovered = Vec::new();
        for checkpoint in checkpoints {
            if let Ok(r) = logged("recover", &checkpoint.id, self.recover_one(&checkpoint.id)) {
                tracing::info!(id = %r.id, pid = r.pid, running = r.running, "container recovered");
                recovered.push(r);
            }
        }
        Ok(recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counter_decides_the_reason() {
        let exit = ExitFile {
            signal: Some(9),
            oom_kills: 1,
            ..Default::default()
        };
        let t = termination_of(Some(&exit), false, 64);
        assert_eq!(t.reason.as_deref(), Some(REASON_MEMORY_LIMIT));
        let exit = ExitFile {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(
            termination_of(Some(&exit), true, 64).reason.as_deref(),
            Some(REASON_KILLED)
        );
        let exit = ExitFile {
            exit_code: Some(0),
            ..Default::default()
        };
        assert!(termination_of(Some(&exit), false, 64).succeeded());
        assert_eq!(
            termination_of(None, false, 64).reason.as_deref(),
            Some(REASON_EXIT_STATUS_UNKNOWN)
        );
    }

    /// An agora under `/tmp` (a CI checkout, say) is invisible in a container on the host's
    /// root, which gets a private `/tmp`: it is mounted in; one under `/usr` is not.
    #[test]
    fn an_executor_under_a_private_directory_is_mounted() {
        let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        let exe = dir.path().join("agora");
        std::fs::write(&exe, b"").unwrap();
        let config = |argv0: &Path, rootfs: Option<PathBuf>| ContainerConfig {
            id: "c1".into(),
            sandbox: PathBuf::from("/w/s/c1"),
            argv: vec![argv0.display().to_string(), "executor".into()],
            env: vec![],
            limits: Default::default(),
            user: None,
            isolated_network: false,
            io_weight: None,
            rootfs,
        };
        assert_eq!(executor_to_mount(&config(&exe, None)), Some(exe.clone()));
        let sh = Path::new("/bin/sh");
        assert_eq!(executor_to_mount(&config(sh, None)), None);
        // An operator's rootfs without the program: mounted; relative names: never.
        let image = dir.path().join("image");
        std::fs::create_dir(&image).unwrap();
        assert_eq!(
            executor_to_mount(&config(sh, Some(image))),
            Some(sh.to_path_buf())
        );
        assert_eq!(executor_to_mount(&config(Path::new("agora"), None)), None);
    }

    #[test]
    fn launcher_answers_are_parsed() {
        assert_eq!(parse_answer("pid 42\n"), Ok(42));
        assert!(parse_answer("pid 1").is_err());
        assert_eq!(parse_answer("error no rootfs"), Err("no rootfs".into()));
        assert!(parse_answer("").is_err());
    }
}
