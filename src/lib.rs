//! lookalike: content-based image retrieval.
//!
//! Data flow: [`ingest`] scans files, [`image`] decodes and preprocesses them, [`model`] turns
//! pixels into L2-normalised feature vectors (the [`featurizer`] joins the two), and [`index`]
//! stores them (a SQLite catalog as the source of truth, an HNSW index derived from it) and
//! answers nearest-neighbour queries. [`engine::Engine`] is the handle the CLI and the HTTP
//! server use.

pub mod engine;
pub mod error;
pub mod eval;
pub mod featurizer;
pub mod image;
pub mod index;
pub mod ingest;
pub mod model;
pub mod server;

pub use error::{Error, Result};
