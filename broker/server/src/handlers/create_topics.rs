//! CreateTopics v2–7: validated names, partition counts, replication factor and configs; with
//! `validate_only`, everything is checked and nothing is created.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::{ApiError, Broker};
use crate::topic_config;

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 7;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let created = if duplicates.contains(t.name.as_str()) {
                Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!(
                        "topic `{}` appears more than once in the request",
                        t.name.as_str()
                    ),
                ))
            } else {
                create_one(broker, &t, req.validate_only)
            };
            match created {
                Ok((topic, partitions)) => {
                    let mut result = result
                        .with_topic_id(topic.id)
                        .with_num_partitions(partitions)
                        .with_replication_factor(topic.replication_factor);
                    if ctx.api_version >= 5 {
                        let configs = topic_config::describe(
                            broker.topic_defaults(&broker.metadata()),
                            &topic.configs,
                        )
                        .into_iter()
                        .map(|e| {
                            CreatableTopicConfigs::default()
                                .with_name(sb(e.name))
                                .with_value(Some(sb(e.value)))
                                .with_config_source(e.source)
                        })
                        .collect();
                        result = result.with_configs(Some(configs));
                    }
                    result
                }
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(e.message))),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn create_one(
    broker: &Broker,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<(crate::metadata::TopicMetadata, i32), ApiError> {
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        // A null value means "use the default", as Kafka treats it.
        if let Some(v) = &c.value {
            configs.insert(c.name.to_string(), v.to_string());
        }
    }
    let (num_partitions, rf) = if t.assignments.is_empty() {
        (t.num_partitions, t.replication_factor)
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                "both partition assignments and a partition count or replication factor were given",
            ));
        }
        let node = broker.config.node_id;
        for (i, a) in t.assignments.iter().enumerate() {
            if a.partition_index != i as i32
                || a.broker_ids.len() != 1
                || a.broker_ids[0].0 != node.get()
            {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "assignment for partition {} must be [{node}], the only broker",
                        a.partition_index
                    ),
                ));
            }
        }
        (t.assignments.len() as i32, 1)
    };
    let topic = broker.create_topic(t.name.as_str(), num_partitions, rf, configs, validate_only)?;
    let partitions = topic.partitions;
    Ok((topic, partitions))
}
