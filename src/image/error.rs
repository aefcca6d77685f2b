//! Why an image could not be decoded, worded for the person who owns the file.

use super::Format;

/// Everything that can go wrong turning a user's file into pixels.
///
/// Messages describe what is wrong with the *file*, not with lookalike, and leave out the path:
/// callers know which file they were reading and prefix it.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Zero bytes: nothing to decode (often a failed copy or download).
    #[error("the file is empty (0 bytes)")]
    Empty,

    /// The magic bytes match no image format at all (e.g. a text file named `.jpg`).
    #[error(
        "not an image: the content is not JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF or camera RAW data"
    )]
    NotAnImage,

    /// A real image in a format (or a format feature) lookalike cannot decode.
    #[error("unsupported image: {0}")]
    Unsupported(String),

    /// The data stops before the image does.
    #[error(
        "the {0} image is truncated: the file ends before the image data does \
         (probably cut off while copying or downloading)"
    )]
    Truncated(Format),

    /// The data is damaged; `reason` is the decoder's own explanation.
    #[error("the {format} image is corrupt: {reason}")]
    Corrupt { format: Format, reason: String },

    /// The header declares more pixels than [`super::Limits::max_pixels`] allows; rejected
    /// before any pixel memory is allocated.
    #[error(
        "the image is too large: {width}x{height} pixels is more than the limit of {limit} pixels"
    )]
    TooLarge { width: u32, height: u32, limit: u64 },

    /// The file is bigger than [`super::Limits::max_bytes`]; rejected before it is read.
    #[error("the file is too large: {size} bytes is more than the limit of {limit} bytes")]
    FileTooLarge { size: u64, limit: u64 },

    /// Reading the file failed (missing, unreadable, a directory, ...).
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),

    /// Resizing failed (a degenerate image; carries the resizer's reason).
    #[error("could not resize the image: {0}")]
    Resize(String),

    /// Encoding a thumbnail failed (not the user's fault; carries the encoder's reason).
    #[error("could not encode the thumbnail: {0}")]
    Encode(String),
}
