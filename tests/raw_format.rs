//! Camera RAW files decode through their largest embedded JPEG preview, upright, with the
//! pixels LibRaw's choice of preview gives; small or missing previews are refused with a
//! reason; damaged files are refused cleanly. Fixtures and the reference values: see
//! tests/fixtures/CREDITS.md (made by tests/fixtures/make_raw.py).

mod common;
#[path = "support/largest_allocation.rs"]
mod largest_allocation;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::fixture;
use largest_allocation::largest_allocation;
use lookalike::image::{decode_bytes, decode_file, sniff, Decoded, Format, ImageError, Limits};
use sha2::{Digest, Sha256};

// ---- fixtures ----

/// DNGs written by tifffile with real JPEG previews: Adobe's layout (preview in a SubIFD's
/// strip) and NEF's (a SubIFD pointing at it with JPEGInterchangeFormat, Orientation 6).
const DNGS: [&str; 2] = ["raw_subifd_preview.dng", "raw_jpgfromraw_orient6.dng"];

/// Real camera files from ExifTool's test suite (previews shrunk to 8x8 or removed).
const CAMERA_FILES: [&str; 6] = [
    "raw_canon_eos350d.cr2",
    "raw_canon_eosm50.cr3",
    "raw_canon_eos350d.dng",
    "raw_fujifilm_s5pro.raf",
    "raw_nikon_d70.nef",
    "raw_panasonic_lx3.rw2",
];

fn all_fixtures() -> impl Iterator<Item = &'static str> {
    DNGS.into_iter().chain(CAMERA_FILES)
}

/// LibRaw's answers for each fixture (tests/fixtures/raw_reference.json).
fn reference(name: &str) -> serde_json::Value {
    let json = std::fs::read(fixture("raw_reference.json")).unwrap();
    let all: serde_json::Value = serde_json::from_slice(&json).unwrap();
    all[name].clone()
}

fn size(value: &serde_json::Value) -> (u32, u32) {
    let side = |i: usize| u32::try_from(value[i].as_u64().unwrap()).unwrap();
    (side(0), side(1))
}

fn decode(name: &str, min_side: u32) -> Decoded {
    decode_file(&fixture(name), min_side, &Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn decode_err(name: &str) -> ImageError {
    match decode_file(&fixture(name), 0, &Limits::default()) {
        Ok(d) => panic!("{name} decoded to {}x{}", d.image.width(), d.image.height()),
        Err(e) => e,
    }
}

fn pixels_sha256(decoded: &Decoded) -> String {
    hex::encode(Sha256::digest(decoded.image.as_raw()))
}

// ---- decoding ----

#[test]
fn dngs_give_the_pixels_of_libraws_preview_upright() {
    for name in DNGS {
        let reference = reference(name);
        let upright = size(&reference["upright_size"]);
        let d = decode(name, 0);
        assert_eq!(d.format, Format::Raw, "{name}");
        assert_eq!((d.width, d.height), upright, "{name}");
        assert_eq!(d.image.dimensions(), upright, "{name}");
        // LibRaw's preview decoded by Pillow (libjpeg-turbo) and turned by LibRaw's flip:
        // the same JPEG bytes through the same IDCT give the same pixels, bit for bit.
        assert_eq!(pixels_sha256(&d), reference["pixels_sha256"], "{name}");
    }
    // The second one is stored turned (Orientation 6): upright it is portrait.
    assert_eq!(size(&reference(DNGS[1])["upright_size"]), (256, 384));
}

#[test]
fn min_side_shrinks_the_preview_in_the_dct_domain() {
    for name in DNGS {
        let reference = reference(name);
        // Shorter side 256 >= 2 x 120: decoded at 1/2, as Pillow's draft does.
        let d = decode(name, 120);
        assert_eq!(
            d.image.dimensions(),
            size(&reference["half_size"]),
            "{name}"
        );
        assert_eq!(
            (d.width, d.height),
            size(&reference["upright_size"]),
            "{name}"
        );
        assert_eq!(pixels_sha256(&d), reference["half_pixels_sha256"], "{name}");
        // 256 < 2 x 200: full size.
        let d = decode(name, 200);
        assert_eq!(
            d.image.dimensions(),
            size(&reference["upright_size"]),
            "{name}"
        );
    }
}

#[test]
fn previews_too_small_to_index_are_refused_with_a_reason() {
    // Real Panasonic and Fujifilm files whose previews are 8x8 (LibRaw picks the same JPEG in
    // the RW2, and a 160x120 thumbnail inside the RAF's; both are too small).
    assert_eq!(
        size(&reference("raw_panasonic_lx3.rw2")["preview_size"]),
        (8, 8)
    );
    for name in ["raw_panasonic_lx3.rw2", "raw_fujifilm_s5pro.raf"] {
        match decode_err(name) {
            ImageError::Unsupported(reason) => {
                assert!(
                    reason.contains("largest embedded preview is 8x8 pixels, too small to index")
                        && reason.contains("export it as JPEG"),
                    "{name}: {reason}"
                );
            }
            other => panic!("{name}: {other}"),
        }
    }
}

#[test]
fn files_without_a_preview_are_refused_with_a_reason() {
    // Real NEF, DNG (big-endian) and CR2 whose previews ExifTool replaced by placeholder
    // text: LibRaw finds no thumbnail in the first two either (and cannot open the CR2).
    for name in [
        "raw_nikon_d70.nef",
        "raw_canon_eos350d.dng",
        "raw_canon_eos350d.cr2",
    ] {
        match decode_err(name) {
            ImageError::Unsupported(reason) => {
                assert!(
                    reason.contains("no embedded JPEG preview"),
                    "{name}: {reason}"
                );
            }
            other => panic!("{name}: {other}"),
        }
    }
    assert!(reference("raw_nikon_d70.nef")["preview"]
        .as_str()
        .unwrap()
        .starts_with("none"));
    // The CR3's preview box claims 372 kB where ExifTool left 82 bytes: cut off.
    assert!(matches!(
        decode_err("raw_canon_eosm50.cr3"),
        ImageError::Truncated(Format::Raw)
    ));
}

#[test]
fn raw_files_are_told_from_tiff_photos() {
    for name in all_fixtures() {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let signature = if name.ends_with(".dng") || name.ends_with(".nef") {
            Format::Tiff // told apart by their directories
        } else {
            Format::Raw
        };
        assert_eq!(sniff(&bytes), Some(signature), "{name}");
    }
    let photo = decode("china_exif.tif", 0);
    assert_eq!(photo.format, Format::Tiff);
    assert_eq!((photo.width, photo.height), (64, 48));
}

// ---- damage ----

/// Decodes `bytes` with a small pixel limit, failing with `what` on a panic or on an
/// allocation beyond what a 2-megapixel decode needs.
fn decode_damaged(bytes: &[u8], what: &str) -> Result<Decoded, ImageError> {
    let limits = Limits {
        max_pixels: 2_000_000,
        ..Limits::default()
    };
    let (result, largest) =
        largest_allocation(|| catch_unwind(AssertUnwindSafe(|| decode_bytes(bytes, 64, &limits))));
    let result = result.unwrap_or_else(|_| panic!("{what}: panicked"));
    assert!(
        largest < 16 << 20,
        "{what}: allocated {largest} bytes at once"
    );
    result
}

#[test]
fn every_truncation_is_refused_cleanly() {
    for name in all_fixtures() {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in 0..bytes.len() {
            let result = decode_damaged(&bytes[..cut], &format!("{name} cut at {cut}"));
            // The DNGs' previews, and the directory pointing at one, lie at their ends: any
            // cut loses them. Past the first directory, the file is known for a cut RAW.
            if DNGS.contains(&name) {
                match result {
                    Err(ImageError::Truncated(Format::Raw)) => {}
                    Err(_) if cut < 1024 => {}
                    Err(e) => panic!("{name} cut at {cut}: {e}"),
                    Ok(_) => panic!("{name} cut at {cut} decoded"),
                }
            }
        }
    }
}

#[test]
fn random_corruptions_are_refused_cleanly_or_decode() {
    let mut rng = fastrand::Rng::with_seed(0x5241_5721);
    for name in all_fixtures() {
        let original = std::fs::read(fixture(name)).unwrap();
        let mut decoded = 0;
        for case in 0..2000 {
            let mut bytes = original.clone();
            for _ in 0..rng.usize(1..=4) {
                // Half of the hits in the first 4 kB, where the directories and boxes are.
                let at = if rng.bool() {
                    rng.usize(..original.len().min(4096))
                } else {
                    rng.usize(..original.len())
                };
                bytes[at] = rng.u8(..);
            }
            if let Ok(d) = decode_damaged(&bytes, &format!("{name} corruption {case}")) {
                assert_eq!(d.format, Format::Raw, "{name} corruption {case}");
                assert!(d.image.width() > 0 && d.image.height() > 0);
                decoded += 1;
            }
        }
        // Most hits in the DNGs land in sensor data, which leaves the preview intact.
        if DNGS.contains(&name) {
            assert!(decoded > 500, "{name}: only {decoded} of 2000 decoded");
        }
    }
}
