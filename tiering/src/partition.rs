//! [`RemotePartition`]: one partition's remote log. This module holds its manifest state and
//! the fenced manifest write; copy, read and retention add their methods in their own modules.
//!
//! The current manifest lives in memory. It is read from the store once, when the handle is
//! made (a LIST of `manifest/` to find the newest version, a GET of it, then GETs of the
//! following versions until one is missing, in case the LIST lagged), and afterwards only when
//! a write finds that another writer got ahead.
//!
//! # Old manifest versions
//! Each commit of version N deletes the versions below N − `manifest_versions_kept` that this
//! handle knows may still exist, oldest first (at most [`GC_DELETES_PER_COMMIT`] per commit,
//! best effort; the scrub is the backstop). Deleting in ascending order keeps the invariant
//! that a missing version v means every version below v is missing too. Fencing relies on
//! it: a conditional create of N only proves that nobody wrote N, not that nobody went past
//! it and had N collected. So after creating N ≥ 2 the writer checks that N − 1 still exists;
//! if it is gone, versions past this handle were written and collected, its N is a stray
//! (deleted again) and the write is fenced. (A writer still at version 0 cannot check this;
//! a single broker never has one, a cluster must fence leaders by epoch first.)

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use shale_cache::retrying::Exhausted;
use shale_formats::ids::Offset;
use uuid::Uuid;

use crate::error::TieringError;
use crate::layout::{self, PartitionLayout};
use crate::manager::Shared;
use crate::manifest::{self, Manifest};
use crate::metadata::{RemoteLogSegmentMetadata, TopicIdPartition};

/// One partition's remote log: see the module docs and the `copy`, `read` and `retention`
/// modules for its operations.
#[derive(Debug)]
pub struct RemotePartition {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tp: TopicIdPartition,
    pub(crate) layout: PartitionLayout,
    /// Written into every manifest version this handle creates.
    pub(crate) writer_id: Uuid,
    manifest: RwLock<Arc<Manifest>>,
    /// Serializes manifest writes of this handle (held across the conditional PUT).
    pub(crate) manifest_write: tokio::sync::Mutex<()>,
    /// Serializes copies of this handle: segments are committed in offset order.
    pub(crate) copy_lock: tokio::sync::Mutex<()>,
    /// Serializes merges of this handle.
    pub(crate) merge_lock: tokio::sync::Mutex<()>,
    /// Serializes archive passes and archive retention of this handle.
    pub(crate) archive_lock: tokio::sync::Mutex<()>,
    /// Whether this handle has made sure that no visible archive file is missing from the
    /// manifest (see [`crate::archive`]); false after any failed archive pass.
    pub(crate) archive_checked: std::sync::atomic::AtomicBool,
    /// The oldest manifest version that may still be stored (from the LIST at load, then
    /// moved up by each commit's collection of old versions).
    gc_next: std::sync::atomic::AtomicU64,
}

/// Old manifest versions deleted by one commit at most (a backlog after a load or a restore is
/// worked off over several commits).
pub const GC_DELETES_PER_COMMIT: u64 = 16;

/// What a conditional manifest write found.
enum CreateOutcome {
    Created,
    Exists,
}

impl RemotePartition {
    /// A handle that has not read its manifest yet (it believes version 0).
    pub(crate) fn unloaded(shared: Arc<Shared>, tp: TopicIdPartition) -> Self {
        let layout = PartitionLayout::new(&shared.prefix, &tp);
        Self {
            shared,
            layout,
            writer_id: Uuid::new_v4(),
            manifest: RwLock::new(Arc::new(Manifest::empty(tp.clone()))),
            manifest_write: tokio::sync::Mutex::new(()),
            copy_lock: tokio::sync::Mutex::new(()),
            merge_lock: tokio::sync::Mutex::new(()),
            archive_lock: tokio::sync::Mutex::new(()),
            archive_checked: std::sync::atomic::AtomicBool::new(false),
            gc_next: std::sync::atomic::AtomicU64::new(1),
            tp,
        }
    }

    pub(crate) async fn load(
        shared: Arc<Shared>,
        tp: TopicIdPartition,
    ) -> Result<Self, TieringError> {
        let partition = Self::unloaded(shared, tp);
        let (oldest, newest) = partition.listed_versions().await?;
        partition
            .gc_next
            .store(oldest.max(1), std::sync::atomic::Ordering::Relaxed);
        if newest > 0 {
            let path = partition.layout.manifest(newest);
            let manifest = partition.fetch_manifest(newest).await?.ok_or_else(|| {
                TieringError::CorruptManifest {
                    tp: partition.tp.clone(),
                    path: path.to_string(),
                    reason: "it was listed but is gone (deleted while loading?)".to_string(),
                }
            })?;
            partition.install(manifest);
        }
        partition.catch_up().await?;
        tracing::debug!(tp = %partition.tp, version = partition.manifest().version, "loaded remote manifest");
        Ok(partition)
    }

    /// The partition.
    pub fn tp(&self) -> &TopicIdPartition {
        &self.tp
    }

    /// The current manifest.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.read().expect("manifest lock").clone()
    }

    /// The first offset readable remotely, if any segment is.
    pub fn remote_log_start_offset(&self) -> Option<Offset> {
        self.manifest().remote_log_start_offset()
    }

    /// The last offset readable remotely (inclusive), if any segment is. The broker may delete
    /// local segments up to here (local retention).
    pub fn remote_log_end_offset(&self) -> Option<Offset> {
        self.manifest().remote_log_end_offset()
    }

    /// The highest offset ever copied, even if retention has since deleted it: the next
    /// segment to copy must start right after it.
    pub fn copied_end_offset(&self) -> Option<Offset> {
        self.manifest().end_offset
    }

    /// Every segment the manifest lists, oldest first, in any state.
    pub fn segments(&self) -> Vec<RemoteLogSegmentMetadata> {
        self.manifest().segments.clone()
    }

    /// Bytes of readable remote segments.
    pub fn remote_size_bytes(&self) -> u64 {
        self.manifest().readable_size_bytes()
    }

    pub(crate) fn install(&self, manifest: Manifest) {
        let mut current = self.manifest.write().expect("manifest lock");
        // Versions only move forward; an older one is never installed over a newer one.
        if manifest.version >= current.version {
            *current = Arc::new(manifest);
        }
    }

    pub(crate) fn store_error(
        &self,
        operation: &'static str,
        path: &Path,
        source: object_store::Error,
    ) -> TieringError {
        crate::error::store_error(&self.tp, operation, path, source)
    }

    /// The oldest and newest manifest versions the LIST shows, (0, 0) if none.
    async fn listed_versions(&self) -> Result<(u64, u64), TieringError> {
        let objects = self.list_all(&self.layout.manifest_dir()).await?;
        let versions = objects.iter().filter_map(|meta| {
            meta.location
                .filename()
                .and_then(layout::parse_manifest_version)
        });
        Ok(versions.fold((0, 0), |(lo, hi), v| {
            (if lo == 0 { v } else { lo.min(v) }, hi.max(v))
        }))
    }

    /// Every object under `dir`.
    pub(crate) async fn list_all(&self, dir: &Path) -> Result<Vec<ObjectMeta>, TieringError> {
        self.shared
            .store
            .list(Some(dir))
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.store_error("LIST", dir, e))
    }

    /// One of the `upload_concurrency_max` slots that copies and merges share.
    pub(crate) async fn upload_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.shared
            .upload_slots
            .acquire()
            .await
            .expect("the upload semaphore is never closed")
    }

    /// One PUT under the upload rate limit. For data objects: their names are unique per
    /// attempt or their contents deterministic, so the store's repeating one after a lost answer
    /// is harmless (manifests use [`Self::commit`] instead).
    pub(crate) async fn put_object(
        &self,
        path: &Path,
        payload: PutPayload,
    ) -> Result<(), TieringError> {
        self.shared
            .rate
            .acquire(payload.content_length() as u64)
            .await;
        self.shared
            .store
            .put(path, payload)
            .await
            .map(|_| ())
            .map_err(|e| self.store_error("PUT", path, e))
    }

    /// Runs `upload`, a whole multipart upload, again until it succeeds or fails for good:
    /// object_store's `MultipartUpload` cannot resend a failed part, so this is the one retry
    /// above the store decorator's. `upload` aborts its own failed attempts.
    pub(crate) async fn multipart_retried<T, F, Fut>(
        &self,
        path: &Path,
        upload: F,
    ) -> Result<T, TieringError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TieringError>>,
    {
        let what = format!("multipart upload of {path} for {}", self.tp);
        self.shared
            .config
            .retry
            .retry(&what, TieringError::is_retriable, upload)
            .await
            .map_err(|Exhausted { attempts, last }| {
                if attempts == 1 || !last.is_retriable() {
                    last
                } else {
                    TieringError::RetriesExhausted {
                        tp: self.tp.clone(),
                        operation: "multipart upload",
                        path: path.to_string(),
                        attempts,
                        source: Box::new(last),
                    }
                }
            })
    }

    /// Starts a multipart upload. Callers retry a whole upload ([`Self::multipart_retried`])
    /// and call [`Self::multipart_abort`] on failure.
    pub(crate) async fn multipart_create(
        &self,
        path: &Path,
    ) -> Result<Box<dyn MultipartUpload>, TieringError> {
        self.shared
            .store
            .put_multipart(path)
            .await
            .map_err(|e| self.store_error("multipart create", path, e))
    }

    /// Completes a multipart upload.
    pub(crate) async fn multipart_complete(
        &self,
        path: &Path,
        upload: &mut dyn MultipartUpload,
    ) -> Result<(), TieringError> {
        upload
            .complete()
            .await
            .map(|_| ())
            .map_err(|e| self.store_error("multipart complete", path, e))
    }

    /// Aborts a failed multipart upload; a failure to abort is only logged (a bucket lifecycle
    /// rule or the scrub cleans up).
    pub(crate) async fn multipart_abort(&self, path: &Path, upload: &mut dyn MultipartUpload) {
        if let Err(e) = upload.abort().await {
            tracing::warn!(tp = %self.tp, %path, error = %e, "aborting a failed multipart upload failed");
        }
    }

    /// Reads version `version`; `None` if it does not exist.
    pub(crate) async fn fetch_manifest(
        &self,
        version: u64,
    ) -> Result<Option<Manifest>, TieringError> {
        let path = self.layout.manifest(version);
        let Some(bytes) = self.get_if_exists(&path).await? else {
            return Ok(None);
        };
        manifest::decode(&bytes, &self.tp, version)
            .map(Some)
            .map_err(|reason| TieringError::CorruptManifest {
                tp: self.tp.clone(),
                path: path.to_string(),
                reason,
            })
    }

    pub(crate) async fn get_if_exists(&self, path: &Path) -> Result<Option<Bytes>, TieringError> {
        match self.shared.store.get(path).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.store_error("GET", path, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.store_error("GET", path, e)),
        }
    }

    /// Installs any versions after the current one (another writer's), newest last.
    pub(crate) async fn catch_up(&self) -> Result<(), TieringError> {
        loop {
            let next = self.manifest().version + 1;
            match self.fetch_manifest(next).await? {
                Some(manifest) => self.install(manifest),
                None => return Ok(()),
            }
        }
    }

    /// Writes `next` as the version after the current one, with a conditional create, and
    /// installs it. The caller holds `manifest_write` and built `next` from the current
    /// manifest. If another writer created that version first, this handle reloads and
    /// returns [`TieringError::Fenced`]: it never overwrites.
    pub(crate) async fn commit(&self, mut next: Manifest) -> Result<Arc<Manifest>, TieringError> {
        let current = self.manifest();
        assert_eq!(
            next.version,
            current.version + 1,
            "a manifest commit of {} must follow the current version {}",
            self.tp,
            current.version
        );
        next.writer_id = self.writer_id;
        next.written_at_ms = now_ms();
        let body = Bytes::from(manifest::encode(&next));
        let path = self.layout.manifest(next.version);
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(body.clone());
        let outcome = match self.shared.store.put_opts(&path, payload, create).await {
            Ok(_) => CreateOutcome::Created,
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => CreateOutcome::Exists,
            Err(e) => return Err(self.store_error("conditional PUT", &path, e)),
        };
        let fenced = match outcome {
            // Ours, if an earlier attempt of this very write succeeded but its answer was lost
            // (a timeout): the stored bytes then equal ours, writer id and time included.
            CreateOutcome::Exists => {
                let stored = self.get_if_exists(&path).await?;
                if stored.as_ref() == Some(&body) {
                    None
                } else {
                    self.catch_up().await?;
                    Some("manifest write fenced by another writer")
                }
            }
            // Collected below us: others wrote past this handle (see the module docs).
            CreateOutcome::Created
                if next.version >= 2 && !self.version_exists(next.version - 1).await =>
            {
                if let Err(e) = self.shared.store.delete(&path).await {
                    tracing::warn!(tp = %self.tp, %path, error = %e, "cannot delete a stray manifest version; the scrub will");
                }
                let (_, newest) = self.listed_versions().await?;
                if let Some(manifest) = self.fetch_manifest(newest).await? {
                    self.install(manifest);
                }
                self.catch_up().await?;
                Some("manifest write fenced: newer versions were written and collected")
            }
            CreateOutcome::Created => None,
        };
        if let Some(reason) = fenced {
            tracing::warn!(tp = %self.tp, version = next.version, %path, "{reason}");
            return Err(TieringError::Fenced {
                tp: self.tp.clone(),
                version: next.version,
                path: path.to_string(),
            });
        }
        tracing::debug!(tp = %self.tp, version = next.version, segments = next.segments.len(), "wrote remote manifest");
        let next = Arc::new(next);
        *self.manifest.write().expect("manifest lock") = next.clone();
        self.collect_old_versions(next.version).await;
        Ok(next)
    }

    /// Whether a manifest version is stored. A failed HEAD counts as "yes": the commit has
    /// succeeded, and failing it now would make the retry fence this handle against its own
    /// version; only the stray-version check is lost.
    async fn version_exists(&self, version: u64) -> bool {
        let path = self.layout.manifest(version);
        match self.shared.store.head(&path).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => {
                tracing::warn!(tp = %self.tp, %path, error = %e, "cannot check the previous manifest version; assuming it exists");
                true
            }
        }
    }

    /// Deletes versions below `newest − manifest_versions_kept`, oldest first, stopping at the
    /// first failure (logged: the commit itself has succeeded).
    async fn collect_old_versions(&self, newest: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let kept = self.shared.config.manifest_versions_kept;
        let Some(below) = newest.checked_sub(kept) else {
            return;
        };
        let from = self.gc_next.load(Relaxed);
        for version in (from..below).take(GC_DELETES_PER_COMMIT as usize) {
            let path = self.layout.manifest(version);
            match self.shared.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.gc_next.store(version + 1, Relaxed);
                }
                Err(e) => {
                    tracing::warn!(tp = %self.tp, %path, error = %e, "cannot delete an old manifest version; will retry");
                    return;
                }
            }
        }
    }

    /// Refuses work on a partition whose deletion has started.
    pub(crate) fn check_not_deleted(&self, manifest: &Manifest) -> Result<(), TieringError> {
        if manifest.deleted {
            return Err(TieringError::PartitionDeleted {
                tp: self.tp.clone(),
                path: self.layout.manifest(manifest.version).to_string(),
            });
        }
        Ok(())
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
