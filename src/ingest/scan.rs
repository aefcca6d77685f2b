//! Walking the folders to index and deciding what needs work: new or modified files are
//! (re)indexed, unchanged ones skipped by their (size, mtime) stamp, vanished ones pruned.
//! Images and videos are both picked up by their extension.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use walkdir::WalkDir;

use crate::index::FileStamp;
use crate::video::is_supported_video;

/// File extensions lookalike indexes as images (lower case). The decoder still checks the
/// magic bytes: a text file named `.jpg` is reported, not indexed. The last row holds the
/// camera RAW formats (Adobe, Canon, Nikon, Sony, Fujifilm, Olympus, Panasonic, Pentax,
/// Samsung, Hasselblad, Epson, Leica).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "hif", "avif",
    "dng", "cr2", "cr3", "nef", "nrw", "arw", "sr2", "srf", "raf", "orf", "rw2", "pef", "srw",
    "3fr", "erf", "rwl",
];

/// A file that needs (re)indexing.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Absolute, symlink-free path: the key under which the file is stored.
    pub path: PathBuf,
    pub stamp: FileStamp,
}

/// The outcome of a scan: what to do, before anything is decoded.
#[derive(Debug, Default)]
pub struct ScanPlan {
    /// New or modified files.
    pub to_index: Vec<Candidate>,
    /// Indexed files whose stamp is unchanged.
    pub unchanged: usize,
    /// Indexed paths under the scanned roots that no longer exist.
    pub vanished: Vec<String>,
    /// Paths that could not be scanned, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// True when the file name has an image extension lookalike indexes.
pub fn is_supported_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The (size, mtime) stamp of a file, as stored in the catalog.
pub fn stamp_of(metadata: &std::fs::Metadata) -> FileStamp {
    let mtime_ns = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    FileStamp {
        size: metadata.len(),
        mtime_ns,
    }
}

/// Walks `roots` (files or folders, recursively, following no symlinked folders) and compares
/// what it finds with the `known` stamps of the index.
pub fn plan(roots: &[PathBuf], known: &HashMap<String, FileStamp>) -> ScanPlan {
    let mut plan = ScanPlan::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut scanned_roots: Vec<String> = Vec::new();

    for root in roots {
        let root = match root.canonicalize() {
            Ok(root) => root,
            Err(e) => {
                plan.unreadable.push((root.clone(), e.to_string()));
                continue;
            }
        };
        if let Some(r) = root.to_str() {
            scanned_roots.push(r.to_owned());
        }
        for entry in WalkDir::new(&root).sort_by_file_name() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = e.path().map_or_else(|| root.clone(), Path::to_path_buf);
                    plan.unreadable.push((path, e.to_string()));
                    continue;
                }
            };
            let wanted = is_supported_image(entry.path()) || is_supported_video(entry.path());
            if !entry.file_type().is_file() || !wanted {
                continue;
            }
            let Some(key) = entry.path().to_str().map(str::to_owned) else {
                plan.unreadable
                    .push((entry.path().to_path_buf(), "path is not valid UTF-8".into()));
                continue;
            };
            if !seen.insert(key.clone()) {
                continue; // the same file under two overlapping roots
            }
            let stamp = match entry.metadata() {
                Ok(m) => stamp_of(&m),
                Err(e) => {
                    plan.unreadable
                        .push((entry.path().to_path_buf(), e.to_string()));
                    continue;
                }
            };
            if known.get(&key) == Some(&stamp) {
                plan.unchanged += 1;
            } else {
                plan.to_index.push(Candidate {
                    path: entry.into_path(),
                    stamp,
                });
            }
        }
    }

    plan.vanished = known
        .keys()
        .filter(|path| !seen.contains(*path) && scanned_roots.iter().any(|r| is_under(path, r)))
        .cloned()
        .collect();
    plan.vanished.sort();
    plan
}

/// True when `path` is `root` itself or inside the folder `root`.
fn is_under(path: &str, root: &str) -> bool {
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with(std::path::MAIN_SEPARATOR) || root.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_means_inside_the_folder_not_a_sibling_with_the_same_prefix() {
        assert!(is_under("/photos/a.jpg", "/photos"));
        assert!(is_under("/photos/sub/a.jpg", "/photos"));
        assert!(is_under("/photos", "/photos"));
        assert!(!is_under("/photos2/a.jpg", "/photos"));
        assert!(is_under("/a.jpg", "/"));
    }

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(is_supported_image(Path::new("x/IMG_001.JPG")));
        assert!(is_supported_image(Path::new("x/a.webp")));
        assert!(!is_supported_image(Path::new("x/notes.txt")));
        assert!(!is_supported_image(Path::new("x/jpg")));
    }

    #[test]
    fn plan_splits_new_unchanged_and_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("a.jpg"), b"a").unwrap();
        std::fs::write(root.join("b.png"), b"bb").unwrap();
        std::fs::write(root.join("readme.txt"), b"no").unwrap();
        std::fs::write(root.join("clip.MP4"), b"vid").unwrap();
        let a = root.join("a.jpg").to_str().unwrap().to_owned();
        let gone = root.join("gone.jpg").to_str().unwrap().to_owned();
        let elsewhere = "/elsewhere/c.jpg".to_owned();
        let mut known = HashMap::new();
        known.insert(a.clone(), stamp_of(&std::fs::metadata(&a).unwrap()));
        known.insert(
            gone.clone(),
            FileStamp {
                size: 1,
                mtime_ns: 1,
            },
        );
        known.insert(
            elsewhere,
            FileStamp {
                size: 1,
                mtime_ns: 1,
            },
        );

        let plan = plan(std::slice::from_ref(&root), &known);
        assert_eq!(plan.unchanged, 1);
        let new: Vec<_> = plan.to_index.iter().map(|c| c.path.clone()).collect();
        assert_eq!(new, vec![root.join("b.png"), root.join("clip.MP4")]);
        assert_eq!(
            plan.vanished,
            vec![gone],
            "only vanished files under the root are pruned"
        );
    }
}
