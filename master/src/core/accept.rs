//! `Accept`: the offer-to-task step. Offers are checked as a group, then every task on its own,
//! in order, against what is still left of the offers; each task is launched whole or refused
//! with a terminal update saying why. Whatever is left goes back to the allocator.

use super::model::{ExecutorEntry, TaskEntry};
use super::state::sum;
use super::{reasons, validate, Action, MasterCore, MasterError, Out};
use agora_actors::transport::ConnId;
use agora_actors::{
    AgentId, ExecutorId, Filters, FrameworkId, Message, OfferId, Operation, Resources, TaskInfo,
    TaskState, Time,
};
use agora_allocator::AllocatorEvent;
use std::collections::BTreeSet;
use tracing::{info, warn};

/// Why one task of an accept is refused: (reason, message).
type TaskRefusal = (&'static str, String);

impl MasterCore {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn accept(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: FrameworkId,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
        out: &mut Out,
    ) {
        let refuse_ms = self.refuse_ms_or_default(now, conn, &filters, out);
        let tasks: Vec<TaskInfo> = operations
            .iter()
            .flat_map(|op| match op {
                Operation::Launch { tasks } => tasks.clone(),
                _ => Vec::new(),
            })
            .collect();
        let (agent_id, offered) = match self.take_offers(&fw, &offer_ids, out) {
            Ok(taken) => taken,
            Err(why) => return self.refuse_accept(now, conn, &fw, tasks, why, out),
        };
        let launches_only = operations
            .iter()
            .all(|op| matches!(op, Operation::Launch { .. }));
        if tasks.is_empty() && launches_only {
            // An accept without operations is a decline (Mesos semantics).
            self.counters.offers_declined += offer_ids.len() as u64;
            self.recover(&fw, &agent_id, offered, Some(refuse_ms), out);
            return;
        }
        self.counters.offers_accepted += offer_ids.len() as u64;
        let mut remaining = offered;
        let tasks_total = tasks.len();
        let too_many = tasks_total > self.config.max_tasks_per_accept;
        for op in operations {
            remaining = match op {
                Operation::Launch { tasks } if too_many => {
                    let total = tasks_total;
                    self.refuse_too_many(now, conn, &fw, &agent_id, tasks, total, out);
                    remaining
                }
                Operation::Launch { tasks } => {
                    self.launch_tasks(now, conn, &fw, &agent_id, remaining, tasks, out)
                }
                Operation::Reserve { resources } => {
                    self.reserve_op(conn, &fw, &agent_id, remaining, &resources, false, out)
                }
                Operation::Unreserve { resources } => {
                    self.reserve_op(conn, &fw, &agent_id, remaining, &resources, true, out)
                }
            };
        }
        self.recover(&fw, &agent_id, remaining, Some(refuse_ms), out);
    }

    /// A RESERVE / UNRESERVE of an accept; a refused one is answered with an error and
    /// changes nothing (the accept's other operations still run).
    #[allow(clippy::too_many_arguments)]
    fn reserve_op(
        &mut self,
        conn: ConnId,
        fw: &FrameworkId,
        agent_id: &AgentId,
        remaining: Resources,
        resources: &Resources,
        unreserve: bool,
        out: &mut Out,
    ) -> Resources {
        match self.offer_reservation(fw, agent_id, &remaining, resources, unreserve, out) {
            Ok(left) => left,
            Err(why) => {
                let what = if unreserve { "unreserve" } else { "reserve" };
                warn!(framework = %fw, agent = %agent_id, why, "{what} refused");
                self.counters.invalid_messages += 1;
                let msg = Message::error(
                    agora_actors::ErrorCode::BadRequest,
                    format!("{what} refused: {why}"),
                );
                out.push(Action::Send { conn, msg });
                remaining
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// Every task of an accept above `max_tasks_per_accept` is refused.
    fn refuse_too_many(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: &FrameworkId,
        agent_id: &AgentId,
        tasks: Vec<TaskInfo>,
        total: usize,
        out: &mut Out,
    ) {
        let why = format!(
            "accept carries {total} tasks (limit {}); none launched",
            self.config.max_tasks_per_accept
        );
        warn!(framework = %fw, why, "accept refused");
        for task in tasks {
            self.refuse_task(
                now,
                conn,
                fw,
                agent_id,
                task.task_id,
                TaskState::Error,
                reasons::TASK_INVALID,
                &why,
                out,
            );
        }
    }

    /// Offers named by an accept that cannot be used: every task is dropped, and the caller
    /// learns why.
    fn refuse_accept(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: &FrameworkId,
        tasks: Vec<TaskInfo>,
        why: String,
        out: &mut Out,
    ) {
        if tasks.is_empty() {
            return self.reject(now, conn, MasterError::UnknownOffers(why), out);
        }
        self.counters.invalid_messages += 1;
        warn!(framework = %fw, tasks = tasks.len(), why, "accept with invalid offers; dropping its tasks");
        for task in tasks {
            let agent = task.agent_id.clone();
            self.refuse_task(
                now,
                conn,
                fw,
                &agent,
                task.task_id,
                TaskState::Dropped,
                reasons::INVALID_OFFERS,
                &why,
                out,
            );
        }
    }

    /// Consumes the offers of an accept. They must exist, be this framework's, be distinct and
    /// come from one agent. If not, the usable ones are still consumed and given back, and the
    /// error says which offer is wrong and how.
    fn take_offers(
        &mut self,
        fw: &FrameworkId,
        ids: &[OfferId],
        out: &mut Out,
    ) -> Result<(AgentId, Resources), String> {
        let mut problems = Vec::new();
        if ids.is_empty() {
            problems.push("no offers given".to_string());
        }
        if ids.len() > self.config.max_offers_per_call {
            problems.push(format!(
                "{} offers in one call (limit {})",
                ids.len(),
                self.config.max_offers_per_call
            ));
        }
        let mut seen = BTreeSet::new();
        let mut usable = Vec::new();
        let mut agents = BTreeSet::new();
        for id in ids {
            if !seen.insert(id) {
                problems.push(format!("offer {id} is named twice"));
                continue;
            }
            match self.offers.get(id) {
                None => problems.push(format!("offer {id} is unknown or no longer valid")),
                Some(o) if &o.offer.framework_id != fw => {
                    problems.push(format!("offer {id} is not an offer to framework {fw}"))
                }
                Some(o) => {
                    agents.insert(o.offer.agent_id.clone());
                    usable.push(id.clone());
                }
            }
        }
        if agents.len() > 1 {
            let names: Vec<String> = agents.iter().map(|a| a.to_string()).collect();
            problems.push(format!("offers span several agents ({})", names.join(", ")));
        }
        let offers: Vec<_> = usable
            .iter()
            .filter_map(|id| self.remove_offer(id))
            .collect();
        if !problems.is_empty() {
            for offer in offers {
                self.recover(fw, &offer.agent_id, offer.resources, None, out);
            }
            return Err(problems.join("; "));
        }
        let agent = agents
            .into_iter()
            .next()
            .ok_or_else(|| "no offers given".to_string())?;
        Ok((
            agent,
            sum("accepted offers", offers.iter().map(|o| &o.resources)),
        ))
    }

    /// Validates and launches the tasks one by one; returns what is left of `offered`.
    #[allow(clippy::too_many_arguments)]
    fn launch_tasks(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: &FrameworkId,
        agent: &AgentId,
        offered: Resources,
        tasks: Vec<TaskInfo>,
        out: &mut Out,
    ) -> Resources {
        let mut remaining = offered;
        let mut seen = BTreeSet::new();
        for task in tasks {
            let checked = self
                .check_task(fw, agent, &task, &seen, &remaining)
                .and_then(|(needed, exec_id)| {
                    let left = remaining
                        .checked_sub(&needed)
                        .map_err(|e| (reasons::RESOURCES_EXCEEDED, e.to_string()))?;
                    Ok((left, exec_id))
                });
            seen.insert(task.task_id.clone());
            match checked {
                Ok((left, exec_id)) => {
                    remaining = left;
                    self.launch(now, fw, agent, task, exec_id, out);
                }
                Err((reason, why)) => {
                    warn!(framework = %fw, task = %task.task_id, reason, why, "task refused");
                    self.refuse_task(
                        now,
                        conn,
                        fw,
                        agent,
                        task.task_id,
                        TaskState::Error,
                        reason,
                        &why,
                        out,
                    );
                }
            }
        }
        remaining
    }

    /// What launching `task` costs (its resources plus its executor's if the executor is new),
    /// and its executor id; or why it cannot launch.
    fn check_task(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        task: &TaskInfo,
        seen: &BTreeSet<agora_actors::TaskId>,
        remaining: &Resources,
    ) -> Result<(Resources, ExecutorId), TaskRefusal> {
        let invalid = |why: String| (reasons::TASK_INVALID, why);
        let id = &task.task_id;
        id.validate()
            .map_err(|e| invalid(format!("invalid task id: {e}")))?;
        if seen.contains(id) {
            return Err(invalid(format!(
                "task id {id} appears more than once in this accept"
            )));
        }
        if self.tasks.contains_key(&(fw.clone(), id.clone())) {
            return Err(invalid(format!(
                "task id {id} is already used by a live task of this framework"
            )));
        }
        if &task.agent_id != agent {
            return Err(invalid(format!(
                "task {id} names agent {} but the offers are for agent {agent}",
                task.agent_id
            )));
        }
        validate::text("task name", &task.name, true).map_err(invalid)?;
        validate::resources(&format!("task {id}"), &task.resources).map_err(invalid)?;
        if self.tasks.len() >= self.config.max_active_tasks {
            return Err(invalid(format!(
                "the master already tracks {} live tasks",
                self.tasks.len()
            )));
        }
        let (exec_id, exec_cost) = self.executor_cost(fw, agent, task).map_err(invalid)?;
        let needed = task.resources.checked_add(&exec_cost).map_err(|e| {
            invalid(format!(
                "task {id} resources cannot be combined with its executor's: {e}"
            ))
        })?;
        if !remaining.contains(&needed) {
            let left = if remaining.is_empty() {
                "nothing".to_string()
            } else {
                remaining.to_string()
            };
            return Err((
                reasons::RESOURCES_EXCEEDED,
                format!(
                    "task {id} needs {needed} but only {left} is left of the offered resources"
                ),
            ));
        }
        Ok((needed, exec_id))
    }

    /// The task's executor id and what starting it costs (nothing if it already runs).
    fn executor_cost(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        task: &TaskInfo,
    ) -> Result<(ExecutorId, Resources), String> {
        let id = &task.task_id;
        let exec_id = match (&task.command, &task.executor) {
            (None, None) => return Err(format!("task {id} has neither a command nor an executor")),
            // A custom executor runs its tasks itself; a command would be silently ignored.
            (Some(_), Some(e)) if e.command.is_some() => {
                return Err(format!("task {id} has a command and a custom executor"))
            }
            // The built-in command executor (executor.command None) needs each task's command.
            (None, Some(e)) if e.command.is_none() => {
                return Err(format!(
                    "task {id} uses the command executor but has no command"
                ))
            }
            (Some(_), None) => ExecutorId::new(id.as_str()).map_err(|e| e.to_string())?,
            (_, Some(e)) => {
                e.executor_id
                    .validate()
                    .map_err(|err| format!("invalid executor id: {err}"))?;
                validate::text("executor name", &e.name, true)?;
                validate::resources_allow_empty(
                    &format!("executor {}", e.executor_id),
                    &e.resources,
                )?;
                e.executor_id.clone()
            }
        };
        let existing = self
            .agents
            .get(agent)
            .and_then(|a| a.executors.get(&(fw.clone(), exec_id.clone())));
        match existing {
            Some(x) if x.info != task.executor => Err(format!(
                "executor {exec_id} already runs on agent {agent} with a different definition"
            )),
            Some(_) => Ok((exec_id, Resources::new())),
            None => Ok((
                exec_id,
                task.executor
                    .as_ref()
                    .map(|e| e.resources.clone())
                    .unwrap_or_default(),
            )),
        }
    }

    /// Records a validated task as staging and sends it to its agent.
    fn launch(
        &mut self,
        now: Time,
        fw: &FrameworkId,
        agent_id: &AgentId,
        task: TaskInfo,
        exec_id: ExecutorId,
        out: &mut Out,
    ) {
        let (Some(agent), Some(framework)) =
            (self.agents.get_mut(agent_id), self.frameworks.get_mut(fw))
        else {
            return;
        };
        let task_id = task.task_id.clone();
        framework.tasks.insert(task_id.clone());
        let framework_info = framework.info.clone();
        agent.tasks.insert((fw.clone(), task_id.clone()));
        agent
            .executors
            .entry((fw.clone(), exec_id.clone()))
            .or_insert_with(|| ExecutorEntry {
                info: task.executor.clone(),
                resources: task
                    .executor
                    .as_ref()
                    .map(|e| e.resources.clone())
                    .unwrap_or_default(),
                tasks: BTreeSet::new(),
            })
            .tasks
            .insert(task_id.clone());
        let entry = TaskEntry {
            agent_id: agent_id.clone(),
            executor_id: exec_id,
            info: task.clone(),
            state: TaskState::Staging,
            reason: None,
            launched_at: now,
            updated_at: now,
        };
        self.tasks.insert((fw.clone(), task_id.clone()), entry);
        self.counters.tasks_launched += 1;
        info!(framework = %fw, task = %task_id, agent = %agent_id, resources = %task.resources, "launching task");
        let msg = Message::RunTask {
            framework: framework_info,
            task,
        };
        self.send_to_agent(agent_id, msg, out);
    }

    /// Tells the framework (on `conn`) that a task of its accept ends here, never launched.
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    fn refuse_task(
        &mut self,
        now: Time,
        conn: ConnId,
        fw: &FrameworkId,
        agent: &AgentId,
        task_id: agora_actors::TaskId,
        state: TaskState,
        reason: &str,
        why: &str,
        out: &mut Out,
    ) {
        // A terminal update for an id that names a live task would end that task in the
        // framework's eyes (a resent or duplicated Accept does this; found by the simulator):
        // refuse with an error instead.
        if self.tasks.contains_key(&(fw.clone(), task_id.clone())) {
            let text =
                format!("task {task_id} is already live; this launch of it is refused: {why}");
            out.push(Action::Send {
                conn,
                msg: Message::error(agora_actors::ErrorCode::BadRequest, text),
            });
            return;
        }
        self.count_terminal(state);
        let status = self.master_update(now, task_id, state, Some(agent.clone()), reason, why);
        out.push(Action::Send {
            conn,
            msg: Message::Update { status },
        });
    }

    pub(crate) fn recover(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        resources: Resources,
        refuse_ms: Option<u64>,
        out: &mut Out,
    ) {
        if resources.is_empty() {
            return;
        }
        out.push(Action::Allocator(AllocatorEvent::Recover {
            framework_id: fw.clone(),
            agent_id: agent.clone(),
            resources,
            refuse_ms,
        }));
    }
}
