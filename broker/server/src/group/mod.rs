//! The group coordinator: classic consumer groups (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), committed offsets, and their durable home in `__consumer_offsets`.
//!
//! # Layout
//! - [`state`]: one group's state machine (Kafka's `ClassicGroup`): members, generations,
//!   protocol selection, static membership, join/sync phases and their deadlines, offsets.
//! - [`store`]: Kafka's record formats for `__consumer_offsets`, the partition of a group, the
//!   append path, and the replay that rebuilds every group on start.
//!
//! # Concurrency
//! Each group sits behind its own `std::sync::Mutex`; nothing awaits while holding it. A
//! JoinGroup or SyncGroup that has to wait registers a oneshot sender in the member and awaits
//! the receiver after the lock is released. Time-driven work (session expiry, the end of a join
//! or sync phase) runs in one tokio task per group that has a deadline; it sleeps until
//! [`ClassicGroup::next_deadline`] and is woken when a request changes the group. The lock order
//! is group, then the group map, never the reverse; appends to `__consumer_offsets` happen under
//! the group lock (as in Kafka), so the log and the in-memory state agree.
//!
//! # Loading
//! On start, every partition of `__consumer_offsets` is replayed once from its log start to its
//! high watermark ([`store::replay`]) before the listener opens, so no request ever sees a
//! half-loaded group. What bounds the replay today is the log itself; compaction of the topic
//! (keeping only the latest record per key) is what keeps it short over time.

pub mod state;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::Notify;

pub use state::{
    ClassicGroup, GroupConfig, GroupDescription, GroupState, JoinRequest, JoinResult, JoinedMember,
    MemberDescription, Now, Protocol, Reply, SyncRequest, SyncResult, CONSUMER_PROTOCOL_TYPE,
};
pub use store::{CoordinatorRecord, GroupLog, OffsetAndMetadata, OffsetsTopic, OFFSETS_TOPIC};

use crate::api_error::ApiError;
use crate::config::BrokerConfig;
use crate::partition::{Partition, TopicPartition};
use shale_log::LogError;

/// What the coordinator needs from the broker that hosts it: the partitions of its topic,
/// created on first use. The broker implements it, so that the coordinator does not depend on
/// the broker (which holds the coordinator).
pub trait OffsetsTopicHost {
    /// Creates `topic` with `partitions` partitions and `configs` if it does not exist yet (an
    /// existing topic is used as it is), and loads the partitions hosted here into the
    /// coordinator before returning.
    fn create_offsets_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<(), ApiError>;
}

/// The coordinator's settings, from the broker's.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub group: GroupConfig,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub session_timeout_ms_min: i32,
    pub session_timeout_ms_max: i32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval: Duration,
    /// `offsets.topic.num.partitions`, used when the topic is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`, the topic's `segment.bytes` when it is created.
    pub offsets_topic_segment_bytes: i64,
    /// Bound on decompressing one batch during replay.
    pub decompressed_batch_max_bytes: usize,
}

impl CoordinatorConfig {
    pub fn from_broker(c: &BrokerConfig) -> Self {
        Self {
            group: GroupConfig {
                initial_rebalance_delay: Duration::from_millis(
                    c.group_initial_rebalance_delay_ms.max(0) as u64,
                ),
                max_size: c.group_max_size.max(1) as usize,
            },
            session_timeout_ms_min: c.group_min_session_timeout_ms,
            session_timeout_ms_max: c.group_max_session_timeout_ms,
            offset_metadata_max_bytes: c.offset_metadata_max_bytes.max(0) as usize,
            offsets_retention_ms: i64::from(c.offsets_retention_minutes).saturating_mul(60_000),
            offsets_retention_check_interval: Duration::from_millis(
                c.offsets_retention_check_interval_ms.max(1) as u64,
            ),
            offsets_topic_num_partitions: c.offsets_topic_num_partitions,
            offsets_topic_segment_bytes: c.offsets_topic_segment_bytes,
            decompressed_batch_max_bytes: c.decompressed_batch_max_bytes,
        }
    }
}

/// One OffsetCommit, after the handler's per-partition checks.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub api_version: i16,
    pub offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

struct Slot {
    group: ClassicGroup,
    timer_running: bool,
}

struct GroupHandle {
    slot: Mutex<Slot>,
    wake: Notify,
}

impl GroupHandle {
    fn new(group: ClassicGroup) -> Arc<Self> {
        Arc::new(Self {
            slot: Mutex::new(Slot {
                group,
                timer_running: false,
            }),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().expect("group mutex poisoned")
    }
}

struct Shared {
    config: CoordinatorConfig,
    groups: Mutex<HashMap<String, Arc<GroupHandle>>>,
    /// Set once `__consumer_offsets` exists (at load, or on first use).
    log: RwLock<Option<Arc<dyn GroupLog>>>,
    topic_setup: Mutex<()>,
    /// The `__consumer_offsets` partitions whose groups are loaded (under `topic_setup`).
    loaded: Mutex<BTreeMap<i32, Arc<Partition>>>,
    /// The topic's partition count those were loaded with.
    loaded_count: std::sync::atomic::AtomicI32,
}

impl Shared {
    fn log(&self) -> Arc<dyn GroupLog> {
        self.log
            .read()
            .expect("coordinator log lock")
            .clone()
            .unwrap_or_else(|| Arc::new(store::NoLog))
    }

    fn loaded_count(&self) -> i32 {
        self.loaded_count.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_loaded_count(&self, count: i32) {
        self.loaded_count
            .store(count, std::sync::atomic::Ordering::Relaxed);
    }

    fn has_log(&self) -> bool {
        self.log.read().expect("coordinator log lock").is_some()
    }
}

/// The group coordinator of this broker: it coordinates the groups whose partition of
/// `__consumer_offsets` this broker leads.
pub struct GroupCoordinator {
    shared: Arc<Shared>,
}

type Res<T> = Result<T, ResponseError>;

impl GroupCoordinator {
    pub fn new(config: CoordinatorConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                groups: Mutex::new(HashMap::new()),
                log: RwLock::new(None),
                topic_setup: Mutex::new(()),
                loaded: Mutex::new(BTreeMap::new()),
                loaded_count: std::sync::atomic::AtomicI32::new(0),
            }),
        }
    }

    /// A coordinator writing to `log` (tests).
    pub fn with_log(config: CoordinatorConfig, log: Arc<dyn GroupLog>) -> Self {
        let c = Self::new(config);
        *c.shared.log.write().expect("coordinator log lock") = Some(log);
        c
    }

    /// Replays `topic` (every partition hosted here) into groups and starts writing to it.
    pub fn load(&self, topic: OffsetsTopic) -> Result<(), (TopicPartition, LogError)> {
        let _setup = self.shared.topic_setup.lock().expect("topic setup lock");
        let hosted = topic.hosted_partitions().clone();
        self.sync_hosted(topic.count(), hosted)
    }

    /// Makes this coordinator the coordinator of exactly the groups of `hosted`, the partitions
    /// of `__consumer_offsets` (of `count`, `None` while the topic does not exist) this broker
    /// leads: a partition gained is replayed and its groups loaded; the groups of a partition
    /// lost are dropped, their waiting members told NOT_COORDINATOR so they look it up again.
    /// The broker calls this whenever its view of the metadata changes.
    pub fn sync_offsets_partitions(
        &self,
        count: Option<i32>,
        hosted: BTreeMap<i32, Arc<Partition>>,
    ) -> Result<(), (TopicPartition, LogError)> {
        let _setup = self.shared.topic_setup.lock().expect("topic setup lock");
        match count {
            Some(count) => self.sync_hosted(count, hosted),
            None => {
                self.sync_hosted(0, BTreeMap::new())?;
                *self.shared.log.write().expect("coordinator log lock") = None;
                Ok(())
            }
        }
    }

    /// [`Self::sync_offsets_partitions`] with the setup lock held.
    fn sync_hosted(
        &self,
        count: i32,
        hosted: BTreeMap<i32, Arc<Partition>>,
    ) -> Result<(), (TopicPartition, LogError)> {
        let mut loaded = self.shared.loaded.lock().expect("loaded partitions lock");
        let same = |a: Option<&Arc<Partition>>, b: Option<&Arc<Partition>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        let lost: Vec<i32> = loaded
            .keys()
            .filter(|p| !same(loaded.get(p), hosted.get(p)) || self.shared.loaded_count() != count)
            .copied()
            .collect();
        let gained: Vec<Arc<Partition>> = hosted
            .iter()
            .filter(|(p, _)| !same(loaded.get(p), hosted.get(p)) || lost.contains(p))
            .map(|(_, partition)| partition.clone())
            .collect();
        if !lost.is_empty() {
            let old_count = self.shared.loaded_count();
            let dropped: Vec<Arc<GroupHandle>> = {
                let mut groups = self.shared.groups.lock().expect("group map lock");
                let ids: Vec<String> = groups
                    .keys()
                    .filter(|id| lost.contains(&store::partition_for(id, old_count.max(1))))
                    .cloned()
                    .collect();
                ids.iter().filter_map(|id| groups.remove(id)).collect()
            };
            for handle in &dropped {
                let mut slot = handle.lock();
                slot.group.fail_all_waiters(ResponseError::NotCoordinator);
                slot.group.mark_dead();
            }
            for p in &lost {
                loaded.remove(p);
            }
            tracing::info!(
                partitions = ?lost,
                groups = dropped.len(),
                "group coordinator unloaded {OFFSETS_TOPIC} partitions"
            );
        }
        // Replayed before the new log is published: until then the groups of a gained
        // partition are answered NOT_COORDINATOR (the old log does not host it), never from a
        // half-loaded state.
        let started = std::time::Instant::now();
        for partition in &gained {
            self.replay_into_map(partition)?;
            loaded.insert(partition.tp.partition, partition.clone());
        }
        if !gained.is_empty() {
            tracing::info!(
                partitions = gained.len(),
                hosted = loaded.len(),
                of = count,
                groups = self.shared.groups.lock().expect("group map lock").len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "group coordinator loaded {OFFSETS_TOPIC}"
            );
        }
        self.shared.set_loaded_count(count);
        *self.shared.log.write().expect("coordinator log lock") =
            Some(Arc::new(OffsetsTopic::hosted(count, loaded.clone())));
        if tokio::runtime::Handle::try_current().is_ok() {
            for handle in self.handles() {
                let mut slot = handle.lock();
                self.schedule(&handle, &mut slot);
            }
        }
        Ok(())
    }

    /// Replays one partition of `__consumer_offsets` and adds its groups.
    fn replay_into_map(
        &self,
        partition: &Arc<Partition>,
    ) -> Result<(), (TopicPartition, LogError)> {
        let started = std::time::Instant::now();
        let mut loaded = BTreeMap::new();
        let stats = store::replay(
            partition,
            self.shared.config.decompressed_batch_max_bytes,
            &mut loaded,
        )
        .map_err(|e| (partition.tp.clone(), e))?;
        let now = Now::get();
        let count = loaded.len();
        let mut groups = self.shared.groups.lock().expect("group map lock");
        for (id, g) in loaded {
            let group = ClassicGroup::from_loaded(&id, g.metadata, g.offsets, now);
            groups.insert(id, GroupHandle::new(group));
        }
        tracing::debug!(
            tp = %partition.tp,
            groups = count,
            batches = stats.batches,
            records = stats.records,
            skipped = stats.skipped,
            bytes = stats.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded a partition of {OFFSETS_TOPIC}"
        );
        Ok(())
    }

    /// Whether this broker coordinates `group_id`: it leads the group's partition of
    /// `__consumer_offsets` (or the topic does not exist yet and this is a cluster of one).
    pub fn coordinates(&self, group_id: &str) -> bool {
        self.shared.log().coordinates(group_id)
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.shared.config
    }

    /// Creates `__consumer_offsets` on first use (compacted, `offsets.topic.num.partitions`
    /// partitions), as Kafka does when the first group looks up its coordinator.
    pub fn ensure_offsets_topic(&self, host: &dyn OffsetsTopicHost) -> Result<(), ApiError> {
        if self.shared.has_log() {
            return Ok(());
        }
        // No lock here: the creation syncs the broker, which takes `topic_setup` to load the
        // partitions; two requests creating the topic at once are told apart by the metadata
        // log (the second finds it exists).
        let c = &self.shared.config;
        // Time and size retention never apply to a compact-only topic in Kafka, but the local
        // log applies them whatever the cleanup policy: switch them off here, or the offsets of
        // a group that stopped committing would vanish with their segment. Compaction is what
        // bounds this topic.
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                c.offsets_topic_segment_bytes.to_string(),
            ),
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
        ]);
        // The broker's metadata sync loads the partitions it hosts (see
        // `sync_offsets_partitions`) before the creation returns.
        host.create_offsets_topic(OFFSETS_TOPIC, c.offsets_topic_num_partitions, configs)?;
        Ok(())
    }

    fn get(&self, group_id: &str) -> Option<Arc<GroupHandle>> {
        self.shared
            .groups
            .lock()
            .expect("group map lock")
            .get(group_id)
            .cloned()
    }

    fn get_or_create(&self, group_id: &str) -> Arc<GroupHandle> {
        self.shared
            .groups
            .lock()
            .expect("group map lock")
            .entry(group_id.to_string())
            .or_insert_with(|| GroupHandle::new(ClassicGroup::new(group_id)))
            .clone()
    }

    fn handles(&self) -> Vec<Arc<GroupHandle>> {
        self.shared
            .groups
            .lock()
            .expect("group map lock")
            .values()
            .cloned()
            .collect()
    }

    /// Makes sure the group's timer task runs if the group has a deadline, and wakes it so it
    /// sees deadlines that moved.
    fn schedule(&self, handle: &Arc<GroupHandle>, slot: &mut Slot) {
        schedule(&self.shared, handle, slot);
    }

    /// Runs one step of a group's state machine, which may append the group's metadata to
    /// `__consumer_offsets`: on the blocking pool (crate::blocking), under the group's lock,
    /// then (re)schedules its timer. A caller's wait for the rebalance happens outside.
    async fn step<T: Send + 'static>(
        &self,
        handle: Arc<GroupHandle>,
        step: impl FnOnce(&mut ClassicGroup, &GroupConfig, &dyn GroupLog) -> T + Send + 'static,
    ) -> T {
        let shared = Arc::clone(&self.shared);
        crate::blocking::run(move || {
            let mut slot = handle.lock();
            let log = shared.log();
            let out = step(&mut slot.group, &shared.config.group, log.as_ref());
            schedule(&shared, &handle, &mut slot);
            out
        })
        .await
    }

    // --- Membership --------------------------------------------------------------------------

    pub async fn join_group(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        let c = &self.shared.config;
        if group_id.is_empty() || !fits_record(group_id) {
            return JoinResult::error(ResponseError::InvalidGroupId, req.member_id);
        }
        if !self.coordinates(group_id) {
            return JoinResult::error(ResponseError::NotCoordinator, req.member_id);
        }
        // Everything here ends up in a GroupMetadataValue, whose strings have int16 lengths;
        // flexible request versions can carry longer ones.
        let strings_fit = [&req.protocol_type, &req.client_id]
            .into_iter()
            .chain(req.group_instance_id.as_ref())
            .chain(req.protocols.iter().map(|p| &p.name))
            .all(|s| s.len() + MEMBER_ID_SUFFIX_BYTES <= i16::MAX as usize);
        if !strings_fit {
            return JoinResult::error(ResponseError::InvalidRequest, req.member_id);
        }
        if req.session_timeout_ms < c.session_timeout_ms_min
            || req.session_timeout_ms > c.session_timeout_ms_max
        {
            return JoinResult::error(ResponseError::InvalidSessionTimeout, req.member_id);
        }
        let handle = if req.member_id.is_empty() {
            self.get_or_create(group_id)
        } else {
            match self.get(group_id) {
                Some(h) => h,
                None => return JoinResult::error(ResponseError::UnknownMemberId, req.member_id),
            }
        };
        let member_id = req.member_id.clone();
        let reply = self
            .step(handle, move |group, cfg, log| {
                group.join(req, Now::get(), cfg, log)
            })
            .await;
        match reply {
            Reply::Now(r) => r,
            Reply::Wait(rx) => rx.await.unwrap_or_else(|_| {
                JoinResult::error(ResponseError::CoordinatorNotAvailable, member_id)
            }),
        }
    }

    pub async fn sync_group(&self, group_id: &str, req: SyncRequest) -> SyncResult {
        if group_id.is_empty() {
            return SyncResult::error(ResponseError::InvalidGroupId);
        }
        if !self.coordinates(group_id) {
            return SyncResult::error(ResponseError::NotCoordinator);
        }
        let Some(handle) = self.get(group_id) else {
            return SyncResult::error(ResponseError::UnknownMemberId);
        };
        let reply = self
            .step(handle, move |group, cfg, log| {
                group.sync(req, Now::get(), cfg, log)
            })
            .await;
        match reply {
            Reply::Now(r) => r,
            Reply::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ResponseError::CoordinatorNotAvailable)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Res<()> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.coordinates(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let handle = self.get(group_id).ok_or(ResponseError::UnknownMemberId)?;
        let mut slot = handle.lock();
        let result = slot
            .group
            .heartbeat(member_id, group_instance_id, generation_id, Now::get());
        self.schedule(&handle, &mut slot);
        result
    }

    /// LeaveGroup: a group-level error, or one result per leaving member.
    pub fn leave_group(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Res<Vec<Option<ResponseError>>> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.coordinates(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let Some(handle) = self.get(group_id) else {
            return Ok(vec![Some(ResponseError::UnknownMemberId); members.len()]);
        };
        let mut slot = handle.lock();
        let log = self.shared.log();
        let result = slot
            .group
            .leave(members, Now::get(), &self.shared.config.group, log.as_ref());
        self.schedule(&handle, &mut slot);
        result
    }

    // --- Offsets -----------------------------------------------------------------------------

    /// Stores committed offsets durably, then makes them visible.
    pub fn commit_offsets(&self, group_id: &str, commit: OffsetCommit) -> Res<()> {
        if !fits_record(group_id) {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.coordinates(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let handle = match self.get(group_id) {
            Some(h) => h,
            // No group: a commit without group management creates a simple group.
            None if commit.generation_id < 0 => self.get_or_create(group_id),
            None if commit.api_version >= 9 => return Err(ResponseError::GroupIdNotFound),
            None => return Err(ResponseError::IllegalGeneration),
        };
        let mut slot = handle.lock();
        slot.group.validate_offset_commit(
            &commit.member_id,
            commit.group_instance_id.as_deref(),
            commit.generation_id,
        )?;
        if commit.offsets.is_empty() {
            return Ok(());
        }
        let records: Vec<CoordinatorRecord> = commit
            .offsets
            .iter()
            .map(|(tp, o)| CoordinatorRecord::OffsetCommit {
                group: group_id.to_string(),
                tp: tp.clone(),
                value: Some(o.clone()),
            })
            .collect();
        self.shared.log().append(group_id, &records)?;
        for (tp, o) in commit.offsets {
            slot.group.offsets.insert(tp, o);
        }
        slot.group.touch_member(&commit.member_id, Now::get());
        self.schedule(&handle, &mut slot);
        Ok(())
    }

    /// Waits until what was appended for `group_id` is in the ISR of its offsets partition
    /// (Kafka appends commits with acks=all): a commit is answered only once a failover cannot
    /// lose it. At most `timeout`; the error is Kafka's for a commit that did not replicate.
    pub async fn replicated(&self, group_id: &str, timeout: Duration) -> Res<()> {
        let Some((partition, end, epoch)) = self.shared.log().replication_point(group_id) else {
            return Ok(());
        };
        match partition.wait_replicated(end, epoch, 1, timeout).await {
            Ok(()) => Ok(()),
            Err(crate::partition::ReplicationError::NotLeader) => {
                Err(ResponseError::NotCoordinator)
            }
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Committed offsets of a group: of `partitions`, or all of them when `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Vec<(TopicPartition, Option<OffsetAndMetadata>)> {
        let handle = self.get(group_id);
        let slot = handle.as_ref().map(|h| h.lock());
        let offsets = slot.as_ref().map(|s| &s.group.offsets);
        match partitions {
            Some(wanted) => wanted
                .iter()
                .map(|tp| (tp.clone(), offsets.and_then(|o| o.get(tp)).cloned()))
                .collect(),
            None => offsets
                .map(|o| {
                    o.iter()
                        .map(|(tp, v)| (tp.clone(), Some(v.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// OffsetDelete: a group-level error, or one result per partition.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Res<Vec<Option<ResponseError>>> {
        if !self.coordinates(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let handle = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let mut slot = handle.lock();
        let g = &mut slot.group;
        let results: Vec<Option<ResponseError>> = match g.state() {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => vec![None; partitions.len()],
            _ if g.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE) => partitions
                .iter()
                .map(|tp| {
                    g.is_subscribed_to(&tp.topic)
                        .then_some(ResponseError::GroupSubscribedToTopic)
                })
                .collect(),
            _ => return Err(ResponseError::NonEmptyGroup),
        };
        let deletable: Vec<&TopicPartition> = partitions
            .iter()
            .zip(&results)
            .filter(|(tp, r)| r.is_none() && g.offsets.contains_key(*tp))
            .map(|(tp, _)| tp)
            .collect();
        let tombstones: Vec<CoordinatorRecord> = deletable
            .iter()
            .map(|tp| CoordinatorRecord::OffsetCommit {
                group: group_id.to_string(),
                tp: (*tp).clone(),
                value: None,
            })
            .collect();
        self.shared.log().append(group_id, &tombstones)?;
        for tp in deletable {
            g.offsets.remove(tp);
        }
        Ok(results)
    }

    /// One pass of offset retention: tombstones for expired offsets, and empty groups with no
    /// offsets left are removed. Returns the number of offsets expired.
    pub fn expire_offsets(&self, now: Now) -> usize {
        let retention_ms = self.shared.config.offsets_retention_ms;
        let log = self.shared.log();
        let mut expired_total = 0;
        for handle in self.handles() {
            let mut slot = handle.lock();
            let g = &mut slot.group;
            if g.is(GroupState::Dead) {
                continue;
            }
            let expired = g.expired_offsets(now.wall_ms, retention_ms);
            let mut records: Vec<CoordinatorRecord> = expired
                .iter()
                .map(|tp| CoordinatorRecord::OffsetCommit {
                    group: g.group_id.clone(),
                    tp: tp.clone(),
                    value: None,
                })
                .collect();
            let remove_group = g.is(GroupState::Empty)
                && g.offsets.len() == expired.len()
                && g.member_count() == 0
                && g.next_deadline().is_none();
            if remove_group {
                records.push(CoordinatorRecord::GroupMetadata {
                    group: g.group_id.clone(),
                    value: None,
                });
            }
            if records.is_empty() {
                continue;
            }
            if let Err(e) = log.append(&g.group_id, &records) {
                tracing::warn!(group = %g.group_id, error = ?e, "cannot write expired-offset tombstones; retrying next pass");
                continue;
            }
            for tp in &expired {
                g.offsets.remove(tp);
            }
            expired_total += expired.len();
            if !expired.is_empty() {
                tracing::info!(group = %g.group_id, offsets = expired.len(), "expired committed offsets");
            }
            if remove_group {
                g.mark_dead();
                let id = g.group_id.clone();
                drop(slot);
                self.remove_from_map(&id, &handle);
                tracing::info!(group = %id, "removed empty group with no offsets");
            }
        }
        expired_total
    }

    fn remove_from_map(&self, group_id: &str, handle: &Arc<GroupHandle>) {
        let mut groups = self.shared.groups.lock().expect("group map lock");
        if groups.get(group_id).is_some_and(|h| Arc::ptr_eq(h, handle)) {
            groups.remove(group_id);
        }
    }

    // --- Admin -------------------------------------------------------------------------------

    /// DescribeGroups: `None` for a group that does not exist (reported as Dead).
    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let handle = self.get(group_id)?;
        let slot = handle.lock();
        Some(slot.group.describe())
    }

    pub fn list_groups(&self) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .handles()
            .iter()
            .filter_map(|h| {
                let slot = h.lock();
                let g = &slot.group;
                (!g.is(GroupState::Dead)).then(|| GroupListing {
                    group_id: g.group_id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DeleteGroups for one group: only an empty group can be deleted; its offsets and
    /// metadata get tombstones.
    pub fn delete_group(&self, group_id: &str) -> Res<()> {
        if !self.coordinates(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let handle = self.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let mut slot = handle.lock();
        let g = &mut slot.group;
        match g.state() {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let mut records: Vec<CoordinatorRecord> = g
            .offsets
            .keys()
            .map(|tp| CoordinatorRecord::OffsetCommit {
                group: group_id.to_string(),
                tp: tp.clone(),
                value: None,
            })
            .collect();
        records.push(CoordinatorRecord::GroupMetadata {
            group: group_id.to_string(),
            value: None,
        });
        self.shared.log().append(group_id, &records)?;
        g.offsets.clear();
        g.mark_dead();
        drop(slot);
        self.remove_from_map(group_id, &handle);
        tracing::info!(group = group_id, "group deleted");
        Ok(())
    }

    // --- Background --------------------------------------------------------------------------

    /// Runs until shutdown: starts the timers of groups loaded with members, expires offsets
    /// every `offsets.retention.check.interval.ms`, and on shutdown answers every waiting
    /// JoinGroup/SyncGroup with NOT_COORDINATOR so clients look for the coordinator again.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        for handle in self.handles() {
            let mut slot = handle.lock();
            self.schedule(&handle, &mut slot);
        }
        let period = self.shared.config.offsets_retention_check_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => break,
            }
            // Expiry appends tombstones: on the blocking pool.
            let coordinator = GroupCoordinator {
                shared: Arc::clone(&self.shared),
            };
            crate::blocking::run(move || coordinator.expire_offsets(Now::get())).await;
        }
        for handle in self.handles() {
            handle
                .lock()
                .group
                .fail_all_waiters(ResponseError::NotCoordinator);
        }
    }
}

/// A generated member id is the client id (or instance id), '-' and a UUID.
const MEMBER_ID_SUFFIX_BYTES: usize = 37;

/// Whether a string can be stored in a `__consumer_offsets` record (int16 length).
fn fits_record(s: &str) -> bool {
    s.len() <= i16::MAX as usize
}

/// Starts the group's timer task, or wakes it, if the group has a deadline.
fn schedule(shared: &Arc<Shared>, handle: &Arc<GroupHandle>, slot: &mut Slot) {
    if slot.group.next_deadline().is_none() {
        return;
    }
    if slot.timer_running {
        handle.wake.notify_one();
    } else {
        slot.timer_running = true;
        tokio::spawn(run_timer(shared.clone(), handle.clone()));
    }
}

/// One group's timer task: runs [`ClassicGroup::on_timer`] at each deadline until the group
/// has none left.
async fn run_timer(shared: Arc<Shared>, handle: Arc<GroupHandle>) {
    loop {
        // A rebalance completed by a timer appends the group's metadata: on the blocking pool.
        let (s, h) = (Arc::clone(&shared), Arc::clone(&handle));
        let next = crate::blocking::run(move || {
            let mut slot = h.lock();
            let log = s.log();
            slot.group
                .on_timer(Now::get(), &s.config.group, log.as_ref());
            match slot.group.next_deadline() {
                Some(d) if !slot.group.is(GroupState::Dead) => Some(d),
                _ => {
                    slot.timer_running = false;
                    None
                }
            }
        })
        .await;
        let Some(next) = next else {
            return;
        };
        // A deadline that is already due is handled on the next turn; the floor keeps a
        // zero-length timeout from spinning.
        let next = next.max(tokio::time::Instant::now() + Duration::from_millis(1));
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = handle.wake.notified() => {}
        }
    }
}
