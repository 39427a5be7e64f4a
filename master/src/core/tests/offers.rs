use super::*;

fn offers_in(actions: &[Action], conn: ConnId) -> Vec<Offer> {
    sent_to(actions, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::Offers { offers } => Some(offers),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn allocations_become_offers_batched_per_framework_with_timers() {
    let mut h = Harness::new();
    let (_a1, agent1) = h.register_agent("cpus:4;mem:1024");
    let (_a2, agent2) = h.register_agent("cpus:2;mem:512");
    let (s1, fw1) = h.subscribe("web");
    let (s2, fw2) = h.subscribe("batch");
    let allocs = vec![
        h.alloc.allocate(&agent1, &fw1, &res("cpus:2;mem:512")),
        h.alloc.allocate(&agent2, &fw1, &res("cpus:2;mem:512")),
        h.alloc.allocate(&agent1, &fw2, &res("cpus:1")),
    ];
    h.advance(500);
    let actions = h.input(Input::Allocations(allocs));
    let o1 = offers_in(&actions, s1);
    let o2 = offers_in(&actions, s2);
    assert_eq!(sent_to(&actions, s1).len(), 1, "one message per framework");
    assert_eq!(o1.len(), 2);
    assert_eq!(o2.len(), 1);
    assert_eq!(o1[0].agent_id, agent1);
    assert_eq!(o1[0].resources, res("cpus:2;mem:512"));
    assert_eq!(o1[0].framework_id, fw1);
    assert!(o1[0].hostname.starts_with("host"));
    assert_eq!(o1[0].attributes.get("rack").map(String::as_str), Some("r1"));
    let timers: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SetTimer {
                timer: MasterTimer::OfferTimeout(id),
                at,
            } => Some((id.clone(), *at)),
            _ => None,
        })
        .collect();
    assert_eq!(timers.len(), 3);
    assert!(timers.iter().all(|(_, at)| *at == Time(10_500)));
    assert_eq!(h.core.counters().offers_made, 3);
    assert_eq!(h.core.state().offers.len(), 3);
    assert_eq!(h.core.state().agents[0].offered, "cpus:3;mem:512");
}

#[test]
fn offers_are_split_over_messages_beyond_the_limit() {
    let mut h = Harness::with_config(MasterConfig {
        max_offers_per_message: 2,
        ..MasterConfig::default()
    });
    let agents: Vec<AgentId> = (0..5).map(|_| h.register_agent("cpus:1").1).collect();
    let (sched, fw) = h.subscribe("web");
    let allocs = agents
        .iter()
        .map(|a| h.alloc.allocate(a, &fw, &res("cpus:1")))
        .collect();
    let actions = h.input(Input::Allocations(allocs));
    let sizes: Vec<usize> = sent_to(&actions, sched)
        .into_iter()
        .map(|m| match m {
            Message::Offers { offers } => offers.len(),
            _ => 0,
        })
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
}

#[test]
fn allocations_that_cannot_be_offered_go_back() {
    let mut h = Harness::new();
    let (a1, agent1) = h.register_agent("cpus:4");
    let (_a2, agent2) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    let (gone_sched, gone_fw) = h.subscribe("batch");
    h.disconnect(a1);
    h.disconnect(gone_sched);
    let allocs = vec![
        h.alloc.allocate(&agent1, &fw, &res("cpus:1")),
        h.alloc.allocate(&agent2, &gone_fw, &res("cpus:1")),
        Allocation {
            framework_id: fw.clone(),
            agent_id: AgentId::new("agent-nope").unwrap(),
            resources: res("cpus:1"),
        },
    ];
    let actions = h.input(Input::Allocations(allocs));
    assert!(offers_in(&actions, sched).is_empty());
    let rec = recovers(&actions);
    assert_eq!(rec.len(), 3);
    // The disconnected agent: held back a little so the allocator does not spin on it.
    assert_eq!(rec[0].1, Some(2_000));
    assert_eq!(rec[1].1, None);
    assert_eq!(h.core.counters().allocations_unofferable, 3);
}

#[test]
fn an_allocation_that_would_overcommit_is_refused() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    h.offer(&fw, &agent, "cpus:3");
    // A confused allocator hands out 2 more cpus than are free.
    let bogus = Allocation {
        framework_id: fw.clone(),
        agent_id: agent.clone(),
        resources: res("cpus:3"),
    };
    let actions = h.core.handle(h.now, Input::Allocations(vec![bogus]));
    assert!(offers_in(&actions, sched).is_empty());
    assert_eq!(recovers(&actions), vec![(res("cpus:3"), Some(2_000))]);
    assert_eq!(h.core.state().agents[0].offered, "cpus:3");
}

#[test]
fn an_offer_times_out_into_rescind_and_recover() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:4");
    let actions = h.timer(MasterTimer::OfferTimeout(offer.id.clone()));
    assert_eq!(
        sent_to(&actions, sched),
        vec![Message::Rescind {
            offer_id: offer.id.clone()
        }]
    );
    // Timed-out resources are withheld from the sitter for the default refusal (5 s).
    assert_eq!(recovers(&actions), vec![(res("cpus:4"), Some(5_000))]);
    assert_eq!(h.core.counters().offers_rescinded, 1);
    // A second firing (or one after the offer was used) does nothing.
    assert!(h.timer(MasterTimer::OfferTimeout(offer.id)).is_empty());
}

#[test]
fn decline_passes_the_refusal_to_the_allocator() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:4");
    let actions = h.send(
        sched,
        Message::Decline {
            framework_id: fw.clone(),
            offer_ids: vec![offer.id.clone()],
            filters: Filters {
                refuse_seconds: 30.0,
            },
        },
    );
    assert_eq!(
        alloc_events(&actions),
        vec![AllocatorEvent::Recover {
            framework_id: fw.clone(),
            agent_id: agent.clone(),
            resources: res("cpus:4"),
            refuse_ms: Some(30_000),
        }]
    );
    assert!(sent_to(&actions, sched).is_empty());
    assert_eq!(h.core.counters().offers_declined, 1);
    assert!(h.core.state().offers.is_empty());
    // Declining it again: it is gone.
    let actions = h.send(
        sched,
        Message::Decline {
            framework_id: fw.clone(),
            offer_ids: vec![offer.id.clone()],
            filters: Filters::default(),
        },
    );
    let errs = errors(&actions, sched);
    assert_eq!(errs[0].0, ErrorCode::NotFound);
    assert!(errs[0].1.contains(offer.id.as_str()));
    assert!(alloc_events(&actions).is_empty());
}

#[test]
fn decline_cannot_touch_another_frameworks_offer() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (_s1, fw1) = h.subscribe("web");
    let (s2, fw2) = h.subscribe("batch");
    let offer = h.offer(&fw1, &agent, "cpus:4");
    let actions = h.send(
        s2,
        Message::Decline {
            framework_id: fw2,
            offer_ids: vec![offer.id.clone()],
            filters: Filters::default(),
        },
    );
    assert_eq!(errors(&actions, s2)[0].0, ErrorCode::NotFound);
    assert!(alloc_events(&actions).is_empty());
    assert_eq!(h.core.state().offers.len(), 1);
}

#[test]
fn decline_with_a_bad_refusal_uses_the_default_and_says_so() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:4");
    let actions = h.send(
        sched,
        Message::Decline {
            framework_id: fw.clone(),
            offer_ids: vec![offer.id.clone()],
            filters: Filters {
                refuse_seconds: f64::NAN,
            },
        },
    );
    let errs = errors(&actions, sched);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].1.contains("refuse_seconds"));
    assert_eq!(recovers(&actions), vec![(res("cpus:4"), Some(5_000))]);
}

#[test]
fn scheduler_disconnect_recovers_its_offers_without_messages() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    h.offer(&fw, &agent, "cpus:1");
    h.offer(&fw, &agent, "cpus:2");
    let actions = h.disconnect(sched);
    assert_eq!(recovers(&actions).len(), 2);
    assert!(sent_to(&actions, sched).is_empty());
    assert_eq!(h.core.counters().offers_rescinded, 2);
    assert_eq!(h.core.state().agents[0].offered, "");
}

#[test]
fn offers_list_the_frameworks_executors_on_the_agent() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:2;mem:256");
    let mut t = task("t1", &agent, "cpus:1;mem:128");
    t.command = None;
    t.executor = Some(executor("exec-1", "cpus:0.5;mem:64"));
    let actions = h.send(sched, accept(&fw, &[&offer], vec![t], 1.0));
    assert_eq!(run_tasks(&actions).len(), 1);
    let next = h.offer(&fw, &agent, "cpus:1");
    assert_eq!(next.executor_ids, vec![ExecutorId::new("exec-1").unwrap()]);
}
