//! Strict priority: frameworks at a higher priority level are always offered first; within a
//! level, hierarchical DRF (roles by weighted share, then frameworks).

use crate::hierarchy::HierarchicalSorter;
use crate::sorter::{ClientInfo, Sorter, SorterError};
use agora_actors::{AgentId, FrameworkId, Resources};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

pub struct PrioritySorter {
    excluded: BTreeSet<String>,
    /// Highest level first.
    levels: BTreeMap<Reverse<u32>, HierarchicalSorter>,
    clients: BTreeMap<FrameworkId, ClientInfo>,
    weights: BTreeMap<String, i64>,
    /// Cluster totals, replayed into a level when it is created.
    totals: Resources,
}

impl PrioritySorter {
    pub fn new(excluded: BTreeSet<String>) -> Self {
        PrioritySorter {
            excluded,
            levels: BTreeMap::new(),
            clients: BTreeMap::new(),
            weights: BTreeMap::new(),
            totals: Resources::new(),
        }
    }

    fn level_of(&self, client: &FrameworkId) -> Result<Reverse<u32>, SorterError> {
        self.clients
            .get(client)
            .map(|i| Reverse(i.priority))
            .ok_or_else(|| SorterError::UnknownClient(client.to_string()))
    }

    fn level(&mut self, level: Reverse<u32>) -> &mut HierarchicalSorter {
        let (excluded, totals, weights) = (&self.excluded, &self.totals, &self.weights);
        self.levels.entry(level).or_insert_with(|| {
            let mut s = HierarchicalSorter::new(excluded.clone());
            s.add_total(totals);
            for (role, w) in weights {
                s.set_weight(role, *w);
            }
            s
        })
    }

    fn with_level<T>(
        &mut self,
        client: &FrameworkId,
        f: impl FnOnce(&mut HierarchicalSorter) -> Result<T, SorterError>,
    ) -> Result<T, SorterError> {
        let level = self.level_of(client)?;
        f(self.level(level))
    }
}

impl Sorter<FrameworkId> for PrioritySorter {
    fn add_client(&mut self, client: FrameworkId) -> Result<(), SorterError> {
        if self.clients.contains_key(&client) {
            return Err(SorterError::DuplicateClient(client.to_string()));
        }
        self.level(Reverse(0)).add_client(client.clone())?;
        self.clients.insert(client, ClientInfo::default());
        Ok(())
    }

    fn remove_client(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        self.with_level(client, |s| s.remove_client(client))?;
        self.clients.remove(client);
        Ok(())
    }

    fn contains(&self, client: &FrameworkId) -> bool {
        self.clients.contains_key(client)
    }

    fn activate(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        self.with_level(client, |s| s.activate(client))
    }

    fn deactivate(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        self.with_level(client, |s| s.deactivate(client))
    }

    fn is_active(&self, client: &FrameworkId) -> bool {
        let Ok(level) = self.level_of(client) else {
            return false;
        };
        self.levels.get(&level).is_some_and(|s| s.is_active(client))
    }

    fn active_count(&self) -> usize {
        self.levels.values().map(|s| s.active_count()).sum()
    }

    fn add_total(&mut self, resources: &Resources) {
        match self.totals.checked_add(resources) {
            Ok(t) => self.totals = t,
            Err(e) => tracing::warn!(error = %e, "priority sorter: cannot add capacity"),
        }
        for s in self.levels.values_mut() {
            s.add_total(resources);
        }
    }

    fn remove_total(&mut self, resources: &Resources) {
        self.totals = self.totals.checked_sub(resources).unwrap_or_default();
        for s in self.levels.values_mut() {
            s.remove_total(resources);
        }
    }

    fn allocated(
        &mut self,
        client: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.with_level(client, |s| s.allocated(client, agent, resources))
    }

    fn unallocated(
        &mut self,
        client: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.with_level(client, |s| s.unallocated(client, agent, resources))
    }

    fn sort(&mut self) -> Vec<FrameworkId> {
        self.levels.values_mut().flat_map(|s| s.sort()).collect()
    }

    fn find_first(&mut self, accept: &mut dyn FnMut(&FrameworkId) -> bool) -> Option<FrameworkId> {
        self.levels
            .values_mut()
            .filter(|s| s.active_count() > 0)
            .find_map(|s| s.find_first(&mut *accept))
    }

    fn share(&self, client: &FrameworkId) -> Option<f64> {
        self.levels.get(&self.level_of(client).ok()?)?.share(client)
    }

    fn allocation(&self, client: &FrameworkId) -> Option<Resources> {
        self.levels
            .get(&self.level_of(client).ok()?)?
            .allocation(client)
    }

    fn name(&self) -> &'static str {
        "priority"
    }

    /// Moves the client to its level (with its allocation and activity), then to its role.
    fn set_info(&mut self, client: &FrameworkId, info: &ClientInfo) -> Result<(), SorterError> {
        let old = self.level_of(client)?;
        let new = Reverse(info.priority);
        if old != new {
            let active = self.is_active(client);
            let held = self.allocation(client).unwrap_or_default();
            let agent = AgentId::new("moved").expect("static id is valid");
            // An emptied level is kept: cheap, and skipped by `find_first`.
            self.level(old).remove_client(client)?;
            let to = self.level(new);
            to.add_client(client.clone())?;
            to.allocated(client, &agent, &held)?;
            if active {
                to.activate(client)?;
            }
        }
        self.clients.insert(client.clone(), info.clone());
        self.with_level(client, |s| s.set_info(client, info))
    }

    fn set_weight(&mut self, role: &str, weight_milli: i64) {
        self.weights.insert(role.to_string(), weight_milli);
        for s in self.levels.values_mut() {
            s.set_weight(role, weight_milli);
        }
    }

    fn role_share(&self, role: &str) -> Option<f64> {
        self.levels
            .values()
            .filter_map(|s| s.role_share(role))
            .reduce(f64::max)
    }
}
