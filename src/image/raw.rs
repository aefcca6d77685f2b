//! Camera RAW files (CR2, CR3, NEF, ARW, DNG, RAF, RW2, ...): what gets decoded is the JPEG
//! preview the camera embeds, the largest one, turned upright. It is the camera's own
//! rendering of the photo, what the photographer saw on its screen; developing the sensor data
//! instead would need demosaicing and per-camera colour science, at many times the cost.
//!
//! The containers are parsed here, by hand: no maintained, permissively licensed crate
//! extracts the previews (rawler and rawloader are LGPL and decode sensor data). Every offset
//! and length read from the file is checked against the data, and every walk is capped, so a
//! hostile file costs little and cannot make us read out of bounds or loop.

use image::metadata::Orientation;

use super::{orient, swaps_axes, Decoded, Format, ImageError, Limits};

/// The smallest preview worth indexing, on its shorter side: the model looks at 224-260 px,
/// so anything smaller would be upscaled into mush (and is a thumbnail, not a preview).
const MIN_PREVIEW_SIDE: u32 = 256;

/// At most this many IFDs are read from one file (real RAW files have fewer than ten).
const MAX_IFDS: usize = 32;
/// At most this many offsets are followed from one SubIFDs tag.
const MAX_SUB_IFDS: u32 = 8;
/// At most this many ISO-BMFF boxes are looked at on one level (a CR3 has about fifteen).
const MAX_BOXES: usize = 64;

// TIFF tags read here.
const NEW_SUBFILE_TYPE: u16 = 0x00FE;
const COMPRESSION: u16 = 0x0103;
const PHOTOMETRIC: u16 = 0x0106;
const STRIP_OFFSETS: u16 = 0x0111;
const ORIENTATION: u16 = 0x0112;
const STRIP_BYTE_COUNTS: u16 = 0x0117;
const SUB_IFDS: u16 = 0x014A;
const JPEG_OFFSET: u16 = 0x0201;
const JPEG_LENGTH: u16 = 0x0202;
/// Panasonic RW2's JpgFromRaw: the preview itself, as an UNDEFINED value.
const PANASONIC_JPEG: u16 = 0x002E;
const DNG_VERSION: u16 = 0xC612;

/// PhotometricInterpretation of sensor data: CFA (a Bayer mosaic) and LinearRaw.
const SENSOR_PHOTOMETRIC: [u32; 2] = [32803, 34892];

/// Canon CR3's metadata box (`moov/uuid`: CMT1 is its IFD0, THMB a 160x120 thumbnail) and
/// its top-level preview box (`uuid` holding PRVW, a 1620x1080 JPEG).
const CR3_METADATA: [u8; 16] = *b"\x85\xc0\xb6\x87\x82\x0f\x11\xe0\x81\x11\xf4\xce\x46\x2b\x6a\x48";
const CR3_PREVIEW: [u8; 16] = *b"\xea\xf4\x2b\x5e\x1c\x98\x4b\x88\xb9\xfb\xb7\xdc\x40\x6e\x4d\x16";

/// Whether a file with a plain TIFF signature is a camera's raw file (NEF, ARW, DNG, PEF, ...):
/// a DNGVersion tag, or an IFD of sensor data (CFA or LinearRaw), in IFD0, the IFDs chained
/// after it or their SubIFDs. Reads a few directories, never pixel data.
pub(super) fn is_raw_tiff(bytes: &[u8]) -> bool {
    let Some((tiff, first)) = Tiff::new(bytes) else {
        return false;
    };
    tiff.ifds(first)
        .0
        .iter()
        .any(|(_, ifd)| ifd.dng || ifd.holds_sensor_data())
}

/// Decodes the largest embedded JPEG preview of a RAW file, upright.
pub(super) fn decode(bytes: &[u8], min_side: u32, limits: &Limits) -> Result<Decoded, ImageError> {
    let found = find(bytes);
    let Some(preview) = largest(&found.previews) else {
        return Err(found.damage.unwrap_or_else(|| {
            ImageError::Unsupported(
                "this RAW file has no embedded JPEG preview to index; export it as JPEG from \
                 a RAW developer"
                    .into(),
            )
        }));
    };
    if preview.width.min(preview.height) < MIN_PREVIEW_SIDE {
        // A cut-off file explains a missing big preview better than its small thumbnail does.
        return Err(found.damage.unwrap_or_else(|| {
            ImageError::Unsupported(format!(
                "this RAW file's largest embedded preview is {}x{} pixels, too small to index \
                 (at least {MIN_PREVIEW_SIDE} on the shorter side is needed); export it as JPEG \
                 from a RAW developer",
                preview.width, preview.height
            ))
        }));
    }
    tracing::debug!(
        width = preview.width,
        height = preview.height,
        candidates = found.previews.len(),
        "decoding a RAW file's largest JPEG preview"
    );
    decode_preview(preview.jpeg, found.orientation, min_side, limits)
}

/// Decodes a preview and turns it upright. `jpeg::decode` already applies the preview's own
/// EXIF orientation; the RAW's applies only when the preview has none (never both).
fn decode_preview(
    jpeg: &[u8],
    raw_orientation: Orientation,
    min_side: u32,
    limits: &Limits,
) -> Result<Decoded, ImageError> {
    let preview = super::jpeg::decode(jpeg, min_side, limits).map_err(said_of_raw)?;
    let orientation = if has_own_orientation(jpeg) {
        Orientation::NoTransforms
    } else {
        raw_orientation
    };
    let (width, height) = if swaps_axes(orientation) {
        (preview.height, preview.width)
    } else {
        (preview.width, preview.height)
    };
    Ok(Decoded {
        image: orient(preview.image, orientation),
        width,
        height,
        format: Format::Raw,
    })
}

/// Whether the preview's EXIF asks for a turn or flip, read exactly as `jpeg::decode` reads
/// it (kamadak-exif, IFD0's Orientation), so that the two never disagree on who turned it.
fn has_own_orientation(jpeg: &[u8]) -> bool {
    super::jpeg::exif_orientation(jpeg) != Orientation::NoTransforms
}

/// The preview decoder's errors, said of the RAW file (the user never saw a JPEG).
fn said_of_raw(error: ImageError) -> ImageError {
    match error {
        ImageError::Truncated(Format::Jpeg) => ImageError::Truncated(Format::Raw),
        ImageError::Corrupt {
            format: Format::Jpeg,
            reason,
        } => ImageError::Corrupt {
            format: Format::Raw,
            reason: format!("its embedded JPEG preview is damaged: {reason}"),
        },
        other => other,
    }
}

/// What a container offers: the JPEG streams it points at (not yet looked into), the
/// orientation its metadata gives the photo, and the first damage met on the way, which
/// explains a failure when no usable preview is left.
struct Found<'a> {
    previews: Vec<&'a [u8]>,
    orientation: Orientation,
    damage: Option<ImageError>,
}

impl<'a> Found<'a> {
    fn new() -> Self {
        Found {
            previews: Vec::new(),
            orientation: Orientation::NoTransforms,
            damage: None,
        }
    }

    fn note(&mut self, damage: ImageError) {
        self.damage.get_or_insert(damage);
    }

    /// Adds `data[offset..offset + length]`, or notes truncation when it runs past the end.
    fn add(&mut self, data: &'a [u8], offset: u64, length: u64) {
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(length).ok())
            .and_then(|(start, length)| data.get(start..start.checked_add(length)?));
        match range {
            Some(jpeg) => self.previews.push(jpeg),
            None => self.note(truncated()),
        }
    }
}

fn truncated() -> ImageError {
    ImageError::Truncated(Format::Raw)
}

fn corrupt(reason: &str) -> ImageError {
    ImageError::Corrupt {
        format: Format::Raw,
        reason: reason.into(),
    }
}

/// The previews of a RAW file, by container: Fujifilm's RAF header, Canon's CR3 (ISO-BMFF),
/// else the TIFF family (CR2, NEF, ARW, DNG, PEF, ORF, RW2, ...).
fn find(bytes: &[u8]) -> Found<'_> {
    if bytes.starts_with(b"FUJIFILMCCD-RAW") {
        raf(bytes)
    } else if bytes.get(4..8) == Some(b"ftyp") {
        cr3(bytes)
    } else {
        tiff(bytes)
    }
}

/// A JPEG that can be decoded as a preview, with its size from its frame header.
struct Preview<'a> {
    jpeg: &'a [u8],
    width: u32,
    height: u32,
}

/// The preview with the most pixels, among the candidates that are 8-bit Huffman-coded JPEGs
/// (this also rules out the lossless JPEG that CR2 and DNG store sensor data in).
fn largest<'a>(candidates: &[&'a [u8]]) -> Option<Preview<'a>> {
    candidates
        .iter()
        .filter_map(|&jpeg| {
            let (width, height) = frame_size(jpeg)?;
            Some(Preview {
                jpeg,
                width,
                height,
            })
        })
        .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
}

/// The width and height in a JPEG's frame header (SOF0-2: baseline, extended, progressive,
/// 8-bit); `None` for anything else, including a frame of another kind or no frame before the
/// scan.
fn frame_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    let (marker, segment) = super::jpeg::header_segments(jpeg).find(
        |(marker, _)| matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF),
    )?;
    // Lossless, hierarchical and arithmetic-coded frames: not a preview.
    if !matches!(marker, 0xC0..=0xC2) {
        return None;
    }
    let &[precision, h1, h0, w1, w0, ..] = segment else {
        return None;
    };
    let (width, height) = (
        u32::from(u16::from_be_bytes([w1, w0])),
        u32::from(u16::from_be_bytes([h1, h0])),
    );
    (precision == 8 && width > 0 && height > 0).then_some((width, height))
}

/// Fujifilm RAF: a fixed header whose big-endian u32s at 84 and 88 are the JPEG preview's
/// offset and length. Its orientation is in that JPEG's own EXIF.
fn raf(bytes: &[u8]) -> Found<'_> {
    let mut found = Found::new();
    let be_u32 = |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    match (be_u32(84), be_u32(88)) {
        (Some(offset), Some(length)) => found.add(bytes, offset.into(), length.into()),
        _ => found.note(truncated()),
    }
    found
}

/// Canon CR3 (ISO-BMFF): the PRVW JPEG in the top-level preview `uuid` box; the 160x120
/// THMB in `moov`'s metadata box only when there is no PRVW; the orientation from CMT1,
/// the TIFF IFD0 in that same box.
fn cr3(bytes: &[u8]) -> Found<'_> {
    let mut found = Found::new();
    let mut thumbnail = None;
    for_each_box(bytes, &mut found, |kind, body, found| match kind {
        b"moov" => for_each_box(body, found, |kind, body, found| {
            if let (b"uuid", Some(children)) = (kind, body.strip_prefix(&CR3_METADATA)) {
                for_each_box(children, found, |kind, body, found| match kind {
                    b"CMT1" => {
                        if let Some(value) = Tiff::new(body)
                            .and_then(|(tiff, first)| tiff.ifd(first))
                            .and_then(|ifd| ifd.orientation)
                        {
                            found.orientation = orientation(value);
                        }
                    }
                    // u32 flags, u16 width, u16 height, u32 length, u32, then the JPEG.
                    b"THMB" => thumbnail = Some(body),
                    _ => {}
                });
            }
        }),
        b"uuid" => {
            // The preview box: 8 bytes (version, count) before its PRVW child.
            if let Some(children) = body.strip_prefix(&CR3_PREVIEW) {
                for_each_box(
                    children.get(8..).unwrap_or_default(),
                    found,
                    |kind, body, found| {
                        // u32, u16, u16 width, u16 height, u16, u32 length, then the JPEG.
                        if kind == b"PRVW" {
                            canon_jpeg(found, body, 12);
                        }
                    },
                );
            }
        }
        _ => {}
    });
    if let (true, Some(body)) = (found.previews.is_empty(), thumbnail) {
        canon_jpeg(&mut found, body, 8);
    }
    found
}

/// The JPEG at byte 16 of a Canon PRVW or THMB box, its length a big-endian u32 at `length_at`.
fn canon_jpeg<'a>(found: &mut Found<'a>, body: &'a [u8], length_at: usize) {
    match body.get(length_at..length_at + 4) {
        Some(length) => {
            let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]);
            found.add(body, 16, length.into());
        }
        None => found.note(truncated()),
    }
}

/// Calls `visit` with the type and payload of each ISO-BMFF box in `data`, up to MAX_BOXES;
/// a box that does not fit ends the walk and is noted as damage.
fn for_each_box<'a>(
    data: &'a [u8],
    found: &mut Found<'a>,
    mut visit: impl FnMut(&[u8; 4], &'a [u8], &mut Found<'a>),
) {
    let mut rest = data;
    for _ in 0..MAX_BOXES {
        if rest.is_empty() {
            return;
        }
        match split_box(rest) {
            Ok(b) => {
                visit(&b.kind, b.payload, found);
                rest = b.rest;
            }
            Err(damage) => return found.note(damage),
        }
    }
}

/// An ISO-BMFF box: its type, its payload, and the data that follows it.
struct Bmff<'a> {
    kind: [u8; 4],
    payload: &'a [u8],
    rest: &'a [u8],
}

/// The first box of `data`. Size 1 means a 64-bit size follows the type; size 0, that the box
/// runs to the end.
fn split_box(data: &[u8]) -> Result<Bmff<'_>, ImageError> {
    let header = data.get(..8).ok_or_else(truncated)?;
    let kind = [header[4], header[5], header[6], header[7]];
    let (header_len, size) = match u32::from_be_bytes([header[0], header[1], header[2], header[3]])
    {
        0 => (8, data.len() as u64),
        1 => {
            let large = data.get(8..16).ok_or_else(truncated)?;
            (
                16,
                u64::from_be_bytes(large.try_into().map_err(|_| truncated())?),
            )
        }
        size => (8, u64::from(size)),
    };
    if size < header_len as u64 {
        return Err(corrupt("a box is smaller than its own header"));
    }
    let end = usize::try_from(size)
        .ok()
        .filter(|&end| end <= data.len())
        .ok_or_else(truncated)?;
    Ok(Bmff {
        kind,
        payload: &data[header_len..end],
        rest: &data[end..],
    })
}

/// The TIFF family: JPEG streams pointed at by JPEGInterchangeFormat/Length (NEF's
/// JpgFromRaw, ARW's and PEF's previews, thumbnails), by Panasonic's JpgFromRaw tag, or held
/// as the single strip of a JPEG-compressed IFD (CR2's IFD0, DNG's previews), in every IFD
/// reachable from IFD0. Orientation: IFD0's.
fn tiff(bytes: &[u8]) -> Found<'_> {
    let mut found = Found::new();
    let Some((tiff, first)) = Tiff::new(bytes) else {
        found.note(corrupt("the file starts like no known RAW format"));
        return found;
    };
    let (ifds, damaged) = tiff.ifds(first);
    if damaged {
        found.note(truncated());
    }
    let Some((_, ifd0)) = ifds.first().filter(|(offset, _)| *offset == first) else {
        return found;
    };
    if let Some(value) = ifd0.orientation {
        found.orientation = orientation(value);
    }
    for (_, ifd) in &ifds {
        if let (Some(offset), Some(length)) = (ifd.jpeg_offset, ifd.jpeg_length) {
            found.add(bytes, offset.into(), length.into());
        }
        if let Some((offset, length)) = ifd.panasonic_jpeg {
            found.add(bytes, offset, length.into());
        }
        if let (Some(offset), Some(length), true) = (
            ifd.strip_offset,
            ifd.strip_length,
            ifd.may_hold_preview(ifd0.dng),
        ) {
            found.add(bytes, offset.into(), length.into());
        }
    }
    found
}

/// An EXIF orientation value, `NoTransforms` when it is not one (0, 9, ...).
fn orientation(value: u32) -> Orientation {
    u8::try_from(value)
        .ok()
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// A TIFF-structured file or block, of either byte order.
struct Tiff<'a> {
    data: &'a [u8],
    big_endian: bool,
}

/// What one IFD says, of what this module needs.
#[derive(Default)]
struct Ifd {
    subfile_type: Option<u32>,
    compression: Option<u32>,
    photometric: Option<u32>,
    orientation: Option<u32>,
    /// The offset and length of the image's strip, when it is stored in exactly one.
    strip_offset: Option<u32>,
    strip_length: Option<u32>,
    jpeg_offset: Option<u32>,
    jpeg_length: Option<u32>,
    /// Where Panasonic's JpgFromRaw value lies, and its length.
    panasonic_jpeg: Option<(u64, u32)>,
    sub_ifds: Vec<u32>,
    dng: bool,
    next: u32,
}

impl Ifd {
    fn holds_sensor_data(&self) -> bool {
        self.photometric
            .is_some_and(|p| SENSOR_PHOTOMETRIC.contains(&p))
    }

    /// Whether this IFD's strip may be a JPEG preview: JPEG-compressed (6 or 7), not sensor
    /// data, and in a DNG marked as a reduced-resolution image (NewSubFileType bit 0), since
    /// DNG also stores the main raw image as JPEG (lossless, or lossy 8-bit).
    fn may_hold_preview(&self, dng: bool) -> bool {
        matches!(self.compression, Some(6 | 7))
            && !self.holds_sensor_data()
            && (!dng || self.subfile_type.is_some_and(|t| t & 1 == 1))
    }
}

impl<'a> Tiff<'a> {
    /// The reader and IFD0's offset, for TIFF's header (magic 42, also CR2's), Panasonic
    /// RW2's ("IIU\0") and Olympus ORF's ("IIRO", "IIRS", "MMOR").
    fn new(data: &'a [u8]) -> Option<(Self, u32)> {
        let big_endian = match data.get(..2)? {
            b"II" => false,
            b"MM" => true,
            _ => return None,
        };
        let tiff = Tiff { data, big_endian };
        let known = matches!(tiff.u16(2)?, 42 | 0x55 | 0x4F52 | 0x5352);
        let first = tiff.u32(4)?;
        known.then_some((tiff, first))
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let bytes = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let bytes = self.data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }

    /// The IFDs reachable from the one at `first` through next-IFD links and SubIFDs, with
    /// their offsets, IFD0 first; each read once, at most MAX_IFDS of them. `true` when one
    /// of them lies outside the data.
    fn ifds(&self, first: u32) -> (Vec<(u32, Ifd)>, bool) {
        let mut pending = vec![first];
        let mut ifds: Vec<(u32, Ifd)> = Vec::new();
        let mut seen = Vec::new();
        let mut damaged = false;
        while let Some(offset) = pending.pop() {
            if offset == 0 || seen.contains(&offset) {
                continue;
            }
            if seen.len() == MAX_IFDS {
                break;
            }
            seen.push(offset);
            match self.ifd(offset) {
                Some(ifd) => {
                    pending.push(ifd.next);
                    pending.extend(ifd.sub_ifds.iter().rev());
                    ifds.push((offset, ifd));
                }
                None => damaged = true,
            }
        }
        (ifds, damaged)
    }

    /// The IFD at `offset`, `None` when its entries do not fit in the data. Values of the
    /// wrong type, or lying outside the data, are treated as absent.
    fn ifd(&self, offset: u32) -> Option<Ifd> {
        let start = usize::try_from(offset).ok()?;
        let count = usize::from(self.u16(start)?);
        let entries = start + 2;
        let end = entries.checked_add(count * 12)?;
        let mut ifd = Ifd {
            next: self.u32(end)?,
            ..Ifd::default()
        };
        for at in (entries..end).step_by(12) {
            let entry = self.entry(at)?;
            let first = self.uint(&entry, 0);
            let single = if entry.count == 1 { first } else { None };
            match entry.tag {
                NEW_SUBFILE_TYPE => ifd.subfile_type = first,
                COMPRESSION => ifd.compression = first,
                PHOTOMETRIC => ifd.photometric = first,
                ORIENTATION => ifd.orientation = first,
                STRIP_OFFSETS => ifd.strip_offset = single,
                STRIP_BYTE_COUNTS => ifd.strip_length = single,
                SUB_IFDS => {
                    ifd.sub_ifds = (0..entry.count.min(MAX_SUB_IFDS))
                        .filter_map(|i| self.uint(&entry, i))
                        .collect();
                }
                JPEG_OFFSET => ifd.jpeg_offset = first,
                JPEG_LENGTH => ifd.jpeg_length = first,
                PANASONIC_JPEG if entry.kind == 7 => {
                    ifd.panasonic_jpeg = Some((entry.value as u64, entry.count));
                }
                DNG_VERSION => ifd.dng = true,
                _ => {}
            }
        }
        Some(ifd)
    }

    /// The IFD entry at `at`: tag, type, count, and where its value lies (inline in the
    /// entry when it fits in 4 bytes, else at the offset the entry holds).
    fn entry(&self, at: usize) -> Option<Entry> {
        let (tag, kind, count) = (self.u16(at)?, self.u16(at + 2)?, self.u32(at + 4)?);
        let size = match kind {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            _ => 8,
        } * u64::from(count);
        let value = if size <= 4 {
            at + 8
        } else {
            usize::try_from(self.u32(at + 8)?).ok()?
        };
        Some(Entry {
            tag,
            kind,
            count,
            value,
        })
    }

    /// An entry's `index`th value as an unsigned integer (BYTE, SHORT, LONG or IFD types).
    fn uint(&self, entry: &Entry, index: u32) -> Option<u32> {
        if index >= entry.count {
            return None;
        }
        let index = usize::try_from(index).ok()?;
        match entry.kind {
            1 => self
                .data
                .get(entry.value.checked_add(index)?)
                .map(|&b| b.into()),
            3 => self
                .u16(entry.value.checked_add(index.checked_mul(2)?)?)
                .map(u32::from),
            4 | 13 => self.u32(entry.value.checked_add(index.checked_mul(4)?)?),
            _ => None,
        }
    }
}

/// One IFD entry; `value` is the position of its value in the data.
struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    value: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A real 64x48 baseline JPEG (see tests/fixtures/CREDITS.md), and one with EXIF
    /// orientation 6 holding the same crop turned.
    const JPEG: &[u8] = include_bytes!("../../tests/fixtures/china_64x48.jpg");
    const JPEG_EXIF6: &[u8] = include_bytes!("../../tests/fixtures/china_exif6.jpg");

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// In `tiff` entry values: the offset of the blob, and of IFD n.
    const BLOB: u32 = u32::MAX;
    const fn ifd_at(n: u32) -> u32 {
        u32::MAX - 1 - n
    }

    /// A little-endian TIFF: IFDs of single-valued entries (tag, type, value), from offset 8
    /// on, chained in order when `chain`, then `blob`.
    fn tiff(ifds: &[&[(u16, u16, u32)]], chain: bool, blob: &[u8]) -> Vec<u8> {
        let mut offsets = vec![8u32];
        for entries in ifds {
            let last = *offsets.last().unwrap();
            offsets.push(last + 2 + 12 * entries.len() as u32 + 4);
        }
        let resolve = |value: u32| match value {
            BLOB => offsets[ifds.len()],
            v if v >= ifd_at(16) => offsets[(u32::MAX - 1 - v) as usize],
            v => v,
        };
        let mut out = b"II*\0\x08\0\0\0".to_vec();
        for (i, entries) in ifds.iter().enumerate() {
            out.extend((entries.len() as u16).to_le_bytes());
            for &(tag, kind, value) in *entries {
                out.extend(tag.to_le_bytes());
                out.extend(kind.to_le_bytes());
                out.extend(1u32.to_le_bytes());
                out.extend(resolve(value).to_le_bytes());
            }
            let next = if chain && i + 1 < ifds.len() {
                offsets[i + 1]
            } else {
                0
            };
            out.extend(next.to_le_bytes());
        }
        out.extend(blob);
        out
    }

    #[test]
    fn raw_tiffs_are_told_from_photos_by_their_directories() {
        let rgb: &[(u16, u16, u32)] = &[(PHOTOMETRIC, 3, 2)];
        assert!(!is_raw_tiff(&tiff(&[rgb], true, b"")));
        assert!(!is_raw_tiff(&fixture("china_exif.tif")));
        assert!(is_raw_tiff(&tiff(&[&[(DNG_VERSION, 1, 1)]], true, b"")));
        // NEF-like: sensor data (CFA) in a SubIFD; LinearRaw in a chained IFD.
        let with_sub: &[(u16, u16, u32)] = &[(PHOTOMETRIC, 3, 2), (SUB_IFDS, 4, ifd_at(1))];
        assert!(is_raw_tiff(&tiff(
            &[with_sub, &[(PHOTOMETRIC, 3, 32803)]],
            false,
            b""
        )));
        assert!(is_raw_tiff(&tiff(
            &[rgb, &[(PHOTOMETRIC, 3, 34892)]],
            true,
            b""
        )));
        // Real files: a big-endian DNG and a NEF (no DNGVersion, CFA in SubIFD1).
        assert!(is_raw_tiff(&fixture("raw_canon_eos350d.dng")));
        assert!(is_raw_tiff(&fixture("raw_nikon_d70.nef")));
        // Loops end: IFD0 listing itself as its SubIFD, IFD1 chaining back to IFD0.
        let looping: &[(u16, u16, u32)] = &[(SUB_IFDS, 4, ifd_at(0))];
        assert!(!is_raw_tiff(&tiff(
            &[looping, &[(SUB_IFDS, 4, ifd_at(0))]],
            true,
            b""
        )));
        assert!(!is_raw_tiff(b"II*\0\xff\xff\xff\xff"));
    }

    #[test]
    fn ifd_walk_is_capped() {
        // 40 chained IFDs: only MAX_IFDS are read.
        let one: &[(u16, u16, u32)] = &[(PHOTOMETRIC, 3, 2)];
        let bytes = tiff(&[one; 40], true, b"");
        let (tiff, first) = Tiff::new(&bytes).unwrap();
        assert_eq!(tiff.ifds(first).0.len(), MAX_IFDS);
    }

    #[test]
    fn preview_pointers_strips_and_what_is_not_a_preview() {
        let len = JPEG.len() as u32;
        // JPEGInterchangeFormat/Length, in an IFD of sensor data too (ARW/PEF).
        let pointed: &[(u16, u16, u32)] = &[
            (PHOTOMETRIC, 3, 32803),
            (JPEG_OFFSET, 4, BLOB),
            (JPEG_LENGTH, 4, len),
        ];
        assert_eq!(find(&tiff(&[pointed], true, JPEG)).previews, [JPEG]);
        // A JPEG strip (CR2's IFD0), but not in an IFD of sensor data.
        let strip = |photometric, subfile| {
            [
                (NEW_SUBFILE_TYPE, 4, subfile),
                (COMPRESSION, 3, 7),
                (PHOTOMETRIC, 3, photometric),
                (STRIP_OFFSETS, 4, BLOB),
                (STRIP_BYTE_COUNTS, 4, len),
            ]
        };
        assert_eq!(find(&tiff(&[&strip(6, 0)], true, JPEG)).previews, [JPEG]);
        assert!(find(&tiff(&[&strip(32803, 0)], true, JPEG))
            .previews
            .is_empty());
        // In a DNG, only reduced-resolution IFDs hold previews: the main image is JPEG too.
        let dng = |subfile| {
            let mut entries = strip(6, subfile).to_vec();
            entries.push((DNG_VERSION, 1, 1));
            entries
        };
        assert!(find(&tiff(&[&dng(0)], true, JPEG)).previews.is_empty());
        assert_eq!(find(&tiff(&[&dng(1)], true, JPEG)).previews, [JPEG]);
        // A pointer past the end: truncation, no preview.
        let past: &[(u16, u16, u32)] = &[(JPEG_OFFSET, 4, BLOB), (JPEG_LENGTH, 4, len + 1)];
        let bytes = tiff(&[past], true, JPEG);
        let found = find(&bytes);
        assert!(found.previews.is_empty());
        assert!(matches!(
            found.damage,
            Some(ImageError::Truncated(Format::Raw))
        ));
    }

    #[test]
    fn frame_size_reads_the_frame_header_only() {
        assert_eq!(frame_size(JPEG), Some((64, 48)));
        // An EXIF thumbnail's frame header inside APP1 is skipped over, not read.
        let thumb = b"Exif\0\0\xFF\xD8\xFF\xC0\x00\x0B\x08\x00\x0A\x00\x0A\x01\x01\x11\x00";
        let mut jpeg = b"\xFF\xD8\xFF\xE1".to_vec();
        jpeg.extend(((thumb.len() + 2) as u16).to_be_bytes());
        jpeg.extend(thumb);
        jpeg.extend(b"\xFF\xFF\xC0\x00\x0B\x08\x01\x00\x02\x00\x01\x01\x11\x00\xFF\xDA");
        assert_eq!(frame_size(&jpeg), Some((512, 256)));
        // Lossless (how CR2 and DNG store sensor data), 12-bit, no frame: not previews.
        assert_eq!(
            frame_size(b"\xFF\xD8\xFF\xC3\x00\x0B\x0C\x01\x00\x02\x00\x01\x01\x11\x00"),
            None
        );
        assert_eq!(
            frame_size(b"\xFF\xD8\xFF\xC0\x00\x0B\x0C\x01\x00\x02\x00\x01\x01\x11\x00"),
            None
        );
        assert_eq!(frame_size(b"\xFF\xD8\xFF\xDA"), None);
        // Cut short, or a zero length: no panic, no endless loop.
        assert_eq!(frame_size(b"\xFF\xD8\xFF\xC0\x00\x0B\x08\x01"), None);
        assert_eq!(
            frame_size(b"\xFF\xD8\xFF\xE0\x00\x00\xFF\xE0\x00\x00"),
            None
        );
        assert_eq!(frame_size(b"not a JPEG"), None);
    }

    #[test]
    fn raf_header_points_at_the_preview() {
        let raf = |length: u32| {
            let mut raf = b"FUJIFILMCCD-RAW 0201FF383501".to_vec();
            raf.resize(84, 0);
            raf.extend(100u32.to_be_bytes());
            raf.extend(length.to_be_bytes());
            raf.resize(100, 0);
            raf.extend(JPEG);
            raf
        };
        assert_eq!(find(&raf(JPEG.len() as u32)).previews, [JPEG]);
        let bytes = raf(JPEG.len() as u32 + 1);
        let found = find(&bytes);
        assert!(found.previews.is_empty());
        assert!(matches!(
            found.damage,
            Some(ImageError::Truncated(Format::Raw))
        ));
        assert!(matches!(
            find(&raf(0)[..90]).damage,
            Some(ImageError::Truncated(_))
        ));
    }

    fn bmff_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend(kind);
        out.extend(payload);
        out
    }

    /// A CR3's boxes: CMT1 with Orientation 8, a THMB, and (when `preview`) a PRVW.
    fn cr3_file(preview: Option<&[u8]>) -> Vec<u8> {
        let orientation: &[(u16, u16, u32)] = &[(ORIENTATION, 3, 8)];
        let canon_jpeg = |length_at: usize, jpeg: &[u8]| {
            let mut body = vec![0; 16];
            body[length_at..length_at + 4].copy_from_slice(&(jpeg.len() as u32).to_be_bytes());
            body.extend(jpeg);
            body
        };
        let mut metadata = CR3_METADATA.to_vec();
        metadata.extend(bmff_box(b"CMT1", &tiff(&[orientation], true, b"")));
        metadata.extend(bmff_box(b"THMB", &canon_jpeg(8, JPEG_EXIF6)));
        let mut file = bmff_box(b"ftyp", b"crx \0\0\0\x01crx isom");
        file.extend(bmff_box(b"moov", &bmff_box(b"uuid", &metadata)));
        if let Some(jpeg) = preview {
            let mut uuid = CR3_PREVIEW.to_vec();
            uuid.extend([0, 0, 0, 0, 0, 0, 0, 1]);
            uuid.extend(bmff_box(b"PRVW", &canon_jpeg(12, jpeg)));
            file.extend(bmff_box(b"uuid", &uuid));
        }
        file.extend(bmff_box(b"mdat", b"sensor data"));
        file
    }

    #[test]
    fn cr3_boxes_give_the_preview_and_orientation() {
        let file = cr3_file(Some(JPEG));
        let found = find(&file);
        assert_eq!(found.previews, [JPEG]);
        assert_eq!(found.orientation, Orientation::Rotate270);
        assert!(found.damage.is_none());
        // THMB only when there is no PRVW.
        assert_eq!(find(&cr3_file(None)).previews, [JPEG_EXIF6]);
        // A box claiming more than there is, or less than its header.
        let cut = &file[..file.len() - 3];
        assert!(matches!(
            find(cut).damage,
            Some(ImageError::Truncated(Format::Raw))
        ));
        let mut tiny = file.clone();
        tiny[24..28].copy_from_slice(&4u32.to_be_bytes()); // moov
        assert!(matches!(
            find(&tiny).damage,
            Some(ImageError::Corrupt { .. })
        ));
    }

    #[test]
    fn orientation_is_applied_once() {
        let limits = Limits::default();
        // The preview's own EXIF orientation wins, and is not applied twice.
        let own = super::super::jpeg::decode(JPEG_EXIF6, 0, &limits).unwrap();
        let raw = decode_preview(JPEG_EXIF6, Orientation::Rotate90, 0, &limits).unwrap();
        assert_eq!((raw.width, raw.height), (own.width, own.height));
        assert_eq!(raw.image, own.image);
        // Without one, the RAW's applies (6: turn 90 degrees clockwise).
        let raw = decode_preview(JPEG, Orientation::Rotate90, 0, &limits).unwrap();
        assert_eq!((raw.width, raw.height), (48, 64));
        assert_eq!(raw.image.dimensions(), (48, 64));
        assert_eq!(raw.format, Format::Raw);
    }

    #[test]
    fn picks_the_preview_libraw_picks() {
        let references: serde_json::Value =
            serde_json::from_slice(&fixture("raw_reference.json")).unwrap();
        for name in [
            "raw_subifd_preview.dng",
            "raw_jpgfromraw_orient6.dng",
            "raw_panasonic_lx3.rw2",
        ] {
            let bytes = fixture(name);
            let preview = largest(&find(&bytes).previews).unwrap_or_else(|| panic!("{name}"));
            let hash = hex::encode(Sha256::digest(preview.jpeg));
            assert_eq!(hash, references[name]["preview_sha256"], "{name}");
            let size = &references[name]["preview_size"];
            assert_eq!(
                [preview.width, preview.height],
                [
                    size[0].as_u64().unwrap() as u32,
                    size[1].as_u64().unwrap() as u32
                ]
            );
        }
        // The RAF's preview (8x8 here, ExifTool having shrunk it) holds a 160x120 EXIF
        // thumbnail, which LibRaw prefers; both are far too small.
        let bytes = fixture("raw_fujifilm_s5pro.raf");
        let preview = largest(&find(&bytes).previews).unwrap();
        assert_eq!((preview.width, preview.height), (8, 8));
        let libraw = references["raw_fujifilm_s5pro.raf"]["preview_offset"]
            .as_u64()
            .unwrap() as usize;
        let start = preview.jpeg.as_ptr() as usize - bytes.as_ptr() as usize;
        assert!((start..start + preview.jpeg.len()).contains(&libraw));
    }
}
