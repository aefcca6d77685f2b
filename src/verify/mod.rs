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

use crate::index::{Hit, Region};

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

/// What spatial verification found between a query and a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verified {
    /// Matches one affine transform explains.
    pub inliers: usize,
    /// Where the query lies in the candidate: the query's outline through that transform,
    /// clipped to the candidate (None without a transform, or when it falls outside).
    pub region: Option<Region>,
}

/// How many of the features shared by two images one affine transform explains (mutual
/// nearest neighbours among the descriptors, then RANSAC), and where `a` lies in `b`.
pub fn verified(a: &LocalFeatures, b: &LocalFeatures) -> Verified {
    match best_transform(a, b) {
        Some((affine, inliers)) => Verified {
            inliers,
            region: outline(&affine, a, b),
        },
        None => Verified {
            inliers: 0,
            region: None,
        },
    }
}

/// The affine transform from `a`'s working pixels to `b`'s that explains the most of the
/// features the two share, and how many it explains.
fn best_transform(a: &LocalFeatures, b: &LocalFeatures) -> Option<(ransac::Affine, usize)> {
    ransac::best_affine(&correspondences(a, b), TOLERANCE)
}

/// The positions of the mutual matches between `a` and `b`.
fn correspondences(a: &LocalFeatures, b: &LocalFeatures) -> Vec<ransac::Correspondence> {
    mutual_matches(a, b)
        .into_iter()
        .map(|(i, j)| {
            let (p, q) = (a.keypoints[i], b.keypoints[j]);
            ([p.x, p.y], [q.x, q.y])
        })
        .collect()
}

/// [`best_transform`] re-fitted to all the matches it explains, for lining one image up
/// with the other pixel for pixel.
pub fn alignment(a: &LocalFeatures, b: &LocalFeatures) -> Option<(ransac::Affine, usize)> {
    let matches = correspondences(a, b);
    let (model, inliers) = ransac::best_affine(&matches, TOLERANCE)?;
    Some((ransac::refine(&matches, model, TOLERANCE), inliers))
}

/// [`verified`]'s count alone.
pub fn inliers(a: &LocalFeatures, b: &LocalFeatures) -> usize {
    verified(a, b).inliers
}

/// The bounding box of `a`'s corners mapped into `b` by `affine`, clipped to `b`, as
/// fractions of `b`'s size.
fn outline(affine: &ransac::Affine, a: &LocalFeatures, b: &LocalFeatures) -> Option<Region> {
    let (aw, ah) = (a.width as f32, a.height as f32);
    let (bw, bh) = (b.width as f32, b.height as f32);
    if bw <= 0.0 || bh <= 0.0 {
        return None;
    }
    let corners = [[0.0, 0.0], [aw, 0.0], [0.0, ah], [aw, ah]].map(|p| affine.apply(p));
    let (mut x0, mut y0) = (f32::INFINITY, f32::INFINITY);
    let (mut x1, mut y1) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for [x, y] in corners {
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let (x0, y0) = ((x0 / bw).clamp(0.0, 1.0), (y0 / bh).clamp(0.0, 1.0));
    let (x1, y1) = ((x1 / bw).clamp(0.0, 1.0), (y1 / bh).clamp(0.0, 1.0));
    (x1 > x0 && y1 > y0 && x0.is_finite() && y0.is_finite()).then_some(Region {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    })
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

/// A verified outline covering at least this share of a hit's area is the whole hit.
const WHOLE_AREA: f32 = 0.9;

/// Re-ranks `hits` given what verification found for the first `found.len()` of them (None:
/// not verified, e.g. a file that could not be read): those with at least `min_inliers` come
/// first, most inliers first, each with the region verification located the query in; every
/// other hit keeps its place in the order of the global descriptor. Each hit records its
/// count.
pub fn rerank(hits: Vec<Hit>, found: &[Option<Verified>], min_inliers: usize) -> Vec<Hit> {
    let (mut verified, mut rest): (Vec<Hit>, Vec<Hit>) = (Vec::new(), Vec::new());
    for (i, mut hit) in hits.into_iter().enumerate() {
        let found = found.get(i).copied().flatten();
        hit.inliers = found.map(|v| v.inliers);
        match found {
            Some(v) if v.inliers >= min_inliers => {
                // The query's outline covering (nearly) all of the hit says nothing.
                let part = v.region.filter(|r| r.area() < WHOLE_AREA);
                hit.region = part.or(hit.region);
                verified.push(hit);
            }
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
            region: None,
        }
    }

    #[test]
    fn verified_hits_move_up_by_inliers_and_the_rest_keep_their_order() {
        let hits = (1..=6).map(hit).collect();
        // Hit 6 is beyond the verified depth; hit 4 could not be read.
        let quarter = Region {
            x: 0.5,
            y: 0.0,
            w: 0.5,
            h: 0.5,
        };
        let counts = [Some(3), Some(40), Some(18), None, Some(90)].map(|n| {
            n.map(|inliers| Verified {
                inliers,
                region: Some(quarter),
            })
        });
        let ranked = rerank(hits, &counts, 18);
        let ids: Vec<i64> = ranked.iter().map(|h| h.id).collect();
        assert_eq!(ids, [5, 2, 3, 1, 4, 6]);
        let recorded: Vec<Option<usize>> = ranked.iter().map(|h| h.inliers).collect();
        assert_eq!(
            recorded,
            [Some(90), Some(40), Some(18), Some(3), None, None]
        );
        // Only verified hits are located.
        let located: Vec<bool> = ranked.iter().map(|h| h.region.is_some()).collect();
        assert_eq!(located, [true, true, true, false, false, false]);
    }

    #[test]
    fn outline_maps_the_query_into_the_candidate() {
        let sized = |width, height| LocalFeatures {
            width,
            height,
            ..LocalFeatures::default()
        };
        // The query (100 x 50) was cut from (200, 100) of a 400 x 400 candidate, at half size.
        let affine = ransac::Affine([2.0, 0.0, 200.0, 0.0, 2.0, 100.0]);
        let r = outline(&affine, &sized(100, 50), &sized(400, 400)).unwrap();
        assert_eq!((r.x, r.y, r.w, r.h), (0.5, 0.25, 0.5, 0.25));
        // Clipped to the candidate; nothing when it falls outside.
        let off = ransac::Affine([1.0, 0.0, 350.0, 0.0, 1.0, 0.0]);
        let r = outline(&off, &sized(100, 50), &sized(400, 400)).unwrap();
        assert!((r.x - 0.875).abs() < 1e-6 && (r.w - 0.125).abs() < 1e-6);
        let gone = ransac::Affine([1.0, 0.0, 500.0, 0.0, 1.0, 0.0]);
        assert_eq!(outline(&gone, &sized(100, 50), &sized(400, 400)), None);
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
