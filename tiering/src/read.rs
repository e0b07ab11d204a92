//! Remote reads: offset → segment (manifest) → byte position (remote offset index) → bytes
//! (chunk cache) → whole, CRC-checked batches. No LIST, and no GET beyond the cache's.
//!
//! ```text
//!  manifest:  [ 0..99 ][ 100..199 ][ 200..299 ]
//!  read(150, 64 KiB):        ^ offset index of 100..199 → position p; scan headers from p to
//!                              the batch holding 150; read whole batches up to 64 KiB, going on
//!                              into 200..299 if 100..199 ends first (the cache's read-ahead
//!                              already follows into it: it is passed as the successor)
//! ```

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use shale_formats::batch::{self, RecordBatchHeader, ValidateOptions, RECORD_BATCH_OVERHEAD};
use shale_formats::ids::Offset;
use shale_formats::index;
use shale_formats::record;

use crate::error::TieringError;
use crate::indexes::SegmentIndexes;
use crate::metadata::RemoteLogSegmentMetadata;
use crate::partition::RemotePartition;

/// Bytes scanned per request while looking for a batch by its headers.
const SCAN_WINDOW_BYTES: u64 = 64 * 1024;

/// What a remote read found. Only broken data or an unreachable store are errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteReadOutcome {
    /// Whole batches, starting with the one that holds the requested offset. Empty if the
    /// first batch is larger than `max_bytes` and `min_one_batch` was false.
    Records(RemoteRecords),
    /// The offset is below the remote log start (deleted by retention or DeleteRecords): Kafka's
    /// `OFFSET_OUT_OF_RANGE`.
    OffsetBelowStart { remote_log_start_offset: Offset },
    /// The offset is not in the remote tier: nothing is remote yet, or it is past the remote end
    /// (`remote_log_end_offset`), so the local log has it if anyone does.
    NotRemote {
        remote_log_end_offset: Option<Offset>,
    },
}

/// Batches read from the remote tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRecords {
    /// Concatenated whole batches, as stored.
    pub records: Bytes,
    /// The offset after the last returned batch (where the next fetch continues).
    pub next_offset: Offset,
}

/// A record found by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteTimestampOffset {
    pub offset: Offset,
    pub timestamp: i64,
}

impl RemotePartition {
    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes` in
    /// total, continuing into following segments while there is room. With `min_one_batch`
    /// (Kafka: the first partition of a fetch) the first batch is returned even if larger than
    /// `max_bytes`. Every returned batch's CRC is checked after the read.
    pub async fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<RemoteReadOutcome, TieringError> {
        let manifest = self.manifest();
        self.check_not_deleted(&manifest)?;
        let (Some(start), Some(end)) = (
            manifest.remote_log_start_offset(),
            manifest.remote_log_end_offset(),
        ) else {
            return Ok(RemoteReadOutcome::NotRemote {
                remote_log_end_offset: None,
            });
        };
        if offset < start {
            return Ok(RemoteReadOutcome::OffsetBelowStart {
                remote_log_start_offset: start,
            });
        }
        if offset > end {
            return Ok(RemoteReadOutcome::NotRemote {
                remote_log_end_offset: Some(end),
            });
        }
        let segments: Vec<&RemoteLogSegmentMetadata> = manifest.readable_segments().collect();
        let first = segments
            .iter()
            .position(|s| s.contains(offset))
            .expect("readable segments are contiguous, so one holds every offset in start..=end");
        let mut out: Vec<Bytes> = Vec::new();
        let mut remaining = max_bytes;
        let mut next_offset = offset;
        for (i, segment) in segments.iter().enumerate().skip(first) {
            let successor = segments.get(i + 1).copied();
            let position = if i == first {
                match self.find_batch(segment, successor, offset).await? {
                    Some((position, _)) => position,
                    None => continue,
                }
            } else {
                0
            };
            let must_take_one = min_one_batch && out.is_empty();
            let (bytes, last) = self
                .read_batches(
                    segment,
                    successor,
                    position,
                    next_offset,
                    remaining,
                    must_take_one,
                )
                .await?;
            let Some(last) = last else {
                break;
            };
            remaining = remaining.saturating_sub(bytes.len());
            next_offset = last + 1;
            let reached_end = last >= segment.end_offset;
            out.push(bytes);
            if remaining == 0 || !reached_end {
                break;
            }
        }
        let records = match out.len() {
            0 => Bytes::new(),
            1 => out.pop().expect("one element"),
            _ => {
                let mut joined = BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
                for part in out {
                    joined.extend_from_slice(&part);
                }
                joined.freeze()
            }
        };
        Ok(RemoteReadOutcome::Records(RemoteRecords {
            records,
            next_offset,
        }))
    }

    /// Kafka's `ListOffsets` by timestamp over the remote tier: the first record (by offset)
    /// whose timestamp is ≥ `timestamp`, or `None` if every remote record is older. Uses the
    /// segments' max timestamps, then the time index, then batch headers; decodes one batch.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<RemoteTimestampOffset>, TieringError> {
        let manifest = self.manifest();
        self.check_not_deleted(&manifest)?;
        let log_start = manifest.remote_log_start_offset().unwrap_or(Offset::MIN);
        let segments: Vec<&RemoteLogSegmentMetadata> = manifest.readable_segments().collect();
        for (i, segment) in segments.iter().enumerate() {
            if segment.max_timestamp < timestamp {
                continue;
            }
            let successor = segments.get(i + 1).copied();
            if let Some(found) = self
                .find_in_segment(segment, successor, timestamp, log_start)
                .await?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn find_in_segment(
        &self,
        segment: &RemoteLogSegmentMetadata,
        successor: Option<&RemoteLogSegmentMetadata>,
        timestamp: i64,
        log_start: Offset,
    ) -> Result<Option<RemoteTimestampOffset>, TieringError> {
        let indexes = self.segment_indexes(segment).await?;
        // Start where the time index says every earlier record is older, but not below the
        // log start offset.
        let from_time = index::time_index_lookup(&indexes.time_index, timestamp)
            .map_or(segment.base_offset, |e| {
                segment.base_offset + i64::from(e.relative_offset)
            });
        let from = from_time.max(log_start).max(segment.base_offset);
        let relative = (from - segment.base_offset) as u32;
        let mut position = index::offset_index_lookup(&indexes.offset_index, relative)
            .map_or(0, |e| u64::from(e.position));
        loop {
            let Some((at, header)) = self
                .scan_headers(segment, successor, position, |h| {
                    h.max_timestamp >= timestamp && h.last_offset() >= from
                })
                .await?
            else {
                return Ok(None);
            };
            let size = header.size_bytes() as u64;
            let bytes = self.read_range(segment, successor, at..at + size).await?;
            self.check_batch(segment, at, from, &bytes)?;
            let records = record::decode_records(&bytes, self.shared.config.decompressed_bytes_max)
                .map_err(|e| {
                    self.corrupt(segment, from, at, format!("its records do not decode: {e}"))
                })?;
            let found = records
                .iter()
                .map(|r| (r.offset(header.base_offset), r.timestamp(&header)))
                .find(|&(offset, ts)| ts >= timestamp && offset >= from);
            if let Some((offset, timestamp)) = found {
                return Ok(Some(RemoteTimestampOffset { offset, timestamp }));
            }
            position = at + size;
        }
    }

    /// The position and header of the batch holding `offset` (or the first after it, if
    /// compaction removed it), via the offset index and a header scan.
    async fn find_batch(
        &self,
        segment: &RemoteLogSegmentMetadata,
        successor: Option<&RemoteLogSegmentMetadata>,
        offset: Offset,
    ) -> Result<Option<(u64, RecordBatchHeader)>, TieringError> {
        let position = self.index_position(segment, offset).await?;
        self.scan_headers(segment, successor, position, |h| h.last_offset() >= offset)
            .await
    }

    /// Where the batch holding `offset` starts or, the offset index being sparse, a batch
    /// boundary before it.
    pub(crate) async fn index_position(
        &self,
        segment: &RemoteLogSegmentMetadata,
        offset: Offset,
    ) -> Result<u64, TieringError> {
        let indexes = self.segment_indexes(segment).await?;
        let relative = (offset.max(segment.base_offset) - segment.base_offset) as u32;
        let position = index::offset_index_lookup(&indexes.offset_index, relative)
            .map_or(0, |e| u64::from(e.position));
        if position >= segment.size_bytes {
            return Err(self.corrupt(
                segment,
                offset,
                position,
                format!(
                    "the offset index points past the end ({} bytes)",
                    segment.size_bytes
                ),
            ));
        }
        Ok(position)
    }

    /// Walks batch headers from `position` to the first batch `wanted` accepts, reading windows
    /// of [`SCAN_WINDOW_BYTES`] and skipping over large batches without reading them.
    async fn scan_headers(
        &self,
        segment: &RemoteLogSegmentMetadata,
        successor: Option<&RemoteLogSegmentMetadata>,
        mut position: u64,
        wanted: impl Fn(&RecordBatchHeader) -> bool,
    ) -> Result<Option<(u64, RecordBatchHeader)>, TieringError> {
        while position < segment.size_bytes {
            let end = segment.size_bytes.min(position + SCAN_WINDOW_BYTES);
            let window = self.read_range(segment, successor, position..end).await?;
            let mut at = 0usize;
            while at + RECORD_BATCH_OVERHEAD <= window.len() {
                let batch_at = position + at as u64;
                let header = RecordBatchHeader::parse(&window[at..]).map_err(|e| {
                    self.corrupt(segment, segment.base_offset, batch_at, e.to_string())
                })?;
                let size = header.size_bytes();
                if batch_at + size as u64 > segment.size_bytes {
                    return Err(self.corrupt(
                        segment,
                        header.base_offset,
                        batch_at,
                        format!("a {size}-byte batch runs past the end of the segment"),
                    ));
                }
                if wanted(&header) {
                    return Ok(Some((batch_at, header)));
                }
                at += size;
            }
            if at == 0 {
                return Err(self.corrupt(
                    segment,
                    segment.base_offset,
                    position,
                    format!("{} trailing bytes are not a batch", window.len()),
                ));
            }
            position += at as u64;
        }
        Ok(None)
    }

    /// Whole batches from `position`, at most `max_bytes` (or exactly the first batch if it is
    /// larger and `must_take_one`); returns them and the last offset they hold.
    async fn read_batches(
        &self,
        segment: &RemoteLogSegmentMetadata,
        successor: Option<&RemoteLogSegmentMetadata>,
        position: u64,
        offset: Offset,
        max_bytes: usize,
        must_take_one: bool,
    ) -> Result<(Bytes, Option<Offset>), TieringError> {
        let available = segment.size_bytes - position;
        let mut want = (max_bytes as u64).min(available);
        if want < RECORD_BATCH_OVERHEAD as u64 || must_take_one {
            // Need the first header to know the first batch's size.
            let header_end = position + (RECORD_BATCH_OVERHEAD as u64).min(available);
            let head = self
                .read_range(segment, successor, position..header_end)
                .await?;
            let header = RecordBatchHeader::parse(&head)
                .map_err(|e| self.corrupt(segment, offset, position, e.to_string()))?;
            let first = header.size_bytes() as u64;
            if first > want {
                if !must_take_one {
                    return Ok((Bytes::new(), None));
                }
                want = first.min(available);
            }
        }
        let bytes = self
            .read_range(segment, successor, position..position + want)
            .await?;
        let mut last = None;
        let mut consumed = 0;
        let mut iter = batch::batches(&bytes).allow_incomplete_tail();
        for item in iter.by_ref() {
            let (header, range) =
                item.map_err(|e| self.corrupt(segment, offset, position, e.to_string()))?;
            let at = position + range.start as u64;
            self.check_batch(segment, at, offset, &bytes[range.clone()])?;
            last = Some(header.last_offset());
            consumed = range.end;
        }
        if position + want == segment.size_bytes && consumed < bytes.len() {
            return Err(self.corrupt(
                segment,
                offset,
                position + consumed as u64,
                "the segment ends inside a batch".to_string(),
            ));
        }
        Ok((bytes.slice(..consumed), last))
    }

    /// The pair check on read: the batch is whole, its CRC matches, and its offsets lie inside
    /// the segment the manifest says holds them.
    fn check_batch(
        &self,
        segment: &RemoteLogSegmentMetadata,
        position: u64,
        offset: Offset,
        bytes: &[u8],
    ) -> Result<(), TieringError> {
        let header = batch::validate_batch(bytes, &ValidateOptions::stored())
            .map_err(|e| self.corrupt(segment, offset, position, e.to_string()))?;
        if header.base_offset < segment.base_offset || header.last_offset() > segment.end_offset {
            return Err(self.corrupt(
                segment,
                offset,
                position,
                format!(
                    "the batch holds offsets {}..={}, outside the segment's {}..={}",
                    header.base_offset,
                    header.last_offset(),
                    segment.base_offset,
                    segment.end_offset
                ),
            ));
        }
        Ok(())
    }

    async fn read_range(
        &self,
        segment: &RemoteLogSegmentMetadata,
        successor: Option<&RemoteLogSegmentMetadata>,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, TieringError> {
        let path = self.layout.log(segment.base_offset, segment.segment_id);
        let successor =
            successor.map(|s| (self.layout.log(s.base_offset, s.segment_id), s.size_bytes));
        let expected = range.end - range.start;
        let bytes = self
            .shared
            .cache
            .read_range(&path, range.clone(), segment.size_bytes, successor)
            .await
            .map_err(|e| self.cache_error(&path, e))?;
        if bytes.len() as u64 != expected {
            return Err(self.corrupt(
                segment,
                segment.base_offset,
                range.start,
                format!("a read of {expected} bytes returned {}", bytes.len()),
            ));
        }
        Ok(bytes)
    }

    fn cache_error(&self, path: &Path, e: shale_cache::CacheError) -> TieringError {
        TieringError::Cache {
            tp: self.tp.clone(),
            path: path.to_string(),
            reason: e.to_string(),
        }
    }

    /// The segment's decoded `.indexes` object, from memory or through the cache.
    pub(crate) async fn segment_indexes(
        &self,
        segment: &RemoteLogSegmentMetadata,
    ) -> Result<Arc<SegmentIndexes>, TieringError> {
        if let Some(indexes) = self.shared.indexes.get(segment.segment_id) {
            return Ok(indexes);
        }
        let path = self.layout.indexes(segment.base_offset, segment.segment_id);
        let bytes = self
            .shared
            .cache
            .read_all(&path)
            .await
            .map_err(|e| self.cache_error(&path, e))?;
        let indexes = Arc::new(SegmentIndexes::decode(&bytes).map_err(|reason| {
            TieringError::CorruptIndexes {
                tp: self.tp.clone(),
                path: path.to_string(),
                reason,
            }
        })?);
        self.shared
            .indexes
            .insert(segment.segment_id, indexes.clone());
        Ok(indexes)
    }

    pub(crate) fn corrupt(
        &self,
        segment: &RemoteLogSegmentMetadata,
        offset: Offset,
        position: u64,
        reason: String,
    ) -> TieringError {
        TieringError::CorruptSegment {
            tp: self.tp.clone(),
            path: self
                .layout
                .log(segment.base_offset, segment.segment_id)
                .to_string(),
            offset,
            position,
            reason,
        }
    }

    /// The manifest's readable segments, for callers that plan reads themselves.
    pub fn readable_segments(&self) -> Vec<RemoteLogSegmentMetadata> {
        self.manifest().readable_segments().cloned().collect()
    }
}

/// `Path` of a segment's `.log`, for tests and tools.
pub fn log_path(partition: &RemotePartition, segment: &RemoteLogSegmentMetadata) -> Path {
    partition
        .layout
        .log(segment.base_offset, segment.segment_id)
}
