use super::*;
use crate::messages::{CommandInfo, ErrorCode, TaskState};
use crate::resources::Resources;
use std::collections::{BTreeMap, BTreeSet};

/// An executor that answers every launch with RUNNING and every kill with KILLED.
#[derive(Default)]
struct Echo {
    log: Vec<String>,
}

impl Executor for Echo {
    fn registered(
        &mut self,
        _: &mut ExecutorCtx,
        a: &AgentId,
        _: &FrameworkInfo,
        e: &ExecutorInfo,
    ) {
        self.log.push(format!("registered {a} {}", e.executor_id));
    }
    fn launch(&mut self, ctx: &mut ExecutorCtx, task: TaskInfo) {
        self.log.push(format!("launch {}", task.task_id));
        ctx.update(TaskStatus::new(
            task.task_id,
            TaskState::Running,
            UpdateSource::Agent,
        ));
    }
    fn kill(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, grace_ms: u64) {
        self.log.push(format!("kill {task_id} {grace_ms}"));
        ctx.update(TaskStatus::new(
            task_id.clone(),
            TaskState::Killed,
            UpdateSource::Executor,
        ));
    }
    fn message(&mut self, ctx: &mut ExecutorCtx, data: &[u8]) {
        self.log.push(format!("message {}", data.len()));
        ctx.send_message(data.to_vec());
    }
    fn shutdown(&mut self, ctx: &mut ExecutorCtx, grace_ms: u64) {
        self.log.push(format!("shutdown {grace_ms}"));
        ctx.stop();
    }
    fn timer(&mut self, _: &mut ExecutorCtx, token: u64) {
        self.log.push(format!("timer {token}"));
    }
}

fn env() -> ExecutorEnv {
    ExecutorEnv {
        agent_endpoint: "127.0.0.1:5051".into(),
        framework_id: FrameworkId::new("f1").unwrap(),
        executor_id: ExecutorId::new("e1").unwrap(),
        agent_id: AgentId::new("a1").unwrap(),
        sandbox: "/tmp/sandbox".into(),
        cluster: "test".into(),
        shutdown_grace_ms: 3_000,
    }
}

fn vars(env: &ExecutorEnv) -> BTreeMap<String, String> {
    env.to_vars().into_iter().collect()
}

fn lookup(vars: BTreeMap<String, String>) -> impl Fn(&str) -> Result<Option<String>, String> {
    move |k| Ok(vars.get(k).cloned())
}

fn task(id: &str) -> TaskInfo {
    TaskInfo {
        container: None,
        task_id: TaskId::new(id).unwrap(),
        name: id.into(),
        agent_id: AgentId::new("a1").unwrap(),
        resources: Resources::parse("cpus:0.1").unwrap(),
        command: Some(CommandInfo::shell("true")),
        executor: None,
        data: vec![],
    }
}

fn registered_msg() -> Message {
    Message::ExecutorRegistered {
        agent_id: AgentId::new("a1").unwrap(),
        framework: FrameworkInfo::new("fw"),
        executor: ExecutorInfo {
            executor_id: ExecutorId::new("e1").unwrap(),
            name: "e1".into(),
            command: None,
            resources: Resources::new(),
        },
    }
}

fn run_task(id: &str) -> Message {
    Message::RunTask {
        framework: FrameworkInfo::new("fw"),
        task: task(id),
    }
}

fn core() -> ExecutorDriverCore<Echo> {
    let config = ExecutorDriverConfig {
        seed: 7,
        wall_clock_origin_ms: 1_000_000,
        ..Default::default()
    };
    ExecutorDriverCore::new(Echo::default(), &env(), config)
}

fn registered_core() -> ExecutorDriverCore<Echo> {
    let mut c = core();
    c.handle_start(Time(0));
    c.handle_connected(Time(0));
    c.handle_message(Time(1), registered_msg());
    c
}

fn sent_updates(actions: &[ExecAction]) -> Vec<TaskStatus> {
    actions
        .iter()
        .filter_map(|a| match a {
            ExecAction::Send(Message::StatusUpdate { status, .. }) => Some(status.clone()),
            _ => None,
        })
        .collect()
}

fn ack(status: &TaskStatus) -> Message {
    Message::StatusUpdateAck {
        framework_id: FrameworkId::new("f1").unwrap(),
        task_id: status.task_id.clone(),
        uuid: status.uuid.unwrap(),
    }
}

#[test]
fn env_round_trips_and_defaults_the_grace() {
    let e = env();
    assert_eq!(ExecutorEnv::from_lookup(lookup(vars(&e))), Ok(e.clone()));
    let mut v = vars(&e);
    v.remove(ENV_SHUTDOWN_GRACE_MS);
    let parsed = ExecutorEnv::from_lookup(lookup(v)).unwrap();
    assert_eq!(parsed.shutdown_grace_ms, DEFAULT_SHUTDOWN_GRACE_MS);
}

#[test]
fn env_errors_name_the_variable() {
    let cases: Vec<(&str, Option<&str>)> = vec![
        (ENV_AGENT_ENDPOINT, None),
        (ENV_AGENT_ENDPOINT, Some("no-port")),
        (ENV_AGENT_ENDPOINT, Some("host:99999")),
        (ENV_FRAMEWORK_ID, Some("bad/id")),
        (ENV_EXECUTOR_ID, Some("")),
        (ENV_AGENT_ID, None),
        (ENV_SANDBOX, Some("relative/dir")),
        (ENV_CLUSTER, Some("  ")),
        (ENV_SHUTDOWN_GRACE_MS, Some("soon")),
        (ENV_SHUTDOWN_GRACE_MS, Some("999999999")),
    ];
    for (name, value) in cases {
        let mut v = vars(&env());
        match value {
            None => {
                v.remove(name);
            }
            Some(x) => {
                v.insert(name.to_string(), x.to_string());
            }
        }
        match ExecutorEnv::from_lookup(lookup(v)) {
            Err(SdkError::MissingEnv { name: n }) => assert_eq!(n, name),
            Err(SdkError::BadEnv { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}={value:?}: expected an error, got {other:?}"),
        }
    }
    let unreadable = ExecutorEnv::from_lookup(|_| Err("not valid UTF-8".to_string()));
    assert!(matches!(unreadable, Err(SdkError::BadEnv { .. })));
}

#[test]
fn connect_registers_and_registration_reaches_the_executor() {
    let mut c = core();
    let out = c.handle_start(Time(0));
    assert_eq!(
        out,
        vec![ExecAction::SetTimer {
            timer: ExecTimer::Recovery,
            at: Time(15_000)
        }]
    );
    let out = c.handle_connected(Time(5));
    assert_eq!(
        out[0],
        ExecAction::Send(Message::RegisterExecutor {
            framework_id: FrameworkId::new("f1").unwrap(),
            executor_id: ExecutorId::new("e1").unwrap(),
        })
    );
    assert!(matches!(
        out[1],
        ExecAction::SetTimer {
            timer: ExecTimer::RegisterRetry { .. },
            ..
        }
    ));
    c.handle_message(Time(6), registered_msg());
    assert!(c.is_registered());
    assert_eq!(c.executor().log, vec!["registered a1 e1"]);
    // A second answer (to a retried RegisterExecutor) is ignored.
    assert!(c.handle_message(Time(7), registered_msg()).is_empty());
    assert_eq!(c.executor().log.len(), 1);
}

#[test]
fn updates_are_stamped_sent_and_retried_until_acknowledged() {
    let mut c = registered_core();
    let out = c.handle_message(Time(10), run_task("t1"));
    let sent = sent_updates(&out);
    assert_eq!(sent.len(), 1);
    let st = &sent[0];
    assert!(st.uuid.is_some());
    assert_eq!(st.source, UpdateSource::Executor);
    assert_eq!(st.executor_id, Some(ExecutorId::new("e1").unwrap()));
    assert_eq!(st.agent_id, Some(AgentId::new("a1").unwrap()));
    assert_eq!(st.timestamp_ms, 1_000_010);
    let Some(ExecAction::SetTimer { timer, at }) = out.last().cloned() else {
        panic!("no retry timer in {out:?}");
    };
    assert!(at >= Time(1_010));
    // Unacknowledged: the retry re-sends the very same update.
    let retry = c.handle_timer(at, timer);
    assert_eq!(sent_updates(&retry), vec![st.clone()]);
    // The first timer is now stale.
    assert!(c.handle_timer(at, timer).is_empty());
    assert!(c.handle_message(at, ack(st)).is_empty());
    assert_eq!(c.pending_updates().count(), 0);
    let Some(ExecAction::SetTimer { timer, at }) = retry.last().cloned() else {
        panic!("no second retry timer");
    };
    assert!(c.handle_timer(at, timer).is_empty());
}

#[test]
fn updates_made_before_registration_wait_for_it() {
    let mut c = core();
    c.handle_start(Time(0));
    let (_, out) = c.with_executor(Time(1), |_, ctx| {
        ctx.update(TaskStatus::new(
            TaskId::new("t0").unwrap(),
            TaskState::Failed,
            UpdateSource::Executor,
        ))
    });
    assert!(sent_updates(&out).is_empty());
    c.handle_connected(Time(2));
    let out = c.handle_message(Time(3), registered_msg());
    assert_eq!(sent_updates(&out).len(), 1);
}

#[test]
fn pending_updates_are_resent_in_order_after_reconnect() {
    let mut c = registered_core();
    c.handle_message(Time(10), run_task("t1"));
    c.handle_message(Time(11), run_task("t2"));
    c.handle_message(
        Time(12),
        Message::KillTask {
            framework_id: FrameworkId::new("f1").unwrap(),
            task_id: TaskId::new("t1").unwrap(),
            grace_ms: 100,
        },
    );
    let first: Vec<TaskStatus> = c.pending_updates().cloned().collect();
    c.handle_disconnected(Time(20), "reset");
    c.handle_connected(Time(30));
    let out = c.handle_message(Time(31), registered_msg());
    assert_eq!(sent_updates(&out), first);
    let order: Vec<_> = first
        .iter()
        .map(|s| (s.task_id.to_string(), s.state))
        .collect();
    assert_eq!(
        order,
        vec![
            ("t1".into(), TaskState::Running),
            ("t2".into(), TaskState::Running),
            ("t1".into(), TaskState::Killed)
        ]
    );
}

#[test]
fn uuids_are_unique_and_depend_on_the_seed() {
    let c = core();
    let uuids: BTreeSet<u64> = (1..=10_000).map(|s| c.uuid_for(s)).collect();
    assert_eq!(uuids.len(), 10_000);
    let other = ExecutorDriverCore::new(
        Echo::default(),
        &env(),
        ExecutorDriverConfig {
            seed: 8,
            ..Default::default()
        },
    );
    assert_ne!(c.uuid_for(1), other.uuid_for(1));
}

#[test]
fn stop_waits_for_acknowledgements() {
    let mut c = registered_core();
    let out = c.handle_message(Time(10), run_task("t1"));
    let st = sent_updates(&out).remove(0);
    let out = c.handle_message(Time(11), Message::ShutdownExecutor { grace_ms: 2_000 });
    assert_eq!(
        out,
        vec![ExecAction::SetTimer {
            timer: ExecTimer::StopDeadline,
            at: Time(5_011)
        }]
    );
    assert_eq!(
        c.handle_message(Time(12), ack(&st)),
        vec![ExecAction::Exit { code: 0 }]
    );
    assert_eq!(c.exited(), Some(0));
    assert!(c.handle_message(Time(13), run_task("t9")).is_empty());
}

#[test]
fn stop_is_bounded_and_immediate_without_pending_updates() {
    let mut c = registered_core();
    c.handle_message(Time(10), run_task("t1"));
    c.handle_message(Time(11), Message::ShutdownExecutor { grace_ms: 0 });
    assert_eq!(
        c.handle_timer(Time(5_011), ExecTimer::StopDeadline),
        vec![ExecAction::Exit { code: 0 }]
    );

    let mut c = registered_core();
    let out = c.handle_message(Time(11), Message::ShutdownExecutor { grace_ms: 0 });
    assert_eq!(out, vec![ExecAction::Exit { code: 0 }]);
}

#[test]
fn unreachable_agent_ends_the_executor_with_an_error() {
    let mut c = registered_core();
    let out = c.handle_disconnected(Time(100), "agent restarted");
    assert_eq!(
        out,
        vec![ExecAction::SetTimer {
            timer: ExecTimer::Recovery,
            at: Time(15_100)
        }]
    );
    // The initial timer (from start) fires while we are disconnected but early: re-armed.
    assert_eq!(
        c.handle_timer(Time(15_000), ExecTimer::Recovery),
        vec![ExecAction::SetTimer {
            timer: ExecTimer::Recovery,
            at: Time(15_100)
        }]
    );
    // Reconnected but never registered counts as unreachable too.
    c.handle_connected(Time(5_000));
    assert_eq!(
        c.handle_timer(Time(15_100), ExecTimer::Recovery),
        vec![ExecAction::Exit { code: 1 }]
    );
}

#[test]
fn recovery_in_time_keeps_the_executor() {
    let mut c = registered_core();
    c.handle_disconnected(Time(100), "agent restarted");
    c.handle_connected(Time(3_000));
    c.handle_message(Time(3_001), registered_msg());
    assert!(c.handle_timer(Time(15_100), ExecTimer::Recovery).is_empty());
    assert_eq!(c.exited(), None);
}

#[test]
fn messages_for_others_are_ignored_and_own_ones_answered() {
    let mut c = registered_core();
    let out = c.handle_message(
        Time(5),
        Message::KillTask {
            framework_id: FrameworkId::new("other").unwrap(),
            task_id: TaskId::new("t1").unwrap(),
            grace_ms: 0,
        },
    );
    assert!(out.is_empty());
    let to = |e: &str| Message::FrameworkToExecutor {
        framework_id: FrameworkId::new("f1").unwrap(),
        executor_id: ExecutorId::new(e).unwrap(),
        agent_id: AgentId::new("a1").unwrap(),
        data: vec![1, 2],
    };
    assert!(c.handle_message(Time(5), to("e2")).is_empty());
    let out = c.handle_message(Time(5), to("e1"));
    assert!(matches!(
        &out[..],
        [ExecAction::Send(Message::ExecutorToFramework { data, .. })] if data == &vec![1, 2]
    ));
    assert_eq!(
        c.executor().log.last().map(String::as_str),
        Some("message 2")
    );
}

#[test]
fn pending_updates_are_bounded() {
    let config = ExecutorDriverConfig {
        max_pending_updates: 2,
        ..Default::default()
    };
    let mut c = ExecutorDriverCore::new(Echo::default(), &env(), config);
    for i in 0..3 {
        c.handle_message(Time(i), run_task(&format!("t{i}")));
    }
    assert_eq!(c.pending_updates().count(), 2);
}

#[test]
fn fatal_agent_error_exits_with_1() {
    let mut c = registered_core();
    assert!(c
        .handle_message(Time(1), Message::error(ErrorCode::BadRequest, "meh"))
        .is_empty());
    assert_eq!(
        c.handle_message(
            Time(2),
            Message::fatal(ErrorCode::NotFound, "unknown executor")
        ),
        vec![ExecAction::Exit { code: 1 }]
    );
}

mod shell {
    use super::*;
    use crate::messages::NodeKind;
    use crate::sdk::driver::tests::shell::{connect_peer, next_msg, FakeTransport};
    use crate::sdk::executor::{ExecutorDriver, WithExecutor};
    use crate::transport::NetEvent;
    use std::sync::Arc;

    #[actix_rt::test]
    async fn driver_registers_runs_tasks_and_exits_after_acks() {
        let transport = Arc::new(FakeTransport::default());
        let (addr, exit) = ExecutorDriver::start(transport.clone(), &env(), Echo::default());
        let sink = loop {
            if let Some(s) = transport.sinks.lock().unwrap().first() {
                assert_eq!(s.0, vec!["127.0.0.1:5051".to_string()]);
                assert_eq!(s.1.node_kind, NodeKind::Executor);
                break s.2.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let mut rx = connect_peer(&sink, 1, NodeKind::Agent);
        assert!(matches!(
            next_msg(&mut rx).await,
            Message::RegisterExecutor { .. }
        ));
        let frame = |msg| NetEvent::Frame { conn: 1, msg };
        sink.do_send(frame(registered_msg()));
        sink.do_send(frame(run_task("t1")));
        let Message::StatusUpdate { status, .. } = next_msg(&mut rx).await else {
            panic!("expected a status update");
        };
        assert_eq!(status.state, TaskState::Running);
        let log = addr
            .send(WithExecutor::new(|e: &mut Echo, _| e.log.clone()))
            .await
            .unwrap();
        assert_eq!(log, vec!["registered a1 e1", "launch t1"]);
        sink.do_send(frame(Message::ShutdownExecutor { grace_ms: 10 }));
        sink.do_send(frame(ack(&status)));
        assert_eq!(exit.await, Ok(0));
    }
}
