//! `cargo run --release -p agora-sim --example rampup -- SEEDS`: the ramp-up table as CSV.
fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("duration,k,mean_task_ms,seeds,simulated_ms,model_ms,t_ln_k_ms,error_pct");
    for k in [4, 8, 16, 32, 64] {
        let rows = agora_sim::experiments::rampup(&[k], 10_000, seeds).expect("runs");
        for r in rows {
            println!(
                "{},{},{},{},{:.0},{:.0},{:.0},{:.1}",
                r.duration,
                r.k,
                r.mean_task_ms,
                r.seeds,
                r.simulated_ms,
                r.model_ms,
                r.t_ln_k_ms,
                r.error_pct
            );
        }
    }
}
