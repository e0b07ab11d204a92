//! DescribeCluster v0–1: this broker as the whole cluster and its controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext, AUTHORIZED_OPERATIONS_OMITTED, CLUSTER_OPERATIONS};
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

/// `endpoint_type` values (v1+).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let meta = broker.metadata();
    let node = broker.config.node_id;
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(sb(meta.cluster_id.clone()))
        .with_controller_id(BrokerId(node.get()))
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
    resp.brokers = vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(node.get()))
        .with_host(sb(broker.advertised.0.clone()))
        .with_port(i32::from(broker.advertised.1))];
    resp
}
