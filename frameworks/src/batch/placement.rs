//! Where the batch framework's pending tasks go: locality preferences with delay scheduling,
//! and gang (rigid) placement that holds offers until every pending task fits at once.

use super::{BatchConfig, BatchFramework};
use crate::fit::take_resources;
use crate::FrameworkError;
use agora_actors::sdk::{LocalityChoice, SchedulerCtx};
#[cfg(test)]
use agora_actors::OfferId as OfferIdT;
use agora_actors::{AgentId, Filters, Offer, OfferId, Operation, Time};
use std::collections::BTreeMap;
use tracing::debug;

/// Most preferred hosts per task (a block has a few replicas, not hundreds).
pub const MAX_PREFERRED_HOSTS: usize = 64;

pub(super) fn validate(c: &BatchConfig) -> Result<(), FrameworkError> {
    if !c.task_commands.is_empty() && c.task_commands.len() != c.tasks {
        let why = format!("{} commands for {} tasks", c.task_commands.len(), c.tasks);
        return Err(FrameworkError::config("task_commands", why));
    }
    if !c.preferred_hosts.is_empty() {
        if c.preferred_hosts.len() != c.tasks {
            let why = format!("{} entries for {} tasks", c.preferred_hosts.len(), c.tasks);
            return Err(FrameworkError::config("preferred_hosts", why));
        }
        if c.preferred_hosts
            .iter()
            .any(|h| h.len() > MAX_PREFERRED_HOSTS)
        {
            let why = format!("at most {MAX_PREFERRED_HOSTS} hosts per task");
            return Err(FrameworkError::config("preferred_hosts", why));
        }
    }
    Ok(())
}

impl BatchFramework {
    /// Marks a task pending (indexed by its preferred hosts).
    pub(super) fn pend(&mut self, index: usize) {
        self.pending.insert(index);
        if let Some(hosts) = self.config.preferred_hosts.get(index) {
            for h in hosts {
                self.pending_by_host
                    .entry(h.clone())
                    .or_default()
                    .insert(index);
            }
        }
    }

    pub(super) fn unpend(&mut self, index: usize) {
        self.pending.remove(&index);
        if let Some(hosts) = self.config.preferred_hosts.get(index) {
            for h in hosts {
                if let Some(set) = self.pending_by_host.get_mut(h) {
                    set.remove(&index);
                    if set.is_empty() {
                        self.pending_by_host.remove(h);
                    }
                }
            }
        }
    }

    /// The next pending task to put on an offer from `host`: a local one first; a non-local
    /// one only if delay scheduling allows it now; `None` to stop filling this offer.
    pub(super) fn next_for(&mut self, now: Time, host: &str) -> Option<usize> {
        if self.config.preferred_hosts.is_empty() {
            return self.pending.first().copied();
        }
        let local = self
            .pending_by_host
            .get(host)
            .and_then(|s| s.first().copied());
        match self.delay.choose(now, local.is_some()) {
            LocalityChoice::Local => local,
            LocalityChoice::NonLocal => self.pending.first().copied(),
            LocalityChoice::Skip => None,
        }
    }

    /// Decline filter for an offer not used: while delay scheduling waits, only until the
    /// wait ends (so the agent comes back when the job may take it), else the configured one.
    pub(super) fn refuse_seconds_after_skip(&mut self, now: Time) -> f64 {
        let full = self.config.refuse_seconds;
        if !self.wants_offers() {
            return full;
        }
        match self.delay.next_chance(now) {
            Some(at) => {
                self.progress.offers_skipped += 1;
                (at.since(now) as f64 / 1000.0).clamp(0.1, full.max(0.1))
            }
            None => full,
        }
    }

    /// How many more tasks `offer` could take.
    fn slots_in(&self, offer: &Offer) -> usize {
        let mut left = offer.resources.clone();
        if self.needs_executor_charge(offer) {
            let exec = self.executor.as_ref().map(|e| e.resources.clone());
            let taken = exec.and_then(|r| take_resources(&left, &r, "*"));
            match taken.and_then(|t| left.checked_sub(&t).ok()) {
                Some(rest) => left = rest,
                None => return 0,
            }
        }
        let mut n = 0;
        while let Some(t) = take_resources(&left, &self.config.task_resources, &self.config.role) {
            match left.checked_sub(&t) {
                Ok(rest) if n < self.pending.len() => {
                    left = rest;
                    n += 1;
                }
                _ => break,
            }
        }
        n
    }

    /// A gang job: holds `offers` with the ones it already holds; once all pending tasks fit
    /// into what it holds, launches them together and declines the rest. Offers held on one
    /// agent count together (and are accepted together): resources freed on an agent at
    /// different times come as separate offers, and a task may need more than any one of them.
    pub(super) fn gang_offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        for offer in offers {
            self.progress.offers_received += 1;
            self.held.insert(offer.id.clone(), offer);
        }
        let per_agent = self.held_per_agent();
        let fits: usize = per_agent.iter().map(|(_, o)| self.slots_in(o)).sum();
        if fits < self.pending.len() {
            debug!(
                held = self.held.len(),
                fits,
                pending = self.pending.len(),
                "gang: holding"
            );
            return;
        }
        let filters = Filters {
            refuse_seconds: self.config.refuse_seconds,
        };
        self.held.clear();
        for (ids, offer) in per_agent {
            let tasks = if self.pending.is_empty() {
                Vec::new()
            } else {
                self.place(ctx.now, &offer)
            };
            if tasks.is_empty() {
                self.progress.offers_declined += ids.len() as u64;
                ctx.decline(ids, self.config.refuse_seconds);
            } else {
                let ops = vec![Operation::Launch { tasks }];
                ctx.accept(ids, ops, filters);
            }
        }
    }

    /// The held offers merged per agent: (their ids, one offer with their resources summed).
    fn held_per_agent(&self) -> Vec<(Vec<OfferId>, Offer)> {
        let mut per: BTreeMap<&AgentId, (Vec<OfferId>, Offer)> = BTreeMap::new();
        let mut apart = Vec::new();
        for (id, o) in &self.held {
            let Some((ids, merged)) = per.get_mut(&o.agent_id) else {
                per.insert(&o.agent_id, (vec![id.clone()], o.clone()));
                continue;
            };
            match merged.resources.checked_add(&o.resources) {
                Ok(sum) => {
                    ids.push(id.clone());
                    merged.resources = sum;
                }
                // Not expected of offers the master made; such an offer counts on its own.
                Err(e) => {
                    debug!(offer = %id, error = %e, "gang: offer not merged");
                    apart.push((vec![id.clone()], o.clone()));
                }
            }
        }
        per.into_values().chain(apart).collect()
    }

    /// Gives back every held offer (the job stopped wanting them).
    pub(super) fn release_held(&mut self, ctx: &mut SchedulerCtx) {
        for (id, _) in std::mem::take(&mut self.held) {
            ctx.decline(vec![id], self.config.refuse_seconds);
        }
    }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
