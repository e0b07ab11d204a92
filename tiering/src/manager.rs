//! [`RemoteLogManager`]: one per broker. Owns the store (behind the counting decorator, and for
//! the jobs behind the retrying one: `RetryingStore(CountingStore(store))`, so every attempt is
//! counted), the chunk cache, the upload limits, and the handles of the partitions it works on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use shale_cache::{CacheConfig, ChunkCache, RetryingStore};
use tokio::sync::Semaphore;

use crate::counters::{CountingStore, RequestCounts, StoreCounters, TopicBuckets};
use crate::error::TieringError;
use crate::indexes::SegmentIndexes;
use crate::layout;
use crate::metadata::{RemoteLogSegmentId, TopicIdPartition};
use crate::partition::RemotePartition;
use crate::rate::RateLimiter;
use crate::scrub::{self, ScrubReport};
use crate::RetryPolicy;

/// Settings of the remote log. Every bound has a default that suits a small broker.
#[derive(Debug, Clone)]
pub struct RemoteLogManagerConfig {
    /// Object-name prefix inside the store (e.g. `shale/cluster-a`); empty for the store's root.
    pub prefix: String,
    /// Segments uploading at once across all partitions. More uses more memory
    /// (`multipart_parts_in_flight_max × multipart_part_bytes` each) and bandwidth.
    pub upload_concurrency_max: usize,
    /// Upload bandwidth cap in bytes per second across all partitions; `None` = unlimited.
    /// Keeps a backlog of uploads from starving produce and replication traffic.
    pub upload_bytes_per_second_max: Option<u64>,
    /// Segments larger than this are uploaded in parts; smaller ones in one PUT (read into
    /// memory whole, so this also bounds memory per upload).
    pub multipart_threshold_bytes: u64,
    /// Bytes per part (S3 needs ≥ 5 MiB but the last). Larger parts mean fewer PUTs per GiB
    /// (16 MiB: 64 PUTs per GiB) but more memory in flight and more to resend on a failure.
    pub multipart_part_bytes: usize,
    /// Parts of one upload in flight at once.
    pub multipart_parts_in_flight_max: usize,
    /// Retries and request timeout for every store request of the jobs (copy, retention,
    /// archive, scrub, manifest reads). Reads for consumers, through the cache, are not
    /// retried beyond the store client's own: a consumer's fetch has its own deadline and the
    /// client fetches again.
    pub retry: RetryPolicy,
    /// Manifest versions kept behind the newest; each commit deletes older ones (and the scrub
    /// any it missed). A few let an operator see recent history and a loading reader race a
    /// commit safely; they are never read back automatically.
    pub manifest_versions_kept: u64,
    /// Decoded `.indexes` objects kept in memory (their bytes stay in the chunk cache too).
    pub indexes_cached_max: usize,
    /// Decompressed bytes a timestamp lookup may decode from one batch.
    pub decompressed_bytes_max: usize,
    /// When the store is a local directory, its root: the scrub then also removes the staging
    /// files (`name#N`) that an interrupted write leaves, which the store's LIST does not show.
    pub local_store_root: Option<PathBuf>,
    /// Parquet row groups of the archive close at about this encoded size: the unit engines
    /// skip or read in parallel, and the memory an archive pass holds per column set.
    pub archive_row_group_bytes: usize,
    /// ZSTD level of archive files (1–22): higher is smaller and slower to write; reading
    /// costs about the same.
    pub archive_zstd_level: i32,
}

impl Default for RemoteLogManagerConfig {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            upload_concurrency_max: 4,
            upload_bytes_per_second_max: None,
            multipart_threshold_bytes: 32 * 1024 * 1024,
            multipart_part_bytes: 16 * 1024 * 1024,
            multipart_parts_in_flight_max: 4,
            retry: RetryPolicy::default(),
            manifest_versions_kept: 3,
            indexes_cached_max: 1024,
            decompressed_bytes_max: 64 * 1024 * 1024,
            local_store_root: None,
            archive_row_group_bytes: 64 * 1024 * 1024,
            archive_zstd_level: 3,
        }
    }
}

/// What the partitions of one manager share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The store behind the counting and the retrying decorators: callers make plain requests.
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `store` as the operator configured it, for error messages: the counting decorator around
    /// it is ours, not theirs.
    pub(crate) store_name: String,
    pub(crate) cache: Arc<ChunkCache>,
    pub(crate) prefix: Path,
    pub(crate) config: RemoteLogManagerConfig,
    pub(crate) upload_slots: Semaphore,
    pub(crate) rate: RateLimiter,
    pub(crate) indexes: IndexCache,
}

/// Decoded `.indexes` objects by segment id, bounded in count. Eviction is crude (drop an
/// arbitrary half when full): the bytes stay in the chunk cache, so a miss costs a decode, not a
/// GET.
#[derive(Debug)]
pub(crate) struct IndexCache {
    max: usize,
    entries: Mutex<HashMap<RemoteLogSegmentId, Arc<SegmentIndexes>>>,
}

impl IndexCache {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, id: RemoteLogSegmentId) -> Option<Arc<SegmentIndexes>> {
        self.entries
            .lock()
            .expect("index cache lock")
            .get(&id)
            .cloned()
    }

    pub(crate) fn insert(&self, id: RemoteLogSegmentId, indexes: Arc<SegmentIndexes>) {
        let mut entries = self.entries.lock().expect("index cache lock");
        if entries.len() >= self.max {
            let drop: Vec<_> = entries.keys().take(self.max / 2 + 1).copied().collect();
            for key in drop {
                entries.remove(&key);
            }
        }
        entries.insert(id, indexes);
    }

    pub(crate) fn remove(&self, id: RemoteLogSegmentId) {
        self.entries.lock().expect("index cache lock").remove(&id);
    }
}

/// The remote log of one broker.
#[derive(Debug)]
pub struct RemoteLogManager {
    shared: Arc<Shared>,
    counters: StoreCounters,
    partitions: Mutex<HashMap<TopicIdPartition, Arc<RemotePartition>>>,
}

impl RemoteLogManager {
    /// Builds the manager over `store`, with a chunk cache configured by `cache_config`. Every
    /// request, the cache's included, goes through a counting decorator.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cache_config: CacheConfig,
        config: RemoteLogManagerConfig,
    ) -> Result<Self, TieringError> {
        if config.multipart_part_bytes == 0 {
            return Err(TieringError::InvalidConfig {
                reason: "multipart_part_bytes must be positive".to_string(),
            });
        }
        let prefix = Path::from(config.prefix.as_str());
        let counters = StoreCounters::default();
        let store_name = store.to_string();
        let counted: Arc<dyn ObjectStore> = Arc::new(CountingStore::with_buckets(
            store,
            TopicBuckets::new(&prefix, counters.clone()),
        ));
        let retrying: Arc<dyn ObjectStore> =
            Arc::new(RetryingStore::new(counted.clone(), config.retry.clone()));
        let cache =
            ChunkCache::new(counted, cache_config).map_err(|e| TieringError::InvalidConfig {
                reason: format!("the chunk cache cannot be built: {e}"),
            })?;
        let shared = Shared {
            store: retrying,
            store_name,
            cache: Arc::new(cache),
            prefix,
            upload_slots: Semaphore::new(config.upload_concurrency_max.max(1)),
            rate: RateLimiter::new(config.upload_bytes_per_second_max),
            indexes: IndexCache::new(config.indexes_cached_max),
            config,
        };
        Ok(Self {
            shared: Arc::new(shared),
            counters,
            partitions: Mutex::new(HashMap::new()),
        })
    }

    /// The handle of `tp`, loading its newest manifest the first time (a LIST of its
    /// `manifest/` directory, then one GET). Later calls return the same handle, with no request.
    pub async fn partition(
        &self,
        tp: &TopicIdPartition,
    ) -> Result<Arc<RemotePartition>, TieringError> {
        if let Some(handle) = self.partitions.lock().expect("partitions lock").get(tp) {
            return Ok(handle.clone());
        }
        let loaded = Arc::new(RemotePartition::load(self.shared.clone(), tp.clone()).await?);
        // Two callers (the copy job and the archive job) may both have missed and loaded: the
        // first handle in wins, so that every caller shares one handle, one in-memory manifest
        // and one write lock. A second handle would hold a stale manifest and fence itself.
        let mut partitions = self.partitions.lock().expect("partitions lock");
        Ok(partitions.entry(tp.clone()).or_insert(loaded).clone())
    }

    /// Loads `tp`'s newest manifest afresh and replaces any handle this manager had: what a
    /// broker does when it becomes the partition's leader (takeover).
    pub async fn open_partition(
        &self,
        tp: &TopicIdPartition,
    ) -> Result<Arc<RemotePartition>, TieringError> {
        let handle = Arc::new(RemotePartition::load(self.shared.clone(), tp.clone()).await?);
        self.partitions
            .lock()
            .expect("partitions lock")
            .insert(tp.clone(), handle.clone());
        Ok(handle)
    }

    /// Forgets the handle of `tp` (leadership moved away, or the partition was deleted).
    pub fn close_partition(&self, tp: &TopicIdPartition) {
        self.partitions.lock().expect("partitions lock").remove(tp);
    }

    /// Partitions that have objects in the store: what a broker restoring from an empty data
    /// dir can serve. Two levels of delimited LIST (topics, then each topic's partitions).
    pub async fn discover_partitions(&self) -> Result<Vec<TopicIdPartition>, TieringError> {
        let topics_dir = layout::topics_dir(&self.shared.prefix);
        let list_error = |path: &Path, source| TieringError::StoreUnusable {
            store: self.shared.store_name.clone(),
            what: "listing partitions",
            path: path.to_string(),
            source: Box::new(source),
        };
        let topics = self
            .shared
            .store
            .list_with_delimiter(Some(&topics_dir))
            .await
            .map_err(|e| list_error(&topics_dir, e))?;
        let mut found = Vec::new();
        for topic_dir in topics.common_prefixes {
            let partitions = self
                .shared
                .store
                .list_with_delimiter(Some(&topic_dir))
                .await
                .map_err(|e| list_error(&topic_dir, e))?;
            for partition_dir in partitions.common_prefixes {
                if let Some((tp, _)) = layout::split_object_path(&topics_dir, &partition_dir) {
                    found.push(tp);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes what no manifest needs: segment objects not named by their partition's newest
    /// manifest and older than `grace` (failed or fenced uploads), manifest versions beyond the
    /// newest `manifest_versions_kept`, partitions whose deletion was interrupted, and (for a
    /// local-directory store) staging files of interrupted writes. `grace` must exceed the
    /// longest upload, or an upload in progress could lose its objects before its manifest
    /// names them.
    pub async fn scrub(&self, grace: Duration) -> Result<ScrubReport, TieringError> {
        let report = scrub::scrub(&self.shared, grace).await?;
        // Handles of partitions the scrub finished deleting are stale now.
        let mut partitions = self.partitions.lock().expect("partitions lock");
        for tp in &report.partitions_deleted {
            partitions.remove(tp);
        }
        Ok(report)
    }

    /// Stores the topic's description (`topics/<topic>-<id>/topic.json`; the bytes are the
    /// caller's), replacing what was there: one PUT.
    pub async fn put_topic_metadata(
        &self,
        topic: &str,
        topic_id: uuid::Uuid,
        bytes: bytes::Bytes,
    ) -> Result<(), TieringError> {
        let path = layout::topic_metadata(&self.shared.prefix, topic, topic_id);
        self.shared
            .store
            .put(&path, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| self.topic_error(topic, topic_id, "write topic metadata", &path, e))
    }

    /// The topic's description as [`put_topic_metadata`](Self::put_topic_metadata) stored it;
    /// `None` if there is none (a topic tiered before it existed). One GET.
    pub async fn get_topic_metadata(
        &self,
        topic: &str,
        topic_id: uuid::Uuid,
    ) -> Result<Option<bytes::Bytes>, TieringError> {
        let path = layout::topic_metadata(&self.shared.prefix, topic, topic_id);
        let read = async { self.shared.store.get(&path).await?.bytes().await };
        match read.await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.topic_error(topic, topic_id, "read topic metadata", &path, e)),
        }
    }

    /// Removes the topic's description (after its partitions, when the topic is deleted).
    pub async fn delete_topic_metadata(
        &self,
        topic: &str,
        topic_id: uuid::Uuid,
    ) -> Result<(), TieringError> {
        let path = layout::topic_metadata(&self.shared.prefix, topic, topic_id);
        match self.shared.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.topic_error(topic, topic_id, "delete topic metadata", &path, e)),
        }
    }

    fn topic_error(
        &self,
        topic: &str,
        topic_id: uuid::Uuid,
        operation: &'static str,
        path: &Path,
        source: object_store::Error,
    ) -> TieringError {
        TieringError::Store {
            tp: TopicIdPartition::new(topic, topic_id, -1),
            operation,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Requests and bytes per topic since this manager started.
    pub fn counters(&self) -> BTreeMap<String, RequestCounts> {
        self.counters.snapshot()
    }

    /// Requests and bytes over all topics.
    pub fn counters_total(&self) -> RequestCounts {
        self.counters.total()
    }

    /// The chunk cache, for its statistics.
    pub fn cache(&self) -> &Arc<ChunkCache> {
        &self.shared.cache
    }
}
