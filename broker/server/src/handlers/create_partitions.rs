//! CreatePartitions v0–3: grow a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::{ApiError, Broker};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 3;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let node = broker.config.node_id;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let bad_assignment = t
                .assignments
                .iter()
                .flatten()
                .any(|a| a.broker_ids.iter().any(|b| b.0 != node.get()));
            let outcome = if bad_assignment {
                Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("new partitions can only be placed on broker {node}"),
                ))
            } else {
                broker.create_partitions(t.name.as_str(), t.count, req.validate_only)
            };
            match outcome {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(e.message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
