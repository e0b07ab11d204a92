//! Quorums of real controller nodes on 127.0.0.1, each with its own directory, in one process.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shale_metadata::{MetadataRecord, PartitionRecord};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::{Controller, ControllerConfig, NodeId, ProposeError};

struct Cluster {
    dirs: BTreeMap<NodeId, tempfile::TempDir>,
    voters: BTreeMap<NodeId, String>,
    nodes: BTreeMap<NodeId, Controller>,
    snapshot_after: u64,
}

impl Cluster {
    async fn start(n: u64, snapshot_after: u64) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut listeners = BTreeMap::new();
        let mut voters = BTreeMap::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            voters.insert(id, listener.local_addr().unwrap().to_string());
            listeners.insert(id, listener);
        }
        let mut cluster = Cluster {
            dirs: (1..=n)
                .map(|id| (id, tempfile::tempdir().unwrap()))
                .collect(),
            voters,
            nodes: BTreeMap::new(),
            snapshot_after,
        };
        for (id, listener) in listeners {
            cluster.start_node(id, listener).await;
        }
        cluster
    }

    fn config(&self, id: NodeId) -> ControllerConfig {
        ControllerConfig {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_after_entries: self.snapshot_after,
            broker_session_timeout_ms: 1500,
            ..ControllerConfig::new(id, self.voters.clone(), self.dirs[&id].path().join("meta"))
        }
    }

    async fn start_node(&mut self, id: NodeId, listener: TcpListener) {
        let node = Controller::start(self.config(id), listener).await.unwrap();
        self.nodes.insert(id, node);
    }

    /// Restarts a stopped node on its old address and directory.
    async fn restart(&mut self, id: NodeId) {
        let listener = TcpListener::bind(&self.voters[&id]).await.unwrap();
        self.start_node(id, listener).await;
    }

    async fn stop(&mut self, id: NodeId) {
        self.nodes.remove(&id).unwrap().shutdown().await;
    }

    /// The leader all running nodes agree on.
    async fn leader(&self, timeout: Duration) -> NodeId {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<NodeId>> = self.nodes.values().map(|n| n.leader()).collect();
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*leader))
                    && self.nodes.get(leader).is_some_and(|n| n.is_leader())
                {
                    return *leader;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        let leader = self.leader(Duration::from_secs(10)).await;
        self.nodes[&leader].propose(records).await
    }

    /// Waits until every running node's image equals the leader's.
    async fn converged(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let images: Vec<_> = self.nodes.values().map(|n| n.image()).collect();
            if images.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(Instant::now() < deadline, "images differ: {images:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn topic(name: &str, partitions: i32, leader: i32) -> Vec<MetadataRecord> {
    let topic_id = Uuid::new_v4();
    let mut records = vec![MetadataRecord::Topic {
        name: name.to_string(),
        topic_id,
    }];
    for partition in 0..partitions {
        records.push(MetadataRecord::Partition(PartitionRecord {
            topic_id,
            partition,
            replicas: vec![leader],
            isr: vec![leader],
            leader,
            start_offset: None,
        }));
    }
    records
}

/// Three nodes elect one leader, name the cluster once, apply a multi-record proposal on all
/// of them; a follower forwards a proposal to the leader and, once it has applied it, shows
/// it; a refused proposal (a duplicate topic) changes nothing anywhere, also when forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_and_refuse() {
    let cluster = Cluster::start(3, 1000).await;
    let leader = cluster.leader(Duration::from_secs(10)).await;
    cluster.propose(topic("orders", 12, 1)).await.unwrap();
    cluster.converged().await;
    let image = cluster.nodes[&leader].image();
    assert!(image.cluster_id.is_some());
    assert_eq!(image.topic("orders").unwrap().partitions.len(), 12);
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let index = cluster.nodes[&follower]
        .propose(topic("other", 1, 1))
        .await
        .unwrap();
    cluster.nodes[&follower]
        .wait_applied(index, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(cluster.nodes[&follower].image().topic("other").is_some());
    let refused = cluster.nodes[&follower].propose(topic("other", 1, 1)).await;
    assert!(
        matches!(refused, Err(ProposeError::Refused(_))),
        "{refused:?}"
    );
    let duplicate = cluster.propose(topic("orders", 1, 2)).await.unwrap_err();
    assert!(matches!(duplicate, ProposeError::Refused(_)), "{duplicate}");
    cluster.converged().await;
    assert_eq!(
        cluster.nodes[&follower].image(),
        cluster.nodes[&leader].image()
    );
}

/// The leader stops: another is elected within a few election timeouts and takes writes; the
/// old leader comes back on its directory and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover_and_rejoin() {
    let mut cluster = Cluster::start(3, 1000).await;
    let first = cluster.leader(Duration::from_secs(10)).await;
    cluster.propose(topic("a", 3, 1)).await.unwrap();
    let stopped = Instant::now();
    cluster.stop(first).await;
    let second = cluster.leader(Duration::from_secs(10)).await;
    let failover = stopped.elapsed();
    assert_ne!(second, first);
    eprintln!("controller failover: {failover:?} (election timeout 300-600 ms)");
    cluster.propose(topic("b", 3, 2)).await.unwrap();
    cluster.restart(first).await;
    cluster.converged().await;
    let image = cluster.nodes[&first].image();
    assert!(image.topic("a").is_some() && image.topic("b").is_some());
}

/// With a snapshot every 20 entries, 120 proposals leave a short log; after the whole quorum
/// restarts, every node has the same image as before; a node whose directory was lost gets
/// the snapshot from the leader (its log was purged past what it needs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_truncate_the_log_and_restore_the_image() {
    let mut cluster = Cluster::start(3, 20).await;
    for i in 0..120 {
        cluster
            .propose(topic(&format!("t{i}"), 2, 1))
            .await
            .unwrap();
    }
    cluster.converged().await;
    let before = cluster.nodes.values().next().unwrap().image();
    assert_eq!(before.topics.len(), 120);
    for node in cluster.nodes.values() {
        let (entries, snapshots) = node.storage_counts();
        assert!(snapshots >= 1, "node {} built no snapshot", node.node_id());
        assert!(
            entries < 120,
            "node {} still holds {entries} entries",
            node.node_id()
        );
    }
    let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
    for id in &ids {
        cluster.stop(*id).await;
    }
    for id in &ids {
        cluster.restart(*id).await;
    }
    cluster.leader(Duration::from_secs(10)).await;
    cluster.converged().await;
    for node in cluster.nodes.values() {
        assert_eq!(
            node.image(),
            before,
            "node {} after the restart",
            node.node_id()
        );
    }
    // Node 3 loses its directory: the leader sends it a snapshot.
    cluster.stop(3).await;
    cluster.dirs.insert(3, tempfile::tempdir().unwrap());
    cluster.restart(3).await;
    cluster.propose(topic("after", 1, 1)).await.unwrap();
    cluster.converged().await;
    assert_eq!(cluster.nodes[&3].image().topics.len(), 121);
}

fn registration(id: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker(shale_metadata::BrokerRegistration {
        broker_id: id,
        incarnation_id: Uuid::new_v4(),
        endpoints: Vec::new(),
        rack: None,
    })
}

/// Heartbeats of broker `id` through node `via` every 100 ms until the task is aborted.
fn heartbeats(cluster: &Cluster, via: NodeId, id: i32) -> tokio::task::JoinHandle<()> {
    let node = &cluster.nodes[&via];
    let epoch = node.image().brokers[&id].epoch;
    let handle = node.heartbeater();
    tokio::spawn(async move {
        loop {
            let _ = handle.heartbeat(id, epoch).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

async fn wait_fenced(cluster: &Cluster, id: i32, fenced: bool, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let images: Vec<_> = cluster.nodes.values().map(|n| n.image()).collect();
        if images
            .iter()
            .all(|i| i.brokers.get(&id).is_some_and(|b| b.fenced == fenced))
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "broker {id} not {} within {within:?}",
            if fenced { "fenced" } else { "unfenced" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registered brokers that heartbeat (through any node) are unfenced; one that stops is fenced
/// after the session timeout and unfenced when it comes back; after a leader failover the new
/// leader gives everyone a full session and fences only the broker whose node is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_brokers_are_fenced_and_come_back() {
    let mut cluster = Cluster::start(3, 1000).await;
    for id in 1..=3 {
        cluster.propose(vec![registration(id)]).await.unwrap();
    }
    cluster.converged().await;
    let mut beats: BTreeMap<i32, _> = (1..=3)
        .map(|id| (id, heartbeats(&cluster, id as NodeId, id)))
        .collect();
    for id in 1..=3 {
        wait_fenced(&cluster, id, false, Duration::from_secs(5)).await;
    }
    beats.remove(&2).unwrap().abort();
    let fenced_after = wait_fenced(&cluster, 2, true, Duration::from_secs(5)).await;
    eprintln!("a silent broker was fenced {fenced_after:?} after its last heartbeat (session timeout 1.5 s)");
    assert!(
        fenced_after >= Duration::from_millis(1300),
        "{fenced_after:?}"
    );
    beats.insert(2, heartbeats(&cluster, 2, 2));
    wait_fenced(&cluster, 2, false, Duration::from_secs(5)).await;

    let leader = cluster.leader(Duration::from_secs(10)).await;
    let leader_broker = leader as i32;
    beats.remove(&leader_broker).unwrap().abort();
    cluster.stop(leader).await;
    cluster.leader(Duration::from_secs(10)).await;
    wait_fenced(&cluster, leader_broker, true, Duration::from_secs(6)).await;
    for id in (1..=3).filter(|id| *id != leader_broker) {
        let image = cluster.nodes.values().next().unwrap().image();
        assert!(
            !image.brokers[&id].fenced,
            "broker {id} was fenced across the failover"
        );
    }
    for (_, beat) in beats {
        beat.abort();
    }
}
