//! The conformance suite: every test runs against every backend we support: `InMemory`,
//! `LocalFileSystem` in a temporary directory, and a real S3-protocol server when
//! `SHALE_TEST_S3_ENDPOINT` is set (`eval "$(scripts/s3-test-server.sh start)"` starts
//! SeaweedFS and sets it); without it the S3 variants print why they skip and pass.

mod archive;
mod conformance;
mod fixtures;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use shale_cache::testing::{FaultPlan, FaultyStore};
use shale_cache::CacheConfig;
use tempfile::TempDir;
use uuid::Uuid;

use crate::layout::{self, PartitionLayout};
use crate::manager::{RemoteLogManager, RemoteLogManagerConfig};
use crate::manifest;
use crate::metadata::TopicIdPartition;
use crate::store::{open_store, S3Config, StoreConfig};
use crate::RetryPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Local,
    S3,
}

/// One backend, with a prefix of its own (tests share the S3 bucket) and a directory for
/// local segment files.
pub struct Env {
    pub backend: Backend,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
    pub local_root: Option<PathBuf>,
    pub fixtures: TempDir,
    _store_dir: Option<TempDir>,
}

impl Env {
    pub fn new(backend: Backend, test: &str) -> Option<Env> {
        let prefix = format!("test-{test}-{}", Uuid::new_v4().simple());
        let fixtures = tempfile::tempdir().expect("tempdir");
        let (store, local_root, store_dir) = match backend {
            Backend::Memory => (open_store(&StoreConfig::Memory).unwrap(), None, None),
            Backend::Local => {
                let dir = tempfile::tempdir().expect("tempdir");
                let root = dir.path().join("objects");
                let store = open_store(&StoreConfig::Local { root: root.clone() }).unwrap();
                (store, Some(root), Some(dir))
            }
            Backend::S3 => {
                let Ok(endpoint) = std::env::var("SHALE_TEST_S3_ENDPOINT") else {
                    eprintln!(
                        "skipping the S3 backend of {test}: SHALE_TEST_S3_ENDPOINT is not set \
                         (run `eval \"$(scripts/s3-test-server.sh start)\"` to start SeaweedFS)"
                    );
                    return None;
                };
                let bucket =
                    std::env::var("SHALE_TEST_S3_BUCKET").unwrap_or_else(|_| "shale-test".into());
                let store = open_store(&StoreConfig::S3(S3Config {
                    bucket,
                    endpoint: Some(endpoint),
                    region: Some("us-east-1".into()),
                    path_style: true,
                    ..S3Config::default()
                }))
                .unwrap();
                (store, None, None)
            }
        };
        Some(Env {
            backend,
            store,
            prefix,
            local_root,
            fixtures,
            _store_dir: store_dir,
        })
    }

    /// Quick retries, so fault tests finish fast.
    pub fn config(&self) -> RemoteLogManagerConfig {
        RemoteLogManagerConfig {
            prefix: self.prefix.clone(),
            local_store_root: self.local_root.clone(),
            retry: RetryPolicy {
                attempts_max: 6,
                backoff_initial: Duration::from_millis(5),
                backoff_max: Duration::from_millis(50),
                request_timeout: Duration::from_secs(20),
            },
            ..RemoteLogManagerConfig::default()
        }
    }

    /// Small chunks, so reads cross chunk boundaries often.
    pub fn cache_config() -> CacheConfig {
        CacheConfig {
            chunk_bytes: 16 * 1024,
            capacity_bytes: 64 * 1024 * 1024,
            ..CacheConfig::default()
        }
    }

    pub fn manager(&self) -> RemoteLogManager {
        self.manager_over(self.store.clone(), self.config())
    }

    pub fn manager_over(
        &self,
        store: Arc<dyn ObjectStore>,
        config: RemoteLogManagerConfig,
    ) -> RemoteLogManager {
        RemoteLogManager::new(store, Self::cache_config(), config).expect("manager")
    }

    pub fn tp(&self, partition: i32) -> TopicIdPartition {
        TopicIdPartition::new("orders-v1", Uuid::from_u128(0x5ca1e), partition)
    }

    pub async fn objects_under(&self, dir: &Path) -> Vec<ObjectMeta> {
        self.store
            .list(Some(dir))
            .try_collect()
            .await
            .expect("list")
    }

    /// Asserts that every object of `tp` is needed: each segment object is named by the newest
    /// manifest, each manifest version decodes and keeps the invariants (no overlap, no gap).
    /// Returns the bytes of the newest manifest's live segment objects.
    pub async fn assert_no_orphans(&self, tp: &TopicIdPartition) {
        let layout = PartitionLayout::new(&Path::from(self.prefix.as_str()), tp);
        let objects = self.objects_under(layout.dir()).await;
        let mut versions: Vec<u64> = objects
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()
                    .and_then(layout::parse_manifest_version)
            })
            .collect();
        versions.sort_unstable();
        let mut newest = None;
        for &version in &versions {
            let bytes =
                object_store::ObjectStoreExt::get(self.store.as_ref(), &layout.manifest(version))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
            newest = Some(
                manifest::decode(&bytes, tp, version).expect("every manifest version is valid"),
            );
        }
        let named: std::collections::HashSet<_> = newest
            .iter()
            .flat_map(|m| {
                let listed = m.segments.iter().map(|s| s.segment_id);
                listed.chain(m.replaced.iter().map(|r| r.segment_id))
            })
            .collect();
        let mut orphan_bytes = 0;
        let mut orphans = Vec::new();
        for object in &objects {
            let Some(name) = object.location.filename() else {
                continue;
            };
            if let Some((_, id, _)) = layout::parse_segment_name(name) {
                if !named.contains(&id) {
                    orphan_bytes += object.size;
                    orphans.push(object.location.to_string());
                }
            }
        }
        assert_eq!(
            orphan_bytes, 0,
            "{:?}: orphaned objects {orphans:?}",
            self.backend
        );
    }
}

/// Runs each named suite function against every backend, as `memory::name`, `local::name` and
/// `s3::name`.
macro_rules! conformance_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::new(super::Backend::Memory, stringify!($name)).unwrap();
                    super::conformance::$name(env).await;
                }
            )*
        }
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::new(super::Backend::Local, stringify!($name)).unwrap();
                    super::conformance::$name(env).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = super::Env::new(super::Backend::S3, stringify!($name)) {
                        super::conformance::$name(env).await;
                    }
                }
            )*
        }
    };
}

conformance_suite!(
    store_check_passes,
    copy_and_read_every_offset,
    offset_for_timestamp_matches_a_scan,
    gaps_overlaps_and_bad_segments_are_refused,
    racing_writers_are_fenced,
    conditional_create_is_atomic,
    crash_during_copy_then_retry_and_scrub,
    crash_during_delete_then_retry_and_scrub,
    crash_during_partition_delete,
    retention_by_time_size_and_delete_records,
    flaky_store_copy_retries_and_loses_nothing,
    multipart_upload_and_requests_per_gib,
    scrub_trims_manifests_and_staging_files,
    commits_collect_old_manifest_versions,
    a_writer_behind_collected_versions_is_fenced,
    merge_keeps_every_read_and_deletes_replaced_after_grace,
    crash_during_merge_then_retry_and_scrub,
    merge_racing_retention_or_another_writer_changes_nothing,
    multipart_merge_of_many_small_segments,
    discover_partitions_after_restart,
    corruption_is_reported_not_skipped,
);

/// A store whose every request fails with probability `fail_per_mille`/1000 or stalls for
/// `stall` with probability `stall_per_mille`/1000, drawn from `seed` (the cache crate's
/// [`FaultyStore`], the one fault-injecting store of the workspace).
pub(crate) fn flaky(
    inner: Arc<dyn ObjectStore>,
    seed: u64,
    fail_per_mille: u64,
    stall_per_mille: u64,
    stall: Duration,
) -> FaultyStore {
    FaultyStore::new(
        inner,
        FaultPlan {
            seed,
            failure_rate: fail_per_mille as f64 / 1000.0,
            stall_rate: stall_per_mille as f64 / 1000.0,
            stall,
            kinds: Vec::new(),
        },
    )
}
