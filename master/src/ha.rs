//! High availability: the master's shell around the replicated registry. It ticks and drives
//! the raft node, carries raft messages to and from the other masters over the ordinary
//! transport (accepted only from configured peers), starts a fresh core and allocator when this
//! master becomes the leader, and drops them — closing every agent and scheduler connection
//! with a `NotLeader` error — when it stops leading. Standbys turn agents and schedulers away,
//! so only the leader ever makes offers.

use crate::actor::MasterActor;
use crate::core::{Input, MasterConfig, MasterCore};
use crate::registry::{
    AgentRecord, FrameworkRecord, Leadership, RegistryConfig, RegistryError, RegistryNode,
    RegistryOp, StateRole,
};
use actix::prelude::*;
use agora_actors::transport::{Backoff, ConnHandle, ConnId, Link, NetEvent, Transport};
use agora_actors::{ErrorCode, FrameworkInfo, Hello, Message, NodeKind};
use agora_allocator::{Allocator, AllocatorActor, AllocatorConfig};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// Builds a fresh allocator for each leadership (a new leader starts from empty soft state).
pub type MakeAllocator = Arc<dyn Fn() -> Result<Box<dyn Allocator>, String> + Send + Sync>;

pub struct RegistryOptions {
    /// sled directory of the registry (under the master's work dir).
    pub dir: PathBuf,
    pub config: RegistryConfig,
    /// Raft tick; election timeout = `config.election_ticks` ticks.
    pub tick_ms: u64,
    /// This master's HTTP address, told to the other masters so a standby can name the leader.
    pub http: String,
    pub make_allocator: MakeAllocator,
}

/// How a master introduces itself to its peers: `master-ID http=HOST:PORT`.
pub fn hello_node_id(r: &RegistryOptions) -> String {
    format!("master-{} http={}", r.config.identity.node_id, r.http)
}

fn parse_hello_node_id(s: &str) -> Option<(u64, String)> {
    let rest = s.strip_prefix("master-")?;
    let (id, http) = rest.split_once(" http=")?;
    Some((id.parse().ok()?, http.to_string()))
}

/// The operator's view of the group (`/state`, `/metrics`, `agora masters`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct HaView {
    pub node_id: u64,
    pub raft_role: &'static str,
    pub leader_id: Option<u64>,
    /// The leader's HTTP address, if known.
    pub leader: Option<String>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub leader_changes: u64,
    pub peer_errors: u64,
    pub registry_agents: usize,
    pub registry_frameworks: usize,
    pub peers: Vec<PeerView>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerView {
    pub id: u64,
    pub addr: String,
    pub http: Option<String>,
    /// Our outbound link to it is up.
    pub connected: bool,
    /// Highest log index known replicated on it (leader only).
    pub matched: Option<u64>,
}

fn role_name(r: StateRole) -> &'static str {
    match r {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre_candidate",
    }
}

pub struct RaftShell {
    node: RegistryNode,
    tick_ms: u64,
    transport: Arc<dyn Transport>,
    hello: Hello,
    my_http: String,
    links: BTreeMap<u64, Box<dyn Link>>,
    link_up: BTreeMap<u64, bool>,
    /// Inbound connections from authenticated peer masters.
    peer_conns: BTreeMap<ConnId, (u64, ConnHandle)>,
    peer_http: BTreeMap<u64, String>,
    config: MasterConfig,
    epoch: u64,
    first_allocator: Option<Box<dyn Allocator>>,
    make_allocator: MakeAllocator,
    allocator_config: AllocatorConfig,
    arbiter: Option<Arbiter>,
    pending_agents: HashMap<ConnId, AgentRecord>,
    pending_frameworks: HashMap<ConnId, FrameworkInfo>,
    leader_changes: u64,
    peer_errors: u64,
    last_leader: u64,
}

impl RaftShell {
    pub fn open(
        r: RegistryOptions,
        config: MasterConfig,
        epoch: u64,
        first_allocator: Box<dyn Allocator>,
        allocator_config: AllocatorConfig,
        transport: Arc<dyn Transport>,
        hello: Hello,
    ) -> Result<RaftShell, RegistryError> {
        std::fs::create_dir_all(&r.dir)
            .map_err(|e| RegistryError::Io(format!("creating {}: {e}", r.dir.display())))?;
        let node = RegistryNode::open(&r.dir, r.config)?;
        tracing::info!(
            id = node.id(),
            applied = node.applied(),
            agents = node.state().agents.len(),
            frameworks = node.state().frameworks.len(),
            "registry opened"
        );
        Ok(RaftShell {
            node,
            tick_ms: r.tick_ms.max(1),
            transport,
            hello,
            my_http: r.http,
            links: BTreeMap::new(),
            link_up: BTreeMap::new(),
            peer_conns: BTreeMap::new(),
            peer_http: BTreeMap::new(),
            config,
            epoch,
            first_allocator: Some(first_allocator),
            make_allocator: r.make_allocator,
            allocator_config,
            arbiter: None,
            pending_agents: HashMap::new(),
            pending_frameworks: HashMap::new(),
            leader_changes: 0,
            peer_errors: 0,
            last_leader: 0,
        })
    }

    pub fn view(&self) -> HaView {
        let l = self.node.leadership();
        let matched: BTreeMap<u64, u64> = self.node.progress().into_iter().collect();
        let peers = self
            .node_peers()
            .into_iter()
            .map(|(id, addr)| PeerView {
                id,
                http: self.http_of(id),
                connected: id == self.node.id() || self.link_up.get(&id).copied().unwrap_or(false),
                matched: matched.get(&id).copied(),
                addr,
            })
            .collect();
        HaView {
            node_id: self.node.id(),
            raft_role: role_name(l.role),
            leader_id: (l.leader_id != 0).then_some(l.leader_id),
            leader: (l.leader_id != 0)
                .then(|| self.http_of(l.leader_id))
                .flatten(),
            term: l.term,
            commit_index: self.node.commit_index(),
            applied_index: self.node.applied(),
            leader_changes: self.leader_changes,
            peer_errors: self.peer_errors,
            registry_agents: self.node.state().agents.len(),
            registry_frameworks: self.node.state().frameworks.len(),
            peers,
        }
    }

    fn node_peers(&self) -> Vec<(u64, String)> {
        self.node.peers().clone().into_iter().collect()
    }

    fn http_of(&self, id: u64) -> Option<String> {
        if id == self.node.id() {
            return Some(self.my_http.clone());
        }
        self.peer_http.get(&id).cloned()
    }

    fn leader_text(&self) -> String {
        let l = self.node.leadership();
        match (l.leader_id, self.http_of(l.leader_id)) {
            (0, _) => "not the leader; no leader is known yet".to_string(),
            (id, Some(http)) => format!("not the leader; the leader is master {id} (http {http})"),
            (id, None) => format!("not the leader; the leader is master {id}"),
        }
    }

    /// Inbound connection from a peer master closed.
    pub fn peer_closed(&mut self, conn: ConnId) {
        self.peer_conns.remove(&conn);
        self.pending_agents.remove(&conn);
        self.pending_frameworks.remove(&conn);
    }
}

/// Events of our outbound link to peer `peer`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerLinkEvent {
    peer: u64,
    ev: NetEvent,
}

/// Tags a link's events with the peer it dials.
struct PeerLinkSink {
    peer: u64,
    master: Addr<MasterActor>,
}

impl Actor for PeerLinkSink {
    type Context = Context<Self>;
}

impl Handler<NetEvent> for PeerLinkSink {
    type Result = ();
    fn handle(&mut self, ev: NetEvent, _: &mut Context<Self>) {
        self.master.do_send(PeerLinkEvent {
            peer: self.peer,
            ev,
        });
    }
}

impl Handler<PeerLinkEvent> for MasterActor {
    type Result = ();
    fn handle(&mut self, msg: PeerLinkEvent, ctx: &mut Context<Self>) {
        let Some(r) = &mut self.raft else { return };
        let peer = msg.peer;
        match msg.ev {
            NetEvent::Connected { peer: hello, .. } => match parse_hello_node_id(&hello.node_id) {
                Some((id, http)) if id == peer && hello.node_kind == NodeKind::Master => {
                    tracing::info!(peer, %http, "link to peer master up");
                    r.peer_http.insert(peer, http);
                    r.link_up.insert(peer, true);
                }
                other => {
                    r.peer_errors += 1;
                    tracing::error!(
                        peer,
                        hello = %hello.node_id,
                        ?other,
                        "the address of peer {peer} answers as another node (two masters with the same id, or a wrong --peers?); not using it"
                    );
                    r.link_up.insert(peer, false);
                }
            },
            NetEvent::Frame { msg, .. } => {
                if r.link_up.get(&peer).copied().unwrap_or(false) {
                    if let Message::Raft { data } = msg {
                        step(r, peer, &data);
                        self.drive_raft(ctx);
                    }
                }
            }
            NetEvent::Closed { reason, .. } => {
                if r.link_up.insert(peer, false) == Some(true) {
                    tracing::warn!(peer, %reason, "link to peer master down");
                }
            }
        }
    }
}

fn step(r: &mut RaftShell, from: u64, data: &[u8]) {
    if let Err(e) = r.node.step(from, data) {
        r.peer_errors += 1;
        tracing::warn!(from, error = %e, "raft message refused");
    }
}

impl MasterActor {
    /// Dials the other masters and starts the raft clock.
    pub(crate) fn start_raft(&mut self, ctx: &mut Context<Self>) {
        let Some(r) = &mut self.raft else { return };
        let me = r.node.id();
        for (id, addr) in r.node_peers() {
            if id == me {
                continue;
            }
            let sink = PeerLinkSink {
                peer: id,
                master: ctx.address(),
            }
            .start();
            let backoff = Backoff {
                base_ms: 50,
                cap_ms: 1_000,
            };
            let link = r
                .transport
                .connect(vec![addr], r.hello.clone(), backoff, sink.recipient());
            r.links.insert(id, link);
        }
        let tick = std::time::Duration::from_millis(r.tick_ms);
        ctx.run_interval(tick, |act, ctx| {
            if let Some(r) = &mut act.raft {
                r.node.tick();
            }
            act.drive_raft(ctx);
        });
        self.drive_raft(ctx);
    }

    /// Runs raft's Ready loop and acts on what it produced.
    pub(crate) fn drive_raft(&mut self, ctx: &mut Context<Self>) {
        let Some(r) = &mut self.raft else { return };
        let out = match r.node.drive() {
            Ok(out) => out,
            Err(e) => {
                // The registry's disk failed: a master that cannot persist must not lead or
                // vote. Stop, so the others take over (and an operator sees why).
                tracing::error!(error = %e, "registry storage failed; stopping the master");
                System::current().stop_with_code(1);
                return;
            }
        };
        for (to, data) in out.messages {
            if let Some(link) = r.links.get(&to) {
                // Lost messages are fine: raft retransmits.
                let _ = link.send(Message::Raft { data });
            }
        }
        for op in &out.applied {
            tracing::debug!(?op, "registry op applied");
        }
        if let Some(l) = out.leadership {
            self.on_leadership(l, ctx);
        }
    }

    fn on_leadership(&mut self, l: Leadership, ctx: &mut Context<Self>) {
        let Some(r) = &mut self.raft else { return };
        if l.leader_id != r.last_leader {
            r.last_leader = l.leader_id;
            r.leader_changes += 1;
            tracing::info!(
                leader = l.leader_id,
                term = l.term,
                role = role_name(l.role),
                "leader changed"
            );
        }
        let lead = l.role == StateRole::Leader;
        if lead && !self.leading {
            self.become_leader(l.term, ctx);
        } else if !lead && self.leading {
            self.step_down();
        }
    }

    /// A new leader starts from empty soft state: agents re-register and schedulers
    /// re-subscribe, which rebuilds agents, executors, tasks and allocations.
    fn become_leader(&mut self, term: u64, ctx: &mut Context<Self>) {
        let Some(r) = &mut self.raft else { return };
        let allocator = match r.first_allocator.take() {
            Some(a) => Ok(a),
            None => (r.make_allocator)(),
        };
        let allocator = allocator.and_then(|a| {
            AllocatorActor::new(a, r.allocator_config.clone(), ctx.address().recipient())
                .map_err(|e| e.to_string())
        });
        let allocator = match allocator {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the allocator; not leading");
                return;
            }
        };
        let arbiter = Arbiter::new();
        let addr = AllocatorActor::start_in_arbiter(&arbiter.handle(), move |_| allocator);
        r.arbiter = Some(arbiter);
        // Ids minted by this leadership never repeat those of an earlier one.
        let epoch = r.epoch.saturating_mul(1_000).saturating_add(term % 1_000);
        tracing::info!(
            term,
            registry_agents = r.node.state().agents.len(),
            registry_frameworks = r.node.state().frameworks.len(),
            "this master is now the leader"
        );
        self.generation += 1;
        self.core = MasterCore::new(r.config.clone(), epoch);
        self.allocator = Some(addr);
        self.leading = true;
        let actions = self.core.start(self.clock.now());
        self.perform(actions, ctx);
    }

    /// Stops making offers at once and turns every agent and scheduler away.
    fn step_down(&mut self) {
        let Some(r) = &mut self.raft else { return };
        tracing::warn!("this master is no longer the leader; dropping soft state");
        let text = r.leader_text();
        for (_, h) in self.conns.drain() {
            h.close(Some(not_leader(&text)));
        }
        if let Some(a) = r.arbiter.take() {
            a.stop();
        }
        r.pending_agents.clear();
        r.pending_frameworks.clear();
        self.generation += 1;
        self.leading = false;
        self.allocator = None;
        self.core = MasterCore::new(r.config.clone(), r.epoch);
    }

    /// Decides what a new connection is. Returns true if it goes to the core.
    pub(crate) fn admit_connection(
        &mut self,
        conn: ConnId,
        peer: &Hello,
        handle: &ConnHandle,
        _ctx: &mut Context<Self>,
    ) -> bool {
        let Some(r) = &mut self.raft else { return true };
        if peer.node_kind == NodeKind::Master {
            match parse_hello_node_id(&peer.node_id) {
                Some((id, http)) if id != r.node.id() && r.node.peers().contains_key(&id) => {
                    r.peer_http.insert(id, http);
                    r.peer_conns.insert(conn, (id, handle.clone()));
                }
                _ => {
                    r.peer_errors += 1;
                    let why = format!(
                        "master {:?} is not one of the configured peers {} (or has this master's id)",
                        peer.node_id,
                        crate::registry::format_peers(r.node.peers())
                    );
                    tracing::error!(peer = %handle.peer_addr, "{why}");
                    handle.close(Some(Message::fatal(ErrorCode::Forbidden, why)));
                }
            }
            return false;
        }
        if self.leading {
            return true;
        }
        handle.close(Some(not_leader(&r.leader_text())));
        false
    }

    /// Handles a frame if it is raft traffic. Returns true if it was consumed.
    pub(crate) fn peer_frame(
        &mut self,
        conn: ConnId,
        msg: &Message,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(r) = &mut self.raft else {
            return false;
        };
        if let Some((id, _)) = r.peer_conns.get(&conn) {
            let id = *id;
            if let Message::Raft { data } = msg {
                step(r, id, data);
                self.drive_raft(ctx);
            }
            return true;
        }
        if let Message::Raft { .. } = msg {
            r.peer_errors += 1;
            if let Some(h) = self.conns.get(&conn) {
                tracing::warn!(peer = %h.peer_addr, "raft traffic from a non-master connection refused");
                h.close(Some(Message::fatal(
                    ErrorCode::Forbidden,
                    "raft traffic only from peer masters",
                )));
            }
            return true;
        }
        false
    }

    /// Remembers what registrations say, for the registry entry made when the core admits.
    pub(crate) fn registry_observe_input(&mut self, input: &Input) {
        let Some(r) = &mut self.raft else { return };
        let Input::Message { conn, msg } = input else {
            return;
        };
        match msg {
            Message::RegisterAgent {
                hostname, endpoint, ..
            }
            | Message::ReregisterAgent {
                hostname, endpoint, ..
            } => {
                let rec = AgentRecord {
                    hostname: hostname.clone(),
                    endpoint: endpoint.clone(),
                };
                r.pending_agents.insert(*conn, rec);
            }
            Message::Subscribe { framework } => {
                r.pending_frameworks.insert(*conn, framework.clone());
            }
            _ => {}
        }
    }

    /// The registry-apply hook: admissions and removals the core decided become registry ops.
    /// They are proposed after the core answered (write-behind); raft batches them per tick.
    pub(crate) fn registry_observe_output(
        &mut self,
        conn: ConnId,
        msg: &Message,
        _ctx: &mut Context<Self>,
    ) {
        let Some(r) = &mut self.raft else { return };
        let op = match msg {
            Message::AgentRegistered { agent_id, .. } => {
                let Some(record) = r.pending_agents.remove(&conn) else {
                    return;
                };
                if r.node.state().agents.get(agent_id) == Some(&record) {
                    return;
                }
                RegistryOp::AdmitAgent {
                    agent_id: agent_id.clone(),
                    record,
                }
            }
            Message::Subscribed { framework_id, .. } => {
                let Some(info) = r.pending_frameworks.remove(&conn) else {
                    return;
                };
                let record = FrameworkRecord {
                    name: info.name,
                    roles: info.roles,
                    failover_timeout_ms: info.failover_timeout_ms,
                };
                if r.node.state().frameworks.get(framework_id) == Some(&record) {
                    return;
                }
                RegistryOp::AddFramework {
                    framework_id: framework_id.clone(),
                    record,
                }
            }
            Message::ShutdownFramework { framework_id } => {
                if !r.node.state().frameworks.contains_key(framework_id) {
                    return;
                }
                RegistryOp::RemoveFramework {
                    framework_id: framework_id.clone(),
                }
            }
            _ => return,
        };
        if let Err(e) = r.node.propose(&op) {
            tracing::warn!(error = %e, ?op, "registry proposal failed");
        }
    }
}

fn not_leader(text: &str) -> Message {
    // Not fatal: the client keeps going and tries the next master.
    Message::Error {
        code: ErrorCode::NotLeader,
        message: text.to_string(),
        fatal: false,
    }
}
