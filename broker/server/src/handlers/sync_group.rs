//! SyncGroup v0–5: members of a new generation collect their assignment; the leader's request
//! carries everyone's. Followers wait until the leader's arrives (or the group rebalances
//! again). v5 checks the protocol type and name against the group's.

use std::sync::Arc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{sb, RequestContext};
use crate::broker::Broker;
use crate::group::SyncRequest;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let v = ctx.api_version;
    let group_id = req.group_id.to_string();
    let sync = SyncRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: req
            .group_instance_id
            .map(|s| s.to_string())
            .filter(|_| v >= 3),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.map(|s| s.to_string()).filter(|_| v >= 5),
        protocol_name: req.protocol_name.map(|s| s.to_string()).filter(|_| v >= 5),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let member_id = sync.member_id.clone();
    let r = broker.groups.sync_group(&group_id, sync).await;
    if let Some(e) = r.error {
        tracing::debug!(group = %group_id, member = %member_id, error = ?e, "SyncGroup error");
    }
    let resp = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_assignment(r.assignment);
    if v >= 5 {
        resp.with_protocol_type(r.protocol_type.map(sb))
            .with_protocol_name(r.protocol_name.map(sb))
    } else {
        resp
    }
}
