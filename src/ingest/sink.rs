//! Where ingested files go. The pipeline computes the same thing for every file whatever door
//! it came in by; a [`Sink`] decides where that lands: the index ([`IndexSink`], for `index`,
//! uploads and `import`) or a vector shard ([`crate::shard::ShardSink`], for `embed`).

use std::time::{Duration, Instant};

use tracing::debug;

use crate::engine::SharedIndex;
use crate::error::Result;
use crate::index::{ContentHash, FileStamp, MediaKind, NewFile};

/// A file that could not be embedded, with what is known of it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub key: String,
    /// None when the file could not even be looked at.
    pub stamp: Option<FileStamp>,
    /// Known when the bytes could be read (they did not decode).
    pub content_hash: Option<ContentHash>,
    pub kind: MediaKind,
    pub reason: String,
}

/// The destination of a run.
pub trait Sink {
    /// Takes one embedded file with all its items (a video's frames come together);
    /// `partial` says why a video was embedded only in part.
    fn put(&mut self, file: NewFile, partial: Option<&str>) -> Result<()>;
    /// Takes note of a file that could not be embedded.
    fn fail(&mut self, failure: &Failure) -> Result<()>;
    /// Makes everything taken so far durable (also when the run was cancelled).
    fn finish(&mut self) -> Result<()>;
}

/// Commits files to the index in transactions of up to `commit_every` files, and at least
/// every [`IndexSink::MAX_COMMIT_DELAY`]; a video is committed at once (it is expensive to
/// redo, and its frames already make a sizeable transaction). Failures are only reported: an
/// unreadable file is tried again by the next run.
pub(crate) struct IndexSink<'a> {
    index: &'a SharedIndex,
    /// Leave the ANN behind until the caller checkpoints (see [`IndexSink::bulk`]).
    bulk: bool,
    commit_every: usize,
    pending: Vec<NewFile>,
    last_commit: Instant,
    /// Files committed so far.
    pub committed: usize,
}

impl<'a> IndexSink<'a> {
    /// Longest time a finished file waits before it is committed.
    const MAX_COMMIT_DELAY: Duration = Duration::from_secs(2);

    pub fn new(index: &'a SharedIndex, commit_every: usize) -> Self {
        IndexSink {
            index,
            bulk: false,
            commit_every: commit_every.max(1),
            pending: Vec::new(),
            last_commit: Instant::now(),
            committed: 0,
        }
    }

    /// A sink for a bulk load: files go to the catalog only (see [`Index::add_to_catalog`]),
    /// and finishing does not checkpoint: the caller learns a whitening if one is due (which
    /// builds the ANN anew) and then checkpoints, so that no vector is inserted twice.
    ///
    /// [`Index::add_to_catalog`]: crate::index::Index::add_to_catalog
    pub fn bulk(mut self) -> Self {
        self.bulk = true;
        self
    }

    fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.pending);
        let n = files.len();
        let mut index = self.index.write()?;
        if self.bulk {
            index.add_to_catalog(files)?;
        } else {
            index.add(files)?;
        }
        drop(index);
        self.committed += n;
        self.last_commit = Instant::now();
        debug!(files = n, total = self.committed, "committed");
        Ok(())
    }
}

impl Sink for IndexSink<'_> {
    fn put(&mut self, file: NewFile, _partial: Option<&str>) -> Result<()> {
        let video = file.kind == MediaKind::Video;
        self.pending.push(file);
        if video
            || self.pending.len() >= self.commit_every
            || self.last_commit.elapsed() >= Self::MAX_COMMIT_DELAY
        {
            self.commit()?;
        }
        Ok(())
    }

    fn fail(&mut self, _failure: &Failure) -> Result<()> {
        Ok(())
    }

    /// Commits what is pending and saves the ANN snapshot (a bulk sink leaves that to its
    /// caller).
    fn finish(&mut self) -> Result<()> {
        self.commit()?;
        if !self.bulk {
            self.index.write()?.checkpoint()?;
        }
        Ok(())
    }
}
