//! The libcontainer containerizer on real cgroups: limits enforced (memory → OOM with reason
//! "memory limit", CPU quota, pids limit), namespaces and filesystem, and nothing left behind.
//!
//! Needs root and cgroups. Without them each test is skipped, unless AGORA_REQUIRE_CGROUPS=1
//! (CI), where it fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agora_isolation::{
    detect_cgroups, remove_cgroup_root, CgroupVersion, ContainerConfig, Containerizer,
    LibcontainerContainerizer, LibcontainerOptions, Limits, REASON_MEMORY_LIMIT,
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A containerizer on its own cgroup root (`agora-test-<pid>-<n>`) and temp dir; on drop it
/// kills what still runs, destroys every container and removes the cgroup root.
struct Harness {
    c: LibcontainerContainerizer,
    version: CgroupVersion,
    root: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn new(pids_limit: i64) -> Option<Harness> {
        let required = std::env::var("AGORA_REQUIRE_CGROUPS").as_deref() == Ok("1");
        // SAFETY: geteuid has no preconditions.
        let usable = if unsafe { libc::geteuid() } != 0 {
            Err("not root".to_string())
        } else {
            detect_cgroups()
        };
        let version = match usable {
            Ok(v) => v,
            Err(why) if required => {
                panic!("AGORA_REQUIRE_CGROUPS=1 but cgroups are unusable: {why}")
            }
            Err(why) => {
                eprintln!("skipped: cgroups unusable: {why}");
                return None;
            }
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let root = format!(
            "agora-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut options = LibcontainerOptions::new(
            dir.path().join("containers"),
            vec![env!("CARGO_BIN_EXE_agora-launcher").to_string()],
        );
        options.cgroup_root = root.clone();
        options.pids_limit = pids_limit;
        let c = LibcontainerContainerizer::new(options).expect("containerizer");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        Some(Harness {
            c,
            version,
            root,
            dir,
            rt,
        })
    }

    fn config(&self, id: &str, script: &str, limits: Limits) -> ContainerConfig {
        ContainerConfig {
            id: id.into(),
            sandbox: self.dir.path().join("sandboxes").join(id),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello".into())],
            limits,
            user: None,
            isolated_network: false,
            io_weight: None,
            rootfs: None,
        }
    }

    fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        let base = Path::new("/sys/fs/cgroup");
        let ctrls: &[&str] = match self.version {
            CgroupVersion::V1 => &[
                "cpu", "cpuacct", "memory", "pids", "devices", "freezer", "blkio", "cpuset",
            ],
            CgroupVersion::V2 => &[""],
        };
        ctrls
            .iter()
            .map(|c| base.join(c).join(&self.root).join(id))
            .filter(|p| p.exists())
            .collect()
    }

    fn wait(&self, id: &str, timeout: Duration) -> agora_isolation::Termination {
        self.rt
            .block_on(async { tokio::time::timeout(timeout, self.c.wait(id)).await })
            .expect("container did not end in time")
            .expect("wait")
    }

    /// Destroys `id` and checks its cgroups and bundle are gone.
    fn destroy_and_check(&self, id: &str) {
        self.c.destroy(id).expect("destroy");
        assert!(
            self.cgroup_dirs(id).is_empty(),
            "cgroups left: {:?}",
            self.cgroup_dirs(id)
        );
        assert!(
            !self.dir.path().join("containers").join(id).exists(),
            "container dir left"
        );
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.c.kill_all_now();
        for id in self.c.containers() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), self.c.wait(&id)).await
            });
            let _ = self.c.destroy(&id);
        }
        if let Err(e) = remove_cgroup_root(self.version, &self.root) {
            eprintln!("cannot remove test cgroup root {}: {e}", self.root);
        }
        let leftovers: Vec<_> = mounts_under(self.dir.path());
        assert!(
            leftovers.is_empty() || std::thread::panicking(),
            "mounts left: {leftovers:?}"
        );
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p.starts_with(&prefix))
        .collect()
}

#[test]
fn runs_isolated_with_exit_code_sandbox_and_readonly_host() {
    let Some(h) = Harness::new(256) else { return };
    let script = "echo \"$GREETING $AGORA_SANDBOX $(pwd) $(hostname) $$\"; \
                  echo data > /sandbox/out.txt; \
                  if touch /usr/agora-should-fail 2>/dev/null; then echo HOST-WRITABLE; fi; \
                  exit 3";
    let config = h.config(
        "basic-1",
        script,
        Limits {
            cpus_milli: 500,
            mem_mb: 64,
            disk_mb: 0,
        },
    );
    let sandbox = config.sandbox.clone();
    let launched = h.c.launch(config).expect("launch");
    assert!(launched.pid > 1);
    assert!(!h.cgroup_dirs("basic-1").is_empty(), "no cgroup created");
    let t = h.wait("basic-1", Duration::from_secs(20));
    assert_eq!(t.exit_code, Some(3), "{t:?}");
    assert_eq!(t.reason, None);
    let out = std::fs::read_to_string(sandbox.join("stdout")).expect("stdout");
    // pid 1 in its own pid namespace, hostname = container id (uts namespace).
    assert_eq!(
        out.trim(),
        "hello /sandbox /sandbox basic-1 1",
        "stderr: {:?}",
        std::fs::read_to_string(sandbox.join("stderr"))
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("out.txt")).expect("out"),
        "data\n"
    );
    h.destroy_and_check("basic-1");
}

#[test]
fn memory_hog_is_oom_killed_with_reason_memory_limit() {
    let Some(h) = Harness::new(256) else { return };
    // The shell keeps the whole 200 MB substitution in memory; the limit is 32 MB.
    let script = "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived ${#x}";
    let config = h.config(
        "memhog-1",
        script,
        Limits {
            cpus_milli: 1000,
            mem_mb: 32,
            disk_mb: 0,
        },
    );
    h.c.launch(config).expect("launch");
    let t = h.wait("memhog-1", Duration::from_secs(60));
    assert_eq!(t.reason.as_deref(), Some(REASON_MEMORY_LIMIT), "{t:?}");
    let usage = h.c.usage("memhog-1").expect("usage");
    assert!(
        usage.mem_peak_bytes <= 33 << 20,
        "peak {} over the limit",
        usage.mem_peak_bytes
    );
    assert!(
        usage.mem_peak_bytes >= 16 << 20,
        "peak {} too low for a hog",
        usage.mem_peak_bytes
    );
    h.destroy_and_check("memhog-1");
}

#[test]
fn cpu_hog_gets_its_quota() {
    let Some(h) = Harness::new(256) else { return };
    let config = h.config(
        "cpuhog-1",
        "while :; do :; done",
        Limits {
            cpus_milli: 500,
            mem_mb: 64,
            disk_mb: 0,
        },
    );
    h.c.launch(config).expect("launch");
    std::thread::sleep(Duration::from_millis(500));
    let (t0, u0) = (
        Instant::now(),
        h.c.usage("cpuhog-1").expect("usage").cpu_time_ms,
    );
    std::thread::sleep(Duration::from_secs(3));
    let (elapsed_ms, u1) = (
        t0.elapsed().as_millis() as f64,
        h.c.usage("cpuhog-1").expect("usage").cpu_time_ms,
    );
    let share = (u1 - u0) as f64 / elapsed_ms;
    eprintln!("cpu hog with a 0.5 CPU quota used {share:.3} CPU");
    assert!(
        (0.4..=0.6).contains(&share),
        "used {share:.3} CPU, quota 0.5 (±20%)"
    );
    h.rt.block_on(h.c.kill("cpuhog-1", Duration::from_millis(100)))
        .expect("kill");
    let t = h.wait("cpuhog-1", Duration::from_secs(10));
    assert_eq!(t.reason.as_deref(), Some("killed"), "{t:?}");
    h.destroy_and_check("cpuhog-1");
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let Some(h) = Harness::new(48) else { return };
    let config = h.config(
        "forkbomb-1",
        "bomb() { bomb | bomb & }; bomb; sleep 30",
        Limits {
            cpus_milli: 500,
            mem_mb: 128,
            disk_mb: 0,
        },
    );
    h.c.launch(config).expect("launch");
    std::thread::sleep(Duration::from_secs(2));
    let pids_dir = match h.version {
        CgroupVersion::V1 => PathBuf::from("/sys/fs/cgroup/pids")
            .join(&h.root)
            .join("forkbomb-1"),
        CgroupVersion::V2 => PathBuf::from("/sys/fs/cgroup")
            .join(&h.root)
            .join("forkbomb-1"),
    };
    let current: u64 = std::fs::read_to_string(pids_dir.join("pids.current"))
        .expect("pids.current")
        .trim()
        .parse()
        .expect("number");
    assert!(current <= 48, "{current} processes, limit 48");
    let events = std::fs::read_to_string(pids_dir.join("pids.events")).unwrap_or_default();
    eprintln!(
        "fork bomb: {current} processes; pids.events: {}",
        events.trim()
    );
    let refused: u64 = events
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "the pids limit was never hit: {events:?}");
    h.rt.block_on(h.c.kill("forkbomb-1", Duration::from_millis(100)))
        .expect("kill");
    let t = h.wait("forkbomb-1", Duration::from_secs(20));
    assert_eq!(t.reason.as_deref(), Some("killed"), "{t:?}");
    h.destroy_and_check("forkbomb-1");
}

/// A minimal operator rootfs in `root`: the host's `sh` and the libraries `ldd` lists, all
/// under `usr/` with merged-/usr top-level symlinks (`bin -> usr/bin`, ...), a marker at
/// `/etc/agora-marker` and a top-level file `/agora-top`.
fn build_rootfs(root: &Path, marker: &str) {
    let sh = std::fs::canonicalize("/bin/sh").expect("host sh");
    let ldd = std::process::Command::new("ldd")
        .arg(&sh)
        .output()
        .expect("ldd");
    let mut files = vec![sh.clone()];
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            files.push(PathBuf::from(word));
        }
    }
    let place = |host: &Path| -> PathBuf {
        // /lib/x/libc.so.6 -> usr/lib/x/libc.so.6; /usr/bin/dash -> usr/bin/dash.
        let rel = host.strip_prefix("/").expect("absolute");
        if rel.starts_with("usr") {
            root.join(rel)
        } else {
            root.join("usr").join(rel)
        }
    };
    for file in &files {
        let dest = place(file);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(file, &dest).expect("copy into rootfs");
    }
    std::os::unix::fs::symlink(
        sh.file_name().expect("name"),
        place(&sh).with_file_name("sh"),
    )
    .ok();
    for dir in ["bin", "sbin", "lib", "lib64", "lib32"] {
        if root.join("usr").join(dir).is_dir() {
            std::os::unix::fs::symlink(format!("usr/{dir}"), root.join(dir)).expect("symlink");
        }
    }
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::write(root.join("etc/agora-marker"), format!("{marker}\n")).expect("marker");
    std::fs::write(root.join("agora-top"), "top\n").expect("top marker");
}

/// Every path under `root` with its type, size, mode and modification time.
fn snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let meta = std::fs::symlink_metadata(&dir).expect("stat");
        out.push((
            dir.clone(),
            format!("{:?} {:?}", meta.permissions(), meta.modified().ok()),
        ));
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                todo.push(path);
            } else {
                let desc = format!(
                    "{:?} {} {:?} {:?}",
                    meta.file_type(),
                    meta.len(),
                    meta.permissions(),
                    meta.modified().ok()
                );
                out.push((path, desc));
            }
        }
    }
    out.sort();
    out
}

/// A task given an operator's rootfs sees that rootfs (its files, top-level ones too, and
/// nothing of the host's), cannot write to it, and leaves it exactly as it was.
#[test]
fn operator_rootfs_is_what_the_task_sees_and_stays_untouched() {
    let Some(h) = Harness::new(256) else { return };
    let rootfs = h.dir.path().join("operator-rootfs");
    let marker = format!("operator-rootfs-{}", std::process::id());
    build_rootfs(&rootfs, &marker);
    let before = snapshot(&rootfs);
    // Host-only paths the rootfs lacks: /etc/passwd, /usr/bin/env; the host's own sandbox path.
    let script = "read m < /etc/agora-marker && echo \"marker=$m\"; \
                  read t < /agora-top && echo \"top=$t\"; \
                  for p in /etc/passwd /usr/bin/env \"$HOST_SANDBOX\"; do \
                    if [ -e \"$p\" ]; then echo \"HOST-VISIBLE $p\"; fi; done; \
                  for p in /etc/agora-written /agora-written /usr/agora-written; do \
                    if (echo x > \"$p\") 2>/dev/null; then echo \"ROOTFS-WRITABLE $p\"; fi; done; \
                  echo ok > /sandbox/out.txt; echo tmp > /tmp/t && read x < /tmp/t && echo \"$x\"";
    let mut config = h.config(
        "rootfs-1",
        script,
        Limits {
            cpus_milli: 500,
            mem_mb: 64,
            disk_mb: 0,
        },
    );
    config.rootfs = Some(rootfs.clone());
    config
        .env
        .push(("HOST_SANDBOX".into(), config.sandbox.display().to_string()));
    let sandbox = config.sandbox.clone();
    h.c.launch(config).expect("launch");
    let t = h.wait("rootfs-1", Duration::from_secs(20));
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).unwrap_or_default();
    assert_eq!(t.exit_code, Some(0), "{t:?}, stderr: {stderr}");
    let out = std::fs::read_to_string(sandbox.join("stdout")).expect("stdout");
    assert_eq!(
        out,
        format!("marker={marker}\ntop=top\ntmp\n"),
        "stderr: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("out.txt")).expect("out"),
        "ok\n"
    );
    h.destroy_and_check("rootfs-1");
    assert_eq!(snapshot(&rootfs), before, "the operator's rootfs changed");
}

/// The executor program is a host path the rootfs lacks, under a directory the rootfs has
/// (`/usr`): it is still run, and nothing appears in the operator's `/usr`.
#[test]
fn operator_rootfs_runs_a_host_executor_program_it_lacks() {
    let Some(h) = Harness::new(256) else { return };
    let rootfs = h.dir.path().join("operator-rootfs");
    let marker = format!("operator-rootfs-{}", std::process::id());
    build_rootfs(&rootfs, &marker);
    let cat = std::fs::canonicalize("/usr/bin/cat").expect("host cat");
    assert!(!rootfs.join(cat.strip_prefix("/").expect("abs")).exists());
    let before = snapshot(&rootfs);
    let mut config = h.config(
        "rootfs-2",
        "",
        Limits {
            cpus_milli: 500,
            mem_mb: 64,
            disk_mb: 0,
        },
    );
    config.argv = vec![cat.display().to_string(), "/etc/agora-marker".into()];
    config.rootfs = Some(rootfs.clone());
    let sandbox = config.sandbox.clone();
    h.c.launch(config).expect("launch");
    let t = h.wait("rootfs-2", Duration::from_secs(20));
    let stderr = std::fs::read_to_string(sandbox.join("stderr")).unwrap_or_default();
    assert_eq!(t.exit_code, Some(0), "{t:?}, stderr: {stderr}");
    let out = std::fs::read_to_string(sandbox.join("stdout")).expect("stdout");
    assert_eq!(out, format!("{marker}\n"), "stderr: {stderr}");
    h.destroy_and_check("rootfs-2");
    assert_eq!(snapshot(&rootfs), before, "the operator's rootfs changed");
}
