use super::*;
use crate::ids::ExecutorId;
use crate::resources::Resources;
use crate::sdk::ExecCall;
use crate::time::Time;

fn tid(s: &str) -> TaskId {
    TaskId::new(s).unwrap()
}

fn exec() -> CommandExecutor {
    CommandExecutor::new(CommandExecutorConfig {
        sandbox: Some("/sb".into()),
        max_tasks: 3,
    })
}

fn shared_executor() -> ExecutorInfo {
    ExecutorInfo {
        executor_id: ExecutorId::new("shared").unwrap(),
        name: "shared".into(),
        command: None,
        resources: Resources::new(),
    }
}

fn task_with(id: &str, command: Option<CommandInfo>, shared: bool) -> TaskInfo {
    TaskInfo {
        container: None,
        task_id: tid(id),
        name: id.into(),
        agent_id: AgentId::new("a1").unwrap(),
        resources: Resources::new(),
        command,
        executor: shared.then(shared_executor),
        data: vec![],
    }
}

fn task(id: &str) -> TaskInfo {
    task_with(id, Some(CommandInfo::shell("sleep 1")), true)
}

fn updates(ctx: &ExecutorCtx) -> Vec<TaskStatus> {
    ctx.calls
        .iter()
        .filter_map(|c| match c {
            ExecCall::Update(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn states(ctx: &ExecutorCtx) -> Vec<(String, TaskState)> {
    updates(ctx)
        .into_iter()
        .map(|s| (s.task_id.to_string(), s.state))
        .collect()
}

fn ctx() -> ExecutorCtx {
    ExecutorCtx::new(Time(0))
}

/// Launches and spawns `id` as pid 100.
fn running(e: &mut CommandExecutor, id: &str) {
    let mut c = ctx();
    e.launch(&mut c, task(id));
    e.spawned(&mut c, &tid(id), 100);
    e.take_proc_actions();
}

#[test]
fn launch_reports_starting_and_asks_for_a_spawn() {
    let mut e = exec();
    let mut c = ctx();
    let mut cmd = CommandInfo::shell("echo hi");
    cmd.env.push(("GREETING".into(), "hello".into()));
    e.launch(&mut c, task_with("t1", Some(cmd.clone()), true));
    assert_eq!(states(&c), vec![("t1".into(), TaskState::Starting)]);
    assert_eq!(updates(&c)[0].sandbox.as_deref(), Some("/sb"));
    assert_eq!(
        e.take_proc_actions(),
        vec![ProcAction::Spawn {
            task_id: tid("t1"),
            command: cmd,
            env: vec![
                (ENV_TASK_ID.into(), "t1".into()),
                ("GREETING".into(), "hello".into())
            ],
            cwd: Some("/sb".into()),
        }]
    );
    assert!(e.take_proc_actions().is_empty());
}

#[test]
fn exit_statuses_map_to_task_states() {
    let cases = [
        (
            ProcExit::Code(0),
            TaskState::Finished,
            Some(0),
            "exited with status 0",
        ),
        (
            ProcExit::Code(3),
            TaskState::Failed,
            Some(3),
            "exited with status 3",
        ),
        (
            ProcExit::Signal(9),
            TaskState::Failed,
            Some(137),
            "killed by signal 9",
        ),
    ];
    for (exit, state, code, text) in cases {
        let mut e = exec();
        running(&mut e, "t1");
        let mut c = ctx();
        e.exited(&mut c, &tid("t1"), exit);
        let st = updates(&c).remove(0);
        assert_eq!(st.state, state);
        assert_eq!(st.exit_code, code);
        assert_eq!(st.message, text);
        assert_eq!(st.reason.as_deref(), Some("command exited"));
        assert_eq!(e.active_tasks().count(), 0);
    }
}

#[test]
fn spawned_reports_running() {
    let mut e = exec();
    let mut c = ctx();
    e.launch(&mut c, task("t1"));
    let mut c = ctx();
    e.spawned(&mut c, &tid("t1"), 4242);
    let st = updates(&c).remove(0);
    assert_eq!(st.state, TaskState::Running);
    assert_eq!(st.message, "pid 4242");
}

#[test]
fn kill_terms_then_kills_after_the_grace() {
    let mut e = exec();
    running(&mut e, "t1");
    let mut c = ctx();
    e.kill(&mut c, &tid("t1"), 2_000);
    assert_eq!(
        e.take_proc_actions(),
        vec![ProcAction::Signal {
            task_id: tid("t1"),
            signal: KillSignal::Term
        }]
    );
    let (token, at) = c.timers[0];
    assert_eq!(at, Time(2_000));
    // A second kill changes nothing.
    e.kill(&mut c, &tid("t1"), 10);
    assert!(e.take_proc_actions().is_empty());
    e.timer(&mut c, token);
    assert_eq!(
        e.take_proc_actions(),
        vec![ProcAction::Signal {
            task_id: tid("t1"),
            signal: KillSignal::Kill
        }]
    );
    let mut c = ctx();
    e.exited(&mut c, &tid("t1"), ProcExit::Signal(9));
    let st = updates(&c).remove(0);
    assert_eq!(st.state, TaskState::Killed);
    assert_eq!(st.reason.as_deref(), Some("killed"));
}

#[test]
fn kill_timer_after_exit_does_nothing() {
    let mut e = exec();
    running(&mut e, "t1");
    let mut c = ctx();
    e.kill(&mut c, &tid("t1"), 2_000);
    e.take_proc_actions();
    e.exited(&mut c, &tid("t1"), ProcExit::Code(0));
    let (token, _) = c.timers[0];
    e.timer(&mut c, token);
    assert!(e.take_proc_actions().is_empty());
    // Exited 0 after a kill still counts as killed.
    assert_eq!(updates(&c).last().unwrap().state, TaskState::Killed);
}

#[test]
fn zero_grace_kills_at_once_and_kill_while_spawning_waits_for_the_pid() {
    let mut e = exec();
    let mut c = ctx();
    e.launch(&mut c, task("t1"));
    e.take_proc_actions();
    e.kill(&mut c, &tid("t1"), 0);
    assert!(e.take_proc_actions().is_empty(), "no pid to signal yet");
    e.spawned(&mut c, &tid("t1"), 7);
    assert_eq!(
        e.take_proc_actions(),
        vec![
            ProcAction::Signal {
                task_id: tid("t1"),
                signal: KillSignal::Term
            },
            ProcAction::Signal {
                task_id: tid("t1"),
                signal: KillSignal::Kill
            }
        ]
    );
}

#[test]
fn bad_tasks_are_refused_with_task_error() {
    let mut bad_env = CommandInfo::shell("true");
    bad_env.env.push(("A=B".into(), "x".into()));
    let cases = [
        (task_with("t1", None, true), "no_command"),
        (
            task_with("t2", Some(CommandInfo::shell("  ")), true),
            "no_command",
        ),
        (task_with("t3", Some(bad_env), true), "bad_environment"),
    ];
    for (t, reason) in cases {
        let mut e = exec();
        let mut c = ctx();
        e.launch(&mut c, t);
        let st = updates(&c).remove(0);
        assert_eq!(st.state, TaskState::Error);
        assert_eq!(st.reason.as_deref(), Some(reason));
        assert!(e.take_proc_actions().is_empty());
        assert!(!c.stop, "a shared executor keeps running");
    }
}

#[test]
fn spawn_failures_fail_the_task() {
    let mut e = exec();
    let mut c = ctx();
    e.launch(&mut c, task("t1"));
    let mut c = ctx();
    let err = SpawnError {
        not_found: true,
        message: "no such file".into(),
    };
    e.spawn_failed(&mut c, &tid("t1"), err);
    let st = updates(&c).remove(0);
    assert_eq!(st.state, TaskState::Failed);
    assert_eq!(st.reason.as_deref(), Some("command_not_found"));
    assert_eq!(st.message, "no such file");
}

#[test]
fn task_limit_and_duplicate_ids() {
    let mut e = exec();
    for i in 0..3 {
        running(&mut e, &format!("t{i}"));
    }
    let mut c = ctx();
    e.launch(&mut c, task("t3"));
    assert_eq!(states(&c), vec![("t3".into(), TaskState::Error)]);
    // Same id as a running task: ignored, no update that could be mistaken for the first.
    let mut c = ctx();
    e.launch(&mut c, task("t0"));
    assert!(c.calls.is_empty());
    // Same id as an ended task: ignored as well.
    e.exited(&mut c, &tid("t0"), ProcExit::Code(0));
    let mut c = ctx();
    e.launch(&mut c, task("t0"));
    assert!(c.calls.is_empty());
}

#[test]
fn shutdown_kills_everything_then_stops() {
    let mut e = exec();
    running(&mut e, "t1");
    running(&mut e, "t2");
    let mut c = ctx();
    e.shutdown(&mut c, 4_000);
    let terms = e
        .take_proc_actions()
        .into_iter()
        .filter(|a| {
            matches!(
                a,
                ProcAction::Signal {
                    signal: KillSignal::Term,
                    ..
                }
            )
        })
        .count();
    assert_eq!(terms, 2);
    // Escalation well before the agent's own deadline.
    assert!(c.timers.iter().all(|(_, at)| *at == Time(3_000)));
    let mut c = ctx();
    e.launch(&mut c, task("late"));
    assert_eq!(states(&c), vec![("late".into(), TaskState::Dropped)]);
    e.exited(&mut c, &tid("t1"), ProcExit::Signal(15));
    assert!(!c.stop);
    e.exited(&mut c, &tid("t2"), ProcExit::Signal(15));
    assert!(c.stop);

    let mut e = exec();
    let mut c = ctx();
    e.shutdown(&mut c, 1_000);
    assert!(c.stop, "nothing to kill: stop at once");
}

#[test]
fn a_per_task_executor_stops_after_its_task() {
    let mut e = exec();
    let mut c = ctx();
    e.launch(
        &mut c,
        task_with("t1", Some(CommandInfo::shell("true")), false),
    );
    e.spawned(&mut c, &tid("t1"), 5);
    assert!(!c.stop);
    e.exited(&mut c, &tid("t1"), ProcExit::Code(0));
    assert!(c.stop);

    // A shared one keeps running for the next task.
    let mut e = exec();
    running(&mut e, "t1");
    let mut c = ctx();
    e.exited(&mut c, &tid("t1"), ProcExit::Code(0));
    assert!(!c.stop);
}

mod shell {
    //! Real processes, driven through the executor driver with a fake agent connection.
    use super::*;
    use crate::ids::FrameworkId;
    use crate::messages::{Message, NodeKind};
    use crate::sdk::command::serve_command_executor;
    use crate::sdk::driver::tests::shell::{connect_peer, next_msg, FakeTransport};
    use crate::sdk::executor::ExecutorEnv;
    use crate::transport::NetEvent;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn sandbox() -> std::path::PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("agora-cmd-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn env(sandbox: &std::path::Path) -> ExecutorEnv {
        ExecutorEnv {
            agent_endpoint: "127.0.0.1:5051".into(),
            framework_id: FrameworkId::new("f1").unwrap(),
            executor_id: ExecutorId::new("shared").unwrap(),
            agent_id: AgentId::new("a1").unwrap(),
            sandbox: sandbox.to_path_buf(),
            cluster: "test".into(),
            shutdown_grace_ms: 1_000,
        }
    }

    fn run(id: &str, command: CommandInfo) -> Message {
        Message::RunTask {
            framework: FrameworkInfo::new("fw"),
            task: task_with(id, Some(command), true),
        }
    }

    #[actix_rt::test]
    async fn runs_real_processes_reports_and_kills_them() {
        let dir = sandbox();
        let transport = Arc::new(FakeTransport::default());
        let (tx, done) = tokio::sync::oneshot::channel();
        let env = env(&dir);
        let t: Arc<dyn crate::transport::Transport> = transport.clone();
        actix::spawn(async move {
            let _ = tx.send(serve_command_executor(env, t, false).await);
        });
        let sink = loop {
            if let Some(s) = transport.sinks.lock().unwrap().first() {
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
        sink.do_send(frame(Message::ExecutorRegistered {
            agent_id: AgentId::new("a1").unwrap(),
            framework: FrameworkInfo::new("fw"),
            executor: shared_executor(),
        }));
        sink.do_send(frame(run(
            "ok",
            CommandInfo::shell("echo $AGORA_TASK_ID > out.txt"),
        )));
        sink.do_send(frame(run("fail", CommandInfo::shell("exit 3"))));
        sink.do_send(frame(run(
            "stubborn",
            // The marker file says the trap is in place (RUNNING is reported at spawn, before
            // the shell has run a single command).
            CommandInfo::shell("trap '' TERM; touch trapped; sleep 30"),
        )));
        let missing = CommandInfo::argv(&["/nonexistent/agora-test-prog".to_string()]);
        sink.do_send(frame(run("missing", missing)));

        // Plays the agent: acknowledges every update, kills `stubborn` once it runs.
        let mut last: BTreeMap<String, TaskStatus> = BTreeMap::new();
        let mut history: Vec<(String, TaskState)> = Vec::new();
        while last.values().filter(|s| s.state.is_terminal()).count() < 4 {
            let Message::StatusUpdate { status, .. } = next_msg(&mut rx).await else {
                continue;
            };
            sink.do_send(frame(Message::StatusUpdateAck {
                framework_id: FrameworkId::new("f1").unwrap(),
                task_id: status.task_id.clone(),
                uuid: status.uuid.unwrap(),
            }));
            let id = status.task_id.to_string();
            if id == "stubborn" && status.state == TaskState::Running {
                for _ in 0..200 {
                    if dir.join("trapped").exists() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                sink.do_send(frame(Message::KillTask {
                    framework_id: FrameworkId::new("f1").unwrap(),
                    task_id: status.task_id.clone(),
                    grace_ms: 300,
                }));
            }
            history.push((id.clone(), status.state));
            last.insert(id, status);
        }
        assert_eq!(last["ok"].state, TaskState::Finished);
        let out = std::fs::read_to_string(dir.join("out.txt")).unwrap();
        assert_eq!(
            out.trim(),
            "ok",
            "cwd is the sandbox and AGORA_TASK_ID is set"
        );
        assert_eq!(last["fail"].state, TaskState::Failed);
        assert_eq!(last["fail"].exit_code, Some(3));
        assert_eq!(last["stubborn"].state, TaskState::Killed);
        assert_eq!(
            last["stubborn"].message, "killed by signal 9",
            "SIGTERM was ignored"
        );
        assert_eq!(last["missing"].state, TaskState::Failed);
        assert_eq!(last["missing"].reason.as_deref(), Some("command_not_found"));
        let ok_states: Vec<TaskState> = history
            .iter()
            .filter(|(id, _)| id == "ok")
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            ok_states,
            vec![TaskState::Starting, TaskState::Running, TaskState::Finished]
        );

        sink.do_send(frame(Message::ShutdownExecutor { grace_ms: 1_000 }));
        let code = tokio::time::timeout(std::time::Duration::from_secs(10), done)
            .await
            .expect("executor did not exit")
            .unwrap();
        assert_eq!(code, Ok(0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
