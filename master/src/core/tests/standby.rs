use super::*;
use crate::core::frameworks::RegistryFramework;

fn info_with_id(name: &str, id: &FrameworkId, failover_timeout_ms: u64) -> FrameworkInfo {
    let mut info = FrameworkInfo::new(name);
    info.id = Some(id.clone());
    info.failover_timeout_ms = failover_timeout_ms;
    info
}

impl Harness {
    fn standby(&mut self, info: FrameworkInfo) -> (ConnId, Vec<Action>) {
        let conn = self.connect(NodeKind::Scheduler);
        let actions = self.send(conn, Message::SubscribeStandby { framework: info });
        (conn, actions)
    }
}

fn is_standing_by(actions: &[Action], conn: ConnId) -> bool {
    matches!(&sent_to(actions, conn)[..], [Message::StandingBy { .. }])
}

fn is_subscribed(actions: &[Action], conn: ConnId, fw: &FrameworkId) -> bool {
    matches!(&sent_to(actions, conn)[..], [Message::Subscribed { framework_id, .. }] if framework_id == fw)
}

fn failover_timers(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::SetTimer {
                    timer: MasterTimer::FrameworkFailover { .. },
                    ..
                }
            )
        })
        .count()
}

#[test]
fn a_standby_waits_while_the_active_scheduler_is_connected_and_takes_over_when_it_drops() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4");
    let (active, fw) = h.subscribe("web");
    h.launch(active, &fw, &agent, "t1", "cpus:1");
    let (standby, actions) = h.standby(info_with_id("web", &fw, 60_000));
    let msgs = sent_to(&actions, standby);
    assert!(
        matches!(&msgs[..], [Message::StandingBy { framework_id, message }]
            if *framework_id == fw && message.contains("active scheduler")),
        "{msgs:?}"
    );
    assert!(!closed(&actions, standby));
    assert!(alloc_events(&actions).is_empty());
    assert!(
        sent_to(&actions, active).is_empty(),
        "the active one is untouched"
    );
    // Polls repeat the answer and change nothing.
    let actions = h.send(
        standby,
        Message::SubscribeStandby {
            framework: info_with_id("web", &fw, 60_000),
        },
    );
    assert!(is_standing_by(&actions, standby));
    assert_eq!(h.core.frameworks[&fw].standbys.len(), 1);
    // Updates go to the active instance only.
    let actions = h.status(agent_conn, &fw, "t1", TaskState::Running, 1);
    assert_eq!(updates(&actions, active).len(), 1);
    assert!(updates(&actions, standby).is_empty());

    // The active instance's connection drops: the standby is promoted in the same step, the
    // framework never goes inactive and no failover timer runs.
    let actions = h.disconnect(active);
    assert!(is_subscribed(&actions, standby, &fw), "{actions:?}");
    let events = alloc_events(&actions);
    assert!(events.contains(&AllocatorEvent::ActivateFramework {
        framework_id: fw.clone()
    }));
    assert!(!events
        .iter()
        .any(|e| matches!(e, AllocatorEvent::DeactivateFramework { .. })));
    assert_eq!(failover_timers(&actions), 0);
    assert!(h.core.frameworks[&fw].standbys.is_empty());
    assert!(h.core.state().frameworks[0].active);
    assert_eq!(h.core.counters().standby_promotions, 1);
    // The promoted instance receives the framework's updates and may launch.
    let actions = h.status(agent_conn, &fw, "t1", TaskState::Finished, 2);
    assert_eq!(updates(&actions, standby).len(), 1);
    h.launch(standby, &fw, &agent, "t2", "cpus:1");
    // A late poll that crossed the promotion is answered with Subscribed, not StandingBy.
    let actions = h.send(
        standby,
        Message::SubscribeStandby {
            framework: info_with_id("web", &fw, 60_000),
        },
    );
    assert!(is_subscribed(&actions, standby, &fw));
}

#[test]
fn an_explicit_takeover_still_cuts_the_active_instance_off_and_standbys_keep_waiting() {
    let mut h = Harness::new();
    let (old, fw) = h.subscribe("web");
    let (standby, _) = h.standby(info_with_id("web", &fw, 60_000));
    let (new, actions) = h.subscribe_info(info_with_id("web", &fw, 60_000));
    assert!(is_subscribed(&actions, new, &fw));
    assert!(closed(&actions, old));
    assert!(sent_to(&actions, standby).is_empty());
    // The standby now stands by for the new instance and takes over when it goes.
    let actions = h.disconnect(new);
    assert!(is_subscribed(&actions, standby, &fw));
    // A standby that subscribes normally takes over explicitly too.
    let (standby2, _) = h.standby(info_with_id("web", &fw, 60_000));
    let actions = h.send(
        standby2,
        Message::Subscribe {
            framework: info_with_id("web", &fw, 60_000),
        },
    );
    assert!(is_subscribed(&actions, standby2, &fw));
    assert!(closed(&actions, standby));
    assert!(h.core.frameworks[&fw].standbys.is_empty());
}

#[test]
fn a_closed_standby_is_forgotten_and_the_framework_fails_over_as_before() {
    let mut h = Harness::new();
    let fw = FrameworkId::new("fw-1").unwrap();
    let (active, actions) = h.subscribe_info(info_with_id("web", &fw, 5_000));
    assert!(is_subscribed(&actions, active, &fw));
    let (s1, _) = h.standby(info_with_id("web", &fw, 5_000));
    let (s2, _) = h.standby(info_with_id("web", &fw, 5_000));
    assert!(h.disconnect(s1).is_empty());
    // s2 waited second but is the only one left.
    let actions = h.disconnect(active);
    assert!(is_subscribed(&actions, s2, &fw));
    // Without standbys a disconnect waits for the failover timeout as before.
    let actions = h.disconnect(s2);
    assert_eq!(failover_timers(&actions), 1);
    assert!(!h.core.state().frameworks[0].active);
    // A standby arriving while no scheduler is connected takes over at once.
    let (s3, actions) = h.standby(info_with_id("web", &fw, 5_000));
    assert!(is_subscribed(&actions, s3, &fw));
}

#[test]
fn standbys_are_refused_clearly_when_they_cannot_stand_by() {
    let mut h = Harness::new();
    let (_active, fw) = h.subscribe("web");
    // No id.
    let (c, actions) = h.standby(FrameworkInfo::new("web"));
    assert!(closed(&actions, c));
    let e = &errors(&actions, c)[0];
    assert_eq!(e.0, ErrorCode::BadRequest);
    assert!(e.1.contains("id of the framework"), "{e:?}");
    // Another framework's id.
    let (c, actions) = h.standby(info_with_id("batch", &fw, 0));
    assert_eq!(errors(&actions, c)[0].0, ErrorCode::Forbidden);
    // An unknown id: nothing to wait for yet, but not an error either.
    let (c, actions) = h.standby(info_with_id("web", &FrameworkId::new("nobody").unwrap(), 0));
    assert!(is_standing_by(&actions, c));
    assert!(!closed(&actions, c));
    // Too many standbys.
    for _ in 0..crate::core::standby::MAX_STANDBYS_PER_FRAMEWORK {
        let (c, actions) = h.standby(info_with_id("web", &fw, 0));
        assert!(is_standing_by(&actions, c));
    }
    let (c, actions) = h.standby(info_with_id("web", &fw, 0));
    assert_eq!(errors(&actions, c)[0].0, ErrorCode::TooLarge);
    // A removed framework: its standbys are told for good at their next poll.
    let waiting = h.core.frameworks[&fw].standbys[0].0;
    let conn = h.core.frameworks[&fw].conn.unwrap();
    h.send(
        conn,
        Message::Teardown {
            framework_id: fw.clone(),
        },
    );
    let actions = h.send(
        waiting,
        Message::SubscribeStandby {
            framework: info_with_id("web", &fw, 0),
        },
    );
    assert!(closed(&actions, waiting));
    let e = &errors(&actions, waiting)[0];
    assert_eq!(e.0, ErrorCode::Forbidden);
    assert!(e.1.contains("was removed"), "{e:?}");
}

#[test]
fn after_a_master_failover_a_standby_leaves_the_active_instance_time_to_come_back() {
    // A new leader knows the framework from its registry, with no scheduler yet.
    let fw = FrameworkId::new("fw-1").unwrap();
    let recovered = |h: &mut Harness| {
        let reg = RegistryFramework {
            id: fw.clone(),
            name: "web".into(),
            roles: vec!["*".into()],
            failover_timeout_ms: 60_000,
        };
        let actions = h.core.restore_registry(h.now, Vec::new(), vec![reg]);
        for e in alloc_events(&actions) {
            h.alloc.apply(&e);
        }
    };
    // 1. The standby reaches the new leader first: it waits (not promoted) ...
    let mut h = Harness::new();
    recovered(&mut h);
    let (standby, actions) = h.standby(info_with_id("web", &fw, 60_000));
    assert!(is_standing_by(&actions, standby));
    // ... and the active instance, back within the wait, keeps its framework; the standby
    // stands by for it again.
    h.advance(crate::core::standby::STANDBY_WAIT_AFTER_RECOVERY_MS - 1);
    let (active, actions) = h.subscribe_info(info_with_id("web", &fw, 60_000));
    assert!(is_subscribed(&actions, active, &fw));
    assert!(sent_to(&actions, standby).is_empty());
    let actions = h.disconnect(active);
    assert!(is_subscribed(&actions, standby, &fw));

    // 2. The active instance died with the old leader: the standby's poll after the wait
    // (min(10 s, failover timeout / 2) = 10 s here) takes over.
    let mut h = Harness::new();
    recovered(&mut h);
    let info = info_with_id("web", &fw, 60_000);
    let (standby, _) = h.standby(info.clone());
    h.advance(crate::core::standby::STANDBY_WAIT_AFTER_RECOVERY_MS - 1);
    let actions = h.send(
        standby,
        Message::SubscribeStandby {
            framework: info.clone(),
        },
    );
    assert!(is_standing_by(&actions, standby));
    h.advance(1);
    let actions = h.send(standby, Message::SubscribeStandby { framework: info });
    assert!(is_subscribed(&actions, standby, &fw));
    assert!(
        alloc_events(&actions).contains(&AllocatorEvent::ActivateFramework {
            framework_id: fw.clone()
        })
    );
}
