//! Roles, weights, hierarchical DRF, strict priority, lottery and runtime switching, through
//! the allocator's public API. Expected shares are worked out in the comments.

use agora_actors::{AgentId, FrameworkId, FrameworkInfo, Resources, Time};
use agora_allocator::{
    Allocation, Allocator, AllocatorEvent, DrfAllocator, DrfConfig, OperatorCommand, PolicyKind,
    Quota, Weight,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn r(s: &str) -> Resources {
    Resources::parse(s).expect("test resources parse")
}
fn aid(s: &str) -> AgentId {
    AgentId::new(s).expect("valid agent id")
}
fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s).expect("valid framework id")
}
fn alloc_with(policy: PolicyKind, cap: usize) -> DrfAllocator {
    let cfg = DrfConfig {
        policy,
        max_offers_per_framework_per_cycle: cap,
        lottery_seed: 7,
        ..DrfConfig::default()
    };
    DrfAllocator::new(cfg).expect("valid config")
}
fn ok(a: &mut DrfAllocator, e: AllocatorEvent) {
    a.try_handle(Time(0), e).expect("event accepted");
    a.check_invariants().expect("ledger consistent");
}
fn add_agents(a: &mut DrfAllocator, n: usize, total: &str) {
    for i in 0..n {
        ok(
            a,
            AllocatorEvent::AddAgent {
                agent_id: aid(&format!("s{i:03}")),
                hostname: format!("h{i}"),
                total: r(total),
                attributes: BTreeMap::new(),
                used: BTreeMap::new(),
            },
        );
    }
}
/// Adds a framework in `role`; a non-zero `priority` becomes the level of the role.
fn add_fw(a: &mut DrfAllocator, id: &str, role: &str, priority: u32) {
    if priority > 0 {
        let priorities = [(role.to_string(), priority)].into();
        a.operate(OperatorCommand::UpdatePriorities { priorities })
            .expect("valid");
    }
    let mut info = FrameworkInfo::new(id);
    info.roles = vec![role.to_string()];
    ok(
        a,
        AllocatorEvent::AddFramework {
            framework_id: fid(id),
            info,
            used: BTreeMap::new(),
            active: true,
        },
    );
}
fn set_weight(a: &mut DrfAllocator, role: &str, w: f64) {
    let weights = [(role.to_string(), Weight::new(role, w).expect("valid"))].into();
    a.operate(OperatorCommand::UpdateWeights { weights })
        .expect("valid");
    a.check_invariants().expect("consistent");
}
/// Agents per framework in `allocs`.
fn counts(allocs: &[Allocation]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for x in allocs {
        *out.entry(x.framework_id.to_string()).or_default() += 1;
    }
    out
}
fn count_map(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Weights 1 (role a) and 3 (role b), 40 identical agents, each framework keeps every offer.
/// The lower weighted share goes next: b takes 3 agents for each 1 of a (b's share over 3
/// catches up with a's after 3). Final: a 10 agents (share 1/4), b 30 (3/4); weighted shares
/// both 1/4.
#[test]
fn weights_give_proportional_shares() {
    let mut a = alloc_with(PolicyKind::Drf, 1000);
    add_agents(&mut a, 40, "cpus:1;mem:1024");
    add_fw(&mut a, "fa", "a", 0);
    add_fw(&mut a, "fb", "b", 0);
    set_weight(&mut a, "b", 3.0);
    let allocs = a.allocate(Time(1));
    assert_eq!(counts(&allocs), count_map(&[("fa", 10), ("fb", 30)]));
    let roles = a.roles();
    let b = roles.iter().find(|x| x.role == "b").expect("role b");
    assert_eq!(b.weight, 3.0);
    assert!((b.dominant_share - 0.25).abs() < 1e-9, "{b:?}");
}

/// Role eng has three frameworks, role ads one; 8 identical agents. Roles are ranked first,
/// so each role gets half (4 agents); within eng the 4 go 2/1/1 (e1 wins ties by name).
/// Flat DRF over frameworks would have given ads only 2.
#[test]
fn roles_first_then_frameworks_within_a_role() {
    let mut a = alloc_with(PolicyKind::Drf, 1000);
    add_agents(&mut a, 8, "cpus:2;mem:2048");
    for f in ["e1", "e2", "e3"] {
        add_fw(&mut a, f, "eng/backend", 0);
    }
    add_fw(&mut a, "x1", "ads", 0);
    let allocs = a.allocate(Time(1));
    assert_eq!(
        counts(&allocs),
        count_map(&[("e1", 2), ("e2", 1), ("e3", 1), ("x1", 4)])
    );
    let shares: BTreeMap<_, _> = a
        .roles()
        .into_iter()
        .map(|x| (x.role, x.dominant_share))
        .collect();
    assert_eq!(shares.get("ads"), Some(&0.5));
    assert_eq!(shares.get("eng/backend"), Some(&0.5));
}

/// gpus excluded from fair sharing. Cluster: cpus 8, mem 8192, gpus 1; s0 is fully used: A
/// <1 cpu, 2048 mem, 1 gpu>, B <3 cpus, 2048 mem>. Counting gpus, A's share is 1/1 and B's
/// 3/8, so the free agent s1 goes to B; excluding gpus, A's share is max(1/8, 1/4) = 1/4 <
/// B's 3/8, so it goes to A.
#[test]
fn excluded_resources_do_not_rank_frameworks() {
    for (excluded, winner) in [(vec![], "B"), (vec!["gpus".to_string()], "A")] {
        let cfg = DrfConfig {
            fair_sharing_excluded: excluded.into_iter().collect(),
            ..DrfConfig::default()
        };
        let mut a = DrfAllocator::new(cfg).expect("valid");
        let used = [
            (fid("A"), r("cpus:1;mem:2048;gpus:1")),
            (fid("B"), r("cpus:3;mem:2048")),
        ]
        .into();
        for (id, total, used) in [
            ("s0", "cpus:4;mem:4096;gpus:1", used),
            ("s1", "cpus:4;mem:4096", BTreeMap::new()),
        ] {
            ok(
                &mut a,
                AllocatorEvent::AddAgent {
                    agent_id: aid(id),
                    hostname: id.into(),
                    total: r(total),
                    attributes: BTreeMap::new(),
                    used,
                },
            );
        }
        add_fw(&mut a, "A", "a", 0);
        add_fw(&mut a, "B", "b", 0);
        let allocs = a.allocate(Time(1));
        let s1: Vec<_> = allocs.iter().filter(|x| x.agent_id == aid("s1")).collect();
        assert_eq!(s1.len(), 1);
        assert_eq!(s1[0].framework_id, fid(winner));
    }
}

/// Strict priority: role prod at level 2 (hi1, hi2), batch at 0 (lo). hi (level 2) gets every agent while it wants them; lo (level 0) gets only
/// what hi refuses, then DRF applies within a level (two level-2 frameworks split evenly).
#[test]
fn strict_priority_order_holds() {
    let mut a = alloc_with(PolicyKind::Priority, 1000);
    add_agents(&mut a, 6, "cpus:1;mem:512");
    add_fw(&mut a, "lo", "batch", 0);
    add_fw(&mut a, "hi1", "prod", 2);
    add_fw(&mut a, "hi2", "prod", 2);
    let allocs = a.allocate(Time(1));
    assert_eq!(counts(&allocs), count_map(&[("hi1", 3), ("hi2", 3)]));
    // hi1 and hi2 decline one agent each for a minute: only then does lo get them.
    let mut back = Vec::new();
    for f in ["hi1", "hi2"] {
        let x = allocs
            .iter()
            .find(|x| x.framework_id == fid(f))
            .expect("has one")
            .clone();
        back.push(x);
    }
    for x in &back {
        ok(
            &mut a,
            AllocatorEvent::Recover {
                framework_id: x.framework_id.clone(),
                agent_id: x.agent_id.clone(),
                resources: x.resources.clone(),
                refuse_ms: Some(60_000),
            },
        );
    }
    // Each declined agent is first offered to the other hi framework (not filtered for it).
    let next = a.allocate(Time(2));
    assert_eq!(counts(&next), count_map(&[("hi1", 1), ("hi2", 1)]));
    for x in &next {
        ok(
            &mut a,
            AllocatorEvent::Recover {
                framework_id: x.framework_id.clone(),
                agent_id: x.agent_id.clone(),
                resources: x.resources.clone(),
                refuse_ms: Some(60_000),
            },
        );
    }
    let last = a.allocate(Time(3));
    assert_eq!(counts(&last), count_map(&[("lo", 2)]));
}

/// Lottery: weights 1 (a) and 3 (b), one agent re-offered 4000 times without filters. b
/// should win 3/4 of the draws: 3000 ± 4 sd (sd = sqrt(4000·0.75·0.25) ≈ 27). Same seed,
/// same sequence.
#[test]
fn lottery_draws_in_proportion_to_entitlement_and_replays() {
    let run = || {
        let mut a = alloc_with(PolicyKind::Lottery, 1000);
        add_agents(&mut a, 1, "cpus:1;mem:512");
        add_fw(&mut a, "fa", "a", 0);
        add_fw(&mut a, "fb", "b", 0);
        set_weight(&mut a, "b", 3.0);
        let mut winners = Vec::new();
        for t in 0..4000u64 {
            let allocs = a.allocate(Time(t));
            assert_eq!(allocs.len(), 1);
            let x = &allocs[0];
            winners.push(x.framework_id.to_string());
            a.try_handle(
                Time(t),
                AllocatorEvent::Recover {
                    framework_id: x.framework_id.clone(),
                    agent_id: x.agent_id.clone(),
                    resources: x.resources.clone(),
                    refuse_ms: None,
                },
            )
            .expect("recover");
        }
        winners
    };
    let first = run();
    let b = first.iter().filter(|w| *w == "fb").count();
    assert!((2890..=3110).contains(&b), "fb won {b} of 4000");
    assert_eq!(first, run(), "same seed, same draws");
}

/// Switching policy mid-run keeps every allocation: same holdings, the ledger still adds up,
/// and releasing everything afterwards returns every agent to free.
#[test]
fn switching_at_runtime_preserves_every_allocation() {
    let mut a = alloc_with(PolicyKind::Drf, 3);
    add_agents(&mut a, 10, "cpus:4;mem:4096");
    add_fw(&mut a, "f1", "a", 1);
    add_fw(&mut a, "f2", "b", 0);
    let mut held: Vec<Allocation> = a.allocate(Time(1));
    for name in ["priority", "lottery", "drf", "lottery"] {
        let before: Vec<_> = a.shares().into_iter().map(|s| s.allocated).collect();
        a.switch_policy(name).expect("known");
        assert_eq!(a.name(), name);
        a.check_invariants().expect("consistent after switch");
        let after: Vec<_> = a.shares().into_iter().map(|s| s.allocated).collect();
        assert_eq!(before, after);
        held.extend(a.allocate(Time(2)));
    }
    assert!(a.switch_policy("fifo").is_err());
    // Every agent was offered exactly once in total (no duplicate across switches).
    let mut agents: Vec<_> = held.iter().map(|x| x.agent_id.clone()).collect();
    agents.sort();
    agents.dedup();
    assert_eq!(agents.len(), held.len());
    assert_eq!(held.len(), 10);
    for x in &held {
        ok(
            &mut a,
            AllocatorEvent::Recover {
                framework_id: x.framework_id.clone(),
                agent_id: x.agent_id.clone(),
                resources: x.resources.clone(),
                refuse_ms: None,
            },
        );
    }
    for i in 0..10 {
        let id = aid(&format!("s{i:03}"));
        assert_eq!(a.free(&id), a.total(&id));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Equal demand (every framework keeps whole identical agents): DRF ends with agent counts
    /// differing by at most one, i.e. shares within one task's size.
    #[test]
    fn drf_shares_converge_with_equal_demand(frameworks in 2..6usize, agents in 1..60usize) {
        let mut a = alloc_with(PolicyKind::Drf, 1000);
        add_agents(&mut a, agents, "cpus:2;mem:1024");
        for i in 0..frameworks {
            add_fw(&mut a, &format!("f{i}"), &format!("r{i}"), 0);
        }
        let c = counts(&a.allocate(Time(1)));
        let max = c.values().copied().max().unwrap_or(0);
        let min = if c.len() < frameworks { 0 } else { c.values().copied().min().unwrap_or(0) };
        prop_assert!(max - min <= 1, "{c:?}");
        prop_assert_eq!(c.values().sum::<usize>(), agents);
    }

    /// Two roles with weights wa, wb: the allocator always gives the next agent to the lower
    /// count/weight, so at the end |na/wa - nb/wb| is at most one agent's worth of the larger
    /// step (1/min(wa, wb)).
    #[test]
    fn weights_give_proportional_shares_property(wa in 1..6u32, wb in 1..6u32, agents in 1..80usize) {
        let mut a = alloc_with(PolicyKind::Drf, 1000);
        add_agents(&mut a, agents, "cpus:1;mem:1024");
        add_fw(&mut a, "fa", "a", 0);
        add_fw(&mut a, "fb", "b", 0);
        set_weight(&mut a, "a", f64::from(wa));
        set_weight(&mut a, "b", f64::from(wb));
        let c = counts(&a.allocate(Time(1)));
        let na = *c.get("fa").unwrap_or(&0) as f64;
        let nb = *c.get("fb").unwrap_or(&0) as f64;
        let step = 1.0 / f64::from(wa.min(wb));
        prop_assert!((na / f64::from(wa) - nb / f64::from(wb)).abs() <= step + 1e-9, "{c:?}");
        prop_assert_eq!((na + nb) as usize, agents);
    }

    /// Strict priority: with several levels all wanting everything, every agent goes to a
    /// framework of the highest level present.
    #[test]
    fn priority_order_holds(levels in proptest::collection::vec(0..4u32, 1..6), agents in 1..30usize) {
        let mut a = alloc_with(PolicyKind::Priority, 1000);
        add_agents(&mut a, agents, "cpus:1;mem:1024");
        for (i, l) in levels.iter().enumerate() {
            add_fw(&mut a, &format!("f{i}"), &format!("r{i}"), *l);
        }
        let top = levels.iter().copied().max().unwrap_or(0);
        for x in a.allocate(Time(1)) {
            let i: usize = x.framework_id.to_string()[1..].parse().expect("index");
            prop_assert_eq!(levels[i], top);
        }
    }
}

fn set_quota(a: &mut DrfAllocator, role: &str, guarantee: &str, limit: Option<&str>) {
    let quota = Some(Quota::parse(role, guarantee, limit).expect("valid quota"));
    a.operate(OperatorCommand::SetQuota {
        role: role.to_string(),
        quota,
    })
    .expect("quota accepted");
}
fn role_cpus(allocs: &[Allocation], prefix: &str) -> i64 {
    allocs
        .iter()
        .filter(|x| x.framework_id.to_string().starts_with(prefix))
        .map(|x| x.resources.scalar_total("cpus").0 / 1000)
        .sum()
}

/// Headroom: 4 agents of 4 CPUs (16). Role g is guaranteed 8 CPUs but its framework is not
/// asking yet. X (no quota) may take only what leaves 8 free: 2 agents. When G comes, it gets
/// the other 2 — its guarantee, at once.
#[test]
fn guarantee_headroom_is_held_back_and_served_first() {
    let mut a = alloc_with(PolicyKind::Drf, 1000);
    add_agents(&mut a, 4, "cpus:4;mem:1024");
    set_quota(&mut a, "g", "cpus:8", None);
    add_fw(&mut a, "X", "x", 0);
    let first = a.allocate(Time(1));
    assert_eq!(counts(&first), count_map(&[("X", 2)]));
    add_fw(&mut a, "G", "g", 0);
    let second = a.allocate(Time(2));
    assert_eq!(counts(&second), count_map(&[("G", 2)]));
    let roles = a.roles();
    let g = roles.iter().find(|r| r.role == "g").expect("g listed");
    assert!(g.quota.is_some());
}

/// Limit: role l may hold at most 6 CPUs; with 4 agents of 4 CPUs its framework gets one
/// agent (4 CPUs; a second would make 8). Nothing else wants the rest.
#[test]
fn limits_are_never_exceeded() {
    let mut a = alloc_with(PolicyKind::Drf, 1000);
    add_agents(&mut a, 4, "cpus:4;mem:1024");
    set_quota(&mut a, "l", "", Some("cpus:6"));
    add_fw(&mut a, "L", "l", 0);
    assert_eq!(counts(&a.allocate(Time(1))), count_map(&[("L", 1)]));
    assert!(a.allocate(Time(2)).is_empty());
    let bad = a.operate(OperatorCommand::SetQuota {
        role: "l".into(),
        quota: Some(agora_allocator::Quota {
            guarantee: [("cpus".to_string(), agora_actors::Milli(9000))].into(),
            limit: Some([("cpus".to_string(), agora_actors::Milli(1000))].into()),
        }),
    });
    assert!(bad.unwrap_err().to_string().contains("above its limit"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Under every policy: a role with a limit never holds more than it, and a role with a
    /// feasible guarantee (at most the cluster) gets at least it in one cycle when it asks.
    #[test]
    fn quota_guarantees_met_and_limits_held(
        policy in 0..3usize,
        agents in 1..12usize,
        cpus in 1..9u32,
        guarantee in 0..40i64,
        limit in 1..40i64,
    ) {
        let mut a = alloc_with(PolicyKind::ALL[policy], 1000);
        add_agents(&mut a, agents, &format!("cpus:{cpus};mem:1024"));
        let total = agents as i64 * i64::from(cpus);
        let guarantee = guarantee.min(total);
        set_quota(&mut a, "g", &format!("cpus:{guarantee}"), None);
        set_quota(&mut a, "l", "", Some(&format!("cpus:{limit}")));
        for (f, role) in [("a1", "x"), ("g1", "g"), ("l1", "l"), ("l2", "l")] {
            add_fw(&mut a, f, role, 0);
        }
        let allocs = a.allocate(Time(1));
        prop_assert!(role_cpus(&allocs, "l") <= limit, "{allocs:?}");
        prop_assert!(role_cpus(&allocs, "g") >= guarantee, "{allocs:?}");
        a.check_invariants().map_err(TestCaseError::fail)?;
    }
}
