//! Command-line definitions and dispatch.

mod classify;
mod duplicates;
mod embed;
mod eval;
mod export;
mod import;
mod index;
mod labels;
mod model;
mod search;
mod serve;
mod stats;
mod whiten;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use lookalike::engine::{Engine, EngineOptions};
use lookalike::model::{Compute, Device, ModelStore, Precision};

#[derive(Parser)]
#[command(
    name = "lookalike",
    version,
    about = "Self-hosted image search: index photos, find look-alikes."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes.
#[derive(Args)]
pub struct Global {
    /// Index directory [default: the per-user data dir, e.g. ~/.local/share/lookalike/index]
    #[arg(long, global = true, env = "LOOKALIKE_DB", value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Model cache directory: where `model fetch` puts files and where they are looked up
    /// [default: the per-user cache dir, e.g. ~/.cache/lookalike/models]
    #[arg(long, global = true, env = "LOOKALIKE_MODEL_DIR", value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime threads [default: all cores]
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Where the network runs: cpu, or cuda / cuda:N for an NVIDIA GPU (CUDA 13 libraries
    /// found at run time on LD_LIBRARY_PATH) [default: cpu]
    #[arg(long, global = true, env = "LOOKALIKE_DEVICE", value_name = "DEVICE")]
    pub device: Option<Device>,
    /// How a GPU stores activations: fp16 (half the memory traffic, tensor cores) or fp32
    /// [default: fp16 on cuda; the CPU runs fp32]
    #[arg(
        long,
        global = true,
        env = "LOOKALIKE_PRECISION",
        value_name = "PRECISION"
    )]
    pub precision: Option<Precision>,
    /// More log output (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Index images (files or folders, recursively); re-runs only touch what changed
    Index(index::IndexArgs),
    /// Embed images and videos into a vector shard (Parquet) without an index: one task of
    /// a distributed run (see spark/), folded in later with `import`
    Embed(embed::EmbedArgs),
    /// Fold vector shards written by `embed` into the index
    Import(import::ImportArgs),
    /// Find the indexed images most similar to each query image
    Search(search::SearchArgs),
    /// Top ImageNet classes of images
    Classify(classify::ClassifyArgs),
    /// Fetch the model or show what is installed
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Serve the search page and JSON API
    Serve(serve::ServeArgs),
    /// What the index holds
    Stats(stats::StatsArgs),
    /// The library's most common ImageNet labels (what `search --text` finds)
    Labels(labels::LabelsArgs),
    /// Groups of duplicate images (exact copies and the same photo resized, recompressed,
    /// cropped, mirrored or turned grey), each with a keeper; move, link or delete the rest
    Duplicates(duplicates::DuplicatesArgs),
    /// Remove files from the index (the files themselves are not touched)
    Remove(index::RemoveArgs),
    /// Write all vectors and paths out (.npy + JSON lines, or JSON lines alone)
    Export(export::ExportArgs),
    /// (Re)learn the index's PCA-whitening from the indexed vectors
    Whiten(whiten::WhitenArgs),
    /// Measure retrieval quality (mAP, recall@k) in a temporary index
    #[command(subcommand)]
    Eval(eval::EvalCommand),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let global = cli.global;
    match cli.command {
        Command::Index(args) => index::run(&global, args),
        Command::Embed(args) => embed::run(&global, args),
        Command::Import(args) => import::run(&global, args),
        Command::Search(args) => search::run(&global, args),
        Command::Classify(args) => classify::run(&global, args),
        Command::Model(command) => model::run(&global, command),
        Command::Serve(args) => serve::run(&global, args),
        Command::Stats(args) => stats::run(&global, args),
        Command::Labels(args) => labels::run(&global, args),
        Command::Duplicates(args) => duplicates::run(&global, args),
        Command::Remove(args) => index::remove(&global, args),
        Command::Export(args) => export::run(&global, args),
        Command::Whiten(args) => whiten::run(&global, args),
        Command::Eval(command) => eval::run(&global, command),
    }
}

pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LOOKALIKE_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("warn,lookalike={default}"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

impl Global {
    pub fn db_dir(&self) -> Result<PathBuf> {
        match &self.db {
            Some(db) => Ok(db.clone()),
            None => directories::ProjectDirs::from("", "", "lookalike")
                .map(|dirs| dirs.data_dir().join("index"))
                .context("no home directory to keep the index in: pass --db DIR"),
        }
    }

    /// The device, precision and threads the global flags ask for.
    pub fn compute(&self) -> Compute {
        let threads = self
            .threads
            .unwrap_or_else(lookalike::available_cores)
            .max(1);
        let mut compute = Compute::new(self.device.unwrap_or_default(), threads);
        if let Some(precision) = self.precision {
            compute.precision = precision;
        }
        compute
    }

    pub fn model_store(&self) -> Result<ModelStore> {
        match &self.model_dir {
            Some(dir) => Ok(ModelStore::new(dir.clone())),
            None => Ok(ModelStore::new(
                ModelStore::default_dir().context("no cache directory: pass --model-dir DIR")?,
            )),
        }
    }

    /// Opens the engine on the index (`read_only` for commands that never write it).
    pub fn engine(&self, read_only: bool) -> Result<Engine> {
        self.open_engine(self.engine_options(read_only)?)
    }

    /// Where the index and models are and how many threads to use, as the global flags say.
    pub fn engine_options(&self, read_only: bool) -> Result<EngineOptions> {
        let db = self.db_dir()?;
        let mut options = EngineOptions::new(db, self.model_store()?.dir().to_path_buf());
        options.read_only = read_only;
        options.compute = self.compute();
        Ok(options)
    }

    pub fn open_engine(&self, options: EngineOptions) -> Result<Engine> {
        Engine::open(&options)
            .with_context(|| format!("opening the index at {}", options.db_dir.display()))
    }
}
