//! The SDK hands `AgentDraining` to `Scheduler::agent_draining`; schedulers that do not
//! implement it are unaffected (the default does nothing).

use agora_actors::sdk::driver::{SchedulerDriverConfig, SchedulerDriverCore};
use agora_actors::sdk::{Scheduler, SchedulerCtx};
use agora_actors::{AgentId, FrameworkId, FrameworkInfo, MaintenanceWindow, Message, Offer, Time};

#[derive(Default)]
struct Recorder {
    drained: Vec<(AgentId, Option<MaintenanceWindow>)>,
}

impl Scheduler for Recorder {
    fn framework_info(&self) -> FrameworkInfo {
        FrameworkInfo::new("recorder")
    }
    fn offers(&mut self, _ctx: &mut SchedulerCtx, _offers: Vec<Offer>) {}
    fn agent_draining(
        &mut self,
        _ctx: &mut SchedulerCtx,
        agent_id: &AgentId,
        window: Option<&MaintenanceWindow>,
    ) {
        self.drained.push((agent_id.clone(), window.copied()));
    }
}

struct Plain;

impl Scheduler for Plain {
    fn framework_info(&self) -> FrameworkInfo {
        FrameworkInfo::new("plain")
    }
    fn offers(&mut self, _ctx: &mut SchedulerCtx, _offers: Vec<Offer>) {}
}

fn subscribed<S: Scheduler>(s: S) -> SchedulerDriverCore<S> {
    let mut c = SchedulerDriverCore::new(s, SchedulerDriverConfig::default());
    c.handle_connected(Time(0));
    c.handle_message(
        Time(1),
        Message::Subscribed {
            framework_id: FrameworkId::new("f1").unwrap(),
            heartbeat_interval_ms: 0,
        },
    );
    c
}

fn draining(window: Option<MaintenanceWindow>) -> Message {
    Message::AgentDraining {
        agent_id: AgentId::new("a1").unwrap(),
        window,
    }
}

#[test]
fn agent_draining_reaches_the_scheduler_with_its_window() {
    let mut c = subscribed(Recorder::default());
    let w = MaintenanceWindow {
        start_ms: 1_900_000_000_000,
        duration_ms: 3_600_000,
    };
    c.handle_message(Time(2), draining(Some(w)));
    c.handle_message(Time(3), draining(None));
    let got = &c.scheduler().drained;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (AgentId::new("a1").unwrap(), Some(w)));
    assert_eq!(got[1].1, None);
}

#[test]
fn a_scheduler_without_the_callback_ignores_it() {
    let mut c = subscribed(Plain);
    let out = c.handle_message(Time(2), draining(None));
    assert!(out.is_empty(), "{out:?}");
    assert!(c.is_subscribed());
}
