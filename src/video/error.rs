//! Errors of the video path.

use std::path::PathBuf;

/// What can go wrong reading a video. Everything but [`VideoError::Engine`] is the file's (or
/// the installation's ffmpeg's) fault and fails that video alone.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// The ffmpeg program is not installed (or not where [`super::VideoOptions::ffmpeg`] says).
    #[error("ffmpeg not found ({program}): install ffmpeg (scripts/setup.sh) to index videos")]
    FfmpegMissing { program: PathBuf },
    /// ffmpeg could not be started or talked to.
    #[error("running ffmpeg: {0}")]
    Io(#[from] std::io::Error),
    /// ffmpeg decoded no frame at all.
    #[error("no frame could be decoded: {reason}")]
    Undecodable { reason: String },
    /// ffmpeg stopped producing output and was killed.
    #[error("ffmpeg produced nothing for {seconds} s and was killed (a hung decoder?)")]
    Stalled { seconds: u64 },
    /// ffmpeg wrote something we do not understand on its pipe (a bug or an unexpected build).
    #[error("unexpected output from ffmpeg: {0}")]
    Protocol(String),
    /// A frame is bigger than the pixel limit.
    #[error("a frame of {width}x{height} pixels is over the limit of {limit} pixels")]
    TooLarge { width: u32, height: u32, limit: u64 },
    /// The caller asked to stop.
    #[error("cancelled")]
    Cancelled,
    /// The model or the index failed: not the video's fault.
    #[error(transparent)]
    Engine(Box<crate::Error>),
}

impl From<crate::Error> for VideoError {
    fn from(e: crate::Error) -> Self {
        VideoError::Engine(Box::new(e))
    }
}

impl VideoError {
    /// True when the error is the caller's input (a bad video), not a fault of the
    /// installation: servers answer 4xx for these and 5xx for the rest.
    pub fn is_user_error(&self) -> bool {
        match self {
            VideoError::Undecodable { .. }
            | VideoError::Stalled { .. }
            | VideoError::TooLarge { .. } => true,
            VideoError::Engine(e) => e.is_user_error(),
            _ => false,
        }
    }
}
