//! Evaluation datasets made from folders: a labelled folder (one subfolder per label), and a
//! copy-detection set (originals plus transformed copies written to a work folder).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use fast_image_resize as fir;
use image::RgbImage;

use super::transforms::{Rng, Transform};
use super::EvalError;
use crate::image::{decode_file, thumbnail_jpeg, ImageError, Limits};
use crate::index::Region;
use crate::ingest::is_supported_image;

/// One image of a labelled folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    pub path: PathBuf,
    /// The name of the subfolder the image is in.
    pub label: String,
}

/// The images of `root`, labelled by the subfolder they are in (images directly in `root` have
/// no label and are ignored; deeper folders count for the label above them). With `limit`, the
/// first `limit` per label in path order, so a run is repeatable.
pub fn labelled_folder(root: &Path, limit: Option<usize>) -> Result<Vec<LabelledImage>, EvalError> {
    let mut labels = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| EvalError::io(root, e))? {
        let entry = entry.map_err(|e| EvalError::io(root, e))?;
        if entry.path().is_dir() {
            labels.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    labels.sort();
    let mut images = Vec::new();
    for (label, dir) in labels {
        let mut paths = images_under(&dir)?;
        if let Some(limit) = limit {
            paths.truncate(limit);
        }
        images.extend(paths.into_iter().map(|path| LabelledImage {
            path,
            label: label.clone(),
        }));
    }
    if images.is_empty() {
        return Err(EvalError::NoImages(root.to_path_buf()));
    }
    Ok(images)
}

/// Image files (by extension, as the indexer picks them) under `dir`, recursively, sorted
/// (`dir` itself when it is an image file).
pub fn images_under(dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let mut paths = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            EvalError::io(&path, std::io::Error::other(e))
        })?;
        if entry.file_type().is_file() && is_supported_image(entry.path()) {
            paths.push(entry.into_path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// One transformed copy of an original.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyImage {
    pub path: PathBuf,
    /// Index into [`CopySet::originals`].
    pub original: usize,
    pub transform: Transform,
    /// Where in the original a detail was cut from.
    pub region: Option<Region>,
}

/// Originals and their copies.
#[derive(Debug, Default)]
pub struct CopySet {
    /// The originals that could be read (unreadable ones are in `skipped`), in path order.
    pub originals: Vec<PathBuf>,
    /// Every transform of every original, ordered by original then transform.
    pub copies: Vec<CopyImage>,
    /// Photos that could not be decoded or copied, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// How copies are made.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub transforms: Vec<Transform>,
    pub seed: u64,
    /// Copies are made from the original shrunk to at most this many pixels on its longer side
    /// (never enlarged; 0 = full size). The model sees 224 pixels, so bigger copies cost time
    /// and disk for nothing, and a resize is what copies in the wild go through anyway.
    pub max_side: u32,
    /// Copy-making threads.
    pub threads: usize,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            transforms: Transform::ALL.to_vec(),
            seed: 7,
            max_side: 1024,
            threads: crate::available_cores(),
        }
    }
}

/// Writes every transform of every photo in `photos` (files, or folders searched recursively)
/// into `out_dir` as
/// `NNNNN_<transform>.jpg` (JPEG quality 95, so the transform, not the storage, is what the
/// copy differs by; the JPEG-30 copy keeps its own artefacts).
pub fn make_copies(
    photos: &[PathBuf],
    out_dir: &Path,
    options: &CopyOptions,
) -> Result<CopySet, EvalError> {
    let mut paths = Vec::new();
    for root in photos {
        let found = images_under(root)?;
        if found.is_empty() {
            return Err(EvalError::NoImages(root.clone()));
        }
        paths.extend(found);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| EvalError::io(out_dir, e))?;
    // Each original's outcome lands in its own slot, so the result does not depend on which
    // thread made it.
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; paths.len()]);
    let next = AtomicUsize::new(0);
    let io_error: Mutex<Option<EvalError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let outcome = match copies_of(i, path, out_dir, options) {
                    Ok(copies) => Ok(copies),
                    Err(CopyError::Image(e)) => Err(e.to_string()),
                    Err(CopyError::Write(e)) => {
                        // A full disk or an unwritable folder: nothing else will work either.
                        *io_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        break;
                    }
                };
                outcomes.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
            });
        }
    });
    if let Some(e) = io_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut set = CopySet::default();
    let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    for (path, outcome) in paths.into_iter().zip(outcomes) {
        match outcome {
            Some(Ok(copies)) => {
                let original = set.originals.len();
                set.copies
                    .extend(copies.into_iter().map(|c| CopyImage { original, ..c }));
                set.originals.push(path);
            }
            Some(Err(reason)) => set.skipped.push((path, reason)),
            None => set.skipped.push((path, "not processed".to_owned())),
        }
    }
    tracing::info!(
        originals = set.originals.len(),
        copies = set.copies.len(),
        skipped = set.skipped.len(),
        "copies written to {}",
        out_dir.display()
    );
    Ok(set)
}

/// An original's copies, or why it was skipped.
type Outcome = Result<Vec<CopyImage>, String>;

enum CopyError {
    /// The photo is at fault: skip it.
    Image(ImageError),
    /// The work folder is at fault: stop.
    Write(EvalError),
}

impl From<ImageError> for CopyError {
    fn from(e: ImageError) -> Self {
        CopyError::Image(e)
    }
}

/// The copies of original number `i` (its `original` field is `i` until the caller renumbers
/// it around skipped photos). The random choices depend on `i` = the photo's place in path
/// order, so the same folder and seed always give the same copies.
fn copies_of(
    i: usize,
    path: &Path,
    out_dir: &Path,
    options: &CopyOptions,
) -> Result<Vec<CopyImage>, CopyError> {
    let limits = Limits::default();
    // A JPEG may be shrunk in the DCT domain while its shorter side stays >= max_side, which is
    // at least what the longer side is shrunk to below.
    let decoded = decode_file(path, options.max_side, &limits)?;
    let image = fit(decoded.image, options.max_side)?;
    let mut copies = Vec::with_capacity(options.transforms.len());
    for &transform in &options.transforms {
        let copy = transform.apply(&image, &mut Rng::for_copy(options.seed, i, transform))?;
        let (w, h) = copy.image.dimensions();
        let bytes = thumbnail_jpeg(&copy.image, w.max(h), 95)?;
        let copy_path = out_dir.join(format!("{i:05}_{}.jpg", transform.name()));
        std::fs::write(&copy_path, bytes)
            .map_err(|e| CopyError::Write(EvalError::io(&copy_path, e)))?;
        copies.push(CopyImage {
            path: copy_path,
            original: i,
            transform,
            region: copy.region,
        });
    }
    Ok(copies)
}

/// `image` shrunk so its longer side is at most `max_side` (0: unchanged).
fn fit(image: RgbImage, max_side: u32) -> Result<RgbImage, ImageError> {
    let (w, h) = image.dimensions();
    let long = w.max(h);
    if max_side == 0 || long <= max_side {
        return Ok(image);
    }
    let scale =
        |side: u32| ((u64::from(side) * u64::from(max_side) / u64::from(long)) as u32).max(1);
    let mut out = RgbImage::new(scale(w), scale(h));
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom));
    fir::Resizer::new()
        .resize(&image, &mut out, &options)
        .map_err(|e| ImageError::Resize(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_shrinks_the_longer_side_only_when_needed() {
        let image = RgbImage::new(400, 100);
        assert_eq!(fit(image.clone(), 200).unwrap().dimensions(), (200, 50));
        assert_eq!(fit(image.clone(), 800).unwrap().dimensions(), (400, 100));
        assert_eq!(fit(image, 0).unwrap().dimensions(), (400, 100));
    }

    #[test]
    fn labelled_folder_takes_labels_from_subfolders_and_limits_each() {
        let dir = tempfile::tempdir().unwrap();
        for (label, names) in [
            ("cats", &["b.png", "a.png", "c.jpg"][..]),
            ("dogs", &["x.png"]),
        ] {
            std::fs::create_dir_all(dir.path().join(label)).unwrap();
            for name in names {
                std::fs::write(dir.path().join(label).join(name), b"").unwrap();
            }
        }
        std::fs::write(dir.path().join("loose.png"), b"").unwrap();
        std::fs::write(dir.path().join("cats/notes.txt"), b"").unwrap();
        let images = labelled_folder(dir.path(), Some(2)).unwrap();
        let got: Vec<(String, String)> = images
            .iter()
            .map(|i| {
                let name = i.path.file_name().unwrap().to_string_lossy().into_owned();
                (i.label.clone(), name)
            })
            .collect();
        let expected = [("cats", "a.png"), ("cats", "b.png"), ("dogs", "x.png")]
            .map(|(l, n)| (l.to_owned(), n.to_owned()));
        assert_eq!(got, expected);
    }

    #[test]
    fn an_empty_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            labelled_folder(dir.path(), None),
            Err(EvalError::NoImages(_))
        ));
    }
}
