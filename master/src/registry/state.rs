//! The registry's state machine: what a new leader must know that no agent or scheduler can tell
//! it. Pure data; `apply` is deterministic (same ops in the same order, same state on every
//! master) and refuses, rather than panics on, ops that do not fit.

use super::RegistryError;
use agora_actors::{AgentId, FrameworkId, Maintenance, MaintenanceMode, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Tasks remembered as lost with their removed (or downed) agent; the oldest are forgotten
/// first (the same bound the master core keeps in memory).
pub const MAX_LOST_TASKS: usize = 100_000;

/// Bounds on the replicated state, so a misbehaving leader cannot grow every master's memory
/// without limit. The same values must be used on every master (they are part of `apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    pub max_agents: usize,
    pub max_frameworks: usize,
    pub max_roles: usize,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            max_agents: 100_000,
            max_frameworks: 20_000,
            max_roles: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub hostname: String,
    pub endpoint: String,
}

impl AgentRecord {
    /// What an agent's (re-)registration says about it, kept until the core admits the agent
    /// (the HA shell and the simulator's registry both record it then).
    pub fn of_registration(msg: &agora_actors::Message) -> Option<AgentRecord> {
        use agora_actors::Message;
        match msg {
            Message::RegisterAgent {
                hostname, endpoint, ..
            }
            | Message::ReregisterAgent {
                hostname, endpoint, ..
            } => Some(AgentRecord {
                hostname: hostname.clone(),
                endpoint: endpoint.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    pub name: String,
    pub roles: Vec<String>,
    pub failover_timeout_ms: u64,
}

/// One change of the registry: the payload of a raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegistryOp {
    AdmitAgent {
        agent_id: AgentId,
        record: AgentRecord,
    },
    RemoveAgent {
        agent_id: AgentId,
    },
    AddFramework {
        framework_id: FrameworkId,
        record: FrameworkRecord,
    },
    RemoveFramework {
        framework_id: FrameworkId,
    },
    /// Weight of a role in thousandths (1000 = 1.0); fixed point so every master agrees.
    SetWeight {
        role: String,
        weight_milli: u64,
    },
    /// A role's quota (`None` removes it).
    SetQuota {
        role: String,
        quota: Option<agora_allocator::Quota>,
    },
    /// An agent's whole set of dynamic reservations, in resource text (`cpus(eng):2`; empty
    /// removes them). Text, because resource keys are not JSON map keys.
    SetReservations {
        agent_id: AgentId,
        resources: String,
    },
    /// An operator's maintenance of an admitted agent (`None`: back up). Refused for an agent
    /// the registry does not hold, and for transitions that make no sense (`up` of an agent
    /// not in maintenance, draining one that is down).
    SetMaintenance {
        agent_id: AgentId,
        maintenance: Option<Maintenance>,
    },
    /// A role's strict-priority level (0, the default, removes it).
    SetPriority {
        role: String,
        level: u32,
    },
    /// The master declared these tasks of the agent lost (agent removed, or down for
    /// maintenance). Should the agent come back, whichever master leads kills them rather
    /// than adopting them: their frameworks were told they are gone.
    TasksLost {
        agent_id: AgentId,
        tasks: Vec<(FrameworkId, TaskId)>,
    },
}

/// The replicated state. New kinds of records (quotas, reservations, maintenance) are added as
/// `#[serde(default)]` maps so an older snapshot still decodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryState {
    pub agents: BTreeMap<AgentId, AgentRecord>,
    pub frameworks: BTreeMap<FrameworkId, FrameworkRecord>,
    #[serde(default)]
    pub weights_milli: BTreeMap<String, u64>,
    /// Frameworks removed for good (torn down or failed over too late); they may not come back.
    #[serde(default)]
    pub removed_frameworks: BTreeMap<FrameworkId, ()>,
    #[serde(default)]
    pub quotas: BTreeMap<String, agora_allocator::Quota>,
    /// Dynamic reservations per agent, as resource text.
    #[serde(default)]
    pub reservations: BTreeMap<AgentId, String>,
    /// Agents in maintenance (draining or down).
    #[serde(default)]
    pub maintenance: BTreeMap<AgentId, Maintenance>,
    /// Role priority levels other than 0.
    #[serde(default)]
    pub priorities: BTreeMap<String, u32>,
    /// Agents removed for good (unreachable after a failover); they may not re-register.
    #[serde(default)]
    pub removed_agents: BTreeMap<AgentId, ()>,
    /// (agent, framework, task) declared lost, oldest first (at most `MAX_LOST_TASKS`).
    #[serde(default)]
    pub lost_tasks: VecDeque<(AgentId, FrameworkId, TaskId)>,
}

impl RegistryState {
    /// Applies one op. An op that does not fit is refused with the same error on every master,
    /// and leaves the state as it was.
    pub fn apply(&mut self, op: &RegistryOp, limits: &RegistryLimits) -> Result<(), RegistryError> {
        match op {
            RegistryOp::AdmitAgent { agent_id, record } => {
                if self.removed_agents.contains_key(agent_id) {
                    return Err(RegistryError::AgentRemoved(agent_id.to_string()));
                }
                if !self.agents.contains_key(agent_id) && self.agents.len() >= limits.max_agents {
                    return Err(RegistryError::Full("agents", limits.max_agents));
                }
                self.agents.insert(agent_id.clone(), record.clone());
            }
            RegistryOp::RemoveAgent { agent_id } => self.remove_agent(agent_id, limits),
            RegistryOp::AddFramework {
                framework_id,
                record,
            } => {
                if self.removed_frameworks.contains_key(framework_id) {
                    return Err(RegistryError::FrameworkRemoved(framework_id.to_string()));
                }
                if !self.frameworks.contains_key(framework_id)
                    && self.frameworks.len() >= limits.max_frameworks
                {
                    return Err(RegistryError::Full("frameworks", limits.max_frameworks));
                }
                self.frameworks.insert(framework_id.clone(), record.clone());
            }
            RegistryOp::RemoveFramework { framework_id } => {
                self.frameworks.remove(framework_id);
                if self.removed_frameworks.len() >= limits.max_frameworks {
                    // Forget the oldest-sorting id; bounded memory beats perfect recall here.
                    let first = self.removed_frameworks.keys().next().cloned();
                    if let Some(first) = first {
                        self.removed_frameworks.remove(&first);
                    }
                }
                self.removed_frameworks.insert(framework_id.clone(), ());
            }
            RegistryOp::SetWeight { role, weight_milli } => {
                if !self.weights_milli.contains_key(role)
                    && self.weights_milli.len() >= limits.max_roles
                {
                    return Err(RegistryError::Full("roles", limits.max_roles));
                }
                // 1000 is the default weight: not stored, so the map holds only real choices.
                if *weight_milli == 1000 {
                    self.weights_milli.remove(role);
                } else {
                    self.weights_milli.insert(role.clone(), *weight_milli);
                }
            }
            RegistryOp::SetQuota { role, quota } => match quota {
                None => {
                    self.quotas.remove(role);
                }
                Some(q) => {
                    if !self.quotas.contains_key(role) && self.quotas.len() >= limits.max_roles {
                        return Err(RegistryError::Full("quotas", limits.max_roles));
                    }
                    self.quotas.insert(role.clone(), q.clone());
                }
            },
            RegistryOp::SetReservations {
                agent_id,
                resources,
            } => {
                if resources.is_empty() {
                    self.reservations.remove(agent_id);
                } else {
                    if !self.reservations.contains_key(agent_id)
                        && self.reservations.len() >= limits.max_agents
                    {
                        return Err(RegistryError::Full("reservations", limits.max_agents));
                    }
                    self.reservations
                        .insert(agent_id.clone(), resources.clone());
                }
            }
            RegistryOp::SetMaintenance {
                agent_id,
                maintenance,
            } => self.set_maintenance(agent_id, maintenance.as_ref())?,
            RegistryOp::SetPriority { role, level } => {
                if *level == 0 {
                    self.priorities.remove(role);
                } else {
                    if !self.priorities.contains_key(role)
                        && self.priorities.len() >= limits.max_roles
                    {
                        return Err(RegistryError::Full("priorities", limits.max_roles));
                    }
                    self.priorities.insert(role.clone(), *level);
                }
            }
            RegistryOp::TasksLost { agent_id, tasks } => {
                for (fw, task) in tasks {
                    if self.lost_tasks.len() >= MAX_LOST_TASKS {
                        self.lost_tasks.pop_front();
                    }
                    self.lost_tasks
                        .push_back((agent_id.clone(), fw.clone(), task.clone()));
                }
            }
        }
        Ok(())
    }

    /// The agent leaves for good: it may not be admitted again under this id, and what the
    /// registry kept for it (maintenance, reservations) goes with it.
    fn remove_agent(&mut self, agent_id: &AgentId, limits: &RegistryLimits) {
        self.agents.remove(agent_id);
        self.maintenance.remove(agent_id);
        self.reservations.remove(agent_id);
        if !self.removed_agents.contains_key(agent_id)
            && self.removed_agents.len() >= limits.max_agents
        {
            // Forget the first-sorting id: bounded memory beats perfect recall here.
            let first = self.removed_agents.keys().next().cloned();
            if let Some(first) = first {
                self.removed_agents.remove(&first);
            }
        }
        self.removed_agents.insert(agent_id.clone(), ());
    }

    fn set_maintenance(
        &mut self,
        agent_id: &AgentId,
        to: Option<&Maintenance>,
    ) -> Result<(), RegistryError> {
        if !self.agents.contains_key(agent_id) {
            return Err(RegistryError::UnknownAgent(agent_id.to_string()));
        }
        let from = self.maintenance.get(agent_id).map(|m| m.mode);
        check_maintenance_change(agent_id, from, to.map(|m| m.mode))
            .map_err(RegistryError::Maintenance)?;
        match to {
            Some(m) => self.maintenance.insert(agent_id.clone(), *m),
            None => self.maintenance.remove(agent_id),
        };
        Ok(())
    }

    /// Whether `op` would change anything (so repeated admissions need not be logged).
    pub fn changes(&self, op: &RegistryOp) -> bool {
        match op {
            RegistryOp::AdmitAgent { agent_id, record } => {
                self.agents.get(agent_id) != Some(record)
            }
            RegistryOp::RemoveAgent { agent_id } => {
                self.agents.contains_key(agent_id) || !self.removed_agents.contains_key(agent_id)
            }
            RegistryOp::AddFramework {
                framework_id,
                record,
            } => self.frameworks.get(framework_id) != Some(record),
            RegistryOp::RemoveFramework { framework_id } => {
                self.frameworks.contains_key(framework_id)
                    || !self.removed_frameworks.contains_key(framework_id)
            }
            RegistryOp::SetWeight { role, weight_milli } => {
                self.weights_milli.get(role).copied().unwrap_or(1000) != *weight_milli
            }
            RegistryOp::SetQuota { role, quota } => self.quotas.get(role) != quota.as_ref(),
            RegistryOp::SetReservations {
                agent_id,
                resources,
            } => {
                self.reservations
                    .get(agent_id)
                    .map(String::as_str)
                    .unwrap_or("")
                    != resources.as_str()
            }
            RegistryOp::SetMaintenance {
                agent_id,
                maintenance,
            } => self.maintenance.get(agent_id) != maintenance.as_ref(),
            RegistryOp::SetPriority { role, level } => {
                self.priorities.get(role).copied().unwrap_or(0) != *level
            }
            RegistryOp::TasksLost { tasks, .. } => !tasks.is_empty(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain maps of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<RegistryState, RegistryError> {
        if bytes.is_empty() {
            return Ok(RegistryState::default());
        }
        serde_json::from_slice(bytes).map_err(|e| RegistryError::Corrupt(format!("state: {e}")))
    }
}

impl RegistryOp {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn decode(bytes: &[u8]) -> Result<RegistryOp, RegistryError> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::Corrupt(format!("entry: {e}")))
    }
}

/// Whether an agent may go from maintenance mode `from` to `to` (`None`: up). The master core
/// checks the same before it acts, so the operator hears the reason at once.
pub fn check_maintenance_change(
    agent_id: &AgentId,
    from: Option<MaintenanceMode>,
    to: Option<MaintenanceMode>,
) -> Result<(), String> {
    use MaintenanceMode::{Down, Draining};
    match (from, to) {
        (None, None) => Err(format!(
            "agent {agent_id} is not in maintenance; nothing to bring up"
        )),
        (Some(Down), Some(Draining)) => Err(format!(
            "agent {agent_id} is down; bring it up before draining it again"
        )),
        (Some(Down), Some(Down)) => Err(format!("agent {agent_id} is already down")),
        _ => Ok(()),
    }
}
