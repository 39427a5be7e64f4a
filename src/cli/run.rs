//! `agora run`: a one-shot framework that runs a command as one task (or N copies), prints what
//! happens, and exits with the task's exit code.

use super::publish::Published;
use agora_actors::sdk::driver::{SchedulerDriver, StopDriver, WithScheduler};
use agora_actors::*;
use agora_frameworks::batch::{Progress, Transition};
use agora_frameworks::run::{InstanceReport, RunConfig, RunFramework};
use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Master address(es), comma-separated.
    #[arg(long, env = "AGORA_MASTER")]
    pub master: String,
    #[arg(long, default_value = "agora-run")]
    pub name: String,
    #[arg(long, default_value = "agora", env = "AGORA_CLUSTER")]
    pub cluster: String,
    /// CPUs per task.
    #[arg(long, default_value_t = 0.1)]
    pub cpus: f64,
    /// Memory per task, MB.
    #[arg(long, default_value_t = 32.0)]
    pub mem: f64,
    /// Launch this many copies as one framework (a job array).
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// One executor per agent runs all the job's tasks (default with --instances > 1).
    #[arg(long)]
    pub shared_executor: Option<bool>,
    /// Most tasks running (or starting) at once; 0 = as many as the offers hold.
    #[arg(long, default_value_t = 0)]
    pub max_in_flight: usize,
    /// No progress bar (for logs and benchmarks).
    #[arg(long)]
    pub no_progress: bool,
    /// Give up (and kill what runs) after this many seconds; 0 = never.
    #[arg(long, default_value_t = 0)]
    pub timeout_secs: u64,
    /// The role to subscribe with (`*` by default).
    #[arg(long, default_value = "*")]
    pub role: String,
    /// Only agents whose attributes match: `rack in r1,r2` or `zone = a` (repeatable; all
    /// must hold). The allocator never offers other agents to this job.
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Only offers with at least this much (`cpus:1;mem:512`); smaller ones are never made.
    #[arg(long)]
    pub min_offer: Option<String>,
    /// Strict-priority level of the job (for `--allocator priority`); default: its role's.
    #[arg(long)]
    pub priority: Option<u32>,
    /// Warning time before the master kills this job's tasks to revoke their resources
    /// (default: the master's --revocation-grace-ms).
    #[arg(long)]
    pub revocation_grace_ms: Option<u64>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Upper bound on --instances: one framework's bookkeeping must stay small.
const MAX_INSTANCES: usize = 1_000_000;

fn config(a: &RunArgs) -> anyhow::Result<RunConfig> {
    if a.instances == 0 || a.instances > MAX_INSTANCES {
        bail!("--instances must be between 1 and {MAX_INSTANCES}");
    }
    let cpus = Milli::from_f64("cpus", a.cpus).map_err(|e| anyhow!("--cpus: {e}"))?;
    let mem = Milli::from_f64("mem", a.mem).map_err(|e| anyhow!("--mem: {e}"))?;
    if cpus.0 <= 0 && mem.0 <= 0 {
        bail!("a task needs some --cpus or --mem");
    }
    let resources =
        Resources::parse(&format!("cpus:{cpus};mem:{mem}")).map_err(|e| anyhow!("{e}"))?;
    let command = if a.command.len() == 1 {
        CommandInfo::shell(&a.command[0])
    } else {
        CommandInfo::argv(&a.command)
    };
    let mut c = RunConfig::new(&a.name, a.instances, command, resources);
    c.shared_executor = a.shared_executor.unwrap_or(a.instances > 1);
    c.refuse_seconds = 1.0;
    c.max_in_flight = a.max_in_flight;
    c.role = a.role.clone();
    c.priority = a.priority;
    c.revocation_grace_ms = a.revocation_grace_ms;
    c.offer_filters = offer_filters(a)?;
    Ok(c)
}

/// `--constraint` and `--min-offer`, checked here so a typo fails before subscribing.
fn offer_filters(a: &RunArgs) -> anyhow::Result<OfferFilters> {
    let constraints = a
        .constraints
        .iter()
        .map(|c| AttributeConstraint::parse(c).map_err(|e| anyhow!("--constraint: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let min_offer = a
        .min_offer
        .as_deref()
        .map(|m| Resources::parse(m).map_err(|e| anyhow!("--min-offer: {e}")))
        .transpose()?;
    let f = OfferFilters {
        constraints,
        min_offer,
    };
    f.validate().map_err(|e| anyhow!("{e}"))?;
    Ok(f)
}

pub fn run(a: RunArgs) -> anyhow::Result<i32> {
    let masters = super::parse_masters(&a.master)?;
    let cfg = config(&a)?;
    let fw = Published::new(RunFramework::new(cfg).map_err(|e| anyhow!("{e}"))?, publish);
    let shared = fw.out.clone();
    let sys = actix::System::new();
    sys.block_on(async move {
        let (driver, exit): (_, _) = SchedulerDriver::start(super::tcp_transport(), masters, &a.cluster, fw)
            .map_err(|e| anyhow!("starting the scheduler driver: {e}"))?;
        let started = Instant::now();
        let mut view = View::new(&a);
        let mut exit = Box::pin(exit);
        let deadline = (a.timeout_secs > 0).then(|| started + Duration::from_secs(a.timeout_secs));
        let mut aborted = false;
        let code = loop {
            tokio::select! {
                code = &mut exit => break code.unwrap_or(1),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = super::shutdown_signal(), if !aborted => {
                    eprintln!("agora run: interrupted; killing the job's tasks");
                    aborted = true;
                    let _ = driver.send(WithScheduler::new(|s: &mut Published<RunFramework, Shared>, ctx| s.inner.abort(ctx))).await;
                    let d = driver.clone();
                    actix_rt::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        d.do_send(StopDriver { code: 130 });
                    });
                }
            }
            if let Some(dl) = deadline {
                if Instant::now() > dl && !aborted {
                    eprintln!("agora run: timed out after {}s; killing the job's tasks", a.timeout_secs);
                    aborted = true;
                    let _ = driver.send(WithScheduler::new(|s: &mut Published<RunFramework, Shared>, ctx| s.inner.abort(ctx))).await;
                }
            }
            view.update(&shared);
        };
        view.update(&shared);
        view.finish();
        let sh = shared.lock().map_err(|_| anyhow!("state lock poisoned"))?;
        let Some(sh) = sh.as_ref() else {
            eprintln!("agora run: never subscribed to the master");
            return Ok::<i32, anyhow::Error>(code.max(1));
        };
        Ok(summarize(&a, code, &sh.progress, &sh.report, &sh.latencies, started.elapsed()))
    })
    .context("agora run")
}

/// What the scheduler publishes for the CLI after every callback. The driver actor stops when
/// the job ends, so the CLI reads this rather than asking the actor.
#[derive(Default)]
struct Shared {
    events: Vec<Transition>,
    progress: Progress,
    sandbox: Option<String>,
    report: Vec<InstanceReport>,
    latencies: Vec<u64>,
}

/// What the CLI reads each tick.
fn publish(fw: &mut RunFramework, out: &mut Option<Shared>) {
    let sh = out.get_or_insert_with(Shared::default);
    let progress = fw.progress();
    if progress.done || progress.ended() == progress.total {
        sh.report = fw.report();
        sh.latencies = latencies(fw);
    }
    // Bounded: a CLI that stopped reading must not grow this without limit.
    let (events, _) = fw.take_events();
    if sh.events.len() < 100_000 {
        sh.events.extend(events);
    }
    if sh.sandbox.is_none() {
        sh.sandbox = fw.batch().tasks().first().and_then(|t| t.sandbox.clone());
    }
    sh.progress = progress;
}

/// accept → TASK_RUNNING latencies of all tasks that ran, sorted (ms).
fn latencies(s: &RunFramework) -> Vec<u64> {
    let mut v: Vec<u64> = s
        .batch()
        .tasks()
        .iter()
        .filter_map(|t| t.timing.accept_to_running_ms())
        .collect();
    v.sort_unstable();
    v
}

fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn summarize(
    a: &RunArgs,
    code: i32,
    p: &Progress,
    report: &[InstanceReport],
    lat: &[u64],
    wall: Duration,
) -> i32 {
    if a.instances == 1 {
        let Some(r) = report.first() else {
            return code.max(1);
        };
        return match r.final_state {
            Some(TaskState::Finished) => 0,
            Some(TaskState::Failed) if r.exit_code.is_some() => {
                let c = r.exit_code.unwrap_or(1);
                eprintln!(
                    "agora run: task {} failed: {}",
                    r.task_id,
                    one_line(&r.message)
                );
                if c == 0 {
                    1
                } else {
                    c
                }
            }
            Some(st) => {
                eprintln!(
                    "agora run: task {} ended {}: {}",
                    r.task_id,
                    st.name(),
                    one_line(&r.message)
                );
                1
            }
            None => {
                eprintln!("agora run: task {} did not end ({:?})", r.task_id, r.phase);
                code.max(1)
            }
        };
    }
    // Throughput is measured from the first launch to the last end, like a job array's makespan.
    let span_ms = match (p.first_submit, p.last_finish) {
        (Some(s), Some(e)) => e.since(s).max(1),
        _ => wall.as_millis() as u64,
    };
    let rate = p.ended() as f64 * 1000.0 / span_ms as f64;
    println!(
        "{} finished, {} failed, {} killed, {} lost, {} error; wall {:.2}s; {:.0} tasks/s (first launch to last end {:.2}s); accept->TASK_RUNNING p50 {} ms, p99 {} ms",
        p.finished, p.failed, p.killed, p.lost, p.errored, wall.as_secs_f64(), rate, span_ms as f64 / 1000.0,
        pct(lat, 0.5), pct(lat, 0.99)
    );
    if p.finished == a.instances {
        0
    } else {
        code.max(1)
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// Prints state changes (single task) or a progress bar (job arrays).
struct View {
    single: bool,
    bar: Option<indicatif::ProgressBar>,
    printed_sandbox: bool,
}

impl View {
    fn new(a: &RunArgs) -> View {
        let single = a.instances == 1;
        let bar = (!single && !a.no_progress).then(|| {
            let b = indicatif::ProgressBar::new(a.instances as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} ended  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        View {
            single,
            bar,
            printed_sandbox: false,
        }
    }

    fn show(&mut self, events: &[Transition], p: &Progress) {
        if self.single {
            for e in events {
                let reason = e
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let msg = if e.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", one_line(&e.message))
                };
                println!(
                    "[{:>7.3}s] {} {}{}{}",
                    // The driver's clock starts with the run: `at` is time since submission.
                    e.at.ms() as f64 / 1000.0,
                    e.task_id,
                    e.state.name(),
                    reason,
                    msg
                );
            }
            return;
        }
        if let Some(b) = &self.bar {
            b.set_position(p.ended() as u64);
            b.set_message(format!(
                "running {} staged {} finished {} failed {}",
                p.running,
                p.staged,
                p.finished,
                p.failed + p.lost + p.errored + p.killed
            ));
        }
    }

    fn update(&mut self, shared: &Mutex<Option<Shared>>) {
        let Ok(mut sh) = shared.lock() else { return };
        let Some(sh) = sh.as_mut() else { return };
        let events = std::mem::take(&mut sh.events);
        let (progress, sandbox) = (sh.progress.clone(), sh.sandbox.clone());
        self.show(&events, &progress);
        self.sandbox(sandbox);
    }

    fn sandbox(&mut self, sandbox: Option<String>) {
        if let (true, false, Some(path)) = (self.single, self.printed_sandbox, sandbox) {
            println!("sandbox: {path}");
            self.printed_sandbox = true;
        }
    }

    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        let mut all = vec!["agora-run", "--master", "127.0.0.1:5050"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        Cli::try_parse_from(all).expect("flags parse").run
    }

    #[test]
    fn constraints_min_offer_priority_and_grace_reach_the_framework_info() {
        let a = parse(&[
            "--role",
            "eng",
            "--constraint",
            "rack in r1,r2",
            "--constraint",
            "zone = a",
            "--min-offer",
            "cpus:1;mem:512",
            "--priority",
            "3",
            "--revocation-grace-ms",
            "1500",
        ]);
        let c = config(&a).expect("valid");
        let fw = RunFramework::new(c).expect("framework");
        let info = agora_actors::sdk::Scheduler::framework_info(&fw);
        assert_eq!(info.roles, vec!["eng".to_string()]);
        assert_eq!(info.priority, Some(3));
        assert_eq!(info.revocation_grace_ms, Some(1500));
        let f = &info.offer_filters;
        assert_eq!(f.constraints.len(), 2);
        assert_eq!(f.constraints[0].to_string(), "rack in r1,r2");
        assert_eq!(
            f.min_offer.as_ref().map(|r| r.to_string()).as_deref(),
            Some("cpus:1;mem:512")
        );
    }

    #[test]
    fn bad_filters_fail_before_subscribing() {
        assert!(config(&parse(&["--constraint", "rack like r1"])).is_err());
        assert!(config(&parse(&["--min-offer", "ports:[1-2]"])).is_err());
        assert!(config(&parse(&["--min-offer", "cpus:x"])).is_err());
    }
}
