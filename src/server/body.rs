//! Request bodies are read in full (up to the size limit) before routing.
//!
//! A request refused before its body is read (wrong token, bad `k`) would otherwise get its
//! answer while the client is still sending, and hyper then closes the connection: many
//! clients report that as a broken connection instead of showing our JSON error. Every body
//! we accept is read whole anyway, so reading first costs nothing but the bytes of refused
//! requests, which the size limit bounds.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

pub async fn buffer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let limit = state.config().max_body_bytes;
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body is over the limit of {limit} bytes"),
                )
                .into_response()
            } else {
                ApiError::bad_request(
                    "bad_body",
                    format!("could not read the request body: {err}"),
                )
                .into_response()
            }
        }
    }
}
