//! Still WebP through libwebp, the format's reference decoder (vendored and built by
//! `libwebp-sys`): decoding and preprocessing the word benchmark's 173 WebP photos runs at 175
//! images/s on one core, against 68 with the `image` crate's pure Rust decoder. libwebp could
//! also shrink while decoding, as JPEG does in the DCT domain; it gained nothing end to end on
//! those photos (the network is the bottleneck) and moved 21% of their vectors below a cosine of
//! 0.99 with the classic pipeline's, which decodes WebP at full size: so it decodes at full
//! size too. Animated WebP (first frame) stays with the `image` crate.
//!
//! Every chunk of the RIFF container is checked to fit in the file before either decoder sees
//! it: the `image` crate's WebP decoder allocates an EXIF chunk's declared size before reading
//! it, so a 2 KB file declaring a 4 GB chunk asked for 4 GB (found by tests/fuzz.rs; where the
//! allocation fails, the process aborts).

use image::metadata::Orientation;
use image::{RgbImage, RgbaImage};
use libwebp_sys as webp;

use super::other::composite_on_white;
use super::{orient, swaps_axes, tiff_orientation, Decoded, Format, ImageError, Limits};

/// Decodes a still WebP; None for an animation, which the caller decodes otherwise.
pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Option<Decoded>, ImageError> {
    let chunks = chunks(bytes)?;
    let mut config =
        webp::WebPDecoderConfig::new().map_err(|()| corrupt("libwebp refused to start"))?;
    // SAFETY: `bytes` is a live slice of the given length; `config.input` is a plain struct
    // that libwebp fills in.
    let status = unsafe { webp::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut config.input) };
    check(status)?;
    let features = config.input;
    if features.has_animation != 0 {
        return Ok(None);
    }
    let (width, height) = (
        u32::try_from(features.width).map_err(|_| corrupt("negative width"))?,
        u32::try_from(features.height).map_err(|_| corrupt("negative height"))?,
    );
    limits.check(Format::WebP, width, height)?;
    let alpha = features.has_alpha != 0;
    let channels: usize = if alpha { 4 } else { 3 };
    let stride = width as usize * channels;
    let mut pixels = vec![0u8; stride * height as usize];
    config.output.colorspace = if alpha {
        webp::WEBP_CSP_MODE::MODE_RGBA
    } else {
        webp::WEBP_CSP_MODE::MODE_RGB
    };
    config.output.is_external_memory = 1;
    config.output.u.RGBA = webp::WebPRGBABuffer {
        rgba: pixels.as_mut_ptr(),
        stride: stride as i32,
        size: pixels.len(),
    };
    // SAFETY: the output points at `pixels`, which holds `stride` x `height` bytes, the size
    // of the picture libwebp writes, and outlives the call.
    let status = unsafe { webp::WebPDecode(bytes.as_ptr(), bytes.len(), &mut config) };
    // SAFETY: with external memory, this frees nothing of ours (only libwebp's own state).
    unsafe { webp::WebPFreeDecBuffer(&mut config.output) };
    check(status)?;
    let image = if alpha {
        let rgba =
            RgbaImage::from_raw(width, height, pixels).ok_or_else(|| corrupt("short output"))?;
        composite_on_white(&rgba)
    } else {
        RgbImage::from_raw(width, height, pixels).ok_or_else(|| corrupt("short output"))?
    };
    let orientation = chunks.iter().find(|chunk| &chunk.kind == b"EXIF").map_or(
        Orientation::NoTransforms,
        |Chunk { payload: exif, .. }| {
            // Some writers keep JPEG's "Exif\0\0" prefix in the chunk.
            tiff_orientation(exif.strip_prefix(b"Exif\0\0").unwrap_or(exif))
        },
    );
    let (width, height) = if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Some(Decoded {
        image: orient(image, orientation),
        width,
        height,
        format: Format::WebP,
    }))
}

/// A chunk of the RIFF container: its type and payload.
struct Chunk<'a> {
    kind: [u8; 4],
    payload: &'a [u8],
}

/// The chunks of a RIFF WebP file, each one checked to lie within the data.
fn chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, ImageError> {
    let mut chunks = Vec::new();
    let mut rest = bytes.get(12..).ok_or(ImageError::Truncated(Format::WebP))?;
    while rest.len() >= 8 {
        let kind = [rest[0], rest[1], rest[2], rest[3]];
        let size = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let payload = rest
            .get(8..8 + size)
            .ok_or(ImageError::Truncated(Format::WebP))?;
        chunks.push(Chunk { kind, payload });
        // Chunks are padded to an even size.
        rest = rest.get(8 + size + size % 2..).unwrap_or_default();
    }
    Ok(chunks)
}

fn check(status: webp::VP8StatusCode) -> Result<(), ImageError> {
    use webp::VP8StatusCode as S;
    match status {
        S::VP8_STATUS_OK => Ok(()),
        S::VP8_STATUS_NOT_ENOUGH_DATA => Err(ImageError::Truncated(Format::WebP)),
        S::VP8_STATUS_OUT_OF_MEMORY => Err(corrupt("out of memory")),
        S::VP8_STATUS_UNSUPPORTED_FEATURE => Err(ImageError::Unsupported(
            "this WebP file uses a feature libwebp does not decode".into(),
        )),
        other => Err(corrupt(&format!("libwebp says {other:?}"))),
    }
}

fn corrupt(reason: &str) -> ImageError {
    ImageError::Corrupt {
        format: Format::WebP,
        reason: reason.to_owned(),
    }
}
