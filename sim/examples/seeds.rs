//! `cargo run -p agora-sim --example seeds -- SCENARIO FIRST COUNT`: runs seeds, prints failures.
fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    let sc = agora_sim::Scenario::load(std::path::Path::new(&args[1])).expect("scenario");
    let first: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let count: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut bad = 0;
    let t0 = std::time::Instant::now();
    for seed in first..first + count {
        let r = agora_sim::run(&sc, seed, |_, _| {}).expect("run");
        match &r.failure {
            None => println!(
                "seed {seed} ok events {} virtual {} ms trace {} faults {:?}",
                r.events, r.virtual_ms, r.trace, r.faults
            ),
            Some(f) => {
                bad += 1;
                println!(
                    "seed {seed} FAIL {} at {} ms: {} faults {:?}",
                    f.phase, f.at_ms, f.what, r.faults
                )
            }
        }
    }
    println!("{bad} failures in {count} seeds, {:?}", t0.elapsed());
}
