//! The master's books: one record per agent, framework, task, offer and connection. Everything
//! here is soft state, rebuilt after a master restart from agent re-registrations and scheduler
//! re-subscriptions.

use agora_actors::transport::ConnId;
use agora_actors::{
    AgentId, Attributes, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, Hello, Offer,
    OfferId, Resources, TaskId, TaskInfo, TaskState, Time,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a connection has become after its first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Binding {
    Unbound,
    Agent(AgentId),
    Framework(FrameworkId),
    /// A standby scheduler waiting to take this framework over.
    Standby(FrameworkId),
}

#[derive(Debug, Clone)]
pub(crate) struct ConnEntry {
    pub peer: Hello,
    pub binding: Binding,
}

/// An executor of one framework on one agent, as far as the master knows it.
#[derive(Debug, Clone)]
pub(crate) struct ExecutorEntry {
    /// `None`: the built-in command executor of a single task.
    pub info: Option<ExecutorInfo>,
    /// Its own resources (charged once, on top of its tasks').
    pub resources: Resources,
    /// Non-terminal tasks running in it. When the last one ends the master counts the executor
    /// as gone: the wire protocol has no "executor exited" message, and both the command
    /// executor and agora's own executors stop when they have no task left.
    pub tasks: BTreeSet<TaskId>,
}

#[derive(Debug, Clone)]
pub(crate) struct AgentEntry {
    pub hostname: String,
    pub endpoint: String,
    pub attributes: Attributes,
    pub total: Resources,
    pub conn: Option<ConnId>,
    pub registered_at: Time,
    /// Ping rounds without a `Pong` (or spent disconnected).
    pub missed_pings: u32,
    /// A `Ping` was sent and no `Pong` has come back yet.
    pub ping_outstanding: bool,
    pub offers: BTreeSet<OfferId>,
    /// Non-terminal tasks on this agent.
    pub tasks: BTreeSet<(FrameworkId, TaskId)>,
    pub executors: BTreeMap<(FrameworkId, ExecutorId), ExecutorEntry>,
    /// Latest usage the agent reported per executor (only executors of its tasks).
    pub usage: BTreeMap<(FrameworkId, ExecutorId), agora_actors::UsageFigures>,
}

#[derive(Debug, Clone)]
pub(crate) struct FrameworkEntry {
    /// Always has `id: Some(..)` and non-empty roles.
    pub info: FrameworkInfo,
    /// The subscribed scheduler's connection; `None` while failing over.
    pub conn: Option<ConnId>,
    /// Bumped on every (re-)subscribe and disconnect so stale failover timers are ignored.
    pub generation: u64,
    pub registered_at: Time,
    /// Learnt from an agent without its `FrameworkInfo`: the first subscriber names it.
    pub info_unknown: bool,
    pub suppressed: bool,
    pub offers: BTreeSet<OfferId>,
    /// Non-terminal tasks.
    pub tasks: BTreeSet<TaskId>,
    /// Standby scheduler instances waiting, longest-waiting first, with what they subscribe
    /// with (see `standby.rs`).
    pub standbys: Vec<(ConnId, FrameworkInfo)>,
    /// From when a standby's poll may take over while no scheduler is connected.
    pub standby_takeover_at: Time,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskEntry {
    pub agent_id: AgentId,
    pub executor_id: ExecutorId,
    pub info: TaskInfo,
    pub state: TaskState,
    pub reason: Option<String>,
    pub launched_at: Time,
    pub updated_at: Time,
}

#[derive(Debug, Clone)]
pub(crate) struct OfferEntry {
    pub offer: Offer,
    pub made_at: Time,
}

/// A task that reached a terminal state, kept in a bounded ring for `/state` and
/// reconciliation.
#[derive(Debug, Clone)]
pub(crate) struct CompletedTask {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub task_id: TaskId,
    pub name: String,
    pub state: TaskState,
    pub reason: Option<String>,
    pub resources: Resources,
    pub finished_at: Time,
}

/// A set that forgets its oldest members beyond `limit`.
#[derive(Debug, Clone)]
pub(crate) struct BoundedSet<T: Ord + Clone> {
    order: VecDeque<T>,
    members: BTreeSet<T>,
}

impl<T: Ord + Clone> Default for BoundedSet<T> {
    fn default() -> Self {
        BoundedSet {
            order: VecDeque::new(),
            members: BTreeSet::new(),
        }
    }
}

impl<T: Ord + Clone> BoundedSet<T> {
    pub fn insert(&mut self, item: T, limit: usize) {
        if !self.members.insert(item.clone()) {
            return;
        }
        self.order.push_back(item);
        while self.order.len() > limit.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.members.remove(&old);
            }
        }
    }
    pub fn contains(&self, item: &T) -> bool {
        self.members.contains(item)
    }
    pub fn remove(&mut self, item: &T) {
        if self.members.remove(item) {
            self.order.retain(|x| x != item);
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.order.iter()
    }
}
