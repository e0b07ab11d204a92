//! # Layout
//! - [`metadata`]: `TopicIdPartition`, `RemoteLogSegmentId`, `RemoteLogSegmentState` (with its
//!   allowed transitions), `RemoteLogSegmentMetadata`, and `SegmentUpload`, what the broker hands
//!   over.
//! - [`layout`]: object names under the prefix: `topics/<topic>-<topic_id>/<partition>/…`.
//! - [`manifest`]: the partition manifest, its versioned, checksummed encoding, its invariants.
//! - [`indexes`]: the `.indexes` object bundling a segment's indexes, epochs and producer state.
//! - [`store`]: opening the object store from configuration, and the startup check.
//! - [`counters`]: requests and bytes per topic, counted by the cache crate's `CountingStore`.
//! - [`rate`]: the upload byte-rate limit. Retries, backoff and request timeouts are not here:
//!   the manager puts the cache crate's `RetryingStore` around the store, and call sites make
//!   plain requests.
//! - [`manager`]: `RemoteLogManager`, one per broker: config, cache, limits, partition handles.
//! - [`partition`]: `RemotePartition`, one partition's remote log: its manifest in memory and
//!   the fenced manifest write. Its operations are in:
//!   - [`copy`]: `copy_segment` (`.log`, `.indexes`, then the manifest);
//!   - [`read`]: `read` and `offset_for_timestamp`, through the cache;
//!   - [`retention`]: `enforce_retention`, `delete_segments_before`, `delete_all`.
//!   - [`merge`]: `merge_small_segments`, the job that merges small segments (the bounded
//!     RPO's uploads) into larger ones and deletes the replaced ones after a grace period.
//!   - [`archive`]: the Parquet archive job (`archive`, `enforce_archive_retention`).
//! - [`scrub`]: the job that deletes orphaned objects and old manifest versions.
//!
//! # What it is
//!
//! Shale's remote log: sealed segments in object storage, named deterministically, recorded in a
//! per-partition manifest that only a conditional PUT can extend, read back through the chunk
//! cache. Kafka's KIP-405 vocabulary throughout.
//!
//! # Guarantees
//! - Only the manifest says which segments exist. A manifest version is created with
//!   `PutMode::Create` (If-None-Match on S3, a hard link on a local directory), so two writers
//!   can never both write version N+1: the loser gets [`TieringError::Fenced`].
//! - The remote log has no gaps and no overlaps: a copy must start right after the last copied
//!   offset, and every manifest is checked for it on write and on read.
//! - Copy and delete are sequences whose every prefix is a state the next run finishes or the
//!   scrub cleans up (see [`copy`] and [`retention`]).
//! - Nothing on the read path LISTs: a partition's manifest is LISTed once, when its handle
//!   is opened (takeover).

pub mod archive;
pub mod copy;
pub mod counters;
pub mod error;
pub mod indexes;
pub mod layout;
pub mod manager;
pub mod manifest;
pub mod merge;
pub mod metadata;
pub mod partition;
pub mod rate;
pub mod read;
pub mod retention;
pub mod scrub;
pub mod store;

#[cfg(test)]
mod tests;

pub use archive::{ArchiveOutcome, ArchivePolicy};
pub use counters::{RequestCounts, StoreCounters};
pub use error::TieringError;
pub use manager::{RemoteLogManager, RemoteLogManagerConfig};
pub use manifest::{ArchiveFile, Manifest, ReplacedSegment};
pub use merge::{MergeOutcome, MergePolicy};
pub use metadata::{
    EpochEntry, RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteLogSegmentState, SegmentUpload,
    TopicIdPartition,
};
pub use partition::RemotePartition;
pub use read::{RemoteReadOutcome, RemoteRecords, RemoteTimestampOffset};
pub use retention::{RetentionOutcome, RetentionPolicy};
pub use scrub::ScrubReport;
pub use shale_cache::RetryPolicy;
pub use store::{check_store, open_store, S3Config, StoreConfig};
