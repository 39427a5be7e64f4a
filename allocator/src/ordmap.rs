//! `OrdMap`: a map with ordered iteration and hashed lookup.
//!
//! The allocator looks agents and frameworks up by id several times per offer; in a B-tree of
//! 10,000 string ids each lookup costs a couple of dozen string comparisons, which profiles as
//! a third of a cycle. Here the order lives in a `BTreeSet` (touched only on insert, remove and
//! iteration) and lookups go through a `HashMap`. The hasher has fixed keys and the hash map is
//! never iterated, so behaviour stays deterministic: every iteration follows key order.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hash};
use std::ops::RangeBounds;

/// A hasher with fixed keys: the same ids always hash the same, run after run.
pub type FixedHash = BuildHasherDefault<DefaultHasher>;

#[derive(Debug, Clone)]
pub struct OrdMap<K, V> {
    order: BTreeSet<K>,
    map: HashMap<K, V, FixedHash>,
}

impl<K: Ord + Hash + Clone, V> Default for OrdMap<K, V> {
    fn default() -> Self {
        OrdMap {
            order: BTreeSet::new(),
            map: HashMap::default(),
        }
    }
}

impl<K: Ord + Hash + Clone, V> OrdMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }
    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if !self.map.contains_key(&k) {
            self.order.insert(k.clone());
        }
        self.map.insert(k, v)
    }
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.map.remove(k)?;
        self.order.remove(k);
        Some(v)
    }
    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        self.order
            .iter()
            .filter_map(|k| self.map.get(k).map(|v| (k, v)))
    }
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.order.iter()
    }
    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }
    /// Calls `f` on every entry, in key order, with mutable access to the value.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&K, &mut V)) {
        for k in &self.order {
            if let Some(v) = self.map.get_mut(k) {
                f(k, v);
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
            .filter_map(|k| self.map.get(k).map(|v| (k, v)))
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
}
