//! The framework SDK. A framework developer implements `Scheduler` (and, for a custom executor,
//! `Executor`); the drivers in this module do the rest: connect, subscribe, re-subscribe after a
//! disconnect with the same framework id, acknowledge status updates, de-duplicate them, and
//! retry executor updates until the agent acknowledges them.
//!
//! The trait methods receive a context that *collects* calls (`ctx.accept(..)`, `ctx.decline(..)`)
//! instead of performing IO, so the same scheduler runs under the actix driver (`driver`) and in
//! a simulator. The driver is an actix actor that owns the scheduler.

pub(crate) mod client_link;
pub mod command;
pub mod driver;
pub mod error;
pub mod executor;
pub mod locality;

pub use error::SdkError;
pub use locality::{DelayScheduler, LocalityChoice};

use crate::ids::*;
use crate::messages::*;
use crate::time::Time;

/// What a scheduler asks the master to do. Produced by `SchedulerCtx`, sent by the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Accept {
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
    },
    Decline {
        offer_ids: Vec<OfferId>,
        filters: Filters,
    },
    Revive,
    Suppress,
    Kill {
        task_id: TaskId,
        agent_id: Option<AgentId>,
    },
    Reconcile {
        tasks: Vec<(TaskId, Option<AgentId>)>,
    },
    Message {
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: Vec<u8>,
    },
    Teardown,
}

/// Handed to every `Scheduler` callback: the current time, the framework id (once subscribed),
/// and a list where calls and timers are collected.
#[derive(Debug, Default)]
pub struct SchedulerCtx {
    pub now: Time,
    pub framework_id: Option<FrameworkId>,
    pub calls: Vec<Call>,
    /// (token, fire at): `Scheduler::timer(token)` is called then.
    pub timers: Vec<(u64, Time)>,
    /// Set by `stop()`: the driver tears nothing down but disconnects and ends.
    pub stop: Option<i32>,
}

impl SchedulerCtx {
    pub fn new(now: Time, framework_id: Option<FrameworkId>) -> Self {
        SchedulerCtx {
            now,
            framework_id,
            ..Default::default()
        }
    }
    /// Launches `tasks` on the resources of `offer_ids` (all from one agent).
    pub fn launch(&mut self, offer_ids: Vec<OfferId>, tasks: Vec<TaskInfo>) {
        self.calls.push(Call::Accept {
            offer_ids,
            operations: vec![Operation::Launch { tasks }],
            filters: Filters::default(),
        });
    }
    pub fn accept(
        &mut self,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
    ) {
        self.calls.push(Call::Accept {
            offer_ids,
            operations,
            filters,
        });
    }
    pub fn decline(&mut self, offer_ids: Vec<OfferId>, refuse_seconds: f64) {
        self.calls.push(Call::Decline {
            offer_ids,
            filters: Filters { refuse_seconds },
        });
    }
    pub fn revive(&mut self) {
        self.calls.push(Call::Revive);
    }
    pub fn suppress(&mut self) {
        self.calls.push(Call::Suppress);
    }
    pub fn kill(&mut self, task_id: TaskId, agent_id: Option<AgentId>) {
        self.calls.push(Call::Kill { task_id, agent_id });
    }
    pub fn reconcile(&mut self, tasks: Vec<(TaskId, Option<AgentId>)>) {
        self.calls.push(Call::Reconcile { tasks });
    }
    pub fn message(&mut self, agent_id: AgentId, executor_id: ExecutorId, data: Vec<u8>) {
        self.calls.push(Call::Message {
            agent_id,
            executor_id,
            data,
        });
    }
    /// Ends the framework: tears it down at the master (its tasks are killed).
    pub fn teardown(&mut self) {
        self.calls.push(Call::Teardown);
    }
    pub fn set_timer(&mut self, token: u64, after_ms: u64) {
        self.timers.push((token, self.now.plus_ms(after_ms)));
    }
    /// Asks the driver to stop with this exit code after performing the collected calls.
    pub fn stop(&mut self, code: i32) {
        self.stop = Some(code);
    }
}

/// What `Message::RevocationWarning` says, for `Scheduler::revocation_warning`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationWarning {
    pub agent_id: AgentId,
    pub resources: crate::Resources,
    pub task_ids: Vec<TaskId>,
    /// Milliseconds from the warning until the kills.
    pub deadline_ms: u64,
}

/// A framework's scheduler. Every method has a default that does nothing, except `offers`.
pub trait Scheduler: 'static {
    /// What to subscribe with (the driver fills in the id on re-subscribe).
    fn framework_info(&self) -> FrameworkInfo;
    fn subscribed(
        &mut self,
        _ctx: &mut SchedulerCtx,
        _framework_id: &FrameworkId,
        _resubscribed: bool,
    ) {
    }
    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>);
    fn rescinded(&mut self, _ctx: &mut SchedulerCtx, _offer_id: &OfferId) {}
    /// Each update once (duplicates are filtered by the driver); acknowledged after return.
    fn update(&mut self, _ctx: &mut SchedulerCtx, _status: &TaskStatus) {}
    fn message(
        &mut self,
        _ctx: &mut SchedulerCtx,
        _agent_id: &AgentId,
        _executor_id: &ExecutorId,
        _data: &[u8],
    ) {
    }
    fn agent_lost(&mut self, _ctx: &mut SchedulerCtx, _agent_id: &AgentId) {}
    /// The master will revoke resources of this framework (an inverse offer): `warning` names
    /// the agent, the resources, the tasks it will kill and the deadline. A scheduler can
    /// checkpoint or move work meanwhile; the kills come as `TASK_KILLED` (reason `preempted`).
    fn revocation_warning(&mut self, _ctx: &mut SchedulerCtx, _warning: &RevocationWarning) {}
    /// An operator is draining an agent this framework has tasks on: no more offers of it;
    /// the tasks keep running until the agent goes down (then they end `TASK_LOST`, reason
    /// `maintenance`), so a scheduler may move them before `window` starts.
    fn agent_draining(
        &mut self,
        _ctx: &mut SchedulerCtx,
        _agent_id: &AgentId,
        _window: Option<&crate::MaintenanceWindow>,
    ) {
    }
    /// The master refused something (`fatal`: the subscription is over).
    fn error(&mut self, _ctx: &mut SchedulerCtx, _message: &str, _fatal: bool) {}
    /// The connection to the master is lost; the driver is re-subscribing.
    fn disconnected(&mut self, _ctx: &mut SchedulerCtx) {}
    /// A standby instance (`SchedulerDriverConfig::standby`) learnt that another instance of
    /// its framework is active: it waits, its calls are dropped, and `subscribed` follows
    /// when the master promotes it. Called once per connection.
    fn standing_by(&mut self, _ctx: &mut SchedulerCtx, _message: &str) {}
    fn timer(&mut self, _ctx: &mut SchedulerCtx, _token: u64) {}
}

/// What an executor tells its agent / framework. Produced by `ExecutorCtx`.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecCall {
    /// The driver stamps uuid/timestamp/source and retries until the agent acknowledges.
    Update(TaskStatus),
    Message(Vec<u8>),
}

#[derive(Debug, Default)]
pub struct ExecutorCtx {
    pub now: Time,
    pub calls: Vec<ExecCall>,
    pub timers: Vec<(u64, Time)>,
    /// Set by `stop()`: the driver exits once all updates are acknowledged (or a bound passes).
    pub stop: bool,
}

impl ExecutorCtx {
    pub fn new(now: Time) -> Self {
        ExecutorCtx {
            now,
            ..Default::default()
        }
    }
    pub fn update(&mut self, status: TaskStatus) {
        self.calls.push(ExecCall::Update(status));
    }
    pub fn send_message(&mut self, data: Vec<u8>) {
        self.calls.push(ExecCall::Message(data));
    }
    pub fn set_timer(&mut self, token: u64, after_ms: u64) {
        self.timers.push((token, self.now.plus_ms(after_ms)));
    }
    pub fn stop(&mut self) {
        self.stop = true;
    }
}

/// A custom executor. The built-in command executor (`agora executor`) is one of these.
pub trait Executor: 'static {
    fn registered(
        &mut self,
        _ctx: &mut ExecutorCtx,
        _agent_id: &AgentId,
        _framework: &FrameworkInfo,
        _executor: &ExecutorInfo,
    ) {
    }
    fn launch(&mut self, ctx: &mut ExecutorCtx, task: TaskInfo);
    fn kill(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, grace_ms: u64);
    fn message(&mut self, _ctx: &mut ExecutorCtx, _data: &[u8]) {}
    /// Kill everything and stop; the agent kills the process group after `grace_ms`.
    fn shutdown(&mut self, ctx: &mut ExecutorCtx, grace_ms: u64);
    fn timer(&mut self, _ctx: &mut ExecutorCtx, _token: u64) {}
}
