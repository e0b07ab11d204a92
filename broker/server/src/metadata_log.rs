//! The bridge between the broker's view of cluster metadata ([`ClusterMetadata`], what the
//! handlers read and what `Broker::update_metadata` changes) and the metadata log of the
//! controller quorum (`shale_metadata` records).
//!
//! - [`records_for_change`]: the records that turn the image of one view into the image of
//!   the next; the broker proposes them instead of rewriting `cluster-metadata.json`, and a
//!   data dir written by a single-node Shale is adopted as the change from an empty view to the
//!   one in its file.
//! - [`view_of`]: the view an image gives, which every broker serves.
//!
//! - [`MetadataLog`]: this node's controller (a quorum of one until the cluster settings
//!   exist), on its own runtime so that a metadata write waiting for its commit can never
//!   starve the request threads that Raft itself needs, with a blocking `propose` for the
//!   broker's (synchronous) admin paths.
//!
//! Round trip: `view_of(apply(image_of(a), records_for_change(a, b))) == b` for any views a
//! and b (property-tested below), so a broker that proposes a change and then reads its image
//! sees exactly the change it made.
//!
//! Durability: the metadata log replaces `cluster-metadata.json` as the record of topics,
//! configs and producer ids. A data dir from before it is adopted on the first start (the
//! file's content becomes the quorum's bootstrap entry) and the file is renamed
//! `cluster-metadata.json.adopted`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shale_controller::{Controller, ControllerConfig, NoSpaceHook, ProposeError};
use shale_metadata::{
    place_replicas, BrokerId, BrokerLoad, BrokerRegistration, ConfigResource, MetadataImage,
    MetadataRecord, PartitionRecord, NO_LEADER,
};

use crate::metadata::{ClusterMetadata, TopicMetadata};

/// The directory of the metadata log, as Kafka names its own.
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// Name of a single-node metadata file once the metadata log has adopted it.
const ADOPTED_SUFFIX: &str = ".adopted";

/// How long a write waits to be applied on this node after it committed.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long startup waits for the quorum to elect a leader and apply the bootstrap entry.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// This node's controller, on a runtime of its own.
pub struct MetadataLog {
    runtime: Option<tokio::runtime::Runtime>,
    controller: Option<Arc<Controller>>,
    heartbeat_interval: Duration,
    /// This broker's registration (id, epoch) and its heartbeat task, once registered.
    registered: std::sync::Mutex<Option<(BrokerId, i64, tokio::task::JoinHandle<()>)>>,
}

/// Where the quorum is: this node's controller listener and the voters
/// (`controller.quorum.voters`); no voters means this node alone, on a private loopback port.
#[derive(Debug, Clone, Default)]
pub struct Quorum {
    pub listen: Option<String>,
    pub voters: BTreeMap<BrokerId, String>,
}

/// `broker.session.timeout.ms` and `broker.heartbeat.interval.ms`.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
}

impl std::fmt::Debug for MetadataLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataLog").finish_non_exhaustive()
    }
}

/// Runs `work` on `runtime` and waits for it from any thread, async or not (the caller's
/// thread blocks, as a metadata write's fsync always did).
fn wait_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv()
        .expect("the controller runtime runs until the metadata log is dropped")
}

impl MetadataLog {
    /// Starts the controller of `node_id` on `data_dir/__cluster_metadata-0`, as a voter of
    /// `quorum` (a quorum of one without voters), or as an observer (a Raft learner: it gets
    /// the log but never votes) if `node_id` is not among the voters. A brand-new log is bootstrapped with
    /// `adopt()`, the view to start from (an older single-node metadata file, or an empty
    /// cluster); then this waits until the image has a cluster id (the quorum has a leader
    /// and this node has caught up with it).
    pub fn open(
        data_dir: &Path,
        node_id: BrokerId,
        quorum: Quorum,
        liveness: Liveness,
        adopt: impl FnOnce() -> Result<ClusterMetadata, String>,
        no_space: Option<NoSpaceHook>,
    ) -> Result<Self, String> {
        let dir = data_dir.join(METADATA_DIR);
        let alone = quorum.voters.is_empty() || quorum.voters.keys().eq([&node_id]);
        let pristine = Controller::is_pristine(&dir)
            .map_err(|e| format!("the metadata log in {} cannot be read: {e}", dir.display()))?;
        let bootstrap = if pristine {
            let adopted = adopt()?;
            if !alone && !adopted.topics.is_empty() {
                // Only the first leader's bootstrap is written: another voter's would be lost.
                return Err(format!(
                    "{} holds the topics of a single-node Shale; start it once without controller_quorum_voters (a cluster of one adopts them), then grow the cluster",
                    data_dir.display()
                ));
            }
            // Everything an adopted single-node data dir holds is on this node.
            records_for_change(&ClusterMetadata::empty(), &adopted, |_, _, count| {
                (0..count).map(|_| vec![node_id]).collect()
            })
        } else {
            Vec::new()
        };
        let startup_timeout = if alone {
            STARTUP_TIMEOUT
        } else {
            // The other voters may be starting too: wait for a majority as long as an
            // operator reasonably would.
            STARTUP_TIMEOUT * 5
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("shale-controller")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the controller threads: {e}"))?;
        let id = node_id as u64;
        let started = wait_on(&runtime, async move {
            let bind = quorum
                .listen
                .clone()
                .unwrap_or_else(|| "127.0.0.1:0".to_string());
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| format!("cannot bind `controller_listen` address {bind}: {e}"))?;
            let address = listener
                .local_addr()
                .map_err(|e| e.to_string())?
                .to_string();
            let voters: BTreeMap<u64, String> = if quorum.voters.is_empty() {
                BTreeMap::from([(id, address)])
            } else {
                quorum
                    .voters
                    .iter()
                    .map(|(v, addr)| (*v as u64, addr.clone()))
                    .collect()
            };
            let config = ControllerConfig {
                bootstrap,
                no_space,
                broker_session_timeout_ms: liveness.session_timeout.as_millis() as u64,
                ..ControllerConfig::new(id, voters.clone(), dir)
            };
            let controller = Controller::start(config, listener)
                .await
                .map_err(|e| e.to_string())?;
            let mut images = controller.subscribe();
            let named = tokio::time::timeout(
                startup_timeout,
                images.wait_for(|image| image.cluster_id.is_some()),
            )
            .await
            .is_ok_and(|waited| waited.is_ok());
            if named {
                // The voters are fixed when the log is created; a changed setting would name a
                // quorum that does not exist.
                // Raft publishes the membership it loaded shortly after starting.
                let mut members: Vec<u64> = Vec::new();
                for _ in 0..100 {
                    members = controller
                        .metrics()
                        .membership_config
                        .membership()
                        .voter_ids()
                        .collect();
                    if !members.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if !pristine && !quorum.voters.is_empty() && !members.iter().eq(voters.keys()) {
                    controller.shutdown().await;
                    return Err(format!(
                        "controller_quorum_voters names nodes {:?} but this node's metadata log belongs to a quorum of {members:?}",
                        voters.keys().collect::<Vec<_>>()
                    ));
                }
                Ok(controller)
            } else {
                controller.shutdown().await;
                Err(format!(
                    "the metadata quorum did not apply its first entry within {startup_timeout:?} (is a majority of controller_quorum_voters running?)"
                ))
            }
        });
        match started {
            Ok(controller) => Ok(Self {
                runtime: Some(runtime),
                controller: Some(Arc::new(controller)),
                heartbeat_interval: liveness.heartbeat_interval,
                registered: std::sync::Mutex::new(None),
            }),
            Err(e) => {
                runtime.shutdown_background();
                Err(e)
            }
        }
    }

    fn controller(&self) -> &Arc<Controller> {
        self.controller.as_ref().expect("set until dropped")
    }

    /// The image as of the last applied entry.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller().image()
    }

    /// Every image applied from now on.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<MetadataImage>> {
        self.controller().subscribe()
    }

    /// Proposes `records` (applied together) and waits until they are committed and applied
    /// here.
    pub fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        let controller = self.controller().clone();
        let runtime = self.runtime.as_ref().expect("set until dropped");
        wait_on(runtime, async move {
            let index = controller.propose(records).await?;
            controller.wait_applied(index, APPLY_TIMEOUT).await?;
            Ok(index)
        })
    }

    /// The quorum as the leader sees it (DescribeQuorum, `shale admin cluster describe`): this
    /// node's own view if it leads, else the leader's, asked over the controller RPC; this
    /// node's view (not leading) if the leader cannot be reached.
    pub fn quorum(&self) -> QuorumState {
        let controller = self.controller().clone();
        let runtime = self.runtime.as_ref().expect("set until dropped");
        let m = wait_on(runtime, async move {
            match controller.leader_metrics().await {
                Ok(leader) => leader,
                Err(_) => controller.metrics(),
            }
        });
        let id = m.id as BrokerId;
        let leading = m.current_leader == Some(m.id);
        let end = |index: Option<u64>| index.map_or(0, |i| i as i64 + 1);
        let membership = m.membership_config.membership();
        let voter_ids: Vec<u64> = membership.voter_ids().collect();
        let (voters, observers): (Vec<_>, Vec<_>) = membership
            .nodes()
            .map(|(node, addr)| {
                let log_end_offset = if *node == m.id {
                    end(m.last_log_index)
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(node).copied())
                        .map_or(-1, |matched| end(matched.map(|l| l.index)))
                };
                let replica = QuorumVoter {
                    id: *node as BrokerId,
                    address: addr.addr.clone(),
                    log_end_offset,
                };
                (voter_ids.contains(node), replica)
            })
            .partition(|(voter, _)| *voter);
        let voters = voters.into_iter().map(|(_, v)| v).collect();
        let observers = observers.into_iter().map(|(_, o)| o).collect();
        QuorumState {
            node_id: id,
            leader: m.current_leader.map(|l| l as BrokerId),
            leading,
            term: m.current_term,
            high_watermark: end(m.last_applied.map(|l| l.index)),
            voters,
            observers,
        }
    }

    /// The active controller (the Raft leader), if one is known.
    pub fn leader(&self) -> Option<BrokerId> {
        self.controller().leader().map(|id| id as BrokerId)
    }

    /// Registers this broker (a new incarnation: a new broker epoch) with its listener and
    /// rack, unfences it, and starts its heartbeats to the active controller.
    pub fn register(&self, registration: BrokerRegistration) -> Result<(), ProposeError> {
        let broker_id = registration.broker_id;
        self.propose(vec![MetadataRecord::RegisterBroker(registration)])?;
        let epoch = self
            .image()
            .brokers
            .get(&broker_id)
            .map(|b| b.epoch)
            .ok_or_else(|| ProposeError::Unavailable("the registration was not applied".into()))?;
        self.propose(vec![MetadataRecord::UnfenceBroker {
            broker_id,
            broker_epoch: epoch,
        }])?;
        // Heartbeats until the runtime stops, so that the controller does not fence it.
        let heartbeater = self.controller().heartbeater();
        let interval = self.heartbeat_interval;
        let runtime = self.runtime.as_ref().expect("set until dropped");
        let beats = runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match heartbeater.heartbeat(broker_id, epoch).await {
                    Ok(()) => {}
                    Err(ProposeError::Refused(reason)) => {
                        tracing::error!(broker_id, epoch, %reason, "the controller refuses this broker's heartbeats (another process registered as this node?)");
                    }
                    Err(e) => tracing::warn!(broker_id, error = %e, "broker heartbeat failed"),
                }
            }
        });
        *self.registered.lock().expect("registration lock") = Some((broker_id, epoch, beats));
        Ok(())
    }

    /// Kafka's controlled shutdown, for SIGTERM: stops this broker's heartbeats and has the
    /// controller fence it now, so that clients are told its partitions are offline at once
    /// instead of after `broker.session.timeout.ms` (with replication this is where leadership
    /// moves to other replicas first). Bounded by `timeout`; a quorum that cannot be reached
    /// leaves the fencing to the session timeout.
    pub fn controlled_shutdown(&self, timeout: Duration) {
        let Some((broker_id, broker_epoch, beats)) =
            self.registered.lock().expect("registration lock").take()
        else {
            return;
        };
        beats.abort();
        let controller = self.controller().clone();
        let runtime = self.runtime.as_ref().expect("set until dropped");
        let fenced = wait_on(runtime, async move {
            tokio::time::timeout(
                timeout,
                controller.propose(vec![MetadataRecord::FenceBroker {
                    broker_id,
                    broker_epoch,
                }]),
            )
            .await
        });
        match fenced {
            Ok(Ok(_)) => tracing::info!(broker_id, "controlled shutdown: this broker is fenced"),
            Ok(Err(e)) => tracing::warn!(broker_id, error = %e, "controlled shutdown: cannot fence this broker; the session timeout will"),
            Err(_) => tracing::warn!(broker_id, ?timeout, "controlled shutdown: the quorum did not answer; the session timeout will fence this broker"),
        }
    }
}

impl Drop for MetadataLog {
    fn drop(&mut self) {
        let (Some(runtime), Some(controller)) = (self.runtime.take(), self.controller.take())
        else {
            return;
        };
        if let Ok(controller) = Arc::try_unwrap(controller) {
            wait_on(&runtime, controller.shutdown());
        }
        // Not a blocking drop: this may run on an async thread of the broker's runtime.
        runtime.shutdown_background();
    }
}

/// The controller quorum as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumState {
    pub node_id: BrokerId,
    pub leader: Option<BrokerId>,
    /// Whether this node is the leader (only the leader knows the others' log ends).
    pub leading: bool,
    /// The Raft term: Kafka's leader epoch of `__cluster_metadata`.
    pub term: u64,
    /// The offset after the last applied entry.
    pub high_watermark: i64,
    pub voters: Vec<QuorumVoter>,
    /// Nodes that get the log but do not vote (broker-only nodes: Raft learners).
    pub observers: Vec<QuorumVoter>,
}

/// A voter of the quorum: its controller address and its log end offset (-1 if unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub id: BrokerId,
    pub address: String,
    pub log_end_offset: i64,
}

/// Renames a single-node metadata file the metadata log has adopted, so that nothing reads it
/// again (it stays as a record of the adoption).
pub fn retire_legacy_file(path: &Path) {
    if !path.exists() {
        return;
    }
    let mut adopted = path.as_os_str().to_owned();
    adopted.push(ADOPTED_SUFFIX);
    let adopted = PathBuf::from(adopted);
    match std::fs::rename(path, &adopted) {
        Ok(()) => {
            tracing::info!(from = %path.display(), to = %adopted.display(), "the metadata log adopted the single-node metadata file")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot rename the adopted metadata file; it is ignored")
        }
    }
}

/// The resource that holds dynamic broker configs set through any broker: the cluster-wide
/// default (Kafka's empty broker name), since they take effect cluster-wide.
fn cluster_default() -> ConfigResource {
    ConfigResource::Broker(String::new())
}

/// The records that change the image of `old` into the image of `new`. `place` gives the
/// replicas of a topic's new partitions (`place(topic, first, count)`); the first replica
/// leads.
pub fn records_for_change(
    old: &ClusterMetadata,
    new: &ClusterMetadata,
    mut place: impl FnMut(&TopicMetadata, i32, i32) -> Vec<Vec<BrokerId>>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if old.cluster_id != new.cluster_id && !new.cluster_id.is_empty() {
        records.push(MetadataRecord::ClusterId {
            cluster_id: new.cluster_id.clone(),
        });
    }
    // Deletions first, so that a name deleted and created again in one change is free.
    for (name, topic) in &old.topics {
        if new.topics.get(name).is_none_or(|t| t.id != topic.id) {
            records.push(MetadataRecord::RemoveTopic { topic_id: topic.id });
        }
    }
    for (name, topic) in &new.topics {
        let before = old.topics.get(name).filter(|t| t.id == topic.id);
        if before.is_none() {
            records.push(MetadataRecord::Topic {
                name: name.clone(),
                topic_id: topic.id,
            });
        }
        let from = before.map_or(0, |t| t.partitions);
        if topic.partitions > from {
            let placed = place(topic, from, topic.partitions - from);
            for (partition, replicas) in (from..topic.partitions).zip(placed) {
                let leader = replicas.first().copied().unwrap_or(NO_LEADER);
                records.push(MetadataRecord::Partition(PartitionRecord {
                    topic_id: topic.id,
                    partition,
                    isr: replicas.clone(),
                    replicas,
                    leader,
                    start_offset: None,
                }));
            }
        }
        let empty = BTreeMap::new();
        let old_configs = before.map_or(&empty, |t| &t.configs);
        config_records(
            &mut records,
            ConfigResource::Topic(name.clone()),
            old_configs,
            &topic.configs,
        );
    }
    config_records(
        &mut records,
        cluster_default(),
        &old.dynamic_broker_configs,
        &new.dynamic_broker_configs,
    );
    if new.producer_id_reserved_until > old.producer_id_reserved_until {
        records.push(MetadataRecord::ProducerIds {
            broker_id: NO_LEADER,
            broker_epoch: -1,
            next_producer_id: new.producer_id_reserved_until,
        });
    }
    records
}

fn config_records(
    records: &mut Vec<MetadataRecord>,
    resource: ConfigResource,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) {
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        records.push(MetadataRecord::Config {
            resource: resource.clone(),
            name: name.clone(),
            value: None,
        });
    }
    for (name, value) in new {
        if old.get(name) != Some(value) {
            records.push(MetadataRecord::Config {
                resource: resource.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
    }
}

/// Where new partitions go: spread over the image's unfenced brokers, balanced by the leaders
/// and replicas each has (rack-aware, see `shale_metadata::placement`), the topic's replication
/// factor each; on `fallback` alone if no broker is registered yet (the caller checked the
/// factor against the brokers before it proposed).
pub fn placer(
    image: &MetadataImage,
    fallback: BrokerId,
) -> impl FnMut(&TopicMetadata, i32, i32) -> Vec<Vec<BrokerId>> {
    let mut loads: Vec<BrokerLoad> = image
        .unfenced_brokers()
        .map(|b| {
            let id = b.registration.broker_id;
            let partitions = image.topics.values().flat_map(|t| t.partitions.values());
            let (mut leaders, mut replicas) = (0, 0);
            for p in partitions {
                leaders += usize::from(p.leader == id);
                replicas += usize::from(p.replicas.contains(&id));
            }
            BrokerLoad {
                id,
                rack: b.registration.rack.clone(),
                leaders,
                replicas,
            }
        })
        .collect();
    move |topic, _, count| {
        let count = count.max(0) as usize;
        let factor = usize::try_from(topic.replication_factor)
            .unwrap_or(1)
            .max(1);
        place_replicas(&mut loads, count, factor).unwrap_or_else(|_| vec![vec![fallback]; count])
    }
}

/// The broker's view of an image.
pub fn view_of(image: &MetadataImage) -> ClusterMetadata {
    ClusterMetadata {
        cluster_id: image.cluster_id.clone().unwrap_or_default(),
        topics: image
            .topics
            .values()
            .map(|t| {
                let topic = TopicMetadata {
                    name: t.name.clone(),
                    id: t.id,
                    partitions: t.partitions.len() as i32,
                    configs: t.configs.clone(),
                    replication_factor: t.partitions.get(&0).map_or(1, |p| p.replicas.len() as i16),
                };
                (t.name.clone(), topic)
            })
            .collect(),
        producer_id_reserved_until: image.next_producer_id,
        dynamic_broker_configs: image.broker_configs.get("").cloned().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn on(broker: BrokerId) -> impl FnMut(&TopicMetadata, i32, i32) -> Vec<Vec<BrokerId>> {
        move |_, _, count| (0..count).map(|_| vec![broker]).collect()
    }

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for record in records {
            image
                .apply(record)
                .unwrap_or_else(|e| panic!("{record:?} was refused: {e}"));
        }
    }

    fn configs() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(
            prop::sample::select(vec!["retention.ms", "segment.bytes", "cleanup.policy"])
                .prop_map(str::to_string),
            "[0-9]{1,4}",
            0..3,
        )
    }

    fn view() -> impl Strategy<Value = ClusterMetadata> {
        let topic = (1..4u128, 1..5i32, configs());
        (
            prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string),
                topic,
                0..4,
            ),
            configs(),
            0..3000i64,
        )
            .prop_map(|(topics, broker_configs, pids)| ClusterMetadata {
                cluster_id: "c1".to_string(),
                topics: topics
                    .into_iter()
                    .map(|(name, (id, partitions, configs))| {
                        // Ids per name, so that a name keeps its id unless the case wants a
                        // re-creation (id 3 of a name stands for "the same name, a new topic").
                        let id = Uuid::from_u128(id * 100 + name.as_bytes()[0] as u128);
                        let topic = TopicMetadata {
                            name: name.clone(),
                            id,
                            partitions,
                            configs,
                            replication_factor: 1,
                        };
                        (name, topic)
                    })
                    .collect(),
                producer_id_reserved_until: pids,
                dynamic_broker_configs: broker_configs,
            })
    }

    proptest! {
        /// From any view to any other: the records apply cleanly and the image shows exactly
        /// the new view, except that partitions and producer ids never go back (the metadata
        /// log cannot shrink a topic or hand out ids twice; the broker never asks it to).
        #[test]
        fn records_turn_one_view_into_the_next(old in view(), new in view()) {
            let mut image = MetadataImage::default();
            apply(&mut image, &records_for_change(&ClusterMetadata::empty(), &old, on(0)));
            prop_assert_eq!(&view_of(&image), &old);
            let mut new = new;
            for (name, topic) in new.topics.iter_mut() {
                if let Some(before) = old.topics.get(name).filter(|t| t.id == topic.id) {
                    topic.partitions = topic.partitions.max(before.partitions);
                }
            }
            new.producer_id_reserved_until =
                new.producer_id_reserved_until.max(old.producer_id_reserved_until);
            apply(&mut image, &records_for_change(&old, &new, on(0)));
            prop_assert_eq!(&view_of(&image), &new);
            prop_assert!(image.check_invariants().is_ok());
        }
    }

    /// New partitions spread over the unfenced brokers of the image: 12 partitions on three
    /// brokers lead 4 each, and a fenced broker gets none.
    #[test]
    fn partitions_are_placed_over_the_unfenced_brokers() {
        let mut image = MetadataImage::default();
        for id in 1..=4 {
            apply(
                &mut image,
                &[MetadataRecord::RegisterBroker(BrokerRegistration {
                    broker_id: id,
                    incarnation_id: Uuid::from_u128(id as u128),
                    endpoints: Vec::new(),
                    rack: None,
                })],
            );
            if id != 4 {
                let epoch = image.brokers[&id].epoch;
                apply(
                    &mut image,
                    &[MetadataRecord::UnfenceBroker {
                        broker_id: id,
                        broker_epoch: epoch,
                    }],
                );
            }
        }
        let mut view = ClusterMetadata::empty();
        view.topics.insert(
            "t".to_string(),
            TopicMetadata {
                name: "t".to_string(),
                id: Uuid::from_u128(9),
                partitions: 12,
                configs: BTreeMap::new(),
                replication_factor: 1,
            },
        );
        let records = records_for_change(&ClusterMetadata::empty(), &view, placer(&image, 0));
        apply(&mut image, &records);
        let partitions = &image.topic("t").unwrap().partitions;
        for id in 1..=3 {
            assert_eq!(partitions.values().filter(|p| p.leader == id).count(), 4);
        }
        assert!(partitions
            .values()
            .all(|p| p.leader != 4 && p.replicas.len() == 1));
    }

    /// A single-node data dir's metadata is adopted whole: topics, ids, partition counts,
    /// configs, the cluster id, producer ids and dynamic broker configs.
    #[test]
    fn a_single_node_metadata_file_is_adopted() {
        let mut legacy = ClusterMetadata::empty();
        legacy.cluster_id = "AbCdEfGhIjKlMnOpQrStUv".to_string();
        legacy.producer_id_reserved_until = 2000;
        legacy
            .dynamic_broker_configs
            .insert("log.retention.ms".to_string(), "60000".to_string());
        legacy.topics.insert(
            "orders".to_string(),
            TopicMetadata {
                name: "orders".to_string(),
                id: Uuid::from_u128(42),
                partitions: 3,
                configs: BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]),
                replication_factor: 1,
            },
        );
        let mut image = MetadataImage::default();
        apply(
            &mut image,
            &records_for_change(&ClusterMetadata::empty(), &legacy, on(7)),
        );
        assert_eq!(view_of(&image), legacy);
        let partition = &image.topic("orders").unwrap().partitions[&2];
        assert_eq!((partition.leader, &partition.replicas), (7, &vec![7]));
    }
}
