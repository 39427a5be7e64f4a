//! The leadership core: what a master does about raft's leadership news, as plain decisions.
//! The HA shell ([`crate::ha`]) and the simulator (`sim/`) both drive it, so the simulated
//! masters follow the same rules as real ones:
//!
//! * a master leads (makes offers) only while raft says it is the leader *and* its registry is
//!   current (`Leadership::serving`); it then starts a fresh `MasterCore` with an epoch of its
//!   own, restored from the registry;
//! * when it stops leading it drops that soft state and closes every client connection with
//!   a non-fatal `NotLeader` error naming the leader (clients try the next master);
//! * while not leading it turns new agents and schedulers away with the same error;
//! * the core's admissions and removals become registry ops (write-behind: proposed after the
//!   core answered).
//!
//! No IO, no clock, deterministic maps.

use crate::core::{Input, MasterCore, RegistryFramework};
use crate::registry::{
    AgentRecord, FrameworkRecord, Leadership, RegistryOp, RegistryState, StateRole,
};
use agora_actors::transport::ConnId;
use agora_actors::{ErrorCode, FrameworkId, FrameworkInfo, Message};
use std::collections::BTreeMap;

/// Most registrations remembered between a client's message and the core's answer (a
/// connection that never gets an answer must not grow the map for ever).
pub const MAX_PENDING_REGISTRATIONS: usize = 100_000;

/// What the shell must do after leadership news.
#[derive(Debug, Clone, PartialEq)]
pub enum HaChange {
    /// Start leading: a fresh core whose ids use `epoch`, restored from the registry.
    Lead { term: u64, epoch: u64 },
    /// Stop leading: drop the core and allocator, close every client connection with `closing`.
    StepDown { closing: Message },
}

#[derive(Debug)]
pub struct HaCore {
    /// The master's incarnation (ids minted by a leadership combine it with the term).
    epoch: u64,
    leading: bool,
    leader_text: String,
    pending_agents: BTreeMap<ConnId, AgentRecord>,
    pending_frameworks: BTreeMap<ConnId, FrameworkInfo>,
}

/// The text of `NotLeader` errors, naming the leader when it is known.
pub fn leader_text(leader_id: u64, leader_http: Option<&str>) -> String {
    match (leader_id, leader_http) {
        (0, _) => "not the leader; no leader is known yet".to_string(),
        (id, Some(http)) => format!("not the leader; the leader is master {id} (http {http})"),
        (id, None) => format!("not the leader; the leader is master {id}"),
    }
}

/// The error a standby answers clients with. Not fatal: the client tries the next master.
pub fn not_leader(text: &str) -> Message {
    Message::Error {
        code: ErrorCode::NotLeader,
        message: text.to_string(),
        fatal: false,
    }
}

impl HaCore {
    pub fn new(epoch: u64) -> HaCore {
        HaCore {
            epoch,
            leading: false,
            leader_text: leader_text(0, None),
            pending_agents: BTreeMap::new(),
            pending_frameworks: BTreeMap::new(),
        }
    }

    pub fn leading(&self) -> bool {
        self.leading
    }

    pub fn leader_text(&self) -> &str {
        &self.leader_text
    }

    /// The leader as last reported (for `NotLeader` errors).
    pub fn set_leader_text(&mut self, text: String) {
        self.leader_text = text;
    }

    /// Ids minted by a leadership never repeat those of an earlier one (of any master: the
    /// term differs, or the incarnation does).
    pub fn leader_epoch(&self, term: u64) -> u64 {
        self.epoch
            .saturating_mul(1_000)
            .saturating_add(term % 1_000)
    }

    /// Raft's news: whether this master starts or stops leading.
    pub fn on_leadership(&mut self, l: &Leadership) -> Option<HaChange> {
        let lead = l.role == StateRole::Leader && l.serving;
        if lead && !self.leading {
            self.leading = true;
            return Some(HaChange::Lead {
                term: l.term,
                epoch: self.leader_epoch(l.term),
            });
        }
        if !lead && self.leading {
            self.leading = false;
            self.pending_agents.clear();
            self.pending_frameworks.clear();
            return Some(HaChange::StepDown {
                closing: not_leader(&self.leader_text),
            });
        }
        None
    }

    /// The shell could not start leading (e.g. the allocator failed): it is not leading, and
    /// the next leadership news tries again.
    pub fn lead_failed(&mut self) {
        self.leading = false;
    }

    /// A new agent or scheduler connection: `Ok` goes to the core, `Err` is the message to
    /// close it with.
    pub fn admit_client(&self) -> Result<(), Message> {
        if self.leading {
            Ok(())
        } else {
            Err(not_leader(&self.leader_text))
        }
    }

    pub fn conn_closed(&mut self, conn: ConnId) {
        self.pending_agents.remove(&conn);
        self.pending_frameworks.remove(&conn);
    }

    /// Remembers what registrations say, for the registry entry made when the core admits.
    pub fn observe_input(&mut self, input: &Input) {
        let Input::Message { conn, msg } = input else {
            return;
        };
        if self.pending_agents.len() + self.pending_frameworks.len() >= MAX_PENDING_REGISTRATIONS {
            tracing::warn!(
                conn,
                "too many registrations pending; not recording this one"
            );
            return;
        }
        if let Some(rec) = AgentRecord::of_registration(msg) {
            self.pending_agents.insert(*conn, rec);
        } else if let Message::Subscribe { framework } | Message::SubscribeStandby { framework } =
            msg
        {
            // A standby's info is what the registry records if the master promotes it.
            self.pending_frameworks.insert(*conn, framework.clone());
        }
    }

    /// The registry op for what the core sent on `conn`, if it admitted an agent or framework.
    pub fn observe_output(&mut self, conn: ConnId, msg: &Message) -> Option<RegistryOp> {
        match msg {
            Message::AgentRegistered { agent_id, .. } => {
                let record = self.pending_agents.remove(&conn)?;
                Some(RegistryOp::AdmitAgent {
                    agent_id: agent_id.clone(),
                    record,
                })
            }
            Message::Subscribed { framework_id, .. } => {
                let info = self.pending_frameworks.remove(&conn)?;
                let record = FrameworkRecord {
                    name: info.name,
                    roles: info.roles,
                    failover_timeout_ms: info.failover_timeout_ms,
                };
                Some(RegistryOp::AddFramework {
                    framework_id: framework_id.clone(),
                    record,
                })
            }
            _ => None,
        }
    }

    /// A framework the core removed for good (teardown, failover timeout) leaves the registry
    /// and may never come back, whichever master leads next. The allocator hears of every
    /// removal, also when no agent is connected to be told.
    pub fn observe_allocator(
        core: &MasterCore,
        ev: &agora_allocator::AllocatorEvent,
    ) -> Option<RegistryOp> {
        match ev {
            agora_allocator::AllocatorEvent::RemoveFramework { framework_id }
                if core.framework_removed(framework_id) =>
            {
                Some(RegistryOp::RemoveFramework {
                    framework_id: framework_id.clone(),
                })
            }
            _ => None,
        }
    }
}

/// The registry's framework entries as the core takes them: (removed for good, known).
pub fn registry_frameworks(r: &RegistryState) -> (Vec<FrameworkId>, Vec<RegistryFramework>) {
    let removed = r.removed_frameworks.keys().cloned().collect();
    let known = r
        .frameworks
        .iter()
        .map(|(id, f)| RegistryFramework {
            id: id.clone(),
            name: f.name.clone(),
            roles: f.roles.clone(),
            failover_timeout_ms: f.failover_timeout_ms,
        })
        .collect();
    (removed, known)
}

/// A new leader's core: fresh soft state, restored from the registry (reservations, frameworks
/// known and removed). Returns the core and its first actions. Agents of the registry still
/// get their re-registration window from the shell (`Input::RegistryAgents`).
pub fn leader_core(
    config: crate::core::MasterConfig,
    epoch: u64,
    registry: &RegistryState,
    now: agora_actors::Time,
) -> (MasterCore, Vec<crate::core::Action>) {
    let mut core = MasterCore::new(config, epoch);
    core.restore_reservations(crate::persist::reservations_of(registry));
    core.restore_agent_records(crate::persist::agent_records_of(registry));
    let mut actions = core.start(now);
    let (removed, frameworks) = registry_frameworks(registry);
    actions.extend(core.restore_registry(now, removed, frameworks));
    (core, actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(role: StateRole, serving: bool, term: u64) -> Leadership {
        Leadership {
            leader_id: 1,
            role,
            term,
            serving,
        }
    }

    #[test]
    fn leads_only_when_serving_and_steps_down_with_not_leader() {
        let mut h = HaCore::new(3);
        assert!(h.admit_client().is_err());
        assert_eq!(h.on_leadership(&l(StateRole::Leader, false, 2)), None);
        assert_eq!(
            h.on_leadership(&l(StateRole::Leader, true, 2)),
            Some(HaChange::Lead {
                term: 2,
                epoch: 3_002
            })
        );
        assert!(h.admit_client().is_ok());
        assert_eq!(h.on_leadership(&l(StateRole::Leader, true, 2)), None);
        h.set_leader_text(leader_text(2, Some("10.0.0.2:5080")));
        let Some(HaChange::StepDown { closing }) =
            h.on_leadership(&l(StateRole::Follower, false, 3))
        else {
            panic!("expected a step-down");
        };
        let Message::Error {
            code,
            message,
            fatal,
        } = closing
        else {
            panic!("expected an error");
        };
        assert_eq!(code, ErrorCode::NotLeader);
        assert!(!fatal);
        assert!(
            message.contains("master 2 (http 10.0.0.2:5080)"),
            "{message}"
        );
        assert!(h.admit_client().is_err());
    }
}
