//! Shared helpers of the integration tests: where the real test data and the model are, and
//! how to run the `lookalike` binary.
#![allow(dead_code)] // each test binary uses its own subset

pub mod server;
pub mod vectors;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lookalike::featurizer::{Embedded, Featurizer};

/// The real photos and videos fetched by `scripts/fetch-test-data.sh`.
pub fn testdata() -> PathBuf {
    let dir = std::env::var_os("LOOKALIKE_TESTDATA").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/testdata"),
        PathBuf::from,
    );
    assert!(
        dir.join("photos/skimage/coffee.png").is_file(),
        "test data missing in {}: run scripts/fetch-test-data.sh",
        dir.display()
    );
    dir
}

pub fn photo(relative: &str) -> PathBuf {
    testdata().join("photos").join(relative)
}

/// The model cache the tests share (fetched on first use).
pub fn model_dir() -> PathBuf {
    std::env::var_os("LOOKALIKE_MODEL_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models"),
        PathBuf::from,
    )
}

/// A committed fixture under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `lookalike` with the test model cache and the given index.
pub fn lookalike(db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lookalike"));
    cmd.env("LOOKALIKE_MODEL_DIR", model_dir())
        .env("LOOKALIKE_DB", db)
        .env_remove("LOOKALIKE_LOG")
        .env_remove("LOOKALIKE_TOKEN")
        .arg("--quiet");
    cmd
}

/// Runs `lookalike ARGS` and returns its output, failing the test on a non-zero exit.
pub fn run_ok(db: &Path, args: &[&str]) -> Output {
    let out = lookalike(db).args(args).output().expect("run lookalike");
    assert!(
        out.status.success(),
        "lookalike {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON object printed by `lookalike ARGS --json` (one line).
pub fn run_json(db: &Path, args: &[&str]) -> serde_json::Value {
    let out = run_ok(db, args);
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// How many items the index at `db` holds; 0 while it does not exist yet (a run in another
/// process is creating it).
pub fn item_count(db: &Path) -> u64 {
    let out = lookalike(db)
        .args(["stats", "--json"])
        .output()
        .expect("run lookalike");
    if !out.status.success() {
        return 0;
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stats JSON")["items"]
        .as_u64()
        .expect("an item count")
}

/// Polls `ready` every 100 ms until it holds, failing the test after two minutes.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Copies real photos into `dir` under new names (`dir/NAME`), returning the new paths.
pub fn copy_photos(dir: &Path, photos: &[(&str, &str)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    photos
        .iter()
        .map(|(src, name)| {
            let dst = dir.join(name);
            std::fs::copy(photo(src), &dst).expect("copy photo");
            dst
        })
        .collect()
}

/// The top result's path of `search --json` for one query.
pub fn top_path(db: &Path, query: &Path) -> String {
    let line = run_json(
        db,
        &["search", "--json", "-k", "1", query.to_str().unwrap()],
    );
    line["results"][0]["path"]
        .as_str()
        .expect("a result")
        .to_owned()
}

/// Embeds photos that must decode, on 2 threads.
pub fn embed(f: &Featurizer, paths: &[PathBuf]) -> Vec<Embedded> {
    f.embed_files(paths, 2)
        .expect("network runs")
        .into_iter()
        .map(|r| r.expect("photo decodes"))
        .collect()
}

/// An index's items by (path, frame time as JSON): their id and stored vector, from
/// `export --format jsonl`.
pub type StoredVectors = HashMap<(String, String), (i64, Vec<f32>)>;

pub fn stored_vectors(db: &Path) -> StoredVectors {
    let out = run_ok(db, &["export", "--format", "jsonl"]);
    String::from_utf8(out.stdout)
        .expect("UTF-8 export")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let key = (
                v["path"].as_str().expect("a path").to_owned(),
                v["t"].to_string(),
            );
            let vector = v["vector"]
                .as_array()
                .expect("a vector")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect();
            (key, (v["id"].as_i64().expect("an id"), vector))
        })
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// `imported` holds what `indexed` holds: the same counts and descriptor, the same (path, t)
/// items, vectors within cosine 0.9999, and the same top-5 answers to `queries` (found by
/// the same means: whole or region).
pub fn assert_same_index(indexed: &Path, imported: &Path, queries: &[PathBuf]) {
    let stats = |db| run_json(db, &["stats", "--json"]);
    let (sa, sb) = (stats(indexed), stats(imported));
    for field in ["files", "images", "videos", "items", "descriptor"] {
        assert_eq!(sa[field], sb[field], "{field}");
    }
    let (a, b) = (stored_vectors(indexed), stored_vectors(imported));
    let sorted_keys = |m: &StoredVectors| {
        let mut k: Vec<_> = m.keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        sorted_keys(&a),
        sorted_keys(&b),
        "the same files and frames"
    );
    for (key, (_, v)) in &a {
        let similarity = cosine(v, &b[key].1);
        assert!(similarity >= 0.9999, "{key:?}: cosine {similarity}");
    }
    for query in queries {
        // Paths and whether a region matched: regions travel through shards too.
        let results = |db: &Path| -> Vec<(String, bool)> {
            let out = run_json(
                db,
                &["search", "--json", "-k", "5", query.to_str().unwrap()],
            );
            out["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| {
                    let path = r["path"].as_str().expect("a path").to_owned();
                    (path, r.get("box").is_some())
                })
                .collect()
        };
        let expected = results(indexed);
        assert_eq!(expected.len(), 5, "{query:?}");
        assert_eq!(results(imported), expected, "search {query:?}");
    }
}
