//! The ingestion pipeline proper: bounded channels between a feeder, decode workers, the
//! batched network stage and the sink (see the module docs of `ingest`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use tracing::{debug, info, warn};

use super::input::{self, Content, Input, Source, Unreadable};
use super::scan;
use super::sink::{Failure, IndexSink, Sink};
use crate::engine::SharedIndex;
use crate::error::{Error, Result};
use crate::featurizer::Featurizer;
use crate::image::{self, ImageError, PhotoFacts};
use crate::index::{ContentHash, FileStamp, MediaKind, NewFile, NewItem};
use crate::video::{self, VideoError, VideoOptions};

/// Progress of a run, reported after every file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Files handled so far (embedded or failed).
    pub done: usize,
    /// Files that need work in this run (0 while unknown: a stream).
    pub total: usize,
    /// Files that could not be embedded so far.
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
    /// Files embedded (new or modified), videos included.
    pub added: usize,
    /// Of those, videos.
    pub videos: usize,
    /// Frames kept from those videos.
    pub frames: usize,
    /// Videos embedded only in part (damaged or truncated): what decoded is searchable, the
    /// reason says what did not.
    pub partial: Vec<(PathBuf, String)>,
    /// Files skipped because their stamp had not changed.
    pub unchanged: usize,
    /// Vanished files pruned from the index.
    pub removed: usize,
    /// Files that could not be embedded, with the reason.
    pub failed: Vec<(PathBuf, String)>,
    /// True when the run was stopped early; what was committed stays.
    pub cancelled: bool,
    pub elapsed: Duration,
}

/// A decoded, preprocessed image waiting for the network.
struct Prepared {
    key: String,
    stamp: FileStamp,
    content_hash: ContentHash,
    facts: PhotoFacts,
    tensor: Vec<u8>,
    width: u32,
    height: u32,
}

type Decoded = std::result::Result<Prepared, Failure>;

/// Indexes `roots` into `index`: scan against the stamps the index holds, prune vanished
/// files, then run the pipeline into the index.
pub(crate) fn index(
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
    let removed = if plan.vanished.is_empty() {
        0
    } else {
        index.write()?.remove_paths(&plan.vanished)?
    };
    let unchanged = plan.unchanged;
    let (inputs, rejected) = input::from_scan(plan);
    let mut sink = IndexSink::new(index, options.commit_every);
    let mut report = run(
        featurizer,
        Source::Files(inputs),
        rejected,
        options,
        &mut sink,
    )?;
    report.unchanged = unchanged;
    report.removed = removed;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Embeds every input of `source` into `sink`: images through the decode pool and the
/// batched network, then videos one at a time. `rejected` inputs are reported as failures
/// first. An unreadable file fails alone; a failure of the model, the sink or the source
/// itself (a tar stream cut short) fails the run, after the sink has made durable what it
/// took.
pub fn run(
    featurizer: &Featurizer,
    source: Source,
    rejected: Vec<Unreadable>,
    options: &IngestOptions,
    sink: &mut dyn Sink,
) -> Result<IngestReport> {
    let started = Instant::now();
    let total = source.known_len().map_or(0, |n| n + rejected.len());
    let mut tally = Tally::new(sink, options, total);
    for Unreadable { key, reason } in rejected {
        let kind = media_kind(&key);
        tally.fail(Failure {
            key,
            stamp: None,
            content_hash: None,
            kind,
            reason,
        })?;
    }

    let batch_size = featurizer.batch_size();
    let (job_tx, job_rx) = bounded::<Input>(4 * batch_size);
    let (done_tx, done_rx) = bounded::<Decoded>(2 * batch_size);
    let outcome = std::thread::scope(|scope| {
        let cancel = &options.cancel;
        let feeder = scope.spawn(move || feed(source, job_tx, cancel));
        for _ in 0..options.decode_threads.max(1) {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || decode_worker(featurizer, job_rx, done_tx));
        }
        drop((job_rx, done_tx));
        let embedded = embed_images(featurizer, done_rx, &mut tally);
        let videos = feeder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        embedded?;
        videos.map_err(Error::TarStream)
    });
    let outcome = outcome.and_then(|videos| embed_videos(featurizer, videos, &mut tally));
    let finished = tally.sink.finish();
    tally.report_progress();
    outcome?;
    finished?;

    let mut report = tally.report;
    report.cancelled = options.cancel.load(Ordering::Relaxed);
    report.elapsed = started.elapsed();
    Ok(report)
}

fn media_kind(key: &str) -> MediaKind {
    if video::is_supported_video(std::path::Path::new(key)) {
        MediaKind::Video
    } else {
        MediaKind::Image
    }
}

/// Sends the images to decode and keeps the videos for later (a streamed video is written to
/// a temporary file, which ffmpeg needs), stopping early when cancelled or when the decoders
/// stopped. Fails when the source itself fails.
fn feed(source: Source, jobs: Sender<Input>, cancel: &AtomicBool) -> std::io::Result<Vec<Input>> {
    let mut videos = Vec::new();
    let mut route = |input: Input| -> std::io::Result<bool> {
        if cancel.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if input.is_video() {
            let spooled = spool(input).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("writing a video to a temporary file: {e}"),
                )
            })?;
            videos.push(spooled);
            return Ok(true);
        }
        Ok(jobs.send(input).is_ok())
    };
    match source {
        Source::Files(inputs) => {
            for input in inputs {
                if !route(input)? {
                    break;
                }
            }
        }
        Source::Tar(reader) => {
            let mut failed = None;
            input::read_tar(reader, |input| match input.map(&mut route) {
                Ok(Ok(more)) => more,
                Ok(Err(e)) => {
                    failed = Some(e);
                    false
                }
                Err(unreadable) => {
                    warn!(key = %unreadable.key, reason = %unreadable.reason, "skipped");
                    true
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    Ok(videos)
}

/// A video carried as bytes, written to a temporary file.
fn spool(input: Input) -> std::io::Result<Input> {
    let Content::Bytes(bytes) = &input.content else {
        return Ok(input);
    };
    let suffix = std::path::Path::new(&input.key)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix("lookalike-video-")
        .suffix(&suffix)
        .tempfile()?;
    std::io::Write::write_all(&mut file, bytes)?;
    Ok(Input {
        content: Content::Spooled(file.into_temp_path()),
        ..input
    })
}

fn decode_worker(featurizer: &Featurizer, jobs: Receiver<Input>, done: Sender<Decoded>) {
    for input in jobs {
        if done.send(decode(featurizer, input)).is_err() {
            break; // the embedding stage stopped (cancelled or failed)
        }
    }
}

/// Reads, hashes, decodes and preprocesses one image.
fn decode(featurizer: &Featurizer, input: Input) -> Decoded {
    let Input {
        key,
        stamp,
        content,
    } = input;
    let read = match content {
        Content::Bytes(bytes) => Ok(bytes),
        Content::File(path) => image::read_file(&path, featurizer.limits()),
        Content::Spooled(path) => image::read_file(&path, featurizer.limits()),
    };
    let (bytes, content_hash) = match read {
        Ok(bytes) => {
            let hash = ContentHash::of_bytes(&bytes);
            (bytes, hash)
        }
        Err(e) => return Err(image_failure(key, stamp, None, &e)),
    };
    let mut tensor = vec![0; featurizer.tensor_len()];
    match featurizer.prepare_bytes(&bytes, &mut tensor) {
        Ok((width, height)) => Ok(Prepared {
            key,
            stamp,
            content_hash,
            facts: PhotoFacts::of_bytes(&bytes),
            tensor,
            width,
            height,
        }),
        Err(e) => Err(image_failure(key, stamp, Some(content_hash), &e)),
    }
}

fn image_failure(
    key: String,
    stamp: FileStamp,
    content_hash: Option<ContentHash>,
    e: &ImageError,
) -> Failure {
    Failure {
        key,
        stamp: Some(stamp),
        content_hash,
        kind: MediaKind::Image,
        reason: e.to_string(),
    }
}

/// A batch of decoded images and their tensors, one after the other.
struct Batch {
    prepared: Vec<Prepared>,
    inputs: Vec<u8>,
}

/// Runs the network stage as a pipeline of its own: one thread gathers decoded images into
/// batches, one runs the network, and this thread hands the vectors to the sink. A GPU then
/// computes one batch while the next is gathered and the last is stored. Takes the receiver
/// by value: returning (done, cancelled or failed) drops it, which stops the decoders and the
/// feeder in turn.
fn embed_images(
    featurizer: &Featurizer,
    decoded: Receiver<Decoded>,
    tally: &mut Tally<'_>,
) -> Result<()> {
    let cancel = &*tally.options.cancel;
    std::thread::scope(|scope| {
        // One batch waits for the network while it runs another: the network never waits for
        // the gathering, and memory stays at a few batches.
        let (batch_tx, batch_rx) = bounded::<std::result::Result<Batch, Failure>>(1);
        let (done_tx, done_rx) = bounded(1);
        scope.spawn(move || gather(featurizer, decoded, batch_tx, cancel));
        let network = scope.spawn(move || -> Result<()> {
            for item in batch_rx {
                let done = match item {
                    Ok(batch) => {
                        let out = featurizer.embed(&batch.inputs, batch.prepared.len())?;
                        Ok((batch.prepared, out))
                    }
                    Err(failure) => Err(failure),
                };
                if done_tx.send(done).is_err() {
                    break; // the sink failed
                }
            }
            Ok(())
        });
        for done in done_rx {
            match done {
                Err(failure) => tally.fail(failure)?,
                Ok((prepared, out)) => {
                    for (row, prepared) in prepared.into_iter().enumerate() {
                        let file = NewFile {
                            path: prepared.key,
                            stamp: prepared.stamp,
                            content_hash: Some(prepared.content_hash),
                            kind: MediaKind::Image,
                            facts: prepared.facts,
                            items: vec![NewItem {
                                t: None,
                                width: prepared.width,
                                height: prepared.height,
                                vector: out.feature(row).to_vec(),
                                regions: featurizer.regions_of(
                                    &out,
                                    row,
                                    prepared.width,
                                    prepared.height,
                                ),
                                labels: featurizer.labels_of(&out, row),
                            }],
                        };
                        tally.put(file, None)?;
                    }
                }
            }
        }
        network
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Gathers decoded images into batches of the featurizer's size and passes failures on. A
/// partial batch goes as soon as the decoders fall behind while the network is free, so the
/// network never waits for a batch to fill while work is available. Stops when cancelled or
/// when the network stage stopped.
fn gather(
    featurizer: &Featurizer,
    decoded: Receiver<Decoded>,
    out: Sender<std::result::Result<Batch, Failure>>,
    cancel: &AtomicBool,
) {
    let batch_size = featurizer.batch_size();
    let mut batch: Vec<Prepared> = Vec::with_capacity(batch_size);
    let mut open = true;
    while open || !batch.is_empty() {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        if open && batch.len() < batch_size {
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
                Ok(Err(failure)) => {
                    if out.send(Err(failure)).is_err() {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) if batch.is_empty() || out.is_full() => continue,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut inputs = Vec::with_capacity(batch.len() * featurizer.tensor_len());
        for prepared in &mut batch {
            inputs.extend_from_slice(&prepared.tensor);
            prepared.tensor = Vec::new(); // copied: free it now
        }
        let prepared = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
        if out.send(Ok(Batch { prepared, inputs })).is_err() {
            return;
        }
    }
}

/// Embeds videos one after the other: ffmpeg decodes (on its own threads) while this thread
/// embeds the frames it sampled, and each video goes to the sink whole. A video that cannot be
/// read fails alone; a failure of the model or the sink fails the run.
fn embed_videos(featurizer: &Featurizer, videos: Vec<Input>, tally: &mut Tally<'_>) -> Result<()> {
    for input in videos {
        if tally.cancelled() {
            break;
        }
        let fail = |input: Input, content_hash, reason: String| Failure {
            key: input.key,
            stamp: Some(input.stamp),
            content_hash,
            kind: MediaKind::Video,
            reason,
        };
        let Some(path) = input.content.file() else {
            tally.fail(fail(
                input,
                None,
                "the video was not spooled to a file".into(),
            ))?;
            continue;
        };
        let content_hash = match std::fs::File::open(path).and_then(ContentHash::of_reader) {
            Ok(hash) => hash,
            Err(e) => {
                tally.fail(fail(input, None, e.to_string()))?;
                continue;
            }
        };
        let before = tally.progress.frames;
        let cancel = &tally.options.cancel;
        let video_options = &tally.options.video;
        let progress = tally.options.progress.clone();
        let mut progress_now = tally.progress;
        let result = video::embed_video(featurizer, path, video_options, cancel, |kept| {
            if let Some(progress) = &progress {
                progress_now.frames = before + kept;
                progress(&progress_now);
            }
        });
        match result {
            Ok(frames) => {
                if let Some(problem) = &frames.problem {
                    warn!(key = %input.key, %problem, kept = frames.items.len(), "video embedded in part");
                }
                debug!(key = %input.key, sampled = frames.sampled, kept = frames.items.len(), "video");
                let file = NewFile {
                    path: input.key,
                    stamp: input.stamp,
                    content_hash: Some(content_hash),
                    kind: MediaKind::Video,
                    facts: PhotoFacts::default(),
                    items: frames.items,
                };
                tally.put(file, frames.problem.as_deref())?;
            }
            // Not stored: the next run sees the video as new and starts it again.
            Err(VideoError::Cancelled) => break,
            Err(VideoError::Engine(e)) => return Err(*e),
            Err(e) => tally.fail(fail(input, Some(content_hash), e.to_string()))?,
        }
    }
    Ok(())
}

/// Counts what a run did, reports progress, and passes files and failures to the sink.
struct Tally<'a> {
    sink: &'a mut dyn Sink,
    options: &'a IngestOptions,
    progress: Progress,
    report: IngestReport,
}

impl<'a> Tally<'a> {
    fn new(sink: &'a mut dyn Sink, options: &'a IngestOptions, total: usize) -> Self {
        Tally {
            sink,
            options,
            progress: Progress {
                total,
                ..Progress::default()
            },
            report: IngestReport::default(),
        }
    }

    fn cancelled(&self) -> bool {
        self.options.cancel.load(Ordering::Relaxed)
    }

    fn put(&mut self, file: NewFile, partial: Option<&str>) -> Result<()> {
        let path = PathBuf::from(&file.path);
        if file.kind == MediaKind::Video {
            self.report.videos += 1;
            self.report.frames += file.items.len();
            self.progress.frames = self.report.frames;
        }
        if let Some(problem) = partial {
            self.report.partial.push((path, problem.to_owned()));
        }
        self.sink.put(file, partial)?;
        self.report.added += 1;
        self.progress.done += 1;
        self.report_progress();
        Ok(())
    }

    fn fail(&mut self, failure: Failure) -> Result<()> {
        warn!(path = %failure.key, reason = %failure.reason, "skipped");
        self.sink.fail(&failure)?;
        self.report
            .failed
            .push((PathBuf::from(failure.key), failure.reason));
        self.progress.failed += 1;
        self.progress.done += 1;
        self.report_progress();
        Ok(())
    }

    fn report_progress(&self) {
        if let Some(progress) = &self.options.progress {
            progress(&self.progress);
        }
    }
}
