//! Several masters in the simulator: each runs the production registry node
//! (`RegistryNode`, raft-rs) over in-memory storage that survives its crashes as far as it was
//! flushed, and the production leadership core (`HaCore`), which decides when it starts a
//! fresh `MasterCore` (it leads and its registry is current) and when it drops it and turns
//! clients away with `NotLeader`. Raft messages travel between masters over the seeded network;
//! raft ticks come from the virtual clock; election timeouts are fixed per master (raft-rs would
//! draw them from an unseeded RNG). Clients rotate through the master list with the transport's
//! own rule (`after_connection`). Master crashes and partitions are faults of their own.

use crate::world::{Ep, Ev, World, CLUSTER};
use agora_actors::transport::{after_connection, Backoff, ConnId};
use agora_actors::Message;
use agora_master::ha_core::{leader_core, leader_text, not_leader, HaChange, HaCore};
use agora_master::registry::{
    Identity, MemStorage, RegistryConfig, RegistryNode, RegistryOp, StateRole,
};
use rand::Rng;
use std::collections::BTreeMap;

/// A running master process of a group: its raft node and leadership core.
pub struct RaftMaster {
    pub node: RegistryNode<MemStorage>,
    pub ha: HaCore,
}

/// Master `m` (0-based) is raft id `m + 1`.
fn raft_id(m: usize) -> u64 {
    m as u64 + 1
}

impl World {
    fn raft_config(&self, m: usize) -> RegistryConfig {
        let peers: BTreeMap<u64, String> = (0..self.masters.len())
            .map(|i| (raft_id(i), format!("master-{}:5050", raft_id(i))))
            .collect();
        let r = &self.sc.raft;
        let mut c = RegistryConfig::new(Identity {
            cluster: CLUSTER.into(),
            node_id: raft_id(m),
            peers,
        });
        c.election_ticks = r.election_ticks + m * r.election_step;
        c.fixed_election_timeout = true;
        c.heartbeat_ticks = r.heartbeat_ticks;
        c.compact_after_entries = r.compact_after_entries;
        c
    }

    /// Starts master `m`'s process: its raft node from its disk, not leading.
    pub(crate) fn start_raft_master(&mut self, m: usize) -> Result<(), String> {
        let config = self.raft_config(m);
        let disk = self.masters[m].disk.clone();
        let storage = MemStorage::open(disk, &config.identity).map_err(|e| e.to_string())?;
        let node = RegistryNode::with_storage(storage, config).map_err(|e| e.to_string())?;
        let inc = self.new_master_inc(m);
        let n = &mut self.masters[m];
        n.boot += 1;
        n.down_until = None;
        n.raft = Some(RaftMaster {
            node,
            ha: HaCore::new(inc),
        });
        let boot = n.boot;
        self.push(
            self.now.plus_ms(self.sc.raft.tick_ms),
            Ev::RaftTick { m, boot },
        );
        self.raft_drive(m);
        Ok(())
    }

    pub(crate) fn raft_tick(&mut self, m: usize, boot: u64) {
        if self.masters[m].boot != boot {
            return;
        }
        let Some(r) = self.masters[m].raft.as_mut() else {
            return;
        };
        r.node.tick();
        self.raft_drive(m);
        self.push(
            self.now.plus_ms(self.sc.raft.tick_ms),
            Ev::RaftTick { m, boot },
        );
    }

    /// Raft's Ready loop for master `m`, and what its leadership core makes of the news.
    fn raft_drive(&mut self, m: usize) {
        let Some(r) = self.masters[m].raft.as_mut() else {
            return;
        };
        let out = match r.node.drive() {
            Ok(out) => out,
            Err(e) => {
                // As the real shell: a master that cannot persist stops.
                tracing::error!(master = m, error = %e, "registry storage failed");
                self.crash_master_for(m, self.sc.faults.master_down_ms);
                return;
            }
        };
        for (to, data) in out.messages {
            self.raft_send(m, to, data);
        }
        let Some(l) = out.leadership else {
            return;
        };
        let Some(r) = self.masters[m].raft.as_mut() else {
            return;
        };
        let http = (l.leader_id != 0).then(|| format!("master-{}:5080", l.leader_id));
        r.ha.set_leader_text(leader_text(l.leader_id, http.as_deref()));
        match r.ha.on_leadership(&l) {
            Some(HaChange::Lead { term, epoch }) => self.become_leader(m, term, epoch),
            Some(HaChange::StepDown { closing }) => self.step_down(m, closing),
            None => {}
        }
    }

    fn master_cut(&self, m: usize) -> bool {
        self.faults_on && self.masters[m].partitioned_until.is_some()
    }

    /// A raft message from master `m` to raft id `to`, over the faulty network (FIFO per
    /// pair, as TCP; lost when either end is cut off, raft retransmits).
    fn raft_send(&mut self, m: usize, to: u64, data: Vec<u8>) {
        let t = (to - 1) as usize;
        if t >= self.masters.len() || self.master_cut(m) || self.master_cut(t) {
            self.bump("raft_msgs_cut");
            return;
        }
        if self.faults_on && self.chance(self.sc.faults.reset_per_msg) {
            self.bump("raft_msgs_lost");
            return;
        }
        let n = &self.sc.network;
        let (lo, hi) = (n.min_delay_ms, n.max_delay_ms);
        let from = raft_id(m);
        let delay = self.between(lo, hi);
        let fifo = self.raft_fifo.get(&(from, to)).copied();
        let at = self.now.plus_ms(delay).max(fifo.unwrap_or(self.now));
        self.raft_fifo.insert((from, to), at);
        let data = crate::world::RaftBytes(data);
        self.push(at, Ev::RaftMsg { from, to, data });
    }

    pub(crate) fn raft_deliver(&mut self, from: u64, to: u64, data: Vec<u8>) {
        let (f, t) = ((from - 1) as usize, (to - 1) as usize);
        if self.master_cut(f) || self.master_cut(t) {
            self.bump("raft_msgs_cut");
            return;
        }
        let Some(r) = self.masters[t].raft.as_mut() else {
            return; // the process is down: the bytes hit a closed socket
        };
        if let Err(e) = r.node.step(from, &data) {
            tracing::warn!(from, to, error = %e, "raft message refused");
        }
        self.raft_drive(t);
    }

    /// The leadership core said: lead. A fresh core from the registry, as the HA shell does.
    fn become_leader(&mut self, m: usize, term: u64, epoch: u64) {
        let Some(r) = self.masters[m].raft.as_ref() else {
            return;
        };
        let registry = r.node.state().clone();
        let mut alloc = match crate::workload::allocator(&self.sc.allocator, self.seed) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the allocator; not leading");
                if let Some(r) = self.masters[m].raft.as_mut() {
                    r.ha.lead_failed();
                }
                return;
            }
        };
        self.bump("leaderships");
        tracing::debug!(master = m, term, "simulated master leads");
        agora_master::persist::restore_allocator(&mut alloc, &registry);
        self.new_master_inc(m);
        let (core, acts) = leader_core(self.master_config(), epoch, &registry, self.now);
        self.install_core(m, core, alloc, acts);
        self.registry_agents(m, registry.agents.keys().cloned().collect());
        self.arm_allocation_interval(m);
    }

    /// The leadership core said: stop. Soft state goes, every client is turned away.
    fn step_down(&mut self, m: usize, closing: Message) {
        self.bump("step_downs");
        let n = &mut self.masters[m];
        n.core = None;
        n.alloc = None;
        self.new_master_inc(m);
        let conns: Vec<(ConnId, Ep)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.up && !c.closing && c.master == m && c.client_is_remote())
            .map(|(id, c)| (*id, c.client.clone()))
            .collect();
        for (conn, client) in conns {
            self.send(conn, false, closing.clone());
            self.close_after_flush(conn, false, client);
        }
    }

    /// Whether a client may dial master `m` now.
    pub(crate) fn master_reachable(&self, m: usize) -> bool {
        if self.masters.len() == 1 {
            return self.masters[0].core.is_some();
        }
        self.masters[m].raft.is_some() && !self.master_cut(m)
    }

    /// The error a standby closes a new client connection with (`None`: it serves it).
    pub(crate) fn master_refuses(&self, m: usize) -> Option<Message> {
        let r = self.masters[m].raft.as_ref()?;
        match r.ha.admit_client() {
            Ok(()) if self.masters[m].core.is_some() => None,
            Ok(()) => Some(not_leader(r.ha.leader_text())),
            Err(closing) => Some(closing),
        }
    }

    pub(crate) fn target_of(&self, ep: &Ep) -> usize {
        let t = match ep {
            Ep::Agent(i) => self.agents[*i].target,
            Ep::Sched(i) => self.scheds[*i].target,
            _ => 0,
        };
        t % self.masters.len()
    }

    fn set_target(&mut self, ep: &Ep, t: usize) {
        let t = t % self.masters.len();
        match ep {
            Ep::Agent(i) => self.agents[*i].target = t,
            Ep::Sched(i) => self.scheds[*i].target = t,
            _ => {}
        }
    }

    /// A failed dial: the next master is tried (the transport's round over its list).
    pub(crate) fn next_master(&mut self, ep: &Ep) {
        if self.masters.len() > 1 {
            let t = self.target_of(ep) + 1;
            self.set_target(ep, t);
        }
    }

    /// A client's connection `conn` ended: it redials the same master if the connection was
    /// healthy, else the next one (the production link's rule).
    pub(crate) fn follow_after_close(&mut self, ep: &Ep, conn: ConnId) {
        if self.masters.len() == 1 {
            return;
        }
        let Some(opened_at) = self.conns.get(&conn).map(|c| c.opened_at()) else {
            return;
        };
        let up_ms = self.now.since(opened_at);
        let (_, start) = after_connection(self.target_of(ep), up_ms, Backoff::default().cap_ms);
        self.set_target(ep, start);
    }

    /// What master `m`'s core sent on `conn`: admissions become registry ops (as in the HA
    /// shell), and offers are recorded against the raft term (the one-offerer invariant).
    pub(crate) fn raft_observe_output(&mut self, m: usize, conn: ConnId, msg: &Message) {
        let Some(r) = self.masters[m].raft.as_mut() else {
            return;
        };
        if let Some(op) = r.ha.observe_output(conn, msg) {
            self.raft_propose(m, op);
        }
        if matches!(msg, Message::Offers { .. }) {
            self.record_offer(m);
        }
    }

    pub(crate) fn raft_observe_allocator(
        &mut self,
        m: usize,
        ev: &agora_allocator::AllocatorEvent,
    ) {
        let n = &self.masters[m];
        let (Some(_), Some(core)) = (n.raft.as_ref(), n.core.as_ref()) else {
            return;
        };
        if let Some(op) = HaCore::observe_allocator(core, ev) {
            self.raft_propose(m, op);
        }
    }

    /// Write-behind as in production: proposed now, flushed by the next tick's drive.
    pub(crate) fn raft_propose(&mut self, m: usize, op: RegistryOp) {
        let Some(r) = self.masters[m].raft.as_mut() else {
            return;
        };
        if let Err(e) = r.node.propose_if_changed(&op) {
            tracing::debug!(master = m, error = %e, "registry proposal not made");
        }
    }

    pub(crate) fn record_offer(&mut self, m: usize) {
        let Some(r) = self.masters[m].raft.as_ref() else {
            return;
        };
        let l = r.node.leadership();
        if l.role != StateRole::Leader && self.violations.is_empty() {
            self.violations.push(format!(
                "master {} made offers while its raft role is {:?} (term {})",
                raft_id(m),
                l.role,
                l.term
            ));
        }
        let first = *self.offer_terms.entry(l.term).or_insert(m);
        if first != m && self.violations.is_empty() {
            self.violations.push(format!(
                "masters {} and {} both made offers in raft term {}",
                raft_id(first),
                raft_id(m),
                l.term
            ));
        }
    }

    /// The master leading now (the one with a core; with several, the highest raft term).
    pub fn leader(&self) -> Option<usize> {
        let term = |m: usize| {
            self.masters[m]
                .raft
                .as_ref()
                .map_or(0, |r| r.node.leadership().term)
        };
        (0..self.masters.len())
            .filter(|m| self.masters[*m].core.is_some())
            .max_by_key(|m| term(*m))
    }

    pub fn leader_core(&self) -> Option<&agora_master::core::MasterCore> {
        self.leader().and_then(|m| self.masters[m].core.as_ref())
    }

    fn crash_master_for(&mut self, m: usize, down_ms: u64) {
        self.crash_master(m);
        let down = self.between(down_ms / 2, down_ms * 3 / 2);
        let at = self.now.plus_ms(down);
        self.masters[m].down_until = Some(at);
        self.push(at, Ev::RestartMaster);
    }

    /// The safety phase's master faults when there are several masters.
    pub(crate) fn master_faults(&mut self) {
        let f = self.sc.faults.clone();
        if self.chance(f.master_crash_per_min / 60.0) {
            let up: Vec<usize> = (0..self.masters.len())
                .filter(|m| self.masters[*m].raft.is_some())
                .collect();
            if !up.is_empty() {
                let m = up[self.rng.gen_range(0..up.len())];
                self.crash_master_for(m, f.master_down_ms);
            }
        }
        if self.chance(f.leader_crash_per_min / 60.0) {
            if let Some(m) = self.leader() {
                self.bump("leader_crashes");
                self.crash_master_for(m, f.master_down_ms);
            }
        }
        if self.chance(f.master_partition_per_min / 60.0) {
            let m = match self.leader() {
                Some(m) => m,
                None => self.rng.gen_range(0..self.masters.len()),
            };
            if self.masters[m].partitioned_until.is_none() {
                self.bump("master_partitions");
                let len = self.between(f.partition_ms / 2, f.partition_ms * 3 / 2);
                let until = self.now.plus_ms(len);
                self.masters[m].partitioned_until = Some(until);
                self.push(until, Ev::MasterHeal { m });
                if f.partition_break_ms > 0 && len > f.partition_break_ms {
                    let at = self.now.plus_ms(f.partition_break_ms);
                    self.push(at, Ev::MasterPartitionBreak { m });
                }
            }
        }
    }

    pub(crate) fn master_heal(&mut self, m: usize) {
        if self.masters[m]
            .partitioned_until
            .is_some_and(|t| t <= self.now)
        {
            self.masters[m].partitioned_until = None;
        }
    }

    /// A partition outlasted TCP's patience: master `m`'s client connections break.
    pub(crate) fn master_partition_break(&mut self, m: usize) {
        if self.masters[m].partitioned_until.is_none() {
            return;
        }
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.up && c.master == m && c.client_is_remote())
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            self.bump("partition_breaks");
            self.break_conn(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::world::World;
    use crate::Scenario;

    fn ha_world(seed: u64, faults: bool) -> World {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/faults-ha.toml");
        let mut sc = Scenario::load(&path).expect("scenario loads");
        if !faults {
            sc.safety_ms = 0;
        }
        World::new(sc, seed).expect("world")
    }

    /// Runs until a master leads (with its core) and returns it.
    fn until_leader(w: &mut World) -> usize {
        for _ in 0..100_000 {
            if let Some(m) = w.leader() {
                return m;
            }
            assert!(w.step(), "queue ran dry");
        }
        panic!("no leader elected");
    }

    /// The one-offerer-per-term check fires: a follower offering, and a second master
    /// offering in a term another master already offered in.
    #[test]
    fn offers_by_a_follower_or_a_second_master_in_a_term_are_violations() {
        let mut w = ha_world(1, true);
        let leader = until_leader(&mut w);
        let follower = (leader + 1) % w.masters.len();
        w.record_offer(leader);
        assert!(w.violations.is_empty(), "{:?}", w.violations);
        w.record_offer(follower);
        assert!(
            w.violations[0].contains("while its raft role is Follower"),
            "{:?}",
            w.violations
        );

        let mut w = ha_world(1, true);
        let leader = until_leader(&mut w);
        let term = w.masters[leader]
            .raft
            .as_ref()
            .unwrap()
            .node
            .leadership()
            .term;
        w.offer_terms.insert(term, (leader + 1) % w.masters.len());
        w.record_offer(leader);
        assert!(
            w.violations[0].contains(&format!("both made offers in raft term {term}")),
            "{:?}",
            w.violations
        );
        assert!(crate::check::invariants(&w).is_err());
    }

    fn registry_agents(w: &World, m: usize) -> usize {
        let r = w.masters[m].raft.as_ref().expect("master runs");
        r.node.state().agents.len()
    }

    /// A crashed master comes back with its raft log: what it had applied is still there.
    #[test]
    fn a_crashed_master_restarts_from_its_flushed_registry() {
        let mut w = ha_world(2, false);
        let leader = until_leader(&mut w);
        // Let agents register through the leader (their admissions go through raft).
        let until = w.now.plus_ms(5_000);
        while w.now < until {
            assert!(w.step());
        }
        let before = registry_agents(&w, leader);
        assert!(before > 0, "agents admitted through raft");
        w.crash_master(leader);
        assert!(w.masters[leader].raft.is_none());
        w.start_raft_master(leader).unwrap();
        let after = registry_agents(&w, leader);
        assert_eq!(after, before);
    }
}
