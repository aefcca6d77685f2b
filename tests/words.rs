//! Search by words and filters through the CLI, on real photos: ImageNet labels kept at
//! indexing reach a photo through WordNet ("dog" -> a Pekinese), filters on the EXIF date,
//! camera, place and folder narrow searches, labels and facts travel through shards, and an
//! index made before labels were kept gets them at its next indexing.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_photos, fixture, lookalike, run_json, run_ok};
use serde_json::Value;

/// Real photos whose subjects are known: a Pekinese (opencv's chicky_512.png), a tabby cat,
/// a cup of coffee, an astronaut, a rocket.
const PHOTOS: &[(&str, &str)] = &[
    ("opencv/chicky_512.png", "chicky_512.png"),
    ("skimage/chelsea.png", "chelsea.png"),
    ("skimage/coffee.png", "coffee.png"),
    ("skimage/astronaut.png", "astronaut.png"),
    ("skimage/rocket.jpg", "rocket.jpg"),
];

/// The same 64x48 crop with EXIF written by ExifTool (see tests/fixtures/CREDITS.md): taken
/// 2019-07-14 in Paris with a Canon; 2021-02-28 in Sydney with a Nikon; 2010-10-10 with an
/// Olympus, no position; 2016-02-29 in New York with a Sony.
const EXIF_FIXTURES: [&str; 4] = [
    "china_exif_gps.jpg",
    "china_exif.png",
    "china_exif.tif",
    "china_exif.webp",
];

fn search(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["search", "--json"];
    all.extend_from_slice(args);
    run_json(db, &all)
}

fn names(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            Path::new(r["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// An index of the photos in `dir/photos` and the EXIF fixtures in `dir/exif`.
fn library(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (db, photos, exif) = (dir.join("db"), dir.join("photos"), dir.join("exif"));
    copy_photos(&photos, PHOTOS);
    std::fs::create_dir_all(&exif).unwrap();
    for name in EXIF_FIXTURES {
        std::fs::copy(fixture(name), exif.join(name)).unwrap();
    }
    run_ok(
        &db,
        &["index", photos.to_str().unwrap(), exif.to_str().unwrap()],
    );
    (db, photos, exif)
}

#[test]
fn words_find_photos_through_their_labels_and_unknown_words_find_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _, _) = library(tmp.path());

    // "dog" names no class itself: the Pekinese is reached through the breed's hypernyms.
    for phrase in ["dog", "dogs", "a photo of a dog"] {
        let answer = search(&db, &["--text", phrase]);
        assert_eq!(answer["query"], phrase);
        assert_eq!(names(&answer), ["chicky_512.png"], "{phrase}: {answer}");
        let result = &answer["results"][0];
        assert!(result["score"].as_f64().unwrap() >= 0.2);
        assert!(
            result["labels"][0]["name"]
                .as_str()
                .unwrap()
                .starts_with("Pekinese"),
            "{result}"
        );
    }
    let cats = search(&db, &["--text", "cat"]);
    assert_eq!(names(&cats)[0], "chelsea.png", "{cats}");
    let animals = search(&db, &["--text", "animal", "-k", "5"]);
    assert_eq!(
        sorted(names(&animals)),
        ["chelsea.png", "chicky_512.png"],
        "{animals}"
    );

    // A word that names nothing: an empty answer, said why, not an error.
    let out = run_ok(&db, &["search", "--json", "--text", "xyzzy"]);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["results"], serde_json::json!([]));
    assert_eq!(answer["unknown_words"], serde_json::json!(["xyzzy"]));
    assert!(answer.get("error").is_none());
    let out = run_ok(&db, &["search", "--text", "dog xyzzy"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no ImageNet class for: xyzzy"));

    // Words narrow a search by example: the cat's neighbours that are dogs.
    let chelsea = tmp.path().join("photos/chelsea.png");
    let dogs_like_the_cat = search(&db, &["--text", "dog", chelsea.to_str().unwrap()]);
    assert_eq!(names(&dogs_like_the_cat), ["chicky_512.png"]);

    // The library's most common labels.
    let out = run_ok(&db, &["labels", "--json"]);
    let classes: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["class"]
                .as_u64()
                .unwrap()
        })
        .collect();
    // 154: Pekinese; 281-285: the domestic cats (tabby, tiger cat, Persian, Siamese,
    // Egyptian cat).
    assert!(classes.contains(&154), "{classes:?}");
    assert!(
        classes.iter().any(|c| (281..=285).contains(c)),
        "{classes:?}"
    );
}

#[test]
fn filters_on_date_camera_place_and_folder_narrow_an_image_search() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, photos, exif) = library(tmp.path());
    let query = fixture("china_64x48.jpg");
    let query = query.to_str().unwrap();
    let with = |filter: &[&str]| {
        let mut args = vec!["-k", "20", query];
        args.extend_from_slice(filter);
        sorted(names(&search(&db, &args)))
    };
    // Unfiltered, the four crops come first and the photos follow.
    assert_eq!(with(&[]).len(), 9);
    assert_eq!(
        with(&["--taken", "2019..2021"]),
        ["china_exif.png", "china_exif_gps.jpg"]
    );
    assert_eq!(with(&["--taken", "2019"]), ["china_exif_gps.jpg"]);
    assert_eq!(with(&["--taken", "2016-02"]), ["china_exif.webp"]);
    assert_eq!(
        with(&["--taken", "..2016"]),
        ["china_exif.tif", "china_exif.webp"]
    );
    assert_eq!(with(&["--camera", "nikon"]), ["china_exif.png"]);
    // The Eiffel tower is 2 km from central Paris, Sydney 17,000 km.
    assert_eq!(
        with(&["--near", "48.8566,2.3522,5"]),
        ["china_exif_gps.jpg"]
    );
    assert!(with(&["--near", "48.8566,2.3522,1"]).is_empty());
    assert_eq!(
        with(&["--under", exif.to_str().unwrap()]),
        sorted(EXIF_FIXTURES.iter().map(|s| s.to_string()).collect())
    );
    assert_eq!(
        with(&["--under", photos.to_str().unwrap()]).len(),
        PHOTOS.len()
    );
    // Filters combine.
    assert!(with(&["--under", photos.to_str().unwrap(), "--taken", "2019"]).is_empty());

    // Bad values are refused with the reason.
    let out = lookalike(&db)
        .args(["search", query, "--taken", "2019-13"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a date"));
}

#[test]
fn labels_and_facts_travel_through_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _, exif) = library(tmp.path());
    let shards = tmp.path().join("shards");
    let imported = tmp.path().join("imported");
    let photos = tmp.path().join("photos");
    run_ok(
        &imported,
        &[
            "embed",
            "--out",
            shards.to_str().unwrap(),
            photos.to_str().unwrap(),
            exif.to_str().unwrap(),
        ],
    );
    run_ok(&imported, &["import", shards.to_str().unwrap()]);
    for phrase in ["dog", "cat", "animal"] {
        assert_eq!(
            names(&search(&imported, &["--text", phrase])),
            names(&search(&db, &["--text", phrase])),
            "{phrase}"
        );
    }
    let query = fixture("china_64x48.jpg");
    let taken = ["-k", "20", query.to_str().unwrap(), "--taken", "2019..2021"];
    assert_eq!(
        sorted(names(&search(&imported, &taken))),
        ["china_exif.png", "china_exif_gps.jpg"]
    );
    let near = [
        "-k",
        "20",
        query.to_str().unwrap(),
        "--near=-33.86,151.21,10",
    ];
    assert_eq!(names(&search(&imported, &near)), ["china_exif.png"]);
}

#[test]
fn an_index_from_before_labels_gets_them_at_its_next_indexing() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, photos, exif) = library(tmp.path());
    // What a catalog migrated from schema 5 looks like: no labels, no facts, and the mark of
    // the items stored before them.
    {
        let conn = rusqlite::Connection::open(db.join("catalog.sqlite")).unwrap();
        conn.execute_batch(
            "DELETE FROM labels;
             UPDATE files SET taken = NULL, camera_make = NULL, camera_model = NULL,
                 latitude = NULL, longitude = NULL;
             UPDATE meta SET value = (SELECT MAX(id) FROM items) WHERE key = 'unlabelled_through';",
        )
        .unwrap();
    }
    assert!(names(&search(&db, &["--text", "dog"])).is_empty());

    let report = run_json(
        &db,
        &[
            "index",
            "--json",
            photos.to_str().unwrap(),
            exif.to_str().unwrap(),
        ],
    );
    assert_eq!(report["added"], 9, "{report}");
    assert_eq!(report["unchanged"], 0, "{report}");
    assert_eq!(names(&search(&db, &["--text", "dog"])), ["chicky_512.png"]);
    let query = fixture("china_64x48.jpg");
    assert_eq!(
        names(&search(
            &db,
            &[query.to_str().unwrap(), "--camera", "olympus"]
        )),
        ["china_exif.tif"]
    );
    // Refreshed once: the next run leaves them alone.
    let again = run_json(
        &db,
        &[
            "index",
            "--json",
            photos.to_str().unwrap(),
            exif.to_str().unwrap(),
        ],
    );
    assert_eq!(again["unchanged"], 9, "{again}");
}
