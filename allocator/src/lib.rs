//! The allocation module: decides which framework is offered which agent's free resources.
//!
//! The master never knows which policy runs. It reports events (`AllocatorEvent`) and receives
//! decisions (`Allocation`s); operators send `OperatorCommand`s (weights, priorities, quota,
//! policy switch). A policy is an `Allocator` (a pure core: no IO, no clock); the
//! `AllocatorActor` shell hosts any `Box<dyn Allocator>`, coalesces bursts of events into one
//! allocation run, and also runs one every `allocation_interval_ms`.
//!
//! Layers: a `Sorter` orders frameworks — `HierarchicalSorter` (DRF over roles by weighted
//! dominant share, then over frameworks within a role), `PrioritySorter` (strict per-role
//! levels, hierarchical DRF within a level) and `LotterySorter` (seeded draws weighted by
//! entitled share); `DrfAllocator` keeps the ledger (agents, frameworks, filters, weights,
//! quota) and runs the allocation loop over whichever sorter is selected, and can switch
//! sorters at runtime by handing the new one the whole ledger; `AllocatorActor` decides when.
//! `AllocatorEvent` is itself the actix message the actor receives.

pub mod actor;
pub mod drf;
pub mod error;
pub mod hierarchy;
pub mod lottery;
pub mod ordmap;
pub mod priority;
pub mod quota;
pub mod revocation;
pub mod roles;
mod share_order;
pub mod sorter;
mod ticket_tree;

use agora_actors::{AgentId, Attributes, FrameworkId, FrameworkInfo, Resources, Time};

use std::collections::BTreeMap;

/// What the master tells the allocator. The allocator's view of "allocated" (offered or used)
/// resources is kept consistent by these events alone.
#[derive(Debug, Clone, PartialEq)]
pub enum AllocatorEvent {
    AddAgent {
        agent_id: AgentId,
        hostname: String,
        total: Resources,
        attributes: Attributes,
        /// Already in use on the agent (re-registration), per framework.
        used: BTreeMap<FrameworkId, Resources>,
    },
    RemoveAgent {
        agent_id: AgentId,
    },
    /// The agent is draining for maintenance: offer none of it until `ActivateAgent` (what
    /// runs on it stays allocated). A fresh `AddAgent` starts active.
    DeactivateAgent {
        agent_id: AgentId,
    },
    ActivateAgent {
        agent_id: AgentId,
    },
    /// A new or re-subscribed framework. `used`: what it already holds, per agent.
    AddFramework {
        framework_id: FrameworkId,
        info: FrameworkInfo,
        used: BTreeMap<AgentId, Resources>,
        active: bool,
    },
    /// The framework is gone; everything it held must already have been recovered or is
    /// recovered by this event.
    RemoveFramework {
        framework_id: FrameworkId,
    },
    /// Scheduler connected / disconnected (an inactive framework gets no offers but keeps tasks).
    ActivateFramework {
        framework_id: FrameworkId,
    },
    DeactivateFramework {
        framework_id: FrameworkId,
    },
    /// Resources given back: a declined/rescinded/timed-out offer, or the leftovers of an accept,
    /// or a finished task. `refuse_ms`: do not offer this agent to this framework for that long.
    Recover {
        framework_id: FrameworkId,
        agent_id: AgentId,
        resources: Resources,
        refuse_ms: Option<u64>,
    },
    /// Clear all decline filters of the framework and resume offers.
    Revive {
        framework_id: FrameworkId,
    },
    /// Stop offering to the framework until it revives.
    Suppress {
        framework_id: FrameworkId,
    },
    /// A reservation changed on the agent (RESERVE / UNRESERVE, by a framework's accept or by
    /// an operator): `from` becomes `to` (same quantities, other roles), in the agent's free
    /// pool (`framework_id` None) or in what the framework holds there. The total follows.
    UpdateReservation {
        agent_id: AgentId,
        framework_id: Option<FrameworkId>,
        from: Resources,
        to: Resources,
    },
}

/// What an operator asks of the allocator (kept apart from `AllocatorEvent`, which is the
/// master's bookkeeping feed). Each is answered with `Ok` or a clear error.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorCommand {
    /// Set these roles' weights (roles not listed keep theirs).
    UpdateWeights {
        weights: BTreeMap<String, roles::Weight>,
    },
    /// Set these roles' strict-priority levels (0 = default level).
    UpdatePriorities { priorities: BTreeMap<String, u32> },
    /// Switch the running policy (`drf`, `priority`, `lottery`), keeping every allocation.
    SwitchPolicy { name: String },
    /// Set (`Some`) or remove (`None`) a role's quota.
    SetQuota {
        role: String,
        quota: Option<quota::Quota>,
    },
}

impl AllocatorEvent {
    /// The variant's name, for log lines that must not print whole resource maps.
    pub fn kind(&self) -> &'static str {
        match self {
            AllocatorEvent::AddAgent { .. } => "add_agent",
            AllocatorEvent::RemoveAgent { .. } => "remove_agent",
            AllocatorEvent::DeactivateAgent { .. } => "deactivate_agent",
            AllocatorEvent::ActivateAgent { .. } => "activate_agent",
            AllocatorEvent::AddFramework { .. } => "add_framework",
            AllocatorEvent::RemoveFramework { .. } => "remove_framework",
            AllocatorEvent::ActivateFramework { .. } => "activate_framework",
            AllocatorEvent::DeactivateFramework { .. } => "deactivate_framework",
            AllocatorEvent::Recover { .. } => "recover",
            AllocatorEvent::Revive { .. } => "revive",
            AllocatorEvent::Suppress { .. } => "suppress",
            AllocatorEvent::UpdateReservation { .. } => "update_reservation",
        }
    }
}

/// A decision: offer `resources` of `agent_id` to `framework_id`. The allocator counts them as
/// allocated to the framework from this moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub resources: Resources,
}

/// Per-framework view for operators (`/state`, `/metrics`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShareReport {
    pub framework_id: FrameworkId,
    pub role: String,
    pub allocated: String,
    pub dominant_share: f64,
}

/// Per-role view for operators (`GET /roles`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoleReport {
    pub role: String,
    pub weight: f64,
    /// Strict-priority level (used by the `priority` policy; 0 by default).
    pub priority: u32,
    /// Guarantee and limit, if the role has a quota.
    pub quota: Option<quota::Quota>,
    pub frameworks: Vec<FrameworkId>,
    /// Offered or in use, reservations folded in.
    pub allocated: String,
    /// Dominant share divided by the weight, as the allocator ranks the role.
    pub dominant_share: f64,
    /// Reserved for the role on all agents (static and dynamic), used or not.
    #[serde(default)]
    pub reserved: String,
}

/// The allocator asks the master to take `resources` (scalars) back from `framework_id`,
/// because `for_role` is below its guarantee, waiting, and nothing free can serve it. The
/// master chooses the tasks (newest first), warns, and kills them after the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRequest {
    pub framework_id: FrameworkId,
    pub resources: Resources,
    pub for_role: String,
}

/// A policy. Implementations must be deterministic (iterate in a fixed order, seed any RNG).
pub trait Allocator: Send + 'static {
    /// Short name (`drf`), as the operator selects it.
    fn name(&self) -> &'static str;
    /// Applies one event. Invalid events (unknown ids, resources not held) are logged and ignored.
    fn handle(&mut self, now: Time, event: AllocatorEvent);
    /// Decides offers for all currently free resources. At most the policy's configured number
    /// of allocations per framework per call (`DrfConfig::max_offers_per_framework_per_cycle`).
    /// Filters that expired at or before `now` are dropped first.
    fn allocate(&mut self, now: Time) -> Vec<Allocation>;
    /// Resources to take back from over-share frameworks (after `allocate`). Policies that
    /// never revoke keep the default.
    fn revocations(&mut self, _now: Time) -> Vec<RevocationRequest> {
        Vec::new()
    }
    /// Earliest time a filter expires (the shell wakes the allocator then), if any.
    fn next_wakeup(&self) -> Option<Time>;
    fn shares(&self) -> Vec<ShareReport>;
    /// Applies an operator command. Allocators that do not support one refuse it.
    fn operate(&mut self, cmd: OperatorCommand) -> Result<(), AllocatorError> {
        Err(AllocatorError::Config(format!(
            "allocator {} does not support {cmd:?}",
            self.name()
        )))
    }
    /// Switches the ordering policy at runtime keeping every allocation.
    fn switch_policy(&mut self, name: &str) -> Result<(), AllocatorError> {
        self.operate(OperatorCommand::SwitchPolicy {
            name: name.to_string(),
        })
    }
    /// Role weights other than 1, for operators.
    fn weights(&self) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
    /// Per-role view for operators.
    fn roles(&self) -> Vec<RoleReport> {
        Vec::new()
    }
}

pub use actor::{
    AllocateNow, Allocations, AllocatorActor, AllocatorConfig, GetRoles, GetShares, Operate,
    RolesView, SharesReport,
};
pub use drf::{DrfAllocator, DrfConfig, PolicyKind};
pub use error::AllocatorError;
pub use quota::Quota;
pub use roles::{validate_role, RoleError, Weight};
pub use sorter::{ClientInfo, DrfSorter, Share, Sorter, SorterError};
