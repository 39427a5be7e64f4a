//! Data locality with delay scheduling: the scenario's frameworks read blocks replicated on a
//! few agents; the run is repeated with each delay scheduling wait (paper §6.3: 18% of tasks
//! local under static partitioning, >90% with a 1 s wait, 95% with 5 s; seed: 0, 1, 5 s).

use super::{csv, mean, run_ok, Experiment, Output};
use crate::plot::BarChart;
use crate::scenario::Scenario;

pub fn run(
    e: &Experiment,
    seeds: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Output, String> {
    let sc = e.scenario.as_ref().ok_or("no scenario")?;
    let waits = if e.spec.waits_ms.is_empty() {
        vec![0, 1_000, 5_000]
    } else {
        e.spec.waits_ms.clone()
    };
    let mut out = Output::default();
    let (mut rows, mut local_pct, mut job_s) = (Vec::new(), Vec::new(), Vec::new());
    let total = waits.len() as u64 * seeds;
    let mut done = 0;
    for &w in &waits {
        let mut s = sc.clone();
        s.name = format!("{}-wait{w}", sc.name);
        for f in s.frameworks.iter_mut().filter(|f| f.data_replicas > 0) {
            f.locality_wait_ms = w;
        }
        let (mut local, mut launched, mut jobs) = (0u64, 0u64, Vec::new());
        for seed in 0..seeds {
            let r = run_ok(&s, seed, &mut out)?;
            for f in &r.frameworks {
                local += f.launched_local;
                launched += f.tasks_launched;
                if let Some(c) = f.completion_ms {
                    jobs.push(c as f64 / 1000.0);
                }
            }
            done += 1;
            progress(done, total);
        }
        let pct = 100.0 * local as f64 / launched.max(1) as f64;
        rows.push(format!(
            "{w},{seeds},{launched},{local},{pct:.2},{:.2}",
            mean(&jobs)
        ));
        local_pct.push(pct);
        job_s.push(mean(&jobs));
    }
    out.files.push((
        "locality.csv".into(),
        csv(
            "wait_ms,seeds,tasks_launched,launched_local,local_pct,mean_job_s",
            &rows,
        ),
    ));
    let cats: Vec<String> = waits
        .iter()
        .map(|w| format!("wait {} s", *w as f64 / 1000.0))
        .collect();
    out.files.push((
        "locality.svg".into(),
        BarChart {
            title: "Tasks launched on an agent holding their block".into(),
            y_label: "local tasks (%)".into(),
            categories: cats.clone(),
            groups: vec![("agora".into(), local_pct.clone())],
        }
        .to_svg(),
    ));
    out.files.push((
        "locality-jobs.svg".into(),
        BarChart {
            title: "Mean job completion time".into(),
            y_label: "seconds".into(),
            categories: cats,
            groups: vec![("agora".into(), job_s.clone())],
        }
        .to_svg(),
    ));
    out.summary = summary(sc, seeds, &waits, &local_pct, &job_s);
    Ok(out)
}

fn summary(sc: &Scenario, seeds: u64, waits: &[u64], local_pct: &[f64], job_s: &[f64]) -> String {
    let most = |f: fn(&crate::scenario::FrameworkSpec) -> u64| {
        sc.frameworks.iter().map(f).max().unwrap_or(0)
    };
    let replicas = most(|f| f.data_replicas as u64);
    let penalty = most(|f| f.remote_read_penalty_pct);
    let mut md = format!(
        "{} agents, {} jobs, blocks with {replicas} replicas, {seeds} seeds per wait. A task \
         run on an agent without its block takes {penalty}% longer (it reads the block over the \
         network; `remote_read_penalty_pct`, an assumption of the workload model).\n\n\
         | wait | local tasks | mean job (s) | job time vs no wait |\n|---|---|---|---|\n",
        sc.agents.count,
        sc.frameworks.len(),
    );
    for (i, w) in waits.iter().enumerate() {
        md.push_str(&format!(
            "| {} s | {:.1}% | {:.1} | {:.2}× |\n",
            *w as f64 / 1000.0,
            local_pct[i],
            job_s[i],
            job_s[i] / job_s[0]
        ));
    }
    md.push_str(
        "\n*Paper (§6.3, Fig. 7): 18% of map tasks local with static partitioning, >90% with \
         delay scheduling waiting 1 s, 95% waiting 5 s (and jobs ran faster as locality rose).*\n\n\
         **Local tasks per wait.** The paper's Fig. 7 has one bar per set-up (static \
         partitioning, Mesos without delay scheduling, delay scheduling with 1 s and 5 s) for \
         the share of local map tasks. Wait 0 here is sharing without delay scheduling: a task \
         goes to whichever agent is offered first, and is local only when that agent happens \
         to hold one of the block's 3 replicas. The jump at 1 s and the small further gain at \
         5 s have the paper's shape; agora's are higher, as its cluster is lightly loaded (the \
         jobs keep about a third of the cpus busy), so a replica's agent nearly always has a \
         free slot within 1 s.\n\n\
         ![locality](locality.svg)\n\n\
         **Mean job time per wait.** Fig. 7's second axis is the average job duration, which \
         fell as locality rose. Here too: remote tasks run longer by the read penalty, so the \
         jobs of the 1 s and 5 s runs, nearly all local, are faster than with no wait; the \
         wait itself costs little because another agent with a replica frees up quickly.\n\n\
         ![jobs](locality-jobs.svg)\n",
    );
    md
}
