//! lookalike: content-based image retrieval.
//!
//! Data flow: [`ingest`] scans files, [`image`] decodes and preprocesses them, [`model`] turns
//! pixels into L2-normalised feature vectors (the [`featurizer`] joins the two), and [`index`]
//! stores them (a SQLite catalog as the source of truth, an HNSW index derived from it) and
//! answers nearest-neighbour queries; [`video`] samples videos into frames (with ffmpeg) so a
//! video is searchable frame by frame; [`eval`] measures retrieval quality; [`verify`] re-ranks the top results by spatial
//! verification of local features. [`engine::Engine`]
//! is the handle the CLI and the HTTP server ([`server`]) use.

pub mod descriptor;
pub mod engine;
pub mod error;
pub mod eval;
pub mod featurizer;
pub mod image;
pub mod index;
pub mod ingest;
pub mod model;
pub mod server;
pub mod verify;
pub mod video;

pub use error::{Error, Result};

/// The number of cores to use by default (decoders, ONNX Runtime threads, search pools);
/// 2 when the system does not say.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
