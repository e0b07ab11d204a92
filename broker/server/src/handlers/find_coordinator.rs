//! FindCoordinator v0–6: this broker coordinates every group (it leads every partition of
//! `__consumer_offsets`, which is created on the first lookup, as in Kafka). Batched lookups
//! (`coordinator_keys`, v4+) are answered key by key. There is no transaction coordinator yet,
//! so transactional ids get COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 6;

/// `key_type` values.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let v = ctx.api_version;
    if v >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| lookup(broker, req.key_type, key))
            .collect();
        return FindCoordinatorResponse::default()
            .with_error_message(None)
            .with_coordinators(coordinators);
    }
    let c = lookup(broker, req.key_type, req.key);
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(if v >= 1 { c.error_message } else { None })
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

fn lookup(broker: &Broker, key_type: i8, key: StrBytes) -> Coordinator {
    let found = match key_type {
        KEY_TYPE_GROUP => broker
            .groups
            .ensure_offsets_topic(broker)
            .map_err(|e| (ResponseError::CoordinatorNotAvailable, e.message)),
        KEY_TYPE_TRANSACTION => Err((
            ResponseError::CoordinatorNotAvailable,
            "this broker has no transaction coordinator yet".to_string(),
        )),
        other => Err((
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    };
    let c = Coordinator::default()
        .with_key(key)
        .with_error_message(None);
    match found {
        Ok(()) => c
            .with_node_id(BrokerId(broker.config.node_id.get()))
            .with_host(sb(broker.advertised.0.clone()))
            .with_port(i32::from(broker.advertised.1)),
        Err((error, message)) => {
            tracing::debug!(key = %c.key.as_str(), key_type, ?error, %message, "coordinator lookup failed");
            c.with_node_id(BrokerId(-1))
                .with_host(sb(""))
                .with_port(-1)
                .with_error_code(error.code())
                .with_error_message(Some(sb(message)))
        }
    }
}
