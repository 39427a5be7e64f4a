//! `ShareOrder`: a `DrfSorter`'s active clients ordered by (share, rank), kept as one bucket
//! per distinct share value.
//!
//! The allocation loop re-files one client per offer: it takes the first client (lowest share)
//! and files it again under a slightly higher share. In a B-tree keyed by `(share, rank)` that
//! is a remove and an insert, each a descent through the whole tree comparing 128-bit
//! fractions, plus node splits and merges that allocate — about a third of a cycle in
//! profiles. But clients share few share values (frameworks holding the same number of
//! equal agents have equal shares), so here the tree is keyed by the share alone and is
//! small; inside a bucket, clients sit in a deque sorted by rank. Re-filing the front client
//! pops the front of one deque and, since ranks follow client order and the loop walks
//! clients round-robin, usually pushes onto the back of another.
//!
//! Iteration order is exactly that of the `(share, rank)` tree: shares ascending, then ranks.
//! Shares that compare equal (`2/3` and `4/6`) land in the same bucket.
//!
//! Cost: pushing or popping at either end of a bucket is O(1); an insert or remove in the
//! middle of a bucket is a binary search plus a shift of the shorter side (a memmove of at
//! most half the bucket's entries, bounded by the number of clients).

use crate::sorter::Share;
use std::collections::{BTreeMap, VecDeque};

/// Emptied buckets kept for reuse, so a share value that empties and refills every offer
/// (the usual round-robin) does not allocate each time.
const SPARE_BUCKETS: usize = 16;

type Bucket<C> = VecDeque<(u128, C)>;

#[derive(Debug, Clone)]
pub struct ShareOrder<C> {
    buckets: BTreeMap<Share, Bucket<C>>,
    len: usize,
    spare: Vec<Bucket<C>>,
}

impl<C> Default for ShareOrder<C> {
    fn default() -> Self {
        ShareOrder {
            buckets: BTreeMap::new(),
            len: 0,
            spare: Vec::new(),
        }
    }
}

impl<C> ShareOrder<C> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
        self.len = 0;
    }

    /// Files `client` under `(share, rank)`. Ranks are unique among filed clients (the
    /// caller's invariant); a duplicate rank is filed next to the existing one.
    pub fn insert(&mut self, share: Share, rank: u128, client: C) {
        let spare = &mut self.spare;
        let bucket = self
            .buckets
            .entry(share)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        match (bucket.front(), bucket.back()) {
            (_, Some((last, _))) if *last < rank => bucket.push_back((rank, client)),
            (Some((first, _)), _) if rank < *first => bucket.push_front((rank, client)),
            (None, None) => bucket.push_back((rank, client)),
            _ => {
                let at = bucket.partition_point(|(r, _)| *r < rank);
                bucket.insert(at, (rank, client));
            }
        }
        self.len += 1;
    }

    /// Takes the client filed under `(share, rank)` out of the order.
    pub fn remove(&mut self, share: Share, rank: u128) -> Option<C> {
        let bucket = self.buckets.get_mut(&share)?;
        let taken = if bucket.front().is_some_and(|(r, _)| *r == rank) {
            bucket.pop_front()
        } else {
            match bucket.binary_search_by(|(r, _)| r.cmp(&rank)) {
                Ok(at) => bucket.remove(at),
                Err(_) => None,
            }
        };
        if bucket.is_empty() {
            if let Some(empty) = self.buckets.remove(&share) {
                if self.spare.len() < SPARE_BUCKETS {
                    self.spare.push(empty);
                }
            }
        }
        let (_, client) = taken?;
        self.len -= 1;
        Some(client)
    }

    /// Clients in order: lowest share first, then by rank.
    pub fn values(&self) -> impl Iterator<Item = &C> + '_ {
        self.buckets
            .values()
            .flat_map(|b| b.iter().map(|(_, client)| client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Tree;

    /// Any sequence of inserts and removes leaves the same order as a `(share, rank)` tree.
    #[test]
    fn matches_a_share_rank_tree() {
        let mut order = ShareOrder::default();
        let mut tree: Tree<(Share, u128), u32> = Tree::new();
        let mut filed: Tree<u32, (Share, u128)> = Tree::new();
        // A fixed pseudo-random walk over 40 clients and a few share values.
        let mut x: u64 = 7;
        for _ in 0..5_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let client = ((x >> 33) % 40) as u32;
            // Equal shares spelled differently (1/4 and 2/8) must share a bucket.
            let share = match (x >> 20) % 5 {
                0 => Share::new(1, 4),
                1 => Share::new(2, 8),
                2 => Share::ZERO,
                3 => Share::new(3, 7),
                _ => Share::new(5, 6),
            };
            let rank = 1000 + u128::from(client) * 10;
            match filed.remove(&client) {
                Some((old, r)) => {
                    assert_eq!(order.remove(old, r), Some(client));
                    tree.remove(&(old, r));
                }
                None => {
                    order.insert(share, rank, client);
                    tree.insert((share, rank), client);
                    filed.insert(client, (share, rank));
                }
            }
            assert_eq!(order.len(), tree.len());
            let got: Vec<u32> = order.values().copied().collect();
            let want: Vec<u32> = tree.values().copied().collect();
            assert_eq!(got, want);
        }
        assert_eq!(order.remove(Share::new(9, 10), 1), None);
        order.clear();
        assert!(order.len() == 0 && order.values().next().is_none());
    }
}
