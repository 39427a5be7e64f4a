//! Scheduler processes for the standby-scheduler tests: the test binary started again to run
//! only its `scheduler_child_process` test (which calls [`run_if_asked`]); it drives an SDK
//! scheduler over TCP and prints one `EVENT` line per callback, which the parent reads from
//! the child's log. A test binary using this declares that test itself.

use super::{task, wait_until, Proc, CLUSTER};
use agora_actors::sdk;
use agora_actors::*;
use std::path::Path;
use std::time::Duration;

/// Set in a scheduler child's environment: `active` or `standby`.
pub const CHILD_ENV: &str = "AGORA_TEST_SCHEDULER_CHILD";
pub const CHILD_FAILOVER_TIMEOUT_MS: u64 = 30_000;

/// The scheduler a child process runs: launches `to_launch` (all in its first offer), prints
/// every callback, and with `teardown_when_done` ends the framework once `expect` tasks ended.
struct ChildScheduler {
    id: Option<FrameworkId>,
    to_launch: Vec<String>,
    command: String,
    expect: usize,
    ended: std::collections::BTreeSet<String>,
    teardown_when_done: bool,
}

impl agora_actors::sdk::Scheduler for ChildScheduler {
    fn framework_info(&self) -> FrameworkInfo {
        FrameworkInfo {
            id: self.id.clone(),
            failover_timeout_ms: CHILD_FAILOVER_TIMEOUT_MS,
            ..FrameworkInfo::new("standby-test")
        }
    }
    fn subscribed(&mut self, _: &mut sdk::SchedulerCtx, id: &FrameworkId, resubscribed: bool) {
        println!("EVENT subscribed {id} {resubscribed}");
    }
    fn standing_by(&mut self, _: &mut sdk::SchedulerCtx, message: &str) {
        println!("EVENT standing_by {message}");
    }
    fn offers(&mut self, ctx: &mut sdk::SchedulerCtx, offers: Vec<Offer>) {
        for o in offers {
            if self.to_launch.is_empty() {
                ctx.decline(vec![o.id], 60.0);
                continue;
            }
            let tasks = std::mem::take(&mut self.to_launch)
                .iter()
                .map(|t| task(t, &o.agent_id, "cpus:0.1;mem:16", &self.command))
                .collect();
            ctx.launch(vec![o.id], tasks);
        }
    }
    fn update(&mut self, ctx: &mut sdk::SchedulerCtx, s: &TaskStatus) {
        println!(
            "EVENT update {} {} uuid={}",
            s.task_id,
            s.state.name(),
            s.uuid.is_some()
        );
        if s.state.is_terminal() {
            self.ended.insert(s.task_id.to_string());
        }
        if self.teardown_when_done && self.ended.len() == self.expect {
            ctx.teardown();
            ctx.stop(0);
        }
    }
    fn error(&mut self, _: &mut sdk::SchedulerCtx, message: &str, fatal: bool) {
        println!("EVENT error fatal={fatal} {message}");
    }
}

/// In a child started by [`spawn_scheduler`]: runs its scheduler until the driver stops.
/// Otherwise (a normal test run) does nothing.
pub fn run_if_asked() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let to_launch: Vec<String> = var("AGORA_TEST_TASKS")
        .split(',')
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    let sched = ChildScheduler {
        id: FrameworkId::new(var("AGORA_TEST_FID")).ok(),
        expect: to_launch.len(),
        to_launch: if mode == "active" { to_launch } else { vec![] },
        command: var("AGORA_TEST_CMD"),
        ended: Default::default(),
        teardown_when_done: var("AGORA_TEST_TEARDOWN") == "1",
    };
    let masters = var("AGORA_TEST_MASTER")
        .split(',')
        .map(String::from)
        .collect();
    let transport = std::sync::Arc::new(agora_actors::transport::tcp::TcpTransport::default());
    let code = actix::System::new().block_on(async move {
        use sdk::driver::SchedulerDriver;
        let started = if mode == "standby" {
            SchedulerDriver::start_standby(transport, masters, CLUSTER, sched)
        } else {
            SchedulerDriver::start(transport, masters, CLUSTER, sched)
        };
        started.expect("driver").1.await.unwrap_or(99)
    });
    println!("EVENT exit {code}");
}

/// Starts a scheduler child process of the current test binary, dialing `masters` (a
/// comma-separated list); its output goes to `dir/NAME.log`.
pub fn spawn_scheduler(dir: &Path, name: &str, masters: &str, env: &[(&str, &str)]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "scheduler_child_process",
            "--ignored",
            "--nocapture",
        ])
        .envs(env.iter().copied())
        .env("AGORA_TEST_MASTER", masters)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn scheduler child");
    Proc {
        child,
        name: name.to_string(),
        log,
    }
}

/// The child's `EVENT` lines, without the prefix.
pub fn events(p: &Proc) -> Vec<String> {
    p.log_text()
        .lines()
        .filter_map(|l| l.strip_prefix("EVENT "))
        .map(String::from)
        .collect()
}

pub fn wait_event(p: &Proc, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) -> String {
    wait_until(what, timeout, || events(p).into_iter().find(|e| f(e)))
}

/// Terminal updates (from an agent: with a uuid) each task received, by task.
pub fn terminal_updates(p: &Proc) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut by_task = std::collections::BTreeMap::<String, Vec<String>>::new();
    for e in events(p) {
        let parts: Vec<&str> = e.split(' ').collect();
        if let ["update", task, state, "uuid=true"] = parts[..] {
            let terminal = ["TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST"];
            if terminal.contains(&state) {
                by_task.entry(task.into()).or_default().push(state.into());
            }
        }
    }
    by_task
}
