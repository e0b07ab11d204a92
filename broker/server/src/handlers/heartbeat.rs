//! Heartbeat v0–4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin,
//! ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID that it was left behind.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub fn handle(broker: &Broker, ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let instance = req
        .group_instance_id
        .as_ref()
        .map(|s| s.as_str())
        .filter(|_| ctx.api_version >= 3);
    let result = broker.groups.heartbeat(
        req.group_id.as_str(),
        req.member_id.as_str(),
        instance,
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}
