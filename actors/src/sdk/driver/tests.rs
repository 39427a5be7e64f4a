use super::*;
use crate::messages::{Filters, TaskState, UpdateSource};
use crate::resources::Resources;

/// A scheduler that records every callback and can be told to react.
#[derive(Default)]
struct Rec {
    log: Vec<String>,
    /// Decline every offer with this many seconds.
    decline_seconds: f64,
    /// Call `ctx.stop(code)` from `update`.
    stop_on_update: Option<i32>,
    /// Call `ctx.stop(code)` from `error`.
    stop_on_error: Option<i32>,
    /// Set a timer with this token from `subscribed`.
    timer_on_subscribe: Option<u64>,
    /// Call revive from `disconnected` (must be dropped: not subscribed).
    revive_when_disconnected: bool,
    /// Subscribe with this framework id (a restarted or standby instance).
    id: Option<FrameworkId>,
}

impl Scheduler for Rec {
    fn framework_info(&self) -> FrameworkInfo {
        let mut info = FrameworkInfo::new("rec");
        info.id = self.id.clone();
        info
    }
    fn standing_by(&mut self, ctx: &mut SchedulerCtx, message: &str) {
        self.log.push(format!("standing_by {message}"));
        // Calls made while standing by are dropped: the instance is not the active one.
        ctx.revive();
    }
    fn subscribed(&mut self, ctx: &mut SchedulerCtx, id: &FrameworkId, resubscribed: bool) {
        self.log.push(format!("subscribed {id} {resubscribed}"));
        if let Some(t) = self.timer_on_subscribe {
            ctx.set_timer(t, 100);
        }
    }
    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        self.log.push(format!("offers {}", offers.len()));
        let ids = offers.into_iter().map(|o| o.id).collect();
        ctx.decline(ids, self.decline_seconds);
    }
    fn rescinded(&mut self, _ctx: &mut SchedulerCtx, offer_id: &OfferId) {
        self.log.push(format!("rescinded {offer_id}"));
    }
    fn update(&mut self, ctx: &mut SchedulerCtx, status: &TaskStatus) {
        self.log
            .push(format!("update {} {}", status.task_id, status.state.name()));
        if let Some(code) = self.stop_on_update {
            ctx.stop(code);
        }
    }
    fn message(&mut self, _: &mut SchedulerCtx, a: &AgentId, e: &ExecutorId, data: &[u8]) {
        self.log.push(format!("message {a} {e} {}", data.len()));
    }
    fn agent_lost(&mut self, _ctx: &mut SchedulerCtx, agent_id: &AgentId) {
        self.log.push(format!("agent_lost {agent_id}"));
    }
    fn revocation_warning(&mut self, _ctx: &mut SchedulerCtx, w: &crate::sdk::RevocationWarning) {
        let tasks: Vec<&str> = w.task_ids.iter().map(|t| t.as_str()).collect();
        self.log.push(format!(
            "revocation {} {} {} {}",
            w.agent_id,
            w.resources,
            tasks.join(","),
            w.deadline_ms
        ));
    }
    fn error(&mut self, ctx: &mut SchedulerCtx, message: &str, fatal: bool) {
        self.log.push(format!("error {message} {fatal}"));
        if let Some(code) = self.stop_on_error {
            ctx.stop(code);
        }
    }
    fn disconnected(&mut self, ctx: &mut SchedulerCtx) {
        self.log.push("disconnected".into());
        if self.revive_when_disconnected {
            ctx.revive();
        }
    }
    fn timer(&mut self, _ctx: &mut SchedulerCtx, token: u64) {
        self.log.push(format!("timer {token}"));
    }
}

fn fid(s: &str) -> FrameworkId {
    FrameworkId::new(s).unwrap()
}

fn core(rec: Rec) -> SchedulerDriverCore<Rec> {
    SchedulerDriverCore::new(rec, SchedulerDriverConfig::default())
}

fn sends(actions: &[DriverAction]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            DriverAction::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn subscribed_msg(id: &str) -> Message {
    Message::Subscribed {
        framework_id: fid(id),
        heartbeat_interval_ms: 0,
    }
}

fn offer(id: &str) -> Offer {
    Offer {
        id: OfferId::new(id).unwrap(),
        framework_id: fid("f1"),
        agent_id: AgentId::new("a1").unwrap(),
        hostname: "h1".into(),
        resources: Resources::parse("cpus:1;mem:128").unwrap(),
        attributes: Default::default(),
        executor_ids: vec![],
    }
}

fn status(task: &str, state: TaskState, uuid: Option<u64>) -> TaskStatus {
    let mut s = TaskStatus::new(TaskId::new(task).unwrap(), state, UpdateSource::Agent);
    s.agent_id = Some(AgentId::new("a1").unwrap());
    s.uuid = uuid;
    s
}

/// A core that is connected and subscribed as `f1`.
fn subscribed(rec: Rec) -> SchedulerDriverCore<Rec> {
    let mut c = core(rec);
    c.handle_connected(Time(0));
    c.handle_message(Time(1), subscribed_msg("f1"));
    c
}

#[test]
fn first_subscribe_has_no_id_and_arms_a_retry() {
    let mut c = core(Rec::default());
    let out = c.handle_connected(Time(10));
    match &out[..] {
        [DriverAction::Send(Message::Subscribe { framework }), DriverAction::SetTimer {
            timer: DriverTimer::SubscribeRetry { .. },
            at,
        }] => {
            assert_eq!(framework.id, None);
            assert_eq!(framework.name, "rec");
            assert!(at.ms() >= 10 + 1_000, "retry at {at:?}");
        }
        other => panic!("unexpected actions {other:?}"),
    }
    assert!(!c.is_subscribed());
}

#[test]
fn subscribed_calls_the_scheduler_and_fills_the_framework_id_into_calls() {
    let mut c = subscribed(Rec {
        decline_seconds: 7.0,
        ..Rec::default()
    });
    assert_eq!(c.scheduler().log, vec!["subscribed f1 false"]);
    let out = c.handle_message(
        Time(5),
        Message::Offers {
            offers: vec![offer("o1"), offer("o2")],
        },
    );
    assert_eq!(
        sends(&out),
        vec![Message::Decline {
            framework_id: fid("f1"),
            offer_ids: vec![OfferId::new("o1").unwrap(), OfferId::new("o2").unwrap()],
            filters: Filters {
                refuse_seconds: 7.0
            },
        }]
    );
}

#[test]
fn resubscribe_after_disconnect_keeps_the_id() {
    let mut c = subscribed(Rec::default());
    c.handle_disconnected(Time(20), "peer closed");
    assert!(!c.is_subscribed());
    let out = c.handle_connected(Time(30));
    match sends(&out).first() {
        Some(Message::Subscribe { framework }) => assert_eq!(framework.id, Some(fid("f1"))),
        other => panic!("expected Subscribe, got {other:?}"),
    }
    c.handle_message(Time(31), subscribed_msg("f1"));
    assert_eq!(
        c.scheduler().log,
        vec!["subscribed f1 false", "disconnected", "subscribed f1 true"]
    );
}

#[test]
fn calls_while_disconnected_are_dropped_not_queued() {
    let mut c = subscribed(Rec {
        revive_when_disconnected: true,
        ..Rec::default()
    });
    let out = c.handle_disconnected(Time(5), "gone");
    assert!(sends(&out).is_empty());
    assert_eq!(c.stats().dropped_calls, 1);
    // Nothing is replayed after the reconnect: only the Subscribe goes out.
    let out = c.handle_connected(Time(6));
    assert_eq!(sends(&out).len(), 1);
}

#[test]
fn updates_are_delivered_once_and_always_acknowledged() {
    let mut c = subscribed(Rec::default());
    let st = status("t1", TaskState::Running, Some(42));
    let ack = Message::Acknowledge {
        framework_id: fid("f1"),
        agent_id: AgentId::new("a1").unwrap(),
        task_id: TaskId::new("t1").unwrap(),
        uuid: 42,
    };
    let out = c.handle_message(Time(2), Message::Update { status: st.clone() });
    assert_eq!(sends(&out), vec![ack.clone()]);
    let out = c.handle_message(Time(3), Message::Update { status: st });
    assert_eq!(sends(&out), vec![ack]);
    let updates: Vec<_> = c
        .scheduler()
        .log
        .iter()
        .filter(|l| l.starts_with("update"))
        .collect();
    assert_eq!(updates, vec!["update t1 TASK_RUNNING"]);
    assert_eq!(c.stats().duplicate_updates, 1);
    assert_eq!(c.stats().updates, 1);
}

#[test]
fn same_uuid_on_another_task_is_not_a_duplicate() {
    let mut c = subscribed(Rec::default());
    c.handle_message(
        Time(2),
        Message::Update {
            status: status("t1", TaskState::Running, Some(1)),
        },
    );
    c.handle_message(
        Time(2),
        Message::Update {
            status: status("t2", TaskState::Running, Some(1)),
        },
    );
    assert_eq!(c.stats().updates, 2);
}

#[test]
fn updates_without_uuid_are_passed_on_and_not_acknowledged() {
    let mut c = subscribed(Rec::default());
    for _ in 0..2 {
        let out = c.handle_message(
            Time(2),
            Message::Update {
                status: status("t1", TaskState::Lost, None),
            },
        );
        assert!(sends(&out).is_empty());
    }
    assert_eq!(c.stats().updates, 2);
}

#[test]
fn dedup_memory_is_bounded() {
    let config = SchedulerDriverConfig {
        dedup_capacity: 2,
        ..Default::default()
    };
    let mut c = SchedulerDriverCore::new(Rec::default(), config);
    c.handle_connected(Time(0));
    c.handle_message(Time(0), subscribed_msg("f1"));
    for uuid in [1, 2, 3, 1] {
        c.handle_message(
            Time(1),
            Message::Update {
                status: status("t1", TaskState::Running, Some(uuid)),
            },
        );
    }
    // uuid 1 was evicted by 3, so its late duplicate is delivered again: the price of a bound.
    assert_eq!(c.stats().updates, 4);
    assert_eq!(c.seen.order.len(), 2);
}

#[test]
fn ack_goes_out_before_a_stop_requested_in_update() {
    let mut c = subscribed(Rec {
        stop_on_update: Some(0),
        ..Rec::default()
    });
    let out = c.handle_message(
        Time(2),
        Message::Update {
            status: status("t1", TaskState::Finished, Some(9)),
        },
    );
    assert!(matches!(
        out.first(),
        Some(DriverAction::Send(Message::Acknowledge { uuid: 9, .. }))
    ));
    assert_eq!(out.last(), Some(&DriverAction::Stop { code: 0 }));
    assert_eq!(c.stopped(), Some(0));
    // Once stopped, nothing more happens.
    assert!(c
        .handle_message(
            Time(3),
            Message::Offers {
                offers: vec![offer("o1")]
            }
        )
        .is_empty());
}

#[test]
fn fatal_error_stops_with_code_1_unless_the_scheduler_chose() {
    let mut c = subscribed(Rec::default());
    let out = c.handle_message(
        Time(2),
        Message::fatal(ErrorCode::Forbidden, "role not allowed"),
    );
    assert_eq!(out, vec![DriverAction::Stop { code: 1 }]);
    assert!(c
        .scheduler()
        .log
        .contains(&"error role not allowed true".to_string()));

    let mut c = subscribed(Rec {
        stop_on_error: Some(3),
        ..Rec::default()
    });
    let out = c.handle_message(Time(2), Message::fatal(ErrorCode::Forbidden, "no"));
    assert_eq!(out, vec![DriverAction::Stop { code: 3 }]);

    let mut c = subscribed(Rec::default());
    let out = c.handle_message(Time(2), Message::error(ErrorCode::BadRequest, "bad offer"));
    assert!(out.is_empty());
    assert_eq!(c.stopped(), None);
}

#[test]
fn not_subscribed_error_triggers_a_resubscribe() {
    let mut c = subscribed(Rec::default());
    let out = c.handle_message(Time(2), Message::error(ErrorCode::NotSubscribed, "who?"));
    match sends(&out).first() {
        Some(Message::Subscribe { framework }) => assert_eq!(framework.id, Some(fid("f1"))),
        other => panic!("expected Subscribe, got {other:?}"),
    }
    assert!(!c.is_subscribed());
}

#[test]
fn subscribe_retry_resends_only_for_the_current_connection() {
    let mut c = core(Rec::default());
    let out = c.handle_connected(Time(0));
    let Some(DriverAction::SetTimer { timer, .. }) = out.get(1).cloned() else {
        panic!("no retry timer in {out:?}");
    };
    let retry = c.handle_timer(Time(1_500), timer);
    assert!(matches!(
        sends(&retry).first(),
        Some(Message::Subscribe { .. })
    ));
    // After a reconnect the old timer is stale.
    c.handle_disconnected(Time(1_600), "x");
    c.handle_connected(Time(1_700));
    assert!(c.handle_timer(Time(3_000), timer).is_empty());
    // Once subscribed, no retries.
    c.handle_message(Time(1_800), subscribed_msg("f1"));
    let current = DriverTimer::SubscribeRetry {
        generation: c.generation,
    };
    assert!(c.handle_timer(Time(5_000), current).is_empty());
    assert_eq!(c.stats().subscribe_attempts, 3);
}

#[test]
fn duplicate_subscribed_is_ignored() {
    let mut c = subscribed(Rec::default());
    assert!(c.handle_message(Time(5), subscribed_msg("f1")).is_empty());
    assert_eq!(c.scheduler().log, vec!["subscribed f1 false"]);
}

#[test]
fn silent_master_causes_a_reconnect() {
    let mut c = core(Rec::default());
    c.handle_connected(Time(0));
    let out = c.handle_message(
        Time(0),
        Message::Subscribed {
            framework_id: fid("f1"),
            heartbeat_interval_ms: 1_000,
        },
    );
    let Some(DriverAction::SetTimer { timer, at }) = out.last().cloned() else {
        panic!("no heartbeat check in {out:?}");
    };
    assert_eq!(at, Time(5_000));
    // Heard at 3000: the check reschedules.
    c.handle_message(Time(3_000), Message::Heartbeat);
    let out = c.handle_timer(Time(5_000), timer);
    assert_eq!(
        out,
        vec![DriverAction::SetTimer {
            timer,
            at: Time(8_000)
        }]
    );
    let out = c.handle_timer(Time(8_000), timer);
    assert_eq!(out, vec![DriverAction::Reconnect]);
    assert!(!c.is_subscribed());
    assert_eq!(
        c.scheduler().log.last().map(String::as_str),
        Some("disconnected")
    );
    assert_eq!(c.stats().silent_master_reconnects, 1);
}

#[test]
fn scheduler_timers_are_forwarded_and_bounded() {
    let config = SchedulerDriverConfig {
        max_timers: 1,
        ..Default::default()
    };
    let mut c = SchedulerDriverCore::new(
        Rec {
            timer_on_subscribe: Some(77),
            ..Rec::default()
        },
        config,
    );
    c.handle_connected(Time(0));
    let out = c.handle_message(Time(10), subscribed_msg("f1"));
    assert!(out.contains(&DriverAction::SetTimer {
        timer: DriverTimer::Scheduler(77),
        at: Time(110)
    }));
    // A second timer while the first is outstanding exceeds the limit of 1.
    let (_, out) = c.with_scheduler(Time(20), |_, ctx| ctx.set_timer(5, 1));
    assert!(out.is_empty());
    c.handle_timer(Time(110), DriverTimer::Scheduler(77));
    assert_eq!(
        c.scheduler().log.last().map(String::as_str),
        Some("timer 77")
    );
    let (_, out) = c.with_scheduler(Time(120), |_, ctx| ctx.set_timer(5, 1));
    assert_eq!(out.len(), 1);
}

#[test]
fn other_events_reach_the_scheduler() {
    let mut c = subscribed(Rec::default());
    c.handle_message(
        Time(2),
        Message::Rescind {
            offer_id: OfferId::new("o9").unwrap(),
        },
    );
    c.handle_message(
        Time(2),
        Message::AgentLost {
            agent_id: AgentId::new("a7").unwrap(),
        },
    );
    c.handle_message(
        Time(2),
        Message::ExecutorToFramework {
            framework_id: fid("f1"),
            executor_id: ExecutorId::new("e1").unwrap(),
            agent_id: AgentId::new("a1").unwrap(),
            data: vec![1, 2, 3],
        },
    );
    c.handle_message(
        Time(2),
        Message::RevocationWarning {
            agent_id: AgentId::new("a1").unwrap(),
            resources: Resources::parse("cpus:2").unwrap(),
            task_ids: vec![TaskId::new("t3").unwrap(), TaskId::new("t2").unwrap()],
            deadline_ms: 1500,
        },
    );
    assert_eq!(
        &c.scheduler().log[1..],
        &[
            "rescinded o9",
            "agent_lost a7",
            "message a1 e1 3",
            "revocation a1 cpus:2 t3,t2 1500"
        ]
    );
}

#[test]
fn offers_before_subscription_are_ignored() {
    let mut c = core(Rec::default());
    c.handle_connected(Time(0));
    let out = c.handle_message(
        Time(1),
        Message::Offers {
            offers: vec![offer("o1")],
        },
    );
    assert!(out.is_empty());
    assert!(c.scheduler().log.is_empty());
}

#[test]
fn with_scheduler_and_external_stop() {
    let mut c = subscribed(Rec::default());
    let (n, out) = c.with_scheduler(Time(5), |s, ctx| {
        ctx.kill(TaskId::new("t1").unwrap(), None);
        ctx.teardown();
        s.log.len()
    });
    assert_eq!(n, 1);
    assert_eq!(
        sends(&out),
        vec![
            Message::Kill {
                framework_id: fid("f1"),
                task_id: TaskId::new("t1").unwrap(),
                agent_id: None
            },
            Message::Teardown {
                framework_id: fid("f1")
            }
        ]
    );
    assert_eq!(c.stop(4), vec![DriverAction::Stop { code: 4 }]);
    assert!(c.stop(5).is_empty());
    assert_eq!(c.stopped(), Some(4));
}

#[test]
fn every_call_kind_translates() {
    let f = fid("f1");
    let a = AgentId::new("a1").unwrap();
    let e = ExecutorId::new("e1").unwrap();
    assert_eq!(
        call_to_message(f.clone(), Call::Revive),
        Message::Revive {
            framework_id: f.clone()
        }
    );
    assert_eq!(
        call_to_message(f.clone(), Call::Suppress),
        Message::Suppress {
            framework_id: f.clone()
        }
    );
    assert_eq!(
        call_to_message(f.clone(), Call::Reconcile { tasks: vec![] }),
        Message::Reconcile {
            framework_id: f.clone(),
            tasks: vec![]
        }
    );
    assert_eq!(
        call_to_message(
            f.clone(),
            Call::Message {
                agent_id: a.clone(),
                executor_id: e.clone(),
                data: vec![7]
            }
        ),
        Message::FrameworkToExecutor {
            framework_id: f,
            executor_id: e,
            agent_id: a,
            data: vec![7]
        }
    );
}

#[test]
fn a_scheduler_bringing_its_id_fails_over_to_it() {
    struct Failover;
    impl Scheduler for Failover {
        fn framework_info(&self) -> FrameworkInfo {
            let mut info = FrameworkInfo::new("fo");
            info.id = Some(FrameworkId::new("old-id").unwrap());
            info
        }
        fn offers(&mut self, _: &mut SchedulerCtx, _: Vec<Offer>) {}
    }
    let mut c = SchedulerDriverCore::new(Failover, SchedulerDriverConfig::default());
    let out = c.handle_connected(Time(0));
    match sends(&out).first() {
        Some(Message::Subscribe { framework }) => assert_eq!(framework.id, Some(fid("old-id"))),
        other => panic!("expected Subscribe, got {other:?}"),
    }
}

fn standby_core(poll_ms: u64) -> SchedulerDriverCore<Rec> {
    let rec = Rec {
        id: Some(fid("f1")),
        ..Rec::default()
    };
    let config = SchedulerDriverConfig {
        standby: true,
        standby_poll_ms: poll_ms,
        ..SchedulerDriverConfig::default()
    };
    SchedulerDriverCore::new(rec, config)
}

fn standing_by_msg(id: &str) -> Message {
    Message::StandingBy {
        framework_id: fid(id),
        message: "framework has an active scheduler, standing by".into(),
    }
}

#[test]
fn a_standby_polls_at_a_bounded_interval_until_promoted_then_acts_as_the_active_one() {
    let mut c = standby_core(500);
    let out = c.handle_connected(Time(0));
    let gen = match &out[..] {
        [DriverAction::Send(Message::SubscribeStandby { framework }), DriverAction::SetTimer {
            timer: DriverTimer::StandbyPoll { generation },
            at,
        }] => {
            assert_eq!(framework.id, Some(fid("f1")));
            assert_eq!(*at, Time(500));
            *generation
        }
        other => panic!("{other:?}"),
    };
    // StandingBy is not an error: the scheduler is told once, its calls are dropped.
    let out = c.handle_message(Time(10), standing_by_msg("f1"));
    assert!(sends(&out).is_empty(), "{out:?}");
    assert_eq!(c.stats().dropped_calls, 1);
    assert!(c.handle_message(Time(20), standing_by_msg("f1")).is_empty());
    assert!(c.is_standing_by() && !c.is_subscribed() && c.stopped().is_none());
    // The poll repeats SubscribeStandby; the regular subscribe retry timer does nothing.
    let out = c.handle_timer(Time(500), DriverTimer::StandbyPoll { generation: gen });
    assert!(matches!(
        &sends(&out)[..],
        [Message::SubscribeStandby { .. }]
    ));
    assert!(c
        .handle_timer(Time(500), DriverTimer::SubscribeRetry { generation: gen })
        .is_empty());
    // Offers cannot reach a standby, but if they did they would be ignored.
    assert!(c
        .handle_message(
            Time(600),
            Message::Offers {
                offers: vec![offer("o1")]
            }
        )
        .is_empty());
    // Promotion: Subscribed arrives; the scheduler is told it re-subscribed to its framework.
    let out = c.handle_message(Time(700), subscribed_msg("f1"));
    assert!(c.is_subscribed() && !c.is_standing_by());
    assert!(out
        .iter()
        .all(|a| !matches!(a, DriverAction::Send(Message::SubscribeStandby { .. }))));
    // Stale poll timers are ignored now, and offers are handled.
    assert!(c
        .handle_timer(Time(1000), DriverTimer::StandbyPoll { generation: gen })
        .is_empty());
    let out = c.handle_message(
        Time(1100),
        Message::Offers {
            offers: vec![offer("o1")],
        },
    );
    assert!(matches!(&sends(&out)[..], [Message::Decline { .. }]));
    // After a reconnect the promoted instance subscribes as the active one.
    c.handle_disconnected(Time(1200), "gone");
    let out = c.handle_connected(Time(1300));
    match &sends(&out)[..] {
        [Message::Subscribe { framework }] => assert_eq!(framework.id, Some(fid("f1"))),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.scheduler().log,
        [
            "standing_by framework has an active scheduler, standing by",
            "subscribed f1 true",
            "offers 1",
            "disconnected"
        ]
    );
}

#[test]
fn a_standby_whose_master_stops_answering_reconnects() {
    let mut c = standby_core(1_000);
    c.handle_connected(Time(0));
    c.handle_message(Time(100), standing_by_msg("f1"));
    // Two polls go unanswered: still waiting.
    let gen = 1;
    let out = c.handle_timer(Time(1_000), DriverTimer::StandbyPoll { generation: gen });
    assert!(matches!(
        &sends(&out)[..],
        [Message::SubscribeStandby { .. }]
    ));
    let out = c.handle_timer(Time(2_000), DriverTimer::StandbyPoll { generation: gen });
    assert!(matches!(
        &sends(&out)[..],
        [Message::SubscribeStandby { .. }]
    ));
    // Three poll intervals after the master was last heard: redial (the next master).
    let out = c.handle_timer(Time(3_100), DriverTimer::StandbyPoll { generation: gen });
    assert!(out.contains(&DriverAction::Reconnect), "{out:?}");
    assert_eq!(c.stats().silent_master_reconnects, 1);
    // On the new connection it stands by again.
    let out = c.handle_connected(Time(3_200));
    assert!(matches!(
        &sends(&out)[..],
        [Message::SubscribeStandby { .. }]
    ));
    assert!(c.is_standing_by());
}

#[test]
fn a_standby_without_a_framework_id_stops_with_a_clear_error() {
    let config = SchedulerDriverConfig {
        standby: true,
        ..SchedulerDriverConfig::default()
    };
    let mut c = SchedulerDriverCore::new(Rec::default(), config);
    let out = c.handle_connected(Time(0));
    assert!(sends(&out).is_empty());
    assert_eq!(out.last(), Some(&DriverAction::Stop { code: 1 }));
    assert!(
        c.scheduler().log[0].contains("needs the framework id"),
        "{:?}",
        c.scheduler().log
    );
}

#[test]
fn a_standby_told_its_framework_was_removed_stops() {
    let mut c = standby_core(1_000);
    c.handle_connected(Time(0));
    c.handle_message(Time(10), standing_by_msg("f1"));
    let out = c.handle_message(
        Time(20),
        Message::fatal(ErrorCode::Forbidden, "framework f1 was removed"),
    );
    assert_eq!(out.last(), Some(&DriverAction::Stop { code: 1 }));
    assert_eq!(c.stopped(), Some(1));
}

pub(crate) mod shell {
    //! The actor shell against a fake transport that hands the test the master's side.
    use super::*;
    use crate::messages::{Hello, NodeKind};
    use crate::sdk::driver::{SchedulerDriver, StopDriver, WithScheduler};
    use crate::transport::{
        Backoff, BoxFuture, ConnHandle, Link, NetEvent, Outgoing, Transport, TransportError,
    };
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::sync::mpsc;

    /// What one `connect` call was given: addresses, our hello, the event sink.
    pub(crate) type Dialed = (Vec<String>, Hello, actix::Recipient<NetEvent>);

    #[derive(Default)]
    pub(crate) struct FakeTransport {
        pub sinks: Mutex<Vec<Dialed>>,
        pub closed: Arc<AtomicBool>,
    }

    struct FakeLink(Arc<AtomicBool>);
    impl Link for FakeLink {
        fn send(&self, _msg: Message) -> Result<(), TransportError> {
            Err(TransportError::NotConnected)
        }
        fn close(&self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Transport for FakeTransport {
        fn listen(
            &self,
            addr: &str,
            _local: Hello,
            _sink: actix::Recipient<NetEvent>,
        ) -> BoxFuture<Result<String, TransportError>> {
            let addr = addr.to_string();
            Box::pin(async move { Err(TransportError::BadAddress(addr)) })
        }
        fn connect(
            &self,
            addrs: Vec<String>,
            local: Hello,
            _backoff: Backoff,
            sink: actix::Recipient<NetEvent>,
        ) -> Box<dyn Link> {
            self.sinks.lock().unwrap().push((addrs, local, sink));
            Box::new(FakeLink(self.closed.clone()))
        }
    }

    /// Plays the peer: connects the driver and returns what it sends.
    pub(crate) fn connect_peer(
        sink: &actix::Recipient<NetEvent>,
        conn: u64,
        kind: NodeKind,
    ) -> mpsc::Receiver<Outgoing> {
        let (tx, rx) = mpsc::channel(64);
        sink.do_send(NetEvent::Connected {
            conn,
            peer: Hello::new("test", kind, "peer"),
            handle: ConnHandle::new(conn, "peer:1".into(), tx),
        });
        rx
    }

    pub(crate) async fn next_msg(rx: &mut mpsc::Receiver<Outgoing>) -> Message {
        let out = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("timed out waiting for a message")
            .expect("channel closed");
        match out {
            Outgoing::Msg(m) => m,
            Outgoing::Close(m) => panic!("connection closed by the driver (last {m:?})"),
        }
    }

    async fn sink_of(t: &FakeTransport, n: usize) -> actix::Recipient<NetEvent> {
        for _ in 0..100 {
            if let Some(s) = t.sinks.lock().unwrap().get(n) {
                return s.2.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the driver never dialed");
    }

    #[actix_rt::test]
    async fn driver_subscribes_answers_offers_and_stops() {
        let transport = Arc::new(FakeTransport::default());
        let rec = Rec {
            decline_seconds: 2.0,
            stop_on_update: Some(0),
            ..Rec::default()
        };
        let (addr, exit) =
            SchedulerDriver::start(transport.clone(), vec!["m:5050".into()], "test", rec).unwrap();
        let sink = sink_of(&transport, 0).await;
        {
            let sinks = transport.sinks.lock().unwrap();
            assert_eq!(sinks[0].0, vec!["m:5050".to_string()]);
            assert_eq!(sinks[0].1.node_kind, NodeKind::Scheduler);
            assert_eq!(sinks[0].1.cluster, "test");
        }
        let mut rx = connect_peer(&sink, 1, NodeKind::Master);
        assert!(matches!(next_msg(&mut rx).await, Message::Subscribe { .. }));
        sink.do_send(NetEvent::Frame {
            conn: 1,
            msg: subscribed_msg("f1"),
        });
        sink.do_send(NetEvent::Frame {
            conn: 1,
            msg: Message::Offers {
                offers: vec![offer("o1")],
            },
        });
        assert!(matches!(next_msg(&mut rx).await, Message::Decline { .. }));
        let log_len = addr
            .send(WithScheduler::new(|s: &mut Rec, _| s.log.len()))
            .await
            .unwrap();
        assert_eq!(log_len, 2);
        sink.do_send(NetEvent::Frame {
            conn: 1,
            msg: Message::Update {
                status: status("t1", TaskState::Finished, Some(5)),
            },
        });
        assert!(matches!(
            next_msg(&mut rx).await,
            Message::Acknowledge { uuid: 5, .. }
        ));
        assert_eq!(exit.await, Ok(0));
        assert!(transport.closed.load(Ordering::SeqCst));
    }

    #[actix_rt::test]
    async fn driver_ignores_stale_connections_and_non_masters() {
        let transport = Arc::new(FakeTransport::default());
        let (addr, exit) = SchedulerDriver::start(
            transport.clone(),
            vec!["m:1".into()],
            "test",
            Rec::default(),
        )
        .unwrap();
        let sink = sink_of(&transport, 0).await;
        let mut bad = connect_peer(&sink, 1, NodeKind::Agent);
        assert!(matches!(bad.recv().await, Some(Outgoing::Close(None))));
        let mut rx = connect_peer(&sink, 2, NodeKind::Master);
        assert!(matches!(next_msg(&mut rx).await, Message::Subscribe { .. }));
        // A frame on the refused connection must not reach the core.
        sink.do_send(NetEvent::Frame {
            conn: 1,
            msg: subscribed_msg("f1"),
        });
        let subscribed = addr
            .send(WithScheduler::new(|s: &mut Rec, _| s.log.clone()))
            .await
            .unwrap();
        assert!(subscribed.is_empty());
        addr.do_send(StopDriver { code: 9 });
        assert_eq!(exit.await, Ok(9));
    }

    #[actix_rt::test]
    async fn start_without_masters_is_an_error() {
        let transport = Arc::new(FakeTransport::default());
        let r = SchedulerDriver::start(transport, vec![], "test", Rec::default());
        assert!(matches!(r, Err(SdkError::NoMasters)));
    }

    use crate::sdk::SdkError;
}
