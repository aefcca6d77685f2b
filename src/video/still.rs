//! One still picture of a video at a given time: what a thumbnail of a video result shows.
//!
//! A separate short ffmpeg run rather than [`super::FrameReader`]: that one samples a whole
//! video through a filter graph, this one seeks (`-ss` before `-i`: a keyframe seek, then an
//! exact decode up to the time) and stops after one picture, so a still of a two-hour film
//! costs about as much as one of a short clip.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError};
use image::RgbImage;
use tracing::debug;

use super::{ppm, VideoError, VideoOptions};

/// How long ffmpeg gets to seek to a video's frame and decode it, for a thumbnail or a frame to
/// verify against (well under a second for ordinary files); past it the decoder is presumed
/// hung and killed.
pub const STILL_TIMEOUT: Duration = Duration::from_secs(20);

/// ffmpeg's complaints kept for the error message.
const STDERR_KEPT: u64 = 4 << 10;

/// The picture shown at `t` seconds into the video at `path`, scaled (never enlarged) to fit
/// in `max_side` x `max_side`. ffmpeg is killed when it takes longer than `timeout` (a hung
/// decoder, a hostile file).
pub fn frame_at(
    path: &Path,
    t: f64,
    max_side: u32,
    options: &VideoOptions,
    timeout: Duration,
) -> Result<RgbImage, VideoError> {
    let max_side = max_side.max(1);
    let mut command = Command::new(&options.ffmpeg);
    command
        .args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"])
        .arg("-ss")
        .arg(format!("{:.3}", t.max(0.0)))
        .arg("-i")
        .arg(path)
        .args(["-map", "0:V:0", "-an", "-sn", "-dn", "-frames:v", "1"])
        .arg("-vf")
        .arg(format!(
            "scale=w='min(iw\\,{max_side})':h='min(ih\\,{max_side})'\
             :force_original_aspect_ratio=decrease,format=rgb24"
        ))
        .args(["-f", "image2pipe", "-c:v", "ppm", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    debug!(?command, "grabbing a still");
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VideoError::FfmpegMissing {
            program: options.ffmpeg.clone(),
        },
        _ => VideoError::Io(e),
    })?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(VideoError::Protocol("ffmpeg's pipes are missing".into()));
    };
    // Both pipes are drained on their own threads so neither can fill up and block ffmpeg;
    // the picture is bounded by the scale filter (3 bytes per pixel of max_side^2).
    let picture_limit = 3 * u64::from(max_side) * u64::from(max_side) + 64;
    let (done_tx, done_rx) = bounded(1);
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let read = stdout
            .by_ref()
            .take(picture_limit)
            .read_to_end(&mut bytes)
            .map(|_| bytes);
        // The rest (none is expected after one picture) is discarded so ffmpeg can exit.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        let _ = done_tx.send(read);
    });
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let mut stderr = stderr;
        let _ = stderr.by_ref().take(STDERR_KEPT).read_to_string(&mut text);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        text
    });
    let received = done_rx.recv_timeout(timeout);
    if matches!(received, Err(RecvTimeoutError::Timeout)) {
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = reader.join();
    let log = log.join().unwrap_or_default();
    let bytes = match received {
        Ok(read) => read?,
        Err(RecvTimeoutError::Timeout) => {
            return Err(VideoError::Stalled {
                seconds: timeout.as_secs(),
            })
        }
        Err(RecvTimeoutError::Disconnected) => {
            return Err(VideoError::Protocol("the still reader stopped".into()))
        }
    };
    let max_pixels = u64::from(max_side) * u64::from(max_side);
    ppm::read_frame(&mut bytes.as_slice(), max_pixels)?.ok_or_else(|| {
        let reason = log.lines().next().unwrap_or("no picture at that time");
        VideoError::Undecodable {
            reason: reason.trim().to_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ffmpeg_is_named_in_the_error() {
        let options = VideoOptions {
            ffmpeg: "/nonexistent/ffmpeg".into(),
            ..VideoOptions::default()
        };
        let err = frame_at(
            Path::new("x.mp4"),
            1.0,
            64,
            &options,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, VideoError::FfmpegMissing { .. }), "{err}");
    }

    #[test]
    fn a_file_that_is_no_video_is_undecodable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.mp4");
        std::fs::write(&path, b"this is not a video").unwrap();
        let err = frame_at(
            &path,
            0.0,
            64,
            &VideoOptions::default(),
            Duration::from_secs(20),
        )
        .unwrap_err();
        assert!(matches!(err, VideoError::Undecodable { .. }), "{err}");
    }
}
