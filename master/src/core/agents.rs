//! Agents: registration, re-registration (soft-state rebuild), health checks and removal.

use super::model::{AgentEntry, Binding, ExecutorEntry, TaskEntry};
use super::state::sum;
use super::{reasons, validate, Action, MasterCore, MasterError, Out};
use agora_actors::transport::ConnId;
use agora_actors::{
    AgentId, Attributes, ExecutorId, FrameworkId, FrameworkInfo, Message, Resources, TaskReport,
    TaskState, Time,
};
use agora_allocator::AllocatorEvent;
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, info, warn};

/// What an agent says about itself in `RegisterAgent` / `ReregisterAgent`.
pub(crate) struct Registration {
    pub hostname: String,
    pub endpoint: String,
    pub resources: Resources,
    pub attributes: Attributes,
}

impl Registration {
    fn validate(&self) -> Result<(), MasterError> {
        validate::text("hostname", &self.hostname, false)
            .and_then(|()| validate::text("endpoint", &self.endpoint, false))
            .and_then(|()| validate::resources("agent resources", &self.resources))
            .and_then(|()| validate::attributes(&self.attributes))
            .map_err(MasterError::InvalidAgent)
    }
}

/// How a re-registration's task reports sort out against the master's books.
#[derive(Default)]
struct Reconciled {
    /// Tasks the master did not know and now tracks: the allocator must learn their use.
    adopted: usize,
    /// Frameworks the master has removed; the agent is told to shut them down.
    shutdown: BTreeSet<FrameworkId>,
    /// Tasks declared lost when the agent was removed: not adopted again, killed if live.
    killed: usize,
}

/// Tasks remembered as lost with their removed agent (oldest forgotten first: should such an
/// agent come back after that many more losses, its old tasks would be adopted again).
pub(crate) const MAX_LOST_WITH_REMOVED_AGENTS: usize = 100_000;

impl MasterCore {
    pub(crate) fn register_agent(
        &mut self,
        now: Time,
        conn: ConnId,
        reg: Registration,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        if let Some(Binding::Agent(id)) = self.conns.get(&conn).map(|c| c.binding.clone()) {
            // A retried registration on the same connection: same answer, nothing new.
            debug!(conn, agent = %id, "repeated registration");
            let msg = self.agent_registered(&id);
            out.push(Action::Send { conn, msg });
            return Ok(());
        }
        reg.validate()?;
        if self.agents.len() >= self.config.max_agents {
            let why = format!("the master already has {} agents", self.agents.len());
            return Err(MasterError::LimitReached(why));
        }
        let agent_id = loop {
            let id = self.agent_ids.agent();
            if !self.agents.contains_key(&id) {
                break id;
            }
        };
        info!(agent = %agent_id, hostname = %reg.hostname, resources = %reg.resources, "agent registered");
        self.agents
            .insert(agent_id.clone(), new_agent(now, conn, &reg));
        self.bind(conn, Binding::Agent(agent_id.clone()));
        self.counters.agents_registered += 1;
        let msg = self.agent_registered(&agent_id);
        out.push(Action::Send { conn, msg });
        out.push(Action::Allocator(AllocatorEvent::AddAgent {
            agent_id,
            hostname: reg.hostname,
            total: reg.resources,
            attributes: reg.attributes,
            used: BTreeMap::new(),
        }));
        Ok(())
    }

    fn agent_registered(&self, agent_id: &AgentId) -> Message {
        Message::AgentRegistered {
            agent_id: agent_id.clone(),
            ping_interval_ms: self.config.agent_ping_interval_ms,
        }
    }

    pub(crate) fn bind(&mut self, conn: ConnId, binding: Binding) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.binding = binding;
        }
    }

    /// An agent comes back (reconnect, master restart, or after being removed). The agent is
    /// the authority on what runs on it: the master adopts the tasks it reports and declares lost
    /// the ones it no longer has.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reregister_agent(
        &mut self,
        now: Time,
        conn: ConnId,
        agent_id: AgentId,
        reg: Registration,
        reports: Vec<TaskReport>,
        frameworks: Vec<FrameworkInfo>,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        self.check_agent_admissible(&agent_id)?;
        let reports = self.check_reregistration(conn, &agent_id, &reg, reports)?;
        self.recovery.returned(now, &agent_id);
        let known = self.agents.contains_key(&agent_id);
        // A repeated registration on the connection the agent already uses (it retried before
        // our answer came) was sent before the launches made since that connection was bound:
        // their RunTasks are still on their way to it (FIFO), not lost.
        let in_flight_since = self
            .agents
            .get(&agent_id)
            .filter(|a| a.conn == Some(conn))
            .map(|a| a.conn_since);
        let changed = match self.agents.get(&agent_id) {
            Some(a) => {
                a.total != reg.resources
                    || a.attributes != reg.attributes
                    || a.hostname != reg.hostname
            }
            None => true,
        };
        self.adopt_agent_conn(now, conn, &agent_id, &reg, out);
        out.push(Action::Send {
            conn,
            msg: self.agent_registered(&agent_id),
        });
        self.recover_frameworks(now, &reports, frameworks, out);
        let readd = !known || changed || self.reports_unknown_tasks(&agent_id, &reports);
        if known && readd {
            // The allocator's view of this agent is rebuilt from scratch below; outstanding
            // offers belong to the old view and go (RemoveAgent releases them).
            self.rescind_agent_offers(&agent_id, false, out);
            out.push(Action::Allocator(AllocatorEvent::RemoveAgent {
                agent_id: agent_id.clone(),
            }));
        }
        let rec = self.reconcile_agent_tasks(now, &agent_id, reports, !readd, in_flight_since, out);
        if readd {
            out.push(Action::Allocator(AllocatorEvent::AddAgent {
                agent_id: agent_id.clone(),
                hostname: reg.hostname.clone(),
                total: reg.resources.clone(),
                attributes: reg.attributes.clone(),
                used: self.agent_used_by_framework(&agent_id),
            }));
            self.keep_draining(&agent_id, out);
        }
        for framework_id in rec.shutdown {
            let msg = Message::ShutdownFramework { framework_id };
            out.push(Action::Send { conn, msg });
        }
        self.counters.agents_reregistered += 1;
        // Debug, not info: after a failover every agent of the cluster comes through here at
        // once, and the recovery window logs one summary line when the last is back.
        debug!(agent = %agent_id, known, adopted = rec.adopted, killed = rec.killed, "agent re-registered");
        Ok(())
    }

    /// Validates a re-registration and returns the task reports worth looking at. The agent's
    /// own fields are fatal when bad; a single bad task report is only skipped (refusing the
    /// whole agent for it would keep every good task on it unmanaged forever).
    fn check_reregistration(
        &self,
        conn: ConnId,
        agent_id: &AgentId,
        reg: &Registration,
        reports: Vec<TaskReport>,
    ) -> Result<Vec<TaskReport>, MasterError> {
        agent_id
            .validate()
            .map_err(|e| MasterError::InvalidAgent(e.to_string()))?;
        reg.validate()?;
        match self.conns.get(&conn).map(|c| &c.binding) {
            Some(Binding::Agent(other)) if other != agent_id => {
                return Err(MasterError::AlreadyRegistered(other.clone()))
            }
            _ => {}
        }
        if !self.agents.contains_key(agent_id) && self.agents.len() >= self.config.max_agents {
            let why = format!("the master already has {} agents", self.agents.len());
            return Err(MasterError::LimitReached(why));
        }
        if reports.len() > self.config.max_tasks_per_agent {
            let why = format!(
                "{} tasks reported (limit {})",
                reports.len(),
                self.config.max_tasks_per_agent
            );
            return Err(MasterError::InvalidAgent(why));
        }
        let reports: Vec<TaskReport> = reports
            .into_iter()
            .filter(|r| match task_report_ok(agent_id, r) {
                Ok(()) => true,
                Err(why) => {
                    warn!(agent = %agent_id, task = %r.task.task_id, why, "skipping a bad task report");
                    false
                }
            })
            .collect();
        // Whatever the agent runs must fit into what it offers, or the master's books could
        // never balance; such an agent must register afresh.
        let used = reported_use(&reports);
        if !reg.resources.contains(&used) {
            return Err(MasterError::InvalidAgent(format!(
                "reported tasks use {used} but the agent only has {}",
                reg.resources
            )));
        }
        Ok(reports)
    }

    /// Creates or refreshes the agent record and moves it to `conn`.
    fn adopt_agent_conn(
        &mut self,
        now: Time,
        conn: ConnId,
        agent_id: &AgentId,
        reg: &Registration,
        out: &mut Out,
    ) {
        let agent = self
            .agents
            .entry(agent_id.clone())
            .or_insert_with(|| new_agent(now, conn, reg));
        let old = agent.conn.replace(conn);
        if old != Some(conn) {
            agent.conn_since = now;
        }
        agent.hostname = reg.hostname.clone();
        agent.endpoint = reg.endpoint.clone();
        agent.attributes = reg.attributes.clone();
        agent.total = reg.resources.clone();
        agent.missed_pings = 0;
        agent.ping_outstanding = false;
        if let Some(old) = old.filter(|c| *c != conn) {
            // The old connection is stale (the agent has moved on); forget it now so its
            // eventual disconnect does not touch the agent.
            self.conns.remove(&old);
            out.push(Action::Close {
                conn: old,
                last: None,
            });
        }
        self.bind(conn, Binding::Agent(agent_id.clone()));
    }

    /// Frameworks the master does not know but the agent runs tasks for (master restarted and
    /// the scheduler has not re-subscribed yet): tracked as inactive until it does.
    fn recover_frameworks(
        &mut self,
        now: Time,
        reports: &[TaskReport],
        infos: Vec<FrameworkInfo>,
        out: &mut Out,
    ) {
        let mut infos_by_id: BTreeMap<FrameworkId, FrameworkInfo> = BTreeMap::new();
        for info in infos.into_iter().take(self.config.max_frameworks) {
            match (validate::framework_info(&info), info.id.clone()) {
                (Ok(info), Some(id)) => {
                    infos_by_id.insert(id, info);
                }
                (Err(why), _) => warn!(why, "skipping a bad framework report"),
                (Ok(_), None) => warn!(name = %info.name, "skipping a framework report without id"),
            }
        }
        let needed: BTreeSet<FrameworkId> = reports
            .iter()
            .filter(|r| !r.state.is_terminal())
            .map(|r| r.framework_id.clone())
            .collect();
        for fw in needed {
            if self.frameworks.contains_key(&fw) || self.removed_frameworks.contains(&fw) {
                continue;
            }
            if self.frameworks.len() >= self.config.max_frameworks {
                warn!(framework = %fw, "framework limit reached; not recovering it");
                continue;
            }
            let info = infos_by_id.remove(&fw);
            self.add_recovered_framework(now, fw, info, out);
        }
    }

    /// Whether the report holds live tasks the master does not track yet (they will be adopted).
    fn reports_unknown_tasks(&self, agent_id: &AgentId, reports: &[TaskReport]) -> bool {
        reports.iter().any(|r| {
            let key = (r.framework_id.clone(), r.task.task_id.clone());
            !r.state.is_terminal()
                && !self.tasks.contains_key(&key)
                && self.frameworks.contains_key(&r.framework_id)
                && !self.was_lost_with_agent(agent_id, &key)
        })
    }

    /// Whether the master declared this task lost when it removed `agent_id`, and has not
    /// seen it launched there again since.
    pub(crate) fn was_lost_with_agent(
        &self,
        agent_id: &AgentId,
        key: &(FrameworkId, agora_actors::TaskId),
    ) -> bool {
        let tracked_here = self.tasks.get(key).is_some_and(|t| &t.agent_id == agent_id);
        !tracked_here
            && self
                .lost_with_agent
                .contains(&(agent_id.clone(), key.0.clone(), key.1.clone()))
    }

    /// Brings the master's task books for this agent in line with its report. `recover`: give
    /// the resources of tasks declared lost back to the allocator (false when the agent is about
    /// to be re-added to the allocator with its current use anyway).
    fn reconcile_agent_tasks(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        reports: Vec<TaskReport>,
        recover: bool,
        in_flight_since: Option<Time>,
        out: &mut Out,
    ) -> Reconciled {
        let mut rec = Reconciled::default();
        let mut seen = BTreeSet::new();
        for report in reports {
            let key = (report.framework_id.clone(), report.task.task_id.clone());
            seen.insert(key.clone());
            if self.removed_frameworks.contains(&report.framework_id) {
                rec.shutdown.insert(report.framework_id.clone());
                continue;
            }
            if self.was_lost_with_agent(agent_id, &key) {
                // Its framework already got TASK_LOST when the agent was removed: a task the
                // master gave up on stays ended (as in Mesos); the agent's copy is killed and
                // its later updates are dropped (see `on_status_update`).
                rec.killed += 1;
                if !report.state.is_terminal() {
                    let msg = self.kill_message(&key.0, &key.1);
                    self.send_to_agent(agent_id, msg, out);
                }
                continue;
            }
            if report.state.is_terminal() {
                // Its terminal update is still on its way from the agent and settles it then.
                // Until then a new leader answers reconciliation with this state, not "gone":
                // a framework told "gone" would launch the task a second time.
                if !self.tasks.contains_key(&key) {
                    self.remember_reported_end(now, agent_id, report);
                }
                continue;
            }
            match self.tasks.get_mut(&key) {
                Some(task) if &task.agent_id == agent_id => {
                    task.state = report.state;
                    task.updated_at = now;
                }
                Some(task) => {
                    warn!(agent = %agent_id, task = %key.1, owner = %task.agent_id,
                        "agent reports a task the master knows on another agent; killing this copy");
                    let msg = self.kill_message(&key.0, &key.1);
                    self.send_to_agent(agent_id, msg, out);
                }
                None => {
                    let state = report.state;
                    if self.adopt_task(now, agent_id, report) {
                        rec.adopted += 1;
                        self.announce_reappeared(now, agent_id, &key, state, out);
                    }
                }
            }
        }
        self.lose_missing_tasks(now, agent_id, &seen, recover, in_flight_since, out);
        rec
    }

    /// A task the master had declared lost (its agent was removed) is alive after all: tell its
    /// framework, which otherwise would only find out by reconciling.
    fn announce_reappeared(
        &self,
        now: Time,
        agent_id: &AgentId,
        key: &(FrameworkId, agora_actors::TaskId),
        state: TaskState,
        out: &mut Out,
    ) {
        let was_lost = self
            .completed
            .iter()
            .any(|c| c.framework_id == key.0 && c.task_id == key.1);
        if was_lost {
            let why = format!("task reappeared with re-registered agent {agent_id}");
            let status = self.master_update(
                now,
                key.1.clone(),
                state,
                Some(agent_id.clone()),
                reasons::RECONCILIATION,
                why,
            );
            self.send_to_framework(&key.0, Message::Update { status }, out);
        }
    }

    /// Starts tracking a task reported by an agent. False if it cannot be tracked.
    fn adopt_task(&mut self, now: Time, agent_id: &AgentId, report: TaskReport) -> bool {
        if self.tasks.len() >= self.config.max_active_tasks {
            warn!(task = %report.task.task_id, "active task limit reached; not adopting a reported task");
            return false;
        }
        let fw = report.framework_id.clone();
        let task_id = report.task.task_id.clone();
        let (Some(agent), Some(framework)) =
            (self.agents.get_mut(agent_id), self.frameworks.get_mut(&fw))
        else {
            return false;
        };
        framework.tasks.insert(task_id.clone());
        agent.tasks.insert((fw.clone(), task_id.clone()));
        let exec = agent
            .executors
            .entry((fw.clone(), report.executor_id.clone()))
            .or_insert_with(|| ExecutorEntry {
                info: report.task.executor.clone(),
                resources: report
                    .task
                    .executor
                    .as_ref()
                    .map(|e| e.resources.clone())
                    .unwrap_or_default(),
                tasks: BTreeSet::new(),
            });
        exec.tasks.insert(task_id.clone());
        let entry = TaskEntry {
            agent_id: agent_id.clone(),
            executor_id: report.executor_id,
            info: report.task,
            state: report.state,
            reason: None,
            launched_at: now,
            updated_at: now,
        };
        self.tasks.insert((fw, task_id), entry);
        true
    }

    /// Tasks the master has on this agent but the agent no longer reports: lost.
    fn lose_missing_tasks(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        seen: &BTreeSet<(FrameworkId, agora_actors::TaskId)>,
        recover: bool,
        in_flight_since: Option<Time>,
        out: &mut Out,
    ) {
        let in_flight = |k: &(FrameworkId, agora_actors::TaskId)| match in_flight_since {
            Some(since) => self.tasks.get(k).is_some_and(|t| t.launched_at >= since),
            None => false,
        };
        let missing: Vec<_> = match self.agents.get(agent_id) {
            Some(a) => a
                .tasks
                .iter()
                .filter(|k| !seen.contains(*k) && !in_flight(k))
                .cloned()
                .collect(),
            None => return,
        };
        for key in missing {
            let why = format!("agent {agent_id} re-registered without task {}", key.1);
            warn!(agent = %agent_id, task = %key.1, "task missing on re-registered agent; lost");
            self.lose_task(now, &key, reasons::TASK_MISSING, &why, recover, out);
        }
    }

    /// Ends an active task as TASK_LOST and tells its framework.
    pub(crate) fn lose_task(
        &mut self,
        now: Time,
        key: &(FrameworkId, agora_actors::TaskId),
        reason: &str,
        why: &str,
        recover: bool,
        out: &mut Out,
    ) {
        let Some(agent) = self.tasks.get(key).map(|t| t.agent_id.clone()) else {
            return;
        };
        self.finish_task(
            now,
            key,
            TaskState::Lost,
            Some(reason.to_string()),
            recover,
            out,
        );
        let status = self.master_update(
            now,
            key.1.clone(),
            TaskState::Lost,
            Some(agent),
            reason,
            why,
        );
        self.send_to_framework(&key.0, Message::Update { status }, out);
    }

    pub(crate) fn on_pong(&mut self, conn: ConnId) -> Result<(), MasterError> {
        let Some(Binding::Agent(id)) = self.conns.get(&conn).map(|c| &c.binding) else {
            debug!(conn, "pong from an unregistered agent; ignored");
            return Ok(());
        };
        if let Some(agent) = self.agents.get_mut(id) {
            agent.missed_pings = 0;
            agent.ping_outstanding = false;
        }
        Ok(())
    }

    /// The agent's latest usage report replaces the previous one. Entries for executors the
    /// master does not know on that agent are dropped (a report cannot grow the state).
    pub(crate) fn on_agent_usage(
        &mut self,
        conn: ConnId,
        executors: Vec<agora_actors::ExecutorUsage>,
    ) -> Result<(), MasterError> {
        let Some(Binding::Agent(id)) = self.conns.get(&conn).map(|c| &c.binding) else {
            debug!(conn, "usage from an unregistered agent; ignored");
            return Ok(());
        };
        let Some(agent) = self.agents.get(id) else {
            return Ok(());
        };
        let mut known: BTreeSet<(FrameworkId, ExecutorId)> =
            agent.executors.keys().cloned().collect();
        known.extend(agent.tasks.iter().filter_map(|k| {
            self.tasks
                .get(k)
                .map(|t| (k.0.clone(), t.executor_id.clone()))
        }));
        let usage = executors
            .into_iter()
            .take(agora_actors::MAX_USAGE_ENTRIES)
            .map(|e| ((e.framework_id, e.executor_id), e.usage))
            .filter(|(k, _)| known.contains(k))
            .collect();
        let id = id.clone();
        if let Some(agent) = self.agents.get_mut(&id) {
            agent.usage = usage;
        }
        Ok(())
    }

    /// One health-check round: count a miss for every agent that did not answer the last ping
    /// (or is disconnected), remove those at the limit, ping the rest.
    pub(crate) fn ping_round(&mut self, now: Time, out: &mut Out) {
        let limit = self.config.max_missed_pings.max(1);
        let ids: Vec<AgentId> = self.agents.keys().cloned().collect();
        for id in ids {
            let Some(agent) = self.agents.get_mut(&id) else {
                continue;
            };
            if agent.conn.is_none() || agent.ping_outstanding {
                agent.missed_pings = agent.missed_pings.saturating_add(1);
            }
            if agent.missed_pings >= limit {
                let why = format!("missed {} health checks", agent.missed_pings);
                self.remove_agent(now, &id, &why, out);
                continue;
            }
            if let Some(conn) = agent.conn {
                agent.ping_outstanding = true;
                out.push(Action::Send {
                    conn,
                    msg: Message::Ping,
                });
            }
        }
        out.push(Action::SetTimer {
            timer: super::MasterTimer::PingAgents,
            at: now.plus_ms(self.config.agent_ping_interval_ms),
        });
    }

    /// The agent's connection dropped: its offers go back; its tasks stay (the agent may come
    /// back) while missed health checks accrue.
    pub(crate) fn agent_disconnected(&mut self, agent_id: &AgentId, conn: ConnId, out: &mut Out) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if agent.conn != Some(conn) {
            return;
        }
        agent.conn = None;
        agent.ping_outstanding = false;
        self.counters.agents_disconnected += 1;
        info!(agent = %agent_id, "agent disconnected");
        self.rescind_agent_offers(agent_id, true, out);
    }

    /// Removes an agent for good: offers rescinded, tasks lost, every framework told.
    pub(crate) fn remove_agent(&mut self, now: Time, agent_id: &AgentId, why: &str, out: &mut Out) {
        self.remove_agent_for(now, agent_id, reasons::AGENT_REMOVED, why, None, out);
    }

    /// `remove_agent` with the reason its tasks are lost for, and the last message to send
    /// the agent before its connection is closed.
    pub(crate) fn remove_agent_for(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        reason: &str,
        why: &str,
        last: Option<Message>,
        out: &mut Out,
    ) {
        if !self.agents.contains_key(agent_id) {
            return;
        }
        warn!(agent = %agent_id, why, "removing agent");
        // RemoveAgent releases everything the allocator had on it: no per-offer Recover.
        self.rescind_agent_offers(agent_id, false, out);
        let keys: Vec<_> = self
            .agents
            .get(agent_id)
            .map(|a| a.tasks.iter().cloned().collect())
            .unwrap_or_default();
        let message = format!("agent {agent_id} removed: {why}");
        for key in keys {
            self.lose_task(now, &key, reason, &message, false, out);
            let lost = (agent_id.clone(), key.0, key.1);
            self.lost_with_agent
                .insert(lost.clone(), MAX_LOST_WITH_REMOVED_AGENTS);
            if self.lost_task_changes.len() < MAX_LOST_WITH_REMOVED_AGENTS {
                self.lost_task_changes.push(lost);
            }
        }
        let conns: Vec<ConnId> = self.frameworks.values().filter_map(|f| f.conn).collect();
        for conn in conns {
            let msg = Message::AgentLost {
                agent_id: agent_id.clone(),
            };
            out.push(Action::Send { conn, msg });
        }
        out.push(Action::Allocator(AllocatorEvent::RemoveAgent {
            agent_id: agent_id.clone(),
        }));
        if let Some(conn) = self.agents.remove(agent_id).and_then(|a| a.conn) {
            self.conns.remove(&conn);
            out.push(Action::Close { conn, last });
        }
        self.counters.agents_removed += 1;
    }
}

fn new_agent(now: Time, conn: ConnId, reg: &Registration) -> AgentEntry {
    AgentEntry {
        hostname: reg.hostname.clone(),
        endpoint: reg.endpoint.clone(),
        attributes: reg.attributes.clone(),
        total: reg.resources.clone(),
        conn: Some(conn),
        conn_since: now,
        registered_at: now,
        missed_pings: 0,
        ping_outstanding: false,
        offers: BTreeSet::new(),
        tasks: BTreeSet::new(),
        executors: BTreeMap::new(),
        usage: BTreeMap::new(),
    }
}

fn task_report_ok(agent_id: &AgentId, r: &TaskReport) -> Result<(), String> {
    r.framework_id.validate().map_err(|e| e.to_string())?;
    r.executor_id.validate().map_err(|e| e.to_string())?;
    r.task.task_id.validate().map_err(|e| e.to_string())?;
    if &r.task.agent_id != agent_id {
        return Err(format!("task names agent {}", r.task.agent_id));
    }
    validate::resources("task resources", &r.task.resources)?;
    if let Some(exec) = &r.task.executor {
        if exec.executor_id != r.executor_id {
            return Err(format!(
                "executor id {} disagrees with the report's {}",
                exec.executor_id, r.executor_id
            ));
        }
        validate::resources_allow_empty("executor resources", &exec.resources)?;
    }
    Ok(())
}

/// What the reported tasks and their executors (each counted once) use.
/// What the agent's live tasks (and their executors) hold. Terminal tasks are left out: an
/// agent keeps them until their last update is acknowledged, but they hold nothing (found by
/// the simulator: counting them refused a valid re-registration forever).
fn reported_use(reports: &[TaskReport]) -> Resources {
    let live: Vec<&TaskReport> = reports.iter().filter(|r| !r.state.is_terminal()).collect();
    let mut executors: BTreeMap<(FrameworkId, agora_actors::ExecutorId), &Resources> =
        BTreeMap::new();
    for r in &live {
        if let Some(exec) = &r.task.executor {
            executors
                .entry((r.framework_id.clone(), r.executor_id.clone()))
                .or_insert(&exec.resources);
        }
    }
    let tasks = live.iter().map(|r| &r.task.resources);
    sum("reported use", tasks.chain(executors.into_values()))
}
