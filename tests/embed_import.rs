//! `lookalike embed` and `lookalike import` end to end, on real photos and a real video: a
//! shard imported equals indexing the same files, a re-import changes nothing, `--part`
//! splits a manifest, a tar stream keeps its names and exact times (and a stream cut short
//! writes no shard), shards of another model or descriptor are refused, and an import killed
//! with -9 loses nothing committed.

mod common;

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::vectors::{normalised, Rng};
use common::{
    assert_same_index, copy_photos, cosine, item_count, lookalike, run_json, run_ok, stored_vectors,
};
use lookalike::descriptor::DescriptorOptions;
use lookalike::index::{ContentHash, FileStamp, MediaKind};
use lookalike::shard::{Identity, ShardError, ShardReader, ShardRow, ShardWriter};
use serde_json::Value;

const PHOTOS: &[(&str, &str)] = &[
    ("skimage/coffee.png", "coffee.png"),
    ("skimage/chelsea.png", "chelsea.png"),
    ("skimage/astronaut.png", "astronaut.png"),
    ("opencv/graf1.png", "graf1.png"),
    ("opencv/box.png", "box.png"),
    ("sklearn/china.jpg", "china.jpg"),
    ("sklearn/flower.jpg", "sub/flower.jpg"),
    ("opencv/aero1.jpg", "sub/aero1.jpg"),
];

/// A folder of the photos above, a real video and a text file named like a photo.
fn library(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut files = copy_photos(dir, PHOTOS);
    let video = dir.join("carphone.mp4");
    std::fs::copy(
        common::testdata().join("videos/carphone_pristine.mp4"),
        &video,
    )
    .unwrap();
    files.push(video);
    std::fs::copy(common::fixture("text.jpg"), dir.join("notes.jpg")).unwrap();
    files
}

fn failed_paths(report: &Value) -> Vec<String> {
    report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect()
}

fn shard_rows(path: &Path) -> Vec<ShardRow> {
    let reader = ShardReader::open(path).unwrap();
    let identity = reader.first_identity().unwrap().unwrap();
    let mut rows = Vec::new();
    let flow = reader
        .for_each(&identity, |row| {
            rows.push(row);
            Ok::<_, ShardError>(ControlFlow::Continue(()))
        })
        .unwrap();
    assert!(flow.is_continue());
    rows
}

#[test]
fn an_imported_shard_equals_indexing_the_same_files_and_a_reimport_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("library");
    library(&dir);
    let (indexed, imported) = (tmp.path().join("indexed"), tmp.path().join("imported"));
    let shards = tmp.path().join("shards");

    let index = run_json(&indexed, &["index", "--json", dir.to_str().unwrap()]);
    let embed = run_json(
        &indexed,
        &[
            "embed",
            "--json",
            "--out",
            shards.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (embed["files"].as_u64(), embed["videos"].as_u64()),
        (Some(10), Some(1)),
        "{embed}"
    );
    assert_eq!(embed["frames"], index["frames"], "{embed} vs {index}");
    assert_eq!(embed["failed"], 1, "the text file is a failed row: {embed}");
    let shard = PathBuf::from(embed["shard"].as_str().unwrap());
    assert!(shard.starts_with(&shards) && shard.is_file(), "{embed}");
    let rows = shard_rows(&shard);
    assert_eq!(rows.len() as u64, embed["rows"].as_u64().unwrap());
    let bad: Vec<&ShardRow> = rows.iter().filter(|r| r.error.is_some()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].path.ends_with("notes.jpg") && bad[0].vector.is_none());

    let import = run_json(&imported, &["import", "--json", shards.to_str().unwrap()]);
    assert_eq!(import["added"], 9, "{import}");
    assert_eq!(failed_paths(&import), failed_paths(&index));

    // The same files, frames, vectors and answers as indexing them.
    let queries = [
        "skimage/chelsea.png",
        "opencv/box_in_scene.png",
        "sklearn/china.jpg",
    ];
    assert_same_index(&indexed, &imported, &queries.map(common::photo));

    // Importing again changes nothing: not even an item id.
    let before = stored_vectors(&imported);
    let again = run_json(&imported, &["import", "--json", shards.to_str().unwrap()]);
    assert_eq!(
        (again["added"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(9)),
        "{again}"
    );
    assert_eq!(stored_vectors(&imported), before);
}

#[test]
fn parts_of_a_manifest_cover_it_once_and_a_finished_part_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    let files = copy_photos(&dir, &PHOTOS[..6]);
    let manifest = tmp.path().join("manifest.txt");
    let mut lines: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    lines.push(dir.join("gone.jpg").display().to_string());
    lines.push("# a comment".into());
    std::fs::write(&manifest, lines.join("\n")).unwrap();
    let shards = tmp.path().join("shards");
    let db = tmp.path().join("db");

    let part = |i: usize, extra: &[&str]| {
        let part = format!("{i}/3");
        let mut args = vec![
            "embed",
            "--json",
            "--manifest",
            manifest.to_str().unwrap(),
            "--part",
            &part,
            "--out",
            shards.to_str().unwrap(),
        ];
        args.extend(extra);
        run_json(&db, &args)
    };
    let mut total = 0;
    for i in 0..3 {
        let out = part(i, &[]);
        assert!(
            out["shard"]
                .as_str()
                .unwrap()
                .ends_with(&format!("part-0000{i}-of-00003.parquet")),
            "{out}"
        );
        total += out["files"].as_u64().unwrap();
    }
    assert_eq!(total, 7, "every line in exactly one part");

    let shard = shards.join("part-00001-of-00003.parquet");
    let before = std::fs::metadata(&shard).unwrap().modified().unwrap();
    let skipped = part(1, &["--skip-existing"]);
    assert_eq!(skipped["skipped"], true, "{skipped}");
    assert_eq!(
        std::fs::metadata(&shard).unwrap().modified().unwrap(),
        before
    );

    let import = run_json(&db, &["import", "--json", shards.to_str().unwrap()]);
    assert_eq!(import["added"], 6, "{import}");
    assert_eq!(
        failed_paths(&import),
        [dir.join("gone.jpg").display().to_string()]
    );
    assert_eq!(run_json(&db, &["stats", "--json"])["files"], 6);
}

/// A tar archive of (member name, bytes, PAX mtime) in memory; the names go in PAX `path`
/// records, as Python's tarfile writes names too long for the header.
fn tar_of(members: &[(&str, Vec<u8>, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes, mtime) in members {
        builder
            .append_pax_extensions([("path", name.as_bytes()), ("mtime", mtime.as_bytes())])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("member").unwrap();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

fn embed_tar(db: &Path, out: &Path, tar: &[u8]) -> std::process::Output {
    let mut child = lookalike(db)
        .args([
            "embed",
            "--json",
            "--tar",
            "-",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A sender that stops early sees a broken pipe at most.
    let _ = child.stdin.take().unwrap().write_all(tar);
    child.wait_with_output().unwrap()
}

#[test]
fn a_tar_stream_keeps_names_and_exact_times_and_one_cut_short_writes_no_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let china = std::fs::read(common::photo("sklearn/china.jpg")).unwrap();
    let coffee = std::fs::read(common::photo("skimage/coffee.png")).unwrap();
    // A name longer than a tar header holds, as object-store keys often are.
    let long = format!("s3a://bucket/{}/coffee.png", "deep/".repeat(30));
    let tar = tar_of(&[
        ("/remote/china.jpg", china.clone(), "1700000000.123456789"),
        (&long, coffee.clone(), "1600000000"),
        ("/remote/readme.jpg", b"just text".to_vec(), "1600000000.5"),
    ]);

    let shards = tmp.path().join("shards");
    let out = embed_tar(&db, &shards, &tar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["files"].as_u64(), summary["failed"].as_u64()),
        (Some(3), Some(1))
    );
    let rows = shard_rows(Path::new(summary["shard"].as_str().unwrap()));
    let row = |name: &str| rows.iter().find(|r| r.path == name).unwrap();
    assert_eq!(
        row("/remote/china.jpg").stamp,
        FileStamp {
            size: china.len() as u64,
            mtime_ns: 1_700_000_000_123_456_789
        }
    );
    assert_eq!(row(&long).stamp.mtime_ns, 1_600_000_000_000_000_000);
    assert_eq!(
        row("/remote/china.jpg").content_hash,
        Some(ContentHash::of_bytes(&china))
    );
    assert!(row("/remote/readme.jpg").error.is_some());

    // The vectors are those of the same bytes read from a file.
    let from_files = tmp.path().join("from-files");
    let plain = run_json(
        &db,
        &[
            "embed",
            "--json",
            "--out",
            from_files.to_str().unwrap(),
            common::photo("sklearn/china.jpg").to_str().unwrap(),
        ],
    );
    let file_rows = shard_rows(Path::new(plain["shard"].as_str().unwrap()));
    let similarity = cosine(
        file_rows[0].vector.as_ref().unwrap(),
        row("/remote/china.jpg").vector.as_ref().unwrap(),
    );
    assert!(similarity >= 0.9999, "cosine {similarity}");
    assert_eq!(
        file_rows[0].content_hash,
        row("/remote/china.jpg").content_hash
    );

    // A stream that stops mid-archive (its sender died) fails, and leaves nothing behind.
    let cut = tmp.path().join("cut");
    let out = embed_tar(&db, &cut, &tar[..tar.len() / 2]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tar"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&cut)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn shards_of_another_model_or_descriptor_are_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    copy_photos(&dir, &PHOTOS[..2]);
    let db = tmp.path().join("db");
    run_ok(&db, &["index", dir.to_str().unwrap()]);

    let refused = |embed_args: &[&str]| {
        let shards = tmp.path().join(format!("shards-{}", embed_args.join("-")));
        let mut args = vec!["embed", "--out", shards.to_str().unwrap()];
        args.extend(embed_args);
        args.push(dir.to_str().unwrap());
        run_ok(&db, &args);
        let out = lookalike(&db)
            .args(["import", shards.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{embed_args:?} was imported");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let message = refused(&["--pooling", "average"]);
    assert!(
        message.contains("average") && message.contains("embed again"),
        "{message}"
    );
    let message = refused(&["--model", "lite2"]);
    assert!(message.contains("efficientnet-lite2"), "{message}");
    assert_eq!(
        run_json(&db, &["stats", "--json"])["files"],
        2,
        "nothing imported"
    );

    // Into a new index, a shard brings its own model and descriptor.
    let fresh = tmp.path().join("fresh");
    run_ok(
        &fresh,
        &[
            "import",
            tmp.path()
                .join("shards---pooling-average")
                .to_str()
                .unwrap(),
        ],
    );
    let stats = run_json(&fresh, &["stats", "--json"]);
    assert_eq!(stats["descriptor"]["pooling"]["kind"], "average", "{stats}");
}

#[test]
fn kill_9_mid_import_loses_nothing_committed_and_the_next_import_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let shards = tmp.path().join("shards");
    let identity = Identity {
        model: "efficientnet-lite0".into(),
        descriptor: DescriptorOptions {
            whitening: None,
            ..DescriptorOptions::default()
        },
    };
    // Synthetic rows around a few centres, as real embeddings cluster: what is tested is the
    // import, not the network.
    let n: u64 = 6_000;
    let mut rng = Rng::new(7);
    let centres: Vec<Vec<f32>> = (0..40).map(|_| rng.unit(1280)).collect();
    for part in 0..3 {
        let mut writer = ShardWriter::create(&shards, &identity).unwrap();
        for i in 0..n / 3 {
            writer
                .push(ShardRow {
                    path: format!("/synthetic/{part}/{i:05}.jpg"),
                    stamp: FileStamp {
                        size: 1000 + i,
                        mtime_ns: 1,
                    },
                    content_hash: None,
                    kind: MediaKind::Image,
                    facts: Default::default(),
                    t: None,
                    width: Some(64),
                    height: Some(64),
                    vector: Some(normalised(
                        centres[i as usize % centres.len()]
                            .iter()
                            .zip(rng.unit(1280))
                            .map(|(c, noise)| c + 0.5 * noise)
                            .collect(),
                    )),
                    error: None,
                    regions: Default::default(),
                    labels: Vec::new(),
                    partial: None,
                })
                .unwrap();
        }
        writer.finish(None).unwrap();
    }

    let db = tmp.path().join("db");
    let mut child = lookalike(&db)
        .args(["import", "--commit-every", "10", shards.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while item_count(&db) < 1000 {
        assert!(Instant::now() < deadline, "the import made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed = item_count(&db);
    assert!(
        (1000..n).contains(&committed),
        "killed mid-import: {committed}"
    );

    let resumed = run_json(&db, &["import", "--json", shards.to_str().unwrap()]);
    assert_eq!(
        resumed["added"].as_u64().unwrap() + resumed["unchanged"].as_u64().unwrap(),
        n,
        "{resumed}"
    );
    assert!(
        resumed["unchanged"].as_u64().unwrap() >= committed,
        "{resumed}"
    );
    let stats = run_json(&db, &["stats", "--json"]);
    assert_eq!(
        (stats["files"].as_u64(), stats["items"].as_u64()),
        (Some(n), Some(n))
    );
    // The index answers from what it holds: the first item committed finds itself first.
    let hit = run_json(&db, &["search", "--json", "-k", "1", "--id", "1"]);
    assert_eq!(hit["results"][0]["id"], 1, "{hit}");
    assert_eq!(
        hit["results"][0]["score"].as_f64().map(|s| s > 0.999),
        Some(true),
        "{hit}"
    );
}
