//! Video: index sampled frames of a video, answer with the video and the moment.
//!
//! A video becomes one catalog file of kind [`MediaKind::Video`](crate::index::MediaKind) whose
//! items are its sampled frames, each with its timestamp. Frames are sampled at scene changes
//! plus at least one every [`VideoOptions::frame_interval`] seconds, and a frame whose embedding
//! is nearly identical to the last kept one is dropped (see [`frames`]).
//!
//! # Why the `ffmpeg` command and not a library binding
//!
//! Frames are decoded by running the `ffmpeg` program and reading raw pictures from its
//! standard output, rather than linking libav* through an `ffmpeg-sys` crate:
//! - no `-sys` build: the crate builds without libav* headers, pkg-config or a matching
//!   libav* version, and a machine without ffmpeg still indexes images (videos are reported);
//! - Debian's (and every distribution's) ffmpeg handles every codec, container and quirk
//!   (rotation, odd pixel formats, broken indexes) with years of fuzzing behind it;
//! - a decoder that crashes or hangs on a hostile file takes down a child process, not the
//!   indexer: the child runs with a stall timeout and is killed when its reader is dropped.
//!
//! The cost is a fork/exec per video and one copy of each sampled frame through a pipe: both
//! negligible next to decoding the video itself. ffmpeg also does the sampling (`select`
//! filter on scene score and time since the last selected frame) and the scaling (to about the
//! model's input), so only the few frames we keep, already small, ever cross the pipe.

mod error;
mod ffmpeg;
pub mod frames;
mod group;
mod log;
mod ppm;
mod still;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::VideoError;
pub use ffmpeg::{Frame, FrameReader};
pub use frames::{embed_video, VideoFrames};
pub use group::{best_per_file, vote, FileMatch, QueryFrameHits};
pub use still::{frame_at, STILL_TIMEOUT};

/// File extensions lookalike indexes as videos (lower case). ffmpeg probes the content
/// itself, so a misnamed file is reported, not indexed.
pub const VIDEO_EXTENSIONS: &[&str] = &["mp4", "m4v", "mkv", "webm", "avi", "mov", "mpeg", "mpg"];

/// True when the file name has a video extension lookalike indexes.
pub fn is_supported_video(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// How frames are sampled from a video; the same for indexing and for a video query, so both
/// see a video the same way.
#[derive(Debug, Clone)]
pub struct VideoOptions {
    /// At least one frame every this many seconds, whatever the scene detector says: the
    /// precision of the moment a search answers with.
    pub frame_interval: f64,
    /// ffmpeg's scene-change score (0..1, mean absolute difference to the previous frame,
    /// normalised) above which a frame is also taken. 0.3 catches cuts, not camera motion.
    pub scene_threshold: f64,
    /// A sampled frame whose embedding has at least this cosine similarity with the last kept
    /// frame is dropped: it would answer the same queries (a static shot, a CCTV camera).
    pub dedup_similarity: f32,
    /// ffmpeg is killed when it produces nothing for this long (a hung decoder).
    pub stall_timeout: Duration,
    /// The ffmpeg program.
    pub ffmpeg: PathBuf,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            frame_interval: 2.0,
            scene_threshold: 0.3,
            dedup_similarity: 0.97,
            stall_timeout: Duration::from_secs(60),
            ffmpeg: PathBuf::from("ffmpeg"),
        }
    }
}
