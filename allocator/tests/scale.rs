//! Rough scale check (ignored by default; run with `--ignored --nocapture`, ideally in release):
//! 10k agents x 1k frameworks, one full cycle and steady-state cycles where 10% of agents
//! return their resources between cycles.

use agora_actors::{AgentId, FrameworkId, FrameworkInfo, Resources, Time};
use agora_allocator::{Allocator, AllocatorEvent, DrfAllocator, DrfConfig};
use std::collections::BTreeMap;
use std::time::Instant;

#[test]
#[ignore]
fn ten_thousand_agents_one_thousand_frameworks() {
    let mut a = DrfAllocator::new(DrfConfig::default()).expect("valid");
    let total = Resources::parse("cpus:16;mem:65536;ports:[31000-32000]").expect("valid");
    for i in 0..10_000 {
        a.handle(
            Time(0),
            AllocatorEvent::AddAgent {
                agent_id: AgentId::new(format!("agent-{i:05}")).expect("valid"),
                hostname: format!("h{i}"),
                total: total.clone(),
                attributes: BTreeMap::new(),
                used: BTreeMap::new(),
            },
        );
    }
    for i in 0..1_000 {
        a.handle(
            Time(0),
            AllocatorEvent::AddFramework {
                framework_id: FrameworkId::new(format!("fw-{i:04}")).expect("valid"),
                info: FrameworkInfo::new("bench"),
                used: BTreeMap::new(),
                active: true,
            },
        );
    }
    let started = Instant::now();
    let first = a.allocate(Time(1));
    println!(
        "first cycle: {} offers in {:?}",
        first.len(),
        started.elapsed()
    );
    assert_eq!(first.len(), 10_000);
    let mut held: BTreeMap<AgentId, _> =
        first.into_iter().map(|x| (x.agent_id.clone(), x)).collect();
    for cycle in 0..5u64 {
        // A tenth of the agents come back (declined without a filter, or tasks ended).
        let returned: Vec<_> = held
            .values()
            .skip(cycle as usize)
            .step_by(10)
            .cloned()
            .collect();
        for x in &returned {
            a.handle(
                Time(2 + cycle),
                AllocatorEvent::Recover {
                    framework_id: x.framework_id.clone(),
                    agent_id: x.agent_id.clone(),
                    resources: x.resources.clone(),
                    refuse_ms: None,
                },
            );
        }
        let started = Instant::now();
        let next = a.allocate(Time(2 + cycle));
        println!(
            "steady cycle: {} offers in {:?}",
            next.len(),
            started.elapsed()
        );
        assert_eq!(next.len(), returned.len());
        held.extend(next.into_iter().map(|x| (x.agent_id.clone(), x)));
    }
    a.check_invariants().expect("consistent");
}
