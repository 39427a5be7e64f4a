//! The master registry: what must survive a master failover and cannot be rebuilt from agents
//! and schedulers (admitted agents, framework ids and their failover timeouts, role weights...).
//! It is a state machine replicated with raft-rs, its log, hard state and snapshots stored in
//! sled under the master's work dir. A single master is a group of one on the same code path.
//!
//! * [`state`]: the state machine and its ops (pure);
//! * [`storage`]: the [`RegistryStorage`] trait and `raft::Storage` over sled, crash-safe;
//! * [`mem`]: the same in memory for the simulator, losing unflushed writes on a crash;
//! * [`node`]: the raft driver (`Ready` loop) the master's shell ticks and steps.

pub mod mem;
pub mod node;
pub mod state;
pub mod storage;

#[cfg(test)]
mod tests;

pub use mem::{MemDisk, MemStorage};
pub use node::{DriveOutput, Leadership, RegistryConfig, RegistryNode};
pub use raft::StateRole;
pub use state::{
    check_maintenance_change, AgentRecord, FrameworkRecord, RegistryLimits, RegistryOp,
    RegistryState, MAX_LOST_TASKS,
};
pub use storage::{Identity, RegistryStorage, SledStorage};

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry storage: {0}")]
    Io(String),
    #[error("registry data is corrupt: {0}")]
    Corrupt(String),
    #[error("the registry directory belongs to cluster {stored:?}, not {given:?}")]
    OtherCluster { stored: String, given: String },
    #[error("the registry directory belongs to master id {stored}, not {given}")]
    OtherNode { stored: u64, given: u64 },
    #[error("the peer list {given} differs from the one this registry was created with ({stored}); membership changes are not supported")]
    PeersChanged { stored: String, given: String },
    #[error("bad registry configuration: {0}")]
    Config(String),
    #[error("bad --peers: {0}")]
    BadPeers(String),
    #[error("not the leader")]
    NotLeader,
    #[error("proposal refused: {0}")]
    Proposal(String),
    #[error("bad message from a peer master: {0}")]
    BadPeerMessage(String),
    #[error("the registry holds its maximum of {1} {0}")]
    Full(&'static str, usize),
    #[error("framework {0} was removed and may not come back")]
    FrameworkRemoved(String),
    #[error("agent {0} was removed and may not come back")]
    AgentRemoved(String),
    #[error("unknown agent {0}: the registry has not admitted it")]
    UnknownAgent(String),
    #[error("maintenance: {0}")]
    Maintenance(String),
}

/// `1=HOST:PORT,2=HOST:PORT` as in `--peers`.
pub fn format_peers(peers: &BTreeMap<u64, String>) -> String {
    peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `--peers 1=HOST:PORT,2=HOST:PORT,...`. Ids are positive, addresses distinct.
pub fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, RegistryError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| RegistryError::BadPeers(format!("{part:?}: expected ID=HOST:PORT")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| RegistryError::BadPeers(format!("{part:?}: the id must be a number")))?;
        let addr = addr.trim();
        if id == 0 || !addr.contains(':') {
            return Err(RegistryError::BadPeers(format!(
                "{part:?}: expected a positive id and HOST:PORT"
            )));
        }
        if out.values().any(|a| a == addr) {
            return Err(RegistryError::BadPeers(format!(
                "address {addr} listed twice"
            )));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(RegistryError::BadPeers(format!("id {id} listed twice")));
        }
    }
    if out.is_empty() || out.len() > 7 {
        return Err(RegistryError::BadPeers(format!(
            "{} masters listed; 1 to 7 are supported",
            out.len()
        )));
    }
    Ok(out)
}

/// Bridges raft-rs's slog records into `tracing` (the master's one log stream).
pub struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, r: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match r.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", r.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", r.msg()),
            slog::Level::Info => tracing::info!(target: "raft", "{}", r.msg()),
            _ => tracing::trace!(target: "raft", "{}", r.msg()),
        }
        Ok(())
    }
}
