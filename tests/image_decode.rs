//! Decoding and preprocessing on committed fixtures (tests/fixtures, see CREDITS.md there) and
//! on the real photos cached by scripts/fetch-test-data.sh.

mod common;
#[path = "support/largest_allocation.rs"]
mod largest_allocation;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{fixture, testdata};
use image::RgbImage;
use largest_allocation::largest_allocation;
use lookalike::image::{
    decode_bytes, decode_file, sniff, Decoded, Format, ImageError, Limits, Preprocessor,
};

// ---- helpers ----

fn photos(folder: &str, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata().join("photos").join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .{extension} photos in {folder}");
    files
}

fn decode(name: &str) -> Decoded {
    decode_file(&fixture(name), 0, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decode_err(name: &str) -> ImageError {
    match decode_file(&fixture(name), 0, &Limits::default()) {
        Ok(d) => panic!("{name} decoded to {}x{}", d.image.width(), d.image.height()),
        Err(e) => e,
    }
}

/// The reference pixels: the lossless PNG of the china.jpg crop, read by the `image` crate
/// directly (not through the code under test).
fn reference() -> RgbImage {
    image::open(fixture("china_64x48.png")).unwrap().to_rgb8()
}

/// Mean absolute difference per sample, in 0-255 levels.
fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

// ---- formats ----

#[test]
fn lossless_formats_decode_exactly() {
    let expected = reference();
    for (name, format) in [
        ("china_64x48.png", Format::Png),
        ("china_64x48.bmp", Format::Bmp),
        ("china_64x48.tif", Format::Tiff),
    ] {
        let d = decode(name);
        assert_eq!(d.format, format, "{name}");
        assert_eq!((d.width, d.height), (64, 48), "{name}");
        assert!(
            d.image == expected,
            "{name} pixels differ from the reference"
        );
    }
}

#[test]
fn lossy_formats_decode_close_to_the_reference() {
    let expected = reference();
    for (name, format, tolerance) in [
        ("china_64x48.jpg", Format::Jpeg, 5.0),
        ("china_cmyk.jpg", Format::Jpeg, 5.0),
        ("china_64x48.webp", Format::WebP, 8.0),
        ("china_2frames.gif", Format::Gif, 12.0),
    ] {
        let d = decode(name);
        assert_eq!(d.format, format, "{name}");
        assert_eq!((d.width, d.height), (64, 48), "{name}");
        let diff = mean_abs_diff(&d.image, &expected);
        assert!(diff < tolerance, "{name}: mean abs diff {diff:.2}");
    }
}

#[test]
fn a_gif_frame_larger_than_its_screen_is_refused_before_decoding() {
    // The fixture's 64x48 screen kept, its first frame's descriptor rewritten to 15000x15000
    // (tests/fuzz.rs found such a file costing 1 GB): refused by the pixel limit up front.
    let mut bytes = std::fs::read(fixture("china_2frames.gif")).unwrap();
    let frame = first_gif_frame_descriptor(&bytes);
    bytes[frame + 5..frame + 7].copy_from_slice(&15_000u16.to_le_bytes());
    bytes[frame + 7..frame + 9].copy_from_slice(&15_000u16.to_le_bytes());
    let (result, largest) = largest_allocation(|| decode_bytes(&bytes, 0, &Limits::default()));
    match result {
        Err(ImageError::TooLarge { width, height, .. }) => {
            assert_eq!((width, height), (15_000, 15_000))
        }
        other => panic!(
            "expected TooLarge, got {:?}",
            other.map(|d| d.image.dimensions())
        ),
    }
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

/// Where the first image descriptor (0x2C) of a GIF starts, found by the textbook walk: past
/// the screen descriptor, the global colour table and any extension blocks.
fn first_gif_frame_descriptor(gif: &[u8]) -> usize {
    let mut at = 13;
    if gif[10] & 0x80 != 0 {
        at += 3 * (1 << ((gif[10] & 7) + 1));
    }
    while gif[at] == 0x21 {
        at += 2;
        while gif[at] != 0 {
            at += 1 + gif[at] as usize;
        }
        at += 1;
    }
    assert_eq!(gif[at], 0x2C, "an image descriptor");
    at
}

#[test]
fn gif_gives_the_first_frame_not_the_second() {
    let d = decode("china_2frames.gif");
    let mut inverted = reference();
    image::imageops::invert(&mut inverted);
    assert!(mean_abs_diff(&d.image, &inverted) > 60.0);
}

#[test]
fn cmyk_is_not_colour_inverted() {
    let d = decode("china_cmyk.jpg");
    let mut inverted = reference();
    image::imageops::invert(&mut inverted);
    assert!(mean_abs_diff(&d.image, &inverted) > 60.0);
}

#[test]
fn exif_orientation_6_comes_out_upright() {
    let d = decode("china_exif6.jpg");
    // Stored 48x64, displayed (and decoded) 64x48.
    assert_eq!((d.width, d.height), (64, 48));
    assert_eq!(d.image.dimensions(), (64, 48));
    let upright = reference();
    let diff = mean_abs_diff(&d.image, &upright);
    assert!(diff < 5.0, "mean abs diff to upright {diff:.2}");
    // The other way round (rotated 180 degrees from correct) is far off: the check has teeth.
    let wrong = image::imageops::rotate180(&upright);
    assert!(mean_abs_diff(&d.image, &wrong) > 5.0 * diff.max(1.0));
}

#[test]
fn grey_jpeg_becomes_rgb_with_equal_channels() {
    let d = decode("camera_grey.jpg");
    assert_eq!((d.format, d.width, d.height), (Format::Jpeg, 64, 48));
    assert!(d.image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    let grey = image::open(fixture("camera_grey.jpg")).unwrap().to_luma8();
    let as_rgb = image::DynamicImage::ImageLuma8(grey).to_rgb8();
    assert!(mean_abs_diff(&d.image, &as_rgb) < 1.0);
}

#[test]
fn alpha_is_composited_on_white() {
    let d = decode("chelsea_alpha.png");
    let rgba = image::open(fixture("chelsea_alpha.png"))
        .unwrap()
        .to_rgba8();
    for (x, y, px) in d.image.enumerate_pixels() {
        let source = rgba.get_pixel(x, y);
        match source[3] {
            0 => assert_eq!(px.0, [255, 255, 255], "transparent ({x},{y})"),
            255 => assert_eq!(px.0, [source[0], source[1], source[2]], "opaque ({x},{y})"),
            a => {
                for c in 0..3 {
                    let expected =
                        (f64::from(source[c]) * f64::from(a) + 255.0 * f64::from(255 - a)) / 255.0;
                    assert!((f64::from(px[c]) - expected).abs() <= 1.0, "({x},{y})");
                }
            }
        }
    }
    // The fixture really has all three kinds of pixel.
    assert!(rgba.pixels().any(|p| p[3] == 0) && rgba.pixels().any(|p| p[3] > 0 && p[3] < 255));
}

#[test]
fn palette_transparency_is_white() {
    let d = decode("china_palette_trns.png");
    let rgba = image::open(fixture("china_palette_trns.png"))
        .unwrap()
        .to_rgba8();
    let transparent = rgba.pixels().filter(|p| p[3] == 0).count();
    assert!(transparent > 0, "fixture has no transparent pixels");
    for (x, y, px) in d.image.enumerate_pixels() {
        let source = rgba.get_pixel(x, y);
        let expected = if source[3] == 0 {
            [255, 255, 255]
        } else {
            [source[0], source[1], source[2]]
        };
        assert_eq!(px.0, expected, "({x},{y})");
    }
}

#[test]
fn sixteen_bit_is_rounded_not_truncated() {
    let d = decode("chelsea_rgb16.png");
    let wide = image::open(fixture("chelsea_rgb16.png"))
        .unwrap()
        .to_rgb16();
    let mut rounded_differs_from_high_byte = false;
    for (narrow, wide) in d.image.as_raw().iter().zip(wide.as_raw()) {
        let expected = ((u32::from(*wide) * 255 + 32767) / 65535) as u8;
        assert_eq!(*narrow, expected);
        rounded_differs_from_high_byte |= expected != (*wide >> 8) as u8;
    }
    assert!(rounded_differs_from_high_byte);
}

// ---- bad input: typed errors, no panic, no big allocation ----

#[test]
fn truncated_files_are_reported_as_truncated() {
    assert!(matches!(
        decode_err("truncated.jpg"),
        ImageError::Truncated(Format::Jpeg)
    ));
    assert!(matches!(
        decode_err("truncated.png"),
        ImageError::Truncated(Format::Png)
    ));
    let message = decode_err("truncated.jpg").to_string();
    assert!(
        message.contains("JPEG") && message.contains("truncated"),
        "{message}"
    );
}

#[test]
fn empty_and_text_files_are_not_images() {
    assert!(matches!(decode_err("empty.jpg"), ImageError::Empty));
    assert!(matches!(decode_err("text.jpg"), ImageError::NotAnImage));
    let text = std::fs::read(fixture("text.jpg")).unwrap();
    assert_eq!(sniff(&text), None);
    assert_eq!(
        sniff(&std::fs::read(fixture("china_64x48.jpg")).unwrap()[..16]),
        Some(Format::Jpeg)
    );
}

#[test]
fn huge_png_header_is_rejected_before_allocating() {
    let (result, largest) =
        largest_allocation(|| decode_file(&fixture("huge_header.png"), 0, &Limits::default()));
    match result {
        Err(ImageError::TooLarge {
            width: 30000,
            height: 30000,
            limit,
        }) => assert_eq!(limit, Limits::default().max_pixels),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // 30000 x 30000 RGB would be 2.7 GB; the header check must stop long before.
    assert!(largest < 4 << 20, "largest allocation {largest} bytes");
}

#[test]
fn pixel_limit_applies_to_jpeg_headers_too() {
    let limits = Limits {
        max_pixels: 1000,
        ..Limits::default()
    };
    let (result, largest) =
        largest_allocation(|| decode_file(&fixture("china_64x48.jpg"), 0, &limits));
    assert!(matches!(
        result,
        Err(ImageError::TooLarge {
            width: 64,
            height: 48,
            limit: 1000
        })
    ));
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("64x48") && message.contains("1000"),
        "{message}"
    );
}

#[test]
fn corrupt_webp_is_corrupt() {
    match decode_err("corrupt.webp") {
        ImageError::Corrupt {
            format: Format::WebP,
            reason,
        } => assert!(!reason.is_empty()),
        other => panic!("expected Corrupt WebP, got {other:?}"),
    }
}

#[test]
fn byte_limit_is_checked_before_reading() {
    let limits = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    let (result, largest) =
        largest_allocation(|| decode_file(&fixture("china_64x48.bmp"), 0, &limits));
    assert!(matches!(
        result,
        Err(ImageError::FileTooLarge {
            size: 9270,
            limit: 100
        })
    ));
    assert!(largest < 9270, "read the file anyway ({largest} bytes)");
    let bytes = std::fs::read(fixture("china_64x48.bmp")).unwrap();
    assert!(matches!(
        decode_bytes(&bytes, 0, &limits),
        Err(ImageError::FileTooLarge { .. })
    ));
}

#[test]
fn unreadable_paths_are_io_errors() {
    let missing = decode_file(Path::new("/nonexistent/photo.jpg"), 0, &Limits::default());
    assert!(matches!(missing, Err(ImageError::Io(_))));
    let directory = decode_file(&fixture(""), 0, &Limits::default());
    assert!(matches!(directory, Err(ImageError::Io(_))));
}

#[test]
fn every_prefix_and_bit_flip_of_a_jpeg_fails_cleanly() {
    // No panic and no allocation beyond the image's own size for any cut or damaged byte.
    let jpeg = std::fs::read(fixture("china_64x48.jpg")).unwrap();
    for cut in (0..jpeg.len()).step_by(7) {
        let (_, largest) = largest_allocation(|| decode_bytes(&jpeg[..cut], 0, &Limits::default()));
        assert!(largest < 1 << 20, "cut at {cut}: {largest} bytes");
    }
    for position in (2..jpeg.len()).step_by(5) {
        let mut damaged = jpeg.clone();
        damaged[position] ^= 0x5A;
        let (_, largest) = largest_allocation(|| decode_bytes(&damaged, 0, &Limits::default()));
        // A damaged size field can legitimately ask for up to 65535x65535 pixels, which
        // the default limit (128 MP) rejects; anything accepted is bounded by that limit.
        assert!(largest < 400 << 20, "flip at {position}: {largest} bytes");
    }
}

// ---- real photos ----

/// Pillow's draft rule, written out independently: the largest 1/d (d = 8, 4, 2) with
/// shorter side >= d * min_side.
fn expected_draft(width: u32, height: u32, min_side: u32) -> (u32, u32) {
    let short = width.min(height);
    let d = [8, 4, 2]
        .into_iter()
        .find(|d| short >= d * min_side)
        .unwrap_or(1);
    (width.div_ceil(d), height.div_ceil(d))
}

#[test]
fn wallpaper_jpegs_decode_with_dct_scaling() {
    let min_side = 256;
    for path in photos("wallpapers", "jpg") {
        let (width, height) = image::image_dimensions(&path).unwrap();
        let d = decode_file(&path, min_side, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!((d.width, d.height), (width, height), "{}", path.display());
        let got = d.image.dimensions();
        assert_eq!(
            got,
            expected_draft(width, height, min_side),
            "{}",
            path.display()
        );
        let short = got.0.min(got.1);
        // Shrunk no further than asked, and (below 8 * 512 = 4096 originals) by as much as
        // possible: less than twice the requested size.
        assert!(
            short >= min_side.min(width.min(height)),
            "{}",
            path.display()
        );
        if width.min(height) >= 2 * min_side && width.min(height) < 16 * min_side {
            assert!(short < 2 * min_side, "{}: {got:?}", path.display());
        }
    }
}

#[test]
fn all_sample_photos_decode_at_full_size() {
    let mut count = 0;
    for (folder, extension) in [
        ("sklearn", "jpg"),
        ("skimage", "png"),
        ("skimage", "jpg"),
        ("opencv", "jpg"),
        ("opencv", "png"),
    ] {
        for path in photos(folder, extension) {
            let (width, height) = image::image_dimensions(&path).unwrap();
            let d = decode_file(&path, 0, &Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(d.image.dimensions(), (width, height), "{}", path.display());
            count += 1;
        }
    }
    assert!(count > 60, "only {count} photos");
}

// ---- preprocessing against Pillow (goldens made by the classic pipeline's steps) ----

#[test]
fn preprocessing_matches_pillow_goldens() {
    for (photo, golden) in [
        ("photos/sklearn/china.jpg", "golden_china_s64.png"),
        ("photos/skimage/coffee.png", "golden_coffee_s64.png"),
    ] {
        let p = Preprocessor::new(64);
        let d = decode_file(&testdata().join(photo), p.short_side(), &Limits::default()).unwrap();
        let mut crop = vec![0; p.tensor_len()];
        p.preprocess(&d.image, &mut crop).unwrap();
        let pillow = image::open(fixture(golden)).unwrap().to_rgb8();
        assert_eq!(pillow.as_raw().len(), crop.len());
        let (mut sum, mut worst) = (0.0f64, 0.0f64);
        for (ours, theirs) in crop.iter().zip(pillow.as_raw()) {
            let levels = f64::from(ours.abs_diff(*theirs));
            sum += levels;
            worst = worst.max(levels);
        }
        let mean = sum / crop.len() as f64;
        // Measured on 188 real photos at S = 224: decoded pixels identical to Pillow's (DCT
        // scaling included), crops off by 0.003 levels on average, at most 2 levels (the
        // resize's fixed-point rounding).
        assert!(mean < 0.05, "{photo}: mean {mean:.4} levels");
        assert!(worst <= 2.0, "{photo}: worst {worst} levels");
    }
}

// ---- throughput (run: cargo test --release --test image_decode -- --ignored --nocapture) ----

#[test]
#[ignore = "prints throughput; run in release mode"]
fn throughput() {
    let p = Preprocessor::new(224);
    let mut tensor = vec![0; p.tensor_len()];
    let big: Vec<PathBuf> = photos("wallpapers", "jpg")
        .into_iter()
        .filter(|f| image::image_dimensions(f).unwrap().0 >= 5120)
        .collect();
    let small = photos("opencv", "jpg");
    for (label, files) in [
        ("wallpapers >= 5120 wide", &big),
        ("opencv jpg (small)", &small),
    ] {
        let rounds = if files.len() < 20 { 5 } else { 2 };
        let start = Instant::now();
        for _ in 0..rounds {
            for f in files {
                let d = decode_file(f, p.short_side(), &Limits::default()).unwrap();
                p.preprocess(&d.image, &mut tensor).unwrap();
            }
        }
        let n = rounds * files.len();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{label}: {} files x {rounds}: {:.1} images/s ({:.2} ms each)",
            files.len(),
            n as f64 / secs,
            secs * 1000.0 / n as f64
        );
    }
}

/// A real photo as a lossy WebP with an alpha channel, written by libwebp's own encoder: its
/// left quarter fully transparent.
fn photo_as_webp_with_alpha() -> (Vec<u8>, u32, u32) {
    let photo = image::open(testdata().join("photos/sklearn/china.jpg"))
        .expect("china.jpg")
        .into_rgba8();
    let (width, height) = photo.dimensions();
    let mut rgba = photo;
    for (x, _, px) in rgba.enumerate_pixels_mut() {
        if x < width / 4 {
            px[3] = 0;
        }
    }
    let mut out = std::ptr::null_mut();
    // SAFETY: `rgba` holds width x height RGBA pixels at a stride of 4 x width; libwebp writes
    // the encoded bytes to a buffer of its own, freed below.
    let bytes = unsafe {
        let size = libwebp_sys::WebPEncodeRGBA(
            rgba.as_raw().as_ptr(),
            width as i32,
            height as i32,
            (width * 4) as i32,
            90.0,
            &mut out,
        );
        assert!(size > 0, "libwebp could not encode");
        let bytes = std::slice::from_raw_parts(out, size).to_vec();
        libwebp_sys::WebPFree(out.cast());
        bytes
    };
    (bytes, width, height)
}

/// Still WebP is decoded by libwebp: the same pixels as the `image` crate's pure Rust decoder
/// (an independent implementation of the format) within rounding, alpha composited on white,
/// at full size, and a cut file refused as truncated.
#[test]
fn webp_is_decoded_by_libwebp_like_the_pure_rust_decoder() {
    let (bytes, width, height) = photo_as_webp_with_alpha();
    let limits = Limits::default();
    let ours = decode_bytes(&bytes, 0, &limits).unwrap();
    assert_eq!((ours.width, ours.height), (width, height));
    assert_eq!(ours.image.dimensions(), (width, height));
    let theirs = image::load_from_memory_with_format(&bytes, image::ImageFormat::WebP)
        .unwrap()
        .into_rgba8();
    let mut on_white = RgbImage::new(width, height);
    for (out, px) in on_white.pixels_mut().zip(theirs.pixels()) {
        let alpha = u32::from(px[3]);
        for c in 0..3 {
            out[c] = ((u32::from(px[c]) * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        }
    }
    let diff = mean_abs_diff(&ours.image, &on_white);
    assert!(
        diff < 1.0,
        "mean abs diff {diff:.3} from the image crate's decoder"
    );
    // The transparent quarter is white, the rest is the photo.
    assert!(ours.image.get_pixel(1, height / 2).0 == [255, 255, 255]);
    assert!(ours.image.get_pixel(width - 2, height / 2).0 != [255, 255, 255]);

    // Full size whatever the size asked for: what the classic pipeline (Pillow) decodes too.
    let asked_small = decode_bytes(&bytes, 100, &limits).unwrap();
    assert_eq!(asked_small.image.dimensions(), (width, height));

    match decode_bytes(&bytes[..bytes.len() / 2], 0, &limits) {
        Err(ImageError::Truncated(Format::WebP)) => {}
        other => panic!("expected a truncated WebP, got {other:?}"),
    }
}

/// Hostile WebP: a header declaring 16383 x 16383 pixels is refused before any pixel memory
/// is allocated, and every cut of a real WebP is an error, never a panic or a bigger buffer
/// than its picture (the allocations counted are ours: libwebp's own go through malloc).
#[test]
fn hostile_webp_is_refused_before_allocating() {
    // RIFF, then a lossless (VP8L) bitstream header: signature 0x2f, then width - 1 and
    // height - 1 in 14 bits each, an alpha bit and a 3-bit version (0).
    let dims: u32 = 16382 | (16382 << 14);
    let mut vp8l = vec![0x2f];
    vp8l.extend_from_slice(&dims.to_le_bytes());
    vp8l.extend_from_slice(&[0; 16]);
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(4 + 8 + vp8l.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"WEBPVP8L");
    bytes.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&vp8l);
    let (result, largest) = largest_allocation(|| decode_bytes(&bytes, 0, &Limits::default()));
    match result {
        Err(ImageError::TooLarge { width, height, .. }) => {
            assert_eq!((width, height), (16383, 16383));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");

    let (webp, width, height) = photo_as_webp_with_alpha();
    let full = (width * height * 4) as usize;
    for cut in (0..webp.len()).step_by(97) {
        let (result, largest) =
            largest_allocation(|| decode_bytes(&webp[..cut], 0, &Limits::default()));
        assert!(result.is_err(), "cut at {cut} of {} decoded", webp.len());
        assert!(largest <= full, "cut at {cut}: {largest} bytes");
    }
}

#[test]
fn a_webp_chunk_larger_than_the_file_is_refused_without_allocating_it() {
    // tests/fuzz.rs found it: the EXIF chunk of a real WebP declaring 3.75 GiB made the
    // orientation lookup allocate that much before reading.
    let mut bytes = std::fs::read(fixture("china_exif.webp")).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"EXIF")
        .expect("an EXIF chunk")
        + 4;
    bytes[at..at + 4].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    let (result, largest) = largest_allocation(|| decode_bytes(&bytes, 0, &Limits::default()));
    assert!(
        matches!(result, Err(ImageError::Truncated(Format::WebP))),
        "{:?}",
        result.map(|d| d.image.dimensions())
    );
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
    // The file as written still decodes, its EXIF chunk read by our own chunk walk.
    let whole = decode("china_exif.webp");
    assert_eq!((whole.width, whole.height), (64, 48));
}
