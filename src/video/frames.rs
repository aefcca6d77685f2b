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

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::featurizer::{Featurizer, BATCH_SIZE};
use crate::image::Preprocessor;
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
    let preprocessor = Preprocessor::new(featurizer.kind().input_size() as u32);
    let tensor_len = preprocessor.tensor_len();
    let mut reader = FrameReader::spawn(
        path,
        options,
        preprocessor.short_side(),
        featurizer.limits().max_pixels,
    )?;
    let mut out = VideoFrames::default();
    let mut tensors: Vec<f32> = Vec::with_capacity(BATCH_SIZE * tensor_len);
    let mut pending: Vec<(f64, u32, u32)> = Vec::with_capacity(BATCH_SIZE);
    let mut last_kept: Option<Vec<f32>> = None;
    let mut broke_off: Option<VideoError> = None;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(VideoError::Cancelled);
        }
        let ended = match reader.next_frame() {
            Ok(Some(frame)) => {
                let start = tensors.len();
                tensors.resize(start + tensor_len, 0.0);
                preprocessor
                    .preprocess(&frame.image, &mut tensors[start..])
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
        if pending.len() == BATCH_SIZE || (ended && !pending.is_empty()) {
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
    out.problem = broke_off.map(|e| e.to_string()).or_else(|| summary.problem());
    Ok(out)
}

/// Cosine similarity of two L2-normalised vectors.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
