//! The scrub: finds and deletes what no manifest needs. It is the only code that LISTs segment
//! objects, and it runs as a background job, never on a read or write path.
//!
//! Per partition it reads the newest manifest, then deletes
//! - segment objects the newest manifest does not name (as a segment or as replaced by a
//!   merge) and that are older than the grace
//!   period: uploads that crashed before their manifest write, or were fenced. Before deleting
//!   it checks for a newer manifest version once more, so a copy that committed meanwhile keeps
//!   its objects;
//! - manifest versions older than the newest `manifest_versions_kept`;
//! - everything, if the newest manifest is a deletion marker (an interrupted `delete_all`).
//!
//! A partition whose newest manifest is corrupt is skipped and reported: deleting on the word
//! of a manifest that can't be read could delete live data.
//!
//! Stale multipart uploads: object_store has no call to list them, so on S3 they are left to a
//! bucket lifecycle rule (`AbortIncompleteMultipartUpload`); failed uploads are aborted when
//! they fail. For a local-directory store the equivalent, staging files `name#N` of interrupted
//! writes (which LIST does not show), are removed when `local_store_root` is configured.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use shale_formats::ids::Offset;

use crate::error::TieringError;
use crate::layout;
use crate::manager::Shared;
use crate::metadata::TopicIdPartition;
use crate::partition::{now_ms, RemotePartition};

/// What a scrub found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    pub partitions_scanned: usize,
    pub objects_listed: u64,
    /// Segment objects no manifest names, deleted.
    pub orphans_deleted: u64,
    pub orphan_bytes_deleted: u64,
    /// Segment objects no manifest names but younger than the grace period: kept for now.
    pub young_orphans_kept: u64,
    pub manifests_deleted: u64,
    /// Partitions whose interrupted deletion the scrub finished.
    pub partitions_deleted: Vec<TopicIdPartition>,
    /// Partitions left alone, and why (a corrupt manifest, an unreachable object).
    pub partitions_skipped: Vec<(TopicIdPartition, String)>,
    /// Objects under a partition with names that are neither manifests nor segments.
    pub unknown_objects: u64,
    /// Local-directory staging files of interrupted writes, removed.
    pub staged_files_removed: u64,
    pub staged_bytes_removed: u64,
}

pub(crate) async fn scrub(
    shared: &Arc<Shared>,
    grace: Duration,
) -> Result<ScrubReport, TieringError> {
    let topics_dir = layout::topics_dir(&shared.prefix);
    let objects = list(shared, &topics_dir, "listing objects for the scrub").await?;
    let mut report = ScrubReport {
        objects_listed: objects.len() as u64,
        ..ScrubReport::default()
    };
    let mut by_partition: BTreeMap<TopicIdPartition, Vec<(Vec<String>, ObjectMeta)>> =
        BTreeMap::new();
    for meta in objects {
        match layout::split_object_path(&topics_dir, &meta.location) {
            Some((tp, rest)) => by_partition.entry(tp).or_default().push((rest, meta)),
            None => report.unknown_objects += 1,
        }
    }
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    // The live partition handle of each (topic name, partition), whose manifest says which
    // archive files are its own; `None` for one that could not be read (its archive is left
    // alone).
    let mut archived: HashMap<(String, i32), Option<RemotePartition>> = HashMap::new();
    for (tp, objects) in by_partition {
        report.partitions_scanned += 1;
        let partition = RemotePartition::unloaded(shared.clone(), tp.clone());
        let key = (tp.topic.clone(), tp.partition);
        match scrub_partition(&partition, objects, grace_ms, &mut report).await {
            Ok(()) => {
                if !partition.manifest().deleted && !matches!(archived.get(&key), Some(None)) {
                    archived.insert(key, Some(partition));
                }
            }
            Err(error) => {
                tracing::warn!(%tp, error = %error, "scrub skipped a partition");
                report.partitions_skipped.push((tp, error.to_string()));
                archived.insert(key, None);
            }
        }
    }
    scrub_archive(shared, &archived, grace_ms, &mut report).await?;
    if let Some(root) = &shared.config.local_store_root {
        let dir = prefix_dir(root, &topics_dir);
        let (files, bytes) = tokio::task::spawn_blocking(move || remove_staged_files(&dir, grace))
            .await
            .map_err(|e| TieringError::InvalidConfig {
                reason: format!("the staging-file sweep panicked: {e}"),
            })?;
        report.staged_files_removed = files;
        report.staged_bytes_removed = bytes;
    }
    tracing::info!(?report, "scrub finished");
    Ok(report)
}

/// Every object under `dir`; a failure means the scrub cannot run at all.
async fn list(
    shared: &Shared,
    dir: &Path,
    what: &'static str,
) -> Result<Vec<ObjectMeta>, TieringError> {
    shared
        .store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(|source| TieringError::StoreUnusable {
            store: shared.store_name.clone(),
            what,
            path: dir.to_string(),
            source: Box::new(source),
        })
}

/// Deletes archive objects older than the grace period that no live manifest lists: files of
/// deleted topics, files a crash left unrecorded, and staging files of interrupted writes.
async fn scrub_archive(
    shared: &Arc<Shared>,
    archived: &HashMap<(String, i32), Option<RemotePartition>>,
    grace_ms: i64,
    report: &mut ScrubReport,
) -> Result<(), TieringError> {
    let root = layout::archive_root(&shared.prefix);
    let staging = layout::archive_staging_root(&shared.prefix);
    let mut objects = Vec::new();
    for dir in [&root, &staging] {
        objects.extend(list(shared, dir, "listing the archive for the scrub").await?);
    }
    report.objects_listed += objects.len() as u64;
    let now = now_ms();
    for meta in objects {
        if now - meta.last_modified.timestamp_millis() < grace_ms {
            continue;
        }
        let orphan = if meta.location.prefix_matches(&staging) {
            true
        } else {
            let parts: Vec<String> = meta
                .location
                .prefix_match(&root)
                .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
                .unwrap_or_default();
            match parts.as_slice() {
                [topic, dir, name] => {
                    let partition = dir
                        .strip_prefix("partition=")
                        .and_then(|p| p.parse::<i32>().ok());
                    match (partition, layout::parse_archive_file_name(name)) {
                        (Some(p), Some(range)) => match archived.get(&(topic.clone(), p)) {
                            Some(None) => false,
                            Some(Some(partition)) => {
                                // An archive pass may have recorded it since the manifest was
                                // read: look again before deleting.
                                !lists(partition, range)
                                    && partition.catch_up().await.is_ok()
                                    && !lists(partition, range)
                            }
                            None => true,
                        },
                        _ => {
                            report.unknown_objects += 1;
                            false
                        }
                    }
                }
                _ => {
                    report.unknown_objects += 1;
                    false
                }
            }
        };
        if orphan {
            match shared.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(path = %meta.location, error = %e, "scrub could not delete an orphaned archive object");
                    continue;
                }
            }
            tracing::info!(path = %meta.location, bytes = meta.size, "scrub deleted an orphaned archive object");
            report.orphans_deleted += 1;
            report.orphan_bytes_deleted += meta.size;
        }
    }
    Ok(())
}

fn lists(partition: &RemotePartition, range: (Offset, Offset)) -> bool {
    partition
        .manifest()
        .archive_files
        .iter()
        .any(|f| (f.first_offset, f.last_offset) == range)
}

async fn scrub_partition(
    partition: &RemotePartition,
    objects: Vec<(Vec<String>, ObjectMeta)>,
    grace_ms: i64,
    report: &mut ScrubReport,
) -> Result<(), TieringError> {
    let mut versions = Vec::new();
    let mut segments = Vec::new();
    for (rest, meta) in objects {
        match rest.as_slice() {
            [dir, name] if dir == "manifest" => match layout::parse_manifest_version(name) {
                Some(version) => versions.push(version),
                None => report.unknown_objects += 1,
            },
            [name] => match layout::parse_segment_name(name) {
                Some((_, id, kind)) => segments.push((id, kind, meta)),
                None => report.unknown_objects += 1,
            },
            _ => report.unknown_objects += 1,
        }
    }
    versions.sort_unstable();
    if let Some(&newest) = versions.last() {
        if let Some(manifest) = partition.fetch_manifest(newest).await? {
            partition.install(manifest);
        }
        partition.catch_up().await?;
    }
    if partition.manifest().deleted {
        partition.delete_all().await?;
        report.partitions_deleted.push(partition.tp().clone());
        return Ok(());
    }
    let now = now_ms();
    let referenced = |p: &RemotePartition| -> HashSet<_> {
        let manifest = p.manifest();
        let listed = manifest.segments.iter().map(|s| s.segment_id);
        listed
            .chain(manifest.replaced.iter().map(|r| r.segment_id))
            .collect()
    };
    let mut named = referenced(partition);
    let mut candidates = Vec::new();
    for (id, kind, meta) in segments {
        if named.contains(&id) {
            continue;
        }
        if now - meta.last_modified.timestamp_millis() >= grace_ms {
            candidates.push((id, kind, meta));
        } else {
            report.young_orphans_kept += 1;
        }
    }
    if !candidates.is_empty() {
        // A copy may have committed since the manifest was read.
        partition.catch_up().await?;
        named = referenced(partition);
        for (id, kind, meta) in candidates {
            if named.contains(&id) {
                continue;
            }
            partition.delete_object(&meta.location).await?;
            partition.shared.cache.invalidate(&meta.location);
            tracing::info!(tp = %partition.tp(), path = %meta.location, bytes = meta.size,
                kind = ?kind, "scrub deleted an orphaned object");
            report.orphans_deleted += 1;
            report.orphan_bytes_deleted += meta.size;
        }
    }
    let current = partition.manifest().version;
    let kept = partition.shared.config.manifest_versions_kept;
    for version in versions {
        if version + kept < current {
            partition
                .delete_object(&partition.layout.manifest(version))
                .await?;
            report.manifests_deleted += 1;
        }
    }
    Ok(())
}

/// The local directory that holds `topics_dir`.
fn prefix_dir(root: &FsPath, topics_dir: &Path) -> PathBuf {
    let mut dir = root.to_path_buf();
    for part in topics_dir.parts() {
        dir.push(part.as_ref());
    }
    dir
}

/// Removes files named `name#<digits>` (object_store's LocalFileSystem staging files) older
/// than `grace` below `dir`; returns how many and their bytes.
fn remove_staged_files(dir: &FsPath, grace: Duration) -> (u64, u64) {
    let mut removed = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let staged = name
                .rsplit_once('#')
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let old = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age >= grace);
            if staged && old && std::fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), bytes = meta.len(), "scrub removed a staging file");
                removed.0 += 1;
                removed.1 += meta.len();
            }
        }
    }
    removed
}
