//! Near-duplicate groups: the same photo saved twice, resized, recompressed, cropped a little,
//! mirrored or turned grey, found among the indexed images and tidied up.
//!
//! Two tiers: exact copies (identical bytes, from the catalog's content hashes) and near
//! duplicates (pairs that [`scan`] finds among each image's nearest neighbours and that
//! [`sameness`] confirms are one photo). [`groups`] joins both into groups and picks a keeper;
//! [`actions`] moves, links or deletes the others, with a journal that undoes it. People's
//! "not duplicates" decisions are kept in the catalog by content hash, so they outlive
//! re-indexing, and cut the links between those images.

pub mod actions;
pub mod groups;
pub mod sameness;
pub mod scan;

pub use groups::{groups, with_keeper, Group, GroupOptions, Member, Tier};
pub use scan::{scan, ScanOptions, ScanReport};

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::Engine;
use crate::index::ItemId;
use crate::{Error, Result};

use actions::{Outcome, Plan, Step};

/// Where, under the index folder, `--delete` and the page's delete put files (the trash that
/// `--empty-trash` empties).
pub const TRASH_DIR: &str = "trash";
/// Where, under the index folder, the journals of actions are kept unless told otherwise.
pub const JOURNALS_DIR: &str = "journals";

/// A journal path not taken yet under the index folder `db`: `journals/duplicates-<unix
/// ms>.jsonl`, with `-2`, `-3`... when one of that millisecond exists.
pub fn new_journal(db: &Path) -> PathBuf {
    let dir = db.join(JOURNALS_DIR);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut journal = dir.join(format!("duplicates-{millis}.jsonl"));
    let mut n = 1;
    while journal.exists() {
        n += 1;
        journal = dir.join(format!("duplicates-{millis}-{n}.jsonl"));
    }
    journal
}

/// Applies `plan` (see [`actions::apply`]), its journal at `journal`, then makes the index
/// forget the files it moved away; returns what was done and how many files were forgotten.
pub fn apply(engine: &Engine, plan: &Plan, journal: &Path) -> Result<(Outcome, usize)> {
    let outcome = actions::apply(plan, journal)?;
    let moved: Vec<PathBuf> = outcome
        .done
        .iter()
        .filter(|step| matches!(step, Step::Move { .. }))
        .map(|step| step.path().to_path_buf())
        .collect();
    let removed = engine.remove_paths(&moved)?;
    Ok((outcome, removed))
}

/// Records that no two of the images `ids` are duplicates of each other (by their files'
/// content hashes); returns how many pairs were new.
pub fn mark_distinct(engine: &Engine, ids: &[ItemId]) -> Result<usize> {
    let mut index = engine.shared_index().write()?;
    let facts = index.image_facts(ids)?;
    if let Some(missing) = ids
        .iter()
        .find(|id| !facts.iter().any(|f| f.record.id == **id))
    {
        return Err(Error::UnknownItem(*missing));
    }
    let hashes: Vec<_> = facts.iter().filter_map(|f| f.content_hash).collect();
    Ok(index.mark_distinct(&hashes)?)
}
