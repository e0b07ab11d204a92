//! ListOffsets v1–9: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4),
//! latest tiered (-5) and by timestamp (the first offset whose timestamp is at or after it).

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use shale_formats::ids::{LeaderEpoch, Offset};

use super::fetch::epoch_error;
use super::RequestContext;
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 9;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        // Partitions are looked up concurrently: a lookup may go to the remote tier.
        let lookups = t.partitions.iter().map(|p| {
            lookup(
                broker,
                t.name.as_str(),
                p.partition_index,
                p.current_leader_epoch,
                p.timestamp,
            )
        });
        let found = futures::future::join_all(lookups).await;
        let partitions = t
            .partitions
            .iter()
            .zip(found)
            .map(|(p, found)| {
                let resp = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1);
                match found {
                    // The leader epoch exists from v4; earlier versions must leave it unset.
                    Ok((offset, timestamp, epoch)) => resp
                        .with_offset(offset)
                        .with_timestamp(timestamp)
                        .with_leader_epoch(if ctx.api_version >= 4 { epoch } else { -1 }),
                    Err(e) => resp.with_error_code(e.code()),
                }
            })
            .collect();
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

fn found(
    result: Result<Option<shale_log::TimestampOffset>, shale_log::LogError>,
    hw: Offset,
    tp: &crate::partition::TopicPartition,
) -> Result<(i64, i64, i32), ResponseError> {
    match result {
        Ok(Some(t)) if t.offset < hw => Ok((
            t.offset.get(),
            t.timestamp,
            t.leader_epoch.unwrap_or(LeaderEpoch::UNDEFINED).get(),
        )),
        Ok(_) => Ok((-1, -1, -1)),
        Err(e) => Err(super::log_error(tp, e).error),
    }
}

/// `(offset, timestamp, leader epoch)`; offset -1 when no record matches. Tiered partitions
/// answer EARLIEST from the remote log start, LATEST_TIERED from the remote end, and timestamps
/// from the remote tier first (it holds the older records).
async fn lookup(
    broker: &Broker,
    topic: &str,
    index: i32,
    current_epoch: i32,
    ts: i64,
) -> Result<(i64, i64, i32), ResponseError> {
    let partition = broker.leader_partition(topic, index).map_err(|e| e.error)?;
    if let Some(e) = epoch_error(current_epoch, partition.known_epoch().get()) {
        return Err(e);
    }
    let remote = broker.remote_partition(&partition).await;
    if let Some(remote) = remote {
        match ts {
            // Across both tiers: the remote handle is open now.
            EARLIEST => return Ok((partition.log_start_offset().get(), -1, -1)),
            LATEST_TIERED => {
                return Ok((
                    remote.copied_end_offset().unwrap_or(Offset::UNKNOWN).get(),
                    -1,
                    -1,
                ));
            }
            ts if ts >= 0 => match remote.offset_for_timestamp(ts).await {
                Ok(Some(found)) => return Ok((found.offset.get(), found.timestamp, -1)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(tp = %partition.tp, error = %e, "remote offset-for-timestamp failed");
                    return Err(ResponseError::KafkaStorageError);
                }
            },
            _ => {}
        }
    }
    crate::blocking::run(move || local_lookup(&partition, ts)).await
}

fn local_lookup(
    partition: &crate::partition::Partition,
    ts: i64,
) -> Result<(i64, i64, i32), ResponseError> {
    let hw = partition.high_watermark();
    let log = partition.log();
    let epoch_at = |offset| {
        log.epoch_for_offset(offset)
            .unwrap_or(partition.known_epoch())
    };
    Ok(match ts {
        LATEST => (hw.get(), -1, partition.known_epoch().get()),
        EARLIEST | EARLIEST_LOCAL => {
            let start = log.log_start_offset();
            (start.get(), -1, epoch_at(start).get())
        }
        LATEST_TIERED => (-1, -1, -1),
        MAX_TIMESTAMP => found(log.max_timestamp_offset(), hw, &partition.tp)?,
        ts if ts >= 0 => found(log.fetch_offset_by_timestamp(ts), hw, &partition.tp)?,
        _ => return Err(ResponseError::InvalidRequest),
    })
}
