//! Dynamic reservations: RESERVE/UNRESERVE in an accept, the operator's reserve, and their
//! application when the agent re-registers with a new leader.

use super::*;
use crate::core::ReserveRequest;

fn fw_with_role(h: &mut Harness, role: &str) -> (ConnId, FrameworkId) {
    let mut info = FrameworkInfo::new("eng-fw");
    info.roles = vec![role.into()];
    let (sched, actions) = h.subscribe_info(info);
    match sent_to(&actions, sched).as_slice() {
        [Message::Subscribed { framework_id, .. }] => (sched, framework_id.clone()),
        other => panic!("{other:?}"),
    }
}

fn ops(fw: &FrameworkId, offer: &Offer, operations: Vec<Operation>) -> Message {
    Message::Accept {
        framework_id: fw.clone(),
        offer_ids: vec![offer.id.clone()],
        operations,
        filters: Filters::default(),
    }
}

#[test]
fn reserve_in_an_accept_then_launch_on_the_reserved_resources() {
    let mut h = Harness::new();
    let (_, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = fw_with_role(&mut h, "eng");
    let offer = h.offer(&fw, &agent, "cpus:4;mem:1024");
    let actions = h.send(
        sched,
        ops(
            &fw,
            &offer,
            vec![
                Operation::Reserve {
                    resources: res("cpus(eng):2"),
                },
                Operation::Launch {
                    tasks: vec![task("t", &agent, "cpus(eng):1;mem:64")],
                },
            ],
        ),
    );
    assert_eq!(run_tasks(&actions).len(), 1, "{actions:?}");
    assert_eq!(
        h.core.agents[&agent].total,
        res("cpus:2;cpus(eng):2;mem:1024")
    );
    assert_eq!(
        h.core.take_reservation_changes(),
        [(agent.clone(), res("cpus(eng):2"))]
    );
    // The remainder went back with the reserved part still reserved.
    let back = recovers(&actions);
    assert_eq!(back[0].0, res("cpus:2;cpus(eng):1;mem:960"));
    // A reservation for a role the framework does not have is refused, nothing changes.
    let offer = h.offer(&fw, &agent, "cpus:2");
    let actions = h.send(
        sched,
        ops(
            &fw,
            &offer,
            vec![Operation::Reserve {
                resources: res("cpus(ads):1"),
            }],
        ),
    );
    assert!(
        errors(&actions, sched)[0].1.contains("framework's roles"),
        "{actions:?}"
    );
    assert!(h.core.take_reservation_changes().is_empty());
}

#[test]
fn operator_reserve_checks_unused_resources_and_survives_reregistration() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:4;mem:1024");
    let (sched, fw) = h.subscribe("web");
    h.launch(sched, &fw, &agent, "busy", "cpus:3;mem:64");
    let req = |cpus: &str, unreserve: bool| ReserveRequest {
        agent_id: agent.clone(),
        role: "eng".into(),
        resources: res(cpus),
        unreserve,
    };
    let e = h.core.operator_reserve(req("cpus:2", false)).unwrap_err();
    assert!(e.to_string().contains("unused"), "{e}");
    assert!(h
        .core
        .operator_reserve(ReserveRequest {
            role: "bad role".into(),
            ..req("cpus:1", false)
        })
        .is_err());
    let actions = h.core.operator_reserve(req("cpus:1", false)).expect("fits");
    for e in alloc_events(&actions) {
        h.alloc.apply(&e);
    }
    assert_eq!(h.core.reservations()[&agent], res("cpus(eng):1"));
    assert!(
        h.core.operator_reserve(req("cpus:2", true)).is_err(),
        "more than reserved"
    );

    // A new leader: it knows the reservation from the registry; the agent reports only its
    // static resources and the master applies the reservation.
    let mut fresh = Harness::new();
    fresh
        .core
        .restore_reservations(h.core.reservations().clone());
    let conn = fresh.connect(NodeKind::Agent);
    let actions = fresh.send(
        conn,
        Message::ReregisterAgent {
            agent_id: agent.clone(),
            hostname: "h".into(),
            endpoint: "10.0.0.1:5051".into(),
            resources: res("cpus:4;mem:1024"),
            attributes: Default::default(),
            tasks: vec![],
            frameworks: vec![],
        },
    );
    let total = alloc_events(&actions)
        .into_iter()
        .find_map(|e| match e {
            AllocatorEvent::AddAgent { total, .. } => Some(total),
            _ => None,
        })
        .expect("agent added");
    assert_eq!(total, res("cpus:3;cpus(eng):1;mem:1024"));
    let _ = agent_conn;
}
