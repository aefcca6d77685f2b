//! What the catalog keeps for the duplicate finder (see [`crate::duplicates`]): the pairs it
//! confirmed, how far it has scanned, and people's "not duplicates" decisions.

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::catalog::{self, RECORD_COLUMNS};
use super::error::IndexError;
use super::types::{ContentHash, ItemId, ItemRecord};
use super::Index;

/// A pair of images confirmed to be one photo (`a < b`), with their descriptors' cosine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DuplicatePair {
    pub a: ItemId,
    pub b: ItemId,
    pub similarity: f32,
}

/// How far the duplicate finder has scanned: every image up to `through` has been compared
/// with its neighbours under `settings` (the finder's own encoding of its options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateScan {
    pub through: ItemId,
    pub settings: String,
}

/// An indexed image as a member of a duplicate group.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFacts {
    pub record: ItemRecord,
    /// None for files indexed before hashes were kept.
    pub content_hash: Option<ContentHash>,
}

const SCAN_KEY: &str = "duplicate_scan";

impl Index {
    /// How far the duplicate finder has scanned (None: never, or since a reset).
    pub fn duplicate_scan(&self) -> Result<Option<DuplicateScan>, IndexError> {
        let conn = self.readers.get()?;
        let value: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [SCAN_KEY], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(value) = value else { return Ok(None) };
        let (through, settings) = value
            .split_once(' ')
            .and_then(|(id, settings)| Some((id.parse().ok()?, settings.to_owned())))
            .ok_or_else(|| IndexError::Corrupt(format!("bad {SCAN_KEY} {value:?}")))?;
        Ok(Some(DuplicateScan { through, settings }))
    }

    /// Up to `limit` images (not video frames) added after item `after`, in id order, each
    /// with its vector.
    pub fn images_after(
        &self,
        after: ItemId,
        limit: usize,
    ) -> Result<Vec<(ItemRecord, Vec<f32>)>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS}, i.vector FROM items i JOIN files f ON f.id = i.file_id
             WHERE i.id > ?1 AND f.kind = 'image' ORDER BY i.id LIMIT ?2"
        ))?;
        let mut rows = stmt.query(params![after, limit as i64])?;
        let mut images = Vec::new();
        while let Some(row) = rows.next()? {
            let record = catalog::record_from_row(row)?;
            let mut vector = Vec::with_capacity(self.config.dim);
            catalog::decode_column_into(row, 8, self.config.dim, record.id, &mut vector)?;
            images.push((record, vector));
        }
        Ok(images)
    }

    /// The newest item id (0 for an empty index).
    pub fn last_item_id(&self) -> Result<ItemId, IndexError> {
        let conn = self.readers.get()?;
        Ok(conn.query_row("SELECT coalesce(max(id), 0) FROM items", [], |r| r.get(0))?)
    }

    /// Records pairs found by a scan and that it reached `scan.through`, in one transaction
    /// (a pair whose image was removed meanwhile is dropped). With `reset`, the pairs of
    /// earlier scans are forgotten first (their settings differ).
    pub fn record_duplicate_scan(
        &mut self,
        pairs: &[DuplicatePair],
        scan: &DuplicateScan,
        reset: bool,
    ) -> Result<(), IndexError> {
        let conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if reset {
            tx.execute("DELETE FROM duplicate_pairs", [])?;
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO duplicate_pairs (a, b, similarity)
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM items WHERE id = ?1)
                 AND EXISTS (SELECT 1 FROM items WHERE id = ?2)",
            )?;
            for pair in pairs {
                let (a, b) = (pair.a.min(pair.b), pair.a.max(pair.b));
                insert.execute(params![a, b, f64::from(pair.similarity)])?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![SCAN_KEY, format!("{} {}", scan.through, scan.settings)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every confirmed pair whose images are both still indexed.
    pub fn duplicate_pairs(&self) -> Result<Vec<DuplicatePair>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare("SELECT a, b, similarity FROM duplicate_pairs")?;
        let pairs = stmt
            .query_map([], |r| {
                Ok(DuplicatePair {
                    a: r.get(0)?,
                    b: r.get(1)?,
                    similarity: r.get::<_, f64>(2)? as f32,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(pairs)
    }

    /// The images whose files have identical bytes, as sets of two or more item ids.
    pub fn exact_copies(&self) -> Result<Vec<Vec<ItemId>>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare(
            "SELECT f.content_hash, i.id FROM items i JOIN files f ON f.id = i.file_id
             WHERE f.kind = 'image' AND f.content_hash IN (
                 SELECT content_hash FROM files WHERE kind = 'image' AND content_hash IS NOT NULL
                 GROUP BY content_hash HAVING count(*) > 1)
             ORDER BY f.content_hash, i.id",
        )?;
        let mut sets: Vec<Vec<ItemId>> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let hash: Vec<u8> = row.get(0)?;
            let id: ItemId = row.get(1)?;
            match sets.last_mut() {
                Some(set) if last.as_deref() == Some(hash.as_slice()) => set.push(id),
                _ => sets.push(vec![id]),
            }
            last = Some(hash);
        }
        Ok(sets)
    }

    /// What a duplicate group shows of each of `ids` (absent ids are skipped).
    pub fn image_facts(&self, ids: &[ItemId]) -> Result<Vec<ImageFacts>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS}, f.content_hash FROM items i JOIN files f ON f.id = i.file_id
             WHERE i.id = ?1"
        ))?;
        let mut facts = Vec::with_capacity(ids.len());
        for &id in ids {
            let found = stmt
                .query_row([id], |r| {
                    let hash: Option<Vec<u8>> = r.get(8)?;
                    Ok(ImageFacts {
                        record: catalog::record_from_row(r)?,
                        content_hash: hash
                            .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                            .map(ContentHash),
                    })
                })
                .optional()?;
            facts.extend(found);
        }
        Ok(facts)
    }

    /// Every "not duplicates" decision, each pair ordered (a < b).
    pub fn distinct_pairs(&self) -> Result<HashSet<(ContentHash, ContentHash)>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare("SELECT a, b FROM distinct_pairs")?;
        let mut rows = stmt.query([])?;
        let mut pairs = HashSet::new();
        while let Some(row) = rows.next()? {
            let hash = |i: usize| -> Result<ContentHash, IndexError> {
                let bytes: Vec<u8> = row.get(i)?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map(ContentHash)
                    .map_err(|_| {
                        IndexError::Corrupt("a distinct pair's hash is not 32 bytes".into())
                    })
            };
            pairs.insert((hash(0)?, hash(1)?));
        }
        Ok(pairs)
    }

    /// Records that no two of `hashes` are duplicates of each other; returns how many pairs
    /// were new.
    pub fn mark_distinct(&mut self, hashes: &[ContentHash]) -> Result<usize, IndexError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO distinct_pairs (a, b, decided_at) VALUES (?1, ?2, ?3)",
            )?;
            for (i, x) in hashes.iter().enumerate() {
                for y in &hashes[i + 1..] {
                    let (a, b) = ordered_pair(*x, *y);
                    if a != b {
                        added += insert.execute(params![&a.0[..], &b.0[..], now])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(added)
    }
}

/// The pair in the order the catalog keeps it.
pub fn ordered_pair(x: ContentHash, y: ContentHash) -> (ContentHash, ContentHash) {
    if x.0 <= y.0 {
        (x, y)
    } else {
        (y, x)
    }
}
