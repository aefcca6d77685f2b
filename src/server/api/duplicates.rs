//! Near-duplicate groups over HTTP: list them (after an incremental scan), record that a group
//! is not one photo, and tidy a group up (move, link or delete all but its keeper).
//!
//! Files the server moves go under the index folder: `DB/moved/` (move), `DB/trash/`
//! (delete, the trash `lookalike duplicates --empty-trash` empties), each request's journal in
//! `DB/journals/duplicates-<unix ms>.jsonl`, which `lookalike duplicates --undo JOURNAL` takes
//! back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{file_name, ApiJson, ApiQuery};
use crate::duplicates::actions::{Action, DropFile, LinkKind, Plan, Step};
use crate::duplicates::{self, Group, GroupOptions, Member, ScanOptions, ScanReport, Tier};
use crate::engine::Engine;
use crate::index::{IndexError, ItemId};
use crate::server::auth::WriteAccess;
use crate::server::error::{ApiError, ErrorBody};
use crate::server::state::AppState;

/// Where, under the index folder, `move` puts the files it drops.
const MOVED_DIR: &str = "moved";

#[derive(Deserialize, IntoParams)]
#[serde(from = "Vec<(String, String)>")]
#[into_params(parameter_in = Query)]
pub struct DuplicatesQuery {
    /// Only images under these server-side folders (repeat the parameter for several);
    /// default: every indexed image.
    #[param(required = false, explode = true, example = json!(["/srv/photos/2024"]))]
    under: Vec<String>,
}

/// Query strings are pairs; `under` may come several times (which a plain struct would refuse).
impl From<Vec<(String, String)>> for DuplicatesQuery {
    fn from(pairs: Vec<(String, String)>) -> Self {
        DuplicatesQuery {
            under: pairs
                .into_iter()
                .filter(|(key, value)| key == "under" && !value.is_empty())
                .map(|(_, value)| value)
                .collect(),
        }
    }
}

/// One image of a group, with the URLs the page shows it by.
#[derive(Serialize, ToSchema)]
pub struct DuplicateMember {
    #[serde(flatten)]
    member: Member,
    /// File name, for display.
    name: String,
    /// URL of a JPEG thumbnail.
    thumbnail: String,
    /// URL of the original file.
    original: String,
}

impl From<Member> for DuplicateMember {
    fn from(member: Member) -> Self {
        DuplicateMember {
            name: file_name(&member.path),
            thumbnail: format!("/api/items/{}/thumbnail", member.id),
            original: format!("/api/items/{}/original", member.id),
            member,
        }
    }
}

/// Images that are one photo.
#[derive(Serialize, ToSchema)]
pub struct DuplicateGroup {
    /// `exact` when every member has the same bytes.
    tier: Tier,
    /// The keeper first (most pixels, then most bytes, then oldest), then the others.
    members: Vec<DuplicateMember>,
}

impl From<Group> for DuplicateGroup {
    fn from(group: Group) -> Self {
        DuplicateGroup {
            tier: group.tier,
            members: group.members.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DuplicatesResponse {
    /// The scan run for this answer; null on a read-only server (started without a token),
    /// which does not scan: its groups are the exact copies and the pairs that earlier scans
    /// (`lookalike duplicates`, or a server with a token) recorded.
    scan: Option<ScanReport>,
    /// The largest first.
    groups: Vec<DuplicateGroup>,
}

/// Groups of duplicate images: exact copies and the same photo resized, recompressed,
/// cropped a little, mirrored or turned grey. A server with a token scans the images added
/// since the last scan first (the first scan compares every image with its nearest
/// neighbours: it takes a while on a large collection; later ones only look at new images).
#[utoipa::path(
    get,
    path = "/api/duplicates",
    tag = "duplicates",
    params(DuplicatesQuery),
    responses(
        (status = 200, description = "The groups, largest first, each keeper first",
         body = DuplicatesResponse),
    )
)]
pub async fn list_duplicates(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<DuplicatesQuery>,
) -> Result<Json<DuplicatesResponse>, ApiError> {
    let options = GroupOptions {
        under: query.under.iter().map(PathBuf::from).collect(),
        references: state.config().references.clone(),
    };
    // A server without a token is read-only, and `lookalike serve` opens its index so: no
    // scan there (it would compare a whole round of images before failing to record them).
    let scans = state.config().token.is_some();
    // One scan at a time: a second request waits, then finds nothing new to scan.
    let _scanning = state.duplicates_job().lock().await;
    let (scan, groups) = state
        .blocking(move |engine| {
            let scan = match scans.then(|| duplicates::scan(engine, &ScanOptions::default())) {
                Some(Ok(report)) => Some(report),
                None | Some(Err(crate::Error::Index(IndexError::ReadOnly))) => None,
                Some(Err(e)) => return Err(e),
            };
            Ok((scan, duplicates::groups(engine, &options)?))
        })
        .await?;
    Ok(Json(DuplicatesResponse {
        scan,
        groups: groups.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct DistinctRequest {
    /// Two or more item ids: no two of these images are duplicates of each other.
    #[schema(example = json!([17, 42]))]
    ids: Vec<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct DistinctResponse {
    /// Pairs of files recorded as not duplicates that were not recorded yet.
    new_pairs: usize,
}

/// Record that images are not duplicates of each other (a person's decision, kept by the
/// files' contents: it outlives re-indexing). Their links are cut: a group of them
/// disappears. Identical files (same bytes) stay grouped: they are copies of one file.
#[utoipa::path(
    post,
    path = "/api/duplicates/distinct",
    tag = "duplicates",
    security(("bearer" = [])),
    request_body = DistinctRequest,
    responses(
        (status = 200, description = "Recorded", body = DistinctResponse),
        (status = 400, description = "Fewer than two ids, or bad JSON", body = ErrorBody),
        (status = 422, description = "JSON of the wrong shape", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this client lately; Retry-After says for how long", body = ErrorBody),
        (status = 403, description = "Writes disabled (no token configured), or sent by another site's page", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "The images are identical files: nothing to record",
         body = ErrorBody),
    )
)]
pub async fn mark_not_duplicates(
    _access: WriteAccess,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<DistinctRequest>,
) -> Result<Json<DistinctResponse>, ApiError> {
    let mut ids = request.ids;
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 {
        return Err(ApiError::bad_request(
            "too_few_ids",
            "give two or more different item ids",
        ));
    }
    let new_pairs = state
        .blocking(move |engine| {
            let different = {
                let index = engine.shared_index().read()?;
                let facts = index.image_facts(&ids)?;
                if let Some(missing) = ids
                    .iter()
                    .find(|id| !facts.iter().any(|f| f.record.id == **id))
                {
                    return Err(crate::Error::UnknownItem(*missing));
                }
                facts
                    .iter()
                    .filter_map(|f| f.content_hash)
                    .collect::<HashSet<_>>()
                    .len()
            };
            if different < 2 {
                return Ok(None);
            }
            duplicates::mark_distinct(engine, &ids).map(Some)
        })
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "identical_files",
                "these images are identical files (the same bytes): copies of one file cannot \
                 be marked as not duplicates",
            )
        })?;
    Ok(Json(DistinctResponse { new_pairs }))
}

/// What to do with the files a group drops.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ApplyAction {
    /// Move them under the index folder's `moved/`, at their absolute path below it.
    Move,
    /// Replace each by a hard link to the keeper (only files with the keeper's bytes). The
    /// files stay indexed, so the group stays listed.
    Link,
    /// Move them into the index folder's `trash/` (undo brings them back; `lookalike
    /// duplicates --empty-trash` deletes them).
    Delete,
}

#[derive(Deserialize, ToSchema)]
pub struct ApplyRequest {
    /// The item to keep: a member of a current group.
    keeper: i64,
    /// Items of the same group to drop (not the keeper).
    drop: Vec<i64>,
    action: ApplyAction,
}

/// A step done to one file.
#[derive(Serialize, ToSchema)]
pub struct StepDone {
    /// `move` (a delete is a move into the trash) or `link`.
    op: &'static str,
    /// The dropped file's path (where undo puts it back).
    path: String,
    /// For a move: where the file is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    /// For a link: the keeper it links to.
    #[serde(skip_serializing_if = "Option::is_none")]
    keeper: Option<String>,
    /// For a link: `hard`, or `symbolic` where a hard link cannot be made.
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'static str>,
}

impl From<&Step> for StepDone {
    fn from(step: &Step) -> Self {
        let text = |p: &Path| p.display().to_string();
        match step {
            Step::Move { from, to } => StepDone {
                op: "move",
                path: text(from),
                to: Some(text(to)),
                keeper: None,
                link: None,
            },
            Step::Link {
                path, keeper, link, ..
            } => StepDone {
                op: "link",
                path: text(path),
                to: None,
                keeper: Some(text(keeper)),
                link: Some(match link {
                    LinkKind::Hard => "hard",
                    LinkKind::Symbolic => "symbolic",
                }),
            },
        }
    }
}

/// A file left alone, and why.
#[derive(Serialize, ToSchema)]
pub struct FileSkipped {
    path: String,
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApplyResponse {
    done: Vec<StepDone>,
    skipped: Vec<FileSkipped>,
    /// The journal of the steps, on the server: `lookalike duplicates --undo JOURNAL` takes
    /// them back.
    journal: String,
    /// Items removed from the index (the files that moved away).
    removed: usize,
}

/// Tidy up a group: move, link or delete the files of `drop`, keeping `keeper`'s. Moves go
/// to `DB/moved/`, deletes to `DB/trash/` (DB: the index folder), each step journaled in a new
/// `DB/journals/duplicates-<unix ms>.jsonl`; the files that moved away leave the index. A file
/// that is not as planned (gone, changed, under a reference folder) is skipped, with the
/// reason; the others are still done.
#[utoipa::path(
    post,
    path = "/api/duplicates/apply",
    tag = "duplicates",
    security(("bearer" = [])),
    request_body = ApplyRequest,
    responses(
        (status = 200, description = "What was done and skipped", body = ApplyResponse),
        (status = 400, description = "Nothing to drop, the keeper among the drops, or bad JSON",
         body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 429, description = "Too many wrong tokens from this client lately; Retry-After says for how long", body = ErrorBody),
        (status = 403, description = "Writes disabled (no token configured), or sent by another site's page", body = ErrorBody),
        (status = 404, description = "No such item", body = ErrorBody),
        (status = 409, description = "The keeper is in no group, or a dropped item is not in \
                                      the keeper's group", body = ErrorBody),
        (status = 422, description = "An unknown action, or JSON of the wrong shape",
         body = ErrorBody),
    )
)]
pub async fn apply_duplicates(
    _access: WriteAccess,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ApplyRequest>,
) -> Result<Json<ApplyResponse>, ApiError> {
    let keeper = request.keeper;
    let mut drop = request.drop;
    drop.sort_unstable();
    drop.dedup();
    if drop.is_empty() {
        return Err(ApiError::bad_request(
            "nothing_to_drop",
            "drop must name one or more items of the keeper's group",
        ));
    }
    if drop.contains(&keeper) {
        return Err(ApiError::bad_request(
            "keeper_dropped",
            "the keeper cannot be among the items to drop",
        ));
    }
    let references = state.config().references.clone();
    let _busy = state.duplicates_job().lock().await;
    let (outcome, dropped, removed) = state
        .blocking(move |engine| {
            let options = GroupOptions {
                under: Vec::new(),
                references: references.clone(),
            };
            let groups = duplicates::groups(engine, &options)?;
            let group = match group_of(engine, &groups, keeper, &drop)? {
                Ok(group) => group,
                Err(refused) => return Ok(Err(refused)),
            };
            let db = db_dir(engine)?;
            let action = match request.action {
                ApplyAction::Move => Action::MoveTo(db.join(MOVED_DIR)),
                ApplyAction::Link => Action::Link,
                ApplyAction::Delete => Action::Delete {
                    trash: db.join(duplicates::TRASH_DIR),
                },
            };
            let kept = PathBuf::from(&group.keeper().path);
            let dropped: Vec<(ItemId, PathBuf)> = group
                .members
                .iter()
                .filter(|m| drop.contains(&m.id))
                .map(|m| (m.id, PathBuf::from(&m.path)))
                .collect();
            let plan = Plan {
                action,
                drops: dropped
                    .iter()
                    .map(|(_, path)| DropFile {
                        path: path.clone(),
                        keeper: kept.clone(),
                    })
                    .collect(),
                references,
            };
            let journal = duplicates::new_journal(&db);
            let (outcome, removed) = duplicates::apply(engine, &plan, &journal)?;
            Ok(Ok((outcome, dropped, removed)))
        })
        .await??;
    forget_thumbnails(&state, &dropped);
    Ok(Json(ApplyResponse {
        done: outcome.done.iter().map(StepDone::from).collect(),
        skipped: outcome
            .skipped
            .iter()
            .map(|s| FileSkipped {
                path: s.path.display().to_string(),
                reason: s.reason.clone(),
            })
            .collect(),
        journal: outcome.journal.display().to_string(),
        removed,
    }))
}

/// The group of `keeper` with it as the keeper, if every one of `drop` is in it too; the
/// answer to give otherwise: 404 for an unknown item, 409 for one in no group or another.
fn group_of(
    engine: &Engine,
    groups: &[Group],
    keeper: ItemId,
    drop: &[ItemId],
) -> crate::Result<Result<Group, ApiError>> {
    let Some(group) = groups
        .iter()
        .find(|g| g.members.iter().any(|m| m.id == keeper))
    else {
        return Ok(Err(match engine.item(keeper)? {
            None => crate::Error::UnknownItem(keeper).into(),
            Some(_) => ApiError::new(
                StatusCode::CONFLICT,
                "not_in_a_group",
                format!("item {keeper} is in no duplicate group (any more)"),
            ),
        }));
    };
    for &id in drop {
        if !group.members.iter().any(|m| m.id == id) {
            return Ok(Err(match engine.item(id)? {
                None => crate::Error::UnknownItem(id).into(),
                Some(_) => ApiError::new(
                    StatusCode::CONFLICT,
                    "not_in_group",
                    format!("item {id} is not in the duplicate group of item {keeper}"),
                ),
            }));
        }
    }
    Ok(duplicates::with_keeper(group, keeper)
        .ok_or_else(|| ApiError::internal("the keeper left its group")))
}

/// The index folder, absolute: the actions' folders and journals live under it.
fn db_dir(engine: &Engine) -> crate::Result<PathBuf> {
    let dir = engine.shared_index().read()?.dir().to_path_buf();
    Ok(std::path::absolute(&dir).unwrap_or(dir))
}

/// `dir/duplicates-<unix ms>.jsonl` (the name `lookalike duplicates` gives its journals), with
/// `-2`, `-3`... where a journal of the same millisecond exists: an existing journal is never
/// written over.
/// Thumbnails are cached by item id: those of the dropped items go, so that none outlives its
/// item or shows a file that became a link.
fn forget_thumbnails(state: &AppState, dropped: &[(ItemId, PathBuf)]) {
    for (id, _) in dropped {
        state.thumbs().remove(*id);
    }
}
