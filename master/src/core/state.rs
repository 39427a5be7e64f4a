//! What operators see (`GET /state`, `/metrics`) and the resource arithmetic behind it.

use super::model::FrameworkEntry;
use super::MasterCore;
use agora_actors::{AgentId, Attributes, FrameworkId, Resources};
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::warn;

/// Monotonic counters since the master started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MasterCounters {
    pub agents_registered: u64,
    pub agents_reregistered: u64,
    pub agents_disconnected: u64,
    pub agents_removed: u64,
    /// Registry agents that missed the re-registration window after a failover.
    pub agents_unreachable: u64,
    pub frameworks_subscribed: u64,
    pub frameworks_failed_over: u64,
    pub frameworks_disconnected: u64,
    pub frameworks_removed: u64,
    /// Standby scheduler instances that took their framework over.
    pub standby_promotions: u64,
    pub offers_made: u64,
    pub offers_declined: u64,
    pub offers_rescinded: u64,
    pub offers_accepted: u64,
    /// Allocations the master could not turn into offers (agent or framework gone, no room).
    pub allocations_unofferable: u64,
    pub tasks_launched: u64,
    /// Terminal transitions by state name (`TASK_FINISHED`...), including tasks refused at
    /// accept time (`TASK_ERROR`, `TASK_DROPPED`).
    pub tasks_terminal: BTreeMap<String, u64>,
    pub status_updates: u64,
    /// Tasks killed to revoke their resources (reason `preempted`).
    pub tasks_preempted: u64,
    /// Status updates for tasks the master does not track (forwarded anyway).
    pub status_updates_unknown_task: u64,
    /// Messages refused with an `Error` reply.
    pub invalid_messages: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    pub id: String,
    pub hostname: String,
    pub endpoint: String,
    pub attributes: Attributes,
    pub connected: bool,
    pub registered_at_ms: u64,
    pub missed_pings: u32,
    pub total: String,
    pub used: String,
    pub offered: String,
    pub active_tasks: usize,
    pub offers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameworkView {
    pub id: String,
    pub name: String,
    pub user: String,
    pub role: String,
    pub roles: Vec<String>,
    /// A scheduler is connected (and gets offers).
    pub active: bool,
    pub suppressed: bool,
    pub failover_timeout_ms: u64,
    pub registered_at_ms: u64,
    pub used: String,
    pub offered: String,
    pub active_tasks: usize,
    /// Active tasks by state name.
    pub task_states: BTreeMap<String, usize>,
    /// Terminal tasks of this framework still in the completed-tasks ring.
    pub completed_tasks: usize,
    pub offers: usize,
    /// Standby scheduler instances waiting to take over.
    pub standby_schedulers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub framework_id: String,
    pub agent_id: String,
    pub executor_id: String,
    pub state: String,
    pub reason: Option<String>,
    pub resources: String,
    pub launched_at_ms: u64,
    pub updated_at_ms: u64,
    /// Usage of the task's executor container, from the agent's latest report.
    pub usage: Option<agora_actors::UsageFigures>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletedTaskView {
    pub id: String,
    pub name: String,
    pub framework_id: String,
    pub agent_id: String,
    pub state: String,
    pub reason: Option<String>,
    pub resources: String,
    pub finished_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferView {
    pub id: String,
    pub framework_id: String,
    pub agent_id: String,
    pub hostname: String,
    pub resources: String,
    pub made_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MasterState {
    pub cluster: String,
    pub epoch: u64,
    pub started_at_ms: u64,
    pub agents: Vec<AgentView>,
    pub frameworks: Vec<FrameworkView>,
    pub tasks: Vec<TaskView>,
    /// Oldest first.
    pub completed_tasks: Vec<CompletedTaskView>,
    pub offers: Vec<OfferView>,
    pub removed_frameworks: Vec<String>,
    pub counters: MasterCounters,
}

/// Sum of bags; a bag that cannot be added (kind clash, overflow) is logged and left out, so a
/// bad report from a peer degrades the numbers instead of breaking the master.
pub(crate) fn sum<'a>(what: &str, bags: impl Iterator<Item = &'a Resources>) -> Resources {
    let mut total = Resources::new();
    for bag in bags {
        match total.checked_add(bag) {
            Ok(t) => total = t,
            Err(e) => warn!(what, error = %e, "resources left out of a sum"),
        }
    }
    total
}

impl MasterCore {
    /// What tasks and executors use on the agent, per framework.
    pub(crate) fn agent_used_by_framework(
        &self,
        agent_id: &AgentId,
    ) -> BTreeMap<FrameworkId, Resources> {
        let mut per_fw: BTreeMap<FrameworkId, Vec<&Resources>> = BTreeMap::new();
        let Some(agent) = self.agents.get(agent_id) else {
            return BTreeMap::new();
        };
        for key in &agent.tasks {
            if let Some(task) = self.tasks.get(key) {
                per_fw
                    .entry(key.0.clone())
                    .or_default()
                    .push(&task.info.resources);
            }
        }
        for ((fw, _), exec) in &agent.executors {
            per_fw.entry(fw.clone()).or_default().push(&exec.resources);
        }
        per_fw
            .into_iter()
            .map(|(fw, bags)| (fw, sum("agent used", bags.into_iter())))
            .filter(|(_, r)| !r.is_empty())
            .collect()
    }

    pub(crate) fn agent_used(&self, agent_id: &AgentId) -> Resources {
        let per_fw = self.agent_used_by_framework(agent_id);
        sum("agent used", per_fw.values())
    }

    pub(crate) fn agent_offered(&self, agent_id: &AgentId) -> Resources {
        let Some(agent) = self.agents.get(agent_id) else {
            return Resources::new();
        };
        let bags = agent
            .offers
            .iter()
            .filter_map(|id| self.offers.get(id))
            .map(|o| &o.offer.resources);
        sum("agent offered", bags)
    }

    /// What the framework's tasks and executors use, per agent.
    pub(crate) fn framework_used_by_agent(&self, fw: &FrameworkId) -> BTreeMap<AgentId, Resources> {
        self.agents
            .keys()
            .filter_map(|agent_id| {
                let used = self.agent_used_by_framework(agent_id).remove(fw)?;
                Some((agent_id.clone(), used))
            })
            .collect()
    }

    /// What every framework uses in all, in one pass over the agents: the operator snapshot
    /// asks for all frameworks at once, and one `framework_used_by_agent` per framework would
    /// cost frameworks × agents (10M agent visits at 10k agents × 1k frameworks).
    fn used_per_framework(&self) -> BTreeMap<FrameworkId, Resources> {
        let mut per_fw: BTreeMap<FrameworkId, Vec<Resources>> = BTreeMap::new();
        for agent_id in self.agents.keys() {
            for (fw, used) in self.agent_used_by_framework(agent_id) {
                per_fw.entry(fw).or_default().push(used);
            }
        }
        per_fw
            .into_iter()
            .map(|(fw, bags)| (fw, sum("framework used", bags.iter())))
            .collect()
    }

    /// A snapshot for operators.
    pub fn state(&self) -> MasterState {
        MasterState {
            cluster: self.config.cluster.clone(),
            epoch: self.epoch,
            started_at_ms: self.started_at.ms(),
            agents: self.agent_views(),
            frameworks: {
                let mut used = self.used_per_framework();
                self.frameworks
                    .iter()
                    .map(|(fw, f)| self.framework_view(fw, f, used.remove(fw).unwrap_or_default()))
                    .collect()
            },
            tasks: self.task_views(),
            completed_tasks: self.completed_views(),
            offers: self.offer_views(),
            removed_frameworks: self
                .removed_frameworks
                .iter()
                .map(|f| f.to_string())
                .collect(),
            counters: self.counters.clone(),
        }
    }

    fn agent_views(&self) -> Vec<AgentView> {
        self.agents
            .iter()
            .map(|(id, a)| AgentView {
                id: id.to_string(),
                hostname: a.hostname.clone(),
                endpoint: a.endpoint.clone(),
                attributes: a.attributes.clone(),
                connected: a.conn.is_some(),
                registered_at_ms: a.registered_at.ms(),
                missed_pings: a.missed_pings,
                total: a.total.to_string(),
                used: self.agent_used(id).to_string(),
                offered: self.agent_offered(id).to_string(),
                active_tasks: a.tasks.len(),
                offers: a.offers.len(),
            })
            .collect()
    }

    fn framework_view(
        &self,
        fw: &FrameworkId,
        f: &FrameworkEntry,
        used: Resources,
    ) -> FrameworkView {
        let offered = f
            .offers
            .iter()
            .filter_map(|id| self.offers.get(id))
            .map(|o| &o.offer.resources);
        let mut task_states = BTreeMap::new();
        for t in f
            .tasks
            .iter()
            .filter_map(|t| self.tasks.get(&(fw.clone(), t.clone())))
        {
            *task_states.entry(t.state.name().to_string()).or_insert(0) += 1;
        }
        FrameworkView {
            id: fw.to_string(),
            name: f.info.name.clone(),
            user: f.info.user.clone(),
            role: f.info.role().to_string(),
            roles: f.info.roles.clone(),
            active: f.conn.is_some(),
            suppressed: f.suppressed,
            failover_timeout_ms: f.info.failover_timeout_ms,
            registered_at_ms: f.registered_at.ms(),
            used: used.to_string(),
            offered: sum("framework offered", offered).to_string(),
            active_tasks: f.tasks.len(),
            task_states,
            completed_tasks: self
                .completed
                .iter()
                .filter(|c| &c.framework_id == fw)
                .count(),
            offers: f.offers.len(),
            standby_schedulers: f.standbys.len(),
        }
    }

    fn task_views(&self) -> Vec<TaskView> {
        self.tasks
            .iter()
            .map(|((fw, id), t)| TaskView {
                id: id.to_string(),
                name: t.info.name.clone(),
                framework_id: fw.to_string(),
                agent_id: t.agent_id.to_string(),
                executor_id: t.executor_id.to_string(),
                state: t.state.name().to_string(),
                reason: t.reason.clone(),
                resources: t.info.resources.to_string(),
                launched_at_ms: t.launched_at.ms(),
                updated_at_ms: t.updated_at.ms(),
                usage: self
                    .agents
                    .get(&t.agent_id)
                    .and_then(|a| a.usage.get(&(fw.clone(), t.executor_id.clone())))
                    .copied(),
            })
            .collect()
    }

    fn completed_views(&self) -> Vec<CompletedTaskView> {
        self.completed
            .iter()
            .map(|c| CompletedTaskView {
                id: c.task_id.to_string(),
                name: c.name.clone(),
                framework_id: c.framework_id.to_string(),
                agent_id: c.agent_id.to_string(),
                state: c.state.name().to_string(),
                reason: c.reason.clone(),
                resources: c.resources.to_string(),
                finished_at_ms: c.finished_at.ms(),
            })
            .collect()
    }

    fn offer_views(&self) -> Vec<OfferView> {
        self.offers
            .values()
            .map(|o| OfferView {
                id: o.offer.id.to_string(),
                framework_id: o.offer.framework_id.to_string(),
                agent_id: o.offer.agent_id.to_string(),
                hostname: o.offer.hostname.clone(),
                resources: o.offer.resources.to_string(),
                made_at_ms: o.made_at.ms(),
            })
            .collect()
    }
}
