//! Finding the pairs: each image newer than the last scan asks the ANN for its nearest
//! neighbours, and the sameness test ([`super::sameness`]) decides on each close enough.
//! The pairs it confirms are kept in the catalog with how far the scan got, so the next scan
//! starts from there: finding the duplicates of new files costs in proportion to them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::engine::Engine;
use crate::image::ImageError;
use crate::index::{
    DuplicatePair, DuplicateScan, Index, ItemId, ItemRecord, MediaKind, SearchMode,
};
use crate::Result;

use super::sameness::{self, Look, SamenessOptions};

/// Images scanned per round: each round is committed, so an interrupted scan resumes after
/// the last round, and memory stays bounded whatever the library's size.
const ROUND: usize = 1024;

/// How pairs are found.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScanOptions {
    /// Nearest neighbours each image is compared with.
    pub neighbours: usize,
    /// The least cosine of the global descriptors for a neighbour to be compared at all.
    pub min_similarity: f32,
    pub sameness: SamenessOptions,
    /// Threads comparing images.
    pub threads: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            neighbours: 6,
            min_similarity: 0.5,
            sameness: SamenessOptions::default(),
            threads: crate::available_cores(),
        }
    }
}

impl ScanOptions {
    /// What decides which pairs are found: a scan under other settings starts over.
    fn settings(&self) -> String {
        let decisive = ScanOptions {
            threads: 0,
            ..*self
        };
        serde_json::to_string(&decisive).unwrap_or_default()
    }
}

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ScanReport {
    /// Images compared with their neighbours (those added since the last scan).
    pub scanned: usize,
    /// Pairs put to the sameness test.
    pub compared: usize,
    /// Pairs it confirmed.
    pub confirmed: usize,
    /// Pairs not compared because a file could not be read (moved, deleted, damaged).
    pub unreadable: usize,
    /// Whether the scan started over (first scan, or other settings).
    pub from_scratch: bool,
}

/// A pair of images close enough to be put to the sameness test.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub a: ItemRecord,
    pub b: ItemId,
    pub b_path: String,
    /// Their descriptors' cosine.
    pub similarity: f32,
}

/// The candidate pairs of a scan, each once: a pair found from both of its images is
/// compared only the first time. Only pairs pointing at an image the scan has not reached
/// are remembered, and forgotten when it does, so memory stays bounded by the neighbours
/// of the images in flight, not by the library.
#[derive(Default)]
pub struct Neighbourhood {
    ahead: HashSet<(ItemId, ItemId)>,
}

impl Neighbourhood {
    /// The candidate pairs of `images` (in id order, newer than all earlier calls'): each
    /// one's nearest neighbours among the indexed images, searched on `threads` threads.
    pub fn candidates(
        &mut self,
        index: &Index,
        images: &[(ItemRecord, Vec<f32>)],
        options: &ScanOptions,
    ) -> Result<Vec<Candidate>> {
        let found = crate::parallel_map(images, options.threads, |(_, vector)| {
            index.search(vector, options.neighbours + 1, SearchMode::Approximate)
        });
        let mut candidates = Vec::new();
        for ((record, _), hits) in images.iter().zip(found) {
            // A search that panicked finds nothing; the next scan does not retry it.
            let Some(hits) = hits else {
                tracing::warn!(path = %record.path, "neighbour search failed");
                continue;
            };
            let hits = hits?;
            for hit in hits {
                if hit.id == record.id
                    || hit.kind != MediaKind::Image
                    || hit.score < options.min_similarity
                {
                    continue;
                }
                let pair = (record.id.min(hit.id), record.id.max(hit.id));
                let first_sight = if hit.id > record.id {
                    self.ahead.insert(pair)
                } else {
                    !self.ahead.remove(&pair)
                };
                if first_sight {
                    candidates.push(Candidate {
                        a: record.clone(),
                        b: hit.id,
                        b_path: hit.path,
                        similarity: hit.score,
                    });
                }
            }
        }
        Ok(candidates)
    }
}

/// Scans the images added since the last scan (all of them the first time, or when the
/// settings changed) and records the pairs found.
pub fn scan(engine: &Engine, options: &ScanOptions) -> Result<ScanReport> {
    let settings = options.settings();
    let (mut after, from_scratch) = match engine.shared_index().read()?.duplicate_scan()? {
        Some(scan) if scan.settings == settings => (scan.through, false),
        _ => (0, true),
    };
    let mut report = ScanReport {
        from_scratch,
        ..ScanReport::default()
    };
    let mut reset = from_scratch;
    let mut neighbourhood = Neighbourhood::default();
    let looks = Looks::default();
    loop {
        let (images, candidates, through) = {
            let index = engine.shared_index().read()?;
            let images = index.images_after(after, ROUND)?;
            let through = match images.last() {
                Some((record, _)) => record.id,
                None => index.last_item_id()?.max(after),
            };
            let candidates = neighbourhood.candidates(&index, &images, options)?;
            (images, candidates, through)
        };
        // By image: its look is made once for all its neighbours.
        let by_image: Vec<&[Candidate]> = candidates.chunk_by(|x, y| x.a.id == y.a.id).collect();
        let outcomes = crate::parallel_map(&by_image, options.threads, |group| {
            confirm(engine, &looks, group, &options.sameness)
        });
        let mut pairs = Vec::new();
        for outcome in outcomes.into_iter().flatten() {
            pairs.extend(outcome.confirmed);
            report.unreadable += outcome.unreadable;
        }
        report.scanned += images.len();
        report.compared += candidates.len();
        report.confirmed += pairs.len();
        let scan = DuplicateScan {
            through,
            settings: settings.clone(),
        };
        engine
            .shared_index()
            .write()?
            .record_duplicate_scan(&pairs, &scan, reset)?;
        reset = false;
        if images.len() < ROUND {
            break;
        }
        after = through;
    }
    tracing::info!(
        scanned = report.scanned,
        compared = report.compared,
        confirmed = report.confirmed,
        "duplicate scan"
    );
    Ok(report)
}

/// What the sameness test said about one image's candidates.
struct Confirmed {
    confirmed: Vec<DuplicatePair>,
    /// Pairs not compared because a file could not be read.
    unreadable: usize,
}

/// Puts each of one image's candidate pairs to the sameness test.
fn confirm(
    engine: &Engine,
    looks: &Looks,
    candidates: &[Candidate],
    options: &SamenessOptions,
) -> Confirmed {
    let mut outcome = Confirmed {
        confirmed: Vec::new(),
        unreadable: 0,
    };
    let Some(first) = candidates.first() else {
        return outcome;
    };
    let look_a = match looks.get(engine, first.a.id, &first.a.path) {
        Ok(look) => look,
        Err(e) => {
            tracing::debug!(path = %first.a.path, error = %e, "not compared");
            outcome.unreadable = candidates.len();
            return outcome;
        }
    };
    for c in candidates {
        let look_b = match looks.get(engine, c.b, &c.b_path) {
            Ok(look) => look,
            Err(e) => {
                tracing::debug!(path = %c.b_path, error = %e, "not compared");
                outcome.unreadable += 1;
                continue;
            }
        };
        let found = sameness::compare(&look_a, &look_b, options);
        tracing::debug!(a = %c.a.path, b = %c.b_path, ?found, "compared");
        if found.is_some_and(|f| f.is_same(options)) {
            outcome.confirmed.push(DuplicatePair {
                a: c.a.id,
                b: c.b,
                similarity: c.similarity,
            });
        }
    }
    outcome
}

/// Looks most recently made, shared by the threads of a scan: neighbours recur (a photo's
/// renditions are each other's neighbours, and images near in id are near in time), and a
/// look keeps the local features its comparisons computed. About 1 MB each.
#[derive(Default)]
struct Looks(Mutex<HashMap<ItemId, Arc<Look>>>);

/// Looks kept at most; the cache starts over when full (scans go in id order, so what is
/// dropped is mostly what the scan has left behind).
const LOOKS_KEPT: usize = 256;

impl Looks {
    fn get(&self, engine: &Engine, id: ItemId, path: &str) -> Result<Arc<Look>, ImageError> {
        if let Some(look) = self.lock().get(&id) {
            return Ok(Arc::clone(look));
        }
        // Made outside the lock: two threads may both make one, and one of them is kept.
        let look = Arc::new(look_of(engine, path)?);
        let mut kept = self.lock();
        if kept.len() >= LOOKS_KEPT {
            kept.clear();
        }
        kept.insert(id, Arc::clone(&look));
        Ok(look)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ItemId, Arc<Look>>> {
        // A panic while holding it leaves a map that is still a valid cache.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn look_of(engine: &Engine, path: &str) -> std::result::Result<Look, ImageError> {
    let limits = engine.featurizer().limits();
    let decoded = crate::image::decode_file(Path::new(path), crate::verify::DECODE_SIDE, limits)?;
    Look::of(&decoded.image)
}
