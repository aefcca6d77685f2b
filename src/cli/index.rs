//! `lookalike index` and `lookalike remove`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lookalike::ingest::{IngestOptions, Progress};
use lookalike::model::ModelKind;
use tracing::info;

use super::Global;

#[derive(Args)]
pub struct IndexArgs {
    /// Files and folders to index (folders recursively)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Model for a new index: lite0 (fast) or lite2 (more accurate) [default: lite0, or the
    /// index's own]
    #[arg(long)]
    model: Option<ModelKind>,
    /// Decoder threads [default: all cores]
    #[arg(long, value_name = "N")]
    decode_threads: Option<usize>,
    /// Files per catalog transaction (smaller: less redone after a crash; larger: faster)
    #[arg(long, value_name = "N", default_value_t = IngestOptions::default().commit_every)]
    commit_every: usize,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: IndexArgs) -> Result<ExitCode> {
    let engine = global.engine(args.model, false)?;
    let mut options = IngestOptions::default();
    if let Some(n) = args.decode_threads {
        options.decode_threads = n.max(1);
    }
    options.commit_every = args.commit_every.max(1);
    let cancel = options.cancel.clone();
    ctrlc::set_handler(move || {
        if cancel.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: leave now; committed work is safe
        }
        eprintln!("lookalike: stopping after the batch in flight (Ctrl-C again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    let bar = progress_bar(global.quiet);
    options.progress = Some(bar.callback());

    let report = engine.index_paths(&args.paths, &options)?;
    bar.finish();

    let rate = report.added as f64 / report.elapsed.as_secs_f64().max(1e-9);
    if args.json {
        let failed: Vec<_> = report
            .failed
            .iter()
            .map(|(path, reason)| serde_json::json!({"path": path, "reason": reason}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "added": report.added, "unchanged": report.unchanged, "removed": report.removed,
                "failed": failed, "cancelled": report.cancelled,
                "seconds": report.elapsed.as_secs_f64(), "images_per_second": rate,
            })
        );
    } else {
        for (path, reason) in &report.failed {
            eprintln!("skipped {}: {reason}", path.display());
        }
        println!(
            "indexed {} files ({:.1}/s), {} unchanged, {} removed, {} skipped{}",
            report.added,
            rate,
            report.unchanged,
            report.removed,
            report.failed.len(),
            if report.cancelled {
                " (stopped early: run again to resume)"
            } else {
                ""
            }
        );
    }
    Ok(if report.cancelled {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// A progress bar with count, rate and ETA on a terminal; plain log lines every few seconds
/// otherwise (CI logs, `nohup`).
enum Bar {
    Terminal(ProgressBar),
    Log(Arc<Mutex<Instant>>),
}

fn progress_bar(quiet: bool) -> Bar {
    if !quiet && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40.cyan/blue} {pos}/{len} images  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar::Terminal(bar)
    } else {
        Bar::Log(Arc::new(Mutex::new(Instant::now())))
    }
}

impl Bar {
    fn callback(&self) -> lookalike::ingest::ProgressFn {
        const LOG_EVERY: Duration = Duration::from_secs(5);
        match self {
            Bar::Terminal(bar) => {
                let bar = bar.clone();
                Arc::new(move |p: &Progress| {
                    bar.set_length(p.total as u64);
                    bar.set_position(p.done as u64);
                    if p.failed > 0 {
                        bar.set_message(format!("{} skipped", p.failed));
                    }
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
                            "indexing"
                        );
                    }
                })
            }
        }
    }

    fn finish(&self) {
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
    let engine = global.engine(None, false)?;
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
