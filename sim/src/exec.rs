//! The simulated executor: an `Executor` run by the real `ExecutorDriverCore`, whose tasks
//! "run" for a virtual duration read from their command.
//!
//! Command forms (set by the scenario's frameworks): `sim:const:<ms>` runs exactly that long,
//! `sim:exp:<mean ms>` an exponentially distributed time drawn from a hash of the run's seed
//! and the task id (so the same task always takes the same time in one run), `sim:forever`
//! until killed. Anything else is refused with `TASK_FAILED`. A command may add the block its
//! task reads (`workload::with_block`): away from the block it runs `remote_pct` longer.

use agora_actors::sdk::{Executor, ExecutorCtx};
use agora_actors::{TaskId, TaskInfo, TaskState, TaskStatus, UpdateSource};
use std::collections::BTreeMap;

pub struct SimExecutor {
    seed: u64,
    /// Live tasks and the timer token that ends each.
    tasks: BTreeMap<TaskId, u64>,
    tokens: BTreeMap<u64, TaskId>,
    next_token: u64,
    /// Ran exactly one task that has the executor's own id: a per-task command executor,
    /// which exits when its task ends.
    per_task: bool,
    executor_id: String,
    /// The agent's hostname (whether a task's block is local).
    host: String,
}

impl SimExecutor {
    pub fn new(seed: u64, executor_id: &str, host: &str) -> Self {
        SimExecutor {
            seed,
            tasks: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_token: 1,
            per_task: false,
            executor_id: executor_id.to_string(),
            host: host.to_string(),
        }
    }

    fn end(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, state: TaskState, why: &str) {
        if let Some(token) = self.tasks.remove(task_id) {
            self.tokens.remove(&token);
        }
        let status = TaskStatus::new(task_id.clone(), state, UpdateSource::Executor)
            .with_reason(why, why.to_string());
        ctx.update(status);
        if self.per_task && self.tasks.is_empty() {
            ctx.stop();
        }
    }
}

/// Duration of a task, `None` for "forever", `Err` for a command the sim does not know.
pub fn task_duration_ms(command: &str, seed: u64, task_id: &str) -> Result<Option<u64>, String> {
    let parts: Vec<&str> = command.split(':').collect();
    match parts.as_slice() {
        ["sim", "forever"] => Ok(None),
        ["sim", "const", ms] => ms
            .parse()
            .map(Some)
            .map_err(|_| format!("bad ms in {command:?}")),
        ["sim", "exp", mean] => {
            let mean: f64 = mean
                .parse()
                .map_err(|_| format!("bad mean in {command:?}"))?;
            let u = unit_from_hash(seed, task_id);
            Ok(Some((-mean * (1.0 - u).ln()).round().max(1.0) as u64))
        }
        _ => Err(format!("not a simulated command: {command:?}")),
    }
}

/// A number in [0, 1) from a hash of the seed and the task id (FNV-1a, then splitmix).
fn unit_from_hash(seed: u64, task_id: &str) -> f64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in task_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Executor for SimExecutor {
    fn launch(&mut self, ctx: &mut ExecutorCtx, task: TaskInfo) {
        if task.task_id.as_str() == self.executor_id {
            self.per_task = true;
        }
        if self.tasks.contains_key(&task.task_id) {
            return; // a duplicate RunTask: already running
        }
        let command = task
            .command
            .as_ref()
            .map(|c| c.value.as_str())
            .unwrap_or("");
        let id = task.task_id.as_str();
        let duration = crate::workload::read_cost(command, &self.host).and_then(|(base, x)| {
            let ms = task_duration_ms(base, self.seed, id)?;
            Ok(ms.map(|ms| (ms as f64 * x).round() as u64))
        });
        let duration = match duration {
            Ok(d) => d,
            Err(why) => {
                let status =
                    TaskStatus::new(task.task_id, TaskState::Failed, UpdateSource::Executor)
                        .with_reason("command exited", why);
                ctx.update(status);
                if self.per_task && self.tasks.is_empty() {
                    ctx.stop();
                }
                return;
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        self.tasks.insert(task.task_id.clone(), token);
        self.tokens.insert(token, task.task_id.clone());
        ctx.update(TaskStatus::new(
            task.task_id,
            TaskState::Running,
            UpdateSource::Executor,
        ));
        if let Some(ms) = duration {
            ctx.set_timer(token, ms);
        }
    }

    fn kill(&mut self, ctx: &mut ExecutorCtx, task_id: &TaskId, _grace_ms: u64) {
        if self.tasks.contains_key(task_id) {
            self.end(ctx, task_id, TaskState::Killed, "killed");
        }
    }

    fn shutdown(&mut self, ctx: &mut ExecutorCtx, _grace_ms: u64) {
        let live: Vec<TaskId> = self.tasks.keys().cloned().collect();
        for t in live {
            self.end(ctx, &t, TaskState::Killed, "executor shutdown");
        }
        ctx.stop();
    }

    fn timer(&mut self, ctx: &mut ExecutorCtx, token: u64) {
        if let Some(task_id) = self.tokens.get(&token).cloned() {
            self.end(ctx, &task_id, TaskState::Finished, "command exited");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_are_stable() {
        assert_eq!(task_duration_ms("sim:const:1500", 1, "t"), Ok(Some(1500)));
        assert_eq!(task_duration_ms("sim:forever", 1, "t"), Ok(None));
        assert!(task_duration_ms("sleep 5", 1, "t").is_err());
        let a = task_duration_ms("sim:exp:1000", 7, "task-1").unwrap();
        assert_eq!(a, task_duration_ms("sim:exp:1000", 7, "task-1").unwrap());
        let mean: f64 = (0..2000)
            .map(|i| {
                task_duration_ms("sim:exp:1000", 7, &format!("t{i}"))
                    .unwrap()
                    .unwrap() as f64
            })
            .sum::<f64>()
            / 2000.0;
        assert!((900.0..1100.0).contains(&mean), "mean {mean}");
    }
}
