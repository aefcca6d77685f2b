//! The PySpark job (spark/lookalike_spark.py) for real: `spark-submit --master local[2]` on
//! real photos, a real video and a bad file, then `lookalike import`. The import equals
//! `lookalike index` of the same files (every file once, the same vectors, the same search
//! results), the bad file is reported and not fatal, the shards are what pyarrow expects, and a
//! re-run after a shard was lost redoes only that shard (bytes mode: under the same name; paths
//! mode: only its files).
//!
//! Needs Java and PySpark: `scripts/setup.sh --tests` installs them (.cache/spark-venv), or
//! LOOKALIKE_SPARK_SUBMIT names another spark-submit. Without them the test fails: it never
//! passes without running the job.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{assert_same_index, copy_photos, run_json, run_ok};
use serde_json::Value;

/// 16 real photos, a few in a sub-folder (the job walks folders).
const PHOTOS: &[(&str, &str)] = &[
    ("skimage/coffee.png", "coffee.png"),
    ("skimage/chelsea.png", "chelsea.png"),
    ("skimage/astronaut.png", "astronaut.png"),
    ("skimage/camera.png", "camera.png"),
    ("skimage/rocket.jpg", "rocket.jpg"),
    ("sklearn/china.jpg", "china.jpg"),
    ("sklearn/flower.jpg", "sub/flower.jpg"),
    ("opencv/graf1.png", "graf1.png"),
    ("opencv/graf3.png", "sub/graf3.png"),
    ("opencv/box.png", "box.png"),
    ("opencv/box_in_scene.png", "sub/box_in_scene.png"),
    ("opencv/aero1.jpg", "aero1.jpg"),
    ("opencv/aero3.jpg", "sub/aero3.jpg"),
    ("opencv/fruits.jpg", "fruits.jpg"),
    ("opencv/butterfly.jpg", "butterfly.jpg"),
    ("opencv/messi5.jpg", "sub/messi5.jpg"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// spark-submit: LOOKALIKE_SPARK_SUBMIT, else the one scripts/setup.sh --tests installs.
fn spark_submit() -> PathBuf {
    let path = std::env::var_os("LOOKALIKE_SPARK_SUBMIT").map_or_else(
        || repo().join(".cache/spark-venv/bin/spark-submit"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "spark-submit not found at {}: run scripts/setup.sh --tests (it installs Java and \
         PySpark into .cache/spark-venv), or set LOOKALIKE_SPARK_SUBMIT",
        path.display()
    );
    path
}

/// The Python that has PySpark and pyarrow: the one beside spark-submit (a venv's), else
/// PYSPARK_PYTHON, else python3.
fn python() -> PathBuf {
    let beside = spark_submit().with_file_name("python");
    if beside.is_file() {
        return beside;
    }
    std::env::var_os("PYSPARK_PYTHON").map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// Runs the job in `local[2]` with `args` (after the script), shipping the test binary and
/// model folder, and returns the job record it leaves in `out`.
fn run_job(work: &Path, out: &Path, args: &[&str]) -> Value {
    let started = Instant::now();
    let python = python();
    let result = Command::new(spark_submit())
        // Spark's scratch files (spark-warehouse, metastore) stay out of the repository.
        .current_dir(work)
        .env("PYSPARK_PYTHON", &python)
        .env("PYSPARK_DRIVER_PYTHON", &python)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env_remove("LOOKALIKE_LOG")
        .args(["--master", "local[2]"])
        .args(["--conf", "spark.ui.enabled=false"])
        .args(["--conf", "spark.sql.shuffle.partitions=4"])
        // Small files: count 64 KB to open one (Spark's 4 MB would make one task per photo).
        .args(["--conf", "spark.sql.files.openCostInBytes=65536"])
        .arg(repo().join("spark/lookalike_spark.py"))
        .args(args)
        .args(["--out", out.to_str().unwrap()])
        .args(["--binary", env!("CARGO_BIN_EXE_lookalike")])
        .args(["--model-dir", common::model_dir().to_str().unwrap()])
        .output()
        .expect("run spark-submit");
    let stdout = String::from_utf8_lossy(&result.stdout);
    let stderr = String::from_utf8_lossy(&result.stderr);
    let tail = |s: &str| s[s.len().saturating_sub(6000)..].to_owned();
    assert!(
        result.status.success(),
        "spark job {args:?} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        result.status,
        tail(&stdout),
        tail(&stderr)
    );
    eprintln!(
        "spark job {args:?}: {:.1} s\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    let record = std::fs::read_to_string(out.join("_lookalike_job.json")).expect("job record");
    let record: Value = serde_json::from_str(&record).expect("job record is JSON");
    assert_eq!(record["status"], "done", "{record}");
    record
}

/// The shard files in `out`: name -> (inode, mtime in ns).
fn shards(out: &Path) -> BTreeMap<String, (u64, i64)> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
        .map(|e| {
            let m = e.metadata().unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with('.'),
                "a temporary shard left behind: {name}"
            );
            (name, (m.ino(), m.mtime() * 1_000_000_000 + m.mtime_nsec()))
        })
        .collect()
}

/// What pyarrow makes of the shards in `out`: the schema, the rows, the error rows.
fn read_with_pyarrow(out: &Path) -> Value {
    const SCRIPT: &str = r#"
import json, sys, pathlib
import pyarrow as pa
import pyarrow.parquet as pq
files = sorted(p for p in pathlib.Path(sys.argv[1]).glob("*.parquet") if not p.name.startswith((".", "_")))
tables = [pq.read_table(f) for f in files]
schema = tables[0].schema
assert all(t.schema.equals(schema) for t in tables), "shards differ in schema"
rows = [r for t in tables for r in t.to_pylist()]
print(json.dumps({
    "types": {f.name: str(f.type) for f in schema},
    "vector_is_list_of_float32": pa.types.is_list(schema.field("vector").type)
        and schema.field("vector").type.value_type == pa.float32(),
    "shards": len(files),
    "rows": len(rows),
    "paths": sorted({r["path"] for r in rows}),
    "errors": [[r["path"], r["error"]] for r in rows if r["error"] is not None],
    "vector_lengths": sorted({len(r["vector"]) for r in rows if r["vector"] is not None}),
    "bad_rows": [r["path"] for r in rows
                 if (r["error"] is None) == (r["vector"] is None)
                 or (r["error"] is None and len(r["content_hash"] or b"") != 32)],
}))
"#;
    let result = Command::new(python())
        .args(["-c", SCRIPT, out.to_str().unwrap()])
        .output()
        .expect("run python");
    assert!(
        result.status.success(),
        "pyarrow could not read the shards: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    serde_json::from_slice(&result.stdout).expect("one JSON object")
}

fn total(record: &Value, field: &str) -> u64 {
    record["totals"][field]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.{field}: {record}"))
}

fn written(record: &Value) -> Vec<String> {
    let mut names: Vec<String> = record["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["files"].as_u64() > Some(0))
        .map(|t| t["shard"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// The shards in `out`, as pyarrow reads them, hold `files` distinct paths in `rows` rows:
/// every file once, whatever was redone.
fn assert_every_file_once(out: &Path, files: u64, rows: u64) {
    let arrow = read_with_pyarrow(out);
    assert_eq!(
        arrow["paths"].as_array().unwrap().len() as u64,
        files,
        "{arrow}"
    );
    assert_eq!(
        arrow["rows"].as_u64(),
        Some(rows),
        "every file once: {arrow}"
    );
}

#[test]
fn the_spark_job_embeds_like_index_and_a_rerun_redoes_only_a_lost_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (dir, out) = (root.join("library"), root.join("shards"));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    copy_photos(&dir, PHOTOS);
    let video = dir.join("sub/tree.avi");
    std::fs::copy(common::testdata().join("videos/tree.avi"), &video).unwrap();
    let bad = dir.join("broken.jpg");
    std::fs::copy(common::fixture("truncated.jpg"), &bad).unwrap();
    let files = PHOTOS.len() as u64 + 2;
    let (indexed, imported) = (root.join("indexed"), root.join("imported"));
    run_ok(&indexed, &["model", "fetch", "--model", "lite0"]);

    // Bytes mode: Spark's binaryFile source reads the files and streams them to the tasks,
    // about 2 MB of files a task, so that there are several shards.
    let first = run_job(
        &root,
        &out,
        &[dir.to_str().unwrap(), "--partition-bytes", "2m"],
    );
    assert_eq!(total(&first, "files"), files, "{first}");
    assert_eq!(total(&first, "videos"), 1, "{first}");
    assert_eq!(
        total(&first, "failed"),
        1,
        "the bad file is a failed row: {first}"
    );
    let made = shards(&out);
    assert!(made.len() >= 3, "several shards: {made:?}");
    assert_eq!(made.keys().cloned().collect::<Vec<_>>(), written(&first));

    // The shards as pyarrow sees them.
    let arrow = read_with_pyarrow(&out);
    let types = &arrow["types"];
    for (column, ty) in [
        ("path", "string"),
        ("size", "int64"),
        ("mtime_ns", "int64"),
        ("kind", "string"),
        ("t", "double"),
        ("width", "int32"),
        ("height", "int32"),
        ("model", "string"),
        ("descriptor", "string"),
        ("error", "string"),
        ("partial", "string"),
    ] {
        assert_eq!(types[column], ty, "column {column}: {types}");
    }
    assert!(
        types["content_hash"].as_str().unwrap().contains("binary"),
        "{types}"
    );
    assert_eq!(arrow["vector_is_list_of_float32"], true, "{types}");
    assert_eq!(arrow["shards"].as_u64(), Some(made.len() as u64));
    assert_eq!(
        arrow["rows"].as_u64(),
        Some(total(&first, "rows")),
        "{arrow}"
    );
    assert_eq!(arrow["paths"].as_array().unwrap().len() as u64, files);
    assert_eq!(arrow["errors"].as_array().unwrap().len(), 1, "{arrow}");
    assert_eq!(arrow["errors"][0][0], bad.to_str().unwrap(), "{arrow}");
    assert_eq!(
        arrow["vector_lengths"].as_array().unwrap().len(),
        1,
        "{arrow}"
    );
    assert_eq!(arrow["bad_rows"], Value::Array(vec![]), "{arrow}");

    // Importing the shards equals indexing the files.
    let index = run_json(&indexed, &["index", "--json", dir.to_str().unwrap()]);
    let import = run_json(&imported, &["import", "--json", out.to_str().unwrap()]);
    assert_eq!(import["added"].as_u64(), Some(files - 1), "{import}");
    let failed: Vec<&str> = import["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(failed, [bad.to_str().unwrap()], "{import}");
    assert_eq!(
        total(&first, "frames"),
        index["frames"].as_u64().unwrap(),
        "{index}"
    );
    let stats = run_json(&imported, &["stats", "--json"]);
    assert_eq!(stats["files"].as_u64(), Some(files - 1), "{stats}");
    let queries = [
        common::photo("skimage/chelsea.png"),
        common::photo("opencv/box_in_scene.png"),
        common::photo("sklearn/china.jpg"),
        common::photo("opencv/graf3.png"),
    ];
    assert_same_index(&indexed, &imported, &queries);
    // The keys and stamps (exact mtimes, sent in the tar stream) are `index`'s own: indexing
    // the folder into the imported index finds nothing to do.
    let reindex = run_json(&imported, &["index", "--json", dir.to_str().unwrap()]);
    assert_eq!(
        (reindex["added"].as_u64(), reindex["unchanged"].as_u64()),
        (Some(0), Some(files - 1)),
        "{reindex}"
    );

    // A lost shard: the re-run embeds its files only, into a shard of the same name, and
    // touches no other shard.
    let lost = made.keys().nth(1).unwrap().clone();
    std::fs::remove_file(out.join(&lost)).unwrap();
    let second = run_job(
        &root,
        &out,
        &[dir.to_str().unwrap(), "--partition-bytes", "2m"],
    );
    assert_eq!(
        second["shards_before"].as_u64(),
        Some(made.len() as u64 - 1)
    );
    assert_eq!(second["partitions_run"], 1, "{second}");
    assert_eq!(written(&second), [lost.as_str()], "{second}");
    let after = shards(&out);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        made.keys().collect::<Vec<_>>(),
        "the same names"
    );
    for (name, stamp) in &made {
        if *name != lost {
            assert_eq!(&after[name], stamp, "{name} was rewritten");
        }
    }
    assert_ne!(after[&lost], made[&lost], "{lost} is a new file");
    assert_every_file_once(&out, files, total(&first, "rows"));

    // Paths mode (the tasks read the files themselves): lose another shard, re-run; its files
    // come back, in shards of --files-per-shard, and nothing else is embedded again.
    let gone = made.keys().next().unwrap().clone();
    let gone_files = first["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["shard"] == gone.as_str())
        .unwrap()["files"]
        .as_u64()
        .unwrap();
    std::fs::remove_file(out.join(&gone)).unwrap();
    let third = run_job(
        &root,
        &out,
        &[
            dir.to_str().unwrap(),
            "--input-mode",
            "paths",
            "--files-per-shard",
            "3",
        ],
    );
    assert_eq!(total(&third, "files"), gone_files, "{third}");
    let now = shards(&out);
    for (name, stamp) in &after {
        if *name != gone {
            assert_eq!(&now[name], stamp, "{name} was rewritten");
        }
    }
    assert_every_file_once(&out, files, total(&first, "rows"));
    let again = root.join("again");
    let import = run_json(&again, &["import", "--json", out.to_str().unwrap()]);
    assert_eq!(import["added"].as_u64(), Some(files - 1), "{import}");
    assert_same_index(&indexed, &again, &queries[..2]);
}
