//! [`LogReader`]: a snapshot of a log for reads without the partition lock.
//!
//! A reader holds the segment list as it was (an `Arc`), the log start and end offsets, and the
//! active segment's size at that moment. Appends after the snapshot are invisible to it; segments
//! deleted after it stay readable through their open file handles until the reader is dropped.
//! A truncation (replica catch-up after a leader change) can cut bytes a reader still expects;
//! the reader then fails with an I/O or corruption error rather than returning stale bytes
//! past the new end, and the caller retries with a fresh snapshot.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use shale_formats::batch::RecordBatchHeader;
use shale_formats::ids::Offset;

use super::segment::LogSegment;
use super::{LogError, ReadResult, TimestampOffset};

/// A consistent, cheap-to-clone view of a log for fetches and ListOffsets.
#[derive(Clone)]
pub struct LogReader {
    pub(super) dir: Arc<Path>,
    pub(super) segments: Arc<Vec<Arc<LogSegment>>>,
    pub(super) log_start_offset: Offset,
    pub(super) log_end_offset: Offset,
    /// Bytes of the last segment visible to this reader.
    pub(super) active_size: u64,
}

impl LogReader {
    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log_end_offset
    }

    fn end_of(&self, i: usize) -> u64 {
        if i + 1 == self.segments.len() {
            self.active_size
        } else {
            self.segments[i].size()
        }
    }

    /// Index of the segment that holds `offset` (the last one based at or below it).
    fn segment_for(&self, offset: Offset) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// A fetch: whole batches starting with the one that holds `start_offset`, up to `max_bytes`
    /// (or the whole first batch when `min_one_batch` and it is larger, Kafka's KIP-74), none
    /// with offsets at or above `max_offset_exclusive` (the high watermark for consumers),
    /// continuing across segments.
    ///
    /// `OffsetOutOfRange` when `start_offset` is below the log start or above the log end; an
    /// empty result at the log end or the bound.
    pub fn read(
        &self,
        start_offset: Offset,
        max_bytes: usize,
        max_offset_exclusive: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        if start_offset < self.log_start_offset || start_offset > self.log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                dir: self.dir.to_path_buf(),
                offset: start_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        let upper = max_offset_exclusive.min(self.log_end_offset);
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut taken = 0usize;
        let mut i = self.segment_for(start_offset);
        let mut from = start_offset;
        while i < self.segments.len() && from < upper {
            let read = self.segments[i].read(
                from,
                self.end_of(i),
                max_bytes.saturating_sub(taken),
                upper,
                min_one_batch && taken == 0,
            )?;
            if let Some(bytes) = read.bytes {
                taken += bytes.len();
                pieces.push(bytes);
            }
            if read.stop {
                break;
            }
            i += 1;
            if let Some(next) = self.segments.get(i) {
                from = from.max(next.base_offset());
            }
        }
        let records = match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.pop().unwrap_or_default(),
            _ => {
                let mut out = BytesMut::with_capacity(taken);
                for piece in pieces {
                    out.extend_from_slice(&piece);
                }
                out.freeze()
            }
        };
        Ok(ReadResult {
            records,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        })
    }

    /// ListOffsets by timestamp: the first record at or after the log start whose timestamp is
    /// ≥ `target_timestamp`, or `None` if there is none. The caller hides answers at or above
    /// the high watermark from consumers, as Kafka does.
    pub fn fetch_offset_by_timestamp(
        &self,
        target_timestamp: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.max_timestamp().0 < target_timestamp {
                continue;
            }
            let found = segment.find_offset_by_timestamp(
                target_timestamp,
                self.log_start_offset,
                self.end_of(i),
            )?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (-3): the first record carrying the largest timestamp in the
    /// log, or `None` for a log without timestamps.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, LogError> {
        let mut best: Option<(usize, i64, Offset)> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            let (timestamp, offset) = segment.max_timestamp();
            if timestamp >= 0 && best.is_none_or(|(_, t, _)| timestamp > t) {
                best = Some((i, timestamp, offset));
            }
        }
        let Some((i, timestamp, batch_last_offset)) = best else {
            return Ok(None);
        };
        let exact =
            self.segments[i].record_with_timestamp(batch_last_offset, timestamp, self.end_of(i))?;
        Ok(Some(exact.unwrap_or(TimestampOffset {
            timestamp,
            offset: batch_last_offset,
            leader_epoch: None,
        })))
    }

    /// Calls `visit` with the header of every batch whose last offset is ≥ `from`, in order.
    pub(super) fn for_each_batch_from(
        &self,
        from: Offset,
        mut visit: impl FnMut(&RecordBatchHeader),
    ) -> Result<(), LogError> {
        for i in self.segment_for(from)..self.segments.len() {
            let segment = &self.segments[i];
            let end = self.end_of(i);
            let Some((position, _)) = segment.locate(from, end)? else {
                continue;
            };
            let outcome = segment.scan(position, end, |_, header| {
                visit(header);
                Ok(())
            })?;
            if let Some(reason) = outcome.invalid {
                return Err(LogError::CorruptRecord {
                    dir: self.dir.to_path_buf(),
                    reason: format!(
                        "{} is unreadable at byte {}: {reason}",
                        segment.log_path().display(),
                        outcome.valid_bytes
                    ),
                });
            }
        }
        Ok(())
    }
}
