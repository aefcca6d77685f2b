//! Checksums of ANN snapshot files.
//!
//! usearch keeps none: bytes changed inside a snapshot whose structure stays valid (bit rot, a
//! bad copy) were used as they were, silently changing answers, and a writer that loaded them
//! copied them into every later snapshot. So each snapshot is written with a BLAKE3 hash of
//! its bytes beside it (`<snapshot>.blake3`, written and synced before the snapshot is renamed
//! into place), and a snapshot that does not match its hash is rejected like a truncated one:
//! the ANN is rebuilt from the catalog. A snapshot without a hash (written before hashes were
//! kept) is used as before.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::IndexError;

/// Appended to a snapshot's file name to name its hash.
pub(crate) const SUFFIX: &str = ".blake3";

/// The hash file of the snapshot at `snapshot`.
pub(crate) fn path_of(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(SUFFIX);
    PathBuf::from(name)
}

/// Hashes `written` (a snapshot about to be renamed to `snapshot`) and stores the hash as
/// `snapshot`'s, durably, through a temporary file named `temp`.
pub(crate) fn write(written: &Path, snapshot: &Path, temp: &Path) -> Result<(), IndexError> {
    let hash = hash_file(written).map_err(|e| IndexError::io(written, e))?;
    fs::File::create(temp)
        .and_then(|mut f| {
            writeln!(f, "{}", hash.to_hex())?;
            f.sync_all()
        })
        .map_err(|e| IndexError::io(temp, e))?;
    let target = path_of(snapshot);
    fs::rename(temp, &target).map_err(|e| IndexError::io(&target, e))
}

/// Whether `snapshot` still holds the bytes its hash was taken of; the error says why not.
/// Ok without a hash to check against.
pub(crate) fn verify(snapshot: &Path) -> Result<(), String> {
    let expected = match fs::read_to_string(path_of(snapshot)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("its checksum cannot be read: {e}")),
    };
    let expected = blake3::Hash::from_hex(expected.trim())
        .map_err(|e| format!("its checksum file is damaged: {e}"))?;
    let actual = hash_file(snapshot).map_err(|e| e.to_string())?;
    if actual == expected {
        Ok(())
    } else {
        Err("its bytes do not match the checksum written with it (damaged on disk)".into())
    }
}

fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_is_caught_and_a_missing_hash_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("ann-1-0.usearch.tmp");
        let snapshot = dir.path().join("ann-1-0.usearch");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        fs::write(&written, &bytes).unwrap();
        write(&written, &snapshot, &dir.path().join("hash.tmp")).unwrap();
        fs::rename(&written, &snapshot).unwrap();
        assert_eq!(verify(&snapshot), Ok(()));

        let mut damaged = bytes.clone();
        damaged[54_321] ^= 0x10;
        fs::write(&snapshot, &damaged).unwrap();
        assert!(verify(&snapshot).unwrap_err().contains("do not match"));

        fs::remove_file(path_of(&snapshot)).unwrap();
        assert_eq!(verify(&snapshot), Ok(()), "no hash: used as before");
    }
}
