//! From pairs to groups: exact copies (identical bytes) and confirmed pairs joined into
//! connected groups, "not duplicates" decisions cutting their links, and a keeper chosen
//! in each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::engine::Engine;
use crate::index::{ordered_pair, ContentHash, ImageFacts, ItemId};
use crate::Result;

/// How alike a group's members are.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Identical bytes.
    Exact,
    /// The same photo in another rendition (size, crop, compression, tones, mirror).
    Near,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Exact => "exact",
            Tier::Near => "near",
        }
    }
}

/// One image of a group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Member {
    pub id: ItemId,
    pub path: String,
    pub width: u32,
    pub height: u32,
    /// File size.
    pub bytes: u64,
    /// Modification time, unix seconds.
    pub modified: i64,
    /// The file name's extension, lower case ("" without one).
    pub format: String,
    /// The one to keep.
    pub keeper: bool,
    /// Under a reference folder: never dropped.
    pub reference: bool,
    /// Exact when its bytes are the keeper's, near otherwise (the keeper itself: exact).
    pub tier: Tier,
    #[serde(skip)]
    #[schema(ignore)]
    pub content_hash: Option<ContentHash>,
}

impl Member {
    fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Whether this one is dropped when the group is tidied.
    pub fn is_dropped(&self) -> bool {
        !self.keeper && !self.reference
    }

    /// "keep", "reference" (kept as well) or "drop".
    pub fn role(&self) -> &'static str {
        if self.keeper {
            "keep"
        } else if self.reference {
            "reference"
        } else {
            "drop"
        }
    }
}

/// Images that are one photo; `members[0]` is the keeper, the rest follow in keeper order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Group {
    /// Exact when all members have identical bytes.
    pub tier: Tier,
    pub members: Vec<Member>,
}

impl Group {
    pub fn keeper(&self) -> &Member {
        &self.members[0]
    }
}

/// Which groups to show.
#[derive(Debug, Clone, Default)]
pub struct GroupOptions {
    /// Only images under these folders (all when empty).
    pub under: Vec<PathBuf>,
    /// Images under these folders are never dropped, and one of them is the keeper when a
    /// group has any.
    pub references: Vec<PathBuf>,
}

/// The groups of the duplicates the catalog knows (exact copies and the pairs scans
/// confirmed), the largest first.
pub fn groups(engine: &Engine, options: &GroupOptions) -> Result<Vec<Group>> {
    let index = engine.shared_index().read()?;
    let mut links: Vec<(ItemId, ItemId)> = Vec::new();
    for set in index.exact_copies()? {
        links.extend(set.windows(2).map(|w| (w[0], w[1])));
    }
    links.extend(index.duplicate_pairs()?.into_iter().map(|p| (p.a, p.b)));
    let ids: Vec<ItemId> = {
        let mut ids: Vec<ItemId> = links.iter().flat_map(|&(a, b)| [a, b]).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let facts: HashMap<ItemId, ImageFacts> = index
        .image_facts(&ids)?
        .into_iter()
        .map(|f| (f.record.id, f))
        .collect();
    let distinct = index.distinct_pairs()?;
    drop(index);

    let under: Vec<PathBuf> = options.under.iter().map(|p| absolute(p)).collect();
    let references: Vec<PathBuf> = options.references.iter().map(|p| absolute(p)).collect();
    let wanted = |id: &ItemId| {
        facts.get(id).is_some_and(|f| {
            under.is_empty()
                || under
                    .iter()
                    .any(|u| Path::new(&f.record.path).starts_with(u))
        })
    };
    let is_distinct = |a: &Member, b: &Member| match (a.content_hash, b.content_hash) {
        (Some(x), Some(y)) => x != y && distinct.contains(&ordered_pair(x, y)),
        _ => false,
    };
    let members: HashMap<ItemId, Member> = facts
        .values()
        .filter(|f| wanted(&f.record.id))
        .map(|f| (f.record.id, member(f, &references)))
        .collect();
    let mut sets = DisjointSets::default();
    let mut linked: HashMap<ItemId, Vec<ItemId>> = HashMap::new();
    for (a, b) in links {
        let (Some(ma), Some(mb)) = (members.get(&a), members.get(&b)) else {
            continue;
        };
        if !is_distinct(ma, mb) {
            sets.join(a, b);
            linked.entry(a).or_default().push(b);
            linked.entry(b).or_default().push(a);
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    for ids in sets.sets() {
        let mut set: Vec<Member> = ids.iter().map(|id| members[id].clone()).collect();
        set.sort_by(keeper_order);
        groups.extend(
            split_distinct(set, &linked, &is_distinct)
                .into_iter()
                .filter(|g| g.len() > 1)
                .map(finish),
        );
    }
    groups.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then_with(|| a.keeper().path.cmp(&b.keeper().path))
    });
    Ok(groups)
}

/// Splits a connected set (in keeper order) where "not duplicates" decisions forbid two of
/// its members from sharing a group although others link them. Members are taken in
/// breadth-first order from the keeper (so each is linked to one taken before it), and each
/// joins the first part it is linked to and has no decision against, or starts a part of
/// its own. So a photo declared not a duplicate of the keeper leaves the group even when it
/// looks like another member (which, being one photo with the keeper, it then is not either).
fn split_distinct(
    set: Vec<Member>,
    linked: &HashMap<ItemId, Vec<ItemId>>,
    is_distinct: &impl Fn(&Member, &Member) -> bool,
) -> Vec<Vec<Member>> {
    let conflicted = set
        .iter()
        .enumerate()
        .any(|(i, a)| set[i + 1..].iter().any(|b| is_distinct(a, b)));
    if !conflicted {
        return vec![set];
    }
    let mut parts: Vec<Vec<Member>> = Vec::new();
    for m in breadth_first(set, linked) {
        let neighbours = linked.get(&m.id).map_or(&[][..], Vec::as_slice);
        let home = parts.iter().position(|part| {
            part.iter().any(|p| neighbours.contains(&p.id))
                && !part.iter().any(|p| is_distinct(p, &m))
        });
        match home {
            Some(i) => parts[i].push(m),
            None => parts.push(vec![m]),
        }
    }
    for part in &mut parts {
        part.sort_by(keeper_order);
    }
    parts
}

/// A connected set's members in breadth-first order over their links, from the first, each
/// node's neighbours taken in the set's order.
fn breadth_first(set: Vec<Member>, linked: &HashMap<ItemId, Vec<ItemId>>) -> Vec<Member> {
    let position: HashMap<ItemId, usize> = set.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
    let mut slots: Vec<Option<Member>> = set.into_iter().map(Some).collect();
    let mut order = Vec::with_capacity(slots.len());
    let mut queue = std::collections::VecDeque::from([0]);
    while let Some(i) = queue.pop_front() {
        let Some(m) = slots[i].take() else { continue };
        let mut next: Vec<usize> = linked
            .get(&m.id)
            .into_iter()
            .flatten()
            .filter_map(|id| position.get(id).copied())
            .filter(|&j| slots[j].is_some())
            .collect();
        next.sort_unstable();
        queue.extend(next);
        order.push(m);
    }
    // Unreachable members (none in a connected set) keep their place at the end.
    order.extend(slots.into_iter().flatten());
    order
}

fn member(facts: &ImageFacts, references: &[PathBuf]) -> Member {
    let record = &facts.record;
    let path = Path::new(&record.path);
    Member {
        id: record.id,
        path: record.path.clone(),
        width: record.width,
        height: record.height,
        bytes: record.stamp.size,
        modified: record.stamp.mtime_ns.div_euclid(1_000_000_000),
        format: path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default(),
        keeper: false,
        reference: references.iter().any(|r| path.starts_with(r)),
        tier: Tier::Near,
        content_hash: facts.content_hash,
    }
}

/// The group of `members`, the first being the keeper: each one's tier set against it.
fn finish(mut members: Vec<Member>) -> Group {
    let keeper_hash = members[0].content_hash;
    for (i, m) in members.iter_mut().enumerate() {
        m.keeper = i == 0;
        m.tier = if i == 0 || (m.content_hash.is_some() && m.content_hash == keeper_hash) {
            Tier::Exact
        } else {
            Tier::Near
        };
    }
    let tier = if members.iter().all(|m| m.tier == Tier::Exact) {
        Tier::Exact
    } else {
        Tier::Near
    };
    Group { tier, members }
}

/// The keeper rule, best first: a file under a reference folder (those are kept anyway);
/// then the most pixels (the rendition with the most detail); then the most bytes (at equal
/// pixels, the less recompressed one: a recompressed copy is smaller than its source); then
/// the oldest (the original predates its copies); then the shortest path, then path order
/// (a stable, explainable tie-break).
pub fn keeper_order(a: &Member, b: &Member) -> std::cmp::Ordering {
    b.reference
        .cmp(&a.reference)
        .then_with(|| b.pixels().cmp(&a.pixels()))
        .then_with(|| b.bytes.cmp(&a.bytes))
        .then_with(|| a.modified.cmp(&b.modified))
        .then_with(|| a.path.len().cmp(&b.path.len()))
        .then_with(|| a.path.cmp(&b.path))
}

/// A group with `keeper` as its keeper (a person's choice): the members re-ordered and their
/// tiers set against it. None when `keeper` is not a member.
pub fn with_keeper(group: &Group, keeper: ItemId) -> Option<Group> {
    let mut members = group.members.clone();
    let at = members.iter().position(|m| m.id == keeper)?;
    let chosen = members.remove(at);
    members.sort_by(keeper_order);
    members.insert(0, chosen);
    Some(finish(members))
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Union-find over item ids (path halving, union by size).
#[derive(Default)]
struct DisjointSets {
    parent: HashMap<ItemId, ItemId>,
    size: HashMap<ItemId, usize>,
}

impl DisjointSets {
    fn root(&mut self, mut x: ItemId) -> ItemId {
        self.parent.entry(x).or_insert(x);
        while self.parent[&x] != x {
            let grand = self.parent[&self.parent[&x]];
            self.parent.insert(x, grand);
            x = grand;
        }
        x
    }

    fn join(&mut self, a: ItemId, b: ItemId) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra == rb {
            return;
        }
        let (sa, sb) = (
            *self.size.get(&ra).unwrap_or(&1),
            *self.size.get(&rb).unwrap_or(&1),
        );
        let (big, small) = if sa >= sb { (ra, rb) } else { (rb, ra) };
        self.parent.insert(small, big);
        self.size.insert(big, sa + sb);
    }

    /// The sets, each sorted, in order of their smallest id.
    fn sets(mut self) -> Vec<Vec<ItemId>> {
        let ids: Vec<ItemId> = self.parent.keys().copied().collect();
        let mut by_root: HashMap<ItemId, Vec<ItemId>> = HashMap::new();
        for id in ids {
            let root = self.root(id);
            by_root.entry(root).or_default().push(id);
        }
        let mut sets: Vec<Vec<ItemId>> = by_root.into_values().collect();
        for set in &mut sets {
            set.sort_unstable();
        }
        sets.sort_by_key(|s| s[0]);
        sets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: ItemId, pixels: u32, hash: u8) -> Member {
        Member {
            id,
            path: format!("/p/{id}.jpg"),
            width: pixels,
            height: 1,
            bytes: 1000,
            modified: 0,
            format: "jpg".into(),
            keeper: false,
            reference: false,
            tier: Tier::Near,
            content_hash: Some(ContentHash([hash; 32])),
        }
    }

    /// Keeper 1 links only to 3, and 3 to 2: a chain whose members come in another order
    /// than their links.
    fn chain() -> (Vec<Member>, HashMap<ItemId, Vec<ItemId>>) {
        let set = vec![member(1, 300, 1), member(2, 200, 2), member(3, 100, 3)];
        let linked = HashMap::from([(1, vec![3]), (3, vec![1, 2]), (2, vec![3])]);
        (set, linked)
    }

    fn ids(parts: &[Vec<Member>]) -> Vec<Vec<ItemId>> {
        parts
            .iter()
            .map(|p| p.iter().map(|m| m.id).collect())
            .collect()
    }

    #[test]
    fn a_connected_set_without_decisions_stays_whole() {
        let (set, linked) = chain();
        let parts = split_distinct(set, &linked, &|_: &Member, _: &Member| false);
        assert_eq!(ids(&parts), vec![vec![1, 2, 3]]);
    }

    #[test]
    fn a_decision_against_the_keeper_takes_a_member_out() {
        let (set, linked) = chain();
        let apart = |a: &Member, b: &Member| {
            let mut pair = [a.id, b.id];
            pair.sort_unstable();
            pair == [1, 2]
        };
        let parts = split_distinct(set, &linked, &apart);
        assert_eq!(ids(&parts), vec![vec![1, 3], vec![2]]);
    }

    #[test]
    fn the_keeper_has_the_most_pixels_then_bytes_then_age() {
        let mut a = member(1, 100, 1);
        let mut b = member(2, 100, 2);
        b.bytes = 2000;
        assert_eq!(
            keeper_order(&b, &a),
            std::cmp::Ordering::Less,
            "more bytes first"
        );
        b.bytes = a.bytes;
        a.modified = 10;
        assert_eq!(
            keeper_order(&b, &a),
            std::cmp::Ordering::Less,
            "older first"
        );
        a.reference = true;
        assert_eq!(
            keeper_order(&a, &b),
            std::cmp::Ordering::Less,
            "reference first"
        );
    }
}
