//! Photo facts (date taken, camera, GPS position) read from EXIF, checked against ExifTool 12.57
//! (Debian libimage-exiftool-perl 12.57+dfsg-1), an independent reader: on committed fixtures
//! whose EXIF ExifTool wrote (tests/fixtures/CREDITS.md says how), and on the real camera photos
//! among the wallpapers cached by scripts/fetch-test-data.sh.
//!
//! Expected values are ExifTool's `-n` output (`exiftool -n -IFD0:Make -IFD0:Model
//! -ExifIFD:DateTimeOriginal -ExifIFD:CreateDate -IFD0:ModifyDate -GPS:all FILE`), reformatted:
//! dates as "YYYY-MM-DDTHH:MM:SS", positions signed by their refs.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use common::{fixture, photo};
use lookalike::image::PhotoFacts;

/// What ExifTool says a file's EXIF holds, and the camera string our rule makes of it.
struct Expected {
    file: &'static str,
    make: Option<&'static str>,
    model: Option<&'static str>,
    taken: Option<&'static str>,
    position: Option<(f64, f64)>,
    camera: Option<&'static str>,
}

fn facts_of(path: &Path) -> PhotoFacts {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    PhotoFacts::of_bytes(&bytes)
}

fn check(path: &Path, expected: &Expected) {
    let facts = facts_of(path);
    let name = expected.file;
    assert_eq!(facts.camera_make.as_deref(), expected.make, "{name}: make");
    assert_eq!(
        facts.camera_model.as_deref(),
        expected.model,
        "{name}: model"
    );
    assert_eq!(facts.taken.as_deref(), expected.taken, "{name}: taken");
    assert_eq!(facts.camera().as_deref(), expected.camera, "{name}: camera");
    match (expected.position, facts.latitude, facts.longitude) {
        (None, None, None) => {}
        (Some((lat, lon)), Some(got_lat), Some(got_lon)) => {
            // ExifTool prints 15 significant digits.
            assert!(
                (got_lat - lat).abs() < 1e-9,
                "{name}: latitude {got_lat} != {lat}"
            );
            assert!(
                (got_lon - lon).abs() < 1e-9,
                "{name}: longitude {got_lon} != {lon}"
            );
        }
        (expected, lat, lon) => panic!("{name}: position {lat:?}, {lon:?} != {expected:?}"),
    }
    assert_eq!(
        facts.is_empty(),
        expected.make.is_none()
            && expected.model.is_none()
            && expected.taken.is_none()
            && expected.position.is_none(),
        "{name}: is_empty"
    );
}

/// The committed fixtures, whose EXIF ExifTool 12.57 wrote (WebP: ExifTool's EXIF block put in
/// the EXIF chunk by Pillow, as ExifTool 12.57 does not write WebP).
const FIXTURES: &[Expected] = &[
    // DateTimeOriginal wins over CreateDate (2019:07:15 08:00:00) and ModifyDate.
    Expected {
        file: "china_exif_gps.jpg",
        make: Some("Canon"),
        model: Some("Canon EOS 5D Mark II"),
        taken: Some("2019-07-14T16:32:05"),
        position: Some((48.8584, 2.2945)),
        camera: Some("Canon EOS 5D Mark II"),
    },
    // PNG eXIf chunk; no DateTimeOriginal: DateTimeDigitized (ExifTool's CreateDate) wins over
    // ModifyDate (2022:03:01 00:00:00); southern hemisphere.
    Expected {
        file: "china_exif.png",
        make: Some("NIKON CORPORATION"),
        model: Some("NIKON D70"),
        taken: Some("2021-02-28T23:59:59"),
        position: Some((-33.8568, 151.2153)),
        camera: Some("NIKON D70"),
    },
    // WebP EXIF chunk; only DateTime (ModifyDate), a leap day; western hemisphere.
    Expected {
        file: "china_exif.webp",
        make: Some("SONY"),
        model: Some("ILCE-7M3"),
        taken: Some("2016-02-29T06:07:08"),
        position: Some((40.6892, -74.0445)),
        camera: Some("SONY ILCE-7M3"),
    },
    // TIFF: the facts sit in the image's own IFD0.
    Expected {
        file: "china_exif.tif",
        make: Some("OLYMPUS IMAGING CORP."),
        model: Some("E-M1"),
        taken: Some("2010-10-10T10:10:10"),
        position: None,
        camera: Some("OLYMPUS E-M1"),
    },
    // Junk: DateTimeOriginal "0000:00:00 00:00:00" and DateTimeDigitized "2019:13:01 10:00:00"
    // are skipped for DateTime; Make "  " is blank; Model "Canon EOS 5D Mark II    " is
    // trimmed; GPS 0/1 0/1 0/1 without refs is no position.
    Expected {
        file: "china_exif_junk.jpg",
        make: None,
        model: Some("Canon EOS 5D Mark II"),
        taken: Some("2018-06-30T10:11:12"),
        position: None,
        camera: Some("Canon EOS 5D Mark II"),
    },
];

#[test]
fn fixtures_written_by_exiftool() {
    for expected in FIXTURES {
        check(&fixture(expected.file), expected);
    }
}

#[test]
fn files_without_facts_are_empty() {
    // china_exif6.jpg has EXIF, but only an orientation; the others have none, or are broken.
    for name in [
        "china_64x48.jpg",
        "china_64x48.png",
        "china_64x48.tif",
        "china_64x48.webp",
        "china_64x48.bmp",
        "china_2frames.gif",
        "china_exif6.jpg",
        "camera_grey.jpg",
        "truncated.jpg",
        "truncated.png",
        "corrupt.webp",
        "empty.jpg",
        "text.jpg",
        "huge_header.png",
    ] {
        let facts = facts_of(&fixture(name));
        assert!(facts.is_empty(), "{name}: {facts:?}");
        assert_eq!(facts.camera(), None, "{name}");
        assert_eq!(serde_json::to_string(&facts).unwrap(), "{}", "{name}");
    }
}

#[test]
fn truncated_exif_keeps_what_precedes_the_cut_and_never_panics() {
    let bytes = std::fs::read(fixture("china_exif_gps.jpg")).unwrap();
    let whole = PhotoFacts::of_bytes(&bytes);
    assert_eq!(whole.latitude, Some(48.8584));
    for cut in 0..bytes.len() {
        let facts = PhotoFacts::of_bytes(&bytes[..cut]);
        // A cut inside the APP1 segment loses all of it (its length runs past the end); a cut
        // after it loses nothing (the scans are never read).
        assert!(
            facts.is_empty() || facts == whole,
            "cut at {cut}: {facts:?}"
        );
    }
    assert_eq!(PhotoFacts::of_bytes(&bytes[..bytes.len() / 2]), whole);
    // The TIFF, PNG and WebP containers, cut anywhere, only ever lose facts.
    for name in ["china_exif.tif", "china_exif.png", "china_exif.webp"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let whole = PhotoFacts::of_bytes(&bytes);
        for cut in (0..bytes.len()).step_by(7) {
            let facts = PhotoFacts::of_bytes(&bytes[..cut]);
            let subset = [
                facts.camera_make.is_none() || facts.camera_make == whole.camera_make,
                facts.camera_model.is_none() || facts.camera_model == whole.camera_model,
                facts.taken.is_none() || facts.taken == whole.taken,
                facts.latitude.is_none() || facts.latitude == whole.latitude,
                facts.longitude.is_none() || facts.longitude == whole.longitude,
            ];
            assert!(
                subset.iter().all(|&ok| ok),
                "{name} cut at {cut}: {facts:?}"
            );
        }
    }
}

/// Every wallpaper whose EXIF names a camera, a date or a position, as ExifTool 12.57 reads it;
/// the others (40 files when this was written) have no EXIF Make, Model, dates or GPS at all.
const WALLPAPERS: &[Expected] = &[
    Expected {
        file: "mate-backgrounds_usr_share_backgrounds_mate_abstract_Elephants_3840x2160.jpg",
        make: Some("SONY"),
        model: Some("DSC-RX100M4"),
        taken: Some("2020-02-19T16:35:05"),
        position: None,
        camera: Some("SONY DSC-RX100M4"),
    },
    Expected {
        file: "mate-backgrounds_usr_share_backgrounds_mate_abstract_Elephants_5640x3172.jpg",
        make: Some("SONY"),
        model: Some("DSC-RX100M4"),
        taken: Some("2020-02-19T16:35:05"),
        position: None,
        camera: Some("SONY DSC-RX100M4"),
    },
    Expected {
        file: "mate-backgrounds_usr_share_backgrounds_mate_nature_Blinds.jpg",
        make: Some("Canon"),
        model: Some("Canon EOS 350D DIGITAL"),
        taken: Some("2008-01-22T03:28:22"),
        position: None,
        camera: Some("Canon EOS 350D DIGITAL"),
    },
    Expected {
        file: "mate-backgrounds_usr_share_backgrounds_mate_nature_Dune.jpg",
        make: Some("Canon"),
        model: Some("Canon EOS DIGITAL REBEL"),
        taken: Some("2007-08-06T10:29:13"),
        position: None,
        camera: Some("Canon EOS DIGITAL REBEL"),
    },
    Expected {
        file: "mate-backgrounds_usr_share_backgrounds_mate_nature_Storm.jpg",
        make: Some("Canon"),
        model: Some("Canon EOS 400D DIGITAL"),
        taken: Some("2008-04-20T19:12:06"),
        position: None,
        camera: Some("Canon EOS 400D DIGITAL"),
    },
    Expected {
        file: "mate-backgrounds_usr_share_backgrounds_mate_nature_Wood.jpg",
        make: Some("KONICA MINOLTA"),
        model: Some("DiMAGE Z5"),
        taken: Some("2008-04-19T13:43:16"),
        position: None,
        camera: Some("KONICA MINOLTA DiMAGE Z5"),
    },
    Expected {
        file: "palapeli-data_usr_share_palapeli_collection_castle-maintenon.jpg",
        make: Some("NIKON CORPORATION"),
        model: Some("NIKON D3"),
        taken: Some("2008-04-12T14:28:38"),
        position: None,
        camera: Some("NIKON D3"),
    },
    // Big-endian (Motorola) EXIF.
    Expected {
        file: "palapeli-data_usr_share_palapeli_collection_cincinnati-bridge.jpg",
        make: Some("OLYMPUS OPTICAL CO.,LTD"),
        model: Some("X-2,C-50Z"),
        taken: Some("2002-01-01T02:05:06"),
        position: None,
        camera: Some("OLYMPUS X-2,C-50Z"),
    },
    Expected {
        file: "palapeli-data_usr_share_palapeli_collection_european-honey-bee.jpg",
        make: Some("NIKON CORPORATION"),
        model: Some("NIKON D50"),
        taken: Some("2006-10-01T12:00:46"),
        position: None,
        camera: Some("NIKON D50"),
    },
    Expected {
        file: "palapeli-data_usr_share_palapeli_collection_panther-chameleon-female.jpg",
        make: Some("EASTMAN KODAK COMPANY"),
        model: Some("KODAK DX6440 ZOOM DIGITAL CAMERA"),
        taken: Some("2005-05-07T11:57:01"),
        position: None,
        camera: Some("KODAK DX6440 ZOOM DIGITAL CAMERA"),
    },
    // DateTimeOriginal only.
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_BytheWater_contents_images_2560x1600.jpg",
        make: Some("Nokia"),
        model: Some("N9"),
        taken: Some("2015-04-29T14:33:31"),
        position: None,
        camera: Some("Nokia N9"),
    },
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_ColdRipple_contents_images_2560x1600.jpg",
        make: Some("OLYMPUS IMAGING CORP."),
        model: Some("E-M1"),
        taken: Some("2015-06-21T02:05:56"),
        position: None,
        camera: Some("OLYMPUS E-M1"),
    },
    // GPS as degrees and decimal minutes (56/1 9359705/1000000 0/1, 10/1 12492287/1000000 0/1).
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_ColorfulCups_contents_images_2560x1600.jpg",
        make: Some("SONY"),
        model: Some("NEX-3N"),
        taken: Some("2014-04-29T14:25:26"),
        position: Some((56.1559950833333, 10.2082047833333)),
        camera: Some("SONY NEX-3N"),
    },
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_DarkestHour_contents_images_2560x1600.jpg",
        make: Some("OLYMPUS IMAGING CORP."),
        model: Some("E-M1"),
        taken: Some("2015-06-21T01:43:36"),
        position: None,
        camera: Some("OLYMPUS E-M1"),
    },
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_FallenLeaf_contents_images_2560x1600.jpg",
        make: Some("Canon"),
        model: Some("Canon EOS 70D"),
        taken: Some("2015-10-29T15:44:44"),
        position: None,
        camera: Some("Canon EOS 70D"),
    },
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_Kite_contents_images_2560x1600.jpg",
        make: Some("OLYMPUS IMAGING CORP."),
        model: Some("E-M1"),
        taken: Some("2015-07-21T16:17:44"),
        position: None,
        camera: Some("OLYMPUS E-M1"),
    },
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_OneStandsOut_contents_images_2560x1600.jpg",
        make: Some("OLYMPUS IMAGING CORP."),
        model: Some("E-M1"),
        taken: Some("2015-09-06T12:01:47"),
        position: None,
        camera: Some("OLYMPUS E-M1"),
    },
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_Path_contents_images_2560x1600.jpg",
        make: Some("OLYMPUS IMAGING CORP."),
        model: Some("E-M1"),
        taken: Some("2015-09-06T18:46:57"),
        position: None,
        camera: Some("OLYMPUS E-M1"),
    },
    // Only DateTime (ExifTool's IFD0 ModifyDate): a render, not a camera photo.
    Expected {
        file: "plasma-workspace-wallpapers_usr_share_wallpapers_SafeLanding_contents_images_1622x2880.jpg",
        make: None,
        model: None,
        taken: Some("2022-05-23T19:21:22"),
        position: None,
        camera: None,
    },
];

#[test]
fn real_camera_photos_agree_with_exiftool() {
    for expected in WALLPAPERS {
        check(&photo(&format!("wallpapers/{}", expected.file)), expected);
    }
}

#[test]
fn real_photos_without_exif_facts_are_empty() {
    let with_facts: HashSet<&str> = WALLPAPERS.iter().map(|e| e.file).collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(photo("wallpapers")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if with_facts.contains(name.as_str()) {
            continue;
        }
        let facts = facts_of(&path);
        assert!(
            facts.is_empty(),
            "{name}: {facts:?} (ExifTool 12.57 found no EXIF Make, Model, dates or GPS in the \
             wallpapers outside WALLPAPERS; a new file needs its ExifTool values there)"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} wallpapers without facts");
}

// ---- cost (run: cargo test --release --test photo_facts -- --ignored --nocapture) ----

#[test]
#[ignore = "prints the cost per call; run in release mode"]
fn cost_per_call() {
    let wallpaper = |name: &str| photo(&format!("wallpapers/{name}"));
    for (label, path) in [
        (
            "Elephants 3840x2160, 8.5 MB, EXIF",
            wallpaper("mate-backgrounds_usr_share_backgrounds_mate_abstract_Elephants_3840x2160.jpg"),
        ),
        (
            "Elephants 5640x3172, 16.4 MB, EXIF",
            wallpaper("mate-backgrounds_usr_share_backgrounds_mate_abstract_Elephants_5640x3172.jpg"),
        ),
        (
            "ColorfulCups 2560x1600, 0.7 MB, EXIF + GPS + XMP",
            wallpaper("plasma-workspace-wallpapers_usr_share_wallpapers_ColorfulCups_contents_images_2560x1600.jpg"),
        ),
        (
            "Volna 5120x2880, 4.6 MB, no EXIF",
            wallpaper("plasma-workspace-wallpapers_usr_share_wallpapers_Volna_contents_images_5120x2880.jpg"),
        ),
        ("china_exif.png", fixture("china_exif.png")),
        ("china_exif.tif", fixture("china_exif.tif")),
    ] {
        let bytes = std::fs::read(&path).unwrap();
        let rounds = 2_000;
        let start = Instant::now();
        let mut found = 0;
        for _ in 0..rounds {
            found += usize::from(!std::hint::black_box(PhotoFacts::of_bytes(&bytes)).is_empty());
        }
        let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
        println!("{label}: {micros:.1} us per call ({found} of {rounds} with facts)");
    }
}
