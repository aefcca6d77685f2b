//! Shared state of a running server and the two ways engine work is run off the async workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{Mutex, Semaphore};

use super::body;
use super::error::ApiError;
use super::guesses::Guesses;
use super::metrics::Metrics;
use super::roots::Roots;
use super::thumbs::ThumbCache;
use super::ServerConfig;
use crate::engine::Engine;

/// Request bodies held in memory at once, in bodies of the largest size allowed: enough for
/// every inference slot's upload and as many more arriving, bounded whatever the clients do.
const BODIES_IN_FLIGHT: usize = 8;

/// Thumbnail cache budget: ~4,000 thumbnails of ~16 KB.
const THUMB_CACHE_BYTES: usize = 64 << 20;

/// Cheap to clone; every handler gets one.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    engine: Arc<Engine>,
    config: ServerConfig,
    roots: Roots,
    /// Canonical upload folder (inside a root) when writes are enabled.
    upload_dir: Option<PathBuf>,
    inference: Arc<Semaphore>,
    /// Thumbnails are decodes of originals: bound them like inference, by the core count.
    thumbnailing: Arc<Semaphore>,
    /// One index job at a time: a second one would only fight the first for the same cores.
    index_job: Mutex<()>,
    /// One duplicate scan or action at a time: they write the same records and files.
    duplicates_job: Mutex<()>,
    thumbs: ThumbCache,
    metrics: Metrics,
    /// Bytes of request bodies being received at once (see `body.rs`).
    body_budget: Arc<Semaphore>,
    /// Wrong tokens per client (see `guesses.rs`).
    guesses: Guesses,
}

impl AppState {
    /// Checks the configuration (a token that can be presented; roots exist; with writes on, the upload folder is created and
    /// must lie inside a root) and prepares the shared pieces.
    pub fn new(config: ServerConfig, engine: Arc<Engine>) -> anyhow::Result<AppState> {
        if let Some(token) = &config.token {
            anyhow::ensure!(
                !token.is_empty() && token.trim() == token,
                "the token is empty or starts or ends with white space: no request could ever \
                 present it"
            );
        }
        let roots = Roots::new(&config.roots)?;
        let upload_dir = match config.token {
            None => None,
            Some(_) => {
                std::fs::create_dir_all(&config.upload_dir).with_context(|| {
                    format!(
                        "cannot create upload folder {}",
                        config.upload_dir.display()
                    )
                })?;
                let dir = config.upload_dir.canonicalize()?;
                anyhow::ensure!(
                    roots.contains(&dir),
                    "upload folder {} must be inside one of the roots ({:?})",
                    dir.display(),
                    config.roots
                );
                Some(dir)
            }
        };
        let cores = crate::available_cores();
        Ok(AppState(Arc::new(Inner {
            inference: Arc::new(Semaphore::new(config.max_concurrent_inferences.max(1))),
            thumbnailing: Arc::new(Semaphore::new(cores)),
            index_job: Mutex::new(()),
            duplicates_job: Mutex::new(()),
            thumbs: ThumbCache::new(THUMB_CACHE_BYTES),
            metrics: Metrics::new().context("cannot set up metrics")?,
            body_budget: Arc::new(Semaphore::new(body::budget_units(
                config.max_body_bytes.saturating_mul(BODIES_IN_FLIGHT),
            ) as usize)),
            guesses: Guesses::new(config.max_token_misses, config.token_miss_window),
            engine,
            config,
            roots,
            upload_dir,
        })))
    }

    /// The memory budget of request bodies being received.
    pub fn body_budget(&self) -> &Arc<Semaphore> {
        &self.0.body_budget
    }

    pub fn guesses(&self) -> &Guesses {
        &self.0.guesses
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.0.engine
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub fn roots(&self) -> &Roots {
        &self.0.roots
    }

    pub fn upload_dir(&self) -> Option<&PathBuf> {
        self.0.upload_dir.as_ref()
    }

    pub fn thumbs(&self) -> &ThumbCache {
        &self.0.thumbs
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn index_job(&self) -> &Mutex<()> {
        &self.0.index_job
    }

    pub fn duplicates_job(&self) -> &Mutex<()> {
        &self.0.duplicates_job
    }

    /// Runs quick blocking engine work (SQLite look-ups, file reads) on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, crate::Error> + Send + 'static,
    {
        let engine = self.0.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    /// Learns the whitening in the background if the collection now calls for one (see
    /// [`Engine::whiten_if_due`]): the upload that made it due does not wait for it, and
    /// searches go on meanwhile.
    pub fn whiten_in_background(&self) {
        let engine = self.0.engine.clone();
        tokio::task::spawn_blocking(move || match engine.whiten_if_due() {
            Ok(Some(info)) => tracing::info!(version = info.version, "whitening learned"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not learn the whitening"),
        });
    }

    /// Runs inference-bound work (decode + embed) behind the inference semaphore: at most
    /// `max_concurrent_inferences` at once, later requests wait up to `queue_timeout`, then
    /// get 503. The slot is held until the blocking job ends, even if the client went away,
    /// because the cores stay busy until then.
    pub async fn inference<T, F>(&self, op: &'static str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, crate::Error> + Send + 'static,
    {
        let permit = self.acquire(&self.0.inference).await?;
        let start = Instant::now();
        let engine = self.0.engine.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&engine)
        })
        .await;
        self.0
            .metrics
            .observe_inference(op, start.elapsed().as_secs_f64());
        result.map_err(ApiError::internal)?.map_err(ApiError::from)
    }

    /// Runs blocking thumbnail work (decoding an image, or ffmpeg for a video's still) on the
    /// blocking pool, bounded by the thumbnailing semaphore (same queue rules as inference).
    /// The job maps its own errors: an image and a video fail in different ways.
    pub async fn thumbnailing<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let permit = self.acquire(&self.0.thumbnailing).await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(ApiError::internal)?
    }

    async fn acquire(
        &self,
        semaphore: &Arc<Semaphore>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let metrics = &self.0.metrics;
        let waited = {
            // Counted while waiting, also when the client gives up and this future is dropped.
            let _waiting = Waiting::enter(&metrics.queued);
            tokio::time::timeout(
                self.0.config.queue_timeout,
                semaphore.clone().acquire_owned(),
            )
            .await
        };
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(ApiError::internal(closed)),
            Err(_elapsed) => {
                metrics.rejected_busy.inc();
                Err(ApiError::busy())
            }
        }
    }
}

/// Keeps the "waiting" gauge right whichever way the wait ends.
struct Waiting<'a>(&'a prometheus::IntGauge);

impl<'a> Waiting<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
