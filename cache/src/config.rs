//! [`CacheConfig`]: the cache's bounds, and their validation into the derived limits the cache
//! runs with.

use std::path::PathBuf;

use crate::error::CacheError;

const MIB: u64 = 1024 * 1024;

/// Settings of a [`ChunkCache`](crate::ChunkCache). Every bound has a default that suits a
/// broker with a few hundred MiB to spare for cold reads; construct with
/// `CacheConfig { capacity_bytes: .., ..CacheConfig::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Size of one chunk, the unit of caching and of ranged GETs (GETs start on a chunk
    /// boundary). Default 4 MiB: large enough that GET request costs stay at or below one per
    /// 4 MiB read, small enough that a cold read does not wait for much more than it asked for.
    /// At most `u32::MAX`.
    pub chunk_bytes: u64,
    /// Bound on the bytes of all cached chunks and whole objects. Default 512 MiB. Split into a
    /// probation part (`probation_percent`) and a protected part; see [`ChunkCache`](crate::ChunkCache).
    pub capacity_bytes: u64,
    /// How many chunks a sequential reader may have fetched ahead of it (per reader stream),
    /// continuing into the next object. Default 4. `0` turns read-ahead off.
    pub readahead_chunks: usize,
    /// Bound on ranged GETs in flight across the whole cache, foreground and read-ahead together.
    /// Default 16. Read-ahead only takes a slot when more than a quarter of them are free, so it
    /// never queues ahead of a reader that is waiting.
    pub max_concurrent_fetches: usize,
    /// Optional local directory to spill evicted chunks to. Not implemented yet: setting it makes
    /// [`ChunkCache::new`](crate::ChunkCache::new) return [`CacheError::InvalidConfig`].
    pub spill_dir: Option<PathBuf>,
    /// Most chunks one ranged GET may span when several consecutive chunks are missing at once
    /// (a large read, or the first read-ahead of a stream). Default 4 (16 MiB with 4 MiB chunks):
    /// fewer requests, at the cost of waiting for the whole span before any of it is served.
    pub get_chunks_max: usize,
    /// Share of `capacity_bytes`, in percent, for the probation part: chunks read by only one
    /// reader so far (including chunks fetched by read-ahead and not read yet). A scan churns only
    /// this part. Default 25; 1..=99.
    pub probation_percent: u8,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            chunk_bytes: 4 * MIB,
            capacity_bytes: 512 * MIB,
            readahead_chunks: 4,
            max_concurrent_fetches: 16,
            spill_dir: None,
            get_chunks_max: 4,
            probation_percent: 25,
        }
    }
}

/// The limits a cache runs with, derived from a validated [`CacheConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub chunk_bytes: u64,
    pub capacity_bytes: u64,
    pub probation_bytes: u64,
    pub protected_bytes: u64,
    pub readahead_chunks: usize,
    pub max_concurrent_fetches: usize,
    /// Free GET slots read-ahead leaves to foreground reads.
    pub readahead_reserve: usize,
    pub get_chunks_max: u64,
    /// Largest object [`ChunkCache::read_all`](crate::ChunkCache::read_all) keeps as one entry.
    pub whole_object_bytes_max: u64,
    /// How many recently evicted probation chunks are remembered (keys only), so that a second
    /// reader arriving after an eviction still counts as reuse.
    pub ghosts_max: usize,
}

impl CacheConfig {
    pub(crate) fn limits(&self) -> Result<Limits, CacheError> {
        let invalid = |reason: String| Err(CacheError::InvalidConfig { reason });
        if let Some(dir) = &self.spill_dir {
            return invalid(format!(
                "spill_dir is set to {}, but spilling chunks to a local directory is not \
                 implemented yet; leave spill_dir unset",
                dir.display()
            ));
        }
        if self.chunk_bytes == 0 || self.chunk_bytes > u64::from(u32::MAX) {
            return invalid(format!(
                "chunk_bytes is {}, but it must be between 1 and {} bytes",
                self.chunk_bytes,
                u32::MAX
            ));
        }
        if !(1..=99).contains(&self.probation_percent) {
            return invalid(format!(
                "probation_percent is {}, but it must be between 1 and 99",
                self.probation_percent
            ));
        }
        if self.max_concurrent_fetches == 0 {
            return invalid("max_concurrent_fetches is 0, so no chunk could ever be fetched; it must be at least 1".to_string());
        }
        if self.get_chunks_max == 0 {
            return invalid(
                "get_chunks_max is 0, but a GET spans at least one chunk; it must be at least 1"
                    .to_string(),
            );
        }
        let probation_bytes =
            (u128::from(self.capacity_bytes) * u128::from(self.probation_percent) / 100) as u64;
        let protected_bytes = self.capacity_bytes - probation_bytes;
        if probation_bytes < self.chunk_bytes || protected_bytes < self.chunk_bytes {
            return invalid(format!(
                "capacity_bytes is {} with probation_percent {}, which leaves {} bytes for \
                 probation and {} for protected chunks; each part must hold at least one chunk \
                 of {} bytes",
                self.capacity_bytes,
                self.probation_percent,
                probation_bytes,
                protected_bytes,
                self.chunk_bytes
            ));
        }
        let capacity_chunks = self.capacity_bytes / self.chunk_bytes;
        Ok(Limits {
            chunk_bytes: self.chunk_bytes,
            capacity_bytes: self.capacity_bytes,
            probation_bytes,
            protected_bytes,
            readahead_chunks: self.readahead_chunks,
            max_concurrent_fetches: self.max_concurrent_fetches,
            readahead_reserve: self.max_concurrent_fetches / 4,
            get_chunks_max: self.get_chunks_max as u64,
            whole_object_bytes_max: (probation_bytes / 2)
                .max(self.chunk_bytes)
                .min(probation_bytes)
                .min(u64::from(u32::MAX)),
            ghosts_max: usize::try_from(capacity_chunks)
                .unwrap_or(usize::MAX)
                .min(1 << 20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are valid and split capacity as documented.
    #[test]
    fn defaults_are_valid() {
        let limits = CacheConfig::default().limits().expect("defaults are valid");
        assert_eq!(limits.probation_bytes, 128 * MIB);
        assert_eq!(limits.protected_bytes, 384 * MIB);
        assert_eq!(limits.probation_bytes + limits.protected_bytes, 512 * MIB);
        assert_eq!(limits.whole_object_bytes_max, 64 * MIB);
        assert_eq!(limits.readahead_reserve, 4);
    }

    /// Every invalid setting is refused with a sentence naming it.
    #[test]
    fn invalid_settings_are_refused() {
        let cases = [
            CacheConfig {
                spill_dir: Some(PathBuf::from("/tmp/spill")),
                ..CacheConfig::default()
            },
            CacheConfig {
                chunk_bytes: 0,
                ..CacheConfig::default()
            },
            CacheConfig {
                chunk_bytes: u64::from(u32::MAX) + 1,
                capacity_bytes: u64::MAX,
                ..CacheConfig::default()
            },
            CacheConfig {
                probation_percent: 100,
                ..CacheConfig::default()
            },
            CacheConfig {
                max_concurrent_fetches: 0,
                ..CacheConfig::default()
            },
            CacheConfig {
                get_chunks_max: 0,
                ..CacheConfig::default()
            },
            CacheConfig {
                capacity_bytes: 4 * MIB,
                ..CacheConfig::default()
            },
        ];
        let names = [
            "spill_dir",
            "chunk_bytes",
            "chunk_bytes",
            "probation_percent",
            "max_concurrent_fetches",
            "get_chunks_max",
            "capacity_bytes",
        ];
        for (config, name) in cases.iter().zip(names) {
            let err = config.limits().expect_err("invalid config accepted");
            assert!(err.to_string().contains(name), "{err} should name {name}");
        }
    }
}
