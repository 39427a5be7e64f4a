//! Sorters: the small policy object that orders the allocator's clients (frameworks today; roles
//! and frameworks-within-a-role once hierarchical roles arrive) from "most deserving" to "least".
//!
//! The allocation loop asks the sorter for the first client that can use an agent, gives it the
//! agent's free resources, tells the sorter (`allocated`), and moves on. A sorter therefore must
//! be cheap to *re-query after a single change*: `DrfSorter` keeps each client's dominant share
//! cached and re-positions only the clients whose allocation changed, so one allocation costs
//! `O(log clients + resource kinds)` instead of a full re-sort.
//!
//! Later policies fit the same trait: weights scale a client's share, a priority sorter orders by
//! a fixed rank, a lottery sorter draws from a seeded RNG inside `sort`/`find_first` (both take
//! `&mut self`), and a hierarchical allocator nests a role sorter over per-role framework sorters.

use crate::ordmap::OrdMap;
use crate::share_order::ShareOrder;
use agora_actors::resources::Value;
use agora_actors::{AgentId, Milli, Resources};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::Hash;

/// Why a sorter refused a call. Callers log these; the sorter's state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SorterError {
    #[error("sorter has no client {0}")]
    UnknownClient(String),
    #[error("sorter already has client {0}")]
    DuplicateClient(String),
}

/// Orders clients for allocation. Implementations must be deterministic: the same calls in the
/// same order give the same answers (ordered maps only, seeded randomness only).
pub trait Sorter<C>: Send {
    /// Adds a client, initially **inactive** (it is not returned by `sort` until activated).
    fn add_client(&mut self, client: C) -> Result<(), SorterError>;
    /// Forgets a client and everything allocated to it.
    fn remove_client(&mut self, client: &C) -> Result<(), SorterError>;
    fn contains(&self, client: &C) -> bool;
    /// Makes the client eligible for `sort`/`find_first` again.
    fn activate(&mut self, client: &C) -> Result<(), SorterError>;
    /// Keeps the client's allocation accounted for, but leaves it out of `sort`/`find_first`.
    fn deactivate(&mut self, client: &C) -> Result<(), SorterError>;
    fn is_active(&self, client: &C) -> bool;
    /// Number of active clients.
    fn active_count(&self) -> usize;

    /// Cluster capacity grew by `resources` (an agent was added).
    fn add_total(&mut self, resources: &Resources);
    /// Cluster capacity shrank by `resources` (an agent was removed). Clamped at zero.
    fn remove_total(&mut self, resources: &Resources);

    /// `resources` of `agent` are now allocated to `client`. The agent is passed so that
    /// sorters which account per agent (reservations, quota headroom) fit the same call.
    fn allocated(
        &mut self,
        client: &C,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError>;
    /// `resources` of `agent` are no longer allocated to `client` (clamped at zero).
    fn unallocated(
        &mut self,
        client: &C,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError>;

    /// Active clients, most deserving first, in a deterministic order.
    fn sort(&mut self) -> Vec<C>;
    /// The most deserving active client for which `accept` says yes. Sorters with an index
    /// override this to avoid building the whole `sort` vector for every agent.
    fn find_first(&mut self, accept: &mut dyn FnMut(&C) -> bool) -> Option<C> {
        self.sort().into_iter().find(|c| accept(c))
    }

    /// The client's share as a fraction for operators (`None` for an unknown client).
    fn share(&self, client: &C) -> Option<f64>;

    /// Short policy name (`drf`, `priority`, `lottery`).
    fn name(&self) -> &'static str {
        "drf"
    }
    /// Where the client belongs: its role and priority level. Sorters that ignore roles or
    /// levels keep the default (nothing to do). The client's allocation moves with it.
    fn set_info(&mut self, _client: &C, _info: &ClientInfo) -> Result<(), SorterError> {
        Ok(())
    }
    /// A role's weight in thousandths (1000 = 1).
    fn set_weight(&mut self, _role: &str, _weight_milli: i64) {}
    /// A role's weighted dominant share as the sorter ranks it, if it knows roles.
    fn role_share(&self, _role: &str) -> Option<f64> {
        None
    }
    /// Scalar totals allocated to the client, reservations folded in (for operators).
    fn allocation(&self, client: &C) -> Option<Resources>;
}

/// Where a client belongs, for sorters that group clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub role: String,
    /// Strict-priority level; higher is offered first.
    pub priority: u32,
}

impl Default for ClientInfo {
    fn default() -> Self {
        ClientInfo {
            role: "*".to_string(),
            priority: 0,
        }
    }
}

/// An exact non-negative fraction `num / den` (`den > 0`), compared by cross-multiplication in
/// i128 so equal shares compare equal (2/3 of CPU equals 2/3 of memory) and ties fall through
/// to the client name instead of to floating-point noise.
#[derive(Clone, Copy)]
pub struct Share {
    num: i128,
    den: i128,
}

impl Share {
    pub const ZERO: Share = Share { num: 0, den: 1 };

    /// `num / den`, with negative numerators treated as zero and a non-positive denominator
    /// meaning "no capacity", which counts as zero share.
    pub fn new(num: i64, den: i64) -> Share {
        if den <= 0 || num <= 0 {
            return Share::ZERO;
        }
        Share {
            num: num as i128,
            den: den as i128,
        }
    }
    /// The share divided by a weight given in thousandths (`1000` = weight 1): a role of
    /// weight 2 holding 0.4 of the cluster ranks like a role of weight 1 holding 0.2.
    pub fn weighted(self, weight_milli: i64) -> Share {
        if weight_milli <= 0 || weight_milli == 1000 {
            return self;
        }
        Share {
            num: self.num * 1000,
            den: self.den * weight_milli as i128,
        }
    }
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Share {}
impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        // Shares of one resource kind share the cluster total as denominator (den > 0).
        if self.den == other.den {
            return self.num.cmp(&other.num);
        }
        // Usually all four fit in i64 (milli values, weights of a few thousand): then each
        // product is one widening multiply, exact in i128, with no overflow check.
        if let (Some(a), Some(b), Some(c), Some(d)) = (
            fits_i64(self.num),
            fits_i64(other.den),
            fits_i64(other.num),
            fits_i64(self.den),
        ) {
            return (a as i128 * b as i128).cmp(&(c as i128 * d as i128));
        }
        // Unweighted milli values stay below ~1e18, so products stay below ~1e36 and are
        // exact; only huge weights can overflow, and then the (still monotone) float decides.
        match (
            self.num.checked_mul(other.den),
            other.num.checked_mul(self.den),
        ) {
            (Some(lhs), Some(rhs)) => lhs.cmp(&rhs),
            _ => self
                .as_f64()
                .partial_cmp(&other.as_f64())
                .unwrap_or(Ordering::Equal),
        }
    }
}
#[inline]
fn fits_i64(x: i128) -> Option<i64> {
    i64::try_from(x).ok()
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// Adds (`sign = 1`) or removes (`sign = -1`) the scalar entries of `r` to per-name sums,
/// folding reservations into the name. Sums are clamped at zero; returns true if any sum would
/// have gone negative (the caller logs it: it means the accounting was fed inconsistent data).
fn apply_scalars(sums: &mut BTreeMap<String, Milli>, r: &Resources, sign: i64) -> bool {
    let mut clamped = false;
    for (key, value) in r.iter() {
        let Value::Scalar(m) = value else { continue };
        // Look up before inserting: the hot path (a known name) must not allocate a key.
        match sums.get_mut(&key.name) {
            Some(entry) => {
                let next = entry.0.saturating_add(sign.saturating_mul(m.0));
                if next < 0 {
                    clamped = true;
                }
                if next <= 0 {
                    sums.remove(&key.name);
                } else {
                    *entry = Milli(next);
                }
            }
            None => {
                let next = sign.saturating_mul(m.0);
                if next < 0 {
                    clamped = true;
                }
                if next > 0 {
                    sums.insert(key.name.clone(), Milli(next));
                }
            }
        }
    }
    clamped
}

/// The largest fraction of any non-excluded total that `allocated` holds (unweighted).
pub fn dominant_share_of(
    allocated: &BTreeMap<String, Milli>,
    totals: &BTreeMap<String, Milli>,
    excluded: &BTreeSet<String>,
) -> Share {
    allocated
        .iter()
        .filter(|(name, _)| !excluded.contains(*name))
        .map(|(name, held)| {
            let total = totals.get(name).copied().unwrap_or(Milli::ZERO);
            Share::new(held.0, total.0)
        })
        .max()
        .unwrap_or(Share::ZERO)
}

/// The scalar resource names a sorter has seen, numbered in order of first sight, with the
/// cluster total and the exclusion flag of each. Per-client sums are then plain arrays indexed
/// by these numbers: an allocation adds a few integers instead of updating a string-keyed map,
/// and the dominant share is a scan over a handful of integers. A cluster has a few resource
/// names, so the linear name search is shorter than a tree lookup.
#[derive(Debug, Clone, Default)]
struct Names {
    names: Vec<String>,
    totals: Vec<i64>,
    excluded: Vec<bool>,
}

impl Names {
    /// The number of `name`, adding it if new.
    #[inline]
    fn id(&mut self, name: &str, excluded: &BTreeSet<String>) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        self.names.push(name.to_string());
        self.totals.push(0);
        self.excluded.push(excluded.contains(name));
        self.names.len() - 1
    }

    /// Takes the totals from the name-keyed map.
    fn set_totals(&mut self, totals: &BTreeMap<String, Milli>, excluded: &BTreeSet<String>) {
        self.totals.iter_mut().for_each(|t| *t = 0);
        for (name, m) in totals {
            let i = self.id(name, excluded);
            self.totals[i] = m.0;
        }
    }

    /// Adds (`sign = 1`) or removes (`sign = -1`) the scalar entries of `r` to `held`, folding
    /// reservations into the name, clamped at zero; true if any sum would have gone negative.
    fn apply(
        &mut self,
        held: &mut Vec<i64>,
        r: &Resources,
        sign: i64,
        excluded: &BTreeSet<String>,
    ) -> bool {
        let mut clamped = false;
        // Bags iterate by name and names are usually numbered in that same order (the first
        // agent's bag numbers them), so the name after the last match is tried first.
        let mut guess = 0;
        for (key, value) in r.iter() {
            let Value::Scalar(m) = value else { continue };
            let i = match self.names.get(guess) {
                Some(n) if *n == key.name => guess,
                _ => self.id(&key.name, excluded),
            };
            guess = i + 1;
            if held.len() <= i {
                held.resize(i + 1, 0);
            }
            let next = held[i].saturating_add(sign.saturating_mul(m.0));
            if next < 0 {
                clamped = true;
            }
            held[i] = next.max(0);
        }
        clamped
    }

    /// The largest fraction of any non-excluded total that `held` holds (unweighted); the
    /// same value as `dominant_share_of` on the name-keyed form.
    #[inline]
    fn share(&self, held: &[i64]) -> Share {
        let mut best = Share::ZERO;
        for (i, &h) in held.iter().enumerate() {
            if h <= 0 || self.excluded[i] {
                continue;
            }
            let s = Share::new(h, self.totals[i]);
            if s >= best {
                best = s;
            }
        }
        best
    }

    /// `held` as a name-keyed map (zero sums left out).
    fn to_map(&self, held: &[i64]) -> BTreeMap<String, Milli> {
        held.iter()
            .enumerate()
            .filter(|(_, h)| **h > 0)
            .map(|(i, h)| (self.names[i].clone(), Milli(*h)))
            .collect()
    }
}

#[derive(Debug, Clone)]
struct ClientState {
    /// Scalar sums over all agents, indexed by the sorter's name numbers (`Names`).
    held: Vec<i64>,
    /// The share the client is filed under in `order` (while active). Stale while dirty.
    share: Share,
    active: bool,
    /// Weight in thousandths (1000 = 1); the share is divided by it.
    weight_milli: i64,
    /// Integer stand-in for the client's position in client order (see `order`).
    rank: u128,
}

/// Dominant Resource Fairness: a client's share is the largest fraction of any (non-excluded)
/// scalar resource it holds of the cluster total; the smallest share goes first, ties by client
/// order (the framework id).
///
/// Invariant: every active client `c` is in `order` exactly as
/// `(clients[c].share, clients[c].rank, c)`, and ranks increase with client order.
#[derive(Debug, Clone)]
pub struct DrfSorter<C: Ord + Clone + Hash> {
    clients: OrdMap<C, ClientState>,
    /// Active clients by (share, rank). The rank follows client order (so ties go by client
    /// name) but compares as an integer: with many equal shares a string tie-break would
    /// dominate every re-file.
    /// Keyed by `(share, rank)` alone: ranks are unique, so the client never decides the
    /// order and a lookup needs no copy of the client's id. Bucketed by share (see
    /// `ShareOrder`), since clients share few share values.
    order: ShareOrder<C>,
    /// Clients whose allocation changed since their share was last computed.
    dirty: BTreeSet<C>,
    totals: BTreeMap<String, Milli>,
    /// Name numbering, with `totals` by number.
    names: Names,
    /// The cluster total changed: every share must be recomputed before the next query.
    totals_dirty: bool,
    /// Resource names left out of the dominant share (e.g. `gpus`, so GPU-less frameworks are
    /// not ranked by a resource they never asked for).
    excluded: BTreeSet<String>,
    /// Version of externally shared totals last pulled in by `sync_totals`.
    totals_version: u64,
}

impl<C: Ord + Clone + Hash + fmt::Display> Default for DrfSorter<C> {
    fn default() -> Self {
        Self::new(BTreeSet::new())
    }
}

impl<C: Ord + Clone + Hash + fmt::Display> DrfSorter<C> {
    pub fn new(excluded: BTreeSet<String>) -> Self {
        DrfSorter {
            clients: OrdMap::new(),
            order: ShareOrder::default(),
            dirty: BTreeSet::new(),
            totals: BTreeMap::new(),
            names: Names::default(),
            totals_dirty: false,
            excluded,
            totals_version: 0,
        }
    }

    /// Sets a client's weight (thousandths; 1000 = 1). Its share is recomputed lazily.
    pub fn set_client_weight(&mut self, client: &C, weight_milli: i64) {
        let Some(state) = self.clients.get_mut(client) else {
            return;
        };
        if state.weight_milli != weight_milli {
            state.weight_milli = weight_milli.max(1);
            self.dirty.insert(client.clone());
        }
    }

    /// Replaces the totals with a shared copy if its version differs from the one last seen.
    /// Nested sorters use this so one cluster change is not pushed into thousands of them.
    pub fn sync_totals(&mut self, totals: &BTreeMap<String, Milli>, version: u64) {
        if self.totals_version != version {
            self.totals_version = version;
            self.totals = totals.clone();
            self.names.set_totals(&self.totals, &self.excluded);
            self.totals_dirty = true;
        }
    }

    /// Brings the order up to date (after changes); queries do this themselves.
    pub fn prepare(&mut self) {
        self.refresh();
    }

    /// Active clients by client order (not by share).
    pub fn ordered_by_id_active(&self) -> Vec<&C> {
        self.clients
            .iter()
            .filter(|(_, s)| s.active)
            .map(|(c, _)| c)
            .collect()
    }

    /// Active clients in order, without refreshing (call `prepare` first).
    pub fn ordered(&self) -> impl Iterator<Item = &C> + '_ {
        self.order.values()
    }

    /// A rank between the client's neighbours in client order; renumbers everyone (rare:
    /// after ~100 insertions into one gap) when there is no room left.
    fn rank_for(&mut self, client: &C) -> u128 {
        use std::ops::Bound::{Excluded, Unbounded};
        let lo = self
            .clients
            .range((Unbounded, Excluded(client)))
            .next_back()
            .map_or(0, |(_, s)| s.rank);
        let hi = self
            .clients
            .range((Excluded(client), Unbounded))
            .next()
            .map_or(u128::MAX, |(_, s)| s.rank);
        if hi - lo >= 2 {
            return lo + (hi - lo) / 2;
        }
        self.renumber(Some(client))
    }

    /// Spreads ranks evenly in client order (leaving a slot for `new`), re-filing active
    /// clients; returns `new`'s rank.
    fn renumber(&mut self, new: Option<&C>) -> u128 {
        let n = self.clients.len() as u128 + 2;
        let step = u128::MAX / n;
        let mut keys: Vec<C> = self.clients.keys().cloned().collect();
        if let Some(c) = new {
            keys.push(c.clone());
            keys.sort();
        }
        let mut new_rank = 0;
        self.order.clear();
        for (i, k) in keys.iter().enumerate() {
            let rank = step * (i as u128 + 1);
            match self.clients.get_mut(k) {
                Some(state) => {
                    state.rank = rank;
                    if state.active {
                        self.order.insert(state.share, rank, k.clone());
                    }
                }
                None => new_rank = rank,
            }
        }
        new_rank
    }

    /// The exact dominant share from the current allocation and totals (never stale),
    /// not divided by the weight.
    pub fn dominant_share(&self, client: &C) -> Option<Share> {
        self.clients.get(client).map(|s| self.names.share(&s.held))
    }

    /// Scalar sums allocated to the client.
    pub fn allocated_scalars(&self, client: &C) -> Option<BTreeMap<String, Milli>> {
        self.clients.get(client).map(|s| self.names.to_map(&s.held))
    }

    /// Cluster totals as the sorter sees them (scalars by name).
    pub fn totals(&self) -> &BTreeMap<String, Milli> {
        &self.totals
    }

    /// Sum of every client's allocation (scalars by name).
    pub fn sum_allocated(&self) -> BTreeMap<String, Milli> {
        let mut out: BTreeMap<String, Milli> = BTreeMap::new();
        for state in self.clients.values() {
            for (i, h) in state.held.iter().enumerate() {
                if *h > 0 {
                    let e = out
                        .entry(self.names.names[i].clone())
                        .or_insert(Milli::ZERO);
                    *e = Milli(e.0.saturating_add(*h));
                }
            }
        }
        out
    }

    /// Replaces a client's allocation outright (used to rebuild sums kept lazily elsewhere).
    pub fn set_allocated(&mut self, client: &C, allocated: BTreeMap<String, Milli>) {
        if let Some(state) = self.clients.get_mut(client) {
            state.held.iter_mut().for_each(|h| *h = 0);
            for (name, m) in &allocated {
                let i = self.names.id(name, &self.excluded);
                if state.held.len() <= i {
                    state.held.resize(i + 1, 0);
                }
                state.held[i] = m.0.max(0);
            }
            if !self.dirty.contains(client) {
                self.dirty.insert(client.clone());
            }
        }
    }

    /// Number of clients, active or not.
    pub fn len(&self) -> usize {
        self.clients.len()
    }
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Brings `order` up to date: all clients after a total change, else only the dirty ones.
    fn refresh(&mut self) {
        if self.totals_dirty {
            self.totals_dirty = false;
            self.dirty.clear();
            self.order.clear();
            let names: Vec<C> = self.clients.keys().cloned().collect();
            for c in names {
                self.refile(&c, false);
            }
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        for c in dirty {
            self.refile(&c, true);
        }
    }

    /// Recomputes one client's share and, if active, re-files it in `order`.
    fn refile(&mut self, client: &C, remove_old: bool) {
        let Some(state) = self.clients.get(client) else {
            return;
        };
        let share = self.names.share(&state.held).weighted(state.weight_milli);
        let (old, active, rank) = (state.share, state.active, state.rank);
        if active && remove_old {
            self.order.remove(old, rank);
        }
        if let Some(state) = self.clients.get_mut(client) {
            state.share = share;
        }
        if active {
            self.order.insert(share, rank, client.clone());
        }
    }

    fn change(
        &mut self,
        client: &C,
        resources: &Resources,
        sign: i64,
        agent: &AgentId,
    ) -> Result<(), SorterError> {
        let state = self
            .clients
            .get_mut(client)
            .ok_or_else(|| SorterError::UnknownClient(client.to_string()))?;
        if self
            .names
            .apply(&mut state.held, resources, sign, &self.excluded)
        {
            tracing::warn!(%client, %agent, %resources, "sorter: unallocating more than allocated; clamped at zero");
        }
        if self.totals_dirty {
            // Every share is recomputed before the next query anyway.
            return Ok(());
        }
        // Re-file at once: the allocation loop queries right after every change, so deferring
        // would only add a dirty-set round trip per allocation.
        let share = self.names.share(&state.held).weighted(state.weight_milli);
        let old = std::mem::replace(&mut state.share, share);
        if state.active && old != share {
            // The allocation loop usually changes the client it just picked, the first in
            // order: `ShareOrder` takes it from the front of its bucket without a search.
            let c = self.order.remove(old, state.rank);
            let c = c.unwrap_or_else(|| client.clone());
            self.order.insert(share, state.rank, c);
        }
        Ok(())
    }
}

impl<C: Ord + Clone + Hash + fmt::Display + Send> Sorter<C> for DrfSorter<C> {
    fn add_client(&mut self, client: C) -> Result<(), SorterError> {
        if self.clients.contains_key(&client) {
            return Err(SorterError::DuplicateClient(client.to_string()));
        }
        let rank = self.rank_for(&client);
        let state = ClientState {
            held: Vec::new(),
            share: Share::ZERO,
            active: false,
            weight_milli: 1000,
            rank,
        };
        self.clients.insert(client, state);
        Ok(())
    }

    fn remove_client(&mut self, client: &C) -> Result<(), SorterError> {
        let state = self
            .clients
            .remove(client)
            .ok_or_else(|| SorterError::UnknownClient(client.to_string()))?;
        if state.active {
            self.order.remove(state.share, state.rank);
        }
        self.dirty.remove(client);
        Ok(())
    }

    fn contains(&self, client: &C) -> bool {
        self.clients.contains_key(client)
    }

    fn activate(&mut self, client: &C) -> Result<(), SorterError> {
        let state = self
            .clients
            .get_mut(client)
            .ok_or_else(|| SorterError::UnknownClient(client.to_string()))?;
        if !state.active {
            state.active = true;
            // Its stored share may be stale (allocation changes while inactive are not
            // re-filed), so compute it fresh while filing it.
            self.dirty.remove(client);
            self.refile(client, false);
        }
        Ok(())
    }

    fn deactivate(&mut self, client: &C) -> Result<(), SorterError> {
        let state = self
            .clients
            .get_mut(client)
            .ok_or_else(|| SorterError::UnknownClient(client.to_string()))?;
        if state.active {
            state.active = false;
            let (share, rank) = (state.share, state.rank);
            self.order.remove(share, rank);
        }
        Ok(())
    }

    fn is_active(&self, client: &C) -> bool {
        self.clients.get(client).is_some_and(|s| s.active)
    }

    fn active_count(&self) -> usize {
        self.order.len()
    }

    fn add_total(&mut self, resources: &Resources) {
        apply_scalars(&mut self.totals, resources, 1);
        self.names.set_totals(&self.totals, &self.excluded);
        self.totals_dirty = true;
    }

    fn remove_total(&mut self, resources: &Resources) {
        let clamped = apply_scalars(&mut self.totals, resources, -1);
        self.names.set_totals(&self.totals, &self.excluded);
        if clamped {
            tracing::warn!(%resources, "sorter: removing more capacity than the cluster has; clamped at zero");
        }
        self.totals_dirty = true;
    }

    fn allocated(
        &mut self,
        client: &C,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.change(client, resources, 1, agent)
    }

    fn unallocated(
        &mut self,
        client: &C,
        agent: &AgentId,
        resources: &Resources,
    ) -> Result<(), SorterError> {
        self.change(client, resources, -1, agent)
    }

    fn sort(&mut self) -> Vec<C> {
        self.refresh();
        self.order.values().cloned().collect()
    }

    fn find_first(&mut self, accept: &mut dyn FnMut(&C) -> bool) -> Option<C> {
        self.refresh();
        self.order.values().find(|c| accept(c)).cloned()
    }

    fn share(&self, client: &C) -> Option<f64> {
        self.dominant_share(client).map(Share::as_f64)
    }

    fn allocation(&self, client: &C) -> Option<Resources> {
        let state = self.clients.get(client)?;
        let mut out = Resources::new();
        for (name, m) in &self.names.to_map(&state.held) {
            let key = agora_actors::resources::Key {
                name: name.clone(),
                role: None,
            };
            if let Err(e) = out.add_entry(key, Value::Scalar(*m)) {
                tracing::warn!(%client, error = %e, "sorter: cannot report allocation");
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resources {
        Resources::parse(s).expect("test resources parse")
    }
    fn agent() -> AgentId {
        AgentId::new("a1").expect("valid id")
    }
    fn sorter(clients: &[&str]) -> DrfSorter<String> {
        let mut s = DrfSorter::default();
        s.add_total(&r("cpus:10;mem:1000"));
        for c in clients {
            s.add_client(c.to_string()).expect("new client");
            s.activate(&c.to_string()).expect("known client");
        }
        s
    }
    fn alloc(s: &mut DrfSorter<String>, c: &str, res: &str) {
        s.allocated(&c.to_string(), &agent(), &r(res))
            .expect("known client");
    }

    #[test]
    fn share_compares_exactly() {
        assert_eq!(Share::new(2, 3), Share::new(12288, 18432));
        assert!(Share::new(1, 3) < Share::new(1, 2));
        assert_eq!(Share::new(5, 0), Share::ZERO);
        assert_eq!(Share::new(-5, 7), Share::ZERO);
    }

    #[test]
    fn orders_by_dominant_share_then_name() {
        let mut s = sorter(&["c", "b", "a"]);
        // a: cpus 2/10 = 0.2 dominant; b: mem 500/1000 = 0.5; c: nothing = 0.
        alloc(&mut s, "a", "cpus:2;mem:100");
        alloc(&mut s, "b", "cpus:1;mem:500");
        assert_eq!(s.sort(), vec!["c", "a", "b"]);
        assert_eq!(s.share(&"b".to_string()), Some(0.5));
        // Equal shares (0.5 of cpus vs 0.5 of mem) tie-break by name: a before b.
        alloc(&mut s, "a", "cpus:3");
        alloc(&mut s, "c", "mem:900");
        assert_eq!(s.sort(), vec!["a", "b", "c"]);
    }

    #[test]
    fn incremental_updates_move_only_the_changed_client() {
        let mut s = sorter(&["a", "b", "c"]);
        assert_eq!(s.sort(), vec!["a", "b", "c"]);
        alloc(&mut s, "a", "cpus:1");
        // find_first sees the change without a full sort.
        assert_eq!(s.find_first(&mut |_| true), Some("b".to_string()));
        alloc(&mut s, "b", "cpus:2");
        assert_eq!(s.sort(), vec!["c", "a", "b"]);
        s.unallocated(&"b".to_string(), &agent(), &r("cpus:2"))
            .expect("known");
        assert_eq!(s.sort(), vec!["b", "c", "a"]);
    }

    #[test]
    fn total_change_recomputes_every_share() {
        let mut s = sorter(&["a", "b"]);
        // a: cpus 4/10 = 0.4; b: mem 300/1000 = 0.3 -> b first.
        alloc(&mut s, "a", "cpus:4");
        alloc(&mut s, "b", "mem:300");
        assert_eq!(s.sort(), vec!["b", "a"]);
        // Doubling cpus: a 4/20 = 0.2 < b 0.3 -> a first.
        s.add_total(&r("cpus:10"));
        assert_eq!(s.sort(), vec!["a", "b"]);
        s.remove_total(&r("cpus:10"));
        assert_eq!(s.sort(), vec!["b", "a"]);
    }

    #[test]
    fn inactive_clients_are_skipped_but_keep_their_allocation() {
        let mut s = sorter(&["a", "b"]);
        let a = "a".to_string();
        s.deactivate(&a).expect("known");
        assert_eq!(s.sort(), vec!["b"]);
        assert_eq!(s.active_count(), 1);
        alloc(&mut s, "a", "cpus:5");
        alloc(&mut s, "b", "cpus:1");
        s.activate(&a).expect("known");
        // a's 0.5 was accumulated while inactive and is honoured on activation.
        assert_eq!(s.sort(), vec!["b", "a"]);
        assert!(s.is_active(&a));
    }

    #[test]
    fn excluded_resources_do_not_count() {
        let mut s: DrfSorter<String> = DrfSorter::new(["gpus".to_string()].into());
        s.add_total(&r("cpus:10;gpus:2"));
        for c in ["a", "b"] {
            s.add_client(c.into()).expect("new");
            s.activate(&c.into()).expect("known");
        }
        alloc(&mut s, "a", "cpus:1;gpus:2");
        alloc(&mut s, "b", "cpus:2");
        // a's gpus 2/2 would dominate; excluded, a is 0.1 < b 0.2.
        assert_eq!(s.sort(), vec!["a", "b"]);
    }

    #[test]
    fn reservations_fold_into_the_resource_name() {
        let mut s = sorter(&["a"]);
        alloc(&mut s, "a", "cpus(ads):2;cpus:1");
        assert_eq!(s.share(&"a".to_string()), Some(0.3));
        let shown = s.allocation(&"a".to_string()).expect("known");
        assert_eq!(shown.to_string(), "cpus:3");
    }

    #[test]
    fn errors_and_clamping() {
        let mut s = sorter(&["a"]);
        assert_eq!(
            s.add_client("a".into()),
            Err(SorterError::DuplicateClient("a".into()))
        );
        let x = "x".to_string();
        assert!(s.allocated(&x, &agent(), &r("cpus:1")).is_err());
        assert!(s.activate(&x).is_err());
        assert!(s.remove_client(&x).is_err());
        alloc(&mut s, "a", "cpus:1");
        s.unallocated(&"a".to_string(), &agent(), &r("cpus:5;mem:7"))
            .expect("known");
        assert_eq!(s.share(&"a".to_string()), Some(0.0));
        s.remove_total(&r("cpus:100"));
        assert_eq!(s.totals().get("cpus"), None);
    }

    #[test]
    fn ties_follow_client_order_through_rank_renumbering() {
        // Inserting in descending order keeps halving the gap before the first client, so
        // ranks are renumbered several times on the way.
        let mut s: DrfSorter<String> = DrfSorter::default();
        s.add_total(&r("cpus:10"));
        let names: Vec<String> = (0..400).rev().map(|i| format!("c{i:03}")).collect();
        for n in &names {
            s.add_client(n.clone()).expect("new");
            s.activate(n).expect("known");
        }
        let mut want = names.clone();
        want.sort();
        assert_eq!(s.sort(), want);
        // A client inserted in the middle later still lands in name order.
        s.add_client("c1505".into()).expect("new");
        s.activate(&"c1505".to_string()).expect("known");
        let got = s.sort();
        let pos = got.iter().position(|c| c == "c1505").expect("present");
        assert_eq!(&got[pos - 1], "c150");
        assert_eq!(&got[pos + 1], "c151");
    }

    #[test]
    fn removed_clients_leave_the_order() {
        let mut s = sorter(&["a", "b"]);
        alloc(&mut s, "a", "cpus:1");
        s.remove_client(&"a".to_string()).expect("known");
        assert_eq!(s.sort(), vec!["b"]);
        assert!(!s.contains(&"a".to_string()));
        assert_eq!(s.share(&"a".to_string()), None);
    }

    #[test]
    fn default_find_first_matches_sort() {
        // A sorter relying on the trait's default `find_first`.
        struct ByName(Vec<String>);
        impl Sorter<String> for ByName {
            fn add_client(&mut self, c: String) -> Result<(), SorterError> {
                self.0.push(c);
                self.0.sort();
                Ok(())
            }
            fn remove_client(&mut self, _: &String) -> Result<(), SorterError> {
                Ok(())
            }
            fn contains(&self, c: &String) -> bool {
                self.0.contains(c)
            }
            fn activate(&mut self, _: &String) -> Result<(), SorterError> {
                Ok(())
            }
            fn deactivate(&mut self, _: &String) -> Result<(), SorterError> {
                Ok(())
            }
            fn is_active(&self, _: &String) -> bool {
                true
            }
            fn active_count(&self) -> usize {
                self.0.len()
            }
            fn add_total(&mut self, _: &Resources) {}
            fn remove_total(&mut self, _: &Resources) {}
            fn allocated(
                &mut self,
                _: &String,
                _: &AgentId,
                _: &Resources,
            ) -> Result<(), SorterError> {
                Ok(())
            }
            fn unallocated(
                &mut self,
                _: &String,
                _: &AgentId,
                _: &Resources,
            ) -> Result<(), SorterError> {
                Ok(())
            }
            fn sort(&mut self) -> Vec<String> {
                self.0.clone()
            }
            fn share(&self, _: &String) -> Option<f64> {
                None
            }
            fn allocation(&self, _: &String) -> Option<Resources> {
                None
            }
        }
        let mut s = ByName(Vec::new());
        for c in ["b", "c", "a"] {
            s.add_client(c.into()).expect("new");
        }
        assert_eq!(s.find_first(&mut |c| c != "a"), Some("b".to_string()));
    }
}
