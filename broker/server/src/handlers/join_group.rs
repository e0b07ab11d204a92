//! JoinGroup v0–9: enter (or re-enter) a group's join phase and wait for it to end. v4+ asks a
//! new dynamic member to come back with the member id it is given (MEMBER_ID_REQUIRED); v5+
//! carries static membership (`group.instance.id`); v9 lets a rejoining static leader skip the
//! assignment. The response waits as long as the join phase lasts (up to the rebalance
//! timeout), which only holds up this connection, as in Kafka.

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::Broker;
use crate::group::{JoinRequest, JoinResult, Protocol};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 9;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let v = ctx.api_version;
    let group_id = req.group_id.to_string();
    let instance = req
        .group_instance_id
        .as_ref()
        .map(|s| s.to_string())
        .filter(|_| v >= 5);
    let result = match broker.groups.ensure_offsets_topic(broker.as_ref()) {
        Err(e) => {
            tracing::warn!(group = %group_id, error = %e.message, "JoinGroup: no offsets topic");
            JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                req.member_id.to_string(),
            )
        }
        Ok(()) => {
            let join = JoinRequest {
                member_id: req.member_id.to_string(),
                require_known_member_id: v >= 4 && instance.is_none(),
                group_instance_id: instance,
                client_id: ctx.client_id.clone().unwrap_or_default(),
                client_host: format!("/{}", ctx.peer.ip()),
                session_timeout_ms: req.session_timeout_ms,
                // v0 has one timeout for both.
                rebalance_timeout_ms: if v == 0 {
                    req.session_timeout_ms
                } else {
                    req.rebalance_timeout_ms
                },
                protocol_type: req.protocol_type.to_string(),
                protocols: req
                    .protocols
                    .into_iter()
                    .map(|p| Protocol {
                        name: p.name.to_string(),
                        metadata: p.metadata,
                    })
                    .collect(),
                supports_skip_assignment: v >= 9,
                reason: req.reason.map(|r| r.to_string()),
            };
            broker.groups.join_group(&group_id, join).await
        }
    };
    if let Some(e) = result.error {
        tracing::debug!(group = %group_id, member = %result.member_id, error = ?e, "JoinGroup error");
    }
    response(v, result)
}

fn response(v: i16, r: JoinResult) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable; Kafka sends "" when there is none.
    let protocol_name = match r.protocol_name {
        None if v < 7 => Some(sb("")),
        other => other.map(sb),
    };
    JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.map(sb))
        .with_protocol_name(protocol_name)
        .with_leader(sb(r.leader))
        .with_skip_assignment(r.skip_assignment && v >= 9)
        .with_member_id(sb(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(sb))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
