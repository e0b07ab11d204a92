//! LeaveGroup v0–5: members leave at once instead of waiting for their session to expire,
//! which starts a rebalance. v3+ carries a batch of members (by member id and/or
//! `group.instance.id`) with a result each; v0–2 one member, its result at the top level.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub fn handle(broker: &Broker, ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let v = ctx.api_version;
    let leaving: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    for m in req.members.iter().filter(|m| m.reason.is_some()) {
        tracing::debug!(group = %req.group_id.as_str(), member = %m.member_id.as_str(), reason = ?m.reason, "member leaving");
    }
    match broker.groups.leave_group(req.group_id.as_str(), &leaving) {
        Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
        Ok(results) if v < 3 => LeaveGroupResponse::default()
            .with_error_code(results.first().copied().flatten().map_or(0, |e| e.code())),
        Ok(results) => LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(results)
                .map(|((member_id, instance), e)| {
                    MemberResponse::default()
                        .with_member_id(super::sb(member_id))
                        .with_group_instance_id(instance.map(super::sb))
                        .with_error_code(e.map_or(0, |e| e.code()))
                })
                .collect(),
        ),
    }
}
