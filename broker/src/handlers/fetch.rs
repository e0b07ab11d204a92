//! Fetch v4–16: whole stored batches from each requested partition up to the high watermark,
//! within the partition and response byte limits (always at least one batch for the first
//! partition with data, KIP-74), long-polling until `min_bytes` arrive or `max_wait_ms` passes.
//!
//! Fetch sessions (KIP-227): every response carries session id 0, which tells clients that no
//! session was created, so they keep sending full fetch requests. That is a documented broker
//! answer (a broker whose session cache is full does the same); incremental sessions would save
//! request bytes for consumers of many partitions and are future work.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use tokio::sync::watch;

use super::{sb, RequestContext};
use crate::broker::Broker;
use crate::partition::Partition;

pub const MIN_VERSION: i16 = 4;
pub const MAX_VERSION: i16 = 16;

/// `isolation_level` READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: FetchRequest,
) -> FetchResponse {
    if req.session_id != 0 || req.session_epoch > 0 {
        // We never hand out sessions, so an incremental fetch names one we do not have.
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    let targets = resolve(broker, ctx.api_version, &req.topics);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let response_max = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        // Subscribe before reading so an append between the read and the wait still wakes us.
        let mut watchers: Vec<watch::Receiver<i64>> = targets
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|(_, p)| p.as_ref().map(|p| p.watch_high_watermark()))
            .collect();
        let (responses, total, errored) = read_all(&targets, &req, response_max);
        let now = tokio::time::Instant::now();
        if total >= min_bytes || errored || watchers.is_empty() || now >= deadline {
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        let changed =
            futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

/// A requested topic, resolved to this broker's partitions (`None` = not hosted here).
struct Target {
    name: TopicName,
    topic_id: uuid::Uuid,
    /// Set when the whole topic is unknown.
    topic_error: Option<ResponseError>,
    partitions: Vec<(
        kafka_protocol::messages::fetch_request::FetchPartition,
        Option<Arc<Partition>>,
    )>,
}

fn resolve(broker: &Broker, version: i16, topics: &[FetchTopic]) -> Vec<Target> {
    let meta = broker.metadata();
    topics
        .iter()
        .map(|t| {
            let (name, topic_error) = if version >= 13 {
                match meta.topic_by_id(t.topic_id) {
                    Some(m) => (m.name.clone(), None),
                    None => (String::new(), Some(ResponseError::UnknownTopicId)),
                }
            } else if meta.topics.contains_key(t.topic.as_str()) {
                (t.topic.to_string(), None)
            } else {
                (
                    t.topic.to_string(),
                    Some(ResponseError::UnknownTopicOrPartition),
                )
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let hosted = if topic_error.is_none() {
                        broker.partition(&name, p.partition)
                    } else {
                        None
                    };
                    (p.clone(), hosted)
                })
                .collect();
            Target {
                name: if version >= 13 {
                    t.topic.clone()
                } else {
                    TopicName(sb(name))
                },
                topic_id: t.topic_id,
                topic_error,
                partitions,
            }
        })
        .collect()
}

fn read_all(
    targets: &[Target],
    req: &FetchRequest,
    response_max: usize,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut errored = false;
    let read_committed = req.isolation_level == READ_COMMITTED;
    let responses = targets
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|(fp, hosted)| {
                    let data = PartitionData::default()
                        .with_partition_index(fp.partition)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_aborted_transactions(read_committed.then(Vec::new))
                        .with_records(Some(Bytes::new()));
                    let Some(partition) = hosted else {
                        errored = true;
                        let e = t
                            .topic_error
                            .unwrap_or(ResponseError::UnknownTopicOrPartition);
                        return data.with_error_code(e.code());
                    };
                    if let Some(e) = epoch_error(fp.current_leader_epoch, partition.leader_epoch) {
                        errored = true;
                        return data.with_error_code(e.code());
                    }
                    let hw = partition.high_watermark();
                    let log_start = partition.log().log_start_offset();
                    let data = data
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(log_start);
                    let budget = response_max.saturating_sub(total);
                    let partition_max = (fp.partition_max_bytes.max(0) as usize).min(budget);
                    if partition_max == 0 && total > 0 {
                        return data;
                    }
                    match partition.read(fp.fetch_offset, partition_max, total == 0) {
                        Ok(read) => {
                            total += read.records.len();
                            data.with_records(Some(read.records))
                        }
                        Err(e) => {
                            errored = true;
                            let e = super::log_error(&partition.tp, e);
                            data.with_error_code(e.code())
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    (responses, total, errored)
}

/// Kafka's leader-epoch check: a client ahead of us is UNKNOWN_LEADER_EPOCH, one behind is
/// FENCED_LEADER_EPOCH; -1 means the client did not say.
pub(crate) fn epoch_error(requested: i32, current: i32) -> Option<ResponseError> {
    if requested < 0 || requested == current {
        None
    } else if requested > current {
        Some(ResponseError::UnknownLeaderEpoch)
    } else {
        Some(ResponseError::FencedLeaderEpoch)
    }
}
