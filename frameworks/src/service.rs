//! The service framework: keeps M instances of a long-running command alive.
//!
//! Each instance is launched on an offer with room for it (optionally at most `max_per_agent`
//! instances per agent, to spread them). When an instance's task ends — in any terminal state —
//! it is relaunched under a fresh task id; an instance that keeps dying soon after its start is
//! relaunched with exponential backoff, so a crash loop does not hammer the cluster. Offers are
//! suppressed while nothing waits for a launch and revived when something does. The framework
//! never stops by itself; [`ServiceFramework::set_instances`] scales it and
//! [`ServiceFramework::shutdown`] ends it.

use crate::fit::take_resources;
use crate::{check_common, check_prefix, FrameworkError};
use agora_actors::sdk::{Scheduler, SchedulerCtx};
use agora_actors::time::backoff_ms;
use agora_actors::{
    AgentId, CommandInfo, Filters, FrameworkId, FrameworkInfo, Offer, Operation, Resources, TaskId,
    TaskInfo, TaskState, TaskStatus, Time,
};
use serde::Serialize;
use std::collections::BTreeMap;
use tracing::{debug, info, warn};

/// Most instances one service runs.
pub const MAX_SERVICE_INSTANCES: usize = 10_000;

/// What to keep running. Build with [`ServiceConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub user: String,
    pub role: String,
    /// Instances to keep running (M).
    pub instances: usize,
    pub command: CommandInfo,
    /// What each instance needs, written unreserved.
    pub resources: Resources,
    /// Task ids are `<prefix>-<instance>.<launch number>`.
    pub task_id_prefix: String,
    /// How long declined offers are withheld.
    pub refuse_seconds: f64,
    /// Most instances on one agent; 0 means no limit.
    pub max_per_agent: usize,
    /// First relaunch delay of an instance that died young; doubles up to the cap. 0 relaunches
    /// at once, always.
    pub relaunch_backoff_base_ms: u64,
    pub relaunch_backoff_cap_ms: u64,
    /// An instance that ran this long counts as healthy: its next relaunch is immediate and its
    /// backoff starts over.
    pub healthy_after_ms: u64,
    /// Services outlive a scheduler restart: the master keeps their tasks this long.
    pub failover_timeout_ms: u64,
}

impl ServiceConfig {
    pub fn new(name: &str, instances: usize, command: CommandInfo, resources: Resources) -> Self {
        ServiceConfig {
            name: name.to_string(),
            user: "root".to_string(),
            role: "*".to_string(),
            instances,
            command,
            resources,
            task_id_prefix: "svc".to_string(),
            refuse_seconds: 10.0,
            max_per_agent: 0,
            relaunch_backoff_base_ms: 1_000,
            relaunch_backoff_cap_ms: 60_000,
            healthy_after_ms: 60_000,
            failover_timeout_ms: 3_600_000,
        }
    }

    pub fn validate(&self) -> Result<(), FrameworkError> {
        check_common(
            &self.name,
            &self.role,
            &self.command,
            &self.resources,
            self.refuse_seconds,
        )?;
        if self.instances > MAX_SERVICE_INSTANCES {
            let why = format!("at most {MAX_SERVICE_INSTANCES}");
            return Err(FrameworkError::config("instances", why));
        }
        let worst = format!("{}-{}.{}", self.task_id_prefix, usize::MAX, u32::MAX);
        check_prefix(&worst)?;
        Ok(())
    }
}

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum InstanceState {
    /// Waiting for an offer.
    Pending,
    /// Backing off before the next launch.
    Waiting {
        until: Time,
    },
    /// Accepted on an offer, not running yet.
    Launched,
    Running {
        since: Time,
    },
    /// Being killed because the service was scaled down; gone once its task ends.
    Removing,
}

/// One instance of the service.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub index: usize,
    /// Launches so far (the current task's number).
    pub generation: u32,
    /// The current task, while launched.
    pub task_id: Option<TaskId>,
    pub state: InstanceState,
    pub agent_id: Option<AgentId>,
    pub hostname: Option<String>,
    /// Times the instance was relaunched after its task ended.
    pub relaunches: u32,
    /// Ends in a row without having run `healthy_after_ms`.
    pub consecutive_failures: u32,
    pub last_state: Option<TaskState>,
    pub last_message: String,
}

/// The service at a glance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub wanted: usize,
    pub pending: usize,
    pub waiting: usize,
    pub launched: usize,
    pub running: usize,
    pub removing: usize,
    pub relaunches: u64,
    pub offers_received: u64,
    pub offers_declined: u64,
}

/// The service framework. See the module docs.
#[derive(Debug)]
pub struct ServiceFramework {
    config: ServiceConfig,
    instances: BTreeMap<usize, Instance>,
    /// Current task id → instance.
    by_task: BTreeMap<TaskId, usize>,
    wanted: usize,
    next_index: usize,
    suppressed: bool,
    relaunches: u64,
    offers_received: u64,
    offers_declined: u64,
}

impl ServiceFramework {
    pub fn new(config: ServiceConfig) -> Result<Self, FrameworkError> {
        config.validate()?;
        let mut fw = ServiceFramework {
            instances: BTreeMap::new(),
            by_task: BTreeMap::new(),
            wanted: 0,
            next_index: 0,
            suppressed: false,
            relaunches: 0,
            offers_received: 0,
            offers_declined: 0,
            config,
        };
        fw.grow(fw.config.instances);
        Ok(fw)
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.values()
    }

    pub fn status(&self) -> ServiceStatus {
        let mut s = ServiceStatus {
            wanted: self.wanted,
            relaunches: self.relaunches,
            offers_received: self.offers_received,
            offers_declined: self.offers_declined,
            ..ServiceStatus::default()
        };
        for inst in self.instances.values() {
            match inst.state {
                InstanceState::Pending => s.pending += 1,
                InstanceState::Waiting { .. } => s.waiting += 1,
                InstanceState::Launched => s.launched += 1,
                InstanceState::Running { .. } => s.running += 1,
                InstanceState::Removing => s.removing += 1,
            }
        }
        s
    }

    /// Scales the service to `instances` (capped at [`MAX_SERVICE_INSTANCES`]). Growing adds
    /// pending instances; shrinking removes the newest ones, killing their tasks.
    pub fn set_instances(&mut self, ctx: &mut SchedulerCtx, instances: usize) {
        let target = instances.min(MAX_SERVICE_INSTANCES);
        info!(service = %self.config.name, from = self.wanted, to = target, "scaling");
        if target > self.wanted {
            self.grow(target - self.wanted);
        }
        while self.wanted > target {
            self.shrink_one(ctx);
        }
        self.update_suppression(ctx);
    }

    /// Ends the service: the master kills every instance; the driver then stops with code 0.
    pub fn shutdown(&mut self, ctx: &mut SchedulerCtx) {
        info!(service = %self.config.name, "shutting the service down");
        ctx.teardown();
        ctx.stop(0);
    }

    fn grow(&mut self, n: usize) {
        for _ in 0..n {
            let index = self.next_index;
            self.next_index += 1;
            self.instances.insert(index, new_instance(index));
            self.wanted += 1;
        }
    }

    /// Removes the newest instance that is not already going.
    fn shrink_one(&mut self, ctx: &mut SchedulerCtx) {
        let victim = self
            .instances
            .values()
            .rev()
            .find(|i| i.state != InstanceState::Removing)
            .map(|i| i.index);
        let Some(index) = victim else {
            self.wanted = 0;
            return;
        };
        self.wanted -= 1;
        let inst = &self.instances[&index];
        match (inst.state, inst.task_id.clone()) {
            (InstanceState::Launched | InstanceState::Running { .. }, Some(task_id)) => {
                ctx.kill(task_id, inst.agent_id.clone());
                if let Some(i) = self.instances.get_mut(&index) {
                    i.state = InstanceState::Removing;
                }
            }
            _ => {
                self.instances.remove(&index);
            }
        }
    }

    // ---- offers -----------------------------------------------------------------------------

    fn live_on(&self, agent: &AgentId) -> usize {
        self.instances
            .values()
            .filter(|i| i.agent_id.as_ref() == Some(agent))
            .filter(|i| {
                matches!(
                    i.state,
                    InstanceState::Launched
                        | InstanceState::Running { .. }
                        | InstanceState::Removing
                )
            })
            .count()
    }

    fn place(&mut self, offer: &Offer) -> Vec<TaskInfo> {
        let limit = match self.config.max_per_agent {
            0 => usize::MAX,
            n => n,
        };
        let mut room = limit.saturating_sub(self.live_on(&offer.agent_id));
        let mut left = offer.resources.clone();
        let pending: Vec<usize> = self
            .instances
            .values()
            .filter(|i| i.state == InstanceState::Pending)
            .map(|i| i.index)
            .collect();
        let mut out = Vec::new();
        for index in pending {
            if room == 0 {
                break;
            }
            let Some(taken) = take_resources(&left, &self.config.resources, &self.config.role)
            else {
                break;
            };
            let Ok(rest) = left.checked_sub(&taken) else {
                break;
            };
            match self.launch(index, offer, taken) {
                Some(task) => out.push(task),
                None => continue,
            }
            left = rest;
            room -= 1;
        }
        out
    }

    fn launch(&mut self, index: usize, offer: &Offer, resources: Resources) -> Option<TaskInfo> {
        let inst = self.instances.get_mut(&index)?;
        let generation = inst.generation.saturating_add(1);
        let raw = format!("{}-{index}.{generation}", self.config.task_id_prefix);
        let task_id = match TaskId::new(raw) {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, "cannot name the instance's task");
                return None;
            }
        };
        inst.generation = generation;
        inst.task_id = Some(task_id.clone());
        inst.state = InstanceState::Launched;
        inst.agent_id = Some(offer.agent_id.clone());
        inst.hostname = Some(offer.hostname.clone());
        self.by_task.insert(task_id.clone(), index);
        debug!(task = %task_id, agent = %offer.agent_id, "launching instance");
        Some(TaskInfo {
            container: None,
            task_id,
            name: format!("{}-{index}", self.config.name),
            agent_id: offer.agent_id.clone(),
            resources,
            command: Some(self.config.command.clone()),
            executor: None,
            data: Vec::new(),
        })
    }

    fn wants_offers(&self) -> bool {
        self.instances
            .values()
            .any(|i| i.state == InstanceState::Pending)
    }

    fn update_suppression(&mut self, ctx: &mut SchedulerCtx) {
        let wants = self.wants_offers();
        if wants && self.suppressed {
            ctx.revive();
            self.suppressed = false;
        } else if !wants && !self.suppressed {
            ctx.suppress();
            self.suppressed = true;
        }
    }

    // ---- task ends --------------------------------------------------------------------------

    /// The instance's task ended: relaunch it now or after a backoff, or drop a removed one.
    fn task_ended(&mut self, ctx: &mut SchedulerCtx, index: usize) {
        let now = ctx.now;
        let Some(inst) = self.instances.get_mut(&index) else {
            return;
        };
        if let Some(id) = inst.task_id.take() {
            self.by_task.remove(&id);
        }
        if inst.state == InstanceState::Removing {
            self.instances.remove(&index);
            return;
        }
        let healthy = matches!(inst.state,
            InstanceState::Running { since } if now.since(since) >= self.config.healthy_after_ms);
        inst.consecutive_failures = if healthy {
            0
        } else {
            inst.consecutive_failures.saturating_add(1)
        };
        inst.relaunches = inst.relaunches.saturating_add(1);
        self.relaunches += 1;
        let delay_ms = match (
            inst.consecutive_failures,
            self.config.relaunch_backoff_base_ms,
        ) {
            (0, _) | (_, 0) => 0,
            (n, base) => backoff_ms(
                n - 1,
                base,
                self.config.relaunch_backoff_cap_ms,
                index as u64,
            ),
        };
        info!(
            instance = index,
            relaunches = inst.relaunches,
            delay_ms,
            "relaunching instance"
        );
        if delay_ms == 0 {
            inst.state = InstanceState::Pending;
        } else {
            inst.state = InstanceState::Waiting {
                until: now.plus_ms(delay_ms),
            };
            ctx.set_timer(timer_token(index, inst.generation), delay_ms);
        }
    }
}

fn new_instance(index: usize) -> Instance {
    Instance {
        index,
        generation: 0,
        task_id: None,
        state: InstanceState::Pending,
        agent_id: None,
        hostname: None,
        relaunches: 0,
        consecutive_failures: 0,
        last_state: None,
        last_message: String::new(),
    }
}

/// Relaunch timers name the instance and the launch they follow, so a stale one is ignored.
fn timer_token(index: usize, generation: u32) -> u64 {
    ((index as u64) << 32) | generation as u64
}

impl Scheduler for ServiceFramework {
    fn framework_info(&self) -> FrameworkInfo {
        FrameworkInfo {
            id: None,
            name: self.config.name.clone(),
            user: self.config.user.clone(),
            roles: vec![self.config.role.clone()],
            failover_timeout_ms: self.config.failover_timeout_ms,
            hostname: String::new(),
            ..FrameworkInfo::new(&self.config.name)
        }
    }

    fn subscribed(&mut self, ctx: &mut SchedulerCtx, id: &FrameworkId, resubscribed: bool) {
        info!(service = %self.config.name, %id, resubscribed, "service framework subscribed");
        if resubscribed {
            let live: Vec<(TaskId, Option<AgentId>)> = self
                .instances
                .values()
                .filter_map(|i| Some((i.task_id.clone()?, i.agent_id.clone())))
                .collect();
            if !live.is_empty() {
                ctx.reconcile(live);
            }
        }
        if self.wants_offers() {
            if resubscribed {
                ctx.revive();
            }
            self.suppressed = false;
        } else {
            ctx.suppress();
            self.suppressed = true;
        }
    }

    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        let filters = Filters {
            refuse_seconds: self.config.refuse_seconds,
        };
        for offer in offers {
            self.offers_received += 1;
            let tasks = self.place(&offer);
            if tasks.is_empty() {
                self.offers_declined += 1;
                ctx.decline(vec![offer.id], self.config.refuse_seconds);
            } else {
                ctx.accept(vec![offer.id], vec![Operation::Launch { tasks }], filters);
            }
        }
        self.update_suppression(ctx);
    }

    fn update(&mut self, ctx: &mut SchedulerCtx, status: &TaskStatus) {
        let Some(&index) = self.by_task.get(&status.task_id) else {
            debug!(task = %status.task_id, state = status.state.name(), "update for no current instance");
            return;
        };
        let Some(inst) = self.instances.get_mut(&index) else {
            return;
        };
        inst.last_state = Some(status.state);
        inst.last_message = status.message.clone();
        if status.state.is_terminal() {
            warn!(instance = index, task = %status.task_id, state = status.state.name(), message = %status.message, "instance ended");
            self.task_ended(ctx, index);
        } else if status.state == TaskState::Running
            && matches!(inst.state, InstanceState::Launched)
        {
            inst.state = InstanceState::Running { since: ctx.now };
        }
        self.update_suppression(ctx);
    }

    fn agent_lost(&mut self, _ctx: &mut SchedulerCtx, agent_id: &AgentId) {
        warn!(agent = %agent_id, "agent lost; its instances will be reported lost and relaunched");
    }

    fn timer(&mut self, ctx: &mut SchedulerCtx, token: u64) {
        let index = (token >> 32) as usize;
        let generation = (token & 0xFFFF_FFFF) as u32;
        if let Some(inst) = self.instances.get_mut(&index) {
            if matches!(inst.state, InstanceState::Waiting { .. }) && inst.generation == generation
            {
                inst.state = InstanceState::Pending;
            }
        }
        self.update_suppression(ctx);
    }
}

#[cfg(test)]
mod tests;
