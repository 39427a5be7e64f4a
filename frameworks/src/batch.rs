//! The elastic batch framework: N identical tasks that take whatever the cluster offers.
//!
//! It packs as many pending tasks as fit into each offer (one `Accept` per offer, all its tasks
//! at once), declines offers it cannot use, suppresses offers once every task is launched and
//! revives when one has to run again, retries tasks the cluster lost, and stops when every task
//! has ended — exit code 0 iff all finished. Along the way it keeps the numbers a demo or an
//! evaluation wants: progress counters, per-task timings and a sampled share of the cluster.

use crate::fit::take_resources;
use crate::{check_common, check_prefix, FrameworkError};
use agora_actors::sdk::{Scheduler, SchedulerCtx};
use agora_actors::{
    AgentId, CommandInfo, ExecutorId, ExecutorInfo, Filters, FrameworkId, FrameworkInfo, Offer,
    Operation, Resources, TaskId, TaskInfo, TaskState, TaskStatus, Time,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tracing::{debug, info, warn};

/// Most tasks one batch framework runs.
pub const MAX_BATCH_TASKS: usize = 1_000_000;
/// Transitions kept per task (across its attempts); older ones are dropped.
pub const MAX_HISTORY_PER_TASK: usize = 64;
/// Transition events kept for [`BatchFramework::take_events`] between two takes.
pub const MAX_EVENTS: usize = 100_000;
/// Timer token of the share sampler.
pub const SAMPLE_TIMER: u64 = 1;
/// Timer token of the re-reconciliation of tasks the master answered `TASK_UNKNOWN` for.
pub const RECONCILE_TIMER: u64 = 2;
/// Executor id of the shared command executor, unless configured.
pub const DEFAULT_EXECUTOR_ID: &str = "batch-exec";

/// What to run and how. Build with [`BatchConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub name: String,
    pub user: String,
    /// The role to subscribe with; its reservations are used before unreserved resources.
    pub role: String,
    /// Number of tasks (N).
    pub tasks: usize,
    /// What every task runs (`AGORA_TASK_ID` tells it which one it is).
    pub command: CommandInfo,
    /// What every task needs, written unreserved (`cpus:1;mem:128`).
    pub task_resources: Resources,
    /// Task ids are `<prefix>-<index>`, retries `<prefix>-<index>.r<attempt>`.
    pub task_id_prefix: String,
    /// How long declined resources (and the unused rest of accepted offers) are withheld.
    pub refuse_seconds: f64,
    /// Retries of a task that ended `TASK_FAILED` (its command failed: usually pointless).
    pub max_retries_failed: u32,
    /// Retries of a task that ended `TASK_LOST`, `TASK_DROPPED` or `TASK_GONE` (not its fault).
    pub max_retries_lost: u32,
    /// Run all tasks on an agent in one command executor (`executor_id`), instead of one
    /// executor per task.
    pub shared_executor: bool,
    pub executor_id: String,
    /// What the shared executor itself needs, charged once per agent (unreserved resources).
    pub executor_resources: Resources,
    /// Most tasks placed in one offer; 0 means no limit (pack as many as fit).
    pub max_tasks_per_offer: usize,
    /// Most tasks launched and not yet ended at once; 0 means no limit. With 1 the job runs
    /// its tasks one after another (how launch latency is measured without queueing).
    pub max_in_flight: usize,
    /// Tear the framework down at the master when done (frees shared executors at once).
    pub teardown_on_finish: bool,
    pub failover_timeout_ms: u64,
    /// Interval of the share sampler; 0 turns it off.
    pub sample_interval_ms: u64,
    /// Samples kept (the oldest are dropped beyond this).
    pub max_samples: usize,
    /// Keep transition events for [`BatchFramework::take_events`].
    pub record_events: bool,
    /// Stated at subscribe: what it never wants offered, its priority level, its revocation
    /// grace period (see `FrameworkInfo`).
    pub offer_filters: agora_actors::OfferFilters,
    pub priority: Option<u32>,
    pub revocation_grace_ms: Option<u64>,
    /// How often tasks the master answered `TASK_UNKNOWN` for are reconciled again (the
    /// answer changes once their agent re-registers or is declared unreachable).
    pub reconcile_interval_ms: u64,
    /// A task still `TASK_UNKNOWN` this long is treated as lost and retried (its agent is in
    /// no registry the master has, so nobody will ever report on it). Longer than the
    /// master's agent re-registration window, which ends in a definite answer.
    pub unknown_lost_after_ms: u64,
    /// Per-task commands (index → command) instead of `command` for all; empty: not used.
    /// How a trace of task durations is replayed.
    pub task_commands: Vec<CommandInfo>,
    /// Per-task preferred hostnames (the agents holding the task's input block); empty: no
    /// locality preference. With `locality_wait_ms` the job delay-schedules for them.
    pub preferred_hosts: Vec<Vec<String>>,
    /// How long to wait for an offer on a preferred agent before launching elsewhere
    /// (delay scheduling, [`agora_actors::sdk::DelayScheduler`]); 0: never wait.
    pub locality_wait_ms: u64,
    /// A rigid (gang) job: hold offers until all pending tasks can be placed at once, then
    /// launch them together. A task lost later is retried on its own.
    pub gang: bool,
}

impl BatchConfig {
    pub fn new(name: &str, tasks: usize, command: CommandInfo, task_resources: Resources) -> Self {
        BatchConfig {
            name: name.to_string(),
            user: "root".to_string(),
            role: "*".to_string(),
            tasks,
            command,
            task_resources,
            task_id_prefix: "task".to_string(),
            refuse_seconds: 5.0,
            max_retries_failed: 0,
            max_retries_lost: 3,
            shared_executor: false,
            executor_id: DEFAULT_EXECUTOR_ID.to_string(),
            executor_resources: Resources::parse("cpus:0.1;mem:32").unwrap_or_default(),
            max_tasks_per_offer: 0,
            max_in_flight: 0,
            teardown_on_finish: true,
            failover_timeout_ms: 0,
            sample_interval_ms: 1_000,
            max_samples: 3_600,
            record_events: false,
            offer_filters: agora_actors::OfferFilters::default(),
            priority: None,
            revocation_grace_ms: None,
            reconcile_interval_ms: 30_000,
            unknown_lost_after_ms: 900_000,
            task_commands: Vec::new(),
            preferred_hosts: Vec::new(),
            locality_wait_ms: 0,
            gang: false,
        }
    }

    pub fn validate(&self) -> Result<(), FrameworkError> {
        check_common(
            &self.name,
            &self.role,
            &self.command,
            &self.task_resources,
            self.refuse_seconds,
        )?;
        if self.tasks == 0 || self.tasks > MAX_BATCH_TASKS {
            let why = format!("must be 1 to {MAX_BATCH_TASKS}");
            return Err(FrameworkError::config("tasks", why));
        }
        check_prefix(&format!(
            "{}-{MAX_BATCH_TASKS}.r{}",
            self.task_id_prefix,
            u32::MAX
        ))
        .map_err(|_| {
            FrameworkError::config(
                "task_id_prefix",
                "use letters, digits, -_.:@ (at most ~200)",
            )
        })?;
        placement::validate(self)?;
        if self.shared_executor {
            ExecutorId::new(self.executor_id.clone())
                .map_err(|e| FrameworkError::config("executor_id", e.to_string()))?;
        }
        Ok(())
    }
}

/// Where a task is in its life, as this framework sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum TaskPhase {
    /// Waiting for an offer.
    Pending,
    /// Launched (accepted), not running yet.
    Staged,
    Running,
    Finished,
    /// Failed and out of retries.
    Failed,
    Killed,
    /// Lost by the cluster and out of retries.
    Lost,
    /// Refused as invalid (`TASK_ERROR`).
    Error,
}

impl TaskPhase {
    /// Ended for good (no retry will follow).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskPhase::Finished
                | TaskPhase::Failed
                | TaskPhase::Killed
                | TaskPhase::Lost
                | TaskPhase::Error
        )
    }
}

/// When things happened to one task's current attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskTiming {
    /// When the attempt started waiting for resources.
    pub queued_at: Time,
    /// When the offer it was launched on arrived.
    pub offer_at: Option<Time>,
    /// When the framework accepted that offer for it.
    pub launched_at: Option<Time>,
    pub running_at: Option<Time>,
    pub ended_at: Option<Time>,
}

impl TaskTiming {
    /// Offer received → accepted.
    pub fn offer_to_accept_ms(&self) -> Option<u64> {
        Some(self.launched_at?.since(self.offer_at?))
    }
    /// Accepted → `TASK_RUNNING`: the cluster's launch latency.
    pub fn accept_to_running_ms(&self) -> Option<u64> {
        Some(self.running_at?.since(self.launched_at?))
    }
    /// Queued → accepted: how long the task waited for resources.
    pub fn queue_ms(&self) -> Option<u64> {
        Some(self.launched_at?.since(self.queued_at))
    }
    /// `TASK_RUNNING` → ended.
    pub fn run_ms(&self) -> Option<u64> {
        Some(self.ended_at?.since(self.running_at?))
    }
}

/// One status change of a task (or its launch, recorded as `TASK_STAGING`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub at: Time,
    /// Index of the task in the job (stable across retries).
    pub index: usize,
    /// The id of the attempt the change belongs to.
    pub task_id: TaskId,
    pub state: TaskState,
    pub reason: Option<String>,
    pub message: String,
}

/// Everything known about one task of the job.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    pub index: usize,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// Id of the current attempt.
    pub task_id: TaskId,
    pub phase: TaskPhase,
    pub last_state: Option<TaskState>,
    pub agent_id: Option<AgentId>,
    pub hostname: Option<String>,
    pub sandbox: Option<String>,
    /// What the current attempt was launched with.
    pub resources: Option<Resources>,
    pub exit_code: Option<i32>,
    pub message: String,
    pub retries_failed: u32,
    pub retries_lost: u32,
    /// Since when the master has answered `TASK_UNKNOWN` for the current attempt.
    pub unknown_since: Option<Time>,
    /// Whether the current attempt was launched on one of its preferred agents (`None`: not
    /// launched, or the job has no preferences).
    pub local: Option<bool>,
    pub timing: TaskTiming,
    /// Most recent transitions, oldest first (at most [`MAX_HISTORY_PER_TASK`]).
    pub history: VecDeque<Transition>,
}

/// The job at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub total: usize,
    pub pending: usize,
    pub staged: usize,
    pub running: usize,
    pub finished: usize,
    pub failed: usize,
    pub killed: usize,
    pub lost: usize,
    pub errored: usize,
    /// Attempts started again after a loss or failure.
    pub retries: u64,
    pub offers_received: u64,
    pub offers_declined: u64,
    pub tasks_launched: u64,
    /// Launches on one of the task's preferred agents (jobs with locality preferences).
    pub launched_local: u64,
    /// Offers declined to wait for a preferred agent (delay scheduling).
    pub offers_skipped: u64,
    pub subscribed_at: Option<Time>,
    /// First accept.
    pub first_submit: Option<Time>,
    pub first_running: Option<Time>,
    /// Latest end of a task.
    pub last_finish: Option<Time>,
    pub done: bool,
}

impl Progress {
    /// Tasks that ended for good.
    pub fn ended(&self) -> usize {
        self.finished + self.failed + self.killed + self.lost + self.errored
    }
    /// Subscription → last task end, once done: the job's completion time.
    pub fn completion_ms(&self) -> Option<u64> {
        if !self.done {
            return None;
        }
        Some(self.last_finish?.since(self.subscribed_at?))
    }
}

/// One point of the share-over-time curve: what the job held at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShareSample {
    pub at: Time,
    pub pending: usize,
    pub staged: usize,
    pub running: usize,
    pub ended: usize,
    /// CPUs held by launched, unfinished tasks (task resources only, not executors).
    pub cpus: f64,
    /// Memory (MB) held the same way.
    pub mem_mb: f64,
}

/// Counters kept in step with every phase change, so progress and samples cost O(1).
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    by_phase: [usize; 8],
    held_cpus_milli: i64,
    held_mem_milli: i64,
}

impl Counts {
    fn get(&self, p: TaskPhase) -> usize {
        self.by_phase[p as usize]
    }
}

/// The elastic batch framework. See the module docs.
#[derive(Debug)]
pub struct BatchFramework {
    config: BatchConfig,
    executor: Option<ExecutorInfo>,
    tasks: Vec<TaskRecord>,
    /// Every attempt's id → task index (old attempts too, to recognise their late updates).
    by_id: BTreeMap<TaskId, usize>,
    pending: BTreeSet<usize>,
    /// Pending tasks by preferred hostname (only for jobs with locality preferences).
    pending_by_host: BTreeMap<String, BTreeSet<usize>>,
    delay: agora_actors::sdk::DelayScheduler,
    /// Offers a gang job holds until all its pending tasks fit.
    held: BTreeMap<agora_actors::OfferId, Offer>,
    /// Launched, unfinished tasks per agent (tells whether a shared executor is there).
    live_per_agent: BTreeMap<AgentId, usize>,
    counts: Counts,
    progress: Progress,
    suppressed: bool,
    sampling: bool,
    reconcile_armed: bool,
    aborting: bool,
    exit_code: Option<i32>,
    samples: VecDeque<ShareSample>,
    events: VecDeque<Transition>,
    events_dropped: u64,
}

impl BatchFramework {
    pub fn new(config: BatchConfig) -> Result<Self, FrameworkError> {
        config.validate()?;
        let executor = if config.shared_executor {
            let executor_id = ExecutorId::new(config.executor_id.clone())
                .map_err(|e| FrameworkError::config("executor_id", e.to_string()))?;
            Some(ExecutorInfo {
                executor_id,
                name: format!("{} executor", config.name),
                command: None,
                resources: config.executor_resources.clone(),
            })
        } else {
            None
        };
        let mut fw = BatchFramework {
            executor,
            tasks: Vec::with_capacity(config.tasks),
            by_id: BTreeMap::new(),
            pending: BTreeSet::new(),
            pending_by_host: BTreeMap::new(),
            delay: agora_actors::sdk::DelayScheduler::new(config.locality_wait_ms),
            held: BTreeMap::new(),
            live_per_agent: BTreeMap::new(),
            counts: Counts::default(),
            progress: Progress {
                total: config.tasks,
                ..Progress::default()
            },
            suppressed: false,
            sampling: false,
            reconcile_armed: false,
            aborting: false,
            exit_code: None,
            samples: VecDeque::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            config,
        };
        for index in 0..fw.config.tasks {
            let task_id = fw.attempt_id(index, 0)?;
            fw.by_id.insert(task_id.clone(), index);
            fw.tasks.push(new_record(index, task_id));
            fw.pend(index);
        }
        fw.counts.by_phase[TaskPhase::Pending as usize] = fw.config.tasks;
        Ok(fw)
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// The job at a glance.
    pub fn progress(&self) -> Progress {
        let c = &self.counts;
        Progress {
            pending: c.get(TaskPhase::Pending),
            staged: c.get(TaskPhase::Staged),
            running: c.get(TaskPhase::Running),
            finished: c.get(TaskPhase::Finished),
            failed: c.get(TaskPhase::Failed),
            killed: c.get(TaskPhase::Killed),
            lost: c.get(TaskPhase::Lost),
            errored: c.get(TaskPhase::Error),
            done: self.exit_code.is_some(),
            ..self.progress.clone()
        }
    }

    /// All tasks, by index.
    pub fn tasks(&self) -> &[TaskRecord] {
        &self.tasks
    }

    /// The task an id (of any of its attempts) belongs to.
    pub fn task(&self, task_id: &TaskId) -> Option<&TaskRecord> {
        self.by_id.get(task_id).and_then(|i| self.tasks.get(*i))
    }

    /// The share-over-time samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &ShareSample> {
        self.samples.iter()
    }

    /// Transitions since the last call (with `record_events`), oldest first, and how many were
    /// dropped because nobody took them in time.
    pub fn take_events(&mut self) -> (Vec<Transition>, u64) {
        let dropped = std::mem::take(&mut self.events_dropped);
        (self.events.drain(..).collect(), dropped)
    }

    /// The exit code once every task has ended.
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    /// Gives up: pending tasks are cancelled, launched ones killed; the framework stops with
    /// code 1 once they have all ended. For Ctrl-C in a CLI.
    pub fn abort(&mut self, ctx: &mut SchedulerCtx) {
        if self.exit_code.is_some() || self.aborting {
            return;
        }
        warn!(framework = %self.config.name, "aborting the job");
        self.aborting = true;
        self.release_held(ctx);
        self.pending_by_host.clear();
        for index in std::mem::take(&mut self.pending) {
            let status = cancelled_status(&self.tasks[index].task_id);
            self.record(ctx.now, index, &status);
            self.end(ctx.now, index, TaskPhase::Killed);
        }
        for rec in self.tasks.iter().filter(|r| !r.phase.is_final()) {
            ctx.kill(rec.task_id.clone(), rec.agent_id.clone());
        }
        self.update_suppression(ctx);
        self.check_done(ctx);
    }

    // ---- offers -----------------------------------------------------------------------------

    /// Places pending tasks into `offer`; returns the tasks to launch on it.
    fn place(&mut self, now: Time, offer: &Offer) -> Vec<TaskInfo> {
        let mut left = offer.resources.clone();
        if self.needs_executor_charge(offer) {
            let exec_res = self
                .executor
                .as_ref()
                .map(|e| e.resources.clone())
                .unwrap_or_default();
            match take_resources(&left, &exec_res, "*").and_then(|t| left.checked_sub(&t).ok()) {
                Some(rest) => left = rest,
                None => return Vec::new(),
            }
        }
        let mut out = Vec::new();
        let limit = match self.config.max_tasks_per_offer {
            0 => usize::MAX,
            n => n,
        }
        .min(self.room_in_flight());
        while let Some(index) = self.next_for(now, &offer.hostname) {
            if out.len() >= limit {
                break;
            }
            let want = &self.config.task_resources;
            let Some(taken) = take_resources(&left, want, &self.config.role) else {
                break;
            };
            let Ok(rest) = left.checked_sub(&taken) else {
                break;
            };
            left = rest;
            self.unpend(index);
            out.push(self.launch(now, index, offer, taken));
        }
        out
    }

    /// A shared executor not yet on the agent costs its resources once.
    fn needs_executor_charge(&self, offer: &Offer) -> bool {
        let Some(exec) = &self.executor else {
            return false;
        };
        !offer.executor_ids.contains(&exec.executor_id)
            && self
                .live_per_agent
                .get(&offer.agent_id)
                .copied()
                .unwrap_or(0)
                == 0
    }

    fn launch(&mut self, now: Time, index: usize, offer: &Offer, resources: Resources) -> TaskInfo {
        *self
            .live_per_agent
            .entry(offer.agent_id.clone())
            .or_default() += 1;
        self.progress.tasks_launched += 1;
        self.progress.first_submit.get_or_insert(now);
        let rec = &mut self.tasks[index];
        rec.agent_id = Some(offer.agent_id.clone());
        rec.hostname = Some(offer.hostname.clone());
        rec.resources = Some(resources.clone());
        rec.local = (!self.config.preferred_hosts.is_empty())
            .then(|| self.config.preferred_hosts[index].contains(&offer.hostname));
        if rec.local == Some(true) {
            self.progress.launched_local += 1;
        }
        rec.timing.offer_at = Some(now);
        rec.timing.launched_at = Some(now);
        let task_id = rec.task_id.clone();
        let mut staged = TaskStatus::new(
            task_id.clone(),
            TaskState::Staging,
            agora_actors::UpdateSource::Master,
        );
        staged.message = format!("launched on {}", offer.hostname);
        self.record(now, index, &staged);
        self.set_phase(index, TaskPhase::Staged);
        debug!(task = %task_id, agent = %offer.agent_id, "launching");
        TaskInfo {
            container: None,
            task_id,
            name: format!("{}-{index}", self.config.name),
            agent_id: offer.agent_id.clone(),
            resources,
            command: Some(
                self.config
                    .task_commands
                    .get(index)
                    .unwrap_or(&self.config.command)
                    .clone(),
            ),
            executor: self.executor.clone(),
            data: Vec::new(),
        }
    }

    // ---- task life --------------------------------------------------------------------------

    fn attempt_id(&self, index: usize, attempt: u32) -> Result<TaskId, FrameworkError> {
        let raw = match attempt {
            0 => format!("{}-{index}", self.config.task_id_prefix),
            n => format!("{}-{index}.r{n}", self.config.task_id_prefix),
        };
        TaskId::new(raw).map_err(|e| FrameworkError::config("task_id_prefix", e.to_string()))
    }

    /// Moves a task to `phase`, keeping the counters and held resources in step.
    fn set_phase(&mut self, index: usize, phase: TaskPhase) {
        let rec = &mut self.tasks[index];
        let old = rec.phase;
        if old == phase {
            return;
        }
        let (cpus, mem) = rec
            .resources
            .as_ref()
            .map(|r| (r.scalar_total("cpus").0, r.scalar_total("mem").0))
            .unwrap_or((0, 0));
        let holds = |p: TaskPhase| matches!(p, TaskPhase::Staged | TaskPhase::Running);
        let sign = i64::from(holds(phase)) - i64::from(holds(old));
        self.counts.held_cpus_milli += sign * cpus;
        self.counts.held_mem_milli += sign * mem;
        self.counts.by_phase[old as usize] -= 1;
        self.counts.by_phase[phase as usize] += 1;
        rec.phase = phase;
    }

    /// Notes a status in the task's history (and the event queue).
    fn record(&mut self, now: Time, index: usize, status: &TaskStatus) {
        let rec = &mut self.tasks[index];
        rec.last_state = Some(status.state);
        if status.sandbox.is_some() {
            rec.sandbox = status.sandbox.clone();
        }
        if status.agent_id.is_some() {
            rec.agent_id = status.agent_id.clone();
        }
        if status.exit_code.is_some() {
            rec.exit_code = status.exit_code;
        }
        rec.message = status.message.clone();
        let t = Transition {
            at: now,
            index,
            task_id: status.task_id.clone(),
            state: status.state,
            reason: status.reason.clone(),
            message: status.message.clone(),
        };
        if rec.history.len() >= MAX_HISTORY_PER_TASK {
            rec.history.pop_front();
        }
        rec.history.push_back(t.clone());
        if self.config.record_events {
            if self.events.len() >= MAX_EVENTS {
                self.events.pop_front();
                self.events_dropped += 1;
            }
            self.events.push_back(t);
        }
    }

    /// The task ended for good.
    fn end(&mut self, now: Time, index: usize, phase: TaskPhase) {
        self.release_agent(index);
        self.set_phase(index, phase);
        self.tasks[index].timing.ended_at = Some(now);
        self.progress.last_finish = Some(now);
    }

    fn release_agent(&mut self, index: usize) {
        let was_launched = matches!(
            self.tasks[index].phase,
            TaskPhase::Staged | TaskPhase::Running
        );
        if let (true, Some(agent)) = (was_launched, self.tasks[index].agent_id.clone()) {
            if let Some(n) = self.live_per_agent.get_mut(&agent) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.live_per_agent.remove(&agent);
                }
            }
        }
    }

    /// Queues the task again under a new attempt id if it has retries left, else ends it.
    fn retry_or_end(&mut self, now: Time, index: usize, phase: TaskPhase) {
        let rec = &self.tasks[index];
        let (used, max) = match phase {
            TaskPhase::Failed => (rec.retries_failed, self.config.max_retries_failed),
            _ => (rec.retries_lost, self.config.max_retries_lost),
        };
        if self.aborting || used >= max {
            return self.end(now, index, phase);
        }
        let attempt = rec.attempt.saturating_add(1);
        let new_id = match self.attempt_id(index, attempt) {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, "cannot name a retry; ending the task");
                return self.end(now, index, phase);
            }
        };
        self.release_agent(index);
        self.set_phase(index, TaskPhase::Pending);
        let rec = &mut self.tasks[index];
        info!(old = %rec.task_id, new = %new_id, "retrying task");
        match phase {
            TaskPhase::Failed => rec.retries_failed += 1,
            _ => rec.retries_lost += 1,
        }
        rec.attempt = attempt;
        rec.task_id = new_id.clone();
        rec.resources = None;
        rec.unknown_since = None;
        rec.local = None;
        rec.timing = TaskTiming {
            queued_at: now,
            ..TaskTiming::default()
        };
        self.by_id.insert(new_id, index);
        self.pend(index);
        self.progress.retries += 1;
    }

    fn apply_state(&mut self, now: Time, index: usize, state: TaskState) {
        use TaskState::*;
        if state == Unknown {
            self.tasks[index].unknown_since.get_or_insert(now);
        } else {
            self.tasks[index].unknown_since = None;
        }
        match state {
            Staging | Starting => {
                if self.tasks[index].phase != TaskPhase::Running {
                    self.set_phase(index, TaskPhase::Staged);
                }
            }
            Running => {
                self.set_phase(index, TaskPhase::Running);
                self.tasks[index].timing.running_at.get_or_insert(now);
                self.progress.first_running.get_or_insert(now);
            }
            Finished => self.end(now, index, TaskPhase::Finished),
            Failed => self.retry_or_end(now, index, TaskPhase::Failed),
            Killed => self.end(now, index, TaskPhase::Killed),
            Lost | Dropped | Gone => self.retry_or_end(now, index, TaskPhase::Lost),
            Error => self.end(now, index, TaskPhase::Error),
            // Not an end: an unreachable agent may come back; the master sends LOST/GONE if
            // not. Unknown tasks are asked about again (see `reconcile_unknown`).
            Killing | Unreachable | Unknown => {}
        }
    }

    // ---- offers wanted or not, and the end --------------------------------------------------

    fn wants_offers(&self) -> bool {
        !self.pending.is_empty()
            && !self.aborting
            && self.exit_code.is_none()
            && self.room_in_flight() > 0
    }

    /// How many more tasks may be launched now under `max_in_flight`.
    fn room_in_flight(&self) -> usize {
        match self.config.max_in_flight {
            0 => usize::MAX,
            n => {
                let p = self.progress();
                n.saturating_sub(p.staged + p.running)
            }
        }
    }

    fn update_suppression(&mut self, ctx: &mut SchedulerCtx) {
        if self.exit_code.is_some() {
            return;
        }
        let wants = self.wants_offers();
        if wants && self.suppressed {
            ctx.revive();
            self.suppressed = false;
        } else if !wants && !self.suppressed {
            ctx.suppress();
            self.suppressed = true;
        }
    }

    fn check_done(&mut self, ctx: &mut SchedulerCtx) {
        if self.exit_code.is_some() {
            return;
        }
        let p = self.progress();
        if p.ended() < p.total {
            return;
        }
        let code = if p.finished == p.total { 0 } else { 1 };
        info!(framework = %self.config.name, finished = p.finished, failed = p.failed,
            killed = p.killed, lost = p.lost, errored = p.errored, code, "all tasks ended");
        self.exit_code = Some(code);
        if self.sampling {
            self.sample(ctx.now);
        }
        if self.config.teardown_on_finish {
            ctx.teardown();
        }
        ctx.stop(code);
    }

    fn sample(&mut self, now: Time) {
        let p = self.progress();
        if self.samples.len() >= self.config.max_samples.max(1) {
            self.samples.pop_front();
        }
        self.samples.push_back(ShareSample {
            at: now,
            pending: p.pending,
            staged: p.staged,
            running: p.running,
            ended: p.ended(),
            cpus: self.counts.held_cpus_milli as f64 / 1000.0,
            mem_mb: self.counts.held_mem_milli as f64 / 1000.0,
        });
    }
}

impl BatchFramework {
    fn arm_reconcile(&mut self, ctx: &mut SchedulerCtx) {
        if !self.reconcile_armed && self.exit_code.is_none() {
            self.reconcile_armed = true;
            ctx.set_timer(RECONCILE_TIMER, self.config.reconcile_interval_ms.max(1));
        }
    }

    /// Asks again about launched tasks the master answered `TASK_UNKNOWN` for; gives up on
    /// (retries) those unknown for longer than `unknown_lost_after_ms`.
    fn reconcile_unknown(&mut self, ctx: &mut SchedulerCtx) {
        let now = ctx.now;
        let mut ask = Vec::new();
        let mut give_up = Vec::new();
        for r in &self.tasks {
            let launched = matches!(r.phase, TaskPhase::Staged | TaskPhase::Running);
            let Some(since) = r.unknown_since.filter(|_| launched) else {
                continue;
            };
            if now.since(since) >= self.config.unknown_lost_after_ms {
                give_up.push(r.index);
            } else {
                ask.push((r.task_id.clone(), r.agent_id.clone()));
            }
        }
        for index in give_up {
            let rec = &self.tasks[index];
            warn!(task = %rec.task_id, "task unknown to the master for too long; retrying it");
            let status = TaskStatus::new(
                rec.task_id.clone(),
                TaskState::Lost,
                agora_actors::UpdateSource::Master,
            )
            .with_reason("unknown_too_long", "the master kept answering TASK_UNKNOWN");
            self.record(now, index, &status);
            self.retry_or_end(now, index, TaskPhase::Lost);
        }
        if !ask.is_empty() {
            ctx.reconcile(ask);
            self.arm_reconcile(ctx);
        }
        self.update_suppression(ctx);
        self.check_done(ctx);
    }
}

fn new_record(index: usize, task_id: TaskId) -> TaskRecord {
    TaskRecord {
        index,
        attempt: 0,
        task_id,
        phase: TaskPhase::Pending,
        last_state: None,
        agent_id: None,
        hostname: None,
        sandbox: None,
        resources: None,
        exit_code: None,
        message: String::new(),
        retries_failed: 0,
        retries_lost: 0,
        unknown_since: None,
        local: None,
        timing: TaskTiming::default(),
        history: VecDeque::new(),
    }
}

fn cancelled_status(task_id: &TaskId) -> TaskStatus {
    TaskStatus::new(
        task_id.clone(),
        TaskState::Killed,
        agora_actors::UpdateSource::Master,
    )
    .with_reason("cancelled", "cancelled before launch")
}

impl Scheduler for BatchFramework {
    fn framework_info(&self) -> FrameworkInfo {
        FrameworkInfo {
            id: None,
            name: self.config.name.clone(),
            user: self.config.user.clone(),
            roles: vec![self.config.role.clone()],
            failover_timeout_ms: self.config.failover_timeout_ms,
            hostname: String::new(),
            revocation_grace_ms: self.config.revocation_grace_ms,
            priority: self.config.priority,
            offer_filters: self.config.offer_filters.clone(),
        }
    }

    fn subscribed(&mut self, ctx: &mut SchedulerCtx, id: &FrameworkId, resubscribed: bool) {
        info!(framework = %self.config.name, %id, resubscribed, tasks = self.config.tasks, "batch framework subscribed");
        self.progress.subscribed_at.get_or_insert(ctx.now);
        if resubscribed {
            // Updates may have been lost while disconnected: ask for the truth about live tasks.
            let live: Vec<(TaskId, Option<AgentId>)> = self
                .tasks
                .iter()
                .filter(|r| matches!(r.phase, TaskPhase::Staged | TaskPhase::Running))
                .map(|r| (r.task_id.clone(), r.agent_id.clone()))
                .collect();
            if !live.is_empty() {
                ctx.reconcile(live);
            }
        }
        // The master's suppression state may be fresh: state ours again.
        if self.wants_offers() {
            if resubscribed {
                ctx.revive();
            }
            self.suppressed = false;
        } else {
            ctx.suppress();
            self.suppressed = true;
        }
        if self.config.sample_interval_ms > 0 && !self.sampling {
            self.sampling = true;
            self.sample(ctx.now);
            ctx.set_timer(SAMPLE_TIMER, self.config.sample_interval_ms);
        }
    }

    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        if self.config.gang && self.wants_offers() {
            self.gang_offers(ctx, offers);
            return self.update_suppression(ctx);
        }
        let filters = Filters {
            refuse_seconds: self.config.refuse_seconds,
        };
        for offer in offers {
            self.progress.offers_received += 1;
            let tasks = if self.wants_offers() {
                self.place(ctx.now, &offer)
            } else {
                Vec::new()
            };
            if tasks.is_empty() {
                self.progress.offers_declined += 1;
                let refuse = self.refuse_seconds_after_skip(ctx.now);
                ctx.decline(vec![offer.id], refuse);
            } else {
                debug!(offer = %offer.id, tasks = tasks.len(), "accepting offer");
                let ops = vec![Operation::Launch { tasks }];
                ctx.accept(vec![offer.id], ops, filters);
            }
        }
        self.update_suppression(ctx);
    }

    fn update(&mut self, ctx: &mut SchedulerCtx, status: &TaskStatus) {
        let Some(&index) = self.by_id.get(&status.task_id) else {
            warn!(task = %status.task_id, "update for a task this job never launched");
            return;
        };
        let rec = &self.tasks[index];
        if rec.task_id != status.task_id || rec.phase.is_final() || rec.phase == TaskPhase::Pending
        {
            debug!(task = %status.task_id, state = status.state.name(), "update for an earlier attempt or an ended task ignored");
            return;
        }
        self.record(ctx.now, index, status);
        self.apply_state(ctx.now, index, status.state);
        if status.state == TaskState::Unknown {
            self.arm_reconcile(ctx);
        }
        self.update_suppression(ctx);
        self.check_done(ctx);
    }

    fn rescinded(&mut self, _ctx: &mut SchedulerCtx, offer_id: &agora_actors::OfferId) {
        self.held.remove(offer_id);
    }

    fn agent_lost(&mut self, ctx: &mut SchedulerCtx, agent_id: &AgentId) {
        // A master that knew the tasks there follows up with TASK_LOST; one that never knew them
        // (after a failover) answers for them only when asked.
        warn!(agent = %agent_id, "agent lost");
        let there: Vec<(TaskId, Option<AgentId>)> = self
            .tasks
            .iter()
            .filter(|r| matches!(r.phase, TaskPhase::Staged | TaskPhase::Running))
            .filter(|r| r.agent_id.as_ref() == Some(agent_id))
            .map(|r| (r.task_id.clone(), r.agent_id.clone()))
            .collect();
        if !there.is_empty() {
            ctx.reconcile(there);
        }
    }

    fn disconnected(&mut self, _ctx: &mut SchedulerCtx) {
        // Offers die with the connection (the master rescinds them all).
        self.held.clear();
        warn!(framework = %self.config.name, "disconnected from the master; the driver re-subscribes");
    }

    fn error(&mut self, _ctx: &mut SchedulerCtx, message: &str, fatal: bool) {
        warn!(framework = %self.config.name, message, fatal, "error from the master");
    }

    fn timer(&mut self, ctx: &mut SchedulerCtx, token: u64) {
        if token == RECONCILE_TIMER {
            self.reconcile_armed = false;
            self.reconcile_unknown(ctx);
            return;
        }
        if token != SAMPLE_TIMER {
            return;
        }
        self.sample(ctx.now);
        if self.exit_code.is_none() {
            ctx.set_timer(SAMPLE_TIMER, self.config.sample_interval_ms);
        }
    }
}

mod placement;
#[cfg(test)]
mod tests;
