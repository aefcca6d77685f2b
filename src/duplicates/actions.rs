//! What `lookalike duplicates` does with the files a group drops: move them under a folder,
//! replace them with links to the group's keeper, or move them into a trash folder; and how
//! to take each of these back.
//!
//! This is the one place where lookalike changes a user's files, so every action is
//! reversible (until the trash is emptied) and refuses what it cannot do safely:
//!
//! - **Nothing under a reference folder is touched.** Files and reference folders are compared
//!   as canonical paths, component by component: a reference folder spelled through a symbolic
//!   link or `..` still protects its files, and `/a/ref` does not cover `/a/reference2`.
//! - **Keepers are never dropped**, and a file is dropped only while its keeper exists, so
//!   that a group always keeps a copy.
//! - **A file that is not as planned is skipped, with the reason**: gone, not a regular file,
//!   its keeper gone, bytes that differ from the keeper's (for a link), or changed while being
//!   compared. One such file never fails the others; only a journal that cannot be written
//!   stops a run, since a step it does not record could not be undone.
//! - **Nothing is overwritten.** A moved file lands at the folder joined with its absolute
//!   path (`/photos/2019/a.jpg` goes to `DIR/photos/2019/a.jpg`), so that files of the same
//!   name from different folders never meet; where that place is taken (the same path dropped
//!   by an earlier run), a numeric suffix goes before the extension: `a~1.jpg`, `a~2.jpg`.
//!   Undo does not overwrite either: a step whose original path is occupied again is skipped.
//!   Both check the place just before renaming; another program creating a file at that very
//!   place in that instant is not guarded against.
//! - **Every step is journaled** right after it is done, and the line is on disk before the
//!   next step begins: a run cut short leaves a journal that undoes what it did. (A crash
//!   between a step and its line leaves that one file moved to its predictable place, or
//!   linked to an identical keeper: nothing is lost.)
//!
//! # The journal
//!
//! JSON lines, each an object with an `op` (the `link` record below is one line in the file):
//!
//! ```text
//! {"op":"begin","version":1,"action":{"move_to":"/home/me/dups"},"started":1718000000}
//! {"op":"move","from":"/photos/a.jpg","to":"/home/me/dups/photos/a.jpg"}
//! {"op":"link","path":"/photos/b.jpg","keeper":"/photos/k.jpg","link":"hard","blake3":"26…",
//!  "modified":{"secs_since_epoch":1717990000,"nanos_since_epoch":182804277}}
//! {"op":"undo","step":2}
//! ```
//!
//! `begin` comes first: the action as applied (its folder canonical) and when, in seconds
//! since 1970. Each `move` (a delete is a move into the trash) and `link` line is a step done, the
//! steps numbered from 1 in the file's order. [`undo`] appends an `undo` line for each step
//! it reverses, so undo is journaled too: undoing a journal again skips the steps already
//! undone (a second complete undo skips everything and touches nothing), and an undo cut
//! short, or one that skipped a step whose path was occupied, can be run again to do the rest.
//! Paths are canonical; a file whose path is not UTF-8 is skipped, as JSON cannot record it.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use walkdir::WalkDir;

/// The version of the journal's format, in its `begin` line.
const JOURNAL_VERSION: u32 = 1;

/// The file that marks a folder as a lookalike trash. [`empty_trash`] empties no folder
/// without it, so that a wrong path given to it cannot delete a user's photos.
pub const TRASH_MARKER: &str = ".lookalike-trash";

/// What the marker file says to whoever finds it.
const TRASH_NOTE: &str = "lookalike moves the files `duplicates` deletes into this folder, \
    where undo finds them until the trash is emptied.\n";

/// What to do with a dropped file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Move it under this folder, at its absolute path below the folder.
    MoveTo(PathBuf),
    /// Replace it with a hard link to its keeper (a symbolic link where a hard link cannot be
    /// made), only when its bytes are the keeper's: nothing is lost, and undo gives the file
    /// back as an independent copy. A hard link shares its bytes: writing through either
    /// path changes both.
    Link,
    /// Move it under this trash folder, where undo finds it until [`empty_trash`] deletes it.
    Delete { trash: PathBuf },
}

impl Action {
    /// The folder the action moves files under, if it moves them.
    fn folder(&self) -> Option<&Path> {
        match self {
            Action::MoveTo(dir) | Action::Delete { trash: dir } => Some(dir),
            Action::Link => None,
        }
    }
}

/// One file to drop, and the keeper of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropFile {
    pub path: PathBuf,
    pub keeper: PathBuf,
}

/// An action on the files duplicate groups drop.
#[derive(Debug, Clone)]
pub struct Plan {
    pub action: Action,
    pub drops: Vec<DropFile>,
    /// Folders whose files are never moved, linked or deleted.
    pub references: Vec<PathBuf>,
}

/// The kind of link a dropped file was replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Hard,
    /// To the keeper's absolute path: made where a hard link cannot be (the keeper on another
    /// file system, or one without hard links).
    Symbolic,
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::Hard => "hard",
            LinkKind::Symbolic => "symbolic",
        })
    }
}

/// A step done to one file: what the journal records, and what it takes to undo it. Paths
/// are canonical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// The file was moved (under the move-to folder, or into the trash).
    Move { from: PathBuf, to: PathBuf },
    /// The file was replaced by a link to its keeper.
    Link {
        path: PathBuf,
        keeper: PathBuf,
        link: LinkKind,
        /// The BLAKE3 of the bytes (hex), which undo checks its copy against.
        #[serde(rename = "blake3")]
        hash: String,
        /// The file's own modification time, which its restored copy gets back.
        modified: Option<SystemTime>,
    },
}

impl Step {
    /// The dropped file's path, where undo puts it back.
    pub fn path(&self) -> &Path {
        match self {
            Step::Move { from, .. } => from,
            Step::Link { path, .. } => path,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Move { from, to } => {
                write!(f, "{} moved to {}", from.display(), to.display())
            }
            Step::Link {
                path, keeper, link, ..
            } => write!(
                f,
                "{} {link}-linked to {}",
                path.display(),
                keeper.display()
            ),
        }
    }
}

/// A file left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// What [`apply`] or [`undo`] did: the steps done (for undo, the journal's steps it reversed,
/// latest first) and the files skipped.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub done: Vec<Step>,
    pub skipped: Vec<Skipped>,
    /// The journal that records (or recorded) the steps.
    pub journal: PathBuf,
}

impl Outcome {
    fn new(journal: &Path) -> Outcome {
        Outcome {
            done: Vec::new(),
            skipped: Vec::new(),
            journal: journal.to_path_buf(),
        }
    }

    fn record(&mut self, result: Result<Step, Skipped>) {
        match result {
            Ok(step) => {
                tracing::info!("{step}");
                self.done.push(step);
            }
            Err(skipped) => {
                tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "skipped");
                self.skipped.push(skipped);
            }
        }
    }
}

/// What stops a whole action, undo or emptying of the trash (a single file's trouble only
/// skips that file).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A reference folder does not exist or cannot be resolved: nothing is done rather than
    /// risk touching the files it was meant to protect.
    #[error("reference folder {}: {source}", path.display())]
    Reference {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The move-to or trash folder could not be created, or the trash not emptied.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The folder's path is not UTF-8, which the journal (JSON) cannot record.
    #[error("{}: the path is not UTF-8, which the journal cannot record", .0.display())]
    NotUtf8(PathBuf),
    /// The journal already exists: it may be the only way to undo an earlier run.
    #[error("journal {} already exists: it may be needed to undo an earlier run", .0.display())]
    JournalExists(PathBuf),
    /// The journal could not be created, written or read.
    #[error("journal {}: {source}", path.display())]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The journal holds something else than lookalike writes.
    #[error("journal {} line {line}: {reason}", path.display())]
    BadJournal {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// The folder is not a lookalike trash (it lacks the marker): not emptied, not used.
    #[error(
        "{} is not a lookalike trash folder (no {TRASH_MARKER} in it): left alone",
        .0.display()
    )]
    NotATrash(PathBuf),
}

impl ActionError {
    fn io(path: &Path, source: io::Error) -> Self {
        ActionError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn journal(path: &Path, source: io::Error) -> Self {
        ActionError::Journal {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Applies `plan`, recording each step in a new journal at `journal` (its folder created),
/// which [`undo`] takes back. An existing journal is never overwritten.
pub fn apply(plan: &Plan, journal: &Path) -> Result<Outcome, ActionError> {
    let references = resolve_references(&plan.references)?;
    let action = prepare_action(&plan.action)?;
    // Every keeper, not only a drop's own: a plan whose groups overlap never drops a file
    // another group keeps.
    let keepers: HashSet<PathBuf> = plan
        .drops
        .iter()
        .filter_map(|drop| drop.keeper.canonicalize().ok())
        .collect();
    let mut writer = JournalWriter::create(journal, &action)?;
    let mut outcome = Outcome::new(journal);
    for drop in &plan.drops {
        let result = check_drop(drop, &references, &keepers).and_then(|file| act(&action, &file));
        if let Ok(step) = &result {
            writer.write(step)?;
        }
        outcome.record(result.map_err(|reason| Skipped {
            path: drop.path.clone(),
            reason,
        }));
    }
    tracing::info!(
        done = outcome.done.len(),
        skipped = outcome.skipped.len(),
        journal = %journal.display(),
        "duplicates: action applied"
    );
    Ok(outcome)
}

/// Takes back the steps `journal` records that are not undone yet, latest first, appending an
/// `undo` line for each. A step whose file is no longer where the step put it, or whose
/// original path is occupied again, is skipped: nothing is overwritten.
pub fn undo(journal: &Path) -> Result<Outcome, ActionError> {
    let read = read_journal(journal)?;
    let folder = read.action.folder();
    let mut writer = JournalWriter::append(journal)?;
    let mut outcome = Outcome::new(journal);
    for (index, (step, undone)) in read.steps.iter().zip(&read.undone).enumerate().rev() {
        let result = if *undone {
            Err("already undone".to_owned())
        } else {
            undo_step(step, folder)
        };
        if result.is_ok() {
            writer.write(&Meta::Undo { step: index + 1 })?;
        }
        outcome.record(result.map(|()| step.clone()).map_err(|reason| Skipped {
            path: step.path().to_path_buf(),
            reason,
        }));
    }
    tracing::info!(
        restored = outcome.done.len(),
        skipped = outcome.skipped.len(),
        journal = %journal.display(),
        "duplicates: undone"
    );
    Ok(outcome)
}

/// Deletes for real what the trash folder `trash` holds, returning how many files (folders
/// not counted) were removed; a trash that does not exist is empty. The folder and its
/// marker stay. A folder without the marker is refused.
pub fn empty_trash(trash: &Path) -> Result<u64, ActionError> {
    match fs::symlink_metadata(trash) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ActionError::io(trash, e)),
        Ok(metadata) if !metadata.is_dir() => return Err(ActionError::NotATrash(trash.into())),
        Ok(_) => {}
    }
    if !trash.join(TRASH_MARKER).is_file() {
        return Err(ActionError::NotATrash(trash.to_path_buf()));
    }
    let mut removed = 0;
    for entry in WalkDir::new(trash).min_depth(1).contents_first(true) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(trash).to_path_buf();
            ActionError::io(&path, e.into())
        })?;
        if entry.depth() == 1 && entry.file_name() == TRASH_MARKER {
            continue;
        }
        let path = entry.path();
        if entry.file_type().is_dir() {
            fs::remove_dir(path).map_err(|e| ActionError::io(path, e))?;
        } else {
            fs::remove_file(path).map_err(|e| ActionError::io(path, e))?;
            removed += 1;
        }
    }
    tracing::info!(removed, trash = %trash.display(), "trash emptied");
    Ok(removed)
}

/// The reference folders, canonical. One that cannot be resolved stops the action: its
/// files could not be told apart.
fn resolve_references(references: &[PathBuf]) -> Result<Vec<PathBuf>, ActionError> {
    references
        .iter()
        .map(|path| {
            path.canonicalize()
                .map_err(|source| ActionError::Reference {
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

/// The action with its folder created and canonical, so that the journal's paths hold
/// whatever the current folder of a later undo; a trash folder gets its marker.
fn prepare_action(action: &Action) -> Result<Action, ActionError> {
    Ok(match action {
        Action::Link => Action::Link,
        Action::MoveTo(dir) => Action::MoveTo(create_folder(dir)?),
        Action::Delete { trash } => {
            let trash = create_folder(trash)?;
            mark_trash(&trash)?;
            Action::Delete { trash }
        }
    })
}

fn create_folder(dir: &Path) -> Result<PathBuf, ActionError> {
    let canonical = fs::create_dir_all(dir)
        .and_then(|()| dir.canonicalize())
        .map_err(|e| ActionError::io(dir, e))?;
    if canonical.to_str().is_none() {
        return Err(ActionError::NotUtf8(canonical));
    }
    Ok(canonical)
}

/// Marks `trash` as a lookalike trash. A folder that already holds files without the marker
/// is refused: it is someone's folder, which emptying the trash would wipe.
fn mark_trash(trash: &Path) -> Result<(), ActionError> {
    let marker = trash.join(TRASH_MARKER);
    if marker.is_file() {
        return Ok(());
    }
    let mut entries = fs::read_dir(trash).map_err(|e| ActionError::io(trash, e))?;
    if entries.next().is_some() {
        return Err(ActionError::NotATrash(trash.to_path_buf()));
    }
    fs::write(&marker, TRASH_NOTE).map_err(|e| ActionError::io(&marker, e))
}

/// A dropped file cleared for its action: canonical paths, and its metadata when checked
/// (before its bytes are compared to the keeper's).
struct Checked {
    path: PathBuf,
    keeper: PathBuf,
    metadata: Metadata,
}

/// The dropped file, if it may be acted on; otherwise why not.
fn check_drop(
    drop: &DropFile,
    references: &[PathBuf],
    keepers: &HashSet<PathBuf>,
) -> Result<Checked, String> {
    let metadata = fs::symlink_metadata(&drop.path).map_err(|e| unreadable(&e))?;
    if !metadata.is_file() {
        return Err("not a regular file (a folder or a symbolic link): left alone".to_owned());
    }
    let path = drop.path.canonicalize().map_err(|e| unreadable(&e))?;
    // `Path::starts_with` compares whole components: /a/ref does not cover /a/reference2.
    if let Some(reference) = references.iter().find(|r| path.starts_with(r)) {
        return Err(format!(
            "under the reference folder {}",
            reference.display()
        ));
    }
    if keepers.contains(&path) {
        return Err("it is a group's keeper: keepers are never dropped".to_owned());
    }
    let keeper = drop
        .keeper
        .canonicalize()
        .ok()
        .filter(|keeper| keeper.is_file())
        .ok_or_else(|| {
            format!(
                "its keeper {} is gone: dropping it could leave no copy",
                drop.keeper.display()
            )
        })?;
    if path.to_str().is_none() || keeper.to_str().is_none() {
        return Err("its path or its keeper's is not UTF-8: the journal cannot record it".into());
    }
    Ok(Checked {
        path,
        keeper,
        metadata,
    })
}

/// Why a file that could not be looked at is skipped.
fn unreadable(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        "it no longer exists".to_owned()
    } else {
        format!("cannot be read: {e}")
    }
}

fn act(action: &Action, file: &Checked) -> Result<Step, String> {
    match action {
        Action::MoveTo(dir) | Action::Delete { trash: dir } => move_under(dir, file),
        Action::Link => link_to_keeper(file),
    }
}

/// Moves the file to its place under `dir` (see [`free_path`]).
fn move_under(dir: &Path, file: &Checked) -> Result<Step, String> {
    let to = free_path(&dir.join(below_root(&file.path)));
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    move_file(&file.path, &to).map_err(|e| format!("cannot move it to {}: {e}", to.display()))?;
    Ok(Step::Move {
        from: file.path.clone(),
        to,
    })
}

/// An absolute path without its root (and drive, on Windows): what a moved file keeps of its
/// path under the move-to folder.
fn below_root(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// `path` if nothing is there, else the first free one of `stem~1.ext`, `stem~2.ext`, ...:
/// a file dropped twice from the same path (restored by hand in between) keeps both copies.
fn free_path(path: &Path) -> PathBuf {
    if is_free(path) {
        return path.to_path_buf();
    }
    let stem = path.file_stem().unwrap_or_default();
    let mut n = 0u64;
    loop {
        n += 1;
        let mut name = stem.to_os_string();
        name.push(format!("~{n}"));
        if let Some(extension) = path.extension() {
            name.push(".");
            name.push(extension);
        }
        let candidate = path.with_file_name(name);
        if is_free(&candidate) {
            return candidate;
        }
    }
}

/// True when nothing, not even a dangling symbolic link, is at `path`. A place that cannot
/// be looked at counts as taken.
fn is_free(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Moves a file to `to`, whose place the caller found free: a rename, or across file systems
/// a copy (permissions and modification time kept) flushed to disk before the source is
/// removed. A copy whose source cannot be removed is removed again: one place or the other.
fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let copied = copy_new(from, to).and_then(|()| fs::remove_file(from));
            if copied.is_err() {
                if let Err(e) = fs::remove_file(to) {
                    tracing::warn!(path = %to.display(), error = %e, "cannot remove a partial copy");
                }
            }
            copied
        }
        moved => moved,
    }
}

/// Copies `from` to a new file at `to`, which must not exist.
fn copy_new(from: &Path, to: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(to)?;
    copy_contents(from, &mut file, fs::metadata(from)?.modified().ok())
}

/// Copies the bytes and permissions of `from` into `to`, sets its modification time, and
/// flushes it to disk.
fn copy_contents(from: &Path, to: &mut File, modified: Option<SystemTime>) -> io::Result<()> {
    let mut source = File::open(from)?;
    io::copy(&mut source, to)?;
    to.set_permissions(source.metadata()?.permissions())?;
    if let Some(modified) = modified {
        to.set_modified(modified)?;
    }
    to.sync_all()
}

/// Replaces the file with a link to its keeper when their bytes are the same: the link is
/// made at a temporary name beside the file and renamed over it, so that the path always
/// holds the file or the link. The file and the keeper must be as they were when compared.
fn link_to_keeper(file: &Checked) -> Result<Step, String> {
    let keeper = fs::metadata(&file.keeper).map_err(|e| format!("its keeper: {e}"))?;
    if file_id(&keeper).is_some() && file_id(&keeper) == file_id(&file.metadata) {
        return Err("already a hard link to its keeper".to_owned());
    }
    if keeper.len() != file.metadata.len() {
        return Err(format!(
            "its size ({} bytes) is not its keeper's ({} bytes): only identical files are linked",
            file.metadata.len(),
            keeper.len()
        ));
    }
    let hash = hash_file(&file.path).map_err(|e| unreadable(&e))?;
    let keeper_hash = hash_file(&file.keeper).map_err(|e| format!("its keeper: {e}"))?;
    if hash != keeper_hash {
        return Err(
            "its bytes are not its keeper's (BLAKE3): only identical files are linked".to_owned(),
        );
    }
    let (temp, link) = make_link(&file.keeper, &file.path)?;
    let linked_keeper = fs::metadata(&temp).is_ok_and(|now| same_state(&now, &keeper));
    if !unchanged(&file.path, &file.metadata) || !linked_keeper {
        return Err("it or its keeper changed while being compared: left alone".to_owned());
    }
    temp.persist(&file.path)
        .map_err(|e| format!("cannot replace it with the link: {}", e.error))?;
    Ok(Step::Link {
        path: file.path.clone(),
        keeper: file.keeper.clone(),
        link,
        hash: hash.to_hex().to_string(),
        modified: file.metadata.modified().ok(),
    })
}

/// A link to `keeper` at a new temporary name in `path`'s folder (removed unless persisted):
/// a hard link, or a symbolic link to the keeper's absolute path where a hard link cannot be
/// made (another file system, one without hard links, too many links).
fn make_link(keeper: &Path, path: &Path) -> Result<(tempfile::TempPath, LinkKind), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".lookalike-link-");
    match builder.make_in(dir, |temp| fs::hard_link(keeper, temp)) {
        Ok(temp) => Ok((temp.into_temp_path(), LinkKind::Hard)),
        Err(hard) => match symbolic_link_in(&builder, dir, keeper) {
            Ok(temp) => {
                tracing::info!(path = %path.display(), error = %hard, "no hard link possible: a symbolic link");
                Ok((temp, LinkKind::Symbolic))
            }
            Err(symbolic) => Err(format!(
                "no link to its keeper can be made here (hard: {hard}; symbolic: {symbolic})"
            )),
        },
    }
}

#[cfg(unix)]
fn symbolic_link_in(
    builder: &tempfile::Builder,
    dir: &Path,
    keeper: &Path,
) -> io::Result<tempfile::TempPath> {
    builder
        .make_in(dir, |temp| std::os::unix::fs::symlink(keeper, temp))
        .map(tempfile::NamedTempFile::into_temp_path)
}

#[cfg(not(unix))]
fn symbolic_link_in(
    _builder: &tempfile::Builder,
    _dir: &Path,
    _keeper: &Path,
) -> io::Result<tempfile::TempPath> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symbolic links are only made on Unix",
    ))
}

fn hash_file(path: &Path) -> io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(File::open(path)?)?;
    Ok(hasher.finalize())
}

/// The file's identity where the system gives one (device and inode): two paths with the
/// same are hard links of one file.
#[cfg(unix)]
fn file_id(metadata: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn file_id(_metadata: &Metadata) -> Option<(u64, u64)> {
    None
}

/// True when two looks at a file saw the same file in the same state: identity, size and
/// modification time (not the change time, which making a hard link to it moves).
fn same_state(a: &Metadata, b: &Metadata) -> bool {
    file_id(a) == file_id(b) && a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// True when `path` (not followed if a link) is still in the state `before` saw.
fn unchanged(path: &Path, before: &Metadata) -> bool {
    fs::symlink_metadata(path).is_ok_and(|now| same_state(&now, before))
}

/// Takes back one step; the reason when it cannot be, safely.
fn undo_step(step: &Step, folder: Option<&Path>) -> Result<(), String> {
    match step {
        Step::Move { from, to } => move_back(from, to, folder),
        Step::Link {
            path,
            keeper,
            link,
            hash,
            modified,
        } => restore_copy(path, keeper, *link, hash, *modified),
    }
}

/// Moves a file back from `to` to `from`, then removes the folders under the action's
/// `folder` that this emptied.
fn move_back(from: &Path, to: &Path, folder: Option<&Path>) -> Result<(), String> {
    if is_free(to) {
        return Err(format!("{} is no longer there", to.display()));
    }
    if !is_free(from) {
        return Err("its path is occupied again: not overwritten".to_owned());
    }
    if let Some(parent) = from.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    move_file(to, from).map_err(|e| format!("cannot move {} back: {e}", to.display()))?;
    if let (Some(folder), Some(parent)) = (folder, to.parent()) {
        remove_empty_folders(parent, folder);
    }
    Ok(())
}

/// Removes `dir` and its parents while they are empty, up to `folder` (kept), so that undo
/// leaves no empty tree in the move-to or trash folder.
fn remove_empty_folders(dir: &Path, folder: &Path) {
    for dir in dir
        .ancestors()
        .take_while(|d| *d != folder && d.starts_with(folder))
    {
        // An error means it is not empty (or not ours to remove): the ones above are not.
        if fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

/// Replaces the link a step made with an independent copy of the bytes it stands for:
/// copied through the link into a temporary file beside it, checked against the journal's
/// BLAKE3, and renamed over the link, so that the path holds the link or the whole copy.
/// Reading through the link (rather than the keeper) still works for a hard link whose
/// keeper has been deleted since; once its keeper is gone a hard link is a file like any
/// other, and the hash check is what makes replacing it safe.
fn restore_copy(
    path: &Path,
    keeper: &Path,
    link: LinkKind,
    hash: &str,
    modified: Option<SystemTime>,
) -> Result<(), String> {
    let before = fs::symlink_metadata(path).map_err(|e| unreadable(&e))?;
    let ours = match link {
        LinkKind::Hard => before.is_file(),
        LinkKind::Symbolic => {
            before.file_type().is_symlink() && fs::read_link(path).is_ok_and(|to| to == keeper)
        }
    };
    if !ours {
        return Err(format!(
            "no longer the {link} link to {} lookalike made: left alone",
            keeper.display()
        ));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".lookalike-restore-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    let copied = copy_contents(path, temp.as_file_mut(), modified)
        .and_then(|()| hash_file(temp.path()))
        .map_err(|e| format!("cannot copy its bytes: {e}"))?;
    if copied.to_hex().as_str() != hash {
        return Err("its bytes are not those it had when linked (BLAKE3): left alone".to_owned());
    }
    if !unchanged(path, &before) {
        return Err("it changed while being restored: left alone".to_owned());
    }
    temp.persist(path)
        .map_err(|e| format!("cannot replace the link: {}", e.error))?;
    Ok(())
}

/// A journal line that is not a step.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Meta {
    /// The first line.
    Begin {
        version: u32,
        action: Action,
        /// Seconds since 1970.
        started: u64,
    },
    /// Step number `step` (from 1) was undone.
    Undo { step: usize },
}

/// Any journal line: both kinds carry an `op`, whose value tells which.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Record {
    Step(Step),
    Meta(Meta),
}

/// A journal open for writing: each record a line, on disk when [`JournalWriter::write`]
/// returns.
struct JournalWriter {
    file: File,
    path: PathBuf,
}

impl JournalWriter {
    /// Starts a new journal with its `begin` line. The journal's name is on disk too before
    /// this returns, so that no step is done that a crash could leave unrecorded.
    fn create(path: &Path, action: &Action) -> Result<JournalWriter, ActionError> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| ActionError::journal(path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => ActionError::JournalExists(path.to_path_buf()),
                _ => ActionError::journal(path, e),
            })?;
        let mut journal = JournalWriter {
            file,
            path: path.to_path_buf(),
        };
        journal.write(&Meta::Begin {
            version: JOURNAL_VERSION,
            action: action.clone(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })?;
        sync_folder(parent).map_err(|e| ActionError::journal(path, e))?;
        Ok(journal)
    }

    fn append(path: &Path) -> Result<JournalWriter, ActionError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| ActionError::journal(path, e))?;
        Ok(JournalWriter {
            file,
            path: path.to_path_buf(),
        })
    }

    fn write(&mut self, record: &impl Serialize) -> Result<(), ActionError> {
        let mut line =
            serde_json::to_vec(record).map_err(|e| ActionError::journal(&self.path, e.into()))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| ActionError::journal(&self.path, e))
    }
}

/// Flushes a folder's entries (a new file's name) to disk.
#[cfg(unix)]
fn sync_folder(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Folders cannot be opened to be flushed here; their entries are the file system's business.
#[cfg(not(unix))]
fn sync_folder(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// A journal read back: its action, its steps in order, and which of them were undone.
struct Journal {
    action: Action,
    steps: Vec<Step>,
    undone: Vec<bool>,
}

fn read_journal(path: &Path) -> Result<Journal, ActionError> {
    let text = fs::read_to_string(path).map_err(|e| ActionError::journal(path, e))?;
    let bad = |line: usize, reason: String| ActionError::BadJournal {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut lines = text.split_inclusive('\n').zip(1..);
    let action = match lines.next().map(|(line, _)| serde_json::from_str(line)) {
        Some(Ok(Record::Meta(Meta::Begin {
            version: JOURNAL_VERSION,
            action,
            ..
        }))) => action,
        Some(Ok(Record::Meta(Meta::Begin { version, .. }))) => {
            let reason = format!("version {version}: this lookalike reads {JOURNAL_VERSION}");
            return Err(bad(1, reason));
        }
        _ => return Err(bad(1, "no begin line: not a lookalike journal".to_owned())),
    };
    let mut journal = Journal {
        action,
        steps: Vec::new(),
        undone: Vec::new(),
    };
    for (line, number) in lines {
        match serde_json::from_str(line) {
            Ok(Record::Step(step)) => {
                journal.steps.push(step);
                journal.undone.push(false);
            }
            Ok(Record::Meta(Meta::Undo { step })) => {
                match step.checked_sub(1).and_then(|i| journal.undone.get_mut(i)) {
                    Some(undone) => *undone = true,
                    None => return Err(bad(number, format!("undo of a step {step} it lacks"))),
                }
            }
            Ok(Record::Meta(Meta::Begin { .. })) => {
                return Err(bad(number, "a second begin line".to_owned()));
            }
            // A last line cut short by a crash while being written: its step was done, but
            // what it did is lost with the line's end.
            Err(_) if !line.ends_with('\n') => {
                tracing::warn!(journal = %path.display(), line = number, "the journal's last line is incomplete: ignored");
            }
            Err(e) => return Err(bad(number, format!("not a journal record ({e})"))),
        }
    }
    Ok(journal)
}
