//! The paper's experiments as ready scenario files (`sim/scenarios/exp-*.toml`), each run by
//! `agora sim run FILE --out DIR` into CSV files, SVG plots and a markdown summary that says
//! what the paper reported beside each number; `agora sim report` runs them all and builds
//! `docs/evaluation.md`.
//!
//! An experiment file has an `[experiment]` table (which experiment, how many seeds, its
//! parameters) and, for the experiments that run a workload, a `[scenario]` table written like
//! any scenario file.

pub mod allocators;
pub mod locality;
pub mod sharing;
pub mod table2;

use crate::scenario::{Scenario, ScenarioError};
use serde::Deserialize;

/// Most seeds one experiment may ask for.
pub const MAX_SEEDS: u64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Table2,
    Sharing,
    Locality,
    Allocators,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    pub kind: Kind,
    pub title: String,
    #[serde(default = "d_seeds")]
    pub seeds: u64,
    /// Table 2: the k values, the mean task duration T and β.
    #[serde(default)]
    pub ks: Vec<usize>,
    #[serde(default = "d_t")]
    pub t_ms: u64,
    #[serde(default = "d_beta")]
    pub beta: f64,
    /// Table 2: elastic work comes in tasks of T / this.
    #[serde(default = "d_split")]
    pub elastic_split: u64,
    /// Locality: the delay scheduling waits compared.
    #[serde(default)]
    pub waits_ms: Vec<u64>,
}

fn d_seeds() -> u64 {
    3
}
fn d_t() -> u64 {
    10_000
}
fn d_beta() -> f64 {
    2.0
}
fn d_split() -> u64 {
    40
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    experiment: ExperimentSpec,
    scenario: Option<toml::Value>,
}

/// An experiment file, loaded.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub spec: ExperimentSpec,
    pub scenario: Option<Scenario>,
}

/// What an experiment produced: files to write and a summary.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// (file name, contents): CSV and SVG.
    pub files: Vec<(String, String)>,
    /// Markdown, with `![..](NAME.svg)` links relative to the output directory.
    pub summary: String,
    /// FNV-1a over the runs' trace hashes (in run order).
    pub trace: u64,
    pub runs: u64,
}

impl Output {
    fn add_trace(&mut self, report: &crate::Report) {
        let h = u64::from_str_radix(&report.trace, 16).unwrap_or(0);
        let mut t = if self.runs == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.trace
        };
        for b in h.to_le_bytes() {
            t ^= b as u64;
            t = t.wrapping_mul(0x100_0000_01b3);
        }
        self.trace = t;
        self.runs += 1;
    }
}

/// Whether a TOML file is an experiment (has an `[experiment]` table).
pub fn is_experiment(text: &str) -> bool {
    toml::from_str::<toml::Value>(text)
        .ok()
        .and_then(|v| v.get("experiment").cloned())
        .is_some()
}

impl Experiment {
    pub fn load(path: &std::path::Path) -> Result<Experiment, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        let f: File = toml::from_str(&text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        if f.experiment.seeds == 0 || f.experiment.seeds > MAX_SEEDS {
            return Err(ScenarioError::Invalid {
                field: "experiment.seeds".into(),
                why: format!("must be 1..={MAX_SEEDS}"),
            });
        }
        let scenario = match f.scenario {
            None => None,
            Some(v) => {
                let text = toml::to_string(&v).map_err(|e| ScenarioError::Parse(e.to_string()))?;
                let mut s = Scenario::from_toml(&text)?;
                s.load_traces(path.parent().unwrap_or(std::path::Path::new(".")))?;
                Some(s)
            }
        };
        let needs = f.experiment.kind != Kind::Table2;
        if needs && scenario.is_none() {
            return Err(ScenarioError::Invalid {
                field: "scenario".into(),
                why: "this experiment needs a [scenario] table".into(),
            });
        }
        Ok(Experiment {
            spec: f.experiment,
            scenario,
        })
    }

    /// Runs every simulation of the experiment; `progress(done, total)` after each.
    pub fn run(&self, seeds: u64, progress: &mut dyn FnMut(u64, u64)) -> Result<Output, String> {
        match self.spec.kind {
            Kind::Table2 => table2::run(&self.spec, seeds, progress),
            Kind::Sharing => sharing::run(self, seeds, progress),
            Kind::Locality => locality::run(self, seeds, progress),
            Kind::Allocators => allocators::run(self, seeds, progress),
        }
    }
}

/// Runs one simulation and insists it succeeded.
pub(crate) fn run_ok(sc: &Scenario, seed: u64, out: &mut Output) -> Result<crate::Report, String> {
    let r = crate::run(sc, seed, |_, _| {})?;
    if let Some(f) = &r.failure {
        return Err(format!(
            "{} seed {seed} failed in the {} phase at {} ms: {}",
            sc.name, f.phase, f.at_ms, f.what
        ));
    }
    out.add_trace(&r);
    Ok(r)
}

/// Mean of a non-empty slice (0 for an empty one).
pub(crate) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Standard error of the mean.
pub(crate) fn stderr(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (var / v.len() as f64).sqrt()
}

/// A CSV document from a header and rows.
pub(crate) fn csv(header: &str, rows: &[String]) -> String {
    let mut s = String::from(header);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

/// The cluster's CPU and memory utilization over time as an SVG (one or more runs).
pub(crate) fn util_chart(title: &str, runs: &[(&str, &crate::metrics::Metrics)]) -> String {
    use crate::plot::{LineChart, Series};
    let mut series = Vec::new();
    for (name, m) in runs {
        let cpu = m
            .samples
            .iter()
            .map(|s| (s.at_ms as f64 / 1000.0, 100.0 * s.cpu_util()))
            .collect();
        let mem = m
            .samples
            .iter()
            .map(|s| (s.at_ms as f64 / 1000.0, 100.0 * s.mem_util()))
            .collect();
        series.push(Series {
            name: format!("{name} CPU"),
            points: cpu,
            dashed: false,
        });
        series.push(Series {
            name: format!("{name} memory"),
            points: mem,
            dashed: true,
        });
    }
    LineChart {
        title: title.to_string(),
        x_label: "virtual time (s)".into(),
        y_label: "cluster utilization (%)".into(),
        series,
        y_range: Some((0.0, 100.0)),
    }
    .to_svg()
}
