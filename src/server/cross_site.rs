//! Requests from another site's pages may only read.
//!
//! The server sends no CORS headers, so a page on another site can neither read its answers
//! nor send `Authorization` (that needs a preflight the server never grants). It can still
//! make a visitor's browser send "simple" requests, such as a form's multipart POST to
//! `/api/search`: each runs the network on the server and holds one of its inference slots,
//! so any page could keep a server busy through its visitors. Browsers say where a request
//! comes from in `Sec-Fetch-Site` (Fetch Metadata): a request other than GET, HEAD or OPTIONS
//! is refused unless it comes from the server's own page (`same-origin`) or from the user
//! (`none`: typed or bookmarked). Clients that are not browsers (curl, scripts) send no such
//! header and are not affected; nor are browsers too old to send it.

use axum::extract::Request;
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

pub async fn check(request: Request, next: Next) -> Response {
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let site = request.headers().get(SEC_FETCH_SITE).map(|v| v.as_bytes());
    match site {
        Some(site) if !reads && site != b"same-origin" && site != b"none" => ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "another site's page may only read from this server: a browser sent this request \
             from a page that is not this server's own",
        )
        .into_response(),
        _ => next.run(request).await,
    }
}
