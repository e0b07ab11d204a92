//! Copying a sealed segment: `.log`, then `.indexes`, then manifest version N+1.
//!
//! ```text
//!  local:  [ 0..99 ][ 100..199 ][ 200..299 ]( active )
//!  remote: [ 0..99 ][ 100..199 ]                      manifest v7 ends at 199
//!                                 └ copy_segment(200..=299):
//!                                   1. PUT  000…200-<id>.log       (multipart above a threshold)
//!                                   2. PUT  000…200-<id>.indexes
//!                                   3. PUT  manifest/000…08  if-none-match (fenced)
//! ```
//!
//! A crash before step 3 leaves objects no manifest names, under a fresh id that no later
//! attempt reuses: the scrub deletes them once they are older than its grace period. Only step 3
//! makes the segment exist, atomically. The segment's batches are validated (framing, CRC-32C,
//! offsets inside the segment's range) while they are read for upload, so corrupt local data is
//! refused before it reaches the remote tier.

use std::borrow::Cow;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use shale_formats::batch::{self, ValidateOptions};
use shale_formats::ids::Offset;
use shale_formats::index;
use tokio::io::AsyncReadExt;

use crate::error::TieringError;
use crate::indexes::SegmentIndexes;
use crate::metadata::{
    RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteLogSegmentState, SegmentUpload,
};
use crate::partition::{now_ms, RemotePartition};

impl RemotePartition {
    /// Copies a sealed segment to the remote tier and records it in a new manifest version.
    ///
    /// The segment must continue the remote log: `base_offset` is the copied end offset + 1, or
    /// anything if nothing was ever copied. Copying a segment that the manifest already lists
    /// with the same offsets returns that segment (a retry after a lost acknowledgement). One
    /// copy per partition runs at a time; copies of different partitions run concurrently up to
    /// `upload_concurrency_max`.
    ///
    /// Errors: [`TieringError::NotContiguous`] for a gap or overlap,
    /// [`TieringError::InvalidSegment`] for a local segment that fails validation,
    /// [`TieringError::Fenced`] if another writer committed first (this handle has then
    /// reloaded the manifest, and its uploaded objects are deleted), and store errors once the
    /// retries are used up.
    pub async fn copy_segment(
        &self,
        segment: SegmentUpload,
    ) -> Result<RemoteLogSegmentMetadata, TieringError> {
        let _copy = self.copy_lock.lock().await;
        if let Some(existing) = self.check_continues(&segment)? {
            return Ok(existing);
        }
        let _slot = self.upload_slot().await;
        let id = RemoteLogSegmentId::new_random();
        let log_path = self.layout.log(segment.base_offset, id);
        let indexes_path = self.layout.indexes(segment.base_offset, id);
        let mut metadata = RemoteLogSegmentMetadata {
            segment_id: id,
            base_offset: segment.base_offset,
            end_offset: segment.end_offset,
            max_timestamp: segment.max_timestamp,
            size_bytes: segment.size_bytes,
            indexes_size_bytes: 0,
            log_crc32c: 0,
            created_at_ms: 0,
            leader_epochs: segment.leader_epochs.clone(),
            state: RemoteLogSegmentState::CopySegmentStarted,
        };
        tracing::info!(tp = %self.tp, base_offset = %segment.base_offset, end_offset = %segment.end_offset,
            size_bytes = segment.size_bytes, segment_id = %id, "copying segment to the remote tier");

        metadata.log_crc32c = self.upload_log(&segment, &log_path).await?;
        // Local index files may be preallocated and zero-filled past their last entry (as
        // Kafka's are): upload only the real entries.
        let offset_entries = index::offset_index_len(&segment.offset_index);
        let time_entries = index::time_index_len(&segment.time_index);
        let indexes = SegmentIndexes {
            offset_index: segment
                .offset_index
                .slice(..offset_entries * index::OFFSET_INDEX_ENTRY_SIZE),
            time_index: segment
                .time_index
                .slice(..time_entries * index::TIME_INDEX_ENTRY_SIZE),
            transaction_index: segment.transaction_index.clone(),
            leader_epochs: metadata.leader_epochs.clone(),
            producer_snapshot: segment.producer_snapshot.clone(),
        }
        .encode();
        metadata.indexes_size_bytes = indexes.len() as u64;
        self.put_object(&indexes_path, PutPayload::from(indexes))
            .await?;

        self.transition(&mut metadata, RemoteLogSegmentState::CopySegmentFinished)?;
        metadata.created_at_ms = now_ms();
        match self.commit_copy(&segment, metadata.clone()).await {
            Ok(()) => {
                tracing::info!(tp = %self.tp, base_offset = %segment.base_offset, segment_id = %id, "segment copied");
                Ok(metadata)
            }
            Err(error) => {
                if matches!(
                    error,
                    TieringError::Fenced { .. } | TieringError::NotContiguous { .. }
                ) {
                    // Nobody will ever name these objects; don't wait for the scrub.
                    for path in [&log_path, &indexes_path] {
                        if let Err(e) = self.shared.store.delete(path).await {
                            tracing::warn!(tp = %self.tp, %path, error = %e, "could not delete the objects of a fenced copy; the scrub will");
                        }
                    }
                }
                Err(error)
            }
        }
    }

    pub(crate) fn transition(
        &self,
        metadata: &mut RemoteLogSegmentMetadata,
        next: RemoteLogSegmentState,
    ) -> Result<(), TieringError> {
        metadata
            .transition(next)
            .map_err(|(from, to)| TieringError::InvalidTransition {
                tp: self.tp.clone(),
                segment: metadata.segment_id.to_string(),
                from,
                to,
            })
    }

    /// `Ok(Some(existing))` if this exact segment is already remote, `Ok(None)` if it may be
    /// copied, an error if it would leave a gap or an overlap.
    fn check_continues(
        &self,
        segment: &SegmentUpload,
    ) -> Result<Option<RemoteLogSegmentMetadata>, TieringError> {
        let manifest = self.manifest();
        self.check_not_deleted(&manifest)?;
        let invalid = |reason: String| TieringError::InvalidSegment {
            tp: self.tp.clone(),
            path: segment.log_path.display().to_string(),
            base_offset: segment.base_offset,
            end_offset: segment.end_offset,
            reason,
        };
        if segment.base_offset < Offset::ZERO || segment.end_offset < segment.base_offset {
            return Err(invalid("its offsets are not a valid range".to_string()));
        }
        if segment.end_offset - segment.base_offset > i64::from(u32::MAX) {
            return Err(invalid(
                "it spans more offsets than a relative offset index can address".to_string(),
            ));
        }
        if segment.size_bytes == 0 {
            return Err(invalid("it is empty".to_string()));
        }
        let Some(end) = manifest.end_offset else {
            return Ok(None);
        };
        if segment.base_offset == end + 1 {
            return Ok(None);
        }
        if let Some(existing) = manifest.segments.iter().find(|s| {
            s.base_offset == segment.base_offset
                && s.end_offset == segment.end_offset
                && s.state == RemoteLogSegmentState::CopySegmentFinished
        }) {
            return Ok(Some(existing.clone()));
        }
        Err(TieringError::NotContiguous {
            tp: self.tp.clone(),
            base_offset: segment.base_offset,
            end_offset: segment.end_offset,
            remote_log_end_offset: end,
            expected_base_offset: end + 1,
        })
    }

    /// Writes the manifest version that adds `metadata`, re-checking contiguity against the
    /// manifest as it is now.
    async fn commit_copy(
        &self,
        segment: &SegmentUpload,
        metadata: RemoteLogSegmentMetadata,
    ) -> Result<(), TieringError> {
        let _write = self.manifest_write.lock().await;
        let current = self.manifest();
        self.check_not_deleted(&current)?;
        if let Some(end) = current.end_offset {
            if segment.base_offset != end + 1 {
                return Err(TieringError::NotContiguous {
                    tp: self.tp.clone(),
                    base_offset: segment.base_offset,
                    end_offset: segment.end_offset,
                    remote_log_end_offset: end,
                    expected_base_offset: end + 1,
                });
            }
        }
        let mut next = (*current).clone();
        next.version += 1;
        next.end_offset = Some(metadata.end_offset);
        next.segments.push(metadata);
        self.commit(next).await?;
        Ok(())
    }

    /// Uploads the `.log` object; returns the CRC-32C of its bytes.
    async fn upload_log(&self, segment: &SegmentUpload, path: &Path) -> Result<u32, TieringError> {
        let size = self.local_size(segment).await?;
        if size <= self.shared.config.multipart_threshold_bytes {
            let bytes = tokio::fs::read(&segment.log_path)
                .await
                .map_err(|e| self.local_io(segment, e))?;
            if bytes.len() as u64 != size {
                return Err(self.invalid(segment, "the file changed size while being read".into()));
            }
            let mut checker = BatchChecker::new(segment);
            checker.feed(&bytes).map_err(|r| self.invalid(segment, r))?;
            checker.finish().map_err(|r| self.invalid(segment, r))?;
            let crc = crc32c::crc32c(&bytes);
            self.put_object(path, PutPayload::from(bytes)).await?;
            return Ok(crc);
        }
        self.multipart_retried(path, || self.multipart_attempt(segment, path))
            .await
    }

    /// One multipart upload of the whole file. object_store's `MultipartUpload` cannot resend a
    /// failed part, so a failure aborts the upload and the caller starts over; the S3 client
    /// already retries each request a few times internally, and the store decorator bounds each by
    /// the request timeout.
    async fn multipart_attempt(
        &self,
        segment: &SegmentUpload,
        path: &Path,
    ) -> Result<u32, TieringError> {
        let mut upload = self.multipart_create(path).await?;
        let sent = self.send_parts(segment, path, upload.as_mut()).await;
        if sent.is_err() {
            self.multipart_abort(path, upload.as_mut()).await;
        }
        sent
    }

    async fn send_parts(
        &self,
        segment: &SegmentUpload,
        path: &Path,
        upload: &mut dyn MultipartUpload,
    ) -> Result<u32, TieringError> {
        let config = &self.shared.config;
        let mut file = tokio::fs::File::open(&segment.log_path)
            .await
            .map_err(|e| self.local_io(segment, e))?;
        let mut checker = BatchChecker::new(segment);
        let mut crc = 0u32;
        let mut sent = 0u64;
        let mut in_flight = FuturesUnordered::new();
        loop {
            let mut part = vec![0u8; config.multipart_part_bytes];
            let mut filled = 0;
            while filled < part.len() {
                let n = file
                    .read(&mut part[filled..])
                    .await
                    .map_err(|e| self.local_io(segment, e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            part.truncate(filled);
            checker.feed(&part).map_err(|r| self.invalid(segment, r))?;
            crc = crc32c::crc32c_append(crc, &part);
            sent += filled as u64;
            self.shared.rate.acquire(filled as u64).await;
            let put = upload.put_part(PutPayload::from(part));
            in_flight.push(async move {
                put.await
                    .map_err(|e| self.store_error("multipart part PUT", path, e))
            });
            while in_flight.len() >= config.multipart_parts_in_flight_max.max(1) {
                in_flight.next().await.expect("a part is in flight")?;
            }
        }
        while let Some(result) = in_flight.next().await {
            result?;
        }
        checker.finish().map_err(|r| self.invalid(segment, r))?;
        if sent != segment.size_bytes {
            return Err(self.invalid(
                segment,
                format!(
                    "{sent} bytes were read but the segment declares {}",
                    segment.size_bytes
                ),
            ));
        }
        self.multipart_complete(path, upload).await?;
        Ok(crc)
    }

    async fn local_size(&self, segment: &SegmentUpload) -> Result<u64, TieringError> {
        let size = tokio::fs::metadata(&segment.log_path)
            .await
            .map_err(|e| self.local_io(segment, e))?
            .len();
        if size != segment.size_bytes {
            return Err(self.invalid(
                segment,
                format!(
                    "the file has {size} bytes but the segment declares {}",
                    segment.size_bytes
                ),
            ));
        }
        Ok(size)
    }

    fn local_io(&self, segment: &SegmentUpload, source: std::io::Error) -> TieringError {
        TieringError::LocalIo {
            tp: self.tp.clone(),
            path: segment.log_path.display().to_string(),
            source,
        }
    }

    fn invalid(&self, segment: &SegmentUpload, reason: String) -> TieringError {
        TieringError::InvalidSegment {
            tp: self.tp.clone(),
            path: segment.log_path.display().to_string(),
            base_offset: segment.base_offset,
            end_offset: segment.end_offset,
            reason,
        }
    }
}

/// Validates a segment's batches as its bytes stream past: framing, CRC-32C, offsets
/// increasing and inside `base_offset..=end_offset`.
pub(crate) struct BatchChecker {
    base_offset: Offset,
    end_offset: Offset,
    /// Bytes of a batch cut by the end of the previous chunk.
    pending: Vec<u8>,
    /// File position of `pending`'s first byte.
    position: u64,
    next_offset: Offset,
    batches: u64,
}

impl BatchChecker {
    fn new(segment: &SegmentUpload) -> Self {
        Self::for_range(segment.base_offset, segment.end_offset)
    }

    /// A checker for a segment holding offsets `base_offset..=end_offset`.
    pub(crate) fn for_range(base_offset: Offset, end_offset: Offset) -> Self {
        Self {
            base_offset,
            end_offset,
            pending: Vec::new(),
            position: 0,
            next_offset: base_offset,
            batches: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.feed_with(chunk, |_, _| {})
    }

    /// Checks the batches completed by `chunk`, calling `on_batch(position, header)` for each,
    /// the position counted from the first byte fed.
    pub(crate) fn feed_with(
        &mut self,
        chunk: &[u8],
        mut on_batch: impl FnMut(u64, &batch::RecordBatchHeader),
    ) -> Result<(), String> {
        let buf: Cow<'_, [u8]> = if self.pending.is_empty() {
            Cow::Borrowed(chunk)
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(chunk);
            Cow::Owned(joined)
        };
        let mut iter = batch::batches(&buf).allow_incomplete_tail();
        for item in iter.by_ref() {
            let (header, range) =
                item.map_err(|e| format!("the batch at byte {} is invalid: {e}", self.position))?;
            let at = self.position + range.start as u64;
            batch::validate_batch(&buf[range.clone()], &ValidateOptions::stored())
                .map_err(|e| format!("the batch at byte {at} is invalid: {e}"))?;
            if header.base_offset < self.next_offset || header.last_offset() > self.end_offset {
                return Err(format!(
                    "the batch at byte {at} holds offsets {}..={}, outside the expected {}..={}",
                    header.base_offset,
                    header.last_offset(),
                    self.next_offset,
                    self.end_offset
                ));
            }
            self.next_offset = header.last_offset() + 1;
            self.batches += 1;
            on_batch(at, &header);
        }
        let consumed = iter.position();
        self.position += consumed as u64;
        self.pending = buf[consumed..].to_vec();
        Ok(())
    }

    pub(crate) fn finish(&self) -> Result<(), String> {
        if !self.pending.is_empty() {
            return Err(format!(
                "it ends inside a batch: {} bytes at byte {} are not a whole batch",
                self.pending.len(),
                self.position
            ));
        }
        if self.batches == 0 {
            return Err(format!(
                "it holds no batch for offsets {}..={}",
                self.base_offset, self.end_offset
            ));
        }
        Ok(())
    }
}
