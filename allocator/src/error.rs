//! Errors of the allocation module's API surface.

use agora_actors::{AgentId, FrameworkId, ResourceError};

/// Why an allocator event or configuration was refused. `Allocator::handle` logs these and
/// carries on; `DrfAllocator::try_handle` returns them so callers and tests can see them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error("unknown framework {0}")]
    UnknownFramework(FrameworkId),
    #[error("invalid allocator configuration: {0}")]
    Config(String),
    #[error("resource accounting failed on agent {agent}: {source}")]
    Accounting {
        agent: AgentId,
        #[source]
        source: ResourceError,
    },
}
