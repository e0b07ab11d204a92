//! DeleteRecords v0–2: move a partition's log start offset forward (offset -1 means the high
//! watermark) in both tiers; whole segments below it are removed at once, remote ones first so no
//! reader sees a deleted offset there after the answer.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use shale_formats::ids::Offset;

use super::RequestContext;
use std::sync::Arc;

use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            partitions.push(
                match delete(broker, t.name.as_str(), p.partition_index, p.offset).await {
                    Ok(low) => result.with_low_watermark(low),
                    Err(e) => result.with_error_code(e.code()),
                },
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete(
    broker: &Broker,
    topic: &str,
    index: i32,
    offset: i64,
) -> Result<i64, ResponseError> {
    let partition = broker.leader_partition(topic, index).map_err(|e| e.error)?;
    let hw = partition.high_watermark();
    let target = if offset == -1 {
        hw
    } else {
        Offset::new(offset)
    };
    if target < Offset::ZERO || target > hw {
        return Err(ResponseError::OffsetOutOfRange);
    }
    let mut low = partition.log().log_start_offset();
    if let Some(remote) = broker.remote_partition(&partition).await {
        if let Some(remote_start) = remote.remote_log_start_offset() {
            low = low.min(remote_start);
            if remote_start < target {
                remote.delete_segments_before(target).await.map_err(|e| {
                    tracing::warn!(tp = %partition.tp, error = %e, "remote DeleteRecords failed");
                    ResponseError::KafkaStorageError
                })?;
                low = target;
            }
        }
    }
    let local = Arc::clone(&partition);
    low = crate::blocking::run(move || {
        let mut log = local.log();
        if target > log.log_start_offset() {
            return log
                .delete_records_before(target)
                .map_err(|e| super::log_error(&local.tp, e).error);
        }
        Ok(low)
    })
    .await?;
    partition.check_offsets("DeleteRecords");
    tracing::info!(tp = %partition.tp, log_start_offset = %low, "records deleted");
    Ok(low.max(target.min(hw)).get())
}
