//! Scenario and property tests of `DrfAllocator` through its public API.

use agora_actors::{AgentId, FrameworkId, FrameworkInfo, Resources, Time};
use agora_allocator::{
    Allocation, Allocator, AllocatorError, AllocatorEvent, DrfAllocator, DrfConfig,
};
use std::collections::{BTreeMap, BTreeSet};

fn r(s: &str) -> Resources {
    Resources::parse(s).expect("test resources parse")
}
fn aid(s: &str) -> AgentId {
    AgentId::new(s).expect("valid agent id")
}
fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s).expect("valid framework id")
}
fn drf() -> DrfAllocator {
    DrfAllocator::new(DrfConfig::default()).expect("default config is valid")
}
fn ok(a: &mut DrfAllocator, now: u64, e: AllocatorEvent) {
    a.try_handle(Time(now), e).expect("event accepted");
    a.check_invariants().expect("ledger consistent");
}
fn add_agent_event(id: &str, total: &str, used: &[(&str, &str)]) -> AllocatorEvent {
    AllocatorEvent::AddAgent {
        agent_id: aid(id),
        hostname: format!("{id}.example"),
        total: r(total),
        attributes: BTreeMap::new(),
        used: used.iter().map(|(f, u)| (fid(f), r(u))).collect(),
    }
}
fn add_agent(a: &mut DrfAllocator, id: &str, total: &str) {
    ok(a, 0, add_agent_event(id, total, &[]));
}
fn add_fw_event(id: &str, role: &str, active: bool) -> AllocatorEvent {
    let mut info = FrameworkInfo::new(id);
    info.roles = vec![role.to_string()];
    AllocatorEvent::AddFramework {
        framework_id: fid(id),
        info,
        used: BTreeMap::new(),
        active,
    }
}
fn add_fw(a: &mut DrfAllocator, id: &str) {
    ok(a, 0, add_fw_event(id, "*", true));
}
fn recover(
    a: &mut DrfAllocator,
    now: u64,
    fw: &str,
    agent: &str,
    res: &Resources,
    refuse: Option<u64>,
) {
    ok(
        a,
        now,
        AllocatorEvent::Recover {
            framework_id: fid(fw),
            agent_id: aid(agent),
            resources: res.clone(),
            refuse_ms: refuse,
        },
    );
}
fn fw_event(kind: &str, id: &str) -> AllocatorEvent {
    let framework_id = fid(id);
    match kind {
        "activate" => AllocatorEvent::ActivateFramework { framework_id },
        "deactivate" => AllocatorEvent::DeactivateFramework { framework_id },
        "suppress" => AllocatorEvent::Suppress { framework_id },
        "revive" => AllocatorEvent::Revive { framework_id },
        _ => AllocatorEvent::RemoveFramework { framework_id },
    }
}
/// Allocations as `(framework, agent, resources)` strings, easy to compare.
fn summary(allocs: &[Allocation]) -> Vec<(String, String, String)> {
    allocs
        .iter()
        .map(|x| {
            (
                x.framework_id.to_string(),
                x.agent_id.to_string(),
                x.resources.to_string(),
            )
        })
        .collect()
}
fn share_of(a: &DrfAllocator, fw: &str) -> f64 {
    a.shares()
        .into_iter()
        .find(|s| s.framework_id == fid(fw))
        .map(|s| s.dominant_share)
        .expect("framework reported")
}

/// The example of the DRF paper: 9 CPUs and 18 GB; A's tasks need <1 CPU, 4 GB> (memory is its
/// dominant resource, 4/18 = 2/9 a task), B's need <3 CPU, 1 GB> (CPU dominant, 3/9 = 1/3 a task).
/// Each framework launches one task per offer and returns the rest; when an offer is too small
/// it declines for a minute.
///
/// Expected run (ties go to the lower name):
///   shares A=0, B=0       -> A: 1 task, A = 2/9
///   A=2/9, B=0            -> B: 1 task, B = 1/3
///   A=2/9 < B=1/3         -> A: 2 tasks, A = 4/9
///   B=1/3 < A=4/9         -> B: 2 tasks, B = 2/3
///   A=4/9 < B=2/3         -> A: 3 tasks, A = 12 GB/18 GB = 2/3
///   A=2/3 = B=2/3         -> A offered <0 CPU, 4 GB>: no task fits, declines
///   B                     -> offered the same, declines; nothing left to offer.
/// Final: A 3 tasks <3 CPU, 12 GB>, B 2 tasks <6 CPU, 2 GB>, equal dominant shares 2/3.
#[test]
fn drf_paper_example_equalises_dominant_shares() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:9;mem:18432");
    add_fw(&mut a, "A");
    add_fw(&mut a, "B");
    let task: BTreeMap<FrameworkId, Resources> = [
        (fid("A"), r("cpus:1;mem:4096")),
        (fid("B"), r("cpus:3;mem:1024")),
    ]
    .into();
    let mut tasks: BTreeMap<FrameworkId, u32> = BTreeMap::new();
    let mut order = Vec::new();
    let mut now = 0;
    for _round in 0..100 {
        let allocs = a.allocate(Time(now));
        if allocs.is_empty() {
            break;
        }
        assert_eq!(allocs.len(), 1, "one agent: at most one offer per cycle");
        for x in allocs {
            let need = &task[&x.framework_id];
            let fw = x.framework_id.to_string();
            if x.resources.contains(need) {
                *tasks.entry(x.framework_id.clone()).or_default() += 1;
                order.push(fw.clone());
                let rest = x.resources.checked_sub(need).expect("contains");
                recover(&mut a, now, &fw, "s1", &rest, None);
            } else {
                recover(&mut a, now, &fw, "s1", &x.resources, Some(60_000));
            }
        }
        now += 1;
    }
    assert!(a.allocate(Time(now)).is_empty(), "the loop must settle");
    assert_eq!(order, ["A", "B", "A", "B", "A"]);
    assert_eq!(tasks[&fid("A")], 3);
    assert_eq!(tasks[&fid("B")], 2);
    assert_eq!(a.held(&fid("A"), &aid("s1")), Some(&r("cpus:3;mem:12288")));
    assert_eq!(a.held(&fid("B"), &aid("s1")), Some(&r("cpus:6;mem:2048")));
    for fw in ["A", "B"] {
        assert!((share_of(&a, fw) - 2.0 / 3.0).abs() < 1e-12, "{fw}");
    }
}

#[test]
fn offers_are_disjoint_and_never_exceed_free() {
    let mut a = drf();
    // s2 already runs 1 cpu / 512 MB of f1 (re-registration).
    add_agent(&mut a, "s1", "cpus:4;mem:4096;ports:[31000-31099]");
    ok(
        &mut a,
        0,
        add_agent_event("s2", "cpus:2;mem:1024", &[("f1", "cpus:1;mem:512")]),
    );
    add_agent(&mut a, "s3", "cpus:8;mem:512");
    for f in ["f1", "f2", "f3"] {
        add_fw(&mut a, f);
    }
    let before: BTreeMap<AgentId, Resources> = ["s1", "s2", "s3"]
        .iter()
        .map(|s| (aid(s), a.free(&aid(s)).expect("known").clone()))
        .collect();
    let allocs = a.allocate(Time(0));
    let mut seen = BTreeSet::new();
    for x in &allocs {
        assert!(seen.insert(x.agent_id.clone()), "agent offered twice");
        assert!(before[&x.agent_id].contains(&x.resources), "{x:?}");
        // Mesos semantics: the whole free amount goes to one framework.
        assert_eq!(before[&x.agent_id], x.resources);
    }
    assert_eq!(allocs.len(), 3);
    a.check_invariants().expect("consistent");
    // Everything is offered now: nothing to offer until something comes back.
    assert!(a.allocate(Time(1)).is_empty());
    assert_eq!(a.free(&aid("s2")), Some(&Resources::new()));
    // Totals: 14 cpus, 5632 MB. f1 starts with max(1/14, 512/5632) = 512/5632; f2, f3 at 0.
    // Visiting s1, s2, s3: s1 -> f2 (0 ties f3, name); f2 = 4096/5632.
    //                      s2 -> f3 (0); f3 gets cpus:1;mem:512 = 512/5632.
    //                      s3 -> f1 (512/5632 ties f3 exactly, name).
    assert_eq!(
        summary(&allocs)
            .iter()
            .map(|(f, s, _)| (f.as_str(), s.as_str()))
            .collect::<Vec<_>>(),
        [("f2", "s1"), ("f3", "s2"), ("f1", "s3")]
    );
}

#[test]
fn recovered_resources_are_reoffered_to_the_lowest_share() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096");
    add_fw(&mut a, "A");
    add_fw(&mut a, "B");
    // Tie at 0: A (name) gets the whole agent, launches a half-size task, returns the rest.
    let first = a.allocate(Time(0));
    assert_eq!(
        summary(&first),
        [("A".into(), "s1".into(), "cpus:4;mem:4096".into())]
    );
    recover(&mut a, 0, "A", "s1", &r("cpus:2;mem:2048"), None);
    // A = 1/2, B = 0: the returned half goes to B.
    let second = a.allocate(Time(1));
    assert_eq!(
        summary(&second),
        [("B".into(), "s1".into(), "cpus:2;mem:2048".into())]
    );
    // A's task ends: its resources come back and, A now at 0 < B at 1/2, are offered to A.
    recover(&mut a, 2, "A", "s1", &r("cpus:2;mem:2048"), None);
    assert_eq!(share_of(&a, "A"), 0.0);
    let third = a.allocate(Time(3));
    assert_eq!(
        summary(&third),
        [("A".into(), "s1".into(), "cpus:2;mem:2048".into())]
    );
}

#[test]
fn decline_filter_withholds_the_agent_from_that_framework_until_it_expires() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096");
    add_agent(&mut a, "s2", "cpus:4;mem:4096");
    add_fw(&mut a, "A");
    // The default cap (1000 a cycle) lets A take both agents.
    let all = a.allocate(Time(0));
    assert_eq!(all.len(), 2);
    // A declines s1 for 5 s, and returns s2 without a filter.
    recover(&mut a, 0, "A", "s1", &r("cpus:4;mem:4096"), Some(5_000));
    recover(&mut a, 0, "A", "s2", &r("cpus:4;mem:4096"), None);
    assert_eq!(a.next_wakeup(), Some(Time(5_000)));
    assert!(a.is_filtered(&fid("A"), &aid("s1"), Time(4_999)));
    // Before expiry: only s2 is offered to A.
    let during = a.allocate(Time(1_000));
    assert_eq!(
        summary(&during),
        [("A".into(), "s2".into(), "cpus:4;mem:4096".into())]
    );
    // B arrives: the filter is A's alone, so B gets s1 at once.
    add_fw(&mut a, "B");
    let to_b = a.allocate(Time(1_001));
    assert_eq!(
        summary(&to_b),
        [("B".into(), "s1".into(), "cpus:4;mem:4096".into())]
    );
    recover(
        &mut a,
        1_002,
        "B",
        "s1",
        &r("cpus:4;mem:4096"),
        Some(60_000),
    );
    assert!(a.allocate(Time(4_999)).is_empty(), "A filtered, B filtered");
    // At expiry the filter is gone and s1 goes to A again.
    let after = a.allocate(Time(5_000));
    assert_eq!(
        summary(&after),
        [("A".into(), "s1".into(), "cpus:4;mem:4096".into())]
    );
    assert!(!a.is_filtered(&fid("A"), &aid("s1"), Time(5_000)));
    assert_eq!(a.next_wakeup(), Some(Time(61_002)), "B's filter remains");
}

#[test]
fn longer_filter_wins_and_huge_ones_are_clamped() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:1;mem:64");
    add_fw(&mut a, "A");
    let none = r("");
    recover(&mut a, 0, "A", "s1", &none, Some(10_000));
    recover(&mut a, 0, "A", "s1", &none, Some(1_000));
    assert_eq!(a.next_wakeup(), Some(Time(10_000)));
    recover(&mut a, 0, "A", "s1", &none, Some(u64::MAX));
    let year_ms = 365 * 86_400 * 1000;
    assert_eq!(a.next_wakeup(), Some(Time(year_ms)));
    // A zero refusal is no filter at all.
    ok(&mut a, 0, fw_event("revive", "A"));
    recover(&mut a, 0, "A", "s1", &none, Some(0));
    assert_eq!(a.next_wakeup(), None);
}

#[test]
fn suppressed_frameworks_get_nothing_until_revived() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096");
    add_fw(&mut a, "A");
    ok(&mut a, 0, fw_event("suppress", "A"));
    assert!(a.allocate(Time(0)).is_empty());
    ok(&mut a, 1, fw_event("revive", "A"));
    assert_eq!(a.allocate(Time(1)).len(), 1);
    // Revive also clears decline filters.
    recover(&mut a, 2, "A", "s1", &r("cpus:4;mem:4096"), Some(60_000));
    assert!(a.allocate(Time(3)).is_empty());
    ok(&mut a, 4, fw_event("revive", "A"));
    assert_eq!(a.next_wakeup(), None);
    assert_eq!(a.allocate(Time(5)).len(), 1);
}

#[test]
fn inactive_frameworks_get_nothing_but_keep_their_share() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096");
    add_agent(&mut a, "s2", "cpus:4;mem:4096");
    ok(&mut a, 0, add_fw_event("A", "*", false));
    assert!(a.allocate(Time(0)).is_empty());
    ok(&mut a, 0, fw_event("activate", "A"));
    assert_eq!(a.allocate(Time(1)).len(), 2);
    recover(&mut a, 2, "A", "s2", &r("cpus:4;mem:4096"), None);
    ok(&mut a, 2, fw_event("deactivate", "A"));
    assert!(a.allocate(Time(3)).is_empty(), "deactivated: s2 stays free");
    // What it still holds counts: 4 of 8 cpus.
    assert_eq!(share_of(&a, "A"), 0.5);
    add_fw(&mut a, "B");
    let to_b = a.allocate(Time(4));
    assert_eq!(
        summary(&to_b),
        [("B".into(), "s2".into(), "cpus:4;mem:4096".into())]
    );
}

#[test]
fn remove_agent_and_remove_framework_clean_up() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096");
    add_agent(&mut a, "s2", "cpus:4;mem:4096");
    add_agent(&mut a, "s3", "cpus:4;mem:4096");
    add_fw(&mut a, "A");
    add_fw(&mut a, "B");
    let cycle = a.allocate(Time(0));
    // Visiting s1, s2, s3: A (tie, name), B (0 < 1/3), A (1/3 = 1/3, name).
    assert_eq!(
        cycle
            .iter()
            .map(|x| x.framework_id.to_string())
            .collect::<Vec<_>>(),
        ["A", "B", "A"]
    );
    // A declines s3 with a filter.
    recover(&mut a, 0, "A", "s3", &r("cpus:4;mem:4096"), Some(30_000));
    ok(
        &mut a,
        1,
        AllocatorEvent::RemoveAgent {
            agent_id: aid("s1"),
        },
    );
    // A's s1 share is gone with the agent: A 0/8, B 4/8.
    assert_eq!(share_of(&a, "A"), 0.0);
    assert_eq!(share_of(&a, "B"), 0.5);
    let late = AllocatorEvent::Recover {
        framework_id: fid("A"),
        agent_id: aid("s1"),
        resources: r("cpus:4"),
        refuse_ms: None,
    };
    assert_eq!(
        a.try_handle(Time(2), late),
        Err(AllocatorError::UnknownAgent(aid("s1")))
    );
    ok(
        &mut a,
        3,
        AllocatorEvent::RemoveAgent {
            agent_id: aid("s3"),
        },
    );
    assert_eq!(
        a.next_wakeup(),
        None,
        "filters on a removed agent go with it"
    );
    // Removing B frees s2 for A.
    ok(&mut a, 4, fw_event("remove", "B"));
    assert!(!a.has_framework(&fid("B")));
    assert_eq!(a.free(&aid("s2")), Some(&r("cpus:4;mem:4096")));
    let next = a.allocate(Time(5));
    assert_eq!(
        summary(&next),
        [("A".into(), "s2".into(), "cpus:4;mem:4096".into())]
    );
    assert_eq!(
        a.try_handle(Time(6), fw_event("suppress", "B")),
        Err(AllocatorError::UnknownFramework(fid("B")))
    );
    assert_eq!(a.agent_count(), 1);
    assert_eq!(a.shares().len(), 1);
}

#[test]
fn recovering_more_than_held_is_clamped() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096;ports:[31000-31009]");
    add_fw(&mut a, "A");
    add_fw(&mut a, "B");
    assert_eq!(a.allocate(Time(0)).len(), 1);
    // More cpus than held, ports partly outside the agent, a resource it never had.
    let too_much = r("cpus:8;mem:96;ports:[31008-31020];gpus:1");
    recover(&mut a, 1, "A", "s1", &too_much, None);
    assert_eq!(
        a.held(&fid("A"), &aid("s1")),
        Some(&r("mem:4000;ports:[31000-31007]"))
    );
    assert_eq!(
        a.free(&aid("s1")),
        Some(&r("cpus:4;mem:96;ports:[31008-31009]"))
    );
    // B holds nothing on s1: nothing changes.
    recover(&mut a, 1, "B", "s1", &r("cpus:1"), None);
    assert_eq!(
        a.free(&aid("s1")),
        Some(&r("cpus:4;mem:96;ports:[31008-31009]"))
    );
}

#[test]
fn per_cycle_cap_and_rotating_start_agent() {
    let cfg = DrfConfig {
        max_offers_per_framework_per_cycle: 2,
        ..DrfConfig::default()
    };
    let mut a = DrfAllocator::new(cfg).expect("valid");
    for s in ["s1", "s2", "s3", "s4", "s5"] {
        add_agent(&mut a, s, "cpus:1;mem:128");
    }
    add_fw(&mut a, "A");
    let counts: Vec<usize> = (0..4).map(|t| a.allocate(Time(t)).len()).collect();
    assert_eq!(counts, [2, 2, 1, 0]);

    // Cap 1: returning each offer, A is offered s1, s2, s3, then s1 again.
    let cfg = DrfConfig {
        max_offers_per_framework_per_cycle: 1,
        ..DrfConfig::default()
    };
    let mut a = DrfAllocator::new(cfg).expect("valid");
    for s in ["s1", "s2", "s3"] {
        add_agent(&mut a, s, "cpus:1;mem:128");
    }
    add_fw(&mut a, "A");
    let mut visited = Vec::new();
    for t in 0..4 {
        let allocs = a.allocate(Time(t));
        assert_eq!(allocs.len(), 1);
        let x = &allocs[0];
        visited.push(x.agent_id.to_string());
        recover(&mut a, t, "A", x.agent_id.as_str(), &x.resources, None);
    }
    assert_eq!(visited, ["s1", "s2", "s3", "s1"]);
}

#[test]
fn crumbs_below_the_minimum_are_not_offered() {
    let mut a = drf();
    add_agent(&mut a, "tiny", "cpus:0.009;mem:31;disk:100");
    add_agent(&mut a, "cpu", "cpus:0.01");
    add_agent(&mut a, "mem", "mem:32;disk:10");
    add_fw(&mut a, "A");
    let mut got: Vec<String> = a
        .allocate(Time(0))
        .iter()
        .map(|x| x.agent_id.to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["cpu", "mem"]);
    let strict = DrfConfig {
        min_allocatable_cpus_milli: 1000,
        min_allocatable_mem_mb: 1024,
        ..DrfConfig::default()
    };
    assert!(!strict.is_allocatable(&r("cpus:0.5;mem:1000")));
    assert!(strict.is_allocatable(&r("cpus:1")));
    assert!(!strict.is_allocatable(&Resources::new()));
}

#[test]
fn reserved_resources_go_only_to_their_role() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:2;cpus(ads):4;mem:1024");
    ok(&mut a, 0, add_fw_event("a-web", "web", true));
    let first = a.allocate(Time(0));
    assert_eq!(
        summary(&first),
        [("a-web".into(), "s1".into(), "cpus:2;mem:1024".into())]
    );
    // The reservation stays free: nobody else can use it.
    assert!(a.allocate(Time(1)).is_empty());
    ok(&mut a, 2, add_fw_event("b-ads", "ads/backend", true));
    let second = a.allocate(Time(2));
    assert_eq!(
        summary(&second),
        [("b-ads".into(), "s1".into(), "cpus(ads):4".into())]
    );
}

#[test]
fn reported_use_is_counted_once_and_clamped_to_capacity() {
    let mut a = drf();
    // The agent re-registers first, with tasks of X (not yet re-subscribed) above capacity.
    ok(
        &mut a,
        0,
        add_agent_event("s1", "cpus:4;mem:4096", &[("X", "cpus:6;mem:1024")]),
    );
    assert_eq!(a.held(&fid("X"), &aid("s1")), Some(&r("cpus:4;mem:1024")));
    assert!(
        a.allocate(Time(0)).is_empty(),
        "X is an inactive placeholder; cpus gone"
    );
    // X re-subscribes reporting the same tasks: not counted twice. An unknown agent is skipped.
    let mut info = FrameworkInfo::new("X");
    info.roles = vec!["*".into()];
    let used: BTreeMap<AgentId, Resources> = [
        (aid("s1"), r("cpus:4;mem:1024")),
        (aid("gone"), r("cpus:1")),
    ]
    .into();
    ok(
        &mut a,
        1,
        AllocatorEvent::AddFramework {
            framework_id: fid("X"),
            info,
            used,
            active: true,
        },
    );
    assert_eq!(a.held(&fid("X"), &aid("s1")), Some(&r("cpus:4;mem:1024")));
    assert_eq!(a.free(&aid("s1")), Some(&r("mem:3072")));
    assert_eq!(share_of(&a, "X"), 1.0);
    // The memory left is still worth offering.
    assert_eq!(a.allocate(Time(2)).len(), 1);
}

#[test]
fn unknown_ids_are_errors_and_handle_never_panics() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:1;mem:64");
    for kind in ["activate", "deactivate", "suppress", "revive", "remove"] {
        assert_eq!(
            a.try_handle(Time(0), fw_event(kind, "nope")),
            Err(AllocatorError::UnknownFramework(fid("nope"))),
            "{kind}"
        );
        a.handle(Time(0), fw_event(kind, "nope"));
    }
    let unknown_agent = AllocatorEvent::RemoveAgent {
        agent_id: aid("nope"),
    };
    assert!(a.try_handle(Time(0), unknown_agent.clone()).is_err());
    a.handle(Time(0), unknown_agent);
    let rec = AllocatorEvent::Recover {
        framework_id: fid("nope"),
        agent_id: aid("s1"),
        resources: r("cpus:1"),
        refuse_ms: Some(5),
    };
    assert!(a.try_handle(Time(0), rec).is_err());
    // Adding an agent twice replaces it.
    add_agent(&mut a, "s1", "cpus:2;mem:64");
    assert_eq!(a.total(&aid("s1")), Some(&r("cpus:2;mem:64")));
    assert_eq!(a.hostname(&aid("s1")), Some("s1.example"));
    a.check_invariants().expect("consistent");
}

#[test]
fn bad_config_is_refused() {
    let zero = DrfConfig {
        max_offers_per_framework_per_cycle: 0,
        ..DrfConfig::default()
    };
    assert!(matches!(
        DrfAllocator::new(zero),
        Err(AllocatorError::Config(_))
    ));
    let huge = DrfConfig {
        min_allocatable_mem_mb: u64::MAX,
        ..DrfConfig::default()
    };
    assert!(matches!(
        DrfAllocator::new(huge),
        Err(AllocatorError::Config(_))
    ));
    assert_eq!(drf().name(), "drf");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        AddAgent {
            a: u8,
            cpus: u8,
            mem: u16,
            reserved: bool,
            used: Option<(u8, u8)>,
        },
        RemoveAgent(u8),
        AddFramework {
            f: u8,
            active: bool,
            used: Option<(u8, u8)>,
        },
        Framework {
            kind: u8,
            f: u8,
        },
        Recover {
            f: u8,
            a: u8,
            cpus: u8,
            mem: u16,
            port: u16,
            refuse: Option<u16>,
        },
        RecoverHalf {
            f: u8,
            a: u8,
        },
        Allocate {
            advance_ms: u16,
        },
        /// Switch the running policy (drf, priority, lottery) mid-run.
        Switch(u8),
        /// Set role r1's weight (thousandths).
        Weight(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (
                0..4u8,
                0..9u8,
                0..4096u16,
                any::<bool>(),
                proptest::option::of((0..4u8, 0..9u8))
            )
                .prop_map(|(a, cpus, mem, reserved, used)| Op::AddAgent {
                    a,
                    cpus,
                    mem,
                    reserved,
                    used
                }),
            (0..4u8).prop_map(Op::RemoveAgent),
            (
                0..4u8,
                any::<bool>(),
                proptest::option::of((0..4u8, 0..9u8))
            )
                .prop_map(|(f, active, used)| Op::AddFramework { f, active, used }),
            (0..5u8, 0..4u8).prop_map(|(kind, f)| Op::Framework { kind, f }),
            (
                0..4u8,
                0..4u8,
                0..10u8,
                0..5000u16,
                30990..31015u16,
                proptest::option::of(0..3000u16)
            )
                .prop_map(|(f, a, cpus, mem, port, refuse)| Op::Recover {
                    f,
                    a,
                    cpus,
                    mem,
                    port,
                    refuse
                }),
            (0..4u8, 0..4u8).prop_map(|(f, a)| Op::RecoverHalf { f, a }),
            (0..2000u16).prop_map(|advance_ms| Op::Allocate { advance_ms }),
            (0..2000u16).prop_map(|advance_ms| Op::Allocate { advance_ms }),
            (0..3u8).prop_map(Op::Switch),
            (1..5000u16).prop_map(Op::Weight),
        ]
    }

    fn agent_name(a: u8) -> String {
        format!("s{a}")
    }
    fn fw_name(f: u8) -> String {
        format!("f{f}")
    }

    /// What the test expects of frameworks: (active, suppressed) per known framework.
    type Model = BTreeMap<FrameworkId, (bool, bool)>;

    fn event(op: &Op, a: &DrfAllocator, model: &mut Model) -> Option<AllocatorEvent> {
        Some(match *op {
            Op::AddAgent {
                a: i,
                cpus,
                mem,
                reserved,
                used,
            } => {
                let res = if reserved { ";cpus(r1):2" } else { "" };
                let total = format!("cpus:{cpus};mem:{mem};ports:[31000-31009]{res}");
                let used: Vec<(String, String)> = used
                    .map(|(f, c)| (fw_name(f), format!("cpus:{c};ports:[31000-31001]")))
                    .into_iter()
                    .collect();
                for (f, _) in &used {
                    model.entry(fid(f)).or_insert((false, false));
                }
                let used: Vec<(&str, &str)> =
                    used.iter().map(|(f, u)| (f.as_str(), u.as_str())).collect();
                add_agent_event(&agent_name(i), &total, &used)
            }
            Op::RemoveAgent(i) => AllocatorEvent::RemoveAgent {
                agent_id: aid(&agent_name(i)),
            },
            Op::AddFramework { f, active, used } => {
                let role = if f % 2 == 0 { "*" } else { "r1" };
                let entry = model.entry(fid(&fw_name(f))).or_insert((false, false));
                entry.0 = active;
                let AllocatorEvent::AddFramework {
                    framework_id, info, ..
                } = add_fw_event(&fw_name(f), role, active)
                else {
                    return None;
                };
                let used = used
                    .map(|(ag, c)| (aid(&agent_name(ag)), r(&format!("cpus:{c}"))))
                    .into_iter()
                    .collect();
                AllocatorEvent::AddFramework {
                    framework_id,
                    info,
                    used,
                    active,
                }
            }
            Op::Framework { kind, f } => {
                let kinds = ["activate", "deactivate", "suppress", "revive", "remove"];
                let kind = kinds[kind as usize % kinds.len()];
                let id = fid(&fw_name(f));
                if let Some(state) = model.get_mut(&id) {
                    match kind {
                        "activate" => state.0 = true,
                        "deactivate" => state.0 = false,
                        "suppress" => state.1 = true,
                        "revive" => state.1 = false,
                        _ => {
                            model.remove(&id);
                        }
                    }
                }
                fw_event(kind, &fw_name(f))
            }
            Op::Recover {
                f,
                a: i,
                cpus,
                mem,
                port,
                refuse,
            } => AllocatorEvent::Recover {
                framework_id: fid(&fw_name(f)),
                agent_id: aid(&agent_name(i)),
                resources: r(&format!(
                    "cpus:{cpus};mem:{mem};ports:[{port}-{}]",
                    port + 3
                )),
                refuse_ms: refuse.map(u64::from),
            },
            Op::RecoverHalf { f, a: i } => {
                let held = a.held(&fid(&fw_name(f)), &aid(&agent_name(i)))?;
                let half = Milli(held.scalar_total("cpus").0 / 2);
                AllocatorEvent::Recover {
                    framework_id: fid(&fw_name(f)),
                    agent_id: aid(&agent_name(i)),
                    resources: r(&format!("cpus:{half}")),
                    refuse_ms: None,
                }
            }
            Op::Switch(_) => return None,
            Op::Weight(_) => return None,
            Op::Allocate { .. } => return None,
        })
    }

    use agora_actors::Milli;

    fn check_allocate(a: &mut DrfAllocator, now: Time, model: &Model) -> Result<(), TestCaseError> {
        let free_before: BTreeMap<AgentId, Resources> = (0..4u8)
            .filter_map(|i| {
                let id = aid(&agent_name(i));
                a.free(&id).cloned().map(|f| (id, f))
            })
            .collect();
        // Filters are judged against what the agent has free before the cycle.
        let filtered_before: BTreeSet<(FrameworkId, AgentId)> = model
            .keys()
            .flat_map(|f| free_before.keys().map(move |ag| (f.clone(), ag.clone())))
            .filter(|(f, ag)| a.is_filtered(f, ag, now))
            .collect();
        let allocs = a.allocate(now);
        let mut agents = BTreeSet::new();
        for x in &allocs {
            prop_assert!(
                agents.insert(x.agent_id.clone()),
                "agent offered twice in a cycle"
            );
            let free = free_before.get(&x.agent_id);
            prop_assert!(
                free.is_some_and(|f| f.contains(&x.resources)),
                "over-offer {:?}",
                x
            );
            prop_assert!(!x.resources.is_empty());
            prop_assert_eq!(
                model.get(&x.framework_id),
                Some(&(true, false)),
                "ineligible {:?}",
                x
            );
            prop_assert!(!filtered_before.contains(&(x.framework_id.clone(), x.agent_id.clone())));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn random_events_never_over_allocate(
            policy in 0..3u8,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let names = ["drf", "priority", "lottery"];
            let mut a = drf();
            a.switch_policy(names[policy as usize]).expect("known policy");
            let mut model = Model::new();
            let mut now = Time(0);
            for op in &ops {
                if let Op::Switch(p) = op {
                    // A switch keeps the ledger: invariants (checked below) still hold, and
                    // the sorter is rebuilt from it.
                    let before: Vec<_> = a.shares().into_iter().map(|s| (s.framework_id, s.allocated)).collect();
                    a.switch_policy(names[*p as usize]).expect("known policy");
                    prop_assert_eq!(a.name(), names[*p as usize]);
                    let after: Vec<_> = a.shares().into_iter().map(|s| (s.framework_id, s.allocated)).collect();
                    prop_assert_eq!(before, after);
                } else if let Op::Weight(w) = op {
                    let weights = [("r1".to_string(), agora_allocator::Weight(i64::from(*w)))].into();
                    a.operate(agora_allocator::OperatorCommand::UpdateWeights { weights })
                        .expect("valid weights");
                } else if let Op::Allocate { advance_ms } = op {
                    now = now.plus_ms(u64::from(*advance_ms));
                    check_allocate(&mut a, now, &model)?;
                } else if let Some(e) = event(op, &a, &mut model) {
                    // Unknown ids are fine here: they must be refused without harm.
                    a.handle(now, e);
                }
                if let Err(e) = a.check_invariants() {
                    return Err(TestCaseError::fail(format!("after {op:?}: {e}")));
                }
            }
        }
    }
}

#[test]
fn a_filter_covers_only_what_was_refused_so_freed_resources_are_offered_at_once() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096");
    add_fw(&mut a, "A");
    assert_eq!(a.allocate(Time(0)).len(), 1);
    // A launches a task on 1 CPU and refuses the rest for 5 s (what an accept does).
    recover(&mut a, 0, "A", "s1", &r("cpus:3;mem:3072"), Some(5_000));
    assert!(
        a.allocate(Time(100)).is_empty(),
        "the refused remainder is withheld"
    );
    // The task ends: its resources come back without a filter. Now the agent has more free
    // than A refused, so A is offered all of it before the filter expires (as in Mesos).
    recover(&mut a, 200, "A", "s1", &r("cpus:1;mem:1024"), None);
    let again = a.allocate(Time(300));
    assert_eq!(
        summary(&again),
        [("A".into(), "s1".into(), "cpus:4;mem:4096".into())]
    );
}

/// The ledger indexes holdings and decline filters by agent and framework *slot*, and slots
/// of removed agents and frameworks are reused: nothing of the old occupant may carry over to
/// the new one.
#[test]
fn a_reused_slot_inherits_no_filter_and_no_holding() {
    let mut a = drf();
    add_agent(&mut a, "s1", "cpus:4;mem:4096");
    add_agent(&mut a, "s2", "cpus:4;mem:4096");
    add_fw(&mut a, "A");
    add_fw(&mut a, "B");
    // A gets s1, B gets s2; A declines s1 for an hour and keeps nothing.
    let first = a.allocate(Time(0));
    assert_eq!(first.len(), 2);
    let to_a = first.iter().find(|x| x.framework_id == fid("A")).unwrap();
    let declined = to_a.agent_id.to_string();
    recover(&mut a, 0, "A", &declined, &to_a.resources, Some(3_600_000));
    assert!(a.is_filtered(&fid("A"), &aid(&declined), Time(1)));
    // The declined agent leaves; a new agent takes its slot. A must be offered it.
    ok(
        &mut a,
        1,
        AllocatorEvent::RemoveAgent {
            agent_id: aid(&declined),
        },
    );
    assert_eq!(a.next_wakeup(), None, "the filter left with its agent");
    add_agent(&mut a, "s3", "cpus:2;mem:1024");
    assert!(!a.is_filtered(&fid("A"), &aid("s3"), Time(2)));
    let second = a.allocate(Time(2));
    assert_eq!(
        summary(&second),
        [("A".into(), "s3".into(), "cpus:2;mem:1024".into())]
    );
    // B leaves (its holding returns to the free pool); C takes B's framework slot and holds
    // nothing, and is not filtered anywhere.
    ok(&mut a, 3, fw_event("remove", "B"));
    add_fw(&mut a, "C");
    assert!(a.held(&fid("C"), &aid("s2")).is_none());
    let third = a.allocate(Time(4));
    assert_eq!(
        summary(&third),
        [("C".into(), "s2".into(), "cpus:4;mem:4096".into())]
    );
    assert_eq!(a.held(&fid("C"), &aid("s2")), Some(&r("cpus:4;mem:4096")));
    a.check_invariants().expect("ledger consistent");
}
