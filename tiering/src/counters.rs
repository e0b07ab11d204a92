//! [`CountingStore`]: an `ObjectStore` decorator that counts requests and bytes per topic, by
//! the topic directory in each object's path. The remote log and its cache both talk to the
//! store through it, so every request is counted, reads through the cache included.
//!
//! Request classes follow S3 pricing: PUT-class are PUT, each multipart part, multipart
//! create/complete, and COPY; GET-class are GET and HEAD; LIST counts one request per call plus
//! one per further 1000 results (S3's page size); DELETE is one per object.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

use crate::layout;

/// Requests and bytes of one topic (or, under the empty name, of paths outside any topic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub put_requests: u64,
    pub put_bytes: u64,
    pub get_requests: u64,
    pub get_bytes: u64,
    pub list_requests: u64,
    pub delete_requests: u64,
}

impl RequestCounts {
    pub fn add(&mut self, other: &RequestCounts) {
        self.put_requests += other.put_requests;
        self.put_bytes += other.put_bytes;
        self.get_requests += other.get_requests;
        self.get_bytes += other.get_bytes;
        self.list_requests += other.list_requests;
        self.delete_requests += other.delete_requests;
    }
}

/// Counts by topic name; paths outside `topics/` count under `""`.
#[derive(Debug, Clone, Default)]
pub struct StoreCounters {
    inner: Arc<Mutex<BTreeMap<String, RequestCounts>>>,
}

impl StoreCounters {
    pub fn snapshot(&self) -> BTreeMap<String, RequestCounts> {
        self.inner.lock().expect("counter lock").clone()
    }

    pub fn total(&self) -> RequestCounts {
        let mut total = RequestCounts::default();
        for counts in self.inner.lock().expect("counter lock").values() {
            total.add(counts);
        }
        total
    }

    fn update(&self, topic: String, f: impl FnOnce(&mut RequestCounts)) {
        f(self
            .inner
            .lock()
            .expect("counter lock")
            .entry(topic)
            .or_default());
    }
}

/// The counting decorator; see the module docs.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    topics_dir: Path,
    counters: StoreCounters,
}

impl CountingStore {
    /// Counts requests to `inner`, attributing paths below `prefix/topics/` to their topic.
    pub fn new(inner: Arc<dyn ObjectStore>, prefix: &Path, counters: StoreCounters) -> Self {
        Self {
            inner,
            topics_dir: layout::topics_dir(prefix),
            counters,
        }
    }

    fn topic_of(&self, location: &Path) -> String {
        layout::split_object_path(&self.topics_dir, location)
            .map(|(tp, _)| tp.topic)
            .unwrap_or_default()
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let len = payload.content_length() as u64;
        self.counters.update(self.topic_of(location), |c| {
            c.put_requests += 1;
            c.put_bytes += len;
        });
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let topic = self.topic_of(location);
        self.counters.update(topic.clone(), |c| c.put_requests += 1);
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner: upload,
            topic,
            counters: self.counters.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        let result = self.inner.get_opts(location, options).await;
        let len = match &result {
            Ok(r) if !head => r.range.end - r.range.start,
            _ => 0,
        };
        self.counters.update(self.topic_of(location), |c| {
            c.get_requests += 1;
            c.get_bytes += len;
        });
        result
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        // One request per range, as the stores without a multi-range GET issue them.
        let len: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.counters.update(self.topic_of(location), |c| {
            c.get_requests += ranges.len() as u64;
            c.get_bytes += len;
        });
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let counters = self.counters.clone();
        let topics_dir = self.topics_dir.clone();
        let counted = locations
            .map(move |location| {
                if let Ok(path) = &location {
                    let topic = layout::split_object_path(&topics_dir, path)
                        .map(|(tp, _)| tp.topic)
                        .unwrap_or_default();
                    counters.update(topic, |c| c.delete_requests += 1);
                }
                location
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let topic = prefix.map(|p| self.topic_of(p)).unwrap_or_default();
        let counters = self.counters.clone();
        counters.update(topic.clone(), |c| c.list_requests += 1);
        let mut seen = 0u64;
        self.inner
            .list(prefix)
            .inspect(move |_| {
                seen += 1;
                if seen % 1000 == 1 && seen > 1 {
                    counters.update(topic.clone(), |c| c.list_requests += 1);
                }
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let topic = prefix.map(|p| self.topic_of(p)).unwrap_or_default();
        self.counters.update(topic, |c| c.list_requests += 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.counters
            .update(self.topic_of(to), |c| c.put_requests += 1);
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    topic: String,
    counters: StoreCounters,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        self.counters.update(self.topic.clone(), |c| {
            c.put_requests += 1;
            c.put_bytes += len;
        });
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.counters
            .update(self.topic.clone(), |c| c.put_requests += 1);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.counters
            .update(self.topic.clone(), |c| c.delete_requests += 1);
        self.inner.abort().await
    }
}
