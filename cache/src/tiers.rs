//! The admission policy: two moka caches bounded in bytes, probation (LRU) and protected
//! (TinyLFU), plus a bounded memory of recently evicted probation keys ("ghosts").
//!
//! Every fetched chunk enters probation. It moves to protected when a second reader stream uses it,
//! whether it is still in probation or was evicted from it recently (its ghost remembers the
//! first reader). A backfill reads each chunk with one stream only, so however long it is, it
//! churns probation and never touches the protected working set; chunks that read-ahead fetched
//! and nobody read are plain probation entries and go first in LRU order. This is the segmented
//! LRU / 2Q idea, with moka's TinyLFU admission guarding the protected part on top.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use object_store::path::Path;

use crate::chunk::{Chunk, ChunkKey, NO_READER};
use crate::config::Limits;
use crate::stats::Counters;

type ChunkMap = Cache<ChunkKey, Arc<Chunk>>;

pub(crate) struct Tiers {
    probation: ChunkMap,
    protected: ChunkMap,
    ghosts: Arc<Mutex<Ghosts>>,
    counters: Arc<Counters>,
    capacity_bytes: u64,
}

impl Tiers {
    pub fn new(limits: &Limits, counters: Arc<Counters>) -> Self {
        let ghosts = Arc::new(Mutex::new(Ghosts::new(limits.ghosts_max)));
        let probation = {
            let counters = Arc::clone(&counters);
            let ghosts = Arc::clone(&ghosts);
            Cache::builder()
                .name("shale-cache-probation")
                .max_capacity(limits.probation_bytes)
                .weigher(|_key: &ChunkKey, chunk: &Arc<Chunk>| chunk.weight())
                // No frequency-based admission here: a fresh chunk must always get in, or
                // read-ahead would fetch chunks only to have them refused.
                .eviction_policy(EvictionPolicy::lru())
                .support_invalidation_closures()
                .eviction_listener(move |key: Arc<ChunkKey>, chunk: Arc<Chunk>, cause| {
                    counters.resident_sub(chunk.data.len());
                    let promoted = chunk.promoted.load(std::sync::atomic::Ordering::Relaxed);
                    if cause == RemovalCause::Size && !promoted {
                        Counters::add(&counters.evictions, 1);
                        let reader = chunk.last_reader.load(std::sync::atomic::Ordering::Relaxed);
                        if reader != NO_READER {
                            lock(&ghosts).remember((*key).clone(), reader);
                        }
                    }
                })
                .build()
        };
        let protected = {
            let counters = Arc::clone(&counters);
            Cache::builder()
                .name("shale-cache-protected")
                .max_capacity(limits.protected_bytes)
                .weigher(|_key: &ChunkKey, chunk: &Arc<Chunk>| chunk.weight())
                .support_invalidation_closures()
                .eviction_listener(move |_key, chunk: Arc<Chunk>, cause| {
                    counters.resident_sub(chunk.data.len());
                    if cause == RemovalCause::Size {
                        Counters::add(&counters.evictions, 1);
                    }
                })
                .build()
        };
        Tiers {
            probation,
            protected,
            ghosts,
            counters,
            capacity_bytes: limits.capacity_bytes,
        }
    }

    pub async fn get(&self, key: &ChunkKey) -> Option<Arc<Chunk>> {
        match self.protected.get(key).await {
            Some(chunk) => Some(chunk),
            None => self.probation.get(key).await,
        }
    }

    /// Whether `key` is resident (a hint: it may be evicted right after).
    pub fn contains(&self, key: &ChunkKey) -> bool {
        self.protected.contains_key(key) || self.probation.contains_key(key)
    }

    pub async fn insert_probation(&self, key: ChunkKey, chunk: Arc<Chunk>) {
        self.counters.resident_add(chunk.data.len());
        self.probation.insert(key, chunk).await;
        self.enforce_capacity().await;
    }

    /// Moves a chunk a second reader used from probation to protected.
    pub async fn promote(&self, key: ChunkKey, chunk: Arc<Chunk>) {
        self.counters.resident_add(chunk.data.len());
        self.protected.insert(key.clone(), chunk).await;
        self.probation.invalidate(&key).await;
        Counters::add(&self.counters.promotions, 1);
        self.enforce_capacity().await;
    }

    /// The reader that last read `key` before it was evicted from probation, if remembered.
    pub fn take_ghost(&self, key: &ChunkKey) -> Option<u64> {
        lock(&self.ghosts).take(key)
    }

    /// Drops every entry of `path`. Entries of a fetch that is in flight now may still arrive
    /// afterwards; objects are immutable, so those bytes are right, just unneeded, and age out.
    pub fn invalidate(&self, path: &Path) {
        for cache in [&self.probation, &self.protected] {
            let path = path.clone();
            if let Err(e) = cache.invalidate_entries_if(move |key, _| key.path == path) {
                // Only possible if the builder above lost `support_invalidation_closures`.
                tracing::error!(error = %e, "cache invalidation by path is not available");
            }
        }
        lock(&self.ghosts).forget(path);
    }

    pub async fn run_pending_tasks(&self) {
        self.probation.run_pending_tasks().await;
        self.protected.run_pending_tasks().await;
    }

    /// moka applies its bound in batches (up to 64 writes later); with multi-MiB entries that
    /// could overshoot by hundreds of MiB, so evict now whenever the total is over capacity.
    async fn enforce_capacity(&self) {
        if self.counters.resident() > self.capacity_bytes {
            self.run_pending_tasks().await;
        }
    }
}

/// A FIFO of keys evicted from probation with the reader that last read them, bounded in entries.
#[derive(Debug)]
struct Ghosts {
    order: VecDeque<(ChunkKey, u64)>,
    readers: HashMap<ChunkKey, (u64, u64)>,
    seq: u64,
    max: usize,
}

impl Ghosts {
    fn new(max: usize) -> Self {
        Ghosts {
            order: VecDeque::new(),
            readers: HashMap::new(),
            seq: 0,
            max,
        }
    }

    fn remember(&mut self, key: ChunkKey, reader: u64) {
        self.seq += 1;
        self.readers.insert(key.clone(), (reader, self.seq));
        self.order.push_back((key, self.seq));
        while self.order.len() > self.max {
            let Some((old, seq)) = self.order.pop_front() else {
                break;
            };
            // Only drop the reader entry if it is this one, not a later remember of the same key.
            if self.readers.get(&old).is_some_and(|&(_, s)| s == seq) {
                self.readers.remove(&old);
            }
        }
    }

    fn take(&mut self, key: &ChunkKey) -> Option<u64> {
        self.readers.remove(key).map(|(reader, _)| reader)
    }

    fn forget(&mut self, path: &Path) {
        self.readers.retain(|key, _| key.path != *path);
        self.order.retain(|(key, _)| key.path != *path);
    }
}

/// Locks a mutex that no code path panics under; if one ever did, the data is still consistent
/// enough for a cache (counters and hints), so carry on rather than propagate the panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ghost list stays bounded and forgets the oldest keys first.
    #[test]
    fn ghosts_are_bounded_fifo() {
        let mut ghosts = Ghosts::new(3);
        let key = |i: u64| ChunkKey::chunk(&Path::from("a"), i);
        for i in 0..10 {
            ghosts.remember(key(i), i + 1);
        }
        assert!(ghosts.order.len() <= 3 && ghosts.readers.len() <= 3);
        assert_eq!(ghosts.take(&key(0)), None);
        assert_eq!(ghosts.take(&key(9)), Some(10));
        assert_eq!(ghosts.take(&key(9)), None);
        // Re-remembering a key keeps its newest reader.
        ghosts.remember(key(8), 42);
        ghosts.remember(key(20), 1);
        assert_eq!(ghosts.take(&key(8)), Some(42));
        ghosts.forget(&Path::from("a"));
        assert!(ghosts.readers.is_empty() && ghosts.order.is_empty());
    }
}
