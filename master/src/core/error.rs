//! Why the master refused a message. Every refusal becomes a `Message::Error` to the sender, a
//! warn log line and a bump of `invalid_messages`; fatal ones also close the connection.

use agora_actors::{AgentId, ErrorCode, FrameworkId, NodeKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterError {
    #[error("{kind} is not accepted from a {peer:?} connection")]
    WrongPeer { kind: &'static str, peer: NodeKind },
    #[error("{kind} before subscribe: subscribe first")]
    NotSubscribed { kind: &'static str },
    #[error("{kind} from an agent that has not registered: register first")]
    AgentNotRegistered { kind: &'static str },
    #[error("this connection is subscribed as framework {conn_framework}, not {claimed}")]
    FrameworkMismatch {
        conn_framework: FrameworkId,
        claimed: FrameworkId,
    },
    #[error("this connection is already subscribed as framework {0}")]
    AlreadySubscribed(FrameworkId),
    #[error("this connection is already registered as agent {0}")]
    AlreadyRegistered(AgentId),
    #[error("invalid agent registration: {0}")]
    InvalidAgent(String),
    #[error("invalid framework: {0}")]
    InvalidFramework(String),
    #[error(
        "framework id {id} belongs to another framework (registered as name {name:?}, user \
         {user:?}); subscribe without an id to get a new one"
    )]
    FrameworkIdTaken {
        id: FrameworkId,
        name: String,
        user: String,
    },
    #[error("framework {0} was removed; subscribe without an id to start a new one")]
    FrameworkRemoved(FrameworkId),
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    #[error(
        "agent {0} is down for maintenance; it may re-register once an operator brings it up \
         (agora maintenance up {0})"
    )]
    AgentDown(AgentId),
    #[error(
        "agent {0} was removed from the cluster (it did not come back in time after a master \
         failover) and its tasks were reported lost; start it with a fresh --work-dir to \
         register as a new agent"
    )]
    AgentRemoved(AgentId),
    #[error("unknown or no longer valid offers: {0}")]
    UnknownOffers(String),
    #[error("invalid filters: {0}")]
    InvalidFilters(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("refused: {0}")]
    LimitReached(String),
    #[error("hello from cluster {got:?} (protocol {version}), this is cluster {want:?}")]
    ClusterMismatch {
        got: String,
        want: String,
        version: u32,
    },
}

impl MasterError {
    /// The category on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            MasterError::NotSubscribed { .. } | MasterError::AgentNotRegistered { .. } => {
                ErrorCode::NotSubscribed
            }
            MasterError::FrameworkMismatch { .. }
            | MasterError::FrameworkIdTaken { .. }
            | MasterError::FrameworkRemoved(_)
            | MasterError::AgentDown(_)
            | MasterError::AgentRemoved(_) => ErrorCode::Forbidden,
            MasterError::UnknownAgent(_) | MasterError::UnknownOffers(_) => ErrorCode::NotFound,
            MasterError::LimitReached(_) => ErrorCode::TooLarge,
            MasterError::ClusterMismatch { .. } => ErrorCode::ClusterMismatch,
            MasterError::WrongPeer { .. }
            | MasterError::AlreadySubscribed(_)
            | MasterError::AlreadyRegistered(_)
            | MasterError::InvalidAgent(_)
            | MasterError::InvalidFramework(_)
            | MasterError::InvalidFilters(_)
            | MasterError::BadRequest(_) => ErrorCode::BadRequest,
        }
    }

    /// Fatal refusals end the connection: the peer cannot make progress on it (bad
    /// registration or subscription, a stolen framework id, a full master).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            MasterError::InvalidAgent(_)
                | MasterError::InvalidFramework(_)
                | MasterError::FrameworkIdTaken { .. }
                | MasterError::FrameworkRemoved(_)
                | MasterError::AgentDown(_)
                | MasterError::AgentRemoved(_)
                | MasterError::LimitReached(_)
                | MasterError::ClusterMismatch { .. }
        )
    }
}
