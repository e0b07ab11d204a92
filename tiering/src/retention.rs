//! Deleting remote segments: total retention (`retention.ms`, `retention.bytes`), DeleteRecords
//! (`delete_segments_before`) and topic deletion (`delete_all`).
//!
//! Every delete is three steps, so that a crash anywhere leaves a state the next run finishes:
//!
//! ```text
//!  v8: [A finished][B finished][C finished]
//!  1. v9:  [A DELETE_STARTED][B finished][C finished]   readers stop using A at once
//!  2. DELETE A.log, A.indexes                           (missing objects count as deleted)
//!  3. v10: [B finished][C finished]                     A is DELETE_SEGMENT_FINISHED: gone
//! ```
//!
//! A crash after 1 or 2 leaves A in `DELETE_SEGMENT_STARTED`; every delete operation first
//! finishes such segments (steps 2 and 3 again).

use object_store::ObjectStoreExt;
use shale_formats::ids::Offset;

use crate::error::TieringError;
use crate::manifest::Manifest;
use crate::metadata::{RemoteLogSegmentMetadata, RemoteLogSegmentState};
use crate::partition::RemotePartition;

/// Kafka's total-retention settings for one partition, and what the broker knows locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 means no size limit.
    pub retention_bytes: i64,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
    /// Bytes of the partition that are only local (not yet copied): they count toward
    /// `retention.bytes` like Kafka's whole-log size does.
    pub local_only_bytes: u64,
}

/// What a delete operation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    /// The remote log start offset afterwards, if anything is left.
    pub remote_log_start_offset: Option<Offset>,
}

impl RemotePartition {
    /// Deletes the oldest segments that break `policy`: each whose records are all older than
    /// `retention.ms` (its max timestamp is ≤ now − retention.ms), and the oldest ones while the
    /// log (remote + local-only) exceeds `retention.bytes` by at least their size. Finishes any
    /// delete an earlier run left half done.
    pub async fn enforce_retention(
        &self,
        policy: RetentionPolicy,
    ) -> Result<RetentionOutcome, TieringError> {
        self.delete_where(None, |manifest| {
            let mut selected = 0;
            let readable: Vec<&RemoteLogSegmentMetadata> = manifest.readable_segments().collect();
            let total = manifest.readable_size_bytes() + policy.local_only_bytes;
            let mut breached = if policy.retention_bytes < 0 {
                0
            } else {
                total.saturating_sub(policy.retention_bytes as u64)
            };
            for segment in readable {
                let too_old = policy.retention_ms >= 0
                    && segment.max_timestamp <= policy.now_ms.saturating_sub(policy.retention_ms);
                let too_big = breached > 0 && breached >= segment.size_bytes;
                if !(too_old || too_big) {
                    break;
                }
                breached = breached.saturating_sub(segment.size_bytes);
                selected += 1;
            }
            selected
        })
        .await
    }

    /// DeleteRecords: raises the log start offset to `offset` and deletes the segments wholly
    /// below it. Offsets below it read as [`crate::RemoteReadOutcome::OffsetBelowStart`] at once.
    pub async fn delete_segments_before(
        &self,
        offset: Offset,
    ) -> Result<RetentionOutcome, TieringError> {
        self.delete_where(Some(offset), |manifest| {
            manifest
                .readable_segments()
                .take_while(|s| s.end_offset < offset)
                .count()
        })
        .await
    }

    /// Finishes deletes an earlier run left half done, and nothing else.
    pub async fn finish_pending_deletes(&self) -> Result<RetentionOutcome, TieringError> {
        self.delete_where(None, |_| 0).await
    }

    /// Topic deletion: marks the partition deleted with every segment `DELETE_SEGMENT_STARTED`,
    /// deletes the segment objects, then every manifest version, the marker last. A crash
    /// leaves the marker, which the next call (or the scrub) finishes.
    pub async fn delete_all(&self) -> Result<RetentionOutcome, TieringError> {
        let _write = self.manifest_write.lock().await;
        self.catch_up().await?;
        let current = self.manifest();
        if current.version == 0 {
            return Ok(RetentionOutcome::default());
        }
        let marker = if current.deleted {
            current
        } else {
            let mut next = (*current).clone();
            next.version += 1;
            next.deleted = true;
            for segment in &mut next.segments {
                self.transition(segment, RemoteLogSegmentState::DeleteSegmentStarted)?;
            }
            self.commit(next).await?
        };
        let outcome = RetentionOutcome {
            segments_deleted: marker.segments.len(),
            bytes_deleted: marker.segments.iter().map(|s| s.size_bytes).sum(),
            remote_log_start_offset: None,
        };
        for segment in &marker.segments {
            self.delete_segment_objects(segment).await?;
        }
        for replaced in &marker.replaced {
            self.delete_objects_of(replaced.base_offset, replaced.segment_id)
                .await?;
        }
        self.delete_archive_files_of(&marker).await?;
        for version in (1..marker.version).rev() {
            self.delete_object(&self.layout.manifest(version)).await?;
        }
        self.delete_object(&self.layout.manifest(marker.version))
            .await?;
        tracing::info!(tp = %self.tp, segments = outcome.segments_deleted, "deleted the partition's remote log");
        Ok(outcome)
    }

    /// The delete protocol of the module docs. `select` picks how many of the oldest readable
    /// segments to delete now; `log_start_offset` raises the manifest's.
    async fn delete_where(
        &self,
        log_start_offset: Option<Offset>,
        select: impl FnOnce(&Manifest) -> usize,
    ) -> Result<RetentionOutcome, TieringError> {
        let _write = self.manifest_write.lock().await;
        let current = self.manifest();
        self.check_not_deleted(&current)?;
        let count = select(&current);
        let chosen: Vec<_> = current
            .readable_segments()
            .take(count)
            .map(|s| s.segment_id)
            .collect();
        let raises_start = log_start_offset
            .is_some_and(|o| current.log_start_offset.is_none_or(|start| o > start));
        // Step 1: mark.
        let marked = if chosen.is_empty() && !raises_start {
            current
        } else {
            let mut next = (*current).clone();
            next.version += 1;
            if raises_start {
                next.log_start_offset = log_start_offset;
            }
            for segment in &mut next.segments {
                if chosen.contains(&segment.segment_id) {
                    self.transition(segment, RemoteLogSegmentState::DeleteSegmentStarted)?;
                }
            }
            self.commit(next).await?
        };
        let doomed: Vec<RemoteLogSegmentMetadata> = marked
            .segments
            .iter()
            .filter(|s| s.state == RemoteLogSegmentState::DeleteSegmentStarted)
            .cloned()
            .collect();
        if doomed.is_empty() {
            return Ok(RetentionOutcome {
                remote_log_start_offset: marked.remote_log_start_offset(),
                ..RetentionOutcome::default()
            });
        }
        // Step 2: delete the objects.
        for segment in &doomed {
            self.delete_segment_objects(segment).await?;
        }
        // Step 3: DELETE_SEGMENT_FINISHED, i.e. gone from the manifest.
        let mut next = (*marked).clone();
        next.version += 1;
        let mut kept = Vec::with_capacity(next.segments.len());
        for mut segment in next.segments {
            if segment.state == RemoteLogSegmentState::DeleteSegmentStarted {
                self.transition(&mut segment, RemoteLogSegmentState::DeleteSegmentFinished)?;
            } else {
                kept.push(segment);
            }
        }
        next.segments = kept;
        let written = self.commit(next).await?;
        let outcome = RetentionOutcome {
            segments_deleted: doomed.len(),
            bytes_deleted: doomed.iter().map(|s| s.size_bytes).sum(),
            remote_log_start_offset: written.remote_log_start_offset(),
        };
        tracing::info!(tp = %self.tp, segments = outcome.segments_deleted, bytes = outcome.bytes_deleted,
            remote_log_start_offset = ?outcome.remote_log_start_offset, "deleted remote segments");
        Ok(outcome)
    }

    pub(crate) async fn delete_segment_objects(
        &self,
        segment: &RemoteLogSegmentMetadata,
    ) -> Result<(), TieringError> {
        self.delete_objects_of(segment.base_offset, segment.segment_id)
            .await
    }

    /// DELETE; an object already gone counts as deleted.
    pub(crate) async fn delete_object(
        &self,
        path: &object_store::path::Path,
    ) -> Result<(), TieringError> {
        match self.shared.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error("DELETE", path, e)),
        }
    }
}
