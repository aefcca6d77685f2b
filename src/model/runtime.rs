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

use super::efficientnet::{CLASSES, FEATURES, INPUT, LOGITS};
use super::{ModelError, ModelFiles, ModelKind};

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

/// A loaded model. `embed` takes `&self`: one `Embedder` can serve many threads (runs are
/// serialised; ONNX Runtime parallelises inside a run with its intra-op threads).
pub struct Embedder {
    kind: ModelKind,
    /// The session with its run options (only `logits` and `features` are copied out;
    /// `feature_map` is left in the graph). Both behind one lock: `RunOptions` is not `Sync`.
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
}

impl Embeddings {
    pub fn feature(&self, i: usize) -> &[f32] {
        let d = self.features.len() / self.n.max(1);
        &self.features[i * d..(i + 1) * d]
    }

    pub fn logits_of(&self, i: usize) -> &[f32] {
        &self.logits[i * CLASSES..(i + 1) * CLASSES]
    }
}

impl Embedder {
    /// Loads the runtime library (once per process) and the graph, with `threads` intra-op
    /// threads (0 lets ONNX Runtime choose) and all graph optimisations.
    pub fn load(files: &ModelFiles, threads: usize) -> Result<Self, ModelError> {
        let env = environment(&files.runtime_library)?;
        let session = Session::builder(&env)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort::Error::from)?
            .with_intra_threads(threads)
            .map_err(ort::Error::from)?
            .commit_from_file(&files.onnx)
            .map_err(|e| ModelError::Runtime(format!("loading {}: {e}", files.onnx.display())))?;
        let selector = OutputSelector::no_default().with(LOGITS).with(FEATURES);
        let run_options = RunOptions::new()?.with_outputs(selector);
        info!("loaded {} ({} intra-op threads)", files.kind, threads);
        Ok(Embedder {
            kind: files.kind,
            session: Mutex::new((session, run_options)),
        })
    }

    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    pub fn input_size(&self) -> usize {
        self.kind.input_size()
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
        let (_, features) = outputs[FEATURES].try_extract_tensor::<f32>()?;
        let dim = self.kind.feature_dim();
        if logits.len() != n * CLASSES || features.len() != n * dim {
            return Err(ModelError::Runtime("unexpected output shapes".into()));
        }
        let mut features = features.to_vec();
        for row in features.chunks_mut(dim) {
            l2_normalise(row);
        }
        Ok(Embeddings {
            n,
            features,
            logits: logits.to_vec(),
        })
    }
}

/// Scales to unit length; an all-zero vector stays zero (no NaN).
fn l2_normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        v.iter_mut()
            .for_each(|x| *x = (f64::from(*x) / norm) as f32);
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
