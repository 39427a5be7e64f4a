//! The registry's raft storage in memory, for the simulator: a [`MemDisk`] stands for the
//! master's disk and outlives the master process (the simulator keeps a handle on it across a
//! crash). Every write records how to undo it until the next `flush`; [`MemDisk::crash`] undoes
//! the writes not flushed yet, so a restarted node finds exactly what it had "fsynced" — as
//! sled after a power cut — and never loses what it acknowledged. No IO, no threads, no clock.

use super::storage::{check_identity, Identity, RegistryStorage};
use super::RegistryError;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// How to take back one write not yet flushed.
#[derive(Debug, Clone)]
enum Undo {
    Entry(u64, Option<Entry>),
    HardState(HardState),
    Snapshot(Snapshot),
    Applied { applied: u64, state: Vec<u8> },
}

/// One master's registry disk.
#[derive(Debug, Default)]
pub struct MemDisk {
    identity: Option<Identity>,
    log: BTreeMap<u64, Entry>,
    hard_state: HardState,
    snapshot: Snapshot,
    applied: u64,
    state: Vec<u8>,
    undo: Vec<Undo>,
    /// Writes a crash took back so far (for the simulator's statistics).
    pub lost_writes: u64,
}

impl MemDisk {
    /// A blank disk, shareable between the simulator and the storage on it.
    pub fn shared() -> Rc<RefCell<MemDisk>> {
        Rc::new(RefCell::new(MemDisk::default()))
    }

    /// The process died: writes since the last flush never reached the disk. Returns how many.
    pub fn crash(&mut self) -> usize {
        let n = self.undo.len();
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Entry(i, Some(e)) => {
                    self.log.insert(i, e);
                }
                Undo::Entry(i, None) => {
                    self.log.remove(&i);
                }
                Undo::HardState(hs) => self.hard_state = hs,
                Undo::Snapshot(s) => self.snapshot = s,
                Undo::Applied { applied, state } => {
                    self.applied = applied;
                    self.state = state;
                }
            }
        }
        self.lost_writes += n as u64;
        n
    }

    /// Entries in the log (after the snapshot).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    fn set_entry(&mut self, index: u64, e: Option<Entry>) {
        let old = match e {
            Some(e) => self.log.insert(index, e),
            None => self.log.remove(&index),
        };
        self.undo.push(Undo::Entry(index, old));
    }

    fn set_hs(&mut self, hs: HardState) {
        let old = std::mem::replace(&mut self.hard_state, hs);
        self.undo.push(Undo::HardState(old));
    }

    fn set_applied(&mut self, applied: u64, state: Vec<u8>) {
        let old_state = std::mem::replace(&mut self.state, state);
        let old = std::mem::replace(&mut self.applied, applied);
        self.undo.push(Undo::Applied {
            applied: old,
            state: old_state,
        });
    }

    fn set_snapshot(&mut self, snap: Snapshot) {
        let old = std::mem::replace(&mut self.snapshot, snap);
        self.undo.push(Undo::Snapshot(old));
    }

    fn purge_to(&mut self, index: u64) {
        let old: Vec<u64> = self.log.range(..=index).map(|(i, _)| *i).collect();
        for i in old {
            self.set_entry(i, None);
        }
    }
}

/// `raft::Storage` over a shared [`MemDisk`].
pub struct MemStorage {
    disk: Rc<RefCell<MemDisk>>,
    /// Cached copy of the disk's hard state (the trait hands out a reference).
    hard_state: HardState,
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::Unavailable)
}

impl MemStorage {
    /// Opens the disk for `identity`: a blank disk is initialised with every peer a voter, a
    /// used one must belong to the same identity.
    pub fn open(
        disk: Rc<RefCell<MemDisk>>,
        identity: &Identity,
    ) -> Result<MemStorage, RegistryError> {
        {
            let mut d = disk.borrow_mut();
            match &d.identity {
                Some(stored) => check_identity(stored, identity)?,
                None => {
                    let mut snap = Snapshot::default();
                    snap.mut_metadata().set_conf_state(ConfState {
                        voters: identity.peers.keys().copied().collect(),
                        ..ConfState::default()
                    });
                    d.snapshot = snap;
                    d.identity = Some(identity.clone());
                    d.undo.clear(); // a fresh disk is written and synced before first use
                }
            }
        }
        let hard_state = disk.borrow().hard_state.clone();
        Ok(MemStorage { disk, hard_state })
    }

    fn last(&self) -> u64 {
        let d = self.disk.borrow();
        d.log
            .keys()
            .next_back()
            .copied()
            .unwrap_or(d.snapshot.get_metadata().index)
    }
}

impl RegistryStorage for MemStorage {
    fn applied(&self) -> Result<u64, RegistryError> {
        Ok(self.disk.borrow().applied)
    }

    fn state_bytes(&self) -> Result<Vec<u8>, RegistryError> {
        Ok(self.disk.borrow().state.clone())
    }

    fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    fn snapshot_index(&self) -> u64 {
        self.disk.borrow().snapshot.get_metadata().index
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), RegistryError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut d = self.disk.borrow_mut();
        let stale: Vec<u64> = d.log.range(first.index..).map(|(i, _)| *i).collect();
        for i in stale {
            d.set_entry(i, None);
        }
        for e in entries {
            d.set_entry(e.index, Some(e.clone()));
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), RegistryError> {
        let mut hs = hs.clone();
        hs.commit = hs.commit.max(self.hard_state.commit);
        self.disk.borrow_mut().set_hs(hs.clone());
        self.hard_state = hs;
        Ok(())
    }

    fn commit_applied(&mut self, applied: u64, state: &[u8]) -> Result<(), RegistryError> {
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(applied);
        let mut d = self.disk.borrow_mut();
        d.set_hs(hs.clone());
        d.set_applied(applied, state.to_vec());
        self.hard_state = hs;
        Ok(())
    }

    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), RegistryError> {
        let m = snap.get_metadata();
        let mut d = self.disk.borrow_mut();
        if m.index <= d.snapshot.get_metadata().index {
            return Ok(());
        }
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(m.index);
        hs.term = hs.term.max(m.term);
        d.set_hs(hs.clone());
        d.set_snapshot(snap.clone());
        d.set_applied(m.index, snap.get_data().to_vec());
        let all: Vec<u64> = d.log.keys().copied().collect();
        for i in all {
            d.set_entry(i, None);
        }
        self.hard_state = hs;
        Ok(())
    }

    fn compact(&mut self, applied: u64, conf: &ConfState) -> Result<(), RegistryError> {
        if applied <= self.snapshot_index() {
            return Ok(());
        }
        let term = raft::Storage::term(self, applied)
            .map_err(|e| RegistryError::Io(format!("term of {applied}: {e}")))?;
        let mut d = self.disk.borrow_mut();
        let mut snap = Snapshot::default();
        snap.set_data(d.state.clone().into());
        let m = snap.mut_metadata();
        m.index = applied;
        m.term = term;
        m.set_conf_state(conf.clone());
        d.set_snapshot(snap);
        d.purge_to(applied);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RegistryError> {
        self.disk.borrow_mut().undo.clear();
        Ok(())
    }
}

impl raft::Storage for MemStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let d = self.disk.borrow();
        Ok(RaftState::new(
            d.hard_state.clone(),
            d.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(unavailable());
        }
        let d = self.disk.borrow();
        let mut out: Vec<Entry> = d.log.range(low..high).map(|(_, e)| e.clone()).collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let d = self.disk.borrow();
        let snap = d.snapshot.get_metadata();
        if idx == snap.index {
            return Ok(snap.term);
        }
        if idx < snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        d.log.get(&idx).map(|e| e.term).ok_or_else(unavailable)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let d = self.disk.borrow();
        if d.snapshot.get_metadata().index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(d.snapshot.clone())
    }
}
