//! agora-master: the master node. `core` is the pure logic (no IO, no clock); the actix actor
//! shell and the HTTP API are layered on top of it.

pub mod actor;
pub mod core;
pub mod ha;
pub mod ha_core;
pub mod http;
pub mod operator_http;
pub mod persist;
pub mod raft_actor;

pub use crate::core::{
    Action, Input, MasterConfig, MasterCore, MasterCounters, MasterError, MasterState, MasterTimer,
};
pub mod registry;
