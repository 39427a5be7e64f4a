//! Checks on everything that arrives from peers. `Resources` and ids are plain serde types, so a
//! hostile or buggy peer can send values the parsers would never produce (negative or zero
//! scalars, unsorted ranges, bad names); nothing reaches the master's books without passing here.

use agora_actors::resources::{
    Value, MAX_ENTRIES, MAX_NAME_LEN, MAX_RANGES, MAX_SCALAR_UNITS, MAX_SET_ITEMS,
};
use agora_actors::{Attributes, FrameworkInfo, Ranges, Resources};

/// Longest hostname / endpoint / framework name / user accepted.
pub const MAX_TEXT_LEN: usize = 255;
/// Longest role name (brief: ≤ 64 characters).
pub const MAX_ROLE_LEN: usize = 64;
/// Roles one framework may subscribe with.
pub const MAX_ROLES: usize = 64;
/// Attributes one agent may carry (same limit as `parse_attributes`).
pub const MAX_ATTRIBUTES: usize = 64;
const MAX_ATTRIBUTE_LEN: usize = 128;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
}

/// A well-formed, non-empty bag of resources: valid names and roles, scalars in
/// `(0, MAX_SCALAR_UNITS]`, ranges in normal form, non-empty sets of valid items.
pub fn resources(what: &str, r: &Resources) -> Result<(), String> {
    if r.is_empty() {
        return Err(format!("{what}: no resources given"));
    }
    resources_allow_empty(what, r)
}

/// As `resources`, but an empty bag is fine (executor resources may be empty).
pub fn resources_allow_empty(what: &str, r: &Resources) -> Result<(), String> {
    let mut count = 0usize;
    for (key, value) in r.iter() {
        count += 1;
        if count > MAX_ENTRIES {
            return Err(format!("{what}: more than {MAX_ENTRIES} resource entries"));
        }
        if !valid_name(&key.name) {
            return Err(format!("{what}: bad resource name {:?}", key.name));
        }
        if let Some(role) = &key.role {
            if role == "*" || !valid_name(role) {
                return Err(format!(
                    "{what}: bad reservation role {role:?} on {}",
                    key.name
                ));
            }
        }
        value_ok(what, &key.name, value)?;
    }
    Ok(())
}

fn value_ok(what: &str, name: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::Scalar(m) => {
            if m.0 <= 0 || m.0 > MAX_SCALAR_UNITS.saturating_mul(1000) {
                return Err(format!(
                    "{what}: {name} quantity {m} is out of range (must be above 0 and at most \
                     {MAX_SCALAR_UNITS})"
                ));
            }
        }
        Value::Ranges(rs) => {
            let spans = rs.spans();
            if spans.is_empty() || spans.len() > MAX_RANGES {
                return Err(format!(
                    "{what}: {name} has no ranges or more than {MAX_RANGES}"
                ));
            }
            // Normal form (sorted, disjoint, non-adjacent, start <= end) is what every range
            // operation assumes; re-normalising and comparing catches anything else.
            if spans.iter().any(|(a, b)| a > b) || Ranges::new(spans.to_vec()) != *rs {
                return Err(format!(
                    "{what}: {name} ranges {rs} are not sorted and disjoint"
                ));
            }
        }
        Value::Set(items) => {
            if items.is_empty() || items.len() > MAX_SET_ITEMS {
                return Err(format!(
                    "{what}: {name} set is empty or has more than {MAX_SET_ITEMS} items"
                ));
            }
            if let Some(bad) = items.iter().find(|i| !valid_name(i)) {
                return Err(format!(
                    "{what}: {name} set item {bad:?} is not a valid name"
                ));
            }
        }
    }
    Ok(())
}

/// Non-empty printable text of bounded length (hostnames, endpoints, names).
pub fn text(what: &str, s: &str, allow_empty: bool) -> Result<(), String> {
    if s.is_empty() && !allow_empty {
        return Err(format!("{what} is empty"));
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(format!(
            "{what} is {} bytes long (limit {MAX_TEXT_LEN})",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{what} {s:?} contains control characters"));
    }
    Ok(())
}

pub fn attributes(a: &Attributes) -> Result<(), String> {
    if a.len() > MAX_ATTRIBUTES {
        return Err(format!("{} attributes (limit {MAX_ATTRIBUTES})", a.len()));
    }
    let ok = |t: &str| {
        !t.is_empty()
            && t.len() <= MAX_ATTRIBUTE_LEN
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
    };
    match a.iter().find(|(k, v)| !ok(k) || !ok(v)) {
        Some((k, v)) => Err(format!(
            "bad attribute {k:?}:{v:?}: use letters, digits and _-./"
        )),
        None => Ok(()),
    }
}

/// Roles as Mesos accepts them: non-empty, no whitespace or control characters, at most
/// `MAX_ROLE_LEN` long, not `.`/`..`, no leading `-` or `/`. `*` is the default role.
pub fn role(r: &str) -> Result<(), String> {
    if r.is_empty() {
        return Err("empty role name".into());
    }
    if r.len() > MAX_ROLE_LEN {
        return Err(format!(
            "role {r:?} is longer than {MAX_ROLE_LEN} characters"
        ));
    }
    if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("role {r:?} contains whitespace"));
    }
    if r == "." || r == ".." || r.starts_with('-') || r.starts_with('/') || r.ends_with('/') {
        return Err(format!("role {r:?} is not a valid role name"));
    }
    if r != "*" && r.contains('*') {
        return Err(format!("role {r:?} may not contain '*'"));
    }
    Ok(())
}

/// Validates a subscribing framework and returns it normalised (empty roles → `["*"]`).
/// Longest revocation grace period a framework may ask for.
pub const MAX_REVOCATION_GRACE_MS: u64 = 86_400_000;

pub fn framework_info(info: &FrameworkInfo) -> Result<FrameworkInfo, String> {
    if let Some(id) = &info.id {
        id.validate().map_err(|e| e.to_string())?;
    }
    text("framework name", &info.name, false)?;
    text("framework user", &info.user, false)?;
    text("framework hostname", &info.hostname, true)?;
    if info.roles.len() > MAX_ROLES {
        return Err(format!("{} roles (limit {MAX_ROLES})", info.roles.len()));
    }
    for r in &info.roles {
        role(r)?;
    }
    info.offer_filters
        .validate()
        .map_err(|e| format!("offer filters: {e}"))?;
    if let Some(min) = &info.offer_filters.min_offer {
        resources_allow_empty("min_offer", min)?;
    }
    if info
        .revocation_grace_ms
        .is_some_and(|g| g > MAX_REVOCATION_GRACE_MS)
    {
        return Err(format!(
            "revocation_grace_ms above {MAX_REVOCATION_GRACE_MS} (one day)"
        ));
    }
    let mut out = info.clone();
    if out.roles.is_empty() {
        out.roles = vec!["*".to_string()];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::resources::Key;
    use agora_actors::Milli;

    /// Built the way a hostile peer could (serde does not re-check), bypassing the parser.
    fn raw(name: &str, role: Option<&str>, value: Value) -> Resources {
        let mut r = Resources::new();
        let key = Key {
            name: name.to_string(),
            role: role.map(str::to_string),
        };
        r.add_entry(key, value).unwrap();
        r
    }

    #[test]
    fn rejects_what_only_a_hostile_peer_can_send() {
        let neg = raw("cpus", None, Value::Scalar(Milli(-5)));
        assert!(resources("task", &neg)
            .unwrap_err()
            .contains("out of range"));
        let bad_name = raw("cp;us", None, Value::Scalar(Milli(5)));
        assert!(resources("task", &bad_name).unwrap_err().contains("name"));
        let star = raw("cpus", Some("*"), Value::Scalar(Milli(5)));
        assert!(resources("task", &star).unwrap_err().contains("role"));
        let unsorted: Ranges = serde_json::from_str("[[10,20],[1,5]]").unwrap();
        let rs = raw("ports", None, Value::Ranges(unsorted));
        assert!(resources("task", &rs).unwrap_err().contains("not sorted"));
        let upside_down: Ranges = serde_json::from_str("[[9,3]]").unwrap();
        let rs = raw("ports", None, Value::Ranges(upside_down));
        assert!(resources("task", &rs).is_err());
        let huge = raw("mem", None, Value::Scalar(Milli(i64::MAX)));
        assert!(resources("task", &huge).is_err());
    }

    #[test]
    fn accepts_parsed_resources_and_rejects_empty() {
        let r =
            Resources::parse("cpus:1;mem:128;ports:[31000-31010];zones:{a,b};cpus(ads):2").unwrap();
        assert_eq!(resources("task", &r), Ok(()));
        assert!(resources("task", &Resources::new())
            .unwrap_err()
            .contains("no resources"));
        assert_eq!(resources_allow_empty("executor", &Resources::new()), Ok(()));
    }

    #[test]
    fn roles_are_checked() {
        assert!(role("*").is_ok());
        assert!(role("eng/backend").is_ok());
        for bad in ["", "a b", "..", "-x", &"r".repeat(65), "a*"] {
            assert!(role(bad).is_err(), "{bad:?}");
        }
        let mut info = FrameworkInfo::new("fw");
        info.roles.clear();
        assert_eq!(framework_info(&info).unwrap().roles, vec!["*".to_string()]);
        info.name.clear();
        assert!(framework_info(&info).is_err());
    }
}
