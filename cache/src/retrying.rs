//! [`RetryingStore`]: an [`ObjectStore`] decorator that bounds every request by a timeout and
//! repeats failed ones with exponential backoff and full jitter, as one [`RetryPolicy`] says.
//! Call sites make plain requests; this is the one place where object-store retries live.
//!
//! It sits on top of object_store's own HTTP retries (a few quick attempts inside one request)
//! and adds what those lack: a bound on a stalled request, and patient retries across an outage
//! of seconds to minutes. Put it above a [`crate::CountingStore`] so that every attempt is
//! counted, as the store bills them.
//!
//! What is retried, per request kind:
//! - GET/HEAD (`get_opts`): the request; and, for a body of at most [`BUFFERED_BODY_MAX`] bytes,
//!   reading the body too (the result then carries the bytes already read). A larger body
//!   streams as it comes, each chunk bounded by the timeout, and a failure mid-body is returned.
//! - `get_ranges`, `list_with_delimiter`, `copy_opts`: the whole call.
//! - PUT (`put_opts`): the whole call, in every mode. A retried conditional PUT
//!   (`PutMode::Create`) may find the object its own lost attempt created and fail with
//!   `AlreadyExists`: a caller of a conditional PUT must tell that apart from a lost race (read
//!   the object back and compare).
//! - `rename_opts`: the whole call; a retry that finds the source gone and the destination
//!   present counts as done (an earlier attempt's answer was lost).
//! - DELETE (`delete_stream`): each location on its own. Deleting a missing object is not an
//!   error on S3 but is on a local directory: callers treat `NotFound` as deleted.
//! - LIST (`list`, `list_with_offset`): until the first object arrives; a failure after that
//!   ends the stream with the error (restarting would repeat objects). Every page waits at most
//!   the timeout.
//! - Multipart uploads: creating one is retried; parts, completion and abort are bounded by the
//!   timeout but not repeated (object_store's `MultipartUpload` cannot resend a part), so a
//!   caller repeats a failed upload whole, with [`RetryPolicy::retry`].
//!
//! Errors: a request that timed out fails with a [`RetryError::TimedOut`], and a request that
//! failed on every attempt with a [`RetryError::GaveUp`] holding the last error, both inside
//! `object_store::Error::Generic` (see [`retry_error`]). [`is_retriable`] says whether repeating
//! a request could help.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, Result, UploadPart,
};

/// Bodies up to this size are read inside the retried request, so a failure mid-body is
/// retried too; larger ones stream.
pub const BUFFERED_BODY_MAX: u64 = 32 * 1024 * 1024;

/// The store name the decorator's own errors carry.
pub const RETRYING_STORE: &str = "RetryingStore";

/// How a failed store request is repeated. Every attempt is bounded by `request_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub attempts_max: u32,
    /// Backoff before the first retry; doubles per retry up to `backoff_max`, and each wait is
    /// drawn uniformly from `[0, backoff]` (full jitter) so that many partitions retrying after
    /// one outage don't hit the store in lockstep.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Bound on one request (one PUT, one part, one GET): a stalled store counts as a failure.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: 8,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// An operation that failed on every attempt: how many there were and the last error.
#[derive(Debug)]
pub struct Exhausted<E> {
    pub attempts: u32,
    pub last: E,
}

impl RetryPolicy {
    /// The wait before retry number `retry + 1`: exponential, capped, full jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.backoff_max);
        let nanos = exp.as_nanos() as u64;
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            random_u64() % (nanos + 1)
        })
    }

    /// Runs `attempt` until it succeeds, fails with an error `retriable` rejects, or the
    /// attempts are used up; waits [`Self::backoff`] between attempts and logs each retry with
    /// `what`. It does not bound an attempt's time: the requests inside do that. The store
    /// decorator is built on it, and so is any caller that must repeat several requests as one
    /// step (a multipart upload).
    pub async fn retry<T, E, F, Fut>(
        &self,
        what: &(dyn fmt::Display + Sync),
        retriable: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> std::result::Result<T, Exhausted<E>>
    where
        E: fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
    {
        let attempts_max = self.attempts_max.max(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(last) if attempts >= attempts_max || !retriable(&last) => {
                    return Err(Exhausted { attempts, last })
                }
                Err(error) => {
                    let wait = self.backoff(attempts - 1);
                    tracing::warn!(%what, attempt = attempts, wait_ms = wait.as_millis() as u64,
                        error = %error, "object store request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Bounds `request` by the request timeout.
    async fn timed<T>(
        &self,
        operation: &'static str,
        path: &Path,
        request: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.request_timeout, request).await {
            Ok(result) => result,
            Err(_) => Err(retry_error(RetryError::TimedOut {
                operation,
                path: path.to_string(),
                timeout: self.request_timeout,
            })),
        }
    }

    /// One request, timed and retried; a request whose attempts all failed transiently gives up
    /// with [`RetryError::GaveUp`].
    async fn request<T, F, Fut>(
        &self,
        operation: &'static str,
        path: &Path,
        mut send: F,
    ) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let what = Described(operation, path);
        let mut attempt = 0;
        self.retry(&what, is_retriable, || {
            attempt += 1;
            self.timed(operation, path, send(attempt))
        })
        .await
        .map_err(|Exhausted { attempts, last }| {
            // A definite answer (not found, already exists, ...) is returned as it is, even
            // after retries: callers match on it.
            if attempts == 1 || !is_retriable(&last) {
                last
            } else {
                retry_error(RetryError::GaveUp {
                    operation,
                    path: path.to_string(),
                    attempts,
                    source: Box::new(last),
                })
            }
        })
    }
}

struct Described<'a>(&'static str, &'a Path);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // A fresh RandomState is seeded from the OS per process and varied per instance.
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The decorator's own failures.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("{operation} of {path} did not finish within {} ms", timeout.as_millis())]
    TimedOut {
        operation: &'static str,
        path: String,
        timeout: Duration,
    },
    #[error("{operation} of {path} gave up after {attempts} attempts: {source}")]
    GaveUp {
        operation: &'static str,
        path: String,
        attempts: u32,
        #[source]
        source: Box<object_store::Error>,
    },
}

/// `error` as the `object_store::Error` the decorator returns.
pub fn retry_error(error: RetryError) -> object_store::Error {
    object_store::Error::Generic {
        store: RETRYING_STORE,
        source: Box::new(error),
    }
}

/// The [`RetryError`] inside `error`, if the decorator made it.
pub fn as_retry_error(error: &object_store::Error) -> Option<&RetryError> {
    match error {
        object_store::Error::Generic { store, source } if *store == RETRYING_STORE => {
            source.downcast_ref::<RetryError>()
        }
        _ => None,
    }
}

/// Whether repeating the request that failed with `error` could succeed. object_store folds
/// transport and 5xx failures into `Generic` (after its own retries, for the HTTP stores); the
/// other variants describe a definite answer that repeating will not change. A request the
/// decorator already gave up on is not retriable again; one that timed out is.
pub fn is_retriable(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    if let Some(retry) = as_retry_error(error) {
        return matches!(retry, RetryError::TimedOut { .. });
    }
    match error {
        E::Generic { .. } | E::JoinError { .. } => true,
        E::NotFound { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => false,
        _ => true,
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    policy: Arc<RetryPolicy>,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> Self {
        Self {
            inner,
            policy: Arc::new(policy),
        }
    }
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryingStore({})", self.inner)
    }
}

/// Reads a streamed body whole, if it is small enough to hold.
async fn buffered(result: GetResult) -> Result<GetResult> {
    match result.payload {
        GetResultPayload::Stream(_)
            if result.range.end - result.range.start <= BUFFERED_BODY_MAX =>
        {
            let meta = result.meta.clone();
            let range = result.range.clone();
            let attributes = result.attributes.clone();
            let bytes = result.bytes().await?;
            Ok(GetResult {
                payload: GetResultPayload::Stream(
                    futures::stream::once(async { Ok(bytes) }).boxed(),
                ),
                meta,
                range,
                attributes,
            })
        }
        _ => Ok(result),
    }
}

/// `stream` with every item bounded by the policy's timeout.
fn timed_stream<T: Send + 'static>(
    policy: Arc<RetryPolicy>,
    operation: &'static str,
    path: Path,
    stream: BoxStream<'static, Result<T>>,
) -> BoxStream<'static, Result<T>> {
    futures::stream::unfold(Some(stream), move |state| {
        let policy = Arc::clone(&policy);
        let path = path.clone();
        async move {
            let mut stream = state?;
            match policy
                .timed(operation, &path, async { Ok(stream.next().await) })
                .await
            {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                Err(timed_out) => Some((Err(timed_out), None)),
            }
        }
    })
    .boxed()
}

impl RetryingStore {
    /// A listing retried until its first object (or its end) arrives; see the module docs.
    fn retried_listing(
        &self,
        prefix: Option<&Path>,
        start: impl Fn(&Arc<dyn ObjectStore>) -> BoxStream<'static, Result<ObjectMeta>>
            + Send
            + Sync
            + 'static,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let policy = Arc::clone(&self.policy);
        let path = prefix.cloned().unwrap_or_default();
        futures::stream::once(async move {
            let first = policy
                .request("LIST", &path, |_| {
                    let mut listing =
                        timed_stream(Arc::clone(&policy), "LIST", path.clone(), start(&inner));
                    async move {
                        match listing.next().await {
                            Some(Err(e)) => Err(e),
                            first => Ok((first, listing)),
                        }
                    }
                })
                .await;
            match first {
                Ok((Some(first), rest)) => {
                    futures::stream::once(async { first }).chain(rest).boxed()
                }
                Ok((None, _)) => futures::stream::empty().boxed(),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.policy
            .request("PUT", location, |_| {
                self.inner.put_opts(location, payload.clone(), opts.clone())
            })
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self
            .policy
            .request("multipart create", location, |_| {
                self.inner.put_multipart_opts(location, opts.clone())
            })
            .await?;
        Ok(Box::new(TimedUpload {
            inner: upload,
            policy: Arc::clone(&self.policy),
            path: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let operation = if options.head { "HEAD" } else { "GET" };
        let result = self
            .policy
            .request(operation, location, |_| {
                let head = options.head;
                let request = self.inner.get_opts(location, options.clone());
                async move {
                    let result = request.await?;
                    if head {
                        Ok(result)
                    } else {
                        buffered(result).await
                    }
                }
            })
            .await?;
        Ok(match result.payload {
            GetResultPayload::Stream(stream) => GetResult {
                payload: GetResultPayload::Stream(timed_stream(
                    Arc::clone(&self.policy),
                    "GET",
                    location.clone(),
                    stream,
                )),
                ..result
            },
            _ => result,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.policy
            .request("GET", location, |_| self.inner.get_ranges(location, ranges))
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = self.clone();
        locations
            .then(move |location| {
                let this = this.clone();
                async move {
                    let location = location?;
                    this.policy
                        .request("DELETE", &location, |_| {
                            let one =
                                futures::stream::once(futures::future::ready(Ok(location.clone())));
                            let mut results = this.inner.delete_stream(one.boxed());
                            let deleted = location.clone();
                            async move { results.next().await.unwrap_or(Ok(deleted)) }
                        })
                        .await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let owned = prefix.cloned();
        self.retried_listing(prefix, move |inner| inner.list(owned.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let owned = prefix.cloned();
        let offset = offset.clone();
        self.retried_listing(prefix, move |inner| {
            inner.list_with_offset(owned.as_ref(), &offset)
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let path = prefix.cloned().unwrap_or_default();
        self.policy
            .request("LIST", &path, |_| self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.policy
            .request("COPY", to, |_| {
                self.inner.copy_opts(from, to, options.clone())
            })
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.policy
            .request("rename", to, |attempt| {
                let rename = self.inner.rename_opts(from, to, options.clone());
                async move {
                    match rename.await {
                        // An earlier attempt renamed it and its answer was lost.
                        Err(object_store::Error::NotFound { .. })
                            if attempt > 1 && self.inner.head(to).await.is_ok() =>
                        {
                            Ok(())
                        }
                        other => other,
                    }
                }
            })
            .await
    }
}

/// A multipart upload whose every request is bounded by the timeout (not retried: see the
/// module docs).
#[derive(Debug)]
struct TimedUpload {
    inner: Box<dyn MultipartUpload>,
    policy: Arc<RetryPolicy>,
    path: Path,
}

#[async_trait]
impl MultipartUpload for TimedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let policy = Arc::clone(&self.policy);
        let path = self.path.clone();
        async move { policy.timed("multipart part PUT", &path, part).await }.boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let policy = Arc::clone(&self.policy);
        policy
            .timed(
                "multipart complete",
                &self.path.clone(),
                self.inner.complete(),
            )
            .await
    }

    async fn abort(&mut self) -> Result<()> {
        let policy = Arc::clone(&self.policy);
        policy
            .timed("multipart abort", &self.path.clone(), self.inner.abort())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counting::{CountingStore, RequestKind};
    use crate::testing::{is_injected, FaultPlan, FaultyStore};
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};

    fn policy(attempts_max: u32) -> RetryPolicy {
        RetryPolicy {
            attempts_max,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            request_timeout: Duration::from_millis(200),
        }
    }

    /// `RetryingStore` over `FaultyStore` over a counting in-memory store: the counts are the
    /// requests that reached the "server".
    fn stack(attempts_max: u32) -> (RetryingStore, Arc<FaultyStore>, Arc<CountingStore>) {
        let counting = Arc::new(CountingStore::new(Arc::new(InMemory::new())));
        let faults = Arc::new(FaultyStore::new(
            Arc::clone(&counting) as Arc<dyn ObjectStore>,
            FaultPlan::default(),
        ));
        let store = RetryingStore::new(
            Arc::clone(&faults) as Arc<dyn ObjectStore>,
            policy(attempts_max),
        );
        (store, faults, counting)
    }

    /// Transient failures of each request kind are retried until success.
    #[tokio::test]
    async fn transient_failures_are_retried() {
        let (store, faults, counting) = stack(5);
        let a = Path::from("dir/a");
        faults.fail_next(RequestKind::Put, 3);
        store
            .put(&a, PutPayload::from_static(b"abc"))
            .await
            .unwrap();
        faults.fail_next(RequestKind::Get, 2);
        assert_eq!(
            store.get(&a).await.unwrap().bytes().await.unwrap().as_ref(),
            b"abc"
        );
        faults.fail_next(RequestKind::Get, 2);
        assert_eq!(store.get_range(&a, 1..3).await.unwrap().as_ref(), b"bc");
        faults.fail_next(RequestKind::Head, 1);
        assert_eq!(store.head(&a).await.unwrap().size, 3);
        faults.fail_next(RequestKind::List, 2);
        let listed: Vec<_> = store
            .list(Some(&Path::from("dir")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        faults.fail_next(RequestKind::List, 2);
        let listed = store
            .list_with_delimiter(Some(&Path::from("dir")))
            .await
            .unwrap();
        assert_eq!(listed.objects.len(), 1);
        faults.fail_next(RequestKind::Copy, 2);
        store.copy(&a, &Path::from("dir/b")).await.unwrap();
        faults.fail_next(RequestKind::Delete, 2);
        store.delete(&Path::from("dir/b")).await.unwrap();
        assert_eq!(faults.injected_failures(), 3 + 2 + 2 + 1 + 2 + 2 + 2 + 2);
        // The failed attempts never reached the store below the faults.
        assert_eq!(counting.snapshot().requests(RequestKind::Put), 1);
    }

    /// A permanent error is returned at once; a transient one that lasts gives up, saying so,
    /// and is then not retriable.
    #[tokio::test]
    async fn permanent_errors_and_giving_up() {
        let (store, faults, _) = stack(3);
        let err = store.get(&Path::from("missing")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        assert!(!is_retriable(&err));

        faults.set_outage(true);
        let err = store
            .put(&Path::from("x"), PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );
        assert!(is_injected(&err), "the last error is kept: {err}");
        assert!(matches!(
            as_retry_error(&err),
            Some(RetryError::GaveUp { attempts: 3, .. })
        ));
        assert!(!is_retriable(&err));
        assert_eq!(faults.injected_failures(), 3);

        // One attempt: the error as the store gave it.
        let (store, faults, _) = stack(1);
        faults.set_outage(true);
        let err = store.get(&Path::from("x")).await.unwrap_err();
        assert!(is_injected(&err) && as_retry_error(&err).is_none(), "{err}");
    }

    /// A stalled request times out and is retried; a stalled part times out without retry.
    #[tokio::test]
    async fn stalls_time_out() {
        let (store, faults, _) = stack(3);
        let a = Path::from("a");
        store.put(&a, PutPayload::from_static(b"x")).await.unwrap();
        faults.stall_next(RequestKind::Get, 1, Duration::from_secs(30));
        let started = std::time::Instant::now();
        store.get(&a).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));

        let (store, faults, _) = stack(1);
        faults.stall_next(RequestKind::Get, 1, Duration::from_secs(30));
        let err = store.get(&a).await.unwrap_err();
        assert!(
            matches!(as_retry_error(&err), Some(RetryError::TimedOut { .. })),
            "{err}"
        );
        assert!(is_retriable(&err));

        let (store, faults, _) = stack(3);
        let mut upload = store.put_multipart(&Path::from("m")).await.unwrap();
        faults.stall_next(RequestKind::Put, 1, Duration::from_secs(30));
        let err = upload
            .put_part(PutPayload::from_static(b"p"))
            .await
            .unwrap_err();
        assert!(
            matches!(as_retry_error(&err), Some(RetryError::TimedOut { .. })),
            "{err}"
        );
        upload.abort().await.unwrap();
    }

    /// A retried conditional PUT whose first attempt landed reports `AlreadyExists`: the
    /// caller can tell by reading the object back.
    #[tokio::test]
    async fn conditional_put_after_a_lost_answer() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = RetryingStore::new(Arc::new(LoseFirstAnswer(Arc::clone(&inner))), policy(3));
        let path = Path::from("m/1");
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let err = store
            .put_opts(&path, PutPayload::from_static(b"v1"), create)
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
        assert_eq!(
            inner
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .as_ref(),
            b"v1"
        );
    }

    /// Applies the first PUT, then answers it with a transport error.
    #[derive(Debug)]
    struct LoseFirstAnswer(Arc<dyn ObjectStore>);

    impl fmt::Display for LoseFirstAnswer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "LoseFirstAnswer")
        }
    }

    #[async_trait]
    impl ObjectStore for LoseFirstAnswer {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
            static LOST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            let result = self.0.put_opts(l, p, o).await;
            if !LOST.swap(true, Ordering::SeqCst) {
                return Err(object_store::Error::Generic {
                    store: "test",
                    source: "connection reset".into(),
                });
            }
            result
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
            self.0.get_opts(l, o).await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.0.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.0.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
            self.0.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> Result<()> {
            self.0.copy_opts(f, t, o).await
        }
    }

    /// The loop itself: retries what `retriable` accepts, stops at what it rejects.
    #[tokio::test]
    async fn retry_loop_counts_attempts() {
        let calls = AtomicU64::new(0);
        let out = policy(5)
            .retry(
                &"step",
                |_: &&str| true,
                || async {
                    if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                        Err("transient")
                    } else {
                        Ok(7)
                    }
                },
            )
            .await
            .unwrap();
        assert_eq!((out, calls.load(Ordering::SeqCst)), (7, 4));
        let err = policy(5)
            .retry(
                &"step",
                |e: &&str| *e != "permanent",
                || async { Err::<(), _>("permanent") },
            )
            .await
            .unwrap_err();
        assert_eq!(err.attempts, 1);
    }

    /// Backoff grows, is capped, and is jittered within its bound.
    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(800),
            ..RetryPolicy::default()
        };
        for retry in 0..30 {
            let bound = Duration::from_millis(100 * (1u64 << retry.min(3)));
            assert!(p.backoff(retry) <= bound);
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(5)).collect();
        assert!(draws.len() > 1, "jittered");
    }
}
