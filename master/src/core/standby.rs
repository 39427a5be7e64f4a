//! Standby schedulers: a second instance of a framework waits connected to the master while
//! the active instance is connected, and is promoted the moment that one disconnects.
//!
//! Why promotion is pushed by the master rather than left to the standby's polling: the
//! master is the only party that sees the active connection drop, so promoting there makes the
//! takeover as fast as the disconnect is noticed (a killed process's socket closes at once).
//! The standby still polls (`SubscribeStandby` again every `standby_poll_ms`), which covers the
//! cases without a disconnect event on this master: a new leader learns frameworks from its
//! registry, whose schedulers may or may not come back.

use super::model::Binding;
use super::{validate, Action, MasterCore, MasterError, Out};
use agora_actors::transport::ConnId;
use agora_actors::{FrameworkId, FrameworkInfo, Message, Time};
use tracing::{debug, info, warn};

/// Standby instances one framework may keep waiting at once; more are refused.
pub const MAX_STANDBYS_PER_FRAMEWORK: usize = 16;
/// How long a standby waits before taking over a framework this master learnt without its
/// scheduler (a new leader restoring its registry, agents reporting tasks): the active
/// instance is probably alive and re-subscribing to the new leader, and a standby that won
/// that race would only be cut off again. Capped at half the framework's failover timeout so
/// the standby still takes over before the framework is removed.
pub const STANDBY_WAIT_AFTER_RECOVERY_MS: u64 = 10_000;

/// The `StandingBy` text while another instance is connected.
pub const ACTIVE_SCHEDULER_TEXT: &str = "framework has an active scheduler, standing by";

/// When a standby may take over a framework recovered at `now` without a scheduler.
pub(crate) fn recovered_takeover_at(now: Time, failover_timeout_ms: u64) -> Time {
    now.plus_ms(STANDBY_WAIT_AFTER_RECOVERY_MS.min(failover_timeout_ms / 2))
}

impl MasterCore {
    /// `SubscribeStandby`: register `conn` as a standby of the framework `info.id` names, or
    /// let it take over at once if the framework has had no scheduler for long enough.
    pub(crate) fn subscribe_standby(
        &mut self,
        now: Time,
        conn: ConnId,
        info: FrameworkInfo,
        out: &mut Out,
    ) -> Result<(), MasterError> {
        let info = validate::framework_info(&info).map_err(MasterError::InvalidFramework)?;
        let Some(id) = info.id.clone() else {
            let why =
                "a standby scheduler subscribes with the id of the framework it stands by for";
            return Err(MasterError::InvalidFramework(why.to_string()));
        };
        match self.conns.get(&conn).map(|c| c.binding.clone()) {
            Some(Binding::Framework(fw)) if fw == id => {
                // The standby's poll crossed its promotion: confirm the subscription again.
                debug!(conn, framework = %fw, "standby poll from the promoted instance");
                let msg = self.subscribed_message(&fw);
                out.push(Action::Send { conn, msg });
                return Ok(());
            }
            Some(Binding::Framework(fw)) => return Err(MasterError::AlreadySubscribed(fw)),
            Some(Binding::Standby(fw)) if fw != id => {
                return Err(MasterError::AlreadySubscribed(fw))
            }
            _ => {}
        }
        if self.removed_frameworks.contains(&id) {
            self.drop_standby(&id, conn);
            return Err(MasterError::FrameworkRemoved(id));
        }
        let Some(entry) = self.frameworks.get(&id) else {
            // Nothing to hang it on yet (its active instance has not subscribed to this
            // master): the standby polls again.
            let message = format!("framework {id} is not known to this master yet; standing by");
            out.push(standing_by(conn, &id, message));
            return Ok(());
        };
        if !entry.info_unknown && (entry.info.name != info.name || entry.info.user != info.user) {
            return Err(MasterError::FrameworkIdTaken {
                id,
                name: entry.info.name.clone(),
                user: entry.info.user.clone(),
            });
        }
        if entry.conn.is_none() && now >= entry.standby_takeover_at {
            info!(framework = %id, conn, "standby takes over a framework without a scheduler");
            self.drop_standby(&id, conn);
            self.failover_framework(now, conn, id, info, out)?;
            self.counters.standby_promotions += 1;
            return Ok(());
        }
        self.register_standby(conn, &id, info)?;
        let message = if self.frameworks.get(&id).is_some_and(|e| e.conn.is_some()) {
            ACTIVE_SCHEDULER_TEXT.to_string()
        } else {
            "framework's scheduler may still come back to this new leader; standing by".to_string()
        };
        out.push(standing_by(conn, &id, message));
        Ok(())
    }

    fn register_standby(
        &mut self,
        conn: ConnId,
        id: &FrameworkId,
        info: FrameworkInfo,
    ) -> Result<(), MasterError> {
        let Some(entry) = self.frameworks.get_mut(id) else {
            return Ok(());
        };
        if let Some(known) = entry.standbys.iter_mut().find(|(c, _)| *c == conn) {
            known.1 = info;
            return Ok(());
        }
        if entry.standbys.len() >= MAX_STANDBYS_PER_FRAMEWORK {
            let why = format!(
                "framework {id} already has {MAX_STANDBYS_PER_FRAMEWORK} standby schedulers"
            );
            return Err(MasterError::LimitReached(why));
        }
        info!(framework = %id, conn, standbys = entry.standbys.len() + 1, "standby scheduler waiting");
        entry.standbys.push((conn, info));
        self.bind(conn, Binding::Standby(id.clone()));
        Ok(())
    }

    /// Forgets `conn` as a standby of `fw` (it closed, was promoted, or was refused).
    pub(crate) fn drop_standby(&mut self, fw: &FrameworkId, conn: ConnId) {
        if let Some(entry) = self.frameworks.get_mut(fw) {
            entry.standbys.retain(|(c, _)| *c != conn);
        }
        if let Some(Binding::Standby(_)) = self.conns.get(&conn).map(|c| &c.binding) {
            self.bind(conn, Binding::Unbound);
        }
    }

    /// The active scheduler of `fw` just disconnected: the longest-waiting standby that is
    /// still connected takes over. True if one did.
    pub(crate) fn promote_standby(&mut self, now: Time, fw: &FrameworkId, out: &mut Out) -> bool {
        loop {
            let Some(entry) = self.frameworks.get_mut(fw) else {
                return false;
            };
            if entry.standbys.is_empty() {
                return false;
            }
            let (conn, info) = entry.standbys.remove(0);
            if !self.conns.contains_key(&conn) {
                continue;
            }
            self.bind(conn, Binding::Unbound);
            info!(framework = %fw, conn, "promoting a standby scheduler");
            match self.failover_framework(now, conn, fw.clone(), info, out) {
                Ok(()) => {
                    self.counters.standby_promotions += 1;
                    return true;
                }
                Err(err) => {
                    warn!(framework = %fw, conn, error = %err, "standby could not take over");
                    self.reject(now, conn, err, out);
                }
            }
        }
    }
}

fn standing_by(conn: ConnId, id: &FrameworkId, message: String) -> Action {
    let msg = Message::StandingBy {
        framework_id: id.clone(),
        message,
    };
    Action::Send { conn, msg }
}
