//! The paper's ramp-up model (seed/paper Table 2), simulated: how long an elastic framework
//! takes to get k slots that another framework's tasks of mean duration T hold.
//!
//! Set-up per run: k one-slot agents; framework `holder` takes every slot at once with k tasks
//! of duration T (constant or exponential) and launches nothing after; framework `newcomer`
//! subscribes just after and wants k long tasks. Its ramp-up time (subscription → all k running)
//! is compared with the model: about T for constant durations (every slot frees within T), and
//! T·H_k ≈ T ln k for exponential ones (the last of k memoryless tasks ends after T·H_k on
//! average, H_k the k-th harmonic number).

use crate::scenario::{AgentsSpec, Duration, FaultSpec, FrameworkSpec, Scenario};

/// One row of the ramp-up CSV.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RampUpRow {
    pub duration: &'static str,
    pub k: usize,
    pub mean_task_ms: u64,
    pub seeds: usize,
    pub simulated_ms: f64,
    /// The model's prediction: T (constant), T·H_k (exponential).
    pub model_ms: f64,
    /// T·ln k, the paper's approximation for exponential durations.
    pub t_ln_k_ms: f64,
    pub error_pct: f64,
}

/// Delay between the two frameworks' subscriptions.
pub const NEWCOMER_DELAY_MS: u64 = 200;

pub fn rampup_scenario(k: usize, duration: Duration, t_ms: u64) -> Scenario {
    let fw = |name: &str, duration, mean_ms, start_ms| FrameworkSpec {
        duration,
        mean_ms,
        start_ms,
        unknown_lost_after_ms: 120_000,
        ..FrameworkSpec::batch(name, k, "cpus:1;mem:1024")
    };
    Scenario {
        name: format!("rampup-{k}"),
        safety_ms: 0,
        liveness_ms: 100 * t_ms,
        agents: AgentsSpec {
            count: k,
            resources: "cpus:1;mem:1024".into(),
            racks: 1,
        },
        masters: 1,
        raft: Default::default(),
        frameworks: vec![
            fw("holder", duration, t_ms, 0),
            fw("newcomer", Duration::Const, 5 * t_ms, NEWCOMER_DELAY_MS),
        ],
        network: Default::default(),
        faults: FaultSpec::default(),
        allocator: Default::default(),
        agent_reregister_timeout_ms: 30_000,
        check_every_events: 1,
        sample_ms: 0,
        offer_timeout_ms: None,
    }
}

fn harmonic(k: usize) -> f64 {
    (1..=k).map(|i| 1.0 / i as f64).sum()
}

/// Runs the ramp-up experiment for each k and both duration kinds, `seeds` runs per point.
pub fn rampup(ks: &[usize], t_ms: u64, seeds: u64) -> Result<Vec<RampUpRow>, String> {
    let mut rows = Vec::new();
    for (duration, name) in [(Duration::Const, "const"), (Duration::Exp, "exp")] {
        for &k in ks {
            let sc = rampup_scenario(k, duration, t_ms);
            let mut sum = 0.0;
            for seed in 0..seeds {
                let r = crate::run(&sc, seed, |_, _| {})?;
                if let Some(f) = &r.failure {
                    return Err(format!("ramp-up k={k} {name} seed {seed}: {}", f.what));
                }
                let ramp = r.frameworks[1]
                    .ramp_up_ms
                    .ok_or("newcomer never got all its slots")?;
                sum += ramp as f64;
            }
            let simulated = sum / seeds.max(1) as f64;
            let t = t_ms as f64;
            let model = match duration {
                // Every slot frees within T of the holder's launch, just before the newcomer
                // subscribed; launch latency makes up the difference.
                Duration::Exp => t * harmonic(k),
                Duration::Const | Duration::Trace => t,
            };
            rows.push(RampUpRow {
                duration: name,
                k,
                mean_task_ms: t_ms,
                seeds: seeds as usize,
                simulated_ms: simulated,
                model_ms: model,
                t_ln_k_ms: t * (k as f64).ln(),
                error_pct: 100.0 * (simulated - model) / model,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_durations_ramp_up_in_about_t() {
        let rows = rampup(&[4], 10_000, 1).unwrap();
        let c = rows.iter().find(|r| r.duration == "const").unwrap();
        assert!(c.error_pct.abs() < 5.0, "{c:?}");
        let e = rows.iter().find(|r| r.duration == "exp").unwrap();
        assert!(e.simulated_ms > 0.0, "{e:?}");
    }
}
