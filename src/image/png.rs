//! PNG through the `png` crate directly: the decoder the `image` crate wraps, and the fastest
//! one measured (ahead of zune-png, libspng, libpng and Pillow's).
//!
//! Going around the `image` crate gains three things, with the same pixels:
//! - each row becomes 8-bit RGB on white as it leaves the decoder, straight into the one buffer
//!   the result needs: no whole-image RGBA or 16-bit copy, no per-pixel f32 casts;
//! - the ICC profile and the text chunks are skipped unread (lookalike uses neither, and a 1 MB
//!   file's iCCP chunk can inflate to a gigabyte, which the `image` crate's path allocated);
//! - the decoder's own memory is bounded by the file's size and one row, not by the pixel limit.

use std::io::{BufRead, Cursor, ErrorKind, Seek};

use image::metadata::Orientation;
use image::RgbImage;
use png::{BitDepth, ColorType, DecodingError, Transformations};

use super::other::{grey_alpha_on_white, grey_to_rgb, rgba_on_white};
use super::{orient, swaps_axes, Decoded, Format, ImageError, Limits};

pub(super) fn decode(bytes: &[u8], limits: &Limits) -> Result<Decoded, ImageError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    // Palettes and bit depths below 8 become 8-bit samples and tRNS an alpha channel; 16-bit
    // samples stay 16-bit (png's STRIP_16 keeps the high byte) and are rounded below.
    decoder.set_transformations(Transformations::EXPAND);
    // The header only: no pixel memory yet.
    let (width, height) = {
        let info = decoder.read_header_info().map_err(decode_error)?;
        (info.width, info.height)
    };
    limits.check(Format::Png, width, height)?;
    decoder.set_limits(png::Limits {
        bytes: decoder_memory(bytes.len(), width),
    });
    // The chunks before the image data (palette, transparency, eXIf, ...).
    let mut reader = decoder.read_info().map_err(decode_error)?;
    // As the `image` crate reads it: the eXIf chunk when it comes before the image data.
    let orientation = reader
        .info()
        .exif_metadata
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    // An animation's default image (its first frame, or a still shown to decoders that do
    // not animate) always has the header's size.
    let image = read_rgb_on_white(&mut reader, width, height)?;
    let (width, height) = if swaps_axes(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    Ok(Decoded {
        image: orient(image, orientation),
        width,
        height,
        format: Format::Png,
    })
}

/// The most the `png` crate may allocate for itself. With the ICC profile and text skipped it
/// keeps the other metadata chunks it parses, of which only eXIf is unbounded (it is in the
/// file, and its buffer grows by doubling, so twice the file's size) and the output row it
/// reserves (8 bytes per pixel at most, 16-bit RGBA), plus a megabyte to spare.
fn decoder_memory(file_len: usize, width: u32) -> usize {
    let row = usize::try_from(width)
        .unwrap_or(usize::MAX)
        .saturating_mul(8);
    file_len
        .saturating_mul(2)
        .saturating_add(row)
        .saturating_add(1 << 20)
}

/// Decodes the image data into 8-bit RGB on white, a row at a time.
fn read_rgb_on_white<R: BufRead + Seek>(
    reader: &mut png::Reader<R>,
    width: u32,
    height: u32,
) -> Result<RgbImage, ImageError> {
    let (color, depth) = reader.output_color_type();
    let convert: fn(&[u8], &mut [u8]) = match color {
        ColorType::Grayscale => grey_to_rgb,
        ColorType::GrayscaleAlpha => grey_alpha_on_white,
        ColorType::Rgb => |rgb, out| out.copy_from_slice(rgb),
        ColorType::Rgba => rgba_on_white,
        ColorType::Indexed => return Err(corrupt("its palette could not be applied".into())),
    };
    let sixteen_bit = match depth {
        BitDepth::Eight => false,
        BitDepth::Sixteen => true,
        other => {
            return Err(ImageError::Unsupported(format!(
                "this PNG file has {other:?} samples"
            )))
        }
    };
    // Samples a row at a time: decoded in place when they need no conversion at all.
    let direct = color == ColorType::Rgb && !sixteen_bit;
    let convert_row = |samples: &mut [u8], out: &mut [u8]| {
        if sixteen_bit {
            convert(round_to_8_bits(samples), out);
        } else {
            convert(samples, out);
        }
    };
    let line = reader
        .output_line_size(width)
        .ok_or_else(|| too_large(width, height))?;
    let mut rgb = RgbImage::new(width, height);
    let rgb_line = 3 * width as usize;
    if reader.info().interlaced {
        // Adam7: the passes spread each row over the whole image data, so it is decoded whole.
        if direct {
            reader.next_frame(&mut rgb).map_err(decode_error)?;
        } else {
            let size = reader
                .output_buffer_size()
                .ok_or_else(|| too_large(width, height))?;
            let mut samples = vec![0; size];
            reader.next_frame(&mut samples).map_err(decode_error)?;
            for (row, out) in samples
                .chunks_exact_mut(line)
                .zip(rgb.chunks_exact_mut(rgb_line))
            {
                convert_row(row, out);
            }
        }
    } else {
        let mut samples = vec![0; line];
        for out in rgb.chunks_exact_mut(rgb_line) {
            let row = if direct { &mut *out } else { &mut samples[..] };
            if reader.read_row(row).map_err(decode_error)?.is_none() {
                return Err(corrupt("its image data ends before the last row".into()));
            }
            if !direct {
                convert_row(&mut samples, out);
            }
        }
        // Past the last row, the rest of the image data is read through (as the `png` crate's
        // whole-image decode does), so a file cut short there is still reported as truncated.
        if reader
            .read_row(&mut samples)
            .map_err(decode_error)?
            .is_some()
        {
            return Err(corrupt(
                "its image data has more rows than its header".into(),
            ));
        }
    }
    Ok(rgb)
}

/// Big-endian 16-bit samples rounded to 8 bits in place, as the `image` crate rounds them:
/// round(v * 255 / 65535) = (v + 128) / 257. Returns the 8-bit samples (the first half).
fn round_to_8_bits(samples: &mut [u8]) -> &[u8] {
    let count = samples.len() / 2;
    for i in 0..count {
        let wide = u32::from(u16::from_be_bytes([samples[2 * i], samples[2 * i + 1]]));
        samples[i] = ((wide + 128) / 257) as u8;
    }
    &samples[..count]
}

fn decode_error(error: DecodingError) -> ImageError {
    match error {
        // The data is in memory: the only I/O error is running out of it.
        DecodingError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => {
            ImageError::Truncated(Format::Png)
        }
        DecodingError::LimitsExceeded => {
            corrupt("its metadata asks for more memory than a PNG file of its size can need".into())
        }
        other => corrupt(readable_chunk_names(&other.to_string())),
    }
}

/// The `png` crate names chunks in its messages by their debug form, `ChunkType { type: IDAT,
/// critical: true, private: false, reserved: false, safecopy: false }`: this keeps `IDAT`.
fn readable_chunk_names(message: &str) -> String {
    const START: &str = "ChunkType { type: ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(START) {
        let after = &rest[at + START.len()..];
        let (Some(name_end), Some(close)) = (after.find(','), after.find('}')) else {
            break;
        };
        if name_end > close {
            break;
        }
        out.push_str(&rest[..at]);
        out.push_str(&after[..name_end]);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn too_large(width: u32, height: u32) -> ImageError {
    corrupt(format!(
        "its {width}x{height} pixels do not fit in this machine's memory"
    ))
}

fn corrupt(reason: String) -> ImageError {
    ImageError::Corrupt {
        format: Format::Png,
        reason,
    }
}

/// The tracking allocator the decode tests share (it is this test binary's global allocator).
#[cfg(test)]
#[path = "../../tests/support/largest_allocation.rs"]
mod largest_allocation;

#[cfg(test)]
mod tests {
    use image::DynamicImage;
    use png::chunk::ChunkType;

    use super::largest_allocation::largest_allocation;
    use super::*;

    // ---- building PNG files ----

    /// Deterministic pseudo-random bytes.
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 11) as u8
            })
            .collect()
    }

    struct Spec {
        color: ColorType,
        depth: BitDepth,
        trns: Option<Vec<u8>>,
        palette: Option<Vec<u8>>,
        /// Raw chunks written between the header and the image data.
        chunks: Vec<([u8; 4], Vec<u8>)>,
        interlaced: bool,
    }

    impl Spec {
        fn new(color: ColorType, depth: BitDepth) -> Self {
            Spec {
                color,
                depth,
                trns: None,
                palette: None,
                chunks: Vec::new(),
                interlaced: false,
            }
        }
    }

    /// A PNG of `width` x `height` pixels with `data` as its (unfiltered, packed) samples.
    fn encode(spec: &Spec, width: u32, height: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut info = png::Info::with_size(width, height);
        info.color_type = spec.color;
        info.bit_depth = spec.depth;
        info.interlaced = spec.interlaced;
        let mut encoder = png::Encoder::with_info(&mut out, info).unwrap();
        if let Some(palette) = &spec.palette {
            encoder.set_palette(palette.clone());
        }
        if let Some(trns) = &spec.trns {
            encoder.set_trns(trns.clone());
        }
        let mut writer = encoder.write_header().unwrap();
        for (kind, data) in &spec.chunks {
            writer.write_chunk(ChunkType(*kind), data).unwrap();
        }
        if spec.interlaced {
            let idat = zlib_stored(&adam7(spec, width, height, data));
            writer.write_chunk(ChunkType(*b"IDAT"), &idat).unwrap();
        } else {
            writer.write_image_data(data).unwrap();
        }
        writer.finish().unwrap();
        out
    }

    /// The Adam7 passes of an image with whole bytes per pixel, each row with filter 0.
    fn adam7(spec: &Spec, width: u32, height: u32, data: &[u8]) -> Vec<u8> {
        const PASSES: [(u32, u32, u32, u32); 7] = [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ];
        let pixel = spec.color.samples() * spec.depth as usize / 8;
        assert!(pixel > 0, "whole bytes per pixel only");
        let mut raw = Vec::new();
        for (x0, y0, dx, dy) in PASSES {
            if x0 >= width {
                continue;
            }
            for y in (y0..height).step_by(dy as usize) {
                raw.push(0);
                for x in (x0..width).step_by(dx as usize) {
                    let at = (y * width + x) as usize * pixel;
                    raw.extend_from_slice(&data[at..at + pixel]);
                }
            }
        }
        raw
    }

    /// A zlib stream of stored (uncompressed) blocks.
    fn zlib_stored(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01];
        let blocks: Vec<&[u8]> = data.chunks(65535).collect();
        for (i, block) in blocks.iter().enumerate() {
            out.push(u8::from(i + 1 == blocks.len()));
            let len = block.len() as u16;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(block);
        }
        out.extend_from_slice(&adler32(data.iter().copied()).to_be_bytes());
        out
    }

    fn adler32(data: impl Iterator<Item = u8>) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    /// The pixels as the `image` crate decoded them before this module: its own decoder and
    /// casts to RGB(A), then each pixel composited on white.
    fn reference(bytes: &[u8]) -> RgbImage {
        let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).unwrap();
        if !image.color().has_alpha() {
            return image.into_rgb8();
        }
        let rgba = image.into_rgba8();
        let mut rgb = RgbImage::new(rgba.width(), rgba.height());
        for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
            let alpha = u32::from(px[3]);
            for c in 0..3 {
                out[c] = ((u32::from(px[c]) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
            }
        }
        rgb
    }

    fn decoded(bytes: &[u8]) -> RgbImage {
        decode(bytes, &Limits::default()).unwrap().image
    }

    // ---- same pixels as the `image` crate ----

    /// Every colour type at every bit depth, with and without tRNS, plain and interlaced.
    #[test]
    fn every_layout_decodes_as_the_image_crate_did() {
        use BitDepth::*;
        use ColorType::*;
        let (width, height) = (37, 11);
        let mut checked = 0;
        for (color, depths) in [
            (Grayscale, &[One, Two, Four, Eight, Sixteen][..]),
            (Rgb, &[Eight, Sixteen]),
            (Indexed, &[One, Two, Four, Eight]),
            (GrayscaleAlpha, &[Eight, Sixteen]),
            (Rgba, &[Eight, Sixteen]),
        ] {
            for &depth in depths {
                let bits = depth as usize;
                let row = (width as usize * color.samples() * bits).div_ceil(8);
                let mut data = noise(row * height as usize, checked);
                // The sixth row repeats the first, so some pixels match a tRNS key taken from
                // the first pixel.
                data.copy_within(0..row, 5 * row);
                let mut variants = vec![Spec::new(color, depth)];
                let mut transparent = Spec::new(color, depth);
                transparent.trns = match (color, depth) {
                    (Indexed, _) => {
                        let entries = 1 << bits;
                        variants[0].palette = Some(noise(3 * entries, 7));
                        transparent.palette = Some(noise(3 * entries, 7));
                        // Fewer alpha entries than colours: the others are opaque.
                        Some(noise(entries.div_ceil(2), 9))
                    }
                    (Grayscale, One | Two | Four) => Some(vec![0, data[0] >> (8 - bits)]),
                    (Grayscale | Rgb, Eight) => Some(
                        data[..color.samples()]
                            .iter()
                            .flat_map(|&v| [0, v])
                            .collect(),
                    ),
                    (Grayscale | Rgb, Sixteen) => Some(data[..2 * color.samples()].to_vec()),
                    _ => None,
                };
                if transparent.trns.is_some() {
                    variants.push(transparent);
                }
                for mut spec in variants {
                    for interlaced in [false, true] {
                        if interlaced && bits < 8 {
                            continue;
                        }
                        spec.interlaced = interlaced;
                        let bytes = encode(&spec, width, height, &data);
                        let expected = reference(&bytes);
                        let got = decoded(&bytes);
                        let what = format!(
                            "{color:?} {depth:?} tRNS: {} interlaced: {interlaced}",
                            spec.trns.is_some()
                        );
                        assert_eq!(got.dimensions(), expected.dimensions(), "{what}");
                        assert!(got.as_raw() == expected.as_raw(), "{what}: pixels differ");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 40);
    }

    /// Rounding 16-bit grey goes through f32 in the `image` crate and through integers here:
    /// every value comes out the same.
    #[test]
    fn every_sixteen_bit_value_rounds_as_the_image_crate_does() {
        let values: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_be_bytes).collect();
        // Grey and alpha both take every value (alpha in reverse order).
        let with_alpha: Vec<u8> = values
            .chunks(2)
            .zip(values.chunks(2).rev())
            .flat_map(|(g, a)| [g[0], g[1], a[0], a[1]])
            .collect();
        for (color, data) in [
            (ColorType::Grayscale, values),
            (ColorType::GrayscaleAlpha, with_alpha),
        ] {
            let bytes = encode(&Spec::new(color, BitDepth::Sixteen), 256, 256, &data);
            assert!(decoded(&bytes) == reference(&bytes), "{color:?}");
        }
    }

    #[test]
    fn animation_decodes_to_its_first_frame() {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, 5, 4);
        encoder.set_color(ColorType::Rgba);
        encoder.set_animated(2, 0).unwrap();
        let mut writer = encoder.write_header().unwrap();
        let first = noise(80, 1);
        writer.write_image_data(&first).unwrap();
        writer.write_image_data(&noise(80, 2)).unwrap();
        writer.finish().unwrap();
        let got = decoded(&out);
        assert!(got == reference(&out));
        let still = encode(&Spec::new(ColorType::Rgba, BitDepth::Eight), 5, 4, &first);
        assert!(got == reference(&still));
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A big-endian TIFF header and one IFD entry: orientation (0x0112) = 6, rotate 90.
        let exif = [
            b"MM\0\x2a\0\0\0\x08\0\x01".as_slice(),
            &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0],
            &[0, 0, 0, 0],
        ]
        .concat();
        let mut spec = Spec::new(ColorType::Rgb, BitDepth::Eight);
        spec.chunks.push((*b"eXIf", exif));
        let bytes = encode(&spec, 3, 2, &noise(18, 1));
        let d = decode(&bytes, &Limits::default()).unwrap();
        assert_eq!((d.width, d.height), (2, 3));
        let mut upright = DynamicImage::ImageRgb8(reference(&bytes));
        upright.apply_orientation(Orientation::Rotate90);
        assert!(d.image == upright.into_rgb8());
        // The same as the `image` crate's path.
        let before = super::super::other::decode(&bytes, Format::Png, &Limits::default()).unwrap();
        assert!(d.image == before.image);
        assert_eq!((d.width, d.height), (before.width, before.height));
    }

    // ---- bad input ----

    /// A zlib stream that inflates to 1 + 258 * `copies` zero bytes, with 2 bits per copy:
    /// one deflate block with its own Huffman codes, in which "repeat 258 bytes from 1 back"
    /// is "0" "0" (258:1 per 2 bits is as far as deflate compresses).
    fn zlib_bomb(copies: usize) -> Vec<u8> {
        /// Bits, least significant first within each byte; `.1` counts them.
        struct Bits(Vec<u8>, usize);
        impl Bits {
            /// `count` bits of `value`, least significant first (deflate's numbers).
            fn number(&mut self, value: u32, count: usize) {
                for i in 0..count {
                    if self.1.is_multiple_of(8) {
                        self.0.push(0);
                    }
                    *self.0.last_mut().unwrap() |= (((value >> i) & 1) as u8) << (self.1 % 8);
                    self.1 += 1;
                }
            }
            /// A Huffman code of `count` bits, most significant first.
            fn code(&mut self, code: u32, count: usize) {
                for i in (0..count).rev() {
                    self.number((code >> i) & 1, 1);
                }
            }
            fn zeros(&mut self, count: usize) {
                self.1 += count;
                self.0.resize(self.1.div_ceil(8), 0);
            }
        }
        let mut bits = Bits(Vec::new(), 0);
        bits.number(1, 1); // the last block,
        bits.number(2, 2); // with its own Huffman codes:
        bits.number(286 - 257, 5); // 286 literal/length code lengths,
        bits.number(2 - 1, 5); // 2 distance code lengths,
        bits.number(18 - 4, 4); // 18 code length code lengths, in deflate's order
                                // 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1: 18 -> 1 bit, 2 -> 2 bits, 1 -> 2 bits.
        for length in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
            bits.number(length, 3);
        }
        // So the code length codes are 18 (a run of 11 to 138 zeros) = 0, 1 = 10, 2 = 11.
        let zero_run = |bits: &mut Bits, count: u32| {
            bits.code(0, 1);
            bits.number(count - 11, 7);
        };
        // Literal/length code lengths: byte 0 -> 2, 1..=255 unused, 256 (end) -> 2,
        // 257..=284 unused, 285 (length 258) -> 1; distances 1 and 2 -> 1 each.
        bits.code(0b11, 2);
        zero_run(&mut bits, 138);
        zero_run(&mut bits, 117);
        bits.code(0b11, 2);
        zero_run(&mut bits, 28);
        for _ in 0..3 {
            bits.code(0b10, 2);
        }
        // Canonical codes: 285 = 0, byte 0 = 10, end = 11; distance 1 = 0, distance 2 = 1.
        bits.code(0b10, 2); // the byte 0
        bits.zeros(2 * copies); // each copy: length 258 (0), distance 1 (0)
        bits.code(0b11, 2); // the end
        let inflated = 1 + 258 * copies;
        // Adler-32 of zeros: a stays 1, b counts the bytes.
        let adler = ((inflated % 65521) as u32) << 16 | 1;
        [&[0x78, 0xda][..], &bits.0, &adler.to_be_bytes()].concat()
    }

    /// An 8x8 PNG with an iCCP chunk whose profile inflates to 1 + 258 * `copies` bytes.
    fn with_iccp_bomb(copies: usize) -> Vec<u8> {
        let mut spec = Spec::new(ColorType::Rgba, BitDepth::Eight);
        let iccp = [&b"bomb\0\0"[..], &zlib_bomb(copies)].concat();
        spec.chunks.push((*b"iCCP", iccp));
        encode(&spec, 8, 8, &noise(256, 3))
    }

    #[test]
    fn the_bomb_is_a_bomb() {
        // Small enough to inflate: the profile is what the deflate stream says.
        let bytes = with_iccp_bomb(1000);
        let reader = png::Decoder::new(Cursor::new(&bytes)).read_info().unwrap();
        let profile = reader.info().icc_profile.as_deref().unwrap();
        assert_eq!(profile.len(), 1 + 258 * 1000);
        assert!(profile.iter().all(|&b| b == 0));
    }

    #[test]
    fn icc_profile_bomb_is_not_inflated() {
        // 1 MiB of iCCP chunk that inflates to 1 GiB: through the `image` crate, whose limit for
        // the profile was the pixel limit's 1 GB, it was inflated until that limit stopped it.
        let bytes = with_iccp_bomb((1 << 30) / 258);
        assert!(bytes.len() < 1100 << 10, "{} bytes", bytes.len());
        let (result, largest) = largest_allocation(|| decode(&bytes, &Limits::default()));
        let d = result.unwrap();
        assert!(
            d.image
                == reference(&encode(
                    &Spec::new(ColorType::Rgba, BitDepth::Eight),
                    8,
                    8,
                    &noise(256, 3)
                ))
        );
        assert!(largest < 1 << 20, "largest allocation {largest} bytes");
        // Were it read, the decoder's memory bound would stop it at a few MiB, not 1 GiB (the
        // `png` crate then drops the profile and carries on).
        let mut decoder = png::Decoder::new(Cursor::new(&bytes));
        decoder.set_limits(png::Limits {
            bytes: decoder_memory(bytes.len(), 8),
        });
        let (reader, largest) = largest_allocation(|| decoder.read_info().unwrap());
        assert!(reader.info().icc_profile.is_none());
        assert!(largest < 8 << 20, "largest allocation {largest} bytes");
        eprintln!(
            "bomb: {} bytes; largest allocation reading it: {largest}",
            bytes.len()
        );
    }

    /// Cut short anywhere, or with any one bit flipped, a file fails (or not) as it did
    /// through the `image` crate: truncated, corrupt, or (for a flip in a byte no decoder
    /// reads, say) decoded; never a panic.
    #[test]
    fn damage_is_reported_as_before() {
        let kind = |result: Result<Decoded, ImageError>| match result {
            Ok(_) => "decoded",
            Err(ImageError::Truncated(Format::Png)) => "truncated",
            Err(ImageError::Corrupt {
                format: Format::Png,
                reason,
            }) => {
                assert!(!reason.is_empty());
                "corrupt"
            }
            Err(other) => panic!("{other:?}"),
        };
        let mut spec = Spec::new(ColorType::Rgb, BitDepth::Eight);
        spec.chunks.push((*b"tEXt", b"Comment\0damaged".to_vec()));
        let bytes = encode(&spec, 9, 7, &noise(189, 5));
        let limits = Limits::default();
        let before = |bytes: &[u8]| super::super::other::decode(bytes, Format::Png, &limits);
        let mut damaged = Vec::new();
        for len in 8..bytes.len() {
            damaged.push(bytes[..len].to_vec());
        }
        for bit in 8 * 8..8 * bytes.len() {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            damaged.push(flipped);
        }
        for bytes in damaged {
            assert_eq!(
                kind(decode(&bytes, &limits)),
                kind(before(&bytes)),
                "{} bytes",
                bytes.len()
            );
        }
        let truncated = decode(&bytes[..bytes.len() - 20], &limits).unwrap_err();
        assert!(matches!(truncated, ImageError::Truncated(Format::Png)));
        let mut flipped = bytes.clone();
        // In the image data's CRC.
        *flipped.iter_mut().rev().nth(13).unwrap() ^= 1;
        let message = decode(&flipped, &limits).unwrap_err().to_string();
        assert!(
            message.contains("PNG") && message.contains("CRC") && message.contains(" IDAT chunk"),
            "{message}"
        );
        assert!(!message.contains("ChunkType"), "{message}");
    }
}
