//! Image decoding and preprocessing: files and bytes in, model-ready tensors out.
//!
//! Every user file goes through [`decode_file`] or [`decode_bytes`]: the content's magic bytes
//! pick the decoder (never the file name), the header's pixel count is checked against
//! [`Limits`] before any pixel memory is allocated, JPEGs are shrunk in the DCT domain when the
//! caller needs far fewer pixels than the file holds (the biggest saving on camera photos), EXIF
//! orientation is applied, and whatever the source (grey, palette, 16-bit, alpha, CMYK) the
//! result is 8-bit RGB with transparency composited on white. [`Preprocessor`] then cuts the
//! model's input from it (an 8-bit crop, see `model::input`) exactly as the classic Python
//! pipeline does.
//!
//! Bad input never panics: it comes back as a typed [`ImageError`] whose message tells the
//! user what is wrong with their file.

mod dc_only;
mod error;
pub mod facts;
mod heif;
mod jpeg;
mod other;
mod png;
mod preprocess;
mod raw;
mod sniff;
mod thumbnail;
mod turbo;
mod webp;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use error::ImageError;
pub use facts::PhotoFacts;
pub use preprocess::Preprocessor;
pub use sniff::{sniff, SNIFF_LEN};
pub use thumbnail::thumbnail_jpeg;

/// Resource limits for decoding untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most pixels (width x height, as declared by the header) an image may have.
    pub max_pixels: u64,
    /// Most bytes a file or upload may have.
    pub max_bytes: u64,
}

impl Default for Limits {
    /// 128 megapixels covers every camera sold today (the largest are ~100 MP) while capping a
    /// decode's result at ~400 MB of RGB; the decoders' own buffers come on top (up to ~11
    /// bytes a pixel for a 16-bit RGBA PNG, 19 for one a single row wide: RELIABILITY.md).
    /// 256 MiB covers any real photo file.
    fn default() -> Self {
        Limits {
            max_pixels: 128_000_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Rejects headers with no pixels or more than `max_pixels`, before anything is allocated.
    fn check(&self, format: Format, width: u32, height: u32) -> Result<(), ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Corrupt {
                format,
                reason: format!("the header says the image is {width}x{height} pixels"),
            });
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(ImageError::TooLarge {
                width,
                height,
                limit: self.max_pixels,
            });
        }
        Ok(())
    }
}

/// The image formats lookalike decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
    Gif,
    Bmp,
    Tiff,
    /// HEIC/HEIF: HEVC-coded pictures in an ISO-BMFF container (what phones write).
    Heif,
    /// AV1-coded pictures in the same container.
    Avif,
    /// A camera's raw sensor data file (CR2, CR3, NEF, ARW, DNG, ...): its embedded JPEG
    /// preview is what gets decoded.
    Raw,
}

impl Format {
    /// Whether web browsers display this format: the others are served as a JPEG rendition.
    pub fn browser_displays(self) -> bool {
        !matches!(self, Format::Tiff | Format::Heif | Format::Raw)
    }

    /// The usual file extension for content of this format (lower case, without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::WebP => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
            Format::Tiff => "tif",
            Format::Heif => "heic",
            Format::Avif => "avif",
            Format::Raw => "dng",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::WebP => "WebP",
            Format::Gif => "GIF",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
            Format::Heif => "HEIC",
            Format::Avif => "AVIF",
            Format::Raw => "RAW",
        })
    }
}

/// A decoded image, upright and in 8-bit RGB.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The pixels; possibly smaller than `width` x `height` when the decoder shrank a JPEG in
    /// the DCT domain (see `min_side` in [`decode_bytes`]).
    pub image: image::RgbImage,
    /// The original width, after EXIF orientation (what the user sees in a viewer).
    pub width: u32,
    /// The original height, after EXIF orientation.
    pub height: u32,
    pub format: Format,
}

/// Decodes the file at `path`; see [`read_file`] and [`decode_bytes`].
pub fn decode_file(path: &Path, min_side: u32, limits: &Limits) -> Result<Decoded, ImageError> {
    decode_bytes(&read_file(path, limits)?, min_side, limits)
}

/// Reads a file to decode. The byte limit is checked from the file's metadata before reading,
/// and again while reading (a file may grow, or be a device whose metadata says 0 bytes).
pub fn read_file(path: &Path, limits: &Limits) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > limits.max_bytes {
        return Err(ImageError::FileTooLarge {
            size,
            limit: limits.max_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Decodes an image held in memory (a file's content or an upload).
///
/// `min_side`: the decoder may return a smaller image than the original, as long as its shorter
/// side stays >= `min_side` (0 = always full size). JPEG shrinks in the DCT domain, by 1/2, 1/4
/// or 1/8, the largest reduction that keeps the shorter side >= `min_side` (as Pillow's `draft`
/// picks it), and so does a RAW file's JPEG preview; other formats come back at full size.
pub fn decode_bytes(bytes: &[u8], min_side: u32, limits: &Limits) -> Result<Decoded, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let size = bytes.len() as u64;
    if size > limits.max_bytes {
        return Err(ImageError::FileTooLarge {
            size,
            limit: limits.max_bytes,
        });
    }
    let Some(format) = sniff(bytes) else {
        return Err(match sniff::unsupported_format(bytes) {
            Some(name) => ImageError::Unsupported(format!(
                "{name} images cannot be decoded; convert it to JPEG or PNG"
            )),
            None => ImageError::NotAnImage,
        });
    };
    match format {
        Format::Jpeg => jpeg::decode(bytes, min_side, limits),
        Format::WebP => match webp::decode(bytes, limits)? {
            Some(still) => Ok(still),
            None => other::decode(bytes, format, limits),
        },
        Format::Heif | Format::Avif => heif::decode(bytes, format, limits),
        Format::Raw => raw::decode(bytes, min_side, limits),
        Format::Tiff if raw::is_raw_tiff(bytes) => raw::decode(bytes, min_side, limits),
        Format::Png => png::decode(bytes, limits),
        _ => other::decode(bytes, format, limits),
    }
}

/// Applies an EXIF orientation to decoded pixels, returning them upright.
fn orient(image: image::RgbImage, orientation: image::metadata::Orientation) -> image::RgbImage {
    if orientation == image::metadata::Orientation::NoTransforms {
        return image;
    }
    let mut dynamic = image::DynamicImage::ImageRgb8(image);
    dynamic.apply_orientation(orientation);
    dynamic.into_rgb8()
}

/// The orientation in an EXIF block (a TIFF structure: APP1's payload, a WebP EXIF chunk),
/// `NoTransforms` when it has none or cannot be read.
fn tiff_orientation(tiff: &[u8]) -> image::metadata::Orientation {
    use image::metadata::Orientation;
    let exif = match exif::Reader::new().read_raw(tiff.to_vec()) {
        Ok(exif) => exif,
        Err(error) => {
            tracing::debug!(%error, "ignoring unreadable EXIF data");
            return Orientation::NoTransforms;
        }
    };
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|field| field.value.get_uint(0))
        .and_then(|value| u8::try_from(value).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// Whether an orientation swaps width and height (the 90/270 degree ones).
fn swaps_axes(orientation: image::metadata::Orientation) -> bool {
    use image::metadata::Orientation::*;
    matches!(
        orientation,
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH
    )
}
