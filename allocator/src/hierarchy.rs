//! Hierarchical DRF: roles first, then frameworks within a role.
//!
//! Two levels of `DrfSorter`: one over roles, whose allocation is the sum of their
//! frameworks' and whose share is divided by the role's weight, and one per role over its
//! frameworks. Picking walks roles in order and, inside the first role that has an eligible
//! framework, frameworks in order. Each allocation re-files one role and one framework.
//!
//! Role names such as `eng/backend` are separate roles here (the tree is flattened): a
//! sub-role is ranked on its own allocation and weight, not inside its parent's share. The
//! tree matters for reservations (`eng` reservations serve `eng/backend`), which the
//! allocator's ledger handles.
//!
//! Cluster totals are kept once; per-role sorters pull them by version when visited, so adding
//! an agent costs the same with three roles or three thousand.

use crate::ordmap::FixedHash;
use crate::sorter::{ClientInfo, DrfSorter, Sorter, SorterError};
use agora_actors::{AgentId, FrameworkId, Milli, Resources};
use std::collections::{BTreeMap, BTreeSet, HashMap};

struct RoleEntry {
    frameworks: DrfSorter<FrameworkId>,
    /// Active frameworks in the role; the role is active in the role sorter iff this is > 0.
    active: usize,
}

pub struct HierarchicalSorter {
    excluded: BTreeSet<String>,
    roles: DrfSorter<String>,
    members: BTreeMap<String, RoleEntry>,
    /// Framework -> its role (looked up on every allocation, never iterated).
    clients: HashMap<FrameworkId, String, FixedHash>,
    weights: BTreeMap<String, i64>,
    totals: BTreeMap<String, Milli>,
    totals_version: u64,
    /// Active frameworks over all roles (kept so `active_count` is O(1)).
    active_total: usize,
    /// Whether the role sorter's per-role sums are maintained. With a single role there is
    /// nothing to order, so the per-allocation role update is skipped and the sums are rebuilt
    /// from the frameworks when a second role appears (or a report asks).
    roles_synced: bool,
}

impl HierarchicalSorter {
    pub fn new(excluded: BTreeSet<String>) -> Self {
        HierarchicalSorter {
            roles: DrfSorter::new(excluded.clone()),
            excluded,
            members: BTreeMap::new(),
            clients: HashMap::default(),
            weights: BTreeMap::new(),
            totals: BTreeMap::new(),
            totals_version: 1,
            active_total: 0,
            roles_synced: true,
        }
    }

    fn unknown(client: &FrameworkId) -> SorterError {
        SorterError::UnknownClient(client.to_string())
    }

    fn entry(&mut self, role: &str) -> &mut RoleEntry {
        if !self.members.contains_key(role) {
            let _ = self.roles.add_client(role.to_string());
            let w = self.weights.get(role).copied().unwrap_or(1000);
            self.roles.set_client_weight(&role.to_string(), w);
            let mut frameworks = DrfSorter::new(self.excluded.clone());
            frameworks.sync_totals(&self.totals, self.totals_version);
            let e = RoleEntry {
                frameworks,
                active: 0,
            };
            self.members.insert(role.to_string(), e);
            if self.members.len() > 1 {
                self.sync_roles();
            }
        }
        self.members.get_mut(role).expect("inserted above")
    }

    /// Rebuilds every role's sum from its frameworks if single-role mode let them lapse.
    fn sync_roles(&mut self) {
        if self.roles_synced {
            return;
        }
        for (role, e) in &self.members {
            self.roles.set_allocated(role, e.frameworks.sum_allocated());
        }
        self.roles_synced = true;
    }

    /// Drops a role with no frameworks left, so thousands of departed roles cost nothing.
    fn prune(&mut self, role: &str) {
        let empty = self
            .members
            .get(role)
            .is_some_and(|e| e.frameworks.is_empty());
        if empty {
            self.members.remove(role);
            let _ = self.roles.remove_client(&role.to_string());
        }
    }

    fn set_role_active(&mut self, role: &str, delta: isize) {
        let Some(e) = self.members.get_mut(role) else {
            return;
        };
        let before = e.active;
        e.active = e.active.saturating_add_signed(delta);
        self.active_total = self.active_total + e.active - before;
        let r = role.to_string();
        if before == 0 && e.active > 0 {
            let _ = self.roles.activate(&r);
        } else if before > 0 && e.active == 0 {
            let _ = self.roles.deactivate(&r);
        }
    }

    fn change_total(&mut self, resources: &Resources, add: bool) {
        if add {
            self.roles.add_total(resources);
        } else {
            self.roles.remove_total(resources);
        }
        self.totals = self.roles.totals().clone();
        self.totals_version += 1;
    }

    /// Moves a framework (and its allocation) to another role.
    fn move_role(&mut self, client: &FrameworkId, to: &str) -> Result<(), SorterError> {
        let from = self
            .clients
            .get(client)
            .ok_or_else(|| Self::unknown(client))?
            .clone();
        if from == to {
            return Ok(());
        }
        let active = self.is_active(client);
        let held = self.allocation(client).unwrap_or_default();
        let agent = AgentId::new("moved").expect("static id is valid");
        self.unallocated(client, &agent, &held)?;
        if active {
            self.deactivate(client)?;
        }
        if let Some(e) = self.members.get_mut(&from) {
            let _ = e.frameworks.remove_client(client);
        }
        self.clients.insert(client.clone(), to.to_string());
        self.prune(&from);
        self.entry(to).frameworks.add_client(client.clone())?;
        self.allocated(client, &agent, &held)?;
        if active {
            self.activate(client)?;
        }
        Ok(())
    }
}

impl Sorter<FrameworkId> for HierarchicalSorter {
    fn add_client(&mut self, client: FrameworkId) -> Result<(), SorterError> {
        if self.clients.contains_key(&client) {
            return Err(SorterError::DuplicateClient(client.to_string()));
        }
        self.entry("*").frameworks.add_client(client.clone())?;
        self.clients.insert(client, "*".to_string());
        Ok(())
    }

    fn remove_client(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        let role = self
            .clients
            .get(client)
            .ok_or_else(|| Self::unknown(client))?
            .clone();
        let held = self.allocation(client).unwrap_or_default();
        if self.is_active(client) {
            self.set_role_active(&role, -1);
        }
        let _ = self
            .roles
            .unallocated(&role, &AgentId::new("gone").expect("valid"), &held);
        if let Some(e) = self.members.get_mut(&role) {
            e.frameworks.remove_client(client)?;
        }
        self.clients.remove(client);
        self.prune(&role);
        Ok(())
    }

    fn contains(&self, client: &FrameworkId) -> bool {
        self.clients.contains_key(client)
    }

    fn activate(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        let role = self
            .clients
            .get(client)
            .ok_or_else(|| Self::unknown(client))?
            .clone();
        let e = self
            .members
            .get_mut(&role)
            .ok_or_else(|| Self::unknown(client))?;
        if !e.frameworks.is_active(client) {
            e.frameworks.activate(client)?;
            self.set_role_active(&role, 1);
        }
        Ok(())
    }

    fn deactivate(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        let role = self
            .clients
            .get(client)
            .ok_or_else(|| Self::unknown(client))?
            .clone();
        let e = self
            .members
            .get_mut(&role)
            .ok_or_else(|| Self::unknown(client))?;
        if e.frameworks.is_active(client) {
            e.frameworks.deactivate(client)?;
            self.set_role_active(&role, -1);
        }
        Ok(())
    }

    fn is_active(&self, client: &FrameworkId) -> bool {
        let Some(role) = self.clients.get(client) else {
            return false;
        };
        self.members
            .get(role)
            .is_some_and(|e| e.frameworks.is_active(client))
    }

    fn active_count(&self) -> usize {
        self.active_total
    }

    fn add_total(&mut self, resources: &Resources) {
        self.change_total(resources, true);
    }

    fn remove_total(&mut self, resources: &Resources) {
        self.change_total(resources, false);
    }

    fn allocated(
        &mut self,
        client: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.change_allocation(client, agent, resources, true)
    }

    /// The allocator's ledger only ever releases what a framework holds, so the role's sum
    /// stays the sum of its frameworks' (both clamp at zero regardless).
    fn unallocated(
        &mut self,
        client: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.change_allocation(client, agent, resources, false)
    }

    fn sort(&mut self) -> Vec<FrameworkId> {
        let mut out = Vec::new();
        self.find_first(&mut |c| {
            out.push(c.clone());
            false
        });
        out
    }

    fn find_first(&mut self, accept: &mut dyn FnMut(&FrameworkId) -> bool) -> Option<FrameworkId> {
        let (members, totals, version) = (&mut self.members, &self.totals, self.totals_version);
        if members.len() == 1 {
            // One role (the usual `*`): nothing to order between roles. The role sorter is
            // brought up to date when a second role appears and it is queried again.
            let e = members.values_mut().next()?;
            if e.active == 0 {
                return None;
            }
            e.frameworks.sync_totals(totals, version);
            return e.frameworks.find_first(accept);
        }
        let mut found = None;
        self.roles.find_first(&mut |role| {
            let Some(e) = members.get_mut(role) else {
                return false;
            };
            e.frameworks.sync_totals(totals, version);
            found = e.frameworks.find_first(&mut *accept);
            found.is_some()
        });
        found
    }

    fn share(&self, client: &FrameworkId) -> Option<f64> {
        let role = self.clients.get(client)?;
        let e = self.members.get(role)?;
        // The per-role sorter's totals may lag; compute against the current ones.
        let held = e.frameworks.allocated_scalars(client)?;
        Some(crate::sorter::dominant_share_of(&held, &self.totals, &self.excluded).as_f64())
    }

    fn allocation(&self, client: &FrameworkId) -> Option<Resources> {
        let role = self.clients.get(client)?;
        self.members.get(role)?.frameworks.allocation(client)
    }

    fn name(&self) -> &'static str {
        "drf"
    }

    fn set_info(&mut self, client: &FrameworkId, info: &ClientInfo) -> Result<(), SorterError> {
        self.move_role(client, &info.role)
    }

    fn set_weight(&mut self, role: &str, weight_milli: i64) {
        if weight_milli == 1000 {
            self.weights.remove(role);
        } else {
            self.weights.insert(role.to_string(), weight_milli);
        }
        self.roles
            .set_client_weight(&role.to_string(), weight_milli);
    }

    fn role_share(&self, role: &str) -> Option<f64> {
        let held = if self.roles_synced {
            self.roles.allocated_scalars(&role.to_string())?
        } else {
            self.members.get(role)?.frameworks.sum_allocated()
        };
        let w = self.weights.get(role).copied().unwrap_or(1000);
        Some(
            crate::sorter::dominant_share_of(&held, &self.totals, &self.excluded)
                .weighted(w)
                .as_f64(),
        )
    }
}

impl HierarchicalSorter {
    /// One framework's allocation grows (`add`) or shrinks, and so does its role's.
    fn change_allocation(
        &mut self,
        client: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
        add: bool,
    ) -> Result<(), SorterError> {
        let role = self
            .clients
            .get(client)
            .ok_or_else(|| Self::unknown(client))?;
        let e = self
            .members
            .get_mut(role)
            .ok_or_else(|| Self::unknown(client))?;
        if add {
            e.frameworks.allocated(client, agent, resources)?;
        } else {
            e.frameworks.unallocated(client, agent, resources)?;
        }
        // The role is in the role sorter whenever it has members (see `entry`); with one
        // role its sum lapses (as `track_roles` does, inlined to keep `role` borrowed).
        if self.members.len() > 1 {
            let _ = if add {
                self.roles.allocated(role, agent, resources)
            } else {
                self.roles.unallocated(role, agent, resources)
            };
        } else {
            self.roles_synced = false;
        }
        Ok(())
    }
}
