//! From frame hits to answers about files: the best frame of each video for an image query,
//! and a vote of all query frames for a video query.

use std::collections::{HashMap, HashSet};

use crate::index::{Hit, ItemId, MediaKind};

/// Keeps the first (best) hit of each file, at most `k` of them; `hits` must be best first
/// (as every search returns them). An image has one item, so only videos' frames collapse.
pub fn best_per_file(hits: impl IntoIterator<Item = Hit>, k: usize) -> Vec<Hit> {
    let mut seen = HashSet::new();
    hits.into_iter()
        .filter(|hit| seen.insert(hit.path.clone()))
        .take(k)
        .collect()
}

/// The hits of one frame of a query video: at most one per file, best first.
#[derive(Debug, Clone)]
pub struct QueryFrameHits {
    /// The query frame's time in the query video.
    pub t: f64,
    pub hits: Vec<Hit>,
}

/// An indexed file that shares content with a query video.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMatch {
    pub path: String,
    pub kind: MediaKind,
    /// Mean over the query's frames of this file's best similarity to each frame (0 for a
    /// frame whose hits did not include the file): 1 = every query frame has a twin here.
    pub score: f32,
    /// Query frames whose hits included this file.
    pub frames: usize,
    /// The single best frame pair: the indexed item, its time, its similarity...
    pub id: ItemId,
    pub t: Option<f64>,
    pub best: f32,
    /// ... and the query frame's time.
    pub query_t: f64,
}

/// Votes per file: each query frame gives each file in its hits that file's best similarity,
/// and a file's score is the mean over all query frames, so a file that matches the whole
/// query beats one that matches a single moment of it very well. Best `k` first.
pub fn vote(frames: &[QueryFrameHits], k: usize) -> Vec<FileMatch> {
    let mut by_file: HashMap<String, FileMatch> = HashMap::new();
    for frame in frames {
        for hit in best_per_file(frame.hits.iter().cloned(), usize::MAX) {
            let entry = by_file
                .entry(hit.path.clone())
                .or_insert_with(|| FileMatch {
                    path: hit.path.clone(),
                    kind: hit.kind,
                    score: 0.0,
                    frames: 0,
                    id: hit.id,
                    t: hit.t,
                    best: f32::NEG_INFINITY,
                    query_t: frame.t,
                });
            entry.score += hit.score;
            entry.frames += 1;
            if hit.score > entry.best {
                entry.best = hit.score;
                entry.id = hit.id;
                entry.t = hit.t;
                entry.query_t = frame.t;
            }
        }
    }
    let n = frames.len().max(1) as f32;
    let mut matches: Vec<FileMatch> = by_file
        .into_values()
        .map(|mut m| {
            m.score /= n;
            m
        })
        .collect();
    matches.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.path.cmp(&b.path))
    });
    matches.truncate(k);
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: ItemId, path: &str, score: f32, t: Option<f64>) -> Hit {
        Hit {
            id,
            score,
            path: path.into(),
            t,
            kind: if t.is_some() {
                MediaKind::Video
            } else {
                MediaKind::Image
            },
            inliers: None,
            region: None,
        }
    }

    #[test]
    fn best_per_file_keeps_the_first_frame_of_each_video() {
        let hits = vec![
            hit(1, "a.mp4", 0.9, Some(4.0)),
            hit(2, "a.mp4", 0.8, Some(6.0)),
            hit(3, "b.jpg", 0.7, None),
            hit(4, "c.mp4", 0.6, Some(1.0)),
            hit(5, "a.mp4", 0.5, Some(8.0)),
        ];
        let grouped = best_per_file(hits.clone(), 10);
        let ids: Vec<_> = grouped.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        assert_eq!(best_per_file(hits, 2).len(), 2);
    }

    #[test]
    fn vote_prefers_the_file_that_matches_every_query_frame() {
        // "whole.mp4" is a good match of both query frames; "moment.mp4" a perfect match of
        // one and absent from the other.
        let frames = vec![
            QueryFrameHits {
                t: 0.0,
                hits: vec![
                    hit(1, "moment.mp4", 0.99, Some(3.0)),
                    hit(2, "whole.mp4", 0.8, Some(0.0)),
                ],
            },
            QueryFrameHits {
                t: 2.0,
                hits: vec![
                    hit(3, "whole.mp4", 0.85, Some(2.0)),
                    hit(4, "photo.jpg", 0.3, None),
                ],
            },
        ];
        let votes = vote(&frames, 10);
        let paths: Vec<_> = votes.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, vec!["whole.mp4", "moment.mp4", "photo.jpg"]);
        let whole = &votes[0];
        assert!((whole.score - 0.825).abs() < 1e-6);
        assert_eq!(whole.frames, 2);
        assert_eq!((whole.id, whole.t, whole.query_t), (3, Some(2.0), 2.0));
        assert!((votes[1].score - 0.495).abs() < 1e-6);
        assert_eq!(vote(&frames, 1).len(), 1);
    }
}
