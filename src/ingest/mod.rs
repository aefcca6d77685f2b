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
//! Each commit is a single SQLite transaction, so a crash (even `kill -9`) loses at most the
//! batch in flight; the next run sees those files as new and picks them up again.

mod pipeline;
mod scan;

pub(crate) use pipeline::run;
pub use pipeline::{IngestOptions, IngestReport, Progress, ProgressFn};
pub use scan::{is_supported_image, plan, stamp_of, Candidate, ScanPlan};
