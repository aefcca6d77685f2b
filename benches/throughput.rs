//! Throughput benchmarks, printed as medians over repeated rounds so they can be compared side
//! by side with the Python peer (scripts/bench/peer.py) in the same run (scripts/bench.sh).
//!
//!   cargo bench --bench throughput -- embed lite0 [ROUNDS]        network only, batch 16
//!   cargo bench --bench throughput -- decode DIR [ROUNDS]         decode + preprocess, 1 thread
//!
//! The model comes from LOOKALIKE_MODEL_DIR (default .cache/models). Output: one JSON line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lookalike::featurizer::{Featurizer, BATCH_SIZE};
use lookalike::image::{self, Limits, Preprocessor};
use lookalike::model::{Embedder, ModelKind, ModelStore};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds = |i: usize| args.get(i).and_then(|r| r.parse().ok()).unwrap_or(5);
    match args.first().map(String::as_str) {
        Some("embed") => embed(args.get(1).map_or("lite0", String::as_str), rounds(2)),
        Some("decode") => decode(Path::new(args.get(1).expect("decode DIR")), rounds(2)),
        _ => eprintln!("usage: throughput embed lite0|lite2 [ROUNDS] | decode DIR [ROUNDS]"),
    }
}

fn model_dir() -> PathBuf {
    std::env::var_os("LOOKALIKE_MODEL_DIR")
        .map_or_else(|| PathBuf::from(".cache/models"), PathBuf::from)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Images per second through the network alone, batches of 16, all cores.
fn embed(model: &str, rounds: usize) {
    let kind: ModelKind = model.parse().expect("lite0 or lite2");
    let files = ModelStore::new(model_dir()).ensure(kind).expect("model");
    let threads = lookalike::available_cores();
    let featurizer = Featurizer::new(
        Embedder::load(&files, threads).expect("load"),
        Limits::default(),
    );
    let len = featurizer.tensor_len();
    // A deterministic input in the network's range; content does not change the work done.
    let batch: Vec<f32> = (0..BATCH_SIZE * len)
        .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
        .collect();
    featurizer.embed(&batch, BATCH_SIZE).expect("warm-up");
    let per_round = 8;
    let rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                featurizer.embed(&batch, BATCH_SIZE).expect("embed");
            }
            (per_round * BATCH_SIZE) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "{{\"bench\": \"embed\", \"model\": \"{}\", \"threads\": {threads}, \"images_per_second\": {:.1}, \"rounds\": {rounds}}}",
        kind.name(),
        median(rates)
    );
}

/// Images per second decoded and preprocessed (224 px) on one thread.
fn decode(dir: &Path, rounds: usize) {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| lookalike::ingest::is_supported_image(p))
        .collect();
    paths.sort();
    let pre = Preprocessor::new(224);
    let limits = Limits::default();
    let mut out = vec![0.0; pre.tensor_len()];
    let rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for p in &paths {
                let decoded = image::decode_file(p, pre.short_side(), &limits).expect("decode");
                pre.preprocess(&decoded.image, &mut out)
                    .expect("preprocess");
            }
            paths.len() as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    println!(
        "{{\"bench\": \"decode\", \"dir\": \"{}\", \"files\": {}, \"images_per_second\": {:.1}, \"rounds\": {rounds}}}",
        dir.display(),
        paths.len(),
        median(rates)
    );
}
