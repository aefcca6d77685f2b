//! The index: a SQLite catalog (source of truth) and an HNSW index derived from it.
