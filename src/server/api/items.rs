//! One indexed item: metadata, original file, thumbnail; adding and removing items.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use utoipa::ToSchema;

use super::{parse_id, ItemResponse};
use crate::image::{decode_file, sniff, thumbnail_jpeg, Format, Limits, SNIFF_LEN};
use crate::index::{ItemRecord, MediaKind};
use crate::server::auth::WriteAccess;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::state::AppState;
use crate::server::upload::{stored_extension, ImageForm, ImageUpload};
use crate::video::{frame_at, VideoOptions, STILL_TIMEOUT};

/// Longest side of a thumbnail: sharp in a ~200 px grid cell on a 2x screen... almost; small
/// enough to stay ~15 KB.
const THUMB_SIDE: u32 = 320;
const THUMB_QUALITY: u8 = 80;
/// Longest side of the JPEG served for an original that browsers cannot display: a screen's
/// worth (a 4K display), and a bound on the work a click costs for a 100 MP file.
const RENDITION_SIDE: u32 = 4096;
const RENDITION_QUALITY: u8 = 90;
/// The item's record, or 404 naming the id.
async fn lookup(state: &AppState, id: i64) -> Result<ItemRecord, ApiError> {
    state
        .blocking(move |engine| engine.item(id)?.ok_or(crate::Error::UnknownItem(id)))
        .await
}

fn gone() -> ApiError {
    ApiError::not_found("the item's file is no longer on the server")
}

/// The item's file, if it is still the file indexed: the size and modification time the
/// catalog recorded. Anything else (edited since, or swapped for a symlink to another file by
/// someone who can write the folder) is not served: an original or a thumbnail shows what was
/// indexed, never whatever the path leads to now.
async fn indexed_file(item: &ItemRecord) -> Result<PathBuf, ApiError> {
    let path = PathBuf::from(&item.path);
    let metadata = tokio::fs::metadata(&path).await.map_err(|_| gone())?;
    if !metadata.is_file() || crate::ingest::stamp_of(&metadata) != item.stamp {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "file_changed",
            "the item's file changed since it was indexed: index it again to show it",
        ));
    }
    Ok(path)
}

/// An indexed item's metadata.
#[utoipa::path(
    get,
    path = "/api/items/{id}",
    tag = "items",
    params(("id" = i64, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = ItemResponse),
        (status = 400, description = "Non-numeric id", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
    )
)]
pub async fn get_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ItemResponse>, ApiError> {
    let id = parse_id(&id)?;
    let item = lookup(&state, id).await?;
    let response = state
        .blocking(move |engine| ItemResponse::of(engine, item))
        .await?;
    Ok(Json(response))
}

/// The original file, with its content type (`image/*`, or `video/*` for a video: range
/// requests are supported, so a browser can seek in it). A photo in a format browsers do not
/// display (HEIC, TIFF, camera RAW) comes as a JPEG rendition instead.
#[utoipa::path(
    get,
    path = "/api/items/{id}/original",
    tag = "items",
    params(("id" = i64, Path, description = "Item id")),
    responses(
        (status = 200, description = "The file",
         content((Vec<u8> = "image/*"), (Vec<u8> = "video/*"))),
        (status = 206, description = "The requested range of the file (Range header)",
         content((Vec<u8> = "image/*"), (Vec<u8> = "video/*"))),
        (status = 400, description = "Non-numeric id", body = ErrorBody),
        (status = 404, description = "No such item, or its file is gone", body = ErrorBody),
        (status = 409, description = "The file changed since it was indexed", body = ErrorBody),
        (status = 422, description = "A photo served as a JPEG rendition no longer decodes",
         body = ErrorBody),
    )
)]
pub async fn original(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let item = lookup(&state, id).await?;
    let path = indexed_file(&item).await?;
    if item.kind == MediaKind::Image && !browser_displays(&path).await {
        let jpeg = state.thumbnailing(move || rendition_of(&path)).await?;
        return Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            jpeg,
        )
            .into_response());
    }
    let response = match ServeFile::new(&path).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status() == StatusCode::NOT_FOUND {
        return Err(gone());
    }
    let mut response = response.map(Body::new);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// A JPEG thumbnail (longest side 320 px), cached in memory. For a frame of a video: the
/// picture at the frame's time.
#[utoipa::path(
    get,
    path = "/api/items/{id}/thumbnail",
    tag = "items",
    params(("id" = i64, Path, description = "Item id")),
    responses(
        (status = 200, description = "JPEG thumbnail", content_type = "image/jpeg"),
        (status = 400, description = "Non-numeric id", body = ErrorBody),
        (status = 404, description = "No such item, or its file is gone", body = ErrorBody),
        (status = 409, description = "The file changed since it was indexed", body = ErrorBody),
        (status = 415, description = "No thumbnail for this kind of file", body = ErrorBody),
        (status = 422, description = "The file (image or video) no longer decodes", body = ErrorBody),
    )
)]
pub async fn thumbnail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    // Looked up even when cached: a thumbnail made while its item was being deleted can land
    // in the cache after the delete emptied it (found by the mixed load), and must not outlive
    // the item.
    let item = lookup(&state, id).await?;
    let jpeg = match state.thumbs().get(id) {
        Some(jpeg) => jpeg,
        None => {
            let path = indexed_file(&item).await?;
            let jpeg = state
                .thumbnailing(move || thumbnail_of(&item, &path))
                .await
                .map(Bytes::from)?;
            state.thumbs().insert(id, jpeg.clone());
            jpeg
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        jpeg,
    )
        .into_response())
}

/// The JPEG thumbnail of an item: the image itself, or for a frame of a video the picture at
/// the frame's time (the moment the search matched, not the video's first frame).
fn thumbnail_of(item: &ItemRecord, path: &std::path::Path) -> Result<Vec<u8>, ApiError> {
    let image = match item.kind {
        MediaKind::Video => frame_at(
            path,
            item.t.unwrap_or(0.0),
            THUMB_SIDE,
            &VideoOptions::default(),
            STILL_TIMEOUT,
        )?,
        // The file was accepted at index time; default limits only guard against it having
        // been replaced by something huge since.
        MediaKind::Image => {
            decode_file(path, THUMB_SIDE, &Limits::default())
                .map_err(crate::Error::from)?
                .image
        }
    };
    Ok(thumbnail_jpeg(&image, THUMB_SIDE, THUMB_QUALITY).map_err(crate::Error::from)?)
}

/// Whether browsers display the file as it is, from its magic bytes. An unreadable file is
/// served as it is too (which reports it missing).
async fn browser_displays(path: &std::path::Path) -> bool {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let read = async {
        let file = tokio::fs::File::open(path).await?;
        file.take(SNIFF_LEN as u64).read_to_end(&mut head).await
    };
    read.await.is_err() || sniff(&head).is_none_or(Format::browser_displays)
}

/// A JPEG rendition of a photo for the browser: full size up to [`RENDITION_SIDE`].
fn rendition_of(path: &std::path::Path) -> Result<Vec<u8>, ApiError> {
    if !path.exists() {
        return Err(gone());
    }
    let image = decode_file(path, 0, &Limits::default())
        .map_err(crate::Error::from)?
        .image;
    Ok(thumbnail_jpeg(&image, RENDITION_SIDE, RENDITION_QUALITY).map_err(crate::Error::from)?)
}

/// Upload an image into the collection. It is stored under the server's upload folder with a
/// generated name, then indexed.
#[utoipa::path(
    post,
    path = "/api/items",
    tag = "items",
    security(("bearer" = [])),
    request_body(
        description = "The image",
        content(
            (ImageForm = "multipart/form-data"),
            (Vec<u8> = "image/*"),
        )
    ),
    responses(
        (status = 201, description = "Added", body = ItemResponse),
        (status = 400, description = "Empty body or bad form", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this client lately; Retry-After says for how long", body = ErrorBody),
        (status = 403, description = "Writes disabled (no token configured), or sent by another site's page", body = ErrorBody),
        (status = 413, description = "Body or image dimensions over the limits", body = ErrorBody),
        (status = 415, description = "Not an image format the server reads", body = ErrorBody),
        (status = 422, description = "A corrupt image", body = ErrorBody),
        (status = 503, description = "Every inference slot stayed busy", body = ErrorBody),
    )
)]
pub async fn add_item(
    _access: WriteAccess,
    State(state): State<AppState>,
    ImageUpload(bytes): ImageUpload,
) -> Result<(StatusCode, Json<ItemResponse>), ApiError> {
    let Some(ext) = stored_extension(&bytes) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            "not an image format this server reads (JPEG, PNG, WebP, GIF, BMP, TIFF)",
        ));
    };
    let dir = state
        .upload_dir()
        .cloned()
        .ok_or_else(|| ApiError::internal("writes enabled without an upload folder"))?;
    let path = dir.join(upload_name(&bytes, ext));
    let added = state
        .inference("add", move |engine| {
            store_upload(&path, &bytes).map_err(|source| crate::Error::Io {
                path: path.clone(),
                source,
            })?;
            let added = engine
                .add_bytes(&bytes, &path)
                .and_then(|id| engine.item(id)?.ok_or(crate::Error::UnknownItem(id)));
            if added.is_err() {
                // The image was refused: do not leave an orphan file behind.
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!(error = %err, "cannot remove a refused upload");
                }
            }
            ItemResponse::of(engine, added?)
        })
        .await?;
    tracing::info!(id = added.id, path = %added.path, "image uploaded");
    state.whiten_in_background();
    Ok((StatusCode::CREATED, Json(added)))
}

/// Writes an upload to its new file and makes it durable before the catalog, which commits
/// with a full sync, can point at it; a full disk may only say so at the sync. A write that
/// fails (disk full) removes what it wrote, so that no truncated image is left for a later
/// `POST /api/index` of the upload folder to trip on.
fn store_upload(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create_new(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        drop(file);
        if let Err(err) = std::fs::remove_file(path) {
            tracing::warn!(error = %err, "cannot remove a partly written upload");
        }
    }
    written
}

/// `<unix ms>-<first 16 hex of sha256>.<ext>`: unique, sortable by time, and free of anything
/// the client chose.
fn upload_name(bytes: &[u8], ext: &str) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let digest = Sha256::digest(bytes);
    format!("{millis}-{}.{ext}", hex::encode(&digest[..8]))
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    /// How many items were removed (1).
    removed: usize,
}

/// Remove an item from the index. A file that was uploaded through the API is deleted too;
/// other files are left alone (they belong to their folders).
#[utoipa::path(
    delete,
    path = "/api/items/{id}",
    tag = "items",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Item id")),
    responses(
        (status = 200, description = "Removed", body = Removed),
        (status = 400, description = "Non-numeric id", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this client lately; Retry-After says for how long", body = ErrorBody),
        (status = 403, description = "Writes disabled (no token configured), or sent by another site's page", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
    )
)]
pub async fn delete_item(
    _access: WriteAccess,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Removed>, ApiError> {
    let id = parse_id(&id)?;
    let item = lookup(&state, id).await?;
    let path = PathBuf::from(&item.path);
    // An upload's file goes with its item: forgotten by the catalog too (its one item with
    // it), or every upload and delete would leave a file row behind. An indexed file stays
    // known, so that the next scan does not add it again.
    let upload = state.upload_dir().is_some_and(|dir| path.starts_with(dir));
    let forget = path.clone();
    let removed = state
        .blocking(move |engine| {
            if upload {
                engine.remove_paths(&[forget])
            } else {
                engine.remove_items(&[id])
            }
        })
        .await?;
    if removed == 0 {
        return Err(crate::Error::UnknownItem(id).into());
    }
    state.thumbs().remove(id);
    if upload {
        if let Err(err) = tokio::fs::remove_file(&path).await {
            tracing::warn!(error = %err, id, "cannot delete the uploaded file of a removed item");
        }
    }
    Ok(Json(Removed { removed }))
}
