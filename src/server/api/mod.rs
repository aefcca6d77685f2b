//! The routes, their request/response types, and the OpenAPI description generated from them.
//!
//! Each handler carries a `#[utoipa::path]` and is registered through `utoipa_axum::routes!`,
//! which both mounts it and documents it: the description cannot drift from the routes.

mod admin;
mod duplicates;
mod items;
mod search;

use std::path::Path;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::http::header;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{json_errors, ApiError, ErrorBody};
use super::state::AppState;
use super::{body, metrics, ui};
use crate::engine::Engine;
use crate::featurizer::ImageQuery;
use crate::index::{Hit, ItemRecord, MediaKind, Region, SearchMode};
use crate::verify::{LocalFeatures, VerifyOptions};

/// Most results one request may ask for; the page offers up to 96.
const MAX_K: usize = 200;
/// Most results one search may verify: each costs a decode of its file.
const MAX_VERIFY: usize = 50;
const DEFAULT_K: usize = 24;

/// Builds the whole application: JSON API, OpenAPI, metrics, health and the embedded page.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(search::search_upload))
        .routes(routes!(search::similar))
        .routes(routes!(items::add_item))
        .routes(routes!(items::get_item, items::delete_item))
        .routes(routes!(items::original))
        .routes(routes!(items::thumbnail))
        .routes(routes!(duplicates::list_duplicates))
        .routes(routes!(duplicates::mark_not_duplicates))
        .routes(routes!(duplicates::apply_duplicates))
        .routes(routes!(admin::index))
        .routes(routes!(admin::stats))
        .routes(routes!(admin::healthz))
        .routes(routes!(admin::metrics))
        .split_for_parts();
    let spec = openapi.to_pretty_json().unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot serialise the OpenAPI description");
        "{}".to_string()
    });
    api.route(
        "/api/openapi.json",
        get(|| async move { ([(header::CONTENT_TYPE, "application/json")], spec) }),
    )
    .merge(ui::routes())
    .fallback(|| async { ApiError::not_found("no such route") })
    .layer(middleware::from_fn_with_state(state.clone(), body::buffer))
    .layer(middleware::from_fn(json_errors))
    .layer(middleware::from_fn_with_state(
        state.clone(),
        metrics::track,
    ))
    .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
    .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lookalike",
        description = "Content-based image retrieval: find the images of a collection that look \
                       most like a given image. Routes that write need `Authorization: Bearer \
                       <token>`. Every error is `{\"error\": {\"code\", \"message\"}}`."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "search", description = "Find similar images"),
        (name = "items", description = "Indexed images"),
        (name = "duplicates", description = "Groups of duplicate images, and tidying them up"),
        (name = "admin", description = "Indexing, statistics and health"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `Query` whose failures are our JSON errors.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Json` whose failures are our JSON errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// How many results (1 to 200, default 24).
    #[param(minimum = 1, maximum = 200, default = 24)]
    k: Option<usize>,
    /// `true`: every matching item, so a video may appear once per matching frame. Default
    /// `false`: one result per file (a video by its best frame), `k` distinct files.
    #[param(default = false)]
    frames: Option<bool>,
    /// Re-rank the top N results (0 to 50, default 0) by spatial verification: local
    /// features matched between the query and each result, counted when one transform
    /// explains them. Finds an object photographed within a scene; costs a decode of each
    /// verified result's file (about 20 ms of CPU each).
    #[param(minimum = 0, maximum = 50, default = 0)]
    verify: Option<usize>,
}

impl SearchQuery {
    fn k(&self) -> Result<usize, ApiError> {
        match self.k.unwrap_or(DEFAULT_K) {
            k @ 1..=MAX_K => Ok(k),
            _ => Err(ApiError::bad_request(
                "invalid_k",
                format!("k must be 1 to {MAX_K}"),
            )),
        }
    }

    fn verify(&self) -> Result<VerifyOptions, ApiError> {
        match self.verify.unwrap_or(0) {
            depth @ 0..=MAX_VERIFY => Ok(VerifyOptions::top(depth)),
            _ => Err(ApiError::bad_request(
                "invalid_verify",
                format!("verify must be 0 to {MAX_VERIFY}"),
            )),
        }
    }

    /// Searches with `image` as asked: grouped by file unless `frames=true`, the top
    /// `verify` re-ranked against the query image's local features when given.
    fn run(
        &self,
        engine: &Engine,
        image: &ImageQuery,
        k: usize,
        verify: VerifyOptions,
        query: Option<&LocalFeatures>,
    ) -> crate::Result<Vec<Hit>> {
        let frames = self.frames.unwrap_or(false);
        engine.search_image(image, k, SearchMode::Approximate, frames, verify, query)
    }
}

/// Item ids are numbers; anything else is a client mistake (400), not an unknown item (404).
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            ApiError::bad_request("invalid_id", "item id must be a non-negative integer")
        })
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// One search result.
#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    id: i64,
    /// Cosine similarity, higher is more similar (1 = same image).
    score: f32,
    /// Path of the file on the server.
    path: String,
    /// File name, for display.
    name: String,
    /// For a video frame, its time in seconds.
    t: Option<f64>,
    /// `image`, or `video` for a frame of a video.
    kind: String,
    /// True for a frame of a video: its thumbnail is the frame at `t`, its original the
    /// whole video (play it from `t`).
    video: bool,
    /// URL of a JPEG thumbnail.
    thumbnail: String,
    /// URL of the original file.
    original: String,
    /// With `verify`: the feature matches with the query that one transform explains (the
    /// result counts as verified from 18).
    #[serde(skip_serializing_if = "Option::is_none")]
    inliers: Option<usize>,
    /// Where in the result the query was found (fractions of its width and height), when a
    /// region of it matched better than the whole.
    #[serde(rename = "box", skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

impl From<Hit> for SearchResult {
    fn from(hit: Hit) -> Self {
        SearchResult {
            name: file_name(&hit.path),
            thumbnail: format!("/api/items/{}/thumbnail", hit.id),
            original: format!("/api/items/{}/original", hit.id),
            id: hit.id,
            score: hit.score,
            path: hit.path,
            t: hit.t,
            kind: hit.kind.as_str().to_string(),
            video: hit.kind == MediaKind::Video,
            inliers: hit.inliers,
            region: hit.region,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    results: Vec<SearchResult>,
    /// Server-side time for the whole search, in milliseconds.
    took_ms: f64,
}

impl SearchResponse {
    fn new(hits: Vec<Hit>, started: Instant) -> Self {
        SearchResponse {
            results: hits.into_iter().map(SearchResult::from).collect(),
            took_ms: (started.elapsed().as_secs_f64() * 1e5).round() / 100.0,
        }
    }
}

/// An indexed item's metadata.
#[derive(Serialize, ToSchema)]
pub struct ItemResponse {
    id: i64,
    path: String,
    name: String,
    t: Option<f64>,
    width: u32,
    height: u32,
    kind: String,
    /// True for a frame of a video.
    video: bool,
    thumbnail: String,
    original: String,
}

impl From<ItemRecord> for ItemResponse {
    fn from(item: ItemRecord) -> Self {
        let id = item.id;
        ItemResponse {
            name: file_name(&item.path),
            thumbnail: format!("/api/items/{id}/thumbnail"),
            original: format!("/api/items/{id}/original"),
            id,
            path: item.path,
            t: item.t,
            width: item.width,
            height: item.height,
            kind: item.kind.as_str().to_string(),
            video: item.kind == MediaKind::Video,
        }
    }
}
