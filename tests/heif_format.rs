//! HEIC and AVIF: fixtures written by real encoders (x265 through Debian's heif-enc, aom through
//! libavif's avifenc, libheif 1.23 through pillow-heif for the rotated one), decoded and compared
//! with the reference decoders' output (heif-convert, avifdec), then indexed and searched.
//! tests/fixtures/make_heif_fixtures.sh made them all; CREDITS.md there says with what.

mod common;

use std::path::Path;

use common::{fixture, photo, run_json, run_ok};
use image::{Rgb, RgbImage};
use lookalike::image::{
    decode_bytes, decode_file, Decoded, Format, ImageError, Limits, PhotoFacts,
};

fn decode(name: &str) -> Decoded {
    decode_file(&fixture(name), 0, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A reference decoder's PNG, read by the `image` crate (not the code under test), with any
/// transparency composited on white by the textbook formula.
fn reference(name: &str) -> RgbImage {
    let rgba = image::open(fixture(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white = |c: u8| {
            let (c, a) = (f64::from(c), f64::from(a));
            (c * a / 255.0 + 255.0 * (1.0 - a / 255.0)).round() as u8
        };
        Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

/// The largest and the mean absolute difference per sample, in 0-255 levels.
fn differences(a: &RgbImage, b: &RgbImage) -> (u8, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let diffs = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| x.abs_diff(y));
    let max = diffs.clone().max().unwrap_or(0);
    let mean = diffs.map(f64::from).sum::<f64>() / a.as_raw().len() as f64;
    (max, mean)
}

#[test]
fn heic_and_avif_decode_like_the_reference_decoders() {
    // (fixture, format, reference, largest and mean difference allowed). HEIC against
    // heif-convert, the same libheif: the same pixels. AVIF against avifdec, an independent
    // decoder: libheif 1.15 (Debian 12's) upsamples 4:2:0 chroma by repeating samples where
    // libavif (and libheif >= 1.16) interpolates, which moves colour edges by up to ~20 levels
    // and the mean by ~2 (1.85 measured on this crop).
    for (name, format, reference_png, max_allowed, mean_allowed) in [
        (
            "heic_china_exif_gps.heic",
            Format::Heif,
            "ref_heic_china_exif_gps.png",
            0,
            0.0,
        ),
        (
            "avif_china_exif_gps.avif",
            Format::Avif,
            "ref_avif_china_exif_gps.png",
            24,
            2.5,
        ),
        (
            "avif_china_10bit.avif",
            Format::Avif,
            "ref_avif_china_10bit.png",
            24,
            2.5,
        ),
        (
            "avif_chelsea_alpha.avif",
            Format::Avif,
            "ref_avif_chelsea_alpha.png",
            24,
            2.5,
        ),
    ] {
        let decoded = decode(name);
        assert_eq!(decoded.format, format, "{name}");
        assert_eq!((decoded.width, decoded.height), (64, 48), "{name}");
        let (max, mean) = differences(&decoded.image, &reference(reference_png));
        assert!(
            max <= max_allowed && mean <= mean_allowed,
            "{name}: differs from {reference_png} by up to {max} levels (mean {mean:.2})"
        );
    }
    // The 64x48 crop the encoders were given, lossless: every lossy copy stays near it.
    let original = image::open(fixture("china_64x48.png")).unwrap().to_rgb8();
    for name in [
        "heic_china_exif_gps.heic",
        "avif_china_exif_gps.avif",
        "avif_china_10bit.avif",
    ] {
        let (_, mean) = differences(&decode(name).image, &original);
        assert!(
            mean < 6.0,
            "{name}: {mean:.2} levels from the original crop"
        );
    }
}

#[test]
fn transparency_is_composited_on_white() {
    let decoded = decode("avif_chelsea_alpha.avif");
    // The fixture's first columns are fully transparent (CREDITS.md): white once composited.
    let first_column: Vec<[u8; 3]> = (0..48).map(|y| decoded.image.get_pixel(0, y).0).collect();
    assert!(
        first_column.iter().all(|px| px.iter().all(|&c| c >= 250)),
        "transparent pixels are not white: {first_column:?}"
    );
}

#[test]
fn the_container_rotation_is_applied_once() {
    // Stored 48x64 (sideways) with an `irot` turning it upright: libheif applies it; the EXIF
    // orientation is not applied on top.
    let decoded = decode("heic_china_irot.heic");
    assert_eq!((decoded.width, decoded.height), (64, 48));
    let (max, _) = differences(&decoded.image, &reference("ref_heic_china_irot.png"));
    assert_eq!(max, 0, "rotated HEIC differs from heif-convert's output");
    let original = image::open(fixture("china_64x48.png")).unwrap().to_rgb8();
    let (_, mean) = differences(&decoded.image, &original);
    assert!(mean < 6.0, "not upright: {mean:.2} levels from the crop");
}

#[test]
fn a_burst_decodes_its_primary_picture() {
    // Two pictures: the colour crop (primary) and a grey one.
    let decoded = decode("heic_burst.heic");
    assert_eq!((decoded.width, decoded.height), (64, 48));
    let (max, _) = differences(&decoded.image, &reference("ref_heic_burst.png"));
    assert_eq!(max, 0);
    let coloured = decoded
        .image
        .pixels()
        .filter(|p| p[0] != p[1] || p[1] != p[2])
        .count();
    assert!(
        coloured > 1000,
        "the grey picture came back instead of the primary one"
    );
}

#[test]
fn photo_facts_come_from_heic_and_avif_exif() {
    for name in ["heic_china_exif_gps.heic", "avif_china_exif_gps.avif"] {
        let facts = PhotoFacts::of_bytes(&std::fs::read(fixture(name)).unwrap());
        // The JPEG the encoders were given carries these (written by ExifTool, CREDITS.md).
        assert_eq!(
            facts.taken.as_deref(),
            Some("2019-07-14T16:32:05"),
            "{name}"
        );
        assert_eq!(
            facts.camera().as_deref(),
            Some("Canon EOS 5D Mark II"),
            "{name}"
        );
        let (lat, lon) = (facts.latitude.unwrap(), facts.longitude.unwrap());
        assert!(
            (lat - 48.8584).abs() < 1e-4 && (lon - 2.2945).abs() < 1e-4,
            "{name}"
        );
    }
}

#[test]
fn huge_declared_sizes_are_refused_before_decoding() {
    // The photo's `ispe` (image spatial extent) property rewritten to a larger size.
    let with_size = |side: u32| {
        let mut bytes = std::fs::read(fixture("heic_coffee.heic")).unwrap();
        let at = bytes
            .windows(4)
            .position(|w| w == b"ispe")
            .expect("an ispe box")
            + 8;
        bytes[at..at + 4].copy_from_slice(&side.to_be_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&side.to_be_bytes());
        decode_bytes(&bytes, 0, &Limits::default())
    };
    // 400 megapixels: over our limit, under libheif's.
    match with_size(20_000) {
        Err(ImageError::TooLarge { width, height, .. }) => {
            assert_eq!((width, height), (20_000, 20_000))
        }
        other => panic!(
            "expected TooLarge, got {:?}",
            other.map(|d| d.image.dimensions())
        ),
    }
    // Over libheif's own limit (32768 a side): it refuses the file as it reads it.
    let error = with_size(60_000).map(|d| d.image.dimensions()).unwrap_err();
    assert!(error.to_string().contains("safety limits"), "{error}");
}

#[test]
fn truncated_and_corrupt_files_are_refused_cleanly() {
    let limits = Limits::default();
    for name in [
        "heic_china_exif_gps.heic",
        "avif_chelsea_alpha.avif",
        "heic_burst.heic",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let whole = decode_bytes(&bytes, 0, &limits).unwrap().image;
        for cut in 1..bytes.len() {
            if let Ok(decoded) = decode_bytes(&bytes[..cut], 0, &limits) {
                // libheif may decode a picture whose last bytes are padding: never a different
                // size, and never from a cut inside the container's boxes.
                assert_eq!(
                    decoded.image.dimensions(),
                    whole.dimensions(),
                    "{name} cut at {cut}"
                );
                assert!(cut > bytes.len() / 2, "{name} cut at {cut} decoded");
            }
        }
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..1_000 {
            let mut damaged = bytes.clone();
            for _ in 0..rng.usize(1..8) {
                let at = rng.usize(..damaged.len());
                damaged[at] ^= 1 << rng.u8(..8);
            }
            // A flipped bit may well declare another size (ispe): still within the limits, and
            // the pixels returned are the size reported.
            if let Ok(decoded) = decode_bytes(&damaged, 0, &limits) {
                let (width, height) = decoded.image.dimensions();
                assert!(u64::from(width) * u64::from(height) <= limits.max_pixels);
                assert_eq!((width, height), (decoded.width, decoded.height));
            }
        }
    }
    // The messages say what is wrong.
    let bytes = std::fs::read(fixture("heic_china_exif_gps.heic")).unwrap();
    let error = decode_bytes(&bytes[..bytes.len() / 2], 0, &limits).unwrap_err();
    assert!(
        matches!(
            error,
            ImageError::Truncated(Format::Heif)
                | ImageError::Corrupt {
                    format: Format::Heif,
                    ..
                }
        ),
        "{error}"
    );
}

#[test]
fn heic_avif_and_raw_photos_are_indexed_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let library = dir.path().join("library");
    let db = dir.path().join("db");
    common::copy_photos(
        &library,
        &[
            ("skimage/astronaut.png", "astronaut.png"),
            ("skimage/chelsea.png", "chelsea.png"),
            ("skimage/rocket.jpg", "rocket.jpg"),
        ],
    );
    // The DNG's preview is coffee.png too (tests/raw_format.rs tests it); the RW2's is too
    // small to index, which must not stop the rest.
    for name in [
        "heic_coffee.heic",
        "avif_coffee.avif",
        "raw_subifd_preview.dng",
        "raw_panasonic_lx3.rw2",
    ] {
        std::fs::copy(fixture(name), library.join(name)).unwrap();
    }
    run_ok(&db, &["index", library.to_str().unwrap()]);
    assert_eq!(common::item_count(&db), 6, "3 photos, HEIC, AVIF and DNG");
    let query = photo("skimage/coffee.png");
    let found = run_json(
        &db,
        &["search", "--json", "-k", "3", query.to_str().unwrap()],
    );
    let results = found["results"].as_array().expect("results");
    let mut names: Vec<&str> = results
        .iter()
        .map(|r| {
            Path::new(r["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "avif_coffee.avif",
            "heic_coffee.heic",
            "raw_subifd_preview.dng"
        ]
    );
    for result in results {
        let score = result["score"].as_f64().unwrap();
        assert!(score > 0.9, "{}: score {score}", result["path"]);
    }
}
