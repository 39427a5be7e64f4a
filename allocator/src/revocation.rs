//! Revocation: deciding what to take back from whom when a role below its quota guarantee is
//! waiting and nothing free can serve it — or, when enabled, a role far below its fair share
//! is starving (see [`plan_fair_share`]). Pure: the allocator gathers the figures, this module
//! decides, the master picks the tasks (newest first), warns their framework and kills them
//! after the grace period.
//!
//! Rules of the guarantee rule ([`plan`]):
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

/// What is left of each role's deficit once free and in-flight resources are counted (in
/// the order given, so a need is covered once).
fn after_spare(
    deficits: Vec<(String, Scalars)>,
    free: &Scalars,
    in_flight: &Scalars,
) -> Vec<(String, Scalars)> {
    let mut spare = free.clone();
    for (k, v) in in_flight {
        let e = spare.entry(k.clone()).or_insert(Milli::ZERO);
        *e = Milli(e.0.saturating_add(v.0));
    }
    let mut out = Vec::new();
    for (role, deficit) in deficits {
        let covered = meet(&deficit, &spare);
        spare = minus(&spare, &covered);
        let need = minus(&deficit, &covered);
        if !need.is_empty() {
            out.push((role, need));
        }
    }
    out
}

/// Unmet guarantees of waiting roles, after free and in-flight resources are counted.
fn needs(input: &RevocationInput) -> Vec<(String, Scalars)> {
    let deficits = input
        .roles
        .iter()
        .filter(|(_, r)| r.waiting)
        .map(|(role, r)| (role.clone(), minus(&r.guarantee, &r.usage)))
        .collect();
    after_spare(deficits, &input.free, &input.in_flight)
}

/// Takes each need from the holders in order, each giving at most what it holds and its role
/// at most its `room`; holders of needy roles give nothing.
fn take_from_holders(
    needs: Vec<(String, Scalars)>,
    holders: &[Holder],
    mut room: BTreeMap<String, Scalars>,
) -> Vec<Revoke> {
    let needy: std::collections::BTreeSet<String> = needs.iter().map(|(r, _)| r.clone()).collect();
    let mut left: Vec<Scalars> = holders.iter().map(|h| h.held.clone()).collect();
    let mut out = Vec::new();
    for (role, mut need) in needs {
        for (i, h) in holders.iter().enumerate() {
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

/// Decides what to revoke. Deterministic: roles in name order, holders in the given order.
pub fn plan(input: &RevocationInput) -> Vec<Revoke> {
    let needs = needs(input);
    if needs.is_empty() {
        return Vec::new();
    }
    // What each role may still lose: its holdings above its guarantee.
    let mut room: BTreeMap<String, Scalars> = BTreeMap::new();
    for (role, usage) in &input.role_usage {
        let guarantee = input.roles.get(role).map(|r| r.guarantee.clone());
        room.insert(role.clone(), minus(usage, &guarantee.unwrap_or_default()));
    }
    take_from_holders(needs, &input.holders, room)
}

// ---- the fair-share rule ----------------------------------------------------------------------

/// A role taking part in fair sharing (it has a framework that wants offers or holds some).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FairRole {
    /// Its weight (1.0 unless the operator set one).
    pub weight: f64,
    /// Everything it holds, reservations included: what its dominant share is computed from.
    pub held: Scalars,
    /// Its unreserved holdings: the most it can give.
    pub usage: Scalars,
    /// Its quota guarantee (empty without one): never revoked.
    pub guarantee: Scalars,
    /// One of its frameworks is *starving*: it wants offers (active, not suppressed) and the
    /// allocator has offered it nothing for the configured wait.
    pub starving: bool,
}

/// Everything one fair-share decision needs.
#[derive(Debug, Clone, Default)]
pub struct FairShareInput {
    /// A starving role is *far below* its fair share when its dominant share is below
    /// `fraction` x its fair share. In (0, 1].
    pub fraction: f64,
    /// Cluster totals of the resources fair sharing counts (excluded ones left out).
    pub totals: Scalars,
    pub roles: BTreeMap<String, FairRole>,
    /// Unreserved free resources of the cluster.
    pub free: Scalars,
    /// Already asked for (by either rule) and not yet given back.
    pub in_flight: Scalars,
    /// Candidate victims, most over-share first.
    pub holders: Vec<Holder>,
}

/// `part`'s largest fraction of any of `totals` (0 for an empty cluster).
pub fn dominant_share(part: &Scalars, totals: &Scalars) -> f64 {
    totals
        .iter()
        .filter(|(_, t)| t.0 > 0)
        .map(|(k, t)| part.get(k).map(|m| m.0).unwrap_or(0) as f64 / t.0 as f64)
        .fold(0.0, f64::max)
}

/// `share` x `totals`, per resource, rounded down (`up`: rounded up).
fn portion(totals: &Scalars, share: f64, up: bool) -> Scalars {
    totals
        .iter()
        .map(|(k, t)| {
            let x = t.0 as f64 * share;
            let m = if up { x.ceil() } else { x.floor() };
            (k.clone(), Milli(m as i64))
        })
        .collect()
}

/// Per resource: the larger of `a` and `b`.
fn join(a: &Scalars, b: &Scalars) -> Scalars {
    let mut out = a.clone();
    for (k, v) in b {
        let e = out.entry(k.clone()).or_insert(Milli::ZERO);
        e.0 = e.0.max(v.0);
    }
    out
}

/// Decides revocations for starving roles far below their fair share.
///
/// A role's *fair share* is its weight over the sum of the weights of the roles taking part
/// (those in `roles`); its *dominant share* is its largest fraction of any total. A starving
/// role whose dominant share is below `fraction` x its fair share *needs*, per resource, what
/// would bring it up to its fair share of that resource (less what is free or already being
/// revoked). Victims are roles whose dominant share is *above* their fair share; each gives at
/// most what it holds (unreserved) beyond the larger of its fair share and its guarantee, so no
/// victim is pushed below its fair share and guaranteed allocations are never revoked.
/// Deterministic: needy roles in name order, holders in the given order.
pub fn plan_fair_share(input: &FairShareInput) -> Vec<Revoke> {
    let total_weight: f64 = input.roles.values().map(|r| r.weight.max(0.0)).sum();
    if input.fraction.is_nan() || input.fraction <= 0.0 || total_weight <= 0.0 {
        return Vec::new();
    }
    let mut deficits = Vec::new();
    let mut room = BTreeMap::new();
    for (name, r) in &input.roles {
        let fair = r.weight.max(0.0) / total_weight;
        let share = dominant_share(&r.held, &input.totals);
        if r.starving && share < input.fraction * fair {
            deficits.push((
                name.clone(),
                minus(&portion(&input.totals, fair, false), &r.held),
            ));
        } else if share > fair {
            let keep = join(&portion(&input.totals, fair, true), &r.guarantee);
            room.insert(name.clone(), minus(&r.usage, &keep));
        }
    }
    let needs = after_spare(deficits, &input.free, &input.in_flight);
    if needs.is_empty() {
        return Vec::new();
    }
    take_from_holders(needs, &input.holders, room)
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

    // ---- fair-share rule ----------------------------------------------------------------

    fn role(weight: f64, held: Scalars, starving: bool) -> FairRole {
        FairRole {
            weight,
            usage: held.clone(),
            held,
            guarantee: Scalars::new(),
            starving,
        }
    }

    /// A 12 cpu / 12288 MB cluster. Weights: batch 1, web 1, ml 2 (sum 4), so the fair shares
    /// are batch 1/4, web 1/4, ml 1/2.
    /// - batch holds cpus 10, mem 4096: dominant share max(10/12, 4096/12288) = 0.833 > 1/4,
    ///   so it is over its fair share;
    /// - web holds nothing and is starving: share 0 < 0.5 x 1/4 = 0.125, far below;
    /// - ml holds cpus 2, mem 2048: share 1/6 < 1/2, under its share but not starving.
    ///
    /// Free: cpus 0, mem 12288 - 4096 - 2048 = 6144.
    fn three_roles() -> FairShareInput {
        let mut roles = BTreeMap::new();
        roles.insert(
            "batch".to_string(),
            role(1.0, s(&[("cpus", 10.0), ("mem", 4096.0)]), false),
        );
        roles.insert("web".to_string(), role(1.0, Scalars::new(), true));
        roles.insert(
            "ml".to_string(),
            role(2.0, s(&[("cpus", 2.0), ("mem", 2048.0)]), false),
        );
        FairShareInput {
            fraction: 0.5,
            totals: s(&[("cpus", 12.0), ("mem", 12288.0)]),
            roles,
            free: s(&[("mem", 6144.0)]),
            in_flight: Scalars::new(),
            holders: vec![
                holder("b1", "batch", s(&[("cpus", 10.0), ("mem", 4096.0)])),
                holder("m1", "ml", s(&[("cpus", 2.0), ("mem", 2048.0)])),
            ],
        }
    }

    #[test]
    fn a_starving_role_far_below_its_fair_share_takes_from_the_over_share_role() {
        // web's fair share of each resource: 1/4 x (12 cpus, 12288 MB) = (3 cpus, 3072 MB).
        // The free 6144 MB cover the memory; 3 cpus must come back. batch may give what it
        // holds above its own fair share (3 cpus, 3072 MB): up to 7 cpus. ml is below its
        // share and gives nothing.
        assert_eq!(
            plan_fair_share(&three_roles()),
            vec![Revoke {
                framework_id: fw("b1"),
                resources: s(&[("cpus", 3.0)]),
                for_role: "web".into()
            }]
        );
    }

    #[test]
    fn no_fair_share_revocation_unless_starving_far_below_and_uncovered() {
        let mut not_starving = three_roles();
        not_starving.roles.get_mut("web").unwrap().starving = false;
        assert!(plan_fair_share(&not_starving).is_empty());
        // web holding 2 cpus has share 2/12 = 0.167, not below 0.5 x 1/4 = 0.125.
        let mut near = three_roles();
        near.roles.get_mut("web").unwrap().held = s(&[("cpus", 2.0)]);
        assert!(plan_fair_share(&near).is_empty());
        // ... but with fraction 1 it is far enough below (0.167 < 0.25): it is brought up to
        // its 3 cpus, so 1 more is asked for.
        near.fraction = 1.0;
        assert_eq!(plan_fair_share(&near)[0].resources, s(&[("cpus", 1.0)]));
        let mut off = three_roles();
        off.fraction = 0.0;
        assert!(plan_fair_share(&off).is_empty());
        // Free and in-flight resources are counted before anything is taken.
        let mut coming = three_roles();
        coming.in_flight = s(&[("cpus", 2.0)]);
        assert_eq!(plan_fair_share(&coming)[0].resources, s(&[("cpus", 1.0)]));
        coming.free.insert("cpus".into(), Milli(1000));
        assert!(plan_fair_share(&coming).is_empty());
    }

    #[test]
    fn fair_share_revocation_never_takes_guaranteed_allocations_or_goes_below_fair_share() {
        // batch is guaranteed 9 cpus: it keeps max(3, 9) = 9 of its 10, so only 1 goes.
        let mut guaranteed = three_roles();
        guaranteed.roles.get_mut("batch").unwrap().guarantee = s(&[("cpus", 9.0)]);
        let got = plan_fair_share(&guaranteed);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].resources, s(&[("cpus", 1.0)]));
        // Three roles of weight 1 on 12 cpus: fair share 4 cpus each. web needs 4; batch holds
        // 7 (gives 3), ml holds 5 (gives 1): both end exactly at their fair share.
        let mut input = three_roles();
        input.free = Scalars::new();
        input.totals = s(&[("cpus", 12.0)]);
        input
            .roles
            .insert("batch".into(), role(1.0, s(&[("cpus", 7.0)]), false));
        input
            .roles
            .insert("ml".into(), role(1.0, s(&[("cpus", 5.0)]), false));
        input.holders = vec![
            holder("b1", "batch", s(&[("cpus", 7.0)])),
            holder("m1", "ml", s(&[("cpus", 5.0)])),
        ];
        let got: Vec<(String, Scalars)> = plan_fair_share(&input)
            .into_iter()
            .map(|r| (r.framework_id.to_string(), r.resources))
            .collect();
        assert_eq!(
            got,
            vec![
                ("b1".to_string(), s(&[("cpus", 3.0)])),
                ("m1".to_string(), s(&[("cpus", 1.0)]))
            ]
        );
        // Reserved holdings count towards the share but are never given: a victim whose
        // holdings are all reserved gives nothing.
        let mut reserved = three_roles();
        reserved.roles.get_mut("batch").unwrap().usage = Scalars::new();
        assert!(plan_fair_share(&reserved).is_empty());
    }
}
