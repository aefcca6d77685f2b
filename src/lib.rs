//! lookalike: content-based image retrieval.
//!
//! Data flow: [`ingest`] scans files, [`image`] decodes and preprocesses them, [`model`] turns
//! pixels into L2-normalised feature vectors (the [`featurizer`] joins the two), and [`index`]
//! stores them (a SQLite catalog as the source of truth, an HNSW index derived from it) and
//! answers nearest-neighbour queries; [`video`] samples videos into frames (with ffmpeg) so a
//! video is searchable frame by frame; [`eval`] measures retrieval quality; [`verify`]
//! re-ranks the top results by spatial verification of local features; [`shard`] holds
//! vectors embedded away from the index (on a Spark cluster) until they are imported.
//! [`words`] maps words and phrases ("dog", "golden retriever") to the ImageNet classes they
//! name (WordNet's noun hierarchy), so that the classes stored per image answer text queries.
//! [`engine::Engine`] is the handle the CLI and the HTTP server ([`server`]) use.

pub mod descriptor;
pub mod duplicates;
pub mod engine;
pub mod error;
pub mod eval;
pub mod featurizer;
pub mod image;
pub mod index;
pub mod ingest;
pub mod model;
pub mod server;
pub mod shard;
pub mod verify;
pub mod video;
pub mod words;

pub use error::{Error, Result};

/// The number of cores to use by default (decoders, ONNX Runtime threads, search pools);
/// 2 when the system does not say.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `f` applied to each item on up to `threads` threads (scoped: `f` may borrow), the results
/// in the items' order. A slot is None only if the thread computing it panicked.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Option<R>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = f(item);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten())
        .collect()
}
