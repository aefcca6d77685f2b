//! Request bodies are read in full (up to the size limit) before routing, within a deadline
//! and a memory budget shared by all requests.
//!
//! A request refused before its body is read (wrong token, bad `k`) would otherwise get its
//! answer while the client is still sending, and hyper then closes the connection: many
//! clients report that as a broken connection instead of showing our JSON error. Every body
//! we accept is read whole anyway, so reading first costs nothing but the bytes of refused
//! requests, which the size limit bounds.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::error::ApiError;
use super::state::AppState;

/// Bodies are budgeted in units of this many bytes (a semaphore counts in `u32` permits).
const BUDGET_UNIT: usize = 1024;

/// How many budget units a body of `bytes` takes (at least one).
pub(super) fn budget_units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(BUDGET_UNIT).max(1)).unwrap_or(u32::MAX)
}

pub async fn buffer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let config = state.config();
    let limit = config.max_body_bytes;
    // Refused on its declared length before a byte of it is read.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse_unread(request, config.body_timeout, limit).await;
    }
    // Bodies being read at once share a memory budget (a chunked body is counted at the
    // limit): many clients each sending a body just under the limit wait for their turn, or
    // get a 503, instead of exhausting memory.
    let units = budget_units(declared.map_or(limit, |n| n as usize));
    let budget = state.body_budget().clone();
    let permit = tokio::time::timeout(config.queue_timeout, budget.acquire_many_owned(units)).await;
    let Ok(Ok(_permit)) = permit else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many request bodies are being received; try again shortly",
        )
        .into_response();
    };
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(config.body_timeout, axum::body::to_bytes(body, limit)).await;
    match read {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(err)) => {
            let over = std::error::Error::source(&err)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if over {
                too_large(limit)
            } else {
                ApiError::bad_request(
                    "bad_body",
                    format!("could not read the request body: {err}"),
                )
                .into_response()
            }
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                config.body_timeout.as_secs()
            ),
        )
        .into_response(),
    }
}

/// Answers 413 to a body declared over the limit without keeping any of it. A client waiting
/// for `100 Continue` is answered at once; any other is already sending, and an answer before
/// its body ends would reach it as a broken connection, so the body is read and dropped first
/// (within the body timeout).
async fn refuse_unread(request: Request, within: Duration, limit: usize) -> Response {
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects_continue {
        let mut body = request.into_body();
        let _ = tokio::time::timeout(within, async {
            while let Some(Ok(_)) = body.frame().await {}
        })
        .await;
    }
    too_large(limit)
}

fn too_large(limit: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is over the limit of {limit} bytes"),
    )
    .into_response()
}
