//! The short run of issue 18's mixed load: a real server with a write token, over an index of
//! 50 real photos, under a few clients that search (by photo, verified, by words, by id),
//! read items, thumbnails and originals, load the page, upload and delete, for 30 seconds.
//!
//! It must answer no 5xx and lose no connection, every route must be exercised, every answer
//! must agree with the driver's account of the collection (see `support/mixed_load.rs`), and
//! the process's memory must not keep growing once warm. The long run of the same driver is
//! `scripts/soak.sh` (release build, hundreds of photos, 30 minutes).

mod common;
#[path = "support/mixed_load.rs"]
mod mixed_load;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::server::{writable, Running};
use common::{model_dir, photo};
use lookalike::engine::{Engine, EngineOptions};
use lookalike::server::ServerConfig;
use mixed_load::{Config, MemoryBounds, Photo, Route};

const TOKEN: &str = "soak-token-18";
/// Photos indexed at start; the others are the clients' queries and uploads.
const INDEXED: usize = 50;
const CLIENTS: usize = 4;
const LOAD: Duration = Duration::from_secs(30);
/// Long enough for every original's thumbnail to be cached and every code path (verify,
/// words, uploads, deletes) to have run a few times: memory after it is the steady state.
const WARMUP: Duration = Duration::from_secs(15);
/// Memory allowed above its warm-up value. At the highest sample: the work in flight at one
/// moment (a few photos decoded at once, verification decoding ten results per search); when
/// the load is over: what may legitimately stay (the uploads' thumbnails at ~16 KB each, their
/// vectors and regions in the HNSW graphs, the allocator's arenas still settling). Seen on the
/// standard machine: +22 to +56 MiB at peak, +13 to +22 MiB at the end; over a 120 s run the
/// memory flattened out (+37 MiB at 60 s, +43 MiB at 120 s). A leak of request bodies (~300
/// KB each, ~25 requests a second carry a photo) would pass either bound within seconds;
/// slow leaks are the long run's to find.
const MEMORY: MemoryBounds = MemoryBounds {
    peak_mib: 128.0,
    end_mib: 48.0,
};

#[test]
fn mixed_load_leaves_the_server_healthy_and_consistent() {
    // Interleaved, so that indexed photos and queries come from both folders.
    let photos = mixed_load::photo_paths(&[photo("opencv"), photo("skimage")]).unwrap();
    let (indexed, queries): (Vec<_>, Vec<_>) = photos
        .iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0 && i / 2 < INDEXED);
    let indexed: Vec<PathBuf> = indexed.into_iter().map(|(_, p)| p.clone()).collect();
    let queries: Vec<Photo> = queries
        .into_iter()
        .map(|(_, p)| Photo::read(p).unwrap())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        Engine::open(&EngineOptions::new(dir.path().join("db"), model_dir()))
            .expect("open the engine (is the model fetched?)"),
    );
    let indexing = engine
        .index_paths(&indexed, &Default::default())
        .expect("index the photos");
    assert_eq!(indexing.added, INDEXED, "{:?}", indexing.failed);
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Running::start(
        ServerConfig {
            // Overload is not what this test is about: in the debug build a verified search
            // takes up to 2.5 s, and two queued ahead of a request on a busy shared machine
            // would pass the default 5 s and draw a 503 by design. The long run keeps the
            // default.
            queue_timeout: Duration::from_secs(30),
            ..writable(TOKEN, &root)
        },
        engine,
    );

    let config = Config {
        base: server.base.clone(),
        token: TOKEN.into(),
        // The server runs in this process.
        server_pid: std::process::id(),
        clients: CLIENTS,
        duration: LOAD,
        warmup: WARMUP,
        rss_interval: Duration::from_secs(1),
        memory: MEMORY,
        max_live_uploads: 10,
        seed: 18,
        progress: false,
    };
    let report = mixed_load::run(&config, &queries).expect("the load starts");
    println!("{report}");

    let verdict = report.verdict();
    assert!(verdict.is_empty(), "{verdict:#?}\n{report}");
    // A churn that stopped at once would prove nothing about deletes.
    let deletes = report.route(Route::Delete).map_or(0, |r| r.requests());
    assert!(deletes >= 5, "only {deletes} deletes\n{report}");
    server.shutdown().expect("a graceful shutdown");
}
