//! Unit tests of the master core: a harness that plays agents and schedulers, plus a small
//! allocator double that mirrors the allocator's books so every test can check that the master's
//! `Recover`/`Add*`/`Remove*` events keep both sides in exact agreement.

mod accept;
mod agents;
mod frameworks;
mod offers;
mod random;
mod reservations;
mod revoke;
mod standby;
mod tasks;

use super::*;
use agora_actors::{
    AgentId, CommandInfo, ErrorCode, ExecutorId, ExecutorInfo, Filters, FrameworkInfo, Offer,
    Operation, Resources, TaskId, TaskInfo, TaskReport,
};
use std::collections::BTreeMap;

pub(super) fn res(s: &str) -> Resources {
    Resources::parse(s).expect("test resources parse")
}

pub(super) fn tid(s: &str) -> TaskId {
    TaskId::new(s).expect("test task id")
}

pub(super) fn task(id: &str, agent: &AgentId, r: &str) -> TaskInfo {
    TaskInfo {
        container: None,
        task_id: tid(id),
        name: format!("task {id}"),
        agent_id: agent.clone(),
        resources: res(r),
        command: Some(CommandInfo::shell("sleep 1")),
        executor: None,
        data: vec![],
    }
}

pub(super) fn executor(id: &str, r: &str) -> ExecutorInfo {
    ExecutorInfo {
        executor_id: ExecutorId::new(id).expect("executor id"),
        name: id.to_string(),
        command: Some(CommandInfo::shell("my-executor")),
        resources: res(r),
    }
}

pub(super) fn accept(
    fw: &FrameworkId,
    offers: &[&Offer],
    tasks: Vec<TaskInfo>,
    refuse_seconds: f64,
) -> Message {
    Message::Accept {
        framework_id: fw.clone(),
        offer_ids: offers.iter().map(|o| o.id.clone()).collect(),
        operations: vec![Operation::Launch { tasks }],
        filters: Filters { refuse_seconds },
    }
}

/// Messages sent to `conn` (including a closing message).
pub(super) fn sent_to(actions: &[Action], conn: ConnId) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn: c, msg } if *c == conn => Some(msg.clone()),
            Action::Close {
                conn: c,
                last: Some(msg),
            } if *c == conn => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn closed(actions: &[Action], conn: ConnId) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Close { conn: c, .. } if *c == conn))
}

pub(super) fn alloc_events(actions: &[Action]) -> Vec<AllocatorEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Allocator(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn recovers(actions: &[Action]) -> Vec<(Resources, Option<u64>)> {
    alloc_events(actions)
        .into_iter()
        .filter_map(|e| match e {
            AllocatorEvent::Recover {
                resources,
                refuse_ms,
                ..
            } => Some((resources, refuse_ms)),
            _ => None,
        })
        .collect()
}

pub(super) fn updates(actions: &[Action], conn: ConnId) -> Vec<TaskStatus> {
    sent_to(actions, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::Update { status } => Some(status),
            _ => None,
        })
        .collect()
}

pub(super) fn run_tasks(actions: &[Action]) -> Vec<TaskInfo> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                msg: Message::RunTask { task, .. },
                ..
            } => Some(task.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn errors(actions: &[Action], conn: ConnId) -> Vec<(ErrorCode, String, bool)> {
    sent_to(actions, conn)
        .into_iter()
        .filter_map(|m| match m {
            Message::Error {
                code,
                message,
                fatal,
            } => Some((code, message, fatal)),
            _ => None,
        })
        .collect()
}

/// Mirrors what a correct allocator believes is allocated, per (agent, framework), from the
/// events alone, and complains loudly about events that would corrupt a real allocator's books.
#[derive(Default)]
pub(super) struct AllocatorDouble {
    pub totals: BTreeMap<AgentId, Resources>,
    pub allocated: BTreeMap<(AgentId, FrameworkId), Resources>,
    pub frameworks: BTreeMap<FrameworkId, bool>,
}

impl AllocatorDouble {
    pub fn apply(&mut self, event: &AllocatorEvent) {
        match event {
            AllocatorEvent::AddAgent {
                agent_id,
                total,
                used,
                ..
            } => {
                assert!(
                    !self.totals.contains_key(agent_id),
                    "AddAgent for known agent {agent_id}"
                );
                self.totals.insert(agent_id.clone(), total.clone());
                for (fw, r) in used {
                    assert!(!r.is_empty(), "empty used entry");
                    self.allocated
                        .insert((agent_id.clone(), fw.clone()), r.clone());
                }
            }
            AllocatorEvent::RemoveAgent { agent_id } => {
                self.totals.remove(agent_id);
                self.allocated.retain(|(a, _), _| a != agent_id);
            }
            AllocatorEvent::AddFramework {
                framework_id,
                used,
                active,
                ..
            } => {
                assert!(
                    !self.frameworks.contains_key(framework_id),
                    "AddFramework for known {framework_id}"
                );
                self.frameworks.insert(framework_id.clone(), *active);
                for (agent, r) in used {
                    self.add(agent, framework_id, r);
                }
            }
            AllocatorEvent::RemoveFramework { framework_id } => {
                self.frameworks.remove(framework_id);
                self.allocated.retain(|(_, f), _| f != framework_id);
            }
            AllocatorEvent::ActivateFramework { framework_id } => {
                assert!(
                    self.frameworks.contains_key(framework_id),
                    "activate unknown {framework_id}"
                );
                self.frameworks.insert(framework_id.clone(), true);
            }
            AllocatorEvent::DeactivateFramework { framework_id } => {
                assert!(
                    self.frameworks.contains_key(framework_id),
                    "deactivate unknown {framework_id}"
                );
                self.frameworks.insert(framework_id.clone(), false);
            }
            AllocatorEvent::Recover {
                framework_id,
                agent_id,
                resources,
                ..
            } => {
                if !self.totals.contains_key(agent_id)
                    || !self.frameworks.contains_key(framework_id)
                {
                    return; // a real allocator logs and ignores these
                }
                let key = (agent_id.clone(), framework_id.clone());
                let have = self.allocated.get(&key).cloned().unwrap_or_default();
                let left = have.checked_sub(resources).unwrap_or_else(|_| {
                    panic!("Recover of {resources} on {agent_id} for {framework_id} but only {have} allocated")
                });
                if left.is_empty() {
                    self.allocated.remove(&key);
                } else {
                    self.allocated.insert(key, left);
                }
            }
            AllocatorEvent::Revive { .. } | AllocatorEvent::Suppress { .. } => {}
            AllocatorEvent::UpdateReservation {
                agent_id,
                framework_id,
                from,
                to,
            } => {
                assert_eq!(
                    from.unreserved_view(),
                    to.unreserved_view(),
                    "quantities kept"
                );
                let swap = |r: &Resources| r.checked_sub(from).and_then(|x| x.checked_add(to));
                let total = &self.totals[agent_id];
                let changed = swap(total).expect("reservation within the agent's total");
                self.totals.insert(agent_id.clone(), changed);
                if let Some(fw) = framework_id {
                    let key = (agent_id.clone(), fw.clone());
                    let held = self.allocated.get(&key).cloned().unwrap_or_default();
                    let changed = swap(&held).expect("reservation within what the framework holds");
                    self.allocated.insert(key, changed);
                }
            }
        }
    }

    fn add(&mut self, agent: &AgentId, fw: &FrameworkId, r: &Resources) {
        let key = (agent.clone(), fw.clone());
        let have = self.allocated.get(&key).cloned().unwrap_or_default();
        self.allocated
            .insert(key, have.checked_add(r).expect("add"));
    }

    pub fn free(&self, agent: &AgentId) -> Resources {
        let total = self.totals.get(agent).cloned().unwrap_or_default();
        let used = self
            .allocated
            .iter()
            .filter(|((a, _), _)| a == agent)
            .fold(Resources::new(), |acc, (_, r)| {
                acc.checked_add(r).expect("sum")
            });
        total
            .checked_sub(&used)
            .expect("allocator double overcommitted")
    }

    /// Allocates `r` (which must be free) and returns the allocation.
    pub fn allocate(&mut self, agent: &AgentId, fw: &FrameworkId, r: &Resources) -> Allocation {
        assert!(
            self.free(agent).contains(r),
            "test allocates more than is free"
        );
        self.add(agent, fw, r);
        Allocation {
            framework_id: fw.clone(),
            agent_id: agent.clone(),
            resources: r.clone(),
        }
    }
}

/// Plays the shell: feeds inputs at a virtual time, applies allocator events to the double and
/// checks the master's invariants after every step.
pub(super) struct Harness {
    pub core: MasterCore,
    pub now: Time,
    pub alloc: AllocatorDouble,
    next_conn: ConnId,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(MasterConfig::default())
    }

    pub fn with_config(config: MasterConfig) -> Harness {
        let mut core = MasterCore::new(config, 7);
        let actions = core.start(Time(0));
        assert_eq!(actions.len(), 2);
        Harness {
            core,
            now: Time(0),
            alloc: AllocatorDouble::default(),
            next_conn: 1,
        }
    }

    pub fn input(&mut self, input: Input) -> Vec<Action> {
        let actions = self.core.handle(self.now, input);
        for e in alloc_events(&actions) {
            self.alloc.apply(&e);
        }
        check_invariants(&self.core, &self.alloc);
        actions
    }

    pub fn connect(&mut self, kind: NodeKind) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let peer = Hello::new("agora", kind, &format!("peer-{conn}"));
        let actions = self.input(Input::Connected { conn, peer });
        assert!(actions.is_empty(), "{actions:?}");
        conn
    }

    pub fn send(&mut self, conn: ConnId, msg: Message) -> Vec<Action> {
        self.input(Input::Message { conn, msg })
    }

    pub fn disconnect(&mut self, conn: ConnId) -> Vec<Action> {
        self.input(Input::Disconnected { conn })
    }

    pub fn timer(&mut self, timer: MasterTimer) -> Vec<Action> {
        self.input(Input::Timer(timer))
    }

    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
    }

    pub fn register_agent(&mut self, r: &str) -> (ConnId, AgentId) {
        let conn = self.connect(NodeKind::Agent);
        let actions = self.send(
            conn,
            Message::RegisterAgent {
                hostname: format!("host{conn}"),
                endpoint: format!("10.0.0.{conn}:5051"),
                resources: res(r),
                attributes: [("rack".to_string(), "r1".to_string())].into(),
            },
        );
        match sent_to(&actions, conn).as_slice() {
            [Message::AgentRegistered { agent_id, .. }] => (conn, agent_id.clone()),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    pub fn subscribe_info(&mut self, info: FrameworkInfo) -> (ConnId, Vec<Action>) {
        let conn = self.connect(NodeKind::Scheduler);
        let actions = self.send(conn, Message::Subscribe { framework: info });
        (conn, actions)
    }

    pub fn subscribe(&mut self, name: &str) -> (ConnId, FrameworkId) {
        let (conn, actions) = self.subscribe_info(FrameworkInfo::new(name));
        match sent_to(&actions, conn).as_slice() {
            [Message::Subscribed { framework_id, .. }] => (conn, framework_id.clone()),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// Has the allocator double allocate `r` of `agent` to `fw` and returns the offer made.
    pub fn offer(&mut self, fw: &FrameworkId, agent: &AgentId, r: &str) -> Offer {
        let alloc = self.alloc.allocate(agent, fw, &res(r));
        let actions = self.input(Input::Allocations(vec![alloc]));
        let offers: Vec<Offer> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    msg: Message::Offers { offers },
                    ..
                } => Some(offers.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(offers.len(), 1, "{actions:?}");
        offers[0].clone()
    }

    /// Launches one task on a fresh offer of exactly its resources; returns the task id.
    pub fn launch(
        &mut self,
        sched: ConnId,
        fw: &FrameworkId,
        agent: &AgentId,
        id: &str,
        r: &str,
    ) -> TaskId {
        let offer = self.offer(fw, agent, r);
        let actions = self.send(sched, accept(fw, &[&offer], vec![task(id, agent, r)], 5.0));
        assert_eq!(run_tasks(&actions).len(), 1, "{actions:?}");
        tid(id)
    }

    pub fn status(
        &mut self,
        agent_conn: ConnId,
        fw: &FrameworkId,
        id: &str,
        state: TaskState,
        uuid: u64,
    ) -> Vec<Action> {
        let mut status = TaskStatus::new(tid(id), state, UpdateSource::Executor);
        status.uuid = Some(uuid);
        self.send(
            agent_conn,
            Message::StatusUpdate {
                framework_id: fw.clone(),
                status,
            },
        )
    }

    pub fn task_state(&self, fw: &FrameworkId, id: &str) -> Option<TaskState> {
        self.core.tasks.get(&(fw.clone(), tid(id))).map(|t| t.state)
    }

    pub fn report(&self, fw: &FrameworkId, id: &str) -> TaskReport {
        let t = &self.core.tasks[&(fw.clone(), tid(id))];
        TaskReport {
            framework_id: fw.clone(),
            executor_id: t.executor_id.clone(),
            task: t.info.clone(),
            state: t.state,
        }
    }
}

/// The master's books are self-consistent, never overcommit an agent, and agree exactly with
/// what a correct allocator would believe after the events the master sent it.
pub(super) fn check_invariants(core: &MasterCore, alloc: &AllocatorDouble) {
    for (id, agent) in &core.agents {
        let used = core.agent_used(id);
        let offered = core.agent_offered(id);
        let both = used.checked_add(&offered).expect("sum");
        assert!(
            agent.total.contains(&both),
            "agent {id}: used {used} + offered {offered} > total {}",
            agent.total
        );
        for oid in &agent.offers {
            assert_eq!(&core.offers[oid].offer.agent_id, id);
        }
        for key in &agent.tasks {
            assert_eq!(&core.tasks[key].agent_id, id);
        }
    }
    for (oid, o) in &core.offers {
        assert!(core.agents[&o.offer.agent_id].offers.contains(oid));
        assert!(core.frameworks[&o.offer.framework_id].offers.contains(oid));
        assert!(
            core.agents[&o.offer.agent_id].conn.is_some(),
            "offer on a disconnected agent"
        );
        assert!(
            core.frameworks[&o.offer.framework_id].conn.is_some(),
            "offer to an inactive framework"
        );
    }
    for ((fw, t), task) in &core.tasks {
        assert!(!task.state.is_terminal(), "terminal task {t} still live");
        assert!(core.frameworks[fw].tasks.contains(t));
        assert!(core.agents[&task.agent_id]
            .tasks
            .contains(&(fw.clone(), t.clone())));
    }
    assert!(core.completed.len() <= core.config.max_completed_tasks);
    // Exact agreement with the allocator's books.
    let agents: Vec<&AgentId> = core.agents.keys().collect();
    assert_eq!(
        agents,
        alloc.totals.keys().collect::<Vec<_>>(),
        "agent sets differ"
    );
    let mut mine: BTreeMap<(AgentId, FrameworkId), Resources> = BTreeMap::new();
    for id in core.agents.keys() {
        for (fw, r) in core.agent_used_by_framework(id) {
            mine.insert((id.clone(), fw), r);
        }
    }
    for o in core.offers.values() {
        let key = (o.offer.agent_id.clone(), o.offer.framework_id.clone());
        let have = mine.remove(&key).unwrap_or_default();
        mine.insert(key, have.checked_add(&o.offer.resources).expect("sum"));
    }
    assert_eq!(mine, alloc.allocated, "master and allocator books differ");
}
