//! Ingestion: scan folders, skip what has not changed, decode in parallel, embed in batches,
//! commit to the index.
//!
//! The stages are joined by bounded channels so memory stays flat however large the folder,
//! and a slow stage holds the others back instead of queueing without end:
//!
//! ```text
//! scan ─▶ feeder ─(jobs)─▶ decode workers ×N ─(tensors)─▶ embed (batches) ─▶ commit (one transaction per batch)
//! ```
//!
//! Videos take another road after the scan: one at a time, ffmpeg samples and scales their
//! frames (see [`crate::video`]), this thread embeds them in batches, and each video is
//! committed as one file whose items are its kept frames.
//!
//! The pipeline has several doors and two destinations ([`Sink`]): files found by a scan, a
//! manifest or a tar stream ([`Source`]) go to the index (`lookalike index`) or to a vector
//! shard (`lookalike embed`, see [`crate::shard`]), and shards come back into the index
//! through [`import`](import()) (`lookalike import`). Whatever the road, a file gets the same
//! vectors, hash and stamp.
//!
//! Each commit to the index is a single SQLite transaction, so a crash (even `kill -9`) loses
//! at most the batch in flight; the next run sees those files as new and picks them up again.

mod import;
mod input;
mod pipeline;
mod scan;
mod sink;

pub(crate) use import::import;
pub use import::{has_shards, shards_identity, ImportReport};
pub use input::{from_scan, read_manifest, take_part, Content, Input, Source, Unreadable};
pub(crate) use pipeline::index;
pub use pipeline::{run, IngestOptions, IngestReport, Progress, ProgressFn};
pub use scan::{is_supported_image, plan, stamp_of, Candidate, ScanPlan};
pub use sink::{Failure, Sink};
