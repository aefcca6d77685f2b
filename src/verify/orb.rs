//! ORB local features (Rublee et al., "ORB: an efficient alternative to SIFT or SURF", 2011):
//! FAST-9 corners on an image pyramid, ranked by their Harris response, oriented by the
//! intensity centroid of their patch, and described by 256 BRIEF intensity tests steered by
//! that orientation.
//!
//! Hand-written: no maintained Rust crate computes oriented binary features (imageproc has
//! FAST and un-oriented BRIEF, which breaks under the few degrees of rotation of a
//! hand-held photo, and would bring a second nalgebra and a font stack).

use std::sync::OnceLock;

use fast_image_resize as fir;
use image::{GrayImage, RgbImage};

use crate::image::ImageError;

/// The longer side an image is scaled down to before anything is detected: enough detail for
/// an object a quarter of the frame wide, and a bound on the cost of a huge photo.
pub const WORKING_SIDE: u32 = 512;
/// Most features kept per image (spread over the pyramid's levels by area).
const MAX_FEATURES: usize = 500;
/// Pyramid levels, each `SCALE` times smaller than the one above: 1.2^5 = 2.5x of scale
/// change between two views is still matched.
const LEVELS: usize = 6;
const SCALE: f32 = 1.2;
/// How much brighter or darker than the centre a FAST arc must be (8-bit levels).
const FAST_THRESHOLD: i16 = 20;
/// Radius of the patch that orients and describes a keypoint.
const PATCH_RADIUS: i32 = 15;
/// Keypoints stay this far from the border: the orientation's patch and the steered tests
/// reach [`PATCH_RADIUS`] pixels from the centre.
const BORDER: i32 = PATCH_RADIUS + 1;

/// A binary descriptor: 256 intensity tests.
pub type Descriptor = [u64; 4];

/// Where a feature is, in the pixels of the image scaled to [`WORKING_SIDE`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keypoint {
    pub x: f32,
    pub y: f32,
}

/// An image's local features: `keypoints[i]` is described by `descriptors[i]`.
#[derive(Debug, Clone, Default)]
pub struct LocalFeatures {
    pub keypoints: Vec<Keypoint>,
    pub descriptors: Vec<Descriptor>,
    /// The size of the image the keypoints' coordinates are in (scaled to [`WORKING_SIDE`]).
    pub width: u32,
    pub height: u32,
}

impl LocalFeatures {
    /// Detects and describes the features of an image (any size; scaled down to
    /// [`WORKING_SIDE`] first, never up).
    pub fn of(image: &RgbImage) -> Result<LocalFeatures, ImageError> {
        LocalFeatures::of_working(&working_grey(image)?)
    }

    /// Detects and describes the features of a grey image already at most [`WORKING_SIDE`]
    /// on its longer side (from [`working_grey`]), whose pixels the keypoints are in.
    pub fn of_working(base: &GrayImage) -> Result<LocalFeatures, ImageError> {
        let weights: Vec<f32> = (0..LEVELS).map(|l| SCALE.powi(-2 * l as i32)).collect();
        let total: f32 = weights.iter().sum();
        let mut features = LocalFeatures {
            width: base.width(),
            height: base.height(),
            ..LocalFeatures::default()
        };
        for (l, weight) in weights.iter().enumerate() {
            let scale = SCALE.powi(l as i32);
            let level = resize(
                base,
                scaled(base.width(), 1.0 / scale),
                scaled(base.height(), 1.0 / scale),
            )?;
            let quota = (MAX_FEATURES as f32 * weight / total).round() as usize;
            describe_level(&level, quota, scale, &mut features);
        }
        Ok(features)
    }

    pub fn len(&self) -> usize {
        self.keypoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keypoints.is_empty()
    }
}

/// An image scaled down to [`WORKING_SIDE`] on its longer side (never up) and turned to
/// Rec. 601 luma: what features are detected on.
pub fn working_grey(image: &RgbImage) -> Result<GrayImage, ImageError> {
    // Shrunk first: a full-size grey copy of a huge image would cost more than the rest.
    let (w, h) = image.dimensions();
    let shrink = (WORKING_SIDE as f32 / w.max(h) as f32).min(1.0);
    let mut small = RgbImage::new(scaled(w, shrink), scaled(h, shrink));
    if small.dimensions() == (w, h) {
        small.clone_from(image);
    } else {
        resize_into(image, &mut small)?;
    }
    // In 8-bit fixed point.
    Ok(GrayImage::from_fn(small.width(), small.height(), |x, y| {
        let [r, g, b] = small.get_pixel(x, y).0.map(u32::from);
        image::Luma([((77 * r + 150 * g + 29 * b + 128) >> 8) as u8])
    }))
}

fn scaled(side: u32, factor: f32) -> u32 {
    ((side as f32 * factor).round() as u32).max(1)
}

fn resize(image: &GrayImage, w: u32, h: u32) -> Result<GrayImage, ImageError> {
    if image.dimensions() == (w, h) {
        return Ok(image.clone());
    }
    let mut out = GrayImage::new(w, h);
    resize_into(image, &mut out)?;
    Ok(out)
}

/// Bilinear: the pyramid's levels, as ORB builds them.
fn resize_into(
    src: &impl fir::IntoImageView,
    dst: &mut impl fir::IntoImageViewMut,
) -> Result<(), ImageError> {
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    fir::Resizer::new()
        .resize(src, dst, &options)
        .map_err(|e| ImageError::Resize(e.to_string()))
}

/// Adds up to `quota` of one pyramid level's features, their positions multiplied by
/// `scale` (back to the base level's pixels).
fn describe_level(level: &GrayImage, quota: usize, scale: f32, out: &mut LocalFeatures) {
    let (w, h) = (level.width() as i32, level.height() as i32);
    if quota == 0 || w <= 2 * BORDER || h <= 2 * BORDER {
        return;
    }
    // The strongest FAST corners, then the best of those by Harris response (the FAST score
    // alone favours edges).
    let mut corners = fast_corners(level);
    corners.sort_unstable_by_key(|&(_, _, score)| std::cmp::Reverse(score));
    corners.truncate(4 * quota);
    let mut corners: Vec<(i32, i32, f32)> = corners
        .into_iter()
        .map(|(x, y, _)| (x, y, harris(level, x, y)))
        .collect();
    corners.sort_by(|a, b| b.2.total_cmp(&a.2));
    corners.truncate(quota);
    let smooth = gaussian_blur(level);
    for (x, y, _) in corners {
        let angle = orientation(level, x, y);
        out.keypoints.push(Keypoint {
            x: x as f32 * scale,
            y: y as f32 * scale,
        });
        out.descriptors.push(steered_brief(&smooth, x, y, angle));
    }
}

/// The 16 pixels of the radius-3 Bresenham circle around a FAST candidate, in order.
const CIRCLE: [(i32, i32); 16] = [
    (0, -3),
    (1, -3),
    (2, -2),
    (3, -1),
    (3, 0),
    (3, 1),
    (2, 2),
    (1, 3),
    (0, 3),
    (-1, 3),
    (-2, 2),
    (-3, 1),
    (-3, 0),
    (-3, -1),
    (-2, -2),
    (-1, -3),
];

/// FAST-9 corners (9 contiguous circle pixels all brighter, or all darker, than the centre
/// by [`FAST_THRESHOLD`]) that are local maxima of the FAST score in their 3x3 neighbourhood,
/// as (x, y, FAST score), at least [`BORDER`] pixels from the edges.
fn fast_corners(image: &GrayImage) -> Vec<(i32, i32, u16)> {
    let (w, h) = (image.width() as i32, image.height() as i32);
    let raw = image.as_raw();
    let offsets = CIRCLE.map(|(dx, dy)| (dy * w + dx) as isize);
    let mut score = vec![0u16; (w * h) as usize];
    for y in BORDER..h - BORDER {
        for x in BORDER..w - BORDER {
            let at = (y * w + x) as usize;
            let centre = i16::from(raw[at]);
            let diff = |i: usize| i16::from(raw[at.wrapping_add_signed(offsets[i])]) - centre;
            // Any 9 contiguous circle pixels include at least 2 of the 4 compass points:
            // most pixels are rejected after 4 reads.
            let compass = [diff(0), diff(4), diff(8), diff(12)];
            let bright = compass.iter().filter(|&&d| d > FAST_THRESHOLD).count();
            let dark = compass.iter().filter(|&&d| d < -FAST_THRESHOLD).count();
            if bright < 2 && dark < 2 {
                continue;
            }
            let (mut brighter, mut darker) = (0u32, 0u32);
            let (mut bright_sum, mut dark_sum) = (0u16, 0u16);
            for i in 0..CIRCLE.len() {
                let d = diff(i);
                if d > FAST_THRESHOLD {
                    brighter |= 1 << i;
                    bright_sum += (d - FAST_THRESHOLD) as u16;
                } else if d < -FAST_THRESHOLD {
                    darker |= 1 << i;
                    dark_sum += (-d - FAST_THRESHOLD) as u16;
                }
            }
            let s = match (has_arc(brighter), has_arc(darker)) {
                (true, true) => bright_sum.max(dark_sum),
                (true, false) => bright_sum,
                (false, true) => dark_sum,
                (false, false) => continue,
            };
            // At least 9: every pixel of the arc passes the threshold by 1 or more.
            score[at] = s;
        }
    }
    let mut maxima = Vec::new();
    for y in BORDER..h - BORDER {
        for x in BORDER..w - BORDER {
            let s = score[(y * w + x) as usize];
            if s == 0 {
                continue;
            }
            // A plateau keeps its first pixel in raster order.
            let is_max = (-1..=1).all(|dy| {
                (-1..=1).all(|dx| {
                    let n = score[((y + dy) * w + x + dx) as usize];
                    let earlier = dy < 0 || (dy == 0 && dx < 0);
                    (dx, dy) == (0, 0) || n < s || (n == s && !earlier)
                })
            });
            if is_max {
                maxima.push((x, y, s));
            }
        }
    }
    maxima
}

/// Whether a 16-bit circle mask holds 9 contiguous set bits (wrapping around).
fn has_arc(mask: u32) -> bool {
    if mask.count_ones() < 9 {
        return false;
    }
    let doubled = mask | (mask << 16);
    let mut run = doubled;
    for shift in 1..9 {
        run &= doubled >> shift;
    }
    run != 0
}

/// The Harris corner response (k = 0.04) of the 7x7 block around (x, y), from Sobel
/// gradients: how the features of a level are ranked, as in ORB (the FAST score alone
/// favours edges).
fn harris(image: &GrayImage, x: i32, y: i32) -> f32 {
    let w = image.width() as i32;
    let px = |x: i32, y: i32| f32::from(image.as_raw()[(y * w + x) as usize]);
    let (mut xx, mut yy, mut xy) = (0f32, 0f32, 0f32);
    for v in y - 3..=y + 3 {
        for u in x - 3..=x + 3 {
            let gx = px(u + 1, v - 1) + 2.0 * px(u + 1, v) + px(u + 1, v + 1)
                - px(u - 1, v - 1)
                - 2.0 * px(u - 1, v)
                - px(u - 1, v + 1);
            let gy = px(u - 1, v + 1) + 2.0 * px(u, v + 1) + px(u + 1, v + 1)
                - px(u - 1, v - 1)
                - 2.0 * px(u, v - 1)
                - px(u + 1, v - 1);
            xx += gx * gx;
            yy += gy * gy;
            xy += gx * gy;
        }
    }
    xx * yy - xy * xy - 0.04 * (xx + yy) * (xx + yy)
}

/// The angle (radians) from the keypoint to the intensity centroid of its circular patch.
fn orientation(image: &GrayImage, x: i32, y: i32) -> f32 {
    let (w, h) = (image.width() as i32, image.height() as i32);
    debug_assert!(x >= PATCH_RADIUS && x < w - PATCH_RADIUS);
    debug_assert!(y >= PATCH_RADIUS && y < h - PATCH_RADIUS);
    let (mut m10, mut m01) = (0i64, 0i64);
    for dy in -PATCH_RADIUS..=PATCH_RADIUS {
        let reach = ((PATCH_RADIUS * PATCH_RADIUS - dy * dy) as f32).sqrt() as i32;
        for dx in -reach..=reach {
            let v = i64::from(image.as_raw()[((y + dy) * w + x + dx) as usize]);
            m10 += i64::from(dx) * v;
            m01 += i64::from(dy) * v;
        }
    }
    (m01 as f32).atan2(m10 as f32)
}

/// Orientations are rounded to one of this many angles, whose steered tests are computed
/// once (ORB rounds to 12 degrees; this is 11.25).
const ANGLES: usize = 32;

/// The 256 tests, each a pair of pixel offsets from the keypoint.
type Tests = [[(i32, i32); 2]; 256];

/// BRIEF's test pairs, rotated to each of the [`ANGLES`] orientations: 256 pairs of points
/// drawn from an isotropic Gaussian (sigma = 31/5, the paper's best distribution), each
/// coordinate within 15 / sqrt(2) so that a rotated point stays within the patch's radius,
/// from a fixed seed so that every image is described with the same tests.
fn steered_patterns() -> &'static [Tests; ANGLES] {
    static PATTERNS: OnceLock<Box<[Tests; ANGLES]>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let mut rng = fastrand::Rng::with_seed(0x7b21_ef5a);
        let sigma = (2 * PATCH_RADIUS + 1) as f32 / 5.0;
        let limit = PATCH_RADIUS as f32 / std::f32::consts::SQRT_2;
        let mut coordinate = || loop {
            // Box-Muller.
            let (u, v) = (rng.f32().max(f32::MIN_POSITIVE), rng.f32());
            let z = (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos() * sigma;
            if z.abs() <= limit {
                return z;
            }
        };
        let mut tests = [[(0.0, 0.0); 2]; 256];
        for pair in &mut tests {
            *pair = [(coordinate(), coordinate()), (coordinate(), coordinate())];
        }
        let mut patterns = Box::new([[[(0, 0); 2]; 256]; ANGLES]);
        for (bin, steered) in patterns.iter_mut().enumerate() {
            let (sin, cos) = (bin as f32 * std::f32::consts::TAU / ANGLES as f32).sin_cos();
            let rotate = |(u, v): (f32, f32)| {
                (
                    (cos * u - sin * v).round() as i32,
                    (sin * u + cos * v).round() as i32,
                )
            };
            for (out, [a, b]) in steered.iter_mut().zip(&tests) {
                *out = [rotate(*a), rotate(*b)];
            }
        }
        patterns
    })
}

/// The 256 BRIEF tests at (x, y), steered by `angle`, on the smoothed image.
fn steered_brief(smooth: &GrayImage, x: i32, y: i32, angle: f32) -> Descriptor {
    let (w, h) = (smooth.width() as i32, smooth.height() as i32);
    let turns = angle / std::f32::consts::TAU;
    let bin = ((turns * ANGLES as f32).round() as i32).rem_euclid(ANGLES as i32) as usize;
    let at = |(dx, dy): (i32, i32)| {
        // A read past a row's end would land in the next row, not panic.
        debug_assert!((0..w).contains(&(x + dx)) && (0..h).contains(&(y + dy)));
        smooth.as_raw()[((y + dy) * w + x + dx) as usize]
    };
    let mut descriptor = [0u64; 4];
    for (i, [a, b]) in steered_patterns()[bin].iter().enumerate() {
        if at(*a) < at(*b) {
            descriptor[i / 64] |= 1 << (i % 64);
        }
    }
    descriptor
}

/// A 7x7 Gaussian blur (sigma 2, as ORB smooths before its tests), edges clamped; weights
/// in 12-bit fixed point.
fn gaussian_blur(image: &GrayImage) -> GrayImage {
    const RADIUS: usize = 3;
    const ONE: u32 = 1 << 12;
    let kernel: [u32; 2 * RADIUS + 1] = {
        let raw = [-3f32, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0].map(|i| (-(i * i) / 8.0).exp());
        let sum: f32 = raw.iter().sum();
        raw.map(|k| (k / sum * ONE as f32).round() as u32)
    };
    let norm: u32 = kernel.iter().sum();
    let (w, h) = (image.width() as usize, image.height() as usize);
    let src = image.as_raw();
    let clamped = |i: usize, d: usize, n: usize| (i + d).saturating_sub(RADIUS).min(n - 1);
    let mut rows = vec![0u8; src.len()];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let sum: u32 = (0..=2 * RADIUS)
                .map(|d| kernel[d] * u32::from(row[clamped(x, d, w)]))
                .sum();
            rows[y * w + x] = ((sum + norm / 2) / norm) as u8;
        }
    }
    let mut out = GrayImage::new(w as u32, h as u32);
    let dst = out.as_mut();
    for y in 0..h {
        for x in 0..w {
            let sum: u32 = (0..=2 * RADIUS)
                .map(|d| kernel[d] * u32::from(rows[clamped(y, d, h) * w + x]))
                .sum();
            dst[y * w + x] = ((sum + norm / 2) / norm) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arc_is_nine_contiguous_circle_pixels_wrapping_around() {
        assert!(has_arc(0b1_1111_1111));
        assert!(!has_arc(0b1111_1111));
        // Bits 12..15 and 0..4: contiguous across the wrap.
        assert!(has_arc(0b1111_0000_0001_1111));
        assert!(!has_arc(0b1111_0000_0000_1111));
        // Nine set bits, but not contiguous.
        assert!(!has_arc(0b1011_1111_1100_0000 | 0b1));
    }

    /// A bright square on a dark ground: its four corners, and nothing else, are FAST
    /// corners (a straight edge has at most 7 contiguous brighter circle pixels).
    #[test]
    fn fast_finds_the_corners_of_a_square() {
        let image = GrayImage::from_fn(100, 100, |x, y| {
            image::Luma([if (30..70).contains(&x) && (30..70).contains(&y) {
                220
            } else {
                20
            }])
        });
        let corners = fast_corners(&image);
        assert_eq!(corners.len(), 4, "{corners:?}");
        for (x, y, _) in corners {
            let near = |v: i32, edge: i32| (v - edge).abs() <= 1;
            assert!(
                (near(x, 30) || near(x, 69)) && (near(y, 30) || near(y, 69)),
                "({x}, {y}) is not at a corner"
            );
        }
    }

    /// Noise has corners everywhere, up to the border; every size, down to 1x1, is described
    /// without reading outside the image, and every keypoint lies inside it.
    #[test]
    fn noise_of_any_size_is_described_within_the_image() {
        let mut rng = fastrand::Rng::with_seed(3);
        for (w, h) in [
            (1, 1),
            (31, 31),
            (33, 40),
            (40, 33),
            (64, 17),
            (300, 200),
            (900, 40),
        ] {
            let image = RgbImage::from_fn(w, h, |_, _| {
                image::Rgb([rng.u8(..), rng.u8(..), rng.u8(..)])
            });
            let features = LocalFeatures::of(&image).unwrap();
            assert_eq!(features.keypoints.len(), features.descriptors.len());
            assert!(features.len() <= MAX_FEATURES);
            let side = w.max(h) as f32;
            let shrink = (WORKING_SIDE as f32 / side).min(1.0);
            for k in &features.keypoints {
                assert!(
                    k.x >= 0.0 && k.x < w as f32 * shrink + 1.0,
                    "{w}x{h}: {k:?}"
                );
                assert!(
                    k.y >= 0.0 && k.y < h as f32 * shrink + 1.0,
                    "{w}x{h}: {k:?}"
                );
            }
            // Room for features on the first levels at least (900x40 shrinks to 512x23: none).
            if (w, h) == (300, 200) {
                assert!(features.len() > 100, "{w}x{h}: {} features", features.len());
            }
        }
    }

    #[test]
    fn orientation_points_at_the_bright_side() {
        // Brighter to the right (+x), then brighter below (+y).
        let right = GrayImage::from_fn(64, 64, |x, _| image::Luma([(x * 4) as u8]));
        let below = GrayImage::from_fn(64, 64, |_, y| image::Luma([(y * 4) as u8]));
        assert!(orientation(&right, 32, 32).abs() < 1e-3);
        let angle = orientation(&below, 32, 32);
        assert!(
            (angle - std::f32::consts::FRAC_PI_2).abs() < 1e-3,
            "{angle}"
        );
    }
}
