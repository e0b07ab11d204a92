//! Fetch v4–16: whole stored batches from each requested partition up to the high watermark,
//! within the partition and response byte limits (always at least one batch for the first
//! partition with data, KIP-74), long-polling until `min_bytes` arrive or `max_wait_ms` passes.
//! Incremental fetch sessions (KIP-227) live in [`crate::fetch_session`].
//!
//! A fetch from a replica (`replica_id`, or v15+ `replica_state`, ≥ 0) is a follower copying
//! this leader: it reads up to the log end rather than the high watermark, long-polls on the
//! log end, and its fetch offset tells the leader what the follower has (the high watermark
//! and the ISR move on it). With v12+ its `last_fetched_epoch` is checked against this log's
//! epochs, and a follower that diverged is told where (`diverging_epoch`, KIP-320) instead of
//! getting records. An offset below the local log start answers OFFSET_OUT_OF_RANGE with the
//! local log start as `log_start_offset`: where the follower restarts (the remote tier has the
//! rest).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use shale_formats::ids::Offset;
use tokio::sync::watch;
use uuid::Uuid;

use super::{sb, RequestContext};
use crate::broker::Broker;
use crate::fetch_session::{Session, SessionPartition};
use crate::metadata::ClusterMetadata;
use crate::partition::Partition;

pub const MIN_VERSION: i16 = 4;
pub const MAX_VERSION: i16 = 16;

/// `isolation_level` READ_COMMITTED.
const READ_COMMITTED: i8 = 1;
/// Session epochs with special meaning.
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: FetchRequest,
) -> FetchResponse {
    let v = ctx.api_version;
    let replica = if v >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let replica = (replica >= 0).then_some(replica);
    let meta = broker.metadata();
    let sessions = &broker.fetch_sessions;
    let full = req.session_epoch == INITIAL_EPOCH || req.session_epoch == FINAL_EPOCH;
    let (mut session, session_id) = if full {
        if req.session_id != 0 {
            sessions.remove(req.session_id);
        }
        (None, 0)
    } else {
        let Some(session) = sessions.take(req.session_id) else {
            return session_error(ResponseError::FetchSessionIdNotFound);
        };
        if session.epoch != req.session_epoch {
            sessions.put(req.session_id, session);
            return session_error(ResponseError::InvalidFetchSessionEpoch);
        }
        (Some(session), req.session_id)
    };

    // The partitions to read, in order: the request's (full) or the session's after applying the
    // request's additions, updates and removals (incremental).
    let requested = requested_partitions(&meta, v, &req);
    let wanted: Vec<SessionPartition> = match &mut session {
        None => requested,
        Some(s) => {
            for f in &req.forgotten_topics_data {
                let name = topic_name(&meta, v, f.topic.as_str(), f.topic_id);
                s.partitions.retain(|p| {
                    !f.partitions
                        .iter()
                        .any(|&i| p.same_partition(&name, f.topic_id, i))
                });
            }
            for r in requested {
                match s
                    .partitions
                    .iter_mut()
                    .find(|p| p.same_partition(&r.topic, r.topic_id, r.partition))
                {
                    Some(p) => {
                        p.fetch_offset = r.fetch_offset;
                        p.partition_max_bytes = r.partition_max_bytes;
                        p.current_leader_epoch = r.current_leader_epoch;
                        p.last_fetched_epoch = r.last_fetched_epoch;
                    }
                    None => s.partitions.push(r),
                }
            }
            s.partitions.clone()
        }
    };
    // Only the leader serves fetches (consumers' and followers').
    let hosted: Vec<Option<Arc<Partition>>> = wanted
        .iter()
        .map(|p| {
            broker
                .partition(&p.topic, p.partition)
                .filter(|p| p.leader_epoch().is_some())
        })
        .collect();

    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let response_max = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let read_committed = req.isolation_level == READ_COMMITTED;
    let results = loop {
        // Subscribe before reading so an append between the read and the wait still wakes us.
        let mut watchers: Vec<watch::Receiver<Offset>> = hosted
            .iter()
            .flatten()
            .map(|p| match replica {
                Some(_) => p.watch_log_end(),
                None => p.watch_high_watermark(),
            })
            .collect();
        let (results, total, errored) = read_all(
            broker,
            &wanted,
            &hosted,
            response_max,
            read_committed,
            replica,
        )
        .await;
        if total >= min_bytes
            || errored
            || watchers.is_empty()
            || tokio::time::Instant::now() >= deadline
        {
            break results;
        }
        let changed =
            futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        let _ = tokio::time::timeout_at(deadline, changed).await;
    };

    // Which partitions go into the response, and the session's memory of what it was told.
    let (response_id, send): (i32, Vec<bool>) = match session {
        Some(mut s) => {
            let send = wanted
                .iter()
                .zip(&results)
                .map(|(p, d)| {
                    d.error_code != 0
                        || d.records.as_ref().is_some_and(|r| !r.is_empty())
                        || d.high_watermark != p.last_high_watermark
                        || d.log_start_offset != p.last_log_start_offset
                })
                .collect();
            s.partitions = remember(wanted.clone(), &results);
            s.epoch = Session::next_epoch(s.epoch);
            sessions.put(session_id, s);
            (session_id, send)
        }
        None => {
            let id = if req.session_epoch == INITIAL_EPOCH && !wanted.is_empty() {
                let id = sessions
                    .create(Session::new(remember(wanted.clone(), &results)))
                    .unwrap_or(0);
                tracing::debug!(
                    session_id = id,
                    partitions = wanted.len(),
                    "fetch session created"
                );
                id
            } else {
                0
            };
            (id, vec![true; wanted.len()])
        }
    };
    let node_endpoints = if v >= 16 {
        leader_endpoints(broker, &results)
    } else {
        Vec::new()
    };
    FetchResponse::default()
        .with_session_id(response_id)
        .with_node_endpoints(node_endpoints)
        .with_responses(group_by_topic(v, &wanted, results, &send))
}

/// The endpoints of the leaders named in NOT_LEADER_OR_FOLLOWER answers (KIP-951, v16+).
fn leader_endpoints(broker: &Broker, results: &[PartitionData]) -> Vec<NodeEndpoint> {
    let mut leaders: Vec<i32> = results
        .iter()
        .filter(|d| d.error_code == ResponseError::NotLeaderOrFollower.code())
        .map(|d| d.current_leader.leader_id.0)
        .filter(|id| *id >= 0)
        .collect();
    leaders.sort_unstable();
    leaders.dedup();
    leaders
        .into_iter()
        .filter_map(|id| broker.cluster_broker(id))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.id))
                .with_host(sb(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(sb))
        })
        .collect()
}

fn session_error(e: ResponseError) -> FetchResponse {
    FetchResponse::default()
        .with_error_code(e.code())
        .with_session_id(0)
}

/// Resolves a request topic to its name: by id from v13, by name before.
fn topic_name(meta: &ClusterMetadata, version: i16, name: &str, id: Uuid) -> String {
    if version >= 13 {
        meta.topic_by_id(id)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    } else {
        name.to_string()
    }
}

fn requested_partitions(
    meta: &ClusterMetadata,
    version: i16,
    req: &FetchRequest,
) -> Vec<SessionPartition> {
    let mut out = Vec::new();
    for t in &req.topics {
        let name = topic_name(meta, version, t.topic.as_str(), t.topic_id);
        let topic_id = if version >= 13 {
            t.topic_id
        } else {
            meta.topics.get(&name).map(|m| m.id).unwrap_or_default()
        };
        for p in &t.partitions {
            out.push(SessionPartition {
                topic: name.clone(),
                topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: if version >= 12 {
                    p.last_fetched_epoch
                } else {
                    -1
                },
                last_high_watermark: -1,
                last_log_start_offset: -1,
            });
        }
    }
    out
}

/// Records what each partition was told, and moves partitions that returned data to the back.
fn remember(mut wanted: Vec<SessionPartition>, results: &[PartitionData]) -> Vec<SessionPartition> {
    let mut had_data = Vec::new();
    let mut rest = Vec::new();
    for (p, d) in wanted.drain(..).zip(results) {
        let p = SessionPartition {
            last_high_watermark: d.high_watermark,
            last_log_start_offset: d.log_start_offset,
            ..p
        };
        if d.records.as_ref().is_some_and(|r| !r.is_empty()) {
            had_data.push(p);
        } else {
            rest.push(p);
        }
    }
    rest.extend(had_data);
    rest
}

/// A partition whose fetch offset lives in the remote tier: `(index in the response,
/// partition, offset, max bytes)`.
type RemoteRead = (usize, Arc<Partition>, i64, usize);

async fn read_all(
    broker: &Arc<Broker>,
    wanted: &[SessionPartition],
    hosted: &[Option<Arc<Partition>>],
    response_max: usize,
    read_committed: bool,
    replica: Option<i32>,
) -> (Vec<PartitionData>, usize, bool) {
    // The local pass reads segment files: on the blocking pool, in one call for all partitions.
    let (results, total, errored, remote_reads) = {
        let (broker, wanted, hosted) = (Arc::clone(broker), wanted.to_vec(), hosted.to_vec());
        crate::blocking::run(move || match replica {
            Some(replica) => {
                let (results, total, errored) =
                    read_for_replica(&broker, replica, &wanted, &hosted, response_max);
                (results, total, errored, Vec::new())
            }
            None => read_local(&broker, &wanted, &hosted, response_max, read_committed),
        })
        .await
    };
    read_remote_all(broker, results, total, errored, remote_reads, response_max).await
}

/// What a follower's fetch reads: from the local log up to its end, after recording the
/// follower's fetch offset and checking it for divergence. Partitions this broker does not lead
/// were answered NOT_LEADER_OR_FOLLOWER as for any client.
fn read_for_replica(
    broker: &Arc<Broker>,
    replica: i32,
    wanted: &[SessionPartition],
    hosted: &[Option<Arc<Partition>>],
    response_max: usize,
) -> (Vec<PartitionData>, usize, bool) {
    let lag = Duration::from_millis(broker.config.replica_lag_time_max_ms.max(1) as u64);
    let mut total = 0usize;
    let mut errored = false;
    let results = wanted
        .iter()
        .zip(hosted)
        .map(|(p, partition)| {
            let data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_records(Some(Bytes::new()));
            let Some(partition) = partition else {
                errored = true;
                let code = match broker.placement(&p.topic, p.partition) {
                    Some(_) => ResponseError::NotLeaderOrFollower,
                    None => ResponseError::UnknownTopicOrPartition,
                };
                return data.with_error_code(code.code());
            };
            let epoch = partition.known_epoch();
            if let Some(e) = epoch_error(p.current_leader_epoch, epoch.get()) {
                errored = true;
                return data.with_error_code(e.code());
            }
            let (local_start, divergence) = {
                let log = partition.log();
                let divergence = (p.last_fetched_epoch >= 0).then(|| {
                    log.end_offset_for_epoch(shale_formats::ids::LeaderEpoch::new(
                        p.last_fetched_epoch,
                    ))
                });
                (log.log_start_offset(), divergence)
            };
            if let Some((end_epoch, end_offset)) = divergence {
                if end_epoch.get() < p.last_fetched_epoch || end_offset.get() < p.fetch_offset {
                    let hw = partition.high_watermark();
                    return data
                        .with_high_watermark(hw.get())
                        .with_last_stable_offset(hw.get())
                        .with_log_start_offset(local_start.get())
                        .with_diverging_epoch(
                            kafka_protocol::messages::fetch_response::EpochEndOffset::default()
                                .with_epoch(end_epoch.get())
                                .with_end_offset(end_offset.get()),
                        );
                }
            }
            let fetch_offset = Offset::new(p.fetch_offset);
            if let Some(fetched) = partition.record_follower_fetch(replica, fetch_offset, lag) {
                if fetched.isr_change_wanted {
                    let (broker, partition) = (Arc::clone(broker), Arc::clone(partition));
                    // Off this fetch's path: the proposal waits for the quorum.
                    std::thread::Builder::new()
                        .name("shale-isr-change".to_string())
                        .spawn(move || broker.change_isr(&partition))
                        .ok();
                }
            }
            let hw = partition.high_watermark();
            let data = data
                .with_high_watermark(hw.get())
                .with_last_stable_offset(hw.get())
                .with_log_start_offset(local_start.get());
            let budget = response_max.saturating_sub(total);
            let partition_max = (p.partition_max_bytes.max(0) as usize).min(budget);
            if partition_max == 0 && total > 0 {
                return data;
            }
            match partition.read_to_end(fetch_offset, partition_max, total == 0) {
                Ok(read) => {
                    total += read.records.len();
                    data.with_records(Some(read.records))
                }
                Err(e) => {
                    errored = true;
                    data.with_error_code(super::log_error(&partition.tp, e).code())
                }
            }
        })
        .collect();
    (results, total, errored)
}

/// The local pass of [`read_all`]; offsets that live in the remote tier are returned for it.
fn read_local(
    broker: &Broker,
    wanted: &[SessionPartition],
    hosted: &[Option<Arc<Partition>>],
    response_max: usize,
    read_committed: bool,
) -> (Vec<PartitionData>, usize, bool, Vec<RemoteRead>) {
    let mut total = 0usize;
    let mut errored = false;
    // Offsets below the local log start of a tiered partition are read from the remote tier,
    // after the local pass and all at once (concurrently), each within the budget left then.
    let mut remote_reads = Vec::new();
    let results: Vec<PartitionData> = wanted
        .iter()
        .zip(hosted)
        .enumerate()
        .map(|(i, (p, partition))| {
            let data = PartitionData::default()
                .with_partition_index(p.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_preferred_read_replica(BrokerId(-1))
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_records(Some(Bytes::new()));
            let Some(partition) = partition else {
                errored = true;
                if p.topic.is_empty() {
                    return data.with_error_code(ResponseError::UnknownTopicId.code());
                }
                return match broker.placement(&p.topic, p.partition) {
                    // Led by another broker: the client refreshes its metadata (v12+: KIP-951's
                    // hint of the leader, v16+ with its endpoint, saves the round trip).
                    Some(placement) => data
                        .with_error_code(ResponseError::NotLeaderOrFollower.code())
                        .with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(BrokerId(placement.leader))
                                .with_leader_epoch(placement.leader_epoch),
                        ),
                    None => data.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                };
            };
            if let Some(e) = epoch_error(p.current_leader_epoch, partition.known_epoch().get()) {
                errored = true;
                return data.with_error_code(e.code());
            }
            let hw = partition.high_watermark();
            let local_start = partition.log().log_start_offset();
            let data = data
                .with_high_watermark(hw.get())
                .with_last_stable_offset(hw.get())
                .with_log_start_offset(partition.log_start_offset_with(local_start).get());
            let budget = response_max.saturating_sub(total);
            let partition_max = (p.partition_max_bytes.max(0) as usize).min(budget);
            if partition_max == 0 && total > 0 {
                return data;
            }
            if p.fetch_offset < local_start.get() && broker.is_tiered(&p.topic) {
                remote_reads.push((i, partition.clone(), p.fetch_offset, partition_max));
                return data;
            }
            match partition.read(Offset::new(p.fetch_offset), partition_max, total == 0) {
                Ok(read) => {
                    total += read.records.len();
                    data.with_records(Some(read.records))
                }
                Err(e) => {
                    errored = true;
                    data.with_error_code(super::log_error(&partition.tp, e).code())
                }
            }
        })
        .collect();
    (results, total, errored, remote_reads)
}

async fn read_remote_all(
    broker: &Broker,
    mut results: Vec<PartitionData>,
    mut total: usize,
    mut errored: bool,
    remote_reads: Vec<RemoteRead>,
    response_max: usize,
) -> (Vec<PartitionData>, usize, bool) {
    if !remote_reads.is_empty() {
        let first_has_data = total > 0;
        let reads = remote_reads
            .iter()
            .enumerate()
            .map(|(k, (_, partition, offset, max))| {
                // KIP-74: the first partition of the response with data gets at least one batch.
                let min_one = !first_has_data && k == 0;
                async move {
                    let read = match broker.remote_partition(partition).await {
                        Some(remote) => {
                            Some(remote.read(Offset::new(*offset), *max, min_one).await)
                        }
                        None => None,
                    };
                    (partition.log_start_offset(), read)
                }
            });
        let outcomes = futures::future::join_all(reads).await;
        // The reads ran concurrently, each within the budget left after the local pass; now they
        // share it in request order, so the response stays within `max_bytes` (KIP-74: only the
        // first partition with data may go over, by its first batch).
        for ((i, partition, offset, _), (start, outcome)) in remote_reads.into_iter().zip(outcomes)
        {
            let data = &mut results[i];
            data.log_start_offset = start.get();
            use shale_tiering::read::RemoteReadOutcome as O;
            match outcome {
                Some(Ok(O::Records(r))) => {
                    let left = response_max.saturating_sub(total);
                    let records = whole_batches_within(r.records, left, total == 0);
                    total += records.len();
                    data.records = Some(records);
                }
                Some(Ok(O::OffsetBelowStart { .. })) | Some(Ok(O::NotRemote { .. })) | None => {
                    errored = true;
                    tracing::debug!(tp = %partition.tp, offset, "fetch offset in neither tier");
                    data.error_code = ResponseError::OffsetOutOfRange.code();
                }
                Some(Err(e)) => {
                    errored = true;
                    tracing::warn!(tp = %partition.tp, offset, error = %e, "remote read failed");
                    data.error_code = ResponseError::KafkaStorageError.code();
                }
            }
        }
    }
    (results, total, errored)
}

/// The longest prefix of `records` that is whole batches and at most `limit` bytes; with
/// `at_least_one`, the first batch even if it is larger (KIP-74).
fn whole_batches_within(records: Bytes, limit: usize, at_least_one: bool) -> Bytes {
    if records.len() <= limit {
        return records;
    }
    let mut end = 0usize;
    for item in shale_formats::batch::batches(&records) {
        let Ok((_, range)) = item else { break };
        if range.end > limit && !(at_least_one && end == 0) {
            break;
        }
        end = range.end;
    }
    records.slice(..end)
}

/// Builds the response's topic list, keeping request order and skipping unsent partitions.
fn group_by_topic(
    version: i16,
    wanted: &[SessionPartition],
    results: Vec<PartitionData>,
    send: &[bool],
) -> Vec<FetchableTopicResponse> {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for ((p, data), &send) in wanted.iter().zip(results).zip(send) {
        if !send {
            continue;
        }
        let same = topics.last().is_some_and(|t| {
            if version >= 13 {
                t.topic_id == p.topic_id
            } else {
                t.topic.as_str() == p.topic
            }
        });
        if !same {
            let name = if version >= 13 {
                String::new()
            } else {
                p.topic.clone()
            };
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(sb(name)))
                    .with_topic_id(p.topic_id),
            );
        }
        topics
            .last_mut()
            .expect("pushed above")
            .partitions
            .push(data);
    }
    topics
}

/// Kafka's leader-epoch check: a client ahead of us is UNKNOWN_LEADER_EPOCH, one behind is
/// FENCED_LEADER_EPOCH; -1 means the client did not say.
pub(crate) fn epoch_error(requested: i32, current: i32) -> Option<ResponseError> {
    if requested < 0 || requested == current {
        None
    } else if requested > current {
        Some(ResponseError::UnknownLeaderEpoch)
    } else {
        Some(ResponseError::FencedLeaderEpoch)
    }
}

#[cfg(test)]
mod tests {
    use super::whole_batches_within;
    use bytes::{BufMut, Bytes, BytesMut};

    /// Frames of `sizes` bytes each, framed as record batches v2: base offset, length,
    /// partition leader epoch, magic 2, then filler.
    fn frames(sizes: &[usize]) -> Bytes {
        let mut out = BytesMut::new();
        for &size in sizes {
            out.put_i64(0);
            out.put_i32(i32::try_from(size - 12).unwrap());
            out.put_i32(0);
            out.put_u8(2);
            out.put_bytes(7, size - 17);
        }
        out.freeze()
    }

    /// Trimming keeps whole batches within the limit, and the first batch when it must.
    #[test]
    fn trims_to_whole_batches() {
        let r = frames(&[100, 200, 300]);
        assert_eq!(whole_batches_within(r.clone(), 600, false).len(), 600);
        assert_eq!(whole_batches_within(r.clone(), 599, false).len(), 300);
        assert_eq!(whole_batches_within(r.clone(), 99, false).len(), 0);
        assert_eq!(whole_batches_within(r.clone(), 99, true).len(), 100);
        assert_eq!(whole_batches_within(r.clone(), 0, true).len(), 100);
        assert_eq!(whole_batches_within(r, 350, true).len(), 300);
    }
}
