//! The featurizer: image files or bytes in, L2-normalised feature vectors out. It joins the
//! decoder, the preprocessing the network expects and the network itself, so that indexing,
//! searching and classifying all see an image exactly the same way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;
use crate::image::{self, Decoded, ImageError, Limits, Preprocessor};
use crate::model::{Embedder, Embeddings, ModelKind};

/// How many images go through the network at once. ONNX Runtime's throughput on 2 cores
/// stops improving past ~16 for EfficientNet-Lite, and a batch is ~10 MB of input.
pub const BATCH_SIZE: usize = 16;

/// One image turned into features.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// L2-normalised feature vector.
    pub vector: Vec<f32>,
    /// ImageNet class scores (before softmax).
    pub logits: Vec<f32>,
    /// Size of the original image (after EXIF orientation).
    pub width: u32,
    pub height: u32,
}

/// A preprocessed image and its original size.
type PreparedTensor = (Vec<f32>, (u32, u32));

pub struct Featurizer {
    embedder: Embedder,
    preprocessor: Preprocessor,
    limits: Limits,
}

impl Featurizer {
    pub fn new(embedder: Embedder, limits: Limits) -> Self {
        let preprocessor = Preprocessor::new(embedder.kind().input_size() as u32);
        Featurizer {
            embedder,
            preprocessor,
            limits,
        }
    }

    pub fn kind(&self) -> ModelKind {
        self.embedder.kind()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Number of f32 values of one preprocessed image.
    pub fn tensor_len(&self) -> usize {
        self.preprocessor.tensor_len()
    }

    /// Decodes and preprocesses a file into `out` (`tensor_len()` values); returns the
    /// original size.
    pub fn prepare_file(&self, path: &Path, out: &mut [f32]) -> Result<(u32, u32), ImageError> {
        let decoded = image::decode_file(path, self.preprocessor.short_side(), &self.limits)?;
        self.prepare(&decoded, out)
    }

    /// Decodes and preprocesses encoded bytes (an upload) into `out`.
    pub fn prepare_bytes(&self, bytes: &[u8], out: &mut [f32]) -> Result<(u32, u32), ImageError> {
        let decoded = image::decode_bytes(bytes, self.preprocessor.short_side(), &self.limits)?;
        self.prepare(&decoded, out)
    }

    fn prepare(&self, decoded: &Decoded, out: &mut [f32]) -> Result<(u32, u32), ImageError> {
        self.preprocessor.preprocess(&decoded.image, out)?;
        Ok((decoded.width, decoded.height))
    }

    /// Runs the network on `n` preprocessed images laid end to end in `tensors`.
    pub fn embed(&self, tensors: &[f32], n: usize) -> Result<Embeddings> {
        Ok(self.embedder.embed(tensors, n)?)
    }

    /// Features of one encoded image (an upload).
    pub fn embed_bytes(&self, bytes: &[u8]) -> Result<Embedded> {
        let mut tensor = vec![0.0; self.tensor_len()];
        let (width, height) = self.prepare_bytes(bytes, &mut tensor)?;
        let out = self.embed(&tensor, 1)?;
        Ok(Embedded {
            vector: out.feature(0).to_vec(),
            logits: out.logits_of(0).to_vec(),
            width,
            height,
        })
    }

    /// Features of many files: decoded on `threads` threads, embedded in batches. One result
    /// per path, in order: an unreadable file fails alone, while a failure of the network
    /// itself (a broken installation) fails the whole call.
    pub fn embed_files(
        &self,
        paths: &[PathBuf],
        threads: usize,
    ) -> Result<Vec<Result<Embedded, ImageError>>> {
        let mut results = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(BATCH_SIZE) {
            let prepared = self.prepare_files_parallel(chunk, threads);
            let mut batch = Vec::new();
            for (tensor, _) in prepared.iter().flatten() {
                batch.extend_from_slice(tensor);
            }
            let n = batch.len() / self.tensor_len();
            let out = if n > 0 {
                Some(self.embed(&batch, n)?)
            } else {
                None
            };
            let mut row = 0;
            for item in prepared {
                results.push(item.map(|(_, (width, height))| {
                    let out = out
                        .as_ref()
                        .expect("a readable image makes the batch non-empty");
                    let embedded = Embedded {
                        vector: out.feature(row).to_vec(),
                        logits: out.logits_of(row).to_vec(),
                        width,
                        height,
                    };
                    row += 1;
                    embedded
                }));
            }
        }
        Ok(results)
    }

    /// Decodes and preprocesses `paths` on up to `threads` threads, keeping their order.
    fn prepare_files_parallel(
        &self,
        paths: &[PathBuf],
        threads: usize,
    ) -> Vec<Result<PreparedTensor, ImageError>> {
        let slots: Vec<Mutex<Option<_>>> = paths.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, paths.len().max(1)) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let mut tensor = vec![0.0; self.tensor_len()];
                    let result = self
                        .prepare_file(path, &mut tensor)
                        .map(|dims| (tensor, dims));
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(result);
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner().ok().flatten().unwrap_or_else(|| {
                    Err(ImageError::Io(std::io::Error::other(
                        "decoder thread failed",
                    )))
                })
            })
            .collect()
    }
}
