//! Storage and search: the catalog, the ANN snapshot, crash safety, readers beside a writer.

mod common;

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lookalike::descriptor::whitening::{is_due, parse_whitening, WhiteningOptions};
use lookalike::descriptor::QueryExpansion;
use lookalike::index::{
    ContentHash, FileStamp, Filter, HnswParams, Index, IndexConfig, IndexError, ItemId, MediaKind,
    NewFile, NewItem, SearchMode,
};

use common::vectors::{normalised, synthetic_image, Rng};

const DIM: usize = 64;

/// A directory removed on drop (the crate has no `tempfile` dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("lookalike-index-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn vector_for(seed: u64) -> Vec<f32> {
    Rng::new(seed).unit(DIM)
}

fn config() -> IndexConfig {
    IndexConfig::new("test-model", DIM)
}

fn image(path: &str, seed: u64) -> NewFile {
    NewFile {
        path: path.into(),
        stamp: FileStamp {
            size: seed * 10,
            mtime_ns: seed as i64 * 1000,
        },
        content_hash: None,
        kind: MediaKind::Image,
        facts: Default::default(),
        items: vec![NewItem {
            t: None,
            width: 640,
            height: 480,
            vector: vector_for(seed),
            regions: Default::default(),
            labels: Vec::new(),
        }],
    }
}

fn video(path: &str, seeds: &[u64]) -> NewFile {
    NewFile {
        path: path.into(),
        stamp: FileStamp {
            size: 999,
            mtime_ns: 42,
        },
        content_hash: None,
        kind: MediaKind::Video,
        facts: Default::default(),
        items: seeds
            .iter()
            .enumerate()
            .map(|(i, s)| NewItem {
                t: Some(i as f64 * 2.5),
                width: 320,
                height: 240,
                vector: vector_for(*s),
                regions: Default::default(),
                labels: Vec::new(),
            })
            .collect(),
    }
}

/// `n` images named `img{i}.jpg` with seeds `base + i`.
fn images(base: u64, n: u64) -> Vec<NewFile> {
    (0..n)
        .map(|i| image(&format!("img{}.jpg", base + i), base + i))
        .collect()
}

fn top_path(index: &Index, query: &[f32], mode: SearchMode) -> Option<String> {
    index
        .search(query, 1, mode)
        .unwrap()
        .into_iter()
        .next()
        .map(|h| h.path)
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "usearch"))
        .collect()
}

#[test]
fn add_replace_and_remove_keep_counts_right() {
    let dir = TempDir::new("counts");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    let ids = index
        .add(vec![
            image("a.jpg", 1),
            image("b.jpg", 2),
            video("v.mp4", &[10, 11, 12]),
        ])
        .unwrap();
    assert_eq!(ids.len(), 5);
    let stats = index.stats().unwrap();
    assert_eq!(
        (stats.files, stats.images, stats.videos, stats.items),
        (3, 2, 1, 5)
    );
    assert_eq!((stats.dim, stats.model.as_str()), (DIM, "test-model"));

    let frames = index.items_for_path("v.mp4").unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1].t, Some(2.5));
    assert_eq!(frames[1].kind, MediaKind::Video);
    assert_eq!(index.vector(ids[3]).unwrap().unwrap(), vector_for(11));

    // Re-adding a path replaces its items: old ids disappear, new ones appear.
    let new_ids = index.add(vec![video("v.mp4", &[20, 21])]).unwrap();
    assert_eq!(new_ids.len(), 2);
    assert!(
        new_ids.iter().all(|id| !ids.contains(id)),
        "ids are never reused"
    );
    assert!(index.item(ids[2]).unwrap().is_none());
    assert_eq!(index.stats().unwrap().items, 4);
    assert_eq!(index.file_stamps().unwrap().len(), 3);

    assert_eq!(index.remove_items(&[ids[0], 987_654]).unwrap(), 1);
    let stats = index.stats().unwrap();
    assert_eq!(
        (stats.files, stats.items),
        (3, 3),
        "removing items keeps the file"
    );

    let removed = index
        .remove_paths(&["v.mp4".to_string(), "nope.jpg".to_string()])
        .unwrap();
    assert_eq!(removed, 1);
    let stats = index.stats().unwrap();
    assert_eq!((stats.files, stats.videos, stats.items), (2, 0, 1));
    assert!(index.items_for_path("v.mp4").unwrap().is_empty());

    let record = index.item(ids[1]).unwrap().unwrap();
    assert_eq!(record.path, "b.jpg");
    assert_eq!((record.width, record.height), (640, 480));
    assert_eq!(
        record.stamp,
        FileStamp {
            size: 20,
            mtime_ns: 2000
        }
    );
    let stamps = index.file_stamps().unwrap();
    assert_eq!(
        stamps["b.jpg"],
        FileStamp {
            size: 20,
            mtime_ns: 2000
        }
    );

    let mut exported = Vec::new();
    index
        .for_each_vector(|r, v| exported.push((r.id, v.to_vec())))
        .unwrap();
    assert_eq!(exported, vec![(ids[1], vector_for(2))]);
}

#[test]
fn a_file_keeps_its_stamp_and_content_hash_and_a_bulk_add_is_searchable_after_a_checkpoint() {
    let dir = TempDir::new("hash");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    let hash = ContentHash::of_bytes(b"the bytes of a.jpg");
    let mut a = image("a.jpg", 1);
    a.content_hash = Some(hash);
    index.add(vec![a.clone()]).unwrap();
    assert_eq!(
        index.stored_file("a.jpg").unwrap(),
        Some((a.stamp, Some(hash)))
    );
    assert_eq!(index.stored_file("b.jpg").unwrap(), None);

    // Replaced by a version without a known hash: none is kept.
    index.add(vec![image("a.jpg", 2)]).unwrap();
    let (stamp, stored_hash) = index.stored_file("a.jpg").unwrap().unwrap();
    assert_eq!((stamp, stored_hash), (image("a.jpg", 2).stamp, None));

    // Added to the catalog only: counted at once, searchable once the ANN has caught up.
    index.add_to_catalog(images(100, 50)).unwrap();
    assert_eq!(index.item_count().unwrap(), 51);
    index.checkpoint().unwrap();
    let query = vector_for(120);
    assert_eq!(
        top_path(&index, &query, SearchMode::Approximate).as_deref(),
        Some("img120.jpg")
    );
    drop(index);
    let reopened = Index::open(dir.path()).unwrap();
    assert_eq!(
        top_path(&reopened, &query, SearchMode::Approximate).as_deref(),
        Some("img120.jpg")
    );
}

#[test]
fn search_returns_the_planted_nearest_neighbour() {
    let dir = TempDir::new("planted");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    index.add(images(0, 500)).unwrap();
    let mut rng = Rng::new(777);
    let target = vector_for(123);
    // A slightly perturbed copy: its nearest stored neighbour is img123.
    let query = normalised(target.iter().map(|x| x + 0.02 * rng.gaussian()).collect());
    for mode in [SearchMode::Approximate, SearchMode::Exact] {
        let hits = index.search(&query, 5, mode).unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0].path, "img123.jpg", "{mode:?}");
        assert!(hits[0].score > 0.95 && hits[0].score <= 1.0001, "{hits:?}");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(hits[0].kind, MediaKind::Image);
        assert_eq!(hits[0].t, None);
    }
}

#[test]
fn a_huge_k_returns_everything_instead_of_allocating_it() {
    let dir = TempDir::new("huge-k");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    index.add(images(0, 30)).unwrap();
    for mode in [SearchMode::Approximate, SearchMode::Exact] {
        let hits = index.search(&vector_for(5), usize::MAX, mode).unwrap();
        assert_eq!(hits.len(), 30, "{mode:?}");
        assert_eq!(hits[0].path, "img5.jpg", "{mode:?}");
    }
}

#[test]
fn exact_and_approximate_agree_on_a_small_set() {
    let dir = TempDir::new("agree");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    index.add(images(0, 400)).unwrap();
    let mut agree = 0;
    let queries = 30;
    for q in 0..queries {
        let query = vector_for(10_000 + q);
        let exact = index.search(&query, 10, SearchMode::Exact).unwrap();
        let approx = index.search(&query, 10, SearchMode::Approximate).unwrap();
        let exact_ids: HashSet<ItemId> = exact.iter().map(|h| h.id).collect();
        agree += approx.iter().filter(|h| exact_ids.contains(&h.id)).count();
        // Scores are exact cosines of the stored f32 vectors in both modes.
        if approx[0].id == exact[0].id {
            assert!((approx[0].score - exact[0].score).abs() < 1e-6);
        }
    }
    let recall = agree as f64 / (queries as f64 * 10.0);
    assert!(recall >= 0.98, "recall@10 {recall}");
}

/// An image whose vector is `v` padded with zeros to `DIM`.
fn image_at(path: &str, v: &[f32]) -> NewFile {
    let mut file = image(path, 0);
    let mut vector = vec![0.0; DIM];
    vector[..v.len()].copy_from_slice(v);
    file.items[0].vector = normalised(vector);
    file
}

#[test]
fn query_expansion_reranks_towards_the_best_hits() {
    let dir = TempDir::new("qe");
    let mut config = config();
    config.descriptor.query_expansion = QueryExpansion {
        neighbours: 1,
        alpha: 1.0,
    };
    let mut index = Index::create_or_open(dir.path(), &config).unwrap();
    // Cosines with the query e0: a 0.9, b 0.85, c 0.8, so plain search ranks a, b, c.
    let a = [0.9, 0.19f32.sqrt(), 0.0];
    let b = [0.85, 0.0, (1.0f32 - 0.85 * 0.85).sqrt()];
    let c = [0.8, 0.6, 0.0];
    index
        .add(vec![
            image_at("a", &a),
            image_at("b", &b),
            image_at("c", &c),
        ])
        .unwrap();
    // Expanded by a (weight 0.9^1): e0 + 0.9 a, normalised; c shares a's e1 part, b does not.
    let expanded = normalised(vec![1.0 + 0.9 * a[0], 0.9 * a[1], 0.0]);
    let cosine = |v: &[f32]| v.iter().zip(&expanded).map(|(x, y)| x * y).sum::<f32>();
    let mut query = vec![0.0; DIM];
    query[0] = 1.0;
    for mode in [SearchMode::Approximate, SearchMode::Exact] {
        let hits = index.search(&query, 3, mode).unwrap();
        let paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(paths, ["a", "c", "b"], "{mode:?}");
        for (hit, v) in hits.iter().zip([&a[..], &c, &b]) {
            assert!((hit.score - cosine(v)).abs() < 1e-5, "{mode:?} {hit:?}");
        }
    }
}

#[test]
fn reopen_without_checkpoint_finds_everything() {
    let dir = TempDir::new("reopen");
    {
        let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
        index.add(images(0, 50)).unwrap();
        index.checkpoint().unwrap();
        index.add(images(50, 30)).unwrap();
        index.remove_paths(&["img7.jpg".to_string()]).unwrap();
        // Dropped without a checkpoint, as if killed.
    }
    for index in [
        Index::open(dir.path()).unwrap(),
        Index::open_read_only(dir.path()).unwrap(),
    ] {
        assert_eq!(index.stats().unwrap().items, 79);
        for seed in (0..80).filter(|s| *s != 7) {
            assert_eq!(
                top_path(&index, &vector_for(seed), SearchMode::Approximate),
                Some(format!("img{seed}.jpg"))
            );
        }
        assert_ne!(
            top_path(&index, &vector_for(7), SearchMode::Approximate),
            Some("img7.jpg".into())
        );
    }
}

#[test]
fn a_corrupt_or_truncated_snapshot_is_rebuilt_from_the_catalog() {
    type Damage = fn(&Path);
    let truncate: Damage = |p| {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    };
    let garbage: Damage = |p| {
        let len = std::fs::metadata(p).unwrap().len() as usize;
        std::fs::write(p, vec![0xA5u8; len]).unwrap();
    };
    let empty: Damage = |p| std::fs::write(p, b"").unwrap();
    for (name, damage) in [
        ("truncate", truncate),
        ("garbage", garbage),
        ("empty", empty),
    ] {
        let dir = TempDir::new(name);
        {
            let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
            index.add(images(0, 60)).unwrap();
            index.checkpoint().unwrap();
        }
        let snapshots = snapshot_files(dir.path());
        assert_eq!(snapshots.len(), 1);
        damage(&snapshots[0]);

        // A reader copes without writing anything.
        let reader = Index::open_read_only(dir.path()).unwrap();
        assert_eq!(
            top_path(&reader, &vector_for(33), SearchMode::Approximate),
            Some("img33.jpg".into()),
            "{name}"
        );
        assert_eq!(
            snapshot_files(dir.path()),
            snapshots,
            "a reader never writes"
        );
        drop(reader);

        // A writer rebuilds and saves a good snapshot at once.
        let index = Index::open(dir.path()).unwrap();
        for seed in 0..60 {
            assert_eq!(
                top_path(&index, &vector_for(seed), SearchMode::Approximate),
                Some(format!("img{seed}.jpg")),
                "{name}"
            );
        }
        drop(index);
        let reader = Index::open_read_only(dir.path()).unwrap();
        assert!(
            reader.is_memory_mapped(),
            "{name}: the rebuilt snapshot is used"
        );
    }
}

#[test]
fn a_snapshot_ahead_of_the_catalog_is_not_trusted() {
    // A snapshot from a bigger index (as if the catalog had been restored from a backup).
    let big = TempDir::new("big");
    {
        let mut index = Index::create_or_open(big.path(), &config()).unwrap();
        index.add(images(1000, 40)).unwrap();
        index.checkpoint().unwrap();
    }
    let dir = TempDir::new("small");
    {
        let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
        index.add(images(0, 20)).unwrap();
    }
    let foreign = &snapshot_files(big.path())[0];
    std::fs::copy(foreign, dir.path().join(foreign.file_name().unwrap())).unwrap();
    let index = Index::open_read_only(dir.path()).unwrap();
    for seed in [0, 19] {
        assert_eq!(
            top_path(&index, &vector_for(seed), SearchMode::Approximate),
            Some(format!("img{seed}.jpg"))
        );
    }
    let hits = index
        .search(&vector_for(1005), 20, SearchMode::Approximate)
        .unwrap();
    let seed = |path: &str| -> u64 { path[3..path.len() - 4].parse().unwrap() };
    assert!(hits.iter().all(|h| seed(&h.path) < 20), "{hits:?}");
}

#[test]
fn a_reader_sees_the_writers_changes_after_refresh() {
    let dir = TempDir::new("reader");
    let mut writer = Index::create_or_open(dir.path(), &config()).unwrap();
    writer.add(images(0, 100)).unwrap();
    writer.checkpoint().unwrap();

    let mut reader = Index::open_read_only(dir.path()).unwrap();
    assert!(reader.is_memory_mapped());
    assert_eq!(reader.refresh().unwrap(), 0, "nothing changed");

    writer.add(images(100, 20)).unwrap();
    writer
        .remove_paths(&["img5.jpg".to_string(), "img110.jpg".to_string()])
        .unwrap();
    assert_ne!(
        top_path(&reader, &vector_for(105), SearchMode::Approximate),
        Some("img105.jpg".into()),
        "not seen before refresh"
    );
    // 19 additions still present (img110 came and went) + 2 removals.
    assert_eq!(reader.refresh().unwrap(), 21);
    assert!(reader.is_memory_mapped());
    for mode in [SearchMode::Approximate, SearchMode::Exact] {
        assert_eq!(
            top_path(&reader, &vector_for(105), mode),
            Some("img105.jpg".into())
        );
        for gone in [5, 110] {
            let hits = reader.search(&vector_for(gone), 10, mode).unwrap();
            assert!(hits.iter().all(|h| h.path != format!("img{gone}.jpg")));
        }
    }

    // After the writer's next checkpoint the reader switches to the new snapshot.
    writer.checkpoint().unwrap();
    assert_eq!(reader.refresh().unwrap(), 0);
    assert!(reader.is_memory_mapped());
    assert_eq!(
        top_path(&reader, &vector_for(119), SearchMode::Approximate),
        Some("img119.jpg".into())
    );
    assert!(matches!(
        reader.add(images(500, 1)),
        Err(IndexError::ReadOnly)
    ));
    assert!(matches!(reader.checkpoint(), Err(IndexError::ReadOnly)));
}

#[test]
fn removed_items_never_come_back() {
    let dir = TempDir::new("removed");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    let ids = index.add(images(0, 200)).unwrap();
    index.checkpoint().unwrap();
    let gone: Vec<ItemId> = ids.iter().copied().step_by(3).collect();
    assert_eq!(index.remove_items(&gone).unwrap(), gone.len());
    let check = |index: &Index| {
        for (i, id) in ids.iter().enumerate().step_by(3) {
            for mode in [SearchMode::Approximate, SearchMode::Exact] {
                let hits = index.search(&vector_for(i as u64), 20, mode).unwrap();
                assert_eq!(hits.len(), 20, "k results remain");
                assert!(
                    hits.iter().all(|h| h.id != *id),
                    "{mode:?} returned removed {id}"
                );
            }
        }
    };
    check(&index);
    drop(index);
    check(&Index::open_read_only(dir.path()).unwrap());
    let mut index = Index::open(dir.path()).unwrap();
    check(&index);
    index.checkpoint().unwrap();
    check(&Index::open_read_only(dir.path()).unwrap());
}

#[test]
fn a_second_writer_is_refused_while_the_first_is_open() {
    let dir = TempDir::new("lock");
    let mut first = Index::create_or_open(dir.path(), &config()).unwrap();
    first.add(images(0, 10)).unwrap();
    for second in [
        Index::open(dir.path()),
        Index::create_or_open(dir.path(), &config()),
    ] {
        let refused = second.err().expect("a second writer is refused");
        let IndexError::Locked { holder, .. } = &refused else {
            panic!("expected Locked, got {refused}");
        };
        assert!(
            holder.starts_with(&format!("pid {} (", std::process::id())),
            "the holder is named: {refused}"
        );
        assert!(refused
            .to_string()
            .contains("one process writes an index at a time"));
    }
    let reader = Index::open_read_only(dir.path()).expect("readers are never blocked");
    assert_eq!(
        top_path(&reader, &vector_for(3), SearchMode::Exact),
        Some("img3.jpg".into())
    );
    drop(first);
    let mut second = Index::open(dir.path()).expect("free once the first writer is gone");
    second.add(images(10, 1)).unwrap();
}

/// The result of a one-number query on `dir`'s catalog.
fn catalog_number(dir: &Path, sql: &str) -> u64 {
    let conn = rusqlite::Connection::open(dir.join("catalog.sqlite")).unwrap();
    conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// Rows in the catalog's `tombstones` table.
fn tombstone_rows(dir: &Path) -> u64 {
    catalog_number(dir, "SELECT count(*) FROM tombstones")
}

/// The catalog's size in pages, wherever they are (the database file or its WAL).
fn catalog_pages(dir: &Path) -> u64 {
    catalog_number(dir, "PRAGMA page_count")
}

/// Bytes of the files whose names start with `prefix` in `dir`.
fn bytes_of(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A library with heavy churn (a tenth of it replaced, 30 times over) keeps its tombstones,
/// its catalog and its ANN snapshot bounded, and readers that slept through the pruning of the
/// removals they missed still never return a removed item.
#[test]
fn tombstones_are_pruned_so_churn_stays_bounded() {
    const LIBRARY: u64 = 2000;
    const TURNOVER: u64 = 200;
    const ROUNDS: u64 = 30;
    let dir = TempDir::new("churn");
    let mut writer = Index::create_or_open(dir.path(), &config()).unwrap();
    writer.add(images(0, LIBRARY)).unwrap();
    writer.checkpoint().unwrap();
    let (catalog_before, snapshot_before) =
        (catalog_pages(dir.path()), bytes_of(dir.path(), "ann-"));
    let mut follows = Index::open_read_only(dir.path()).unwrap();
    let mut sleeps = Index::open_read_only(dir.path()).unwrap();

    let mut live: std::collections::VecDeque<u64> = (0..LIBRARY).collect();
    let mut removed = Vec::new();
    let mut most_tombstones = 0;
    for round in 0..ROUNDS {
        let victims: Vec<u64> = live.drain(..TURNOVER as usize).collect();
        let paths: Vec<String> = victims.iter().map(|s| format!("img{s}.jpg")).collect();
        assert_eq!(writer.remove_paths(&paths).unwrap(), victims.len());
        removed.extend(victims);
        let base = LIBRARY + round * TURNOVER;
        writer.add(images(base, TURNOVER)).unwrap();
        live.extend(base..base + TURNOVER);
        writer.checkpoint_if_due().unwrap();
        most_tombstones = most_tombstones.max(tombstone_rows(dir.path()));
        follows.refresh().unwrap();
    }
    writer.checkpoint().unwrap();
    let (catalog_after, snapshot_after) = (catalog_pages(dir.path()), bytes_of(dir.path(), "ann-"));
    eprintln!(
        "churn of {} removals: at most {most_tombstones} tombstone rows; catalog {catalog_before} \
         -> {catalog_after} pages (its WAL {} bytes), snapshot {snapshot_before} -> \
         {snapshot_after} bytes",
        removed.len(),
        bytes_of(dir.path(), "catalog.sqlite-wal")
    );
    // Each due checkpoint (1,000 changes) prunes what the snapshot before it covered: at most
    // about two checkpoints' worth are kept, never the 6,000 removals made.
    assert!(
        most_tombstones <= 2 * (1000 + TURNOVER),
        "{most_tombstones} tombstones kept"
    );
    assert!(tombstone_rows(dir.path()) <= 1000 + TURNOVER);
    assert!(
        catalog_after < catalog_before * 3 / 2,
        "catalog {catalog_before} -> {catalog_after} pages"
    );
    assert!(
        snapshot_after < snapshot_before * 3 / 2,
        "snapshot {snapshot_before} -> {snapshot_after} bytes"
    );

    // One reader followed along; the other slept through every round, and its snapshot is gone
    // too, so only the catalog (whose tombstones are pruned) can bring it up to date.
    for file in snapshot_files(dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    follows.refresh().unwrap();
    sleeps.refresh().unwrap();
    for reader in [&follows, &sleeps] {
        for mode in [SearchMode::Approximate, SearchMode::Exact] {
            for gone in removed.iter().step_by(97) {
                let hits = reader.search(&vector_for(*gone), 10, mode).unwrap();
                assert!(
                    hits.iter().all(|h| h.path != format!("img{gone}.jpg")),
                    "{mode:?} returned removed img{gone}.jpg"
                );
            }
            for kept in live.iter().step_by(97) {
                assert_eq!(
                    top_path(reader, &vector_for(*kept), mode),
                    Some(format!("img{kept}.jpg"))
                );
            }
        }
    }
}

/// A catalog lost (truncated to nothing) beside the snapshots of its index is refused by
/// every open, instead of a reader asking to upgrade and a writer silently starting anew.
#[test]
fn an_emptied_catalog_beside_its_snapshots_is_refused_not_replaced() {
    let dir = TempDir::new("lost");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    index.add(images(0, 50)).unwrap();
    index.checkpoint().unwrap();
    drop(index);
    std::fs::write(dir.path().join("catalog.sqlite"), b"").unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("catalog.sqlite{side}")));
    }
    let opens = [
        Index::open(dir.path()).err(),
        Index::open_read_only(dir.path()).err(),
        Index::create_or_open(dir.path(), &config()).err(),
    ];
    for refused in opens {
        let refused = refused.expect("refused");
        assert!(
            matches!(refused, IndexError::LostCatalog { .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("Restore it from a backup"));
    }
    assert!(
        !snapshot_files(dir.path()).is_empty(),
        "the snapshots are left alone"
    );
}

#[test]
fn another_model_or_dimension_is_a_clear_error() {
    let dir = TempDir::new("config");
    Index::create_or_open(dir.path(), &config()).unwrap();
    for other in [
        IndexConfig::new("other-model", DIM),
        IndexConfig::new("test-model", 128),
    ] {
        let err = Index::create_or_open(dir.path(), &other).err().unwrap();
        assert!(matches!(err, IndexError::ConfigMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("test-model") && msg.contains(&other.model),
            "{msg}"
        );
        assert!(msg.contains(&other.dim.to_string()), "{msg}");
    }
    // The existing index is untouched and still opens with its own config.
    assert_eq!(*Index::open(dir.path()).unwrap().config(), config());
}

#[test]
fn opening_a_missing_index_says_where() {
    let dir = TempDir::new("missing");
    let missing = dir.path().join("nothing-here");
    for result in [Index::open(&missing), Index::open_read_only(&missing)] {
        let err = result.err().unwrap();
        assert!(matches!(err, IndexError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("nothing-here"), "{err}");
    }
    assert!(!missing.exists(), "open never creates");
}

#[test]
fn bad_vectors_are_rejected_before_anything_is_written() {
    let dir = TempDir::new("badvec");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    let mut bad = image("bad.jpg", 1);
    bad.items[0].vector.pop();
    let err = index.add(vec![image("ok.jpg", 2), bad]).err().unwrap();
    assert!(matches!(err, IndexError::InvalidVector(_)), "{err:?}");
    let mut nan = image("nan.jpg", 3);
    nan.items[0].vector[0] = f32::NAN;
    assert!(index.add(vec![nan]).is_err());
    assert_eq!(index.stats().unwrap().files, 0);
    assert!(index.search(&[1.0; 3], 5, SearchMode::Exact).is_err());
}

#[test]
fn many_threads_search_one_handle_at_once() {
    let dir = TempDir::new("threads");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    index.add(images(0, 300)).unwrap();
    index.checkpoint().unwrap();
    let index = Index::open_read_only(dir.path()).unwrap();
    let queries: Vec<Vec<f32>> = (0..64).map(|q| vector_for(5000 + q)).collect();
    let ids = |q: &[f32]| -> Vec<ItemId> {
        let hits = index.search(q, 10, SearchMode::Approximate).unwrap();
        hits.iter().map(|h| h.id).collect()
    };
    let expected: Vec<Vec<ItemId>> = queries.iter().map(|q| ids(q)).collect();
    // Concurrent searches give exactly the sequential answers.
    std::thread::scope(|s| {
        for t in 0..16 {
            let (queries, expected, ids) = (&queries, &expected, &ids);
            s.spawn(move || {
                for round in 0..10 {
                    let q = (t * 7 + round) % queries.len();
                    assert_eq!(ids(&queries[q]), expected[q]);
                }
            });
        }
    });
}

/// Self-retrieval on the hardest kind of data (uniform random, 64-d): the approximate search
/// finds a stored vector's own item at rank 1 almost always.
#[test]
fn approximate_search_finds_stored_vectors_themselves() {
    let dir = TempDir::new("self");
    let mut index = Index::create_or_open(dir.path(), &config()).unwrap();
    index.add(images(0, 3000)).unwrap();
    let found = (0..3000)
        .filter(|s| {
            top_path(&index, &vector_for(*s), SearchMode::Approximate)
                == Some(format!("img{s}.jpg"))
        })
        .count();
    eprintln!("self-retrieval@1: {found}/3000");
    assert!(found >= 2970, "{found}/3000");
}

#[test]
fn expansion_search_is_configurable() {
    let dir = TempDir::new("ef");
    let params = HnswParams {
        expansion_search: 200,
        ..HnswParams::default()
    };
    let mut index = Index::create_or_open_with(dir.path(), &config(), params).unwrap();
    assert_eq!(index.expansion_search(), 200);
    index.set_expansion_search(32);
    assert_eq!(index.expansion_search(), 32);
}

/// The child side of [`kill_9_loses_nothing_committed`]: writes in a loop until killed,
/// printing what is committed. Does nothing unless run by that test.
#[test]
#[ignore = "run as a child process by kill_9_loses_nothing_committed"]
fn crash_child_writer() {
    let Ok(dir) = std::env::var("LOOKALIKE_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("LOOKALIKE_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let mut index = Index::open(Path::new(&dir)).unwrap();
    let mut out = std::io::stdout();
    for batch in 0.. {
        let base = start + batch * 20;
        index.add(images(base, 20)).unwrap();
        use std::io::Write;
        writeln!(out, "committed {base} 20").unwrap();
        if batch % 3 == 1 {
            let victim = base + 3;
            // Announced first: a kill between the commit and the next line must not look like
            // a lost removal.
            writeln!(out, "removing {victim}").unwrap();
            out.flush().unwrap();
            index.remove_paths(&[format!("img{victim}.jpg")]).unwrap();
            writeln!(out, "removed {victim}").unwrap();
        }
        if batch % 4 == 2 {
            index.checkpoint().unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_nothing_committed() {
    let dir = TempDir::new("kill9");
    Index::create_or_open(dir.path(), &config()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut log = ChildLog::default();
    for round in 0..4u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LOOKALIKE_CRASH_DIR", dir.path())
            .env("LOOKALIKE_CRASH_START", (round * 1_000_000).to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let readerthread = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill at a different moment each round (some mid-checkpoint, some mid-add).
        let deadline = Instant::now() + Duration::from_millis(300 + 170 * round);
        let mut lines = 0;
        while Instant::now() < deadline || lines < 3 {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => {
                    lines += 1;
                    log.record(&line);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("child ended early: {e}"),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines already printed are committed too.
        for line in rx.try_iter() {
            log.record(&line);
        }
        readerthread.join().unwrap();

        // Everything reported committed is there, nothing removed came back, and both a reader
        // and a writer agree.
        // A wide beam makes the graph search near-exhaustive: a miss would mean a lost vector.
        let wide = HnswParams {
            expansion_search: 512,
            ..HnswParams::default()
        };
        let reader = Index::open_read_only_with(dir.path(), wide).unwrap();
        let stamps = reader.file_stamps().unwrap();
        for seed in &log.committed {
            let path = format!("img{seed}.jpg");
            if log.removing.contains(seed) && !log.removed.contains(seed) {
                continue; // killed while removing: either outcome is right
            }
            assert_eq!(
                stamps.contains_key(&path),
                !log.removed.contains(seed),
                "{path}"
            );
        }
        let items = reader.stats().unwrap().items;
        assert_eq!(items, stamps.len() as u64, "one item per image");
        let live: Vec<u64> = log.committed.difference(&log.removing).copied().collect();
        for seed in live.iter().step_by(7) {
            let hits = reader
                .search(&vector_for(*seed), 10, SearchMode::Approximate)
                .unwrap();
            assert!(
                hits.iter().any(|h| h.path == format!("img{seed}.jpg")),
                "img{seed}"
            );
        }
        for seed in &log.removed {
            let hits = reader
                .search(&vector_for(*seed), 5, SearchMode::Approximate)
                .unwrap();
            assert!(hits.iter().all(|h| h.path != format!("img{seed}.jpg")));
        }
        drop(reader);
        let writer = Index::open(dir.path()).unwrap();
        assert_eq!(writer.stats().unwrap().items, items);
        eprintln!(
            "round {round}: {} committed, {} removed, {items} items after kill -9",
            log.committed.len(),
            log.removed.len()
        );
    }
    assert!(log.committed.len() >= 4 * 60, "the child made progress");
}

/// What the crash child reported.
#[derive(Default)]
struct ChildLog {
    committed: HashSet<u64>,
    removing: HashSet<u64>,
    removed: HashSet<u64>,
}

impl ChildLog {
    fn record(&mut self, line: &str) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["committed", base, n] => {
                let (base, n): (u64, u64) = (base.parse().unwrap(), n.parse().unwrap());
                self.committed.extend(base..base + n);
            }
            ["removing", seed] => {
                self.removing.insert(seed.parse().unwrap());
            }
            ["removed", seed] => {
                self.removed.insert(seed.parse().unwrap());
            }
            _ => {}
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

/// Clustered synthetic embeddings: `centres` random directions, points = centre + gaussian
/// noise of the same expected norm (cosine to the centre about 0.7), normalised. The noise's
/// standard deviation along axis i falls as (i + 1)^-decay: real embeddings have a few strong
/// directions of variation, not 1280 equal ones (decay 0 = isotropic noise, the worst case:
/// every point of a cluster is then nearly equidistant from every other).
struct Clustered {
    centres: Vec<Vec<f32>>,
    sigmas: Vec<f32>,
    rng: Rng,
    /// Take the centres in turn instead of at random (real vectors: each used alike).
    in_turn: Option<usize>,
}

impl Clustered {
    fn new(dim: usize, centres: usize, decay: f32, seed: u64) -> Clustered {
        let mut rng = Rng::new(seed);
        let centres = (0..centres).map(|_| rng.unit(dim)).collect();
        Clustered {
            centres,
            sigmas: noise_profile(dim, decay, 1.0),
            rng,
            in_turn: None,
        }
    }

    /// Real vectors (e.g. embeddings exported with `lookalike export`) as the centres, taken
    /// in turn, each copy moved by isotropic gaussian noise of expected norm `noise`; with
    /// `noise` 0 and as many vectors as centres, the data set is the real vectors themselves.
    fn around(centres: Vec<Vec<f32>>, noise: f32, seed: u64) -> Clustered {
        let dim = centres[0].len();
        Clustered {
            centres,
            sigmas: noise_profile(dim, 0.0, noise),
            rng: Rng::new(seed),
            in_turn: Some(0),
        }
    }

    fn next(&mut self) -> Vec<f32> {
        let c = match &mut self.in_turn {
            Some(i) => {
                *i += 1;
                (*i - 1) % self.centres.len()
            }
            None => (self.rng.next_f32() * self.centres.len() as f32) as usize % self.centres.len(),
        };
        let v = (0..self.sigmas.len())
            .map(|i| self.centres[c][i] + self.sigmas[i] * self.rng.gaussian())
            .collect();
        normalised(v)
    }
}

/// Per-dimension noise deviations decaying as i^-decay, scaled to expected norm `norm`.
fn noise_profile(dim: usize, decay: f32, norm: f32) -> Vec<f32> {
    let raw: Vec<f32> = (0..dim).map(|i| (i as f32 + 1.0).powf(-decay)).collect();
    let total = raw.iter().map(|s| s * s).sum::<f32>().sqrt();
    raw.iter().map(|s| s / total * norm).collect()
}

/// The rows of a float32 .npy matrix (as written by `lookalike export`).
fn read_npy_rows(path: &str) -> Vec<Vec<f32>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).unwrap();
    let dim = *npy.shape().last().unwrap() as usize;
    let data: Vec<f32> = npy.into_vec().unwrap();
    data.chunks(dim).map(<[f32]>::to_vec).collect()
}

/// CPU seconds used by the calling thread (`/proc`, Linux): timings that other processes on
/// a shared machine cannot inflate.
fn thread_cpu_seconds() -> f64 {
    cpu_seconds("/proc/thread-self/stat")
}

/// CPU seconds used by this process, all threads.
fn process_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

fn cpu_seconds(stat: &str) -> f64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ
}

/// Recall and speed of the HNSW parameters on clustered synthetic 1280-d data, end to end
/// through `Index` (catalog + snapshot + reader). Run with an optimised build:
/// `LOOKALIKE_BENCH_N=100000 cargo test --release --test index_store ann_benchmark --
/// --ignored --nocapture` (LOOKALIKE_BENCH_DIM, _QUERIES, _CENTRES, _DECAY, _M, _EF_ADD too;
/// _EFS=48,64 the search beams measured). On real embeddings: LOOKALIKE_BENCH_BASE=vectors.npy (the centres, taken
/// in turn, LOOKALIKE_BENCH_NOISE the noise norm, default 0) and LOOKALIKE_BENCH_QUERY=
/// queries.npy (real vectors, e.g. a held-out split, searched as they are).
#[test]
#[ignore = "benchmark: minutes, gigabytes"]
fn ann_benchmark() {
    let n = env_usize("LOOKALIKE_BENCH_N", 100_000);
    let dim = env_usize("LOOKALIKE_BENCH_DIM", 1280);
    let nq = env_usize("LOOKALIKE_BENCH_QUERIES", 300);
    // 5000 clusters of 200 at 1M; as many points per cluster at smaller sizes.
    let centres = env_usize("LOOKALIKE_BENCH_CENTRES", (n / 200).max(10));
    let decay: f32 = std::env::var("LOOKALIKE_BENCH_DECAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    // DIMS[:POWER]: learn the whitening whenever the engine would (after each batch: first at
    // enough items, again at each 4x growth) and measure recall in the whitened space, as a
    // collection with the default descriptor is searched.
    let whitening = std::env::var("LOOKALIKE_BENCH_WHITEN").map_or(None, |s| {
        parse_whitening(&s).expect("LOOKALIKE_BENCH_WHITEN: DIMS[:POWER] or off")
    });
    let k = 10;
    let dir = TempDir::new("bench");
    let mut config = IndexConfig::new("bench", dim);
    config.descriptor.whitening = whitening;
    let (mut data, queries): (Clustered, Vec<Vec<f32>>) =
        match std::env::var("LOOKALIKE_BENCH_BASE") {
            Ok(base) => {
                let noise = std::env::var("LOOKALIKE_BENCH_NOISE")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                let query_file =
                    std::env::var("LOOKALIKE_BENCH_QUERY").expect("LOOKALIKE_BENCH_QUERY");
                let queries = read_npy_rows(&query_file).into_iter().take(nq).collect();
                eprintln!(
                    "real centres from {base}, noise norm {noise}, queries from {query_file}"
                );
                (Clustered::around(read_npy_rows(&base), noise, 1), queries)
            }
            Err(_) => {
                let mut data = Clustered::new(dim, centres, decay, 1);
                let queries = (0..nq).map(|_| data.next()).collect();
                (data, queries)
            }
        };
    let nq = queries.len();
    let mut truth: Vec<Vec<(f32, ItemId)>> = vec![Vec::new(); nq];

    let defaults = HnswParams::default();
    let params = HnswParams {
        connectivity: env_usize("LOOKALIKE_BENCH_M", defaults.connectivity),
        expansion_add: env_usize("LOOKALIKE_BENCH_EF_ADD", defaults.expansion_add),
        ..defaults
    };
    let mut writer = Index::create_or_open_with(dir.path(), &config, params).unwrap();
    let started = Instant::now();
    let filled = fill(&mut writer, &mut data, n, whitening, |ids, vectors| {
        if whitening.is_some() {
            // The truth is computed in the final whitened space once built.
            return;
        }
        // Ground truth, computed as the data streams by (never all in memory).
        std::thread::scope(|s| {
            for (q, best) in queries.iter().zip(truth.iter_mut()) {
                s.spawn(move || {
                    best.extend(ids.iter().zip(vectors).map(|(id, v)| (dot(q, v), *id)));
                    best.sort_by(|a, b| b.0.total_cmp(&a.0));
                    best.truncate(k);
                });
            }
        });
    });
    let Filled {
        gen_s,
        add_s,
        add_cpu,
        learn_s,
        learn_cpu,
    } = filled;
    if whitening.is_some() {
        let t = Instant::now();
        truth = whitened_truth(&writer, &queries, k);
        eprintln!("whitened ground truth: {:.1} s", t.elapsed().as_secs_f64());
    }
    let t2 = Instant::now();
    writer.checkpoint().unwrap();
    let checkpoint_s = t2.elapsed().as_secs_f64();
    let stats = writer.stats().unwrap();
    drop(writer);
    eprintln!(
        "built {n} x {dim} ({centres} clusters, noise decay {decay}) with {params:?}: add (SQLite \
         + HNSW) {add_s:.1} s wall, {add_cpu:.1} CPU s = {:.0} items per CPU second; generation \
         {gen_s:.1} s, whitening (learn + ANN rebuilds) {learn_s:.1} s wall, {learn_cpu:.1} CPU s, \
         total {:.1} s, checkpoint {checkpoint_s:.2} s, catalog {} MB, snapshot {} MB",
        n as f64 / add_cpu,
        started.elapsed().as_secs_f64(),
        stats.catalog_bytes >> 20,
        stats.ann_bytes >> 20
    );

    let probe = usearch::Index::new(&usearch::IndexOptions {
        dimensions: whitening.map_or(dim, |w| w.dims),
        metric: usearch::MetricKind::Cos,
        quantization: usearch::ScalarKind::F16,
        ..Default::default()
    })
    .unwrap();
    eprintln!("usearch SIMD: {}", probe.hardware_acceleration());
    let snapshot = snapshot_files(dir.path()).pop().unwrap();
    let t = Instant::now();
    let viewed = usearch::Index::restore_view(snapshot.to_str().unwrap()).unwrap();
    eprintln!(
        "usearch view alone: {:.1} ms ({} vectors)",
        t.elapsed().as_secs_f64() * 1000.0,
        viewed.size()
    );
    drop(viewed);
    let t3 = Instant::now();
    let mut reader = Index::open_read_only(dir.path()).unwrap();
    eprintln!(
        "reader open: {:.1} ms (memory-mapped: {})",
        t3.elapsed().as_secs_f64() * 1000.0,
        reader.is_memory_mapped()
    );
    let efs: Vec<usize> = std::env::var("LOOKALIKE_BENCH_EFS").map_or_else(
        |_| vec![16, 32, 48, 64, 96, 128, 192],
        |v| {
            v.split(',')
                .map(|x| x.trim().parse().expect("LOOKALIKE_BENCH_EFS: N,N,..."))
                .collect()
        },
    );
    // Rounds over every ef in turn, so that a noisy moment of a shared machine hits one
    // round of each rather than all of one; the median round is reported.
    let rounds = env_usize("LOOKALIKE_BENCH_ROUNDS", 5);
    let mut timings: Vec<Vec<(f64, f64)>> = vec![Vec::new(); efs.len()];
    let mut recalls = vec![0.0; efs.len()];
    for _ in 0..rounds {
        for (i, &ef) in efs.iter().enumerate() {
            reader.set_expansion_search(ef);
            // Warm the caches, then time on this one thread.
            for q in queries.iter().take(20) {
                reader.search(q, k, SearchMode::Approximate).unwrap();
            }
            let (t, cpu) = (Instant::now(), thread_cpu_seconds());
            let mut hits_found = 0;
            for (q, best) in queries.iter().zip(&truth) {
                let hits = reader.search(q, k, SearchMode::Approximate).unwrap();
                hits_found += hits
                    .iter()
                    .filter(|h| best.iter().any(|(_, id)| *id == h.id))
                    .count();
            }
            timings[i].push((thread_cpu_seconds() - cpu, t.elapsed().as_secs_f64()));
            recalls[i] = hits_found as f64 / (nq * k) as f64;
        }
    }
    for ((ef, recall), mut rounds) in efs.iter().zip(recalls).zip(timings) {
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (cpu, wall) = rounds[rounds.len() / 2];
        let qps = |cpu: f64| nq as f64 / cpu;
        eprintln!(
            "ef {ef:>3}: recall@{k} {recall:.4}, {:.0} queries per CPU second on one thread \
             (median of {} rounds, range {:.0}-{:.0}; {:.3} ms CPU, {:.3} ms wall per query)",
            qps(cpu),
            rounds.len(),
            qps(rounds[rounds.len() - 1].0),
            qps(rounds[0].0),
            cpu * 1000.0 / nq as f64,
            wall * 1000.0 / nq as f64
        );
    }
    let t = Instant::now();
    let exact = reader.search(&queries[0], k, SearchMode::Exact).unwrap();
    eprintln!(
        "exact search: {:.0} ms/query (top-1 agrees with the streamed truth: {})",
        t.elapsed().as_secs_f64() * 1000.0,
        exact[0].id == truth[0][0].1
    );
}

/// Search by words and filters at scale (issue 16), on an index built by
/// `duplicate_scan_benchmark` (LOOKALIKE_BENCH_DB). Synthetic labels and facts are written
/// into its catalog once: 4 labels per item (probabilities 0.6, 0.2, 0.1, 0.05, classes spread
/// evenly), a date taken spread over 20 years. Prints the median milliseconds of: the label
/// scores of a narrow, a middle and a broad word; the items a date filter lets through (a
/// year, a day); and a top-10 search within them against the unfiltered search.
#[test]
#[ignore = "benchmark: needs a big index"]
fn word_and_filter_search_benchmark() {
    let db = PathBuf::from(std::env::var("LOOKALIKE_BENCH_DB").expect("LOOKALIKE_BENCH_DB"));
    {
        // Opening for writing migrates the catalog to the schema with labels.
        drop(Index::open(&db).unwrap());
        let conn = rusqlite::Connection::open(db.join("catalog.sqlite")).unwrap();
        let labelled: i64 = conn
            .query_row("SELECT COUNT(*) FROM labels", [], |r| r.get(0))
            .unwrap();
        if labelled == 0 {
            let t = Instant::now();
            conn.execute_batch(
                "BEGIN;
                 INSERT OR IGNORE INTO labels SELECT (id * 7919) % 1000, id, 0.6 FROM items;
                 INSERT OR IGNORE INTO labels SELECT (id * 104729 + 13) % 1000, id, 0.2 FROM items;
                 INSERT OR IGNORE INTO labels SELECT (id * 15485863 + 7) % 1000, id, 0.1 FROM items;
                 INSERT OR IGNORE INTO labels SELECT (id * 32452843 + 3) % 1000, id, 0.05 FROM items;
                 UPDATE files SET taken = strftime('%Y-%m-%dT%H:%M:%S',
                     946684800 + (id * 104729) % 631152000, 'unixepoch');
                 COMMIT;",
            )
            .unwrap();
            eprintln!(
                "wrote synthetic labels and dates in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    let index = Index::open_read_only(&db).unwrap();
    let median_ms = |f: &mut dyn FnMut() -> usize| -> (f64, usize) {
        let mut found = 0;
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                found = f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        (times[2], found)
    };
    let vocabulary = lookalike::words::vocabulary();
    for word in ["golden retriever", "dog", "animal"] {
        let classes = vocabulary.classes(word).unwrap();
        let (ms, n) = median_ms(&mut || index.class_scores(classes, 0.2).unwrap().len());
        eprintln!(
            "label scores of {word:?} ({} classes): {n} items in {ms:.1} ms",
            classes.len()
        );
    }
    let query = index.vector(1).unwrap().unwrap();
    let (ms, _) = median_ms(&mut || {
        index
            .search(&query, 10, SearchMode::Approximate)
            .unwrap()
            .len()
    });
    eprintln!("unfiltered top-10 search: {ms:.2} ms");
    for taken in ["2019", "2019-06", "2019-06-01"] {
        let filter = Filter {
            taken: Some(taken.parse().unwrap()),
            ..Filter::default()
        };
        let (filter_ms, n) =
            median_ms(&mut || index.matching_items(&filter).unwrap().unwrap().len());
        let within = index.matching_items(&filter).unwrap().unwrap();
        let (search_ms, hits) = median_ms(&mut || {
            index
                .search_within(&query, 10, SearchMode::Approximate, Some(&within))
                .unwrap()
                .len()
        });
        eprintln!(
            "taken {taken}: {n} items pass, filter {filter_ms:.1} ms, top-10 search within them \
             {search_ms:.2} ms ({hits} hits)"
        );
    }
}

/// The duplicate finder's neighbour stage at scale (issue 15): every image's nearest
/// neighbours, searched as `lookalike duplicates` scans (rounds of the catalog's images,
/// searches on both cores), the pairs above the default cosine kept as candidates and joined
/// into groups. The sameness test that follows needs the image files, which synthetic
/// vectors do not have: its cost per pair is measured on real photos (BENCHMARKS.md).
/// LOOKALIKE_BENCH_DB=DIR keeps the index: built there when absent (LOOKALIKE_BENCH_N
/// vectors around LOOKALIKE_BENCH_BASE=vectors.npy with LOOKALIKE_BENCH_NOISE, PCA to 512
/// like the default descriptor), so that a second run measures the scan alone.
#[test]
#[ignore = "benchmark: minutes, gigabytes"]
fn duplicate_scan_benchmark() {
    use lookalike::duplicates::scan::{Neighbourhood, ScanOptions};
    let n = env_usize("LOOKALIKE_BENCH_N", 100_000);
    let db = PathBuf::from(std::env::var("LOOKALIKE_BENCH_DB").expect("LOOKALIKE_BENCH_DB"));
    if !Index::exists(&db) {
        let base = std::env::var("LOOKALIKE_BENCH_BASE").expect("LOOKALIKE_BENCH_BASE");
        let noise = std::env::var("LOOKALIKE_BENCH_NOISE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.5);
        let rows = read_npy_rows(&base);
        let mut config = IndexConfig::new("bench", rows[0].len());
        let whitening = parse_whitening("512").unwrap();
        config.descriptor.whitening = whitening;
        let mut data = Clustered::around(rows, noise, 1);
        let mut writer = Index::create_or_open(&db, &config).unwrap();
        let t = Instant::now();
        fill(&mut writer, &mut data, n, whitening, |_, _| {});
        writer.checkpoint().unwrap();
        eprintln!("built {n} vectors in {:.1} s", t.elapsed().as_secs_f64());
    }
    let index = Index::open_read_only(&db).unwrap();
    let options = ScanOptions::default();
    let total = index.item_count().unwrap() as usize;
    let (t, cpu) = (Instant::now(), process_cpu_seconds());
    let mut neighbourhood = Neighbourhood::default();
    let mut parent: Vec<ItemId> = (0..=index.last_item_id().unwrap()).collect();
    fn root(parent: &mut [ItemId], mut x: ItemId) -> ItemId {
        while parent[x as usize] != x {
            parent[x as usize] = parent[parent[x as usize] as usize];
            x = parent[x as usize];
        }
        x
    }
    let (mut after, mut candidates) = (0, 0usize);
    loop {
        let images = index.images_after(after, 1024).unwrap();
        let Some((last, _)) = images.last() else {
            break;
        };
        after = last.id;
        for c in neighbourhood.candidates(&index, &images, &options).unwrap() {
            let (ra, rb) = (root(&mut parent, c.a.id), root(&mut parent, c.b));
            parent[ra.max(rb) as usize] = ra.min(rb);
            candidates += 1;
        }
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu_seconds() - cpu);
    let mut sizes = std::collections::HashMap::new();
    for id in 1..parent.len() as ItemId {
        *sizes.entry(root(&mut parent, id)).or_insert(0usize) += 1;
    }
    let groups = sizes.values().filter(|&&s| s > 1).count();
    let largest = sizes.values().max().copied().unwrap_or(0);
    eprintln!(
        "scanned {total} images in {wall:.1} s wall, {cpu:.1} CPU s ({:.0} images/s): \
         {candidates} candidate pairs at cosine >= {}, {groups} groups of 2+ (largest {largest}); \
         peak RSS {} MB",
        total as f64 / wall,
        options.min_similarity,
        peak_rss_kb() / 1024
    );
}

/// This process's peak resident set (VmHWM), in KB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What filling a benchmark index took (seconds).
struct Filled {
    gen_s: f64,
    add_s: f64,
    add_cpu: f64,
    learn_s: f64,
    learn_cpu: f64,
}

/// Adds `n` vectors from `data` to `writer` in batches, learning the whitening whenever the
/// engine would (after a batch: first at enough items, again at each 4x growth); `each` sees
/// every batch's ids and vectors as they are added.
fn fill(
    writer: &mut Index,
    data: &mut Clustered,
    n: usize,
    whitening: Option<WhiteningOptions>,
    mut each: impl FnMut(&[ItemId], &[Vec<f32>]),
) -> Filled {
    let mut filled = Filled {
        gen_s: 0.0,
        add_s: 0.0,
        add_cpu: 0.0,
        learn_s: 0.0,
        learn_cpu: 0.0,
    };
    let batch = 2000;
    let mut done = 0;
    while done < n {
        let t0 = Instant::now();
        let m = batch.min(n - done);
        let vectors: Vec<Vec<f32>> = (0..m).map(|_| data.next()).collect();
        filled.gen_s += t0.elapsed().as_secs_f64();
        let files = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| synthetic_image(format!("f{}.jpg", done + i), v.clone()))
            .collect();
        let (t1, c1) = (Instant::now(), process_cpu_seconds());
        let ids = writer.add(files).unwrap();
        filled.add_s += t1.elapsed().as_secs_f64();
        filled.add_cpu += process_cpu_seconds() - c1;
        done += m;
        if let Some(options) = whitening {
            let learned_from = writer.whitening_info().map(|w| w.learned_from);
            if is_due(done as u64, learned_from, Some(options.dims)) {
                let (t, c) = (Instant::now(), process_cpu_seconds());
                let prepared = writer.prepare_whitening(options).unwrap();
                writer.install_whitening(prepared).unwrap();
                let (secs, cpu) = (t.elapsed().as_secs_f64(), process_cpu_seconds() - c);
                eprintln!("learned {options:?} at {done} items: {secs:.1} s wall, {cpu:.1} CPU s");
                filled.learn_s += secs;
                filled.learn_cpu += cpu;
            }
        }
        each(&ids, &vectors);
    }
    filled
}

/// The exact top `k` of each query in `index`'s whitened space: every stored vector streamed
/// from the catalog and projected (in two threads), as `--exact` scores them.
fn whitened_truth(index: &Index, queries: &[Vec<f32>], k: usize) -> Vec<Vec<(f32, ItemId)>> {
    const BATCH: usize = 4096;
    let w = index.whitening().expect("a whitening was learned");
    let queries: Vec<Vec<f32>> = queries.iter().map(|q| w.apply(q)).collect();
    let mut truth: Vec<Vec<(f32, ItemId)>> = vec![Vec::new(); queries.len()];
    let score = |ids: &[ItemId], rows: &[f32], truth: &mut [Vec<(f32, ItemId)>]| {
        let half = ids.len().div_ceil(2) * w.in_dim;
        let projected: Vec<f32> = std::thread::scope(|s| {
            let parts: Vec<_> = rows
                .chunks(half)
                .map(|part| s.spawn(|| w.apply_batch(part)))
                .collect();
            parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
        });
        std::thread::scope(|s| {
            for (queries, truth) in queries
                .chunks(queries.len().div_ceil(2))
                .zip(truth.chunks_mut(queries.len().div_ceil(2)))
            {
                let projected = &projected;
                s.spawn(move || {
                    for (q, best) in queries.iter().zip(truth) {
                        best.extend(
                            ids.iter()
                                .zip(projected.chunks_exact(w.out_dim))
                                .map(|(id, v)| (dot(q, v), *id)),
                        );
                        best.sort_by(|a, b| b.0.total_cmp(&a.0));
                        best.truncate(k);
                    }
                });
            }
        });
    };
    let (mut ids, mut rows) = (
        Vec::with_capacity(BATCH),
        Vec::with_capacity(BATCH * w.in_dim),
    );
    index
        .for_each_vector(|record, v| {
            ids.push(record.id);
            rows.extend_from_slice(v);
            if ids.len() == BATCH {
                score(&ids, &rows, &mut truth);
                ids.clear();
                rows.clear();
            }
        })
        .unwrap();
    if !ids.is_empty() {
        score(&ids, &rows, &mut truth);
    }
    truth
}

/// Recall of f16 against f32 storage in the HNSW graph itself (same data, same parameters),
/// to justify storing the ANN vectors as f16. usearch directly, no catalog.
#[test]
#[ignore = "benchmark: a minute"]
fn f16_vs_f32_recall() {
    let n = env_usize("LOOKALIKE_BENCH_N", 50_000);
    let dim = env_usize("LOOKALIKE_BENCH_DIM", 1280);
    let nq = 200;
    let k = 10;
    let mut data = Clustered::new(dim, (n / 200).max(10), 0.0, 2);
    let queries: Vec<Vec<f32>> = (0..nq).map(|_| data.next()).collect();
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| data.next()).collect();
    let truth: Vec<Vec<u64>> = queries
        .iter()
        .map(|q| {
            let mut s: Vec<(f32, u64)> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (dot(q, v), i as u64))
                .collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0));
            s.iter().take(k).map(|x| x.1).collect()
        })
        .collect();
    let defaults = HnswParams::default();
    for quantization in [usearch::ScalarKind::F32, usearch::ScalarKind::F16] {
        let hnsw = usearch::Index::new(&usearch::IndexOptions {
            dimensions: dim,
            metric: usearch::MetricKind::Cos,
            quantization,
            connectivity: defaults.connectivity,
            expansion_add: defaults.expansion_add,
            expansion_search: defaults.expansion_search,
            multi: false,
        })
        .unwrap();
        hnsw.reserve_capacity_and_threads(n, 2).unwrap();
        std::thread::scope(|s| {
            for part in 0..2 {
                let (hnsw, vectors) = (&hnsw, &vectors);
                s.spawn(move || {
                    for i in (part..n).step_by(2) {
                        hnsw.add(i as u64, &vectors[i]).unwrap();
                    }
                });
            }
        });
        for ef in [16, 32, 64, 128] {
            hnsw.change_expansion_search(ef);
            let cpu = thread_cpu_seconds();
            let found: usize = queries
                .iter()
                .zip(&truth)
                .map(|(q, t)| {
                    let m = hnsw.search(q, k).unwrap();
                    m.keys.iter().filter(|key| t.contains(key)).count()
                })
                .sum();
            eprintln!(
                "{quantization:?} ef {ef:>3}: recall@{k} {:.4}, {:.3} ms CPU per query",
                found as f64 / (nq * k) as f64,
                (thread_cpu_seconds() - cpu) * 1000.0 / nq as f64
            );
        }
    }
}
