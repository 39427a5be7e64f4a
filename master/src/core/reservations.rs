//! Dynamic reservations, the master's side.
//!
//! Static reservations come from the agent's own `--resources` (`cpus(ads):8`). Dynamic ones
//! are made while the cluster runs, by a framework (`Operation::Reserve` / `Unreserve` in an
//! accept, on resources of its offer, for one of its roles) or by an operator (`POST /reserve`,
//! `POST /unreserve`, on resources of the agent nobody uses). The master keeps them per agent
//! (`dynamic`), applies them to the agent's total, tells the allocator
//! (`AllocatorEvent::UpdateReservation`), and queues the agent's new reservation set for the
//! registry (`take_reservation_changes`), so a new leader applies them when the agent
//! re-registers (agents report only their static resources).

use super::{Action, MasterCore, MasterError, Out};
use agora_actors::resources::Key;
use agora_actors::{AgentId, FrameworkId, Resources};
use agora_allocator::AllocatorEvent;
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, warn};

/// Dynamic reservations per agent (each entry in its reserved form, `cpus(eng):2`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ReservationBook {
    dynamic: BTreeMap<AgentId, Resources>,
    /// Agents whose set changed since the shell last took the changes.
    changed: BTreeSet<AgentId>,
}

/// An operator's reserve / unreserve request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    pub agent_id: AgentId,
    pub role: String,
    /// Unreserved form (`cpus:2;mem:1024`); the reservation is these for `role`.
    pub resources: Resources,
    /// `true`: give them back to the unreserved pool.
    pub unreserve: bool,
}

/// `r` with every entry reserved for `role` (`None`: unreserved).
pub fn with_role(r: &Resources, role: Option<&str>) -> Resources {
    let mut out = Resources::new();
    for (k, v) in r.iter() {
        let key = Key {
            name: k.name.clone(),
            role: role.map(str::to_string),
        };
        // Cannot fail: one entry per name of a well-formed bag; skipped if it does.
        let _ = out.add_entry(key, v.clone());
    }
    out
}

/// `pool - from + to`, or why not.
fn swap(pool: &Resources, from: &Resources, to: &Resources) -> Result<Resources, String> {
    pool.checked_sub(from)
        .and_then(|p| p.checked_add(to))
        .map_err(|e| e.to_string())
}

impl MasterCore {
    /// Dynamic reservations per agent (what the registry persists).
    pub fn reservations(&self) -> &BTreeMap<AgentId, Resources> {
        &self.reservations.dynamic
    }

    /// Restores dynamic reservations known from the registry (a new leader, before agents
    /// re-register).
    pub fn restore_reservations(&mut self, dynamic: BTreeMap<AgentId, Resources>) {
        self.reservations.dynamic = dynamic;
    }

    /// Agents whose dynamic reservations changed, with their whole new set (empty: none).
    pub fn take_reservation_changes(&mut self) -> Vec<(AgentId, Resources)> {
        let changed = std::mem::take(&mut self.reservations.changed);
        changed
            .into_iter()
            .map(|a| {
                let r = self.reservations.dynamic.get(&a).cloned();
                (a, r.unwrap_or_default())
            })
            .collect()
    }

    /// An agent's reported (static) resources with its dynamic reservations applied. Ones that
    /// no longer fit (the agent came back smaller) are left out with a warning.
    pub(crate) fn with_reservations(&self, agent_id: &AgentId, reported: Resources) -> Resources {
        let Some(dynamic) = self.reservations.dynamic.get(agent_id) else {
            return reported;
        };
        match swap(&reported, &dynamic.unreserved_view(), dynamic) {
            Ok(r) => r,
            Err(why) => {
                warn!(agent = %agent_id, %dynamic, why, "dynamic reservations do not fit the agent's resources; not applied");
                reported
            }
        }
    }

    fn record_reservation(&mut self, agent_id: &AgentId, from: &Resources, to: &Resources) {
        let book = self
            .reservations
            .dynamic
            .entry(agent_id.clone())
            .or_default();
        // Reserving adds `to` (reserved); unreserving removes `from` (reserved).
        let reserved_to = to.iter().any(|(k, _)| k.role.is_some());
        let next = if reserved_to {
            book.checked_add(to)
        } else {
            book.checked_sub(from)
        };
        match next {
            Ok(n) if n.is_empty() => {
                self.reservations.dynamic.remove(agent_id);
            }
            Ok(n) => *book = n,
            Err(e) => warn!(agent = %agent_id, error = %e, "reservation book out of step"),
        }
        self.reservations.changed.insert(agent_id.clone());
    }

    /// Changes `from` into `to` on the agent: its total, the book, the allocator.
    fn apply_reservation(
        &mut self,
        agent_id: &AgentId,
        framework_id: Option<&FrameworkId>,
        from: Resources,
        to: Resources,
        out: &mut Out,
    ) -> Result<(), String> {
        let agent = self.agents.get_mut(agent_id).ok_or("unknown agent")?;
        agent.total = swap(&agent.total, &from, &to)?;
        self.record_reservation(agent_id, &from, &to);
        info!(agent = %agent_id, %from, %to, "reservation changed");
        out.push(Action::Allocator(AllocatorEvent::UpdateReservation {
            agent_id: agent_id.clone(),
            framework_id: framework_id.cloned(),
            from,
            to,
        }));
        Ok(())
    }

    /// `POST /reserve` and `/unreserve`: only resources nobody uses can change; outstanding
    /// offers on the agent are rescinded first (they are given back before the change).
    pub fn operator_reserve(&mut self, req: ReserveRequest) -> Result<Vec<Action>, MasterError> {
        let bad = MasterError::BadRequest;
        agora_allocator::validate_role(&req.role).map_err(|e| bad(e.to_string()))?;
        if req.role == "*" {
            return Err(bad("resources cannot be reserved for role *".into()));
        }
        super::validate::resources("reservation", &req.resources).map_err(bad)?;
        if !self.agents.contains_key(&req.agent_id) {
            return Err(MasterError::UnknownAgent(req.agent_id));
        }
        let plain = with_role(&req.resources, None);
        let reserved = with_role(&req.resources, Some(&req.role));
        let (from, to) = if req.unreserve {
            let book = self.reservations.dynamic.get(&req.agent_id);
            if !book.is_some_and(|b| b.contains(&reserved)) {
                return Err(bad(format!(
                    "agent {} has no dynamic reservation of {reserved}",
                    req.agent_id
                )));
            }
            (reserved, plain)
        } else {
            (plain, reserved)
        };
        // Checked before anything changes: unused includes what is only offered.
        let used = self.agent_used(&req.agent_id);
        let total = self.agents.get(&req.agent_id).map(|a| a.total.clone());
        let unused = total
            .unwrap_or_default()
            .checked_sub(&used)
            .map_err(|e| bad(e.to_string()))?;
        if !unused.contains(&from) {
            return Err(bad(format!(
                "agent {} does not have {from} unused (unused: {unused})",
                req.agent_id
            )));
        }
        let mut out = Vec::new();
        self.rescind_agent_offers(&req.agent_id, true, &mut out);
        if let Err(why) = self.apply_reservation(&req.agent_id, None, from, to, &mut out) {
            warn!(agent = %req.agent_id, why, "operator reservation not applied");
        }
        Ok(out)
    }

    /// `Operation::Reserve` / `Unreserve` of an accept, on what is left of its offers.
    /// Returns the changed remainder, or why the operation is refused.
    pub(crate) fn offer_reservation(
        &mut self,
        fw: &FrameworkId,
        agent_id: &AgentId,
        remaining: &Resources,
        resources: &Resources,
        unreserve: bool,
        out: &mut Out,
    ) -> Result<Resources, String> {
        super::validate::resources("reservation", resources)?;
        let roles = self
            .frameworks
            .get(fw)
            .map(|f| f.info.roles.clone())
            .unwrap_or_default();
        for (k, _) in resources.iter() {
            match &k.role {
                Some(r) if roles.contains(r) => {}
                _ => {
                    return Err(format!(
                        "{} must be reserved for one of the framework's roles ({})",
                        k.name,
                        roles.join(",")
                    ))
                }
            }
        }
        let plain = resources.unreserved_view();
        let (from, to) = if unreserve {
            let book = self.reservations.dynamic.get(agent_id);
            if !book.is_some_and(|b| b.contains(resources)) {
                return Err(format!(
                    "no dynamic reservation of {resources} to unreserve"
                ));
            }
            (resources.clone(), plain)
        } else {
            (plain, resources.clone())
        };
        if !remaining.contains(&from) {
            return Err(format!("the offers do not hold {from} (left: {remaining})"));
        }
        let left = swap(remaining, &from, &to)?;
        self.apply_reservation(agent_id, Some(fw), from, to, out)?;
        Ok(left)
    }
}
