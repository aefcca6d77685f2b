//! The index: a SQLite catalog (source of truth) and an HNSW index derived from it.
//!
//! An index is a directory holding `catalog.sqlite` (files, items and their f32 vectors, WAL
//! mode) and `ann-<items>-<tombstones>.usearch` snapshots of the HNSW graph. Crash safety comes
//! from never trusting the derived part: every open checks the newest snapshot against the
//! catalog and replays what it misses (or rebuilds it), so a `kill -9` at any moment loses
//! nothing committed and cannot leave the two disagreeing.
//!
//! With a PCA-whitening active (see [`crate::descriptor::whitening`]), the ANN holds the
//! whitened vectors and every search (approximate or exact) scores in the whitened space; the
//! catalog keeps the raw vectors, which a whitening is learned (and re-learned) from.
//!
//! One process writes ([`Index::create_or_open`], [`Index::open`]), which a lock on the
//! directory enforces (a second writer gets [`IndexError::Locked`]); any number read
//! ([`Index::open_read_only`]) and pick up the writer's commits with [`Index::refresh`].

mod ann;
mod catalog;
mod checksum;
mod duplicate_store;
mod error;
mod filter;
mod flat;
mod label_store;
mod layers;
mod region_codec;
mod region_search;
mod types;
mod writer_lock;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::image::PhotoFacts;

pub use ann::HnswParams;
pub use duplicate_store::{ordered_pair, DuplicatePair, DuplicateScan, ImageFacts};
pub use error::IndexError;
pub use filter::{Filter, ItemSet, LabelTerm, Near, TakenRange};
pub use label_store::{decode_labels, encode_labels};
pub use types::{
    ContentHash, FileStamp, Hit, IndexConfig, ItemId, ItemRecord, MediaKind, NewFile, NewItem,
    Region, Regions, SearchMode, Stats, WhiteningInfo,
};

use crate::descriptor::whitening::{Whitening, WhiteningOptions, MAX_TRAINING_VECTORS};
use ann::Role;
use catalog::{ReadPool, StoredWhitening, CATALOG_FILE, RECORD_COLUMNS};
use flat::{dot, Scored, TopK};
use layers::Layers;
pub(crate) use region_codec::{decode as decode_regions, encode as encode_regions};
use writer_lock::WriterLock;

/// Extra ANN candidates fetched beyond `k`: the ones near the k-th are re-scored with the
/// exact f32 vectors, and the rest make up for hits that another process removed since our
/// last refresh.
fn candidates_for(k: usize) -> usize {
    k.saturating_add(k / 2).saturating_add(8)
}

/// How far below the k-th best approximate score a candidate is still re-scored exactly: the
/// ANN's f16 vectors move a cosine by about 1e-3 at most (1280 dimensions, 11-bit mantissas),
/// so the exact top k is among the candidates within this margin.
const RESCORE_MARGIN: f32 = 4e-3;

/// A hit and its vector in the index's space (what query expansion adds up).
struct Ranked {
    hit: Hit,
    vector: Vec<f32>,
}

/// Filters that let through at most this many items are searched by scoring each of their
/// items (~1 µs each from the ANN's vectors, a catalog read otherwise) rather than by the graph.
const SCORE_EACH_WITHIN: usize = 4096;

/// Catalog changes an ANN snapshot may miss before [`Index::checkpoint_if_due`] saves a new
/// one: replaying 1,000 rows costs well under a second on open.
const CHECKPOINT_EVERY: u64 = 1000;

/// Rows projected per gemm by an exact search under whitening.
const EXACT_BATCH: usize = 1024;

/// A whitening learned and its ANN built by [`Index::prepare_whitening`], waiting for
/// [`Index::install_whitening`].
pub struct PreparedWhitening {
    whitening: Whitening,
    learned_from: u64,
    ann: Layers,
}

impl PreparedWhitening {
    /// How many items the collection held when it was learned.
    pub fn learned_from(&self) -> u64 {
        self.learned_from
    }
}

/// A handle on an index directory. `Send + Sync`: searches (`&self`) may run on many threads.
pub struct Index {
    dir: PathBuf,
    config: IndexConfig,
    /// The write connection; None for a read-only handle.
    writer: Option<Mutex<Connection>>,
    /// Held with `writer`: no other process writes this index meanwhile.
    _writer_lock: Option<WriterLock>,
    /// Removals (tombstone seqs) up to here are covered by the snapshot before the newest: the
    /// next checkpoint prunes them from the catalog.
    prunable_tombstones: i64,
    readers: ReadPool,
    ann: Layers,
}

impl Index {
    /// Opens the index in `dir` for writing, creating the directory and the index if needed.
    /// Fails with [`IndexError::ConfigMismatch`] if it was built with another model, dim or descriptor.
    pub fn create_or_open(dir: &Path, config: &IndexConfig) -> Result<Index, IndexError> {
        Self::create_or_open_with(dir, config, HnswParams::default())
    }

    /// [`Index::create_or_open`] with explicit HNSW parameters (connectivity and expansion_add
    /// apply to a new or rebuilt graph, expansion_search at once).
    pub fn create_or_open_with(
        dir: &Path,
        config: &IndexConfig,
        params: HnswParams,
    ) -> Result<Index, IndexError> {
        if config.dim == 0 || config.model.is_empty() {
            return Err(IndexError::InvalidArgument(format!(
                "an index needs a model name and a dimension > 0, got {config:?}"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
        Self::open_writer(dir, Some(config), params)
    }

    /// Opens an existing index for writing.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        Self::open_with(dir, HnswParams::default())
    }

    /// [`Index::open`] with explicit HNSW parameters.
    pub fn open_with(dir: &Path, params: HnswParams) -> Result<Index, IndexError> {
        Self::open_writer(dir, None, params)
    }

    /// Opens an existing index for searching only: writes nothing (not even a repaired ANN
    /// snapshot) and never blocks the writer. The newest snapshot is memory-mapped, so this is
    /// fast at any size as long as a writer checkpointed recently.
    pub fn open_read_only(dir: &Path) -> Result<Index, IndexError> {
        Self::open_read_only_with(dir, HnswParams::default())
    }

    /// [`Index::open_read_only`] with explicit HNSW parameters.
    pub fn open_read_only_with(dir: &Path, params: HnswParams) -> Result<Index, IndexError> {
        let path = catalog_path(dir)?;
        let mut conn = catalog::open_reader(&path)?;
        check_not_lost(&conn, dir)?;
        catalog::check_schema_for_reading(&conn, dir)?;
        let config = catalog::read_config(&conn)?.ok_or_else(|| not_found(dir))?;
        let whitening = catalog::active_whitening(&conn)?.map(Arc::new);
        let (ann, _) = Layers::open(dir, &mut conn, &config, whitening, params, Role::Reader)?;
        Ok(Index {
            dir: dir.to_path_buf(),
            config,
            writer: None,
            _writer_lock: None,
            prunable_tombstones: 0,
            readers: ReadPool::new(path),
            ann,
        })
    }

    fn open_writer(
        dir: &Path,
        wanted: Option<&IndexConfig>,
        params: HnswParams,
    ) -> Result<Index, IndexError> {
        let path = dir.join(CATALOG_FILE);
        if wanted.is_none() {
            catalog_path(dir)?;
        }
        let lock = WriterLock::acquire(dir)?;
        let mut conn = catalog::open_writer(&path, wanted.is_some())?;
        check_not_lost(&conn, dir)?;
        let config = catalog::migrate(&mut conn, dir, wanted)?.ok_or_else(|| not_found(dir))?;
        if let Some(wanted) = wanted {
            if *wanted != config {
                return Err(IndexError::ConfigMismatch {
                    dir: dir.to_path_buf(),
                    found: config.to_string(),
                    wanted: wanted.to_string(),
                });
            }
        }
        let whitening = catalog::active_whitening(&conn)?.map(Arc::new);
        let (ann, report) = Layers::open(dir, &mut conn, &config, whitening, params, Role::Writer)?;
        let mut index = Index {
            dir: dir.to_path_buf(),
            config,
            writer: Some(Mutex::new(conn)),
            _writer_lock: Some(lock),
            prunable_tombstones: report.snapshot.map_or(0, |wm| wm.tombstones),
            readers: ReadPool::new(path),
            ann,
        };
        // Save the repaired graph at once, so that readers can view it and the next open is
        // fast; tiny replays wait for the writer's next regular checkpoint.
        if report.rejected > 0 || report.replayed.total() >= 1000 {
            index.checkpoint()?;
        }
        Ok(index)
    }

    /// Whether `dir` holds an index.
    pub fn exists(dir: &Path) -> bool {
        catalog_path(dir).is_ok()
    }

    pub fn config(&self) -> &IndexConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The HNSW beam width used by searches: higher = better recall, slower queries.
    pub fn expansion_search(&self) -> usize {
        self.ann.items.expansion_search()
    }

    pub fn set_expansion_search(&mut self, n: usize) {
        self.ann.items.set_expansion_search(n.max(1));
    }

    pub fn hnsw_params(&self) -> HnswParams {
        self.ann.items.params()
    }

    /// Size and mtime of every indexed file, by path; files with items stored before labels
    /// and facts were kept are left out, so that indexing takes them as new and fills those in.
    pub fn file_stamps(&self) -> Result<HashMap<String, FileStamp>, IndexError> {
        let conn = self.readers.get()?;
        let unlabelled = Index::unlabelled_through(&conn)?;
        let mut stmt = conn.prepare(
            "SELECT path, size, mtime_ns FROM files f WHERE ?1 = 0 OR NOT EXISTS
                 (SELECT 1 FROM items i WHERE i.file_id = f.id AND i.id <= ?1)",
        )?;
        let stamps = stmt
            .query_map([unlabelled], |r| {
                let stamp = FileStamp {
                    size: r.get::<_, i64>(1)? as u64,
                    mtime_ns: r.get(2)?,
                };
                Ok((r.get(0)?, stamp))
            })?
            .collect::<Result<_, _>>()?;
        Ok(stamps)
    }

    /// The stamp and content hash an indexed file was stored with, if it is indexed.
    pub fn stored_file(
        &self,
        path: &str,
    ) -> Result<Option<(FileStamp, Option<ContentHash>)>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt =
            conn.prepare_cached("SELECT size, mtime_ns, content_hash FROM files WHERE path = ?1")?;
        let row = stmt
            .query_row([path], |r| {
                let stamp = FileStamp {
                    size: r.get::<_, i64>(0)? as u64,
                    mtime_ns: r.get(1)?,
                };
                let hash: Option<Vec<u8>> = r.get(2)?;
                Ok((stamp, hash))
            })
            .optional()?;
        Ok(row.map(|(stamp, hash)| (stamp, hash.as_deref().and_then(ContentHash::from_slice))))
    }

    /// Stores `files` in one transaction; a path already present has its items replaced.
    /// Returns the new items' ids, in order (files, then their items).
    pub fn add(&mut self, files: Vec<NewFile>) -> Result<Vec<ItemId>, IndexError> {
        let ids = self.add_to_catalog(files)?;
        self.apply_committed()?;
        Ok(ids)
    }

    /// [`Index::add`] without bringing the ANN up to date: it catches up at the next
    /// [`Index::checkpoint`] (or add, removal, refresh), in large parallel batches, or is
    /// rebuilt at once by a new whitening. For bulk loads (`import`): searches through this
    /// handle miss the files until then; other processes see them as usual, and a crash loses
    /// nothing (the ANN is derived from the catalog).
    pub fn add_to_catalog(&mut self, files: Vec<NewFile>) -> Result<Vec<ItemId>, IndexError> {
        for file in &files {
            for item in &file.items {
                self.check_vector(&item.vector)?;
                self.check_regions(item)?;
                label_store::check_labels(&item.labels)?;
            }
        }
        let (dim, keep_regions) = (self.config.dim, self.has_regions());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut ids = Vec::new();
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO files (path, size, mtime_ns, kind, added_at, content_hash, taken,
                     camera_make, camera_model, latitude, longitude)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (path) DO UPDATE SET size = excluded.size,
                     mtime_ns = excluded.mtime_ns, kind = excluded.kind,
                     added_at = excluded.added_at, content_hash = excluded.content_hash,
                     taken = excluded.taken, camera_make = excluded.camera_make,
                     camera_model = excluded.camera_model, latitude = excluded.latitude,
                     longitude = excluded.longitude
                 RETURNING id",
            )?;
            let mut clear = tx.prepare_cached("DELETE FROM items WHERE file_id = ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO items (file_id, t, width, height, vector) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut insert_regions = tx.prepare_cached(
                "INSERT INTO regions (item_id, boxes, vectors) VALUES (?1, ?2, ?3)",
            )?;
            let mut insert_label = tx.prepare_cached(
                "INSERT OR REPLACE INTO labels (class, item_id, probability) VALUES (?1, ?2, ?3)",
            )?;
            for file in &files {
                let facts = &file.facts;
                let file_id: i64 = upsert.query_row(
                    params![
                        file.path,
                        file.stamp.size as i64,
                        file.stamp.mtime_ns,
                        file.kind.as_str(),
                        now,
                        file.content_hash.as_ref().map(|h| h.0.as_slice()),
                        facts.taken,
                        facts.camera_make,
                        facts.camera_model,
                        facts.latitude,
                        facts.longitude,
                    ],
                    |r| r.get(0),
                )?;
                clear.execute([file_id])?;
                for item in &file.items {
                    insert.execute(params![
                        file_id,
                        item.t,
                        item.width,
                        item.height,
                        catalog::encode_vector(&item.vector)
                    ])?;
                    let id = tx.last_insert_rowid();
                    if keep_regions && !item.regions.is_empty() {
                        let encoded = region_codec::encode(&item.regions, dim);
                        insert_regions.execute(params![id, encoded.boxes, encoded.vectors])?;
                    }
                    for label in &item.labels {
                        insert_label.execute(params![label.class, id, label.probability])?;
                    }
                    ids.push(id);
                }
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Forgets the given files and all their items; returns how many files were present.
    pub fn remove_paths(&mut self, paths: &[String]) -> Result<usize, IndexError> {
        self.remove_where("DELETE FROM files WHERE path = ?1", paths)
    }

    /// Removes single items (e.g. one bad frame). Their file stays known, so an unchanged file
    /// is not re-added by the next scan; use [`Index::remove_paths`] to forget it.
    /// Returns how many items were present.
    pub fn remove_items(&mut self, ids: &[ItemId]) -> Result<usize, IndexError> {
        self.remove_where("DELETE FROM items WHERE id = ?1", ids)
    }

    fn remove_where<P: rusqlite::ToSql>(
        &mut self,
        sql: &str,
        keys: &[P],
    ) -> Result<usize, IndexError> {
        let conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut removed = 0;
        {
            let mut stmt = tx.prepare_cached(sql)?;
            for key in keys {
                removed += stmt.execute([key])?;
            }
        }
        tx.commit()?;
        self.apply_committed()?;
        Ok(removed)
    }

    /// Brings the ANN state up to what was just committed (reading it back from the catalog:
    /// one code path for our own writes, other processes' and crash replay).
    fn apply_committed(&mut self) -> Result<(), IndexError> {
        let conn = self
            .writer
            .as_mut()
            .ok_or(IndexError::ReadOnly)?
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        self.ann.catch_up(conn)?;
        Ok(())
    }

    fn writer(&mut self) -> Result<&mut Connection, IndexError> {
        Ok(self
            .writer
            .as_mut()
            .ok_or(IndexError::ReadOnly)?
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()))
    }

    /// The `k` items most similar to `query` (an L2-normalised vector), best first, with the
    /// descriptor's query expansion: a first search for the expansion's neighbours, then the
    /// search for the expanded query (both modes alike, so that they agree).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        mode: SearchMode,
    ) -> Result<Vec<Hit>, IndexError> {
        self.search_within(query, k, mode, None)
    }

    /// [`Index::search`] among the items of `within` only (see [`Index::matching_items`]);
    /// the query's expansion still draws on the whole collection.
    pub fn search_within(
        &self,
        query: &[f32],
        k: usize,
        mode: SearchMode,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check_vector(query)?;
        if k == 0 || within.is_some_and(ItemSet::is_empty) {
            return Ok(Vec::new());
        }
        let mut query: Cow<[f32]> = match self.ann.items.whitening() {
            Some(w) => Cow::Owned(w.whitening.apply(query)),
            None => Cow::Borrowed(query),
        };
        let mut conn = self.readers.get()?;
        // One read transaction: candidates and their rows come from the same catalog state.
        let tx = conn.transaction()?;
        let expansion = self.config.descriptor.query_expansion;
        if expansion.is_on() {
            let first = self.rank(&tx, &query, expansion.neighbours, mode, None)?;
            let expanded = expansion.expand(
                &query,
                first.iter().map(|r| (r.hit.score, r.vector.as_slice())),
            );
            query = Cow::Owned(expanded);
        }
        let ranked = self.rank(&tx, &query, k, mode, within)?;
        Ok(ranked.into_iter().map(|r| r.hit).collect())
    }

    /// The `k` best items for a query in the index's space, each scored with its exact f32
    /// vector (whitened when a whitening is active), best first.
    fn rank(
        &self,
        conn: &Connection,
        query: &[f32],
        k: usize,
        mode: SearchMode,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Ranked>, IndexError> {
        let wanted = candidates_for(k);
        let candidates = match (mode, within) {
            // A narrow filter: scoring its items one by one beats a graph search that has to
            // walk past everything the filter rejects.
            (_, Some(set)) if set.len() <= SCORE_EACH_WITHIN => {
                let mut top = TopK::new(wanted);
                for &id in set.ids() {
                    if let Some(score) = self.exact_score(conn, query, id)? {
                        top.push(Scored { id, score });
                    }
                }
                top.into_sorted()
            }
            (SearchMode::Approximate, _) => self.ann.items.search(query, wanted, within)?,
            (SearchMode::Exact, _) => self.exact_candidates(conn, query, wanted, within)?,
        };
        // The row's vector is read only when the ANN does not hold the candidate exactly.
        let exact_in_ann = self.ann.items.holds_exact_vectors();
        let mut stmt = conn.prepare_cached(if exact_in_ann {
            "SELECT f.path, i.t, f.kind FROM items i JOIN files f ON f.id = i.file_id
             WHERE i.id = ?1"
        } else {
            "SELECT f.path, i.t, f.kind, i.vector FROM items i JOIN files f ON f.id = i.file_id
             WHERE i.id = ?1"
        })?;
        let mut vector_only = conn.prepare_cached("SELECT vector FROM items WHERE id = ?1")?;
        let reserve = candidates.len().min(k.saturating_add(1));
        // Hits with their vector in the search space (taken from the ANN), and hits with their
        // catalog vector still to project.
        let (mut ready, mut ready_vectors) = (Vec::with_capacity(reserve), Vec::new());
        let (mut raw, mut raw_vectors) = (Vec::new(), Vec::new());
        // The candidates' order is by the ANN's scores (f16 when it holds raw vectors): the rows
        // read are the first `k` found, and any candidate close enough to the k-th to be above
        // it once rescored.
        let mut kth_score = None;
        for c in candidates {
            if kth_score.is_some_and(|kth| c.score < kth - RESCORE_MARGIN) {
                break;
            }
            let row = stmt
                .query_row([c.id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<f64>>(1)?,
                        r.get::<_, String>(2)?,
                        if exact_in_ann {
                            None
                        } else {
                            Some(r.get::<_, Vec<u8>>(3)?)
                        },
                    ))
                })
                .optional()?;
            // Absent: removed by another process after our last refresh.
            let Some((path, t, kind, blob)) = row else {
                continue;
            };
            let kind = MediaKind::parse(&kind)
                .ok_or_else(|| IndexError::Corrupt(format!("unknown media kind {kind:?}")))?;
            let hit = Hit {
                id: c.id,
                score: 0.0,
                path,
                t,
                kind,
                inliers: None,
                region: None,
            };
            if self.ann.items.exact_vector_into(c.id, &mut ready_vectors)? {
                ready.push(hit);
            } else {
                let blob = match blob {
                    Some(blob) => blob,
                    // Only in the catalog (exact mode, committed since our last refresh).
                    None => vector_only.query_row([c.id], |r| r.get::<_, Vec<u8>>(0))?,
                };
                catalog::decode_vector_into(&blob, self.config.dim, c.id, &mut raw_vectors)?;
                raw.push(hit);
            }
            if ready.len() + raw.len() == k {
                kth_score = Some(c.score);
            }
        }
        // Into the search space, all at once (each vector exactly as it would be alone, and as
        // the ANN holds it).
        let (raw_vectors, dim) = match self.ann.items.whitening() {
            Some(w) => (w.whitening.apply_batch(&raw_vectors), w.whitening.out_dim),
            None => (raw_vectors, self.config.dim),
        };
        let mut ranked: Vec<Ranked> = ready
            .into_iter()
            .zip(ready_vectors.chunks_exact(dim))
            .chain(raw.into_iter().zip(raw_vectors.chunks_exact(dim)))
            .map(|(mut hit, vector)| {
                hit.score = dot(query, vector);
                Ranked {
                    hit,
                    vector: vector.to_vec(),
                }
            })
            .collect();
        ranked.sort_by(|a, b| {
            (b.hit.score.total_cmp(&a.hit.score)).then_with(|| a.hit.id.cmp(&b.hit.id))
        });
        ranked.truncate(k);
        Ok(ranked)
    }

    /// Brute force over every item of the catalog (`query` is already in the index's space),
    /// or every item of `within`.
    fn exact_candidates(
        &self,
        conn: &Connection,
        query: &[f32],
        k: usize,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Scored>, IndexError> {
        let mut top = TopK::new(k);
        let mut push = |scored: Scored| {
            if within.is_none_or(|set| set.contains(scored.id)) {
                top.push(scored);
            }
        };
        if self.ann.items.holds_exact_vectors() {
            self.score_all_with_held_vectors(conn, query, &mut push)?;
        } else {
            self.score_all_from_catalog(conn, query, &mut push)?;
        }
        Ok(top.into_sorted())
    }

    /// One item's exact score for `query` (in the index's space); None when it is gone.
    fn exact_score(
        &self,
        conn: &Connection,
        query: &[f32],
        id: ItemId,
    ) -> Result<Option<f32>, IndexError> {
        let mut vector = Vec::with_capacity(self.config.dim);
        if self.ann.items.exact_vector_into(id, &mut vector)? {
            return Ok(Some(dot(query, &vector)));
        }
        let Some(vector) = self.catalog_vector(conn, id)? else {
            return Ok(None);
        };
        Ok(Some(match self.ann.items.whitening() {
            Some(w) => dot(query, &w.whitening.apply(&vector)),
            None => dot(query, &vector),
        }))
    }

    /// Scores every item with the exact whitened vector the ANN holds, and the few it does not
    /// hold (committed since our last refresh) from the catalog: the same bits either way, and
    /// no 1280 x 512 projection per item (10 s per query at 1M items, ~0.5 s this way).
    fn score_all_with_held_vectors(
        &self,
        conn: &Connection,
        query: &[f32],
        push: &mut impl FnMut(Scored),
    ) -> Result<(), IndexError> {
        let mut ids = conn.prepare_cached("SELECT id FROM items")?;
        let mut vector_of = conn.prepare_cached("SELECT vector FROM items WHERE id = ?1")?;
        let (mut held, mut raw) = (Vec::new(), Vec::new());
        let mut rows = ids.query([])?;
        while let Some(row) = rows.next()? {
            let id: ItemId = row.get(0)?;
            held.clear();
            if !self.ann.items.exact_vector_into(id, &mut held)? {
                let blob = vector_of.query_row([id], |r| r.get::<_, Vec<u8>>(0))?;
                raw.clear();
                catalog::decode_vector_into(&blob, self.config.dim, id, &mut raw)?;
                let w = self.ann.items.whitening().ok_or_else(|| {
                    IndexError::Corrupt("exact vectors held without a whitening".into())
                })?;
                held = w.whitening.apply_batch(&raw);
            }
            push(Scored {
                id,
                score: dot(query, &held),
            });
        }
        Ok(())
    }

    /// Scores every item with its catalog vector (whitened in batches when a whitening is
    /// active).
    fn score_all_from_catalog(
        &self,
        conn: &Connection,
        query: &[f32],
        push: &mut impl FnMut(Scored),
    ) -> Result<(), IndexError> {
        let whitening = self.ann.items.whitening().map(|w| &w.whitening);
        let batch = if whitening.is_some() { EXACT_BATCH } else { 1 };
        let mut score_batch = |ids: &[ItemId], vectors: &[f32]| {
            let projected = match whitening {
                Some(w) => Cow::Owned(w.apply_batch(vectors)),
                None => Cow::Borrowed(vectors),
            };
            let dim = projected.len() / ids.len();
            for (id, v) in ids.iter().zip(projected.chunks_exact(dim)) {
                push(Scored {
                    id: *id,
                    score: dot(query, v),
                });
            }
        };
        let mut stmt = conn.prepare_cached("SELECT id, vector FROM items")?;
        let mut rows = stmt.query([])?;
        let mut ids = Vec::with_capacity(batch);
        let mut vectors = Vec::with_capacity(batch * self.config.dim);
        while let Some(row) = rows.next()? {
            let id = row.get(0)?;
            catalog::decode_column_into(row, 1, self.config.dim, id, &mut vectors)?;
            ids.push(id);
            if ids.len() == batch {
                score_batch(&ids, &vectors);
                ids.clear();
                vectors.clear();
            }
        }
        if !ids.is_empty() {
            score_batch(&ids, &vectors);
        }
        Ok(())
    }

    /// The active whitening, if any.
    pub fn whitening_info(&self) -> Option<WhiteningInfo> {
        self.ann.items.whitening().map(|w| w.info)
    }

    /// What maps a stored vector into the space searches score in, if a whitening is active
    /// (e.g. to compute a ground truth outside the index).
    pub fn whitening(&self) -> Option<&Whitening> {
        self.ann.items.whitening().map(|w| &w.whitening)
    }

    /// Learns a whitening from the stored vectors and builds the ANN of the whitened vectors,
    /// in memory: the slow part of a (re)learning, done beside searches (`&self`). Finish
    /// with [`Index::install_whitening`].
    pub fn prepare_whitening(
        &self,
        options: WhiteningOptions,
    ) -> Result<PreparedWhitening, IndexError> {
        let mut conn = self.readers.get()?;
        let (sample, learned_from) =
            catalog::sample_vectors(&mut conn, self.config.dim, MAX_TRAINING_VECTORS)?;
        let whitening = Whitening::learn(&sample, self.config.dim, options)?;
        drop(sample);
        // The ANN is built with a provisional version; installing gives it the real one.
        let provisional = Arc::new(StoredWhitening {
            info: WhiteningInfo {
                version: 0,
                in_dim: whitening.in_dim,
                out_dim: options.dims,
                learned_from,
                created_ns: 0,
            },
            whitening: whitening.clone(),
        });
        let ann = Layers::build(
            &mut conn,
            &self.config,
            provisional,
            self.ann.items.params(),
        )?;
        Ok(PreparedWhitening {
            whitening,
            learned_from,
            ann,
        })
    }

    /// Makes a prepared whitening the active one: catches up what was committed since it was
    /// prepared, saves its snapshot, records it in the catalog and switches searches to it.
    /// Readers switch on their next [`Index::refresh`].
    pub fn install_whitening(
        &mut self,
        prepared: PreparedWhitening,
    ) -> Result<WhiteningInfo, IndexError> {
        let PreparedWhitening {
            whitening,
            learned_from,
            ann,
        } = prepared;
        let dir = self.dir.clone();
        let conn = self.writer()?;
        // Committed (not yet active) first, so its version is never handed out again even if
        // we crash before activating it: a snapshot named after it stays unambiguous.
        let info = catalog::insert_whitening(conn, &whitening, learned_from)?;
        let mut ann = ann.with_whitening(Arc::new(StoredWhitening { info, whitening }));
        ann.catch_up(conn)?;
        ann.save(&dir)?;
        catalog::activate_whitening(conn, info.version)?;
        ann.remove_other_versions(&dir, Some(info.version))?;
        self.ann = ann;
        tracing::info!(
            version = info.version,
            in_dim = info.in_dim,
            out_dim = info.out_dim,
            learned_from,
            "whitening installed"
        );
        Ok(info)
    }

    pub fn item(&self, id: ItemId) -> Result<Option<ItemRecord>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM items i JOIN files f ON f.id = i.file_id WHERE i.id = ?1"
        ))?;
        Ok(stmt.query_row([id], catalog::record_from_row).optional()?)
    }

    /// What the metadata of an item's file says (None: no such item).
    pub fn facts(&self, id: ItemId) -> Result<Option<PhotoFacts>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT f.taken, f.camera_make, f.camera_model, f.latitude, f.longitude
             FROM items i JOIN files f ON f.id = i.file_id WHERE i.id = ?1",
        )?;
        Ok(stmt
            .query_row([id], |r| {
                Ok(PhotoFacts {
                    taken: r.get(0)?,
                    camera_make: r.get(1)?,
                    camera_model: r.get(2)?,
                    latitude: r.get(3)?,
                    longitude: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// Hits for items scored elsewhere (e.g. by their labels), in the order given; items
    /// removed since are left out.
    pub fn hits_of(&self, scored: &[(ItemId, f32)]) -> Result<Vec<Hit>, IndexError> {
        let mut hits = Vec::with_capacity(scored.len());
        for &(id, score) in scored {
            if let Some(record) = self.item(id)? {
                hits.push(Hit {
                    id,
                    score,
                    path: record.path,
                    t: record.t,
                    kind: record.kind,
                    inliers: None,
                    region: None,
                });
            }
        }
        Ok(hits)
    }

    /// The items of one file, in time order (one for an image).
    pub fn items_for_path(&self, path: &str) -> Result<Vec<ItemRecord>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM items i JOIN files f ON f.id = i.file_id
             WHERE f.path = ?1 ORDER BY i.t, i.id"
        ))?;
        let records = stmt
            .query_map([path], catalog::record_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(records)
    }

    /// The stored f32 vector of an item.
    pub fn vector(&self, id: ItemId) -> Result<Option<Vec<f32>>, IndexError> {
        let conn = self.readers.get()?;
        self.catalog_vector(&conn, id)
    }

    /// An item's raw vector as the catalog holds it (None: no such item).
    fn catalog_vector(
        &self,
        conn: &Connection,
        id: ItemId,
    ) -> Result<Option<Vec<f32>>, IndexError> {
        let mut stmt = conn.prepare_cached("SELECT vector FROM items WHERE id = ?1")?;
        let Some(blob) = stmt
            .query_row([id], |r| r.get::<_, Vec<u8>>(0))
            .optional()?
        else {
            return Ok(None);
        };
        let mut vector = Vec::with_capacity(self.config.dim);
        catalog::decode_vector_into(&blob, self.config.dim, id, &mut vector)?;
        Ok(Some(vector))
    }

    /// Calls `f` for every item with its vector, in id order (for export). Streams: memory use
    /// does not grow with the collection.
    pub fn for_each_vector(
        &self,
        mut f: impl FnMut(&ItemRecord, &[f32]),
    ) -> Result<(), IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS}, i.vector FROM items i JOIN files f ON f.id = i.file_id
             ORDER BY i.id"
        ))?;
        let mut rows = stmt.query([])?;
        let mut vector = Vec::with_capacity(self.config.dim);
        while let Some(row) = rows.next()? {
            let record = catalog::record_from_row(row)?;
            vector.clear();
            catalog::decode_column_into(row, 8, self.config.dim, record.id, &mut vector)?;
            f(&record, &vector);
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<Stats, IndexError> {
        let items = self.item_count()?;
        let conn = self.readers.get()?;
        let count = |sql: &str| -> Result<u64, IndexError> {
            Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        let mut catalog_bytes = 0;
        for suffix in ["", "-wal"] {
            let path = self.dir.join(format!("{CATALOG_FILE}{suffix}"));
            catalog_bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
        }
        Ok(Stats {
            files: count("SELECT count(*) FROM files")?,
            images: count("SELECT count(*) FROM files WHERE kind = 'image'")?,
            videos: count("SELECT count(*) FROM files WHERE kind = 'video'")?,
            items,
            dim: self.config.dim,
            model: self.config.model.clone(),
            catalog_bytes,
            ann_bytes: self.ann.snapshot_bytes(&self.dir)?,
            descriptor: self.config.descriptor.clone(),
            whitening: self.whitening_info(),
        })
    }

    /// How many items (images and video frames) the catalog holds: [`Stats::items`] alone.
    pub fn item_count(&self) -> Result<u64, IndexError> {
        let conn = self.readers.get()?;
        Ok(conn.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Picks up what other processes committed since we opened or last refreshed (additions
    /// and removals, or a newly activated whitening); returns how many changes were replayed
    /// from the catalog (a newer snapshot brings the rest). Two tiny queries when nothing
    /// changed.
    pub fn refresh(&mut self) -> Result<usize, IndexError> {
        let active = catalog::active_whitening_version(&*self.readers.get()?)?;
        if active != self.whitening_info().map(|w| w.version) {
            // A new whitening: the held vectors are in another space; start over from its
            // snapshot (saved before it was activated) and the catalog.
            let mut conn = self.readers.get()?;
            let whitening = catalog::active_whitening(&conn)?.map(Arc::new);
            let role = if self.writer.is_some() {
                Role::Writer
            } else {
                Role::Reader
            };
            let params = self.ann.items.params();
            let (ann, report) =
                Layers::open(&self.dir, &mut conn, &self.config, whitening, params, role)?;
            self.ann = ann;
            return Ok(report.replayed.total());
        }
        // A newer snapshot first: re-viewing it is cheaper than replaying what it covers, and
        // the removals it covers may be pruned from the catalog already.
        let mut changes = self.reopen_if_wanted()?;
        changes += match self.writer.as_mut() {
            Some(writer) => {
                let conn = writer.get_mut().unwrap_or_else(|e| e.into_inner());
                self.ann.catch_up(conn)?
            }
            None => self.ann.catch_up(&mut *self.readers.get()?)?,
        }
        .total();
        // The delta may have outgrown brute force.
        changes += self.reopen_if_wanted()?;
        Ok(changes)
    }

    /// A reader's [`Layers::open`] when [`Layers::wants_reopen`]; returns the changes replayed.
    fn reopen_if_wanted(&mut self) -> Result<usize, IndexError> {
        if !self.ann.wants_reopen(&self.dir)? {
            return Ok(0);
        }
        let mut conn = self.readers.get()?;
        let params = self.ann.items.params();
        let whitening = self.ann.items.whitening().cloned();
        let (ann, report) = Layers::open(
            &self.dir,
            &mut conn,
            &self.config,
            whitening,
            params,
            Role::Reader,
        )?;
        self.ann = ann;
        Ok(report.replayed.total())
    }

    /// Saves the ANN snapshot (atomically) so that the next open, and readers, start from it
    /// instead of replaying the catalog, then prunes the tombstones it covers. Call at the end
    /// of a run; during one, [`Index::checkpoint_if_due`].
    pub fn checkpoint(&mut self) -> Result<(), IndexError> {
        self.apply_committed()?;
        self.ann.save(&self.dir)?;
        let Some(saved) = self.ann.saved() else {
            return Ok(());
        };
        // Through the previous snapshot, not this one: a reader that caught up to that one
        // still finds every removal it misses in the catalog, and one further behind reopens
        // from this snapshot (see `refresh`).
        let through = std::mem::replace(&mut self.prunable_tombstones, saved.tombstones);
        let pruned = catalog::prune_tombstones(self.writer()?, through)?;
        if pruned > 0 {
            tracing::debug!(
                pruned,
                through,
                "pruned the tombstones the ANN snapshots cover"
            );
        }
        Ok(())
    }

    /// [`Index::checkpoint`] once the snapshot misses 1,000 changes: a crash or
    /// a reader's open then replays at most that many, and a delete or an upload costs no
    /// snapshot write of the whole graph (seconds at a million items). Returns whether it saved.
    pub fn checkpoint_if_due(&mut self) -> Result<bool, IndexError> {
        self.apply_committed()?;
        if self.ann.unsaved() < CHECKPOINT_EVERY {
            return Ok(false);
        }
        self.checkpoint()?;
        Ok(true)
    }

    /// Whether searches run on a memory-mapped snapshot (a reader close to the writer).
    pub fn is_memory_mapped(&self) -> bool {
        self.ann.items.is_viewed()
    }

    fn check_vector(&self, v: &[f32]) -> Result<(), IndexError> {
        if v.len() != self.config.dim {
            return Err(IndexError::InvalidVector(format!(
                "{} values, the index holds {}-d vectors",
                v.len(),
                self.config.dim
            )));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(IndexError::InvalidVector("NaN or infinite value".into()));
        }
        Ok(())
    }
}

/// Refuses a catalog without a schema beside ANN snapshots (see [`IndexError::LostCatalog`]).
fn check_not_lost(conn: &Connection, dir: &Path) -> Result<(), IndexError> {
    if catalog::user_version(conn)? == 0 && ann::has_snapshots(dir)? {
        return Err(IndexError::LostCatalog {
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// The catalog path of an existing index in `dir`.
fn catalog_path(dir: &Path) -> Result<PathBuf, IndexError> {
    let path = dir.join(CATALOG_FILE);
    if path.is_file() {
        Ok(path)
    } else {
        Err(not_found(dir))
    }
}

fn not_found(dir: &Path) -> IndexError {
    IndexError::NotFound {
        dir: dir.to_path_buf(),
    }
}
