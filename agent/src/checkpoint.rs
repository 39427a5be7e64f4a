//! The agent's checkpoint in sled, under its work dir: everything needed to recover running
//! executors after the agent process is killed (`kill -9`) and started again.
//!
//! One record, rewritten (and fsynced) whenever the core's state or the set of containers
//! changed, *before* the actions of the step are performed: an update acknowledged to an
//! executor is on disk first.

use crate::core::CoreCheckpoint;
use agora_isolation::ContainerCheckpoint;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const RECORD_KEY: &[u8] = b"agent";
/// Bumped when the record's layout changes incompatibly.
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot open the agent checkpoint {path:?}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("cannot read the agent checkpoint: {0}")]
    Read(String),
    #[error("cannot write the agent checkpoint: {0}")]
    Write(String),
    #[error("the work dir belongs to an agent of cluster {found:?}, not {expected:?}; use another --work-dir or remove {path:?}")]
    OtherCluster {
        found: String,
        expected: String,
        path: PathBuf,
    },
}

/// What is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub format_version: u32,
    pub cluster: String,
    /// `/proc/sys/kernel/random/boot_id` when written: a different one means the host
    /// rebooted and no container of the record can still be running.
    pub boot_id: String,
    pub containerizer: String,
    pub core: CoreCheckpoint,
    pub containers: Vec<ContainerCheckpoint>,
}

pub struct CheckpointStore {
    db: sled::Db,
    path: PathBuf,
    last_saved: Option<Vec<u8>>,
}

impl CheckpointStore {
    /// Opens (or creates) `<work_dir>/checkpoint`.
    pub fn open(work_dir: &Path) -> Result<Self, CheckpointError> {
        let path = work_dir.join("checkpoint");
        let db = sled::open(&path).map_err(|e| CheckpointError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(CheckpointStore {
            db,
            path,
            last_saved: None,
        })
    }

    /// The stored record, if any, after checking it belongs to `cluster`.
    pub fn load(&mut self, cluster: &str) -> Result<Option<AgentRecord>, CheckpointError> {
        let Some(bytes) = self
            .db
            .get(RECORD_KEY)
            .map_err(|e| CheckpointError::Read(e.to_string()))?
        else {
            return Ok(None);
        };
        let record: AgentRecord = agora_actors::codec::decode_value(&bytes)
            .map_err(|e| CheckpointError::Read(e.to_string()))?;
        if record.format_version != FORMAT_VERSION {
            return Err(CheckpointError::Read(format!(
                "format version {} (this agent writes {FORMAT_VERSION})",
                record.format_version
            )));
        }
        if record.cluster != cluster {
            return Err(CheckpointError::OtherCluster {
                found: record.cluster,
                expected: cluster.to_string(),
                path: self.path.clone(),
            });
        }
        self.last_saved = Some(bytes.to_vec());
        Ok(Some(record))
    }

    /// Writes `record` durably unless it equals what was saved last.
    pub fn save(&mut self, record: &AgentRecord) -> Result<(), CheckpointError> {
        let bytes = agora_actors::codec::encode_value(record)
            .map_err(|e| CheckpointError::Write(e.to_string()))?;
        if self.last_saved.as_deref() == Some(bytes.as_slice()) {
            return Ok(());
        }
        self.db
            .insert(RECORD_KEY, bytes.as_slice())
            .map_err(|e| CheckpointError::Write(e.to_string()))?;
        self.db
            .flush()
            .map_err(|e| CheckpointError::Write(e.to_string()))?;
        self.last_saved = Some(bytes);
        Ok(())
    }
}

/// This boot's id (empty if the kernel does not say).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn new_record(cluster: &str, containerizer: &str) -> AgentRecord {
    AgentRecord {
        format_version: FORMAT_VERSION,
        cluster: cluster.to_string(),
        boot_id: boot_id(),
        containerizer: containerizer.to_string(),
        core: CoreCheckpoint {
            agent_id: None,
            frameworks: vec![],
            executors: vec![],
            tasks: vec![],
            pending_updates: vec![],
        },
        containers: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_refuses_another_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = CheckpointStore::open(dir.path()).expect("open");
        assert!(store.load("c1").expect("load").is_none());
        let record = new_record("c1", "posix");
        store.save(&record).expect("save");
        drop(store);
        let mut store = CheckpointStore::open(dir.path()).expect("reopen");
        assert_eq!(store.load("c1").expect("load"), Some(record));
        let err = store.load("c2").expect_err("other cluster");
        assert!(err.to_string().contains("cluster \"c1\""), "{err}");
    }
}
