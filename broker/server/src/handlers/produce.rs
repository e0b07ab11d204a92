//! Produce v3–11: validate each partition's batches (sizes, magic, CRC-32C, producer fields,
//! timestamps) without touching the records, then append them as leader; acks 0, 1 and all.
//!
//! acks=all: refused with NOT_ENOUGH_REPLICAS before anything is appended if the ISR is smaller
//! than `min.insync.replicas`; after the append the answer waits until the high watermark
//! passes the batches (the whole ISR has them), at most the request's `timeout_ms`
//! (REQUEST_TIMED_OUT), and is NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below the
//! minimum meanwhile, NOT_LEADER_OR_FOLLOWER if this broker stopped leading. With the topic's
//! `write.caching=false` (the default) it also waits until the leader's copy is fsynced: the
//! partitions go to the group committer ([`crate::group_commit`]), so one fdatasync covers
//! every produce that appended to a partition meanwhile. acks=0 and acks=1 wait for neither.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use shale_formats::batch::{self, BatchError, ValidateOptions};
use shale_formats::compression::Compression;
use shale_formats::ids::{LeaderEpoch, Offset};
use shale_formats::record;

use super::{sb, RequestContext};
use crate::broker::{now_ms, ApiError, Broker};
use crate::partition::{AppendError, Partition, ReplicationError};
use crate::topic_config::TopicConfig;
use shale_log::{AppendOutcome, TimestampType};

pub const MIN_VERSION: i16 = 3;
pub const MAX_VERSION: i16 = 11;

/// What a produce comes to once its batches are appended.
pub enum Produced {
    /// The answer now (acks=1, write caching, nothing appended); `None` for acks=0.
    Now(Option<ProduceResponse>),
    /// The answer once the appended batches are fsynced. The connection keeps reading and
    /// appending its next requests meanwhile (answers still go out in order), so a pipelining
    /// client's next batches join the same group-commit round.
    Durable(futures::future::BoxFuture<'static, ProduceResponse>),
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ProduceRequest) -> Produced {
    let acks = req.acks;
    let timeout = std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    let version = ctx.api_version;
    // Validation, a possible auto-creation and the appends (pwrite, fsync on a roll) run on the
    // blocking pool, in one call for the whole request: one hand-off per request, not per
    // partition.
    let appended = {
        let broker = Arc::clone(broker);
        crate::blocking::run(move || append_all(&broker, req.topic_data, acks, version)).await
    };
    let mut responses = appended.responses;
    let node_endpoints = appended.node_endpoints;
    if appended.to_sync.is_empty() && appended.to_replicate.is_empty() {
        if acks == 0 {
            return Produced::Now(None);
        }
        return Produced::Now(Some(
            ProduceResponse::default()
                .with_responses(responses)
                .with_node_endpoints(node_endpoints),
        ));
    }
    let broker = Arc::clone(broker);
    Produced::Durable(Box::pin(async move {
        let places: Vec<_> = (appended.to_sync.iter())
            .map(|(place, partition)| (partition.tp.clone(), *place))
            .collect();
        let partitions = appended.to_sync.into_iter().map(|(_, p)| p).collect();
        // The fsync and the followers' fetches run at the same time; the answer waits for both.
        let replicated = futures::future::join_all(appended.to_replicate.into_iter().map(
            |((t, p), wait)| async move {
                let outcome = wait
                    .partition
                    .wait_replicated(wait.end, wait.epoch, wait.min_isr, timeout)
                    .await;
                ((t, p), outcome)
            },
        ));
        let (failures, replicated) =
            futures::join!(broker.group_commit.sync(partitions), replicated);
        for ((t, p), outcome) in replicated {
            let Err(e) = outcome else { continue };
            let (code, message) = match e {
                ReplicationError::NotLeader => (
                    ResponseError::NotLeaderOrFollower,
                    "this broker stopped leading the partition before its ISR had the batch"
                        .to_string(),
                ),
                ReplicationError::TimedOut => (
                    ResponseError::RequestTimedOut,
                    format!("the ISR did not have the batch within the request's timeout ({timeout:?})"),
                ),
                ReplicationError::NotEnoughReplicasAfterAppend { isr, min_isr } => (
                    ResponseError::NotEnoughReplicasAfterAppend,
                    format!("the batch was written, but the ISR shrank to {isr}, below min.insync.replicas ({min_isr})"),
                ),
            };
            let response = &mut responses[t].partition_responses[p];
            *response = PartitionProduceResponse::default()
                .with_index(response.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
                .with_error_code(code.code())
                .with_error_message(Some(sb(message)));
        }
        for (tp, reason) in failures {
            let Some(&(_, (t, p))) = places.iter().find(|(at, _)| *at == tp) else {
                continue;
            };
            let response = &mut responses[t].partition_responses[p];
            if response.error_code != 0 {
                continue;
            }
            *response = PartitionProduceResponse::default()
                .with_index(response.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_error_message(Some(sb(format!(
                    "the batch was written but its fsync failed: {reason}"
                ))));
        }
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(node_endpoints)
    }))
}

/// The answers, and the partitions whose appends must be fsynced before they are sent, with
/// where their answer is (topic index, partition index).
struct Appended {
    responses: Vec<TopicProduceResponse>,
    to_sync: Vec<((usize, usize), Arc<Partition>)>,
    /// acks=all appends that wait for the ISR (every one; with an ISR of the leader alone the
    /// wait ends at once).
    to_replicate: Vec<((usize, usize), ReplicationWait)>,
    /// KIP-951: the endpoints of the leaders named in NOT_LEADER_OR_FOLLOWER answers (v10+).
    node_endpoints: Vec<NodeEndpoint>,
}

fn append_all(
    broker: &Broker,
    topic_data: Vec<kafka_protocol::messages::produce_request::TopicProduceData>,
    acks: i16,
    version: i16,
) -> Appended {
    let mut responses = Vec::with_capacity(topic_data.len());
    let mut to_sync = Vec::new();
    let mut to_replicate = Vec::new();
    let mut node_endpoints: Vec<NodeEndpoint> = Vec::new();
    for topic in topic_data {
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let base = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let result = if !matches!(acks, -1..=1) {
                Err(ApiError::new(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, got {acks}"),
                ))
            } else {
                produce_partition(broker, topic.name.as_str(), pd.index, pd.records, acks)
            };
            partitions.push(match result {
                Ok(r) => {
                    let at = (responses.len(), partitions.len());
                    if acks == -1 {
                        to_replicate.push((
                            at,
                            ReplicationWait {
                                partition: Arc::clone(&r.partition),
                                end: r.end,
                                epoch: r.epoch,
                                min_isr: r.min_isr,
                            },
                        ));
                    }
                    if acks == -1 && !r.write_caching {
                        to_sync.push((at, r.partition));
                    }
                    base.with_base_offset(r.base_offset.get())
                        .with_log_append_time_ms(r.log_append_time)
                        .with_log_start_offset(r.log_start_offset.get())
                }
                Err(e) => {
                    tracing::debug!(topic = %topic.name.as_str(), partition = pd.index, error = %e.message, "produce rejected");
                    let mut response =
                        base.with_error_code(e.code()).with_error_message(Some(sb(e.message)));
                    if version >= 10 && e.error == ResponseError::NotLeaderOrFollower {
                        if let Some((leader, endpoint)) =
                            leader_hint(broker, topic.name.as_str(), pd.index)
                        {
                            response = response.with_current_leader(leader);
                            if let Some(endpoint) = endpoint {
                                if !node_endpoints.iter().any(|n| n.node_id == endpoint.node_id) {
                                    node_endpoints.push(endpoint);
                                }
                            }
                        }
                    }
                    response
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    Appended {
        responses,
        to_sync,
        to_replicate,
        node_endpoints,
    }
}

/// KIP-951's hint for a client that produced to the wrong broker: the partition's leader and
/// epoch, and the leader's endpoint if it is live.
fn leader_hint(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Option<(LeaderIdAndEpoch, Option<NodeEndpoint>)> {
    let placement = broker.placement(topic, partition)?;
    let leader = LeaderIdAndEpoch::default()
        .with_leader_id(BrokerId(placement.leader))
        .with_leader_epoch(placement.leader_epoch);
    let endpoint = broker.cluster_broker(placement.leader).map(|b| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(b.id))
            .with_host(sb(b.host))
            .with_port(i32::from(b.port))
            .with_rack(b.rack.map(sb))
    });
    Some((leader, endpoint))
}

/// What an acks=all append waits for.
struct ReplicationWait {
    partition: Arc<Partition>,
    /// The offset after the appended batches.
    end: Offset,
    epoch: LeaderEpoch,
    min_isr: usize,
}

struct PartitionProduced {
    /// The offset after the batches (for a duplicate, after the original ones).
    end: Offset,
    epoch: LeaderEpoch,
    min_isr: usize,
    base_offset: Offset,
    log_append_time: i64,
    log_start_offset: Offset,
    partition: Arc<Partition>,
    /// The topic's `write.caching`: answer acks=all without waiting for an fsync.
    write_caching: bool,
}

fn produce_partition(
    broker: &Broker,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
    acks: i16,
) -> Result<PartitionProduced, ApiError> {
    // Checked first, before an auto-creation: below storage_min_free_bytes nothing new is
    // written, so that deletions and retention keep their room (see crate::disk_space).
    if broker.disk.is_low() {
        return Err(ApiError::new(
            ResponseError::KafkaStorageError,
            broker.disk.refusal(),
        ));
    }
    let partition = match broker.partition(topic, index) {
        Some(p) if p.leader_epoch().is_some() => p,
        _ => {
            let exists = broker.metadata().topics.contains_key(topic);
            if !exists && broker.config.auto_create_topics_enable {
                match broker.create_topic(topic, -1, -1, BTreeMap::new(), false) {
                    Ok(_) => {}
                    Err(e) if e.error == ResponseError::TopicAlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            broker.leader_partition(topic, index)?
        }
    };
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Err(ApiError::new(
            ResponseError::CorruptMessage,
            "produce request carries no record batch",
        ));
    };
    let now = now_ms();
    let config = broker.topic_config(topic).ok_or_else(|| {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("topic `{topic}` was deleted"),
        )
    })?;
    let options = validate_options(&config, now);
    for item in batch::batches(&records) {
        let (header, range) = item.map_err(batch_error)?;
        let bytes = &records[range];
        batch::validate_batch(bytes, &options).map_err(batch_error)?;
        // Uncompressed records are walked (cheaply, without allocating) so a consumer never
        // meets framing it cannot parse. Compressed ones stay opaque: decompressing every
        // produce is the cost DESIGN.md's hot path avoids.
        if header.compression().map_err(batch_error)? == Compression::None {
            record::validate_record_bytes(&bytes[batch::RECORDS_OFFSET..], header.records_count)
                .map_err(batch_error)?;
        }
        if header.is_transactional() {
            return Err(ApiError::new(
                ResponseError::InvalidTxnState,
                "transactional produce is not supported yet: there is no transaction coordinator",
            ));
        }
    }
    // Offsets are assigned by rewriting the header in place, so the request's shared buffer is
    // copied once into a buffer this partition owns.
    let mut owned = BytesMut::from(&records[..]);
    let min_isr = usize::try_from(config.min_insync_replicas)
        .unwrap_or(1)
        .max(1);
    let (outcome, epoch) = partition
        .append_checked(&mut owned, now, (acks == -1).then_some(min_isr))
        .map_err(|e| append_error(broker, &partition, e))?;
    Ok(match outcome {
        AppendOutcome::Appended(info) => PartitionProduced {
            end: info.last_offset + 1,
            epoch,
            min_isr,
            base_offset: info.base_offset,
            log_append_time: info.log_append_time,
            log_start_offset: partition.log_start_offset_with(info.log_start_offset),
            partition,
            write_caching: config.write_caching,
        },
        // A duplicate's first append may not be synced yet: it waits like a new one.
        AppendOutcome::Duplicate {
            base_offset,
            last_offset,
            log_append_time,
            ..
        } => PartitionProduced {
            end: last_offset + 1,
            epoch,
            min_isr,
            base_offset,
            log_append_time,
            log_start_offset: partition.log_start_offset(),
            partition,
            write_caching: config.write_caching,
        },
    })
}

fn append_error(broker: &Broker, partition: &Partition, e: AppendError) -> ApiError {
    match e {
        AppendError::Log(e) => super::log_error(&partition.tp, e),
        AppendError::NotLeader { leader } => ApiError::new(
            ResponseError::NotLeaderOrFollower,
            format!(
                "broker {} does not lead {}; its leader is {leader}",
                broker.config.node_id.get(),
                partition.tp
            ),
        ),
        e @ AppendError::NotEnoughReplicas { .. } => {
            ApiError::new(ResponseError::NotEnoughReplicas, e.to_string())
        }
    }
}

fn validate_options(config: &TopicConfig, now: i64) -> ValidateOptions {
    let mut options = ValidateOptions::client_produce(config.log.max_message_bytes);
    if config.log.message_timestamp_type == TimestampType::CreateTime {
        let before = config.message_timestamp_before_max_ms;
        let after = config.message_timestamp_after_max_ms;
        options.create_time_window_ms =
            Some(now.saturating_sub(before)..=now.saturating_add(after));
    }
    options
}

fn batch_error(e: BatchError) -> ApiError {
    let code = match &e {
        BatchError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        BatchError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        BatchError::InvalidRecord(_) | BatchError::UnsupportedMagic(_) => {
            ResponseError::InvalidRecord
        }
        _ => ResponseError::CorruptMessage,
    };
    ApiError::new(code, e.to_string())
}
