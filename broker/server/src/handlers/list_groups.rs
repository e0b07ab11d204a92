//! ListGroups v0–5: every group this coordinator knows, with its protocol type; v4+ with its
//! state and an optional state filter, v5 with its type ("classic": the only kind Shale runs)
//! and an optional type filter. Both filters match case-insensitively, as Kafka's do.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{sb, RequestContext};
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

/// The group type of every group here (classic group protocol).
const GROUP_TYPE: &str = "classic";

pub fn handle(broker: &Broker, ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let v = ctx.api_version;
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    if v >= 5 && !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
        return ListGroupsResponse::default();
    }
    let groups = broker
        .groups
        .list_groups()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.name().to_lowercase()))
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(sb(g.group_id)))
                .with_protocol_type(sb(g.protocol_type));
            let listed = if v >= 4 {
                listed.with_group_state(sb(g.state.name()))
            } else {
                listed
            };
            if v >= 5 {
                listed.with_group_type(sb(GROUP_TYPE))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
