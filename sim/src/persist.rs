//! What survives a crash in the simulator: the master's registry and each agent's checkpoint,
//! kept in memory across the crash and fed by the same observations and actions the real
//! shells turn into disk writes (`master/src/ha.rs`, `agent/src/actor.rs`).

use agora_actors::transport::ConnId;
use agora_actors::{AgentId, ContainerId, Message};
use agora_agent::core::CoreCheckpoint;
use agora_master::registry::{AgentRecord, RegistryLimits, RegistryOp, RegistryState};
use std::collections::{BTreeMap, BTreeSet};

/// The master's registry (a group of one: every proposal commits). As in the real shell an
/// agent is admitted when the core answers its (re-)registration, and removed when the core
/// declares it unreachable after a failover.
#[derive(Debug, Default)]
pub struct Registry {
    pub state: RegistryState,
    /// What each connection's registration said, until the core answers it (soft state).
    pending: BTreeMap<ConnId, AgentRecord>,
}

impl Registry {
    /// A master crash loses what was not committed yet.
    pub fn master_crashed(&mut self) {
        self.pending.clear();
    }

    pub fn observe_input(&mut self, conn: ConnId, msg: &Message) {
        if let Some(rec) = AgentRecord::of_registration(msg) {
            self.pending.insert(conn, rec);
        }
    }

    pub fn observe_output(&mut self, conn: ConnId, msg: &Message) {
        if let Message::AgentRegistered { agent_id, .. } = msg {
            if let Some(record) = self.pending.remove(&conn) {
                self.apply(RegistryOp::AdmitAgent {
                    agent_id: agent_id.clone(),
                    record,
                });
            }
        }
    }

    pub fn agent_unreachable(&mut self, agent_id: AgentId) {
        self.apply(RegistryOp::RemoveAgent { agent_id });
    }

    pub fn tasks_lost(
        &mut self,
        lost: Vec<(
            AgentId,
            Vec<(agora_actors::FrameworkId, agora_actors::TaskId)>,
        )>,
    ) {
        for (agent_id, tasks) in lost {
            self.apply(RegistryOp::TasksLost { agent_id, tasks });
        }
    }

    fn apply(&mut self, op: RegistryOp) {
        if let Err(e) = self.state.apply(&op, &RegistryLimits::default()) {
            tracing::warn!(error = %e, "registry op refused");
        }
    }

    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.state.agents.keys().cloned().collect()
    }
}

/// An agent's checkpoint on its disk: the core's record, rewritten after every step as the
/// real shell does, and the containers it launched (the containerizer's records).
#[derive(Debug, Default)]
pub struct AgentDisk {
    pub core: Option<CoreCheckpoint>,
    pub containers: BTreeSet<ContainerId>,
}
