//! Search by regions: which indexed images hold the query as a detail, and where.

use std::collections::HashMap;

use rusqlite::OptionalExtension;

use super::catalog::{self, region_of_key};
use super::error::IndexError;
use super::filter::ItemSet;
use super::region_codec;
use super::types::{Hit, ItemId, MediaKind, NewItem, Region};
use super::Index;

/// Region entries fetched per item wanted: an item's neighbouring windows overlap, so the same
/// item often fills several of the best entries.
const ENTRIES_PER_ITEM: usize = 4;

impl Index {
    /// Whether this index keeps region descriptors.
    pub fn has_regions(&self) -> bool {
        self.ann.regions.is_some()
    }

    /// The `k` items with a region most similar to any of `queries` (raw L2-normalised
    /// vectors of the index's dimension, e.g. one image at several scales), best first, each
    /// scored by its best region (cosine in the regions' space) and with that region as its
    /// `region`; only items of `within` when given. Empty when the index keeps no regions.
    pub fn search_regions(
        &self,
        queries: &[&[f32]],
        k: usize,
        within: Option<&ItemSet>,
    ) -> Result<Vec<Hit>, IndexError> {
        let Some(regions) = &self.ann.regions else {
            return Ok(Vec::new());
        };
        let mut best: HashMap<ItemId, (f32, usize)> = HashMap::new();
        for query in queries {
            self.check_vector(query)?;
            let projected = regions.project_query(query);
            let wanted = k.saturating_mul(ENTRIES_PER_ITEM).saturating_add(32);
            for found in regions.search(&projected, wanted, within)? {
                let (item, region) = region_of_key(found.id as u64);
                let entry = best.entry(item).or_insert((f32::NEG_INFINITY, 0));
                if found.score > entry.0 {
                    *entry = (found.score, region);
                }
            }
        }
        let mut ranked: Vec<(ItemId, f32, usize)> = best
            .into_iter()
            .map(|(item, (score, region))| (item, score, region))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT f.path, i.t, f.kind, r.boxes FROM items i JOIN files f ON f.id = i.file_id
             JOIN regions r ON r.item_id = i.id WHERE i.id = ?1",
        )?;
        let mut hits = Vec::with_capacity(k.min(ranked.len()));
        for (id, score, region) in ranked {
            if hits.len() == k {
                break;
            }
            let row = stmt
                .query_row([id], |r| {
                    let path: String = r.get(0)?;
                    let t: Option<f64> = r.get(1)?;
                    let kind: String = r.get(2)?;
                    let boxes = r.get_ref(3)?.as_blob()?;
                    Ok((path, t, kind, region_codec::region_box(boxes, region)))
                })
                .optional()?;
            // Removed by another process since our last refresh.
            let Some((path, t, kind, region)) = row else {
                continue;
            };
            let kind = MediaKind::parse(&kind)
                .ok_or_else(|| IndexError::Corrupt(format!("unknown media kind {kind:?}")))?;
            hits.push(Hit {
                id,
                score,
                path,
                t,
                kind,
                inliers: None,
                region,
            });
        }
        Ok(hits)
    }

    /// Checks an item's regions against the index: as many vectors as boxes, of its
    /// dimension, finite, and no more than fit in a key.
    pub(super) fn check_regions(&self, item: &NewItem) -> Result<(), IndexError> {
        let regions = &item.regions;
        let bad = |why: String| Err(IndexError::InvalidVector(format!("regions: {why}")));
        if regions.len() > catalog::MAX_REGIONS {
            return bad(format!(
                "{} regions, at most {}",
                regions.len(),
                catalog::MAX_REGIONS
            ));
        }
        if regions.vectors.len() != regions.len() * self.config.dim {
            return bad(format!(
                "{} values for {} regions of {}",
                regions.vectors.len(),
                regions.len(),
                self.config.dim
            ));
        }
        if regions.vectors.iter().any(|x| !x.is_finite()) {
            return bad("NaN or infinite value".into());
        }
        let inside = |r: &Region| [r.x, r.y, r.w, r.h].iter().all(|v| (0.0..=1.0).contains(v));
        if !regions.boxes.iter().all(inside) {
            return bad("a box outside the image".into());
        }
        Ok(())
    }
}
