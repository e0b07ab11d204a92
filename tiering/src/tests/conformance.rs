//! The suite functions; `mod.rs` runs each against every backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use shale_formats::ids::Offset;

use super::fixtures::{write_segment, write_segments, FixtureBatch, FixtureSegment, SegmentShape};
use super::flaky;
use super::Env;
use crate::error::TieringError;
use crate::layout::PartitionLayout;
use crate::manager::RemoteLogManagerConfig;
use crate::merge::MergePolicy;
use crate::metadata::RemoteLogSegmentState;
use crate::read::{RemoteReadOutcome, RemoteTimestampOffset};
use crate::retention::RetentionPolicy;
use crate::store::check_store;
use crate::RetryPolicy;
use shale_cache::testing::FaultyStore;
use shale_cache::RequestKind;

const SHAPE: SegmentShape = SegmentShape {
    base_offset: 0,
    batches: 24,
    records_per_batch: 7,
    value_bytes: 90,
    timestamp_origin: 1_700_000_000_000,
};

fn all_batches(segments: &[FixtureSegment]) -> Vec<FixtureBatch> {
    segments.iter().flat_map(|s| s.batches.clone()).collect()
}

/// What a read of `offset` with `max_bytes` must return: whole batches from the one holding
/// `offset`, while they fit (and at least one with `min_one_batch`).
fn expected_read(
    batches: &[FixtureBatch],
    offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> Vec<u8> {
    let first = batches
        .iter()
        .position(|b| b.last_offset >= offset)
        .expect("offset in range");
    let mut out = Vec::new();
    for batch in &batches[first..] {
        if out.len() + batch.bytes.len() > max_bytes && !(min_one && out.is_empty()) {
            break;
        }
        out.extend_from_slice(&batch.bytes);
    }
    out
}

fn records(outcome: RemoteReadOutcome) -> Bytes {
    match outcome {
        RemoteReadOutcome::Records(r) => r.records,
        other => panic!("expected records, got {other:?}"),
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

/// The startup check passes on every backend: reachable, writable, conditional creates fenced.
pub async fn store_check_passes(env: Env) {
    check_store(env.store.as_ref(), &Path::from(env.prefix.as_str()))
        .await
        .unwrap();
}

/// Four copied segments read back byte for byte from every offset, with small and large byte
/// limits (the large ones cross segment boundaries), and again after a takeover by a fresh
/// manager that only has the store.
pub async fn copy_and_read_every_offset(env: Env) {
    let manager = env.manager();
    let tp = env.tp(0);
    let partition = manager.partition(&tp).await.unwrap();
    assert!(matches!(
        partition.read(Offset::new(0), 1000, true).await.unwrap(),
        RemoteReadOutcome::NotRemote {
            remote_log_end_offset: None
        }
    ));
    let segments = write_segments(env.fixtures.path(), 4, SHAPE);
    for (i, segment) in segments.iter().enumerate() {
        let mut upload = segment.upload.clone();
        if i == 1 {
            // A preallocated, zero-filled index tail (as Kafka leaves it) is not uploaded.
            let mut padded = upload.offset_index.to_vec();
            padded.resize(padded.len() + 4096, 0);
            upload.offset_index = Bytes::from(padded);
        }
        let metadata = partition.copy_segment(upload).await.unwrap();
        assert_eq!(metadata.state, RemoteLogSegmentState::CopySegmentFinished);
        assert_eq!(metadata.size_bytes, segment.upload.size_bytes);
    }
    let batches = all_batches(&segments);
    let end = segments.last().unwrap().upload.end_offset;
    assert_eq!(partition.remote_log_start_offset(), Some(Offset::new(0)));
    assert_eq!(partition.remote_log_end_offset(), Some(end));
    assert_eq!(partition.manifest().version, 4);

    let bundle = uploaded_indexes(&env, &partition.segments()[1]).await;
    assert_eq!(bundle.offset_index, segments[1].upload.offset_index);
    assert_eq!(
        bundle.producer_snapshot,
        segments[1].upload.producer_snapshot
    );
    let fresh = env.manager();
    let taken_over = fresh.open_partition(&tp).await.unwrap();
    assert_eq!(taken_over.segments(), partition.segments());
    let segment_bytes = segments[0].upload.size_bytes as usize;
    for reader in [&partition, &taken_over] {
        for offset in 0..=end.get() {
            let one = records(reader.read(Offset::new(offset), 1, true).await.unwrap());
            assert_eq!(
                one.as_ref(),
                expected_read(&batches, offset, 1, true),
                "offset {offset}"
            );
            assert!(records(reader.read(Offset::new(offset), 1, false).await.unwrap()).is_empty());
        }
        for offset in (0..=end.get()).step_by(5) {
            for max_bytes in [
                2_000,
                segment_bytes / 2,
                segment_bytes + 3_000,
                10 * segment_bytes,
            ] {
                let got = records(
                    reader
                        .read(Offset::new(offset), max_bytes, false)
                        .await
                        .unwrap(),
                );
                assert_eq!(
                    got.as_ref(),
                    expected_read(&batches, offset, max_bytes, false),
                    "offset {offset} max_bytes {max_bytes}"
                );
            }
        }
    }
    match partition.read(end + 1, 1000, true).await.unwrap() {
        RemoteReadOutcome::NotRemote {
            remote_log_end_offset,
        } => {
            assert_eq!(remote_log_end_offset, Some(end))
        }
        other => panic!("{other:?}"),
    }
    let whole = records(
        partition
            .read(Offset::new(0), usize::MAX, true)
            .await
            .unwrap(),
    );
    assert_eq!(whole.as_ref(), expected_read(&batches, 0, usize::MAX, true));
    if let RemoteReadOutcome::Records(r) = partition
        .read(Offset::new(3), usize::MAX, true)
        .await
        .unwrap()
    {
        assert_eq!(r.next_offset, end + 1);
    }
    let counts = manager.counters();
    let topic = counts.get("orders-v1").expect("counted under the topic");
    assert_eq!(
        topic.put_requests, 12,
        "3 PUTs per small segment: {topic:?}"
    );
    assert_eq!(
        topic.list_requests, 1,
        "one LIST, when the handle was opened"
    );
    assert!(topic.get_requests > 0);
}

/// offset_for_timestamp agrees with a scan of every record, for every record's timestamp and
/// its neighbours, below everything and above everything.
pub async fn offset_for_timestamp_matches_a_scan(env: Env) {
    let manager = env.manager();
    let partition = manager.partition(&env.tp(0)).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 3, SHAPE);
    for segment in &segments {
        partition
            .copy_segment(segment.upload.clone())
            .await
            .unwrap();
    }
    let all: Vec<(i64, i64)> = all_batches(&segments)
        .iter()
        .flat_map(|b| b.records.clone())
        .collect();
    let scan = |target: i64| {
        all.iter()
            .find(|&&(_, ts)| ts >= target)
            .map(|&(offset, timestamp)| RemoteTimestampOffset {
                offset: Offset::new(offset),
                timestamp,
            })
    };
    let mut targets = vec![i64::MIN, 0, SHAPE.timestamp_origin - 100, i64::MAX];
    for &(_, ts) in &all {
        targets.extend([ts - 1, ts, ts + 1]);
    }
    for target in targets {
        assert_eq!(
            partition.offset_for_timestamp(target).await.unwrap(),
            scan(target),
            "target {target}"
        );
    }
}

/// Copies that would leave a gap or an overlap are refused and change nothing; repeating a
/// copy that succeeded returns the existing segment; a corrupt local segment never goes out.
pub async fn gaps_overlaps_and_bad_segments_are_refused(env: Env) {
    let manager = env.manager();
    let partition = manager.partition(&env.tp(0)).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 3, SHAPE);
    let first = partition
        .copy_segment(segments[0].upload.clone())
        .await
        .unwrap();
    let err = partition
        .copy_segment(segments[2].upload.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, TieringError::NotContiguous { expected_base_offset, .. } if expected_base_offset == segments[1].upload.base_offset),
        "{err}"
    );
    assert!(err.to_string().contains("must start at"), "{err}");
    let again = partition
        .copy_segment(segments[0].upload.clone())
        .await
        .unwrap();
    assert_eq!(again, first);
    let mut overlapping = segments[1].upload.clone();
    overlapping.base_offset -= 1;
    assert!(matches!(
        partition.copy_segment(overlapping).await,
        Err(TieringError::NotContiguous { .. })
    ));
    // Flip a byte inside a record of the second segment: its CRC no longer matches.
    let mut corrupt = segments[1].upload.clone();
    let mut bytes = std::fs::read(&corrupt.log_path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    corrupt.log_path = env.fixtures.path().join("corrupt.log");
    std::fs::write(&corrupt.log_path, &bytes).unwrap();
    let err = partition.copy_segment(corrupt).await.unwrap_err();
    assert!(matches!(err, TieringError::InvalidSegment { .. }), "{err}");
    let mut short = segments[1].upload.clone();
    short.size_bytes += 1;
    assert!(matches!(
        partition.copy_segment(short).await,
        Err(TieringError::InvalidSegment { .. })
    ));
    assert_eq!(partition.manifest().version, 1);
    partition
        .copy_segment(segments[1].upload.clone())
        .await
        .unwrap();
    partition
        .copy_segment(segments[2].upload.clone())
        .await
        .unwrap();
    manager.scrub(Duration::ZERO).await.unwrap();
    env.assert_no_orphans(&env.tp(0)).await;
}

/// Two brokers' handles for one partition race to write the next manifest version, five
/// times: exactly one wins each race, the loser gets `Fenced` and catches up, no manifest
/// version ever lists overlapping segments, and the loser's objects don't linger.
pub async fn racing_writers_are_fenced(env: Env) {
    let tp = env.tp(0);
    let (a, b) = (env.manager(), env.manager());
    let pa = a.partition(&tp).await.unwrap();
    let pb = b.partition(&tp).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 5, SHAPE);
    for (round, segment) in segments.iter().enumerate() {
        let (ra, rb) = tokio::join!(
            pa.copy_segment(segment.upload.clone()),
            pb.copy_segment(segment.upload.clone())
        );
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} / {rb:?}");
        let (winner, loser, err) = match (ra, rb) {
            (Ok(_), Err(e)) => (&pa, &pb, e),
            (Err(e), Ok(_)) => (&pb, &pa, e),
            _ => unreachable!("exactly one won"),
        };
        assert!(
            matches!(err, TieringError::Fenced { .. }),
            "round {round}: {err}"
        );
        assert!(err.to_string().contains("fenced"), "{err}");
        // The loser reloaded: both see the same manifest, and retrying is a no-op.
        assert_eq!(loser.manifest().segments, winner.manifest().segments);
        let retried = loser.copy_segment(segment.upload.clone()).await.unwrap();
        assert_eq!(Some(retried.end_offset), winner.remote_log_end_offset());
    }
    assert_eq!(pa.manifest().version, 5);
    // No version lists overlapping segments, and no object is left without a manifest naming it.
    env.assert_no_orphans(&tp).await;
}

/// The property fencing rests on, checked on the backend itself: of 8 concurrent create-if-
/// absent PUTs of one object, exactly one succeeds, 20 times over.
pub async fn conditional_create_is_atomic(env: Env) {
    let store = env.store.clone();
    for round in 0..20 {
        let path = Path::from(format!("{}/race/{round}", env.prefix));
        let attempts = (0..8).map(|i| {
            let store = store.clone();
            let path = path.clone();
            async move {
                let create = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                store
                    .put_opts(&path, PutPayload::from(format!("writer {i}")), create)
                    .await
            }
        });
        let results = futures::future::join_all(attempts).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(
                    r,
                    Err(object_store::Error::AlreadyExists { .. })
                        | Err(object_store::Error::Precondition { .. })
                ),
                "{r:?}"
            );
        }
        store.delete(&path).await.unwrap();
    }
}

/// A crash between each step of a copy (before the `.log` PUT, after it, after `.indexes`,
/// and after the manifest PUT landed but before its answer), then a restart, a retry and a
/// scrub: no gap, no duplicate offsets, every offset readable, zero orphaned bytes.
///
/// ```text
///  remote:  [ seg0 ]            crash during copy of seg1 at step k
///  restart: [ seg0 ]  or  [ seg0 ][ seg1 ]   (only if the manifest PUT landed)
///  retry:   [ seg0 ][ seg1 ]    scrub(grace 0): nothing else left
/// ```
pub async fn crash_during_copy_then_retry_and_scrub(env: Env) {
    let segments = write_segments(env.fixtures.path(), 2, SHAPE);
    let batches = all_batches(&segments);
    // (crash at mutating request k, whether that request reached the store)
    let crashes = [(0, false), (1, false), (2, false), (2, true)];
    for (i, &(k, applies)) in crashes.iter().enumerate() {
        let tp = env.tp(10 + i as i32);
        let clean = env.manager();
        clean
            .partition(&tp)
            .await
            .unwrap()
            .copy_segment(segments[0].upload.clone())
            .await
            .unwrap();
        let faulty = FaultyStore::crash_at(env.store.clone(), k, applies);
        let crashing = env.manager_over(Arc::new(faulty.clone()), no_retry_config(&env));
        let p = crashing.partition(&tp).await.unwrap();
        assert!(p.copy_segment(segments[1].upload.clone()).await.is_err());
        assert!(faulty.crashed());
        drop(crashing);

        let restarted = env.manager();
        let p = restarted.open_partition(&tp).await.unwrap();
        let end = p.remote_log_end_offset().unwrap();
        let landed = k == 2 && applies;
        assert_eq!(
            end,
            if landed {
                segments[1].upload.end_offset
            } else {
                segments[0].upload.end_offset
            },
            "crash {k}/{applies}"
        );
        let retried = p.copy_segment(segments[1].upload.clone()).await.unwrap();
        assert_eq!(retried.end_offset, segments[1].upload.end_offset);
        let report = restarted.scrub(Duration::ZERO).await.unwrap();
        let expected_orphans = if landed { 0 } else { k };
        assert_eq!(
            report.orphans_deleted, expected_orphans,
            "crash {k}/{applies}: {report:?}"
        );
        assert!(report.partitions_skipped.is_empty(), "{report:?}");
        env.assert_no_orphans(&tp).await;
        let all = records(p.read(Offset::new(0), usize::MAX, true).await.unwrap());
        assert_eq!(all.as_ref(), expected_read(&batches, 0, usize::MAX, true));
    }
}

/// A crash between each step of a retention delete (before the DELETE_STARTED manifest,
/// after it, after each object delete, after the final manifest landed): readers never see a
/// gap or a half-deleted segment, and the next run plus a scrub finish the job cleanly.
///
/// ```text
///  v3: [ A ][ B ][ C ]
///  v4: [ A:DELETE_STARTED ][ B ][ C ]    ← crash after this, or after deleting A's objects
///  v5: [ B ][ C ]                        ← what the next run always reaches
/// ```
pub async fn crash_during_delete_then_retry_and_scrub(env: Env) {
    let segments = write_segments(env.fixtures.path(), 3, SHAPE);
    let batches = all_batches(&segments);
    let policy = RetentionPolicy {
        retention_ms: -1,
        retention_bytes: (segments[1].upload.size_bytes + segments[2].upload.size_bytes) as i64,
        now_ms: 0,
        local_only_bytes: 0,
    };
    let crashes = [
        (0, false),
        (0, true),
        (1, false),
        (1, true),
        (2, true),
        (3, true),
    ];
    for (i, &(k, applies)) in crashes.iter().enumerate() {
        let tp = env.tp(20 + i as i32);
        let clean = env.manager();
        let p = clean.partition(&tp).await.unwrap();
        for segment in &segments {
            p.copy_segment(segment.upload.clone()).await.unwrap();
        }
        let faulty = FaultyStore::crash_at(env.store.clone(), k, applies);
        let crashing = env.manager_over(Arc::new(faulty.clone()), no_retry_config(&env));
        let pc = crashing.partition(&tp).await.unwrap();
        assert!(
            pc.enforce_retention(policy).await.is_err(),
            "crash {k}/{applies}"
        );
        drop(crashing);

        let restarted = env.manager();
        let p = restarted.open_partition(&tp).await.unwrap();
        // Readers see either all three segments or the last two: never a gap.
        let start = p.remote_log_start_offset().unwrap();
        assert!(
            start == Offset::new(0) || start == segments[1].upload.base_offset,
            "start {start}"
        );
        let visible = records(p.read(start, usize::MAX, true).await.unwrap());
        assert_eq!(
            visible.as_ref(),
            expected_read(&batches, start.get(), usize::MAX, true)
        );

        let outcome = p.enforce_retention(policy).await.unwrap();
        assert_eq!(
            outcome.remote_log_start_offset,
            Some(segments[1].upload.base_offset)
        );
        assert_eq!(p.segments().len(), 2);
        assert!(p
            .segments()
            .iter()
            .all(|s| s.state == RemoteLogSegmentState::CopySegmentFinished));
        restarted.scrub(Duration::ZERO).await.unwrap();
        env.assert_no_orphans(&tp).await;
        assert!(matches!(
            p.read(Offset::new(0), 100, true).await.unwrap(),
            RemoteReadOutcome::OffsetBelowStart { remote_log_start_offset } if remote_log_start_offset == segments[1].upload.base_offset
        ));
    }
}

/// Topic deletion interrupted after its deletion marker: the next run (or the scrub) removes
/// every object of the partition, the marker last.
pub async fn crash_during_partition_delete(env: Env) {
    let segments = write_segments(env.fixtures.path(), 2, SHAPE);
    for (i, finish_with_scrub) in [false, true].into_iter().enumerate() {
        let tp = env.tp(30 + i as i32);
        let clean = env.manager();
        let p = clean.partition(&tp).await.unwrap();
        for segment in &segments {
            p.copy_segment(segment.upload.clone()).await.unwrap();
        }
        // Mutations: marker manifest (0), then object deletes; crash after the first delete.
        let faulty = FaultyStore::crash_at(env.store.clone(), 2, false);
        let crashing = env.manager_over(Arc::new(faulty), no_retry_config(&env));
        assert!(crashing
            .partition(&tp)
            .await
            .unwrap()
            .delete_all()
            .await
            .is_err());
        let restarted = env.manager();
        if finish_with_scrub {
            let report = restarted.scrub(Duration::from_secs(3600)).await.unwrap();
            assert_eq!(report.partitions_deleted, vec![tp.clone()]);
        } else {
            let p = restarted.open_partition(&tp).await.unwrap();
            assert!(matches!(
                p.read(Offset::new(0), 10, true).await,
                Err(TieringError::PartitionDeleted { .. })
            ));
            p.delete_all().await.unwrap();
        }
        let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &tp);
        let left = env.objects_under(layout.dir()).await;
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// retention.ms deletes segments whose newest record is old enough, retention.bytes the oldest
/// while the log is too big, DeleteRecords everything below its offset (and hides the rest of
/// that segment's earlier offsets at once); -1 keeps everything.
pub async fn retention_by_time_size_and_delete_records(env: Env) {
    let manager = env.manager();
    let p = manager.partition(&env.tp(0)).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 5, SHAPE);
    for segment in &segments {
        p.copy_segment(segment.upload.clone()).await.unwrap();
    }
    let forever = RetentionPolicy {
        retention_ms: -1,
        retention_bytes: -1,
        now_ms: i64::MAX,
        local_only_bytes: 0,
    };
    assert_eq!(
        p.enforce_retention(forever).await.unwrap().segments_deleted,
        0
    );
    // Time: now is such that exactly the first segment's newest record is older than 1 h.
    let now = segments[0].upload.max_timestamp + 3_600_000;
    let by_time = RetentionPolicy {
        retention_ms: 3_600_000,
        now_ms: now,
        ..forever
    };
    let outcome = p.enforce_retention(by_time).await.unwrap();
    assert_eq!(outcome.segments_deleted, 1);
    assert_eq!(outcome.bytes_deleted, segments[0].upload.size_bytes);
    assert_eq!(
        p.remote_log_start_offset(),
        Some(segments[1].upload.base_offset)
    );
    // Size: keep segments 3 and 4's worth, with 1 byte of local-only data counted too: 1 and
    // 2 go (Kafka deletes a segment only while the excess is at least its size).
    let size = segments[3].upload.size_bytes + segments[4].upload.size_bytes;
    let by_size = RetentionPolicy {
        retention_bytes: size as i64,
        local_only_bytes: 1,
        ..forever
    };
    assert_eq!(
        p.enforce_retention(by_size).await.unwrap().segments_deleted,
        2
    );
    assert_eq!(
        p.remote_log_start_offset(),
        Some(segments[3].upload.base_offset)
    );
    // DeleteRecords in the middle of segment 3: its earlier offsets vanish at once.
    let cut = segments[3].upload.base_offset + 10;
    let outcome = p.delete_segments_before(cut).await.unwrap();
    assert_eq!(outcome.segments_deleted, 0);
    assert_eq!(p.remote_log_start_offset(), Some(cut));
    assert!(matches!(
        p.read(cut - 1, 100, true).await.unwrap(),
        RemoteReadOutcome::OffsetBelowStart { remote_log_start_offset } if remote_log_start_offset == cut
    ));
    let got = records(p.read(cut, 1, true).await.unwrap());
    let batches = all_batches(&segments);
    assert_eq!(got.as_ref(), expected_read(&batches, cut.get(), 1, true));
    let after = segments[4].upload.base_offset + 1;
    assert_eq!(
        p.delete_segments_before(after)
            .await
            .unwrap()
            .segments_deleted,
        1
    );
    assert_eq!(p.remote_log_start_offset(), Some(after));
    // The copied end offset stays: the next copy must continue from it.
    assert_eq!(p.copied_end_offset(), Some(segments[4].upload.end_offset));
    let reopened = env.manager().open_partition(&env.tp(0)).await.unwrap();
    assert_eq!(reopened.remote_log_start_offset(), Some(after));
    manager.scrub(Duration::ZERO).await.unwrap();
    env.assert_no_orphans(&env.tp(0)).await;
}

/// A store that fails 15 % and stalls 5 % of requests on a seeded schedule: copies (single PUT
/// and multipart) retry with backoff and all succeed; everything acknowledged reads back intact
/// through a clean manager; a scrub leaves no orphan.
pub async fn flaky_store_copy_retries_and_loses_nothing(env: Env) {
    let tp = env.tp(0);
    let mut segments = write_segments(env.fixtures.path(), 4, SHAPE);
    let big_dir = env.fixtures.path().join("big");
    std::fs::create_dir_all(&big_dir).unwrap();
    let big = write_segment(
        &big_dir,
        SegmentShape {
            base_offset: (segments.last().unwrap().upload.end_offset + 1).get(),
            batches: 12,
            records_per_batch: 4,
            value_bytes: 256 * 1024,
            ..SHAPE
        },
    );
    segments.push(big);
    let faulty = flaky(env.store.clone(), 0x5eed, 150, 50, Duration::from_secs(2));
    let config = RemoteLogManagerConfig {
        multipart_threshold_bytes: 6 * 1024 * 1024,
        multipart_part_bytes: 5 * 1024 * 1024,
        retry: RetryPolicy {
            attempts_max: 30,
            backoff_initial: Duration::from_millis(5),
            backoff_max: Duration::from_millis(40),
            request_timeout: Duration::from_millis(700),
        },
        ..env.config()
    };
    let manager = env.manager_over(Arc::new(faulty.clone()), config);
    let p = loop {
        // Opening the partition reads the manifest; with this many faults it may fail too.
        match manager.partition(&tp).await {
            Ok(p) => break p,
            Err(e) => assert!(
                e.is_retriable() || matches!(e, TieringError::RetriesExhausted { .. }),
                "{e}"
            ),
        }
    };
    let mut acknowledged = Vec::new();
    for segment in &segments {
        loop {
            match p.copy_segment(segment.upload.clone()).await {
                Ok(metadata) => {
                    acknowledged.push(metadata);
                    break;
                }
                // Give up only on errors that are not about the store's health.
                Err(e @ TieringError::RetriesExhausted { .. }) => eprintln!("retrying a copy: {e}"),
                Err(e) => panic!("copy failed for good: {e}"),
            }
        }
    }
    let (faults, stalls) = (faulty.injected_failures(), faulty.injected_stalls());
    assert!(
        faults > 0 && stalls > 0,
        "the schedule injected {faults} faults, {stalls} stalls"
    );
    let clean = env.manager();
    let q = clean.partition(&tp).await.unwrap();
    assert_eq!(q.segments(), acknowledged);
    let batches = all_batches(&segments);
    let all = records(q.read(Offset::new(0), usize::MAX, true).await.unwrap());
    assert_eq!(
        all.len(),
        batches.iter().map(|b| b.bytes.len()).sum::<usize>()
    );
    assert_eq!(all.as_ref(), expected_read(&batches, 0, usize::MAX, true));
    clean.scrub(Duration::ZERO).await.unwrap();
    env.assert_no_orphans(&tp).await;
}

/// A segment above the multipart threshold goes up in parts with the default part size and
/// reads back intact; prints the PUTs per GiB uploaded and GETs per GiB read cold (1 MiB
/// fetches through the cache with its default 4 MiB chunks), which the issue bounds at
/// ≤ 1 PUT per 8 MiB and ≤ 1 GET per 4 MiB. `SHALE_TEST_SEGMENT_MIB` sets the size (64).
pub async fn multipart_upload_and_requests_per_gib(env: Env) {
    let mib: usize = std::env::var("SHALE_TEST_SEGMENT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let value_bytes = 64 * 1024;
    let segment = write_segment(
        env.fixtures.path(),
        SegmentShape {
            base_offset: 0,
            batches: mib * 1024 * 1024 / (4 * value_bytes),
            records_per_batch: 4,
            value_bytes,
            ..SHAPE
        },
    );
    let config = RemoteLogManagerConfig {
        multipart_threshold_bytes: 32 * 1024 * 1024,
        multipart_part_bytes: 16 * 1024 * 1024,
        ..env.config()
    };
    let manager = crate::RemoteLogManager::new(
        env.store.clone(),
        shale_cache::CacheConfig::default(),
        config,
    )
    .unwrap();
    let p = manager.partition(&env.tp(0)).await.unwrap();
    let before = manager.counters_total();
    let started = std::time::Instant::now();
    p.copy_segment(segment.upload.clone()).await.unwrap();
    let upload_secs = started.elapsed().as_secs_f64();
    let after_upload = manager.counters_total();
    let mut offset = 0;
    let mut read = 0usize;
    let started = std::time::Instant::now();
    while offset <= segment.upload.end_offset.get() {
        match p
            .read(Offset::new(offset), 1024 * 1024, true)
            .await
            .unwrap()
        {
            RemoteReadOutcome::Records(r) => {
                read += r.records.len();
                offset = r.next_offset.get();
            }
            other => panic!("{other:?}"),
        }
    }
    let read_secs = started.elapsed().as_secs_f64();
    let after_read = manager.counters_total();
    assert_eq!(read as u64, segment.upload.size_bytes);
    let gib = segment.upload.size_bytes as f64 / (1u64 << 30) as f64;
    let puts = after_upload.put_requests - before.put_requests;
    let gets = after_read.get_requests - after_upload.get_requests;
    let get_bytes = after_read.get_bytes - after_upload.get_bytes;
    eprintln!(
        "{:?}: {} MiB segment: upload {puts} PUTs ({:.0} per GiB, {:.1} MiB per PUT) in {upload_secs:.2} s; \
         cold read {gets} GETs ({:.0} per GiB, {:.1} MiB per GET, {:.2} GiB fetched per GiB read) in {read_secs:.2} s",
        env.backend,
        mib,
        puts as f64 / gib,
        mib as f64 / puts as f64,
        gets as f64 / gib,
        get_bytes as f64 / gets.max(1) as f64 / (1024.0 * 1024.0),
        get_bytes as f64 / segment.upload.size_bytes as f64,
    );
    // parts + create + complete + .indexes + manifest
    let parts = (segment.upload.size_bytes as usize).div_ceil(16 * 1024 * 1024) as u64;
    assert_eq!(puts, parts + 4);
    assert!(
        get_bytes / gets.max(1) >= 4 * 1024 * 1024 || mib < 64,
        "{gets} GETs for {get_bytes} bytes"
    );
}

/// The scrub keeps only the newest manifest versions it is told to, and on a local-directory
/// store removes staging files an interrupted write left (which LIST can't see).
pub async fn scrub_trims_manifests_and_staging_files(env: Env) {
    // The writer keeps 10 versions, so its commits delete none of the 6; the scrub keeps 2.
    let writer = env.manager_over(
        env.store.clone(),
        RemoteLogManagerConfig {
            manifest_versions_kept: 10,
            ..env.config()
        },
    );
    let config = RemoteLogManagerConfig {
        manifest_versions_kept: 2,
        ..env.config()
    };
    let manager = env.manager_over(env.store.clone(), config);
    let tp = env.tp(0);
    let p = writer.partition(&tp).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 6, SHAPE);
    for segment in &segments {
        p.copy_segment(segment.upload.clone()).await.unwrap();
    }
    let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &tp);
    let staged = env.local_root.as_ref().map(|root| {
        let mut dir = root.clone();
        for part in layout.dir().parts() {
            dir.push(part.as_ref());
        }
        let file = dir.join("00000000000000000099-0123456789abcdef0123456789abcdef.log#1");
        std::fs::write(&file, vec![7u8; 1000]).unwrap();
        file
    });
    let report = manager.scrub(Duration::ZERO).await.unwrap();
    assert_eq!(report.manifests_deleted, 3, "{report:?}");
    assert_eq!(report.orphans_deleted, 0);
    let versions = env.objects_under(&layout.manifest_dir()).await.len();
    assert_eq!(versions, 3);
    if let Some(file) = staged {
        assert_eq!(report.staged_files_removed, 1, "{report:?}");
        assert!(!file.exists());
    }
    // With a long grace, fresh orphans are kept.
    let orphan = layout.log(
        Offset::new(999),
        crate::metadata::RemoteLogSegmentId::new_random(),
    );
    env.store
        .put(&orphan, PutPayload::from_static(b"x"))
        .await
        .unwrap();
    let report = manager.scrub(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((report.orphans_deleted, report.young_orphans_kept), (0, 1));
    let report = manager.scrub(Duration::ZERO).await.unwrap();
    assert_eq!(report.orphans_deleted, 1);
    // A new handle (takeover) still loads the newest version after the trim.
    let reopened = env.manager().open_partition(&tp).await.unwrap();
    assert_eq!(reopened.manifest().version, 6);
}

/// A broker with an empty data dir finds the partitions that have data in the bucket.
pub async fn discover_partitions_after_restart(env: Env) {
    let manager = env.manager();
    let segments = write_segments(env.fixtures.path(), 1, SHAPE);
    for partition in [0, 3] {
        manager
            .partition(&env.tp(partition))
            .await
            .unwrap()
            .copy_segment(segments[0].upload.clone())
            .await
            .unwrap();
    }
    let found = env.manager().discover_partitions().await.unwrap();
    assert_eq!(found, vec![env.tp(0), env.tp(3)]);
}

/// A corrupt newest manifest stops the partition with an error naming the object; the reader
/// does not fall back to the previous version, and the scrub leaves the partition alone.
/// Damaged segment bytes are caught by the CRC check after the read.
pub async fn corruption_is_reported_not_skipped(env: Env) {
    let tp = env.tp(0);
    let manager = env.manager();
    let p = manager.partition(&tp).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 2, SHAPE);
    for segment in &segments {
        p.copy_segment(segment.upload.clone()).await.unwrap();
    }
    let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &tp);
    // Damage the first segment's bytes (same size, one bit) and read it with a cold cache.
    let first = &p.segments()[0];
    let log = layout.log(first.base_offset, first.segment_id);
    let mut bytes = env
        .store
        .get(&log)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = bytes.len() / 3;
    bytes[at] ^= 1;
    env.store.put(&log, PutPayload::from(bytes)).await.unwrap();
    let cold = env.manager().open_partition(&tp).await.unwrap();
    let err = cold
        .read(Offset::new(0), usize::MAX, true)
        .await
        .unwrap_err();
    assert!(matches!(err, TieringError::CorruptSegment { .. }), "{err}");
    assert!(err.to_string().contains(log.as_ref()), "{err}");
    // Damage the newest manifest.
    let newest = layout.manifest(2);
    let mut bytes = env
        .store
        .get(&newest)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    env.store
        .put(&newest, PutPayload::from(bytes))
        .await
        .unwrap();
    let err = env.manager().open_partition(&tp).await.unwrap_err();
    assert!(matches!(err, TieringError::CorruptManifest { .. }), "{err}");
    assert!(err.to_string().contains(newest.as_ref()), "{err}");
    let report = env.manager().scrub(Duration::ZERO).await.unwrap();
    assert_eq!(report.partitions_skipped.len(), 1, "{report:?}");
    assert_eq!(report.orphans_deleted, 0);
}

async fn uploaded_indexes(
    env: &Env,
    segment: &crate::metadata::RemoteLogSegmentMetadata,
) -> crate::indexes::SegmentIndexes {
    let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &env.tp(0));
    let path = layout.indexes(segment.base_offset, segment.segment_id);
    let bytes = env.store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, segment.indexes_size_bytes);
    crate::indexes::SegmentIndexes::decode(&bytes).unwrap()
}

/// The copy job and the archive job look a partition up concurrently; both must get the same
/// handle, or the one whose manifest is stale fences itself on its next write. Every request
/// stalls, so both lookups miss and load before either inserts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_share_one_handle() {
    let env = Env::new(super::Backend::Memory, "one_handle").unwrap();
    let slow: Arc<dyn ObjectStore> = Arc::new(flaky(
        env.store.clone(),
        7,
        0,
        1000,
        Duration::from_millis(20),
    ));
    let manager = env.manager_over(slow, env.config());
    for partition in 0..5 {
        let tp = env.tp(partition);
        let (a, b) = tokio::join!(manager.partition(&tp), manager.partition(&tp));
        let (a, b) = (a.expect("first lookup"), b.expect("second lookup"));
        assert!(
            Arc::ptr_eq(&a, &b),
            "two handles for {tp}: concurrent lookups must share one"
        );
        let again = manager.partition(&tp).await.expect("third lookup");
        assert!(Arc::ptr_eq(&a, &again));
    }
}

/// Each commit deletes the versions more than `manifest_versions_kept` behind it, oldest first,
/// so a partition holds a few manifest objects however many segments it uploads; a reopened
/// handle reads the newest.
pub async fn commits_collect_old_manifest_versions(env: Env) {
    let config = RemoteLogManagerConfig {
        manifest_versions_kept: 2,
        ..env.config()
    };
    let manager = env.manager_over(env.store.clone(), config.clone());
    let tp = env.tp(0);
    let p = manager.partition(&tp).await.unwrap();
    let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &tp);
    let segments = write_segments(env.fixtures.path(), 8, SHAPE);
    for (i, segment) in segments.iter().enumerate() {
        p.copy_segment(segment.upload.clone()).await.unwrap();
        let mut versions: Vec<u64> = env
            .objects_under(&layout.manifest_dir())
            .await
            .iter()
            .filter_map(|m| {
                m.location
                    .filename()
                    .and_then(crate::layout::parse_manifest_version)
            })
            .collect();
        versions.sort();
        let newest = i as u64 + 1;
        let want: Vec<u64> = (newest.saturating_sub(2).max(1)..=newest).collect();
        assert_eq!(versions, want, "after commit {newest}");
    }
    let counts = manager.counters_total();
    assert_eq!(
        counts.delete_requests, 5,
        "one DELETE per commit from the fourth: {counts:?}"
    );
    let reopened = env
        .manager_over(env.store.clone(), config)
        .partition(&tp)
        .await
        .unwrap();
    assert_eq!(reopened.manifest().version, 8);
    assert_eq!(reopened.segments(), p.segments());
    env.assert_no_orphans(&tp).await;
}

/// A handle left behind while another wrote and collected versions past it cannot commit on
/// top of a collected version: its create succeeds (the name is free again) but the previous
/// version is gone, so it is fenced, its stray version is removed, and it catches up.
pub async fn a_writer_behind_collected_versions_is_fenced(env: Env) {
    let config = RemoteLogManagerConfig {
        manifest_versions_kept: 1,
        ..env.config()
    };
    let tp = env.tp(0);
    let (a, b) = (
        env.manager_over(env.store.clone(), config.clone()),
        env.manager_over(env.store.clone(), config),
    );
    let segments = write_segments(env.fixtures.path(), 5, SHAPE);
    let pa = a.partition(&tp).await.unwrap();
    pa.copy_segment(segments[0].upload.clone()).await.unwrap();
    let pb = b.partition(&tp).await.unwrap();
    for segment in &segments[1..4] {
        pb.copy_segment(segment.upload.clone()).await.unwrap();
    }
    assert_eq!(pb.manifest().version, 4);
    // a is at version 1; versions 1 and 2 are collected, so "version 2" is free to create.
    let err = pa
        .copy_segment(segments[1].upload.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, TieringError::Fenced { .. }), "{err}");
    assert_eq!(pa.manifest().version, 4, "the fenced handle caught up");
    assert_eq!(pa.segments(), pb.segments());
    let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &tp);
    let stray = layout.manifest(2);
    assert!(
        env.store.head(&stray).await.is_err(),
        "the stray version 2 was removed"
    );
    // The newest writer goes on undisturbed.
    pb.copy_segment(segments[4].upload.clone()).await.unwrap();
    assert_eq!(pb.manifest().version, 5);
}

/// Everything a reader can observe of `p` up to `end`: reads from every `step`th offset with a
/// small limit (at least one batch) and a larger one (whole batches only), and offsets by
/// timestamp across the range.
async fn observe(p: &crate::RemotePartition, end: i64, step: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for offset in (0..=end).step_by(step) {
        for (max_bytes, min_one) in [(1000, true), (50_000, false)] {
            let outcome = p
                .read(Offset::new(offset), max_bytes, min_one)
                .await
                .unwrap();
            seen.push(format!("read {offset} {max_bytes}: {outcome:?}"));
        }
    }
    for ts in (SHAPE.timestamp_origin - 5..SHAPE.timestamp_origin + end * 10 + 20).step_by(37) {
        let found = p.offset_for_timestamp(ts).await.unwrap();
        seen.push(format!("ts {ts}: {found:?}"));
    }
    seen
}

fn merge_policy(target_bytes: u64, fanout: usize) -> MergePolicy {
    MergePolicy {
        target_bytes,
        max_span_ms: -1,
        fanout,
        index_interval_bytes: 1024,
        grace_ms: 60_000,
        now_ms: crate::partition::now_ms(),
    }
}

async fn exists(env: &Env, path: &Path) -> bool {
    env.store.head(path).await.is_ok()
}

/// Six small segments become three at fanout 4 (the four smallest neighbours merged, then
/// nothing while fewer than four are small), then two at fanout 2 (the two smallest neighbours,
/// not the merged segment with a fresh one); every read and timestamp lookup answers exactly
/// as before, also from a fresh handle with cold caches; the
/// replaced objects stay (the scrub too keeps them) until the grace period has passed, then
/// go, leaving no orphan.
pub async fn merge_keeps_every_read_and_deletes_replaced_after_grace(env: Env) {
    let manager = env.manager();
    let tp = env.tp(0);
    let p = manager.partition(&tp).await.unwrap();
    let segments = write_segments(env.fixtures.path(), 6, SHAPE);
    for segment in &segments {
        p.copy_segment(segment.upload.clone()).await.unwrap();
    }
    let size = segments[0].upload.size_bytes;
    let end = segments.last().unwrap().upload.end_offset.get();
    let before = observe(&p, end, 3).await;
    let policy = merge_policy(size * 100, 4);
    let counted = manager.counters_total();
    let first = p.merge_small_segments(&policy).await.unwrap();
    let merged = first.merged.clone().expect("a merge");
    assert_eq!(first.segments_merged, 4, "{first:?}");
    assert_eq!(
        (merged.base_offset, merged.end_offset),
        (
            segments[0].upload.base_offset,
            segments[3].upload.end_offset
        )
    );
    let sources: u64 = segments[..4].iter().map(|s| s.upload.size_bytes).sum();
    assert_eq!(merged.size_bytes, sources);
    let concatenated: Vec<u8> = segments[..4]
        .iter()
        .flat_map(|s| std::fs::read(&s.upload.log_path).unwrap())
        .collect();
    assert_eq!(merged.log_crc32c, crc32c::crc32c(&concatenated));
    let counts = manager.counters_total();
    assert_eq!(
        counts.put_requests - counted.put_requests,
        first.put_requests,
        "log, indexes, manifest: {first:?}"
    );
    assert_eq!(first.put_requests, 3);
    assert_eq!(first.bytes_read, sources);
    let second = p.merge_small_segments(&policy).await.unwrap();
    assert_eq!(
        second.merged, None,
        "three small segments, fanout 4: {second:?}"
    );
    let pairs = MergePolicy {
        fanout: 2,
        ..policy
    };
    let third = p.merge_small_segments(&pairs).await.unwrap();
    let fresh = third
        .merged
        .clone()
        .expect("a merge of the two fresh segments");
    assert_eq!(
        fresh.base_offset, segments[4].upload.base_offset,
        "{third:?}"
    );
    assert_eq!(third.segments_merged, 2, "{third:?}");
    let manifest = p.manifest();
    assert_eq!(manifest.segments.len(), 2);
    assert_eq!(manifest.replaced.len(), 6);
    assert_eq!(observe(&p, end, 3).await, before);
    let cold = env.manager().open_partition(&tp).await.unwrap();
    assert_eq!(observe(&cold, end, 3).await, before);

    let report = manager.scrub(Duration::ZERO).await.unwrap();
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    let layout = PartitionLayout::new(&Path::from(env.prefix.as_str()), &tp);
    for r in &manifest.replaced {
        assert!(exists(&env, &layout.log(r.base_offset, r.segment_id)).await);
    }
    let early = p.merge_small_segments(&policy).await.unwrap();
    assert_eq!(early.replaced_deleted, 0);
    let later = MergePolicy {
        now_ms: policy.now_ms + policy.grace_ms,
        ..policy
    };
    let done = p.merge_small_segments(&later).await.unwrap();
    assert_eq!((done.replaced_deleted, done.delete_requests), (6, 12));
    assert!(p.manifest().replaced.is_empty());
    for r in &manifest.replaced {
        assert!(!exists(&env, &layout.log(r.base_offset, r.segment_id)).await);
        assert!(!exists(&env, &layout.indexes(r.base_offset, r.segment_id)).await);
    }
    env.assert_no_orphans(&tp).await;
    assert_eq!(observe(&p, end, 3).await, before);
    assert_eq!(
        observe(&cold, end, 3).await,
        before,
        "a stale handle catches up"
    );
}

/// A crash at each mutating request of a merge (`.log` PUT, `.indexes` PUT, the manifest PUT,
/// that last one also after it landed): readers see the same records throughout, the next run
/// finishes the merge or finds it done, and the scrub removes exactly the crashed attempt's
/// objects.
pub async fn crash_during_merge_then_retry_and_scrub(env: Env) {
    let segments = write_segments(env.fixtures.path(), 3, SHAPE);
    let end = segments.last().unwrap().upload.end_offset.get();
    let policy = merge_policy(segments[0].upload.size_bytes * 4, 3);
    let crashes = [(0, false), (1, false), (2, false), (2, true)];
    for (i, &(k, applies)) in crashes.iter().enumerate() {
        let tp = env.tp(20 + i as i32);
        let clean = env.manager();
        let p = clean.partition(&tp).await.unwrap();
        for segment in &segments {
            p.copy_segment(segment.upload.clone()).await.unwrap();
        }
        let before = observe(&p, end, 7).await;
        let faulty = FaultyStore::crash_at(env.store.clone(), k, applies);
        let crashing = env.manager_over(Arc::new(faulty.clone()), no_retry_config(&env));
        let cp = crashing.partition(&tp).await.unwrap();
        assert!(cp.merge_small_segments(&policy).await.is_err());
        assert!(faulty.crashed());
        drop(crashing);

        let restarted = env.manager();
        let rp = restarted.open_partition(&tp).await.unwrap();
        let landed = k == 2 && applies;
        let listed = rp.manifest().segments.len();
        assert_eq!(listed, if landed { 1 } else { 3 }, "crash {k}/{applies}");
        assert_eq!(observe(&rp, end, 7).await, before, "crash {k}/{applies}");
        let again = rp.merge_small_segments(&policy).await.unwrap();
        assert_eq!(again.segments_merged, if landed { 0 } else { 3 });
        let report = restarted.scrub(Duration::ZERO).await.unwrap();
        let orphans = if landed { 0 } else { k };
        assert_eq!(
            report.orphans_deleted, orphans,
            "crash {k}/{applies}: {report:?}"
        );
        let later = MergePolicy {
            now_ms: policy.now_ms + policy.grace_ms,
            ..policy
        };
        let done = rp.merge_small_segments(&later).await.unwrap();
        assert_eq!(done.replaced_deleted, 3);
        env.assert_no_orphans(&tp).await;
        assert_eq!(observe(&rp, end, 7).await, before, "crash {k}/{applies}");
    }
}

/// A merge whose sources change before it commits changes nothing and leaves nothing: another
/// writer's commit fences it; another writer's deletion of a source makes it catch up and give
/// up; retention deleting a source in the same handle makes it give up at the commit.
pub async fn merge_racing_retention_or_another_writer_changes_nothing(env: Env) {
    let segments = write_segments(env.fixtures.path(), 5, SHAPE);
    let policy = merge_policy(segments[0].upload.size_bytes * 8, 4);

    let tp = env.tp(0);
    let (a, b) = (env.manager(), env.manager());
    let pa = a.partition(&tp).await.unwrap();
    for segment in &segments[..4] {
        pa.copy_segment(segment.upload.clone()).await.unwrap();
    }
    let pb = b.partition(&tp).await.unwrap();
    pb.copy_segment(segments[4].upload.clone()).await.unwrap();
    let err = pa.merge_small_segments(&policy).await.unwrap_err();
    assert!(matches!(err, TieringError::Fenced { .. }), "{err}");
    assert_eq!(pa.segments(), pb.segments(), "the fenced handle caught up");
    env.assert_no_orphans(&tp).await;
    pb.delete_segments_before(segments[1].upload.base_offset)
        .await
        .unwrap();
    let gone = pa.merge_small_segments(&policy).await.unwrap();
    assert!(gone.abandoned, "{gone:?}");
    assert_eq!(pa.segments(), pb.segments(), "caught up again");
    assert_eq!(pa.segments().len(), 4);
    env.assert_no_orphans(&tp).await;
    let merged = pa.merge_small_segments(&policy).await.unwrap();
    assert_eq!(merged.segments_merged, 4, "the caught-up handle merges");

    let tp = env.tp(1);
    let faulty = FaultyStore::new(env.store.clone(), Default::default());
    let manager = env.manager_over(Arc::new(faulty.clone()), env.config());
    let p = manager.partition(&tp).await.unwrap();
    for segment in &segments[..4] {
        p.copy_segment(segment.upload.clone()).await.unwrap();
    }
    // The merge's first GET stalls; retention deletes its first source meanwhile.
    faulty.stall_next(RequestKind::Get, 1, Duration::from_millis(1500));
    let merging = tokio::spawn({
        let p = p.clone();
        async move { p.merge_small_segments(&policy).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.delete_segments_before(segments[1].upload.base_offset)
        .await
        .unwrap();
    let outcome = merging.await.unwrap().unwrap();
    assert!(outcome.abandoned, "{outcome:?}");
    assert_eq!(outcome.segments_merged, 0);
    assert_eq!(p.segments().len(), 3);
    assert!(p.manifest().replaced.is_empty());
    env.assert_no_orphans(&tp).await;
}

/// Above the multipart threshold the merged `.log` streams out in parts (bounded memory):
/// create, parts, complete, then `.indexes` and the manifest; the bytes read back unchanged.
pub async fn multipart_merge_of_many_small_segments(env: Env) {
    let shape = SegmentShape {
        base_offset: 0,
        batches: 48,
        records_per_batch: 4,
        value_bytes: 16 * 1024,
        ..SHAPE
    };
    let segments = write_segments(env.fixtures.path(), 4, shape);
    let part_bytes = 5 * 1024 * 1024;
    let config = RemoteLogManagerConfig {
        multipart_threshold_bytes: 8 * 1024 * 1024,
        multipart_part_bytes: part_bytes,
        ..env.config()
    };
    let manager = env.manager_over(env.store.clone(), config);
    let tp = env.tp(0);
    let p = manager.partition(&tp).await.unwrap();
    for segment in &segments {
        p.copy_segment(segment.upload.clone()).await.unwrap();
    }
    let total: u64 = segments.iter().map(|s| s.upload.size_bytes).sum();
    let end = segments.last().unwrap().upload.end_offset.get();
    let before = observe(&p, end, 5).await;
    let outcome = p
        .merge_small_segments(&merge_policy(total * 2 + 1, 4))
        .await
        .unwrap();
    assert_eq!(outcome.segments_merged, 4, "{outcome:?}");
    // Windows are whole sources here, so a part closes at the first source that fills it.
    let segment = segments[0].upload.size_bytes;
    let per_part = (part_bytes as u64).div_ceil(segment);
    let parts = 4u64.div_ceil(per_part);
    assert_eq!(outcome.put_requests, parts + 4, "{outcome:?}");
    assert_eq!(observe(&p, end, 5).await, before);
    let cold = env.manager().open_partition(&tp).await.unwrap();
    assert_eq!(observe(&cold, end, 5).await, before);
}
