use std::path::{Path, PathBuf};

/// What can go wrong writing or reading a vector shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not Parquet, or is damaged.
    #[error("{}: not a readable Parquet file: {source}", path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file, but not a lookalike shard (a column missing or of another type).
    #[error("{}: not a lookalike vector shard: {reason}", path.display())]
    NotAShard { path: PathBuf, reason: String },
    /// The shard's vectors were made by another model or descriptor than the index's.
    #[error(
        "{}: its vectors were made with {found}, the index holds {index}: embed again with the \
         index's model and descriptor, or import into another --db",
        path.display()
    )]
    Mismatch {
        path: PathBuf,
        found: String,
        index: String,
    },
}

impl ShardError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ShardError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        ShardError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
}
