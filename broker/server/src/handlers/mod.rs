//! Request handling: turning one frame into one response.
//!
//! A frame first passes `shale_formats::wire::validate_request`, a bounded structural check, and
//! only then reaches kafka-protocol's typed decoder (which would otherwise reserve memory straight
//! from wire counts). One file per Kafka API below states the versions it honours; [`SUPPORTED`]
//! is the table ApiVersions advertises and the dispatcher enforces.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use shale_formats::wire::{self, WireLimits};

use crate::broker::Broker;

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod produce;
mod sync_group;

/// `(api, min version, max version)` this broker honours.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, produce::MIN_VERSION, produce::MAX_VERSION),
    (ApiKey::Fetch, fetch::MIN_VERSION, fetch::MAX_VERSION),
    (
        ApiKey::ListOffsets,
        list_offsets::MIN_VERSION,
        list_offsets::MAX_VERSION,
    ),
    (
        ApiKey::Metadata,
        metadata::MIN_VERSION,
        metadata::MAX_VERSION,
    ),
    (
        ApiKey::ApiVersions,
        api_versions::MIN_VERSION,
        api_versions::MAX_VERSION,
    ),
    (
        ApiKey::CreateTopics,
        create_topics::MIN_VERSION,
        create_topics::MAX_VERSION,
    ),
    (
        ApiKey::DeleteTopics,
        delete_topics::MIN_VERSION,
        delete_topics::MAX_VERSION,
    ),
    (
        ApiKey::InitProducerId,
        init_producer_id::MIN_VERSION,
        init_producer_id::MAX_VERSION,
    ),
    (
        ApiKey::DescribeConfigs,
        describe_configs::MIN_VERSION,
        describe_configs::MAX_VERSION,
    ),
    (
        ApiKey::CreatePartitions,
        create_partitions::MIN_VERSION,
        create_partitions::MAX_VERSION,
    ),
    (
        ApiKey::DescribeCluster,
        describe_cluster::MIN_VERSION,
        describe_cluster::MAX_VERSION,
    ),
    (
        ApiKey::DescribeQuorum,
        describe_quorum::MIN_VERSION,
        describe_quorum::MAX_VERSION,
    ),
    (
        ApiKey::AlterConfigs,
        alter_configs::MIN_VERSION,
        alter_configs::MAX_VERSION,
    ),
    (
        ApiKey::IncrementalAlterConfigs,
        alter_configs::INCREMENTAL_MIN_VERSION,
        alter_configs::INCREMENTAL_MAX_VERSION,
    ),
    (
        ApiKey::DeleteRecords,
        delete_records::MIN_VERSION,
        delete_records::MAX_VERSION,
    ),
    (
        ApiKey::DescribeLogDirs,
        describe_log_dirs::MIN_VERSION,
        describe_log_dirs::MAX_VERSION,
    ),
    (
        ApiKey::DescribeProducers,
        describe_producers::MIN_VERSION,
        describe_producers::MAX_VERSION,
    ),
    // The group coordinator (consumer groups and committed offsets).
    (
        ApiKey::FindCoordinator,
        find_coordinator::MIN_VERSION,
        find_coordinator::MAX_VERSION,
    ),
    (
        ApiKey::JoinGroup,
        join_group::MIN_VERSION,
        join_group::MAX_VERSION,
    ),
    (
        ApiKey::SyncGroup,
        sync_group::MIN_VERSION,
        sync_group::MAX_VERSION,
    ),
    (
        ApiKey::Heartbeat,
        heartbeat::MIN_VERSION,
        heartbeat::MAX_VERSION,
    ),
    (
        ApiKey::LeaveGroup,
        leave_group::MIN_VERSION,
        leave_group::MAX_VERSION,
    ),
    (
        ApiKey::OffsetCommit,
        offset_commit::MIN_VERSION,
        offset_commit::MAX_VERSION,
    ),
    (
        ApiKey::OffsetFetch,
        offset_fetch::MIN_VERSION,
        offset_fetch::MAX_VERSION,
    ),
    (
        ApiKey::DescribeGroups,
        describe_groups::MIN_VERSION,
        describe_groups::MAX_VERSION,
    ),
    (
        ApiKey::ListGroups,
        list_groups::MIN_VERSION,
        list_groups::MAX_VERSION,
    ),
    (
        ApiKey::DeleteGroups,
        delete_groups::MIN_VERSION,
        delete_groups::MAX_VERSION,
    ),
    (
        ApiKey::OffsetDelete,
        offset_delete::MIN_VERSION,
        offset_delete::MAX_VERSION,
    ),
];

fn supported_range(api_key: i16) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k as i16 == api_key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// What the connection should do after a frame.
pub enum Reply {
    /// Write these bytes (size prefix included).
    Send(Bytes),
    /// Nothing to send (Produce with acks=0).
    Nothing,
    /// The request was malformed or unsupported: close this connection.
    Close(String),
    /// An answer that is ready later (an acks=all produce waiting for its fsync): the
    /// connection handles its next requests meanwhile and sends the answers in request order.
    Later(futures::future::BoxFuture<'static, Reply>),
}

/// Facts about the request that handlers may need besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    pub peer: SocketAddr,
}

/// Validates, decodes, dispatches and encodes one request frame.
pub async fn handle_frame(broker: &Arc<Broker>, frame: Bytes, peer: SocketAddr) -> Reply {
    let (api_key, api_version, correlation_id) = match wire::peek_header(&frame) {
        Ok(h) => h,
        Err(e) => return Reply::Close(format!("unreadable request header: {e}")),
    };
    let Some((min, max)) = supported_range(api_key) else {
        return Reply::Close(format!("unsupported api key {api_key}"));
    };
    if api_version < min || api_version > max {
        if api_key == ApiKey::ApiVersions as i16 {
            // Kafka answers an ApiVersions it cannot parse with a v0 response carrying
            // UNSUPPORTED_VERSION and the supported ranges, so the client can retry lower.
            return encode(
                correlation_id,
                ApiKey::ApiVersions,
                0,
                &api_versions::unsupported(),
            );
        }
        return Reply::Close(format!(
            "unsupported version {api_version} of api key {api_key} (supported {min}..={max})"
        ));
    }
    let (header, request) = match decode_request(frame, broker.config.request_max_array_elements) {
        Ok(r) => r,
        Err(reason) => return Reply::Close(reason),
    };
    let key = ApiKey::try_from(api_key).expect("supported keys are known to kafka-protocol");
    let ctx = RequestContext {
        api_version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        peer,
    };
    if let RequestKind::Produce(r) = request {
        return match produce::handle(broker, &ctx, r).await {
            produce::Produced::Now(None) => Reply::Nothing,
            produce::Produced::Now(Some(response)) => encode(
                correlation_id,
                key,
                api_version,
                &ResponseKind::Produce(response),
            ),
            produce::Produced::Durable(response) => Reply::Later(Box::pin(async move {
                let response = ResponseKind::Produce(response.await);
                encode(correlation_id, key, api_version, &response)
            })),
        };
    }
    let response = dispatch(broker, &ctx, request).await;
    encode(correlation_id, key, api_version, &response)
}

/// The guarded decode: the bounded structural check first, then kafka-protocol's typed decoder.
/// Never panics and never reserves memory from an unchecked wire count; an error is the reason to
/// close the connection.
pub fn decode_request(
    frame: Bytes,
    max_array_elements: u64,
) -> Result<(RequestHeader, RequestKind), String> {
    let limits = WireLimits {
        max_array_elements,
        ..WireLimits::default()
    };
    let info =
        wire::validate_request(&frame, &limits).map_err(|e| format!("malformed request: {e}"))?;
    let key =
        ApiKey::try_from(info.api_key).map_err(|_| format!("unknown api key {}", info.api_key))?;
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, info.header_version)
        .map_err(|e| format!("undecodable request header: {e}"))?;
    let request = RequestKind::decode(key, &mut buf, info.api_version)
        .map_err(|e| format!("undecodable {key:?} v{} request: {e:#}", info.api_version))?;
    Ok((header, request))
}

async fn dispatch(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: RequestKind,
) -> ResponseKind {
    use RequestKind as Rq;
    use ResponseKind as Rs;
    match request {
        Rq::ApiVersions(r) => Rs::ApiVersions(api_versions::handle(ctx, r)),
        Rq::Metadata(r) => Rs::Metadata(on_blocking_pool(broker, ctx, r, metadata::handle).await),
        Rq::Fetch(r) => Rs::Fetch(fetch::handle(broker, ctx, r).await),
        Rq::ListOffsets(r) => Rs::ListOffsets(list_offsets::handle(broker, ctx, r).await),
        Rq::CreateTopics(r) => {
            Rs::CreateTopics(on_blocking_pool(broker, ctx, r, create_topics::handle).await)
        }
        Rq::DeleteTopics(r) => {
            Rs::DeleteTopics(on_blocking_pool(broker, ctx, r, delete_topics::handle).await)
        }
        Rq::CreatePartitions(r) => {
            Rs::CreatePartitions(on_blocking_pool(broker, ctx, r, create_partitions::handle).await)
        }
        Rq::DescribeConfigs(r) => Rs::DescribeConfigs(describe_configs::handle(broker, ctx, r)),
        Rq::DescribeCluster(r) => Rs::DescribeCluster(describe_cluster::handle(broker, ctx, r)),
        // A follower asks the leader for the voters' progress: a round trip, off the workers.
        Rq::DescribeQuorum(r) => {
            Rs::DescribeQuorum(on_blocking_pool(broker, ctx, r, describe_quorum::handle).await)
        }
        Rq::InitProducerId(r) => {
            Rs::InitProducerId(on_blocking_pool(broker, ctx, r, init_producer_id::handle).await)
        }
        Rq::AlterConfigs(r) => {
            Rs::AlterConfigs(on_blocking_pool(broker, ctx, r, alter_configs::handle).await)
        }
        Rq::IncrementalAlterConfigs(r) => Rs::IncrementalAlterConfigs(
            on_blocking_pool(broker, ctx, r, alter_configs::handle_incremental).await,
        ),
        Rq::DeleteRecords(r) => Rs::DeleteRecords(delete_records::handle(broker, ctx, r).await),
        Rq::DescribeLogDirs(r) => Rs::DescribeLogDirs(describe_log_dirs::handle(broker, ctx, r)),
        Rq::DescribeProducers(r) => {
            Rs::DescribeProducers(describe_producers::handle(broker, ctx, r))
        }
        Rq::FindCoordinator(r) => Rs::FindCoordinator(find_coordinator::handle(broker, ctx, r)),
        Rq::JoinGroup(r) => Rs::JoinGroup(join_group::handle(broker, ctx, r).await),
        Rq::SyncGroup(r) => Rs::SyncGroup(sync_group::handle(broker, ctx, r).await),
        Rq::Heartbeat(r) => Rs::Heartbeat(heartbeat::handle(broker, ctx, r)),
        Rq::LeaveGroup(r) => {
            Rs::LeaveGroup(on_blocking_pool(broker, ctx, r, leave_group::handle).await)
        }
        Rq::OffsetCommit(r) => {
            let group_id = r.group_id.to_string();
            let response = {
                let (broker, ctx) = (Arc::clone(broker), ctx.clone());
                crate::blocking::run(move || offset_commit::handle(&broker, &ctx, r)).await
            };
            Rs::OffsetCommit(offset_commit::replicated(broker, &group_id, response).await)
        }
        Rq::OffsetFetch(r) => Rs::OffsetFetch(offset_fetch::handle(broker, ctx, r)),
        Rq::DescribeGroups(r) => Rs::DescribeGroups(describe_groups::handle(broker, ctx, r)),
        Rq::ListGroups(r) => Rs::ListGroups(list_groups::handle(broker, ctx, r)),
        Rq::DeleteGroups(r) => {
            Rs::DeleteGroups(on_blocking_pool(broker, ctx, r, delete_groups::handle).await)
        }
        Rq::OffsetDelete(r) => {
            Rs::OffsetDelete(on_blocking_pool(broker, ctx, r, offset_delete::handle).await)
        }
        other => unreachable!("dispatcher admitted an unsupported request {other:?}"),
    }
}

/// Runs a synchronous handler whose work may write the metadata file or a log on the blocking
/// pool (see [`crate::blocking`]).
async fn on_blocking_pool<Rq, Rs>(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: Rq,
    handle: fn(&Broker, &RequestContext, Rq) -> Rs,
) -> Rs
where
    Rq: Send + 'static,
    Rs: Send + 'static,
{
    let broker = Arc::clone(broker);
    let ctx = ctx.clone();
    crate::blocking::run(move || handle(&broker, &ctx, request)).await
}

fn encode(correlation_id: i32, key: ApiKey, version: i16, response: &ResponseKind) -> Reply {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = key.response_header_version(version);
    let body = header
        .encode(&mut buf, header_version)
        .and_then(|_| response.encode(&mut buf, version));
    if let Err(e) = body {
        // Our own response does not fit the version's schema: a bug, reported loudly, and the
        // client gets a closed connection rather than bytes it cannot parse.
        tracing::error!(api = ?key, version, error = %e, "cannot encode response");
        return Reply::Close(format!("cannot encode {key:?} v{version} response: {e}"));
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Reply::Send(buf.freeze())
}

/// `StrBytes` from a `String`.
pub(crate) fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// Kafka returns this in `*_authorized_operations` when the client did not ask for them.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// The operations Kafka's CLUSTER resource supports, as a bit set of `AclOperation` codes:
/// ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12 and CREATE 5. There is no WRITE (4) on a cluster: librdkafka's admin
/// client expects exactly these seven. Without authorization every client may do all of them.
pub(crate) const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// The Kafka error for a log failure, logged when it is the broker's fault rather than the
/// client's.
pub(crate) fn log_error(
    tp: &crate::partition::TopicPartition,
    e: shale_log::LogError,
) -> crate::broker::ApiError {
    use kafka_protocol::ResponseError as R;
    use shale_log::LogError as L;
    let code = match &e {
        L::OffsetOutOfRange { .. } => R::OffsetOutOfRange,
        L::OutOfOrderSequence { .. } => R::OutOfOrderSequenceNumber,
        L::InvalidProducerEpoch { .. } => R::InvalidProducerEpoch,
        L::InvalidRecord { .. } => R::InvalidRecord,
        L::RecordTooLarge { limit_name, .. } if *limit_name == "segment.bytes" => {
            R::RecordListTooLarge
        }
        L::RecordTooLarge { .. } => R::MessageTooLarge,
        L::CorruptRecord { .. } => R::CorruptMessage,
        _ => {
            tracing::error!(%tp, error = %e, "log failure");
            R::KafkaStorageError
        }
    };
    crate::broker::ApiError::new(code, e.to_string())
}
