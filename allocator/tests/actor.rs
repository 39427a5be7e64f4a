//! The allocator actor shell: coalescing, reporting, and wakeups.

use actix::prelude::*;
use agora_actors::{AgentId, FrameworkId, FrameworkInfo, Resources};
use agora_allocator::{
    AllocateNow, Allocations, AllocatorActor, AllocatorConfig, AllocatorError, AllocatorEvent,
    DrfAllocator, DrfConfig, GetShares,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Stands in for the master: records every `Allocations` message.
struct Collector(Arc<Mutex<Vec<Allocations>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Allocations> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Allocations, _: &mut Context<Self>) {
        if let Ok(mut got) = self.0.lock() {
            got.push(msg);
        }
    }
}

fn start(config: AllocatorConfig) -> (Addr<AllocatorActor>, Arc<Mutex<Vec<Allocations>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(got.clone()).start();
    let policy = DrfAllocator::new(DrfConfig::default()).expect("valid config");
    let actor = AllocatorActor::new(Box::new(policy), config, collector.recipient())
        .expect("valid config")
        .start();
    (actor, got)
}

fn add_agent(i: usize) -> AllocatorEvent {
    AllocatorEvent::AddAgent {
        agent_id: AgentId::new(format!("s{i:03}")).expect("valid id"),
        hostname: format!("host{i}"),
        total: Resources::parse("cpus:2;mem:2048").expect("valid resources"),
        attributes: BTreeMap::new(),
        used: BTreeMap::new(),
    }
}

fn add_framework(i: usize) -> AllocatorEvent {
    AllocatorEvent::AddFramework {
        framework_id: FrameworkId::new(format!("f{i:03}")).expect("valid id"),
        info: FrameworkInfo::new("test"),
        used: BTreeMap::new(),
        active: true,
    }
}

#[actix_rt::test]
async fn a_burst_of_100_events_produces_one_allocations_message() {
    // The interval is far away, so only the coalesced run can produce offers.
    let (actor, got) = start(AllocatorConfig {
        allocation_interval_ms: 60_000,
        coalesce_ms: 20,
    });
    for i in 0..50 {
        actor.do_send(add_agent(i));
        actor.do_send(add_framework(i));
    }
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    // Copy out and release the lock before awaiting: the collector shares this thread.
    let got: Vec<Allocations> = got.lock().expect("not poisoned").clone();
    assert_eq!(got.len(), 1, "100 events, one run");
    // 50 equal agents, 50 frameworks: DRF gives each framework exactly one agent.
    let allocs = &got[0].allocations;
    assert_eq!(allocs.len(), 50);
    let frameworks: BTreeSet<_> = allocs.iter().map(|a| a.framework_id.clone()).collect();
    let agents: BTreeSet<_> = allocs.iter().map(|a| a.agent_id.clone()).collect();
    assert_eq!((frameworks.len(), agents.len()), (50, 50));

    let report = actor.send(GetShares).await.expect("actor alive");
    assert_eq!(report.allocator, "drf");
    assert_eq!(report.runs, 1);
    assert!(report.last_run_at.is_some());
    assert_eq!(report.last_run_micros, got[0].run_micros);
    assert_eq!(report.shares.len(), 50);
    // Each holds 2 of 100 cpus and 2048 of 102400 MB: 1/50.
    assert!(report
        .shares
        .iter()
        .all(|s| (s.dominant_share - 0.02).abs() < 1e-12));
}

#[actix_rt::test]
async fn interval_runs_are_recorded_but_empty_ones_are_not_sent() {
    let (actor, got) = start(AllocatorConfig {
        allocation_interval_ms: 10,
        coalesce_ms: 1,
    });
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    let report = actor.send(GetShares).await.expect("actor alive");
    assert!(report.runs >= 3, "runs {}", report.runs);
    assert!(got.lock().expect("not poisoned").is_empty());
}

#[actix_rt::test]
async fn a_run_on_demand_covers_pending_events() {
    let (actor, got) = start(AllocatorConfig {
        allocation_interval_ms: 60_000,
        coalesce_ms: 1_000,
    });
    actor.do_send(add_agent(1));
    actor.do_send(add_framework(1));
    let n = actor.send(AllocateNow).await.expect("actor alive");
    assert_eq!(n, 1);
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(got.lock().expect("not poisoned").len(), 1);
    // The coalesced run the events had armed was cancelled: the immediate run covered them.
    actix_rt::time::sleep(Duration::from_millis(1_100)).await;
    let report = actor.send(GetShares).await.expect("actor alive");
    assert_eq!(report.runs, 1);
}

#[actix_rt::test]
async fn a_decline_filter_expiry_wakes_the_allocator() {
    let (actor, got) = start(AllocatorConfig {
        allocation_interval_ms: 60_000,
        coalesce_ms: 1,
    });
    actor.do_send(add_agent(1));
    actor.do_send(add_framework(1));
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(got.lock().expect("not poisoned").len(), 1);
    actor.do_send(AllocatorEvent::Recover {
        framework_id: FrameworkId::new("f001").expect("valid"),
        agent_id: AgentId::new("s001").expect("valid"),
        resources: Resources::parse("cpus:2;mem:2048").expect("valid"),
        refuse_ms: Some(150),
    });
    // The coalesced run after the decline offers nothing (filtered) ...
    actix_rt::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(got.lock().expect("not poisoned").len(), 1);
    // ... and the filter's expiry, not the one-minute interval, brings the offer back.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let got = got.lock().expect("not poisoned");
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].allocations[0].agent_id.as_str(), "s001");
}

#[test]
fn bad_actor_config_is_refused() {
    for (interval, coalesce) in [(0, 0), (10, 11), (3_600_001, 5)] {
        let cfg = AllocatorConfig {
            allocation_interval_ms: interval,
            coalesce_ms: coalesce,
        };
        assert!(matches!(cfg.validate(), Err(AllocatorError::Config(_))));
    }
    assert!(AllocatorConfig::default().validate().is_ok());
}
