//! Throughput benchmarks, printed as medians over repeated rounds so they can be compared side
//! by side with the Python peer (scripts/bench/peer.py) in the same run (scripts/bench.sh).
//!
//!   cargo bench --bench throughput -- embed lite0 [ROUNDS]        network only, batch 16
//!   cargo bench --bench throughput -- decode DIR [ROUNDS]         decode + preprocess, 1 thread
//!   cargo bench --bench throughput -- verify DIR [ROUNDS]         per candidate, 1 thread: its
//!       local features from its file (what verification does now) vs matching features
//!       kept from indexing, and the bytes those would take
//!   cargo bench --bench throughput -- words DIR [ROUNDS]          per image, 1 thread: what
//!       indexing adds for search by words (the labels kept from the logits, the EXIF facts
//!       read from the file's bytes) against the decode + preprocess + network it already does
//!
//! The model comes from LOOKALIKE_MODEL_DIR (default .cache/models). Output: one JSON line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lookalike::featurizer::Featurizer;
use lookalike::image::{self, Limits, Preprocessor};
use lookalike::model::{Compute, Embedder, ModelKind, ModelStore};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds = |i: usize| args.get(i).and_then(|r| r.parse().ok()).unwrap_or(5);
    match args.first().map(String::as_str) {
        Some("embed") => embed(args.get(1).map_or("lite0", String::as_str), rounds(2)),
        Some("decode") => decode(Path::new(args.get(1).expect("decode DIR")), rounds(2)),
        Some("verify") => verify(Path::new(args.get(1).expect("verify DIR")), rounds(2)),
        Some("words") => words(Path::new(args.get(1).expect("words DIR")), rounds(2)),
        _ => eprintln!(
            "usage: throughput embed lite0|lite2 [ROUNDS] | decode DIR [ROUNDS] | verify DIR \
             [ROUNDS] | words DIR [ROUNDS]"
        ),
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
        Embedder::load(&files, &Compute::cpu(threads)).expect("load"),
        Limits::default(),
    );
    let len = featurizer.tensor_len();
    let batch_size = featurizer.batch_size();
    // A deterministic input in the network's range; content does not change the work done.
    let batch: Vec<u8> = (0..batch_size * len)
        .map(|i| ((i * 7919) % 255) as u8)
        .collect();
    featurizer.embed(&batch, batch_size).expect("warm-up");
    let per_round = 8;
    let rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                featurizer.embed(&batch, batch_size).expect("embed");
            }
            (per_round * batch_size) as f64 / start.elapsed().as_secs_f64()
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
    let paths = images_in(dir);
    let pre = Preprocessor::new(224);
    let limits = Limits::default();
    let mut out = vec![0; pre.tensor_len()];
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

/// The images directly in `dir`, sorted.
fn images_in(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| lookalike::ingest::is_supported_image(p))
        .collect();
    paths.sort();
    paths
}

/// Milliseconds per verified candidate on one thread: decoding it and computing its local
/// features (what a verified search does for each candidate today), against matching the
/// query's features with features kept from indexing; and the bytes kept features would take
/// (32-byte descriptor + two f32 coordinates per keypoint) and the time to compute them from
/// an image already decoded (what indexing would add). The query is the first image.
fn verify(dir: &Path, rounds: usize) {
    use lookalike::verify::{self, LocalFeatures};
    let paths = images_in(dir);
    let limits = Limits::default();
    let features_of = |p: &Path| {
        let decoded = image::decode_file(p, verify::DECODE_SIDE, &limits).expect("decode");
        LocalFeatures::of(&decoded.image).expect("features")
    };
    let kept: Vec<LocalFeatures> = paths.iter().map(|p| features_of(p)).collect();
    let query = &kept[0];
    let per_candidate = |f: &dyn Fn(usize)| {
        median(
            (0..rounds)
                .map(|_| {
                    let start = Instant::now();
                    (0..paths.len()).for_each(f);
                    start.elapsed().as_secs_f64() * 1e3 / paths.len() as f64
                })
                .collect(),
        )
    };
    let from_file = per_candidate(&|i| {
        std::hint::black_box(verify::verified(query, &features_of(&paths[i])));
    });
    let from_kept = per_candidate(&|i| {
        std::hint::black_box(verify::verified(query, &kept[i]));
    });
    // What keeping them would add to indexing: the features of an image already decoded.
    let decoded: Vec<_> = paths
        .iter()
        .map(|p| image::decode_file(p, verify::DECODE_SIDE, &limits).expect("decode"))
        .collect();
    let extract = per_candidate(&|i| {
        std::hint::black_box(LocalFeatures::of(&decoded[i].image).expect("features"));
    });
    let keypoints: usize = kept.iter().map(LocalFeatures::len).sum();
    let bytes = keypoints as f64 * (32.0 + 8.0) / paths.len() as f64;
    println!(
        "{{\"bench\": \"verify\", \"dir\": \"{}\", \"files\": {}, \"ms_decode_and_match\": {from_file:.2}, \"ms_match_kept\": {from_kept:.2}, \"ms_features_of_decoded\": {extract:.2}, \"kept_bytes_per_image\": {bytes:.0}, \"rounds\": {rounds}}}",
        dir.display(),
        paths.len()
    );
}

/// Microseconds per image on one thread: the labels kept from its logits and the EXIF facts
/// read from its bytes (what search by words adds to indexing), against decoding,
/// preprocessing and running the network on it (what indexing already did), over the images
/// of `dir`.
fn words(dir: &Path, rounds: usize) {
    use lookalike::image::PhotoFacts;
    use lookalike::model::kept_labels;
    let paths = images_in(dir);
    let files = ModelStore::new(model_dir())
        .ensure(ModelKind::default())
        .expect("model");
    let featurizer = Featurizer::new(
        Embedder::load(&files, &Compute::cpu(1)).expect("load"),
        Limits::default(),
    );
    let bytes: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    let mut logits = Vec::new();
    let mut tensor = vec![0; featurizer.tensor_len()];
    let indexing: Vec<f64> = (0..rounds)
        .map(|_| {
            logits.clear();
            let start = Instant::now();
            for b in &bytes {
                featurizer.prepare_bytes(b, &mut tensor).expect("decode");
                logits.push(featurizer.embed(&tensor, 1).expect("embed").logits);
            }
            start.elapsed().as_secs_f64() * 1e6 / bytes.len() as f64
        })
        .collect();
    let per_image = |f: &dyn Fn(usize) -> usize| {
        median(
            (0..rounds)
                .map(|_| {
                    let start = Instant::now();
                    let kept: usize = (0..bytes.len()).map(f).sum();
                    std::hint::black_box(kept);
                    start.elapsed().as_secs_f64() * 1e6 / bytes.len() as f64
                })
                .collect(),
        )
    };
    let labels_us = per_image(&|i| kept_labels(&logits[i]).len());
    let facts_us = per_image(&|i| usize::from(!PhotoFacts::of_bytes(&bytes[i]).is_empty()));
    let kept: usize = logits.iter().map(|l| kept_labels(l).len()).sum();
    let with_facts = bytes
        .iter()
        .filter(|b| !PhotoFacts::of_bytes(b).is_empty())
        .count();
    let indexing_us = median(indexing);
    println!(
        "{{\"bench\": \"words\", \"dir\": \"{}\", \"files\": {}, \"labels_us\": {labels_us:.1}, \"facts_us\": {facts_us:.1}, \"decode_and_network_us\": {indexing_us:.0}, \"added_share\": {:.5}, \"labels_per_image\": {:.2}, \"files_with_facts\": {with_facts}, \"rounds\": {rounds}}}",
        dir.display(),
        bytes.len(),
        (labels_us + facts_us) / indexing_us,
        kept as f64 / bytes.len() as f64,
    );
}
