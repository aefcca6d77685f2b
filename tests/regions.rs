//! Regions end to end on real photos: a detail cut out of a photo finds the photo, first, and
//! says where it was cut from; the regions survive kill -9, a corrupt snapshot and
//! re-indexing like everything else in an index.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{item_count, lookalike, run_json, wait_for};
use image::imageops::FilterType;
use lookalike::index::Region;
use serde_json::Value;

/// Large real photos (the wallpapers of data.md) and a few small ones, as a library holds.
fn library(dir: &Path, wallpapers: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(common::photo("wallpapers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    sources.sort();
    sources.truncate(wallpapers);
    for small in [
        "skimage/coffee.png",
        "skimage/chelsea.png",
        "opencv/graf1.png",
    ] {
        sources.push(common::photo(small));
    }
    sources
        .iter()
        .map(|src| {
            let dst = dir.join(src.file_name().unwrap());
            std::fs::copy(src, &dst).unwrap();
            dst
        })
        .collect()
}

/// Cuts `region` out of the photo at `src`, scales it by `scale` and saves it as a JPEG of
/// quality 80: what someone who screenshots part of a picture sends.
fn cut(src: &Path, region: Region, scale: f32, out: &Path) {
    let photo = image::open(src).unwrap().to_rgb8();
    let (w, h) = (photo.width() as f32, photo.height() as f32);
    let detail = image::imageops::crop_imm(
        &photo,
        (region.x * w) as u32,
        (region.y * h) as u32,
        (region.w * w) as u32,
        (region.h * h) as u32,
    )
    .to_image();
    let resized = image::imageops::resize(
        &detail,
        (detail.width() as f32 * scale) as u32,
        (detail.height() as f32 * scale) as u32,
        FilterType::Triangle,
    );
    let mut file = std::fs::File::create(out).unwrap();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 80)
        .encode_image(&resized)
        .unwrap();
}

fn search(db: &Path, query: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["search", "--json", "-k", "5"];
    args.extend_from_slice(extra);
    args.push(query.to_str().unwrap());
    run_json(db, &args)
}

fn box_of(result: &Value) -> Option<Region> {
    serde_json::from_value(result.get("box")?.clone()).ok()
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap().to_str().unwrap().to_owned()
}

/// A detail away from the centre: 16% of the area, in the lower left.
const DETAIL: Region = Region {
    x: 0.08,
    y: 0.52,
    w: 0.4,
    h: 0.4,
};

#[test]
fn a_detail_cut_from_a_photo_finds_it_first_and_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    let photos = library(&dir, 12);
    run_json(&db, &["index", "--json", dir.to_str().unwrap()]);
    let target = &photos[3];
    let query = tmp.path().join("detail.jpg");
    cut(target, DETAIL, 0.7, &query);

    // Found first by one of its regions, which lies around the detail.
    let found = search(&db, &query, &[]);
    let first = &found["results"][0];
    assert_eq!(first["path"], canonical(target).as_str(), "{found}");
    let coarse = box_of(first).expect("a box from the matching region");
    assert!(coarse.iou(&DETAIL) > 0.0, "{coarse:?} misses {DETAIL:?}");

    // Verification refines the box from the matched features.
    let verified = search(&db, &query, &["--verify", "5"]);
    let first = &verified["results"][0];
    assert_eq!(first["path"], canonical(target).as_str(), "{verified}");
    assert!(first["inliers"].as_u64().unwrap() >= 18, "{verified}");
    let refined = box_of(first).expect("a verified box");
    assert!(
        refined.iou(&DETAIL) >= 0.5,
        "verified box {refined:?} vs the truth {DETAIL:?}"
    );

    // The whole photo still finds itself whole: no region pushes out the identical image,
    // and its score is not a region's.
    let whole = search(&db, target, &[]);
    let first = &whole["results"][0];
    assert_eq!(first["path"], canonical(target).as_str(), "{whole}");
    assert!(first.get("box").is_none(), "{whole}");

    // An index made without regions has no boxes to give.
    let plain = tmp.path().join("plain");
    run_json(
        &plain,
        &["index", "--json", "--regions", "off", dir.to_str().unwrap()],
    );
    let found = search(&plain, &query, &[]);
    let results = found["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r.get("box").is_none()), "{found}");
}

#[test]
fn regions_survive_kill_9_a_corrupt_snapshot_and_reindexing() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    let photos = library(&dir, 40);
    let mut child = lookalike(&db)
        .args(["index", "--commit-every", "4", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first commits", || item_count(&db) >= 8);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed = item_count(&db);
    assert!(
        committed < photos.len() as u64,
        "killed mid-run: {committed}"
    );

    // The next run finishes; a detail of a photo committed before the kill and one of a
    // photo added after it are both found.
    let r = run_json(&db, &["index", "--json", dir.to_str().unwrap()]);
    assert_eq!(r["unchanged"].as_u64(), Some(committed), "{r}");
    let found_first = |db: &Path, photo: &Path, name: &str| {
        let query = tmp.path().join(name);
        cut(photo, DETAIL, 0.7, &query);
        let found = search(db, &query, &[]);
        found["results"][0]["path"] == canonical(photo).as_str()
    };
    let (before, after) = (&photos[0], &photos[photos.len() - 2]);
    assert!(found_first(&db, before, "before.jpg"));
    assert!(found_first(&db, after, "after.jpg"));

    // A corrupt region snapshot is set aside and rebuilt from the catalog.
    let snapshot = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("regions-")
        })
        .expect("a region snapshot");
    std::fs::write(&snapshot, b"not a usearch file").unwrap();
    assert!(found_first(&db, before, "again.jpg"));

    // Re-indexing a changed file replaces its regions: the detail of what the file held
    // no longer finds it first.
    let replaced = tmp.path().join("old.jpg");
    std::fs::copy(before, &replaced).unwrap();
    std::fs::copy(&photos[1], before).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(before)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let r = run_json(&db, &["index", "--json", dir.to_str().unwrap()]);
    assert_eq!(r["added"].as_u64(), Some(1), "{r}");
    let query = tmp.path().join("old-detail.jpg");
    cut(&replaced, DETAIL, 0.7, &query);
    let found = search(&db, &query, &[]);
    assert_ne!(
        found["results"][0]["path"],
        canonical(before).as_str(),
        "{found}"
    );
}
