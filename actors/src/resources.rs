//! The resource algebra: scalars in fixed point (milli-units, so no floating drift), ranges and
//! sets, each optionally reserved for a role. Text form:
//! `cpus:4;mem:4096;disk:10000;ports:[31000-32000];zones:{a,b};cpus(ads):8`.
//!
//! Every operation is exact: `a + b - b == a` (for ranges and sets: when `b` shares no port or
//! item with `a`, since those unite on addition), and `contains` is true iff `subtract` succeeds.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Largest scalar quantity accepted (in whole units): far above any real machine, far below
/// overflow of the milli-unit i64 even after summing a million agents.
pub const MAX_SCALAR_UNITS: i64 = 1_000_000_000;
const MILLI: i64 = 1000;
/// Limits on what a resource string may hold, so a hostile string cannot eat memory.
pub const MAX_ENTRIES: usize = 256;
pub const MAX_RANGES: usize = 4096;
pub const MAX_SET_ITEMS: usize = 4096;
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("bad resource {part:?}: {why}")]
    Parse { part: String, why: String },
    #[error("quantity {value} of {name:?} is out of range (0..={MAX_SCALAR_UNITS})")]
    OutOfRange { name: String, value: String },
    #[error("{name:?} is a {have} resource, not a {want} one")]
    KindMismatch {
        name: String,
        have: &'static str,
        want: &'static str,
    },
    #[error("not enough {0}: cannot subtract")]
    Insufficient(String),
    #[error("too many resource entries (limit {0})")]
    TooMany(usize),
}

/// A scalar in thousandths of a unit (`cpus:0.5` is `Milli(500)`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Milli(pub i64);

impl Milli {
    pub const ZERO: Milli = Milli(0);
    pub fn from_units(u: i64) -> Milli {
        Milli(u.saturating_mul(MILLI))
    }
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MILLI as f64
    }
    /// Parses a decimal with at most three fractional digits; rejects signs, NaN, exponents.
    pub fn parse(name: &str, s: &str) -> Result<Milli, ResourceError> {
        let bad = |why: &str| ResourceError::Parse {
            part: format!("{name}:{s}"),
            why: why.into(),
        };
        let s = s.trim();
        if s.starts_with('-') {
            return Err(ResourceError::OutOfRange {
                name: name.into(),
                value: s.into(),
            });
        }
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad("empty quantity"));
        }
        if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("quantity is not a plain decimal number"));
        }
        if frac.len() > 3 && frac[3..].chars().any(|c| c != '0') {
            return Err(bad("more than 3 decimal places"));
        }
        let int_v: i64 = if int.is_empty() {
            0
        } else if int.len() > 12 {
            return Err(ResourceError::OutOfRange {
                name: name.into(),
                value: s.into(),
            });
        } else {
            int.parse().map_err(|_| bad("bad integer part"))?
        };
        if int_v > MAX_SCALAR_UNITS {
            return Err(ResourceError::OutOfRange {
                name: name.into(),
                value: s.into(),
            });
        }
        let mut frac3: String = frac.chars().take(3).collect();
        while frac3.len() < 3 {
            frac3.push('0');
        }
        let frac_v: i64 = frac3.parse().map_err(|_| bad("bad fraction"))?;
        Ok(Milli(int_v * MILLI + frac_v))
    }
    /// Converts a float given by an API user (e.g. `--cpus 0.1`), rejecting NaN and negatives.
    pub fn from_f64(name: &str, v: f64) -> Result<Milli, ResourceError> {
        if !v.is_finite() || v < 0.0 || v > MAX_SCALAR_UNITS as f64 {
            return Err(ResourceError::OutOfRange {
                name: name.into(),
                value: v.to_string(),
            });
        }
        Ok(Milli((v * MILLI as f64).round() as i64))
    }
}

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sign printed separately: `-0.5` has integer part 0, which carries no sign.
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let milli = MILLI as u64;
        let (i, r) = (abs / milli, abs % milli);
        if r == 0 {
            write!(f, "{sign}{i}")
        } else {
            let s = format!("{r:03}");
            write!(f, "{sign}{i}.{}", s.trim_end_matches('0'))
        }
    }
}

impl fmt::Debug for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Sorted, non-overlapping, non-adjacent inclusive ranges.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    pub fn new(mut v: Vec<(u64, u64)>) -> Ranges {
        v.retain(|(a, b)| a <= b);
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Ranges(out)
    }
    pub fn spans(&self) -> &[(u64, u64)] {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Number of values covered (saturating: `[0-18446744073709551615]` has 2^64 values).
    pub fn count(&self) -> u64 {
        // `b - a + 1` overflows for the full range; spans from a peer may even be upside down.
        self.0.iter().fold(0u64, |n, &(a, b)| {
            let len = if a <= b { (b - a).saturating_add(1) } else { 0 };
            n.saturating_add(len)
        })
    }
    pub fn union(&self, o: &Ranges) -> Ranges {
        Ranges::new(self.0.iter().chain(o.0.iter()).copied().collect())
    }
    pub fn contains(&self, o: &Ranges) -> bool {
        o.0.iter()
            .all(|&(a, b)| self.0.iter().any(|&(x, y)| x <= a && b <= y))
    }
    pub fn contains_value(&self, v: u64) -> bool {
        self.0.iter().any(|&(x, y)| x <= v && v <= y)
    }
    /// `self` minus `o`; the caller checks containment first when exactness matters.
    pub fn difference(&self, o: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(mut a, b) in &self.0 {
            let mut alive = true;
            for &(x, y) in &o.0 {
                if !alive || y < a || x > b {
                    continue;
                }
                if x > a {
                    out.push((a, x - 1));
                }
                if y >= b {
                    alive = false;
                } else {
                    a = y + 1;
                }
            }
            if alive {
                out.push((a, b));
            }
        }
        Ranges::new(out)
    }
    /// The first `n` values, as ranges (used to pick ports out of an offer).
    pub fn take(&self, n: u64) -> Ranges {
        let mut left = n;
        let mut out = Vec::new();
        for &(a, b) in self.0.iter().filter(|(a, b)| a <= b) {
            if left == 0 {
                break;
            }
            let len = (b - a).saturating_add(1).min(left);
            // `a + len - 1` would overflow at the top of u64; `len >= 1` here.
            out.push((a, a + (len - 1)));
            left -= len;
        }
        Ranges(out)
    }
}

impl fmt::Debug for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        write!(f, "[{}]", parts.join(","))
    }
}

/// The value of one resource entry.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    Scalar(Milli),
    Ranges(Ranges),
    Set(BTreeSet<String>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Ranges(_) => "ranges",
            Value::Set(_) => "set",
        }
    }
    fn is_empty(&self) -> bool {
        match self {
            Value::Scalar(m) => m.0 == 0,
            Value::Ranges(r) => r.is_empty(),
            Value::Set(s) => s.is_empty(),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar(m) => write!(f, "{m}"),
            Value::Ranges(r) => write!(f, "{r}"),
            Value::Set(s) => write!(f, "{{{}}}", s.iter().cloned().collect::<Vec<_>>().join(",")),
        }
    }
}

/// Name plus reservation. `role: None` is the unreserved pool (`*`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub role: Option<String>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.role {
            None => write!(f, "{}", self.name),
            Some(r) => write!(f, "{}({})", self.name, r),
        }
    }
}

/// A bag of resources. Entries with empty values are never stored, so `==` is semantic.
///
/// The entries are shared and copied on write: the allocator copies an agent's whole free
/// pool into every offer, and with a plain map each copy cost a tree node and one `String`
/// per entry; now it is a reference count. `None` is the empty bag, so `new()` allocates
/// nothing. The wire format is that of the plain map (see the `Serialize` impl).
#[derive(Clone, Default)]
pub struct Resources {
    entries: Option<Arc<BTreeMap<Key, Value>>>,
}

/// What an empty bag's entries read as.
static NO_ENTRIES: BTreeMap<Key, Value> = BTreeMap::new();

impl PartialEq for Resources {
    fn eq(&self, o: &Self) -> bool {
        match (&self.entries, &o.entries) {
            // An offer and the pool it was copied from share one map: no walk needed.
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.map() == o.map(),
        }
    }
}
impl Eq for Resources {}

impl Hash for Resources {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.map().hash(state);
    }
}

/// The serialized form, unchanged from when `Resources` held a plain map: a struct named
/// `Resources` with one field `entries`.
#[derive(Serialize)]
#[serde(rename = "Resources")]
struct WireRef<'a> {
    entries: &'a BTreeMap<Key, Value>,
}

#[derive(Deserialize)]
#[serde(rename = "Resources")]
struct Wire {
    entries: BTreeMap<Key, Value>,
}

impl Serialize for Resources {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireRef {
            entries: self.map(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Resources {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Wire::deserialize(d).map(|w| Resources::from_map(w.entries))
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
}

impl Resources {
    pub fn new() -> Resources {
        Resources::default()
    }

    #[inline]
    fn map(&self) -> &BTreeMap<Key, Value> {
        self.entries.as_deref().unwrap_or(&NO_ENTRIES)
    }

    /// The entries for writing; clones them first if another bag shares them.
    fn map_mut(&mut self) -> &mut BTreeMap<Key, Value> {
        Arc::make_mut(self.entries.get_or_insert_with(Default::default))
    }

    fn from_map(entries: BTreeMap<Key, Value>) -> Resources {
        Resources {
            entries: (!entries.is_empty()).then(|| Arc::new(entries)),
        }
    }

    /// Keeps "empty" as `None` after removals.
    fn drop_if_empty(&mut self) {
        if self.entries.as_ref().is_some_and(|m| m.is_empty()) {
            self.entries = None;
        }
    }

    /// True if adding these entries one by one to an empty bag would store them unchanged
    /// (none empty, within the entry limit): then copying the bag is the same as adding it.
    /// Bags built here always are; a bag decoded from a peer might not be.
    fn is_normal(&self) -> bool {
        let m = self.map();
        m.len() <= MAX_ENTRIES && m.values().all(|v| !v.is_empty())
    }

    /// True if some entry is reserved for a role.
    fn has_reservations(&self) -> bool {
        self.map().keys().any(|k| k.role.is_some())
    }

    /// Parses the text form. Whitespace around parts is ignored; empty string is empty bag.
    pub fn parse(text: &str) -> Result<Resources, ResourceError> {
        let mut out = Resources::new();
        let parts: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() > MAX_ENTRIES {
            return Err(ResourceError::TooMany(MAX_ENTRIES));
        }
        for part in parts {
            let (key, value) = Self::parse_part(part)?;
            out.add_entry(key, value)?;
        }
        Ok(out)
    }

    fn parse_part(part: &str) -> Result<(Key, Value), ResourceError> {
        let bad = |why: &str| ResourceError::Parse {
            part: part.into(),
            why: why.into(),
        };
        let (lhs, rhs) = part
            .split_once(':')
            .ok_or_else(|| bad("expected NAME:VALUE"))?;
        let lhs = lhs.trim();
        let (name, role) = match lhs.split_once('(') {
            None => (lhs, None),
            Some((n, rest)) => {
                let role = rest
                    .strip_suffix(')')
                    .ok_or_else(|| bad("unclosed '(' in role"))?;
                if role == "*" {
                    (n.trim(), None)
                } else if !valid_name(role) {
                    return Err(bad("bad role name"));
                } else {
                    (n.trim(), Some(role.to_string()))
                }
            }
        };
        if !valid_name(name) {
            return Err(bad("bad resource name (letters, digits, _-./; at most 64)"));
        }
        let rhs = rhs.trim();
        let value = if let Some(inner) = rhs.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?;
            Value::Ranges(Self::parse_ranges(part, inner)?)
        } else if let Some(inner) = rhs.strip_prefix('{') {
            let inner = inner.strip_suffix('}').ok_or_else(|| bad("unclosed '{'"))?;
            let items: BTreeSet<String> = inner
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if items.len() > MAX_SET_ITEMS || items.iter().any(|i| !valid_name(i)) {
                return Err(bad("bad or too many set items"));
            }
            Value::Set(items)
        } else {
            Value::Scalar(Milli::parse(name, rhs)?)
        };
        Ok((
            Key {
                name: name.to_string(),
                role,
            },
            value,
        ))
    }

    fn parse_ranges(part: &str, inner: &str) -> Result<Ranges, ResourceError> {
        let bad = |why: &str| ResourceError::Parse {
            part: part.into(),
            why: why.into(),
        };
        let mut spans = Vec::new();
        for r in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if spans.len() >= MAX_RANGES {
                return Err(bad("too many ranges"));
            }
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let a: u64 = a
                .trim()
                .parse()
                .map_err(|_| bad("range bound is not a number"))?;
            let b: u64 = b
                .trim()
                .parse()
                .map_err(|_| bad("range bound is not a number"))?;
            if a > b {
                return Err(bad("range start is above its end"));
            }
            spans.push((a, b));
        }
        Ok(Ranges::new(spans))
    }

    /// Adds one entry, merging with what is there (scalars add, ranges/sets unite).
    pub fn add_entry(&mut self, key: Key, value: Value) -> Result<(), ResourceError> {
        if value.is_empty() {
            return Ok(());
        }
        if !self.map().contains_key(&key) && self.map().len() >= MAX_ENTRIES {
            return Err(ResourceError::TooMany(MAX_ENTRIES));
        }
        let merged = match (self.map().get(&key), value) {
            (None, v) => v,
            (Some(Value::Scalar(a)), Value::Scalar(b)) => {
                let sum =
                    a.0.checked_add(b.0)
                        .filter(|s| *s <= MAX_SCALAR_UNITS * MILLI * 1000);
                let sum = sum.ok_or_else(|| ResourceError::OutOfRange {
                    name: key.name.clone(),
                    value: "sum".into(),
                })?;
                Value::Scalar(Milli(sum))
            }
            (Some(Value::Ranges(a)), Value::Ranges(b)) => Value::Ranges(a.union(&b)),
            (Some(Value::Set(a)), Value::Set(b)) => Value::Set(a.union(&b).cloned().collect()),
            (Some(have), want) => {
                return Err(ResourceError::KindMismatch {
                    name: key.name.clone(),
                    have: have.kind(),
                    want: want.kind(),
                })
            }
        };
        // Raw values (e.g. rebuilt from a peer) may be negative, so a sum can come to zero:
        // drop it rather than store an empty entry, which would make `==` non-semantic.
        if merged.is_empty() {
            self.map_mut().remove(&key);
            self.drop_if_empty();
        } else {
            self.map_mut().insert(key, merged);
        }
        Ok(())
    }

    /// A single unreserved scalar (`Resources::scalar("cpus", 0.5)`), for code and tests.
    pub fn scalar(name: &str, units: f64) -> Result<Resources, ResourceError> {
        let mut r = Resources::new();
        let key = Key {
            name: name.to_string(),
            role: None,
        };
        r.add_entry(key, Value::Scalar(Milli::from_f64(name, units)?))?;
        Ok(r)
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.map().iter()
    }
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.map().get(key)
    }

    /// Total of a scalar over all roles (zero if absent or not a scalar).
    pub fn scalar_total(&self, name: &str) -> Milli {
        Milli(
            self.map()
                .iter()
                .filter(|(k, _)| k.name == name)
                .map(|(_, v)| if let Value::Scalar(m) = v { m.0 } else { 0 })
                .sum(),
        )
    }

    /// Union of the port-style ranges named `name` over all roles.
    pub fn ranges_total(&self, name: &str) -> Ranges {
        self.map()
            .iter()
            .filter(|(k, _)| k.name == name)
            .fold(Ranges::default(), |acc, (_, v)| {
                if let Value::Ranges(r) = v {
                    acc.union(r)
                } else {
                    acc
                }
            })
    }

    /// Names of all scalar resources present (sorted, deduplicated across roles).
    pub fn scalar_names(&self) -> BTreeSet<String> {
        self.map()
            .iter()
            .filter(|(_, v)| matches!(v, Value::Scalar(_)))
            .map(|(k, _)| k.name.clone())
            .collect()
    }

    /// Scalars add; ranges and sets unite (a port shared by both counts once), so `(a + b) - b`
    /// gives back `a` exactly when they share no port or set item.
    pub fn checked_add(&self, o: &Resources) -> Result<Resources, ResourceError> {
        // Adding to nothing (a pool given back whole, a first holding) shares `o`.
        if self.is_empty() && o.is_normal() {
            return Ok(o.clone());
        }
        let mut out = self.clone();
        for (k, v) in o.map() {
            out.add_entry(k.clone(), v.clone())?;
        }
        Ok(out)
    }

    /// True iff every entry of `o` is covered by the same key of `self`.
    pub fn contains(&self, o: &Resources) -> bool {
        o.map().iter().all(|(k, v)| match (self.map().get(k), v) {
            (Some(Value::Scalar(a)), Value::Scalar(b)) => a.0 >= b.0,
            (Some(Value::Ranges(a)), Value::Ranges(b)) => a.contains(b),
            (Some(Value::Set(a)), Value::Set(b)) => b.is_subset(a),
            _ => false,
        })
    }

    /// `self - o`, failing (and changing nothing) unless `self.contains(o)`.
    pub fn checked_sub(&self, o: &Resources) -> Result<Resources, ResourceError> {
        // Taking everything (a whole offer declined) leaves nothing: every entry of `o`
        // covers itself exactly.
        if self == o {
            return Ok(Resources::new());
        }
        let mut out = self.clone();
        for (k, v) in o.map() {
            let have = out
                .map()
                .get(k)
                .ok_or_else(|| ResourceError::Insufficient(format!("{k:?}")))?;
            let left = match (have, v) {
                (Value::Scalar(a), Value::Scalar(b)) if a.0 >= b.0 => {
                    Value::Scalar(Milli(a.0 - b.0))
                }
                (Value::Ranges(a), Value::Ranges(b)) if a.contains(b) => {
                    Value::Ranges(a.difference(b))
                }
                (Value::Set(a), Value::Set(b)) if b.is_subset(a) => {
                    Value::Set(a.difference(b).cloned().collect())
                }
                _ => return Err(ResourceError::Insufficient(format!("{k:?}"))),
            };
            if left.is_empty() {
                out.map_mut().remove(k);
            } else {
                out.map_mut().insert(k.clone(), left);
            }
        }
        out.drop_if_empty();
        Ok(out)
    }

    /// Only the entries usable by `role`: unreserved ones and those reserved for the role or one
    /// of its ancestors (`eng` reservations serve `eng/backend`).
    pub fn allocatable_to(&self, role: &str) -> Resources {
        if !self.has_reservations() {
            return self.clone();
        }
        let entries = self
            .map()
            .iter()
            .filter(|(k, _)| match &k.role {
                None => true,
                Some(r) => r == role || role.starts_with(&format!("{r}/")),
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Resources::from_map(entries)
    }

    /// Same resources with every reservation dropped (for share calculations).
    pub fn unreserved_view(&self) -> Resources {
        if !self.has_reservations() && self.is_normal() {
            return self.clone();
        }
        let mut out = Resources::new();
        for (k, v) in self.map() {
            let key = Key {
                name: k.name.clone(),
                role: None,
            };
            // Cannot fail: values of one name have one kind in well-formed input; ignore if not.
            let _ = out.add_entry(key, v.clone());
        }
        out
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .map()
            .iter()
            .map(|(k, v)| format!("{k:?}:{v}"))
            .collect();
        write!(f, "{}", parts.join(";"))
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resources({self})")
    }
}

impl std::str::FromStr for Resources {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resources::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        Resources::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_round_trip() {
        let x = r("cpus:4;mem:4096;disk:10000;ports:[31000-32000];cpus(ads):8;zones:{b,a}");
        assert_eq!(
            x.to_string(),
            "cpus:4;cpus(ads):8;disk:10000;mem:4096;ports:[31000-32000];zones:{a,b}"
        );
        assert_eq!(r(&x.to_string()), x);
        assert_eq!(r("cpus:0.5").scalar_total("cpus"), Milli(500));
        assert_eq!(r("cpus:0.125").to_string(), "cpus:0.125");
    }

    #[test]
    fn rejects_bad_quantities_with_the_bad_part_named() {
        for bad in [
            "cpus:-1",
            "cpus:NaN",
            "cpus:inf",
            "cpus:1e3",
            "cpus:0.0001",
            "mem:99999999999999",
            "cpus",
            "ports:[5-3]",
            "ports:[a-b]",
            "cpus(:1",
            "c pus:1",
            "ports:[1-2",
            "x:",
        ] {
            let e = Resources::parse(bad).unwrap_err();
            assert!(!e.to_string().is_empty(), "{bad}");
        }
        assert!(matches!(
            Resources::parse("cpus:1;cpus:[1-2]"),
            Err(ResourceError::KindMismatch { .. })
        ));
        assert!(Milli::from_f64("cpus", f64::NAN).is_err());
        assert!(Milli::from_f64("cpus", -0.1).is_err());
    }

    #[test]
    fn subtract_and_contains_agree() {
        let total = r("cpus:4;mem:1024;ports:[31000-31010]");
        let part = r("cpus:1.5;mem:24;ports:[31002-31003]");
        assert!(total.contains(&part));
        let left = total.checked_sub(&part).unwrap();
        assert_eq!(
            left.to_string(),
            "cpus:2.5;mem:1000;ports:[31000-31001,31004-31010]"
        );
        assert_eq!(left.checked_add(&part).unwrap(), total);
        assert!(!part.contains(&total));
        assert!(part.checked_sub(&total).is_err());
    }

    #[test]
    fn reservations_are_separate_pools() {
        let x = r("cpus:2;cpus(ads):8");
        assert_eq!(x.allocatable_to("web").to_string(), "cpus:2");
        assert_eq!(
            x.allocatable_to("ads/backend").scalar_total("cpus"),
            Milli(10_000)
        );
        assert!(!x.contains(&r("cpus:3")));
        assert_eq!(x.unreserved_view().to_string(), "cpus:10");
    }

    /// The shared-map representation must encode exactly as the plain map it replaced in the
    /// framed wire format (bincode), and decode back to an equal bag.
    #[test]
    fn wire_format_is_that_of_the_plain_map() {
        #[derive(Serialize)]
        #[serde(rename = "Resources")]
        struct Plain {
            entries: BTreeMap<Key, Value>,
        }
        let x = r("cpus:4;mem:4096;ports:[31000-32000];cpus(ads):8;zones:{b,a}");
        let plain = Plain {
            entries: x.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let cfg = bincode::config::standard();
        let ours = bincode::serde::encode_to_vec(&x, cfg).unwrap();
        assert_eq!(ours, bincode::serde::encode_to_vec(&plain, cfg).unwrap());
        let (back, _): (Resources, usize) = bincode::serde::decode_from_slice(&ours, cfg).unwrap();
        assert_eq!(back, x);
        let empty = bincode::serde::encode_to_vec(Resources::new(), cfg).unwrap();
        let plain_empty = Plain {
            entries: BTreeMap::new(),
        };
        assert_eq!(
            empty,
            bincode::serde::encode_to_vec(&plain_empty, cfg).unwrap()
        );
    }

    /// Copies share their entries until one is changed; a change never shows in the other.
    #[test]
    fn copies_are_independent_after_a_change() {
        let a = r("cpus:4;mem:1024");
        let mut b = a.clone();
        b.add_entry(
            Key {
                name: "cpus".into(),
                role: None,
            },
            Value::Scalar(Milli(500)),
        )
        .unwrap();
        assert_eq!(a.to_string(), "cpus:4;mem:1024");
        assert_eq!(b.to_string(), "cpus:4.5;mem:1024");
        assert!(a.checked_sub(&a.clone()).unwrap().is_empty());
        assert_eq!(Resources::new().checked_add(&a).unwrap(), a);
        assert_eq!(
            a.checked_sub(&r("cpus:4;mem:1024")).unwrap(),
            Resources::new()
        );
    }

    #[test]
    fn ranges_take_and_difference() {
        let p = Ranges::new(vec![(10, 12), (20, 30)]);
        assert_eq!(p.take(4).to_string(), "[10-12,20-20]");
        assert_eq!(p.count(), 14);
        assert_eq!(
            p.difference(&Ranges::new(vec![(11, 25)])).to_string(),
            "[10-10,26-30]"
        );
    }
}
