//! Revocation: deciding what to take back from whom when a role below its quota guarantee is
//! waiting and nothing free can serve it. Pure: the allocator gathers the figures, this module
//! decides, the master picks the tasks (newest first), warns their framework and kills them
//! after the grace period.
//!
//! Rules:
//! - only roles with a guarantee, below it, and *waiting* (a framework that is active and not
//!   suppressed) ask; what the cluster has free and what is already being revoked (in flight)
//!   are subtracted from their need first, so a need is asked for once;
//! - a victim role gives at most what it holds *above its own guarantee* (guaranteed
//!   allocations are never revoked), and never from a role that is itself in need;
//! - reserved resources are never revoked: callers pass only unreserved holdings;
//! - victims are taken in the order given (the allocator passes the most over-share first).

use crate::quota::Scalars;
use agora_actors::{FrameworkId, Milli};
use std::collections::BTreeMap;

/// A role with a guarantee, as the allocator sees it after an allocation run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleNeed {
    pub guarantee: Scalars,
    /// Unreserved resources its frameworks hold (offered or used).
    pub usage: Scalars,
    /// It has a framework that wants offers (active, not suppressed).
    pub waiting: bool,
}

/// A framework that may have to give something back.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub framework_id: FrameworkId,
    pub role: String,
    /// Unreserved resources it holds.
    pub held: Scalars,
}

/// Everything one decision needs.
#[derive(Debug, Clone, Default)]
pub struct RevocationInput {
    /// Roles with a quota (guarantee possibly empty).
    pub roles: BTreeMap<String, RoleNeed>,
    /// Role -> what it holds in total (unreserved), for roles without quota too.
    pub role_usage: BTreeMap<String, Scalars>,
    /// Unreserved free resources of the cluster.
    pub free: Scalars,
    /// Already asked for and not yet given back.
    pub in_flight: Scalars,
    /// Candidate victims, most over-share first.
    pub holders: Vec<Holder>,
}

/// One decision: take `resources` from `framework_id` for `for_role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoke {
    pub framework_id: FrameworkId,
    pub resources: Scalars,
    pub for_role: String,
}

/// `a - b` per resource, clamped at zero; zero entries dropped.
fn minus(a: &Scalars, b: &Scalars) -> Scalars {
    a.iter()
        .filter_map(|(k, v)| {
            let left = v.0 - b.get(k).map(|m| m.0).unwrap_or(0);
            (left > 0).then(|| (k.clone(), Milli(left)))
        })
        .collect()
}

/// Per resource of `want`: the smaller of `want` and `have`.
fn meet(want: &Scalars, have: &Scalars) -> Scalars {
    want.iter()
        .filter_map(|(k, v)| {
            let m = v.0.min(have.get(k).map(|h| h.0).unwrap_or(0));
            (m > 0).then(|| (k.clone(), Milli(m)))
        })
        .collect()
}

/// Unmet guarantees of waiting roles, after free and in-flight resources are counted.
fn needs(input: &RevocationInput) -> Vec<(String, Scalars)> {
    let mut spare = input.free.clone();
    for (k, v) in &input.in_flight {
        let e = spare.entry(k.clone()).or_insert(Milli::ZERO);
        *e = Milli(e.0.saturating_add(v.0));
    }
    let mut out = Vec::new();
    for (role, r) in &input.roles {
        if !r.waiting {
            continue;
        }
        let deficit = minus(&r.guarantee, &r.usage);
        let covered = meet(&deficit, &spare);
        spare = minus(&spare, &covered);
        let need = minus(&deficit, &covered);
        if !need.is_empty() {
            out.push((role.clone(), need));
        }
    }
    out
}

/// Decides what to revoke. Deterministic: roles in name order, holders in the given order.
pub fn plan(input: &RevocationInput) -> Vec<Revoke> {
    let needs = needs(input);
    if needs.is_empty() {
        return Vec::new();
    }
    let needy: std::collections::BTreeSet<String> = needs.iter().map(|(r, _)| r.clone()).collect();
    // What each role may still lose: its holdings above its guarantee.
    let mut room: BTreeMap<&str, Scalars> = BTreeMap::new();
    for (role, usage) in &input.role_usage {
        let guarantee = input.roles.get(role).map(|r| r.guarantee.clone());
        room.insert(role, minus(usage, &guarantee.unwrap_or_default()));
    }
    let mut left: Vec<Scalars> = input.holders.iter().map(|h| h.held.clone()).collect();
    let mut out = Vec::new();
    for (role, mut need) in needs {
        for (i, h) in input.holders.iter().enumerate() {
            if need.is_empty() {
                break;
            }
            if needy.contains(&h.role) || h.role == role {
                continue;
            }
            let Some(role_room) = room.get_mut(h.role.as_str()) else {
                continue;
            };
            let take = meet(&meet(&need, &left[i]), role_room);
            if take.is_empty() {
                continue;
            }
            need = minus(&need, &take);
            left[i] = minus(&left[i], &take);
            *role_room = minus(role_room, &take);
            out.push(Revoke {
                framework_id: h.framework_id.clone(),
                resources: take,
                for_role: role.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(pairs: &[(&str, f64)]) -> Scalars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Milli((v * 1000.0) as i64)))
            .collect()
    }

    fn fw(n: &str) -> FrameworkId {
        FrameworkId::new(n).unwrap()
    }

    fn holder(n: &str, role: &str, held: Scalars) -> Holder {
        Holder {
            framework_id: fw(n),
            role: role.into(),
            held,
        }
    }

    /// prod is guaranteed 2 cpus, holds none and waits; batch holds all 4 cpus of the cluster
    /// and has no guarantee: 2 cpus are taken from batch, nothing else.
    fn starving_prod() -> RevocationInput {
        let mut roles = BTreeMap::new();
        roles.insert(
            "prod".to_string(),
            RoleNeed {
                guarantee: s(&[("cpus", 2.0)]),
                usage: Scalars::new(),
                waiting: true,
            },
        );
        let mut role_usage = BTreeMap::new();
        role_usage.insert("batch".to_string(), s(&[("cpus", 4.0), ("mem", 1024.0)]));
        RevocationInput {
            roles,
            role_usage,
            free: s(&[("mem", 3072.0)]),
            in_flight: Scalars::new(),
            holders: vec![holder("b1", "batch", s(&[("cpus", 4.0), ("mem", 1024.0)]))],
        }
    }

    #[test]
    fn a_waiting_guaranteed_role_takes_from_the_over_share_role() {
        let got = plan(&starving_prod());
        assert_eq!(
            got,
            vec![Revoke {
                framework_id: fw("b1"),
                resources: s(&[("cpus", 2.0)]),
                for_role: "prod".into()
            }]
        );
    }

    #[test]
    fn nothing_is_revoked_when_not_waiting_or_free_or_in_flight_covers_it() {
        let mut idle = starving_prod();
        idle.roles.get_mut("prod").unwrap().waiting = false;
        assert!(plan(&idle).is_empty());
        let mut free = starving_prod();
        free.free = s(&[("cpus", 2.0)]);
        assert!(plan(&free).is_empty());
        // Half is already being revoked: only the other half is asked for.
        let mut half = starving_prod();
        half.in_flight = s(&[("cpus", 1.0)]);
        assert_eq!(plan(&half)[0].resources, s(&[("cpus", 1.0)]));
        let mut met = starving_prod();
        met.roles.get_mut("prod").unwrap().usage = s(&[("cpus", 2.0)]);
        assert!(plan(&met).is_empty());
    }

    #[test]
    fn guaranteed_allocations_are_never_revoked() {
        // batch has a guarantee of 3 of its 4 cpus: only 1 can go, though prod needs 2.
        let mut input = starving_prod();
        input.roles.insert(
            "batch".to_string(),
            RoleNeed {
                guarantee: s(&[("cpus", 3.0)]),
                usage: s(&[("cpus", 4.0)]),
                waiting: false,
            },
        );
        let got = plan(&input);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].resources, s(&[("cpus", 1.0)]));
        // A victim that is itself below its guarantee and waiting gives nothing.
        let mut both = starving_prod();
        both.roles.insert(
            "batch".to_string(),
            RoleNeed {
                guarantee: s(&[("cpus", 8.0)]),
                usage: s(&[("cpus", 4.0)]),
                waiting: true,
            },
        );
        assert!(plan(&both).is_empty());
    }

    #[test]
    fn victims_are_taken_in_order_and_each_gives_at_most_what_it_holds() {
        let mut input = starving_prod();
        input.roles.get_mut("prod").unwrap().guarantee = s(&[("cpus", 3.0)]);
        input.role_usage.insert("web".into(), s(&[("cpus", 2.0)]));
        input.role_usage.insert("batch".into(), s(&[("cpus", 2.0)]));
        input.holders = vec![
            holder("w1", "web", s(&[("cpus", 2.0)])),
            holder("b1", "batch", s(&[("cpus", 2.0)])),
        ];
        let got = plan(&input);
        let pairs: Vec<(String, Scalars)> = got
            .iter()
            .map(|r| (r.framework_id.to_string(), r.resources.clone()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("w1".to_string(), s(&[("cpus", 2.0)])),
                ("b1".to_string(), s(&[("cpus", 1.0)]))
            ]
        );
    }
}
