use super::*;

/// One agent, one framework, one offer of `offer` from it.
fn setup(offer: &str) -> (Harness, ConnId, AgentId, ConnId, FrameworkId, Offer) {
    let mut h = Harness::new();
    let (agent_conn, agent) = h.register_agent("cpus:8;mem:4096;ports:[31000-31100]");
    let (sched, fw) = h.subscribe("web");
    let o = h.offer(&fw, &agent, offer);
    (h, agent_conn, agent, sched, fw, o)
}

fn only_update(actions: &[Action], conn: ConnId) -> TaskStatus {
    let ups = updates(actions, conn);
    assert_eq!(ups.len(), 1, "{actions:?}");
    ups[0].clone()
}

#[test]
fn accept_launches_and_returns_the_rest_with_the_filter() {
    let (mut h, agent_conn, agent, sched, fw, offer) = setup("cpus:4;mem:1024;ports:[31000-31010]");
    let t = task("t1", &agent, "cpus:1;mem:256;ports:[31000-31000]");
    let actions = h.send(sched, accept(&fw, &[&offer], vec![t.clone()], 10.0));
    match &sent_to(&actions, agent_conn)[..] {
        [Message::RunTask { framework, task }] => {
            assert_eq!(task, &t);
            assert_eq!(framework.id.as_ref(), Some(&fw));
            assert_eq!(framework.name, "web");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        updates(&actions, sched).is_empty(),
        "no update for a good launch"
    );
    assert_eq!(
        recovers(&actions),
        vec![(res("cpus:3;mem:768;ports:[31001-31010]"), Some(10_000))]
    );
    assert_eq!(h.task_state(&fw, "t1"), Some(TaskState::Staging));
    let c = h.core.counters();
    assert_eq!((c.offers_accepted, c.tasks_launched), (1, 1));
    let state = h.core.state();
    assert!(state.offers.is_empty());
    assert_eq!(state.tasks[0].state, "TASK_STAGING");
    assert_eq!(state.agents[0].used, "cpus:1;mem:256;ports:[31000-31000]");
    assert_eq!(state.frameworks[0].task_states["TASK_STAGING"], 1);
}

#[test]
fn an_exact_fit_returns_nothing() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:1");
    let actions = h.send(
        sched,
        accept(&fw, &[&offer], vec![task("t1", &agent, "cpus:1")], 5.0),
    );
    assert_eq!(run_tasks(&actions).len(), 1);
    assert!(recovers(&actions).is_empty());
}

#[test]
fn several_offers_of_one_agent_combine() {
    let (mut h, _ac, agent, sched, fw, o1) = setup("cpus:1");
    let o2 = h.offer(&fw, &agent, "cpus:1");
    let actions = h.send(
        sched,
        accept(&fw, &[&o1, &o2], vec![task("t1", &agent, "cpus:2")], 5.0),
    );
    assert_eq!(run_tasks(&actions).len(), 1);
    assert_eq!(h.core.counters().offers_accepted, 2);
}

#[test]
fn unknown_offer_drops_every_task() {
    let (mut h, agent_conn, agent, sched, fw, offer) = setup("cpus:4");
    let mut bogus = offer.clone();
    bogus.id = OfferId::new("offer-nope").unwrap();
    let tasks = vec![task("t1", &agent, "cpus:1"), task("t2", &agent, "cpus:1")];
    let actions = h.send(sched, accept(&fw, &[&offer, &bogus], tasks, 5.0));
    assert!(run_tasks(&actions).is_empty());
    assert!(sent_to(&actions, agent_conn).is_empty());
    let ups = updates(&actions, sched);
    assert_eq!(ups.len(), 2);
    for u in &ups {
        assert_eq!(u.state, TaskState::Dropped);
        assert_eq!(u.reason.as_deref(), Some(reasons::INVALID_OFFERS));
        assert!(u.message.contains("offer-nope"), "{}", u.message);
        assert_eq!(u.source, UpdateSource::Master);
        assert_eq!(u.uuid, None);
    }
    // The valid offer is consumed and given back without a filter.
    assert_eq!(recovers(&actions), vec![(res("cpus:4"), None)]);
    assert!(h.core.state().offers.is_empty());
    assert_eq!(h.core.counters().tasks_terminal["TASK_DROPPED"], 2);
}

#[test]
fn an_offer_cannot_be_used_twice() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:4");
    let first = h.send(
        sched,
        accept(&fw, &[&offer], vec![task("t1", &agent, "cpus:1")], 5.0),
    );
    assert_eq!(run_tasks(&first).len(), 1);
    let second = h.send(
        sched,
        accept(&fw, &[&offer], vec![task("t2", &agent, "cpus:1")], 5.0),
    );
    assert!(run_tasks(&second).is_empty());
    let u = only_update(&second, sched);
    assert_eq!(u.state, TaskState::Dropped);
    assert!(u.message.contains("no longer valid"));
    assert!(recovers(&second).is_empty());
}

#[test]
fn another_frameworks_offer_is_refused_and_left_alone() {
    let (mut h, _ac, agent, _sched, fw, offer) = setup("cpus:4");
    let (thief, thief_fw) = h.subscribe("batch");
    let actions = h.send(
        thief,
        accept(
            &thief_fw,
            &[&offer],
            vec![task("t1", &agent, "cpus:1")],
            5.0,
        ),
    );
    assert!(run_tasks(&actions).is_empty());
    let u = only_update(&actions, thief);
    assert_eq!(u.state, TaskState::Dropped);
    assert!(u.message.contains("not an offer to framework"));
    assert!(recovers(&actions).is_empty());
    assert_eq!(h.core.state().offers[0].framework_id, fw.to_string());
}

#[test]
fn offers_from_two_agents_cannot_be_combined() {
    let (mut h, _ac, agent, sched, fw, o1) = setup("cpus:4");
    let (_ac2, agent2) = h.register_agent("cpus:4");
    let o2 = h.offer(&fw, &agent2, "cpus:4");
    let actions = h.send(
        sched,
        accept(&fw, &[&o1, &o2], vec![task("t1", &agent, "cpus:1")], 5.0),
    );
    assert!(run_tasks(&actions).is_empty());
    let u = only_update(&actions, sched);
    assert!(u.message.contains("several agents"), "{}", u.message);
    assert_eq!(recovers(&actions).len(), 2);
    assert!(h.core.state().offers.is_empty());
}

#[test]
fn an_offer_named_twice_is_invalid() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:4");
    let actions = h.send(
        sched,
        accept(
            &fw,
            &[&offer, &offer],
            vec![task("t1", &agent, "cpus:1")],
            5.0,
        ),
    );
    assert!(run_tasks(&actions).is_empty());
    assert!(only_update(&actions, sched).message.contains("named twice"));
    assert_eq!(recovers(&actions), vec![(res("cpus:4"), None)]);
}

#[test]
fn a_duplicate_task_id_is_refused_but_the_first_launches() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:4");
    let tasks = vec![task("t1", &agent, "cpus:1"), task("t1", &agent, "cpus:1")];
    let actions = h.send(sched, accept(&fw, &[&offer], tasks, 5.0));
    assert_eq!(run_tasks(&actions).len(), 1);
    // The first t1 is live now: the second gets an error, never a terminal update that would
    // end the live task in the framework's eyes.
    assert!(updates(&actions, sched).is_empty(), "{actions:?}");
    assert!(error_to(&actions, sched).contains("more than once"));
    assert_eq!(recovers(&actions), vec![(res("cpus:3"), Some(5_000))]);
}

#[test]
fn a_task_id_of_a_live_task_is_refused() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:4");
    h.launch(sched, &fw, &agent, "t1", "cpus:1");
    let actions = h.send(
        sched,
        accept(&fw, &[&offer], vec![task("t1", &agent, "cpus:1")], 5.0),
    );
    assert!(run_tasks(&actions).is_empty());
    assert!(updates(&actions, sched).is_empty(), "{actions:?}");
    assert!(error_to(&actions, sched).contains("already used"));
}

/// The text of the one error sent to `conn`.
fn error_to(actions: &[Action], conn: ConnId) -> String {
    let errs: Vec<String> = sent_to(actions, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::Error { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(errs.len(), 1, "{actions:?}");
    errs[0].clone()
}

#[test]
fn a_resent_accept_never_ends_the_live_tasks() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:4");
    let first = accept(&fw, &[&offer], vec![task("t1", &agent, "cpus:1")], 5.0);
    let actions = h.send(sched, first.clone());
    assert_eq!(run_tasks(&actions).len(), 1);
    // The same Accept again (a scheduler retry, or a duplicated message): its offer is gone.
    let again = h.send(sched, first);
    assert!(run_tasks(&again).is_empty());
    assert!(
        updates(&again, sched).is_empty(),
        "no TASK_DROPPED for the live t1: {again:?}"
    );
    assert!(error_to(&again, sched).contains("already live"));
}

#[test]
fn tasks_exceeding_what_is_left_are_refused_in_order() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:2;mem:1024");
    let tasks = vec![
        task("t1", &agent, "cpus:1.5;mem:256"),
        task("t2", &agent, "cpus:1;mem:256"),
        task("t3", &agent, "cpus:0.5;mem:256"),
        task("t4", &agent, "gpus:1"),
    ];
    let actions = h.send(sched, accept(&fw, &[&offer], tasks, 5.0));
    let launched: Vec<TaskId> = run_tasks(&actions).into_iter().map(|t| t.task_id).collect();
    assert_eq!(launched, vec![tid("t1"), tid("t3")]);
    let ups = updates(&actions, sched);
    assert_eq!(ups.len(), 2);
    assert_eq!(ups[0].task_id, tid("t2"));
    assert_eq!(ups[0].state, TaskState::Error);
    assert_eq!(ups[0].reason.as_deref(), Some(reasons::RESOURCES_EXCEEDED));
    assert!(
        ups[0].message.contains("needs cpus:1;mem:256 but only"),
        "{}",
        ups[0].message
    );
    assert_eq!(ups[1].task_id, tid("t4"));
    assert_eq!(recovers(&actions), vec![(res("mem:512"), Some(5_000))]);
}

#[test]
fn a_task_for_another_agent_is_refused() {
    let (mut h, agent_conn, _agent, sched, fw, offer) = setup("cpus:4");
    let (_c2, agent2) = h.register_agent("cpus:4");
    let actions = h.send(
        sched,
        accept(&fw, &[&offer], vec![task("t1", &agent2, "cpus:1")], 5.0),
    );
    assert!(sent_to(&actions, agent_conn).is_empty());
    assert!(run_tasks(&actions).is_empty());
    let u = only_update(&actions, sched);
    assert_eq!(u.state, TaskState::Error);
    assert!(u.message.contains("offers are for agent"), "{}", u.message);
    assert_eq!(recovers(&actions), vec![(res("cpus:4"), Some(5_000))]);
}

#[test]
fn malformed_tasks_are_refused_one_by_one() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:4");
    let mut no_command = task("t2", &agent, "cpus:1");
    no_command.command = None;
    let mut both = task("t3", &agent, "cpus:1");
    both.executor = Some(executor("e", ""));
    let mut empty = task("t4", &agent, "cpus:1");
    empty.resources = Resources::new();
    let mut bad_id: TaskInfo = task("t5", &agent, "cpus:1");
    bad_id.task_id = serde_json::from_str("\"a/b\"").unwrap();
    let tasks = vec![
        task("t1", &agent, "cpus:1"),
        no_command,
        both,
        empty,
        bad_id,
    ];
    let actions = h.send(sched, accept(&fw, &[&offer], tasks, 5.0));
    assert_eq!(run_tasks(&actions).len(), 1);
    let msgs: Vec<String> = updates(&actions, sched)
        .into_iter()
        .map(|u| u.message)
        .collect();
    assert_eq!(msgs.len(), 4);
    assert!(msgs[0].contains("neither a command nor an executor"));
    assert!(msgs[1].contains("custom executor"), "{}", msgs[1]);
    assert!(msgs[2].contains("no resources"));
    assert!(msgs[3].contains("invalid task id"));
}

#[test]
fn a_bad_refusal_is_reported_and_the_default_applies() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:4");
    let actions = h.send(
        sched,
        accept(&fw, &[&offer], vec![task("t1", &agent, "cpus:1")], -3.0),
    );
    assert_eq!(run_tasks(&actions).len(), 1);
    let errs = errors(&actions, sched);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].0, ErrorCode::BadRequest);
    assert!(errs[0].1.contains("refuse_seconds"));
    assert_eq!(recovers(&actions), vec![(res("cpus:3"), Some(5_000))]);
}

#[test]
fn too_many_tasks_refuses_them_all() {
    let mut h = Harness::with_config(MasterConfig {
        max_tasks_per_accept: 2,
        ..MasterConfig::default()
    });
    let (_ac, agent) = h.register_agent("cpus:8");
    let (sched, fw) = h.subscribe("web");
    let offer = h.offer(&fw, &agent, "cpus:8");
    let tasks = (0..3)
        .map(|i| task(&format!("t{i}"), &agent, "cpus:1"))
        .collect();
    let actions = h.send(sched, accept(&fw, &[&offer], tasks, 5.0));
    assert!(run_tasks(&actions).is_empty());
    let ups = updates(&actions, sched);
    assert_eq!(ups.len(), 3);
    assert!(ups
        .iter()
        .all(|u| u.state == TaskState::Error && u.message.contains("limit 2")));
    assert_eq!(recovers(&actions), vec![(res("cpus:8"), Some(5_000))]);
}

#[test]
fn accept_without_operations_is_a_decline() {
    let (mut h, _ac, _agent, sched, fw, offer) = setup("cpus:4");
    let msg = Message::Accept {
        framework_id: fw.clone(),
        offer_ids: vec![offer.id.clone()],
        operations: vec![],
        filters: Filters {
            refuse_seconds: 2.5,
        },
    };
    let actions = h.send(sched, msg);
    assert_eq!(recovers(&actions), vec![(res("cpus:4"), Some(2_500))]);
    assert_eq!(h.core.counters().offers_declined, 1);
    assert_eq!(h.core.counters().offers_accepted, 0);
    // Without tasks there is nothing to drop: a bad offer is an error reply instead.
    let actions = h.send(
        sched,
        Message::Accept {
            framework_id: fw,
            offer_ids: vec![offer.id],
            operations: vec![],
            filters: Filters::default(),
        },
    );
    assert_eq!(errors(&actions, sched)[0].0, ErrorCode::NotFound);
}

#[test]
fn accept_for_another_framework_id_is_forbidden() {
    let (mut h, _ac, agent, sched, _fw, offer) = setup("cpus:4");
    let other = FrameworkId::new("fw-other").unwrap();
    let actions = h.send(
        sched,
        accept(&other, &[&offer], vec![task("t1", &agent, "cpus:1")], 5.0),
    );
    assert_eq!(errors(&actions, sched)[0].0, ErrorCode::Forbidden);
    assert!(run_tasks(&actions).is_empty());
    assert_eq!(h.core.state().offers.len(), 1, "offer untouched");
}

#[test]
fn executor_resources_are_charged_once_per_new_executor() {
    let (mut h, _ac, agent, sched, fw, offer) = setup("cpus:2;mem:512");
    let exec = executor("exec-1", "cpus:0.5;mem:128");
    let mut t1 = task("t1", &agent, "cpus:0.5;mem:128");
    t1.command = None;
    t1.executor = Some(exec.clone());
    let mut t2 = t1.clone();
    t2.task_id = tid("t2");
    let mut t3 = t1.clone();
    t3.task_id = tid("t3");
    t3.executor = Some(executor("exec-1", "cpus:0.1"));
    let actions = h.send(sched, accept(&fw, &[&offer], vec![t1, t2, t3], 5.0));
    assert_eq!(run_tasks(&actions).len(), 2);
    let u = only_update(&actions, sched);
    assert!(u.message.contains("different definition"), "{}", u.message);
    assert_eq!(
        recovers(&actions),
        vec![(res("cpus:0.5;mem:128"), Some(5_000))]
    );
    assert_eq!(h.core.state().agents[0].used, "cpus:1.5;mem:384");
}
