//! The master's actix shell: delivers network events, timers and allocator decisions to the
//! `MasterCore` and performs the actions it returns. No decisions are made here.

use crate::core::{Action, Input, MasterConfig, MasterCore, MasterState};
use crate::ha::{HaView, RaftShell};
use actix::prelude::*;
use agora_actors::time::MonoClock;
use agora_actors::transport::{ConnHandle, ConnId, NetEvent, Transport, TransportError};
use agora_actors::{Hello, NodeKind};
use agora_allocator::{Allocations, AllocatorActor, AllocatorConfig, ShareReport};
use std::collections::HashMap;
use std::sync::Arc;

/// Figures the shell itself measures (the core has no clock).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ShellFigures {
    pub allocation_runs: u64,
    pub allocation_last_micros: u64,
    pub allocation_total_micros: u64,
    pub send_failures: u64,
}

pub struct MasterActor {
    pub(crate) core: MasterCore,
    pub(crate) clock: MonoClock,
    pub(crate) conns: HashMap<ConnId, ConnHandle>,
    pub(crate) allocator: Option<Addr<AllocatorActor>>,
    pub(crate) figures: ShellFigures,
    /// Only the leader feeds its core and makes offers. Always true without a registry.
    pub(crate) leading: bool,
    /// Bumped whenever the core is replaced, so timers armed by an earlier core are ignored.
    pub(crate) generation: u64,
    /// The replicated registry and the links to the other masters (`agora master` always has
    /// one; the in-process demo runs without).
    pub(crate) raft: Option<RaftShell>,
}

impl MasterActor {
    pub(crate) fn deliver(&mut self, input: Input, ctx: &mut Context<Self>) {
        if !self.leading {
            tracing::debug!(?input, "standby master: input dropped");
            return;
        }
        self.registry_observe_input(&input);
        let actions = self.core.handle(self.clock.now(), input);
        self.perform(actions, ctx);
        self.persist_reservation_changes();
        self.persist_lost_tasks();
    }

    pub(crate) fn perform(&mut self, actions: Vec<Action>, ctx: &mut Context<Self>) {
        for action in actions {
            match action {
                Action::Send { conn, msg } => {
                    self.registry_observe_output(conn, &msg, ctx);
                    self.send(conn, msg)
                }
                Action::Close { conn, last } => {
                    if let Some(h) = self.conns.get(&conn) {
                        h.close(last);
                    }
                }
                Action::SetTimer { timer, at } => {
                    let generation = self.generation;
                    ctx.run_later(self.clock.until(at), move |act, ctx| {
                        if act.generation == generation {
                            act.deliver(Input::Timer(timer), ctx)
                        }
                    });
                }
                Action::Allocator(event) => match &self.allocator {
                    Some(a) => {
                        self.registry_observe_allocator(&event);
                        a.do_send(event)
                    }
                    None => tracing::error!("allocator not running; event dropped"),
                },
                Action::AgentUnreachable { agent_id } => self.registry_agent_unreachable(agent_id),
            }
        }
    }

    fn send(&mut self, conn: ConnId, msg: agora_actors::Message) {
        let Some(h) = self.conns.get(&conn) else {
            tracing::debug!(
                conn,
                kind = msg.kind(),
                "send to a closed connection dropped"
            );
            return;
        };
        if let Err(e) = h.send(msg) {
            self.figures.send_failures += 1;
            tracing::warn!(conn, peer = %h.peer_addr, error = %e, "send failed");
        }
    }
}

impl Actor for MasterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The mailbox must not bound a burst of agent/scheduler traffic below the transport's
        // own per-connection limits.
        ctx.set_mailbox_capacity(1 << 20);
        if self.raft.is_none() {
            let actions = self.core.start(self.clock.now());
            self.perform(actions, ctx);
        }
    }
}

impl Handler<NetEvent> for MasterActor {
    type Result = ();
    fn handle(&mut self, ev: NetEvent, ctx: &mut Context<Self>) {
        match ev {
            NetEvent::Connected { conn, peer, handle } => {
                tracing::debug!(conn, peer = %handle.peer_addr, kind = ?peer.node_kind, "connected");
                if self.raft.is_some() && !self.admit_connection(conn, &peer, &handle, ctx) {
                    return;
                }
                self.conns.insert(conn, handle);
                self.deliver(Input::Connected { conn, peer }, ctx);
            }
            NetEvent::Frame { conn, msg } => {
                if self.raft.is_some() && self.peer_frame(conn, &msg, ctx) {
                    return;
                }
                self.deliver(Input::Message { conn, msg }, ctx)
            }
            NetEvent::Closed { conn, reason } => {
                tracing::debug!(conn, %reason, "connection closed");
                if let Some(r) = &mut self.raft {
                    r.peer_closed(conn);
                }
                if self.conns.remove(&conn).is_some() {
                    self.deliver(Input::Disconnected { conn }, ctx);
                }
            }
        }
    }
}

impl Handler<Allocations> for MasterActor {
    type Result = ();
    fn handle(&mut self, msg: Allocations, ctx: &mut Context<Self>) {
        if !self.leading {
            return; // a stale allocator of an earlier leadership
        }
        self.figures.allocation_runs += 1;
        self.figures.allocation_last_micros = msg.run_micros;
        self.figures.allocation_total_micros += msg.run_micros;
        if !msg.allocations.is_empty() {
            self.deliver(Input::Allocations(msg.allocations), ctx);
        }
        if !msg.revocations.is_empty() {
            self.deliver(Input::Revoke(msg.revocations), ctx);
        }
    }
}

/// Everything an operator view needs, taken in one message so it is consistent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    pub state: MasterState,
    pub counters: serde_json::Value,
    pub figures: ShellFigures,
    pub allocator: String,
    pub shares: Vec<ShareReport>,
    /// Raft figures and who leads; `None` without a registry (in-process demo).
    pub ha: Option<HaView>,
}

#[derive(Message)]
#[rtype(result = "Snapshot")]
pub struct GetSnapshot;

impl Handler<GetSnapshot> for MasterActor {
    type Result = ResponseActFuture<Self, Snapshot>;
    fn handle(&mut self, _: GetSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        let state = self.core.state();
        let counters = serde_json::to_value(self.core.counters()).unwrap_or_default();
        let figures = self.figures.clone();
        let alloc = self.allocator.clone();
        let ha = self.raft.as_ref().map(|r| r.view());
        Box::pin(
            async move {
                match alloc {
                    Some(a) => a.send(agora_allocator::GetShares).await.ok(),
                    None => None,
                }
            }
            .into_actor(self)
            .map(move |shares, _act, _ctx| {
                let (allocator, shares) = match shares {
                    Some(s) => (s.allocator.to_string(), s.shares),
                    None => ("none".to_string(), vec![]),
                };
                Snapshot {
                    state,
                    counters,
                    figures,
                    allocator,
                    shares,
                    ha,
                }
            }),
        )
    }
}

/// What `start_master` needs.
pub struct MasterOptions {
    pub listen: String,
    pub config: MasterConfig,
    pub allocator: Box<dyn agora_allocator::Allocator>,
    pub allocator_config: AllocatorConfig,
    /// Distinguishes id generations across restarts (e.g. start time in seconds).
    pub epoch: u64,
    /// The replicated registry; `None` only for in-process use (the demo).
    pub registry: Option<crate::ha::RegistryOptions>,
}

/// A running master: its actor and the address its transport listens on.
#[derive(Clone)]
pub struct MasterHandle {
    pub addr: Addr<MasterActor>,
    pub bound: String,
}

/// Starts the master on the current actix system and begins listening. Without a registry the
/// master leads at once; with one, its core and allocator start when raft elects it.
pub async fn start_master(
    opts: MasterOptions,
    transport: Arc<dyn Transport>,
) -> Result<MasterHandle, TransportError> {
    let listen_err = |why: String| TransportError::Listen {
        addr: opts.listen.clone(),
        why,
    };
    let master_ctx = Context::<MasterActor>::new();
    let master_addr = master_ctx.address();
    let node_id = match &opts.registry {
        Some(r) => crate::ha::hello_node_id(r.config.identity.node_id, &r.http),
        None => opts.listen.clone(),
    };
    let hello = Hello::new(&opts.config.cluster, NodeKind::Master, &node_id);
    let core = MasterCore::new(opts.config.clone(), opts.epoch);
    let (allocator, raft) = match opts.registry {
        None => {
            let a = AllocatorActor::new(
                opts.allocator,
                opts.allocator_config,
                master_addr.clone().recipient(),
            )
            .map_err(|e| listen_err(format!("allocator: {e}")))?
            .start();
            (Some(a), None)
        }
        Some(r) => {
            let shell = RaftShell::open(
                r,
                opts.config,
                opts.epoch,
                opts.allocator,
                opts.allocator_config,
                transport.clone(),
                hello.clone(),
                master_addr.clone().recipient(),
            )
            .map_err(|e| listen_err(e.to_string()))?;
            (None, Some(shell))
        }
    };
    let actor = MasterActor {
        core,
        clock: MonoClock::new(),
        conns: HashMap::new(),
        leading: raft.is_none(),
        allocator,
        figures: ShellFigures::default(),
        generation: 0,
        raft,
    };
    let addr = master_ctx.run(actor);
    let bound = transport
        .listen(&opts.listen, hello, addr.clone().recipient())
        .await?;
    tracing::info!(%bound, "master listening");
    Ok(MasterHandle { addr, bound })
}

/// The allocator actor's address, for operator endpoints that talk to it directly.
#[derive(Message)]
#[rtype(result = "Option<Addr<AllocatorActor>>")]
pub struct GetAllocator;

impl Handler<GetAllocator> for MasterActor {
    type Result = Option<Addr<AllocatorActor>>;
    fn handle(&mut self, _: GetAllocator, _ctx: &mut Context<Self>) -> Self::Result {
        self.allocator.clone()
    }
}
