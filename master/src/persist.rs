//! What of the allocation module and the operator's agent records survives a master failover,
//! through the registry: role weights, priority levels, quotas, dynamic reservations, agent
//! maintenance, agents removed for good and the tasks declared lost with their agent.
//!
//! - Operator changes (`PUT /weights`, `PUT /quota`, `POST /reserve|/unreserve`) are applied
//!   first (the allocator or the core validates them) and then proposed to the registry
//!   (`Persist`); a framework's RESERVE/UNRESERVE is proposed after the core applied it
//!   (`persist_reservation_changes`, drained after every input).
//! - A new leader gets the registry state with the leadership news and restores weights and
//!   quotas into its fresh allocator before it starts, and reservations into its fresh core
//!   before any agent re-registers (`become_leader`).

use crate::actor::MasterActor;
use crate::core::{RegistryAgentRecords, ReserveRequest};
use crate::raft_actor::ProposeNow;
use crate::registry::{RegistryOp, RegistryState};
use actix::prelude::*;
use agora_actors::{AgentId, Maintenance, Resources};
use agora_allocator::{Allocator, OperatorCommand, Weight};
use std::collections::BTreeMap;

/// Applies the registry's weights and quotas to a fresh allocator.
pub fn restore_allocator(a: &mut dyn Allocator, reg: &RegistryState) {
    let weights: BTreeMap<String, Weight> = reg
        .weights_milli
        .iter()
        .map(|(role, milli)| (role.clone(), Weight(*milli as i64)))
        .collect();
    if !weights.is_empty() {
        if let Err(e) = a.operate(OperatorCommand::UpdateWeights { weights }) {
            tracing::warn!(error = %e, "registry weights not restored");
        }
    }
    if !reg.priorities.is_empty() {
        let priorities = reg.priorities.clone();
        if let Err(e) = a.operate(OperatorCommand::UpdatePriorities { priorities }) {
            tracing::warn!(error = %e, "registry priorities not restored");
        }
    }
    for (role, q) in &reg.quotas {
        let cmd = OperatorCommand::SetQuota {
            role: role.clone(),
            quota: Some(q.clone()),
        };
        if let Err(e) = a.operate(cmd) {
            tracing::warn!(%role, error = %e, "registry quota not restored");
        }
    }
    tracing::info!(
        weights = reg.weights_milli.len(),
        priorities = reg.priorities.len(),
        quotas = reg.quotas.len(),
        reservations = reg.reservations.len(),
        "allocation settings restored from the registry"
    );
}

/// The registry's dynamic reservations, parsed (unparsable entries are logged and skipped).
pub fn reservations_of(reg: &RegistryState) -> BTreeMap<AgentId, Resources> {
    reg.reservations
        .iter()
        .filter_map(|(agent, text)| match Resources::parse(text) {
            Ok(r) => Some((agent.clone(), r)),
            Err(e) => {
                tracing::warn!(%agent, error = %e, "registry reservation unreadable; skipped");
                None
            }
        })
        .collect()
}

/// What the registry holds about agents beyond their admission, for a new leader's core.
pub fn agent_records_of(reg: &RegistryState) -> RegistryAgentRecords {
    RegistryAgentRecords {
        maintenance: reg.maintenance.clone(),
        removed: reg.removed_agents.keys().cloned().collect(),
        lost_tasks: reg.lost_tasks.iter().cloned().collect(),
    }
}

/// Proposes a registry op (operator changes already applied) and answers once it is flushed
/// (in a group of one: committed). Without a registry (the in-process demo) it does nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Persist(pub RegistryOp);

impl Handler<Persist> for MasterActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, Persist(op): Persist, _: &mut Context<Self>) -> Self::Result {
        let raft = self.raft.as_ref().map(|r| r.raft().clone());
        Box::pin(async move {
            if let Some(raft) = raft {
                if let Err(e) = raft.send(ProposeNow(op)).await {
                    tracing::warn!(error = %e, "registry not answering; change not persisted");
                }
            }
        })
    }
}

/// An operator's reserve / unreserve; answered with the agent's dynamic reservations.
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct OperatorReserve(pub ReserveRequest);

impl Handler<OperatorReserve> for MasterActor {
    type Result = Result<String, String>;
    fn handle(&mut self, msg: OperatorReserve, ctx: &mut Context<Self>) -> Self::Result {
        if !self.leading {
            return Err("this master is not the leader".into());
        }
        let agent = msg.0.agent_id.clone();
        let actions = self
            .core
            .operator_reserve(msg.0)
            .map_err(|e| e.to_string())?;
        self.perform(actions, ctx);
        self.persist_reservation_changes();
        let now = self.core.reservations().get(&agent).cloned();
        Ok(now.map(|r| r.to_string()).unwrap_or_default())
    }
}

/// The dynamic reservations the leader knows, per agent (`GET /reservations`).
#[derive(Message)]
#[rtype(result = "BTreeMap<String, String>")]
pub struct GetReservations;

impl Handler<GetReservations> for MasterActor {
    type Result = MessageResult<GetReservations>;
    fn handle(&mut self, _: GetReservations, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.core
                .reservations()
                .iter()
                .map(|(a, r)| (a.to_string(), r.to_string()))
                .collect(),
        )
    }
}

/// Why an operator's maintenance change was not made.
#[derive(Debug)]
pub enum MaintenanceRefused {
    /// Answered by the leader (`307`) or `503` if none is known.
    NotLeader,
    Bad(crate::core::MasterError),
}

/// An operator's maintenance change (`None`: up), applied by the leader's core; the caller
/// persists `RegistryOp::SetMaintenance` once it is accepted.
#[derive(Message)]
#[rtype(result = "Result<(), MaintenanceRefused>")]
pub struct OperatorMaintenance {
    pub agent_id: AgentId,
    pub maintenance: Option<Maintenance>,
}

impl Handler<OperatorMaintenance> for MasterActor {
    type Result = Result<(), MaintenanceRefused>;
    fn handle(&mut self, msg: OperatorMaintenance, ctx: &mut Context<Self>) -> Self::Result {
        if !self.leading {
            return Err(MaintenanceRefused::NotLeader);
        }
        let now = self.clock.now();
        let actions = self
            .core
            .set_maintenance(now, &msg.agent_id, msg.maintenance)
            .map_err(MaintenanceRefused::Bad)?;
        self.perform(actions, ctx);
        self.persist_lost_tasks();
        Ok(())
    }
}

/// The leader's maintenance records (`GET /maintenance`); `None` on a standby.
#[derive(Message)]
#[rtype(result = "Option<BTreeMap<String, Maintenance>>")]
pub struct GetMaintenance;

impl Handler<GetMaintenance> for MasterActor {
    type Result = MessageResult<GetMaintenance>;
    fn handle(&mut self, _: GetMaintenance, _: &mut Context<Self>) -> Self::Result {
        if !self.leading {
            return MessageResult(None);
        }
        let records = self.core.maintenance().iter();
        MessageResult(Some(records.map(|(a, m)| (a.to_string(), *m)).collect()))
    }
}

impl MasterActor {
    /// Proposes the tasks the core declared lost with their agent, so a later leader does not
    /// adopt them should the agent come back.
    pub(crate) fn persist_lost_tasks(&mut self) {
        let changes = self.core.take_lost_task_changes();
        let Some(r) = &self.raft else { return };
        for (agent_id, tasks) in changes {
            r.raft()
                .do_send(ProposeNow(RegistryOp::TasksLost { agent_id, tasks }));
        }
    }

    /// Proposes every agent's changed reservation set to the registry.
    pub(crate) fn persist_reservation_changes(&mut self) {
        let changes = self.core.take_reservation_changes();
        let Some(r) = &self.raft else { return };
        for (agent_id, resources) in changes {
            let text = if resources.is_empty() {
                String::new()
            } else {
                resources.to_string()
            };
            r.raft().do_send(ProposeNow(RegistryOp::SetReservations {
                agent_id,
                resources: text,
            }));
        }
    }
}
