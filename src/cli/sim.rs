//! `agora sim`: the deterministic whole-cluster simulator (crate `agora-sim`).
//!
//! `agora sim run SCENARIO --seed N --out DIR` runs one scenario with one seed, writes
//! `DIR/report.json` and `DIR/frameworks.csv`, and ends its output with `trace <hex digest>`.
//! The same seed on the same commit always prints the same digest.
//!
//! An experiment file (`sim/scenarios/exp-*.toml`, with an `[experiment]` table) runs all of
//! its simulations and writes CSV files, SVG plots and `summary.md`; `agora sim report` runs
//! every experiment and builds `docs/evaluation.md` with its plots under `docs/eval/`.

use anyhow::Context as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SimArgs {
    #[command(subcommand)]
    cmd: SimCmd,
}

#[derive(clap::Subcommand)]
enum SimCmd {
    /// Run a scenario (TOML) with one seed, or an experiment file with its seeds.
    Run(RunArgs),
    /// Run every experiment (sim/scenarios/exp-*.toml) and build docs/evaluation.md.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Where the experiment files are.
    #[arg(long, default_value = "sim/scenarios")]
    scenarios: PathBuf,
    /// Where evaluation.md and eval/ are written.
    #[arg(long, default_value = "docs")]
    docs: PathBuf,
    /// Override every experiment's seed count (1 for a quick look).
    #[arg(long)]
    seeds: Option<u64>,
    /// Show progress bars even when stderr is not a terminal.
    #[arg(long)]
    progress: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario file, e.g. sim/scenarios/faults.toml.
    scenario: PathBuf,
    /// Seed of the network, the faults and the task durations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write report.json and frameworks.csv.
    #[arg(long)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Show the progress bar even when stderr is not a terminal.
    #[arg(long)]
    progress: bool,
    /// Experiments: override the file's seed count.
    #[arg(long)]
    seeds: Option<u64>,
}

pub fn run(args: SimArgs) -> anyhow::Result<i32> {
    match args.cmd {
        SimCmd::Run(a) => {
            let text = std::fs::read_to_string(&a.scenario)
                .with_context(|| format!("reading {}", a.scenario.display()))?;
            if agora_sim::report::is_experiment(&text) {
                super::sim_report::run_experiment(&a.scenario, &a.out, a.seeds, show(&a))
            } else {
                run_one(a)
            }
        }
        SimCmd::Report(r) => {
            let show = r.progress || std::io::stderr().is_terminal();
            super::sim_report::report(&r.scenarios, &r.docs, r.seeds, show)
        }
    }
}

/// A progress bar goes to stderr only for a person watching (or when asked for).
fn show(a: &RunArgs) -> bool {
    !a.quiet && (a.progress || std::io::stderr().is_terminal())
}

fn run_one(a: RunArgs) -> anyhow::Result<i32> {
    let scenario = agora_sim::Scenario::load(&a.scenario)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let title = format!("{} seed {} (virtual s)", scenario.name, a.seed);
    let mut bar = super::sim_report::Progress::new(show(&a), &title);
    let started = std::time::Instant::now();
    let report = agora_sim::run(&scenario, a.seed, |now_ms, bound_ms| {
        if let Some(b) = bar.as_mut() {
            b.set(now_ms / 1000, bound_ms / 1000);
        }
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(b) = bar {
        b.finish();
    }
    write_outputs(&a.out, &report)?;
    let wall = started.elapsed().as_secs_f64();
    println!(
        "scenario {} seed {}: {} events, {:.1} virtual s in {:.2} s ({:.0} events/s)",
        report.scenario,
        report.seed,
        report.events,
        report.virtual_ms as f64 / 1000.0,
        wall,
        report.events as f64 / wall.max(1e-9)
    );
    for f in &report.frameworks {
        let done = f
            .completion_ms
            .map(|ms| format!("done in {:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "not done".into());
        println!(
            "  {} ({}): {}/{} finished, {} retries, {done}",
            f.name, f.kind, f.finished, f.tasks, f.retries
        );
    }
    if !report.faults.is_empty() {
        let faults: Vec<String> = report
            .faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("  faults: {}", faults.join(" "));
    }
    let code = match &report.failure {
        None => {
            println!("ok: all invariants held; report in {}", a.out.display());
            0
        }
        Some(f) => {
            println!(
                "FAILED in the {} phase at {} virtual ms: {}",
                f.phase, f.at_ms, f.what
            );
            println!(
                "seed {}; replay with: {}",
                report.seed,
                report.replay_command(&a.scenario.display().to_string())
            );
            1
        }
    };
    println!("trace {}", report.trace);
    Ok(code)
}

fn write_outputs(dir: &std::path::Path, report: &agora_sim::Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("report.json"), json).context("writing report.json")?;
    if let Some(m) = &report.metrics {
        super::sim_report::write_usage(dir, m)?;
    }
    let mut csv =
        std::fs::File::create(dir.join("frameworks.csv")).context("creating frameworks.csv")?;
    writeln!(
        csv,
        "name,kind,tasks,finished,retries,subscribed_at_ms,completion_ms"
    )?;
    for f in &report.frameworks {
        let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
        writeln!(
            csv,
            "{},{},{},{},{},{},{}",
            f.name,
            f.kind,
            f.tasks,
            f.finished,
            f.retries,
            opt(f.subscribed_at_ms),
            opt(f.completion_ms)
        )?;
    }
    Ok(())
}
