use super::*;

fn info_with_id(name: &str, id: &FrameworkId) -> FrameworkInfo {
    let mut info = FrameworkInfo::new(name);
    info.id = Some(id.clone());
    info
}

#[test]
fn subscribe_assigns_an_id_and_adds_an_active_framework() {
    let mut h = Harness::new();
    let (conn, actions) = h.subscribe_info(FrameworkInfo::new("web"));
    let Message::Subscribed {
        framework_id,
        heartbeat_interval_ms,
    } = &sent_to(&actions, conn)[0]
    else {
        panic!("{actions:?}");
    };
    assert_eq!(*heartbeat_interval_ms, 15_000);
    match &alloc_events(&actions)[..] {
        [AllocatorEvent::AddFramework {
            framework_id: f,
            info,
            used,
            active,
        }] => {
            assert_eq!(f, framework_id);
            assert_eq!(info.id.as_ref(), Some(framework_id));
            assert!(used.is_empty());
            assert!(*active);
        }
        other => panic!("{other:?}"),
    }
    let state = h.core.state();
    assert_eq!(state.frameworks[0].name, "web");
    assert!(state.frameworks[0].active);
    assert_eq!(state.frameworks[0].role, "*");
}

#[test]
fn invalid_framework_info_is_refused_and_empty_roles_mean_star() {
    let bad_roles: [&[&str]; 3] = [&["a b"], &[""], &["x".repeat(65).leak()]];
    for roles in bad_roles {
        let mut h = Harness::new();
        let mut info = FrameworkInfo::new("web");
        info.roles = roles.iter().map(|r| r.to_string()).collect();
        let (conn, actions) = h.subscribe_info(info);
        assert!(closed(&actions, conn), "{roles:?}");
        assert_eq!(errors(&actions, conn)[0].0, ErrorCode::BadRequest);
        assert!(h.core.state().frameworks.is_empty());
    }
    let mut h = Harness::new();
    let mut info = FrameworkInfo::new("web");
    info.roles.clear();
    let (_conn, actions) = h.subscribe_info(info);
    match &alloc_events(&actions)[..] {
        [AllocatorEvent::AddFramework { info, .. }] => {
            assert_eq!(info.roles, vec!["*".to_string()])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn failover_with_the_same_name_replaces_the_old_scheduler() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (old, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:2");
    let (new, actions) = h.subscribe_info(info_with_id("web", &fw));
    assert!(
        matches!(&sent_to(&actions, new)[..], [Message::Subscribed { framework_id, .. }] if *framework_id == fw)
    );
    let old_msgs = sent_to(&actions, old);
    assert!(closed(&actions, old));
    assert!(
        matches!(&old_msgs[..], [Message::Error { fatal: true, message, .. }] if message.contains("failed over"))
    );
    // The old scheduler's offer is void and goes back; the framework is activated again.
    let events = alloc_events(&actions);
    assert!(events.contains(&AllocatorEvent::Recover {
        framework_id: fw.clone(),
        agent_id: agent.clone(),
        resources: res("cpus:2"),
        refuse_ms: None,
    }));
    assert!(events.contains(&AllocatorEvent::ActivateFramework {
        framework_id: fw.clone()
    }));
    assert!(h.core.state().offers.is_empty());
    let _ = offer;
    // The old connection's disconnect is no longer the framework's business.
    assert!(h.disconnect(old).is_empty());
    assert!(h.core.state().frameworks[0].active);
    assert_eq!(h.core.counters().frameworks_failed_over, 1);
    // And the new connection works.
    h.launch(new, &fw, &agent, "t1", "cpus:1");
}

#[test]
fn a_framework_id_cannot_be_hijacked_by_another_framework() {
    let mut h = Harness::new();
    let (owner, fw) = h.subscribe("web");
    let (thief, actions) = h.subscribe_info(info_with_id("batch", &fw));
    assert!(closed(&actions, thief));
    let errs = errors(&actions, thief);
    assert_eq!(errs[0].0, ErrorCode::Forbidden);
    assert!(
        errs[0]
            .1
            .contains(&format!("framework id {fw} belongs to another framework")),
        "{}",
        errs[0].1
    );
    assert!(sent_to(&actions, owner).is_empty());
    assert!(alloc_events(&actions).is_empty());
    assert!(h.core.state().frameworks[0].active);
    // Same name but another user is another framework too.
    let mut info = info_with_id("web", &fw);
    info.user = "mallory".into();
    let (thief2, actions) = h.subscribe_info(info);
    assert!(closed(&actions, thief2));
}

#[test]
fn an_unknown_id_is_adopted_after_a_master_restart() {
    let mut h = Harness::new();
    let fw = FrameworkId::new("fw-3-1").unwrap();
    let (conn, actions) = h.subscribe_info(info_with_id("web", &fw));
    assert!(
        matches!(&sent_to(&actions, conn)[..], [Message::Subscribed { framework_id, .. }] if *framework_id == fw)
    );
    assert!(matches!(
        &alloc_events(&actions)[..],
        [AllocatorEvent::AddFramework { active: true, .. }]
    ));
}

#[test]
fn disconnect_then_failover_timeout_removes_the_framework_and_kills_its_tasks() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4");
    let mut info = FrameworkInfo::new("web");
    info.failover_timeout_ms = 60_000;
    let (sched, actions) = h.subscribe_info(info);
    let Message::Subscribed {
        framework_id: fw, ..
    } = sent_to(&actions, sched)[0].clone()
    else {
        panic!()
    };
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    h.offer(&fw, &agent, "cpus:2");
    h.advance(1_000);
    let actions = h.disconnect(sched);
    let events = alloc_events(&actions);
    assert!(events.contains(&AllocatorEvent::DeactivateFramework {
        framework_id: fw.clone()
    }));
    assert_eq!(recovers(&actions), vec![(res("cpus:2"), None)]);
    let timer = actions
        .iter()
        .find_map(|a| match a {
            Action::SetTimer {
                timer: t @ MasterTimer::FrameworkFailover { .. },
                at,
            } => Some((t.clone(), *at)),
            _ => None,
        })
        .expect("failover timer");
    assert_eq!(timer.1, Time(61_000));
    assert!(!h.core.state().frameworks[0].active);
    // Tasks keep running meanwhile.
    assert_eq!(h.task_state(&fw, "t1"), Some(TaskState::Staging));
    let actions = h.timer(timer.0);
    let to_agent = sent_to(&actions, agent_conn);
    assert!(
        matches!(&to_agent[0], Message::KillTask { task_id, grace_ms: 3_000, .. } if *task_id == tid("t1"))
    );
    assert!(to_agent.contains(&Message::ShutdownFramework {
        framework_id: fw.clone()
    }));
    assert_eq!(
        alloc_events(&actions),
        vec![AllocatorEvent::RemoveFramework {
            framework_id: fw.clone()
        }]
    );
    let state = h.core.state();
    assert!(state.frameworks.is_empty());
    assert!(state.tasks.is_empty());
    assert_eq!(state.removed_frameworks, vec![fw.to_string()]);
    assert_eq!(
        state.completed_tasks[0].reason.as_deref(),
        Some(reasons::FRAMEWORK_REMOVED)
    );
    // The agent's late TASK_KILLED is acknowledged by the master itself.
    let actions = h.status(agent_conn, &fw, "t1", TaskState::Killed, 77);
    assert!(
        sent_to(&actions, agent_conn).contains(&Message::StatusUpdateAck {
            framework_id: fw.clone(),
            task_id: tid("t1"),
            uuid: 77
        })
    );
    // The removed id cannot come back.
    let (again, actions) = h.subscribe_info(info_with_id("web", &fw));
    assert!(closed(&actions, again));
    assert_eq!(errors(&actions, again)[0].0, ErrorCode::Forbidden);
}

#[test]
fn a_resubscribe_makes_the_old_failover_timer_stale() {
    let mut h = Harness::new();
    let (sched, fw) = h.subscribe("web");
    let actions = h.disconnect(sched);
    let stale = actions
        .iter()
        .find_map(|a| match a {
            Action::SetTimer {
                timer: t @ MasterTimer::FrameworkFailover { .. },
                ..
            } => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    let (_new, actions) = h.subscribe_info(info_with_id("web", &fw));
    assert!(
        alloc_events(&actions).contains(&AllocatorEvent::ActivateFramework {
            framework_id: fw.clone()
        })
    );
    assert!(h.timer(stale).is_empty());
    assert_eq!(h.core.state().frameworks.len(), 1);
}

#[test]
fn teardown_kills_tasks_and_closes_the_connection() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    h.launch(sched, &fw, &agent, "t2", "cpus:1");
    let actions = h.send(
        sched,
        Message::Teardown {
            framework_id: fw.clone(),
        },
    );
    let kills = sent_to(&actions, agent_conn)
        .into_iter()
        .filter(|m| matches!(m, Message::KillTask { .. }))
        .count();
    assert_eq!(kills, 2);
    assert!(
        sent_to(&actions, agent_conn).contains(&Message::ShutdownFramework {
            framework_id: fw.clone()
        })
    );
    assert!(closed(&actions, sched));
    assert!(
        alloc_events(&actions).contains(&AllocatorEvent::RemoveFramework {
            framework_id: fw.clone()
        })
    );
    assert_eq!(h.core.counters().frameworks_removed, 1);
    assert_eq!(h.core.state().agents[0].used, "");
    // The closed connection's disconnect changes nothing.
    assert!(h.disconnect(sched).is_empty());
}

#[test]
fn heartbeats_go_to_connected_schedulers_only() {
    let mut h = Harness::new();
    let (a, _) = h.subscribe("a");
    let (b, _) = h.subscribe("b");
    h.disconnect(b);
    let actions = h.timer(MasterTimer::Heartbeat);
    assert_eq!(sent_to(&actions, a), vec![Message::Heartbeat]);
    assert!(sent_to(&actions, b).is_empty());
    assert!(actions.iter().any(|x| matches!(x, Action::SetTimer { timer: MasterTimer::Heartbeat, at } if *at == Time(15_000))));
}

#[test]
fn calls_before_subscribe_or_for_another_framework_are_refused() {
    let mut h = Harness::new();
    let (_owner, fw) = h.subscribe("web");
    let conn = h.connect(NodeKind::Scheduler);
    let calls = [
        Message::Revive {
            framework_id: fw.clone(),
        },
        Message::Decline {
            framework_id: fw.clone(),
            offer_ids: vec![],
            filters: Filters::default(),
        },
        Message::Teardown {
            framework_id: fw.clone(),
        },
        Message::Reconcile {
            framework_id: fw.clone(),
            tasks: vec![],
        },
    ];
    for msg in calls {
        let actions = h.send(conn, msg);
        let errs = errors(&actions, conn);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, ErrorCode::NotSubscribed);
        assert!(!errs[0].2);
        assert!(alloc_events(&actions).is_empty());
    }
    assert_eq!(
        h.core.state().frameworks.len(),
        1,
        "teardown from a stranger did nothing"
    );
    let (other, _other_fw) = h.subscribe("batch");
    let actions = h.send(
        other,
        Message::Teardown {
            framework_id: fw.clone(),
        },
    );
    assert_eq!(errors(&actions, other)[0].0, ErrorCode::Forbidden);
    assert_eq!(h.core.state().frameworks.len(), 2);
    // Scheduler-side messages only an agent may send.
    let actions = h.send(other, Message::Pong);
    assert_eq!(errors(&actions, other)[0].0, ErrorCode::BadRequest);
    assert_eq!(h.core.counters().invalid_messages, 6);
    // Errors from peers are never answered.
    assert!(h
        .send(other, Message::error(ErrorCode::Internal, "oops"))
        .is_empty());
}

#[test]
fn subscribing_twice_on_one_connection() {
    let mut h = Harness::new();
    let (conn, fw) = h.subscribe("web");
    let actions = h.send(
        conn,
        Message::Subscribe {
            framework: info_with_id("web", &fw),
        },
    );
    assert!(matches!(
        &sent_to(&actions, conn)[..],
        [Message::Subscribed { .. }]
    ));
    assert!(alloc_events(&actions).is_empty());
    let actions = h.send(
        conn,
        Message::Subscribe {
            framework: FrameworkInfo::new("other"),
        },
    );
    assert_eq!(errors(&actions, conn)[0].0, ErrorCode::BadRequest);
}

#[test]
fn a_role_change_on_failover_re_adds_the_framework_with_its_use() {
    let mut h = Harness::new();
    let (_a, agent) = h.register_agent("cpus:4");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    h.disconnect(sched);
    let mut info = info_with_id("web", &fw);
    info.roles = vec!["prod".into()];
    let (_new, actions) = h.subscribe_info(info);
    let events = alloc_events(&actions);
    assert_eq!(
        events[0],
        AllocatorEvent::RemoveFramework {
            framework_id: fw.clone()
        }
    );
    match &events[1] {
        AllocatorEvent::AddFramework {
            used,
            info,
            active: true,
            ..
        } => {
            assert_eq!(used[&agent], res("cpus:1"));
            assert_eq!(info.roles, vec!["prod".to_string()]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn revive_and_suppress_reach_the_allocator() {
    let mut h = Harness::new();
    let (conn, fw) = h.subscribe("web");
    let actions = h.send(
        conn,
        Message::Suppress {
            framework_id: fw.clone(),
        },
    );
    assert_eq!(
        alloc_events(&actions),
        vec![AllocatorEvent::Suppress {
            framework_id: fw.clone()
        }]
    );
    assert!(h.core.state().frameworks[0].suppressed);
    let actions = h.send(
        conn,
        Message::Revive {
            framework_id: fw.clone(),
        },
    );
    assert_eq!(
        alloc_events(&actions),
        vec![AllocatorEvent::Revive {
            framework_id: fw.clone()
        }]
    );
    assert!(!h.core.state().frameworks[0].suppressed);
}
