//! The allocator's side of revocation (a child module of `drf`): after each allocation run it
//! gathers what `crate::revocation::plan` (and, when enabled, `plan_fair_share`) needs from
//! the ledger, and remembers what it asked for (in flight) until the framework gives it back,
//! so one need is asked for once. It also keeps, per framework, since when it has wanted
//! offers and been offered nothing: what "starving" means for the fair-share rule.

use super::DrfAllocator;
use crate::quota::{add_scalars, Scalars};
use crate::revocation::{
    plan, plan_fair_share, FairRole, FairShareInput, Holder, RevocationInput, RoleNeed,
};
use crate::RevocationRequest;
use agora_actors::resources::{Key, Value};
use agora_actors::{FrameworkId, Resources, Time};
use std::collections::BTreeMap;

/// Requested revocations not yet given back, per framework, with when they lapse.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    by_framework: BTreeMap<FrameworkId, (Scalars, Time)>,
}

impl InFlight {
    /// The framework gave `r` back (a task ended, an offer was rescinded or declined).
    pub(super) fn given_back(&mut self, framework_id: &FrameworkId, r: &Resources) {
        if let Some((s, _)) = self.by_framework.get_mut(framework_id) {
            add_scalars(s, &r.unreserved_view(), -1);
            if s.values().all(|m| m.0 == 0) {
                self.by_framework.remove(framework_id);
            }
        }
    }

    pub(super) fn forget(&mut self, framework_id: &FrameworkId) {
        self.by_framework.remove(framework_id);
    }

    fn expire(&mut self, now: Time) {
        self.by_framework.retain(|_, (_, until)| *until > now);
    }

    fn total(&self) -> Scalars {
        let mut out = Scalars::new();
        for (s, _) in self.by_framework.values() {
            merge(&mut out, s);
        }
        out
    }

    fn add(&mut self, framework_id: &FrameworkId, s: &Scalars, until: Time) {
        let e = self
            .by_framework
            .entry(framework_id.clone())
            .or_insert_with(|| (Scalars::new(), until));
        for (k, v) in s {
            let m = e.0.entry(k.clone()).or_default();
            m.0 = m.0.saturating_add(v.0);
        }
        e.1 = until;
    }
}

/// Per framework that wants offers (active, not suppressed): since when it has been offered
/// nothing. A framework is *starving* once that is `fair_share_wait_ms` ago. Being offered
/// anything restarts the wait (whether it then accepts or declines: a framework that declines
/// what it is offered is not short of offers), and so does not wanting offers.
#[derive(Debug, Default)]
pub(super) struct Starving {
    since: BTreeMap<FrameworkId, Time>,
}

impl Starving {
    /// An allocation run made these offers.
    pub(super) fn offered(&mut self, now: Time, allocations: &[crate::Allocation]) {
        if self.since.is_empty() {
            return; // the rule is off, or nobody waits: no lookup per offer
        }
        for a in allocations {
            if let Some(t) = self.since.get_mut(&a.framework_id) {
                *t = now;
            }
        }
    }

    /// Brings the table in line with which frameworks want offers now (bounded by them).
    fn refresh(&mut self, now: Time, wanting: &BTreeMap<FrameworkId, bool>) {
        self.since.retain(|id, _| wanting.get(id) == Some(&true));
        for (id, wants) in wanting {
            if *wants {
                self.since.entry(id.clone()).or_insert(now);
            }
        }
    }

    fn is_starving(&self, id: &FrameworkId, now: Time, wait_ms: u64) -> bool {
        self.since.get(id).is_some_and(|t| now.since(*t) >= wait_ms)
    }
}

/// Adds `from` to `into`, per resource.
fn merge(into: &mut Scalars, from: &Scalars) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_default();
        e.0 = e.0.saturating_add(v.0);
    }
}

/// The unreserved part of `r` as scalars (reserved resources are never revoked).
fn unreserved_scalars(into: &mut Scalars, r: &Resources) {
    for (k, v) in r.iter() {
        if let (None, Value::Scalar(m)) = (&k.role, v) {
            let e = into.entry(k.name.clone()).or_default();
            e.0 = e.0.saturating_add(m.0);
        }
    }
}

fn to_resources(s: &Scalars) -> Resources {
    let mut r = Resources::new();
    for (name, m) in s {
        let key = Key {
            name: name.clone(),
            role: None,
        };
        // Cannot fail: distinct names, in-range values taken from held resources.
        let _ = r.add_entry(key, Value::Scalar(*m));
    }
    r
}

impl DrfAllocator {
    /// What the ledger says about holders, roles and free resources, for `plan`.
    fn revocation_input(&self) -> RevocationInput {
        let mut input = RevocationInput {
            in_flight: self.revoking.total(),
            ..RevocationInput::default()
        };
        for agent in self.agents.values() {
            unreserved_scalars(&mut input.free, &agent.free);
        }
        for (role, q) in &self.quotas {
            let need = RoleNeed {
                guarantee: q.guarantee.clone(),
                ..RoleNeed::default()
            };
            input.roles.insert(role.clone(), need);
        }
        for (id, f) in &self.frameworks {
            let mut held = Scalars::new();
            for &slot in &f.holds {
                if let Some((_, r)) = self.held_at(id, slot) {
                    unreserved_scalars(&mut held, r);
                }
            }
            merge(input.role_usage.entry(f.role.clone()).or_default(), &held);
            if let Some(need) = input.roles.get_mut(&f.role) {
                need.waiting |= self.sorter.is_active(id);
            }
            if !held.is_empty() {
                input.holders.push(Holder {
                    framework_id: id.clone(),
                    role: f.role.clone(),
                    held,
                });
            }
        }
        for (role, need) in input.roles.iter_mut() {
            need.usage = input.role_usage.get(role).cloned().unwrap_or_default();
        }
        // Most over-share first: by the role's weighted share, then the framework's own.
        let share = |h: &Holder| {
            let role = self.sorter.role_share(&h.role).unwrap_or(0.0);
            (role, self.sorter.share(&h.framework_id).unwrap_or(0.0))
        };
        input.holders.sort_by(|a, b| {
            share(b)
                .partial_cmp(&share(a))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.framework_id.cmp(&b.framework_id))
        });
        input
    }

    /// The figures of the fair-share rule, on top of what the guarantee rule gathered.
    fn fair_share_input(&self, now: Time, base: RevocationInput) -> FairShareInput {
        let excluded = &self.config.fair_sharing_excluded;
        let mut totals = Scalars::new();
        for agent in self.agents.values() {
            add_scalars(&mut totals, &agent.total, 1);
        }
        totals.retain(|k, _| !excluded.contains(k));
        let mut roles: BTreeMap<String, FairRole> = BTreeMap::new();
        let wait_ms = self.config.fair_share_wait_ms;
        for (id, f) in &self.frameworks {
            let wants = f.active && !f.suppressed;
            let mut held = Scalars::new();
            for &slot in &f.holds {
                if let Some((_, r)) = self.held_at(id, slot) {
                    add_scalars(&mut held, r, 1);
                }
            }
            if !wants && held.is_empty() {
                continue; // not taking part in sharing
            }
            let role = roles.entry(f.role.clone()).or_insert_with(|| FairRole {
                weight: self
                    .weights
                    .get(&f.role)
                    .map_or(1.0, |w| w.0 as f64 / 1000.0),
                usage: base.role_usage.get(&f.role).cloned().unwrap_or_default(),
                guarantee: self
                    .quotas
                    .get(&f.role)
                    .map(|q| q.guarantee.clone())
                    .unwrap_or_default(),
                ..FairRole::default()
            });
            merge(&mut role.held, &held);
            // A framework no agent could ever serve (its up-front filters refuse them all)
            // would only have others' tasks killed for nothing.
            role.starving |= wants
                && self.starving.is_starving(id, now, wait_ms)
                && self
                    .agents
                    .values()
                    .any(|a| super::upfront::accepts(f, a, &a.total));
        }
        for role in roles.values_mut() {
            role.held.retain(|k, _| !excluded.contains(k));
        }
        FairShareInput {
            fraction: self.config.revoke_below_fair_share_milli as f64 / 1000.0,
            totals,
            roles,
            free: base.free,
            in_flight: base.in_flight,
            holders: base.holders,
        }
    }

    /// Decides revocations after an allocation run (see `crate::revocation`): first for
    /// unmet guarantees, then (if enabled) for starving roles far below their fair share.
    pub(super) fn plan_revocations(&mut self, now: Time) -> Vec<RevocationRequest> {
        let retry_ms = self.config.revocation_retry_ms;
        let fair_share = self.config.revoke_below_fair_share_milli > 0;
        if retry_ms == 0 || (self.quotas.is_empty() && !fair_share) {
            return Vec::new();
        }
        self.revoking.expire(now);
        let input = self.revocation_input();
        let mut decided = if self.quotas.is_empty() {
            Vec::new()
        } else {
            plan(&input)
        };
        if fair_share {
            let wanting = self
                .frameworks
                .iter()
                .map(|(id, f)| (id.clone(), f.active && !f.suppressed))
                .collect();
            self.starving.refresh(now, &wanting);
            let mut input = self.fair_share_input(now, input);
            // What the guarantee rule just asked for is coming too.
            for r in &decided {
                merge(&mut input.in_flight, &r.resources);
            }
            decided.extend(plan_fair_share(&input));
        }
        let until = now.plus_ms(retry_ms);
        decided
            .into_iter()
            .map(|r| {
                self.revoking.add(&r.framework_id, &r.resources, until);
                tracing::info!(framework = %r.framework_id, for_role = %r.for_role,
                    resources = %to_resources(&r.resources), "allocator: asking to revoke");
                RevocationRequest {
                    framework_id: r.framework_id,
                    resources: to_resources(&r.resources),
                    for_role: r.for_role,
                }
            })
            .collect()
    }
}
