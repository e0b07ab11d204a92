//! DescribeQuorum v0–2 (KIP-595, KIP-836, KIP-853): the controller quorum of
//! `__cluster_metadata`: leader, epoch (the Raft term), high watermark and each voter's log end
//! offset, as the active controller knows them: any node answers (a follower asks the leader,
//! as a Kafka broker forwards the request to the active controller); NOT_LEADER_OR_FOLLOWER
//! only while no leader can be reached.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// The one topic a quorum describes.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let quorum = broker.quorum();
    let mut topics = Vec::new();
    for topic in req.topics {
        let mut partitions = Vec::new();
        for p in topic.partitions {
            let data = PartitionData::default().with_partition_index(p.partition_index);
            let data = if topic.topic_name.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                data.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_error_message(Some(sb(format!("only {METADATA_TOPIC}-0 has a quorum"))))
            } else if !quorum.leading {
                data.with_error_code(ResponseError::NotLeaderOrFollower.code())
                    .with_error_message(Some(sb(format!(
                        "node {} is not the active controller (the leader is {:?})",
                        quorum.node_id, quorum.leader
                    ))))
                    .with_leader_id(BrokerId(quorum.leader.unwrap_or(-1)))
                    .with_leader_epoch(quorum.term as i32)
            } else {
                data.with_leader_id(BrokerId(quorum.node_id))
                    .with_leader_epoch(quorum.term as i32)
                    .with_high_watermark(quorum.high_watermark)
                    .with_current_voters(
                        quorum
                            .voters
                            .iter()
                            .map(|v| {
                                ReplicaState::default()
                                    .with_replica_id(BrokerId(v.id))
                                    .with_log_end_offset(v.log_end_offset)
                                    .with_last_fetch_timestamp(-1)
                                    .with_last_caught_up_timestamp(-1)
                            })
                            .collect(),
                    )
                    .with_observers(
                        quorum
                            .observers
                            .iter()
                            .map(|o| {
                                ReplicaState::default()
                                    .with_replica_id(BrokerId(o.id))
                                    .with_log_end_offset(o.log_end_offset)
                                    .with_last_fetch_timestamp(-1)
                                    .with_last_caught_up_timestamp(-1)
                            })
                            .collect(),
                    )
            };
            partitions.push(data);
        }
        topics.push(
            TopicData::default()
                .with_topic_name(topic.topic_name)
                .with_partitions(partitions),
        );
    }
    let mut resp = DescribeQuorumResponse::default().with_topics(topics);
    if ctx.api_version >= 2 {
        resp.nodes = quorum
            .voters
            .iter()
            .filter_map(|v| {
                let (host, port) = v.address.rsplit_once(':')?;
                Some(Node::default().with_node_id(BrokerId(v.id)).with_listeners(
                    vec![Listener::default()
                            .with_name(sb("CONTROLLER".to_string()))
                            .with_host(sb(host.to_string()))
                            .with_port(port.parse().ok()?)],
                ))
            })
            .collect();
    }
    resp
}
