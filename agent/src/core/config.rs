//! Configuration of the agent core: identity, resources, and every timing and size limit.

use agora_actors::{Attributes, Resources};

/// Why an `AgentConfig` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("command_executor_argv is empty: the agent needs a program to run command tasks")]
    NoCommandExecutor,
    #[error("{field} must be at least 1")]
    Zero { field: &'static str },
    #[error("status_retry_cap_ms ({cap_ms}) is below status_retry_base_ms ({base_ms})")]
    RetryCapBelowBase { base_ms: u64, cap_ms: u64 },
    #[error("work_dir is empty")]
    NoWorkDir,
}

/// Everything the agent core needs to know about itself. Shells build this from flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Cluster name; executors of another cluster are refused.
    pub cluster: String,
    pub hostname: String,
    /// Where executors connect: the agent's `--listen` address.
    pub endpoint: String,
    /// Everything the agent offers (detected or given).
    pub resources: Resources,
    pub attributes: Attributes,
    /// Root of sandboxes: `{work_dir}/sandboxes/{framework}/{executor}/{container}`.
    pub work_dir: String,
    /// How to start the built-in command executor, e.g. `["/usr/bin/agora", "executor"]`.
    pub command_executor_argv: Vec<String>,
    /// Interval between (re-)registration attempts while the master has not answered.
    pub register_retry_ms: u64,
    /// First status-update retry delay; doubles per attempt up to `status_retry_cap_ms`.
    pub status_retry_base_ms: u64,
    pub status_retry_cap_ms: u64,
    /// How long a launched (or disconnected) executor has to register before it is killed.
    pub executor_register_timeout_ms: u64,
    /// Grace given to executors on shutdown (SIGTERM → SIGKILL is the containerizer's job).
    pub default_kill_grace_ms: u64,
    /// Longest kill grace accepted from the master; larger requests are clamped.
    pub max_kill_grace_ms: u64,
    /// Status updates held for the master (all tasks together).
    pub max_pending_updates: usize,
    /// Tasks (live or awaiting their terminal acknowledgement) held at once.
    pub max_tasks: usize,
    /// Executors (containers) held at once.
    pub max_executors: usize,
    /// Tasks waiting for one executor to register.
    pub max_queued_tasks_per_executor: usize,
    /// Executor connections held at once (registered or still saying hello).
    pub max_executor_conns: usize,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            cluster: "agora".to_string(),
            hostname: "localhost".to_string(),
            endpoint: "127.0.0.1:5051".to_string(),
            resources: Resources::new(),
            attributes: Attributes::new(),
            work_dir: "/var/lib/agora".to_string(),
            command_executor_argv: vec!["agora".to_string(), "executor".to_string()],
            register_retry_ms: 1_000,
            status_retry_base_ms: 500,
            status_retry_cap_ms: 10_000,
            executor_register_timeout_ms: 30_000,
            default_kill_grace_ms: 3_000,
            max_kill_grace_ms: 600_000,
            max_pending_updates: 10_000,
            max_tasks: 10_000,
            max_executors: 1_000,
            max_queued_tasks_per_executor: 1_000,
            max_executor_conns: 2_048,
        }
    }
}

impl AgentConfig {
    /// Checks what the core cannot repair by itself. Shells call this before starting; the core
    /// also copes with an unchecked config (it clamps zero intervals) so it never panics.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.command_executor_argv.is_empty() {
            return Err(ConfigError::NoCommandExecutor);
        }
        if self.work_dir.is_empty() {
            return Err(ConfigError::NoWorkDir);
        }
        for (field, v) in [
            ("register_retry_ms", self.register_retry_ms),
            ("status_retry_base_ms", self.status_retry_base_ms),
            (
                "executor_register_timeout_ms",
                self.executor_register_timeout_ms,
            ),
            ("max_pending_updates", self.max_pending_updates as u64),
            ("max_tasks", self.max_tasks as u64),
            ("max_executors", self.max_executors as u64),
            (
                "max_queued_tasks_per_executor",
                self.max_queued_tasks_per_executor as u64,
            ),
            ("max_executor_conns", self.max_executor_conns as u64),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if self.status_retry_cap_ms < self.status_retry_base_ms {
            return Err(ConfigError::RetryCapBelowBase {
                base_ms: self.status_retry_base_ms,
                cap_ms: self.status_retry_cap_ms,
            });
        }
        Ok(())
    }

    /// A copy where values that would make the core spin or hold nothing are raised to 1.
    pub(crate) fn sanitized(mut self) -> Self {
        self.register_retry_ms = self.register_retry_ms.max(1);
        self.status_retry_base_ms = self.status_retry_base_ms.max(1);
        self.status_retry_cap_ms = self.status_retry_cap_ms.max(self.status_retry_base_ms);
        self.executor_register_timeout_ms = self.executor_register_timeout_ms.max(1);
        self.max_pending_updates = self.max_pending_updates.max(1);
        self.max_tasks = self.max_tasks.max(1);
        self.max_executors = self.max_executors.max(1);
        self.max_queued_tasks_per_executor = self.max_queued_tasks_per_executor.max(1);
        self.max_executor_conns = self.max_executor_conns.max(1);
        self.default_kill_grace_ms = self.default_kill_grace_ms.min(self.max_kill_grace_ms);
        self
    }

    /// `{work_dir}/sandboxes/{framework}/{executor}/{container}`. The ids were validated (safe
    /// alphabet, never `..`), so the path cannot escape the work dir.
    pub fn sandbox_path(&self, framework: &str, executor: &str, container: &str) -> String {
        format!(
            "{}/sandboxes/{framework}/{executor}/{container}",
            self.work_dir.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert_eq!(AgentConfig::default().validate(), Ok(()));
        let c = AgentConfig {
            command_executor_argv: vec![],
            ..AgentConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::NoCommandExecutor));
        let c = AgentConfig {
            register_retry_ms: 0,
            ..AgentConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::Zero {
                field: "register_retry_ms"
            })
        );
        let c = AgentConfig {
            status_retry_cap_ms: 10,
            ..AgentConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RetryCapBelowBase { .. })
        ));
        let s = c.sanitized();
        assert_eq!(s.status_retry_cap_ms, s.status_retry_base_ms);
    }

    #[test]
    fn sandbox_path_ignores_trailing_slash() {
        let c = AgentConfig {
            work_dir: "/w/".into(),
            ..AgentConfig::default()
        };
        assert_eq!(c.sandbox_path("f", "e", "c"), "/w/sandboxes/f/e/c");
    }
}
