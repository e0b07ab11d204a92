//! [`CacheStats`], the cache's counters as a snapshot, and the atomics behind them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A snapshot of a cache's counters since it was created. Counters are monotonic except
/// `resident_bytes`, a gauge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Chunks (and whole objects) a read found resident.
    pub hits: u64,
    /// Chunks (and whole objects) a read had to fetch or wait for.
    pub misses: u64,
    /// Ranged (or whole-object) GET requests issued, foreground and read-ahead.
    pub get_requests: u64,
    /// Bytes received from those GETs.
    pub bytes_fetched: u64,
    /// GET requests issued by read-ahead (a subset of `get_requests`).
    pub readahead_fetches: u64,
    /// Chunks evicted to stay within capacity (not counting invalidation or promotion).
    pub evictions: u64,
    /// Bytes of chunks and whole objects the cache holds now.
    pub resident_bytes: u64,
    /// Hits on chunks that read-ahead fetched before anyone asked for them.
    pub readahead_hits: u64,
    /// Chunks moved from probation to protected because a second reader used them.
    pub promotions: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 when nothing was read.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub get_requests: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub readahead_fetches: AtomicU64,
    pub evictions: AtomicU64,
    /// Signed so that a removal observed before its matching insertion cannot wrap.
    pub resident_bytes: AtomicI64,
    pub readahead_hits: AtomicU64,
    pub promotions: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn resident_add(&self, bytes: usize) {
        self.resident_bytes
            .fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn resident_sub(&self, bytes: usize) {
        self.resident_bytes
            .fetch_sub(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn resident(&self) -> u64 {
        u64::try_from(self.resident_bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub fn snapshot(&self) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            get_requests: get(&self.get_requests),
            bytes_fetched: get(&self.bytes_fetched),
            readahead_fetches: get(&self.readahead_fetches),
            evictions: get(&self.evictions),
            resident_bytes: self.resident(),
            readahead_hits: get(&self.readahead_hits),
            promotions: get(&self.promotions),
        }
    }
}
