//! Tests of the agent core: inputs in, actions out, no runtime.

mod launch;
mod lifecycle;
mod protocol;
mod recovery;
mod registration;
mod status;

use super::*;
use agora_actors::{CommandInfo, ExecutorInfo, NodeKind, TaskInfo};

pub const AGENT: &str = "agent-1";
pub const CLUSTER: &str = "test";
pub const REGISTER_TIMEOUT_MS: u64 = 30_000;

pub fn config() -> AgentConfig {
    AgentConfig {
        cluster: CLUSTER.into(),
        hostname: "node-1".into(),
        endpoint: "10.0.0.1:5051".into(),
        resources: res("cpus:4;mem:4096;disk:10000;ports:[31000-32000]"),
        work_dir: "/var/agora/".into(),
        command_executor_argv: vec!["/usr/bin/agora".into(), "executor".into()],
        max_pending_updates: 100,
        ..AgentConfig::default()
    }
}

pub fn res(s: &str) -> Resources {
    Resources::parse(s).expect("test resources parse")
}
pub fn fw_id() -> FrameworkId {
    FrameworkId::new("fw-1").unwrap()
}
pub fn tid(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}
pub fn eid(s: &str) -> ExecutorId {
    ExecutorId::new(s).unwrap()
}
pub fn agent_id() -> AgentId {
    AgentId::new(AGENT).unwrap()
}

pub fn framework() -> FrameworkInfo {
    let mut f = FrameworkInfo::new("test-framework");
    f.id = Some(fw_id());
    f
}

/// A task for the built-in command executor.
pub fn command_task(id: &str, resources: &str) -> TaskInfo {
    TaskInfo {
        container: None,
        task_id: tid(id),
        name: format!("task {id}"),
        agent_id: agent_id(),
        resources: res(resources),
        command: Some(CommandInfo::shell("sleep 10")),
        executor: None,
        data: vec![],
    }
}

pub fn custom_executor(id: &str) -> ExecutorInfo {
    let mut cmd = CommandInfo::shell("./my-executor --fast");
    cmd.env = vec![
        ("MODE".into(), "fast".into()),
        ("AGORA_AGENT_ID".into(), "spoofed".into()),
    ];
    ExecutorInfo {
        executor_id: eid(id),
        name: "custom".into(),
        command: Some(cmd),
        resources: res("cpus:0.5;mem:128"),
    }
}

/// A task for a custom executor.
pub fn custom_task(id: &str, executor: &str, resources: &str) -> TaskInfo {
    TaskInfo {
        container: None,
        command: None,
        executor: Some(custom_executor(executor)),
        ..command_task(id, resources)
    }
}

/// The core plus a virtual clock.
pub struct Agent {
    pub core: AgentCore,
    pub now: Time,
}

impl Agent {
    pub fn new() -> Agent {
        Agent::with_config(config())
    }

    pub fn with_config(config: AgentConfig) -> Agent {
        let mut core = AgentCore::new(config, 42);
        assert!(core.start(Time::ZERO).is_empty());
        Agent {
            core,
            now: Time::ZERO,
        }
    }

    /// Connected and registered as `AGENT`.
    pub fn registered() -> Agent {
        let mut a = Agent::new();
        a.handle(Input::MasterConnected);
        a.master(Message::AgentRegistered {
            agent_id: agent_id(),
            ping_interval_ms: 15_000,
        });
        a
    }

    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        self.core.handle(self.now, input)
    }
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
    }
    pub fn master(&mut self, msg: Message) -> Vec<Action> {
        self.handle(Input::FromMaster(msg))
    }
    pub fn run(&mut self, task: TaskInfo) -> Vec<Action> {
        self.master(Message::RunTask {
            framework: framework(),
            task,
        })
    }
    /// Runs a task that must start a new container; returns its launch spec.
    pub fn run_new(&mut self, task: TaskInfo) -> LaunchSpec {
        let out = self.run(task);
        let l = launches(&out);
        assert_eq!(l.len(), 1, "expected one launch in {out:?}");
        l[0].clone()
    }
    pub fn executor_hello(&mut self, conn: ConnId) -> Vec<Action> {
        self.handle(Input::ExecutorConnected {
            conn,
            peer: Hello::new(CLUSTER, NodeKind::Executor, "executor"),
        })
    }
    /// Connects and registers an executor on `conn`.
    pub fn register(&mut self, conn: ConnId, executor: &str) -> Vec<Action> {
        assert!(self.executor_hello(conn).is_empty());
        self.handle(Input::FromExecutor {
            conn,
            msg: Message::RegisterExecutor {
                framework_id: fw_id(),
                executor_id: eid(executor),
            },
        })
    }
    pub fn exec_update(
        &mut self,
        conn: ConnId,
        task: &str,
        state: TaskState,
        uuid: u64,
    ) -> Vec<Action> {
        let mut status = TaskStatus::new(tid(task), state, UpdateSource::Executor);
        status.uuid = Some(uuid);
        self.handle(Input::FromExecutor {
            conn,
            msg: Message::StatusUpdate {
                framework_id: fw_id(),
                status,
            },
        })
    }
    pub fn ack(&mut self, task: &str, uuid: u64) -> Vec<Action> {
        self.master(Message::StatusUpdateAck {
            framework_id: fw_id(),
            task_id: tid(task),
            uuid,
        })
    }
    pub fn exited(
        &mut self,
        container: &ContainerId,
        code: Option<i32>,
        signal: Option<i32>,
        reason: Option<&str>,
    ) -> Vec<Action> {
        self.handle(Input::ContainerExited {
            container_id: container.clone(),
            exit_code: code,
            signal,
            reason: reason.map(str::to_string),
            message: "container ended".into(),
        })
    }
    pub fn used(&self) -> String {
        self.core.state().resources.used
    }
    pub fn task_state(&self, task: &str) -> Option<TaskState> {
        self.core.task_state(&fw_id(), &tid(task))
    }
}

pub fn to_master(out: &[Action]) -> Vec<Message> {
    out.iter()
        .filter_map(|a| match a {
            Action::SendMaster(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

pub fn to_executor(out: &[Action], conn: ConnId) -> Vec<Message> {
    out.iter()
        .filter_map(|a| match a {
            Action::SendExecutor { conn: c, msg } if *c == conn => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// Status updates sent to the master.
pub fn updates(out: &[Action]) -> Vec<TaskStatus> {
    to_master(out)
        .into_iter()
        .filter_map(|m| match m {
            Message::StatusUpdate { status, .. } => Some(status),
            _ => None,
        })
        .collect()
}

pub fn launches(out: &[Action]) -> Vec<LaunchSpec> {
    out.iter()
        .filter_map(|a| match a {
            Action::Launch(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

pub fn kills(out: &[Action]) -> Vec<(ContainerId, u64)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Kill {
                container_id,
                grace_ms,
            } => Some((container_id.clone(), *grace_ms)),
            _ => None,
        })
        .collect()
}

pub fn timers(out: &[Action]) -> Vec<(AgentTimer, Time)> {
    out.iter()
        .filter_map(|a| match a {
            Action::SetTimer { timer, at } => Some((timer.clone(), *at)),
            _ => None,
        })
        .collect()
}

pub fn is_error(m: &Message, want_fatal: bool) -> bool {
    matches!(m, Message::Error { fatal, .. } if *fatal == want_fatal)
}
