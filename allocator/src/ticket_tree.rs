//! Ticket counts in a Fenwick (binary indexed) tree, for the lottery: a draw finds the holder
//! of ticket number `t` in O(log n) instead of walking the list. The lottery draws once or more
//! for every agent in every cycle, so at 5,000 frameworks the linear walk (and the copy of the
//! list it needed to set refusers aside) was most of a cycle.
//!
//! `find` answers exactly what the linear walk answered — the first holder whose cumulative
//! range contains the ticket, zero-ticket holders never — so draws replay unchanged.

#[derive(Debug, Default, Clone)]
pub struct TicketTree {
    /// 1-based Fenwick array: `tree[i]` sums the `i & -i` counts ending at holder `i - 1`.
    tree: Vec<u64>,
    counts: Vec<u64>,
    total: u64,
}

impl TicketTree {
    pub fn new(counts: impl Iterator<Item = u64>) -> TicketTree {
        let counts: Vec<u64> = counts.collect();
        let n = counts.len();
        let mut tree = vec![0u64; n + 1];
        for (i, c) in counts.iter().enumerate() {
            tree[i + 1] = tree[i + 1].wrapping_add(*c);
            let parent = (i + 1) + lowest_bit(i + 1);
            if parent <= n {
                tree[parent] = tree[parent].wrapping_add(tree[i + 1]);
            }
        }
        let total = counts.iter().sum();
        TicketTree {
            tree,
            counts,
            total,
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn count(&self, holder: usize) -> u64 {
        self.counts[holder]
    }

    /// Sets a holder's count (wrapping arithmetic: every partial sum ends non-negative).
    pub fn set(&mut self, holder: usize, count: u64) {
        let delta = count.wrapping_sub(self.counts[holder]);
        self.counts[holder] = count;
        self.total = self.total.wrapping_add(delta);
        let mut i = holder + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add(delta);
            i += lowest_bit(i);
        }
    }

    /// The holder of ticket `ticket` (< `total`): the first whose counts so far exceed it.
    pub fn find(&self, mut ticket: u64) -> usize {
        let n = self.tree.len() - 1;
        let mut pos = 0;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            if pos + step <= n && self.tree[pos + step] <= ticket {
                pos += step;
                ticket -= self.tree[pos];
            }
            step >>= 1;
        }
        pos.min(n.saturating_sub(1))
    }
}

fn lowest_bit(i: usize) -> usize {
    i & i.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn linear(counts: &[u64], mut ticket: u64) -> usize {
        counts
            .iter()
            .position(|c| {
                if ticket < *c {
                    return true;
                }
                ticket -= *c;
                false
            })
            .unwrap_or(counts.len() - 1)
    }

    #[test]
    fn finds_what_the_linear_walk_finds_through_updates() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [1usize, 2, 3, 7, 8, 9, 100, 1000] {
            let mut counts: Vec<u64> = (0..n).map(|_| rng.gen_range(0..5_000_000)).collect();
            let mut tree = TicketTree::new(counts.iter().copied());
            for _ in 0..500 {
                if tree.total() > 0 {
                    let t = rng.gen_range(0..tree.total());
                    assert_eq!(tree.find(t), linear(&counts, t), "n={n} t={t}");
                }
                let h = rng.gen_range(0..n);
                let c = if rng.gen_bool(0.3) {
                    0
                } else {
                    rng.gen_range(0..5_000_000)
                };
                counts[h] = c;
                tree.set(h, c);
                assert_eq!(tree.total(), counts.iter().sum::<u64>());
                assert_eq!(tree.count(h), c);
            }
        }
    }

    #[test]
    fn zero_holders_are_never_drawn() {
        let tree = TicketTree::new([0, 3, 0, 0, 2, 0].into_iter());
        let drawn: Vec<usize> = (0..5).map(|t| tree.find(t)).collect();
        assert_eq!(drawn, vec![1, 1, 1, 4, 4]);
    }
}
