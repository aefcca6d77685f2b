//! `lookalike eval`: retrieval quality on a labelled folder or by copy detection, in a
//! temporary index (the one at --db is never touched).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use lookalike::eval::{self, CopyDetectSpec, CopyOptions, EvalOptions, Report, Transform};
use lookalike::index::SearchMode;
use lookalike::model::ModelKind;

use super::index::DescriptorArgs;
use super::search::VerifyArgs;
use super::Global;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Every image queries all others; relevant = same label (one subfolder per label)
    Labelled {
        /// Folder with one subfolder of images per label
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Use the first N images (in path order) of each label
        #[arg(long, value_name = "N")]
        limit_per_label: Option<usize>,
        /// More photos to index (never queried, never relevant), to make the search harder;
        /// repeatable
        #[arg(long, value_name = "DIR")]
        distractors: Vec<PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Transformed copies of each photo must find their original
    Copydetect {
        #[command(flatten)]
        copies: CopyArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Details cut out of each photo (2, 5, 10, 20 and 30% of its area, rescaled and
    /// recompressed) must find the photo they were cut from
    Crops {
        #[command(flatten)]
        copies: CopyArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// The photos of a copy-detection run and how their copies are made.
#[derive(Args)]
pub struct CopyArgs {
    /// Original photos: folders (recursively) or files
    #[arg(required = true, value_name = "PHOTOS_DIR")]
    photos: Vec<PathBuf>,
    /// More photos to index (never queried), to make the search harder; repeatable
    #[arg(long, value_name = "DIR")]
    distractors: Vec<PathBuf>,
    /// Seed of the random transforms (crop place, angle, ...)
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Longest side of the copies, before transforming (0: full size)
    #[arg(long, default_value_t = 1024, value_name = "PIXELS")]
    max_side: u32,
    /// Write the copies here and keep them [default: a temporary folder]
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

impl CopyArgs {
    fn spec(self, protocol: &'static str, transforms: &[Transform]) -> CopyDetectSpec {
        CopyDetectSpec {
            protocol,
            photos: self.photos,
            distractors: self.distractors,
            work_dir: self.work_dir,
            copies: CopyOptions {
                transforms: transforms.to_vec(),
                seed: self.seed,
                max_side: self.max_side,
                ..CopyOptions::default()
            },
        }
    }
}

#[derive(Args)]
pub struct CommonArgs {
    /// Model: lite0 or lite2 [default: lite0]
    #[arg(long)]
    model: Option<ModelKind>,
    /// Brute-force search instead of the HNSW index
    #[arg(long)]
    exact: bool,
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    descriptor: DescriptorArgs,
    #[command(flatten)]
    verify: VerifyArgs,
}

pub fn run(global: &Global, command: EvalCommand) -> Result<ExitCode> {
    let options = |common: &CommonArgs| -> Result<EvalOptions> {
        let mut options = EvalOptions::new(global.model_store()?.dir().to_path_buf());
        options.model = common.model;
        options.descriptor = common.descriptor.options();
        options.threads = global.threads;
        options.verify = common.verify.options();
        if common.exact {
            options.mode = SearchMode::Exact;
        }
        Ok(options)
    };
    let (report, json) = match command {
        EvalCommand::Labelled {
            dir,
            limit_per_label,
            distractors,
            common,
        } => (
            eval::run_labelled(&dir, limit_per_label, &distractors, &options(&common)?)?,
            common.json,
        ),
        EvalCommand::Copydetect { copies, common } => (
            eval::run_copy_detection(
                &copies.spec("copydetect", &Transform::ALL),
                &options(&common)?,
            )?,
            common.json,
        ),
        EvalCommand::Crops { copies, common } => (
            eval::run_copy_detection(
                &copies.spec("crops", &Transform::DETAILS),
                &options(&common)?,
            )?,
            common.json,
        ),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(report: &Report) {
    println!(
        "{} evaluation, {} ({} search, ranking depth {}), {} items indexed",
        report.protocol, report.model, report.search, report.depth, report.indexed
    );
    println!("descriptor: {}", report.descriptor);
    if report.verified_top > 0 {
        println!(
            "spatial verification of the top {} (verified from {} inliers)",
            report.verified_top, report.min_inliers
        );
    }
    let width = report
        .groups
        .iter()
        .map(|g| g.name.len())
        .max()
        .unwrap_or(0)
        .max("overall".len());
    println!(
        "{:<width$}  {:>7}  {:>6}  {:>8}  {:>9}  {:>6}",
        "", "queries", "mAP", "recall@1", "recall@10", "P@10"
    );
    let rows = report
        .groups
        .iter()
        .map(|g| (g.name.as_str(), &g.summary))
        .chain([("overall", &report.overall)]);
    for (name, s) in rows {
        println!(
            "{name:<width$}  {:>7}  {:>6.4}  {:>8.4}  {:>9.4}  {:>6.4}",
            s.queries, s.map, s.recall_at_1, s.recall_at_10, s.precision_at_10
        );
    }
    println!(
        "search: {:.3} ms median per top-10 query; index: {:.0} bytes per item ({:.0} in the \
         search index); indexing {:.1} s, query embedding {:.1} s",
        report.search_ms_median,
        report.bytes_per_item,
        report.search_bytes_per_item,
        report.index_seconds,
        report.embed_seconds
    );
    for f in &report.failed {
        println!("failed: {}: {}", f.path, f.reason);
    }
    for m in &report.misses {
        let rank = m.rank.map_or(format!("not in top {}", report.depth), |r| {
            format!("rank {r}")
        });
        println!(
            "miss: {} ({}): original {} at {rank}; first: {}",
            m.query,
            m.transform,
            m.original,
            m.top.as_deref().unwrap_or("-")
        );
    }
}
