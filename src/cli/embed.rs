//! `lookalike embed`: ingestion without an index, into a vector shard (see
//! `lookalike::shard`): what each task of a Spark job runs, or any other scheduler's.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args};
use lookalike::featurizer::Featurizer;
use lookalike::image::Limits;
use lookalike::ingest::{self, IngestOptions, Input, Source, Unreadable};
use lookalike::model::ModelKind;
use lookalike::shard::{self, Identity, ShardSink, ShardWriter};
use lookalike::video::VideoOptions;
use serde_json::json;

use super::index::{exit_code, parse_interval, progress_bar, stop_on_ctrl_c, DescriptorArgs};
use super::Global;

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["paths", "manifest", "tar"])))]
pub struct EmbedArgs {
    /// Files and folders to embed (folders recursively), as `index` takes them
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// A list of the files to embed, one path per line ('-': standard input); blank lines
    /// and lines starting with '#' are skipped
    #[arg(long, value_name = "FILE", conflicts_with_all = ["paths", "tar"])]
    manifest: Option<PathBuf>,
    /// A tar archive ('-': standard input) whose files to embed, each stored under its member
    /// name (a PAX mtime record gives the exact modification time)
    #[arg(long, value_name = "FILE", conflicts_with = "paths")]
    tar: Option<PathBuf>,
    /// Only the I-th (from 0) of N near-equal slices of the sorted inputs, to split one list
    /// between N processes; the shard is then named part-I-of-N
    #[arg(long, value_name = "I/N", value_parser = parse_part, conflicts_with = "tar")]
    part: Option<(usize, usize)>,
    /// The shard to write: a .parquet file, or a folder where it is named after its inputs
    /// (shard-HASH.parquet: the same inputs always make the same name) or its --part
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
    /// Do nothing when the shard is already there (a re-run after a failure)
    #[arg(long)]
    skip_existing: bool,
    /// Model: lite0 (fast) or lite2 (more accurate); must match the index it will go into
    #[arg(long, default_value = "lite0")]
    model: ModelKind,
    #[command(flatten)]
    descriptor: DescriptorArgs,
    /// Decoder threads [default: all cores]
    #[arg(long, value_name = "N")]
    decode_threads: Option<usize>,
    /// Embed a video frame at least every SECS seconds (plus one at each scene change)
    #[arg(long, value_name = "SECS", default_value_t = VideoOptions::default().frame_interval,
          value_parser = parse_interval)]
    frame_interval: f64,
    /// Print the summary as one JSON line
    #[arg(long)]
    json: bool,
}

/// `I/N` with I < N.
fn parse_part(s: &str) -> Result<(usize, usize), String> {
    let parsed = s
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((i, n)) if i < n => Ok((i, n)),
        _ => Err(format!(
            "{s:?} is not I/N with 0 <= I < N (e.g. 3/16: the 4th of 16 parts)"
        )),
    }
}

pub fn run(global: &Global, args: EmbedArgs) -> Result<ExitCode> {
    let descriptor = args.descriptor.options().unwrap_or_default();
    let identity = Identity {
        model: args.model.name().to_owned(),
        descriptor: descriptor.clone(),
    };
    let (dir, name) = destination(&args)?;
    let (source, rejected) = inputs(&args)?;
    let name = name.or_else(|| match &source {
        // Files known up front: the name of their shard is known before any work.
        Source::Files(inputs) => Some(shard::inputs_name(
            &inputs
                .iter()
                .map(|i| i.key.as_str())
                .chain(rejected.iter().map(|r| r.key.as_str()))
                .collect::<Vec<_>>(),
        )),
        Source::Tar(_) => None,
    });
    if args.skip_existing {
        if let Some(name) = &name {
            let target = dir.join(name);
            if target.is_file() {
                print_summary(&args, &target, None, true);
                return Ok(ExitCode::SUCCESS);
            }
        }
    }

    let featurizer = Featurizer::load(
        &global.model_store()?,
        args.model,
        &descriptor,
        &global.compute(),
        Limits::default(),
    )?;
    let mut options = IngestOptions::default();
    if let Some(n) = args.decode_threads {
        options.decode_threads = n.max(1);
    }
    options.video.frame_interval = args.frame_interval;
    stop_on_ctrl_c(&options.cancel)?;
    let bar = progress_bar(global.quiet, "files");
    options.progress = Some(bar.callback());

    let mut sink = ShardSink::new(ShardWriter::create(&dir, &identity)?);
    let report = ingest::run(&featurizer, source, rejected, &options, &mut sink)?;
    bar.finish();
    if report.cancelled {
        // The temporary file goes with the writer: no shard is better than a partial one
        // under a whole one's name.
        eprintln!("lookalike: stopped early: no shard written");
        return Ok(exit_code(true));
    }
    let writer = sink.into_writer();
    let rows = writer.rows();
    let shard = writer.finish(name.as_deref())?;
    print_summary(&args, &shard, Some((&report, rows)), false);
    Ok(ExitCode::SUCCESS)
}

/// The folder of the shard, and its name when `--out` or `--part` decides it.
fn destination(args: &EmbedArgs) -> Result<(PathBuf, Option<String>)> {
    let is_file = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(shard::EXTENSION));
    if is_file {
        let name = args
            .out
            .file_name()
            .and_then(|n| n.to_str())
            .context("--out names a file without a UTF-8 name")?;
        let dir = match args.out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        return Ok((dir, Some(name.to_owned())));
    }
    let name = args.part.map(|(i, n)| shard::part_name(i, n));
    Ok((args.out.clone(), name))
}

/// The inputs the arguments name, with --part applied, and those that cannot be read.
fn inputs(args: &EmbedArgs) -> Result<(Source, Vec<Unreadable>)> {
    if let Some(tar) = &args.tar {
        let reader: Box<dyn Read + Send> = if tar == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            let file = File::open(tar).with_context(|| format!("opening {}", tar.display()))?;
            Box::new(BufReader::new(file))
        };
        return Ok((Source::Tar(reader), Vec::new()));
    }
    let (inputs, rejected) = match &args.manifest {
        Some(manifest) if manifest == Path::new("-") => {
            ingest::read_manifest(std::io::stdin().lock()).context("reading the manifest")?
        }
        Some(manifest) => {
            let file = File::open(manifest)
                .with_context(|| format!("opening the manifest {}", manifest.display()))?;
            ingest::read_manifest(BufReader::new(file))
                .with_context(|| format!("reading the manifest {}", manifest.display()))?
        }
        None => ingest::from_scan(ingest::plan(&args.paths, &HashMap::new())),
    };
    let Some((part, parts)) = args.part else {
        return Ok((Source::Files(inputs), rejected));
    };
    // Every input, readable or not, belongs to exactly one part.
    let all: Vec<Result<Input, Unreadable>> = inputs
        .into_iter()
        .map(Ok)
        .chain(rejected.into_iter().map(Err))
        .collect();
    fn key(item: &Result<Input, Unreadable>) -> &str {
        match item {
            Ok(input) => &input.key,
            Err(unreadable) => &unreadable.key,
        }
    }
    let (inputs, rejected): (Vec<_>, Vec<_>) = ingest::take_part(all, key, part, parts)
        .into_iter()
        .partition(Result::is_ok);
    Ok((
        Source::Files(inputs.into_iter().flatten().collect()),
        rejected.into_iter().filter_map(Result::err).collect(),
    ))
}

fn print_summary(
    args: &EmbedArgs,
    shard: &Path,
    done: Option<(&ingest::IngestReport, usize)>,
    skipped: bool,
) {
    let (files, images, videos, frames, failed, rows, seconds) = match done {
        Some((r, rows)) => (
            r.added + r.failed.len(),
            r.added - r.videos,
            r.videos,
            r.frames,
            r.failed.len(),
            rows,
            r.elapsed.as_secs_f64(),
        ),
        None => (0, 0, 0, 0, 0, 0, 0.0),
    };
    if args.json {
        println!(
            "{}",
            json!({
                "shard": shard, "files": files, "rows": rows, "images": images,
                "videos": videos, "frames": frames, "failed": failed, "skipped": skipped,
                "seconds": seconds,
            })
        );
    } else if skipped {
        println!("{} is there already: nothing to do", shard.display());
    } else {
        if let Some((report, _)) = done {
            for (path, reason) in &report.failed {
                eprintln!("failed {}: {reason}", path.display());
            }
        }
        println!(
            "wrote {} ({rows} rows): {images} images, {videos} videos ({frames} frames), \
             {failed} failed, in {seconds:.1} s",
            shard.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_i_of_n_from_zero() {
        assert_eq!(parse_part("3/16"), Ok((3, 16)));
        assert_eq!(parse_part("0/1"), Ok((0, 1)));
        assert!(parse_part("16/16").is_err());
        assert!(parse_part("3").is_err());
        assert!(parse_part("-1/4").is_err());
    }
}
