//! One topic-partition on this broker, and its whole log (Kafka's `UnifiedLog`): the local log
//! behind a mutex, the remote tier's handle once opened, the high watermark, and a watch channel
//! that wakes long-polling fetches when the high watermark moves. It answers every offset
//! question for both tiers ([`Partition::offsets`]) and checks their order whenever one moves:
//!
//! ```text
//! log_start_offset <= local_log_start_offset <= high_watermark <= log_end_offset
//!   (remote start,      (first local offset)      (= LSO: no      (next offset
//!    if tiered)                                     transactions)   to append)
//! ```
//!
//! With a replication factor of 1 the leader is the only in-sync replica, so the high watermark
//! follows the log end offset as soon as an append returns. Replication will make it lag.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use shale_formats::ids::{LeaderEpoch, Offset};
use shale_tiering::{RemoteLogManager, RemotePartition, TieringError, TopicIdPartition};

use tokio::sync::watch;
use uuid::Uuid;

use shale_log::{AppendOutcome, Log, LogError, ReadResult, SyncPoint};

/// A topic name and partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub leader_epoch: LeaderEpoch,
    log: Mutex<Log>,
    high_watermark: watch::Sender<Offset>,
    /// Set when another writer fenced this broker out of the partition's remote log: uploads
    /// for it stop (this broker is no longer its leader) until a restart reloads the manifest.
    pub remote_fenced: std::sync::atomic::AtomicBool,
    /// The remote tier's handle (its manifest in memory), once opened: tiered topics only.
    /// Offsets of the remote tier are read from it without an `.await` or a request.
    remote: OnceLock<Arc<RemotePartition>>,
}

/// A partition's offsets across both tiers, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    /// The first offset readable in either tier.
    pub log_start_offset: Offset,
    /// The first offset in the local log.
    pub local_log_start_offset: Offset,
    pub high_watermark: Offset,
    /// The last stable offset: the high watermark until transactions exist.
    pub last_stable_offset: Offset,
    pub log_end_offset: Offset,
}

impl LogOffsets {
    /// Whether `log_start <= local_log_start <= hw <= leo` (and LSO <= HW).
    pub fn ordered(&self) -> bool {
        self.log_start_offset <= self.local_log_start_offset
            && self.local_log_start_offset <= self.high_watermark
            && self.last_stable_offset <= self.high_watermark
            && self.high_watermark <= self.log_end_offset
    }
}

impl Partition {
    pub fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        leader_epoch: LeaderEpoch,
        log: Log,
    ) -> Arc<Self> {
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        Arc::new(Self {
            tp,
            topic_id,
            leader_epoch,
            log: Mutex::new(log),
            high_watermark,
            remote_fenced: std::sync::atomic::AtomicBool::new(false),
            remote: OnceLock::new(),
        })
    }

    /// The partition's name in the remote tier.
    pub fn topic_id_partition(&self) -> TopicIdPartition {
        TopicIdPartition::new(self.tp.topic.clone(), self.topic_id, self.tp.partition)
    }

    /// The remote tier's handle if it has been opened; never makes a request.
    pub fn remote_if_open(&self) -> Option<&Arc<RemotePartition>> {
        self.remote.get()
    }

    /// The remote tier's handle of this partition, opened (a LIST and a GET of its manifest)
    /// the first time and kept. The caller decides whether the topic is tiered.
    pub async fn remote(
        &self,
        rlm: &RemoteLogManager,
    ) -> Result<Arc<RemotePartition>, TieringError> {
        if let Some(remote) = self.remote.get() {
            return Ok(Arc::clone(remote));
        }
        let remote = rlm.partition(&self.topic_id_partition()).await?;
        // The manager hands every caller the same handle, so a race here sets the same one.
        let remote = Arc::clone(self.remote.get_or_init(|| remote));
        self.check_offsets("the remote tier was opened");
        Ok(remote)
    }

    /// The log, for operations that need it whole. Never hold this across an `.await`.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        // A poisoned mutex means a panic mid-append; the log's own recovery is the only safe
        // way back, so propagate rather than continue on possibly torn state.
        self.log.lock().expect("partition log mutex poisoned")
    }

    pub fn high_watermark(&self) -> Offset {
        *self.high_watermark.borrow()
    }

    /// Subscribes to high-watermark changes (for long-poll fetches).
    pub fn watch_high_watermark(&self) -> watch::Receiver<Offset> {
        self.high_watermark.subscribe()
    }

    /// Appends one produce payload as leader and advances the high watermark.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendOutcome, LogError> {
        let mut log = self.log();
        let outcome = log.append_as_leader(records, self.leader_epoch, now_ms)?;
        let leo = log.log_end_offset();
        drop(log);
        self.high_watermark.send_if_modified(|hw| {
            let moved = *hw != leo;
            *hw = leo;
            moved
        });
        self.check_offsets("append");
        Ok(outcome)
    }

    /// What an fsync must cover for everything appended so far to be durable (group commit).
    pub fn sync_point(&self) -> Option<SyncPoint> {
        self.log().sync_point()
    }

    /// Records that a sync point was synced.
    pub fn mark_synced(&self, end: Offset) {
        self.log().mark_synced(end);
    }

    /// Reads whole batches from `offset`, never past the high watermark.
    pub fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let hw = self.high_watermark();
        // Snapshot under the lock, read the files outside it so appends are not blocked.
        let reader = self.log().reader();
        reader.read(offset, max_bytes, hw, min_one_batch)
    }

    /// `log_start_offset` across both tiers, given the local log's start: the remote tier's
    /// start if it has segments, never above the local start.
    pub fn log_start_offset_with(&self, local_log_start_offset: Offset) -> Offset {
        match self.remote.get().and_then(|r| r.remote_log_start_offset()) {
            Some(remote) => remote.min(local_log_start_offset),
            None => local_log_start_offset,
        }
    }

    /// `log_start_offset` across both tiers.
    pub fn log_start_offset(&self) -> Offset {
        let local = self.log().log_start_offset();
        self.log_start_offset_with(local)
    }

    /// Every offset of the partition, across both tiers.
    pub fn offsets(&self) -> LogOffsets {
        // The high watermark is read under the log's lock: it only ever takes a log end offset
        // read under that lock, so it cannot pass the one read here.
        let (local_log_start_offset, log_end_offset, high_watermark) = {
            let log = self.log();
            (
                log.log_start_offset(),
                log.log_end_offset(),
                self.high_watermark(),
            )
        };
        LogOffsets {
            log_start_offset: self.log_start_offset_with(local_log_start_offset),
            local_log_start_offset,
            high_watermark,
            last_stable_offset: high_watermark,
            log_end_offset,
        }
    }

    /// Checks the order of the offsets after `what` moved one of them. Debug builds (every
    /// test) panic on a violation; release builds log it, since a wrong answer to one request
    /// is better than a broker that stops serving every partition.
    pub fn check_offsets(&self, what: &str) {
        let offsets = self.offsets();
        if !offsets.ordered() {
            tracing::error!(tp = %self.tp, ?offsets, what, "partition offsets out of order");
            debug_assert!(
                false,
                "{}: offsets out of order after {what}: {offsets:?}",
                self.tp
            );
        }
    }

    /// Called after anything that moves the log's end backwards or forwards outside `append`.
    pub fn reset_high_watermark(&self) {
        let leo = self.log().log_end_offset();
        self.high_watermark.send_replace(leo);
        self.check_offsets("a reset of the high watermark");
    }
}
