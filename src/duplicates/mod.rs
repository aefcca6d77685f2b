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

use crate::engine::Engine;
use crate::index::ItemId;
use crate::{Error, Result};

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
