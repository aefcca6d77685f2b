//! Search by an uploaded image and by an indexed item.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiQuery, SearchQuery, SearchResponse};
use crate::engine::{Engine, SearchOptions};
use crate::featurizer::ImageQuery;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::state::AppState;
use crate::server::upload::{ImageForm, ImageUpload};

/// Search with an image: multipart field `image`, or the raw image as the body.
#[utoipa::path(
    post,
    path = "/api/search",
    tag = "search",
    params(SearchQuery),
    request_body(
        description = "The query image",
        content(
            (ImageForm = "multipart/form-data"),
            (Vec<u8> = "image/*"),
        )
    ),
    responses(
        (status = 200, description = "The most similar files, best first: one result per \
                                      file (a video by its best frame) unless frames=true",
         body = SearchResponse),
        (status = 400, description = "Empty body, bad k, bad verify or bad form", body = ErrorBody),
        (status = 403, description = "Sent by another site's page", body = ErrorBody),
        (status = 413, description = "Body or image dimensions over the limits", body = ErrorBody),
        (status = 415, description = "Not an image format the server reads", body = ErrorBody),
        (status = 422, description = "A corrupt image", body = ErrorBody),
        (status = 503, description = "Every inference slot stayed busy", body = ErrorBody),
    )
)]
pub async fn search_upload(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
    ImageUpload(bytes): ImageUpload,
) -> Result<Json<SearchResponse>, ApiError> {
    let checked = query.check()?;
    let response = state
        .inference("search", move |engine| {
            let (_, image) = engine.featurizer().query_bytes(&bytes)?;
            let features = match checked.verify.depth {
                0 => None,
                _ => Some(engine.local_features_of_bytes(&bytes)?),
            };
            query.run(engine, &checked, &image, features.as_ref())
        })
        .await?;
    Ok(Json(response))
}

/// Search by words (`q`): the files whose ImageNet labels the words name, through WordNet
/// ("dog" reaches every breed), best first; the filters narrow it.
#[utoipa::path(
    get,
    path = "/api/search",
    tag = "search",
    params(SearchQuery),
    responses(
        (status = 200, description = "The files the words describe best (score: the summed \
                                      probability of their labels under the words, the \
                                      lowest word's), one per file unless frames=true; empty \
                                      when a word names no ImageNet class (see \
                                      `unknown_words`)",
         body = SearchResponse),
        (status = 400, description = "No q, or bad k, min_score, taken or near",
         body = ErrorBody),
    )
)]
pub async fn search_words(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResponse>, ApiError> {
    let checked = query.check()?;
    let Some(words) = query.q.clone().filter(|q| !q.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "missing_q",
            "give q (words), or POST an image to search by example",
        ));
    };
    let response = state
        .blocking(move |engine| {
            let started = Instant::now();
            let within = engine.matching_items(&checked.filter)?;
            let options = SearchOptions {
                frames: query.frames.unwrap_or(false),
                within: within.as_ref(),
                ..SearchOptions::top(checked.k)
            };
            let (parsed, hits) = engine.search_words(&words, checked.min_score, &options)?;
            SearchResponse::new(engine, hits, Some(parsed), started)
        })
        .await?;
    Ok(Json(response))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestQuery {
    /// The start of a word ("gold", "hot d").
    prefix: String,
    /// How many suggestions (1 to 50, default 10).
    #[param(minimum = 1, maximum = 50, default = 10)]
    limit: Option<usize>,
}

/// A word the vocabulary knows.
#[derive(Serialize, ToSchema)]
pub struct Suggestion {
    word: String,
    /// How many ImageNet classes it names (1 for a class's own name, 118 for "dog").
    classes: usize,
}

/// Words for a search box: the vocabulary's words (ImageNet class names and the WordNet
/// words above them) that start with `prefix`, the broadest first.
#[utoipa::path(
    get,
    path = "/api/words",
    tag = "search",
    params(SuggestQuery),
    responses(
        (status = 200, description = "Matching words, the broadest first", body = Vec<Suggestion>),
        (status = 400, description = "Bad limit", body = ErrorBody),
    )
)]
pub async fn suggest_words(
    ApiQuery(query): ApiQuery<SuggestQuery>,
) -> Result<Json<Vec<Suggestion>>, ApiError> {
    let limit = match query.limit.unwrap_or(10) {
        n @ 1..=50 => n,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_limit",
                "limit must be 1 to 50",
            ))
        }
    };
    let suggestions = crate::words::vocabulary()
        .suggest(&query.prefix, limit)
        .into_iter()
        .map(|(word, classes)| Suggestion { word, classes })
        .collect();
    Ok(Json(suggestions))
}

/// Search with an item that is already indexed (its stored vector: no inference).
#[utoipa::path(
    get,
    path = "/api/items/{id}/similar",
    tag = "search",
    params(("id" = i64, Path, description = "Item id"), SearchQuery),
    responses(
        (status = 200, description = "The most similar files, best first (the item itself \
                                      first), one per file unless frames=true; with verify, \
                                      a video frame or an image whose file is gone searches \
                                      unverified",
         body = SearchResponse),
        (status = 400, description = "Non-numeric id, bad k or bad verify", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 503, description = "With verify: every inference slot stayed busy",
         body = ErrorBody),
    )
)]
pub async fn similar(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResponse>, ApiError> {
    let id = parse_id(&id)?;
    let checked = query.check()?;
    let verifies = checked.verify.depth > 0;
    let search = move |engine: &Engine| {
        let vector = engine.item_vector(id)?;
        let features = match checked.verify.depth {
            0 => None,
            _ => engine.item_local_features(id)?,
        };
        query.run(
            engine,
            &checked,
            &ImageQuery::from(vector),
            features.as_ref(),
        )
    };
    // Verification decodes files: it waits for an inference slot like an upload does.
    let response = if verifies {
        state.inference("similar", search).await?
    } else {
        state.blocking(search).await?
    };
    Ok(Json(response))
}
