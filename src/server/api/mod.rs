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
use super::{body, cross_site, host, metrics, ui};
use crate::engine::{Engine, SearchOptions, MIN_WORD_SCORE};
use crate::featurizer::ImageQuery;
use crate::image::PhotoFacts;
use crate::index::{Filter, Hit, ItemRecord, MediaKind, Near, Region, TakenRange};
use crate::model::Label;
use crate::verify::{LocalFeatures, VerifyOptions};
use crate::words::WordQuery;

/// Most results one request may ask for; the page offers up to 96.
const MAX_K: usize = 200;
/// Most results one search may verify: each costs a decode of its file.
const MAX_VERIFY: usize = 50;
const DEFAULT_K: usize = 24;

/// Builds the whole application: JSON API, OpenAPI, metrics, health and the embedded page.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(search::search_upload, search::search_words))
        .routes(routes!(search::suggest_words))
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
    // Inside the body's buffering: a refusal while the client still sends breaks the
    // connection (see `body`).
    .layer(middleware::from_fn(cross_site::check))
    .layer(middleware::from_fn_with_state(state.clone(), body::buffer))
    .layer(middleware::from_fn(json_errors))
    .layer(middleware::from_fn_with_state(
        state.clone(),
        metrics::track,
    ))
    .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
    .layer(middleware::from_fn_with_state(state.clone(), host::check))
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
    /// Words the results must show, through their ImageNet labels and WordNet ("dog" finds
    /// every breed; "bird", "vehicle", "golden retriever"). `GET /api/search` ranks by them;
    /// with an image query they filter. A word that names no class leaves no result.
    q: Option<String>,
    /// How sure the labels must be for a word to describe a result: the summed probability
    /// of its labels under the word (0 to 1, default 0.2).
    #[param(minimum = 0.0, maximum = 1.0, default = 0.2)]
    min_score: Option<f32>,
    /// Only photos taken in this range (their EXIF date): `2019..2021`, `2020-06`, `..2018`.
    taken: Option<String>,
    /// Only photos whose camera make or model contains this text (case-insensitive).
    camera: Option<String>,
    /// Only photos taken within KM kilometres of a place: `LAT,LON,KM`.
    near: Option<String>,
    /// Only files under this folder (a path as the server indexed it).
    under: Option<String>,
}

/// A search request's parameters, checked before any work starts.
pub struct Checked {
    pub k: usize,
    pub verify: VerifyOptions,
    pub filter: Filter,
    pub min_score: f32,
}

impl SearchQuery {
    /// The parameters, checked: a bad one is a 400 before any work.
    fn check(&self) -> Result<Checked, ApiError> {
        Ok(Checked {
            k: self.k()?,
            verify: self.verify()?,
            filter: self.filter()?,
            min_score: self.min_score()?,
        })
    }

    fn min_score(&self) -> Result<f32, ApiError> {
        match self.min_score.unwrap_or(MIN_WORD_SCORE) {
            p if (0.0..=1.0).contains(&p) => Ok(p),
            _ => Err(ApiError::bad_request(
                "invalid_min_score",
                "min_score must be 0 to 1",
            )),
        }
    }

    /// The filter on facts and folders the parameters ask for (words aside).
    fn filter(&self) -> Result<Filter, ApiError> {
        let taken = self
            .taken
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(str::parse::<TakenRange>)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_taken", e))?;
        let near = self
            .near
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(str::parse::<Near>)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_near", e))?;
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.trim().is_empty());
        Ok(Filter {
            taken,
            camera: nonempty(&self.camera),
            near,
            under: nonempty(&self.under).into_iter().collect(),
            labels: Vec::new(),
        })
    }

    /// The parsed words of `q`, if given.
    fn words(&self) -> Option<WordQuery> {
        self.q
            .as_deref()
            .filter(|q| !q.trim().is_empty())
            .map(|q| crate::words::vocabulary().parse(q))
    }

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
    /// `verify` re-ranked against the query image's local features when given, among the
    /// items the filters and words let through.
    fn run(
        &self,
        engine: &Engine,
        checked: &Checked,
        image: &ImageQuery,
        query: Option<&LocalFeatures>,
    ) -> crate::Result<SearchResponse> {
        let started = Instant::now();
        let words = self.words();
        let mut filter = checked.filter.clone();
        if let Some(words) = &words {
            filter.labels = Engine::word_terms(words, checked.min_score);
        }
        let within = engine.matching_items(&filter)?;
        let options = SearchOptions {
            frames: self.frames.unwrap_or(false),
            verify: checked.verify,
            within: within.as_ref(),
            ..SearchOptions::top(checked.k)
        };
        let hits = engine.search_image(image, &options, query)?;
        SearchResponse::new(engine, hits, words, started)
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
    /// Its most probable ImageNet classes, most probable first (at most 3).
    labels: Vec<LabelResult>,
}

/// An ImageNet class the classifier saw in a result.
#[derive(Serialize, ToSchema)]
pub struct LabelResult {
    class: u16,
    /// The class's WordNet lemmas, e.g. "golden retriever".
    name: &'static str,
    probability: f32,
}

impl From<Label> for LabelResult {
    fn from(label: Label) -> Self {
        LabelResult {
            class: label.class,
            name: label.name(),
            probability: label.probability,
        }
    }
}

/// Labels shown per result.
const LABELS_SHOWN: usize = 3;

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
            labels: Vec::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    results: Vec<SearchResult>,
    /// Server-side time for the whole search, in milliseconds.
    took_ms: f64,
    /// With `q`: the words understood, each with the number of ImageNet classes it names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    words: Vec<WordResult>,
    /// With `q`: words that name no ImageNet class (the answer is then empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unknown_words: Vec<String>,
}

/// A word of a query and how many ImageNet classes it names.
#[derive(Serialize, ToSchema)]
pub struct WordResult {
    word: String,
    classes: usize,
}

impl SearchResponse {
    /// The response for `hits`, each with its labels, and for the words asked, if any.
    fn new(
        engine: &Engine,
        hits: Vec<Hit>,
        words: Option<WordQuery>,
        started: Instant,
    ) -> crate::Result<Self> {
        let ids: Vec<i64> = hits.iter().map(|hit| hit.id).collect();
        let mut labels = engine.labels_of(&ids)?;
        let results = hits
            .into_iter()
            .map(|hit| {
                let shown = labels.remove(&hit.id).unwrap_or_default();
                SearchResult {
                    labels: shown
                        .into_iter()
                        .take(LABELS_SHOWN)
                        .map(LabelResult::from)
                        .collect(),
                    ..SearchResult::from(hit)
                }
            })
            .collect();
        let (words, unknown_words) = match words {
            Some(query) => (
                query
                    .terms
                    .into_iter()
                    .map(|term| WordResult {
                        word: term.word,
                        classes: term.classes.len(),
                    })
                    .collect(),
                query.unknown,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(SearchResponse {
            results,
            took_ms: (started.elapsed().as_secs_f64() * 1e5).round() / 100.0,
            words,
            unknown_words,
        })
    }
}

/// An indexed item's metadata.
#[derive(Serialize, ToSchema)]
pub struct ItemResponse {
    pub id: i64,
    pub path: String,
    name: String,
    t: Option<f64>,
    width: u32,
    height: u32,
    kind: String,
    /// True for a frame of a video.
    video: bool,
    thumbnail: String,
    original: String,
    /// What the file's metadata says (EXIF): `taken`, `camera_make`, `camera_model`,
    /// `latitude`, `longitude`, each when known.
    facts: PhotoFacts,
    /// The camera for display, from `facts`' make and model without repeating the make
    /// ("NIKON D70", not "NIKON CORPORATION NIKON D70").
    camera: Option<String>,
    /// Its most probable ImageNet classes, most probable first.
    labels: Vec<LabelResult>,
}

impl ItemResponse {
    /// The item's record with its facts and labels.
    pub fn of(engine: &Engine, item: ItemRecord) -> crate::Result<ItemResponse> {
        let facts = engine.facts(item.id)?;
        let labels = engine
            .labels_of(&[item.id])?
            .remove(&item.id)
            .unwrap_or_default();
        Ok(ItemResponse {
            camera: facts.camera(),
            facts,
            labels: labels.into_iter().map(LabelResult::from).collect(),
            ..ItemResponse::from(item)
        })
    }
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
            facts: PhotoFacts::default(),
            camera: None,
            labels: Vec::new(),
        }
    }
}
