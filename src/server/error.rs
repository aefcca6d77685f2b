//! Every error the server answers is JSON: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Client errors carry a human message; server errors are logged with their cause and answered
//! with a generic message, so no internal path or backtrace leaks out. Two kinds of server
//! fault are named to the client all the same, because the client can do nothing useful with
//! "internal error" and the names carry no path: the server's storage refusing a write (disk
//! full, read-only or failing: [`storage_fault`]) and a missing ffmpeg.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::image::ImageError;
use crate::video::VideoError;
use crate::Error;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`, `image_too_large`, `busy`.
    #[schema(example = "not_found")]
    pub code: String,
    /// What went wrong, for a person.
    #[schema(example = "no item with id 42")]
    pub message: String,
}

/// An error answer: status, stable code and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure that is the server's fault: the cause goes to the log, never to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error (the cause is in the server log)",
        )
    }

    /// 503 when every inference slot stayed busy for the whole queue timeout.
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the server is busy with other searches; retry in a moment",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Image(err) => image_error(err),
            Error::UnknownItem(id) => ApiError::not_found(format!("no item with id {id}")),
            Error::NotIndexed(_) => ApiError::not_found("no such item"),
            other => storage_fault(&other).unwrap_or_else(|| ApiError::internal(other)),
        }
    }
}

/// A video that no longer decodes is the file's fault (422); a missing or broken ffmpeg is the
/// installation's (500, logged; a missing one is named, so that the operator knows what to
/// install).
impl From<VideoError> for ApiError {
    fn from(err: VideoError) -> Self {
        match err {
            err if err.is_user_error() => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "undecodable_video",
                err.to_string(),
            ),
            VideoError::FfmpegMissing { .. } => {
                tracing::error!(error = %err, "cannot decode a video");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ffmpeg_missing",
                    "ffmpeg is not installed on the server, so it cannot decode videos",
                )
            }
            VideoError::Engine(err) => (*err).into(),
            err => ApiError::internal(err),
        }
    }
}

/// How the server's storage can refuse a write, and what the client is told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageFault {
    /// No space left, a quota, or a file size limit.
    Full,
    /// A read-only file system (or an index SQLite could only open read-only).
    ReadOnly,
    /// Any other write failure (SQLite's "disk I/O error").
    Failing,
}

impl StorageFault {
    /// The fault an I/O error reports, if it is one of the storage's.
    fn of_io(err: &std::io::Error) -> Option<StorageFault> {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
                Some(StorageFault::Full)
            }
            ErrorKind::ReadOnlyFilesystem => Some(StorageFault::ReadOnly),
            _ => None,
        }
    }

    /// The fault a SQLite error reports, if it is one of the storage's.
    fn of_sqlite(err: &rusqlite::Error) -> Option<StorageFault> {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code()? {
            ErrorCode::DiskFull => Some(StorageFault::Full),
            ErrorCode::ReadOnly => Some(StorageFault::ReadOnly),
            ErrorCode::SystemIoFailure => Some(StorageFault::Failing),
            _ => None,
        }
    }

    fn answer(self, description: &str) -> ApiError {
        let (status, code, what, advice) = match self {
            StorageFault::Full => (
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                "the server's disk is full",
                "retry once space has been freed on the server",
            ),
            StorageFault::ReadOnly => (
                StatusCode::INSUFFICIENT_STORAGE,
                "read_only_storage",
                "the server's index is on a read-only file system",
                "the server can search but not add",
            ),
            StorageFault::Failing => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                "the server could not write to its disk",
                "the server log has the details",
            ),
        };
        ApiError::new(status, code, format!("{what} ({description}): {advice}"))
    }
}

/// The answer to a write that the server's storage refused, found anywhere in `err`'s chain of
/// causes: 507 Insufficient Storage ("unable to store the representation needed to complete
/// the request") when the disk is full or read-only, 500 `storage_error` when it failed
/// otherwise. The cause is logged in full like any server error's; the client gets the
/// operating system's or SQLite's short description, which names no path.
fn storage_fault(err: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        cause = current.source();
        let found = if let Some(io) = current.downcast_ref::<std::io::Error>() {
            // A custom io::Error's text may hold a path; an OS error's never does.
            let description = match io.raw_os_error() {
                Some(_) => io.to_string(),
                None => io.kind().to_string(),
            };
            StorageFault::of_io(io).map(|fault| (fault, description))
        } else if let Some(sqlite) = current.downcast_ref::<rusqlite::Error>() {
            StorageFault::of_sqlite(sqlite).map(|fault| (fault, sqlite.to_string()))
        } else {
            None
        };
        if let Some((fault, description)) = found {
            tracing::error!(error = %err, "the server's storage refused a write");
            return Some(fault.answer(&description));
        }
    }
    None
}

/// Maps a decoding failure of client-supplied bytes to the status that tells the client what to
/// fix: too big (413), not an image we read (415), a broken file (422). The image module's
/// messages are written for users and name no path, so they are passed on.
fn image_error(err: ImageError) -> ApiError {
    let message = err.to_string();
    match err {
        ImageError::Empty => ApiError::bad_request("empty_body", message),
        ImageError::TooLarge { .. } | ImageError::FileTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", message)
        }
        ImageError::NotAnImage | ImageError::Unsupported(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            message,
        ),
        ImageError::Truncated(_) | ImageError::Corrupt { .. } | ImageError::Resize(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "corrupt_image", message)
        }
        ImageError::Io(_) | ImageError::Encode(_) => ApiError::internal(message),
    }
}

/// Body-reading failures keep axum's status (413 for the size limit, 400 otherwise).
fn rejection(status: StatusCode, text: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => return ApiError::internal(text),
        _ => "bad_request",
    };
    ApiError::new(status, code, text)
}

impl From<MultipartRejection> for ApiError {
    fn from(r: MultipartRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

impl From<MultipartError> for ApiError {
    fn from(r: MultipartError) -> Self {
        rejection(r.status(), r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        rejection(r.status(), r.body_text())
    }
}

/// Middleware: error responses that axum or tower-http produce on their own (unknown route,
/// wrong method, body limit) come back as our JSON error too, and nothing is content-sniffed.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let mut json = ApiError::new(status, code, reason).into_response();
    for name in [header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(value) = response.headers().get(&name) {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexError;

    fn io(path: &str, errno: i32) -> Error {
        Error::Io {
            path: path.into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    /// A SQLite failure as rusqlite reports it: the code, and SQLite's message for it.
    fn sqlite(code: std::ffi::c_int, message: &str) -> Error {
        let error = rusqlite::ffi::Error::new(code);
        let failure = rusqlite::Error::SqliteFailure(error, Some(message.into()));
        Error::Index(IndexError::from(failure))
    }

    #[track_caller]
    fn assert_answer(answer: ApiError, status: StatusCode, code: &str, cause: &str) {
        assert_eq!((answer.status, answer.code), (status, code), "{answer:?}");
        assert!(answer.message.contains(cause), "{answer:?}");
        assert!(
            !answer.message.contains("/srv"),
            "a path leaked: {answer:?}"
        );
    }

    #[test]
    fn storage_faults_are_named_without_their_paths() {
        let insufficient = StatusCode::INSUFFICIENT_STORAGE;
        let upload = "/srv/photos/uploads/1-ab.png";
        assert_answer(
            io(upload, 28).into(),
            insufficient,
            "disk_full",
            "No space left",
        );
        assert_answer(
            io(upload, 27).into(),
            insufficient,
            "disk_full",
            "File too large",
        );
        assert_answer(
            io(upload, 30).into(),
            insufficient,
            "read_only_storage",
            "Read-only file system",
        );
        assert_answer(
            sqlite(rusqlite::ffi::SQLITE_FULL, "database or disk is full").into(),
            insufficient,
            "disk_full",
            "database or disk is full",
        );
        assert_answer(
            sqlite(
                rusqlite::ffi::SQLITE_READONLY,
                "attempt to write a readonly database",
            )
            .into(),
            insufficient,
            "read_only_storage",
            "readonly",
        );
        assert_answer(
            sqlite(rusqlite::ffi::SQLITE_IOERR_WRITE, "disk I/O error").into(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            "disk I/O error",
        );
        // Through the video path too (the index failed while a video was being added).
        let video = VideoError::Engine(Box::new(io(upload, 28)));
        assert_answer(video.into(), insufficient, "disk_full", "No space left");
    }

    #[test]
    fn other_server_faults_stay_internal_and_a_missing_ffmpeg_says_so() {
        let internal = StatusCode::INTERNAL_SERVER_ERROR;
        let generic = "internal server error";
        assert_answer(io("/srv/x", 13).into(), internal, "internal", generic);
        let corrupt = sqlite(
            rusqlite::ffi::SQLITE_CORRUPT,
            "database disk image is malformed",
        );
        assert_answer(corrupt.into(), internal, "internal", generic);
        let missing = VideoError::FfmpegMissing {
            program: "/srv/bin/ffmpeg".into(),
        };
        assert_answer(
            missing.into(),
            internal,
            "ffmpeg_missing",
            "ffmpeg is not installed",
        );
    }
}
