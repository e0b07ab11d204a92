//! FindCoordinator v0–6: a group's coordinator is the broker that leads the group's partition
//! of `__consumer_offsets` (Kafka's `abs(hash(group)) % partitions`; the topic is created on
//! the first lookup, as in Kafka), whichever broker is asked. Batched lookups
//! (`coordinator_keys`, v4+) are answered key by key. There is no transaction coordinator yet,
//! so transactional ids get COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::{Broker, ClusterBroker};
use crate::group::store::partition_for;
use crate::group::OFFSETS_TOPIC;

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
            .map_err(|e| (ResponseError::CoordinatorNotAvailable, e.message))
            .and_then(|()| group_coordinator(broker, key.as_str())),
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
        Ok(b) => c
            .with_node_id(BrokerId(b.id))
            .with_host(sb(b.host))
            .with_port(i32::from(b.port)),
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

/// The live broker leading the group's partition of `__consumer_offsets`.
fn group_coordinator(
    broker: &Broker,
    group_id: &str,
) -> Result<ClusterBroker, (ResponseError, String)> {
    let partitions = broker
        .metadata()
        .topics
        .get(OFFSETS_TOPIC)
        .map(|t| t.partitions)
        .ok_or_else(|| {
            (
                ResponseError::CoordinatorNotAvailable,
                format!("{OFFSETS_TOPIC} does not exist yet"),
            )
        })?;
    let partition = partition_for(group_id, partitions);
    let leader = broker
        .placement(OFFSETS_TOPIC, partition)
        .map(|p| p.leader)
        .unwrap_or(-1);
    broker.cluster_broker(leader).ok_or_else(|| {
        (
            ResponseError::CoordinatorNotAvailable,
            format!("{OFFSETS_TOPIC}-{partition} has no live leader"),
        )
    })
}
