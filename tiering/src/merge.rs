//! Merging small remote segments into larger ones, so that the bounded RPO (which uploads the
//! active segment however small it is) does not leave thousands of tiny objects per partition.
//!
//! ```text
//!  v20: [A 0..9 4 KiB][B 10..19 3 KiB][C 20..29 5 KiB][D 30..999 900 MiB]
//!  1. GET A, B, C in windows, checking every batch and each object's CRC-32C against the
//!     manifest; PUT M.log (multipart above the threshold) and M.indexes (offset and time
//!     index rebuilt over M by Kafka's rule, leader epochs joined, C's producer snapshot)
//!  2. v21: [M 0..29][D]  replaced: A, B, C at t     one conditional PUT: readers switch at once
//!  3. a later run, once t + grace has passed: DELETE the objects of A, B and C
//!  4. v22: [M 0..29][D]  replaced: —
//! ```
//!
//! Offsets, batches and bytes are unchanged by a merge: M's `.log` is A, B and C concatenated,
//! so every read before and after returns the same bytes. What a crash leaves:
//! - before 2: M's objects, under a fresh id no manifest names: the scrub deletes them;
//! - between 2 and 4: A, B and C listed as replaced, so the scrub keeps them and the next run
//!   deletes them (a DELETE of an object already gone counts as done).
//!
//! If the manifest changed under the merge (retention deleted A, DeleteRecords, another
//! writer), step 2 finds A, B, C no longer listed as they were and abandons the merge (or its
//! conditional PUT is fenced): M's objects are deleted and nothing else changes. A source
//! found missing in step 1 makes the handle catch up: if a newer manifest explains it, the
//! merge is abandoned; if not, the missing object is an error for an operator.
//!
//! # Which segments
//! A segment is small below half the target (the topic's `segment.bytes`). Nothing happens
//! until a partition has at least `fanout` small readable segments; then one run of up to
//! `fanout` consecutive small segments is merged: together at most the target, their max
//! timestamps within `segment.ms` of each other (so retention by time keeps about Kafka's
//! segment granularity), the longest such run and, among those, the one with the fewest bytes.
//! Merging the smallest neighbours first makes this size-tiered, as an LSM tree's compaction
//! is: `fanout` fresh uploads become one, `fanout` of those one again, and so on, so each byte
//! is rewritten about log_fanout(target / upload size) times, not once per upload, and a
//! partition keeps fewer than `fanout` small segments per size class. One run per call: the
//! work of a call is bounded by the target size, its memory by one read window plus one
//! multipart part.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use shale_formats::batch::RecordBatchHeader;
use shale_formats::ids::Offset;
use shale_formats::index::{IndexRule, IndexedBatch};

use crate::copy::BatchChecker;
use crate::error::TieringError;
use crate::indexes::SegmentIndexes;
use crate::manifest::ReplacedSegment;
use crate::metadata::{
    EpochEntry, RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteLogSegmentState,
};
use crate::partition::RemotePartition;

/// Bytes of a source segment fetched per ranged GET.
const READ_WINDOW_BYTES: u64 = 8 * 1024 * 1024;

/// What one merge call may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergePolicy {
    /// Largest merged segment (the topic's `segment.bytes`); segments below half of it are small.
    pub target_bytes: u64,
    /// Largest spread of max timestamps inside a merged segment (the topic's `segment.ms`).
    pub max_span_ms: i64,
    /// Small segments merged at once, and how many a partition must have before any merge.
    pub fanout: usize,
    /// `index.interval.bytes` of the rebuilt offset index.
    pub index_interval_bytes: u64,
    /// How long replaced objects are kept after their merge, for readers in flight.
    pub grace_ms: i64,
    pub now_ms: i64,
}

/// What a merge call did, with the object-store requests it made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The segment written, if a merge was committed.
    pub merged: Option<RemoteLogSegmentMetadata>,
    /// Segments it replaced.
    pub segments_merged: usize,
    /// A merge planned but given up because the manifest changed meanwhile.
    pub abandoned: bool,
    /// Replaced segments whose objects were deleted after their grace period.
    pub replaced_deleted: usize,
    pub get_requests: u64,
    pub put_requests: u64,
    pub delete_requests: u64,
    pub bytes_read: u64,
}

impl RemotePartition {
    /// Deletes replaced segments whose grace period has passed, then merges one run of small
    /// segments if there is one (see the module docs).
    ///
    /// Errors: store errors, [`TieringError::CorruptSegment`] if a source does not check out
    /// (nothing is changed then), [`TieringError::Fenced`] if another writer committed first.
    pub async fn merge_small_segments(
        &self,
        policy: &MergePolicy,
    ) -> Result<MergeOutcome, TieringError> {
        let _merge = self.merge_lock.lock().await;
        let mut outcome = MergeOutcome::default();
        self.delete_replaced(policy, &mut outcome).await?;
        let manifest = self.manifest();
        self.check_not_deleted(&manifest)?;
        let readable: Vec<RemoteLogSegmentMetadata> =
            manifest.readable_segments().cloned().collect();
        let Some(run) = plan(&readable, policy) else {
            return Ok(outcome);
        };
        let sources = &readable[run];
        let _slot = self.upload_slot().await;
        let merged = match self.write_merged(sources, policy, &mut outcome).await {
            Ok(merged) => merged,
            // A source gone: another writer deleted it after this handle read its manifest.
            Err(e) if e.is_not_found() => {
                self.catch_up().await?;
                if self.manifest().version == manifest.version {
                    return Err(e);
                }
                tracing::info!(tp = %self.tp, "a source of a merge was deleted by another writer; merge abandoned");
                outcome.abandoned = true;
                return Ok(outcome);
            }
            Err(e) => return Err(e),
        };
        let log_path = self.layout.log(merged.base_offset, merged.segment_id);
        let indexes_path = self.layout.indexes(merged.base_offset, merged.segment_id);
        let committed = self.commit_merge(sources, &merged, policy.now_ms).await;
        outcome.put_requests += 1;
        match committed {
            Ok(true) => {
                tracing::info!(tp = %self.tp, base_offset = %merged.base_offset, end_offset = %merged.end_offset,
                    segments = sources.len(), bytes = merged.size_bytes, segment_id = %merged.segment_id,
                    "merged small remote segments");
                outcome.segments_merged = sources.len();
                outcome.merged = Some(merged);
                Ok(outcome)
            }
            Ok(false) | Err(TieringError::Fenced { .. }) => {
                // Nobody will ever name these objects; don't wait for the scrub. (Any other
                // error may be a conditional PUT that landed with its answer lost: then the
                // objects are named, and the scrub, which reads the manifest, decides.)
                for path in [&log_path, &indexes_path] {
                    outcome.delete_requests += 1;
                    if let Err(e) = self.delete_object(path).await {
                        tracing::warn!(tp = %self.tp, %path, error = %e, "cannot delete the objects of an abandoned merge; the scrub will");
                    }
                }
                committed.map(|_| {
                    tracing::info!(tp = %self.tp, "the manifest changed during a merge; merge abandoned");
                    outcome.abandoned = true;
                    outcome
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Steps 3 and 4 of the module docs for every replaced segment past its grace period.
    async fn delete_replaced(
        &self,
        policy: &MergePolicy,
        outcome: &mut MergeOutcome,
    ) -> Result<(), TieringError> {
        let _write = self.manifest_write.lock().await;
        let current = self.manifest();
        self.check_not_deleted(&current)?;
        let due =
            |r: &ReplacedSegment| r.replaced_at_ms.saturating_add(policy.grace_ms) <= policy.now_ms;
        let doomed: Vec<ReplacedSegment> = current
            .replaced
            .iter()
            .filter(|r| due(r))
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        for segment in &doomed {
            self.delete_objects_of(segment.base_offset, segment.segment_id)
                .await?;
            outcome.delete_requests += 2;
        }
        let mut next = (*current).clone();
        next.version += 1;
        next.replaced.retain(|r| !due(r));
        self.commit(next).await?;
        outcome.put_requests += 1;
        outcome.replaced_deleted = doomed.len();
        tracing::info!(tp = %self.tp, segments = doomed.len(), "deleted the objects of merged-away segments");
        Ok(())
    }

    /// Step 1: reads the sources and writes the merged `.log` and `.indexes` objects.
    async fn write_merged(
        &self,
        sources: &[RemoteLogSegmentMetadata],
        policy: &MergePolicy,
        outcome: &mut MergeOutcome,
    ) -> Result<RemoteLogSegmentMetadata, TieringError> {
        let first = &sources[0];
        let last = &sources[sources.len() - 1];
        let id = RemoteLogSegmentId::new_random();
        let log_path = self.layout.log(first.base_offset, id);
        let total: u64 = sources.iter().map(|s| s.size_bytes).sum();
        let tally = Tally::default();
        let merger = if total <= self.shared.config.multipart_threshold_bytes {
            let mut merger = Merger::new(first.base_offset, policy.index_interval_bytes);
            let mut body = Vec::with_capacity(total as usize);
            let mut windows = Windows::new(sources);
            while let Some((source, window)) = windows.next(self, &tally).await? {
                self.feed(&mut merger, sources, source, &window)?;
                body.extend_from_slice(&window);
            }
            self.finish_sources(&mut merger, sources)?;
            self.put_object(&log_path, PutPayload::from(body)).await?;
            tally.puts.fetch_add(1, Relaxed);
            merger
        } else {
            let (path, tally) = (&log_path, &tally);
            self.multipart_retried(path, move || async move {
                self.merge_multipart_attempt(sources, policy, path, tally)
                    .await
            })
            .await?
        };
        outcome.get_requests += tally.gets.load(Relaxed);
        outcome.put_requests += tally.puts.load(Relaxed);
        outcome.bytes_read += tally.bytes_read.load(Relaxed);
        // The producer snapshot is the state after the last source; transaction indexes hold
        // absolute offsets, so they concatenate.
        let mut transaction_index: Option<Vec<u8>> = None;
        let mut producer_snapshot = None;
        for source in sources {
            let indexes = self.segment_indexes(source).await?;
            outcome.get_requests += 1;
            if let Some(txn) = &indexes.transaction_index {
                transaction_index
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(txn);
            }
            producer_snapshot = indexes.producer_snapshot.clone();
        }
        let leader_epochs = join_epochs(sources);
        let (offset_index, time_index, crc) = merger.finish();
        let indexes = SegmentIndexes {
            offset_index,
            time_index,
            transaction_index: transaction_index.map(Bytes::from),
            leader_epochs: leader_epochs.clone(),
            producer_snapshot,
        }
        .encode();
        let indexes_size_bytes = indexes.len() as u64;
        self.put_object(
            &self.layout.indexes(first.base_offset, id),
            PutPayload::from(indexes),
        )
        .await?;
        outcome.put_requests += 1;
        let mut metadata = RemoteLogSegmentMetadata {
            segment_id: id,
            base_offset: first.base_offset,
            end_offset: last.end_offset,
            max_timestamp: sources.iter().map(|s| s.max_timestamp).max().unwrap_or(-1),
            size_bytes: total,
            indexes_size_bytes,
            log_crc32c: crc,
            // The oldest source's: the archive's lag counts from when the data arrived.
            created_at_ms: sources.iter().map(|s| s.created_at_ms).min().unwrap_or(0),
            leader_epochs,
            state: RemoteLogSegmentState::CopySegmentStarted,
        };
        self.transition(&mut metadata, RemoteLogSegmentState::CopySegmentFinished)?;
        Ok(metadata)
    }

    /// One multipart upload of the merged `.log`, aborted if it fails (the caller retries).
    async fn merge_multipart_attempt(
        &self,
        sources: &[RemoteLogSegmentMetadata],
        policy: &MergePolicy,
        path: &Path,
        tally: &Tally,
    ) -> Result<Merger, TieringError> {
        let part_bytes = self.shared.config.multipart_part_bytes.max(1);
        let mut merger = Merger::new(sources[0].base_offset, policy.index_interval_bytes);
        let mut upload = self.multipart_create(path).await?;
        tally.puts.fetch_add(1, Relaxed);
        let sent = async {
            let mut windows = Windows::new(sources);
            let mut part = Vec::with_capacity(part_bytes);
            loop {
                let next = windows.next(self, tally).await?;
                if let Some((source, window)) = &next {
                    self.feed(&mut merger, sources, *source, window)?;
                    part.extend_from_slice(window);
                }
                if part.len() >= part_bytes || (next.is_none() && !part.is_empty()) {
                    let payload = PutPayload::from(std::mem::take(&mut part));
                    self.shared
                        .rate
                        .acquire(payload.content_length() as u64)
                        .await;
                    upload
                        .put_part(payload)
                        .await
                        .map_err(|e| self.store_error("multipart part PUT", path, e))?;
                    tally.puts.fetch_add(1, Relaxed);
                }
                if next.is_none() {
                    break;
                }
            }
            self.finish_sources(&mut merger, sources)?;
            self.multipart_complete(path, upload.as_mut()).await?;
            tally.puts.fetch_add(1, Relaxed);
            Ok::<(), TieringError>(())
        }
        .await;
        match sent {
            Ok(()) => Ok(merger),
            Err(e) => {
                self.multipart_abort(path, upload.as_mut()).await;
                Err(e)
            }
        }
    }

    fn feed(
        &self,
        merger: &mut Merger,
        sources: &[RemoteLogSegmentMetadata],
        source: usize,
        window: &[u8],
    ) -> Result<(), TieringError> {
        merger
            .feed(sources, source, window)
            .map_err(|(at, reason)| self.corrupt_source(&sources[source], at, reason))
    }

    fn finish_sources(
        &self,
        merger: &mut Merger,
        sources: &[RemoteLogSegmentMetadata],
    ) -> Result<(), TieringError> {
        merger
            .finish_source(sources)
            .map_err(|(source, reason)| self.corrupt_source(&sources[source], 0, reason))
    }

    fn corrupt_source(
        &self,
        segment: &RemoteLogSegmentMetadata,
        position: u64,
        reason: String,
    ) -> TieringError {
        self.corrupt(
            segment,
            segment.base_offset,
            position,
            format!("while merging: {reason}"),
        )
    }

    /// Step 2: swaps the merged segment in for its sources. `Ok(false)` if the sources are no
    /// longer listed, readable and consecutive as they were.
    async fn commit_merge(
        &self,
        sources: &[RemoteLogSegmentMetadata],
        merged: &RemoteLogSegmentMetadata,
        now_ms: i64,
    ) -> Result<bool, TieringError> {
        let _write = self.manifest_write.lock().await;
        let current = self.manifest();
        self.check_not_deleted(&current)?;
        let Some(at) = current
            .segments
            .iter()
            .position(|s| s.segment_id == sources[0].segment_id)
        else {
            return Ok(false);
        };
        let unchanged = current.segments.len() >= at + sources.len()
            && current.segments[at..at + sources.len()]
                .iter()
                .zip(sources)
                .all(|(listed, source)| listed == source);
        if !unchanged {
            return Ok(false);
        }
        let mut next = (*current).clone();
        next.version += 1;
        next.segments
            .splice(at..at + sources.len(), [merged.clone()]);
        next.replaced
            .extend(sources.iter().map(|s| ReplacedSegment {
                segment_id: s.segment_id,
                base_offset: s.base_offset,
                size_bytes: s.size_bytes,
                replaced_at_ms: now_ms,
            }));
        self.commit(next).await?;
        Ok(true)
    }

    /// DELETEs a segment's `.log` and `.indexes` and forgets what is cached of them.
    pub(crate) async fn delete_objects_of(
        &self,
        base_offset: Offset,
        id: RemoteLogSegmentId,
    ) -> Result<(), TieringError> {
        let log = self.layout.log(base_offset, id);
        let indexes = self.layout.indexes(base_offset, id);
        self.delete_object(&log).await?;
        self.delete_object(&indexes).await?;
        self.shared.cache.invalidate(&log);
        self.shared.cache.invalidate(&indexes);
        self.shared.indexes.remove(id);
        Ok(())
    }
}

/// The run of small segments to merge now, as a range of `readable` (see the module docs).
fn plan(
    readable: &[RemoteLogSegmentMetadata],
    policy: &MergePolicy,
) -> Option<std::ops::Range<usize>> {
    let small = |s: &RemoteLogSegmentMetadata| s.size_bytes < policy.target_bytes / 2;
    let fanout = policy.fanout.max(2);
    if readable.iter().filter(|s| small(s)).count() < fanout {
        return None;
    }
    let target = policy.target_bytes.min(u64::from(u32::MAX));
    // (length, bytes, start) of the best run so far: longest, then fewest bytes, then oldest.
    let mut best: Option<(usize, u64, usize)> = None;
    for start in 0..readable.len() {
        let first = &readable[start];
        let mut total = 0u64;
        let mut len = 0;
        for next in readable[start..].iter().take(fanout) {
            let fits = small(next)
                && total + next.size_bytes <= target
                && (policy.max_span_ms < 0
                    || next.max_timestamp.saturating_sub(first.max_timestamp)
                        <= policy.max_span_ms)
                && next.end_offset - first.base_offset <= i64::from(i32::MAX);
            if !fits {
                break;
            }
            total += next.size_bytes;
            len += 1;
        }
        let better = best.is_none_or(|(l, t, _)| len > l || (len == l && total < t));
        if len >= 2 && better {
            best = Some((len, total, start));
        }
    }
    best.map(|(len, _, start)| start..start + len)
}

/// The sources' leader epochs as one list, an epoch that continues across sources kept once.
fn join_epochs(sources: &[RemoteLogSegmentMetadata]) -> Vec<EpochEntry> {
    let mut joined: Vec<EpochEntry> = Vec::new();
    for entry in sources.iter().flat_map(|s| &s.leader_epochs) {
        if joined.last().is_none_or(|last| last.epoch != entry.epoch) {
            joined.push(*entry);
        }
    }
    joined
}

/// Requests made while writing a merged segment, across multipart attempts.
#[derive(Default)]
struct Tally {
    gets: AtomicU64,
    puts: AtomicU64,
    bytes_read: AtomicU64,
}

/// The sources' bytes in windows of [`READ_WINDOW_BYTES`], each tagged with its source.
struct Windows<'a> {
    sources: &'a [RemoteLogSegmentMetadata],
    source: usize,
    position: u64,
}

impl<'a> Windows<'a> {
    fn new(sources: &'a [RemoteLogSegmentMetadata]) -> Self {
        Self {
            sources,
            source: 0,
            position: 0,
        }
    }

    async fn next(
        &mut self,
        partition: &RemotePartition,
        tally: &Tally,
    ) -> Result<Option<(usize, Bytes)>, TieringError> {
        while let Some(segment) = self.sources.get(self.source) {
            if self.position >= segment.size_bytes {
                self.source += 1;
                self.position = 0;
                continue;
            }
            let path: Path = partition
                .layout
                .log(segment.base_offset, segment.segment_id);
            let end = segment.size_bytes.min(self.position + READ_WINDOW_BYTES);
            let window = partition
                .shared
                .store
                .get_range(&path, self.position..end)
                .await
                .map_err(|e| partition.store_error("GET", &path, e))?;
            tally.gets.fetch_add(1, Relaxed);
            tally.bytes_read.fetch_add(window.len() as u64, Relaxed);
            if window.len() as u64 != end - self.position {
                return Err(partition.corrupt_source(
                    segment,
                    self.position,
                    format!(
                        "a read of {} bytes returned {}",
                        end - self.position,
                        window.len()
                    ),
                ));
            }
            self.position = end;
            return Ok(Some((self.source, window)));
        }
        Ok(None)
    }
}

/// Checks the sources' batches as they stream past and builds the merged segment's indexes
/// and checksum.
struct Merger {
    rule: IndexRule,
    offset_index: Vec<u8>,
    time_index: Vec<u8>,
    crc: u32,
    /// The source being fed, its checker and CRC, and where it starts in the merged segment.
    source: Option<(usize, BatchChecker, u32)>,
    source_start: u64,
}

impl Merger {
    fn new(base_offset: Offset, index_interval_bytes: u64) -> Self {
        Self {
            rule: IndexRule::new(base_offset, index_interval_bytes),
            offset_index: Vec::new(),
            time_index: Vec::new(),
            crc: 0,
            source: None,
            source_start: 0,
        }
    }

    /// Feeds a window of source `index`; the error is the position in that source and why.
    fn feed(
        &mut self,
        sources: &[RemoteLogSegmentMetadata],
        index: usize,
        window: &[u8],
    ) -> Result<(), (u64, String)> {
        if self.source.as_ref().is_some_and(|(i, _, _)| *i != index) {
            self.finish_source(sources)
                .map_err(|(_, reason)| (0, reason))?;
        }
        let segment = &sources[index];
        let (_, checker, crc) = self.source.get_or_insert_with(|| {
            (
                index,
                BatchChecker::for_range(segment.base_offset, segment.end_offset),
                0,
            )
        });
        let start = self.source_start;
        let (rule, offsets, times) = (&mut self.rule, &mut self.offset_index, &mut self.time_index);
        checker
            .feed_with(window, |at, header: &RecordBatchHeader| {
                let (o, t) = rule.on_batch(&IndexedBatch {
                    position: start + at,
                    size: header.size_bytes() as u64,
                    last_offset: header.last_offset(),
                    max_timestamp: header.max_timestamp,
                });
                if let Some(o) = o {
                    offsets.extend_from_slice(&o.encode());
                }
                if let Some(t) = t {
                    times.extend_from_slice(&t.encode());
                }
            })
            .map_err(|reason| (0, reason))?;
        *crc = crc32c::crc32c_append(*crc, window);
        self.crc = crc32c::crc32c_append(self.crc, window);
        Ok(())
    }

    /// Closes the source being fed: whole batches only, and its CRC-32C as the manifest says.
    fn finish_source(
        &mut self,
        sources: &[RemoteLogSegmentMetadata],
    ) -> Result<(), (usize, String)> {
        let Some((index, checker, crc)) = self.source.take() else {
            return Ok(());
        };
        let segment = &sources[index];
        checker.finish().map_err(|reason| (index, reason))?;
        if crc != segment.log_crc32c {
            return Err((
                index,
                format!(
                    "its bytes hash to CRC-32C {crc:#010x} but the manifest records {:#010x}",
                    segment.log_crc32c
                ),
            ));
        }
        self.source_start += segment.size_bytes;
        Ok(())
    }

    /// The offset index, the time index (its last entry the largest timestamp) and the CRC.
    fn finish(mut self) -> (Bytes, Bytes, u32) {
        if let Some(t) = self.rule.maybe_time_entry() {
            self.time_index.extend_from_slice(&t.encode());
        }
        (
            Bytes::from(self.offset_index),
            Bytes::from(self.time_index),
            self.crc,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::RemoteLogSegmentId;
    use shale_formats::ids::LeaderEpoch;

    fn segment(
        base: i64,
        end: i64,
        size: u64,
        max_ts: i64,
        epoch: i32,
    ) -> RemoteLogSegmentMetadata {
        RemoteLogSegmentMetadata {
            segment_id: RemoteLogSegmentId::new_random(),
            base_offset: Offset::new(base),
            end_offset: Offset::new(end),
            max_timestamp: max_ts,
            size_bytes: size,
            indexes_size_bytes: 0,
            log_crc32c: 0,
            created_at_ms: 0,
            leader_epochs: vec![EpochEntry {
                epoch: LeaderEpoch::new(epoch),
                start_offset: Offset::new(base),
            }],
            state: RemoteLogSegmentState::CopySegmentFinished,
        }
    }

    fn policy(target: u64, span: i64, fanout: usize) -> MergePolicy {
        MergePolicy {
            target_bytes: target,
            max_span_ms: span,
            fanout,
            index_interval_bytes: 4096,
            grace_ms: 0,
            now_ms: 0,
        }
    }

    /// Nothing below `fanout` small segments; then the longest run of small neighbours that
    /// fits the target and the time span, the one with the fewest bytes among equals.
    #[test]
    fn plans_runs_of_small_segments() {
        let s = [
            segment(0, 9, 10, 100, 1),
            segment(10, 19, 600, 200, 1), // not small (≥ 500)
            segment(20, 29, 100, 300, 1),
            segment(30, 39, 100, 400, 1),
            segment(40, 49, 100, 500, 2),
            segment(50, 59, 90, 10_000, 2),
        ];
        assert_eq!(plan(&s, &policy(1000, -1, 6)), None, "5 small, fanout 6");
        assert_eq!(
            plan(&s, &policy(1000, -1, 5)),
            Some(2..6),
            "the longest run"
        );
        assert_eq!(
            plan(&s, &policy(1000, 250, 5)),
            Some(2..5),
            "the span ends it"
        );
        assert_eq!(
            plan(&s, &policy(1000, -1, 2)),
            Some(4..6),
            "the two with the fewest bytes"
        );
        assert_eq!(
            plan(&s, &policy(250, -1, 3)),
            Some(4..6),
            "two of ~100 fill 250"
        );
        assert_eq!(
            plan(&s, &policy(150, -1, 1)),
            None,
            "small is < 75: only the first"
        );
    }

    #[test]
    fn epochs_continuing_across_sources_are_kept_once() {
        let s = [
            segment(0, 9, 10, 0, 1),
            segment(10, 19, 10, 0, 1),
            segment(20, 29, 10, 0, 2),
        ];
        let joined = join_epochs(&s);
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].start_offset, Offset::new(0));
        assert_eq!(
            (joined[1].epoch, joined[1].start_offset),
            (LeaderEpoch::new(2), Offset::new(20))
        );
    }
}
