//! agora-agent: the agent node. `core` holds the pure logic (no IO); `detect` finds the
//! machine's resources for the shell.

pub mod actor;
pub mod checkpoint;
pub mod core;
pub mod detect;
pub mod gc;
pub mod http;
pub mod workers;

pub use self::core::{
    Action, AgentConfig, AgentCore, AgentCounters, AgentState, AgentTimer, ConfigError, Input,
    LaunchSpec,
};
pub use self::detect::{detect_resources, merge_resources};
