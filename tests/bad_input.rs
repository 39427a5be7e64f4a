//! Bad input never crashes a node: malformed frames, wrong versions, bad resources, foreign ids.

mod common;

use agora_actors::*;
use common::*;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(20);

fn master_alive(c: &mut Cluster) {
    assert!(c.master.alive(), "master died:\n{}", c.master.log_text());
    assert!(http_get::get(&c.master_http, "/health").is_ok());
}

#[test]
fn malformed_and_oversize_frames_and_wrong_hellos_are_survived() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    });
    // Garbage bytes.
    let mut s = std::net::TcpStream::connect(&c.master_addr).unwrap();
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n\x00\x01\x02garbage").ok();
    // A length header far above the frame limit.
    let mut s2 = std::net::TcpStream::connect(&c.master_addr).unwrap();
    std::io::Write::write_all(&mut s2, &u32::MAX.to_be_bytes()).ok();
    // Wrong cluster and wrong protocol version get a clear error.
    let mut other = RawClient::connect(&c.master_addr, NodeKind::Scheduler, "someone-else");
    let err = other.expect("cluster error", SECS, |m| match m {
        Message::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    });
    assert_eq!(err.0, ErrorCode::ClusterMismatch, "{err:?}");
    let mut h = Hello::new(CLUSTER, NodeKind::Scheduler, "old");
    h.protocol_version = 999;
    let mut old = RawClient::connect_with(&c.master_addr, h);
    let err = old.expect("version error", SECS, |m| match m {
        Message::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    });
    assert_eq!(err.0, ErrorCode::VersionMismatch, "{err:?}");
    // A frame that is not valid bincode after a good handshake.
    let mut bad = RawClient::connect(&c.master_addr, NodeKind::Scheduler, CLUSTER);
    let _ = bad.send_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    std::thread::sleep(Duration::from_millis(300));
    master_alive(&mut c);
    // The cluster still works.
    let (code, out) = c.run_cli(&["run", "--master", &c.master_addr, "--", "true"]);
    assert_eq!(code, 0, "{out}");
    master_alive(&mut c);
}

#[test]
fn launches_outside_the_offer_are_refused_with_reasons() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    });
    let mut fw = RawClient::subscribe(&c.master_addr, "greedy");
    let o = fw.next_offers(SECS).remove(0);
    let tasks = vec![
        task("too-big", &o.agent_id, "cpus:1000;mem:32", "true"),
        task("ok", &o.agent_id, "cpus:0.1;mem:32", "true"),
        task("ok", &o.agent_id, "cpus:0.1;mem:32", "true"),
    ];
    fw.send(&Message::Accept {
        framework_id: fw.fid(),
        offer_ids: vec![o.id.clone()],
        operations: vec![Operation::Launch { tasks }],
        filters: Filters::default(),
    });
    // The second "ok" names a live task: refused with an error, never a terminal update that
    // would end the live one in the framework's eyes.
    fw.expect("duplicate refused", SECS, |m| {
        matches!(m, Message::Error { message, .. } if message.contains("more than once"))
            .then_some(())
    });
    let mut seen = vec![];
    while seen.len() < 2 {
        let st = fw.expect("updates", SECS, |m| match m {
            Message::Update { status } => Some(status.clone()),
            _ => None,
        });
        if let (Some(uuid), Some(a)) = (st.uuid, st.agent_id.clone()) {
            fw.send(&Message::Acknowledge {
                framework_id: fw.fid(),
                agent_id: a,
                task_id: st.task_id.clone(),
                uuid,
            });
        }
        if matches!(st.state, TaskState::Error | TaskState::Finished) {
            seen.push((st.task_id.to_string(), st.state, st.reason.clone()));
        }
    }
    assert!(
        seen.iter()
            .any(|(t, s, _)| t == "too-big" && *s == TaskState::Error),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|(t, s, _)| t == "ok" && *s == TaskState::Error),
        "no terminal error for the live task: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(t, s, _)| t == "ok" && *s == TaskState::Finished),
        "{seen:?}"
    );
    // Unknown offer and a foreign framework id.
    fw.send(&Message::Decline {
        framework_id: fw.fid(),
        offer_ids: vec![OfferId::new("no-such-offer").unwrap()],
        filters: Filters::default(),
    });
    fw.expect("error for unknown offer", SECS, |m| {
        matches!(m, Message::Error { .. }).then_some(())
    });
    fw.send(&Message::Revive {
        framework_id: FrameworkId::new("not-mine").unwrap(),
    });
    fw.expect("error for foreign id", SECS, |m| {
        matches!(m, Message::Error { .. }).then_some(())
    });
    // NaN refuse_seconds.
    let o2 = fw.next_offers(SECS).remove(0);
    fw.send(&Message::Decline {
        framework_id: fw.fid(),
        offer_ids: vec![o2.id.clone()],
        filters: Filters {
            refuse_seconds: f64::NAN,
        },
    });
    fw.expect("error for NaN", SECS, |m| {
        matches!(m, Message::Error { message, .. } if message.contains("refuse")).then_some(())
    });
    master_alive(&mut c);
}

#[test]
fn hijacking_another_frameworks_id_is_refused() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    });
    let owner = RawClient::subscribe(&c.master_addr, "owner");
    let mut thief = RawClient::connect(&c.master_addr, NodeKind::Scheduler, CLUSTER);
    let mut info = FrameworkInfo::new("thief");
    info.id = Some(owner.fid());
    thief.send(&Message::Subscribe { framework: info });
    let code = thief.expect("forbidden", SECS, |m| match m {
        Message::Error { code, .. } => Some(*code),
        _ => None,
    });
    assert_eq!(code, ErrorCode::Forbidden);
    master_alive(&mut c);
}

#[test]
fn bad_resource_strings_are_rejected_with_the_bad_part_named() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "cpus:-1",
        "cpus:NaN",
        "mem:1e99",
        "cpus:abc;mem:10",
        "ports:[9-3]",
    ] {
        let out = std::process::Command::new(agora_bin())
            .args([
                "agent",
                "--master",
                "127.0.0.1:1",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--work-dir",
                &dir.path().display().to_string(),
                "--resources",
                bad,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--resources"), "{bad}: {err}");
    }
    let out = std::process::Command::new(agora_bin())
        .args([
            "run",
            "--master",
            "127.0.0.1:1",
            "--cpus",
            "NaN",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}
