//! OffsetCommit v2–9: store a group's consumed positions durably in `__consumer_offsets`.
//! Members of a managed group must name their member id and current generation; a commit with
//! generation -1 to an empty (or unknown) group is a "simple" commit from a client that does
//! not use group management. Unknown partitions get UNKNOWN_TOPIC_OR_PARTITION and metadata
//! longer than `offset.metadata.max.bytes` OFFSET_METADATA_TOO_LARGE, each on its own.

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::broker::{now_ms, Broker};
use crate::group::{OffsetAndMetadata, OffsetCommit};
use crate::partition::TopicPartition;

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 9;

/// How long a commit waits for the ISR of its offsets partition (Kafka's
/// `offsets.commit.timeout.ms`).
pub const COMMIT_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until the commit answered by `response` is replicated (see
/// `GroupCoordinator::replicated`); a commit that did not replicate in time gets the error.
pub async fn replicated(
    broker: &Broker,
    group_id: &str,
    mut response: OffsetCommitResponse,
) -> OffsetCommitResponse {
    let stored = response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code == 0);
    if !stored {
        return response;
    }
    if let Err(e) = broker
        .groups
        .replicated(group_id, COMMIT_REPLICATION_TIMEOUT)
        .await
    {
        for p in response
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            if p.error_code == 0 {
                p.error_code = e.code();
            }
        }
    }
    response
}

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let v = ctx.api_version;
    let now = now_ms();
    let metadata_max = broker.groups.config().offset_metadata_max_bytes;
    let meta = broker.metadata();
    let expire =
        (v <= 4 && req.retention_time_ms >= 0).then(|| now.saturating_add(req.retention_time_ms));
    // Per partition: Some(error) when refused before reaching the group.
    let mut outcome: Vec<Vec<Option<ResponseError>>> = Vec::with_capacity(req.topics.len());
    let mut accepted = Vec::new();
    for topic in &req.topics {
        let known = meta.topics.get(topic.name.as_str());
        let mut results = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let error = if !known.is_some_and(|t| (0..t.partitions).contains(&p.partition_index)) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > metadata_max {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                accepted.push((
                    TopicPartition {
                        topic: topic.name.to_string(),
                        partition: p.partition_index,
                    },
                    OffsetAndMetadata {
                        offset: p.committed_offset,
                        leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                        metadata,
                        commit_timestamp_ms: now,
                        expire_timestamp_ms: expire,
                    },
                ));
                None
            };
            results.push(error);
        }
        outcome.push(results);
    }
    let group_error = if accepted.is_empty() {
        None
    } else {
        let commit = OffsetCommit {
            member_id: req.member_id.to_string(),
            group_instance_id: req
                .group_instance_id
                .as_ref()
                .map(|s| s.to_string())
                .filter(|_| v >= 7),
            generation_id: req.generation_id_or_member_epoch,
            api_version: v,
            offsets: accepted,
        };
        let stored = broker
            .groups
            .ensure_offsets_topic(broker.as_ref())
            .map_err(|_| ResponseError::CoordinatorNotAvailable)
            .and_then(|()| broker.groups.commit_offsets(req.group_id.as_str(), commit));
        stored.err()
    };
    if let Some(e) = group_error {
        tracing::debug!(group = %req.group_id.as_str(), member = %req.member_id.as_str(), generation = req.generation_id_or_member_epoch, error = ?e, "OffsetCommit refused");
    }
    let topics = req
        .topics
        .into_iter()
        .zip(outcome)
        .map(|(t, results)| {
            let partitions = t
                .partitions
                .iter()
                .zip(results)
                .map(|(p, e)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e.or(group_error).map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
