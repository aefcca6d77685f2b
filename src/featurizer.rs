//! The featurizer: image files or bytes in, L2-normalised feature vectors out. It joins the
//! decoder, the preprocessing the network expects and the network itself, so that indexing,
//! searching and classifying all see an image exactly the same way.
//!
//! With several scales (see [`DescriptorOptions::scales`]) an image is decoded once, at the
//! size the largest scale needs, and preprocessed once per scale into consecutive parts of its
//! tensor; [`Featurizer::embed`] runs each scale's network on its parts and sums the
//! normalised per-scale vectors. Callers only see one longer tensor per image.

use std::path::{Path, PathBuf};

use ::image::RgbImage;

use crate::descriptor::pooling::l2_normalise;
use crate::descriptor::{regions, DescriptorOptions};
use crate::error::Result;
use crate::image::{self, Decoded, ImageError, Limits, Preprocessor};
use crate::index::Regions;
use crate::model::{
    kept_labels, Compute, Embedder, Embeddings, Label, ModelError, ModelKind, ModelStore,
};

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
    /// Region descriptors, when the descriptor keeps them.
    pub regions: Regions,
}

/// What an image query searches with: its vector, and for matching indexed regions, its
/// vectors at the smaller [`regions::QUERY_SCALES`] (empty: matched at its own scale only).
#[derive(Debug, Clone, Default)]
pub struct ImageQuery {
    pub vector: Vec<f32>,
    pub smaller: Vec<Vec<f32>>,
}

impl From<Vec<f32>> for ImageQuery {
    fn from(vector: Vec<f32>) -> Self {
        ImageQuery {
            vector,
            smaller: Vec::new(),
        }
    }
}

/// A preprocessed image and its original size.
type PreparedTensor = (Vec<u8>, (u32, u32));

/// One input scale: the network built for its input size and the preprocessing to it.
struct Scale {
    embedder: Embedder,
    preprocessor: Preprocessor,
}

impl Scale {
    fn new(embedder: Embedder) -> Self {
        let preprocessor = Preprocessor::new(embedder.input_size() as u32);
        Scale {
            embedder,
            preprocessor,
        }
    }
}

pub struct Featurizer {
    /// The model's own input size first: the logits (classification) come from it.
    scales: Vec<Scale>,
    /// With regions: the networks a query also runs at [`regions::QUERY_SCALES`].
    query_scales: Vec<Scale>,
    limits: Limits,
}

impl Featurizer {
    /// One scale, the embedder's own pooling: the classic descriptor for an
    /// [`Embedder::load`]ed model.
    pub fn new(embedder: Embedder, limits: Limits) -> Self {
        Featurizer {
            scales: vec![Scale::new(embedder)],
            query_scales: Vec::new(),
            limits,
        }
    }

    /// The featurizer that makes `descriptor`'s vectors with `kind`: fetches the model on
    /// first use, and writes the graph of each extra scale (input side round(S * scale)) on
    /// first use of that scale. Scale 1 is always run (it gives the logits); the options
    /// hold it anyway ([`crate::descriptor::parse_scales`] adds it).
    pub fn load(
        store: &ModelStore,
        kind: ModelKind,
        descriptor: &DescriptorOptions,
        compute: &Compute,
        limits: Limits,
    ) -> Result<Self> {
        let files = store.ensure(kind)?;
        let native = kind.input_size();
        let mut sizes = vec![native];
        for &scale in &descriptor.scales {
            let size = (native as f64 * f64::from(scale)).round() as usize;
            if !sizes.contains(&size) {
                sizes.push(size);
            }
        }
        let with_regions = descriptor.regions.is_some();
        let load = |size: usize, regions: bool, compute: &Compute| -> Result<Scale, ModelError> {
            let onnx = store.ensure_graph_at(&files, size)?;
            let embedder =
                Embedder::load_graph(&files, &onnx, size, descriptor.pooling, regions, compute)?;
            Ok(Scale::new(embedder))
        };
        let scales = sizes
            .into_iter()
            .map(|size| load(size, with_regions && size == native, compute))
            .collect::<Result<Vec<_>, ModelError>>()?;
        // A query scale only ever runs one image: on a GPU, buffers for one (at fp16, 0.9 GB
        // less than for 256).
        let one = Compute {
            batch: 1,
            ..*compute
        };
        let query_scales = match with_regions {
            true => regions::QUERY_SCALES
                .iter()
                .map(|&scale| {
                    load(
                        (native as f64 * f64::from(scale)).round() as usize,
                        false,
                        &one,
                    )
                })
                .collect::<Result<Vec<_>, ModelError>>()?,
            false => Vec::new(),
        };
        Ok(Featurizer {
            scales,
            query_scales,
            limits,
        })
    }

    pub fn kind(&self) -> ModelKind {
        self.scales[0].embedder.kind()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many images to embed at once: what keeps the device busy (16 on CPU, hundreds on
    /// a GPU).
    pub fn batch_size(&self) -> usize {
        self.scales[0].embedder.preferred_batch()
    }

    /// Bytes of one preprocessed image (all its scales; see [`crate::model::input`]).
    pub fn tensor_len(&self) -> usize {
        self.scales
            .iter()
            .map(|s| s.preprocessor.tensor_len())
            .sum()
    }

    /// The shorter side images should be decoded to at least (pass it as `min_side` to the
    /// decoder): what the largest scale resizes to.
    pub fn decode_side(&self) -> u32 {
        self.scales
            .iter()
            .map(|s| s.preprocessor.short_side())
            .max()
            .unwrap_or(0)
    }

    /// Decodes and preprocesses a file into `out` (`tensor_len()` bytes); returns the
    /// original size.
    pub fn prepare_file(&self, path: &Path, out: &mut [u8]) -> Result<(u32, u32), ImageError> {
        let decoded = image::decode_file(path, self.decode_side(), &self.limits)?;
        self.prepare(&decoded, out)
    }

    /// Decodes and preprocesses encoded bytes (an upload) into `out`.
    pub fn prepare_bytes(&self, bytes: &[u8], out: &mut [u8]) -> Result<(u32, u32), ImageError> {
        let decoded = image::decode_bytes(bytes, self.decode_side(), &self.limits)?;
        self.prepare(&decoded, out)
    }

    fn prepare(&self, decoded: &Decoded, out: &mut [u8]) -> Result<(u32, u32), ImageError> {
        self.prepare_image(&decoded.image, out)?;
        Ok((decoded.width, decoded.height))
    }

    /// Preprocesses decoded pixels (a video frame decoded to at least [`Self::decode_side`])
    /// into `out` (`tensor_len()` bytes), one part per scale.
    ///
    /// # Panics
    /// If `out` has the wrong length (a programming error).
    pub fn prepare_image(&self, image: &RgbImage, out: &mut [u8]) -> Result<(), ImageError> {
        assert_eq!(
            out.len(),
            self.tensor_len(),
            "tensor buffer has the wrong length"
        );
        let mut rest = out;
        for scale in &self.scales {
            let (part, tail) = rest.split_at_mut(scale.preprocessor.tensor_len());
            scale.preprocessor.preprocess(image, part)?;
            rest = tail;
        }
        Ok(())
    }

    /// Runs the network on `n` preprocessed images laid end to end in `tensors`. With several
    /// scales, each scale's network runs on its parts of the tensors and an image's vector is
    /// the normalised sum of its normalised per-scale vectors; the logits are scale 1's.
    pub fn embed(&self, tensors: &[u8], n: usize) -> Result<Embeddings> {
        let [first, extra @ ..] = self.scales.as_slice() else {
            unreachable!("a featurizer has at least its native scale");
        };
        if extra.is_empty() {
            return Ok(first.embedder.embed(tensors, n)?);
        }
        let per_image = self.tensor_len();
        if n == 0 || tensors.len() != n * per_image {
            return Err(ModelError::BadInput(format!(
                "{} bytes for {n} images of {per_image}",
                tensors.len()
            ))
            .into());
        }
        let mut combined: Option<Embeddings> = None;
        let mut offset = 0;
        let mut batch = Vec::new();
        for scale in &self.scales {
            let len = scale.preprocessor.tensor_len();
            batch.clear();
            for image in tensors.chunks_exact(per_image) {
                batch.extend_from_slice(&image[offset..offset + len]);
            }
            offset += len;
            let out = scale.embedder.embed(&batch, n)?;
            match combined.as_mut() {
                None => combined = Some(out),
                Some(sum) => sum
                    .features
                    .iter_mut()
                    .zip(&out.features)
                    .for_each(|(a, b)| *a += b),
            }
        }
        let mut combined = combined.expect("at least one scale ran");
        let dim = combined.features.len() / n;
        for row in combined.features.chunks_mut(dim) {
            l2_normalise(row);
        }
        Ok(combined)
    }

    /// Features of one encoded image (an upload).
    pub fn embed_bytes(&self, bytes: &[u8]) -> Result<Embedded> {
        let decoded = image::decode_bytes(bytes, self.decode_side(), &self.limits)?;
        self.embed_decoded(&decoded)
    }

    fn embed_decoded(&self, decoded: &Decoded) -> Result<Embedded> {
        let mut tensor = vec![0; self.tensor_len()];
        let (width, height) = self.prepare(decoded, &mut tensor)?;
        let out = self.embed(&tensor, 1)?;
        Ok(self.embedded(&out, 0, width, height))
    }

    /// Row `row` of a batch's output, for an image of `width` x `height`.
    fn embedded(&self, out: &Embeddings, row: usize, width: u32, height: u32) -> Embedded {
        Embedded {
            vector: out.feature(row).to_vec(),
            logits: out.logits_of(row).to_vec(),
            width,
            height,
            regions: self.regions_of(out, row, width, height),
        }
    }

    /// The labels worth keeping of row `row` of a batch's output (see [`kept_labels`]).
    pub fn labels_of(&self, out: &Embeddings, row: usize) -> Vec<Label> {
        kept_labels(out.logits_of(row))
    }

    /// The region descriptors of row `row` of a batch's output (an image or video frame of
    /// `width` x `height`), with where each region lies in it.
    pub fn regions_of(&self, out: &Embeddings, row: usize, width: u32, height: u32) -> Regions {
        let vectors = out.regions_of(row);
        if vectors.is_empty() {
            return Regions::default();
        }
        let native = &self.scales[0].preprocessor;
        // EfficientNet's map has one cell per 32 pixels of input (padding "same").
        let map_side = (native.size() as usize).div_ceil(32);
        Regions {
            boxes: regions::boxes(map_side, native.crop_region(width, height)),
            vectors: vectors.to_vec(),
        }
    }

    /// An image query from encoded bytes: its features, plus its vectors at the smaller query
    /// scales when the index keeps regions.
    pub fn query_bytes(&self, bytes: &[u8]) -> Result<(Embedded, ImageQuery)> {
        let decoded = image::decode_bytes(bytes, self.decode_side(), &self.limits)?;
        self.query_decoded(&decoded)
    }

    /// [`Featurizer::query_bytes`] for a file.
    pub fn query_file(&self, path: &Path) -> Result<(Embedded, ImageQuery)> {
        let decoded = image::decode_file(path, self.decode_side(), &self.limits)?;
        self.query_decoded(&decoded)
    }

    fn query_decoded(&self, decoded: &Decoded) -> Result<(Embedded, ImageQuery)> {
        let embedded = self.embed_decoded(decoded)?;
        let smaller = self
            .query_scales
            .iter()
            .map(|scale| {
                let mut tensor = vec![0; scale.preprocessor.tensor_len()];
                scale.preprocessor.preprocess(&decoded.image, &mut tensor)?;
                Ok(scale.embedder.embed(&tensor, 1)?.feature(0).to_vec())
            })
            .collect::<Result<Vec<_>>>()?;
        let query = ImageQuery {
            vector: embedded.vector.clone(),
            smaller,
        };
        Ok((embedded, query))
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
        for chunk in paths.chunks(self.batch_size()) {
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
                    let embedded = self.embedded(out, row, width, height);
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
        crate::parallel_map(paths, threads, |path| {
            let mut tensor = vec![0; self.tensor_len()];
            self.prepare_file(path, &mut tensor)
                .map(|dims| (tensor, dims))
        })
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                Err(ImageError::Io(std::io::Error::other(
                    "decoder thread failed",
                )))
            })
        })
        .collect()
    }
}
