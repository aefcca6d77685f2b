//! Import: vector shards (see [`crate::shard`]) into the index, through the same sink as
//! indexing, so that a shard's files land exactly as `index` would have stored them: the same
//! transactions (a crash loses at most the batch in flight), the same vectors, hashes and
//! stamps.
//!
//! Import upserts by path: a file whose stamp and hash equal what the index holds is left
//! alone (so importing twice changes nothing), a file the index holds in a newer version is
//! left alone too (a stale shard never undoes a later `index`), and any other is stored,
//! replacing what the index had.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::pipeline::{IngestOptions, Progress};
use super::sink::{IndexSink, Sink};
use crate::engine::SharedIndex;
use crate::error::{Error, Result};
use crate::index::{ContentHash, FileStamp, MediaKind, NewFile, NewItem};
use crate::shard::{self, Identity, ShardReader, ShardRow};

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Shard files read.
    pub shards: usize,
    /// Rows read from them.
    pub rows: u64,
    /// Files stored (new, or replacing an older version).
    pub added: usize,
    /// Of those, videos, and their frames.
    pub videos: usize,
    pub frames: usize,
    /// Files the index already held with the same stamp and content hash.
    pub unchanged: usize,
    /// Files the index holds in a newer version than the shard's.
    pub stale: usize,
    /// Files the shards record as failed (with the reason), or whose rows are unusable.
    pub failed: Vec<(PathBuf, String)>,
    /// True when the import was stopped early; what was committed stays.
    pub cancelled: bool,
    /// The whole import, the ANN's update included.
    pub elapsed: Duration,
    /// Of that, bringing the ANN up to date after the rows were stored (and learning the
    /// whitening when one was due).
    pub ann_elapsed: Duration,
}

/// Imports the shards at `paths` (files, or folders of `.parquet` files) into `index`, whose
/// vectors are `dim` long and made as `identity` says. Progress counts rows. The rows go to the
/// catalog only: the caller brings the ANN up to date (learning a whitening first if one is
/// due, so that no vector is inserted into a graph about to be replaced).
pub(crate) fn import(
    index: &SharedIndex,
    identity: &Identity,
    dim: usize,
    paths: &[PathBuf],
    options: &IngestOptions,
) -> Result<ImportReport> {
    let started = Instant::now();
    let shards = shard::list_shards(paths)?;
    let readers = shards
        .iter()
        .map(|path| ShardReader::open(path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut progress = Progress {
        total: readers
            .iter()
            .map(|r| usize::try_from(r.row_count()).unwrap_or(usize::MAX))
            .sum(),
        ..Progress::default()
    };
    let mut importer = Importer {
        index,
        dim,
        sink: IndexSink::new(index, options.commit_every).bulk(),
        report: ImportReport {
            shards: readers.len(),
            ..ImportReport::default()
        },
        file: None,
    };
    let mut imported = || -> Result<ControlFlow<()>> {
        for reader in &readers {
            debug!(shard = %reader.path().display(), rows = reader.row_count(), "importing");
            let flow = reader.for_each(identity, |row: ShardRow| {
                if options.cancel.load(Ordering::Relaxed) {
                    return Ok(ControlFlow::Break(()));
                }
                importer.row(row)?;
                progress.done += 1;
                progress.failed = importer.report.failed.len();
                if let Some(report) = &options.progress {
                    report(&progress);
                }
                Ok::<_, Error>(ControlFlow::Continue(()))
            })?;
            if flow.is_break() {
                // The file being gathered may have more rows: leave it for the next import.
                importer.file = None;
                return Ok(flow);
            }
        }
        importer.flush_file()?;
        Ok(ControlFlow::Continue(()))
    };
    let outcome = imported();
    let finished = importer.sink.finish();
    let flow = outcome?;
    finished?;
    let mut report = importer.report;
    report.cancelled = flow.is_break();
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Gathers consecutive rows of one path into a file and hands finished files to the sink.
struct Importer<'a> {
    index: &'a SharedIndex,
    dim: usize,
    sink: IndexSink<'a>,
    report: ImportReport,
    /// The file whose rows are being read.
    file: Option<Gathered>,
}

/// A file's rows so far.
struct Gathered {
    file: NewFile,
    /// Why the file cannot be stored, once a row says so.
    failure: Option<String>,
}

impl Importer<'_> {
    fn row(&mut self, row: ShardRow) -> Result<()> {
        self.report.rows += 1;
        if self.file.as_ref().is_some_and(|g| g.file.path != row.path) {
            self.flush_file()?;
        }
        let gathered = self.file.get_or_insert_with(|| Gathered {
            file: NewFile {
                path: row.path.clone(),
                stamp: row.stamp,
                content_hash: row.content_hash,
                kind: row.kind,
                facts: row.facts.clone(),
                items: Vec::new(),
            },
            failure: None,
        });
        if gathered.failure.is_some() {
            return Ok(());
        }
        if let Some(error) = row.error {
            gathered.failure = Some(error);
            return Ok(());
        }
        let Some(vector) = row.vector else {
            return Ok(()); // a file remembered with nothing to search (a video with no frame)
        };
        if let Err(problem) = check_vector(&vector, self.dim) {
            gathered.failure = Some(format!("unusable row in the shard: {problem}"));
            return Ok(());
        }
        gathered.file.items.push(NewItem {
            t: row.t,
            width: row.width.unwrap_or(0),
            height: row.height.unwrap_or(0),
            vector,
            regions: row.regions,
            labels: row.labels,
        });
        Ok(())
    }

    /// Stores the gathered file, unless the index holds it unchanged or newer.
    fn flush_file(&mut self) -> Result<()> {
        let Some(Gathered { file, failure }) = self.file.take() else {
            return Ok(());
        };
        if let Some(reason) = failure {
            warn!(path = %file.path, %reason, "not imported");
            self.report.failed.push((PathBuf::from(file.path), reason));
            return Ok(());
        }
        let stored = self.index.read()?.stored_file(&file.path)?;
        match compare(stored, file.stamp, file.content_hash) {
            Version::Same => self.report.unchanged += 1,
            Version::Older => self.report.stale += 1,
            Version::Other => {
                if file.kind == MediaKind::Video {
                    self.report.videos += 1;
                    self.report.frames += file.items.len();
                }
                self.report.added += 1;
                self.sink.put(file, None)?;
            }
        }
        Ok(())
    }
}

/// How a shard's file relates to what the index holds under its path.
#[derive(Debug, PartialEq)]
enum Version {
    /// The same stamp (and hash, when both are known).
    Same,
    /// The index holds a more recently modified version.
    Older,
    /// Not indexed, or another version that is not newer.
    Other,
}

fn compare(
    stored: Option<(FileStamp, Option<ContentHash>)>,
    stamp: FileStamp,
    hash: Option<ContentHash>,
) -> Version {
    let Some((stored_stamp, stored_hash)) = stored else {
        return Version::Other;
    };
    let same_hash = match (stored_hash, hash) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    if stored_stamp == stamp && same_hash {
        Version::Same
    } else if stored_stamp.mtime_ns > stamp.mtime_ns {
        Version::Older
    } else {
        Version::Other
    }
}

/// A vector the index can store: the index's length, finite values.
fn check_vector(vector: &[f32], dim: usize) -> Result<(), String> {
    if vector.len() != dim {
        return Err(format!(
            "a {}-d vector, the index holds {dim}-d vectors",
            vector.len()
        ));
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err("a vector with NaN or infinite values".into());
    }
    Ok(())
}

/// The shards' identity, from the first shard under `paths` that has a row: what a new index
/// is created with when it is made by an import.
pub fn shards_identity(paths: &[PathBuf]) -> Result<Option<Identity>> {
    for path in shard::list_shards(paths)? {
        if let Some(identity) = ShardReader::open(&path)?.first_identity()? {
            return Ok(Some(identity));
        }
    }
    Ok(None)
}

/// Whether `path` is a shard or holds any (for a clear message when there is nothing to
/// import).
pub fn has_shards(paths: &[PathBuf]) -> Result<bool> {
    Ok(!shard::list_shards(paths)?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64, mtime_ns: i64) -> FileStamp {
        FileStamp { size, mtime_ns }
    }

    #[test]
    fn versions_compare_by_stamp_hash_and_time() {
        let h = |b: u8| Some(ContentHash([b; 32]));
        assert_eq!(compare(None, stamp(1, 5), h(1)), Version::Other);
        assert_eq!(
            compare(Some((stamp(1, 5), h(1))), stamp(1, 5), h(1)),
            Version::Same
        );
        // An unknown hash on either side: the stamp decides.
        assert_eq!(
            compare(Some((stamp(1, 5), None)), stamp(1, 5), h(1)),
            Version::Same
        );
        // Same stamp, other bytes: stored anew.
        assert_eq!(
            compare(Some((stamp(1, 5), h(1))), stamp(1, 5), h(2)),
            Version::Other
        );
        assert_eq!(
            compare(Some((stamp(1, 9), h(1))), stamp(2, 5), h(2)),
            Version::Older
        );
        assert_eq!(
            compare(Some((stamp(1, 5), h(1))), stamp(2, 9), h(2)),
            Version::Other
        );
    }

    #[test]
    fn vectors_must_have_the_index_length_and_finite_values() {
        assert!(check_vector(&[0.6, 0.8], 2).is_ok());
        assert!(check_vector(&[1.0], 2).unwrap_err().contains("1-d"));
        assert!(check_vector(&[f32::NAN, 0.0], 2).is_err());
    }
}
