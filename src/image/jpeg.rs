//! JPEG through libjpeg-turbo, shrunk in the DCT domain when the caller needs fewer pixels:
//! decoding a 5120x2880 photo at 1/8 scale skips most of the inverse DCT and colour
//! conversion work and allocates 1/64 of the pixels.

use image::metadata::Orientation;
use image::RgbImage;

use super::dc_only::dc_scans_only;
use super::turbo::{Decompressor, Outcome, PixelFormat};
use super::{orient, swaps_axes, Decoded, Format, ImageError, Limits};

pub(super) fn decode(bytes: &[u8], min_side: u32, limits: &Limits) -> Result<Decoded, ImageError> {
    let mut decompressor = Decompressor::new().map_err(corrupt)?;
    let header = tolerate(bytes, decompressor.read_header(bytes))?;
    if header.precision != 8 {
        return Err(ImageError::Unsupported(format!(
            "{}-bit JPEG (only 8-bit JPEGs can be decoded)",
            header.precision
        )));
    }
    limits.check(Format::Jpeg, header.width, header.height)?;
    // Lossless JPEGs have no DCT to scale in.
    let denominator = if header.lossless {
        1
    } else {
        draft_denominator(header.width.min(header.height), min_side)
    };
    let format = if header.cmyk {
        PixelFormat::Cmyk
    } else {
        PixelFormat::Rgb
    };
    // Progressive at 1/8: the same pixels from the DC scans alone (see dc_only.rs).
    let dc_only = if denominator == 8 && header.progressive && header.dc_only_at_one_eighth() {
        dc_scans_only(bytes)
    } else {
        None
    };
    let source = dc_only.as_deref().unwrap_or(bytes);
    let (pixels, width, height) = tolerate(
        bytes,
        decompressor.decompress(source, &header, denominator, format),
    )?;
    let rgb = match format {
        PixelFormat::Rgb => pixels,
        PixelFormat::Cmyk => adobe_cmyk_to_rgb(&pixels),
    };
    let image = RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| corrupt("the decoder returned fewer pixels than the header declares"))?;
    let orientation = exif_orientation(bytes);
    let (width, height) = if swaps_axes(orientation) {
        (header.height, header.width)
    } else {
        (header.width, header.height)
    };
    Ok(Decoded {
        image: orient(image, orientation),
        width,
        height,
        format: Format::Jpeg,
    })
}

/// The DCT scale 1/d to decode at, chosen as Pillow's `Image.draft` does (so both pipelines
/// see the same pixels): the largest of 1/8, 1/4, 1/2 whose result keeps the shorter side >=
/// `min_side`, else full size.
pub(super) fn draft_denominator(short_side: u32, min_side: u32) -> u32 {
    if min_side == 0 {
        return 1;
    }
    [8u32, 4, 2]
        .into_iter()
        .find(|&d| u64::from(short_side) >= u64::from(d) * u64::from(min_side))
        .unwrap_or(1)
}

/// Accepts a result that only carries a libjpeg warning (Pillow opens such files too; the
/// warning is logged), except when the data ends early, which is reported as truncation.
fn tolerate<T>(bytes: &[u8], outcome: Outcome<T>) -> Result<T, ImageError> {
    match outcome {
        Ok((value, None)) => Ok(value),
        Ok((value, Some(warning))) if !is_truncated(bytes, &warning) => {
            tracing::warn!(%warning, "JPEG decoded despite a libjpeg warning");
            Ok(value)
        }
        Ok(_) => Err(ImageError::Truncated(Format::Jpeg)),
        Err(message) if is_truncated(bytes, &message) => Err(ImageError::Truncated(Format::Jpeg)),
        Err(message) => Err(corrupt(message)),
    }
}

/// Truncation shows as libjpeg's "Premature end of JPEG file", or (when an earlier warning or
/// an error took the message slot) as a missing end-of-image marker after the last scan.
fn is_truncated(bytes: &[u8], message: &str) -> bool {
    message.starts_with("Premature end of JPEG file") || !has_end_marker(bytes)
}

/// Whether an EOI marker (FF D9) follows the last start-of-scan marker (FF DA). An EXIF
/// thumbnail's EOI sits before the main image's scans, so it does not count.
fn has_end_marker(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        (None, Some(_)) => true,
        (_, None) => false,
    }
}

/// The decoder's reason, without TurboJPEG's "tj3Function(): " prefix.
fn corrupt(message: impl Into<String>) -> ImageError {
    let message = message.into();
    let reason = match message.split_once("(): ") {
        Some((function, rest)) if function.starts_with("tj") => rest.replace('\n', "; "),
        _ => message,
    };
    ImageError::Corrupt {
        format: Format::Jpeg,
        reason,
    }
}

/// CMYK samples to RGB as Pillow converts them. Pillow assumes Adobe's inverted polarity for
/// every CMYK JPEG (Photoshop writes them so, and Pillow writes them so), i.e. a stored 255
/// means no ink; then R = (255 - K') - (255 - K') * C' / 255 with C', K' the un-inverted inks,
/// which is `k * c / 255` on the stored values.
fn adobe_cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let k = u32::from(px[3]);
        for &c in &px[..3] {
            // Pillow's MULDIV255: a rounded a*b/255.
            let ink = (255 - u32::from(c)) * k + 128;
            let ink = ((ink >> 8) + ink) >> 8;
            rgb.push((k - ink) as u8);
        }
    }
    rgb
}

/// The EXIF orientation, from the APP1 "Exif" segment before the first scan. Unreadable EXIF
/// means "as stored": a broken tag must not cost the user their photo.
pub(super) fn exif_orientation(bytes: &[u8]) -> Orientation {
    exif_segment(bytes).map_or(Orientation::NoTransforms, super::tiff_orientation)
}

/// The TIFF payload of the first APP1 "Exif\0\0" segment (EXIF must come before the scans).
pub(crate) fn exif_segment(bytes: &[u8]) -> Option<&[u8]> {
    header_segments(bytes).find_map(|(marker, segment)| {
        (marker == 0xE1 && segment.starts_with(b"Exif\0\0")).then(|| &segment[6..])
    })
}

/// The marker segments of a JPEG from SOI up to its first scan, as (marker, payload), every
/// length bounds-checked: the walk ends at the scan, at EOI, or where the data stops making
/// sense. Standalone markers (RSTn, TEM) and 0xFF fill bytes are skipped.
pub(super) fn header_segments(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = if bytes.starts_with(&[0xFF, 0xD8]) {
        2
    } else {
        bytes.len()
    };
    std::iter::from_fn(move || loop {
        while *bytes.get(pos)? == 0xFF && *bytes.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        if *bytes.get(pos)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(pos + 1)?;
        match marker {
            0xDA | 0xD9 => return None,
            0x01 | 0xD0..=0xD7 => {
                pos += 2;
                continue;
            }
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(pos + 2)?,
            *bytes.get(pos + 3)?,
        ]));
        let segment = bytes.get(pos + 4..(pos + 2).checked_add(length)?)?;
        pos += 2 + length;
        return Some((marker, segment));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_picks_largest_reduction_keeping_min_side() {
        // 5120x2880 for a 256 short side: 2880 >= 8*256 = 2048, so 1/8 (-> 360).
        assert_eq!(draft_denominator(2880, 256), 8);
        // 1600 short side: 1600 < 2048 but >= 4*256 = 1024, so 1/4 (-> 400).
        assert_eq!(draft_denominator(1600, 256), 4);
        assert_eq!(draft_denominator(1023, 256), 2);
        assert_eq!(draft_denominator(512, 256), 2);
        assert_eq!(draft_denominator(511, 256), 1);
        assert_eq!(draft_denominator(100, 256), 1);
        assert_eq!(draft_denominator(5000, 0), 1);
    }

    #[test]
    fn cmyk_conversion_matches_pillow_formula() {
        // Stored (inverted) values: 255 = no ink. No ink at all is white, full K is black.
        assert_eq!(adobe_cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(adobe_cmyk_to_rgb(&[255, 255, 255, 0]), [0, 0, 0]);
        // Full cyan ink only: no red; green and blue untouched.
        assert_eq!(adobe_cmyk_to_rgb(&[0, 255, 255, 255]), [0, 255, 255]);
        // Half K (stored 127) with no colour ink: grey 127.
        assert_eq!(adobe_cmyk_to_rgb(&[255, 255, 255, 127]), [127, 127, 127]);
    }

    #[test]
    fn end_marker_must_follow_last_scan() {
        assert!(has_end_marker(b"\xFF\xD8\xFF\xDA..data..\xFF\xD9"));
        assert!(!has_end_marker(b"\xFF\xD8\xFF\xDA..data.."));
        // An EXIF thumbnail's EOI before the main scan does not count.
        assert!(!has_end_marker(b"\xFF\xD8thumb\xFF\xD9\xFF\xDA..data.."));
    }

    #[test]
    fn exif_segment_walk_is_bounds_checked() {
        let mut jpeg = b"\xFF\xD8\xFF\xE0\x00\x04ab\xFF\xE1".to_vec();
        let payload = b"Exif\0\0MM\0*";
        jpeg.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        jpeg.extend_from_slice(payload);
        jpeg.extend_from_slice(b"\xFF\xDA");
        assert_eq!(exif_segment(&jpeg), Some(&b"MM\0*"[..]));
        // A length running past the end, and a cut-off file, yield nothing rather than panic.
        assert_eq!(exif_segment(b"\xFF\xD8\xFF\xE1\xFF\xFFExif"), None);
        assert_eq!(exif_segment(b"\xFF\xD8\xFF"), None);
        assert_eq!(exif_segment(b"\xFF\xD8\xFF\xE0\x00\x00\xFF\xDA"), None);
    }
}

/// Real progressive photos: the DC-only fast path must give bit-identical pixels.
#[cfg(test)]
mod dc_only_tests {
    use super::super::turbo::{Decompressor, PixelFormat};
    use super::dc_scans_only;
    use std::path::PathBuf;

    #[test]
    fn dc_only_decode_is_bit_identical_on_real_progressive_photos() {
        let dir = std::env::var_os("LOOKALIKE_TESTDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/testdata"))
            .join("photos/wallpapers");
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-test-data.sh", dir.display()));
        let mut checked = 0;
        for path in entries.map(|e| e.unwrap().path()) {
            let bytes = std::fs::read(&path).unwrap();
            let mut tj = Decompressor::new().unwrap();
            let (header, _) = tj.read_header(&bytes).unwrap();
            if !header.progressive || !header.dc_only_at_one_eighth() {
                continue;
            }
            let full = tj.decompress(&bytes, &header, 8, PixelFormat::Rgb).unwrap();
            let dc = dc_scans_only(&bytes).expect("parses");
            assert!(dc.len() < bytes.len() / 2, "{}", path.display());
            let fast = tj.decompress(&dc, &header, 8, PixelFormat::Rgb).unwrap();
            assert!(full.0 == fast.0, "{} differs", path.display());
            checked += 1;
        }
        assert!(checked >= 3, "only {checked} progressive photos");
    }
}
