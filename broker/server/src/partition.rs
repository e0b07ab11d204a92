//! One topic-partition on this broker: its log behind a mutex, its high watermark, and a watch
//! channel that wakes long-polling fetches when the high watermark moves.
//!
//! With a replication factor of 1 the leader is the only in-sync replica, so the high watermark
//! follows the log end offset as soon as an append returns. Replication will make it lag.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use uuid::Uuid;

use shale_log::{AppendOutcome, Log, LogError, ReadResult};

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
    pub leader_epoch: i32,
    log: Mutex<Log>,
    high_watermark: watch::Sender<i64>,
    /// Set when another writer fenced this broker out of the partition's remote log: uploads
    /// for it stop (this broker is no longer its leader) until a restart reloads the manifest.
    pub remote_fenced: std::sync::atomic::AtomicBool,
    /// The remote tier's log start offset as the tiering side last saw it (-1: no remote
    /// segments known). With the local log's start it gives the partition's `log_start_offset`
    /// without an `.await` on the produce and fetch paths.
    remote_log_start_offset: AtomicI64,
}

impl Partition {
    pub fn new(tp: TopicPartition, topic_id: Uuid, leader_epoch: i32, log: Log) -> Arc<Self> {
        let (high_watermark, _) = watch::channel(log.log_end_offset());
        Arc::new(Self {
            tp,
            topic_id,
            leader_epoch,
            log: Mutex::new(log),
            high_watermark,
            remote_fenced: std::sync::atomic::AtomicBool::new(false),
            remote_log_start_offset: AtomicI64::new(-1),
        })
    }

    /// The log, for operations that need it whole. Never hold this across an `.await`.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        // A poisoned mutex means a panic mid-append; the log's own recovery is the only safe
        // way back, so propagate rather than continue on possibly torn state.
        self.log.lock().expect("partition log mutex poisoned")
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// Subscribes to high-watermark changes (for long-poll fetches).
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
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
        Ok(outcome)
    }

    /// Reads whole batches from `offset`, never past the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let hw = self.high_watermark();
        // Snapshot under the lock, read the files outside it so appends are not blocked.
        let reader = self.log().reader();
        reader.read(offset, max_bytes, hw, min_one_batch)
    }

    /// Records the remote tier's log start offset (`None`: no remote segments).
    pub fn set_remote_log_start_offset(&self, start: Option<i64>) {
        self.remote_log_start_offset
            .store(start.unwrap_or(-1), Ordering::Relaxed);
    }

    /// `log_start_offset` across both tiers, given the local log's start (`local_log_start_offset`):
    /// never above it, by construction.
    pub fn log_start_offset_with(&self, local_log_start_offset: i64) -> i64 {
        match self.remote_log_start_offset.load(Ordering::Relaxed) {
            remote if remote >= 0 => remote.min(local_log_start_offset),
            _ => local_log_start_offset,
        }
    }

    /// `log_start_offset` across both tiers.
    pub fn log_start_offset(&self) -> i64 {
        let local = self.log().log_start_offset();
        self.log_start_offset_with(local)
    }

    /// Called after anything that moves the log's end backwards or forwards outside `append`.
    pub fn reset_high_watermark(&self) {
        let leo = self.log().log_end_offset();
        self.high_watermark.send_replace(leo);
    }
}
