//! DescribeCluster v0–2: the registered brokers (with racks) and the active controller; from v2
//! the fenced brokers too, marked, when the request asks for them (KIP-1073).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_OPERATIONS};
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// `endpoint_type` values (v1+).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let meta = broker.metadata();
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(sb(meta.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_endpoint_type(ENDPOINT_BROKERS)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        });
    if req.endpoint_type != ENDPOINT_BROKERS {
        return resp
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(sb("only the BROKERS endpoint type is served")));
    }
    let with_fenced = ctx.api_version >= 2 && req.include_fenced_brokers;
    resp.brokers = broker
        .registered_brokers()
        .into_iter()
        .filter(|b| with_fenced || !b.fenced)
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(sb(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(sb))
                .with_is_fenced(b.fenced)
        })
        .collect();
    resp
}
