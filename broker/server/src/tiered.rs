//! The broker side of tiered storage, as jobs over the broker: builds the object store and the
//! `RemoteLogManager` from the broker config, runs the per-partition job that copies sealed
//! segments below the high watermark and applies local and total retention, the Parquet
//! archive job, and restores topics from a bucket into an empty data directory. Reads and
//! offsets of the remote tier are the partition's own ([`crate::partition::Partition::remote`],
//! [`crate::broker::Broker::remote_partition`]).
//!
//! Local segments of a tiered topic are deleted only by [`tier_partition`], and only once they
//! are in the remote manifest; the plain retention pass skips tiered topics. So when the object
//! store is down, produce keeps working, local segments pile up, and the backlog is reported
//! loudly instead of un-uploaded data being deleted.
//!
//! What the bucket alone restores: every sealed segment, and the active segment once its oldest
//! record has waited `remote_log_max_upload_interval_ms` (the pass rolls it, however small);
//! and each topic's `topic.json` (partition count, configs), rewritten by the loop whenever
//! the topic's metadata changed. A broker started on an empty data dir reads both back. The
//! small segments such rolls upload are merged by the same pass
//! (`remote_log_segment_merge_enable`, see `shale_tiering::merge`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use shale_cache::CacheConfig;
use shale_formats::ids::Offset;
use shale_tiering::retention::RetentionPolicy;
use shale_tiering::store::{S3Config, StoreConfig};
use shale_tiering::{
    ArchivePolicy, MergePolicy, RemoteLogManager, RemoteLogManagerConfig, SegmentUpload,
    TieringError, TopicIdPartition,
};

use crate::broker::{now_ms, Broker};
use crate::config::BrokerConfig;
use crate::metadata::TopicMetadata;
use crate::partition::Partition;
use shale_log::{EpochEntry, SealedSegment};

/// What the object store configuration names, for startup.
pub fn store_config(config: &BrokerConfig) -> Result<(StoreConfig, String), String> {
    let url = config.remote_storage_url.trim();
    if url.is_empty() {
        return Ok((
            StoreConfig::Local {
                root: config.data_dir.join("remote"),
            },
            String::new(),
        ));
    }
    if url == "memory://" {
        return Ok((StoreConfig::Memory, String::new()));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "`{url}` names no bucket; expected s3://BUCKET[/PREFIX]"
            ));
        }
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        return Ok((
            StoreConfig::S3(S3Config {
                bucket: bucket.to_string(),
                endpoint: opt(&config.remote_storage_endpoint),
                region: opt(&config.remote_storage_region),
                path_style: config.remote_storage_path_style,
                access_key_id: None,
                secret_access_key: None,
            }),
            prefix.trim_matches('/').to_string(),
        ));
    }
    if let Some(dir) = url.strip_prefix("file://") {
        return Ok((StoreConfig::Local { root: dir.into() }, String::new()));
    }
    Err(format!(
        "`{url}` is not a supported object store URL; use s3://BUCKET[/PREFIX], file:///DIR, memory:// or leave it empty for <data_dir>/remote"
    ))
}

/// Whether an error was caused, somewhere down its chain, by a full filesystem.
fn caused_by_full_disk(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(crate::disk_space::is_no_space)
            // Some layers keep only the message of the I/O error.
            || c.to_string().contains("No space left on device")
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Opens and checks the object store and builds the manager; errors name the setting at fault.
pub async fn open_remote(config: &BrokerConfig) -> Result<Option<Arc<RemoteLogManager>>, String> {
    if !config.remote_storage_enable {
        return Ok(None);
    }
    let (store_config, prefix) =
        store_config(config).map_err(|e| format!("setting `remote_storage_url`: {e}"))?;
    let store = shale_tiering::store::open_store(&store_config).map_err(|e| {
        format!("the object store named by `remote_storage_url` (empty = <data_dir>/remote) cannot be opened: {e}")
    })?;
    let checked = shale_tiering::store::check_store(
        store.as_ref(),
        &object_store::path::Path::from(prefix.as_str()),
    )
    .await;
    match checked {
        Ok(()) => {}
        // A local-directory store on a full disk is configured right and will work again once
        // space is freed: the broker must start, or a full disk could not be repaired by it.
        Err(e) if matches!(store_config, StoreConfig::Local { .. }) && caused_by_full_disk(&e) => {
            tracing::warn!(error = %e, "the local-directory object store is on a full disk; starting anyway, uploads fail until space is freed");
        }
        Err(e) => {
            return Err(format!(
                "{e}; check the settings `remote_storage_url` and `remote_storage_endpoint` (--remote-storage-url, --remote-storage-endpoint) and the AWS_* credentials, or set `remote_storage_enable` to false"
            ))
        }
    }
    let cache = CacheConfig {
        chunk_bytes: config.remote_log_reader_chunk_bytes,
        capacity_bytes: config.remote_log_reader_cache_bytes,
        readahead_chunks: config.remote_log_reader_readahead_chunks as usize,
        ..CacheConfig::default()
    };
    let local_store_root = match &store_config {
        StoreConfig::Local { root } => Some(root.clone()),
        _ => None,
    };
    let manager = RemoteLogManagerConfig {
        prefix,
        upload_concurrency_max: config.remote_log_manager_copier_concurrency.max(1) as usize,
        upload_bytes_per_second_max: (config.remote_log_manager_copy_max_bytes_per_second > 0)
            .then_some(config.remote_log_manager_copy_max_bytes_per_second),
        decompressed_bytes_max: config.decompressed_batch_max_bytes,
        local_store_root,
        archive_row_group_bytes: config.archive_row_group_bytes as usize,
        archive_zstd_level: config.archive_zstd_level,
        ..RemoteLogManagerConfig::default()
    };
    let rlm = RemoteLogManager::new(store, cache, manager)
        .map_err(|e| format!("the remote log manager cannot start: {e}"))?;
    Ok(Some(Arc::new(rlm)))
}

/// The background loop: every `remote_log_manager_task_interval_ms`, [`tier_partition`] for
/// each tiered partition, then (every `remote_log_scrub_interval_ms`) the scrub.
pub async fn tiering_loop(broker: Arc<Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(rlm) = broker.remote().cloned() else {
        return;
    };
    let period =
        Duration::from_millis(broker.config.remote_log_manager_task_interval_ms.max(1) as u64);
    let scrub_every = Duration::from_millis(broker.config.remote_log_scrub_interval_ms as u64);
    let counters_every = Duration::from_secs(60);
    let mut last_scrub = tokio::time::Instant::now();
    let mut last_counters = tokio::time::Instant::now();
    let mut logged = BTreeMap::new();
    let mut stored_topics = BTreeMap::new();
    // The first pass runs at once: it opens every tiered partition's remote handle, so that
    // `log_start_offset` reports the remote start soon after a restart.
    let mut first = true;
    loop {
        let wait = if first { Duration::ZERO } else { period };
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        store_topic_metadata(&broker, &rlm, &mut stored_topics).await;
        for partition in broker.all_partitions() {
            if *shutdown.borrow() {
                return;
            }
            // Only the leader writes the partition's remote log (Kafka's RLM leader task).
            if !broker.is_tiered(&partition.tp.topic)
                || partition.leader_epoch().is_none()
                || partition
                    .remote_fenced
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                continue;
            }
            if let Err(e) = tier_partition(&broker, &partition).await {
                let backlog = partition.log().size_bytes();
                tracing::error!(
                    tp = %partition.tp,
                    error = %e,
                    local_bytes = backlog,
                    "tiering failed; local segments are kept until they are uploaded"
                );
            }
        }
        if last_counters.elapsed() >= counters_every {
            last_counters = tokio::time::Instant::now();
            log_counters(&rlm, &mut logged);
        }
        if last_scrub.elapsed() >= scrub_every {
            last_scrub = tokio::time::Instant::now();
            let grace =
                Duration::from_millis(broker.config.remote_log_scrub_grace_ms.max(0) as u64);
            match rlm.scrub(grace).await {
                Ok(report) => tracing::info!(?report, "remote scrub finished"),
                Err(e) => tracing::warn!(error = %e, "remote scrub failed"),
            }
        }
    }
}

/// Writes `topic.json` of each tiered topic whose metadata (partition count, configs) changed
/// since this broker last wrote it, so that the bucket alone restores the topic as it was. At
/// most one task interval behind an AlterConfigs; a failed write is retried next pass.
async fn store_topic_metadata(
    broker: &Broker,
    rlm: &shale_tiering::RemoteLogManager,
    stored: &mut BTreeMap<String, TopicMetadata>,
) {
    let meta = broker.metadata();
    stored.retain(|name, _| meta.topics.contains_key(name));
    for (name, topic) in &meta.topics {
        if !broker.is_tiered(name) || stored.get(name) == Some(topic) {
            continue;
        }
        let bytes = match serde_json::to_vec_pretty(topic) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(topic = %name, error = %e, "cannot encode topic metadata");
                continue;
            }
        };
        match rlm.put_topic_metadata(name, topic.id, bytes).await {
            Ok(()) => {
                tracing::debug!(topic = %name, "topic metadata stored in the object store");
                stored.insert(name.clone(), topic.clone());
            }
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "cannot store topic metadata in the object store; will retry");
            }
        }
    }
}

/// The archive loop: every `remote_log_manager_task_interval_ms`, for each tiered partition,
/// applies the log start offset to its archive files, then (if the topic's `archive.enable`)
/// writes Parquet files for what was uploaded since. At most `archive_concurrency` partitions
/// at once; the encoding runs on blocking threads, off the request path. A failure is logged
/// and retried on the next pass: the archive job is idempotent.
pub async fn archive_loop(broker: Arc<Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    if broker.remote().is_none() {
        return;
    }
    let period =
        Duration::from_millis(broker.config.remote_log_manager_task_interval_ms.max(1) as u64);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        broker.config.archive_concurrency.max(1) as usize,
    ));
    let mut backlog = false;
    loop {
        // Straight on while a partition has a backlog; otherwise wait for the next tick.
        if !backlog {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => return,
            }
        }
        backlog = false;
        let mut passes = tokio::task::JoinSet::new();
        for partition in broker.all_partitions() {
            if *shutdown.borrow() {
                break;
            }
            // Only the leader writes the partition's remote log (Kafka's RLM leader task).
            if !broker.is_tiered(&partition.tp.topic)
                || partition.leader_epoch().is_none()
                || partition
                    .remote_fenced
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let broker = broker.clone();
            passes.spawn(async move {
                let more = match archive_partition(&broker, &partition).await {
                    Ok(more) => more,
                    Err(e) => {
                        tracing::error!(tp = %partition.tp, error = %e, "archiving failed; will retry");
                        false
                    }
                };
                drop(permit);
                more
            });
        }
        // Shutdown drops the passes in progress; what they uploaded without recording is
        // removed by the next start's first pass.
        tokio::select! {
            _ = async {
                while let Some(more) = passes.join_next().await {
                    backlog |= more.unwrap_or(false);
                }
            } => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The archive policy of `topic` from its configs, or `None` when archiving is off for it.
pub fn archive_policy(broker: &Broker, topic: &str) -> Option<ArchivePolicy> {
    let config = broker.topic_config(topic)?;
    if !config.archive_enable {
        return None;
    }
    Some(ArchivePolicy {
        file_bytes: config.archive_file_bytes,
        max_lag_ms: config.archive_max_lag_ms,
        projection: config.archive_projection.clone(),
        max_files_per_pass: ARCHIVE_FILES_PER_PASS,
        now_ms: now_ms(),
    })
}

/// Files one archive pass writes at most (1 GiB of batches at the default `archive.file.bytes`),
/// so that a partition with a large backlog does not hold the other partitions back.
const ARCHIVE_FILES_PER_PASS: usize = 8;

/// One archive pass over one partition: retention of its archive files, then new files.
/// `Ok(true)` when the pass stopped at its file limit with more to archive.
pub async fn archive_partition(
    broker: &Broker,
    partition: &Arc<Partition>,
) -> Result<bool, TieringError> {
    let Some(remote) = broker.remote_partition(partition).await else {
        return Ok(false);
    };
    let kept = remote.enforce_archive_retention().await?;
    if kept.files_deleted + kept.files_rewritten > 0 {
        tracing::info!(tp = %partition.tp, deleted = kept.files_deleted, rewritten = kept.files_rewritten, "archive retention applied");
    }
    let Some(policy) = archive_policy(broker, &partition.tp.topic) else {
        return Ok(false);
    };
    let started = std::time::Instant::now();
    let outcome = remote.archive(&policy).await?;
    if outcome.files_written > 0 {
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            tp = %partition.tp,
            files = outcome.files_written,
            rows = outcome.rows_written,
            input_bytes = outcome.input_bytes,
            output_bytes = outcome.output_bytes,
            archived_end_offset = ?remote.archived_end_offset(),
            mib_per_second = outcome.input_bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9),
            more_pending = outcome.more_pending,
            "archive pass finished"
        );
    }
    Ok(outcome.more_pending)
}

/// Logs each topic's object-store request counters (cumulative since start) when they moved:
/// the operator's view of PUT/GET/LIST/DELETE costs until metrics exist.
fn log_counters(
    rlm: &RemoteLogManager,
    logged: &mut BTreeMap<String, shale_tiering::RequestCounts>,
) {
    for (topic, c) in rlm.counters() {
        if logged.get(&topic) == Some(&c) {
            continue;
        }
        tracing::info!(
            topic = %topic,
            put_requests = c.put_requests,
            put_bytes = c.put_bytes,
            get_requests = c.get_requests,
            get_bytes = c.get_bytes,
            list_requests = c.list_requests,
            delete_requests = c.delete_requests,
            "remote storage requests"
        );
        logged.insert(topic, c);
    }
}

/// The bounded RPO: seals the active segment once its oldest record has waited
/// `remote_log_max_upload_interval_ms`, so that this pass uploads it. Only when every record of
/// it is below the high watermark: an upload never includes uncommitted records.
async fn roll_if_waited_too_long(broker: &Broker, partition: &Arc<Partition>) {
    let limit = broker.config.remote_log_max_upload_interval_ms;
    let now = now_ms();
    let due = {
        let log = partition.log();
        log.active_segment_age_ms(now)
            .is_some_and(|age| age >= limit)
            && partition.high_watermark() >= log.log_end_offset()
    };
    if !due {
        return;
    }
    let local = Arc::clone(partition);
    match crate::blocking::run(move || local.log().roll(now)).await {
        Ok(()) => {
            tracing::debug!(tp = %partition.tp, "rolled the active segment for upload (remote_log_max_upload_interval_ms)")
        }
        Err(e) => {
            tracing::warn!(tp = %partition.tp, error = %e, "cannot roll the active segment for upload")
        }
    }
}

/// One pass over one partition: copy sealed segments below the high watermark (oldest first,
/// stopping at the first failure so the remote log never has a gap), then local retention
/// (only of copied segments), then total retention on the remote tier.
pub async fn tier_partition(
    broker: &Broker,
    partition: &Arc<Partition>,
) -> Result<(), TieringError> {
    let Some(remote) = broker.remote_partition(partition).await else {
        return Ok(());
    };
    roll_if_waited_too_long(broker, partition).await;
    let hw = partition.high_watermark();
    let copied_end = remote.copied_end_offset();
    let from = copied_end.map_or(Offset::MIN, |e| e + 1);
    let sealed = {
        let log = partition.log();
        log.sealed_segments(from, hw)
    };
    let sealed = match sealed {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(tp = %partition.tp, error = %e, "cannot list sealed segments");
            Vec::new()
        }
    };
    let mut pending: u64 = sealed.iter().map(|s| s.size_bytes).sum();
    for segment in sealed {
        if let Some(end) = remote.copied_end_offset() {
            if segment.base_offset != end + 1 {
                // A hole between the remote end and local data (e.g. tiering turned on after
                // local retention deleted segments): start the remote log afresh is not safe, so
                // report and stop.
                tracing::error!(tp = %partition.tp, remote_end = %end, local_base = %segment.base_offset, "local segments do not continue the remote log; not uploading");
                break;
            }
        }
        let upload = build_upload(partition, &segment).await;
        let upload = match upload {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(tp = %partition.tp, base_offset = %segment.base_offset, error = %e, "cannot read a sealed segment for upload");
                break;
            }
        };
        match remote.copy_segment(upload).await {
            Ok(meta) => {
                pending = pending.saturating_sub(segment.size_bytes);
                tracing::info!(tp = %partition.tp, base_offset = %meta.base_offset, end_offset = %meta.end_offset, bytes = segment.size_bytes, "segment copied to remote storage");
            }
            Err(e @ TieringError::Fenced { .. }) => {
                partition
                    .remote_fenced
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::error!(tp = %partition.tp, error = %e, "another writer owns this partition's remote log; uploads for it stop until restart");
                return Err(e);
            }
            Err(e) => {
                tracing::error!(tp = %partition.tp, base_offset = %segment.base_offset, backlog_bytes = pending, error = %e, "segment upload failed; will retry");
                return Err(e);
            }
        }
    }
    let Some(config) = broker.topic_config(&partition.tp.topic) else {
        return Ok(());
    };
    let (retention_ms, retention_bytes) = (config.log.retention_ms, config.log.retention_bytes);
    let (local_ms, local_bytes) = (config.local_retention_ms, config.local_retention_bytes);
    let now = now_ms();
    if let Some(end) = remote.copied_end_offset() {
        let local = Arc::clone(partition);
        let result = crate::blocking::run(move || {
            local
                .log()
                .delete_tiered_segments(end + 1, local_ms, local_bytes, now)
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(tp = %partition.tp, error = %e, "local retention of tiered segments failed");
        }
        partition.check_offsets("local retention of tiered segments");
    }
    // Kafka counts the whole log against retention.bytes: the remote segments plus every local
    // byte not in the store yet, the active segment included.
    let local_only_bytes = {
        let log = partition.log();
        let tiered_below = remote.copied_end_offset().map_or(Offset::MIN, |e| e + 1);
        let tiered_local: u64 = log
            .sealed_segments(Offset::MIN, tiered_below)
            .map(|s| s.iter().map(|s| s.size_bytes).sum())
            .unwrap_or(0);
        log.size_bytes().saturating_sub(tiered_local)
    };
    let outcome = remote
        .enforce_retention(RetentionPolicy {
            retention_ms,
            retention_bytes,
            now_ms: now,
            local_only_bytes,
        })
        .await?;
    if outcome.segments_deleted > 0 {
        tracing::info!(tp = %partition.tp, segments = outcome.segments_deleted, bytes = outcome.bytes_deleted, remote_log_start_offset = ?outcome.remote_log_start_offset, "remote retention deleted segments");
        partition.check_offsets("remote retention");
    }
    if broker.config.remote_log_segment_merge_enable {
        merge_small_segments(broker, partition, &remote, &config.log).await;
    }
    Ok(())
}

/// The merge job's share of a pass: at most one run of small remote segments merged, and the
/// replaced segments past their grace period deleted. A failure is logged and retried next pass;
/// it never holds up uploads or retention.
async fn merge_small_segments(
    broker: &Broker,
    partition: &Partition,
    remote: &shale_tiering::RemotePartition,
    log: &shale_log::LogConfig,
) {
    let policy = MergePolicy {
        target_bytes: log.segment_bytes,
        max_span_ms: log.segment_ms,
        fanout: broker.config.remote_log_segment_merge_fanout as usize,
        index_interval_bytes: log.index_interval_bytes,
        grace_ms: broker.config.remote_log_segment_merge_grace_ms,
        now_ms: now_ms(),
    };
    match remote.merge_small_segments(&policy).await {
        Ok(outcome) => {
            if outcome.merged.is_some() || outcome.replaced_deleted > 0 || outcome.abandoned {
                tracing::info!(
                    tp = %partition.tp,
                    merged_segments = outcome.segments_merged,
                    merged_into = ?outcome.merged.as_ref().map(|m| (m.base_offset, m.end_offset, m.size_bytes)),
                    replaced_deleted = outcome.replaced_deleted,
                    abandoned = outcome.abandoned,
                    get_requests = outcome.get_requests,
                    put_requests = outcome.put_requests,
                    delete_requests = outcome.delete_requests,
                    bytes_read = outcome.bytes_read,
                    "remote segment merge"
                );
            }
        }
        Err(e @ TieringError::Fenced { .. }) => {
            partition
                .remote_fenced
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(tp = %partition.tp, error = %e, "another writer owns this partition's remote log; uploads for it stop until restart");
        }
        Err(e) => {
            tracing::warn!(tp = %partition.tp, error = %e, "merging small remote segments failed; will retry");
        }
    }
}

/// Reads what the upload needs from the local segment's files (off the async threads).
async fn build_upload(
    partition: &Partition,
    segment: &SealedSegment,
) -> std::io::Result<SegmentUpload> {
    let epochs: Vec<EpochEntry> = {
        let log = partition.log();
        let entries = log.leader_epochs();
        let mut in_range = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let next_start = entries.get(i + 1).map_or(Offset::MAX, |n| n.start_offset);
            if next_start <= segment.base_offset || e.start_offset >= segment.next_offset {
                continue;
            }
            in_range.push(EpochEntry {
                epoch: e.epoch,
                start_offset: e.start_offset.max(segment.base_offset),
            });
        }
        in_range
    };
    let seg = segment.clone();
    let dir = partition.log().dir().to_path_buf();
    crate::blocking::run(move || {
        let snapshot = dir.join(format!("{:020}.snapshot", seg.next_offset));
        Ok(SegmentUpload {
            base_offset: seg.base_offset,
            end_offset: seg.next_offset - 1,
            max_timestamp: seg.max_timestamp,
            size_bytes: seg.size_bytes,
            log_path: seg.log_path.clone(),
            offset_index: Bytes::from(std::fs::read(&seg.index_path)?),
            time_index: Bytes::from(std::fs::read(&seg.time_index_path)?),
            transaction_index: None,
            leader_epochs: epochs,
            producer_snapshot: std::fs::read(&snapshot).ok().map(Bytes::from),
        })
    })
    .await
}

/// How long a restore waits for the other voters of a fresh cluster to register.
const RESTORE_WAIT_FOR_VOTERS: Duration = Duration::from_secs(15);

/// Restores topics from the bucket into a cluster that has none (a fresh cluster, or one whose
/// data dirs were lost): every topic found in the store is created again with its id, configs
/// and partition count, each partition's log starting right after its remote end on whichever
/// broker it is placed (the start offset rides in the partition's metadata record), so
/// consumers read the history from the remote tier and producers append after it.
///
/// Every node of a fresh cluster tries; a topic another node restored first is skipped. A
/// node first waits, briefly, for the other voters to register, so that the restored
/// partitions are spread over all of them rather than over the first broker up.
pub async fn restore(broker: &Arc<Broker>) -> Result<usize, String> {
    let Some(rlm) = broker.remote().cloned() else {
        return Ok(0);
    };
    if !broker.metadata().topics.is_empty() {
        return Ok(0);
    }
    let found = rlm
        .discover_partitions()
        .await
        .map_err(|e| format!("cannot list the object store for a restore: {e}"))?;
    if found.is_empty() {
        return Ok(0);
    }
    let voters: Vec<i32> = broker
        .config
        .quorum_voters()
        .map(|v| v.keys().copied().collect())
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + RESTORE_WAIT_FOR_VOTERS;
    loop {
        let live: Vec<i32> = broker.cluster_brokers().iter().map(|b| b.id).collect();
        let missing: Vec<i32> = voters
            .iter()
            .copied()
            .filter(|v| !live.contains(v))
            .collect();
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(?missing, "restoring from remote storage before every voter has registered: their share of the partitions goes to the brokers up now");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut topics: BTreeMap<(String, uuid::Uuid), i32> = BTreeMap::new();
    for tp in &found {
        let n = topics.entry((tp.topic.clone(), tp.topic_id)).or_insert(0);
        *n = (*n).max(tp.partition + 1);
    }
    let mut restored = 0;
    for ((name, id), found_partitions) in topics {
        if broker.metadata().topics.contains_key(&name) {
            continue; // restored through another node meanwhile
        }
        // The topic's own object (written by the tiering loop) has its configs, and its
        // partition count, which counts partitions that never uploaded anything too.
        let stored = rlm
            .get_topic_metadata(&name, id)
            .await
            .map_err(|e| format!("cannot read the topic metadata of {name}: {e}"))?;
        let stored: Option<TopicMetadata> = match stored {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                format!("the topic metadata of {name} in the object store is corrupt: {e}")
            })?),
            None => {
                tracing::warn!(topic = %name, "no topic metadata in the object store (written by older versions); restoring with broker-default configs");
                None
            }
        };
        let partitions = stored
            .as_ref()
            .map_or(found_partitions, |t| t.partitions.max(found_partitions));
        let configs = stored.map(|t| t.configs).unwrap_or_default();
        let mut ends = Vec::new();
        for p in 0..partitions {
            let tp = TopicIdPartition::new(name.clone(), id, p);
            let remote = rlm
                .open_partition(&tp)
                .await
                .map_err(|e| format!("cannot read the manifest of {name}-{p}: {e}"))?;
            ends.push(remote.copied_end_offset().map_or(Offset::ZERO, |e| e + 1));
        }
        match broker.restore_topic(&name, id, &ends, configs) {
            Ok(()) => {}
            // Another node's restore of it won (its refused proposal was computed again).
            Err(e) if e.error == ResponseError::TopicAlreadyExists => continue,
            Err(e) => return Err(format!("cannot restore topic {name}: {}", e.message)),
        }
        tracing::info!(topic = %name, partitions, "topic restored from remote storage");
        restored += 1;
    }
    Ok(restored)
}

/// Topic deletion in the remote tier, in the background: each partition's segments, then its
/// manifests (the tiering crate orders it so a crash leaves work the scrub finishes).
pub fn delete_remote_topic(broker: &Broker, topic: &str, topic_id: uuid::Uuid, partitions: i32) {
    let Some(rlm) = broker.remote().cloned() else {
        return;
    };
    let topic = topic.to_string();
    tokio::spawn(async move {
        for p in 0..partitions {
            let tp = TopicIdPartition::new(topic.clone(), topic_id, p);
            let result = match rlm.open_partition(&tp).await {
                Ok(remote) => remote.delete_all().await.map(|_| ()),
                Err(e) => Err(e),
            };
            rlm.close_partition(&tp);
            if let Err(e) = result {
                tracing::warn!(topic = %topic, partition = p, error = %e, "remote deletion of a deleted topic failed; the scrub will retry");
            }
        }
        if let Err(e) = rlm.delete_topic_metadata(&topic, topic_id).await {
            tracing::warn!(topic = %topic, error = %e, "cannot delete the topic metadata of a deleted topic");
        }
        tracing::info!(topic = %topic, "remote data of deleted topic removed");
    });
}
