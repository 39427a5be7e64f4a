//! Maintenance of agents, as operators know it from Mesos's maintenance primitives, per agent:
//!
//! - **draining**: the agent stays registered and its tasks keep running, but none of it is
//!   offered any more (the allocator deactivates it, outstanding offers on it are rescinded);
//!   every framework with tasks on it gets `AgentDraining` (agent and planned window), an
//!   inverse offer for the whole agent, so it can move its work in time;
//! - **down**: the agent is taken out: its tasks end `TASK_LOST` with reason `maintenance`,
//!   it is told to shut its executors down (`ShutdownFramework` per framework), its
//!   connection is closed with the reason, and it is refused re-registration until it is
//!   brought **up** again;
//! - **up**: back to normal; a draining agent is offered again at once, a down agent may
//!   re-register (the tasks declared lost stay lost: it is told to kill any it still has).
//!
//! The records live in the registry (the shell persists them after the core accepted a
//! change, and restores them into a new leader's core before agents re-register).

use super::{reasons, Action, MasterCore, MasterError, Out};
use agora_actors::{
    AgentId, FrameworkId, Maintenance, MaintenanceMode, MaintenanceWindow, Message, TaskId, Time,
};
use agora_allocator::AllocatorEvent;
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, warn};

/// What a new leader's core takes from the registry about agents, before any re-registers.
#[derive(Debug, Clone, Default)]
pub struct RegistryAgentRecords {
    pub maintenance: BTreeMap<AgentId, Maintenance>,
    /// Removed for good: refused if they try to re-register.
    pub removed: Vec<AgentId>,
    /// Tasks declared lost with their agent, oldest first.
    pub lost_tasks: Vec<(AgentId, FrameworkId, TaskId)>,
}

/// Agents removed for good remembered (oldest forgotten first, then such an agent could
/// re-register again).
pub(crate) const MAX_REMOVED_AGENTS: usize = 100_000;

impl MasterCore {
    /// Restores what the registry knows about agents (maintenance, removals, lost tasks).
    pub fn restore_agent_records(&mut self, r: RegistryAgentRecords) {
        let limit = self.config.max_agents;
        self.maintenance = r.maintenance.into_iter().take(limit).collect();
        for agent in r.removed {
            self.removed_agents.insert(agent, MAX_REMOVED_AGENTS);
        }
        for lost in r.lost_tasks {
            self.lost_with_agent
                .insert(lost, super::agents::MAX_LOST_WITH_REMOVED_AGENTS);
        }
    }

    /// Agents in maintenance (draining or down), as the operator set them.
    pub fn maintenance(&self) -> &BTreeMap<AgentId, Maintenance> {
        &self.maintenance
    }

    pub(crate) fn maintenance_mode(&self, agent_id: &AgentId) -> Option<MaintenanceMode> {
        self.maintenance.get(agent_id).map(|m| m.mode)
    }

    /// Tasks declared lost with their agent since the last call, for the registry (so a new
    /// leader keeps them lost should the agent come back).
    pub fn take_lost_task_changes(&mut self) -> Vec<(AgentId, Vec<(FrameworkId, TaskId)>)> {
        let mut by_agent: BTreeMap<AgentId, Vec<(FrameworkId, TaskId)>> = BTreeMap::new();
        for (agent, fw, task) in std::mem::take(&mut self.lost_task_changes) {
            by_agent.entry(agent).or_default().push((fw, task));
        }
        by_agent.into_iter().collect()
    }

    /// An operator's change (`None`: up). Refused with a clear error for an agent this master
    /// does not know (neither registered, nor awaited after a failover, nor in maintenance)
    /// and for transitions that make no sense; on success the caller persists it.
    pub fn set_maintenance(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        to: Option<Maintenance>,
    ) -> Result<Vec<Action>, MasterError> {
        let known = self.agents.contains_key(agent_id)
            || self.recovery.is_waiting(agent_id)
            || self.maintenance.contains_key(agent_id);
        if !known {
            return Err(MasterError::UnknownAgent(agent_id.clone()));
        }
        let from = self.maintenance_mode(agent_id);
        crate::registry::check_maintenance_change(agent_id, from, to.map(|m| m.mode))
            .map_err(MasterError::BadRequest)?;
        if let Some(w) = to.and_then(|m| m.window) {
            check_window(&w)?;
        }
        if to.is_some()
            && !self.maintenance.contains_key(agent_id)
            && self.maintenance.len() >= self.config.max_agents
        {
            let why = format!(
                "{} agents are in maintenance already",
                self.maintenance.len()
            );
            return Err(MasterError::LimitReached(why));
        }
        let mut out = Vec::new();
        match to {
            Some(m) => {
                self.maintenance.insert(agent_id.clone(), m);
                match m.mode {
                    MaintenanceMode::Draining => self.start_draining(agent_id, from, m, &mut out),
                    MaintenanceMode::Down => self.take_down(now, agent_id, &mut out),
                }
            }
            None => {
                self.maintenance.remove(agent_id);
                info!(agent = %agent_id, "maintenance: agent up");
                if from == Some(MaintenanceMode::Draining) && self.agents.contains_key(agent_id) {
                    out.push(Action::Allocator(AllocatorEvent::ActivateAgent {
                        agent_id: agent_id.clone(),
                    }));
                }
            }
        }
        Ok(out)
    }

    /// No more offers of the agent; its frameworks hear of the plan.
    fn start_draining(
        &mut self,
        agent_id: &AgentId,
        from: Option<MaintenanceMode>,
        m: Maintenance,
        out: &mut Out,
    ) {
        info!(agent = %agent_id, window = ?m.window, "maintenance: agent draining");
        if !self.agents.contains_key(agent_id) {
            return; // awaited after a failover: deactivated when it re-registers
        }
        if from.is_none() {
            // Deactivate first, so the resources the rescinds give back stay unoffered.
            out.push(Action::Allocator(AllocatorEvent::DeactivateAgent {
                agent_id: agent_id.clone(),
            }));
            self.rescind_agent_offers(agent_id, true, out);
        }
        self.warn_frameworks(agent_id, m.window, out);
    }

    /// Its tasks are lost, its executors shut down, its connection closed with the reason.
    fn take_down(&mut self, now: Time, agent_id: &AgentId, out: &mut Out) {
        info!(agent = %agent_id, "maintenance: agent down");
        self.recovery.forget(agent_id);
        let Some(conn) = self.agents.get(agent_id).map(|a| a.conn) else {
            return; // not registered here: it is refused when it tries
        };
        if conn.is_some() {
            for framework_id in self.frameworks_on_agent(agent_id) {
                let msg = Message::ShutdownFramework { framework_id };
                self.send_to_agent(agent_id, msg, out);
            }
        }
        let err = MasterError::AgentDown(agent_id.clone());
        let last = Some(Message::fatal(err.code(), err.to_string()));
        let why = "down for maintenance";
        self.remove_agent_for(now, agent_id, reasons::MAINTENANCE, why, last, out);
    }

    /// Every framework with tasks on the draining agent gets `AgentDraining`.
    fn warn_frameworks(
        &self,
        agent_id: &AgentId,
        window: Option<MaintenanceWindow>,
        out: &mut Out,
    ) {
        for fw in self.frameworks_on_agent(agent_id) {
            let msg = Message::AgentDraining {
                agent_id: agent_id.clone(),
                window,
            };
            self.send_to_framework(&fw, msg, out);
        }
    }

    /// Frameworks with tasks or executors on the agent.
    fn frameworks_on_agent(&self, agent_id: &AgentId) -> BTreeSet<FrameworkId> {
        let Some(agent) = self.agents.get(agent_id) else {
            return BTreeSet::new();
        };
        let tasks = agent.tasks.iter().map(|(fw, _)| fw.clone());
        tasks
            .chain(agent.executors.keys().map(|(fw, _)| fw.clone()))
            .collect()
    }

    /// Refuses the (re-)registration of an agent that is down or was removed for good.
    pub(crate) fn check_agent_admissible(&self, agent_id: &AgentId) -> Result<(), MasterError> {
        if self.maintenance_mode(agent_id) == Some(MaintenanceMode::Down) {
            warn!(agent = %agent_id, "a down agent tried to re-register; refused");
            return Err(MasterError::AgentDown(agent_id.clone()));
        }
        if self.removed_agents.contains(agent_id) {
            warn!(agent = %agent_id, "a removed agent tried to re-register; refused");
            return Err(MasterError::AgentRemoved(agent_id.clone()));
        }
        Ok(())
    }

    /// A draining agent re-added to the allocator (re-registration) stays unoffered, and the
    /// frameworks with tasks on it hear of it again (a new leader's schedulers may have
    /// subscribed before it came back).
    pub(crate) fn keep_draining(&self, agent_id: &AgentId, out: &mut Out) {
        let Some(m) = self.maintenance.get(agent_id) else {
            return;
        };
        if m.mode != MaintenanceMode::Draining {
            return;
        }
        out.push(Action::Allocator(AllocatorEvent::DeactivateAgent {
            agent_id: agent_id.clone(),
        }));
        self.warn_frameworks(agent_id, m.window, out);
    }

    /// A scheduler just (re-)subscribed on `conn`: it hears of every draining agent it has
    /// tasks on (it may have missed the news while away or after a failover).
    pub(crate) fn tell_draining(&self, conn: agora_actors::transport::ConnId, out: &mut Out) {
        let Some(super::model::Binding::Framework(fw)) = self.conns.get(&conn).map(|c| &c.binding)
        else {
            return;
        };
        for (agent_id, m) in &self.maintenance {
            let has_tasks = self.agents.get(agent_id).is_some_and(|a| {
                a.tasks.iter().any(|(f, _)| f == fw) || a.executors.keys().any(|(f, _)| f == fw)
            });
            if m.mode == MaintenanceMode::Draining && has_tasks {
                let msg = Message::AgentDraining {
                    agent_id: agent_id.clone(),
                    window: m.window,
                };
                out.push(Action::Send { conn, msg });
            }
        }
    }
}

/// A window must not overflow when its end is computed, and must last.
fn check_window(w: &MaintenanceWindow) -> Result<(), MasterError> {
    if w.duration_ms == 0 {
        return Err(MasterError::BadRequest(
            "the maintenance window needs a duration above 0 ms".into(),
        ));
    }
    if w.start_ms.checked_add(w.duration_ms).is_none() {
        return Err(MasterError::BadRequest(format!(
            "the maintenance window {} + {} ms overflows",
            w.start_ms, w.duration_ms
        )));
    }
    Ok(())
}
