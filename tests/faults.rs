//! Fault injection (issue 18), end to end through the `lookalike` binary on real photos: the
//! disk filling up while indexing and while the server takes uploads, a read-only index
//! directory, a damaged catalog, damaged or deleted ANN snapshots, the model cache deleted
//! under a running server, and ffmpeg missing. Each case checks that the fault gets a clear
//! error (an exit status or a JSON answer that names the cause, never a panic or a dead server),
//! that everything committed before it is still there and searchable, and that a later normal
//! run succeeds on the same index.
//!
//! Disk faults happen on a small tmpfs mounted in a private mount namespace (`unshare -m`):
//! the test fills it with a ballast file, remounts it read-only, and frees it again, while
//! `lookalike` runs inside the namespace (`nsenter`). Where mounting is refused (no root, as
//! on many CI machines), a file size limit stands in for the full disk (`ulimit -f`, writes
//! past it fail with EFBIG as they would with ENOSPC), and the read-only directory is made by
//! permissions, which stop anyone but root. Each test prints which mode ran;
//! `LOOKALIKE_FAULTS_NO_MOUNT=1` forces the fallback.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{copy_photos, photo, testdata};
use lookalike::index::Index;
use reqwest::blocking::{multipart, Client, Response};
use serde_json::{json, Value};

const TOKEN: &str = "faults-token-18";

/// A dozen real photos. The tests index a first few before the fault, and upload the last two
/// (a large PNG and a small one).
const PHOTOS: &[(&str, &str)] = &[
    ("skimage/coffee.png", "coffee.png"),
    ("skimage/chelsea.png", "chelsea.png"),
    ("skimage/rocket.jpg", "rocket.jpg"),
    ("skimage/camera.png", "camera.png"),
    ("skimage/coins.png", "coins.png"),
    ("skimage/moon.png", "moon.png"),
    ("sklearn/china.jpg", "china.jpg"),
    ("sklearn/flower.jpg", "flower.jpg"),
    ("opencv/aero1.jpg", "aero1.jpg"),
    ("opencv/home.jpg", "home.jpg"),
    ("skimage/astronaut.png", "astronaut.png"),
    ("skimage/horse.png", "horse.png"),
];

/// An upload too large for [`UPLOAD_ROOM`] (791 KB).
const BIG_UPLOAD: &str = "skimage/astronaut.png";
/// An upload that fits in [`UPLOAD_ROOM`] (17 KB), whose catalog commit (~70 KB of WAL) does not.
const SMALL_UPLOAD: &str = "skimage/horse.png";

/// Room left on the full disk while indexing: a few photos' commits (~70 KB of WAL each, with
/// `--commit-every 1`), so that the run fails part-way with some of its files committed.
const INDEX_ROOM: u64 = 256 << 10;
/// Room left on the full disk while uploading.
const UPLOAD_ROOM: u64 = 32 << 10;
/// The tmpfs: the indexes of these tests take under 2 MB.
const DISK_SIZE: &str = "16m";

// ---------------------------------------------------------------------------------------------
// The disk an index lives on

/// The file system an index directory (`db`) lives on, and the faults it can be given.
struct Disk {
    /// The tmpfs mount point, or a plain folder in the fallback.
    root: PathBuf,
    /// The process whose private mount namespace holds the tmpfs (a `cat` waiting on its
    /// stdin, so that it also ends when the test process dies); None in the fallback.
    holder: Option<Child>,
}

impl Disk {
    /// A tmpfs under `parent` when mounting is allowed, else a plain folder.
    fn new(parent: &Path) -> Disk {
        let root = parent.join("disk");
        std::fs::create_dir_all(&root).unwrap();
        let holder = if std::env::var_os("LOOKALIKE_FAULTS_NO_MOUNT").is_some() {
            eprintln!("faults: LOOKALIKE_FAULTS_NO_MOUNT is set: fallback mode");
            None
        } else {
            private_tmpfs(&root)
                .map_err(|why| eprintln!("faults: no tmpfs ({why}): fallback mode"))
                .ok()
        };
        if holder.is_some() {
            eprintln!("faults: tmpfs of {DISK_SIZE} in a private mount namespace");
        }
        Disk { root, holder }
    }

    fn mounted(&self) -> bool {
        self.holder.is_some()
    }

    fn db(&self) -> PathBuf {
        self.root.join("db")
    }

    /// Where this test process reaches `path` as the namespace sees it (through
    /// `/proc/PID/root`). Only for plain file operations: SQLite resolves symbolic links and
    /// would leave the namespace.
    fn host_path(&self, path: &Path) -> PathBuf {
        match &self.holder {
            Some(holder) => Path::new(&format!("/proc/{}/root", holder.id()))
                .join(path.strip_prefix("/").expect("an absolute path")),
            None => path.to_path_buf(),
        }
    }

    /// `lookalike` on this disk's index, inside the namespace.
    fn lookalike(&self) -> Command {
        let cmd = common::lookalike(&self.db());
        match &self.holder {
            Some(holder) => prefixed(
                &["nsenter", "-t", &holder.id().to_string(), "-m", "--"],
                &cmd,
            ),
            None => cmd,
        }
    }

    /// `lookalike` on this disk's index with only `room` bytes left: the disk filled by a
    /// ballast file (which stays until [`Disk::free`]), or in the fallback each file the command
    /// writes limited to `room` bytes more than the index's largest file.
    fn lookalike_when_full(&self, room: u64) -> Command {
        if self.mounted() {
            self.fill(room);
            return self.lookalike();
        }
        let limit = largest_file(&self.db()) + room;
        // A soft limit, so that `free` can lift it from a server still running under it.
        let script = format!(
            "trap '' XFSZ; ulimit -S -f {} && exec \"$0\" \"$@\"",
            limit.div_ceil(512)
        );
        prefixed(&["sh", "-c", &script], &common::lookalike(&self.db()))
    }

    /// What a full disk makes SQLite and the OS say: "database or disk is full" and "No space
    /// left on device" on the tmpfs, "disk I/O error" (SQLite's word for EFBIG) and "File too
    /// large" under the size limit.
    fn full_says(&self) -> &'static [&'static str] {
        match self.mounted() {
            true => &["database or disk is full", "No space left on device"],
            false => &["disk I/O error", "File too large"],
        }
    }

    /// Fills the tmpfs with a ballast file, then shortens it to leave `room` bytes free.
    fn fill(&self, room: u64) {
        let path = self.host_path(&self.root.join("ballast"));
        let mut ballast = File::create(&path).expect("create the ballast");
        let chunk = vec![0u8; 1 << 16];
        loop {
            match ballast.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let full = ballast.metadata().unwrap().len();
        ballast.set_len(full.saturating_sub(room)).unwrap();
    }

    /// Makes room again: deletes the ballast, or in the fallback lifts the size limit of
    /// `running`, a process started by [`Disk::lookalike_when_full`] (one that has ended
    /// needs nothing).
    fn free(&self, running: Option<u32>) {
        if self.mounted() {
            std::fs::remove_file(self.host_path(&self.root.join("ballast"))).unwrap();
        } else if let Some(pid) = running {
            let lifted = Command::new("prlimit")
                .args(["--pid", &pid.to_string(), "--fsize=unlimited"])
                .status()
                .expect("run prlimit");
            assert!(lifted.success(), "prlimit: {lifted}");
        }
    }

    /// Makes the index directory read-only (or writable again): the tmpfs remounted, or in the
    /// fallback the files' permissions, which stop anyone but root. Err says why it cannot.
    fn set_read_only(&self, read_only: bool) -> Result<(), String> {
        if let Some(holder) = &self.holder {
            let option = if read_only {
                "remount,ro"
            } else {
                "remount,rw"
            };
            let status = Command::new("nsenter")
                .args(["-t", &holder.id().to_string(), "-m", "mount", "-o", option])
                .arg(&self.root)
                .status()
                .expect("run nsenter");
            return match status.success() {
                true => Ok(()),
                false => Err(format!("mount -o {option}: {status}")),
            };
        }
        if is_root() {
            return Err("mounting is refused, and permissions do not stop root".into());
        }
        set_permissions(&self.db(), read_only);
        Ok(())
    }

    /// What a read-only directory makes the OS say.
    fn read_only_says(&self) -> &'static [&'static str] {
        match self.mounted() {
            true => &["Read-only file system"],
            false => &["Permission denied"],
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Some(holder) = &mut self.holder {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

/// Mounts a tmpfs on `mount_point` in a new private mount namespace and returns the process
/// that holds it, once `nsenter` is known to reach it.
fn private_tmpfs(mount_point: &Path) -> Result<Child, String> {
    let mut holder = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={DISK_SIZE} lookalike-faults \"$0\" && echo mounted && exec cat"
        ))
        .arg(mount_point)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let mut line = String::new();
    let _ = BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line);
    if line.trim() != "mounted" {
        let _ = holder.kill();
        let out = holder.wait_with_output().unwrap();
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let entered = Command::new("nsenter")
        .args(["-t", &holder.id().to_string(), "-m", "true"])
        .stderr(Stdio::null())
        .status();
    if !entered.is_ok_and(|s| s.success()) {
        let _ = holder.kill();
        let _ = holder.wait();
        return Err("nsenter cannot enter the namespace".into());
    }
    Ok(holder)
}

/// `cmd` run through `prefix`, a program that then runs `cmd`'s program with its arguments
/// (`nsenter ... --`, or `sh -c SCRIPT` whose `$0 "$@"` it is), in `cmd`'s environment.
fn prefixed(prefix: &[&str], cmd: &Command) -> Command {
    let mut wrapped = Command::new(prefix[0]);
    wrapped
        .args(&prefix[1..])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// The size of the largest file directly in `dir`.
fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .max()
        .unwrap_or(0)
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// Read-only (or writable again) for everyone: the directory and its files.
fn set_permissions(dir: &Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |is_dir: bool| match (read_only, is_dir) {
        (true, true) => 0o555,
        (true, false) => 0o444,
        (false, true) => 0o755,
        (false, false) => 0o644,
    };
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let is_dir = entry.file_type().unwrap().is_dir();
        if is_dir {
            set_permissions(&entry.path(), read_only);
        }
        std::fs::set_permissions(entry.path(), PermissionsExt::from_mode(mode(is_dir))).unwrap();
    }
    std::fs::set_permissions(dir, PermissionsExt::from_mode(mode(true))).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Running lookalike and checking what it says

fn canonical(path: &Path) -> String {
    path.canonicalize().unwrap().to_str().unwrap().to_owned()
}

fn output(mut cmd: Command, args: &[&str]) -> Output {
    cmd.args(args).output().expect("run lookalike")
}

/// Runs `lookalike ARGS`, failing the test unless it succeeds.
#[track_caller]
fn output_ok(cmd: Command, args: &[&str]) -> Output {
    let out = output(cmd, args);
    assert!(
        out.status.success(),
        "lookalike {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON object that a successful `lookalike ARGS --json` prints.
#[track_caller]
fn json_of(cmd: Command, args: &[&str]) -> Value {
    serde_json::from_slice(&output_ok(cmd, args).stdout).expect("one JSON object")
}

/// The JSON lines that a successful `lookalike ARGS` prints (`search --json`, `export`).
#[track_caller]
fn json_lines(cmd: Command, args: &[&str]) -> Vec<Value> {
    String::from_utf8(output_ok(cmd, args).stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Asserts that lookalike failed as a program should, neither panicking (exit 101) nor killed
/// by a signal: exit status 1 and an error line naming one of `causes`. Returns the error.
#[track_caller]
fn assert_clean_failure(out: &Output, causes: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    assert!(
        stderr.contains("lookalike: error:") && causes.iter().any(|c| stderr.contains(c)),
        "the error should name the cause ({causes:?}): {stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("lookalike: error:"))
        .unwrap_or_default();
    let parts: Vec<&str> = line.split(": ").collect();
    assert!(
        !parts.windows(2).any(|w| w[0] == w[1]),
        "a cause said twice: {line}"
    );
    stderr
}

/// The indexed files, from `export --format jsonl`.
fn indexed_paths(cmd: Command) -> Vec<String> {
    let mut paths: Vec<String> = json_lines(cmd, &["export", "--format", "jsonl"])
        .iter()
        .map(|item| item["path"].as_str().expect("a path").to_owned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Asserts that a search with each of `paths` finds it first, as a duplicate (score ~1).
#[track_caller]
fn assert_searchable(cmd: Command, paths: &[String]) {
    let mut args = vec!["search", "--json", "-k", "1"];
    args.extend(paths.iter().map(String::as_str));
    let answers = json_lines(cmd, &args);
    assert_eq!(answers.len(), paths.len());
    for (answer, path) in answers.iter().zip(paths) {
        let top = &answer["results"][0];
        assert_eq!(top["path"], path.as_str(), "{answer}");
        assert!(top["score"].as_f64().unwrap() > 0.99, "{answer}");
    }
}

/// What `search --json -k 5` answers to each query: every result's path, score, box, labels.
fn answers(db: &Path, queries: &[PathBuf]) -> Vec<Value> {
    answers_of(common::lookalike(db), queries)
}

/// [`answers`] from `cmd` (an index reached another way, such as inside a mount namespace).
fn answers_of(cmd: Command, queries: &[PathBuf]) -> Vec<Value> {
    let mut args = vec!["search", "--json", "-k", "5"];
    args.extend(queries.iter().map(|q| q.to_str().unwrap()));
    json_lines(cmd, &args)
        .into_iter()
        .map(|answer| answer["results"].clone())
        .collect()
}

/// Asserts that `got` holds the same answers as `want`, printing both compactly when not.
#[track_caller]
fn assert_same_answers(got: &[Value], want: &[Value], what: &str) {
    if got != want {
        panic!(
            "{what}: the answers changed\n got: {}\nwant: {}",
            summary(got),
            summary(want)
        );
    }
}

/// Each answer's results as `name score [box]`.
fn summary(answers: &[Value]) -> String {
    let result = |r: &Value| {
        let name = r["path"]
            .as_str()
            .unwrap_or("?")
            .rsplit('/')
            .next()
            .unwrap();
        let boxed = if r.get("box").is_some() { " box" } else { "" };
        format!(
            "{name} {:.4}{boxed}",
            r["score"].as_f64().unwrap_or(f64::NAN)
        )
    };
    let answer = |a: &Value| {
        let results: Vec<String> = a.as_array().into_iter().flatten().map(result).collect();
        format!("[{}]", results.join(", "))
    };
    answers
        .iter()
        .map(answer)
        .collect::<Vec<_>>()
        .join("\n      ")
}

/// The index directory's files with their sizes, but the writer lock (it holds the pid of the
/// last process that tried to write).
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, entry.metadata().unwrap().len())
        })
        .filter(|(name, _)| name != "writer.lock")
        .collect();
    files.sort();
    files
}

/// The index directory's files and their bytes, but the writer lock's.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    listing(dir)
        .into_iter()
        .map(|(name, _)| {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

/// Cuts a file to half its length.
fn halve(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    let file = File::options().write(true).open(path).unwrap();
    file.set_len(len / 2).unwrap();
}

/// Moves every page of `db`'s catalog into catalog.sqlite and empties its WAL, as SQLite's own
/// checkpoints do once the WAL holds 1,000 pages.
fn checkpoint(db: &Path) {
    let conn = rusqlite::Connection::open(db.join("catalog.sqlite")).unwrap();
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .unwrap();
    assert_eq!(busy, 0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Indexes `photos` into `db` (a new index) and returns its folder.
fn indexed_folder(tmp: &Path, db: &Path, photos: &[(&str, &str)]) -> PathBuf {
    let dir = tmp.join("photos");
    copy_photos(&dir, photos);
    let report = json_of(
        common::lookalike(db),
        &["index", "--json", dir.to_str().unwrap()],
    );
    assert_eq!(report["added"], photos.len(), "{report}");
    dir
}

// ---------------------------------------------------------------------------------------------
// A `lookalike serve` process and its HTTP API

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd serve --bind ADDR EXTRA...` on a free port, its stderr in `log`, and waits
    /// until `/healthz` answers; Err with the exit status and the log when it exits instead.
    fn spawn(mut cmd: Command, extra: &[&str], log: &Path) -> Result<Server, (ExitStatus, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = cmd
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("start lookalike serve");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return Err((status, server.log()));
            }
            let health = client().get(server.url("/healthz")).send();
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(server);
            }
            assert!(
                Instant::now() < deadline,
                "the server did not come up: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[track_caller]
    fn start(cmd: Command, extra: &[&str], log: &Path) -> Server {
        Server::spawn(cmd, extra, log)
            .unwrap_or_else(|(status, log)| panic!("the server exited ({status}): {log}"))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (a graceful shutdown) and its exit status.
    fn stop(mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[track_caller]
    fn assert_healthy(&self) {
        assert_eq!(
            self.get("/healthz"),
            (200, json!({"status": "ok"})),
            "{}",
            self.log()
        );
    }

    /// Asserts that a search by uploading `photo`, an indexed file, finds it first.
    #[track_caller]
    fn assert_finds(&self, photo: &Path) {
        let (status, found) = self.post_file("/api/search?k=1", photo);
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["results"][0]["path"], canonical(photo), "{found}");
    }

    fn get(&self, path: &str) -> (u16, Value) {
        answer(client().get(self.url(path)).send().unwrap())
    }

    /// POSTs `file` as the multipart field `image`, with the write token.
    fn post_file(&self, route: &str, file: &Path) -> (u16, Value) {
        let part = multipart::Part::bytes(std::fs::read(file).unwrap()).file_name("upload");
        let form = multipart::Form::new().part("image", part);
        let request = client().post(self.url(route)).bearer_auth(TOKEN);
        answer(request.multipart(form).send().unwrap())
    }

    fn post_json(&self, route: &str, body: &Value) -> (u16, Value) {
        let request = client().post(self.url(route)).bearer_auth(TOKEN);
        answer(request.json(body).send().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The status and JSON body of an answer (every answer of the API is JSON).
fn answer(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{status}: {content_type}"
    );
    (status, response.json().expect("a JSON body"))
}

/// Asserts a JSON error with this status and code whose message names one of `causes`.
#[track_caller]
fn assert_api_error(answer: &(u16, Value), status: u16, code: &str, causes: &[&str]) {
    let (got, body) = answer;
    assert_eq!(
        (*got, &body["error"]["code"]),
        (status, &json!(code)),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        causes.iter().any(|c| message.contains(c)),
        "the message should name the cause ({causes:?}): {message}"
    );
}

// ---------------------------------------------------------------------------------------------
// The cases

#[test]
fn a_full_disk_stops_indexing_with_a_clear_error_and_loses_nothing_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Disk::new(tmp.path());
    let photos = tmp.path().join("photos");
    let folder = photos.to_str().unwrap();
    copy_photos(&photos, &PHOTOS[..4]);
    json_of(disk.lookalike(), &["index", "--json", folder]);
    copy_photos(&photos, &PHOTOS[4..]);

    let out = output(
        disk.lookalike_when_full(INDEX_ROOM),
        &["index", "--json", "--commit-every", "1", folder],
    );
    assert_clean_failure(&out, disk.full_says());

    // What was indexed before the run, and what the run committed before the disk filled up,
    // is there and searchable (read on the full disk).
    let committed = indexed_paths(disk.lookalike());
    eprintln!(
        "faults: {} files committed when the disk filled up",
        committed.len()
    );
    for (_, name) in &PHOTOS[..4] {
        assert!(committed.contains(&canonical(&photos.join(name))), "{name}");
    }
    assert!(
        committed.len() < PHOTOS.len(),
        "the disk filled up too late"
    );
    assert_searchable(disk.lookalike(), &committed);

    // Once there is room, the next run indexes the rest and cleans up after the failed one.
    disk.free(None);
    let report = json_of(disk.lookalike(), &["index", "--json", folder]);
    assert_eq!(report["added"], PHOTOS.len() - committed.len(), "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    let all = indexed_paths(disk.lookalike());
    assert_eq!(all.len(), PHOTOS.len());
    assert_searchable(disk.lookalike(), &all);
    let leftovers: Vec<_> = listing(&disk.host_path(&disk.db()))
        .into_iter()
        .filter(|(name, _)| name.ends_with(".tmp"))
        .collect();
    assert_eq!(leftovers, [], "temporary snapshot files of the failed run");
}

#[test]
fn a_full_disk_refuses_uploads_clearly_and_the_server_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Disk::new(tmp.path());
    let seed = &PHOTOS[..6];
    let photos = tmp.path().join("photos");
    copy_photos(&photos, seed);
    json_of(
        disk.lookalike(),
        &["index", "--json", photos.to_str().unwrap()],
    );
    let uploads = disk.host_path(&disk.db().join("uploads"));

    let mut cmd = disk.lookalike_when_full(UPLOAD_ROOM);
    cmd.env("LOOKALIKE_TOKEN", TOKEN);
    let server = Server::start(cmd, &[], &tmp.path().join("serve.log"));

    // The upload itself does not fit: 507, and no partly written file is left behind.
    let big = server.post_file("/api/items", &photo(BIG_UPLOAD));
    assert_api_error(&big, 507, "disk_full", disk.full_says());
    // The upload fits but the catalog's commit does not.
    let small = server.post_file("/api/items", &photo(SMALL_UPLOAD));
    match disk.mounted() {
        true => assert_api_error(&small, 507, "disk_full", &["database or disk is full"]),
        false => assert_api_error(&small, 500, "storage_error", &["disk I/O error"]),
    }
    let stored: Vec<_> = std::fs::read_dir(&uploads).unwrap().collect();
    assert_eq!(stored.len(), 0, "files of refused uploads: {stored:?}");

    // The server is up, holds what it held, and searches.
    server.assert_healthy();
    assert_eq!(server.get("/api/stats").1["items"], seed.len());
    server.assert_finds(&photos.join("coffee.png"));

    // Once there is room, the same server takes the upload.
    disk.free(Some(server.pid()));
    let (status, added) = server.post_file("/api/items", &photo(SMALL_UPLOAD));
    assert_eq!(status, 201, "{added}");
    assert!(server.stop().success());

    let stats = json_of(disk.lookalike(), &["stats", "--json"]);
    assert_eq!(stats["items"], seed.len() + 1, "{stats}");
    let all = indexed_paths(disk.lookalike());
    assert!(all.contains(&added["path"].as_str().unwrap().to_owned()));
    assert_searchable(disk.lookalike(), &all);
}

#[test]
fn a_read_only_index_refuses_writes_clearly_and_still_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Disk::new(tmp.path());
    let seed = &PHOTOS[..4];
    let photos = tmp.path().join("photos");
    let folder = photos.to_str().unwrap();
    copy_photos(&photos, seed);
    json_of(disk.lookalike(), &["index", "--json", folder]);
    copy_photos(&photos, &PHOTOS[4..]);
    if let Err(why) = disk.set_read_only(true) {
        eprintln!("faults: read-only case skipped: {why}");
        return;
    }

    let out = output(disk.lookalike(), &["index", "--json", folder]);
    let error = assert_clean_failure(&out, disk.read_only_says());
    assert!(error.contains(disk.db().to_str().unwrap()), "{error}");

    // Readers work on a read-only index: the command line, and a server without a token...
    let before = indexed_paths(disk.lookalike());
    assert_eq!(before.len(), seed.len());
    assert_searchable(disk.lookalike(), &before);
    let server = Server::start(disk.lookalike(), &[], &tmp.path().join("read.log"));
    server.assert_finds(&photos.join("coffee.png"));
    assert!(server.stop().success());
    // ...but not a server that may write: it says why at once.
    let mut writer = disk.lookalike();
    writer.env("LOOKALIKE_TOKEN", TOKEN);
    let Err((status, log)) = Server::spawn(writer, &[], &tmp.path().join("write.log")) else {
        panic!("a writing server started on a read-only index");
    };
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        disk.read_only_says().iter().any(|c| log.contains(c)),
        "{log}"
    );

    disk.set_read_only(false).unwrap();
    let report = json_of(disk.lookalike(), &["index", "--json", folder]);
    assert_eq!(report["added"], PHOTOS.len() - seed.len(), "{report}");
    assert_searchable(disk.lookalike(), &indexed_paths(disk.lookalike()));
}

/// An index copied onto read-only media as plain files, without SQLite's `-wal` and `-shm`
/// files (a checkpointed catalog needs neither, and backup tools often leave them out), is
/// searched with the same answers: SQLite cannot create the `-shm` file it reads through
/// there, so the catalog is opened as immutable. Needs a real read-only mount: permissions
/// stop no root, and a directory made read-only by permissions can still change, so the
/// fallback mode has nothing to test.
#[test]
fn an_index_on_read_only_media_without_its_wal_files_is_searched() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Disk::new(tmp.path());
    if !disk.mounted() {
        eprintln!("faults: read-only media case skipped: no tmpfs to remount read-only");
        return;
    }
    let pristine = tmp.path().join("pristine");
    let photos = indexed_folder(tmp.path(), &pristine, &PHOTOS[..6]);
    checkpoint(&pristine);
    let queries = [photos.join("coffee.png"), photo("opencv/aero3.jpg")];
    let reference = answers(&pristine, &queries);

    let copy = disk.host_path(&disk.db());
    copy_dir(&pristine, &copy);
    for wal in ["catalog.sqlite-wal", "catalog.sqlite-shm"] {
        let _ = std::fs::remove_file(copy.join(wal));
    }
    disk.set_read_only(true).unwrap();
    let got = answers_of(disk.lookalike(), &queries);
    assert_same_answers(&got, &reference, "on read-only media");
    let stats = json_of(disk.lookalike(), &["stats", "--json"]);
    assert_eq!(stats["items"], 6, "{stats}");
    assert!(
        !copy.join("catalog.sqlite-shm").exists(),
        "nothing was written"
    );
}

#[test]
fn a_damaged_catalog_is_a_clear_error_that_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let photos = indexed_folder(tmp.path(), &pristine, PHOTOS);
    // Until a checkpoint, the WAL would mask damage to the main file.
    checkpoint(&pristine);
    let queries = [photos.join("coffee.png"), photo("opencv/aero3.jpg")];
    let reference = answers(&pristine, &queries);

    type Damage = fn(&Path);
    // Everything after the first page (the header and schema) overwritten.
    let overwrite: Damage = |catalog| {
        let mut bytes = std::fs::read(catalog).unwrap();
        bytes[4096..].fill(0xA5);
        std::fs::write(catalog, bytes).unwrap();
    };
    for (name, damage) in [("truncated", halve as Damage), ("overwritten", overwrite)] {
        let db = tmp.path().join(name);
        copy_dir(&pristine, &db);
        damage(&db.join("catalog.sqlite"));
        let mut before = contents(&db);
        before.retain(|file, _| !file.starts_with("catalog.sqlite-"));
        for args in [
            &["stats", "--json"][..],
            &["search", "--json", queries[0].to_str().unwrap()],
            &["index", "--json", photos.to_str().unwrap()],
        ] {
            let out = output(common::lookalike(&db), args);
            let error = assert_clean_failure(&out, &["database disk image is malformed"]);
            assert!(
                error.contains(db.to_str().unwrap()) && error.contains("catalog"),
                "{name}, {args:?}: the error should name the index and its catalog: {error}"
            );
        }
        // Nothing is written: SQLite's WAL stays empty (its shared-memory index is not data),
        // and no other file changes.
        let mut after = contents(&db);
        let wal = after.remove("catalog.sqlite-wal").unwrap_or_default();
        assert!(wal.is_empty(), "{name}: the failed opens wrote to the WAL");
        after.remove("catalog.sqlite-shm");
        assert!(after == before, "{name}: the failed opens changed files");
        // The damage is the catalog's alone: restored from a backup, the index is whole.
        std::fs::copy(pristine.join("catalog.sqlite"), db.join("catalog.sqlite")).unwrap();
        assert_same_answers(&answers(&db, &queries), &reference, name);
    }
}

/// Details cut out of two indexed photos (top left 4/7 of the astronaut, bottom right of
/// China), each with the name of the photo it comes from.
fn details(tmp: &Path) -> Vec<(PathBuf, &'static str)> {
    let crop = |name: &'static str, src: &str, (x, y, w, h): (u32, u32, u32, u32)| {
        let image = image::open(photo(src)).unwrap().to_rgb8();
        let (col, row) = (image.width() / 7, image.height() / 7);
        let detail = image::imageops::crop_imm(&image, x * col, y * row, w * col, h * row);
        let path = tmp.join(format!("detail_of_{name}.png"));
        detail.to_image().save(&path).unwrap();
        (path, name)
    };
    vec![
        crop("astronaut.png", "skimage/astronaut.png", (0, 0, 4, 4)),
        crop("china.jpg", "sklearn/china.jpg", (4, 3, 3, 4)),
    ]
}

/// The ANN snapshot files (`ann-*` and `regions-*`) in `db`.
fn snapshots(db: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(db)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "usearch"))
        .collect();
    files.sort();
    files
}

/// An index whose answers depend on both ANN snapshots.
struct RegionAnswers {
    /// The index of [`PHOTOS`].
    db: PathBuf,
    /// The folder it indexed.
    photos: PathBuf,
    /// Two photos, and two details that only the region snapshot answers.
    queries: Vec<PathBuf>,
    /// The answers to `queries`.
    reference: Vec<Value>,
}

impl RegionAnswers {
    fn new(tmp: &Path) -> RegionAnswers {
        let db = tmp.join("pristine");
        let photos = indexed_folder(tmp, &db, PHOTOS);
        let mut queries = vec![photo("skimage/coffee.png"), photo("opencv/home.jpg")];
        let details = details(tmp);
        queries.extend(details.iter().map(|(path, _)| path.clone()));
        let reference = answers(&db, &queries);
        // The details find their photos through the region snapshot: damage to it would show.
        for ((_, source), found) in details.iter().zip(&reference[2..]) {
            assert_eq!(found[0]["path"], canonical(&photos.join(source)), "{found}");
            assert!(
                found[0].get("box").is_some(),
                "not found by a region: {found}"
            );
        }
        assert_eq!(snapshots(&db).len(), 2, "ann-* and regions-*");
        RegionAnswers {
            db,
            photos,
            queries,
            reference,
        }
    }

    /// Asserts that the index at `db` (a copy of [`RegionAnswers::db`]) gives the same answers.
    #[track_caller]
    fn assert_same(&self, db: &Path, what: &str) {
        assert_same_answers(&answers(db, &self.queries), &self.reference, what);
    }

    /// `lookalike index` of the folder again: nothing to add, but it opens the index to write.
    fn reindex(&self, db: &Path) -> Value {
        json_of(
            common::lookalike(db),
            &["index", "--json", self.photos.to_str().unwrap()],
        )
    }
}

#[test]
fn damaged_or_deleted_ann_snapshots_are_rebuilt_from_the_catalog_with_the_same_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let index = RegionAnswers::new(tmp.path());
    let names = |db: &Path| -> Vec<String> { listing(db).into_iter().map(|(n, _)| n).collect() };

    type Damage = fn(&Path);
    let overwrite: Damage = |snapshot| {
        let len = std::fs::metadata(snapshot).unwrap().len() as usize;
        std::fs::write(snapshot, vec![0xA5; len]).unwrap();
    };
    let delete: Damage = |snapshot| std::fs::remove_file(snapshot).unwrap();
    for (name, damage) in [
        ("truncated", halve as Damage),
        ("overwritten", overwrite),
        ("deleted", delete),
    ] {
        let db = tmp.path().join(name);
        copy_dir(&index.db, &db);
        snapshots(&db).iter().for_each(|s| damage(s));
        let damaged = listing(&db);

        // A reader rebuilds in memory from the catalog, and writes nothing.
        index.assert_same(&db, &format!("{name}: a reader"));
        assert_eq!(listing(&db), damaged, "{name}: a reader wrote");

        // A writer saves good snapshots, which the next reader maps.
        let report = index.reindex(&db);
        assert_eq!(report["unchanged"], PHOTOS.len(), "{name}: {report}");
        assert_eq!(names(&db), names(&index.db), "{name}");
        assert!(
            Index::open_read_only(&db).unwrap().is_memory_mapped(),
            "{name}: the rebuilt snapshot is not used"
        );
        index.assert_same(&db, &format!("{name}: after the rebuild"));
    }
}

/// Bytes changed inside a snapshot whose structure stays valid (bit rot, a bad copy): usearch
/// keeps no checksum, so the hash written beside each snapshot is what catches it; without
/// it the damaged region vectors were used, and kept by every later snapshot.
#[test]
fn bytes_changed_inside_a_region_snapshot_do_not_change_the_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let index = RegionAnswers::new(tmp.path());
    let regions = snapshots(&index.db)
        .into_iter()
        .find(|s| {
            s.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("regions-")
        })
        .unwrap();
    // The first half of the file holds the int8 region vectors (the graph comes after them).
    let mut bytes = std::fs::read(&regions).unwrap();
    let half = bytes.len() / 2;
    let mut rng = fastrand::Rng::with_seed(18);
    bytes[64..half].iter_mut().for_each(|b| *b = rng.u8(..));
    std::fs::write(&regions, bytes).unwrap();

    index.assert_same(&index.db, "a reader");
    index.reindex(&index.db);
    index.assert_same(&index.db, "after a writer's open");
}
/// A model cache of hard links to the shared one's files (symbolic links where the two lie on
/// different file systems), so that deleting it deletes nothing the other tests use.
fn linked_model_cache(to: &Path) {
    let link = |from: &Path, to: &Path| {
        std::fs::hard_link(from, to)
            .or_else(|_| std::os::unix::fs::symlink(from, to))
            .unwrap();
    };
    for entry in std::fs::read_dir(common::model_dir()).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                link(&file.path(), &dst.join(file.file_name()));
            }
        } else {
            link(&entry.path(), &dst);
        }
    }
}

#[test]
fn the_model_cache_deleted_under_a_running_server_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let seed = &PHOTOS[..6];
    let photos = indexed_folder(tmp.path(), &db, seed);
    let models = tmp.path().join("models");
    linked_model_cache(&models);
    let mut cmd = common::lookalike(&db);
    cmd.env("LOOKALIKE_MODEL_DIR", &models)
        .env("LOOKALIKE_TOKEN", TOKEN);
    let server = Server::start(cmd, &[], &tmp.path().join("serve.log"));
    let query = photos.join("coffee.png");
    let (status, before) = server.post_file("/api/search?k=3", &query);
    assert_eq!(status, 200, "{before}");

    std::fs::remove_dir_all(&models).unwrap();

    // The network is in memory: searching and adding by upload go on as before.
    let (status, after) = server.post_file("/api/search?k=3", &query);
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["results"], before["results"]);
    let (status, added) = server.post_file("/api/items", &photo(SMALL_UPLOAD));
    assert_eq!(status, 201, "{added}");
    let id = added["id"].as_i64().unwrap();
    let (status, similar) = server.get(&format!("/api/items/{id}/similar?k=2"));
    assert_eq!(status, 200, "{similar}");
    assert_eq!(similar["results"][0]["id"], id);
    server.assert_healthy();
    assert!(server.stop().success());

    // The next start (with a model cache) finds everything.
    let stats = json_of(common::lookalike(&db), &["stats", "--json"]);
    assert_eq!(stats["items"], seed.len() + 1, "{stats}");
    assert_searchable(
        common::lookalike(&db),
        &indexed_paths(common::lookalike(&db)),
    );
}

#[test]
fn without_ffmpeg_videos_are_refused_with_the_reason_and_images_still_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let no_ffmpeg = tmp.path().join("bin");
    std::fs::create_dir_all(&no_ffmpeg).unwrap();
    let without_ffmpeg = || {
        let mut cmd = common::lookalike(&db);
        cmd.env("PATH", &no_ffmpeg);
        cmd
    };
    let video = testdata().join("videos/carphone_distorted.mp4");
    let folder = tmp.path().join("photos");
    copy_photos(&folder, &PHOTOS[..4]);
    std::fs::copy(&video, folder.join("clip.mp4")).unwrap();
    let clip = canonical(&folder.join("clip.mp4"));

    // Indexing: the video is skipped with the reason, the photos are indexed.
    let report = json_of(
        without_ffmpeg(),
        &["index", "--json", folder.to_str().unwrap()],
    );
    assert_eq!(report["added"], 4, "{report}");
    assert_eq!(report["failed"][0]["path"], clip.as_str(), "{report}");
    let reason = report["failed"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("ffmpeg not found"), "{reason}");
    // Searching with a video: that query fails with the reason (exit 2), nothing else.
    let out = output(without_ffmpeg(), &["search", "--json", clip.as_str()]);
    assert_eq!(out.status.code(), Some(2));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        line["error"].as_str().unwrap().contains("ffmpeg not found"),
        "{line}"
    );
    // With ffmpeg back, the next run takes the video.
    let report = json_of(
        common::lookalike(&db),
        &["index", "--json", folder.to_str().unwrap()],
    );
    assert_eq!(
        (&report["added"], &report["unchanged"]),
        (&json!(1), &json!(4)),
        "{report}"
    );
    let frame = common::stored_vectors(&db)
        .into_iter()
        .find(|((path, _), _)| *path == clip)
        .map(|(_, (id, _))| id)
        .expect("a frame of the video");

    // The server without ffmpeg.
    let root = tmp.path().join("root");
    copy_photos(&root, &PHOTOS[4..5]);
    std::fs::copy(&video, root.join("clip2.mp4")).unwrap();
    let mut cmd = without_ffmpeg();
    cmd.env("LOOKALIKE_TOKEN", TOKEN);
    let root_arg = canonical(&root);
    let server = Server::start(cmd, &["--root", &root_arg], &tmp.path().join("serve.log"));
    let (status, indexed) = server.post_json("/api/index", &json!({"path": root_arg}));
    assert_eq!(status, 200, "{indexed}");
    assert_eq!(indexed["added"], 1, "{indexed}");
    assert_eq!(
        indexed["failed"][0]["path"],
        canonical(&root.join("clip2.mp4"))
    );
    let error = indexed["failed"][0]["error"].as_str().unwrap();
    assert!(error.contains("ffmpeg not found"), "{error}");
    // A video sent to the API is not an image, ffmpeg or not.
    for route in ["/api/items", "/api/search"] {
        let refused = server.post_file(route, &video);
        assert_api_error(&refused, 415, "unsupported_format", &["not an image"]);
    }
    // A video frame's thumbnail needs ffmpeg: a 500 that says so.
    let thumbnail = server.get(&format!("/api/items/{frame}/thumbnail"));
    assert_api_error(
        &thumbnail,
        500,
        "ffmpeg_missing",
        &["ffmpeg is not installed"],
    );
    // Verification decodes video frames too; without ffmpeg the search goes on unverified.
    let (status, similar) = server.get(&format!("/api/items/{frame}/similar?k=2&verify=2"));
    assert_eq!(status, 200, "{similar}");
    assert_eq!(similar["results"][0]["path"], clip.as_str());
    server.assert_healthy();
    assert!(server.stop().success());

    let report = json_of(
        common::lookalike(&db),
        &["index", "--json", root_arg.as_str()],
    );
    assert_eq!(
        (&report["added"], &report["failed"]),
        (&json!(1), &json!([])),
        "{report}"
    );
    let stats = json_of(common::lookalike(&db), &["stats", "--json"]);
    assert_eq!(
        (&stats["images"], &stats["videos"]),
        (&json!(5), &json!(2)),
        "{stats}"
    );
}
