//! `agora sim run EXPERIMENT` and `agora sim report`: the paper's experiments, their files and
//! `docs/evaluation.md`.

use agora_sim::report::{Experiment, Output};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::path::Path;

/// Progress on stderr: a bar on a terminal, plain lines otherwise (`--progress` into a pipe or
/// a log, where indicatif draws nothing).
pub enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { title: String, last: u64 },
}

impl Progress {
    pub fn new(show: bool, title: &str) -> Option<Progress> {
        use std::io::IsTerminal as _;
        if !show {
            return None;
        }
        if !std::io::stderr().is_terminal() {
            return Some(Progress::Lines {
                title: title.to_string(),
                last: u64::MAX,
            });
        }
        let b = indicatif::ProgressBar::new(1);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {msg}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(title.to_string());
        Some(Progress::Bar(b))
    }

    pub fn set(&mut self, pos: u64, len: u64) {
        match self {
            Progress::Bar(b) => {
                b.set_length(len);
                b.set_position(pos);
            }
            Progress::Lines { title, last } => {
                let pct = 100 * pos / len.max(1);
                if *last == u64::MAX || pct >= *last + 10 || (pos == len && *last != 100) {
                    *last = pct;
                    eprintln!("{title}: {pos}/{len} ({pct}%)");
                }
            }
        }
    }

    pub fn finish(self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// Runs one experiment file and writes its CSV, SVG and `summary.md` into `out`.
fn run_into(
    path: &Path,
    out: &Path,
    seeds: Option<u64>,
    show: bool,
) -> anyhow::Result<(Experiment, Output)> {
    let e = Experiment::load(path)?;
    let seeds = seeds
        .unwrap_or(e.spec.seeds)
        .clamp(1, agora_sim::report::MAX_SEEDS);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut bar = Progress::new(show, &format!("{} (runs)", e.spec.title));
    let result = e.run(seeds, &mut |done, total| {
        if let Some(b) = bar.as_mut() {
            b.set(done, total);
        }
    });
    if let Some(b) = bar {
        b.finish();
    }
    let o = result.map_err(|e| anyhow::anyhow!(e))?;
    for (name, text) in &o.files {
        std::fs::write(out.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    render_pngs(out, o.files.iter().map(|(name, _)| name.as_str()));
    let md = format!("## {}\n\n{}", e.spec.title, o.summary);
    std::fs::write(out.join("summary.md"), md).context("writing summary.md")?;
    Ok((e, o))
}

/// A PNG beside every SVG, for viewers that do not show SVG, when librsvg's `rsvg-convert` is
/// installed (`apt install librsvg2-bin`); the SVGs stay the primary output, so without the
/// tool this only says so. Rendered by a separate program because a rasteriser with font
/// support would add a large dependency tree to every build of agora for an optional file.
fn render_pngs<'a>(out: &Path, names: impl Iterator<Item = &'a str>) {
    for svg in names.filter(|n| n.ends_with(".svg")) {
        let png = format!("{}.png", svg.trim_end_matches(".svg"));
        let status = std::process::Command::new("rsvg-convert")
            .args(["--background-color", "white", "--zoom", "1.5", "-o"])
            .arg(out.join(&png))
            .arg(out.join(svg))
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("rsvg-convert failed on {svg} ({s}); no {png}"),
            Err(_) => {
                eprintln!("rsvg-convert not found (apt install librsvg2-bin): SVG plots only");
                return;
            }
        }
    }
}

pub fn run_experiment(
    path: &Path,
    out: &Path,
    seeds: Option<u64>,
    show: bool,
) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let (e, o) = run_into(path, out, seeds, show)?;
    println!(
        "experiment {}: {} runs in {:.1} s; files in {}",
        e.spec.title,
        o.runs,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    for (name, _) in &o.files {
        println!("  {name}");
    }
    println!("  summary.md");
    println!("trace {:016x}", o.trace);
    Ok(0)
}

/// Runs every `exp-*.toml` in `scenarios` and writes `docs/evaluation.md` and `docs/eval/`.
pub fn report(
    scenarios: &Path,
    docs: &Path,
    seeds: Option<u64>,
    show: bool,
) -> anyhow::Result<i32> {
    let mut files: Vec<_> = std::fs::read_dir(scenarios)
        .with_context(|| format!("reading {}", scenarios.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("exp-") && name.ends_with(".toml")
        })
        .collect();
    files.sort();
    let mut md = String::from(
        "# Evaluation: the paper's experiments in the simulator\n\n\
         Generated by `agora sim report` (release build) from the experiment files \
         `sim/scenarios/exp-*.toml`; every number is a run of the real master, allocator, agent \
         and SDK cores in `agora sim` (see docs/simulator.md). Each section says what the paper \
         (Hindman et al., *Mesos*, NSDI 2011) reported beside what agora measured. The CSV \
         files behind every plot are next to it in `docs/eval/<experiment>/`, with a PNG of each \
         plot (rendered by `rsvg-convert` when it is installed).\n\n",
    );
    let started = std::time::Instant::now();
    for path in &files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("exp")
            .to_string();
        let dir = docs.join("eval").join(&stem);
        let t = std::time::Instant::now();
        let (e, o) = run_into(path, &dir, seeds, show)?;
        eprintln!(
            "{stem}: {} runs in {:.1} s",
            o.runs,
            t.elapsed().as_secs_f64()
        );
        let summary = o.summary.replace("](", &format!("](eval/{stem}/"));
        let _ = write!(
            md,
            "## {}\n\nExperiment file `{}`; reproduce with \
             `agora sim run {} --out /tmp/{stem}` (trace `{:016x}`).\n\n{}\n",
            e.spec.title,
            path.display(),
            path.display(),
            o.trace,
            summary
        );
    }
    let path = docs.join("evaluation.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{} experiments in {:.1} s; wrote {}",
        files.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(0)
}

/// `usage.csv` and `utilization.svg` of a scenario run that sampled usage.
pub fn write_usage(dir: &Path, m: &agora_sim::metrics::Metrics) -> anyhow::Result<()> {
    let mut csv = String::from("at_ms,cpus_total,cpus_used,mem_total_mb,mem_used_mb");
    for n in &m.names {
        let _ = write!(csv, ",{n}_cpus_used,{n}_cpus_offered,{n}_mem_used_mb");
    }
    csv.push('\n');
    for s in &m.samples {
        let _ = write!(
            csv,
            "{},{},{},{},{}",
            s.at_ms, s.cpus_total, s.cpus_used, s.mem_total_mb, s.mem_used_mb
        );
        for f in &s.frameworks {
            let _ = write!(csv, ",{},{},{}", f.cpus_used, f.cpus_offered, f.mem_used_mb);
        }
        csv.push('\n');
    }
    std::fs::write(dir.join("usage.csv"), csv).context("writing usage.csv")?;
    let svg = agora_sim::plot::LineChart {
        title: "Cluster utilization".into(),
        x_label: "virtual time (s)".into(),
        y_label: "utilization (%)".into(),
        series: vec![
            agora_sim::plot::Series {
                name: "CPU".into(),
                points: m
                    .samples
                    .iter()
                    .map(|s| (s.at_ms as f64 / 1e3, 100.0 * s.cpu_util()))
                    .collect(),
                dashed: false,
            },
            agora_sim::plot::Series {
                name: "memory".into(),
                points: m
                    .samples
                    .iter()
                    .map(|s| (s.at_ms as f64 / 1e3, 100.0 * s.mem_util()))
                    .collect(),
                dashed: true,
            },
        ],
        y_range: Some((0.0, 100.0)),
    }
    .to_svg();
    std::fs::write(dir.join("utilization.svg"), svg).context("writing utilization.svg")?;
    Ok(())
}
