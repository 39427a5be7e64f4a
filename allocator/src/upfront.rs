//! What a framework states at subscribe time (a child module of `drf`): its up-front filters
//! (attribute constraints and a minimum offer, `FrameworkInfo::offer_filters`), checked for
//! every candidate agent in `pick`, and its own strict-priority level.

use super::{AgentState, FrameworkState};
use agora_actors::Resources;

/// True unless the framework refuses `candidate` on this agent up front. Costs one branch for
/// frameworks without filters (the usual case).
pub(super) fn accepts(f: &FrameworkState, agent: &AgentState, candidate: &Resources) -> bool {
    match &f.info {
        Some(info) if !info.offer_filters.is_empty() => {
            info.offer_filters.accepts(&agent.attributes, candidate)
        }
        _ => true,
    }
}

/// The framework's own priority level, if it set one.
pub(super) fn own_priority(f: &FrameworkState) -> Option<u32> {
    f.info.as_ref().and_then(|i| i.priority)
}
