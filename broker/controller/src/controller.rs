//! [`Controller`]: one node of the controller quorum.
//!
//! ```text
//!  start ─▶ pristine storage and a voter? ─yes─▶ initialize(all voters)   (every voter does it;
//!    │                                   │                                 the same membership, so safe)
//!    │                                   no (restart, or broker only)
//!    ▼                                   ▼
//!  follower ◀──────────── elections (openraft) ────────────▶ leader
//!                                                              │ image has no cluster id?
//!                                                              ▼
//!                                                 propose ClusterId (once, by the first leader)
//! ```
//!
//! Writes go through [`Controller::propose`] on any node: the active controller (the Raft
//! leader) writes them, a follower forwards them to it over the controller RPC (retrying
//! through an election). Every node publishes its image after each applied batch ([`Controller::subscribe`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use shale_metadata::{MetadataImage, MetadataRecord, VersionedRecord};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::liveness::Liveness;
use crate::log_store::{LogStore, NoSpaceHook};
use crate::network::{forward, forward_heartbeat, serve, Network, Routes, ServerNode};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Proposal, TypeConfig};

/// How a controller node runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// Every voter's id and controller address (`controller.quorum.voters`).
    pub voters: BTreeMap<NodeId, String>,
    /// Where the log, the vote and the snapshot live.
    pub dir: PathBuf,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// A snapshot is taken after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// What the first leader of a brand-new quorum proposes, in one entry (an adopted
    /// single-node data dir's topics and configs); a cluster id is added if it names none.
    pub bootstrap: Vec<MetadataRecord>,
    /// Frees space when a metadata write finds the disk full.
    pub no_space: Option<NoSpaceHook>,
    /// A broker not heard from for this long is fenced (`broker.session.timeout.ms`).
    pub broker_session_timeout_ms: u64,
}

impl ControllerConfig {
    /// KRaft-like timing: a dead leader is replaced within about two seconds.
    pub fn new(node_id: NodeId, voters: BTreeMap<NodeId, String>, dir: PathBuf) -> Self {
        Self {
            node_id,
            voters,
            dir,
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_after_entries: 1000,
            bootstrap: Vec::new(),
            no_space: None,
            broker_session_timeout_ms: 9000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("the controller settings are invalid: {0}")]
    Config(String),
    #[error("the metadata log in {dir} cannot be opened: {reason}")]
    Storage { dir: PathBuf, reason: String },
    #[error("the controller cannot start: {0}")]
    Raft(String),
}

/// Why a proposal did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    #[error("this node is not the active controller; the leader is {leader:?} at {address:?}")]
    NotLeader {
        leader: Option<NodeId>,
        address: Option<String>,
    },
    #[error("the proposal was committed but refused by the state machine: {0}")]
    Refused(String),
    #[error("the controller quorum is unavailable: {0}")]
    Unavailable(String),
    /// The outcome is unknown: the proposal may commit later.
    #[error("the controller quorum did not answer in time: {0}")]
    TimedOut(String),
}

/// A running controller node.
pub struct Controller {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    state_machine: StateMachine,
    log: LogStore,
    images: watch::Receiver<Arc<MetadataImage>>,
    liveness: Liveness,
    routes: Routes,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Opens the node's storage, starts Raft and the RPC server on `listener`, and bootstraps
    /// a brand-new quorum.
    pub async fn start(
        config: ControllerConfig,
        listener: TcpListener,
    ) -> Result<Self, ControllerError> {
        let raft_config = Config {
            cluster_name: "shale".to_string(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries.max(1)),
            max_in_snapshot_log_to_keep: config.snapshot_after_entries.clamp(1, 100),
            purge_batch_size: 64,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;
        let storage = |reason: String| ControllerError::Storage {
            dir: config.dir.clone(),
            reason,
        };
        let log = LogStore::open(&config.dir, config.no_space.clone())
            .map_err(|e| storage(e.to_string()))?;
        let state_machine = StateMachine::open(&config.dir).map_err(storage)?;
        let pristine = log.is_pristine() && state_machine.subscribe().borrow().cluster_id.is_none();
        let routes = Routes::new(config.voters.clone());
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network {
                routes: routes.clone(),
            },
            log.clone(),
            state_machine.clone(),
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let liveness = Liveness::default();
        let server = ServerNode {
            raft: raft.clone(),
            liveness: liveness.clone(),
            images: state_machine.subscribe(),
            routes: routes.clone(),
        };
        let listener_address = listener
            .local_addr()
            .map(|a| a.to_string())
            .map_err(|e| ControllerError::Raft(format!("the controller listener: {e}")))?;
        let mut tasks = vec![
            tokio::spawn(serve(listener, server)),
            tokio::spawn(liveness.clone().fence_silent_brokers(
                raft.clone(),
                state_machine.subscribe(),
                Duration::from_millis(config.broker_session_timeout_ms.max(1)),
            )),
        ];
        if pristine && config.voters.contains_key(&config.node_id) {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            // A single voter is alone by definition; otherwise wait to be contacted first: a
            // node whose directory was lost must rejoin the quorum it belonged to (its leader
            // replicates to it), not start a new one whose elections would disrupt it.
            let wait = if members.len() == 1 {
                Duration::ZERO
            } else {
                Duration::from_millis(2 * config.election_timeout_max_ms)
            };
            tasks.push(tokio::spawn(initialize_if_alone(
                raft.clone(),
                members,
                wait,
            )));
        }
        if !config.voters.contains_key(&config.node_id) {
            // Not a voter: an observer (a broker-only node) that the leader adds as a learner,
            // which then gets the log and snapshots like any follower but never votes.
            let address = listener_address.clone();
            tasks.push(tokio::spawn(join_as_learner(
                raft.clone(),
                config.node_id,
                address,
                config.voters.values().cloned().collect(),
            )));
        }
        let images = state_machine.subscribe();
        tasks.push(tokio::spawn(bootstrap(
            raft.clone(),
            images.clone(),
            config.bootstrap.clone(),
        )));
        Ok(Self {
            node_id: config.node_id,
            raft,
            state_machine,
            log,
            images,
            liveness,
            routes,
            tasks,
        })
    }

    /// Proposes records to be applied together, on this node if it leads, else forwarded to
    /// the leader; returns the log index they committed at. See [`Self::wait_applied`] to read
    /// them back from this node's image.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        let proposal = Proposal {
            records: records.into_iter().map(VersionedRecord::new).collect(),
        };
        let (raft, proposal, routes) = (&self.raft, &proposal, &self.routes);
        let committed = retry_through_elections(move || async move {
            let local = propose_locally(raft, proposal.clone()).await;
            routes
                .via_leader(local, |leader| async move {
                    forward(&leader, proposal.clone(), FORWARD_TIMEOUT).await
                })
                .await
        });
        // A leader cut off from the other voters still takes proposals and never commits them
        // (openraft waits for a majority); nothing else bounds the wait.
        match tokio::time::timeout(PROPOSE_TIMEOUT, committed).await {
            Ok(answer) => answer,
            Err(_) => Err(ProposeError::TimedOut(format!(
                "not committed within {PROPOSE_TIMEOUT:?} (can this node reach a majority of the voters?); it may still be"
            ))),
        }
    }

    /// A broker's heartbeat; see [`Heartbeater::heartbeat`].
    pub async fn heartbeat(&self, broker_id: i32, broker_epoch: i64) -> Result<(), ProposeError> {
        self.heartbeater().heartbeat(broker_id, broker_epoch).await
    }

    /// A handle that sends heartbeats through this node, for a broker's heartbeat task.
    pub fn heartbeater(&self) -> Heartbeater {
        Heartbeater {
            raft: self.raft.clone(),
            liveness: self.liveness.clone(),
            images: self.images.clone(),
            routes: self.routes.clone(),
        }
    }

    /// Waits until this node has applied the entry at `index` (a proposal's, say), so that its
    /// image shows it.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ProposeError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "a proposal to be applied")
            .await
            .map(|_| ())
            .map_err(|e| ProposeError::Unavailable(format!("entry {index} not applied here: {e}")))
    }

    /// The image as of the last entry this node applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// The image now and after every applied batch.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The active controller as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// openraft's view: term, last log index, applied, membership, per-follower match index.
    pub fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The leader's metrics (which know every voter's replication progress), from this node
    /// if it leads, else asked of the leader.
    pub async fn leader_metrics(&self) -> Result<RaftMetrics<NodeId, BasicNode>, ProposeError> {
        let local = crate::network::leader_metrics_locally(&self.raft);
        self.routes
            .via_leader(local, |leader| async move {
                crate::network::forward_leader_metrics(&leader, METRICS_FORWARD_TIMEOUT).await
            })
            .await
    }

    /// Entries in the local log, and snapshots this process built (for status and tests).
    pub fn storage_counts(&self) -> (usize, u64) {
        (self.log.len(), self.state_machine.snapshots_built())
    }

    /// Whether the metadata log in `dir` has never been written: no vote, no entry, no
    /// snapshot (a new node, or a single-node data dir from before the metadata log).
    pub fn is_pristine(dir: &std::path::Path) -> std::io::Result<bool> {
        if !dir.exists() {
            return Ok(true);
        }
        let log = LogStore::open(dir, None)?;
        Ok(log.is_pristine() && !dir.join(crate::state_machine::SNAPSHOT_FILE).exists())
    }

    /// Stops Raft and the RPC server.
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "the controller did not shut down cleanly");
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Sends a broker's heartbeats through one controller node.
#[derive(Clone)]
pub struct Heartbeater {
    raft: Raft<TypeConfig>,
    liveness: Liveness,
    images: watch::Receiver<Arc<MetadataImage>>,
    routes: Routes,
}

impl Heartbeater {
    /// A broker's heartbeat (`broker_epoch` from its registration), recorded by the leader,
    /// forwarded there from any other node. Refused for an epoch that is not the registered one.
    pub async fn heartbeat(&self, broker_id: i32, broker_epoch: i64) -> Result<(), ProposeError> {
        // One attempt, briefly: the broker heartbeats again within its interval anyway, and a
        // heartbeat stuck on a paused or dead leader would keep it from the new one until the
        // new leader's session for it ran out (every broker fenced after a failover).
        let image = self.images.borrow().clone();
        let local = self
            .liveness
            .heartbeat(&self.raft, &image, broker_id, broker_epoch)
            .await;
        self.routes
            .via_leader(local, |leader| async move {
                forward_heartbeat(&leader, broker_id, broker_epoch, HEARTBEAT_FORWARD_TIMEOUT).await
            })
            .await
    }
}

/// Runs `attempt` until it neither finds no leader nor an unreachable one (an election may be
/// under way: a leader that has just lost its term answers NotLeader too), backing off, at most
/// [`FORWARD_ATTEMPTS`] times.
async fn retry_through_elections<T, Fut>(
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, ProposeError>
where
    Fut: std::future::Future<Output = Result<T, ProposeError>>,
{
    let mut last = None;
    for round in 0..FORWARD_ATTEMPTS {
        match attempt().await {
            Err(e @ (ProposeError::NotLeader { .. } | ProposeError::Unavailable(_))) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50 << round)).await;
            }
            other => return other,
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Proposals forwarded to the leader at most this often before giving up (an election may be
/// under way).
const FORWARD_ATTEMPTS: u32 = 5;
/// How long a proposal may take in all, elections and forwarding included (below the 30 s
/// request timeout of Kafka's clients, so that they get our answer, REQUEST_TIMED_OUT).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a proposal waits for the leader it was forwarded to (a paused leader accepts the
/// connection and never answers; after this the proposal looks for the leader again).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a forwarded heartbeat or DescribeQuorum waits for the leader.
const HEARTBEAT_FORWARD_TIMEOUT: Duration = Duration::from_secs(1);
const METRICS_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Writes `proposal` if this node leads; never forwards (the forwarding RPC's server side).
pub(crate) async fn propose_locally(
    raft: &Raft<TypeConfig>,
    proposal: Proposal,
) -> Result<u64, ProposeError> {
    match raft.client_write(proposal).await {
        Ok(response) => match response.data.refused {
            Some(reason) => Err(ProposeError::Refused(reason)),
            None => Ok(response.log_id.index),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(ProposeError::NotLeader {
                leader: forward.leader_id,
                address: forward.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(ProposeError::Unavailable(e.to_string())),
    }
}

/// Asks the voters, one after another, until one that leads (or knows the leader) adds this
/// node as a learner at `address`; then returns. A node already in the membership (restarted)
/// is done at once.
async fn join_as_learner(
    raft: Raft<TypeConfig>,
    node_id: NodeId,
    address: String,
    voters: Vec<String>,
) {
    let mut attempt = 0usize;
    loop {
        let known = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node_id)
            .is_some_and(|n| n.addr == address);
        if known {
            return;
        }
        let voter = &voters[attempt % voters.len().max(1)];
        attempt += 1;
        match crate::network::forward_add_learner(voter, node_id, &address, FORWARD_TIMEOUT).await {
            Ok(()) => {
                tracing::info!(node_id, %address, "joined the controller quorum as an observer (learner)");
                return;
            }
            Err(e) => {
                tracing::debug!(node_id, voter = %voter, error = %e, "cannot join the quorum yet")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Adds `node_id` at `address` as a learner if this node leads; otherwise says who does.
pub(crate) async fn add_learner_locally(
    raft: &Raft<TypeConfig>,
    node_id: NodeId,
    address: String,
) -> Result<(), ProposeError> {
    match raft
        .add_learner(node_id, BasicNode::new(address), false)
        .await
    {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(ProposeError::NotLeader {
                leader: forward.leader_id,
                address: forward.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => Err(ProposeError::Unavailable(e.to_string())),
    }
}

/// Initializes a brand-new quorum unless, within `wait`, a leader made contact (this node then
/// belongs to an existing one). Every voter of a new cluster does it with the same membership,
/// which openraft allows.
async fn initialize_if_alone(
    raft: Raft<TypeConfig>,
    members: BTreeMap<NodeId, BasicNode>,
    wait: Duration,
) {
    tokio::time::sleep(wait).await;
    let contacted = {
        let m = raft.metrics().borrow().clone();
        m.current_leader.is_some() || m.last_log_index.is_some() || m.current_term > 0
    };
    if contacted {
        return;
    }
    match raft.initialize(members.clone()).await {
        Ok(()) => tracing::info!(voters = ?members, "initialized a new controller quorum"),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
        Err(e) => tracing::error!(error = %e, "cannot initialize the controller quorum"),
    }
}

/// The first leader of a new cluster proposes its bootstrap records and gives it its id (a
/// 22-character string, as Kafka's) if they do not.
async fn bootstrap(
    raft: Raft<TypeConfig>,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    records: Vec<MetadataRecord>,
) {
    let mut records = records;
    if !records
        .iter()
        .any(|r| matches!(r, MetadataRecord::ClusterId { .. }))
    {
        let cluster_id = uuid::Uuid::new_v4().simple().to_string()[..22].to_string();
        records.insert(0, MetadataRecord::ClusterId { cluster_id });
    }
    let mut metrics = raft.metrics();
    loop {
        let leading = metrics.borrow().state == ServerState::Leader;
        if images.borrow().cluster_id.is_some() {
            return;
        }
        if leading {
            let proposal = Proposal {
                records: records.iter().cloned().map(VersionedRecord::new).collect(),
            };
            match propose_locally(&raft, proposal).await {
                Ok(_) => {}
                Err(ProposeError::Refused(reason)) => {
                    tracing::error!(%reason, "the bootstrap records of the new cluster were refused");
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot name the cluster yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            changed = images.changed() => if changed.is_err() { return },
        }
    }
}
