use super::*;
use crate::testutil::*;
use agora_actors::sdk::Call;

fn config(n: usize) -> BatchConfig {
    let mut c = BatchConfig::new("job", n, CommandInfo::shell("sleep 1"), r("cpus:1;mem:100"));
    c.sample_interval_ms = 0;
    c
}

fn batch(n: usize) -> BatchFramework {
    BatchFramework::new(config(n)).unwrap()
}

/// Subscribes `b` at t=0.
fn subscribe(b: &mut BatchFramework) -> SchedulerCtx {
    let mut c = ctx(0);
    b.subscribed(&mut c, &fid(), false);
    c
}

/// Launches everything on one big offer and returns the task ids.
fn launch_all(b: &mut BatchFramework) -> Vec<TaskId> {
    let mut c = ctx(10);
    b.offers(&mut c, vec![offer("big", "a1", "cpus:100;mem:100000")]);
    launched_ids(&c).into_iter().map(|s| tid(&s)).collect()
}

#[test]
fn config_is_validated() {
    let bad = |f: fn(&mut BatchConfig)| {
        let mut c = config(3);
        f(&mut c);
        BatchFramework::new(c).unwrap_err()
    };
    assert!(matches!(
        bad(|c| c.tasks = 0),
        FrameworkError::Config { field: "tasks", .. }
    ));
    assert!(matches!(
        bad(|c| c.task_resources = Resources::new()),
        FrameworkError::Config {
            field: "resources",
            ..
        }
    ));
    assert!(matches!(
        bad(|c| c.refuse_seconds = f64::NAN),
        FrameworkError::Config {
            field: "refuse_seconds",
            ..
        }
    ));
    assert!(matches!(
        bad(|c| c.task_id_prefix = "a/b".into()),
        FrameworkError::Config {
            field: "task_id_prefix",
            ..
        }
    ));
    assert!(matches!(
        bad(|c| c.command = CommandInfo::shell(" ")),
        FrameworkError::Config {
            field: "command",
            ..
        }
    ));
    assert!(matches!(
        bad(|c| {
            c.shared_executor = true;
            c.executor_id = String::new();
        }),
        FrameworkError::Config {
            field: "executor_id",
            ..
        }
    ));
}

#[test]
fn packs_offers_declines_the_useless_and_suppresses_when_all_launched() {
    let mut b = batch(5);
    subscribe(&mut b);
    let mut c = ctx(10);
    b.offers(
        &mut c,
        vec![
            offer("o1", "a1", "cpus:3.5;mem:1000"),
            offer("o2", "a2", "cpus:0.5;mem:1000"),
            offer("o3", "a3", "cpus:8;mem:150"),
        ],
    );
    let l = launched(&c);
    assert_eq!(l.len(), 2, "one accept per usable offer");
    assert_eq!(l[0].0, "o1");
    let ids: Vec<String> = l[0].1.iter().map(|t| t.task_id.to_string()).collect();
    assert_eq!(ids, vec!["task-0", "task-1", "task-2"]);
    assert_eq!(l[1].0, "o3");
    assert_eq!(l[1].1.len(), 1, "memory limits o3 to one task");
    assert_eq!(declined(&c), vec![("o2".to_string(), 5.0)]);
    let t = &l[0].1[0];
    assert_eq!(t.resources, r("cpus:1;mem:100"));
    assert_eq!(t.command, Some(CommandInfo::shell("sleep 1")));
    assert_eq!(t.executor, None);
    assert!(!has(&c, &Call::Suppress), "one task still pending");

    let mut c = ctx(20);
    b.offers(&mut c, vec![offer("o4", "a1", "cpus:4;mem:4000")]);
    assert_eq!(launched_ids(&c), vec!["task-4"]);
    assert!(has(&c, &Call::Suppress));
    let p = b.progress();
    assert_eq!((p.pending, p.staged, p.tasks_launched), (0, 5, 5));
    assert_eq!((p.offers_received, p.offers_declined), (4, 1));

    // Offers arriving anyway are declined, and suppression is not repeated.
    let mut c = ctx(30);
    b.offers(&mut c, vec![offer("o5", "a1", "cpus:4;mem:4000")]);
    assert_eq!(declined(&c).len(), 1);
    assert!(!has(&c, &Call::Suppress));
}

#[test]
fn max_tasks_per_offer_is_honoured() {
    let mut cfg = config(5);
    cfg.max_tasks_per_offer = 2;
    let mut b = BatchFramework::new(cfg).unwrap();
    let mut c = ctx(0);
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:10;mem:10000")]);
    assert_eq!(launched_ids(&c).len(), 2);
}

#[test]
fn all_finished_tears_down_and_exits_0() {
    let mut b = batch(2);
    subscribe(&mut b);
    let ids = launch_all(&mut b);
    let mut c = ctx(20);
    b.update(&mut c, &status(&ids[0], TaskState::Running));
    b.update(&mut c, &status(&ids[1], TaskState::Running));
    assert_eq!(b.progress().running, 2);
    b.update(&mut c, &status(&ids[0], TaskState::Finished));
    assert_eq!(c.stop, None);
    let mut c = ctx(50);
    b.update(&mut c, &status(&ids[1], TaskState::Finished));
    assert!(has(&c, &Call::Teardown));
    assert_eq!(c.stop, Some(0));
    let p = b.progress();
    assert!(p.done);
    assert_eq!(p.finished, 2);
    assert_eq!(p.completion_ms(), Some(50));
    assert_eq!(b.exit_code(), Some(0));
}

#[test]
fn failed_tasks_are_final_by_default_and_the_exit_code_says_so() {
    let mut b = batch(2);
    let ids = launch_all(&mut b);
    let mut c = ctx(20);
    let mut failed = status(&ids[0], TaskState::Failed);
    failed.exit_code = Some(3);
    b.update(&mut c, &failed);
    b.update(&mut c, &status(&ids[1], TaskState::Finished));
    assert_eq!(c.stop, Some(1));
    let rec = b.task(&ids[0]).unwrap();
    assert_eq!(rec.phase, TaskPhase::Failed);
    assert_eq!(rec.exit_code, Some(3));
    assert_eq!(b.progress().retries, 0);
}

#[test]
fn failed_tasks_retry_when_configured() {
    let mut cfg = config(1);
    cfg.max_retries_failed = 1;
    let mut b = BatchFramework::new(cfg).unwrap();
    let ids = launch_all(&mut b);
    let mut c = ctx(20);
    b.update(&mut c, &status(&ids[0], TaskState::Failed));
    assert_eq!(b.tasks()[0].task_id, tid("task-0.r1"));
    assert_eq!(b.tasks()[0].retries_failed, 1);
    let retry = launch_all(&mut b);
    b.update(&mut c, &status(&retry[0], TaskState::Failed));
    assert_eq!(c.stop, Some(1), "out of retries");
}

#[test]
fn lost_tasks_are_retried_under_new_ids_then_given_up() {
    let mut b = batch(1);
    subscribe(&mut b);
    let mut id = launch_all(&mut b).remove(0);
    for attempt in 1..=3 {
        let mut c = ctx(100 * attempt);
        let state = [TaskState::Lost, TaskState::Dropped, TaskState::Gone][attempt as usize - 1];
        b.update(&mut c, &status(&id, state));
        assert!(
            has(&c, &Call::Revive),
            "attempt {attempt}: offers wanted again"
        );
        assert_eq!(b.tasks()[0].phase, TaskPhase::Pending);
        // A late update of the old attempt is ignored.
        b.update(&mut c, &status(&id, TaskState::Running));
        assert_eq!(b.progress().running, 0);
        let mut c = ctx(100 * attempt + 10);
        b.offers(&mut c, vec![offer("o", "a2", "cpus:1;mem:100")]);
        let ids = launched_ids(&c);
        assert_eq!(ids, vec![format!("task-0.r{attempt}")]);
        assert!(has(&c, &Call::Suppress));
        id = tid(&ids[0]);
    }
    let mut c = ctx(1_000);
    b.update(&mut c, &status(&id, TaskState::Lost));
    assert_eq!(b.tasks()[0].phase, TaskPhase::Lost);
    assert_eq!(c.stop, Some(1));
    let p = b.progress();
    assert_eq!((p.lost, p.retries), (1, 3));
    // Every attempt's id still finds the task.
    assert_eq!(b.task(&tid("task-0")).map(|t| t.index), Some(0));
}

#[test]
fn task_error_is_final() {
    let mut b = batch(1);
    let ids = launch_all(&mut b);
    let mut c = ctx(20);
    b.update(&mut c, &status(&ids[0], TaskState::Error));
    assert_eq!(b.progress().errored, 1);
    assert_eq!(c.stop, Some(1));
}

#[test]
fn unreachable_is_not_an_end() {
    let mut b = batch(1);
    let ids = launch_all(&mut b);
    let mut c = ctx(20);
    b.update(&mut c, &status(&ids[0], TaskState::Running));
    b.update(&mut c, &status(&ids[0], TaskState::Unreachable));
    assert_eq!(b.progress().running, 1);
    assert_eq!(c.stop, None);
}

#[test]
fn shared_executor_is_charged_once_per_agent() {
    let mut cfg = config(4);
    cfg.shared_executor = true;
    let mut b = BatchFramework::new(cfg).unwrap();
    let mut c = ctx(0);
    // 2 cpus: the executor's 0.1 leaves room for one task only.
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:2;mem:1000")]);
    let l = launched(&c);
    assert_eq!(l[0].1.len(), 1);
    let exec = l[0].1[0].executor.clone().expect("shared executor");
    assert_eq!(exec.executor_id.as_str(), DEFAULT_EXECUTOR_ID);
    assert_eq!(exec.command, None, "the built-in command executor");
    // Same agent again while a task lives there: no second charge.
    let mut c = ctx(1);
    b.offers(&mut c, vec![offer("o2", "a1", "cpus:2;mem:1000")]);
    assert_eq!(launched_ids(&c).len(), 2);
    // Another agent whose offer says the executor already runs: no charge either.
    let mut c = ctx(2);
    let o = offer_with_executor("o3", "a2", "cpus:1;mem:100", DEFAULT_EXECUTOR_ID);
    b.offers(&mut c, vec![o]);
    assert_eq!(launched_ids(&c).len(), 1);
}

#[test]
fn reservations_for_the_role_are_used() {
    let mut cfg = config(2);
    cfg.role = "ads".into();
    let mut b = BatchFramework::new(cfg).unwrap();
    assert_eq!(b.framework_info().roles, vec!["ads".to_string()]);
    let mut c = ctx(0);
    b.offers(
        &mut c,
        vec![offer("o1", "a1", "cpus(ads):1;cpus:1;mem:200")],
    );
    let l = launched(&c);
    assert_eq!(l[0].1[0].resources, r("cpus(ads):1;mem:100"));
    assert_eq!(l[0].1[1].resources, r("cpus:1;mem:100"));
}

#[test]
fn abort_cancels_pending_kills_launched_and_exits_1() {
    let mut b = batch(3);
    subscribe(&mut b);
    let mut c = ctx(10);
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:1;mem:100")]);
    let id = tid(&launched_ids(&c)[0]);
    let mut c = ctx(20);
    b.abort(&mut c);
    assert!(has(
        &c,
        &Call::Kill {
            task_id: id.clone(),
            agent_id: Some(AgentId::new("a1").unwrap())
        }
    ));
    assert!(has(&c, &Call::Suppress));
    assert_eq!(b.progress().killed, 2);
    assert_eq!(c.stop, None, "waits for the launched task");
    // A loss while aborting is not retried.
    let mut c = ctx(30);
    b.update(&mut c, &status(&id, TaskState::Lost));
    assert_eq!(c.stop, Some(1));
    assert_eq!(b.progress().lost, 1);
}

#[test]
fn resubscription_reconciles_live_tasks_and_revives_if_needed() {
    let mut b = batch(3);
    subscribe(&mut b);
    let mut c = ctx(10);
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:1;mem:100")]);
    let mut c = ctx(100);
    b.subscribed(&mut c, &fid(), true);
    assert!(has(
        &c,
        &Call::Reconcile {
            tasks: vec![(tid("task-0"), Some(AgentId::new("a1").unwrap()))]
        }
    ));
    assert!(has(&c, &Call::Revive));
}

#[test]
fn timings_and_share_samples_are_recorded() {
    let mut cfg = config(2);
    cfg.sample_interval_ms = 500;
    let mut b = BatchFramework::new(cfg).unwrap();
    let c = subscribe(&mut b);
    assert_eq!(c.timers, vec![(SAMPLE_TIMER, Time(500))]);
    let mut c = ctx(100);
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:1;mem:100")]);
    let id = tid(&launched_ids(&c)[0]);
    let mut c = ctx(350);
    b.update(&mut c, &status(&id, TaskState::Running));
    let mut c = ctx(500);
    b.timer(&mut c, SAMPLE_TIMER);
    assert_eq!(c.timers, vec![(SAMPLE_TIMER, Time(1_000))]);
    let last = *b.samples().last().unwrap();
    assert_eq!((last.running, last.pending), (1, 1));
    assert_eq!((last.cpus, last.mem_mb), (1.0, 100.0));
    let mut c = ctx(900);
    b.update(&mut c, &status(&id, TaskState::Finished));
    let t = b.task(&id).unwrap().timing;
    assert_eq!(t.offer_to_accept_ms(), Some(0));
    assert_eq!(t.queue_ms(), Some(100));
    assert_eq!(t.accept_to_running_ms(), Some(250));
    assert_eq!(t.run_ms(), Some(550));
    assert_eq!(b.progress().first_running, Some(Time(350)));
    let mut c = ctx(1_000);
    b.timer(&mut c, SAMPLE_TIMER);
    let last = *b.samples().last().unwrap();
    assert_eq!(last.cpus, 0.0, "an ended task holds nothing");
}

#[test]
fn events_and_history_are_kept_when_asked() {
    let mut cfg = config(1);
    cfg.record_events = true;
    let mut b = BatchFramework::new(cfg).unwrap();
    let id = launch_all(&mut b).remove(0);
    let mut c = ctx(20);
    let mut st = status(&id, TaskState::Running);
    st.sandbox = Some("/var/agora/sb/1".into());
    b.update(&mut c, &st);
    let (events, dropped) = b.take_events();
    assert_eq!(dropped, 0);
    let states: Vec<TaskState> = events.iter().map(|e| e.state).collect();
    assert_eq!(states, vec![TaskState::Staging, TaskState::Running]);
    assert_eq!(events[0].message, "launched on host-a1");
    assert!(b.take_events().0.is_empty());
    let rec = b.task(&id).unwrap();
    assert_eq!(rec.history.len(), 2);
    assert_eq!(rec.sandbox.as_deref(), Some("/var/agora/sb/1"));
    assert_eq!(rec.hostname.as_deref(), Some("host-a1"));
}

#[test]
fn updates_for_unknown_tasks_change_nothing() {
    let mut b = batch(1);
    let mut c = ctx(20);
    b.update(&mut c, &status(&tid("stranger"), TaskState::Finished));
    assert!(c.calls.is_empty());
    assert_eq!(b.progress().finished, 0);
}

#[test]
fn max_in_flight_runs_tasks_one_after_another() {
    let mut cfg = config(3);
    cfg.max_in_flight = 1;
    let mut b = BatchFramework::new(cfg).unwrap();
    subscribe(&mut b);
    let first = launch_all(&mut b);
    assert_eq!(first.len(), 1, "only one task may be in flight");
    // While it runs, further offers are declined.
    let mut c = ctx(20);
    b.offers(&mut c, vec![offer("o2", "a1", "cpus:100;mem:100000")]);
    assert!(launched_ids(&c).is_empty());
    let mut c = ctx(30);
    b.update(&mut c, &status(&first[0], TaskState::Running));
    b.update(&mut c, &status(&first[0], TaskState::Finished));
    let mut c = ctx(40);
    b.offers(&mut c, vec![offer("o3", "a1", "cpus:100;mem:100000")]);
    assert_eq!(
        launched_ids(&c).len(),
        1,
        "the next one goes once the first has ended"
    );
}
