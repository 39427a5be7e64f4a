//! The built-in command executor (`agora executor`): runs each task's [`CommandInfo`] as a child
//! process and reports its life as status updates. One executor can hold many tasks (a framework
//! sharing one executor per agent), or exactly one (the agent's per-task command executor, used
//! when a task names no executor).
//!
//! * [`CommandExecutor`] is the pure core: an [`Executor`] that decides what happens (spawn this,
//!   signal that, report this state) and queues process work as [`ProcAction`]s instead of doing
//!   it. The results of that work come back through [`CommandExecutor::spawned`],
//!   [`CommandExecutor::spawn_failed`] and [`CommandExecutor::exited`].
//! * The shell ([`run_command_executor`], [`serve_command_executor`]) drives it with an
//!   [`ExecutorDriver`](super::executor::ExecutorDriver), spawns each task in its own process
//!   group with the sandbox as working directory, reaps children and delivers signals.
//!
//! Task life: `TASK_STARTING` when the launch arrives, `TASK_RUNNING` once the process exists,
//! then `TASK_FINISHED` (exit 0), `TASK_FAILED` (reason `command exited`, non-zero exit or a
//! signal) or `TASK_KILLED` (after a kill: SIGTERM to the task's process group, SIGKILL after the
//! grace period). A task that cannot be spawned fails with reason `command_not_found` or
//! `spawn_failed`; a task without a command is `TASK_ERROR`.

mod shell;

pub use shell::{run_command_executor, serve_command_executor};

use super::{Executor, ExecutorCtx};
use crate::ids::{AgentId, TaskId};
use crate::messages::UpdateSource;
use crate::messages::{CommandInfo, ExecutorInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use tracing::{debug, info, warn};

/// Most tasks one command executor runs at once; more are refused with `TASK_ERROR`.
pub const DEFAULT_MAX_TASKS: usize = 1_024;
/// How many ended task ids are remembered to refuse a relaunch under the same id.
pub const FINISHED_MEMORY: usize = 4_096;
/// Longest kill grace period honoured (10 minutes); longer requests are shortened.
pub const MAX_KILL_GRACE_MS: u64 = 600_000;
/// Most environment variables a task may set.
pub const MAX_TASK_ENV: usize = 1_024;
/// Set in every task's environment.
pub const ENV_TASK_ID: &str = "AGORA_TASK_ID";

/// Tunables of the command executor.
#[derive(Debug, Clone)]
pub struct CommandExecutorConfig {
    /// Working directory of every task (and reported as the sandbox in updates).
    pub sandbox: Option<PathBuf>,
    pub max_tasks: usize,
}

impl Default for CommandExecutorConfig {
    fn default() -> Self {
        CommandExecutorConfig {
            sandbox: None,
            max_tasks: DEFAULT_MAX_TASKS,
        }
    }
}

/// Which signal to deliver to a task's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillSignal {
    /// SIGTERM: asks the task to exit.
    Term,
    /// SIGKILL: after the grace period.
    Kill,
}

/// Process work the core asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcAction {
    /// Start `command` in a new process group; report `spawned` or `spawn_failed`, then `exited`.
    Spawn {
        task_id: TaskId,
        command: CommandInfo,
        env: Vec<(String, String)>,
        cwd: Option<PathBuf>,
    },
    /// Deliver `signal` to the task's process group (nothing if it is gone).
    Signal { task_id: TaskId, signal: KillSignal },
}

/// How a task's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcExit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Waiting for the process failed (should not happen); the text says why.
    Unknown(String),
}

/// Why a spawn failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    /// The program does not exist (reported as reason `command_not_found`).
    pub not_found: bool,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spawning,
    Running { pid: u32 },
}

#[derive(Debug, Clone)]
struct CmdTask {
    phase: Phase,
    /// Set once a kill was asked; the task then ends `TASK_KILLED` however it exits.
    kill_grace_ms: Option<u64>,
    term_sent: bool,
}

/// The pure command executor. See the module docs.
#[derive(Debug)]
pub struct CommandExecutor {
    config: CommandExecutorConfig,
    tasks: BTreeMap<TaskId, CmdTask>,
    finished: VecDeque<TaskId>,
    finished_set: BTreeSet<TaskId>,
    /// Escalation timers: token → task to SIGKILL.
    timers: BTreeMap<u64, TaskId>,
    next_token: u64,
    outbox: Vec<ProcAction>,
    shutting_down: bool,
    /// Launched for a single task (the task named no executor): stop when it ends.
    one_shot: bool,
}

impl CommandExecutor {
    pub fn new(config: CommandExecutorConfig) -> Self {
        CommandExecutor {
            config,
            tasks: BTreeMap::new(),
            finished: VecDeque::new(),
            finished_set: BTreeSet::new(),
            timers: BTreeMap::new(),
            next_token: 0,
            outbox: Vec::new(),
            shutting_down: false,
            one_shot: false,
        }
    }

    /// Process work decided since the last call, in order.
    pub fn take_proc_actions(&mut self) -> Vec<ProcAction> {
        std::mem::take(&mut self.outbox)
    }

    /// Tasks whose process has not ended yet.
    pub fn active_tasks(&self) -> impl Iterator<Item = &TaskId> {
        self.tasks.keys()
    }

    /// The shell started the task's process as `pid` (also its process group).
    pub fn spawned(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, pid: u32) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            warn!(task = %task_id, pid, "spawned a task that is not known");
            return;
        };
        task.phase = Phase::Running { pid };
        let kill = task.kill_grace_ms;
        info!(task = %task_id, pid, "task running");
        let mut status = self.status(task_id, TaskState::Running);
        status.message = format!("pid {pid}");
        ctx.update(status);
        if let Some(grace_ms) = kill {
            // The kill arrived while spawning: carry it out now.
            self.terminate(ctx, task_id, grace_ms);
        }
    }

    /// The shell could not start the task's process.
    pub fn spawn_failed(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, err: SpawnError) {
        if self.tasks.remove(task_id).is_none() {
            warn!(task = %task_id, "spawn failure of a task that is not known");
            return;
        }
        warn!(task = %task_id, error = %err.message, "could not start the task");
        let reason = if err.not_found {
            "command_not_found"
        } else {
            "spawn_failed"
        };
        let status = self
            .status(task_id, TaskState::Failed)
            .with_reason(reason, err.message);
        self.end(ctx, task_id, status);
    }

    /// The task's process ended (reaped by the shell).
    pub fn exited(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, exit: ProcExit) {
        let Some(task) = self.tasks.remove(task_id) else {
            warn!(task = %task_id, ?exit, "exit of a task that is not known");
            return;
        };
        let (text, code) = match &exit {
            ProcExit::Code(c) => (format!("exited with status {c}"), Some(*c)),
            // The shell convention: 128 + signal number.
            ProcExit::Signal(s) => (format!("killed by signal {s}"), Some(128 + s)),
            ProcExit::Unknown(why) => (format!("exit status unknown: {why}"), None),
        };
        let state = if task.kill_grace_ms.is_some() {
            TaskState::Killed
        } else if exit == ProcExit::Code(0) {
            TaskState::Finished
        } else {
            TaskState::Failed
        };
        info!(task = %task_id, state = state.name(), %text, "task ended");
        let reason = if state == TaskState::Killed {
            "killed"
        } else {
            "command exited"
        };
        let mut status = self.status(task_id, state).with_reason(reason, text);
        status.exit_code = code;
        self.end(ctx, task_id, status);
    }

    // ---- helpers ----------------------------------------------------------------------------

    fn status(&self, task_id: &TaskId, state: TaskState) -> TaskStatus {
        let mut s = TaskStatus::new(task_id.clone(), state, UpdateSource::Executor);
        s.sandbox = self
            .config
            .sandbox
            .as_ref()
            .map(|p| p.display().to_string());
        s
    }

    /// Reports a task's last update, remembers its id and stops when nothing is left to do.
    fn end(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, status: TaskStatus) {
        ctx.update(status);
        self.remember_finished(task_id.clone());
        self.timers.retain(|_, t| t != task_id);
        if self.tasks.is_empty() && (self.shutting_down || self.one_shot) {
            info!("no tasks left; the command executor stops");
            ctx.stop();
        }
    }

    fn remember_finished(&mut self, task_id: TaskId) {
        if self.finished.len() >= FINISHED_MEMORY {
            if let Some(old) = self.finished.pop_front() {
                self.finished_set.remove(&old);
            }
        }
        self.finished_set.insert(task_id.clone());
        self.finished.push_back(task_id);
    }

    /// SIGTERM now, SIGKILL after `grace_ms` (at once if it is 0).
    fn terminate(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, grace_ms: u64) {
        let Some(task) = self.tasks.get_mut(task_id) else {
            return;
        };
        if task.term_sent {
            return;
        }
        task.term_sent = true;
        self.outbox.push(ProcAction::Signal {
            task_id: task_id.clone(),
            signal: KillSignal::Term,
        });
        if grace_ms == 0 {
            self.outbox.push(ProcAction::Signal {
                task_id: task_id.clone(),
                signal: KillSignal::Kill,
            });
            return;
        }
        self.next_token += 1;
        self.timers.insert(self.next_token, task_id.clone());
        ctx.set_timer(self.next_token, grace_ms);
    }

    /// Checks a launch; `Err((state, reason, message))` is reported instead of running it.
    fn check_launch(
        &self,
        task: &TaskInfo,
    ) -> Result<CommandInfo, (TaskState, &'static str, String)> {
        if self.shutting_down {
            let why = "the executor is shutting down".to_string();
            return Err((TaskState::Dropped, "executor_shutting_down", why));
        }
        if self.tasks.len() >= self.config.max_tasks {
            let why = format!("this executor already runs {} tasks", self.tasks.len());
            return Err((TaskState::Error, "too_many_tasks", why));
        }
        let Some(command) = task.command.clone() else {
            let why = "the task has no command for the command executor".to_string();
            return Err((TaskState::Error, "no_command", why));
        };
        if command.value.trim().is_empty() {
            let why = "the task's command is empty".to_string();
            return Err((TaskState::Error, "no_command", why));
        }
        check_env(&command.env).map_err(|why| (TaskState::Error, "bad_environment", why))?;
        Ok(command)
    }

    fn task_env(task_id: &TaskId, command: &CommandInfo) -> Vec<(String, String)> {
        let mut env = vec![(ENV_TASK_ID.to_string(), task_id.to_string())];
        env.extend(command.env.iter().cloned());
        env
    }
}

/// Environment variables must be passable to `execve`.
fn check_env(env: &[(String, String)]) -> Result<(), String> {
    if env.len() > MAX_TASK_ENV {
        return Err(format!(
            "{} environment variables (limit {MAX_TASK_ENV})",
            env.len()
        ));
    }
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(format!("bad environment variable name {k:?}"));
        }
        if v.contains('\0') {
            return Err(format!("environment variable {k} contains a NUL byte"));
        }
    }
    Ok(())
}

impl Executor for CommandExecutor {
    fn registered(
        &mut self,
        _ctx: &mut ExecutorCtx,
        agent_id: &AgentId,
        framework: &FrameworkInfo,
        executor: &ExecutorInfo,
    ) {
        info!(agent = %agent_id, framework = %framework.name, executor = %executor.executor_id,
            "command executor registered");
    }

    fn launch(&mut self, ctx: &mut ExecutorCtx, task: TaskInfo) {
        let id = task.task_id.clone();
        if self.tasks.contains_key(&id) || self.finished_set.contains(&id) {
            // Reporting on this id would confuse it with the first task of that name.
            warn!(task = %id, "a task with this id was already launched here; ignoring");
            return;
        }
        if task.executor.is_none() && self.tasks.is_empty() && self.finished.is_empty() {
            self.one_shot = true;
        }
        match self.check_launch(&task) {
            Err((state, reason, why)) => {
                warn!(task = %id, reason, %why, "task refused");
                let status = self.status(&id, state).with_reason(reason, why);
                ctx.update(status);
                self.remember_finished(id);
                if self.one_shot && self.tasks.is_empty() {
                    ctx.stop();
                }
            }
            Ok(command) => {
                ctx.update(self.status(&id, TaskState::Starting));
                let env = Self::task_env(&id, &command);
                self.outbox.push(ProcAction::Spawn {
                    task_id: id.clone(),
                    command,
                    env,
                    cwd: self.config.sandbox.clone(),
                });
                let task = CmdTask {
                    phase: Phase::Spawning,
                    kill_grace_ms: None,
                    term_sent: false,
                };
                self.tasks.insert(id, task);
            }
        }
    }

    fn kill(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, grace_ms: u64) {
        let grace_ms = grace_ms.min(MAX_KILL_GRACE_MS);
        let Some(task) = self.tasks.get_mut(task_id) else {
            debug!(task = %task_id, "kill of a task that is not running here");
            return;
        };
        if task.kill_grace_ms.is_some() {
            return;
        }
        task.kill_grace_ms = Some(grace_ms);
        if let Phase::Running { .. } = task.phase {
            self.terminate(ctx, task_id, grace_ms);
        }
    }

    fn shutdown(&mut self, ctx: &mut ExecutorCtx, grace_ms: u64) {
        self.shutting_down = true;
        if self.tasks.is_empty() {
            ctx.stop();
            return;
        }
        // The agent kills this executor after `grace_ms`, but the tasks live in their own
        // process groups and would survive that: escalate ourselves well before it.
        let ours = grace_ms.min(MAX_KILL_GRACE_MS) / 4 * 3;
        let ids: Vec<TaskId> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.kill(ctx, &id, ours);
        }
    }

    fn timer(&mut self, _ctx: &mut ExecutorCtx, token: u64) {
        let Some(task_id) = self.timers.remove(&token) else {
            return;
        };
        if self.tasks.contains_key(&task_id) {
            warn!(task = %task_id, "task outlived its kill grace period; sending SIGKILL");
            self.outbox.push(ProcAction::Signal {
                task_id,
                signal: KillSignal::Kill,
            });
        }
    }
}

#[cfg(test)]
mod tests;
