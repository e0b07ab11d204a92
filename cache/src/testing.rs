//! Test support, for this crate's tests and (with the `testing` feature) other crates' tests:
//! [`FaultyStore`], an [`ObjectStore`] decorator that fails or stalls requests on a seeded
//! schedule or on command, or "crashes" at a chosen mutating request (that request and every
//! later one fail, optionally after the crashing request reached the store, as when a process
//! dies before it sees the answer), and [`instrumented`], which stacks a [`CountingStore`] on top of one so
//! a test can count requests (injected failures included) and inject faults at once.
//!
//! ```ignore
//! let (store, counting, faults) = instrumented(Arc::new(InMemory::new()), FaultPlan::default());
//! faults.fail_next(RequestKind::Get, 1);
//! // ... run the code under test against `store` ...
//! assert_eq!(counting.snapshot().get, 2);
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

use crate::counting::{CountingStore, RequestKind};
use crate::tiers::lock;

/// Faults drawn at random, reproducibly: the same seed and the same sequence of requests give the
/// same faults.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    /// Probability, per request of an affected kind, that it fails.
    pub failure_rate: f64,
    /// Probability, per request of an affected kind, that it stalls for `stall` first.
    pub stall_rate: f64,
    pub stall: Duration,
    /// Kinds the random faults apply to; empty means all.
    pub kinds: Vec<RequestKind>,
}

impl Default for FaultPlan {
    /// No random faults; commands (`fail_next`, `set_outage`, ...) still work.
    fn default() -> Self {
        FaultPlan {
            seed: 0,
            failure_rate: 0.0,
            stall_rate: 0.0,
            stall: Duration::from_millis(100),
            kinds: Vec::new(),
        }
    }
}

/// The error an injected failure returns (inside `object_store::Error::Generic`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    pub kind: RequestKind,
    pub path: Option<String>,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "injected failure of a {} request for {path}", self.kind),
            None => write!(f, "injected failure of a {} request", self.kind),
        }
    }
}

impl std::error::Error for InjectedFault {}

/// The store name injected errors carry.
pub const FAULTY_STORE: &str = "FaultyStore";

/// Whether `error` is one a [`FaultyStore`] injected.
pub fn is_injected(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<InjectedFault>().is_some() {
            return true;
        }
        current = e.source();
    }
    false
}

#[derive(Debug)]
struct FaultState {
    plan: FaultPlan,
    rng: SplitMix64,
    fail_next: [u32; 6],
    stall_next: [(u32, Duration); 6],
    outage: bool,
    /// Mutating requests (PUT, DELETE, COPY) seen so far.
    mutations: u64,
    /// Crash at this mutating request (0-based); whether it reaches the store first.
    crash_at: Option<(u64, bool)>,
    crashed: bool,
}

#[derive(Debug)]
struct FaultCore {
    state: Mutex<FaultState>,
    /// Kinds whose requests wait at the gate until released ([`FaultyStore::hold`]).
    held: tokio::sync::watch::Sender<[bool; 6]>,
    injected_failures: AtomicU64,
    injected_stalls: AtomicU64,
}

/// What to do to one request.
struct Decision {
    stall: Option<Duration>,
    fail: bool,
    /// Forward the request, then fail (the crash point of a crash that applies).
    apply_then_fail: bool,
}

/// What the gate lets a request do.
enum Admit {
    Pass,
    /// Forward the request, then return this error.
    ApplyThenFail(object_store::Error),
}

impl FaultCore {
    fn decide(&self, kind: RequestKind, counts_as_mutation: bool) -> Decision {
        let mut state = lock(&self.state);
        let i = kind as usize;
        let mut decision = Decision {
            stall: None,
            fail: false,
            apply_then_fail: false,
        };
        if state.crashed {
            decision.fail = true;
            return decision;
        }
        if counts_as_mutation {
            let n = state.mutations;
            state.mutations += 1;
            if let Some((at, applies)) = state.crash_at {
                if at == n {
                    state.crashed = true;
                    decision.fail = !applies;
                    decision.apply_then_fail = applies;
                    return decision;
                }
            }
        }
        if state.stall_next[i].0 > 0 {
            state.stall_next[i].0 -= 1;
            decision.stall = Some(state.stall_next[i].1);
        }
        if state.outage {
            decision.fail = true;
        } else if state.fail_next[i] > 0 {
            state.fail_next[i] -= 1;
            decision.fail = true;
        } else if state.plan.kinds.is_empty() || state.plan.kinds.contains(&kind) {
            // Draw both numbers always, so one rate does not shift the other's sequence.
            let fail_draw = state.rng.next_f64();
            let stall_draw = state.rng.next_f64();
            decision.fail = fail_draw < state.plan.failure_rate;
            if decision.stall.is_none() && stall_draw < state.plan.stall_rate {
                decision.stall = Some(state.plan.stall);
            }
        }
        decision
    }

    /// Applies the faults for one request: stalls, then fails or lets it through. PUT, DELETE
    /// and COPY count as mutating requests for a crash, except an abort's DELETE.
    async fn admit(
        &self,
        kind: RequestKind,
        path: Option<&Path>,
        counts_as_mutation: bool,
    ) -> Result<Admit> {
        let decision = self.decide(kind, counts_as_mutation);
        let mut held = self.held.subscribe();
        // Err only if the sender is gone, which cannot happen while `self` lives.
        let _ = held.wait_for(|held| !held[kind as usize]).await;
        if let Some(stall) = decision.stall {
            self.injected_stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(stall).await;
        }
        let fault = || {
            self.injected_failures.fetch_add(1, Ordering::Relaxed);
            object_store::Error::Generic {
                store: FAULTY_STORE,
                source: Box::new(InjectedFault {
                    kind,
                    path: path.map(|p| p.to_string()),
                }),
            }
        };
        if decision.fail {
            return Err(fault());
        }
        if decision.apply_then_fail {
            return Ok(Admit::ApplyThenFail(fault()));
        }
        Ok(Admit::Pass)
    }

    /// Runs `request` behind the gate.
    async fn run<T>(
        &self,
        kind: RequestKind,
        path: Option<&Path>,
        request: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mutating = matches!(
            kind,
            RequestKind::Put | RequestKind::Delete | RequestKind::Copy
        );
        match self.admit(kind, path, mutating).await? {
            Admit::Pass => request.await,
            Admit::ApplyThenFail(error) => {
                let _ = request.await;
                Err(error)
            }
        }
    }

    /// The gate of a request that has no outcome to forward (a listing about to start).
    async fn gate(&self, kind: RequestKind, path: Option<&Path>) -> Result<()> {
        self.run(kind, path, async { Ok(()) }).await
    }
}

/// An [`ObjectStore`] that injects failures and stalls before delegating to `inner`. Faults come
/// from a seeded [`FaultPlan`] and from commands: fail or stall the next N requests of a kind, or
/// an outage during which every request fails. A multipart upload's parts and completion are
/// PUTs; an abort is a DELETE.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    core: Arc<FaultCore>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, plan: FaultPlan) -> Self {
        let state = FaultState {
            rng: SplitMix64(plan.seed),
            plan,
            fail_next: [0; 6],
            stall_next: [(0, Duration::ZERO); 6],
            outage: false,
            mutations: 0,
            crash_at: None,
            crashed: false,
        };
        FaultyStore {
            inner,
            core: Arc::new(FaultCore {
                state: Mutex::new(state),
                held: tokio::sync::watch::Sender::new([false; 6]),
                injected_failures: AtomicU64::new(0),
                injected_stalls: AtomicU64::new(0),
            }),
        }
    }

    /// Replaces the random plan (and restarts its sequence from the new seed).
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut state = lock(&self.core.state);
        state.rng = SplitMix64(plan.seed);
        state.plan = plan;
    }

    /// The next `n` requests of `kind` fail.
    pub fn fail_next(&self, kind: RequestKind, n: u32) {
        lock(&self.core.state).fail_next[kind as usize] = n;
    }

    /// The next `n` requests of `kind` stall for `stall` before going through (or failing).
    pub fn stall_next(&self, kind: RequestKind, n: u32, stall: Duration) {
        lock(&self.core.state).stall_next[kind as usize] = (n, stall);
    }

    /// Requests of `kind` wait (their fault already decided) until [`Self::release`]: a test
    /// can have several callers queue behind one request without racing a timer.
    pub fn hold(&self, kind: RequestKind) {
        self.core
            .held
            .send_modify(|held| held[kind as usize] = true);
    }

    /// Lets held requests of `kind`, and later ones, through.
    pub fn release(&self, kind: RequestKind) {
        self.core
            .held
            .send_modify(|held| held[kind as usize] = false);
    }

    /// While down, every request fails.
    pub fn set_outage(&self, down: bool) {
        lock(&self.core.state).outage = down;
    }

    /// Mutating requests before number `n` (0-based) succeed; number `n` is the crash (it
    /// reaches the store first if `applies`), and every request after it fails until
    /// [`Self::heal`].
    pub fn crash_at(inner: Arc<dyn ObjectStore>, n: u64, applies: bool) -> Self {
        let store = Self::new(inner, FaultPlan::default());
        lock(&store.core.state).crash_at = Some((n, applies));
        store
    }

    pub fn crashed(&self) -> bool {
        lock(&self.core.state).crashed
    }

    /// Ends a crash: every later request passes again, so the same handle can carry on (the
    /// outage is over, the process did not die).
    pub fn heal(&self) {
        let mut state = lock(&self.core.state);
        state.crashed = false;
        state.crash_at = None;
    }

    pub fn injected_failures(&self) -> u64 {
        self.core.injected_failures.load(Ordering::Relaxed)
    }

    pub fn injected_stalls(&self) -> u64 {
        self.core.injected_stalls.load(Ordering::Relaxed)
    }
}

/// `inner` behind a [`FaultyStore`] behind a [`CountingStore`]: the store to hand to the code
/// under test, its counts (every request the code made, failed ones included) and its faults.
pub fn instrumented(
    inner: Arc<dyn ObjectStore>,
    plan: FaultPlan,
) -> (Arc<dyn ObjectStore>, Arc<CountingStore>, Arc<FaultyStore>) {
    let faults = Arc::new(FaultyStore::new(inner, plan));
    let counting = Arc::new(CountingStore::new(
        Arc::clone(&faults) as Arc<dyn ObjectStore>
    ));
    (
        Arc::clone(&counting) as Arc<dyn ObjectStore>,
        counting,
        faults,
    )
}

/// `len` bytes that differ at every offset and between seeds, for checking reads byte for byte.
pub fn pattern_bytes(seed: u64, len: usize) -> Bytes {
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let put = self.inner.put_opts(location, payload, opts);
        self.core.run(RequestKind::Put, Some(location), put).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.core.gate(RequestKind::Put, Some(location)).await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            core: Arc::clone(&self.core),
            path: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let kind = if options.head {
            RequestKind::Head
        } else {
            RequestKind::Get
        };
        let get = self.inner.get_opts(location, options);
        self.core.run(kind, Some(location), get).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let get = self.inner.get_ranges(location, ranges);
        self.core.run(RequestKind::Get, Some(location), get).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let core = Arc::clone(&self.core);
        let inner = Arc::clone(&self.inner);
        locations
            .then(move |location| {
                let core = Arc::clone(&core);
                let inner = Arc::clone(&inner);
                async move {
                    let location = location?;
                    let one = futures::stream::once(futures::future::ready(Ok(location.clone())));
                    let deleted = location.clone();
                    let delete = async move {
                        let mut results = inner.delete_stream(one.boxed());
                        results.next().await.unwrap_or(Ok(deleted))
                    };
                    core.run(RequestKind::Delete, Some(&location), delete).await
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        gated_listing(&self.core, move || inner.list(prefix.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.cloned();
        let offset = offset.clone();
        gated_listing(&self.core, move || {
            inner.list_with_offset(prefix.as_ref(), &offset)
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let list = self.inner.list_with_delimiter(prefix);
        self.core.run(RequestKind::List, prefix, list).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let copy = self.inner.copy_opts(from, to, options);
        self.core.run(RequestKind::Copy, Some(from), copy).await
    }

    // `rename_opts` is the trait's default, a COPY and a DELETE through this store, so that a
    // crash can fall between the two.
}

/// A listing that passes the gate (stalling or failing) before it starts.
fn gated_listing(
    core: &Arc<FaultCore>,
    start: impl FnOnce() -> BoxStream<'static, Result<ObjectMeta>> + Send + 'static,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let core = Arc::clone(core);
    futures::stream::once(async move {
        match core.gate(RequestKind::List, None).await {
            Ok(()) => start(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    })
    .flatten()
    .boxed()
}

#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    core: Arc<FaultCore>,
    path: Path,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let core = Arc::clone(&self.core);
        let path = self.path.clone();
        async move { core.run(RequestKind::Put, Some(&path), part).await }.boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let path = self.path.clone();
        let complete = self.inner.complete();
        self.core.run(RequestKind::Put, Some(&path), complete).await
    }

    async fn abort(&mut self) -> Result<()> {
        // Cleanup, not a step a crash can land on: gated, but not counted as a mutation.
        match self
            .core
            .admit(RequestKind::Delete, Some(&self.path), false)
            .await?
        {
            Admit::Pass => self.inner.abort().await,
            Admit::ApplyThenFail(error) => Err(error),
        }
    }
}

/// SplitMix64: a tiny, well-mixed generator; plenty for fault schedules.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    /// Commanded faults hit exactly the requests they name, and the counts include them.
    #[tokio::test]
    async fn commanded_failures_and_outage() {
        let (store, counting, faults) =
            instrumented(Arc::new(InMemory::new()), FaultPlan::default());
        let a = Path::from("a");
        store
            .put(&a, PutPayload::from_static(b"x"))
            .await
            .expect("put");
        faults.fail_next(RequestKind::Get, 2);
        for _ in 0..2 {
            let err = store.get(&a).await.expect_err("injected");
            assert!(is_injected(&err), "{err}");
            assert!(err
                .to_string()
                .contains("injected failure of a GET request for a"));
        }
        store.get(&a).await.expect("third GET goes through");
        faults.set_outage(true);
        assert!(store.head(&a).await.is_err());
        let listed: Result<Vec<_>> = store.list(None).try_collect().await;
        assert!(listed.is_err());
        assert!(store.delete(&a).await.is_err());
        faults.set_outage(false);
        store.delete(&a).await.expect("delete after the outage");
        let counts = counting.snapshot();
        assert_eq!(counts.get, 3);
        assert_eq!(counts.failed, 5);
        assert_eq!(faults.injected_failures(), 5);
    }

    /// The same seed gives the same faults for the same requests; the rate is roughly honoured.
    #[tokio::test]
    async fn seeded_schedule_is_reproducible() {
        async fn outcomes(seed: u64) -> Vec<bool> {
            let plan = FaultPlan {
                seed,
                failure_rate: 0.3,
                kinds: vec![RequestKind::Get],
                ..FaultPlan::default()
            };
            let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            inner
                .put(&Path::from("a"), PutPayload::from_static(b"x"))
                .await
                .expect("put");
            let store = FaultyStore::new(inner, plan);
            let mut out = Vec::new();
            for _ in 0..200 {
                out.push(store.get(&Path::from("a")).await.is_ok());
            }
            // PUTs are not in `kinds`: never affected.
            store
                .put(&Path::from("b"), PutPayload::from_static(b"y"))
                .await
                .expect("put unaffected");
            out
        }
        let first = outcomes(7).await;
        assert_eq!(first, outcomes(7).await);
        assert_ne!(first, outcomes(8).await);
        let failures = first.iter().filter(|ok| !**ok).count();
        assert!((30..=90).contains(&failures), "{failures} of 200 failed");
    }

    /// A stalled request takes at least the stall, then succeeds.
    #[tokio::test]
    async fn stall_delays_then_delegates() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let store = FaultyStore::new(inner, FaultPlan::default());
        let a = Path::from("a");
        store
            .put(&a, PutPayload::from_static(b"x"))
            .await
            .expect("put");
        store.stall_next(RequestKind::Get, 1, Duration::from_millis(50));
        let started = std::time::Instant::now();
        store.get(&a).await.expect("stalled get");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(store.injected_stalls(), 1);
    }

    /// A held kind waits until released; other kinds pass meanwhile.
    #[tokio::test]
    async fn held_requests_wait_for_release() {
        let store = FaultyStore::new(Arc::new(InMemory::new()), FaultPlan::default());
        let a = Path::from("a");
        store
            .put(&a, PutPayload::from_static(b"x"))
            .await
            .expect("put");
        store.hold(RequestKind::Get);
        let held = tokio::spawn({
            let (store, a) = (store.clone(), a.clone());
            async move { store.get(&a).await.map(|_| ()) }
        });
        store
            .put(&Path::from("b"), PutPayload::from_static(b"y"))
            .await
            .expect("a PUT is not held");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!held.is_finished(), "the GET waits while held");
        store.release(RequestKind::Get);
        held.await.expect("join").expect("released get");
    }

    /// Multipart parts are gated as PUTs.
    #[tokio::test]
    async fn multipart_parts_are_gated() {
        let store = FaultyStore::new(Arc::new(InMemory::new()), FaultPlan::default());
        let mut upload = store.put_multipart(&Path::from("m")).await.expect("create");
        store.fail_next(RequestKind::Put, 1);
        assert!(upload
            .put_part(PutPayload::from_static(b"a"))
            .await
            .is_err());
        upload.abort().await.expect("abort");
    }

    /// A crash at the Nth mutating request fails it (after applying it, if asked) and every
    /// request after it, reads included, until healed; reads before it do not count.
    #[tokio::test]
    async fn crash_at_a_mutating_request() {
        for applies in [false, true] {
            let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let store = FaultyStore::crash_at(Arc::clone(&inner), 1, applies);
            let (a, b) = (Path::from("a"), Path::from("b"));
            store
                .put(&a, PutPayload::from_static(b"x"))
                .await
                .expect("mutation 0");
            store.get(&a).await.expect("reads are not mutations");
            assert!(!store.crashed());
            let err = store
                .put(&b, PutPayload::from_static(b"y"))
                .await
                .expect_err("the crash");
            assert!(is_injected(&err) && store.crashed());
            assert_eq!(inner.head(&b).await.is_ok(), applies);
            assert!(
                store.get(&a).await.is_err(),
                "everything fails after the crash"
            );
            store.heal();
            store.delete(&a).await.expect("healed");
        }
    }

    /// Pattern bytes differ between seeds and are deterministic.
    #[test]
    fn pattern_bytes_are_deterministic() {
        assert_eq!(pattern_bytes(1, 100), pattern_bytes(1, 100));
        assert_ne!(pattern_bytes(1, 100), pattern_bytes(2, 100));
        assert_eq!(pattern_bytes(3, 13).len(), 13);
    }
}
