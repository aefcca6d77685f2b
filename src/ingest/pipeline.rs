//! The ingestion pipeline proper: bounded channels between a feeder, decode workers, the
//! batched network stage and the committing writer (see the module docs of `ingest`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use tracing::{debug, info, warn};

use super::scan::{self, Candidate};
use crate::engine::SharedIndex;
use crate::error::Result;
use crate::featurizer::{Featurizer, BATCH_SIZE};
use crate::index::{MediaKind, NewFile, NewItem};
use crate::video::{self, VideoError, VideoFrames, VideoOptions};

/// Progress of a run, reported after every batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Files handled so far (indexed or failed).
    pub done: usize,
    /// Files that need work in this run.
    pub total: usize,
    /// Files that could not be indexed so far.
    pub failed: usize,
    /// Video frames kept so far (videos count as files in `done` and `total`).
    pub frames: usize,
}

pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Knobs of a run; `Default` suits a laptop.
#[derive(Clone)]
pub struct IngestOptions {
    /// Decoder threads. Decoding and inference share the cores: on 2 cores, 2 decoders keep
    /// the network fed without starving it.
    pub decode_threads: usize,
    /// Files per catalog transaction: larger is faster, smaller loses less on a crash.
    pub commit_every: usize,
    /// Set it (e.g. from a Ctrl-C handler) to stop after the batch in flight is committed.
    pub cancel: Arc<AtomicBool>,
    pub progress: Option<ProgressFn>,
    /// How videos are sampled into frames.
    pub video: VideoOptions,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            decode_threads: crate::available_cores(),
            commit_every: 256,
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            video: VideoOptions::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct IngestReport {
    /// Files indexed (new or modified), videos included.
    pub added: usize,
    /// Of those, videos.
    pub videos: usize,
    /// Frames kept from those videos.
    pub frames: usize,
    /// Videos indexed only in part (damaged or truncated): what decoded is searchable, the
    /// reason says what did not.
    pub partial: Vec<(PathBuf, String)>,
    /// Files skipped because their stamp had not changed.
    pub unchanged: usize,
    /// Vanished files pruned from the index.
    pub removed: usize,
    /// Files that could not be indexed, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// True when the run was stopped early; what was committed stays.
    pub cancelled: bool,
    pub elapsed: Duration,
}

/// A decoded, preprocessed image waiting for the network.
struct Prepared {
    candidate: Candidate,
    tensor: Vec<f32>,
    width: u32,
    height: u32,
}

type Decoded = std::result::Result<Prepared, (PathBuf, String)>;

/// Indexes `roots` into `index`: the whole pipeline, start to finish.
pub(crate) fn run(
    featurizer: &Featurizer,
    index: &SharedIndex,
    roots: &[PathBuf],
    options: &IngestOptions,
) -> Result<IngestReport> {
    let started = Instant::now();
    let known = index.read()?.file_stamps()?;
    let plan = scan::plan(roots, &known);
    info!(
        new_or_modified = plan.to_index.len(),
        unchanged = plan.unchanged,
        vanished = plan.vanished.len(),
        "scanned"
    );

    let mut report = IngestReport {
        unchanged: plan.unchanged,
        failed: plan.unreadable,
        ..IngestReport::default()
    };
    for (path, reason) in &report.failed {
        warn!(path = %path.display(), %reason, "skipped");
    }
    if !plan.vanished.is_empty() {
        report.removed = index.write()?.remove_paths(&plan.vanished)?;
    }

    let total = plan.to_index.len();
    let (videos, images): (Vec<Candidate>, Vec<Candidate>) = plan
        .to_index
        .into_iter()
        .partition(|c| video::is_supported_video(&c.path));
    let mut writer = Writer::new(index, options, total);
    let (job_tx, job_rx) = bounded::<Candidate>(4 * BATCH_SIZE);
    let (done_tx, done_rx) = bounded::<Decoded>(2 * BATCH_SIZE);

    let outcome = std::thread::scope(|scope| {
        let cancel = &options.cancel;
        scope.spawn(move || feed(images, job_tx, cancel));
        for _ in 0..options.decode_threads.max(1) {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || decode_worker(featurizer, job_rx, done_tx));
        }
        drop((job_rx, done_tx));
        embed_and_commit(featurizer, done_rx, &mut writer)
    });
    let outcome = outcome.and_then(|()| index_videos(featurizer, videos, &mut writer));
    let committed = writer.finish();
    outcome?;
    committed?;

    report.added = writer.added;
    report.videos = writer.videos;
    report.frames = writer.frames;
    report.partial = std::mem::take(&mut writer.partial);
    report.failed.extend(writer.failed);
    report.cancelled = options.cancel.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Sends the files to decode, stopping early when cancelled.
fn feed(candidates: Vec<Candidate>, jobs: Sender<Candidate>, cancel: &AtomicBool) {
    for candidate in candidates {
        if cancel.load(Ordering::Relaxed) || jobs.send(candidate).is_err() {
            break;
        }
    }
}

fn decode_worker(featurizer: &Featurizer, jobs: Receiver<Candidate>, done: Sender<Decoded>) {
    for candidate in jobs {
        let mut tensor = vec![0.0; featurizer.tensor_len()];
        let result = match featurizer.prepare_file(&candidate.path, &mut tensor) {
            Ok((width, height)) => Ok(Prepared {
                candidate,
                tensor,
                width,
                height,
            }),
            Err(e) => Err((candidate.path, e.to_string())),
        };
        if done.send(result).is_err() {
            break; // the embedding stage stopped (cancelled or failed)
        }
    }
}

/// Gathers decoded images into batches, runs the network and hands the vectors to the writer.
/// A partial batch goes through as soon as the decoders fall behind, so the network never
/// waits for a batch to fill while work is available. Takes the receiver by value: returning
/// (done, cancelled or failed) drops it, which stops the decoders and the feeder in turn.
fn embed_and_commit(
    featurizer: &Featurizer,
    decoded: Receiver<Decoded>,
    writer: &mut Writer<'_>,
) -> Result<()> {
    let mut batch: Vec<Prepared> = Vec::with_capacity(BATCH_SIZE);
    let mut inputs: Vec<f32> = Vec::with_capacity(BATCH_SIZE * featurizer.tensor_len());
    let mut open = true;
    while open || !batch.is_empty() {
        if writer.cancelled() {
            return Ok(());
        }
        if open && batch.len() < BATCH_SIZE {
            let wait = if batch.is_empty() {
                Duration::from_millis(500)
            } else {
                Duration::from_millis(5)
            };
            match decoded.recv_timeout(wait) {
                Ok(Ok(prepared)) => {
                    batch.push(prepared);
                    continue;
                }
                Ok(Err((path, reason))) => {
                    writer.fail(path, reason);
                    continue;
                }
                Err(RecvTimeoutError::Timeout) if batch.is_empty() => continue,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        if batch.is_empty() {
            continue;
        }
        inputs.clear();
        for prepared in &batch {
            inputs.extend_from_slice(&prepared.tensor);
        }
        let out = featurizer.embed(&inputs, batch.len())?;
        for (row, prepared) in batch.drain(..).enumerate() {
            writer.push(prepared, out.feature(row).to_vec())?;
        }
    }
    Ok(())
}

/// Indexes videos one after the other: ffmpeg decodes (on its own threads) while this thread
/// embeds the frames it sampled, and each video is committed as one file once complete. A
/// video that cannot be read fails alone; a failure of the model or the index fails the run.
fn index_videos(
    featurizer: &Featurizer,
    videos: Vec<Candidate>,
    writer: &mut Writer<'_>,
) -> Result<()> {
    for candidate in videos {
        if writer.cancelled() {
            break;
        }
        let before = writer.progress.frames;
        let options = writer.options;
        let result = video::embed_video(
            featurizer,
            &candidate.path,
            &options.video,
            &options.cancel,
            |kept| {
                writer.progress.frames = before + kept;
                writer.report();
            },
        );
        match result {
            Ok(frames) => writer.push_video(candidate, frames)?,
            Err(VideoError::Cancelled) => {
                // Not committed: the next run sees the video as new and starts it again.
                writer.progress.frames = before;
                break;
            }
            Err(VideoError::Engine(e)) => return Err(*e),
            Err(e) => {
                writer.progress.frames = before;
                writer.fail(candidate.path, e.to_string());
            }
        }
    }
    Ok(())
}

/// Collects embedded files and commits them to the index in transactions.
struct Writer<'a> {
    index: &'a SharedIndex,
    options: &'a IngestOptions,
    pending: Vec<NewFile>,
    last_commit: Instant,
    progress: Progress,
    added: usize,
    videos: usize,
    frames: usize,
    partial: Vec<(PathBuf, String)>,
    failed: Vec<(PathBuf, String)>,
}

impl<'a> Writer<'a> {
    /// Longest time a finished file waits before it is committed.
    const MAX_COMMIT_DELAY: Duration = Duration::from_secs(2);

    fn new(index: &'a SharedIndex, options: &'a IngestOptions, total: usize) -> Self {
        Writer {
            index,
            options,
            pending: Vec::new(),
            last_commit: Instant::now(),
            progress: Progress {
                total,
                ..Progress::default()
            },
            added: 0,
            videos: 0,
            frames: 0,
            partial: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn cancelled(&self) -> bool {
        self.options.cancel.load(Ordering::Relaxed)
    }

    fn fail(&mut self, path: PathBuf, reason: String) {
        warn!(path = %path.display(), %reason, "skipped");
        self.failed.push((path, reason));
        self.progress.failed += 1;
        self.progress.done += 1;
        self.report();
    }

    fn push(&mut self, prepared: Prepared, vector: Vec<f32>) -> Result<()> {
        let Prepared {
            candidate,
            width,
            height,
            ..
        } = prepared;
        let Some(path) = candidate.path.to_str().map(str::to_owned) else {
            self.fail(candidate.path, "path is not valid UTF-8".into());
            return Ok(());
        };
        self.pending.push(NewFile {
            path,
            stamp: candidate.stamp,
            kind: MediaKind::Image,
            items: vec![NewItem {
                t: None,
                width,
                height,
                vector,
            }],
        });
        self.progress.done += 1;
        if self.pending.len() >= self.options.commit_every
            || self.last_commit.elapsed() >= Self::MAX_COMMIT_DELAY
        {
            self.commit()?;
        }
        self.report();
        Ok(())
    }

    /// Stores a video's kept frames as the items of one file and commits at once: a video is
    /// expensive to redo, and its frames already make a sizeable transaction.
    fn push_video(&mut self, candidate: Candidate, frames: VideoFrames) -> Result<()> {
        let Some(path) = candidate.path.to_str().map(str::to_owned) else {
            self.fail(candidate.path, "path is not valid UTF-8".into());
            return Ok(());
        };
        if let Some(problem) = frames.problem {
            warn!(path = %path, %problem, kept = frames.items.len(), "video indexed in part");
            self.partial.push((candidate.path, problem));
        }
        debug!(path = %path, sampled = frames.sampled, kept = frames.items.len(), "video");
        let kept = frames.items.len();
        self.pending.push(NewFile {
            path,
            stamp: candidate.stamp,
            kind: MediaKind::Video,
            items: frames.items,
        });
        self.commit()?;
        self.videos += 1;
        self.frames += kept;
        self.progress.frames = self.frames;
        self.progress.done += 1;
        self.report();
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.pending);
        let n = files.len();
        self.index.write()?.add(files)?;
        self.added += n;
        self.last_commit = Instant::now();
        debug!(files = n, total = self.added, "committed");
        Ok(())
    }

    /// Commits what is pending and saves the ANN snapshot.
    fn finish(&mut self) -> Result<()> {
        self.commit()?;
        self.index.write()?.checkpoint()?;
        self.report();
        Ok(())
    }

    fn report(&self) {
        if let Some(progress) = &self.options.progress {
            progress(&self.progress);
        }
    }
}
