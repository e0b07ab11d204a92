//! Tests of [`ChunkCache`] against object_store's `InMemory` and `LocalFileSystem`, through the
//! counting and fault-injecting decorators.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proptest::prelude::*;

use super::*;
use crate::counting::{CountingStore, RequestKind};
use crate::testing::{instrumented, is_injected, pattern_bytes, FaultPlan, FaultyStore};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// A config with small chunks for fast tests.
fn small(chunk_bytes: u64, capacity_chunks: u64, readahead_chunks: usize) -> CacheConfig {
    CacheConfig {
        chunk_bytes,
        capacity_bytes: chunk_bytes * capacity_chunks,
        readahead_chunks,
        ..CacheConfig::default()
    }
}

async fn put(store: &dyn ObjectStore, path: &Path, data: &Bytes) {
    store
        .put(path, PutPayload::from(data.clone()))
        .await
        .expect("test setup: put");
}

/// Waits until no fetch is in flight (read-ahead runs in the background).
async fn quiesce(cache: &ChunkCache) {
    for _ in 0..1000 {
        if lock(&cache.inner.inflight).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("fetches still in flight after 2 s");
}

fn slice(data: &Bytes, range: &Range<u64>) -> Bytes {
    data.slice(range.start as usize..range.end as usize)
}

/// One step of a read pattern: continue from the previous read's end, or jump.
#[derive(Debug, Clone)]
enum Step {
    Continue { len: u64 },
    Jump { at: f64, len: u64 },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        (1u64..3000).prop_map(|len| Step::Continue { len }),
        (0.0f64..1.0, 0u64..5000).prop_map(|(at, len)| Step::Jump { at, len }),
    ];
    proptest::collection::vec(step, 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any sequence of reads, sequential or not, within one object or running on into its
    /// successor, returns exactly the object's bytes, under eviction pressure and read-ahead; and
    /// the cache stays within its capacity.
    #[test]
    fn read_range_returns_the_object_bytes(
        size_a in 1u64..20_000,
        size_b in 1u64..10_000,
        chunk_bytes in prop_oneof![Just(64u64), Just(500), Just(1024), Just(4096)],
        capacity_chunks in 4u64..40,
        readahead_chunks in 0usize..5,
        get_chunks_max in 1usize..5,
        steps in steps(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let (a, b) = (Path::from("p/a"), Path::from("p/b"));
            let (data_a, data_b) = (pattern_bytes(1, size_a as usize), pattern_bytes(2, size_b as usize));
            put(&*store, &a, &data_a).await;
            put(&*store, &b, &data_b).await;
            let config = CacheConfig {
                get_chunks_max,
                ..small(chunk_bytes, capacity_chunks, readahead_chunks)
            };
            let cache = ChunkCache::new(store, config).expect("config");
            // A position in the concatenation a ++ b.
            let mut position = 0u64;
            for step in steps {
                let (start, len) = match step {
                    Step::Continue { len } => (position, len),
                    Step::Jump { at, len } => (((size_a + size_b) as f64 * at) as u64, len),
                };
                let (path, data, base, size, successor) = if start < size_a {
                    (&a, &data_a, 0, size_a, Some((b.clone(), size_b)))
                } else {
                    (&b, &data_b, size_a, size_b, None)
                };
                let range = start - base..(start - base + len).min(size);
                let got = cache.read_range(path, range.clone(), size, successor).await;
                let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&got, &slice(data, &range), "{} {:?}", path, range);
                position = base + range.end;
            }
            quiesce(&cache).await;
            cache.run_pending_tasks().await;
            let stats = cache.stats();
            prop_assert!(stats.resident_bytes <= chunk_bytes * capacity_chunks, "{stats:?}");
            Ok(())
        })?;
    }
}

/// Reads through `LocalFileSystem`, the embedded default store, return the file's bytes, and a
/// missing file is `NotFound`.
#[tokio::test]
async fn local_filesystem_reads_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local store"));
    let path = Path::from("topics/t-0/0/00000000000000000000-x.log");
    let data = pattern_bytes(3, 100_000);
    put(&*store, &path, &data).await;
    let store_for_index = Arc::clone(&store);
    let cache = ChunkCache::new(store, small(4 * KIB, 8, 2)).expect("config");
    let size = data.len() as u64;
    for range in [
        0..1,
        0..size,
        4095..4097,
        50_000..60_000,
        size - 1..size,
        7..7,
    ] {
        let got = cache
            .read_range(&path, range.clone(), size, None)
            .await
            .expect("read");
        assert_eq!(got, slice(&data, &range), "{range:?}");
    }
    // A sequential pass, twice.
    for _ in 0..2 {
        let mut at = 0;
        while at < size {
            let range = at..(at + 3000).min(size);
            let got = cache.read_range(&path, range.clone(), size, None).await;
            assert_eq!(got.expect("read"), slice(&data, &range));
            at = range.end;
        }
    }
    let missing = Path::from("topics/t-0/0/missing.log");
    let err = cache
        .read_range(&missing, 0..10, 100, None)
        .await
        .expect_err("missing object");
    assert!(matches!(err, CacheError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.log"), "{err}");
    let index = Path::from("topics/t-0/0/00000000000000000000-x.indexes");
    put(&*store_for_index, &index, &data.slice(..2000)).await;
    let all = cache.read_all(&index).await.expect("read_all");
    assert_eq!(all, data.slice(..2000));
}

/// Many concurrent readers of the same chunks issue one GET per chunk between them: each chunk's
/// bytes are fetched exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_share_one_get_per_chunk() {
    let plan = FaultPlan {
        stall_rate: 1.0,
        stall: Duration::from_millis(50),
        kinds: vec![RequestKind::Get],
        ..FaultPlan::default()
    };
    let (store, counting, _faults) = instrumented(Arc::new(InMemory::new()), plan);
    let path = Path::from("o");
    let chunk = 4 * KIB;
    let data = pattern_bytes(4, (16 * chunk) as usize);
    put(&*store, &path, &data).await;
    let cache = ChunkCache::new(store, small(chunk, 64, 0)).expect("config");
    let size = data.len() as u64;

    // 32 readers of one chunk.
    let before = counting.snapshot();
    let readers: Vec<_> = (0..32)
        .map(|i| {
            let (cache, path) = (cache.clone(), path.clone());
            tokio::spawn(async move { cache.read_range(&path, i..i + 100, size, None).await })
        })
        .collect();
    for (i, reader) in readers.into_iter().enumerate() {
        let got = reader.await.expect("join").expect("read");
        assert_eq!(got, slice(&data, &(i as u64..i as u64 + 100)));
    }
    assert_eq!(counting.snapshot().since(&before).get, 1);

    // 64 readers of overlapping multi-chunk ranges over chunks 1..12.
    let before = counting.snapshot();
    let readers: Vec<_> = (0..64u64)
        .map(|i| {
            let (cache, path) = (cache.clone(), path.clone());
            let start = chunk + (i * 613) % (8 * chunk);
            let range = start..start + 3 * chunk;
            tokio::spawn(async move {
                let got = cache.read_range(&path, range.clone(), size, None).await;
                (range, got)
            })
        })
        .collect();
    for reader in readers {
        let (range, got) = reader.await.expect("join");
        assert_eq!(got.expect("read"), slice(&data, &range));
    }
    let counts = counting.snapshot().since(&before);
    // Chunk 0 was cached above; the readers touched chunks 1..12 (11 chunks, 44 KiB).
    assert_eq!(counts.bytes_read, 11 * chunk, "{counts:?}");
    assert!(counts.get <= 11, "{counts:?}");
    let stats = cache.stats();
    assert_eq!(stats.get_requests, 1 + counts.get);
}

/// A cold sequential read costs at most one GET per 4 MiB chunk, and a large read coalesces its
/// missing chunks into GETs of up to `get_chunks_max` chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_per_mib_for_sequential_reads() {
    let (store, counting, _faults) = instrumented(Arc::new(InMemory::new()), FaultPlan::default());
    let size = 64 * MIB;
    let data = pattern_bytes(5, size as usize);
    let (a, b) = (Path::from("seg/a"), Path::from("seg/b"));
    put(&*store, &a, &data).await;
    put(&*store, &b, &data).await;
    let cache = ChunkCache::new(store, CacheConfig::default()).expect("config");

    // 1 MiB reads, as a consumer's fetches would make them.
    let before = counting.snapshot();
    let mut at = 0;
    while at < size {
        let range = at..at + MIB;
        let got = cache.read_range(&a, range.clone(), size, None).await;
        assert_eq!(got.expect("read"), slice(&data, &range));
        at = range.end;
    }
    quiesce(&cache).await;
    let counts = counting.snapshot().since(&before);
    let per_mib = counts.get as f64 / (size / MIB) as f64;
    println!(
        "sequential 1 MiB reads of 64 MiB: {} GETs, {per_mib:.3} GETs/MiB, {} bytes fetched",
        counts.get, counts.bytes_read
    );
    assert!(counts.get <= 16, "{counts:?}");
    assert_eq!(counts.bytes_read, size, "every byte fetched exactly once");
    // Whether the reader found a chunk resident or joined its read-ahead GET in flight depends
    // on timing; that read-ahead issued nearly all the GETs does not.
    let stats = cache.stats();
    assert!(stats.readahead_fetches >= 8, "{stats:?}");

    // One 64 MiB read: 16 chunks in GETs of 4 chunks.
    let before = counting.snapshot();
    let got = cache.read_range(&b, 0..size, size, None).await;
    assert_eq!(got.expect("read"), data);
    let counts = counting.snapshot().since(&before);
    println!(
        "one 64 MiB read: {} GETs, {:.3} GETs/MiB",
        counts.get,
        counts.get as f64 / 64.0
    );
    assert_eq!(counts.get, 4, "{counts:?}");

    // Warm: no requests at all.
    let before = counting.snapshot();
    let got = cache.read_range(&b, 5..size - 5, size, None).await;
    assert_eq!(got.expect("read"), slice(&data, &(5..size - 5)));
    assert_eq!(counting.snapshot().since(&before).total_requests(), 0);
}

/// A sequential reader nearing the end of an object has the start of its successor fetched
/// ahead, so reading on into the successor costs no GET; read-ahead stays within its depth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readahead_continues_into_the_successor() {
    let (store, counting, _faults) = instrumented(Arc::new(InMemory::new()), FaultPlan::default());
    let chunk = KIB;
    let (a, b) = (Path::from("seg/0-a.log"), Path::from("seg/8-b.log"));
    let (data_a, data_b) = (
        pattern_bytes(6, 8 * KIB as usize),
        pattern_bytes(7, 10 * KIB as usize),
    );
    put(&*store, &a, &data_a).await;
    put(&*store, &b, &data_b).await;
    let config = CacheConfig {
        get_chunks_max: 1,
        ..small(chunk, 64, 4)
    };
    let cache = ChunkCache::new(store, config).expect("config");
    let (size_a, size_b) = (data_a.len() as u64, data_b.len() as u64);

    let mut at = 0;
    while at < size_a {
        let range = at..(at + 700).min(size_a);
        let got = cache
            .read_range(&a, range.clone(), size_a, Some((b.clone(), size_b)))
            .await;
        assert_eq!(got.expect("read"), slice(&data_a, &range));
        // Never more than `readahead_chunks` fetched ahead of the reader.
        let ahead = lock(&cache.inner.inflight).len();
        assert!(ahead <= 4, "{ahead} chunks in flight");
        // A reader slower than the store: each read finds the read-ahead it started done.
        quiesce(&cache).await;
        at = range.end;
    }
    quiesce(&cache).await;
    let before = cache.stats();
    // The reader moves on to the successor: its first four chunks are already there.
    let mut at = 0;
    while at < 4 * chunk {
        let range = at..at + 512;
        let got = cache.read_range(&b, range.clone(), size_b, None).await;
        assert_eq!(got.expect("read"), slice(&data_b, &range));
        at = range.end;
    }
    let after = cache.stats();
    assert_eq!(after.misses, before.misses, "reads of b all hit: {after:?}");
    assert!(
        after.readahead_hits >= before.readahead_hits + 4,
        "{after:?}"
    );
    // Everything of a and b up to here was fetched once, each GET one chunk.
    quiesce(&cache).await;
    let counts = counting.snapshot();
    assert!(counts.bytes_read <= size_a + size_b, "{counts:?}");
    assert_eq!(counts.get, counts.bytes_read.div_ceil(chunk), "{counts:?}");
}

/// Read-ahead never delays the read that triggers it, and its errors are dropped: the
/// foreground read that later needs the chunk fetches it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readahead_never_blocks_and_its_errors_are_dropped() {
    let (store, counting, faults) = instrumented(Arc::new(InMemory::new()), FaultPlan::default());
    let chunk = KIB;
    let path = Path::from("o");
    let data = pattern_bytes(8, 16 * KIB as usize);
    put(&*store, &path, &data).await;
    let cache = ChunkCache::new(store, small(chunk, 64, 4)).expect("config");
    let size = data.len() as u64;
    // Warm chunks 0 and 1 (a first read: no read-ahead).
    cache
        .read_range(&path, 0..2 * chunk, size, None)
        .await
        .expect("warm");

    // Read-ahead GETs now stall for 300 ms and then fail.
    faults.set_plan(FaultPlan {
        failure_rate: 1.0,
        stall_rate: 1.0,
        stall: Duration::from_millis(300),
        ..FaultPlan::default()
    });
    let started = Instant::now();
    // Continues the first read: sequential, so read-ahead starts; all its bytes are resident.
    let got = cache
        .read_range(&path, 2 * chunk - 10..2 * chunk, size, None)
        .await;
    assert_eq!(
        got.expect("read"),
        slice(&data, &(2 * chunk - 10..2 * chunk))
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "a resident read waited {:?} for read-ahead",
        started.elapsed()
    );
    quiesce(&cache).await;
    assert!(cache.stats().readahead_fetches >= 1);
    assert!(faults.injected_failures() >= 1);

    // The store recovers; the reader continues and gets its bytes.
    faults.set_plan(FaultPlan::default());
    let got = cache
        .read_range(&path, 2 * chunk..3 * chunk, size, None)
        .await;
    assert_eq!(got.expect("read"), slice(&data, &(2 * chunk..3 * chunk)));
    assert!(counting.snapshot().failed >= 1);
}

/// No more GETs are in flight at once than `max_concurrent_fetches`, however many readers wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_gets_are_bounded() {
    let plan = FaultPlan {
        stall_rate: 1.0,
        stall: Duration::from_millis(20),
        kinds: vec![RequestKind::Get],
        ..FaultPlan::default()
    };
    let (store, counting, _faults) = instrumented(Arc::new(InMemory::new()), plan);
    let chunk = KIB;
    let path = Path::from("o");
    let data = pattern_bytes(9, 64 * KIB as usize);
    put(&*store, &path, &data).await;
    let config = CacheConfig {
        max_concurrent_fetches: 3,
        ..small(chunk, 128, 4)
    };
    let cache = ChunkCache::new(store, config).expect("config");
    let size = data.len() as u64;
    let readers: Vec<_> = (0..40u64)
        .map(|i| {
            let (cache, path) = (cache.clone(), path.clone());
            // Two sequential reads each, so read-ahead joins in.
            tokio::spawn(async move {
                let start = (i * 1531) % (size - 2 * chunk);
                cache
                    .read_range(&path, start..start + 100, size, None)
                    .await?;
                cache
                    .read_range(&path, start + 100..start + 200, size, None)
                    .await
            })
        })
        .collect();
    for reader in readers {
        reader.await.expect("join").expect("read");
    }
    quiesce(&cache).await;
    let counts = counting.snapshot();
    assert!(counts.in_flight_max <= 3, "{counts:?}");
    assert!(counts.get >= 3, "{counts:?}");
}

/// Resident bytes never exceed capacity by more than one chunk, even between moka's batched
/// maintenance runs, while evictions happen.
#[tokio::test]
async fn resident_bytes_stay_within_capacity() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let chunk = KIB;
    let capacity_chunks = 16;
    let objects: Vec<(Path, Bytes)> = (0..5)
        .map(|i| {
            (
                Path::from(format!("o{i}")),
                pattern_bytes(10 + i, 40 * KIB as usize),
            )
        })
        .collect();
    for (path, data) in &objects {
        put(&*store, path, data).await;
    }
    let cache = ChunkCache::new(store, small(chunk, capacity_chunks, 0)).expect("config");
    let bound = chunk * capacity_chunks + chunk;
    for round in 0..3u64 {
        for (i, (path, data)) in objects.iter().enumerate() {
            let size = data.len() as u64;
            for step in 0..40u64 {
                let start = (step * 997 + round * 131 + i as u64 * 17) % (size - 1500);
                let range = start..start + 1500;
                let got = cache.read_range(path, range.clone(), size, None).await;
                assert_eq!(got.expect("read"), slice(data, &range));
                let resident = cache.stats().resident_bytes;
                assert!(resident <= bound, "{resident} > {bound}");
            }
        }
    }
    cache.run_pending_tasks().await;
    let stats = cache.stats();
    assert!(stats.resident_bytes <= chunk * capacity_chunks, "{stats:?}");
    assert!(stats.evictions > 100, "{stats:?}");
}

/// One backfill scanning 5x the capacity does not evict a working set that other readers keep
/// using: the working set's hit ratio after the scan stays above 90 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_scan_does_not_evict_the_hot_set() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let chunk = 4 * KIB;
    let capacity_chunks = 64;
    // Hot set: 8 objects of 4 chunks = 32 chunks, half the capacity (and twice the probation part).
    let hot: Vec<(Path, Bytes)> = (0..8)
        .map(|i| {
            (
                Path::from(format!("hot/{i}")),
                pattern_bytes(20 + i, 4 * chunk as usize),
            )
        })
        .collect();
    // Scan: 10 objects of 32 chunks = 320 chunks, 5x the capacity.
    let scan: Vec<(Path, Bytes)> = (0..10)
        .map(|i| {
            (
                Path::from(format!("scan/{i}")),
                pattern_bytes(40 + i, 32 * chunk as usize),
            )
        })
        .collect();
    for (path, data) in hot.iter().chain(&scan) {
        put(&*store, path, data).await;
    }
    let cache = ChunkCache::new(store, small(chunk, capacity_chunks, 4)).expect("config");

    // Each pass over the hot set is a different reader (a consumer re-reading from the start).
    async fn hot_pass(cache: &ChunkCache, hot: &[(Path, Bytes)]) {
        for (path, data) in hot {
            let size = data.len() as u64;
            for range in [0..size / 2, size / 2..size] {
                let got = cache.read_range(path, range.clone(), size, None).await;
                assert_eq!(got.expect("hot read"), slice(data, &range));
            }
        }
    }
    for _ in 0..3 {
        hot_pass(&cache, &hot).await;
    }

    // The backfill: one reader going through all scan objects in order, the way the remote
    // reader fetches: a 2 KiB window of batch headers, then 3 KiB of batches from the same
    // position; the next fetch starts at a sparse-index position 500 bytes before the end.
    for (i, (path, data)) in scan.iter().enumerate() {
        let size = data.len() as u64;
        let successor = scan.get(i + 1).map(|(p, d)| (p.clone(), d.len() as u64));
        let mut at = 0;
        while at < size {
            for range in [at..(at + 2 * KIB).min(size), at..(at + 3 * KIB).min(size)] {
                let got = cache
                    .read_range(path, range.clone(), size, successor.clone())
                    .await;
                assert_eq!(got.expect("scan read"), slice(data, &range));
            }
            at = if at + 3 * KIB >= size {
                size
            } else {
                at + 3 * KIB - 500
            };
        }
    }
    quiesce(&cache).await;
    cache.run_pending_tasks().await;

    let before = cache.stats();
    hot_pass(&cache, &hot).await;
    let after = cache.stats();
    let hits = after.hits - before.hits;
    let misses = after.misses - before.misses;
    let ratio = hits as f64 / (hits + misses) as f64;
    println!("hot-set hit ratio after a 5x-capacity scan: {ratio:.3} ({hits} hits, {misses} misses); {after:?}");
    assert!(
        ratio >= 0.9,
        "hot-set hit ratio {ratio:.3} after the scan; {after:?}"
    );
    assert!(
        after.evictions >= 250,
        "the scan did cycle the cache: {after:?}"
    );
}

/// A missing object is `NotFound`; an injected store failure is a `Store` error naming the path,
/// shared by every reader waiting on that GET; and a later read succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_propagate_and_are_not_cached() {
    let (store, _counting, faults) = instrumented(Arc::new(InMemory::new()), FaultPlan::default());
    let path = Path::from("topics/t/0/seg.log");
    let data = pattern_bytes(11, 10_000);
    put(&*store, &path, &data).await;
    let cache = ChunkCache::new(store, small(KIB, 16, 2)).expect("config");
    let size = data.len() as u64;

    let missing = Path::from("topics/t/0/gone.log");
    let err = cache
        .read_range(&missing, 0..1, 1, None)
        .await
        .expect_err("missing");
    assert!(
        matches!(err, CacheError::NotFound { ref path } if *path == missing),
        "{err:?}"
    );
    let err = cache.read_all(&missing).await.expect_err("missing");
    assert!(matches!(err, CacheError::NotFound { .. }), "{err:?}");

    // The failing GET is held until all eight readers wait on it: a reader that started after
    // it failed would issue a GET of its own (seen once on a loaded CI machine with a 50 ms stall).
    faults.hold(RequestKind::Get);
    faults.fail_next(RequestKind::Get, 1);
    let misses_before = cache.stats().misses;
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, path) = (cache.clone(), path.clone());
            tokio::spawn(async move { cache.read_range(&path, 100..200, size, None).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cache.stats().misses < misses_before + 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readers never all waited: {:?}",
            cache.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    faults.release(RequestKind::Get);
    for reader in readers {
        let err = reader.await.expect("join").expect_err("injected failure");
        match &err {
            CacheError::Store { path: p, source } => {
                assert_eq!(*p, path);
                assert!(is_injected(source), "{source}");
            }
            other => panic!("expected a Store error, got {other:?}"),
        }
        assert!(err.to_string().contains("topics/t/0/seg.log"), "{err}");
    }
    assert_eq!(
        faults.injected_failures(),
        1,
        "one GET failed, shared by all readers"
    );
    let got = cache.read_range(&path, 100..200, size, None).await;
    assert_eq!(
        got.expect("read after the failure"),
        slice(&data, &(100..200))
    );

    // The caller's size is wrong: a clear error, not a panic or wrong bytes.
    let err = cache
        .read_range(&path, 9_000..11_000, 12_000, None)
        .await
        .expect_err("size mismatch");
    assert!(
        matches!(
            err,
            CacheError::SizeMismatch { .. } | CacheError::Store { .. }
        ),
        "{err:?}"
    );
}

/// `read_all` caches a whole object as one entry, shares one GET, and refuses large objects.
#[tokio::test]
async fn read_all_caches_whole_objects() {
    let (store, counting, _faults) = instrumented(Arc::new(InMemory::new()), FaultPlan::default());
    let index = Path::from("seg.indexes");
    let data = pattern_bytes(12, 1500);
    put(&*store, &index, &data).await;
    let cache = ChunkCache::new(Arc::clone(&store), small(KIB, 16, 0)).expect("config");
    for _ in 0..3 {
        assert_eq!(cache.read_all(&index).await.expect("read_all"), data);
    }
    assert_eq!(counting.snapshot().get, 1);
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.promotions),
        (2, 1, 1),
        "{stats:?}"
    );

    // Limit: half of the 4 KiB probation part (2 KiB).
    let big = Path::from("big");
    put(&*store, &big, &pattern_bytes(13, 5000)).await;
    let err = cache.read_all(&big).await.expect_err("too large");
    assert!(
        matches!(err, CacheError::TooLarge { size: 5000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("read_range"), "{err}");
}

/// `invalidate` drops an object's chunks: the next read fetches again, and sees the deletion.
#[tokio::test]
async fn invalidate_drops_every_chunk() {
    let (store, counting, _faults) = instrumented(Arc::new(InMemory::new()), FaultPlan::default());
    let (a, b) = (Path::from("a"), Path::from("b"));
    let data = pattern_bytes(14, 5000);
    put(&*store, &a, &data).await;
    put(&*store, &b, &data).await;
    let cache = ChunkCache::new(Arc::clone(&store), small(KIB, 64, 0)).expect("config");
    cache
        .read_range(&a, 0..5000, 5000, None)
        .await
        .expect("read");
    cache
        .read_range(&b, 0..5000, 5000, None)
        .await
        .expect("read");
    cache.invalidate(&a);
    let before = counting.snapshot();
    cache
        .read_range(&b, 0..5000, 5000, None)
        .await
        .expect("b stays");
    assert_eq!(counting.snapshot().since(&before).get, 0);
    cache
        .read_range(&a, 0..5000, 5000, None)
        .await
        .expect("refetch");
    assert!(counting.snapshot().since(&before).get >= 1);
    store.delete(&a).await.expect("delete");
    cache.invalidate(&a);
    let err = cache
        .read_range(&a, 0..10, 5000, None)
        .await
        .expect_err("deleted");
    assert!(matches!(err, CacheError::NotFound { .. }), "{err:?}");
    cache.run_pending_tasks().await;
    assert_eq!(cache.stats().resident_bytes, 5000);
}

/// Ranges outside the object and an unimplemented spill directory are refused with sentences.
#[tokio::test]
async fn invalid_input_is_refused() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let config = CacheConfig {
        spill_dir: Some("/var/tmp/shale-spill".into()),
        ..CacheConfig::default()
    };
    let err = ChunkCache::new(Arc::clone(&store), config).expect_err("spill_dir");
    assert!(err.to_string().contains("not implemented"), "{err}");

    let cache = ChunkCache::new(store, small(KIB, 16, 0)).expect("config");
    let path = Path::from("x");
    #[allow(clippy::reversed_empty_ranges)]
    for range in [5..4, 0..11, 11..12] {
        let err = cache
            .read_range(&path, range.clone(), 10, None)
            .await
            .expect_err("invalid range");
        assert!(matches!(err, CacheError::InvalidRange { .. }), "{err:?}");
        assert!(err.to_string().contains("10 bytes long"), "{err}");
    }
    assert_eq!(
        cache
            .read_range(&path, 3..3, 10, None)
            .await
            .expect("empty"),
        Bytes::new()
    );
    assert_eq!(cache.stats().get_requests, 0);
}

/// Outside a tokio runtime the cache still works (the reader drives its own fetch), without
/// read-ahead; it never panics for want of a runtime.
#[test]
fn works_without_a_runtime() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("x");
    let data = pattern_bytes(15, 5000);
    futures::executor::block_on(async {
        store
            .put(&path, PutPayload::from(data.clone()))
            .await
            .expect("put");
        let cache = ChunkCache::new(store, small(KIB, 16, 4)).expect("config");
        for range in [0..1000, 1000..2000, 2000..5000] {
            let got = cache.read_range(&path, range.clone(), 5000, None).await;
            assert_eq!(got.expect("read"), slice(&data, &range));
        }
        assert_eq!(cache.stats().readahead_fetches, 0);
    });
}

/// The cache can be shared across tasks and threads, and its reads spawned.
#[test]
fn cache_and_reads_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let cache = ChunkCache::new(Arc::new(InMemory::new()), CacheConfig::default()).expect("config");
    send_sync(&cache);
    let path = Path::from("x");
    send(&cache.read_range(&path, 0..1, 1, None));
    send(&cache.read_all(&path));
}

/// `CountingStore` and `FaultyStore` compose with the cache in either order (compile check of
/// the public decorator types as `Arc<dyn ObjectStore>`).
#[test]
fn decorators_are_object_stores() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(inner, FaultPlan::default()));
    let counting: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(faulty));
    assert!(counting
        .to_string()
        .starts_with("CountingStore(FaultyStore("));
}
