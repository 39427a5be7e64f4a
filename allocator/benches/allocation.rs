//! Allocation-cycle benchmarks in the spirit of Mesos's allocator benchmarks
//! (`HierarchicalAllocator_BENCHMARK_Test`): agents `cpus:24;mem:4096;disk:4096;
//! ports:[31000-32000]`, every framework declining every offer with a long (1 h) filter
//! ("DeclineOffers"), and the same with 90% of frameworks suppressed.
//!
//! Run: `cargo bench -p agora-allocator` (prints a table). `AGORA_BENCH_SIZES=1000x100,...`
//! picks sizes; `AGORA_BENCH_ROUNDS` the measured cycles per scenario; `AGORA_BENCH_ONLY`
//! a substring of the scenarios to run.
//!
//! Memory is the allocator's own heap (bytes live after setup, the first cycle and its
//! declines, counted by a wrapping global allocator that is switched off while cycles are
//! timed), not the process RSS.

use agora_actors::{AgentId, FrameworkId, FrameworkInfo, Resources, Time};
use agora_allocator::{
    Allocation, Allocator, AllocatorEvent, DrfAllocator, DrfConfig, OperatorCommand, PolicyKind,
    Quota, Weight,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Counting is switched off while cycles are timed: the atomic adds would slow every malloc.
static COUNTING: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(n, Ordering::Relaxed);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const AGENT: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
const FILTER_MS: u64 = 3_600_000;

#[derive(Clone, Copy)]
struct Scenario {
    agents: usize,
    frameworks: usize,
    /// Fraction of frameworks suppressed (in thousandths).
    suppressed_per_mille: usize,
    /// Roles: frameworks are spread over this many roles (each with a weight).
    roles: usize,
    /// Every role also gets a quota (guarantee `cpus:1;mem:32`, limit `cpus:2400`).
    quota: bool,
    policy: PolicyKind,
}

struct Outcome {
    setup: Duration,
    first: Duration,
    cycles: Vec<Duration>,
    /// Thread CPU time of the same cycles.
    cpu: Vec<Duration>,
    offers: usize,
    heap_mb: f64,
}

fn setup(s: Scenario) -> DrfAllocator {
    let cfg = DrfConfig {
        policy: s.policy,
        lottery_seed: 1,
        ..DrfConfig::default()
    };
    let mut a = DrfAllocator::new(cfg).expect("valid config");
    let total = Resources::parse(AGENT).expect("valid resources");
    for i in 0..s.agents {
        a.handle(
            Time(0),
            AllocatorEvent::AddAgent {
                agent_id: AgentId::new(format!("agent-{i:06}")).expect("id"),
                hostname: format!("host-{i}"),
                total: total.clone(),
                attributes: BTreeMap::new(),
                used: BTreeMap::new(),
            },
        );
    }
    if s.roles > 1 {
        let weights = (0..s.roles)
            .map(|r| {
                let role = format!("role-{r}");
                let w = Weight::new(&role, 1.0 + (r % 4) as f64).expect("weight");
                (role, w)
            })
            .collect();
        a.operate(OperatorCommand::UpdateWeights { weights })
            .expect("weights");
    }
    if s.quota {
        for r in 0..s.roles {
            let role = format!("role-{r}");
            let quota = Quota::parse(&role, "cpus:1;mem:32", Some("cpus:2400")).expect("quota");
            a.operate(OperatorCommand::SetQuota {
                role,
                quota: Some(quota),
            })
            .expect("quota accepted");
        }
    }
    let suppressed = s.frameworks * s.suppressed_per_mille / 1000;
    for i in 0..s.frameworks {
        let id = FrameworkId::new(format!("framework-{i:05}")).expect("id");
        let mut info = FrameworkInfo::new("bench");
        info.roles = vec![if s.roles > 1 {
            format!("role-{}", i % s.roles)
        } else {
            "*".to_string()
        }];
        a.handle(
            Time(0),
            AllocatorEvent::AddFramework {
                framework_id: id.clone(),
                info,
                used: BTreeMap::new(),
                active: true,
            },
        );
        if i < suppressed {
            a.handle(Time(0), AllocatorEvent::Suppress { framework_id: id });
        }
    }
    a
}

/// Every framework declines everything it was offered, with a long filter.
fn decline_all(a: &mut DrfAllocator, now: Time, offers: Vec<Allocation>) {
    for x in offers {
        a.handle(
            now,
            AllocatorEvent::Recover {
                framework_id: x.framework_id,
                agent_id: x.agent_id,
                resources: x.resources,
                refuse_ms: Some(FILTER_MS),
            },
        );
    }
}

fn run(s: Scenario, rounds: usize) -> Outcome {
    LIVE.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let base = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut a = setup(s);
    let setup_time = started.elapsed();
    let started = Instant::now();
    let first = a.allocate(Time(1));
    let first_time = started.elapsed();
    let mut offers = first.len();
    decline_all(&mut a, Time(1), first);
    let heap = LIVE.load(Ordering::Relaxed).saturating_sub(base);
    COUNTING.store(false, Ordering::Relaxed);
    let mut cycles = Vec::new();
    let mut cpu = Vec::new();
    for round in 0..rounds {
        let now = Time(2 + round as u64);
        let started = Instant::now();
        let cpu_started = thread_cpu();
        let got = a.allocate(now);
        cpu.push(thread_cpu().saturating_sub(cpu_started));
        cycles.push(started.elapsed());
        offers += got.len();
        decline_all(&mut a, now, got);
    }
    if let Err(e) = a.check_invariants() {
        panic!("ledger inconsistent after the benchmark: {e}");
    }
    Outcome {
        setup: setup_time,
        first: first_time,
        cycles,
        cpu,
        offers,
        heap_mb: heap as f64 / (1024.0 * 1024.0),
    }
}

/// CPU time of this thread: unlike wall time it does not count time other processes on a
/// shared machine took the core away.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sizes() -> Vec<(usize, usize)> {
    let text = std::env::var("AGORA_BENCH_SIZES")
        .unwrap_or_else(|_| "1000x100,10000x1000,20000x2000,50000x5000".into());
    text.split(',')
        .filter_map(|p| {
            let (a, f) = p.trim().split_once('x')?;
            Some((a.parse().ok()?, f.parse().ok()?))
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run a tiny size then.
    let bench = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("AGORA_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let sizes = if bench { sizes() } else { vec![(100, 10)] };
    // `AGORA_BENCH_ONLY=decline drf` runs only scenarios whose "name policy" contains it.
    let only = std::env::var("AGORA_BENCH_ONLY").ok();
    println!(
        "| scenario | policy | agents x frameworks | setup ms | first cycle ms | decline cycle ms wall (mean / max) | decline cycle ms CPU (mean / min) | offers | heap MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let scenarios: [(&str, usize, usize, bool); 4] = [
        ("decline", 0, 1, false),
        ("decline, 90% suppressed", 900, 1, false),
        ("decline, 1000 weighted roles", 0, 1000, false),
        ("decline, 3000 roles with quota", 0, 3000, true),
    ];
    for (agents, frameworks) in sizes {
        for (name, suppressed, roles, quota) in scenarios {
            for policy in PolicyKind::ALL {
                if policy != PolicyKind::Drf && (roles > 1 || suppressed > 0) {
                    continue;
                }
                let label = format!("{name} {}", policy.name());
                if only.as_deref().is_some_and(|o| !label.contains(o)) {
                    continue;
                }
                let s = Scenario {
                    agents,
                    frameworks,
                    suppressed_per_mille: suppressed,
                    roles: roles.min(frameworks),
                    quota,
                    policy,
                };
                let o = run(s, rounds);
                let mean =
                    o.cycles.iter().map(|d| ms(*d)).sum::<f64>() / o.cycles.len().max(1) as f64;
                let max = o.cycles.iter().map(|d| ms(*d)).fold(0.0, f64::max);
                let n = o.cpu.len().max(1) as f64;
                let cpu_mean = o.cpu.iter().map(|d| ms(*d)).sum::<f64>() / n;
                let cpu_min = o.cpu.iter().map(|d| ms(*d)).fold(f64::MAX, f64::min);
                println!(
                    "| {name} | {} | {agents} x {frameworks} | {:.0} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {:.1} |",
                    policy.name(),
                    ms(o.setup),
                    ms(o.first),
                    mean,
                    max,
                    cpu_mean,
                    cpu_min,
                    o.offers,
                    o.heap_mb
                );
            }
        }
    }
}
