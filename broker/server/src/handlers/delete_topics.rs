//! DeleteTopics v1–6: by name, or (v6) by topic id.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 6;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let requests: Vec<(Option<TopicName>, uuid::Uuid)> = if ctx.api_version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = requests
        .into_iter()
        .map(|(name, id)| {
            let name = match name {
                Some(n) => Some(n.to_string()),
                None => broker.metadata().topic_by_id(id).map(|t| t.name.clone()),
            };
            let result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(sb(n))))
                .with_topic_id(id);
            let Some(name) = name else {
                return result.with_error_code(ResponseError::UnknownTopicId.code());
            };
            let partitions = broker
                .metadata()
                .topics
                .get(&name)
                .map_or(0, |t| t.partitions);
            match broker.delete_topic(&name) {
                Ok(id) => {
                    crate::tiered::delete_remote_topic(broker, &name, id, partitions);
                    result.with_topic_id(id)
                }
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(e.message))),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
