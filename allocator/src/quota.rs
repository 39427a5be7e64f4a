//! Quota: per role, a **guarantee** (resources the role gets when it asks, if the cluster can
//! hold them) and a **limit** (never more than this, offered or used). Scalars only.
//!
//! Enforcement is per allocation cycle (`QuotaCycle`): at the start of a cycle the allocator
//! computes, for roles with quota, what they hold, and what the cluster has free. Then:
//! - roles below their guarantee are served first (a guarantee pass before the fair pass);
//! - no offer takes a role above its limit;
//! - offers to anyone else keep enough free resources back (**headroom**) to cover every
//!   other role's unmet guarantee.
//!
//! Roles without quota cost nothing: with no quota set the cycle state is not even built.

use crate::roles::{validate_role, RoleError};
use agora_actors::resources::Value;
use agora_actors::{Milli, Resources};
use std::collections::BTreeMap;

/// Scalar sums by resource name.
pub type Scalars = BTreeMap<String, Milli>;

/// A role's quota. `guarantee` ≤ `limit` on every resource both name.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Quota {
    pub guarantee: Scalars,
    /// `None`: no limit.
    pub limit: Option<Scalars>,
}

impl Quota {
    /// Builds and checks a quota from resource texts (`cpus:4;mem:4096`).
    pub fn parse(role: &str, guarantee: &str, limit: Option<&str>) -> Result<Quota, RoleError> {
        validate_role(role)?;
        let bad = |why: String| RoleError::Quota {
            role: role.to_string(),
            why,
        };
        let scalars = |text: &str| -> Result<Scalars, RoleError> {
            if text.trim().is_empty() {
                return Ok(Scalars::new());
            }
            let r = Resources::parse(text).map_err(|e| bad(e.to_string()))?;
            to_scalars(&r).map_err(bad)
        };
        let q = Quota {
            guarantee: scalars(guarantee)?,
            limit: limit.map(scalars).transpose()?,
        };
        q.validate(role)?;
        Ok(q)
    }

    pub fn validate(&self, role: &str) -> Result<(), RoleError> {
        validate_role(role)?;
        if let Some(limit) = &self.limit {
            for (name, g) in &self.guarantee {
                let l = limit.get(name).copied();
                if l.is_some_and(|l| l < *g) {
                    return Err(RoleError::Quota {
                        role: role.to_string(),
                        why: format!("guarantee of {name} is above its limit"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Scalars of `r` (reservations folded in); ranges and sets are refused.
fn to_scalars(r: &Resources) -> Result<Scalars, String> {
    let mut out = Scalars::new();
    for (k, v) in r.iter() {
        match v {
            Value::Scalar(m) => {
                let e = out.entry(k.name.clone()).or_insert(Milli::ZERO);
                *e = Milli(e.0.saturating_add(m.0));
            }
            _ => {
                return Err(format!(
                    "{} is not a scalar; quota holds scalars only",
                    k.name
                ))
            }
        }
    }
    Ok(out)
}

/// Adds (`sign` 1) or removes (-1) the scalars of `r` into `into` (clamped at zero).
pub fn add_scalars(into: &mut Scalars, r: &Resources, sign: i64) {
    for (k, v) in r.iter() {
        if let Value::Scalar(m) = v {
            let e = into.entry(k.name.clone()).or_insert(Milli::ZERO);
            *e = Milli(e.0.saturating_add(sign * m.0).max(0));
        }
    }
}

/// The part of `r` not reserved for `role` itself: the role's own reservations already count
/// as its usage whether offered or not, so offering them adds nothing.
fn not_reserved_for(role: &str, r: &Resources) -> Resources {
    if !r.iter().any(|(k, _)| k.role.as_deref() == Some(role)) {
        return r.clone();
    }
    let mut out = Resources::new();
    for (k, v) in r.iter().filter(|(k, _)| k.role.as_deref() != Some(role)) {
        // Cannot fail: a subset of a well-formed bag.
        let _ = out.add_entry(k.clone(), v.clone());
    }
    out
}

/// `max(0, guarantee - usage)` per resource.
fn deficit(q: &Quota, usage: Option<&Scalars>) -> Scalars {
    q.guarantee
        .iter()
        .filter_map(|(name, g)| {
            let used = usage
                .and_then(|u| u.get(name))
                .copied()
                .unwrap_or(Milli::ZERO);
            (g.0 > used.0).then(|| (name.clone(), Milli(g.0 - used.0)))
        })
        .collect()
}

/// Quota bookkeeping for one allocation cycle.
#[derive(Debug)]
pub struct QuotaCycle {
    quotas: BTreeMap<String, Quota>,
    /// What each role with quota holds (offered or in use).
    usage: BTreeMap<String, Scalars>,
    /// Free resources of the whole cluster.
    free: Scalars,
    /// Unmet guarantee per role (roles with none left out).
    deficits: BTreeMap<String, Scalars>,
    /// Sum of `deficits`.
    required: Scalars,
}

impl QuotaCycle {
    pub fn new(
        quotas: BTreeMap<String, Quota>,
        usage: BTreeMap<String, Scalars>,
        free: Scalars,
    ) -> Self {
        let mut c = QuotaCycle {
            quotas,
            usage,
            free,
            deficits: BTreeMap::new(),
            required: Scalars::new(),
        };
        let roles: Vec<String> = c.quotas.keys().cloned().collect();
        for role in roles {
            c.refresh(&role);
        }
        c
    }

    /// True if some role is still below its guarantee.
    pub fn any_deficit(&self) -> bool {
        !self.deficits.is_empty()
    }

    pub fn has_deficit(&self, role: &str) -> bool {
        self.deficits.contains_key(role)
    }

    /// May `role` be offered `candidate`? In the guarantee pass only roles below their
    /// guarantee qualify; always the limit holds, and the headroom other roles' guarantees
    /// need stays free.
    pub fn allows(&self, role: &str, candidate: &Resources, guarantee_pass: bool) -> bool {
        if guarantee_pass && !self.has_deficit(role) {
            return false;
        }
        let used = self.usage.get(role);
        if let Some(limit) = self.quotas.get(role).and_then(|q| q.limit.as_ref()) {
            let adds = not_reserved_for(role, candidate);
            for (name, l) in limit {
                let have = used
                    .and_then(|u| u.get(name))
                    .copied()
                    .unwrap_or(Milli::ZERO);
                if have.0.saturating_add(adds.scalar_total(name).0) > l.0 {
                    return false;
                }
            }
        }
        // After the offer, what is free must still cover every *other* role's unmet
        // guarantee (this role's own deficit is its own to spend).
        let own = self.deficits.get(role);
        for (name, need) in &self.required {
            let others = need.0 - own.and_then(|d| d.get(name)).map_or(0, |m| m.0);
            let free = self.free.get(name).map_or(0, |m| m.0);
            if others > 0 && free - candidate.scalar_total(name).0 < others {
                return false;
            }
        }
        true
    }

    /// Records an offer of `r` to `role`.
    pub fn allocated(&mut self, role: &str, r: &Resources) {
        add_scalars(&mut self.free, r, -1);
        if self.quotas.contains_key(role) {
            let adds = not_reserved_for(role, r);
            add_scalars(self.usage.entry(role.to_string()).or_default(), &adds, 1);
            self.refresh(role);
        }
    }

    fn refresh(&mut self, role: &str) {
        let Some(q) = self.quotas.get(role) else {
            return;
        };
        let new = deficit(q, self.usage.get(role));
        let old = self.deficits.remove(role).unwrap_or_default();
        for (name, m) in &old {
            let e = self.required.entry(name.clone()).or_insert(Milli::ZERO);
            *e = Milli((e.0 - m.0).max(0));
        }
        for (name, m) in &new {
            let e = self.required.entry(name.clone()).or_insert(Milli::ZERO);
            *e = Milli(e.0 + m.0);
        }
        self.required.retain(|_, m| m.0 > 0);
        if !new.is_empty() {
            self.deficits.insert(role.to_string(), new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        Resources::parse(s).expect("valid")
    }

    #[test]
    fn parse_and_validate() {
        let q = Quota::parse("eng", "cpus:4;mem:1024", Some("cpus:8")).expect("valid");
        assert_eq!(q.guarantee.get("cpus"), Some(&Milli(4000)));
        assert!(Quota::parse("eng", "cpus:4", Some("cpus:2"))
            .unwrap_err()
            .to_string()
            .contains("above its limit"));
        assert!(Quota::parse("eng", "ports:[1-2]", None)
            .unwrap_err()
            .to_string()
            .contains("scalar"));
        assert!(Quota::parse("a b", "cpus:1", None).is_err());
        assert!(Quota::parse("eng", "cpus:-1", None).is_err());
    }

    #[test]
    fn limits_headroom_and_guarantee_pass() {
        let quotas: BTreeMap<String, Quota> = [
            (
                "g".to_string(),
                Quota::parse("g", "cpus:4", None).expect("valid"),
            ),
            (
                "l".to_string(),
                Quota::parse("l", "", Some("cpus:3")).expect("valid"),
            ),
        ]
        .into();
        let free: Scalars = [("cpus".to_string(), Milli(8000))].into();
        let mut c = QuotaCycle::new(quotas, BTreeMap::new(), free);
        assert!(c.any_deficit());
        // Guarantee pass: only g qualifies.
        assert!(c.allows("g", &r("cpus:2"), true));
        assert!(!c.allows("x", &r("cpus:2"), true));
        // Headroom: 8 free, g needs 4: x may take 4 but not 5.
        assert!(c.allows("x", &r("cpus:4"), false));
        assert!(!c.allows("x", &r("cpus:5"), false));
        // Limit: l never above 3.
        assert!(!c.allows("l", &r("cpus:4"), false));
        assert!(c.allows("l", &r("cpus:3"), false));
        c.allocated("g", &r("cpus:4"));
        assert!(!c.any_deficit());
        assert!(c.allows("x", &r("cpus:4"), false));
    }
}
