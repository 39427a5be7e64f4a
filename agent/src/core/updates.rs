//! The status update manager: the agent's side of reliable task status delivery.
//!
//! Once the agent has acknowledged an executor's update, the agent alone is responsible for it
//! reaching the master. Updates form one ordered stream per task; only the head of a stream is
//! in flight. The head is re-sent with capped exponential backoff until the master acknowledges
//! its uuid, then the next one goes out. While the agent is not registered nothing is sent; on
//! (re-)registration every head is sent again at once.

use super::state::AgentCounters;
use super::{Action, AgentTimer};
use agora_actors::time::backoff_ms;
use agora_actors::{FrameworkId, Message, TaskId, TaskStatus, Time};
use std::collections::{BTreeMap, VecDeque};

/// One stream per task; task ids are unique within a framework.
pub(crate) type StreamKey = (FrameworkId, TaskId);

#[derive(Debug, Clone)]
struct Pending {
    /// Global arrival order, to find the oldest update across streams.
    seq: u64,
    uuid: u64,
    framework_id: FrameworkId,
    status: TaskStatus,
}

#[derive(Debug, Default)]
struct Stream {
    queue: VecDeque<Pending>,
    /// Sends of the current head so far (drives the backoff).
    attempts: u32,
    /// When the in-flight head is due again; `None` while nothing is in flight.
    retry_at: Option<Time>,
}

impl Stream {
    /// Sends the head (if any) and schedules its next retry.
    fn transmit(&mut self, now: Time, base_ms: u64, cap_ms: u64, out: &mut Vec<Action>) -> bool {
        let Some(head) = self.queue.front() else {
            self.retry_at = None;
            return false;
        };
        out.push(Action::SendMaster(Message::StatusUpdate {
            framework_id: head.framework_id.clone(),
            status: head.status.clone(),
        }));
        // Jitter seeded from the uuid: deterministic, yet different tasks spread out.
        let delay_ms = backoff_ms(self.attempts, base_ms, cap_ms, head.uuid);
        self.attempts = self.attempts.saturating_add(1);
        self.retry_at = Some(now.plus_ms(delay_ms));
        true
    }
}

/// Result of a master acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// The head was acknowledged and removed; `terminal` if it was the task's last word.
    Acked { terminal: bool },
    /// Not the head of any stream (a duplicate, or an update dropped meanwhile).
    Stale,
}

#[derive(Debug)]
pub(crate) struct UpdateManager {
    streams: BTreeMap<StreamKey, Stream>,
    len: usize,
    max_len: usize,
    next_seq: u64,
    /// Earliest `RetryStatusUpdates` timer already asked of the shell, so we do not pile up
    /// timers; spurious or duplicate firings are harmless.
    armed_at: Option<Time>,
    base_ms: u64,
    cap_ms: u64,
}

impl UpdateManager {
    pub fn new(max_len: usize, base_ms: u64, cap_ms: u64) -> Self {
        UpdateManager {
            streams: BTreeMap::new(),
            len: 0,
            max_len: max_len.max(1),
            next_seq: 0,
            armed_at: None,
            base_ms,
            cap_ms,
        }
    }

    /// Every unacknowledged update, oldest first (for the checkpoint).
    pub fn pending(&self) -> Vec<(FrameworkId, TaskStatus)> {
        let mut all: Vec<&Pending> = self.streams.values().flat_map(|s| s.queue.iter()).collect();
        all.sort_by_key(|p| p.seq);
        all.into_iter()
            .map(|p| (p.framework_id.clone(), p.status.clone()))
            .collect()
    }

    /// Updates not yet acknowledged by the master.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if a terminal update for this task still awaits the master's acknowledgement.
    pub fn has_pending_terminal(&self, key: &StreamKey) -> bool {
        self.streams
            .get(key)
            .is_some_and(|s| s.queue.iter().any(|p| p.status.state.is_terminal()))
    }

    /// Adds an update (with its uuid) to its task's stream; sends it now if it is the head and
    /// the agent is `online` (registered with a connected master).
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &mut self,
        now: Time,
        online: bool,
        framework_id: FrameworkId,
        mut status: TaskStatus,
        uuid: u64,
        counters: &mut AgentCounters,
        out: &mut Vec<Action>,
    ) {
        status.uuid = Some(uuid);
        self.next_seq += 1;
        let key = (framework_id.clone(), status.task_id.clone());
        let stream = self.streams.entry(key).or_default();
        stream.queue.push_back(Pending {
            seq: self.next_seq,
            uuid,
            framework_id,
            status,
        });
        self.len += 1;
        if stream.queue.len() == 1 && online {
            stream.transmit(now, self.base_ms, self.cap_ms, out);
            counters.status_updates_sent += 1;
        }
        self.enforce_limit(now, online, counters, out);
        self.arm(now, out);
    }

    /// The master acknowledged `uuid` for `key`'s task.
    pub fn ack(
        &mut self,
        now: Time,
        online: bool,
        key: &StreamKey,
        uuid: u64,
        counters: &mut AgentCounters,
        out: &mut Vec<Action>,
    ) -> AckOutcome {
        let Some(stream) = self.streams.get_mut(key) else {
            return AckOutcome::Stale;
        };
        if stream.queue.front().map(|h| h.uuid) != Some(uuid) {
            return AckOutcome::Stale;
        }
        let Some(head) = stream.queue.pop_front() else {
            return AckOutcome::Stale;
        };
        self.len -= 1;
        counters.status_updates_acked += 1;
        stream.attempts = 0;
        stream.retry_at = None;
        if stream.queue.is_empty() {
            self.streams.remove(key);
        } else if online && stream.transmit(now, self.base_ms, self.cap_ms, out) {
            counters.status_updates_sent += 1;
        }
        self.arm(now, out);
        AckOutcome::Acked {
            terminal: head.status.state.is_terminal(),
        }
    }

    /// The agent just (re-)registered: send every head again, with a fresh backoff.
    pub fn flush(&mut self, now: Time, counters: &mut AgentCounters, out: &mut Vec<Action>) {
        for stream in self.streams.values_mut() {
            stream.attempts = 0;
            if stream.transmit(now, self.base_ms, self.cap_ms, out) {
                counters.status_updates_sent += 1;
            }
        }
        self.arm(now, out);
    }

    /// The master is gone: nothing is in flight any more until the next `flush`.
    pub fn offline(&mut self) {
        for stream in self.streams.values_mut() {
            stream.retry_at = None;
        }
    }

    /// `RetryStatusUpdates` fired: re-send every head that is due.
    pub fn on_timer(
        &mut self,
        now: Time,
        online: bool,
        counters: &mut AgentCounters,
        out: &mut Vec<Action>,
    ) {
        if self.armed_at.is_some_and(|at| at <= now) {
            self.armed_at = None;
        }
        if !online {
            return;
        }
        for stream in self.streams.values_mut() {
            if stream.retry_at.is_some_and(|at| at <= now)
                && stream.transmit(now, self.base_ms, self.cap_ms, out)
            {
                counters.status_updates_sent += 1;
                counters.status_update_retries += 1;
            }
        }
        self.arm(now, out);
    }

    /// Asks for a timer at the earliest retry unless an earlier one is already pending.
    fn arm(&mut self, now: Time, out: &mut Vec<Action>) {
        let Some(earliest) = self.streams.values().filter_map(|s| s.retry_at).min() else {
            return;
        };
        let pending = self.armed_at.filter(|at| *at > now);
        if pending.is_some_and(|at| at <= earliest) {
            return;
        }
        self.armed_at = Some(earliest);
        out.push(Action::SetTimer {
            timer: AgentTimer::RetryStatusUpdates,
            at: earliest,
        });
    }

    /// Keeps the total under `max_len` by dropping the oldest non-terminal updates (a later
    /// update of the task, or reconciliation, tells the master the current state anyway).
    /// Terminal updates are never dropped: they end the task for the master and the scheduler.
    fn enforce_limit(
        &mut self,
        now: Time,
        online: bool,
        counters: &mut AgentCounters,
        out: &mut Vec<Action>,
    ) {
        while self.len > self.max_len {
            let Some((key, index)) = self.pick_victim() else {
                tracing::warn!(
                    pending = self.len,
                    limit = self.max_len,
                    "status update queue over its limit but holds only terminal updates; keeping them"
                );
                return;
            };
            let Some(stream) = self.streams.get_mut(&key) else {
                return;
            };
            let Some(dropped) = stream.queue.remove(index) else {
                return;
            };
            self.len -= 1;
            counters.status_updates_dropped += 1;
            tracing::warn!(
                framework = %dropped.framework_id,
                task = %dropped.status.task_id,
                state = dropped.status.state.name(),
                limit = self.max_len,
                "status update queue full: dropped the oldest non-terminal update"
            );
            if index == 0 {
                stream.attempts = 0;
                stream.retry_at = None;
                if online && stream.transmit(now, self.base_ms, self.cap_ms, out) {
                    counters.status_updates_sent += 1;
                }
            }
            if stream.queue.is_empty() {
                self.streams.remove(&key);
            }
        }
    }

    /// The oldest non-terminal update, across all streams (in flight or not).
    fn pick_victim(&self) -> Option<(StreamKey, usize)> {
        self.streams
            .iter()
            .flat_map(|(k, s)| s.queue.iter().enumerate().map(move |(i, p)| (k, i, p)))
            .filter(|(_, _, p)| !p.status.state.is_terminal())
            .min_by_key(|(_, _, p)| p.seq)
            .map(|(k, i, _)| (k.clone(), i))
    }
}

/// Uuids for updates the agent itself produces: a counter mixed with the agent's `epoch`, so
/// they are deterministic (simulator) yet differ between incarnations of the agent.
#[derive(Debug, Clone)]
pub(crate) struct UuidGen {
    base: u64,
    next: u64,
}

impl UuidGen {
    pub fn new(epoch: u64) -> Self {
        UuidGen {
            base: mix64(epoch ^ 0xA60A_A6E7_0000_0000),
            next: 0,
        }
    }
    pub fn next(&mut self) -> u64 {
        self.next += 1;
        // XOR with a counter is a bijection: no two uuids of one incarnation collide.
        self.base ^ self.next
    }
}

/// splitmix64 finaliser: spreads nearby epochs over the whole u64 range.
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_actors::{TaskState, UpdateSource};

    fn fw() -> FrameworkId {
        FrameworkId::new("fw").unwrap()
    }
    fn status(task: &str, state: TaskState) -> TaskStatus {
        TaskStatus::new(TaskId::new(task).unwrap(), state, UpdateSource::Executor)
    }
    fn sent(out: &[Action]) -> Vec<(String, TaskState)> {
        out.iter()
            .filter_map(|a| match a {
                Action::SendMaster(Message::StatusUpdate { status, .. }) => {
                    Some((status.task_id.to_string(), status.state))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_head_in_flight_and_ack_advances() {
        let mut m = UpdateManager::new(10, 500, 10_000);
        let mut c = AgentCounters::default();
        let mut out = vec![];
        m.enqueue(
            Time(0),
            true,
            fw(),
            status("t", TaskState::Running),
            1,
            &mut c,
            &mut out,
        );
        m.enqueue(
            Time(0),
            true,
            fw(),
            status("t", TaskState::Finished),
            2,
            &mut c,
            &mut out,
        );
        assert_eq!(sent(&out), vec![("t".into(), TaskState::Running)]);
        let key = (fw(), TaskId::new("t").unwrap());
        out.clear();
        assert_eq!(
            m.ack(Time(1), true, &key, 2, &mut c, &mut out),
            AckOutcome::Stale
        );
        assert_eq!(
            m.ack(Time(1), true, &key, 1, &mut c, &mut out),
            AckOutcome::Acked { terminal: false }
        );
        assert_eq!(sent(&out), vec![("t".into(), TaskState::Finished)]);
        assert_eq!(
            m.ack(Time(2), true, &key, 2, &mut c, &mut out),
            AckOutcome::Acked { terminal: true }
        );
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn limit_drops_oldest_non_terminal_never_terminal() {
        let mut m = UpdateManager::new(2, 500, 10_000);
        let mut c = AgentCounters::default();
        let mut out = vec![];
        m.enqueue(
            Time(0),
            false,
            fw(),
            status("a", TaskState::Running),
            1,
            &mut c,
            &mut out,
        );
        m.enqueue(
            Time(0),
            false,
            fw(),
            status("a", TaskState::Finished),
            2,
            &mut c,
            &mut out,
        );
        m.enqueue(
            Time(0),
            false,
            fw(),
            status("b", TaskState::Failed),
            3,
            &mut c,
            &mut out,
        );
        // "a RUNNING" was the only non-terminal one: dropped; terminals stay.
        assert_eq!(c.status_updates_dropped, 1);
        assert_eq!(m.len(), 2);
        m.enqueue(
            Time(0),
            false,
            fw(),
            status("c", TaskState::Killed),
            4,
            &mut c,
            &mut out,
        );
        assert_eq!(m.len(), 3, "terminal updates are kept even over the limit");
    }

    #[test]
    fn uuids_are_deterministic_per_epoch_and_distinct() {
        let (mut a, mut b, mut c) = (UuidGen::new(7), UuidGen::new(7), UuidGen::new(8));
        let xs: Vec<u64> = (0..100).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], c.next());
        let set: std::collections::BTreeSet<u64> = xs.into_iter().collect();
        assert_eq!(set.len(), 100);
    }
}
