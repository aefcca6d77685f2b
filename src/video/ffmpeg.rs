//! Running ffmpeg: the command line that samples and scales frames, and [`FrameReader`], which
//! streams them (with their timestamps) out of the child process with bounded memory, a stall
//! timeout and kill-on-drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use image::RgbImage;
use tracing::debug;

use super::log::{parse_line, LogLine};
use super::{ppm, VideoError, VideoOptions};

/// Frames decoded ahead of the consumer: each is ~0.25 MB at 256 px, and ffmpeg itself blocks
/// on the pipe once these are full, so a video of any length holds a few MB at most.
const FRAMES_AHEAD: usize = 4;
/// Decoder error messages kept for the report; the rest are only counted (a damaged stream can
/// log thousands).
const ERRORS_KEPT: usize = 3;

/// One sampled frame.
#[derive(Debug)]
pub struct Frame {
    /// Seconds from the start of the video (what `ffmpeg -ss` seeks to).
    pub t: f64,
    /// The frame scaled so its shorter side is at most the model's resize side.
    pub image: RgbImage,
    /// Size of the frame before scaling (0 when ffmpeg did not say).
    pub source_width: u32,
    pub source_height: u32,
}

/// What ffmpeg reported once it finished.
#[derive(Debug, Default, Clone)]
pub struct DecodeSummary {
    /// ffmpeg exited with status 0.
    pub exit_ok: bool,
    /// Error lines logged by ffmpeg (decoder or demuxer complaints).
    pub error_count: usize,
    /// The first few of them.
    pub errors: Vec<String>,
}

impl DecodeSummary {
    /// A one-line account of what went wrong, or `None` for a clean decode.
    pub fn problem(&self) -> Option<String> {
        if self.exit_ok && self.error_count == 0 {
            return None;
        }
        let first = self.errors.first().map_or("no message", String::as_str);
        Some(match self.error_count {
            0 => "ffmpeg exited with an error".to_owned(),
            1 => format!("decoder error: {first}"),
            n => format!("{n} decoder errors, the first: {first}"),
        })
    }
}

/// Streams the sampled frames of one video out of an ffmpeg child process.
///
/// Dropping it kills ffmpeg (if still running) and reaps it, so an early return, a
/// cancellation or a panic in the consumer never leaves a decoder behind.
pub struct FrameReader {
    child: Child,
    frames: Option<Receiver<Result<Frame, VideoError>>>,
    threads: Vec<JoinHandle<()>>,
    log: Arc<Mutex<DecodeSummary>>,
    stall_timeout: Duration,
    reaped: bool,
}

impl FrameReader {
    /// Starts ffmpeg on `path`: frames sampled per `options`, scaled so their shorter side is
    /// at most `short_side`; any frame over `max_pixels` is an error, not an allocation.
    pub fn spawn(
        path: &Path,
        options: &VideoOptions,
        short_side: u32,
        max_pixels: u64,
    ) -> Result<FrameReader, VideoError> {
        let mut command = Command::new(&options.ffmpeg);
        command
            .args([
                "-hide_banner",
                "-nostdin",
                "-nostats",
                "-loglevel",
                "level+info",
            ])
            .arg("-i")
            .arg(path)
            // The first real video stream (V: not cover art), nothing else decoded.
            .args(["-map", "0:V:0", "-an", "-sn", "-dn"])
            .arg("-vf")
            .arg(filter_graph(options, short_side))
            // One output picture per selected frame: no duplication to a constant rate.
            .args([
                "-fps_mode",
                "passthrough",
                "-f",
                "image2pipe",
                "-c:v",
                "ppm",
                "pipe:1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        debug!(?command, "starting ffmpeg");
        let mut child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => VideoError::FfmpegMissing {
                program: options.ffmpeg.clone(),
            },
            _ => VideoError::Io(e),
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(VideoError::Protocol("ffmpeg's pipes are missing".into()));
        };
        let log = Arc::new(Mutex::new(DecodeSummary::default()));
        let (info_tx, info_rx) = unbounded();
        let (frame_tx, frame_rx) = bounded(FRAMES_AHEAD);
        let stderr_log = log.clone();
        let threads = vec![
            std::thread::spawn(move || read_log(stderr, info_tx, &stderr_log)),
            std::thread::spawn(move || read_frames(stdout, info_rx, frame_tx, max_pixels)),
        ];
        Ok(FrameReader {
            child,
            frames: Some(frame_rx),
            threads,
            log,
            stall_timeout: options.stall_timeout,
            reaped: false,
        })
    }

    /// The next sampled frame, `None` at the end of the video. Kills ffmpeg and fails with
    /// [`VideoError::Stalled`] when it produces nothing for the stall timeout.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        let Some(frames) = &self.frames else {
            return Ok(None);
        };
        match frames.recv_timeout(self.stall_timeout) {
            Ok(frame) => frame.map(Some),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => {
                self.shut_down();
                Err(VideoError::Stalled {
                    seconds: self.stall_timeout.as_secs(),
                })
            }
        }
    }

    /// Waits for ffmpeg to exit (killing it if it lingers past the stall timeout) and returns
    /// what it reported.
    pub fn finish(mut self) -> DecodeSummary {
        let deadline = Instant::now() + self.stall_timeout;
        let mut status = None;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        self.shut_down();
        let mut summary = self.log.lock().map(|s| s.clone()).unwrap_or_default();
        summary.exit_ok = status.is_some_and(|s| s.success());
        summary
    }

    /// Kills ffmpeg if it still runs, reaps it and joins the reader threads. Idempotent.
    fn shut_down(&mut self) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // Dropping the receiver unblocks a reader thread waiting to hand over a frame.
        self.frames = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The filter graph: `select` keeps the first frame, any frame `frame_interval` seconds after
/// the last kept one, and scene changes (at most one per `min_gap`, so a flash or a fade does
/// not flood the index); `showinfo` logs each kept frame's time and size; `scale` shrinks it
/// so its shorter side is at most `short_side` (never enlarging); `format` makes it RGB.
/// Commas inside expressions are escaped for the filter-graph parser.
fn filter_graph(options: &VideoOptions, short_side: u32) -> String {
    let interval = options.frame_interval.max(0.04);
    let min_gap = (interval / 4.0).min(0.5);
    let scene = options.scene_threshold;
    let s = short_side;
    format!(
        "select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,{interval})\
         +gt(scene\\,{scene})*gte(t-prev_selected_t\\,{min_gap})',\
         showinfo,\
         scale=w='if(lte(iw\\,ih)\\,min(iw\\,{s})\\,-2)':h='if(lte(iw\\,ih)\\,-2\\,min(ih\\,{s}))',\
         format=rgb24"
    )
}

/// Parses ffmpeg's stderr: frame timestamps go to the frame reader, errors to the summary.
fn read_log(stderr: ChildStderr, info: Sender<(f64, u32, u32)>, log: &Mutex<DecodeSummary>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        match parse_line(text.trim_end()) {
            LogLine::Frame { t, width, height } => {
                // The frame reader may be gone (a failed picture): keep draining the log.
                let _ = info.send((t, width, height));
            }
            LogLine::Error(message) => {
                debug!(%message, "ffmpeg");
                if let Ok(mut log) = log.lock() {
                    log.error_count += 1;
                    if log.errors.len() < ERRORS_KEPT {
                        log.errors.push(message);
                    }
                }
            }
            LogLine::Other => {}
        }
    }
}

/// Reads pictures from ffmpeg's stdout and pairs each with its `showinfo` line (ffmpeg logs it
/// before it encodes the picture, so it is there or on its way).
fn read_frames(
    stdout: ChildStdout,
    info: Receiver<(f64, u32, u32)>,
    frames: Sender<Result<Frame, VideoError>>,
    max_pixels: u64,
) {
    let mut input = BufReader::with_capacity(1 << 16, stdout);
    loop {
        let frame = match ppm::read_frame(&mut input, max_pixels) {
            Ok(None) => return,
            Ok(Some(image)) => match info.recv() {
                Ok((t, source_width, source_height)) => Ok(Frame {
                    t,
                    image,
                    source_width,
                    source_height,
                }),
                Err(_) => Err(VideoError::Protocol(
                    "a picture came without its timestamp".into(),
                )),
            },
            Err(e) => Err(e),
        };
        let failed = frame.is_err();
        if frames.send(frame).is_err() || failed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_explains_errors_and_stays_quiet_on_a_clean_decode() {
        let clean = DecodeSummary {
            exit_ok: true,
            ..DecodeSummary::default()
        };
        assert_eq!(clean.problem(), None);
        let damaged = DecodeSummary {
            exit_ok: true,
            error_count: 7,
            errors: vec!["[h264 @ 0x1] error while decoding MB 3 4".into()],
        };
        let text = damaged.problem().unwrap();
        assert!(text.starts_with("7 decoder errors"), "{text}");
        assert!(text.contains("MB 3 4"), "{text}");
    }

    #[test]
    fn a_missing_ffmpeg_is_named_in_the_error() {
        let options = VideoOptions {
            ffmpeg: "/nonexistent/ffmpeg".into(),
            ..VideoOptions::default()
        };
        let err = FrameReader::spawn(Path::new("x.mp4"), &options, 256, 1 << 20)
            .err()
            .unwrap();
        assert!(matches!(err, VideoError::FfmpegMissing { .. }), "{err}");
        assert!(err.to_string().contains("install ffmpeg"));
    }
}
