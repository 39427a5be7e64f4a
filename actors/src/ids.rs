//! Typed identifiers. Every id is a short printable string on the wire (like Mesos's ids), wrapped
//! in its own type so an agent id can never be passed where a framework id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id accepted from the outside; longer ones are rejected, not truncated.
pub const MAX_ID_LEN: usize = 255;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} id is empty")]
    Empty { kind: &'static str },
    #[error("{kind} id is {len} bytes long (limit {MAX_ID_LEN})")]
    TooLong { kind: &'static str, len: usize },
    #[error("{kind} id {id:?} contains {bad:?}; allowed: letters, digits and -_.:@")]
    BadChar {
        kind: &'static str,
        id: String,
        bad: char,
    },
}

fn check_id(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    // Ids end up in paths (sandboxes, cgroups) and logs: keep them to a safe alphabet.
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:@".contains(*c)))
    {
        return Err(IdError::BadChar {
            kind,
            id: s.to_string(),
            bad,
        });
    }
    if s == "." || s == ".." {
        return Err(IdError::BadChar {
            kind,
            id: s.to_string(),
            bad: '.',
        });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Builds the id after checking it (use for anything that came from outside).
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id($kind, &s)?;
                Ok(Self(s))
            }
            /// Re-checks an id that arrived through deserialization.
            pub fn validate(&self) -> Result<(), IdError> {
                check_id($kind, &self.0)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", $kind, self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

string_id!(
    /// An agent, assigned by the master when the agent first registers.
    AgentId, "agent"
);
string_id!(
    /// A framework, assigned by the master on first subscribe (or chosen by a re-subscriber).
    FrameworkId, "framework"
);
string_id!(
    /// An offer, assigned by the master; valid until accepted, declined, rescinded or timed out.
    OfferId, "offer"
);
string_id!(
    /// A task, chosen by its framework; unique within the framework.
    TaskId, "task"
);
string_id!(
    /// An executor, chosen by its framework; unique within the framework on one agent.
    ExecutorId, "executor"
);
string_id!(
    /// A container on an agent, chosen by the agent.
    ContainerId, "container"
);

/// Produces ids `prefix-<epoch>-<n>` in order. `epoch` distinguishes incarnations of the issuing
/// node (e.g. its start time), so ids stay unique across restarts without a clock in the core.
#[derive(Debug, Clone)]
pub struct IdGen {
    prefix: String,
    epoch: u64,
    next: u64,
}

impl IdGen {
    pub fn new(prefix: &str, epoch: u64) -> Self {
        Self {
            prefix: prefix.to_string(),
            epoch,
            next: 0,
        }
    }
    fn next_raw(&mut self) -> String {
        self.next += 1;
        format!("{}-{}-{}", self.prefix, self.epoch, self.next)
    }
    pub fn agent(&mut self) -> AgentId {
        AgentId(self.next_raw())
    }
    pub fn framework(&mut self) -> FrameworkId {
        FrameworkId(self.next_raw())
    }
    pub fn offer(&mut self) -> OfferId {
        OfferId(self.next_raw())
    }
    pub fn container(&mut self) -> ContainerId {
        ContainerId(self.next_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_rejects_bad_ones() {
        assert!(TaskId::new("task-1.a:b@c_d").is_ok());
        assert_eq!(TaskId::new(""), Err(IdError::Empty { kind: "task" }));
        assert!(matches!(
            TaskId::new("a/b"),
            Err(IdError::BadChar { bad: '/', .. })
        ));
        assert!(matches!(TaskId::new(".."), Err(IdError::BadChar { .. })));
        assert!(matches!(
            AgentId::new("x".repeat(256)),
            Err(IdError::TooLong { len: 256, .. })
        ));
    }

    #[test]
    fn generator_is_ordered_and_unique() {
        let mut g = IdGen::new("o", 7);
        let a = g.offer();
        let b = g.offer();
        assert_ne!(a, b);
        assert_eq!(a.as_str(), "o-7-1");
    }
}
