//! Retrieval metrics for one ranked result list and their means over many queries.
//!
//! Conventions (stated once, used everywhere):
//! - A query whose own image is in the index is removed from its ranking *and* from its
//!   relevant set ([`Judged::new`] with `query: Some(..)`): finding yourself is no achievement,
//!   and leaving it in would inflate every metric.
//! - Average precision is the standard, uninterpolated one: the mean, over *all* relevant items,
//!   of the precision at the rank where each is found; a relevant item the ranking never
//!   reaches contributes 0. A query with no relevant item has no AP and is left out of the mean
//!   (it is counted in [`Judged::is_answerable`]).
//! - recall@k is the copy-detection convention (Copydays, DISC21): 1 when *any* relevant item
//!   is in the top k, else 0. With one relevant item (a copy and its original) it equals the
//!   textbook recall; with many it is the "success rate" at k.
//! - precision@k divides by k even when the ranking is shorter than k.

use std::collections::HashSet;
use std::hash::Hash;

use serde::Serialize;

/// The ranks of the relevant items in one ranked list: all a metric needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// 1-based ranks of the relevant items found, ascending.
    hit_ranks: Vec<usize>,
    /// How many relevant items exist (found or not).
    relevant: usize,
}

impl Judged {
    /// Judges `ranking` (best first) against `relevant`. `query`, when it is itself indexed,
    /// is removed from both (see the module notes). Duplicates in `ranking` count once.
    pub fn new<T: Eq + Hash>(ranking: &[T], relevant: &HashSet<T>, query: Option<&T>) -> Judged {
        let is_query = |item: &T| query.is_some_and(|q| q == item);
        let mut seen = HashSet::new();
        let mut hit_ranks = Vec::new();
        let mut rank = 0;
        for item in ranking.iter().filter(|item| !is_query(item)) {
            if !seen.insert(item) {
                continue;
            }
            rank += 1;
            if relevant.contains(item) {
                hit_ranks.push(rank);
            }
        }
        let relevant = relevant.iter().filter(|item| !is_query(item)).count();
        Judged {
            hit_ranks,
            relevant,
        }
    }

    /// True when the query has at least one relevant item (otherwise AP is undefined).
    pub fn is_answerable(&self) -> bool {
        self.relevant > 0
    }

    /// Average precision; `None` when there is no relevant item.
    pub fn average_precision(&self) -> Option<f64> {
        if self.relevant == 0 {
            return None;
        }
        let sum: f64 = self
            .hit_ranks
            .iter()
            .enumerate()
            .map(|(found, &rank)| (found + 1) as f64 / rank as f64)
            .sum();
        Some(sum / self.relevant as f64)
    }

    /// 1.0 when any relevant item is in the top `k`, else 0.0 (copy-detection recall).
    pub fn recall_at(&self, k: usize) -> f64 {
        match self.hit_ranks.first() {
            Some(&rank) if rank <= k => 1.0,
            _ => 0.0,
        }
    }

    /// The fraction of the top `k` that is relevant.
    pub fn precision_at(&self, k: usize) -> f64 {
        if k == 0 {
            return 0.0;
        }
        self.hit_ranks.iter().filter(|&&rank| rank <= k).count() as f64 / k as f64
    }

    /// Rank (1-based) of the first relevant item found.
    pub fn first_hit(&self) -> Option<usize> {
        self.hit_ranks.first().copied()
    }
}

/// Means over a set of queries (a label, a transform, or everything).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Queries with at least one relevant item: the denominator of every mean below.
    pub queries: usize,
    /// Mean average precision.
    pub map: f64,
    pub recall_at_1: f64,
    pub recall_at_10: f64,
    pub precision_at_10: f64,
}

impl Summary {
    /// Means over the answerable queries of `judged`.
    pub fn of<'a>(judged: impl IntoIterator<Item = &'a Judged>) -> Summary {
        let mut s = Summary {
            queries: 0,
            map: 0.0,
            recall_at_1: 0.0,
            recall_at_10: 0.0,
            precision_at_10: 0.0,
        };
        for j in judged {
            let Some(ap) = j.average_precision() else {
                continue;
            };
            s.queries += 1;
            s.map += ap;
            s.recall_at_1 += j.recall_at(1);
            s.recall_at_10 += j.recall_at(10);
            s.precision_at_10 += j.precision_at(10);
        }
        if s.queries > 0 {
            let n = s.queries as f64;
            s.map /= n;
            s.recall_at_1 /= n;
            s.recall_at_10 /= n;
            s.precision_at_10 /= n;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u32]) -> HashSet<u32> {
        items.iter().copied().collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ap_of_hits_at_ranks_1_and_3() {
        // Ranking 10, 20, 11, 30: relevant {10, 11} at ranks 1 and 3.
        // AP = (1/1 + 2/3) / 2 = 0.833333...
        let j = Judged::new(&[10, 20, 11, 30], &set(&[10, 11]), None);
        assert!(close(j.average_precision().unwrap(), 5.0 / 6.0));
        // precision@2 = 1/2; precision@4 = 2/4; recall@1 = 1.
        assert!(close(j.precision_at(2), 0.5));
        assert!(close(j.precision_at(4), 0.5));
        assert!(close(j.recall_at(1), 1.0));
    }

    #[test]
    fn missing_relevant_items_count_as_zero() {
        // Relevant {1, 2, 3}; found at ranks 2 and 4 only.
        // AP = (1/2 + 2/4 + 0) / 3 = 1/3.
        let j = Judged::new(&[9, 1, 8, 2], &set(&[1, 2, 3]), None);
        assert!(close(j.average_precision().unwrap(), 1.0 / 3.0));
        // First hit at rank 2: recall@1 = 0, recall@2 = 1.
        assert!(close(j.recall_at(1), 0.0));
        assert!(close(j.recall_at(2), 1.0));
        assert_eq!(j.first_hit(), Some(2));
    }

    #[test]
    fn the_query_itself_is_excluded_from_ranking_and_relevant_set() {
        // Query 5 is indexed and comes back first; relevant (same label) {5, 6, 7}.
        // Without 5: ranking 6, 9, 7 and relevant {6, 7}: AP = (1/1 + 2/3) / 2 = 5/6.
        let j = Judged::new(&[5, 6, 9, 7], &set(&[5, 6, 7]), Some(&5));
        assert!(close(j.average_precision().unwrap(), 5.0 / 6.0));
        // Counting the query would have given (1 + 1 + 3/4) / 3 = 0.9166...
        assert!(!close(j.average_precision().unwrap(), 11.0 / 12.0));
    }

    #[test]
    fn a_query_alone_in_its_label_has_no_ap() {
        let j = Judged::new(&[5, 6], &set(&[5]), Some(&5));
        assert!(!j.is_answerable());
        assert_eq!(j.average_precision(), None);
        // ...and is left out of the summary's denominator.
        let answerable = Judged::new(&[1, 2], &set(&[2]), None); // AP = 1/2
        let s = Summary::of([&j, &answerable]);
        assert_eq!(s.queries, 1);
        assert!(close(s.map, 0.5));
    }

    #[test]
    fn precision_divides_by_k_even_past_the_end() {
        // One relevant item at rank 1 of a 2-item list: P@10 = 1/10.
        let j = Judged::new(&[1, 2], &set(&[1]), None);
        assert!(close(j.precision_at(10), 0.1));
        assert!(close(j.precision_at(0), 0.0));
    }

    #[test]
    fn duplicates_in_a_ranking_count_once() {
        // 1, 1, 2: the second 1 is dropped, so 2 is at rank 2. AP = (1/1 + 2/2) / 2 = 1.
        let j = Judged::new(&[1, 1, 2], &set(&[1, 2]), None);
        assert!(close(j.average_precision().unwrap(), 1.0));
    }

    #[test]
    fn summary_means() {
        // Query A: relevant at 1 -> AP 1, R@1 1, R@10 1, P@10 0.1.
        // Query B: relevant at 12 of 12 -> AP 1/12, R@1 0, R@10 0, P@10 0.
        let a = Judged::new(&[7], &set(&[7]), None);
        let ranking: Vec<u32> = (100..112).collect();
        let b = Judged::new(&ranking, &set(&[111]), None);
        let s = Summary::of([&a, &b]);
        assert_eq!(s.queries, 2);
        assert!(close(s.map, (1.0 + 1.0 / 12.0) / 2.0));
        assert!(close(s.recall_at_1, 0.5));
        assert!(close(s.recall_at_10, 0.5));
        assert!(close(s.precision_at_10, 0.05));
    }
}
