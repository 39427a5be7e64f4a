//! Usage over virtual time, sampled from the master's books every `sample_ms`: cluster CPU and
//! memory in use, and per framework what it uses and what it holds in outstanding offers (a
//! rigid framework holding offers idle shows up here). The curves of the evaluation plots.

use crate::world::World;
use agora_actors::Resources;
use serde::Serialize;

/// Most samples kept (a day at 1 s); sampling stops beyond.
pub const MAX_SAMPLES: usize = 86_400;

/// What one framework held at a sample.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FwUse {
    pub cpus_used: f64,
    pub cpus_offered: f64,
    pub mem_used_mb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    pub cpus_total: f64,
    pub cpus_used: f64,
    pub mem_total_mb: f64,
    pub mem_used_mb: f64,
    /// In scenario order of the frameworks.
    pub frameworks: Vec<FwUse>,
}

impl Sample {
    pub fn cpu_util(&self) -> f64 {
        ratio(self.cpus_used, self.cpus_total)
    }
    pub fn mem_util(&self) -> f64 {
        ratio(self.mem_used_mb, self.mem_total_mb)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    pub every_ms: u64,
    next_ms: u64,
    pub names: Vec<String>,
    pub samples: Vec<Sample>,
}

fn cpus_mem(text: &str) -> (f64, f64) {
    let r = Resources::parse(text).unwrap_or_default();
    (
        r.scalar_total("cpus").0 as f64 / 1000.0,
        r.scalar_total("mem").0 as f64 / 1000.0,
    )
}

impl Metrics {
    pub fn new(every_ms: u64, names: Vec<String>) -> Metrics {
        Metrics {
            every_ms: every_ms.max(1),
            next_ms: 0,
            names,
            samples: Vec::new(),
        }
    }

    /// Takes the samples due by the world's current time (the books as they are now).
    pub fn observe(&mut self, w: &World) {
        while self.next_ms <= w.now.ms() && self.samples.len() < MAX_SAMPLES {
            let at_ms = self.next_ms;
            self.next_ms += self.every_ms;
            let Some(core) = w.leader_core() else {
                continue;
            };
            let st = core.state();
            let mut s = Sample {
                at_ms,
                cpus_total: 0.0,
                cpus_used: 0.0,
                mem_total_mb: 0.0,
                mem_used_mb: 0.0,
                frameworks: vec![FwUse::default(); self.names.len()],
            };
            for a in st.agents.iter().filter(|a| a.connected) {
                let (tc, tm) = cpus_mem(&a.total);
                let (uc, um) = cpus_mem(&a.used);
                s.cpus_total += tc;
                s.mem_total_mb += tm;
                s.cpus_used += uc;
                s.mem_used_mb += um;
            }
            for f in &st.frameworks {
                if let Some(i) = self.names.iter().position(|n| *n == f.name) {
                    let (uc, um) = cpus_mem(&f.used);
                    let (oc, _) = cpus_mem(&f.offered);
                    s.frameworks[i] = FwUse {
                        cpus_used: uc,
                        cpus_offered: oc,
                        mem_used_mb: um,
                    };
                }
            }
            self.samples.push(s);
        }
    }

    /// Framework `i`'s utilization of what it held: used / (used + offered), CPU time.
    pub fn held_utilization(&self, i: usize) -> Option<f64> {
        let (mut used, mut held) = (0.0, 0.0);
        for s in &self.samples {
            let f = s.frameworks.get(i)?;
            used += f.cpus_used;
            held += f.cpus_used + f.cpus_offered;
        }
        (held > 0.0).then(|| used / held)
    }

    /// Mean cluster CPU and memory utilization over samples in `[from_ms, to_ms)`.
    pub fn mean_util(&self, from_ms: u64, to_ms: u64) -> (f64, f64) {
        let s: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at_ms >= from_ms && s.at_ms < to_ms)
            .collect();
        let n = s.len().max(1) as f64;
        (
            s.iter().map(|x| x.cpu_util()).sum::<f64>() / n,
            s.iter().map(|x| x.mem_util()).sum::<f64>() / n,
        )
    }
}
