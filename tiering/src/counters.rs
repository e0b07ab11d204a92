//! Requests and bytes per topic: the cache crate's [`CountingStore`] with its counters bucketed
//! by the topic directory in each object's path ([`TopicBuckets`]). The remote log and its cache
//! both talk to the store through it, so every request is counted, reads through the cache
//! included.
//!
//! [`RequestCounts`] sorts the cache's request kinds into S3's price classes: PUT-class are PUT,
//! each multipart part, multipart create/complete, and COPY; GET-class are GET and HEAD; LIST
//! counts one request per call plus one per further 1000 results (S3's page size); DELETE is one
//! per object. What counts as a request, and when bytes count, is
//! [`shale_cache::counting`]'s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use shale_cache::{CounterBuckets, RequestCounters};

use crate::layout;

/// The counting decorator the remote log uses; build it with
/// `CountingStore::with_buckets(store, TopicBuckets::new(prefix, counters))`.
pub type CountingStore = shale_cache::CountingStore<TopicBuckets>;

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

impl From<shale_cache::RequestCounts> for RequestCounts {
    /// Sorts request kinds into price classes (see the module docs).
    fn from(c: shale_cache::RequestCounts) -> Self {
        RequestCounts {
            put_requests: c.put + c.copy,
            put_bytes: c.bytes_written,
            get_requests: c.get + c.head,
            get_bytes: c.bytes_read,
            list_requests: c.list,
            delete_requests: c.delete,
        }
    }
}

/// Counts by topic name; paths outside `topics/` count under `""`.
#[derive(Debug, Clone, Default)]
pub struct StoreCounters {
    inner: Arc<Mutex<BTreeMap<String, Arc<RequestCounters>>>>,
}

impl StoreCounters {
    /// Every topic that made a request. A set whose only entries are failures the decorator
    /// could not attribute (a failed DELETE, counted under `None`) made no request and is left
    /// out.
    pub fn snapshot(&self) -> BTreeMap<String, RequestCounts> {
        self.inner
            .lock()
            .expect("counter lock")
            .iter()
            .map(|(topic, counters)| (topic.clone(), RequestCounts::from(counters.snapshot())))
            .filter(|(_, counts)| *counts != RequestCounts::default())
            .collect()
    }

    pub fn total(&self) -> RequestCounts {
        let mut total = RequestCounts::default();
        for counters in self.inner.lock().expect("counter lock").values() {
            total.add(&counters.snapshot().into());
        }
        total
    }

    fn topic(&self, topic: String) -> Arc<RequestCounters> {
        Arc::clone(
            self.inner
                .lock()
                .expect("counter lock")
                .entry(topic)
                .or_default(),
        )
    }
}

/// Picks a request's counters by the topic its path is under.
#[derive(Debug, Clone)]
pub struct TopicBuckets {
    topics_dir: Path,
    counters: StoreCounters,
}

impl TopicBuckets {
    /// Attributes paths below `prefix/topics/` to their topic, the rest to `""`.
    pub fn new(prefix: &Path, counters: StoreCounters) -> Self {
        Self {
            topics_dir: layout::topics_dir(prefix),
            counters,
        }
    }
}

impl CounterBuckets for TopicBuckets {
    fn counters_for(&self, location: Option<&Path>) -> Arc<RequestCounters> {
        let topic = location
            .and_then(|path| layout::split_object_path(&self.topics_dir, path))
            .map(|(tp, _)| tp.topic)
            .unwrap_or_default();
        self.counters.topic(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    const TOPIC_DIR: &str = "p/topics/orders-00000000-0000-0000-0000-00000000feed";

    /// Requests land under their topic in S3's price classes (HEAD is GET-class, COPY is
    /// PUT-class under the destination's topic, failed or not); paths outside any topic land
    /// under `""`.
    #[tokio::test]
    async fn counts_per_topic_in_price_classes() {
        let counters = StoreCounters::default();
        let store = CountingStore::with_buckets(
            Arc::new(InMemory::new()),
            TopicBuckets::new(&Path::from("p"), counters.clone()),
        );
        let segment = Path::from(format!("{TOPIC_DIR}/0/a.log"));
        store
            .put(&segment, PutPayload::from_static(b"0123456789"))
            .await
            .expect("put");
        store.get_range(&segment, 2..5).await.expect("get_range");
        store.head(&segment).await.expect("head");
        store
            .copy(&Path::from("p/probe"), &segment)
            .await
            .expect_err("no such source");
        store
            .put(&Path::from("p/probe"), PutPayload::from_static(b"x"))
            .await
            .expect("put");
        let _: Vec<_> = store
            .list(Some(&Path::from(format!("{TOPIC_DIR}/0"))))
            .try_collect()
            .await
            .expect("list");
        store.delete(&segment).await.expect("delete");

        let snapshot = counters.snapshot();
        let orders = RequestCounts {
            put_requests: 2,
            put_bytes: 10,
            get_requests: 2,
            get_bytes: 3,
            list_requests: 1,
            delete_requests: 1,
        };
        assert_eq!(snapshot.get("orders"), Some(&orders), "{snapshot:?}");
        let outside = RequestCounts {
            put_requests: 1,
            put_bytes: 1,
            ..RequestCounts::default()
        };
        assert_eq!(snapshot.get(""), Some(&outside), "{snapshot:?}");
        let mut total = orders;
        total.add(&outside);
        assert_eq!(counters.total(), total);
    }
}
