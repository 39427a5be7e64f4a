//! The simulated cluster: nodes (real cores), connections, the event queue and the network.
//!
//! One thread, a virtual clock, events ordered by (time, sequence). Every node is its real
//! core; the world plays each shell's part (performing actions, arming timers, dialing,
//! noticing broken connections) and the allocator actor's (coalescing events, interval runs,
//! filter wakeups), so what runs here is the code that runs in production.

use crate::exec::SimExecutor;
use crate::fw::Tracked;
use crate::scenario::Scenario;
use agora_actors::sdk::driver::{
    DriverAction, DriverTimer, SchedulerDriverConfig, SchedulerDriverCore,
};
use agora_actors::sdk::executor::{
    ExecAction, ExecTimer, ExecutorDriverConfig, ExecutorDriverCore, ExecutorEnv,
};
use agora_actors::transport::ConnId;
use agora_actors::{ContainerId, Hello, Message, NodeKind, Time};
use agora_agent::core::{
    Action as AAction, AgentConfig, AgentCore, AgentTimer, Input as AInput, LaunchSpec,
};
use agora_allocator::{Allocator, DrfAllocator};
use agora_master::core::{
    Action as MAction, Input as MInput, MasterConfig, MasterCore, MasterTimer,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

pub const CLUSTER: &str = "agora";

/// A connection endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ep {
    Master,
    Agent(usize),
    Sched(usize),
    Exec(usize, ContainerId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocWhy {
    Coalesce,
    Interval,
    Wakeup,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Ev {
    Deliver {
        conn: ConnId,
        to_client: bool,
        msg: Message,
    },
    Open {
        conn: ConnId,
    },
    /// `ep` learns that `conn` is gone.
    Notify {
        conn: ConnId,
        ep: Ep,
    },
    /// The side that closed a connection is done sending on it: it goes down, the peer learns.
    CloseAfter {
        conn: ConnId,
        notify: Ep,
    },
    Dial {
        ep: Ep,
        inc: u64,
    },
    MasterTimer {
        inc: u64,
        timer: MasterTimer,
    },
    AllocRun {
        inc: u64,
        why: AllocWhy,
    },
    AgentTimer {
        node: usize,
        inc: u64,
        timer: AgentTimer,
    },
    SchedTimer {
        node: usize,
        timer: DriverTimer,
    },
    ExecTimer {
        node: usize,
        inc: u64,
        cid: ContainerId,
        timer: ExecTimer,
    },
    ContainerStart {
        node: usize,
        inc: u64,
        cid: ContainerId,
    },
    ContainerExit {
        node: usize,
        inc: u64,
        cid: ContainerId,
        code: Option<i32>,
        signal: Option<i32>,
    },
    SchedStart {
        node: usize,
    },
    FaultTick,
    RestartAgent {
        node: usize,
    },
    RestartMaster,
    Heal {
        ep: Ep,
    },
    PartitionBreak {
        ep: Ep,
    },
    LivenessStart,
}

pub struct Conn {
    pub client: Ep,
    pub up: bool,
    /// No more sends from the side that asked to close.
    pub closing: bool,
    /// Latest delivery time per direction (0: client→server, 1: server→client), for FIFO.
    fifo: [Time; 2],
    /// Between a client and the master (faults apply); executor links are local.
    faulty: bool,
    master_inc: u64,
}

pub struct MasterNode {
    pub inc: u64,
    /// Survives master crashes.
    pub registry: crate::persist::Registry,
    pub core: Option<MasterCore>,
    pub alloc: Option<DrfAllocator>,
    coalesce_armed: bool,
    wakeup_at: Option<Time>,
}

pub struct ExecNode {
    pub driver: ExecutorDriverCore<SimExecutor>,
    pub conn: Option<ConnId>,
}

pub struct AgentNode {
    /// Agent process incarnation (agent timers).
    pub inc: u64,
    /// Machine incarnation (containers and executors die only with the machine).
    pub boot: u64,
    /// The agent's checkpoint and container records: they survive both kinds of crash.
    pub disk: crate::persist::AgentDisk,
    /// Containers that ended while the agent process was down (their exit status, for the
    /// agent's recovery to find).
    exited_while_down: BTreeMap<ContainerId, (Option<i32>, Option<i32>)>,
    /// The machine crashed since the agent last ran: every container of the record is gone.
    rebooted: bool,
    pub core: Option<AgentCore>,
    pub conn: Option<ConnId>,
    pub execs: BTreeMap<ContainerId, ExecNode>,
    pending: BTreeMap<ContainerId, LaunchSpec>,
    exiting: BTreeSet<ContainerId>,
    pub partitioned_until: Option<Time>,
    pub hostname: String,
}

pub struct SchedNode {
    pub name: String,
    pub driver: SchedulerDriverCore<Tracked>,
    pub conn: Option<ConnId>,
    pub started: bool,
    pub partitioned_until: Option<Time>,
}

pub struct World {
    pub sc: Scenario,
    pub seed: u64,
    rng: ChaCha8Rng,
    pub now: Time,
    seq: u64,
    /// Min-heap on (time, sequence); events boxed so the heap moves pointers, not messages
    /// (moving large events inside a BTreeMap's nodes was a hot spot at 10,000 agents).
    queue: std::collections::BinaryHeap<Queued>,
    pub hash: u64,
    pub events: u64,
    pub master: MasterNode,
    pub agents: Vec<AgentNode>,
    pub scheds: Vec<SchedNode>,
    pub conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    pub faults_on: bool,
    pub liveness: bool,
    pub stats: BTreeMap<&'static str, u64>,
    /// What the last event touched, so invariants re-check only those books.
    pub touched_master: bool,
    pub touched_agents: BTreeSet<usize>,
}

/// A queued event; ordered so that `BinaryHeap` (a max-heap) pops the smallest (time, seq).
pub struct Queued {
    at: Time,
    seq: u64,
    ev: Box<Ev>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Feeds formatted text straight into the FNV-1a trace hash.
struct FnvWriter(u64);

impl std::fmt::Write for FnvWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 = fnv(self.0, s.as_bytes());
        Ok(())
    }
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl World {
    pub fn new(sc: Scenario, seed: u64) -> Result<World, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut scheds = Vec::new();
        for spec in &sc.frameworks {
            let tracked = Tracked::new(spec, sc.agents.count)
                .map_err(|e| format!("framework {}: {e}", spec.name))?;
            let config = SchedulerDriverConfig {
                jitter_seed: rng.gen(),
                ..SchedulerDriverConfig::default()
            };
            scheds.push(SchedNode {
                name: spec.name.clone(),
                driver: SchedulerDriverCore::new(tracked, config),
                conn: None,
                started: false,
                partitioned_until: None,
            });
        }
        let agents = (0..sc.agents.count)
            .map(|i| AgentNode {
                inc: 0,
                boot: 0,
                disk: Default::default(),
                exited_while_down: BTreeMap::new(),
                rebooted: false,
                core: None,
                conn: None,
                execs: BTreeMap::new(),
                pending: BTreeMap::new(),
                exiting: BTreeSet::new(),
                partitioned_until: None,
                hostname: format!("agent-{i}"),
            })
            .collect();
        let mut w = World {
            sc,
            seed,
            rng,
            now: Time::ZERO,
            seq: 0,
            queue: std::collections::BinaryHeap::new(),
            hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            master: MasterNode {
                inc: 0,
                registry: Default::default(),
                core: None,
                alloc: None,
                coalesce_armed: false,
                wakeup_at: None,
            },
            agents,
            scheds,
            conns: BTreeMap::new(),
            next_conn: 1,
            faults_on: false,
            liveness: false,
            stats: BTreeMap::new(),
            touched_master: true,
            touched_agents: BTreeSet::new(),
        };
        w.start_master()?;
        for i in 0..w.agents.len() {
            w.start_agent(i);
        }
        for i in 0..w.scheds.len() {
            let at = Time(w.sc.frameworks[i].start_ms);
            w.push(at, Ev::SchedStart { node: i });
        }
        if w.sc.safety_ms > 0 {
            w.faults_on = true;
            w.push(Time(1_000), Ev::FaultTick);
        }
        w.push(Time(w.sc.safety_ms), Ev::LivenessStart);
        Ok(w)
    }

    pub fn push(&mut self, at: Time, ev: Ev) {
        let at = at.max(self.now);
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev: Box::new(ev),
        });
    }

    fn bump(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen::<f64>() < p
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        }
    }

    /// Pops and performs the next event; false when the queue is empty.
    pub fn step(&mut self) -> bool {
        let Some(Queued { at, seq, ev }) = self.queue.pop() else {
            return false;
        };
        self.now = at;
        self.events += 1;
        self.touched_master = false;
        self.touched_agents.clear();
        // Streamed into the hash: no per-event string.
        let mut h = FnvWriter(self.hash);
        let _ = std::fmt::Write::write_fmt(&mut h, format_args!("{}|{seq}|{ev:?}\n", at.0));
        self.hash = h.0;
        self.handle(*ev);
        true
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                conn,
                to_client,
                msg,
            } => self.deliver(conn, to_client, msg),
            Ev::Open { conn } => self.open(conn),
            Ev::Notify { conn, ep } => self.notify(conn, ep),
            Ev::CloseAfter { conn, notify } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.up {
                        c.up = false;
                        self.notify(conn, notify);
                    }
                }
            }
            Ev::Dial { ep, inc } => self.dial(ep, inc),
            Ev::MasterTimer { inc, timer } => {
                if inc == self.master.inc {
                    self.master_input(MInput::Timer(timer));
                }
            }
            Ev::AllocRun { inc, why } => self.alloc_run(inc, why),
            Ev::AgentTimer { node, inc, timer } => {
                if self.agents[node].inc == inc {
                    self.agent_input(node, AInput::Timer(timer));
                }
            }
            Ev::SchedTimer { node, timer } => {
                let acts = self.scheds[node].driver.handle_timer(self.now, timer);
                self.sched_perform(node, acts);
            }
            Ev::ExecTimer {
                node,
                inc,
                cid,
                timer,
            } => {
                if self.agents[node].boot == inc {
                    if let Some(e) = self.agents[node].execs.get_mut(&cid) {
                        let acts = e.driver.handle_timer(self.now, timer);
                        self.exec_perform(node, &cid, acts);
                    }
                }
            }
            Ev::ContainerStart { node, inc, cid } => self.container_start(node, inc, cid),
            Ev::ContainerExit {
                node,
                inc,
                cid,
                code,
                signal,
            } => self.container_exit(node, inc, cid, code, signal),
            Ev::SchedStart { node } => {
                self.scheds[node].started = true;
                self.push(
                    self.now,
                    Ev::Dial {
                        ep: Ep::Sched(node),
                        inc: 0,
                    },
                );
            }
            Ev::FaultTick => self.fault_tick(),
            Ev::RestartAgent { node } => {
                if self.agents[node].core.is_none() {
                    self.start_agent(node);
                }
            }
            Ev::RestartMaster => {
                if self.master.core.is_none() {
                    let _ = self.start_master();
                }
            }
            Ev::Heal { ep } => {
                if let Some(p) = self.partition_of(&ep) {
                    if p.is_some_and(|until| until <= self.now) {
                        self.set_partition(&ep, None);
                    }
                }
            }
            Ev::PartitionBreak { ep } => {
                if self.partition_of(&ep).flatten().is_some() {
                    if let Some(conn) = self.client_conn(&ep) {
                        self.bump("partition_breaks");
                        self.break_conn(conn);
                    }
                }
            }
            Ev::LivenessStart => self.liveness_start(),
        }
    }

    // ---- network ------------------------------------------------------------------------

    fn partition_of(&self, ep: &Ep) -> Option<Option<Time>> {
        match ep {
            Ep::Agent(i) => Some(self.agents[*i].partitioned_until),
            Ep::Sched(i) => Some(self.scheds[*i].partitioned_until),
            _ => None,
        }
    }

    fn set_partition(&mut self, ep: &Ep, until: Option<Time>) {
        match ep {
            Ep::Agent(i) => self.agents[*i].partitioned_until = until,
            Ep::Sched(i) => self.scheds[*i].partitioned_until = until,
            _ => {}
        }
    }

    fn partitioned(&self, ep: &Ep) -> bool {
        self.partition_of(ep).flatten().is_some()
    }

    fn client_conn(&self, ep: &Ep) -> Option<ConnId> {
        match ep {
            Ep::Agent(i) => self.agents[*i].conn,
            Ep::Sched(i) => self.scheds[*i].conn,
            Ep::Exec(i, c) => self.agents[*i].execs.get(c).and_then(|e| e.conn),
            Ep::Master => None,
        }
    }

    /// Queues `msg` on `conn` from one side, through the (possibly faulty) network.
    fn send(&mut self, conn: ConnId, from_client: bool, msg: Message) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.up || c.closing {
            return;
        }
        let faulty = c.faulty;
        let client = c.client.clone();
        let dir = usize::from(!from_client);
        if !faulty {
            let at = self.now.plus_ms(1).max(self.conns[&conn].fifo[dir]);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.fifo[dir] = at;
            }
            self.push(
                at,
                Ev::Deliver {
                    conn,
                    to_client: !from_client,
                    msg,
                },
            );
            return;
        }
        let f = self.sc.faults.clone();
        if self.faults_on {
            if self.chance(f.reset_per_msg) {
                self.bump("resets");
                self.break_conn(conn);
                return;
            }
            if self.chance(f.drop_per_msg) {
                self.bump("drops");
                return;
            }
        }
        let n = self.sc.network.clone();
        let mut delay = self.between(n.min_delay_ms, n.max_delay_ms);
        // A partition holds messages back, as TCP retransmissions do, until it heals (or the
        // connection gives up and breaks, and then they are lost with it).
        if let Some(Some(until)) = self.partition_of(&client) {
            self.bump("msgs_held");
            delay += until.since(self.now);
        }
        let reorder = self.faults_on && self.chance(f.reorder_per_msg);
        let at = if reorder {
            self.bump("reorders");
            let extra = self.between(0, f.reorder_extra_ms);
            self.now.plus_ms(delay + extra)
        } else {
            let at = self.now.plus_ms(delay).max(self.conns[&conn].fifo[dir]);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.fifo[dir] = at;
            }
            at
        };
        if self.faults_on && self.chance(f.dup_per_msg) {
            self.bump("dups");
            let later = at.plus_ms(self.between(1, n.max_delay_ms));
            self.push(
                later,
                Ev::Deliver {
                    conn,
                    to_client: !from_client,
                    msg: msg.clone(),
                },
            );
        }
        self.push(
            at,
            Ev::Deliver {
                conn,
                to_client: !from_client,
                msg,
            },
        );
    }

    fn deliver(&mut self, conn: ConnId, to_client: bool, msg: Message) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.up {
            return;
        }
        let client = c.client.clone();
        match (to_client, client) {
            (false, Ep::Agent(_)) | (false, Ep::Sched(_)) => {
                self.master_input(MInput::Message { conn, msg })
            }
            (false, Ep::Exec(node, _)) => {
                self.agent_input(node, AInput::FromExecutor { conn, msg })
            }
            (true, Ep::Agent(node)) => self.agent_input(node, AInput::FromMaster(msg)),
            (true, Ep::Sched(node)) => {
                let acts = self.scheds[node].driver.handle_message(self.now, msg);
                self.sched_perform(node, acts);
            }
            (true, Ep::Exec(node, cid)) => {
                if let Some(e) = self.agents[node].execs.get_mut(&cid) {
                    let acts = e.driver.handle_message(self.now, msg);
                    self.exec_perform(node, &cid, acts);
                }
            }
            (_, Ep::Master) => {}
        }
    }

    /// The connection breaks (reset, crash, partition): each live side notices after a delay.
    fn break_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.up {
            return;
        }
        c.up = false;
        let client = c.client.clone();
        let server = match &client {
            Ep::Exec(node, _) => Ep::Agent(*node),
            _ => Ep::Master,
        };
        let detect = self.sc.network.detect_ms;
        for ep in [client, server] {
            let d = self.between(0, detect);
            self.push(self.now.plus_ms(d), Ev::Notify { conn, ep });
        }
    }

    /// `ep` learns that `conn` is gone (if it still cares about that connection).
    fn notify(&mut self, conn: ConnId, ep: Ep) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.up = false;
        }
        let master_inc = self.conns.get(&conn).map(|c| c.master_inc);
        match ep {
            Ep::Master => {
                if master_inc == Some(self.master.inc) {
                    self.master_input(MInput::Disconnected { conn });
                }
            }
            Ep::Agent(node) => {
                let is_master_link = self.agents[node].conn == Some(conn);
                if is_master_link {
                    self.agents[node].conn = None;
                    self.agent_input(node, AInput::MasterDisconnected);
                    self.redial(Ep::Agent(node));
                } else if self.agents[node].core.is_some()
                    && matches!(self.conns.get(&conn).map(|c| &c.client), Some(Ep::Exec(n, _)) if *n == node)
                {
                    self.agent_input(node, AInput::ExecutorDisconnected { conn });
                }
            }
            Ep::Sched(node) => {
                if self.scheds[node].conn == Some(conn) {
                    self.scheds[node].conn = None;
                    let acts = self.scheds[node]
                        .driver
                        .handle_disconnected(self.now, "connection lost");
                    self.sched_perform(node, acts);
                    self.redial(Ep::Sched(node));
                }
            }
            Ep::Exec(node, cid) => {
                let Some(e) = self.agents[node].execs.get_mut(&cid) else {
                    return;
                };
                if e.conn == Some(conn) {
                    e.conn = None;
                    let acts = e
                        .driver
                        .handle_disconnected(self.now, "agent connection lost");
                    self.exec_perform(node, &cid, acts.clone());
                    let inc = self.agents[node].boot;
                    self.push(
                        self.now.plus_ms(1_000),
                        Ev::Dial {
                            ep: Ep::Exec(node, cid),
                            inc,
                        },
                    );
                }
            }
        }
    }

    fn redial(&mut self, ep: Ep) {
        let n = &self.sc.network;
        let (lo, hi) = (n.redial_min_ms, n.redial_max_ms);
        let d = self.between(lo, hi);
        let inc = match &ep {
            Ep::Agent(i) => self.agents[*i].inc,
            Ep::Exec(i, _) => self.agents[*i].boot,
            _ => 0,
        };
        self.push(self.now.plus_ms(d), Ev::Dial { ep, inc });
    }

    fn dial(&mut self, ep: Ep, inc: u64) {
        let alive = match &ep {
            Ep::Agent(i) => self.agents[*i].inc == inc && self.agents[*i].core.is_some(),
            Ep::Sched(i) => self.scheds[*i].started && self.scheds[*i].driver.stopped().is_none(),
            Ep::Exec(i, c) => self.agents[*i].boot == inc && self.agents[*i].execs.contains_key(c),
            Ep::Master => false,
        };
        if !alive || self.client_conn(&ep).is_some() {
            return;
        }
        if let Ep::Exec(i, _) = &ep {
            if self.agents[*i].core.is_none() {
                // The agent process is down: nobody listens on its socket yet.
                let ep = ep.clone();
                self.push(self.now.plus_ms(1_000), Ev::Dial { ep, inc });
                return;
            }
        }
        let faulty = !matches!(ep, Ep::Exec(..));
        if faulty && (self.master.core.is_none() || (self.faults_on && self.partitioned(&ep))) {
            self.redial(ep);
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                client: ep.clone(),
                up: false,
                closing: false,
                fifo: [Time::ZERO; 2],
                faulty,
                master_inc: self.master.inc,
            },
        );
        match &ep {
            Ep::Agent(i) => self.agents[*i].conn = Some(conn),
            Ep::Sched(i) => self.scheds[*i].conn = Some(conn),
            Ep::Exec(i, c) => {
                if let Some(e) = self.agents[*i].execs.get_mut(c) {
                    e.conn = Some(conn);
                }
            }
            Ep::Master => {}
        }
        let rtt = if faulty {
            2 * self.sc.network.min_delay_ms
        } else {
            1
        };
        self.push(self.now.plus_ms(rtt), Ev::Open { conn });
    }

    /// The handshake completes: both sides learn of the connection, server first.
    fn open(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let client = c.client.clone();
        let ok = match &client {
            Ep::Exec(i, _) => {
                self.client_conn(&client) == Some(conn) && self.agents[*i].core.is_some()
            }
            _ => {
                self.client_conn(&client) == Some(conn)
                    && self.master.core.is_some()
                    && c.master_inc == self.master.inc
            }
        };
        if !ok {
            // The server went away during the handshake: the client sees a failed dial.
            if self.client_conn(&client) == Some(conn) {
                match &client {
                    Ep::Agent(i) => self.agents[*i].conn = None,
                    Ep::Sched(i) => self.scheds[*i].conn = None,
                    Ep::Exec(i, cid) => {
                        if let Some(e) = self.agents[*i].execs.get_mut(cid) {
                            e.conn = None;
                        }
                    }
                    Ep::Master => {}
                }
                self.redial(client);
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.up = true;
        }
        match client {
            Ep::Agent(i) => {
                let peer = Hello::new(CLUSTER, NodeKind::Agent, &self.agents[i].hostname);
                self.master_input(MInput::Connected { conn, peer });
                self.agent_input(i, AInput::MasterConnected);
            }
            Ep::Sched(i) => {
                let peer = Hello::new(CLUSTER, NodeKind::Scheduler, &self.scheds[i].name);
                self.master_input(MInput::Connected { conn, peer });
                let acts = self.scheds[i].driver.handle_connected(self.now);
                self.sched_perform(i, acts);
            }
            Ep::Exec(i, cid) => {
                let peer = Hello::new(CLUSTER, NodeKind::Executor, cid.as_str());
                self.agent_input(i, AInput::ExecutorConnected { conn, peer });
                if let Some(e) = self.agents[i].execs.get_mut(&cid) {
                    let acts = e.driver.handle_connected(self.now);
                    self.exec_perform(i, &cid, acts);
                }
            }
            Ep::Master => {}
        }
    }

    /// The sender closes `conn` once what it already sent has arrived.
    fn close_after_flush(&mut self, conn: ConnId, from_client: bool, notify: Ep) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.up || c.closing {
            return;
        }
        c.closing = true;
        let dir = usize::from(!from_client);
        let at = c.fifo[dir].max(self.now).plus_ms(1);
        self.push(at, Ev::CloseAfter { conn, notify });
    }

    // ---- master and allocator -----------------------------------------------------------

    fn master_config(&self) -> MasterConfig {
        // A short completed-tasks ring keeps `state()`, read after every event, cheap.
        let d = MasterConfig::default();
        MasterConfig {
            max_completed_tasks: 64,
            offer_timeout_ms: self.sc.offer_timeout_ms.unwrap_or(d.offer_timeout_ms),
            ..d
        }
    }

    fn start_master(&mut self) -> Result<(), String> {
        self.master.inc += 1;
        let inc = self.master.inc;
        let mut core = MasterCore::new(self.master_config(), inc);
        let alloc = crate::workload::allocator(&self.sc.allocator, self.seed)?;
        let acts = core.start(self.now);
        self.master.core = Some(core);
        self.master.alloc = Some(alloc);
        self.master.coalesce_armed = false;
        self.master.wakeup_at = None;
        self.master_perform(acts);
        // As the HA shell does once it leads: the registry's agents get a window to return.
        let input = MInput::RegistryAgents {
            agent_ids: self.master.registry.agent_ids(),
            reregister_timeout_ms: self.sc.agent_reregister_timeout_ms,
        };
        self.master_input(input);
        let at = self.now.plus_ms(self.sc.allocator.interval_ms);
        self.push(
            at,
            Ev::AllocRun {
                inc,
                why: AllocWhy::Interval,
            },
        );
        Ok(())
    }

    fn crash_master(&mut self) {
        self.bump("master_crashes");
        self.master.core = None;
        self.master.alloc = None;
        self.master.registry.master_crashed();
        self.master.inc += 1;
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.up && c.faulty)
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            self.break_conn(conn);
        }
    }

    fn master_input(&mut self, input: MInput) {
        let Some(core) = self.master.core.as_mut() else {
            return;
        };
        self.touched_master = true;
        if let MInput::Message { conn, msg } = &input {
            self.master.registry.observe_input(*conn, msg);
        }
        let acts = core.handle(self.now, input);
        self.master_perform(acts);
    }

    fn master_perform(&mut self, acts: Vec<MAction>) {
        let inc = self.master.inc;
        for a in acts {
            match a {
                MAction::Send { conn, msg } => {
                    self.master.registry.observe_output(conn, &msg);
                    self.send(conn, false, msg)
                }
                MAction::AgentUnreachable { agent_id } => {
                    self.bump("agents_unreachable");
                    self.master.registry.agent_unreachable(agent_id)
                }
                MAction::Close { conn, last } => {
                    if let Some(msg) = last {
                        self.send(conn, false, msg);
                    }
                    let client = self.conns.get(&conn).map(|c| c.client.clone());
                    if let Some(client) = client {
                        self.close_after_flush(conn, false, client);
                    }
                }
                MAction::SetTimer { timer, at } => self.push(at, Ev::MasterTimer { inc, timer }),
                MAction::Allocator(event) => {
                    let now = self.now;
                    if let Some(alloc) = self.master.alloc.as_mut() {
                        alloc.handle(now, event);
                    }
                    if !self.master.coalesce_armed {
                        self.master.coalesce_armed = true;
                        let at = now.plus_ms(self.sc.allocator.coalesce_ms);
                        self.push(
                            at,
                            Ev::AllocRun {
                                inc,
                                why: AllocWhy::Coalesce,
                            },
                        );
                    }
                }
            }
        }
    }

    /// One allocation run, as the allocator actor does it; decisions reach the master at once
    /// (the actor's message is local), so the books of both agree after every event.
    fn alloc_run(&mut self, inc: u64, why: AllocWhy) {
        if inc != self.master.inc || self.master.alloc.is_none() {
            return;
        }
        match why {
            AllocWhy::Coalesce => self.master.coalesce_armed = false,
            AllocWhy::Wakeup => self.master.wakeup_at = None,
            AllocWhy::Interval => {
                let at = self.now.plus_ms(self.sc.allocator.interval_ms);
                self.push(
                    at,
                    Ev::AllocRun {
                        inc,
                        why: AllocWhy::Interval,
                    },
                );
            }
        }
        let now = self.now;
        let Some(alloc) = self.master.alloc.as_mut() else {
            return;
        };
        let allocations = alloc.allocate(now);
        if !allocations.is_empty() {
            self.master_input(MInput::Allocations(allocations));
        }
        let wanted = self.master.alloc.as_ref().and_then(|a| a.next_wakeup());
        if let Some(at) = wanted {
            if self.master.wakeup_at != Some(at) {
                self.master.wakeup_at = Some(at);
                self.push(
                    at,
                    Ev::AllocRun {
                        inc,
                        why: AllocWhy::Wakeup,
                    },
                );
            }
        }
    }

    // ---- agents, containers and executors -----------------------------------------------

    fn agent_config(&self, node: usize) -> AgentConfig {
        let racks = self.sc.agents.racks.max(1);
        let mut attributes = agora_actors::Attributes::new();
        attributes.insert("rack".into(), format!("r{}", node % racks));
        AgentConfig {
            cluster: CLUSTER.into(),
            hostname: self.agents[node].hostname.clone(),
            endpoint: format!("10.0.{}.{}:5051", node / 250, node % 250 + 1),
            resources: self.sc.agent_resources(),
            attributes,
            work_dir: format!("/sim/agent-{node}"),
            ..AgentConfig::default()
        }
    }

    /// Starts the agent process: from its checkpoint if it has one (it keeps its id and
    /// re-registers), as the real shell does, else fresh.
    fn start_agent(&mut self, node: usize) {
        let config = self.agent_config(node);
        let now = self.now;
        let a = &mut self.agents[node];
        a.inc += 1;
        let epoch = a.inc;
        let (mut core, recovered) = match a.disk.core.clone() {
            Some(ckpt) => {
                let (core, acts) = AgentCore::recover(config, epoch, now, ckpt);
                (core, Some(acts))
            }
            None => (AgentCore::new(config, epoch), None),
        };
        let mut acts = core.start(now);
        a.core = Some(core);
        a.pending.clear();
        if let Some(more) = recovered {
            self.bump("agent_recoveries");
            acts.extend(more);
        }
        self.agent_perform(node, acts);
        self.recover_containers(node);
        self.push(
            self.now,
            Ev::Dial {
                ep: Ep::Agent(node),
                inc: epoch,
            },
        );
    }

    /// The real shell's `recover_containers`: containers of the record still running are
    /// reattached (their executors redial by themselves); the others end, with their exit
    /// status if they exited while the agent was down, as lost if the machine rebooted.
    fn recover_containers(&mut self, node: usize) {
        let a = &mut self.agents[node];
        let rebooted = std::mem::take(&mut a.rebooted);
        let exited = std::mem::take(&mut a.exited_while_down);
        let wanted: Vec<ContainerId> = a.disk.containers.iter().cloned().collect();
        for cid in wanted {
            if !rebooted && self.agents[node].execs.contains_key(&cid) {
                continue; // reattached
            }
            self.agents[node].disk.containers.remove(&cid);
            let (code, signal, reason, message) = match exited.get(&cid) {
                Some((code, signal)) if !rebooted => (*code, *signal, None, String::new()),
                _ if rebooted => (
                    None,
                    None,
                    Some(agora_agent::core::REASON_AGENT_REBOOTED.to_string()),
                    "the host rebooted while the agent was down".to_string(),
                ),
                _ => (
                    None,
                    None,
                    Some(agora_agent::core::REASON_CONTAINER_LOST.to_string()),
                    "the container could not be found after an agent restart".to_string(),
                ),
            };
            let input = AInput::ContainerExited {
                container_id: cid,
                exit_code: code,
                signal,
                reason,
                message,
            };
            self.agent_input(node, input);
        }
    }

    /// The agent process dies (`machine`: with its machine, and every container on it). Its
    /// checkpoint survives either way.
    fn crash_agent(&mut self, node: usize, machine: bool) {
        self.bump(if machine {
            "machine_crashes"
        } else {
            "agent_crashes"
        });
        let a = &mut self.agents[node];
        // The checkpoint the shell wrote after the core's last step (see `agent_input`).
        if let Some(core) = a.core.take() {
            a.disk.core = Some(core.checkpoint());
        }
        a.inc += 1;
        a.pending.clear();
        if machine {
            a.boot += 1;
            a.rebooted = true;
            a.execs.clear();
            a.exiting.clear();
            a.exited_while_down.clear();
        }
        if let Some(conn) = a.conn.take() {
            // The master notices the agent is gone; the agent side is dead already.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.up = false;
            }
            let d = self.between(0, self.sc.network.detect_ms);
            self.push(
                self.now.plus_ms(d),
                Ev::Notify {
                    conn,
                    ep: Ep::Master,
                },
            );
        }
        let execs: Vec<(ConnId, Ep)> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(&c.client, Ep::Exec(n, _) if *n == node) && c.up)
            .map(|(id, c)| (*id, c.client.clone()))
            .collect();
        for (conn, client) in execs {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.up = false;
            }
            if !machine {
                // The executor sees its socket to the agent close.
                self.push(self.now.plus_ms(1), Ev::Notify { conn, ep: client });
            }
        }
    }

    fn agent_input(&mut self, node: usize, input: AInput) {
        let Some(core) = self.agents[node].core.as_mut() else {
            return;
        };
        self.touched_agents.insert(node);
        let acts = core.handle(self.now, input);
        // As the real shell, the checkpoint is written after every step, before the step's
        // actions are performed; so the disk always holds exactly the core's state between
        // events. The copy is therefore taken only when the agent dies (`crash_agent`): the same
        // bytes, without cloning every agent's books on every ping.
        self.agent_perform(node, acts);
    }

    fn agent_perform(&mut self, node: usize, acts: Vec<AAction>) {
        let inc = self.agents[node].inc;
        let boot = self.agents[node].boot;
        for a in acts {
            match a {
                AAction::SendMaster(msg) => {
                    if let Some(conn) = self.agents[node].conn {
                        self.send(conn, true, msg);
                    }
                }
                AAction::SendExecutor { conn, msg } => self.send(conn, false, msg),
                AAction::CloseExecutor { conn } => {
                    let client = self.conns.get(&conn).map(|c| c.client.clone());
                    if let Some(client) = client {
                        self.close_after_flush(conn, false, client);
                        // The agent's own transport reports the close back to it.
                        self.push(
                            self.now.plus_ms(2),
                            Ev::Notify {
                                conn,
                                ep: Ep::Agent(node),
                            },
                        );
                    }
                }
                AAction::Launch(spec) => {
                    let cid = spec.container_id.clone();
                    self.agents[node].pending.insert(cid.clone(), spec);
                    let d = self.between(5, 50);
                    let ev = Ev::ContainerStart {
                        node,
                        inc: boot,
                        cid,
                    };
                    self.push(self.now.plus_ms(d), ev);
                }
                AAction::Kill {
                    container_id,
                    grace_ms,
                } => {
                    let a = &mut self.agents[node];
                    let known = a.execs.contains_key(&container_id)
                        || a.pending.remove(&container_id).is_some();
                    if known && a.exiting.insert(container_id.clone()) {
                        // The simulated executor dies on SIGTERM.
                        let at = self.now.plus_ms(grace_ms.min(20));
                        let ev = Ev::ContainerExit {
                            node,
                            inc: boot,
                            cid: container_id,
                            code: None,
                            signal: Some(15),
                        };
                        self.push(at, ev);
                    }
                }
                AAction::SetTimer { timer, at } => {
                    self.push(at, Ev::AgentTimer { node, inc, timer })
                }
            }
        }
    }

    fn container_start(&mut self, node: usize, inc: u64, cid: ContainerId) {
        if self.agents[node].boot != inc || self.agents[node].core.is_none() {
            return;
        }
        self.agents[node].disk.containers.insert(cid.clone());
        let Some(spec) = self.agents[node].pending.remove(&cid) else {
            return;
        };
        let input = AInput::ContainerLaunched {
            container_id: cid.clone(),
            pid: 1000 + self.events as i32 % 30_000,
            sandbox: spec.sandbox.clone(),
        };
        self.agent_input(node, input);
        let env = ExecutorEnv::from_lookup(|k| {
            Ok(spec
                .env
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone()))
        });
        let env = match env {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(error = %e, "simulated executor cannot start");
                if self.agents[node].exiting.insert(cid.clone()) {
                    let ev = Ev::ContainerExit {
                        node,
                        inc,
                        cid,
                        code: Some(1),
                        signal: None,
                    };
                    self.push(self.now.plus_ms(1), ev);
                }
                return;
            }
        };
        let config = ExecutorDriverConfig {
            seed: self.rng.gen(),
            ..ExecutorDriverConfig::default()
        };
        let exec = SimExecutor::new(self.seed, env.executor_id.as_str());
        let mut driver = ExecutorDriverCore::new(exec, &env, config);
        let acts = driver.handle_start(self.now);
        self.agents[node]
            .execs
            .insert(cid.clone(), ExecNode { driver, conn: None });
        self.exec_perform(node, &cid, acts);
        self.push(
            self.now.plus_ms(1),
            Ev::Dial {
                ep: Ep::Exec(node, cid),
                inc,
            },
        );
    }

    fn container_exit(
        &mut self,
        node: usize,
        inc: u64,
        cid: ContainerId,
        code: Option<i32>,
        signal: Option<i32>,
    ) {
        if self.agents[node].boot != inc {
            return;
        }
        self.agents[node].exiting.remove(&cid);
        if self.agents[node].core.is_none() {
            // The agent is down: the container's end waits in its record for the recovery.
            let a = &mut self.agents[node];
            a.execs.remove(&cid);
            a.exited_while_down.insert(cid, (code, signal));
            return;
        }
        self.agents[node].disk.containers.remove(&cid);
        if let Some(e) = self.agents[node].execs.remove(&cid) {
            if let Some(conn) = e.conn {
                let was_up = self.conns.get(&conn).is_some_and(|c| c.up);
                if was_up {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.up = false;
                    }
                    self.agent_input(node, AInput::ExecutorDisconnected { conn });
                }
            }
        }
        let input = AInput::ContainerExited {
            container_id: cid,
            exit_code: code,
            signal,
            reason: None,
            message: String::new(),
        };
        self.agent_input(node, input);
    }

    fn exec_perform(&mut self, node: usize, cid: &ContainerId, acts: Vec<ExecAction>) {
        let inc = self.agents[node].boot;
        for a in acts {
            match a {
                ExecAction::Send(msg) => {
                    let conn = self.agents[node].execs.get(cid).and_then(|e| e.conn);
                    if let Some(conn) = conn {
                        self.send(conn, true, msg);
                    }
                }
                ExecAction::SetTimer { timer, at } => self.push(
                    at,
                    Ev::ExecTimer {
                        node,
                        inc,
                        cid: cid.clone(),
                        timer,
                    },
                ),
                ExecAction::Exit { code } => {
                    if self.agents[node].exiting.insert(cid.clone()) {
                        // Let the last updates go out first.
                        let conn = self.agents[node].execs.get(cid).and_then(|e| e.conn);
                        let at = conn
                            .and_then(|c| self.conns.get(&c))
                            .map(|c| c.fifo[0])
                            .unwrap_or(self.now)
                            .max(self.now)
                            .plus_ms(1);
                        let ev = Ev::ContainerExit {
                            node,
                            inc,
                            cid: cid.clone(),
                            code: Some(code),
                            signal: None,
                        };
                        self.push(at, ev);
                    }
                }
            }
        }
    }

    // ---- schedulers ---------------------------------------------------------------------

    fn sched_perform(&mut self, node: usize, acts: Vec<DriverAction>) {
        for a in acts {
            match a {
                DriverAction::Send(msg) => {
                    if let Some(conn) = self.scheds[node].conn {
                        self.send(conn, true, msg);
                    }
                }
                DriverAction::SetTimer { timer, at } => {
                    self.push(at, Ev::SchedTimer { node, timer })
                }
                DriverAction::Reconnect => {
                    if let Some(conn) = self.scheds[node].conn.take() {
                        self.close_after_flush(conn, true, Ep::Master);
                    }
                    self.redial(Ep::Sched(node));
                }
                DriverAction::Stop { .. } => {
                    if let Some(conn) = self.scheds[node].conn.take() {
                        self.close_after_flush(conn, true, Ep::Master);
                    }
                }
            }
        }
    }

    // ---- faults and phases --------------------------------------------------------------

    fn fault_tick(&mut self) {
        if !self.faults_on {
            return;
        }
        let f = self.sc.faults.clone();
        for (rate, machine) in [
            (f.agent_crash_per_min, false),
            (f.machine_crash_per_min, true),
        ] {
            if !self.chance(rate / 60.0) {
                continue;
            }
            let up: Vec<usize> = (0..self.agents.len())
                .filter(|i| self.agents[*i].core.is_some())
                .collect();
            if !up.is_empty() {
                let node = up[self.rng.gen_range(0..up.len())];
                self.crash_agent(node, machine);
                let down = self.between(f.agent_down_ms / 2, f.agent_down_ms * 3 / 2);
                self.push(self.now.plus_ms(down), Ev::RestartAgent { node });
            }
        }
        if self.master.core.is_some() && self.chance(f.master_crash_per_min / 60.0) {
            self.crash_master();
            let down = self.between(f.master_down_ms / 2, f.master_down_ms * 3 / 2);
            self.push(self.now.plus_ms(down), Ev::RestartMaster);
        }
        if self.chance(f.partition_per_min / 60.0) {
            let n = self.agents.len() + self.scheds.len();
            let pick = self.rng.gen_range(0..n);
            let ep = if pick < self.agents.len() {
                Ep::Agent(pick)
            } else {
                Ep::Sched(pick - self.agents.len())
            };
            if !self.partitioned(&ep) {
                self.bump("partitions");
                let len = self.between(f.partition_ms / 2, f.partition_ms * 3 / 2);
                let until = self.now.plus_ms(len);
                self.set_partition(&ep, Some(until));
                self.push(until, Ev::Heal { ep: ep.clone() });
                if f.partition_break_ms > 0 && len > f.partition_break_ms {
                    self.push(
                        self.now.plus_ms(f.partition_break_ms),
                        Ev::PartitionBreak { ep },
                    );
                }
            }
        }
        self.push(self.now.plus_ms(1_000), Ev::FaultTick);
    }

    /// End of the safety phase: faults stop, partitions heal, crashed nodes come back.
    fn liveness_start(&mut self) {
        self.faults_on = false;
        self.liveness = true;
        for i in 0..self.agents.len() {
            self.agents[i].partitioned_until = None;
            if self.agents[i].core.is_none() {
                self.start_agent(i);
            }
        }
        for s in &mut self.scheds {
            s.partitioned_until = None;
        }
        if self.master.core.is_none() {
            let _ = self.start_master();
        }
    }

    /// Every batch framework has ended (its driver stopped).
    pub fn batch_done(&self) -> bool {
        self.scheds
            .iter()
            .filter(|s| s.driver.scheduler().batch().is_some())
            .all(|s| s.driver.stopped().is_some())
    }

    pub fn has_batch(&self) -> bool {
        self.scheds
            .iter()
            .any(|s| s.driver.scheduler().batch().is_some())
    }
}
