//! HEIC/HEIF and AVIF through libheif, the reference open-source reader of the container, with
//! the HEVC (libde265) and AV1 (dav1d or libaom) decoders the system's libheif was built with.
//!
//! A file holds several images (bursts, collections, depth maps, thumbnails): the primary one
//! is decoded, as every photo viewer shows it. libheif applies the container's rotation and
//! mirroring (`irot`/`imir`), which HEIF defines as authoritative; the EXIF orientation that
//! phones also write describes the same turn and must not be applied twice. Pictures of more
//! than 8 bits (HDR, 10-bit AVIF) come back rounded to 8.

use super::{Decoded, Format, ImageError, Limits};

#[cfg(feature = "heif")]
pub(super) fn decode(bytes: &[u8], format: Format, limits: &Limits) -> Result<Decoded, ImageError> {
    use image::{RgbImage, RgbaImage};
    use libheif_rs::{ColorSpace, HeifContext, RgbChroma};

    use super::other::composite_on_white;

    let error = |e| libheif_error(format, e);
    let context = HeifContext::read_from_bytes(bytes).map_err(error)?;
    let handle = context.primary_image_handle().map_err(error)?;
    // The coded size, checked before any pixel is decoded; a clean-aperture crop or a rotation
    // only ever shrinks or turns it.
    let (coded_width, coded_height) = (
        u32::try_from(handle.ispe_width()).unwrap_or(0),
        u32::try_from(handle.ispe_height()).unwrap_or(0),
    );
    limits.check(format, coded_width, coded_height)?;

    let alpha = handle.has_alpha_channel();
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    // Default options: interleaved 8-bit RGB(A) is what is asked for, and libheif converts
    // deeper pictures to it. (Passing options is unsafe with this binding: 0.20 frees them
    // before the decode reads them.)
    let picture = library()
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(error)?;
    let plane = picture
        .planes()
        .interleaved
        .ok_or_else(|| corrupt(format, "libheif returned no interleaved RGB plane"))?;
    let channels: usize = if alpha { 4 } else { 3 };
    if plane.storage_bits_per_pixel as usize != channels * 8 {
        return Err(corrupt(
            format,
            "libheif returned pixels of another depth than asked",
        ));
    }
    let (width, height) = (plane.width, plane.height);
    limits.check(format, width, height)?;
    // libheif pads rows to its own alignment: copy them out tightly.
    let row = width as usize * channels;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for line in plane.data.chunks(plane.stride).take(height as usize) {
        pixels.extend_from_slice(line.get(..row).ok_or_else(|| short(format))?);
    }
    let image = if alpha {
        composite_on_white(
            &RgbaImage::from_raw(width, height, pixels).ok_or_else(|| short(format))?,
        )
    } else {
        RgbImage::from_raw(width, height, pixels).ok_or_else(|| short(format))?
    };
    Ok(Decoded {
        image,
        width,
        height,
        format,
    })
}

#[cfg(not(feature = "heif"))]
pub(super) fn decode(
    _bytes: &[u8],
    format: Format,
    _limits: &Limits,
) -> Result<Decoded, ImageError> {
    Err(ImageError::Unsupported(format!(
        "this build of lookalike reads no {format} images (it was built without the `heif` \
         feature); convert it to JPEG or PNG"
    )))
}

/// libheif's global state, initialised once for the process (its plugins are loaded then).
#[cfg(feature = "heif")]
fn library() -> &'static libheif_rs::LibHeif {
    static LIBRARY: std::sync::OnceLock<libheif_rs::LibHeif> = std::sync::OnceLock::new();
    LIBRARY.get_or_init(libheif_rs::LibHeif::new)
}

/// libheif's error, in the file owner's terms.
#[cfg(feature = "heif")]
fn libheif_error(format: Format, error: libheif_rs::HeifError) -> ImageError {
    use libheif_rs::{HeifErrorCode as Code, HeifErrorSubCode as Sub};
    match (error.code, error.sub_code) {
        (_, Sub::EndOfData) => ImageError::Truncated(format),
        (_, Sub::SecurityLimitExceeded) => corrupt(
            format,
            &format!("it exceeds libheif's safety limits ({})", error.message),
        ),
        (Code::UnsupportedFeature | Code::UnsupportedFileType, Sub::UnsupportedCodec) => {
            ImageError::Unsupported(format!(
                "this {format} file's codec has no decoder in this system's libheif \
                 (install libheif's HEVC/AV1 plugins, e.g. Debian's libheif1 with libde265 \
                 and dav1d)"
            ))
        }
        (Code::UnsupportedFeature | Code::UnsupportedFileType, _) => {
            ImageError::Unsupported(format!(
                "this {format} file uses a feature libheif does not decode: {}",
                error.message
            ))
        }
        _ => corrupt(format, &format!("libheif says: {}", error.message)),
    }
}

#[cfg(feature = "heif")]
fn corrupt(format: Format, reason: &str) -> ImageError {
    ImageError::Corrupt {
        format,
        reason: reason.to_owned(),
    }
}

#[cfg(feature = "heif")]
fn short(format: Format) -> ImageError {
    corrupt(format, "libheif returned fewer pixels than the image has")
}
