//! Scenario files (TOML): the cluster, the workload and the faults of one simulation.
//!
//! ```toml
//! name = "faults"
//! safety_ms = 30000          # phase with faults
//! liveness_ms = 600000       # bound on the fault-free phase that must converge
//!
//! [agents]
//! count = 3
//! resources = "cpus:4;mem:4096"
//! racks = 2                  # attribute rack:r0..r(racks-1), round robin
//!
//! [[frameworks]]
//! kind = "batch"             # or "service"
//! name = "b1"
//! tasks = 20
//! task_resources = "cpus:1;mem:256"
//! duration = "exp"           # "const", "exp" or "trace" (with trace = "file.csv")
//! mean_ms = 3000
//! gang = false               # rigid job: starts only when all tasks can be placed at once
//! role = "*"
//! data_replicas = 3          # task i reads block i, stored on 3 agents (locality preference)
//! locality_wait_ms = 1000    # delay scheduling wait for a preferred agent
//! remote_read_penalty_pct = 50 # a task away from its block runs 50% longer
//!
//! [allocator]
//! policy = "drf"             # "drf", "priority" or "lottery"
//! priorities = { short = 1 } # role -> strict priority level (policy "priority")
//!
//! [faults]
//! agent_crash_per_min = 1.0
//! ```
//!
//! `masters = 3` runs a raft group of masters (see `docs/simulator.md`); its timing is in
//! `[raft]` and its faults are `leader_crash_per_min` and `master_partition_per_min`.

use agora_actors::Resources;
use serde::Deserialize;

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {why}")]
    Read { path: String, why: String },
    #[error("bad scenario: {0}")]
    Parse(String),
    #[error("bad scenario field {field}: {why}")]
    Invalid { field: String, why: String },
}

/// Most agents / frameworks / tasks a scenario may ask for (keeps a typo from eating memory).
pub const MAX_AGENTS: usize = 100_000;
pub const MAX_FRAMEWORKS: usize = 10_000;
pub const MAX_TASKS_PER_FRAMEWORK: usize = 1_000_000;
/// Largest remote-read penalty (percent): a task 11× slower away from its data is a typo.
pub const MAX_REMOTE_READ_PENALTY_PCT: u64 = 1_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// Virtual time with faults (may be 0: no safety phase).
    #[serde(default = "d_safety")]
    pub safety_ms: u64,
    /// Upper bound of the fault-free phase; the run fails if the work is not done by then.
    #[serde(default = "d_liveness")]
    pub liveness_ms: u64,
    pub agents: AgentsSpec,
    /// Masters: 1 (default) is one master whose registry survives its crashes; more is a raft
    /// group of masters (the production registry node over in-memory storage).
    #[serde(default = "one")]
    pub masters: usize,
    #[serde(default)]
    pub raft: RaftSpec,
    #[serde(default)]
    pub frameworks: Vec<FrameworkSpec>,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub faults: FaultSpec,
    #[serde(default)]
    pub allocator: AllocatorSpec,
    /// After a master restart, registry agents that do not re-register within this long are
    /// declared unreachable (the real master's `--agent-reregister-timeout-ms`).
    #[serde(default = "d_reregister")]
    pub agent_reregister_timeout_ms: u64,
    /// Invariants are checked after every event by default (1). Very large scenarios may check
    /// every Nth event instead: reading every book of a 10,000-agent master after each of
    /// millions of events costs far more than the events themselves. The final checks always run.
    #[serde(default = "d_check_every")]
    pub check_every_events: u64,
    /// Sample cluster and framework usage this often (virtual ms) for utilization curves;
    /// 0: no sampling.
    #[serde(default)]
    pub sample_ms: u64,
    /// The master's offer timeout (its default when absent): an offer held longer is rescinded.
    #[serde(default)]
    pub offer_timeout_ms: Option<u64>,
}

fn d_check_every() -> u64 {
    1
}

fn d_reregister() -> u64 {
    30_000
}

fn d_safety() -> u64 {
    0
}
fn d_liveness() -> u64 {
    600_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsSpec {
    pub count: usize,
    pub resources: String,
    #[serde(default = "one")]
    pub racks: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameworkKind {
    Batch,
    Service,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Duration {
    #[default]
    Const,
    Exp,
    /// Task i runs for the i-th duration of a CSV trace (`trace`), cycling if shorter.
    Trace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameworkSpec {
    pub kind: FrameworkKind,
    pub name: String,
    /// This many copies (named `NAME-0`, `NAME-1`...), started `start_every_ms` apart.
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default)]
    pub start_every_ms: u64,
    /// Batch: number of tasks. Service: number of instances.
    pub tasks: usize,
    pub task_resources: String,
    #[serde(default)]
    pub duration: Duration,
    /// Mean (exp) or exact (const) task duration; ignored by services (they run forever).
    #[serde(default = "d_mean")]
    pub mean_ms: u64,
    /// When the scheduler starts (virtual ms).
    #[serde(default)]
    pub start_ms: u64,
    /// Scheduler failover timeout at the master.
    #[serde(default = "d_failover")]
    pub failover_timeout_ms: u64,
    /// Lost attempts retried per task (large, so liveness is not a matter of luck).
    #[serde(default = "d_retries")]
    pub max_retries_lost: u32,
    /// Batch: a task the master keeps answering `TASK_UNKNOWN` for is retried after this long.
    #[serde(default = "d_unknown_lost")]
    pub unknown_lost_after_ms: u64,
    /// CSV of task durations for `duration = "trace"` (relative to the scenario file).
    #[serde(default)]
    pub trace: Option<String>,
    /// The durations read from `trace` (filled by `Scenario::load` or by the caller).
    #[serde(skip)]
    pub trace_ms: std::sync::Arc<Vec<u64>>,
    /// Batch: a rigid (gang) job that needs all its tasks placed at once.
    #[serde(default)]
    pub gang: bool,
    #[serde(default = "d_role")]
    pub role: String,
    /// Batch: task i reads block i, stored on this many agents (0: no data, no preference).
    #[serde(default)]
    pub data_replicas: usize,
    /// Batch: delay scheduling wait for an agent holding the task's block.
    #[serde(default)]
    pub locality_wait_ms: u64,
    /// Batch with `data_replicas`: a task run away from its block reads it over the network
    /// and takes this much longer (percent of its duration; 0: reads cost nothing).
    #[serde(default)]
    pub remote_read_penalty_pct: u64,
    /// Batch: decline filter (seconds); the SDK framework's default when absent.
    #[serde(default)]
    pub refuse_seconds: Option<f64>,
}

fn d_unknown_lost() -> u64 {
    120_000
}

fn d_role() -> String {
    "*".to_string()
}

impl FrameworkSpec {
    /// A batch framework spec with the defaults a TOML file would get.
    pub fn batch(name: &str, tasks: usize, task_resources: &str) -> FrameworkSpec {
        FrameworkSpec {
            kind: FrameworkKind::Batch,
            name: name.to_string(),
            tasks,
            task_resources: task_resources.to_string(),
            duration: Duration::Const,
            mean_ms: d_mean(),
            start_ms: 0,
            failover_timeout_ms: d_failover(),
            max_retries_lost: d_retries(),
            trace: None,
            trace_ms: Default::default(),
            gang: false,
            role: d_role(),
            data_replicas: 0,
            locality_wait_ms: 0,
            remote_read_penalty_pct: 0,
            refuse_seconds: None,
            unknown_lost_after_ms: d_unknown_lost(),
            count: 1,
            start_every_ms: 0,
        }
    }
}

fn d_mean() -> u64 {
    2_000
}
fn d_failover() -> u64 {
    3_600_000
}
fn d_retries() -> u32 {
    1_000
}

/// The network between clients (agents, schedulers) and the master. Executor ↔ agent links are
/// local sockets and never faulty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
    /// How long after a connection breaks each side notices.
    pub detect_ms: u64,
    /// Client redial backoff bounds.
    pub redial_min_ms: u64,
    pub redial_max_ms: u64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            min_delay_ms: 1,
            max_delay_ms: 20,
            detect_ms: 1_000,
            redial_min_ms: 200,
            redial_max_ms: 2_000,
        }
    }
}

/// Fault rates of the safety phase. Per-message probabilities are in [0, 1]; the rest are
/// expected events per minute of virtual time.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// A message is lost and its connection resets (what a TCP peer sees).
    pub reset_per_msg: f64,
    /// A message is lost silently, the connection stays up (datagram semantics; the real
    /// transport never does this, so it tests beyond the design's assumptions).
    pub drop_per_msg: f64,
    /// A message is delivered twice.
    pub dup_per_msg: f64,
    /// A message ignores FIFO order and gets an extra random delay.
    pub reorder_per_msg: f64,
    pub reorder_extra_ms: u64,
    /// The agent process dies; its executors keep running and it recovers from its checkpoint.
    pub agent_crash_per_min: f64,
    /// The agent's machine dies: its executors with it; the agent recovers from its checkpoint
    /// on reboot and reports their containers gone.
    pub machine_crash_per_min: f64,
    /// How long a crashed agent (or machine) stays down (uniform in [0.5, 1.5] of this).
    pub agent_down_ms: u64,
    /// A master process dies (with several masters: one picked at random among those up).
    pub master_crash_per_min: f64,
    pub master_down_ms: u64,
    /// Several masters: the current leader dies (it restarts after `master_down_ms`).
    pub leader_crash_per_min: f64,
    /// Several masters: the current leader (or a random master when none leads) is cut off
    /// from every other node for `partition_ms` (about); its client connections break after
    /// `partition_break_ms`.
    pub master_partition_per_min: f64,
    /// A client (agent or scheduler) is cut off from the master.
    pub partition_per_min: f64,
    pub partition_ms: u64,
    /// A partition longer than this breaks the node's connection (TCP gives up).
    pub partition_break_ms: u64,
}

/// Raft timing of a group of masters, in ticks of the virtual clock.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSpec {
    pub tick_ms: u64,
    /// Election timeout of master 1; master i waits `election_ticks + (i-1) * election_step`
    /// ticks (fixed per master: raft-rs would draw it from an unseeded RNG).
    pub election_ticks: usize,
    pub election_step: usize,
    pub heartbeat_ticks: usize,
    /// A snapshot replaces the log after this many applied entries.
    pub compact_after_entries: u64,
}

impl Default for RaftSpec {
    fn default() -> Self {
        RaftSpec {
            tick_ms: 100,
            election_ticks: 10,
            election_step: 3,
            heartbeat_ticks: 2,
            compact_after_entries: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocatorSpec {
    pub interval_ms: u64,
    pub coalesce_ms: u64,
    /// `drf`, `priority` or `lottery` (the allocator's policies).
    pub policy: String,
    /// Strict priority level per role (used by the `priority` policy).
    pub priorities: std::collections::BTreeMap<String, u32>,
}

impl Default for AllocatorSpec {
    fn default() -> Self {
        AllocatorSpec {
            interval_ms: 1_000,
            coalesce_ms: 5,
            policy: "drf".to_string(),
            priorities: Default::default(),
        }
    }
}

/// Replaces each spec with `count` copies of it.
fn expand(specs: Vec<FrameworkSpec>) -> Vec<FrameworkSpec> {
    let mut out = Vec::new();
    for f in specs {
        if f.count == 1 {
            out.push(f);
            continue;
        }
        for i in 0..f.count {
            let mut c = f.clone();
            c.count = 1;
            c.name = format!("{}-{i}", f.name);
            c.start_ms = f.start_ms + f.start_every_ms.saturating_mul(i as u64);
            out.push(c);
        }
    }
    out
}

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        let copies: usize = s.frameworks.iter().map(|f| f.count).sum();
        if copies > MAX_FRAMEWORKS {
            return Err(ScenarioError::Invalid {
                field: "frameworks".into(),
                why: format!("{copies} frameworks in all; at most {MAX_FRAMEWORKS}"),
            });
        }
        s.frameworks = expand(std::mem::take(&mut s.frameworks));
        s.validate()?;
        Ok(s)
    }

    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Read {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        let mut s = Self::from_toml(&text)?;
        s.load_traces(path.parent().unwrap_or(std::path::Path::new(".")))?;
        Ok(s)
    }

    /// Reads the CSV traces of `duration = "trace"` frameworks (paths relative to `dir`).
    pub fn load_traces(&mut self, dir: &std::path::Path) -> Result<(), ScenarioError> {
        for (i, f) in self.frameworks.iter_mut().enumerate() {
            if f.duration != Duration::Trace || !f.trace_ms.is_empty() {
                continue;
            }
            let Some(file) = &f.trace else {
                return Err(ScenarioError::Invalid {
                    field: format!("frameworks[{i}].trace"),
                    why: "duration = \"trace\" needs a trace file".into(),
                });
            };
            f.trace_ms = std::sync::Arc::new(crate::workload::read_trace(&dir.join(file))?);
        }
        Ok(())
    }

    pub fn agent_resources(&self) -> Resources {
        // Validated in `validate`.
        Resources::parse(&self.agents.resources).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |field: &str, why: String| ScenarioError::Invalid {
            field: field.to_string(),
            why,
        };
        if self.agents.count == 0 || self.agents.count > MAX_AGENTS {
            return Err(bad("agents.count", format!("must be 1..={MAX_AGENTS}")));
        }
        Resources::parse(&self.agents.resources)
            .map_err(|e| bad("agents.resources", e.to_string()))?;
        if self.check_every_events == 0 {
            return Err(bad("check_every_events", "must be at least 1".into()));
        }
        if self.frameworks.len() > MAX_FRAMEWORKS {
            return Err(bad("frameworks", format!("at most {MAX_FRAMEWORKS}")));
        }
        for (i, f) in self.frameworks.iter().enumerate() {
            let field = |x: &str| format!("frameworks[{i}].{x}");
            Resources::parse(&f.task_resources)
                .map_err(|e| bad(&field("task_resources"), e.to_string()))?;
            if f.data_replicas > self.agents.count {
                return Err(bad(
                    &field("data_replicas"),
                    format!("more replicas than the {} agents", self.agents.count),
                ));
            }
            if f.remote_read_penalty_pct > MAX_REMOTE_READ_PENALTY_PCT {
                return Err(bad(
                    &field("remote_read_penalty_pct"),
                    format!("at most {MAX_REMOTE_READ_PENALTY_PCT}"),
                ));
            }
            if f.tasks == 0 || f.tasks > MAX_TASKS_PER_FRAMEWORK {
                return Err(bad(
                    &field("tasks"),
                    format!("must be 1..={MAX_TASKS_PER_FRAMEWORK}"),
                ));
            }
        }
        if self.masters == 0 || self.masters > 7 {
            return Err(bad("masters", "must be 1..=7 (a raft group)".into()));
        }
        let r = &self.raft;
        if r.tick_ms == 0 || r.heartbeat_ticks == 0 || r.election_ticks <= r.heartbeat_ticks {
            return Err(bad(
                "raft",
                "need 1 <= tick_ms, 1 <= heartbeat_ticks < election_ticks".into(),
            ));
        }
        let f = &self.faults;
        for (name, p) in [
            ("faults.reset_per_msg", f.reset_per_msg),
            ("faults.drop_per_msg", f.drop_per_msg),
            ("faults.dup_per_msg", f.dup_per_msg),
            ("faults.reorder_per_msg", f.reorder_per_msg),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(bad(
                    name,
                    format!("must be a probability in [0, 1], got {p}"),
                ));
            }
        }
        for (name, r) in [
            ("faults.agent_crash_per_min", f.agent_crash_per_min),
            ("faults.machine_crash_per_min", f.machine_crash_per_min),
            ("faults.master_crash_per_min", f.master_crash_per_min),
            ("faults.partition_per_min", f.partition_per_min),
            ("faults.leader_crash_per_min", f.leader_crash_per_min),
            (
                "faults.master_partition_per_min",
                f.master_partition_per_min,
            ),
        ] {
            if !(0.0..=600.0).contains(&r) {
                return Err(bad(name, format!("must be in [0, 600], got {r}")));
            }
        }
        let n = &self.network;
        if n.min_delay_ms == 0 || n.max_delay_ms < n.min_delay_ms {
            return Err(bad(
                "network",
                "need 1 <= min_delay_ms <= max_delay_ms".into(),
            ));
        }
        if n.redial_min_ms == 0 || n.redial_max_ms < n.redial_min_ms {
            return Err(bad(
                "network",
                "need 1 <= redial_min_ms <= redial_max_ms".into(),
            ));
        }
        let a = &self.allocator;
        agora_allocator::drf::PolicyKind::parse(&a.policy)
            .map_err(|e| bad("allocator.policy", e.to_string()))?;
        if a.interval_ms == 0 || a.coalesce_ms > a.interval_ms {
            return Err(bad(
                "allocator",
                "need 1 <= interval_ms and coalesce_ms <= interval_ms".into(),
            ));
        }
        Ok(())
    }
}
