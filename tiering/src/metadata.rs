//! Kafka's remote-log vocabulary: [`TopicIdPartition`], [`RemoteLogSegmentId`],
//! [`RemoteLogSegmentState`] with its allowed transitions, [`RemoteLogSegmentMetadata`], and
//! [`SegmentUpload`], what the broker hands over for a sealed segment.

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shale_formats::ids::Offset;
use uuid::Uuid;

/// A partition of a topic, named by both the topic's name and its id (Kafka's
/// `TopicIdPartition`). The id keeps a re-created topic of the same name apart from the old one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicIdPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl TopicIdPartition {
    pub fn new(topic: impl Into<String>, topic_id: Uuid, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            topic_id,
            partition,
        }
    }
}

impl fmt::Display for TopicIdPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{} (topic id {})",
            self.topic, self.partition, self.topic_id
        )
    }
}

/// The id of one upload of one segment (Kafka's `RemoteLogSegmentId`): fresh for every upload
/// attempt, so a retry after a crash never writes over a half-written object of an earlier try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoteLogSegmentId(pub Uuid);

impl RemoteLogSegmentId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for RemoteLogSegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

/// Kafka's `RemoteLogSegmentState`.
///
/// ```text
///  COPY_SEGMENT_STARTED ──► COPY_SEGMENT_FINISHED ──► DELETE_SEGMENT_STARTED ──► DELETE_SEGMENT_FINISHED
///          │                                                 ▲
///          └─────────────────────────────────────────────────┘  (an abandoned copy is deleted)
/// ```
///
/// Every state may also move to itself, so that a retried step is a no-op rather than an error
/// (Kafka's `isValidTransition`).
///
/// Only `CopySegmentFinished` and `DeleteSegmentStarted` are ever written to a manifest:
/// a started copy lives in memory until its objects are uploaded (an interrupted copy leaves
/// objects no manifest names, which the scrub removes), and a finished delete is the segment's
/// removal from the next manifest version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RemoteLogSegmentState {
    CopySegmentStarted,
    CopySegmentFinished,
    DeleteSegmentStarted,
    DeleteSegmentFinished,
}

impl RemoteLogSegmentState {
    /// Whether `self → next` is allowed.
    pub fn is_valid_transition(self, next: Self) -> bool {
        use RemoteLogSegmentState::*;
        self == next
            || matches!(
                (self, next),
                (CopySegmentStarted, CopySegmentFinished)
                    | (CopySegmentStarted, DeleteSegmentStarted)
                    | (CopySegmentFinished, DeleteSegmentStarted)
                    | (DeleteSegmentStarted, DeleteSegmentFinished)
            )
    }

    /// States a manifest may hold.
    pub fn is_persisted(self) -> bool {
        matches!(
            self,
            RemoteLogSegmentState::CopySegmentFinished
                | RemoteLogSegmentState::DeleteSegmentStarted
        )
    }
}

/// A leader epoch and the first offset written in it, as far as it concerns one segment: the
/// same type the local log keeps.
pub use shale_formats::epoch::EpochEntry;

/// One remote segment, as the manifest records it (Kafka's `RemoteLogSegmentMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteLogSegmentMetadata {
    pub segment_id: RemoteLogSegmentId,
    pub base_offset: Offset,
    /// Last offset in the segment, inclusive.
    pub end_offset: Offset,
    /// Largest record timestamp in the segment (ms), or -1 if none.
    pub max_timestamp: i64,
    /// Bytes of the `.log` object.
    pub size_bytes: u64,
    /// Bytes of the `.indexes` object.
    pub indexes_size_bytes: u64,
    /// CRC-32C of the `.log` object's bytes, computed while uploading.
    pub log_crc32c: u32,
    /// When the copy finished (ms since the epoch).
    pub created_at_ms: i64,
    /// Leader epochs of the segment's records: each epoch with the first offset it wrote here.
    pub leader_epochs: Vec<EpochEntry>,
    pub state: RemoteLogSegmentState,
}

impl RemoteLogSegmentMetadata {
    /// Whether `offset` lies in this segment.
    pub fn contains(&self, offset: Offset) -> bool {
        self.base_offset <= offset && offset <= self.end_offset
    }

    /// Moves to `next`, or returns the rejected pair.
    pub(crate) fn transition(
        &mut self,
        next: RemoteLogSegmentState,
    ) -> Result<(), (RemoteLogSegmentState, RemoteLogSegmentState)> {
        if self.state.is_valid_transition(next) {
            self.state = next;
            Ok(())
        } else {
            Err((self.state, next))
        }
    }
}

/// A sealed local segment, handed over by the broker to be copied to the remote tier.
#[derive(Debug, Clone)]
pub struct SegmentUpload {
    pub base_offset: Offset,
    /// Last offset in the segment, inclusive.
    pub end_offset: Offset,
    pub max_timestamp: i64,
    /// Size of the `.log` file; the file must have exactly this many bytes.
    pub size_bytes: u64,
    /// The local `.log` file. It is read, never changed.
    pub log_path: PathBuf,
    /// The segment's `.index` bytes (entries relative to `base_offset`).
    pub offset_index: Bytes,
    /// The segment's `.timeindex` bytes.
    pub time_index: Bytes,
    /// The segment's `.txnindex` bytes, if it has aborted transactions.
    pub transaction_index: Option<Bytes>,
    /// Leader epochs of the segment's records, each with its first offset in this segment.
    pub leader_epochs: Vec<EpochEntry>,
    /// The producer-state snapshot taken at `end_offset + 1`, if any.
    pub producer_snapshot: Option<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::RemoteLogSegmentState::{self, *};

    /// The transition table is Kafka's: forward along the lifecycle, an abandoned copy may be
    /// deleted, every state may repeat itself, nothing goes backwards.
    #[test]
    fn transitions_follow_the_lifecycle() {
        let all = [
            CopySegmentStarted,
            CopySegmentFinished,
            DeleteSegmentStarted,
            DeleteSegmentFinished,
        ];
        let allowed = [
            (CopySegmentStarted, CopySegmentFinished),
            (CopySegmentStarted, DeleteSegmentStarted),
            (CopySegmentFinished, DeleteSegmentStarted),
            (DeleteSegmentStarted, DeleteSegmentFinished),
        ];
        for from in all {
            for to in all {
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(from.is_valid_transition(to), expected, "{from:?} -> {to:?}");
            }
        }
        let persisted: Vec<RemoteLogSegmentState> =
            all.into_iter().filter(|s| s.is_persisted()).collect();
        assert_eq!(persisted, vec![CopySegmentFinished, DeleteSegmentStarted]);
    }
}
