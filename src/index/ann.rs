//! The HNSW index (usearch), derived data rebuilt from the catalog whenever in doubt.
//!
//! On disk: snapshots named `ann-<items>-<tombstones>.usearch` after the [`Watermark`] they
//! cover, written atomically (temp file, fsync, rename, fsync of the directory), each with a
//! hash of its bytes beside it (see `checksum.rs`). The name is the
//! tag, so a snapshot and its tag can never disagree, whatever moment a crash hits. A snapshot
//! of whitened vectors is named `ann-<items>-<tombstones>-w<version>.usearch` after the
//! whitening version it was built with; only snapshots of the active version are used.
//!
//! In memory, an [`Ann`] is either
//! - *loaded*: a mutable in-memory HNSW; the writer's form, and a reader's when no usable
//!   snapshot exists or it lags far behind; or
//! - *viewed*: a memory-mapped, immutable snapshot (opens in milliseconds even at millions of
//!   vectors), plus a brute-force [`Flat`] delta of the items added since and a set of the ids
//!   removed since, which searches filter out.
//!
//! An index has one such state per [`Layer`]: the whole images' vectors (`ann-*` files) and,
//! when it keeps regions, their region vectors (`regions-*` files, int8, one key per region).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::Connection;
use usearch::{IndexOptions, MetricKind, ScalarKind};

use super::catalog::{self, region_key, region_of_key, StoredWhitening, Watermark, MAX_REGIONS};
use super::checksum;
use super::error::{ann_err, IndexError};
use super::filter::ItemSet;
use super::flat::{Flat, Scored};
use super::types::ItemId;

/// HNSW construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node (M); stored in a snapshot, so it only changes on a rebuild.
    pub connectivity: usize,
    /// Beam width while inserting (efConstruction): graph quality vs indexing speed.
    pub expansion_add: usize,
    /// Beam width while searching (ef): recall vs query speed. Can be changed at any time.
    pub expansion_search: usize,
}

impl Default for HnswParams {
    /// Measured on clustered synthetic 1280-d data (see `tests/index_store.rs`, `ann_benchmark`):
    /// recall@10 0.996 against exact search with f16 storage at ~1250 queries per CPU second
    /// end to end (100k vectors, anisotropic noise). Connectivity 16 reached only 0.85 there.
    /// At 1M vectors around real embeddings, whitened to 512 as the default descriptor does:
    /// recall@10 0.982 to 0.987 (three builds) at 1,111 to 1,200 queries per CPU second
    /// (BENCHMARKS.md). expansion_add 256 gave a better graph for twice the insertion time.
    fn default() -> Self {
        HnswParams {
            connectivity: 32,
            expansion_add: 128,
            expansion_search: 64,
        }
    }
}

/// A viewed snapshot's brute-force delta grows to at most this many items; past it, the reader
/// switches to a loaded index (a newer snapshot, if the writer made one, is preferred).
/// At 1280-d, 10k vectors cost about 1-2 ms per query on one core.
const MAX_FLAT_DELTA: usize = 10_000;

/// The largest snapshot a reader hashes before viewing it (about 0.1-0.3 s of hashing).
const VERIFY_VIEWED_UP_TO: u64 = 512 << 20;

/// Rows read from the catalog per replay batch (bounded memory during a full rebuild).
const REPLAY_BATCH: usize = 4096;

/// Batches smaller than this are inserted on the calling thread.
const PARALLEL_ADD_MIN: usize = 256;

/// Which vectors an [`Ann`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    /// One vector per item, keyed by its id.
    Items,
    /// The regions of each item (see [`crate::descriptor::regions`]), keyed by
    /// [`region_key`], projected onto the whitening's first `dims` components when one is
    /// active.
    Regions { dims: usize },
}

impl Layer {
    /// The start of its snapshot files' names.
    fn prefix(self) -> &'static str {
        match self {
            Layer::Items => "ann-",
            Layer::Regions { .. } => "regions-",
        }
    }

    /// The item a key belongs to.
    pub fn item_of(self, key: u64) -> ItemId {
        match self {
            Layer::Items => key as ItemId,
            Layer::Regions { .. } => region_of_key(key).0,
        }
    }

    /// Every key item `id` may have.
    fn keys_of(self, id: ItemId) -> impl Iterator<Item = u64> {
        let regions = match self {
            Layer::Items => 0,
            Layer::Regions { .. } => MAX_REGIONS,
        };
        let own = (regions == 0).then_some(id as u64);
        own.into_iter()
            .chain((0..regions).map(move |r| region_key(id, r)))
    }
}

/// What the HNSW holds: vectors of `dim` values, stored as `quantization`.
///
/// Raw descriptors (1280-d) are stored as f16, half the memory, and a search re-scores its
/// candidates with the catalog's f32 vectors. Whitened vectors that take at most half the raw
/// dimension (512 of 1280 by default) are stored as f32: no more bytes than the raw f16
/// (2 KB at 512-d), and exact, so a search scores its candidates with them directly. Re-reading
/// and projecting each candidate (a 1280 x 512 product per row) was most of a whitened search's
/// time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Storage {
    dim: usize,
    quantization: ScalarKind,
}

impl Storage {
    /// Regions are many per image: int8 (a quarter of f32's memory; cosines move by ~1e-2,
    /// far below what tells a detail's photo from the others), in at most `dims` dimensions.
    fn new(layer: Layer, raw_dim: usize, whitening: Option<&StoredWhitening>) -> Storage {
        if let Layer::Regions { dims } = layer {
            return Storage {
                dim: whitening.map_or(raw_dim, |w| w.info.out_dim.min(dims)),
                quantization: ScalarKind::I8,
            };
        }
        match whitening.map(|w| w.info.out_dim) {
            Some(dim) if 2 * dim <= raw_dim => Storage {
                dim,
                quantization: ScalarKind::F32,
            },
            dim => Storage {
                dim: dim.unwrap_or(raw_dim),
                quantization: ScalarKind::F16,
            },
        }
    }

    fn is_exact(self) -> bool {
        self.quantization == ScalarKind::F32
    }
}

const SNAPSHOT_SUFFIX: &str = ".usearch";
const TEMP_SUFFIX: &str = ".tmp";

/// Who holds the state: a writer may write snapshots, a reader never writes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

/// What `Ann::open` found and did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpenReport {
    /// The watermark of the snapshot used; None when rebuilt from the catalog alone.
    pub snapshot: Option<Watermark>,
    /// Snapshots that were unusable (corrupt, truncated, other config, ahead of the catalog).
    pub rejected: usize,
    pub replayed: Changes,
}

/// Changes applied from the catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub added: usize,
    pub removed: usize,
}

impl Changes {
    pub fn total(self) -> usize {
        self.added + self.removed
    }
}

pub(crate) struct Ann {
    layer: Layer,
    role: Role,
    /// The dimension of the catalog's vectors.
    raw_dim: usize,
    /// The vectors held here: `raw_dim` values, or the whitening's output.
    storage: Storage,
    /// When set, everything held here (and every query) is projected with it.
    whitening: Option<Arc<StoredWhitening>>,
    params: HnswParams,
    hnsw: usearch::Index,
    /// `hnsw` is a memory-mapped snapshot: immutable; additions go to `delta`.
    viewed: bool,
    delta: Flat,
    /// Items removed after the viewed snapshot (empty when loaded: removals go into `hnsw`).
    removed: HashSet<ItemId>,
    /// Everything up to here is reflected in this state.
    applied: Watermark,
    /// The snapshot file this state came from or was last saved to.
    snapshot: Option<Watermark>,
    /// The newest snapshot file present when this state was built, usable or not: a reader
    /// reopens only when a newer one appears, never retries a rejected one in a loop.
    newest_seen: Option<Watermark>,
    /// Bounds concurrent searches to the thread contexts reserved in usearch (it fails a search
    /// when none is free, rather than waiting).
    slots: Slots,
    threads: usize,
}

impl Ann {
    /// Builds the state for `dir`: the newest usable snapshot (viewed for a reader when close to
    /// the catalog, loaded otherwise) plus the catalog rows it misses. A writer deletes the
    /// unusable snapshots and stale temp files it finds.
    pub fn open(
        dir: &Path,
        conn: &mut Connection,
        layer: Layer,
        raw_dim: usize,
        whitening: Option<Arc<StoredWhitening>>,
        params: HnswParams,
        role: Role,
    ) -> Result<(Ann, OpenReport), IndexError> {
        let version = whitening.as_ref().map(|w| w.info.version);
        if role == Role::Writer {
            remove_temp_files(dir, layer);
            remove_other_versions(dir, layer, version)?;
        }
        let storage = Storage::new(layer, raw_dim, whitening.as_deref());
        let threads = crate::available_cores();
        let catalog_wm = catalog::watermark(conn)?;
        let snapshots = list_snapshots(dir, layer, version)?;
        let mut report = OpenReport::default();
        let mut opened = None;
        for (wm, path) in &snapshots {
            let found = open_snapshot(
                path, *wm, catalog_wm, conn, layer, storage, params, role, threads,
            );
            match found {
                Ok(found) => {
                    opened = Some((*wm, found));
                    break;
                }
                Err(reason) => {
                    report.rejected += 1;
                    tracing::warn!(path = %path.display(), %reason, "ignoring unusable ANN snapshot");
                    if role == Role::Writer {
                        remove_snapshot(path);
                    }
                }
            }
        }
        let mut ann = Ann::empty(layer, role, raw_dim, whitening, params)?;
        if let Some((wm, (hnsw, viewed))) = opened {
            report.snapshot = Some(wm);
            ann.hnsw = hnsw;
            ann.viewed = viewed;
            ann.applied = wm;
            ann.snapshot = Some(wm);
        }
        ann.newest_seen = snapshots.first().map(|(wm, _)| *wm);
        report.replayed = ann.catch_up(conn)?;
        if report.replayed.total() > 0 || report.rejected > 0 {
            tracing::info!(
                snapshot = ?report.snapshot,
                rejected = report.rejected,
                replayed_added = report.replayed.added,
                replayed_removed = report.replayed.removed,
                ?layer,
                "ANN index replayed from the catalog"
            );
        }
        Ok((ann, report))
    }

    /// A fresh in-memory state holding the whole catalog projected with `whitening`, built
    /// without touching any other state (the index stays searchable meanwhile).
    pub fn build(
        conn: &mut Connection,
        layer: Layer,
        raw_dim: usize,
        whitening: Arc<StoredWhitening>,
        params: HnswParams,
    ) -> Result<Ann, IndexError> {
        let mut ann = Ann::empty(layer, Role::Writer, raw_dim, Some(whitening), params)?;
        ann.catch_up(conn)?;
        Ok(ann)
    }

    /// A state holding nothing, as of before the first catalog change.
    fn empty(
        layer: Layer,
        role: Role,
        raw_dim: usize,
        whitening: Option<Arc<StoredWhitening>>,
        params: HnswParams,
    ) -> Result<Ann, IndexError> {
        let threads = crate::available_cores();
        let storage = Storage::new(layer, raw_dim, whitening.as_deref());
        Ok(Ann {
            layer,
            role,
            raw_dim,
            storage,
            whitening,
            params,
            hnsw: new_hnsw(storage, params, threads)?,
            viewed: false,
            delta: Flat::new(storage.dim),
            removed: HashSet::new(),
            applied: Watermark::default(),
            snapshot: None,
            newest_seen: None,
            slots: Slots::new(threads),
            threads,
        })
    }

    /// The same state, recorded as projected with `whitening` (which must project exactly as
    /// the one it was built with: only its version and bookkeeping may differ).
    pub fn with_whitening(mut self, whitening: Arc<StoredWhitening>) -> Ann {
        debug_assert_eq!(
            self.whitening.as_ref().map(|w| &w.whitening),
            Some(&whitening.whitening)
        );
        self.whitening = Some(whitening);
        self
    }

    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// The whitening the held vectors were projected with.
    pub fn whitening(&self) -> Option<&Arc<StoredWhitening>> {
        self.whitening.as_ref()
    }

    /// Applies the catalog changes committed since `applied`. Costs one tiny query when there
    /// are none.
    pub fn catch_up(&mut self, conn: &mut Connection) -> Result<Changes, IndexError> {
        // One read transaction: the watermark and the rows come from the same catalog state.
        let tx = conn.transaction()?;
        let target = catalog::watermark(&tx)?;
        if target == self.applied {
            return Ok(Changes::default());
        }
        if self.applied.items > 0 && self.applied.tombstones < catalog::pruned_through(&tx)? {
            // The removals since our state were pruned (the writer saved a snapshot covering
            // them meanwhile): start over from the catalog alone, which is always complete.
            tracing::info!(layer = ?self.layer, "ANN state older than the pruned removals: rebuilding");
            let newest_seen = self.newest_seen;
            let whitening = self.whitening.clone();
            *self = Ann::empty(self.layer, self.role, self.raw_dim, whitening, self.params)?;
            self.newest_seen = newest_seen;
        }
        let from = self.applied;
        let removed = catalog::removed_between(&tx, from, target)?;
        self.apply_removed(&removed)?;
        let mut added = 0;
        let (layer, raw_dim) = (self.layer, self.raw_dim);
        let mut apply = |keys: &[u64], v: &[f32]| {
            added += keys.len();
            match self.project(v) {
                Some(projected) => self.apply_added(keys, &projected),
                None => self.apply_added(keys, v),
            }
        };
        match layer {
            Layer::Items => catalog::for_each_added_between(
                &tx,
                from,
                target,
                raw_dim,
                REPLAY_BATCH,
                |ids, v| apply(&ids.iter().map(|&id| id as u64).collect::<Vec<_>>(), v),
            )?,
            Layer::Regions { .. } => catalog::for_each_region_added_between(
                &tx,
                from,
                target,
                raw_dim,
                REPLAY_BATCH,
                apply,
            )?,
        }
        self.applied = target;
        Ok(Changes {
            added,
            removed: removed.len(),
        })
    }

    /// A raw query in the space held here.
    pub fn project_query(&self, raw: &[f32]) -> Vec<f32> {
        self.project(raw).unwrap_or_else(|| raw.to_vec())
    }

    /// Raw vectors (rows of `raw_dim`) in the space held here; None when that is the raw one.
    fn project(&self, raw: &[f32]) -> Option<Vec<f32>> {
        let whitening = &self.whitening.as_ref()?.whitening;
        let projected = whitening.apply_batch(raw);
        let out_dim = whitening.out_dim;
        if self.storage.dim == out_dim {
            return Some(projected);
        }
        Some(
            projected
                .chunks_exact(out_dim)
                .flat_map(|row| crate::descriptor::regions::truncate(row, self.storage.dim))
                .collect(),
        )
    }

    /// Whether a reader should rebuild its state with [`Ann::open`]: a writer saved a newer
    /// snapshot (re-viewing it empties the delta), or the delta outgrew brute force.
    pub fn wants_reopen(&self, dir: &Path) -> Result<bool, IndexError> {
        if self.role == Role::Writer {
            return Ok(false);
        }
        let newest = list_snapshots(dir, self.layer, self.version())?
            .first()
            .map(|(wm, _)| *wm);
        Ok(newest > self.newest_seen || (self.viewed && self.delta.len() > MAX_FLAT_DELTA))
    }

    fn apply_removed(&mut self, ids: &[ItemId]) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        let layer = self.layer;
        let keys: Vec<u64> = ids.iter().flat_map(|&id| layer.keys_of(id)).collect();
        self.delta
            .remove(&keys.iter().map(|&key| key as ItemId).collect());
        if self.viewed {
            self.removed.extend(ids);
        } else {
            for key in keys {
                self.hnsw.remove(key).map_err(ann_err)?;
            }
        }
        Ok(())
    }

    fn apply_added(&mut self, keys: &[u64], vectors: &[f32]) -> Result<(), IndexError> {
        if self.viewed {
            let ids: Vec<ItemId> = keys.iter().map(|&key| key as ItemId).collect();
            self.delta.extend(&ids, vectors);
            return Ok(());
        }
        // Skipping present keys makes a replay after a failed one harmless.
        let todo: Vec<(u64, &[f32])> = keys
            .iter()
            .copied()
            .zip(vectors.chunks_exact(self.storage.dim))
            .filter(|(key, _)| !self.hnsw.contains(*key))
            .collect();
        let needed = self.hnsw.size() + todo.len();
        if needed > self.hnsw.capacity() {
            let capacity = needed.max(self.hnsw.capacity() * 3 / 2);
            self.hnsw
                .reserve_capacity_and_threads(capacity, self.threads)
                .map_err(ann_err)?;
        }
        let hnsw = &self.hnsw;
        let insert = |part: &[(u64, &[f32])]| -> Result<(), IndexError> {
            for (key, v) in part {
                hnsw.add(*key, v).map_err(ann_err)?;
            }
            Ok(())
        };
        if todo.len() < PARALLEL_ADD_MIN || self.threads == 1 {
            return insert(&todo);
        }
        let chunk = todo.len().div_ceil(self.threads);
        std::thread::scope(|s| {
            let workers: Vec<_> = todo
                .chunks(chunk)
                .map(|part| s.spawn(move || insert(part)))
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    }

    /// Whether the held vectors are exactly the search space's (see [`Storage`]): then
    /// [`Ann::exact_vector_into`] can stand in for the catalog's vector and its projection.
    pub fn holds_exact_vectors(&self) -> bool {
        self.storage.is_exact()
    }

    /// Appends item `id`'s vector in the search space to `out` when held exactly; false when
    /// the vectors held are not exact, or `id` is not held (added or removed since the last
    /// catch-up).
    pub fn exact_vector_into(&self, id: ItemId, out: &mut Vec<f32>) -> Result<bool, IndexError> {
        if !self.storage.is_exact() || self.removed.contains(&id) {
            return Ok(false);
        }
        if let Some(v) = self.delta.get(id) {
            out.extend_from_slice(v);
            return Ok(true);
        }
        let start = out.len();
        out.resize(start + self.storage.dim, 0.0);
        let found = self
            .hnsw
            .get(id as u64, &mut out[start..])
            .map_err(ann_err)?;
        if found == 0 {
            out.truncate(start);
        }
        Ok(found > 0)
    }

    /// The `k` nearest stored vectors by cosine similarity (as stored), best first, each
    /// with its key as `id` (for [`Layer::Items`], the item's id); only those of items in
    /// `within` when given.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Scored>, IndexError> {
        // No more than are held: usearch allocates the `k` it is asked for.
        let k = k.min(self.hnsw.size() + self.delta.len());
        let layer = self.layer;
        let allowed = |key: u64| within.is_none_or(|set| set.contains(layer.item_of(key)));
        let mut found = self.delta.search(query, k, |id| allowed(id as u64));
        if self.hnsw.size() > 0 {
            let matches = {
                let _slot = self.slots.acquire();
                if self.removed.is_empty() && within.is_none() {
                    self.hnsw.search(query, k)
                } else {
                    let removed = &self.removed;
                    self.hnsw.filtered_search(query, k, |key| {
                        !removed.contains(&layer.item_of(key)) && allowed(key)
                    })
                }
                .map_err(ann_err)?
            };
            found.extend(
                matches
                    .keys
                    .iter()
                    .zip(&matches.distances)
                    .map(|(key, distance)| Scored {
                        id: *key as ItemId,
                        // usearch's cosine distance is 1 - cosine similarity.
                        score: 1.0 - distance,
                    }),
            );
        }
        found.sort_unstable_by(|a, b| b.cmp(a));
        found.truncate(k);
        Ok(found)
    }

    /// Saves the state as the snapshot of `applied`, atomically, and deletes older snapshots.
    /// Returns false when the newest snapshot already covers everything.
    pub fn save(&mut self, dir: &Path) -> Result<bool, IndexError> {
        if self.role != Role::Writer || self.viewed {
            return Err(IndexError::ReadOnly);
        }
        if self.snapshot == Some(self.applied) {
            return Ok(false);
        }
        let name = snapshot_name(self.layer, self.applied, self.version());
        let path = dir.join(&name);
        let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
        let started = std::time::Instant::now();
        self.hnsw.save(utf8(&temp)?).map_err(ann_err)?;
        let synced = fs::File::open(&temp).and_then(|f| f.sync_all());
        synced.map_err(|e| IndexError::io(&temp, e))?;
        // The hash is in place before the snapshot is: a snapshot is never seen without it.
        let hash_temp = dir.join(format!("{name}{}{TEMP_SUFFIX}", checksum::SUFFIX));
        checksum::write(&temp, &path, &hash_temp)?;
        fs::rename(&temp, &path).map_err(|e| IndexError::io(&path, e))?;
        sync_dir(dir)?;
        for (wm, old) in list_snapshots(dir, self.layer, self.version())? {
            if wm != self.applied && wm.within(self.applied) {
                remove_snapshot(&old);
            }
        }
        tracing::info!(
            path = %path.display(),
            vectors = self.hnsw.size(),
            ms = started.elapsed().as_millis() as u64,
            "saved ANN snapshot"
        );
        self.snapshot = Some(self.applied);
        self.newest_seen = self.newest_seen.max(Some(self.applied));
        Ok(true)
    }

    /// The watermark of the snapshot file this state matches, if it matches one.
    pub fn saved(&self) -> Option<Watermark> {
        self.snapshot.filter(|wm| *wm == self.applied)
    }

    /// How many catalog changes (ids added, removals) this state holds beyond its snapshot
    /// file; an upper bound, as added ids may have been removed since.
    pub fn unsaved(&self) -> u64 {
        let saved = self.snapshot.unwrap_or_default();
        (self.applied.items - saved.items).unsigned_abs()
            + (self.applied.tombstones - saved.tombstones).unsigned_abs()
    }

    fn version(&self) -> Option<i64> {
        self.whitening.as_ref().map(|w| w.info.version)
    }

    pub fn expansion_search(&self) -> usize {
        self.hnsw.expansion_search()
    }

    pub fn set_expansion_search(&mut self, n: usize) {
        self.params.expansion_search = n;
        self.hnsw.change_expansion_search(n);
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Whether searches run on a memory-mapped snapshot (for tests and logs).
    pub fn is_viewed(&self) -> bool {
        self.viewed
    }
}

/// Views or loads one snapshot and checks it against the catalog; the error is why not.
#[allow(clippy::too_many_arguments)]
fn open_snapshot(
    path: &Path,
    wm: Watermark,
    catalog_wm: Watermark,
    conn: &Connection,
    layer: Layer,
    storage: Storage,
    params: HnswParams,
    role: Role,
    threads: usize,
) -> Result<(usearch::Index, bool), String> {
    // Ahead of the catalog: the catalog lost commits (restored from a backup?), and ids may
    // have been reused since: the snapshot cannot be trusted.
    if !wm.within(catalog_wm) {
        return Err(format!(
            "it covers {wm:?}, beyond the catalog's {catalog_wm:?}"
        ));
    }
    let path_str = utf8(path).map_err(|e| e.to_string())?;
    let meta = usearch::Index::metadata(path_str).map_err(|e| e.to_string())?;
    if meta.dimensions as usize != storage.dim
        || meta.metric != MetricKind::Cos
        || meta.quantization != storage.quantization
        || meta.multi
    {
        return Err(format!(
            "built for {}-d {:?}/{:?}, expected {}-d Cos/{:?}",
            meta.dimensions, meta.metric, meta.quantization, storage.dim, storage.quantization
        ));
    }
    let behind = catalog::count_added_since(conn, wm).map_err(|e| e.to_string())?;
    let view = role == Role::Reader && behind as usize <= MAX_FLAT_DELTA;
    // A reader viewing a large snapshot skips the hash, which would read every byte of a
    // file it otherwise maps in milliseconds; the writer's open (which reads it all anyway)
    // catches the damage and replaces the snapshot.
    let bytes = fs::metadata(path).map_or(0, |m| m.len());
    if !view || bytes <= VERIFY_VIEWED_UP_TO {
        checksum::verify(path)?;
    }
    let hnsw = new_hnsw(storage, params, threads).map_err(|e| e.to_string())?;
    let opened = if view {
        hnsw.view(path_str)
    } else {
        hnsw.load(path_str)
    };
    opened.map_err(|e| e.to_string())?;
    hnsw.change_expansion_search(params.expansion_search);
    // Counting the covered rows costs a scan of the catalog (about 1 s at 1M items): worth it
    // for the writer, whose snapshot becomes the next one, too slow for a reader's fast open.
    // A reader relies on the name check above and usearch's own structural checks. So do
    // regions: how many a removed item had is not kept, so their count cannot be checked.
    if role == Role::Reader || layer != Layer::Items {
        return Ok((hnsw, view));
    }
    let expected = catalog::count_covered(conn, wm).map_err(|e| e.to_string())?;
    if hnsw.size() as u64 != expected {
        return Err(format!(
            "it holds {} vectors, the catalog says {expected}",
            hnsw.size()
        ));
    }
    Ok((hnsw, view))
}

fn new_hnsw(
    storage: Storage,
    params: HnswParams,
    threads: usize,
) -> Result<usearch::Index, IndexError> {
    let options = IndexOptions {
        dimensions: storage.dim,
        metric: MetricKind::Cos,
        quantization: storage.quantization,
        connectivity: params.connectivity,
        expansion_add: params.expansion_add,
        expansion_search: params.expansion_search,
        multi: false,
    };
    let hnsw = usearch::Index::new(&options).map_err(ann_err)?;
    // Thread contexts survive `view`/`load`; without them every search fails.
    hnsw.reserve_capacity_and_threads(0, threads)
        .map_err(ann_err)?;
    Ok(hnsw)
}

/// The file name of `layer`'s snapshot covering `wm`, built with whitening `version` (None:
/// raw).
fn snapshot_name(layer: Layer, wm: Watermark, version: Option<i64>) -> String {
    let whitening = version.map(|v| format!("-w{v}")).unwrap_or_default();
    format!(
        "{}{}-{}{whitening}{SNAPSHOT_SUFFIX}",
        layer.prefix(),
        wm.items,
        wm.tombstones
    )
}

/// The watermark and whitening version a snapshot file name of `layer` says it holds.
fn parse_snapshot_name(layer: Layer, name: &str) -> Option<(Watermark, Option<i64>)> {
    let middle = name
        .strip_prefix(layer.prefix())?
        .strip_suffix(SNAPSHOT_SUFFIX)?;
    let (items, rest) = middle.split_once('-')?;
    let (tombstones, version) = match rest.split_once("-w") {
        Some((tombstones, version)) => (tombstones, Some(version.parse().ok()?)),
        None => (rest, None),
    };
    let wm = Watermark {
        items: items.parse().ok()?,
        tombstones: tombstones.parse().ok()?,
    };
    Some((wm, version))
}

/// Every snapshot file of `layer` in `dir` with its watermark and whitening version.
fn all_snapshots(
    dir: &Path,
    layer: Layer,
) -> Result<Vec<(Watermark, Option<i64>, PathBuf)>, IndexError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| IndexError::io(dir, e))? {
        let entry = entry.map_err(|e| IndexError::io(dir, e))?;
        let name = entry.file_name();
        if let Some((wm, version)) = name.to_str().and_then(|n| parse_snapshot_name(layer, n)) {
            found.push((wm, version, entry.path()));
        }
    }
    Ok(found)
}

/// The snapshot files of `layer` in `dir` built with whitening `version`, newest first.
fn list_snapshots(
    dir: &Path,
    layer: Layer,
    version: Option<i64>,
) -> Result<Vec<(Watermark, PathBuf)>, IndexError> {
    let mut found: Vec<_> = all_snapshots(dir, layer)?
        .into_iter()
        .filter(|(_, v, _)| *v == version)
        .map(|(wm, _, path)| (wm, path))
        .collect();
    found.sort_by_key(|(wm, _)| std::cmp::Reverse(*wm));
    Ok(found)
}

/// Deletes the snapshots of any other whitening than `keep` (a writer's cleanup after a
/// switch, or of a switch that crashed before it was committed).
pub(crate) fn remove_other_versions(
    dir: &Path,
    layer: Layer,
    keep: Option<i64>,
) -> Result<(), IndexError> {
    for (_, version, path) in all_snapshots(dir, layer)? {
        if version != keep {
            remove_snapshot(&path);
        }
    }
    Ok(())
}

/// Total size of `layer`'s snapshot files in `dir`.
/// Whether `dir` holds any item snapshot (of any whitening): the trace of an index.
pub(crate) fn has_snapshots(dir: &Path) -> Result<bool, IndexError> {
    Ok(!all_snapshots(dir, Layer::Items)?.is_empty())
}

pub(crate) fn snapshot_bytes(dir: &Path, layer: Layer) -> Result<u64, IndexError> {
    let mut total = 0;
    for (_, _, path) in all_snapshots(dir, layer)? {
        total += fs::metadata(&path)
            .map_err(|e| IndexError::io(&path, e))?
            .len();
    }
    Ok(total)
}

/// Removes `layer`'s temp files left by a writer killed while saving.
fn remove_temp_files(dir: &Path, layer: Layer) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(layer.prefix()) {
            continue;
        }
        // A hash left without its snapshot (a crash between writing the two) goes too.
        let orphan_hash = name
            .strip_suffix(checksum::SUFFIX)
            .is_some_and(|snapshot| !dir.join(snapshot).exists());
        if name.ends_with(TEMP_SUFFIX) || orphan_hash {
            remove_file_logged(&entry.path());
        }
    }
}

/// Best effort: a leftover file wastes disk space but is never read as valid.
/// Deletes a snapshot and its hash.
fn remove_snapshot(path: &Path) {
    remove_file_logged(path);
    let hash = checksum::path_of(path);
    if hash.exists() {
        remove_file_logged(&hash);
    }
}

fn remove_file_logged(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove old ANN file");
    }
}

/// Makes a rename durable: on POSIX the directory entry itself must be flushed.
fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IndexError::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// usearch takes paths as UTF-8 strings.
fn utf8(path: &Path) -> Result<&str, IndexError> {
    path.to_str().ok_or_else(|| {
        IndexError::InvalidArgument(format!("index path is not UTF-8: {}", path.display()))
    })
}

/// A counting semaphore.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct SlotGuard<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_round_trip_and_reject_others() {
        let wm = Watermark {
            items: 1234,
            tombstones: 7,
        };
        let items = Layer::Items;
        let regions = Layer::Regions { dims: 256 };
        assert_eq!(snapshot_name(items, wm, None), "ann-1234-7.usearch");
        assert_eq!(snapshot_name(items, wm, Some(3)), "ann-1234-7-w3.usearch");
        assert_eq!(
            snapshot_name(regions, wm, Some(3)),
            "regions-1234-7-w3.usearch"
        );
        assert_eq!(
            parse_snapshot_name(items, "ann-1234-7.usearch"),
            Some((wm, None))
        );
        assert_eq!(
            parse_snapshot_name(regions, &snapshot_name(regions, wm, Some(12))),
            Some((wm, Some(12)))
        );
        // One layer never takes the other's files.
        assert_eq!(parse_snapshot_name(items, "regions-1234-7.usearch"), None);
        assert_eq!(parse_snapshot_name(regions, "ann-1234-7.usearch"), None);
        assert_eq!(parse_snapshot_name(items, "ann-1234-7-wx.usearch"), None);
        assert_eq!(parse_snapshot_name(items, "ann-1234-7.usearch.tmp"), None);
        assert_eq!(parse_snapshot_name(items, "ann-x-7.usearch"), None);
        assert_eq!(parse_snapshot_name(items, "catalog.sqlite"), None);
    }

    #[test]
    fn region_keys_belong_to_their_item() {
        let regions = Layer::Regions { dims: 256 };
        let keys: Vec<u64> = regions.keys_of(5).collect();
        assert_eq!(keys.len(), MAX_REGIONS);
        assert!(keys.iter().all(|&k| regions.item_of(k) == 5));
        assert_eq!(Layer::Items.keys_of(5).collect::<Vec<_>>(), vec![5]);
        assert_eq!(Layer::Items.item_of(5), 5);
    }
}
