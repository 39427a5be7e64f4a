//! Just enough `/proc` reading for the posix containerizer: process identity (pgid, session,
//! start time) and usage (CPU ticks, resident memory).

use std::fs;
use std::io;
use std::sync::OnceLock;

/// Most `/proc` entries looked at in one scan (the kernel's largest `pid_max` is 2^22).
const MAX_PROC_SCAN_ENTRIES: usize = 1 << 22;
/// Most matching processes collected for one group; a fork bomb must not exhaust our memory.
pub(crate) const MAX_GROUP_MEMBERS: usize = 65_536;

/// The fields of `/proc/<pid>/stat` agora uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    /// One-letter state: `R`, `S`, `D`, `Z` (zombie), ...
    pub state: char,
    pub pgrp: i32,
    pub session: i32,
    /// User + system time of the process plus that of its reaped children, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time in clock ticks since boot; with the pid it identifies a process.
    pub start_ticks: u64,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Parses one `/proc/<pid>/stat` line. The command name is in parentheses and may itself
/// contain spaces and parentheses, so the fields are counted from the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    // Fields after the command: index 0 is field 3 (state) of proc(5).
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let number = |n: usize| field(n)?.parse::<u64>().ok();
    let cpu_ticks = [14, 15, 16, 17]
        .iter()
        .try_fold(0u64, |sum, &n| Some(sum.saturating_add(number(n)?)))?;
    Some(ProcStat {
        pid,
        state: field(3)?.chars().next()?,
        pgrp: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        cpu_ticks,
        start_ticks: number(22)?,
    })
}

/// Reads and parses `/proc/<pid>/stat`. `NotFound` when the process does not exist.
pub(crate) fn read_stat(pid: i32) -> io::Result<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse /proc/{pid}/stat"),
        )
    })
}

/// Value in bytes of a `Key:   123 kB` line of `/proc/<pid>/status`.
pub(crate) fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kb: u64 = line
        .get(key.len() + 1..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb.saturating_mul(1024))
}

/// Resident memory now and its high-water mark, in bytes. Zombies and kernel threads have
/// neither; they count as 0.
pub(crate) fn read_memory(pid: i32) -> io::Result<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = parse_status_kb(&text, "VmRSS").unwrap_or(0);
    let hwm = parse_status_kb(&text, "VmHWM").unwrap_or(0);
    Ok((rss, hwm))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc` times.
pub(crate) fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 {
            ticks as u64
        } else {
            100 // the value on every Linux; only used if sysconf fails
        }
    })
}

pub(crate) fn ticks_to_ms(ticks: u64) -> u64 {
    ticks.saturating_mul(1000) / clock_ticks_per_sec()
}

/// All live processes (zombies included) whose process group is `pgid`, at most
/// [`MAX_GROUP_MEMBERS`]. Processes vanishing during the scan are skipped.
pub(crate) fn group_members(pgid: i32) -> io::Result<Vec<ProcStat>> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc")?.take(MAX_PROC_SCAN_ENTRIES) {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Any error means the process is gone or unreadable; neither is ours to count.
        let Ok(stat) = read_stat(pid) else { continue };
        if stat.pgrp == pgid {
            members.push(stat);
            if members.len() >= MAX_GROUP_MEMBERS {
                tracing::warn!(pgid, "process group has too many members; scan truncated");
                break;
            }
        }
    }
    Ok(members)
}

/// Usage summed over a process group at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupSample {
    pub processes: usize,
    pub cpu_time_ms: u64,
    pub rss_bytes: u64,
    /// Largest single-process high-water mark (per-process peaks happen at different times, so
    /// their sum would overstate the group's peak).
    pub max_hwm_bytes: u64,
}

/// Samples the usage of every process in group `pgid`.
pub(crate) fn sample_group(pgid: i32) -> io::Result<GroupSample> {
    let mut sample = GroupSample::default();
    let mut cpu_ticks = 0u64;
    for member in group_members(pgid)? {
        sample.processes += 1;
        cpu_ticks = cpu_ticks.saturating_add(member.cpu_ticks);
        if let Ok((rss, hwm)) = read_memory(member.pid) {
            sample.rss_bytes = sample.rss_bytes.saturating_add(rss);
            sample.max_hwm_bytes = sample.max_hwm_bytes.max(hwm);
        }
    }
    sample.cpu_time_ms = ticks_to_ms(cpu_ticks);
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 10 0 0 0 \
                    7 3 2 1 20 0 1 0 987654 1000 100 18446744073709551615";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.pid, 4242);
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.session, 4242);
        assert_eq!(stat.cpu_ticks, 7 + 3 + 2 + 1);
        assert_eq!(stat.start_ticks, 987_654);
    }

    #[test]
    fn refuses_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_status_kb() {
        let text = "Name:\tsh\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nVmRSSX:\t 9 kB\n";
        assert_eq!(parse_status_kb(text, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(text, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(text, "VmSwap"), None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let stat = read_stat(me).expect("own stat");
        assert_eq!(stat.pid, me);
        assert!(stat.start_ticks > 0);
        let (rss, hwm) = read_memory(me).expect("own status");
        assert!(rss > 0 && hwm >= rss);
        // SAFETY: getpgrp has no preconditions.
        let own_group = unsafe { libc::getpgrp() };
        let members = group_members(own_group).expect("scan");
        assert!(members.iter().any(|m| m.pid == me));
    }
}
