//! `lookalike duplicates` on real photos: the groups and their keeper, undo of an action,
//! reference folders, and "not duplicates" decisions (issue 15).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{copy_photos, photo, run_json, run_ok};
use serde_json::Value;

/// A library with one photo in four renditions, an unrelated photo and two photos of one
/// scene: `photos/china.jpg` (the original), `copy/china (1).jpg` (identical bytes, newer),
/// `web/china-small.jpg` (half size), `edits/china-grey.png` (grey), `photos/flower.jpg`,
/// `scene/aero1.jpg` and `scene/aero3.jpg`.
struct Library {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
}

impl Library {
    fn new() -> Library {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("library");
        let db = dir.path().join("db");
        copy_photos(
            &root.join("photos"),
            &[
                ("sklearn/china.jpg", "china.jpg"),
                ("sklearn/flower.jpg", "flower.jpg"),
            ],
        );
        copy_photos(
            &root.join("scene"),
            &[
                ("opencv/aero1.jpg", "aero1.jpg"),
                ("opencv/aero3.jpg", "aero3.jpg"),
            ],
        );
        let copy = copy_photos(
            &root.join("copy"),
            &[("sklearn/china.jpg", "china (1).jpg")],
        );
        // The copy was made later than the original (as copies are).
        let later = SystemTime::now() + Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&copy[0])
            .and_then(|f| f.set_modified(later))
            .expect("set mtime");
        let original = image::open(photo("sklearn/china.jpg")).expect("decode china.jpg");
        std::fs::create_dir_all(root.join("web")).expect("mkdir");
        original
            .resize(320, 320, image::imageops::FilterType::Triangle)
            .save(root.join("web/china-small.jpg"))
            .expect("write the small copy");
        std::fs::create_dir_all(root.join("edits")).expect("mkdir");
        original
            .grayscale()
            .save(root.join("edits/china-grey.png"))
            .expect("write the grey copy");
        run_ok(&db, &["index", root.to_str().expect("utf-8 path")]);
        Library {
            _dir: dir,
            root: root.canonicalize().expect("canonical root"),
            db,
        }
    }

    fn path(&self, relative: &str) -> String {
        self.root.join(relative).to_string_lossy().into_owned()
    }

    fn groups(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["duplicates", "--json"];
        args.extend_from_slice(extra);
        run_json(&self.db, &args)["groups"]
            .as_array()
            .expect("groups")
            .clone()
    }
}

fn paths(group: &Value) -> Vec<String> {
    let mut paths: Vec<String> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["path"].as_str().expect("path").to_owned())
        .collect();
    paths.sort();
    paths
}

fn member<'a>(group: &'a Value, path: &str) -> &'a Value {
    group["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in {group}"))
}

fn hash(path: &Path) -> blake3::Hash {
    blake3::hash(&std::fs::read(path).expect("read"))
}

#[test]
fn one_group_of_renditions_with_the_original_as_keeper() {
    let lib = Library::new();
    let groups = lib.groups(&[]);
    assert_eq!(groups.len(), 1, "one group expected: {groups:#?}");
    let group = &groups[0];
    let mut expected = vec![
        lib.path("photos/china.jpg"),
        lib.path("copy/china (1).jpg"),
        lib.path("web/china-small.jpg"),
        lib.path("edits/china-grey.png"),
    ];
    expected.sort();
    assert_eq!(paths(group), expected);
    assert_eq!(group["tier"], "near");
    // Most pixels, then most bytes, then the oldest: the original, not its newer copy.
    assert_eq!(group["members"][0]["path"], lib.path("photos/china.jpg"));
    assert_eq!(group["members"][0]["keeper"], true);
    assert_eq!(
        member(group, &lib.path("copy/china (1).jpg"))["tier"],
        "exact"
    );
    assert_eq!(
        member(group, &lib.path("web/china-small.jpg"))["tier"],
        "near"
    );
    assert_eq!(
        member(group, &lib.path("edits/china-grey.png"))["width"],
        640
    );

    // CSV: one row per member, the keeper's role "keep".
    let csv = String::from_utf8(run_ok(&lib.db, &["duplicates", "--csv"]).stdout).expect("utf-8");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 5, "{csv}");
    assert!(
        rows[1].contains(",keep,") && rows[1].contains("photos/china.jpg"),
        "{csv}"
    );
}

#[test]
fn undo_restores_every_moved_file() {
    let lib = Library::new();
    let moved_to = lib.root.parent().expect("parent").join("moved");
    let journal = lib.root.parent().expect("parent").join("journal.jsonl");
    let dropped = [
        lib.path("copy/china (1).jpg"),
        lib.path("web/china-small.jpg"),
        lib.path("edits/china-grey.png"),
    ];
    let before: Vec<blake3::Hash> = dropped.iter().map(|p| hash(Path::new(p))).collect();
    let items_before = common::item_count(&lib.db);

    // Without --apply nothing moves.
    run_ok(
        &lib.db,
        &["duplicates", "--move-to", moved_to.to_str().unwrap()],
    );
    assert!(dropped.iter().all(|p| Path::new(p).is_file()));

    run_ok(
        &lib.db,
        &[
            "duplicates",
            "--move-to",
            moved_to.to_str().unwrap(),
            "--apply",
            "--journal",
            journal.to_str().unwrap(),
        ],
    );
    for path in &dropped {
        assert!(!Path::new(path).exists(), "{path} should have moved");
        let target = moved_to.join(path.trim_start_matches('/'));
        assert!(target.is_file(), "{} missing", target.display());
    }
    assert!(
        Path::new(&lib.path("photos/china.jpg")).is_file(),
        "the keeper stays"
    );
    assert_eq!(
        common::item_count(&lib.db),
        items_before - 3,
        "moved files leave the index"
    );
    assert!(lib.groups(&[]).is_empty());

    run_ok(
        &lib.db,
        &["duplicates", "--undo", journal.to_str().unwrap()],
    );
    for (path, hash_before) in dropped.iter().zip(&before) {
        assert_eq!(
            hash(Path::new(path)),
            *hash_before,
            "{path} not restored as it was"
        );
    }
    assert_eq!(
        common::item_count(&lib.db),
        items_before,
        "restored files are indexed again"
    );
    assert_eq!(lib.groups(&[]).len(), 1);
}

#[test]
fn a_reference_folder_is_never_touched() {
    let lib = Library::new();
    // The small rendition sits in the reference folder: it is the keeper though smaller, and
    // the other renditions go to the trash.
    let reference = lib.root.join("web");
    let kept = reference.join("china-small.jpg");
    let (hash_before, mtime_before) = (
        hash(&kept),
        std::fs::metadata(&kept)
            .and_then(|m| m.modified())
            .expect("mtime"),
    );
    let out = run_json(
        &lib.db,
        &[
            "duplicates",
            "--json",
            "--reference",
            reference.to_str().unwrap(),
            "--delete",
            "--apply",
        ],
    );
    let group = &out["groups"][0];
    assert_eq!(group["members"][0]["path"], lib.path("web/china-small.jpg"));
    assert_eq!(group["members"][0]["reference"], true);
    assert_eq!(hash(&kept), hash_before);
    assert_eq!(
        std::fs::metadata(&kept)
            .and_then(|m| m.modified())
            .expect("mtime"),
        mtime_before
    );
    assert!(
        !Path::new(&lib.path("photos/china.jpg")).exists(),
        "deleted into the trash"
    );
    let trashed = lib
        .db
        .join("trash")
        .join(lib.path("photos/china.jpg").trim_start_matches('/'));
    assert!(trashed.is_file(), "{} missing", trashed.display());
}

#[test]
fn a_not_duplicates_decision_survives_a_reindex() {
    let lib = Library::new();
    let grey = lib.path("edits/china-grey.png");
    run_ok(
        &lib.db,
        &[
            "duplicates",
            "--not-duplicates",
            &lib.path("photos/china.jpg"),
            &grey,
        ],
    );
    let grouped = |lib: &Library| lib.groups(&[]).iter().any(|g| paths(g).contains(&grey));
    assert!(!grouped(&lib), "the grey copy was declared not a duplicate");
    assert_eq!(lib.groups(&[]).len(), 1, "the others stay grouped");

    // Forget the grey copy and index it again: a new item, the same content.
    run_ok(&lib.db, &["remove", &grey]);
    run_ok(&lib.db, &["index", lib.root.to_str().unwrap()]);
    assert!(!grouped(&lib), "the decision was forgotten by a re-index");
}

#[test]
fn a_scan_covers_only_new_images() {
    let lib = Library::new();
    let first = run_json(&lib.db, &["duplicates", "--json"]);
    assert_eq!(first["scan"]["scanned"], 7);
    let again = run_json(&lib.db, &["duplicates", "--json"]);
    assert_eq!(again["scan"]["scanned"], 0, "nothing new: nothing scanned");
    assert_eq!(again["groups"], first["groups"]);
    copy_photos(
        &lib.root.join("more"),
        &[("sklearn/china.jpg", "china-again.jpg")],
    );
    run_ok(&lib.db, &["index", lib.root.to_str().unwrap()]);
    let after = run_json(&lib.db, &["duplicates", "--json"]);
    assert_eq!(after["scan"]["scanned"], 1, "only the new image is scanned");
    assert_eq!(paths(&after["groups"][0]).len(), 5);
}

#[test]
fn files_damaged_or_gone_since_indexing_are_skipped_not_fatal() {
    let lib = Library::new();
    // Cut the small copy short and delete the grey one after indexing.
    let small = lib.path("web/china-small.jpg");
    let bytes = std::fs::read(&small).expect("read");
    std::fs::write(&small, &bytes[..bytes.len() / 3]).expect("truncate");
    std::fs::remove_file(lib.path("edits/china-grey.png")).expect("remove");
    let out = run_json(&lib.db, &["duplicates", "--json"]);
    assert!(
        out["scan"]["unreadable"].as_u64().expect("a count") >= 1,
        "the damaged and missing files are reported: {}",
        out["scan"]
    );
    let groups = out["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{groups:#?}");
    assert_eq!(
        paths(&groups[0]),
        vec![lib.path("copy/china (1).jpg"), lib.path("photos/china.jpg")],
        "the identical copy is still found"
    );
}
