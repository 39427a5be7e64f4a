//! Executor connections: registration of launched executors, their status updates (which the
//! agent acknowledges at once and then delivers reliably), and framework ↔ executor messages.

use super::executors::ExecPhase;
use super::{Action, AgentCore, AgentTimer, ExecKey};
use agora_actors::transport::ConnId;
use agora_actors::{
    AgentId, ErrorCode, ExecutorId, FrameworkId, Hello, Message, NodeKind, TaskStatus, Time,
    UpdateSource,
};

/// What the agent knows about an executor connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Handshake done; `RegisterExecutor` expected next.
    Pending,
    /// Registered as this executor.
    Bound(ExecKey),
}

impl AgentCore {
    pub(super) fn executor_connected(&mut self, conn: ConnId, peer: Hello, out: &mut Vec<Action>) {
        if self.conns.contains_key(&conn) {
            tracing::warn!(conn, "connection reported twice; keeping the first");
            self.counters.invalid_messages += 1;
            return;
        }
        let refusal = if peer.node_kind != NodeKind::Executor {
            Some((
                ErrorCode::Forbidden,
                format!("a {:?} may not connect to an agent", peer.node_kind),
            ))
        } else if peer.cluster != self.config.cluster {
            let text = format!(
                "cluster {:?} is not {:?}",
                peer.cluster, self.config.cluster
            );
            Some((ErrorCode::ClusterMismatch, text))
        } else if self.conns.len() >= self.config.max_executor_conns {
            let text = format!("too many executor connections ({})", self.conns.len());
            Some((ErrorCode::TooLarge, text))
        } else {
            None
        };
        match refusal {
            Some((code, text)) => self.refuse_conn(conn, code, text, out),
            None => {
                tracing::debug!(conn, peer = %peer.node_id, "executor connected");
                self.conns.insert(conn, ConnState::Pending);
            }
        }
    }

    /// Fatal refusal of a connection that is not (or no longer) a registered executor.
    fn refuse_conn(&mut self, conn: ConnId, code: ErrorCode, text: String, out: &mut Vec<Action>) {
        tracing::warn!(conn, ?code, %text, "refusing executor connection");
        self.counters.invalid_messages += 1;
        self.conns.remove(&conn);
        out.push(Action::SendExecutor {
            conn,
            msg: Message::fatal(code, text),
        });
        out.push(Action::CloseExecutor { conn });
    }

    /// Non-fatal complaint to a registered executor.
    fn executor_error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        text: String,
        out: &mut Vec<Action>,
    ) {
        tracing::warn!(conn, ?code, %text, "bad message from executor");
        self.counters.invalid_messages += 1;
        out.push(Action::SendExecutor {
            conn,
            msg: Message::error(code, text),
        });
    }

    pub(super) fn on_executor_message(
        &mut self,
        now: Time,
        conn: ConnId,
        msg: Message,
        out: &mut Vec<Action>,
    ) {
        match self.conns.get(&conn).cloned() {
            None => {
                let text = format!("{} on an unknown connection", msg.kind());
                self.refuse_conn(conn, ErrorCode::NotSubscribed, text, out)
            }
            Some(ConnState::Pending) => match msg {
                Message::RegisterExecutor {
                    framework_id,
                    executor_id,
                } => self.register_executor(conn, (framework_id, executor_id), out),
                other => {
                    let text = format!("{} before RegisterExecutor", other.kind());
                    self.refuse_conn(conn, ErrorCode::NotSubscribed, text, out)
                }
            },
            Some(ConnState::Bound(key)) => match msg {
                Message::StatusUpdate {
                    framework_id,
                    status,
                } => self.executor_status_update(now, conn, &key, framework_id, status, out),
                Message::ExecutorToFramework {
                    framework_id,
                    executor_id,
                    data,
                    ..
                } => self.executor_to_framework(conn, &key, (framework_id, executor_id), data, out),
                other => {
                    let text = format!("unexpected {} from executor {}", other.kind(), key.1);
                    self.executor_error(conn, ErrorCode::BadRequest, text, out)
                }
            },
        }
    }

    /// Binds the connection to a launched executor that has not registered, then hands it the
    /// tasks that waited for it and any kills requested while it was unreachable.
    fn register_executor(&mut self, conn: ConnId, key: ExecKey, out: &mut Vec<Action>) {
        let Some(agent_id) = self.reg.agent_id.clone() else {
            let text = "the agent is not registered with a master yet".to_string();
            return self.refuse_conn(conn, ErrorCode::NotSubscribed, text, out);
        };
        let (framework, refusal) = match (self.frameworks.get(&key.0), self.executors.get(&key)) {
            (Some(f), Some(e)) if e.termination.is_some() => (f.clone(), Some("is shutting down")),
            (Some(f), Some(e)) if matches!(e.phase, ExecPhase::Registered { .. }) => {
                (f.clone(), Some("is registered already"))
            }
            (Some(f), Some(_)) => (f.clone(), None),
            _ => (
                agora_actors::FrameworkInfo::new(""),
                Some("was not launched by this agent"),
            ),
        };
        if let Some(why) = refusal {
            let text = format!("executor {} of framework {} {why}", key.1, key.0);
            return self.refuse_conn(conn, ErrorCode::NotFound, text, out);
        }
        let Some(exec) = self.executors.get_mut(&key) else {
            return;
        };
        exec.phase = ExecPhase::Registered { conn };
        exec.register_deadline = None;
        self.conns.insert(conn, ConnState::Bound(key.clone()));
        self.counters.executors_registered += 1;
        tracing::info!(framework = %key.0, executor = %key.1, conn, "executor registered");
        out.push(Action::SendExecutor {
            conn,
            msg: Message::ExecutorRegistered {
                agent_id,
                framework: framework.clone(),
                executor: exec.info.clone(),
            },
        });
        for task_id in std::mem::take(&mut exec.queued) {
            let Some(task) = self.tasks.get(&(key.0.clone(), task_id.clone())) else {
                continue;
            };
            if task.state.is_terminal() {
                continue;
            }
            exec.tasks.insert(task_id);
            self.counters.tasks_sent_to_executors += 1;
            out.push(Action::SendExecutor {
                conn,
                msg: Message::RunTask {
                    framework: framework.clone(),
                    task: task.info.clone(),
                },
            });
        }
        for task_id in &exec.tasks {
            let Some(task) = self.tasks.get(&(key.0.clone(), task_id.clone())) else {
                continue;
            };
            if let (Some(grace_ms), false) = (task.kill_grace_ms, task.state.is_terminal()) {
                out.push(Action::SendExecutor {
                    conn,
                    msg: Message::KillTask {
                        framework_id: key.0.clone(),
                        task_id: task_id.clone(),
                        grace_ms,
                    },
                });
            }
        }
    }

    /// Records the executor's update, acknowledges it at once (from now on the agent owns its
    /// delivery) and queues it for the master. Retries of the same uuid are acknowledged again
    /// but queued once.
    fn executor_status_update(
        &mut self,
        now: Time,
        conn: ConnId,
        key: &ExecKey,
        framework_id: FrameworkId,
        mut status: TaskStatus,
        out: &mut Vec<Action>,
    ) {
        self.counters.status_updates_received += 1;
        if framework_id != key.0 {
            let text = format!(
                "update for framework {framework_id} from an executor of {}",
                key.0
            );
            return self.executor_error(conn, ErrorCode::Forbidden, text, out);
        }
        let Some(uuid) = status.uuid else {
            let text = format!("update for task {} without a uuid", status.task_id);
            return self.executor_error(conn, ErrorCode::BadRequest, text, out);
        };
        out.push(Action::SendExecutor {
            conn,
            msg: Message::StatusUpdateAck {
                framework_id: framework_id.clone(),
                task_id: status.task_id.clone(),
                uuid,
            },
        });
        let exec = self.executors.get(key);
        let owned = exec.is_some_and(|e| e.tasks.contains(&status.task_id));
        let sandbox = exec.map(|e| e.sandbox.clone());
        let tkey = (framework_id.clone(), status.task_id.clone());
        let task = self.tasks.get_mut(&tkey).filter(|_| owned);
        let Some(task) = task else {
            // Acknowledged anyway so the executor stops retrying something we cannot place.
            let text = format!(
                "task {} is not running in executor {}",
                status.task_id, key.1
            );
            return self.executor_error(conn, ErrorCode::NotFound, text, out);
        };
        if !task.remember_uuid(uuid) {
            self.counters.duplicate_status_updates += 1;
            tracing::debug!(task = %status.task_id, uuid, "duplicate executor update");
            return;
        }
        if task.state.is_terminal() {
            tracing::warn!(task = %status.task_id, was = task.state.name(), got = status.state.name(),
                "update after a terminal state dropped");
            self.counters.invalid_messages += 1;
            return;
        }
        task.state = status.state;
        status.source = UpdateSource::Executor;
        status.agent_id = self.reg.agent_id.clone();
        status.executor_id = Some(key.1.clone());
        status.sandbox = sandbox;
        let online = self.online();
        self.updates.enqueue(
            now,
            online,
            framework_id,
            status,
            uuid,
            &mut self.counters,
            out,
        );
    }

    fn executor_to_framework(
        &mut self,
        conn: ConnId,
        key: &ExecKey,
        claimed: (FrameworkId, ExecutorId),
        data: Vec<u8>,
        out: &mut Vec<Action>,
    ) {
        if claimed != *key {
            let text = format!(
                "message claims executor {} but this is {}",
                claimed.1, key.1
            );
            return self.executor_error(conn, ErrorCode::Forbidden, text, out);
        }
        let agent_id = self.reg.agent_id.clone().filter(|_| self.online());
        let Some(agent_id) = agent_id else {
            // Framework messages are best effort, like in Mesos.
            self.counters.messages_dropped += 1;
            tracing::debug!(executor = %key.1, "executor message dropped: master unreachable");
            return;
        };
        out.push(Action::SendMaster(Message::ExecutorToFramework {
            framework_id: claimed.0,
            executor_id: claimed.1,
            agent_id,
            data,
        }));
    }

    pub(super) fn framework_to_executor(
        &mut self,
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        agent_id: AgentId,
        data: Vec<u8>,
        out: &mut Vec<Action>,
    ) {
        if self.reg.agent_id.as_ref() != Some(&agent_id) {
            let text = format!("framework message for agent {agent_id}");
            return self.refuse_master(ErrorCode::BadRequest, text, out);
        }
        let key = (framework_id, executor_id);
        let Some(ExecPhase::Registered { conn }) = self.executors.get(&key).map(|e| e.phase) else {
            self.counters.messages_dropped += 1;
            tracing::warn!(framework = %key.0, executor = %key.1,
                "framework message dropped: executor not registered here");
            return;
        };
        out.push(Action::SendExecutor {
            conn,
            msg: Message::FrameworkToExecutor {
                framework_id: key.0,
                executor_id: key.1,
                agent_id,
                data,
            },
        });
    }

    /// A registered executor's connection dropped: it may come back (same ids) before the
    /// register timeout; otherwise its container is killed. Its tasks keep running meanwhile.
    pub(super) fn executor_disconnected(&mut self, now: Time, conn: ConnId, out: &mut Vec<Action>) {
        let Some(ConnState::Bound(key)) = self.conns.remove(&conn) else {
            tracing::debug!(conn, "unregistered executor connection closed");
            return;
        };
        let timeout_ms = self.config.executor_register_timeout_ms;
        let Some(exec) = self.executors.get_mut(&key) else {
            return;
        };
        if exec.phase != (ExecPhase::Registered { conn }) {
            return;
        }
        exec.phase = ExecPhase::Disconnected;
        if exec.termination.is_some() {
            return; // being killed anyway; its exit ends the tasks
        }
        let deadline = now.plus_ms(timeout_ms);
        exec.register_deadline = Some(deadline);
        tracing::warn!(framework = %key.0, executor = %key.1, timeout_ms,
            "executor disconnected; waiting for it to register again");
        out.push(Action::SetTimer {
            timer: AgentTimer::ExecutorRegisterTimeout {
                container_id: exec.container_id.clone(),
            },
            at: deadline,
        });
    }
}
