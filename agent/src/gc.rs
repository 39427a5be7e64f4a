//! Garbage collection of old sandboxes (`WORK_DIR/sandboxes/FRAMEWORK/EXECUTOR/CONTAINER`).
//!
//! A sandbox stays for the operator after its executor ended, for `--gc-delay-ms`. When the
//! work dir's disk fills up the delay shrinks, as in Mesos:
//! `delay × max(0, 1 − headroom − used fraction)`; with less free disk than the headroom,
//! every ended sandbox goes at the next pass. The agent stamps a sandbox's modification time
//! when its container ends, so its age survives agent restarts. Sandboxes of live containers
//! are never touched. Runs on a worker thread (directory walks are slow).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most sandboxes removed in one pass (the rest wait for the next one).
pub const MAX_REMOVALS_PER_PASS: usize = 10_000;

/// `--gc-delay-ms` and `--gc-disk-headroom`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcPolicy {
    pub delay_ms: u64,
    /// Fraction of the disk to keep free (0..=1).
    pub disk_headroom: f64,
}

impl GcPolicy {
    /// The age after which an ended sandbox goes, given the disk's used fraction.
    pub fn effective_delay(&self, disk_used: f64) -> Duration {
        let factor = (1.0 - self.disk_headroom - disk_used).clamp(0.0, 1.0);
        Duration::from_millis((self.delay_ms as f64 * factor) as u64)
    }
}

/// What one pass did.
#[derive(Debug, Default, PartialEq)]
pub struct GcReport {
    pub removed: Vec<PathBuf>,
    pub kept: usize,
    pub errors: Vec<String>,
    pub delay_ms: u64,
}

/// Used fraction of the filesystem holding `path`.
pub fn disk_used_fraction(path: &Path) -> Result<f64, String> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| e.to_string())?;
    let total = st.blocks() as f64 * st.fragment_size() as f64;
    if total <= 0.0 {
        return Ok(0.0);
    }
    let avail = st.blocks_available() as f64 * st.fragment_size() as f64;
    Ok((1.0 - avail / total).clamp(0.0, 1.0))
}

/// Marks a sandbox as ended now (its modification time is its age for the collector).
pub fn stamp_ended(sandbox: &Path) {
    let stamp = std::fs::File::open(sandbox).and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = stamp {
        tracing::debug!(sandbox = %sandbox.display(), error = %e, "sandbox end not stamped");
    }
}

/// One pass over `work_dir/sandboxes`: removes container sandboxes not in `live` whose
/// modification time is older than the policy's delay (for the disk's current use), then
/// executor and framework directories left empty.
pub fn collect(
    work_dir: &Path,
    live: &BTreeSet<String>,
    policy: GcPolicy,
    now: SystemTime,
) -> GcReport {
    let root = work_dir.join("sandboxes");
    let used = disk_used_fraction(work_dir).unwrap_or(0.0);
    let delay = policy.effective_delay(used);
    let mut report = GcReport {
        delay_ms: delay.as_millis() as u64,
        ..GcReport::default()
    };
    for fw in subdirs(&root) {
        for exec in subdirs(&fw) {
            for sandbox in subdirs(&exec) {
                consider(&sandbox, live, delay, now, &mut report);
            }
            let _ = std::fs::remove_dir(&exec); // only when empty
        }
        let _ = std::fs::remove_dir(&fw);
    }
    report
}

fn consider(
    sandbox: &Path,
    live: &BTreeSet<String>,
    delay: Duration,
    now: SystemTime,
    report: &mut GcReport,
) {
    let id = sandbox
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if live.contains(&id) {
        report.kept += 1;
        return;
    }
    let age = std::fs::symlink_metadata(sandbox)
        .and_then(|m| m.modified())
        .map(|t| now.duration_since(t).unwrap_or_default());
    match age {
        Ok(age) if age >= delay && report.removed.len() < MAX_REMOVALS_PER_PASS => {
            match std::fs::remove_dir_all(sandbox) {
                Ok(()) => report.removed.push(sandbox.to_path_buf()),
                Err(e) => report.errors.push(format!("{}: {e}", sandbox.display())),
            }
        }
        Ok(_) => report.kept += 1,
        Err(e) => report.errors.push(format!("{}: {e}", sandbox.display())),
    }
}

/// Real subdirectories (symlinks are not followed: a task cannot point the collector
/// elsewhere).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(work: &Path, fw: &str, exec: &str, id: &str, age: Duration) -> PathBuf {
        let p = work.join("sandboxes").join(fw).join(exec).join(id);
        std::fs::create_dir_all(p.join("sub")).expect("mkdir");
        std::fs::write(p.join("stdout"), b"out").expect("write");
        let f = std::fs::File::open(&p).expect("open");
        f.set_modified(SystemTime::now() - age).expect("mtime");
        p
    }

    #[test]
    fn old_ended_sandboxes_go_live_and_young_ones_stay() {
        let work = tempfile::tempdir().expect("tempdir");
        let hour = Duration::from_secs(3600);
        let old = sandbox(work.path(), "fw1", "e1", "c-old", 3 * hour);
        let young = sandbox(work.path(), "fw1", "e2", "c-young", Duration::ZERO);
        let live = sandbox(work.path(), "fw2", "e3", "c-live", 3 * hour);
        let live_ids: BTreeSet<String> = ["c-live".to_string()].into();
        // Headroom 0 and a disk use that is never 100%: the delay is at most one hour.
        let policy = GcPolicy {
            delay_ms: 3_600_000,
            disk_headroom: 0.0,
        };
        let r = collect(work.path(), &live_ids, policy, SystemTime::now());
        assert_eq!(r.removed, vec![old.clone()], "{r:?}");
        assert!(!old.exists() && young.exists() && live.exists());
        // The executor dir left empty went too; the others stay.
        assert!(!work.path().join("sandboxes/fw1/e1").exists());
        assert!(work.path().join("sandboxes/fw1/e2").exists());
        assert_eq!(r.kept, 2);
    }

    #[test]
    fn full_headroom_collects_every_ended_sandbox_at_once() {
        let work = tempfile::tempdir().expect("tempdir");
        let young = sandbox(work.path(), "fw", "e", "c1", Duration::ZERO);
        let policy = GcPolicy {
            delay_ms: 7 * 24 * 3_600_000,
            disk_headroom: 1.0,
        };
        let r = collect(work.path(), &BTreeSet::new(), policy, SystemTime::now());
        assert_eq!(r.delay_ms, 0);
        assert_eq!(r.removed, vec![young.clone()]);
        assert!(!work.path().join("sandboxes/fw").exists());
    }

    #[test]
    fn stamping_makes_a_sandbox_young_again() {
        let work = tempfile::tempdir().expect("tempdir");
        let s = sandbox(work.path(), "fw", "e", "c1", Duration::from_secs(7200));
        stamp_ended(&s);
        let policy = GcPolicy {
            delay_ms: 3_600_000,
            disk_headroom: 0.0,
        };
        let r = collect(work.path(), &BTreeSet::new(), policy, SystemTime::now());
        assert!(r.removed.is_empty() && s.exists(), "{r:?}");
    }

    #[test]
    fn delay_shrinks_with_disk_use() {
        let p = GcPolicy {
            delay_ms: 1000,
            disk_headroom: 0.1,
        };
        assert_eq!(p.effective_delay(0.0), Duration::from_millis(900));
        assert_eq!(p.effective_delay(0.5), Duration::from_millis(400));
        assert_eq!(p.effective_delay(0.95), Duration::ZERO);
    }

    #[test]
    fn symlinked_dirs_are_not_followed() {
        let work = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::create_dir_all(outside.path().join("victim")).expect("mkdir");
        let exec = work.path().join("sandboxes/fw/e");
        std::fs::create_dir_all(&exec).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), exec.join("c1")).expect("symlink");
        let policy = GcPolicy {
            delay_ms: 0,
            disk_headroom: 0.0,
        };
        collect(work.path(), &BTreeSet::new(), policy, SystemTime::now());
        assert!(outside.path().join("victim").exists());
    }
}
