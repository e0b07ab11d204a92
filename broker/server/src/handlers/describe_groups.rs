//! DescribeGroups v0–5: state, protocol and members of each named group. As in Kafka, member
//! metadata and assignments are shown only while the group is Stable, the selected protocol
//! only then too, and a group that does not exist is reported as Dead with no error.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use kafka_protocol::ResponseError;

use super::{sb, RequestContext, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::group::GroupState;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

/// Kafka's group ACL operations (READ, DELETE, DESCRIBE): everything is allowed while Shale
/// has no authorizer.
const ALL_GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let operations = if ctx.api_version >= 3 && req.include_authorized_operations {
        ALL_GROUP_OPERATIONS
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let groups = req
        .groups
        .into_iter()
        .map(|group_id| {
            let base = DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(operations);
            if !broker.groups.coordinates(group_id.as_str()) {
                return base.with_error_code(ResponseError::NotCoordinator.code());
            }
            let Some(d) = broker.groups.describe_group(group_id.as_str()) else {
                return base.with_group_state(sb(GroupState::Dead.name()));
            };
            base.with_group_state(sb(d.state.name()))
                .with_protocol_type(sb(d.protocol_type))
                .with_protocol_data(sb(d.protocol_data))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(sb(m.member_id))
                                .with_group_instance_id(m.group_instance_id.map(sb))
                                .with_client_id(sb(m.client_id))
                                .with_client_host(sb(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
