//! Running an evaluation: a temporary index, the queries, the scores.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::dataset::{labelled_folder, make_copies, CopyOptions};
use super::metrics::{Judged, Summary};
use super::{EvalError, Failure, Group, Miss, Report};
use crate::descriptor::DescriptorOptions;
use crate::engine::{Engine, EngineOptions, SearchOptions};
use crate::featurizer::ImageQuery;
use crate::index::{Hit, ItemId, SearchMode};
use crate::ingest::{IngestOptions, IngestReport};
use crate::model::ModelKind;
use crate::verify::VerifyOptions;

/// Results a copy-detection query ranks, and the depth of every latency measurement.
const TOP: usize = 10;

/// How to run an evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Model cache (as for the engine).
    pub model_dir: PathBuf,
    /// `None`: the default model.
    pub model: Option<ModelKind>,
    /// ONNX Runtime threads; `None`: all cores.
    pub threads: Option<usize>,
    pub mode: SearchMode,
    /// The descriptor of the temporary index; `None`: the default one.
    pub descriptor: Option<DescriptorOptions>,
    /// Spatial verification of each query's top results (depth 0: none).
    pub verify: VerifyOptions,
}

impl EvalOptions {
    pub fn new(model_dir: PathBuf) -> Self {
        EvalOptions {
            model_dir,
            model: None,
            threads: None,
            mode: SearchMode::Approximate,
            descriptor: None,
            verify: VerifyOptions::top(0),
        }
    }
}

/// A copy-detection benchmark.
#[derive(Debug, Clone)]
pub struct CopyDetectSpec {
    /// The report's name for it: "copydetect" (whole-photo copies) or "crops" (details).
    pub protocol: &'static str,
    /// Originals: files, or folders searched recursively.
    pub photos: Vec<PathBuf>,
    /// Indexed too, never queried: they make finding the original harder.
    pub distractors: Vec<PathBuf>,
    /// Where copies are written and kept; `None`: a temporary folder, removed afterwards.
    pub work_dir: Option<PathBuf>,
    pub copies: CopyOptions,
}

/// A temporary index and the engine on it; the folder goes when this is dropped.
struct Session {
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Session {
    fn open(options: &EvalOptions) -> Result<Session, EvalError> {
        let dir = tempfile::Builder::new()
            .prefix("lookalike-eval-")
            .tempdir()
            .map_err(|e| EvalError::io(&std::env::temp_dir(), e))?;
        let mut engine_options =
            EngineOptions::new(dir.path().join("index"), options.model_dir.clone());
        engine_options.model = options.model;
        engine_options.descriptor = options.descriptor.clone();
        if let Some(threads) = options.threads {
            engine_options.compute.threads = threads.max(1);
        }
        Ok(Session {
            engine: Engine::open(&engine_options)?,
            _dir: dir,
        })
    }

    /// Indexes `paths`; returns the time taken and what failed.
    fn index(&self, paths: &[PathBuf]) -> Result<(Duration, Vec<Failure>), EvalError> {
        let IngestReport {
            failed, elapsed, ..
        } = self.engine.index_paths(paths, &IngestOptions::default())?;
        tracing::info!(
            items = self.engine.stats()?.items,
            seconds = elapsed.as_secs_f64(),
            "indexed"
        );
        Ok((elapsed, failed.into_iter().map(failure).collect()))
    }

    /// A top-10 search (after spatial verification of the top `verify.depth`, when asked),
    /// timed.
    fn timed_top(
        &self,
        image: &ImageQuery,
        query: &Path,
        mode: SearchMode,
        verify: VerifyOptions,
    ) -> Result<(Vec<Hit>, Duration), EvalError> {
        let start = Instant::now();
        let features = match verify.depth {
            0 => None,
            _ => Some(self.engine.local_features_of_file(query)?),
        };
        let options = SearchOptions {
            mode,
            frames: true,
            verify,
            ..SearchOptions::top(TOP)
        };
        let hits = self
            .engine
            .search_image(image, &options, features.as_ref())?;
        Ok((hits, start.elapsed()))
    }

    /// `hits` re-ranked by spatial verification against the image at `query`, and the time
    /// that took (the query's features included); as they are when `verify.depth` is 0.
    fn verified(
        &self,
        hits: Vec<Hit>,
        query: &Path,
        verify: VerifyOptions,
    ) -> Result<(Vec<Hit>, Duration), EvalError> {
        if verify.depth == 0 {
            return Ok((hits, Duration::ZERO));
        }
        let start = Instant::now();
        let features = self.engine.local_features_of_file(query)?;
        let hits = self.engine.verify(&features, hits, verify);
        Ok((hits, start.elapsed()))
    }

    /// The parts of the report every protocol fills the same way.
    fn report(
        &self,
        protocol: &'static str,
        options: &EvalOptions,
        depth: usize,
        mut latencies: Vec<Duration>,
    ) -> Result<Report, EvalError> {
        let stats = self.engine.stats()?;
        latencies.sort();
        let search_ms_median = latencies
            .get(latencies.len() / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let per_item = |bytes: u64| bytes as f64 / stats.items.max(1) as f64;
        Ok(Report {
            protocol,
            model: stats.model,
            descriptor: self.engine.descriptor().to_json(),
            search: match options.mode {
                SearchMode::Approximate => "approximate",
                SearchMode::Exact => "exact",
            },
            verified_top: options.verify.depth,
            min_inliers: options.verify.min_inliers,
            depth,
            indexed: stats.items,
            groups: Vec::new(),
            overall: Summary::of([]),
            search_ms_median,
            bytes_per_item: per_item(stats.catalog_bytes + stats.ann_bytes),
            search_bytes_per_item: per_item(stats.ann_bytes),
            index_seconds: 0.0,
            embed_seconds: 0.0,
            failed: Vec::new(),
            misses: Vec::new(),
        })
    }
}

/// Every image of a labelled folder queries all the others (see [`labelled_folder`]); the
/// relevant ones are those of its label, the query itself excluded. `distractors` (files or
/// folders) are indexed too but never queried nor relevant. Queries use the vectors just
/// indexed, so no image is embedded twice.
pub fn run_labelled(
    root: &Path,
    limit_per_label: Option<usize>,
    distractors: &[PathBuf],
    options: &EvalOptions,
) -> Result<Report, EvalError> {
    let images = labelled_folder(root, limit_per_label)?;
    let session = Session::open(options)?;
    let mut paths: Vec<PathBuf> = images.iter().map(|i| i.path.clone()).collect();
    paths.extend_from_slice(distractors);
    let (index_time, mut failed) = session.index(&paths)?;

    let mut queries: Vec<(ItemId, &str, &Path, Vec<f32>)> = Vec::with_capacity(images.len());
    let mut members: HashMap<&str, HashSet<ItemId>> = HashMap::new();
    for image in &images {
        // Failed files are already in `failed` with the indexer's reason.
        if let Some((record, vector)) = session.engine.indexed_vector(&image.path)? {
            members
                .entry(image.label.as_str())
                .or_default()
                .insert(record.id);
            queries.push((record.id, image.label.as_str(), &image.path, vector));
        }
    }
    let depth = session.engine.stats()?.items as usize;
    let mut judged: BTreeMap<&str, Vec<Judged>> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(queries.len());
    let unverified = SearchOptions {
        mode: options.mode,
        frames: true,
        ..SearchOptions::top(depth)
    };
    for (id, label, path, vector) in queries {
        // As the server's "similar" by item: the stored vector, matched against regions too.
        let image = ImageQuery::from(vector);
        let hits = session.engine.search_image(&image, &unverified, None)?;
        // The query's own hit is not verified: it would match itself perfectly and go first.
        let hits = hits.into_iter().filter(|hit| hit.id != id).collect();
        let (hits, verify_time) = session.verified(hits, path, options.verify)?;
        let ranking: Vec<ItemId> = hits.into_iter().map(|hit| hit.id).collect();
        judged
            .entry(label)
            .or_default()
            .push(Judged::new(&ranking, &members[label], Some(&id)));
        let search_time = session
            .timed_top(&image, path, options.mode, unverified.verify)?
            .1;
        latencies.push(search_time + verify_time);
    }
    let mut report = session.report("labelled", options, depth, latencies)?;
    report.index_seconds = index_time.as_secs_f64();
    report.overall = Summary::of(judged.values().flatten());
    report.groups = groups(judged);
    report.failed.append(&mut failed);
    Ok(report)
}

/// Copies of each photo query an index of the photos (plus distractors); a copy's original
/// must come back. See [`make_copies`] for how copies are made.
pub fn run_copy_detection(
    spec: &CopyDetectSpec,
    options: &EvalOptions,
) -> Result<Report, EvalError> {
    let temp_work;
    let work_dir = match &spec.work_dir {
        Some(dir) => dir.as_path(),
        None => {
            temp_work = tempfile::Builder::new()
                .prefix("lookalike-copies-")
                .tempdir()
                .map_err(|e| EvalError::io(&std::env::temp_dir(), e))?;
            temp_work.path()
        }
    };
    let set = make_copies(&spec.photos, work_dir, &spec.copies)?;
    let session = Session::open(options)?;
    let mut roots = set.originals.clone();
    roots.extend(spec.distractors.iter().cloned());
    let (index_time, mut failed) = session.index(&roots)?;
    failed.extend(set.skipped.iter().cloned().map(failure));

    // Hits carry canonical paths.
    let originals: Vec<String> = set
        .originals
        .iter()
        .map(|p| {
            p.canonicalize()
                .map(|c| c.to_string_lossy().into_owned())
                .map_err(|e| EvalError::io(p, e))
        })
        .collect::<Result<_, _>>()?;

    let embed_start = Instant::now();
    let copy_paths: Vec<PathBuf> = set.copies.iter().map(|c| c.path.clone()).collect();
    let vectors: Vec<_> = copy_paths
        .iter()
        .map(|path| session.engine.image_query_of_file(path))
        .collect();
    let embed_time = embed_start.elapsed();

    let mut judged: BTreeMap<_, Vec<Judged>> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(vectors.len());
    let mut misses = Vec::new();
    for (copy, vector) in set.copies.iter().zip(vectors) {
        let image = match vector {
            Ok(image) => image,
            Err(e) => {
                failed.push(failure((copy.path.clone(), e.to_string())));
                continue;
            }
        };
        let (hits, latency) =
            session.timed_top(&image, &copy.path, options.mode, options.verify)?;
        latencies.push(latency);
        let ranking: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
        let original = originals[copy.original].as_str();
        let one = Judged::new(&ranking, &HashSet::from([original]), None);
        if one.first_hit() != Some(1) {
            misses.push(Miss {
                query: copy.path.display().to_string(),
                transform: copy.transform.name().to_owned(),
                original: original.to_owned(),
                rank: one.first_hit(),
                top: ranking.first().map(|p| (*p).to_owned()),
            });
        }
        judged.entry(copy.transform).or_default().push(one);
    }
    let mut report = session.report(spec.protocol, options, TOP, latencies)?;
    report.index_seconds = index_time.as_secs_f64();
    report.embed_seconds = embed_time.as_secs_f64();
    report.overall = Summary::of(judged.values().flatten());
    report.groups = groups(judged);
    report.failed = failed;
    report.misses = misses;
    Ok(report)
}

fn groups<K: ToString>(judged: BTreeMap<K, Vec<Judged>>) -> Vec<Group> {
    judged
        .into_iter()
        .map(|(name, judged)| Group {
            name: name.to_string(),
            summary: Summary::of(&judged),
        })
        .collect()
}

fn failure((path, reason): (PathBuf, String)) -> Failure {
    Failure {
        path: path.display().to_string(),
        reason,
    }
}
