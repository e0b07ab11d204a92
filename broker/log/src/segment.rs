//! One segment as readers share it: a `.log` file of whole record batches plus its `.index`
//! and `.timeindex`.
//!
//! [`LogSegment`] lives behind an `Arc`: the file handle, the published size, the largest
//! timestamp and the in-memory indexes (loaded lazily for sealed segments). Reads are positional
//! (`read_at`) and never go past the size a reader's snapshot recorded, so they need no lock
//! while appends continue. The writer's side of the last segment is in `active_segment`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use bytes::Bytes;
use shale_formats::batch::{RecordBatchHeader, RECORD_BATCH_OVERHEAD};
use shale_formats::ids::Offset;
use shale_formats::index::{
    OffsetIndexEntry, TimeIndexEntry, OFFSET_INDEX_ENTRY_SIZE, TIME_INDEX_ENTRY_SIZE,
};
use shale_formats::record::decode_records;

use super::error::io_error;
use super::files::{offset_file, remove_if_exists, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX};
use super::index::Indexes;
use super::scan::{check_batch_offsets, scan_batches, FileWindow, ScanOutcome, SCAN_CHUNK_BYTES};
use super::{LogError, TimestampOffset};
use shale_formats::index::{IndexRule, IndexedBatch};

/// Decompression bound for the one batch a timestamp lookup decodes.
const TIMESTAMP_LOOKUP_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// The reader-visible part of a segment.
pub(super) struct LogSegment {
    pub(super) base_offset: Offset,
    pub(super) log_path: PathBuf,
    pub(super) index_path: PathBuf,
    pub(super) time_index_path: PathBuf,
    pub(super) file: File,
    /// Bytes of whole batches readers may see. Stored after the bytes are written.
    pub(super) size: AtomicU64,
    /// (largest batch max timestamp, last offset of that batch); -1 timestamp when none.
    max_timestamp: Mutex<(i64, Offset)>,
    /// `None` until first needed for a sealed segment; always loaded for the active one.
    pub(super) indexes: RwLock<Option<Indexes>>,
    /// Set by every index lookup; cleared by [`release_idle_indexes`](Self::release_idle_indexes).
    index_used: AtomicBool,
    pub(super) index_interval_bytes: u64,
}

/// What a segment contributed to a read.
pub(super) struct SegmentRead {
    pub(super) bytes: Option<Bytes>,
    /// The read must not continue into the next segment (byte budget or upper offset reached).
    pub(super) stop: bool,
}

impl LogSegment {
    fn paths(dir: &Path, base_offset: Offset) -> (PathBuf, PathBuf, PathBuf) {
        (
            offset_file(dir, base_offset, LOG_SUFFIX),
            offset_file(dir, base_offset, INDEX_SUFFIX),
            offset_file(dir, base_offset, TIME_INDEX_SUFFIX),
        )
    }

    pub(super) fn from_file(
        dir: &Path,
        base_offset: Offset,
        file: File,
        size: u64,
        index_interval_bytes: u64,
    ) -> Self {
        let (log_path, index_path, time_index_path) = Self::paths(dir, base_offset);
        Self {
            base_offset,
            log_path,
            index_path,
            time_index_path,
            file,
            size: AtomicU64::new(size),
            max_timestamp: Mutex::new((-1, base_offset)),
            indexes: RwLock::new(None),
            index_used: AtomicBool::new(false),
            index_interval_bytes,
        }
    }

    /// Opens an existing segment file without reading its indexes yet.
    pub(super) fn open(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u64,
    ) -> Result<Self, LogError> {
        let path = offset_file(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "open a segment"))?;
        let size = file
            .metadata()
            .map_err(io_error(&path, "stat a segment"))?
            .len();
        Ok(Self::from_file(
            dir,
            base_offset,
            file,
            size,
            index_interval_bytes,
        ))
    }

    /// Opens a sealed segment: checks its index files cheaply (sizes, last entries) and takes
    /// its largest timestamp from the last time index entry; rebuilds both indexes from the
    /// batches when the check fails. Entries are loaded on first use.
    pub(super) fn open_sealed(
        dir: &Path,
        base_offset: Offset,
        index_interval_bytes: u64,
    ) -> Result<Self, LogError> {
        let segment = Self::open(dir, base_offset, index_interval_bytes)?;
        match segment.check_index_files() {
            Ok(last_time) => {
                if let Some(t) = last_time {
                    *segment.lock_max_timestamp() =
                        (t.timestamp, base_offset + i64::from(t.relative_offset));
                }
            }
            Err(reason) => {
                tracing::warn!(
                    segment = %segment.log_path.display(),
                    reason,
                    "rebuilding the indexes of a sealed segment"
                );
                let indexes = segment.rebuild_indexes()?;
                *segment
                    .indexes
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(indexes);
            }
        }
        Ok(segment)
    }

    pub(super) fn base_offset(&self) -> Offset {
        self.base_offset
    }

    pub(super) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(super) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// (largest batch max timestamp, last offset of that batch), timestamp -1 when none.
    pub(super) fn max_timestamp(&self) -> (i64, Offset) {
        *self.lock_max_timestamp()
    }

    /// Kafka's `LogSegment.largestTimestamp`: the largest record timestamp, or the file's
    /// modification time when the segment holds no timestamps.
    pub(super) fn largest_timestamp(&self) -> Result<i64, LogError> {
        let (max, _) = self.max_timestamp();
        if max >= 0 {
            return Ok(max);
        }
        let modified = self
            .file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(io_error(
                &self.log_path,
                "read a segment's modification time",
            ))?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64))
    }

    pub(super) fn lock_max_timestamp(&self) -> std::sync::MutexGuard<'_, (i64, Offset)> {
        self.max_timestamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes the segment's files. Readers holding the segment keep reading through their open
    /// handle; the space is freed when the last one lets go.
    pub(super) fn delete_files(&self) -> Result<(), LogError> {
        for path in [&self.log_path, &self.index_path, &self.time_index_path] {
            remove_if_exists(path).map_err(io_error(path, "delete a segment file"))?;
        }
        Ok(())
    }

    /// Cheap checks that let a sealed segment trust its index files without reading them all.
    /// Returns the last time index entry.
    fn check_index_files(&self) -> Result<Option<TimeIndexEntry>, String> {
        let open = |path: &Path| File::open(path).map_err(|e| format!("{}: {e}", path.display()));
        let index = open(&self.index_path)?;
        let time_index = open(&self.time_index_path)?;
        let len = |f: &File| f.metadata().map(|m| m.len()).map_err(|e| e.to_string());
        let (index_len, time_len) = (len(&index)?, len(&time_index)?);
        if index_len % OFFSET_INDEX_ENTRY_SIZE as u64 != 0
            || time_len % TIME_INDEX_ENTRY_SIZE as u64 != 0
        {
            return Err(format!(
                "index sizes {index_len} and {time_len} are not whole entries"
            ));
        }
        if index_len > 0 {
            let mut entry = [0u8; OFFSET_INDEX_ENTRY_SIZE];
            index
                .read_exact_at(&mut entry, index_len - OFFSET_INDEX_ENTRY_SIZE as u64)
                .map_err(|e| e.to_string())?;
            let position = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
            if u64::from(position) >= self.size() {
                return Err(format!(
                    "the last offset index entry points at byte {position}, past the end"
                ));
            }
        } else if self.size() > 4 * self.index_interval_bytes + 2 * SCAN_CHUNK_BYTES as u64 {
            // A big segment with an empty index: the index was lost, not merely sparse.
            return Err("the offset index is empty".to_owned());
        }
        if time_len == 0 {
            return Ok(None);
        }
        let mut entry = [0u8; TIME_INDEX_ENTRY_SIZE];
        time_index
            .read_exact_at(&mut entry, time_len - TIME_INDEX_ENTRY_SIZE as u64)
            .map_err(|e| e.to_string())?;
        Ok(TimeIndexEntry::decode(&entry))
    }

    /// Rebuilds both index files from the batch headers (no CRC checks: the segment was sealed
    /// after an fsync) and returns them; the caller installs them.
    fn rebuild_indexes(&self) -> Result<Indexes, LogError> {
        let mut rule = IndexRule::new(self.base_offset, self.index_interval_bytes);
        let mut indexes = Indexes::default();
        let base = self.base_offset;
        let outcome = scan_batches(
            &self.file,
            &self.log_path,
            0,
            self.size(),
            false,
            |position, header| {
                check_batch_offsets(base, Offset::MIN, header)?;
                push_entries(&mut indexes, rule.on_batch(&indexed(position, header)));
                Ok(())
            },
        )?;
        if let Some(reason) = outcome.invalid {
            tracing::warn!(
                segment = %self.log_path.display(),
                position = outcome.valid_bytes,
                reason,
                "a sealed segment holds unreadable bytes; indexing stops there"
            );
        }
        push_entries(&mut indexes, (None, rule.maybe_time_entry()));
        write_index_files(self, &indexes)?;
        *self.lock_max_timestamp() = (rule.max_timestamp, rule.offset_of_max_timestamp);
        Ok(indexes)
    }

    /// Runs `f` on the loaded indexes, loading them first if needed (files that fail their
    /// checks are rebuilt from the segment).
    fn with_indexes<R>(&self, f: impl FnOnce(&Indexes) -> R) -> Result<R, LogError> {
        self.index_used.store(true, Ordering::Relaxed);
        {
            let guard = self.indexes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(indexes) = guard.as_ref() {
                return Ok(f(indexes));
            }
        }
        let mut guard = self.indexes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(indexes) = guard.as_ref() {
            return Ok(f(indexes));
        }
        let read = |path: &Path| std::fs::read(path).map_err(|e| e.to_string());
        let loaded = read(&self.index_path).and_then(|offsets| {
            let times = read(&self.time_index_path)?;
            Indexes::decode(&offsets, &times, self.size(), false)
        });
        let indexes = match loaded {
            Ok(indexes) => indexes,
            Err(reason) => {
                tracing::warn!(
                    segment = %self.log_path.display(),
                    reason,
                    "rebuilding unreadable segment indexes"
                );
                // Under the write lock, so concurrent readers wait for one rebuild.
                self.rebuild_indexes()?
            }
        };
        let result = f(&indexes);
        *guard = Some(indexes);
        Ok(result)
    }

    fn relative(&self, offset: Offset) -> u32 {
        u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX)
    }

    /// Position of a batch at or before the one holding `offset`.
    fn index_position(&self, offset: Offset, end: u64) -> Result<u64, LogError> {
        if offset <= self.base_offset {
            // No need to load a sealed segment's index to start at its beginning.
            return Ok(0);
        }
        let relative = self.relative(offset);
        Ok(self.with_indexes(|ix| ix.position_for(relative))?.min(end))
    }

    pub(super) fn window(&self, end: u64, chunk: usize) -> FileWindow<'_> {
        FileWindow::new(&self.file, &self.log_path, end, chunk)
    }

    /// The first batch whose last offset is ≥ `offset`, with its position, looking no further
    /// than byte `end`.
    pub(super) fn locate(
        &self,
        offset: Offset,
        end: u64,
    ) -> Result<Option<(u64, RecordBatchHeader)>, LogError> {
        let mut position = self.index_position(offset, end)?;
        let mut window = self.window(end, SCAN_CHUNK_BYTES);
        while let Some(header) = window.header(position)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// Whole batches starting with the one holding `from`, at most `budget` bytes (or the first
    /// batch alone if `min_one_batch` and it is larger), none whose last offset reaches
    /// `upper`, none past byte `end`.
    pub(super) fn read(
        &self,
        from: Offset,
        end: u64,
        budget: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<SegmentRead, LogError> {
        let mut position = self.index_position(from, end)?;
        // One read usually covers the scan from the indexed batch and the whole answer.
        let chunk = budget
            .saturating_add(self.index_interval_bytes as usize)
            .saturating_add(2 * RECORD_BATCH_OVERHEAD);
        let mut window = self.window(end, chunk);
        let mut header = loop {
            match window.header(position)? {
                None => {
                    return Ok(SegmentRead {
                        bytes: None,
                        stop: false,
                    })
                }
                Some(h) if h.last_offset() < from => position += h.size_bytes() as u64,
                Some(h) => break h,
            }
        };
        let start = position;
        let mut stop = false;
        loop {
            let size = header.size_bytes() as u64;
            if header.last_offset() >= upper || position + size > end {
                stop = true;
                break;
            }
            let taken = (position - start) as usize;
            if taken + size as usize > budget {
                if min_one_batch && taken == 0 {
                    position += size;
                }
                stop = true;
                break;
            }
            position += size;
            match window.header(position)? {
                Some(next) => header = next,
                None => break,
            }
        }
        let bytes = if position > start {
            Some(window.take(start, position)?)
        } else {
            None
        };
        Ok(SegmentRead { bytes, stop })
    }

    /// ListOffsets by timestamp within this segment: the first record at or after `min_offset`
    /// whose timestamp is ≥ `target`.
    pub(super) fn find_offset_by_timestamp(
        &self,
        target: i64,
        min_offset: Offset,
        end: u64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let relative = self.with_indexes(|ix| ix.offset_for_timestamp(target))?;
        let from = (self.base_offset + i64::from(relative.unwrap_or(0))).max(min_offset);
        let mut position = self.index_position(from, end)?;
        let mut window = self.window(end, SCAN_CHUNK_BYTES);
        while let Some(header) = window.header(position)? {
            let size = header.size_bytes() as u64;
            if header.max_timestamp >= target && header.last_offset() >= min_offset {
                let batch = window.bytes(position, size)?;
                let found = self.first_record_where(batch, &header, |offset, timestamp| {
                    offset >= min_offset && timestamp >= target
                })?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            position += size;
        }
        Ok(None)
    }

    /// The first record of the batch whose last offset is `batch_last_offset` carrying
    /// `timestamp` (ListOffsets MAX_TIMESTAMP).
    pub(super) fn record_with_timestamp(
        &self,
        batch_last_offset: Offset,
        timestamp: i64,
        end: u64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let Some((position, header)) = self.locate(batch_last_offset, end)? else {
            return Ok(None);
        };
        let mut window = self.window(end, header.size_bytes());
        let batch = window.bytes(position, header.size_bytes() as u64)?;
        self.first_record_where(batch, &header, |_, ts| ts == timestamp)
    }

    fn first_record_where(
        &self,
        batch: &[u8],
        header: &RecordBatchHeader,
        accept: impl Fn(Offset, i64) -> bool,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let records =
            decode_records(batch, TIMESTAMP_LOOKUP_DECOMPRESSED_BYTES_MAX).map_err(|e| {
                LogError::CorruptRecord {
                    dir: self.dir(),
                    reason: format!(
                        "the batch at offset {} in {} cannot be decoded: {e}",
                        header.base_offset,
                        self.log_path.display()
                    ),
                }
            })?;
        Ok(records.iter().find_map(|record| {
            let offset = record.offset(header.base_offset);
            let timestamp = record.timestamp(header);
            accept(offset, timestamp).then_some(TimestampOffset {
                timestamp,
                offset,
                leader_epoch: header
                    .partition_leader_epoch
                    .is_defined()
                    .then_some(header.partition_leader_epoch),
            })
        }))
    }

    /// Drops a sealed segment's in-memory indexes if no lookup used them since the last call;
    /// they are reloaded from the files on the next lookup. Bounds index memory to the segments
    /// being read. Returns whether they were dropped.
    pub(super) fn release_idle_indexes(&self) -> bool {
        if self.index_used.swap(false, Ordering::Relaxed) {
            return false;
        }
        self.indexes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
    }

    /// Walks the batch headers in `[from, end)` without CRC checks.
    pub(super) fn scan(
        &self,
        from: u64,
        end: u64,
        visit: impl FnMut(u64, &RecordBatchHeader) -> Result<(), String>,
    ) -> Result<ScanOutcome, LogError> {
        scan_batches(&self.file, &self.log_path, from, end, false, visit)
    }

    fn dir(&self) -> PathBuf {
        self.log_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

pub(super) fn indexed(position: u64, header: &RecordBatchHeader) -> IndexedBatch {
    IndexedBatch {
        position,
        size: header.size_bytes() as u64,
        last_offset: header.last_offset(),
        max_timestamp: header.max_timestamp,
    }
}

pub(super) fn open_index_file(path: &Path, truncate: bool) -> Result<File, LogError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .map_err(io_error(path, "open a segment index"))
}

pub(super) fn push_entries(
    indexes: &mut Indexes,
    (offset, time): (Option<OffsetIndexEntry>, Option<TimeIndexEntry>),
) {
    if let Some(e) = offset {
        indexes.push_offset(&e);
    }
    if let Some(e) = time {
        indexes.push_time(&e);
    }
}

/// Replaces both index files of `segment` with `indexes`; returns the open handles.
pub(super) fn write_index_files(
    segment: &LogSegment,
    indexes: &Indexes,
) -> Result<(File, File), LogError> {
    let index = open_index_file(&segment.index_path, true)?;
    index
        .write_all_at(indexes.offset_bytes(), 0)
        .map_err(io_error(&segment.index_path, "write a segment index"))?;
    let time_index = open_index_file(&segment.time_index_path, true)?;
    time_index
        .write_all_at(indexes.time_bytes(), 0)
        .map_err(io_error(&segment.time_index_path, "write a segment index"))?;
    Ok((index, time_index))
}
