//! Vector shards: the seam between embedding and indexing, so that ingestion can run on many
//! machines (`lookalike embed`, one process per task of a Spark job) and one index folds the
//! results in (`lookalike import`).
//!
//! A shard is an Apache Parquet file with one row per image or video frame, holding everything
//! indexing computes for it: the file's path (its key), size, modification time and content
//! hash, the media kind and frame time, the picture's size, the model and descriptor that made
//! the vector, and the raw (pre-PCA) vector as `list<float>`. A file that could not be
//! embedded is one row with `error` set and no vector, so that a shard accounts for every input
//! and one bad file never fails a task. Parquet because every tool that works on data at this
//! scale reads it: Spark, pyarrow, pandas, DuckDB.
//!
//! A shard is written under a hidden temporary name in its folder and renamed once complete
//! (see [`ShardWriter`]), and its name is a function of its inputs ([`part_name`],
//! [`inputs_name`]): a retried or re-run task overwrites the same file, never adds a second.

mod error;
mod reader;
mod writer;

use std::path::{Path, PathBuf};

pub use error::ShardError;
pub use reader::{ShardReader, ShardRow};
pub use writer::{ShardSink, ShardWriter};

use crate::descriptor::DescriptorOptions;

/// The file name extension of shards.
pub const EXTENSION: &str = "parquet";

/// What made a shard's vectors: vectors of different identities are not comparable.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The model's name (`efficientnet-lite0`, ...).
    pub model: String,
    pub descriptor: DescriptorOptions,
}

impl Identity {
    /// True when vectors of `self` and `other` can be stored and searched together: same
    /// model, pooling and scales. Whitening and query expansion are the index's business
    /// (shards hold raw vectors), so they may differ; so may regions: a shard's are kept by an
    /// index that keeps regions, and an index without them ignores them.
    pub fn same_vectors(&self, other: &Identity) -> bool {
        self.model == other.model
            && self.descriptor.pooling == other.descriptor.pooling
            && self.descriptor.scales == other.descriptor.scales
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "model {} and descriptor {}",
            self.model,
            self.descriptor.to_json()
        )
    }
}

/// The name of part `part` (from 0) of `parts`: `part-00003-of-00016.parquet`, zero-padded so
/// that names sort in order.
pub fn part_name(part: usize, parts: usize) -> String {
    let width = parts.to_string().len().max(5);
    format!("part-{part:0width$}-of-{parts:0width$}.{EXTENSION}")
}

/// The name of the shard of these inputs, whatever their order: `shard-` and 16 hex digits of
/// the BLAKE3 hash of the sorted, distinct keys. The same inputs always make the same name.
pub fn inputs_name<S: AsRef<str>>(keys: &[S]) -> String {
    let mut sorted: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hasher = blake3::Hasher::new();
    for key in sorted {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    let hash = hasher.finalize();
    format!("shard-{}.{EXTENSION}", &hash.to_hex()[..16])
}

/// The shard files among `paths`: a file is taken as given, a folder for the `.parquet` files
/// directly in it, sorted by name, leaving out names that start with `.` or `_` (temporary
/// files of writers still at work, a job's own records), as Spark and pyarrow do.
pub fn list_shards(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ShardError> {
    let mut shards = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|e| ShardError::io(path, e))?;
        if !metadata.is_dir() {
            shards.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| ShardError::io(path, e))? {
            let entry = entry.map_err(|e| ShardError::io(path, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let hidden = name.starts_with('.') || name.starts_with('_');
            if !hidden && is_shard_name(Path::new(name.as_ref())) && entry.path().is_file() {
                found.push(entry.path());
            }
        }
        found.sort();
        shards.extend(found);
    }
    Ok(shards)
}

fn is_shard_name(name: &Path) -> bool {
    name.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(EXTENSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_sort_in_order_and_widen_past_five_digits() {
        assert_eq!(part_name(3, 16), "part-00003-of-00016.parquet");
        assert_eq!(part_name(7, 1_000_000), "part-0000007-of-1000000.parquet");
        assert!(part_name(9, 100) < part_name(10, 100));
    }

    #[test]
    fn an_inputs_name_depends_on_the_set_of_keys_only() {
        let a = inputs_name(&["/p/b.jpg", "/p/a.jpg", "/p/c.mp4"]);
        assert_eq!(
            a,
            inputs_name(&["/p/c.mp4", "/p/a.jpg", "/p/b.jpg", "/p/a.jpg"])
        );
        assert_ne!(a, inputs_name(&["/p/b.jpg", "/p/a.jpg"]));
        // Keys are separated, not concatenated: ["ab", "c"] is not ["a", "bc"].
        assert_ne!(inputs_name(&["ab", "c"]), inputs_name(&["a", "bc"]));
        assert!(a.starts_with("shard-") && a.ends_with(".parquet") && a.len() == 6 + 16 + 8);
    }

    #[test]
    fn listing_a_folder_skips_temporary_and_private_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.parquet",
            "a.parquet",
            ".shard.tmp.parquet",
            "_job.parquet",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let listed = list_shards(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.parquet", "b.parquet"]);
    }
}
