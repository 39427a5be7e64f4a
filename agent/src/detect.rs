//! What the machine offers, for the agent shell (this module reads the OS; the core does not).
//!
//! Detected: `cpus` (online CPUs), `mem` (MemTotal minus headroom for the OS and the agent),
//! `disk` (free space of the work dir's filesystem minus headroom), `ports:[31000-32000]`.
//! Operators may give any of these (or custom resources) with `--resources`; a given name
//! replaces the detected entries of that name, the others stay detected (Mesos semantics).

use agora_actors::resources::{Key, Value, MAX_SCALAR_UNITS};
use agora_actors::{Milli, Ranges, ResourceError, Resources};
use std::collections::BTreeSet;
use std::path::Path;

/// Memory kept back for the OS and the agent itself.
pub const MEM_HEADROOM_MB: u64 = 1024;
/// Disk kept back on the work dir's filesystem (logs, the agent's own state).
pub const DISK_HEADROOM_MB: u64 = 5 * 1024;
/// Port range offered by default, as in Mesos.
pub const DEFAULT_PORTS: (u64, u64) = (31_000, 32_000);

const MIB: u64 = 1024 * 1024;

/// Resources of this machine. Anything that cannot be read is left out (with a warning)
/// rather than guessed; the operator can give it explicitly.
pub fn detect_resources(work_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot count online CPUs; assuming 1");
            1
        });
    let mem_mb = match std::fs::read_to_string("/proc/meminfo") {
        Ok(text) => parse_meminfo_total_mb(&text),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /proc/meminfo; not offering mem");
            None
        }
    };
    let disk_mb = free_disk_mb(work_dir);
    let mut out = Resources::new();
    add_scalar(&mut out, "cpus", Some(cpus));
    add_scalar(
        &mut out,
        "mem",
        mem_mb.map(|m| with_headroom(m, MEM_HEADROOM_MB)),
    );
    add_scalar(
        &mut out,
        "disk",
        disk_mb.map(|d| with_headroom(d, DISK_HEADROOM_MB)),
    );
    let ports = Value::Ranges(Ranges::new(vec![DEFAULT_PORTS]));
    if let Err(e) = out.add_entry(key("ports"), ports) {
        tracing::warn!(error = %e, "cannot add default ports");
    }
    out
}

/// Overrides `detected` with the operator's `given` text per resource name.
pub fn merge_resources(
    given: Option<&str>,
    detected: Resources,
) -> Result<Resources, ResourceError> {
    let Some(text) = given else {
        return Ok(detected);
    };
    let given = Resources::parse(text)?;
    let names: BTreeSet<&str> = given.iter().map(|(k, _)| k.name.as_str()).collect();
    let mut out = Resources::new();
    for (k, v) in detected
        .iter()
        .filter(|(k, _)| !names.contains(k.name.as_str()))
    {
        out.add_entry(k.clone(), v.clone())?;
    }
    for (k, v) in given.iter() {
        out.add_entry(k.clone(), v.clone())?;
    }
    Ok(out)
}

/// `total - headroom`, but never less than half of `total`: small machines still offer
/// something.
pub fn with_headroom(total: u64, headroom: u64) -> u64 {
    total.saturating_sub(headroom).max(total / 2)
}

/// MemTotal from `/proc/meminfo` text, in MB.
pub fn parse_meminfo_total_mb(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value / 1024),
        Some(_) => None,
    }
}

/// Space available to unprivileged writers on the filesystem holding `work_dir` (or its
/// nearest existing ancestor, since the work dir may not be created yet), in MB.
fn free_disk_mb(work_dir: &Path) -> Option<u64> {
    let existing = work_dir.ancestors().find(|p| p.exists())?;
    match nix::sys::statvfs::statvfs(existing) {
        Ok(st) => {
            // The field types differ between platforms (u32 or u64); widen explicitly.
            #[allow(clippy::useless_conversion)]
            let bytes =
                u64::from(st.blocks_available()).saturating_mul(u64::from(st.fragment_size()));
            Some(bytes / MIB)
        }
        Err(e) => {
            tracing::warn!(path = %existing.display(), error = %e, "statvfs failed; not offering disk");
            None
        }
    }
}

fn key(name: &str) -> Key {
    Key {
        name: name.to_string(),
        role: None,
    }
}

fn add_scalar(out: &mut Resources, name: &str, units: Option<u64>) {
    let Some(units) = units.filter(|u| *u > 0) else {
        return;
    };
    let units = units.min(MAX_SCALAR_UNITS as u64) as i64;
    if let Err(e) = out.add_entry(key(name), Value::Scalar(Milli::from_units(units))) {
        tracing::warn!(name, error = %e, "cannot add detected resource");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        Resources::parse(s).unwrap()
    }

    #[test]
    fn meminfo_total_is_parsed_in_mb() {
        let text = "MemTotal:        8048576 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_meminfo_total_mb(text), Some(7859));
        assert_eq!(parse_meminfo_total_mb("MemFree: 1 kB"), None);
        assert_eq!(parse_meminfo_total_mb("MemTotal: lots kB"), None);
        assert_eq!(parse_meminfo_total_mb("MemTotal: 10 MB"), None);
    }

    #[test]
    fn headroom_never_takes_more_than_half() {
        assert_eq!(with_headroom(8192, 1024), 7168);
        assert_eq!(with_headroom(1536, 1024), 768);
        assert_eq!(with_headroom(0, 1024), 0);
    }

    #[test]
    fn given_names_replace_detected_ones() {
        let detected = r("cpus:8;mem:16000;disk:100000;ports:[31000-32000]");
        let m = merge_resources(Some("cpus:2;gpus:1"), detected.clone()).unwrap();
        assert_eq!(
            m,
            r("cpus:2;gpus:1;mem:16000;disk:100000;ports:[31000-32000]")
        );
        // A reservation of a name replaces every detected entry of that name.
        let m = merge_resources(Some("cpus(ads):3;ports:[5000-5001]"), detected.clone()).unwrap();
        assert_eq!(m, r("cpus(ads):3;mem:16000;disk:100000;ports:[5000-5001]"));
        assert_eq!(merge_resources(None, detected.clone()).unwrap(), detected);
        assert!(merge_resources(Some("cpus:-1"), detected).is_err());
    }

    #[test]
    fn detects_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let res = detect_resources(&dir.path().join("not-yet-created"));
        assert!(res.scalar_total("cpus") >= Milli::from_units(1));
        assert!(res.scalar_total("mem") > Milli::ZERO, "{res}");
        assert!(res.ranges_total("ports").contains_value(31_000));
        assert!(res.scalar_total("disk") > Milli::ZERO, "{res}");
    }
}
