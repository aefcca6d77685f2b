//! `lookalike serve`: the web page and the JSON API over an [`Engine`].
//!
//! Layout: [`router`] builds the whole axum app (API, embedded page, metrics, OpenAPI) from an
//! [`AppState`]; [`serve`] binds, runs the background index refresh and shuts down gracefully on
//! SIGINT/SIGTERM. Everything that blocks (inference, SQLite, file decoding) runs on tokio's
//! blocking pool so the async workers only shuffle bytes.

mod api;
mod auth;
mod body;
mod cross_site;
mod error;
mod guesses;
mod host;
mod metrics;
mod roots;
mod state;
mod thumbs;
mod ui;
mod upload;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::engine::Engine;

pub use api::router;
pub use state::AppState;

/// How the server is run. Everything a deployer may want to change is here; the CLI fills it.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on. The default is loopback only: exposing the server is a choice.
    pub bind: SocketAddr,
    /// Bearer token for the routes that write. `None` disables writes altogether (403).
    pub token: Option<String>,
    /// Server-side folders that `POST /api/index` may index. Paths are canonicalised (symlinks
    /// resolved) before the check, so nothing outside them can be reached.
    pub roots: Vec<PathBuf>,
    /// Where `POST /api/items` stores uploads. When writes are enabled it must lie inside one of
    /// `roots` (checked at start), so uploaded files live where the operator allowed files.
    pub upload_dir: PathBuf,
    /// Host names the server answers to besides `localhost` and IP addresses (see `host.rs`:
    /// the DNS-rebinding defence). Empty: every name when not bound to loopback.
    pub allowed_hosts: Vec<String>,
    /// Reference folders of the duplicate groups (`/api/duplicates`): their files are never
    /// dropped, and one of them is the keeper of a group that has some.
    pub references: Vec<PathBuf>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// How many inference jobs (search by upload, add) run at once. More would only make each
    /// slower: inference already uses the engine's threads.
    pub max_concurrent_inferences: usize,
    /// How long a request waits for an inference slot before it is answered 503.
    pub queue_timeout: Duration,
    /// How often the engine picks up what another process (`lookalike index`) committed.
    pub refresh_interval: Duration,
    /// Connections served at once; past it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and an idle keep-alive
    /// connection may wait for the next request, before it is closed (slow clients).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// Wrong tokens a client may present per `token_miss_window`; past them its writes are
    /// refused (429) until the window ends (see `guesses.rs`).
    pub max_token_misses: u32,
    pub token_miss_window: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            token: None,
            roots: Vec::new(),
            upload_dir: PathBuf::from("uploads"),
            allowed_hosts: Vec::new(),
            references: Vec::new(),
            max_body_bytes: 32 << 20,
            max_concurrent_inferences: 2,
            queue_timeout: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(2),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(120),
            max_token_misses: 10,
            token_miss_window: Duration::from_secs(60),
        }
    }
}

/// Runs the server until SIGINT or SIGTERM, then lets in-flight requests finish.
pub async fn serve(config: ServerConfig, engine: Arc<Engine>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    serve_with(listener, config, engine, shutdown_signal()).await
}

/// Like [`serve`] on an already bound listener and with any shutdown trigger: tests bind port 0
/// and stop the server with a channel.
pub async fn serve_with(
    listener: TcpListener,
    config: ServerConfig,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = AppState::new(config, engine)?;
    let refresher = tokio::spawn(refresh_loop(state.clone()));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "lookalike server listening on http://{addr}/");
    accept_loop(listener, &state, shutdown).await;
    refresher.abort();
    tracing::info!("server stopped");
    Ok(())
}

/// Longest a graceful shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves connections until `shutdown`, then lets in-flight requests finish. Unlike
/// `axum::serve`, every connection gets a header-read timeout (which also closes idle
/// keep-alive connections) and their number is capped, so slow or idle clients cannot hold
/// every socket (slowloris).
async fn accept_loop(
    listener: TcpListener,
    state: &AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let config = state.config();
    let app = router(state.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match stream {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // neither is fatal; pause so that a lasting condition does not spin.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Each request knows its client's address (the token-guessing limit counts by it).
        let app = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
}

/// Calls `engine.refresh()` every `refresh_interval`, so images that `lookalike index` adds in
/// another process become searchable without a restart.
async fn refresh_loop(state: AppState) {
    let mut ticker = tokio::time::interval(state.config().refresh_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick fires at once; the engine was just opened
    loop {
        ticker.tick().await;
        let engine = state.engine().clone();
        match tokio::task::spawn_blocking(move || engine.refresh()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(changes = n, "picked up index changes"),
            Ok(Err(err)) => tracing::warn!(error = %err, "index refresh failed"),
            Err(err) => tracing::warn!(error = %err, "index refresh task failed"),
        }
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (what `docker stop` and systemd send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
