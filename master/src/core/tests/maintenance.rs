//! Maintenance: draining stops offers and warns the frameworks with tasks on the agent, down
//! loses its tasks (reason `maintenance`) and refuses the agent until it is up again.

use super::*;
use agora_actors::{Maintenance, MaintenanceMode, MaintenanceWindow};

fn drain(start_ms: u64) -> Option<Maintenance> {
    Some(Maintenance {
        mode: MaintenanceMode::Draining,
        window: Some(MaintenanceWindow {
            start_ms,
            duration_ms: 60_000,
        }),
    })
}

const DOWN: Option<Maintenance> = Some(Maintenance {
    mode: MaintenanceMode::Down,
    window: None,
});

impl Harness {
    /// An operator's change, with its allocator events played into the double.
    fn maintain(
        &mut self,
        agent: &AgentId,
        m: Option<Maintenance>,
    ) -> Result<Vec<Action>, MasterError> {
        let actions = self.core.set_maintenance(self.now, agent, m)?;
        for e in alloc_events(&actions) {
            self.alloc.apply(&e);
        }
        check_invariants(&self.core, &self.alloc);
        Ok(actions)
    }

    /// The agent comes back on a new connection reporting `tasks`.
    fn reregister_with(
        &mut self,
        agent: &AgentId,
        tasks: Vec<TaskReport>,
    ) -> (ConnId, Vec<Action>) {
        let conn = self.connect(NodeKind::Agent);
        let msg = Message::ReregisterAgent {
            agent_id: agent.clone(),
            hostname: "host".into(),
            endpoint: "10.0.0.9:5051".into(),
            resources: res("cpus:4;mem:1024"),
            attributes: Default::default(),
            tasks,
            frameworks: vec![],
        };
        let actions = self.send(conn, msg);
        (conn, actions)
    }
}

fn offers_in(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send {
                    msg: Message::Offers { .. },
                    ..
                }
            )
        })
        .count()
}

#[test]
fn draining_rescinds_offers_stops_new_ones_and_warns_frameworks_with_tasks() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4;mem:1024");
    let (s1, fw1) = h.subscribe("with-tasks");
    let (s2, fw2) = h.subscribe("offered");
    h.launch(s1, &fw1, &agent, "t1", "cpus:1;mem:128");
    let offer = h.offer(&fw2, &agent, "cpus:1;mem:128");
    let actions = h.maintain(&agent, drain(1_000)).unwrap();
    let events = alloc_events(&actions);
    assert!(
        matches!(events.first(), Some(AllocatorEvent::DeactivateAgent { agent_id }) if *agent_id == agent),
        "deactivated before the rescinds give resources back: {events:?}"
    );
    assert!(sent_to(&actions, s2)
        .iter()
        .any(|m| matches!(m, Message::Rescind { offer_id } if *offer_id == offer.id)));
    let warned: Vec<_> = sent_to(&actions, s1);
    assert!(warned.iter().any(|m| matches!(m,
        Message::AgentDraining { agent_id, window: Some(w) } if *agent_id == agent && w.start_ms == 1_000)),
        "{warned:?}");
    assert!(
        !sent_to(&actions, s2)
            .iter()
            .any(|m| matches!(m, Message::AgentDraining { .. })),
        "a framework without tasks there is not bothered"
    );
    // Running tasks keep running: nothing is killed.
    assert!(sent_to(&actions, agent_conn).is_empty(), "{actions:?}");
    assert_eq!(h.task_state(&fw1, "t1"), Some(TaskState::Staging));
    assert_eq!(h.core.state().agents[0].maintenance, Some("draining"));
    // An allocation decided before the allocator heard of the drain is given back.
    let late = h.alloc.allocate(&agent, &fw2, &res("cpus:1;mem:128"));
    let actions = h.input(Input::Allocations(vec![late]));
    assert_eq!(offers_in(&actions), 0, "{actions:?}");
    assert_eq!(recovers(&actions).len(), 1);
    // Up: offered again.
    let actions = h.maintain(&agent, None).unwrap();
    assert!(
        alloc_events(&actions).contains(&AllocatorEvent::ActivateAgent {
            agent_id: agent.clone()
        })
    );
    assert!(h.alloc.inactive.is_empty());
    h.offer(&fw2, &agent, "cpus:1;mem:128");
    assert!(h.core.maintenance().is_empty());
}

#[test]
fn down_loses_tasks_for_maintenance_and_refuses_the_agent_until_up() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("fw");
    h.launch(sched, &fw, &agent, "t1", "cpus:1;mem:128");
    let report = h.report(&fw, "t1");
    h.maintain(&agent, drain(5)).unwrap();
    let actions = h.maintain(&agent, DOWN).unwrap();
    // The agent is told to shut the framework's executors down, then cut off with the reason.
    let to_agent = sent_to(&actions, agent_conn);
    assert!(
        to_agent.iter().any(
            |m| matches!(m, Message::ShutdownFramework { framework_id } if *framework_id == fw)
        ),
        "{to_agent:?}"
    );
    assert!(closed(&actions, agent_conn));
    let ups = updates(&actions, sched);
    assert_eq!(ups.len(), 1, "{actions:?}");
    assert_eq!(ups[0].state, TaskState::Lost);
    assert_eq!(ups[0].reason.as_deref(), Some(reasons::MAINTENANCE));
    assert!(sent_to(&actions, sched)
        .iter()
        .any(|m| matches!(m, Message::AgentLost { .. })));
    assert!(h.core.state().agents.is_empty());
    assert_eq!(
        h.core.state().maintenance[agent.as_str()].mode,
        MaintenanceMode::Down
    );
    // The registry is given the lost tasks.
    let lost = h.core.take_lost_task_changes();
    assert_eq!(lost, vec![(agent.clone(), vec![(fw.clone(), tid("t1"))])]);
    // Coming back while down: refused with the reason, fatally.
    let (conn, actions) = h.reregister_with(&agent, vec![report.clone()]);
    let errs = errors(&actions, conn);
    assert_eq!(errs.len(), 1, "{actions:?}");
    assert_eq!(errs[0].0, ErrorCode::Forbidden);
    assert!(errs[0].1.contains("down for maintenance"), "{}", errs[0].1);
    assert!(errs[0].2 && closed(&actions, conn));
    // Up: it re-registers; the task declared lost is killed, not adopted.
    h.maintain(&agent, None).unwrap();
    let (conn, actions) = h.reregister_with(&agent, vec![report]);
    let to_agent = sent_to(&actions, conn);
    assert!(
        to_agent
            .iter()
            .any(|m| matches!(m, Message::AgentRegistered { .. })),
        "{to_agent:?}"
    );
    assert!(
        to_agent
            .iter()
            .any(|m| matches!(m, Message::KillTask { .. })),
        "{to_agent:?}"
    );
    assert_eq!(h.task_state(&fw, "t1"), None);
}

#[test]
fn bad_maintenance_changes_are_refused_with_the_reason() {
    let mut h = Harness::new();
    let (_c, agent) = h.register_agent("cpus:4;mem:1024");
    let nobody = AgentId::new("agent-nobody").unwrap();
    assert_eq!(
        h.maintain(&nobody, drain(1)),
        Err(MasterError::UnknownAgent(nobody.clone()))
    );
    let up = h.maintain(&agent, None).unwrap_err();
    assert!(up.to_string().contains("not in maintenance"), "{up}");
    let mut zero = drain(1);
    zero.as_mut().unwrap().window.as_mut().unwrap().duration_ms = 0;
    assert!(matches!(
        h.maintain(&agent, zero),
        Err(MasterError::BadRequest(_))
    ));
    let mut overflow = drain(u64::MAX);
    overflow
        .as_mut()
        .unwrap()
        .window
        .as_mut()
        .unwrap()
        .duration_ms = 2;
    assert!(matches!(
        h.maintain(&agent, overflow),
        Err(MasterError::BadRequest(_))
    ));
    assert!(
        h.core.maintenance().is_empty(),
        "refused changes leave nothing behind"
    );
    h.maintain(&agent, DOWN).unwrap();
    assert!(h
        .maintain(&agent, drain(1))
        .unwrap_err()
        .to_string()
        .contains("is down"));
    assert!(h
        .maintain(&agent, DOWN)
        .unwrap_err()
        .to_string()
        .contains("already down"));
}

#[test]
fn a_new_leader_restores_draining_down_and_lost_tasks_from_the_registry() {
    let mut h = Harness::new();
    let (_ac, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("fw");
    h.launch(sched, &fw, &agent, "t1", "cpus:1;mem:128");
    h.launch(sched, &fw, &agent, "t2", "cpus:1;mem:128");
    let (r1, r2) = (h.report(&fw, "t1"), h.report(&fw, "t2"));
    let info = h.core.frameworks[&fw].info.clone();
    let downed = AgentId::new("agent-downed").unwrap();
    // A fresh core, as a new leader builds it from the registry.
    let mut n = Harness::new();
    n.core.restore_agent_records(RegistryAgentRecords {
        maintenance: [
            (agent.clone(), drain(9).unwrap()),
            (downed.clone(), DOWN.unwrap()),
        ]
        .into(),
        removed: vec![],
        lost_tasks: vec![(agent.clone(), fw.clone(), tid("t1"))],
    });
    let acts = n.input(Input::RegistryAgents {
        agent_ids: vec![agent.clone(), downed.clone()],
        reregister_timeout_ms: 1_000,
    });
    assert!(!acts.is_empty(), "the draining agent is waited for");
    n.subscribe_info(info);
    let (conn, actions) = n.reregister_with(&agent, vec![r1, r2]);
    let events = alloc_events(&actions);
    let add = events
        .iter()
        .position(|e| matches!(e, AllocatorEvent::AddAgent { .. }));
    let deact = events
        .iter()
        .position(|e| matches!(e, AllocatorEvent::DeactivateAgent { .. }));
    assert!(
        add.is_some() && deact > add,
        "still draining after the failover: {events:?}"
    );
    // t1 was declared lost by the old leader: killed, not adopted; t2 is adopted.
    assert!(sent_to(&actions, conn)
        .iter()
        .any(|m| matches!(m, Message::KillTask { task_id, .. } if *task_id == tid("t1"))));
    assert_eq!(n.task_state(&fw, "t1"), None);
    assert!(n.task_state(&fw, "t2").is_some());
    // The down agent is refused and not declared unreachable (which would remove it for good).
    let (conn, actions) = n.reregister_with(&downed, vec![]);
    assert_eq!(errors(&actions, conn)[0].0, ErrorCode::Forbidden);
    n.advance(1_000);
    let acts = n.timer(MasterTimer::AgentReregisterTimeout);
    assert!(
        !acts
            .iter()
            .any(|a| matches!(a, Action::AgentUnreachable { .. })),
        "{acts:?}"
    );
}

#[test]
fn an_agent_removed_as_unreachable_is_refused_under_its_old_id() {
    let mut h = Harness::new();
    let gone = AgentId::new("agent-old-1").unwrap();
    h.input(Input::RegistryAgents {
        agent_ids: vec![gone.clone()],
        reregister_timeout_ms: 5_000,
    });
    // Awaited after the failover, it may be drained already.
    h.maintain(&gone, drain(1)).unwrap();
    h.advance(5_000);
    let acts = h.timer(MasterTimer::AgentReregisterTimeout);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::AgentUnreachable { .. })));
    assert!(
        h.core.maintenance().is_empty(),
        "its maintenance goes with it"
    );
    let (conn, actions) = h.reregister_with(&gone, vec![]);
    let errs = errors(&actions, conn);
    assert_eq!(errs.len(), 1, "{actions:?}");
    assert!(errs[0].1.contains("was removed"), "{}", errs[0].1);
    assert!(errs[0].2, "fatal");
    // The same after a failover, from the registry's list.
    let mut n = Harness::new();
    n.core.restore_agent_records(RegistryAgentRecords {
        removed: vec![gone.clone()],
        ..Default::default()
    });
    let (conn, actions) = n.reregister_with(&gone, vec![]);
    assert_eq!(errors(&actions, conn)[0].0, ErrorCode::Forbidden);
    assert!(n.core.state().agents.is_empty());
}

#[test]
fn schedulers_hear_of_a_draining_agent_again_when_they_resubscribe_or_it_comes_back() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("fw");
    h.launch(sched, &fw, &agent, "t1", "cpus:1;mem:128");
    let info = h.core.frameworks[&fw].info.clone();
    h.maintain(&agent, drain(42)).unwrap();
    let draining = |msgs: Vec<Message>| {
        msgs.iter()
            .filter(|m| {
                matches!(m, Message::AgentDraining { agent_id, window: Some(w) }
                if *agent_id == agent && w.start_ms == 42)
            })
            .count()
    };
    // The scheduler fails over to a new connection: told again once it is subscribed.
    h.disconnect(sched);
    let (sched2, actions) = h.subscribe_info(info);
    assert_eq!(draining(sent_to(&actions, sched2)), 1, "{actions:?}");
    // The agent reconnects with a changed total (re-added to the allocator): still draining,
    // and its framework is told again.
    let report = h.report(&fw, "t1");
    h.disconnect(agent_conn);
    let (_c, actions) = h.reregister_with(&agent, vec![report]);
    assert!(
        alloc_events(&actions)
            .iter()
            .any(|e| matches!(e, AllocatorEvent::DeactivateAgent { .. })),
        "{actions:?}"
    );
    assert_eq!(draining(sent_to(&actions, sched2)), 1, "{actions:?}");
    assert!(h.alloc.inactive.contains(&agent));
    // A framework without tasks there hears nothing.
    let (other, actions) = h.subscribe_info(FrameworkInfo::new("other"));
    assert_eq!(draining(sent_to(&actions, other)), 0, "{actions:?}");
}

#[test]
fn a_promoted_standby_scheduler_hears_of_a_draining_agent() {
    let mut h = Harness::new();
    let (_ac, agent) = h.register_agent("cpus:4;mem:1024");
    let (active, fw) = h.subscribe("fw");
    h.launch(active, &fw, &agent, "t1", "cpus:1;mem:128");
    h.maintain(&agent, drain(7)).unwrap();
    let mut info = FrameworkInfo::new("fw");
    info.id = Some(fw.clone());
    let standby = h.connect(NodeKind::Scheduler);
    h.send(standby, Message::SubscribeStandby { framework: info });
    let actions = h.disconnect(active);
    let msgs = sent_to(&actions, standby);
    assert!(
        matches!(msgs.first(), Some(Message::Subscribed { .. })),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(
            |m| matches!(m, Message::AgentDraining { agent_id, window: Some(w) }
            if *agent_id == agent && w.start_ms == 7)
        ),
        "{msgs:?}"
    );
}
