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
//! Exact models for finite k (H_k the k-th harmonic number); the paper's formulas are their
//! large-k forms (H_k ≈ ln k):
//! - ramp-up: T (constant), T·H_k (exponential; paper T ln k);
//! - completion: elastic (1/2 + β + 1/(2k))T (paper (1/2+β)T) and t solving
//!   t − T(1 − e^(−t/T)) = βT (paper (1+β)T); rigid (1 + β)T and (H_k + β)T (paper (ln k + β)T);
//! - utilization of the slots held: elastic 1; rigid β/(β + (k−1)/(2k)) (paper β/(1/2+β)) and
//!   β/(β + H_k − 1) (paper β/(ln k − 1 + β)).

use super::{csv, mean, run_ok, stderr, ExperimentSpec, Output};
use crate::plot::{BarChart, LineChart, Series};
use crate::scenario::{AgentsSpec, Duration, FaultSpec, FrameworkSpec, NetworkSpec, Scenario};
use std::sync::Arc;

/// When the measured framework subscribes (the holder's tasks run by then).
pub const JOIN_MS: u64 = 200;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub rigid: bool,
    pub exp: bool,
    pub k: usize,
}

/// One measured quantity against its models.
#[derive(Debug, Clone)]
pub struct Row {
    pub point: Point,
    pub metric: &'static str,
    pub seeds: usize,
    pub simulated: f64,
    pub stderr: f64,
    pub model: f64,
    pub paper: f64,
}

impl Row {
    pub fn error_pct(&self) -> f64 {
        100.0 * (self.simulated - self.model) / self.model
    }
}

pub fn harmonic(k: usize) -> f64 {
    (1..=k).map(|i| 1.0 / i as f64).sum()
}

/// t with t − T(1 − e^(−t/T)) = βT (bisection; the left side grows with t).
fn elastic_exp_completion(t: f64, beta: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, (beta + 2.0) * t);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if mid - t * (1.0 - (-mid / t).exp()) < beta * t {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// (exact model, paper formula) of ramp-up, completion and utilization, in ms / fraction.
pub fn models(p: Point, t: f64, beta: f64) -> [(f64, f64); 3] {
    let k = p.k as f64;
    let (h, ln) = (harmonic(p.k), k.ln());
    match (p.rigid, p.exp) {
        (false, false) => [
            (t, t),
            ((0.5 + beta + 0.5 / k) * t, (0.5 + beta) * t),
            (1.0, 1.0),
        ],
        (false, true) => [
            (t * h, t * ln),
            (elastic_exp_completion(t, beta), (1.0 + beta) * t),
            (1.0, 1.0),
        ],
        (true, false) => [
            (t, t),
            ((1.0 + beta) * t, (1.0 + beta) * t),
            (beta / (beta + (k - 1.0) / (2.0 * k)), beta / (0.5 + beta)),
        ],
        (true, true) => [
            (t * h, t * ln),
            ((h + beta) * t, (ln + beta) * t),
            (beta / (beta + h - 1.0), beta / (ln - 1.0 + beta)),
        ],
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
        holder.trace_ms = Arc::new((1..=p.k as u64).map(|i| i * t / p.k as u64).collect());
    }
    let mut job = if p.rigid {
        let mut j = FrameworkSpec::batch("job", p.k, slot);
        j.gang = true;
        j.mean_ms = (spec.beta * t as f64).round() as u64;
        j
    } else {
        let tasks = (p.k as f64 * spec.beta * spec.elastic_split as f64).round() as usize;
        let mut j = FrameworkSpec::batch("job", tasks, slot);
        j.mean_ms = t / spec.elastic_split.max(1);
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

pub fn run(
    spec: &ExperimentSpec,
    seeds: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Output, String> {
    let mut out = Output::default();
    let mut rows = Vec::new();
    let points: Vec<Point> = [false, true]
        .iter()
        .flat_map(|&rigid| {
            [false, true]
                .iter()
                .flat_map(move |&exp| spec.ks.iter().map(move |&k| Point { rigid, exp, k }))
        })
        .collect();
    let total = points.len() as u64 * seeds;
    let mut done = 0;
    let mut failed = Vec::new();
    for p in points {
        let sc = scenario(p, spec);
        let mut got: [Vec<f64>; 3] = Default::default();
        for seed in 0..seeds {
            // A run that fails is reported, not averaged (and does not stop the others).
            match run_ok(&sc, seed, &mut out).and_then(|r| measure(&r, p.rigid)) {
                Ok(m) => {
                    for (i, v) in m.into_iter().enumerate() {
                        got[i].push(v);
                    }
                }
                Err(e) => failed.push(format!("{} seed {seed}: {}", sc.name, cut(&e))),
            }
            done += 1;
            progress(done, total);
        }
        let m = models(p, spec.t_ms as f64, spec.beta);
        for (i, metric) in ["ramp_up_ms", "completion_ms", "utilization"]
            .into_iter()
            .enumerate()
        {
            rows.push(Row {
                point: p,
                metric,
                seeds: got[i].len(),
                simulated: mean(&got[i]),
                stderr: stderr(&got[i]),
                model: m[i].0,
                paper: m[i].1,
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
                "{},{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.2}",
                if r.point.rigid { "rigid" } else { "elastic" },
                if r.point.exp { "exp" } else { "const" },
                r.point.k,
                r.metric,
                r.seeds,
                r.simulated,
                r.stderr,
                r.model,
                r.paper,
                r.error_pct()
            )
        })
        .collect();
    let header = "framework,duration,k,metric,seeds,simulated,stderr,model,paper_formula,error_pct";
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

fn summary(spec: &ExperimentSpec, rows: &[Row]) -> String {
    let mut s = format!(
        "T = {} s, β = {}, elastic work in tasks of T/{}; {} seeds per point. \
         *model* is the exact expectation for finite k, *paper* the paper's large-k formula \
         (Table 2: ramp-up T / T ln k; completion (1/2+β)T, (1+β)T, (1+β)T, (ln k+β)T; \
         utilization 1, 1, β/(1/2+β), β/(ln k−1+β)).\n\n\
         | framework | durations | k | metric | simulated (± s.e.) | model | paper | error vs model |\n\
         |---|---|---|---|---|---|---|---|\n",
        spec.t_ms / 1000,
        spec.beta,
        spec.elastic_split,
        rows.first().map(|r| r.seeds).unwrap_or(0)
    );
    let mut worst: f64 = 0.0;
    for r in rows {
        let (unit, f) = if r.metric == "utilization" {
            ("", 1.0)
        } else {
            (" s", 1e-3)
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}{unit} ± {:.2} | {:.2}{unit} | {:.2}{unit} | {:+.1}% |\n",
            if r.point.rigid { "rigid" } else { "elastic" },
            if r.point.exp { "exp" } else { "const" },
            r.point.k,
            r.metric.trim_end_matches("_ms"),
            r.simulated * f,
            r.stderr * f,
            r.model * f,
            r.paper * f,
            r.error_pct()
        ));
        worst = worst.max(r.error_pct().abs());
    }
    s.push_str(&format!(
        "\nLargest deviation from the model: {worst:.1}%.\n\n\
         ![ramp-up](table2-rampup.svg)\n\n![completion](table2-completion.svg)\n\n\
         ![utilization](table2-utilization.svg)\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_reduce_to_the_paper_formulas_for_large_k() {
        let p = |rigid, exp| Point {
            rigid,
            exp,
            k: 100_000,
        };
        for (rigid, exp) in [(false, false), (false, true), (true, false), (true, true)] {
            for (model, paper) in models(p(rigid, exp), 10_000.0, 2.0) {
                assert!(
                    (model - paper).abs() / paper < 0.06,
                    "{rigid} {exp}: {model} {paper}"
                );
            }
        }
        // t − T(1 − e^(−t/T)) = βT at the solution.
        let t = elastic_exp_completion(10.0, 2.0);
        assert!((t - 10.0 * (1.0 - (-t / 10.0).exp()) - 20.0).abs() < 1e-6);
    }
}
