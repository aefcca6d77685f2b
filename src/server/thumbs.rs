//! An in-memory thumbnail cache with a byte budget.
//!
//! A results grid asks for the same few dozen thumbnails again and again, and each one costs a
//! decode of the original (possibly a 5120x2880 JPEG). Thumbnails are ~10-20 KB, so a few tens
//! of MB hold thousands; eviction is first-in first-out, which is good enough for that pattern
//! and keeps the structure trivial.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::body::Bytes;

pub struct ThumbCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<i64, Bytes>,
    order: VecDeque<i64>,
    bytes: usize,
}

impl ThumbCache {
    pub fn new(budget: usize) -> Self {
        ThumbCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn get(&self, id: i64) -> Option<Bytes> {
        self.lock().map.get(&id).cloned()
    }

    pub fn insert(&self, id: i64, jpeg: Bytes) {
        if jpeg.len() > self.budget {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.map.insert(id, jpeg.clone()) {
            inner.bytes -= old.len();
        } else {
            inner.order.push_back(id);
        }
        inner.bytes += jpeg.len();
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(evicted) = inner.map.remove(&oldest) {
                inner.bytes -= evicted.len();
            }
        }
    }

    pub fn remove(&self, id: i64) {
        let mut inner = self.lock();
        if let Some(old) = inner.map.remove(&id) {
            inner.bytes -= old.len();
            inner.order.retain(|&x| x != id);
        }
    }

    /// A poisoned lock only means another request panicked mid-update of a cache; the data is
    /// still a valid map, so keep serving.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_beyond_budget() {
        let cache = ThumbCache::new(10);
        cache.insert(1, Bytes::from_static(b"aaaa"));
        cache.insert(2, Bytes::from_static(b"bbbb"));
        assert!(cache.get(1).is_some());
        cache.insert(3, Bytes::from_static(b"cccc"));
        assert!(cache.get(1).is_none(), "oldest entry should be evicted");
        assert_eq!(cache.get(2).as_deref(), Some(&b"bbbb"[..]));
        assert_eq!(cache.get(3).as_deref(), Some(&b"cccc"[..]));
        cache.insert(4, Bytes::from(vec![0u8; 11]));
        assert!(
            cache.get(4).is_none(),
            "an entry over the whole budget is not kept"
        );
        cache.remove(2);
        assert!(cache.get(2).is_none());
        cache.insert(5, Bytes::from_static(b"dddddd"));
        assert!(cache.get(3).is_some() && cache.get(5).is_some());
    }
}
