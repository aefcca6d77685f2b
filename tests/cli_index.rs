//! `lookalike index` / `search` / `stats` / `remove` / `export` end to end, on real photos:
//! incremental re-indexing, bad files in the tree, the JSON contract of `search`, crash safety
//! (kill -9 mid-run) and searching while another process indexes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{copy_photos, item_count, lookalike, run_json, run_ok, top_path, wait_for};
use serde_json::Value;

const PHOTOS: &[(&str, &str)] = &[
    ("skimage/coffee.png", "coffee.png"),
    ("skimage/chelsea.png", "chelsea.png"),
    ("skimage/astronaut.png", "astronaut.png"),
    ("opencv/graf1.png", "graf1.png"),
    ("sklearn/china.jpg", "china.jpg"),
    ("opencv/aero1.jpg", "sub/aero1.jpg"),
];

fn stats(db: &Path) -> Value {
    run_json(db, &["stats", "--json"])
}

fn index(db: &Path, dir: &Path) -> Value {
    run_json(db, &["index", "--json", dir.to_str().unwrap()])
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap().to_str().unwrap().to_owned()
}

#[test]
fn reindexing_only_touches_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let files = copy_photos(&dir, PHOTOS);

    let r = index(&db, &dir);
    assert_eq!(
        (r["added"].as_u64(), r["unchanged"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(stats(&db)["items"], 6);

    let r = index(&db, &dir);
    assert_eq!(
        (r["added"].as_u64(), r["unchanged"].as_u64()),
        (Some(0), Some(6)),
        "{r}"
    );

    // Touch: a new mtime makes the file count as modified.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_modified(later)
        .unwrap();
    let r = index(&db, &dir);
    assert_eq!(
        (r["added"].as_u64(), r["unchanged"].as_u64()),
        (Some(1), Some(5)),
        "{r}"
    );

    // Modify: chelsea.png now holds the rocket; searching with the rocket finds that path.
    std::fs::copy(common::photo("skimage/rocket.jpg"), &files[1]).unwrap();
    let r = index(&db, &dir);
    assert_eq!(r["added"], 1, "{r}");
    assert_eq!(
        top_path(&db, &common::photo("skimage/rocket.jpg")),
        canonical(&files[1])
    );
    assert_eq!(stats(&db)["items"], 6, "a modified file replaces its row");

    // Delete one, add one.
    std::fs::remove_file(&files[2]).unwrap();
    std::fs::copy(common::photo("skimage/camera.png"), dir.join("camera.png")).unwrap();
    let r = index(&db, &dir);
    assert_eq!(
        (r["added"].as_u64(), r["removed"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(stats(&db)["items"], 6);

    // Rename: the old path is pruned, the new one indexed; search returns the new path.
    let renamed = dir.join("sub/renamed_china.jpg");
    std::fs::rename(&files[4], &renamed).unwrap();
    let r = index(&db, &dir);
    assert_eq!(
        (r["added"].as_u64(), r["removed"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    assert_eq!(
        top_path(&db, &common::photo("sklearn/china.jpg")),
        canonical(&renamed)
    );
    assert_eq!(stats(&db)["files"], 6);

    // Indexing a sub-folder does not prune what lies outside it.
    let r = index(&db, &dir.join("sub"));
    assert_eq!(
        (r["removed"].as_u64(), r["unchanged"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    assert_eq!(stats(&db)["files"], 6);
}

#[test]
fn bad_files_are_reported_and_skipped_without_failing_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    copy_photos(&dir, &PHOTOS[..3]);
    let bad = [
        "truncated.jpg",
        "empty.jpg",
        "text.jpg",
        "huge_header.png",
        "corrupt.webp",
    ];
    for name in bad {
        std::fs::copy(common::fixture(name), dir.join(name)).unwrap();
    }
    let r = index(&db, &dir);
    assert_eq!(r["added"], 3, "{r}");
    let failed: Vec<&str> = r["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    let mut expected = bad.to_vec();
    expected.sort();
    let mut failed_sorted = failed.clone();
    failed_sorted.sort();
    assert_eq!(failed_sorted, expected, "{r}");
    for f in r["failed"].as_array().unwrap() {
        assert!(!f["reason"].as_str().unwrap().is_empty());
    }
    assert_eq!(stats(&db)["items"], 3);
}

#[test]
fn search_json_is_one_object_per_query_in_order_with_errors_inline() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let files = copy_photos(&dir, PHOTOS);
    index(&db, &dir);

    // A fresh copy (not indexed: embedded), a missing file, a text file, an indexed path.
    let fresh = tmp.path().join("query_graf3.png");
    std::fs::copy(common::photo("opencv/graf3.png"), &fresh).unwrap();
    let text = tmp.path().join("notes.jpg");
    std::fs::write(&text, "not an image").unwrap();
    let queries = [
        fresh.to_str().unwrap(),
        "/no/such/file.jpg",
        text.to_str().unwrap(),
        files[0].to_str().unwrap(),
    ];
    let out = lookalike(&db)
        .args(["search", "--json", "-k", "3"])
        .args(queries)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "exit 2 when some query failed");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4);
    for (line, query) in lines.iter().zip(queries) {
        assert_eq!(line["query"], query, "query as given, in order");
    }
    // graf3 is the same scene as the indexed graf1.
    let first = &lines[0]["results"];
    assert_eq!(first.as_array().unwrap().len(), 3);
    assert_eq!(first[0]["path"], canonical(&files[3]));
    let score = first[0]["score"].as_f64().unwrap();
    assert!(score > 0.5 && score <= 1.0001, "{score}");
    assert!(first[0]["id"].is_i64());
    assert!(
        first[0]["score"].as_f64() >= first[1]["score"].as_f64(),
        "best first"
    );
    assert!(lines[0].get("error").is_none());
    for bad in &lines[1..3] {
        assert_eq!(bad["results"], Value::Array(vec![]));
        assert!(
            bad["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{bad}"
        );
    }
    // An indexed path finds itself with similarity 1.
    assert_eq!(lines[3]["results"][0]["path"], canonical(&files[0]));
    assert!(lines[3]["results"][0]["score"].as_f64().unwrap() > 0.999);

    // --exact agrees with the approximate search on a small index; --id searches by item.
    let exact = run_json(&db, &["search", "--json", "--exact", "-k", "3", queries[0]]);
    assert_eq!(exact["results"], lines[0]["results"]);
    let id = lines[3]["results"][0]["id"].as_i64().unwrap().to_string();
    let by_id = run_json(&db, &["search", "--json", "-k", "1", "--id", &id]);
    assert_eq!(by_id["query"], id.as_str());
    assert_eq!(by_id["results"][0]["path"], canonical(&files[0]));
}

#[test]
fn remove_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let files = copy_photos(&dir, PHOTOS);
    index(&db, &dir);
    run_ok(&db, &["remove", files[0].to_str().unwrap()]);
    assert_eq!(stats(&db)["items"], 5);
    assert_ne!(
        top_path(&db, &files[0]),
        canonical(&files[0]),
        "removed from search"
    );

    let out = tmp.path().join("export");
    run_ok(&db, &["export", "--out", out.to_str().unwrap()]);
    let npy = std::fs::read(out.join("vectors.npy")).unwrap();
    assert_eq!(&npy[..6], b"\x93NUMPY");
    let header = String::from_utf8_lossy(&npy[10..128]);
    assert!(header.contains("'shape': (5, 1280"), "{header}");
    let items = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    assert_eq!(items.lines().count(), 5);
    assert!(items.contains(&canonical(&files[1])));
}

/// A folder of `n` real photos (hard links to the cached files under distinct names).
fn corpus(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut sources: Vec<PathBuf> = ["opencv", "skimage"]
        .iter()
        .flat_map(|d| std::fs::read_dir(common::testdata().join("photos").join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    sources.sort();
    (0..n)
        .map(|i| {
            let src = &sources[i % sources.len()];
            let dst = dir.join(format!(
                "{i:05}_{}",
                src.file_name().unwrap().to_str().unwrap()
            ));
            std::fs::hard_link(src, &dst)
                .or_else(|_| std::fs::copy(src, &dst).map(|_| ()))
                .unwrap();
            dst
        })
        .collect()
}

#[test]
fn kill_9_mid_run_loses_nothing_committed_and_the_next_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    let n = 400;
    corpus(&dir, n);

    let mut child = lookalike(&db)
        .args(["index", "--commit-every", "16", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Searching while another process indexes: every search succeeds and sees committed rows.
    wait_for("the first commits", || item_count(&db) >= 32);
    let query = common::photo("opencv/graf1.png");
    let during = run_json(
        &db,
        &["search", "--json", "-k", "5", query.to_str().unwrap()],
    );
    assert_eq!(during["results"].as_array().unwrap().len(), 5, "{during}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let committed = item_count(&db);
    assert!(
        committed >= 32 && committed < n as u64,
        "killed mid-run: {committed}"
    );
    // What was committed is searchable, exactly and approximately alike.
    let exact = run_json(
        &db,
        &[
            "search",
            "--json",
            "--exact",
            "-k",
            "5",
            query.to_str().unwrap(),
        ],
    );
    let approx = run_json(
        &db,
        &["search", "--json", "-k", "5", query.to_str().unwrap()],
    );
    assert_eq!(exact["results"][0], approx["results"][0]);

    // The next run indexes only the rest; no file twice.
    let r = index(&db, &dir);
    assert_eq!(r["unchanged"].as_u64(), Some(committed), "{r}");
    assert_eq!(r["added"].as_u64(), Some(n as u64 - committed), "{r}");
    let s = stats(&db);
    assert_eq!(
        (s["files"].as_u64(), s["items"].as_u64()),
        (Some(n as u64), Some(n as u64))
    );

    // Every indexed copy of graf1 (same bytes) scores ~1 for the graf1 query.
    let copies = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with("_graf1.png")
        })
        .count();
    let k = copies.to_string();
    let top = run_json(
        &db,
        &["search", "--json", "-k", &k, query.to_str().unwrap()],
    );
    for hit in top["results"].as_array().unwrap() {
        assert!(
            hit["path"].as_str().unwrap().ends_with("_graf1.png"),
            "{hit}"
        );
        assert!(hit["score"].as_f64().unwrap() > 0.999, "{hit}");
    }
}

/// Starts `lookalike serve` (`cmd`, with `args`) on a free loopback port; returns it once
/// `/healthz` answers, with its base URL. Its stderr is piped.
fn serve(mut cmd: Command, args: &[&str]) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = cmd
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let healthz = format!("{base}/healthz");
    wait_for("the server", || {
        reqwest::blocking::get(&healthz).is_ok_and(|r| r.status().is_success())
    });
    (server, base)
}

/// The token can come from a file, so it shows nowhere in the process list, and the server
/// takes exactly its line, before LOOKALIKE_TOKEN; `--token` on the command line (which `ps`
/// shows) is warned about, and a file that holds more than the token is refused at start.
#[test]
fn the_token_comes_from_a_file_and_stays_out_of_the_process_list() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let file = tmp.path().join("token");
    std::fs::write(&file, "file-token-0451\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let mut from_file = lookalike(&db);
    from_file.env("LOOKALIKE_TOKEN", "env-token-77");
    let (mut server, base) = serve(from_file, &["--token-file", file.to_str().unwrap()]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("file-token-0451"));
    let delete = |token: &str| {
        reqwest::blocking::Client::new()
            .delete(format!("{base}/api/items/424242"))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(delete("file-token-045"), 401);
    assert_eq!(delete("file-token-04511"), 401);
    assert_eq!(delete("env-token-77"), 401, "the file takes precedence");
    // Past the token check: there is no such item.
    assert_eq!(delete("file-token-0451"), 404);
    server.kill().unwrap();
    server.wait().unwrap();

    let mut quietless = lookalike(&db);
    quietless.env("LOOKALIKE_LOG", "warn");
    let (mut server, _) = serve(quietless, &["--token", "cmdline-token"]);
    server.kill().unwrap();
    let out = server.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("visible to every user"), "{stderr}");
    assert!(!stderr.contains("cmdline-token"), "{stderr}");

    for (content, why) in [
        ("one\ntwo\n", "on one line"),
        ("\n", "the token is empty"),
        (" spaced\n", "the token is empty"),
    ] {
        std::fs::write(&file, content).unwrap();
        let refused = lookalike(&db)
            .args(["serve", "--bind", "127.0.0.1:0", "--token-file"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{content:?} was taken");
        assert!(stderr.contains(why), "{content:?}: {stderr}");
    }
    let both = lookalike(&db)
        .args(["serve", "--token", "a", "--token-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("give the token once"));
}

/// A second writer never interleaves with the first: `lookalike index` while
/// `lookalike serve --token` (which takes uploads) has the index open is refused at once,
/// naming the server's process, and changes nothing; once the server stops, it runs.
#[test]
fn index_while_a_writing_server_runs_is_refused_with_who_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir, more) = (
        tmp.path().join("db"),
        tmp.path().join("photos"),
        tmp.path().join("more"),
    );
    copy_photos(&dir, &PHOTOS[..2]);
    copy_photos(&more, &PHOTOS[2..4]);
    index(&db, &dir);

    let mut writing = lookalike(&db);
    writing.env("LOOKALIKE_TOKEN", "secret-token");
    let (mut server, _) = serve(writing, &[]);

    let refused = lookalike(&db)
        .args(["index", more.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a second writer ran: {stderr}");
    assert!(
        stderr.contains("being written by another process")
            && stderr.contains(&format!("pid {} (lookalike)", server.id())),
        "the refusal names the server: {stderr}"
    );
    assert!(!stderr.contains("secret-token"), "{stderr}");
    assert_eq!(item_count(&db), 2, "the refused run changed nothing");

    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        index(&db, &more)["added"],
        2,
        "free once the server is gone"
    );
    assert_eq!(item_count(&db), 4);
}

/// `lookalike search ... | head`: the reader leaving early is no error (and no panic).
#[test]
fn search_output_cut_short_by_its_reader_is_not_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, dir) = (tmp.path().join("db"), tmp.path().join("photos"));
    let files = copy_photos(&dir, &PHOTOS[..3]);
    index(&db, &dir);
    for format in [&["--json"][..], &[]] {
        let mut child = lookalike(&db)
            .arg("search")
            .args(format)
            .args(files.iter().map(|f| f.to_str().unwrap()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the model has even loaded: every line written meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format:?}: {}: {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
