//! The first allocator: frameworks ordered by Dominant Resource Fairness.
//!
//! State is the allocator's own ledger, kept consistent by `AllocatorEvent`s alone: per agent
//! its total, what is free, and what each framework holds (offered or in use); per framework
//! its role, whether it is active or suppressed, and its decline filters.
//!
//! One allocation cycle visits every agent with allocatable free resources, starting one agent
//! further each cycle so no agent is always first, and offers the agent's whole free amount
//! (the part usable by the framework's role) to the first framework in sorter order that is
//! eligible: active, not suppressed, not filtered for that agent, and under its per-cycle cap.
//! After each offer only that framework's position in the sorter changes.
//!
//! Invariant (checked by `check_invariants`, exercised by property tests): for every agent,
//! `free + Σ held == total` exactly, and the sorter's per-framework sums equal the ledger's.

use crate::error::AllocatorError;
use crate::hierarchy::HierarchicalSorter;
use crate::lottery::LotterySorter;
use crate::ordmap::{FixedHash, OrdMap};
use crate::priority::PrioritySorter;
use crate::quota::{add_scalars, Quota, QuotaCycle, Scalars};
use crate::roles::Weight;
use crate::sorter::{ClientInfo, Sorter};
use crate::{Allocation, Allocator, AllocatorEvent, OperatorCommand, RoleReport, ShareReport};
use agora_actors::resources::Value;
use agora_actors::{AgentId, Attributes, FrameworkId, FrameworkInfo, Resources, Time};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

// Features kept out of this file (the hot loop lives here): each is a child module so it can
// see the ledger, and drf.rs only calls into it at clearly marked hooks (`HOOK(...)`).
#[path = "drf_revoke.rs"]
mod drf_revoke;
#[path = "reservation.rs"]
mod reservation;
#[path = "upfront.rs"]
mod upfront;

/// Longest decline filter honoured (one year, as the master's `MAX_REFUSE_SECONDS`); longer
/// requests are clamped so `now + refuse_ms` can never overflow into "forever".
pub const MAX_REFUSE_MS: u64 = 365 * 86_400 * 1000;
/// Upper bound accepted for `max_offers_per_framework_per_cycle`.
pub const MAX_OFFERS_PER_CYCLE_LIMIT: usize = 1_000_000;

/// Tuning of `DrfAllocator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrfConfig {
    /// At most this many offers go to one framework in one cycle, so one framework with the
    /// lowest share cannot sweep a whole large cluster in a single run.
    pub max_offers_per_framework_per_cycle: usize,
    /// A free bundle is worth offering only if it has at least this much CPU (milli-cpus) ...
    pub min_allocatable_cpus_milli: u64,
    /// ... or at least this much memory (MB). Smaller crumbs are kept until more frees up.
    pub min_allocatable_mem_mb: u64,
    /// Scalar resource names left out of dominant-share calculations.
    pub fair_sharing_excluded: BTreeSet<String>,
    /// Which ordering of frameworks runs (switchable at runtime).
    pub policy: PolicyKind,
    /// Seed of the lottery policy's RNG, so runs replay.
    pub lottery_seed: u64,
    /// Revocation: 0 disables it; otherwise how long a request for resources stays "in
    /// flight" (counted as coming) before the allocator may ask again. Must exceed the
    /// master's grace periods.
    pub revocation_retry_ms: u64,
    /// Fair-share revocation (see `crate::revocation::plan_fair_share`), in thousandths: a
    /// starving role whose dominant share is below this fraction of its fair share has
    /// resources revoked from roles above theirs. 0 (the default) turns the rule off; at
    /// most 1000.
    pub revoke_below_fair_share_milli: u32,
    /// How long a framework that wants offers must have been offered nothing to count as
    /// starving for the fair-share rule.
    pub fair_share_wait_ms: u64,
}

/// The framework orderings the allocator can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyKind {
    /// Hierarchical DRF: roles by weighted dominant share, then frameworks within a role.
    #[default]
    Drf,
    /// Strict priority levels (per role, set by the operator), hierarchical DRF within a level.
    Priority,
    /// Seeded lottery weighted by entitled share.
    Lottery,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 3] = [PolicyKind::Drf, PolicyKind::Priority, PolicyKind::Lottery];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Drf => "drf",
            PolicyKind::Priority => "priority",
            PolicyKind::Lottery => "lottery",
        }
    }

    pub fn parse(name: &str) -> Result<PolicyKind, AllocatorError> {
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| {
                AllocatorError::Config(format!(
                    "unknown allocator {name:?}; choose one of drf, priority, lottery"
                ))
            })
    }

    /// A fresh, empty sorter for this policy.
    pub fn sorter(self, config: &DrfConfig) -> Box<dyn Sorter<FrameworkId>> {
        let excluded = config.fair_sharing_excluded.clone();
        match self {
            PolicyKind::Drf => Box::new(HierarchicalSorter::new(excluded)),
            PolicyKind::Priority => Box::new(PrioritySorter::new(excluded)),
            PolicyKind::Lottery => Box::new(LotterySorter::new(excluded, config.lottery_seed)),
        }
    }
}

impl Default for DrfConfig {
    fn default() -> Self {
        DrfConfig {
            max_offers_per_framework_per_cycle: 1000,
            min_allocatable_cpus_milli: 10,
            min_allocatable_mem_mb: 32,
            fair_sharing_excluded: BTreeSet::new(),
            policy: PolicyKind::Drf,
            lottery_seed: 0,
            revocation_retry_ms: 120_000,
            revoke_below_fair_share_milli: 0,
            fair_share_wait_ms: 10_000,
        }
    }
}

impl DrfConfig {
    pub fn validate(&self) -> Result<(), AllocatorError> {
        let n = self.max_offers_per_framework_per_cycle;
        if n == 0 || n > MAX_OFFERS_PER_CYCLE_LIMIT {
            return Err(AllocatorError::Config(format!(
                "max_offers_per_framework_per_cycle must be in 1..={MAX_OFFERS_PER_CYCLE_LIMIT}, got {n}"
            )));
        }
        if self.revoke_below_fair_share_milli > 1000 {
            return Err(AllocatorError::Config(format!(
                "the fair-share revocation fraction must be in 0..=1, got {}",
                self.revoke_below_fair_share_milli as f64 / 1000.0
            )));
        }
        let max_units = agora_actors::resources::MAX_SCALAR_UNITS as u64;
        if self.min_allocatable_cpus_milli > max_units * 1000
            || self.min_allocatable_mem_mb > max_units
        {
            return Err(AllocatorError::Config(
                "min_allocatable_* is larger than any resource quantity can be".into(),
            ));
        }
        Ok(())
    }

    /// True if `r` is worth an offer: non-empty with enough CPU or enough memory.
    pub fn is_allocatable(&self, r: &Resources) -> bool {
        if r.is_empty() {
            return false;
        }
        // Both thresholds are validated to fit in i64 milli-units.
        r.scalar_total("cpus").0 >= self.min_allocatable_cpus_milli as i64
            || r.scalar_total("mem").0 >= (self.min_allocatable_mem_mb as i64).saturating_mul(1000)
    }
}

#[derive(Debug, Clone)]
struct AgentState {
    hostname: String,
    total: Resources,
    free: Resources,
    /// Not used by DRF; kept for constraint-aware policies and operator views.
    attributes: Attributes,
    /// Offered or in use, per framework. Entries are never empty.
    held: BTreeMap<FrameworkId, Resources>,
    /// False while the agent drains for maintenance: none of it is offered.
    active: bool,
}

/// A decline filter: until `until`, the agent is not offered to the framework *while what it
/// could offer is no more than `refused`* (as in Mesos). Resources freed since the refusal (a
/// task ended) make the agent worth offering again at once.
#[derive(Debug, Clone)]
struct Filter {
    until: Time,
    refused: Resources,
}

#[derive(Debug, Clone)]
struct FrameworkState {
    /// The role it is allocated under (its first role).
    role: String,
    priority: u32,
    /// `None` while the framework is known only from an agent's report of what it runs (after
    /// a master failover, before its scheduler re-subscribes).
    info: Option<FrameworkInfo>,
    active: bool,
    suppressed: bool,
    /// Agent (by slot in `agents`) -> its decline filter.
    /// Hashed (fixed keys): looked up for every candidate agent, and only ever iterated where
    /// order cannot matter (clearing them into `filter_index`, counting them). Keyed by slot
    /// so the lookup hashes one integer instead of an id string; `remove_agent` drops an
    /// agent's filters before its slot can be reused.
    filters: HashMap<u32, Filter, FixedHash>,
    /// Agents on which the framework holds something (index into `AgentState::held`), by
    /// slot in `agents`: an offer records a number instead of copying the agent's id. Slots
    /// of removed agents are dropped here before they can be reused (`remove_agent`), and
    /// every user sums over these agents, so slot order serves as well as id order.
    holds: BTreeSet<u32>,
}

impl FrameworkState {
    fn placeholder() -> Self {
        FrameworkState {
            role: "*".to_string(),
            priority: 0,
            info: None,
            active: false,
            suppressed: false,
            filters: HashMap::default(),
            holds: BTreeSet::new(),
        }
    }
}

/// The allocator: a ledger of agents and frameworks plus an allocation loop over a
/// switchable framework ordering (hierarchical DRF, strict priority, lottery).
pub struct DrfAllocator {
    config: DrfConfig,
    /// Role weights other than 1.
    weights: BTreeMap<String, Weight>,
    /// Role priority levels other than 0 (used by the strict-priority policy).
    priorities: BTreeMap<String, u32>,
    /// Role quotas (guarantee and limit).
    quotas: BTreeMap<String, Quota>,
    agents: OrdMap<AgentId, AgentState>,
    frameworks: OrdMap<FrameworkId, FrameworkState>,
    sorter: Box<dyn Sorter<FrameworkId>>,
    /// Every decline filter by expiry, so `next_wakeup` and expiry are cheap.
    /// By expiry, then framework slot and agent slot (only the expiry order matters: expired
    /// filters are all dropped together, and the first expiry is the next wakeup).
    filter_index: BTreeSet<(Time, u32, u32)>,
    /// Where the next cycle starts visiting agents (rotates for fairness between agents).
    next_start: Option<AgentId>,
    /// Revocations asked for and not yet given back (see `drf_revoke`).
    revoking: drf_revoke::InFlight,
    /// Since when each framework has wanted offers and been offered nothing (see `drf_revoke`).
    starving: drf_revoke::Starving,
}

impl std::fmt::Debug for DrfAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrfAllocator")
            .field("agents", &self.agents.len())
            .field("frameworks", &self.frameworks.len())
            .field("filters", &self.filter_index.len())
            .finish()
    }
}

impl DrfAllocator {
    pub fn new(config: DrfConfig) -> Result<Self, AllocatorError> {
        let sorter = config.policy.sorter(&config);
        Self::with_sorter(config, sorter)
    }

    /// The same allocation loop over another framework ordering (e.g. a test sorter, or a
    /// weighted/priority sorter later). The sorter must be empty.
    pub fn with_sorter(
        config: DrfConfig,
        sorter: Box<dyn Sorter<FrameworkId>>,
    ) -> Result<Self, AllocatorError> {
        config.validate()?;
        Ok(DrfAllocator {
            config,
            weights: BTreeMap::new(),
            priorities: BTreeMap::new(),
            quotas: BTreeMap::new(),
            agents: OrdMap::new(),
            frameworks: OrdMap::new(),
            sorter,
            filter_index: BTreeSet::new(),
            next_start: None,
            revoking: drf_revoke::InFlight::default(),
            starving: drf_revoke::Starving::default(),
        })
    }

    pub fn config(&self) -> &DrfConfig {
        &self.config
    }

    /// Free (unoffered, unused) resources of an agent.
    pub fn free(&self, agent: &AgentId) -> Option<&Resources> {
        self.agents.get(agent).map(|a| &a.free)
    }

    pub fn total(&self, agent: &AgentId) -> Option<&Resources> {
        self.agents.get(agent).map(|a| &a.total)
    }

    pub fn hostname(&self, agent: &AgentId) -> Option<&str> {
        self.agents.get(agent).map(|a| a.hostname.as_str())
    }

    pub fn attributes(&self, agent: &AgentId) -> Option<&Attributes> {
        self.agents.get(agent).map(|a| &a.attributes)
    }

    /// What `framework` holds on `agent` (offered or in use), if anything.
    pub fn held(&self, framework: &FrameworkId, agent: &AgentId) -> Option<&Resources> {
        self.agents.get(agent).and_then(|a| a.held.get(framework))
    }

    /// The agent in `slot` and what `framework` holds there, if anything.
    fn held_at(&self, framework: &FrameworkId, slot: u32) -> Option<(&AgentId, &Resources)> {
        let agent_id = self.agents.key_at(slot)?;
        Some((agent_id, self.agents.at(slot)?.held.get(framework)?))
    }

    pub fn has_framework(&self, framework: &FrameworkId) -> bool {
        self.frameworks.contains_key(framework)
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// True if a decline filter currently withholds what `agent` has free from `framework`.
    pub fn is_filtered(&self, framework: &FrameworkId, agent: &AgentId, now: Time) -> bool {
        let (Some(f), Some(slot)) = (self.frameworks.get(framework), self.agents.slot(agent))
        else {
            return false;
        };
        let Some(a) = self.agents.at(slot) else {
            return false;
        };
        let candidate = a.free.allocatable_to(&f.role);
        f.filters
            .get(&slot)
            .is_some_and(|flt| flt.until > now && flt.refused.contains(&candidate))
    }

    /// Applies one event, returning why it was refused. `Allocator::handle` logs the error.
    pub fn try_handle(&mut self, now: Time, event: AllocatorEvent) -> Result<(), AllocatorError> {
        match event {
            AllocatorEvent::AddAgent {
                agent_id,
                hostname,
                total,
                attributes,
                used,
            } => {
                self.add_agent(agent_id, hostname, total, attributes, used);
                Ok(())
            }
            AllocatorEvent::RemoveAgent { agent_id } => self.remove_agent(&agent_id),
            AllocatorEvent::DeactivateAgent { agent_id } => self.set_agent_active(&agent_id, false),
            AllocatorEvent::ActivateAgent { agent_id } => self.set_agent_active(&agent_id, true),
            AllocatorEvent::AddFramework {
                framework_id,
                info,
                used,
                active,
            } => {
                self.add_framework(framework_id, info, used, active);
                Ok(())
            }
            AllocatorEvent::RemoveFramework { framework_id } => {
                self.remove_framework(&framework_id)
            }
            AllocatorEvent::ActivateFramework { framework_id } => {
                self.update_framework(&framework_id, |f| f.active = true)
            }
            AllocatorEvent::DeactivateFramework { framework_id } => {
                self.update_framework(&framework_id, |f| f.active = false)
            }
            AllocatorEvent::Recover {
                framework_id,
                agent_id,
                resources,
                refuse_ms,
            } => self.recover(now, &framework_id, &agent_id, &resources, refuse_ms),
            AllocatorEvent::Revive { framework_id } => self.revive(&framework_id),
            AllocatorEvent::Suppress { framework_id } => {
                self.update_framework(&framework_id, |f| f.suppressed = true)
            }
            // HOOK(reservation)
            AllocatorEvent::UpdateReservation {
                agent_id,
                framework_id,
                from,
                to,
            } => self.update_reservation(&agent_id, framework_id.as_ref(), &from, &to),
        }
    }

    /// Sets the given roles' weights (others keep theirs); weight 1 is the default.
    fn update_weights(&mut self, weights: BTreeMap<String, Weight>) {
        for (role, w) in weights {
            self.sorter.set_weight(&role, w.0);
            if w == Weight::ONE {
                self.weights.remove(&role);
            } else {
                self.weights.insert(role, w);
            }
        }
    }

    /// Sets the given roles' strict-priority levels (0 removes); frameworks take the level of
    /// their role or its nearest ancestor that has one.
    fn update_priorities(&mut self, priorities: BTreeMap<String, u32>) {
        for (role, level) in priorities {
            if level == 0 {
                self.priorities.remove(&role);
            } else {
                self.priorities.insert(role, level);
            }
        }
        let ids: Vec<FrameworkId> = self.frameworks.keys().cloned().collect();
        for id in ids {
            let Some(role) = self.frameworks.get(&id).map(|f| f.role.clone()) else {
                continue;
            };
            // HOOK(upfront): a framework's own level wins over its role's.
            let own = self.frameworks.get(&id).and_then(upfront::own_priority);
            let priority = own.unwrap_or_else(|| self.priority_of(&role));
            if let Some(f) = self.frameworks.get_mut(&id) {
                f.priority = priority;
            }
            let info = ClientInfo { role, priority };
            if let Err(e) = self.sorter.set_info(&id, &info) {
                tracing::warn!(framework = %id, error = %e, "allocator: sorter out of step");
            }
        }
    }

    fn priority_of(&self, role: &str) -> u32 {
        crate::roles::ancestors(role)
            .find_map(|r| self.priorities.get(r).copied())
            .unwrap_or(0)
    }

    /// Role priority levels other than 0.
    pub fn priorities(&self) -> &BTreeMap<String, u32> {
        &self.priorities
    }

    /// Role weights other than 1.
    pub fn role_weights(&self) -> &BTreeMap<String, Weight> {
        &self.weights
    }

    /// Replaces the framework ordering, handing it the whole ledger: every agent's capacity,
    /// every framework's role, level, activity and holdings. The ledger itself (free, held,
    /// filters) is untouched, so no allocation is lost or duplicated by a switch.
    pub fn switch(&mut self, kind: PolicyKind) {
        let mut sorter = kind.sorter(&self.config);
        for agent in self.agents.values() {
            sorter.add_total(&agent.total);
        }
        for (role, w) in &self.weights {
            sorter.set_weight(role, w.0);
        }
        for (id, f) in &self.frameworks {
            let _ = sorter.add_client(id.clone());
            let info = ClientInfo {
                role: f.role.clone(),
                priority: f.priority,
            };
            let _ = sorter.set_info(id, &info);
            for &slot in &f.holds {
                if let Some((agent_id, held)) = self.held_at(id, slot) {
                    let _ = sorter.allocated(id, agent_id, held);
                }
            }
            if f.active && !f.suppressed {
                let _ = sorter.activate(id);
            }
        }
        self.config.policy = kind;
        self.sorter = sorter;
    }

    fn add_agent(
        &mut self,
        agent_id: AgentId,
        hostname: String,
        total: Resources,
        attributes: Attributes,
        used: BTreeMap<FrameworkId, Resources>,
    ) {
        if self.agents.contains_key(&agent_id) {
            // The master should have removed it first; start from the new report.
            tracing::warn!(agent = %agent_id, "allocator: agent added twice; replacing it");
            let _ = self.remove_agent(&agent_id);
        }
        self.sorter.add_total(&total);
        let state = AgentState {
            hostname,
            free: total.clone(),
            total,
            attributes,
            held: BTreeMap::new(),
            active: true,
        };
        self.agents.insert(agent_id.clone(), state);
        for (framework_id, resources) in used {
            if !self.frameworks.contains_key(&framework_id) {
                // Tasks of a framework whose scheduler has not re-subscribed yet: account for
                // them now (so nobody else is offered them) under an inactive placeholder.
                self.insert_framework(framework_id.clone(), FrameworkState::placeholder());
            }
            self.grant_used(&framework_id, &agent_id, &resources);
        }
    }

    fn set_agent_active(&mut self, agent_id: &AgentId, active: bool) -> Result<(), AllocatorError> {
        let agent = self
            .agents
            .get_mut(agent_id)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent_id.clone()))?;
        agent.active = active;
        Ok(())
    }

    /// False if the agent is unknown or draining for maintenance.
    pub fn is_agent_active(&self, agent: &AgentId) -> bool {
        self.agents.get(agent).is_some_and(|a| a.active)
    }

    fn remove_agent(&mut self, agent_id: &AgentId) -> Result<(), AllocatorError> {
        let slot = self.agents.slot(agent_id);
        let (Some(slot), Some(agent)) = (slot, self.agents.remove(agent_id)) else {
            return Err(AllocatorError::UnknownAgent(agent_id.clone()));
        };
        for (framework_id, resources) in &agent.held {
            self.sorter_unallocated(framework_id, agent_id, resources);
            if let Some(f) = self.frameworks.get_mut(framework_id) {
                f.holds.remove(&slot);
            }
        }
        let index = &mut self.filter_index;
        self.frameworks.for_each_mut(|framework_slot, _, f| {
            if let Some(flt) = f.filters.remove(&slot) {
                index.remove(&(flt.until, framework_slot, slot));
            }
        });
        self.sorter.remove_total(&agent.total);
        Ok(())
    }

    fn add_framework(
        &mut self,
        framework_id: FrameworkId,
        info: FrameworkInfo,
        used: BTreeMap<AgentId, Resources>,
        active: bool,
    ) {
        let role = info.role().to_string();
        // HOOK(upfront): a framework's own level wins over its role's.
        let priority = info.priority.unwrap_or_else(|| self.priority_of(&role));
        match self.frameworks.get_mut(&framework_id) {
            Some(f) => {
                tracing::debug!(framework = %framework_id, "allocator: framework re-added; updating it");
                f.role = role.clone();
                f.priority = priority;
                f.info = Some(info);
                f.active = active;
            }
            None => {
                let mut f = FrameworkState::placeholder();
                f.role = role.clone();
                f.priority = priority;
                f.info = Some(info);
                f.active = active;
                self.insert_framework(framework_id.clone(), f);
            }
        }
        let client = ClientInfo { role, priority };
        if let Err(e) = self.sorter.set_info(&framework_id, &client) {
            tracing::warn!(framework = %framework_id, error = %e, "allocator: sorter out of step");
        }
        for (agent_id, resources) in used {
            let Some(agent) = self.agents.get(&agent_id) else {
                tracing::warn!(framework = %framework_id, agent = %agent_id,
                    "allocator: framework reports use of an unknown agent; it will be counted when the agent registers");
                continue;
            };
            if agent.held.contains_key(&framework_id) {
                // The agent's own report (AddAgent `used`) already counted it; trust that one
                // rather than counting the same tasks twice.
                continue;
            }
            self.grant_used(&framework_id, &agent_id, &resources);
        }
        self.sync_sorter(&framework_id);
    }

    fn insert_framework(&mut self, framework_id: FrameworkId, state: FrameworkState) {
        if let Err(e) = self.sorter.add_client(framework_id.clone()) {
            tracing::warn!(framework = %framework_id, error = %e, "allocator: sorter out of step");
        }
        self.frameworks.insert(framework_id, state);
    }

    fn remove_framework(&mut self, framework_id: &FrameworkId) -> Result<(), AllocatorError> {
        let framework_slot = self.frameworks.slot(framework_id);
        let (Some(framework_slot), Some(f)) =
            (framework_slot, self.frameworks.remove(framework_id))
        else {
            return Err(AllocatorError::UnknownFramework(framework_id.clone()));
        };
        for &slot in &f.holds {
            let Some(agent) = self.agents.at_mut(slot) else {
                continue;
            };
            let Some(held) = agent.held.remove(framework_id) else {
                continue;
            };
            if let Err(e) = agent.free.checked_add(&held).map(|free| agent.free = free) {
                let agent = self.agents.key_at(slot);
                tracing::warn!(agent = ?agent, error = %e,
                    "allocator: cannot return a removed framework's resources");
            }
        }
        for (&agent_slot, flt) in &f.filters {
            self.filter_index
                .remove(&(flt.until, framework_slot, agent_slot));
        }
        if let Err(e) = self.sorter.remove_client(framework_id) {
            tracing::warn!(framework = %framework_id, error = %e, "allocator: sorter out of step");
        }
        self.revoking.forget(framework_id); // HOOK(revocation)
        Ok(())
    }

    /// Changes a framework's flags, then brings its sorter activity in line with them.
    fn update_framework(
        &mut self,
        framework_id: &FrameworkId,
        change: impl FnOnce(&mut FrameworkState),
    ) -> Result<(), AllocatorError> {
        let f = self
            .frameworks
            .get_mut(framework_id)
            .ok_or_else(|| AllocatorError::UnknownFramework(framework_id.clone()))?;
        change(f);
        self.sync_sorter(framework_id);
        Ok(())
    }

    /// A framework is in the sorter's active set iff it is active and not suppressed, so the
    /// allocation loop never has to skip over frameworks that want nothing.
    fn sync_sorter(&mut self, framework_id: &FrameworkId) {
        let Some(f) = self.frameworks.get(framework_id) else {
            return;
        };
        let wanted = f.active && !f.suppressed;
        if wanted == self.sorter.is_active(framework_id) {
            return;
        }
        let result = if wanted {
            self.sorter.activate(framework_id)
        } else {
            self.sorter.deactivate(framework_id)
        };
        if let Err(e) = result {
            tracing::warn!(framework = %framework_id, error = %e, "allocator: sorter out of step");
        }
    }

    fn revive(&mut self, framework_id: &FrameworkId) -> Result<(), AllocatorError> {
        let unknown = || AllocatorError::UnknownFramework(framework_id.clone());
        let framework_slot = self.frameworks.slot(framework_id).ok_or_else(unknown)?;
        let f = self.frameworks.at_mut(framework_slot).ok_or_else(unknown)?;
        f.suppressed = false;
        for (agent_slot, flt) in std::mem::take(&mut f.filters) {
            self.filter_index
                .remove(&(flt.until, framework_slot, agent_slot));
        }
        self.sync_sorter(framework_id);
        Ok(())
    }

    fn recover(
        &mut self,
        now: Time,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        resources: &Resources,
        refuse_ms: Option<u64>,
    ) -> Result<(), AllocatorError> {
        if !self.frameworks.contains_key(framework_id) {
            return Err(AllocatorError::UnknownFramework(framework_id.clone()));
        }
        let agent = self
            .agents
            .get(agent_id)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent_id.clone()))?;
        let back = match agent.held.get(framework_id) {
            Some(held) if held.contains(resources) => resources.clone(),
            Some(held) => {
                tracing::warn!(framework = %framework_id, agent = %agent_id, %resources, %held,
                    "allocator: recovering more than the framework holds; recovering only what it holds");
                intersect(held, resources)
            }
            None => {
                tracing::warn!(framework = %framework_id, agent = %agent_id, %resources,
                    "allocator: recovering from a framework that holds nothing on the agent; ignored");
                Resources::new()
            }
        };
        if !back.is_empty() {
            self.move_to_free(framework_id, agent_id, &back)?;
            self.revoking.given_back(framework_id, &back); // HOOK(revocation)
        }
        if let Some(ms) = refuse_ms.filter(|ms| *ms > 0) {
            let until = now.plus_ms(ms.min(MAX_REFUSE_MS));
            self.add_filter(framework_id, agent_id, until, resources);
        }
        Ok(())
    }

    /// Withholds `refused` of `agent` from `framework` until `until`. Two filters on one agent
    /// merge: the later expiry and the union of what was refused (a framework that declined for
    /// an hour has not changed its mind by declining for a second).
    fn add_filter(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        until: Time,
        refused: &Resources,
    ) {
        let (Some(framework_slot), Some(agent_slot)) = (
            self.frameworks.slot(framework_id),
            self.agents.slot(agent_id),
        ) else {
            return;
        };
        let Some(f) = self.frameworks.at_mut(framework_slot) else {
            return;
        };
        let (until, refused) = match f.filters.get(&agent_slot) {
            Some(old) => {
                self.filter_index
                    .remove(&(old.until, framework_slot, agent_slot));
                let merged = old
                    .refused
                    .checked_add(refused)
                    .unwrap_or_else(|_| refused.clone());
                (old.until.max(until), merged)
            }
            None => (until, refused.clone()),
        };
        f.filters.insert(agent_slot, Filter { until, refused });
        self.filter_index
            .insert((until, framework_slot, agent_slot));
    }

    fn expire_filters(&mut self, now: Time) {
        while self.filter_index.first().is_some_and(|(t, _, _)| *t <= now) {
            let Some((until, framework_slot, agent_slot)) = self.filter_index.pop_first() else {
                break;
            };
            if let Some(f) = self.frameworks.at_mut(framework_slot) {
                if f.filters.get(&agent_slot).map(|flt| flt.until) == Some(until) {
                    f.filters.remove(&agent_slot);
                }
            }
        }
    }

    /// Counts resources the framework already uses (re-registration) as held, clamped to what
    /// the agent has free: a report above capacity is logged, never allowed to over-commit.
    fn grant_used(&mut self, framework_id: &FrameworkId, agent_id: &AgentId, used: &Resources) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let granted = if agent.free.contains(used) {
            used.clone()
        } else {
            tracing::warn!(framework = %framework_id, agent = %agent_id, %used, free = %agent.free,
                "allocator: reported use exceeds the agent's free resources; counting only what fits");
            intersect(&agent.free, used)
        };
        if granted.is_empty() {
            return;
        }
        if let Err(e) = self.move_to_framework(framework_id, agent_id, &granted) {
            tracing::warn!(error = %e, "allocator: cannot count used resources");
        }
    }

    /// Moves `res` from the agent's free pool to the framework. Changes nothing on error.
    fn move_to_framework(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        res: &Resources,
    ) -> Result<(), AllocatorError> {
        let accounting = |source| AllocatorError::Accounting {
            agent: agent_id.clone(),
            source,
        };
        let unknown_agent = || AllocatorError::UnknownAgent(agent_id.clone());
        let slot = self.agents.slot(agent_id).ok_or_else(unknown_agent)?;
        let agent = self.agents.at_mut(slot).ok_or_else(unknown_agent)?;
        let f = self
            .frameworks
            .get_mut(framework_id)
            .ok_or_else(|| AllocatorError::UnknownFramework(framework_id.clone()))?;
        // The usual case offers the whole free pool: nothing to subtract.
        let free = if *res == agent.free {
            Resources::new()
        } else {
            agent.free.checked_sub(res).map_err(accounting)?
        };
        match agent.held.get_mut(framework_id) {
            Some(h) => *h = h.checked_add(res).map_err(accounting)?,
            None => {
                agent.held.insert(framework_id.clone(), res.clone());
            }
        }
        agent.free = free;
        f.holds.insert(slot);
        if let Err(e) = self.sorter.allocated(framework_id, agent_id, res) {
            tracing::warn!(framework = %framework_id, error = %e, "allocator: sorter out of step");
        }
        Ok(())
    }

    /// Moves `res` from the framework back to the agent's free pool. Changes nothing on error.
    fn move_to_free(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        res: &Resources,
    ) -> Result<(), AllocatorError> {
        let accounting = |source| AllocatorError::Accounting {
            agent: agent_id.clone(),
            source,
        };
        let unknown_agent = || AllocatorError::UnknownAgent(agent_id.clone());
        let slot = self.agents.slot(agent_id).ok_or_else(unknown_agent)?;
        let agent = self.agents.at_mut(slot).ok_or_else(unknown_agent)?;
        let held = agent
            .held
            .get(framework_id)
            .ok_or_else(|| AllocatorError::UnknownFramework(framework_id.clone()))?;
        let left = held.checked_sub(res).map_err(accounting)?;
        let free = agent.free.checked_add(res).map_err(accounting)?;
        agent.free = free;
        if left.is_empty() {
            agent.held.remove(framework_id);
            if let Some(f) = self.frameworks.get_mut(framework_id) {
                f.holds.remove(&slot);
            }
        } else {
            agent.held.insert(framework_id.clone(), left);
        }
        self.sorter_unallocated(framework_id, agent_id, res);
        Ok(())
    }

    fn sorter_unallocated(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        r: &Resources,
    ) {
        if let Err(e) = self.sorter.unallocated(framework_id, agent_id, r) {
            tracing::warn!(framework = %framework_id, error = %e, "allocator: sorter out of step");
        }
    }

    /// Agents worth visiting this cycle (as slots of `agents`), starting one agent after last
    /// cycle's start.
    fn cycle_agents(&mut self) -> Vec<u32> {
        let first = match &self.next_start {
            Some(start) => self.agents.range_slots(start.clone()..).next(),
            None => None,
        }
        .or_else(|| self.agents.range_slots(..).next())
        .map(|(id, _)| id.clone());
        let Some(first) = first else {
            return Vec::new();
        };
        self.next_start = self
            .agents
            .range_slots((Bound::Excluded(first.clone()), Bound::Unbounded))
            .next()
            .map(|(id, _)| id.clone());
        let (config, agents) = (&self.config, &self.agents);
        let mut out = Vec::with_capacity(agents.len());
        let slots = agents
            .range_slots(first.clone()..)
            .chain(agents.range_slots(..first));
        for (_, slot) in slots {
            if agents
                .at(slot)
                .is_some_and(|a| a.active && config.is_allocatable(&a.free))
            {
                out.push(slot);
            }
        }
        out
    }

    /// The first framework in sorter order that may be offered the agent in `slot`, with the
    /// part of the free pool it may have (`None`: the whole pool, the usual case).
    fn pick(
        &mut self,
        now: Time,
        slot: u32,
        quota: Option<(&QuotaCycle, bool)>,
    ) -> Option<(FrameworkId, Option<Resources>)> {
        let agent = self.agents.at(slot)?;
        let (frameworks, config) = (&self.frameworks, &self.config);
        // Usually nothing on the agent is reserved: then every role's candidate is the whole
        // free pool, and nothing is copied while searching.
        let unreserved = !agent.free.iter().any(|(k, _)| k.role.is_some());
        let mut offer = None;
        let framework_id = self.sorter.find_first(&mut |framework_id| {
            let Some(f) = frameworks.get(framework_id) else {
                return false;
            };
            let candidate = if unreserved {
                Cow::Borrowed(&agent.free)
            } else {
                Cow::Owned(agent.free.allocatable_to(&f.role))
            };
            // `cycle_agents` already checked the whole pool.
            if !unreserved && !config.is_allocatable(&candidate) {
                return false;
            }
            if let Some((q, guarantee_pass)) = quota {
                if !q.allows(&f.role, &candidate, guarantee_pass) {
                    return false;
                }
            }
            // HOOK(upfront): what the framework refuses up front is never offered to it.
            if !upfront::accepts(f, agent, &candidate) {
                return false;
            }
            if !f.filters.is_empty() {
                let filtered = f.filters.get(&slot);
                if filtered.is_some_and(|flt| flt.until > now && flt.refused.contains(&candidate)) {
                    return false;
                }
            }
            offer = match candidate {
                Cow::Borrowed(_) => None,
                Cow::Owned(r) => Some(r),
            };
            true
        })?;
        Some((framework_id, offer))
    }

    /// Gives the whole free pool of the agent in `slot` to the framework; returns a copy for
    /// the offer.
    fn move_whole_pool(
        &mut self,
        framework_id: &FrameworkId,
        slot: u32,
    ) -> Result<Resources, AllocatorError> {
        let f = self
            .frameworks
            .get_mut(framework_id)
            .ok_or_else(|| AllocatorError::UnknownFramework(framework_id.clone()))?;
        let (Some(agent_id), Some(agent)) = (self.agents.key_at(slot), self.agents.at(slot)) else {
            return Err(AllocatorError::Config(format!("no agent in slot {slot}")));
        };
        let res = agent.free.clone();
        // What the framework will hold here afterwards, if it already holds something.
        let sum = match agent.held.get(framework_id) {
            Some(h) => Some(h.checked_add(&res).map_err(|source| {
                let agent = agent_id.clone();
                AllocatorError::Accounting { agent, source }
            })?),
            None => None,
        };
        f.holds.insert(slot);
        if let Err(e) = self.sorter.allocated(framework_id, agent_id, &res) {
            tracing::warn!(framework = %framework_id, error = %e, "allocator: sorter out of step");
        }
        let Some(agent) = self.agents.at_mut(slot) else {
            return Err(AllocatorError::Config(format!("no agent in slot {slot}")));
        };
        let whole = std::mem::take(&mut agent.free);
        match (sum, agent.held.get_mut(framework_id)) {
            (Some(sum), Some(h)) => *h = sum,
            _ => {
                agent.held.insert(framework_id.clone(), whole);
            }
        }
        Ok(res)
    }

    /// Per role: weight, frameworks, allocated (offered or used) and the weighted share the
    /// sorter ranks it by. Roles appear if they have frameworks or a non-default weight.
    pub fn role_reports(&self) -> Vec<RoleReport> {
        let mut out: BTreeMap<String, RoleReport> = BTreeMap::new();
        let blank = |role: &str, weights: &BTreeMap<String, Weight>| RoleReport {
            role: role.to_string(),
            weight: weights.get(role).copied().unwrap_or_default().as_f64(),
            priority: self.priority_of(role),
            quota: self.quotas.get(role).cloned(),
            frameworks: Vec::new(),
            allocated: String::new(),
            dominant_share: 0.0,
            reserved: String::new(),
        };
        let named = self.weights.keys().chain(self.priorities.keys());
        for role in named.chain(self.quotas.keys()) {
            out.insert(role.clone(), blank(role, &self.weights));
        }
        // HOOK(reservation): roles with reservations are listed, with what is reserved.
        let reserved = self.reserved_by_role();
        for (role, r) in &reserved {
            let entry = out
                .entry(role.clone())
                .or_insert_with(|| blank(role, &self.weights));
            entry.reserved = r.to_string();
        }
        let mut sums: BTreeMap<String, Resources> = BTreeMap::new();
        for (id, f) in &self.frameworks {
            let entry = out
                .entry(f.role.clone())
                .or_insert_with(|| blank(&f.role, &self.weights));
            entry.frameworks.push(id.clone());
            let sum = sums.entry(f.role.clone()).or_default();
            if let Some(r) = self.sorter.allocation(id) {
                *sum = sum.checked_add(&r).unwrap_or_else(|_| sum.clone());
            }
        }
        for (role, r) in out.iter_mut() {
            r.allocated = sums.get(role).map(|x| x.to_string()).unwrap_or_default();
            r.dominant_share = self.sorter.role_share(role).unwrap_or(0.0);
        }
        out.into_values().collect()
    }

    /// Quota bookkeeping for a cycle: what roles with quota hold, and what the cluster has
    /// free. `None` (and no cost) when no role has a quota.
    fn quota_cycle(&self) -> Option<QuotaCycle> {
        if self.quotas.is_empty() {
            return None;
        }
        let mut usage: BTreeMap<String, Scalars> = BTreeMap::new();
        for (id, f) in &self.frameworks {
            if !self.quotas.contains_key(&f.role) {
                continue;
            }
            let sums = usage.entry(f.role.clone()).or_default();
            for &slot in &f.holds {
                if let Some((_, held)) = self.held_at(id, slot) {
                    add_scalars(sums, held, 1);
                }
            }
        }
        // HOOK(reservation): reservations count against their role's quota, used or not.
        self.add_unused_reservations(&mut usage);
        let mut free = Scalars::new();
        for agent in self.agents.values() {
            add_scalars(&mut free, &agent.free, 1);
        }
        Some(QuotaCycle::new(self.quotas.clone(), usage, free))
    }

    /// Role quotas.
    pub fn quotas(&self) -> &BTreeMap<String, Quota> {
        &self.quotas
    }

    /// Checks the ledger: `free + Σ held == total` per agent, the framework/agent indexes and
    /// the filter index agree, and the sorter's sums match. For tests and the simulator.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sums: BTreeMap<FrameworkId, Resources> = BTreeMap::new();
        for (agent_id, slot) in self.agents.range_slots(..) {
            let Some(agent) = self.agents.at(slot) else {
                return Err(format!("{agent_id}: ordered but not in its slot {slot}"));
            };
            let mut sum = agent.free.clone();
            for (framework_id, held) in &agent.held {
                if held.is_empty() {
                    return Err(format!("{agent_id}: empty held entry for {framework_id}"));
                }
                let f = self
                    .frameworks
                    .get(framework_id)
                    .ok_or_else(|| format!("{agent_id}: held by unknown {framework_id}"))?;
                if !f.holds.contains(&slot) {
                    return Err(format!("{framework_id}: holds index misses {agent_id}"));
                }
                sum = sum.checked_add(held).map_err(|e| e.to_string())?;
                let acc = sums.entry(framework_id.clone()).or_default();
                *acc = acc
                    .checked_add(&held.unreserved_view())
                    .map_err(|e| e.to_string())?;
            }
            if sum != agent.total {
                return Err(format!(
                    "{agent_id}: free+held {sum} != total {}",
                    agent.total
                ));
            }
        }
        self.check_framework_indexes(&sums)
    }

    fn check_framework_indexes(
        &self,
        sums: &BTreeMap<FrameworkId, Resources>,
    ) -> Result<(), String> {
        let mut filters = 0;
        for (framework_id, framework_slot) in self.frameworks.range_slots(..) {
            let Some(f) = self.frameworks.at(framework_slot) else {
                return Err(format!("{framework_id}: ordered but not in its slot"));
            };
            for &slot in &f.holds {
                let holds = self
                    .agents
                    .at(slot)
                    .map(|a| a.held.contains_key(framework_id));
                if holds != Some(true) {
                    return Err(format!("{framework_id}: stale holds entry (slot {slot})"));
                }
            }
            for (&agent_slot, flt) in &f.filters {
                filters += 1;
                let Some(agent_id) = self.agents.key_at(agent_slot) else {
                    return Err(format!("{framework_id}: filter on a vacant agent slot"));
                };
                if !self
                    .filter_index
                    .contains(&(flt.until, framework_slot, agent_slot))
                {
                    return Err(format!("{framework_id}: filter on {agent_id} not indexed"));
                }
            }
            let want = scalars_only(sums.get(framework_id).cloned().unwrap_or_default());
            let have = self.sorter.allocation(framework_id).unwrap_or_default();
            if want != have {
                return Err(format!("{framework_id}: sorter has {have}, ledger {want}"));
            }
            let wanted_active = f.active && !f.suppressed;
            if self.sorter.is_active(framework_id) != wanted_active {
                return Err(format!("{framework_id}: sorter activity out of step"));
            }
        }
        if filters != self.filter_index.len() {
            return Err("filter index has stale entries".into());
        }
        Ok(())
    }
}

/// Keeps only the scalar entries (what the sorter accounts).
fn scalars_only(r: Resources) -> Resources {
    let mut out = Resources::new();
    for (k, v) in r.iter() {
        if matches!(v, Value::Scalar(_)) {
            let _ = out.add_entry(k.clone(), v.clone());
        }
    }
    out
}

/// The part of `b` that `a` also has, entry by entry (same name and reservation).
fn intersect(a: &Resources, b: &Resources) -> Resources {
    let mut out = Resources::new();
    for (key, want) in b.iter() {
        let common = match (a.get(key), want) {
            (Some(Value::Scalar(x)), Value::Scalar(y)) => Value::Scalar((*x).min(*y)),
            (Some(Value::Ranges(x)), Value::Ranges(y)) => {
                Value::Ranges(x.difference(&x.difference(y)))
            }
            (Some(Value::Set(x)), Value::Set(y)) => {
                Value::Set(x.intersection(y).cloned().collect())
            }
            _ => continue,
        };
        // Cannot fail: at most as many entries as `b`, each no larger than in `b`.
        if let Err(e) = out.add_entry(key.clone(), common) {
            tracing::warn!(error = %e, "allocator: intersection failed");
        }
    }
    out
}

impl Allocator for DrfAllocator {
    fn name(&self) -> &'static str {
        self.config.policy.name()
    }

    fn operate(&mut self, cmd: OperatorCommand) -> Result<(), AllocatorError> {
        let too_many = || AllocatorError::Config(crate::roles::RoleError::TooMany.to_string());
        match cmd {
            OperatorCommand::UpdateWeights { weights } => {
                if self.weights.len() + weights.len() > crate::roles::MAX_ROLES {
                    return Err(too_many());
                }
                self.update_weights(weights);
            }
            OperatorCommand::UpdatePriorities { priorities } => {
                if self.priorities.len() + priorities.len() > crate::roles::MAX_ROLES {
                    return Err(too_many());
                }
                self.update_priorities(priorities);
            }
            OperatorCommand::SetQuota { role, quota } => match quota {
                Some(q) => {
                    q.validate(&role)
                        .map_err(|e| AllocatorError::Config(e.to_string()))?;
                    if !self.quotas.contains_key(&role)
                        && self.quotas.len() >= crate::roles::MAX_ROLES
                    {
                        return Err(too_many());
                    }
                    self.quotas.insert(role, q);
                }
                None => {
                    self.quotas.remove(&role);
                }
            },
            OperatorCommand::SwitchPolicy { name } => {
                let kind = PolicyKind::parse(&name)?;
                if kind != self.config.policy {
                    tracing::info!(
                        from = self.config.policy.name(),
                        to = kind.name(),
                        "allocator: switching policy"
                    );
                    self.switch(kind);
                }
            }
        }
        Ok(())
    }

    fn weights(&self) -> BTreeMap<String, f64> {
        self.weights
            .iter()
            .map(|(r, w)| (r.clone(), w.as_f64()))
            .collect()
    }

    fn roles(&self) -> Vec<RoleReport> {
        self.role_reports()
    }

    fn handle(&mut self, now: Time, event: AllocatorEvent) {
        let kind = event.kind();
        if let Err(e) = self.try_handle(now, event) {
            tracing::warn!(event = kind, error = %e, "allocator: event ignored");
        }
    }

    fn allocate(&mut self, now: Time) -> Vec<Allocation> {
        self.expire_filters(now);
        let mut out = Vec::new();
        if self.sorter.active_count() == 0 {
            return out;
        }
        let cap = self.config.max_offers_per_framework_per_cycle;
        // Only looked up, never iterated.
        let mut counts: HashMap<FrameworkId, usize, FixedHash> = HashMap::default();
        let mut capped: Vec<FrameworkId> = Vec::new();
        let mut quota = self.quota_cycle();
        for slot in self.cycle_agents() {
            if self.sorter.active_count() == 0 {
                break;
            }
            // Roles below their guarantee are served first; then everyone, within limits and
            // leaving headroom for unmet guarantees.
            let first = match &quota {
                Some(q) if q.any_deficit() => self.pick(now, slot, Some((q, true))),
                _ => None,
            };
            let picked = match first {
                Some(p) => Some(p),
                None => self.pick(now, slot, quota.as_ref().map(|q| (q, false))),
            };
            let Some((framework_id, part)) = picked else {
                continue;
            };
            let Some(agent_id) = self.agents.key_at(slot).cloned() else {
                continue;
            };
            let moved = match part {
                Some(resources) => self
                    .move_to_framework(&framework_id, &agent_id, &resources)
                    .map(|()| resources),
                None => self.move_whole_pool(&framework_id, slot),
            };
            let resources = match moved {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "allocator: offer skipped");
                    continue;
                }
            };
            if let Some(q) = quota.as_mut() {
                if let Some(f) = self.frameworks.get(&framework_id) {
                    q.allocated(&f.role, &resources);
                }
            }
            let n = match counts.get_mut(&framework_id) {
                Some(n) => n,
                None => counts.entry(framework_id.clone()).or_insert(0),
            };
            *n += 1;
            if *n >= cap {
                // Out of the running for the rest of this cycle only.
                let _ = self.sorter.deactivate(&framework_id);
                capped.push(framework_id.clone());
            }
            out.push(Allocation {
                framework_id,
                agent_id,
                resources,
            });
        }
        for framework_id in capped {
            self.sync_sorter(&framework_id);
        }
        self.starving.offered(now, &out); // HOOK(revocation)
        out
    }

    fn revocations(&mut self, now: Time) -> Vec<crate::RevocationRequest> {
        self.plan_revocations(now) // HOOK(revocation)
    }

    fn next_wakeup(&self) -> Option<Time> {
        self.filter_index.first().map(|(t, _, _)| *t)
    }

    fn shares(&self) -> Vec<ShareReport> {
        self.frameworks
            .iter()
            .map(|(id, f)| ShareReport {
                framework_id: id.clone(),
                role: f.role.clone(),
                allocated: self
                    .sorter
                    .allocation(id)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                dominant_share: self.sorter.share(id).unwrap_or(0.0),
            })
            .collect()
    }
}
