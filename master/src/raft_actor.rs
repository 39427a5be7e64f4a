//! The registry's raft node in an actor of its own, on its own thread, so a busy master core
//! (a re-registration storm, a big `/state`) never delays heartbeats, votes or fsyncs: a leader
//! that is merely busy must not lose its lease.
//!
//! Raft traffic: each master dials every peer (a link) and also accepts the peers' links. A
//! message to peer P goes on P's inbound connection to us when there is one (so P receives it
//! on its own link, straight into its raft actor), else on our link to P.

use crate::ha::{HaView, PeerView};
use crate::registry::{Leadership, RegistryNode, RegistryOp, StateRole};
use actix::prelude::*;
use agora_actors::transport::{Backoff, ConnHandle, ConnId, Link, NetEvent, Transport};
use agora_actors::{Hello, Message, NodeKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the raft actor tells the master actor.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct RaftNews {
    /// Set when the leader or this node's role changed.
    pub leadership: Option<Leadership>,
    /// Text for `NotLeader` errors ("the leader is master 2 (http ...)").
    pub leader_text: String,
    pub view: HaView,
    /// The registry as applied, sent when this node starts serving as leader.
    pub registry: Option<Arc<crate::registry::RegistryState>>,
}

/// A peer master's connection to our listener (authenticated by the master actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct InboundPeer {
    pub peer: u64,
    pub http: String,
    pub conn: ConnId,
    pub handle: ConnHandle,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct InboundPeerGone {
    pub conn: ConnId,
}

/// A raft message that arrived on a peer's inbound connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InboundRaft {
    pub peer: u64,
    pub data: Vec<u8>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Propose(pub RegistryOp);

/// A proposal flushed at once rather than with the next tick (operator changes: in a group of
/// one it is committed and applied when this returns).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProposeNow(pub RegistryOp);

impl Handler<ProposeNow> for RaftActor {
    type Result = ();
    fn handle(&mut self, ProposeNow(op): ProposeNow, ctx: &mut Context<Self>) {
        match self.propose_if_changed(&op) {
            Ok(true) => self.drive(ctx),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, ?op, "registry proposal not made"),
        }
    }
}

#[derive(Message)]
#[rtype(result = "HaView")]
pub struct GetView;

/// The agents the registry holds as admitted.
#[derive(Message)]
#[rtype(result = "Vec<agora_actors::AgentId>")]
pub struct RegistryAgents;

impl Handler<RegistryAgents> for RaftActor {
    type Result = MessageResult<RegistryAgents>;
    fn handle(
        &mut self,
        _: RegistryAgents,
        _: &mut Context<Self>,
    ) -> MessageResult<RegistryAgents> {
        MessageResult(self.node.state().agents.keys().cloned().collect())
    }
}

/// Events of our outbound link to peer `peer`.
#[derive(Message)]
#[rtype(result = "()")]
struct PeerLinkEvent {
    peer: u64,
    ev: NetEvent,
}

/// Tags a link's events with the peer it dials.
struct PeerLinkSink {
    peer: u64,
    raft: Addr<RaftActor>,
}

impl Actor for PeerLinkSink {
    type Context = Context<Self>;
}

impl Handler<NetEvent> for PeerLinkSink {
    type Result = ();
    fn handle(&mut self, ev: NetEvent, _: &mut Context<Self>) {
        self.raft.do_send(PeerLinkEvent {
            peer: self.peer,
            ev,
        });
    }
}

pub struct RaftActor {
    node: RegistryNode,
    tick_ms: u64,
    transport: Arc<dyn Transport>,
    hello: Hello,
    my_http: String,
    master: Recipient<RaftNews>,
    links: BTreeMap<u64, Box<dyn Link>>,
    link_up: BTreeMap<u64, bool>,
    inbound: BTreeMap<u64, (ConnId, ConnHandle)>,
    peer_http: BTreeMap<u64, String>,
    leader_changes: u64,
    peer_errors: u64,
    last_peer_error: Option<String>,
    last_leader: u64,
    ticks: u64,
}

pub fn role_name(r: StateRole) -> &'static str {
    match r {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre_candidate",
    }
}

/// How a master introduces itself to its peers: `master-ID http=HOST:PORT`.
pub fn hello_node_id(id: u64, http: &str) -> String {
    format!("master-{id} http={http}")
}

pub fn parse_hello_node_id(s: &str) -> Option<(u64, String)> {
    let rest = s.strip_prefix("master-")?;
    let (id, http) = rest.split_once(" http=")?;
    Some((id.parse().ok()?, http.to_string()))
}

impl RaftActor {
    pub fn new(
        node: RegistryNode,
        tick_ms: u64,
        transport: Arc<dyn Transport>,
        hello: Hello,
        my_http: String,
        master: Recipient<RaftNews>,
    ) -> RaftActor {
        RaftActor {
            node,
            tick_ms: tick_ms.max(1),
            transport,
            hello,
            my_http,
            master,
            links: BTreeMap::new(),
            link_up: BTreeMap::new(),
            inbound: BTreeMap::new(),
            peer_http: BTreeMap::new(),
            leader_changes: 0,
            peer_errors: 0,
            last_peer_error: None,
            last_leader: 0,
            ticks: 0,
        }
    }

    fn http_of(&self, id: u64) -> Option<String> {
        if id == self.node.id() {
            return Some(self.my_http.clone());
        }
        self.peer_http.get(&id).cloned()
    }

    fn leader_text(&self) -> String {
        let id = self.node.leadership().leader_id;
        crate::ha_core::leader_text(id, self.http_of(id).as_deref())
    }

    pub fn view(&self) -> HaView {
        let l = self.node.leadership();
        let matched: BTreeMap<u64, u64> = self.node.progress().into_iter().collect();
        let me = self.node.id();
        let peers = self
            .node
            .peers()
            .iter()
            .map(|(id, addr)| PeerView {
                id: *id,
                addr: addr.clone(),
                http: self.http_of(*id),
                connected: *id == me || self.link_up.get(id).copied().unwrap_or(false),
                matched: matched.get(id).copied(),
            })
            .collect();
        HaView {
            node_id: me,
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
            duplicate_id_refusals: 0,
            last_peer_error: self.last_peer_error.clone(),
            registry_agents: self.node.state().agents.len(),
            registry_frameworks: self.node.state().frameworks.len(),
            peers,
        }
    }

    fn step(&mut self, from: u64, data: &[u8], ctx: &mut Context<Self>) {
        if let Err(e) = self.node.step(from, data) {
            self.peer_errors += 1;
            tracing::warn!(from, error = %e, "raft message refused");
        }
        self.drive(ctx);
    }

    /// Runs raft's Ready loop and acts on what it produced.
    fn drive(&mut self, _ctx: &mut Context<Self>) {
        let out = match self.node.drive() {
            Ok(out) => out,
            Err(e) => {
                // The registry's disk failed: a master that cannot persist must not lead or
                // vote. Stop, so the others take over (and an operator sees why).
                tracing::error!(error = %e, "registry storage failed; stopping the master");
                std::process::exit(1);
            }
        };
        for (to, data) in out.messages {
            let msg = Message::Raft { data };
            // Lost messages are fine: raft retransmits.
            if let Some((_, h)) = self.inbound.get(&to) {
                if h.send(msg.clone()).is_ok() {
                    continue;
                }
            }
            if let Some(link) = self.links.get(&to) {
                let _ = link.send(msg);
            }
        }
        for op in &out.applied {
            tracing::debug!(?op, "registry op applied");
        }
        if let Some(l) = out.leadership {
            if l.leader_id != self.last_leader {
                self.last_leader = l.leader_id;
                self.leader_changes += 1;
                tracing::info!(
                    leader = l.leader_id,
                    term = l.term,
                    role = role_name(l.role),
                    "leader changed"
                );
            }
            self.tell_master(Some(l));
        }
    }

    fn tell_master(&self, leadership: Option<Leadership>) {
        let registry = leadership
            .filter(|l| l.serving)
            .map(|_| Arc::new(self.node.state().clone()));
        self.master.do_send(RaftNews {
            registry,
            leadership,
            leader_text: self.leader_text(),
            view: self.view(),
        });
    }
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    /// Dials the other masters and starts the raft clock.
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1 << 16);
        let me = self.node.id();
        for (id, addr) in self.node.peers().clone() {
            if id == me {
                continue;
            }
            let sink = PeerLinkSink {
                peer: id,
                raft: ctx.address(),
            }
            .start();
            let backoff = Backoff {
                base_ms: 50,
                cap_ms: 1_000,
            };
            let link =
                self.transport
                    .connect(vec![addr], self.hello.clone(), backoff, sink.recipient());
            self.links.insert(id, link);
        }
        let tick = std::time::Duration::from_millis(self.tick_ms);
        ctx.run_interval(tick, |act, ctx| {
            act.node.tick();
            act.drive(ctx);
            act.ticks += 1;
            if act.ticks % 10 == 0 {
                act.tell_master(None); // fresh figures for /state and /metrics
            }
        });
        self.drive(ctx);
        self.tell_master(Some(self.node.leadership()));
    }
}

impl Handler<PeerLinkEvent> for RaftActor {
    type Result = ();
    fn handle(&mut self, msg: PeerLinkEvent, ctx: &mut Context<Self>) {
        let peer = msg.peer;
        match msg.ev {
            NetEvent::Connected { peer: hello, .. } => match parse_hello_node_id(&hello.node_id) {
                Some((id, http)) if id == peer && hello.node_kind == NodeKind::Master => {
                    tracing::info!(peer, %http, "link to peer master up");
                    self.peer_http.insert(peer, http);
                    self.link_up.insert(peer, true);
                }
                other => {
                    self.peer_errors += 1;
                    tracing::error!(
                        peer,
                        hello = %hello.node_id,
                        ?other,
                        "the address of peer {peer} answers as another node (two masters with the same id, or a wrong --peers?); not using it"
                    );
                    self.last_peer_error = Some(format!(
                        "the address of peer {peer} answers as {:?}",
                        hello.node_id
                    ));
                    self.link_up.insert(peer, false);
                }
            },
            NetEvent::Frame { msg, .. } => match msg {
                Message::Raft { data } if self.link_up.get(&peer).copied().unwrap_or(false) => {
                    self.step(peer, &data, ctx);
                }
                Message::Error { message, .. } => {
                    // The peer refused us (e.g. another master already uses our id): the
                    // operator must see it here too, not only in the peer's log.
                    self.peer_errors += 1;
                    let why = format!("peer master {peer} refused this master: {message}");
                    tracing::error!("{why}");
                    self.last_peer_error = Some(why);
                }
                _ => {}
            },
            NetEvent::Closed { reason, .. } => {
                if self.link_up.insert(peer, false) == Some(true) {
                    tracing::warn!(peer, %reason, "link to peer master down");
                }
            }
        }
    }
}

impl Handler<InboundPeer> for RaftActor {
    type Result = ();
    fn handle(&mut self, m: InboundPeer, _: &mut Context<Self>) {
        self.peer_http.insert(m.peer, m.http);
        self.inbound.insert(m.peer, (m.conn, m.handle));
    }
}

impl Handler<InboundPeerGone> for RaftActor {
    type Result = ();
    fn handle(&mut self, m: InboundPeerGone, _: &mut Context<Self>) {
        self.inbound.retain(|_, (c, _)| *c != m.conn);
    }
}

impl Handler<InboundRaft> for RaftActor {
    type Result = ();
    fn handle(&mut self, m: InboundRaft, ctx: &mut Context<Self>) {
        self.step(m.peer, &m.data, ctx);
    }
}

impl Handler<Propose> for RaftActor {
    type Result = ();
    fn handle(&mut self, Propose(op): Propose, _: &mut Context<Self>) {
        if let Err(e) = self.propose_if_changed(&op) {
            tracing::debug!(error = %e, ?op, "registry proposal not made");
        }
        // Proposals are flushed with the next tick's drive: one fsync for many of them.
    }
}

impl RaftActor {
    fn propose_if_changed(
        &mut self,
        op: &RegistryOp,
    ) -> Result<bool, crate::registry::RegistryError> {
        self.node.propose_if_changed(op)
    }
}

impl Handler<GetView> for RaftActor {
    type Result = MessageResult<GetView>;
    fn handle(&mut self, _: GetView, _: &mut Context<Self>) -> MessageResult<GetView> {
        MessageResult(self.view())
    }
}
