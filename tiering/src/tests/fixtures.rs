//! Real segment files for tests: batches built with `BatchBuilder`, a sparse offset index and
//! a time index built the way Kafka's `LogSegment.append` builds them.

use std::path::Path as FsPath;

use bytes::Bytes;
use shale_formats::compression::Compression;
use shale_formats::ids::{LeaderEpoch, Offset};
use shale_formats::index::{OffsetIndexEntry, TimeIndexEntry};
use shale_formats::record::{BatchBuilder, BatchOptions};

use crate::metadata::{EpochEntry, SegmentUpload};

/// Bytes between index entries (Kafka's `index.interval.bytes` is 4096).
const INDEX_INTERVAL_BYTES: usize = 1024;

/// One batch of a fixture: its offsets, bytes and each record's `(offset, timestamp)`.
#[derive(Debug, Clone)]
pub struct FixtureBatch {
    pub last_offset: i64,
    pub bytes: Bytes,
    pub records: Vec<(i64, i64)>,
}

/// A segment written to disk, with what it holds.
#[derive(Debug, Clone)]
pub struct FixtureSegment {
    pub upload: SegmentUpload,
    pub batches: Vec<FixtureBatch>,
}

/// Shape of a fixture segment.
#[derive(Debug, Clone, Copy)]
pub struct SegmentShape {
    pub base_offset: i64,
    pub batches: usize,
    pub records_per_batch: usize,
    pub value_bytes: usize,
    /// Timestamp of offset 0; records step by 10 ms with a little disorder.
    pub timestamp_origin: i64,
}

/// Deterministic, slightly out-of-order timestamp of `offset` (so that the time index and the
/// "first record with ts ≥ target" rule are exercised, not just a sorted list).
pub fn timestamp_of(origin: i64, offset: i64) -> i64 {
    let jitter = [0, 7, -5, 13, -9, 3][(offset % 6) as usize];
    origin + offset * 10 + jitter
}

pub fn write_segment(dir: &FsPath, shape: SegmentShape) -> FixtureSegment {
    let mut log = Vec::new();
    let mut offset_index = Vec::new();
    let mut time_index = Vec::new();
    let mut batches = Vec::new();
    let mut offset = shape.base_offset;
    let mut since_entry = usize::MAX; // index the first batch
    let mut max_timestamp = -1i64;
    let mut max_timestamp_offset = shape.base_offset;
    let mut last_indexed_timestamp = i64::MIN;
    for b in 0..shape.batches {
        // Every fifth batch gzip-compressed, so the timestamp lookup decodes one of those too.
        let compression = if b % 5 == 4 {
            Compression::Gzip
        } else {
            Compression::None
        };
        let mut builder = BatchBuilder::new(BatchOptions {
            base_offset: Offset::new(offset),
            partition_leader_epoch: LeaderEpoch::new(3),
            compression,
            ..BatchOptions::default()
        });
        let mut records = Vec::new();
        for r in 0..shape.records_per_batch {
            let o = offset + r as i64;
            let ts = timestamp_of(shape.timestamp_origin, o);
            let value: Vec<u8> = (0..shape.value_bytes)
                .map(|i| (o as usize + i) as u8)
                .collect();
            builder.append(
                ts,
                Some(Bytes::from(format!("key-{o}"))),
                Some(Bytes::from(value)),
                vec![],
            );
            records.push((o, ts));
        }
        let bytes = Bytes::from(builder.build().expect("a fixture batch encodes"));
        let position = log.len();
        let last_offset = offset + shape.records_per_batch as i64 - 1;
        for &(o, ts) in &records {
            if ts > max_timestamp {
                max_timestamp = ts;
                max_timestamp_offset = o;
            }
        }
        if since_entry >= INDEX_INTERVAL_BYTES {
            offset_index.extend_from_slice(
                &OffsetIndexEntry {
                    relative_offset: (last_offset - shape.base_offset) as u32,
                    position: position as u32,
                }
                .encode(),
            );
            if max_timestamp > last_indexed_timestamp {
                time_index.extend_from_slice(
                    &TimeIndexEntry {
                        timestamp: max_timestamp,
                        relative_offset: (max_timestamp_offset - shape.base_offset) as u32,
                    }
                    .encode(),
                );
                last_indexed_timestamp = max_timestamp;
            }
            since_entry = 0;
        }
        since_entry += bytes.len();
        log.extend_from_slice(&bytes);
        batches.push(FixtureBatch {
            last_offset,
            bytes,
            records,
        });
        offset = last_offset + 1;
    }
    let log_path = dir.join(format!("{:020}.log", shape.base_offset));
    std::fs::write(&log_path, &log).expect("write the fixture segment");
    FixtureSegment {
        upload: SegmentUpload {
            base_offset: Offset::new(shape.base_offset),
            end_offset: Offset::new(offset - 1),
            max_timestamp,
            size_bytes: log.len() as u64,
            log_path,
            offset_index: Bytes::from(offset_index),
            time_index: Bytes::from(time_index),
            transaction_index: None,
            leader_epochs: vec![EpochEntry {
                epoch: LeaderEpoch::new(3),
                start_offset: Offset::new(shape.base_offset),
            }],
            producer_snapshot: Some(Bytes::from_static(b"producer-state")),
        },
        batches,
    }
}

/// `count` consecutive segments starting at offset 0.
pub fn write_segments(dir: &FsPath, count: usize, shape: SegmentShape) -> Vec<FixtureSegment> {
    let mut segments = Vec::new();
    let mut base_offset = shape.base_offset;
    for i in 0..count {
        let sub = dir.join(format!("seg{i}"));
        std::fs::create_dir_all(&sub).expect("fixture dir");
        let segment = write_segment(
            &sub,
            SegmentShape {
                base_offset,
                ..shape
            },
        );
        base_offset = (segment.upload.end_offset + 1).get();
        segments.push(segment);
    }
    segments
}
