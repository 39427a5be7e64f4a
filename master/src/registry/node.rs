//! The registry's raft driver. It owns a `RawNode` over a [`RegistryStorage`] (sled, or memory in the simulator) and the applied
//! [`RegistryState`], and turns raft's `Ready` into plain outputs: raft messages to send to
//! peers (already persisted where raft requires it), ops that became durable, and leadership
//! changes. It does no network IO and reads no clock: the shell ticks it, steps peer messages
//! into it, calls [`RegistryNode::drive`] and performs what comes out.

use super::storage::{Identity, RegistryStorage, SledStorage};
use super::{RegistryError, RegistryLimits, RegistryOp, RegistryState};
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, Message as RaftMessage};
use raft::{RawNode, StateRole};
use std::path::Path;

/// Raft timing and log-size settings; the same on every master of a group.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub identity: Identity,
    /// Election timeout in ticks (randomised in [n, 2n) by raft). With check-quorum, a leader
    /// that has not heard from a majority for this long steps down.
    pub election_ticks: usize,
    /// Overrides raft's randomised range [n, 2n) with [n, n+1), one value: raft-rs draws the
    /// timeout from an unseeded thread RNG, so the simulator fixes it (and gives every node
    /// its own `election_ticks` so elections still break ties). Production leaves it off.
    pub fixed_election_timeout: bool,
    pub heartbeat_ticks: usize,
    /// A snapshot replaces the log once this many entries are applied beyond the last one.
    pub compact_after_entries: u64,
    pub limits: RegistryLimits,
}

impl RegistryConfig {
    pub fn new(identity: Identity) -> RegistryConfig {
        RegistryConfig {
            identity,
            election_ticks: 10,
            fixed_election_timeout: false,
            heartbeat_ticks: 2,
            compact_after_entries: 1_000,
            limits: RegistryLimits::default(),
        }
    }
}

/// Who leads, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub role: StateRole,
    pub term: u64,
    /// Leader whose registry is current: an entry of its own term is committed and applied,
    /// so every op an earlier leader committed is in its state. Only then may it serve (a
    /// new leader must enforce what the registry says, not what it had applied so far).
    pub serving: bool,
}

/// What one `drive` produced.
#[derive(Debug, Default)]
pub struct DriveOutput {
    /// (peer id, encoded raft message).
    pub messages: Vec<(u64, Vec<u8>)>,
    /// Ops applied (durable on a majority and on this node's disk), in log order.
    pub applied: Vec<RegistryOp>,
    /// Set when the leader or this node's role changed.
    pub leadership: Option<Leadership>,
}

/// The raft driver over a storage `S`: sled in production, memory in the simulator.
pub struct RegistryNode<S: RegistryStorage = SledStorage> {
    raw: RawNode<S>,
    state: RegistryState,
    applied: u64,
    config: RegistryConfig,
    last_seen: Leadership,
}

impl RegistryNode<SledStorage> {
    /// Opens (or creates) the registry stored in sled at `dir`.
    pub fn open(dir: &Path, config: RegistryConfig) -> Result<Self, RegistryError> {
        check_member(&config)?;
        let storage = SledStorage::open(dir, &config.identity)?;
        RegistryNode::with_storage(storage, config)
    }
}

fn check_member(config: &RegistryConfig) -> Result<(), RegistryError> {
    let id = config.identity.node_id;
    if !config.identity.peers.contains_key(&id) {
        return Err(RegistryError::Config(format!(
            "node id {id} is not in the peer list {}",
            super::format_peers(&config.identity.peers)
        )));
    }
    Ok(())
}

impl<S: RegistryStorage> RegistryNode<S> {
    /// Starts the raft node over an opened storage (its identity already checked).
    pub fn with_storage(storage: S, config: RegistryConfig) -> Result<Self, RegistryError> {
        check_member(&config)?;
        let id = config.identity.node_id;
        let applied = storage.applied()?;
        let state = RegistryState::decode(&storage.state_bytes()?)?;
        let (min_election_tick, max_election_tick) = if config.fixed_election_timeout {
            (config.election_ticks, config.election_ticks + 1)
        } else {
            (0, 0) // raft's default range
        };
        let raft_config = raft::Config {
            id,
            election_tick: config.election_ticks,
            min_election_tick,
            max_election_tick,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        let logger = slog::Logger::root(super::TracingDrain, slog::o!("raft_id" => id));
        let mut raw = RawNode::new(&raft_config, storage, &logger)
            .map_err(|e| RegistryError::Config(format!("raft: {e}")))?;
        if config.identity.peers.len() == 1 {
            // A group of one need not wait an election timeout to lead.
            raw.campaign()
                .map_err(|e| RegistryError::Config(format!("campaign: {e}")))?;
        }
        let last_seen = Leadership {
            leader_id: 0,
            role: StateRole::Follower,
            term: 0,
            serving: false,
        };
        Ok(RegistryNode {
            raw,
            state,
            applied,
            config,
            last_seen,
        })
    }

    pub fn id(&self) -> u64 {
        self.config.identity.node_id
    }
    /// Raft id → transport address of every master of the group.
    pub fn peers(&self) -> &std::collections::BTreeMap<u64, String> {
        &self.config.identity.peers
    }
    pub fn state(&self) -> &RegistryState {
        &self.state
    }
    pub fn applied(&self) -> u64 {
        self.applied
    }
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }
    pub fn leadership(&self) -> Leadership {
        let leads = self.raw.raft.state == StateRole::Leader;
        Leadership {
            leader_id: self.raw.raft.leader_id,
            role: self.raw.raft.state,
            term: self.raw.raft.term,
            serving: leads
                && self.raw.raft.commit_to_current_term()
                && self.applied >= self.commit_index(),
        }
    }
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }
    /// Per peer (id → matched index) when leading; empty otherwise.
    pub fn progress(&self) -> Vec<(u64, u64)> {
        if !self.is_leader() {
            return vec![];
        }
        let mut v: Vec<(u64, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| (*id, pr.matched))
            .collect();
        v.sort();
        v
    }

    /// The storage, for tests that write behind raft's back.
    #[cfg(test)]
    pub(crate) fn raw_store_mut(&mut self) -> &mut S {
        self.raw.mut_store()
    }

    /// One raft clock tick (the shell calls this every tick interval).
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// A raft message from peer `from` (as the transport authenticated it).
    pub fn step(&mut self, from: u64, bytes: &[u8]) -> Result<(), RegistryError> {
        let msg = RaftMessage::parse_from_bytes(bytes)
            .map_err(|e| RegistryError::BadPeerMessage(format!("from {from}: {e}")))?;
        if msg.from != from || msg.to != self.id() {
            return Err(RegistryError::BadPeerMessage(format!(
                "message from {} to {} arrived on the link of peer {from}",
                msg.from, msg.to
            )));
        }
        self.raw
            .step(msg)
            .map_err(|e| RegistryError::BadPeerMessage(format!("from {from}: {e}")))
    }

    /// Proposes an op; it comes back from `drive` once applied. Only the leader proposes.
    pub fn propose(&mut self, op: &RegistryOp) -> Result<(), RegistryError> {
        if !self.is_leader() {
            return Err(RegistryError::NotLeader);
        }
        self.raw
            .propose(vec![], op.encode())
            .map_err(|e| RegistryError::Proposal(e.to_string()))
    }

    /// Proposes `op` unless it changes nothing (re-registrations repeat admissions, and such
    /// ops are not logged); whether it was proposed.
    pub fn propose_if_changed(&mut self, op: &RegistryOp) -> Result<bool, RegistryError> {
        if !self.state.changes(op) {
            return Ok(false);
        }
        self.propose(op).map(|()| true)
    }

    /// The Ready loop: persist, then hand out messages and applied ops.
    pub fn drive(&mut self) -> Result<DriveOutput, RegistryError> {
        let mut out = DriveOutput::default();
        while self.raw.has_ready() {
            self.drive_once(&mut out)?;
        }
        let now = self.leadership();
        if now != self.last_seen {
            self.last_seen = now;
            out.leadership = Some(now);
        }
        Ok(out)
    }

    fn drive_once(&mut self, out: &mut DriveOutput) -> Result<(), RegistryError> {
        let mut rd = self.raw.ready();
        push_messages(&mut out.messages, rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.raw.mut_store().apply_snapshot(&snap)?;
            self.state = RegistryState::decode(snap.get_data())?;
            self.applied = snap.get_metadata().index;
        }
        let committed = rd.take_committed_entries();
        self.apply_entries(committed, out)?;
        self.raw.mut_store().append(rd.entries())?;
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs)?;
        }
        // Raft's persistence rule: nothing that depends on these writes leaves before fsync.
        self.raw.mut_store().flush()?;
        push_messages(&mut out.messages, rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.store().hard_state().clone();
            hs.commit = commit;
            self.raw.mut_store().set_hard_state(&hs)?;
            self.raw.mut_store().flush()?;
        }
        push_messages(&mut out.messages, light.take_messages());
        self.apply_entries(light.take_committed_entries(), out)?;
        self.raw.advance_apply();
        self.maybe_compact()
    }

    fn apply_entries(
        &mut self,
        entries: Vec<Entry>,
        out: &mut DriveOutput,
    ) -> Result<(), RegistryError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for e in &entries {
            if e.index <= self.applied || e.get_entry_type() != EntryType::EntryNormal {
                // Membership is static (the peer list); conf changes are never proposed.
                continue;
            }
            if e.data.is_empty() {
                continue; // the empty entry a new leader appends
            }
            match RegistryOp::decode(&e.data) {
                Ok(op) => match self.state.apply(&op, &self.config.limits) {
                    Ok(()) => out.applied.push(op),
                    Err(err) => tracing::warn!(index = e.index, %err, "registry op refused"),
                },
                Err(err) => {
                    tracing::error!(index = e.index, %err, "undecodable registry entry skipped")
                }
            }
        }
        if last > self.applied {
            self.applied = last;
            let bytes = self.state.encode();
            self.raw.mut_store().commit_applied(last, &bytes)?;
            self.raw.mut_store().flush()?;
        }
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), RegistryError> {
        let since = self.applied - self.raw.store().snapshot_index().min(self.applied);
        if since < self.config.compact_after_entries {
            return Ok(());
        }
        let conf = self.raw.raft.prs().conf().to_conf_state();
        self.raw.mut_store().compact(self.applied, &conf)?;
        self.raw.mut_store().flush()
    }
}

fn push_messages(into: &mut Vec<(u64, Vec<u8>)>, msgs: Vec<RaftMessage>) {
    for m in msgs {
        let bytes = m.write_to_bytes().unwrap_or_default();
        into.push((m.to, bytes));
    }
}
