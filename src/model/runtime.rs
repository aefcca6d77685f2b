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
use super::{ModelError, ModelFiles, ModelKind};
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
/// threads).
pub struct Embedder {
    kind: ModelKind,
    input_size: usize,
    pooling: Pooling,
    /// Also pool region descriptors from the feature map (see [`crate::descriptor::regions`]).
    regions: bool,
    /// The session with its run options: `logits` and, for average pooling, the graph's own
    /// `features` are copied out (so vectors stay those of the classic pipeline); any other
    /// pooling copies out `feature_map` and pools it here. Both behind one lock: `RunOptions`
    /// is not `Sync`.
    session: Mutex<(Session, RunOptions<HasSelectedOutputs>)>,
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

impl Embedder {
    /// Loads the runtime library (once per process) and the model's own graph, with `threads`
    /// intra-op threads (0 lets ONNX Runtime choose) and all graph optimisations; vectors are
    /// average-pooled (the classic descriptor).
    pub fn load(files: &ModelFiles, threads: usize) -> Result<Self, ModelError> {
        let size = files.kind.input_size();
        Self::load_graph(files, &files.onnx, size, Pooling::Average, false, threads)
    }

    /// Like [`load`](Self::load) for the graph at `onnx`, written for inputs of side
    /// `input_size` (see [`super::ModelStore::ensure_graph_at`]), pooling with `pooling`, and
    /// pooling region descriptors too when `regions`.
    pub fn load_graph(
        files: &ModelFiles,
        onnx: &Path,
        input_size: usize,
        pooling: Pooling,
        regions: bool,
        threads: usize,
    ) -> Result<Self, ModelError> {
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
        let pooled = match pooling {
            Pooling::Average => FEATURES,
            Pooling::Gem { .. } | Pooling::Max | Pooling::Rmac | Pooling::Rgem { .. } => {
                FEATURE_MAP
            }
        };
        let mut selector = OutputSelector::no_default().with(LOGITS).with(pooled);
        if regions && pooled != FEATURE_MAP {
            selector = selector.with(FEATURE_MAP);
        }
        let run_options = RunOptions::new()?.with_outputs(selector);
        info!(
            "loaded {} at {input_size}x{input_size}, {pooling} pooling ({threads} intra-op threads)",
            files.kind
        );
        Ok(Embedder {
            kind: files.kind,
            input_size,
            pooling,
            regions,
            session: Mutex::new((session, run_options)),
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

    /// Embeds `n` images: `batch` holds n*3*S*S floats, NCHW RGB scaled (x - 127) / 128.
    pub fn embed(&self, batch: &[f32], n: usize) -> Result<Embeddings, ModelError> {
        let s = self.input_size();
        if n == 0 || batch.len() != n * 3 * s * s {
            return Err(ModelError::BadInput(format!(
                "{} floats for {n} images of 3x{s}x{s}",
                batch.len()
            )));
        }
        let input = TensorRef::from_array_view(([n, 3, s, s], batch))?;
        let mut guard = self
            .session
            .lock()
            .map_err(|_| ModelError::Runtime("a thread panicked during inference".into()))?;
        let (session, run_options) = &mut *guard;
        let outputs = session.run_with_options(ort::inputs![INPUT => input], run_options)?;
        let (_, logits) = outputs[LOGITS].try_extract_tensor::<f32>()?;
        let dim = self.kind.feature_dim();
        let mut features = match self.pooling {
            Pooling::Average => outputs[FEATURES].try_extract_tensor::<f32>()?.1.to_vec(),
            pooling => {
                let (_, map) = outputs[FEATURE_MAP].try_extract_tensor::<f32>()?;
                if map.is_empty() || map.len() % (n * dim) != 0 {
                    return Err(ModelError::Runtime("unexpected feature map shape".into()));
                }
                let mut pooled = vec![0.0; n * dim];
                for (image, out) in map.chunks_exact(map.len() / n).zip(pooled.chunks_mut(dim)) {
                    pool(pooling, image, out);
                }
                pooled
            }
        };
        if logits.len() != n * CLASSES || features.len() != n * dim {
            return Err(ModelError::Runtime("unexpected output shapes".into()));
        }
        for row in features.chunks_mut(dim) {
            l2_normalise(row);
        }
        let mut regions = Vec::new();
        if self.regions {
            let (_, map) = outputs[FEATURE_MAP].try_extract_tensor::<f32>()?;
            if map.is_empty() || map.len() % (n * dim) != 0 {
                return Err(ModelError::Runtime("unexpected feature map shape".into()));
            }
            for image in map.chunks_exact(map.len() / n) {
                crate::descriptor::regions::pool(image, dim, &mut regions);
            }
        }
        Ok(Embeddings {
            n,
            features,
            logits: logits.to_vec(),
            regions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testutil;

    /// Two synthetic images of diagonal stripes (no decoder needed), NCHW.
    fn stripes(s: usize) -> Vec<f32> {
        let mut v = Vec::with_capacity(2 * 3 * s * s);
        for k in 0..2 {
            for c in 0..3 {
                for y in 0..s {
                    for x in 0..s {
                        v.push(
                            ((x * 7 + y * 13 + c * 29 + k * 101) % 256) as f32 / 128.0
                                - 127.0 / 128.0,
                        );
                    }
                }
            }
        }
        v
    }

    /// Expected values from Python onnxruntime 1.32 on the same graph and input.
    fn check(kind: ModelKind, logits0: [f32; 4], top1: f32, feature0: [f32; 3]) {
        let embedder = Embedder::load(&testutil::model_files(kind), 2).unwrap();
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
        let err = embedder.embed(&[0.0; 10], 1).unwrap_err();
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
