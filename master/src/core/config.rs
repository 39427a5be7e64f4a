//! Master settings. Every limit and interval the core uses lives here, in milliseconds or counts,
//! with Mesos-like defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterConfig {
    /// Cluster name; peers that say hello with another name are refused.
    pub cluster: String,
    /// How long a framework may hold an offer before it is rescinded.
    pub offer_timeout_ms: u64,
    /// How often connected agents are pinged.
    pub agent_ping_interval_ms: u64,
    /// Unanswered pings (or ping rounds spent disconnected) after which an agent is removed.
    pub max_missed_pings: u32,
    /// How often connected schedulers get a `Heartbeat`.
    pub heartbeat_interval_ms: u64,
    /// Grace period the agent gives a task between the polite and the forced kill.
    pub default_kill_grace_ms: u64,
    /// Tasks in one `Accept`; above this every task of the call is refused.
    pub max_tasks_per_accept: usize,
    /// Terminal tasks remembered for `/state` and reconciliation (oldest dropped first).
    pub max_completed_tasks: usize,
    /// Offers per `Offers` message; more are split over several messages.
    pub max_offers_per_message: usize,
    /// Offer ids in one `Accept`/`Decline`.
    pub max_offers_per_call: usize,
    /// Entries of one explicit `Reconcile`.
    pub max_reconcile_tasks: usize,
    /// Admission limits: beyond them registrations are refused with a clear error.
    pub max_agents: usize,
    pub max_frameworks: usize,
    /// Non-terminal tasks in the whole cluster.
    pub max_active_tasks: usize,
    /// Tasks one agent may report when re-registering.
    pub max_tasks_per_agent: usize,
    /// Removed framework ids remembered, so a removed framework cannot silently come back.
    pub max_removed_frameworks: usize,
    /// Refusal attached to allocations that cannot be offered because their agent is
    /// disconnected or has no room left. The allocator does not know about agent connectivity,
    /// so without a refusal it would offer the same resources again at once, in a tight loop.
    pub unofferable_refuse_ms: u64,
    /// Shortest time a framework learnt only from a re-registering agent (master restarted,
    /// scheduler not yet back) is kept waiting for its scheduler, whatever its own failover
    /// timeout says. Plays the role of Mesos's agent re-registration window.
    pub recovered_framework_grace_ms: u64,
    /// Warning time before tasks are killed to revoke their resources, for frameworks that do
    /// not set their own `revocation_grace_ms`.
    pub revocation_grace_ms: u64,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            cluster: "agora".to_string(),
            offer_timeout_ms: 10_000,
            agent_ping_interval_ms: 2_000,
            max_missed_pings: 5,
            heartbeat_interval_ms: 15_000,
            default_kill_grace_ms: 3_000,
            max_tasks_per_accept: 10_000,
            max_completed_tasks: 1_000,
            max_offers_per_message: 1_000,
            max_offers_per_call: 1_000,
            max_reconcile_tasks: 10_000,
            max_agents: 50_000,
            max_frameworks: 10_000,
            max_active_tasks: 1_000_000,
            max_tasks_per_agent: 100_000,
            max_removed_frameworks: 1_000,
            unofferable_refuse_ms: 2_000,
            recovered_framework_grace_ms: 600_000,
            revocation_grace_ms: 30_000,
        }
    }
}
