//! `OrdMap`: a map with ordered iteration, hashed lookup and dense slot numbers.
//!
//! The allocator looks agents and frameworks up by id several times per offer; in a B-tree of
//! 10,000 string ids each lookup costs a couple of dozen string comparisons, which profiles as
//! a third of a cycle. Here values live in a dense slot vector: the order lives in a `BTreeMap`
//! from key to slot (touched only on insert, remove and iteration, which therefore never
//! hashes), lookups by key go through a `HashMap` to the slot, and the hot loop can hold a slot
//! number (`slot`, `at`, `at_mut`, `key_at`) instead of a cloned id. The hasher has fixed keys
//! and the hash map is never iterated, so behaviour stays deterministic: every iteration
//! follows key order.
//!
//! A slot number stays valid until its entry is removed; freed slots are reused by later
//! inserts, so holders must drop slot numbers of removed entries (the allocator only keeps
//! them within one call).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::ops::RangeBounds;

/// A hasher with fixed keys: the same ids always hash the same, run after run.
pub type FixedHash = BuildHasherDefault<FastHasher>;

/// A small multiply-rotate hasher for short ids (agent and framework ids, role names): several
/// times cheaper than SipHash on 10–40 byte strings, which matters at one lookup per offer.
/// Not resistant to chosen collisions; the keys are ids the master already validated and
/// bounded in number, so the worst case is a slower map, never a wrong answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // Fold the well-mixed high bits into the low ones the table indexes by.
        let x = self.0 ^ (self.0 >> 29);
        x.wrapping_mul(MULTIPLIER) ^ (x >> 32)
    }
}

#[derive(Debug, Clone)]
pub struct OrdMap<K, V> {
    /// Key order -> slot.
    order: BTreeMap<K, u32>,
    /// Key -> slot (never iterated).
    index: HashMap<K, u32, FixedHash>,
    slots: Vec<Option<(K, V)>>,
    /// Vacant slots, reused last-freed first.
    vacant: Vec<u32>,
}

impl<K: Ord + Hash + Clone, V> Default for OrdMap<K, V> {
    fn default() -> Self {
        OrdMap {
            order: BTreeMap::new(),
            index: HashMap::default(),
            slots: Vec::new(),
            vacant: Vec::new(),
        }
    }
}

impl<K: Ord + Hash + Clone, V> OrdMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    pub fn contains_key(&self, k: &K) -> bool {
        self.index.contains_key(k)
    }
    /// The entry's slot number (valid until the entry is removed).
    #[inline]
    pub fn slot(&self, k: &K) -> Option<u32> {
        self.index.get(k).copied()
    }
    #[inline]
    pub fn get(&self, k: &K) -> Option<&V> {
        let s = *self.index.get(k)?;
        self.at(s)
    }
    #[inline]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let s = *self.index.get(k)?;
        self.at_mut(s)
    }
    /// The value in a slot, if the slot is occupied.
    #[inline]
    pub fn at(&self, slot: u32) -> Option<&V> {
        self.slots.get(slot as usize)?.as_ref().map(|(_, v)| v)
    }
    #[inline]
    pub fn at_mut(&mut self, slot: u32) -> Option<&mut V> {
        self.slots.get_mut(slot as usize)?.as_mut().map(|(_, v)| v)
    }
    /// The key in a slot, if the slot is occupied.
    #[inline]
    pub fn key_at(&self, slot: u32) -> Option<&K> {
        self.slots.get(slot as usize)?.as_ref().map(|(k, _)| k)
    }
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if let Some(&s) = self.index.get(&k) {
            let entry = self.slots[s as usize].as_mut()?;
            return Some(std::mem::replace(&mut entry.1, v));
        }
        let s = match self.vacant.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.order.insert(k.clone(), s);
        self.index.insert(k.clone(), s);
        self.slots[s as usize] = Some((k, v));
        None
    }
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let s = self.index.remove(k)?;
        self.order.remove(k);
        self.vacant.push(s);
        self.slots[s as usize].take().map(|(_, v)| v)
    }
    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.order
            .values()
            .filter_map(|&s| self.slots[s as usize].as_ref().map(|(k, v)| (k, v)))
    }
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.order.keys()
    }
    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }
    /// Calls `f` on every entry (its slot, key and value), in key order, with mutable access
    /// to the value.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(u32, &K, &mut V)) {
        for &s in self.order.values() {
            if let Some((k, v)) = self.slots[s as usize].as_mut() {
                f(s, k, v);
            }
        }
    }
    /// Entries whose keys fall in `range`, in key order.
    pub fn range<R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.order
            .range(range)
            .filter_map(|(_, &s)| self.slots[s as usize].as_ref().map(|(k, v)| (k, v)))
    }
    /// Slots of the entries whose keys fall in `range`, in key order.
    pub fn range_slots<R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&K, u32)> + '_ {
        self.order.range(range).map(|(k, &s)| (k, s))
    }
}

impl<'a, K: Ord + Hash + Clone, V> IntoIterator for &'a OrdMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Box<dyn Iterator<Item = (&'a K, &'a V)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_iteration_hashed_lookup() {
        let mut m = OrdMap::new();
        for k in ["c", "a", "b"] {
            m.insert(k.to_string(), k.len());
        }
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.insert("a".into(), 5), Some(1));
        assert_eq!(m.len(), 3);
        assert_eq!(m.remove(&"b".to_string()), Some(1));
        assert_eq!(m.range("b".to_string()..).count(), 1);
        assert_eq!(m.get(&"a".to_string()), Some(&5));
        assert!(m.get_mut(&"z".to_string()).is_none());
        assert_eq!(m.iter().count(), 2);
    }

    #[test]
    fn slots_are_stable_and_reused() {
        let mut m = OrdMap::new();
        for k in ["x", "y", "z"] {
            m.insert(k.to_string(), k.to_string());
        }
        let y = m.slot(&"y".to_string()).expect("present");
        assert_eq!(m.key_at(y).map(String::as_str), Some("y"));
        assert_eq!(m.remove(&"y".to_string()).as_deref(), Some("y"));
        assert!(m.at(y).is_none());
        // The freed slot is reused; order still follows keys, not slots.
        m.insert("a".to_string(), "a".to_string());
        assert_eq!(m.slot(&"a".to_string()), Some(y));
        let keys: Vec<&String> = m.keys().collect();
        assert_eq!(keys, ["a", "x", "z"]);
        let slots: Vec<u32> = m.range_slots(..).map(|(_, s)| s).collect();
        assert_eq!(slots[0], y);
        if let Some(v) = m.at_mut(y) {
            v.push('!');
        }
        assert_eq!(m.get(&"a".to_string()).map(String::as_str), Some("a!"));
    }

    #[test]
    fn fast_hasher_spreads_sequential_ids() {
        use std::collections::HashSet;
        use std::hash::BuildHasher;
        let build = FixedHash::default();
        // Sequential ids must not collide in the low bits a hash table indexes by.
        let low: HashSet<u64> = (0..4096)
            .map(|i| build.hash_one(format!("agent-{i:06}")) & 0xfff)
            .collect();
        assert!(low.len() > 2400, "only {} distinct buckets", low.len());
    }
}
