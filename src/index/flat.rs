//! Brute-force search over f32 vectors: the exact search mode, and the small in-memory delta of
//! items a reader has seen since its memory-mapped snapshot.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use super::types::ItemId;
pub(crate) use crate::descriptor::pooling::dot;

/// The most entries [`TopK::new`] reserves up front.
const RESERVE_MAX: usize = 4096;

/// A candidate: higher score first, ties broken by lower id so results are deterministic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scored {
    pub id: ItemId,
    pub score: f32,
}

impl Eq for Scored {}

impl Ord for Scored {
    /// "Greater" means "better".
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` best candidates seen so far (a min-heap of the current best).
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<Scored>>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            // `k` comes from the caller (a command line's -k): reserve only what a typical
            // ranking needs, and let a huge one grow with what is actually pushed.
            heap: BinaryHeap::with_capacity(k.min(RESERVE_MAX) + 1),
        }
    }

    pub fn push(&mut self, candidate: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if candidate > worst.0 {
                worst.0 = candidate;
            }
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Scored> {
        // Sorting `Reverse`s ascending yields the best candidate first.
        let mut v = self.heap.into_vec();
        v.sort_unstable();
        v.into_iter().map(|r| r.0).collect()
    }
}

/// Vectors kept in memory and searched by brute force, in id order.
#[derive(Debug, Default)]
pub(crate) struct Flat {
    dim: usize,
    ids: Vec<ItemId>,
    data: Vec<f32>,
}

impl Flat {
    pub fn new(dim: usize) -> Flat {
        Flat {
            dim,
            ids: Vec::new(),
            data: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Appends `ids` with their concatenated `vectors`. Ids at or below the last one held are
    /// skipped, which makes replaying an already applied batch harmless.
    pub fn extend(&mut self, ids: &[ItemId], vectors: &[f32]) {
        for (id, v) in ids.iter().zip(vectors.chunks_exact(self.dim)) {
            if self.ids.last().is_some_and(|last| last >= id) {
                continue;
            }
            self.ids.push(*id);
            self.data.extend_from_slice(v);
        }
    }

    /// Drops the given ids; returns how many were held.
    pub fn remove(&mut self, ids: &HashSet<ItemId>) -> usize {
        let before = self.ids.len();
        let mut keep = 0;
        for i in 0..self.ids.len() {
            if !ids.contains(&self.ids[i]) {
                self.ids[keep] = self.ids[i];
                self.data
                    .copy_within(i * self.dim..(i + 1) * self.dim, keep * self.dim);
                keep += 1;
            }
        }
        self.ids.truncate(keep);
        self.data.truncate(keep * self.dim);
        before - keep
    }

    /// The vector of `id`, if held.
    pub fn get(&self, id: ItemId) -> Option<&[f32]> {
        // Ids are held in increasing order (see `extend`).
        let i = self.ids.binary_search(&id).ok()?;
        Some(&self.data[i * self.dim..(i + 1) * self.dim])
    }

    /// The `k` held vectors most similar to `query` among those whose id `allowed` accepts.
    pub fn search(&self, query: &[f32], k: usize, allowed: impl Fn(ItemId) -> bool) -> Vec<Scored> {
        let mut top = TopK::new(k);
        for (id, v) in self.ids.iter().zip(self.data.chunks_exact(self.dim)) {
            if !allowed(*id) {
                continue;
            }
            top.push(Scored {
                id: *id,
                score: dot(query, v),
            });
        }
        top.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_in_order() {
        let mut top = TopK::new(3);
        for (id, score) in [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.7), (5, -1.0), (6, 0.7)] {
            top.push(Scored { id, score });
        }
        let ids: Vec<ItemId> = top.into_sorted().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![2, 4, 6]);
    }

    #[test]
    fn flat_extend_is_idempotent_and_remove_compacts() {
        let mut flat = Flat::new(2);
        flat.extend(&[1, 2, 3], &[1.0, 0.0, 0.0, 1.0, 0.6, 0.8]);
        flat.extend(&[2, 3], &[9.0, 9.0, 9.0, 9.0]);
        assert_eq!(flat.len(), 3);
        assert_eq!(flat.remove(&HashSet::from([2, 7])), 1);
        let hits = flat.search(&[0.0, 1.0], 5, |_| true);
        assert_eq!(hits.len(), 2);
        let only_one = flat.search(&[0.0, 1.0], 5, |id| id == 1);
        assert_eq!(only_one.len(), 1);
        assert_eq!(only_one[0].id, 1);
        assert_eq!((hits[0].id, hits[0].score), (3, 0.8));
        assert_eq!((hits[1].id, hits[1].score), (1, 0.0));
        assert_eq!(flat.get(3), Some(&[0.6, 0.8][..]));
        assert_eq!(flat.get(2), None);
    }
}
