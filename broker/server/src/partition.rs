//! One topic-partition on this broker, and its whole log (Kafka's `UnifiedLog` and `Partition`):
//! the local log behind a mutex, the remote tier's handle once opened, this replica's role, the
//! high watermark, and watch channels that wake long-polling fetches (consumers on the high
//! watermark, followers on the log end). It answers every offset question for both tiers
//! ([`Partition::offsets`]) and checks their order whenever one moves:
//!
//! ```text
//! log_start_offset <= local_log_start_offset <= high_watermark <= log_end_offset
//!   (remote start,      (first local offset)      (= LSO: no      (next offset
//!    if tiered)                                     transactions)   to append)
//! ```
//!
//! # Roles (from the metadata image, [`Partition::apply_leadership`])
//!
//! ```text
//!            image: leader = me, epoch E            image: leader = other (or none)
//!  (any) ──────────────────────────────▶ Leader(E) ─────────────────────────────▶ Follower(E')
//!    ▲   epoch E starts at the log end;   │ appends stamped E; followers'     fetches from the
//!    │   followers' ends unknown          │ fetches move their ends, the HW    leader, appends
//!    └────────────────────────────────────┘ and the ISR wish list            its batches as is
//! ```
//!
//! The leader's high watermark is the smallest log end among itself and the ISR (KIP-497's
//! "maximal" ISR: a proposed change counts for the high watermark before it commits, an
//! expansion at once, a shrink only once committed), and only goes up. A follower's is the
//! leader's, capped by its own log end. An acks=all append waits until the high watermark
//! passes it ([`Partition::wait_replicated`]); a change of role ends the wait: a former
//! leader's unreplicated records may be truncated by its new leader.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use shale_formats::ids::{LeaderEpoch, Offset};
use shale_tiering::{RemoteLogManager, RemotePartition, TieringError, TopicIdPartition};

use tokio::sync::watch;
use uuid::Uuid;

use shale_log::{AppendInfo, AppendOutcome, Log, LogError, ReadResult, SyncPoint};

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
    /// This broker's id: the replica this partition is.
    local: i32,
    role: Mutex<Role>,
    log: Mutex<Log>,
    high_watermark: watch::Sender<Offset>,
    /// The local log end, for followers' long-polling fetches.
    log_end: watch::Sender<Offset>,
    /// Set when another writer fenced this broker out of the partition's remote log: uploads
    /// for it stop (this broker is no longer its leader) until a restart reloads the manifest.
    pub remote_fenced: std::sync::atomic::AtomicBool,
    /// The remote tier's handle (its manifest in memory), once opened: tiered topics only.
    /// Offsets of the remote tier are read from it without an `.await` or a request.
    remote: OnceLock<Arc<RemotePartition>>,
}

/// A partition's leadership as the metadata image has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// -1 for none.
    pub leader: i32,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// What this replica is.
#[derive(Debug, Clone)]
enum Role {
    Leader(LeaderState),
    /// Follows `leader` (-1: none elected) in `epoch`.
    Follower {
        leader: i32,
        epoch: LeaderEpoch,
    },
}

#[derive(Debug, Clone)]
struct LeaderState {
    epoch: LeaderEpoch,
    partition_epoch: i32,
    /// The ISR as committed in the metadata image.
    isr: Vec<i32>,
    /// An ISR proposed to the controller and not yet seen in the image.
    pending_isr: Option<Vec<i32>>,
    /// The log end when this epoch began: a follower joins the ISR only once it has reached it.
    epoch_start_offset: Offset,
    followers: BTreeMap<i32, FollowerState>,
}

#[derive(Debug, Clone, Copy)]
struct FollowerState {
    /// Its log end, as its last fetch said; unknown until it fetches in this epoch.
    log_end: Option<Offset>,
    /// When it last had everything the leader had (Kafka's lastCaughtUpTimeMs).
    caught_up_at: Instant,
    /// The leader's log end and the time of its previous fetch.
    previous_fetch: Option<(Offset, Instant)>,
}

impl LeaderState {
    /// The ISR the high watermark counts: the committed one with a pending expansion added.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            isr.extend(pending.iter().filter(|b| !self.isr.contains(b)));
        }
        isr
    }
}

/// Why an acks=all append was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationError {
    /// This broker stopped leading before the ISR had the records.
    NotLeader,
    /// The ISR had the records but was smaller than `min.insync.replicas` by then.
    NotEnoughReplicasAfterAppend { isr: usize, min_isr: usize },
    /// The timeout passed first.
    TimedOut,
}

/// An append refused before it was written.
#[derive(Debug)]
pub enum AppendError {
    /// This replica does not lead the partition (its leader, -1 if none).
    NotLeader {
        leader: i32,
    },
    /// acks=all and the ISR is smaller than `min.insync.replicas`.
    NotEnoughReplicas {
        isr: usize,
        min_isr: usize,
    },
    Log(LogError),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppendError::NotLeader { leader } => {
                write!(
                    f,
                    "this broker does not lead the partition; its leader is {leader}"
                )
            }
            AppendError::NotEnoughReplicas { isr, min_isr } => write!(
                f,
                "the ISR has {isr} replicas, fewer than min.insync.replicas ({min_isr})"
            ),
            AppendError::Log(e) => e.fmt(f),
        }
    }
}

impl From<LogError> for AppendError {
    fn from(e: LogError) -> Self {
        AppendError::Log(e)
    }
}

/// A follower's fetch as the leader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// Whether the high watermark moved.
    pub high_watermark_moved: bool,
    /// Whether the ISR should change now (see [`Partition::isr_change_wanted`]).
    pub isr_change_wanted: bool,
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
    /// A partition whose only replica is this broker (`local` 0), leading in `leader_epoch`:
    /// for tests and tools that have no cluster.
    pub fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        leader_epoch: LeaderEpoch,
        log: Log,
    ) -> Arc<Self> {
        let partition = Self::replica(tp, topic_id, 0, log);
        partition.apply_leadership(&Leadership {
            leader: 0,
            leader_epoch,
            partition_epoch: 0,
            replicas: vec![0],
            isr: vec![0],
        });
        partition
    }

    /// This broker's replica `local` of a partition, following no one until
    /// [`Self::apply_leadership`] says what it is.
    pub fn replica(tp: TopicPartition, topic_id: Uuid, local: i32, log: Log) -> Arc<Self> {
        let end = log.log_end_offset();
        // A restart does not know how far the ISR got: the high watermark restarts at the log
        // end and is corrected by the leader's (a follower) or by the ISR's fetches (a leader
        // caps it, below, at the smallest end it learns).
        let (high_watermark, _) = watch::channel(end);
        let (log_end, _) = watch::channel(end);
        Arc::new(Self {
            tp,
            topic_id,
            local,
            role: Mutex::new(Role::Follower {
                leader: -1,
                epoch: LeaderEpoch::UNDEFINED,
            }),
            log: Mutex::new(log),
            high_watermark,
            log_end,
            remote_fenced: std::sync::atomic::AtomicBool::new(false),
            remote: OnceLock::new(),
        })
    }

    fn role(&self) -> MutexGuard<'_, Role> {
        self.role.lock().expect("partition role mutex poisoned")
    }

    /// Takes the role the metadata image gives this replica. Returns whether it changed role
    /// or epoch (the caller then moves its fetcher).
    pub fn apply_leadership(&self, l: &Leadership) -> bool {
        let mut role = self.role();
        let now = Instant::now();
        let changed = match &mut *role {
            Role::Leader(state) if l.leader == self.local && state.epoch == l.leader_epoch => {
                // A pending change was based on the old partition epoch: committed (this is
                // it) or refused (something else changed the partition); either way it is over.
                if state.partition_epoch != l.partition_epoch {
                    state.pending_isr = None;
                }
                state.isr = l.isr.clone();
                state.partition_epoch = l.partition_epoch;
                false
            }
            Role::Follower { leader, epoch }
                if l.leader != self.local && *leader == l.leader && *epoch == l.leader_epoch =>
            {
                false
            }
            _ if l.leader == self.local => {
                let start = {
                    let mut log = self.log();
                    if let Err(e) = log.assign_epoch_at_end(l.leader_epoch) {
                        tracing::error!(tp = %self.tp, error = %e, "cannot record the start of a leader epoch");
                    }
                    log.log_end_offset()
                };
                let followers = l
                    .replicas
                    .iter()
                    .filter(|r| **r != self.local)
                    .map(|r| {
                        let state = FollowerState {
                            log_end: None,
                            caught_up_at: now,
                            previous_fetch: None,
                        };
                        (*r, state)
                    })
                    .collect();
                *role = Role::Leader(LeaderState {
                    epoch: l.leader_epoch,
                    partition_epoch: l.partition_epoch,
                    isr: l.isr.clone(),
                    pending_isr: None,
                    epoch_start_offset: start,
                    followers,
                });
                tracing::info!(tp = %self.tp, epoch = %l.leader_epoch, isr = ?l.isr, "leading");
                true
            }
            _ => {
                *role = Role::Follower {
                    leader: l.leader,
                    epoch: l.leader_epoch,
                };
                tracing::info!(tp = %self.tp, leader = l.leader, epoch = %l.leader_epoch, "following");
                true
            }
        };
        if let Role::Leader(state) = &mut *role {
            // Replicas that left the assignment are forgotten; new ones start unknown.
            state.followers.retain(|r, _| l.replicas.contains(r));
            for r in l.replicas.iter().filter(|r| **r != self.local) {
                state.followers.entry(*r).or_insert(FollowerState {
                    log_end: None,
                    caught_up_at: now,
                    previous_fetch: None,
                });
            }
        }
        let moved = self.advance_high_watermark(&role);
        drop(role);
        if changed && !moved {
            // Wakes acks=all waiters, which look at the role again.
            self.high_watermark.send_modify(|_| {});
        }
        changed
    }

    /// Whether this replica leads, and in which epoch.
    pub fn leader_epoch(&self) -> Option<LeaderEpoch> {
        match &*self.role() {
            Role::Leader(state) => Some(state.epoch),
            Role::Follower { .. } => None,
        }
    }

    /// The epoch this replica knows (leading or following).
    pub fn known_epoch(&self) -> LeaderEpoch {
        match &*self.role() {
            Role::Leader(state) => state.epoch,
            Role::Follower { epoch, .. } => *epoch,
        }
    }

    /// The committed ISR, if this replica leads.
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &*self.role() {
            Role::Leader(state) => Some(state.isr.clone()),
            Role::Follower { .. } => None,
        }
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

    /// Appends one produce payload as leader (refused if this replica does not lead, or, with
    /// `min_isr`, if the ISR is smaller) and advances the high watermark as far as the ISR
    /// allows. Returns the outcome and the leader epoch it was appended in.
    pub fn append_checked(
        &self,
        records: &mut [u8],
        now_ms: i64,
        min_isr: Option<usize>,
    ) -> Result<(AppendOutcome, LeaderEpoch), AppendError> {
        let role = self.role();
        let state = match &*role {
            Role::Leader(state) => state,
            Role::Follower { leader, .. } => {
                return Err(AppendError::NotLeader { leader: *leader })
            }
        };
        if let Some(min_isr) = min_isr.filter(|min| state.isr.len() < *min) {
            return Err(AppendError::NotEnoughReplicas {
                isr: state.isr.len(),
                min_isr,
            });
        }
        let epoch = state.epoch;
        let outcome = {
            let mut log = self.log();
            let outcome = log.append_as_leader(records, epoch, now_ms)?;
            self.log_end.send_replace(log.log_end_offset());
            outcome
        };
        self.advance_high_watermark(&role);
        drop(role);
        self.check_offsets("append");
        Ok((outcome, epoch))
    }

    /// [`Self::append_checked`] without the ISR check, for the broker's own writes (the group
    /// coordinator's).
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendOutcome, AppendError> {
        self.append_checked(records, now_ms, None)
            .map(|(outcome, _)| outcome)
    }

    /// Appends batches fetched from the leader (offsets and epochs as they are), then takes
    /// the leader's high watermark, capped by the new log end. Refused unless following.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        leader_high_watermark: Offset,
        now_ms: i64,
    ) -> Result<Option<AppendInfo>, AppendError> {
        let role = self.role();
        if matches!(&*role, Role::Leader(_)) {
            return Err(AppendError::NotLeader { leader: self.local });
        }
        let (info, end) = {
            let mut log = self.log();
            let info = if records.is_empty() {
                None
            } else {
                Some(log.append_as_follower(records, now_ms)?)
            };
            let end = log.log_end_offset();
            self.log_end.send_replace(end);
            (info, end)
        };
        let hw = leader_high_watermark.min(end);
        self.high_watermark.send_if_modified(|current| {
            let moved = *current != hw;
            *current = hw;
            moved
        });
        drop(role);
        if info.is_some() {
            self.check_offsets("a follower's append");
        }
        Ok(info)
    }

    /// Removes offsets from `offset` on (a follower diverged from its leader), keeping the high
    /// watermark at or below the new end.
    pub fn truncate_to(&self, offset: Offset) -> Result<bool, LogError> {
        let role = self.role();
        let (truncated, end) = {
            let mut log = self.log();
            let truncated = log.truncate_to(offset)?;
            (truncated, log.log_end_offset())
        };
        self.log_end.send_replace(end);
        self.high_watermark.send_if_modified(|hw| {
            let moved = *hw > end;
            *hw = (*hw).min(end);
            moved
        });
        drop(role);
        self.check_offsets("truncation");
        Ok(truncated)
    }

    /// Empties the log and restarts it at `offset` (a follower whose leader's log starts past
    /// its end).
    pub fn restart_at(&self, offset: Offset) -> Result<(), LogError> {
        let role = self.role();
        self.log().truncate_fully_and_start_at(offset)?;
        self.log_end.send_replace(offset);
        self.high_watermark.send_replace(offset);
        drop(role);
        self.check_offsets("a restart of the log");
        Ok(())
    }

    /// A follower's fetch at `fetch_offset` (it holds everything below): records its log end
    /// and whether it is caught up, and advances the high watermark. `None` if this replica
    /// does not lead or `replica` is not one of its followers.
    pub fn record_follower_fetch(
        &self,
        replica: i32,
        fetch_offset: Offset,
        lag_max: Duration,
    ) -> Option<FollowerFetch> {
        let mut role = self.role();
        let Role::Leader(state) = &mut *role else {
            return None;
        };
        let leader_end = self.log().log_end_offset();
        let now = Instant::now();
        let follower = state.followers.get_mut(&replica)?;
        follower.log_end = Some(fetch_offset.min(leader_end));
        if fetch_offset >= leader_end {
            follower.caught_up_at = now;
        } else if let Some((previous_end, at)) = follower.previous_fetch {
            if fetch_offset >= previous_end {
                follower.caught_up_at = follower.caught_up_at.max(at);
            }
        }
        follower.previous_fetch = Some((leader_end, now));
        let moved = self.advance_high_watermark(&role);
        let wanted = self.isr_change_locked(&role, now, lag_max).is_some();
        Some(FollowerFetch {
            high_watermark_moved: moved,
            isr_change_wanted: wanted,
        })
    }

    /// The ISR this leader should propose now, with the partition epoch it is based on: a
    /// follower caught up to the high watermark (and to this epoch's start) joins, one not
    /// caught up for `lag_max` leaves. `None` while another change is pending, or if nothing
    /// should change.
    pub fn isr_change_wanted(&self, lag_max: Duration) -> Option<(i32, Vec<i32>)> {
        let role = self.role();
        self.isr_change_locked(&role, Instant::now(), lag_max)
    }

    fn isr_change_locked(
        &self,
        role: &Role,
        now: Instant,
        lag_max: Duration,
    ) -> Option<(i32, Vec<i32>)> {
        let Role::Leader(state) = role else {
            return None;
        };
        if state.pending_isr.is_some() {
            return None;
        }
        let hw = self.high_watermark();
        let mut isr = state.isr.clone();
        for (id, f) in &state.followers {
            let in_isr = isr.contains(id);
            let caught_up = f
                .log_end
                .is_some_and(|end| end >= hw && end >= state.epoch_start_offset);
            if !in_isr && caught_up {
                isr.push(*id);
            } else if in_isr && now.duration_since(f.caught_up_at) > lag_max {
                isr.retain(|b| b != id);
            }
        }
        (isr != state.isr).then_some((state.partition_epoch, isr))
    }

    /// Notes that `isr` was proposed for `partition_epoch` (it counts for the high watermark
    /// if it adds replicas); `false` if the leadership moved on meanwhile.
    pub fn set_pending_isr(&self, partition_epoch: i32, isr: Option<Vec<i32>>) -> bool {
        let mut role = self.role();
        let Role::Leader(state) = &mut *role else {
            return false;
        };
        if state.partition_epoch != partition_epoch {
            return false;
        }
        state.pending_isr = isr;
        self.advance_high_watermark(&role);
        true
    }

    /// Moves a leader's high watermark up to the smallest log end in the maximal ISR.
    fn advance_high_watermark(&self, role: &Role) -> bool {
        let Role::Leader(state) = role else {
            return false;
        };
        let leader_end = self.log().log_end_offset();
        let mut candidate = leader_end;
        for id in state.maximal_isr() {
            if id == self.local {
                continue;
            }
            match state.followers.get(&id).and_then(|f| f.log_end) {
                Some(end) => candidate = candidate.min(end),
                // Not heard from in this epoch: the high watermark waits for it.
                None => return false,
            }
        }
        self.high_watermark.send_if_modified(|hw| {
            let moved = candidate > *hw;
            if moved {
                *hw = candidate;
            }
            moved
        })
    }

    /// Waits until the high watermark reaches `end` (an acks=all append's last offset + 1)
    /// while this replica leads in `epoch`, at most `timeout`; then checks the ISR against
    /// `min_isr`.
    pub async fn wait_replicated(
        &self,
        end: Offset,
        epoch: LeaderEpoch,
        min_isr: usize,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        let mut hw = self.high_watermark.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let isr = match &*self.role() {
                Role::Leader(state) if state.epoch == epoch => state.isr.len(),
                _ => return Err(ReplicationError::NotLeader),
            };
            if *hw.borrow_and_update() >= end {
                if isr < min_isr {
                    return Err(ReplicationError::NotEnoughReplicasAfterAppend { isr, min_isr });
                }
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, hw.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ReplicationError::NotLeader),
                Err(_) => return Err(ReplicationError::TimedOut),
            }
        }
    }

    /// Subscribes to changes of the local log end (a follower's long-poll on its leader).
    pub fn watch_log_end(&self) -> watch::Receiver<Offset> {
        self.log_end.subscribe()
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

    /// Reads whole batches from `offset` up to the log end (a follower's fetch).
    pub fn read_to_end(
        &self,
        offset: Offset,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let reader = self.log().reader();
        let end = reader.log_end_offset();
        reader.read(offset, max_bytes, end, min_one_batch)
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

    /// Called after anything that moves the log's end backwards or forwards outside `append`
    /// (a restored log's new start).
    pub fn reset_high_watermark(&self) {
        let leo = self.log().log_end_offset();
        self.log_end.send_replace(leo);
        self.high_watermark.send_replace(leo);
        self.check_offsets("a reset of the high watermark");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_formats::record::{BatchBuilder, BatchOptions};

    fn replica(dir: &std::path::Path, local: i32) -> Arc<Partition> {
        let log = Log::open(
            dir.join(format!("t-0-{local}")),
            shale_log::LogConfig::default(),
            0,
        )
        .unwrap();
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        Partition::replica(tp, Uuid::from_u128(1), local, log)
    }

    fn batch() -> Vec<u8> {
        let mut b = BatchBuilder::new(BatchOptions::default());
        b.append(0, None, Some(bytes::Bytes::from_static(b"v")), Vec::new());
        b.build().unwrap()
    }

    fn leadership(leader: i32, epoch: i32, partition_epoch: i32, isr: &[i32]) -> Leadership {
        Leadership {
            leader,
            leader_epoch: LeaderEpoch::new(epoch),
            partition_epoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    /// The leader's high watermark waits for every ISR member's fetch, moves to the smallest
    /// log end among them, and an acks=all wait ends when it passes; a follower refuses appends
    /// from producers; a lagging follower is proposed out of the ISR and a caught-up one in.
    #[tokio::test]
    async fn high_watermark_follows_the_isr() {
        let dir = tempfile::tempdir().unwrap();
        let leader = replica(dir.path(), 1);
        assert!(leader.apply_leadership(&leadership(1, 0, 0, &[1, 2, 3])));
        let (outcome, epoch) = leader.append_checked(&mut batch(), 0, Some(2)).unwrap();
        let AppendOutcome::Appended(info) = outcome else {
            panic!("a new batch")
        };
        let end = info.last_offset + 1;
        assert_eq!(
            leader.high_watermark(),
            Offset::ZERO,
            "no follower has fetched"
        );
        let lag = Duration::from_secs(30);
        leader.record_follower_fetch(2, end, lag).unwrap();
        assert_eq!(
            leader.high_watermark(),
            Offset::ZERO,
            "follower 3 is unknown"
        );
        let waiter = {
            let leader = Arc::clone(&leader);
            tokio::spawn(async move {
                leader
                    .wait_replicated(end, epoch, 2, Duration::from_secs(10))
                    .await
            })
        };
        let fetched = leader.record_follower_fetch(3, Offset::ZERO, lag).unwrap();
        assert!(!fetched.high_watermark_moved);
        leader.record_follower_fetch(3, end, lag).unwrap();
        assert_eq!(leader.high_watermark(), end);
        assert_eq!(waiter.await.unwrap(), Ok(()));

        // Follower 3 stops fetching: with no lag allowed it is proposed out; not twice while
        // the proposal is pending.
        let (partition_epoch, isr) = leader.isr_change_wanted(Duration::ZERO).unwrap();
        assert_eq!((partition_epoch, isr.clone()), (0, vec![1]));
        assert!(leader.set_pending_isr(0, Some(isr)));
        assert_eq!(leader.isr_change_wanted(Duration::ZERO), None);
        // The image commits an ISR of [1, 2] instead: follower 2 caught up joins again.
        leader.apply_leadership(&leadership(1, 0, 1, &[1, 2]));
        assert_eq!(leader.isr(), Some(vec![1, 2]));
        leader.record_follower_fetch(3, end, lag).unwrap();
        assert_eq!(leader.isr_change_wanted(lag), Some((1, vec![1, 2, 3])));

        // Not enough replicas: refused before the append.
        leader.apply_leadership(&leadership(1, 0, 2, &[1]));
        assert!(matches!(
            leader.append_checked(&mut batch(), 0, Some(2)),
            Err(AppendError::NotEnoughReplicas { isr: 1, min_isr: 2 })
        ));

        // Another broker leads in epoch 1: this one follows, refuses producers, and a waiter
        // of the old epoch is told it no longer leads.
        let waiter = {
            let leader = Arc::clone(&leader);
            tokio::spawn(async move {
                leader
                    .wait_replicated(end + 100, epoch, 1, Duration::from_secs(10))
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert!(leader.apply_leadership(&leadership(2, 1, 3, &[1, 2])));
        assert_eq!(waiter.await.unwrap(), Err(ReplicationError::NotLeader));
        assert!(matches!(
            leader.append_checked(&mut batch(), 0, None),
            Err(AppendError::NotLeader { leader: 2 })
        ));
        assert_eq!(leader.known_epoch(), LeaderEpoch::new(1));
    }

    /// A follower takes its leader's high watermark, capped by its own log end, and truncating
    /// lowers it with the log end.
    #[test]
    fn follower_high_watermark_is_capped_by_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let source = replica(dir.path(), 2);
        source.apply_leadership(&leadership(2, 0, 0, &[2]));
        for _ in 0..3 {
            source.append_checked(&mut batch(), 0, None).unwrap();
        }
        let records = source
            .read_to_end(Offset::ZERO, 1 << 20, true)
            .unwrap()
            .records;
        let follower = replica(dir.path(), 1);
        follower.apply_leadership(&leadership(2, 0, 0, &[2, 1]));
        follower
            .append_as_follower(&records, Offset::new(100), 0)
            .unwrap();
        assert_eq!(follower.high_watermark(), Offset::new(3));
        follower.truncate_to(Offset::new(1)).unwrap();
        assert_eq!(follower.high_watermark(), Offset::new(1));
        assert_eq!(follower.log().log_end_offset(), Offset::new(1));
    }
}
