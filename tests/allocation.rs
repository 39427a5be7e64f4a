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
    let c = Cluster::start(ClusterOpts {
        master_flags: ["--allocator", "priority", "--allocation-interval-ms", "100"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    });
    let http = c.master_http.as_str();
    let (code, out) = c.run_cli(&["allocator", "--master", http]);
    assert_eq!((code, out.trim()), (0, "priority"), "{out}");

    // Two frameworks in two roles each hold one agent's offer (they never answer it; the
    // offer timeout is 10 s, longer than this test's checks).
    let mut eng = subscribe_with_role(&c.master_addr, "eng-fw", "eng/backend");
    let mut ads = subscribe_with_role(&c.master_addr, "ads-fw", "ads");
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
