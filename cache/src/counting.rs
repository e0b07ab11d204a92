//! [`CountingStore`]: an [`ObjectStore`] decorator that counts requests by kind and the bytes they
//! move. Always compiled: the tiering crate counts per topic with it (a [`CounterBuckets`] that
//! picks one set of [`RequestCounters`] per topic from each object's path), and tests use it to
//! count the GETs a read costs.
//!
//! Counts follow what an S3-style store bills and what a request log would show:
//! - GET: `get_opts` without `head`; each range `get_ranges` fetches after coalescing.
//! - HEAD: `get_opts` with `head` set.
//! - PUT: `put_opts`; for multipart uploads the create call, every part and the completion.
//! - LIST: `list_with_delimiter`; `list`/`list_with_offset` count one request per started page of
//!   1000 objects, as S3 returns them.
//! - DELETE: every location passed to `delete_stream`; aborting a multipart upload; the source
//!   removal of a rename.
//! - COPY: `copy_opts`, and the copy half of a rename.
//!
//! Bytes read are the lengths of the byte ranges GET responses carry; bytes written are payload
//! lengths of successful PUTs and parts.
//!
//! Which counters a request lands in is up to the store's [`CounterBuckets`]: by default one set
//! for everything; a request is bucketed by the object it names (COPY and rename: the
//! destination; a rename's DELETE: the source), a LIST by its prefix.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};

/// Kinds of object-store requests, a small fixed set (fit for a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Get,
    Head,
    Put,
    List,
    Delete,
    Copy,
}

impl RequestKind {
    pub const ALL: [RequestKind; 6] = [
        RequestKind::Get,
        RequestKind::Head,
        RequestKind::Put,
        RequestKind::List,
        RequestKind::Delete,
        RequestKind::Copy,
    ];

    /// Upper-case name, as in an HTTP log: `GET`, `HEAD`, `PUT`, `LIST`, `DELETE`, `COPY`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Get => "GET",
            RequestKind::Head => "HEAD",
            RequestKind::Put => "PUT",
            RequestKind::List => "LIST",
            RequestKind::Delete => "DELETE",
            RequestKind::Copy => "COPY",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a [`CountingStore`] counts each request. `Arc<RequestCounters>` is the one-set-for-all
/// bucketing; other crates map paths to their own sets (tiering: one per topic). Counting stays
/// in this module: a bucketing only chooses the counters.
pub trait CounterBuckets: Clone + fmt::Debug + Send + Sync + 'static {
    /// The counters for a request naming `location`: an object, or a LIST's prefix. `None`: a
    /// LIST of the whole store, or a failed DELETE (its error need not name the object).
    fn counters_for(&self, location: Option<&Path>) -> Arc<RequestCounters>;
}

impl CounterBuckets for Arc<RequestCounters> {
    fn counters_for(&self, _location: Option<&Path>) -> Arc<RequestCounters> {
        Arc::clone(self)
    }
}

/// Live counters of a [`CountingStore`]; share one set between several stores to add them up.
#[derive(Debug, Default)]
pub struct RequestCounters {
    requests: [AtomicU64; 6],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    failed: AtomicU64,
    in_flight: AtomicU64,
    in_flight_max: AtomicU64,
}

impl RequestCounters {
    pub fn new() -> Arc<Self> {
        Arc::new(RequestCounters::default())
    }

    pub fn snapshot(&self) -> RequestCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let requests = |kind: RequestKind| get(&self.requests[kind.index()]);
        RequestCounts {
            get: requests(RequestKind::Get),
            head: requests(RequestKind::Head),
            put: requests(RequestKind::Put),
            list: requests(RequestKind::List),
            delete: requests(RequestKind::Delete),
            copy: requests(RequestKind::Copy),
            bytes_read: get(&self.bytes_read),
            bytes_written: get(&self.bytes_written),
            failed: get(&self.failed),
            in_flight_max: get(&self.in_flight_max),
        }
    }

    fn record(&self, kind: RequestKind) {
        self.requests[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    fn written(&self, bytes: u64) {
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of [`RequestCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub list: u64,
    pub delete: u64,
    pub copy: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests that returned an error.
    pub failed: u64,
    /// Most requests in flight at once (counted from call to response, not to the end of a body).
    pub in_flight_max: u64,
}

impl RequestCounts {
    pub fn requests(&self, kind: RequestKind) -> u64 {
        match kind {
            RequestKind::Get => self.get,
            RequestKind::Head => self.head,
            RequestKind::Put => self.put,
            RequestKind::List => self.list,
            RequestKind::Delete => self.delete,
            RequestKind::Copy => self.copy,
        }
    }

    pub fn total_requests(&self) -> u64 {
        RequestKind::ALL.iter().map(|&k| self.requests(k)).sum()
    }

    /// What happened between `earlier` and `self` (`in_flight_max` is kept as is: it is a peak).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get.saturating_sub(earlier.get),
            head: self.head.saturating_sub(earlier.head),
            put: self.put.saturating_sub(earlier.put),
            list: self.list.saturating_sub(earlier.list),
            delete: self.delete.saturating_sub(earlier.delete),
            copy: self.copy.saturating_sub(earlier.copy),
            bytes_read: self.bytes_read.saturating_sub(earlier.bytes_read),
            bytes_written: self.bytes_written.saturating_sub(earlier.bytes_written),
            failed: self.failed.saturating_sub(earlier.failed),
            in_flight_max: self.in_flight_max,
        }
    }
}

/// Counts one request as in flight while alive.
struct InFlight(Arc<RequestCounters>);

impl InFlight {
    fn start(counters: &Arc<RequestCounters>) -> Self {
        let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counters.in_flight_max.fetch_max(now, Ordering::Relaxed);
        InFlight(Arc::clone(counters))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Awaits one request of `kind`, counting it, its time in flight and its failure.
async fn observe<T>(
    counters: &Arc<RequestCounters>,
    kind: RequestKind,
    request: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    counters.record(kind);
    let _in_flight = InFlight::start(counters);
    let result = request.await;
    if result.is_err() {
        counters.failed();
    }
    result
}

/// An [`ObjectStore`] that counts the requests passing through it, in the counters its
/// [`CounterBuckets`] picks; see the [module docs](self) for what counts as what.
#[derive(Debug, Clone)]
pub struct CountingStore<B = Arc<RequestCounters>> {
    inner: Arc<dyn ObjectStore>,
    buckets: B,
}

impl CountingStore {
    /// Counts requests to `inner` in a fresh set of counters.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self::with_counters(inner, RequestCounters::new())
    }

    /// Counts requests to `inner` in `counters` (share one set between stores to add them up).
    pub fn with_counters(inner: Arc<dyn ObjectStore>, counters: Arc<RequestCounters>) -> Self {
        Self::with_buckets(inner, counters)
    }

    pub fn counters(&self) -> &Arc<RequestCounters> {
        &self.buckets
    }

    pub fn snapshot(&self) -> RequestCounts {
        self.buckets.snapshot()
    }
}

impl<B: CounterBuckets> CountingStore<B> {
    /// Counts requests to `inner` in the counters `buckets` picks for each request's path.
    pub fn with_buckets(inner: Arc<dyn ObjectStore>, buckets: B) -> Self {
        CountingStore { inner, buckets }
    }

    pub fn buckets(&self) -> &B {
        &self.buckets
    }

    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn counters_for(&self, location: &Path) -> Arc<RequestCounters> {
        self.buckets.counters_for(Some(location))
    }
}

impl<B> fmt::Display for CountingStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

#[async_trait]
impl<B: CounterBuckets> ObjectStore for CountingStore<B> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let len = payload.content_length() as u64;
        let counters = self.counters_for(location);
        let result = observe(
            &counters,
            RequestKind::Put,
            self.inner.put_opts(location, payload, opts),
        )
        .await;
        if result.is_ok() {
            counters.written(len);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let counters = self.counters_for(location);
        let upload = observe(
            &counters,
            RequestKind::Put,
            self.inner.put_multipart_opts(location, opts),
        )
        .await?;
        Ok(Box::new(CountingUpload {
            inner: upload,
            counters,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let kind = if options.head {
            RequestKind::Head
        } else {
            RequestKind::Get
        };
        let counters = self.counters_for(location);
        let result = observe(&counters, kind, self.inner.get_opts(location, options)).await?;
        if kind == RequestKind::Get {
            counters.read(result.range.end.saturating_sub(result.range.start));
        }
        Ok(result)
    }

    /// Not delegated: `inner` would issue its requests unseen. Coalesces as object_store's
    /// default does, then fetches each range through `self`, so each is counted.
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        object_store::coalesce_ranges(
            ranges,
            |range| self.get_range(location, range),
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let buckets = self.buckets.clone();
        let counted = locations
            .inspect(move |location| {
                if let Ok(location) = location {
                    buckets
                        .counters_for(Some(location))
                        .record(RequestKind::Delete);
                }
            })
            .boxed();
        let buckets = self.buckets.clone();
        self.inner
            .delete_stream(counted)
            .inspect(move |result| {
                if result.is_err() {
                    buckets.counters_for(None).failed();
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        count_pages(&self.buckets.counters_for(prefix), self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        count_pages(
            &self.buckets.counters_for(prefix),
            self.inner.list_with_offset(prefix, offset),
        )
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        observe(
            &self.buckets.counters_for(prefix),
            RequestKind::List,
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        observe(
            &self.counters_for(to),
            RequestKind::Copy,
            self.inner.copy_opts(from, to, options),
        )
        .await
    }

    /// Delegated (a local rename stays one atomic rename), counted as the COPY and DELETE it is
    /// on S3.
    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.counters_for(from).record(RequestKind::Delete);
        observe(
            &self.counters_for(to),
            RequestKind::Copy,
            self.inner.rename_opts(from, to, options),
        )
        .await
    }
}

/// Counts one LIST when the listing starts and one more per further page of 1000 objects.
fn count_pages(
    counters: &Arc<RequestCounters>,
    listing: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    const PAGE_OBJECTS: u64 = 1000;
    counters.record(RequestKind::List);
    let counters = Arc::clone(counters);
    let mut objects = 0u64;
    listing
        .inspect(move |item| match item {
            Ok(_) => {
                objects += 1;
                if objects > PAGE_OBJECTS && objects % PAGE_OBJECTS == 1 {
                    counters.record(RequestKind::List);
                }
            }
            Err(_) => counters.failed(),
        })
        .boxed()
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counters: Arc<RequestCounters>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        let part = self.inner.put_part(data);
        let counters = Arc::clone(&self.counters);
        async move {
            observe(&counters, RequestKind::Put, part).await?;
            counters.written(len);
            Ok(())
        }
        .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        observe(&self.counters, RequestKind::Put, self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        observe(&self.counters, RequestKind::Delete, self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;

    /// Every kind of request is counted once per request, with the bytes it moved.
    #[tokio::test]
    async fn counts_each_kind_and_bytes() {
        let store = CountingStore::new(Arc::new(InMemory::new()));
        let a = Path::from("t/a");
        store
            .put(&a, PutPayload::from_static(b"0123456789"))
            .await
            .expect("put");
        store.get_range(&a, 2..5).await.expect("get_range");
        store.head(&a).await.expect("head");
        let ranges = store
            .get_ranges(&a, &[0..2, 4..6])
            .await
            .expect("get_ranges");
        assert_eq!(
            ranges,
            vec![Bytes::from_static(b"01"), Bytes::from_static(b"45")]
        );
        let listed: Vec<_> = store.list(None).try_collect().await.expect("list");
        assert_eq!(listed.len(), 1);
        store
            .list_with_delimiter(None)
            .await
            .expect("list_with_delimiter");
        store.copy(&a, &Path::from("t/b")).await.expect("copy");
        store.delete(&Path::from("t/b")).await.expect("delete");
        let mut upload = store.put_multipart(&Path::from("t/c")).await.expect("mpu");
        upload
            .put_part(PutPayload::from_static(b"abc"))
            .await
            .expect("part");
        upload.complete().await.expect("complete");
        assert!(store.get_range(&Path::from("missing"), 0..1).await.is_err());

        let counts = store.snapshot();
        // GET: get_range, one coalesced get_ranges request, the failed one.
        assert_eq!(counts.get, 3, "{counts:?}");
        assert_eq!(counts.head, 1);
        assert_eq!(counts.put, 4, "put + create + part + complete: {counts:?}");
        assert_eq!(counts.list, 2);
        assert_eq!(counts.copy, 1);
        assert_eq!(counts.delete, 1);
        assert_eq!(counts.failed, 1);
        assert_eq!(counts.bytes_written, 13);
        assert_eq!(counts.bytes_read, 3 + 6);
        assert_eq!(counts.total_requests(), 12);
        assert_eq!(counts.since(&counts).total_requests(), 0);
    }

    /// Two stores sharing one set of counters add up, as per-topic counters over one store would.
    #[tokio::test]
    async fn shared_counters_add_up() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let counters = RequestCounters::new();
        let one = CountingStore::with_counters(Arc::clone(&inner), Arc::clone(&counters));
        let two = CountingStore::with_counters(inner, Arc::clone(&counters));
        one.put(&Path::from("x"), PutPayload::from_static(b"1"))
            .await
            .expect("put");
        two.put(&Path::from("y"), PutPayload::from_static(b"2"))
            .await
            .expect("put");
        assert_eq!(counters.snapshot().put, 2);
    }

    /// Buckets by the first path segment, as the tiering crate buckets by topic.
    #[derive(Debug, Clone)]
    struct ByDir(Arc<std::sync::Mutex<std::collections::BTreeMap<String, Arc<RequestCounters>>>>);

    impl CounterBuckets for ByDir {
        fn counters_for(&self, location: Option<&Path>) -> Arc<RequestCounters> {
            let dir = location
                .and_then(|p| p.parts().next())
                .map(|part| part.as_ref().to_string())
                .unwrap_or_default();
            Arc::clone(self.0.lock().unwrap().entry(dir).or_default())
        }
    }

    /// A bucketed store counts each request in its path's bucket: COPY and rename where the
    /// object lands, a rename's DELETE where it left, a LIST under its prefix.
    #[tokio::test]
    async fn buckets_by_path() {
        let buckets = ByDir(Default::default());
        let store = CountingStore::with_buckets(Arc::new(InMemory::new()), buckets.clone());
        let a = Path::from("a/x");
        store
            .put(&a, PutPayload::from_static(b"0123"))
            .await
            .expect("put");
        store.get(&a).await.expect("get");
        store.copy(&a, &Path::from("b/x")).await.expect("copy");
        store
            .rename(&Path::from("b/x"), &Path::from("c/x"))
            .await
            .expect("rename");
        let _: Vec<_> = store
            .list(Some(&Path::from("c")))
            .try_collect()
            .await
            .expect("list");
        let _: Vec<_> = store.list(None).try_collect().await.expect("list");
        store.delete(&Path::from("c/x")).await.expect("delete");

        let snapshot = |dir: &str| buckets.0.lock().unwrap()[dir].snapshot();
        let a = snapshot("a");
        assert_eq!((a.put, a.get, a.bytes_written, a.bytes_read), (1, 1, 4, 4));
        assert_eq!(a.total_requests(), 2, "{a:?}");
        let b = snapshot("b");
        assert_eq!((b.copy, b.delete, b.total_requests()), (1, 1, 2), "{b:?}");
        let c = snapshot("c");
        assert_eq!((c.copy, c.list, c.delete, c.total_requests()), (1, 1, 1, 3));
        assert_eq!(snapshot("").list, 1, "a LIST of the whole store");
    }
}
