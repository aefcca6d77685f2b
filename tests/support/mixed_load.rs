//! A mixed load on a running `lookalike serve` (issue 18): clients that search, browse, upload
//! and delete the way people using the page do, while the driver keeps its own account of the
//! collection and checks every answer against it.
//!
//! Shared by the short run in the test suite (`tests/soak.rs`) and the long run
//! (`examples/soak.rs`, started by `scripts/soak.sh`); both include this file with `#[path]`,
//! so the two can never measure different things.
//!
//! **The mix.** Each client draws its next request by [`MIX`]'s weights: 40% searches (by an
//! uploaded photo, a tenth of them with `verify=10`, and by words), 15% similar-by-id, 20%
//! reads of an item, its thumbnail or its original, 10% page loads (`/`, the three assets it
//! loads and the `/api/stats` call its script makes), 8% uploads and 7% deletes, plus a few
//! `/api/stats` and `/healthz` probes. Deletes only take items the driver uploaded itself and
//! uploads stop at [`Config::max_live_uploads`], so the collection churns but stays near its
//! size however long the run.
//!
//! **The account.** Ids are never reused (the catalog's ids are `AUTOINCREMENT`), so the
//! driver can tell, for any id, whether it is an original (found at start), a live upload,
//! being deleted, or deleted (and when the `DELETE` was answered). That makes the answers
//! checkable under concurrency without false alarms:
//! - an item asked for must be there (200), unless its delete is in flight or done (then 404
//!   is right); an item deleted before the request was sent must be 404, thumbnails included
//!   (a cached thumbnail outliving its item would show here); a tenth of the reads and
//!   similar-by-id ask for deleted items on purpose;
//! - a search must never return an item deleted before the search was sent, and every id a
//!   search returns must be an original or one of the driver's uploads (checked at the end,
//!   when every upload's id is known);
//! - `/api/stats` must count between what the acknowledged writes and the started ones allow
//!   (monotone counters, read before sending and after the answer), and at the end, with no
//!   write in flight, exactly the items at start plus the uploads minus the deletes, and the
//!   files at start plus the uploads still live (an upload is one file, deleted with it).
//!
//! Any 5xx, transport error or unexpected status is a failure, recorded with the request that
//! got it. The server's resident memory (`VmRSS` of its process) is sampled at a fixed
//! interval, so that growth after a warm-up can be bounded by the caller.
#![allow(dead_code)] // the test and the long run each use their own subset

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use fastrand::Rng;
use reqwest::blocking::{multipart, Client, RequestBuilder};
use serde_json::Value;

/// What to run, against which server.
#[derive(Clone, Debug)]
pub struct Config {
    /// `http://HOST:PORT` of the server.
    pub base: String,
    /// The server's write token (uploads and deletes).
    pub token: String,
    /// The server's process, whose `VmRSS` is sampled (the test's own process when the server
    /// runs in it).
    pub server_pid: u32,
    /// Concurrent clients, each with its own connections, each sending its next request as
    /// soon as the last is answered.
    pub clients: usize,
    pub duration: Duration,
    /// Memory figures count from the first sample at or after this point of the run.
    pub warmup: Duration,
    pub rss_interval: Duration,
    /// How far memory may rise above its warm-up value.
    pub memory: MemoryBounds,
    /// Most uploads alive at once: past it, an upload drawn becomes a delete.
    pub max_live_uploads: usize,
    /// Client `i` draws from `Rng::with_seed(seed + i)`.
    pub seed: u64,
    /// Print a line per memory sample to stderr (for runs of many minutes).
    pub progress: bool,
}

/// Growth of the server's RSS over its value after the warm-up, in MiB, beyond which a run
/// fails. They depend on the collection, the photos sent and the clients: the caller states
/// them.
#[derive(Clone, Copy, Debug)]
pub struct MemoryBounds {
    /// At the highest sample: the work in flight at the worst moment (decodes of big photos
    /// at once, say).
    pub peak_mib: f64,
    /// When the load is over: what a leak leaves.
    pub end_mib: f64,
}

/// What the clients send, one row of the report each. `Page` is a page load's four documents;
/// the `/api/stats` call the page makes counts under `Stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    Search,
    SearchVerify,
    SearchWords,
    Similar,
    Item,
    Thumbnail,
    Original,
    Page,
    Upload,
    Delete,
    Stats,
    Health,
}

/// How often a client draws each route: roughly per cent (they sum to 102: the two probes come
/// on top of the mix). Every route is drawn.
pub const MIX: [(Route, u32); 12] = [
    (Route::Search, 24),
    (Route::SearchVerify, 4),
    (Route::SearchWords, 12),
    (Route::Similar, 15),
    (Route::Item, 8),
    (Route::Thumbnail, 8),
    (Route::Original, 4),
    (Route::Page, 10),
    (Route::Upload, 8),
    (Route::Delete, 7),
    (Route::Stats, 1),
    (Route::Health, 1),
];

/// Results asked per search: the page's sizes.
const KS: [usize; 3] = [12, 24, 48];
/// Depth of the verified searches (issue 18 reports their latency separately).
const VERIFY_DEPTH: usize = 10;
/// Words that name ImageNet classes through WordNet, broad and narrow, and one that names
/// none (answered with an empty result and `unknown_words`).
const WORDS: [&str; 12] = [
    "dog",
    "cat",
    "bird",
    "car",
    "vehicle",
    "flower",
    "fruit",
    "food",
    "building",
    "boat",
    "golden retriever",
    "xyzzy",
];
/// The documents a page load fetches besides its `/api/stats` call.
const PAGE: [&str; 4] = ["/", "/app.js", "/style.css", "/favicon.svg"];
/// One read or similar-by-id in this many asks for a deleted item on purpose.
const DELETED_READ_ONE_IN: usize = 10;
/// Failures kept in full in the report (all are counted).
const FAILURES_KEPT: usize = 30;

impl Route {
    /// Every route, in the report's order.
    pub fn all() -> impl Iterator<Item = Route> {
        MIX.iter().map(|&(route, _)| route)
    }

    pub fn label(self) -> &'static str {
        match self {
            Route::Search => "POST /api/search",
            Route::SearchVerify => "POST /api/search verify=10",
            Route::SearchWords => "GET /api/search?q=",
            Route::Similar => "GET /api/items/{id}/similar",
            Route::Item => "GET /api/items/{id}",
            Route::Thumbnail => "GET /api/items/{id}/thumbnail",
            Route::Original => "GET /api/items/{id}/original",
            Route::Page => "GET / + app.js, style.css, favicon",
            Route::Upload => "POST /api/items",
            Route::Delete => "DELETE /api/items/{id}",
            Route::Stats => "GET /api/stats",
            Route::Health => "GET /healthz",
        }
    }
}

/// A photo the clients search with and upload, read once.
pub struct Photo {
    name: String,
    bytes: Vec<u8>,
    mime: &'static str,
}

impl Photo {
    /// Reads a JPEG, PNG or WebP file (the type from its extension, as a browser would send).
    pub fn read(path: &Path) -> anyhow::Result<Photo> {
        let mime = mime_of(path).with_context(|| format!("{}: not a photo", path.display()))?;
        Ok(Photo {
            name: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            bytes: std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
            mime,
        })
    }

    /// Every photo under `dirs` (see [`photo_paths`]).
    pub fn all_under(dirs: &[PathBuf]) -> anyhow::Result<Vec<Photo>> {
        photo_paths(dirs)?.iter().map(|p| Photo::read(p)).collect()
    }

    fn describe(&self) -> String {
        format!("{} ({} KB)", self.name, self.bytes.len().div_ceil(1024))
    }
}

/// Every JPEG, PNG and WebP file under `dirs`, recursively, in a stable order.
pub fn photo_paths(dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for dir in dirs {
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.with_context(|| format!("list {}", dir.display()))?;
            if entry.file_type().is_file() && mime_of(entry.path()).is_some() {
                paths.push(entry.into_path());
            }
        }
    }
    ensure!(!paths.is_empty(), "no photos under {dirs:?}");
    Ok(paths)
}

fn mime_of(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// Runs the load for `config.duration` with `photos` as search and upload bodies, then checks
/// the collection against the driver's account. Errors only when the run cannot start (the
/// server's collection cannot be read); everything the load finds is in the [`Report`].
pub fn run(config: &Config, photos: &[Photo]) -> anyhow::Result<Report> {
    ensure!(!photos.is_empty(), "no photos to search with and upload");
    ensure!(config.clients > 0, "no clients");
    let http = http_client()?;
    let start = ServerStats::fetch(&http, &config.base)?;
    let originals = discover_items(&http, &config.base, start.items)?;
    let shared = Shared {
        config,
        photos,
        catalog: Mutex::new(Catalog::new(originals, start.items)),
        failures: Mutex::new(Failures::default()),
        requests: AtomicU64::new(0),
        server_errors: AtomicU64::new(0),
    };

    let began = Instant::now();
    let deadline = began + config.duration;
    let (stop, stopped) = mpsc::channel::<()>();
    let (recorders, rss) = std::thread::scope(|scope| {
        let shared = &shared;
        let sampler = scope.spawn(move || sample_rss(shared, began, &stopped));
        let clients: Vec<_> = (0..config.clients)
            .map(|i| scope.spawn(move || Worker::new(shared, i).run_until(deadline)))
            .collect();
        let recorders: Vec<Recorder> = clients
            .into_iter()
            .map(|c| c.join().expect("a client panicked"))
            .collect();
        let _ = stop.send(());
        (recorders, sampler.join().expect("the sampler panicked"))
    });
    let elapsed = began.elapsed();

    let mut routes = Recorder::default();
    for recorder in recorders {
        routes.merge(recorder);
    }
    let end = shared.final_check(&http, &start);
    Ok(Report {
        clients: config.clients,
        seed: config.seed,
        elapsed,
        warmup: config.warmup,
        rss_interval: config.rss_interval,
        memory: config.memory,
        routes,
        rss,
        end,
        failures: shared.failures.into_inner().unwrap(),
    })
}

fn http_client() -> anyhow::Result<Client> {
    // Generous: a request slower than this is a hang worth a failure, not load.
    Ok(Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The parts of `/api/stats` the account checks.
#[derive(Clone, Copy, Debug)]
struct ServerStats {
    items: u64,
    files: u64,
}

impl ServerStats {
    fn fetch(http: &Client, base: &str) -> anyhow::Result<ServerStats> {
        let response = http.get(format!("{base}/api/stats")).send()?;
        ensure!(
            response.status().is_success(),
            "/api/stats: {}",
            response.status()
        );
        ServerStats::parse(&response.bytes()?)
    }

    fn parse(body: &[u8]) -> anyhow::Result<ServerStats> {
        let stats: Value = serde_json::from_slice(body)?;
        let count = |field: &str| {
            stats[field]
                .as_u64()
                .with_context(|| format!("/api/stats has no {field}: {stats}"))
        };
        Ok(ServerStats {
            items: count("items")?,
            files: count("files")?,
        })
    }
}

/// The ids of the `count` items the server holds at start. There is no listing route, so
/// ids are probed upwards from 1 (they are allocated in order and never reused); the probe
/// gives up after a long enough run of gaps.
fn discover_items(http: &Client, base: &str, count: u64) -> anyhow::Result<Vec<i64>> {
    let limit = 2 * count as i64 + 1000;
    let mut found = Vec::new();
    let mut id = 0;
    while (found.len() as u64) < count {
        id += 1;
        if id > limit {
            bail!(
                "found only {} of {count} items in ids 1 to {limit}",
                found.len()
            );
        }
        let response = http.get(format!("{base}/api/items/{id}")).send()?;
        match response.status().as_u16() {
            200 => found.push(id),
            404 => {}
            other => bail!("GET /api/items/{id} while listing the collection: {other}"),
        }
    }
    Ok(found)
}

/// What the load clients share.
struct Shared<'a> {
    config: &'a Config,
    photos: &'a [Photo],
    catalog: Mutex<Catalog>,
    failures: Mutex<Failures>,
    /// For the progress lines.
    requests: AtomicU64,
    server_errors: AtomicU64,
}

impl Shared<'_> {
    fn fail(&self, kind: FailureKind, detail: String) {
        self.failures.lock().unwrap().add(kind, detail);
    }

    /// After the load, with nothing in flight: the collection holds exactly what the account
    /// says, every item the account calls live is there, every deleted one is gone from every
    /// route, and every id a search returned was one the driver knew.
    fn final_check(&self, http: &Client, start: &ServerStats) -> EndCheck {
        let catalog = self.catalog.lock().unwrap();
        let base = &self.config.base;
        let mut end = EndCheck {
            start: *start,
            end: None,
            uploads: catalog.counts.uploads_acked,
            deletes: catalog.counts.deletes_acked,
            live_uploads: catalog.uploaded.len() as u64,
            // An upload is one file, and deleting it deletes its file.
            expected: ServerStats {
                items: catalog.expected_items(),
                files: start.files + catalog.uploaded.len() as u64,
            },
            problems: Vec::new(),
        };
        match ServerStats::fetch(http, base) {
            Ok(stats) => {
                for (what, counted, expected) in [
                    ("items", stats.items, end.expected.items),
                    ("files", stats.files, end.expected.files),
                ] {
                    if counted != expected {
                        end.problems.push(format!(
                            "/api/stats counts {counted} {what}, the account {expected}"
                        ));
                    }
                }
                end.end = Some(stats);
            }
            Err(err) => end.problems.push(format!("/api/stats at the end: {err:#}")),
        }
        let status = |path: String| match http.get(format!("{base}{path}")).send() {
            Ok(response) => (path, response.status().as_u16()),
            Err(err) => (format!("{path} ({err})"), 0),
        };
        for &id in catalog.originals.iter().chain(&catalog.uploaded) {
            match status(format!("/api/items/{id}")) {
                (_, 200) => {}
                (path, code) => end
                    .problems
                    .push(format!("live item: GET {path} -> {code}")),
            }
        }
        for &id in catalog.deleted.keys() {
            for suffix in ["", "/thumbnail", "/original", "/similar"] {
                match status(format!("/api/items/{id}{suffix}")) {
                    (_, 404) => {}
                    (path, code) => end
                        .problems
                        .push(format!("deleted item: GET {path} -> {code}")),
                }
            }
        }
        let mut strangers: Vec<i64> = catalog
            .seen
            .iter()
            .copied()
            .filter(|id| !catalog.originals_set.contains(id) && !catalog.ever_uploaded.contains(id))
            .collect();
        strangers.sort_unstable();
        if !strangers.is_empty() {
            end.problems.push(format!(
                "searches returned ids that are neither originals nor uploads: {strangers:?}"
            ));
        }
        end
    }
}

/// Monotone counters of the writes: what `/api/stats` may say lies between the writes
/// acknowledged and the writes started.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    uploads_started: u64,
    uploads_acked: u64,
    deletes_started: u64,
    deletes_acked: u64,
}

/// The driver's account of the collection.
struct Catalog {
    initial_items: u64,
    /// Items found at start; never deleted.
    originals: Vec<i64>,
    originals_set: HashSet<i64>,
    /// Uploads acknowledged and not (being) deleted.
    uploaded: Vec<i64>,
    ever_uploaded: HashSet<i64>,
    /// Uploads in flight, which count against the cap.
    pending_uploads: usize,
    /// Deletes sent and not acknowledged (or failed: their outcome is unknown).
    doomed: HashSet<i64>,
    /// Deleted items, with when the `DELETE` was answered.
    deleted: HashMap<i64, Instant>,
    /// Deleted ids in a vector, to draw from.
    deleted_order: Vec<i64>,
    /// Every id a search returned.
    seen: HashSet<i64>,
    counts: Counts,
}

/// What a read asks for.
#[derive(Clone, Copy)]
enum Target {
    Live(i64),
    Deleted(i64),
}

impl Target {
    fn id(self) -> i64 {
        match self {
            Target::Live(id) | Target::Deleted(id) => id,
        }
    }
}

impl Catalog {
    fn new(originals: Vec<i64>, initial_items: u64) -> Catalog {
        Catalog {
            initial_items,
            originals_set: originals.iter().copied().collect(),
            originals,
            uploaded: Vec::new(),
            ever_uploaded: HashSet::new(),
            pending_uploads: 0,
            doomed: HashSet::new(),
            deleted: HashMap::new(),
            deleted_order: Vec::new(),
            seen: HashSet::new(),
            counts: Counts::default(),
        }
    }

    fn expected_items(&self) -> u64 {
        self.initial_items + self.counts.uploads_acked - self.counts.deletes_acked
    }

    /// An item to read: mostly a live one, sometimes a deleted one.
    fn target(&self, rng: &mut Rng) -> Option<Target> {
        if !self.deleted_order.is_empty() && rng.usize(..DELETED_READ_ONE_IN) == 0 {
            return Some(Target::Deleted(
                self.deleted_order[rng.usize(..self.deleted_order.len())],
            ));
        }
        let live = self.originals.len() + self.uploaded.len();
        if live == 0 {
            return None;
        }
        let i = rng.usize(..live);
        Some(Target::Live(match self.originals.get(i) {
            Some(&id) => id,
            None => self.uploaded[i - self.originals.len()],
        }))
    }

    /// Whether `status` is a right answer about item `id` to a request sent at `sent`.
    fn judge(&self, id: i64, status: u16, sent: Instant) -> Result<(), String> {
        let gone = self.doomed.contains(&id) || self.deleted.contains_key(&id);
        match status {
            200 => match self.deleted.get(&id) {
                Some(at) if *at < sent => Err(format!(
                    "200 for item {id}, whose DELETE was answered {:.3} s before this request",
                    (sent - *at).as_secs_f64()
                )),
                _ => Ok(()),
            },
            404 if gone => Ok(()),
            404 => Err(format!("404 for item {id}, which was never deleted")),
            other => Err(format!("status {other} for item {id}")),
        }
    }

    /// Records the ids a search returned; the ones deleted before it was sent are violations.
    fn found(&mut self, ids: &[i64], sent: Instant) -> Vec<String> {
        self.seen.extend(ids);
        ids.iter()
            .filter_map(|id| {
                let at = self.deleted.get(id).filter(|at| **at < sent)?;
                Some(format!(
                    "item {id} returned, its DELETE answered {:.3} s before the search was sent",
                    (sent - *at).as_secs_f64()
                ))
            })
            .collect()
    }
}

/// How a failure is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureKind {
    /// A 5xx answer.
    ServerError,
    /// No answer: connection refused or reset, timeout, unreadable body.
    Transport,
    /// An answer with a status the request should not get (a 400, a 404 for a live item).
    Status,
    /// An answer that contradicts the account (a deleted item returned, a count out of
    /// bounds) or that is not the JSON the API describes.
    Inconsistent,
}

impl FailureKind {
    fn label(self) -> &'static str {
        match self {
            FailureKind::ServerError => "5xx answers",
            FailureKind::Transport => "transport errors",
            FailureKind::Status => "unexpected statuses",
            FailureKind::Inconsistent => "answers inconsistent with the account",
        }
    }
}

#[derive(Default)]
struct Failures {
    counts: BTreeMap<FailureKind, u64>,
    /// The first [`FAILURES_KEPT`], each with the request that got it.
    kept: Vec<(FailureKind, String)>,
}

impl Failures {
    fn add(&mut self, kind: FailureKind, detail: String) {
        *self.counts.entry(kind).or_default() += 1;
        if self.kept.len() < FAILURES_KEPT {
            self.kept.push((kind, detail));
        }
    }

    fn count(&self, kind: FailureKind) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }
}

/// Per route: latency of every request and the statuses answered.
#[derive(Default)]
pub struct RouteRecord {
    /// Send to last byte of the body, in microseconds.
    micros: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
}

impl RouteRecord {
    pub fn requests(&self) -> u64 {
        self.micros.len() as u64
    }

    pub fn server_errors(&self) -> u64 {
        self.statuses.range(500..600).map(|(_, n)| n).sum()
    }

    /// The `p`-quantile latency (nearest rank), if any request was made.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted
            .get(rank - 1)
            .map(|&us| Duration::from_micros(us.into()))
    }
}

#[derive(Default)]
struct Recorder(BTreeMap<Route, RouteRecord>);

impl Recorder {
    fn record(&mut self, route: Route, took: Duration, status: Option<u16>) {
        let record = self.0.entry(route).or_default();
        record
            .micros
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        match status {
            Some(status) => *record.statuses.entry(status).or_default() += 1,
            None => record.transport_errors += 1,
        }
    }

    fn merge(&mut self, other: Recorder) {
        for (route, theirs) in other.0 {
            let ours = self.0.entry(route).or_default();
            ours.micros.extend(theirs.micros);
            for (status, n) in theirs.statuses {
                *ours.statuses.entry(status).or_default() += n;
            }
            ours.transport_errors += theirs.transport_errors;
        }
    }
}

/// An answer that came back, 5xx excepted.
struct Answer {
    status: u16,
    body: Vec<u8>,
    sent: Instant,
}

/// One client: its own connections, random stream and records.
struct Worker<'s, 'c> {
    shared: &'s Shared<'c>,
    http: Client,
    rng: Rng,
    recorder: Recorder,
    /// `MIX`'s cumulative weights.
    cumulative: Vec<(Route, u32)>,
}

impl<'s, 'c> Worker<'s, 'c> {
    fn new(shared: &'s Shared<'c>, index: usize) -> Self {
        let cumulative = MIX
            .iter()
            .scan(0, |sum, &(route, weight)| {
                *sum += weight;
                Some((route, *sum))
            })
            .collect();
        Worker {
            shared,
            http: http_client().expect("an HTTP client"),
            rng: Rng::with_seed(shared.config.seed + index as u64),
            recorder: Recorder::default(),
            cumulative,
        }
    }

    fn run_until(mut self, deadline: Instant) -> Recorder {
        while Instant::now() < deadline {
            let route = self.draw();
            self.step(route);
        }
        self.recorder
    }

    fn draw(&mut self) -> Route {
        let total = self.cumulative.last().map_or(0, |&(_, sum)| sum);
        let pick = self.rng.u32(..total);
        self.cumulative
            .iter()
            .find(|&&(_, sum)| pick < sum)
            .map(|&(route, _)| route)
            .expect("the pick is below the total weight")
    }

    fn step(&mut self, route: Route) {
        match route {
            Route::Search => self.search_by_photo(route, None),
            Route::SearchVerify => self.search_by_photo(route, Some(VERIFY_DEPTH)),
            Route::SearchWords => self.search_by_words(),
            Route::Similar => self.similar(),
            Route::Item => self.read(route, ""),
            Route::Thumbnail => self.read(route, "/thumbnail"),
            Route::Original => self.read(route, "/original"),
            Route::Page => self.page_load(),
            Route::Upload | Route::Delete => self.churn(route),
            Route::Stats => self.stats(),
            Route::Health => self.health(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.shared.config.base)
    }

    /// Sends, reads the whole body and records it under `route`. A 5xx or a transport error
    /// is a failure recorded here with `what` (the request, as a person would repeat it), and
    /// gives `None`: its outcome is unknown.
    fn send(&mut self, route: Route, what: &str, request: RequestBuilder) -> Option<Answer> {
        let sent = Instant::now();
        let result = request.send().and_then(|response| {
            let status = response.status().as_u16();
            response.bytes().map(|body| (status, body))
        });
        let took = sent.elapsed();
        self.shared.requests.fetch_add(1, Relaxed);
        match result {
            Ok((status, body)) => {
                self.recorder.record(route, took, Some(status));
                if status >= 500 {
                    self.shared.server_errors.fetch_add(1, Relaxed);
                    self.shared.fail(
                        FailureKind::ServerError,
                        format!("{what}: {status} {}", snippet(&body)),
                    );
                    return None;
                }
                Some(Answer {
                    status,
                    body: body.to_vec(),
                    sent,
                })
            }
            Err(err) => {
                self.recorder.record(route, took, None);
                self.shared
                    .fail(FailureKind::Transport, format!("{what}: {err}"));
                None
            }
        }
    }

    /// Whether the answer has the status a request like this always gets; records it if not.
    fn expect(&self, what: &str, answer: &Answer, status: u16) -> bool {
        if answer.status == status {
            return true;
        }
        self.shared.fail(
            FailureKind::Status,
            format!(
                "{what}: {} (expected {status}) {}",
                answer.status,
                snippet(&answer.body)
            ),
        );
        false
    }

    fn inconsistent(&self, what: &str, detail: impl fmt::Display) {
        self.shared
            .fail(FailureKind::Inconsistent, format!("{what}: {detail}"));
    }

    /// Checks a search's results against the account.
    fn check_results(&self, what: &str, answer: &Answer) {
        match result_ids(&answer.body) {
            Ok(ids) => {
                let violations = self.shared.catalog.lock().unwrap().found(&ids, answer.sent);
                for violation in violations {
                    self.inconsistent(what, violation);
                }
            }
            Err(err) => self.inconsistent(what, err),
        }
    }

    fn photo(&mut self) -> &'c Photo {
        let photos = self.shared.photos;
        &photos[self.rng.usize(..photos.len())]
    }

    /// Attaches a photo the two ways the API takes one, as the page (multipart) and as
    /// scripts (the raw bytes with their type) send it.
    fn with_photo(&mut self, request: RequestBuilder, photo: &Photo) -> (RequestBuilder, String) {
        if self.rng.bool() {
            let part = multipart::Part::bytes(photo.bytes.clone())
                .file_name(photo.name.clone())
                .mime_str(photo.mime)
                .expect("a valid MIME type");
            let form = multipart::Form::new().part("image", part);
            (
                request.multipart(form),
                format!("multipart {}", photo.describe()),
            )
        } else {
            let request = request
                .header(reqwest::header::CONTENT_TYPE, photo.mime)
                .body(photo.bytes.clone());
            (request, format!("raw {} {}", photo.mime, photo.describe()))
        }
    }

    fn search_by_photo(&mut self, route: Route, verify: Option<usize>) {
        let k = KS[self.rng.usize(..KS.len())];
        let path = match verify {
            Some(depth) => format!("/api/search?k={k}&verify={depth}"),
            None => format!("/api/search?k={k}"),
        };
        let photo = self.photo();
        let request = self.http.post(self.url(&path));
        let (request, body) = self.with_photo(request, photo);
        let what = format!("POST {path} with {body}");
        if let Some(answer) = self.send(route, &what, request) {
            if self.expect(&what, &answer, 200) {
                self.check_results(&what, &answer);
            }
        }
    }

    fn search_by_words(&mut self) {
        let k = KS[self.rng.usize(..KS.len())];
        let words = WORDS[self.rng.usize(..WORDS.len())];
        let path = format!("/api/search?q={}&k={k}", words.replace(' ', "%20"));
        let what = format!("GET {path}");
        let request = self.http.get(self.url(&path));
        if let Some(answer) = self.send(Route::SearchWords, &what, request) {
            if self.expect(&what, &answer, 200) {
                self.check_results(&what, &answer);
            }
        }
    }

    fn target(&mut self) -> Option<Target> {
        self.shared.catalog.lock().unwrap().target(&mut self.rng)
    }

    /// Asks for item `target` at `path`; checks the status against the account. Gives the
    /// answer when it is a 200.
    fn ask_item(&mut self, route: Route, target: Target, path: &str) -> Option<(String, Answer)> {
        let what = match target {
            Target::Live(_) => format!("GET {path}"),
            Target::Deleted(_) => format!("GET {path} (a deleted item)"),
        };
        let request = self.http.get(self.url(path));
        let answer = self.send(route, &what, request)?;
        let verdict =
            self.shared
                .catalog
                .lock()
                .unwrap()
                .judge(target.id(), answer.status, answer.sent);
        match verdict {
            Ok(()) if answer.status == 200 => Some((what, answer)),
            Ok(()) => None,
            Err(problem) if answer.status == 200 || answer.status == 404 => {
                self.inconsistent(&what, problem);
                None
            }
            Err(_) => {
                self.expect(&what, &answer, 200);
                None
            }
        }
    }

    fn similar(&mut self) {
        // An empty collection has nothing to ask for.
        let Some(target) = self.target() else {
            return self.health();
        };
        let k = KS[self.rng.usize(..KS.len())];
        let path = format!("/api/items/{}/similar?k={k}", target.id());
        if let Some((what, answer)) = self.ask_item(Route::Similar, target, &path) {
            self.check_results(&what, &answer);
        }
    }

    fn read(&mut self, route: Route, suffix: &str) {
        let Some(target) = self.target() else {
            return self.health();
        };
        let path = format!("/api/items/{}{suffix}", target.id());
        if let Some((what, answer)) = self.ask_item(route, target, &path) {
            if answer.body.is_empty() {
                self.inconsistent(&what, "an empty body");
            }
        }
    }

    fn page_load(&mut self) {
        for path in PAGE {
            let what = format!("GET {path}");
            let request = self.http.get(self.url(path));
            if let Some(answer) = self.send(Route::Page, &what, request) {
                self.expect(&what, &answer, 200);
            }
        }
        self.stats();
    }

    /// `/api/stats` must count between what the writes acknowledged before it was sent allow
    /// and what the writes started before it was answered allow.
    fn stats(&mut self) {
        let what = "GET /api/stats";
        let before = self.shared.catalog.lock().unwrap().counts;
        let request = self.http.get(self.url("/api/stats"));
        let Some(answer) = self.send(Route::Stats, what, request) else {
            return;
        };
        let (after, initial) = {
            let catalog = self.shared.catalog.lock().unwrap();
            (catalog.counts, catalog.initial_items)
        };
        if !self.expect(what, &answer, 200) {
            return;
        }
        match ServerStats::parse(&answer.body) {
            Ok(stats) => {
                // Signed: uploads acknowledged and deleted during the request make `low`
                // count the delete without the upload.
                let signed = |n: u64| n as i64;
                let low = signed(initial + before.uploads_acked) - signed(after.deletes_started);
                let high = signed(initial + after.uploads_started) - signed(before.deletes_acked);
                if !(low..=high).contains(&signed(stats.items)) {
                    self.inconsistent(
                        what,
                        format!(
                            "{} items, outside the {low} to {high} the writes allow",
                            stats.items
                        ),
                    );
                }
            }
            Err(err) => self.inconsistent(what, err),
        }
    }

    fn health(&mut self) {
        let what = "GET /healthz";
        let request = self.http.get(self.url("/healthz"));
        if let Some(answer) = self.send(Route::Health, what, request) {
            self.expect(what, &answer, 200);
        }
    }

    /// An upload or a delete, as drawn, unless that would take the uploads past the cap (then
    /// a delete) or there is nothing to delete (then an upload).
    fn churn(&mut self, drawn: Route) {
        let cap = self.shared.config.max_live_uploads;
        let doomed = {
            let mut catalog = self.shared.catalog.lock().unwrap();
            let full = catalog.uploaded.len() + catalog.pending_uploads >= cap;
            let delete = !catalog.uploaded.is_empty() && (drawn == Route::Delete || full);
            if delete {
                let pick = self.rng.usize(..catalog.uploaded.len());
                let id = catalog.uploaded.swap_remove(pick);
                catalog.doomed.insert(id);
                catalog.counts.deletes_started += 1;
                Some(id)
            } else {
                catalog.pending_uploads += 1;
                catalog.counts.uploads_started += 1;
                None
            }
        };
        match doomed {
            Some(id) => self.delete(id),
            None => self.upload(),
        }
    }

    fn upload(&mut self) {
        let photo = self.photo();
        let request = self
            .http
            .post(self.url("/api/items"))
            .bearer_auth(&self.shared.config.token);
        let (request, body) = self.with_photo(request, photo);
        let what = format!("POST /api/items with {body}");
        let id = self
            .send(Route::Upload, &what, request)
            .filter(|answer| self.expect(&what, answer, 201))
            .and_then(|answer| match item_id(&answer.body) {
                Ok(id) => Some(id),
                Err(err) => {
                    self.inconsistent(&what, err);
                    None
                }
            });
        let mut catalog = self.shared.catalog.lock().unwrap();
        catalog.pending_uploads -= 1;
        if let Some(id) = id {
            if !catalog.ever_uploaded.insert(id) || catalog.originals_set.contains(&id) {
                drop(catalog);
                return self.inconsistent(&what, format!("id {id} given twice"));
            }
            catalog.uploaded.push(id);
            catalog.counts.uploads_acked += 1;
        }
    }

    fn delete(&mut self, id: i64) {
        let what = format!("DELETE /api/items/{id}");
        let request = self
            .http
            .delete(self.url(&format!("/api/items/{id}")))
            .bearer_auth(&self.shared.config.token);
        let removed = self
            .send(Route::Delete, &what, request)
            .filter(|answer| self.expect(&what, answer, 200))
            .is_some_and(|answer| {
                let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                let removed = body["removed"] == 1;
                if !removed {
                    self.inconsistent(&what, format!("answered {body}"));
                }
                removed
            });
        // A delete that failed stays "doomed": it may or may not have happened, so either
        // answer about the item is accepted from then on.
        if removed {
            let mut catalog = self.shared.catalog.lock().unwrap();
            catalog.doomed.remove(&id);
            catalog.deleted.insert(id, Instant::now());
            catalog.deleted_order.push(id);
            catalog.counts.deletes_acked += 1;
        }
    }
}

/// The ids of a search answer's results, in order.
fn result_ids(body: &[u8]) -> Result<Vec<i64>, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", snippet(body)))?;
    answer["results"]
        .as_array()
        .ok_or_else(|| format!("no results array: {}", snippet(body)))?
        .iter()
        .map(|result| {
            result["id"]
                .as_i64()
                .ok_or_else(|| format!("a result without an id: {result}"))
        })
        .collect()
}

fn item_id(body: &[u8]) -> Result<i64, String> {
    let item: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {}", snippet(body)))?;
    item["id"]
        .as_i64()
        .ok_or_else(|| format!("no id: {}", snippet(body)))
}

/// The start of a body, for a failure's description.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One reading of the server's resident memory.
#[derive(Clone, Copy, Debug)]
pub struct RssSample {
    /// Since the load started.
    pub at: Duration,
    pub kib: u64,
}

/// The server's `VmRSS`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Samples the server's memory at the start, every interval, and once more when `stop`
/// says the load is over.
fn sample_rss(shared: &Shared, began: Instant, stop: &mpsc::Receiver<()>) -> Vec<RssSample> {
    let config = shared.config;
    let mut samples = Vec::new();
    loop {
        let at = began.elapsed();
        if let Some(kib) = rss_kib(config.server_pid) {
            samples.push(RssSample { at, kib });
            if config.progress {
                eprintln!(
                    "soak: {} {:>9} requests, {} 5xx, server RSS {} MiB",
                    clock(at),
                    shared.requests.load(Relaxed),
                    shared.server_errors.load(Relaxed),
                    kib / 1024
                );
            }
        }
        match stop.recv_timeout(config.rss_interval) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Some(kib) = rss_kib(config.server_pid) {
        samples.push(RssSample {
            at: began.elapsed(),
            kib,
        });
    }
    samples
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// The collection at the end against the account.
pub struct EndCheck {
    start: ServerStats,
    end: Option<ServerStats>,
    uploads: u64,
    deletes: u64,
    live_uploads: u64,
    expected: ServerStats,
    /// Every way the server disagrees with the account.
    pub problems: Vec<String>,
}

/// Memory after the warm-up.
#[derive(Clone, Copy, Debug)]
pub struct RssSummary {
    /// The first sample at or after the warm-up.
    pub warm: RssSample,
    /// The largest sample from then on.
    pub max: RssSample,
    /// The last one, taken when the load was over.
    pub end: RssSample,
}

impl RssSummary {
    /// How far memory rose above its warm-up value at its highest, in MiB.
    pub fn peak_growth_mib(&self) -> f64 {
        growth_mib(self.warm, self.max)
    }

    /// How far it stayed above its warm-up value when the load was over, in MiB.
    pub fn end_growth_mib(&self) -> f64 {
        growth_mib(self.warm, self.end)
    }
}

fn growth_mib(from: RssSample, to: RssSample) -> f64 {
    (to.kib as f64 - from.kib as f64) / 1024.0
}

/// Everything a run measured and found.
pub struct Report {
    clients: usize,
    seed: u64,
    elapsed: Duration,
    warmup: Duration,
    rss_interval: Duration,
    memory: MemoryBounds,
    routes: Recorder,
    rss: Vec<RssSample>,
    pub end: EndCheck,
    failures: Failures,
}

impl Report {
    pub fn route(&self, route: Route) -> Option<&RouteRecord> {
        self.routes.0.get(&route)
    }

    pub fn requests(&self) -> u64 {
        self.routes.0.values().map(RouteRecord::requests).sum()
    }

    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures.count(kind)
    }

    pub fn rss(&self) -> Option<RssSummary> {
        let mut after = self.rss.iter().filter(|s| s.at >= self.warmup);
        let warm = *after.next()?;
        let max = after.fold(warm, |max, s| if s.kib > max.kib { *s } else { max });
        Some(RssSummary {
            warm,
            max,
            end: *self.rss.last()?,
        })
    }

    /// Why the run failed, one line per reason; empty when it passed.
    pub fn verdict(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .failures
            .counts
            .iter()
            .map(|(kind, n)| format!("{n} {}", kind.label()))
            .collect();
        reasons.extend(
            Route::all()
                .filter(|r| self.route(*r).is_none_or(|rec| rec.requests() == 0))
                .map(|r| format!("no request to {}", r.label())),
        );
        reasons.extend(self.end.problems.iter().map(|p| format!("at the end: {p}")));
        match self.rss() {
            Some(rss) => {
                let bounds = self.memory;
                if rss.peak_growth_mib() > bounds.peak_mib {
                    reasons.push(format!(
                        "memory peaked {:.0} MiB over its warm-up value (bound {})",
                        rss.peak_growth_mib(),
                        bounds.peak_mib
                    ));
                }
                if rss.end_growth_mib() > bounds.end_mib {
                    reasons.push(format!(
                        "memory ended {:.0} MiB over its warm-up value (bound {})",
                        rss.end_growth_mib(),
                        bounds.end_mib
                    ));
                }
            }
            None => reasons.push("no memory sample after the warm-up".into()),
        }
        reasons
    }
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
}

fn mib(kib: u64) -> u64 {
    kib / 1024
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "mixed load: {} clients for {:.0} s, seed {}: {} requests, {:.1}/s",
            self.clients,
            secs,
            self.seed,
            self.requests(),
            self.requests() as f64 / secs
        )?;
        writeln!(
            f,
            "  {:<36} {:>8} {:>9} {:>9} {:>9} {:>5} {:>5} {:>5}",
            "route", "requests", "p50 ms", "p99 ms", "max ms", "404", "5xx", "lost"
        )?;
        for route in Route::all() {
            let empty = RouteRecord::default();
            let r = self.route(route).unwrap_or(&empty);
            writeln!(
                f,
                "  {:<36} {:>8} {:>9} {:>9} {:>9} {:>5} {:>5} {:>5}",
                route.label(),
                r.requests(),
                millis(r.percentile(0.5)),
                millis(r.percentile(0.99)),
                millis(r.percentile(1.0)),
                r.statuses.get(&404).copied().unwrap_or(0),
                r.server_errors(),
                r.transport_errors
            )?;
        }
        writeln!(
            f,
            "  (404: reads of deleted items, asked for on purpose or raced with their delete; \
             lost: transport errors)"
        )?;

        let end = &self.end;
        let counted = |stats: Option<ServerStats>| {
            stats.map_or_else(
                || "unknown".into(),
                |s| format!("{} items in {} files", s.items, s.files),
            )
        };
        writeln!(
            f,
            "collection: {} at start; {} uploads, {} deletes ({} uploads live): the account \
             expects {}, /api/stats says {}",
            counted(Some(end.start)),
            end.uploads,
            end.deletes,
            end.live_uploads,
            counted(Some(end.expected)),
            counted(end.end)
        )?;

        write!(
            f,
            "server RSS (every {} s): ",
            self.rss_interval.as_secs_f64()
        )?;
        match self.rss() {
            Some(s) => writeln!(
                f,
                "{} MiB after the warm-up (at {}), max {} MiB after it (at {}, {:+.0} MiB), \
                 {} MiB at the end ({:+.0} MiB)",
                mib(s.warm.kib),
                clock(s.warm.at),
                mib(s.max.kib),
                clock(s.max.at),
                s.peak_growth_mib(),
                mib(s.end.kib),
                s.end_growth_mib()
            )?,
            None => writeln!(f, "no sample after the {:?} warm-up", self.warmup)?,
        }
        for row in self.rss.chunks(12) {
            let values: Vec<String> = row.iter().map(|s| mib(s.kib).to_string()).collect();
            writeln!(f, "  {} MiB: {}", clock(row[0].at), values.join(" "))?;
        }

        let verdict = self.verdict();
        if verdict.is_empty() {
            writeln!(
                f,
                "passed: consistent at the end; no 5xx, no transport error, no unexpected \
                 answer; memory within +{} MiB at peak, +{} MiB at the end",
                self.memory.peak_mib, self.memory.end_mib
            )?;
        } else {
            writeln!(f, "FAILED: {}", verdict.join("; "))?;
            for (kind, detail) in &self.failures.kept {
                writeln!(f, "  {}: {detail}", kind.label())?;
            }
        }
        Ok(())
    }
}
