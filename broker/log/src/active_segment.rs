//! [`ActiveSegment`]: the writer's side of the last segment: open index files, the indexing
//! rule, roll decisions, appends, recovery and truncation.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use shale_formats::batch::RECORD_BATCH_OVERHEAD;
use shale_formats::ids::{LeaderEpoch, Offset};
use shale_formats::index::{OFFSET_INDEX_ENTRY_SIZE, TIME_INDEX_ENTRY_SIZE};

use super::error::io_error;
use super::files::{offset_file, LOG_SUFFIX};
use super::index::Indexes;
use super::scan::{check_batch_offsets, scan_batches};
use super::segment::{indexed, open_index_file, push_entries, write_index_files, LogSegment};
use super::LogError;
use shale_formats::index::{IndexRule, IndexedBatch};

/// One batch of an append, with its final offsets.
#[derive(Clone, Copy, Debug)]
pub(super) struct AppendedBatch {
    /// Where the batch starts in the appended bytes.
    pub(super) position: usize,
    pub(super) size: usize,
    pub(super) last_offset: Offset,
    pub(super) max_timestamp: i64,
}

/// What recovering the active segment found.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    pub(super) truncated_bytes: u64,
    /// (partition leader epoch, base offset) of each batch that starts a new epoch.
    pub(super) epoch_starts: Vec<(LeaderEpoch, Offset)>,
}

/// Limits that decide when the active segment is rolled.
#[derive(Clone, Copy, Debug)]
pub(super) struct RollLimits {
    pub(super) segment_bytes: u64,
    pub(super) segment_ms: i64,
    pub(super) offset_index_entries_max: usize,
    pub(super) time_index_entries_max: usize,
}

/// The writer's side of the last segment.
pub(super) struct ActiveSegment {
    segment: Arc<LogSegment>,
    index_file: File,
    time_index_file: File,
    rule: IndexRule,
    next_offset: Offset,
    /// Max timestamp of the segment's first batch: the clock `segment.ms` runs against.
    rolling_timestamp: Option<i64>,
    created_ms: i64,
}

impl ActiveSegment {
    /// Creates (or empties) the files of a new segment at `base_offset`.
    pub(super) fn create(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        let path = offset_file(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_error(&path, "create a segment"))?;
        let segment = LogSegment::from_file(dir, base_offset, file, 0, index_interval_bytes);
        let (index_file, time_index_file) = write_index_files(&segment, &Indexes::default())?;
        *segment
            .indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Indexes::default());
        Ok(Self {
            segment: Arc::new(segment),
            index_file,
            time_index_file,
            rule: IndexRule::new(base_offset, index_interval_bytes),
            next_offset: base_offset,
            rolling_timestamp: None,
            created_ms: now_ms,
        })
    }

    /// Scans the whole segment (validating every batch when `validate`), truncates the file at
    /// the first bad or incomplete batch, and rewrites both indexes from what remains.
    pub(super) fn recover(
        segment: Arc<LogSegment>,
        validate: bool,
        now_ms: i64,
    ) -> Result<(Self, Recovery), LogError> {
        let path = segment.log_path.clone();
        let file_len = segment
            .file
            .metadata()
            .map_err(io_error(&path, "stat a segment"))?
            .len();
        let base = segment.base_offset;
        let mut rule = IndexRule::new(base, segment.index_interval_bytes);
        let mut indexes = Indexes::default();
        let mut next_offset = base;
        let mut rolling_timestamp = None;
        let mut recovery = Recovery::default();
        let mut last_epoch = None;
        let outcome = scan_batches(
            &segment.file,
            &path,
            0,
            file_len,
            validate,
            |position, h| {
                check_batch_offsets(base, next_offset, h)?;
                push_entries(&mut indexes, rule.on_batch(&indexed(position, h)));
                rolling_timestamp.get_or_insert(h.max_timestamp);
                next_offset = h.next_offset();
                if h.partition_leader_epoch.is_defined()
                    && last_epoch != Some(h.partition_leader_epoch)
                {
                    last_epoch = Some(h.partition_leader_epoch);
                    recovery
                        .epoch_starts
                        .push((h.partition_leader_epoch, h.base_offset));
                }
                Ok(())
            },
        )?;
        if let Some(reason) = outcome.invalid {
            recovery.truncated_bytes = file_len - outcome.valid_bytes;
            tracing::warn!(
                segment = %path.display(),
                position = outcome.valid_bytes,
                dropped_bytes = recovery.truncated_bytes,
                reason,
                "truncating the active segment at its first invalid batch"
            );
            segment
                .file
                .set_len(outcome.valid_bytes)
                .and_then(|()| segment.file.sync_all())
                .map_err(io_error(&path, "truncate a segment"))?;
        }
        segment.size.store(outcome.valid_bytes, Ordering::Release);
        let (index_file, time_index_file) = write_index_files(&segment, &indexes)?;
        *segment.lock_max_timestamp() = (rule.max_timestamp, rule.offset_of_max_timestamp);
        *segment
            .indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(indexes);
        Ok((
            Self {
                segment,
                index_file,
                time_index_file,
                rule,
                next_offset,
                rolling_timestamp,
                created_ms: now_ms,
            },
            recovery,
        ))
    }

    /// Reopens the active segment after a clean shutdown: trusts its index files (after the same
    /// checks a lazy load does) and scans only the batches after the last index entry. Falls back
    /// to a full recovery if anything does not add up.
    pub(super) fn open_clean(
        segment: Arc<LogSegment>,
        now_ms: i64,
    ) -> Result<(Self, Recovery), LogError> {
        match Self::try_open_clean(&segment, now_ms) {
            Ok(Some(active)) => Ok((active, Recovery::default())),
            Ok(None) => Self::recover(segment, true, now_ms),
            Err(e) => Err(e),
        }
    }

    fn try_open_clean(segment: &Arc<LogSegment>, now_ms: i64) -> Result<Option<Self>, LogError> {
        let read = |path: &Path| std::fs::read(path).map_err(|e| e.to_string());
        let size = segment.size();
        let indexes = match read(&segment.index_path).and_then(|offsets| {
            Indexes::decode(&offsets, &read(&segment.time_index_path)?, size, true)
        }) {
            Ok(indexes) => indexes,
            Err(reason) => {
                tracing::warn!(segment = %segment.log_path.display(), reason,
                    "the active segment's indexes are unusable after a clean shutdown");
                return Ok(None);
            }
        };
        let base = segment.base_offset;
        let mut rule = IndexRule::new(base, segment.index_interval_bytes);
        if let Some(last) = indexes.last_time_entry() {
            rule.max_timestamp = last.timestamp;
            rule.offset_of_max_timestamp = base + i64::from(last.relative_offset);
            rule.last_indexed_timestamp = last.timestamp;
        }
        let from = indexes
            .last_offset_entry()
            .map_or(0, |e| u64::from(e.position));
        rule.bytes_since_last_entry = size - from;
        let mut next_offset = base;
        let mut first = None;
        let outcome = scan_batches(
            &segment.file,
            &segment.log_path,
            from,
            size,
            false,
            |_, h| {
                check_batch_offsets(base, next_offset, h)?;
                // Timestamps after the last time entry were folded into it on close; a larger one
                // means the file changed since.
                if h.max_timestamp > rule.max_timestamp {
                    return Err("a batch is newer than the time index".to_owned());
                }
                first.get_or_insert(h.max_timestamp);
                next_offset = h.next_offset();
                Ok(())
            },
        )?;
        if let Some(reason) = outcome.invalid {
            tracing::warn!(segment = %segment.log_path.display(), reason,
                "the active segment does not match its indexes after a clean shutdown");
            return Ok(None);
        }
        let rolling_timestamp = if from == 0 {
            first
        } else {
            let mut window = segment.window(size, RECORD_BATCH_OVERHEAD);
            window.header(0)?.map(|h| h.max_timestamp)
        };
        let index_file = open_index_file(&segment.index_path, false)?;
        let time_index_file = open_index_file(&segment.time_index_path, false)?;
        *segment.lock_max_timestamp() = (rule.max_timestamp, rule.offset_of_max_timestamp);
        *segment
            .indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(indexes);
        Ok(Some(Self {
            segment: Arc::clone(segment),
            index_file,
            time_index_file,
            rule,
            next_offset,
            rolling_timestamp,
            created_ms: now_ms,
        }))
    }

    pub(super) fn segment(&self) -> &Arc<LogSegment> {
        &self.segment
    }

    pub(super) fn base_offset(&self) -> Offset {
        self.segment.base_offset
    }

    /// The offset after the last batch in the segment (the base offset when empty).
    pub(super) fn next_offset(&self) -> Offset {
        self.next_offset
    }

    pub(super) fn size(&self) -> u64 {
        self.segment.size()
    }

    /// Kafka's `LogSegment.shouldRoll`: why an append of `bytes` bytes ending at `last_offset`
    /// with largest timestamp `max_timestamp` must go to a new segment, if it must.
    pub(super) fn roll_reason(
        &self,
        limits: &RollLimits,
        bytes: usize,
        max_timestamp: i64,
        last_offset: Offset,
        now_ms: i64,
    ) -> Option<&'static str> {
        let size = self.size();
        let waited_ms = match self.rolling_timestamp {
            Some(first) if first >= 0 => max_timestamp.saturating_sub(first),
            _ => now_ms.saturating_sub(self.created_ms),
        };
        let indexes = self
            .segment
            .indexes
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let (offset_entries, time_entries) = indexes
            .as_ref()
            .map_or((0, 0), |ix| (ix.offset_entries(), ix.time_entries()));
        if size > 0 && size + bytes as u64 > limits.segment_bytes {
            Some("segment.bytes")
        } else if size > 0 && waited_ms > limits.segment_ms {
            Some("segment.ms")
        } else if offset_entries >= limits.offset_index_entries_max
            || time_entries >= limits.time_index_entries_max
        {
            Some("segment.index.bytes")
        } else if last_offset - self.base_offset() > i64::from(i32::MAX) {
            Some("relative offset overflow")
        } else {
            None
        }
    }

    /// Appends whole batches with final offsets: the bytes in one positional write, then the
    /// index entries; publishes the new size last. On error nothing becomes visible and the file
    /// is cut back to where it was.
    pub(super) fn append(
        &mut self,
        records: &[u8],
        batches: &[AppendedBatch],
    ) -> Result<(), LogError> {
        let segment = Arc::clone(&self.segment);
        let start = segment.size();
        let mut rule = self.rule.clone();
        let mut new_entries = Indexes::default();
        for b in batches {
            let (o, t) = rule.on_batch(&IndexedBatch {
                position: start + b.position as u64,
                size: b.size as u64,
                last_offset: b.last_offset,
                max_timestamp: b.max_timestamp,
            });
            push_entries(&mut new_entries, (o, t));
        }
        let (offsets_len, times_len) = {
            let guard = segment
                .indexes
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let ix = guard
                .as_ref()
                .expect("the active segment's indexes are loaded");
            (ix.offset_entries(), ix.time_entries())
        };
        let written = segment
            .file
            .write_all_at(records, start)
            .map_err(io_error(&segment.log_path, "append to a segment"))
            .and_then(|()| {
                append_entries(
                    &self.index_file,
                    &segment.index_path,
                    offsets_len * OFFSET_INDEX_ENTRY_SIZE,
                    new_entries.offset_bytes(),
                )
            })
            .and_then(|()| {
                append_entries(
                    &self.time_index_file,
                    &segment.time_index_path,
                    times_len * TIME_INDEX_ENTRY_SIZE,
                    new_entries.time_bytes(),
                )
            });
        if let Err(e) = written {
            // Best effort: leave no bytes that a recovery could mistake for acknowledged data.
            let _ = segment.file.set_len(start);
            let _ = self
                .index_file
                .set_len((offsets_len * OFFSET_INDEX_ENTRY_SIZE) as u64);
            let _ = self
                .time_index_file
                .set_len((times_len * TIME_INDEX_ENTRY_SIZE) as u64);
            return Err(e);
        }
        {
            let mut guard = segment
                .indexes
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let ix = guard
                .as_mut()
                .expect("the active segment's indexes are loaded");
            ix.extend(&new_entries);
        }
        if let Some(first) = batches.first() {
            self.rolling_timestamp.get_or_insert(first.max_timestamp);
        }
        if let Some(last) = batches.last() {
            self.next_offset = last.last_offset + 1;
        }
        *segment.lock_max_timestamp() = (rule.max_timestamp, rule.offset_of_max_timestamp);
        self.rule = rule;
        segment
            .size
            .store(start + records.len() as u64, Ordering::Release);
        Ok(())
    }

    /// Writes the final time index entry (so the last entry holds the segment's largest
    /// timestamp, which a later open reads back) without syncing.
    fn write_final_time_entry(&mut self) -> Result<(), LogError> {
        let Some(entry) = self.rule.maybe_time_entry() else {
            return Ok(());
        };
        let mut guard = self
            .segment
            .indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let ix = guard
            .as_mut()
            .expect("the active segment's indexes are loaded");
        let at = ix.time_entries() * TIME_INDEX_ENTRY_SIZE;
        append_entries(
            &self.time_index_file,
            &self.segment.time_index_path,
            at,
            &entry.encode(),
        )?;
        ix.push_time(&entry);
        Ok(())
    }

    /// fsyncs the segment and its indexes.
    pub(super) fn flush(&self) -> Result<(), LogError> {
        let s = &self.segment;
        s.file
            .sync_data()
            .map_err(io_error(&s.log_path, "fsync a segment"))?;
        self.index_file
            .sync_data()
            .map_err(io_error(&s.index_path, "fsync a segment index"))?;
        self.time_index_file
            .sync_data()
            .map_err(io_error(&s.time_index_path, "fsync a segment index"))
    }

    /// Before a clean shutdown: final time entry, then fsync.
    pub(super) fn close(&mut self) -> Result<(), LogError> {
        self.write_final_time_entry()?;
        self.flush()
    }
}

fn append_entries(file: &File, path: &Path, at: usize, bytes: &[u8]) -> Result<(), LogError> {
    if bytes.is_empty() {
        return Ok(());
    }
    file.write_all_at(bytes, at as u64)
        .map_err(io_error(path, "append to a segment index"))
}

/// Cuts `segment` so that it ends before the first batch whose last offset is ≥ `offset`;
/// returns the new size. The caller rebuilds the writer state with [`ActiveSegment::recover`].
pub(super) fn truncate_segment(segment: &LogSegment, offset: Offset) -> Result<u64, LogError> {
    let size = segment.size();
    let cut = segment
        .locate(offset, size)?
        .map_or(size, |(position, _)| position);
    if cut < size {
        segment
            .file
            .set_len(cut)
            .and_then(|()| segment.file.sync_all())
            .map_err(io_error(&segment.log_path, "truncate a segment"))?;
        segment.size.store(cut, Ordering::Release);
    }
    Ok(cut)
}
