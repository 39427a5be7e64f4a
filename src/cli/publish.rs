//! `Published<S>`: wraps a scheduler and, after every callback, stores a summary of it where the
//! CLI can read it — also after the driver actor has stopped (which ends its mailbox).

use agora_actors::sdk::{Scheduler, SchedulerCtx};
use agora_actors::*;
use std::sync::{Arc, Mutex};

pub struct Published<S, T> {
    pub inner: S,
    /// Updates the published value in place (so e.g. event lists can accumulate).
    summary: fn(&mut S, &mut Option<T>),
    pub out: Arc<Mutex<Option<T>>>,
}

impl<S: Scheduler, T: 'static> Published<S, T> {
    pub fn new(inner: S, summary: fn(&mut S, &mut Option<T>)) -> Self {
        Published {
            inner,
            summary,
            out: Arc::new(Mutex::new(None)),
        }
    }
    fn publish(&mut self) {
        if let Ok(mut o) = self.out.lock() {
            (self.summary)(&mut self.inner, &mut o);
        }
    }
}

impl<S: Scheduler, T: 'static> Scheduler for Published<S, T> {
    fn framework_info(&self) -> FrameworkInfo {
        self.inner.framework_info()
    }
    fn subscribed(&mut self, ctx: &mut SchedulerCtx, id: &FrameworkId, again: bool) {
        self.inner.subscribed(ctx, id, again);
        self.publish();
    }
    fn offers(&mut self, ctx: &mut SchedulerCtx, offers: Vec<Offer>) {
        self.inner.offers(ctx, offers);
        self.publish();
    }
    fn rescinded(&mut self, ctx: &mut SchedulerCtx, id: &OfferId) {
        self.inner.rescinded(ctx, id);
        self.publish();
    }
    fn update(&mut self, ctx: &mut SchedulerCtx, status: &TaskStatus) {
        self.inner.update(ctx, status);
        self.publish();
    }
    fn message(&mut self, ctx: &mut SchedulerCtx, agent: &AgentId, exec: &ExecutorId, data: &[u8]) {
        self.inner.message(ctx, agent, exec, data);
        self.publish();
    }
    fn agent_lost(&mut self, ctx: &mut SchedulerCtx, agent: &AgentId) {
        self.inner.agent_lost(ctx, agent);
        self.publish();
    }
    fn error(&mut self, ctx: &mut SchedulerCtx, message: &str, fatal: bool) {
        self.inner.error(ctx, message, fatal);
        self.publish();
    }
    fn disconnected(&mut self, ctx: &mut SchedulerCtx) {
        self.inner.disconnected(ctx);
        self.publish();
    }
    fn timer(&mut self, ctx: &mut SchedulerCtx, token: u64) {
        self.inner.timer(ctx, token);
        self.publish();
    }
}
