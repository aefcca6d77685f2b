//! Spatial verification: re-ranking the top of a result list by whether the query and each
//! candidate show the same things in a geometrically consistent arrangement.
//!
//! A global descriptor says what an image looks like overall; two different cluttered
//! desks look alike to it, while a box photographed alone and the same box in such a clutter
//! do not. Local features ([`orb`]) matched between the two images, and counted when one
//! affine transform explains them ([`ransac`]), tell the difference: two views of one object
//! share dozens of such matches, unrelated images a dozen at most (by chance). This is the
//! classic second stage of instance retrieval (Philbin et al., "Object retrieval with large
//! vocabularies and fast spatial matching", 2007).
//!
//! Candidates' features are computed from their files when a search asks for verification
//! (nothing is stored): it costs a decode per verified candidate, so it is a per-search choice.

pub mod orb;
pub mod ransac;

pub use orb::LocalFeatures;

use crate::index::Hit;

/// The shorter side images are decoded to at least for verification: a 4:3 photo then has
/// [`orb::WORKING_SIDE`] pixels on its longer side (JPEGs shrink in the DCT domain down to it).
pub const DECODE_SIDE: u32 = orb::WORKING_SIDE * 3 / 4;

/// How a search re-ranks its top results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// How many of the top results are verified (0: none).
    pub depth: usize,
    /// Matches one transform must explain for a candidate to count as showing the query's
    /// scene or object.
    pub min_inliers: usize,
}

impl VerifyOptions {
    /// The fewest inliers that count as a verified match. Unrelated photos reach 11 at most
    /// (over the 15,333 pairs of unrelated photos among the 178 cached test photos; 99.9% of
    /// them have 10 or fewer); the same-scene pairs that verification can see have 28 to 329
    /// (`cargo test --release --test verify calibration -- --ignored --nocapture`, numbers in
    /// BENCHMARKS.md).
    pub const DEFAULT_MIN_INLIERS: usize = 18;

    /// Verifies the top `depth` results with the default threshold.
    pub fn top(depth: usize) -> VerifyOptions {
        VerifyOptions {
            depth,
            min_inliers: Self::DEFAULT_MIN_INLIERS,
        }
    }
}

/// Two matched descriptors differ in at most this many of their 256 tests.
const MAX_HAMMING: u32 = 64;
/// Two matches land within this many pixels (of the [`orb::WORKING_SIDE`] image) of where
/// the transform puts them.
const TOLERANCE: f32 = 5.0;

/// How many of the features shared by two images one affine transform explains: mutual
/// nearest neighbours among the descriptors, then RANSAC.
pub fn inliers(a: &LocalFeatures, b: &LocalFeatures) -> usize {
    let matches: Vec<ransac::Correspondence> = mutual_matches(a, b)
        .into_iter()
        .map(|(i, j)| {
            let (p, q) = (a.keypoints[i], b.keypoints[j]);
            ([p.x, p.y], [q.x, q.y])
        })
        .collect();
    ransac::best_affine(&matches, TOLERANCE).map_or(0, |(_, n)| n)
}

/// Pairs (i, j) where `b`'s descriptor j is the closest to `a`'s i and the other way round,
/// within [`MAX_HAMMING`].
fn mutual_matches(a: &LocalFeatures, b: &LocalFeatures) -> Vec<(usize, usize)> {
    // One pass over all pairs finds both directions' nearest neighbours.
    let mut forward = vec![(u32::MAX, 0usize); a.descriptors.len()];
    let mut backward = vec![(u32::MAX, 0usize); b.descriptors.len()];
    for (i, d) in a.descriptors.iter().enumerate() {
        for (j, e) in b.descriptors.iter().enumerate() {
            let distance = hamming(d, e);
            if distance < forward[i].0 {
                forward[i] = (distance, j);
            }
            if distance < backward[j].0 {
                backward[j] = (distance, i);
            }
        }
    }
    forward
        .iter()
        .enumerate()
        .filter(|&(i, &(distance, j))| distance <= MAX_HAMMING && backward[j].1 == i)
        .map(|(i, &(_, j))| (i, j))
        .collect()
}

fn hamming(a: &orb::Descriptor, b: &orb::Descriptor) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Re-ranks `hits` given the inlier counts of the first `inliers.len()` of them (None: not
/// verified, e.g. a video frame or a file that could not be read): those with at least
/// `min_inliers` come first, most inliers first; every other hit keeps its place in the
/// order of the global descriptor. Each hit records its count.
pub fn rerank(hits: Vec<Hit>, inliers: &[Option<usize>], min_inliers: usize) -> Vec<Hit> {
    let (mut verified, mut rest): (Vec<Hit>, Vec<Hit>) = (Vec::new(), Vec::new());
    for (i, mut hit) in hits.into_iter().enumerate() {
        hit.inliers = inliers.get(i).copied().flatten();
        match hit.inliers {
            Some(n) if n >= min_inliers => verified.push(hit),
            _ => rest.push(hit),
        }
    }
    // Stable: equal counts keep the global order.
    verified.sort_by_key(|hit| std::cmp::Reverse(hit.inliers));
    verified.append(&mut rest);
    verified
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::MediaKind;

    fn hit(id: i64) -> Hit {
        Hit {
            id,
            score: 1.0 - id as f32 / 10.0,
            path: format!("/{id}.jpg"),
            t: None,
            kind: MediaKind::Image,
            inliers: None,
        }
    }

    #[test]
    fn verified_hits_move_up_by_inliers_and_the_rest_keep_their_order() {
        let hits = (1..=6).map(hit).collect();
        // Hit 6 is beyond the verified depth; hit 4 could not be read.
        let counts = [Some(3), Some(40), Some(18), None, Some(90)];
        let ranked = rerank(hits, &counts, 18);
        let ids: Vec<i64> = ranked.iter().map(|h| h.id).collect();
        assert_eq!(ids, [5, 2, 3, 1, 4, 6]);
        let recorded: Vec<Option<usize>> = ranked.iter().map(|h| h.inliers).collect();
        assert_eq!(
            recorded,
            [Some(90), Some(40), Some(18), Some(3), None, None]
        );
    }

    #[test]
    fn hamming_counts_differing_tests() {
        let a = [0u64, u64::MAX, 0b1011, 0];
        let b = [1u64, u64::MAX, 0b0001, 1 << 63];
        // One bit in the first word, none in the second, two in the third, one in the last.
        assert_eq!(hamming(&a, &b), 4);
        assert_eq!(hamming(&a, &a), 0);
    }
}
