//! [`ChunkCache`]: reads of byte ranges assembled from cached chunks, with single-flight fetching,
//! coalesced GETs, sequential read-ahead across objects, and the probation/protected admission
//! policy.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use object_store::path::Path;
use object_store::ObjectStore;
use tokio::sync::Semaphore;

use crate::chunk::{Chunk, ChunkKey, Geometry, NO_READER};
use crate::config::{CacheConfig, Limits};
use crate::error::CacheError;
use crate::fetch::{InflightMap, Job, Origin, OutstandingTicket, Pending};
use crate::stats::{CacheStats, Counters};
use crate::stream::{StreamState, StreamTable};
use crate::tiers::{lock, Tiers};

/// A byte-range cache in front of an [`ObjectStore`], for immutable objects.
///
/// - Objects are cached in fixed-size chunks (`chunk_bytes`), fetched with chunk-aligned ranged
///   GETs; a read that misses several consecutive chunks fetches them with one GET (up to
///   `get_chunks_max` chunks).
/// - Fetches are single-flight: concurrent readers of a missing chunk share one GET.
/// - A read that continues a previous read of the object (it starts inside that read, at its
///   end, or up to one chunk before it) is sequential and starts read-ahead of the next
///   `readahead_chunks` chunks, continuing into the `successor` object. Read-ahead runs in the
///   background, keeps at most `readahead_chunks` chunks in flight per reader, takes a GET slot
///   only while more than a quarter of them are free, and its errors are logged and dropped.
/// - Capacity (`capacity_bytes`) is split into probation and protected parts. Chunks enter
///   probation; a chunk a second reader uses moves to protected. One long scan therefore only
///   cycles probation, and the working set of repeated readers survives it.
///
/// Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct ChunkCache {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Arc<dyn ObjectStore>,
    pub limits: Limits,
    pub tiers: Tiers,
    pub inflight: Mutex<InflightMap>,
    pub fetch_permits: Arc<Semaphore>,
    pub counters: Arc<Counters>,
    streams: Mutex<StreamTable>,
    next_reader: AtomicU64,
    next_fetch: AtomicU64,
}

impl Inner {
    pub fn next_fetch_id(&self) -> u64 {
        self.next_fetch.fetch_add(1, Ordering::Relaxed)
    }

    fn next_reader_id(&self) -> u64 {
        // Starts at 1: 0 is NO_READER.
        self.next_reader.fetch_add(1, Ordering::Relaxed)
    }
}

/// How the entries a read needs are fetched when missing.
#[derive(Clone, Copy)]
enum Want {
    /// Chunks of an object starting at chunk `first`; slot `i` is chunk `first + i`.
    Chunks { geometry: Geometry, first: u64 },
    /// The whole object (one slot).
    Whole { limit: u64 },
}

impl Want {
    fn key(&self, path: &Path, slot: usize) -> ChunkKey {
        match self {
            Want::Chunks { first, .. } => ChunkKey::chunk(path, first + slot as u64),
            Want::Whole { .. } => ChunkKey::whole(path),
        }
    }
}

/// How many times a read looks for entries that were resident when it checked but gone when it
/// came to take them, before it fetches them unconditionally.
const RESOLVE_ROUNDS: usize = 3;

impl ChunkCache {
    /// A cache in front of `store`. Fails if `config` is invalid, including when `spill_dir` is
    /// set: spilling is not implemented yet.
    pub fn new(store: Arc<dyn ObjectStore>, config: CacheConfig) -> Result<Self, CacheError> {
        let limits = config.limits()?;
        let counters = Arc::new(Counters::default());
        let inner = Inner {
            store,
            limits,
            tiers: Tiers::new(&limits, Arc::clone(&counters)),
            inflight: Mutex::new(HashMap::new()),
            fetch_permits: Arc::new(Semaphore::new(limits.max_concurrent_fetches)),
            counters,
            streams: Mutex::new(StreamTable::default()),
            next_reader: AtomicU64::new(NO_READER + 1),
            next_fetch: AtomicU64::new(1),
        };
        Ok(ChunkCache {
            inner: Arc::new(inner),
        })
    }

    /// Bytes `range` of `path`, an immutable object of `object_size` bytes, assembled from chunks.
    ///
    /// Missing chunks are fetched with ranged GETs, single-flight per chunk, consecutive missing
    /// chunks coalesced into one GET. When the read continues a previous read of this object (see
    /// the type's docs), read-ahead fetches the next `readahead_chunks` chunks in the background,
    /// continuing into `successor` (the next object a sequential reader will read, with its size)
    /// when this one runs out. An empty range returns empty bytes without I/O.
    pub async fn read_range(
        &self,
        path: &Path,
        range: Range<u64>,
        object_size: u64,
        successor: Option<(Path, u64)>,
    ) -> Result<Bytes, CacheError> {
        if range.start > range.end || range.end > object_size {
            return Err(CacheError::InvalidRange {
                path: path.clone(),
                range,
                object_size,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let geometry = Geometry {
            chunk_bytes: self.inner.limits.chunk_bytes,
            object_size,
        };
        let indexes = geometry.chunks_of(&range);
        let want = Want::Chunks {
            geometry,
            first: indexes.start,
        };
        let slots = (indexes.end - indexes.start) as usize;
        let mut found = self.lookup(path, want, slots).await;
        let resident: Vec<bool> = found.iter().map(Option::is_some).collect();
        let waits = self.join_or_launch(path, want, &found, false);
        // After this read's own fetches are registered, so read-ahead does not split them.
        let reader = self.advance_stream(path, &range, geometry, successor.as_ref());
        self.resolve(path, want, &mut found, waits).await?;

        let mut chunks = Vec::with_capacity(slots);
        for (slot, chunk) in found.into_iter().enumerate() {
            let Some(chunk) = chunk else {
                return Err(CacheError::Cancelled { path: path.clone() });
            };
            let key = want.key(path, slot);
            self.note_read(key, &chunk, reader, resident[slot]).await;
            chunks.push(chunk);
        }
        assemble(path, geometry, &range, indexes.start, &chunks)
    }

    /// The whole of a small object (e.g. an index file), fetched with one GET and cached as one
    /// entry. Objects larger than half the probation part of the capacity (64 MiB by default) are
    /// refused with [`CacheError::TooLarge`]; read those with [`read_range`](Self::read_range).
    pub async fn read_all(&self, path: &Path) -> Result<Bytes, CacheError> {
        let want = Want::Whole {
            limit: self.inner.limits.whole_object_bytes_max,
        };
        let mut found = self.lookup(path, want, 1).await;
        let resident = found[0].is_some();
        let waits = self.join_or_launch(path, want, &found, false);
        self.resolve(path, want, &mut found, waits).await?;
        let Some(chunk) = found.pop().flatten() else {
            return Err(CacheError::Cancelled { path: path.clone() });
        };
        // Every read_all is its own reader: a second one is reuse.
        let reader = self.inner.next_reader_id();
        self.note_read(ChunkKey::whole(path), &chunk, reader, resident)
            .await;
        Ok(chunk.data.clone())
    }

    /// Drops every cached chunk of `path` (the object was deleted) and forgets its readers.
    pub fn invalidate(&self, path: &Path) {
        self.inner.tiers.invalidate(path);
        lock(&self.inner.streams).forget(path);
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Applies moka's pending evictions and invalidations now (they otherwise run in batches).
    /// Useful before reading `stats().resident_bytes` in tests.
    pub async fn run_pending_tasks(&self) {
        self.inner.tiers.run_pending_tasks().await;
    }

    /// The chunk size reads are aligned to.
    pub fn chunk_bytes(&self) -> u64 {
        self.inner.limits.chunk_bytes
    }

    async fn lookup(&self, path: &Path, want: Want, slots: usize) -> Vec<Option<Arc<Chunk>>> {
        let mut found = Vec::with_capacity(slots);
        for slot in 0..slots {
            found.push(self.inner.tiers.get(&want.key(path, slot)).await);
        }
        let hits = found.iter().filter(|c| c.is_some()).count() as u64;
        Counters::add(&self.inner.counters.hits, hits);
        Counters::add(&self.inner.counters.misses, slots as u64 - hits);
        found
    }

    /// For every missing slot: joins the fetch in flight for it, or starts one (consecutive
    /// missing chunks share a GET). Slots that turned resident since the lookup are skipped unless
    /// `force`; the caller looks them up again.
    fn join_or_launch(
        &self,
        path: &Path,
        want: Want,
        found: &[Option<Arc<Chunk>>],
        force: bool,
    ) -> Vec<(usize, Pending)> {
        let mut waits = Vec::new();
        let mut run: Option<Range<usize>> = None;
        let mut inflight = lock(&self.inner.inflight);
        for (slot, chunk) in found.iter().enumerate() {
            if chunk.is_some() {
                self.launch_run(&mut inflight, path, want, run.take(), &mut waits);
                continue;
            }
            let key = want.key(path, slot);
            if let Some(pending) = inflight.get(&key) {
                waits.push((slot, pending.clone()));
                self.launch_run(&mut inflight, path, want, run.take(), &mut waits);
                continue;
            }
            if !force && self.inner.tiers.contains(&key) {
                self.launch_run(&mut inflight, path, want, run.take(), &mut waits);
                continue;
            }
            run = match run.take() {
                Some(r) if (r.len() as u64) < self.inner.limits.get_chunks_max => {
                    Some(r.start..slot + 1)
                }
                full => {
                    self.launch_run(&mut inflight, path, want, full, &mut waits);
                    Some(slot..slot + 1)
                }
            };
        }
        self.launch_run(&mut inflight, path, want, run, &mut waits);
        waits
    }

    fn launch_run(
        &self,
        inflight: &mut InflightMap,
        path: &Path,
        want: Want,
        run: Option<Range<usize>>,
        waits: &mut Vec<(usize, Pending)>,
    ) {
        let Some(run) = run else {
            return;
        };
        let job = match want {
            Want::Chunks { geometry, first } => Job::Chunks {
                geometry,
                chunks: first + run.start as u64..first + run.end as u64,
            },
            Want::Whole { limit } => Job::Whole { limit },
        };
        let (fetch_id, fetch) = self.inner.launch(inflight, path, job, Origin::Foreground);
        for (position, slot) in run.enumerate() {
            let pending = Pending {
                fetch_id,
                fetch: fetch.clone(),
                position,
            };
            waits.push((slot, pending));
        }
    }

    /// Waits for the fetches in `waits` and fills `found`; then looks again for anything still
    /// missing (entries that were resident at the check but evicted before they were taken).
    async fn resolve(
        &self,
        path: &Path,
        want: Want,
        found: &mut [Option<Arc<Chunk>>],
        mut waits: Vec<(usize, Pending)>,
    ) -> Result<(), CacheError> {
        for round in 1..=RESOLVE_ROUNDS {
            let mut fetches: HashMap<u64, Pending> = HashMap::new();
            for (_, pending) in &waits {
                fetches
                    .entry(pending.fetch_id)
                    .or_insert_with(|| pending.clone());
            }
            let ids: Vec<u64> = fetches.keys().copied().collect();
            let results = join_all(ids.iter().map(|id| fetches[id].fetch.clone())).await;
            let outputs: HashMap<u64, _> = ids.into_iter().zip(results).collect();
            for (slot, pending) in &waits {
                match &outputs[&pending.fetch_id] {
                    Ok(chunks) => found[*slot] = chunks.get(pending.position).cloned(),
                    Err(failure) => return Err(failure.clone().into_error(path)),
                }
            }
            for (slot, chunk) in found.iter_mut().enumerate() {
                if chunk.is_none() {
                    *chunk = self.inner.tiers.get(&want.key(path, slot)).await;
                }
            }
            if found.iter().all(Option::is_some) {
                return Ok(());
            }
            waits = self.join_or_launch(path, want, found, round + 1 == RESOLVE_ROUNDS);
        }
        Ok(())
    }

    /// Records that `reader` read `chunk`; promotes it to protected if another reader read it
    /// before (while resident, or before its recent eviction from probation).
    async fn note_read(&self, key: ChunkKey, chunk: &Arc<Chunk>, reader: u64, resident: bool) {
        let previous = chunk.last_reader.swap(reader, Ordering::Relaxed);
        let reused = if previous == NO_READER {
            if chunk.by_readahead && resident {
                Counters::add(&self.inner.counters.readahead_hits, 1);
            }
            self.inner
                .tiers
                .take_ghost(&key)
                .is_some_and(|ghost| ghost != reader)
        } else {
            previous != reader
        };
        if reused && !chunk.promoted.swap(true, Ordering::Relaxed) {
            self.inner.tiers.promote(key, Arc::clone(chunk)).await;
        }
    }

    /// Finds or starts the reader stream of this read, starts read-ahead if the read is
    /// sequential, and returns the stream's reader id.
    fn advance_stream(
        &self,
        path: &Path,
        range: &Range<u64>,
        geometry: Geometry,
        successor: Option<&(Path, u64)>,
    ) -> u64 {
        let chunk_bytes = self.inner.limits.chunk_bytes;
        let mut streams = lock(&self.inner.streams);
        let continued = streams.take_continuation(path, range.start, chunk_bytes);
        let sequential = continued.is_some();
        let mut state = continued.unwrap_or_else(|| StreamState::new(self.inner.next_reader_id()));
        state.start = range.start;
        state.end = range.end;
        if sequential
            && self.inner.limits.readahead_chunks > 0
            && tokio::runtime::Handle::try_current().is_ok()
        {
            self.readahead(path, geometry, successor, &mut state);
        }
        if let Some((next, _)) = successor.filter(|_| range.end == geometry.object_size) {
            let mut at_next = state.clone();
            at_next.start = 0;
            at_next.end = 0;
            at_next.frontier = state.frontier.saturating_sub(geometry.chunk_count());
            streams.record(next, at_next);
        }
        let reader = state.id;
        streams.record(path, state);
        reader
    }

    /// Requests the chunks of the read-ahead window of `state` that are neither resident nor in
    /// flight, within the stream's outstanding budget and the free GET slots. The window is the
    /// `readahead_chunks` chunks after the last one this read touched, running on into the
    /// successor.
    fn readahead(
        &self,
        path: &Path,
        geometry: Geometry,
        successor: Option<&(Path, u64)>,
        state: &mut StreamState,
    ) {
        let limits = &self.inner.limits;
        let here = geometry.chunk_count();
        let next = successor.map(|(next_path, size)| {
            let g = Geometry {
                chunk_bytes: limits.chunk_bytes,
                object_size: *size,
            };
            (next_path, g)
        });
        let total = here + next.as_ref().map_or(0, |(_, g)| g.chunk_count());
        let window_start = geometry.first_chunk_after(state.end);
        let window_end = window_start
            .saturating_add(limits.readahead_chunks as u64)
            .min(total);
        let mut position = state.frontier.max(window_start);
        let mut budget = limits
            .readahead_chunks
            .saturating_sub(state.outstanding.load(Ordering::Relaxed))
            as u64;
        // Maps a window position to (object, geometry, chunk index).
        let locate = |position: u64| -> Option<(&Path, Geometry, u64)> {
            if position < here {
                Some((path, geometry, position))
            } else {
                next.as_ref()
                    .map(|(next_path, g)| (*next_path, *g, position - here))
            }
        };
        let mut inflight = lock(&self.inner.inflight);
        let missing = |inflight: &InflightMap, key: &ChunkKey| {
            !inflight.contains_key(key) && !self.inner.tiers.contains(key)
        };
        while position < window_end && budget > 0 {
            let Some((object, g, index)) = locate(position) else {
                break;
            };
            if !missing(&inflight, &ChunkKey::chunk(object, index)) {
                position += 1;
                continue;
            }
            // Extend the run over consecutive missing chunks of the same object.
            let mut len = 1;
            while len < limits.get_chunks_max
                && len < budget
                && position + len < window_end
                && index + len < g.chunk_count()
                && missing(&inflight, &ChunkKey::chunk(object, index + len))
            {
                len += 1;
            }
            if self.inner.fetch_permits.available_permits() <= limits.readahead_reserve {
                break;
            }
            let Ok(permit) = Arc::clone(&self.inner.fetch_permits).try_acquire_owned() else {
                break;
            };
            let origin = Origin::Readahead {
                permit,
                ticket: OutstandingTicket::take(&state.outstanding, len as usize),
            };
            let job = Job::Chunks {
                geometry: g,
                chunks: index..index + len,
            };
            // Driven by its own task; readers that want these chunks find it in `inflight`.
            let _fetch = self.inner.launch(&mut inflight, object, job, origin);
            position += len;
            budget -= len;
        }
        state.frontier = position;
    }
}

/// Copies (or, for one chunk, slices) `range` out of `chunks`, which start at chunk `first`.
fn assemble(
    path: &Path,
    geometry: Geometry,
    range: &Range<u64>,
    first: u64,
    chunks: &[Arc<Chunk>],
) -> Result<Bytes, CacheError> {
    let mut parts = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let chunk_range = geometry.byte_range(&(first + i as u64..first + i as u64 + 1));
        let from = range.start.max(chunk_range.start) - chunk_range.start;
        let to = range.end.min(chunk_range.end) - chunk_range.start;
        // A chunk cached under a different `object_size` claim may be shorter than this read
        // expects; report it rather than slice out of bounds.
        if to > chunk.data.len() as u64 {
            return Err(CacheError::SizeMismatch {
                path: path.clone(),
                range: chunk_range.start..chunk_range.start + to,
                received: chunk.data.len() as u64,
                object_size: geometry.object_size,
            });
        }
        parts.push(chunk.data.slice(from as usize..to as usize));
    }
    if parts.len() == 1 {
        return Ok(parts.swap_remove(0));
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for part in parts {
        out.extend_from_slice(&part);
    }
    Ok(out.freeze())
}

#[cfg(test)]
#[path = "chunk_cache_tests.rs"]
mod tests;

impl fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkCache")
            .field("store", &self.inner.store.to_string())
            .field("limits", &self.inner.limits)
            .field("stats", &self.stats())
            .finish()
    }
}
