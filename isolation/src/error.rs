//! The one error type of the containerizer API.

use std::io;
use std::path::PathBuf;

/// Why a containerizer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("invalid container config for {id:?}: {reason}")]
    InvalidConfig { id: String, reason: String },

    #[error("container {0:?} already exists")]
    AlreadyExists(String),

    #[error("unknown container {0:?}")]
    NotFound(String),

    #[error("container {0:?} is still running; kill it before destroying it")]
    StillRunning(String),

    #[error("too many containers: the limit is {limit}")]
    TooManyContainers { limit: usize },

    #[error("cannot prepare sandbox {path:?}: {source}")]
    Sandbox {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot run container {id:?} as user {user:?}: {reason}")]
    User {
        id: String,
        user: String,
        reason: String,
    },

    #[error("cannot start {program:?} in container {id:?}: {source}")]
    Spawn {
        id: String,
        program: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot signal container {id:?}: {source}")]
    Signal {
        id: String,
        #[source]
        source: io::Error,
    },

    #[error("container {id:?} was still running {waited_ms} ms after SIGKILL")]
    KillTimeout { id: String, waited_ms: u64 },

    #[error("cannot read the usage of container {id:?}: {reason}")]
    Usage { id: String, reason: String },

    #[error("lost track of container {id:?}: {reason}")]
    Lost { id: String, reason: String },

    #[error("the {containerizer} containerizer does not support {operation}")]
    Unsupported {
        containerizer: &'static str,
        operation: &'static str,
    },
}

/// Logs an error returned to the caller, so every refusal leaves a trace. Shared by every
/// containerizer.
pub(crate) fn logged<T>(
    operation: &str,
    id: &str,
    result: Result<T, IsolationError>,
) -> Result<T, IsolationError> {
    if let Err(e) = &result {
        tracing::warn!(operation, id, error = %e, "containerizer operation failed");
    }
    result
}
