//! The PySpark job (spark/lookalike_spark.py) for real: `spark-submit --master local[2]` on
//! real photos, a real video and a bad file, then `lookalike import`. The import equals
//! `lookalike index` of the same files (every file once, the same vectors, the same search
//! results), the bad file is reported and not fatal, the shards are what pyarrow expects, and a
//! re-run after a shard was lost redoes only that shard (bytes mode: under the same name; paths
//! mode: only its files).
//!
//! `--gpus` (each task runs `lookalike --device cuda:N` on the GPU Spark gave it) is checked
//! twice: its pure parts (the device, the command line, the settings) in Python, and a real run
//! in `local-cluster` mode, whose worker is handed a GPU by a discovery script, with a stand-in
//! for the binary that records its command line.
//!
//! Needs Java and PySpark: `scripts/setup.sh --tests` installs them (.cache/spark-venv), or
//! LOOKALIKE_SPARK_SUBMIT names another spark-submit. Without them the test fails: it never
//! passes without running the job.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::{assert_same_index, copy_photos, run_json, run_ok};
use serde_json::{json, Value};

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

/// `spark-submit --master MASTER`, run in `work`, with the test's Python on both sides; killed
/// (with the driver, the executors and their children: `timeout` signals its process group)
/// after `limit_s` seconds, so that a job that waits forever fails the test instead.
fn spark_command(work: &Path, master: &str, limit_s: u32) -> Command {
    let python = python();
    let mut command = Command::new("timeout");
    command.args(["--kill-after=10", &limit_s.to_string()]);
    command.arg(spark_submit());
    // Spark's scratch files (spark-warehouse, metastore) stay out of the repository.
    command
        .current_dir(work)
        .env("PYSPARK_PYTHON", &python)
        .env("PYSPARK_DRIVER_PYTHON", &python)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env_remove("LOOKALIKE_LOG")
        .args(["--master", master])
        .args(["--conf", "spark.ui.enabled=false"]);
    command
}

/// Runs the job in `local[2]` with `args` (after the script), shipping the test binary and
/// model folder, and returns the job record it leaves in `out`.
fn run_job(work: &Path, out: &Path, args: &[&str]) -> Value {
    let started = Instant::now();
    let result = spark_command(work, "local[2]", 900)
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
    let tail = |s: &str| {
        let mut start = s.len().saturating_sub(6000);
        while !s.is_char_boundary(start) {
            start += 1;
        }
        s[start..].to_owned()
    };
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

/// The last `limit` bytes of `text` or a little less (on a character boundary).
fn last(text: &str, limit: usize) -> &str {
    let mut start = text.len().saturating_sub(limit);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Runs a Python `script` with the test's Python (the one with PySpark) and `args`; returns
/// the one JSON object it prints.
fn python_json(script: &str, args: &[&OsStr]) -> Value {
    let result = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "python failed: {stderr}");
    serde_json::from_slice(&result.stdout)
        .unwrap_or_else(|e| panic!("python printed no JSON object ({e}): {stderr}"))
}

/// The pure parts of `--gpus`, called in Python with the job's own module: the device a task
/// runs on (from what TaskContext.resources() holds, as PySpark's own ResourceInformation),
/// the command line with and without one, the Spark settings asked for (and those left as
/// spark-submit set them), and the options' checks.
#[test]
fn gpus_picks_the_device_spark_gave_the_task_and_keeps_the_cpu_command_line() {
    const SCRIPT: &str = r#"
import contextlib, importlib.util, io, json, sys
spec = importlib.util.spec_from_file_location("lookalike_spark", sys.argv[1])
job = importlib.util.module_from_spec(spec)
spec.loader.exec_module(job)
from pyspark.resource import ResourceInformation as R

def outcome(f, *args):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return {"ok": f(*args)}
    except ValueError as e:
        return {"error": str(e)}
    except SystemExit as e:
        return {"exit": err.getvalue().strip().splitlines()[-1]}

def parsed(*argv):
    a = job.parse_args(list(argv))
    return [a.gpus, a.executor_gpus, a.gpu_discovery_script]

E, T, D = job.EXECUTOR_GPUS, job.TASK_GPUS, job.GPU_DISCOVERY_SCRIPT
command = lambda device, model_dir="/m": job.embed_command(
    "/bin/lookalike", model_dir, device, 2, 3, ["--model", "lite0"], "/out", ["--tar", "-"])
print(json.dumps({
    "device": {
        "cpu_job": outcome(job.task_device, False, {"gpu": R("gpu", ["1"])}),
        "cpu_job_no_resources": outcome(job.task_device, False, {}),
        "gpu": outcome(job.task_device, True, {"gpu": R("gpu", ["3"])}),
        "gpu_zero": outcome(job.task_device, True, {"gpu": R("gpu", ["0"])}),
        "two_gpus": outcome(job.task_device, True, {"gpu": R("gpu", ["2", "5"])}),
        "plain_list": outcome(job.task_device, True, {"gpu": ["7"]}),
        "no_gpu": outcome(job.task_device, True, {}),
        "no_resources": outcome(job.task_device, True, None),
        "no_address": outcome(job.task_device, True, {"gpu": R("gpu", [])}),
        "other_resource": outcome(job.task_device, True, {"fpga": R("fpga", ["0"])}),
        "uuid": outcome(job.task_device, True, {"gpu": R("gpu", ["GPU-8d6b1f2c"])}),
    },
    "command": {
        "cpu": command(None),
        "gpu": command("cuda:1"),
        "gpu_no_model_dir": command("cuda:0", None),
    },
    "settings": {
        "yarn": outcome(job.gpu_settings, None, None, {"spark.master": "yarn"}),
        "standalone": outcome(job.gpu_settings, 4, "/opt/spark/getGpusResources.sh",
                              {"spark.master": "spark://head:7077"}),
        "local_cluster": outcome(job.gpu_settings, None, None,
                                 {"spark.master": "local-cluster[1,1,1024]"}),
        "kept": outcome(job.gpu_settings, None, None,
                        {"spark.master": "k8s://https://k:6443", E: "2", T: "0.5", D: "/g.sh"}),
        "agrees": outcome(job.gpu_settings, 2, "/g.sh",
                          {"spark.master": "yarn", E: "2", D: "/g.sh"}),
        "contradicts": outcome(job.gpu_settings, 4, None, {"spark.master": "yarn", E: "2"}),
        "other_script": outcome(job.gpu_settings, None, "/a.sh", {"spark.master": "yarn", D: "/b.sh"}),
        "local": outcome(job.gpu_settings, None, None, {"spark.master": "local[2]"}),
        "local_plain": outcome(job.gpu_settings, None, None, {"spark.master": "local"}),
        "no_master": outcome(job.gpu_settings, None, None, {}),
    },
    "options": {
        "none": outcome(parsed, "in", "--out", "o"),
        "gpus": outcome(parsed, "in", "--out", "o", "--gpus"),
        "all": outcome(parsed, "in", "--out", "o", "--gpus", "--executor-gpus", "4",
                       "--gpu-discovery-script", "/g.sh"),
        "executor_gpus_alone": outcome(parsed, "in", "--out", "o", "--executor-gpus", "2"),
        "script_alone": outcome(parsed, "in", "--out", "o", "--gpu-discovery-script", "/g.sh"),
        "zero_gpus": outcome(parsed, "in", "--out", "o", "--gpus", "--executor-gpus", "0"),
    },
}))
"#;
    let script = repo().join("spark/lookalike_spark.py");
    let v = python_json(SCRIPT, &[script.as_os_str()]);
    let device = &v["device"];
    for (case, want) in [
        ("cpu_job", Value::Null),
        ("cpu_job_no_resources", Value::Null),
        ("gpu", json!("cuda:3")),
        ("gpu_zero", json!("cuda:0")),
        ("two_gpus", json!("cuda:2")),
        ("plain_list", json!("cuda:7")),
    ] {
        assert_eq!(device[case], json!({ "ok": want }), "{case}: {device}");
    }
    for case in ["no_gpu", "no_resources", "no_address", "other_resource"] {
        let error = device[case]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("Spark gave this task no GPU") && error.contains("CPU"),
            "{case}: a task without a GPU fails, saying why: {device}"
        );
    }
    let error = device["uuid"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("'GPU-8d6b1f2c'") && error.contains("device indices"),
        "{device}"
    );

    // Without a device the command line is the CPU job's, exactly; with one, `--device`
    // is a global option, before the subcommand.
    let command = &v["command"];
    let tail = json!([
        "--threads",
        "2",
        "--quiet",
        "embed",
        "--model",
        "lite0",
        "--out",
        "/out",
        "--json",
        "--decode-threads",
        "3",
        "--tar",
        "-"
    ]);
    let with = |head: Value| {
        let mut argv = head.as_array().cloned().unwrap_or_default();
        argv.extend(tail.as_array().cloned().unwrap_or_default());
        Value::Array(argv)
    };
    assert_eq!(
        command["cpu"],
        with(json!(["/bin/lookalike", "--model-dir", "/m"])),
        "{command}"
    );
    assert_eq!(
        command["gpu"],
        with(json!([
            "/bin/lookalike",
            "--model-dir",
            "/m",
            "--device",
            "cuda:1"
        ])),
        "{command}"
    );
    assert_eq!(
        command["gpu_no_model_dir"],
        with(json!(["/bin/lookalike", "--device", "cuda:0"])),
        "{command}"
    );

    // The settings: Spark's standard keys, one GPU per task, and nothing spark-submit set.
    let settings = &v["settings"];
    let (e, t, d) = (
        "spark.executor.resource.gpu.amount",
        "spark.task.resource.gpu.amount",
        "spark.executor.resource.gpu.discoveryScript",
    );
    assert_eq!(
        settings["yarn"],
        json!({"ok": {e: "1", t: "1"}}),
        "{settings}"
    );
    assert_eq!(
        settings["standalone"],
        json!({"ok": {e: "4", t: "1", d: "/opt/spark/getGpusResources.sh"}}),
        "{settings}"
    );
    assert_eq!(
        settings["local_cluster"],
        json!({"ok": {e: "1", t: "1"}}),
        "{settings}"
    );
    assert_eq!(settings["kept"], json!({"ok": {}}), "{settings}");
    assert_eq!(settings["agrees"], json!({"ok": {t: "1"}}), "{settings}");
    for (case, option) in [
        ("contradicts", "--executor-gpus 4"),
        ("other_script", "--gpu-discovery-script /a.sh"),
    ] {
        let error = settings[case]["error"].as_str().unwrap_or_default();
        assert!(error.contains(option), "{case}: {settings}");
    }
    for case in ["local", "local_plain", "no_master"] {
        let error = settings[case]["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("local mode") && error.contains("local-cluster"),
            "{case}: local mode is refused: {settings}"
        );
    }

    let options = &v["options"];
    assert_eq!(
        options["none"],
        json!({"ok": [false, null, null]}),
        "{options}"
    );
    assert_eq!(
        options["gpus"],
        json!({"ok": [true, null, null]}),
        "{options}"
    );
    assert_eq!(
        options["all"],
        json!({"ok": [true, 4, "/g.sh"]}),
        "{options}"
    );
    for (case, message) in [
        ("executor_gpus_alone", "--executor-gpus needs --gpus"),
        ("script_alone", "--gpu-discovery-script needs --gpus"),
        ("zero_gpus", "--executor-gpus must be at least 1"),
    ] {
        let exit = options[case]["exit"].as_str().unwrap_or_default();
        assert!(exit.ends_with(message), "{case}: {options}");
    }
}

/// A stand-in for `lookalike` that writes its arguments, one a line, to a file of its own in
/// `calls`, reads its input and embeds nothing (the summary of a task with nothing to do).
fn fake_lookalike(dir: &Path, calls: &Path) -> PathBuf {
    let path = dir.join("lookalike");
    let script = format!(
        "#!/bin/sh\n\
         for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}/call.'$$\n\
         cat > /dev/null\n\
         echo '{{\"files\": 0, \"rows\": 0, \"skipped\": true}}'\n",
        calls.display()
    );
    std::fs::write(&path, script).expect("write the fake lookalike");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// The command lines the fake `lookalike` ran with since the last call (it removes them).
fn take_calls(calls: &Path) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(calls).expect("the calls folder") {
        let path = entry.expect("a call").path();
        let text = std::fs::read_to_string(&path).expect("a call's arguments");
        found.push(text.lines().map(str::to_owned).collect());
        std::fs::remove_file(&path).expect("remove a call");
    }
    found
}

/// The arguments before the `embed` subcommand: lookalike's global options.
fn global_options(argv: &[String]) -> &[String] {
    let embed = argv.iter().position(|a| a == "embed");
    &argv[..embed.unwrap_or_else(|| panic!("no embed subcommand: {argv:?}"))]
}

/// Runs the job on `dir` with the fake binary and `args`; returns its output.
fn run_fake_job(work: &Path, master: &str, confs: &[String], args: &[&OsStr]) -> Output {
    let started = Instant::now();
    let mut command = spark_command(work, master, 180);
    for conf in confs {
        command.args(["--conf", conf]);
    }
    let result = command
        .arg(repo().join("spark/lookalike_spark.py"))
        .args(args)
        .output()
        .expect("run spark-submit");
    eprintln!(
        "spark job on {master} {args:?}: {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        result.status
    );
    result
}

fn job_failed(result: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        result.status,
        last(&String::from_utf8_lossy(&result.stdout), 4000),
        last(&String::from_utf8_lossy(&result.stderr), 8000)
    )
}

/// A real Spark run with `--gpus`: in `local-cluster` mode (a master, a worker and an executor
/// process, as on a standalone cluster) whose worker gets its GPU, number 3, from a discovery
/// script. Every task runs the binary with `--device cuda:3`: the address Spark gave it, not a
/// default. Without `--gpus` the same job runs it with no `--device`; and in local mode
/// `--gpus` is refused at once rather than leave the tasks waiting for a GPU forever.
#[test]
fn gpus_runs_every_task_on_the_gpu_spark_assigned() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (dir, calls, bin) = (root.join("library"), root.join("calls"), root.join("bin"));
    for folder in [&calls, &bin] {
        std::fs::create_dir_all(folder).unwrap();
    }
    copy_photos(&dir, &PHOTOS[..3]);
    let fake = fake_lookalike(&bin, &calls);
    let discovery = root.join("gpus.sh");
    std::fs::write(
        &discovery,
        "#!/bin/sh\necho '{\"name\": \"gpu\", \"addresses\": [\"3\"]}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&discovery, std::fs::Permissions::from_mode(0o755)).unwrap();
    let discovery_conf = format!(
        "spark.worker.resource.gpu.discoveryScript={}",
        discovery.display()
    );

    // --gpus on a cluster: the worker has one GPU; the executor asks for it (set by the job),
    // the tasks for half of one each (--conf, which the job keeps).
    let out = root.join("gpu-shards");
    let result = run_fake_job(
        &root,
        "local-cluster[1,1,1024]",
        &[
            "spark.worker.resource.gpu.amount=1".to_owned(),
            discovery_conf,
            "spark.task.resource.gpu.amount=0.5".to_owned(),
        ],
        &[
            dir.as_os_str(),
            OsStr::new("--out"),
            out.as_os_str(),
            OsStr::new("--binary"),
            fake.as_os_str(),
            OsStr::new("--gpus"),
            OsStr::new("--gpu-discovery-script"),
            discovery.as_os_str(),
        ],
    );
    assert!(result.status.success(), "{}", job_failed(&result));
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("_lookalike_job.json")).expect("job record"),
    )
    .expect("job record is JSON");
    assert_eq!(record["status"], "done", "{record}");
    assert_eq!(record["device"], "gpu", "{record}");
    assert_eq!(
        record["spark"]["gpu"],
        json!({
            "spark.executor.resource.gpu.amount": "1",
            "spark.task.resource.gpu.amount": "0.5",
            "spark.executor.resource.gpu.discoveryScript": discovery.to_str(),
        }),
        "{record}"
    );
    let ran = take_calls(&calls);
    assert!(!ran.is_empty(), "the binary ran: {record}");
    for argv in &ran {
        assert_eq!(
            global_options(argv),
            ["--device", "cuda:3", "--threads", "1", "--quiet"],
            "{argv:?}"
        );
    }
    let tasks = record["tasks"].as_array().cloned().unwrap_or_default();
    let devices: Vec<&Value> = tasks.iter().map(|t| &t["device"]).collect();
    assert_eq!(devices.len(), ran.len(), "{record}");
    assert!(devices.iter().all(|d| *d == "cuda:3"), "{record}");

    // Without --gpus: the command line as ever, no --device.
    let out = root.join("cpu-shards");
    let result = run_fake_job(
        &root,
        "local[2]",
        &[],
        &[
            dir.as_os_str(),
            OsStr::new("--out"),
            out.as_os_str(),
            OsStr::new("--binary"),
            fake.as_os_str(),
        ],
    );
    assert!(result.status.success(), "{}", job_failed(&result));
    let ran = take_calls(&calls);
    assert!(!ran.is_empty(), "the binary ran");
    for argv in &ran {
        assert_eq!(
            global_options(argv),
            ["--threads", "1", "--quiet"],
            "{argv:?}"
        );
        assert!(!argv.iter().any(|a| a.contains("--device")), "{argv:?}");
    }

    // --gpus in local mode: refused before any task runs.
    let result = run_fake_job(
        &root,
        "local[2]",
        &[],
        &[
            dir.as_os_str(),
            OsStr::new("--out"),
            root.join("refused").as_os_str(),
            OsStr::new("--binary"),
            fake.as_os_str(),
            OsStr::new("--gpus"),
        ],
    );
    // spark-submit passes on the driver's stderr in its stdout.
    let said = [&result.stdout[..], &result.stderr[..]].concat();
    assert_eq!(result.status.code(), Some(1), "{}", job_failed(&result));
    assert!(
        String::from_utf8_lossy(&said)
            .contains("--gpus: Spark's local mode (local[2]) schedules no GPUs"),
        "{}",
        job_failed(&result)
    );
    assert_eq!(take_calls(&calls), Vec::<Vec<String>>::new());
}
