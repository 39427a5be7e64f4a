//! `cargo run --release -p agora-sim --example scale -- SCENARIO SEED WALL_SECS`: runs a
//! scenario (invariants every `check_every_events` events) until it ends or WALL_SECS of wall
//! time pass, printing events/s and the virtual time reached every 10 s (for
//! docs/benchmarks.md, "Simulator scale").
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sc = agora_sim::Scenario::load(std::path::Path::new(&args[1])).expect("scenario");
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let wall_secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(300);
    let t0 = Instant::now();
    let mut w = agora_sim::world::World::new(sc.clone(), seed).expect("world");
    println!("setup {:.1}s", t0.elapsed().as_secs_f64());
    let bound = sc.safety_ms + sc.liveness_ms;
    let mut next_print = 10.0;
    let mut ended = "wall-time limit";
    loop {
        if !w.step() {
            ended = "event queue empty";
            break;
        }
        if w.events % sc.check_every_events == 0 {
            if let Err(e) = agora_sim::check::invariants(&w) {
                println!("invariant broken at {} ms: {e}", w.now.ms());
                ended = "invariant broken";
                break;
            }
        }
        if w.liveness && w.has_batch() && w.batch_done() {
            ended = "all batch work done";
            break;
        }
        if w.now.ms() > bound {
            ended = "liveness bound";
            break;
        }
        if w.events % 4096 == 0 {
            let s = t0.elapsed().as_secs_f64();
            if s >= next_print {
                next_print += 10.0;
                println!(
                    "wall {s:.0}s virtual {:.0}s events {} ({:.0}/s)",
                    w.now.ms() as f64 / 1000.0,
                    w.events,
                    w.events as f64 / s
                );
            }
            if s >= wall_secs as f64 {
                break;
            }
        }
    }
    let s = t0.elapsed().as_secs_f64();
    let done = w
        .scheds
        .iter()
        .filter(|x| x.driver.stopped().is_some())
        .count();
    println!(
        "end ({ended}): wall {s:.1}s virtual {:.1}s events {} ({:.0} events/s, {:.1} virtual s per wall s); frameworks done {done}/{}",
        w.now.ms() as f64 / 1000.0,
        w.events,
        w.events as f64 / s,
        w.now.ms() as f64 / 1000.0 / s,
        w.scheds.len()
    );
}
