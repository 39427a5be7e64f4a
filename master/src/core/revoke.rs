//! Revocation with a grace period, the master's side. The allocator asks for resources back
//! from an over-share framework (`Input::Revoke`); the master:
//! 1. rescinds the framework's outstanding offers (free to take back, no task dies);
//! 2. if that is not enough, picks its tasks newest first — never one that uses reserved
//!    resources — until the rest is covered;
//! 3. warns the framework (`Message::RevocationWarning` per agent: resources, tasks, deadline);
//! 4. when the grace period ends (the framework's `revocation_grace_ms`, else
//!    `MasterConfig::revocation_grace_ms`), kills the chosen tasks still alive. Their
//!    `TASK_KILLED` updates carry reason `preempted`.
//!
//! One pending revocation per framework at a time: further requests for it are ignored until
//! its kills are sent (the allocator counts what it asked for as in flight anyway).

use super::model::BoundedSet;
use super::{reasons, Action, MasterCore, MasterTimer, Out};
use agora_actors::resources::Value;
use agora_actors::{AgentId, FrameworkId, Message, Resources, TaskId, TaskState, TaskStatus, Time};
use agora_allocator::RevocationRequest;
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, warn};

/// Killed tasks remembered so their (possibly retried) `TASK_KILLED` says `preempted`.
const MAX_PREEMPTED_REMEMBERED: usize = 10_000;

#[derive(Debug, Clone)]
struct Pending {
    framework_id: FrameworkId,
    tasks: Vec<(AgentId, TaskId)>,
}

/// The master's revocation books.
#[derive(Debug, Clone, Default)]
pub(crate) struct Revocations {
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    preempted: BoundedSet<(FrameworkId, TaskId)>,
}

/// Scalars by name, of the unreserved part only.
fn unreserved(r: &Resources) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (k, v) in r.iter() {
        if let (None, Value::Scalar(m)) = (&k.role, v) {
            *out.entry(k.name.clone()).or_insert(0) += m.0;
        }
    }
    out
}

/// What of `want` is not yet covered by `have`.
fn uncovered(want: &BTreeMap<String, i64>, have: &BTreeMap<String, i64>) -> BTreeSet<String> {
    want.iter()
        .filter(|(k, v)| have.get(*k).copied().unwrap_or(0) < **v)
        .map(|(k, _)| k.clone())
        .collect()
}

fn add_into(into: &mut BTreeMap<String, i64>, r: &BTreeMap<String, i64>) {
    for (k, v) in r {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

impl MasterCore {
    pub(crate) fn on_revoke(&mut self, now: Time, requests: Vec<RevocationRequest>, out: &mut Out) {
        for req in requests {
            let fw = req.framework_id.clone();
            if !self.frameworks.contains_key(&fw) {
                continue;
            }
            if self
                .revocations
                .pending
                .values()
                .any(|p| p.framework_id == fw)
            {
                continue;
            }
            self.revoke_from(now, req, out);
        }
    }

    fn revoke_from(&mut self, now: Time, req: RevocationRequest, out: &mut Out) {
        let fw = req.framework_id.clone();
        let want = unreserved(&req.resources);
        let mut covered = BTreeMap::new();
        let offers: Vec<_> = self
            .frameworks
            .get(&fw)
            .map(|f| f.offers.iter().cloned().collect())
            .unwrap_or_default();
        for id in offers {
            if let Some(o) = self.offers.get(&id) {
                add_into(&mut covered, &unreserved(&o.offer.resources));
            }
            self.rescind_offer(&id, true, true, out);
        }
        let chosen = self.choose_victims(&fw, &want, &mut covered);
        if chosen.is_empty() {
            info!(framework = %fw, for_role = %req.for_role, "revocation: offers rescinded; no task to kill");
            return;
        }
        let grace_ms = self
            .frameworks
            .get(&fw)
            .and_then(|f| f.info.revocation_grace_ms)
            .unwrap_or(self.config.revocation_grace_ms);
        self.warn_framework(&fw, &chosen, grace_ms, out);
        info!(framework = %fw, for_role = %req.for_role, tasks = chosen.len(), grace_ms,
            "revocation: framework warned; tasks will be killed after the grace period");
        let id = self.revocations.next_id;
        self.revocations.next_id += 1;
        self.revocations.pending.insert(
            id,
            Pending {
                framework_id: fw,
                tasks: chosen,
            },
        );
        out.push(Action::SetTimer {
            timer: MasterTimer::Revoke(id),
            at: now.plus_ms(grace_ms),
        });
    }

    /// The framework's live tasks to kill, newest first, until `want` is covered. Tasks that
    /// use reserved resources are never chosen.
    fn choose_victims(
        &self,
        fw: &FrameworkId,
        want: &BTreeMap<String, i64>,
        covered: &mut BTreeMap<String, i64>,
    ) -> Vec<(AgentId, TaskId)> {
        let Some(f) = self.frameworks.get(fw) else {
            return Vec::new();
        };
        let mut live: Vec<_> = f
            .tasks
            .iter()
            .filter_map(|t| self.tasks.get(&(fw.clone(), t.clone())).map(|e| (t, e)))
            .filter(|(_, e)| !e.state.is_terminal() && e.state != TaskState::Killing)
            .filter(|(_, e)| e.info.resources.iter().all(|(k, _)| k.role.is_none()))
            .collect();
        live.sort_by(|a, b| (b.1.launched_at, b.0).cmp(&(a.1.launched_at, a.0)));
        let mut chosen = Vec::new();
        for (task_id, e) in live {
            let missing = uncovered(want, covered);
            if missing.is_empty() {
                break;
            }
            let gives = unreserved(&e.info.resources);
            if !missing
                .iter()
                .any(|k| gives.get(k).copied().unwrap_or(0) > 0)
            {
                continue;
            }
            add_into(covered, &gives);
            chosen.push((e.agent_id.clone(), task_id.clone()));
        }
        chosen
    }

    fn warn_framework(
        &self,
        fw: &FrameworkId,
        chosen: &[(AgentId, TaskId)],
        grace_ms: u64,
        out: &mut Out,
    ) {
        let mut by_agent: BTreeMap<&AgentId, (Resources, Vec<TaskId>)> = BTreeMap::new();
        for (agent, task) in chosen {
            let e = by_agent.entry(agent).or_default();
            if let Some(t) = self.tasks.get(&(fw.clone(), task.clone())) {
                e.0 =
                    e.0.checked_add(&t.info.resources)
                        .unwrap_or_else(|_| e.0.clone());
            }
            e.1.push(task.clone());
        }
        for (agent, (resources, task_ids)) in by_agent {
            let msg = Message::RevocationWarning {
                agent_id: agent.clone(),
                resources,
                task_ids,
                deadline_ms: grace_ms,
            };
            self.send_to_framework(fw, msg, out);
        }
    }

    /// The grace period of revocation `id` is over: kill what is still alive.
    pub(crate) fn revocation_due(&mut self, id: u64, out: &mut Out) {
        let Some(p) = self.revocations.pending.remove(&id) else {
            return;
        };
        for (agent, task) in p.tasks {
            let key = (p.framework_id.clone(), task.clone());
            let live = self
                .tasks
                .get(&key)
                .is_some_and(|e| !e.state.is_terminal() && e.agent_id == agent);
            if !live {
                continue;
            }
            warn!(framework = %p.framework_id, task = %task, agent = %agent, "revocation: killing task (preempted)");
            self.revocations
                .preempted
                .insert(key, MAX_PREEMPTED_REMEMBERED);
            self.counters.tasks_preempted += 1;
            let msg = self.kill_message(&p.framework_id, &task);
            self.send_to_agent(&agent, msg, out);
        }
    }

    /// A `TASK_KILLED` of a task the master preempted says so.
    pub(crate) fn tag_preempted(&self, fw: &FrameworkId, status: &mut TaskStatus) {
        if status.state == TaskState::Killed
            && self
                .revocations
                .preempted
                .contains(&(fw.clone(), status.task_id.clone()))
        {
            status.reason = Some(reasons::PREEMPTED.to_string());
            status.message = "killed to revoke its resources for a role below its guarantee".into();
        }
    }
}
