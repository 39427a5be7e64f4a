//! The master's pure core: all of its logic, none of its IO.
//!
//! The shell (actix actor) feeds every event in as an `Input` together with the current time and
//! performs the returned `Action`s in order: send or close on a connection, arm a timer, or pass
//! an event to the allocator. The core never reads a clock, iterates only ordered maps and never
//! panics on peer input, so it runs unchanged in unit tests and in a deterministic simulator.
//!
//! Resource accounting: the allocator counts a resource as allocated from the moment it hands it
//! out in an `Allocation` until the master gives it back with `AllocatorEvent::Recover` (or
//! removes its agent / framework). The master keeps the mirror image: per agent, what is offered
//! (outstanding offers) plus what is used (non-terminal tasks and their executors), and never lets
//! that exceed the agent's total, whatever the allocator says.

mod accept;
mod agents;
mod config;
mod error;
mod frameworks;
mod model;
mod offers;
mod recovery;
mod reservations;
mod revoke;
mod standby;
mod state;
mod tasks;
mod validate;

#[cfg(test)]
mod tests;

pub use config::MasterConfig;
pub use error::MasterError;
pub use frameworks::RegistryFramework;
pub use reservations::{with_role, ReserveRequest};
pub use state::{
    AgentView, CompletedTaskView, FrameworkView, MasterCounters, MasterState, OfferView, TaskView,
};

use agora_actors::transport::ConnId;
use agora_actors::{
    FrameworkId, Hello, IdGen, Message, NodeKind, OfferId, TaskState, TaskStatus, Time,
    UpdateSource, PROTOCOL_VERSION,
};
use agora_allocator::{Allocation, AllocatorEvent};
use model::{
    AgentEntry, Binding, BoundedSet, CompletedTask, ConnEntry, FrameworkEntry, OfferEntry,
    TaskEntry,
};
use std::collections::{BTreeMap, VecDeque};
use tracing::{debug, warn};

/// Timers the master arms (`Action::SetTimer`) and the shell fires back (`Input::Timer`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MasterTimer {
    /// Periodic: ping connected agents and count missed pings.
    PingAgents,
    /// Periodic: heartbeat connected schedulers.
    Heartbeat,
    /// The offer is rescinded if still outstanding.
    OfferTimeout(OfferId),
    /// The framework is removed if its scheduler is still away; `generation` identifies the
    /// disconnect that armed it, so a timer from before a re-subscribe does nothing.
    FrameworkFailover {
        framework_id: FrameworkId,
        generation: u64,
    },
    /// The grace period of a revocation is over: its tasks are killed.
    Revoke(u64),
    /// End of the window in which the agents of the registry may re-register with this master.
    AgentReregisterTimeout,
}

// Messages dominate the size; inputs are moved once into `handle`, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A connection finished its handshake.
    Connected {
        conn: ConnId,
        peer: Hello,
    },
    Message {
        conn: ConnId,
        msg: Message,
    },
    Disconnected {
        conn: ConnId,
    },
    Timer(MasterTimer),
    /// Decisions of the allocator.
    Allocations(Vec<Allocation>),
    /// The allocator wants resources back from over-share frameworks.
    Revoke(Vec<agora_allocator::RevocationRequest>),
    /// The agents the replicated registry admitted (from the shell, once, after `start`). Those
    /// that do not re-register within `reregister_timeout_ms` are declared unreachable.
    RegistryAgents {
        agent_ids: Vec<agora_actors::AgentId>,
        reregister_timeout_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send {
        conn: ConnId,
        msg: Message,
    },
    /// Send `last` (if any), then close the connection. The core already treats the connection
    /// as gone; a later `Disconnected` for it is ignored.
    Close {
        conn: ConnId,
        last: Option<Message>,
    },
    SetTimer {
        timer: MasterTimer,
        at: Time,
    },
    Allocator(AllocatorEvent),
    /// A registry agent did not come back in time: the shell removes it from the registry.
    AgentUnreachable {
        agent_id: agora_actors::AgentId,
    },
}

/// Reasons the master puts on the status updates it produces itself.
pub mod reasons {
    pub const AGENT_REMOVED: &str = "agent_removed";
    pub const INVALID_OFFERS: &str = "invalid_offers";
    pub const TASK_INVALID: &str = "task_invalid";
    pub const RESOURCES_EXCEEDED: &str = "resources_exceeded";
    pub const RECONCILIATION: &str = "reconciliation";
    pub const FRAMEWORK_REMOVED: &str = "framework_removed";
    /// The task's agent re-registered without it.
    pub const TASK_MISSING: &str = "task_missing_on_agent";
    /// Killed to revoke its resources for a role below its guarantee.
    pub const PREEMPTED: &str = "preempted";
    /// The task's agent was admitted before a master failover and did not re-register in time.
    pub const AGENT_UNREACHABLE: &str = "agent_unreachable";
}

pub(crate) type Out = Vec<Action>;

/// The master's state and logic. See the module docs.
pub struct MasterCore {
    config: MasterConfig,
    epoch: u64,
    agent_ids: IdGen,
    framework_ids: IdGen,
    offer_ids: IdGen,
    started_at: Time,
    conns: BTreeMap<ConnId, ConnEntry>,
    agents: BTreeMap<agora_actors::AgentId, AgentEntry>,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    removed_frameworks: BoundedSet<FrameworkId>,
    tasks: BTreeMap<(FrameworkId, agora_actors::TaskId), TaskEntry>,
    completed: VecDeque<CompletedTask>,
    offers: BTreeMap<OfferId, OfferEntry>,
    counters: MasterCounters,
    reservations: reservations::ReservationBook,
    revocations: revoke::Revocations,
    /// Registry agents not yet re-registered with this master, and those that missed the window.
    recovery: recovery::Recovery,
    /// Tasks declared lost because their agent was removed: if that agent comes back, they are
    /// killed and their later updates dropped (the framework already had a terminal update).
    lost_with_agent: BoundedSet<(agora_actors::AgentId, FrameworkId, agora_actors::TaskId)>,
}

impl MasterCore {
    /// `epoch` must differ between incarnations of the master (e.g. its start time in ms), so
    /// ids it generates never repeat those of an earlier incarnation.
    pub fn new(config: MasterConfig, epoch: u64) -> Self {
        MasterCore {
            config,
            epoch,
            agent_ids: IdGen::new("agent", epoch),
            framework_ids: IdGen::new("fw", epoch),
            offer_ids: IdGen::new("offer", epoch),
            started_at: Time::ZERO,
            conns: BTreeMap::new(),
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            removed_frameworks: BoundedSet::default(),
            tasks: BTreeMap::new(),
            completed: VecDeque::new(),
            offers: BTreeMap::new(),
            counters: MasterCounters::default(),
            reservations: reservations::ReservationBook::default(),
            revocations: revoke::Revocations::default(),
            recovery: recovery::Recovery::default(),
            lost_with_agent: BoundedSet::default(),
        }
    }

    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// Arms the periodic timers. Call once, before the first `handle`.
    pub fn start(&mut self, now: Time) -> Vec<Action> {
        self.started_at = now;
        vec![
            Action::SetTimer {
                timer: MasterTimer::PingAgents,
                at: now.plus_ms(self.config.agent_ping_interval_ms),
            },
            Action::SetTimer {
                timer: MasterTimer::Heartbeat,
                at: now.plus_ms(self.config.heartbeat_interval_ms),
            },
        ]
    }

    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Connected { conn, peer } => self.on_connected(conn, peer, &mut out),
            Input::Message { conn, msg } => self.on_message(now, conn, msg, &mut out),
            Input::Disconnected { conn } => self.on_disconnected(now, conn, &mut out),
            Input::Timer(timer) => self.on_timer(now, timer, &mut out),
            Input::Allocations(allocs) => self.on_allocations(now, allocs, &mut out),
            Input::Revoke(requests) => self.on_revoke(now, requests, &mut out),
            Input::RegistryAgents {
                agent_ids,
                reregister_timeout_ms,
            } => self.recover_registry_agents(now, agent_ids, reregister_timeout_ms, &mut out),
        }
        out
    }

    pub fn counters(&self) -> &MasterCounters {
        &self.counters
    }

    fn on_connected(&mut self, conn: ConnId, peer: Hello, out: &mut Out) {
        // The transport checks the hello already; checking again keeps the core safe on its own.
        if peer.cluster != self.config.cluster || peer.protocol_version != PROTOCOL_VERSION {
            let err = MasterError::ClusterMismatch {
                got: peer.cluster.clone(),
                want: self.config.cluster.clone(),
                version: peer.protocol_version,
            };
            self.counters.invalid_messages += 1;
            warn!(conn, error = %err, "refusing connection");
            let last = Some(Message::fatal(err.code(), err.to_string()));
            out.push(Action::Close { conn, last });
            return;
        }
        debug!(conn, kind = ?peer.node_kind, node = %peer.node_id, "connected");
        let entry = ConnEntry {
            peer,
            binding: Binding::Unbound,
        };
        if self.conns.insert(conn, entry).is_some() {
            warn!(
                conn,
                "connection id reused without a disconnect; treating as new"
            );
        }
    }

    fn on_disconnected(&mut self, now: Time, conn: ConnId, out: &mut Out) {
        let Some(entry) = self.conns.remove(&conn) else {
            // Normal after the master closed the connection itself.
            debug!(conn, "disconnect of a connection already forgotten");
            return;
        };
        match entry.binding {
            Binding::Unbound => debug!(conn, "unbound connection closed"),
            Binding::Agent(agent_id) => self.agent_disconnected(&agent_id, conn, out),
            Binding::Framework(fw) => self.scheduler_disconnected(now, &fw, conn, out),
            Binding::Standby(fw) => self.drop_standby(&fw, conn),
        }
    }

    fn on_message(&mut self, now: Time, conn: ConnId, msg: Message, out: &mut Out) {
        let Some(entry) = self.conns.get(&conn) else {
            debug!(
                conn,
                kind = msg.kind(),
                "message on a connection already closed; dropped"
            );
            return;
        };
        let peer = entry.peer.node_kind;
        if let Message::Error { code, message, .. } = &msg {
            // Never answer an error with an error: two peers could bounce them forever.
            warn!(conn, ?peer, ?code, message = %message, "peer reported an error");
            return;
        }
        let result = match peer {
            NodeKind::Agent => self.on_agent_message(now, conn, msg, out),
            NodeKind::Scheduler => self.on_scheduler_message(now, conn, msg, out),
            _ => Err(MasterError::WrongPeer {
                kind: msg.kind(),
                peer,
            }),
        };
        if let Err(err) = result {
            self.reject(now, conn, err, out);
        }
    }

    fn on_agent_message(
        &mut self,
        now: Time,
        conn: ConnId,
        msg: Message,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        match msg {
            Message::RegisterAgent {
                hostname,
                endpoint,
                resources,
                attributes,
            } => {
                let reg = agents::Registration {
                    hostname,
                    endpoint,
                    resources,
                    attributes,
                };
                self.register_agent(now, conn, reg, out)
            }
            Message::ReregisterAgent {
                agent_id,
                hostname,
                endpoint,
                resources,
                attributes,
                tasks,
                frameworks,
            } => {
                let reg = agents::Registration {
                    hostname,
                    endpoint,
                    // Agents report static resources; dynamic reservations live here.
                    resources: self.with_reservations(&agent_id, resources),
                    attributes,
                };
                self.reregister_agent(now, conn, agent_id, reg, tasks, frameworks, out)
            }
            Message::Pong => self.on_pong(conn),
            Message::AgentUsage { executors } => self.on_agent_usage(conn, executors),
            Message::StatusUpdate {
                framework_id,
                status,
            } => self.on_status_update(now, conn, framework_id, status, out),
            Message::ExecutorToFramework {
                framework_id,
                executor_id,
                agent_id,
                data,
            } => self.on_executor_message(conn, framework_id, executor_id, agent_id, data, out),
            other => Err(MasterError::WrongPeer {
                kind: other.kind(),
                peer: NodeKind::Agent,
            }),
        }
    }

    fn on_scheduler_message(
        &mut self,
        now: Time,
        conn: ConnId,
        msg: Message,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        match msg {
            Message::Subscribe { framework } => self.subscribe(now, conn, framework, out),
            Message::SubscribeStandby { framework } => {
                self.subscribe_standby(now, conn, framework, out)
            }
            Message::Accept {
                framework_id,
                offer_ids,
                operations,
                filters,
            } => {
                let fw = self.framework_of(conn, &framework_id, "accept")?;
                self.accept(now, conn, fw, offer_ids, operations, filters, out);
                Ok(())
            }
            Message::Decline {
                framework_id,
                offer_ids,
                filters,
            } => {
                let fw = self.framework_of(conn, &framework_id, "decline")?;
                self.decline(now, conn, fw, offer_ids, filters, out)
            }
            Message::Revive { framework_id } => {
                let fw = self.framework_of(conn, &framework_id, "revive")?;
                self.revive_or_suppress(fw, false, out);
                Ok(())
            }
            Message::Suppress { framework_id } => {
                let fw = self.framework_of(conn, &framework_id, "suppress")?;
                self.revive_or_suppress(fw, true, out);
                Ok(())
            }
            other => self.on_scheduler_task_call(now, conn, other, out),
        }
    }

    /// The scheduler calls about tasks and executors (split out to keep dispatch short).
    fn on_scheduler_task_call(
        &mut self,
        now: Time,
        conn: ConnId,
        msg: Message,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        match msg {
            Message::Kill {
                framework_id,
                task_id,
                agent_id,
            } => {
                let fw = self.framework_of(conn, &framework_id, "kill")?;
                self.kill(now, conn, fw, task_id, agent_id, out)
            }
            Message::Acknowledge {
                framework_id,
                agent_id,
                task_id,
                uuid,
            } => {
                let fw = self.framework_of(conn, &framework_id, "acknowledge")?;
                self.acknowledge(fw, agent_id, task_id, uuid, out)
            }
            Message::Reconcile {
                framework_id,
                tasks,
            } => {
                let fw = self.framework_of(conn, &framework_id, "reconcile")?;
                self.reconcile(now, conn, fw, tasks, out)
            }
            Message::Teardown { framework_id } => {
                let fw = self.framework_of(conn, &framework_id, "teardown")?;
                self.teardown(now, conn, fw, out);
                Ok(())
            }
            Message::FrameworkToExecutor {
                framework_id,
                executor_id,
                agent_id,
                data,
            } => {
                let fw = self.framework_of(conn, &framework_id, "framework_to_executor")?;
                self.on_framework_message(fw, executor_id, agent_id, data, out)
            }
            other => Err(MasterError::WrongPeer {
                kind: other.kind(),
                peer: NodeKind::Scheduler,
            }),
        }
    }

    fn on_timer(&mut self, now: Time, timer: MasterTimer, out: &mut Out) {
        match timer {
            MasterTimer::PingAgents => self.ping_round(now, out),
            MasterTimer::Heartbeat => self.heartbeat(now, out),
            MasterTimer::OfferTimeout(offer_id) => self.offer_timed_out(&offer_id, out),
            MasterTimer::FrameworkFailover {
                framework_id,
                generation,
            } => self.failover_expired(now, &framework_id, generation, out),
            MasterTimer::Revoke(id) => self.revocation_due(id, out),
            MasterTimer::AgentReregisterTimeout => self.reregister_window_closed(out),
        }
    }

    /// The framework this scheduler connection is subscribed as, which must be `claimed`.
    fn framework_of(
        &self,
        conn: ConnId,
        claimed: &FrameworkId,
        kind: &'static str,
    ) -> Result<FrameworkId, MasterError> {
        match self.conns.get(&conn).map(|c| &c.binding) {
            Some(Binding::Framework(fw)) if fw == claimed => Ok(fw.clone()),
            Some(Binding::Framework(fw)) => Err(MasterError::FrameworkMismatch {
                conn_framework: fw.clone(),
                claimed: claimed.clone(),
            }),
            _ => Err(MasterError::NotSubscribed { kind }),
        }
    }

    /// Answers a refused message. Fatal refusals close the connection (and, if it belonged to an
    /// agent or framework, count as its disconnect right away).
    fn reject(&mut self, now: Time, conn: ConnId, err: MasterError, out: &mut Out) {
        self.counters.invalid_messages += 1;
        warn!(conn, code = ?err.code(), fatal = err.is_fatal(), error = %err, "refused a message");
        if err.is_fatal() {
            self.on_disconnected(now, conn, out);
            let last = Some(Message::fatal(err.code(), err.to_string()));
            out.push(Action::Close { conn, last });
        } else {
            let msg = Message::error(err.code(), err.to_string());
            out.push(Action::Send { conn, msg });
        }
    }

    /// Sends `msg` to the framework's scheduler if it is connected (dropped otherwise: whatever
    /// must not be lost is retried by its producer or recovered by reconciliation).
    fn send_to_framework(&self, fw: &FrameworkId, msg: Message, out: &mut Out) {
        match self.frameworks.get(fw).and_then(|f| f.conn) {
            Some(conn) => out.push(Action::Send { conn, msg }),
            None => debug!(framework = %fw, kind = msg.kind(), "scheduler away; message dropped"),
        }
    }

    fn send_to_agent(&self, agent: &agora_actors::AgentId, msg: Message, out: &mut Out) {
        match self.agents.get(agent).and_then(|a| a.conn) {
            Some(conn) => out.push(Action::Send { conn, msg }),
            None => debug!(agent = %agent, kind = msg.kind(), "agent away; message dropped"),
        }
    }

    /// A status update produced by the master itself: no uuid, nothing to acknowledge.
    fn master_update(
        &self,
        now: Time,
        task_id: agora_actors::TaskId,
        state: TaskState,
        agent: Option<agora_actors::AgentId>,
        reason: &str,
        message: impl Into<String>,
    ) -> TaskStatus {
        let mut status =
            TaskStatus::new(task_id, state, UpdateSource::Master).with_reason(reason, message);
        status.agent_id = agent;
        status.timestamp_ms = now.ms();
        status
    }
}
