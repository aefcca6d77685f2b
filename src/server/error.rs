//! Every error the server answers is JSON: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Client errors carry a human message; server errors are logged with their cause and answered
//! with a generic message, so no internal path or backtrace leaks out.

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
            other => ApiError::internal(other),
        }
    }
}

/// A video that no longer decodes is the file's fault (422); a missing or broken ffmpeg is the
/// installation's (500, logged).
impl From<VideoError> for ApiError {
    fn from(err: VideoError) -> Self {
        if err.is_user_error() {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "undecodable_video",
                err.to_string(),
            )
        } else {
            ApiError::internal(err)
        }
    }
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
