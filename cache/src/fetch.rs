//! Single-flight fetches: the in-flight table, and the task that issues one ranged GET for a run
//! of consecutive chunks (or one GET for a whole object) and puts the result in probation.
//!
//! moka's `try_get_with` is single-flight per key, but one GET here fills several keys (a run of
//! chunks), so the table maps every chunk key of a run to the run's one shared future. Readers
//! that find their chunk in the table wait on that future instead of issuing a GET. Fetches run as
//! their own tasks, so a reader that gives up (a cancelled request) does not waste a GET others
//! wait for, and the table entries are removed when the fetch ends however it ends.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::chunk::{Chunk, ChunkKey, Geometry};
use crate::chunk_cache::Inner;
use crate::error::FetchFailure;
use crate::stats::Counters;
use crate::tiers::lock;

/// The chunks a fetch produced, in key order.
pub(crate) type FetchOutput = Result<Arc<Vec<Arc<Chunk>>>, FetchFailure>;
pub(crate) type SharedFetch = Shared<BoxFuture<'static, FetchOutput>>;

/// A reader's place in an in-flight fetch: the fetch and which of its chunks is the reader's.
#[derive(Clone)]
pub(crate) struct Pending {
    pub fetch_id: u64,
    pub fetch: SharedFetch,
    pub position: usize,
}

pub(crate) type InflightMap = HashMap<ChunkKey, Pending>;

/// What one GET fetches.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// Chunks `chunks` of an object, with one ranged GET.
    Chunks {
        geometry: Geometry,
        chunks: Range<u64>,
    },
    /// A whole object, refused if larger than `limit`.
    Whole { limit: u64 },
}

impl Job {
    pub fn keys(&self, path: &Path) -> Vec<ChunkKey> {
        match self {
            Job::Chunks { chunks, .. } => chunks
                .clone()
                .map(|index| ChunkKey::chunk(path, index))
                .collect(),
            Job::Whole { .. } => vec![ChunkKey::whole(path)],
        }
    }
}

/// Read-ahead's count of outstanding chunks for its stream, released when the fetch ends.
pub(crate) struct OutstandingTicket {
    outstanding: Arc<AtomicUsize>,
    chunks: usize,
}

impl OutstandingTicket {
    pub fn take(outstanding: &Arc<AtomicUsize>, chunks: usize) -> Self {
        outstanding.fetch_add(chunks, Ordering::Relaxed);
        OutstandingTicket {
            outstanding: Arc::clone(outstanding),
            chunks,
        }
    }
}

impl Drop for OutstandingTicket {
    fn drop(&mut self) {
        self.outstanding.fetch_sub(self.chunks, Ordering::Relaxed);
    }
}

/// Who started a fetch: a waiting reader, or read-ahead (which holds its GET slot already).
pub(crate) enum Origin {
    Foreground,
    Readahead {
        permit: OwnedSemaphorePermit,
        ticket: OutstandingTicket,
    },
}

impl Inner {
    /// Starts fetching `job` of `path` and enters its keys (none of which may be in the table) in
    /// `inflight`, which the caller holds locked. Returns the fetch's id and shared future.
    pub(crate) fn launch(
        self: &Arc<Self>,
        inflight: &mut InflightMap,
        path: &Path,
        job: Job,
        origin: Origin,
    ) -> (u64, SharedFetch) {
        let fetch_id = self.next_fetch_id();
        let keys = job.keys(path);
        let by_readahead = matches!(origin, Origin::Readahead { .. });
        let guard = InflightGuard {
            inner: Arc::downgrade(self),
            keys: keys.clone(),
            fetch_id,
        };
        let task = FetchTask {
            inner: Arc::downgrade(self),
            store: Arc::clone(&self.store),
            permits: Arc::clone(&self.fetch_permits),
            counters: Arc::clone(&self.counters),
            path: path.clone(),
            job,
            keys: keys.clone(),
        };
        let fetch = task.run(origin, guard).boxed().shared();
        for (position, key) in keys.into_iter().enumerate() {
            let pending = Pending {
                fetch_id,
                fetch: fetch.clone(),
                position,
            };
            inflight.insert(key, pending);
        }
        // Drive the fetch on its own task. Without a runtime (never the case in the broker) the
        // readers waiting on the shared future drive it instead; read-ahead is not started then.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let driver = fetch.clone();
            let path = path.clone();
            runtime.spawn(async move {
                if let Err(failure) = driver.await {
                    if by_readahead {
                        // The reader that needs these bytes will fetch them again and see the
                        // error itself; read-ahead only reports it.
                        let error = failure.into_error(&path);
                        tracing::debug!(%path, %error, "read-ahead fetch failed");
                    }
                }
            });
        }
        (fetch_id, fetch)
    }
}

/// Removes a fetch's keys from the in-flight table when the fetch ends (after its chunks are in
/// the cache, so a reader always finds one or the other), or when it is dropped unfinished.
struct InflightGuard {
    inner: Weak<Inner>,
    keys: Vec<ChunkKey>,
    fetch_id: u64,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut inflight = lock(&inner.inflight);
        for key in &self.keys {
            if inflight
                .get(key)
                .is_some_and(|pending| pending.fetch_id == self.fetch_id)
            {
                inflight.remove(key);
            }
        }
    }
}

struct FetchTask {
    /// Weak, so an in-flight fetch never keeps a dropped cache alive.
    inner: Weak<Inner>,
    store: Arc<dyn ObjectStore>,
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    path: Path,
    job: Job,
    keys: Vec<ChunkKey>,
}

impl FetchTask {
    async fn run(self, origin: Origin, guard: InflightGuard) -> FetchOutput {
        let (permit, ticket, by_readahead) = match origin {
            Origin::Foreground => match Arc::clone(&self.permits).acquire_owned().await {
                Ok(permit) => (permit, None, false),
                Err(_closed) => return Err(FetchFailure::Cancelled),
            },
            Origin::Readahead { permit, ticket } => (permit, Some(ticket), true),
        };
        let result = self.fetch_and_insert(permit, by_readahead).await;
        // In this order: the chunks are in the cache before the in-flight entries go, so a
        // reader always finds one or the other; and the entries are gone before the stream's
        // read-ahead budget is released, so its in-flight chunks never exceed the budget.
        drop(guard);
        drop(ticket);
        result
    }

    async fn fetch_and_insert(
        &self,
        permit: OwnedSemaphorePermit,
        by_readahead: bool,
    ) -> FetchOutput {
        Counters::add(&self.counters.get_requests, 1);
        if by_readahead {
            Counters::add(&self.counters.readahead_fetches, 1);
        }
        let data = self.get().await?;
        drop(permit);
        Counters::add(&self.counters.bytes_fetched, data.len() as u64);
        let chunks: Vec<Arc<Chunk>> = self
            .split(data)
            .into_iter()
            .map(|bytes| Arc::new(Chunk::new(bytes, by_readahead)))
            .collect();
        if let Some(inner) = self.inner.upgrade() {
            for (key, chunk) in self.keys.iter().zip(&chunks) {
                inner
                    .tiers
                    .insert_probation(key.clone(), Arc::clone(chunk))
                    .await;
            }
        }
        Ok(Arc::new(chunks))
    }

    async fn get(&self) -> Result<Bytes, FetchFailure> {
        match &self.job {
            Job::Chunks { geometry, chunks } => {
                let range = geometry.byte_range(chunks);
                let options = GetOptions::new().with_range(Some(range.clone()));
                let data = self
                    .store
                    .get_opts(&self.path, options)
                    .await?
                    .bytes()
                    .await?;
                let expected = range.end - range.start;
                if data.len() as u64 != expected {
                    return Err(FetchFailure::SizeMismatch {
                        range,
                        received: data.len() as u64,
                        object_size: geometry.object_size,
                    });
                }
                tracing::trace!(path = %self.path, start = range.start, end = range.end, "fetched chunks");
                Ok(data)
            }
            Job::Whole { limit } => {
                let result = self.store.get_opts(&self.path, GetOptions::new()).await?;
                if result.meta.size > *limit {
                    return Err(FetchFailure::TooLarge {
                        size: result.meta.size,
                        limit: *limit,
                    });
                }
                Ok(result.bytes().await?)
            }
        }
    }

    /// One buffer per chunk. Chunks of a multi-chunk GET are copied out, so that evicting some of
    /// them really frees their memory instead of pinning the shared buffer.
    fn split(&self, data: Bytes) -> Vec<Bytes> {
        match &self.job {
            Job::Chunks { geometry, chunks } if chunks.end - chunks.start > 1 => {
                let base = geometry.byte_range(chunks).start;
                chunks
                    .clone()
                    .map(|index| {
                        let range = geometry.byte_range(&(index..index + 1));
                        let from = (range.start - base) as usize;
                        let to = (range.end - base) as usize;
                        Bytes::copy_from_slice(&data[from..to])
                    })
                    .collect()
            }
            _ => vec![data],
        }
    }
}
