//! The broker's durable local log: one [`Log`] per partition directory `<topic>-<partition>/`.
//!
//! A crate of its own (Kafka's `storage` module): it depends on `shale-formats` only and knows
//! nothing of the network, tiering or cluster metadata.
//!
//! Synchronous file I/O (`std::fs`, positional reads and writes). The owner appends through
//! `&mut Log` (the broker holds a per-partition mutex for that); readers take a [`LogReader`]
//! snapshot under that mutex and do their file reads after releasing it.
//!
//! # Layout
//! - [`local_log`]: [`Log`]: open and recovery, appends (leader and follower), rolling,
//!   retention, DeleteRecords, truncation, flush, [`SyncPoint`]s for group commit, close.
//! - [`reader`]: [`LogReader`]: fetch reads, ListOffsets by timestamp, max timestamp.
//! - `segment`: one `.log` file and its indexes as readers share it.
//! - `active_segment`: the writer's side of the last segment: appends, rolls, recovery.
//! - `scan`: buffered positional reads of a segment and the batch scan used by recovery.
//! - `index`: the sparse offset and time indexes in memory, and the rule that writes them.
//! - `producer_state`: idempotent-producer bookkeeping and its snapshots.
//! - `epoch`: the leader epoch cache and its checkpoint file.
//! - `files`: file names and the atomic replace used by every small metadata file.
//! - `error`: [`LogError`].
//!
//! # Files in a partition directory
//! - `{base_offset:020}.log`: record batches exactly as produced (after offset assignment).
//! - `{base_offset:020}.index`: 8-byte entries, big-endian `u32` offset relative to the base
//!   (the last offset of the indexed batch) and `u32` byte position of that batch.
//! - `{base_offset:020}.timeindex`: 12-byte entries, `i64` largest timestamp so far and `u32`
//!   relative offset (last offset of the batch that carried it). The last entry of a sealed or
//!   cleanly closed segment holds its largest timestamp.
//! - `{offset:020}.snapshot`: producer state as of `offset` (see `producer_state`).
//! - `leader-epoch-checkpoint`: Kafka's text checkpoint: version, count, `epoch offset` lines.
//! - `log-start-offset`: text, one decimal offset and a newline; present only while the log
//!   start offset lies above the first segment's base offset (after DeleteRecords).
//! - `clean-shutdown`: empty; written by [`Log::close`], removed by [`Log::open`]. When present
//!   on open, the active segment is trusted instead of being scanned batch by batch.
//!
//! Every metadata file is replaced atomically (temp file, fsync, rename, directory fsync);
//! `*.tmp` leftovers are deleted on open.

mod active_segment;
mod epoch;
mod error;
mod files;
mod index;
mod local_log;
mod producer_state;
mod reader;
mod scan;
mod segment;
#[cfg(test)]
mod tests;

use shale_formats::ids::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};

pub use epoch::EpochEntry;
pub use error::{is_no_space, LogError};
pub use local_log::{Log, SyncPoint};
pub use reader::LogReader;

/// Kafka's `message.timestamp.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp every batch with the broker's clock on append.
    LogAppendTime,
}

/// Per-partition log settings, with Kafka's topic config names and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this size. Larger
    /// segments mean fewer files; smaller ones let retention and tiering act sooner.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the active segment's first batch is this old (by record time).
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes between offset index entries. Smaller means shorter scans
    /// on read and larger indexes.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: the largest index file; a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// `retention.ms`: delete sealed segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest sealed segments while the log is larger; -1 for no
    /// limit.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync after this many appended offsets (`i64::MAX`: leave it to the OS
    /// and to replication, Kafka's default).
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the last fsync is this old, checked on append and by
    /// [`Log::flush_if_due`].
    pub flush_ms: i64,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `max.message.bytes`: the largest record batch accepted from a producer.
    pub max_message_bytes: usize,
}

/// Kafka's default broker `producer.id.expiration.ms` (one day), for
/// [`Log::remove_expired_producers`].
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        const DAY_MS: i64 = 24 * 60 * 60 * 1000;
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            message_timestamp_type: TimestampType::CreateTime,
            max_message_bytes: 1_048_588,
        }
    }
}

impl LogConfig {
    /// Kafka's bounds on these settings.
    pub fn validate(&self) -> Result<(), String> {
        // Positions in the offset index are u32, and Kafka caps segment.bytes at i32::MAX.
        if !(14..=i32::MAX as u64).contains(&self.segment_bytes) {
            return Err(format!(
                "segment.bytes must be between 14 and {}, not {}",
                i32::MAX,
                self.segment_bytes
            ));
        }
        if self.segment_ms < 1 {
            return Err(format!(
                "segment.ms must be at least 1, not {}",
                self.segment_ms
            ));
        }
        // Below one entry (8 or 12 bytes) every append rolls, as in Kafka.
        if self.segment_index_bytes < 4 || self.segment_index_bytes > i32::MAX as u64 {
            return Err(format!(
                "segment.index.bytes must be between 4 and {}, not {}",
                i32::MAX,
                self.segment_index_bytes
            ));
        }
        if self.flush_messages < 1 || self.flush_ms < 0 {
            return Err("flush.messages must be at least 1 and flush.ms at least 0".to_owned());
        }
        // retention.bytes: any negative value means no limit, as in Kafka.
        if self.retention_ms < -1 {
            return Err(format!(
                "retention.ms must be -1 or more, not {}",
                self.retention_ms
            ));
        }
        Ok(())
    }
}

/// Where an append landed (Kafka's `LogAppendInfo`, the parts a produce response needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// Largest batch max timestamp in the append (the append time for `LogAppendTime`).
    pub max_timestamp: i64,
    /// Last offset of the batch that carried `max_timestamp`.
    pub offset_of_max_timestamp: Offset,
    /// The broker's append time for `LogAppendTime` topics, -1 otherwise.
    pub log_append_time: i64,
    pub log_start_offset: Offset,
    pub record_count: u64,
}

/// The result of a leader append: written, or recognised as a retry of a batch already written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended(AppendInfo),
    /// An idempotent producer resent a batch the log holds; nothing was written and the
    /// producer gets the original placement.
    Duplicate {
        base_offset: Offset,
        last_offset: Offset,
        /// The original batch's append time for `LogAppendTime` topics, -1 otherwise.
        log_append_time: i64,
        log_start_offset: Offset,
    },
}

/// A sealed local segment, as the tiering job uploads it.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    pub base_offset: Offset,
    /// The next segment's base offset: every offset of this segment is below it.
    pub next_offset: Offset,
    /// Largest record timestamp in the segment (-1 when none).
    pub max_timestamp: i64,
    pub size_bytes: u64,
    pub log_path: std::path::PathBuf,
    pub index_path: std::path::PathBuf,
    pub time_index_path: std::path::PathBuf,
}

/// One producer's state in a partition, as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction, if one is open.
    pub current_txn_start_offset: Option<Offset>,
}

/// Bytes for a fetch: whole batches, possibly none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    pub records: bytes::Bytes,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

/// What a retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionResult {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: Offset,
}

/// A ListOffsets answer: a record's offset and timestamp, and the leader epoch of its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: Offset,
    pub leader_epoch: Option<LeaderEpoch>,
}
