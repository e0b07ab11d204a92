//! DeleteRecords v0–2: move a partition's log start offset forward (offset -1 means the high
//! watermark); whole segments below it are removed at once.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    match delete(broker, t.name.as_str(), p.partition_index, p.offset) {
                        Ok(low) => result.with_low_watermark(low),
                        Err(e) => result.with_error_code(e.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

fn delete(broker: &Broker, topic: &str, index: i32, offset: i64) -> Result<i64, ResponseError> {
    let partition = broker
        .partition(topic, index)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let hw = partition.high_watermark();
    let target = if offset == -1 { hw } else { offset };
    if target < 0 || target > hw {
        return Err(ResponseError::OffsetOutOfRange);
    }
    let mut log = partition.log();
    if target <= log.log_start_offset() {
        return Ok(log.log_start_offset());
    }
    let low = log
        .delete_records_before(target)
        .map_err(|e| super::log_error(&partition.tp, e).error)?;
    tracing::info!(tp = %partition.tp, log_start_offset = low, "records deleted");
    Ok(low)
}
