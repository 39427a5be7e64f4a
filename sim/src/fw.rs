//! Simulated frameworks: the real example schedulers (`BatchFramework`, `ServiceFramework`)
//! wrapped in a recorder that sees exactly what the SDK driver hands them, after its
//! de-duplication, so the simulator can check "each terminal update delivered once".

use crate::scenario::{Duration, FrameworkKind, FrameworkSpec};
use agora_actors::sdk::{Call, Scheduler, SchedulerCtx};
use agora_actors::{
    AgentId, CommandInfo, ExecutorId, FrameworkId, FrameworkInfo, Offer, OfferId, Operation,
    Resources, TaskId, TaskStatus,
};
use agora_frameworks::{BatchConfig, BatchFramework, ServiceConfig, ServiceFramework};
use std::collections::{BTreeMap, BTreeSet};

// One per framework, never moved after construction: boxing would only add a hop.
#[allow(clippy::large_enum_variant)]
pub enum Fw {
    Batch(BatchFramework),
    Service(ServiceFramework),
}

/// Terminal updates one task received.
#[derive(Debug, Default, Clone)]
pub struct TerminalCount {
    /// The first reliable terminal update, for failure messages.
    pub first: Option<String>,
    /// From the agent/executor or the master's own decisions (not reconciliation answers).
    pub reliable: u32,
    /// Including reconciliation answers.
    pub any: u32,
}

pub struct Tracked {
    pub fw: Fw,
    pub terminal: BTreeMap<TaskId, TerminalCount>,
    pub launched: BTreeSet<TaskId>,
    /// Violations noticed while recording (checked by the simulator after every event).
    pub violations: Vec<String>,
}

impl Tracked {
    /// `agents`: how many agents the cluster has (where data blocks are placed).
    pub fn new(spec: &FrameworkSpec, agents: usize) -> Result<Tracked, String> {
        let res = Resources::parse(&spec.task_resources).map_err(|e| e.to_string())?;
        let fw = match spec.kind {
            FrameworkKind::Batch => Fw::Batch(batch(spec, agents, res)?),
            FrameworkKind::Service => {
                let mut c = ServiceConfig::new(
                    &spec.name,
                    spec.tasks,
                    CommandInfo::shell("sim:forever"),
                    res,
                );
                c.failover_timeout_ms = spec.failover_timeout_ms;
                c.role = spec.role.clone();
                Fw::Service(ServiceFramework::new(c).map_err(|e| e.to_string())?)
            }
        };
        Ok(Tracked {
            fw,
            terminal: BTreeMap::new(),
            launched: BTreeSet::new(),
            violations: Vec::new(),
        })
    }

    fn inner(&mut self) -> &mut dyn Scheduler {
        match &mut self.fw {
            Fw::Batch(b) => b,
            Fw::Service(s) => s,
        }
    }

    pub fn batch(&self) -> Option<&BatchFramework> {
        match &self.fw {
            Fw::Batch(b) => Some(b),
            Fw::Service(_) => None,
        }
    }

    fn note_launches(&mut self, ctx: &SchedulerCtx) {
        for call in &ctx.calls {
            if let Call::Accept { operations, .. } = call {
                for op in operations {
                    if let Operation::Launch { tasks } = op {
                        self.launched
                            .extend(tasks.iter().map(|t| t.task_id.clone()));
                    }
                }
            }
        }
    }
}

/// The batch framework a spec describes: durations, gang, role, data blocks and delay
/// scheduling.
fn batch(spec: &FrameworkSpec, agents: usize, res: Resources) -> Result<BatchFramework, String> {
    let cmd = match spec.duration {
        Duration::Const => format!("sim:const:{}", spec.mean_ms),
        Duration::Exp => format!("sim:exp:{}", spec.mean_ms),
        Duration::Trace => "sim:forever".to_string(),
    };
    let mut c = BatchConfig::new(&spec.name, spec.tasks, CommandInfo::shell(&cmd), res);
    if spec.duration == Duration::Trace {
        if spec.trace_ms.is_empty() {
            return Err("duration = \"trace\" but no trace was loaded".into());
        }
        let offset = spec
            .name
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        c.task_commands = (0..spec.tasks)
            .map(|i| {
                // Each job reads its own stretch of the trace (jobs named differently).
                let ms = spec.trace_ms[(i + offset) % spec.trace_ms.len()];
                CommandInfo::shell(&format!("sim:const:{ms}"))
            })
            .collect();
    }
    if spec.data_replicas > 0 {
        c.preferred_hosts = (0..spec.tasks)
            .map(|i| crate::workload::block_hosts(&spec.name, i, spec.data_replicas, agents))
            .collect();
        if spec.remote_read_penalty_pct > 0 {
            // Each task's command names its block's hosts, so a run elsewhere pays the read.
            c.task_commands = (0..spec.tasks)
                .map(|i| {
                    let base = c.task_commands.get(i).map_or(cmd.as_str(), |t| &t.value);
                    let hosts = &c.preferred_hosts[i];
                    let read =
                        crate::workload::with_block(base, hosts, spec.remote_read_penalty_pct);
                    CommandInfo::shell(&read)
                })
                .collect();
        }
    }
    c.locality_wait_ms = spec.locality_wait_ms;
    c.gang = spec.gang;
    c.role = spec.role.clone();
    if let Some(r) = spec.refuse_seconds {
        c.refuse_seconds = r;
    }
    c.max_retries_lost = spec.max_retries_lost;
    c.failover_timeout_ms = spec.failover_timeout_ms;
    c.sample_interval_ms = 0;
    c.reconcile_interval_ms = 5_000;
    c.unknown_lost_after_ms = spec.unknown_lost_after_ms;
    BatchFramework::new(c).map_err(|e| e.to_string())
}

impl Scheduler for Tracked {
    fn framework_info(&self) -> FrameworkInfo {
        match &self.fw {
            Fw::Batch(b) => b.framework_info(),
            Fw::Service(s) => s.framework_info(),
        }
    }
    fn subscribed(&mut self, ctx: &mut SchedulerCtx, id: &FrameworkId, resubscribed: bool) {
        self.inner().subscribed(ctx, id, resubscribed)
    }
    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        self.inner().offers(ctx, offers);
        self.note_launches(ctx);
    }
    fn rescinded(&mut self, ctx: &mut SchedulerCtx, offer_id: &OfferId) {
        self.inner().rescinded(ctx, offer_id)
    }
    fn update(&mut self, ctx: &mut SchedulerCtx, status: &TaskStatus) {
        if status.state.is_terminal() {
            let reconciliation = status.reason.as_deref() == Some("reconciliation");
            let c = self.terminal.entry(status.task_id.clone()).or_default();
            c.any += 1;
            if !reconciliation {
                c.reliable += 1;
                let this = format!(
                    "{} (reason {:?}, source {:?}, uuid {:?}, agent {:?}, at {} ms)",
                    status.state.name(),
                    status.reason,
                    status.source,
                    status.uuid,
                    status.agent_id.as_ref().map(|a| a.to_string()),
                    ctx.now.ms()
                );
                if c.reliable > 1 {
                    self.violations.push(format!(
                        "task {} got a second terminal update {this}; the first was {}",
                        status.task_id,
                        c.first.as_deref().unwrap_or("?")
                    ));
                } else {
                    c.first = Some(this);
                }
            }
        }
        self.inner().update(ctx, status);
        self.note_launches(ctx);
    }
    fn message(&mut self, ctx: &mut SchedulerCtx, a: &AgentId, e: &ExecutorId, data: &[u8]) {
        self.inner().message(ctx, a, e, data)
    }
    fn agent_lost(&mut self, ctx: &mut SchedulerCtx, agent_id: &AgentId) {
        self.inner().agent_lost(ctx, agent_id)
    }
    fn error(&mut self, ctx: &mut SchedulerCtx, message: &str, fatal: bool) {
        self.inner().error(ctx, message, fatal)
    }
    fn disconnected(&mut self, ctx: &mut SchedulerCtx) {
        self.inner().disconnected(ctx)
    }
    fn timer(&mut self, ctx: &mut SchedulerCtx, token: u64) {
        self.inner().timer(ctx, token);
        self.note_launches(ctx);
    }
}
