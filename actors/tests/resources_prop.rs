//! Property tests of the resource algebra: the text form round-trips, addition and subtraction
//! are exact inverses, containment agrees with subtraction, and ranges behave like sets of
//! integers (checked against a brute-force model on small domains).

use agora_actors::resources::{Key, Value, MAX_SCALAR_UNITS};
use agora_actors::{Milli, Ranges, Resources};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// Each name has one kind everywhere, so generated bags always combine.
const SCALARS: &[&str] = &["cpus", "mem", "disk", "gpus", "x.custom"];
const RANGES: &[&str] = &["ports", "ephemeral_ports"];
const SETS: &[&str] = &["zones", "disks/ssd"];
const ROLES: &[Option<&str>] = &[None, None, Some("ads"), Some("eng"), Some("eng/backend")];
const ITEMS: &[&str] = &["a", "b", "c", "rack-1", "ssd.0", "z_9"];

fn role() -> impl Strategy<Value = Option<String>> {
    prop::sample::select(ROLES).prop_map(|r| r.map(str::to_string))
}

/// Quantities biased towards the interesting ones: zero, tiny fractions, whole units, large.
fn milli(max_units: i64) -> impl Strategy<Value = Milli> {
    let max = max_units * 1000;
    prop_oneof![
        Just(Milli(0)),
        (1i64..1000).prop_map(Milli),
        (0i64..64).prop_map(|u| Milli(u * 1000)),
        (0i64..=max).prop_map(Milli),
    ]
}

/// Ranges over a small domain so overlaps and adjacency are common.
fn small_ranges() -> impl Strategy<Value = Ranges> {
    prop::collection::vec((0u64..60, 0u64..8), 0..6)
        .prop_map(|v| Ranges::new(v.into_iter().map(|(a, len)| (a, a + len)).collect()))
}

/// Ranges anywhere in u64, including the very top.
fn wide_ranges() -> impl Strategy<Value = Ranges> {
    let bound = prop_oneof![any::<u64>(), (0u64..100), (u64::MAX - 100..=u64::MAX),];
    prop::collection::vec((bound.clone(), bound), 0..6)
        .prop_map(|v| Ranges::new(v.into_iter().map(|(a, b)| (a.min(b), a.max(b))).collect()))
}

fn set() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(prop::sample::select(ITEMS).prop_map(str::to_string), 0..4)
}

fn entry(max_units: i64) -> impl Strategy<Value = (Key, Value)> {
    let key = |names: &'static [&'static str]| {
        (prop::sample::select(names), role()).prop_map(|(n, role)| Key {
            name: n.to_string(),
            role,
        })
    };
    prop_oneof![
        (key(SCALARS), milli(max_units)).prop_map(|(k, m)| (k, Value::Scalar(m))),
        (key(RANGES), small_ranges()).prop_map(|(k, r)| (k, Value::Ranges(r))),
        (key(SETS), set()).prop_map(|(k, s)| (k, Value::Set(s))),
    ]
}

/// A bag built entry by entry; `max_units` bounds each added quantity.
fn resources_with(max_units: i64) -> impl Strategy<Value = Resources> {
    prop::collection::vec(entry(max_units), 0..8).prop_map(|entries| {
        let mut r = Resources::new();
        for (k, v) in entries {
            r.add_entry(k, v).expect("generated entries always combine");
        }
        r
    })
}

fn resources() -> impl Strategy<Value = Resources> {
    resources_with(1_000_000)
}

/// `b` without the port ranges and set items it shares with `a`. Ranges and sets unite on
/// addition (a port is either free or not), so `a + b - b == a` holds exactly when they are
/// disjoint — the normal case, since the same port is never handed out twice.
fn disjoint_from(b: &Resources, a: &Resources) -> Resources {
    let mut out = Resources::new();
    for (k, v) in b.iter() {
        let v = match (v, a.get(k)) {
            (Value::Ranges(x), Some(Value::Ranges(y))) => Value::Ranges(x.difference(y)),
            (Value::Set(x), Some(Value::Set(y))) => Value::Set(x.difference(y).cloned().collect()),
            (v, _) => v.clone(),
        };
        out.add_entry(k.clone(), v).unwrap();
    }
    out
}

/// Every value of `r` (small domains only).
fn values(r: &Ranges) -> BTreeSet<u64> {
    r.spans().iter().flat_map(|&(a, b)| a..=b).collect()
}

/// Stored entries are never empty and scalars never negative.
fn assert_well_formed(r: &Resources) -> Result<(), TestCaseError> {
    for (k, v) in r.iter() {
        match v {
            Value::Scalar(m) => prop_assert!(m.0 > 0, "{k:?} holds {m:?}"),
            Value::Ranges(x) => prop_assert!(!x.is_empty(), "{k:?} holds no ranges"),
            Value::Set(s) => prop_assert!(!s.is_empty(), "{k:?} holds an empty set"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_form_round_trips(r in resources_with(MAX_SCALAR_UNITS / 8)) {
        let text = r.to_string();
        let back = Resources::parse(&text);
        prop_assert_eq!(back.as_ref(), Ok(&r), "text {:?}", text);
    }

    #[test]
    fn add_then_subtract_is_identity(a in resources(), b in resources()) {
        let b = disjoint_from(&b, &a);
        let sum = a.checked_add(&b).unwrap();
        prop_assert_eq!(sum.checked_sub(&b).unwrap(), a.clone());
        prop_assert_eq!(sum.checked_sub(&a).unwrap(), b);
    }

    #[test]
    fn contains_iff_subtract_succeeds(a in resources(), b in resources()) {
        prop_assert_eq!(a.contains(&b), a.checked_sub(&b).is_ok());
        prop_assert_eq!(b.contains(&a), b.checked_sub(&a).is_ok());
    }

    #[test]
    fn sum_contains_both_parts(a in resources(), b in resources()) {
        let sum = a.checked_add(&b).unwrap();
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
        prop_assert!(sum.contains(&Resources::new()));
        prop_assert!(a.contains(&a));
    }

    #[test]
    fn addition_is_commutative_and_associative(
        a in resources(), b in resources(), c in resources()
    ) {
        prop_assert_eq!(a.checked_add(&b).unwrap(), b.checked_add(&a).unwrap());
        let left = a.checked_add(&b).unwrap().checked_add(&c).unwrap();
        let right = a.checked_add(&b.checked_add(&c).unwrap()).unwrap();
        prop_assert_eq!(left, right);
    }

    #[test]
    fn subtraction_never_goes_negative_or_leaves_empty_entries(
        a in resources(), b in resources()
    ) {
        assert_well_formed(&a)?;
        match a.checked_sub(&b) {
            Ok(left) => {
                assert_well_formed(&left)?;
                prop_assert!(a.contains(&left));
                // Exact: what is left plus what was taken is what there was.
                prop_assert_eq!(left.checked_add(&b).unwrap(), a);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn overlapping_ranges_and_sets_unite(a in resources(), b in resources()) {
        // With overlap, `a + b - b` loses the shared ports/items but never gains anything, and
        // scalars still come back exactly.
        let sum = a.checked_add(&b).unwrap();
        let back = sum.checked_sub(&b).unwrap();
        assert_well_formed(&back)?;
        prop_assert!(a.contains(&back));
        for name in SCALARS {
            prop_assert_eq!(back.scalar_total(name), a.scalar_total(name));
        }
        prop_assert_eq!(back, disjoint_from(&a, &b));
    }

    #[test]
    fn ranges_match_a_set_model(x in small_ranges(), y in small_ranges()) {
        let (vx, vy) = (values(&x), values(&y));
        prop_assert_eq!(x.count(), vx.len() as u64);
        prop_assert_eq!(values(&x.union(&y)), vx.union(&vy).copied().collect());
        prop_assert_eq!(values(&x.difference(&y)), vx.difference(&vy).copied().collect());
        prop_assert_eq!(x.contains(&y), vy.is_subset(&vx));
        for v in 0..70 {
            prop_assert_eq!(x.contains_value(v), vx.contains(&v));
        }
        // Normal form: sorted, disjoint, not even touching.
        for w in x.spans().windows(2) {
            prop_assert!(w[0].1.saturating_add(1) < w[1].0, "{:?}", x);
        }
    }

    #[test]
    fn take_picks_the_lowest_values(x in small_ranges(), n in 0u64..80) {
        let t = x.take(n);
        let vx = values(&x);
        prop_assert_eq!(t.count(), n.min(x.count()));
        prop_assert!(x.contains(&t));
        let want: BTreeSet<u64> = vx.iter().copied().take(n as usize).collect();
        prop_assert_eq!(values(&t), want);
        // What is left and what was taken partition the original.
        let rest = x.difference(&t);
        prop_assert_eq!(rest.count() + t.count(), x.count());
        prop_assert_eq!(rest.union(&t), x);
    }

    #[test]
    fn wide_ranges_never_overflow(x in wide_ranges(), y in wide_ranges(), n in any::<u64>()) {
        let t = x.take(n);
        prop_assert!(x.contains(&t));
        prop_assert!(t.count() <= x.count());
        let d = x.difference(&y);
        prop_assert!(x.contains(&d));
        let u = x.union(&y);
        prop_assert!(u.contains(&x) && u.contains(&y));
        prop_assert!(u.count() >= x.count().max(y.count()));
    }

    #[test]
    fn milli_text_is_exact(m in 0i64..=MAX_SCALAR_UNITS * 1000) {
        let text = Milli(m).to_string();
        prop_assert_eq!(Milli::parse("x", &text), Ok(Milli(m)), "{}", text);
    }

    #[test]
    fn milli_display_keeps_the_sign(m in prop_oneof![any::<i64>(), -3000i64..3000]) {
        let text = Milli(m).to_string();
        prop_assert_eq!(text.starts_with('-'), m < 0, "{} shown as {}", m, text);
        // The digits are the exact value: parse them back without the sign.
        let digits = text.trim_start_matches('-');
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let frac3 = format!("{frac:0<3}");
        let back = int.parse::<i128>().unwrap() * 1000 + frac3.parse::<i128>().unwrap();
        prop_assert_eq!(back, (m as i128).abs());
    }

    #[test]
    fn parse_never_panics(s in "[a-z(){}\\[\\]:;,.*0-9 -]{0,40}") {
        if let Ok(r) = Resources::parse(&s) {
            assert_well_formed(&r)?;
            prop_assert_eq!(Resources::parse(&r.to_string()), Ok(r));
        }
    }
}

#[test]
fn full_u64_range_counts_without_overflow() {
    let all = Ranges::new(vec![(0, u64::MAX)]);
    assert_eq!(all.count(), u64::MAX, "saturates");
    assert_eq!(all.take(3).to_string(), "[0-2]");
    let top = Ranges::new(vec![(u64::MAX - 1, u64::MAX)]);
    assert_eq!(top.count(), 2);
    assert!(all.contains(&top));
    assert_eq!(all.difference(&top).spans(), &[(0, u64::MAX - 2)]);
}

#[test]
fn adding_opposite_quantities_leaves_no_zero_entry() {
    // `add_entry` takes raw values (e.g. rebuilt from a peer); a sum that comes to zero must
    // disappear so that `==` stays semantic.
    let key = Key {
        name: "cpus".into(),
        role: None,
    };
    let mut r = Resources::new();
    r.add_entry(key.clone(), Value::Scalar(Milli(1500)))
        .unwrap();
    r.add_entry(key, Value::Scalar(Milli(-1500))).unwrap();
    assert!(r.is_empty(), "{r:?}");
    assert_eq!(r, Resources::new());
}
