//! The engine: the handle the CLI and the HTTP server use. It owns the featurizer (model +
//! preprocessing) and the index, and offers the operations of an image search server: index
//! folders, add an upload, search by image or by indexed item, remove, stats.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::descriptor::{DescriptorOptions, WhiteningOptions};
use crate::error::{Error, Result};
use crate::featurizer::{Featurizer, ImageQuery};
use crate::image::{Limits, PhotoFacts};
use crate::index::{
    ContentHash, Filter, Hit, Index, IndexConfig, IndexError, ItemId, ItemRecord, ItemSet,
    LabelTerm, MediaKind, NewFile, NewItem, SearchMode, Stats, WhiteningInfo,
};
use crate::ingest::{self, ImportReport, IngestOptions, IngestReport};
use crate::model::{kept_labels, Compute, Label, ModelKind, ModelStore};
use crate::shard::Identity;
use crate::verify::{self, LocalFeatures, VerifyOptions};
use crate::video::{self, FileMatch, QueryFrameHits, VideoError, VideoFrames, VideoOptions};
use crate::words::WordQuery;

/// An indexed item and its stored vector.
pub type StoredItem = (ItemRecord, Vec<f32>);

/// Most items a grouped search fetches to find `k` distinct files: beyond this, a few videos
/// with very many matching frames leave the answer shorter than `k` rather than slow.
const MAX_GROUPED_FETCH: usize = 1 << 16;

/// How a search by words scores by default: an image counts for a word when the probabilities
/// of its labels that the word names add up to at least this (see [`Engine::search_words`]).
/// Below it, the classifier's guesses are too weak to show. On the labelled benchmark
/// (BENCHMARKS.md, "Search by words"), 0.2 kept the whole answer's precision above 0.8 in both
/// libraries and found more than 0.3 did (recall 0.76 against 0.64); the top 10 were the same.
pub const MIN_WORD_SCORE: f32 = 0.2;

/// How to answer a search.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions<'a> {
    /// Results wanted.
    pub k: usize,
    pub mode: SearchMode,
    /// Every matching video frame rather than each video once (by its best frame).
    pub frames: bool,
    pub verify: VerifyOptions,
    /// Only these items (see [`Engine::matching_items`]); None: all.
    pub within: Option<&'a ItemSet>,
}

impl SearchOptions<'_> {
    /// `k` results, approximate, grouped by file, unverified, unfiltered.
    pub fn top(k: usize) -> SearchOptions<'static> {
        SearchOptions {
            k,
            mode: SearchMode::Approximate,
            frames: false,
            verify: VerifyOptions::top(0),
            within: None,
        }
    }
}

/// Where things are and how much of the machine to use.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The index directory (catalog + ANN files).
    pub db_dir: PathBuf,
    /// Where model files are cached (fetched on first use).
    pub model_dir: PathBuf,
    /// The model for a new index. `None`: the one the index was built with, or Lite0.
    pub model: Option<ModelKind>,
    /// The descriptor for a new index. `None`: the index's own, or the default.
    pub descriptor: Option<DescriptorOptions>,
    /// Where the network runs (CPU threads, or a GPU).
    pub compute: Compute,
    pub limits: Limits,
    /// Open the index for searching only: never create or write it.
    pub read_only: bool,
}

impl EngineOptions {
    pub fn new(db_dir: PathBuf, model_dir: PathBuf) -> Self {
        EngineOptions {
            db_dir,
            model_dir,
            model: None,
            descriptor: None,
            compute: Compute::default(),
            limits: Limits::default(),
            read_only: false,
        }
    }
}

pub struct Engine {
    featurizer: Featurizer,
    /// The index's descriptor options (fixed for its life).
    descriptor: DescriptorOptions,
    index: SharedIndex,
    /// Set while [`Engine::whiten_if_due`] learns: one learning at a time is enough (each
    /// upload may ask).
    learning: AtomicBool,
    /// Held by [`Engine::verify`]: one verification at a time, on all cores. Each thread holds
    /// one decoded candidate (up to the pixel limit for a format that cannot shrink while
    /// decoding), so this bounds that memory by the cores, not by the concurrent searches.
    verifying: std::sync::Mutex<()>,
}

/// Saves the ANN snapshot when due after a committed change. A failure (disk full) is logged,
/// not returned: the change is committed either way, and the snapshot is derived data that the
/// next checkpoint or open rebuilds from the catalog.
fn checkpoint_if_due(index: &mut Index) {
    if let Err(e) = index.checkpoint_if_due() {
        tracing::warn!(error = %e, "could not save the ANN snapshot (the change is committed)");
    }
}

/// The index behind a readers-writer lock: searches run in parallel, a commit briefly
/// excludes them. A poisoned lock (a thread panicked holding it) becomes an error, not a panic.
pub(crate) struct SharedIndex(RwLock<Index>);

impl SharedIndex {
    pub(crate) fn read(&self) -> Result<RwLockReadGuard<'_, Index>> {
        self.0.read().map_err(|_| lock_poisoned())
    }

    pub(crate) fn write(&self) -> Result<RwLockWriteGuard<'_, Index>> {
        self.0.write().map_err(|_| lock_poisoned())
    }
}

impl Engine {
    /// Opens (or creates) the index and loads the model it was built with, fetching the
    /// model on first use. For a new index the model loads first: a model or device that
    /// cannot be loaded (no network to fetch it, no GPU) leaves no empty index behind.
    pub fn open(options: &EngineOptions) -> Result<Engine> {
        let load = |kind: ModelKind, descriptor: &DescriptorOptions| {
            Featurizer::load(
                &ModelStore::new(options.model_dir.clone()),
                kind,
                descriptor,
                &options.compute,
                options.limits,
            )
        };
        let existing = if options.read_only {
            Some(Index::open_read_only(&options.db_dir)?)
        } else {
            match Index::open(&options.db_dir) {
                Ok(index) => Some(index),
                Err(IndexError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let (index, loaded) = match existing {
            Some(index) => (index, None),
            None => {
                let kind = options.model.unwrap_or_default();
                let config = IndexConfig {
                    model: kind.name().to_owned(),
                    dim: kind.feature_dim(),
                    descriptor: options.descriptor.clone().unwrap_or_default(),
                };
                let featurizer = load(kind, &config.descriptor)?;
                let index = Index::create_or_open(&options.db_dir, &config)?;
                // Another process may have created it first, differently.
                let same = *index.config() == config;
                (index, same.then_some(featurizer))
            }
        };
        let built_with: ModelKind = index.config().model.parse()?;
        if let Some(asked) = options.model {
            if asked != built_with {
                return Err(Error::ModelMismatch {
                    index: built_with.name().to_owned(),
                    asked: asked.name().to_owned(),
                });
            }
        }
        if let Some(asked) = &options.descriptor {
            if *asked != index.config().descriptor {
                return Err(Error::DescriptorMismatch {
                    index: index.config().descriptor.to_json(),
                    asked: asked.to_json(),
                });
            }
        }
        let featurizer = match loaded {
            Some(featurizer) => featurizer,
            None => load(built_with, &index.config().descriptor)?,
        };
        Ok(Engine {
            descriptor: index.config().descriptor.clone(),
            featurizer,
            index: SharedIndex(RwLock::new(index)),
            learning: AtomicBool::new(false),
            verifying: std::sync::Mutex::new(()),
        })
    }

    /// The index, for the library's own modules that need more than the methods below.
    pub(crate) fn shared_index(&self) -> &SharedIndex {
        &self.index
    }

    pub fn featurizer(&self) -> &Featurizer {
        &self.featurizer
    }

    /// How this index describes images (recorded in its catalog).
    pub fn descriptor(&self) -> &DescriptorOptions {
        &self.descriptor
    }

    pub fn model_name(&self) -> &'static str {
        self.featurizer.kind().name()
    }

    /// Indexes files and folders (recursively, incrementally). See [`ingest`]. Then learns
    /// the whitening the descriptor asks for when it is due (see [`Engine::whiten_if_due`]).
    pub fn index_paths(&self, paths: &[PathBuf], options: &IngestOptions) -> Result<IngestReport> {
        let report = ingest::index(&self.featurizer, &self.index, paths, options)?;
        // The files are indexed either way: a failed learning only leaves searches unwhitened.
        if let Err(e) = self.whiten_if_due() {
            tracing::warn!(error = %e, "could not learn the whitening");
        }
        Ok(report)
    }

    /// Learns the whitening once the collection holds enough vectors, if the descriptor asks
    /// for one (or one is active), and re-learns it when the collection has grown 4x since:
    /// the statistics of a small collection say little about a big one (see
    /// [`crate::descriptor::whitening::is_due`]). Returns None when none was due, or when
    /// another thread is learning already. Searches go on meanwhile.
    pub fn whiten_if_due(&self) -> Result<Option<WhiteningInfo>> {
        if self.learning.swap(true, Ordering::AcqRel) {
            return Ok(None);
        }
        let result = self.whiten_if_due_now();
        self.learning.store(false, Ordering::Release);
        result
    }

    fn whiten_if_due_now(&self) -> Result<Option<WhiteningInfo>> {
        let (items, active, wanted) = {
            let index = self.index.read()?;
            let wanted = index.config().descriptor.whitening.map(|w| w.dims);
            let active = index.whitening_info();
            // Nothing to learn, ever: spare every upload the count.
            if wanted.is_none() && active.is_none() {
                return Ok(None);
            }
            (index.item_count()?, active, wanted)
        };
        let learned_from = active.map(|a| a.learned_from);
        if !crate::descriptor::whitening::is_due(items, learned_from, wanted) {
            return Ok(None);
        }
        tracing::info!(items, previous = ?active.map(|a| a.version), "learning the whitening");
        self.learn_whitening(None).map(Some)
    }

    /// (Re)learns the whitening to `dims` dimensions (default: the active whitening's, else
    /// the descriptor's) from the indexed vectors, with the descriptor's power; searches go
    /// on meanwhile.
    pub fn learn_whitening(&self, dims: Option<usize>) -> Result<WhiteningInfo> {
        let prepared = {
            let index = self.index.read()?;
            let recorded = index.config().descriptor.whitening;
            let dims = dims
                .or(index.whitening_info().map(|w| w.out_dim))
                .or(recorded.map(|w| w.dims))
                .ok_or_else(|| {
                    IndexError::InvalidArgument(
                        "the index's descriptor asks for no whitening: give the dimensions".into(),
                    )
                })?;
            let power = recorded.map_or(WhiteningOptions::DEFAULT_POWER, |w| w.power);
            index.prepare_whitening(WhiteningOptions { dims, power })?
        };
        Ok(self.index.write()?.install_whitening(prepared)?)
    }

    /// Imports vector shards (files, or folders of them) made by `lookalike embed` with this
    /// index's model and descriptor (see [`crate::ingest`]), then learns the whitening when
    /// due, as indexing does, and brings the ANN up to date.
    pub fn import_shards(
        &self,
        paths: &[PathBuf],
        options: &IngestOptions,
    ) -> Result<ImportReport> {
        let (identity, dim) = {
            let index = self.index.read()?;
            let config = index.config();
            let identity = Identity {
                model: config.model.clone(),
                descriptor: config.descriptor.clone(),
            };
            (identity, config.dim)
        };
        let mut report = ingest::import(&self.index, &identity, dim, paths, options)?;
        let started = std::time::Instant::now();
        // The whitening first: when one is due it builds the ANN anew from the catalog, and the
        // checkpoint then has nothing left to insert.
        if let Err(e) = self.whiten_if_due() {
            tracing::warn!(error = %e, "could not learn the whitening");
        }
        self.index.write()?.checkpoint()?;
        report.ann_elapsed = started.elapsed();
        report.elapsed += report.ann_elapsed;
        Ok(report)
    }

    /// Indexes an uploaded image whose bytes the caller has already stored at `stored_at`.
    pub fn add_bytes(&self, bytes: &[u8], stored_at: &Path) -> Result<ItemId> {
        let embedded = self.featurizer.embed_bytes(bytes)?;
        let canonical = stored_at.canonicalize().map_err(|source| Error::Io {
            path: stored_at.to_path_buf(),
            source,
        })?;
        let metadata = std::fs::metadata(&canonical).map_err(|source| Error::Io {
            path: canonical.clone(),
            source,
        })?;
        let path = canonical
            .to_str()
            .ok_or_else(|| Error::NotIndexed(canonical.clone()))?
            .to_owned();
        let mut index = self.index.write()?;
        let ids = index.add(vec![NewFile {
            path,
            stamp: ingest::stamp_of(&metadata),
            content_hash: Some(ContentHash::of_bytes(bytes)),
            kind: MediaKind::Image,
            facts: PhotoFacts::of_bytes(bytes),
            items: vec![NewItem {
                t: None,
                width: embedded.width,
                height: embedded.height,
                labels: kept_labels(&embedded.logits),
                vector: embedded.vector,
                regions: embedded.regions,
            }],
        }])?;
        checkpoint_if_due(&mut index);
        ids.first().copied().ok_or(Error::NotIndexed(canonical))
    }

    /// The stored feature vector of an indexed item.
    pub fn item_vector(&self, id: ItemId) -> Result<Vec<f32>> {
        self.index.read()?.vector(id)?.ok_or(Error::UnknownItem(id))
    }

    /// The `k` nearest items to a feature vector (among `within` when given).
    pub fn search_vector(
        &self,
        vector: &[f32],
        k: usize,
        mode: SearchMode,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Hit>> {
        Ok(self.index.read()?.search_within(vector, k, mode, within)?)
    }

    /// The items a filter lets through (None: all), for [`SearchOptions::within`].
    pub fn matching_items(&self, filter: &Filter) -> Result<Option<ItemSet>> {
        Ok(self.index.read()?.matching_items(filter)?)
    }

    /// The filter terms that keep what every word of `query` describes (see
    /// [`crate::words`]): a term per word, met when the labels it names add up to
    /// `min_score`. When a word names nothing (or there are no words), one term that nothing
    /// meets: a search that must show the word can only be empty.
    pub fn word_terms(query: &WordQuery, min_score: f32) -> Vec<LabelTerm> {
        if !names_classes(query) {
            return vec![LabelTerm {
                classes: Vec::new(),
                min_score: 1.0,
            }];
        }
        query
            .terms
            .iter()
            .map(|term| LabelTerm {
                classes: term.classes.clone(),
                min_score,
            })
            .collect()
    }

    /// The `k` files whose labels best match the words of `phrase` (see
    /// [`crate::words::Vocabulary::parse`]), among `options.within`: an item's score for a
    /// word is the summed probability of its labels under the word, and for a phrase its
    /// lowest word's; only items scoring at least `min_score` for every word count. Each video
    /// once (its best frame) unless `options.frames`. Empty, with the parsed query saying
    /// why, when a word names no class.
    pub fn search_words(
        &self,
        phrase: &str,
        min_score: f32,
        options: &SearchOptions<'_>,
    ) -> Result<(WordQuery, Vec<Hit>)> {
        let query = crate::words::vocabulary().parse(phrase);
        if !names_classes(&query) {
            return Ok((query, Vec::new()));
        }
        let terms = Engine::word_terms(&query, min_score);
        let index = self.index.read()?;
        let mut scores: Option<HashMap<ItemId, f32>> = None;
        for term in &terms {
            let found = index.class_scores(&term.classes, term.min_score)?;
            scores = Some(match scores {
                None => found.into_iter().collect(),
                Some(before) => found
                    .into_iter()
                    .filter_map(|(id, s)| before.get(&id).map(|&b| (id, b.min(s))))
                    .collect(),
            });
        }
        let mut ranked: Vec<(ItemId, f32)> = scores
            .unwrap_or_default()
            .into_iter()
            .filter(|(id, _)| options.within.is_none_or(|set| set.contains(*id)))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Frames of one video are grouped after reading their rows: read enough of them.
        if options.frames {
            ranked.truncate(options.k);
            return Ok((query, index.hits_of(&ranked)?));
        }
        let mut hits = Vec::new();
        for chunk in ranked.chunks(options.k.max(1).saturating_mul(4)) {
            hits.extend(index.hits_of(chunk)?);
            let grouped = video::best_per_file(hits.clone(), options.k);
            if grouped.len() >= options.k {
                return Ok((query, grouped));
            }
        }
        Ok((query, video::best_per_file(hits, options.k)))
    }

    /// What the metadata of an item's file says (EXIF date, camera, place).
    pub fn facts(&self, id: ItemId) -> Result<PhotoFacts> {
        self.index.read()?.facts(id)?.ok_or(Error::UnknownItem(id))
    }

    /// The stored labels of these items (those that have any), most probable first.
    pub fn labels_of(&self, ids: &[ItemId]) -> Result<HashMap<ItemId, Vec<Label>>> {
        Ok(self.index.read()?.labels_of(ids)?)
    }

    /// How many items carry each class with at least `min_probability`, most common first.
    pub fn label_counts(&self, min_probability: f32) -> Result<Vec<(u16, u64)>> {
        Ok(self.index.read()?.label_counts(min_probability)?)
    }

    /// The `k` most similar files to a feature vector: a video appears once, by its best
    /// frame. Over-fetches items (x4 per round) until `k` distinct files are found or the
    /// index has no more.
    pub fn search_vector_grouped(
        &self,
        vector: &[f32],
        k: usize,
        mode: SearchMode,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Hit>> {
        let mut fetch = k.saturating_mul(4).max(32);
        loop {
            let hits = self.search_vector(vector, fetch, mode, within)?;
            let exhausted = hits.len() < fetch;
            let grouped = video::best_per_file(hits, k);
            if grouped.len() >= k || exhausted || fetch >= MAX_GROUPED_FETCH {
                return Ok(grouped);
            }
            fetch = fetch.saturating_mul(4).min(MAX_GROUPED_FETCH);
        }
    }

    /// The local features of an image file, for spatial verification (see [`verify`]).
    pub fn local_features_of_file(
        &self,
        path: &Path,
    ) -> Result<LocalFeatures, crate::image::ImageError> {
        let decoded =
            crate::image::decode_file(path, verify::DECODE_SIDE, self.featurizer.limits())?;
        LocalFeatures::of(&decoded.image)
    }

    /// The local features of an uploaded image, for spatial verification.
    pub fn local_features_of_bytes(
        &self,
        bytes: &[u8],
    ) -> Result<LocalFeatures, crate::image::ImageError> {
        let decoded =
            crate::image::decode_bytes(bytes, verify::DECODE_SIDE, self.featurizer.limits())?;
        LocalFeatures::of(&decoded.image)
    }

    /// The local features of an indexed item, when a search by that item is to be verified:
    /// None for a video frame, or for an image whose file can no longer be read (the search
    /// then goes on unverified).
    pub fn item_local_features(&self, id: ItemId) -> Result<Option<LocalFeatures>> {
        let item = self.item(id)?.ok_or(Error::UnknownItem(id))?;
        Ok(match self.features_of_item(&item.path, item.kind, item.t) {
            Ok(features) => Some(features),
            Err(e) => {
                tracing::warn!(path = %item.path, error = %e, "searching unverified");
                None
            }
        })
    }

    /// The local features of an indexed image, or of a video frame decoded at its time.
    fn features_of_item(
        &self,
        path: &str,
        kind: MediaKind,
        t: Option<f64>,
    ) -> std::result::Result<LocalFeatures, String> {
        let path = Path::new(path);
        match kind {
            MediaKind::Image => self.local_features_of_file(path).map_err(|e| e.to_string()),
            MediaKind::Video => {
                let t = t.unwrap_or(0.0);
                let options = VideoOptions::default();
                let side = verify::orb::WORKING_SIDE;
                let frame = video::frame_at(path, t, side, &options, video::STILL_TIMEOUT)
                    .map_err(|e| e.to_string())?;
                LocalFeatures::of(&frame).map_err(|e| e.to_string())
            }
        }
    }

    /// Re-ranks the top `options.depth` hits by spatial verification against the query's
    /// local features (see [`verify::rerank`]), the candidates' features computed on all
    /// cores from their files (a video frame's decoded at its time). A file that can no
    /// longer be read keeps its place unverified.
    pub fn verify(
        &self,
        query: &LocalFeatures,
        hits: Vec<Hit>,
        options: VerifyOptions,
    ) -> Vec<Hit> {
        let depth = options.depth.min(hits.len());
        // A panicked verification left nothing behind that needs repair.
        let _turn = self.verifying.lock().unwrap_or_else(|p| p.into_inner());
        let found = crate::parallel_map(&hits[..depth], crate::available_cores(), |hit| match self
            .features_of_item(&hit.path, hit.kind, hit.t)
        {
            Ok(features) => Some(verify::verified(query, &features)),
            Err(e) => {
                tracing::debug!(path = %hit.path, error = %e, "not verified");
                None
            }
        });
        let found: Vec<_> = found.into_iter().map(Option::flatten).collect();
        verify::rerank(hits, &found, options.min_inliers)
    }

    /// The `k` nearest hits to an image query's vector (one per file unless `frames`), the
    /// top `verify.depth` of them re-ranked by spatial verification against the query's local
    /// features when given (from [`Engine::local_features_of_file`], `_of_bytes` or
    /// [`Engine::item_local_features`]).
    ///
    /// When the index keeps regions, the hits are merged with the items whose regions match
    /// the query (at its own and its smaller scales): a file found by a region better than by
    /// its whole takes the region's score and says where (`region`).
    pub fn search_image(
        &self,
        image: &ImageQuery,
        options: &SearchOptions<'_>,
        query: Option<&LocalFeatures>,
    ) -> Result<Vec<Hit>> {
        let SearchOptions {
            k,
            mode,
            frames,
            verify,
            within,
        } = *options;
        let query = query.filter(|_| verify.depth > 0);
        let fetch = if query.is_some() {
            k.max(verify.depth)
        } else {
            k
        };
        let vector = image.vector.as_slice();
        let Some(query) = query else {
            let hits = if frames {
                self.search_vector(vector, fetch, mode, within)?
            } else {
                self.search_vector_grouped(vector, fetch, mode, within)?
            };
            return self.with_regions(image, hits, fetch, frames, within);
        };
        // Verified frame by frame, then grouped: of a video's frames that look alike (a static
        // camera), the one verification confirms best answers, not the first one found.
        let items = match frames {
            true => fetch,
            false => fetch.saturating_mul(4),
        };
        let hits = self.search_vector(vector, items, mode, within)?;
        let hits = self.with_regions(image, hits, items, true, within)?;
        let hits = self.verify(query, hits, verify);
        let mut hits = match frames {
            true => hits,
            false => video::best_per_file(hits, k),
        };
        hits.truncate(k);
        Ok(hits)
    }

    /// `hits` merged with the region matches of `image` (see [`Engine::search_image`]).
    fn with_regions(
        &self,
        image: &ImageQuery,
        hits: Vec<Hit>,
        k: usize,
        frames: bool,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Hit>> {
        let index = self.index.read()?;
        if !index.has_regions() {
            return Ok(hits);
        }
        let queries: Vec<&[f32]> = std::iter::once(image.vector.as_slice())
            .chain(image.smaller.iter().map(Vec::as_slice))
            .collect();
        // A video's frames may take several places before grouping.
        let wanted = if frames { k } else { k.saturating_mul(4) };
        let found = index.search_regions(&queries, wanted, within)?;
        drop(index);
        Ok(merge_region_hits(hits, found, k, !frames))
    }

    /// What an image file searches with: its stored vector when it is indexed and unchanged
    /// (no inference: it is in the index whole), else its features now, at every query scale.
    pub fn image_query_of_file(&self, path: &Path) -> Result<ImageQuery> {
        if let Some((_, vector)) = self.indexed_vector(path)? {
            return Ok(ImageQuery::from(vector));
        }
        Ok(self.featurizer.query_file(path)?.1)
    }

    /// Samples and embeds a video's frames exactly as indexing does (nothing is stored).
    pub fn embed_video(
        &self,
        path: &Path,
        options: &VideoOptions,
    ) -> Result<VideoFrames, VideoError> {
        let never = std::sync::atomic::AtomicBool::new(false);
        video::embed_video(&self.featurizer, path, options, &never, |_| {})
    }

    /// The `k` indexed files (videos and images) that share the most content with the video
    /// at `path`: each of its sampled frames searches, and files are ranked by their mean best
    /// similarity over the query's frames (see [`video::vote`]). An indexed, unchanged video
    /// is answered from its stored frames. Only files with items in `within`, when given.
    pub fn search_video(
        &self,
        path: &Path,
        k: usize,
        mode: SearchMode,
        within: Option<&ItemSet>,
        options: &VideoOptions,
    ) -> Result<Vec<FileMatch>, VideoError> {
        let frames = self.video_query_frames(path, options)?;
        // Enough files per frame that a file ranked k-th overall is rarely missing from a
        // frame's list (a missing file scores 0 for that frame).
        let per_frame = k.saturating_mul(2).max(20);
        let hits = frames
            .iter()
            .map(|(t, vector)| {
                Ok(QueryFrameHits {
                    t: *t,
                    hits: self.search_vector_grouped(vector, per_frame, mode, within)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(video::vote(&hits, k))
    }

    /// The (time, vector) of each frame of a query video: its stored frames when it is indexed
    /// and unchanged (no decoding), else sampled and embedded now.
    pub fn video_query_frames(
        &self,
        path: &Path,
        options: &VideoOptions,
    ) -> Result<Vec<(f64, Vec<f32>)>, VideoError> {
        Ok(match self.indexed_items(path)? {
            Some(items) => items
                .into_iter()
                .map(|(record, vector)| (record.t.unwrap_or(0.0), vector))
                .collect(),
            None => self
                .embed_video(path, options)?
                .items
                .into_iter()
                .map(|item| (item.t.unwrap_or(0.0), item.vector))
                .collect(),
        })
    }

    /// The stored vector of an indexed file whose stamp still matches the file on disk, so a
    /// query by an indexed path costs no inference.
    pub fn indexed_vector(&self, path: &Path) -> Result<Option<(ItemRecord, Vec<f32>)>> {
        Ok(self
            .indexed_items(path)?
            .and_then(|items| items.into_iter().next()))
    }

    /// The stored items (in time order) and vectors of an indexed file whose stamp still
    /// matches the file on disk: all frames of a video, the one item of an image.
    pub fn indexed_items(&self, path: &Path) -> Result<Option<Vec<StoredItem>>> {
        let Ok(canonical) = path.canonicalize() else {
            return Ok(None);
        };
        let Some(key) = canonical.to_str() else {
            return Ok(None);
        };
        let index = self.index.read()?;
        let records = index.items_for_path(key)?;
        let Some(first) = records.first() else {
            return Ok(None);
        };
        let current = std::fs::metadata(&canonical)
            .map(|m| ingest::stamp_of(&m))
            .ok();
        if current != Some(first.stamp) {
            return Ok(None);
        }
        let mut items = Vec::with_capacity(records.len());
        for record in records {
            if let Some(vector) = index.vector(record.id)? {
                items.push((record, vector));
            }
        }
        Ok(Some(items))
    }

    pub fn item(&self, id: ItemId) -> Result<Option<ItemRecord>> {
        Ok(self.index.read()?.item(id)?)
    }

    pub fn remove_items(&self, ids: &[ItemId]) -> Result<usize> {
        let mut index = self.index.write()?;
        let removed = index.remove_items(ids)?;
        checkpoint_if_due(&mut index);
        Ok(removed)
    }

    /// Removes indexed files (and all their items) by path, as given or canonical.
    pub fn remove_paths(&self, paths: &[PathBuf]) -> Result<usize> {
        let keys: Vec<String> = paths
            .iter()
            .map(|p| {
                p.canonicalize()
                    .unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let mut index = self.index.write()?;
        let removed = index.remove_paths(&keys)?;
        checkpoint_if_due(&mut index);
        Ok(removed)
    }

    pub fn stats(&self) -> Result<Stats> {
        Ok(self.index.read()?.stats()?)
    }

    /// Picks up what another process committed to the index; returns how many items changed.
    pub fn refresh(&self) -> Result<usize> {
        Ok(self.index.write()?.refresh()?)
    }

    /// Calls `f` on every stored vector (for export).
    pub fn for_each_vector(&self, f: impl FnMut(&ItemRecord, &[f32])) -> Result<()> {
        Ok(self.index.read()?.for_each_vector(f)?)
    }
}

/// Whether every word of a query names ImageNet classes (and there is one).
fn names_classes(query: &WordQuery) -> bool {
    !query.terms.is_empty() && query.unknown.is_empty()
}

fn lock_poisoned() -> Error {
    Error::Io {
        path: PathBuf::from("<index>"),
        source: std::io::Error::other("index lock poisoned by a panicked thread"),
    }
}

/// Merges region matches into whole-image hits, both best first: an item (with `by_file`, a
/// file) found both ways keeps the better score, and the region's box only when the region
/// scored better. Scores of both kinds are cosines in the same PCA's space (the regions' in its
/// first components), so they rank together; a near-identical whole image scores ~1 and no
/// region of another image outranks it.
fn merge_region_hits(hits: Vec<Hit>, found: Vec<Hit>, k: usize, by_file: bool) -> Vec<Hit> {
    let same = |a: &Hit, b: &Hit| match by_file {
        true => a.path == b.path,
        false => a.id == b.id,
    };
    let mut merged = hits;
    for region_hit in found {
        match merged.iter_mut().find(|hit| same(hit, &region_hit)) {
            Some(hit) if region_hit.score > hit.score => *hit = region_hit,
            Some(_) => {}
            None => merged.push(region_hit),
        }
    }
    merged.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    merged.truncate(k);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Region;

    fn hit(id: ItemId, path: &str, score: f32, region: Option<Region>) -> Hit {
        Hit {
            id,
            score,
            path: path.into(),
            t: None,
            kind: MediaKind::Image,
            inliers: None,
            region,
        }
    }

    #[test]
    fn region_hits_merge_by_best_score_and_keep_their_box() {
        let quarter = Some(Region {
            x: 0.5,
            y: 0.5,
            w: 0.5,
            h: 0.5,
        });
        let whole = vec![hit(1, "a", 0.99, None), hit(2, "b", 0.4, None)];
        let regions = vec![
            hit(3, "c", 0.8, quarter),
            hit(2, "b", 0.7, quarter),
            hit(1, "a", 0.6, quarter),
        ];
        let merged = merge_region_hits(whole.clone(), regions.clone(), 3, true);
        let got: Vec<_> = merged.iter().map(|h| (h.id, h.score, h.region)).collect();
        // The near-identical whole image stays first and whole; b is lifted by its region;
        // c comes in by its region alone.
        assert_eq!(
            got,
            vec![(1, 0.99, None), (3, 0.8, quarter), (2, 0.7, quarter)]
        );
        // k bounds the list; by file, another frame (id) of the same file merges too.
        let frame = vec![hit(9, "a", 0.995, quarter)];
        let merged = merge_region_hits(whole, frame, 1, true);
        assert_eq!(
            (merged.len(), merged[0].id, merged[0].region),
            (1, 9, quarter)
        );
    }
}
