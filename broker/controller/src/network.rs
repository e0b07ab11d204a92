//! The controller RPC: openraft's AppendEntries, Vote and InstallSnapshot between controller
//! nodes, over TCP on the controller listener.
//!
//! ```text
//!  frame:    u32 length (big-endian), then that many bytes of JSON
//!  request:  {"append": AppendEntriesRequest} | {"vote": VoteRequest} | {"snapshot": InstallSnapshotRequest}
//!  response: the handler's Result, as JSON
//! ```
//!
//! A voter is dialled at the address this node's own `controller.quorum.voters` gives it
//! ([`Routes`]), as in KRaft, not at the one the Raft membership recorded when the quorum was
//! formed: each node may reach a peer by its own route (a NAT, a proxy, another interface), and
//! the membership keeps only observers' addresses. Forwarding to the leader follows the same
//! routes.
//!
//! A client keeps one connection per peer and opens it lazily; any failure, or a call dropped
//! before its reply was read, drops it, and the next call reconnects (openraft retries and backs off after `Unreachable`). On the server a
//! malformed or oversized frame closes that one connection.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, RaftMetrics};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use std::sync::Arc;

use shale_metadata::MetadataImage;
use tokio::sync::watch;

use crate::controller::{add_learner_locally, propose_locally, ProposeError};
use crate::liveness::Liveness;
use crate::types::{NodeId, Proposal, TypeConfig};

/// Largest frame accepted (snapshots travel in chunks of `snapshot_max_chunk_size`, 3 MiB).
pub const FRAME_MAX: usize = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A proposal forwarded by a node that is not the leader (KIP-590's forwarding, between
    /// controllers): the leader writes it and answers as `Controller::propose` would.
    Propose(Proposal),
    /// The leader's Raft metrics (DescribeQuorum asked of a follower: only the leader knows
    /// how far each voter has replicated).
    LeaderMetrics,
    /// A broker-only node asks to be added as a learner (observer) at its controller address;
    /// a follower forwards it to the leader.
    AddLearner {
        node_id: NodeId,
        address: String,
    },
    /// A broker's heartbeat, forwarded to the leader (see [`crate::liveness`]).
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
    },
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    stream.write_all(&buf).await
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > FRAME_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a {len}-byte frame is larger than {FRAME_MAX}"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// Where this node dials each voter: `controller.quorum.voters` as configured here.
#[derive(Debug, Clone, Default)]
pub struct Routes(Arc<BTreeMap<NodeId, String>>);

impl Routes {
    pub fn new(voters: BTreeMap<NodeId, String>) -> Self {
        Self(Arc::new(voters))
    }

    /// The address of `node`: this node's route to it if it is a voter, else `recorded` (the
    /// address in the membership, for an observer).
    pub fn address(&self, node: NodeId, recorded: &str) -> String {
        self.0
            .get(&node)
            .cloned()
            .unwrap_or_else(|| recorded.to_string())
    }

    /// Passes a request that this node could not answer because it does not lead on to the
    /// leader its answer named, by this node's route to it; any other answer is returned.
    pub(crate) async fn via_leader<T, Fut>(
        &self,
        local: Result<T, ProposeError>,
        forward: impl FnOnce(String) -> Fut,
    ) -> Result<T, ProposeError>
    where
        Fut: std::future::Future<Output = Result<T, ProposeError>>,
    {
        match local {
            Err(ProposeError::NotLeader { leader, address }) => {
                let route = leader.and_then(|id| self.0.get(&id).cloned()).or(address);
                match route {
                    Some(address) => forward(address).await,
                    None => Err(ProposeError::NotLeader {
                        leader,
                        address: None,
                    }),
                }
            }
            other => other,
        }
    }
}

/// Makes a client per peer.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub routes: Routes,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: self.routes.address(target, &node.addr),
            stream: None,
        }
    }
}

/// One peer's connection.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    addr: String,
    stream: Option<TcpStream>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Peer {
    async fn call<T, E>(&mut self, request: &Request, option: &RPCOption) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl().max(Duration::from_millis(10));
        // The stream is taken out for the exchange and put back only after a whole reply was
        // read. Openraft wraps every RPC in its own timeout and drops this future when it fires;
        // a stream left behind mid-exchange would hand this request's reply to the next request
        // (a stale "success" counted as replication, or a stale conflict). Dropped with the
        // future, the connection closes and the next call dials afresh.
        let cached = self.stream.take();
        let exchange = async {
            let mut stream = match cached {
                Some(stream) => stream,
                None => {
                    let stream = TcpStream::connect(&self.addr)
                        .await
                        .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
                    stream
                        .set_nodelay(true)
                        .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                    stream
                }
            };
            let body = serde_json::to_vec(request).expect("a request serializes");
            write_frame(&mut stream, &body)
                .await
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            let reply = read_frame(&mut stream)
                .await
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            let result: Result<T, RaftError<NodeId, E>> = serde_json::from_slice(&reply)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            Ok((stream, result))
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok((stream, result))) => {
                self.stream = Some(stream);
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RPCError::Network(NetworkError::new(&std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no answer from node {} at {} within {ttl:?}",
                    self.target, self.addr
                ),
            )))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(&Request::Append(rpc), &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(&Request::Snapshot(rpc), &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(&Request::Vote(rpc), &option).await
    }
}

/// Sends `proposal` to the controller at `address` for it to write (one exchange on a fresh
/// connection: forwarding is rare, a few per admin request).
pub async fn forward(
    address: &str,
    proposal: Proposal,
    timeout: Duration,
) -> Result<u64, ProposeError> {
    exchange(address, &Request::Propose(proposal), timeout).await
}

/// The metrics of the leader, if this node is it.
pub(crate) fn leader_metrics_locally(
    raft: &Raft<TypeConfig>,
) -> Result<RaftMetrics<NodeId, BasicNode>, ProposeError> {
    let metrics = raft.metrics().borrow().clone();
    if metrics.current_leader == Some(metrics.id) {
        return Ok(metrics);
    }
    let address = metrics.current_leader.and_then(|leader| {
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    });
    Err(ProposeError::NotLeader {
        leader: metrics.current_leader,
        address,
    })
}

/// Asks the controller at `address` for its metrics as the leader.
pub async fn forward_leader_metrics(
    address: &str,
    timeout: Duration,
) -> Result<RaftMetrics<NodeId, BasicNode>, ProposeError> {
    exchange(address, &Request::LeaderMetrics, timeout).await
}

/// How long a follower waits for the leader when it passes a request on.
const FORWARD_HOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the controller at `address` to add `node_id` at `learner` as a learner.
pub async fn forward_add_learner(
    address: &str,
    node_id: NodeId,
    learner: &str,
    timeout: Duration,
) -> Result<(), ProposeError> {
    let request = Request::AddLearner {
        node_id,
        address: learner.to_string(),
    };
    exchange(address, &request, timeout).await
}

/// Sends a broker's heartbeat to the controller at `address`.
pub async fn forward_heartbeat(
    address: &str,
    broker_id: i32,
    broker_epoch: i64,
    timeout: Duration,
) -> Result<(), ProposeError> {
    let request = Request::Heartbeat {
        broker_id,
        broker_epoch,
    };
    exchange(address, &request, timeout).await
}

async fn exchange<T: DeserializeOwned>(
    address: &str,
    request: &Request,
    timeout: Duration,
) -> Result<T, ProposeError> {
    let unavailable = |e: std::io::Error| {
        ProposeError::Unavailable(format!("forwarding to the controller at {address}: {e}"))
    };
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let body = serde_json::to_vec(request).expect("a request serializes");
        write_frame(&mut stream, &body).await?;
        let reply = read_frame(&mut stream).await?;
        serde_json::from_slice::<Result<T, ProposeError>>(&reply)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))),
    }
}

/// What the RPC server needs of its node.
#[derive(Clone)]
pub(crate) struct ServerNode {
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) liveness: Liveness,
    pub(crate) images: watch::Receiver<Arc<MetadataImage>>,
    pub(crate) routes: Routes,
}

/// Answers peers' RPCs on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, node: ServerNode) {
    // Owned by this future: when the controller stops (the task is aborted), its connections
    // close with it, so that peers reconnect to whatever listens on the address next instead
    // of talking to a stopped Raft.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let node = node.clone();
        connections.spawn(async move {
            if let Err(e) = serve_connection(stream, &node).await {
                if e.kind() != std::io::ErrorKind::UnexpectedEof {
                    tracing::debug!(%peer, error = %e, "controller connection closed");
                }
            }
        });
    }
}

async fn serve_connection(mut stream: TcpStream, node: &ServerNode) -> std::io::Result<()> {
    let raft = &node.raft;
    stream.set_nodelay(true)?;
    loop {
        let body = read_frame(&mut stream).await?;
        let request: Request = serde_json::from_slice(&body).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a controller RPC: {e}"),
            )
        })?;
        let reply = match request {
            Request::Append(rpc) => serde_json::to_vec(&raft.append_entries(rpc).await),
            Request::Vote(rpc) => serde_json::to_vec(&raft.vote(rpc).await),
            Request::Snapshot(rpc) => serde_json::to_vec(&raft.install_snapshot(rpc).await),
            Request::Heartbeat {
                broker_id,
                broker_epoch,
            } => {
                let image = node.images.borrow().clone();
                let answer = node
                    .liveness
                    .heartbeat(raft, &image, broker_id, broker_epoch)
                    .await;
                serde_json::to_vec(&answer)
            }
            Request::Propose(proposal) => {
                serde_json::to_vec(&propose_locally(raft, proposal).await)
            }
            Request::LeaderMetrics => serde_json::to_vec(&leader_metrics_locally(raft)),
            Request::AddLearner { node_id, address } => {
                let local = add_learner_locally(raft, node_id, address.clone()).await;
                let added = node
                    .routes
                    .via_leader(local, |leader| async move {
                        forward_add_learner(&leader, node_id, &address, FORWARD_HOP_TIMEOUT).await
                    })
                    .await;
                serde_json::to_vec(&added)
            }
        }
        .map_err(std::io::Error::other)?;
        write_frame(&mut stream, &reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that numbers its replies and answers the first request only after 300 ms.
    async fn numbering_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut served = 0u64;
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                while read_frame(&mut stream).await.is_ok() {
                    served += 1;
                    if served == 1 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    let reply = serde_json::to_vec(&Ok::<u64, RaftError<NodeId>>(served)).unwrap();
                    if write_frame(&mut stream, &reply).await.is_err() {
                        break;
                    }
                }
            }
        });
        addr
    }

    /// A forwarded request goes to the leader by this node's own route when the leader is a
    /// voter, by the recorded address when it is an observer, nowhere when none is known.
    #[tokio::test]
    async fn the_leader_is_reached_by_this_nodes_route() {
        let routes = Routes::new(BTreeMap::from([(2, "own-route:2".to_string())]));
        let not_leader = |leader: Option<NodeId>, recorded: Option<&str>| {
            Err::<String, _>(ProposeError::NotLeader {
                leader,
                address: recorded.map(str::to_string),
            })
        };
        let reached = |address: String| async move { Ok(address) };
        let via = |local| routes.via_leader(local, reached);
        assert_eq!(
            via(not_leader(Some(2), Some("recorded:2"))).await.unwrap(),
            "own-route:2"
        );
        assert_eq!(via(not_leader(Some(2), None)).await.unwrap(), "own-route:2");
        assert_eq!(
            via(not_leader(Some(4), Some("recorded:4"))).await.unwrap(),
            "recorded:4"
        );
        assert!(matches!(
            via(not_leader(None, None)).await,
            Err(ProposeError::NotLeader {
                leader: None,
                address: None
            })
        ));
        assert_eq!(
            via(Ok("answered here".to_string())).await.unwrap(),
            "answered here"
        );
        assert_eq!(routes.address(2, "recorded:2"), "own-route:2");
        assert_eq!(routes.address(4, "recorded:4"), "recorded:4");
    }

    /// Openraft drops an RPC future when its own timeout fires; the reply that arrives later
    /// must not be taken as the answer to the next request on that peer.
    #[tokio::test]
    async fn a_dropped_call_does_not_leave_its_reply_for_the_next() {
        let mut peer = Peer {
            target: 2,
            addr: numbering_server().await,
            stream: None,
        };
        let request = Request::Heartbeat {
            broker_id: 1,
            broker_epoch: 1,
        };
        let long = RPCOption::new(Duration::from_secs(5));
        let dropped = tokio::time::timeout(
            Duration::from_millis(50),
            peer.call::<u64, openraft::error::Infallible>(&request, &long),
        )
        .await;
        assert!(dropped.is_err(), "the first call should have been cut off");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = peer
            .call::<u64, openraft::error::Infallible>(&request, &long)
            .await
            .unwrap();
        assert_eq!(second, 2, "the second call got the first call's reply");
    }
}
