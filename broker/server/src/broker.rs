//! The broker's shared state: configuration, cluster metadata, the partitions hosted here and
//! the producer-id allocator; plus the operations that change them (topic create/delete/grow)
//! and the background job that applies retention and time-based flushes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kafka_protocol::ResponseError;
use shale_formats::ids::{LeaderEpoch, Offset, ProducerId};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::metadata::{validate_topic_name, ClusterMetadata, MetadataError, TopicMetadata};
use crate::partition::{Partition, TopicPartition};
use crate::topic_config;
use shale_log::Log;
use shale_metadata::MetadataRecord;

/// Errors opening the broker's state at startup.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the stored configs of topic `{topic}` are invalid: {reason}")]
    TopicConfig { topic: String, reason: String },
    #[error("cannot open the log of {tp}: {source}")]
    Log {
        tp: TopicPartition,
        source: shale_log::LogError,
    },
    #[error("cannot start the fsync thread: {0}")]
    SyncThread(std::io::Error),
    #[error("cannot read the free space of data directory {path}: {source}")]
    DiskSpace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the metadata log cannot start: {0}")]
    MetadataLog(String),
}

pub use crate::api_error::{now_ms, ApiError};

/// A broker as clients are told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// Missed its heartbeats or shut down: registered, but led partitions read offline.
    pub fenced: bool,
}

/// Where a partition is, as the metadata log has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// The leader, or -1 while its broker is fenced (or gone): Kafka's offline partition.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Replicas on brokers that are fenced or not registered.
    pub offline: Vec<i32>,
}

/// One version of the cluster metadata and what is derived from it, published together.
struct Published {
    meta: Arc<ClusterMetadata>,
    /// Every topic's effective config, typed (see [`topic_config::TopicConfig`]).
    topic_configs: Arc<HashMap<String, Arc<topic_config::TopicConfig>>>,
}

/// Every topic's config in `meta`, resolved; the error is `(topic, reason)`.
fn resolve_topic_configs(
    broker: &BrokerConfig,
    meta: &ClusterMetadata,
) -> Result<HashMap<String, Arc<topic_config::TopicConfig>>, (String, String)> {
    let defaults = topic_config::Defaults {
        broker,
        dynamic: &meta.dynamic_broker_configs,
    };
    meta.topics
        .iter()
        .map(|(name, topic)| {
            topic_config::TopicConfig::resolve(defaults, &topic.configs)
                .map(|resolved| (name.clone(), Arc::new(resolved)))
                .map_err(|reason| (name.clone(), reason))
        })
        .collect()
}

pub struct Broker {
    pub config: BrokerConfig,
    /// Host and port clients are told to connect to.
    pub advertised: (String, u16),
    /// Readers take a cheap `Arc` snapshot; writers hold `meta_write` and swap in a new one,
    /// with the typed configs of its topics resolved from it.
    meta: RwLock<Published>,
    meta_write: Mutex<()>,
    /// Serializes [`Broker::sync_with_metadata`] passes.
    sync: Mutex<()>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// `(next id to hand out, end of the reserved block)`.
    producer_ids: Mutex<(i64, i64)>,
    /// The group coordinator (consumer groups and committed offsets).
    pub groups: GroupCoordinator,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: crate::fetch_session::FetchSessionCache,
    /// The remote tier, when tiered storage is on (set once at startup).
    remote: std::sync::OnceLock<Arc<shale_tiering::RemoteLogManager>>,
    /// fsyncs for acks=all produces (topics with `write.caching=false`).
    pub group_commit: crate::group_commit::GroupCommit,
    /// Free space of the data dir: produce refused while low; the reserve for metadata writes.
    pub disk: crate::disk_space::DiskSpace,
    /// The metadata log: every change of `meta` is proposed to it and read back from its image.
    metadata_log: crate::metadata_log::MetadataLog,
    /// Followers' fetchers, one per leader this broker follows partitions of.
    fetchers: crate::replica_fetcher::ReplicaFetchers,
}

fn partition_dir(data_dir: &Path, tp: &TopicPartition) -> PathBuf {
    data_dir.join(format!("{}-{}", tp.topic, tp.partition))
}

impl Broker {
    /// Loads the metadata and opens (recovering) every partition's log.
    pub fn open(
        config: BrokerConfig,
        advertised: (String, u16),
    ) -> Result<Arc<Self>, StartupError> {
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartupError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let disk = crate::disk_space::DiskSpace::open(&data_dir, config.storage_min_free_bytes)
            .map_err(|source| StartupError::DiskSpace {
                path: data_dir.clone(),
                source,
            })?;
        // The metadata log is the record of topics, configs and producer ids; a data dir from
        // before it is adopted (its metadata file becomes the first entry), and a new one
        // starts empty with a fresh cluster id.
        let metadata_log = crate::metadata_log::MetadataLog::open(
            &data_dir,
            config.node_id.get(),
            crate::metadata_log::Quorum {
                listen: (!config.controller_listen.is_empty())
                    .then(|| config.controller_listen.clone()),
                voters: config
                    .quorum_voters()
                    .map_err(|e| StartupError::MetadataLog(e.to_string()))?,
            },
            crate::metadata_log::Liveness {
                session_timeout: Duration::from_millis(config.broker_session_timeout_ms as u64),
                heartbeat_interval: Duration::from_millis(
                    config.broker_heartbeat_interval_ms as u64,
                ),
            },
            || ClusterMetadata::load(&data_dir).map_err(|e| e.to_string()),
            Some(shale_controller::NoSpaceHook(Arc::new(
                disk.reserve_releaser(),
            ))),
        )
        .map_err(StartupError::MetadataLog)?;
        crate::metadata_log::retire_legacy_file(&data_dir.join(crate::metadata::FILE_NAME));
        metadata_log
            .register(shale_metadata::BrokerRegistration {
                broker_id: config.node_id.get(),
                incarnation_id: Uuid::new_v4(),
                endpoints: vec![shale_metadata::Endpoint {
                    name: "PLAINTEXT".to_string(),
                    host: advertised.0.clone(),
                    port: advertised.1,
                }],
                rack: (!config.broker_rack.is_empty()).then(|| config.broker_rack.clone()),
            })
            .map_err(|e| StartupError::MetadataLog(format!("cannot register the broker: {e}")))?;
        let meta = crate::metadata_log::view_of(&metadata_log.image());
        // A stored value that does not validate (written by an older build, or by hand) stops
        // startup naming the topic and the config, rather than being read some default way.
        let topic_configs = resolve_topic_configs(&config, &meta)
            .map_err(|(topic, reason)| StartupError::TopicConfig { topic, reason })?;
        let groups = GroupCoordinator::new(crate::group::CoordinatorConfig::from_broker(&config));
        let reserved = meta.producer_id_reserved_until;
        let topics = meta.topics.len();
        let cluster_id = meta.cluster_id.clone();
        let fetch_sessions = crate::fetch_session::FetchSessionCache::new(
            config.max_incremental_fetch_session_cache_slots as usize,
        );
        let group_commit =
            crate::group_commit::GroupCommit::start().map_err(StartupError::SyncThread)?;
        let fetchers =
            crate::replica_fetcher::ReplicaFetchers::new(crate::replica_fetcher::FetchSettings {
                replica_id: config.node_id.get(),
                max_bytes: config.replica_fetch_response_max_bytes,
                partition_max_bytes: config.replica_fetch_max_bytes,
                max_wait_ms: config.replica_fetch_wait_max_ms,
                backoff: Duration::from_millis(config.replica_fetch_backoff_ms.max(0) as u64),
            });
        let broker = Arc::new(Self {
            config,
            advertised,
            meta: RwLock::new(Published {
                meta: Arc::new(meta),
                topic_configs: Arc::new(topic_configs),
            }),
            meta_write: Mutex::new(()),
            sync: Mutex::new(()),
            partitions: RwLock::new(HashMap::new()),
            producer_ids: Mutex::new((reserved, reserved)),
            groups,
            fetch_sessions,
            remote: std::sync::OnceLock::new(),
            group_commit,
            disk,
            metadata_log,
            fetchers,
        });
        // Opens (recovering) the partitions placed here and loads the groups they coordinate;
        // any failure stops startup, as a log that cannot be opened always did.
        broker.sync_with_metadata()?;
        tracing::info!(
            topics,
            partitions = broker.partitions.read().expect("partitions lock").len(),
            %cluster_id,
            "broker state loaded"
        );
        broker.follow_metadata();
        Ok(broker)
    }

    /// Brings this broker in line with the metadata log's image: publishes its view (with the
    /// topics' configs resolved), opens the partitions placed on this broker that are not open,
    /// closes those that are no longer here (deleting the files of a deleted topic), pushes
    /// changed configs into the open logs, and hands the hosted partitions of
    /// `__consumer_offsets` to the group coordinator. Runs after every change this broker
    /// makes and whenever the image changes (changes made through other brokers). A partition
    /// that cannot be opened is logged and left closed; the first such error is returned.
    pub fn sync_with_metadata(&self) -> Result<(), StartupError> {
        let _pass = self.sync.lock().expect("metadata sync lock");
        let image = self.metadata_log.image();
        let view = crate::metadata_log::view_of(&image);
        let previous = self.metadata();
        let configs_changed = previous.dynamic_broker_configs != view.dynamic_broker_configs
            || view.topics.iter().any(|(name, t)| {
                previous
                    .topics
                    .get(name)
                    .is_some_and(|p| p.id == t.id && p.configs != t.configs)
            });
        let topic_configs = match resolve_topic_configs(&self.config, &view) {
            Ok(configs) => configs,
            Err((topic, reason)) => {
                // Proposals are validated first, so only a change from a broker of another
                // build gets here; its topic keeps no config rather than a wrong one.
                tracing::error!(%topic, %reason, "the metadata log holds a topic config this broker cannot resolve");
                let mut view = view.clone();
                view.topics.remove(&topic);
                resolve_topic_configs(&self.config, &view).unwrap_or_default()
            }
        };
        *self.meta.write().expect("metadata lock") = Published {
            meta: Arc::new(view.clone()),
            topic_configs: Arc::new(topic_configs),
        };
        let me = self.config.node_id.get();
        // Where this broker's partitions should be: (name, partition) -> topic id.
        let placed: HashMap<TopicPartition, Uuid> = image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|(_, p)| p.replicas.contains(&me))
                    .map(|(index, _)| {
                        let tp = TopicPartition {
                            topic: t.name.clone(),
                            partition: *index,
                        };
                        (tp, t.id)
                    })
            })
            .collect();
        let removed: Vec<Arc<Partition>> = {
            let mut parts = self.partitions.write().expect("partitions lock");
            let gone: Vec<TopicPartition> = parts
                .iter()
                .filter(|(tp, p)| placed.get(*tp) != Some(&p.topic_id))
                .map(|(tp, _)| tp.clone())
                .collect();
            gone.iter().filter_map(|tp| parts.remove(tp)).collect()
        };
        for partition in removed {
            let deleted = !image.topics.contains_key(&partition.topic_id);
            let outcome = if deleted {
                partition.log().delete()
            } else {
                partition.log().close()
            };
            match outcome {
                Ok(()) if deleted => {
                    tracing::info!(tp = %partition.tp, "deleted the partition of a deleted topic")
                }
                Ok(()) => {
                    tracing::info!(tp = %partition.tp, "closed a partition no longer placed here")
                }
                Err(e) => {
                    tracing::warn!(tp = %partition.tp, error = %e, "could not remove a partition's files")
                }
            }
        }
        let mut first_error = None;
        let mut opened = Vec::new();
        for (tp, topic_id) in &placed {
            if self.partition(&tp.topic, tp.partition).is_some() {
                continue;
            }
            let (Some(topic), Some(config)) =
                (view.topics.get(&tp.topic), self.topic_config(&tp.topic))
            else {
                continue;
            };
            debug_assert_eq!(topic.id, *topic_id);
            let start = image
                .topics
                .get(topic_id)
                .and_then(|t| t.partitions.get(&tp.partition))
                .and_then(|p| p.start_offset)
                .map(Offset::new);
            let opening = open_partition(&self.config, &config, topic, tp.clone())
                .and_then(|partition| start_restored(partition, start));
            match opening {
                Ok(partition) => opened.push((tp.clone(), partition)),
                Err(e) => {
                    tracing::error!(%tp, error = %e, "cannot open a partition placed on this broker");
                    first_error.get_or_insert(e);
                }
            }
        }
        if !opened.is_empty() {
            let mut parts = self.partitions.write().expect("partitions lock");
            parts.extend(opened);
        }
        if configs_changed {
            self.apply_configs();
        }
        self.follow_leaders(&image);
        // The coordinator serves the groups of the offsets partitions this broker leads.
        let offsets_topic = view.topics.get(crate::group::OFFSETS_TOPIC);
        let hosted: BTreeMap<i32, Arc<Partition>> = offsets_topic
            .map(|t| {
                (0..t.partitions)
                    .filter_map(|p| self.partition(&t.name, p).map(|part| (p, part)))
                    .filter(|(_, part)| part.leader_epoch().is_some())
                    .collect()
            })
            .unwrap_or_default();
        if let Err((tp, source)) = self
            .groups
            .sync_offsets_partitions(offsets_topic.map(|t| t.partitions), hosted)
        {
            tracing::error!(%tp, error = %source, "cannot load the groups of a partition of the offsets topic");
            first_error.get_or_insert(StartupError::Log { tp, source });
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Gives every hosted partition the role the image says (leader or follower, in which
    /// epoch, with which ISR) and points the fetchers at the leaders of those it follows.
    fn follow_leaders(&self, image: &shale_metadata::MetadataImage) {
        let mut targets = Vec::new();
        for partition in self.all_partitions() {
            let Some(p) = image
                .topics
                .get(&partition.topic_id)
                .and_then(|t| t.partitions.get(&partition.tp.partition))
            else {
                continue;
            };
            partition.apply_leadership(&crate::partition::Leadership {
                leader: p.leader,
                leader_epoch: LeaderEpoch::new(p.leader_epoch),
                partition_epoch: p.partition_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            });
            if p.leader == self.config.node_id.get() || p.leader < 0 {
                continue;
            }
            let Some(endpoint) = image
                .brokers
                .get(&p.leader)
                .and_then(|b| b.registration.endpoints.first())
            else {
                continue;
            };
            targets.push(crate::replica_fetcher::FollowTarget {
                partition: Arc::clone(&partition),
                leader: p.leader,
                address: format!("{}:{}", endpoint.host, endpoint.port),
                leader_epoch: LeaderEpoch::new(p.leader_epoch),
            });
        }
        self.fetchers.update(targets);
    }

    /// Proposes the ISR change `partition`'s leader wants now, if any (AlterPartition,
    /// KIP-497: fenced by the partition epoch it was computed from), and waits for it. Blocking.
    pub fn change_isr(&self, partition: &Partition) {
        let lag = Duration::from_millis(self.config.replica_lag_time_max_ms.max(1) as u64);
        let Some((partition_epoch, isr)) = partition.isr_change_wanted(lag) else {
            return;
        };
        if !partition.set_pending_isr(partition_epoch, Some(isr.clone())) {
            return;
        }
        let before = partition.isr().unwrap_or_default();
        let change = MetadataRecord::PartitionChange(shale_metadata::PartitionChange {
            topic_id: partition.topic_id,
            partition: partition.tp.partition,
            partition_epoch,
            leader: None,
            isr: Some(isr.clone()),
            replicas: None,
        });
        match self.metadata_log.propose(vec![change]) {
            Ok(_) => {
                tracing::info!(tp = %partition.tp, from = ?before, to = ?isr, "ISR changed");
                if let Err(e) = self.sync_with_metadata() {
                    tracing::warn!(error = %e, "cannot sync after an ISR change");
                }
            }
            Err(e) => {
                partition.set_pending_isr(partition_epoch, None);
                tracing::info!(tp = %partition.tp, to = ?isr, error = %e, "ISR change not made");
            }
        }
    }

    /// Shrinks the ISRs of the partitions this broker leads whose followers fell behind, every
    /// half `replica.lag.time.max.ms`, until shutdown.
    pub async fn isr_loop(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = (self.config.replica_lag_time_max_ms / 2).max(1);
        self.every(every, shutdown, "the ISR check", |broker| {
            for partition in broker.all_partitions() {
                if partition.leader_epoch().is_some() {
                    broker.change_isr(&partition);
                }
            }
        })
        .await;
    }

    /// Syncs with every image the metadata log applies from now on (changes proposed through
    /// other brokers), on the blocking pool, until the broker is dropped.
    fn follow_metadata(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut images = self.metadata_log.subscribe();
        let broker = Arc::downgrade(self);
        runtime.spawn(async move {
            while images.changed().await.is_ok() {
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                let synced = crate::blocking::try_run(move || broker.sync_with_metadata()).await;
                if let Ok(Err(e)) = synced {
                    tracing::warn!(error = %e, "the broker could not follow a metadata change completely");
                }
            }
        });
    }

    /// The remote tier, if tiered storage is on.
    pub fn remote(&self) -> Option<&Arc<shale_tiering::RemoteLogManager>> {
        self.remote.get()
    }

    /// Whether `topic` is tiered: the broker has a store, and the topic is neither opted out nor
    /// compacted (compaction across tiers is not built yet, so compacted topics stay local).
    pub fn is_tiered(&self, topic: &str) -> bool {
        self.remote().is_some() && self.topic_config(topic).is_some_and(|c| c.tiered())
    }

    /// The remote handle of `partition` if its topic is tiered, opening it the first time; an
    /// unreachable remote tier is logged and answered as `None` (local data stays readable).
    pub async fn remote_partition(
        &self,
        partition: &Partition,
    ) -> Option<Arc<shale_tiering::RemotePartition>> {
        let rlm = self.remote()?;
        if !self.is_tiered(&partition.tp.topic) {
            return None;
        }
        match partition.remote(rlm).await {
            Ok(remote) => Some(remote),
            Err(e) => {
                tracing::warn!(tp = %partition.tp, error = %e, "remote log unavailable");
                None
            }
        }
    }

    /// Attaches the remote tier; called once, before serving.
    pub fn set_remote(&self, rlm: Arc<shale_tiering::RemoteLogManager>) {
        assert!(
            self.remote.set(rlm).is_ok(),
            "the remote tier was attached twice"
        );
    }

    /// Recreates a topic found in remote storage (same id), each partition's local log starting
    /// at `next_offsets[p]`, the offset after the remote end.
    pub fn restore_topic(
        &self,
        name: &str,
        id: Uuid,
        next_offsets: &[Offset],
        configs: BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let topic = TopicMetadata {
            name: name.to_string(),
            id,
            partitions: next_offsets.len() as i32,
            configs,
            replication_factor: self.default_replication_factor(),
        };
        // Each partition's record says where its log starts, so that the broker it is placed
        // on (this one or another) starts it there when it opens it (`sync_with_metadata`).
        self.update_metadata_amended(
            |meta| {
                check_new_topic_name(meta, &topic.name)?;
                meta.topics.insert(topic.name.clone(), topic.clone());
                Ok(())
            },
            |record| {
                let MetadataRecord::Partition(p) = record else {
                    return;
                };
                let next = usize::try_from(p.partition)
                    .ok()
                    .and_then(|i| next_offsets.get(i));
                if let Some(next) = next.filter(|_| p.topic_id == id) {
                    p.start_offset = (*next > Offset::ZERO).then(|| next.get());
                }
            },
        )
    }

    /// `default.replication.factor`, or where it is -1 (the default), min(3, unfenced brokers).
    pub fn default_replication_factor(&self) -> i16 {
        match self.config.default_replication_factor {
            -1 => self.cluster_brokers().len().clamp(1, 3) as i16,
            rf => rf,
        }
    }

    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.meta.read().expect("metadata lock").meta.clone()
    }

    /// The registered, unfenced brokers (from the metadata log) with their client listener.
    pub fn cluster_brokers(&self) -> Vec<ClusterBroker> {
        let mut brokers = self.registered_brokers();
        brokers.retain(|b| !b.fenced);
        brokers
    }

    /// Every registered broker, fenced or not (DescribeCluster v2 with fenced brokers).
    pub fn registered_brokers(&self) -> Vec<ClusterBroker> {
        self.metadata_log
            .image()
            .brokers
            .values()
            .filter_map(|b| {
                let endpoint = b.registration.endpoints.first()?;
                Some(ClusterBroker {
                    id: b.registration.broker_id,
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    rack: b.registration.rack.clone(),
                    fenced: b.fenced,
                })
            })
            .collect()
    }

    /// The registered, unfenced broker `id`, if it is one.
    pub fn cluster_broker(&self, id: i32) -> Option<ClusterBroker> {
        self.cluster_brokers().into_iter().find(|b| b.id == id)
    }

    /// Where `topic`'s `partition` is placed and who leads it, from the metadata log.
    pub fn placement(&self, topic: &str, partition: i32) -> Option<Placement> {
        let image = self.metadata_log.image();
        let p = image.topic(topic)?.partitions.get(&partition)?;
        let live = |id: &i32| image.brokers.get(id).is_some_and(|b| !b.fenced);
        Some(Placement {
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            leader: if live(&p.leader) { p.leader } else { -1 },
            leader_epoch: p.leader_epoch,
            offline: p.replicas.iter().filter(|r| !live(r)).copied().collect(),
        })
    }

    /// The partition, if this broker leads it; otherwise Kafka's answer to a client that asked
    /// the wrong broker: NOT_LEADER_OR_FOLLOWER if the partition exists elsewhere (the client
    /// refreshes its metadata and moves on), UNKNOWN_TOPIC_OR_PARTITION if it does not exist.
    pub fn leader_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Arc<Partition>, ApiError> {
        if let Some(p) = self
            .partition(topic, partition)
            .filter(|p| p.leader_epoch().is_some())
        {
            return Ok(p);
        }
        Err(match self.placement(topic, partition) {
            Some(placement) => ApiError::new(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "broker {} does not lead {topic}-{partition}; its leader is {}",
                    self.config.node_id.get(),
                    placement.leader
                ),
            ),
            None => ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            ),
        })
    }

    /// Controlled shutdown (SIGTERM): see `MetadataLog::controlled_shutdown`.
    pub fn controlled_shutdown(&self) {
        self.metadata_log
            .controlled_shutdown(Duration::from_secs(5));
    }

    /// The controller quorum as this node sees it.
    pub fn quorum(&self) -> crate::metadata_log::QuorumState {
        self.metadata_log.quorum()
    }

    /// The active controller's node id (this node while it is a quorum of one).
    pub fn controller_id(&self) -> i32 {
        self.metadata_log
            .leader()
            .unwrap_or(self.config.node_id.get())
    }

    /// The effective, typed config of `topic`, resolved when its metadata or the broker's
    /// dynamic configs last changed. `None` if the topic does not exist.
    pub fn topic_config(&self, topic: &str) -> Option<Arc<topic_config::TopicConfig>> {
        self.meta
            .read()
            .expect("metadata lock")
            .topic_configs
            .get(topic)
            .cloned()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        self.partitions
            .read()
            .expect("partitions lock")
            .get(&tp)
            .cloned()
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .values()
            .cloned()
            .collect()
    }

    /// Applies `change` to a copy of the metadata, records it in the metadata log (the records
    /// that turn the current view into the copy), then syncs this broker with the new image
    /// (see [`Self::sync_with_metadata`]), so that the caller sees its change applied here.
    ///
    /// The view may be behind the log (a change through another broker not applied here yet):
    /// records computed from it can then be refused by the state machine (a topic created
    /// twice, producer ids reserved twice). The change is then computed again from the newer
    /// image, a few times, so that the caller gets the answer the current state gives.
    fn update_metadata<T>(
        &self,
        change: impl FnMut(&mut ClusterMetadata) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.update_metadata_amended(change, |_| {})
    }

    /// [`Self::update_metadata`], with `amend` applied to each record before it is proposed
    /// (what the view does not express, such as a restored partition's start offset).
    fn update_metadata_amended<T>(
        &self,
        mut change: impl FnMut(&mut ClusterMetadata) -> Result<T, ApiError>,
        amend: impl Fn(&mut MetadataRecord),
    ) -> Result<T, ApiError> {
        let _writer = self.meta_write.lock().expect("metadata writer lock");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let image = self.metadata_log.image();
            let current = Arc::new(crate::metadata_log::view_of(&image));
            let mut next = (*current).clone();
            let out = change(&mut next)?;
            // Configs were validated before `change` stored them; resolving cannot fail then,
            // but if it does the change is refused before anything is persisted.
            resolve_topic_configs(&self.config, &next).map_err(|(topic, reason)| {
                ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("topic `{topic}`: {reason}"),
                )
            })?;
            let place = crate::metadata_log::placer(&image, self.config.node_id.get());
            let mut records = crate::metadata_log::records_for_change(&current, &next, place);
            records.iter_mut().for_each(&amend);
            if !records.is_empty() {
                match self.metadata_log.propose(records) {
                    Ok(_) => {}
                    Err(shale_controller::ProposeError::Refused(reason))
                        if attempt < 5 && self.image_moves_past(&current) =>
                    {
                        tracing::debug!(%reason, attempt, "a metadata change raced another; computing it again");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record a metadata change");
                        let error = match e {
                            shale_controller::ProposeError::Refused(_) => {
                                ResponseError::InvalidRequest
                            }
                            // No leader found through the retries: the client retries
                            // (KIP-590: it never sees NOT_CONTROLLER).
                            shale_controller::ProposeError::NotLeader { .. }
                            | shale_controller::ProposeError::TimedOut(_) => {
                                ResponseError::RequestTimedOut
                            }
                            shale_controller::ProposeError::Unavailable(_) => {
                                ResponseError::KafkaStorageError
                            }
                        };
                        return Err(ApiError::new(error, e.to_string()));
                    }
                }
            }
            if let Err(e) = self.sync_with_metadata() {
                tracing::warn!(error = %e, "the change was recorded but this broker could not apply it completely");
            }
            return Ok(out);
        }
    }

    /// Whether this broker's view moves past `seen` within a second. A proposal the leader
    /// refused because its state was newer (a topic created meanwhile through another node)
    /// was refused after the leader applied that state; this node applies it a heartbeat or so
    /// later, and only then can the change be computed again from it.
    fn image_moves_past(&self, seen: &ClusterMetadata) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            if crate::metadata_log::view_of(&self.metadata_log.image()) != *seen {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Creates a topic (CreateTopics, or auto-creation).
    pub fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMetadata, ApiError> {
        validate_topic_name(name)
            .map_err(|m| ApiError::new(ResponseError::InvalidTopicException, m))?;
        let num_partitions = if num_partitions == -1 {
            self.config.num_partitions
        } else {
            num_partitions
        };
        if num_partitions < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be at least 1, got {num_partitions}"),
            ));
        }
        let rf = if replication_factor == -1 {
            self.default_replication_factor()
        } else {
            replication_factor
        };
        let brokers = self.cluster_brokers().len().max(1);
        if rf < 1 || rf as usize > brokers {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {rf} must be between 1 and the {brokers} available brokers"
                ),
            ));
        }
        topic_config::validate_all(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        self.check_log_config(&self.metadata().dynamic_broker_configs, &configs)?;
        let topic = TopicMetadata {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions: num_partitions,
            configs,
            replication_factor: rf,
        };
        if validate_only {
            check_new_topic_name(&self.metadata(), name)?;
            return Ok(topic);
        }
        self.add_topic(&topic)?;
        tracing::info!(topic = name, partitions = num_partitions, id = %topic.id, "topic created");
        Ok(topic)
    }

    /// Records a new topic in the metadata (refusing a name that exists or collides) and opens
    /// its partitions.
    fn add_topic(&self, topic: &TopicMetadata) -> Result<(), ApiError> {
        self.update_metadata(|meta| {
            check_new_topic_name(meta, &topic.name)?;
            meta.topics.insert(topic.name.clone(), topic.clone());
            Ok(())
        })
    }

    /// Deletes a topic and its logs.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid, ApiError> {
        let topic = self.update_metadata(|meta| {
            meta.topics.remove(name).ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic `{name}` does not exist"),
                )
            })
        })?;
        tracing::info!(topic = name, "topic deleted");
        Ok(topic.id)
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let before = self.update_metadata(|meta| {
            let Some(topic) = meta.topics.get_mut(name) else {
                return Err(ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic `{name}` does not exist"),
                ));
            };
            if count <= topic.partitions {
                return Err(ApiError::new(
                    ResponseError::InvalidPartitions,
                    format!(
                        "topic `{name}` has {} partitions; the new count {count} must be larger",
                        topic.partitions
                    ),
                ));
            }
            let before = topic.partitions;
            if !validate_only {
                topic.partitions = count;
            }
            Ok(before)
        })?;
        if !validate_only {
            tracing::info!(topic = name, from = before, to = count, "partitions added");
        }
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs / IncrementalAlterConfigs) and applies
    /// them to its logs at once.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        topic_config::validate_all(configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        let meta = self.metadata();
        if !meta.topics.contains_key(name) {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            ));
        }
        self.check_log_config(&meta.dynamic_broker_configs, &configs)?;
        if validate_only {
            return Ok(());
        }
        self.update_metadata(|meta| match meta.topics.get_mut(name) {
            Some(t) => {
                t.configs = configs.clone();
                Ok(())
            }
            None => Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            )),
        })?;
        tracing::info!(topic = name, "topic configs changed");
        self.apply_configs();
        Ok(())
    }

    /// Replaces the broker's dynamic configs (by Kafka name) and applies them to every log that
    /// does not override them.
    pub fn alter_broker_configs(
        &self,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        for (k, v) in &configs {
            let Some(topic_key) = topic_config::topic_synonym_of_broker_config(k) else {
                return Err(ApiError::new(
                    ResponseError::InvalidConfig,
                    format!(
                        "broker config `{k}` cannot be changed at runtime; set it in shale.toml, a flag or a SHALE_* variable"
                    ),
                ));
            };
            topic_config::validate_value(topic_key, v).map_err(|m| {
                ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("invalid value `{v}` for broker config `{k}`: {m}"),
                )
            })?;
        }
        let meta = self.metadata();
        for t in meta.topics.values() {
            self.check_log_config(&configs, &t.configs)?;
        }
        if validate_only {
            return Ok(());
        }
        self.update_metadata(|meta| {
            meta.dynamic_broker_configs = configs.clone();
            Ok(())
        })?;
        tracing::info!("dynamic broker configs changed");
        self.apply_configs();
        Ok(())
    }

    /// Refuses configs that do not resolve: combinations the log would reject (e.g. values
    /// each valid alone).
    fn check_log_config(
        &self,
        dynamic: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let defaults = topic_config::Defaults {
            broker: &self.config,
            dynamic,
        };
        topic_config::TopicConfig::resolve(defaults, overrides)
            .map(|_| ())
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))
    }

    /// Pushes the current effective configs into every open log.
    fn apply_configs(&self) {
        for partition in self.all_partitions() {
            let Some(config) = self.topic_config(&partition.tp.topic) else {
                continue;
            };
            if let Err(e) = partition.log().set_config(config.log.clone()) {
                tracing::error!(tp = %partition.tp, error = %e, "cannot apply new configs");
            }
        }
    }

    /// The layered defaults for topic configs, as of `meta`.
    pub fn topic_defaults<'a>(&'a self, meta: &'a ClusterMetadata) -> topic_config::Defaults<'a> {
        topic_config::Defaults {
            broker: &self.config,
            dynamic: &meta.dynamic_broker_configs,
        }
    }

    /// Hands out a producer id, reserving a block in the metadata file so ids never repeat
    /// across restarts.
    pub fn allocate_producer_id(&self) -> Result<ProducerId, ApiError> {
        let mut ids = self.producer_ids.lock().expect("producer id lock");
        if ids.0 >= ids.1 {
            let block = self.config.producer_id_block_size;
            let end = self.update_metadata(|meta| {
                let start = meta.producer_id_reserved_until.max(ids.0);
                meta.producer_id_reserved_until = start + block;
                Ok(start + block)
            })?;
            *ids = (end - block, end);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(ProducerId::new(id))
    }

    /// One pass of time-based work: retention and `flush.ms`.
    pub fn run_log_maintenance(&self) {
        let now = now_ms();
        for partition in self.all_partitions() {
            // Tiered topics lose local segments only once they are uploaded: the tiering job
            // applies their retention (crate::tiered::tier_partition). Time and size retention
            // apply only to topics whose cleanup.policy includes `delete`, as in Kafka; a
            // compacted topic keeps its records until compaction.
            let deletes = self
                .topic_config(&partition.tp.topic)
                .is_some_and(|c| c.cleanup_policy.delete);
            let applies = deletes && !self.is_tiered(&partition.tp.topic);
            let mut log = partition.log();
            let mut deleted = false;
            if applies {
                match log.delete_retention(now) {
                    Ok(r) if r.segments_deleted > 0 => {
                        tracing::info!(tp = %partition.tp, segments = r.segments_deleted, bytes = r.bytes_deleted, log_start_offset = %r.log_start_offset, "retention deleted segments");
                        deleted = true;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(tp = %partition.tp, error = %e, "retention failed"),
                }
            }
            log.remove_expired_producers(now, shale_log::PRODUCER_ID_EXPIRATION_MS_DEFAULT);
            if let Err(e) = log.flush_if_due(now) {
                tracing::warn!(tp = %partition.tp, error = %e, "flush failed");
            }
            drop(log);
            if deleted {
                partition.check_offsets("retention");
            }
        }
    }

    /// Background loop for [`Self::run_log_maintenance`] until shutdown.
    pub async fn maintenance_loop(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = self.config.log_retention_check_interval_ms;
        self.every(
            every,
            shutdown,
            "log maintenance",
            Self::run_log_maintenance,
        )
        .await;
    }

    /// Background loop for [`Self::check_disk_space`] until shutdown.
    pub async fn disk_space_loop(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = self.config.storage_space_check_interval_ms;
        self.every(
            every,
            shutdown,
            "the disk space check",
            Self::check_disk_space,
        )
        .await;
    }

    /// Runs `job` on the blocking pool every `period_ms` until shutdown; a panic is logged and
    /// the next period runs as usual.
    async fn every(
        self: Arc<Self>,
        period_ms: i64,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        what: &'static str,
        job: fn(&Self),
    ) {
        let period = Duration::from_millis(period_ms.max(1) as u64);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => return,
            }
            let broker = self.clone();
            if crate::blocking::try_run(move || job(&broker))
                .await
                .is_err()
            {
                tracing::error!("{what} panicked");
            }
        }
    }

    /// Reads the free space; while it is low, deletes every local segment already in the
    /// remote tier (whatever `local.retention.*` says), then reads it again so that produce
    /// resumes as soon as that was enough.
    pub fn check_disk_space(&self) {
        match self.disk.check() {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(dir = %self.config.data_dir.display(), error = %e, "cannot read the data dir's free space");
                return;
            }
        }
        let now = now_ms();
        let mut freed = 0;
        for partition in self.all_partitions() {
            if !self.is_tiered(&partition.tp.topic) {
                continue;
            }
            let Some(end) = partition
                .remote_if_open()
                .and_then(|r| r.copied_end_offset())
            else {
                continue;
            };
            let result = partition.log().delete_tiered_segments(end + 1, -1, 0, now);
            match result {
                Ok(r) if r.segments_deleted > 0 => {
                    freed += r.bytes_deleted;
                    tracing::warn!(tp = %partition.tp, segments = r.segments_deleted, bytes = r.bytes_deleted, "disk space is low: deleted local segments already in remote storage");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(tp = %partition.tp, error = %e, "disk space is low: deleting uploaded local segments failed");
                }
            }
            partition.check_offsets("local deletion under disk pressure");
        }
        if freed > 0 {
            let _ = self.disk.check();
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close(&self) {
        self.fetchers.shutdown();
        let stats = &self.group_commit.stats;
        tracing::info!(
            produces = stats.requests.load(std::sync::atomic::Ordering::Relaxed),
            rounds = stats.rounds.load(std::sync::atomic::Ordering::Relaxed),
            fdatasyncs = stats.fsyncs.load(std::sync::atomic::Ordering::Relaxed),
            "acks=all group commit since start"
        );
        for partition in self.all_partitions() {
            if let Err(e) = partition.log().close() {
                tracing::error!(tp = %partition.tp, error = %e, "error closing log");
            }
        }
    }
}

/// Refuses a name that exists, or that collides with one in Kafka's '.' vs '_' sense (they
/// would share metric names).
fn check_new_topic_name(meta: &ClusterMetadata, name: &str) -> Result<(), ApiError> {
    if meta.topics.contains_key(name) {
        return Err(ApiError::new(
            ResponseError::TopicAlreadyExists,
            format!("topic `{name}` already exists"),
        ));
    }
    let normalized = name.replace('.', "_");
    if let Some(other) = meta
        .topics
        .keys()
        .find(|t| t.replace('.', "_") == normalized)
    {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("topic `{name}` collides with existing topic `{other}`"),
        ));
    }
    Ok(())
}

fn open_partition(
    config: &BrokerConfig,
    topic_config: &topic_config::TopicConfig,
    topic: &TopicMetadata,
    tp: TopicPartition,
) -> Result<Arc<Partition>, StartupError> {
    let dir = partition_dir(&config.data_dir, &tp);
    let log = Log::open(&dir, topic_config.log.clone(), now_ms()).map_err(|source| {
        StartupError::Log {
            tp: tp.clone(),
            source,
        }
    })?;
    Ok(Partition::replica(tp, topic.id, config.node_id.get(), log))
}

/// Starts the log of a partition restored from remote storage at `start` (just after what the
/// bucket holds) if it has never been written here, so that appends follow the restored
/// records instead of taking their offsets again. A log that holds anything is left alone:
/// it was started (and written) by an earlier open.
fn start_restored(
    partition: Arc<Partition>,
    start: Option<Offset>,
) -> Result<Arc<Partition>, StartupError> {
    let Some(start) = start else {
        return Ok(partition);
    };
    let fresh = {
        let log = partition.log();
        log.log_end_offset() == Offset::ZERO && log.log_start_offset() == Offset::ZERO
    };
    if !fresh {
        return Ok(partition);
    }
    // Not yet published to other threads: nothing appends between the check and this.
    partition
        .log()
        .truncate_fully_and_start_at(start)
        .map_err(|source| StartupError::Log {
            tp: partition.tp.clone(),
            source,
        })?;
    partition.reset_high_watermark();
    tracing::info!(tp = %partition.tp, %start, "a restored partition starts after the records in remote storage");
    Ok(partition)
}

impl crate::group::OffsetsTopicHost for Broker {
    fn create_offsets_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        if self.metadata().topics.contains_key(topic) {
            return Ok(());
        }
        // The creation syncs this broker with the new image before it returns, which loads
        // the partitions placed here into the coordinator.
        match self.create_topic(topic, partitions, -1, configs, false) {
            Err(e) if e.error != ResponseError::TopicAlreadyExists => Err(e),
            _ => Ok(()),
        }
    }
}
