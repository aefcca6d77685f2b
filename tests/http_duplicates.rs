//! The duplicates routes over real TCP, on real photos: a folder holding chelsea.png, an
//! identical copy of it and a copy at half size (plus an identical pair of coffee.png and
//! unrelated photos) is listed as groups with the original as keeper; "not duplicates" and
//! the actions need the token, and change what the next listing shows.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::server::{writable, Running};
use common::{model_dir, photo};
use lookalike::engine::{Engine, EngineOptions};
use lookalike::server::ServerConfig;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{json, Value};

const TOKEN: &str = "dup-token-7c21";

/// JSON requests to a running server.
trait Requests {
    fn get(&self, path: &str) -> Value;
    fn post(&self, path: &str, body: Value) -> RequestBuilder;
}

impl Requests for Running {
    fn get(&self, path: &str) -> Value {
        let response = client().get(self.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().unwrap()
    }

    fn post(&self, path: &str, body: Value) -> RequestBuilder {
        client().post(self.url(path)).json(&body)
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// Asserts a JSON error with the given status and code.
#[track_caller]
fn assert_error(response: Response, status: u16, code: &str) {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);
}

#[track_caller]
fn ok(response: Response) -> Value {
    let status = response.status();
    let body: Value = response.json().unwrap();
    assert_eq!(status, 200, "body: {body}");
    body
}

fn copy_to(from: &Path, to: &Path, age_days: u64) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
    set_age(to, age_days);
    to.canonicalize().unwrap()
}

fn set_age(path: &Path, days: u64) {
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn str_of(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The id of the member at `path` in `groups`.
fn id_of(groups: &Value, path: &Path) -> i64 {
    groups
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["members"].as_array().unwrap())
        .find(|m| m["path"] == str_of(path))
        .unwrap_or_else(|| panic!("{} in no group: {groups}", path.display()))["id"]
        .as_i64()
        .unwrap()
}

fn member_paths(group: &Value) -> Vec<&str> {
    group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect()
}

#[test]
fn duplicate_groups_not_duplicates_and_actions_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    // chelsea.png, the oldest, an identical copy of it, and the same photo at half size.
    let original = copy_to(
        &photo("skimage/chelsea.png"),
        &photos.join("a/chelsea.png"),
        30,
    );
    let copy = copy_to(&original, &photos.join("b/chelsea copy.png"), 1);
    let small = photos.join("c/chelsea-small.jpg");
    std::fs::create_dir_all(small.parent().unwrap()).unwrap();
    let full = image::open(&original).unwrap();
    let (width, height) = (full.width() / 2, full.height() / 2);
    full.resize_exact(width, height, image::imageops::FilterType::Triangle)
        .to_rgb8()
        .save(&small)
        .unwrap();
    let small = small.canonicalize().unwrap();
    // An identical pair of coffee.png, and photos that are nobody's duplicate.
    let coffee = copy_to(
        &photo("skimage/coffee.png"),
        &photos.join("d/coffee.png"),
        30,
    );
    let coffee_copy = copy_to(&coffee, &photos.join("e/coffee.png"), 2);
    for name in ["astronaut.png", "rocket.jpg", "horse.png", "camera.png"] {
        copy_to(
            &photo(&format!("skimage/{name}")),
            &photos.join("f").join(name),
            5,
        );
    }

    let db = dir.path().join("db");
    let engine = Arc::new(
        Engine::open(&EngineOptions::new(db.clone(), model_dir()))
            .expect("open the engine (is the model fetched?)"),
    );
    let report = engine
        .index_paths(std::slice::from_ref(&photos), &Default::default())
        .unwrap();
    assert_eq!(report.added, 9, "{report:?}");
    let writable_root = dir.path().join("root");
    std::fs::create_dir_all(&writable_root).unwrap();
    let config = writable(TOKEN, &writable_root);
    let server = Running::start(config.clone(), engine.clone());

    // The listing scans first: every image the first time, none the second.
    let listed = server.get("/api/duplicates");
    assert_eq!(listed["scan"]["scanned"], 9, "{listed}");
    assert_eq!(listed["scan"]["from_scratch"], true);
    let groups = &listed["groups"];
    assert_eq!(groups.as_array().unwrap().len(), 2, "{listed}");
    // The largest first: chelsea's three, the original as keeper (the copy has its pixels and
    // bytes but is younger; the small one has a quarter of its pixels).
    let chelsea = &groups[0];
    assert_eq!(chelsea["tier"], "near");
    assert_eq!(
        member_paths(chelsea),
        [str_of(&original), str_of(&copy), str_of(&small)],
        "{chelsea}"
    );
    let keeper = &chelsea["members"][0];
    assert_eq!(keeper["keeper"], true);
    assert_eq!(keeper["tier"], "exact");
    assert_eq!(keeper["name"], "chelsea.png");
    assert_eq!(keeper["format"], "png");
    assert_eq!(keeper["reference"], false);
    assert_eq!(keeper["bytes"], std::fs::metadata(&original).unwrap().len());
    let mtime = std::fs::metadata(&original)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(keeper["modified"], mtime);
    assert_eq!(keeper["width"], full.width());
    let (original_id, copy_id, small_id) = (
        id_of(groups, &original),
        id_of(groups, &copy),
        id_of(groups, &small),
    );
    assert_eq!(
        keeper["thumbnail"],
        format!("/api/items/{original_id}/thumbnail")
    );
    assert_eq!(chelsea["members"][1]["keeper"], false);
    assert_eq!(chelsea["members"][1]["tier"], "exact");
    assert_eq!(chelsea["members"][2]["tier"], "near");
    assert_eq!(chelsea["members"][2]["width"], width);
    assert_eq!(groups[1]["tier"], "exact");
    assert_eq!(
        member_paths(&groups[1]),
        [str_of(&coffee), str_of(&coffee_copy)]
    );
    let again = server.get("/api/duplicates");
    assert_eq!(again["scan"]["scanned"], 0, "{again}");
    assert_eq!(again["scan"]["from_scratch"], false);
    assert_eq!(again["groups"], listed["groups"]);

    // `under` keeps the images under the folders given (one, or several).
    let under = |folders: &[&Path]| {
        let query: Vec<String> = folders
            .iter()
            .map(|f| format!("under={}", str_of(f).replace(' ', "%20")))
            .collect();
        server.get(&format!("/api/duplicates?{}", query.join("&")))["groups"].clone()
    };
    assert_eq!(under(&[&photos]), listed["groups"]);
    assert_eq!(under(&[&photos.join("a")]), json!([]));
    let two = under(&[&photos.join("a"), &photos.join("b")]);
    assert_eq!(two.as_array().unwrap().len(), 1, "{two}");
    assert_eq!(member_paths(&two[0]), [str_of(&original), str_of(&copy)]);
    assert_eq!(two[0]["tier"], "exact");

    // "Not duplicates" needs the token.
    let all = json!({"ids": [original_id, copy_id, small_id]});
    let missing = server
        .post("/api/duplicates/distinct", all.clone())
        .send()
        .unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_error(missing, 401, "unauthorized");
    let wrong = server
        .post("/api/duplicates/distinct", all.clone())
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_error(wrong, 401, "unauthorized");
    let distinct = |body: Value| {
        server
            .post("/api/duplicates/distinct", body)
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
    };
    assert_error(distinct(json!({"ids": [small_id]})), 400, "too_few_ids");
    assert_error(
        distinct(json!({"ids": [small_id, small_id]})),
        400,
        "too_few_ids",
    );
    assert_error(
        distinct(json!({"ids": [small_id, 999_999]})),
        404,
        "not_found",
    );
    assert_error(distinct(json!({"ids": "all"})), 422, "bad_request");
    // Identical files are copies of one file: nothing to record.
    assert_error(
        distinct(json!({"ids": [original_id, copy_id]})),
        409,
        "identical_files",
    );
    assert_eq!(server.get("/api/duplicates")["groups"], listed["groups"]);
    // The half-size copy is declared another photo: one pair of contents (the identical files
    // are one content).
    assert_eq!(ok(distinct(all.clone())), json!({"new_pairs": 1}));
    assert_eq!(ok(distinct(all)), json!({"new_pairs": 0}));
    let after = server.get("/api/duplicates");
    let groups = after["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{after}");
    assert_eq!(member_paths(&groups[0]), [str_of(&original), str_of(&copy)]);
    assert_eq!(groups[0]["tier"], "exact");
    assert!(!after.to_string().contains("chelsea-small"), "{after}");

    // Applying: the token, then a keeper and drops of one current group.
    let apply = |body: Value| {
        server
            .post("/api/duplicates/apply", body)
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
    };
    let move_copy = json!({"keeper": original_id, "drop": [copy_id], "action": "move"});
    assert_error(
        server
            .post("/api/duplicates/apply", move_copy.clone())
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    let coffee_id = id_of(&after["groups"], &coffee);
    let coffee_copy_id = id_of(&after["groups"], &coffee_copy);
    assert_error(
        apply(json!({"keeper": original_id, "drop": [], "action": "move"})),
        400,
        "nothing_to_drop",
    );
    assert_error(
        apply(json!({"keeper": original_id, "drop": [original_id, copy_id], "action": "move"})),
        400,
        "keeper_dropped",
    );
    assert_error(
        apply(json!({"keeper": small_id, "drop": [original_id], "action": "move"})),
        409,
        "not_in_a_group",
    );
    assert_error(
        apply(json!({"keeper": original_id, "drop": [coffee_id], "action": "move"})),
        409,
        "not_in_group",
    );
    assert_error(
        apply(json!({"keeper": 999_999, "drop": [copy_id], "action": "move"})),
        404,
        "not_found",
    );
    assert_error(
        apply(json!({"keeper": original_id, "drop": [copy_id], "action": "shred"})),
        422,
        "bad_request",
    );
    assert!(copy.is_file(), "a refused request moved nothing");

    // Move: the copy goes under DB/moved at its absolute path, and leaves the index.
    let moved = ok(apply(move_copy));
    let db = db.canonicalize().unwrap();
    let destination = db.join("moved").join(copy.strip_prefix("/").unwrap());
    assert_eq!(
        moved["done"],
        json!([{"op": "move", "path": str_of(&copy), "to": str_of(&destination)}]),
        "{moved}"
    );
    assert_eq!(moved["skipped"], json!([]));
    assert_eq!(moved["removed"], 1);
    assert!(!copy.exists() && destination.is_file());
    assert_eq!(
        std::fs::read(&destination).unwrap(),
        std::fs::read(&original).unwrap()
    );
    let journal = PathBuf::from(moved["journal"].as_str().unwrap());
    assert_eq!(journal.parent().unwrap(), db.join("journals"));
    assert!(std::fs::read_to_string(&journal)
        .unwrap()
        .contains("\"op\":\"move\""));
    let item = client()
        .get(server.url(&format!("/api/items/{copy_id}/thumbnail")))
        .send()
        .unwrap();
    assert_error(item, 404, "not_found");
    let groups = server.get("/api/duplicates")["groups"].clone();
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    assert!(!groups.to_string().contains("chelsea"), "{groups}");

    // Delete, with the younger coffee.png chosen as keeper: the older one goes to the trash.
    let deleted = ok(apply(
        json!({"keeper": coffee_copy_id, "drop": [coffee_id], "action": "delete"}),
    ));
    let trashed = db.join("trash").join(coffee.strip_prefix("/").unwrap());
    assert_eq!(deleted["done"][0]["to"], str_of(&trashed), "{deleted}");
    assert!(!coffee.exists() && trashed.is_file() && coffee_copy.is_file());
    assert_ne!(deleted["journal"], moved["journal"]);
    assert_eq!(server.get("/api/duplicates")["groups"], json!([]));

    // A server without a token (whose index `lookalike serve` opens read-only) lists what
    // the catalog knows, without a scan.
    let read_only = {
        let mut options = EngineOptions::new(db.clone(), model_dir());
        options.read_only = true;
        Arc::new(Engine::open(&options).unwrap())
    };
    let reader = Running::start(
        ServerConfig {
            token: None,
            ..config
        },
        read_only,
    );
    // Identical files are known from the catalog alone: index a new pair for it to see.
    let pair = copy_to(&photo("skimage/horse.png"), &photos.join("g/horse.png"), 3);
    engine
        .index_paths(std::slice::from_ref(&pair), &Default::default())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let listed = reader.get("/api/duplicates");
        if !listed["groups"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break listed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(listed["scan"], Value::Null, "{listed}");
    assert_eq!(listed["groups"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["groups"][0]["tier"], "exact");
    let refused = reader
        .post("/api/duplicates/distinct", json!({"ids": [1, 2]}))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_error(refused, 403, "writes_disabled");
}

#[test]
fn the_duplicates_routes_are_documented() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(
        Engine::open(&EngineOptions::new(dir.path().join("db"), model_dir()))
            .expect("open the engine (is the model fetched?)"),
    );
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let config = writable(TOKEN, &root);
    let server = Running::start(config, engine);
    let spec = server.get("/api/openapi.json");
    let paths = &spec["paths"];
    assert_eq!(
        paths["/api/duplicates"]["get"]["tags"],
        json!(["duplicates"])
    );
    let under = &paths["/api/duplicates"]["get"]["parameters"][0];
    assert_eq!(under["name"], "under");
    assert_eq!(under["required"], false);
    for route in ["/api/duplicates/distinct", "/api/duplicates/apply"] {
        let post = &paths[route]["post"];
        assert_eq!(post["security"], json!([{"bearer": []}]), "{route}");
        assert!(post["responses"]["401"].is_object(), "{route}");
    }
    for schema in [
        "DuplicatesResponse",
        "DuplicateMember",
        "ApplyRequest",
        "ApplyResponse",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    // Empty collection: nothing to group, and the scan says so.
    let listed = server.get("/api/duplicates");
    assert_eq!(listed["groups"], json!([]));
    assert_eq!(listed["scan"]["scanned"], 0);
}
