use super::*;
use crate::testutil::*;
use agora_actors::sdk::Call;

fn service(m: usize) -> ServiceFramework {
    let mut cfg = ServiceConfig::new("web", m, CommandInfo::shell("serve"), r("cpus:1;mem:100"));
    cfg.max_per_agent = 1;
    ServiceFramework::new(cfg).unwrap()
}

/// Subscribes and launches all instances, one per agent, and marks them running at `t`.
fn running_service(m: usize, t: u64) -> (ServiceFramework, Vec<TaskId>) {
    let mut s = service(m);
    let mut c = ctx(0);
    s.subscribed(&mut c, &fid(), false);
    let offers = (0..m)
        .map(|i| offer(&format!("o{i}"), &format!("a{i}"), "cpus:4;mem:1000"))
        .collect();
    let mut c = ctx(1);
    s.offers(&mut c, offers);
    let ids: Vec<TaskId> = launched_ids(&c).iter().map(|i| tid(i)).collect();
    let mut c = ctx(t);
    for id in &ids {
        s.update(&mut c, &status(id, TaskState::Running));
    }
    (s, ids)
}

#[test]
fn config_is_validated() {
    let cfg = ServiceConfig::new(
        "web",
        MAX_SERVICE_INSTANCES + 1,
        CommandInfo::shell("x"),
        r("cpus:1"),
    );
    assert!(matches!(
        ServiceFramework::new(cfg),
        Err(FrameworkError::Config {
            field: "instances",
            ..
        })
    ));
    let cfg = ServiceConfig::new("", 1, CommandInfo::shell("x"), r("cpus:1"));
    assert!(ServiceFramework::new(cfg).is_err());
}

#[test]
fn spreads_instances_declines_extra_offers_and_suppresses() {
    let mut s = service(2);
    let mut c = ctx(0);
    s.offers(
        &mut c,
        vec![
            offer("o1", "a1", "cpus:8;mem:8000"),
            offer("o2", "a1", "cpus:8;mem:8000"),
            offer("o3", "a2", "cpus:8;mem:8000"),
        ],
    );
    let l = launched(&c);
    assert_eq!(l.len(), 2);
    assert_eq!(
        (l[0].0.as_str(), l[1].0.as_str()),
        ("o1", "o3"),
        "one per agent"
    );
    assert_eq!(launched_ids(&c), vec!["svc-0.1", "svc-1.1"]);
    assert_eq!(declined(&c), vec![("o2".to_string(), 10.0)]);
    assert!(has(&c, &Call::Suppress));
    assert_eq!(s.status().launched, 2);
}

#[test]
fn a_young_death_is_relaunched_after_a_backoff() {
    let (mut s, ids) = running_service(2, 10);
    let mut c = ctx(500);
    s.update(&mut c, &status(&ids[0], TaskState::Failed));
    assert_eq!(s.status().waiting, 1);
    let (token, at) = c.timers[0];
    assert!(
        (1_500..=1_750).contains(&at.ms()),
        "first backoff ~1 s, got {at:?}"
    );
    assert!(!has(&c, &Call::Revive), "nothing to launch yet");
    let mut c = ctx(at.ms());
    s.timer(&mut c, token);
    assert!(has(&c, &Call::Revive));
    assert_eq!(s.status().pending, 1);
    let mut c = ctx(at.ms() + 1);
    s.offers(&mut c, vec![offer("o9", "a0", "cpus:4;mem:1000")]);
    assert_eq!(launched_ids(&c), vec!["svc-0.2"]);
    assert!(has(&c, &Call::Suppress));
    // It dies young again: the backoff doubles.
    let id = tid("svc-0.2");
    let mut c = ctx(at.ms() + 2);
    s.update(&mut c, &status(&id, TaskState::Lost));
    let (_, at2) = c.timers[0];
    assert!(at2.since(c.now) >= 2_000);
    assert_eq!(s.instances().next().unwrap().relaunches, 2);
    assert_eq!(s.instances().next().unwrap().consecutive_failures, 2);
}

#[test]
fn a_healthy_instance_is_relaunched_at_once() {
    let (mut s, ids) = running_service(1, 10);
    let mut c = ctx(100_000);
    s.update(&mut c, &status(&ids[0], TaskState::Finished));
    assert!(c.timers.is_empty());
    assert!(has(&c, &Call::Revive));
    assert_eq!(s.status().pending, 1);
    assert_eq!(s.status().relaunches, 1);
    assert_eq!(c.stop, None, "a service never stops by itself");
}

#[test]
fn stale_timers_and_old_task_ids_are_ignored() {
    let (mut s, ids) = running_service(1, 10);
    let mut c = ctx(20);
    s.update(&mut c, &status(&ids[0], TaskState::Killed));
    let (token, _) = c.timers[0];
    // The old task's late updates change nothing.
    let mut c = ctx(30);
    s.update(&mut c, &status(&ids[0], TaskState::Running));
    assert_eq!(s.status().waiting, 1);
    // A token of another generation is ignored.
    s.timer(&mut c, token + 1);
    assert_eq!(s.status().waiting, 1);
    s.timer(&mut c, token);
    assert_eq!(s.status().pending, 1);
}

#[test]
fn scaling_up_revives_and_down_kills_the_newest() {
    let (mut s, ids) = running_service(2, 10);
    let mut c = ctx(20);
    s.set_instances(&mut c, 3);
    assert!(has(&c, &Call::Revive));
    assert_eq!(s.status().pending, 1);
    let mut c = ctx(30);
    s.set_instances(&mut c, 1);
    // The pending newest goes at once, the running svc-1 is killed.
    assert!(has(
        &c,
        &Call::Kill {
            task_id: ids[1].clone(),
            agent_id: Some(AgentId::new("a1").unwrap())
        }
    ));
    assert!(has(&c, &Call::Suppress));
    let st = s.status();
    assert_eq!(
        (st.wanted, st.running, st.removing, st.pending),
        (1, 1, 1, 0)
    );
    let mut c = ctx(40);
    s.update(&mut c, &status(&ids[1], TaskState::Killed));
    assert!(c.timers.is_empty(), "a removed instance is not relaunched");
    assert_eq!(s.instances().count(), 1);
}

#[test]
fn shutdown_tears_down_and_stops() {
    let (mut s, _) = running_service(1, 10);
    let mut c = ctx(20);
    s.shutdown(&mut c);
    assert!(has(&c, &Call::Teardown));
    assert_eq!(c.stop, Some(0));
}

#[test]
fn resubscription_reconciles_launched_instances() {
    let (mut s, ids) = running_service(1, 10);
    let mut c = ctx(20);
    s.subscribed(&mut c, &fid(), true);
    assert!(has(
        &c,
        &Call::Reconcile {
            tasks: vec![(ids[0].clone(), Some(AgentId::new("a0").unwrap()))]
        }
    ));
    assert!(has(&c, &Call::Suppress));
}
