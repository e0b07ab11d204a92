//! Group commit: an acks=all produce is answered once its batches are on disk, and one
//! fdatasync per partition covers every batch appended to it while the previous round ran.
//!
//! One thread (`shale-sync`) owns the rounds; it is part of the blocking boundary (see
//! [`crate::blocking`]): the only place a produce waits for an fsync. A produce handler appends
//! on the blocking pool as before, then hands the partitions it appended to (those whose topic
//! has `write.caching=false`) to [`GroupCommit::sync`] and awaits the answer without holding a
//! thread.
//!
//! # A round
//! ```text
//! idle --first request--> collect: take every request queued meanwhile
//! collect --> sync: per distinct partition, its sync point (active segment, log end) under the
//!             partition's lock; fdatasync outside it, partitions in parallel; appends go on
//! sync --> answer: each synced partition's recovery point moves to the synced end; each request
//!             gets the failures of its own partitions (none, usually)
//! answer --> idle, or straight to collect: what arrived during the sync is the next round
//! ```
//! A request's batches were appended before it was queued, so a sync point taken after it was
//! taken off the queue covers them. A partition with nothing unsynced (a roll or an earlier
//! round got there) costs no fsync.
//!
//! An fsync that fails is answered KAFKA_STORAGE_ERROR for that partition (the records stay in
//! the log; Linux may have dropped the dirty pages, so the answer must not claim durability).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::partition::{Partition, TopicPartition};

/// At most this many fdatasyncs of one round run at once.
const MAX_PARALLEL_SYNCS: usize = 4;

/// Partitions whose sync failed, with the reason.
pub type SyncFailures = Vec<(TopicPartition, String)>;

struct Request {
    partitions: Vec<Arc<Partition>>,
    done: oneshot::Sender<SyncFailures>,
}

/// Counters of the committer, for tests and (later) metrics.
#[derive(Debug, Default)]
pub struct GroupCommitStats {
    pub requests: AtomicU64,
    pub rounds: AtomicU64,
    pub fsyncs: AtomicU64,
}

/// The handle produce handlers use; the thread stops when the handle is dropped.
pub struct GroupCommit {
    requests: mpsc::Sender<Request>,
    pub stats: Arc<GroupCommitStats>,
}

impl GroupCommit {
    /// Starts the committer thread.
    pub fn start() -> std::io::Result<Self> {
        let (requests, queue) = mpsc::channel();
        let stats = Arc::new(GroupCommitStats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("shale-sync".into())
            .spawn(move || run(queue, &thread_stats))?;
        Ok(Self { requests, stats })
    }

    /// Waits until everything appended to `partitions` before this call is fsynced; returns
    /// the partitions whose fsync failed.
    pub async fn sync(&self, partitions: Vec<Arc<Partition>>) -> SyncFailures {
        if partitions.is_empty() {
            return Vec::new();
        }
        let names: Vec<TopicPartition> = partitions.iter().map(|p| p.tp.clone()).collect();
        let all_failed = |reason: &str| -> SyncFailures {
            names
                .iter()
                .map(|tp| (tp.clone(), reason.to_owned()))
                .collect()
        };
        let (done, answer) = oneshot::channel();
        if self.requests.send(Request { partitions, done }).is_err() {
            return all_failed("the fsync thread has stopped");
        }
        answer
            .await
            .unwrap_or_else(|_| all_failed("the fsync thread stopped before answering"))
    }
}

fn run(queue: mpsc::Receiver<Request>, stats: &GroupCommitStats) {
    while let Ok(first) = queue.recv() {
        let mut round = vec![first];
        round.extend(queue.try_iter());
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(round.len() as u64, Ordering::Relaxed);
        // A panic here would leave every later acks=all produce unanswered; answer this round
        // with the panic instead and keep going.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(&round, stats)));
        let failures = match outcome {
            Ok(failures) => failures,
            Err(_) => {
                tracing::error!("the group commit round panicked; its produces are failed");
                let every = round
                    .iter()
                    .flat_map(|r| r.partitions.iter().map(|p| p.tp.clone()))
                    .map(|tp| (tp, "the fsync round panicked".to_owned()));
                every.collect()
            }
        };
        for request in round {
            let mine: SyncFailures = failures
                .iter()
                .filter(|(tp, _)| request.partitions.iter().any(|p| &p.tp == tp))
                .cloned()
                .collect();
            // The producer may have gone away; its batches are durable all the same.
            let _ = request.done.send(mine);
        }
    }
}

/// Syncs every partition of `round` once; returns the failures.
fn commit(round: &[Request], stats: &GroupCommitStats) -> SyncFailures {
    let mut partitions: Vec<&Arc<Partition>> = Vec::new();
    for p in round.iter().flat_map(|r| &r.partitions) {
        if !partitions.iter().any(|q| Arc::ptr_eq(q, p)) {
            partitions.push(p);
        }
    }
    let points: Vec<_> = partitions
        .into_iter()
        .filter_map(|p| p.sync_point().map(|point| (p, point)))
        .collect();
    stats
        .fsyncs
        .fetch_add(points.len() as u64, Ordering::Relaxed);
    let chunk = points.len().div_ceil(MAX_PARALLEL_SYNCS).max(1);
    let results: Vec<Result<(), String>> = if points.len() <= 1 {
        points
            .iter()
            .map(|(_, point)| point.sync().map_err(|e| e.to_string()))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let workers: Vec<_> = points
                .chunks(chunk)
                .map(|slice| {
                    scope.spawn(move || {
                        slice
                            .iter()
                            .map(|(_, point)| point.sync().map_err(|e| e.to_string()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| {
                    w.join()
                        .unwrap_or_else(|_| vec![Err("an fsync panicked".to_owned()); chunk])
                })
                .collect()
        })
    };
    let mut failures = Vec::new();
    for ((partition, point), result) in points.iter().zip(results) {
        match result {
            Ok(()) => partition.mark_synced(point.end()),
            Err(reason) => {
                tracing::error!(tp = %partition.tp, %reason, "fsync for acks=all failed");
                failures.push((partition.tp.clone(), reason));
            }
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_formats::ids::{LeaderEpoch, Offset};
    use shale_formats::record::{BatchBuilder, BatchOptions};

    fn partition(dir: &std::path::Path, index: i32) -> Arc<Partition> {
        let log = shale_log::Log::open(
            dir.join(format!("t-{index}")),
            shale_log::LogConfig::default(),
            0,
        )
        .unwrap();
        Partition::new(
            TopicPartition {
                topic: "t".into(),
                partition: index,
            },
            uuid::Uuid::new_v4(),
            LeaderEpoch::new(0),
            log,
        )
    }

    fn append(p: &Partition) -> Offset {
        let mut b = BatchBuilder::new(BatchOptions::default());
        b.append(
            0,
            None,
            Some(bytes::Bytes::from_static(b"value")),
            Vec::new(),
        );
        let mut bytes = b.build().unwrap();
        p.append(&mut bytes, 0).unwrap();
        p.offsets().log_end_offset
    }

    /// Every waiter is answered only once its own appends are below the recovery point, and
    /// concurrent waiters share rounds and fsyncs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_share_fsyncs_and_return_durable() {
        let dir = tempfile::tempdir().unwrap();
        let partitions: Vec<_> = (0..3).map(|i| partition(dir.path(), i)).collect();
        let commit = Arc::new(GroupCommit::start().unwrap());
        let mut tasks = Vec::new();
        for n in 0..60 {
            let p = Arc::clone(&partitions[n % 3]);
            let commit = Arc::clone(&commit);
            tasks.push(tokio::spawn(async move {
                let end = crate::blocking::run({
                    let p = Arc::clone(&p);
                    move || append(&p)
                })
                .await;
                let failures = commit.sync(vec![Arc::clone(&p)]).await;
                assert!(failures.is_empty(), "{failures:?}");
                let durable = p.log().recovery_point();
                assert!(
                    durable >= end,
                    "answered at {durable} before {end} was synced"
                );
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(commit.stats.requests.load(Ordering::Relaxed), 60);
    }

    /// One round costs one fsync per distinct partition, however many requests name it.
    #[test]
    fn a_round_syncs_each_partition_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (partition(dir.path(), 0), partition(dir.path(), 1));
        append(&a);
        let mut round = Vec::new();
        let mut answers = Vec::new();
        for n in 0..21 {
            append(&b);
            let (done, answer) = oneshot::channel();
            let p = if n == 0 { &a } else { &b };
            round.push(Request {
                partitions: vec![Arc::clone(p), Arc::clone(&b)],
                done,
            });
            answers.push(answer);
        }
        let stats = GroupCommitStats::default();
        assert!(commit(&round, &stats).is_empty());
        assert_eq!(stats.fsyncs.load(Ordering::Relaxed), 2);
        let end = a.offsets().log_end_offset;
        assert_eq!(a.log().recovery_point(), end);
        let end = b.offsets().log_end_offset;
        assert_eq!(b.log().recovery_point(), end);
    }

    /// A partition with nothing unsynced costs no fsync.
    #[tokio::test]
    async fn nothing_to_sync_costs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), 0);
        let commit = GroupCommit::start().unwrap();
        append(&p);
        assert!(commit.sync(vec![Arc::clone(&p)]).await.is_empty());
        assert!(commit.sync(vec![Arc::clone(&p)]).await.is_empty());
        assert_eq!(commit.stats.fsyncs.load(Ordering::Relaxed), 1);
        assert_eq!(commit.stats.rounds.load(Ordering::Relaxed), 2);
    }
}
