//! The few cgroup facts the libcontainer containerizer reads itself: which hierarchy is
//! mounted, where a container's cgroup lives, its usage, its OOM kills and its processes.
//! Creating, limiting and removing cgroups is libcgroups' job (inside the launcher).
//!
//! Everything here works on paths below `/sys/fs/cgroup[/<controller>]/<root>/<id>`, where
//! `<root>` starts with `agora`: nothing outside agora's own root is ever read or written.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// `statfs` magic of a cgroup2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// v1 controllers a container needs: limits (cpu, memory, pids) and accounting (cpuacct).
pub(crate) const V1_REQUIRED: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];
/// v2 controllers a container needs.
const V2_REQUIRED: [&str; 3] = ["cpu", "memory", "pids"];

/// Which cgroup layout the containers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupVersion {
    /// One hierarchy per controller under `/sys/fs/cgroup/<controller>` (also "hybrid" hosts
    /// with an extra, mostly empty cgroup2 mount: libcgroups uses v1 there too).
    V1,
    /// The unified hierarchy mounted at `/sys/fs/cgroup`.
    V2,
}

/// Detects the layout, or says why cgroups cannot be used for containers.
pub fn detect_cgroups() -> Result<CgroupVersion, String> {
    let statfs = nix::sys::statfs::statfs(CGROUP_MOUNT)
        .map_err(|e| format!("cannot statfs {CGROUP_MOUNT}: {e}"))?;
    if statfs.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC {
        let controllers = fs::read_to_string(format!("{CGROUP_MOUNT}/cgroup.controllers"))
            .map_err(|e| format!("cannot read cgroup.controllers: {e}"))?;
        let have: Vec<&str> = controllers.split_whitespace().collect();
        if let Some(missing) = V2_REQUIRED.iter().find(|c| !have.contains(c)) {
            return Err(format!(
                "cgroup v2 is mounted without the {missing} controller"
            ));
        }
        return Ok(CgroupVersion::V2);
    }
    if let Some(missing) = V1_REQUIRED.iter().find(|c| {
        !Path::new(CGROUP_MOUNT)
            .join(c)
            .join("cgroup.procs")
            .exists()
    }) {
        return Err(format!(
            "no cgroup v1 {missing} hierarchy under {CGROUP_MOUNT} and no cgroup v2 mount"
        ));
    }
    Ok(CgroupVersion::V1)
}

/// Whether the disk IO controller is there: the v1 `blkio` hierarchy, or `io` among the v2
/// controllers.
pub(crate) fn has_io_controller(version: CgroupVersion) -> bool {
    match version {
        CgroupVersion::V1 => Path::new(CGROUP_MOUNT).join("blkio/cgroup.procs").exists(),
        CgroupVersion::V2 => fs::read_to_string(format!("{CGROUP_MOUNT}/cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "io")),
    }
}

/// Where one container's cgroup lives. `root` is agora's cgroup root (e.g. `agora`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupPaths {
    pub version: CgroupVersion,
    /// Path relative to a hierarchy's mount, e.g. `agora/<id>`.
    pub relative: PathBuf,
}

impl CgroupPaths {
    pub fn new(version: CgroupVersion, root: &str, id: &str) -> Self {
        CgroupPaths {
            version,
            relative: Path::new(root).join(id),
        }
    }

    /// The absolute cgroups path for the OCI spec (`/agora/<id>`): absolute so it never
    /// resolves inside the launcher's own cgroup.
    pub fn spec_path(&self) -> String {
        format!("/{}", self.relative.display())
    }

    /// Directory of this container's cgroup for `controller` (ignored on v2).
    pub fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            CgroupVersion::V1 => Path::new(CGROUP_MOUNT)
                .join(controller)
                .join(&self.relative),
            CgroupVersion::V2 => Path::new(CGROUP_MOUNT).join(&self.relative),
        }
    }

    /// Every directory that exists for this container (one per v1 controller, or one on v2).
    pub fn existing_dirs(&self) -> Vec<PathBuf> {
        match self.version {
            CgroupVersion::V2 => vec![self.dir("")],
            CgroupVersion::V1 => v1_hierarchies()
                .into_iter()
                .map(|h| h.join(&self.relative))
                .collect(),
        }
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
    }

    /// Host pids of every process in the container (from the pids controller on v1).
    pub fn pids(&self) -> io::Result<Vec<i32>> {
        let text = fs::read_to_string(self.dir("pids").join("cgroup.procs"))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// CPU time used so far, in nanoseconds.
    pub fn cpu_time_ns(&self) -> io::Result<u64> {
        match self.version {
            CgroupVersion::V1 => read_u64(&self.dir("cpuacct").join("cpuacct.usage")),
            CgroupVersion::V2 => {
                let stat = fs::read_to_string(self.dir("cpu").join("cpu.stat"))?;
                keyed(&stat, "usage_usec")
                    .map(|us| us.saturating_mul(1000))
                    .ok_or_else(|| invalid("cpu.stat has no usage_usec"))
            }
        }
    }

    /// Memory charged to the container now and at its highest (peak may be 0 on v2 kernels
    /// without `memory.peak`).
    pub fn memory_bytes(&self) -> io::Result<(u64, u64)> {
        let dir = self.dir("memory");
        match self.version {
            CgroupVersion::V1 => Ok((
                read_u64(&dir.join("memory.usage_in_bytes"))?,
                read_u64(&dir.join("memory.max_usage_in_bytes"))?,
            )),
            CgroupVersion::V2 => Ok((
                read_u64(&dir.join("memory.current"))?,
                read_u64(&dir.join("memory.peak")).unwrap_or(0),
            )),
        }
    }

    /// How many processes the kernel's OOM killer killed in this container.
    pub fn oom_kills(&self) -> io::Result<u64> {
        let (file, key) = match self.version {
            CgroupVersion::V1 => ("memory.oom_control", "oom_kill"),
            CgroupVersion::V2 => ("memory.events", "oom_kill"),
        };
        let text = fs::read_to_string(self.dir("memory").join(file))?;
        keyed(&text, key).ok_or_else(|| invalid("no oom_kill counter (kernel older than 4.13?)"))
    }
}

/// Mount points of the v1 hierarchies (`/sys/fs/cgroup/<name>`), sorted, without symlinks
/// such as `cpu,cpuacct` aliases.
pub(crate) fn v1_hierarchies() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(CGROUP_MOUNT)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Removes agora's (empty) cgroup root directories, e.g. `agora-test-1`, in every hierarchy
/// (for `agora-x/NAME` also `agora-x` when nothing else is in it). Fails on a root that still
/// has containers (rmdir refuses non-empty cgroups); nothing outside agora's root is touched.
pub fn remove_cgroup_root(version: CgroupVersion, root: &str) -> io::Result<()> {
    check_cgroup_root(root).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let hierarchies = match version {
        CgroupVersion::V2 => vec![PathBuf::from(CGROUP_MOUNT)],
        CgroupVersion::V1 => v1_hierarchies(),
    };
    let top = root.split('/').next().unwrap_or(root);
    for h in hierarchies {
        let dir = h.join(root);
        if dir.is_dir() {
            fs::remove_dir(&dir)?;
        }
        if top != root && h.join(top).is_dir() {
            // Shared with other agents' roots: only when empty, and that is no error.
            let _ = fs::remove_dir(h.join(top));
        }
    }
    Ok(())
}

/// agora's cgroup root: one or two `/`-separated names of `[A-Za-z0-9_-]`, the first starting
/// with `agora`, so nothing outside agora's own root can ever be named.
pub fn check_cgroup_root(root: &str) -> Result<(), String> {
    let parts: Vec<&str> = root.split('/').collect();
    let valid = |p: &&str| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if parts.len() > 2 || !parts[0].starts_with("agora") || !parts.iter().all(valid) {
        return Err(format!(
            "cgroup root {root:?} must be `agora...` or `agora.../NAME` (letters, digits, _ and -)"
        ));
    }
    Ok(())
}

fn read_u64(path: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|_| invalid(&format!("{} is not a number: {text:?}", path.display())))
}

/// Value of a `key value` line (`memory.oom_control`, `cpu.stat`, `memory.events`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next() == Some(key)).then(|| parts.next()?.parse().ok())?
    })
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_lines_are_parsed() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(text, "oom_kill"), Some(3));
        assert_eq!(keyed(text, "oom"), None);
    }

    #[test]
    fn paths_stay_under_the_root() {
        let v1 = CgroupPaths::new(CgroupVersion::V1, "agora", "c1");
        assert_eq!(v1.spec_path(), "/agora/c1");
        assert_eq!(
            v1.dir("memory"),
            Path::new("/sys/fs/cgroup/memory/agora/c1")
        );
        let v2 = CgroupPaths::new(CgroupVersion::V2, "agora", "c1");
        assert_eq!(v2.dir("memory"), Path::new("/sys/fs/cgroup/agora/c1"));
        assert!(remove_cgroup_root(CgroupVersion::V1, "system.slice").is_err());
        for bad in ["", "/agora", "agora/../x", "agora/a/b", "x/agora", "agora/"] {
            assert!(check_cgroup_root(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_cgroup_root("agora/a1b2").is_ok());
    }
}
