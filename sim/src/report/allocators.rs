//! Long tasks hurting short ones, and what the allocator policy changes: the scenario's
//! frameworks (one with long tasks that arrives first and fills the cluster, one with short
//! tasks that arrives later) run under DRF, lottery and priority (the scenario's priority
//! levels), and once more under DRF with every task as short as the shortest (the baseline
//! without long tasks).

use super::{csv, mean, run_ok, Experiment, Output};
use crate::plot::BarChart;

pub fn run(
    e: &Experiment,
    seeds: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Output, String> {
    let sc = e.scenario.as_ref().ok_or("no scenario")?;
    let shortest = sc.frameworks.iter().map(|f| f.mean_ms).min().unwrap_or(1);
    let mut cases = Vec::new();
    let mut base = sc.clone();
    base.name = format!("{}-no-long-tasks", sc.name);
    base.allocator.policy = "drf".into();
    for f in base.frameworks.iter_mut() {
        f.mean_ms = shortest;
    }
    cases.push(("drf, no long tasks".to_string(), base));
    for policy in ["drf", "lottery", "priority"] {
        let mut s = sc.clone();
        s.name = format!("{}-{policy}", sc.name);
        s.allocator.policy = policy.into();
        cases.push((policy.to_string(), s));
    }
    let names: Vec<String> = sc.frameworks.iter().map(|f| f.name.clone()).collect();
    let mut out = Output::default();
    let (mut rows, mut groups) = (Vec::new(), Vec::new());
    let total = cases.len() as u64 * seeds;
    let mut done = 0;
    for (case, s) in &cases {
        let mut per: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for seed in 0..seeds {
            let r = run_ok(s, seed, &mut out)?;
            for (i, f) in r.frameworks.iter().enumerate() {
                if let Some(c) = f.completion_ms {
                    per[i].push(c as f64 / 1000.0);
                }
            }
            done += 1;
            progress(done, total);
        }
        let means: Vec<f64> = per.iter().map(|v| mean(v)).collect();
        for (i, n) in names.iter().enumerate() {
            rows.push(format!("{case},{n},{seeds},{:.2}", means[i]));
        }
        groups.push((case.clone(), means));
    }
    out.files.push((
        "allocators.csv".into(),
        csv("case,framework,seeds,mean_completion_s", &rows),
    ));
    out.files.push((
        "allocators.svg".into(),
        BarChart {
            title: "Job completion time by allocator policy".into(),
            y_label: "seconds".into(),
            categories: names.clone(),
            groups: groups.clone(),
        }
        .to_svg(),
    ));
    let mut md = format!("{seeds} seeds per case.\n\n| case |");
    for n in &names {
        md.push_str(&format!(" {n} (s) |"));
    }
    md.push_str(&format!("\n|---|{}\n", "---|".repeat(names.len())));
    for (case, means) in &groups {
        md.push_str(&format!("| {case} |"));
        for m in means {
            md.push_str(&format!(" {m:.1} |"));
        }
        md.push('\n');
    }
    md.push_str(
        "\n*Paper (§4.3, §5): long tasks can delay short ones, because an allocator can only \
         reassign resources as tasks end (Mesos does not preempt by default); the seed asks \
         to show how much, and how the choice of allocation policy (DRF, lottery, strict \
         priority) changes it.*\n\n![allocators](allocators.svg)\n",
    );
    out.summary = md;
    Ok(out)
}
