//! Retrieval quality, measured: the same engine a user runs, on real images, scored with the
//! standard metrics, so a change to the model, the preprocessing or the index shows up as a
//! number rather than an impression.
//!
//! Two protocols:
//! - [`run_labelled`]: a folder with one subfolder per label; every image queries all the
//!   others, and the images of its label are the relevant ones (mAP, precision@k).
//! - [`run_copy_detection`]: originals, and copies made by the [`Transform`]s (the Copydays /
//!   DISC21 idea); each copy queries the index of originals (plus distractors), and its own
//!   original must come back (recall@1, recall@10 per transform). With the detail
//!   transforms ([`Transform::DETAILS`]) this is the crop benchmark: a piece of 2 to 30% of a
//!   photo must find the photo.
//!
//! Each run builds a throw-away index in a temporary folder, so it never touches the user's.
//! Metric conventions are in [`metrics`].

pub mod agreement;
mod dataset;
pub mod metrics;
mod runner;
pub mod transforms;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use agreement::{agreement, Agreement};
pub use dataset::{
    images_under, labelled_folder, make_copies, CopyImage, CopyOptions, CopySet, LabelledImage,
};
pub use metrics::{Judged, Summary};
pub use runner::{run_copy_detection, run_labelled, CopyDetectSpec, EvalOptions};
pub use transforms::{Copied, Rng, Transform};

/// What can stop an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Opening, filling or searching the temporary index failed.
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The folder holds no usable images (for a labelled set: none in any subfolder).
    #[error("{}: no images to evaluate (a labelled set needs one subfolder of images per label)", .0.display())]
    NoImages(PathBuf),
}

impl EvalError {
    fn io(path: &Path, source: std::io::Error) -> EvalError {
        EvalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The outcome of one evaluation run (also the `--json` output of `lookalike eval`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "labelled", "copydetect" or "crops".
    pub protocol: &'static str,
    pub model: String,
    /// The index's descriptor options, as recorded in its catalog (JSON).
    pub descriptor: String,
    /// "approximate" (HNSW) or "exact" (brute force).
    pub search: &'static str,
    /// How many of each query's top results spatial verification re-ranked (0: none).
    pub verified_top: usize,
    /// Inliers that made a result verified.
    pub min_inliers: usize,
    /// How many results each query ranks: every indexed item for a labelled set, 10 for copy
    /// detection (so its mAP is the mean reciprocal rank within the top 10).
    pub depth: usize,
    /// Items in the index (originals and distractors for copy detection).
    pub indexed: u64,
    /// Per label or per transform, in a stable order.
    pub groups: Vec<Group>,
    pub overall: Summary,
    /// Median wall time of one top-10 search (the embedding of the query excluded; with
    /// verification, the query's local features and the verification included).
    pub search_ms_median: f64,
    /// Catalog plus ANN bytes on disk, per indexed item.
    pub bytes_per_item: f64,
    /// ANN bytes per indexed item: what searching holds in memory (the catalog's raw
    /// vectors stay on disk).
    pub search_bytes_per_item: f64,
    pub index_seconds: f64,
    /// Time to decode and embed all queries (0 for a labelled set, whose queries are indexed).
    pub embed_seconds: f64,
    /// Files that could not be indexed, copied or embedded, with the reason.
    pub failed: Vec<Failure>,
    /// Copy-detection queries whose original was not first: what to look at.
    pub misses: Vec<Miss>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub query: String,
    pub transform: String,
    pub original: String,
    /// Where the original came (1-based), if within the depth.
    pub rank: Option<usize>,
    /// What came first instead.
    pub top: Option<String>,
}
