//! Followers copy their leaders: one fetcher task per source broker (Kafka's
//! `ReplicaFetcherThread`), each fetching every partition this broker follows on that leader in
//! one Fetch request, as a replica (`replica_id` = this broker), sessionless.
//!
//! ```text
//!  sync_with_metadata ──update(targets)──▶ ReplicaFetchers ──one task per (leader, address)──▶
//!    loop: connect ─▶ Fetch(offset = local log end, last fetched epoch = local latest epoch,
//!          current leader epoch) ─▶ per partition:
//!            diverging epoch (KIP-320) ─▶ truncate to min(its end, our end of that epoch)
//!            records                     ─▶ append as they are; high watermark = leader's, capped
//!            OFFSET_OUT_OF_RANGE below the leader's local start ─▶ restart the log there
//!            NOT_LEADER / FENCED / UNKNOWN epoch ─▶ back off; the next image moves the partition
//! ```
//!
//! The follower's log end, sent as the fetch offset, is how the leader learns what this
//! replica has (for the high watermark and the ISR). Truncation is by leader epoch only,
//! never by high watermark.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::ResponseError;
use shale_formats::ids::{LeaderEpoch, Offset};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::partition::{Partition, TopicPartition};

/// The Fetch version followers send: the first with diverging epochs (KIP-320) and topic names.
const FETCH_VERSION: i16 = 12;
/// Bound on connecting and on one round trip beyond the leader's own wait.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition this broker follows, and where its leader is.
#[derive(Clone)]
pub struct FollowTarget {
    pub partition: Arc<Partition>,
    pub leader: i32,
    /// The leader's client listener, `HOST:PORT`.
    pub address: String,
    pub leader_epoch: LeaderEpoch,
}

/// How followers fetch (`replica.fetch.*`).
#[derive(Debug, Clone, Copy)]
pub struct FetchSettings {
    pub replica_id: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    pub max_wait_ms: i32,
    pub backoff: Duration,
}

type Targets = BTreeMap<TopicPartition, FollowTarget>;

/// The fetcher tasks, one per leader.
pub struct ReplicaFetchers {
    settings: FetchSettings,
    runtime: Option<tokio::runtime::Handle>,
    fetchers: Mutex<HashMap<(i32, String), Fetcher>>,
}

struct Fetcher {
    targets: watch::Sender<Targets>,
    task: tokio::task::JoinHandle<()>,
}

impl ReplicaFetchers {
    /// Fetchers on the current runtime (none outside one: a broker opened by a tool).
    pub fn new(settings: FetchSettings) -> Self {
        Self {
            settings,
            runtime: tokio::runtime::Handle::try_current().ok(),
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the fetchers follow exactly `targets`: partitions move between fetchers, a fetcher
    /// left with nothing stops, a new leader gets one.
    pub fn update(&self, targets: Vec<FollowTarget>) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        let mut by_leader: HashMap<(i32, String), Targets> = HashMap::new();
        for t in targets {
            by_leader
                .entry((t.leader, t.address.clone()))
                .or_default()
                .insert(t.partition.tp.clone(), t);
        }
        let mut fetchers = self.fetchers.lock().expect("fetchers lock");
        fetchers.retain(|key, fetcher| {
            let keep = by_leader.contains_key(key);
            if !keep {
                fetcher.task.abort();
            }
            keep
        });
        for (key, targets) in by_leader {
            match fetchers.get(&key) {
                Some(fetcher) => {
                    fetcher.targets.send_if_modified(|current| {
                        let same = current.len() == targets.len()
                            && current.iter().zip(&targets).all(|((a, x), (b, y))| {
                                a == b
                                    && x.leader_epoch == y.leader_epoch
                                    && Arc::ptr_eq(&x.partition, &y.partition)
                            });
                        if !same {
                            *current = targets;
                        }
                        !same
                    });
                }
                None => {
                    let (tx, rx) = watch::channel(targets);
                    let task = runtime.spawn(run(key.0, key.1.clone(), self.settings, rx));
                    fetchers.insert(key, Fetcher { targets: tx, task });
                }
            }
        }
    }

    /// Stops every fetcher.
    pub fn shutdown(&self) {
        let mut fetchers = self.fetchers.lock().expect("fetchers lock");
        for (_, fetcher) in fetchers.drain() {
            fetcher.task.abort();
        }
    }
}

impl Drop for ReplicaFetchers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One fetcher: fetches from `leader` at `address` until aborted.
async fn run(
    leader: i32,
    address: String,
    settings: FetchSettings,
    mut targets: watch::Receiver<Targets>,
) {
    let mut connection: Option<Connection> = None;
    loop {
        let current = targets.borrow_and_update().clone();
        if current.is_empty() {
            if targets.changed().await.is_err() {
                return;
            }
            continue;
        }
        if connection.is_none() {
            match Connection::connect(&address, settings.replica_id).await {
                Ok(c) => connection = Some(c),
                Err(e) => {
                    tracing::debug!(leader, %address, error = %e, "cannot reach the leader to fetch from it");
                    tokio::time::sleep(settings.backoff).await;
                    continue;
                }
            }
        }
        let conn = connection.as_mut().expect("connected above");
        let request = fetch_request(&current, settings);
        let response = match conn.fetch(request, settings.max_wait_ms).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader, %address, error = %e, "fetch from the leader failed");
                connection = None;
                tokio::time::sleep(settings.backoff).await;
                continue;
            }
        };
        let backoff = apply_response(&current, response).await;
        if backoff {
            tokio::time::sleep(settings.backoff.min(Duration::from_millis(200))).await;
        }
    }
}

fn fetch_request(targets: &Targets, settings: FetchSettings) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, target) in targets {
        let (fetch_offset, last_epoch, log_start) = {
            let log = target.partition.log();
            (
                log.log_end_offset(),
                log.latest_epoch().unwrap_or(LeaderEpoch::UNDEFINED),
                log.log_start_offset(),
            )
        };
        let partition = FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(target.leader_epoch.get())
            .with_fetch_offset(fetch_offset.get())
            .with_last_fetched_epoch(last_epoch.get())
            .with_log_start_offset(log_start.get())
            .with_partition_max_bytes(settings.partition_max_bytes);
        match topics.last_mut() {
            Some(t) if t.topic.as_str() == tp.topic => t.partitions.push(partition),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(settings.replica_id))
        .with_max_wait_ms(settings.max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(settings.max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies one response; returns whether the fetcher should back off (an error answer).
async fn apply_response(targets: &Targets, response: FetchResponse) -> bool {
    if response.error_code != 0 {
        tracing::debug!(
            error = response.error_code,
            "the leader refused a follower fetch"
        );
        return true;
    }
    let mut backoff = false;
    let mut work = Vec::new();
    for topic in response.responses {
        for data in topic.partitions {
            let tp = TopicPartition {
                topic: topic.topic.to_string(),
                partition: data.partition_index,
            };
            let Some(target) = targets.get(&tp) else {
                continue;
            };
            work.push((target.clone(), data));
        }
    }
    // Appends and truncations write files: on the blocking pool, all partitions in one call.
    let outcomes = crate::blocking::run(move || {
        work.into_iter()
            .map(|(target, data)| apply_partition(&target, data))
            .collect::<Vec<bool>>()
    })
    .await;
    backoff |= outcomes.into_iter().any(|b| b);
    backoff
}

/// Applies one partition's answer; returns whether it was an error worth backing off for.
fn apply_partition(
    target: &FollowTarget,
    data: kafka_protocol::messages::fetch_response::PartitionData,
) -> bool {
    let partition = &target.partition;
    // The image may have moved on since the request went out: a partition this broker now
    // leads, or follows in another epoch, is left to its new role.
    if partition.leader_epoch().is_some() || partition.known_epoch() != target.leader_epoch {
        return false;
    }
    let now = crate::broker::now_ms();
    match ResponseError::try_from_code(data.error_code) {
        None => {}
        Some(ResponseError::OffsetOutOfRange) => {
            let end = partition.log().log_end_offset();
            let leader_start = Offset::new(data.log_start_offset);
            if data.log_start_offset >= 0 && end < leader_start {
                // The leader no longer has what this replica lacks locally (retention, or
                // segments moved to the remote tier): start again where its local log starts.
                match partition.restart_at(leader_start) {
                    Ok(()) => {
                        tracing::info!(tp = %partition.tp, %end, start = %leader_start, "follower restarted its log at its leader's local log start")
                    }
                    Err(e) => {
                        tracing::error!(tp = %partition.tp, error = %e, "follower cannot restart its log")
                    }
                }
                return false;
            }
            tracing::warn!(tp = %partition.tp, %end, leader_start = data.log_start_offset, "follower fetch offset out of range at the leader");
            return true;
        }
        Some(e) => {
            tracing::debug!(tp = %partition.tp, error = ?e, "the leader refused a follower fetch of a partition");
            return true;
        }
    }
    let diverging = &data.diverging_epoch;
    if diverging.epoch >= 0 && diverging.end_offset >= 0 {
        let leader_end = Offset::new(diverging.end_offset);
        let (local_epoch, local_end) = partition
            .log()
            .end_offset_for_epoch(LeaderEpoch::new(diverging.epoch));
        let to = if local_epoch.is_defined() && local_end != Offset::UNKNOWN {
            local_end.min(leader_end)
        } else {
            leader_end
        };
        match partition.truncate_to(to) {
            Ok(truncated) => {
                if truncated {
                    tracing::info!(tp = %partition.tp, offset = %to, leader_epoch = diverging.epoch, "follower truncated its log where it diverged from its leader");
                }
            }
            Err(e) => {
                tracing::error!(tp = %partition.tp, error = %e, "follower cannot truncate its log");
                return true;
            }
        }
        return false;
    }
    let records = data.records.unwrap_or_default();
    let hw = Offset::new(data.high_watermark.max(0));
    match partition.append_as_follower(&records, hw, now) {
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(tp = %partition.tp, error = %e, "follower cannot append what its leader sent");
            true
        }
    }
}

/// A connection to a leader's client listener.
struct Connection {
    stream: BufReader<TcpStream>,
    correlation_id: i32,
    client_id: StrBytes,
}

impl Connection {
    async fn connect(address: &str, replica_id: i32) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            correlation_id: 0,
            client_id: StrBytes::from_string(format!("shale-replica-{replica_id}")),
        })
    }

    async fn fetch(
        &mut self,
        request: FetchRequest,
        max_wait_ms: i32,
    ) -> std::io::Result<FetchResponse> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(FETCH_VERSION)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, FetchRequest::header_version(FETCH_VERSION))
            .map_err(|e| invalid(e.to_string()))?;
        request
            .encode(&mut body, FETCH_VERSION)
            .map_err(|e| invalid(e.to_string()))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_u32(body.len() as u32);
        frame.extend_from_slice(&body);
        let wait = IO_TIMEOUT + Duration::from_millis(max_wait_ms.max(0) as u64);
        let correlation_id = self.correlation_id;
        let stream = &mut self.stream;
        tokio::time::timeout(wait, async move {
            stream.get_mut().write_all(&frame).await?;
            let size = stream.read_u32().await? as usize;
            if size > 256 << 20 {
                return Err(invalid(format!("a fetch response of {size} bytes")));
            }
            let mut buf = vec![0u8; size];
            stream.read_exact(&mut buf).await?;
            let mut buf = bytes::Bytes::from(buf);
            let header =
                ResponseHeader::decode(&mut buf, FetchResponse::header_version(FETCH_VERSION))
                    .map_err(|e| invalid(e.to_string()))?;
            if header.correlation_id != correlation_id {
                return Err(invalid(format!(
                    "response to request {} where {correlation_id} was expected",
                    header.correlation_id
                )));
            }
            let response = FetchResponse::decode(&mut buf, FETCH_VERSION)
                .map_err(|e| invalid(e.to_string()))?;
            if buf.has_remaining() {
                return Err(invalid("trailing bytes after a fetch response".to_string()));
            }
            Ok(response)
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "fetch timed out"))?
    }
}
