//! The OCI runtime spec (`config.json`) of one container, built as plain JSON from a
//! [`ContainerConfig`]. Pure: reads only the listing of the host's `/` given to it.

use std::path::Path;

use serde_json::{json, Value};

use super::cgroup::CgroupPaths;
use crate::{ContainerConfig, DEFAULT_PATH};

/// Where the sandbox is mounted inside every container (and the working directory).
pub const CONTAINER_SANDBOX: &str = "/sandbox";
/// CFS period; the quota is `cpus × period`.
const CFS_PERIOD_US: u64 = 100_000;
/// Smallest CFS quota the kernel accepts.
const MIN_CFS_QUOTA_US: i64 = 1_000;
/// Soft and hard `RLIMIT_NOFILE` inside containers, capped by the agent's own hard limit
/// (raising it would need CAP_SYS_RESOURCE, which an agent in a container may lack).
pub(crate) const NOFILE_LIMIT: u64 = 65_536;
/// Size of the private `/tmp` (tmpfs pages are charged to the container's memory cgroup).
const TMP_SIZE: &str = "size=25%";

/// Host top-level entries that are *not* bind-mounted: the container gets its own.
const NOT_FROM_HOST: [&str; 7] = [
    "proc",
    "sys",
    "dev",
    "tmp",
    "lost+found",
    "sandbox",
    ".agora-exec",
];
/// Whether a host path (relative to `/`) is hidden inside a container on the host's root: its
/// top directory is one the container gets its own of.
pub(crate) fn hidden_from_container(rel: &Path) -> bool {
    let top = rel.components().next();
    top.is_some_and(|c| NOT_FROM_HOST.contains(&c.as_os_str().to_string_lossy().as_ref()))
}

/// Where an executor program the operator's rootfs lacks is bind-mounted (by file name). Not
/// at its host path: that path's top directory (`/usr`, ...) is usually a read-only bind of
/// the operator's, where the mount point cannot be created (and must not be: it is theirs).
pub const CONTAINER_EXEC_DIR: &str = "/.agora-exec";

/// One entry of the host's `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostEntry {
    Dir(String),
    /// A top-level symlink (`bin -> usr/bin` on merged-/usr systems) and its target.
    Link(String, String),
    /// A top-level regular file (listed only for an operator's rootfs).
    File(String),
}

/// Lists `root`: the host's `/` or an operator-given rootfs (what a container sees
/// read-only). Top-level files only with `with_files`: an operator's rootfs is shown whole,
/// while the host's `/` keeps its files (swap images and the like) to itself.
pub(crate) fn host_root_entries(root: &Path, with_files: bool) -> std::io::Result<Vec<HostEntry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if NOT_FROM_HOST.contains(&name.as_str()) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            entries.push(HostEntry::Link(name, target.display().to_string()));
        } else if kind.is_dir() {
            entries.push(HostEntry::Dir(name));
        } else if kind.is_file() && with_files {
            entries.push(HostEntry::File(name));
        }
    }
    entries.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    Ok(entries)
}

fn name_of(e: &HostEntry) -> &str {
    match e {
        HostEntry::Dir(n) | HostEntry::Link(n, _) | HostEntry::File(n) => n,
    }
}

/// Everything the spec depends on besides the container config.
pub(crate) struct SpecInput<'a> {
    pub config: &'a ContainerConfig,
    pub rootfs: &'a Path,
    pub cgroup: &'a CgroupPaths,
    /// Entries of `source_root` (`/` or the operator's rootfs), bind-mounted read-only.
    pub host: &'a [HostEntry],
    pub source_root: &'a Path,
    /// The executor program (an absolute host path) when the container's own rootfs lacks
    /// it: bind-mounted read-only under [`CONTAINER_EXEC_DIR`] and run from there.
    pub executor: Option<&'a Path>,
    pub pids_limit: i64,
    pub nofile_limit: u64,
    /// uid, gid and supplementary gids of the container's processes.
    pub user: (u32, u32, Vec<u32>),
    /// Disk IO weight, only when the controller exists.
    pub io_weight: Option<u16>,
}

/// The `config.json` of a container: pid, mount, ipc and uts namespaces (host network), the
/// host's directories read-only, the sandbox writable at [`CONTAINER_SANDBOX`] (and at its
/// host path, so paths the agent hands out keep working), cgroup limits from `limits`.
pub(crate) fn build_spec(input: &SpecInput<'_>) -> Value {
    let config = input.config;
    let mut env: Vec<String> = config
        .env
        .iter()
        .filter(|(k, _)| k != "AGORA_SANDBOX")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.push(format!("AGORA_SANDBOX={CONTAINER_SANDBOX}"));
    if !config.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let mut args = config.argv.clone();
    if let (Some(exec), Some(first)) = (exec_mount_point(input), args.first_mut()) {
        *first = exec;
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": input.user.0, "gid": input.user.1, "additionalGids": input.user.2},
            "args": args,
            "env": env,
            "cwd": CONTAINER_SANDBOX,
            "capabilities": capabilities(config.isolated_network),
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": input.nofile_limit, "soft": input.nofile_limit}],
            "noNewPrivileges": true,
        },
        "root": {"path": input.rootfs, "readonly": true},
        "hostname": short_hostname(&config.id),
        "mounts": mounts(input),
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
            "cgroupsPath": input.cgroup.spec_path(),
            "resources": resources(input),
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

/// Where the executor program is mounted inside the container, if it is mounted.
fn exec_mount_point(input: &SpecInput<'_>) -> Option<String> {
    let name = input.executor?.file_name()?.to_string_lossy().into_owned();
    Some(format!("{CONTAINER_EXEC_DIR}/{name}"))
}

/// Hostnames are limited to 64 bytes; container ids may be up to 128.
fn short_hostname(id: &str) -> &str {
    &id[..id.len().min(64)]
}

fn resources(input: &SpecInput<'_>) -> Value {
    let limits = input.config.limits;
    let mut devices = vec![json!({"allow": false, "access": "rwm"})];
    devices.extend(default_devices());
    let mut resources = json!({
        "pids": {"limit": input.pids_limit},
        "devices": devices,
    });
    if limits.cpus_milli > 0 {
        // shares: 1024 per CPU like Mesos; quota: exactly `cpus` of CPU time per period.
        let shares = (limits.cpus_milli.saturating_mul(1024) / 1000).max(2);
        let quota =
            (limits.cpus_milli.saturating_mul(CFS_PERIOD_US as i64) / 1000).max(MIN_CFS_QUOTA_US);
        resources["cpu"] = json!({"shares": shares, "quota": quota, "period": CFS_PERIOD_US});
    }
    if let Some(weight) = input.io_weight {
        resources["blockIO"] = json!({"weight": weight});
    }
    if limits.mem_mb > 0 {
        let bytes = limits.mem_mb.saturating_mul(1 << 20).min(i64::MAX as u64);
        // swappiness 0 and an equal memory+swap limit: over the limit means OOM, not swap.
        resources["memory"] = json!({"limit": bytes, "swap": bytes, "swappiness": 0});
    }
    resources
}

/// The character devices every container may use (null, zero, full, tty, random, urandom,
/// and the pty multiplexer).
fn default_devices() -> Vec<Value> {
    [
        (1, 3),
        (1, 5),
        (1, 7),
        (5, 0),
        (1, 8),
        (1, 9),
        (5, 2),
        (136, -1),
    ]
    .into_iter()
    .map(|(major, minor)| {
        let mut d = json!({"allow": true, "type": "c", "major": major, "access": "rwm"});
        if minor >= 0 {
            d["minor"] = json!(minor);
        }
        d
    })
    .collect()
}

fn mounts(input: &SpecInput<'_>) -> Vec<Value> {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", TMP_SIZE]}),
    ];
    for entry in input.host {
        let (name, bind) = match entry {
            HostEntry::Dir(name) => (name, "rbind"),
            HostEntry::File(name) => (name, "bind"),
            HostEntry::Link(..) => continue,
        };
        let source = input.source_root.join(name);
        mounts.push(
            json!({"destination": format!("/{name}"), "type": "bind", "source": source,
                   "options": [bind, "ro", "nosuid"]}),
        );
    }
    if let (Some(file), Some(dest)) = (input.executor, exec_mount_point(input)) {
        mounts.push(json!({"destination": dest, "type": "bind", "source": file,
                           "options": ["bind", "ro", "nosuid"]}));
    }
    let sandbox = input.config.sandbox.display().to_string();
    let rw = json!(["rbind", "rw", "nosuid", "nodev"]);
    mounts.push(
        json!({"destination": CONTAINER_SANDBOX, "type": "bind", "source": sandbox, "options": rw}),
    );
    // At its host path too, so paths the agent hands out work; not in an operator's rootfs,
    // where that path's directories do not exist.
    if input.config.rootfs.is_none() {
        mounts.push(
            json!({"destination": sandbox, "type": "bind", "source": sandbox, "options": rw}),
        );
    }
    mounts
}

/// The usual container set; plus `CAP_SYS_ADMIN` and `CAP_NET_ADMIN` when the container's
/// tasks get network namespaces of their own: the command executor needs them to create one
/// and bring its loopback up, and drops them from
/// every task's bounding set (the agent allows this for command executors only).
fn capabilities(task_network_namespaces: bool) -> Value {
    let mut caps = vec![
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    if task_network_namespaces {
        caps.extend(["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
    }
    json!({"bounding": caps, "effective": caps, "permitted": caps})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libct::cgroup::CgroupVersion;
    use crate::Limits;
    use std::path::PathBuf;

    #[test]
    fn limits_and_mounts_are_in_the_spec() {
        let config = ContainerConfig {
            id: "c1".into(),
            sandbox: PathBuf::from("/w/s/c1"),
            argv: vec!["sleep".into(), "1".into()],
            env: vec![("AGORA_SANDBOX".into(), "/w/s/c1".into())],
            limits: Limits {
                cpus_milli: 500,
                mem_mb: 64,
                disk_mb: 0,
            },
            user: None,
            isolated_network: false,
            io_weight: None,
            rootfs: None,
        };
        let cgroup = CgroupPaths::new(CgroupVersion::V1, "agora", "c1");
        let host = vec![
            HostEntry::Dir("usr".into()),
            HostEntry::Link("bin".into(), "usr/bin".into()),
        ];
        let spec = build_spec(&SpecInput {
            config: &config,
            rootfs: Path::new("/w/c/c1/rootfs"),
            cgroup: &cgroup,
            host: &host,
            source_root: Path::new("/"),
            executor: None,
            pids_limit: 100,
            nofile_limit: 1024,
            user: (0, 0, vec![]),
            io_weight: Some(300),
        });
        assert_eq!(spec["linux"]["resources"]["blockIO"]["weight"], 300);
        let caps = spec["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert!(!caps.contains(&json!("CAP_SYS_ADMIN")));
        let r = &spec["linux"]["resources"];
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["pids"]["limit"], 100);
        assert_eq!(spec["linux"]["cgroupsPath"], "/agora/c1");
        let env = spec["process"]["env"].as_array().expect("env");
        assert!(env.contains(&json!("AGORA_SANDBOX=/sandbox")));
        assert_eq!(
            env.iter()
                .filter(|e| e.as_str().unwrap().starts_with("AGORA_SANDBOX"))
                .count(),
            1
        );
        let dests: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(
            dests.contains(&"/usr") && dests.contains(&"/sandbox") && dests.contains(&"/w/s/c1")
        );
    }

    #[test]
    fn an_executor_the_rootfs_lacks_is_mounted_and_run_from_the_exec_dir() {
        let config = ContainerConfig {
            id: "c2".into(),
            sandbox: PathBuf::from("/w/s/c2"),
            argv: vec!["/usr/local/bin/agora".into(), "executor".into()],
            env: vec![],
            limits: Limits::default(),
            user: None,
            isolated_network: false,
            io_weight: None,
            rootfs: Some(PathBuf::from("/images/base")),
        };
        let cgroup = CgroupPaths::new(CgroupVersion::V1, "agora", "c2");
        let host = vec![
            HostEntry::Dir("usr".into()),
            HostEntry::File("marker".into()),
        ];
        let spec = build_spec(&SpecInput {
            config: &config,
            rootfs: Path::new("/w/c/c2/rootfs"),
            cgroup: &cgroup,
            host: &host,
            source_root: Path::new("/images/base"),
            executor: Some(Path::new("/usr/local/bin/agora")),
            pids_limit: 100,
            nofile_limit: 1024,
            user: (0, 0, vec![]),
            io_weight: None,
        });
        assert_eq!(
            spec["process"]["args"],
            json!(["/.agora-exec/agora", "executor"])
        );
        let mounts = spec["mounts"].as_array().expect("mounts");
        let find = |dest: &str| mounts.iter().find(|m| m["destination"] == dest).cloned();
        let exec = find("/.agora-exec/agora").expect("executor mount");
        assert_eq!(exec["source"], "/usr/local/bin/agora");
        assert_eq!(exec["options"], json!(["bind", "ro", "nosuid"]));
        let marker = find("/marker").expect("top-level file mount");
        assert_eq!(marker["source"], "/images/base/marker");
        assert_eq!(find("/usr").expect("usr")["source"], "/images/base/usr");
        assert!(find("/w/s/c2").is_none(), "host sandbox path in own rootfs");
    }
}
