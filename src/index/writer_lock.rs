//! One writer per index, across processes.
//!
//! SQLite serialises transactions, not runs: two writers (a `lookalike index` while
//! `lookalike serve --token` takes uploads, or two `index` runs) would interleave their commits,
//! race each other's ANN snapshots and prune each other's tombstones. So opening an index for
//! writing takes an exclusive advisory lock (`flock`) on `writer.lock` in its directory, held
//! for the handle's life. The kernel drops it when the process ends, however it ends (`kill -9`
//! included), so a crash never leaves a stale lock behind. Readers take no lock: they never
//! block the writer, nor it them.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::error::IndexError;

/// The lock file's name inside the index directory.
pub(crate) const WRITER_LOCK_FILE: &str = "writer.lock";

/// Held while an [`super::Index`] is open for writing; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Takes the lock on `dir`'s index without waiting: a second writer is refused at once
    /// with [`IndexError::Locked`], naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<WriterLock, IndexError> {
        let path = dir.join(WRITER_LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| IndexError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // Written by the holder after it locked: who to wait for. Best effort: an
                // unreadable note still leaves a clear refusal.
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(IndexError::Locked {
                    dir: dir.to_path_buf(),
                    holder: holder.trim().to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(IndexError::io(&path, e)),
        }
        let note = format!("pid {} ({})\n", std::process::id(), program_name());
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()));
        written.map_err(|e| IndexError::io(&path, e))?;
        Ok(WriterLock { _file: file })
    }
}

/// The running program's file name: with the pid, enough to find the holder (`ps <pid>`)
/// without writing its options, which may hold a token.
fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown program".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriterLock::acquire(dir.path()).unwrap();
        match WriterLock::acquire(dir.path()) {
            Err(IndexError::Locked { holder, .. }) => {
                assert!(
                    holder.starts_with(&format!("pid {} (", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        WriterLock::acquire(dir.path()).expect("free again once the first handle is dropped");
    }
}
