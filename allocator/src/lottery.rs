//! Lottery scheduling: each agent's offer goes to a framework drawn at random with probability
//! proportional to its entitled share — its role's weight split evenly among the role's active
//! frameworks. The RNG is seeded (ChaCha8), so the same events replay the same draws.
//!
//! A framework that cannot use the agent (filtered, nothing allocatable for its role) is set
//! aside and the draw repeats among the rest, so the lottery never wastes an agent.
//! Accounting (allocations, shares for operators) is a plain `DrfSorter`.

use crate::sorter::{ClientInfo, DrfSorter, Sorter, SorterError};
use crate::ticket_tree::TicketTree;
use agora_actors::{AgentId, FrameworkId, Resources};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

pub struct LotterySorter {
    acct: DrfSorter<FrameworkId>,
    roles: BTreeMap<FrameworkId, String>,
    weights: BTreeMap<String, i64>,
    rng: ChaCha8Rng,
    /// Active clients and their tickets, rebuilt when activity, roles or weights change.
    tickets: Option<Vec<(FrameworkId, u64)>>,
    /// The same tickets, for O(log n) draws; rebuilt with `tickets`.
    tree: TicketTree,
}

impl LotterySorter {
    pub fn new(excluded: BTreeSet<String>, seed: u64) -> Self {
        LotterySorter {
            acct: DrfSorter::new(excluded),
            roles: BTreeMap::new(),
            weights: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            tickets: None,
            tree: TicketTree::default(),
        }
    }

    /// Tickets per active client: role weight (thousandths) × 1e6 / active clients in the role.
    fn tickets(&mut self) -> &[(FrameworkId, u64)] {
        if self.tickets.is_none() {
            let mut per_role: BTreeMap<&str, u64> = BTreeMap::new();
            let active: Vec<&FrameworkId> = self.acct.ordered_by_id_active();
            for c in &active {
                let role = self.roles.get(*c).map(String::as_str).unwrap_or("*");
                *per_role.entry(role).or_default() += 1;
            }
            let list: Vec<(FrameworkId, u64)> = active
                .iter()
                .map(|c| {
                    let role = self.roles.get(*c).map(String::as_str).unwrap_or("*");
                    let w = self.weights.get(role).copied().unwrap_or(1000).max(1) as u64;
                    let n = per_role.get(role).copied().unwrap_or(1).max(1);
                    ((*c).clone(), (w * 1_000_000 / n).max(1))
                })
                .collect();
            self.tree = TicketTree::new(list.iter().map(|(_, t)| *t));
            self.tickets = Some(list);
        }
        self.tickets.as_deref().unwrap_or(&[])
    }

    /// Entitled probability of each active client (for tests and operators).
    pub fn entitlements(&mut self) -> Vec<(FrameworkId, f64)> {
        let list = self.tickets().to_vec();
        let sum: u64 = list.iter().map(|(_, t)| *t).sum();
        list.into_iter()
            .map(|(c, t)| (c, t as f64 / sum.max(1) as f64))
            .collect()
    }
}

impl Sorter<FrameworkId> for LotterySorter {
    fn add_client(&mut self, client: FrameworkId) -> Result<(), SorterError> {
        self.acct.add_client(client.clone())?;
        self.roles.insert(client, "*".to_string());
        self.tickets = None;
        Ok(())
    }
    fn remove_client(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        self.acct.remove_client(client)?;
        self.roles.remove(client);
        self.tickets = None;
        Ok(())
    }
    fn contains(&self, client: &FrameworkId) -> bool {
        self.acct.contains(client)
    }
    fn activate(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        self.tickets = None;
        self.acct.activate(client)
    }
    fn deactivate(&mut self, client: &FrameworkId) -> Result<(), SorterError> {
        self.tickets = None;
        self.acct.deactivate(client)
    }
    fn is_active(&self, client: &FrameworkId) -> bool {
        self.acct.is_active(client)
    }
    fn active_count(&self) -> usize {
        self.acct.active_count()
    }
    fn add_total(&mut self, resources: &Resources) {
        self.acct.add_total(resources)
    }
    fn remove_total(&mut self, resources: &Resources) {
        self.acct.remove_total(resources)
    }
    fn allocated(
        &mut self,
        client: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.acct.allocated(client, agent, resources)
    }
    fn unallocated(
        &mut self,
        client: &FrameworkId,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.acct.unallocated(client, agent, resources)
    }

    /// One full draw without replacement: the order a run of `find_first` would try.
    fn sort(&mut self) -> Vec<FrameworkId> {
        let mut out = Vec::new();
        self.find_first(&mut |c| {
            out.push(c.clone());
            false
        });
        out
    }

    fn find_first(&mut self, accept: &mut dyn FnMut(&FrameworkId) -> bool) -> Option<FrameworkId> {
        self.tickets();
        let list = self.tickets.as_deref().unwrap_or(&[]);
        // A refuser is set aside by zeroing its tickets for the rest of this call, then given
        // them back: the tree serves every call of the cycle.
        let mut set_aside: Vec<(usize, u64)> = Vec::new();
        let mut chosen = None;
        while self.tree.total() > 0 {
            let idx = self.tree.find(self.rng.gen_range(0..self.tree.total()));
            if accept(&list[idx].0) {
                chosen = Some(list[idx].0.clone());
                break;
            }
            set_aside.push((idx, self.tree.count(idx)));
            self.tree.set(idx, 0);
        }
        for (idx, count) in set_aside {
            self.tree.set(idx, count);
        }
        chosen
    }

    fn share(&self, client: &FrameworkId) -> Option<f64> {
        self.acct.share(client)
    }
    fn allocation(&self, client: &FrameworkId) -> Option<Resources> {
        self.acct.allocation(client)
    }
    fn name(&self) -> &'static str {
        "lottery"
    }
    fn set_info(&mut self, client: &FrameworkId, info: &ClientInfo) -> Result<(), SorterError> {
        if !self.acct.contains(client) {
            return Err(SorterError::UnknownClient(client.to_string()));
        }
        self.roles.insert(client.clone(), info.role.clone());
        self.tickets = None;
        Ok(())
    }
    fn set_weight(&mut self, role: &str, weight_milli: i64) {
        self.weights.insert(role.to_string(), weight_milli);
        self.tickets = None;
    }
}
