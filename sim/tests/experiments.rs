//! The workload features and the paper's experiments at small sizes (the full runs are
//! `agora sim report`, release build).

use agora_sim::report::{table2, Experiment, ExperimentSpec, Kind};
use agora_sim::scenario::{Duration, FrameworkSpec, Scenario};

fn spec(ks: Vec<usize>) -> ExperimentSpec {
    ExperimentSpec {
        kind: Kind::Table2,
        title: "t".into(),
        seeds: 1,
        ks,
        t_ms: 10_000,
        beta: 2.0,
        elastic_split: 10,
        waits_ms: vec![],
    }
}

#[test]
fn every_experiment_file_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("exp-") {
            Experiment::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            n += 1;
        }
    }
    assert_eq!(n, 4);
}

#[test]
fn table2_constant_durations_match_the_model_and_rigid_wastes_slots() {
    let out = table2::run(&spec(vec![4]), 1, &mut |_, _| {}).unwrap();
    let csv = &out.files[0].1;
    let row = |fw: &str, dur: &str, metric: &str| -> (f64, f64) {
        let l = csv
            .lines()
            .find(|l| l.starts_with(&format!("{fw},{dur},4,{metric},")))
            .unwrap();
        let f: Vec<&str> = l.split(',').collect();
        (f[5].parse().unwrap(), f[7].parse().unwrap())
    };
    for fw in ["elastic", "rigid"] {
        for metric in ["ramp_up_ms", "completion_ms", "utilization"] {
            let (sim, model) = row(fw, "const", metric);
            assert!(
                (sim - model).abs() / model < 0.05,
                "{fw} {metric}: {sim} vs {model}"
            );
        }
    }
    let (rigid_util, _) = row("rigid", "exp", "utilization");
    let (elastic_util, _) = row("elastic", "exp", "utilization");
    assert!(rigid_util < elastic_util, "{rigid_util} {elastic_util}");
    assert_eq!(
        out.files.iter().filter(|f| f.0.ends_with(".svg")).count(),
        3
    );
}

fn locality_scenario(wait_ms: u64) -> Scenario {
    let mut sc = Scenario::from_toml(
        "name = \"loc\"\n[agents]\ncount = 12\nresources = \"cpus:2;mem:4096\"\n",
    )
    .unwrap();
    for i in 0..3 {
        let mut f = FrameworkSpec::batch(&format!("job{i}"), 8, "cpus:1;mem:512");
        f.mean_ms = 3_000;
        f.start_ms = i * 2_000;
        f.data_replicas = 2;
        f.locality_wait_ms = wait_ms;
        sc.frameworks.push(f);
    }
    sc
}

#[test]
fn delay_scheduling_raises_locality() {
    let local = |wait| {
        let (mut l, mut n) = (0, 0);
        for seed in 0..2 {
            let r = agora_sim::run(&locality_scenario(wait), seed, |_, _| {}).unwrap();
            assert!(r.ok(), "{:?}", r.failure);
            for f in &r.frameworks {
                assert_eq!(f.finished, 8);
                l += f.launched_local;
                n += f.tasks_launched;
            }
        }
        l as f64 / n as f64
    };
    let (none, waited) = (local(0), local(5_000));
    assert!(waited > none + 0.2, "wait 0: {none}, wait 5 s: {waited}");
    assert!(waited > 0.8, "{waited}");
}

#[test]
fn gang_jobs_start_all_at_once_and_traces_set_durations() {
    let mut sc = Scenario::from_toml(
        "name = \"gang\"\nsample_ms = 500\n[agents]\ncount = 4\nresources = \"cpus:2;mem:4096\"\n",
    )
    .unwrap();
    let mut filler = FrameworkSpec::batch("filler", 4, "cpus:1;mem:512");
    filler.duration = Duration::Trace;
    filler.trace_ms = std::sync::Arc::new(vec![1_000, 4_000]);
    let mut gang = FrameworkSpec::batch("gang", 6, "cpus:1;mem:512");
    gang.gang = true;
    gang.start_ms = 300;
    gang.mean_ms = 2_000;
    sc.frameworks = vec![filler, gang];
    let mut w = agora_sim::world::World::new(sc.clone(), 1).unwrap();
    while !(w.now.ms() > 1_000 && w.batch_done()) && w.now.ms() < 60_000 {
        assert!(w.step());
    }
    let b = w.scheds[1].driver.scheduler().batch().unwrap();
    let starts: Vec<u64> = b
        .tasks()
        .iter()
        .map(|t| t.timing.launched_at.unwrap().ms())
        .collect();
    assert!(starts.iter().all(|s| *s == starts[0]), "{starts:?}");
    // 8 slots, the filler's 4 tasks hold 4 of them, 1 s or 4 s: the gang of 6 waits for
    // two of the 1 s tasks to end, so it cannot start before 1 s.
    assert!(starts[0] >= 1_000, "{starts:?}");
    let filler = w.scheds[0].driver.scheduler().batch().unwrap();
    let runs: Vec<u64> = filler
        .tasks()
        .iter()
        .map(|t| t.timing.run_ms().unwrap())
        .collect();
    assert!(
        runs.iter()
            .filter(|&&r| (1_000..1_100).contains(&r))
            .count()
            >= 1,
        "{runs:?}"
    );
    let r = agora_sim::run(&sc, 1, |_, _| {}).unwrap();
    assert!(
        r.ok() && r.frameworks[1].held_utilization.unwrap() < 1.0,
        "{:?}",
        r.frameworks[1]
    );
}

#[test]
fn a_task_away_from_its_block_runs_longer_by_the_penalty() {
    let mut sc = locality_scenario(0);
    for f in sc.frameworks.iter_mut() {
        f.remote_read_penalty_pct = 100;
    }
    let mut w = agora_sim::world::World::new(sc, 3).unwrap();
    while !(w.now.ms() > 1_000 && w.batch_done()) && w.now.ms() < 120_000 {
        assert!(w.step());
    }
    assert!(w.batch_done());
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for s in &w.scheds {
        for t in s.driver.scheduler().batch().unwrap().tasks() {
            let ms = t.timing.run_ms().unwrap();
            match t.local {
                Some(true) => local.push(ms),
                _ => remote.push(ms),
            }
        }
    }
    // 3 s tasks: local ones take 3 s, remote ones 6 s (as the framework sees them: its
    // RUNNING and terminal updates each come with a network delay of up to 20 ms).
    assert!(
        !local.is_empty() && !remote.is_empty(),
        "{local:?} {remote:?}"
    );
    assert!(
        local.iter().all(|&ms| (2_900..3_100).contains(&ms)),
        "{local:?}"
    );
    assert!(
        remote.iter().all(|&ms| (5_900..6_100).contains(&ms)),
        "{remote:?}"
    );
}
