//! OffsetFetch v1–9: a group's committed offsets, for the named partitions or (v2+, topics
//! null) all of them; v8+ asks for several groups at once. A partition without a committed
//! offset reads -1 with empty metadata. `require_stable` (v7+) never waits or fails: without
//! transactions no offset commit is ever pending. A group coordinated by another broker gets
//! NOT_COORDINATOR.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::Broker;
use crate::group::OffsetAndMetadata;
use crate::partition::TopicPartition;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 9;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let v = ctx.api_version;
    if v >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                if !broker.groups.coordinates(g.group_id.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(ResponseError::NotCoordinator.code());
                }
                let wanted = g.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|t| (&t.name, t.partition_indexes.as_slice()))
                });
                let topics = committed(broker, g.group_id.as_str(), wanted)
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(sb(name)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(p, o)| {
                                        let (offset, epoch, metadata) = fields(o);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(sb(metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if !broker.groups.coordinates(req.group_id.as_str()) {
        // v1 has no top-level error: its clients see an empty answer and look again.
        return OffsetFetchResponse::default()
            .with_error_code(ResponseError::NotCoordinator.code());
    }
    let wanted = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (&t.name, t.partition_indexes.as_slice()))
    });
    let topics = committed(broker, req.group_id.as_str(), wanted)
        .into_iter()
        .map(|(name, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(sb(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, metadata) = fields(o);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_committed_leader_epoch(if v >= 5 { epoch } else { -1 })
                                .with_metadata(Some(sb(metadata)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// What `group_id` has committed for the named topics' partitions (`None`: for every partition
/// it has an offset for), by topic. The v8+ and older requests name them in different types,
/// hence `(name, partition indexes)` pairs. The responses stay apart: they are different types
/// too, and before v5 the leader epoch reads -1.
fn committed<'a>(
    broker: &Broker,
    group_id: &str,
    topics: Option<impl Iterator<Item = (&'a TopicName, &'a [i32])>>,
) -> Vec<TopicOffsets> {
    let wanted = topics.map(|topics| {
        topics
            .flat_map(|(name, partitions)| partitions.iter().map(|p| tp(name, *p)))
            .collect::<Vec<_>>()
    });
    by_topic(broker.groups.fetch_offsets(group_id, wanted.as_deref()))
}

fn tp(name: &TopicName, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: name.to_string(),
        partition,
    }
}

/// `(offset, leader epoch, metadata)`, Kafka's -1/-1/"" when nothing is committed.
fn fields(o: Option<OffsetAndMetadata>) -> (i64, i32, String) {
    match o {
        Some(o) => (o.offset, o.leader_epoch, o.metadata),
        None => (-1, -1, String::new()),
    }
}

/// Groups results by topic, keeping the order topics were first named in.
/// One topic's partitions and what is committed for each.
type TopicOffsets = (String, Vec<(i32, Option<OffsetAndMetadata>)>);

fn by_topic(found: Vec<(TopicPartition, Option<OffsetAndMetadata>)>) -> Vec<TopicOffsets> {
    let mut order: Vec<String> = Vec::new();
    let mut topics: BTreeMap<String, Vec<(i32, Option<OffsetAndMetadata>)>> = BTreeMap::new();
    for (tp, o) in found {
        let entry = topics.entry(tp.topic.clone()).or_insert_with(|| {
            order.push(tp.topic.clone());
            Vec::new()
        });
        entry.push((tp.partition, o));
    }
    order
        .into_iter()
        .map(|t| {
            let partitions = topics.remove(&t).unwrap_or_default();
            (t, partitions)
        })
        .collect()
}
