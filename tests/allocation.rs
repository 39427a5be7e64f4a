//! The allocation module's operator surface on real processes: `agora master --allocator`,
//! the `/allocator`, `/weights`, `/roles` endpoints and the `agora allocator|weights|roles`
//! commands, including a runtime policy switch that keeps every allocation.

mod common;

use agora_actors::*;
use common::*;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(20);

/// Subscribes a framework with one role and returns it once it has been offered something.
fn subscribe_with_role(addr: &str, name: &str, role: &str) -> RawClient {
    let mut c = RawClient::connect(addr, NodeKind::Scheduler, CLUSTER);
    c.expect("hello", Duration::from_secs(5), |m| {
        matches!(m, Message::Hello(_)).then_some(())
    });
    let mut info = FrameworkInfo::new(name);
    info.roles = vec![role.to_string()];
    c.send(&Message::Subscribe { framework: info });
    let id = c.expect("subscribed", Duration::from_secs(5), |m| match m {
        Message::Subscribed { framework_id, .. } => Some(framework_id.clone()),
        _ => None,
    });
    c.framework_id = Some(id);
    c
}

/// `(role, allocated)` pairs of `GET /roles`.
fn role_allocations(http: &str) -> Vec<(String, String)> {
    let v = get_json(http, "/roles").expect("/roles");
    v["roles"]
        .as_array()
        .expect("roles array")
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap_or("").to_string(),
                r["allocated"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn operators_see_roles_set_weights_and_switch_allocators_without_losing_offers() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        master_flags: ["--allocator", "priority", "--allocation-interval-ms", "100"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    });
    let (code, out) = c.run_cli(&["allocator", "--master", &c.master_http]);
    assert_eq!((code, out.trim()), (0, "priority"), "{out}");

    // Two frameworks in two roles each hold one agent's offer (they never answer it; the
    // offer timeout is 10 s, longer than this test's checks). Both subscribe before any agent
    // exists, so however slow the machine, the first agent goes to one of them and the second
    // to the other (it has the lower share then): one offer each, never both to the first.
    let mut eng = subscribe_with_role(&c.master_addr, "eng-fw", "eng/backend");
    let mut ads = subscribe_with_role(&c.master_addr, "ads-fw", "ads");
    let resources = ClusterOpts::default().agent_resources;
    c.add_agent(0, &resources, "rack:r0");
    c.add_agent(1, &resources, "rack:r1");
    let http = c.master_http.as_str();
    assert_eq!(eng.next_offers(SECS).len(), 1);
    assert_eq!(ads.next_offers(SECS).len(), 1);
    let before = wait_until("both roles hold an offer", SECS, || {
        let r = role_allocations(http);
        (r.len() == 2 && r.iter().all(|(_, a)| a.contains("cpus:4"))).then_some(r)
    });

    let (code, out) = c.run_cli(&["weights", "--master", http, "set", "eng/backend=2.5"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("eng/backend") && out.contains("2.5"), "{out}");
    let (code, out) = c.run_cli(&["weights", "--master", http, "set", "bad role=1"]);
    assert_ne!(code, 0);
    assert!(out.contains("invalid role"), "{out}");
    let (code, out) = c.run_cli(&["weights", "--master", http, "set", "ads=0"]);
    assert_ne!(code, 0);
    assert!(out.contains("invalid weight"), "{out}");

    // Switch twice at runtime: the offers outstanding stay allocated, nothing is re-offered.
    for name in ["lottery", "drf"] {
        let (code, out) = c.run_cli(&["allocator", "--master", http, "set", name]);
        assert_eq!((code, out.trim()), (0, name), "{out}");
        assert_eq!(role_allocations(http), before);
    }
    let (code, out) = c.run_cli(&["allocator", "--master", http, "set", "fifo"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("choose one of drf, priority, lottery"),
        "{out}"
    );

    let (code, out) = c.run_cli(&["roles", "--master", http]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("allocator: drf"), "{out}");
    let eng_line = out
        .lines()
        .find(|l| l.starts_with("eng/backend"))
        .expect("eng row");
    assert!(
        eng_line.contains("2.5") && eng_line.contains("cpus:4"),
        "{out}"
    );
    // Quota: set, shown, refused when inconsistent, removed.
    let (code, out) = c.run_cli(&[
        "quota",
        "--master",
        http,
        "set",
        "ads",
        "--guarantee",
        "cpus:2",
        "--limit",
        "cpus:6",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ads") && out.contains("cpus:2") && out.contains("cpus:6"),
        "{out}"
    );
    let (code, out) = c.run_cli(&[
        "quota",
        "--master",
        http,
        "set",
        "ads",
        "--guarantee",
        "cpus:9",
        "--limit",
        "cpus:6",
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("above its limit"), "{out}");
    let (code, out) = c.run_cli(&["quota", "--master", http, "remove", "ads"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("ads"), "{out}");
    let state = c.state();
    assert_eq!(state["allocator"]["name"], "drf");
    assert_eq!(state["offers"].as_array().map(|o| o.len()), Some(2));
}

fn flags(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Launches `tasks` (id, resources) on the offer's agent as one accept, with `sleep 60`.
fn launch_sleepers(c: &mut RawClient, offer: &Offer, tasks: &[(&str, &str)]) {
    let infos = tasks
        .iter()
        .map(|(id, r)| task(id, &offer.agent_id, r, "sleep 60"))
        .collect();
    c.send(&Message::Accept {
        framework_id: c.fid(),
        offer_ids: vec![offer.id.clone()],
        operations: vec![Operation::Launch { tasks: infos }],
        filters: Filters::default(),
    });
}

/// Waits until every task in `ids` reported `state` (updates come in any order), and
/// acknowledges every update meanwhile. Returns those updates.
fn wait_all(c: &mut RawClient, ids: &[&str], state: TaskState) -> Vec<TaskStatus> {
    let mut waiting: std::collections::BTreeSet<String> =
        ids.iter().map(|s| s.to_string()).collect();
    let fid = c.fid();
    let mut seen = Vec::new();
    while !waiting.is_empty() {
        let st = c.expect("task updates", SECS, |m| match m {
            Message::Update { status } => Some(status.clone()),
            _ => None,
        });
        if let (Some(uuid), Some(agent_id)) = (st.uuid, st.agent_id.clone()) {
            c.send(&Message::Acknowledge {
                framework_id: fid.clone(),
                agent_id,
                task_id: st.task_id.clone(),
                uuid,
            });
        }
        if st.state == state && waiting.remove(st.task_id.as_str()) {
            seen.push(st);
        } else {
            assert!(
                !st.state.is_terminal(),
                "{} ended unexpectedly: {st:?}",
                st.task_id
            );
        }
    }
    seen
}

fn wait_all_running(c: &mut RawClient, ids: &[&str]) {
    wait_all(c, ids, TaskState::Running);
}

/// A framework above its share loses its newest tasks to a starving guaranteed role: its
/// scheduler is warned first (agent, resources, tasks, deadline), the kills come only after
/// its grace period, end TASK_KILLED with reason `preempted`, and the guaranteed role is then
/// offered the freed CPUs. The older tasks keep running.
#[test]
fn over_share_tasks_are_revoked_for_a_starving_guaranteed_role_after_the_grace_period() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 1,
        agent_resources: "cpus:4;mem:4096".into(),
        master_flags: flags(&["--allocation-interval-ms", "200"]),
    });
    let http = c.master_http.clone();
    let mut info = FrameworkInfo::new("batch-fw");
    info.roles = vec!["batch".into()];
    info.revocation_grace_ms = Some(1500);
    let mut batch = RawClient::subscribe_with(&c.master_addr, info);
    let offer = batch.next_offers(SECS).remove(0);
    let four: Vec<(String, &str)> = (0..4)
        .map(|i| (format!("t{i}"), "cpus:1;mem:256"))
        .collect();
    let four_ref: Vec<(&str, &str)> = four.iter().map(|(i, r)| (i.as_str(), *r)).collect();
    launch_sleepers(&mut batch, &offer, &four_ref);
    wait_all_running(&mut batch, &["t0", "t1", "t2", "t3"]);
    c.note_executors();

    let (code, out) = c.run_cli(&[
        "quota",
        "--master",
        &http,
        "set",
        "prod",
        "--guarantee",
        "cpus:2",
    ]);
    assert_eq!(code, 0, "{out}");
    let mut prod = subscribe_with_role(&c.master_addr, "prod-fw", "prod");

    assert_newest_two_revoked(&c, &mut batch, &offer, &mut prod);
}

/// The victim's scheduler is warned first (agent, resources, the newest tasks t3 and t2,
/// deadline = its 1500 ms grace period); the kills come only after the grace period, end
/// TASK_KILLED with reason `preempted`; the starving framework is then offered the freed
/// CPUs, and the older tasks t0 and t1 keep running.
fn assert_newest_two_revoked(
    c: &Cluster,
    batch: &mut RawClient,
    offer: &Offer,
    starving: &mut RawClient,
) {
    let (warned_at, warning) = batch.expect("revocation warning", SECS, |m| match m {
        Message::RevocationWarning { .. } => Some((std::time::Instant::now(), m.clone())),
        _ => None,
    });
    let Message::RevocationWarning {
        agent_id,
        resources,
        task_ids,
        deadline_ms,
    } = warning
    else {
        unreachable!()
    };
    assert_eq!(agent_id, offer.agent_id);
    assert_eq!(deadline_ms, 1500);
    let ids: Vec<&str> = task_ids.iter().map(|t| t.as_str()).collect();
    assert_eq!(ids, ["t3", "t2"], "newest first, just enough for cpus:2");
    assert_eq!(
        resources.scalar_total("cpus"),
        Milli::from_units(2),
        "{resources}"
    );

    for st in wait_all(batch, &["t3", "t2"], TaskState::Killed) {
        assert_eq!(st.reason.as_deref(), Some("preempted"), "{st:?}");
        assert!(
            warned_at.elapsed() >= Duration::from_millis(1400),
            "killed {:?} after the warning, before the grace period",
            warned_at.elapsed()
        );
    }
    let cpus = wait_until(
        "the starving framework offered the freed cpus",
        SECS,
        || {
            let offers = starving.next_offers(Duration::from_secs(2));
            let cpus: i64 = offers
                .iter()
                .map(|o| o.resources.scalar_total("cpus").0)
                .sum();
            (cpus >= 2000).then_some(cpus)
        },
    );
    assert!(cpus >= 2000);
    let state = c.state();
    let live: Vec<String> = state["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert!(
        live.contains(&"t0".to_string()) && live.contains(&"t1".to_string()),
        "the older tasks keep running: {live:?}"
    );
    assert!(!live.contains(&"t3".to_string()), "{live:?}");
}

/// Fair-share revocation (`--revoke-below-fair-share 0.5`): batch (weight 1) fills a
/// 4 cpu / 4096 MB agent with four 1 cpu / 1024 MB tasks: dominant share 1. web (weight 1, no
/// quota) subscribes: the fair share of each is 1/2, web's share is 0 < 0.5 x 1/2, and nothing
/// is free, so web is offered nothing. After --fair-share-wait-ms it counts as starving and
/// the allocator asks for web's fair share back from batch — 2 cpus, 2048 MB, which leaves
/// batch at its own fair share: the two newest tasks. (Without the flag, the default, nothing
/// is revoked: `allocator/tests/features.rs` checks that.)
#[test]
fn over_share_tasks_are_revoked_for_a_role_starving_far_below_its_fair_share() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 1,
        agent_resources: "cpus:4;mem:4096".into(),
        master_flags: flags(&[
            "--allocation-interval-ms",
            "200",
            "--revoke-below-fair-share",
            "0.5",
            "--fair-share-wait-ms",
            "1000",
        ]),
    });
    let mut info = FrameworkInfo::new("batch-fw");
    info.roles = vec!["batch".into()];
    info.revocation_grace_ms = Some(1500);
    let mut batch = RawClient::subscribe_with(&c.master_addr, info);
    let offer = batch.next_offers(SECS).remove(0);
    let tasks: Vec<(String, &str)> = (0..4)
        .map(|i| (format!("t{i}"), "cpus:1;mem:1024"))
        .collect();
    let tasks: Vec<(&str, &str)> = tasks.iter().map(|(i, r)| (i.as_str(), *r)).collect();
    launch_sleepers(&mut batch, &offer, &tasks);
    wait_all_running(&mut batch, &["t0", "t1", "t2", "t3"]);
    c.note_executors();

    let subscribed_at = std::time::Instant::now();
    let mut web = subscribe_with_role(&c.master_addr, "web-fw", "web");
    assert_newest_two_revoked(&c, &mut batch, &offer, &mut web);
    assert!(
        subscribed_at.elapsed() >= Duration::from_millis(1000 + 1400),
        "web waited, then the grace period ran: {:?}",
        subscribed_at.elapsed()
    );
}

/// Static reservations (`cpus(ads):2` on the agent) are offered only to `ads` and its
/// sub-roles; a dynamic reservation made with `agora reserve` shows in /roles and
/// /reservations and survives a master restart (the registry in --work-dir).
#[test]
fn reservations_are_offered_only_to_their_role_and_dynamic_ones_survive_a_master_restart() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        master_flags: flags(&["--allocation-interval-ms", "200"]),
        ..Default::default()
    });
    c.add_agent(0, "cpus:2;mem:1024;cpus(ads):2;mem(ads):512", "rack:r0");
    let http = c.master_http.clone();
    let agent_id = wait_until("agent registered", SECS, || {
        let s = get_json(&http, "/state")?;
        s["agents"][0]["id"].as_str().map(str::to_string)
    });
    let mut eng = subscribe_with_role(&c.master_addr, "eng-fw", "eng");
    let offer = eng.next_offers(SECS).remove(0);
    let text = offer.resources.to_string();
    assert!(
        text.contains("cpus:2") && !text.contains("(ads)"),
        "no ads resources for eng: {text}"
    );
    let mut ads = subscribe_with_role(&c.master_addr, "ads-fw", "ads/team");
    let offer = ads.next_offers(SECS).remove(0);
    assert_eq!(
        offer.resources.to_string(),
        "cpus(ads):2;mem(ads):512",
        "only the reserved part is left"
    );

    // Reserve one of the unreserved cpus (now offered to eng: the offer is rescinded first).
    let (code, out) = c.run_cli(&[
        "reserve", "--master", &http, "--agent", &agent_id, "--role", "eng", "cpus:1",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("cpus(eng):1"), "{out}");
    let (code, out) = c.run_cli(&[
        "reserve", "--master", &http, "--agent", &agent_id, "--role", "eng", "cpus:9",
    ]);
    assert_ne!(code, 0, "more than the agent has: {out}");
    assert!(out.contains("unused"), "{out}");
    let (code, out) = c.run_cli(&["roles", "--master", &http]);
    assert_eq!(code, 0, "{out}");
    let eng_row = out
        .lines()
        .find(|l| l.starts_with("eng "))
        .expect(&out)
        .to_string();
    assert!(eng_row.contains("cpus(eng):1"), "{out}");

    // Weights and quotas are persisted too.
    let (code, out) = c.run_cli(&["weights", "--master", &http, "set", "eng=2.5"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = c.run_cli(&[
        "quota",
        "--master",
        &http,
        "set",
        "ads",
        "--guarantee",
        "cpus:1",
    ]);
    assert_eq!(code, 0, "{out}");

    // Restart the master on the same work dir: the reservation is back once the agent is.
    let args = restart_args(&c);
    c.master.kill9();
    c.master = spawn(c.dir.path(), "master-restarted", &args);
    let reserved = wait_until("reservation restored", Duration::from_secs(30), || {
        let v = get_json(&http, "/roles")?;
        v["roles"]
            .as_array()?
            .iter()
            .find(|r| r["role"] == "eng")
            .and_then(|r| r["reserved"].as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
    });
    assert_eq!(reserved, "cpus(eng):1");
    let weights = get_json(&http, "/weights").expect("/weights");
    assert_eq!(weights["eng"], 2.5, "{weights}");
    let quota = get_json(&http, "/quota").expect("/quota");
    assert_eq!(quota["ads"]["guarantee"]["cpus"], 1000, "{quota}");
    let listed = get_json(&http, "/reservations").expect("/reservations");
    assert_eq!(listed[agent_id.as_str()], "cpus(eng):1", "{listed}");
    let state = get_json(&http, "/state").expect("/state");
    let total = state["agents"][0]["total"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        total.contains("cpus(eng):1") && total.contains("cpus:1;"),
        "{state}"
    );
    drop(eng);
    drop(ads);
}

/// The master's command line, to start it again on the same addresses and work dir.
fn restart_args(c: &Cluster) -> Vec<String> {
    flags(&[
        "master",
        "--listen",
        &c.master_addr,
        "--http",
        &c.master_http,
        "--work-dir",
        &c.dir.path().join("master").display().to_string(),
        "--allocation-interval-ms",
        "200",
    ])
}
