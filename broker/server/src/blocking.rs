//! The blocking boundary: the one place where async request handling meets file I/O.
//!
//! Every connection runs on Tokio's few worker threads. A `pwrite` into a busy disk, an `fsync`
//! on a segment roll or a metadata write, a directory sync or opening a log with its indexes
//! can take tens of milliseconds; on a worker that stalls every connection scheduled there. So
//! the broker's file I/O runs on Tokio's blocking pool, entered through this module only:
//!
//! - [`run`]: one blocking call, e.g. a partition's append (Produce) or local read (Fetch),
//!   a local offset lookup (ListOffsets), local DeleteRecords, local retention after upload.
//! - `handlers::on_blocking_pool`, built on [`run`]: a whole synchronous request handler whose
//!   work may write the metadata file or a log (CreateTopics, DeleteTopics, CreatePartitions,
//!   AlterConfigs, InitProducerId, Metadata with auto-creation, the group APIs that append to
//!   `__consumer_offsets`).
//!
//! - [`try_run`]: the same for background jobs that log a panic and carry on: log maintenance
//!   (retention, `flush.ms`), closing the logs at shutdown.
//!
//! Startup (`Broker::open`, which recovers every log) and reading a segment's indexes for an
//! upload go through [`run`] too. (The tiering crate's own blocking work, Parquet encoding and
//! the scrub's staging-file sweep, stays in that crate; its file reads use `tokio::fs`.)
//!
//! A leaf module: it knows nothing of the broker.
//! Code there may take the partition and metadata `std::sync::Mutex`es; async code must not
//! hold them across an `.await`.
//!
//! The group coordinator's own writes take the same road: JoinGroup and SyncGroup run the
//! group's state machine (which may append the group's metadata) through [`run`] and wait for
//! the rebalance outside it; group timers and offset expiry do too.
//!
//! A panic on the blocking pool is resumed in the caller, as if the call had run inline: the
//! connection task fails the same way it did before the boundary existed. If the caller is
//! dropped (the client went away), the blocking call still finishes: an append is never torn
//! by a cancelled request.

/// Runs `f` on the blocking pool and waits for it; a panic in `f` is returned as an error, for
/// background jobs that log it and carry on.
pub async fn try_run<T, F>(f: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await
}

/// Runs `f` on the blocking pool and waits for it.
pub async fn run<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels blocking tasks before they start.
        Err(e) => panic!("a blocking task was cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The call runs off the worker thread, and its value comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn runs_off_the_worker() {
        let worker = std::thread::current().id();
        let (value, thread) = run(|| (7, std::thread::current().id())).await;
        assert_eq!(value, 7);
        assert_ne!(thread, worker);
    }

    /// A panic on the blocking pool reaches the caller.
    #[tokio::test]
    async fn panics_are_resumed() {
        let caught = tokio::spawn(async { run(|| panic!("boom")).await }).await;
        assert!(caught.unwrap_err().is_panic());
    }
}
