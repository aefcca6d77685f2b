//! Spatial verification on real photos: an object photographed alone is found in a cluttered
//! scene, unrelated photos are not verified, and `search --verify` re-ranks accordingly.

mod common;

use std::path::PathBuf;

use common::{photo, run_json};
use lookalike::verify::{inliers, LocalFeatures, VerifyOptions};

fn features(relative: &str) -> LocalFeatures {
    let image = lookalike::image::decode_file(
        &photo(relative),
        lookalike::verify::DECODE_SIDE,
        &Default::default(),
    )
    .expect("photo decodes")
    .image;
    LocalFeatures::of(&image).expect("features")
}

const MIN: usize = VerifyOptions::DEFAULT_MIN_INLIERS;

/// OpenCV's own feature-matching example: box.png is the box that sits, smaller and turned,
/// among other things in box_in_scene.png. left.jpg and right.jpg are another cluttered
/// scene, which the global descriptor ranks above box.png for box_in_scene.png.
#[test]
fn the_box_is_verified_in_its_scene_and_not_in_another_room() {
    let (object, scene) = (
        features("opencv/box.png"),
        features("opencv/box_in_scene.png"),
    );
    let (left, right) = (features("opencv/left.jpg"), features("opencv/right.jpg"));
    assert!(
        object.len() > 100 && scene.len() > 100,
        "{} {}",
        object.len(),
        scene.len()
    );
    let found = inliers(&object, &scene);
    assert!(found >= MIN, "box in its scene: {found} inliers");
    assert!(inliers(&scene, &object) >= MIN, "and from the scene's side");
    for (name, other) in [("left", &left), ("right", &right)] {
        let n = inliers(&scene, other);
        assert!(n < MIN, "box_in_scene vs {name}: {n} inliers");
        let n = inliers(&object, other);
        assert!(n < MIN, "box vs {name}: {n} inliers");
    }
    // The two views of the stereo pair are one scene.
    assert!(inliers(&left, &right) >= MIN);
}

/// A copy turned a quarter turn and shrunk to 60% is still the same picture: orientation and
/// the pyramid make the features invariant to both.
#[test]
fn a_turned_and_shrunk_copy_keeps_most_matches() {
    let original = lookalike::image::decode_file(
        &photo("skimage/coffee.png"),
        lookalike::verify::DECODE_SIDE,
        &Default::default(),
    )
    .expect("photo decodes")
    .image;
    let turned = image::imageops::rotate90(&original);
    let (w, h) = turned.dimensions();
    let copy = image::imageops::resize(
        &turned,
        w * 3 / 5,
        h * 3 / 5,
        image::imageops::FilterType::Triangle,
    );
    let a = LocalFeatures::of(&original).unwrap();
    let b = LocalFeatures::of(&copy).unwrap();
    let n = inliers(&a, &b);
    assert!(n >= 5 * MIN, "{n} inliers of {} features", a.len());
    let unrelated = features("skimage/astronaut.png");
    assert!(inliers(&a, &unrelated) < MIN);
}

/// `search --verify`: box_in_scene.png (not indexed) finds box.png first, with its inlier
/// count in the JSON; without verification the rows carry no inliers field. A result whose
/// file is gone since it was indexed stays in the list, unverified.
#[test]
fn search_with_verification_puts_the_verified_object_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let photos = common::copy_photos(
        &dir.path().join("photos"),
        &[
            ("opencv/box.png", "box.png"),
            ("opencv/left.jpg", "left.jpg"),
            ("opencv/right.jpg", "right.jpg"),
            ("opencv/left01.jpg", "left01.jpg"),
            ("opencv/right01.jpg", "right01.jpg"),
            ("opencv/graf1.png", "graf1.png"),
            ("skimage/coffee.png", "coffee.png"),
        ],
    );
    let mut args = vec!["index".to_owned()];
    args.extend(photos.iter().map(|p| p.display().to_string()));
    common::run_ok(&db, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let query = photo("opencv/box_in_scene.png");
    let query = query.to_str().unwrap();

    let plain = run_json(&db, &["search", "--json", "-k", "7", query]);
    let rows = plain["results"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().all(|r| r.get("inliers").is_none()));
    let plain_rank = rows
        .iter()
        .position(|r| r["path"].as_str().unwrap().ends_with("/box.png"))
        .unwrap();

    let verified = run_json(
        &db,
        &["search", "--json", "-k", "3", "--verify", "7", query],
    );
    let rows = verified["results"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0]["path"].as_str().unwrap().ends_with("/box.png"),
        "verified top: {} (rank {} unverified)",
        rows[0]["path"],
        plain_rank + 1
    );
    assert!(rows[0]["inliers"].as_u64().unwrap() >= MIN as u64);
    // The others were verified too, and failed: they follow in the global order.
    assert!(rows[1..]
        .iter()
        .all(|r| r["inliers"].as_u64().unwrap() < MIN as u64));
    assert!(rows[1]["score"].as_f64().unwrap() >= rows[2]["score"].as_f64().unwrap());

    // A query by item id is verified against the item's file: box.png matches itself.
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    let by_id = run_json(
        &db,
        &["search", "--json", "-k", "2", "--verify", "7", "--id", &id],
    );
    let top = &by_id["results"][0];
    assert_eq!(top["id"].as_i64().unwrap().to_string(), id);
    assert!(top["inliers"].as_u64().unwrap() >= 5 * MIN as u64, "{top}");

    // right.jpg disappears: it is still a result (the index has not been told), unverified.
    std::fs::remove_file(dir.path().join("photos/right.jpg")).unwrap();
    let verified = run_json(
        &db,
        &["search", "--json", "-k", "7", "--verify", "7", query],
    );
    let rows = verified["results"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    assert!(rows[0]["path"].as_str().unwrap().ends_with("/box.png"));
    for row in rows {
        let gone = row["path"].as_str().unwrap().ends_with("/right.jpg");
        assert_eq!(row.get("inliers").is_none(), gone, "{row}");
    }
}

/// Calibration of [`VerifyOptions::DEFAULT_MIN_INLIERS`]: inlier counts of every pair of the
/// cached photos, split into the same-scene pairs of the instance benchmark and all other
/// pairs (the photos of one collection, e.g. the chessboard shots left01..right14, excluded:
/// they are the same board). Prints the distribution (BENCHMARKS.md).
///
///   cargo test --release --test verify calibration -- --ignored --nocapture
#[test]
#[ignore]
fn calibration() {
    let pairs = [
        ("graf1.png", "graf3.png"),
        ("box.png", "box_in_scene.png"),
        ("aero1.jpg", "aero3.jpg"),
        ("left.jpg", "right.jpg"),
        ("aloeL.jpg", "aloeR.jpg"),
        ("leuvenA.jpg", "leuvenB.jpg"),
        ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"),
        ("rubberwhale1.png", "rubberwhale2.png"),
        ("basketball1.png", "basketball2.png"),
        ("imageTextN.png", "imageTextR.png"),
        ("text_defocus.jpg", "text_motion.jpg"),
        ("ela_original.jpg", "ela_modified.jpg"),
        ("motorcycle_left.png", "motorcycle_right.png"),
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(photo(""))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let start = std::time::Instant::now();
    let described: Vec<(String, LocalFeatures)> = files
        .iter()
        .filter_map(|p| {
            let image = lookalike::image::decode_file(
                p,
                lookalike::verify::DECODE_SIDE,
                &Default::default(),
            )
            .ok()?;
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name, LocalFeatures::of(&image.image).ok()?))
        })
        .collect();
    let describe_time = start.elapsed();
    // One subject's several files are never "unrelated": numbered shots (left01..right14),
    // stereo halves, a wallpaper's renditions (sizes, a dark variant), grey and RGB copies.
    let family = |name: &str| {
        let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
        let mut key = stem.to_lowercase();
        key.retain(|c| c.is_ascii_alphabetic());
        for word in ["left", "right", "dark", "gray", "rgb"] {
            key = key.replace(word, "");
        }
        key.trim_end_matches('x').to_owned()
    };
    let (mut same, mut other) = (Vec::new(), Vec::new());
    let start = std::time::Instant::now();
    let mut compared = 0;
    for (i, (a, fa)) in described.iter().enumerate() {
        for (b, fb) in &described[i + 1..] {
            compared += 1;
            let n = inliers(fa, fb);
            if pairs
                .iter()
                .any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b))
            {
                same.push((n, format!("{a} ~ {b}")));
            } else if family(a) != family(b) {
                other.push((n, format!("{a} ~ {b}")));
            }
        }
    }
    let match_time = start.elapsed();
    same.sort();
    other.sort();
    println!(
        "{} photos described in {:.1} s ({:.1} ms each); {compared} pairs verified in {:.1} s ({:.2} ms each)",
        described.len(),
        describe_time.as_secs_f64(),
        describe_time.as_secs_f64() * 1e3 / described.len() as f64,
        match_time.as_secs_f64(),
        match_time.as_secs_f64() * 1e3 / compared as f64
    );
    println!("same-scene pairs: {same:?}");
    let quantile = |q: f64| other[((other.len() - 1) as f64 * q) as usize].0;
    println!(
        "{} unrelated pairs: median {}, 99% {}, 99.9% {}, max {}",
        other.len(),
        quantile(0.5),
        quantile(0.99),
        quantile(0.999),
        other.last().unwrap().0
    );
    println!(
        "most inliers among unrelated pairs: {:?}",
        &other[other.len().saturating_sub(10)..]
    );
    assert_eq!(same.len(), pairs.len());
}
