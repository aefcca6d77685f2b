//! Pooling of the network's last activation map into one vector per image.
//!
//! The map is C x P (channels by spatial positions, the layout of one image of an NCHW tensor
//! with P = h * w; the network's input is square, so h = w). Average pooling is what the
//! graph's own `features` output computes; the others are done here because they are cheap
//! (C * P = 1280 * 49 values for Lite0) and keep the ONNX graph the same for every descriptor.

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
        channels > 0 && !map.is_empty() && map.len().is_multiple_of(channels),
        "activation map of {} values is not {channels} channels",
        map.len()
    );
    match pooling {
        Pooling::Average => global(map, out, |row| {
            mean(row.iter().map(|&x| f64::from(x))) as f32
        }),
        Pooling::Max => global(map, out, |row| {
            row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        }),
        Pooling::Gem { p } => global(map, out, |row| gem(row, f64::from(p))),
        Pooling::Rmac => regional(map, out, Window::max),
        Pooling::Rgem { p } => {
            // Raised once per activation rather than once per region that covers it; kept
            // in f64, where a large p cannot overflow (f32 would at 6^50).
            let p = f64::from(p);
            let powered: Vec<f64> = map.iter().map(|&x| gem_power(x, p)).collect();
            regional(&powered, out, |region, row| region.gem_of_powered(row, p));
        }
    }
}

/// Pools each channel's whole row of `map` with `pool_row` into `out`.
fn global(map: &[f32], out: &mut [f32], pool_row: impl Fn(&[f32]) -> f32) {
    let positions = map.len() / out.len();
    for (value, row) in out.iter_mut().zip(map.chunks_exact(positions)) {
        *value = pool_row(row);
    }
}

/// How many region sizes R-MAC uses (the paper's L = 3): the whole map, then l x l grids of
/// squares for l = 1..=3.
const RMAC_LEVELS: usize = 3;

/// A square of `side` positions whose top left corner is `(y, x)`, on a map `map_side` wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub y: usize,
    pub x: usize,
    pub side: usize,
    pub map_side: usize,
}

impl Window {
    /// R-MAC's regions on a square map `map_side` wide: the whole map, then for each level
    /// l = 1..=3 an l x l grid of squares `floor(2 map_side / (l + 1))` wide, spread evenly from
    /// edge to edge (neighbours overlap by about 40%). 15 regions on Lite0's 7 x 7 map.
    fn rmac(map_side: usize) -> Vec<Window> {
        let mut regions = vec![Window {
            y: 0,
            x: 0,
            side: map_side,
            map_side,
        }];
        for level in 1..=RMAC_LEVELS {
            let side = 2 * map_side / (level + 1);
            if side == 0 {
                continue;
            }
            let start = |i: usize| match level {
                1 => 0,
                _ => i * (map_side - side) / (level - 1),
            };
            for i in 0..level {
                for j in 0..level {
                    regions.push(Window {
                        y: start(i),
                        x: start(j),
                        side,
                        map_side,
                    });
                }
            }
        }
        regions
    }

    /// The values of one channel's row (`map_side`^2 positions, row-major) in this region.
    fn values<'a, T: Copy>(&self, row: &'a [T]) -> impl Iterator<Item = T> + 'a {
        let Window {
            y,
            x,
            side,
            map_side,
        } = *self;
        (y..y + side).flat_map(move |r| {
            row[r * map_side + x..r * map_side + x + side]
                .iter()
                .copied()
        })
    }

    fn max(&self, row: &[f32]) -> f32 {
        self.values(row).fold(f32::NEG_INFINITY, f32::max)
    }

    /// GeM over the region of a row already raised to the power `p` ([`gem_power`]).
    pub(crate) fn gem_of_powered(&self, powered: &[f64], p: f64) -> f32 {
        let n = self.side * self.side;
        mean_of(self.values(powered), n).powf(1.0 / p) as f32
    }
}

/// Pools each R-MAC region of `map` with `pool_region` (given the region and one channel's
/// row), normalises each region's vector and sums them into `out`.
fn regional<T>(map: &[T], out: &mut [f32], pool_region: impl Fn(&Window, &[T]) -> f32) {
    let positions = map.len() / out.len();
    let map_side = (positions as f64).sqrt().round() as usize;
    assert_eq!(
        map_side * map_side,
        positions,
        "regional pooling needs a square map"
    );
    out.fill(0.0);
    let mut region_vector = vec![0.0; out.len()];
    for region in Window::rmac(map_side) {
        for (value, row) in region_vector.iter_mut().zip(map.chunks_exact(positions)) {
            *value = pool_region(&region, row);
        }
        l2_normalise(&mut region_vector);
        out.iter_mut()
            .zip(&region_vector)
            .for_each(|(o, r)| *o += r);
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
    let n = values.len();
    mean_of(values, n)
}

fn mean_of(values: impl Iterator<Item = f64>, n: usize) -> f64 {
    values.sum::<f64>() / n as f64
}

/// `max(x, eps)^p`, GeM's power of one activation. An integer p (the default 3) multiplies:
/// `powf` on each of the map's 62,720 values cost about 1.2 ms of CPU per image (indexing at
/// 239 images/s instead of average pooling's 281 on 2 cores; 266 by multiplication).
pub(crate) fn gem_power(x: f32, p: f64) -> f64 {
    let x = f64::from(x).max(f64::from(GEM_EPS));
    if p.fract() == 0.0 && (1.0..=MAX_INTEGER_POWER).contains(&p) {
        x.powi(p as i32)
    } else {
        x.powf(p)
    }
}

/// The largest p [`gem_power`] computes by repeated multiplication.
const MAX_INTEGER_POWER: f64 = 16.0;

/// `(mean(max(x, eps)^p))^(1/p)`, in f64 so that large p neither overflows nor loses the
/// small activations.
fn gem(row: &[f32], p: f64) -> f32 {
    mean(row.iter().map(|&x| gem_power(x, p))).powf(1.0 / p) as f32
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
    fn rmac_regions_on_lite0s_map_are_the_papers() {
        let squares = |side: usize, starts: &[usize]| -> Vec<(usize, usize, usize)> {
            starts
                .iter()
                .flat_map(|&y| starts.iter().map(move |&x| (y, x, side)))
                .collect()
        };
        let mut expected = vec![(0, 0, 7), (0, 0, 7)];
        expected.extend(squares(4, &[0, 3]));
        expected.extend(squares(3, &[0, 2, 4]));
        let got: Vec<_> = Window::rmac(7).iter().map(|r| (r.y, r.x, r.side)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn rmac_counts_the_regions_that_see_an_activation() {
        // One channel: each region's normalised vector is 1 where it sees the activation,
        // 0 elsewhere. 4 x 4 map: the whole map twice, four 2 x 2 quadrants, nine 2 x 2
        // squares starting at rows and columns 0, 1, 2.
        let at = |y: usize, x: usize| {
            let mut map = [0.0f32; 16];
            map[y * 4 + x] = 2.0;
            let mut out = [0.0];
            pool(Pooling::Rmac, &map, &mut out);
            out[0]
        };
        // (0, 0): both whole maps, one quadrant, one square.
        assert_eq!(at(0, 0), 4.0);
        // (1, 1): both whole maps, one quadrant, the squares at rows 0-1 x columns 0-1.
        assert_eq!(at(1, 1), 7.0);
    }

    #[test]
    fn regional_pooling_of_a_constant_map_is_the_channels_direction_per_region() {
        // Channels constant 3 and 4: every region pools to (3, 4), normalised (0.6, 0.8);
        // 15 regions on a 7 x 7 map sum to 15 times that.
        let mut map = vec![3.0f32; 49];
        map.extend([4.0f32; 49]);
        // p = 100: 4^100 is past f32's range, not f64's.
        let poolings = [
            Pooling::Rmac,
            Pooling::Rgem { p: 3.0 },
            Pooling::Rgem { p: 100.0 },
        ];
        for pooling in poolings {
            let mut out = [0.0; 2];
            pool(pooling, &map, &mut out);
            assert!(
                (out[0] - 9.0).abs() < 1e-4 && (out[1] - 12.0).abs() < 1e-4,
                "{pooling}: {out:?}"
            );
        }
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
