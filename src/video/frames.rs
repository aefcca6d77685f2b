//! A video to catalog items: sampled frames (see [`super::FrameReader`]) embedded in batches,
//! near-duplicates dropped.
//!
//! Near-duplicates are judged on the embeddings (cosine with the last kept frame at or above
//! [`VideoOptions::dedup_similarity`]) rather than on pixels before embedding. The embedding is
//! what search compares, so "near-identical" then means exactly "would answer the same
//! queries": a pixel difference both keeps frames the model sees as equal (noise, a person
//! walking across a CCTV view, a slow pan) and drops ones it sees as different (a small but
//! telling change). The price, embedding frames that are then dropped, is small because
//! ffmpeg's sampling already keeps only about one frame per interval: decoding the video costs
//! far more than the network does on those frames (see the measurements in the report).
//!
//! Blank frames (black or white: fades, the first frame of many films) are dropped before
//! embedding: they say nothing about the video, and would all match each other and every
//! dark query image across the whole collection.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::featurizer::Featurizer;
use crate::index::NewItem;

use super::{FrameReader, VideoError, VideoOptions};

/// The kept frames of a video, ready to store as the items of one catalog file.
#[derive(Debug, Default)]
pub struct VideoFrames {
    /// Kept frames in time order, each with its timestamp and L2-normalised vector.
    pub items: Vec<NewItem>,
    /// Frames ffmpeg sampled, before near-duplicates were dropped.
    pub sampled: usize,
    /// Why part of the video could not be read (decoder errors, a truncated file), when it
    /// was only partly readable: the frames before the damage are still in `items`.
    pub problem: Option<String>,
}

/// Samples, embeds and de-duplicates the frames of the video at `path`. Calls `on_kept` with
/// the number of frames kept so far after each batch. Fails when not a single frame decodes;
/// a video that breaks off part-way returns what decoded, with [`VideoFrames::problem`] set.
/// Memory stays bounded by a batch of frames whatever the video's length (plus the kept
/// vectors, ~5 KB per frame).
pub fn embed_video(
    featurizer: &Featurizer,
    path: &Path,
    options: &VideoOptions,
    cancel: &AtomicBool,
    mut on_kept: impl FnMut(usize),
) -> Result<VideoFrames, VideoError> {
    let tensor_len = featurizer.tensor_len();
    let mut reader = FrameReader::spawn(
        path,
        options,
        featurizer.decode_side(),
        featurizer.limits().max_pixels,
    )?;
    let mut out = VideoFrames::default();
    let batch_size = featurizer.batch_size();
    let mut tensors: Vec<u8> = Vec::with_capacity(batch_size * tensor_len);
    let mut pending: Vec<(f64, u32, u32)> = Vec::with_capacity(batch_size);
    let mut last_kept: Option<Vec<f32>> = None;
    let mut broke_off: Option<VideoError> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(VideoError::Cancelled);
        }
        let ended = match reader.next_frame() {
            Ok(Some(frame)) if is_blank(&frame.image) => {
                out.sampled += 1;
                false
            }
            Ok(Some(frame)) => {
                let start = tensors.len();
                tensors.resize(start + tensor_len, 0);
                featurizer
                    .prepare_image(&frame.image, &mut tensors[start..])
                    .map_err(crate::Error::from)?;
                let (w, h) = match (frame.source_width, frame.source_height) {
                    (0, _) | (_, 0) => frame.image.dimensions(),
                    size => size,
                };
                pending.push((frame.t, w, h));
                out.sampled += 1;
                false
            }
            Ok(None) => true,
            Err(e) => {
                broke_off = Some(e);
                true
            }
        };
        if pending.len() == batch_size || (ended && !pending.is_empty()) {
            let embedded = featurizer.embed(&tensors, pending.len())?;
            for (row, (t, width, height)) in pending.drain(..).enumerate() {
                let vector = embedded.feature(row);
                let duplicate = last_kept
                    .as_deref()
                    .is_some_and(|last| cosine(last, vector) >= options.dedup_similarity);
                if !duplicate {
                    last_kept = Some(vector.to_vec());
                    out.items.push(NewItem {
                        t: Some(t),
                        width,
                        height,
                        vector: vector.to_vec(),
                        regions: featurizer.regions_of(&embedded, row, width, height),
                        labels: featurizer.labels_of(&embedded, row),
                    });
                }
            }
            tensors.clear();
            on_kept(out.items.len());
        }
        if ended {
            break;
        }
    }
    let summary = reader.finish();
    if out.items.is_empty() {
        return Err(match broke_off {
            Some(e) => e,
            None => VideoError::Undecodable {
                reason: summary
                    .problem()
                    .unwrap_or_else(|| "the file has no video frames".to_owned()),
            },
        });
    }
    out.problem = broke_off
        .map(|e| e.to_string())
        .or_else(|| summary.problem());
    Ok(out)
}

/// Most luma standard deviation (0..255) of a frame that shows nothing: a fade is ~0-2,
/// a dark but real scene well above 8.
const BLANK_STDDEV: f64 = 4.0;

/// True when the frame is one flat colour (black, white, grey), noise aside.
fn is_blank(image: &image::RgbImage) -> bool {
    let (mut sum, mut sum_sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for px in image.pixels() {
        let [r, g, b] = px.0;
        let y = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
        sum += y;
        sum_sq += y * y;
        n += 1.0;
    }
    if n == 0.0 {
        return true;
    }
    let mean = sum / n;
    (sum_sq / n - mean * mean).max(0.0).sqrt() < BLANK_STDDEV
}

/// Cosine similarity of two L2-normalised vectors.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn flat_frames_are_blank_and_real_ones_are_not() {
        let black = RgbImage::from_pixel(64, 48, Rgb([16, 16, 16]));
        assert!(is_blank(&black));
        // Slight noise, as a compressed fade has.
        let noisy = RgbImage::from_fn(64, 48, |x, y| {
            let v = 20 + ((x * 7 + y * 13) % 5) as u8;
            Rgb([v, v, v])
        });
        assert!(is_blank(&noisy));
        let dark_scene = RgbImage::from_fn(64, 48, |x, _| {
            let v = if x < 32 { 10 } else { 60 };
            Rgb([v, v / 2, v])
        });
        assert!(!is_blank(&dark_scene));
        let real = image::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.cache/testdata/photos/skimage/camera.png"
        ));
        if let Ok(real) = real {
            assert!(!is_blank(&real.to_rgb8()));
        }
    }
}
