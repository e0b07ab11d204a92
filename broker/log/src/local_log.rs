//! [`Log`]: one partition's local log, the writer's side.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shale_formats::batch::{
    assign_offsets, batches, set_partition_leader_epoch, validate_batch, RecordBatchHeader,
    ValidateOptions,
};
use shale_formats::ids::{LeaderEpoch, Offset};
use shale_formats::index::{OFFSET_INDEX_ENTRY_SIZE, TIME_INDEX_ENTRY_SIZE};

use super::active_segment::{truncate_segment, ActiveSegment, AppendedBatch, Recovery, RollLimits};
use super::epoch::{EpochEntry, LeaderEpochCache};
use super::error::io_error;
use super::files::{
    parse_offset_file, remove_if_exists, sync_dir, write_atomically, CLEAN_SHUTDOWN_FILE,
    INDEX_SUFFIX, LOG_START_OFFSET_FILE, LOG_SUFFIX, STRAY_SUFFIXES, TIME_INDEX_SUFFIX,
};
use super::producer_state::{ProducerAppend, ProducerBatch, ProducerStateManager};
use super::reader::LogReader;
use super::segment::LogSegment;
use super::{
    AppendInfo, AppendOutcome, LogConfig, LogError, ReadResult, RetentionResult, SealedSegment,
    TimestampOffset, TimestampType,
};

/// One partition's log: segments on disk, the leader epoch cache and producer state.
///
/// Mutations take `&mut self`; reads go through [`reader`](Self::reader) snapshots (or the
/// `&self` conveniences that take one) and do their file I/O without any lock.
pub struct Log {
    dir: Arc<Path>,
    config: LogConfig,
    /// Ordered by base offset; the last one is `active`'s segment.
    segments: Arc<Vec<Arc<LogSegment>>>,
    active: ActiveSegment,
    log_start_offset: Offset,
    /// What `log-start-offset` holds, `None` when the file does not exist.
    persisted_log_start: Option<Offset>,
    /// Offsets below this are fsynced.
    recovery_point: Offset,
    last_flush_ms: i64,
    /// The latest clock reading the log was given; stands in for "now" in truncations.
    last_now_ms: i64,
    /// The active segment's base offset and when its first record was appended (or when the
    /// log was opened, for records appended before): the clock of a bounded-RPO roll.
    first_append: Option<(Offset, i64)>,
    epochs: LeaderEpochCache,
    producers: ProducerStateManager,
}

/// The active segment's file and the log end it reaches: what an fdatasync outside the log's
/// lock makes durable (see [`Log::sync_point`]).
pub struct SyncPoint {
    segment: Arc<LogSegment>,
    end: Offset,
}

impl SyncPoint {
    /// Offsets below this are durable once [`sync`](Self::sync) returns.
    pub fn end(&self) -> Offset {
        self.end
    }

    /// fdatasyncs the segment file. Safe without the log's lock: the file handle stays valid
    /// even if the segment is rolled or deleted meanwhile.
    pub fn sync(&self) -> Result<(), LogError> {
        self.segment
            .file
            .sync_data()
            .map_err(io_error(&self.segment.log_path, "fsync a segment"))
    }
}

/// One batch of a leader append with the offsets and timestamp it will get.
struct PlannedBatch {
    header: RecordBatchHeader,
    range: Range<usize>,
    base_offset: Offset,
    last_offset: Offset,
    max_timestamp: i64,
}

impl Log {
    /// Opens (or creates) the log in `dir`.
    ///
    /// Deletes leftover temp files and orphan indexes; opens sealed segments, rebuilding
    /// indexes that fail their checks; recovers the active segment by validating every batch
    /// (length, CRC) and truncating at the first invalid or incomplete one, unless the previous
    /// close was clean; restores the log start offset, leader epochs (extended from the batches
    /// recovered) and producer state (latest snapshot plus a replay of the batches after it).
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig, now_ms: i64) -> Result<Self, LogError> {
        let dir: PathBuf = dir.into();
        config
            .validate()
            .map_err(|reason| LogError::InvalidConfig {
                dir: dir.clone(),
                reason,
            })?;
        fs::create_dir_all(&dir).map_err(io_error(&dir, "create the partition directory"))?;
        let bases = clean_directory(&dir)?;
        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = clean_marker.exists();
        let persisted_log_start = read_log_start_offset(&dir)?;
        let interval = config.index_interval_bytes;

        let (segments, active, recovery) = match bases.split_last() {
            None => {
                let base = persisted_log_start.unwrap_or(Offset::ZERO);
                let active = ActiveSegment::create(&dir, base, interval, now_ms)?;
                (
                    vec![Arc::clone(active.segment())],
                    active,
                    Recovery::default(),
                )
            }
            Some((&last, sealed)) => {
                let mut segments = sealed
                    .iter()
                    .map(|&base| LogSegment::open_sealed(&dir, base, interval).map(Arc::new))
                    .collect::<Result<Vec<_>, _>>()?;
                let last = Arc::new(LogSegment::open(&dir, last, interval)?);
                let (active, recovery) = if clean {
                    ActiveSegment::open_clean(last, now_ms)?
                } else {
                    ActiveSegment::recover(last, true, now_ms)?
                };
                segments.push(Arc::clone(active.segment()));
                (segments, active, recovery)
            }
        };
        if clean {
            remove_if_exists(&clean_marker)
                .map_err(io_error(&clean_marker, "remove the clean shutdown marker"))?;
        }
        sync_dir(&dir).map_err(io_error(&dir, "fsync the partition directory"))?;

        let first_base = segments[0].base_offset();
        let mut epochs = LeaderEpochCache::load(&dir)?;
        for &(epoch, offset) in &recovery.epoch_starts {
            if epochs.latest_epoch().is_none_or(|latest| epoch > latest) {
                open_despite_full_disk(&dir, epochs.assign(epoch, offset))?;
            }
        }
        let log_end_offset = active.next_offset();
        open_despite_full_disk(&dir, epochs.truncate_from_end(log_end_offset))?;
        let mut log = Self {
            dir: Arc::from(dir.as_path()),
            producers: ProducerStateManager::new(&dir, first_base),
            config,
            segments: Arc::new(segments),
            active,
            log_start_offset: first_base,
            persisted_log_start,
            recovery_point: log_end_offset,
            last_flush_ms: now_ms,
            last_now_ms: now_ms,
            first_append: None,
            epochs,
        };
        if log.active.size() > 0 {
            log.first_append = Some((log.active.base_offset(), now_ms));
        }
        let log_start_offset = persisted_log_start.map_or(first_base, |s| s.max(first_base));
        if log_start_offset > log_end_offset {
            tracing::warn!(
                dir = %dir.display(),
                %log_start_offset,
                %log_end_offset,
                "the log start offset is above the recovered log end; starting the log empty there"
            );
            log.truncate_fully_and_start_at(log_start_offset)?;
        } else {
            log.log_start_offset = log_start_offset;
            open_despite_full_disk(&dir, log.epochs.truncate_from_start(log_start_offset))?;
            open_despite_full_disk(&dir, log.persist_log_start())?;
            log.rebuild_producer_state()?;
        }
        log.check_offsets();
        tracing::info!(
            dir = %dir.display(),
            segments = log.segments.len(),
            log_start_offset = %log.log_start_offset,
            log_end_offset = %log.log_end_offset(),
            clean_shutdown = clean,
            truncated_bytes = recovery.truncated_bytes,
            "opened log"
        );
        Ok(log)
    }

    /// Appends one produce payload (≥ 1 CRC-validated v2 batches) as the leader in
    /// `leader_epoch`: idempotence checks, offsets from the log end, LogAppendTime if
    /// configured, the leader epoch in every batch header. Validates everything before writing
    /// anything; the rewritten headers are left in `records`.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        self.last_now_ms = now_ms;
        let append_time =
            (self.config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let mut planned = Vec::new();
        let mut next_offset = self.log_end_offset();
        let mut staged = ProducerAppend::default();
        for (header, range) in self.frame(records)? {
            self.check_leader_batch(&header, range.len())?;
            let base_offset = next_offset;
            let last_offset = base_offset + i64::from(header.last_offset_delta);
            let max_timestamp = append_time.unwrap_or(header.max_timestamp);
            if let Some(batch) = ProducerBatch::from_header(&header, base_offset, max_timestamp) {
                if let Some(original) = self.producers.find_duplicate(&batch) {
                    return Ok(AppendOutcome::Duplicate {
                        base_offset: original.first_offset,
                        last_offset: original.last_offset,
                        log_append_time: append_time.map_or(-1, |_| original.timestamp),
                        log_start_offset: self.log_start_offset,
                    });
                }
                self.producers.validate_client_batch(&mut staged, &batch)?;
            }
            planned.push(PlannedBatch {
                header,
                range,
                base_offset,
                last_offset,
                max_timestamp,
            });
            next_offset = last_offset + 1;
        }
        self.check_append_size(records.len())?;
        for batch in &planned {
            let bytes = &mut records[batch.range.clone()];
            assign_offsets(bytes, batch.base_offset, append_time)
                .and_then(|()| set_partition_leader_epoch(bytes, leader_epoch))
                .map_err(|e| {
                    self.corrupt(format!("batch for offset {}: {e}", batch.base_offset))
                })?;
        }
        let info = self.write_planned(records, &planned, append_time, now_ms)?;
        self.producers.commit(staged, next_offset);
        self.maybe_assign_epoch(leader_epoch, info.base_offset)?;
        self.maybe_flush(now_ms)?;
        Ok(AppendOutcome::Appended(info))
    }

    /// Appends batches that already carry their offsets and leader epochs (a follower copying
    /// its leader). Each batch is validated again (length, CRC); offsets must not go below the
    /// log end but may skip ahead. Producer state follows without sequence checks, as Kafka's
    /// replication path does.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.last_now_ms = now_ms;
        let log_end_offset = self.log_end_offset();
        let mut next_offset = log_end_offset;
        let mut staged = ProducerAppend::default();
        let mut planned = Vec::new();
        for (header, range) in self.frame(records)? {
            validate_batch(&records[range.clone()], &ValidateOptions::stored())
                .map_err(|e| self.corrupt(format!("replicated batch: {e}")))?;
            if header.base_offset < next_offset {
                if planned.is_empty() {
                    return Err(LogError::UnexpectedAppendOffset {
                        dir: self.dir.to_path_buf(),
                        first_offset: header.base_offset,
                        log_end_offset,
                    });
                }
                return Err(self.corrupt(format!(
                    "replicated batches go back from offset {next_offset} to {}",
                    header.base_offset
                )));
            }
            if let Some(batch) =
                ProducerBatch::from_header(&header, header.base_offset, header.max_timestamp)
            {
                self.producers.stage_unchecked(&mut staged, &batch);
            }
            next_offset = header.next_offset();
            planned.push(PlannedBatch {
                header,
                last_offset: header.last_offset(),
                base_offset: header.base_offset,
                max_timestamp: header.max_timestamp,
                range,
            });
        }
        self.check_append_size(records.len())?;
        let info = self.write_planned(records, &planned, None, now_ms)?;
        self.producers.commit(staged, next_offset);
        for batch in &planned {
            self.maybe_assign_epoch(batch.header.partition_leader_epoch, batch.base_offset)?;
        }
        self.maybe_flush(now_ms)?;
        Ok(info)
    }

    /// A snapshot for reads outside the partition lock.
    pub fn reader(&self) -> LogReader {
        LogReader {
            dir: Arc::clone(&self.dir),
            segments: Arc::clone(&self.segments),
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
            active_size: self.active.size(),
        }
    }

    /// [`LogReader::read`] on a fresh snapshot.
    pub fn read(
        &self,
        start_offset: Offset,
        max_bytes: usize,
        max_offset_exclusive: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        self.reader()
            .read(start_offset, max_bytes, max_offset_exclusive, min_one_batch)
    }

    /// [`LogReader::fetch_offset_by_timestamp`] on a fresh snapshot.
    pub fn fetch_offset_by_timestamp(
        &self,
        target_timestamp: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        self.reader().fetch_offset_by_timestamp(target_timestamp)
    }

    /// [`LogReader::max_timestamp_offset`] on a fresh snapshot.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, LogError> {
        self.reader().max_timestamp_offset()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies changed topic configs (AlterConfigs); they take effect from the next append or
    /// retention pass.
    pub fn set_config(&mut self, config: LogConfig) -> Result<(), LogError> {
        config
            .validate()
            .map_err(|reason| LogError::InvalidConfig {
                dir: self.dir.to_path_buf(),
                reason,
            })?;
        self.config = config;
        Ok(())
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> Offset {
        self.active.next_offset()
    }

    /// Offsets below this are known to be on disk (fsynced).
    pub fn recovery_point(&self) -> Offset {
        self.recovery_point
    }

    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of all segments, oldest first; the last is the active segment.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.segments.iter().map(|s| s.base_offset()).collect()
    }

    /// The leader epoch that wrote `offset`, as far as the epoch cache knows.
    pub fn epoch_for_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.epochs.epoch_for_offset(offset)
    }

    /// OffsetForLeaderEpoch: `(epoch, end_offset)` with Kafka's `endOffsetFor` semantics
    /// (`(LeaderEpoch::UNDEFINED, Offset::UNKNOWN)` when unknown).
    pub fn end_offset_for_epoch(&self, leader_epoch: LeaderEpoch) -> (LeaderEpoch, Offset) {
        self.epochs
            .end_offset_for(leader_epoch, self.log_end_offset())
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }

    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.epochs.entries().to_vec()
    }

    /// The first offset of the oldest open transaction, if any (bounds the last stable offset).
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.producers.first_unstable_offset()
    }

    /// Producer ids with retained sequence state.
    pub fn producer_count(&self) -> usize {
        self.producers.producer_count()
    }

    /// The idempotent/transactional producers this log knows, sorted by id.
    pub fn active_producers(&self) -> Vec<super::ActiveProducer> {
        self.producers.active_producers()
    }

    /// Seals the active segment and starts a new one at the log end (a no-op on an empty
    /// active segment).
    pub fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.last_now_ms = now_ms;
        self.roll_at(self.log_end_offset(), now_ms)
    }

    /// fsyncs the active segment and its indexes (sealed segments were fsynced when sealed).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.active.flush()?;
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// What one fdatasync outside the log's lock must cover for everything appended so far to
    /// be durable; `None` when it already is (a roll, a flush or an earlier sync got there).
    /// For group commit: take it under the lock, [`SyncPoint::sync`] without the lock, then
    /// [`mark_synced`](Self::mark_synced). Sealed segments need nothing: a roll fsyncs the
    /// segment it seals before the next one exists, so the active segment is the only file
    /// that can hold unsynced records.
    pub fn sync_point(&self) -> Option<SyncPoint> {
        let end = self.log_end_offset();
        (end > self.recovery_point).then(|| SyncPoint {
            segment: Arc::clone(self.active.segment()),
            end,
        })
    }

    /// Records that a [`SyncPoint`] reaching `end` was synced. Never moves the recovery point
    /// back, nor past the log end (a truncation may have come in between).
    pub fn mark_synced(&mut self, end: Offset) {
        self.recovery_point = self.recovery_point.max(end.min(self.log_end_offset()));
    }

    /// How long the oldest record of the active segment has waited to be sealed (by the clock
    /// appends were given); `None` when the active segment is empty. After a truncation
    /// replaced the active segment the wait is unknown and counts as `i64::MAX`: a caller
    /// bounding it (the bounded-RPO roll of a tiered topic) rolls at once rather than late.
    pub fn active_segment_age_ms(&self, now_ms: i64) -> Option<i64> {
        if self.active.size() == 0 {
            return None;
        }
        Some(match self.first_append {
            Some((base, at)) if base == self.active.base_offset() => now_ms.saturating_sub(at),
            _ => i64::MAX,
        })
    }

    /// Flushes if `flush.messages` or `flush.ms` say so; for a periodic task.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool, LogError> {
        self.last_now_ms = now_ms;
        self.maybe_flush(now_ms)
    }

    /// Flushes, writes a producer snapshot at the log end and marks the shutdown clean, so the
    /// next open trusts the active segment without scanning it. Takes `&mut self` because the
    /// broker keeps logs behind a mutex; nothing may be appended after it.
    pub fn close(&mut self) -> Result<(), LogError> {
        self.active.close()?;
        self.recovery_point = self.log_end_offset();
        self.producers.take_snapshot()?;
        write_atomically(&self.dir, CLEAN_SHUTDOWN_FILE, b"").map_err(io_error(
            &self.dir.join(CLEAN_SHUTDOWN_FILE),
            "write the clean shutdown marker",
        ))
    }

    /// Removes the partition directory and everything in it (DeleteTopics). Readers still
    /// holding snapshots keep their open files until they drop them; on Unix the files stay
    /// readable until then. Nothing may be appended after it.
    pub fn delete(&mut self) -> Result<(), LogError> {
        let dir = self.dir.to_path_buf();
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error(&dir, "delete the partition directory")(e))
            }
            _ => Ok(()),
        }
    }

    /// One retention pass (Kafka's `deleteOldSegments`): deletes sealed segments, oldest first,
    /// whose newest record is older than `retention.ms`, while the log is larger than
    /// `retention.bytes`, or that lie wholly below the log start offset; never the active
    /// segment.
    pub fn delete_retention(&mut self, now_ms: i64) -> Result<RetentionResult, LogError> {
        self.last_now_ms = now_ms;
        let sealed = &self.segments[..self.segments.len() - 1];
        let mut by_time = 0;
        if self.config.retention_ms >= 0 {
            for segment in sealed {
                if now_ms.saturating_sub(segment.largest_timestamp()?) <= self.config.retention_ms {
                    break;
                }
                by_time += 1;
            }
        }
        let mut by_size = 0;
        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            for segment in sealed {
                let size = segment.size() as i64;
                if excess < size {
                    break;
                }
                excess -= size;
                by_size += 1;
            }
        }
        // Retention runs periodically: a good moment to drop the indexes of sealed segments
        // nobody read since the last pass.
        let sealed = &self.segments[..self.segments.len() - 1];
        let indexes_released = sealed.iter().filter(|s| s.release_idle_indexes()).count();
        if indexes_released > 0 {
            tracing::debug!(dir = %self.dir.display(), indexes_released, "released idle segment indexes");
        }
        let by_start = self.segments_below_log_start();
        let count = by_time.max(by_size).max(by_start);
        let (segments_deleted, bytes_deleted) = self.delete_oldest_segments(count)?;
        if segments_deleted > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments_deleted,
                bytes_deleted,
                by_time,
                by_size,
                by_start,
                log_start_offset = %self.log_start_offset,
                "deleted segments past retention"
            );
        }
        Ok(RetentionResult {
            segments_deleted,
            bytes_deleted,
            log_start_offset: self.log_start_offset,
        })
    }

    /// Sealed segments (never the active one) whose offsets all lie in `[from, below)`, oldest
    /// first: what the tiering job may upload (`below` is the high watermark).
    pub fn sealed_segments(
        &self,
        from: Offset,
        below: Offset,
    ) -> Result<Vec<SealedSegment>, LogError> {
        let mut out = Vec::new();
        for pair in self.segments.windows(2) {
            let (segment, next) = (&pair[0], &pair[1]);
            let next_offset = next.base_offset();
            if segment.base_offset() < from || next_offset > below {
                continue;
            }
            out.push(SealedSegment {
                base_offset: segment.base_offset(),
                next_offset,
                max_timestamp: segment.largest_timestamp()?,
                size_bytes: segment.size(),
                log_path: segment.log_path.clone(),
                index_path: segment.index_path.clone(),
                time_index_path: segment.time_index_path.clone(),
            });
        }
        Ok(out)
    }

    /// Local retention of a tiered log (`local.retention.ms` / `local.retention.bytes`): deletes
    /// sealed segments, oldest first, that are past the local limits — but only those whose every
    /// offset is below `tiered_below` (the first offset not yet in remote storage), so no
    /// un-uploaded byte is ever deleted. The log start offset of this (local) log moves forward.
    pub fn delete_tiered_segments(
        &mut self,
        tiered_below: Offset,
        local_retention_ms: i64,
        local_retention_bytes: i64,
        now_ms: i64,
    ) -> Result<RetentionResult, LogError> {
        self.last_now_ms = now_ms;
        let mut eligible = 0;
        for pair in self.segments.windows(2) {
            if pair[1].base_offset() > tiered_below {
                break;
            }
            eligible += 1;
        }
        let mut by_time = 0;
        if local_retention_ms >= 0 {
            for segment in &self.segments[..eligible] {
                if now_ms.saturating_sub(segment.largest_timestamp()?) <= local_retention_ms {
                    break;
                }
                by_time += 1;
            }
        }
        let mut by_size = 0;
        if local_retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - local_retention_bytes;
            for segment in &self.segments[..eligible] {
                let size = segment.size() as i64;
                if excess < size {
                    break;
                }
                excess -= size;
                by_size += 1;
            }
        }
        let count = by_time.max(by_size).min(eligible);
        let (segments_deleted, bytes_deleted) = self.delete_oldest_segments(count)?;
        if segments_deleted > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments_deleted,
                bytes_deleted,
                local_log_start_offset = %self.log_start_offset,
                "deleted tiered local segments past local retention"
            );
        }
        Ok(RetentionResult {
            segments_deleted,
            bytes_deleted,
            log_start_offset: self.log_start_offset,
        })
    }

    /// Kafka's `producer.id.expiration.ms`: forgets the sequence state of producers without an
    /// open transaction whose last batch is older than `producer_id_expiration_ms` (see
    /// [`PRODUCER_ID_EXPIRATION_MS_DEFAULT`](super::PRODUCER_ID_EXPIRATION_MS_DEFAULT)).
    /// Returns how many were forgotten. For the same periodic task as retention.
    pub fn remove_expired_producers(
        &mut self,
        now_ms: i64,
        producer_id_expiration_ms: i64,
    ) -> usize {
        self.last_now_ms = now_ms;
        self.producers
            .remove_expired(now_ms, producer_id_expiration_ms)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (which the caller has checked
    /// against the high watermark), persists it, and deletes the sealed segments wholly below
    /// it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset, LogError> {
        let log_end_offset = self.log_end_offset();
        if offset < Offset::ZERO || offset > log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                dir: self.dir.to_path_buf(),
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        let moved = offset > self.log_start_offset;
        if moved {
            self.log_start_offset = offset;
        }
        // The segments below the new start go before anything is recorded: on a full disk
        // DeleteRecords frees space first. A crash before the record leaves the log starting at
        // the first remaining segment's base (the request was not answered).
        let count = self.segments_below_log_start();
        self.delete_oldest_segments(count)?;
        if moved {
            self.epochs.truncate_from_start(offset)?;
            self.persist_log_start()?;
        }
        self.check_offsets();
        Ok(self.log_start_offset)
    }

    /// Removes every offset ≥ `offset` (a replica diverged from its leader). A batch that
    /// straddles `offset` goes whole. Returns whether anything was removed.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<bool, LogError> {
        assert!(
            offset >= Offset::ZERO,
            "truncation to negative offset {offset}"
        );
        if offset >= self.log_end_offset() {
            return Ok(false);
        }
        if offset < self.segments[0].base_offset() {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(true);
        }
        let keep = self.segments.partition_point(|s| s.base_offset() <= offset);
        let removed = Arc::make_mut(&mut self.segments).split_off(keep);
        let last = Arc::clone(&self.segments[keep - 1]);
        truncate_segment(&last, offset)?;
        let (active, _) = ActiveSegment::recover(last, false, self.last_now_ms)?;
        self.active = active;
        for segment in &removed {
            segment.delete_files()?;
        }
        sync_dir(&self.dir).map_err(io_error(&self.dir, "fsync the partition directory"))?;
        let log_end_offset = self.log_end_offset();
        self.log_start_offset = self.log_start_offset.min(log_end_offset);
        self.persist_log_start()?;
        self.epochs.truncate_from_end(log_end_offset)?;
        self.recovery_point = self.recovery_point.min(log_end_offset);
        self.rebuild_producer_state()?;
        self.check_offsets();
        tracing::info!(
            dir = %self.dir.display(),
            %offset,
            %log_end_offset,
            segments_deleted = removed.len(),
            "truncated log"
        );
        Ok(true)
    }

    /// Deletes everything and restarts the log empty at `offset` (a replica whose leader's log
    /// starts beyond its own end).
    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) -> Result<(), LogError> {
        assert!(
            offset >= Offset::ZERO,
            "restart at negative offset {offset}"
        );
        for segment in self.segments.iter() {
            segment.delete_files()?;
        }
        let active = ActiveSegment::create(
            &self.dir,
            offset,
            self.config.index_interval_bytes,
            self.last_now_ms,
        )?;
        self.segments = Arc::new(vec![Arc::clone(active.segment())]);
        self.active = active;
        sync_dir(&self.dir).map_err(io_error(&self.dir, "fsync the partition directory"))?;
        self.log_start_offset = offset;
        self.persist_log_start()?;
        self.epochs.clear()?;
        self.producers.reset(offset);
        self.producers.delete_all_snapshots()?;
        self.recovery_point = offset;
        self.check_offsets();
        tracing::info!(dir = %self.dir.display(), %offset, "emptied log and restarted it");
        Ok(())
    }

    fn corrupt(&self, reason: String) -> LogError {
        LogError::CorruptRecord {
            dir: self.dir.to_path_buf(),
            reason,
        }
    }

    /// Splits a payload into batches by their length fields.
    fn frame(&self, records: &[u8]) -> Result<Vec<(RecordBatchHeader, Range<usize>)>, LogError> {
        let framed = batches(records)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.corrupt(e.to_string()))?;
        if framed.is_empty() {
            return Err(LogError::InvalidRecord {
                dir: self.dir.to_path_buf(),
                reason: "the append holds no record batches".to_owned(),
            });
        }
        Ok(framed)
    }

    fn check_leader_batch(&self, header: &RecordBatchHeader, size: usize) -> Result<(), LogError> {
        if size > self.config.max_message_bytes {
            return Err(LogError::RecordTooLarge {
                dir: self.dir.to_path_buf(),
                size,
                limit: self.config.max_message_bytes as u64,
                limit_name: "max.message.bytes",
            });
        }
        if header.is_control() {
            return Err(LogError::InvalidRecord {
                dir: self.dir.to_path_buf(),
                reason: "producers may not write control batches".to_owned(),
            });
        }
        if header.last_offset_delta < 0 {
            return Err(self.corrupt(format!(
                "a batch has a negative last offset delta ({})",
                header.last_offset_delta
            )));
        }
        Ok(())
    }

    /// Kafka's `RecordBatchTooLargeException`: an append must fit in an empty segment.
    fn check_append_size(&self, size: usize) -> Result<(), LogError> {
        if size as u64 > self.config.segment_bytes {
            return Err(LogError::RecordTooLarge {
                dir: self.dir.to_path_buf(),
                size,
                limit: self.config.segment_bytes,
                limit_name: "segment.bytes",
            });
        }
        Ok(())
    }

    /// Writes planned batches, laid out in `records` with their final offsets, to the active
    /// segment: what appends as leader and as follower share once their batches are planned.
    fn write_planned(
        &mut self,
        records: &[u8],
        planned: &[PlannedBatch],
        append_time: Option<i64>,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let info = self.append_info(planned, append_time);
        let appended: Vec<_> = planned
            .iter()
            .map(|b| AppendedBatch {
                position: b.range.start,
                size: b.range.len(),
                last_offset: b.last_offset,
                max_timestamp: b.max_timestamp,
            })
            .collect();
        self.write(
            records,
            &appended,
            info.base_offset,
            info.max_timestamp,
            now_ms,
        )?;
        Ok(info)
    }

    fn append_info(&self, planned: &[PlannedBatch], append_time: Option<i64>) -> AppendInfo {
        let mut max_timestamp = -1;
        let mut offset_of_max_timestamp = Offset::UNKNOWN;
        for batch in planned {
            if batch.max_timestamp > max_timestamp {
                max_timestamp = batch.max_timestamp;
                offset_of_max_timestamp = batch.last_offset;
            }
        }
        AppendInfo {
            base_offset: planned.first().map_or(Offset::UNKNOWN, |b| b.base_offset),
            last_offset: planned.last().map_or(Offset::UNKNOWN, |b| b.last_offset),
            max_timestamp,
            offset_of_max_timestamp,
            log_append_time: append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
            record_count: planned
                .iter()
                .map(|b| b.header.records_count.max(0) as u64)
                .sum(),
        }
    }

    /// Rolls if the active segment cannot take this append, then writes it.
    fn write(
        &mut self,
        records: &[u8],
        batches: &[AppendedBatch],
        first_offset: Offset,
        max_timestamp: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let last_offset = batches.last().map_or(first_offset, |b| b.last_offset);
        if let Some(reason) = self.active.roll_reason(
            &self.roll_limits(),
            records.len(),
            max_timestamp,
            last_offset,
            now_ms,
        ) {
            tracing::debug!(dir = %self.dir.display(), reason, "rolling the active segment");
            self.roll_at(first_offset.max(self.log_end_offset()), now_ms)?;
        }
        let base = self.active.base_offset();
        if self.active.size() == 0 || self.first_append.is_none_or(|(b, _)| b != base) {
            self.first_append = Some((base, now_ms));
        }
        self.active.append(records, batches)
    }

    fn roll_limits(&self) -> RollLimits {
        RollLimits {
            segment_bytes: self.config.segment_bytes,
            segment_ms: self.config.segment_ms,
            offset_index_entries_max: (self.config.segment_index_bytes
                / OFFSET_INDEX_ENTRY_SIZE as u64) as usize,
            time_index_entries_max: (self.config.segment_index_bytes / TIME_INDEX_ENTRY_SIZE as u64)
                as usize,
        }
    }

    /// Seals the active segment (final time index entry, fsync), snapshots producer state at
    /// the log end and starts a new segment at `new_base`.
    fn roll_at(&mut self, new_base: Offset, now_ms: i64) -> Result<(), LogError> {
        let log_end_offset = self.log_end_offset();
        assert!(
            new_base >= log_end_offset,
            "roll to base offset {new_base} below the log end offset {log_end_offset}"
        );
        if self.active.size() == 0 && self.active.base_offset() == new_base {
            return Ok(());
        }
        assert_eq!(
            self.producers.map_end_offset(),
            log_end_offset,
            "producer state must be current before a roll"
        );
        // The old segment is durable before the new one exists, so recovery only ever needs to
        // look at the last segment.
        self.active.close()?;
        self.producers.take_snapshot()?;
        let active = ActiveSegment::create(
            &self.dir,
            new_base,
            self.config.index_interval_bytes,
            now_ms,
        )?;
        sync_dir(&self.dir).map_err(io_error(&self.dir, "fsync the partition directory"))?;
        Arc::make_mut(&mut self.segments).push(Arc::clone(active.segment()));
        self.active = active;
        self.recovery_point = log_end_offset;
        Ok(())
    }

    fn maybe_flush(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let unflushed = self.log_end_offset() - self.recovery_point;
        let due = (unflushed > 0 && unflushed >= self.config.flush_messages)
            || now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms;
        if !due {
            return Ok(false);
        }
        self.flush()?;
        self.last_flush_ms = now_ms;
        Ok(true)
    }

    /// Kafka's `maybeAssignEpochStartOffset` for appends: a batch from a newer epoch starts it.
    /// Records that `epoch` starts at the log end, if it is newer than the latest epoch: a new
    /// leader does this when it takes over, so that a follower asking where its own (older)
    /// epoch ends learns it ends here, even before anything is appended in the new one.
    pub fn assign_epoch_at_end(&mut self, epoch: LeaderEpoch) -> Result<(), LogError> {
        let end = self.log_end_offset();
        self.maybe_assign_epoch(epoch, end)
    }

    fn maybe_assign_epoch(
        &mut self,
        epoch: LeaderEpoch,
        start_offset: Offset,
    ) -> Result<(), LogError> {
        if epoch.is_defined()
            && self
                .epochs
                .latest_epoch()
                .is_none_or(|latest| epoch > latest)
        {
            self.epochs.assign(epoch, start_offset)?;
        }
        Ok(())
    }

    /// Number of sealed segments whose successor starts at or below the log start offset.
    fn segments_below_log_start(&self) -> usize {
        self.segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset() <= self.log_start_offset)
            .count()
    }

    /// Deletes the `count` oldest segments (never the active one) and moves the log start
    /// offset to the new first segment if it was below it. Returns (segments, bytes) deleted.
    fn delete_oldest_segments(&mut self, count: usize) -> Result<(usize, u64), LogError> {
        if count == 0 {
            return Ok((0, 0));
        }
        assert!(
            count < self.segments.len(),
            "retention may not delete the active segment ({count} of {} segments)",
            self.segments.len()
        );
        let removed: Vec<_> = Arc::make_mut(&mut self.segments).drain(..count).collect();
        let first_base = self.segments[0].base_offset();
        // The files go first, and all of them even if one fails: freeing space must not need
        // space (the checkpoints below write files, which fails on a full disk), and a crash
        // after this point is repaired at open, which starts the log at least at the first
        // segment's base and truncates the epoch cache to it.
        let mut bytes = 0;
        let mut failed = None;
        for segment in &removed {
            match segment.delete_files() {
                Ok(()) => bytes += segment.size(),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if first_base > self.log_start_offset {
            self.log_start_offset = first_base;
            self.epochs.truncate_from_start(first_base)?;
        }
        self.persist_log_start()?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.producers
            .delete_snapshots_outside(first_base, self.log_end_offset())?;
        sync_dir(&self.dir).map_err(io_error(&self.dir, "fsync the partition directory"))?;
        self.check_offsets();
        Ok((removed.len(), bytes))
    }

    /// Keeps `log-start-offset` in step: present with the log start offset while that lies
    /// above the first segment's base, absent otherwise.
    fn persist_log_start(&mut self) -> Result<(), LogError> {
        let wanted = (self.log_start_offset > self.segments[0].base_offset())
            .then_some(self.log_start_offset);
        if wanted == self.persisted_log_start {
            return Ok(());
        }
        let path = self.dir.join(LOG_START_OFFSET_FILE);
        match wanted {
            Some(offset) => write_atomically(
                &self.dir,
                LOG_START_OFFSET_FILE,
                format!("{offset}\n").as_bytes(),
            )
            .map_err(io_error(&path, "write the log start offset"))?,
            None => remove_if_exists(&path)
                .and_then(|()| sync_dir(&self.dir))
                .map_err(io_error(&path, "remove the log start offset"))?,
        }
        self.persisted_log_start = wanted;
        Ok(())
    }

    /// Loads the newest producer snapshot at or below the log end and replays the batch
    /// headers after it.
    fn rebuild_producer_state(&mut self) -> Result<(), LogError> {
        let log_end_offset = self.log_end_offset();
        let first_base = self.segments[0].base_offset();
        let mut producers = ProducerStateManager::load(&self.dir, first_base, log_end_offset)?;
        let from = producers.map_end_offset();
        if from < log_end_offset {
            let mut staged = ProducerAppend::default();
            self.reader().for_each_batch_from(from, |header| {
                if let Some(batch) =
                    ProducerBatch::from_header(header, header.base_offset, header.max_timestamp)
                {
                    producers.stage_unchecked(&mut staged, &batch);
                }
            })?;
            producers.commit(staged, log_end_offset);
            // The next start replays from here instead. Only a shortcut: on a full disk the
            // log opens without it (and the next start replays the same batches again).
            if let Err(e) = producers.take_snapshot() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write a producer snapshot after recovery; opening without it");
            }
        }
        self.producers = producers;
        Ok(())
    }

    /// The offset order invariant, checked wherever offsets move.
    fn check_offsets(&self) {
        let log_end_offset = self.log_end_offset();
        assert!(
            self.log_start_offset <= log_end_offset,
            "log start offset {} is above the log end offset {log_end_offset} in {}",
            self.log_start_offset,
            self.dir.display()
        );
        assert!(
            self.segments[0].base_offset() <= self.log_start_offset,
            "the first segment of {} starts at {}, above the log start offset {}",
            self.dir.display(),
            self.segments[0].base_offset(),
            self.log_start_offset
        );
    }

    #[cfg(test)]
    pub(super) fn producer_entry(
        &self,
        producer_id: shale_formats::ids::ProducerId,
    ) -> Option<&super::producer_state::ProducerStateEntry> {
        self.producers.entry(producer_id)
    }
}

/// Deletes leftovers (temp files, Kafka's `.deleted`/`.cleaned`/`.swap`, indexes without a
/// segment) and returns the segment base offsets, ascending.
fn clean_directory(dir: &Path) -> Result<Vec<Offset>, LogError> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_error(dir, "list the partition directory"))?;
    for entry in entries {
        let entry = entry.map_err(io_error(dir, "list the partition directory"))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let path = entry.path();
        if STRAY_SUFFIXES
            .iter()
            .any(|suffix| name.ends_with(&format!(".{suffix}")))
        {
            tracing::warn!(path = %path.display(), "deleting a leftover file");
            remove_if_exists(&path).map_err(io_error(&path, "delete a leftover file"))?;
        } else if let Some(base) = parse_offset_file(&name, LOG_SUFFIX) {
            bases.push(base);
        } else if let Some(base) = parse_offset_file(&name, INDEX_SUFFIX)
            .or_else(|| parse_offset_file(&name, TIME_INDEX_SUFFIX))
        {
            indexes.push((base, path));
        }
    }
    bases.sort_unstable();
    for (base, path) in indexes {
        if bases.binary_search(&base).is_err() {
            tracing::warn!(path = %path.display(), "deleting an index without a segment");
            remove_if_exists(&path).map_err(io_error(&path, "delete an orphan index"))?;
        }
    }
    Ok(bases)
}

fn read_log_start_offset(dir: &Path) -> Result<Option<Offset>, LogError> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(Some(Offset::new(offset))),
            _ => Err(LogError::CorruptCheckpoint {
                path,
                reason: format!("{:?} is not an offset", text.trim()),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path, "read the log start offset")(e)),
    }
}

/// At open, the leader-epoch and log-start checkpoints are rewritten from what recovery found,
/// but the log itself is the truth: every open repeats these truncations. On a full disk the
/// log opens with the corrected state in memory and the stale file (fixed by a later write),
/// so that a broker can restart on a full disk.
fn open_despite_full_disk(dir: &Path, result: Result<(), LogError>) -> Result<(), LogError> {
    match result {
        Err(LogError::Io {
            source,
            path,
            action,
        }) if crate::error::is_no_space(&source) => {
            tracing::warn!(dir = %dir.display(), path = %path.display(), action, error = %source, "the disk is full: opening the log without rewriting a checkpoint");
            Ok(())
        }
        other => other,
    }
}
