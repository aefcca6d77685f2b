//! What the catalog keeps for search by words: each item's most probable ImageNet classes
//! (see [`crate::model::kept_labels`]), and the questions asked of them.

use std::collections::HashMap;

use rusqlite::OptionalExtension;

use super::error::IndexError;
use super::types::ItemId;
use super::Index;
use crate::model::efficientnet::CLASSES;
use crate::model::Label;

/// Bytes per label in [`encode_labels`]: the class (u16) and its probability (f32), little
/// endian.
const LABEL_BYTES: usize = 6;

/// An item's labels as one blob (how a vector shard carries them).
pub fn encode_labels(labels: &[Label]) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * LABEL_BYTES);
    for label in labels {
        out.extend_from_slice(&label.class.to_le_bytes());
        out.extend_from_slice(&label.probability.to_le_bytes());
    }
    out
}

/// The labels of [`encode_labels`], checked: whole records, known classes, probabilities.
pub fn decode_labels(bytes: &[u8]) -> Result<Vec<Label>, IndexError> {
    if !bytes.len().is_multiple_of(LABEL_BYTES) {
        return Err(IndexError::Corrupt(format!(
            "labels of {} bytes, not a multiple of {LABEL_BYTES}",
            bytes.len()
        )));
    }
    let labels: Vec<Label> = bytes
        .chunks_exact(LABEL_BYTES)
        .map(|record| Label {
            class: u16::from_le_bytes([record[0], record[1]]),
            probability: f32::from_le_bytes([record[2], record[3], record[4], record[5]]),
        })
        .collect();
    check_labels(&labels)?;
    Ok(labels)
}

/// Every label names one of the model's classes with a probability.
pub(super) fn check_labels(labels: &[Label]) -> Result<(), IndexError> {
    for label in labels {
        if usize::from(label.class) >= CLASSES || !(0.0..=1.0).contains(&label.probability) {
            return Err(IndexError::InvalidArgument(format!(
                "label class {} with probability {}: classes are 0..{CLASSES}, \
                 probabilities 0..=1",
                label.class, label.probability
            )));
        }
    }
    Ok(())
}

impl Index {
    /// Each item's score for a set of classes: the summed probability of its labels among
    /// `classes` (a photo a word names is often split between several of the word's classes,
    /// e.g. dog breeds), when at least `min_score`. Unordered.
    pub fn class_scores(
        &self,
        classes: &[u16],
        min_score: f32,
    ) -> Result<Vec<(ItemId, f32)>, IndexError> {
        if classes.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.readers.get()?;
        // One range of the primary key per class, summed here: at 1M items, 3-4x faster than
        // SQLite's GROUP BY, which sorts the rows first.
        let mut stmt =
            conn.prepare_cached("SELECT item_id, probability FROM labels WHERE class = ?1")?;
        let mut sums: HashMap<ItemId, f32> = HashMap::new();
        for &class in classes {
            let mut rows = stmt.query([class])?;
            while let Some(row) = rows.next()? {
                *sums.entry(row.get(0)?).or_default() += row.get::<_, f64>(1)? as f32;
            }
        }
        Ok(sums.into_iter().filter(|&(_, s)| s >= min_score).collect())
    }

    /// The stored labels of each of `ids` that has any, most probable first.
    pub fn labels_of(&self, ids: &[ItemId]) -> Result<HashMap<ItemId, Vec<Label>>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT class, probability FROM labels WHERE item_id = ?1 ORDER BY probability DESC",
        )?;
        let mut out = HashMap::new();
        for &id in ids {
            let labels: Vec<Label> = stmt
                .query_map([id], |r| {
                    Ok(Label {
                        class: r.get(0)?,
                        probability: r.get::<_, f64>(1)? as f32,
                    })
                })?
                .collect::<Result<_, _>>()?;
            if !labels.is_empty() {
                out.insert(id, labels);
            }
        }
        Ok(out)
    }

    /// How many items carry each class with at least `min_probability`, most common first.
    pub fn label_counts(&self, min_probability: f32) -> Result<Vec<(u16, u64)>, IndexError> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare(
            "SELECT class, COUNT(*) AS n FROM labels WHERE probability >= ?1
             GROUP BY class ORDER BY n DESC, class",
        )?;
        let counts = stmt
            .query_map([f64::from(min_probability)], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<_, _>>()?;
        Ok(counts)
    }

    /// Items stored before labels were kept (see the catalog's migration 6): every item up to
    /// this id has no labels and its file no facts. 0 when there are none.
    pub(super) fn unlabelled_through(conn: &rusqlite::Connection) -> Result<ItemId, IndexError> {
        let value: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'unlabelled_through'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        value.map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| IndexError::Corrupt(format!("meta.unlabelled_through {v:?}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_bad_blobs_are_refused() {
        let labels = [
            Label {
                class: 207,
                probability: 0.625,
            },
            Label {
                class: 999,
                probability: 0.02,
            },
        ];
        let bytes = encode_labels(&labels);
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..2], &[207, 0]);
        assert_eq!(decode_labels(&bytes).unwrap(), labels);
        assert!(decode_labels(&[]).unwrap().is_empty());
        assert!(decode_labels(&bytes[..7]).is_err());
        let mut unknown = bytes.clone();
        unknown[0..2].copy_from_slice(&1000u16.to_le_bytes());
        assert!(decode_labels(&unknown).is_err());
        let mut improbable = bytes;
        improbable[2..6].copy_from_slice(&1.5f32.to_le_bytes());
        assert!(decode_labels(&improbable).is_err());
    }
}
