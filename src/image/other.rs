//! Animated WebP (first frame), GIF (first frame), BMP and TIFF through the `image` crate, and
//! the conversions every decoder shares: normalised to 8-bit RGB on white.

use std::io::{Cursor, ErrorKind};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage, RgbaImage};

use super::{orient, swaps_axes, Decoded, Format, ImageError, Limits};

pub(super) fn decode(bytes: &[u8], format: Format, limits: &Limits) -> Result<Decoded, ImageError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format)?);
    reader.limits(decoder_limits(limits));
    // Reads the header only: no pixel memory yet.
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(format, e, None))?;
    let (width, height) = decoder.dimensions();
    limits.check(format, width, height)?;
    if format == Format::Gif {
        // The decoder builds the first frame at its own size before cropping it to the
        // screen: a 64x48 screen may hold a 15000x15000 frame (tests/fuzz.rs found it).
        if let Some((frame_width, frame_height)) = gif_first_frame_size(bytes) {
            limits.check(format, frame_width, frame_height)?;
        }
    }
    let orientation = decoder.orientation().unwrap_or_else(|error| {
        tracing::debug!(%error, "ignoring unreadable orientation metadata");
        Orientation::NoTransforms
    });
    let image = DynamicImage::from_decoder(decoder)
        .map_err(|e| decode_error(format, e, Some((width, height, limits.max_pixels))))?;
    let (width, height) = if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Decoded {
        image: orient(to_rgb_on_white(image), orientation),
        width,
        height,
        format,
    })
}

/// The size of a GIF's first frame, from its image descriptor: found by skipping the header,
/// the global colour table and the extension blocks before it, every length bounds-checked.
fn gif_first_frame_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let flags = *bytes.get(10)?;
    let mut pos = 13;
    if flags & 0x80 != 0 {
        pos += 3 << ((flags & 0x07) + 1);
    }
    loop {
        match *bytes.get(pos)? {
            // Extension: label, then data sub-blocks (a length byte each) up to an empty one.
            0x21 => {
                pos += 2;
                loop {
                    let length = usize::from(*bytes.get(pos)?);
                    pos += 1 + length;
                    if length == 0 {
                        break;
                    }
                }
            }
            0x2C => {
                let descriptor = bytes.get(pos + 1..pos + 9)?;
                let width = u16::from_le_bytes([descriptor[4], descriptor[5]]);
                let height = u16::from_le_bytes([descriptor[6], descriptor[7]]);
                return Some((u32::from(width), u32::from(height)));
            }
            _ => return None,
        }
    }
}

/// The `image` crate's name for a format it decodes.
fn image_format(format: Format) -> Result<ImageFormat, ImageError> {
    Ok(match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::WebP => ImageFormat::WebP,
        Format::Gif => ImageFormat::Gif,
        Format::Bmp => ImageFormat::Bmp,
        Format::Tiff => ImageFormat::Tiff,
        Format::Heif | Format::Avif | Format::Raw => {
            return Err(ImageError::Unsupported(format!(
                "{format} images have decoders of their own"
            )))
        }
    })
}

/// The `image` crate's own limits, a second line of defence behind our header check: they also
/// bound the decoders' internal buffers. 8 bytes per pixel allows 16-bit RGBA.
fn decoder_limits(limits: &Limits) -> image::Limits {
    let side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(side);
    decoder_limits.max_image_height = Some(side);
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    decoder_limits
}

/// Maps the `image` crate's error to ours. `size` is the header's (width, height, pixel limit)
/// once known, so a limit hit while decoding is reported with the image's size.
fn decode_error(
    format: Format,
    error: image::ImageError,
    size: Option<(u32, u32, u64)>,
) -> ImageError {
    use image::ImageError as E;
    match error {
        // The data is in memory: the only I/O error is running out of it.
        E::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => ImageError::Truncated(format),
        E::Decoding(ref e) if mentions_eof(&e.to_string()) => ImageError::Truncated(format),
        E::Limits(e) => match size {
            Some((width, height, limit)) => ImageError::TooLarge {
                width,
                height,
                limit,
            },
            None => ImageError::Corrupt {
                format,
                reason: e.to_string(),
            },
        },
        E::Unsupported(e) => ImageError::Unsupported(format!("this {format} file uses {e}")),
        other => ImageError::Corrupt {
            format,
            reason: other.to_string(),
        },
    }
}

/// Decoders that wrap their reader's EOF in a format error still say so in words.
fn mentions_eof(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "unexpected end",
        "unexpected eof",
        "end of file",
        "truncated",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Any colour type to 8-bit RGB: 16-bit samples are rounded to 8 bits (v * 255 / 65535), grey
/// is replicated, and transparency is composited on white (as the classic pipeline does, so
/// a logo on a transparent background looks the same to both).
///
/// The 8-bit layouts are converted here by hand: the `image` crate's own grey to RGB conversion
/// goes through a per-pixel f32 colour-space cast, and took a fifth of a PNG's decode time. The
/// results are the same (an 8-bit sample survives the f32 round trip exactly); the rare 16-bit
/// and float layouts still go through the `image` crate.
pub(super) fn to_rgb_on_white(image: DynamicImage) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => composite_on_white(&rgba),
        DynamicImage::ImageLuma8(grey) => rgb_from(width, height, grey.as_raw(), grey_to_rgb),
        DynamicImage::ImageLumaA8(grey_alpha) => {
            rgb_from(width, height, grey_alpha.as_raw(), grey_alpha_on_white)
        }
        image if image.color().has_alpha() => composite_on_white(&image.into_rgba8()),
        image => image.into_rgb8(),
    }
}

pub(super) fn composite_on_white(rgba: &RgbaImage) -> RgbImage {
    rgb_from(rgba.width(), rgba.height(), rgba.as_raw(), rgba_on_white)
}

/// A new `width` x `height` RGB image, filled from `samples` by one of the row converters below.
fn rgb_from(width: u32, height: u32, samples: &[u8], convert: fn(&[u8], &mut [u8])) -> RgbImage {
    let mut rgb = RgbImage::new(width, height);
    convert(samples, &mut rgb);
    rgb
}

/// Colour sample `c` with opacity `alpha`, composited on white and rounded:
/// (c * alpha + 255 * (255 - alpha)) / 255. Opaque samples come back unchanged.
#[inline(always)]
fn on_white(c: u8, alpha: u8) -> u8 {
    let alpha = u32::from(alpha);
    ((u32::from(c) * alpha + 255 * (255 - alpha) + 127) / 255) as u8
}

/// 8-bit RGBA samples to RGB on white: `rgb` takes 3 bytes for each 4 of `rgba` (whole pixels,
/// any number of them, e.g. one row). Pictures with an alpha channel are mostly opaque or
/// fully transparent in places (a photo; a cut-out on a transparent background), so runs of
/// 16 opaque pixels are copied and runs of 16 transparent ones made white, with no arithmetic
/// (the result is the same).
pub(super) fn rgba_on_white(rgba: &[u8], rgb: &mut [u8]) {
    const RUN: usize = 16;
    let (runs_in, rest_in) = rgba.as_chunks::<{ 4 * RUN }>();
    let (runs_out, rest_out) = rgb.as_chunks_mut::<{ 3 * RUN }>();
    for (run_in, run_out) in runs_in.iter().zip(runs_out.iter_mut()) {
        let pixels_in = run_in.as_chunks::<4>().0;
        // Alpha is the top byte of each pixel read as a little-endian word.
        let (all, any) = pixels_in.iter().fold((u32::MAX, 0), |(all, any), px| {
            let word = u32::from_le_bytes(*px);
            (all & word, any | word)
        });
        if all >> 24 == 255 {
            for (out, px) in run_out.as_chunks_mut::<3>().0.iter_mut().zip(pixels_in) {
                *out = [px[0], px[1], px[2]];
            }
        } else if any >> 24 == 0 {
            *run_out = [255; 3 * RUN];
        } else {
            blend_on_white(run_in, run_out);
        }
    }
    blend_on_white(rest_in, rest_out);
}

fn blend_on_white(rgba: &[u8], rgb: &mut [u8]) {
    let pixels_in = rgba.as_chunks::<4>().0;
    for (out, px) in rgb.as_chunks_mut::<3>().0.iter_mut().zip(pixels_in) {
        *out = [
            on_white(px[0], px[3]),
            on_white(px[1], px[3]),
            on_white(px[2], px[3]),
        ];
    }
}

/// 8-bit grey samples to RGB: each is replicated.
pub(super) fn grey_to_rgb(grey: &[u8], rgb: &mut [u8]) {
    for (out, &g) in rgb.as_chunks_mut::<3>().0.iter_mut().zip(grey) {
        *out = [g; 3];
    }
}

/// 8-bit grey + alpha samples to RGB on white.
pub(super) fn grey_alpha_on_white(grey_alpha: &[u8], rgb: &mut [u8]) {
    let pixels_in = grey_alpha.as_chunks::<2>().0;
    for (out, &[g, alpha]) in rgb.as_chunks_mut::<3>().0.iter_mut().zip(pixels_in) {
        *out = [on_white(g, alpha); 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{LumaA, Rgba};

    #[test]
    fn alpha_composites_on_white() {
        let mut rgba = RgbaImage::new(3, 1);
        rgba.put_pixel(0, 0, Rgba([10, 20, 30, 255])); // opaque: unchanged
        rgba.put_pixel(1, 0, Rgba([10, 20, 30, 0])); // transparent: white
        rgba.put_pixel(2, 0, Rgba([0, 0, 0, 128])); // half black over white: ~127
        let rgb = to_rgb_on_white(DynamicImage::ImageRgba8(rgba));
        assert_eq!(rgb.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(2, 0).0, [127, 127, 127]);
    }

    #[test]
    fn grey_alpha_and_sixteen_bit_become_rgb8() {
        let la = image::GrayAlphaImage::from_pixel(1, 1, LumaA([100, 0]));
        assert_eq!(
            to_rgb_on_white(DynamicImage::ImageLumaA8(la))
                .get_pixel(0, 0)
                .0,
            [255, 255, 255]
        );
        // 16-bit: 65535 -> 255, 32896 (= 128 * 257) -> 128, 257 -> 1.
        let mut grey16 = image::ImageBuffer::<image::Luma<u16>, _>::new(3, 1);
        grey16.put_pixel(0, 0, image::Luma([65535]));
        grey16.put_pixel(1, 0, image::Luma([32896]));
        grey16.put_pixel(2, 0, image::Luma([257]));
        let rgb = to_rgb_on_white(DynamicImage::ImageLuma16(grey16));
        let values: Vec<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
        assert_eq!(values, [[255; 3], [128; 3], [1; 3]]);
    }

    /// The conversions as they were written before the hand-written ones: the `image` crate's
    /// own casts to RGB(A) and a per-pixel composite.
    fn reference_rgb(image: &DynamicImage) -> Vec<u8> {
        if !image.color().has_alpha() {
            return image.to_rgb8().into_raw();
        }
        let rgba = image.to_rgba8();
        let mut rgb = Vec::with_capacity(rgba.as_raw().len() / 4 * 3);
        for px in rgba.pixels() {
            let alpha = u32::from(px[3]);
            for c in 0..3 {
                let blended = u32::from(px[c]) * alpha + 255 * (255 - alpha);
                rgb.push(((blended + 127) / 255) as u8);
            }
        }
        rgb
    }

    #[test]
    fn hand_written_conversions_match_the_image_crate_for_every_sample() {
        // Every grey level; every (grey, alpha) pair.
        let grey = image::GrayImage::from_fn(256, 1, |x, _| image::Luma([x as u8]));
        let grey_alpha = image::GrayAlphaImage::from_fn(256, 256, |x, y| LumaA([x as u8, y as u8]));
        // Every (colour, alpha) pair in each channel, in rows 61 pixels wide (runs of 16 and a
        // shorter remainder), every third row opaque.
        let rgba = RgbaImage::from_fn(61, 1614, |x, y| {
            let (c, alpha) = match y % 3 {
                0 => (x as u8, 255),
                _ => {
                    let i = (y - y / 3 - 1) * 61 + x;
                    ((i % 256) as u8, (i / 256 % 256) as u8)
                }
            };
            Rgba([c, c.wrapping_mul(7), 255 - c, alpha])
        });
        for image in [
            DynamicImage::ImageLuma8(grey),
            DynamicImage::ImageLumaA8(grey_alpha),
            DynamicImage::ImageRgba8(rgba),
        ] {
            let expected = reference_rgb(&image);
            let (width, height) = (image.width(), image.height());
            let rgb = to_rgb_on_white(image);
            assert_eq!(rgb.dimensions(), (width, height));
            assert!(rgb.as_raw() == &expected, "{width}x{height} differs");
        }
    }

    #[test]
    fn composite_copies_opaque_runs_whitens_transparent_ones_and_blends_the_rest() {
        // 72 pixels: 16 opaque, 16 with one transparent pixel among them, 16 transparent, 16
        // transparent but one, 8 left over.
        let mut rgba = RgbaImage::from_pixel(72, 1, Rgba([10, 20, 30, 255]));
        rgba.put_pixel(20, 0, Rgba([10, 20, 30, 0]));
        for x in 32..64 {
            rgba.put_pixel(x, 0, Rgba([10, 20, 30, 0]));
        }
        rgba.put_pixel(50, 0, Rgba([0, 0, 0, 128]));
        rgba.put_pixel(71, 0, Rgba([0, 0, 0, 128]));
        let rgb = composite_on_white(&rgba);
        for x in 0..72 {
            let expected = match x {
                50 | 71 => [127; 3],
                20 | 32..64 => [255; 3],
                _ => [10, 20, 30],
            };
            assert_eq!(rgb.get_pixel(x, 0).0, expected, "pixel {x}");
        }
    }

    #[test]
    fn eof_wording_is_recognised() {
        assert!(mentions_eof("Unexpected end of data"));
        assert!(mentions_eof("failed to fill whole buffer: unexpected EOF"));
        assert!(!mentions_eof("CRC error: expected 0x1 have 0x2"));
    }
}
