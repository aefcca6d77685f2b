//! The library's error type: one enum over the errors of each stage, so callers (the CLI, the
//! HTTP server) can tell a user's bad input from a broken installation.

use std::path::PathBuf;

use crate::image::ImageError;
use crate::index::{IndexError, ItemId};
use crate::model::ModelError;
use crate::shard::ShardError;

/// Everything that can go wrong in lookalike's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image could not be read: the user's file is at fault (corrupt, too large, ...).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The model could not be fetched, verified, loaded or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The index could not be opened, read or written.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A file or folder given by the user could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The tar stream of inputs could not be read to its end.
    #[error("the tar stream could not be read to its end: {0}")]
    TarStream(std::io::Error),
    /// A duplicate group's files could not be moved, linked or deleted, or a journal not
    /// written or read.
    #[error(transparent)]
    Action(#[from] crate::duplicates::actions::ActionError),
    /// A vector shard could not be written or read.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The index was built with another model than the one asked for.
    #[error(
        "the index was built with {index}, not {asked}: use another --db, or leave --model out"
    )]
    ModelMismatch { index: String, asked: String },
    /// The index was built with other descriptor options than the ones asked for.
    #[error(
        "the index was built with descriptor {index}, not {asked}: use another --db, or leave \
         the descriptor options out"
    )]
    DescriptorMismatch { index: String, asked: String },
    /// No indexed item has this id.
    #[error("no indexed item with id {0}")]
    UnknownItem(ItemId),
    /// The path is not in the index.
    #[error("not in the index: {}", .0.display())]
    NotIndexed(PathBuf),
}

impl Error {
    /// True when the error is the caller's input (a bad image, an unknown id), not a fault of
    /// the installation: servers answer 4xx for these and 5xx for the rest.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Image(_) | Error::UnknownItem(_) | Error::NotIndexed(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
