//! Object names, exactly as DESIGN.md lays them out under the configured prefix:
//!
//! ```text
//! topics/<topic>-<topic_id>/topic.json
//! topics/<topic>-<topic_id>/<partition>/manifest/<version:020>
//! topics/<topic>-<topic_id>/<partition>/<base_offset:020>-<segment_id>.log
//! topics/<topic>-<topic_id>/<partition>/<base_offset:020>-<segment_id>.indexes
//! archive/<topic>/partition=<p>/<first_offset:020>-<last_offset:020>.parquet
//! _staging/archive/<topic>/partition=<p>/<first_offset:020>-<last_offset:020>.parquet.tmp
//! ```
//!
//! `topic.json` is the broker's description of the topic (partition count, topic configs),
//! opaque to this crate: what a restore onto an empty data dir needs besides the partitions.
//!
//! The archive is laid out hive-style for query engines, by topic name (engines know names,
//! not ids); the manifest of the topic's current incarnation says which files are its own.
//! `_staging/archive` holds a local-directory store's archive files while they are written:
//! outside `archive/`, so no topic name can collide with it and no reader of `archive/` sees a
//! file being written.
//!
//! `topic_id` is the hyphenated UUID (36 characters, fixed width, so a topic name containing `-`
//! parses unambiguously); `segment_id` is the UUID in simple form (32 hex digits). Zero-padded
//! numbers make a listing sort numerically.

use object_store::path::Path;
use shale_formats::ids::Offset;
use uuid::Uuid;

use crate::metadata::{RemoteLogSegmentId, TopicIdPartition};

const TOPICS: &str = "topics";
const ARCHIVE: &str = "archive";
const STAGING: &str = "_staging";
const MANIFEST: &str = "manifest";
const TOPIC_METADATA: &str = "topic.json";
const UUID_HYPHENATED_LEN: usize = 36;

/// What kind of object a file name in a partition directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Log,
    Indexes,
}

/// Where a partition's objects live, under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLayout {
    dir: Path,
}

impl PartitionLayout {
    pub fn new(prefix: &Path, tp: &TopicIdPartition) -> Self {
        let topic_dir = format!("{}-{}", tp.topic, tp.topic_id.hyphenated());
        let dir = topics_dir(prefix)
            .join(topic_dir.as_str())
            .join(tp.partition.to_string().as_str());
        Self { dir }
    }

    /// The partition's directory: everything of the partition is below it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest_dir(&self) -> Path {
        self.dir.clone().join(MANIFEST)
    }

    pub fn manifest(&self, version: u64) -> Path {
        self.manifest_dir().join(format!("{version:020}").as_str())
    }

    pub fn log(&self, base_offset: Offset, id: RemoteLogSegmentId) -> Path {
        self.dir
            .clone()
            .join(segment_name(base_offset, id, "log").as_str())
    }

    pub fn indexes(&self, base_offset: Offset, id: RemoteLogSegmentId) -> Path {
        self.dir
            .clone()
            .join(segment_name(base_offset, id, "indexes").as_str())
    }
}

fn segment_name(base_offset: Offset, id: RemoteLogSegmentId, extension: &str) -> String {
    assert!(
        base_offset >= Offset::ZERO,
        "a remote segment's base offset must not be negative: {base_offset}"
    );
    format!("{base_offset:020}-{id}.{extension}")
}

/// The archive directory of one partition: `archive/<topic>/partition=<p>`.
pub fn archive_dir(prefix: &Path, topic: &str, partition: i32) -> Path {
    archive_root(prefix)
        .join(topic)
        .join(format!("partition={partition}").as_str())
}

/// Every topic's archive, under `prefix`.
pub fn archive_root(prefix: &Path) -> Path {
    prefix.clone().join(ARCHIVE)
}

/// Where archive files of a local-directory store are written before their rename.
pub fn archive_staging_root(prefix: &Path) -> Path {
    prefix.clone().join(STAGING).join(ARCHIVE)
}

/// The name of the archive file covering `first..=last`.
pub fn archive_file_name(first: Offset, last: Offset) -> String {
    assert!(
        Offset::ZERO <= first && first <= last,
        "an archive file covers a non-empty range of offsets, not {first}..={last}"
    );
    format!("{first:020}-{last:020}.parquet")
}

/// The offsets an archive file name covers.
pub fn parse_archive_file_name(name: &str) -> Option<(Offset, Offset)> {
    let stem = name.strip_suffix(".parquet")?;
    let (first, last) = stem.split_once('-')?;
    if first.len() != 20 || last.len() != 20 {
        return None;
    }
    let first = first.parse().ok()?;
    let last = last.parse().ok()?;
    (first <= last).then_some((first, last))
}

/// The topic's own object, beside its partition directories.
pub fn topic_metadata(prefix: &Path, topic: &str, topic_id: Uuid) -> Path {
    let topic_dir = format!("{topic}-{}", topic_id.hyphenated());
    topics_dir(prefix)
        .join(topic_dir.as_str())
        .join(TOPIC_METADATA)
}

/// The directory holding every partition, under `prefix`.
pub fn topics_dir(prefix: &Path) -> Path {
    prefix.clone().join(TOPICS)
}

/// Parses a manifest object's file name into its version.
pub fn parse_manifest_version(file_name: &str) -> Option<u64> {
    if file_name.len() != 20 || !file_name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    file_name.parse().ok()
}

/// Parses a segment object's file name: `(base_offset, segment_id, kind)`.
pub fn parse_segment_name(file_name: &str) -> Option<(i64, RemoteLogSegmentId, ObjectKind)> {
    let (stem, kind) = if let Some(stem) = file_name.strip_suffix(".log") {
        (stem, ObjectKind::Log)
    } else if let Some(stem) = file_name.strip_suffix(".indexes") {
        (stem, ObjectKind::Indexes)
    } else {
        return None;
    };
    let (offset, id) = stem.split_once('-')?;
    if offset.len() != 20 || !offset.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id = Uuid::try_parse(id).ok()?;
    Some((offset.parse().ok()?, RemoteLogSegmentId(id), kind))
}

/// Parses a `<topic>-<topic_id>` directory name and a partition directory name.
pub fn parse_partition_dir(topic_dir: &str, partition_dir: &str) -> Option<TopicIdPartition> {
    let split = topic_dir.len().checked_sub(UUID_HYPHENATED_LEN + 1)?;
    if !topic_dir.is_char_boundary(split) {
        return None;
    }
    let (topic, id) = topic_dir.split_at(split);
    let id = id.strip_prefix('-')?;
    let topic_id = Uuid::try_parse(id).ok()?;
    let partition: i32 = partition_dir.parse().ok()?;
    if topic.is_empty() || partition < 0 || partition.to_string() != partition_dir {
        return None;
    }
    Some(TopicIdPartition::new(topic, topic_id, partition))
}

/// Splits an object path below `topics_dir` into its partition and the rest of its parts,
/// e.g. `([manifest, 000…07])` or `([000…00-<id>.log])`.
pub fn split_object_path(
    topics_dir: &Path,
    location: &Path,
) -> Option<(TopicIdPartition, Vec<String>)> {
    let mut parts = location.prefix_match(topics_dir)?;
    let topic_dir = parts.next()?;
    let partition_dir = parts.next()?;
    let tp = parse_partition_dir(topic_dir.as_ref(), partition_dir.as_ref())?;
    let rest: Vec<String> = parts.map(|p| p.as_ref().to_string()).collect();
    Some((tp, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicIdPartition {
        TopicIdPartition::new("orders-eu.v2", Uuid::from_u128(0xfeed), 7)
    }

    /// The names are exactly DESIGN.md's, and each parses back to what made it.
    #[test]
    fn names_round_trip() {
        let layout = PartitionLayout::new(&Path::from("shale/prod"), &tp());
        let id = RemoteLogSegmentId(Uuid::from_u128(0xabc));
        assert_eq!(
            layout.manifest(12).as_ref(),
            "shale/prod/topics/orders-eu.v2-00000000-0000-0000-0000-00000000feed/7/manifest/00000000000000000012"
        );
        let log = layout.log(Offset::new(42), id);
        assert_eq!(
            log.as_ref(),
            "shale/prod/topics/orders-eu.v2-00000000-0000-0000-0000-00000000feed/7/00000000000000000042-00000000000000000000000000000abc.log"
        );
        let (parsed_tp, rest) =
            split_object_path(&topics_dir(&Path::from("shale/prod")), &log).unwrap();
        assert_eq!(parsed_tp, tp());
        assert_eq!(
            parse_segment_name(&rest[0]),
            Some((42, id, ObjectKind::Log))
        );
        let indexes = layout.indexes(Offset::new(42), id);
        assert_eq!(
            parse_segment_name(indexes.filename().unwrap()),
            Some((42, id, ObjectKind::Indexes))
        );
        assert_eq!(parse_manifest_version("00000000000000000012"), Some(12));
        assert_eq!(parse_manifest_version("12"), None);
        let bare = PartitionLayout::new(&Path::from(""), &tp());
        assert!(bare.dir().as_ref().starts_with("topics/"));
    }

    #[test]
    fn rejects_foreign_names() {
        assert_eq!(parse_segment_name("00000000000000000042.log"), None);
        assert_eq!(
            parse_segment_name("x-00000000000000000000000000000abc.log"),
            None
        );
        assert_eq!(parse_partition_dir("orders", "0"), None);
        assert_eq!(
            parse_partition_dir("a-00000000-0000-0000-0000-00000000feed", "007"),
            None
        );
    }
}
