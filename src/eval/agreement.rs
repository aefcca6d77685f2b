//! How far two sets of vectors for the same images agree (a GPU's against the CPU's, fp16
//! against fp32): the cosine between each image's two vectors, and whether each image's ten
//! nearest neighbours among the set are the same under both.

use serde::Serialize;

/// The agreement of two vector sets, image by image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Agreement {
    pub images: usize,
    pub cosine_min: f32,
    pub cosine_median: f32,
    /// Share of images whose 10 nearest others (by cosine) are the same set under both.
    pub top10_same: f64,
    /// Mean share of the 10 nearest others the two sets have in common: near-ties at the
    /// tenth place swap without changing what a search shows.
    pub top10_overlap: f64,
}

/// Compares `a[i]` with `b[i]`: both L2-normalised vectors of image `i`.
///
/// # Panics
/// If the two sets differ in length.
pub fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> Agreement {
    assert_eq!(a.len(), b.len(), "vector sets of different images");
    let mut cosines: Vec<f32> = a.iter().zip(b).map(|(x, y)| dot(x, y)).collect();
    cosines.sort_by(f32::total_cmp);
    let (na, nb) = (nearest(a, 10), nearest(b, 10));
    let same = na.iter().zip(&nb).filter(|(x, y)| x == y).count();
    let common: usize = na
        .iter()
        .zip(&nb)
        .map(|(x, y)| x.iter().filter(|i| y.binary_search(i).is_ok()).count())
        .sum();
    let listed: usize = na.iter().map(Vec::len).sum();
    Agreement {
        images: a.len(),
        cosine_min: cosines.first().copied().unwrap_or(f32::NAN),
        cosine_median: cosines.get(cosines.len() / 2).copied().unwrap_or(f32::NAN),
        top10_same: same as f64 / a.len().max(1) as f64,
        top10_overlap: common as f64 / listed.max(1) as f64,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Each vector's `k` most similar others, as a sorted set of indices.
fn nearest(vectors: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    (0..vectors.len())
        .map(|q| {
            let mut order: Vec<(f32, usize)> = (0..vectors.len())
                .filter(|&i| i != q)
                .map(|i| (dot(&vectors[q], &vectors[i]), i))
                .collect();
            order.sort_by(|x, y| y.0.total_cmp(&x.0));
            let mut top: Vec<usize> = order.into_iter().take(k).map(|(_, i)| i).collect();
            top.sort_unstable();
            top
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn identical_sets_agree_fully_and_a_swap_is_seen() {
        // 12 points on a circle: each one's 10 nearest are all but itself and the opposite one.
        let a: Vec<Vec<f32>> = (0..12)
            .map(|i| {
                let t = i as f32 * std::f32::consts::TAU / 12.0;
                vec![t.cos(), t.sin()]
            })
            .collect();
        let same = agreement(&a, &a);
        assert_eq!(same.images, 12);
        assert!((same.cosine_min - 1.0).abs() < 1e-6);
        assert_eq!((same.top10_same, same.top10_overlap), (1.0, 1.0));
        // Move point 0 onto point 6: its cosine with itself drops to -1, and the nearest sets
        // change for the points whose opposite was 0 or 6.
        let mut b = a.clone();
        b[0] = unit(&[-1.0, 0.001]);
        let moved = agreement(&a, &b);
        assert!(moved.cosine_min < -0.99, "{}", moved.cosine_min);
        assert!((moved.cosine_median - 1.0).abs() < 1e-6);
        assert!(
            moved.top10_same < 1.0 && moved.top10_same > 0.5,
            "{}",
            moved.top10_same
        );
    }
}
