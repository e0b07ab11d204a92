//! DescribeProducers v0: the idempotent producers each partition has state for.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use shale_formats::ids::Offset;

use super::RequestContext;
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let resp = PartitionResponse::default().with_partition_index(index);
                    let p = match broker.leader_partition(t.name.as_str(), index) {
                        Ok(p) => p,
                        Err(e) => return resp.with_error_code(e.error.code()),
                    };
                    let producers = p
                        .log()
                        .active_producers()
                        .into_iter()
                        .map(|a| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(a.producer_id.get()))
                                .with_producer_epoch(i32::from(a.producer_epoch.get()))
                                .with_last_sequence(a.last_sequence)
                                .with_last_timestamp(a.last_timestamp)
                                .with_coordinator_epoch(a.coordinator_epoch)
                                .with_current_txn_start_offset(
                                    a.current_txn_start_offset.unwrap_or(Offset::UNKNOWN).get(),
                                )
                        })
                        .collect();
                    resp.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
