//! `lookalike serve`: the web page and the JSON API over an [`Engine`].
//!
//! Layout: [`router`] builds the whole axum app (API, embedded page, metrics, OpenAPI) from an
//! [`AppState`]; [`serve`] binds, runs the background index refresh and shuts down gracefully on
//! SIGINT/SIGTERM. Everything that blocks (inference, SQLite, file decoding) runs on tokio's
//! blocking pool so the async workers only shuffle bytes.

mod api;
mod auth;
mod body;
mod error;
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
use tokio::net::TcpListener;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            token: None,
            roots: Vec::new(),
            upload_dir: PathBuf::from("uploads"),
            references: Vec::new(),
            max_body_bytes: 32 << 20,
            max_concurrent_inferences: 2,
            queue_timeout: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(2),
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
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    refresher.abort();
    tracing::info!("server stopped");
    result.context("server error")
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
