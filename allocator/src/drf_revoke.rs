//! The allocator's side of revocation (a child module of `drf`): after each allocation run it
//! gathers what `crate::revocation::plan` needs from the ledger, and remembers what it asked
//! for (in flight) until the framework gives it back, so one need is asked for once.

use super::DrfAllocator;
use crate::quota::{add_scalars, Scalars};
use crate::revocation::{plan, Holder, RevocationInput, RoleNeed};
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
            for (k, v) in s {
                let e = out.entry(k.clone()).or_default();
                e.0 = e.0.saturating_add(v.0);
            }
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
            let usage = input.role_usage.entry(f.role.clone()).or_default();
            for (k, v) in &held {
                let e = usage.entry(k.clone()).or_default();
                e.0 = e.0.saturating_add(v.0);
            }
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

    /// Decides revocations after an allocation run (see `crate::revocation`).
    pub(super) fn plan_revocations(&mut self, now: Time) -> Vec<RevocationRequest> {
        let retry_ms = self.config.revocation_retry_ms;
        if retry_ms == 0 || self.quotas.is_empty() {
            return Vec::new();
        }
        self.revoking.expire(now);
        let decided = plan(&self.revocation_input());
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
