//! The group coordinator's durable state: Kafka's own record formats in the internal compacted
//! topic `__consumer_offsets`, written through the same local log as user data, and the replay
//! that rebuilds groups and committed offsets from it on start.
//!
//! Keys and values are Kafka's, byte for byte, so Kafka's tools can read the topic:
//!
//! ```text
//! key version 0|1  OffsetCommitKey    group: string, topic: string, partition: int32
//! key version 2    GroupMetadataKey   group: string
//! value            version: int16, then the fields of that version; null value = tombstone
//!   OffsetCommitValue v0 offset, metadata, commitTimestamp
//!                     v1 offset, metadata, commitTimestamp, expireTimestamp
//!                     v2 offset, metadata, commitTimestamp
//!                     v3 offset, leaderEpoch, metadata, commitTimestamp
//!                     v4 as v3, flexible (compact strings, tagged fields)
//!   GroupMetadataValue protocolType, generation, protocol?, leader?, currentStateTimestamp (v2+),
//!                     members[memberId, groupInstanceId? (v3+), clientId, clientHost,
//!                     rebalanceTimeout (v1+), sessionTimeout, subscription, assignment]
//!                     v4 flexible
//! ```
//! We write OffsetCommitValue v3 (v1 when the commit carries an explicit expire timestamp, as
//! Kafka does) and GroupMetadataValue v3, and read every version.
//!
//! The group's partition is Kafka's `abs(groupId.hashCode()) % partitions`, with Java's
//! `String.hashCode`, so a group lives in the same partition it would on Kafka.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use shale_formats::batch::{self, RecordBatchHeader};
use shale_formats::record::{self, BatchBuilder, BatchOptions};
use shale_formats::varint;

use crate::partition::{AppendError, Partition, TopicPartition};
use shale_log::LogError;

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// `OffsetCommitValue` version written normally, and with an explicit expire timestamp.
const OFFSET_VALUE_VERSION: i16 = 3;
const OFFSET_VALUE_VERSION_WITH_EXPIRY: i16 = 1;
const GROUP_VALUE_VERSION: i16 = 3;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_KEY_VERSION: i16 = 1;

/// A committed offset, as OffsetCommit stores it and OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Set only by OffsetCommit v2–4 with an explicit `retention_time_ms`.
    pub expire_timestamp_ms: Option<i64>,
}

/// A group as the leader's SyncGroup (or the group emptying) leaves it: Kafka's
/// `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// Wall-clock ms of the last state change; -1 if unknown.
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// One record of `__consumer_offsets`. A `None` value is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorRecord {
    OffsetCommit {
        group: String,
        tp: TopicPartition,
        value: Option<OffsetAndMetadata>,
    },
    GroupMetadata {
        group: String,
        value: Option<GroupMetadataValue>,
    },
}

/// A `__consumer_offsets` record that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the {what} ends early: needed {needed} more bytes at position {position}")]
    Truncated {
        what: &'static str,
        needed: usize,
        position: usize,
    },
    #[error("the {what} has an invalid {field}: {reason}")]
    Invalid {
        what: &'static str,
        field: &'static str,
        reason: String,
    },
    #[error("{what} version {version} is not one this broker reads")]
    UnsupportedVersion { what: &'static str, version: i16 },
    #[error("the {what} has {extra} bytes after its last field")]
    TrailingBytes { what: &'static str, extra: usize },
}

impl CoordinatorRecord {
    pub fn group(&self) -> &str {
        match self {
            Self::OffsetCommit { group, .. } | Self::GroupMetadata { group, .. } => group,
        }
    }

    /// `(key, value)` as stored in a record. Fails only for a string longer than Kafka's
    /// `int16` length allows (flexible request versions can carry longer ones).
    pub fn encode(&self) -> Result<(Bytes, Option<Bytes>), RecordError> {
        let mut key = BytesMut::new();
        match self {
            Self::OffsetCommit { group, tp, value } => {
                key.put_i16(OFFSET_KEY_VERSION);
                put_string(&mut key, group, "group")?;
                put_string(&mut key, &tp.topic, "topic")?;
                key.put_i32(tp.partition);
                Ok((
                    key.freeze(),
                    value.as_ref().map(encode_offset_value).transpose()?,
                ))
            }
            Self::GroupMetadata { group, value } => {
                key.put_i16(GROUP_KEY_VERSION);
                put_string(&mut key, group, "group")?;
                Ok((
                    key.freeze(),
                    value.as_ref().map(encode_group_value).transpose()?,
                ))
            }
        }
    }

    /// Decodes a stored record; `Ok(None)` for key versions this broker does not use (Kafka's
    /// newer consumer-group and share-group records), which replay skips.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<Self>, RecordError> {
        let mut k = Reader::new(key, "record key");
        let version = k.i16("version")?;
        let record = match version {
            0 | 1 => {
                let group = k.string("group")?;
                let topic = k.string("topic")?;
                let partition = k.i32()?;
                k.finish()?;
                let value = value.map(decode_offset_value).transpose()?;
                Self::OffsetCommit {
                    group,
                    tp: TopicPartition { topic, partition },
                    value,
                }
            }
            2 => {
                let group = k.string("group")?;
                k.finish()?;
                let value = value.map(decode_group_value).transpose()?;
                Self::GroupMetadata { group, value }
            }
            _ => return Ok(None),
        };
        Ok(Some(record))
    }
}

fn encode_offset_value(v: &OffsetAndMetadata) -> Result<Bytes, RecordError> {
    let mut out = BytesMut::with_capacity(32 + v.metadata.len());
    match v.expire_timestamp_ms {
        Some(expire) => {
            out.put_i16(OFFSET_VALUE_VERSION_WITH_EXPIRY);
            out.put_i64(v.offset);
            put_string(&mut out, &v.metadata, "metadata")?;
            out.put_i64(v.commit_timestamp_ms);
            out.put_i64(expire);
        }
        None => {
            out.put_i16(OFFSET_VALUE_VERSION);
            out.put_i64(v.offset);
            out.put_i32(v.leader_epoch);
            put_string(&mut out, &v.metadata, "metadata")?;
            out.put_i64(v.commit_timestamp_ms);
        }
    }
    Ok(out.freeze())
}

fn decode_offset_value(bytes: &[u8]) -> Result<OffsetAndMetadata, RecordError> {
    const WHAT: &str = "OffsetCommitValue";
    let mut r = Reader::new(bytes, WHAT);
    let version = r.value_version()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string("metadata")?;
    let commit_timestamp_ms = r.i64()?;
    let expire = if version == 1 { r.i64()? } else { -1 };
    r.tagged_fields()?;
    r.finish()?;
    Ok(OffsetAndMetadata {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms: (expire >= 0).then_some(expire),
    })
}

fn encode_group_value(v: &GroupMetadataValue) -> Result<Bytes, RecordError> {
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut out, &v.protocol_type, "protocolType")?;
    out.put_i32(v.generation);
    put_nullable_string(&mut out, v.protocol.as_deref(), "protocol")?;
    put_nullable_string(&mut out, v.leader.as_deref(), "leader")?;
    out.put_i64(v.current_state_timestamp_ms);
    out.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_string(&mut out, &m.member_id, "memberId")?;
        put_nullable_string(&mut out, m.group_instance_id.as_deref(), "groupInstanceId")?;
        put_string(&mut out, &m.client_id, "clientId")?;
        put_string(&mut out, &m.client_host, "clientHost")?;
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        out.put_i32(m.subscription.len() as i32);
        out.put_slice(&m.subscription);
        out.put_i32(m.assignment.len() as i32);
        out.put_slice(&m.assignment);
    }
    Ok(out.freeze())
}

fn decode_group_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    const WHAT: &str = "GroupMetadataValue";
    let mut r = Reader::new(bytes, WHAT);
    let version = r.value_version()?;
    let protocol_type = r.string("protocolType")?;
    let generation = r.i32()?;
    let protocol = r.nullable_string("protocol")?;
    let leader = r.nullable_string("leader")?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_len("members")?;
    let mut members = Vec::with_capacity(count.min(r.remaining() / 16));
    for _ in 0..count {
        let member_id = r.string("memberId")?;
        let group_instance_id = if version >= 3 {
            r.nullable_string("groupInstanceId")?
        } else {
            None
        };
        let client_id = r.string("clientId")?;
        let client_host = r.string("clientHost")?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes("subscription")?;
        let assignment = r.bytes("assignment")?;
        r.tagged_fields()?;
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            // v0 had one timeout for both, as JoinGroup v0 does.
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    r.tagged_fields()?;
    r.finish()?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

fn put_string(out: &mut BytesMut, s: &str, field: &'static str) -> Result<(), RecordError> {
    let len = i16::try_from(s.len()).map_err(|_| RecordError::Invalid {
        what: "coordinator record",
        field,
        reason: format!(
            "{} bytes is longer than a Kafka string can be ({})",
            s.len(),
            i16::MAX
        ),
    })?;
    out.put_i16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

fn put_nullable_string(
    out: &mut BytesMut,
    s: Option<&str>,
    field: &'static str,
) -> Result<(), RecordError> {
    match s {
        Some(s) => put_string(out, s, field),
        None => {
            out.put_i16(-1);
            Ok(())
        }
    }
}

/// A bounds-checked cursor over one key or value, classic or flexible encoding.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            what,
            flexible: false,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads a value's version and, for version 4, switches to the flexible encoding. Both
    /// value kinds (OffsetCommitValue, GroupMetadataValue) have versions 0 to 4, flexible at 4.
    fn value_version(&mut self) -> Result<i16, RecordError> {
        let version = self.i16("version")?;
        if !(0..=4).contains(&version) {
            return Err(RecordError::UnsupportedVersion {
                what: self.what,
                version,
            });
        }
        self.flexible = version >= 4;
        Ok(version)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.remaining() < n {
            return Err(RecordError::Truncated {
                what: self.what,
                needed: n - self.remaining(),
                position: self.pos,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn i16(&mut self, _field: &'static str) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn unsigned_varint(&mut self, field: &'static str) -> Result<u32, RecordError> {
        let (v, n) = varint::read_unsigned_varint(&self.buf[self.pos..]).map_err(|e| {
            RecordError::Invalid {
                what: self.what,
                field,
                reason: e.to_string(),
            }
        })?;
        self.pos += n;
        Ok(v)
    }

    /// A length: `None` for null (-1 classic, 0 compact).
    fn length(&mut self, field: &'static str) -> Result<Option<usize>, RecordError> {
        if self.flexible {
            let n = self.unsigned_varint(field)?;
            Ok(n.checked_sub(1).map(|n| n as usize))
        } else {
            let n = self.i16(field)?;
            match n {
                -1 => Ok(None),
                n if n < 0 => Err(RecordError::Invalid {
                    what: self.what,
                    field,
                    reason: format!("negative length {n}"),
                }),
                n => Ok(Some(n as usize)),
            }
        }
    }

    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        let Some(len) = self.length(field)? else {
            return Ok(None);
        };
        let what = self.what;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|e| RecordError::Invalid {
                what,
                field,
                reason: e.to_string(),
            })
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        self.nullable_string(field)?.ok_or(RecordError::Invalid {
            what: self.what,
            field,
            reason: "null where a string is required".into(),
        })
    }

    /// A bytes or array length: `None` for null (a negative int32 classic, 0 compact).
    fn long_length(&mut self, field: &'static str) -> Result<Option<usize>, RecordError> {
        Ok(if self.flexible {
            self.unsigned_varint(field)?
                .checked_sub(1)
                .map(|n| n as usize)
        } else {
            let n = self.i32()?;
            (n >= 0).then_some(n as usize)
        })
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        let Some(len) = self.long_length(field)? else {
            return Err(RecordError::Invalid {
                what: self.what,
                field,
                reason: "null where bytes are required".into(),
            });
        };
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }

    fn array_len(&mut self, field: &'static str) -> Result<usize, RecordError> {
        self.long_length(field)?.ok_or(RecordError::Invalid {
            what: self.what,
            field,
            reason: "null array".into(),
        })
    }

    /// Skips a flexible version's tagged fields (none of which we need).
    fn tagged_fields(&mut self) -> Result<(), RecordError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.unsigned_varint("tagged fields")?;
        for _ in 0..count {
            self.unsigned_varint("tag")?;
            let size = self.unsigned_varint("tagged field size")? as usize;
            self.take(size)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), RecordError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(RecordError::TrailingBytes {
                what: self.what,
                extra,
            }),
        }
    }
}

/// Java's `String.hashCode`: 31-polynomial over UTF-16 code units, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of a group: Kafka's `Utils.abs(hashCode) % partitions`
/// (where `abs(i32::MIN)` is 0).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "the offsets topic has {partitions} partitions"
    );
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

/// Where the coordinator writes its records. [`OffsetsTopic`] in the broker; tests substitute
/// an in-memory log.
pub trait GroupLog: Send + Sync {
    /// Appends the records of one group atomically (one batch) and returns once they are in the
    /// log; the error is the one to give the client.
    fn append(&self, group_id: &str, records: &[CoordinatorRecord]) -> Result<(), ResponseError>;

    /// What the records appended for `group_id` so far wait for to be replicated: its
    /// partition, the log end there and the leader epoch. `None` where nothing replicates.
    fn replication_point(
        &self,
        _group_id: &str,
    ) -> Option<(
        Arc<Partition>,
        shale_formats::ids::Offset,
        shale_formats::ids::LeaderEpoch,
    )> {
        None
    }

    /// Whether this broker coordinates `group_id` (it leads the group's partition).
    fn coordinates(&self, _group_id: &str) -> bool {
        true
    }
}

/// A log that refuses every write: used before `__consumer_offsets` exists.
pub struct NoLog;

impl GroupLog for NoLog {
    fn append(&self, _: &str, _: &[CoordinatorRecord]) -> Result<(), ResponseError> {
        Err(ResponseError::CoordinatorNotAvailable)
    }
}

/// The partitions of `__consumer_offsets` hosted here, of the topic's `count`.
pub struct OffsetsTopic {
    count: i32,
    partitions: BTreeMap<i32, Arc<Partition>>,
}

impl OffsetsTopic {
    /// Every partition of the topic is here: `partitions[i]` must be partition `i`.
    pub fn new(partitions: Vec<Arc<Partition>>) -> Self {
        for (i, p) in partitions.iter().enumerate() {
            assert_eq!(
                p.tp.partition as usize, i,
                "offsets topic partitions out of order: {} at {i}",
                p.tp
            );
        }
        assert!(
            !partitions.is_empty(),
            "the offsets topic has no partitions"
        );
        let count = partitions.len() as i32;
        Self::hosted(
            count,
            partitions
                .into_iter()
                .map(|p| (p.tp.partition, p))
                .collect(),
        )
    }

    /// `partitions` (by partition number) of a topic of `count` partitions are here.
    pub fn hosted(count: i32, partitions: BTreeMap<i32, Arc<Partition>>) -> Self {
        debug_assert!(partitions.keys().all(|p| (0..count).contains(p)));
        Self { count, partitions }
    }

    /// The topic's partition count (hosted here or not).
    pub fn count(&self) -> i32 {
        self.count
    }

    /// The partitions hosted here, in partition order.
    pub fn partitions(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.values()
    }

    /// The hosted partitions by number.
    pub fn hosted_partitions(&self) -> &BTreeMap<i32, Arc<Partition>> {
        &self.partitions
    }

    /// The partition of `group_id`, if it is hosted here.
    pub fn partition_for(&self, group_id: &str) -> Option<&Arc<Partition>> {
        self.partitions.get(&partition_for(group_id, self.count))
    }
}

impl GroupLog for OffsetsTopic {
    fn replication_point(
        &self,
        group_id: &str,
    ) -> Option<(
        Arc<Partition>,
        shale_formats::ids::Offset,
        shale_formats::ids::LeaderEpoch,
    )> {
        let partition = self.partition_for(group_id)?;
        let epoch = partition.leader_epoch()?;
        let end = partition.log().log_end_offset();
        Some((Arc::clone(partition), end, epoch))
    }

    fn append(&self, group_id: &str, records: &[CoordinatorRecord]) -> Result<(), ResponseError> {
        if records.is_empty() {
            return Ok(());
        }
        let Some(partition) = self.partition_for(group_id) else {
            return Err(ResponseError::NotCoordinator);
        };
        let now = crate::api_error::now_ms();
        let mut builder = BatchBuilder::new(BatchOptions::default());
        for r in records {
            debug_assert_eq!(r.group(), group_id);
            let (key, value) = r.encode().map_err(|e| {
                // Refused before anything is written, so the log never holds a record that
                // replay could not read back.
                tracing::warn!(group = group_id, error = %e, "coordinator record cannot be encoded");
                ResponseError::InvalidRequest
            })?;
            builder.append(now, Some(key), value, Vec::new());
        }
        let mut batch = builder.build().map_err(|e| {
            tracing::error!(group = group_id, error = %e, "cannot encode coordinator records");
            ResponseError::UnknownServerError
        })?;
        match partition.append(&mut batch, now) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(tp = %partition.tp, group = group_id, error = %e, "cannot append to the offsets topic");
                Err(match e {
                    AppendError::Log(LogError::RecordTooLarge { .. }) => {
                        ResponseError::InvalidCommitOffsetSize
                    }
                    AppendError::NotLeader { .. } => ResponseError::NotCoordinator,
                    _ => ResponseError::CoordinatorNotAvailable,
                })
            }
        }
    }

    fn coordinates(&self, group_id: &str) -> bool {
        self.partition_for(group_id).is_some()
    }
}

/// What replay found for one group: its latest metadata (if any survives) and its offsets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadedGroup {
    pub metadata: Option<GroupMetadataValue>,
    pub offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

/// Counters of one replay, for the startup log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub batches: u64,
    pub records: u64,
    pub skipped: u64,
    pub bytes: u64,
}

/// Reads one `__consumer_offsets` partition from its log start to its high watermark and
/// applies every record in order: the latest value per key wins, tombstones delete.
pub fn replay(
    partition: &Partition,
    decompressed_max: usize,
    groups: &mut BTreeMap<String, LoadedGroup>,
) -> Result<ReplayStats, LogError> {
    const READ_BYTES: usize = 1 << 20;
    let mut stats = ReplayStats::default();
    let end = partition.high_watermark();
    let mut offset = partition.log().log_start_offset();
    while offset < end {
        let read = partition.read(offset, READ_BYTES, true)?;
        if read.records.is_empty() {
            break;
        }
        stats.bytes += read.records.len() as u64;
        let mut next = offset;
        for item in batch::batches(&read.records) {
            let (header, range) =
                item.map_err(|e| corrupt(partition, offset.get(), e.to_string()))?;
            next = header.next_offset();
            stats.batches += 1;
            if header.is_control() {
                continue;
            }
            apply_batch(
                partition,
                &read.records.slice(range),
                &header,
                decompressed_max,
                groups,
                &mut stats,
            )?;
        }
        assert!(
            next > offset,
            "replay of {} made no progress at offset {offset}",
            partition.tp
        );
        offset = next;
    }
    Ok(stats)
}

fn apply_batch(
    partition: &Partition,
    batch: &Bytes,
    header: &RecordBatchHeader,
    decompressed_max: usize,
    groups: &mut BTreeMap<String, LoadedGroup>,
    stats: &mut ReplayStats,
) -> Result<(), LogError> {
    let records = record::decode_records_bytes(batch, decompressed_max)
        .map_err(|e| corrupt(partition, header.base_offset.get(), e.to_string()))?;
    for r in records {
        stats.records += 1;
        let Some(key) = r.key.as_deref() else {
            stats.skipped += 1;
            continue;
        };
        match CoordinatorRecord::decode(key, r.value.as_deref()) {
            Ok(Some(record)) => apply(record, groups),
            Ok(None) => stats.skipped += 1,
            Err(e) => {
                // One bad record must not lose every group on the broker: skip it, loudly.
                stats.skipped += 1;
                tracing::warn!(tp = %partition.tp, offset = %r.offset(header.base_offset), error = %e, "skipping an undecodable offsets-topic record");
            }
        }
    }
    Ok(())
}

/// Applies one record to the loaded state.
pub fn apply(record: CoordinatorRecord, groups: &mut BTreeMap<String, LoadedGroup>) {
    match record {
        CoordinatorRecord::OffsetCommit { group, tp, value } => match value {
            Some(v) => {
                groups.entry(group).or_default().offsets.insert(tp, v);
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&tp);
                    if g.metadata.is_none() && g.offsets.is_empty() {
                        groups.remove(&group);
                    }
                }
            }
        },
        CoordinatorRecord::GroupMetadata { group, value } => match value {
            Some(v) => groups.entry(group).or_default().metadata = Some(v),
            None => {
                // Kafka keeps offsets that outlive a group tombstone (they belong to a
                // simple group from then on).
                if let Some(g) = groups.get_mut(&group) {
                    g.metadata = None;
                    if g.offsets.is_empty() {
                        groups.remove(&group);
                    }
                }
            }
        },
    }
}

fn corrupt(partition: &Partition, offset: i64, reason: String) -> LogError {
    LogError::CorruptRecord {
        dir: partition.log().dir().to_path_buf(),
        reason: format!("offsets-topic batch at offset {offset}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_formats::ids::{LeaderEpoch, Offset};
    use shale_log::{Log, LogConfig};

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    fn offset(o: i64) -> OffsetAndMetadata {
        OffsetAndMetadata {
            offset: o,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
            expire_timestamp_ms: None,
        }
    }

    fn group_value() -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 1_700_000_000_123,
            members: vec![MemberMetadata {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"\x00\x01sub"),
                assignment: Bytes::from_static(b"\x00\x01asg"),
            }],
        }
    }

    #[test]
    fn java_hash_and_partition_match_kafka() {
        // Values computed with Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("group"), 98629247);
        assert_eq!(java_string_hash("my-group"), -1906497762);
        assert_eq!(java_string_hash("console-consumer-12345"), 158455506);
        assert_eq!(java_string_hash("ü€😀"), 17318035);
        assert_eq!(partition_for("console-consumer-12345", 50), 6);
        assert_eq!(partition_for("my-group", 50), 12);
    }

    #[test]
    fn offset_commit_roundtrip_matches_kafka_layout() {
        let r = CoordinatorRecord::OffsetCommit {
            group: "g".into(),
            tp: tp("t", 2),
            value: Some(offset(42)),
        };
        let (key, value) = r.encode().unwrap();
        // version 1, "g", "t", partition 2
        assert_eq!(&key[..], b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x02");
        let value = value.unwrap();
        assert_eq!(&value[..2], &[0, 3], "value version 3");
        assert_eq!(&value[2..10], &42i64.to_be_bytes());
        assert_eq!(&value[10..14], &3i32.to_be_bytes());
        assert_eq!(
            CoordinatorRecord::decode(&key, Some(&value)).unwrap(),
            Some(r)
        );
    }

    #[test]
    fn offset_commit_with_expiry_uses_version_1() {
        let mut v = offset(5);
        v.leader_epoch = -1;
        v.expire_timestamp_ms = Some(1_800_000_000_000);
        let r = CoordinatorRecord::OffsetCommit {
            group: "g".into(),
            tp: tp("t", 0),
            value: Some(v),
        };
        let (key, value) = r.encode().unwrap();
        assert_eq!(&value.as_ref().unwrap()[..2], &[0, 1]);
        assert_eq!(
            CoordinatorRecord::decode(&key, value.as_deref()).unwrap(),
            Some(r)
        );
    }

    #[test]
    fn flexible_offset_value_v4_decodes() {
        // v4: offset, leaderEpoch, compact metadata, commitTimestamp, one unknown tagged field.
        let mut v = BytesMut::new();
        v.put_i16(4);
        v.put_i64(99);
        v.put_i32(1);
        v.put_u8(3); // compact length 2 + 1
        v.put_slice(b"md");
        v.put_i64(123);
        v.put_u8(1); // one tagged field
        v.put_u8(0); // tag 0 (topicId in Kafka)
        v.put_u8(16);
        v.put_slice(&[7u8; 16]);
        let got = decode_offset_value(&v).unwrap();
        assert_eq!(got.offset, 99);
        assert_eq!(got.leader_epoch, 1);
        assert_eq!(got.metadata, "md");
        assert_eq!(got.commit_timestamp_ms, 123);
    }

    #[test]
    fn group_metadata_roundtrip_and_tombstones() {
        let r = CoordinatorRecord::GroupMetadata {
            group: "g".into(),
            value: Some(group_value()),
        };
        let (key, value) = r.encode().unwrap();
        assert_eq!(&key[..], b"\x00\x02\x00\x01g");
        assert_eq!(
            CoordinatorRecord::decode(&key, value.as_deref()).unwrap(),
            Some(r)
        );
        let tomb = CoordinatorRecord::GroupMetadata {
            group: "g".into(),
            value: None,
        };
        let (key, value) = tomb.encode().unwrap();
        assert!(value.is_none());
        assert_eq!(CoordinatorRecord::decode(&key, None).unwrap(), Some(tomb));
    }

    #[test]
    fn strings_too_long_for_kafka_records_are_refused_not_truncated() {
        let long = "x".repeat(i16::MAX as usize + 1);
        let r = CoordinatorRecord::OffsetCommit {
            group: long.clone(),
            tp: tp("t", 0),
            value: None,
        };
        assert!(r.encode().is_err());
        let mut v = offset(1);
        v.metadata = long;
        let r = CoordinatorRecord::OffsetCommit {
            group: "g".into(),
            tp: tp("t", 0),
            value: Some(v),
        };
        assert!(r.encode().is_err());
        let dir = tempfile::tempdir().unwrap();
        let topic = OffsetsTopic::new(vec![open_partition(dir.path())]);
        assert_eq!(topic.append("g", &[r]), Err(ResponseError::InvalidRequest));
        assert_eq!(
            topic.hosted_partitions()[&0].log().log_end_offset(),
            Offset::new(0),
            "nothing was written"
        );
    }

    #[test]
    fn unknown_key_versions_are_skipped_and_garbage_is_an_error() {
        assert_eq!(
            CoordinatorRecord::decode(b"\x00\x05\x00\x01g", None).unwrap(),
            None
        );
        assert!(CoordinatorRecord::decode(b"\x00\x01\x00\x09g", None).is_err());
        assert!(CoordinatorRecord::decode(b"\x00\x02\x00\x01g", Some(b"\x00\x09")).is_err());
        assert!(CoordinatorRecord::decode(b"\x00\x02\x00\x01gX", None).is_err());
    }

    /// Value versions outside 0..=4 are refused, naming the value kind, for both kinds.
    #[test]
    fn value_versions_beyond_4_are_refused() {
        let offset_key = b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x00";
        let group_key = b"\x00\x02\x00\x01g";
        for (key, what) in [
            (&offset_key[..], "OffsetCommitValue"),
            (&group_key[..], "GroupMetadataValue"),
        ] {
            for version in [b"\x00\x05", b"\xff\xff"] {
                match CoordinatorRecord::decode(key, Some(version)) {
                    Err(RecordError::UnsupportedVersion { what: w, .. }) => assert_eq!(w, what),
                    other => panic!("{what} {version:?}: {other:?}"),
                }
            }
        }
    }

    fn open_partition(dir: &std::path::Path) -> Arc<Partition> {
        let log = Log::open(dir.join("__consumer_offsets-0"), LogConfig::default(), 0).unwrap();
        Partition::new(
            tp(OFFSETS_TOPIC, 0),
            uuid::Uuid::new_v4(),
            LeaderEpoch::new(0),
            log,
        )
    }

    #[test]
    fn replay_keeps_the_latest_value_per_key_and_applies_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let topic = OffsetsTopic::new(vec![open_partition(dir.path())]);
        let commit = |g: &str, t: &str, p: i32, o: Option<i64>| CoordinatorRecord::OffsetCommit {
            group: g.into(),
            tp: tp(t, p),
            value: o.map(offset),
        };
        topic
            .append(
                "a",
                &[commit("a", "t", 0, Some(1)), commit("a", "t", 1, Some(10))],
            )
            .unwrap();
        topic.append("a", &[commit("a", "t", 0, Some(2))]).unwrap();
        topic.append("b", &[commit("b", "t", 0, Some(5))]).unwrap();
        topic
            .append(
                "b",
                &[CoordinatorRecord::GroupMetadata {
                    group: "b".into(),
                    value: Some(group_value()),
                }],
            )
            .unwrap();
        topic.append("a", &[commit("a", "t", 1, None)]).unwrap();
        // Group c: committed, then deleted (offset tombstone, then group tombstone).
        topic.append("c", &[commit("c", "t", 0, Some(9))]).unwrap();
        topic
            .append(
                "c",
                &[
                    commit("c", "t", 0, None),
                    CoordinatorRecord::GroupMetadata {
                        group: "c".into(),
                        value: None,
                    },
                ],
            )
            .unwrap();

        let mut groups = BTreeMap::new();
        let stats = replay(&topic.hosted_partitions()[&0], 1 << 20, &mut groups).unwrap();
        assert_eq!(stats.records, 9);
        assert_eq!(groups.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        let a = &groups["a"];
        assert!(a.metadata.is_none());
        assert_eq!(a.offsets.len(), 1);
        assert_eq!(a.offsets[&tp("t", 0)].offset, 2);
        let b = &groups["b"];
        assert_eq!(b.metadata.as_ref().unwrap(), &group_value());
        assert_eq!(b.offsets[&tp("t", 0)].offset, 5);
    }

    #[test]
    fn replay_survives_reopening_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let topic = OffsetsTopic::new(vec![open_partition(dir.path())]);
            for i in 0..100 {
                topic
                    .append(
                        "g",
                        &[CoordinatorRecord::OffsetCommit {
                            group: "g".into(),
                            tp: tp("t", i % 4),
                            value: Some(offset(i64::from(i))),
                        }],
                    )
                    .unwrap();
            }
            topic.hosted_partitions()[&0].log().close().unwrap();
        }
        let partition = open_partition(dir.path());
        let mut groups = BTreeMap::new();
        let stats = replay(&partition, 1 << 20, &mut groups).unwrap();
        assert_eq!(stats.batches, 100);
        let g = &groups["g"];
        for p in 0..4 {
            assert_eq!(g.offsets[&tp("t", p)].offset, 96 + i64::from(p));
        }
    }
}
