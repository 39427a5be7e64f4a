//! `raft::Storage` over sled. Three trees under the registry directory:
//! * `raft_log`: log entries, key = index (big-endian u64), value = protobuf `Entry`;
//! * `raft_meta`: the hard state, the latest snapshot (metadata + data) and the identity of the
//!   group this directory belongs to (cluster, node id, peers);
//! * `registry`: the applied index and the applied state machine.
//!
//! Crash safety: the applied index, the applied state and the hard state's `commit` are written
//! in one multi-tree transaction, with `commit` raised to at least `applied`, so a restart never
//! sees `applied > commit` (raft-rs panics on that). Nothing is acknowledged or sent until
//! `flush` has returned (sled is durable only after an fsync). Removing compacted entries
//! happens after the snapshot that covers them is stored; leftovers are purged on open.

use super::RegistryError;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

const K_HARD_STATE: &[u8] = b"hard_state";
const K_SNAPSHOT: &[u8] = b"snapshot";
const K_IDENTITY: &[u8] = b"identity";
const K_APPLIED: &[u8] = b"applied";
const K_STATE: &[u8] = b"state";

/// Which group a registry directory belongs to. Checked on every open, so a directory copied
/// from another cluster or node, or a changed peer list, is refused with a clear error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub cluster: String,
    pub node_id: u64,
    /// Raft id → transport address of every master of the group (this one included).
    pub peers: BTreeMap<u64, String>,
}

pub struct SledStorage {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    registry: sled::Tree,
    /// Cached: the latest snapshot's metadata (index/term of the compacted prefix).
    snap_meta: SnapshotMetadata,
    hard_state: HardState,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(k: &[u8]) -> Result<u64, RegistryError> {
    let b: [u8; 8] = k
        .try_into()
        .map_err(|_| RegistryError::Corrupt(format!("log key of {} bytes", k.len())))?;
    Ok(u64::from_be_bytes(b))
}

fn corrupt(e: RegistryError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

fn io(e: sled::Error) -> RegistryError {
    RegistryError::Io(e.to_string())
}

fn raft_io(e: sled::Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

fn pb<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, RegistryError> {
    M::parse_from_bytes(bytes).map_err(|e| RegistryError::Corrupt(format!("{what}: {e}")))
}

fn to_bytes<M: protobuf::Message>(m: &M) -> Vec<u8> {
    // Encoding a well-formed in-memory message into a Vec cannot fail.
    m.write_to_bytes().unwrap_or_default()
}

impl SledStorage {
    /// Opens (or creates) the registry at `dir` for `identity`. A fresh directory starts with
    /// every peer as a voter; an existing one must have been created for the same identity.
    pub fn open(dir: &Path, identity: &Identity) -> Result<SledStorage, RegistryError> {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .map_err(|e| RegistryError::Io(format!("opening {}: {e}", dir.display())))?;
        let log = db.open_tree("raft_log").map_err(io)?;
        let meta = db.open_tree("raft_meta").map_err(io)?;
        let registry = db.open_tree("registry").map_err(io)?;
        let mut s = SledStorage {
            db,
            log,
            meta,
            registry,
            snap_meta: SnapshotMetadata::default(),
            hard_state: HardState::default(),
        };
        match s.meta.get(K_IDENTITY).map_err(io)? {
            None => s.init(identity)?,
            Some(bytes) => {
                let stored: Identity = serde_json::from_slice(&bytes)
                    .map_err(|e| RegistryError::Corrupt(format!("identity: {e}")))?;
                check_identity(&stored, identity)?;
            }
        }
        s.load()?;
        Ok(s)
    }

    fn init(&mut self, identity: &Identity) -> Result<(), RegistryError> {
        let mut snap = Snapshot::default();
        let cs = ConfState {
            voters: identity.peers.keys().copied().collect(),
            ..ConfState::default()
        };
        snap.mut_metadata().set_conf_state(cs);
        let id = serde_json::to_vec(identity).unwrap_or_default();
        self.meta.insert(K_SNAPSHOT, to_bytes(&snap)).map_err(io)?;
        self.meta
            .insert(K_HARD_STATE, to_bytes(&HardState::default()))
            .map_err(io)?;
        // The identity goes last: a directory without one is re-initialised on the next open.
        self.meta.insert(K_IDENTITY, id).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    /// Reads the cached metadata back and checks that the stored pieces agree with each other.
    fn load(&mut self) -> Result<(), RegistryError> {
        let snap: Snapshot = match self.meta.get(K_SNAPSHOT).map_err(io)? {
            Some(b) => pb("snapshot", &b)?,
            None => return Err(RegistryError::Corrupt("no snapshot record".into())),
        };
        self.snap_meta = snap.get_metadata().clone();
        self.hard_state = match self.meta.get(K_HARD_STATE).map_err(io)? {
            Some(b) => pb("hard state", &b)?,
            None => return Err(RegistryError::Corrupt("no hard state".into())),
        };
        self.purge_to(self.snap_meta.index)?;
        let mut expect = self.snap_meta.index + 1;
        for kv in self.log.iter() {
            let (k, v) = kv.map_err(io)?;
            let idx = index_of(&k)?;
            let e: Entry = pb("log entry", &v)?;
            if idx != expect || e.index != idx {
                return Err(RegistryError::Corrupt(format!(
                    "log has a gap or a misplaced entry at index {idx} (expected {expect})"
                )));
            }
            expect += 1;
        }
        let last = expect - 1;
        let applied = self.applied()?;
        if self.hard_state.commit > last {
            return Err(RegistryError::Corrupt(format!(
                "commit index {} beyond the last log index {last} (truncated log?)",
                self.hard_state.commit
            )));
        }
        if applied > self.hard_state.commit.max(self.snap_meta.index) {
            return Err(RegistryError::Corrupt(format!(
                "applied index {applied} beyond commit {}",
                self.hard_state.commit
            )));
        }
        Ok(())
    }

    /// Removes log entries up to and including `index` (covered by the snapshot).
    fn purge_to(&self, index: u64) -> Result<(), RegistryError> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..key(index.saturating_add(1))) {
            let (k, _) = kv.map_err(io)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(io)
    }

    fn last(&self) -> Result<u64, raft::Error> {
        match self.log.last().map_err(raft_io)? {
            Some((k, _)) => index_of(&k).map_err(corrupt),
            None => Ok(self.snap_meta.index),
        }
    }

    fn entry(&self, idx: u64) -> Result<Entry, raft::Error> {
        match self.log.get(key(idx)).map_err(raft_io)? {
            Some(v) => pb("log entry", &v).map_err(corrupt),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

/// What the registry's raft driver needs of its storage beyond `raft::Storage`: the writes of
/// raft's `Ready` loop and a durability barrier. Production stores it in sled
/// ([`SledStorage`]); the simulator keeps it in memory ([`super::mem::MemStorage`]) and loses
/// on a simulated crash exactly what was written after the last `flush`.
pub trait RegistryStorage: raft::Storage {
    /// The index of the last applied entry (0 before the first).
    fn applied(&self) -> Result<u64, RegistryError>;
    /// The applied state as stored (empty before the first apply).
    fn state_bytes(&self) -> Result<Vec<u8>, RegistryError>;
    fn hard_state(&self) -> &HardState;
    fn snapshot_index(&self) -> u64;
    /// Appends `entries`, replacing any stored entries from the first new index on (a leader's
    /// log wins over a follower's uncommitted tail). Not durable until `flush`.
    fn append(&mut self, entries: &[Entry]) -> Result<(), RegistryError>;
    /// Stores the hard state; `commit` never goes down (an apply may have raised it already).
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), RegistryError>;
    /// Records that everything up to `applied` is applied, giving `state`, atomically with the
    /// hard state's commit (raised to `applied` if needed).
    fn commit_applied(&mut self, applied: u64, state: &[u8]) -> Result<(), RegistryError>;
    /// Installs a snapshot received from the leader: its state becomes the applied state and
    /// the whole log is replaced.
    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), RegistryError>;
    /// Log compaction: a snapshot of the applied state at `applied` replaces the log up to it.
    fn compact(&mut self, applied: u64, conf: &ConfState) -> Result<(), RegistryError>;
    /// Makes everything written so far durable (fsync). Raft's rule: nothing that depends on a
    /// write is sent or acknowledged before this returns.
    fn flush(&mut self) -> Result<(), RegistryError>;
}

/// Checks a stored identity against the configured one (shared by every storage).
pub(crate) fn check_identity(stored: &Identity, given: &Identity) -> Result<(), RegistryError> {
    if stored.cluster != given.cluster {
        return Err(RegistryError::OtherCluster {
            stored: stored.cluster.clone(),
            given: given.cluster.clone(),
        });
    }
    if stored.node_id != given.node_id {
        return Err(RegistryError::OtherNode {
            stored: stored.node_id,
            given: given.node_id,
        });
    }
    if stored.peers != given.peers {
        return Err(RegistryError::PeersChanged {
            stored: super::format_peers(&stored.peers),
            given: super::format_peers(&given.peers),
        });
    }
    Ok(())
}

impl RegistryStorage for SledStorage {
    fn applied(&self) -> Result<u64, RegistryError> {
        match self.registry.get(K_APPLIED).map_err(io)? {
            Some(b) => index_of(&b),
            None => Ok(0),
        }
    }

    /// The applied state as stored (empty before the first apply).
    fn state_bytes(&self) -> Result<Vec<u8>, RegistryError> {
        Ok(self
            .registry
            .get(K_STATE)
            .map_err(io)?
            .map(|v| v.to_vec())
            .unwrap_or_default())
    }

    fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    fn snapshot_index(&self) -> u64 {
        self.snap_meta.index
    }

    /// Appends `entries`, replacing any stored entries from the first new index on (a leader's
    /// log wins over a follower's uncommitted tail). Not durable until `flush`.
    fn append(&mut self, entries: &[Entry]) -> Result<(), RegistryError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut batch = sled::Batch::default();
        for kv in self.log.range(key(first.index)..) {
            let (k, _) = kv.map_err(io)?;
            batch.remove(k);
        }
        for e in entries {
            batch.insert(&key(e.index), to_bytes(e));
        }
        self.log.apply_batch(batch).map_err(io)
    }

    /// Stores the hard state; `commit` never goes down (an apply may have raised it already).
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), RegistryError> {
        let mut hs = hs.clone();
        hs.commit = hs.commit.max(self.hard_state.commit);
        self.meta.insert(K_HARD_STATE, to_bytes(&hs)).map_err(io)?;
        self.hard_state = hs;
        Ok(())
    }

    /// Records that everything up to `applied` is applied, giving `state`, in one transaction
    /// with the hard state's commit (raised to `applied` if needed).
    fn commit_applied(&mut self, applied: u64, state: &[u8]) -> Result<(), RegistryError> {
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(applied);
        let hs_bytes = to_bytes(&hs);
        use sled::Transactional;
        (&self.meta, &self.registry)
            .transaction(|(meta, reg)| {
                meta.insert(K_HARD_STATE, hs_bytes.as_slice())?;
                reg.insert(K_APPLIED, &key(applied))?;
                reg.insert(K_STATE, state)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| RegistryError::Io(format!("apply transaction: {e:?}")))?;
        self.hard_state = hs;
        Ok(())
    }

    /// Installs a snapshot received from the leader: its state becomes the applied state and
    /// the whole log is replaced.
    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), RegistryError> {
        let m = snap.get_metadata();
        if m.index <= self.snap_meta.index {
            return Ok(());
        }
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(m.index);
        hs.term = hs.term.max(m.term);
        let (hs_bytes, snap_bytes) = (to_bytes(&hs), to_bytes(snap));
        use sled::Transactional;
        (&self.meta, &self.registry)
            .transaction(|(meta, reg)| {
                meta.insert(K_HARD_STATE, hs_bytes.as_slice())?;
                meta.insert(K_SNAPSHOT, snap_bytes.as_slice())?;
                reg.insert(K_APPLIED, &key(m.index))?;
                reg.insert(K_STATE, snap.get_data())?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| RegistryError::Io(format!("snapshot transaction: {e:?}")))?;
        self.hard_state = hs;
        self.snap_meta = m.clone();
        self.log.clear().map_err(io)
    }

    /// Log compaction: a snapshot of the applied state at `applied` replaces the log up to it.
    fn compact(&mut self, applied: u64, conf: &ConfState) -> Result<(), RegistryError> {
        if applied <= self.snap_meta.index {
            return Ok(());
        }
        let term = raft::Storage::term(self, applied)
            .map_err(|e| RegistryError::Io(format!("term of {applied}: {e}")))?;
        let mut snap = Snapshot::default();
        snap.set_data(self.state_bytes()?.into());
        let m = snap.mut_metadata();
        m.index = applied;
        m.term = term;
        m.set_conf_state(conf.clone());
        let meta = snap.get_metadata().clone();
        self.meta.insert(K_SNAPSHOT, to_bytes(&snap)).map_err(io)?;
        self.snap_meta = meta;
        self.purge_to(applied)
    }

    /// Makes everything written so far durable (fsync).
    fn flush(&mut self) -> Result<(), RegistryError> {
        self.db.flush().map(|_| ()).map_err(io)
    }
}

impl raft::Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let snap: Snapshot = match self.meta.get(K_SNAPSHOT).map_err(raft_io)? {
            Some(b) => pb("snapshot", &b).map_err(corrupt)?,
            None => Snapshot::default(),
        };
        Ok(RaftState::new(
            self.hard_state.clone(),
            snap.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_meta.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last()? + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::new();
        for kv in self.log.range(key(low)..key(high)) {
            let (_, v) = kv.map_err(raft_io)?;
            out.push(pb("log entry", &v).map_err(corrupt)?);
        }
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_meta.index {
            return Ok(self.snap_meta.term);
        }
        if idx < self.snap_meta.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        Ok(self.entry(idx)?.term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_meta.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.last()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap: Snapshot = match self.meta.get(K_SNAPSHOT).map_err(raft_io)? {
            Some(b) => pb("snapshot", &b).map_err(corrupt)?,
            None => {
                return Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        };
        if snap.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap)
    }
}
