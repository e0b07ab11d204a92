//! DescribeLogDirs v1–4: the one data directory, with each partition's size on disk.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{sb, RequestContext};
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 4;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // topic -> partitions; `None` asks for everything.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    let mut partitions = broker.all_partitions();
    partitions.sort_by(|a, b| a.tp.cmp(&b.tp));
    for p in partitions {
        if let Some(w) = &wanted {
            if !w
                .get(&p.tp.topic)
                .is_some_and(|ps| ps.contains(&p.tp.partition))
            {
                continue;
            }
        }
        let size = p.log().size_bytes() as i64;
        by_topic.entry(p.tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.tp.partition)
                .with_partition_size(size)
                .with_offset_lag(0),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            DescribeLogDirsTopic::default()
                .with_name(TopicName(sb(name)))
                .with_partitions(partitions)
        })
        .collect();
    let dir = broker
        .config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(sb(dir.display().to_string()))
        .with_topics(topics)
        // As the disk-space poll last read them (at most storage_space_check_interval_ms old).
        .with_total_bytes(i64::try_from(broker.disk.total_bytes()).unwrap_or(i64::MAX))
        .with_usable_bytes(i64::try_from(broker.disk.free_bytes()).unwrap_or(i64::MAX))])
}
