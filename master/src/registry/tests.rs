//! Registry tests: state machine, storage identity/corruption checks, a three-node group driven
//! by hand (election, replication, failover, catch-up by snapshot), and kill -9 crash recovery.

use super::*;
use agora_actors::{AgentId, FrameworkId};
use std::collections::BTreeMap;
use std::path::Path;

fn peers(n: u64) -> BTreeMap<u64, String> {
    (1..=n)
        .map(|i| (i, format!("127.0.0.1:{}", 7000 + i)))
        .collect()
}

fn config(id: u64, n: u64) -> RegistryConfig {
    let mut c = RegistryConfig::new(Identity {
        cluster: "test".into(),
        node_id: id,
        peers: peers(n),
    });
    c.compact_after_entries = 20;
    c
}

fn admit(i: u64) -> RegistryOp {
    RegistryOp::AdmitAgent {
        agent_id: AgentId::new(format!("a-{i}")).unwrap(),
        record: AgentRecord {
            hostname: format!("h{i}"),
            endpoint: format!("127.0.0.1:{i}"),
        },
    }
}

/// Drives a group of one until it leads.
fn lead_alone<S: RegistryStorage>(node: &mut RegistryNode<S>) {
    for _ in 0..100 {
        node.drive().unwrap();
        if node.is_leader() {
            return;
        }
        node.tick();
    }
    panic!("a group of one did not elect itself");
}

#[test]
fn group_of_one_applies_and_recovers_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut n = reopen(|| RegistryNode::open(dir.path(), config(1, 1))).unwrap();
        lead_alone(&mut n);
        for i in 1..=50 {
            n.propose(&admit(i)).unwrap();
            let out = n.drive().unwrap();
            assert_eq!(out.applied, vec![admit(i)]);
            assert!(out.messages.is_empty());
        }
        assert_eq!(n.state().agents.len(), 50);
    }
    let mut n = reopen(|| RegistryNode::open(dir.path(), config(1, 1))).unwrap();
    assert_eq!(n.state().agents.len(), 50, "state comes back from sled");
    lead_alone(&mut n);
    n.propose(&admit(51)).unwrap();
    n.drive().unwrap();
    assert_eq!(n.state().agents.len(), 51);
}

#[test]
fn state_machine_limits_and_removed_frameworks() {
    let limits = RegistryLimits {
        max_agents: 1,
        max_frameworks: 2,
        max_roles: 1,
    };
    let mut s = RegistryState::default();
    s.apply(&admit(1), &limits).unwrap();
    assert_eq!(
        s.apply(&admit(2), &limits),
        Err(RegistryError::Full("agents", 1))
    );
    s.apply(&admit(1), &limits).unwrap(); // re-admission of a known agent always fits
    let fw = FrameworkId::new("fw-1").unwrap();
    let add = RegistryOp::AddFramework {
        framework_id: fw.clone(),
        record: FrameworkRecord {
            name: "f".into(),
            roles: vec!["*".into()],
            failover_timeout_ms: 5_000,
        },
    };
    s.apply(&add, &limits).unwrap();
    s.apply(
        &RegistryOp::RemoveFramework {
            framework_id: fw.clone(),
        },
        &limits,
    )
    .unwrap();
    assert!(matches!(
        s.apply(&add, &limits),
        Err(RegistryError::FrameworkRemoved(_))
    ));
    let back = RegistryState::decode(&s.encode()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn another_cluster_node_or_peer_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(reopen(|| RegistryNode::open(dir.path(), config(1, 3))).unwrap());
    let mut c = config(1, 3);
    c.identity.cluster = "other".into();
    assert!(matches!(
        reopen(|| RegistryNode::open(dir.path(), c.clone())).err(),
        Some(RegistryError::OtherCluster { .. })
    ));
    assert!(matches!(
        reopen(|| RegistryNode::open(dir.path(), config(2, 3))).err(),
        Some(RegistryError::OtherNode {
            stored: 1,
            given: 2
        })
    ));
    assert!(matches!(
        reopen(|| RegistryNode::open(dir.path(), config(1, 5))).err(),
        Some(RegistryError::PeersChanged { .. })
    ));
    let mut c = config(4, 3);
    c.identity.node_id = 4;
    let other = tempfile::tempdir().unwrap();
    assert!(matches!(
        RegistryNode::open(other.path(), c).err(),
        Some(RegistryError::Config(_))
    ));
}

#[test]
fn truncated_log_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut n = reopen(|| RegistryNode::open(dir.path(), config(1, 1))).unwrap();
        lead_alone(&mut n);
        for i in 1..=5 {
            n.propose(&admit(i)).unwrap();
            n.drive().unwrap();
        }
    }
    {
        // Cut the log's tail behind raft's back, as a lost write or a bad copy would.
        let db = reopen(|| sled::open(dir.path())).unwrap();
        let log = db.open_tree("raft_log").unwrap();
        let (k, _) = log.last().unwrap().unwrap();
        log.remove(k).unwrap();
        db.flush().unwrap();
    }
    let err = reopen(|| RegistryNode::open(dir.path(), config(1, 1)))
        .err()
        .unwrap();
    assert!(matches!(err, RegistryError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn bad_peers_flags_are_refused() {
    assert_eq!(parse_peers("1=a:1,2=b:2").unwrap().len(), 2);
    for bad in [
        "",
        "1=a:1,1=b:2",
        "1=a:1,2=a:1",
        "x=a:1",
        "0=a:1",
        "1=nohostport",
    ] {
        assert!(parse_peers(bad).is_err(), "{bad:?} accepted");
    }
}

/// Three nodes in one thread; `net` carries messages between live nodes.
struct Group {
    nodes: BTreeMap<u64, Option<RegistryNode>>,
    dirs: Vec<tempfile::TempDir>,
    net: Vec<(u64, u64, Vec<u8>)>,
    /// Messages to these nodes are dropped (a partition).
    cut: Vec<u64>,
}

impl Group {
    fn new(n: u64) -> Group {
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes = (1..=n)
            .map(|id| {
                let node = RegistryNode::open(dirs[id as usize - 1].path(), config(id, n)).unwrap();
                (id, Some(node))
            })
            .collect();
        Group {
            nodes,
            dirs,
            net: vec![],
            cut: vec![],
        }
    }

    fn dir(&self, id: u64) -> &Path {
        self.dirs[id as usize - 1].path()
    }

    /// One round: deliver pending messages, tick everyone, drive everyone.
    fn round(&mut self) {
        for (from, to, bytes) in std::mem::take(&mut self.net) {
            if self.cut.contains(&from) || self.cut.contains(&to) {
                continue;
            }
            if let Some(Some(n)) = self.nodes.get_mut(&to) {
                n.step(from, &bytes).unwrap();
            }
        }
        for (id, n) in self.nodes.iter_mut() {
            let Some(n) = n else { continue };
            n.tick();
            let out = n.drive().unwrap();
            for (to, bytes) in out.messages {
                self.net.push((*id, to, bytes));
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .find(|(id, n)| n.as_ref().is_some_and(|n| n.is_leader()) && !self.cut.contains(id))
            .map(|(id, _)| *id)
    }

    fn elect(&mut self) -> u64 {
        for _ in 0..500 {
            self.round();
            if let Some(l) = self.leader() {
                return l;
            }
        }
        panic!("no leader elected");
    }

    fn node(&mut self, id: u64) -> &mut RegistryNode {
        self.nodes.get_mut(&id).unwrap().as_mut().unwrap()
    }

    fn settle(&mut self) {
        for _ in 0..30 {
            self.round();
        }
    }
}

#[test]
fn three_masters_replicate_fail_over_and_catch_up_by_snapshot() {
    let mut g = Group::new(3);
    let l1 = g.elect();
    for i in 1..=10 {
        g.node(l1).propose(&admit(i)).unwrap();
    }
    g.settle();
    for id in 1..=3 {
        assert_eq!(g.node(id).state().agents.len(), 10, "node {id}");
    }
    // Leader crashes; the others elect a new one and keep the registry.
    g.nodes.insert(l1, None);
    let l2 = g.elect();
    assert_ne!(l1, l2);
    assert!(g.node(l2).propose(&admit(11)).is_ok());
    // Enough entries that the leader compacts its log past what the old leader has.
    for i in 12..=60 {
        g.node(l2).propose(&admit(i)).unwrap();
    }
    g.settle();
    assert!(g.node(l2).applied() >= 60);
    // The old leader restarts from its disk and is brought up to date (by snapshot).
    let old = RegistryNode::open(g.dir(l1), config(l1, 3)).unwrap();
    assert_eq!(old.state().agents.len(), 10);
    g.nodes.insert(l1, Some(old));
    g.settle();
    for id in 1..=3 {
        assert_eq!(g.node(id).state().agents.len(), 60, "node {id}");
    }
    let s1 = g.node(l1).state().clone();
    assert_eq!(&s1, g.node(l2).state());
}

#[test]
fn a_leader_cut_off_from_the_majority_steps_down() {
    let mut g = Group::new(3);
    let l1 = g.elect();
    g.cut = vec![l1];
    // check-quorum: within about an election timeout it must stop being leader.
    for _ in 0..40 {
        g.round();
    }
    assert!(!g.node(l1).is_leader(), "cut-off leader still leads");
    assert!(g.node(l1).propose(&admit(1)).is_err());
    let l2 = g.elect();
    assert_ne!(l1, l2);
    g.cut.clear();
    g.settle();
    assert_eq!(g.leader(), Some(l2), "the old leader rejoins as a follower");
}

const CRASH_DIR: &str = "AGORA_REGISTRY_CRASH_DIR";

/// The child of the crash test: admits agents one after another, forever.
#[test]
#[ignore = "run by kill9_in_a_loop_never_loses_or_corrupts_the_registry"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR) else {
        return;
    };
    let mut n = RegistryNode::open(Path::new(&dir), config(1, 1)).unwrap();
    lead_alone(&mut n);
    let mut next = n.state().agents.len() as u64 + 1;
    loop {
        n.propose(&admit(next)).unwrap();
        n.drive().unwrap();
        next += 1;
    }
}

#[test]
fn kill9_in_a_loop_never_loses_or_corrupts_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seen = 0usize;
    for round in 0..8u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "registry::tests::crash_child",
                "--nocapture",
            ])
            .env(CRASH_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300 + 37 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let n = reopen(|| RegistryNode::open(dir.path(), config(1, 1)))
            .unwrap_or_else(|e| panic!("round {round}: reopening after kill -9: {e}"));
        let agents = &n.state().agents;
        // Applied ops form a gap-free prefix a-1..a-k that never shrinks.
        for i in 1..=agents.len() as u64 {
            assert!(agents.contains_key(&AgentId::new(format!("a-{i}")).unwrap()));
        }
        assert!(agents.len() >= seen, "round {round}: lost applied ops");
        seen = agents.len();
    }
    assert!(seen > 0, "the child never got anything applied");
}

#[test]
fn weights_quotas_and_reservations_apply_and_survive_encoding() {
    let limits = RegistryLimits {
        max_agents: 1,
        max_frameworks: 1,
        max_roles: 1,
    };
    let mut s = RegistryState::default();
    let quota = agora_allocator::Quota::parse("prod", "cpus:2", Some("cpus:4")).unwrap();
    let set_quota = RegistryOp::SetQuota {
        role: "prod".into(),
        quota: Some(quota.clone()),
    };
    assert!(s.changes(&set_quota));
    s.apply(&set_quota, &limits).unwrap();
    assert!(!s.changes(&set_quota), "same quota again changes nothing");
    let other = RegistryOp::SetQuota {
        role: "web".into(),
        quota: Some(quota.clone()),
    };
    assert_eq!(
        s.apply(&other, &limits),
        Err(RegistryError::Full("quotas", 1))
    );
    let agent = agora_actors::AgentId::new("a1").unwrap();
    let reserve = RegistryOp::SetReservations {
        agent_id: agent.clone(),
        resources: "cpus(eng):1".into(),
    };
    s.apply(&reserve, &limits).unwrap();
    let weight = RegistryOp::SetWeight {
        role: "eng".into(),
        weight_milli: 2500,
    };
    s.apply(&weight, &limits).unwrap();
    let back = RegistryState::decode(&s.encode()).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.quotas["prod"], quota);
    assert_eq!(back.reservations[&agent], "cpus(eng):1");
    // Clearing: weight 1 and empty reservations remove the entries.
    let reset = RegistryOp::SetWeight {
        role: "eng".into(),
        weight_milli: 1000,
    };
    s.apply(&reset, &limits).unwrap();
    assert!(s.weights_milli.is_empty());
    let unreserve = RegistryOp::SetReservations {
        agent_id: agent,
        resources: String::new(),
    };
    s.apply(&unreserve, &limits).unwrap();
    assert!(s.reservations.is_empty());
    let clear = RegistryOp::SetQuota {
        role: "prod".into(),
        quota: None,
    };
    s.apply(&clear, &limits).unwrap();
    assert!(s.quotas.is_empty());
    // An old snapshot without the new maps still decodes.
    let old = br#"{"agents":{},"frameworks":{}}"#;
    assert_eq!(
        RegistryState::decode(old).unwrap(),
        RegistryState::default()
    );
}

fn aid(s: &str) -> AgentId {
    AgentId::new(s).unwrap()
}

fn maintenance(mode: agora_actors::MaintenanceMode, start_ms: u64) -> RegistryOp {
    RegistryOp::SetMaintenance {
        agent_id: aid("a-1"),
        maintenance: Some(agora_actors::Maintenance {
            mode,
            window: Some(agora_actors::MaintenanceWindow {
                start_ms,
                duration_ms: 3_600_000,
            }),
        }),
    }
}

#[test]
fn maintenance_transitions_are_validated_and_survive_encoding() {
    use agora_actors::MaintenanceMode::{Down, Draining};
    let limits = RegistryLimits::default();
    let mut s = RegistryState::default();
    let drain = maintenance(Draining, 1_000);
    // Unknown agent: refused, state untouched.
    assert_eq!(
        s.apply(&drain, &limits),
        Err(RegistryError::UnknownAgent("a-1".into()))
    );
    s.apply(&admit(1), &limits).unwrap();
    let up = RegistryOp::SetMaintenance {
        agent_id: aid("a-1"),
        maintenance: None,
    };
    assert!(matches!(
        s.apply(&up, &limits),
        Err(RegistryError::Maintenance(_))
    ));
    assert!(s.changes(&drain));
    s.apply(&drain, &limits).unwrap();
    assert!(!s.changes(&drain), "the same drain again changes nothing");
    // A new window for a draining agent is a change.
    let later = maintenance(Draining, 5_000);
    assert!(s.changes(&later));
    s.apply(&later, &limits).unwrap();
    let down = maintenance(Down, 5_000);
    s.apply(&down, &limits).unwrap();
    let err = s.apply(&later, &limits).unwrap_err();
    assert!(err.to_string().contains("is down"), "{err}");
    assert_eq!(s.maintenance[&aid("a-1")].mode, Down);
    // Snapshot round trip keeps the record and its window.
    let back = RegistryState::decode(&s.encode()).unwrap();
    assert_eq!(back, s);
    assert_eq!(
        back.maintenance[&aid("a-1")].window.map(|w| w.start_ms),
        Some(5_000)
    );
    s.apply(&up, &limits).unwrap();
    assert!(s.maintenance.is_empty());
    assert!(!s.changes(&up) || s.maintenance.is_empty());
}

#[test]
fn priorities_removed_agents_and_lost_tasks_are_recorded() {
    let limits = RegistryLimits {
        max_agents: 2,
        max_frameworks: 1,
        max_roles: 1,
    };
    let mut s = RegistryState::default();
    let prio = RegistryOp::SetPriority {
        role: "prod".into(),
        level: 3,
    };
    s.apply(&prio, &limits).unwrap();
    assert!(!s.changes(&prio));
    let other = RegistryOp::SetPriority {
        role: "dev".into(),
        level: 1,
    };
    assert_eq!(
        s.apply(&other, &limits),
        Err(RegistryError::Full("priorities", 1))
    );
    s.apply(&admit(1), &limits).unwrap();
    s.apply(
        &maintenance(agora_actors::MaintenanceMode::Draining, 1),
        &limits,
    )
    .unwrap();
    let lost = RegistryOp::TasksLost {
        agent_id: aid("a-1"),
        tasks: vec![(
            FrameworkId::new("fw-1").unwrap(),
            agora_actors::TaskId::new("t1").unwrap(),
        )],
    };
    s.apply(&lost, &limits).unwrap();
    let remove = RegistryOp::RemoveAgent {
        agent_id: aid("a-1"),
    };
    s.apply(&remove, &limits).unwrap();
    assert!(
        s.maintenance.is_empty(),
        "a removed agent's maintenance goes"
    );
    assert!(!s.changes(&remove), "removing twice changes nothing");
    // A removed agent may not be admitted again under its id.
    assert_eq!(
        s.apply(&admit(1), &limits),
        Err(RegistryError::AgentRemoved("a-1".into()))
    );
    let back = RegistryState::decode(&s.encode()).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.priorities["prod"], 3);
    assert_eq!(back.lost_tasks.len(), 1);
    assert!(back.removed_agents.contains_key(&aid("a-1")));
    // Level 0 removes the entry.
    let reset = RegistryOp::SetPriority {
        role: "prod".into(),
        level: 0,
    };
    s.apply(&reset, &limits).unwrap();
    assert!(s.priorities.is_empty());
}

#[test]
fn maintenance_is_replicated_through_the_log_and_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut n = reopen(|| RegistryNode::open(dir.path(), config(1, 1))).unwrap();
        lead_alone(&mut n);
        // Enough entries to pass `compact_after_entries`: the state comes back by snapshot.
        for i in 1..=30 {
            n.propose(&admit(i)).unwrap();
            n.drive().unwrap();
        }
        n.propose(&maintenance(agora_actors::MaintenanceMode::Draining, 7))
            .unwrap();
        n.drive().unwrap();
        n.propose(&RegistryOp::SetPriority {
            role: "prod".into(),
            level: 2,
        })
        .unwrap();
        n.drive().unwrap();
    }
    let n = reopen(|| RegistryNode::open(dir.path(), config(1, 1))).unwrap();
    let m = n.state().maintenance[&aid("a-1")];
    assert_eq!(m.mode, agora_actors::MaintenanceMode::Draining);
    assert_eq!(m.window.map(|w| w.start_ms), Some(7));
    assert_eq!(n.state().priorities["prod"], 2);
}

/// The simulator's in-memory storage: a node restarted on the same `MemDisk` after a crash finds
/// everything it flushed (all applied ops, across compactions), and a write that was not
/// flushed before the crash is gone.
#[test]
fn mem_storage_keeps_what_was_flushed_and_loses_the_rest() {
    let disk = MemDisk::shared();
    let open = |disk: &std::rc::Rc<std::cell::RefCell<MemDisk>>| {
        let storage = MemStorage::open(disk.clone(), &config(1, 1).identity).unwrap();
        RegistryNode::with_storage(storage, config(1, 1)).unwrap()
    };
    {
        let mut n = open(&disk);
        lead_alone(&mut n);
        for i in 1..=50 {
            n.propose(&admit(i)).unwrap();
            assert_eq!(n.drive().unwrap().applied, vec![admit(i)]);
        }
    }
    assert_eq!(
        disk.borrow_mut().crash(),
        0,
        "drive flushes before it returns"
    );
    assert!(
        disk.borrow().log_len() < 50,
        "compacted past compact_after_entries"
    );
    let mut n = open(&disk);
    assert_eq!(n.state().agents.len(), 50);
    lead_alone(&mut n);
    n.propose(&admit(51)).unwrap();
    assert_eq!(n.drive().unwrap().applied, vec![admit(51)]);
    // A write after the last flush (as if the process died between write and fsync).
    let mut e = raft::eraftpb::Entry::default();
    e.index = 1_000;
    RegistryStorage::append(n.raw_store_mut(), &[e]).unwrap();
    drop(n);
    assert_eq!(disk.borrow_mut().crash(), 1);
    let n = open(&disk);
    assert_eq!(n.state().agents.len(), 51);
    let other = MemStorage::open(disk.clone(), &config(2, 3).identity).err();
    assert!(matches!(other, Some(RegistryError::OtherNode { .. })));
}

/// Opens a database this process had open a moment ago: sled lets go of its file lock only when
/// its flusher thread drops the last reference, shortly after the database itself is dropped.
/// (A restarted master never waits: the old process is gone.) Other errors return at once.
fn reopen<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(e)
                if e.to_string().contains("acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            done => return done,
        }
    }
}
