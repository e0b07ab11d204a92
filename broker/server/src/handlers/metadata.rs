//! Metadata v0–12: brokers, topics, partitions and leaders (from the metadata log: any broker
//! answers for the whole cluster); creates unknown topics when the request and
//! `auto.create.topics.enable` allow it. A partition whose leader is fenced reads
//! LEADER_NOT_AVAILABLE with leader -1.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::{sb, RequestContext, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_OPERATIONS};
use crate::broker::Broker;
use crate::metadata::{validate_topic_name, TopicMetadata};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 12;

/// Kafka's topic ACL operations bit set (READ..DESCRIBE_CONFIGS, ALTER_CONFIGS): everything is
/// allowed while Shale has no authorizer.
const ALL_TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

pub fn handle(broker: &Broker, ctx: &RequestContext, req: MetadataRequest) -> MetadataResponse {
    let v = ctx.api_version;
    // v0-3 always auto-create; later versions say so in the request.
    let allow_auto_create =
        (v < 4 || req.allow_auto_topic_creation) && broker.config.auto_create_topics_enable;
    let all_topics = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && v == 0,
    };
    let mut topics = Vec::new();
    if all_topics {
        for topic in broker.metadata().topics.values() {
            topics.push(topic_response(broker, topic, &req));
        }
    } else {
        for requested in req.topics.iter().flatten() {
            topics.push(requested_topic(
                broker,
                requested.name.as_ref(),
                requested.topic_id,
                allow_auto_create,
                &req,
            ));
        }
    }
    let brokers = broker
        .cluster_brokers()
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(sb(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(sb))
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(sb(broker.metadata().cluster_id.clone())))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_topics(topics);
    resp.cluster_authorized_operations = if req.include_cluster_authorized_operations {
        CLUSTER_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    resp
}

fn requested_topic(
    broker: &Broker,
    name: Option<&TopicName>,
    topic_id: Uuid,
    allow_auto_create: bool,
    req: &MetadataRequest,
) -> MetadataResponseTopic {
    let meta = broker.metadata();
    let Some(name) = name else {
        // v10+: lookup by id.
        return match meta.topic_by_id(topic_id) {
            Some(t) => topic_response(broker, t, req),
            None => MetadataResponseTopic::default()
                .with_topic_id(topic_id)
                .with_error_code(ResponseError::UnknownTopicId.code()),
        };
    };
    let error = |e: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(e.code())
            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
    };
    if let Some(t) = meta.topics.get(name.as_str()) {
        return topic_response(broker, t, req);
    }
    if validate_topic_name(name).is_err() {
        return error(ResponseError::InvalidTopicException);
    }
    if !allow_auto_create {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    match broker.create_topic(name, -1, -1, BTreeMap::new(), false) {
        Ok(t) => topic_response(broker, &t, req),
        // Another request created it first: fine.
        Err(e) if e.error == ResponseError::TopicAlreadyExists => {
            match broker.metadata().topics.get(name.as_str()) {
                Some(t) => topic_response(broker, t, req),
                None => error(ResponseError::UnknownTopicOrPartition),
            }
        }
        Err(e) => error(e.error),
    }
}

fn topic_response(
    broker: &Broker,
    topic: &TopicMetadata,
    req: &MetadataRequest,
) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|p| {
            let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
            let partition = MetadataResponsePartition::default().with_partition_index(p);
            match broker.placement(&topic.name, p) {
                Some(placement) => partition
                    .with_error_code(if placement.leader < 0 {
                        ResponseError::LeaderNotAvailable.code()
                    } else {
                        0
                    })
                    .with_leader_id(BrokerId(placement.leader))
                    .with_leader_epoch(placement.leader_epoch)
                    .with_replica_nodes(ids(&placement.replicas))
                    .with_isr_nodes(ids(&placement.isr))
                    .with_offline_replicas(ids(&placement.offline)),
                // Created or deleted between the view and the image: asked again shortly.
                None => partition
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1)),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(if req.include_topic_authorized_operations {
            ALL_TOPIC_OPERATIONS
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        })
}
