//! Incremental fetch sessions (KIP-227): the broker remembers the partitions a consumer fetches,
//! so later requests name only what changed and responses carry only partitions with news.
//!
//! The cache is bounded (`max_incremental_fetch_session_cache_slots`); when it is full, the least
//! recently used session idle for over [`EVICTABLE_AFTER`] makes room, otherwise the new client
//! gets session id 0 and simply keeps sending full requests, which every client handles.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A session unused this long may be evicted to make room for a new one.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(60);

/// A partition of a session, with what the client last asked for and what we last told it.
#[derive(Debug, Clone)]
pub struct SessionPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
    /// The epoch of the last batch the fetcher has (v12+, followers: KIP-320); -1 unknown.
    pub last_fetched_epoch: i32,
    pub last_high_watermark: i64,
    pub last_log_start_offset: i64,
}

impl SessionPartition {
    pub fn same_partition(&self, topic: &str, topic_id: Uuid, partition: i32) -> bool {
        self.partition == partition
            && (self.topic == topic || (!topic_id.is_nil() && self.topic_id == topic_id))
    }
}

#[derive(Debug)]
pub struct Session {
    /// The epoch the next request must carry.
    pub epoch: i32,
    /// Fetch order: partitions that returned data move to the back so none starves when a
    /// response fills up.
    pub partitions: Vec<SessionPartition>,
    last_used: Instant,
}

impl Session {
    pub fn new(partitions: Vec<SessionPartition>) -> Self {
        Self {
            epoch: 1,
            partitions,
            last_used: Instant::now(),
        }
    }

    pub fn next_epoch(epoch: i32) -> i32 {
        if epoch == i32::MAX {
            1
        } else {
            epoch + 1
        }
    }
}

pub struct FetchSessionCache {
    slots: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    sessions: HashMap<i32, Session>,
    next_id: i32,
}

impl FetchSessionCache {
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            inner: Mutex::new(Inner {
                sessions: HashMap::new(),
                // Start away from 1 so a restarted broker is unlikely to reuse a client's old id.
                next_id: (Uuid::new_v4().as_u128() as u32 >> 2) as i32 + 1,
            }),
        }
    }

    /// Takes a session out of the cache for the duration of one request.
    pub fn take(&self, id: i32) -> Option<Session> {
        self.inner
            .lock()
            .expect("fetch session lock")
            .sessions
            .remove(&id)
    }

    pub fn remove(&self, id: i32) {
        self.inner
            .lock()
            .expect("fetch session lock")
            .sessions
            .remove(&id);
    }

    /// Puts a session (back) under `id`.
    pub fn put(&self, id: i32, mut session: Session) {
        session.last_used = Instant::now();
        self.inner
            .lock()
            .expect("fetch session lock")
            .sessions
            .insert(id, session);
    }

    /// Stores a new session; `None` when there is no room.
    pub fn create(&self, session: Session) -> Option<i32> {
        let mut inner = self.inner.lock().expect("fetch session lock");
        if inner.sessions.len() >= self.slots {
            let oldest = inner
                .sessions
                .iter()
                .filter(|(_, s)| s.last_used.elapsed() > EVICTABLE_AFTER)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id)?;
            inner.sessions.remove(&oldest);
        }
        let mut id = inner.next_id;
        while id == 0 || inner.sessions.contains_key(&id) {
            id = id.wrapping_add(1).max(1);
        }
        inner.next_id = id.wrapping_add(1).max(1);
        inner.sessions.insert(id, session);
        Some(id)
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .expect("fetch session lock")
            .sessions
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_ids_unique() {
        let cache = FetchSessionCache::new(2);
        let a = cache.create(Session::new(vec![])).unwrap();
        let b = cache.create(Session::new(vec![])).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, 0);
        // Full and nobody idle long enough: no new session.
        assert!(cache.create(Session::new(vec![])).is_none());
        let s = cache.take(a).unwrap();
        assert_eq!(s.epoch, 1);
        assert_eq!(cache.len(), 1);
        cache.put(a, s);
        assert_eq!(cache.len(), 2);
        assert_eq!(Session::next_epoch(i32::MAX), 1);
    }
}
