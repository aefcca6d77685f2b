//! Indexing server-side folders, statistics, health and metrics.

use std::path::PathBuf;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::ingest::IngestOptions;
use crate::server::auth::WriteAccess;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::state::AppState;

#[derive(Deserialize, ToSchema)]
pub struct IndexRequest {
    /// Absolute server-side path of a file or folder inside one of the server's roots.
    #[schema(example = "/srv/photos/2024")]
    path: String,
}

#[derive(Serialize, ToSchema)]
pub struct IndexResponse {
    added: usize,
    unchanged: usize,
    removed: usize,
    failed: Vec<FailedFile>,
}

#[derive(Serialize, ToSchema)]
pub struct FailedFile {
    path: String,
    error: String,
}

/// Index (incrementally) a server-side folder or file. Runs to completion before answering.
#[utoipa::path(
    post,
    path = "/api/index",
    tag = "admin",
    security(("bearer" = [])),
    request_body = IndexRequest,
    responses(
        (status = 200, description = "What changed", body = IndexResponse),
        (status = 400, description = "Not an absolute path, or bad JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this client lately; Retry-After says for how long", body = ErrorBody),
        (status = 403, description = "Writes disabled, path outside the roots, or sent by another site's page", body = ErrorBody),
        (status = 404, description = "Path does not exist", body = ErrorBody),
        (status = 409, description = "Another index job is running", body = ErrorBody),
    )
)]
pub async fn index(
    _access: WriteAccess,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<IndexRequest>,
) -> Result<Json<IndexResponse>, ApiError> {
    let path = state.roots().resolve(&request.path)?;
    let Ok(_job) = state.index_job().try_lock() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "index_busy",
            "another index job is running; retry when it is done",
        ));
    };
    tracing::info!(path = %path.display(), "indexing on request");
    let report = state
        .blocking(move |engine| engine.index_paths(&[path], &IngestOptions::default()))
        .await?;
    Ok(Json(IndexResponse {
        added: report.added,
        unchanged: report.unchanged,
        removed: report.removed,
        failed: report
            .failed
            .into_iter()
            .map(|(path, error): (PathBuf, String)| FailedFile {
                path: path.display().to_string(),
                error,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct StatsResponse {
    /// Searchable items (images and video frames).
    items: u64,
    /// Files they come from.
    files: u64,
    /// Image files.
    images: u64,
    /// Video files.
    videos: u64,
    /// The embedding model.
    model: String,
    /// Vector dimension.
    dim: usize,
}

/// Collection statistics.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "admin",
    responses((status = 200, description = "Statistics", body = StatsResponse))
)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<StatsResponse>, ApiError> {
    let stats = state.blocking(|engine| engine.stats()).await?;
    Ok(Json(StatsResponse {
        items: stats.items,
        files: stats.files,
        images: stats.images,
        videos: stats.videos,
        model: stats.model,
        dim: stats.dim,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

/// Liveness: answers as long as the server runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "admin",
    responses((status = 200, description = "The server is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Prometheus metrics: requests by route and status, latency histograms, inference time,
/// inference queue, index size.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "admin",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let stats = state.blocking(|engine| engine.stats()).await?;
    let metrics = state.metrics();
    metrics
        .items
        .set(i64::try_from(stats.items).unwrap_or(i64::MAX));
    let text = metrics.render().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text))
}
