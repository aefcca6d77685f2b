//! Search by an uploaded image and by an indexed item.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::Json;

use super::{parse_id, ApiQuery, SearchQuery, SearchResponse};
use crate::engine::Engine;
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
    let k = query.k()?;
    let verify = query.verify()?;
    let started = Instant::now();
    let hits = state
        .inference("search", move |engine| {
            let (_, image) = engine.featurizer().query_bytes(&bytes)?;
            let features = match verify.depth {
                0 => None,
                _ => Some(engine.local_features_of_bytes(&bytes)?),
            };
            query.run(engine, &image, k, verify, features.as_ref())
        })
        .await?;
    Ok(Json(SearchResponse::new(hits, started)))
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
    let k = query.k()?;
    let verify = query.verify()?;
    let started = Instant::now();
    let search = move |engine: &Engine| {
        let vector = engine.item_vector(id)?;
        let features = match verify.depth {
            0 => None,
            _ => engine.item_local_features(id)?,
        };
        query.run(
            engine,
            &ImageQuery::from(vector),
            k,
            verify,
            features.as_ref(),
        )
    };
    // Verification decodes files: it waits for an inference slot like an upload does.
    let hits = if verify.depth > 0 {
        state.inference("similar", search).await?
    } else {
        state.blocking(search).await?
    };
    Ok(Json(SearchResponse::new(hits, started)))
}
