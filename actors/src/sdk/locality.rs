//! Delay scheduling (Zaharia et al., EuroSys 2010; the seed's data-locality section): a job that
//! is offered an agent holding none of its pending tasks' data *skips* the offer and waits up to
//! `wait_ms` for an offer on a preferred agent before it settles for a non-local one.
//!
//! The rule, per job: an offer with a local task is always taken (and resets the wait); an offer
//! without one starts the wait clock if it is not running; once it has run `wait_ms` the job may
//! launch non-local tasks, and keeps that permission until its next local launch (so a job that
//! had to go non-local does not wait again for every task). With `wait_ms = 0` nothing ever waits.
//! Pure bookkeeping: it reads no clock (callers pass `now`) and does no IO.

use crate::time::Time;

/// Longest wait accepted (one hour): longer ones are clamped so `now + wait` stays meaningful.
pub const MAX_LOCALITY_WAIT_MS: u64 = 3_600_000;

/// What a job may do with one offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalityChoice {
    /// Launch tasks whose data is on this agent.
    Local,
    /// No local task here, but the job has waited long enough: launch any task.
    NonLocal,
    /// No local task here and the wait is still running: decline, keep waiting.
    Skip,
}

/// Delay scheduling state of one job. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayScheduler {
    wait_ms: u64,
    /// When the job first skipped an offer since its last local launch.
    waiting_since: Option<Time>,
    skipped: u64,
}

impl DelayScheduler {
    pub fn new(wait_ms: u64) -> Self {
        DelayScheduler {
            wait_ms: wait_ms.min(MAX_LOCALITY_WAIT_MS),
            waiting_since: None,
            skipped: 0,
        }
    }

    pub fn wait_ms(&self) -> u64 {
        self.wait_ms
    }

    /// Offers skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Decides what to do with an offer at `now`; `has_local` says whether some pending task
    /// prefers the offered agent. A `Local` choice is expected to be followed by a launch.
    pub fn choose(&mut self, now: Time, has_local: bool) -> LocalityChoice {
        if has_local {
            self.waiting_since = None;
            return LocalityChoice::Local;
        }
        if self.wait_ms == 0 {
            return LocalityChoice::NonLocal;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if now.since(since) >= self.wait_ms {
            LocalityChoice::NonLocal
        } else {
            self.skipped += 1;
            LocalityChoice::Skip
        }
    }

    /// When the job may next take a non-local offer if nothing local comes (for a timer or a
    /// short decline filter); `None` when it may already.
    pub fn next_chance(&self, now: Time) -> Option<Time> {
        let since = self.waiting_since?;
        let at = since.plus_ms(self.wait_ms);
        (at > now).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocalityChoice::*;

    #[test]
    fn local_offers_are_always_taken() {
        let mut d = DelayScheduler::new(5_000);
        assert_eq!(d.choose(Time(0), true), Local);
        assert_eq!(d.choose(Time(10), true), Local);
        assert_eq!(d.skipped(), 0);
    }

    #[test]
    fn non_local_waits_up_to_the_bound_then_is_allowed() {
        let mut d = DelayScheduler::new(5_000);
        assert_eq!(d.choose(Time(1_000), false), Skip);
        assert_eq!(d.next_chance(Time(1_000)), Some(Time(6_000)));
        assert_eq!(d.choose(Time(5_999), false), Skip);
        assert_eq!(d.choose(Time(6_000), false), NonLocal);
        // Permission stays until a local launch...
        assert_eq!(d.choose(Time(6_001), false), NonLocal);
        assert_eq!(d.next_chance(Time(6_001)), None);
        // ...which resets the clock.
        assert_eq!(d.choose(Time(7_000), true), Local);
        assert_eq!(d.choose(Time(7_001), false), Skip);
        assert_eq!(d.choose(Time(12_001), false), NonLocal);
        assert_eq!(d.skipped(), 3);
    }

    #[test]
    fn zero_wait_never_skips_and_huge_waits_are_clamped() {
        let mut d = DelayScheduler::new(0);
        assert_eq!(d.choose(Time(0), false), NonLocal);
        assert_eq!(d.next_chance(Time(0)), None);
        assert_eq!(
            DelayScheduler::new(u64::MAX).wait_ms(),
            MAX_LOCALITY_WAIT_MS
        );
    }
}
