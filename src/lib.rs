//! lookalike: content-based image retrieval.
//!
//! Data flow: [`ingest`] scans files, [`image`] decodes and preprocesses them, [`model`] turns
//! pixels into L2-normalised feature vectors, and [`index`] stores them (a SQLite catalog as the
//! source of truth, an HNSW index derived from it) and answers nearest-neighbour queries.

pub mod image;
pub mod index;
pub mod model;
