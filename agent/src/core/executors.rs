//! Executors and their containers: what to launch (argv, env, sandbox), the register timeout,
//! and what happens to tasks when a container fails to start or exits.

use super::tasks::RunTaskError;
use super::{Action, AgentConfig, AgentCore, AgentTimer, LaunchSpec, TaskEnd};
use agora_actors::transport::ConnId;
use agora_actors::{
    AgentId, CommandInfo, ContainerId, ExecutorId, ExecutorInfo, FrameworkId, Resources, TaskId,
    TaskInfo, TaskState, Time,
};
use std::collections::BTreeSet;

/// Where an executor is in its conversation with the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecPhase {
    /// Container asked for; the executor has not registered yet.
    Launching,
    Registered {
        conn: ConnId,
    },
    /// Was registered, its connection dropped; it may register again before the timeout.
    Disconnected,
}

/// Why the agent asked for the container to be killed; decides how its tasks end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Termination {
    /// `ShutdownFramework`: tasks end KILLED.
    Framework,
    /// Never registered (or did not come back) in time: tasks end FAILED.
    RegisterTimeout,
    /// Nothing left to run (its queued tasks were killed before it registered).
    Idle,
}

#[derive(Debug, Clone)]
pub(crate) struct ExecutorRecord {
    pub info: ExecutorInfo,
    pub container_id: ContainerId,
    pub sandbox: String,
    pub pid: Option<i32>,
    pub phase: ExecPhase,
    /// While unregistered: when the executor must have registered.
    pub register_deadline: Option<Time>,
    /// Tasks waiting for registration, in arrival order.
    pub queued: Vec<TaskId>,
    /// Tasks handed to the executor (live, or terminal awaiting the master's ack).
    pub tasks: BTreeSet<TaskId>,
    pub termination: Option<Termination>,
}

/// How a container ended.
#[derive(Debug, Clone)]
pub(crate) enum Exit {
    LaunchFailed {
        error: String,
    },
    Exited {
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: Option<String>,
        message: String,
    },
}

impl Exit {
    fn describe(&self) -> String {
        match self {
            Exit::LaunchFailed { error } => format!("failed to launch: {error}"),
            Exit::Exited {
                exit_code,
                signal,
                message,
                ..
            } => {
                let how = match (exit_code, signal) {
                    (_, Some(s)) => format!("terminated by signal {s}"),
                    (Some(c), None) => format!("exited with code {c}"),
                    (None, None) => "exited with unknown status".to_string(),
                };
                if message.is_empty() {
                    how
                } else {
                    format!("{how}: {message}")
                }
            }
        }
    }

    fn exit_code(&self) -> Option<i32> {
        match self {
            Exit::Exited { exit_code, .. } => *exit_code,
            Exit::LaunchFailed { .. } => None,
        }
    }
}

/// The executor a task runs in: its own, or a command executor made for it alone.
pub(crate) fn executor_info_for(task: &TaskInfo) -> Result<ExecutorInfo, RunTaskError> {
    if let Some(info) = &task.executor {
        info.executor_id.validate()?;
        if let Some(cmd) = &info.command {
            check_command(cmd)?;
        }
        return Ok(info.clone());
    }
    let cmd = task.command.as_ref().ok_or(RunTaskError::MissingCommand)?;
    check_command(cmd)?;
    Ok(ExecutorInfo {
        executor_id: ExecutorId::new(task.task_id.as_str())?,
        name: format!("command executor for task {}", task.task_id),
        command: None,
        resources: Resources::new(),
    })
}

fn check_command(cmd: &CommandInfo) -> Result<(), RunTaskError> {
    let empty = if cmd.shell {
        cmd.value.trim().is_empty()
    } else {
        cmd.value.is_empty() && cmd.arguments.first().is_none_or(|a| a.is_empty())
    };
    if empty {
        Err(RunTaskError::EmptyCommand)
    } else {
        Ok(())
    }
}

/// argv of the executor process: the built-in command executor, or the custom command.
pub(crate) fn executor_argv(config: &AgentConfig, info: &ExecutorInfo) -> Vec<String> {
    match &info.command {
        None => config.command_executor_argv.clone(),
        Some(c) if c.shell => vec!["/bin/sh".into(), "-c".into(), c.value.clone()],
        Some(c) if c.arguments.is_empty() => vec![c.value.clone()],
        Some(c) => c.arguments.clone(),
    }
}

/// Environment names the agent sets for every executor; a framework cannot override them.
pub const RESERVED_ENV: [&str; 8] = [
    "AGORA_AGENT_ENDPOINT",
    "AGORA_FRAMEWORK_ID",
    "AGORA_EXECUTOR_ID",
    "AGORA_CONTAINER_ID",
    "AGORA_SANDBOX",
    "AGORA_CLUSTER",
    "AGORA_SHUTDOWN_GRACE_MS",
    "AGORA_AGENT_ID",
];

pub(crate) struct EnvInput<'a> {
    pub agent_id: Option<&'a AgentId>,
    pub framework_id: &'a FrameworkId,
    pub executor: &'a ExecutorInfo,
    pub container_id: &'a ContainerId,
    pub sandbox: &'a str,
}

/// What the executor driver needs to find and talk to its agent, then the framework's own env.
pub(crate) fn executor_env(config: &AgentConfig, x: &EnvInput<'_>) -> Vec<(String, String)> {
    let values = [
        config.endpoint.clone(),
        x.framework_id.to_string(),
        x.executor.executor_id.to_string(),
        x.container_id.to_string(),
        x.sandbox.to_string(),
        config.cluster.clone(),
        config.default_kill_grace_ms.to_string(),
        x.agent_id.map(|a| a.to_string()).unwrap_or_default(),
    ];
    let mut env: Vec<(String, String)> = RESERVED_ENV
        .iter()
        .zip(values)
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Some(cmd) = &x.executor.command {
        env.extend(
            cmd.env
                .iter()
                .filter(|(k, _)| !RESERVED_ENV.contains(&k.as_str()))
                .cloned(),
        );
    }
    env
}

impl AgentCore {
    /// Starts a container for a new executor whose first task is `first_task`; the task waits
    /// in the executor's queue until it registers.
    pub(super) fn launch_executor(
        &mut self,
        now: Time,
        fw: &FrameworkId,
        info: ExecutorInfo,
        resources: Resources,
        first_task: TaskId,
        out: &mut Vec<Action>,
    ) {
        let container_id = self.container_ids.container();
        let sandbox = self.config.sandbox_path(
            fw.as_str(),
            info.executor_id.as_str(),
            container_id.as_str(),
        );
        let env = executor_env(
            &self.config,
            &EnvInput {
                agent_id: self.reg.agent_id.as_ref(),
                framework_id: fw,
                executor: &info,
                container_id: &container_id,
                sandbox: &sandbox,
            },
        );
        let spec = LaunchSpec {
            container_id: container_id.clone(),
            framework_id: fw.clone(),
            executor_id: info.executor_id.clone(),
            sandbox: sandbox.clone(),
            argv: executor_argv(&self.config, &info),
            env,
            resources,
        };
        tracing::info!(framework = %fw, executor = %info.executor_id, container = %container_id,
            argv = ?spec.argv, "launching executor");
        let deadline = now.plus_ms(self.config.executor_register_timeout_ms);
        out.push(Action::Launch(spec));
        out.push(Action::SetTimer {
            timer: AgentTimer::ExecutorRegisterTimeout {
                container_id: container_id.clone(),
            },
            at: deadline,
        });
        let key = (fw.clone(), info.executor_id.clone());
        self.containers.insert(container_id.clone(), key.clone());
        let record = ExecutorRecord {
            info,
            container_id,
            sandbox,
            pid: None,
            phase: ExecPhase::Launching,
            register_deadline: Some(deadline),
            queued: vec![first_task],
            tasks: BTreeSet::new(),
            termination: None,
        };
        self.executors.insert(key, record);
    }

    pub(super) fn executor_register_timeout(
        &mut self,
        now: Time,
        container_id: ContainerId,
        out: &mut Vec<Action>,
    ) {
        let Some(key) = self.containers.get(&container_id).cloned() else {
            return; // the container is gone already
        };
        let Some(exec) = self.executors.get_mut(&key) else {
            return;
        };
        let due = exec.register_deadline.is_some_and(|d| d <= now);
        let registered = matches!(exec.phase, ExecPhase::Registered { .. });
        if !due || registered || exec.termination.is_some() {
            return; // stale timer: it registered, or a newer deadline applies
        }
        exec.termination = Some(Termination::RegisterTimeout);
        exec.register_deadline = None;
        let queued = std::mem::take(&mut exec.queued);
        self.counters.executor_register_timeouts += 1;
        let timeout_ms = self.config.executor_register_timeout_ms;
        tracing::warn!(framework = %key.0, executor = %key.1, container = %container_id,
            timeout_ms, "executor did not register in time; killing its container");
        out.push(Action::Kill {
            container_id,
            grace_ms: self.config.default_kill_grace_ms,
        });
        let message = format!("executor {} did not register within {timeout_ms} ms", key.1);
        for task_id in queued {
            let end = TaskEnd::new(TaskState::Failed, "executor_register_timeout", &message);
            self.end_task(now, &(key.0.clone(), task_id), end, out);
        }
    }

    pub(super) fn container_launched(
        &mut self,
        container_id: ContainerId,
        pid: i32,
        sandbox: String,
        out: &mut Vec<Action>,
    ) {
        let exec = self
            .containers
            .get(&container_id)
            .and_then(|k| self.executors.get_mut(k));
        let Some(exec) = exec else {
            // Nothing here will ever account for it: do not let it run unsupervised.
            tracing::warn!(container = %container_id, pid, "unknown container launched; killing it");
            self.counters.invalid_messages += 1;
            out.push(Action::Kill {
                container_id,
                grace_ms: 0,
            });
            return;
        };
        exec.pid = Some(pid);
        if !sandbox.is_empty() {
            exec.sandbox = sandbox;
        }
        self.counters.containers_launched += 1;
        tracing::info!(container = %container_id, pid, "container running");
    }

    pub(super) fn container_launch_failed(
        &mut self,
        now: Time,
        container_id: ContainerId,
        error: String,
        out: &mut Vec<Action>,
    ) {
        self.counters.container_launch_failures += 1;
        tracing::warn!(container = %container_id, %error, "container failed to launch");
        self.terminate_executor(now, container_id, Exit::LaunchFailed { error }, out);
    }

    pub(super) fn container_exited(
        &mut self,
        now: Time,
        container_id: ContainerId,
        exit: Exit,
        out: &mut Vec<Action>,
    ) {
        self.counters.containers_exited += 1;
        tracing::info!(container = %container_id, exit = %exit.describe(), "container exited");
        self.terminate_executor(now, container_id, exit, out);
    }

    /// The container is gone: every task of it that has not ended gets a terminal update, the
    /// executor's resources are released, its connection (if any) is closed.
    fn terminate_executor(
        &mut self,
        now: Time,
        container_id: ContainerId,
        exit: Exit,
        out: &mut Vec<Action>,
    ) {
        let Some(key) = self.containers.get(&container_id).cloned() else {
            tracing::debug!(container = %container_id, "exit of an unknown container ignored");
            return;
        };
        let Some(exec) = self.executors.get(&key) else {
            self.containers.remove(&container_id);
            return;
        };
        let ends: Vec<(TaskId, TaskEnd)> = exec
            .queued
            .iter()
            .chain(exec.tasks.iter())
            .map(|t| {
                let kill_requested = self
                    .tasks
                    .get(&(key.0.clone(), t.clone()))
                    .is_some_and(|r| r.kill_grace_ms.is_some());
                (t.clone(), task_end(exec.termination, kill_requested, &exit))
            })
            .collect();
        // Ended while the executor still exists, so the updates carry its sandbox.
        for (task_id, end) in ends {
            self.end_task(now, &(key.0.clone(), task_id), end, out);
        }
        self.containers.remove(&container_id);
        if let Some(exec) = self.executors.remove(&key) {
            if let ExecPhase::Registered { conn } = exec.phase {
                self.conns.remove(&conn);
                out.push(Action::CloseExecutor { conn });
            }
        }
        self.gc_framework(&key.0);
    }
}

/// Container exit reasons the shell gives when a container vanished with the machine or could
/// not be found after an agent restart: the task is lost (the cluster's fault, worth a retry),
/// not failed (found by the simulator: a machine crash failed every task on it for good).
pub const REASON_HOST_REBOOTED: &str = "agent host rebooted";
pub const REASON_CONTAINER_LOST: &str = "container lost";

/// How a task that had not ended ends when its container is gone.
fn task_end(termination: Option<Termination>, kill_requested: bool, exit: &Exit) -> TaskEnd {
    let how = exit.describe();
    let mut end = match (termination, exit) {
        (Some(Termination::Framework | Termination::Idle), _) => TaskEnd::new(
            TaskState::Killed,
            "killed",
            format!("executor shut down; {how}"),
        ),
        _ if kill_requested => TaskEnd::new(TaskState::Killed, "killed", format!("killed; {how}")),
        (Some(Termination::RegisterTimeout), _) => TaskEnd::new(
            TaskState::Failed,
            "executor_register_timeout",
            format!("executor did not register in time; {how}"),
        ),
        (None, Exit::LaunchFailed { error }) => {
            TaskEnd::new(TaskState::Failed, "container_launch_failed", error.clone())
        }
        (None, Exit::Exited { reason: Some(r), .. })
            if r == REASON_HOST_REBOOTED || r == REASON_CONTAINER_LOST =>
        {
            TaskEnd::new(TaskState::Lost, r.as_str(), format!("executor {how}"))
        }
        (None, Exit::Exited { reason, .. }) => TaskEnd::new(
            TaskState::Failed,
            reason.as_deref().unwrap_or("executor_terminated"),
            format!("executor {how}"),
        ),
    };
    end.exit_code = exit.exit_code();
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_for_humans() {
        let e = Exit::Exited {
            exit_code: Some(3),
            signal: None,
            reason: None,
            message: String::new(),
        };
        assert_eq!(e.describe(), "exited with code 3");
        let e = Exit::Exited {
            exit_code: None,
            signal: Some(9),
            reason: Some("memory limit".into()),
            message: "oom".into(),
        };
        assert_eq!(e.describe(), "terminated by signal 9: oom");
        let end = task_end(None, false, &e);
        assert_eq!(
            (end.state, end.reason.as_str()),
            (TaskState::Failed, "memory limit")
        );
        let end = task_end(None, true, &e);
        assert_eq!(end.state, TaskState::Killed);
        let gone = Exit::Exited {
            exit_code: None,
            signal: None,
            reason: Some(REASON_HOST_REBOOTED.into()),
            message: "the host rebooted".into(),
        };
        assert_eq!(task_end(None, false, &gone).state, TaskState::Lost);
    }

    #[test]
    fn commands_must_not_be_empty() {
        assert!(check_command(&CommandInfo::shell("  ")).is_err());
        assert!(check_command(&CommandInfo::argv(&[])).is_err());
        assert!(check_command(&CommandInfo::shell("true")).is_ok());
        assert!(check_command(&CommandInfo::argv(&["/bin/true".to_string()])).is_ok());
    }
}
