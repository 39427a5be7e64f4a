//! After a failover: the agents the replicated registry admitted get a window to re-register
//! with the new master. Those that miss it are declared unreachable: every framework is told
//! (`AgentLost`), reconciliation answers `TASK_LOST` for tasks named on them (instead of
//! `TASK_UNKNOWN`, which would leave a framework waiting for ever), and the shell drops them
//! from the registry. An unreachable agent that comes back later is refused under its old id
//! (as Mesos's "gone" agents): its tasks were reported lost already.

use super::{Action, MasterCore, MasterTimer, Out};
use agora_actors::{AgentId, Message, Time};
use std::collections::BTreeSet;
use tracing::{info, warn};

/// Unreachable agents remembered (oldest forgotten first: reconciliation for their tasks then
/// falls back to `TASK_UNKNOWN`, which frameworks handle with their own bound).
pub(crate) const MAX_UNREACHABLE_AGENTS: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Admitted by the registry, not re-registered yet, window still open.
    waiting: BTreeSet<AgentId>,
    unreachable: super::BoundedSet<AgentId>,
    /// When the window opened and how many agents it waits for: per-agent re-registrations
    /// log at debug (10k info lines cost the leader's one thread during the storm), so one
    /// summary line says when the last of them came back.
    window: Option<(Time, usize)>,
}

impl Recovery {
    pub(crate) fn is_unreachable(&self, agent_id: &AgentId) -> bool {
        self.unreachable.contains(agent_id)
    }

    pub(crate) fn is_waiting(&self, agent_id: &AgentId) -> bool {
        self.waiting.contains(agent_id)
    }

    /// The agent is no longer waited for (an operator took it down: it may not come back).
    pub(crate) fn forget(&mut self, agent_id: &AgentId) {
        self.waiting.remove(agent_id);
    }

    /// The agent is back (re-registered): neither waited for nor unreachable any more.
    pub(crate) fn returned(&mut self, now: Time, agent_id: &AgentId) {
        let was_waiting = self.waiting.remove(agent_id);
        self.unreachable.remove(agent_id);
        if was_waiting && self.waiting.is_empty() {
            if let Some((opened, agents)) = self.window.take() {
                info!(
                    agents,
                    after_ms = now.since(opened),
                    "all the registry's agents re-registered"
                );
            }
        }
    }
}

impl MasterCore {
    pub(crate) fn recover_registry_agents(
        &mut self,
        now: Time,
        agent_ids: Vec<AgentId>,
        reregister_timeout_ms: u64,
        out: &mut Out,
    ) {
        let limit = self.config.max_agents;
        let fresh: Vec<AgentId> = agent_ids
            .into_iter()
            .filter(|a| !self.agents.contains_key(a))
            .filter(|a| self.maintenance_mode(a) != Some(agora_actors::MaintenanceMode::Down))
            .take(limit)
            .collect();
        info!(
            agents = fresh.len(),
            reregister_timeout_ms, "waiting for the registry's agents to re-register"
        );
        if fresh.is_empty() {
            return;
        }
        self.recovery.window = Some((now, fresh.len()));
        self.recovery.waiting.extend(fresh);
        out.push(Action::SetTimer {
            timer: MasterTimer::AgentReregisterTimeout,
            at: now.plus_ms(reregister_timeout_ms),
        });
    }

    pub(crate) fn reregister_window_closed(&mut self, out: &mut Out) {
        let missing = std::mem::take(&mut self.recovery.waiting);
        if let Some((_, agents)) = self.recovery.window.take() {
            let missing = missing
                .iter()
                .filter(|a| !self.agents.contains_key(*a))
                .count();
            info!(agents, missing, "re-registration window closed");
        }
        let schedulers: Vec<_> = self.frameworks.values().filter_map(|f| f.conn).collect();
        for agent_id in missing {
            if self.agents.contains_key(&agent_id) {
                continue;
            }
            warn!(agent = %agent_id, "agent did not re-register after the failover in time; unreachable");
            self.recovery
                .unreachable
                .insert(agent_id.clone(), MAX_UNREACHABLE_AGENTS);
            // The shell removes it from the registry: like Mesos's "gone", it may not come
            // back under this id.
            self.removed_agents
                .insert(agent_id.clone(), super::maintenance::MAX_REMOVED_AGENTS);
            // The registry drops its maintenance record with it.
            self.maintenance.remove(&agent_id);
            self.counters.agents_unreachable += 1;
            for conn in &schedulers {
                let msg = Message::AgentLost {
                    agent_id: agent_id.clone(),
                };
                out.push(Action::Send { conn: *conn, msg });
            }
            out.push(Action::AgentUnreachable { agent_id });
        }
    }
}
