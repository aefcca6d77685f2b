//! Inference with ONNX Runtime through the `ort` crate, the library loaded at run time from the
//! model store (never downloaded by a build script). ONNX Runtime was chosen over pure-Rust
//! engines by measurement: Lite0 runs at ~170 img/s on 2 threads, tract at ~30 img/s per core.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::TensorRef;
use tracing::{info, warn};

use super::efficientnet::{CLASSES, FEATURES, FEATURE_MAP, INPUT, LOGITS};
use super::{Compute, Device, ModelError, ModelFiles, ModelKind, Precision};
use crate::descriptor::pooling::{l2_normalise, pool};
use crate::descriptor::Pooling;

/// ONNX Runtime can be loaded once per process; later loads reuse it.
static ENVIRONMENT: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn environment(library: &Path) -> Result<Environment, ModelError> {
    let mut env = ENVIRONMENT
        .lock()
        .map_err(|_| ModelError::Runtime("a thread panicked while loading ONNX Runtime".into()))?;
    if let Some((loaded, env)) = env.as_ref() {
        if loaded != library {
            warn!(
                "ONNX Runtime already loaded from {}; not loading {}",
                loaded.display(),
                library.display()
            );
        }
        return Ok(env.clone());
    }
    let built = ort::init_from(library)
        .map_err(|e| ModelError::Runtime(format!("loading {}: {e}", library.display())))?
        .with_name("lookalike")
        .build()?;
    *env = Some((library.to_path_buf(), built.clone()));
    Ok(built)
}

/// A loaded model at one input size. `embed` takes `&self`: one `Embedder` can serve many
/// threads (runs are serialised; ONNX Runtime parallelises inside a run with its intra-op
/// threads, a GPU inside its kernels).
pub struct Embedder {
    kind: ModelKind,
    input_size: usize,
    pooling: Pooling,
    /// Also pool region descriptors from the feature map (see [`crate::descriptor::regions`]).
    regions: bool,
    backend: Backend,
}

/// What runs the network.
enum Backend {
    Onnx(Mutex<OnnxRun>),
    #[cfg(feature = "cuda")]
    Cuda(Box<super::cuda::GpuNetwork>),
}

/// The result of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub n: usize,
    /// `n` rows of `feature_dim` values, each L2-normalised (cosine similarity = dot product).
    pub features: Vec<f32>,
    /// `n` rows of 1000 ImageNet logits.
    pub logits: Vec<f32>,
    /// `n` blocks of [`regions::count`] L2-normalised region vectors of `feature_dim` values
    /// each; empty unless the embedder pools regions.
    pub regions: Vec<f32>,
}

impl Embeddings {
    pub fn feature(&self, i: usize) -> &[f32] {
        let d = self.features.len() / self.n.max(1);
        &self.features[i * d..(i + 1) * d]
    }

    pub fn logits_of(&self, i: usize) -> &[f32] {
        &self.logits[i * CLASSES..(i + 1) * CLASSES]
    }

    /// Image `i`'s region vectors, one after the other (empty without regions).
    pub fn regions_of(&self, i: usize) -> &[f32] {
        let per_image = self.regions.len() / self.n.max(1);
        &self.regions[i * per_image..(i + 1) * per_image]
    }
}

/// A pass's raw outputs, whichever backend ran it.
struct Raw<'a> {
    logits: &'a [f32],
    /// Features pooled as the embedder's pooling says, when the backend pooled them.
    features: Option<&'a [f32]>,
    /// Region vectors (`n` x windows x dim, not normalised), when the backend pooled them.
    regions: Option<&'a [f32]>,
    /// `n` NCHW feature maps, for what the backend did not pool.
    feature_map: Option<&'a [f32]>,
}

impl Embedder {
    /// Loads the model at its own input size on `compute`'s device (on CPU: ONNX Runtime,
    /// loaded once per process, with `compute.threads` intra-op threads and all graph
    /// optimisations); vectors are average-pooled (the classic descriptor).
    pub fn load(files: &ModelFiles, compute: &Compute) -> Result<Self, ModelError> {
        let size = files.kind.input_size();
        Self::load_graph(files, &files.onnx, size, Pooling::Average, false, compute)
    }

    /// Like [`load`](Self::load) for the graph at `onnx`, written for inputs of side
    /// `input_size` (see [`super::ModelStore::ensure_graph_at`]), pooling with `pooling`, and
    /// pooling region descriptors too when `regions`, on the device `compute` names (a GPU
    /// builds its own network from the weights instead of reading the graph).
    pub fn load_graph(
        files: &ModelFiles,
        onnx: &Path,
        input_size: usize,
        pooling: Pooling,
        regions: bool,
        compute: &Compute,
    ) -> Result<Self, ModelError> {
        let backend = match compute.device {
            Device::Cpu if compute.precision != Precision::Fp32 => {
                return Err(ModelError::Unsupported(format!(
                    "{} runs on a GPU only (--device cuda); the CPU runs fp32",
                    compute.precision
                )))
            }
            Device::Cpu => Backend::Onnx(onnx_session(
                files,
                onnx,
                pooling,
                regions,
                compute.threads,
            )?),
            Device::Cuda(ordinal) => {
                gpu_backend(files, input_size, compute, ordinal, pooling, regions)?
            }
        };
        info!(
            "loaded {} at {input_size}x{input_size}, {pooling} pooling, on {}",
            files.kind,
            match compute.device {
                Device::Cpu => format!("CPU ({} intra-op threads)", compute.threads),
                device => format!("{device} ({})", compute.precision),
            }
        );
        Ok(Embedder {
            kind: files.kind,
            input_size,
            pooling,
            regions,
            backend,
        })
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Side of the square input this graph takes.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The GPU's name, as its driver gives it (None on CPU).
    pub fn gpu_name(&self) -> Option<&str> {
        match &self.backend {
            Backend::Onnx(_) => None,
            #[cfg(feature = "cuda")]
            Backend::Cuda(gpu) => Some(gpu.device_name()),
        }
    }

    /// How many images a batch should hold to keep the device busy: a GPU wants hundreds.
    pub fn preferred_batch(&self) -> usize {
        match &self.backend {
            Backend::Onnx(_) => CPU_BATCH,
            #[cfg(feature = "cuda")]
            Backend::Cuda(gpu) => gpu.max_batch(),
        }
    }

    /// Embeds `n` images: `batch` holds their S x S crops, packed 8-bit RGB, end to end (see
    /// [`super::input`]).
    pub fn embed(&self, batch: &[u8], n: usize) -> Result<Embeddings, ModelError> {
        let s = self.input_size();
        if n == 0 || batch.len() != n * 3 * s * s {
            return Err(ModelError::BadInput(format!(
                "{} bytes for {n} images of {s}x{s}x3",
                batch.len()
            )));
        }
        match &self.backend {
            Backend::Onnx(onnx) => {
                let mut guard = onnx.lock().map_err(|_| {
                    ModelError::Runtime("a thread panicked during inference".into())
                })?;
                let OnnxRun {
                    session,
                    options,
                    planar,
                } = &mut *guard;
                super::input::planar_f32(batch, s, planar);
                let input = TensorRef::from_array_view(([n, 3, s, s], &planar[..]))?;
                let outputs = session.run_with_options(ort::inputs![INPUT => input], options)?;
                let logits = outputs[LOGITS].try_extract_tensor::<f32>()?.1;
                let features = match self.pooling {
                    Pooling::Average => Some(outputs[FEATURES].try_extract_tensor::<f32>()?.1),
                    _ => None,
                };
                // ONNX Runtime leaves all but the average pooling to the CPU.
                let feature_map = match self.pooling != Pooling::Average || self.regions {
                    true => Some(outputs[FEATURE_MAP].try_extract_tensor::<f32>()?.1),
                    false => None,
                };
                let raw = Raw {
                    logits,
                    features,
                    regions: None,
                    feature_map,
                };
                self.finish(n, raw)
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda(gpu) => {
                let out = gpu.run(batch, n)?;
                let raw = Raw {
                    logits: &out.logits,
                    features: out.feature_map.is_none().then_some(&out.features[..]),
                    regions: out.regions.as_deref(),
                    feature_map: out.feature_map.as_deref(),
                };
                self.finish(n, raw)
            }
        }
    }

    /// Pools what the backend did not pool (from the feature map), and normalises the vectors.
    fn finish(&self, n: usize, raw: Raw<'_>) -> Result<Embeddings, ModelError> {
        let dim = self.kind.feature_dim();
        let map = || {
            raw.feature_map
                .filter(|map| !map.is_empty() && map.len() % (n * dim) == 0)
                .ok_or_else(|| ModelError::Runtime("unexpected feature map shape".into()))
        };
        let mut features = match raw.features {
            Some(features) => features.to_vec(),
            None => {
                let pooling = self.pooling;
                let map = map()?;
                let mut pooled = vec![0.0; n * dim];
                for (image, out) in map.chunks_exact(map.len() / n).zip(pooled.chunks_mut(dim)) {
                    pool(pooling, image, out);
                }
                pooled
            }
        };
        if raw.logits.len() != n * CLASSES || features.len() != n * dim {
            return Err(ModelError::Runtime("unexpected output shapes".into()));
        }
        for row in features.chunks_mut(dim) {
            l2_normalise(row);
        }
        let mut regions = Vec::new();
        match raw.regions {
            Some(pooled) if self.regions => {
                regions = pooled.to_vec();
                for region in regions.chunks_mut(dim) {
                    l2_normalise(region);
                }
            }
            _ if self.regions => {
                let map = map()?;
                for image in map.chunks_exact(map.len() / n) {
                    crate::descriptor::regions::pool(image, dim, &mut regions);
                }
            }
            _ => {}
        }
        Ok(Embeddings {
            n,
            features,
            logits: raw.logits.to_vec(),
            regions,
        })
    }
}

/// Images per batch on CPU: ONNX Runtime's throughput on 2 cores stops improving past ~16 for
/// EfficientNet-Lite, and a batch is 2.4 MB of 8-bit input (9.6 MB as floats).
const CPU_BATCH: usize = 16;

/// An ONNX Runtime session and what its runs reuse, behind one lock (`RunOptions` is not
/// `Sync`).
struct OnnxRun {
    session: Session,
    /// Copies out `logits` and, for average pooling, the graph's own `features` (so vectors
    /// stay those of the classic pipeline); any other pooling copies out `feature_map` and
    /// pools it here.
    options: RunOptions<HasSelectedOutputs>,
    /// The batch as the planar f32 the graph takes, kept between runs: allocating it afresh
    /// (38 MB at 64 images) cost 6% of the network's rate.
    planar: Vec<f32>,
}

/// An ONNX Runtime session on the CPU that copies out what `pooling` and `regions` need.
fn onnx_session(
    files: &ModelFiles,
    onnx: &Path,
    pooling: Pooling,
    regions: bool,
    threads: usize,
) -> Result<Mutex<OnnxRun>, ModelError> {
    let env = environment(&files.runtime_library)?;
    let session = Session::builder(&env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?
        .with_intra_threads(threads)
        .map_err(ort::Error::from)?
        // Spinning intra-op threads wait busily after each run: they took the cores from
        // the decoder threads while indexing (3,000 photos: 75.0 images/s spinning, 81.5
        // without) and from the next session's run when a query runs at several sizes
        // (100 region-enabled queries: 5.9 s spinning, 2.9 s without).
        .with_intra_op_spinning(false)
        .map_err(ort::Error::from)?
        .commit_from_file(onnx)
        .map_err(|e| ModelError::Runtime(format!("loading {}: {e}", onnx.display())))?;
    let mut selector = OutputSelector::no_default().with(LOGITS);
    if pooling == Pooling::Average {
        selector = selector.with(FEATURES);
    }
    if pooling != Pooling::Average || regions {
        selector = selector.with(FEATURE_MAP);
    }
    Ok(Mutex::new(OnnxRun {
        session,
        options: RunOptions::new()?.with_outputs(selector),
        planar: Vec::new(),
    }))
}

/// The network built from the weights and uploaded to CUDA device `ordinal`, pooling on the
/// GPU what it can of `pooling` and `regions`.
#[cfg(feature = "cuda")]
fn gpu_backend(
    files: &ModelFiles,
    input_size: usize,
    compute: &Compute,
    ordinal: usize,
    pooling: Pooling,
    regions: bool,
) -> Result<Backend, ModelError> {
    use super::cuda::{Global, Pooled, RegionWindows};
    let bytes = std::fs::read(&files.weights).map_err(|e| ModelError::io(&files.weights, e))?;
    let weights = super::pth::read_state_dict(&bytes).map_err(|source| ModelError::Weights {
        path: files.weights.clone(),
        source,
    })?;
    let network = super::network::Network::from_state_dict(files.kind, input_size, &weights)?;
    let side = network.feature_side();
    let pooled = Pooled {
        global: match pooling {
            Pooling::Average => Global::Average,
            Pooling::Gem { p } => Global::Gem(p),
            Pooling::Max | Pooling::Rmac | Pooling::Rgem { .. } => Global::Map,
        },
        regions: regions.then(|| RegionWindows::of_regions(side)),
    };
    let plan = super::cuda::Plan::new(network, compute.precision)?;
    let gpu = super::cuda::GpuNetwork::load(plan, ordinal, pooled, compute.batch)?;
    Ok(Backend::Cuda(Box::new(gpu)))
}

#[cfg(not(feature = "cuda"))]
fn gpu_backend(
    _: &ModelFiles,
    _: usize,
    _: &Compute,
    _: usize,
    _: Pooling,
    _: bool,
) -> Result<Backend, ModelError> {
    Err(ModelError::Unsupported(
        "this lookalike was built without the `cuda` feature: --device cuda is not available"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testutil;

    /// Two synthetic images of diagonal stripes (no decoder needed), packed RGB: the Python
    /// run fed the same values as NCHW floats (v - 127) / 128.
    fn stripes(s: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(2 * 3 * s * s);
        for k in 0..2 {
            for y in 0..s {
                for x in 0..s {
                    for c in 0..3 {
                        v.push(((x * 7 + y * 13 + c * 29 + k * 101) % 256) as u8);
                    }
                }
            }
        }
        v
    }

    /// Expected values from Python onnxruntime 1.32 on the same graph and input.
    fn check(kind: ModelKind, logits0: [f32; 4], top1: f32, feature0: [f32; 3]) {
        let embedder = Embedder::load(&testutil::model_files(kind), &Compute::cpu(2)).unwrap();
        assert_eq!(embedder.input_size(), kind.input_size());
        let e = embedder.embed(&stripes(kind.input_size()), 2).unwrap();
        assert_eq!((e.n, e.features.len(), e.logits.len()), (2, 2 * 1280, 2000));
        for (a, b) in e.logits_of(0)[..4].iter().zip(logits0) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        assert!((e.logits_of(1)[905] - top1).abs() < 1e-4);
        for i in 0..2 {
            assert_eq!(
                crate::model::top_k(e.logits_of(i), 1)[0].index,
                905,
                "window shade"
            );
            let norm: f32 = e.feature(i).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-5);
        }
        for (a, b) in e.feature(0)[..3].iter().zip(feature0) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let err = embedder.embed(&[0; 10], 1).unwrap_err();
        assert!(matches!(err, ModelError::BadInput(_)));
    }

    #[test]
    fn lite0_matches_python_onnxruntime() {
        check(
            ModelKind::Lite0,
            [-1.061_899_9, 0.059_210_3, 1.660_324_6, -1.299_806_6],
            10.842_258,
            [0.007_317_224_5, 0.0, 0.0],
        );
    }

    #[test]
    fn lite2_matches_python_onnxruntime() {
        check(
            ModelKind::Lite2,
            [-1.278_954, -0.013_071_835, -0.291_371_82, -0.882_619_4],
            7.860_521,
            [0.0, 0.041_648_142, 0.005_917_48],
        );
    }
}
