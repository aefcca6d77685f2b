//! Confinement of server-side paths to the configured roots.

use std::io;
use std::path::{Path, PathBuf};

use axum::http::StatusCode;

use super::error::ApiError;

/// The allowed folders, canonicalised once at start so comparisons are between real paths.
#[derive(Clone, Debug)]
pub struct Roots(Vec<PathBuf>);

impl Roots {
    /// Canonicalises every root; a root that does not exist is a configuration error.
    pub fn new(roots: &[PathBuf]) -> io::Result<Roots> {
        roots
            .iter()
            .map(|root| {
                root.canonicalize().map_err(|err| {
                    io::Error::new(err.kind(), format!("root {}: {err}", root.display()))
                })
            })
            .collect::<io::Result<Vec<_>>>()
            .map(Roots)
    }

    /// Whether an already canonical path lies inside (or is) one of the roots. Components are
    /// compared, not strings, so `/photos-private` is not inside `/photos`.
    pub fn contains(&self, canonical: &Path) -> bool {
        self.0.iter().any(|root| canonical.starts_with(root))
    }

    /// Resolves a client-supplied path: it must be absolute and exist, and after resolving
    /// `..` and symlinks it must still be inside a root.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, ApiError> {
        let requested = Path::new(requested);
        if requested.as_os_str().is_empty() || !requested.is_absolute() {
            return Err(ApiError::bad_request(
                "path_not_absolute",
                "path must be an absolute server-side path",
            ));
        }
        let outside = || {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "path_outside_roots",
                "path is outside the folders this server may index",
            )
        };
        let canonical = requested.canonicalize().map_err(|err| {
            // Whether a path outside the roots exists is none of the client's business: only
            // one that names a root (without `..`) may be told it is missing.
            let inside = !requested
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
                && self.contains(requested);
            match err.kind() {
                io::ErrorKind::NotFound if inside => ApiError::not_found("path does not exist"),
                _ if inside => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "path_forbidden",
                    "path is not accessible",
                ),
                _ => outside(),
            }
        })?;
        if self.contains(&canonical) {
            Ok(canonical)
        } else {
            Err(outside())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confines_to_roots_after_resolving() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(dir.path().join("photos-private")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let ok = roots.resolve(root.join("a").to_str().unwrap()).unwrap();
        assert!(ok.ends_with("photos/a"));
        let up = root.join("a/../../photos-private");
        assert_eq!(roots.resolve(up.to_str().unwrap()).unwrap_err().status, 403);
        let sibling = dir.path().join("photos-private");
        assert_eq!(
            roots.resolve(sibling.to_str().unwrap()).unwrap_err().status,
            403
        );
        assert_eq!(roots.resolve("relative/path").unwrap_err().status, 400);
        let missing = root.join("missing");
        assert_eq!(
            roots.resolve(missing.to_str().unwrap()).unwrap_err().status,
            404
        );
        // Outside the roots, missing and present paths get the same answer.
        for elsewhere in [
            dir.path().join("nowhere"),
            dir.path().join("photos-private"),
        ] {
            let refused = roots.resolve(elsewhere.to_str().unwrap()).unwrap_err();
            assert_eq!(refused.status, 403);
            assert_eq!(refused.code, "path_outside_roots");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("photos-private"), root.join("link"))
                .unwrap();
            let link = root.join("link");
            assert_eq!(
                roots.resolve(link.to_str().unwrap()).unwrap_err().status,
                403
            );
        }
    }
}
