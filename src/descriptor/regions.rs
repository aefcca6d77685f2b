//! Region descriptors: how a detail cut out of a photo finds the photo.
//!
//! A detail's global descriptor is nothing like the whole photo's. The 2021 Image Similarity
//! Challenge winners answered this by indexing a handful of region descriptors per reference
//! image and matching a query against the best region. Here the regions cost no extra network
//! run: they are GeM-pooled over windows of the activation map that the global descriptor
//! already pools (7 x 7 cells at 224 px for Lite0), and a query is also embedded at smaller
//! input sizes (160 and 128 px at 224), so that a small detail meets a window's scale.
//!
//! Measured on the crop benchmark (BENCHMARKS.md, "Regions"), 18 windows of 3 and 4 cells
//! (the 3 x 3 grids of each, overlapping) projected onto the top 256 components of the
//! collection's own PCA (the whitening the global descriptor learns, power 0) were the best
//! buy: 46 windows (sizes 2 and 4) gained little more for 2.5x the entries, windows of a
//! second, larger pass (448 px) gained more at 10% areas but cost four network runs' worth of
//! pixels per image, and a PCA learned on the regions themselves was no better than the
//! global one.

use serde::{Deserialize, Serialize};

use super::pooling::{gem_power, l2_normalise, Window};
use crate::index::Region;

/// What regions an index keeps per image and how it searches them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionOptions {
    /// Dimensions kept after the collection's PCA (the whitening's first `dims` components);
    /// until one is learned, regions are searched raw.
    pub dims: usize,
}

impl Default for RegionOptions {
    fn default() -> Self {
        RegionOptions { dims: 256 }
    }
}

/// The query's extra input sides, relative to the model's: a detail that filled a whole
/// query image is seen at the scale of a window (3 or 4 of 7 cells) of the indexed photo.
pub const QUERY_SCALES: [f32; 2] = [160.0 / 224.0, 128.0 / 224.0];

/// GeM's power for regions: the global descriptor's default.
pub(crate) const GEM_P: f64 = 3.0;

/// Window sides as fractions of the map's side (4 and 3 cells of Lite0's 7), each on an
/// evenly spread 3 x 3 grid of positions (neighbours overlap by a third to a half).
const WINDOW_SIDES: [f64; 2] = [4.0 / 7.0, 3.0 / 7.0];
const POSITIONS: usize = 3;

/// The windows regions are pooled over on a square map `map_side` cells wide (18 on 7 x 7).
pub(crate) fn windows(map_side: usize) -> Vec<Window> {
    let mut out = Vec::new();
    for fraction in WINDOW_SIDES {
        let side = ((fraction * map_side as f64).round() as usize).clamp(1, map_side);
        let start =
            |i: usize| (i as f64 * (map_side - side) as f64 / (POSITIONS - 1) as f64).round();
        for i in 0..POSITIONS {
            for j in 0..POSITIONS {
                let window = Window {
                    y: start(i) as usize,
                    x: start(j) as usize,
                    side,
                    map_side,
                };
                if !out.contains(&window) {
                    out.push(window);
                }
            }
        }
    }
    out
}

/// How many regions an image of a model with a `map_side` map gets.
pub fn count(map_side: usize) -> usize {
    windows(map_side).len()
}

/// Pools `map` (`channels` rows of `map_side`^2 positions, one image of an NCHW output) over
/// each window and appends the L2-normalised region vectors to `out` (window after window,
/// `channels` values each).
pub fn pool(map: &[f32], channels: usize, out: &mut Vec<f32>) {
    let positions = map.len() / channels;
    let map_side = (positions as f64).sqrt().round() as usize;
    assert_eq!(map_side * map_side, positions, "regions need a square map");
    let powered: Vec<f64> = map.iter().map(|&x| gem_power(x, GEM_P)).collect();
    for window in windows(map_side) {
        let start = out.len();
        out.extend(
            powered
                .chunks_exact(positions)
                .map(|row| window.gem_of_powered(row, GEM_P)),
        );
        l2_normalise(&mut out[start..]);
    }
}

/// The part of the image each region covers, as fractions of its width and height: the
/// windows of a map that saw `crop` of the image (the centre crop the network was given).
pub fn boxes(map_side: usize, crop: Region) -> Vec<Region> {
    let cell = |n: usize| n as f32 / map_side as f32;
    windows(map_side)
        .into_iter()
        .map(|w| Region {
            x: crop.x + cell(w.x) * crop.w,
            y: crop.y + cell(w.y) * crop.h,
            w: cell(w.side) * crop.w,
            h: cell(w.side) * crop.h,
        })
        .collect()
}

/// Keeps the first `dims` values of a projected vector and normalises it again: with a PCA of
/// power 0 that is the projection onto its top `dims` components.
pub fn truncate(projected: &[f32], dims: usize) -> Vec<f32> {
    let mut v = projected[..dims.min(projected.len())].to_vec();
    l2_normalise(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_on_lite0s_map_are_two_overlapping_three_by_three_grids() {
        let got: Vec<_> = windows(7).iter().map(|w| (w.y, w.x, w.side)).collect();
        let mut want = Vec::new();
        for (side, starts) in [(4, [0, 2, 3]), (3, [0, 2, 4])] {
            for y in starts {
                for x in starts {
                    want.push((y, x, side));
                }
            }
        }
        assert_eq!(got, want);
        assert_eq!(count(7), 18);
        // Every window fits in the map, on any size.
        for side in 1..12 {
            assert!(windows(side)
                .iter()
                .all(|w| w.x + w.side <= side && w.y + w.side <= side));
        }
    }

    #[test]
    fn pooling_is_gem_over_each_window() {
        // One channel, a 7 x 7 map whose only non-zero cell is (0, 0) = 2.
        let mut map = vec![0.0; 49];
        map[0] = 2.0;
        let mut out = Vec::new();
        pool(&map, 1, &mut out);
        assert_eq!(out.len(), 18);
        // One channel normalises to 1 wherever the window has any activation at all (the
        // floor eps makes every window positive).
        assert!(out.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        // Two channels: the second is constant 1, so the window holding (0, 0) leans to the
        // first channel and the others to the second.
        let mut two = map.clone();
        two.extend(std::iter::repeat_n(1.0, 49));
        let mut out = Vec::new();
        pool(&two, 2, &mut out);
        let first: Vec<f32> = out.chunks_exact(2).map(|v| v[0]).collect();
        // Window 0 (4 x 4 at the corner): GeM of channel 0 = (8 / 16)^(1/3).
        let expect = (0.5f64).powf(1.0 / 3.0);
        let norm = (expect * expect + 1.0).sqrt();
        assert!((f64::from(first[0]) - expect / norm).abs() < 1e-5);
        assert!(first[1] < 1e-3, "window 1 does not hold (0, 0)");
    }

    #[test]
    fn boxes_map_windows_into_the_centre_crop() {
        let crop = Region {
            x: 0.25,
            y: 0.0,
            w: 0.5,
            h: 1.0,
        };
        let b = boxes(7, crop);
        assert_eq!(b.len(), 18);
        let first = b[0];
        assert!((first.x - 0.25).abs() < 1e-6 && first.y == 0.0);
        assert!((first.w - 0.5 * 4.0 / 7.0).abs() < 1e-6 && (first.h - 4.0 / 7.0).abs() < 1e-6);
        let last = b[17];
        assert!((last.x + last.w - 0.75).abs() < 1e-6 && (last.y + last.h - 1.0).abs() < 1e-6);
    }
}
