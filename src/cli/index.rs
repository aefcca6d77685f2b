//! `lookalike index` and `lookalike remove`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lookalike::descriptor::{self, whitening, DescriptorOptions, Pooling, QueryExpansion};
use lookalike::ingest::{IngestOptions, Progress};
use lookalike::model::ModelKind;
use lookalike::video::VideoOptions;
use tracing::info;

use super::Global;

#[derive(Args)]
pub struct IndexArgs {
    /// Files and folders to index (folders recursively): images, and videos (mp4, mkv, webm,
    /// avi, mov, mpeg, m4v; decoded with the ffmpeg program)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Model for a new index: lite0 (fast) or lite2 (more accurate) [default: lite0, or the
    /// index's own]
    #[arg(long)]
    model: Option<ModelKind>,
    #[command(flatten)]
    descriptor: DescriptorArgs,
    /// Decoder threads [default: all cores]
    #[arg(long, value_name = "N")]
    decode_threads: Option<usize>,
    /// Files per catalog transaction (smaller: less redone after a crash; larger: faster)
    #[arg(long, value_name = "N", default_value_t = IngestOptions::default().commit_every)]
    commit_every: usize,
    /// Index a video frame at least every SECS seconds (plus one at each scene change): the
    /// precision of the moment a search answers with
    #[arg(long, value_name = "SECS", default_value_t = VideoOptions::default().frame_interval,
          value_parser = parse_interval)]
    frame_interval: f64,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

/// How a new index describes images (see `lookalike::descriptor`). Given for an existing
/// index, they must match what it was created with.
#[derive(Args)]
pub(super) struct DescriptorArgs {
    /// Pooling of the network's last activations: average, max, gem[:P] or the regional
    /// rmac, rgem[:P], P in [1, 100] [default: the default descriptor's, or for an existing
    /// index its own]
    #[arg(long, value_name = "POOLING")]
    pooling: Option<Pooling>,
    /// Image scales whose descriptors are summed, e.g. 1,0.7071
    // Fully qualified so that clap takes the parsed list as one value, not many f32s.
    #[arg(long, value_name = "S,S...", value_parser = descriptor::parse_scales)]
    scales: Option<::std::vec::Vec<f32>>,
    /// PCA-whitening to DIMS dimensions once enough images are indexed (POWER 0.5: full
    /// whitening, 0: PCA rotation only), or off
    #[arg(long, value_name = "DIMS[:POWER]|off", value_parser = whitening::parse_whitening)]
    whiten: Option<Whiten>,
    /// Query expansion searches use by default: off, N or N:ALPHA (alpha-QE over the N best hits)
    #[arg(long, value_name = "N[:ALPHA]|off")]
    query_expansion: Option<QueryExpansion>,
    /// Region descriptors, so that a detail cut out of a photo finds the photo: on (256
    /// dimensions), the dimensions to keep, or off [default: on]
    #[arg(long, value_name = "on|DIMS|off", value_parser = descriptor::parse_regions)]
    regions: Option<Regions>,
}

impl DescriptorArgs {
    /// The default descriptor with the given options replaced; None when none is given.
    pub(super) fn options(&self) -> Option<DescriptorOptions> {
        if self.pooling.is_none()
            && self.scales.is_none()
            && self.whiten.is_none()
            && self.query_expansion.is_none()
            && self.regions.is_none()
        {
            return None;
        }
        let mut options = DescriptorOptions::default();
        if let Some(pooling) = self.pooling {
            options.pooling = pooling;
        }
        if let Some(scales) = &self.scales {
            options.scales = scales.clone();
        }
        if let Some(whitening) = self.whiten {
            options.whitening = whitening;
        }
        if let Some(qe) = self.query_expansion {
            options.query_expansion = qe;
        }
        if let Some(regions) = self.regions {
            options.regions = regions;
        }
        Some(options)
    }
}

/// `--whiten`'s value: the dimensions, or None for off. An alias, so that clap's derive does not
/// read `Option<Option<usize>>` as "a flag with an optional value" (which panics at run time
/// with this value parser).
type Whiten = Option<whitening::WhiteningOptions>;

/// `--regions`' value, None for off (an alias for the same reason as [`Whiten`]).
type Regions = Option<descriptor::RegionOptions>;

/// A frame interval: a finite number of seconds, at least one frame's worth.
pub(super) fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.04 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds >= 0.04")),
    }
}

pub fn run(global: &Global, args: IndexArgs) -> Result<ExitCode> {
    let mut engine_options = global.engine_options(false)?;
    engine_options.model = args.model;
    engine_options.descriptor = args.descriptor.options();
    let engine = global.open_engine(engine_options)?;
    let mut options = IngestOptions::default();
    if let Some(n) = args.decode_threads {
        options.decode_threads = n.max(1);
    }
    options.commit_every = args.commit_every.max(1);
    options.video.frame_interval = args.frame_interval;
    stop_on_ctrl_c(&options.cancel)?;
    let bar = progress_bar(global.quiet, "files");
    options.progress = Some(bar.callback());

    let report = engine.index_paths(&args.paths, &options)?;
    bar.finish();

    let rate = report.added as f64 / report.elapsed.as_secs_f64().max(1e-9);
    if args.json {
        let (failed, partial) = (with_reasons(&report.failed), with_reasons(&report.partial));
        println!(
            "{}",
            serde_json::json!({
                "added": report.added, "unchanged": report.unchanged, "removed": report.removed,
                "failed": failed, "cancelled": report.cancelled,
                "seconds": report.elapsed.as_secs_f64(), "images_per_second": rate,
                "videos": report.videos, "frames": report.frames, "partial": partial,
            })
        );
    } else {
        for (path, reason) in &report.failed {
            eprintln!("skipped {}: {reason}", path.display());
        }
        for (path, reason) in &report.partial {
            eprintln!("indexed in part {}: {reason}", path.display());
        }
        if report.videos > 0 {
            println!(
                "{} videos: {} frames, {} indexed in part",
                report.videos,
                report.frames,
                report.partial.len()
            );
        }
        println!(
            "indexed {} files ({:.1}/s), {} unchanged, {} removed, {} skipped{}",
            report.added,
            rate,
            report.unchanged,
            report.removed,
            report.failed.len(),
            resume_note(report.cancelled)
        );
    }
    Ok(exit_code(report.cancelled))
}

/// Files with the reason they were not taken, as JSON objects.
pub(super) fn with_reasons(list: &[(PathBuf, String)]) -> Vec<serde_json::Value> {
    list.iter()
        .map(|(path, reason)| serde_json::json!({"path": path, "reason": reason}))
        .collect()
}

/// What the summary line of a stopped run adds.
pub(super) fn resume_note(cancelled: bool) -> &'static str {
    if cancelled {
        " (stopped early: run again to resume)"
    } else {
        ""
    }
}

/// 130 for a run stopped by Ctrl-C (what it committed stays), as shells report a SIGINT.
pub(super) fn exit_code(cancelled: bool) -> ExitCode {
    if cancelled {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

/// Makes a first Ctrl-C set `cancel` (the run stops after the batch in flight, keeping what
/// was committed) and a second one quit at once.
pub(super) fn stop_on_ctrl_c(cancel: &Arc<AtomicBool>) -> Result<()> {
    let cancel = cancel.clone();
    ctrlc::set_handler(move || {
        if cancel.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: leave now; committed work is safe
        }
        eprintln!("lookalike: stopping after the batch in flight (Ctrl-C again to quit now)");
    })
    .context("installing the Ctrl-C handler")
}

/// A progress bar with count, rate and ETA on a terminal; plain log lines every few seconds
/// otherwise (CI logs, `nohup`).
pub(super) enum Bar {
    Terminal(ProgressBar),
    Log(Arc<Mutex<Instant>>),
}

/// A bar counting `unit`s (files, rows).
pub(super) fn progress_bar(quiet: bool, unit: &str) -> Bar {
    if !quiet && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        let template = format!(
            "{{bar:40.cyan/blue}} {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}  {{msg}}"
        );
        bar.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar::Terminal(bar)
    } else {
        Bar::Log(Arc::new(Mutex::new(Instant::now())))
    }
}

impl Bar {
    pub(super) fn callback(&self) -> lookalike::ingest::ProgressFn {
        const LOG_EVERY: Duration = Duration::from_secs(5);
        match self {
            Bar::Terminal(bar) => {
                let bar = bar.clone();
                Arc::new(move |p: &Progress| {
                    bar.set_length(p.total as u64);
                    bar.set_position(p.done as u64);
                    let mut message = Vec::new();
                    if p.frames > 0 {
                        message.push(format!("{} video frames", p.frames));
                    }
                    if p.failed > 0 {
                        message.push(format!("{} skipped", p.failed));
                    }
                    bar.set_message(message.join(", "));
                })
            }
            Bar::Log(last) => {
                let last = last.clone();
                Arc::new(move |p: &Progress| {
                    let Ok(mut last) = last.lock() else { return };
                    if last.elapsed() >= LOG_EVERY {
                        *last = Instant::now();
                        info!(
                            done = p.done,
                            total = p.total,
                            skipped = p.failed,
                            frames = p.frames,
                            "progress"
                        );
                    }
                })
            }
        }
    }

    pub(super) fn finish(&self) {
        if let Bar::Terminal(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Indexed files to remove
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Indexed item ids to remove
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<i64>,
}

pub fn remove(global: &Global, args: RemoveArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        !args.paths.is_empty() || !args.ids.is_empty(),
        "nothing to remove: give paths or --id"
    );
    let engine = global.engine(false)?;
    let mut removed = 0;
    if !args.paths.is_empty() {
        removed += engine.remove_paths(&args.paths)?;
    }
    if !args.ids.is_empty() {
        removed += engine.remove_items(&args.ids)?;
    }
    println!("removed {removed} items");
    Ok(ExitCode::SUCCESS)
}
