//! The simulator against the real thing: one small elastic batch job (24 tasks of 2 s on a
//! master and 3 agents of 4 cpus: two waves of 12) runs in `agora sim` and on real processes
//! on 127.0.0.1 (`agora run`, the batch framework underneath). Task counts must match and the
//! makespans (first launch to last end) agree within a stated tolerance.
//!
//! Tolerance: 1.5 s + 20% of the simulated makespan. The simulator has the real cores and the
//! real allocation interval (1 s), but its containers start in 5-50 ms and its links take
//! 1-20 ms; on real processes each wave also pays fork/exec of the executors, their
//! registration and the sandbox setup (100-500 ms on this 2-core machine under load), and the
//! re-offer of freed slots waits for the next allocation run (up to the 1 s interval in both,
//! but at a different phase). Two waves: at most about 2 x 0.5 s of launch cost plus 1 s of
//! phase difference, hence the absolute part; the relative part covers a loaded machine.

mod common;

use common::{Cluster, ClusterOpts};

const TASKS: usize = 24;

fn sim_makespan_ms() -> (usize, u64) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios/sim-vs-real.toml");
    let sc = agora_sim::Scenario::load(&path).expect("scenario");
    let r = agora_sim::run(&sc, 1, |_, _| {}).expect("sim runs");
    assert!(r.ok(), "simulation failed: {:?}", r.failure);
    let f = &r.frameworks[0];
    assert_eq!(f.tasks, TASKS);
    (
        f.finished,
        f.makespan_ms.expect("the simulated job completed"),
    )
}

/// `N finished, ...; first launch to last end X.XXs` from `agora run`'s summary.
fn parse_summary(out: &str) -> (usize, u64) {
    let line = out
        .lines()
        .find(|l| l.contains("first launch to last end"))
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"));
    let finished: usize = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad summary {line}"));
    let secs: f64 = line
        .split("first launch to last end ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad summary {line}"));
    (finished, (secs * 1000.0).round() as u64)
}

#[test]
fn small_elastic_batch_agrees_between_simulator_and_real_processes() {
    let (sim_finished, sim_ms) = sim_makespan_ms();
    let c = Cluster::start(ClusterOpts {
        agents: 3,
        agent_resources: "cpus:4;mem:4096;disk:10000;ports:[31000-32000]".into(),
        master_flags: vec![],
    });
    let (code, out) = c.run_cli(&[
        "run",
        "--master",
        &c.master_addr,
        "--name",
        "sim-vs-real",
        "--instances",
        &TASKS.to_string(),
        "--cpus",
        "1",
        "--mem",
        "256",
        "--shared-executor",
        "false",
        "--no-progress",
        "--timeout-secs",
        "120",
        "--",
        "sleep 2",
    ]);
    assert_eq!(code, 0, "{out}");
    let (real_finished, real_ms) = parse_summary(&out);
    assert_eq!((real_finished, sim_finished), (TASKS, TASKS), "{out}");
    let tolerance_ms = 1_500 + sim_ms / 5;
    eprintln!("makespan: simulated {sim_ms} ms, real {real_ms} ms, tolerance {tolerance_ms} ms");
    assert!(
        real_ms.abs_diff(sim_ms) <= tolerance_ms,
        "makespan: simulated {sim_ms} ms, real {real_ms} ms (tolerance {tolerance_ms} ms)\n{out}"
    );
}
