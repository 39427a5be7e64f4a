//! Seed/paper Table 2: ramp-up time, job completion time and utilization of a framework that
//! joins a cluster whose k slots are all busy with another framework's tasks of mean duration
//! T, for an **elastic** framework (uses each slot as it frees; its work, kβT slot-seconds,
//! comes as many short tasks) and a **rigid** one (a gang of k tasks of βT that starts only
//! when it holds all k slots), with **constant** and **exponential** task durations.
//!
//! The busy cluster: constant durations are in steady state, so the holder's tasks end at
//! T/k, 2T/k, …, T (remaining times spread evenly, as the paper assumes); exponential ones are
//! memoryless, so k tasks of mean T all started at once are already in steady state.
//!
//! The model, for finite k and the experiment's task sizes, as a function of the holder's task
//! durations X_1..X_k (one "draw"; with constant durations the only one):
//! - ramp-up = max X_i (both frameworks: they hold all k slots once the last holder task ends);
//! - rigid completion = max X_i + βT; rigid utilization of the slots held =
//!   kβT / (kβT + Σ (max X − X_i)) (a slot is held idle from X_i until the gang starts);
//! - elastic completion = the end of a greedy schedule of kβ·split tasks of T/split on slots
//!   freeing at X_i, with no launch latency; elastic utilization = 1.
//!
//! `expectation` averages that function over the draws (exactly for constant durations,
//! numerically over [`MODEL_DRAWS`] exponential draws otherwise); it matches the closed forms
//! where they exist (E max = T·H_k, H_k the k-th harmonic number; rigid completion (H_k + β)T).
//! The paper's formulas are large-k, fluid approximations: ramp-up T / T ln k; completion
//! (1/2+β)T, (1+β)T, (1+β)T, (ln k+β)T; utilization 1, 1, β/(1/2+β), β/(ln k−1+β).
//!
//! Every run is also compared with the model **on its own draws** (the holder durations the run
//! actually drew): the difference is what the simulated cluster adds (launch round trips, the
//! allocation interval), free of the sampling noise of max X (whose standard deviation is about
//! 1.28·T for exponential durations, so 40 seeds leave a ±8% 95% interval on the mean alone).

use super::{csv, mean, run_ok, stderr, ExperimentSpec, Output};
use crate::plot::{BarChart, LineChart, Series};
use crate::scenario::{AgentsSpec, Duration, FaultSpec, FrameworkSpec, NetworkSpec, Scenario};
use std::sync::Arc;

/// When the measured framework subscribes (the holder's tasks run by then).
pub const JOIN_MS: u64 = 200;

/// Exponential draws the model's expectation is averaged over (its standard error is then
/// below 0.3% of the mean for every metric here).
pub const MODEL_DRAWS: u64 = 20_000;

/// Seeds of the model's own draws start here, far from the simulated runs' seeds.
const MODEL_SEED_BASE: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub rigid: bool,
    pub exp: bool,
    pub k: usize,
}

/// The metrics, in the order of every `[f64; 3]` here.
pub const METRICS: [&str; 3] = ["ramp_up_ms", "completion_ms", "utilization"];

/// One measured quantity against its models.
#[derive(Debug, Clone)]
pub struct Row {
    pub point: Point,
    pub metric: &'static str,
    pub seeds: usize,
    pub simulated: f64,
    pub stderr: f64,
    /// The model's expectation over the draws.
    pub model: f64,
    pub paper: f64,
    /// Mean and standard error over runs of (simulated − the model on that run's own draws).
    pub paired: f64,
    pub paired_stderr: f64,
}

impl Row {
    pub fn error_pct(&self) -> f64 {
        100.0 * (self.simulated - self.model) / self.model
    }
    /// What the simulated cluster adds to the model, as a share of the model's expectation.
    pub fn paired_pct(&self) -> f64 {
        100.0 * self.paired / self.model
    }
}

pub fn harmonic(k: usize) -> f64 {
    (1..=k).map(|i| 1.0 / i as f64).sum()
}

/// The holder's task durations (ms) in the run with `seed`: the trace for constant durations,
/// else what the simulated executor draws for tasks `task-0..` (`exec::task_duration_ms`).
pub fn draws(p: Point, t_ms: u64, seed: u64) -> Vec<f64> {
    (0..p.k)
        .map(|i| {
            if p.exp {
                let cmd = format!("sim:exp:{t_ms}");
                crate::exec::task_duration_ms(&cmd, seed, &format!("task-{i}"))
                    .ok()
                    .flatten()
                    .unwrap_or(0) as f64
            } else {
                ((i as u64 + 1) * t_ms / p.k as u64) as f64
            }
        })
        .collect()
}

/// The model's ramp-up, completion (ms) and utilization for one draw of holder durations.
pub fn predict(p: Point, spec: &ExperimentSpec, x: &[f64]) -> [f64; 3] {
    let t = spec.t_ms as f64;
    let last = x.iter().cloned().fold(0.0, f64::max);
    if p.rigid {
        let work = p.k as f64 * spec.beta * t;
        let idle: f64 = x.iter().map(|xi| last - xi).sum();
        return [last, last + spec.beta * t, work / (work + idle)];
    }
    let (tasks, task_ms) = elastic_job(p, spec);
    // Greedy: each task goes to the slot that frees first.
    let mut free: std::collections::BinaryHeap<std::cmp::Reverse<u64>> =
        x.iter().map(|&xi| std::cmp::Reverse(xi as u64)).collect();
    let mut end = 0;
    for _ in 0..tasks {
        let Some(std::cmp::Reverse(f)) = free.pop() else {
            break;
        };
        end = end.max(f + task_ms);
        free.push(std::cmp::Reverse(f + task_ms));
    }
    [last, end as f64, 1.0]
}

/// The elastic job's task count and task duration (ms): its kβT slot-seconds of work in
/// tasks of T / `elastic_split`.
fn elastic_job(p: Point, spec: &ExperimentSpec) -> (usize, u64) {
    let split = spec.elastic_split.max(1);
    let tasks = (p.k as f64 * spec.beta * split as f64).round() as usize;
    (tasks, spec.t_ms / split)
}

/// The model's expectation of each metric (see the module docs).
pub fn expectation(p: Point, spec: &ExperimentSpec) -> [f64; 3] {
    if !p.exp {
        return predict(p, spec, &draws(p, spec.t_ms, 0));
    }
    let mut sum = [0.0; 3];
    for d in 0..MODEL_DRAWS {
        let m = predict(p, spec, &draws(p, spec.t_ms, MODEL_SEED_BASE + d));
        for i in 0..3 {
            sum[i] += m[i];
        }
    }
    let mut e = sum.map(|s| s / MODEL_DRAWS as f64);
    // Where a closed form exists it replaces the average (no sampling error at all).
    let (t, h) = (spec.t_ms as f64, harmonic(p.k));
    e[0] = t * h;
    if p.rigid {
        e[1] = (h + spec.beta) * t;
    }
    e
}

/// The paper's (large-k) formulas, in ms / fraction.
pub fn paper(p: Point, t: f64, beta: f64) -> [f64; 3] {
    let ln = (p.k as f64).ln();
    match (p.rigid, p.exp) {
        (false, false) => [t, (0.5 + beta) * t, 1.0],
        (false, true) => [t * ln, (1.0 + beta) * t, 1.0],
        (true, false) => [t, (1.0 + beta) * t, beta / (0.5 + beta)],
        (true, true) => [t * ln, (ln + beta) * t, beta / (ln - 1.0 + beta)],
    }
}

pub fn scenario(p: Point, spec: &ExperimentSpec) -> Scenario {
    let t = spec.t_ms;
    let slot = "cpus:1;mem:1024";
    let mut holder = FrameworkSpec::batch("holder", p.k, slot);
    if p.exp {
        holder.duration = Duration::Exp;
        holder.mean_ms = t;
    } else {
        holder.duration = Duration::Trace;
        holder.trace_ms = Arc::new(draws(p, t, 0).iter().map(|&x| x as u64).collect());
    }
    let mut job = if p.rigid {
        let mut j = FrameworkSpec::batch("job", p.k, slot);
        j.gang = true;
        j.mean_ms = (spec.beta * t as f64).round() as u64;
        j
    } else {
        let (tasks, task_ms) = elastic_job(p, spec);
        let mut j = FrameworkSpec::batch("job", tasks, slot);
        j.mean_ms = task_ms;
        j
    };
    job.start_ms = JOIN_MS;
    Scenario {
        name: format!(
            "table2-{}-{}-k{}",
            if p.rigid { "rigid" } else { "elastic" },
            if p.exp { "exp" } else { "const" },
            p.k
        ),
        safety_ms: 0,
        liveness_ms: 200 * t,
        agents: AgentsSpec {
            count: p.k,
            resources: slot.into(),
            racks: 1,
        },
        masters: 1,
        raft: Default::default(),
        frameworks: vec![holder, job],
        // A fast LAN and an eager allocator: the model has no launch latency.
        network: NetworkSpec {
            min_delay_ms: 1,
            max_delay_ms: 1,
            ..NetworkSpec::default()
        },
        faults: FaultSpec::default(),
        allocator: crate::scenario::AllocatorSpec {
            coalesce_ms: 1,
            ..Default::default()
        },
        sample_ms: 50,
        // The model has no offer timeout; with the master's 10 s a rigid job whose slots free
        // over more than ~10 s loses held offers as fast as it gains them (see the docs).
        offer_timeout_ms: Some(3_600_000),
        agent_reregister_timeout_ms: 30_000,
        check_every_events: 1,
    }
}

/// (ramp-up ms, completion ms, utilization) of the measured framework in one run.
fn measure(r: &crate::Report, rigid: bool) -> Result<[f64; 3], String> {
    let job = &r.frameworks[1];
    let sub = job.subscribed_at_ms.ok_or("job never subscribed")?;
    let ramp = if rigid {
        job.ramp_up_ms.ok_or("rigid job never ran")? as f64
    } else {
        // The elastic job takes every slot as it frees: it holds all k once the holder's last
        // task has ended (sampling "holds k" misses it: a short task's slot is in transit).
        let h = &r.frameworks[0];
        let end = h.subscribed_at_ms.ok_or("holder never subscribed")?
            + h.completion_ms.ok_or("holder not done")?;
        end.saturating_sub(sub) as f64
    };
    let done = job.completion_ms.ok_or("job not done")? as f64;
    Ok([ramp, done, job.held_utilization.unwrap_or(0.0)])
}

/// Every (framework, durations, k) point of the experiment.
fn points(spec: &ExperimentSpec) -> Vec<Point> {
    let mut out = Vec::new();
    for rigid in [false, true] {
        for exp in [false, true] {
            out.extend(spec.ks.iter().map(|&k| Point { rigid, exp, k }));
        }
    }
    out
}

pub fn run(
    spec: &ExperimentSpec,
    seeds: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Output, String> {
    let mut out = Output::default();
    let mut rows = Vec::new();
    let points = points(spec);
    let total = points.len() as u64 * seeds;
    let mut done = 0;
    let mut failed = Vec::new();
    for p in points {
        let sc = scenario(p, spec);
        // Per metric: simulated values, and simulated − model on the run's own draws.
        let mut got: [Vec<f64>; 3] = Default::default();
        let mut diff: [Vec<f64>; 3] = Default::default();
        for seed in 0..seeds {
            // A run that fails is reported, not averaged (and does not stop the others).
            match run_ok(&sc, seed, &mut out).and_then(|r| measure(&r, p.rigid)) {
                Ok(m) => {
                    let own = predict(p, spec, &draws(p, spec.t_ms, seed));
                    for i in 0..3 {
                        got[i].push(m[i]);
                        diff[i].push(m[i] - own[i]);
                    }
                }
                Err(e) => failed.push(format!("{} seed {seed}: {}", sc.name, cut(&e))),
            }
            done += 1;
            progress(done, total);
        }
        let (model, paper) = (expectation(p, spec), paper(p, spec.t_ms as f64, spec.beta));
        for (i, metric) in METRICS.into_iter().enumerate() {
            rows.push(Row {
                point: p,
                metric,
                seeds: got[i].len(),
                simulated: mean(&got[i]),
                stderr: stderr(&got[i]),
                model: model[i],
                paper: paper[i],
                paired: mean(&diff[i]),
                paired_stderr: stderr(&diff[i]),
            });
        }
    }
    write(spec, &rows, &mut out);
    if !failed.is_empty() {
        out.summary.push_str(&format!(
            "\n**{} run(s) failed and are left out of the means** (replay each with its seed):\n\n",
            failed.len()
        ));
        for f in &failed {
            out.summary.push_str(&format!("- {f}\n"));
        }
    }
    Ok(out)
}

/// The start of a long failure message.
fn cut(s: &str) -> String {
    s.chars().take(400).collect()
}

fn label(p: Point) -> String {
    format!(
        "{} {}",
        if p.rigid { "rigid" } else { "elastic" },
        if p.exp { "exp" } else { "const" }
    )
}

fn write(spec: &ExperimentSpec, rows: &[Row], out: &mut Output) {
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{},{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.2},{:.4},{:.4},{:.2}",
                if r.point.rigid { "rigid" } else { "elastic" },
                if r.point.exp { "exp" } else { "const" },
                r.point.k,
                r.metric,
                r.seeds,
                r.simulated,
                r.stderr,
                r.model,
                r.paper,
                r.error_pct(),
                r.paired,
                r.paired_stderr,
                r.paired_pct()
            )
        })
        .collect();
    let header = "framework,duration,k,metric,seeds,simulated,stderr,model,paper_formula,\
                  error_pct,paired_diff,paired_stderr,paired_pct";
    out.files.push(("table2.csv".into(), csv(header, &lines)));
    out.files
        .push(("table2-rampup.svg".into(), ramp_chart(spec, rows)));
    out.files.push((
        "table2-completion.svg".into(),
        bar_chart(rows, "completion_ms"),
    ));
    out.files.push((
        "table2-utilization.svg".into(),
        bar_chart(rows, "utilization"),
    ));
    out.summary = summary(spec, rows);
}

fn ramp_chart(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut series = Vec::new();
    for exp in [false, true] {
        let pts = |f: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> {
            rows.iter()
                .filter(|r| r.metric == "ramp_up_ms" && r.point.exp == exp && !r.point.rigid)
                .map(|r| (r.point.k as f64, f(r) / 1000.0))
                .collect()
        };
        let d = if exp { "exp" } else { "const" };
        series.push(Series {
            name: format!("simulated, {d}"),
            points: pts(&|r| r.simulated),
            dashed: false,
        });
        series.push(Series {
            name: if exp { "T·H_k".into() } else { "T".into() },
            points: pts(&|r| r.model),
            dashed: true,
        });
        if exp {
            series.push(Series {
                name: "T ln k (paper)".into(),
                points: pts(&|r| r.paper),
                dashed: true,
            });
        }
    }
    LineChart {
        title: format!("Ramp-up time vs k (T = {} s)", spec.t_ms / 1000),
        x_label: "k (slots the framework is entitled to)".into(),
        y_label: "ramp-up time (s)".into(),
        series,
        y_range: None,
    }
    .to_svg()
}

fn bar_chart(rows: &[Row], metric: &str) -> String {
    let sel: Vec<&Row> = rows.iter().filter(|r| r.metric == metric).collect();
    let scale = if metric == "utilization" { 1.0 } else { 1e-3 };
    let categories: Vec<String> = sel
        .iter()
        .map(|r| format!("{} k={}", label(r.point), r.point.k))
        .collect();
    let groups = vec![
        (
            "simulated".to_string(),
            sel.iter().map(|r| r.simulated * scale).collect(),
        ),
        (
            "model (finite k)".to_string(),
            sel.iter().map(|r| r.model * scale).collect(),
        ),
        (
            "paper formula".to_string(),
            sel.iter().map(|r| r.paper * scale).collect(),
        ),
    ];
    BarChart {
        title: if metric == "utilization" {
            "Utilization of the slots held".into()
        } else {
            "Job completion time".into()
        },
        y_label: if metric == "utilization" {
            "fraction".into()
        } else {
            "seconds".into()
        },
        categories,
        groups,
    }
    .to_svg()
}

/// The plots, each with what to compare it with in the paper.
const PLOTS: &str = "**Ramp-up against k** (elastic frameworks; the rigid ones ramp up \
    alike). The paper's Table 2 gives formulas, not a figure: ramp-up T with constant durations \
    and T ln k with exponential ones. Solid lines are the simulated means, dashed the model. \
    Constant durations give a flat line at T, as in the paper. Exponential ones grow with \
    ln k and sit on T·H_k, the exact expectation of the longest of k exponential tasks; the \
    paper's T ln k is its large-k leading term and stays about 0.58·T below it at every k.\n\n\
    ![ramp-up](table2-rampup.svg)\n\n\
    **Job completion time** per point: simulated, the finite-k model and the paper's formula. \
    The paper's ordering holds: elastic jobs finish near (1/2+β)T (constant) and (1+β)T \
    (exponential) whatever k; rigid jobs need (1+β)T and (H_k+β)T, the latter growing with k. \
    The elastic bars are a few per cent above the model: each of a slot's 20 short tasks pays a \
    launch round trip the model does not have (the *same draws* column).\n\n\
    ![completion](table2-completion.svg)\n\n\
    **Utilization of the slots a framework holds.** Elastic frameworks use all they hold (1, as \
    in the paper); a rigid one holds slots idle while it waits for the rest: β/(1/2+β) \
    (0.8 for β = 2) with constant durations and less, falling with k, with exponential ones (paper \
    β/(ln k−1+β)).\n\n\
    ![utilization](table2-utilization.svg)\n";

fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = format!(
        "T = {} s, β = {}, elastic work in tasks of T/{}; {} seeds per point. \
         *simulated*: mean over the seeds ± the 95% confidence half-width (1.96 s.e.). \
         *model*: the expectation for finite k and these task sizes, with no launch latency \
         (closed form where there is one, else averaged over {} draws). *paper*: the paper's \
         large-k formula. *same draws*: the mean over runs of (simulated − the model evaluated \
         on the holder durations that run drew) ± 95%, as a share of the model — what the \
         simulated cluster adds, without the sampling noise.\n\n\
         | framework | durations | k | metric | simulated (95% CI) | model | paper | \
         error vs model | same draws |\n|---|---|---|---|---|---|---|---|---|\n",
        spec.t_ms / 1000,
        spec.beta,
        spec.elastic_split,
        rows.first().map(|r| r.seeds).unwrap_or(0),
        MODEL_DRAWS
    );
    let (mut worst_raw, mut worst_paired, mut outside) = (0.0f64, 0.0f64, 0);
    for r in rows {
        let (unit, f) = if r.metric == "utilization" {
            ("", 1.0)
        } else {
            (" s", 1e-3)
        };
        let ci = 1.96 * r.stderr;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}{unit} ± {:.2} | {:.2}{unit} | {:.2}{unit} | {:+.1}% | \
             {:+.1}% ± {:.1} |\n",
            if r.point.rigid { "rigid" } else { "elastic" },
            if r.point.exp { "exp" } else { "const" },
            r.point.k,
            r.metric.trim_end_matches("_ms"),
            r.simulated * f,
            ci * f,
            r.model * f,
            r.paper * f,
            r.error_pct(),
            r.paired_pct(),
            100.0 * 1.96 * r.paired_stderr / r.model
        ));
        worst_raw = worst_raw.max(r.error_pct().abs());
        worst_paired = worst_paired.max(r.paired_pct().abs());
        if (r.simulated - r.model).abs() > ci.max(0.05 * r.model) {
            outside += 1;
        }
    }
    s.push_str(&format!(
        "\nLargest deviation from the model: {worst_raw:.1}% of the means; {worst_paired:.1}% \
         on the same draws. Points off by more than both 5% and their 95% interval: \
         {outside} of {}.\n\n{}",
        rows.len(),
        PLOTS
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(k: usize) -> ExperimentSpec {
        ExperimentSpec {
            kind: super::super::Kind::Table2,
            title: "t".into(),
            seeds: 1,
            ks: vec![k],
            t_ms: 10_000,
            beta: 2.0,
            elastic_split: 10,
            waits_ms: vec![],
        }
    }

    #[test]
    fn the_expectation_matches_the_closed_forms() {
        let (t, beta) = (10_000.0, 2.0);
        for k in [4, 16] {
            let h = harmonic(k);
            let rigid = expectation(
                Point {
                    rigid: true,
                    exp: true,
                    k,
                },
                &spec(k),
            );
            assert!((rigid[0] / (t * h) - 1.0).abs() < 0.01, "{k}: {rigid:?}");
            assert!(
                (rigid[1] / ((h + beta) * t) - 1.0).abs() < 0.01,
                "{k}: {rigid:?}"
            );
            // Constant durations: slot i frees at iT/k, the gang waits for the last.
            let c = expectation(
                Point {
                    rigid: true,
                    exp: false,
                    k,
                },
                &spec(k),
            );
            assert_eq!(c[0], t);
            let idle = (k - 1) as f64 / 2.0 * t;
            assert!((c[2] - k as f64 * beta * t / (k as f64 * beta * t + idle)).abs() < 1e-9);
        }
    }

    #[test]
    fn elastic_completion_is_the_greedy_schedule_and_tends_to_the_paper() {
        // k = 4, slots free at 2.5, 5, 7.5, 10 s; 80 tasks of 1 s: by 26.5 s the slots have
        // run 24 + 21 + 19 + 16 = 80 (the fluid answer is 26.25 s).
        let p = Point {
            rigid: false,
            exp: false,
            k: 4,
        };
        assert_eq!(expectation(p, &spec(4))[1], 26_500.0);
        // For large k the model approaches the paper's formulas (exponential ramp-ups only
        // slowly: H_k − ln k → 0.577; the closed-form test covers them).
        for (rigid, exp) in [(false, false), (false, true), (true, false)] {
            let p = Point {
                rigid,
                exp,
                k: 4096,
            };
            let e = predict(p, &spec(4096), &draws(p, 10_000, 3));
            // (E max of k exponentials is T·H_k = T(ln k + 0.577..): ramp-up excepted.)
            for (m, f) in e.iter().zip(paper(p, 10_000.0, 2.0)).skip(exp as usize) {
                assert!((m - f).abs() / f < 0.06, "{rigid} {exp}: {e:?}");
            }
        }
    }
}
