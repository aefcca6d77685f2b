//! The file actions of `lookalike duplicates` on real photos: move-to, link and delete, their
//! journal and undo, and the files they must never touch.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lookalike::duplicates::actions::{
    apply, empty_trash, undo, Action, ActionError, DropFile, LinkKind, Plan, Step, TRASH_MARKER,
};

/// A temporary folder and its canonical path (under which the steps report their paths).
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let root = dir
        .path()
        .canonicalize()
        .expect("canonical temporary folder");
    (dir, root)
}

/// A copy of a real test photo at `to` (folders created).
fn copy_photo(photo: &str, to: &Path) -> PathBuf {
    fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
    fs::copy(common::photo(photo), to).expect("copy photo");
    to.to_path_buf()
}

fn hash(path: &Path) -> blake3::Hash {
    blake3::hash(&fs::read(path).expect("read file"))
}

fn drop_of(path: &Path, keeper: &Path) -> DropFile {
    DropFile {
        path: path.to_path_buf(),
        keeper: keeper.to_path_buf(),
    }
}

fn plan(action: Action, drops: Vec<DropFile>, references: Vec<PathBuf>) -> Plan {
    Plan {
        action,
        drops,
        references,
    }
}

/// The files (not folders) under `dir`, the trash marker left out.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|entry| entry.expect("walk"))
        .filter(|entry| !entry.file_type().is_dir() && entry.file_name() != TRASH_MARKER)
        .map(|entry| entry.into_path())
        .collect()
}

fn set_modified(path: &Path, time: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(time))
        .expect("set modification time");
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("modification time")
}

fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path).expect("metadata").ino()
}

fn moved_to(step: &Step) -> &Path {
    match step {
        Step::Move { to, .. } => to,
        Step::Link { .. } => panic!("a move was expected, not {step}"),
    }
}

#[test]
fn move_to_then_undo_restores_every_file() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/a/coffee.png"));
    // Two drops of the same name in different folders must not collide under the folder.
    let same_name_1 = copy_photo("skimage/coffee.png", &root.join("photos/b/coffee.png"));
    let same_name_2 = copy_photo("skimage/coffee.png", &root.join("photos/c/coffee.png"));
    let china_keeper = copy_photo("sklearn/china.jpg", &root.join("photos/a/china.jpg"));
    let china = copy_photo("sklearn/china.jpg", &root.join("photos/b/china copy.jpg"));
    let drops = [&same_name_1, &same_name_2, &china];
    let before: Vec<_> = drops.iter().map(|p| hash(p)).collect();
    let dups = root.join("dups");
    let journal = root.join("index/journals/1.jsonl");

    let plan = plan(
        Action::MoveTo(dups.clone()),
        vec![
            drop_of(&same_name_1, &keeper),
            drop_of(&same_name_2, &keeper),
            drop_of(&china, &china_keeper),
        ],
        vec![],
    );
    let outcome = apply(&plan, &journal).expect("apply");
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    assert_eq!(outcome.done.len(), 3);
    for ((step, path), bytes) in outcome.done.iter().zip(drops).zip(&before) {
        assert_eq!(step.path(), path.as_path());
        assert!(!path.exists(), "{} still there", path.display());
        let to = moved_to(step);
        assert!(
            to.starts_with(&dups),
            "{} not under the folder",
            to.display()
        );
        assert!(to.ends_with(path.strip_prefix("/").expect("absolute")));
        assert_eq!(hash(to), *bytes, "{} holds other bytes", to.display());
    }
    assert_ne!(moved_to(&outcome.done[0]), moved_to(&outcome.done[1]));
    assert_eq!(files_under(&dups).len(), 3);
    assert!(keeper.exists() && china_keeper.exists(), "keepers stay");

    let undone = undo(&journal).expect("undo");
    assert!(undone.skipped.is_empty(), "{:?}", undone.skipped);
    assert_eq!(undone.done.len(), 3);
    for (path, bytes) in drops.iter().zip(&before) {
        assert_eq!(hash(path), *bytes, "{} not restored", path.display());
    }
    let left: Vec<_> = fs::read_dir(&dups).expect("the folder stays").collect();
    assert!(left.is_empty(), "the move-to folder still holds {left:?}");

    // Undoing again touches nothing: every step is already undone.
    let again = undo(&journal).expect("second undo");
    assert!(again.done.is_empty(), "{:?}", again.done);
    assert_eq!(again.skipped.len(), 3);
    assert!(again.skipped.iter().all(|s| s.reason == "already undone"));
    for (path, bytes) in drops.iter().zip(&before) {
        assert_eq!(hash(path), *bytes);
    }
}

#[test]
fn files_under_a_reference_folder_are_never_touched() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let protected = copy_photo("skimage/coffee.png", &root.join("ref/coffee.png"));
    // Shares the reference folder's name as a prefix, not as a folder: not protected.
    let unprotected = copy_photo("skimage/coffee.png", &root.join("ref2/coffee.png"));
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    set_modified(&protected, an_hour_ago);
    let (bytes, inode_before) = (hash(&protected), inode(&protected));
    std::os::unix::fs::symlink(root.join("ref"), root.join("ref-link")).expect("symlink");
    // The reference folder as it is, through `..`, and through a symbolic link.
    let spellings = [
        root.join("ref"),
        root.join("photos/../ref"),
        root.join("ref-link"),
    ];
    let actions = [
        Action::MoveTo(root.join("dups")),
        Action::Link,
        Action::Delete {
            trash: root.join("index/trash"),
        },
    ];

    for (a, action) in actions.iter().enumerate() {
        for (s, reference) in spellings.iter().enumerate() {
            let journal = root.join(format!("journals/{a}-{s}.jsonl"));
            // The protected file spelled another way than its folder is.
            let spelled = spellings[(s + 1) % spellings.len()].join("coffee.png");
            let plan = plan(
                action.clone(),
                vec![drop_of(&spelled, &keeper), drop_of(&unprotected, &keeper)],
                vec![reference.clone()],
            );
            let outcome = apply(&plan, &journal).expect("apply");
            let context = format!(
                "{action:?} of {} with reference {}",
                spelled.display(),
                reference.display()
            );
            assert_eq!(outcome.skipped.len(), 1, "{context}: {:?}", outcome.skipped);
            assert_eq!(outcome.skipped[0].path, spelled, "{context}");
            assert!(
                outcome.skipped[0].reason.contains("reference folder"),
                "{context}: {}",
                outcome.skipped[0].reason
            );
            assert_eq!(outcome.done.len(), 1, "{context}: ref2 is not protected");
            assert_eq!(outcome.done[0].path(), unprotected, "{context}");
            assert_eq!(hash(&protected), bytes, "{context}");
            assert_eq!(modified(&protected), an_hour_ago, "{context}");
            assert_eq!(inode(&protected), inode_before, "{context}");
            let undone = undo(&journal).expect("undo");
            assert_eq!(undone.done.len(), 1, "{context}: {:?}", undone.skipped);
        }
    }
}

#[test]
fn a_reference_folder_that_does_not_exist_stops_the_action() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let copy = copy_photo("skimage/coffee.png", &root.join("photos/copy.png"));
    let plan = plan(
        Action::Delete {
            trash: root.join("trash"),
        },
        vec![drop_of(&copy, &keeper)],
        vec![root.join("refernce")],
    );
    let err = apply(&plan, &root.join("journal.jsonl")).expect_err("a missing reference");
    assert!(matches!(err, ActionError::Reference { .. }), "{err}");
    assert!(err.to_string().contains("refernce"), "{err}");
    assert!(copy.exists());
    assert!(!root.join("journal.jsonl").exists());
}

#[test]
fn link_replaces_identical_copies_only_and_undo_gives_back_an_independent_file() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let identical = copy_photo("skimage/coffee.png", &root.join("photos/b/coffee.png"));
    let other_size = copy_photo("skimage/chelsea.png", &root.join("photos/b/chelsea.png"));
    // The keeper's size, one byte different: only the hash tells them apart.
    let same_size = root.join("photos/b/coffee-edited.png");
    let mut edited = fs::read(&keeper).expect("read");
    let last = edited.len() - 1;
    edited[last] ^= 0xff;
    fs::write(&same_size, &edited).expect("write");
    let yesterday = SystemTime::now() - Duration::from_secs(86_400);
    set_modified(&identical, yesterday);
    let (keeper_bytes, keeper_inode) = (hash(&keeper), inode(&keeper));
    let (other_bytes, same_size_bytes) = (hash(&other_size), hash(&same_size));
    let journal = root.join("link.jsonl");

    let plan = plan(
        Action::Link,
        vec![
            drop_of(&identical, &keeper),
            drop_of(&other_size, &keeper),
            drop_of(&same_size, &keeper),
        ],
        vec![],
    );
    let outcome = apply(&plan, &journal).expect("apply");
    assert_eq!(outcome.done.len(), 1, "{:?}", outcome.skipped);
    match &outcome.done[0] {
        Step::Link {
            path,
            keeper: k,
            link,
            ..
        } => {
            assert_eq!(path, &identical);
            assert_eq!(k, &keeper);
            assert_eq!(*link, LinkKind::Hard, "one file system: a hard link");
        }
        step => panic!("a link was expected, not {step}"),
    }
    assert_eq!(inode(&identical), keeper_inode, "a hard link to the keeper");
    let skipped: Vec<_> = outcome.skipped.iter().map(|s| s.path.clone()).collect();
    assert_eq!(skipped, vec![other_size.clone(), same_size.clone()]);
    assert!(
        outcome.skipped[1].reason.contains("BLAKE3"),
        "{:?}",
        outcome.skipped
    );
    assert_eq!(hash(&other_size), other_bytes);
    assert_eq!(hash(&same_size), same_size_bytes);

    let undone = undo(&journal).expect("undo");
    assert_eq!(undone.done.len(), 1, "{:?}", undone.skipped);
    assert_ne!(inode(&identical), keeper_inode, "an independent file");
    assert_eq!(hash(&identical), keeper_bytes);
    assert_eq!(modified(&identical), yesterday, "its own modification time");
    // Independent: writing to it leaves the keeper as it was.
    fs::write(&identical, b"overwritten").expect("write");
    assert_eq!(hash(&keeper), keeper_bytes);
    assert_eq!(inode(&keeper), keeper_inode);
    assert!(
        files_under(&root.join("photos"))
            .iter()
            .all(|p| !p.to_string_lossy().contains(".lookalike-")),
        "no temporary file left behind"
    );
}

#[test]
fn delete_moves_into_the_trash_undo_restores_and_emptying_deletes() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/chelsea.png", &root.join("photos/chelsea.png"));
    let first = copy_photo("skimage/chelsea.png", &root.join("photos/old/chelsea.png"));
    let second = copy_photo("skimage/chelsea.png", &root.join("photos/chelsea (2).png"));
    let bytes = hash(&keeper);
    let trash = root.join("index/trash");
    let delete = || {
        plan(
            Action::Delete {
                trash: trash.clone(),
            },
            vec![drop_of(&first, &keeper), drop_of(&second, &keeper)],
            vec![],
        )
    };

    let outcome = apply(&delete(), &root.join("journals/1.jsonl")).expect("delete");
    assert_eq!(outcome.done.len(), 2, "{:?}", outcome.skipped);
    assert!(!first.exists() && !second.exists());
    assert!(trash.join(TRASH_MARKER).is_file());
    let in_trash = files_under(&trash);
    assert_eq!(in_trash.len(), 2);
    assert!(in_trash.iter().all(|p| hash(p) == bytes));

    let undone = undo(&root.join("journals/1.jsonl")).expect("undo");
    assert_eq!(undone.done.len(), 2, "{:?}", undone.skipped);
    assert_eq!((hash(&first), hash(&second)), (bytes, bytes));
    assert!(files_under(&trash).is_empty());

    apply(&delete(), &root.join("journals/2.jsonl")).expect("delete again");
    assert_eq!(files_under(&trash).len(), 2);
    assert_eq!(empty_trash(&trash).expect("empty the trash"), 2);
    assert!(files_under(&trash).is_empty());
    assert!(!first.exists() && !second.exists(), "deleted for real");
    assert!(keeper.exists());
    let too_late = undo(&root.join("journals/2.jsonl")).expect("undo after emptying");
    assert!(too_late.done.is_empty());
    assert_eq!(too_late.skipped.len(), 2);
    assert!(!first.exists() && !second.exists());
}

#[test]
fn a_folder_without_the_trash_marker_is_neither_emptied_nor_used_as_trash() {
    let (_dir, root) = workspace();
    let photos = root.join("photos");
    let keeper = copy_photo("skimage/coffee.png", &photos.join("coffee.png"));
    let copy = copy_photo("skimage/coffee.png", &photos.join("copy.png"));

    let err = empty_trash(&photos).expect_err("not a trash");
    assert!(matches!(err, ActionError::NotATrash(_)), "{err}");
    assert_eq!(files_under(&photos).len(), 2);

    let used = apply(
        &plan(
            Action::Delete {
                trash: photos.clone(),
            },
            vec![drop_of(&copy, &keeper)],
            vec![],
        ),
        &root.join("journal.jsonl"),
    );
    assert!(matches!(used, Err(ActionError::NotATrash(_))), "{used:?}");
    assert!(copy.exists());
    assert_eq!(empty_trash(&root.join("no trash yet")).expect("none"), 0);
}

#[test]
fn a_journal_cut_short_undoes_exactly_the_steps_it_records() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let drops: Vec<PathBuf> = (1..=3)
        .map(|i| copy_photo("skimage/coffee.png", &root.join(format!("photos/{i}.png"))))
        .collect();
    let journal = root.join("journal.jsonl");
    let plan = plan(
        Action::MoveTo(root.join("dups")),
        drops.iter().map(|p| drop_of(p, &keeper)).collect(),
        vec![],
    );
    let outcome = apply(&plan, &journal).expect("apply");
    assert_eq!(outcome.done.len(), 3);

    // A crash after the first step: the begin line and one step made it to disk.
    let text = fs::read_to_string(&journal).expect("read journal");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "begin and three steps: {text}");
    fs::write(&journal, format!("{}\n{}\n", lines[0], lines[1])).expect("truncate");

    let undone = undo(&journal).expect("undo");
    assert_eq!(undone.done, vec![outcome.done[0].clone()]);
    assert!(undone.skipped.is_empty(), "{:?}", undone.skipped);
    assert!(drops[0].exists(), "the recorded step is undone");
    for (path, step) in drops.iter().zip(&outcome.done).skip(1) {
        assert!(!path.exists(), "{} was not recorded", path.display());
        assert!(moved_to(step).exists(), "left where the step put it");
    }
}

#[test]
fn a_torn_last_line_is_ignored() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let drops: Vec<PathBuf> = (1..=2)
        .map(|i| copy_photo("skimage/coffee.png", &root.join(format!("photos/{i}.png"))))
        .collect();
    let journal = root.join("journal.jsonl");
    let plan = plan(
        Action::MoveTo(root.join("dups")),
        drops.iter().map(|p| drop_of(p, &keeper)).collect(),
        vec![],
    );
    apply(&plan, &journal).expect("apply");
    let text = fs::read_to_string(&journal).expect("read journal");
    // Cut in the middle of the last line, as a crash while writing it would.
    fs::write(&journal, &text[..text.len() - 20]).expect("truncate");

    let undone = undo(&journal).expect("undo");
    assert_eq!(undone.done.len(), 1, "{:?}", undone.skipped);
    assert!(drops[0].exists() && !drops[1].exists());
}

#[test]
fn undo_never_overwrites_a_file_that_reappeared() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let moved = copy_photo("skimage/coffee.png", &root.join("photos/moved.png"));
    let linked = copy_photo("skimage/coffee.png", &root.join("photos/linked.png"));
    let coffee = hash(&keeper);

    let move_journal = root.join("move.jsonl");
    let outcome = apply(
        &plan(
            Action::MoveTo(root.join("dups")),
            vec![drop_of(&moved, &keeper)],
            vec![],
        ),
        &move_journal,
    )
    .expect("move");
    let link_journal = root.join("link.jsonl");
    apply(
        &plan(Action::Link, vec![drop_of(&linked, &keeper)], vec![]),
        &link_journal,
    )
    .expect("link");

    // Other photos appear at both paths.
    fs::copy(common::photo("skimage/chelsea.png"), &moved).expect("copy");
    fs::remove_file(&linked).expect("remove the link");
    fs::copy(common::photo("sklearn/china.jpg"), &linked).expect("copy");
    let (chelsea, china) = (hash(&moved), hash(&linked));

    let undone = undo(&move_journal).expect("undo the move");
    assert!(undone.done.is_empty());
    assert_eq!(undone.skipped.len(), 1);
    assert!(
        undone.skipped[0].reason.contains("occupied"),
        "{}",
        undone.skipped[0].reason
    );
    assert_eq!(hash(&moved), chelsea, "the new file is left as it is");
    assert_eq!(
        hash(moved_to(&outcome.done[0])),
        coffee,
        "the moved one stays"
    );

    let undone = undo(&link_journal).expect("undo the link");
    assert!(undone.done.is_empty());
    assert_eq!(undone.skipped.len(), 1, "{:?}", undone.skipped);
    assert_eq!(hash(&linked), china, "the new file is left as it is");
}

#[test]
fn keepers_missing_files_and_taken_destinations() {
    let (_dir, root) = workspace();
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let orphan = copy_photo("skimage/coffee.png", &root.join("photos/orphan.png"));
    let copy = copy_photo("skimage/coffee.png", &root.join("photos/copy.png"));
    let alias = root.join("photos/alias.png");
    std::os::unix::fs::symlink(&keeper, &alias).expect("symlink");
    let dups = root.join("dups");
    // Something of the user's already lies where the copy would go.
    let taken = copy_photo(
        "skimage/chelsea.png",
        &dups.join(copy.strip_prefix("/").expect("absolute")),
    );
    let chelsea = hash(&taken);
    let plan = plan(
        Action::MoveTo(dups.clone()),
        vec![
            drop_of(&keeper, &keeper),
            drop_of(&root.join("photos/gone.png"), &keeper),
            drop_of(&orphan, &root.join("photos/deleted keeper.png")),
            drop_of(&alias, &keeper),
            drop_of(&copy, &keeper),
        ],
        vec![],
    );
    let journal = root.join("journal.jsonl");
    let outcome = apply(&plan, &journal).expect("apply");
    let reasons: Vec<&str> = outcome.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("keeper"), "{reasons:?}");
    assert!(reasons[1].contains("no longer exists"), "{reasons:?}");
    assert!(reasons[2].contains("keeper") && reasons[2].contains("gone"));
    assert!(reasons[3].contains("not a regular file"), "{reasons:?}");
    assert!(keeper.exists() && orphan.exists());
    assert!(fs::symlink_metadata(&alias).is_ok_and(|m| m.file_type().is_symlink()));

    assert_eq!(outcome.done.len(), 1);
    let to = moved_to(&outcome.done[0]);
    assert_eq!(
        to.file_name().expect("a name"),
        "copy~1.png",
        "a numeric suffix"
    );
    assert_eq!(hash(&taken), chelsea, "never overwritten");
    assert_eq!(hash(to), hash(&keeper));

    // A journal is never overwritten: it may be needed to undo that run.
    let again = apply(&plan, &journal).expect_err("the journal exists");
    assert!(matches!(again, ActionError::JournalExists(_)), "{again}");
    undo(&journal).expect("undo");
    assert_eq!(hash(&copy), hash(&keeper));
    assert_eq!(hash(&taken), chelsea);
}

/// A temporary folder on another file system than `workspace`'s (tmpfs), if there is one.
fn other_file_system(than: &Path) -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir_in("/dev/shm").ok()?;
    let root = dir.path().canonicalize().ok()?;
    let device = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    (device(&root) != device(than)).then_some((dir, root))
}

#[test]
fn across_file_systems_moves_copy_and_links_are_symbolic() {
    let (_dir, root) = workspace();
    let Some((_other_dir, other)) = other_file_system(&root) else {
        eprintln!("no second file system (/dev/shm) here: nothing to test");
        return;
    };
    let keeper = copy_photo("skimage/coffee.png", &root.join("photos/coffee.png"));
    let moved = copy_photo("skimage/coffee.png", &root.join("photos/moved.png"));
    let linked = copy_photo("skimage/coffee.png", &other.join("photos/linked.png"));
    let last_week = SystemTime::now() - Duration::from_secs(7 * 86_400);
    set_modified(&moved, last_week);
    set_modified(&linked, last_week);
    let bytes = hash(&keeper);

    let move_journal = root.join("move.jsonl");
    let outcome = apply(
        &plan(
            Action::MoveTo(other.join("dups")),
            vec![drop_of(&moved, &keeper)],
            vec![],
        ),
        &move_journal,
    )
    .expect("move");
    assert_eq!(outcome.done.len(), 1, "{:?}", outcome.skipped);
    let to = moved_to(&outcome.done[0]);
    assert!(!moved.exists());
    assert_eq!(hash(to), bytes);
    assert_eq!(
        modified(to),
        last_week,
        "the copy keeps its modification time"
    );

    let link_journal = root.join("link.jsonl");
    let outcome = apply(
        &plan(Action::Link, vec![drop_of(&linked, &keeper)], vec![]),
        &link_journal,
    )
    .expect("link");
    assert_eq!(outcome.done.len(), 1, "{:?}", outcome.skipped);
    assert!(
        matches!(
            &outcome.done[0],
            Step::Link {
                link: LinkKind::Symbolic,
                ..
            }
        ),
        "{:?}",
        outcome.done[0]
    );
    assert_eq!(fs::read_link(&linked).expect("a symbolic link"), keeper);

    assert_eq!(undo(&move_journal).expect("undo the move").done.len(), 1);
    assert_eq!(hash(&moved), bytes);
    assert_eq!(modified(&moved), last_week);
    assert_eq!(undo(&link_journal).expect("undo the link").done.len(), 1);
    let restored = fs::symlink_metadata(&linked).expect("restored");
    assert!(restored.is_file(), "a file again, not a link");
    assert_eq!(hash(&linked), bytes);
    assert_eq!(modified(&linked), last_week);
}
