//! Scenario tests for the log: real files in temp directories, batches built with
//! `shale_formats::record`.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::*;
use shale_formats::batch::{batches, RecordBatchHeader, TimestampType as BatchTimestampType};
use shale_formats::compression::Compression;
use shale_formats::ids::{LeaderEpoch, Offset, ProducerEpoch, ProducerId};
use shale_formats::record::{decode_records, BatchBuilder, BatchOptions};

use super::files::{offset_file, LOG_SUFFIX, SNAPSHOT_SUFFIX};
use super::*;

/// Small segments and a dense index so that a few hundred batches exercise rolls and lookups.
fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4 * 1024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, 0).unwrap()
}

/// A batch of `records` records with timestamps `ts, ts+1, ...` and `value_bytes`-byte values.
fn batch_with(options: BatchOptions, records: usize, ts: i64, value_bytes: usize) -> Vec<u8> {
    let mut builder = BatchBuilder::new(options);
    for i in 0..records {
        let value = Bytes::from(vec![b'a' + (i % 26) as u8; value_bytes]);
        builder.append(ts + i as i64, None, Some(value), Vec::new());
    }
    builder.build().unwrap()
}

fn plain(records: usize, ts: i64, value_bytes: usize) -> Vec<u8> {
    batch_with(BatchOptions::default(), records, ts, value_bytes)
}

fn idempotent(producer_id: i64, epoch: i16, sequence: i32, records: usize) -> Vec<u8> {
    batch_with(
        BatchOptions {
            producer_id: ProducerId::new(producer_id),
            producer_epoch: ProducerEpoch::new(epoch),
            base_sequence: sequence,
            ..BatchOptions::default()
        },
        records,
        1_000,
        10,
    )
}

fn append(log: &mut Log, mut batch: Vec<u8>, now_ms: i64) -> AppendInfo {
    match log
        .append_as_leader(&mut batch, LeaderEpoch::new(1), now_ms)
        .unwrap()
    {
        AppendOutcome::Appended(info) => info,
        other => panic!("expected an append, got {other:?}"),
    }
}

/// Headers of the batches in a read result.
fn offsets(raw: &[i64]) -> Vec<Offset> {
    raw.iter().copied().map(Offset::new).collect()
}

fn headers(bytes: &[u8]) -> Vec<RecordBatchHeader> {
    batches(bytes).map(|b| b.unwrap().0).collect()
}

/// Reads everything from `from` the way a consumer does, `max_bytes` at a time.
fn consume(log: &Log, from: i64, max_bytes: usize) -> Vec<RecordBatchHeader> {
    let mut out = Vec::new();
    let mut next = from;
    let end = log.log_end_offset();
    while next < end.get() {
        let read = log
            .read(Offset::new(next), max_bytes, Offset::MAX, true)
            .unwrap();
        let got = headers(&read.records);
        assert!(!got.is_empty(), "no progress at offset {next}");
        next = (got.last().unwrap().next_offset()).get();
        out.extend(got);
    }
    out
}

fn segment_file_len(dir: &Path, base: i64) -> u64 {
    fs::metadata(offset_file(dir, Offset::new(base), LOG_SUFFIX))
        .unwrap()
        .len()
}

/// Appends land at consecutive offsets across many segments, and reads starting at any offset
/// return the batch holding it first, whole batches only, within the byte limit.
#[test]
fn append_and_read_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    let mut expected = Vec::new();
    for i in 0..300i64 {
        let records = 1 + (i % 3) as usize;
        let info = append(
            &mut log,
            plain(records, 1_000 + i, 20 + (i % 50) as usize),
            0,
        );
        assert_eq!(
            info.base_offset,
            Offset::new(expected.last().map_or(0, |&(_, l): &(i64, i64)| l + 1))
        );
        assert_eq!(info.last_offset - info.base_offset + 1, records as i64);
        expected.push((info.base_offset.get(), info.last_offset.get()));
    }
    assert_eq!(
        log.log_end_offset(),
        Offset::new(expected.last().unwrap().1 + 1)
    );
    assert!(log.segment_count() > 10, "{} segments", log.segment_count());
    for (base, size) in log
        .segment_base_offsets()
        .iter()
        .map(|&b| (b, segment_file_len(dir.path(), b.get())))
    {
        assert!(size <= 4 * 1024, "segment {base} holds {size} bytes");
    }
    let all = consume(&log, 0, 1000);
    assert_eq!(
        all.iter()
            .map(|h| (h.base_offset.get(), h.last_offset().get()))
            .collect::<Vec<_>>(),
        expected
    );
    // Every offset: the first batch returned is the one that holds it.
    for &(base, last) in &expected {
        for offset in base..=last {
            let read = log.read(Offset::new(offset), 1, Offset::MAX, true).unwrap();
            let got = headers(&read.records);
            assert_eq!(got.len(), 1);
            assert_eq!(
                (got[0].base_offset.get(), got[0].last_offset().get()),
                (base, last)
            );
            assert_eq!(got[0].partition_leader_epoch, LeaderEpoch::new(1));
        }
    }
    // Byte limits give whole batches only.
    let read = log.read(Offset::ZERO, 700, Offset::MAX, false).unwrap();
    assert!(read.records.len() <= 700);
    assert_eq!(
        headers(&read.records)
            .iter()
            .map(|h| h.size_bytes())
            .sum::<usize>(),
        read.records.len()
    );
    // One payload of several batches gets consecutive offsets and one AppendInfo.
    let end = log.log_end_offset();
    let info = append(&mut log, [plain(2, 5, 10), plain(3, 9, 10)].concat(), 0);
    assert_eq!((info.base_offset, info.last_offset), (end, end + 4));
    assert_eq!(
        (info.max_timestamp, info.offset_of_max_timestamp),
        (11, end + 4)
    );
    assert_eq!(info.record_count, 5);
    let tail = headers(&log.read(end, 10_000, Offset::MAX, true).unwrap().records);
    assert_eq!(
        tail.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![end, end + 2]
    );
    assert!(log
        .read(log.log_end_offset(), 100, Offset::MAX, true)
        .unwrap()
        .records
        .is_empty());
    assert!(matches!(
        log.read(log.log_end_offset() + 1, 100, Offset::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

/// KIP-74: a batch larger than `max_bytes` comes back whole only when the fetch may return one
/// oversized batch; otherwise nothing.
#[test]
fn min_one_batch_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, plain(5, 0, 200), 0);
    append(&mut log, plain(1, 0, 10), 0);
    let big = log.read(Offset::ZERO, 100, Offset::MAX, false).unwrap();
    assert!(big.records.is_empty());
    let big = log.read(Offset::ZERO, 100, Offset::MAX, true).unwrap();
    let got = headers(&big.records);
    assert_eq!(
        got.len(),
        1,
        "only the first batch, even though it exceeds max_bytes"
    );
    assert_eq!(got[0].last_offset(), Offset::new(4));
    let both = log.read(Offset::ZERO, 10_000, Offset::MAX, false).unwrap();
    assert_eq!(headers(&both.records).len(), 2);
}

/// Nothing at or beyond `max_offset_exclusive` (the high watermark) is returned, including a
/// batch that straddles it.
#[test]
fn max_offset_exclusive_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..50 {
        append(&mut log, plain(2, i, 30), 0);
    }
    let read = log
        .read(Offset::ZERO, usize::MAX, Offset::new(20), true)
        .unwrap();
    let got = headers(&read.records);
    assert_eq!(got.last().unwrap().last_offset(), Offset::new(19));
    let read = log
        .read(Offset::ZERO, usize::MAX, Offset::new(21), true)
        .unwrap();
    assert_eq!(
        headers(&read.records).last().unwrap().last_offset(),
        Offset::new(19)
    );
    assert!(log
        .read(Offset::new(20), 1000, Offset::new(20), true)
        .unwrap()
        .records
        .is_empty());
    assert!(log
        .read(Offset::ZERO, 1000, Offset::ZERO, true)
        .unwrap()
        .records
        .is_empty());
}

/// The active segment rolls when the next append would overflow segment.bytes, and when the
/// new batch's timestamp is segment.ms past the segment's first batch.
#[test]
fn rolls_by_size_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1_000,
        segment_ms: 10_000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let batch = plain(1, 0, 300);
    let size = batch.len();
    append(&mut log, batch.clone(), 0);
    append(&mut log, batch.clone(), 0);
    assert_eq!(log.segment_count(), 1);
    append(&mut log, batch.clone(), 0);
    assert_eq!(log.segment_base_offsets(), offsets(&[0, 2]));
    assert_eq!(segment_file_len(dir.path(), 0), 2 * size as u64);

    append(&mut log, plain(1, 5_000, 10), 0);
    assert_eq!(log.segment_count(), 2);
    append(&mut log, plain(1, 10_000, 10), 0);
    assert_eq!(log.segment_count(), 2, "exactly segment.ms is not past it");
    let info = append(&mut log, plain(1, 10_001, 10), 0);
    assert_eq!(
        log.segment_base_offsets(),
        offsets(&[0, 2, info.base_offset.get()])
    );
    // A roll writes a producer snapshot for the new segment.
    assert!(offset_file(dir.path(), info.base_offset, SNAPSHOT_SUFFIX).exists());
    // An explicit roll of an empty active segment is a no-op.
    log.roll(0).unwrap();
    log.roll(0).unwrap();
    assert_eq!(log.segment_count(), 4);
}

/// A payload larger than max.message.bytes is refused and nothing is written.
#[test]
fn oversized_batches_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 500,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let mut batch = plain(1, 0, 600);
    assert!(matches!(
        log.append_as_leader(&mut batch, LeaderEpoch::new(0), 0),
        Err(LogError::RecordTooLarge { .. })
    ));
    let mut garbage = vec![0u8; 30];
    assert!(matches!(
        log.append_as_leader(&mut garbage, LeaderEpoch::new(0), 0),
        Err(LogError::CorruptRecord { .. })
    ));
    assert!(matches!(
        log.append_as_leader(&mut [], LeaderEpoch::new(0), 0),
        Err(LogError::InvalidRecord { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset::ZERO);
    assert_eq!(log.size_bytes(), 0);
}

/// After a crash that tore the last batch, reopening truncates the active segment at the first
/// incomplete or invalid batch and appends continue at the right offset.
#[test]
fn recovery_truncates_a_torn_or_garbled_tail() {
    for damage in ["cut", "flip", "garbage"] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_config());
        let mut infos = Vec::new();
        for i in 0..40 {
            infos.push(append(&mut log, plain(2, i, 40), 0));
        }
        let active_base = *log.segment_base_offsets().last().unwrap();
        drop(log); // a crash: no close, no clean-shutdown marker
        let path = offset_file(dir.path(), active_base, LOG_SUFFIX);
        let mut bytes = fs::read(&path).unwrap();
        let batch_len = plain(2, 0, 40).len();
        let kept_batches = bytes.len() / batch_len - 2;
        match damage {
            "cut" => bytes.truncate(bytes.len() - batch_len - 5),
            "flip" => bytes[kept_batches * batch_len + 70] ^= 0x40,
            _ => bytes.extend_from_slice(&[0xab; 100]),
        }
        fs::write(&path, &bytes).unwrap();

        let mut log = open(dir.path(), small_config());
        let expected_end = match damage {
            "garbage" => infos.last().unwrap().last_offset + 1,
            _ => Offset::new((active_base + 2 * kept_batches as i64).get()),
        };
        assert_eq!(log.log_end_offset(), expected_end, "{damage}");
        let expected_len = match damage {
            "garbage" => bytes.len() - 100,
            _ => kept_batches * batch_len,
        };
        assert_eq!(
            segment_file_len(dir.path(), active_base.get()),
            expected_len as u64,
            "{damage}"
        );
        let info = append(&mut log, plain(1, 0, 5), 0);
        assert_eq!(info.base_offset, expected_end, "{damage}");
        let all = consume(&log, 0, 4096);
        assert_eq!(all.last().unwrap().last_offset(), expected_end);
        let mut next = 0;
        for h in &all {
            assert_eq!(h.base_offset, Offset::new(next), "{damage}");
            next = h.next_offset().get();
        }
    }
}

/// Close and reopen (clean and unclean) restore the log end, the log start, leader epochs and
/// producer state; leftover temp files go away.
#[test]
fn reopen_restores_state() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_config());
        let mut epoch = 0;
        for i in 0..60 {
            if i % 20 == 0 {
                epoch += 2;
            }
            let mut batch = idempotent(42, 0, i * 2, 2);
            log.append_as_leader(&mut batch, LeaderEpoch::new(epoch), 0)
                .unwrap();
        }
        let start = log.delete_records_before(Offset::new(25)).unwrap();
        assert_eq!(start, Offset::new(25));
        let end = log.log_end_offset();
        let epochs = log.leader_epochs();
        assert_eq!(epochs.len(), 3);
        assert_eq!(
            epochs[0].start_offset,
            Offset::new(25),
            "truncated from the start"
        );
        let segments = log.segment_base_offsets();
        fs::write(dir.path().join("leader-epoch-checkpoint.tmp"), b"junk").unwrap();
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let log = open(dir.path(), small_config());
        assert!(!dir.path().join("leader-epoch-checkpoint.tmp").exists());
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.log_start_offset(), Offset::new(25));
        assert_eq!(log.segment_base_offsets(), segments);
        assert_eq!(log.leader_epochs(), epochs);
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch::new(4)),
            (LeaderEpoch::new(4), Offset::new(80))
        );
        assert_eq!(
            log.end_offset_for_epoch(LeaderEpoch::new(6)),
            (LeaderEpoch::new(6), end)
        );
        assert_eq!(
            log.epoch_for_offset(Offset::new(30)),
            Some(LeaderEpoch::new(2))
        );
        let entry = log.producer_entry(ProducerId::new(42)).unwrap();
        assert_eq!(entry.batches.back().unwrap().last_sequence, 119);
        assert!(matches!(
            log.read(Offset::new(24), 100, Offset::MAX, true),
            Err(LogError::OffsetOutOfRange {
                log_start_offset,
                ..
            }) if log_start_offset == Offset::new(25)
        ));
    }
}

/// A retried idempotent batch is answered with its original offsets, also after a restart, and
/// the sequence continues after it.
#[test]
fn duplicates_are_detected_across_reopen() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), small_config());
        let mut infos = Vec::new();
        for seq in 0..6 {
            infos.push(append(&mut log, idempotent(7, 3, seq * 3, 3), 0));
        }
        // Something from another producer in between.
        append(&mut log, plain(2, 0, 10), 0);
        let end = log.log_end_offset();
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let mut log = open(dir.path(), small_config());
        // The last five batches are remembered; the first is not.
        for (seq, info) in infos.iter().enumerate().skip(1) {
            let mut retry = idempotent(7, 3, seq as i32 * 3, 3);
            let outcome = log
                .append_as_leader(&mut retry, LeaderEpoch::new(1), 0)
                .unwrap();
            assert_eq!(
                outcome,
                AppendOutcome::Duplicate {
                    base_offset: info.base_offset,
                    last_offset: info.last_offset,
                    log_append_time: -1,
                    log_start_offset: Offset::ZERO,
                }
            );
        }
        assert_eq!(log.log_end_offset(), end, "duplicates write nothing");
        let mut stale = idempotent(7, 3, 0, 3);
        assert!(matches!(
            log.append_as_leader(&mut stale, LeaderEpoch::new(1), 0),
            Err(LogError::OutOfOrderSequence {
                last_sequence: 17,
                ..
            })
        ));
        let info = append(&mut log, idempotent(7, 3, 18, 1), 0);
        assert_eq!(info.base_offset, end);
    }
}

/// Sequence gaps, stale epochs and a new epoch not starting at 0 are rejected without writing
/// anything, even when an earlier batch of the same payload was fine.
#[test]
fn sequence_and_epoch_violations_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, idempotent(1, 5, 0, 2), 0);
    let size = log.size_bytes();
    type Expected = fn(&LogError) -> bool;
    let cases: Vec<(Vec<u8>, Expected)> = vec![
        (idempotent(1, 5, 3, 1), |e| {
            matches!(e, LogError::OutOfOrderSequence { .. })
        }),
        (idempotent(1, 4, 2, 1), |e| {
            matches!(
                e,
                LogError::InvalidProducerEpoch {
                    current_epoch,
                    ..
                } if *current_epoch == ProducerEpoch::new(5)
            )
        }),
        (idempotent(1, 6, 1, 1), |e| {
            matches!(e, LogError::OutOfOrderSequence { .. })
        }),
        // A good batch followed by a gap in one payload: all or nothing.
        (
            [idempotent(1, 5, 2, 1), idempotent(1, 5, 9, 1)].concat(),
            |e| matches!(e, LogError::OutOfOrderSequence { .. }),
        ),
    ];
    for (mut payload, expected) in cases {
        let err = log
            .append_as_leader(&mut payload, LeaderEpoch::new(0), 0)
            .unwrap_err();
        assert!(expected(&err), "{err}");
        assert_eq!(log.log_end_offset(), Offset::new(2));
        assert_eq!(log.size_bytes(), size);
    }
    // A new epoch starting at 0 fences the old one.
    append(&mut log, idempotent(1, 6, 0, 1), 0);
    let mut old = idempotent(1, 5, 2, 1);
    assert!(matches!(
        log.append_as_leader(&mut old, LeaderEpoch::new(0), 0),
        Err(LogError::InvalidProducerEpoch { .. })
    ));
    // An unknown producer may start anywhere (KIP-360).
    append(&mut log, idempotent(99, 0, 500, 1), 0);
}

/// LogAppendTime stamps batches with the broker clock and reports it; duplicates report the
/// original stamp.
#[test]
fn log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let info = append(&mut log, idempotent(3, 0, 0, 2), 77_000);
    assert_eq!(info.log_append_time, 77_000);
    assert_eq!(info.max_timestamp, 77_000);
    let read = log.read(Offset::ZERO, 1000, Offset::MAX, true).unwrap();
    let h = headers(&read.records)[0];
    assert_eq!(h.timestamp_type(), BatchTimestampType::LogAppendTime);
    assert_eq!(h.max_timestamp, 77_000);
    shale_formats::batch::validate_batch(
        &read.records,
        &shale_formats::batch::ValidateOptions::stored(),
    )
    .unwrap();
    let mut retry = idempotent(3, 0, 0, 2);
    let outcome = log
        .append_as_leader(&mut retry, LeaderEpoch::new(0), 99_000)
        .unwrap();
    assert!(matches!(
        outcome,
        AppendOutcome::Duplicate {
            log_append_time: 77_000,
            ..
        }
    ));
    let found = log.fetch_offset_by_timestamp(50_000).unwrap().unwrap();
    assert_eq!((found.offset, found.timestamp), (Offset::ZERO, 77_000));
}

/// Time retention deletes sealed segments whose newest record is older than retention.ms,
/// oldest first, never the active segment, and moves the log start offset.
#[test]
fn retention_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 600,
        retention_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for i in 0..30 {
        append(&mut log, plain(1, i * 100, 200), 0);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 5);
    // Now = 2_000: records with timestamp < 1_000 are past retention.
    let result = log.delete_retention(2_000).unwrap();
    assert!(result.segments_deleted > 0);
    let remaining = log.segment_base_offsets();
    assert_eq!(log.log_start_offset(), remaining[0]);
    assert_eq!(result.log_start_offset, Offset::new(remaining[0].get()));
    // The newest record of the first remaining segment is within retention.
    let first = log
        .read(
            Offset::new(remaining[0].get()),
            usize::MAX,
            Offset::new(remaining[1].get()),
            true,
        )
        .unwrap();
    assert!(headers(&first.records).last().unwrap().max_timestamp >= 1_000);
    for base in &bases[..bases.len() - remaining.len()] {
        assert!(!offset_file(dir.path(), Offset::new((*base).get()), LOG_SUFFIX).exists());
    }
    // Far in the future everything but the active segment goes.
    log.delete_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), *bases.last().unwrap());
    let remaining = consume(&log, log.log_start_offset().get(), 10_000);
    assert_eq!(remaining[0].base_offset, log.log_start_offset());
    assert_eq!(
        remaining.last().unwrap().next_offset(),
        log.log_end_offset()
    );
}

/// Size retention deletes the oldest sealed segments while the log is over retention.bytes.
#[test]
fn retention_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1_000,
        retention_ms: -1,
        retention_bytes: 2_500,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for i in 0..40 {
        append(&mut log, plain(1, i, 200), 0);
    }
    let before = log.size_bytes();
    let result = log.delete_retention(i64::MAX).unwrap();
    assert!(result.segments_deleted > 0);
    assert_eq!(before - result.bytes_deleted, log.size_bytes());
    // Kafka deletes a segment only if the log stays at or above retention.bytes without it, so
    // the log ends up less than one segment over the limit.
    let first = log.segment_base_offsets()[0];
    let over = log.size_bytes() as i64 - 2_500;
    assert!(over >= 0);
    assert!(over < segment_file_len(dir.path(), first.get()) as i64);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
}

/// DeleteRecords moves the log start offset inside a segment, deletes segments wholly below it,
/// survives a restart, and rejects offsets past the log end.
#[test]
fn delete_records_before() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..100 {
        append(&mut log, plain(1, i, 100), 0);
    }
    let bases = log.segment_base_offsets();
    let target = bases[3] + 1;
    assert_eq!(log.delete_records_before(target).unwrap(), target);
    assert_eq!(log.segment_base_offsets()[0], bases[3]);
    assert!(matches!(
        log.read(Offset::new((target - 1).get()), 100, Offset::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        headers(&log.read(target, 100, Offset::MAX, true).unwrap().records)[0].base_offset,
        target
    );
    assert_eq!(
        log.delete_records_before(Offset::new(5)).unwrap(),
        target,
        "never moves back"
    );
    assert!(matches!(
        log.delete_records_before(Offset::new(1_000)),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let mut log = open(dir.path(), small_config());
    assert_eq!(log.log_start_offset(), target);
    // Up to the log end: only the active segment stays.
    let end = log.log_end_offset();
    log.delete_records_before(end).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(log
        .read(end, 100, Offset::MAX, true)
        .unwrap()
        .records
        .is_empty());
}

/// ListOffsets by timestamp finds the first record (not just the first batch) whose timestamp
/// is at or after the target, across segments and with unordered timestamps.
#[test]
fn offsets_for_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    // Each batch holds timestamps t, t+1, ..., t+4; batches go 0, 10, 20 ... with an
    // out-of-order batch at 5 in the middle.
    let mut expected: Vec<(i64, i64)> = Vec::new(); // (offset, timestamp)
    for i in 0..60i64 {
        let ts = if i == 30 { 5 } else { i * 10 };
        // Every third batch compressed: finding the exact record means decompressing it.
        let compression = if i % 3 == 0 {
            Compression::Lz4
        } else {
            Compression::None
        };
        let options = BatchOptions {
            compression,
            ..BatchOptions::default()
        };
        let info = append(&mut log, batch_with(options, 5, ts, 30), 0);
        for r in 0..5 {
            expected.push(((info.base_offset + r).get(), ts + r));
        }
    }
    assert!(log.segment_count() > 3);
    for target in [-5, 0, 3, 4, 5, 9, 10, 123, 295, 300, 589, 594] {
        let want = expected
            .iter()
            .find(|(_, ts)| *ts >= target)
            .map(|&(offset, timestamp)| (offset, timestamp));
        let got = log
            .fetch_offset_by_timestamp(target)
            .unwrap()
            .map(|t| (t.offset.get(), t.timestamp));
        assert_eq!(got, want, "target {target}");
    }
    assert_eq!(log.fetch_offset_by_timestamp(595).unwrap(), None);
    let found = log.fetch_offset_by_timestamp(123).unwrap().unwrap();
    assert_eq!(found.leader_epoch, Some(LeaderEpoch::new(1)));
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (Offset::new(299), 594));
    // Above the log start only.
    log.delete_records_before(Offset::new(102)).unwrap();
    let found = log.fetch_offset_by_timestamp(0).unwrap().unwrap();
    assert_eq!(found.offset, Offset::new(102));
}

/// A sealed segment with missing or damaged indexes gets them rebuilt on open, and reads and
/// timestamp lookups still land on the right batch.
#[test]
fn lost_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..100 {
        append(&mut log, plain(1, i, 100), 0);
    }
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    let index = offset_file(dir.path(), Offset::new(bases[1].get()), "index");
    let time_index = offset_file(dir.path(), Offset::new(bases[2].get()), "timeindex");
    let index_bytes = fs::read(&index).unwrap();
    assert!(!index_bytes.is_empty());
    fs::remove_file(&index).unwrap();
    fs::write(&time_index, b"12345").unwrap();
    fs::write(
        offset_file(dir.path(), Offset::new(999_999), "index"),
        b"orphan",
    )
    .unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(fs::read(&index).unwrap(), index_bytes);
    assert_eq!(fs::metadata(&time_index).unwrap().len() % 12, 0);
    assert!(!offset_file(dir.path(), Offset::new(999_999), "index").exists());
    for offset in bases[1].get()..bases[3].get() {
        let got = headers(
            &log.read(Offset::new(offset), 1, Offset::MAX, true)
                .unwrap()
                .records,
        );
        assert_eq!(got[0].base_offset, Offset::new(offset));
    }
    let found = log
        .fetch_offset_by_timestamp(bases[2].get())
        .unwrap()
        .unwrap();
    assert_eq!(found.offset, Offset::new(bases[2].get()));
}

/// Retention passes drop the in-memory indexes of sealed segments that nobody read since the
/// previous pass; the next read loads them again.
#[test]
fn idle_indexes_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: -1,
        ..small_config()
    };
    let mut log = open(dir.path(), config);
    for i in 0..100 {
        append(&mut log, plain(1, i, 100), 0);
    }
    let loaded = |log: &Log| {
        log.reader()
            .segments
            .iter()
            .filter(|s| s.indexes.read().unwrap().is_some())
            .count()
    };
    assert!(loaded(&log) > 2);
    log.delete_retention(0).unwrap();
    assert_eq!(loaded(&log), 1, "only the active segment keeps its indexes");
    let offset = log.segment_base_offsets()[1] + 1;
    let read = |log: &Log| headers(&log.read(offset, 1, Offset::MAX, true).unwrap().records)[0];
    assert_eq!(read(&log).base_offset, offset);
    assert_eq!(loaded(&log), 2);
    log.delete_retention(0).unwrap();
    assert_eq!(loaded(&log), 2, "used since the last pass");
    log.delete_retention(0).unwrap();
    assert_eq!(loaded(&log), 1);
    assert_eq!(read(&log).base_offset, offset);
}

/// Logs and readers can move between threads.
#[test]
fn logs_and_readers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Log>();
    check::<LogReader>();
}

/// A reader snapshot sees the log as it was: later appends are invisible to it, and segments
/// deleted by retention stay readable through it.
#[test]
fn reader_snapshots_are_stable() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1_000,
        retention_bytes: 0,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    for i in 0..20 {
        append(&mut log, plain(1, i, 200), 0);
    }
    let reader = log.reader();
    let end = reader.log_end_offset();
    append(&mut log, plain(1, 0, 200), 0);
    log.delete_retention(0).unwrap();
    assert!(log.log_start_offset() > Offset::ZERO);
    let seen = {
        let mut next = 0;
        let mut seen = Vec::new();
        while next < end.get() {
            let got = headers(
                &reader
                    .read(Offset::new(next), 500, Offset::MAX, true)
                    .unwrap()
                    .records,
            );
            next = got.last().unwrap().next_offset().get();
            seen.extend(got.iter().map(|h| h.base_offset.get()));
        }
        seen
    };
    assert_eq!(seen, (0..end.get()).collect::<Vec<_>>());
    assert!(matches!(
        log.read(Offset::ZERO, 100, Offset::MAX, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

/// A follower keeps the leader's offsets and epochs, may skip offsets, and must truncate before
/// writing below its end; truncation drops whole batches and rebuilds producer state.
#[test]
fn follower_appends_and_truncation() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path(), small_config());
    let mut follower = open(follower_dir.path(), small_config());
    for i in 0..50 {
        let options = BatchOptions {
            producer_id: ProducerId::new(5),
            producer_epoch: ProducerEpoch::new(0),
            base_sequence: i * 2,
            ..BatchOptions::default()
        };
        let mut batch = batch_with(options, 2, 0, 150);
        leader
            .append_as_leader(
                &mut batch,
                if i < 25 {
                    LeaderEpoch::new(1)
                } else {
                    LeaderEpoch::new(2)
                },
                0,
            )
            .unwrap();
    }
    let mut next = 0;
    while next < leader.log_end_offset().get() {
        let read = leader
            .read(Offset::new(next), 700, Offset::MAX, true)
            .unwrap();
        next = headers(&read.records).last().unwrap().next_offset().get();
        follower.append_as_follower(&read.records, 0).unwrap();
    }
    assert_eq!(follower.log_end_offset(), Offset::new(100));
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    assert_eq!(
        follower
            .read(Offset::ZERO, usize::MAX, Offset::MAX, true)
            .unwrap()
            .records,
        leader
            .read(Offset::ZERO, usize::MAX, Offset::MAX, true)
            .unwrap()
            .records
    );
    let again = leader
        .read(Offset::new(98), 1000, Offset::MAX, true)
        .unwrap();
    assert!(matches!(
        follower.append_as_follower(&again.records, 0),
        Err(LogError::UnexpectedAppendOffset {
            first_offset,
            log_end_offset,
            ..
        }) if (first_offset, log_end_offset) == (Offset::new(98), Offset::new(100))
    ));
    // Truncate into the middle of a batch: the whole batch goes.
    assert!(follower.truncate_to(Offset::new(61)).unwrap());
    assert_eq!(follower.log_end_offset(), Offset::new(60));
    assert_eq!(
        follower.end_offset_for_epoch(LeaderEpoch::new(2)),
        (LeaderEpoch::new(2), Offset::new(60))
    );
    assert_eq!(
        follower
            .producer_entry(ProducerId::new(5))
            .unwrap()
            .batches
            .back()
            .unwrap()
            .last_sequence,
        59
    );
    assert!(!follower.truncate_to(Offset::new(70)).unwrap());
    // Truncate into an earlier segment: later segments are deleted.
    let segments = follower.segment_base_offsets();
    assert!(follower.truncate_to(segments[1] + 2).unwrap());
    assert_eq!(follower.segment_base_offsets(), segments[..2].to_vec());
    assert_eq!(follower.log_end_offset(), segments[1] + 2);
    // And the log continues to work, across a restart too.
    let mut batch = idempotent(5, 0, (segments[1] + 2).get() as i32, 1);
    follower
        .append_as_leader(&mut batch, LeaderEpoch::new(3), 0)
        .unwrap();
    drop(follower);
    let mut follower = open(follower_dir.path(), small_config());
    assert_eq!(follower.log_end_offset(), segments[1] + 3);
    assert_eq!(follower.latest_epoch(), Some(LeaderEpoch::new(3)));
    // Restart empty at an offset beyond the end.
    follower
        .truncate_fully_and_start_at(Offset::new(500))
        .unwrap();
    assert_eq!(
        (follower.log_start_offset(), follower.log_end_offset()),
        (Offset::new(500), Offset::new(500))
    );
    assert_eq!(follower.latest_epoch(), None);
    assert_eq!(follower.producer_count(), 0);
    drop(follower);
    let follower = open(follower_dir.path(), small_config());
    assert_eq!(follower.segment_base_offsets(), offsets(&[500]));
    assert_eq!(follower.log_start_offset(), Offset::new(500));
}

/// flush.messages fsyncs once enough offsets are unflushed and advances the recovery point.
#[test]
fn flush_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 5,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    append(&mut log, plain(3, 0, 10), 0);
    assert_eq!(log.recovery_point(), Offset::ZERO);
    append(&mut log, plain(3, 0, 10), 0);
    assert_eq!(log.recovery_point(), Offset::new(6));
    let config = LogConfig {
        flush_ms: 1_000,
        ..LogConfig::default()
    };
    log.set_config(config).unwrap();
    append(&mut log, plain(1, 0, 10), 500);
    assert_eq!(log.recovery_point(), Offset::new(6));
    assert!(log.flush_if_due(1_000).unwrap());
    assert_eq!(log.recovery_point(), Offset::new(7));
}

/// A sync point covers the log end when taken; appends after it need the next one; a roll
/// makes everything before it durable by itself.
#[test]
fn sync_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    assert!(
        log.sync_point().is_none(),
        "an empty log has nothing to sync"
    );
    append(&mut log, plain(3, 0, 10), 0);
    let point = log.sync_point().unwrap();
    assert_eq!(point.end(), Offset::new(3));
    append(&mut log, plain(2, 0, 10), 0);
    point.sync().unwrap();
    log.mark_synced(point.end());
    assert_eq!(log.recovery_point(), Offset::new(3));
    let point = log.sync_point().unwrap();
    assert_eq!(point.end(), Offset::new(5));
    // A stale mark never moves the recovery point back.
    log.mark_synced(Offset::new(1));
    assert_eq!(log.recovery_point(), Offset::new(3));
    point.sync().unwrap();
    log.mark_synced(point.end());
    assert!(log.sync_point().is_none());
    append(&mut log, plain(1, 0, 10), 0);
    log.roll(0).unwrap();
    assert!(
        log.sync_point().is_none(),
        "a roll fsyncs the segment it seals"
    );
    assert_eq!(log.recovery_point(), Offset::new(6));
}

/// A clean-shutdown marker does not make the log trust an active segment that changed after
/// the close: bytes appended behind its back are found and cut off.
#[test]
fn clean_open_falls_back_to_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    for i in 0..30 {
        append(&mut log, plain(1, i, 50), 0);
    }
    let active = *log.segment_base_offsets().last().unwrap();
    log.close().unwrap();
    let path = offset_file(dir.path(), active, LOG_SUFFIX);
    let len = fs::metadata(&path).unwrap().len();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[7u8; 80]);
    fs::write(&path, bytes).unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
    assert_eq!(
        append(&mut log, plain(1, 0, 5), 0).base_offset,
        Offset::new(30)
    );
}

/// Readers work from snapshots taken under the partition lock while a writer keeps appending
/// and rolling: every read sees a contiguous run of whole batches.
#[test]
fn concurrent_reads_while_appending() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(open(dir.path(), small_config())));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut reads = 0;
                loop {
                    // The lock only covers taking the snapshot; the file reads happen after.
                    let reader = log.lock().unwrap().reader();
                    let end = reader.log_end_offset();
                    let mut next = reader.log_start_offset();
                    while next < end {
                        let read = reader.read(next, 1_000, end, true).unwrap();
                        for h in headers(&read.records) {
                            assert_eq!(h.base_offset, next);
                            next = h.next_offset();
                        }
                    }
                    reads += 1;
                    if end >= Offset::new(400) {
                        return reads;
                    }
                }
            })
        })
        .collect();
    for i in 0..200 {
        append(&mut log.lock().unwrap(), plain(2, i, 60), 0);
    }
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert!(log.lock().unwrap().segment_count() > 5);
}

/// Idle producers are forgotten after the expiration time; a forgotten producer may then
/// continue at any sequence.
#[test]
fn idle_producers_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    append(&mut log, idempotent(8, 0, 0, 1), 0); // batch timestamp 1_000
    assert_eq!(log.remove_expired_producers(1_500, 1_000), 0);
    assert_eq!(log.remove_expired_producers(2_000, 1_000), 1);
    assert_eq!(log.producer_count(), 0);
    append(&mut log, idempotent(8, 0, 40, 1), 0);
}

/// Deleting the log removes its directory.
#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = open(&path, LogConfig::default());
    append(&mut log, plain(1, 0, 10), 0);
    log.delete().unwrap();
    assert!(!path.exists());
}

/// Records decode back to what was produced after a round trip through the log.
#[test]
fn records_survive_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let batch = plain(4, 123, 17);
    let original = decode_records(&batch, 1 << 20).unwrap();
    append(&mut log, batch, 0);
    let read = log.read(Offset::ZERO, 1 << 20, Offset::MAX, true).unwrap();
    assert_eq!(decode_records(&read.records, 1 << 20).unwrap(), original);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any sequence of appends and reopenings reads back as a contiguous run of batches, from
    /// any start offset and byte limit, matching a model of what was appended.
    #[test]
    fn reads_match_a_model(
        appends in proptest::collection::vec((1usize..5, 0usize..300, 0u8..40), 1..80),
        probes in proptest::collection::vec((0u16..400, 1usize..3000, any::<bool>()), 1..30),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { segment_bytes: 2_000, index_interval_bytes: 128, ..LogConfig::default() };
        let mut log = open(dir.path(), config.clone());
        let mut model: Vec<(i64, i64, usize)> = Vec::new();
        for (records, value_bytes, reopen) in appends {
            let info = append(&mut log, plain(records, 0, value_bytes), 0);
            model.push((info.base_offset.get(), info.last_offset.get(), plain(records, 0, value_bytes).len()));
            // Now and then a restart, after a clean close or a crash.
            match reopen {
                0 => log.close().unwrap(),
                1 => drop(log),
                _ => continue,
            }
            log = open(dir.path(), config.clone());
        }
        let end = model.last().unwrap().1 + 1;
        prop_assert_eq!(log.log_end_offset().get(), end);
        for (offset, max_bytes, min_one) in probes {
            let offset = i64::from(offset) % (end + 1);
            let read = log.read(Offset::new(offset), max_bytes, Offset::MAX, min_one).unwrap();
            let got: Vec<_> = headers(&read.records).iter().map(|h| (h.base_offset.get(), h.last_offset().get())).collect();
            let first = model.iter().position(|&(_, last, _)| last >= offset);
            let mut want = Vec::new();
            let mut taken = 0;
            if let Some(first) = first {
                for &(base, last, size) in &model[first..] {
                    if taken + size > max_bytes {
                        if min_one && want.is_empty() {
                            want.push((base, last));
                        }
                        break;
                    }
                    taken += size;
                    want.push((base, last));
                }
            }
            prop_assert_eq!(got, want, "offset {} max_bytes {} min_one {}", offset, max_bytes, min_one);
        }
    }
}

/// The active segment's age runs from its first append, restarts with each roll, and from the
/// open for records appended before it.
#[test]
fn active_segment_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config());
    assert_eq!(
        log.active_segment_age_ms(1_000),
        None,
        "nothing waits in an empty log"
    );
    append(&mut log, plain(1, 0, 10), 1_000);
    append(&mut log, plain(1, 0, 10), 5_000);
    assert_eq!(log.active_segment_age_ms(7_000), Some(6_000));
    log.roll(8_000).unwrap();
    assert_eq!(
        log.active_segment_age_ms(9_000),
        None,
        "a roll seals what waited"
    );
    append(&mut log, plain(1, 0, 10), 9_500);
    assert_eq!(log.active_segment_age_ms(10_000), Some(500));
    log.close().unwrap();
    drop(log);
    let log = Log::open(dir.path(), small_config(), 20_000).unwrap();
    assert_eq!(log.active_segment_age_ms(20_250), Some(250));
}
