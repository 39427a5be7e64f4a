//! Reservations in the allocator's ledger (a child module of `drf`).
//!
//! Reserved resources carry their role in the resource key (`cpus(eng):2`); `pick` already
//! offers an agent's free pool to a framework only as `allocatable_to(role)`, so reserved
//! resources go only to their role and its sub-roles. This module adds:
//! - `update_reservation`: RESERVE / UNRESERVE changed some resources' role, in the free pool or
//!   in what a framework holds; total and free/held change together so `free + Σ held ==
//!   total` still holds;
//! - reservations count against their role's quota even when nobody uses them;
//! - the per-role reserved amounts for `GET /roles`.

use super::DrfAllocator;
use crate::error::AllocatorError;
use crate::quota::{add_scalars, Scalars};
use agora_actors::{AgentId, FrameworkId, ResourceError, Resources};
use std::collections::BTreeMap;

impl DrfAllocator {
    /// Replaces `from` by `to` on the agent (see `AllocatorEvent::UpdateReservation`). Both
    /// must be the same quantities; changes nothing on error.
    pub(super) fn update_reservation(
        &mut self,
        agent_id: &AgentId,
        framework_id: Option<&FrameworkId>,
        from: &Resources,
        to: &Resources,
    ) -> Result<(), AllocatorError> {
        let accounting = |source| AllocatorError::Accounting {
            agent: agent_id.clone(),
            source,
        };
        if from.unreserved_view() != to.unreserved_view() {
            return Err(AllocatorError::Config(format!(
                "a reservation change must keep the quantities: {from} vs {to}"
            )));
        }
        let agent = self
            .agents
            .get_mut(agent_id)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent_id.clone()))?;
        let swap = |pool: &Resources| -> Result<Resources, ResourceError> {
            pool.checked_sub(from)?.checked_add(to)
        };
        let total = swap(&agent.total).map_err(accounting)?;
        match framework_id {
            None => {
                agent.free = swap(&agent.free).map_err(accounting)?;
            }
            Some(fw) => {
                let held = agent
                    .held
                    .get(fw)
                    .ok_or_else(|| AllocatorError::UnknownFramework(fw.clone()))?;
                let changed = swap(held).map_err(accounting)?;
                agent.held.insert(fw.clone(), changed);
                // Shares look at quantities only, which did not change; the sorter is told
                // anyway so its per-agent books name the same resources as the ledger.
                let _ = self.sorter.unallocated(fw, agent_id, from);
                let _ = self.sorter.allocated(fw, agent_id, to);
            }
        }
        agent.total = total;
        self.sorter.remove_total(from);
        self.sorter.add_total(to);
        Ok(())
    }

    /// Everything reserved per role, over all agents (static and dynamic, used or not).
    pub(super) fn reserved_by_role(&self) -> BTreeMap<String, Resources> {
        let mut out: BTreeMap<String, Resources> = BTreeMap::new();
        for agent in self.agents.values() {
            for (key, value) in agent.total.iter() {
                let Some(role) = &key.role else { continue };
                let sum = out.entry(role.clone()).or_default();
                // Cannot fail for entries of one well-formed total; skipped if it does.
                let _ = sum.add_entry(key.clone(), value.clone());
            }
        }
        out
    }

    /// Adds each role's reserved-but-unused resources (in the agents' free pools) to its quota
    /// usage: a reservation is a promise to the role, so it counts whether used or not.
    pub(super) fn add_unused_reservations(&self, usage: &mut BTreeMap<String, Scalars>) {
        for agent in self.agents.values() {
            for (key, value) in agent.free.iter() {
                let Some(role) = &key.role else { continue };
                if !self.quotas.contains_key(role) {
                    continue;
                }
                let mut one = Resources::new();
                if one.add_entry(key.clone(), value.clone()).is_ok() {
                    add_scalars(usage.entry(role.clone()).or_default(), &one, 1);
                }
            }
        }
    }
}
