//! The real broker booted in-process by `shale_server::server::run` (port 0, a temporary data
//! dir, tiering to the default local-directory store) and driven through the wire by the admin
//! crate's Kafka client: Produce, Fetch from both tiers across several partitions within
//! `max_bytes`, ListOffsets and DeleteRecords.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteRecordsRequest, FetchRequest, ListOffsetsRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shale_admin::client::{Client, ClientOptions};
use shale_formats::record::{BatchBuilder, BatchOptions};
use shale_server::config::BrokerConfig;

const TOPIC: &str = "history";
const PARTITIONS: i32 = 3;
/// Records per produced batch, and batches per partition: 1 KiB values, about 1.2 MiB each.
const RECORDS_PER_BATCH: usize = 64;
const BATCHES: usize = 20;
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const EARLIEST_LOCAL: i64 = -4;
const OFFSET_OUT_OF_RANGE: i16 = 1;

struct InProcessBroker {
    addr: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), shale_server::server::RunError>>,
    _dir: tempfile::TempDir,
}

impl InProcessBroker {
    async fn start() -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), 100).await
    }

    /// A broker over `dir` (a fresh one, or one a stopped broker left), tiering every
    /// `interval_ms`.
    async fn start_in(dir: tempfile::TempDir, interval_ms: i64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = BrokerConfig {
            data_dir: dir.path().join("data"),
            remote_log_manager_task_interval_ms: interval_ms,
            ..BrokerConfig::default()
        };
        config.validate().unwrap();
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(shale_server::server::run(config, listener, rx));
        Self {
            addr,
            shutdown,
            server,
            _dir: dir,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&self.addr, ClientOptions::default())
            .await
            .unwrap()
    }

    async fn stop(self) -> tempfile::TempDir {
        self.shutdown.send(true).unwrap();
        self.server.await.unwrap().unwrap();
        self._dir
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn batch(partition: i32, first: usize) -> Bytes {
    let mut b = BatchBuilder::new(BatchOptions::default());
    for i in first..first + RECORDS_PER_BATCH {
        let value = format!("p{partition}-{i:08}-").repeat(1024 / 14);
        b.append(
            1_700_000_000_000 + i as i64,
            None,
            Some(value.into()),
            vec![],
        );
    }
    Bytes::from(b.build().unwrap())
}

/// `(base offset, last offset)` of each batch in `records`; panics on a batch cut short.
fn batch_ranges(records: &[u8]) -> Vec<(i64, i64)> {
    shale_formats::batch::batches(records)
        .map(|item| {
            let (h, _) = item.expect("whole batches");
            (h.base_offset.get(), h.last_offset().get())
        })
        .collect()
}

async fn list_offsets(client: &mut Client, spec: i64) -> Vec<(i16, i64)> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(
                (0..PARTITIONS)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(spec)
                    })
                    .collect(),
            )]);
    let resp = client.send_at(&req, 7).await.unwrap();
    let mut out = vec![(-1, -1); PARTITIONS as usize];
    for p in &resp.topics[0].partitions {
        out[p.partition_index as usize] = (p.error_code, p.offset);
    }
    out
}

/// One Fetch v12 (topic names, no session) of `offsets[p]` for each partition; per partition
/// `(error, log start offset, records)`.
async fn fetch(
    client: &mut Client,
    offsets: &[i64],
    max_bytes: i32,
    partition_max_bytes: i32,
) -> Vec<(i16, i64, Bytes)> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(TOPIC))
            .with_partitions(
                offsets
                    .iter()
                    .enumerate()
                    .map(|(p, &offset)| {
                        FetchPartition::default()
                            .with_partition(p as i32)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )]);
    let resp = client.send_at(&req, 12).await.unwrap();
    assert_eq!(resp.error_code, 0);
    let mut out = vec![(-1, -1, Bytes::new()); offsets.len()];
    for p in &resp.responses[0].partitions {
        out[p.partition_index as usize] = (
            p.error_code,
            p.log_start_offset,
            p.records.clone().unwrap_or_default(),
        );
    }
    out
}

/// Produce, tiering, both-tier Fetch within max_bytes, ListOffsets and DeleteRecords against the
/// broker `shale serve` runs, booted from the library.
/// CreateTopics for [`TOPIC`]: small segments and a small local retention, so that most of it
/// is tiered within a few passes.
fn create_request(partitions: i32) -> CreateTopicsRequest {
    let configs = [
        ("segment.bytes", "65536"),
        ("local.retention.bytes", "131072"),
        ("retention.bytes", "-1"),
        ("retention.ms", "-1"),
    ];
    CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(TOPIC))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str(k))
                            .with_value(Some(StrBytes::from_static_str(v)))
                    })
                    .collect(),
            )])
}

/// Produces `batch(partition, first)` to one partition; `(error, base offset, log start)`.
async fn produce_one(client: &mut Client, partition: i32, first: usize) -> (i16, i64, i64) {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(partition, first)))])]);
    let resp = client.send_at(&req, 9).await.unwrap();
    let pr = &resp.responses[0].partition_responses[0];
    (pr.error_code, pr.base_offset, pr.log_start_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_fetch_both_tiers_list_offsets_delete_records() {
    let broker = InProcessBroker::start().await;
    let mut client = broker.client().await;

    let resp = client
        .send_at(&create_request(PARTITIONS), 5)
        .await
        .unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);

    // Produce: acks=all, each batch gets the next offsets.
    for k in 0..BATCHES {
        let first = k * RECORDS_PER_BATCH;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(TOPIC))
                .with_partition_data(
                    (0..PARTITIONS)
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(batch(p, first)))
                        })
                        .collect(),
                )]);
        let resp = client.send_at(&req, 9).await.unwrap();
        for pr in &resp.responses[0].partition_responses {
            assert_eq!(pr.error_code, 0, "{pr:?}");
            assert_eq!(pr.base_offset, first as i64, "{pr:?}");
            assert_eq!(pr.log_start_offset, 0, "{pr:?}");
        }
    }
    let end = (BATCHES * RECORDS_PER_BATCH) as i64;
    assert!(list_offsets(&mut client, LATEST)
        .await
        .iter()
        .all(|&r| r == (0, end)));

    // Tiering moves the local log start above 0 on every partition.
    let deadline = Instant::now() + Duration::from_secs(60);
    let local_start = loop {
        let local = list_offsets(&mut client, EARLIEST_LOCAL).await;
        if local.iter().all(|&(e, o)| e == 0 && o > 0) {
            break local.iter().map(|&(_, o)| o).collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "not tiered in time: {local:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(list_offsets(&mut client, EARLIEST)
        .await
        .iter()
        .all(|&r| r == (0, 0)));

    // Remote reads of every partition share one max_bytes; each gets whole batches from its
    // fetch offset, and the log start reported is the global one (0), not the local one.
    let max_bytes = 150_000;
    for offsets in [vec![0, 0, 0], vec![local_start[0], 0, 0]] {
        let got = fetch(&mut client, &offsets, max_bytes, 100_000).await;
        let total: usize = got.iter().map(|(_, _, r)| r.len()).sum();
        assert!(total <= max_bytes as usize, "{total} bytes > {max_bytes}");
        assert!(!got[0].2.is_empty(), "the first partition got nothing");
        for (p, (error, _log_start, records)) in got.iter().enumerate() {
            assert_eq!(*error, 0, "partition {p}");
            if let Some(&(base, last)) = batch_ranges(records).first() {
                assert!(base <= offsets[p] && offsets[p] <= last, "partition {p}");
            }
        }
        for (p, (_, log_start, records)) in got.iter().enumerate() {
            if offsets[p] == 0 && !records.is_empty() {
                assert_eq!(*log_start, 0, "partition {p}: remote read's log start");
            }
        }
    }
    // Without a response limit each partition gets up to its own limit.
    let got = fetch(&mut client, &[0, 0, 0], i32::MAX, 100_000).await;
    assert!(got
        .iter()
        .all(|(e, _, r)| *e == 0 && !r.is_empty() && r.len() <= 100_000));

    // DeleteRecords moves the log start into the remote tier; below it is out of range.
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(100)])]);
    let resp = client.send_at(&req, 2).await.unwrap();
    let r = &resp.topics[0].partitions[0];
    assert_eq!((r.error_code, r.low_watermark), (0, 100));
    assert_eq!(list_offsets(&mut client, EARLIEST).await[0], (0, 100));
    let got = fetch(&mut client, &[0], i32::MAX, 100_000).await;
    assert_eq!(got[0].0, OFFSET_OUT_OF_RANGE);
    let got = fetch(&mut client, &[100], i32::MAX, 100_000).await;
    assert_eq!(got[0].0, 0);
    let ranges = batch_ranges(&got[0].2);
    assert!(ranges[0].0 <= 100 && 100 <= ranges[0].1, "{ranges:?}");

    broker.stop().await;
}

/// After a restart, Produce reports the log start across both tiers (the remote start, 0), not
/// the local one, without a tiering pass on the schedule: the broker's first pass runs as it
/// starts and opens the remote handles of tiered partitions. The restarted broker's tiering
/// period is ten minutes, and nothing else is asked before the produce (a ListOffsets or a
/// Fetch would open the handle too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_reports_the_remote_log_start_after_a_restart() {
    let broker = InProcessBroker::start().await;
    let mut client = broker.client().await;
    let resp = client.send_at(&create_request(1), 5).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
    for k in 0..BATCHES {
        let first = k * RECORDS_PER_BATCH;
        assert_eq!(
            produce_one(&mut client, 0, first).await,
            (0, first as i64, 0)
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while list_offsets(&mut client, EARLIEST_LOCAL).await[0].1 == 0 {
        assert!(Instant::now() < deadline, "not tiered in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    let dir = broker.stop().await;

    let broker = InProcessBroker::start_in(dir, 600_000).await;
    let mut client = broker.client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut first = BATCHES * RECORDS_PER_BATCH;
    loop {
        let (error, base, log_start) = produce_one(&mut client, 0, first).await;
        assert_eq!((error, base), (0, first as i64));
        if log_start == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Produce still reports the local log start {log_start}"
        );
        first += RECORDS_PER_BATCH;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(list_offsets(&mut client, EARLIEST_LOCAL).await[0].1 > 0);
    assert_eq!(list_offsets(&mut client, EARLIEST).await[0], (0, 0));
    broker.stop().await;
}
