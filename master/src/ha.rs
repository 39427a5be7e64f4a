//! High availability, the master actor's side: it starts a fresh core and allocator when raft
//! makes this master the leader and drops them — closing every agent and scheduler connection
//! with a `NotLeader` error — when it stops leading, so only the leader ever makes offers.
//! Standbys turn agents and schedulers away. The raft node itself runs in
//! [`crate::raft_actor::RaftActor`] on its own thread; this side authenticates peer masters on
//! the listener, forwards their raft frames, and turns the core's admissions into registry ops.

use crate::actor::MasterActor;
use crate::core::{Input, MasterConfig, MasterCore};
use crate::ha_core::{not_leader, HaChange, HaCore};
use crate::raft_actor::{
    parse_hello_node_id, InboundPeer, InboundPeerGone, InboundRaft, Propose, RaftActor, RaftNews,
};
use crate::registry::{RegistryConfig, RegistryError, RegistryNode, RegistryOp, RegistryState};
use actix::prelude::*;
use agora_actors::transport::{ConnHandle, ConnId, Transport};
use agora_actors::{ErrorCode, Hello, Message, NodeKind};
use agora_allocator::{Allocator, AllocatorActor, AllocatorConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use crate::raft_actor::hello_node_id;

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
    /// After becoming leader, agents of the registry that have not re-registered within this
    /// long are marked unreachable: removed from the registry and reported lost to frameworks.
    pub agent_reregister_timeout_ms: u64,
}

/// The operator's view of the group (`/state`, `/raft`, `/metrics`, `agora masters`).
#[derive(Debug, Clone, Default, serde::Serialize)]
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
    /// Connections refused because another master already connected with the same id.
    pub duplicate_id_refusals: u64,
    /// The last problem with a peer master, for the operator (`/raft`, `agora masters`).
    pub last_peer_error: Option<String>,
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

/// The master actor's HA state.
pub struct RaftShell {
    raft: Addr<RaftActor>,
    _raft_arbiter: Arbiter,
    node_id: u64,
    peers: BTreeMap<u64, String>,
    /// Inbound connections from authenticated peer masters.
    /// Inbound connections from authenticated peer masters: (id, its HTTP address).
    peer_conns: BTreeMap<ConnId, (u64, String)>,
    view: HaView,
    /// The leadership decisions (shared with the simulator).
    ha: HaCore,
    config: MasterConfig,
    epoch: u64,
    first_allocator: Option<Box<dyn Allocator>>,
    make_allocator: MakeAllocator,
    allocator_config: AllocatorConfig,
    arbiter: Option<Arbiter>,
    peer_errors: u64,
    duplicate_id_refusals: u64,
    last_peer_error: Option<String>,
    agent_reregister_timeout_ms: u64,
}

impl RaftShell {
    /// Opens the registry and starts its raft actor on a thread of its own.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        r: RegistryOptions,
        config: MasterConfig,
        epoch: u64,
        first_allocator: Box<dyn Allocator>,
        allocator_config: AllocatorConfig,
        transport: Arc<dyn Transport>,
        hello: Hello,
        master: Recipient<RaftNews>,
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
        let (node_id, peers) = (node.id(), node.peers().clone());
        let arbiter = Arbiter::new();
        let (tick_ms, http) = (r.tick_ms, r.http.clone());
        let raft = RaftActor::start_in_arbiter(&arbiter.handle(), move |_| {
            RaftActor::new(node, tick_ms, transport, hello, http, master)
        });
        Ok(RaftShell {
            raft,
            _raft_arbiter: arbiter,
            node_id,
            peers,
            peer_conns: BTreeMap::new(),
            view: HaView {
                node_id,
                raft_role: "follower",
                ..HaView::default()
            },
            ha: HaCore::new(epoch),
            config,
            epoch,
            first_allocator: Some(first_allocator),
            make_allocator: r.make_allocator,
            allocator_config,
            arbiter: None,
            peer_errors: 0,
            duplicate_id_refusals: 0,
            last_peer_error: None,
            agent_reregister_timeout_ms: r.agent_reregister_timeout_ms,
        })
    }

    /// The leader's HTTP address, if known.
    pub(crate) fn leader_http(&self) -> Option<String> {
        self.view.leader.clone()
    }

    pub fn view(&self) -> HaView {
        let mut v = self.view.clone();
        v.peer_errors += self.peer_errors;
        v.duplicate_id_refusals = self.duplicate_id_refusals;
        if self.last_peer_error.is_some() {
            v.last_peer_error = self.last_peer_error.clone();
        }
        v
    }

    /// Two masters with the same id would split raft's votes and log between them. A peer
    /// that connects while another master of the same id and a different HTTP address is
    /// connected is refused (the same address is the same master reconnecting: it replaces
    /// its stale connection). Returns the reason to refuse, already logged and counted.
    fn duplicate_id(
        &mut self,
        conn: ConnId,
        id: u64,
        http: &str,
        handle: &ConnHandle,
    ) -> Option<String> {
        let other = self
            .peer_conns
            .iter()
            .find(|(c, (i, _))| **c != conn && *i == id)
            .map(|(c, (_, h))| (*c, h.clone()));
        let (old_conn, old_http) = other?;
        if old_http == http {
            self.peer_conns.remove(&old_conn);
            self.raft.do_send(InboundPeerGone { conn: old_conn });
            return None;
        }
        let why = format!(
            "two masters claim id {id}: one (http {old_http}) is already connected, this one \
             (http {http}, from {}) is refused; give every master its own --id",
            handle.peer_addr
        );
        tracing::error!("{why}");
        self.peer_errors += 1;
        self.duplicate_id_refusals += 1;
        self.last_peer_error = Some(why.clone());
        Some(why)
    }

    pub fn raft(&self) -> &Addr<RaftActor> {
        &self.raft
    }

    /// Inbound connection closed.
    pub fn peer_closed(&mut self, conn: ConnId) {
        if self.peer_conns.remove(&conn).is_some() {
            self.raft.do_send(InboundPeerGone { conn });
        }
        self.ha.conn_closed(conn);
    }
}

impl Handler<RaftNews> for MasterActor {
    type Result = ();
    fn handle(&mut self, news: RaftNews, ctx: &mut Context<Self>) {
        let Some(r) = &mut self.raft else { return };
        r.view = news.view;
        r.ha.set_leader_text(news.leader_text);
        let Some(l) = news.leadership else { return };
        match r.ha.on_leadership(&l) {
            Some(HaChange::Lead { term, epoch }) => match news.registry {
                Some(registry) => self.become_leader(term, epoch, &registry, ctx),
                None => r.ha.lead_failed(),
            },
            Some(HaChange::StepDown { closing }) => self.step_down(closing),
            None => {}
        }
    }
}

impl MasterActor {
    /// A new leader starts from empty soft state: agents re-register and schedulers
    /// re-subscribe, which rebuilds agents, executors, tasks and allocations.
    fn become_leader(
        &mut self,
        term: u64,
        epoch: u64,
        registry: &RegistryState,
        ctx: &mut Context<Self>,
    ) {
        let Some(r) = &mut self.raft else { return };
        let allocator = match r.first_allocator.take() {
            Some(a) => Ok(a),
            None => (r.make_allocator)(),
        };
        let allocator = allocator.map(|mut a| {
            crate::persist::restore_allocator(a.as_mut(), registry);
            a
        });
        let allocator = allocator.and_then(|a| {
            AllocatorActor::new(a, r.allocator_config.clone(), ctx.address().recipient())
                .map_err(|e| e.to_string())
        });
        let allocator = match allocator {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the allocator; not leading");
                r.ha.lead_failed();
                return;
            }
        };
        let arbiter = Arbiter::new();
        let addr = AllocatorActor::start_in_arbiter(&arbiter.handle(), move |_| allocator);
        r.arbiter = Some(arbiter);
        tracing::info!(
            term,
            registry_agents = r.view.registry_agents,
            registry_frameworks = r.view.registry_frameworks,
            "this master is now the leader"
        );
        self.generation += 1;
        let now = self.clock.now();
        let (core, actions) = crate::ha_core::leader_core(r.config.clone(), epoch, registry, now);
        self.core = core;
        self.allocator = Some(addr);
        self.leading = true;
        self.perform(actions, ctx);
        self.arm_reregister_timeout(ctx);
    }

    /// Tells the new core which agents the registry admitted; it gives them
    /// `agent_reregister_timeout_ms` to come back and declares the others unreachable.
    fn arm_reregister_timeout(&mut self, ctx: &mut Context<Self>) {
        let Some(r) = &self.raft else { return };
        let generation = self.generation;
        let timeout_ms = r.agent_reregister_timeout_ms;
        let ask = r.raft().send(crate::raft_actor::RegistryAgents);
        ctx.spawn(ask.into_actor(self).map(move |res, act, ctx| {
            match res {
                Ok(agent_ids) if act.generation == generation => {
                    let input = Input::RegistryAgents {
                        agent_ids,
                        reregister_timeout_ms: timeout_ms,
                    };
                    act.deliver(input, ctx);
                }
                Ok(_) => {} // leadership changed since
                Err(e) => tracing::error!(error = %e, "cannot read the registry's agents"),
            }
        }));
    }

    /// The core declared a registry agent unreachable: it leaves the registry.
    pub(crate) fn registry_agent_unreachable(&mut self, agent_id: agora_actors::AgentId) {
        let Some(r) = &self.raft else { return };
        r.raft
            .do_send(Propose(RegistryOp::RemoveAgent { agent_id }));
    }

    /// Stops making offers at once and turns every agent and scheduler away.
    fn step_down(&mut self, closing: Message) {
        let Some(r) = &mut self.raft else { return };
        tracing::warn!("this master is no longer the leader; dropping soft state");
        for (_, h) in self.conns.drain() {
            h.close(Some(closing.clone()));
        }
        if let Some(a) = r.arbiter.take() {
            a.stop();
        }
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
                Some((id, http)) if id != r.node_id && r.peers.contains_key(&id) => {
                    if let Some(why) = r.duplicate_id(conn, id, &http, handle) {
                        handle.close(Some(Message::fatal(ErrorCode::Forbidden, why)));
                        return false;
                    }
                    r.peer_conns.insert(conn, (id, http.clone()));
                    r.raft.do_send(InboundPeer {
                        peer: id,
                        http,
                        conn,
                        handle: handle.clone(),
                    });
                }
                _ => {
                    r.peer_errors += 1;
                    let why = format!(
                        "master {:?} is not one of the configured peers {} (or has this master's id)",
                        peer.node_id,
                        crate::registry::format_peers(&r.peers)
                    );
                    tracing::error!(peer = %handle.peer_addr, "{why}");
                    handle.close(Some(Message::fatal(ErrorCode::Forbidden, why)));
                }
            }
            return false;
        }
        match r.ha.admit_client() {
            Ok(()) if self.leading => true,
            Ok(()) => {
                handle.close(Some(not_leader(r.ha.leader_text())));
                false
            }
            Err(closing) => {
                handle.close(Some(closing));
                false
            }
        }
    }

    /// Handles a frame if it is raft traffic. Returns true if it was consumed.
    pub(crate) fn peer_frame(
        &mut self,
        conn: ConnId,
        msg: &Message,
        _ctx: &mut Context<Self>,
    ) -> bool {
        let Some(r) = &mut self.raft else {
            return false;
        };
        if let Some((id, _)) = r.peer_conns.get(&conn) {
            if let Message::Raft { data } = msg {
                r.raft.do_send(InboundRaft {
                    peer: *id,
                    data: data.clone(),
                });
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
        if let Some(r) = &mut self.raft {
            r.ha.observe_input(input);
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
        let Some(op) = r.ha.observe_output(conn, msg) else {
            return;
        };
        r.raft.do_send(Propose(op));
    }

    /// A framework the core removed for good (teardown, failover timeout) leaves the registry
    /// and may never come back, whichever master leads next. The allocator hears of every
    /// removal, also when no agent is connected to be told.
    pub(crate) fn registry_observe_allocator(&self, ev: &agora_allocator::AllocatorEvent) {
        let Some(r) = &self.raft else { return };
        if let Some(op) = HaCore::observe_allocator(&self.core, ev) {
            r.raft.do_send(Propose(op));
        }
    }
}

/// Only the raft view: cheap, unlike a full snapshot, so it can be polled under load.
#[derive(Message)]
#[rtype(result = "Option<HaView>")]
pub struct GetHa;

impl Handler<GetHa> for MasterActor {
    type Result = ResponseFuture<Option<HaView>>;
    fn handle(&mut self, _: GetHa, _: &mut Context<Self>) -> Self::Result {
        let raft = self.raft.as_ref().map(|r| {
            let shell = (
                r.peer_errors,
                r.duplicate_id_refusals,
                r.last_peer_error.clone(),
            );
            (r.raft().clone(), shell)
        });
        Box::pin(async move {
            let (a, (errors, duplicates, last_error)) = raft?;
            let mut v = a.send(crate::raft_actor::GetView).await.ok()?;
            v.peer_errors += errors;
            v.duplicate_id_refusals = duplicates;
            if last_error.is_some() {
                v.last_peer_error = last_error;
            }
            Some(v)
        })
    }
}
