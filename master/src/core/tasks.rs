//! Task life after launch: status updates and their acknowledgements, kills, reconciliation,
//! and the framework <-> executor message relay.

use super::model::{Binding, CompletedTask};
use super::{reasons, Action, MasterCore, MasterError, Out};
use agora_actors::transport::ConnId;
use agora_actors::{
    AgentId, ExecutorId, FrameworkId, Message, TaskId, TaskReport, TaskState, TaskStatus, Time,
};
use tracing::{debug, info, warn};

impl MasterCore {
    /// Moves an active task to the completed ring in a terminal `state`. `recover`: give its
    /// resources (and its executor's, if it was the executor's last task) back to the allocator.
    /// Returns false if the task was not active, so resources are recovered at most once.
    pub(crate) fn finish_task(
        &mut self,
        now: Time,
        key: &(FrameworkId, TaskId),
        state: TaskState,
        reason: Option<String>,
        recover: bool,
        out: &mut Out,
    ) -> bool {
        let Some(task) = self.tasks.remove(key) else {
            return false;
        };
        if let Some(f) = self.frameworks.get_mut(&key.0) {
            f.tasks.remove(&key.1);
        }
        let mut freed = vec![task.info.resources.clone()];
        if let Some(agent) = self.agents.get_mut(&task.agent_id) {
            agent.tasks.remove(key);
            let exec_key = (key.0.clone(), task.executor_id.clone());
            if let Some(exec) = agent.executors.get_mut(&exec_key) {
                exec.tasks.remove(&key.1);
                if exec.tasks.is_empty() {
                    freed.extend(agent.executors.remove(&exec_key).map(|e| e.resources));
                }
            }
        }
        self.count_terminal(state);
        info!(framework = %key.0, task = %key.1, state = state.name(), "task finished");
        if recover {
            let freed = super::state::sum("freed", freed.iter());
            self.recover(&key.0, &task.agent_id, freed, None, out);
        }
        self.completed.push_back(CompletedTask {
            framework_id: key.0.clone(),
            agent_id: task.agent_id,
            task_id: key.1.clone(),
            name: task.info.name,
            state,
            reason,
            resources: task.info.resources,
            finished_at: now,
        });
        while self.completed.len() > self.config.max_completed_tasks {
            self.completed.pop_front();
        }
        true
    }

    pub(crate) fn count_terminal(&mut self, state: TaskState) {
        *self
            .counters
            .tasks_terminal
            .entry(state.name().to_string())
            .or_insert(0) += 1;
    }

    pub(crate) fn kill_message(&self, fw: &FrameworkId, task: &TaskId) -> Message {
        Message::KillTask {
            framework_id: fw.clone(),
            task_id: task.clone(),
            grace_ms: self.config.default_kill_grace_ms,
        }
    }

    /// An agent reports a task state change. The master updates its books and forwards the
    /// update to the scheduler, whose acknowledgement travels back to the agent; the agent
    /// retries until then, so an update the scheduler cannot get now is simply dropped.
    pub(crate) fn on_status_update(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: FrameworkId,
        mut status: TaskStatus,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        let Some(Binding::Agent(agent_id)) = self.conns.get(&conn).map(|c| c.binding.clone())
        else {
            return Err(MasterError::AgentNotRegistered {
                kind: "status_update",
            });
        };
        fw.validate()
            .map_err(|e| MasterError::BadRequest(e.to_string()))?;
        status
            .task_id
            .validate()
            .map_err(|e| MasterError::BadRequest(e.to_string()))?;
        if status.agent_id.as_ref().is_some_and(|a| a != &agent_id) {
            warn!(agent = %agent_id, claimed = ?status.agent_id, "status update names another agent; correcting");
        }
        // Schedulers acknowledge through the agent id on the update: make sure it is right.
        status.agent_id = Some(agent_id.clone());
        self.tag_preempted(&fw, &mut status);
        self.counters.status_updates += 1;
        let key = (fw.clone(), status.task_id.clone());
        let lost_earlier = self.was_lost_with_agent(&agent_id, &key);
        if lost_earlier {
            // The framework was told TASK_LOST when this agent was removed; a second terminal
            // update (or a resurrection) would contradict it.
            info!(agent = %agent_id, framework = %fw, task = %key.1, state = status.state.name(),
                "dropping an update for a task declared lost with its removed agent");
        } else {
            self.apply_status(now, &agent_id, &fw, &status, out);
        }
        if lost_earlier || self.removed_frameworks.contains(&fw) {
            // Nobody will ever acknowledge it; do so here so the agent stops retrying.
            if let Some(uuid) = status.uuid {
                let msg = Message::StatusUpdateAck {
                    framework_id: fw,
                    task_id: status.task_id,
                    uuid,
                };
                out.push(Action::Send { conn, msg });
            }
            return Ok(());
        }
        self.send_to_framework(&fw, Message::Update { status }, out);
        Ok(())
    }

    fn apply_status(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        fw: &FrameworkId,
        status: &TaskStatus,
        out: &mut Out,
    ) {
        let key = (fw.clone(), status.task_id.clone());
        match self.tasks.get_mut(&key) {
            Some(task) if &task.agent_id == agent_id => {
                if status.state.is_terminal() {
                    self.finish_task(now, &key, status.state, status.reason.clone(), true, out);
                } else {
                    task.state = status.state;
                    task.reason = status.reason.clone();
                    task.updated_at = now;
                }
            }
            Some(task) => {
                self.counters.status_updates_unknown_task += 1;
                warn!(agent = %agent_id, owner = %task.agent_id, task = %key.1,
                    "status update for a task that runs on another agent; forwarded, books unchanged");
            }
            None => {
                let done = self
                    .completed
                    .iter()
                    .any(|c| c.framework_id == key.0 && c.task_id == key.1);
                if !done {
                    self.counters.status_updates_unknown_task += 1;
                }
                // A retry of a terminal update, or a task from before a master restart whose
                // agent has not re-registered: the scheduler still wants it.
                debug!(framework = %fw, task = %key.1, state = status.state.name(), done, "update for a task not live");
            }
        }
    }

    pub(crate) fn acknowledge(
        &mut self,
        fw: FrameworkId,
        agent_id: AgentId,
        task_id: TaskId,
        uuid: u64,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        agent_id
            .validate()
            .map_err(|e| MasterError::BadRequest(e.to_string()))?;
        task_id
            .validate()
            .map_err(|e| MasterError::BadRequest(e.to_string()))?;
        let agent = self
            .agents
            .get(&agent_id)
            .ok_or_else(|| MasterError::UnknownAgent(agent_id.clone()))?;
        match agent.conn {
            Some(conn) => {
                let msg = Message::StatusUpdateAck {
                    framework_id: fw,
                    task_id,
                    uuid,
                };
                out.push(Action::Send { conn, msg });
            }
            // The agent resends the update once back, and the scheduler acknowledges again.
            None => {
                debug!(agent = %agent_id, task = %task_id, "acknowledgement for an absent agent dropped")
            }
        }
        Ok(())
    }

    /// Kill semantics follow Mesos: a live task is killed through its agent; a task unknown to
    /// the master but on a named, connected agent is killed there anyway (the agent may know it,
    /// e.g. right after a master restart); otherwise the scheduler gets the reconciliation
    /// answer for the task (its terminal state if recently completed, else TASK_UNKNOWN or
    /// TASK_GONE), so it never waits for an update that cannot come.
    pub(crate) fn kill(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: FrameworkId,
        task_id: TaskId,
        agent_hint: Option<AgentId>,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        task_id
            .validate()
            .map_err(|e| MasterError::BadRequest(e.to_string()))?;
        let msg = self.kill_message(&fw, &task_id);
        if let Some(task) = self.tasks.get(&(fw.clone(), task_id.clone())) {
            info!(framework = %fw, task = %task_id, agent = %task.agent_id, "killing task");
            let agent = task.agent_id.clone();
            self.send_to_agent(&agent, msg, out);
            return Ok(());
        }
        let hinted = agent_hint.filter(|a| self.agents.get(a).is_some_and(|e| e.conn.is_some()));
        let completed = self.completed_status(now, &fw, &task_id);
        match (completed, hinted) {
            (None, Some(agent)) => self.send_to_agent(&agent, msg, out),
            (completed, hint) => {
                let status = completed.unwrap_or_else(|| self.unknown_status(now, &task_id, hint));
                out.push(Action::Send {
                    conn,
                    msg: Message::Update { status },
                });
            }
        }
        Ok(())
    }

    /// Explicit reconciliation answers every named task; implicit (empty list) answers every
    /// live task of the framework. Answers carry reason `reconciliation` and no uuid.
    pub(crate) fn reconcile(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: FrameworkId,
        tasks: Vec<(TaskId, Option<AgentId>)>,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        if tasks.len() > self.config.max_reconcile_tasks {
            let why = format!(
                "{} tasks to reconcile (limit {})",
                tasks.len(),
                self.config.max_reconcile_tasks
            );
            return Err(MasterError::BadRequest(why));
        }
        let ids: Vec<(TaskId, Option<AgentId>)> = if tasks.is_empty() {
            let live = self
                .frameworks
                .get(&fw)
                .map(|f| f.tasks.iter().cloned().collect::<Vec<_>>());
            live.unwrap_or_default()
                .into_iter()
                .map(|t| (t, None))
                .collect()
        } else {
            tasks
        };
        for (task_id, hint) in ids {
            let status = self.reconcile_status(now, &fw, task_id, hint);
            out.push(Action::Send {
                conn,
                msg: Message::Update { status },
            });
        }
        Ok(())
    }

    /// A task that ended while no master knew it (its update not yet acknowledged), as an
    /// agent's re-registration reports it: remembered like a completed task.
    pub(crate) fn remember_reported_end(&mut self, now: Time, agent_id: &AgentId, r: TaskReport) {
        let known = self
            .completed
            .iter()
            .any(|c| c.framework_id == r.framework_id && c.task_id == r.task.task_id);
        if known {
            return;
        }
        self.completed.push_back(CompletedTask {
            framework_id: r.framework_id,
            agent_id: agent_id.clone(),
            task_id: r.task.task_id,
            name: r.task.name,
            state: r.state,
            reason: Some(reasons::RECONCILIATION.to_string()),
            resources: r.task.resources,
            finished_at: now,
        });
        while self.completed.len() > self.config.max_completed_tasks {
            self.completed.pop_front();
        }
    }

    fn reconcile_status(
        &self,
        now: Time,
        fw: &FrameworkId,
        task_id: TaskId,
        hint: Option<AgentId>,
    ) -> TaskStatus {
        if let Some(task) = self.tasks.get(&(fw.clone(), task_id.clone())) {
            let mut status = self.master_update(
                now,
                task_id,
                task.state,
                Some(task.agent_id.clone()),
                reasons::RECONCILIATION,
                "state known to the master",
            );
            status.executor_id = Some(task.executor_id.clone());
            return status;
        }
        self.completed_status(now, fw, &task_id)
            .unwrap_or_else(|| self.unknown_status(now, &task_id, hint))
    }

    /// The terminal state of a recently completed task, if still remembered.
    fn completed_status(
        &self,
        now: Time,
        fw: &FrameworkId,
        task_id: &TaskId,
    ) -> Option<TaskStatus> {
        let c = self
            .completed
            .iter()
            .rev()
            .find(|c| &c.framework_id == fw && &c.task_id == task_id)?;
        Some(self.master_update(
            now,
            task_id.clone(),
            c.state,
            Some(c.agent_id.clone()),
            reasons::RECONCILIATION,
            "task completed",
        ))
    }

    /// For a task the master has no record of: TASK_GONE when the named agent is registered
    /// (it reported everything it runs, and not this), TASK_LOST when the named agent was
    /// admitted before a failover and missed the re-registration window (it may never come
    /// back, and a framework waiting for it would wait forever), TASK_UNKNOWN otherwise.
    fn unknown_status(&self, now: Time, task_id: &TaskId, hint: Option<AgentId>) -> TaskStatus {
        if let Some(agent) = hint.as_ref().filter(|a| self.recovery.is_unreachable(a)) {
            let why = format!(
                "agent {agent} did not re-register after a master failover; task {task_id} is lost"
            );
            return self.master_update(
                now,
                task_id.clone(),
                TaskState::Lost,
                Some(agent.clone()),
                reasons::RECONCILIATION,
                why,
            );
        }
        match hint.clone().filter(|a| self.agents.contains_key(a)) {
            Some(agent) => {
                let why = format!("agent {agent} is registered and does not run task {task_id}");
                self.master_update(
                    now,
                    task_id.clone(),
                    TaskState::Gone,
                    Some(agent),
                    reasons::RECONCILIATION,
                    why,
                )
            }
            None => {
                let why = match hint.as_ref().filter(|a| self.recovery.is_waiting(a)) {
                    Some(agent) => format!(
                        "the master has no record of task {task_id}; its agent {agent} has not re-registered since the failover yet"
                    ),
                    None => format!("the master has no record of task {task_id}"),
                };
                self.master_update(
                    now,
                    task_id.clone(),
                    TaskState::Unknown,
                    None,
                    reasons::RECONCILIATION,
                    why,
                )
            }
        }
    }

    pub(crate) fn on_framework_message(
        &mut self,
        fw: FrameworkId,
        executor_id: ExecutorId,
        agent_id: AgentId,
        data: Vec<u8>,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        let agent = self
            .agents
            .get(&agent_id)
            .ok_or_else(|| MasterError::UnknownAgent(agent_id.clone()))?;
        match agent.conn {
            Some(conn) => {
                let msg = Message::FrameworkToExecutor {
                    framework_id: fw,
                    executor_id,
                    agent_id,
                    data,
                };
                out.push(Action::Send { conn, msg });
            }
            // Framework messages are best effort, as in Mesos.
            None => debug!(agent = %agent_id, "framework message for an absent agent dropped"),
        }
        Ok(())
    }

    pub(crate) fn on_executor_message(
        &mut self,
        conn: ConnId,
        fw: FrameworkId,
        executor_id: ExecutorId,
        agent_id: AgentId,
        data: Vec<u8>,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        let Some(Binding::Agent(sender)) = self.conns.get(&conn).map(|c| c.binding.clone()) else {
            return Err(MasterError::AgentNotRegistered {
                kind: "executor_to_framework",
            });
        };
        if sender != agent_id {
            warn!(agent = %sender, claimed = %agent_id, "executor message names another agent; correcting");
        }
        if !self.frameworks.contains_key(&fw) {
            debug!(framework = %fw, "executor message for an unknown framework dropped");
            return Ok(());
        }
        let msg = Message::ExecutorToFramework {
            framework_id: fw.clone(),
            executor_id,
            agent_id: sender,
            data,
        };
        self.send_to_framework(&fw, msg, out);
        Ok(())
    }
}
