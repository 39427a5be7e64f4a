//! Fitting a task's resources into an offer.

use agora_actors::resources::{Key, Value};
use agora_actors::{Milli, Resources};

/// Takes `want` (written unreserved, like `cpus:1;mem:128`) out of `available` for a framework
/// in `role`, using resources reserved for exactly that role first and unreserved ones after.
/// Returns the resources taken, with their reservations as the master expects them in a launch,
/// or `None` if `want` does not fit. Non-scalar entries (ports, sets) and entries of `want` that
/// already name a role must be available under exactly their own key.
pub fn take_resources(available: &Resources, want: &Resources, role: &str) -> Option<Resources> {
    let mut taken = Resources::new();
    for (key, value) in want.iter() {
        match (value, &key.role) {
            (Value::Scalar(need), None) => {
                take_scalar(available, &key.name, *need, role, &mut taken)?;
            }
            _ => taken.add_entry(key.clone(), value.clone()).ok()?,
        }
    }
    available.contains(&taken).then_some(taken)
}

fn take_scalar(
    available: &Resources,
    name: &str,
    need: Milli,
    role: &str,
    taken: &mut Resources,
) -> Option<()> {
    let scalar_at = |role: Option<&str>| {
        let key = Key {
            name: name.to_string(),
            role: role.map(str::to_string),
        };
        match available.get(&key) {
            Some(Value::Scalar(m)) => *m,
            _ => Milli::ZERO,
        }
    };
    let mut left = need.0;
    if role != "*" {
        let from_reserved = scalar_at(Some(role)).0.min(left);
        if from_reserved > 0 {
            let key = Key {
                name: name.to_string(),
                role: Some(role.to_string()),
            };
            taken
                .add_entry(key, Value::Scalar(Milli(from_reserved)))
                .ok()?;
            left -= from_reserved;
        }
    }
    if left > 0 {
        if scalar_at(None).0 < left {
            return None;
        }
        let key = Key {
            name: name.to_string(),
            role: None,
        };
        taken.add_entry(key, Value::Scalar(Milli(left))).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        Resources::parse(s).unwrap()
    }

    #[test]
    fn unreserved_fit_and_misfit() {
        let avail = r("cpus:2;mem:1024;ports:[31000-31010]");
        assert_eq!(
            take_resources(&avail, &r("cpus:1;mem:512"), "*"),
            Some(r("cpus:1;mem:512"))
        );
        assert_eq!(take_resources(&avail, &r("cpus:3"), "*"), None);
        assert_eq!(take_resources(&avail, &r("gpus:1"), "*"), None);
        assert_eq!(
            take_resources(&avail, &r("ports:[31000-31001]"), "*"),
            Some(r("ports:[31000-31001]"))
        );
    }

    #[test]
    fn reservations_of_the_role_are_used_first() {
        let avail = r("cpus(ads):1;cpus:4;mem(ads):100;mem:1000");
        assert_eq!(
            take_resources(&avail, &r("cpus:1.5;mem:50"), "ads"),
            Some(r("cpus(ads):1;cpus:0.5;mem(ads):50"))
        );
        // Another role's reservation is never touched.
        let avail = r("cpus(web):4;cpus:1");
        assert_eq!(take_resources(&avail, &r("cpus:2"), "ads"), None);
        assert_eq!(
            take_resources(&avail, &r("cpus:1"), "ads"),
            Some(r("cpus:1"))
        );
    }

    #[test]
    fn taken_resources_can_be_subtracted() {
        let avail = r("cpus(ads):1;cpus:1;mem:256");
        let taken = take_resources(&avail, &r("cpus:1.5;mem:128"), "ads").unwrap();
        let left = avail.checked_sub(&taken).unwrap();
        assert_eq!(left, r("cpus:0.5;mem:128"));
    }
}
