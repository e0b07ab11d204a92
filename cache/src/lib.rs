//! A byte-range cache in front of object storage. It knows object paths and byte ranges, never
//! Kafka types: the `tiering` crate turns offsets into `(path, byte range)` and reads them here.
//!
//! # Layout
//! - [`config`]: [`CacheConfig`], the cache's bounds, and their validation.
//! - [`chunk_cache`]: [`ChunkCache`], reads assembled from chunks, single-flight and coalesced
//!   fetches, sequential read-ahead that continues into the next object.
//! - `tiers`: the admission policy, a probation LRU and a protected TinyLFU moka cache bounded in
//!   bytes, which keeps one long scan from evicting the working set.
//! - `fetch`: the in-flight table and the task that issues one ranged GET per run of chunks.
//! - `stream`: detection of sequential readers, and how far read-ahead has gone for each.
//! - `chunk`: cache keys, cached entries and the byte-range-to-chunk arithmetic.
//! - [`stats`]: [`CacheStats`], the cache's counters.
//! - [`error`]: [`CacheError`], the one error type of the crate, each variant naming the object.
//! - [`counting`]: [`CountingStore`], an `ObjectStore` decorator counting requests by kind and
//!   bytes, in counters chosen per path by a [`CounterBuckets`] (always built: tiering counts
//!   per topic with it).
//! - [`retrying`]: [`RetryingStore`], an `ObjectStore` decorator that bounds every request by a
//!   timeout and retries failed ones with backoff, as one [`RetryPolicy`] says: the one place
//!   where object-store retries live.
//! - `testing` (tests and the `testing` feature): `FaultyStore`, which fails or stalls requests
//!   on a seeded schedule or on command, and helpers for tests of other crates.

pub mod chunk_cache;
pub mod config;
pub mod counting;
pub mod error;
pub mod retrying;
pub mod stats;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

mod chunk;
mod fetch;
mod stream;
mod tiers;

pub use chunk_cache::ChunkCache;
pub use config::CacheConfig;
pub use counting::{CounterBuckets, CountingStore, RequestCounters, RequestCounts, RequestKind};
pub use error::CacheError;
pub use retrying::{RetryPolicy, RetryingStore};
pub use stats::CacheStats;
