//! [`TieringError`]: every way a remote-log operation can fail, with the partition, offset and
//! object path it concerns. Expected outcomes (an offset below the remote log start, nothing
//! remote yet) are not errors: see [`crate::RemoteReadOutcome`].

use shale_cache::retrying::{RetryError, RETRYING_STORE};
use shale_formats::ids::Offset;

use crate::metadata::TopicIdPartition;

/// Errors of the remote log. `Display` is a sentence naming what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum TieringError {
    #[error("the object store configuration is invalid: {reason}")]
    InvalidConfig { reason: String },

    #[error("the object store {store} is not usable: {what} failed for {path}: {source}")]
    StoreUnusable {
        store: String,
        what: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },

    #[error("the object store {store} answered the startup probe at {path} wrongly: {reason}")]
    StoreMisbehaves {
        store: String,
        path: String,
        reason: String,
    },

    #[error("{operation} of {path} failed for {tp}: {source}")]
    Store {
        tp: TopicIdPartition,
        operation: &'static str,
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },

    #[error(
        "{operation} of {path} for {tp} gave up after {attempts} attempts; the last error was: \
         {source}"
    )]
    RetriesExhausted {
        tp: TopicIdPartition,
        operation: &'static str,
        path: String,
        attempts: u32,
        #[source]
        source: Box<TieringError>,
    },

    #[error("{operation} of {path} for {tp} did not finish within {timeout_ms} ms")]
    Timeout {
        tp: TopicIdPartition,
        operation: &'static str,
        path: String,
        timeout_ms: u64,
    },

    #[error("archiving {tp} failed: {reason}")]
    Archive {
        tp: TopicIdPartition,
        reason: String,
    },

    #[error("reading {path} through the cache failed for {tp}: {reason}")]
    Cache {
        tp: TopicIdPartition,
        path: String,
        reason: String,
    },

    #[error("the manifest {path} of {tp} is corrupt: {reason}")]
    CorruptManifest {
        tp: TopicIdPartition,
        path: String,
        reason: String,
    },

    #[error("the index bundle {path} of {tp} is corrupt: {reason}")]
    CorruptIndexes {
        tp: TopicIdPartition,
        path: String,
        reason: String,
    },

    #[error(
        "the remote segment {path} of {tp} holds invalid data at byte {position} (reading offset \
         {offset}): {reason}"
    )]
    CorruptSegment {
        tp: TopicIdPartition,
        path: String,
        offset: Offset,
        position: u64,
        reason: String,
    },

    #[error(
        "the local segment {path} of {tp} (offsets {base_offset}..={end_offset}) cannot be \
         uploaded: {reason}"
    )]
    InvalidSegment {
        tp: TopicIdPartition,
        path: String,
        base_offset: Offset,
        end_offset: Offset,
        reason: String,
    },

    #[error("reading the local segment {path} of {tp} failed: {source}")]
    LocalIo {
        tp: TopicIdPartition,
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the segment {base_offset}..={end_offset} of {tp} does not follow the remote log, which \
         ends at {remote_log_end_offset}: the next segment must start at {expected_base_offset}"
    )]
    NotContiguous {
        tp: TopicIdPartition,
        base_offset: Offset,
        end_offset: Offset,
        remote_log_end_offset: Offset,
        expected_base_offset: Offset,
    },

    #[error(
        "{tp} is fenced: another writer created manifest version {version} ({path}) first; this \
         handle reloaded it and did not overwrite it"
    )]
    Fenced {
        tp: TopicIdPartition,
        version: u64,
        path: String,
    },

    #[error(
        "segment {segment} of {tp} cannot move from {from:?} to {to:?}: that transition is not \
         allowed"
    )]
    InvalidTransition {
        tp: TopicIdPartition,
        segment: String,
        from: crate::metadata::RemoteLogSegmentState,
        to: crate::metadata::RemoteLogSegmentState,
    },

    #[error("{tp} was deleted from the remote tier (manifest {path} is a deletion marker)")]
    PartitionDeleted { tp: TopicIdPartition, path: String },
}

impl TieringError {
    /// True if the store said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Store { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }

    /// True if the operation may succeed when repeated: transport failures, timeouts and
    /// server-side errors. Missing objects, refused preconditions, permissions and corrupt data
    /// are permanent.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Store { source, .. } | Self::StoreUnusable { source, .. } => {
                shale_cache::retrying::is_retriable(source)
            }
            Self::Timeout { .. } => true,
            Self::Cache { .. } => true,
            Self::RetriesExhausted { .. } => false,
            _ => false,
        }
    }
}

/// The error of `operation` on `path` for `tp`, keeping what the retrying store decorator said:
/// a request that timed out is a [`TieringError::Timeout`], one it gave up on a
/// [`TieringError::RetriesExhausted`] holding the last attempt's error.
pub(crate) fn store_error(
    tp: &TopicIdPartition,
    operation: &'static str,
    path: &object_store::path::Path,
    source: object_store::Error,
) -> TieringError {
    match source {
        object_store::Error::Generic { store, source }
            if store == RETRYING_STORE && source.is::<RetryError>() =>
        {
            match *source.downcast::<RetryError>().expect("checked above") {
                RetryError::TimedOut { timeout, .. } => TieringError::Timeout {
                    tp: tp.clone(),
                    operation,
                    path: path.to_string(),
                    timeout_ms: timeout.as_millis() as u64,
                },
                RetryError::GaveUp {
                    attempts, source, ..
                } => TieringError::RetriesExhausted {
                    tp: tp.clone(),
                    operation,
                    path: path.to_string(),
                    attempts,
                    source: Box::new(store_error(tp, operation, path, *source)),
                },
            }
        }
        source => TieringError::Store {
            tp: tp.clone(),
            operation,
            path: path.to_string(),
            source: Box::new(source),
        },
    }
}
