//! `lookalike import`: vector shards written by `lookalike embed` (by hand, or by the Spark
//! job in spark/) into the index.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use lookalike::index::Index;
use lookalike::ingest::{self, IngestOptions};
use lookalike::model::ModelKind;
use serde_json::json;

use super::index::{exit_code, progress_bar, resume_note, stop_on_ctrl_c, with_reasons};
use super::Global;

#[derive(Args)]
pub struct ImportArgs {
    /// Shard files, or folders of them (every .parquet file in the folder whose name does not
    /// start with '.' or '_')
    #[arg(required = true, value_name = "SHARD")]
    shards: Vec<PathBuf>,
    /// Files per catalog transaction (smaller: less redone after a crash; larger: faster)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    commit_every: usize,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: ImportArgs) -> Result<ExitCode> {
    if !ingest::has_shards(&args.shards)? {
        bail!(
            "no shards in {}: give .parquet files written by `lookalike embed`, or their folders",
            args.shards
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut engine_options = global.engine_options(false)?;
    if !Index::exists(&engine_options.db_dir) {
        // A new index takes the shards' model and descriptor.
        if let Some(identity) = ingest::shards_identity(&args.shards)? {
            let model: ModelKind = identity
                .model
                .parse()
                .with_context(|| format!("the shards' model {:?}", identity.model))?;
            engine_options.model = Some(model);
            engine_options.descriptor = Some(identity.descriptor);
        }
    }
    let engine = global.open_engine(engine_options)?;
    let mut options = IngestOptions {
        commit_every: args.commit_every.max(1),
        ..IngestOptions::default()
    };
    stop_on_ctrl_c(&options.cancel)?;
    let bar = progress_bar(global.quiet, "rows");
    options.progress = Some(bar.callback());
    let report = engine.import_shards(&args.shards, &options)?;
    bar.finish();

    let seconds = report.elapsed.as_secs_f64();
    let rate = report.rows as f64 / seconds.max(1e-9);
    if args.json {
        let failed = with_reasons(&report.failed);
        println!(
            "{}",
            json!({
                "shards": report.shards, "rows": report.rows, "added": report.added,
                "videos": report.videos, "frames": report.frames,
                "unchanged": report.unchanged, "stale": report.stale, "failed": failed,
                "cancelled": report.cancelled, "seconds": seconds,
                "ann_seconds": report.ann_elapsed.as_secs_f64(), "rows_per_second": rate,
            })
        );
    } else {
        for (path, reason) in &report.failed {
            eprintln!("not imported {}: {reason}", path.display());
        }
        println!(
            "imported {} files ({} rows from {} shards, {rate:.0} rows/s): {} unchanged, {} \
             older than indexed, {} failed{}",
            report.added,
            report.rows,
            report.shards,
            report.unchanged,
            report.stale,
            report.failed.len(),
            resume_note(report.cancelled)
        );
    }
    Ok(exit_code(report.cancelled))
}
