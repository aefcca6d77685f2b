//! The SQLite catalog: schema, migrations, connections and the change log.
//!
//! The catalog is the source of truth. Item ids come from `AUTOINCREMENT`, so they only grow and
//! are never reused: "every item with id <= N" is then a stable description of a set of
//! additions. Every deleted item leaves a row in `tombstones` (written by a trigger, so no code
//! path can forget it) whose `seq` also only grows. The pair of the two high-water marks, a
//! [`Watermark`], says exactly which changes an ANN snapshot covers.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::error::IndexError;
use super::region_codec;
use super::types::{FileStamp, IndexConfig, ItemId, ItemRecord, MediaKind, WhiteningInfo};
use crate::descriptor::{DescriptorOptions, Whitening};

/// The catalog's file name inside the index directory.
pub(crate) const CATALOG_FILE: &str = "catalog.sqlite";

/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 6;

/// A writer waiting for another writer's transaction, or a reader for a WAL checkpoint, retries
/// this long before giving up with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle read connections kept per index; more are opened on demand and closed after use.
const MAX_IDLE_READERS: usize = 16;

/// Migrations from version `i` to `i + 1`, applied in order inside one transaction.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE files (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    path     TEXT NOT NULL UNIQUE,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('image', 'video')),
    added_at INTEGER NOT NULL -- unix seconds
);
-- `vector` is the last column so that reading the others never touches its overflow pages.
CREATE TABLE items (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    t       REAL,
    width   INTEGER NOT NULL,
    height  INTEGER NOT NULL,
    vector  BLOB NOT NULL -- f32 little-endian, `dim` of them
);
-- Also the smallest index of `items`, which SQLite uses for count(*).
CREATE INDEX items_file ON items(file_id);
CREATE TABLE tombstones (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL
);
CREATE TRIGGER items_tombstone AFTER DELETE ON items BEGIN
    INSERT INTO tombstones (item_id) VALUES (old.id);
END;
"#,
    r#"
-- Learned PCA-whitenings; meta 'whitening' names the active version (absent: none). Vectors
-- in `items` stay raw: they are what a whitening is (re)learned from.
CREATE TABLE whitenings (
    version      INTEGER PRIMARY KEY AUTOINCREMENT,
    out_dim      INTEGER NOT NULL,
    learned_from INTEGER NOT NULL, -- how many vectors the collection held
    created_ns   INTEGER NOT NULL, -- unix nanoseconds
    data         BLOB NOT NULL     -- Whitening::to_bytes
);
"#,
    r#"
-- The BLAKE3 hash of each file's bytes (32 bytes); NULL for files indexed before it was kept.
ALTER TABLE files ADD COLUMN content_hash BLOB;
"#,
    r#"
-- Each item's region descriptors (see index/region_codec.rs), for indexes that keep them; in
-- a table of their own so that reading `items` never touches them, and the boxes before the
-- vectors so that reading a box never touches the vectors' overflow pages.
CREATE TABLE regions (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    boxes   BLOB NOT NULL,
    vectors BLOB NOT NULL
);
"#,
    r#"
-- Pairs of images the duplicate finder confirmed to be one photo (see duplicates/), each
-- once (a < b), gone with either image; meta 'duplicate_scan' says which items were scanned.
CREATE TABLE duplicate_pairs (
    a          INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    b          INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    similarity REAL NOT NULL,
    PRIMARY KEY (a, b)
) WITHOUT ROWID;
CREATE INDEX duplicate_pairs_b ON duplicate_pairs(b);
-- "Not duplicates" decisions, by the two files' content hashes (a < b): they outlive moves,
-- renames and re-indexing of the files.
CREATE TABLE distinct_pairs (
    a          BLOB NOT NULL,
    b          BLOB NOT NULL,
    decided_at INTEGER NOT NULL, -- unix seconds
    PRIMARY KEY (a, b)
) WITHOUT ROWID;
"#,
    r#"
-- Each item's most probable ImageNet classes (model/labels.rs), for search by words: keyed by
-- class first, so that the classes a word names are one range of the table each.
CREATE TABLE labels (
    class       INTEGER NOT NULL,
    item_id     INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    probability REAL NOT NULL,
    PRIMARY KEY (class, item_id)
) WITHOUT ROWID;
CREATE INDEX labels_item ON labels(item_id);
-- What each file's metadata says (image/facts.rs). `taken` is the camera's local time as
-- "YYYY-MM-DDTHH:MM:SS": its text order is time order, and a prefix is a year or a month.
ALTER TABLE files ADD COLUMN taken TEXT;
ALTER TABLE files ADD COLUMN camera_make TEXT;
ALTER TABLE files ADD COLUMN camera_model TEXT;
ALTER TABLE files ADD COLUMN latitude REAL;
ALTER TABLE files ADD COLUMN longitude REAL;
CREATE INDEX files_taken ON files(taken) WHERE taken IS NOT NULL;
-- Items stored before labels and facts were kept (ids up to this one) have neither: indexing
-- treats their files as changed, so the next `lookalike index` of a folder fills them in.
INSERT INTO meta (key, value)
    SELECT 'unlabelled_through', CAST(COALESCE(MAX(id), 0) AS TEXT) FROM items;
"#,
];

/// Which changes of the catalog something has seen: all items with `id <= items` and all
/// removals with `seq <= tombstones`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Watermark {
    pub items: i64,
    pub tombstones: i64,
}

impl Watermark {
    /// Whether everything `self` covers is also covered by `other`.
    pub fn within(self, other: Watermark) -> bool {
        self.items <= other.items && self.tombstones <= other.tombstones
    }
}

/// Opens the catalog for writing, creating the file when `create`.
pub(crate) fn open_writer(path: &Path, create: bool) -> Result<Connection, IndexError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer and a killed writer loses nothing committed.
    // synchronous=FULL: a commit survives a power cut too, so an ANN snapshot (fsynced later)
    // can never cover rows that the catalog lost.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(IndexError::Corrupt(format!(
            "could not switch the catalog to WAL mode (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// Opens the catalog read-only: never writes, never blocks a writer (WAL mode).
///
/// Reading a WAL-mode database takes its `-shm` file, which SQLite creates beside it when it
/// is missing. On read-only media (an index copied to a disc or a read-only mount without its
/// `-wal` and `-shm` files) it cannot, and every read fails; but there nothing can change the
/// file either, so it is opened as immutable instead: no locks, no shared memory.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, IndexError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first read is where a missing `-shm` shows.
    match conn.query_row("PRAGMA user_version", [], |_| Ok(())) {
        Err(e)
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen)
                && on_read_only_media(path) =>
        {
            tracing::info!(
                "{} is on read-only media without its -shm file: reading it as immutable",
                path.display()
            );
            open_immutable(path)
        }
        Err(e) => Err(e.into()),
        Ok(()) => Ok(conn),
    }
}

/// Whether the file system holding `path` is mounted read-only.
fn on_read_only_media(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .is_ok_and(|fs| fs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// The catalog opened as SQLite's `immutable=1` URI: only for files nothing can change.
fn open_immutable(path: &Path) -> Result<Connection, IndexError> {
    let Some(text) = path.to_str() else {
        return Err(IndexError::InvalidArgument(format!(
            "{}: not UTF-8, cannot be opened from read-only media",
            path.display()
        )));
    };
    // Characters that URIs give a meaning to are escaped.
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => escaped.push_str(&format!("%{:02X}", c as u32)),
            c => escaped.push(c),
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(format!("file:{escaped}?immutable=1"), flags)?;
    conn.query_row("PRAGMA user_version", [], |_| Ok(()))?;
    Ok(conn)
}

/// The schema version the catalog holds (0: none yet).
pub(crate) fn user_version(conn: &Connection) -> Result<i64, IndexError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Brings the schema up to [`SCHEMA_VERSION`] and records `config` in a fresh catalog, in one
/// transaction. Returns the config the catalog holds (None: a catalog without one, which
/// `Index::open` reports as not an index).
pub(crate) fn migrate(
    conn: &mut Connection,
    dir: &Path,
    config: Option<&IndexConfig>,
) -> Result<Option<IndexConfig>, IndexError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found = user_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(IndexError::SchemaMismatch {
            dir: dir.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(from, to = from + 1, "migrating the catalog schema");
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    let stored = read_config(&tx)?;
    if let (None, Some(config)) = (&stored, config) {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('model', ?1), ('dim', ?2), ('descriptor', ?3)",
            params![config.model, config.dim as i64, config.descriptor.to_json()],
        )?;
        tx.commit()?;
        return Ok(Some(config.clone()));
    }
    tx.commit()?;
    Ok(stored)
}

/// Checks that a reader can use the catalog as it is (a reader never migrates).
pub(crate) fn check_schema_for_reading(conn: &Connection, dir: &Path) -> Result<(), IndexError> {
    let found = user_version(conn)?;
    if found != SCHEMA_VERSION {
        return Err(IndexError::SchemaMismatch {
            dir: dir.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// The model, dimension and descriptor options recorded in `meta`, if any. A catalog without
/// descriptor options predates them: its vectors are the baseline's.
pub(crate) fn read_config(conn: &Connection) -> Result<Option<IndexConfig>, IndexError> {
    let get = |key: &str| -> Result<Option<String>, IndexError> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let (Some(model), Some(dim)) = (get("model")?, get("dim")?) else {
        return Ok(None);
    };
    let dim = dim
        .parse::<usize>()
        .map_err(|_| IndexError::Corrupt(format!("meta.dim is not a number: {dim:?}")))?;
    let descriptor = match get("descriptor")? {
        Some(json) => DescriptorOptions::from_json(&json)
            .map_err(|e| IndexError::Corrupt(format!("meta.descriptor: {e}")))?,
        None => DescriptorOptions::baseline(),
    };
    Ok(Some(IndexConfig {
        model,
        dim,
        descriptor,
    }))
}

/// A whitening as stored in the catalog, with what is known about it.
#[derive(Debug)]
pub(crate) struct StoredWhitening {
    pub info: WhiteningInfo,
    pub whitening: Whitening,
}

/// The active whitening's version: one tiny query, so `refresh` can poll it.
pub(crate) fn active_whitening_version(conn: &Connection) -> Result<Option<i64>, IndexError> {
    let value: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'whitening'", [], |r| {
            r.get(0)
        })
        .optional()?;
    value
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| IndexError::Corrupt(format!("meta.whitening is not a number: {v:?}")))
        })
        .transpose()
}

/// The active whitening, if any.
pub(crate) fn active_whitening(conn: &Connection) -> Result<Option<StoredWhitening>, IndexError> {
    let Some(version) = active_whitening_version(conn)? else {
        return Ok(None);
    };
    let (learned_from, created_ns, data): (i64, i64, Vec<u8>) = conn
        .query_row(
            "SELECT learned_from, created_ns, data FROM whitenings WHERE version = ?1",
            [version],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| IndexError::Corrupt(format!("active whitening {version} is missing")))?;
    let whitening = Whitening::from_bytes(&data)?;
    Ok(Some(StoredWhitening {
        info: WhiteningInfo {
            version,
            in_dim: whitening.in_dim,
            out_dim: whitening.out_dim,
            learned_from: learned_from as u64,
            created_ns,
        },
        whitening,
    }))
}

/// Stores a new whitening, not yet active; returns its info (the version is never reused,
/// so an ANN snapshot named after it can never be mistaken for another whitening's).
pub(crate) fn insert_whitening(
    conn: &Connection,
    whitening: &Whitening,
    learned_from: u64,
) -> Result<WhiteningInfo, IndexError> {
    let created_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    conn.execute(
        "INSERT INTO whitenings (out_dim, learned_from, created_ns, data) VALUES (?1, ?2, ?3, ?4)",
        params![
            whitening.out_dim as i64,
            learned_from as i64,
            created_ns,
            whitening.to_bytes()
        ],
    )?;
    Ok(WhiteningInfo {
        version: conn.last_insert_rowid(),
        in_dim: whitening.in_dim,
        out_dim: whitening.out_dim,
        learned_from,
        created_ns,
    })
}

/// Makes `version` the active whitening and forgets the others, in one transaction.
pub(crate) fn activate_whitening(conn: &mut Connection, version: i64) -> Result<(), IndexError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('whitening', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [version.to_string()],
    )?;
    tx.execute("DELETE FROM whitenings WHERE version <> ?1", [version])?;
    tx.commit()?;
    Ok(())
}

/// Up to `max` stored vectors evenly spread over the collection (all of them when it holds
/// fewer), concatenated, and how many items it holds: the sample a whitening is learned from.
pub(crate) fn sample_vectors(
    conn: &mut Connection,
    dim: usize,
    max: usize,
) -> Result<(Vec<f32>, u64), IndexError> {
    let tx = conn.transaction()?;
    let total: i64 = tx.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?;
    let stride = (total as usize).div_ceil(max.max(1)).max(1);
    let mut stmt = tx.prepare("SELECT id, vector FROM items ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut data = Vec::with_capacity((total as usize).min(max) * dim);
    let mut i = 0;
    while let Some(row) = rows.next()? {
        if i % stride == 0 {
            decode_column_into(row, 1, dim, row.get(0)?, &mut data)?;
        }
        i += 1;
    }
    Ok((data, total as u64))
}

/// The catalog's current high-water marks: O(1), so polling it is how `refresh` stays cheap.
pub(crate) fn watermark(conn: &Connection) -> Result<Watermark, IndexError> {
    let mut wm = Watermark::default();
    let mut stmt = conn.prepare_cached("SELECT name, seq FROM sqlite_sequence")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        match name.as_str() {
            "items" => wm.items = row.get(1)?,
            "tombstones" => wm.tombstones = row.get(1)?,
            _ => {}
        }
    }
    Ok(wm)
}

/// How many items a snapshot taken at `at` holds according to the catalog: those with
/// `id <= at.items` still present, plus those removed after `at`.
pub(crate) fn count_covered(conn: &Connection, at: Watermark) -> Result<u64, IndexError> {
    let live: i64 = conn.query_row(
        "SELECT count(*) FROM items WHERE id <= ?1",
        [at.items],
        |r| r.get(0),
    )?;
    let removed_later: i64 = conn.query_row(
        "SELECT count(*) FROM tombstones WHERE seq > ?1 AND item_id <= ?2",
        [at.tombstones, at.items],
        |r| r.get(0),
    )?;
    Ok((live + removed_later) as u64)
}

/// Items added after `since.items` that are still present.
pub(crate) fn count_added_since(conn: &Connection, since: Watermark) -> Result<u64, IndexError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM items WHERE id > ?1",
        [since.items],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// Deletes the tombstones with `seq <= through` (every ANN snapshot kept covers them) and
/// records it, so that a library with heavy churn does not grow its catalog without bound.
/// `sqlite_sequence` keeps the high-water mark, so [`watermark`] is unchanged.
pub(crate) fn prune_tombstones(conn: &mut Connection, through: i64) -> Result<u64, IndexError> {
    if through <= pruned_through(conn)? {
        return Ok(0);
    }
    let tx = conn.transaction()?;
    let pruned = tx.execute("DELETE FROM tombstones WHERE seq <= ?1", [through])?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('tombstones_pruned_through', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [through.to_string()],
    )?;
    tx.commit()?;
    Ok(pruned as u64)
}

/// The last tombstone pruned (0: none): a state that applied fewer removals than this cannot
/// catch up from the catalog any more.
pub(crate) fn pruned_through(conn: &Connection) -> Result<i64, IndexError> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'tombstones_pruned_through'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    value.map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| IndexError::Corrupt(format!("meta.tombstones_pruned_through: {v:?}")))
    })
}

/// Ids removed in `(from.tombstones, to.tombstones]`.
pub(crate) fn removed_between(
    conn: &Connection,
    from: Watermark,
    to: Watermark,
) -> Result<Vec<ItemId>, IndexError> {
    let mut stmt = conn.prepare_cached(
        "SELECT item_id FROM tombstones WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
    )?;
    let ids = stmt
        .query_map([from.tombstones, to.tombstones], |r| r.get(0))?
        .collect::<Result<Vec<ItemId>, _>>()?;
    Ok(ids)
}

/// Calls `f` with batches of up to `batch` (id, vector) pairs of the items present with ids in
/// `(from.items, to.items]`, in id order. Streams, so a full rebuild never holds all vectors.
pub(crate) fn for_each_added_between(
    conn: &Connection,
    from: Watermark,
    to: Watermark,
    dim: usize,
    batch: usize,
    f: impl FnMut(&[ItemId], &[f32]) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let sql = "SELECT id, vector FROM items WHERE id > ?1 AND id <= ?2 ORDER BY id";
    stream_rows(conn, sql, (from, to), dim, batch, f, |row, ids, data| {
        let id: ItemId = row.get(0)?;
        decode_column_into(row, 1, dim, id, data)?;
        ids.push(id);
        Ok(())
    })
}

/// Calls `f` with batches of the region vectors of the items with ids in
/// `(from.items, to.items]`: one key per region ([`region_key`]), the raw vectors (`dim` values
/// each) one after the other.
pub(crate) fn for_each_region_added_between(
    conn: &Connection,
    from: Watermark,
    to: Watermark,
    dim: usize,
    batch: usize,
    f: impl FnMut(&[u64], &[f32]) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let sql = "SELECT item_id, vectors FROM regions WHERE item_id > ?1 AND item_id <= ?2
               ORDER BY item_id";
    stream_rows(conn, sql, (from, to), dim, batch, f, |row, keys, data| {
        let id: ItemId = row.get(0)?;
        let blob = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        let count = region_codec::decode_vectors_into(blob, dim, id, data)?;
        keys.extend((0..count).map(|r| region_key(id, r)));
        Ok(())
    })
}

/// Runs `sql` for the item ids in `(from.items, to.items]` (its `?1` and `?2`), decodes each
/// row into keys and `dim`-value vectors with `decode`, and hands them to `f` in batches of
/// about `batch` keys.
fn stream_rows<K>(
    conn: &Connection,
    sql: &str,
    (from, to): (Watermark, Watermark),
    dim: usize,
    batch: usize,
    mut f: impl FnMut(&[K], &[f32]) -> Result<(), IndexError>,
    mut decode: impl FnMut(&rusqlite::Row<'_>, &mut Vec<K>, &mut Vec<f32>) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([from.items, to.items])?;
    let mut keys = Vec::with_capacity(batch);
    let mut data = Vec::with_capacity(batch * dim);
    while let Some(row) = rows.next()? {
        decode(row, &mut keys, &mut data)?;
        if keys.len() >= batch {
            f(&keys, &data)?;
            keys.clear();
            data.clear();
        }
    }
    if !keys.is_empty() {
        f(&keys, &data)?;
    }
    Ok(())
}

/// The most regions an item may have: region `r` of item `id` is key `id * MAX_REGIONS + r`
/// in the region ANN.
pub(crate) const MAX_REGIONS: usize = 64;

pub(crate) fn region_key(id: ItemId, region: usize) -> u64 {
    id as u64 * MAX_REGIONS as u64 + region as u64
}

/// The item and region number of a region key.
pub(crate) fn region_of_key(key: u64) -> (ItemId, usize) {
    (
        (key / MAX_REGIONS as u64) as ItemId,
        (key % MAX_REGIONS as u64) as usize,
    )
}

/// Encodes a vector as the catalog stores it: f32 little-endian.
pub(crate) fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Appends the decoded `blob` of item `id` to `out`, checking its length.
pub(crate) fn decode_vector_into(
    blob: &[u8],
    dim: usize,
    id: ItemId,
    out: &mut Vec<f32>,
) -> Result<(), IndexError> {
    if blob.len() != dim * 4 {
        return Err(IndexError::Corrupt(format!(
            "item {id} has a {}-byte vector, expected {} ({dim} f32)",
            blob.len(),
            dim * 4
        )));
    }
    out.extend(
        blob.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}

/// Appends the decoded vector in column `idx` of `row` (item `id`) to `out`.
pub(crate) fn decode_column_into(
    row: &rusqlite::Row<'_>,
    idx: usize,
    dim: usize,
    id: ItemId,
    out: &mut Vec<f32>,
) -> Result<(), IndexError> {
    let blob = row.get_ref(idx)?.as_blob().map_err(rusqlite::Error::from)?;
    decode_vector_into(blob, dim, id, out)
}

/// The columns [`record_from_row`] reads, joined from `items i` and `files f`.
pub(crate) const RECORD_COLUMNS: &str =
    "i.id, f.path, i.t, i.width, i.height, f.kind, f.size, f.mtime_ns";

/// Builds an [`ItemRecord`] from the first 8 columns of a row selected with [`RECORD_COLUMNS`].
pub(crate) fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ItemRecord> {
    let kind: String = row.get(5)?;
    let kind = MediaKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            5,
            rusqlite::types::Type::Text,
            format!("unknown media kind {kind:?}").into(),
        )
    })?;
    Ok(ItemRecord {
        id: row.get(0)?,
        path: row.get(1)?,
        t: row.get(2)?,
        width: row.get(3)?,
        height: row.get(4)?,
        kind,
        stamp: FileStamp {
            size: row.get::<_, i64>(6)? as u64,
            mtime_ns: row.get(7)?,
        },
    })
}

/// A small pool of read-only connections, so that `Index::search(&self)` can run on many
/// threads at once (a `Connection` is `Send` but not `Sync`).
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn get(&self) -> Result<PooledConnection<'_>, IndexError> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        Ok(PooledConnection {
            pool: self,
            conn: Some(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while holding the lock cannot leave the Vec inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection borrowed from a [`ReadPool`], returned to it on drop.
pub(crate) struct PooledConnection<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl Deref for PooledConnection<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl DerefMut for PooledConnection<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.pool.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}
