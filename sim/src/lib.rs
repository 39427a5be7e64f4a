//! agora-sim: the whole cluster on a virtual clock.
//!
//! The real `MasterCore`, `DrfAllocator`, `AgentCore`, `SchedulerDriverCore` (with the real
//! example frameworks) and `ExecutorDriverCore` (with a simulated executor whose tasks run for a
//! virtual duration) run on one thread, driven by an event queue ordered by (virtual time,
//! sequence). A seeded network (ChaCha) delays, resets, drops, duplicates and reorders messages
//! between clients and the master and partitions nodes; agents and the master crash and restart.
//! After every event the invariants in [`check`] are verified. A run is a **safety phase** with
//! faults followed by a **liveness phase** without faults that must converge (every batch task
//! finished) within a bound. Every event is folded into a trace hash: the same seed on the same
//! commit gives the same hash.
//!
//! Restarts ([`persist`]): an agent recovers from its checkpoint (kept in memory across the
//! crash, rewritten after every step as the real shell does) and re-registers under its old id;
//! after an agent *process* crash its executors kept running and reconnect, after a *machine*
//! crash they are gone and reported so. A restarted master reads its registry (the admitted
//! agents), rebuilds its soft state from re-registering agents and re-subscribing schedulers,
//! and declares the registry agents that do not come back in time unreachable.

pub mod check;
pub mod exec;
pub mod experiments;
pub mod fw;
pub mod masters;
pub mod metrics;
pub mod persist;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod workload;
pub mod world;

pub use scenario::{Scenario, ScenarioError};

use serde::Serialize;
use world::World;

/// Fault-free time after the batch work is done before the final checks.
pub const SETTLE_MS: u64 = 20_000;

/// Most events one run may take (a livelock guard).
pub const MAX_EVENTS: u64 = 50_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkReport {
    pub name: String,
    pub kind: &'static str,
    pub tasks: usize,
    pub finished: usize,
    pub retries: u64,
    pub subscribed_at_ms: Option<u64>,
    pub completion_ms: Option<u64>,
    /// Subscription → the moment every task had started running (first runs of each task's
    /// latest attempt): the framework's ramp-up time.
    pub ramp_up_ms: Option<u64>,
    /// First launch → last task end (what `agora run` prints as "first launch to last end").
    pub makespan_ms: Option<u64>,
    pub duplicate_updates_filtered: u64,
    /// Tasks launched, and those launched on an agent holding their data block.
    pub tasks_launched: u64,
    pub launched_local: u64,
    /// CPU used / CPU held (used + offered) while the framework ran (with `sample_ms`).
    pub held_utilization: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub phase: &'static str,
    pub at_ms: u64,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    /// Hex digest of the event trace.
    pub trace: String,
    pub events: u64,
    pub virtual_ms: u64,
    pub failure: Option<Failure>,
    pub frameworks: Vec<FrameworkReport>,
    pub faults: std::collections::BTreeMap<&'static str, u64>,
    /// Usage samples (with the scenario's `sample_ms`); written as CSV, not in the JSON.
    #[serde(skip)]
    pub metrics: Option<metrics::Metrics>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
    /// The command that replays this run.
    pub fn replay_command(&self, scenario_path: &str) -> String {
        format!(
            "agora sim run {scenario_path} --seed {} --out /tmp/agora-sim-{}",
            self.seed, self.seed
        )
    }
}

/// Runs `scenario` with `seed`. `progress(virtual_ms, bound_ms)` is called now and then.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, String> {
    let mut w = World::new(scenario.clone(), seed)?;
    let bound = scenario.safety_ms.saturating_add(scenario.liveness_ms);
    let mut failure = None;
    let mut settle_until = None;
    let mut metrics = (scenario.sample_ms > 0).then(|| {
        let names = scenario.frameworks.iter().map(|f| f.name.clone()).collect();
        metrics::Metrics::new(scenario.sample_ms, names)
    });
    while failure.is_none() {
        if let Some(m) = metrics.as_mut() {
            m.observe(&w);
        }
        if !w.step() {
            failure = Some(fail(&w, "event queue ran dry".into()));
            break;
        }
        let checked = if w.events % scenario.check_every_events == 0 {
            check::invariants(&w)
        } else {
            Ok(())
        };
        if let Err(what) = checked {
            failure = Some(fail(&w, what));
            break;
        }
        if w.events % 2_000 == 0 {
            progress(w.now.ms(), bound);
        }
        if w.liveness && w.has_batch() && w.batch_done() {
            // Let reconnections in flight settle before judging where tasks run.
            let until = *settle_until.get_or_insert(w.now.plus_ms(SETTLE_MS));
            if w.now >= until {
                if let Err(what) = check::final_checks(&w) {
                    failure = Some(fail(&w, what));
                }
                break;
            }
        }
        if w.now.ms() > bound {
            if w.has_batch() {
                let what = format!(
                    "not converged within the liveness bound of {} ms: {}",
                    scenario.liveness_ms,
                    stuck(&w)
                );
                failure = Some(fail(&w, what));
            } else if let Err(what) = check::final_checks(&w) {
                failure = Some(fail(&w, what));
            }
            break;
        }
        if w.events >= MAX_EVENTS {
            failure = Some(fail(&w, format!("more than {MAX_EVENTS} events")));
        }
    }
    progress(w.now.ms().min(bound), bound);
    let mut r = report(&w, failure);
    if let Some(m) = &metrics {
        for (i, f) in r.frameworks.iter_mut().enumerate() {
            f.held_utilization = m.held_utilization(i);
        }
    }
    r.metrics = metrics;
    Ok(r)
}

/// What keeps the batch frameworks from finishing, for the failure message.
fn stuck(w: &World) -> String {
    let mut out = Vec::new();
    for s in &w.scheds {
        let Some(b) = s.driver.scheduler().batch() else {
            continue;
        };
        if s.driver.stopped().is_some() {
            continue;
        }
        let p = b.progress();
        let open: Vec<String> = b
            .tasks()
            .iter()
            .filter(|t| !t.phase.is_final())
            .take(5)
            .map(|t| {
                format!(
                    "{} {:?} on {:?}",
                    t.task_id,
                    t.phase,
                    t.agent_id.as_ref().map(|a| a.to_string())
                )
            })
            .collect();
        out.push(format!(
            "{} (subscribed {}): {}/{} finished, pending {}, staged {}, running {}; e.g. {}",
            s.name,
            s.driver.is_subscribed(),
            p.finished,
            p.total,
            p.pending,
            p.staged,
            p.running,
            open.join(", ")
        ));
    }
    for a in &w.agents {
        if let Some(c) = a.core.as_ref() {
            let st = c.state();
            out.push(format!(
                "{}: id {:?} conn {:?} connected {} registered {} tasks {}",
                a.hostname,
                st.id.map(|i| i.to_string()),
                a.conn,
                st.connected,
                st.registered,
                st.tasks.len()
            ));
        }
    }
    if let Some(core) = w.leader_core() {
        let st = core.state();
        for f in &st.frameworks {
            out.push(format!(
                "master: framework {} {} active {} suppressed {} offers {} used {} offered {}",
                f.id, f.name, f.active, f.suppressed, f.offers, f.used, f.offered
            ));
        }
        for a in &st.agents {
            out.push(format!(
                "master: agent {} connected {} total {} used {} offered {}",
                a.id, a.connected, a.total, a.used, a.offered
            ));
        }
    }
    out.join("; ")
}

fn ramp_up(b: &agora_frameworks::BatchFramework) -> Option<u64> {
    let start = b.progress().subscribed_at?;
    let mut last = start;
    for t in b.tasks() {
        last = last.max(t.timing.running_at?);
    }
    Some(last.since(start))
}

fn fail(w: &World, what: String) -> Failure {
    Failure {
        phase: if w.liveness { "liveness" } else { "safety" },
        at_ms: w.now.ms(),
        what,
    }
}

fn report(w: &World, failure: Option<Failure>) -> Report {
    let frameworks = w
        .scheds
        .iter()
        .map(|s| {
            let t = s.driver.scheduler();
            let dups = s.driver.stats().duplicate_updates;
            match t.batch() {
                Some(b) => {
                    let p = b.progress();
                    FrameworkReport {
                        name: s.name.clone(),
                        kind: "batch",
                        tasks: p.total,
                        finished: p.finished,
                        retries: p.retries,
                        subscribed_at_ms: p.subscribed_at.map(|t| t.ms()),
                        completion_ms: p.completion_ms(),
                        ramp_up_ms: ramp_up(b),
                        makespan_ms: match (p.first_submit, p.last_finish) {
                            (Some(s), Some(e)) if p.done => Some(e.since(s)),
                            _ => None,
                        },
                        duplicate_updates_filtered: dups,
                        tasks_launched: p.tasks_launched,
                        launched_local: p.launched_local,
                        held_utilization: None,
                    }
                }
                None => FrameworkReport {
                    name: s.name.clone(),
                    kind: "service",
                    tasks: 0,
                    finished: 0,
                    retries: 0,
                    subscribed_at_ms: None,
                    completion_ms: None,
                    ramp_up_ms: None,
                    makespan_ms: None,
                    duplicate_updates_filtered: dups,
                    tasks_launched: 0,
                    launched_local: 0,
                    held_utilization: None,
                },
            }
        })
        .collect();
    Report {
        scenario: w.sc.name.clone(),
        seed: w.seed,
        trace: format!("{:016x}", w.hash),
        events: w.events,
        virtual_ms: w.now.ms(),
        failure,
        frameworks,
        faults: w.stats.clone(),
        metrics: None,
    }
}
