//! Workload pieces of a scenario beyond the SDK frameworks themselves: task durations read
//! from CSV traces, and data blocks with replicas on agents (what locality preferences are
//! made of) and the cost of reading one from elsewhere.

use crate::scenario::{ScenarioError, MAX_TASKS_PER_FRAMEWORK};

/// Largest trace file read (bytes).
pub const MAX_TRACE_BYTES: u64 = 64 << 20;

/// Reads a CSV trace of task durations: a header naming a `duration_ms` column, then one task
/// per line (other columns, such as a job id or a submit time, are ignored).
pub fn read_trace(path: &std::path::Path) -> Result<Vec<u64>, ScenarioError> {
    let read_err = |why: String| ScenarioError::Read {
        path: path.display().to_string(),
        why,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| read_err(e.to_string()))?
        .len();
    if len > MAX_TRACE_BYTES {
        return Err(read_err(format!("larger than {MAX_TRACE_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
    parse_trace(&text).map_err(read_err)
}

/// Parses the text of a duration trace (see [`read_trace`]).
pub fn parse_trace(text: &str) -> Result<Vec<u64>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or("empty trace")?;
    let col = header
        .split(',')
        .position(|c| c.trim() == "duration_ms")
        .ok_or("the header has no duration_ms column")?;
    let mut out = Vec::new();
    for (n, line) in lines {
        if out.len() >= MAX_TASKS_PER_FRAMEWORK {
            return Err(format!("more than {MAX_TASKS_PER_FRAMEWORK} tasks"));
        }
        let field = line.split(',').nth(col).map(str::trim).unwrap_or("");
        let ms: u64 = field
            .parse()
            .map_err(|_| format!("line {}: bad duration_ms {field:?}", n + 1))?;
        out.push(ms.max(1));
    }
    if out.is_empty() {
        return Err("no tasks in the trace".into());
    }
    Ok(out)
}

/// The agents (hostnames `agent-<i>`) holding the replicas of task `index`'s block of
/// framework `name`: `replicas` distinct agents picked by a hash, as a random HDFS-style
/// placement that does not depend on the run's seed (the data is laid out before the run).
pub fn block_hosts(name: &str, index: usize, replicas: usize, agents: usize) -> Vec<String> {
    let mut hosts: Vec<usize> = Vec::with_capacity(replicas);
    let mut salt = 0u64;
    while hosts.len() < replicas.min(agents) {
        let h = mix(name, index as u64, salt);
        let a = (h % agents as u64) as usize;
        if !hosts.contains(&a) {
            hosts.push(a);
        }
        salt += 1;
    }
    hosts.into_iter().map(|a| format!("agent-{a}")).collect()
}

/// A task command that reads a block: `BASE block=HOST,HOST,.. remote_pct=N`. The simulated
/// executor runs it N% longer on an agent not in the list (the block comes over the network).
pub fn with_block(base: &str, hosts: &[String], remote_pct: u64) -> String {
    format!("{base} block={} remote_pct={remote_pct}", hosts.join(","))
}

/// Splits a task command into its duration form (`sim:...`) and the factor its duration is
/// multiplied by on `host` (1 when the command reads no block or `host` holds it).
pub fn read_cost<'a>(command: &'a str, host: &str) -> Result<(&'a str, f64), String> {
    let mut words = command.split_whitespace();
    let base = words.next().unwrap_or("");
    let (mut local, mut pct) = (true, 0u64);
    for w in words {
        match w.split_once('=') {
            Some(("block", hosts)) => local = hosts.split(',').any(|h| h == host),
            Some(("remote_pct", n)) => {
                pct = n
                    .parse()
                    .map_err(|_| format!("bad remote_pct in {command:?}"))?;
            }
            _ => return Err(format!("unknown word {w:?} in {command:?}")),
        }
    }
    Ok((base, if local { 1.0 } else { 1.0 + pct as f64 / 100.0 }))
}

fn mix(name: &str, index: u64, salt: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name
        .bytes()
        .chain(index.to_le_bytes())
        .chain(salt.to_le_bytes())
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// The allocator a scenario asks for: its policy, and the roles' priority levels.
pub fn allocator(
    spec: &crate::scenario::AllocatorSpec,
    seed: u64,
) -> Result<agora_allocator::DrfAllocator, String> {
    use agora_allocator::drf::PolicyKind;
    use agora_allocator::{Allocator, DrfAllocator, DrfConfig, OperatorCommand};
    let config = DrfConfig {
        policy: PolicyKind::parse(&spec.policy).map_err(|e| e.to_string())?,
        lottery_seed: seed,
        ..DrfConfig::default()
    };
    let mut alloc = DrfAllocator::new(config).map_err(|e| e.to_string())?;
    if !spec.priorities.is_empty() {
        let cmd = OperatorCommand::UpdatePriorities {
            priorities: spec.priorities.clone(),
        };
        alloc.operate(cmd).map_err(|e| e.to_string())?;
    }
    Ok(alloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_parse_by_header_and_reject_garbage() {
        let t = parse_trace("job,duration_ms\n# comment\nj1,1500\nj1, 20\n\nj2,0\n").unwrap();
        assert_eq!(t, vec![1500, 20, 1]);
        assert!(parse_trace("ms\n5\n").is_err());
        assert!(parse_trace("duration_ms\nfive\n").is_err());
        assert!(parse_trace("duration_ms\n").is_err());
    }

    #[test]
    fn remote_reads_cost_the_penalty_and_local_ones_nothing() {
        let hosts = vec!["agent-1".to_string(), "agent-4".to_string()];
        let cmd = with_block("sim:const:4000", &hosts, 50);
        assert_eq!(read_cost(&cmd, "agent-4"), Ok(("sim:const:4000", 1.0)));
        assert_eq!(read_cost(&cmd, "agent-2"), Ok(("sim:const:4000", 1.5)));
        assert_eq!(read_cost("sim:exp:10", "agent-2"), Ok(("sim:exp:10", 1.0)));
        assert!(read_cost("sim:const:1 remote_pct=x", "a").is_err());
        assert!(read_cost("sim:const:1 colour=red", "a").is_err());
    }

    #[test]
    fn blocks_have_distinct_replicas_spread_over_agents() {
        let mut count = vec![0usize; 10];
        for i in 0..1000 {
            let hosts = block_hosts("fw", i, 3, 10);
            let mut dedup = hosts.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), 3, "{hosts:?}");
            for h in hosts {
                count[h["agent-".len()..].parse::<usize>().unwrap()] += 1;
            }
        }
        // 3000 replicas over 10 agents: each gets roughly 300.
        assert!(count.iter().all(|&c| (200..400).contains(&c)), "{count:?}");
        assert_eq!(block_hosts("fw", 1, 5, 2).len(), 2);
    }
}
