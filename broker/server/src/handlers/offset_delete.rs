//! OffsetDelete v0: removes a group's committed offsets for some partitions. Any partition of
//! an empty group; in an active consumer group only partitions of topics no member subscribes
//! to (the others get GROUP_SUBSCRIBED_TO_TOPIC); an active group of another protocol type
//! gets NON_EMPTY_GROUP.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;
use crate::partition::TopicPartition;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if req.group_id.is_empty() {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code());
    }
    let meta = broker.metadata();
    let mut outcome: Vec<Vec<Option<ResponseError>>> = Vec::with_capacity(req.topics.len());
    let mut known = Vec::new();
    for t in &req.topics {
        let topic = meta.topics.get(t.name.as_str());
        outcome.push(
            t.partitions
                .iter()
                .map(|p| {
                    if topic.is_some_and(|m| (0..m.partitions).contains(&p.partition_index)) {
                        known.push(TopicPartition {
                            topic: t.name.to_string(),
                            partition: p.partition_index,
                        });
                        None
                    } else {
                        Some(ResponseError::UnknownTopicOrPartition)
                    }
                })
                .collect(),
        );
    }
    let results = match broker.groups.delete_offsets(req.group_id.as_str(), &known) {
        Ok(r) => r,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let mut results = results.into_iter();
    let topics = req
        .topics
        .into_iter()
        .zip(outcome)
        .map(|(t, pre)| {
            let partitions = t
                .partitions
                .iter()
                .zip(pre)
                .map(|(p, e)| {
                    let e = match e {
                        Some(e) => Some(e),
                        None => results.next().flatten(),
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(e.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
