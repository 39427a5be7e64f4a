//! Revocation: warn first, kill newest first after the framework's grace period, tag the
//! kills `preempted`; offers go back before any task dies; reserved tasks are never chosen.

use super::*;
use agora_allocator::RevocationRequest;

fn kills(actions: &[Action], conn: ConnId) -> Vec<String> {
    sent_to(actions, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::KillTask { task_id, .. } => Some(task_id.to_string()),
            _ => None,
        })
        .collect()
}

fn revoke_timer(actions: &[Action]) -> (MasterTimer, Time) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::SetTimer {
                timer: t @ MasterTimer::Revoke(_),
                at,
            } => Some((t.clone(), *at)),
            _ => None,
        })
        .expect("a revocation timer")
}

fn request(fw: &FrameworkId, r: &str) -> Input {
    Input::Revoke(vec![RevocationRequest {
        framework_id: fw.clone(),
        resources: res(r),
        for_role: "prod".into(),
    }])
}

#[test]
fn tasks_are_warned_then_killed_newest_first_after_the_grace_period() {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:8;mem:8192;cpus(batch):1");
    let mut info = FrameworkInfo::new("batch");
    info.roles = vec!["batch".into()];
    info.revocation_grace_ms = Some(1_500);
    let (sched, actions) = h.subscribe_info(info);
    let fw = match sent_to(&actions, sched).as_slice() {
        [Message::Subscribed { framework_id, .. }] => framework_id.clone(),
        other => panic!("{other:?}"),
    };
    for (i, id) in ["old", "mid", "new"].iter().enumerate() {
        h.advance(10 * i as u64);
        h.launch(sched, &fw, &agent, id, "cpus:1;mem:128");
    }
    h.launch(sched, &fw, &agent, "reserved", "cpus(batch):1");
    // An outstanding offer is taken back first, without killing anything for it.
    let offer = h.offer(&fw, &agent, "cpus:1;mem:64");

    let actions = h.input(request(&fw, "cpus:3"));
    let to_sched = sent_to(&actions, sched);
    assert!(to_sched
        .iter()
        .any(|m| matches!(m, Message::Rescind { offer_id } if *offer_id == offer.id)));
    let warning = to_sched
        .iter()
        .find_map(|m| match m {
            Message::RevocationWarning {
                task_ids,
                deadline_ms,
                resources,
                ..
            } => Some((task_ids.clone(), *deadline_ms, resources.clone())),
            _ => None,
        })
        .expect("warned");
    let ids: Vec<String> = warning.0.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        ids,
        ["new", "mid"],
        "offer covers 1 cpu; 2 more from the newest tasks"
    );
    assert_eq!(warning.1, 1_500);
    assert_eq!(warning.2, res("cpus:2;mem:256"));
    assert!(
        kills(&actions, agent_conn).is_empty(),
        "nothing killed before the deadline"
    );
    let (timer, at) = revoke_timer(&actions);
    assert_eq!(at, h.now.plus_ms(1_500));

    // A second request for the same framework while one is pending changes nothing.
    let again = h.input(request(&fw, "cpus:3"));
    assert!(sent_to(&again, sched).is_empty(), "{again:?}");

    h.advance(1_500);
    let actions = h.timer(timer);
    assert_eq!(kills(&actions, agent_conn), ["new", "mid"]);
    let actions = h.status(agent_conn, &fw, "new", TaskState::Killed, 11);
    let killed = updates(&actions, sched);
    assert_eq!(killed[0].reason.as_deref(), Some(reasons::PREEMPTED));
    // A retried update keeps the reason; an untouched task's own kill does not get it.
    let retry = h.status(agent_conn, &fw, "new", TaskState::Killed, 11);
    assert!(updates(&retry, sched)
        .iter()
        .all(|u| u.reason.as_deref() == Some(reasons::PREEMPTED)));
    let other = h.status(agent_conn, &fw, "old", TaskState::Killed, 12);
    assert_eq!(updates(&other, sched)[0].reason, None);
    assert_eq!(h.core.counters().tasks_preempted, 2);
    assert_eq!(
        h.task_state(&fw, "reserved"),
        Some(TaskState::Staging),
        "reserved never chosen"
    );
}

#[test]
fn the_master_default_grace_applies_and_ended_tasks_are_not_killed() {
    let mut h = Harness::with_config(MasterConfig {
        revocation_grace_ms: 700,
        ..MasterConfig::default()
    });
    let (agent_conn, agent) = h.register_agent("cpus:4;mem:4096");
    let (sched, fw) = h.subscribe("batch");
    h.launch(sched, &fw, &agent, "a", "cpus:2;mem:128");
    let actions = h.input(request(&fw, "cpus:1"));
    let (timer, at) = revoke_timer(&actions);
    assert_eq!(at, h.now.plus_ms(700));
    h.status(agent_conn, &fw, "a", TaskState::Finished, 1);
    let actions = h.timer(timer);
    assert!(kills(&actions, agent_conn).is_empty(), "{actions:?}");
    // Unknown frameworks and frameworks with nothing to give are ignored.
    let other = FrameworkId::new("nobody").unwrap();
    assert!(h.input(request(&other, "cpus:1")).is_empty());
    let actions = h.input(request(&fw, "cpus:1"));
    assert!(sent_to(&actions, sched).is_empty(), "{actions:?}");
}
