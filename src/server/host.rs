//! The DNS-rebinding defence: a request must name this server in its `Host` header.
//!
//! A web page on any site can point a DNS name it controls at 127.0.0.1 and then read a
//! loopback server as its own origin: the whole library, its paths and GPS positions. Such a
//! request carries the attacker's name in `Host`, so a server bound to loopback answers only
//! requests that name it as `localhost` or by an IP address (which cannot be rebound), or by a
//! name the operator allowed (`--allowed-host`). A server bound to another address is checked
//! the same way once names are allowed; without any, it answers every name it is reached by.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use super::ServerConfig;

pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let config = state.config();
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or_default());
    match host {
        Some(host) if checks_hosts(config) && !is_allowed(host, &config.allowed_hosts) => {
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                format!(
                    "this server answers as localhost or its IP address, not as {host:?}; \
                     start it with --allowed-host NAME to answer to another name"
                ),
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Whether `Host` is checked at all (see the module's doc).
fn checks_hosts(config: &ServerConfig) -> bool {
    config.bind.ip().is_loopback() || !config.allowed_hosts.is_empty()
}

/// Whether a `Host` header value names this server: `localhost`, an IP literal or an allowed
/// name, with or without a port, any case.
fn is_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.rsplit_once(':') {
        // "[::1]:7878" or "name:7878"; an IPv6 literal without a port has no colon after "]".
        Some((name, port)) if !port.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || literal.parse::<IpAddr>().is_ok()
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::is_allowed;

    #[test]
    fn loopback_names_and_ip_literals_pass_and_other_names_do_not() {
        let allowed = ["photos.home.arpa".to_string()];
        for host in [
            "localhost",
            "LOCALHOST:7878",
            "127.0.0.1",
            "127.0.0.1:7878",
            "[::1]",
            "[::1]:7878",
            "192.168.1.20:7878",
            "photos.home.arpa:7878",
            "Photos.Home.Arpa",
        ] {
            assert!(is_allowed(host, &allowed), "{host}");
        }
        for host in [
            "rebind.evil.example",
            "rebind.evil.example:7878",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "photos.home.arpa.evil.example",
            "",
        ] {
            assert!(!is_allowed(host, &allowed), "{host}");
        }
    }
}
