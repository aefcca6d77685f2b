//! `lookalike export`: every stored vector with its path, for people who work in numpy.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use npyz::WriterBuilder;
use serde_json::json;

use super::Global;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// OUT/vectors.npy (float32, items x dim) and OUT/items.jsonl (row, id, path, t)
    Npy,
    /// One JSON object per item, vector included, to OUT (a file) or stdout
    Jsonl,
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value = "npy")]
    format: Format,
    /// Output folder (npy) or file (jsonl; stdout when left out)
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

pub fn run(global: &Global, args: ExportArgs) -> Result<ExitCode> {
    let engine = global.engine(true)?;
    match args.format {
        Format::Npy => {
            let dir = args.out.context("--format npy needs --out DIR")?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let stats = engine.stats()?;
            let vectors = File::create(dir.join("vectors.npy"))?;
            let mut npy = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&[stats.items, stats.dim as u64])
                .writer(BufWriter::new(vectors))
                .begin_nd()?;
            let mut items = BufWriter::new(File::create(dir.join("items.jsonl"))?);
            let mut row = 0u64;
            let mut failure: Option<std::io::Error> = None;
            engine.for_each_vector(|record, vector| {
                if failure.is_some() {
                    return;
                }
                let line = json!({"row": row, "id": record.id, "path": record.path, "t": record.t});
                let written = npy
                    .extend(vector.iter().copied())
                    .and_then(|()| writeln!(items, "{line}"));
                failure = written.err();
                row += 1;
            })?;
            if let Some(e) = failure {
                return Err(e).context("writing the export");
            }
            npy.finish()?;
            items.flush()?;
            eprintln!("exported {row} vectors to {}", dir.display());
        }
        Format::Jsonl => {
            let mut out: Box<dyn Write> = match &args.out {
                Some(path) => Box::new(BufWriter::new(File::create(path)?)),
                None => Box::new(BufWriter::new(std::io::stdout().lock())),
            };
            let mut failure: Option<std::io::Error> = None;
            engine.for_each_vector(|record, vector| {
                if failure.is_none() {
                    let line = json!({"id": record.id, "path": record.path, "t": record.t, "vector": vector});
                    failure = writeln!(out, "{line}").err();
                }
            })?;
            if let Some(e) = failure {
                return Err(e).context("writing the export");
            }
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
