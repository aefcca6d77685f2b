//! Errors of the index module.

use std::path::PathBuf;

/// Everything that can go wrong while opening, writing or searching an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// `Index::open`/`open_read_only` on a directory that holds no index.
    #[error("no index found in {dir} (create one first, e.g. with `lookalike index`)")]
    NotFound { dir: PathBuf },

    /// The index was built with another model, vector size or descriptor: its vectors cannot
    /// be compared with the new ones, so mixing them would silently return nonsense.
    #[error(
        "the index in {dir} was built with {found}, not {wanted}: use another index directory \
         or re-create it"
    )]
    ConfigMismatch {
        dir: PathBuf,
        found: String,
        wanted: String,
    },

    /// A vector (to store or to search with) does not have the index's dimension, or holds
    /// NaN/infinity.
    #[error("invalid vector: {0}")]
    InvalidVector(String),

    /// A bad argument that is not a vector (e.g. a zero dimension).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Another process has the index open for writing (see `writer_lock.rs`): one process
    /// writes an index at a time.
    #[error(
        "the index in {dir} is being written by another process ({holder}): one process \
         writes an index at a time. Wait for it to finish, or, if it is `lookalike serve`, \
         add files through it (POST /api/index, or uploads)"
    )]
    Locked { dir: PathBuf, holder: String },

    /// A write was attempted through a handle opened with `Index::open_read_only`.
    #[error("the index is open read-only")]
    ReadOnly,

    /// The catalog's schema is not the one this build uses: newer (written by a newer
    /// lookalike), or older and opened read-only (readers never migrate).
    #[error(
        "the catalog in {dir} has schema version {found}, this build uses {supported}: \
         upgrade lookalike, or open the index once for writing to migrate it"
    )]
    SchemaMismatch {
        dir: PathBuf,
        found: i64,
        supported: i64,
    },

    /// The catalog is empty (no schema) while the directory holds ANN snapshots: the index's
    /// source of truth was lost (truncated, replaced), and starting a new one there would
    /// silently throw the old one away.
    #[error(
        "the catalog in {dir} is empty, but the directory holds the ANN snapshots of an \
         index: its catalog.sqlite was lost or truncated. Restore it from a backup, or delete \
         the *.usearch files to start a new index there"
    )]
    LostCatalog { dir: PathBuf },

    /// The catalog holds data that breaks its own invariants (hand edits, disk damage).
    #[error("corrupt catalog: {0}")]
    Corrupt(String),

    #[error("catalog (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A whitening could not be learned (too few vectors, bad dimensions) or read back.
    #[error(transparent)]
    Whitening(#[from] crate::descriptor::WhiteningError),

    #[error("ANN index (usearch): {0}")]
    Ann(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Converts usearch's C++ exceptions (whose type lives in the `cxx` crate, not a dependency of
/// ours) into [`IndexError::Ann`].
pub(crate) fn ann_err(e: impl std::fmt::Display) -> IndexError {
    IndexError::Ann(e.to_string())
}
