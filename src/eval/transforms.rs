//! The copy-detection transforms (the Copydays / DISC21 idea): each turns an original photo into
//! the kind of copy found in the wild, deterministically from a seeded [`Rng`], so a benchmark
//! run can be repeated bit for bit.

use std::fmt;

use fast_image_resize as fir;
use image::{Rgb, RgbImage};

use crate::image::{decode_bytes, thumbnail_jpeg, ImageError, Limits};
use crate::index::Region;

/// One way of copying an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transform {
    /// Half the width and height.
    Downscale50,
    /// Re-encoded as a JPEG at quality 30 (blocking and ringing).
    Jpeg30,
    /// The centre 70% of each side (49% of the area), not rescaled.
    CentreCrop70,
    /// A crop of 50-90% of each side (aspect kept) at a random place, rescaled to the
    /// original size.
    RandomCrop,
    /// Rotated 5-10 degrees either way about the centre, same canvas, black corners.
    Rotate,
    /// Mirrored left to right.
    Flip,
    /// Luma only (R = G = B).
    Grayscale,
    /// Brightness and contrast each changed by 15-30%, up or down.
    BrightnessContrast,
    /// A line of white text (with a black shadow), about a tenth of the height, at a random
    /// place.
    TextOverlay,
    /// A detail cut out of the photo (see [`Transform::DETAILS`]): 2% of its area.
    Detail2,
    Detail5,
    Detail10,
    Detail20,
    Detail30,
}

/// What a transform made: the copy, and for a detail where in the original it was cut from.
#[derive(Debug, Clone)]
pub struct Copied {
    pub image: RgbImage,
    pub region: Option<Region>,
}

impl Transform {
    /// All transforms, in report order.
    pub const ALL: [Transform; 9] = [
        Transform::Downscale50,
        Transform::Jpeg30,
        Transform::CentreCrop70,
        Transform::RandomCrop,
        Transform::Rotate,
        Transform::Flip,
        Transform::Grayscale,
        Transform::BrightnessContrast,
        Transform::TextOverlay,
    ];

    /// The details (the crop benchmark, `lookalike eval crops`): a piece of 2, 5, 10, 20 or
    /// 30% of the photo's area, of a random aspect ratio (0.5 to 2) at a random place,
    /// rescaled by 0.5x to 2x (the longer side at most 1024) and re-encoded as a JPEG of
    /// quality 50 to 90: a detail cut out of a photo and passed on.
    pub const DETAILS: [Transform; 5] = [
        Transform::Detail2,
        Transform::Detail5,
        Transform::Detail10,
        Transform::Detail20,
        Transform::Detail30,
    ];

    /// Short name, used in file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Downscale50 => "downscale50",
            Transform::Jpeg30 => "jpeg30",
            Transform::CentreCrop70 => "crop70",
            Transform::RandomCrop => "randcrop",
            Transform::Rotate => "rotate",
            Transform::Flip => "flip",
            Transform::Grayscale => "gray",
            Transform::BrightnessContrast => "brightcontrast",
            Transform::TextOverlay => "text",
            Transform::Detail2 => "detail2",
            Transform::Detail5 => "detail5",
            Transform::Detail10 => "detail10",
            Transform::Detail20 => "detail20",
            Transform::Detail30 => "detail30",
        }
    }

    /// The copy of `image`; random choices (angle, crop, text place...) come from `rng`.
    pub fn apply(self, image: &RgbImage, rng: &mut Rng) -> Result<Copied, ImageError> {
        let (w, h) = image.dimensions();
        let copy = match self {
            Transform::Downscale50 => resize(image, (w / 2).max(1), (h / 2).max(1)),
            Transform::Jpeg30 => {
                let bytes = thumbnail_jpeg(image, w.max(h), 30)?;
                Ok(decode_bytes(&bytes, 0, &Limits::default())?.image)
            }
            Transform::CentreCrop70 => {
                let (cw, ch) = (scale(w, 0.7), scale(h, 0.7));
                Ok(crop(image, (w - cw) / 2, (h - ch) / 2, cw, ch))
            }
            Transform::RandomCrop => {
                let fraction = rng.uniform(0.5, 0.9);
                let (cw, ch) = (scale(w, fraction), scale(h, fraction));
                let x = rng.below(w - cw + 1);
                let y = rng.below(h - ch + 1);
                resize(&crop(image, x, y, cw, ch), w, h)
            }
            Transform::Rotate => {
                let degrees = rng.uniform(5.0, 10.0) * rng.sign();
                Ok(rotate(image, degrees.to_radians()))
            }
            Transform::Flip => Ok(image::imageops::flip_horizontal(image)),
            Transform::Grayscale => Ok(grayscale(image)),
            Transform::BrightnessContrast => {
                let brightness = 1.0 + rng.uniform(0.15, 0.3) * rng.sign();
                let contrast = 1.0 + rng.uniform(0.15, 0.3) * rng.sign();
                Ok(brightness_contrast(image, brightness, contrast))
            }
            Transform::TextOverlay => {
                let text = format!("lookalike copy #{:04}", rng.below(10_000));
                Ok(overlay_text(image, &text, rng))
            }
            Transform::Detail2 => return detail(image, 0.02, rng),
            Transform::Detail5 => return detail(image, 0.05, rng),
            Transform::Detail10 => return detail(image, 0.10, rng),
            Transform::Detail20 => return detail(image, 0.20, rng),
            Transform::Detail30 => return detail(image, 0.30, rng),
        }?;
        Ok(Copied {
            image: copy,
            region: None,
        })
    }
}

/// A detail of `area` of `image` (see [`Transform::DETAILS`]), and where it was.
fn detail(image: &RgbImage, area: f64, rng: &mut Rng) -> Result<Copied, ImageError> {
    let (w, h) = image.dimensions();
    let (fw, fh) = (f64::from(w), f64::from(h));
    // Aspect ratio log-uniform in [0.5, 2], then clamped to what fits in the photo.
    let aspect = (rng.uniform(0.5f64.ln(), 2f64.ln())).exp();
    let pixels = area * fw * fh;
    let cw = (pixels * aspect).sqrt().min(fw);
    let ch = (pixels / cw).min(fh);
    let (cw, ch) = (
        (cw.round() as u32).clamp(1, w),
        (ch.round() as u32).clamp(1, h),
    );
    let x = rng.below(w - cw + 1);
    let y = rng.below(h - ch + 1);
    let piece = crop(image, x, y, cw, ch);
    let factor = rng.uniform(0.5, 2.0).min(1024.0 / f64::from(cw.max(ch)));
    let piece = resize(
        &piece,
        ((f64::from(cw) * factor).round() as u32).max(1),
        ((f64::from(ch) * factor).round() as u32).max(1),
    )?;
    let quality = 50 + rng.below(41) as u8;
    let (pw, ph) = piece.dimensions();
    let bytes = thumbnail_jpeg(&piece, pw.max(ph), quality)?;
    Ok(Copied {
        image: decode_bytes(&bytes, 0, &Limits::default())?.image,
        region: Some(Region {
            x: x as f32 / w as f32,
            y: y as f32 / h as f32,
            w: cw as f32 / w as f32,
            h: ch as f32 / h as f32,
        }),
    })
}

impl fmt::Display for Transform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SplitMix64: a tiny, fast generator whose output is fixed by its definition (unlike a
/// library's "standard" RNG, which may change between versions), so seeds stay reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A generator for one (original, transform) pair: copies do not depend on the order or
    /// the thread in which they are made.
    pub fn for_copy(seed: u64, original: usize, transform: Transform) -> Rng {
        let mut mixer = Rng(seed ^ (original as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let stream = mixer.next_u64() ^ (transform as u64 + 1).wrapping_mul(0x9FB2_1C65_1E98_DF25);
        Rng(stream)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// +1.0 or -1.0 with equal odds.
    pub fn sign(&mut self) -> f64 {
        if self.next_u64() >> 63 == 0 {
            1.0
        } else {
            -1.0
        }
    }
}

/// `side * fraction`, at least 1 pixel.
fn scale(side: u32, fraction: f64) -> u32 {
    ((f64::from(side) * fraction).round() as u32).clamp(1, side.max(1))
}

fn crop(image: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> RgbImage {
    image::imageops::crop_imm(image, x, y, w, h).to_image()
}

/// Catmull-Rom resampling, as the model's preprocessing does.
fn resize(image: &RgbImage, w: u32, h: u32) -> Result<RgbImage, ImageError> {
    let mut out = RgbImage::new(w, h);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom));
    fir::Resizer::new()
        .resize(image, &mut out, &options)
        .map_err(|e| ImageError::Resize(e.to_string()))?;
    Ok(out)
}

/// Rotation by `radians` (counter-clockwise) about the centre, bilinear, on the same canvas;
/// what falls outside the source is black.
fn rotate(image: &RgbImage, radians: f64) -> RgbImage {
    let (w, h) = image.dimensions();
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let (sin, cos) = radians.sin_cos();
    let src = image.as_raw();
    let stride = w as usize * 3;
    let mut out = RgbImage::new(w, h);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        // Inverse mapping: where in the source does this output pixel's centre come from?
        let dx = f64::from(x) + 0.5 - cx;
        let dy = f64::from(y) + 0.5 - cy;
        let sx = cos * dx - sin * dy + cx - 0.5;
        let sy = sin * dx + cos * dy + cy - 0.5;
        if sx < 0.0 || sy < 0.0 || sx > f64::from(w - 1) || sy > f64::from(h - 1) {
            continue;
        }
        let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w as usize - 1), (y0 + 1).min(h as usize - 1));
        let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
        for c in 0..3 {
            let at = |x: usize, y: usize| f64::from(src[y * stride + x * 3 + c]);
            let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
            let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
            pixel.0[c] = (top * (1.0 - fy) + bottom * fy).round() as u8;
        }
    }
    out
}

/// ITU-R BT.601 luma in all three channels.
fn grayscale(image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        let [r, g, b] = pixel.0.map(u32::from);
        let y = ((299 * r + 587 * g + 114 * b + 500) / 1000) as u8;
        pixel.0 = [y; 3];
    }
    out
}

/// `v -> ((v - 128) * contrast + 128) * brightness`, clamped to 0..=255.
fn brightness_contrast(image: &RgbImage, brightness: f64, contrast: f64) -> RgbImage {
    let table: Vec<u8> = (0..=255u8)
        .map(|v| {
            (((f64::from(v) - 128.0) * contrast + 128.0) * brightness)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    let mut out = image.clone();
    for value in out.iter_mut() {
        *value = table[usize::from(*value)];
    }
    out
}

/// Draws `text` in the 8x8 bitmap font, scaled to about a tenth of the image height (narrower
/// if it would not fit the width), white on a black shadow, at a random place.
fn overlay_text(image: &RgbImage, text: &str, rng: &mut Rng) -> RgbImage {
    let (w, h) = image.dimensions();
    let chars = text.chars().count().max(1) as u32;
    let glyph = (h / 80).min(w * 9 / 10 / (chars * 8)).max(1);
    let (text_w, text_h) = (chars * 8 * glyph, 8 * glyph);
    let x0 = rng.below(w.saturating_sub(text_w + glyph) + 1);
    let y0 = rng.below(h.saturating_sub(text_h + glyph) + 1);
    let mut out = image.clone();
    // The shadow first, one glyph pixel down and right, then the text over it.
    for (offset, colour) in [(glyph, Rgb([0, 0, 0])), (0, Rgb([255, 255, 255]))] {
        for (i, ch) in text.chars().enumerate() {
            let bitmap = font8x8::legacy::BASIC_LEGACY
                .get(ch as usize)
                .copied()
                .unwrap_or(font8x8::legacy::NOTHING_TO_DISPLAY);
            for (row, bits) in bitmap.iter().enumerate() {
                for col in 0..8u32 {
                    // font8x8: bit 0 is the leftmost pixel of the row.
                    if (bits >> col) & 1 == 0 {
                        continue;
                    }
                    let gx = x0 + offset + (i as u32 * 8 + col) * glyph;
                    let gy = y0 + offset + row as u32 * glyph;
                    for y in gy..(gy + glyph).min(h) {
                        for x in gx..(gx + glyph).min(w) {
                            out.put_pixel(x, y, colour);
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64x40 image whose every pixel is different: red = x * 4, green = y * 6, blue varies
    /// with both, so any misplaced pixel shows.
    fn gradient() -> RgbImage {
        RgbImage::from_fn(64, 40, |x, y| {
            Rgb([(x * 4) as u8, (y * 6) as u8, ((x + y) * 2) as u8])
        })
    }

    fn apply(t: Transform, image: &RgbImage) -> RgbImage {
        t.apply(image, &mut Rng::for_copy(7, 0, t)).unwrap().image
    }

    #[test]
    fn downscale_halves_each_side() {
        assert_eq!(
            apply(Transform::Downscale50, &gradient()).dimensions(),
            (32, 20)
        );
    }

    #[test]
    fn centre_crop_keeps_the_middle_70_percent() {
        let image = gradient();
        let out = apply(Transform::CentreCrop70, &image);
        // 64 * 0.7 = 44.8 -> 45; 40 * 0.7 = 28; offsets (64-45)/2 = 9, (40-28)/2 = 6.
        assert_eq!(out.dimensions(), (45, 28));
        assert_eq!(out.get_pixel(0, 0), image.get_pixel(9, 6));
        assert_eq!(out.get_pixel(44, 27), image.get_pixel(53, 33));
    }

    #[test]
    fn random_crop_is_rescaled_to_the_original_size_and_differs() {
        let image = gradient();
        let out = apply(Transform::RandomCrop, &image);
        assert_eq!(out.dimensions(), image.dimensions());
        assert_ne!(out, image);
    }

    #[test]
    fn flip_mirrors_pixels() {
        let image = gradient();
        let out = apply(Transform::Flip, &image);
        assert_eq!(out.dimensions(), image.dimensions());
        for (x, y) in [(0, 0), (10, 5), (63, 39)] {
            assert_eq!(out.get_pixel(x, y), image.get_pixel(63 - x, y));
        }
    }

    #[test]
    fn grayscale_has_equal_channels_and_bt601_luma() {
        let out = apply(
            Transform::Grayscale,
            &RgbImage::from_pixel(3, 2, Rgb([200, 100, 50])),
        );
        // 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 59.8 + 58.7 + 5.7 = 124.2 -> 124
        assert!(out.pixels().all(|p| p.0 == [124, 124, 124]));
    }

    #[test]
    fn brightness_contrast_changes_every_level_by_15_to_30_percent() {
        // v -> ((v - 128) * c + 128) * b with b, c in 1 +- [0.15, 0.3].
        let out = brightness_contrast(&RgbImage::from_pixel(1, 1, Rgb([128, 228, 28])), 1.3, 0.7);
        // 128 -> 128 * 1.3 = 166.4; 228 -> (100 * 0.7 + 128) * 1.3 = 257.4 -> 255;
        // 28 -> (-100 * 0.7 + 128) * 1.3 = 75.4
        assert_eq!(out.get_pixel(0, 0).0, [166, 255, 75]);
        let image = RgbImage::from_pixel(8, 8, Rgb([128, 128, 128]));
        let v = f64::from(
            apply(Transform::BrightnessContrast, &image)
                .get_pixel(0, 0)
                .0[0],
        );
        // A mid-grey only sees the brightness factor.
        let change = (v / 128.0 - 1.0).abs();
        assert!(
            (0.14..=0.31).contains(&change),
            "brightness changed {change}"
        );
    }

    #[test]
    fn rotation_keeps_the_canvas_moves_pixels_and_blackens_corners() {
        let image = RgbImage::from_pixel(200, 100, Rgb([255, 255, 255]));
        let out = apply(Transform::Rotate, &image);
        assert_eq!(out.dimensions(), (200, 100));
        // The centre stays white; at 5-10 degrees a corner falls outside the source.
        assert_eq!(out.get_pixel(100, 50).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(199, 99).0, [0, 0, 0]);
        // Not a 0-degree no-op: on a gradient the centre's neighbourhood shifts.
        let g = gradient();
        assert_ne!(apply(Transform::Rotate, &g), g);
    }

    #[test]
    fn rotation_by_a_quarter_turn_is_counter_clockwise() {
        // 90 degrees on a 9x9 square, centre (4.5, 4.5): output (X, Y) samples the source at
        // (8 - Y, X), so source (x, y) lands at (y, 8 - x): the top-right corner goes to the
        // top-left, counter-clockwise as seen on screen (y down). Interior pixels only: the
        // border sits on the edge of the sampled area, where float noise may blacken it.
        let image = RgbImage::from_fn(9, 9, |x, y| Rgb([x as u8 * 20, y as u8 * 20, 0]));
        let out = rotate(&image, std::f64::consts::FRAC_PI_2);
        for y in 1..8 {
            for x in 1..8 {
                assert_eq!(out.get_pixel(y, 8 - x), image.get_pixel(x, y), "({x}, {y})");
            }
        }
    }

    #[test]
    fn text_overlay_draws_white_and_black_pixels_only() {
        let grey = Rgb([128, 128, 128]);
        let image = RgbImage::from_pixel(400, 300, grey);
        let out = apply(Transform::TextOverlay, &image);
        let white = out.pixels().filter(|p| p.0 == [255; 3]).count();
        let black = out.pixels().filter(|p| p.0 == [0; 3]).count();
        let grey_left = out.pixels().filter(|p| **p == grey).count();
        assert!(white > 100 && black > 100, "white {white}, black {black}");
        assert_eq!(white + black + grey_left, 400 * 300);
        // Text covers a band, not the picture.
        assert!(grey_left > 400 * 300 * 3 / 4);
    }

    #[test]
    fn jpeg30_keeps_the_size_and_loses_detail() {
        let image = gradient();
        let out = apply(Transform::Jpeg30, &image);
        assert_eq!(out.dimensions(), image.dimensions());
        assert_ne!(out, image);
    }

    #[test]
    fn the_same_seed_gives_the_same_copy_and_another_seed_another() {
        let image = gradient();
        for t in Transform::ALL.into_iter().chain(Transform::DETAILS) {
            let a = t.apply(&image, &mut Rng::for_copy(7, 3, t)).unwrap();
            let b = t.apply(&image, &mut Rng::for_copy(7, 3, t)).unwrap();
            assert_eq!(
                (a.image, a.region),
                (b.image, b.region),
                "{t} is not deterministic"
            );
        }
        let a = apply(Transform::RandomCrop, &image);
        let b = Transform::RandomCrop
            .apply(&image, &mut Rng::for_copy(8, 0, Transform::RandomCrop))
            .unwrap()
            .image;
        assert_ne!(a, b);
    }

    #[test]
    fn a_detail_is_its_share_of_the_area_cut_from_where_its_region_says() {
        // A photo whose every pixel says where it is: the detail's pixels give its place away.
        let image = RgbImage::from_fn(400, 300, |x, y| {
            Rgb([(x / 2) as u8, (y * 255 / 299) as u8, 0])
        });
        for (t, area) in Transform::DETAILS
            .into_iter()
            .zip([0.02, 0.05, 0.10, 0.20, 0.30])
        {
            for seed in 0..5 {
                let copy = t.apply(&image, &mut Rng::for_copy(seed, 1, t)).unwrap();
                let region = copy.region.expect("a detail has a region");
                assert!(
                    (f64::from(region.area()) - area).abs() < area * 0.05 + 0.002,
                    "{t}: area {}",
                    region.area()
                );
                assert!(region.x >= 0.0 && region.x + region.w <= 1.0001);
                assert!(region.y >= 0.0 && region.y + region.h <= 1.0001);
                let aspect = (region.w * 400.0) / (region.h * 300.0);
                assert!((0.49..=2.05).contains(&aspect), "{t}: aspect {aspect}");
                // The detail's centre pixel comes from the region's centre (JPEG-blurred).
                let (w, h) = copy.image.dimensions();
                let centre = copy.image.get_pixel(w / 2, h / 2).0;
                let expected_x = (region.x + region.w / 2.0) * 400.0 / 2.0;
                let expected_y = (region.y + region.h / 2.0) * 255.0;
                assert!(
                    (f32::from(centre[0]) - expected_x).abs() < 12.0,
                    "{t}: {centre:?}"
                );
                assert!(
                    (f32::from(centre[1]) - expected_y).abs() < 12.0,
                    "{t}: {centre:?}"
                );
            }
        }
    }

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let u = rng.uniform(5.0, 10.0);
            assert!((5.0..10.0).contains(&u));
            assert!(rng.below(7) < 7);
        }
        assert_eq!(rng.below(0), 0);
    }
}
