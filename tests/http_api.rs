//! The HTTP API over real TCP, on real photos: every route's happy path, and for bad input a
//! clear 4xx JSON error after which the server is still healthy.
//!
//! One engine indexes photos/opencv + photos/skimage once; several servers run over it
//! (writable with a token, read-only, a tiny inference queue); tests that change the
//! collection only touch images they add themselves.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::server::{writable, Running};
use common::vectors::{normalised, synthetic_image};
use common::{model_dir, photo, testdata};
use lookalike::descriptor::whitening::{min_vectors, WhiteningOptions};
use lookalike::descriptor::DescriptorOptions;
use lookalike::engine::{Engine, EngineOptions};
use lookalike::index::{Index, IndexConfig};
use lookalike::server::ServerConfig;
use reqwest::blocking::{multipart, Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-3f9a";
const MAX_BODY: usize = 4 << 20;
/// The video in the shared index: 10 s of 640x272 H.264, several distinct scenes.
const VIDEO: &str = "bikes.mp4";

fn video(name: &str) -> PathBuf {
    testdata().join("videos").join(name)
}

fn open_engine(db: &Path) -> Arc<Engine> {
    let options = EngineOptions::new(db.to_path_buf(), model_dir());
    Arc::new(Engine::open(&options).expect("open the engine (is the model fetched?)"))
}

struct Shared {
    engine: Arc<Engine>,
    /// Writes enabled with [`TOKEN`]; roots = [root].
    writable: Running,
    /// No token: writes disabled.
    read_only: Running,
    root: PathBuf,
    outside: PathBuf,
    _dir: tempfile::TempDir,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let engine = open_engine(&dir.path().join("db"));
        let report = engine
            .index_paths(
                &[photo("opencv"), photo("skimage"), video(VIDEO)],
                &Default::default(),
            )
            .expect("index the test photos");
        assert!(report.added > 100, "indexed only {} photos", report.added);
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let config = ServerConfig {
            max_body_bytes: MAX_BODY,
            ..writable(TOKEN, &root)
        };
        let writable = Running::start(config.clone(), engine.clone());
        let read_only = Running::start(
            ServerConfig {
                token: None,
                ..config
            },
            engine.clone(),
        );
        Shared {
            engine,
            writable,
            read_only,
            root,
            outside,
            _dir: dir,
        }
    })
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn assert_healthy(server: &Running) {
    let response = client().get(server.url("/healthz")).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().unwrap(), json!({"status": "ok"}));
}

/// Asserts a JSON error with the given status and code, and a message for a person.
#[track_caller]
fn assert_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], code, "body: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() > 5, "message too short: {body}");
    body
}

fn image_form(path: &Path) -> multipart::Form {
    multipart::Form::new().file("image", path).unwrap()
}

fn search_file(server: &Running, path: &Path, k: usize) -> Value {
    let response = client()
        .post(server.url(&format!("/api/search?k={k}")))
        .multipart(image_form(path))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().unwrap()
}

fn names(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

/// A PNG whose header declares `width` x `height` (with a valid CRC) and a few bytes of data.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x63\x00\x00\x00\x01\x00\x01";
    png.extend_from_slice(&9u32.to_be_bytes());
    png.extend_from_slice(idat);
    png.extend_from_slice(&crc32(idat).to_be_bytes());
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32_matches_the_png_specification() {
    // The CRC of "IEND" is fixed by every PNG file's last chunk: AE 42 60 82.
    assert_eq!(crc32(b"IEND"), 0xAE42_6082);
}

#[test]
fn health_stats_openapi_and_metrics() {
    let s = shared();
    assert_healthy(&s.writable);

    let stats: Value = client()
        .get(s.writable.url("/api/stats"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(stats["items"].as_u64().unwrap() > 100, "{stats}");
    assert!(stats["dim"].as_u64().unwrap() > 0);
    assert_eq!(stats["model"], s.engine.model_name());

    let spec: Value = client()
        .get(s.writable.url("/api/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/search", "post"),
        ("/api/search", "get"),
        ("/api/words", "get"),
        ("/api/items", "post"),
        ("/api/items/{id}", "get"),
        ("/api/items/{id}", "delete"),
        ("/api/items/{id}/similar", "get"),
        ("/api/items/{id}/original", "get"),
        ("/api/items/{id}/thumbnail", "get"),
        ("/api/index", "post"),
        ("/api/stats", "get"),
        ("/healthz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} missing from OpenAPI"
        );
    }
    assert_eq!(
        spec["paths"]["/api/items"]["post"]["security"][0]["bearer"],
        json!([])
    );
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, method) in [("/api/search", "post"), ("/api/items/{id}/similar", "get")] {
        let params = spec["paths"][path][method]["parameters"]
            .as_array()
            .unwrap();
        assert!(
            params.iter().any(|p| p["name"] == "frames"),
            "{path}: {params:?}"
        );
    }
    let row = &spec["components"]["schemas"]["SearchResult"]["properties"];
    assert_eq!(row["video"]["type"], "boolean", "{row}");

    search_file(&s.writable, &photo("skimage/coffee.png"), 3);
    let metrics = client()
        .get(s.writable.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            r#"lookalike_http_requests_total{method="POST",route="/api/search",status="200"}"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("lookalike_http_request_duration_seconds_bucket"));
    assert!(metrics.contains(r#"lookalike_inference_duration_seconds_count{op="search"}"#));
    let items_line = metrics
        .lines()
        .find(|l| l.starts_with("lookalike_index_items "))
        .unwrap();
    assert_eq!(
        items_line,
        format!("lookalike_index_items {}", stats["items"])
    );
}

#[test]
fn the_page_and_its_assets_are_served() {
    let s = shared();
    let page = client().get(s.writable.url("/")).send().unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    let html = page.text().unwrap();
    assert!(html.contains(r#"<script src="/app.js""#) && html.contains("/style.css"));
    for (path, kind) in [("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let asset = client().get(s.writable.url(path)).send().unwrap();
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(asset.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    assert_error(
        client().get(s.writable.url("/api/nope")).send().unwrap(),
        404,
        "not_found",
    );
    let wrong_method = client().put(s.writable.url("/api/search")).send().unwrap();
    assert_error(wrong_method, 405, "method_not_allowed");
}

#[test]
fn searching_with_a_photo_of_the_collection_finds_it_first() {
    let s = shared();
    let answer = search_file(&s.writable, &photo("skimage/chelsea.png"), 5);
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    let first = &results[0];
    assert_eq!(first["name"], "chelsea.png");
    assert!(first["score"].as_f64().unwrap() > 0.99, "{first}");
    assert!(first["path"]
        .as_str()
        .unwrap()
        .ends_with("skimage/chelsea.png"));
    assert_eq!(first["kind"], "image");
    assert!(first["t"].is_null());
    let id = first["id"].as_i64().unwrap();
    assert_eq!(first["thumbnail"], format!("/api/items/{id}/thumbnail"));
    assert_eq!(first["original"], format!("/api/items/{id}/original"));
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "not sorted: {scores:?}"
    );
    assert!(answer["took_ms"].as_f64().unwrap() > 0.0);

    // The same with the raw image as the body.
    let raw = client()
        .post(s.writable.url("/api/search?k=3"))
        .header("content-type", "image/png")
        .body(std::fs::read(photo("skimage/coffee.png")).unwrap())
        .send()
        .unwrap();
    assert_eq!(raw.status(), StatusCode::OK);
    let raw: Value = raw.json().unwrap();
    assert_eq!(names(&raw)[0], "coffee.png");

    // A JPEG of the collection too, with the default k.
    let answer = search_file(&s.writable, &photo("opencv/messi5.jpg"), 24);
    assert_eq!(names(&answer)[0], "messi5.jpg");
    let default_k: Value = client()
        .post(s.writable.url("/api/search"))
        .multipart(image_form(&photo("opencv/messi5.jpg")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(default_k["results"].as_array().unwrap().len(), 24);
}

/// `verify=N`: the box photographed alone is found in the cluttered scene (by upload and by
/// item), with the inlier count; a verify beyond the limit is a client error.
#[test]
fn verification_finds_the_object_in_its_scene() {
    let s = shared();
    let verified = |url: String| -> Value {
        let response = client()
            .post(url)
            .multipart(image_form(&photo("opencv/box_in_scene.png")))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().unwrap()
    };
    let plain = search_file(&s.writable, &photo("opencv/box_in_scene.png"), 10);
    assert!(plain["results"][0].get("inliers").is_none());
    let answer = verified(s.writable.url("/api/search?k=3&verify=10"));
    // The scene itself (indexed too), then the box.
    assert_eq!(
        names(&answer)[..2],
        ["box_in_scene.png", "box.png"],
        "{answer}"
    );
    let box_hit = &answer["results"][1];
    assert!(box_hit["inliers"].as_u64().unwrap() >= 18, "{box_hit}");
    assert!(answer["results"][0]["inliers"].as_u64() > box_hit["inliers"].as_u64());

    let id = box_hit["id"].as_i64().unwrap();
    let similar = get_json(
        &s.writable,
        &format!("/api/items/{id}/similar?k=2&verify=10"),
    );
    assert_eq!(
        names(&similar),
        ["box.png", "box_in_scene.png"],
        "{similar}"
    );
    assert!(similar["results"][1]["inliers"].as_u64().unwrap() >= 18);

    // A video frame is verified against the frame decoded at its time: it finds itself,
    // verified, and a match of the whole picture has no box.
    let frame = video_frames(s)[0].0.id;
    let similar = get_json(
        &s.writable,
        &format!("/api/items/{frame}/similar?k=3&verify=10"),
    );
    let first = &similar["results"][0];
    assert_eq!(first["id"], frame);
    assert!(first["inliers"].as_u64().unwrap() >= 18, "{similar}");
    assert!(first.get("box").is_none(), "{similar}");

    let response = client()
        .post(s.writable.url("/api/search?verify=51"))
        .multipart(image_form(&photo("opencv/box_in_scene.png")))
        .send()
        .unwrap();
    assert_error(response, 400, "invalid_verify");

    // Bad uploads get the same errors with verification asked for.
    let upload = |body: Vec<u8>| {
        client()
            .post(s.writable.url("/api/search?verify=10"))
            .header("content-type", "image/png")
            .body(body)
            .send()
            .unwrap()
    };
    let truncated = std::fs::read(photo("skimage/chelsea.png")).unwrap()[..3000].to_vec();
    assert_error(upload(truncated), 422, "corrupt_image");
    assert_error(upload(png_header(30_000, 30_000)), 413, "image_too_large");
    assert_healthy(&s.writable);
}

#[test]
fn an_item_its_neighbours_original_and_thumbnail() {
    let s = shared();
    let id = search_file(&s.writable, &photo("skimage/chelsea.png"), 1)["results"][0]["id"]
        .as_i64()
        .unwrap();

    let item: Value = client()
        .get(s.writable.url(&format!("/api/items/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(item["id"], id);
    assert_eq!(item["name"], "chelsea.png");
    assert_eq!(
        (item["width"].as_u64(), item["height"].as_u64()),
        (Some(451), Some(300))
    );

    let similar: Value = client()
        .get(s.writable.url(&format!("/api/items/{id}/similar?k=4")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let results = similar["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["id"], id);

    let original = client()
        .get(s.writable.url(&format!("/api/items/{id}/original")))
        .send()
        .unwrap();
    assert_eq!(original.status(), StatusCode::OK);
    assert_eq!(original.headers()["content-type"], "image/png");
    assert_eq!(
        original.bytes().unwrap().as_ref(),
        std::fs::read(photo("skimage/chelsea.png")).unwrap()
    );

    let thumb_url = s.writable.url(&format!("/api/items/{id}/thumbnail"));
    let thumb = client().get(&thumb_url).send().unwrap();
    assert_eq!(thumb.status(), StatusCode::OK);
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let jpeg = thumb.bytes().unwrap();
    let decoded = image::load_from_memory(&jpeg).unwrap();
    assert_eq!(
        decoded.width().max(decoded.height()),
        320,
        "longest side of the thumbnail"
    );
    let again = client().get(&thumb_url).send().unwrap().bytes().unwrap();
    assert_eq!(
        jpeg, again,
        "the cached thumbnail should be served the second time"
    );
}

fn get_json(server: &Running, path: &str) -> Value {
    let response = client().get(server.url(path)).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().unwrap()
}

/// Uploads a file into the collection with the write token; the new item, answered 201.
fn add_item(server: &Running, path: &Path) -> Value {
    let response = client()
        .post(server.url("/api/items"))
        .bearer_auth(TOKEN)
        .multipart(image_form(path))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{}", path.display());
    response.json().unwrap()
}

/// Removes an item with the write token, which must succeed.
fn remove_item(server: &Running, id: i64) {
    let removed = client()
        .delete(server.url(&format!("/api/items/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert!(removed.status().is_success(), "removing {id}");
}

fn paths(answer: &Value) -> Vec<&str> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect()
}

/// The query string value of a path (spaces and the few reserved characters a path holds).
fn query_value(s: &str) -> String {
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('&', "%26")
        .replace('+', "%2B")
        .replace('#', "%23")
}

#[test]
fn search_by_words_with_labels_suggestions_and_filters() {
    let s = shared();
    let server = &s.read_only;
    // opencv's chicky_512.png is a Pekinese: "dog" reaches it through the breed's label.
    let dogs = get_json(server, "/api/search?q=dogs&k=5");
    let first = &dogs["results"][0];
    assert_eq!(first["name"], "chicky_512.png", "{dogs}");
    assert!(
        first["labels"][0]["name"]
            .as_str()
            .unwrap()
            .contains("Pekinese"),
        "{first}"
    );
    let score = first["score"].as_f64().unwrap();
    assert!((0.2..=1.0).contains(&score), "{score}");
    assert_eq!(dogs["words"][0]["word"], "dog");
    assert!(dogs["words"][0]["classes"].as_u64().unwrap() >= 118);
    // Every answer is a photo the words describe: dog labels adding up to 0.2 or more.
    for result in dogs["results"].as_array().unwrap() {
        assert!(result["score"].as_f64().unwrap() >= 0.2, "{result}");
    }

    let nothing = get_json(server, "/api/search?q=xyzzy");
    assert_eq!(nothing["results"], json!([]));
    assert_eq!(nothing["unknown_words"], json!(["xyzzy"]));

    assert_error(
        client().get(server.url("/api/search")).send().unwrap(),
        400,
        "missing_q",
    );
    assert_error(
        client()
            .get(server.url("/api/search?q=dog&taken=2019-13"))
            .send()
            .unwrap(),
        400,
        "invalid_taken",
    );
    assert_error(
        client()
            .get(server.url("/api/search?q=dog&near=91,0,5"))
            .send()
            .unwrap(),
        400,
        "invalid_near",
    );

    let suggestions = get_json(server, "/api/words?prefix=golden&limit=5");
    let words: Vec<&str> = suggestions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["word"].as_str().unwrap())
        .collect();
    assert!(words.contains(&"golden retriever"), "{words:?}");

    // A folder filter narrows a search by example to that folder.
    let skimage = photo("skimage").canonicalize().unwrap();
    let skimage = skimage.to_str().unwrap();
    let chicky = s
        .engine
        .indexed_vector(&photo("opencv/chicky_512.png"))
        .unwrap()
        .expect("chicky_512.png is indexed")
        .0
        .id;
    let everywhere = get_json(server, &format!("/api/items/{chicky}/similar?k=10"));
    assert!(paths(&everywhere).iter().any(|p| !p.starts_with(skimage)));
    let within = get_json(
        server,
        &format!(
            "/api/items/{chicky}/similar?k=10&under={}",
            query_value(skimage)
        ),
    );
    let within = paths(&within);
    assert_eq!(within.len(), 10);
    assert!(
        within.iter().all(|p| p.starts_with(&format!("{skimage}/"))),
        "{within:?}"
    );
    // Words filter an image search: of the dog's neighbours, only the photos "dog" finds.
    let all_dogs = get_json(server, "/api/search?q=dog&k=200");
    let all_dogs = paths(&all_dogs);
    let dog_neighbours = get_json(server, &format!("/api/items/{chicky}/similar?k=10&q=dog"));
    let dog_neighbours = paths(&dog_neighbours);
    assert!(
        dog_neighbours[0].ends_with("chicky_512.png"),
        "{dog_neighbours:?}"
    );
    assert_eq!(dog_neighbours.len(), all_dogs.len().min(10));
    assert!(
        dog_neighbours.iter().all(|p| all_dogs.contains(p)),
        "{dog_neighbours:?} vs {all_dogs:?}"
    );

    // An item tells its labels.
    let item = get_json(server, &format!("/api/items/{chicky}"));
    assert!(item["labels"][0]["name"]
        .as_str()
        .unwrap()
        .contains("Pekinese"));
    assert!(item["facts"].is_object());

    // An upload tells its EXIF facts (written by ExifTool: tests/fixtures/CREDITS.md).
    let added = add_item(&s.writable, &common::fixture("china_exif.png"));
    assert_eq!(added["facts"]["taken"], "2021-02-28T23:59:59", "{added}");
    assert_eq!(added["facts"]["camera_make"], "NIKON CORPORATION");
    assert_eq!(added["camera"], "NIKON D70");
    let latitude = added["facts"]["latitude"].as_f64().unwrap();
    assert!((latitude + 33.8568).abs() < 1e-4, "{latitude}");
    let id = added["id"].as_i64().unwrap();
    assert_eq!(
        get_json(server, &format!("/api/items/{id}"))["camera"],
        "NIKON D70"
    );
    remove_item(&s.writable, id);
}

/// The indexed frames of the shared server's video, in time order.
fn video_frames(s: &Shared) -> Vec<lookalike::engine::StoredItem> {
    let file = video(VIDEO).canonicalize().unwrap();
    s.engine
        .indexed_items(&file)
        .unwrap()
        .expect("the video is indexed")
}

#[test]
fn a_video_is_one_result_per_file_with_its_moment_thumbnail_and_playable_original() {
    let s = shared();
    let file = video(VIDEO).canonicalize().unwrap();
    let frames = video_frames(s);
    assert!(frames.len() >= 2, "{} frames kept", frames.len());
    let (first_frame, last_frame) = (&frames[0].0, &frames[frames.len() - 1].0);
    assert!(last_frame.t.unwrap() > first_frame.t.unwrap());

    // The row of a frame: the video, its moment.
    let similar = get_json(
        &s.read_only,
        &format!("/api/items/{}/similar?k=6", last_frame.id),
    );
    let row = &similar["results"][0];
    assert_eq!(row["id"], last_frame.id);
    assert_eq!(row["name"], VIDEO);
    assert_eq!(row["kind"], "video");
    assert_eq!(row["video"], true);
    assert_eq!(row["t"].as_f64(), last_frame.t);
    assert_eq!(similar["results"][1]["video"], false, "{similar}");

    // Grouped by default: k distinct files, the video once. frames=true: the video's other
    // frames come back too (they look like each other more than like any photo).
    let grouped = paths(&similar);
    assert_eq!(grouped.len(), 6);
    let mut distinct = grouped.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 6, "{grouped:?}");
    let all_frames = get_json(
        &s.read_only,
        &format!("/api/items/{}/similar?k=6&frames=true", last_frame.id),
    );
    let video_rows = paths(&all_frames)
        .iter()
        .filter(|p| **p == file.to_str().unwrap())
        .count();
    assert!(video_rows >= 2, "{all_frames}");
    let bad = client()
        .get(s.read_only.url("/api/items/1/similar?frames=maybe"))
        .send()
        .unwrap();
    assert_error(bad, 400, "bad_request");

    // Thumbnails are the frames at their times: JPEGs of the video's shape, different for
    // different moments, and a search with one finds that moment of the video first.
    let thumb = |id: i64| {
        let response = client()
            .get(s.read_only.url(&format!("/api/items/{id}/thumbnail")))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        response.bytes().unwrap()
    };
    let last_jpeg = thumb(last_frame.id);
    let decoded = image::load_from_memory(&last_jpeg).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 136));
    assert_ne!(thumb(first_frame.id), last_jpeg);
    let answer: Value = client()
        .post(s.read_only.url("/api/search?k=4"))
        .header("content-type", "image/jpeg")
        .body(last_jpeg.to_vec())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let best = &answer["results"][0];
    assert_eq!(
        (best["name"].as_str(), best["video"].as_bool()),
        (Some(VIDEO), Some(true))
    );
    assert_eq!(best["t"].as_f64(), last_frame.t, "{answer}");
    assert_eq!(
        paths(&answer).iter().filter(|p| p.ends_with(VIDEO)).count(),
        1
    );

    // The original is the whole video, with a video type, and seekable by range.
    let bytes = std::fs::read(&file).unwrap();
    let url = s
        .read_only
        .url(&format!("/api/items/{}/original", last_frame.id));
    let whole = client().get(&url).send().unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["content-type"], "video/mp4");
    assert_eq!(whole.bytes().unwrap().as_ref(), bytes.as_slice());
    let part = client()
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1000-1999/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().unwrap().as_ref(), &bytes[1000..2000]);
}

#[test]
fn bad_uploads_get_clear_errors_and_the_server_stays_up() {
    let s = shared();
    let search = |content_type: &str, body: Vec<u8>| {
        client()
            .post(s.writable.url("/api/search"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    };
    assert_error(search("image/png", Vec::new()), 400, "empty_body");
    assert_error(
        search("text/plain", b"hello".to_vec()),
        415,
        "unsupported_media_type",
    );
    assert_error(
        search("image/jpeg", b"this is not an image at all".to_vec()),
        415,
        "unsupported_format",
    );
    let truncated = std::fs::read(photo("skimage/chelsea.png")).unwrap()[..3000].to_vec();
    assert_error(search("image/png", truncated), 422, "corrupt_image");
    let huge = assert_error(
        search("image/png", png_header(30_000, 30_000)),
        413,
        "image_too_large",
    );
    assert!(
        huge["error"]["message"]
            .as_str()
            .unwrap()
            .contains("30000x30000"),
        "{huge}"
    );
    let oversize = vec![0xFFu8; MAX_BODY + 1];
    assert_error(search("image/jpeg", oversize), 413, "body_too_large");

    let no_field = multipart::Form::new().text("picture", "x");
    let response = client()
        .post(s.writable.url("/api/search"))
        .multipart(no_field)
        .send()
        .unwrap();
    assert_error(response, 400, "missing_image");
    let empty_field = multipart::Form::new().part("image", multipart::Part::bytes(Vec::new()));
    let response = client()
        .post(s.writable.url("/api/search"))
        .multipart(empty_field)
        .send()
        .unwrap();
    assert_error(response, 400, "empty_body");

    for k in ["0", "201", "abc", "-3"] {
        let response = client()
            .post(s.writable.url(&format!("/api/search?k={k}")))
            .multipart(image_form(&photo("skimage/coffee.png")))
            .send()
            .unwrap();
        let code = if k == "abc" || k == "-3" {
            "bad_request"
        } else {
            "invalid_k"
        };
        assert_error(response, 400, code);
    }
    assert_healthy(&s.writable);
}

#[test]
fn ids_are_validated() {
    let s = shared();
    for path in [
        "/api/items/abc",
        "/api/items/-1",
        "/api/items/1.5/similar",
        "/api/items/x/thumbnail",
    ] {
        assert_error(
            client().get(s.writable.url(path)).send().unwrap(),
            400,
            "invalid_id",
        );
    }
    let unknown = 987_654_321;
    for suffix in ["", "/similar", "/original", "/thumbnail"] {
        let response = client()
            .get(s.writable.url(&format!("/api/items/{unknown}{suffix}")))
            .send()
            .unwrap();
        let body = assert_error(response, 404, "not_found");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("987654321"));
    }
    let delete = |path: &str| {
        client()
            .delete(s.writable.url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
    };
    assert_error(delete("/api/items/abc"), 400, "invalid_id");
    assert_error(delete(&format!("/api/items/{unknown}")), 404, "not_found");
    assert_healthy(&s.writable);
}

/// A page on another site can make its visitors' browsers send simple requests (a form's
/// POST to /api/search runs the network): browsers mark them with `Sec-Fetch-Site`, and only
/// reads are answered. The server's own page, requests the user makes, and clients that are
/// not browsers (no such header) are served as before.
#[test]
fn pages_of_other_sites_may_only_read() {
    let s = shared();
    let search = |site: Option<&str>| {
        let mut request = client()
            .post(s.read_only.url("/api/search?k=3"))
            .multipart(image_form(&photo("skimage/coffee.png")));
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request.send().unwrap()
    };
    for site in ["cross-site", "same-site"] {
        assert_error(search(Some(site)), 403, "cross_site");
    }
    for site in [Some("same-origin"), Some("none"), None] {
        let found = search(site);
        assert_eq!(found.status(), StatusCode::OK, "{site:?}");
        let found: Value = found.json().unwrap();
        assert_eq!(names(&found)[0], "coffee.png", "{site:?}");
    }
    // A write with the right token from another site's page is refused before the token
    // is looked at; from the server's own page it reaches the route (no such item).
    let delete = |site: &str| {
        client()
            .delete(s.writable.url("/api/items/424242"))
            .bearer_auth(TOKEN)
            .header("sec-fetch-site", site)
            .send()
            .unwrap()
    };
    assert_error(delete("cross-site"), 403, "cross_site");
    assert_error(delete("same-origin"), 404, "not_found");
    // Reads stay open to other sites (an <img> of a thumbnail, a link to a result).
    let stats = client()
        .get(s.read_only.url("/api/stats"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .unwrap();
    assert_eq!(stats.status(), StatusCode::OK);
}

/// Guessing the token is slowed to a crawl: past its allowance of wrong tokens, a client's
/// writes are refused (429 with Retry-After) until its window ends, the right token included,
/// so it cannot tell a right guess from a wrong one. A missing token does not count, reads
/// are never refused, and once the window is over the right token works again.
#[test]
fn guessing_the_token_is_refused_after_a_few_tries() {
    let s = shared();
    let root = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(3);
    let config = ServerConfig {
        max_token_misses: 3,
        token_miss_window: window,
        ..writable(TOKEN, root.path())
    };
    let server = Running::start(config, s.engine.clone());
    let delete = |token: Option<&str>| {
        let request = client().delete(server.url("/api/items/424242"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
        .unwrap()
    };
    for _ in 0..5 {
        assert_error(delete(None), 401, "unauthorized");
    }
    let first_miss = Instant::now();
    for guess in ["guess-1", "guess-2", "guess-3"] {
        assert_error(delete(Some(guess)), 401, "unauthorized");
    }
    for token in ["guess-4", TOKEN] {
        let refused = delete(Some(token));
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3).contains(&wait), "{wait}");
        assert_error(refused, 429, "too_many_wrong_tokens");
    }
    assert_eq!(
        client()
            .get(server.url("/api/stats"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
    std::thread::sleep((first_miss + window + Duration::from_millis(200)) - Instant::now());
    // Past the token check: there is no such item.
    assert_error(delete(Some(TOKEN)), 404, "not_found");
    server.shutdown().unwrap();
}

#[test]
fn writes_need_the_token() {
    let s = shared();
    let add = |server: &Running, token: Option<&str>| {
        let mut request = client()
            .post(server.url("/api/items"))
            .multipart(image_form(&photo("skimage/coffee.png")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().unwrap()
    };
    let missing = add(&s.writable, None);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_error(missing, 401, "unauthorized");
    assert_error(add(&s.writable, Some("wrong-token")), 401, "unauthorized");
    assert_error(add(&s.read_only, Some(TOKEN)), 403, "writes_disabled");
    assert_error(add(&s.read_only, None), 403, "writes_disabled");

    let index = |server: &Running, token: Option<&str>| {
        let mut request = client()
            .post(server.url("/api/index"))
            .json(&json!({"path": s.root}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().unwrap()
    };
    assert_error(index(&s.writable, None), 401, "unauthorized");
    assert_error(index(&s.read_only, Some(TOKEN)), 403, "writes_disabled");
    let delete = client()
        .delete(s.read_only.url("/api/items/1"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_error(delete, 403, "writes_disabled");
    let delete = client()
        .delete(s.writable.url("/api/items/1"))
        .send()
        .unwrap();
    assert_error(delete, 401, "unauthorized");
    // Nothing was stored: coffee.png (which only this test uploads) is not in the uploads.
    let coffee = std::fs::read(photo("skimage/coffee.png")).unwrap();
    let stored = std::fs::read_dir(s.root.join("uploads")).unwrap();
    assert!(stored
        .flatten()
        .all(|e| std::fs::read(e.path()).unwrap() != coffee));
    assert_healthy(&s.read_only);
}

#[test]
fn an_upload_that_makes_a_whitening_due_learns_it_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (db, root) = (dir.path().join("db"), dir.path().join("root"));
    std::fs::create_dir_all(&root).unwrap();
    // An index whose descriptor asks for a whitening to 8 dimensions, which is learned from
    // 1,000 vectors: 999 are there (synthetic, under paths that need not exist).
    let whitening = WhiteningOptions {
        dims: 8,
        power: 0.0,
    };
    let config = IndexConfig {
        model: "efficientnet-lite0".into(),
        dim: 1280,
        descriptor: DescriptorOptions {
            whitening: Some(whitening),
            ..DescriptorOptions::baseline()
        },
    };
    assert_eq!(min_vectors(whitening.dims), 1000);
    let mut index = Index::create_or_open(&db, &config).unwrap();
    let files = (0..999u32)
        .map(|i| {
            let v: Vec<f32> = (0..1280u32)
                .map(|j| ((i * 7 + j * 13) as f32 * 0.37).sin() + 0.2 * (j % 5) as f32)
                .collect();
            synthetic_image(format!("/synthetic/{i}.jpg"), normalised(v))
        })
        .collect();
    index.add(files).unwrap();
    drop(index);
    let engine = open_engine(&db);
    assert_eq!(engine.stats().unwrap().whitening, None);
    let config = writable(TOKEN, &root);
    let server = Running::start(config, engine.clone());

    let response = client()
        .post(server.url("/api/items"))
        .bearer_auth(TOKEN)
        .multipart(image_form(&photo("sklearn/china.jpg")))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // A wait, not a speed check: in a debug build, with the other tests of this binary (some
    // on all cores) running beside it, the learning took over 60 s once in CI.
    let deadline = Instant::now() + Duration::from_secs(300);
    let learned = loop {
        if let Some(info) = engine.stats().unwrap().whitening {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "no whitening learned after the upload"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((learned.learned_from, learned.out_dim), (1000, 8));
    // Searches are in the whitened space now, and the upload still finds itself.
    let answer = search_file(&server, &photo("sklearn/china.jpg"), 1);
    assert!(
        answer["results"][0]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with(
                root.join("uploads")
                    .canonicalize()
                    .unwrap()
                    .to_str()
                    .unwrap()
            )),
        "{answer}"
    );
    server.shutdown().unwrap();
}

#[test]
fn upload_search_and_delete() {
    let s = shared();
    let flower = photo("sklearn/flower.jpg");
    let response = client()
        .post(s.writable.url("/api/items"))
        .bearer_auth(TOKEN)
        .multipart(image_form(&flower))
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let item: Value = response.json().unwrap();
    let id = item["id"].as_i64().unwrap();
    let stored = PathBuf::from(item["path"].as_str().unwrap());
    assert!(
        stored.starts_with(s.root.join("uploads").canonicalize().unwrap()),
        "{stored:?}"
    );
    assert_eq!(stored.extension().unwrap(), "jpg");
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(&flower).unwrap()
    );
    assert_eq!(
        (item["width"].as_u64(), item["height"].as_u64()),
        (Some(640), Some(427))
    );

    let answer = search_file(&s.writable, &flower, 3);
    assert_eq!(answer["results"][0]["id"], id, "{answer}");

    // A refused upload leaves no file behind.
    let before = std::fs::read_dir(stored.parent().unwrap()).unwrap().count();
    let refused = client()
        .post(s.writable.url("/api/items"))
        .bearer_auth(TOKEN)
        .header("content-type", "image/png")
        .body(png_header(30_000, 30_000))
        .send()
        .unwrap();
    assert_error(refused, 413, "image_too_large");
    let text = client()
        .post(s.writable.url("/api/items"))
        .bearer_auth(TOKEN)
        .header("content-type", "image/png")
        .body("not an image")
        .send()
        .unwrap();
    assert_error(text, 415, "unsupported_format");
    assert_eq!(
        std::fs::read_dir(stored.parent().unwrap()).unwrap().count(),
        before
    );

    let deleted = client()
        .delete(s.writable.url(&format!("/api/items/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(deleted.json::<Value>().unwrap(), json!({"removed": 1}));
    assert!(
        !stored.exists(),
        "the uploaded file should be deleted with its item"
    );
    assert_error(
        client()
            .get(s.writable.url(&format!("/api/items/{id}")))
            .send()
            .unwrap(),
        404,
        "not_found",
    );
    let again = client()
        .delete(s.writable.url(&format!("/api/items/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_error(again, 404, "not_found");
    let answer = search_file(&s.writable, &flower, 3);
    assert!(answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != id));
}

#[test]
fn index_only_inside_the_roots() {
    let s = shared();
    let index = |body: Value| {
        client()
            .post(s.writable.url("/api/index"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .unwrap()
    };
    let root = s.root.display().to_string();
    assert_error(
        index(json!({"path": format!("{root}/../outside")})),
        403,
        "path_outside_roots",
    );
    assert_error(
        index(json!({"path": format!("{root}/../../../../../../etc")})),
        403,
        "path_outside_roots",
    );
    assert_error(index(json!({"path": s.outside})), 403, "path_outside_roots");
    assert_error(
        index(json!({"path": "relative/photos"})),
        400,
        "path_not_absolute",
    );
    assert_error(
        index(json!({"path": format!("{root}/no-such-folder")})),
        404,
        "not_found",
    );
    assert_error(index(json!({"folder": root})), 422, "bad_request");
    let bad_json = client()
        .post(s.writable.url("/api/index"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_error(bad_json, 400, "bad_request");

    // A symlink inside the root that leads out of it.
    let link = s.root.join("escape");
    std::os::unix::fs::symlink(photo("sklearn"), &link).unwrap();
    assert_error(index(json!({"path": link})), 403, "path_outside_roots");

    // The happy path: a new photo copied into the root becomes searchable.
    let incoming = s.root.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::copy(photo("sklearn/china.jpg"), incoming.join("china.jpg")).unwrap();
    let response = index(json!({"path": incoming}));
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().unwrap();
    assert_eq!(
        report,
        json!({"added": 1, "unchanged": 0, "removed": 0, "failed": []})
    );
    let answer = search_file(&s.writable, &photo("sklearn/china.jpg"), 3);
    assert_eq!(names(&answer)[0], "china.jpg");
    let report: Value = index(json!({"path": incoming})).json().unwrap();
    assert_eq!(report["unchanged"], 1);
    assert_healthy(&s.writable);
}

#[test]
fn beyond_the_inference_slots_requests_wait_then_get_503() {
    let s = shared();
    let config = ServerConfig {
        max_concurrent_inferences: 1,
        queue_timeout: Duration::from_millis(1),
        ..ServerConfig::default()
    };
    let server = Running::start(config, s.engine.clone());
    let big = std::fs::read(photo("wallpapers/plasma-workspace-wallpapers_usr_share_wallpapers_Flow_contents_images_5120x2880.jpg")).unwrap();
    let statuses: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let body = big.clone();
                let url = server.url("/api/search?k=1");
                scope.spawn(move || {
                    let response = client()
                        .post(url)
                        .header("content-type", "image/jpeg")
                        .body(body)
                        .send()
                        .unwrap();
                    let status = response.status().as_u16();
                    let retry = response.headers().get("retry-after").is_some();
                    let body: Value = response.json().unwrap();
                    assert!(status != 503 || retry, "503 without Retry-After");
                    (status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|(status, _)| *status == 200).count();
    let busy: Vec<_> = statuses
        .iter()
        .filter(|(status, _)| *status == 503)
        .collect();
    assert!(ok >= 1, "{statuses:?}");
    assert!(
        !busy.is_empty(),
        "six simultaneous searches through one slot: some should be refused"
    );
    assert_eq!(ok + busy.len(), 6, "{statuses:?}");
    assert!(busy.iter().all(|(_, body)| body["error"]["code"] == "busy"));
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let rejected = format!("lookalike_inference_rejected_total {}", busy.len());
    assert!(metrics.lines().any(|l| l == rejected), "{metrics}");
    assert_healthy(&server);
    server.shutdown().unwrap();
}

#[test]
fn graceful_shutdown_stops_listening() {
    let s = shared();
    let server = Running::start(ServerConfig::default(), s.engine.clone());
    let url = server.url("/healthz");
    server
        .shutdown()
        .expect("serve_with returns Ok after a graceful shutdown");
    assert!(
        client().get(url).send().is_err(),
        "nothing should listen any more"
    );
}

#[test]
fn images_indexed_by_another_process_become_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    // What `lookalike index` does from another process: its own engine on the same index,
    // which it writes while `lookalike serve` (without a token) only reads it.
    let writer = open_engine(&db);
    let mut options = EngineOptions::new(db.clone(), model_dir());
    options.read_only = true;
    let served = Arc::new(Engine::open(&options).unwrap());
    let config = ServerConfig {
        refresh_interval: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = Running::start(config, served);
    let items = || -> u64 {
        let stats: Value = client()
            .get(server.url("/api/stats"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        stats["items"].as_u64().unwrap()
    };
    assert_eq!(items(), 0);

    let report = writer
        .index_paths(&[photo("sklearn")], &Default::default())
        .unwrap();
    assert_eq!(report.added, 2);
    // Searchable, not merely in the catalog: poll the search itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = search_file(&server, &photo("sklearn/flower.jpg"), 2);
        if names(&answer) == ["flower.jpg", "china.jpg"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never picked up the new images: {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(items(), 2);
    server.shutdown().unwrap();
}

#[test]
fn heic_and_avif_are_searched_uploaded_and_shown_as_browsers_can() {
    let s = shared();
    let server = &s.writable;
    // Search by a HEIC upload: the photo it was encoded from is indexed (skimage/coffee.png).
    let answer = search_file(server, &common::fixture("heic_coffee.heic"), 1);
    assert!(paths(&answer)[0].ends_with("coffee.png"), "{answer}");
    assert!(
        answer["results"][0]["score"].as_f64().unwrap() > 0.9,
        "{answer}"
    );

    // Upload a HEIC with EXIF: added with its facts, stored with its own extension.
    let added = add_item(server, &common::fixture("heic_china_exif_gps.heic"));
    assert!(
        added["path"].as_str().unwrap().ends_with(".heic"),
        "{added}"
    );
    assert_eq!(added["camera"], "Canon EOS 5D Mark II", "{added}");
    let id = added["id"].as_i64().unwrap();

    // Browsers cannot show HEIC: the original comes as a full-size JPEG, and so does the
    // thumbnail.
    for route in ["original", "thumbnail"] {
        let response = client()
            .get(server.url(&format!("/api/items/{id}/{route}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{route}");
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            "image/jpeg"
        );
        let jpeg = image::load_from_memory(&response.bytes().unwrap()).unwrap();
        assert_eq!((jpeg.width(), jpeg.height()), (64, 48), "{route}");
    }
    remove_item(server, id);

    // Browsers show AVIF: its original is served as it is.
    let id = add_item(server, &common::fixture("avif_chelsea_alpha.avif"))["id"]
        .as_i64()
        .unwrap();
    let original = client()
        .get(server.url(&format!("/api/items/{id}/original")))
        .send()
        .unwrap();
    assert_eq!(original.status(), StatusCode::OK);
    assert_eq!(
        original.bytes().unwrap().as_ref(),
        std::fs::read(common::fixture("avif_chelsea_alpha.avif")).unwrap()
    );
    remove_item(server, id);
}

/// Sends `request` as raw bytes on a fresh connection and returns what the server answers
/// until it closes the connection or `wait` passes (None: nothing, or still open).
fn raw_exchange(server: &str, request: &[u8], wait: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let addr = server.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

/// Slowloris: clients that send their headers a byte at a time, or hold a keep-alive
/// connection idle, are cut off after the header timeout, and while they hold every allowed
/// connection, a normal client still gets its answer once their time is up.
#[test]
fn slow_clients_are_cut_off_and_cannot_hold_every_connection() {
    let s = shared();
    let server = Running::start(
        ServerConfig {
            header_timeout: Duration::from_secs(1),
            max_connections: 4,
            ..ServerConfig::default()
        },
        s.engine.clone(),
    );
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let server = server.base.clone();
            std::thread::spawn(move || {
                raw_exchange(
                    &server,
                    b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                    Duration::from_secs(10),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // All four slots are held; this one waits in the backlog until they are cut off.
    let started = Instant::now();
    assert_healthy(&server);
    let waited = started.elapsed();
    for client in slow {
        let answer = client.join().unwrap();
        assert!(
            answer.is_some(),
            "a client with half its headers sent was never cut off"
        );
    }
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
    let idle = raw_exchange(
        &server.base,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        Duration::from_secs(10),
    )
    .expect("an idle keep-alive connection is closed after the header timeout");
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
}

/// A body declared over the limit is refused without being kept: at once for a client that
/// waits for `100 Continue`, else once it was sent or the body timeout passed. One that stops
/// arriving is answered 408 after the body timeout.
#[test]
fn bodies_over_the_limit_or_too_slow_are_refused_early() {
    let s = shared();
    let server = Running::start(
        ServerConfig {
            max_body_bytes: MAX_BODY,
            body_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        },
        s.engine.clone(),
    );
    let declared = format!(
        "POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n\
         Content-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    for expect in ["", "Expect: 100-continue\r\n"] {
        let request = declared.replace("\r\n\r\n", &format!("\r\n{expect}\r\n"));
        let answer = raw_exchange(&server.base, request.as_bytes(), Duration::from_secs(10))
            .expect("answered without the body");
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("body_too_large"), "{answer}");
    }

    let stalled = "POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n\
                   Content-Length: 1000\r\n\r\n0123456789";
    let answer = raw_exchange(&server.base, stalled.as_bytes(), Duration::from_secs(10))
        .expect("answered although the body stalled");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert_healthy(&server);
}

/// DNS rebinding: a loopback server answers requests naming it as localhost or by address
/// (and names allowed with --allowed-host), and refuses every other name before doing
/// anything.
#[test]
fn requests_naming_another_host_are_refused() {
    let s = shared();
    let server = Running::start(
        ServerConfig {
            allowed_hosts: vec!["photos.home.arpa".into()],
            ..ServerConfig::default()
        },
        s.engine.clone(),
    );
    let get = |host: &str| {
        let request =
            format!("GET /api/stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw_exchange(&server.base, request.as_bytes(), Duration::from_secs(10)).unwrap()
    };
    for host in [
        "localhost:7878",
        "127.0.0.1",
        "[::1]:7878",
        "photos.home.arpa",
    ] {
        let answer = get(host);
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    for host in [
        "rebind.evil.example",
        "rebind.evil.example:7878",
        "localhost.evil.example",
    ] {
        let answer = get(host);
        assert!(answer.starts_with("HTTP/1.1 421"), "{host}: {answer}");
        assert!(answer.contains("unknown_host"), "{host}: {answer}");
        assert!(!answer.contains("\"items\""), "{host}: {answer}");
    }
}

/// Made-up HTTP methods all count as one metrics label: /metrics cannot be grown by clients.
#[test]
fn made_up_methods_do_not_grow_the_metrics() {
    let server = &shared().read_only;
    for i in 0..20 {
        let request = format!(
            "METHOD{i} /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        raw_exchange(&server.base, request.as_bytes(), Duration::from_secs(10)).unwrap();
    }
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!metrics.contains("METHOD"), "made-up methods became labels");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}

#[test]
fn a_token_no_request_could_present_is_refused_at_start() {
    for token in ["", " secret", "secret\n"] {
        let config = ServerConfig {
            token: Some(token.into()),
            ..ServerConfig::default()
        };
        let refused = lookalike::server::AppState::new(config, shared().engine.clone())
            .err()
            .expect("refused");
        assert!(
            refused.to_string().contains("the token is empty"),
            "{refused}"
        );
    }
}

/// An upload deleted is forgotten with its file (the catalog's file count does not grow with
/// every upload and delete), and an indexed file swapped for a symlink to another file is not
/// served: neither as an original nor as a thumbnail.
#[test]
fn deleted_uploads_are_forgotten_and_swapped_files_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let kept = photos.join("coffee.png");
    let swapped = photos.join("chelsea.png");
    std::fs::copy(photo("skimage/coffee.png"), &kept).unwrap();
    std::fs::copy(photo("skimage/chelsea.png"), &swapped).unwrap();
    let engine = open_engine(&dir.path().join("db"));
    engine
        .index_paths(std::slice::from_ref(&photos), &Default::default())
        .unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let server = Running::start(writable(TOKEN, &root), engine.clone());
    let files = || get_json(&server, "/api/stats")["files"].as_u64().unwrap();
    assert_eq!(files(), 2);
    let uploaded = add_item(&server, &photo("sklearn/flower.jpg"));
    assert_eq!(files(), 3);
    remove_item(&server, uploaded["id"].as_i64().unwrap());
    assert_eq!(files(), 2, "the deleted upload's file row is gone too");

    let id_of = |path: &Path| {
        engine.indexed_items(path).unwrap().expect("indexed")[0]
            .0
            .id
    };
    let (kept_id, swapped_id) = (id_of(&kept), id_of(&swapped));
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "not for the network").unwrap();
    std::fs::remove_file(&swapped).unwrap();
    std::os::unix::fs::symlink(&secret, &swapped).unwrap();
    for route in ["original", "thumbnail"] {
        let url = server.url(&format!("/api/items/{swapped_id}/{route}"));
        let body = assert_error(client().get(url).send().unwrap(), 409, "file_changed");
        assert!(!body.to_string().contains("not for the network"));
        let url = server.url(&format!("/api/items/{kept_id}/{route}"));
        assert_eq!(client().get(url).send().unwrap().status(), StatusCode::OK);
    }
}
