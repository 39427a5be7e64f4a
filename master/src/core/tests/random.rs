//! Randomised runs: a tiny seeded simulation of agents, schedulers and an allocator drives the
//! core with valid, stale, duplicated and plainly wrong inputs. After every step the harness
//! checks the invariants (no overcommit, consistent books, exact agreement with the allocator
//! double); a panic anywhere fails the run.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

const TASK_RESOURCES: [&str; 6] = [
    "cpus:1",
    "cpus:0.5;mem:128",
    "mem:256;ports:[31000-31001]",
    "cpus:2;mem:512",
    "gpus:1",
    "cpus:4;mem:1024",
];

struct SimAgent {
    conn: Option<ConnId>,
    id: Option<AgentId>,
    tasks: BTreeMap<(FrameworkId, TaskId), TaskReport>,
}

struct SimSched {
    conn: Option<ConnId>,
    id: Option<FrameworkId>,
    name: String,
    failover_timeout_ms: u64,
    offers: Vec<Offer>,
}

#[allow(clippy::large_enum_variant)] // test-only queue; size does not matter
enum Pending {
    Msg(ConnId, Message),
    Disconnected(ConnId),
}

struct Sim {
    h: Harness,
    rng: Rng,
    agents: Vec<SimAgent>,
    scheds: Vec<SimSched>,
    timers: Vec<(Time, MasterTimer)>,
    pending: VecDeque<Pending>,
    next_task: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let config = MasterConfig {
            max_missed_pings: 3,
            max_completed_tasks: 20,
            ..MasterConfig::default()
        };
        let mut sim = Sim {
            h: Harness::with_config(config),
            rng: Rng(seed),
            agents: Vec::new(),
            scheds: Vec::new(),
            timers: vec![
                (Time(2_000), MasterTimer::PingAgents),
                (Time(15_000), MasterTimer::Heartbeat),
            ],
            pending: VecDeque::new(),
            next_task: 0,
        };
        for _ in 0..3 {
            sim.agents.push(SimAgent {
                conn: None,
                id: None,
                tasks: BTreeMap::new(),
            });
        }
        for name in ["web", "batch", "mpi"] {
            let failover_timeout_ms = if sim.rng.chance(50) { 0 } else { 5_000 };
            sim.scheds.push(SimSched {
                conn: None,
                id: None,
                name: name.into(),
                failover_timeout_ms,
                offers: vec![],
            });
        }
        for i in 0..3 {
            sim.connect_agent(i);
            sim.connect_sched(i);
        }
        sim
    }

    fn feed(&mut self, input: Input) {
        let actions = self.h.input(input);
        self.route(actions);
    }

    fn route(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { conn, msg } => self.deliver(conn, msg),
                Action::Close { conn, last } => {
                    if let Some(msg) = last {
                        self.deliver(conn, msg);
                    }
                    self.agents
                        .iter_mut()
                        .filter(|a| a.conn == Some(conn))
                        .for_each(|a| a.conn = None);
                    self.scheds
                        .iter_mut()
                        .filter(|s| s.conn == Some(conn))
                        .for_each(|s| {
                            s.conn = None;
                            s.offers.clear();
                        });
                    self.pending.push_back(Pending::Disconnected(conn));
                }
                Action::SetTimer { timer, at } => self.timers.push((at, timer)),
                Action::Allocator(_) | Action::AgentUnreachable { .. } => {}
            }
        }
    }

    fn deliver(&mut self, conn: ConnId, msg: Message) {
        let pong = self.rng.chance(85);
        let kill_now = self.rng.chance(70);
        if let Some(a) = self.agents.iter_mut().find(|a| a.conn == Some(conn)) {
            match msg {
                Message::AgentRegistered { agent_id, .. } => a.id = Some(agent_id),
                Message::Ping if pong => self.pending.push_back(Pending::Msg(conn, Message::Pong)),
                Message::RunTask { framework, task } => {
                    let fw = framework.id.expect("framework id");
                    let executor_id = task
                        .executor
                        .as_ref()
                        .map(|e| e.executor_id.clone())
                        .unwrap_or_else(|| ExecutorId::new(task.task_id.as_str()).unwrap());
                    let report = TaskReport {
                        framework_id: fw.clone(),
                        executor_id,
                        task: task.clone(),
                        state: TaskState::Running,
                    };
                    a.tasks.insert((fw, task.task_id), report);
                }
                Message::KillTask {
                    framework_id,
                    task_id,
                    ..
                } if kill_now
                    && a.tasks
                        .remove(&(framework_id.clone(), task_id.clone()))
                        .is_some() =>
                {
                    let status =
                        TaskStatus::new(task_id, TaskState::Killed, UpdateSource::Executor);
                    let msg = Message::StatusUpdate {
                        framework_id,
                        status,
                    };
                    self.pending.push_back(Pending::Msg(conn, msg));
                }
                Message::ShutdownFramework { framework_id } => {
                    a.tasks.retain(|(f, _), _| *f != framework_id)
                }
                _ => {}
            }
            return;
        }
        if let Some(s) = self.scheds.iter_mut().find(|s| s.conn == Some(conn)) {
            match msg {
                Message::Subscribed { framework_id, .. } => s.id = Some(framework_id),
                Message::Offers { offers } => s.offers.extend(offers),
                Message::Rescind { offer_id } => s.offers.retain(|o| o.id != offer_id),
                Message::Error {
                    fatal: true,
                    message,
                    ..
                } if message.contains("removed") => s.id = None,
                Message::Update { status } => {
                    if let (Some(uuid), Some(agent_id), Some(fw)) =
                        (status.uuid, status.agent_id.clone(), s.id.clone())
                    {
                        let ack = Message::Acknowledge {
                            framework_id: fw,
                            agent_id,
                            task_id: status.task_id,
                            uuid,
                        };
                        self.pending.push_back(Pending::Msg(conn, ack));
                    }
                }
                _ => {}
            }
        }
    }

    fn connect_agent(&mut self, i: usize) {
        let conn = self.h.connect(NodeKind::Agent);
        self.agents[i].conn = Some(conn);
        let resources = res("cpus:4;mem:1024;ports:[31000-31009]");
        let msg = match self.agents[i].id.clone() {
            None => Message::RegisterAgent {
                hostname: format!("h{i}"),
                endpoint: format!("10.0.0.{i}:5051"),
                resources,
                attributes: Default::default(),
            },
            Some(agent_id) => {
                let mut tasks: Vec<TaskReport> = self.agents[i].tasks.values().cloned().collect();
                if !tasks.is_empty() && self.rng.chance(30) {
                    let gone = tasks.remove(self.rng.below(tasks.len()));
                    self.agents[i]
                        .tasks
                        .remove(&(gone.framework_id, gone.task.task_id));
                }
                Message::ReregisterAgent {
                    agent_id,
                    hostname: format!("h{i}"),
                    endpoint: format!("10.0.0.{i}:5051"),
                    resources,
                    attributes: Default::default(),
                    tasks,
                    frameworks: vec![],
                }
            }
        };
        self.feed(Input::Message { conn, msg });
    }

    fn connect_sched(&mut self, i: usize) {
        let conn = self.h.connect(NodeKind::Scheduler);
        let s = &mut self.scheds[i];
        s.conn = Some(conn);
        s.offers.clear();
        let mut info = FrameworkInfo::new(&s.name);
        info.failover_timeout_ms = s.failover_timeout_ms;
        info.id = s.id.clone();
        if self.rng.chance(5) {
            info.name = "hijacker".into();
        }
        self.feed(Input::Message {
            conn,
            msg: Message::Subscribe { framework: info },
        });
    }

    fn step(&mut self) {
        while let Some(p) = self.pending.pop_front() {
            match p {
                Pending::Msg(conn, msg) => self.feed(Input::Message { conn, msg }),
                Pending::Disconnected(conn) => self.feed(Input::Disconnected { conn }),
            }
        }
        self.h.advance(self.rng.below(1_500) as u64);
        match self.rng.below(12) {
            0 | 1 => self.allocate(),
            2 | 3 => self.accept(),
            4 => self.decline(),
            5 => self.status_update(),
            6 => self.toggle_agent(),
            7 => self.toggle_sched(),
            8 => self.kill_or_reconcile(),
            9 => self.garbage(),
            _ => self.fire_timers(),
        }
    }

    fn allocate(&mut self) {
        let agents: Vec<AgentId> = self.h.alloc.totals.keys().cloned().collect();
        let fws: Vec<FrameworkId> = self.h.alloc.frameworks.keys().cloned().collect();
        let (Some(agent), Some(fw)) = (
            self.rng.pick(&agents).cloned(),
            self.rng.pick(&fws).cloned(),
        ) else {
            return;
        };
        let free = self.h.alloc.free(&agent);
        let want = if self.rng.chance(50) {
            free.clone()
        } else {
            res("cpus:1;mem:256")
        };
        if want.is_empty() || !free.contains(&want) {
            return;
        }
        let alloc = self.h.alloc.allocate(&agent, &fw, &want);
        self.feed(Input::Allocations(vec![alloc]));
    }

    fn sched_with_conn(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.scheds.len())
            .filter(|i| self.scheds[*i].conn.is_some() && self.scheds[*i].id.is_some())
            .collect();
        self.rng.pick(&live).copied()
    }

    fn random_task(&mut self, agent: &AgentId) -> TaskInfo {
        self.next_task += 1;
        let id = if self.rng.chance(10) {
            format!("t{}", self.next_task / 2)
        } else {
            format!("t{}", self.next_task)
        };
        let r = TASK_RESOURCES[self.rng.below(TASK_RESOURCES.len())];
        let mut t = task(&id, agent, r);
        if self.rng.chance(30) {
            t.command = None;
            t.executor = Some(executor(
                "e1",
                if self.rng.chance(80) {
                    "cpus:0.5"
                } else {
                    "cpus:0.1"
                },
            ));
        }
        if self.rng.chance(5) {
            t.agent_id = AgentId::new("agent-elsewhere").unwrap();
        }
        t
    }

    fn accept(&mut self) {
        let Some(i) = self.sched_with_conn() else {
            return;
        };
        if self.scheds[i].offers.is_empty() {
            return;
        }
        let pick = self.rng.below(self.scheds[i].offers.len());
        let mut chosen = vec![self.scheds[i].offers.remove(pick)];
        if self.rng.chance(20) {
            if let Some(o) = self.scheds[i].offers.first().cloned() {
                chosen.push(o); // maybe another agent's: the accept is then invalid
            }
        }
        let agent = chosen[0].agent_id.clone();
        let n = self.rng.below(4);
        let tasks: Vec<TaskInfo> = (0..n).map(|_| self.random_task(&agent)).collect();
        let fw = self.scheds[i].id.clone().unwrap();
        let refuse = if self.rng.chance(5) { f64::NAN } else { 1.0 };
        let refs: Vec<&Offer> = chosen.iter().collect();
        let msg = super::accept(&fw, &refs, tasks, refuse);
        let conn = self.scheds[i].conn.unwrap();
        self.feed(Input::Message { conn, msg });
    }

    fn decline(&mut self) {
        let Some(i) = self.sched_with_conn() else {
            return;
        };
        let mut ids: Vec<OfferId> = self.scheds[i].offers.drain(..).map(|o| o.id).collect();
        if self.rng.chance(20) {
            ids.push(OfferId::new("offer-bogus").unwrap());
        }
        let fw = self.scheds[i].id.clone().unwrap();
        let msg = Message::Decline {
            framework_id: fw,
            offer_ids: ids,
            filters: Filters {
                refuse_seconds: 0.5,
            },
        };
        let conn = self.scheds[i].conn.unwrap();
        self.feed(Input::Message { conn, msg });
    }

    fn status_update(&mut self) {
        let live: Vec<usize> = (0..self.agents.len())
            .filter(|i| self.agents[*i].conn.is_some())
            .collect();
        let Some(&i) = self.rng.pick(&live) else {
            return;
        };
        let keys: Vec<(FrameworkId, TaskId)> = self.agents[i].tasks.keys().cloned().collect();
        let Some(key) = self.rng.pick(&keys).cloned() else {
            return;
        };
        let states = [
            TaskState::Running,
            TaskState::Finished,
            TaskState::Failed,
            TaskState::Killed,
            TaskState::Lost,
        ];
        let state = states[self.rng.below(states.len())];
        if state.is_terminal() && self.rng.chance(90) {
            self.agents[i].tasks.remove(&key);
        }
        let mut status = TaskStatus::new(key.1, state, UpdateSource::Executor);
        status.uuid = Some(self.rng.next());
        let conn = self.agents[i].conn.unwrap();
        self.feed(Input::Message {
            conn,
            msg: Message::StatusUpdate {
                framework_id: key.0,
                status,
            },
        });
    }

    fn toggle_agent(&mut self) {
        let i = self.rng.below(self.agents.len());
        match self.agents[i].conn {
            Some(conn) => {
                self.agents[i].conn = None;
                self.feed(Input::Disconnected { conn });
            }
            None => self.connect_agent(i),
        }
    }

    fn toggle_sched(&mut self) {
        let i = self.rng.below(self.scheds.len());
        match self.scheds[i].conn {
            Some(conn) if self.rng.chance(20) && self.scheds[i].id.is_some() => {
                let fw = self.scheds[i].id.clone().unwrap();
                self.feed(Input::Message {
                    conn,
                    msg: Message::Teardown { framework_id: fw },
                });
                self.scheds[i].id = None;
            }
            Some(conn) => {
                self.scheds[i].conn = None;
                self.scheds[i].offers.clear();
                self.feed(Input::Disconnected { conn });
            }
            None => self.connect_sched(i),
        }
    }

    fn kill_or_reconcile(&mut self) {
        let Some(i) = self.sched_with_conn() else {
            return;
        };
        let fw = self.scheds[i].id.clone().unwrap();
        let conn = self.scheds[i].conn.unwrap();
        let task_id = tid(&format!("t{}", self.rng.below(self.next_task as usize + 2)));
        let msg = if self.rng.chance(50) {
            Message::Kill {
                framework_id: fw,
                task_id,
                agent_id: None,
            }
        } else {
            Message::Reconcile {
                framework_id: fw,
                tasks: if self.rng.chance(50) {
                    vec![]
                } else {
                    vec![(task_id, None)]
                },
            }
        };
        self.feed(Input::Message { conn, msg });
    }

    /// Messages on the wrong connection, for the wrong framework, or meaningless.
    fn garbage(&mut self) {
        let conns: Vec<ConnId> = self
            .agents
            .iter()
            .filter_map(|a| a.conn)
            .chain(self.scheds.iter().filter_map(|s| s.conn))
            .collect();
        let Some(&conn) = self.rng.pick(&conns) else {
            return;
        };
        let fw = FrameworkId::new("fw-stranger").unwrap();
        let msgs = [
            Message::Pong,
            Message::Heartbeat,
            Message::Revive {
                framework_id: fw.clone(),
            },
            Message::Accept {
                framework_id: fw.clone(),
                offer_ids: vec![],
                operations: vec![],
                filters: Filters::default(),
            },
            Message::StatusUpdate {
                framework_id: fw.clone(),
                status: TaskStatus::new(tid("x"), TaskState::Finished, UpdateSource::Agent),
            },
            Message::ExecutorToFramework {
                framework_id: fw,
                executor_id: ExecutorId::new("e").unwrap(),
                agent_id: AgentId::new("a").unwrap(),
                data: vec![],
            },
            Message::RegisterAgent {
                hostname: "x".into(),
                endpoint: "y".into(),
                resources: Resources::new(),
                attributes: Default::default(),
            },
        ];
        let msg = msgs[self.rng.below(msgs.len())].clone();
        self.feed(Input::Message { conn, msg });
    }

    fn fire_timers(&mut self) {
        self.timers.sort_by_key(|(at, _)| *at);
        let now = self.h.now;
        let due: Vec<MasterTimer> = self
            .timers
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, t)| t.clone())
            .collect();
        self.timers.retain(|(at, _)| *at > now);
        for timer in due {
            self.feed(Input::Timer(timer));
        }
    }
}

fn run(seed: u64, steps: usize) -> MasterCounters {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.step();
    }
    sim.h.core.counters().clone()
}

#[test]
fn seeded_random_runs_keep_the_books_straight() {
    let mut total = MasterCounters::default();
    for seed in 0..40 {
        let c = run(seed, 400);
        total.tasks_launched += c.tasks_launched;
        total.offers_made += c.offers_made;
        total.agents_removed += c.agents_removed;
        total.frameworks_removed += c.frameworks_removed;
        total.invalid_messages += c.invalid_messages;
        total.agents_reregistered += c.agents_reregistered;
    }
    // The runs must actually exercise the interesting paths.
    assert!(total.tasks_launched > 100, "{total:?}");
    assert!(total.offers_made > 500, "{total:?}");
    assert!(total.agents_removed > 0, "{total:?}");
    assert!(total.frameworks_removed > 0, "{total:?}");
    assert!(total.agents_reregistered > 10, "{total:?}");
    assert!(total.invalid_messages > 50, "{total:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_inputs_never_break_the_core(seed in any::<u64>()) {
        run(seed, 250);
    }
}
