//! Tests of the Parquet archive (`shale_formats::archive`) through the crate's public API: real
//! Kafka v2 record batches in, Parquet bytes out, read back and compared column by column.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int16Type, Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::basic::Compression as ParquetCompression;
use parquet::file::metadata::SortingColumn;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use proptest::prelude::*;

use shale_formats::archive::{
    read_file, read_key_value_metadata, rows_from, schema, ArchiveError, ArchiveOptions,
    ArchiveWriter, FileStats, JsonProjection, ARCHIVE_FORMAT,
};
use shale_formats::batch::{
    BatchError, RecordBatchHeader, TimestampType, CONTROL_FLAG_MASK, DELETE_HORIZON_FLAG_MASK,
    RECORDS_OFFSET, TIMESTAMP_TYPE_MASK, TRANSACTIONAL_FLAG_MASK,
};
use shale_formats::compression::Compression;
use shale_formats::ids::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use shale_formats::record::{decode_records, encode_batch, BatchOptions, Record, RecordHeader};

// ---------------------------------------------------------------------------------------------
// Building batches
// ---------------------------------------------------------------------------------------------

/// A record with explicit deltas.
fn rec(
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&[u8], Option<&[u8]>)],
) -> Record {
    Record {
        attributes: 0,
        timestamp_delta,
        offset_delta,
        key: key.map(Bytes::copy_from_slice),
        value: value.map(Bytes::copy_from_slice),
        headers: headers
            .iter()
            .map(|(k, v)| RecordHeader {
                key: Bytes::copy_from_slice(k),
                value: v.map(Bytes::copy_from_slice),
            })
            .collect(),
    }
}

/// One batch to encode, kept beside its bytes so that expectations are computed from what was
/// asked for, not from the crate's own decoder.
#[derive(Debug, Clone)]
struct Spec {
    options: BatchOptions,
    records: Vec<Record>,
}

impl Spec {
    fn new(options: BatchOptions, records: Vec<Record>) -> Self {
        Self { options, records }
    }

    fn encode(&self) -> Bytes {
        Bytes::from(encode_batch(&self.options, &self.records).expect("encode batch"))
    }

    /// The attributes Kafka stores, computed by hand from the options.
    fn attributes(&self) -> i16 {
        let mut a = i16::from(self.options.compression.id());
        if self.options.timestamp_type == TimestampType::LogAppendTime {
            a |= 0x08;
        }
        if self.options.is_transactional {
            a |= 0x10;
        }
        if self.options.is_control {
            a |= 0x20;
        }
        if self.options.has_delete_horizon_ms {
            a |= 0x40;
        }
        a
    }

    fn last_offset_delta(&self) -> i32 {
        self.options.last_offset_delta.unwrap_or_else(|| {
            self.records
                .iter()
                .map(|r| r.offset_delta)
                .max()
                .unwrap_or(0)
        })
    }

    fn last_offset(&self) -> i64 {
        (self.options.base_offset + i64::from(self.last_offset_delta())).get()
    }

    fn max_timestamp(&self) -> i64 {
        self.options.max_timestamp.unwrap_or_else(|| {
            self.records
                .iter()
                .map(|r| self.options.base_timestamp + r.timestamp_delta)
                .max()
                .unwrap_or(self.options.base_timestamp)
        })
    }

    fn expected_rows(&self, min_offset: i64) -> Vec<Row> {
        let o = &self.options;
        let log_append = o.timestamp_type == TimestampType::LogAppendTime;
        self.records
            .iter()
            .map(|r| (o.base_offset + i64::from(r.offset_delta), r))
            .filter(|(offset, _)| *offset >= Offset::new(min_offset))
            .map(|(offset, r)| Row {
                offset: offset.get(),
                timestamp: if log_append {
                    self.max_timestamp()
                } else {
                    o.base_timestamp + r.timestamp_delta
                },
                timestamp_type: if log_append {
                    "LogAppendTime"
                } else {
                    "CreateTime"
                }
                .to_string(),
                key: r.key.as_ref().map(|k| k.to_vec()),
                value: r.value.as_ref().map(|v| v.to_vec()),
                headers: r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            String::from_utf8_lossy(&h.key).into_owned(),
                            h.value.as_ref().map(|v| v.to_vec()),
                        )
                    })
                    .collect(),
                producer_id: o.producer_id.get(),
                producer_epoch: o.producer_epoch.get(),
                sequence: kafka_sequence(o.base_sequence, r.offset_delta),
                batch_base_offset: o.base_offset.get(),
                batch_last_offset_delta: self.last_offset_delta(),
                batch_partition_leader_epoch: o.partition_leader_epoch.get(),
                batch_attributes: self.attributes(),
                batch_base_timestamp: o.base_timestamp,
                batch_max_timestamp: self.max_timestamp(),
            })
            .collect()
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`, written out independently.
fn kafka_sequence(base: i32, delta: i32) -> i32 {
    if base == -1 {
        return -1;
    }
    let sum = i64::from(base) + i64::from(delta);
    if sum > i64::from(i32::MAX) {
        (sum - i64::from(i32::MAX) - 1) as i32
    } else {
        sum as i32
    }
}

/// The inverse of [`kafka_sequence`]: the base sequence of a batch from one record's sequence.
fn base_sequence_of(sequence: i32, delta: i32) -> i32 {
    if sequence == -1 {
        return -1;
    }
    let base = i64::from(sequence) - i64::from(delta);
    if base < 0 {
        (base + i64::from(i32::MAX) + 1) as i32
    } else {
        base as i32
    }
}

const T0: i64 = 1_700_000_000_000;

/// The batches of the round-trip test, all with `codec`: every kind of key, value and header,
/// idempotent and plain producers, CreateTime and LogAppendTime, compacted gaps, sequence wrap.
fn sample_specs(codec: Compression) -> Vec<Spec> {
    vec![
        // Plain producer, CreateTime, timestamps out of order (a negative delta).
        Spec::new(
            BatchOptions {
                base_offset: Offset::new(0),
                partition_leader_epoch: LeaderEpoch::new(3),
                compression: codec,
                base_timestamp: T0,
                ..BatchOptions::default()
            },
            vec![
                rec(0, 0, Some(b"k0"), Some(b"v0"), &[]),
                rec(
                    1,
                    5,
                    None,
                    Some(b"value with a null key"),
                    &[(b"h1", Some(b"x"))],
                ),
                rec(
                    2,
                    -3,
                    Some(b"k2"),
                    None,
                    &[(b"a", Some(b"1")), (b"b", None)],
                ),
                rec(
                    3,
                    9,
                    Some(b""),
                    Some(b""),
                    &[(b"dup", Some(b"1")), (b"dup", Some(b"")), (b"", None)],
                ),
            ],
        ),
        // Idempotent transactional producer.
        Spec::new(
            BatchOptions {
                base_offset: Offset::new(4),
                partition_leader_epoch: LeaderEpoch::new(7),
                compression: codec,
                is_transactional: true,
                producer_id: ProducerId::new(1234),
                producer_epoch: ProducerEpoch::new(5),
                base_sequence: 10,
                base_timestamp: T0 + 100,
                ..BatchOptions::default()
            },
            vec![
                rec(0, 0, Some(b"p0"), Some(&[0u8, 255, 1, 254]), &[]),
                rec(
                    1,
                    1,
                    Some(&[0xff, 0x00]),
                    Some(b"p1"),
                    &[(b"trace", Some(b"abc"))],
                ),
                rec(2, 2, None, None, &[]),
            ],
        ),
        // LogAppendTime: every row gets the batch's max timestamp, whatever the deltas say.
        Spec::new(
            BatchOptions {
                base_offset: Offset::new(10),
                partition_leader_epoch: LeaderEpoch::new(7),
                compression: codec,
                timestamp_type: TimestampType::LogAppendTime,
                base_timestamp: T0 + 200,
                max_timestamp: Some(T0 + 900_000),
                ..BatchOptions::default()
            },
            vec![
                rec(0, 0, Some(b"l0"), Some(b"lat-0"), &[(b"h", None)]),
                rec(1, 7, Some(b"l1"), Some(b"lat-1"), &[]),
            ],
        ),
        // Compacted: offset gaps, a last offset delta past the last record, and a sequence that
        // wraps past i32::MAX; a header key that is not UTF-8 (decoded lossily).
        Spec::new(
            BatchOptions {
                base_offset: Offset::new(20),
                partition_leader_epoch: LeaderEpoch::new(8),
                compression: codec,
                producer_id: ProducerId::new(99),
                producer_epoch: ProducerEpoch::new(0),
                base_sequence: i32::MAX - 1,
                base_timestamp: T0 + 300,
                last_offset_delta: Some(7),
                ..BatchOptions::default()
            },
            vec![
                rec(0, 0, Some(b"c0"), Some(b"compacted-0"), &[]),
                rec(
                    2,
                    20,
                    Some(b"c2"),
                    Some(b"compacted-2"),
                    &[(&[0x66, 0xff, 0x6f], Some(b"bad key"))],
                ),
                rec(5, 50, Some(b"c5"), None, &[]),
            ],
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Reading rows back
// ---------------------------------------------------------------------------------------------

/// One archive row, every column but `value_json`.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    offset: i64,
    timestamp: i64,
    timestamp_type: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    producer_id: i64,
    producer_epoch: i16,
    sequence: i32,
    batch_base_offset: i64,
    batch_last_offset_delta: i32,
    batch_partition_leader_epoch: i32,
    batch_attributes: i16,
    batch_base_timestamp: i64,
    batch_max_timestamp: i64,
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column `{name}`"))
}

fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let offset = col(b, "offset").as_primitive::<Int64Type>();
        let timestamp = col(b, "timestamp").as_primitive::<TimestampMillisecondType>();
        let timestamp_type = col(b, "timestamp_type").as_string::<i32>();
        let key = col(b, "key").as_binary::<i32>();
        let value = col(b, "value").as_binary::<i32>();
        let headers = col(b, "headers").as_list::<i32>();
        let producer_id = col(b, "producer_id").as_primitive::<Int64Type>();
        let producer_epoch = col(b, "producer_epoch").as_primitive::<Int16Type>();
        let sequence = col(b, "sequence").as_primitive::<Int32Type>();
        let base_offset = col(b, "batch_base_offset").as_primitive::<Int64Type>();
        let last_delta = col(b, "batch_last_offset_delta").as_primitive::<Int32Type>();
        let leader_epoch = col(b, "batch_partition_leader_epoch").as_primitive::<Int32Type>();
        let attributes = col(b, "batch_attributes").as_primitive::<Int16Type>();
        let base_ts = col(b, "batch_base_timestamp").as_primitive::<Int64Type>();
        let max_ts = col(b, "batch_max_timestamp").as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert!(!headers.is_null(i), "headers are never null");
            let entries = headers.value(i);
            let entries = entries.as_struct();
            let hk = entries.column(0).as_string::<i32>();
            let hv = entries.column(1).as_binary::<i32>();
            let headers = (0..entries.len())
                .map(|j| {
                    assert!(!hk.is_null(j), "header keys are never null");
                    (
                        hk.value(j).to_string(),
                        (!hv.is_null(j)).then(|| hv.value(j).to_vec()),
                    )
                })
                .collect();
            rows.push(Row {
                offset: offset.value(i),
                timestamp: timestamp.value(i),
                timestamp_type: timestamp_type.value(i).to_string(),
                key: (!key.is_null(i)).then(|| key.value(i).to_vec()),
                value: (!value.is_null(i)).then(|| value.value(i).to_vec()),
                headers,
                producer_id: producer_id.value(i),
                producer_epoch: producer_epoch.value(i),
                sequence: sequence.value(i),
                batch_base_offset: base_offset.value(i),
                batch_last_offset_delta: last_delta.value(i),
                batch_partition_leader_epoch: leader_epoch.value(i),
                batch_attributes: attributes.value(i),
                batch_base_timestamp: base_ts.value(i),
                batch_max_timestamp: max_ts.value(i),
            });
        }
    }
    rows
}

fn options() -> ArchiveOptions {
    ArchiveOptions::default()
}

fn projected_options(spec: &str) -> ArchiveOptions {
    ArchiveOptions {
        projection: Some(Arc::new(
            JsonProjection::parse(spec)
                .expect("valid projection")
                .expect("non-empty projection"),
        )),
        ..ArchiveOptions::default()
    }
}

/// Archives `batches` (all from `min_offset`) and returns the file and its stats.
fn archive(batches: &[Bytes], min_offset: i64, options: ArchiveOptions) -> (Bytes, FileStats) {
    let mut writer = ArchiveWriter::new(Vec::new(), options).expect("writer");
    for batch in batches {
        writer
            .append_batch(batch, Offset::new(min_offset))
            .expect("append batch");
    }
    let (sink, stats) = writer.finish().expect("finish");
    (Bytes::from(sink), stats)
}

fn read(file: &Bytes) -> Vec<RecordBatch> {
    read_file(file.clone()).expect("read archive")
}

fn offsets_of(batches: &[RecordBatch]) -> Vec<i64> {
    rows_of(batches).iter().map(|r| r.offset).collect()
}

fn expected_stats(specs: &[Spec], rows: &[Row], min_offset: i64) -> FileStats {
    let kept: Vec<&Spec> = specs
        .iter()
        .filter(|s| s.last_offset() >= min_offset)
        .collect();
    FileStats {
        rows: rows.len() as u64,
        input_bytes: kept.iter().map(|s| s.encode().len() as u64).sum(),
        first_offset: kept
            .first()
            .map(|s| s.options.base_offset.max(Offset::new(min_offset))),
        last_offset: kept.last().map(|s| s.last_offset()).map(Offset::new),
        min_row_offset: rows.iter().map(|r| r.offset).min().map(Offset::new),
        min_timestamp: rows.iter().map(|r| r.timestamp).min(),
        max_timestamp: rows.iter().map(|r| r.timestamp).max(),
        json_invalid: 0,
        control_records: kept
            .iter()
            .filter(|s| s.options.is_control)
            .map(|s| s.records.len() as u64)
            .sum(),
    }
}

fn field_names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Every column of every row, for every codec
// ---------------------------------------------------------------------------------------------

#[test]
fn every_column_round_trips_for_every_codec() {
    for codec in Compression::ALL {
        let specs = sample_specs(codec);
        let batches: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
        // The hand-computed header fields agree with what the encoder wrote.
        for (spec, batch) in specs.iter().zip(&batches) {
            let header = RecordBatchHeader::parse(batch).unwrap();
            assert_eq!(header.attributes, spec.attributes(), "{codec}");
            assert_eq!(
                header.last_offset_delta,
                spec.last_offset_delta(),
                "{codec}"
            );
            assert_eq!(header.max_timestamp, spec.max_timestamp(), "{codec}");
        }

        let (file, stats) = archive(&batches, i64::MIN, options());
        let read_back = read(&file);
        let schema_read = read_back[0].schema();
        assert_eq!(
            schema_read.fields(),
            schema(None).fields(),
            "{codec}: the file's Arrow schema is the archive schema"
        );
        let rows = rows_of(&read_back);
        let expected: Vec<Row> = specs
            .iter()
            .flat_map(|s| s.expected_rows(i64::MIN))
            .collect();
        assert_eq!(rows.len(), 12, "{codec}");
        assert_eq!(rows, expected, "{codec}");

        // Spot checks of what the expectations encode, so that they are not merely
        // self-consistent.
        assert_eq!(
            rows.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5, 6, 10, 11, 20, 22, 25],
            "{codec}"
        );
        assert_eq!(rows[1].key, None);
        assert_eq!(rows[2].value, None);
        assert_eq!(rows[3].key, Some(Vec::new()));
        assert_eq!(rows[3].value, Some(Vec::new()));
        assert_eq!(rows[2].timestamp, T0 - 3);
        assert_eq!(
            rows[3].headers,
            vec![
                ("dup".to_string(), Some(b"1".to_vec())),
                ("dup".to_string(), Some(Vec::new())),
                (String::new(), None),
            ]
        );
        assert_eq!(rows[2].headers[1], ("b".to_string(), None));
        assert_eq!(
            (
                rows[0].producer_id,
                rows[0].producer_epoch,
                rows[0].sequence
            ),
            (-1, -1, -1)
        );
        assert_eq!(
            rows[4..7]
                .iter()
                .map(|r| (r.producer_id, r.producer_epoch, r.sequence))
                .collect::<Vec<_>>(),
            vec![(1234, 5, 10), (1234, 5, 11), (1234, 5, 12)]
        );
        assert_eq!(
            rows[4].batch_attributes & TRANSACTIONAL_FLAG_MASK,
            TRANSACTIONAL_FLAG_MASK
        );
        assert_eq!(
            Compression::from_attributes(rows[4].batch_attributes).unwrap(),
            codec,
            "the codec is kept in the attributes"
        );
        for r in &rows[7..9] {
            assert_eq!(r.timestamp_type, "LogAppendTime");
            assert_eq!(r.timestamp, T0 + 900_000);
            assert_eq!(
                r.batch_attributes & TIMESTAMP_TYPE_MASK,
                TIMESTAMP_TYPE_MASK
            );
        }
        assert_eq!(rows[6].timestamp_type, "CreateTime");
        // Sequences wrap past i32::MAX as in Kafka.
        assert_eq!(
            rows[9..].iter().map(|r| r.sequence).collect::<Vec<_>>(),
            vec![i32::MAX - 1, 0, 3]
        );
        assert_eq!(
            rows[10].headers,
            vec![("f\u{fffd}o".to_string(), Some(b"bad key".to_vec()))]
        );
        assert!(rows[9..].iter().all(|r| r.batch_last_offset_delta == 7));

        assert_eq!(
            stats,
            FileStats {
                rows: 12,
                input_bytes: batches.iter().map(|b| b.len() as u64).sum(),
                first_offset: Some(Offset::new(0)),
                last_offset: Some(Offset::new(27)),
                min_row_offset: Some(Offset::new(0)),
                min_timestamp: Some(T0 - 3),
                max_timestamp: Some(T0 + 900_000),
                json_invalid: 0,
                control_records: 0,
            },
            "{codec}"
        );
        assert_eq!(stats, expected_stats(&specs, &rows, i64::MIN), "{codec}");
    }
}

#[test]
fn stats_grow_batch_by_batch() {
    let specs = sample_specs(Compression::Lz4);
    let mut writer = ArchiveWriter::new(Vec::new(), options()).unwrap();
    assert_eq!(writer.stats(), &FileStats::default());
    let mut rows = 0;
    let mut input = 0;
    for spec in &specs {
        let batch = spec.encode();
        writer.append_batch(&batch, Offset::MIN).unwrap();
        rows += spec.records.len() as u64;
        input += batch.len() as u64;
        let stats = writer.stats();
        assert_eq!(stats.rows, rows);
        assert_eq!(stats.input_bytes, input);
        assert_eq!(stats.first_offset, Some(Offset::new(0)));
        assert_eq!(stats.last_offset, Some(Offset::new(spec.last_offset())));
    }
    let (sink, stats) = writer.finish().unwrap();
    assert_eq!(stats.rows, 12);
    assert!(sink.starts_with(b"PAR1") && sink.ends_with(b"PAR1"));
}

/// Pseudo-random bytes (xorshift), which neither zstd nor the Kafka codecs can shrink.
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

#[test]
fn estimated_size_counts_rows_not_yet_encoded() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut writer = ArchiveWriter::new(Vec::new(), options()).unwrap();
    let mut payload = 0usize;
    let mut last_estimate = writer.estimated_size();
    for b in 0..4i64 {
        let spec = Spec::new(
            BatchOptions {
                base_offset: Offset::new(b * 64),
                base_timestamp: T0,
                ..BatchOptions::default()
            },
            (0..64)
                .map(|i| rec(i, 0, None, Some(&noise(&mut seed, 1024)), &[]))
                .collect(),
        );
        writer.append_batch(&spec.encode(), Offset::MIN).unwrap();
        payload += 64 * 1024;
        let estimate = writer.estimated_size();
        assert!(
            estimate >= payload,
            "after {payload} bytes of values the estimate is {estimate}"
        );
        assert!(estimate > last_estimate);
        last_estimate = estimate;
    }
    let (sink, _) = writer.finish().unwrap();
    // Incompressible values: the file is about as big as the estimate said.
    assert!(
        sink.len() / 2 <= last_estimate && last_estimate <= sink.len() * 2,
        "estimated {last_estimate}, wrote {}",
        sink.len()
    );
}

#[test]
fn an_empty_file_has_no_rows_and_default_stats() {
    let (file, stats) = archive(&[], i64::MIN, options());
    assert_eq!(stats, FileStats::default());
    let batches = read(&file);
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let reader = SerializedFileReader::new(file).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
}

#[test]
fn an_invalid_zstd_level_is_refused() {
    for level in [0, 23, -1] {
        let options = ArchiveOptions {
            zstd_level: level,
            ..ArchiveOptions::default()
        };
        assert!(
            matches!(
                ArchiveWriter::new(Vec::new(), options),
                Err(ArchiveError::Parquet(_))
            ),
            "level {level}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Control batches
// ---------------------------------------------------------------------------------------------

/// A transaction marker: key `[version i16, type i16]` (0 = abort, 1 = commit), value
/// `[version i16, coordinator epoch i32]`.
fn marker(base_offset: i64, commit: bool, producer_id: i64) -> Spec {
    let key = [0u8, 0, 0, u8::from(commit)];
    let value = [0u8, 0, 0, 0, 0, 5];
    Spec::new(
        BatchOptions {
            base_offset: Offset::new(base_offset),
            partition_leader_epoch: LeaderEpoch::new(2),
            is_transactional: true,
            is_control: true,
            producer_id: ProducerId::new(producer_id),
            producer_epoch: ProducerEpoch::new(1),
            base_timestamp: T0 + 50,
            ..BatchOptions::default()
        },
        vec![rec(0, 0, Some(&key), Some(&value), &[])],
    )
}

fn transactional(base_offset: i64, n: i32, producer_id: i64, base_sequence: i32) -> Spec {
    Spec::new(
        BatchOptions {
            base_offset: Offset::new(base_offset),
            partition_leader_epoch: LeaderEpoch::new(2),
            is_transactional: true,
            producer_id: ProducerId::new(producer_id),
            producer_epoch: ProducerEpoch::new(1),
            base_sequence,
            base_timestamp: T0 + base_offset,
            ..BatchOptions::default()
        },
        (0..n)
            .map(|i| {
                let value = format!("txn-{}", base_offset + i64::from(i));
                rec(i, i64::from(i), None, Some(value.as_bytes()), &[])
            })
            .collect(),
    )
}

#[test]
fn control_batches_add_no_rows_but_extend_the_file() {
    let specs = vec![
        transactional(0, 3, 7, 0),
        marker(3, true, 7),
        transactional(4, 2, 8, 0),
        marker(6, false, 8),
    ];
    let batches: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
    assert!(RecordBatchHeader::parse(&batches[1]).unwrap().attributes & CONTROL_FLAG_MASK != 0);

    let mut writer = ArchiveWriter::new(Vec::new(), options()).unwrap();
    writer.append_batch(&batches[0], Offset::MIN).unwrap();
    let before = writer.stats().clone();
    writer.append_batch(&batches[1], Offset::MIN).unwrap();
    let after = writer.stats().clone();
    assert_eq!(after.rows, before.rows, "a control record is not a row");
    assert_eq!(
        after.last_offset,
        Some(Offset::new(3)),
        "the marker's offset is covered"
    );
    assert_eq!(after.control_records, 1);
    assert_eq!(
        after.input_bytes,
        before.input_bytes + batches[1].len() as u64
    );
    assert_eq!(
        (
            after.min_timestamp,
            after.max_timestamp,
            after.min_row_offset
        ),
        (
            before.min_timestamp,
            before.max_timestamp,
            before.min_row_offset
        ),
        "a control record's timestamp is not a row's"
    );
    writer.append_batch(&batches[2], Offset::MIN).unwrap();
    writer.append_batch(&batches[3], Offset::MIN).unwrap();
    let (sink, stats) = writer.finish().unwrap();

    let rows = rows_of(&read(&Bytes::from(sink)));
    assert_eq!(
        rows.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 4, 5]
    );
    let expected: Vec<Row> = specs
        .iter()
        .flat_map(|s| {
            if s.options.is_control {
                Vec::new()
            } else {
                s.expected_rows(i64::MIN)
            }
        })
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(stats.control_records, 2);
    assert_eq!(stats.last_offset, Some(Offset::new(6)));
    assert_eq!(stats.first_offset, Some(Offset::new(0)));
    assert_eq!(stats.rows, 5);
    assert_eq!(stats, expected_stats(&specs, &rows, i64::MIN));
}

#[test]
fn a_file_of_control_batches_only_has_no_rows() {
    let batches = [marker(40, true, 1).encode(), marker(41, false, 2).encode()];
    let (file, stats) = archive(&batches, i64::MIN, options());
    assert_eq!(offsets_of(&read(&file)), Vec::<i64>::new());
    assert_eq!(
        stats,
        FileStats {
            rows: 0,
            input_bytes: batches.iter().map(|b| b.len() as u64).sum(),
            first_offset: Some(Offset::new(40)),
            last_offset: Some(Offset::new(41)),
            min_row_offset: None,
            min_timestamp: None,
            max_timestamp: None,
            json_invalid: 0,
            control_records: 2,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// 3. min_offset
// ---------------------------------------------------------------------------------------------

fn plain(base_offset: i64, n: i32, codec: Compression) -> Spec {
    Spec::new(
        BatchOptions {
            base_offset: Offset::new(base_offset),
            compression: codec,
            base_timestamp: T0 + base_offset * 10,
            ..BatchOptions::default()
        },
        (0..n)
            .map(|i| {
                let offset = base_offset + i64::from(i);
                rec(
                    i,
                    i64::from(i) * 10,
                    Some(format!("key-{offset}").as_bytes()),
                    Some(format!("value-{offset}").as_bytes()),
                    &[],
                )
            })
            .collect(),
    )
}

#[test]
fn min_offset_skips_whole_batches_and_trims_a_straddling_one() {
    for codec in [Compression::None, Compression::Zstd] {
        let specs = vec![plain(0, 5, codec), plain(5, 5, codec), plain(10, 5, codec)];
        let batches: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
        let mut writer = ArchiveWriter::new(Vec::new(), options()).unwrap();
        writer.append_batch(&batches[0], Offset::new(7)).unwrap();
        assert_eq!(
            writer.stats(),
            &FileStats::default(),
            "a batch wholly below min_offset leaves the stats untouched"
        );
        writer.append_batch(&batches[1], Offset::new(7)).unwrap();
        writer.append_batch(&batches[2], Offset::new(7)).unwrap();
        let (sink, stats) = writer.finish().unwrap();
        let rows = rows_of(&read(&Bytes::from(sink)));
        assert_eq!(
            rows.iter().map(|r| r.offset).collect::<Vec<_>>(),
            (7..15).collect::<Vec<_>>()
        );
        let expected: Vec<Row> = specs.iter().flat_map(|s| s.expected_rows(7)).collect();
        assert_eq!(rows, expected);
        assert_eq!(
            stats,
            FileStats {
                rows: 8,
                input_bytes: (batches[1].len() + batches[2].len()) as u64,
                first_offset: Some(Offset::new(7)),
                last_offset: Some(Offset::new(14)),
                min_row_offset: Some(Offset::new(7)),
                min_timestamp: Some(T0 + 50 + 20),
                max_timestamp: Some(T0 + 100 + 40),
                json_invalid: 0,
                control_records: 0,
            }
        );
        assert_eq!(stats, expected_stats(&specs, &rows, 7));
    }
}

#[test]
fn min_offset_at_the_edges_of_a_batch() {
    let spec = plain(100, 4, Compression::Gzip); // offsets 100..=103
    let batch = spec.encode();
    for (min_offset, expected) in [
        (i64::MIN, vec![100, 101, 102, 103]),
        (99, vec![100, 101, 102, 103]),
        (100, vec![100, 101, 102, 103]),
        (101, vec![101, 102, 103]),
        (103, vec![103]),
        (104, vec![]),
        (i64::MAX, vec![]),
    ] {
        let (file, stats) = archive(std::slice::from_ref(&batch), min_offset, options());
        assert_eq!(
            offsets_of(&read(&file)),
            expected,
            "min_offset {min_offset}"
        );
        assert_eq!(stats.rows, expected.len() as u64);
        if expected.is_empty() {
            assert_eq!(stats, FileStats::default(), "min_offset {min_offset}");
        } else {
            assert_eq!(stats.first_offset, Some(Offset::new(min_offset.max(100))));
            assert_eq!(stats.min_row_offset, Some(Offset::new(expected[0])));
            assert_eq!(stats.last_offset, Some(Offset::new(103)));
            assert_eq!(stats.input_bytes, batch.len() as u64);
        }
    }
}

#[test]
fn min_offset_inside_a_compaction_gap() {
    let spec = Spec::new(
        BatchOptions {
            base_offset: Offset::new(50),
            base_timestamp: T0,
            last_offset_delta: Some(9),
            ..BatchOptions::default()
        },
        vec![
            rec(0, 0, Some(b"a"), Some(b"0"), &[]),
            rec(3, 3, Some(b"b"), Some(b"3"), &[]),
            rec(6, 6, Some(b"c"), Some(b"6"), &[]),
        ],
    );
    let (file, stats) = archive(&[spec.encode()], 52, options());
    assert_eq!(offsets_of(&read(&file)), vec![53, 56]);
    assert_eq!(
        stats.first_offset,
        Some(Offset::new(52)),
        "the file starts at min_offset"
    );
    assert_eq!(stats.min_row_offset, Some(Offset::new(53)));
    assert_eq!(
        stats.last_offset,
        Some(Offset::new(59)),
        "the batch's last offset, past its last record"
    );
    assert_eq!(
        (stats.min_timestamp, stats.max_timestamp),
        (Some(T0 + 3), Some(T0 + 6))
    );
    // A control batch below min_offset is skipped too.
    let (_, stats) = archive(&[marker(10, true, 1).encode()], 11, options());
    assert_eq!(stats, FileStats::default());
}

// ---------------------------------------------------------------------------------------------
// 4. Corrupt batches
// ---------------------------------------------------------------------------------------------

#[test]
fn a_corrupt_batch_is_an_error_and_the_writer_stays_usable() {
    for codec in Compression::ALL {
        let good = plain(0, 5, codec).encode();
        let mut bad = plain(5, 5, codec).encode().to_vec();
        let last = bad.len() - 1;
        assert!(last >= RECORDS_OFFSET, "the flipped byte is a record byte");
        bad[last] ^= 0x01;
        let bad = Bytes::from(bad);
        let later = plain(10, 5, codec).encode();

        let mut writer = ArchiveWriter::new(Vec::new(), options()).unwrap();
        writer.append_batch(&good, Offset::MIN).unwrap();
        let before = writer.stats().clone();
        match writer.append_batch(&bad, Offset::MIN) {
            Err(ArchiveError::Batch {
                base_offset,
                source: BatchError::CrcMismatch { stored, computed },
            }) => {
                assert_eq!(base_offset, Offset::new(5), "{codec}");
                assert_ne!(stored, computed, "{codec}");
            }
            other => panic!("{codec}: expected a CRC mismatch, got {other:?}"),
        }
        assert_eq!(
            writer.stats(),
            &before,
            "{codec}: a refused batch changes nothing"
        );
        // A refused batch fails even when min_offset would skip it: corruption is never copied
        // silently, nor ignored.
        assert!(
            writer.append_batch(&bad, Offset::new(100)).is_err(),
            "{codec}"
        );

        writer.append_batch(&later, Offset::MIN).unwrap();
        let (sink, stats) = writer.finish().unwrap();
        let rows = rows_of(&read(&Bytes::from(sink)));
        assert_eq!(
            rows.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 10, 11, 12, 13, 14],
            "{codec}"
        );
        let expected: Vec<Row> = plain(0, 5, codec)
            .expected_rows(i64::MIN)
            .into_iter()
            .chain(plain(10, 5, codec).expected_rows(i64::MIN))
            .collect();
        assert_eq!(rows, expected, "{codec}");
        assert_eq!(stats.rows, 10);
        assert_eq!(stats.input_bytes, (good.len() + later.len()) as u64);
    }
}

#[test]
fn framing_errors_name_the_batch() {
    let batch = plain(42, 3, Compression::None).encode();
    // Truncated: the header parses, the frame does not.
    let truncated = batch.slice(..batch.len() - 1);
    let mut writer = ArchiveWriter::new(Vec::new(), options()).unwrap();
    match writer.append_batch(&truncated, Offset::MIN) {
        Err(ArchiveError::Batch {
            base_offset,
            source: BatchError::Truncated { .. },
        }) if base_offset == Offset::new(42) => {}
        other => panic!("expected a truncated batch, got {other:?}"),
    }
    // Trailing bytes.
    let mut longer = batch.to_vec();
    longer.push(0);
    assert!(matches!(
        writer.append_batch(&Bytes::from(longer), Offset::MIN),
        Err(ArchiveError::Batch {
            base_offset,
            source: BatchError::TrailingBytes { .. }
        }) if base_offset == Offset::new(42)
    ));
    // Not even a header: no base offset to name.
    match writer.append_batch(&Bytes::from_static(b"short"), Offset::MIN) {
        Err(ArchiveError::Batch {
            base_offset: Offset::UNKNOWN,
            source,
        }) => assert!(source.is_corrupt()),
        other => panic!("expected a header error, got {other:?}"),
    }
    // A wrong magic.
    let mut magic = batch.to_vec();
    magic[16] = 1;
    assert!(matches!(
        writer.append_batch(&Bytes::from(magic), Offset::MIN),
        Err(ArchiveError::Batch {
            source: BatchError::UnsupportedMagic(1),
            ..
        })
    ));
    let error = writer.append_batch(&truncated, Offset::MIN).unwrap_err();
    assert!(
        error.to_string().contains("record batch at offset 42"),
        "{error}"
    );
    assert_eq!(writer.stats(), &FileStats::default());
    let (sink, stats) = writer.finish().unwrap();
    assert_eq!(stats, FileStats::default());
    assert_eq!(offsets_of(&read(&Bytes::from(sink))), Vec::<i64>::new());
}

#[test]
fn a_batch_that_decompresses_too_large_is_an_error_and_changes_nothing() {
    let big = Spec::new(
        BatchOptions {
            base_offset: Offset::new(5),
            compression: Compression::Zstd,
            base_timestamp: T0,
            ..BatchOptions::default()
        },
        vec![rec(0, 0, None, Some(&[b'x'; 64 * 1024]), &[])],
    );
    let small = plain(0, 5, Compression::None);
    let options = ArchiveOptions {
        max_decompressed: 1024,
        ..ArchiveOptions::default()
    };
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    writer.append_batch(&small.encode(), Offset::MIN).unwrap();
    let before = writer.stats().clone();
    match writer.append_batch(&big.encode(), Offset::MIN) {
        Err(ArchiveError::Batch {
            base_offset,
            source: BatchError::DecompressedTooLarge { limit: 1024 },
        }) if base_offset == Offset::new(5) => {}
        other => panic!("expected DecompressedTooLarge, got {other:?}"),
    }
    assert_eq!(
        writer.stats(),
        &before,
        "a batch that could not be decoded is not counted as archived"
    );
    let (sink, stats) = writer.finish().unwrap();
    assert_eq!(stats, before);
    assert_eq!(offsets_of(&read(&Bytes::from(sink))), vec![0, 1, 2, 3, 4]);
}

// ---------------------------------------------------------------------------------------------
// 5. JsonProjection::parse
// ---------------------------------------------------------------------------------------------

#[test]
fn json_projection_parses_valid_specs() {
    let p = JsonProjection::parse("id:long,name:string,price:double,ok:boolean,raw:json")
        .unwrap()
        .unwrap();
    assert_eq!(
        p.to_string(),
        "id:long,name:string,price:double,ok:boolean,raw:json"
    );

    // Aliases, spaces, empty parts; the display is canonical.
    let p = JsonProjection::parse(" a : int64 , b:bigint,, c:float64 ,d:bool, ")
        .unwrap()
        .unwrap();
    assert_eq!(p.to_string(), "a:long,b:long,c:double,d:boolean");

    // The type follows the last colon: a field name may hold colons.
    let p = JsonProjection::parse("ns:id:long").unwrap().unwrap();
    assert_eq!(p.to_string(), "ns:id:long");

    // Display round-trips.
    for spec in [
        "id:long",
        "id:long,name:string,price:double,ok:boolean,raw:json",
        " a : int64 , b:bigint,, c:float64 ,d:bool, ",
        "ns:id:long,x y:string",
    ] {
        let p = JsonProjection::parse(spec).unwrap().unwrap();
        let again = JsonProjection::parse(&p.to_string()).unwrap().unwrap();
        assert_eq!(again, p, "{spec}");
        assert_eq!(again.to_string(), p.to_string(), "{spec}");
    }
}

#[test]
fn json_projection_empty_spec_is_none() {
    for spec in ["", "   ", ",", " , ,, "] {
        assert_eq!(JsonProjection::parse(spec), Ok(None), "{spec:?}");
    }
}

#[test]
fn json_projection_errors_name_the_problem() {
    let err = JsonProjection::parse("id:long,name").unwrap_err();
    assert!(err.contains("`name`") && err.contains("NAME:TYPE"), "{err}");

    let err = JsonProjection::parse(":long").unwrap_err();
    assert!(err.contains("empty field name"), "{err}");

    let err = JsonProjection::parse("id:integer").unwrap_err();
    assert!(
        err.contains("`integer`") && err.contains("not a type"),
        "{err}"
    );
    assert!(
        err.contains("string, long, double, boolean or json"),
        "{err}"
    );

    let err = JsonProjection::parse("id:").unwrap_err();
    assert!(err.contains("not a type"), "{err}");

    let err = JsonProjection::parse("id:LONG").unwrap_err();
    assert!(err.contains("`LONG`"), "types are lower case: {err}");

    let err = JsonProjection::parse("id:long,name:string, id:json").unwrap_err();
    assert!(err.contains("`id`") && err.contains("twice"), "{err}");
}

#[test]
fn json_projection_shapes_the_schema() {
    let p = JsonProjection::parse("id:long,name:string,price:double,ok:boolean,raw:json")
        .unwrap()
        .unwrap();
    let with = schema(Some(&p));
    let without = schema(None);
    assert_eq!(
        field_names(&without),
        vec![
            "offset",
            "timestamp",
            "timestamp_type",
            "key",
            "value",
            "headers",
            "producer_id",
            "producer_epoch",
            "sequence",
            "batch_base_offset",
            "batch_last_offset_delta",
            "batch_partition_leader_epoch",
            "batch_attributes",
            "batch_base_timestamp",
            "batch_max_timestamp",
        ]
    );
    assert_eq!(
        without.field_with_name("timestamp").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    assert!(without.field_with_name("key").unwrap().is_nullable());
    assert!(without.field_with_name("value").unwrap().is_nullable());
    assert!(!without.field_with_name("offset").unwrap().is_nullable());
    assert_eq!(with.fields().len(), without.fields().len() + 1);
    assert_eq!(
        &with.fields()[..without.fields().len()],
        &without.fields()[..]
    );
    let value_json = with.field_with_name("value_json").unwrap();
    assert!(value_json.is_nullable());
    let DataType::Struct(children) = value_json.data_type() else {
        panic!("value_json is a struct: {value_json:?}");
    };
    let children: Vec<(&str, &DataType, bool)> = children
        .iter()
        .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
        .collect();
    assert_eq!(
        children,
        vec![
            ("id", &DataType::Int64, true),
            ("name", &DataType::Utf8, true),
            ("price", &DataType::Float64, true),
            ("ok", &DataType::Boolean, true),
            ("raw", &DataType::Utf8, true),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 6. JSON projection end to end
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Projected {
    id: Option<i64>,
    name: Option<String>,
    price: Option<f64>,
    ok: Option<bool>,
    tags: Option<String>,
    extra: Option<String>,
    missing: Option<String>,
}

const NONE: Projected = Projected {
    id: None,
    name: None,
    price: None,
    ok: None,
    tags: None,
    extra: None,
    missing: None,
};

/// `value_json` of every row: `None` for a null struct (whose children must be null too).
fn projected_of(batches: &[RecordBatch]) -> Vec<Option<Projected>> {
    let mut out = Vec::new();
    for b in batches {
        let s = col(b, "value_json").as_struct();
        let id = s.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let name = s.column_by_name("name").unwrap().as_string::<i32>();
        let price = s
            .column_by_name("price")
            .unwrap()
            .as_primitive::<Float64Type>();
        let ok = s.column_by_name("ok").unwrap().as_boolean();
        let tags = s.column_by_name("tags").unwrap().as_string::<i32>();
        let extra = s.column_by_name("extra").unwrap().as_string::<i32>();
        let missing = s.column_by_name("missing").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            let p = Projected {
                id: (!id.is_null(i)).then(|| id.value(i)),
                name: (!name.is_null(i)).then(|| name.value(i).to_string()),
                price: (!price.is_null(i)).then(|| price.value(i)),
                ok: (!ok.is_null(i)).then(|| ok.value(i)),
                tags: (!tags.is_null(i)).then(|| tags.value(i).to_string()),
                extra: (!extra.is_null(i)).then(|| extra.value(i).to_string()),
                missing: (!missing.is_null(i)).then(|| missing.value(i).to_string()),
            };
            if s.is_null(i) {
                assert_eq!(p, NONE, "row {i}: a null struct has null children");
                out.push(None);
            } else {
                out.push(Some(p));
            }
        }
    }
    out
}

/// A record value, the projection expected of it, and whether it counts as invalid JSON.
type JsonCase<'a> = (Option<&'a [u8]>, Option<Projected>, bool);

#[test]
fn json_values_project_into_typed_columns() {
    const SPEC: &str =
        "id:long,name:string,price:double,ok:boolean,tags:json,extra:json,missing:string";
    // (value, projection expected, counted invalid)
    let cases: Vec<JsonCase> = vec![
        (
            Some(br#"{"id": 7, "name": "a", "price": 2.5, "ok": true, "tags": [1,2], "extra": {"x": {"y": null}, "z": "w"}, "skipped": [1, {"deep": [true]}]}"#),
            Some(Projected {
                id: Some(7),
                name: Some("a".into()),
                price: Some(2.5),
                ok: Some(true),
                tags: Some("[1,2]".into()),
                extra: Some(r#"{"x":{"y":null},"z":"w"}"#.into()),
                missing: None,
            }),
            false,
        ),
        // A string field holding a number gets its JSON text; a long holding a string is null;
        // an integer is a double.
        (
            Some(br#"{"id": "7", "name": 42, "price": 3, "ok": "true", "tags": "t"}"#),
            Some(Projected {
                name: Some("42".into()),
                price: Some(3.0),
                tags: Some(r#""t""#.into()),
                ..NONE
            }),
            false,
        ),
        // A long holding a fraction is null; JSON null is null everywhere.
        (
            Some(br#"{"id": 7.5, "name": null, "price": "2.5", "ok": 1, "tags": null, "extra": false}"#),
            Some(Projected {
                extra: Some("false".into()),
                ..NONE
            }),
            false,
        ),
        // Integers beyond i64 are not longs, but are doubles; objects as strings are JSON text;
        // escapes are decoded; leading and trailing whitespace is fine.
        (
            Some(" {\"id\": 18446744073709551615, \"price\": 18446744073709551615, \"name\": {\"a\": [1]}, \"missing\": \"\\u00e9\\\"q\"}\n".as_bytes()),
            Some(Projected {
                price: Some(18_446_744_073_709_551_615.0),
                name: Some(r#"{"a":[1]}"#.into()),
                missing: Some("é\"q".into()),
                ..NONE
            }),
            false,
        ),
        (
            Some(br#"{"id": -9223372036854775808, "ok": false}"#),
            Some(Projected {
                id: Some(i64::MIN),
                ok: Some(false),
                ..NONE
            }),
            false,
        ),
        // An object without any projected field: a valid row of nulls.
        (Some(b"{}"), Some(NONE), false),
        // Not objects.
        (Some(b"not json"), None, true),
        (Some(b"[1, 2, 3]"), None, true),
        (Some(b"\"a string\""), None, true),
        (Some(b"42"), None, true),
        (Some(b"null"), None, true),
        (Some(b""), None, true),
        (Some(br#"{"id": 1} {"id": 2}"#), None, true),
        (Some(br#"{"id": 1"#), None, true),
        (Some(&[0xff, 0xfe]), None, true),
        // A tombstone is not a bad record.
        (None, None, false),
    ];
    let records: Vec<Record> = cases
        .iter()
        .enumerate()
        .map(|(i, (value, _, _))| rec(i as i32, i as i64, Some(b"k"), *value, &[]))
        .collect();
    let expected_invalid = cases.iter().filter(|c| c.2).count() as u64;
    assert_eq!(expected_invalid, 9);

    for codec in [Compression::None, Compression::Snappy] {
        // Split over two batches so that both row paths meet.
        let (first, second) = records.split_at(5);
        let specs = [
            Spec::new(
                BatchOptions {
                    base_offset: Offset::new(0),
                    compression: codec,
                    base_timestamp: T0,
                    ..BatchOptions::default()
                },
                first.to_vec(),
            ),
            Spec::new(
                BatchOptions {
                    base_offset: Offset::new(5),
                    compression: codec,
                    base_timestamp: T0 + 5,
                    ..BatchOptions::default()
                },
                second
                    .iter()
                    .map(|r| Record {
                        offset_delta: r.offset_delta - 5,
                        timestamp_delta: r.timestamp_delta - 5,
                        ..r.clone()
                    })
                    .collect(),
            ),
        ];
        let batches: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
        let (file, stats) = archive(&batches, i64::MIN, projected_options(SPEC));
        assert_eq!(stats.json_invalid, expected_invalid, "{codec}");
        assert_eq!(stats.rows, cases.len() as u64);

        let read_back = read(&file);
        let p = JsonProjection::parse(SPEC).unwrap().unwrap();
        assert_eq!(read_back[0].schema().fields(), schema(Some(&p)).fields());
        // The raw value is kept whatever it holds.
        let rows = rows_of(&read_back);
        let expected_rows: Vec<Row> = specs
            .iter()
            .flat_map(|s| s.expected_rows(i64::MIN))
            .collect();
        assert_eq!(rows, expected_rows, "{codec}");
        let projected = projected_of(&read_back);
        assert_eq!(projected.len(), cases.len());
        for (i, ((value, expected, _), got)) in cases.iter().zip(&projected).enumerate() {
            assert_eq!(
                got,
                expected,
                "{codec} row {i}: {:?}",
                value.map(String::from_utf8_lossy)
            );
        }
    }
}

#[test]
fn json_invalid_counts_only_rows_written() {
    // Rows below min_offset are not projected, so not counted.
    let spec = Spec::new(
        BatchOptions {
            base_offset: Offset::new(0),
            base_timestamp: T0,
            ..BatchOptions::default()
        },
        vec![
            rec(0, 0, None, Some(b"bad"), &[]),
            rec(1, 0, None, Some(b"bad"), &[]),
            rec(2, 0, None, Some(br#"{"id": 3}"#), &[]),
            rec(3, 0, None, Some(b"bad"), &[]),
        ],
    );
    let (file, stats) = archive(&[spec.encode()], 2, projected_options("id:long"));
    assert_eq!(stats.json_invalid, 1);
    let read_back = read(&file);
    let s = col(&read_back[0], "value_json").as_struct();
    let id = s.column(0).as_primitive::<Int64Type>();
    assert_eq!(s.len(), 2);
    assert!(!s.is_null(0) && id.value(0) == 3);
    assert!(s.is_null(1) && id.is_null(1));

    // Without a projection nothing is ever counted and there is no value_json column.
    let (file, stats) = archive(&[spec.encode()], i64::MIN, options());
    assert_eq!(stats.json_invalid, 0);
    assert!(read(&file)[0].column_by_name("value_json").is_none());
}

// ---------------------------------------------------------------------------------------------
// 7. Rebuilding batches from rows
// ---------------------------------------------------------------------------------------------

/// Rebuilds every batch from the archive's rows, using only the columns.
fn rebuild(rows: &[Row]) -> Vec<Vec<u8>> {
    let mut groups: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        groups.entry(row.batch_base_offset).or_default().push(row);
    }
    groups
        .into_values()
        .map(|group| {
            let first = group[0];
            let attributes = first.batch_attributes;
            let timestamp_type = if attributes & TIMESTAMP_TYPE_MASK != 0 {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            };
            let first_delta = (first.offset - first.batch_base_offset) as i32;
            let options = BatchOptions {
                base_offset: Offset::new(first.batch_base_offset),
                partition_leader_epoch: LeaderEpoch::new(first.batch_partition_leader_epoch),
                compression: Compression::from_attributes(attributes).expect("codec"),
                timestamp_type,
                is_transactional: attributes & TRANSACTIONAL_FLAG_MASK != 0,
                is_control: attributes & CONTROL_FLAG_MASK != 0,
                has_delete_horizon_ms: attributes & DELETE_HORIZON_FLAG_MASK != 0,
                producer_id: ProducerId::new(first.producer_id),
                producer_epoch: ProducerEpoch::new(first.producer_epoch),
                base_sequence: base_sequence_of(first.sequence, first_delta),
                base_timestamp: first.batch_base_timestamp,
                max_timestamp: Some(first.batch_max_timestamp),
                last_offset_delta: Some(first.batch_last_offset_delta),
            };
            let records: Vec<Record> = group
                .iter()
                .map(|row| {
                    // Every row of a batch carries the same batch columns.
                    assert_eq!(
                        (
                            row.batch_attributes,
                            row.batch_base_timestamp,
                            row.batch_max_timestamp,
                            row.batch_last_offset_delta,
                            row.batch_partition_leader_epoch,
                            row.producer_id,
                            row.producer_epoch,
                        ),
                        (
                            first.batch_attributes,
                            first.batch_base_timestamp,
                            first.batch_max_timestamp,
                            first.batch_last_offset_delta,
                            first.batch_partition_leader_epoch,
                            first.producer_id,
                            first.producer_epoch,
                        )
                    );
                    let offset_delta = (row.offset - row.batch_base_offset) as i32;
                    assert_eq!(
                        base_sequence_of(row.sequence, offset_delta),
                        options.base_sequence,
                        "sequences are consistent within a batch"
                    );
                    Record {
                        attributes: 0,
                        // A LogAppendTime batch keeps no per-record time: readers use the
                        // batch's max timestamp, which is kept.
                        timestamp_delta: match timestamp_type {
                            TimestampType::CreateTime => row.timestamp - row.batch_base_timestamp,
                            TimestampType::LogAppendTime => 0,
                        },
                        offset_delta,
                        key: row.key.clone().map(Bytes::from),
                        value: row.value.clone().map(Bytes::from),
                        headers: row
                            .headers
                            .iter()
                            .map(|(k, v)| RecordHeader {
                                key: Bytes::from(k.clone().into_bytes()),
                                value: v.clone().map(Bytes::from),
                            })
                            .collect(),
                    }
                })
                .collect();
            encode_batch(&options, &records).expect("rebuild batch")
        })
        .collect()
}

#[test]
fn batches_can_be_rebuilt_from_the_rows() {
    for codec in Compression::ALL {
        // The invalid-UTF-8 header key of `sample_specs` is the one thing the archive decodes
        // lossily; replace it here (it is checked in the round-trip test).
        let mut specs = sample_specs(codec);
        for spec in &mut specs {
            for record in &mut spec.records {
                for header in &mut record.headers {
                    if header.key_str().is_none() {
                        header.key = Bytes::from_static(b"utf8-key");
                    }
                }
            }
        }
        let originals: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
        let (file, _) = archive(&originals, i64::MIN, options());
        let rebuilt = rebuild(&rows_of(&read(&file)));
        assert_eq!(rebuilt.len(), originals.len(), "{codec}");
        for (original, rebuilt) in originals.iter().zip(&rebuilt) {
            let a = RecordBatchHeader::parse(original).unwrap();
            let b = RecordBatchHeader::parse(rebuilt).unwrap();
            let log_append = a.timestamp_type() == TimestampType::LogAppendTime;
            let without_crc = |h: RecordBatchHeader| RecordBatchHeader {
                crc: 0,
                batch_length: 0,
                ..h
            };
            assert_eq!(without_crc(b), without_crc(a), "{codec}");
            shale_formats::batch::validate_batch(
                rebuilt,
                &shale_formats::batch::ValidateOptions::stored(),
            )
            .expect("the rebuilt batch is valid");

            let ra = decode_records(original, usize::MAX).unwrap();
            let rb = decode_records(rebuilt, usize::MAX).unwrap();
            assert_eq!(ra.len(), rb.len(), "{codec}");
            for (x, y) in ra.iter().zip(&rb) {
                assert_eq!(x.offset_delta, y.offset_delta, "{codec}");
                assert_eq!(x.key, y.key, "{codec}");
                assert_eq!(x.value, y.value, "{codec}");
                assert_eq!(x.headers, y.headers, "{codec}");
                assert_eq!(x.attributes, y.attributes, "{codec}");
                // What consumers see is the same.
                assert_eq!(x.timestamp(&a), y.timestamp(&b), "{codec}");
                if !log_append {
                    assert_eq!(x.timestamp_delta, y.timestamp_delta, "{codec}");
                }
            }
            if !log_append {
                // Same header, same records, same encoder: the same bytes.
                assert_eq!(&original[..], &rebuilt[..], "{codec}: bit-exact rebuild");
                assert_eq!(a.crc, b.crc);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Parquet metadata
// ---------------------------------------------------------------------------------------------

fn int64_min_max(stats: Option<&Statistics>) -> (i64, i64) {
    match stats {
        Some(Statistics::Int64(s)) => (*s.min_opt().expect("min"), *s.max_opt().expect("max")),
        other => panic!("expected int64 statistics, got {other:?}"),
    }
}

#[test]
fn parquet_metadata_compression_statistics_and_key_values() {
    let specs = sample_specs(Compression::Gzip);
    let batches: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
    let options = ArchiveOptions {
        metadata: vec![
            ("shale.topic".to_string(), "orders".to_string()),
            (
                "shale.topic_id".to_string(),
                "7b2d0b3e-0000-4000-8000-000000000001".to_string(),
            ),
            ("shale.partition".to_string(), "3".to_string()),
        ],
        ..projected_options("id:long,name:string")
    };
    let (file, stats) = archive(&batches, i64::MIN, options);
    let reader = SerializedFileReader::new(file.clone()).unwrap();
    let meta = reader.metadata();

    let kv: BTreeMap<String, Option<String>> = meta
        .file_metadata()
        .key_value_metadata()
        .expect("key-value metadata")
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    assert_eq!(ARCHIVE_FORMAT, "1");
    assert_eq!(kv.get("shale.archive.format"), Some(&Some("1".to_string())));
    assert_eq!(kv.get("shale.topic"), Some(&Some("orders".to_string())));
    assert_eq!(
        kv.get("shale.topic_id"),
        Some(&Some("7b2d0b3e-0000-4000-8000-000000000001".to_string()))
    );
    assert_eq!(kv.get("shale.partition"), Some(&Some("3".to_string())));
    assert_eq!(
        kv.get("shale.archive.json_fields"),
        Some(&Some("id:long,name:string".to_string()))
    );
    assert!(
        meta.file_metadata()
            .created_by()
            .unwrap()
            .starts_with("shale "),
        "{:?}",
        meta.file_metadata().created_by()
    );
    assert_eq!(meta.file_metadata().num_rows(), stats.rows as i64);
    // The crate's own reader of the key-value metadata sees the same pairs.
    let pairs = read_key_value_metadata(&file).unwrap();
    let as_map: BTreeMap<String, Option<String>> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    assert_eq!(as_map, kv);
    assert!(pairs.contains(&("shale.topic".to_string(), "orders".to_string())));

    assert_eq!(meta.num_row_groups(), 1);
    let rg = meta.row_group(0);
    assert_eq!(
        rg.sorting_columns(),
        Some(&vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }])
    );
    let column = |path: &str| {
        rg.columns()
            .iter()
            .find(|c| c.column_path().string() == path)
            .unwrap_or_else(|| {
                panic!(
                    "no column chunk `{path}` in {:?}",
                    rg.columns()
                        .iter()
                        .map(|c| c.column_path().string())
                        .collect::<Vec<_>>()
                )
            })
    };
    assert_eq!(rg.column(0).column_path().string(), "offset");
    for c in rg.columns() {
        assert!(
            matches!(c.compression(), ParquetCompression::ZSTD(_)),
            "{}: {:?}",
            c.column_path(),
            c.compression()
        );
    }
    assert_eq!(int64_min_max(column("offset").statistics()), (0, 25));
    assert_eq!(
        int64_min_max(column("timestamp").statistics()),
        (T0 - 3, T0 + 900_000)
    );
    assert_eq!(
        (stats.min_timestamp, stats.max_timestamp),
        (Some(T0 - 3), Some(T0 + 900_000))
    );
    assert!(
        column("offset").column_index_offset().is_some(),
        "page index on offset"
    );
    assert!(
        column("timestamp").column_index_offset().is_some(),
        "page index on timestamp"
    );
    assert!(column("value_json.id").statistics().is_some());
    // Payloads: no statistics; values: no dictionary.
    for payload in ["key", "value", "headers.list.item.value"] {
        assert!(
            column(payload).statistics().is_none(),
            "{payload}: {:?}",
            column(payload).statistics()
        );
    }
    assert!(
        column("value").dictionary_page_offset().is_none(),
        "no dictionary for values"
    );
    // Header keys do get statistics.
    assert!(column("headers.list.item.key").statistics().is_some());
}

#[test]
fn small_row_groups_split_the_file() {
    // ~2 MiB of values in 32 batches of 64 records of 1 KiB.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let specs: Vec<Spec> = (0..32i64)
        .map(|b| {
            Spec::new(
                BatchOptions {
                    base_offset: Offset::new(b * 64),
                    compression: Compression::Lz4,
                    base_timestamp: T0 + b * 1000,
                    ..BatchOptions::default()
                },
                (0..64)
                    .map(|i| {
                        rec(
                            i,
                            i64::from(i),
                            Some(format!("k{i}").as_bytes()),
                            Some(&noise(&mut seed, 1024)),
                            &[],
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let batches: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
    let options = ArchiveOptions {
        row_group_bytes: 64 * 1024,
        ..ArchiveOptions::default()
    };
    let (file, stats) = archive(&batches, i64::MIN, options);
    assert_eq!(stats.rows, 2048);

    check_row_groups(&file, 2048, 64 * 1024);
    let expected: Vec<Row> = specs
        .iter()
        .flat_map(|s| s.expected_rows(i64::MIN))
        .collect();
    let read_back = read(&file);
    assert_eq!(rows_of(&read_back), expected);

    // The rewrite path splits as well: the reader hands back batches of 1024 rows (1 MiB here).
    assert!(read_back.iter().any(|b| b.num_rows() >= 1024));
    let options = ArchiveOptions {
        row_group_bytes: 64 * 1024,
        ..ArchiveOptions::default()
    };
    let mut writer = ArchiveWriter::new(Vec::new(), options).unwrap();
    for batch in &read_back {
        writer
            .append_rows(&rows_from(batch, Offset::new(0)).unwrap())
            .unwrap();
    }
    let (sink, stats) = writer.finish().unwrap();
    assert_eq!(stats.rows, 2048);
    let rewritten = Bytes::from(sink);
    check_row_groups(&rewritten, 2048, 64 * 1024);
    assert_eq!(rows_of(&read(&rewritten)), expected);
}

/// `file` holds offsets `0..rows` in several row groups of about `target` bytes, in order.
fn check_row_groups(file: &Bytes, rows: i64, target: usize) {
    let reader = SerializedFileReader::new(file.clone()).unwrap();
    let meta = reader.metadata();
    let expected_groups = (rows as usize * 1024) / target;
    assert!(
        meta.num_row_groups() >= expected_groups * 3 / 4,
        "{rows} rows of 1 KiB at {target} bytes per row group: {} row groups",
        meta.num_row_groups()
    );
    let mut next = 0i64;
    for rg in meta.row_groups() {
        // Row groups stay near their target (the writer's estimate is before compression).
        assert!(
            (rg.total_byte_size() as usize) < target + target / 4,
            "a row group of {} bytes",
            rg.total_byte_size()
        );
        let (min, max) = int64_min_max(rg.column(0).statistics());
        assert_eq!(min, next, "row groups are contiguous and in offset order");
        assert_eq!(max - min + 1, rg.num_rows());
        next = max + 1;
        assert!(rg.sorting_columns().is_some());
        for c in rg.columns() {
            assert!(matches!(c.compression(), ParquetCompression::ZSTD(_)));
        }
    }
    assert_eq!(next, rows, "every row is in a row group");
}

// ---------------------------------------------------------------------------------------------
// 9. rows_from and the rewrite path
// ---------------------------------------------------------------------------------------------

/// A file with offsets 10, 12, 13, 17, 20 (compacted) and JSON values.
fn gappy_file() -> (Vec<Spec>, Bytes) {
    let specs = vec![
        Spec::new(
            BatchOptions {
                base_offset: Offset::new(10),
                base_timestamp: T0,
                producer_id: ProducerId::new(3),
                producer_epoch: ProducerEpoch::new(1),
                base_sequence: 100,
                ..BatchOptions::default()
            },
            vec![
                rec(
                    0,
                    5,
                    Some(b"a"),
                    Some(br#"{"id": 10}"#),
                    &[(b"h", Some(b"1"))],
                ),
                rec(2, 1, Some(b"b"), Some(br#"{"id": 12}"#), &[]),
                rec(3, 9, None, Some(b"not json"), &[(b"h", None)]),
            ],
        ),
        Spec::new(
            BatchOptions {
                base_offset: Offset::new(17),
                compression: Compression::Zstd,
                base_timestamp: T0 + 100,
                last_offset_delta: Some(3),
                ..BatchOptions::default()
            },
            vec![
                rec(0, 0, Some(b"c"), Some(br#"{"id": 17}"#), &[]),
                rec(3, -50, Some(b"d"), None, &[]),
            ],
        ),
    ];
    let batches: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
    let (file, stats) = archive(&batches, i64::MIN, projected_options("id:long"));
    assert_eq!(stats.json_invalid, 1);
    (specs, file)
}

/// The single Arrow batch a small file reads back as.
fn concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(
        batches.len(),
        1,
        "a small file reads back as one Arrow batch"
    );
    batches[0].clone()
}

#[test]
fn rows_from_slices_at_before_and_after_the_boundaries() {
    let (_, file) = gappy_file();
    let all = concat(&read(&file));
    assert_eq!(
        offsets_of(std::slice::from_ref(&all)),
        vec![10, 12, 13, 17, 20]
    );
    for (min_offset, expected) in [
        (i64::MIN, vec![10, 12, 13, 17, 20]),
        (9, vec![10, 12, 13, 17, 20]),
        (10, vec![10, 12, 13, 17, 20]),
        (11, vec![12, 13, 17, 20]),
        (12, vec![12, 13, 17, 20]),
        (13, vec![13, 17, 20]),
        (14, vec![17, 20]),
        (17, vec![17, 20]),
        (19, vec![20]),
        (20, vec![20]),
        (21, vec![]),
        (i64::MAX, vec![]),
    ] {
        let sliced = rows_from(&all, Offset::new(min_offset)).unwrap();
        assert_eq!(sliced.schema(), all.schema());
        assert_eq!(
            offsets_of(std::slice::from_ref(&sliced)),
            expected,
            "min_offset {min_offset}"
        );
        // Every other column is sliced alike.
        let whole = rows_of(std::slice::from_ref(&all));
        let skip = whole.len() - expected.len();
        assert_eq!(
            rows_of(std::slice::from_ref(&sliced)),
            whole[skip..].to_vec()
        );
        assert_eq!(
            projected_ids(&sliced),
            projected_ids(&all)[skip..].to_vec(),
            "min_offset {min_offset}"
        );
    }
    // An empty input stays empty.
    let empty = all.slice(0, 0);
    assert_eq!(rows_from(&empty, Offset::new(0)).unwrap().num_rows(), 0);
}

#[test]
fn rows_from_needs_an_int64_offset_column() {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "other",
        DataType::Int64,
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    assert!(matches!(
        rows_from(&batch, Offset::new(0)),
        Err(ArchiveError::Invalid(_))
    ));
    let schema = Arc::new(Schema::new(vec![Field::new(
        "offset",
        DataType::Int32,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(arrow_array::Int32Array::from(vec![1, 2]))],
    )
    .unwrap();
    assert!(matches!(
        rows_from(&batch, Offset::new(0)),
        Err(ArchiveError::Invalid(_))
    ));
}

fn projected_ids(batch: &RecordBatch) -> Vec<Option<i64>> {
    let s = col(batch, "value_json").as_struct();
    let id = s.column(0).as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|i| (!s.is_null(i)).then(|| id.value(i)))
        .collect()
}

#[test]
fn append_rows_rewrites_a_slice() {
    let (specs, file) = gappy_file();
    let all = concat(&read(&file));
    for min_offset in [10, 13, 18, 20] {
        let sliced = rows_from(&all, Offset::new(min_offset)).unwrap();
        let mut writer = ArchiveWriter::new(Vec::new(), projected_options("id:long")).unwrap();
        writer.append_rows(&sliced).unwrap();
        let (sink, stats) = writer.finish().unwrap();
        let rewritten = read(&Bytes::from(sink));

        let expected: Vec<Row> = specs
            .iter()
            .flat_map(|s| s.expected_rows(min_offset))
            .collect();
        assert_eq!(rows_of(&rewritten), expected, "min_offset {min_offset}");
        assert_eq!(
            projected_ids(&concat(&rewritten)),
            projected_ids(&sliced),
            "min_offset {min_offset}"
        );
        assert_eq!(
            stats,
            FileStats {
                rows: expected.len() as u64,
                input_bytes: 0,
                first_offset: expected.first().map(|r| r.offset).map(Offset::new),
                last_offset: expected.last().map(|r| r.offset).map(Offset::new),
                min_row_offset: expected.first().map(|r| r.offset).map(Offset::new),
                min_timestamp: expected.iter().map(|r| r.timestamp).min(),
                max_timestamp: expected.iter().map(|r| r.timestamp).max(),
                json_invalid: 0,
                control_records: 0,
            },
            "min_offset {min_offset}"
        );
    }
}

#[test]
fn append_rows_of_nothing_changes_nothing_and_rows_then_batches_keep_order() {
    let (specs, file) = gappy_file();
    let all = concat(&read(&file));
    let mut writer = ArchiveWriter::new(Vec::new(), projected_options("id:long")).unwrap();
    writer
        .append_rows(&rows_from(&all, Offset::new(21)).unwrap())
        .unwrap();
    assert_eq!(writer.stats(), &FileStats::default());

    // A rewrite that keeps the tail of the old file, then goes on with new batches.
    writer
        .append_rows(&rows_from(&all, Offset::new(13)).unwrap())
        .unwrap();
    let next = plain(21, 3, Compression::Snappy);
    let next_batch = next.encode();
    writer.append_batch(&next_batch, Offset::MIN).unwrap();
    let (sink, stats) = writer.finish().unwrap();
    let rows = rows_of(&read(&Bytes::from(sink)));
    let expected: Vec<Row> = specs
        .iter()
        .flat_map(|s| s.expected_rows(13))
        .chain(next.expected_rows(i64::MIN))
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(stats.rows, 6);
    assert_eq!(stats.first_offset, Some(Offset::new(13)));
    assert_eq!(stats.min_row_offset, Some(Offset::new(13)));
    assert_eq!(stats.last_offset, Some(Offset::new(23)));
    assert_eq!(stats.input_bytes, next_batch.len() as u64);
    assert_eq!(
        stats.min_timestamp,
        expected.iter().map(|r| r.timestamp).min()
    );
    assert_eq!(
        stats.max_timestamp,
        expected.iter().map(|r| r.timestamp).max()
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Property: what goes in comes out
// ---------------------------------------------------------------------------------------------

type PropRecord = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
    i64,
);

fn prop_record() -> impl Strategy<Value = PropRecord> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    (
        proptest::option::of(bytes()),
        proptest::option::of(bytes()),
        proptest::collection::vec((bytes(), proptest::option::of(bytes())), 0..4),
        -1000i64..1000,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn archived_records_equal_their_input(
        codec in proptest::sample::select(Compression::ALL.to_vec()),
        base_offset in 0i64..1_000_000_000_000,
        batches in proptest::collection::vec(proptest::collection::vec(prop_record(), 1..12), 1..4),
        gap in 0i64..5,
    ) {
        let mut specs = Vec::new();
        let mut next = base_offset;
        for records in &batches {
            let records: Vec<Record> = records
                .iter()
                .enumerate()
                .map(|(i, (key, value, headers, ts))| Record {
                    attributes: 0,
                    timestamp_delta: *ts,
                    offset_delta: i as i32,
                    key: key.clone().map(Bytes::from),
                    value: value.clone().map(Bytes::from),
                    headers: headers
                        .iter()
                        .map(|(k, v)| RecordHeader {
                            key: Bytes::from(k.clone()),
                            value: v.clone().map(Bytes::from),
                        })
                        .collect(),
                })
                .collect();
            let spec = Spec::new(
                BatchOptions {
                    base_offset: Offset::new(next),
                    compression: codec,
                    base_timestamp: T0,
                    ..BatchOptions::default()
                },
                records,
            );
            next = spec.last_offset() + 1 + gap;
            specs.push(spec);
        }
        let encoded: Vec<Bytes> = specs.iter().map(Spec::encode).collect();
        let (file, stats) = archive(&encoded, i64::MIN, options());
        let rows = rows_of(&read(&file));

        type Compared = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);
        let got: Vec<Compared> = rows
            .iter()
            .map(|r| (r.offset, r.key.clone(), r.value.clone(), r.headers.clone()))
            .collect();
        let mut want: Vec<Compared> = Vec::new();
        for (spec, input) in specs.iter().zip(&batches) {
            for (i, (key, value, headers, _)) in input.iter().enumerate() {
                want.push((
                    (spec.options.base_offset + i as i64).get(),
                    key.clone(),
                    value.clone(),
                    headers
                        .iter()
                        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
                        .collect(),
                ));
            }
        }
        prop_assert_eq!(got, want);
        let expected: Vec<Row> = specs.iter().flat_map(|s| s.expected_rows(i64::MIN)).collect();
        prop_assert_eq!(&rows, &expected);
        prop_assert_eq!(stats, expected_stats(&specs, &rows, i64::MIN));
    }
}
