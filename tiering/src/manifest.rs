//! The partition manifest: the only record of which remote segments exist.
//!
//! # Encoding (format 1)
//!
//! ```text
//! offset  size  field
//!      0     4  magic "SHMF"
//!      4     2  format, u16 big-endian (1)
//!      6     4  body length in bytes, u32 big-endian
//!     10     4  CRC-32C of the body, u32 big-endian
//!     14     n  body: UTF-8 JSON of [`Manifest`]
//! ```
//!
//! JSON keeps a manifest readable with `tail -c +15 | jq`; the framing adds what JSON lacks, a
//! version and a checksum. A reader refuses a format it does not know (a newer Shale wrote it)
//! rather than guessing. Unknown JSON fields are ignored, so a later format 1 writer may add
//! optional fields; anything that changes meaning bumps the format.
//!
//! # Validation on read
//!
//! [`decode`] checks the framing, the CRC, that the body's version and partition match the
//! object's name, and the invariants below. Any failure is a [`TieringError::CorruptManifest`]
//! naming the object.
//! - segments are sorted by base offset and contiguous: each starts at the previous end + 1;
//! - each has `base_offset ≤ end_offset`, and only the persisted states
//!   (`COPY_SEGMENT_FINISHED`, `DELETE_SEGMENT_STARTED`);
//! - `end_offset` (the highest offset ever copied) is at least the last segment's end;
//! - a segment in `replaced` (merged away, awaiting deletion) is not also in `segments`.
//!
//! # Fallback rule
//!
//! The reader never falls back to version N-1 when version N is corrupt. Falling back is
//! provably safe only if nobody acted on version N, and that can't be shown: every backend
//! writes a version atomically (S3 PUT, LocalFileSystem's hard link of a fully written staging
//! file), and a version is acknowledged only after its write succeeded, so a corrupt N is
//! not a torn write from a crash but damage to a version that was acknowledged, and that may
//! already have been acted on (the broker deletes local segments once a manifest lists them).
//! Reading N-1 then would make acknowledged data invisible, and writing N+1 from N-1 would
//! lose it for good. So the partition's remote log stops with an error naming the path, for an
//! operator to look at; nothing is overwritten.

use serde::{Deserialize, Serialize};
use shale_formats::ids::Offset;
use uuid::Uuid;

use crate::metadata::{
    RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteLogSegmentState, TopicIdPartition,
};

pub const MANIFEST_MAGIC: &[u8; 4] = b"SHMF";
pub const MANIFEST_FORMAT: u16 = 1;
const HEADER_LEN: usize = 14;

/// One version of a partition's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Equals the number in the object's name.
    pub version: u64,
    pub tp: TopicIdPartition,
    /// The handle that wrote this version: lets a writer whose conditional PUT timed out tell its
    /// own version from a competitor's.
    pub writer_id: Uuid,
    pub written_at_ms: i64,
    /// The log start offset set by DeleteRecords, if above the first segment's base offset.
    pub log_start_offset: Option<Offset>,
    /// The highest offset ever copied, kept after retention has deleted every segment so that
    /// the next copy must still continue from it.
    pub end_offset: Option<Offset>,
    /// A deletion marker: the partition's topic was deleted, and its objects are being removed.
    #[serde(default)]
    pub deleted: bool,
    /// Oldest first.
    pub segments: Vec<RemoteLogSegmentMetadata>,
    /// The Parquet archive's files, oldest first (see [`crate::archive`]).
    #[serde(default)]
    pub archive_files: Vec<ArchiveFile>,
    /// The last offset the archive has covered, inclusive: the next archive file starts after
    /// it. Kept when retention deletes every file.
    #[serde(default)]
    pub archived_end_offset: Option<Offset>,
    /// Segments a merge replaced (see [`crate::merge`]): no longer readable, their objects kept
    /// until a grace period has passed so that readers in flight finish, then deleted.
    #[serde(default)]
    pub replaced: Vec<ReplacedSegment>,
}

/// A segment whose records now live in a merged segment; its objects await deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedSegment {
    pub segment_id: RemoteLogSegmentId,
    pub base_offset: Offset,
    pub size_bytes: u64,
    pub replaced_at_ms: i64,
}

/// One Parquet archive file, as the manifest records it. Its object name is derived from
/// `first_offset` and `last_offset`, the range of log offsets it covers; its rows are the data
/// records of that range (control records are left out, and a DeleteRecords rewrite drops
/// the rows below the new log start offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveFile {
    pub first_offset: Offset,
    pub last_offset: Offset,
    pub rows: u64,
    /// Bytes of the Parquet object.
    pub size_bytes: u64,
    /// Bytes of record batches it was made from.
    pub input_bytes: u64,
    /// The lowest offset of a row, if it has rows.
    pub min_row_offset: Option<Offset>,
    pub min_timestamp: Option<i64>,
    pub max_timestamp: Option<i64>,
    pub created_at_ms: i64,
}

impl Manifest {
    /// The state before anything was written (version 0, which is never stored).
    pub fn empty(tp: TopicIdPartition) -> Self {
        Self {
            version: 0,
            tp,
            writer_id: Uuid::nil(),
            written_at_ms: 0,
            log_start_offset: None,
            end_offset: None,
            deleted: false,
            segments: Vec::new(),
            archive_files: Vec::new(),
            archived_end_offset: None,
            replaced: Vec::new(),
        }
    }

    /// Segments readers may use: those whose copy finished and whose delete has not started,
    /// and not wholly below the log start offset.
    pub fn readable_segments(&self) -> impl Iterator<Item = &RemoteLogSegmentMetadata> {
        let start = self.log_start_offset.unwrap_or(Offset::MIN);
        self.segments.iter().filter(move |s| {
            s.state == RemoteLogSegmentState::CopySegmentFinished && s.end_offset >= start
        })
    }

    /// The first offset a reader may ask for, if any segment is readable.
    pub fn remote_log_start_offset(&self) -> Option<Offset> {
        let first = self.readable_segments().next()?;
        Some(
            first
                .base_offset
                .max(self.log_start_offset.unwrap_or(Offset::MIN)),
        )
    }

    /// The last offset readable remotely, inclusive.
    pub fn remote_log_end_offset(&self) -> Option<Offset> {
        self.readable_segments().last().map(|s| s.end_offset)
    }

    /// Total bytes of the readable segments' `.log` objects.
    pub fn readable_size_bytes(&self) -> u64 {
        self.readable_segments().map(|s| s.size_bytes).sum()
    }

    /// Checks the invariants listed in the module docs.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut previous: Option<&RemoteLogSegmentMetadata> = None;
        for segment in &self.segments {
            if segment.base_offset < Offset::ZERO || segment.base_offset > segment.end_offset {
                return Err(format!(
                    "segment {} has base offset {} and end offset {}",
                    segment.segment_id, segment.base_offset, segment.end_offset
                ));
            }
            if !segment.state.is_persisted() {
                return Err(format!(
                    "segment {} is in state {:?}, which a manifest never holds",
                    segment.segment_id, segment.state
                ));
            }
            if let Some(previous) = previous {
                if segment.base_offset != previous.end_offset + 1 {
                    return Err(format!(
                        "segment {} starts at {} but the segment before it ends at {}: the \
                         remote log would have a gap or an overlap",
                        segment.segment_id, segment.base_offset, previous.end_offset
                    ));
                }
            }
            previous = Some(segment);
        }
        let mut previous_file: Option<&ArchiveFile> = None;
        for file in &self.archive_files {
            if file.first_offset < Offset::ZERO || file.first_offset > file.last_offset {
                return Err(format!(
                    "archive file {}-{} has an empty or negative range",
                    file.first_offset, file.last_offset
                ));
            }
            if let Some(previous) = previous_file {
                if file.first_offset <= previous.last_offset {
                    return Err(format!(
                        "archive file {}-{} overlaps the one before it ({}-{}): an offset would \
                         be archived twice",
                        file.first_offset,
                        file.last_offset,
                        previous.first_offset,
                        previous.last_offset
                    ));
                }
            }
            previous_file = Some(file);
        }
        if let Some(last) = previous_file {
            if self
                .archived_end_offset
                .is_none_or(|end| end < last.last_offset)
            {
                return Err(format!(
                    "the archived end offset {:?} is below the last archive file's last offset {}",
                    self.archived_end_offset, last.last_offset
                ));
            }
        }
        for replaced in &self.replaced {
            if self
                .segments
                .iter()
                .any(|s| s.segment_id == replaced.segment_id)
            {
                return Err(format!(
                    "segment {} is both listed and replaced",
                    replaced.segment_id
                ));
            }
        }
        if let Some(last) = previous {
            if self.end_offset.is_none_or(|end| end < last.end_offset) {
                return Err(format!(
                    "the end offset {:?} is below the last segment's end offset {}",
                    self.end_offset, last.end_offset
                ));
            }
        }
        Ok(())
    }
}

/// Encodes a manifest (format 1). Panics if it breaks an invariant: a writer never stores one.
pub fn encode(manifest: &Manifest) -> Vec<u8> {
    if let Err(reason) = manifest.check_invariants() {
        panic!(
            "refusing to write manifest version {} of {}: {reason}",
            manifest.version, manifest.tp
        );
    }
    let body = serde_json::to_vec(manifest).expect("a manifest always serializes to JSON");
    let body_len = u32::try_from(body.len()).expect("a manifest body is below 4 GiB");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MANIFEST_MAGIC);
    out.extend_from_slice(&MANIFEST_FORMAT.to_be_bytes());
    out.extend_from_slice(&body_len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes and validates the manifest stored as version `version` of `tp`. The error is the
/// reason it is corrupt; callers add the path.
pub fn decode(bytes: &[u8], tp: &TopicIdPartition, version: u64) -> Result<Manifest, String> {
    let header = bytes.get(..HEADER_LEN).ok_or_else(|| {
        format!(
            "it has {} bytes, fewer than the {HEADER_LEN}-byte header",
            bytes.len()
        )
    })?;
    if &header[..4] != MANIFEST_MAGIC {
        return Err(format!(
            "it starts with {:02x?}, not the manifest magic \"SHMF\"",
            &header[..4]
        ));
    }
    let format = u16::from_be_bytes([header[4], header[5]]);
    if format != MANIFEST_FORMAT {
        return Err(format!(
            "it is in manifest format {format}, and this build reads only format \
             {MANIFEST_FORMAT} (was it written by a newer Shale?)"
        ));
    }
    let body_len = u32::from_be_bytes([header[6], header[7], header[8], header[9]]) as usize;
    let stored_crc = u32::from_be_bytes([header[10], header[11], header[12], header[13]]);
    let body = &bytes[HEADER_LEN..];
    if body.len() != body_len {
        return Err(format!(
            "its header declares a {body_len}-byte body but {} bytes follow",
            body.len()
        ));
    }
    let crc = crc32c::crc32c(body);
    if crc != stored_crc {
        return Err(format!(
            "its body hashes to CRC-32C {crc:#010x} but the header stores {stored_crc:#010x}"
        ));
    }
    let manifest: Manifest =
        serde_json::from_slice(body).map_err(|e| format!("its body is not a manifest: {e}"))?;
    if manifest.version != version {
        return Err(format!(
            "it is stored as version {version} but says it is version {}",
            manifest.version
        ));
    }
    if &manifest.tp != tp {
        return Err(format!("it belongs to {}, not to {tp}", manifest.tp));
    }
    manifest.check_invariants()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::EpochEntry;
    use proptest::prelude::*;
    use shale_formats::ids::LeaderEpoch;

    fn tp() -> TopicIdPartition {
        TopicIdPartition::new("t", Uuid::from_u128(9), 0)
    }

    fn segment(base: i64, end: i64, state: RemoteLogSegmentState) -> RemoteLogSegmentMetadata {
        RemoteLogSegmentMetadata {
            segment_id: RemoteLogSegmentId(Uuid::from_u128(base as u128 + 1)),
            base_offset: Offset::new(base),
            end_offset: Offset::new(end),
            max_timestamp: 1000 + end,
            size_bytes: 100,
            indexes_size_bytes: 10,
            log_crc32c: 7,
            created_at_ms: 5,
            leader_epochs: vec![EpochEntry {
                epoch: LeaderEpoch::new(1),
                start_offset: Offset::new(base),
            }],
            state,
        }
    }

    fn manifest_strategy() -> impl Strategy<Value = Manifest> {
        (
            1u64..1000,
            0i64..1_000_000,
            proptest::collection::vec((1i64..500, any::<bool>()), 0..20),
            any::<Option<i64>>(),
            any::<bool>(),
        )
            .prop_map(|(version, start, lengths, log_start, deleted)| {
                let mut segments = Vec::new();
                let mut base = start;
                for (len, deleting) in lengths {
                    let state = if deleting {
                        RemoteLogSegmentState::DeleteSegmentStarted
                    } else {
                        RemoteLogSegmentState::CopySegmentFinished
                    };
                    segments.push(segment(base, base + len - 1, state));
                    base += len;
                }
                Manifest {
                    version,
                    tp: tp(),
                    writer_id: Uuid::from_u128(3),
                    written_at_ms: 17,
                    log_start_offset: log_start.map(Offset::new),
                    end_offset: Some(Offset::new(base - 1)),
                    deleted,
                    segments,
                    archive_files: Vec::new(),
                    archived_end_offset: None,
                    replaced: Vec::new(),
                }
            })
    }

    proptest! {
        /// Every valid manifest decodes to itself.
        #[test]
        fn round_trip(manifest in manifest_strategy()) {
            let bytes = encode(&manifest);
            prop_assert_eq!(decode(&bytes, &tp(), manifest.version).unwrap(), manifest);
        }

        /// Any single flipped byte is caught (header fields or CRC), never accepted silently,
        /// and decoding arbitrary bytes never panics.
        #[test]
        fn corruption_is_detected(manifest in manifest_strategy(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = encode(&manifest);
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(decode(&bytes, &tp(), manifest.version).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, &tp(), 1);
        }
    }

    #[test]
    fn gaps_and_foreign_versions_are_refused() {
        let mut manifest = Manifest::empty(tp());
        manifest.version = 2;
        manifest.end_offset = Some(Offset::new(30));
        manifest.segments = vec![
            segment(0, 9, RemoteLogSegmentState::CopySegmentFinished),
            segment(11, 30, RemoteLogSegmentState::CopySegmentFinished),
        ];
        assert!(manifest.check_invariants().unwrap_err().contains("gap"));
        manifest.segments[1].base_offset = Offset::new(10);
        let bytes = encode(&manifest);
        assert!(decode(&bytes, &tp(), 3).unwrap_err().contains("version 2"));
        let other = TopicIdPartition::new("t", Uuid::from_u128(9), 1);
        assert!(decode(&bytes, &other, 2).is_err());
        let mut newer = bytes.clone();
        newer[5] = 2;
        assert!(decode(&newer, &tp(), 2).unwrap_err().contains("format 2"));
    }

    #[test]
    fn offsets_follow_states_and_log_start() {
        let mut manifest = Manifest::empty(tp());
        assert_eq!(manifest.remote_log_start_offset(), None);
        manifest.end_offset = Some(Offset::new(29));
        manifest.segments = vec![
            segment(0, 9, RemoteLogSegmentState::DeleteSegmentStarted),
            segment(10, 19, RemoteLogSegmentState::CopySegmentFinished),
            segment(20, 29, RemoteLogSegmentState::CopySegmentFinished),
        ];
        assert_eq!(manifest.remote_log_start_offset(), Some(Offset::new(10)));
        assert_eq!(manifest.remote_log_end_offset(), Some(Offset::new(29)));
        manifest.log_start_offset = Some(Offset::new(25));
        assert_eq!(manifest.remote_log_start_offset(), Some(Offset::new(25)));
        assert_eq!(manifest.readable_segments().count(), 1);
    }
}
