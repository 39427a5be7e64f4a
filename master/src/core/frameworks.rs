//! Frameworks: subscribe, failover, disconnect, removal (teardown or failover timeout).

use super::model::{Binding, FrameworkEntry};
use super::{reasons, standby, validate, Action, MasterCore, MasterError, MasterTimer, Out};
use agora_actors::transport::ConnId;
use agora_actors::{ErrorCode, FrameworkId, FrameworkInfo, Message, TaskState, Time};
use agora_allocator::AllocatorEvent;
use std::collections::BTreeSet;
use tracing::{debug, info, warn};

impl MasterCore {
    pub(crate) fn subscribe(
        &mut self,
        now: Time,
        conn: ConnId,
        info: FrameworkInfo,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        let info = validate::framework_info(&info).map_err(MasterError::InvalidFramework)?;
        if let Some(Binding::Standby(fw)) = self.conns.get(&conn).map(|c| c.binding.clone()) {
            // A standby that subscribes normally takes over explicitly, like any instance.
            self.drop_standby(&fw, conn);
        }
        if let Some(Binding::Framework(fw)) = self.conns.get(&conn).map(|c| c.binding.clone()) {
            if info.id.as_ref() != Some(&fw) {
                return Err(MasterError::AlreadySubscribed(fw));
            }
            // A retried subscribe on the same connection: confirm again, change nothing.
            debug!(conn, framework = %fw, "repeated subscribe");
            out.push(Action::Send {
                conn,
                msg: self.subscribed_message(&fw),
            });
            return Ok(());
        }
        match info.id.clone() {
            Some(id) if self.removed_frameworks.contains(&id) => {
                Err(MasterError::FrameworkRemoved(id))
            }
            Some(id) if self.frameworks.contains_key(&id) => {
                self.failover_framework(now, conn, id, info, out)
            }
            // Unknown id: the master restarted (or this framework's id came from a previous
            // incarnation); the scheduler is the authority on its own id.
            Some(id) => self.add_framework(now, conn, id, info, out),
            None => {
                let id = loop {
                    let id = self.framework_ids.framework();
                    if !self.frameworks.contains_key(&id) && !self.removed_frameworks.contains(&id)
                    {
                        break id;
                    }
                };
                self.add_framework(now, conn, id, info, out)
            }
        }
    }

    pub(crate) fn subscribed_message(&self, fw: &FrameworkId) -> Message {
        Message::Subscribed {
            framework_id: fw.clone(),
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
        }
    }

    fn add_framework(
        &mut self,
        now: Time,
        conn: ConnId,
        id: FrameworkId,
        mut info: FrameworkInfo,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        if self.frameworks.len() >= self.config.max_frameworks {
            let why = format!(
                "the master already has {} frameworks",
                self.frameworks.len()
            );
            return Err(MasterError::LimitReached(why));
        }
        info.id = Some(id.clone());
        info!(framework = %id, name = %info.name, role = info.role(), "framework subscribed");
        let entry = FrameworkEntry {
            info: info.clone(),
            conn: Some(conn),
            generation: 1,
            registered_at: now,
            info_unknown: false,
            suppressed: false,
            offers: BTreeSet::new(),
            tasks: BTreeSet::new(),
            standbys: Vec::new(),
            standby_takeover_at: now,
        };
        self.frameworks.insert(id.clone(), entry);
        self.bind(conn, Binding::Framework(id.clone()));
        self.counters.frameworks_subscribed += 1;
        out.push(Action::Send {
            conn,
            msg: self.subscribed_message(&id),
        });
        out.push(Action::Allocator(AllocatorEvent::AddFramework {
            used: self.framework_used_by_agent(&id),
            framework_id: id,
            info,
            active: true,
        }));
        Ok(())
    }

    /// A scheduler takes over a known framework id: allowed only for the same framework
    /// (name and user match); the previous scheduler, if still connected, is cut off.
    pub(super) fn failover_framework(
        &mut self,
        now: Time,
        conn: ConnId,
        id: FrameworkId,
        mut info: FrameworkInfo,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        let Some(existing) = self.frameworks.get(&id) else {
            return self.add_framework(now, conn, id, info, out);
        };
        if !existing.info_unknown
            && (existing.info.name != info.name || existing.info.user != info.user)
        {
            return Err(MasterError::FrameworkIdTaken {
                id,
                name: existing.info.name.clone(),
                user: existing.info.user.clone(),
            });
        }
        let roles_changed = existing.info.roles != info.roles;
        let old_conn = existing.conn;
        // Offers made to the previous scheduler are void. With a role change the allocator
        // forgets the framework below, which releases them; otherwise they are recovered.
        self.rescind_framework_offers(&id, !roles_changed, false, out);
        if let Some(old) = old_conn.filter(|c| *c != conn) {
            warn!(framework = %id, old_conn = old, conn, "framework failed over; closing the old scheduler");
            self.conns.remove(&old);
            let last = Message::fatal(
                ErrorCode::Forbidden,
                "framework failed over to a new scheduler",
            );
            out.push(Action::Close {
                conn: old,
                last: Some(last),
            });
        }
        info.id = Some(id.clone());
        let Some(entry) = self.frameworks.get_mut(&id) else {
            return Ok(());
        };
        entry.info = info.clone();
        entry.info_unknown = false;
        entry.conn = Some(conn);
        entry.generation += 1;
        self.bind(conn, Binding::Framework(id.clone()));
        self.counters.frameworks_failed_over += 1;
        info!(framework = %id, conn, roles_changed, "framework re-subscribed");
        out.push(Action::Send {
            conn,
            msg: self.subscribed_message(&id),
        });
        if roles_changed {
            // The allocator has no "update framework" event: re-add it with what it holds.
            out.push(Action::Allocator(AllocatorEvent::RemoveFramework {
                framework_id: id.clone(),
            }));
            out.push(Action::Allocator(AllocatorEvent::AddFramework {
                used: self.framework_used_by_agent(&id),
                framework_id: id,
                info,
                active: true,
            }));
        } else {
            out.push(Action::Allocator(AllocatorEvent::ActivateFramework {
                framework_id: id,
            }));
        }
        Ok(())
    }

    /// A framework learnt from a re-registering agent: inactive until its scheduler subscribes,
    /// removed if it does not within its failover timeout (at least the recovery grace).
    pub(crate) fn add_recovered_framework(
        &mut self,
        now: Time,
        id: FrameworkId,
        info: Option<FrameworkInfo>,
        out: &mut Out,
    ) {
        let info_unknown = info.is_none();
        let mut info = info.unwrap_or_else(|| {
            let mut i = FrameworkInfo::new("unknown");
            i.user = String::new();
            i
        });
        info.id = Some(id.clone());
        info!(framework = %id, name = %info.name, "framework recovered from an agent report");
        let wait_ms = info
            .failover_timeout_ms
            .max(self.config.recovered_framework_grace_ms);
        let entry = FrameworkEntry {
            info: info.clone(),
            conn: None,
            generation: 1,
            registered_at: now,
            info_unknown,
            suppressed: false,
            offers: BTreeSet::new(),
            tasks: BTreeSet::new(),
            standbys: Vec::new(),
            standby_takeover_at: standby::recovered_takeover_at(now, info.failover_timeout_ms),
        };
        self.frameworks.insert(id.clone(), entry);
        out.push(Action::Allocator(AllocatorEvent::AddFramework {
            framework_id: id.clone(),
            info,
            used: Default::default(),
            active: false,
        }));
        out.push(Action::SetTimer {
            timer: MasterTimer::FrameworkFailover {
                framework_id: id,
                generation: 1,
            },
            at: now.plus_ms(wait_ms),
        });
    }

    /// The scheduler's connection dropped: no more offers, tasks keep running for up to the
    /// framework's failover timeout.
    pub(crate) fn scheduler_disconnected(
        &mut self,
        now: Time,
        fw: &FrameworkId,
        conn: ConnId,
        out: &mut Out,
    ) {
        let Some(entry) = self.frameworks.get_mut(fw) else {
            return;
        };
        if entry.conn != Some(conn) {
            return;
        }
        entry.conn = None;
        entry.generation += 1;
        entry.standby_takeover_at = now;
        let (generation, timeout_ms) = (entry.generation, entry.info.failover_timeout_ms);
        self.counters.frameworks_disconnected += 1;
        if self.promote_standby(now, fw, out) {
            return;
        }
        info!(framework = %fw, timeout_ms, "scheduler disconnected; waiting for failover");
        self.rescind_framework_offers(fw, true, false, out);
        out.push(Action::Allocator(AllocatorEvent::DeactivateFramework {
            framework_id: fw.clone(),
        }));
        out.push(Action::SetTimer {
            timer: MasterTimer::FrameworkFailover {
                framework_id: fw.clone(),
                generation,
            },
            at: now.plus_ms(timeout_ms),
        });
    }

    pub(crate) fn failover_expired(
        &mut self,
        now: Time,
        fw: &FrameworkId,
        generation: u64,
        out: &mut Out,
    ) {
        match self.frameworks.get(fw) {
            Some(f) if f.conn.is_none() && f.generation == generation => {
                self.remove_framework(now, fw, "failover timeout expired", out)
            }
            _ => debug!(framework = %fw, generation, "stale failover timer"),
        }
    }

    pub(crate) fn teardown(&mut self, now: Time, conn: ConnId, fw: FrameworkId, out: &mut Out) {
        info!(framework = %fw, conn, "teardown requested");
        self.remove_framework(now, &fw, "teardown", out);
    }

    /// Removes a framework: kills its tasks, shuts it down on its agents, forgets it.
    pub(crate) fn remove_framework(
        &mut self,
        now: Time,
        fw: &FrameworkId,
        why: &str,
        out: &mut Out,
    ) {
        let Some(entry) = self.frameworks.get(fw) else {
            return;
        };
        warn!(framework = %fw, why, "removing framework");
        let keys: Vec<_> = entry
            .tasks
            .iter()
            .map(|t| (fw.clone(), t.clone()))
            .collect();
        // Every agent is told, not only those the master sees executors on: an executor whose
        // tasks have all ended is no longer visible here but may still run (a shared executor).
        let mut agents: BTreeSet<_> = self.agents.keys().cloned().collect();
        // RemoveFramework releases everything the allocator had for it: no Recover anywhere.
        self.rescind_framework_offers(fw, false, false, out);
        for key in keys {
            let Some(agent) = self.tasks.get(&key).map(|t| t.agent_id.clone()) else {
                continue;
            };
            let msg = self.kill_message(&key.0, &key.1);
            self.send_to_agent(&agent, msg, out);
            agents.insert(agent);
            let reason = Some(reasons::FRAMEWORK_REMOVED.to_string());
            self.finish_task(now, &key, TaskState::Killed, reason, false, out);
        }
        for agent in agents {
            if let Some(a) = self.agents.get_mut(&agent) {
                a.executors.retain(|(f, _), _| f != fw);
            }
            let msg = Message::ShutdownFramework {
                framework_id: fw.clone(),
            };
            self.send_to_agent(&agent, msg, out);
        }
        out.push(Action::Allocator(AllocatorEvent::RemoveFramework {
            framework_id: fw.clone(),
        }));
        if let Some(conn) = self.frameworks.remove(fw).and_then(|f| f.conn) {
            self.conns.remove(&conn);
            out.push(Action::Close { conn, last: None });
        }
        self.removed_frameworks
            .insert(fw.clone(), self.config.max_removed_frameworks);
        self.counters.frameworks_removed += 1;
    }

    pub(crate) fn heartbeat(&mut self, now: Time, out: &mut Out) {
        for conn in self.frameworks.values().filter_map(|f| f.conn) {
            out.push(Action::Send {
                conn,
                msg: Message::Heartbeat,
            });
        }
        out.push(Action::SetTimer {
            timer: MasterTimer::Heartbeat,
            at: now.plus_ms(self.config.heartbeat_interval_ms),
        });
    }

    pub(crate) fn revive_or_suppress(&mut self, fw: FrameworkId, suppress: bool, out: &mut Out) {
        if let Some(f) = self.frameworks.get_mut(&fw) {
            f.suppressed = suppress;
        }
        let event = if suppress {
            AllocatorEvent::Suppress { framework_id: fw }
        } else {
            AllocatorEvent::Revive { framework_id: fw }
        };
        out.push(Action::Allocator(event));
    }
}

/// What the replicated registry says about one framework (the core does not depend on the
/// registry's types).
#[derive(Debug, Clone)]
pub struct RegistryFramework {
    pub id: FrameworkId,
    pub name: String,
    pub roles: Vec<String>,
    pub failover_timeout_ms: u64,
}

impl MasterCore {
    /// Whether this framework was removed for good (torn down or failed over too late).
    pub fn framework_removed(&self, id: &FrameworkId) -> bool {
        self.removed_frameworks.contains(id)
    }

    /// A new leader starts from what the registry holds: frameworks removed for good may not
    /// re-subscribe (and their tasks reported by agents are shut down); frameworks admitted
    /// earlier are known, inactive until their scheduler re-subscribes, and removed if it does
    /// not within their failover timeout (at least the recovery grace). Call after `start`.
    pub fn restore_registry(
        &mut self,
        now: Time,
        removed: impl IntoIterator<Item = FrameworkId>,
        frameworks: Vec<RegistryFramework>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        for id in removed {
            self.removed_frameworks
                .insert(id, self.config.max_removed_frameworks);
        }
        for f in frameworks {
            if self.frameworks.contains_key(&f.id) || self.removed_frameworks.contains(&f.id) {
                continue;
            }
            if self.frameworks.len() >= self.config.max_frameworks {
                warn!(framework = %f.id, "framework limit reached; not restoring it");
                continue;
            }
            let mut info = FrameworkInfo::new(&f.name);
            info.roles = f.roles;
            info.failover_timeout_ms = f.failover_timeout_ms;
            self.add_recovered_framework(now, f.id.clone(), Some(info), &mut out);
            // The registry does not record the user: like a framework learnt from an agent,
            // the first scheduler to re-subscribe with this id is taken as its own.
            if let Some(e) = self.frameworks.get_mut(&f.id) {
                e.info_unknown = true;
            }
        }
        out
    }
}
