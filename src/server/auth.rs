//! The write guard: routes that change the collection need `Authorization: Bearer <token>`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;

/// Extractor proving the request may write. Put it before any body extractor so an
/// unauthorised upload is refused before its body is read.
pub struct WriteAccess;

/// Why a write was refused. 401 carries `WWW-Authenticate` as RFC 6750 asks.
pub enum Denied {
    Disabled,
    BadToken,
    /// The client presented too many wrong tokens lately: wait this long.
    Guessing(Duration),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Disabled => ApiError::new(
                StatusCode::FORBIDDEN,
                "writes_disabled",
                "writes disabled: the server was started without a token",
            )
            .into_response(),
            Denied::BadToken => {
                let mut response = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Denied::Guessing(wait) => {
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut response = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_wrong_tokens",
                    format!(
                        "too many wrong tokens from this address: writes are refused for \
                         {seconds} s"
                    ),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                response
            }
        }
    }
}

impl FromRequestParts<AppState> for WriteAccess {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Denied> {
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        // Only a token presented to a server that has one takes a try: the page asks for one
        // when it has none.
        let presenting = client.filter(|_| {
            state.config().token.is_some() && parts.headers.contains_key(header::AUTHORIZATION)
        });
        let guesses = state.guesses();
        // Taken before the token is compared: a guesser out of tries learns nothing.
        let tries_left = match presenting {
            Some(client) => Some(
                guesses
                    .try_token(client, Instant::now())
                    .map_err(Denied::Guessing)?,
            ),
            None => None,
        };
        let checked = check(&parts.headers, state);
        match (&checked, presenting) {
            (Ok(()), Some(client)) => guesses.was_right(client),
            (Err(Denied::BadToken), _) => {
                // Guessing leaves a trace (the token itself is never logged).
                tracing::warn!(method = %parts.method, path = %parts.uri.path(), client = ?client, "write refused: missing or wrong token");
                if tries_left == Some(0) {
                    tracing::warn!(client = ?client, "too many wrong tokens: this client's writes are refused for {:?}", guesses.window());
                }
            }
            _ => {}
        }
        checked.map(|()| WriteAccess)
    }
}

/// Whether `headers` carry the server's write token.
pub fn check(headers: &HeaderMap, state: &AppState) -> Result<(), Denied> {
    let Some(expected) = state.config().token.as_deref() else {
        return Err(Denied::Disabled);
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(Denied::BadToken),
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn compares_whole_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
