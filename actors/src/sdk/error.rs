//! The one error type of the SDK's public surface (drivers, executor environment, runners).

/// What can go wrong when starting or talking to a driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// A variable the agent sets for every executor is missing: the program was probably not
    /// started by an agent.
    #[error(
        "environment variable {name} is not set (the agent sets it when it launches an executor)"
    )]
    MissingEnv { name: &'static str },
    /// A variable is present but unusable.
    #[error("environment variable {name}={value:?} is invalid: {why}")]
    BadEnv {
        name: &'static str,
        value: String,
        why: String,
    },
    /// `SchedulerDriver::start` was given no master address.
    #[error("no master address given")]
    NoMasters,
    /// A standby scheduler was started without the framework id it stands by for.
    #[error(
        "a standby scheduler needs the framework id of the active instance (FrameworkInfo::id)"
    )]
    StandbyWithoutId,
    /// The driver actor is gone (it stopped, or its actor system did), so it cannot run the request.
    #[error("the driver has stopped")]
    DriverStopped,
    /// The driver ended without reporting an exit code (its actor system shut down under it).
    #[error("the driver ended without an exit code")]
    NoExitCode,
}
