//! [`FaultStore`]: an `ObjectStore` decorator that fails or stalls requests on a seeded
//! schedule, or "crashes" at a chosen mutating request (that request and everything after it
//! fail, optionally after the crashing request reached the store, as when a process dies
//! before it sees the answer).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

#[derive(Debug, Default)]
struct State {
    /// Mutating requests seen so far.
    mutations: u64,
    /// Crash at this mutating request (0-based).
    crash_at: Option<u64>,
    /// Whether the crashing request reaches the store before the "process dies".
    crash_applies: bool,
    crashed: bool,
    rng: u64,
    fail_per_mille: u64,
    stall_per_mille: u64,
    stall: Duration,
    faults: u64,
    stalls: u64,
}

enum Verdict {
    Pass,
    Fail,
    Stall(Duration),
    /// Forward, then fail (the crash point of a crash that applies).
    ApplyThenFail,
}

impl State {
    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn judge(&mut self, mutating: bool) -> Verdict {
        if self.crashed {
            return Verdict::Fail;
        }
        if mutating {
            let n = self.mutations;
            self.mutations += 1;
            if self.crash_at == Some(n) {
                self.crashed = true;
                return if self.crash_applies {
                    Verdict::ApplyThenFail
                } else {
                    Verdict::Fail
                };
            }
        }
        if self.fail_per_mille > 0 || self.stall_per_mille > 0 {
            let roll = self.next_random() % 1000;
            if roll < self.fail_per_mille {
                self.faults += 1;
                return Verdict::Fail;
            }
            if roll < self.fail_per_mille + self.stall_per_mille {
                self.stalls += 1;
                return Verdict::Stall(self.stall);
            }
        }
        Verdict::Pass
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<Mutex<State>>,
}

impl FaultStore {
    /// Every request fails with probability `fail_per_mille`/1000 or stalls for `stall` with
    /// probability `stall_per_mille`/1000, drawn from `seed`.
    pub fn flaky(
        inner: Arc<dyn ObjectStore>,
        seed: u64,
        fail_per_mille: u64,
        stall_per_mille: u64,
        stall: Duration,
    ) -> Self {
        Self {
            inner,
            state: Arc::new(Mutex::new(State {
                rng: seed.max(1),
                fail_per_mille,
                stall_per_mille,
                stall,
                ..State::default()
            })),
        }
    }

    /// Mutating requests before number `n` (0-based) succeed; number `n` is the crash (it
    /// reaches the store first if `applies`), and every request after it fails.
    pub fn crash_at(inner: Arc<dyn ObjectStore>, n: u64, applies: bool) -> Self {
        Self {
            inner,
            state: Arc::new(Mutex::new(State {
                crash_at: Some(n),
                crash_applies: applies,
                rng: 1,
                ..State::default()
            })),
        }
    }

    pub fn crashed(&self) -> bool {
        self.state.lock().unwrap().crashed
    }

    /// Ends a crash: every later request passes again, so the same handle can carry on (the
    /// outage is over, the process did not die).
    pub fn heal(&self) {
        let mut s = self.state.lock().unwrap();
        s.crashed = false;
        s.crash_at = None;
    }

    /// (failures injected, stalls injected)
    pub fn injected(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.faults, s.stalls)
    }

    fn verdict(&self, mutating: bool) -> Verdict {
        self.state.lock().unwrap().judge(mutating)
    }
}

fn injected(path: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultStore",
        source: format!("injected fault at {path}").into(),
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        match self.verdict(true) {
            Verdict::Fail => Err(injected(location)),
            Verdict::ApplyThenFail => {
                let _ = self.inner.put_opts(location, payload, opts).await;
                Err(injected(location))
            }
            Verdict::Stall(d) => {
                tokio::time::sleep(d).await;
                self.inner.put_opts(location, payload, opts).await
            }
            Verdict::Pass => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        match self.verdict(true) {
            Verdict::Fail | Verdict::ApplyThenFail => Err(injected(location)),
            Verdict::Stall(d) => {
                tokio::time::sleep(d).await;
                self.wrap_upload(location, opts).await
            }
            Verdict::Pass => self.wrap_upload(location, opts).await,
        }
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        match self.verdict(false) {
            Verdict::Fail | Verdict::ApplyThenFail => Err(injected(location)),
            Verdict::Stall(d) => {
                tokio::time::sleep(d).await;
                self.inner.get_opts(location, options).await
            }
            Verdict::Pass => self.inner.get_opts(location, options).await,
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let this = self.clone();
        locations
            .then(move |location| {
                let this = this.clone();
                async move {
                    let path = location?;
                    let verdict = this.verdict(true);
                    let forward = |path: Path| {
                        let inner = this.inner.clone();
                        async move {
                            let mut results = inner
                                .delete_stream(futures::stream::once(async { Ok(path) }).boxed());
                            results.next().await.expect("one result per location")
                        }
                    };
                    match verdict {
                        Verdict::Fail => Err(injected(&path)),
                        Verdict::ApplyThenFail => {
                            let _ = forward(path.clone()).await;
                            Err(injected(&path))
                        }
                        Verdict::Stall(d) => {
                            tokio::time::sleep(d).await;
                            forward(path).await
                        }
                        Verdict::Pass => forward(path).await,
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.verdict(false) {
            Verdict::Pass | Verdict::Stall(_) => self.inner.list(prefix),
            Verdict::Fail | Verdict::ApplyThenFail => {
                let path = prefix.cloned().unwrap_or_default();
                futures::stream::once(async move { Err(injected(&path)) }).boxed()
            }
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        match self.verdict(false) {
            Verdict::Pass | Verdict::Stall(_) => self.inner.list_with_delimiter(prefix).await,
            _ => Err(injected(&prefix.cloned().unwrap_or_default())),
        }
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        match self.verdict(true) {
            Verdict::Pass | Verdict::Stall(_) => self.inner.copy_opts(from, to, options).await,
            _ => Err(injected(to)),
        }
    }
}

impl FaultStore {
    async fn wrap_upload(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload {
            inner,
            store: self.clone(),
            path: location.clone(),
        }))
    }
}

#[derive(Debug)]
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    store: FaultStore,
    path: Path,
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let path = self.path.clone();
        match self.store.verdict(true) {
            Verdict::Fail | Verdict::ApplyThenFail => Box::pin(async move { Err(injected(&path)) }),
            Verdict::Stall(d) => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    part.await
                })
            }
            Verdict::Pass => self.inner.put_part(data),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        match self.store.verdict(true) {
            Verdict::Fail => Err(injected(&self.path)),
            Verdict::ApplyThenFail => {
                let _ = self.inner.complete().await;
                Err(injected(&self.path))
            }
            Verdict::Stall(d) => {
                tokio::time::sleep(d).await;
                self.inner.complete().await
            }
            Verdict::Pass => self.inner.complete().await,
        }
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}
