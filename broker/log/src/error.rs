//! The log's one error type. Expected outcomes (a duplicate batch, nothing to read) are values
//! elsewhere; these are the failures, each carrying the partition directory and the offsets or
//! producer fields a handler needs to pick a Kafka error code and an operator needs to act.

use std::io;
use std::path::PathBuf;

use shale_formats::ids::{Offset, ProducerEpoch, ProducerId};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Kafka `OFFSET_OUT_OF_RANGE`.
    #[error(
        "offset {offset} is out of range for the log in {dir}, which holds offsets \
         {log_start_offset} (inclusive) to {log_end_offset} (exclusive)"
    )]
    OffsetOutOfRange {
        dir: PathBuf,
        offset: Offset,
        log_start_offset: Offset,
        log_end_offset: Offset,
    },

    /// Kafka `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    #[error(
        "producer {producer_id} (epoch {producer_epoch}) sent a batch starting at sequence \
         {first_sequence} to the log in {dir}, but the last sequence the log holds for it is \
         {last_sequence}"
    )]
    OutOfOrderSequence {
        dir: PathBuf,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        first_sequence: i32,
        /// `-1` when the log holds no sequence for this producer epoch.
        last_sequence: i32,
    },

    /// Kafka `INVALID_PRODUCER_EPOCH` (since 2.7 the non-fatal replacement of `PRODUCER_FENCED`
    /// on the produce path).
    #[error(
        "producer {producer_id} wrote with epoch {producer_epoch} to the log in {dir}, which \
         already holds epoch {current_epoch} for it: a newer instance of this producer exists"
    )]
    InvalidProducerEpoch {
        dir: PathBuf,
        producer_id: ProducerId,
        producer_epoch: ProducerEpoch,
        current_epoch: ProducerEpoch,
    },

    /// Kafka `MESSAGE_TOO_LARGE` (or `RECORD_BATCH_TOO_LARGE` when `limit` is the segment size).
    #[error(
        "a record batch of {size} bytes for the log in {dir} is larger than {limit_name} \
         ({limit} bytes)"
    )]
    RecordTooLarge {
        dir: PathBuf,
        size: usize,
        limit: u64,
        limit_name: &'static str,
    },

    /// Kafka `CORRUPT_MESSAGE`: bytes that do not parse as record batches.
    #[error("the record batches for the log in {dir} are corrupt: {reason}")]
    CorruptRecord { dir: PathBuf, reason: String },

    /// Kafka `INVALID_RECORD`: well-formed batches this append path must not accept.
    #[error("the record batches for the log in {dir} are not accepted: {reason}")]
    InvalidRecord { dir: PathBuf, reason: String },

    /// A follower append whose first offset is below the log end offset (Kafka's
    /// `UnexpectedAppendOffsetException`): the replica must truncate first.
    #[error(
        "a replicated append to the log in {dir} starts at offset {first_offset}, below the log \
         end offset {log_end_offset}"
    )]
    UnexpectedAppendOffset {
        dir: PathBuf,
        first_offset: Offset,
        log_end_offset: Offset,
    },

    /// A `LogConfig` outside Kafka's bounds.
    #[error("the log configuration for {dir} is invalid: {reason}")]
    InvalidConfig { dir: PathBuf, reason: String },

    /// A small metadata file (leader epoch checkpoint, log start offset, producer snapshot
    /// listing) that cannot be parsed. Kafka refuses to load such a log too.
    #[error("the file {path} is corrupt: {reason}")]
    CorruptCheckpoint { path: PathBuf, reason: String },

    /// A disk operation failed; `action` says what the log was doing.
    #[error("could not {action} ({path}): {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// `map_err(io_error(&path, "read a segment"))`.
pub(super) fn io_error(
    path: &std::path::Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError::Io {
        path,
        action,
        source,
    }
}

/// Whether an I/O error means the filesystem is full (or the quota is spent): what the broker
/// treats as disk pressure rather than a broken disk.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}
