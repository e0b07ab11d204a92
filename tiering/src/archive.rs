//! The Parquet archive job: turns a partition's uploaded segments into Parquet files any engine
//! can query, in the same store (layout in [`crate::layout`], schema in
//! [`shale_formats::archive`]).
//!
//! # One pass ([`RemotePartition::archive`])
//! ```text
//!   reader task ──8 MiB windows of .log objects──▶ encoder thread ──whole files──▶ uploader
//!   (async GETs, from the archived end offset)     (spawn_blocking:          (PUT or multipart,
//!                                                   decode, Arrow, ZSTD)      then the manifest)
//! ```
//! The encoder is CPU work and runs on a blocking thread, never on the runtime's workers, so a
//! busy archive cannot delay produce or fetch. A file is cut at the first batch boundary after
//! `archive.file.bytes` of record batches, so small segments merge and large ones split. Data
//! that does not fill a file waits until it was uploaded more than `archive.max.lag.ms` ago.
//! A file's bytes are held in memory until uploaded (about `archive.file.bytes` at most, less
//! after compression), so a failed upload is retried without encoding again; at most two files
//! are in memory per pass (one uploading, the next being encoded), plus the read-ahead windows
//! and the Parquet row group in progress. A pass writes at most `max_files_per_pass` files and
//! then says more is pending, so that partitions with a large backlog take turns.
//!
//! # Exactly one visible copy of every offset
//! - Files appear whole: on S3 a PUT or a completed multipart upload is atomic; a local
//!   directory gets the file under `_staging/archive/` first, then a rename.
//! - The manifest is the archive's record: a file counts once a manifest version lists it, and
//!   the next file starts after `archived_end_offset`. A crash between the upload and the
//!   manifest write leaves a visible file the manifest does not list; before a handle writes
//!   its first file (and after any failure) it LISTs the partition's archive directory and
//!   deletes such files, so the file that replaces it can never overlap it.
//! - Manifest writes are the fenced conditional creates of [`RemotePartition::commit`]: a stale
//!   leader cannot record files.
//!
//! # Retention ([`RemotePartition::enforce_archive_retention`])
//! Files wholly below the partition's log start offset are deleted (object first, then the
//! manifest). A DeleteRecords start offset inside a file rewrites that file under the same name
//! without the rows below it: an atomic replace, so readers see the old file or the new one.
//! Topic deletion deletes the files with the rest of the partition
//! ([`RemotePartition::delete_all`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use shale_formats::archive::{self as encoding, ArchiveOptions, ArchiveWriter, JsonProjection};
use shale_formats::batch::{
    BATCH_LENGTH_MIN, BATCH_LENGTH_OFFSET, LOG_OVERHEAD, RECORD_BATCH_OVERHEAD,
};
use shale_formats::ids::Offset;
use tokio::sync::mpsc;

use crate::error::TieringError;
use crate::layout;
use crate::manifest::{ArchiveFile, Manifest};
use crate::metadata::RemoteLogSegmentMetadata;
use crate::partition::{now_ms, RemotePartition};

/// Bytes of a `.log` object read per GET.
const READ_WINDOW_BYTES: u64 = 8 * 1024 * 1024;
/// Windows read ahead of the encoder.
const READ_AHEAD_WINDOWS: usize = 4;
/// Archive files held in memory at once by one pass (encoding or uploading).
const FILES_IN_MEMORY: usize = 2;
/// The encoder's output is collected in chunks of this size (and uploaded in parts of two).
const OUTPUT_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// How one partition is archived: its topic's `archive.*` configs, and the time.
#[derive(Debug, Clone)]
pub struct ArchivePolicy {
    /// `archive.file.bytes`: record-batch bytes per file.
    pub file_bytes: u64,
    /// `archive.max.lag.ms`: pending data uploaded longer ago than this is archived even if it
    /// does not fill a file.
    pub max_lag_ms: i64,
    /// `archive.json.fields`, parsed.
    pub projection: Option<Arc<JsonProjection>>,
    /// Files one pass writes at most, so that partitions with a large backlog take turns;
    /// [`ArchiveOutcome::more_pending`] says when a pass stopped there.
    pub max_files_per_pass: usize,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
}

/// What an archive pass or an archive retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveOutcome {
    pub files_written: usize,
    pub rows_written: u64,
    /// Record-batch bytes read into the files written.
    pub input_bytes: u64,
    /// Parquet bytes written.
    pub output_bytes: u64,
    pub files_deleted: usize,
    pub files_rewritten: usize,
    /// Visible files no manifest listed (a crash between upload and manifest write), removed.
    pub unlisted_files_deleted: usize,
    /// Offsets that retention or DeleteRecords removed before the archive reached them.
    pub offsets_skipped: u64,
    /// The pass stopped at `max_files_per_pass` with more to archive: run another soon.
    pub more_pending: bool,
}

enum Input {
    /// The next window comes from a new segment, uploaded at this time.
    Segment {
        created_at_ms: i64,
    },
    Data(Bytes),
}

struct EncodedFile {
    chunks: Vec<Bytes>,
    stats: encoding::FileStats,
}

impl EncodedFile {
    fn size(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }
}

/// What the encoder needs to know, copied into its thread.
struct EncodePlan {
    start: Offset,
    file_bytes: u64,
    /// Record-batch bytes between the start and the end of the last pending segment (an
    /// estimate: the start position comes from the sparse offset index).
    available: u64,
    /// Files may start in data uploaded at or before this time even if they won't fill.
    overdue_before_ms: i64,
    /// Files to write at most.
    max_files: usize,
    options: ArchiveOptions,
}

/// An in-memory `Write` sink collecting fixed-size chunks, so that a file is never copied into
/// one contiguous buffer.
#[derive(Default)]
struct ChunkSink {
    done: Vec<Bytes>,
    current: Vec<u8>,
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            if self.current.capacity() == 0 {
                self.current.reserve_exact(OUTPUT_CHUNK_BYTES);
            }
            let room = OUTPUT_CHUNK_BYTES - self.current.len();
            let take = room.min(buf.len());
            self.current.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.current.len() == OUTPUT_CHUNK_BYTES {
                self.done
                    .push(Bytes::from(std::mem::take(&mut self.current)));
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ChunkSink {
    fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(Bytes::from(self.current));
        }
        self.done
    }
}

/// Why the encoder stopped early.
#[derive(Debug)]
enum EncodeError {
    Archive(encoding::ArchiveError),
    /// The segment stream ended inside a batch, or a length was impossible.
    Framing(String),
    /// The uploader hung up (it failed; its error is the one to report).
    Closed,
}

impl RemotePartition {
    /// The archive files the manifest lists, oldest first.
    pub fn archive_files(&self) -> Vec<ArchiveFile> {
        self.manifest().archive_files.clone()
    }

    /// The last offset the archive covers (inclusive), if it has covered any.
    pub fn archived_end_offset(&self) -> Option<Offset> {
        self.manifest().archived_end_offset
    }

    /// The object path of an archive file of this partition.
    pub fn archive_path(&self, file: &ArchiveFile) -> Path {
        self.archive_dir()
            .join(layout::archive_file_name(file.first_offset, file.last_offset).as_str())
    }

    fn archive_dir(&self) -> Path {
        layout::archive_dir(&self.shared.prefix, &self.tp.topic, self.tp.partition)
    }

    fn archive_staging_path(&self, name: &str) -> Path {
        layout::archive_staging_root(&self.shared.prefix)
            .join(self.tp.topic.as_str())
            .join(format!("partition={}", self.tp.partition).as_str())
            .join(format!("{name}.tmp").as_str())
    }

    /// One archive pass: writes Parquet files for the uploaded data after the archived end
    /// offset, each recorded in the manifest as soon as it is uploaded. See the module docs.
    pub async fn archive(&self, policy: &ArchivePolicy) -> Result<ArchiveOutcome, TieringError> {
        let _pass = self.archive_lock.lock().await;
        let mut outcome = ArchiveOutcome::default();
        let result = async {
            if !self.archive_checked.load(Ordering::Acquire) {
                self.delete_unlisted_archive_files(&mut outcome).await?;
                self.archive_checked.store(true, Ordering::Release);
            }
            self.archive_pending(policy, &mut outcome).await
        }
        .await;
        if result.is_err() {
            // A file may be visible that no manifest lists: look before writing the next.
            self.archive_checked.store(false, Ordering::Release);
        }
        result.map(|()| outcome)
    }

    async fn archive_pending(
        &self,
        policy: &ArchivePolicy,
        outcome: &mut ArchiveOutcome,
    ) -> Result<(), TieringError> {
        let manifest = self.manifest();
        if manifest.version == 0 {
            return Ok(());
        }
        self.check_not_deleted(&manifest)?;
        let Some(floor) = manifest.remote_log_start_offset() else {
            return Ok(());
        };
        let next = manifest.archived_end_offset.map_or(floor, |end| end + 1);
        if next < floor {
            // Recorded, so that the warning is given once and the lag counts from here.
            self.update_archive(|m| {
                m.archived_end_offset = Some(
                    m.archived_end_offset
                        .map_or(floor - 1, |e| e.max(floor - 1)),
                )
            })
            .await?;
            outcome.offsets_skipped += (floor - next) as u64;
            tracing::warn!(tp = %self.tp, from = %next, to = %(floor - 1),
                "offsets expired before the archive reached them; they are not archived");
        }
        let start = next.max(floor);
        let pending: Vec<RemoteLogSegmentMetadata> = manifest
            .readable_segments()
            .filter(|s| s.end_offset >= start)
            .cloned()
            .collect();
        let Some(first) = pending.first() else {
            return Ok(());
        };
        let position = self.index_position(first, start).await?;
        let available =
            (first.size_bytes - position) + pending[1..].iter().map(|s| s.size_bytes).sum::<u64>();
        let overdue_before_ms = policy.now_ms.saturating_sub(policy.max_lag_ms);
        if available < policy.file_bytes && first.created_at_ms > overdue_before_ms {
            return Ok(());
        }
        let plan = EncodePlan {
            start,
            file_bytes: policy.file_bytes.max(1),
            available,
            overdue_before_ms,
            max_files: policy.max_files_per_pass.max(1),
            options: ArchiveOptions {
                projection: policy.projection.clone(),
                max_decompressed: self.shared.config.decompressed_bytes_max,
                row_group_bytes: self.shared.config.archive_row_group_bytes,
                zstd_level: self.shared.config.archive_zstd_level,
                metadata: self.file_metadata(),
            },
        };
        let (input_tx, input_rx) = mpsc::channel(READ_AHEAD_WINDOWS);
        let (output_tx, output_rx) = mpsc::channel(1);
        // At most two files in memory: one uploading while the next is encoded.
        let (slots_tx, slots_rx) = mpsc::channel(FILES_IN_MEMORY);
        for _ in 0..FILES_IN_MEMORY {
            slots_tx
                .try_send(())
                .expect("the channel has room for every token");
        }
        let encoder =
            tokio::task::spawn_blocking(move || encode(plan, input_rx, output_tx, slots_rx));
        let reader = self.read_segments(&pending, position, input_tx);
        let uploader = async {
            // Owned here, so that a failed uploader hangs up on the encoder (which then stops)
            // instead of leaving it waiting for room or a token.
            let (mut output_rx, slots_tx) = (output_rx, slots_tx);
            while let Some(file) = output_rx.recv().await {
                self.upload_and_record(file, outcome).await?;
                // The encoder may have finished and dropped its end.
                let _ = slots_tx.send(()).await;
            }
            Ok::<(), TieringError>(())
        };
        let (read, upload) = tokio::join!(reader, uploader);
        let encoded = encoder
            .await
            .map_err(|e| self.archive_failed(format!("the encoder panicked: {e}")))?;
        upload?;
        read?;
        match encoded {
            Ok(limited) => {
                outcome.more_pending = limited;
                Ok(())
            }
            Err(EncodeError::Archive(e)) => Err(self.archive_failed(e.to_string())),
            Err(EncodeError::Framing(reason)) => Err(self.archive_failed(reason)),
            Err(EncodeError::Closed) => {
                Err(self.archive_failed("the encoder's input or output closed early".to_string()))
            }
        }
    }

    fn archive_failed(&self, reason: String) -> TieringError {
        TieringError::Archive {
            tp: self.tp.clone(),
            reason,
        }
    }

    fn file_metadata(&self) -> Vec<(String, String)> {
        vec![
            ("shale.topic".to_string(), self.tp.topic.clone()),
            (
                "shale.topic_id".to_string(),
                self.tp.topic_id.hyphenated().to_string(),
            ),
            ("shale.partition".to_string(), self.tp.partition.to_string()),
        ]
    }

    /// Sends the pending segments' bytes from `position` in the first one, window by window.
    /// Stops quietly when the encoder has hung up (it has what it wants, or failed).
    async fn read_segments(
        &self,
        pending: &[RemoteLogSegmentMetadata],
        mut position: u64,
        tx: mpsc::Sender<Input>,
    ) -> Result<(), TieringError> {
        for segment in pending {
            let path = self.layout.log(segment.base_offset, segment.segment_id);
            let segment_start = Input::Segment {
                created_at_ms: segment.created_at_ms,
            };
            if tx.send(segment_start).await.is_err() {
                return Ok(());
            }
            while position < segment.size_bytes {
                let end = segment.size_bytes.min(position + READ_WINDOW_BYTES);
                let window = self
                    .shared
                    .store
                    .get_range(&path, position..end)
                    .await
                    .map_err(|e| self.store_error("GET", &path, e))?;
                if window.len() as u64 != end - position {
                    return Err(self.archive_failed(format!(
                        "{path}: a read of {} bytes at {position} returned {}",
                        end - position,
                        window.len()
                    )));
                }
                if tx.send(Input::Data(window)).await.is_err() {
                    return Ok(());
                }
                position = end;
            }
            position = 0;
        }
        Ok(())
    }

    /// Makes one encoded file visible under its final name and records it in the manifest.
    async fn upload_and_record(
        &self,
        file: EncodedFile,
        outcome: &mut ArchiveOutcome,
    ) -> Result<(), TieringError> {
        let stats = &file.stats;
        let (Some(first), Some(last)) = (stats.first_offset, stats.last_offset) else {
            return Ok(());
        };
        let record = ArchiveFile {
            first_offset: first,
            last_offset: last,
            rows: stats.rows,
            size_bytes: file.size(),
            input_bytes: stats.input_bytes,
            min_row_offset: stats.min_row_offset,
            min_timestamp: stats.min_timestamp,
            max_timestamp: stats.max_timestamp,
            created_at_ms: now_ms(),
        };
        let path = self.archive_path(&record);
        self.put_archive_object(&path, &file.chunks).await?;
        {
            let _write = self.manifest_write.lock().await;
            let current = self.manifest();
            self.check_not_deleted(&current)?;
            if current
                .archived_end_offset
                .is_some_and(|end| record.first_offset <= end)
            {
                return Err(self.archive_failed(format!(
                    "{path} starts at or below the archived end offset {:?}; another writer \
                     archived this range",
                    current.archived_end_offset
                )));
            }
            let mut next = (*current).clone();
            next.version += 1;
            next.archived_end_offset = Some(record.last_offset);
            next.archive_files.push(record.clone());
            self.commit(next).await?;
        }
        tracing::info!(tp = %self.tp, %path, rows = record.rows, bytes = record.size_bytes,
            input_bytes = record.input_bytes, "archived");
        outcome.files_written += 1;
        outcome.rows_written += record.rows;
        outcome.input_bytes += record.input_bytes;
        outcome.output_bytes += record.size_bytes;
        if stats.json_invalid > 0 {
            tracing::debug!(tp = %self.tp, %path, records = stats.json_invalid,
                "values that are not JSON objects have a null value_json");
        }
        Ok(())
    }

    /// Writes an archive object so that it appears whole under `path`, replacing any object
    /// there atomically.
    async fn put_archive_object(&self, path: &Path, chunks: &[Bytes]) -> Result<(), TieringError> {
        let local = self.shared.config.local_store_root.is_some();
        let target = if local {
            self.archive_staging_path(path.filename().unwrap_or("file"))
        } else {
            path.clone()
        };
        let size: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if local || size <= self.shared.config.multipart_threshold_bytes {
            self.put_object(&target, chunks.iter().cloned().collect())
                .await?;
        } else {
            self.shared.rate.acquire(size).await;
            self.put_multipart_from_memory(&target, chunks).await?;
        }
        if local {
            self.shared
                .store
                .rename(&target, path)
                .await
                .map_err(|e| self.store_error("rename", path, e))?;
        }
        Ok(())
    }

    /// A multipart upload of bytes held in memory, retried whole (object_store cannot resend
    /// a failed part).
    async fn put_multipart_from_memory(
        &self,
        path: &Path,
        chunks: &[Bytes],
    ) -> Result<(), TieringError> {
        let part_chunks = (self.shared.config.multipart_part_bytes / OUTPUT_CHUNK_BYTES).max(1);
        self.multipart_retried(path, || async {
            let mut upload = self.multipart_create(path).await?;
            let sent = async {
                for part in chunks.chunks(part_chunks) {
                    upload
                        .put_part(part.iter().cloned().collect())
                        .await
                        .map_err(|e| self.store_error("multipart part PUT", path, e))?;
                }
                self.multipart_complete(path, upload.as_mut()).await
            }
            .await;
            if sent.is_err() {
                self.multipart_abort(path, upload.as_mut()).await;
            }
            sent
        })
        .await
    }

    /// LISTs the partition's archive directory and deletes `.parquet` files the manifest does
    /// not list: a crash between an upload and its manifest write, or a deleted topic of the
    /// same name whose files outlived it.
    async fn delete_unlisted_archive_files(
        &self,
        outcome: &mut ArchiveOutcome,
    ) -> Result<(), TieringError> {
        let objects = self.list_all(&self.archive_dir()).await?;
        // This handle's manifest may be behind the store's: a manifest write whose answer was
        // lost (it landed), or another writer's. Compare with the newest version, read after
        // the LIST, or a listed file would be deleted.
        self.catch_up().await?;
        let manifest = self.manifest();
        for meta in objects {
            let Some(range) = meta
                .location
                .filename()
                .and_then(layout::parse_archive_file_name)
            else {
                continue;
            };
            let listed = manifest
                .archive_files
                .iter()
                .any(|f| (f.first_offset, f.last_offset) == range);
            if !listed {
                self.delete_object(&meta.location).await?;
                tracing::info!(tp = %self.tp, path = %meta.location,
                    "deleted an archive file no manifest lists (an interrupted archive pass)");
                outcome.unlisted_files_deleted += 1;
            }
        }
        Ok(())
    }

    /// Applies the partition's log start offset to its archive: deletes files wholly below it,
    /// and rewrites a file a DeleteRecords offset falls inside without the rows below it.
    pub async fn enforce_archive_retention(&self) -> Result<ArchiveOutcome, TieringError> {
        let _pass = self.archive_lock.lock().await;
        let mut outcome = ArchiveOutcome::default();
        let manifest = self.manifest();
        if manifest.version == 0 || manifest.deleted || manifest.archive_files.is_empty() {
            return Ok(outcome);
        }
        let Some(floor) = archive_floor(&manifest) else {
            return Ok(outcome);
        };
        let doomed: Vec<ArchiveFile> = manifest
            .archive_files
            .iter()
            .filter(|f| f.last_offset < floor)
            .cloned()
            .collect();
        if !doomed.is_empty() {
            for file in &doomed {
                self.delete_object(&self.archive_path(file)).await?;
            }
            self.update_archive_files(|files| {
                files.retain(|f| !doomed.contains(f));
            })
            .await?;
            tracing::info!(tp = %self.tp, files = doomed.len(), log_start_offset = %floor,
                "deleted archive files below the log start offset");
            outcome.files_deleted = doomed.len();
        }
        // Only an explicit DeleteRecords offset rewrites a file; retention deletes whole
        // segments, and a file straddling their end waits until it is wholly expired.
        if let Some(start) = manifest.log_start_offset.filter(|&s| s == floor) {
            let straddling = manifest.archive_files.iter().find(|f| {
                f.first_offset < start
                    && start <= f.last_offset
                    && f.min_row_offset.is_some_and(|m| m < start)
            });
            if let Some(file) = straddling.cloned() {
                self.rewrite_archive_file(&file, start).await?;
                outcome.files_rewritten += 1;
            }
        }
        Ok(outcome)
    }

    async fn rewrite_archive_file(
        &self,
        file: &ArchiveFile,
        start: Offset,
    ) -> Result<(), TieringError> {
        let path = self.archive_path(file);
        let Some(bytes) = self.get_if_exists(&path).await? else {
            return Err(self.archive_failed(format!(
                "{path} is listed in the manifest but missing from the store"
            )));
        };
        let options = ArchiveOptions {
            max_decompressed: self.shared.config.decompressed_bytes_max,
            row_group_bytes: self.shared.config.archive_row_group_bytes,
            zstd_level: self.shared.config.archive_zstd_level,
            ..ArchiveOptions::default()
        };
        let rewritten =
            tokio::task::spawn_blocking(move || rewrite_rows_from(bytes, start, options))
                .await
                .map_err(|e| self.archive_failed(format!("the rewrite panicked: {e}")))?
                .map_err(|e| self.archive_failed(format!("rewriting {path}: {e}")))?;
        self.put_archive_object(&path, &rewritten.chunks).await?;
        let size = rewritten.size();
        let stats = rewritten.stats;
        self.update_archive_files(|files| {
            if let Some(f) = files
                .iter_mut()
                .find(|f| f.first_offset == file.first_offset)
            {
                f.rows = stats.rows;
                f.size_bytes = size;
                f.min_row_offset = stats.min_row_offset;
                f.min_timestamp = stats.min_timestamp;
                f.max_timestamp = stats.max_timestamp;
                // Nothing below `start` is left; a file with no rows left still covers its
                // range until retention deletes it.
                f.min_row_offset = f.min_row_offset.or(Some(start.max(f.first_offset)));
            }
        })
        .await?;
        tracing::info!(tp = %self.tp, %path, rows = stats.rows, log_start_offset = %start,
            "rewrote an archive file without the rows below the log start offset");
        Ok(())
    }

    /// Writes a manifest version with `change` applied to its archive files.
    async fn update_archive_files(
        &self,
        change: impl FnOnce(&mut Vec<ArchiveFile>),
    ) -> Result<(), TieringError> {
        self.update_archive(|m| change(&mut m.archive_files)).await
    }

    /// Writes a manifest version with `change` applied (to its archive fields).
    async fn update_archive(&self, change: impl FnOnce(&mut Manifest)) -> Result<(), TieringError> {
        let _write = self.manifest_write.lock().await;
        let current = self.manifest();
        self.check_not_deleted(&current)?;
        let mut next = (*current).clone();
        next.version += 1;
        change(&mut next);
        self.commit(next).await?;
        Ok(())
    }

    /// Deletes the archive files of a deletion marker. A file modified after the marker was
    /// written belongs to a newer topic of the same name and is left alone.
    pub(crate) async fn delete_archive_files_of(
        &self,
        marker: &Manifest,
    ) -> Result<(), TieringError> {
        for file in &marker.archive_files {
            let path = self.archive_path(file);
            match self.shared.store.head(&path).await {
                Ok(meta) if meta.last_modified.timestamp_millis() > marker.written_at_ms => {
                    tracing::warn!(tp = %self.tp, %path,
                        "an archive file of a deleted topic was rewritten after the deletion; keeping it");
                }
                Ok(_) => self.delete_object(&path).await?,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.store_error("HEAD", &path, e)),
            }
        }
        Ok(())
    }
}

/// The offset below which no archive row may remain: the remote log start offset, or, when
/// retention has removed every remote segment, everything ever copied.
fn archive_floor(manifest: &Manifest) -> Option<Offset> {
    let lso = manifest.log_start_offset.unwrap_or(Offset::MIN);
    manifest
        .remote_log_start_offset()
        .or(manifest.end_offset.map(|end| end + 1))
        .map(|floor| floor.max(lso))
}

/// The file's rows from `start` on, in a new file with the same schema and metadata (`options`
/// gives the encoding settings; its projection and metadata come from the file).
fn rewrite_rows_from(
    file: Bytes,
    start: Offset,
    options: ArchiveOptions,
) -> Result<EncodedFile, encoding::ArchiveError> {
    let metadata = encoding::read_key_value_metadata(&file)?;
    let projection = metadata
        .iter()
        .find(|(k, _)| k == "shale.archive.json_fields")
        .map(|(_, v)| JsonProjection::parse(v).map_err(encoding::ArchiveError::Invalid))
        .transpose()?
        .flatten()
        .map(Arc::new);
    let kept: Vec<(String, String)> = metadata
        .into_iter()
        .filter(|(k, _)| k != "shale.archive.format" && k != "shale.archive.json_fields")
        .collect();
    let batches = encoding::read_file(file)?;
    let options = ArchiveOptions {
        projection,
        metadata: kept,
        ..options
    };
    let mut writer = ArchiveWriter::new(ChunkSink::default(), options)?;
    for batch in &batches {
        writer.append_rows(&encoding::rows_from(batch, start)?)?;
    }
    let (sink, stats) = writer.finish()?;
    Ok(EncodedFile {
        chunks: sink.into_chunks(),
        stats,
    })
}

/// The encoder thread: windows of segment bytes in, whole files out. Returns when the input
/// ends, when what is left would not fill a file that is not yet due, or at the file limit
/// (then `Ok(true)`: more is pending).
fn encode(
    plan: EncodePlan,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<EncodedFile>,
    file_slots: mpsc::Receiver<()>,
) -> Result<bool, EncodeError> {
    let mut state = Encoder {
        plan,
        file_slots,
        files_done: 0,
        limited: false,
        writer: None,
        file_started_in_due_data: false,
        segment_created_at_ms: i64::MIN,
        consumed: 0,
        output,
    };
    let mut carry = BytesMut::new();
    while let Some(message) = input.blocking_recv() {
        match message {
            Input::Segment { created_at_ms } => {
                if !carry.is_empty() {
                    return Err(EncodeError::Framing(format!(
                        "a segment ends inside a batch ({} bytes left over)",
                        carry.len()
                    )));
                }
                state.segment_created_at_ms = created_at_ms;
            }
            Input::Data(mut window) => {
                // Finish a batch that began in an earlier window: first its length field,
                // then the rest of it.
                while !carry.is_empty() && !window.is_empty() {
                    let target = batch_size(&carry)?.unwrap_or(LOG_OVERHEAD);
                    let take = (target - carry.len()).min(window.len());
                    carry.extend_from_slice(&window.split_to(take));
                    if batch_size(&carry)? == Some(carry.len()) {
                        let batch = carry.split().freeze();
                        if !state.batch(&batch)? {
                            return Ok(state.limited);
                        }
                    }
                }
                let mut at = 0;
                while at < window.len() {
                    match batch_size(&window[at..])? {
                        Some(size) if at + size <= window.len() => {
                            if !state.batch(&window.slice(at..at + size))? {
                                return Ok(state.limited);
                            }
                            at += size;
                        }
                        _ => break,
                    }
                }
                carry.extend_from_slice(&window[at..]);
            }
        }
    }
    if !carry.is_empty() {
        return Err(EncodeError::Framing(format!(
            "the last segment ends inside a batch ({} bytes left over)",
            carry.len()
        )));
    }
    state.finish_tail()
}

/// The total size of the batch starting at `buf[0]`, once its length field is in `buf`.
fn batch_size(buf: &[u8]) -> Result<Option<usize>, EncodeError> {
    let Some(field) = buf.get(BATCH_LENGTH_OFFSET..LOG_OVERHEAD) else {
        return Ok(None);
    };
    let length = i32::from_be_bytes(field.try_into().expect("a 4-byte slice"));
    if length < BATCH_LENGTH_MIN {
        return Err(EncodeError::Framing(format!(
            "a batch declares {length} bytes, fewer than a batch header"
        )));
    }
    Ok(Some(length as usize + LOG_OVERHEAD))
}

struct Encoder {
    plan: EncodePlan,
    /// One token per file that may be in memory (being encoded or uploaded); the uploader
    /// returns a token when it has uploaded a file.
    file_slots: mpsc::Receiver<()>,
    writer: Option<ArchiveWriter<ChunkSink>>,
    /// Whether the file in progress began in data old enough to be archived without filling.
    file_started_in_due_data: bool,
    /// Files handed to the uploader so far.
    files_done: usize,
    /// Stopped at `max_files` with data left.
    limited: bool,
    segment_created_at_ms: i64,
    /// Record-batch bytes seen so far (including batches below the start).
    consumed: u64,
    output: mpsc::Sender<EncodedFile>,
}

impl Encoder {
    /// Adds one whole batch; false when the pass should stop here.
    fn batch(&mut self, batch: &Bytes) -> Result<bool, EncodeError> {
        let remaining = self.plan.available.saturating_sub(self.consumed);
        self.consumed += batch.len() as u64;
        if batch.len() < RECORD_BATCH_OVERHEAD {
            return Err(EncodeError::Framing(format!(
                "a batch of {} bytes is shorter than a batch header",
                batch.len()
            )));
        }
        let last_offset = shale_formats::batch::RecordBatchHeader::parse(batch)
            .map_err(|e| EncodeError::Framing(e.to_string()))?
            .last_offset();
        if last_offset < self.plan.start {
            return Ok(true);
        }
        if self.writer.is_none() {
            if self.files_done >= self.plan.max_files {
                self.limited = true;
                return Ok(false);
            }
            let due = self.segment_created_at_ms <= self.plan.overdue_before_ms;
            if remaining < self.plan.file_bytes && !due {
                return Ok(false);
            }
            self.file_started_in_due_data = due;
            if self.file_slots.blocking_recv().is_none() {
                return Err(EncodeError::Closed);
            }
            self.writer = Some(
                ArchiveWriter::new(ChunkSink::default(), self.plan.options.clone())
                    .map_err(EncodeError::Archive)?,
            );
        }
        let writer = self.writer.as_mut().expect("a writer was just made");
        writer
            .append_batch(batch, self.plan.start)
            .map_err(EncodeError::Archive)?;
        if writer.stats().input_bytes >= self.plan.file_bytes {
            self.finish_file()?;
        }
        Ok(true)
    }

    fn finish_file(&mut self) -> Result<(), EncodeError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let (sink, stats) = writer.finish().map_err(EncodeError::Archive)?;
        if let Some(last) = stats.last_offset {
            self.plan.start = last + 1;
        }
        self.files_done += 1;
        self.output
            .blocking_send(EncodedFile {
                chunks: sink.into_chunks(),
                stats,
            })
            .map_err(|_| EncodeError::Closed)
    }

    /// At the end of the input: the partial file is written if it began in due data.
    fn finish_tail(mut self) -> Result<bool, EncodeError> {
        if self.writer.is_some() && self.file_started_in_due_data {
            self.finish_file()?;
        }
        Ok(self.limited)
    }
}
