//! The one-shot job behind `agora run --instances N -- COMMAND`: N tasks of one command, each
//! in its own command executor, reported task by task.
//!
//! It is a [`BatchFramework`] that keeps transition events for the CLI to print as they happen
//! ([`RunFramework::take_events`]) and builds a final per-instance report
//! ([`RunFramework::report`]): every state the task went through, where it ran and its sandbox.

use crate::batch::{BatchConfig, BatchFramework, Progress, TaskPhase, Transition};
use crate::FrameworkError;
use agora_actors::sdk::{Scheduler, SchedulerCtx};
use agora_actors::{
    AgentId, CommandInfo, ExecutorId, FrameworkId, FrameworkInfo, Offer, OfferId, Resources,
    TaskId, TaskState, TaskStatus, Time,
};
use serde::Serialize;

/// What `agora run` asks for. Build with [`RunConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Framework name, also the task id prefix (`<name>-<i>`).
    pub name: String,
    pub user: String,
    pub role: String,
    pub instances: usize,
    pub command: CommandInfo,
    pub resources: Resources,
    pub refuse_seconds: f64,
    /// Relaunches of a task the cluster lost (not of a failed command).
    pub max_retries_lost: u32,
    /// One command executor per agent runs all of this job's tasks there (fewer processes, far
    /// higher launch rates) instead of one executor per task.
    pub shared_executor: bool,
    /// Most tasks launched and not yet ended at once (0: no limit).
    pub max_in_flight: usize,
    /// Up-front filters, priority level and revocation grace (see `FrameworkInfo`).
    pub offer_filters: agora_actors::OfferFilters,
    pub priority: Option<u32>,
    pub revocation_grace_ms: Option<u64>,
}

impl RunConfig {
    pub fn new(name: &str, instances: usize, command: CommandInfo, resources: Resources) -> Self {
        RunConfig {
            name: name.to_string(),
            user: "root".to_string(),
            role: "*".to_string(),
            instances,
            command,
            resources,
            refuse_seconds: 5.0,
            max_retries_lost: 3,
            shared_executor: false,
            max_in_flight: 0,
            offer_filters: agora_actors::OfferFilters::default(),
            priority: None,
            revocation_grace_ms: None,
        }
    }

    fn to_batch(&self) -> BatchConfig {
        let mut b = BatchConfig::new(
            &self.name,
            self.instances,
            self.command.clone(),
            self.resources.clone(),
        );
        b.user = self.user.clone();
        b.role = self.role.clone();
        b.task_id_prefix = self.name.clone();
        b.refuse_seconds = self.refuse_seconds;
        b.max_retries_failed = 0;
        b.max_retries_lost = self.max_retries_lost;
        b.shared_executor = self.shared_executor;
        b.max_in_flight = self.max_in_flight;
        b.teardown_on_finish = true;
        b.sample_interval_ms = 0;
        b.record_events = true;
        b.offer_filters = self.offer_filters.clone();
        b.priority = self.priority;
        b.revocation_grace_ms = self.revocation_grace_ms;
        b
    }
}

/// One instance's story, for printing after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceReport {
    pub index: usize,
    /// The last attempt's task id.
    pub task_id: TaskId,
    pub attempts: u32,
    pub phase: TaskPhase,
    pub final_state: Option<TaskState>,
    pub agent_id: Option<AgentId>,
    pub hostname: Option<String>,
    pub sandbox: Option<String>,
    pub exit_code: Option<i32>,
    pub message: String,
    /// Every recorded state change (across attempts), oldest first.
    pub transitions: Vec<(Time, TaskId, TaskState)>,
}

/// The one-shot run framework. See the module docs.
#[derive(Debug)]
pub struct RunFramework {
    batch: BatchFramework,
}

impl RunFramework {
    pub fn new(config: RunConfig) -> Result<Self, FrameworkError> {
        Ok(RunFramework {
            batch: BatchFramework::new(config.to_batch())?,
        })
    }

    /// The underlying batch job (timings, records).
    pub fn batch(&self) -> &BatchFramework {
        &self.batch
    }

    pub fn progress(&self) -> Progress {
        self.batch.progress()
    }

    /// State changes since the last call, oldest first, and how many were dropped because they
    /// were not taken in time.
    pub fn take_events(&mut self) -> (Vec<Transition>, u64) {
        self.batch.take_events()
    }

    /// Per-instance stories, by index.
    pub fn report(&self) -> Vec<InstanceReport> {
        self.batch
            .tasks()
            .iter()
            .map(|t| InstanceReport {
                index: t.index,
                task_id: t.task_id.clone(),
                attempts: t.attempt + 1,
                phase: t.phase,
                final_state: t.phase.is_final().then_some(t.last_state).flatten(),
                agent_id: t.agent_id.clone(),
                hostname: t.hostname.clone(),
                sandbox: t.sandbox.clone(),
                exit_code: t.exit_code,
                message: t.message.clone(),
                transitions: t
                    .history
                    .iter()
                    .map(|h| (h.at, h.task_id.clone(), h.state))
                    .collect(),
            })
            .collect()
    }

    /// The exit code once every instance has ended (0 iff all finished).
    pub fn exit_code(&self) -> Option<i32> {
        self.batch.exit_code()
    }

    /// Cancels the run (Ctrl-C): see [`BatchFramework::abort`].
    pub fn abort(&mut self, ctx: &mut SchedulerCtx) {
        self.batch.abort(ctx)
    }
}

impl Scheduler for RunFramework {
    fn framework_info(&self) -> FrameworkInfo {
        self.batch.framework_info()
    }
    fn subscribed(&mut self, ctx: &mut SchedulerCtx, id: &FrameworkId, resubscribed: bool) {
        self.batch.subscribed(ctx, id, resubscribed)
    }
    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        self.batch.offers(ctx, offers)
    }
    fn rescinded(&mut self, ctx: &mut SchedulerCtx, offer_id: &OfferId) {
        self.batch.rescinded(ctx, offer_id)
    }
    fn update(&mut self, ctx: &mut SchedulerCtx, status: &TaskStatus) {
        self.batch.update(ctx, status)
    }
    fn message(&mut self, ctx: &mut SchedulerCtx, a: &AgentId, e: &ExecutorId, data: &[u8]) {
        self.batch.message(ctx, a, e, data)
    }
    fn agent_lost(&mut self, ctx: &mut SchedulerCtx, agent_id: &AgentId) {
        self.batch.agent_lost(ctx, agent_id)
    }
    fn error(&mut self, ctx: &mut SchedulerCtx, message: &str, fatal: bool) {
        self.batch.error(ctx, message, fatal)
    }
    fn disconnected(&mut self, ctx: &mut SchedulerCtx) {
        self.batch.disconnected(ctx)
    }
    fn timer(&mut self, ctx: &mut SchedulerCtx, token: u64) {
        self.batch.timer(ctx, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use agora_actors::sdk::Call;

    fn run(n: usize) -> RunFramework {
        let cfg = RunConfig::new(
            "hello",
            n,
            CommandInfo::shell("echo hi"),
            r("cpus:0.1;mem:32"),
        );
        RunFramework::new(cfg).unwrap()
    }

    #[test]
    fn names_tasks_after_the_run_and_uses_one_executor_per_task() {
        let mut f = run(2);
        let mut c = ctx(0);
        f.subscribed(&mut c, &fid(), false);
        let mut c = ctx(5);
        f.offers(&mut c, vec![offer("o1", "a1", "cpus:1;mem:1000")]);
        let l = launched(&c);
        let ids: Vec<String> = l[0].1.iter().map(|t| t.task_id.to_string()).collect();
        assert_eq!(ids, vec!["hello-0", "hello-1"]);
        assert!(l[0].1.iter().all(|t| t.executor.is_none()));
        assert!(has(&c, &Call::Suppress));
    }

    #[test]
    fn records_transitions_sandbox_and_reports_each_instance() {
        let mut f = run(2);
        let mut c = ctx(5);
        f.offers(&mut c, vec![offer("o1", "a1", "cpus:1;mem:1000")]);
        let ids = [tid("hello-0"), tid("hello-1")];
        for (t, state) in [
            (10, TaskState::Starting),
            (20, TaskState::Running),
            (30, TaskState::Finished),
        ] {
            let mut c = ctx(t);
            for id in &ids {
                let mut st = status(id, state);
                st.sandbox = Some(format!("/sb/{id}"));
                if state == TaskState::Finished && id == &ids[1] {
                    st.state = TaskState::Failed;
                    st.exit_code = Some(2);
                    st.message = "exited with status 2".into();
                }
                f.update(&mut c, &st);
            }
            if state == TaskState::Finished {
                assert_eq!(c.stop, Some(1));
                assert!(has(&c, &Call::Teardown));
            }
        }
        let (events, dropped) = f.take_events();
        assert_eq!(dropped, 0);
        assert_eq!(events.len(), 8, "staging + 3 updates, for each of 2 tasks");
        let report = f.report();
        assert_eq!(report[0].final_state, Some(TaskState::Finished));
        assert_eq!(report[0].sandbox.as_deref(), Some("/sb/hello-0"));
        assert_eq!(report[0].hostname.as_deref(), Some("host-a1"));
        let states: Vec<TaskState> = report[0].transitions.iter().map(|t| t.2).collect();
        assert_eq!(
            states,
            vec![
                TaskState::Staging,
                TaskState::Starting,
                TaskState::Running,
                TaskState::Finished
            ]
        );
        assert_eq!(report[1].final_state, Some(TaskState::Failed));
        assert_eq!(report[1].exit_code, Some(2));
        assert_eq!(report[1].message, "exited with status 2");
        assert_eq!(f.exit_code(), Some(1));
    }

    #[test]
    fn a_lost_task_is_relaunched_and_the_report_shows_both_attempts() {
        let mut f = run(1);
        let mut c = ctx(5);
        f.offers(&mut c, vec![offer("o1", "a1", "cpus:1;mem:1000")]);
        let mut c = ctx(10);
        f.update(&mut c, &status(&tid("hello-0"), TaskState::Lost));
        let mut c = ctx(20);
        f.offers(&mut c, vec![offer("o2", "a2", "cpus:1;mem:1000")]);
        assert_eq!(launched_ids(&c), vec!["hello-0.r1"]);
        let mut c = ctx(30);
        f.update(&mut c, &status(&tid("hello-0.r1"), TaskState::Finished));
        assert_eq!(c.stop, Some(0));
        let rep = &f.report()[0];
        assert_eq!(rep.attempts, 2);
        assert_eq!(rep.task_id, tid("hello-0.r1"));
        assert_eq!(rep.hostname.as_deref(), Some("host-a2"));
        let ids: Vec<String> = rep.transitions.iter().map(|t| t.1.to_string()).collect();
        assert_eq!(ids, vec!["hello-0", "hello-0", "hello-0.r1", "hello-0.r1"]);
    }

    #[test]
    fn a_bad_name_is_a_config_error() {
        let cfg = RunConfig::new("no spaces", 1, CommandInfo::shell("x"), r("cpus:1"));
        assert!(RunFramework::new(cfg).is_err());
    }
}
