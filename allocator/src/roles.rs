//! Roles and their weights: validation of role names (hierarchical, `eng/backend`) and of
//! weights, with errors that say what is wrong.

use serde::{Deserialize, Serialize};

/// Longest role name.
pub const MAX_ROLE_LEN: usize = 64;
/// Deepest role hierarchy (`a/b/c/d/e/f/g/h`).
pub const MAX_ROLE_DEPTH: usize = 8;
/// Largest accepted weight; beyond it shares stop being comparable in exact arithmetic.
pub const MAX_WEIGHT: f64 = 1_000_000.0;
/// Smallest accepted weight (one thousandth: the internal resolution).
pub const MIN_WEIGHT: f64 = 0.001;
/// Most roles the allocator tracks weights or quota for.
pub const MAX_ROLES: usize = 100_000;

/// Why a role name, weight or quota was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoleError {
    #[error("invalid role {role:?}: {why}")]
    Name { role: String, why: &'static str },
    #[error("invalid weight {weight} for role {role:?}: must be a number in {MIN_WEIGHT}..={MAX_WEIGHT}")]
    Weight { role: String, weight: f64 },
    #[error("invalid quota for role {role:?}: {why}")]
    Quota { role: String, why: String },
    #[error("too many roles (limit {MAX_ROLES})")]
    TooMany,
}

/// Checks a role name. `*` is the default role. Other names are `/`-separated paths of
/// components made of letters, digits and `_-.`; a component is never empty, `.` or `..`,
/// and never starts with `-`.
pub fn validate_role(role: &str) -> Result<(), RoleError> {
    let bad = |why| RoleError::Name {
        role: role.to_string(),
        why,
    };
    if role == "*" {
        return Ok(());
    }
    if role.is_empty() {
        return Err(bad("empty name"));
    }
    if role.len() > MAX_ROLE_LEN {
        return Err(bad("longer than 64 characters"));
    }
    let parts: Vec<&str> = role.split('/').collect();
    if parts.len() > MAX_ROLE_DEPTH {
        return Err(bad("more than 8 levels"));
    }
    for part in parts {
        if part.is_empty() {
            return Err(bad(
                "empty path component (leading, trailing or double '/')",
            ));
        }
        if part == "." || part == ".." {
            return Err(bad("'.' and '..' are not role names"));
        }
        if part.starts_with('-') {
            return Err(bad("a component may not start with '-'"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if !part.chars().all(ok) {
            return Err(bad("use letters, digits, '_', '-', '.' and '/' only"));
        }
    }
    Ok(())
}

/// The role and its ancestors, nearest first: `a/b/c` → `a/b/c`, `a/b`, `a`.
pub fn ancestors(role: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(role);
    std::iter::from_fn(move || {
        let cur = next?;
        next = cur.rfind('/').map(|i| &cur[..i]);
        Some(cur)
    })
}

/// A role weight in thousandths (1000 = weight 1), exact so shares compare exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Weight(pub i64);

impl Weight {
    pub const ONE: Weight = Weight(1000);

    pub fn new(role: &str, weight: f64) -> Result<Weight, RoleError> {
        validate_role(role)?;
        if !weight.is_finite() || !(MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
            return Err(RoleError::Weight {
                role: role.to_string(),
                weight,
            });
        }
        Ok(Weight((weight * 1000.0).round() as i64))
    }
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Weight::ONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for good in ["*", "ads", "eng/backend", "a.b_c-d/e", "x/y/z"] {
            assert_eq!(validate_role(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a//b", "empty path"),
            ("/a", "empty path"),
            ("a/", "empty path"),
            ("a/../b", "'.'"),
            ("-a", "'-'"),
            ("a b", "letters"),
            ("a*", "letters"),
            ("a/b/c/d/e/f/g/h/i", "8 levels"),
        ] {
            let e = validate_role(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(validate_role(&"r".repeat(65)).is_err());
    }

    #[test]
    fn ancestors_walk_up() {
        let v: Vec<_> = ancestors("a/b/c").collect();
        assert_eq!(v, ["a/b/c", "a/b", "a"]);
        assert_eq!(ancestors("*").collect::<Vec<_>>(), ["*"]);
    }

    #[test]
    fn weights() {
        assert_eq!(Weight::new("a", 2.5), Ok(Weight(2500)));
        assert!(Weight::new("a", 0.0).is_err());
        assert!(Weight::new("a", f64::NAN).is_err());
        assert!(Weight::new("a", 1e7).is_err());
        assert!(Weight::new("a b", 1.0).is_err());
    }
}
