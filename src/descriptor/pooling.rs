//! Pooling of the network's last activation map into one vector per image.
//!
//! The map is C x P (channels by spatial positions, the layout of one image of an NCHW tensor
//! with P = h * w). Average pooling is what the graph's own `features` output computes; GeM
//! and max pooling are done here because they are cheap (C * P = 1280 * 49 values for Lite0)
//! and keep the ONNX graph the same for every descriptor.

use super::Pooling;

/// Floor of the activations before GeM's power, as in Radenović et al.: keeps `x^p` defined
/// for any p (the head's ReLU6 outputs are >= 0, so only exact zeros move).
pub const GEM_EPS: f32 = 1e-6;

/// Pools `map` (`channels` rows of P positions, row-major) into `out` (`channels` values).
///
/// # Panics
/// If `map.len()` is not a non-zero multiple of `out.len()` (a programming error: both come
/// from the graph's fixed shapes).
pub fn pool(pooling: Pooling, map: &[f32], out: &mut [f32]) {
    let channels = out.len();
    assert!(
        channels > 0 && !map.is_empty() && map.len() % channels == 0,
        "activation map of {} values is not {channels} channels",
        map.len()
    );
    let positions = map.len() / channels;
    for (value, row) in out.iter_mut().zip(map.chunks_exact(positions)) {
        *value = match pooling {
            Pooling::Average => mean(row.iter().map(|&x| f64::from(x))) as f32,
            Pooling::Max => row.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            Pooling::Gem { p } => gem(row, f64::from(p)),
        };
    }
}

/// Scales to unit length (cosine similarity = dot product); an all-zero vector stays zero
/// (no NaN). Summed in f64 so that 1280 small squares lose nothing.
pub fn l2_normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    }
}

/// Inner product; equals cosine similarity for L2-normalised vectors. Eight independent
/// accumulators let the compiler vectorise without `-ffast-math`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len() as f64;
    values.sum::<f64>() / n
}

/// `(mean(max(x, eps)^p))^(1/p)`, in f64 so that large p neither overflows nor loses the
/// small activations.
fn gem(row: &[f32], p: f64) -> f32 {
    let floor = f64::from(GEM_EPS);
    let m = mean(row.iter().map(|&x| f64::from(x).max(floor).powf(p)));
    m.powf(1.0 / p) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two channels of four positions: [1, 2, 3, 6] and [0, 0, 0, 4].
    const MAP: [f32; 8] = [1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0];

    fn pooled(pooling: Pooling) -> [f32; 2] {
        let mut out = [0.0; 2];
        pool(pooling, &MAP, &mut out);
        out
    }

    #[test]
    fn average_and_max_by_hand() {
        assert_eq!(pooled(Pooling::Average), [3.0, 1.0]);
        assert_eq!(pooled(Pooling::Max), [6.0, 4.0]);
    }

    #[test]
    fn gem_with_p_one_is_the_average() {
        let [a, b] = pooled(Pooling::Gem { p: 1.0 });
        assert!((a - 3.0).abs() < 1e-6, "{a}");
        // The zeros are floored at eps: (3 * 1e-6 + 4) / 4.
        assert!((f64::from(b) - 1.000_000_75).abs() < 1e-6, "{b}");
    }

    #[test]
    fn gem_with_p_two_by_hand() {
        // sqrt((1 + 4 + 9 + 36) / 4) = sqrt(12.5); sqrt(16 / 4) = 2.
        let [a, b] = pooled(Pooling::Gem { p: 2.0 });
        assert!((a - 12.5f32.sqrt()).abs() < 1e-5, "{a}");
        assert!((b - 2.0).abs() < 1e-5, "{b}");
    }

    #[test]
    fn gem_approaches_the_maximum_as_p_grows() {
        let [a3, b3] = pooled(Pooling::Gem { p: 3.0 });
        let [a, b] = pooled(Pooling::Gem { p: 200.0 });
        // Between the average and the maximum, and closer to the maximum as p grows.
        assert!(3.0 < a3 && a3 < a && a < 6.0, "{a3} {a}");
        assert!(1.0 < b3 && b3 < b && b < 4.0, "{b3} {b}");
        // p = 200: 6 * (1/4)^(1/200) = 6 * 0.99309 (the other positions add < 1e-30).
        assert!((a - 6.0 * 0.25f32.powf(1.0 / 200.0)).abs() < 1e-4, "{a}");
        assert!(6.0 - a < 0.05 && 4.0 - b < 0.05);
    }

    #[test]
    fn dot_matches_naive_sum_for_odd_lengths() {
        let a: Vec<f32> = (0..13).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..13).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive: f32 = (0..13).map(|i| a[i] * b[i]).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }

    #[test]
    fn normalising_gives_unit_length_and_keeps_zero() {
        let mut v = [3.0, 0.0, -4.0];
        l2_normalise(&mut v);
        assert_eq!(v, [0.6, 0.0, -0.8]);
        let mut zero = [0.0; 4];
        l2_normalise(&mut zero);
        assert_eq!(zero, [0.0; 4]);
    }

    #[test]
    fn one_position_is_returned_as_is_by_every_pooling() {
        for pooling in [Pooling::Average, Pooling::Max, Pooling::Gem { p: 3.0 }] {
            let mut out = [0.0; 3];
            pool(pooling, &[0.5, 2.0, 5.5], &mut out);
            for (a, b) in out.iter().zip([0.5, 2.0, 5.5]) {
                assert!((a - b).abs() < 1e-6, "{pooling}: {a} vs {b}");
            }
        }
    }
}
