//! PNG, WebP, GIF (first frame), BMP and TIFF through the `image` crate, normalised to 8-bit
//! RGB on white.

use std::io::{Cursor, ErrorKind};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage, RgbaImage};

use super::{orient, swaps_axes, Decoded, Format, ImageError, Limits};

pub(super) fn decode(bytes: &[u8], format: Format, limits: &Limits) -> Result<Decoded, ImageError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    reader.limits(decoder_limits(limits));
    // Reads the header only: no pixel memory yet.
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| decode_error(format, e, None))?;
    let (width, height) = decoder.dimensions();
    limits.check(format, width, height)?;
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

/// The orientation a file's metadata asks for (none when unreadable): the header and metadata
/// chunks are read, not the pixels.
pub(super) fn orientation_of(bytes: &[u8], format: Format) -> Orientation {
    let reader = image::ImageReader::with_format(Cursor::new(bytes), image_format(format));
    reader
        .into_decoder()
        .and_then(|mut decoder| decoder.orientation())
        .unwrap_or_else(|error| {
            tracing::debug!(%error, "ignoring unreadable orientation metadata");
            Orientation::NoTransforms
        })
}

fn image_format(format: Format) -> ImageFormat {
    match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::WebP => ImageFormat::WebP,
        Format::Gif => ImageFormat::Gif,
        Format::Bmp => ImageFormat::Bmp,
        Format::Tiff => ImageFormat::Tiff,
    }
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
pub(super) fn to_rgb_on_white(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        image if image.color().has_alpha() => composite_on_white(&image.into_rgba8()),
        image => image.into_rgb8(),
    }
}

pub(super) fn composite_on_white(rgba: &RgbaImage) -> RgbImage {
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(px[3]);
        for c in 0..3 {
            let blended = u32::from(px[c]) * alpha + 255 * (255 - alpha);
            out[c] = ((blended + 127) / 255) as u8;
        }
    }
    rgb
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

    #[test]
    fn eof_wording_is_recognised() {
        assert!(mentions_eof("Unexpected end of data"));
        assert!(mentions_eof("failed to fill whole buffer: unexpected EOF"));
        assert!(!mentions_eof("CRC error: expected 0x1 have 0x2"));
    }
}
