//! Up-front offer filters: what a framework states at subscribe time that it will always refuse,
//! so the allocator never offers it (instead of offering and waiting for a decline).
//!
//! - attribute constraints: `rack in r1,r2` (the agent's `rack` attribute is one of these) and
//!   `zone = a` (shorthand for one value); an agent without the attribute never matches;
//! - a minimum offer: `cpus:1;mem:512` — only offers with at least this much of every named
//!   scalar (summed over reservations) are made.

use crate::messages::Attributes;
use crate::resources::{Resources, Value};
use serde::{Deserialize, Serialize};

/// Limits, so a subscribe cannot make every allocation run slow.
pub const MAX_CONSTRAINTS: usize = 16;
pub const MAX_CONSTRAINT_VALUES: usize = 64;
const MAX_TEXT_LEN: usize = 128;

/// The agent's attribute `attribute` must be one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeConstraint {
    pub attribute: String,
    pub values: Vec<String>,
}

/// Everything a framework refuses up front. The default refuses nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OfferFilters {
    /// All must hold.
    pub constraints: Vec<AttributeConstraint>,
    /// Smallest offer worth making (scalars only); `None`: any.
    pub min_offer: Option<Resources>,
}

fn valid_text(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TEXT_LEN
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
}

impl AttributeConstraint {
    /// Parses `rack in r1,r2` or `zone = a` (spaces around the operator optional for `=`).
    pub fn parse(text: &str) -> Result<AttributeConstraint, String> {
        let t = text.trim();
        let (attribute, values) = if let Some((a, v)) = t.split_once('=') {
            (a.trim(), v.trim())
        } else {
            let mut words = t.splitn(3, char::is_whitespace);
            let a = words.next().unwrap_or("");
            let op = words.next().unwrap_or("");
            let v = words.next().unwrap_or("");
            if op != "in" {
                return Err(format!(
                    "bad constraint {text:?}: expected `ATTR in V1,V2` or `ATTR = V`"
                ));
            }
            (a, v.trim())
        };
        let c = AttributeConstraint {
            attribute: attribute.to_string(),
            values: values
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect(),
        };
        c.validate().map(|()| c)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !valid_text(&self.attribute) {
            return Err(format!(
                "bad constraint attribute {:?}: use letters, digits and _-./",
                self.attribute
            ));
        }
        if self.values.is_empty() || self.values.len() > MAX_CONSTRAINT_VALUES {
            return Err(format!(
                "constraint on {:?} needs 1 to {MAX_CONSTRAINT_VALUES} values",
                self.attribute
            ));
        }
        if let Some(v) = self.values.iter().find(|v| !valid_text(v)) {
            return Err(format!(
                "bad constraint value {v:?}: use letters, digits and _-./"
            ));
        }
        Ok(())
    }

    pub fn matches(&self, attributes: &Attributes) -> bool {
        attributes
            .get(&self.attribute)
            .is_some_and(|have| self.values.iter().any(|v| v == have))
    }
}

impl std::fmt::Display for AttributeConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}", self.attribute, self.values.join(","))
    }
}

impl OfferFilters {
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty() && self.min_offer.is_none()
    }

    /// Checks the limits and that `min_offer` holds only scalars.
    pub fn validate(&self) -> Result<(), String> {
        if self.constraints.len() > MAX_CONSTRAINTS {
            return Err(format!(
                "{} constraints (limit {MAX_CONSTRAINTS})",
                self.constraints.len()
            ));
        }
        for c in &self.constraints {
            c.validate()?;
        }
        if let Some(min) = &self.min_offer {
            if let Some((k, _)) = min.iter().find(|(_, v)| !matches!(v, Value::Scalar(_))) {
                return Err(format!(
                    "min_offer: {} is not a scalar; only scalars can be a minimum",
                    k.name
                ));
            }
        }
        Ok(())
    }

    /// True if the framework would take an offer of `candidate` on an agent with `attributes`.
    pub fn accepts(&self, attributes: &Attributes, candidate: &Resources) -> bool {
        if !self.constraints.iter().all(|c| c.matches(attributes)) {
            return false;
        }
        match &self.min_offer {
            None => true,
            Some(min) => min.iter().all(|(k, v)| match v {
                Value::Scalar(m) => candidate.scalar_total(&k.name).0 >= m.0,
                _ => true,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(s: &str) -> Attributes {
        crate::messages::parse_attributes(s).unwrap()
    }

    #[test]
    fn constraints_parse_match_and_refuse_bad_text() {
        let c = AttributeConstraint::parse("rack in r1, r2").unwrap();
        assert_eq!(c.values, vec!["r1", "r2"]);
        assert!(c.matches(&attrs("rack:r2")));
        assert!(!c.matches(&attrs("rack:r3")));
        assert!(
            !c.matches(&attrs("zone:r1")),
            "missing attribute never matches"
        );
        let z = AttributeConstraint::parse("zone = a").unwrap();
        assert!(z.matches(&attrs("zone:a;rack:r9")));
        assert!(AttributeConstraint::parse("rack like r1").is_err());
        assert!(AttributeConstraint::parse("rack in").is_err());
        assert!(AttributeConstraint::parse("ra ck = x").is_err());
        assert!(AttributeConstraint::parse("rack = a b").is_err());
    }

    #[test]
    fn min_offer_counts_scalars_over_reservations() {
        let f = OfferFilters {
            constraints: vec![],
            min_offer: Some(Resources::parse("cpus:2;mem:512").unwrap()),
        };
        f.validate().unwrap();
        let a = attrs("rack:r1");
        assert!(f.accepts(&a, &Resources::parse("cpus:1;cpus(eng):1;mem:512").unwrap()));
        assert!(!f.accepts(&a, &Resources::parse("cpus:1.5;mem:4096").unwrap()));
        assert!(!f.accepts(&a, &Resources::parse("cpus:4").unwrap()));
        let ranges = OfferFilters {
            constraints: vec![],
            min_offer: Some(Resources::parse("ports:[1-2]").unwrap()),
        };
        assert!(ranges.validate().is_err());
        assert!(OfferFilters::default().accepts(&a, &Resources::new()));
    }
}
