//! agora-frameworks: ready-made frameworks written against the agora SDK, and examples of how to
//! write one. Each is a pure [`Scheduler`](agora_actors::sdk::Scheduler): it reacts to offers and
//! status updates by collecting calls on the context, so it runs under the
//! [`SchedulerDriver`](agora_actors::sdk::driver::SchedulerDriver) against a real master and in
//! a simulator alike, and its tests drive it by hand.
//!
//! * [`BatchFramework`]: an elastic batch job — N identical tasks, packed into whatever offers
//!   come, retried when the cluster loses them, done when all have ended.
//! * [`ServiceFramework`]: keeps M instances of a long-running command alive, relaunching with
//!   backoff, and can be scaled.
//! * [`RunFramework`]: the one-shot job behind `agora run --instances N`, a batch job that also
//!   keeps what a CLI prints (each task's state transitions, host and sandbox).
//!
//! Running one:
//!
//! ```ignore
//! let config = BatchConfig::new("sleepers", 100, CommandInfo::shell("sleep 5"), Resources::parse("cpus:0.5;mem:64")?);
//! let batch = BatchFramework::new(config)?;
//! let (driver, exit) = SchedulerDriver::start(transport, masters, "agora", batch)?;
//! let progress = driver.send(WithScheduler::new(|b: &mut BatchFramework, _| b.progress())).await?;
//! let code = exit.await?;
//! ```

pub mod batch;
pub mod fit;
pub mod run;
pub mod service;

#[cfg(test)]
mod testutil;

pub use batch::{
    BatchConfig, BatchFramework, Progress, ShareSample, TaskPhase, TaskRecord, TaskTiming,
    Transition,
};
pub use fit::take_resources;
pub use run::{InstanceReport, RunConfig, RunFramework};
pub use service::{Instance, InstanceState, ServiceConfig, ServiceFramework, ServiceStatus};

/// A framework was configured wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameworkError {
    #[error("invalid {field}: {why}")]
    Config { field: &'static str, why: String },
}

impl FrameworkError {
    pub(crate) fn config(field: &'static str, why: impl Into<String>) -> FrameworkError {
        FrameworkError::Config {
            field,
            why: why.into(),
        }
    }
}

/// Checks what every framework config has: a name, a role, a non-empty command, task resources
/// and a usable refusal time.
pub(crate) fn check_common(
    name: &str,
    role: &str,
    command: &agora_actors::CommandInfo,
    resources: &agora_actors::Resources,
    refuse_seconds: f64,
) -> Result<(), FrameworkError> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(FrameworkError::config(
            "name",
            "must be 1 to 128 characters",
        ));
    }
    if role.is_empty() || role.len() > 64 {
        return Err(FrameworkError::config("role", "must be 1 to 64 characters"));
    }
    if command.value.trim().is_empty() {
        return Err(FrameworkError::config("command", "must not be empty"));
    }
    if resources.is_empty() {
        return Err(FrameworkError::config(
            "resources",
            "a task needs some resources (e.g. cpus:0.1;mem:32)",
        ));
    }
    agora_actors::Filters { refuse_seconds }
        .refuse_ms()
        .map_err(|why| FrameworkError::config("refuse_seconds", why))?;
    Ok(())
}

/// Checks that `prefix-<n>[.r<k>]` task ids will be valid.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), FrameworkError> {
    agora_actors::TaskId::new(format!("{prefix}-0.r1"))
        .map(|_| ())
        .map_err(|e| FrameworkError::config("task_id_prefix", e.to_string()))
}
