//! The Parquet archive ([`crate::archive`]) against every backend: files read back row by row
//! against what was produced, the lag and file-size policy, crashes between the upload and the
//! manifest write, retention and DeleteRecords rewrites, deletion and the scrub, the JSON
//! projection, and corrupt segment bytes.
//!
//! The crate has no dependency on `arrow-array`, so Arrow columns are decoded here from their
//! `ArrayData` buffers (the Arrow memory layout) by the macros below; that works on the values'
//! types without naming them.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use shale_formats::archive::{self as encoding, JsonProjection};
use shale_formats::batch::{TimestampType, RECORD_BATCH_OVERHEAD};
use shale_formats::compression::Compression;
use shale_formats::ids::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use shale_formats::index::{OffsetIndexEntry, TimeIndexEntry};
use shale_formats::record::{BatchBuilder, BatchOptions, RecordHeader};

use super::fixtures::timestamp_of;
use super::{Backend, Env};
use crate::archive::{ArchiveOutcome, ArchivePolicy};
use crate::error::TieringError;
use crate::layout::{self, PartitionLayout};
use crate::manager::RemoteLogManagerConfig;
use crate::manifest::ArchiveFile;
use crate::metadata::{EpochEntry, SegmentUpload, TopicIdPartition};
use crate::partition::{now_ms, RemotePartition};
use crate::retention::RetentionPolicy;
use crate::RetryPolicy;
use shale_cache::testing::FaultyStore;

/// Runs each named function against every backend, as `archive::memory::name`,
/// `archive::local::name` and `archive::s3::name` (S3 skips without `SHALE_TEST_S3_ENDPOINT`).
macro_rules! archive_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = crate::tests::Env::new(crate::tests::Backend::Memory, stringify!($name)).unwrap();
                    super::$name(env).await;
                }
            )*
        }
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = crate::tests::Env::new(crate::tests::Backend::Local, stringify!($name)).unwrap();
                    super::$name(env).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(env) = crate::tests::Env::new(crate::tests::Backend::S3, stringify!($name)) {
                        super::$name(env).await;
                    }
                }
            )*
        }
    };
}

archive_suite!(
    archive_writes_every_record_once,
    lag_and_file_size_decide_what_is_written,
    crash_between_upload_and_manifest_then_retry,
    failed_archive_upload_leaves_nothing_visible,
    archive_retention_deletes_and_rewrites,
    archive_lag_past_retention_skips_offsets,
    delete_all_and_scrub_remove_unlisted_archive_files,
    json_projection_survives_a_rewrite,
    corrupt_segment_bytes_fail_the_pass,
    a_pass_stops_at_its_file_limit,
);

// ---------------------------------------------------------------------------------------------
// Segments with known records
// ---------------------------------------------------------------------------------------------

const ORIGIN: i64 = 1_700_000_000_000;
const PRODUCER_ID: i64 = 4242;
/// Bytes between offset index entries, as in the fixtures.
const INDEX_INTERVAL_BYTES: usize = 1024;
const HOUR_MS: i64 = 3_600_000;
const NEVER_FULL: u64 = 1 << 40;

/// One data record as produced, and as an archive row must show it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    producer_id: i64,
    sequence: i32,
}

/// One stored batch: `(base offset, last offset, bytes)`.
#[derive(Debug, Clone, Copy)]
struct BatchSpan {
    base: i64,
    last: i64,
    len: u64,
}

struct Segment {
    upload: SegmentUpload,
    batches: Vec<BatchSpan>,
    rows: Vec<Row>,
}

#[derive(Clone, Copy)]
struct Shape {
    batches: usize,
    records_per_batch: usize,
    value: fn(i64) -> Option<Vec<u8>>,
    /// Ends the segment with a transaction marker: a control batch, one offset and no row.
    commit_marker: bool,
}

/// Batches in every codec, idempotent and plain producers, create and log-append time, null
/// keys, tombstones, values that are JSON objects and some that are not, records with 0, 1 or 2
/// headers (one header value null).
const RICH: Shape = Shape {
    batches: 30,
    records_per_batch: 4,
    value: json_value,
    commit_marker: true,
};

fn json_value(o: i64) -> Option<Vec<u8>> {
    match o % 13 {
        5 => None,
        9 => Some(format!("not json {{{o}").into_bytes()),
        _ => Some(
            format!(
                r#"{{"id":{o},"name":"n-{o}","ok":{},"pad":"{}","score":{},"nested":{{"a":[1,{o}]}}}}"#,
                o % 2 == 0,
                "p".repeat((o % 17) as usize * 3),
                o as f64 / 4.0,
            )
            .into_bytes(),
        ),
    }
}

/// 64 KiB of noise: ZSTD can't shrink it, so the Parquet file is as big as the data.
fn noise_value(o: i64) -> Option<Vec<u8>> {
    let mut x = (o as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(64 * 1024);
    while out.len() < 64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    Some(out)
}

/// The JSON projection `value_json` must hold for a value written by [`json_value`].
type JsonRow = Option<(
    Option<i64>,
    Option<String>,
    Option<bool>,
    Option<f64>,
    Option<String>,
    Option<String>,
)>;
const PROJECTION: &str = "id:long,name:string,ok:boolean,score:double,nested:json,missing:string";

fn expected_json(row: &Row) -> JsonRow {
    let value = row.value.as_ref()?;
    if value.starts_with(b"not json") {
        return None;
    }
    let o = row.offset;
    Some((
        Some(o),
        Some(format!("n-{o}")),
        Some(o % 2 == 0),
        Some(o as f64 / 4.0),
        Some(format!(r#"{{"a":[1,{o}]}}"#)),
        None,
    ))
}

/// Writes a segment the way Kafka's `LogSegment.append` does (sparse offset index of each
/// indexed batch's last offset, time index of the max timestamp so far).
fn write_segment(dir: &FsPath, base_offset: i64, shape: Shape) -> Segment {
    std::fs::create_dir_all(dir).unwrap();
    let mut log = Vec::new();
    let mut offset_index = Vec::new();
    let mut time_index = Vec::new();
    let mut batches = Vec::new();
    let mut rows = Vec::new();
    let mut offset = base_offset;
    let mut since_entry = usize::MAX;
    let mut max_timestamp = -1i64;
    let mut max_timestamp_offset = base_offset;
    let mut last_indexed_timestamp = i64::MIN;
    for b in 0..shape.batches + usize::from(shape.commit_marker) {
        let control = b == shape.batches;
        let idempotent = b % 2 == 1 && !control;
        // Every seventh batch was stamped by the broker: its records read as its append time.
        let append_time = (b % 7 == 6 && !control).then(|| timestamp_of(ORIGIN, offset) + 500);
        let mut options = BatchOptions {
            base_offset: Offset::new(offset),
            partition_leader_epoch: LeaderEpoch::new(3),
            compression: if control {
                Compression::None
            } else {
                Compression::ALL[b % Compression::ALL.len()]
            },
            ..BatchOptions::default()
        };
        if idempotent || control {
            options.producer_id = ProducerId::new(PRODUCER_ID);
            options.producer_epoch = ProducerEpoch::new(1);
        }
        if idempotent {
            options.base_sequence = offset as i32;
        }
        options.is_control = control;
        options.is_transactional = control;
        if let Some(append_time) = append_time {
            options.timestamp_type = TimestampType::LogAppendTime;
            options.max_timestamp = Some(append_time);
        }
        let mut builder = BatchBuilder::new(options);
        let count = if control { 1 } else { shape.records_per_batch };
        for r in 0..count {
            let o = offset + r as i64;
            let timestamp = timestamp_of(ORIGIN, o);
            if control {
                // Commit marker: key (version 0, type 1), value (version 0, coordinator epoch 5).
                builder.append(
                    timestamp,
                    Some(Bytes::from_static(&[0, 0, 0, 1])),
                    Some(Bytes::from_static(&[0, 0, 0, 0, 0, 5])),
                    vec![],
                );
                continue;
            }
            let key = (o % 7 != 3).then(|| format!("key-{o}").into_bytes());
            let value = (shape.value)(o);
            let headers: Vec<(String, Option<Vec<u8>>)> = (0..o % 3)
                .map(|h| {
                    (
                        format!("h{h}"),
                        (h != 1).then(|| format!("v{o}-{h}").into_bytes()),
                    )
                })
                .collect();
            builder.append(
                timestamp,
                key.clone().map(Bytes::from),
                value.clone().map(Bytes::from),
                headers
                    .iter()
                    .map(|(k, v)| RecordHeader {
                        key: Bytes::from(k.clone()),
                        value: v.clone().map(Bytes::from),
                    })
                    .collect(),
            );
            rows.push(Row {
                offset: o,
                timestamp: append_time.unwrap_or(timestamp),
                key,
                value,
                headers,
                producer_id: if idempotent { PRODUCER_ID } else { -1 },
                sequence: if idempotent {
                    (offset + r as i64) as i32
                } else {
                    -1
                },
            });
        }
        let bytes = builder.build().expect("a test batch encodes");
        let last_offset = offset + count as i64 - 1;
        for o in offset..=last_offset {
            let ts = timestamp_of(ORIGIN, o);
            if ts > max_timestamp {
                max_timestamp = ts;
                max_timestamp_offset = o;
            }
        }
        if since_entry >= INDEX_INTERVAL_BYTES {
            offset_index.extend_from_slice(
                &OffsetIndexEntry {
                    relative_offset: (last_offset - base_offset) as u32,
                    position: log.len() as u32,
                }
                .encode(),
            );
            if max_timestamp > last_indexed_timestamp {
                time_index.extend_from_slice(
                    &TimeIndexEntry {
                        timestamp: max_timestamp,
                        relative_offset: (max_timestamp_offset - base_offset) as u32,
                    }
                    .encode(),
                );
                last_indexed_timestamp = max_timestamp;
            }
            since_entry = 0;
        }
        since_entry += bytes.len();
        batches.push(BatchSpan {
            base: offset,
            last: last_offset,
            len: bytes.len() as u64,
        });
        log.extend_from_slice(&bytes);
        offset = last_offset + 1;
    }
    let log_path = dir.join(format!("{base_offset:020}.log"));
    std::fs::write(&log_path, &log).unwrap();
    Segment {
        upload: SegmentUpload {
            base_offset: Offset::new(base_offset),
            end_offset: Offset::new(offset - 1),
            max_timestamp,
            size_bytes: log.len() as u64,
            log_path,
            offset_index: Bytes::from(offset_index),
            time_index: Bytes::from(time_index),
            transaction_index: None,
            leader_epochs: vec![EpochEntry {
                epoch: LeaderEpoch::new(3),
                start_offset: Offset::new(base_offset),
            }],
            producer_snapshot: Some(Bytes::from_static(b"producer-state")),
        },
        batches,
        rows,
    }
}

/// `count` consecutive segments from `base_offset`.
fn write_segments(dir: &FsPath, base_offset: i64, count: usize, shape: Shape) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut base = base_offset;
    for _ in 0..count {
        let segment = write_segment(&dir.join(format!("seg-{base}")), base, shape);
        base = (segment.upload.end_offset + 1).get();
        segments.push(segment);
    }
    segments
}

fn all_rows(segments: &[Segment]) -> Vec<Row> {
    segments.iter().flat_map(|s| s.rows.clone()).collect()
}

fn rows_between(rows: &[Row], from: i64, to: i64) -> Vec<Row> {
    rows.iter()
        .filter(|r| from <= r.offset && r.offset <= to)
        .cloned()
        .collect()
}

fn log_bytes(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| s.upload.size_bytes).sum()
}

/// Bytes of the stored batches with a last offset in `first..=last`.
fn batch_bytes_between(segments: &[Segment], first: i64, last: i64) -> u64 {
    segments
        .iter()
        .flat_map(|s| &s.batches)
        .filter(|b| first <= b.last && b.last <= last)
        .map(|b| b.len)
        .sum()
}

async fn copy_all(p: &RemotePartition, segments: &[Segment]) {
    for segment in segments {
        p.copy_segment(segment.upload.clone()).await.unwrap();
    }
}

/// The files an archive pass must write, from the documented policy: a file is cut at the
/// first batch boundary once it holds `file_bytes` of batches; a file is started only if the
/// batches from there on fill one, or if it starts in a segment uploaded at or before
/// `now - max_lag` (it then takes everything up to `file_bytes`).
fn expected_files(
    segments: &[Segment],
    created_at_ms: &[i64],
    start: i64,
    policy: &ArchivePolicy,
) -> Vec<(i64, i64)> {
    let overdue_before = policy.now_ms - policy.max_lag_ms;
    let pending: Vec<(BatchSpan, i64)> = segments
        .iter()
        .zip(created_at_ms)
        .flat_map(|(s, &created)| s.batches.iter().map(move |&b| (b, created)))
        .filter(|(b, _)| b.last >= start)
        .collect();
    let mut files = Vec::new();
    let mut next = start;
    let mut i = 0;
    while i < pending.len() {
        let remaining: u64 = pending[i..].iter().map(|(b, _)| b.len).sum();
        let due = pending[i].1 <= overdue_before;
        if remaining < policy.file_bytes && !due {
            break;
        }
        let first = pending[i].0.base.max(next);
        let mut held = 0;
        let mut last = first;
        while i < pending.len() {
            held += pending[i].0.len;
            last = pending[i].0.last;
            i += 1;
            if held >= policy.file_bytes {
                break;
            }
        }
        files.push((first, last));
        next = last + 1;
    }
    files
}

fn created_at(p: &RemotePartition) -> Vec<i64> {
    p.segments().iter().map(|s| s.created_at_ms).collect()
}

fn ranges(files: &[ArchiveFile]) -> Vec<(i64, i64)> {
    files
        .iter()
        .map(|f| (f.first_offset.get(), f.last_offset.get()))
        .collect()
}

/// Archive everything now: no lag.
fn due_now(file_bytes: u64) -> ArchivePolicy {
    ArchivePolicy {
        file_bytes,
        max_lag_ms: 0,
        projection: None,
        max_files_per_pass: usize::MAX,
        now_ms: now_ms(),
    }
}

fn no_retry_config(env: &Env) -> RemoteLogManagerConfig {
    RemoteLogManagerConfig {
        retry: RetryPolicy {
            attempts_max: 1,
            ..env.config().retry
        },
        ..env.config()
    }
}

// ---------------------------------------------------------------------------------------------
// Reading archive files back
// ---------------------------------------------------------------------------------------------

/// A fixed-width little-endian value of a primitive array's data at logical index `i`.
macro_rules! fixed_at {
    ($data:expr, $i:expr, $ty:ty) => {{
        let data = &$data;
        let j = data.offset() + $i;
        let width = std::mem::size_of::<$ty>();
        <$ty>::from_le_bytes(
            data.buffers()[0].as_slice()[j * width..(j + 1) * width]
                .try_into()
                .unwrap(),
        )
    }};
}

/// The `i32` offsets `[start, end)` of element `i` of a list, utf8 or binary array's data.
macro_rules! span_at {
    ($data:expr, $i:expr) => {{
        let data = &$data;
        let offsets = data.buffers()[0].as_slice();
        let at =
            |k: usize| i32::from_le_bytes(offsets[4 * k..4 * k + 4].try_into().unwrap()) as usize;
        let j = data.offset() + $i;
        at(j)..at(j + 1)
    }};
}

/// Element `i` of a utf8 or binary array's data, `None` if null.
macro_rules! bytes_at {
    ($data:expr, $i:expr) => {{
        let data = &$data;
        let i: usize = $i;
        if data.is_null(i) {
            None
        } else {
            let span = span_at!(data, i);
            Some(data.buffers()[1].as_slice()[span].to_vec())
        }
    }};
}

/// Every row of an archive file, in file order.
fn read_rows(file: &Bytes) -> Vec<Row> {
    let batches = encoding::read_file(file.clone()).expect("an archive file reads back");
    let mut rows = Vec::new();
    for batch in &batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no column `{name}`"))
                .to_data()
        };
        let offsets = column("offset");
        let timestamps = column("timestamp");
        let keys = column("key");
        let values = column("value");
        let headers = column("headers");
        let producer_ids = column("producer_id");
        let sequences = column("sequence");
        let entries = &headers.child_data()[0];
        let header_keys = &entries.child_data()[0];
        let header_values = &entries.child_data()[1];
        for i in 0..batch.num_rows() {
            assert!(!offsets.is_null(i) && !timestamps.is_null(i) && !headers.is_null(i));
            let row_headers = span_at!(headers, i)
                .map(|e| {
                    let at = entries.offset() + e;
                    let key = bytes_at!(header_keys, at).expect("a header key is never null");
                    (
                        String::from_utf8(key).unwrap(),
                        bytes_at!(header_values, at),
                    )
                })
                .collect();
            rows.push(Row {
                offset: fixed_at!(offsets, i, i64),
                timestamp: fixed_at!(timestamps, i, i64),
                key: bytes_at!(keys, i),
                value: bytes_at!(values, i),
                headers: row_headers,
                producer_id: fixed_at!(producer_ids, i, i64),
                sequence: fixed_at!(sequences, i, i32),
            });
        }
    }
    rows
}

/// The `value_json` column of an archive file by offset, and its Arrow type (as text).
fn read_value_json(file: &Bytes) -> (String, Vec<(i64, JsonRow)>) {
    let batches = encoding::read_file(file.clone()).expect("an archive file reads back");
    let mut out = Vec::new();
    let mut data_type = String::new();
    for batch in &batches {
        let schema = batch.schema();
        let field = schema
            .field_with_name("value_json")
            .expect("a value_json column");
        data_type = format!("{:?}", field.data_type());
        let offsets = batch.column_by_name("offset").unwrap().to_data();
        let json = batch.column_by_name("value_json").unwrap().to_data();
        let fields = json.child_data();
        assert_eq!(fields.len(), 6, "{data_type}");
        for i in 0..batch.num_rows() {
            let offset = fixed_at!(offsets, i, i64);
            if json.is_null(i) {
                out.push((offset, None));
                continue;
            }
            let at = json.offset() + i;
            let long = |k: usize| (!fields[k].is_null(at)).then(|| fixed_at!(fields[k], at, i64));
            let text = |k: usize| bytes_at!(fields[k], at).map(|b| String::from_utf8(b).unwrap());
            let ok = (!fields[2].is_null(at)).then(|| {
                let j = fields[2].offset() + at;
                (fields[2].buffers()[0].as_slice()[j / 8] >> (j % 8)) & 1 == 1
            });
            let score = (!fields[3].is_null(at)).then(|| fixed_at!(fields[3], at, f64));
            out.push((
                offset,
                Some((long(0), text(1), ok, score, text(4), text(5))),
            ));
        }
    }
    (data_type, out)
}

async fn get_bytes(env: &Env, path: &Path) -> Bytes {
    env.store.get(path).await.unwrap().bytes().await.unwrap()
}

async fn exists(env: &Env, path: &Path) -> bool {
    match env.store.head(path).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("HEAD {path}: {e}"),
    }
}

fn archive_dir(env: &Env, tp: &TopicIdPartition) -> Path {
    layout::archive_dir(&Path::from(env.prefix.as_str()), &tp.topic, tp.partition)
}

fn staging_root(env: &Env) -> Path {
    layout::archive_staging_root(&Path::from(env.prefix.as_str()))
}

/// `(first, last, size)` of the archive files visible under `tp`'s archive directory.
async fn visible_files(env: &Env, tp: &TopicIdPartition) -> Vec<(i64, i64, u64)> {
    let mut files: Vec<_> = env
        .objects_under(&archive_dir(env, tp))
        .await
        .iter()
        .filter_map(|m| {
            let (first, last) = layout::parse_archive_file_name(m.location.filename()?)?;
            Some((first.get(), last.get(), m.size))
        })
        .collect();
    files.sort_unstable();
    files
}

/// Checks the archive of `p` as a query engine and a restarted broker would see it:
/// - the visible files are exactly the listed ones, with the listed sizes, named
///   `archive/<topic>/partition=<p>/<first:020>-<last:020>.parquet` under the prefix;
/// - listed ranges follow each other without a gap or an overlap, up to the archived end;
/// - each file's rows are exactly the produced rows of its range at or above `log_start`,
///   and its manifest entry's rows, first row and timestamps match them;
/// - the stored manifest agrees, and no staging file is left.
///
/// Returns every row, in file order.
async fn check_archive(
    env: &Env,
    p: &RemotePartition,
    produced: &[Row],
    log_start: i64,
) -> Vec<Row> {
    let tp = p.tp();
    let files = p.archive_files();
    let listed: Vec<(i64, i64, u64)> = files
        .iter()
        .map(|f| (f.first_offset.get(), f.last_offset.get(), f.size_bytes))
        .collect();
    assert_eq!(
        visible_files(env, tp).await,
        listed,
        "{:?}: the visible archive files are the listed ones",
        env.backend
    );
    for pair in files.windows(2) {
        assert_eq!(
            pair[1].first_offset,
            pair[0].last_offset + 1,
            "{:?}: archive files must follow each other: {:?}",
            env.backend,
            ranges(&files)
        );
    }
    if let Some(last) = files.last() {
        assert_eq!(p.archived_end_offset(), Some(last.last_offset));
    }
    let mut all = Vec::new();
    for file in &files {
        let path = p.archive_path(file);
        assert_eq!(
            path.as_ref(),
            format!(
                "{}/archive/{}/partition={}/{:020}-{:020}.parquet",
                env.prefix, tp.topic, tp.partition, file.first_offset, file.last_offset
            )
        );
        let bytes = get_bytes(env, &path).await;
        assert_eq!(bytes.len() as u64, file.size_bytes, "{path}: size_bytes");
        let rows = read_rows(&bytes);
        let expected = rows_between(
            produced,
            (file.first_offset.max(Offset::new(log_start))).get(),
            file.last_offset.get(),
        );
        assert_eq!(rows.len(), expected.len(), "{path}: rows");
        assert_eq!(rows, expected, "{path}: rows");
        assert_eq!(file.rows, rows.len() as u64, "{path}: manifest rows");
        if let Some(first) = rows.first() {
            assert_eq!(
                file.min_row_offset,
                Some(Offset::new(first.offset)),
                "{path}"
            );
            assert_eq!(
                file.min_timestamp,
                rows.iter().map(|r| r.timestamp).min(),
                "{path}"
            );
            assert_eq!(
                file.max_timestamp,
                rows.iter().map(|r| r.timestamp).max(),
                "{path}"
            );
        }
        let metadata = encoding::read_key_value_metadata(&bytes).unwrap();
        let mut keys: Vec<&str> = metadata.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let count = keys.len();
        keys.dedup();
        assert_eq!(
            keys.len(),
            count,
            "{path}: a metadata key twice: {metadata:?}"
        );
        let topic_id = tp.topic_id.hyphenated().to_string();
        let partition = tp.partition.to_string();
        for (key, value) in [
            ("shale.topic", tp.topic.as_str()),
            ("shale.topic_id", topic_id.as_str()),
            ("shale.partition", partition.as_str()),
            ("shale.archive.format", "1"),
        ] {
            let found: Vec<_> = metadata.iter().filter(|(k, _)| k == key).collect();
            assert_eq!(found.len(), 1, "{path}: {key} in {metadata:?}");
            assert_eq!(found[0].1, value, "{path}: {key}");
        }
        all.extend(rows);
    }
    for pair in all.windows(2) {
        assert!(
            pair[0].offset < pair[1].offset,
            "{:?}: offset {} is archived twice or out of order",
            env.backend,
            pair[1].offset
        );
    }
    let stored = env.manager().open_partition(tp).await.unwrap();
    assert_eq!(stored.archive_files(), files, "the stored manifest agrees");
    assert_eq!(stored.archived_end_offset(), p.archived_end_offset());
    let staged = env.objects_under(&staging_root(env)).await;
    assert!(staged.is_empty(), "staging files left: {staged:?}");
    all
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Three segments (every codec, headers, null keys and values, idempotent batches, commit
/// markers) archived with no lag into 2-4 files: every row reads back equal to what was
/// produced, each offset once; ranges follow each other from offset 0 to the archived end and
/// are cut at the first batch boundary after `file_bytes`; the manifest's rows and sizes match
/// the objects. A second pass with nothing new writes nothing and makes no write request.
/// A pass writes at most `max_files_per_pass` files and says more is pending; passes after it
/// carry on where it stopped, and together they write exactly the files one unlimited pass
/// would.
pub async fn a_pass_stops_at_its_file_limit(env: Env) {
    let manager = env.manager();
    let segments = write_segments(env.fixtures.path(), 0, 3, RICH);
    let produced = all_rows(&segments);
    // Due for both partitions whenever they are copied: the tail is written too.
    let unlimited = ArchivePolicy {
        now_ms: now_ms() + HOUR_MS,
        ..due_now(log_bytes(&segments) / 5 + 1)
    };
    let reference = manager.partition(&env.tp(1)).await.unwrap();
    copy_all(&reference, &segments).await;
    let all = reference.archive(&unlimited).await.unwrap();
    assert!(all.files_written >= 3, "{all:?}");
    assert!(!all.more_pending, "{all:?}");

    let p = manager.partition(&env.tp(0)).await.unwrap();
    copy_all(&p, &segments).await;
    let limited = ArchivePolicy {
        max_files_per_pass: 2,
        ..unlimited.clone()
    };
    let mut passes = Vec::new();
    loop {
        let outcome = p.archive(&limited).await.unwrap();
        assert!(outcome.files_written <= 2, "{outcome:?}");
        passes.push(outcome.files_written);
        if !outcome.more_pending {
            break;
        }
        assert_eq!(
            outcome.files_written, 2,
            "stopped at the limit: {outcome:?}"
        );
        assert!(passes.len() < 20, "passes do not finish: {passes:?}");
    }
    assert_eq!(
        passes.iter().sum::<usize>(),
        all.files_written,
        "{passes:?}"
    );
    assert!(passes.len() >= 2, "{passes:?}");
    assert_eq!(
        ranges(&p.archive_files()),
        ranges(&reference.archive_files())
    );
    check_archive(&env, &p, &produced, 0).await;
}

pub async fn archive_writes_every_record_once(env: Env) {
    let manager = env.manager();
    let tp = env.tp(0);
    let p = manager.partition(&tp).await.unwrap();
    assert_eq!(
        p.archive(&due_now(1)).await.unwrap(),
        ArchiveOutcome::default(),
        "nothing copied, nothing to archive"
    );
    let segments = write_segments(env.fixtures.path(), 0, 3, RICH);
    copy_all(&p, &segments).await;
    let produced = all_rows(&segments);
    let total = log_bytes(&segments);
    let end = segments.last().unwrap().upload.end_offset;
    let policy = due_now(total / 3 + 1);
    let outcome = p.archive(&policy).await.unwrap();
    assert!((2..=4).contains(&outcome.files_written), "{outcome:?}");
    assert_eq!(outcome.rows_written, produced.len() as u64);
    assert_eq!(outcome.input_bytes, total, "every batch went into a file");
    assert_eq!(
        (
            outcome.files_deleted,
            outcome.files_rewritten,
            outcome.unlisted_files_deleted,
            outcome.offsets_skipped
        ),
        (0, 0, 0, 0)
    );
    let files = p.archive_files();
    assert_eq!(files.len(), outcome.files_written);
    assert_eq!(
        ranges(&files),
        expected_files(&segments, &created_at(&p), 0, &policy)
    );
    assert_eq!(files[0].first_offset, Offset::new(0));
    assert_eq!(p.archived_end_offset(), Some(end));
    assert_eq!(
        outcome.output_bytes,
        files.iter().map(|f| f.size_bytes).sum::<u64>()
    );
    let batches: Vec<BatchSpan> = segments.iter().flat_map(|s| s.batches.clone()).collect();
    for (i, file) in files.iter().enumerate() {
        assert_eq!(
            file.input_bytes,
            batch_bytes_between(&segments, file.first_offset.get(), file.last_offset.get())
        );
        assert!(batches.iter().any(|b| b.base == file.first_offset.get()));
        let last_batch = batches
            .iter()
            .find(|b| b.last == file.last_offset.get())
            .expect("a file ends at a batch boundary");
        if i + 1 < files.len() {
            assert!(file.input_bytes >= policy.file_bytes, "{file:?}");
            assert!(
                file.input_bytes - last_batch.len < policy.file_bytes,
                "cut at the first batch boundary after file_bytes: {file:?}"
            );
        }
    }
    let rows = check_archive(&env, &p, &produced, 0).await;
    assert_eq!(rows, produced);
    // Nothing new: no file, no write, no LIST (the unlisted-file check ran on the first pass).
    let before = manager.counters_total();
    let again = p.archive(&due_now(1)).await.unwrap();
    assert_eq!(again, ArchiveOutcome::default());
    let after = manager.counters_total();
    assert_eq!(after.put_requests, before.put_requests);
    assert_eq!(after.delete_requests, before.delete_requests);
    assert_eq!(after.list_requests, before.list_requests);
    assert_eq!(p.archive_files(), files);
}

/// With `file_bytes` beyond everything, nothing is written until the first pending segment was
/// uploaded `max_lag_ms` ago; then one file takes it all. With `file_bytes` at 1.25 segments,
/// only full files are written and the rest waits (the archived end stops at a file boundary
/// inside a segment); later passes continue exactly after the last file, mid-segment (found
/// through the offset index), and the tail goes once it is due.
pub async fn lag_and_file_size_decide_what_is_written(env: Env) {
    let manager = env.manager();
    let segments = write_segments(env.fixtures.path(), 0, 5, RICH);
    let produced = all_rows(&segments);

    // Lag: one file of everything once the oldest segment is due, none before.
    let p = manager.partition(&env.tp(0)).await.unwrap();
    copy_all(&p, &segments[..3]).await;
    let created = created_at(&p);
    let waiting = ArchivePolicy {
        file_bytes: NEVER_FULL,
        max_lag_ms: HOUR_MS,
        projection: None,
        max_files_per_pass: usize::MAX,
        now_ms: *created.iter().max().unwrap(),
    };
    assert_eq!(
        p.archive(&waiting).await.unwrap(),
        ArchiveOutcome::default()
    );
    let almost = ArchivePolicy {
        now_ms: created[0] + HOUR_MS - 1,
        ..waiting.clone()
    };
    assert_eq!(p.archive(&almost).await.unwrap(), ArchiveOutcome::default());
    assert!(p.archive_files().is_empty());
    assert_eq!(p.archived_end_offset(), None);
    assert!(visible_files(&env, p.tp()).await.is_empty());
    let due = ArchivePolicy {
        now_ms: created[0] + HOUR_MS,
        ..waiting.clone()
    };
    let outcome = p.archive(&due).await.unwrap();
    assert_eq!(outcome.files_written, 1, "{outcome:?}");
    let end = segments[2].upload.end_offset;
    assert_eq!(ranges(&p.archive_files()), vec![(0, end.get())]);
    check_archive(&env, &p, &produced, 0).await;

    // File size: only full files until the tail is due.
    let p = manager.partition(&env.tp(1)).await.unwrap();
    copy_all(&p, &segments[..3]).await;
    let segment_bytes = segments[0].upload.size_bytes;
    let file_bytes = segment_bytes * 5 / 4;
    let created = created_at(&p);
    let not_due = ArchivePolicy {
        file_bytes,
        max_lag_ms: HOUR_MS,
        projection: None,
        max_files_per_pass: usize::MAX,
        now_ms: *created.iter().max().unwrap(),
    };
    let expected = expected_files(&segments[..3], &created, 0, &not_due);
    assert!(expected.len() >= 2, "{expected:?}");
    let outcome = p.archive(&not_due).await.unwrap();
    assert_eq!(outcome.files_written, expected.len());
    assert_eq!(ranges(&p.archive_files()), expected);
    let boundary = p.archived_end_offset().unwrap();
    assert!(
        boundary < end && segments.iter().all(|s| s.upload.end_offset != boundary),
        "the rest waits, and the boundary {boundary} is inside a segment"
    );
    for file in p.archive_files() {
        assert!(file.input_bytes >= file_bytes, "only full files: {file:?}");
    }
    let version = p.manifest().version;
    assert_eq!(
        p.archive(&not_due).await.unwrap(),
        ArchiveOutcome::default()
    );
    assert_eq!(p.manifest().version, version);

    // Two more segments: the next files continue right after the boundary.
    copy_all(&p, &segments[3..]).await;
    let created = created_at(&p);
    let not_due = ArchivePolicy {
        now_ms: *created.iter().max().unwrap(),
        ..not_due
    };
    let expected = expected_files(&segments, &created, (boundary + 1).get(), &not_due);
    assert!(!expected.is_empty());
    assert_eq!(expected[0].0, (boundary + 1).get());
    let before = manager.counters_total();
    let outcome = p.archive(&not_due).await.unwrap();
    assert_eq!(outcome.files_written, expected.len(), "{outcome:?}");
    // The pass found its start in the middle of segment 2 through the offset index: it read
    // at most an index interval and a batch before the batch holding it (and the index).
    let read = manager.counters_total().get_bytes - before.get_bytes;
    let resume = segments[2]
        .batches
        .iter()
        .position(|b| b.last > boundary.get())
        .unwrap();
    let from_resume: u64 = segments[2].batches[resume..]
        .iter()
        .map(|b| b.len)
        .sum::<u64>()
        + log_bytes(&segments[3..]);
    let largest_batch = segments[2].batches.iter().map(|b| b.len).max().unwrap();
    let slack = INDEX_INTERVAL_BYTES as u64 + largest_batch + p.segments()[2].indexes_size_bytes;
    assert!(
        from_resume <= read && read <= from_resume + slack,
        "read {read} bytes; {from_resume} from the resume point on (+ up to {slack})"
    );
    assert!(
        segments[2].upload.size_bytes
            - segments[2].batches[resume..]
                .iter()
                .map(|b| b.len)
                .sum::<u64>()
            > slack,
        "the resume point is far enough into the segment for this check to mean something"
    );
    let files = p.archive_files();
    assert_eq!(ranges(&files[files.len() - expected.len()..]), expected);
    let boundary = p.archived_end_offset().unwrap();
    let end = segments[4].upload.end_offset;
    assert!(boundary < end);

    // The tail, once its segment is due.
    let tail = ArchivePolicy {
        now_ms: created[4] + HOUR_MS,
        ..not_due
    };
    let outcome = p.archive(&tail).await.unwrap();
    assert_eq!(outcome.files_written, 1, "{outcome:?}");
    assert_eq!(
        ranges(&p.archive_files()).last(),
        Some(&((boundary + 1).get(), end.get()))
    );
    let rows = check_archive(&env, &p, &produced, 0).await;
    assert_eq!(rows, produced);
}

/// A crash right after an archive file was uploaded, when the manifest version recording it
/// fails (before it reached the store, or after, with the answer lost). The file is visible;
/// the next pass, by the same handle once the store answers again or by a new handle after a
/// restart, deletes it if no manifest lists it (or keeps it if one does) and archives on with a
/// different `file_bytes`: every offset is visible exactly once.
pub async fn crash_between_upload_and_manifest_then_retry(env: Env) {
    let segments = write_segments(env.fixtures.path(), 0, 3, RICH);
    let produced = all_rows(&segments);
    let segment_bytes = segments[0].upload.size_bytes;
    // Mutating requests of the first file: its PUT (a local store: PUT to staging, then the
    // rename, which the fault store sees as COPY + DELETE), then the manifest's conditional PUT.
    let manifest_put = if env.backend == Backend::Local { 3 } else { 1 };
    let cases = [(false, false), (false, true), (true, false), (true, true)];
    for (i, &(landed, restart)) in cases.iter().enumerate() {
        let tp = env.tp(10 + i as i32);
        let clean = env.manager();
        copy_all(&clean.partition(&tp).await.unwrap(), &segments).await;
        let faulty = FaultyStore::crash_at(env.store.clone(), manifest_put, landed);
        let crashing = env.manager_over(Arc::new(faulty.clone()), no_retry_config(&env));
        let p = crashing.partition(&tp).await.unwrap();
        let err = p.archive(&due_now(segment_bytes)).await.unwrap_err();
        assert!(faulty.crashed());
        assert!(
            matches!(&err, TieringError::Store { operation: "conditional PUT", path, .. } if path.contains("/manifest/")),
            "case {i}: {err}"
        );
        let visible = visible_files(&env, &tp).await;
        assert_eq!(visible.len(), 1, "case {i}: the uploaded file is visible");
        let stored = env.manager().open_partition(&tp).await.unwrap();
        assert_eq!(
            ranges(&stored.archive_files()),
            if landed {
                vec![(visible[0].0, visible[0].1)]
            } else {
                vec![]
            },
            "case {i}"
        );

        let fresh = env.manager();
        let p = if restart {
            drop(p);
            drop(crashing);
            fresh.open_partition(&tp).await.unwrap()
        } else {
            faulty.heal();
            p
        };
        let outcome = p
            .archive(&due_now(segment_bytes * 7 / 10))
            .await
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(
            outcome.unlisted_files_deleted,
            usize::from(!landed),
            "case {i}: {outcome:?}"
        );
        assert!(outcome.files_written >= 2, "case {i}: {outcome:?}");
        let files = p.archive_files();
        assert_eq!(files[0].first_offset, Offset::new(0));
        if landed {
            assert_eq!(
                (files[0].first_offset.get(), files[0].last_offset.get()),
                (visible[0].0, visible[0].1)
            );
        }
        let rows = check_archive(&env, &p, &produced, 0).await;
        assert_eq!(rows, produced, "case {i}: every offset exactly once");
        assert_eq!(
            p.archive(&due_now(1)).await.unwrap(),
            ArchiveOutcome::default()
        );
    }
}

/// An archive object's upload fails part-way (the single PUT; on a local store the rename from
/// staging; on the others each step of a multipart upload of a 10 MiB file): the pass fails,
/// nothing is visible and the manifest lists nothing; the same handle retries once the store
/// answers again and succeeds.
pub async fn failed_archive_upload_leaves_nothing_visible(env: Env) {
    let small = write_segments(&env.fixtures.path().join("small"), 0, 2, RICH);
    let big = write_segments(
        &env.fixtures.path().join("big"),
        0,
        1,
        Shape {
            batches: 40,
            records_per_batch: 4,
            value: noise_value,
            commit_marker: false,
        },
    );
    // (segments, mutating request that fails)
    let mut cases: Vec<(&[Segment], u64)> = vec![(&small[..], 0)];
    if env.backend == Backend::Local {
        cases.push((&small[..], 1)); // the COPY half of the rename from staging
    } else {
        cases.extend([(&big[..], 1), (&big[..], 2), (&big[..], 3)]); // part 1, part 2, complete
    }
    for (i, &(segments, fail_at)) in cases.iter().enumerate() {
        let tp = env.tp(40 + i as i32);
        copy_all(&env.manager().partition(&tp).await.unwrap(), segments).await;
        let produced = all_rows(segments);
        let faulty = FaultyStore::crash_at(env.store.clone(), fail_at, false);
        let config = RemoteLogManagerConfig {
            multipart_threshold_bytes: 1024 * 1024,
            multipart_part_bytes: 8 * 1024 * 1024,
            ..no_retry_config(&env)
        };
        let manager = env.manager_over(Arc::new(faulty.clone()), config);
        let p = manager.partition(&tp).await.unwrap();
        let err = p.archive(&due_now(NEVER_FULL)).await.unwrap_err();
        assert!(faulty.crashed(), "case {i}");
        assert!(matches!(err, TieringError::Store { .. }), "case {i}: {err}");
        assert!(visible_files(&env, &tp).await.is_empty(), "case {i}");
        assert!(p.archive_files().is_empty());
        let stored = env.manager().open_partition(&tp).await.unwrap();
        assert!(stored.archive_files().is_empty());

        faulty.heal();
        let outcome = p.archive(&due_now(NEVER_FULL)).await.unwrap();
        assert_eq!(outcome.files_written, 1, "case {i}: {outcome:?}");
        assert_eq!(outcome.unlisted_files_deleted, 0);
        if std::ptr::eq(segments, &big[..]) {
            assert!(
                outcome.output_bytes > 8 * 1024 * 1024,
                "the file needs two parts: {outcome:?}"
            );
        }
        let rows = check_archive(&env, &p, &produced, 0).await;
        assert_eq!(rows, produced, "case {i}");
    }
}

/// Plain retention deletes the files wholly below the new remote log start and keeps the file
/// straddling it whole; DeleteRecords inside a file rewrites it under the same name without
/// the rows below the offset (the other rows and files unchanged, the manifest updated);
/// a second run does nothing, and archiving continues after the rewrite.
pub async fn archive_retention_deletes_and_rewrites(env: Env) {
    let manager = env.manager();
    let tp = env.tp(0);
    let p = manager.partition(&tp).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 0, 6, RICH);
    let produced = all_rows(&segments);
    copy_all(&p, &segments[..5]).await;
    let segment_bytes = segments[0].upload.size_bytes;
    p.archive(&due_now(segment_bytes * 7 / 10)).await.unwrap();
    let files = p.archive_files();
    assert!(files.len() >= 6, "{:?}", ranges(&files));
    let mut objects = BTreeMap::new();
    for file in &files {
        objects.insert(
            file.first_offset,
            get_bytes(&env, &p.archive_path(file)).await,
        );
    }

    // retention.bytes: the two oldest segments go.
    let kept: u64 = segments[2..5].iter().map(|s| s.upload.size_bytes).sum();
    let policy = RetentionPolicy {
        retention_ms: -1,
        retention_bytes: kept as i64,
        now_ms: 0,
        local_only_bytes: 0,
    };
    assert_eq!(
        p.enforce_retention(policy).await.unwrap().segments_deleted,
        2
    );
    let floor = segments[2].upload.base_offset;
    assert_eq!(p.remote_log_start_offset(), Some(floor));
    let straddling = files
        .iter()
        .find(|f| f.first_offset < floor && floor <= f.last_offset)
        .expect("a file straddles the retention boundary")
        .clone();
    let below: Vec<&ArchiveFile> = files.iter().filter(|f| f.last_offset < floor).collect();
    let outcome = p.enforce_archive_retention().await.unwrap();
    assert_eq!(outcome.files_deleted, below.len(), "{outcome:?}");
    assert_eq!(outcome.files_rewritten, 0, "{outcome:?}");
    for file in &below {
        assert!(!exists(&env, &p.archive_path(file)).await);
    }
    let after = p.archive_files();
    assert_eq!(
        after,
        files
            .iter()
            .filter(|f| f.last_offset >= floor)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(after[0], straddling, "kept whole, entry unchanged");
    assert_eq!(
        get_bytes(&env, &p.archive_path(&straddling)).await,
        objects[&straddling.first_offset],
        "kept whole, object unchanged"
    );
    check_archive(&env, &p, &produced, 0).await;

    // DeleteRecords in the middle of a later file.
    let target = after[2].clone();
    let cut = target.first_offset + (target.last_offset - target.first_offset) / 2;
    p.delete_segments_before(cut).await.unwrap();
    let outcome = p.enforce_archive_retention().await.unwrap();
    assert_eq!(outcome.files_deleted, 2, "{outcome:?}");
    assert_eq!(outcome.files_rewritten, 1, "{outcome:?}");
    let after = p.archive_files();
    let rewritten = after[0].clone();
    assert_eq!(
        (rewritten.first_offset, rewritten.last_offset),
        (target.first_offset, target.last_offset),
        "same range, same name"
    );
    let kept_rows = rows_between(&produced, cut.get(), target.last_offset.get());
    assert!(!kept_rows.is_empty() && kept_rows.len() < target.rows as usize);
    assert_eq!(rewritten.rows, kept_rows.len() as u64);
    assert_eq!(
        rewritten.min_row_offset,
        Some(Offset::new(kept_rows[0].offset))
    );
    assert_eq!(rewritten.input_bytes, target.input_bytes);
    assert_eq!(rewritten.created_at_ms, target.created_at_ms);
    let object = get_bytes(&env, &p.archive_path(&rewritten)).await;
    assert_eq!(object.len() as u64, rewritten.size_bytes);
    assert_eq!(read_rows(&object), kept_rows);
    assert_eq!(
        read_rows(&objects[&target.first_offset]),
        rows_between(
            &produced,
            target.first_offset.get(),
            target.last_offset.get()
        ),
        "the rows at or above the cut are the ones the old file had"
    );
    for file in &after[1..] {
        assert_eq!(
            &get_bytes(&env, &p.archive_path(file)).await,
            &objects[&file.first_offset],
            "files above the cut are untouched"
        );
        assert!(files.contains(file));
    }
    check_archive(&env, &p, &produced, cut.get()).await;
    assert_eq!(
        p.enforce_archive_retention().await.unwrap(),
        ArchiveOutcome::default()
    );

    // Archiving continues after the rewritten and untouched files.
    let end = p.archived_end_offset().unwrap();
    p.copy_segment(segments[5].upload.clone()).await.unwrap();
    let outcome = p.archive(&due_now(NEVER_FULL)).await.unwrap();
    assert_eq!(outcome.files_written, 1);
    assert_eq!(
        ranges(&p.archive_files()).last(),
        Some(&((end + 1).get(), segments[5].upload.end_offset.get()))
    );
    check_archive(&env, &p, &produced, cut.get()).await;

    // Retention removes every segment: every file goes, the archived end stays, and the next
    // segment is archived from right after it.
    let end = p.archived_end_offset().unwrap();
    let everything = RetentionPolicy {
        retention_bytes: 0,
        ..policy
    };
    let remaining = p.manifest().readable_segments().count();
    assert_eq!(
        p.enforce_retention(everything)
            .await
            .unwrap()
            .segments_deleted,
        remaining
    );
    assert_eq!(p.remote_log_start_offset(), None);
    let count = p.archive_files().len();
    let outcome = p.enforce_archive_retention().await.unwrap();
    assert_eq!((outcome.files_deleted, outcome.files_rewritten), (count, 0));
    assert!(p.archive_files().is_empty());
    assert!(visible_files(&env, &tp).await.is_empty());
    assert_eq!(p.archived_end_offset(), Some(end));
    assert_eq!(
        p.archive(&due_now(1)).await.unwrap(),
        ArchiveOutcome::default()
    );
    let more = write_segments(&env.fixtures.path().join("more"), (end + 1).get(), 1, RICH);
    p.copy_segment(more[0].upload.clone()).await.unwrap();
    let outcome = p.archive(&due_now(NEVER_FULL)).await.unwrap();
    assert_eq!((outcome.files_written, outcome.offsets_skipped), (1, 0));
    assert_eq!(
        ranges(&p.archive_files()),
        vec![((end + 1).get(), more[0].upload.end_offset.get())]
    );
    check_archive(&env, &p, &all_rows(&more), 0).await;
}

/// Retention (or DeleteRecords, to an offset inside a batch) removes segments the archive had
/// not reached: the next pass starts at the new remote log start, reports the offsets it
/// skipped, and archive retention then deletes the file left below it.
pub async fn archive_lag_past_retention_skips_offsets(env: Env) {
    let manager = env.manager();
    let segments = write_segments(env.fixtures.path(), 0, 5, RICH);
    let produced = all_rows(&segments);
    let segment_bytes = segments[0].upload.size_bytes;
    for (i, delete_records) in [false, true].into_iter().enumerate() {
        let tp = env.tp(i as i32);
        let p = manager.partition(&tp).await.unwrap();
        copy_all(&p, &segments[..1]).await;
        let half = ArchivePolicy {
            file_bytes: segment_bytes / 2,
            max_lag_ms: HOUR_MS,
            projection: None,
            max_files_per_pass: usize::MAX,
            now_ms: created_at(&p)[0],
        };
        assert_eq!(p.archive(&half).await.unwrap().files_written, 1);
        let archived = p.archived_end_offset().unwrap();
        assert!(archived < segments[0].upload.end_offset);
        copy_all(&p, &segments[1..]).await;
        let floor = if delete_records {
            let cut = segments[2].upload.base_offset + 9;
            assert_ne!(
                cut.get() % RICH.records_per_batch as i64,
                0,
                "inside a batch"
            );
            p.delete_segments_before(cut).await.unwrap();
            cut
        } else {
            let kept: u64 = segments[2..].iter().map(|s| s.upload.size_bytes).sum();
            let policy = RetentionPolicy {
                retention_ms: -1,
                retention_bytes: kept as i64,
                now_ms: 0,
                local_only_bytes: 0,
            };
            p.enforce_retention(policy).await.unwrap();
            segments[2].upload.base_offset
        };
        assert_eq!(p.remote_log_start_offset(), Some(floor));
        // A pass that writes nothing (the rest is not due) still records the skip, once.
        let not_due = ArchivePolicy {
            max_lag_ms: i64::MAX,
            ..due_now(NEVER_FULL)
        };
        let quiet = p.archive(&not_due).await.unwrap();
        assert_eq!(
            (quiet.offsets_skipped, quiet.files_written),
            ((floor - archived - 1) as u64, 0),
            "{quiet:?}"
        );
        assert_eq!(p.archived_end_offset(), Some(floor - 1));
        let outcome = p.archive(&due_now(NEVER_FULL)).await.unwrap();
        assert_eq!(outcome.offsets_skipped, 0, "{outcome:?}");
        assert_eq!(outcome.files_written, 1);
        let end = segments[4].upload.end_offset;
        assert_eq!(
            ranges(&p.archive_files()).last(),
            Some(&(floor.get(), end.get()))
        );
        let outcome = p.enforce_archive_retention().await.unwrap();
        assert_eq!((outcome.files_deleted, outcome.files_rewritten), (1, 0));
        assert_eq!(ranges(&p.archive_files()), vec![(floor.get(), end.get())]);
        let rows = check_archive(&env, &p, &produced, floor.get()).await;
        assert_eq!(rows, rows_between(&produced, floor.get(), end.get()));
    }
}

/// Topic deletion removes the partition's archive files (and no other partition's). The scrub
/// deletes archive files no manifest lists (a stray file in a live partition's directory,
/// files of a topic or partition no manifest has, staging files) but never a listed file, nor
/// anything of a partition whose manifest it cannot read; with a grace period it keeps young
/// files.
pub async fn delete_all_and_scrub_remove_unlisted_archive_files(env: Env) {
    let manager = env.manager();
    let segments = write_segments(env.fixtures.path(), 0, 2, RICH);
    let segment_bytes = segments[0].upload.size_bytes;
    let mut partitions = Vec::new();
    for partition in 0..3 {
        let p = manager.partition(&env.tp(partition)).await.unwrap();
        copy_all(&p, &segments).await;
        assert!(
            p.archive(&due_now(segment_bytes))
                .await
                .unwrap()
                .files_written
                >= 2
        );
        partitions.push(p);
    }
    let root = layout::archive_root(&Path::from(env.prefix.as_str()));
    let stray_name = layout::archive_file_name(Offset::new(999_000), Offset::new(999_999));
    let stray_live = archive_dir(&env, &env.tp(0)).join(stray_name.as_str());
    let stray_ghost_topic = root
        .clone()
        .join("ghost-topic")
        .join("partition=0")
        .join(layout::archive_file_name(Offset::new(0), Offset::new(10)).as_str());
    let stray_no_partition = archive_dir(&env, &env.tp(9))
        .join(layout::archive_file_name(Offset::new(0), Offset::new(10)).as_str());
    let stray_staging = staging_root(&env)
        .join("orders-v1")
        .join("partition=0")
        .join(
            format!(
                "{}.tmp",
                layout::archive_file_name(Offset::new(0), Offset::new(5))
            )
            .as_str(),
        );
    let unknown = archive_dir(&env, &env.tp(0)).join("README.txt");
    let stray_unreadable = archive_dir(&env, &env.tp(2)).join(stray_name.as_str());
    let orphans = [
        &stray_live,
        &stray_ghost_topic,
        &stray_no_partition,
        &stray_staging,
    ];
    for path in orphans.iter().copied().chain([&unknown, &stray_unreadable]) {
        env.store
            .put(path, PutPayload::from_static(b"not parquet"))
            .await
            .unwrap();
    }
    // Partition 2's newest manifest becomes unreadable: its archive must be left alone.
    let layout2 = PartitionLayout::new(&Path::from(env.prefix.as_str()), &env.tp(2));
    let newest = layout2.manifest(partitions[2].manifest().version);
    let mut bytes = get_bytes(&env, &newest).await.to_vec();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    env.store
        .put(&newest, PutPayload::from(bytes))
        .await
        .unwrap();

    // A grace period keeps young files.
    manager.scrub(Duration::from_secs(3600)).await.unwrap();
    for path in orphans {
        assert!(
            exists(&env, path).await,
            "{path} is younger than the grace period"
        );
    }
    let report = manager.scrub(Duration::ZERO).await.unwrap();
    assert_eq!(report.partitions_skipped.len(), 1, "{report:?}");
    assert_eq!(report.partitions_skipped[0].0, env.tp(2));
    assert_eq!(report.orphans_deleted, orphans.len() as u64, "{report:?}");
    assert!(report.unknown_objects >= 1, "{report:?}");
    for path in orphans {
        assert!(!exists(&env, path).await, "{path} was not deleted");
    }
    assert!(
        exists(&env, &unknown).await,
        "an unknown name is left alone"
    );
    assert!(
        exists(&env, &stray_unreadable).await,
        "an unreadable partition's archive is left alone"
    );
    for p in &partitions {
        let files = p.archive_files();
        assert!(!files.is_empty());
        for file in &files {
            let path = p.archive_path(file);
            assert_eq!(env.store.head(&path).await.unwrap().size, file.size_bytes);
        }
    }
    env.store.delete(&unknown).await.unwrap();
    check_archive(&env, &partitions[0], &all_rows(&segments), 0).await;

    // Topic deletion: partition 1's archive goes with it, partition 0's stays.
    let doomed = partitions[1].archive_files();
    partitions[1].delete_all().await.unwrap();
    assert!(env
        .objects_under(&archive_dir(&env, &env.tp(1)))
        .await
        .is_empty());
    let layout1 = PartitionLayout::new(&Path::from(env.prefix.as_str()), &env.tp(1));
    assert!(env.objects_under(layout1.dir()).await.is_empty());
    for file in &doomed {
        assert!(!exists(&env, &partitions[1].archive_path(file)).await);
    }
    let report = manager.scrub(Duration::ZERO).await.unwrap();
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    check_archive(&env, &partitions[0], &all_rows(&segments), 0).await;
}

/// A projection adds a `value_json` column with the declared fields typed (nulls for values
/// that are not JSON objects and for tombstones); a DeleteRecords rewrite keeps the column,
/// its type and its values, from the projection recorded in the file's metadata.
pub async fn json_projection_survives_a_rewrite(env: Env) {
    let manager = env.manager();
    let tp = env.tp(0);
    let p = manager.partition(&tp).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 0, 2, RICH);
    let produced = all_rows(&segments);
    copy_all(&p, &segments).await;
    let projection = Arc::new(JsonProjection::parse(PROJECTION).unwrap().unwrap());
    let policy = ArchivePolicy {
        projection: Some(projection.clone()),
        ..due_now(log_bytes(&segments) / 2 + 1)
    };
    assert_eq!(p.archive(&policy).await.unwrap().files_written, 2);
    let files = p.archive_files();
    let mut types = Vec::new();
    for file in &files {
        let bytes = get_bytes(&env, &p.archive_path(file)).await;
        let metadata = encoding::read_key_value_metadata(&bytes).unwrap();
        let fields: Vec<_> = metadata
            .iter()
            .filter(|(k, _)| k == "shale.archive.json_fields")
            .collect();
        assert_eq!(fields.len(), 1, "{metadata:?}");
        assert_eq!(fields[0].1, projection.to_string());
        let (data_type, json) = read_value_json(&bytes);
        for name in ["id", "name", "ok", "score", "nested", "missing"] {
            assert!(data_type.contains(&format!("{name:?}")), "{data_type}");
        }
        let expected: Vec<(i64, JsonRow)> =
            rows_between(&produced, file.first_offset.get(), file.last_offset.get())
                .iter()
                .map(|r| (r.offset, expected_json(r)))
                .collect();
        assert!(expected.iter().any(|(_, j)| j.is_none()));
        assert!(expected.iter().any(|(_, j)| j.is_some()));
        assert_eq!(json, expected);
        types.push(data_type);
    }
    check_archive(&env, &p, &produced, 0).await;

    let target = files[1].clone();
    let cut = target.first_offset + (target.last_offset - target.first_offset) / 2;
    p.delete_segments_before(cut).await.unwrap();
    let outcome = p.enforce_archive_retention().await.unwrap();
    assert_eq!((outcome.files_deleted, outcome.files_rewritten), (1, 1));
    let rewritten = p.archive_files()[0].clone();
    assert_eq!(rewritten.first_offset, target.first_offset);
    let bytes = get_bytes(&env, &p.archive_path(&rewritten)).await;
    let (data_type, json) = read_value_json(&bytes);
    assert_eq!(data_type, types[1], "the rewrite keeps value_json's type");
    let expected: Vec<(i64, JsonRow)> =
        rows_between(&produced, cut.get(), target.last_offset.get())
            .iter()
            .map(|r| (r.offset, expected_json(r)))
            .collect();
    assert_eq!(json, expected);
    let metadata = encoding::read_key_value_metadata(&bytes).unwrap();
    for key in [
        "shale.archive.json_fields",
        "shale.topic",
        "shale.archive.format",
    ] {
        assert_eq!(
            metadata.iter().filter(|(k, _)| k == key).count(),
            1,
            "{key}: {metadata:?}"
        );
    }
    check_archive(&env, &p, &produced, cut.get()).await;
}

/// A flipped byte inside a stored batch fails the pass with an archive error: with one file
/// planned, nothing is recorded or visible (and a retry fails the same way); with small files,
/// those before the damaged batch are written and nothing at or after it.
pub async fn corrupt_segment_bytes_fail_the_pass(env: Env) {
    let manager = env.manager();
    let segments = write_segments(env.fixtures.path(), 0, 2, RICH);
    let produced = all_rows(&segments);
    let segment_bytes = segments[0].upload.size_bytes;
    // The middle batch of the second segment, past its header, inside the CRC-covered records.
    let damaged = segments[1].batches[segments[1].batches.len() / 2];
    let position: u64 = segments[1]
        .batches
        .iter()
        .take_while(|b| b.base < damaged.base)
        .map(|b| b.len)
        .sum::<u64>()
        + RECORD_BATCH_OVERHEAD as u64
        + 2;
    assert!(damaged.len > RECORD_BATCH_OVERHEAD as u64 + 2);
    for (i, file_bytes) in [NEVER_FULL, segment_bytes / 2].into_iter().enumerate() {
        let tp = env.tp(i as i32);
        let p = manager.partition(&tp).await.unwrap();
        copy_all(&p, &segments).await;
        let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &tp);
        let stored = &p.segments()[1];
        let log = layout.log(stored.base_offset, stored.segment_id);
        let mut bytes = get_bytes(&env, &log).await.to_vec();
        bytes[position as usize] ^= 0x40;
        env.store.put(&log, PutPayload::from(bytes)).await.unwrap();

        let err = p.archive(&due_now(file_bytes)).await.unwrap_err();
        assert!(matches!(err, TieringError::Archive { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("record batch at offset {}", damaged.base)),
            "{err}"
        );
        if file_bytes == NEVER_FULL {
            assert!(p.archive_files().is_empty());
            assert_eq!(p.archived_end_offset(), None);
            assert!(visible_files(&env, &tp).await.is_empty());
            let again = p.archive(&due_now(file_bytes)).await.unwrap_err();
            assert!(matches!(again, TieringError::Archive { .. }), "{again}");
            assert!(visible_files(&env, &tp).await.is_empty());
        } else {
            let end = p
                .archived_end_offset()
                .expect("the files before the damage");
            assert!(end < Offset::new(damaged.base), "{end} >= {}", damaged.base);
            assert_eq!(p.archive_files()[0].first_offset, Offset::new(0));
        }
        check_archive(&env, &p, &produced, 0).await;
    }
}

/// A topic may be named `_staging` (Kafka allows it); its archive directory is then
/// `archive/_staging/partition=<p>/`, and the scrub must keep its listed files (the staging
/// root is `_staging/archive/`, outside `archive/`, so the two cannot be confused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_keeps_the_archive_of_a_topic_named_staging() {
    let env = Env::new(Backend::Memory, "staging_topic").unwrap();
    let manager = env.manager();
    let tp = TopicIdPartition::new("_staging", uuid::Uuid::from_u128(7), 0);
    let p = manager.partition(&tp).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 0, 2, RICH);
    copy_all(&p, &segments).await;
    assert_eq!(
        p.archive(&due_now(NEVER_FULL)).await.unwrap().files_written,
        1
    );
    let report = manager.scrub(Duration::ZERO).await.unwrap();
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    check_archive(&env, &p, &all_rows(&segments), 0).await;
}
