//! The agent's session with the master: (re-)registration with retries, pings, and the
//! dispatch of everything the master sends.

use super::{Action, AgentCore, AgentTimer};
use agora_actors::{AgentId, ErrorCode, Message, TaskReport, Time};

#[derive(Debug, Default)]
pub(crate) struct Registration {
    /// The master link is up.
    pub connected: bool,
    /// `AgentRegistered` arrived on the current connection.
    pub registered: bool,
    /// Assigned by the master on first registration; kept across reconnections.
    pub agent_id: Option<AgentId>,
    pub ping_interval_ms: u64,
}

impl AgentCore {
    pub(super) fn master_connected(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.reg.connected {
            tracing::debug!("master connected twice without a disconnect; registering again");
        }
        self.reg.connected = true;
        self.reg.registered = false;
        self.send_registration(now, out);
    }

    pub(super) fn master_disconnected(&mut self) {
        tracing::info!("master link lost; holding status updates until re-registration");
        self.reg.connected = false;
        self.reg.registered = false;
        self.updates.offline();
    }

    pub(super) fn retry_registration(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.reg.connected && !self.reg.registered {
            tracing::info!("no answer to registration yet; retrying");
            self.send_registration(now, out);
        }
    }

    /// `RegisterAgent` the first time, `ReregisterAgent` (with everything running here) once
    /// the master has given us an id, then a retry timer.
    fn send_registration(&mut self, now: Time, out: &mut Vec<Action>) {
        let c = &self.config;
        let msg = match &self.reg.agent_id {
            None => Message::RegisterAgent {
                hostname: c.hostname.clone(),
                endpoint: c.endpoint.clone(),
                resources: c.resources.clone(),
                attributes: c.attributes.clone(),
            },
            Some(agent_id) => Message::ReregisterAgent {
                agent_id: agent_id.clone(),
                hostname: c.hostname.clone(),
                endpoint: c.endpoint.clone(),
                resources: c.resources.clone(),
                attributes: c.attributes.clone(),
                tasks: self.task_reports(),
                frameworks: self.frameworks.values().cloned().collect(),
            },
        };
        self.counters.registration_attempts += 1;
        out.push(Action::SendMaster(msg));
        out.push(Action::SetTimer {
            timer: AgentTimer::RetryRegistration,
            at: now.plus_ms(self.config.register_retry_ms),
        });
    }

    /// Every task the agent holds, terminal-but-unacknowledged ones included, so a failed-over
    /// master can rebuild its view.
    fn task_reports(&self) -> Vec<TaskReport> {
        self.tasks
            .iter()
            .map(|((fw, _), t)| TaskReport {
                framework_id: fw.clone(),
                executor_id: t.executor_id.clone(),
                task: t.info.clone(),
                state: t.state,
            })
            .collect()
    }

    fn agent_registered(
        &mut self,
        now: Time,
        agent_id: AgentId,
        ping_interval_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if let Err(e) = agent_id.validate() {
            self.refuse_master(ErrorCode::BadRequest, format!("bad agent id: {e}"), out);
            return;
        }
        if let Some(old) = &self.reg.agent_id {
            if *old != agent_id {
                // The master forgot us and gave a new identity; adopting it would re-label tasks
                // launched under the old one. Stay unregistered and keep re-registering.
                tracing::error!(
                    old = %old,
                    new = %agent_id,
                    "master answered re-registration with a different agent id; ignoring it"
                );
                self.counters.invalid_messages += 1;
                return;
            }
        }
        if self.reg.registered {
            tracing::debug!(agent = %agent_id, "duplicate AgentRegistered ignored");
            return;
        }
        if self.reg.agent_id.is_some() {
            self.counters.reregistrations += 1;
            tracing::info!(agent = %agent_id, "re-registered with the master");
        } else {
            self.counters.registrations += 1;
            tracing::info!(agent = %agent_id, "registered with the master");
        }
        self.reg.agent_id = Some(agent_id);
        self.reg.registered = true;
        self.reg.ping_interval_ms = ping_interval_ms;
        self.updates.flush(now, &mut self.counters, out);
    }

    pub(super) fn on_master_message(&mut self, now: Time, msg: Message, out: &mut Vec<Action>) {
        if !self.reg.connected {
            // The shell should not deliver these; harmless to drop.
            tracing::warn!(
                kind = msg.kind(),
                "message from the master while disconnected"
            );
            self.counters.invalid_messages += 1;
            return;
        }
        match msg {
            Message::AgentRegistered {
                agent_id,
                ping_interval_ms,
            } => self.agent_registered(now, agent_id, ping_interval_ms, out),
            Message::Error {
                code,
                message,
                fatal,
            } => {
                self.counters.master_errors += 1;
                if fatal {
                    tracing::error!(?code, %message, "fatal error from the master");
                } else {
                    tracing::warn!(?code, %message, "error from the master");
                }
            }
            Message::StatusUpdateAck {
                framework_id,
                task_id,
                uuid,
            } => self.master_ack(now, (framework_id, task_id), uuid, out),
            Message::Ping if !self.reg.registered => {
                // No Pong: the master's ping timeout then makes it treat us as gone, which is
                // right while we have not registered on this connection.
                tracing::debug!("ping before registration ignored");
            }
            msg if !self.reg.registered => {
                let text = format!("{} before the agent is registered", msg.kind());
                self.refuse_master(ErrorCode::NotSubscribed, text, out);
            }
            msg => self.on_registered_master_message(now, msg, out),
        }
    }

    fn on_registered_master_message(&mut self, now: Time, msg: Message, out: &mut Vec<Action>) {
        match msg {
            Message::Ping => out.push(Action::SendMaster(Message::Pong)),
            Message::RunTask { framework, task } => self.run_task(now, framework, task, out),
            Message::KillTask {
                framework_id,
                task_id,
                grace_ms,
            } => self.kill_task(now, (framework_id, task_id), grace_ms, out),
            Message::ShutdownFramework { framework_id } => {
                self.shutdown_framework(&framework_id, out)
            }
            Message::FrameworkToExecutor {
                framework_id,
                executor_id,
                agent_id,
                data,
            } => self.framework_to_executor(framework_id, executor_id, agent_id, data, out),
            other => {
                let text = format!("unexpected {} from the master", other.kind());
                self.refuse_master(ErrorCode::BadRequest, text, out);
            }
        }
    }
}
