//! One classic consumer group: its members, generation, selected protocol, committed offsets,
//! and the state machine Kafka's classic group coordinator runs:
//!
//! ```text
//!            first join                all members rejoined / join deadline
//!   Empty ─────────────▶ PreparingRebalance ─────────────▶ CompletingRebalance
//!     ▲                    ▲        │  no members left            │ leader's SyncGroup
//!     └────────────────────┼────────┘                             ▼
//!                          └──── join, leave, expiry ─────────  Stable
//!   any state ──▶ Dead (DeleteGroups, or an empty group whose offsets all expired)
//! ```
//!
//! Everything here is synchronous and runs under the group's mutex. Requests that must wait
//! (JoinGroup until the join phase ends, SyncGroup until the leader's assignment arrives) get a
//! [`Reply::Wait`] receiver that the coordinator awaits after releasing the mutex. Time comes in
//! as [`Now`]; the coordinator's per-group timer task calls [`ClassicGroup::on_timer`] at
//! [`ClassicGroup::next_deadline`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::store::{
    CoordinatorRecord, GroupLog, GroupMetadataValue, MemberMetadata, OffsetAndMetadata,
};
use crate::partition::TopicPartition;

/// Kafka's fixed timeout for a new member's first JoinGroup (KIP-394): a new member whose client
/// went away must not hold the join phase for a whole rebalance timeout.
pub const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The group's protocol type for Kafka consumers; their metadata is a ConsumerProtocolSubscription.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }

    pub const ALL: [GroupState; 5] = [
        Self::Empty,
        Self::PreparingRebalance,
        Self::CompletingRebalance,
        Self::Stable,
        Self::Dead,
    ];

    /// Kafka's `ClassicGroupState` transition table. Unlike most of our state machines this one
    /// does not admit self-transitions other than Dead → Dead, as in Kafka: every other
    /// transition starts a new phase (a new deadline or generation), so repeating one would be
    /// a bug rather than a retry.
    pub fn can_transition_to(self, next: GroupState) -> bool {
        use GroupState::*;
        match next {
            Empty => self == PreparingRebalance,
            PreparingRebalance => matches!(self, Stable | CompletingRebalance | Empty),
            CompletingRebalance => self == PreparingRebalance,
            Stable => self == CompletingRebalance,
            Dead => true,
        }
    }
}

/// The current time in both clocks: deadlines are monotonic (`tokio::time`, so tests can pause
/// it), stored timestamps are wall-clock ms.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub wall_ms: i64,
}

impl Now {
    pub fn get() -> Self {
        Self {
            instant: Instant::now(),
            wall_ms: crate::api_error::now_ms(),
        }
    }
}

/// Coordinator settings the state machine needs.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`.
    pub max_size: usize,
}

/// A result now, or a receiver the coordinator awaits outside the group lock.
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug, Clone)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A JoinGroup as the coordinator sees it, whatever the request version.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// v4+: a dynamic member's first join gets MEMBER_ID_REQUIRED and a member id.
    pub require_known_member_id: bool,
    /// v9+: a static leader rejoining a stable group gets the members with `skip_assignment`.
    pub supports_skip_assignment: bool,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub skip_assignment: bool,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: impl Into<String>) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.into(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// In the member's order of preference.
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    /// The member is removed if it has not heartbeated by then (unless it is waiting in a
    /// JoinGroup or SyncGroup, which keeps it alive, as in Kafka).
    heartbeat_deadline: Instant,
    /// Joined during this rebalance and never completed one: bounded by
    /// [`NEW_MEMBER_JOIN_TIMEOUT`] even while waiting in JoinGroup.
    is_new: bool,
    supports_skip_assignment: bool,
}

impl Member {
    fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols.len() == protocols.len()
            && self
                .protocols
                .iter()
                .zip(protocols)
                .all(|(a, b)| a.name == b.name && a.metadata == b.metadata)
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms.max(0) as u64)
    }

    fn is_awaiting(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }

    /// When this member expires, if it can.
    fn expiry(&self) -> Option<Instant> {
        if self.is_new {
            Some(self.heartbeat_deadline)
        } else if self.is_awaiting() {
            None
        } else {
            Some(self.heartbeat_deadline)
        }
    }
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

/// The initial-rebalance delay (Kafka's `InitialDelayedJoin`): a new group waits
/// `group.initial.rebalance.delay.ms` for more members, extended while members keep arriving,
/// up to the rebalance timeout.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    remaining: Duration,
}

pub struct ClassicGroup {
    pub group_id: String,
    state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    /// Dynamic members told MEMBER_ID_REQUIRED, until they rejoin or their session times out.
    pending_members: HashMap<String, Instant>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    join_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    new_member_added: bool,
    sync_deadline: Option<Instant>,
    /// Wall-clock ms of the last state change (Kafka's `currentStateTimestamp`): the base for
    /// offset retention once the group is empty.
    pub current_state_timestamp_ms: Option<i64>,
    /// Topics the members subscribe to (consumer protocol only); `None` when unknown.
    subscribed_topics: Option<BTreeSet<String>>,
    pub offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
}

type Res<T> = Result<T, ResponseError>;

impl ClassicGroup {
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            join_deadline: None,
            initial_delay: None,
            new_member_added: false,
            sync_deadline: None,
            current_state_timestamp_ms: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
        }
    }

    /// A group as replay left it: Stable with its members if it had any (they keep their
    /// generation and must heartbeat within their session timeout), Empty otherwise.
    pub fn from_loaded(
        group_id: &str,
        metadata: Option<GroupMetadataValue>,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        now: Now,
    ) -> Self {
        let mut g = Self::new(group_id);
        g.offsets = offsets;
        let Some(m) = metadata else {
            return g;
        };
        g.generation_id = m.generation;
        g.protocol_type = (!m.protocol_type.is_empty()).then_some(m.protocol_type);
        g.protocol_name = m.protocol;
        g.current_state_timestamp_ms =
            (m.current_state_timestamp_ms >= 0).then_some(m.current_state_timestamp_ms);
        let protocol = g.protocol_name.clone().unwrap_or_default();
        for mm in m.members {
            let member = Member {
                member_id: mm.member_id.clone(),
                group_instance_id: mm.group_instance_id.clone(),
                client_id: mm.client_id,
                client_host: mm.client_host,
                rebalance_timeout_ms: mm.rebalance_timeout_ms,
                session_timeout_ms: mm.session_timeout_ms,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocols: vec![Protocol {
                    name: protocol.clone(),
                    metadata: mm.subscription,
                }],
                assignment: mm.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline: now.instant
                    + Duration::from_millis(mm.session_timeout_ms.max(0) as u64),
                is_new: false,
                supports_skip_assignment: false,
            };
            if let Some(i) = &mm.group_instance_id {
                g.static_members.insert(i.clone(), mm.member_id.clone());
            }
            g.members.insert(mm.member_id, member);
        }
        if !g.members.is_empty() {
            g.leader_id = m.leader.filter(|l| g.members.contains_key(l));
            if g.leader_id.is_none() {
                g.leader_id = g.members.keys().next().cloned();
            }
            g.subscribed_topics = g.compute_subscribed_topics();
            g.state = GroupState::Stable;
        }
        g
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    fn transition(&mut self, next: GroupState) {
        assert!(
            self.state.can_transition_to(next),
            "group {}: invalid transition {:?} -> {:?}",
            self.group_id,
            self.state,
            next
        );
        tracing::debug!(group = %self.group_id, from = self.state.name(), to = next.name(), generation = self.generation_id, "group state change");
        self.state = next;
    }

    /// The longest rebalance timeout among members: how long a join phase may last.
    fn rebalance_timeout(&self) -> Duration {
        let ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        Duration::from_millis(ms.max(0) as u64)
    }

    // --- JoinGroup ---------------------------------------------------------------------------

    pub fn join(
        &mut self,
        req: JoinRequest,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Reply<JoinResult> {
        let member_id = req.member_id.clone();
        if self.is(GroupState::Dead) {
            // The group was deleted under us; the client looks the coordinator up again.
            return Reply::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                member_id,
            ));
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                member_id,
            ));
        }
        if member_id.is_empty() {
            self.join_new_member(req, now, cfg, log)
        } else {
            self.join_current_member(req, now, cfg, log)
        }
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol list; otherwise
    /// the type must match and one of the member's protocols must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.is(GroupState::Empty) {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|mp| mp.name == p.name))
            })
    }

    /// Whether a member not yet counted may join (Kafka's `acceptJoiningMember`).
    fn accepts_joining_member(&self, member_id: &str, cfg: &GroupConfig) -> bool {
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || self
                        .members
                        .values()
                        .filter(|m| m.awaiting_join.is_some())
                        .count()
                        < cfg.max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < cfg.max_size
            }
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Reply<JoinResult> {
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let new_member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if !self.accepts_joining_member(&new_member_id, cfg) {
            return Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
        }
        if let Some(instance) = req.group_instance_id.clone() {
            return match self.static_members.get(&instance).cloned() {
                Some(old_member_id) => self.replace_static_member(
                    &instance,
                    &old_member_id,
                    &new_member_id,
                    req,
                    now,
                    cfg,
                    log,
                ),
                None => self.add_member_and_rebalance(new_member_id, req, now, cfg, log),
            };
        }
        if req.require_known_member_id {
            // KIP-394: the client must come back with this id; until then it only holds a slot.
            self.pending_members.insert(
                new_member_id.clone(),
                now.instant + Duration::from_millis(req.session_timeout_ms.max(0) as u64),
            );
            return Reply::Now(JoinResult::error(
                ResponseError::MemberIdRequired,
                new_member_id,
            ));
        }
        self.add_member_and_rebalance(new_member_id, req, now, cfg, log)
    }

    fn join_current_member(
        &mut self,
        req: JoinRequest,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Reply<JoinResult> {
        let member_id = req.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            if !self.accepts_joining_member(&member_id, cfg) {
                self.pending_members.remove(&member_id);
                return Reply::Now(JoinResult::error(
                    ResponseError::GroupMaxSizeReached,
                    member_id,
                ));
            }
            return self.add_member_and_rebalance(member_id, req, now, cfg, log);
        }
        if let Err(e) = self.validate_member(&member_id, req.group_instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(e, member_id));
        }
        if let Some(instance) = &req.group_instance_id {
            if !self.static_members.contains_key(instance) {
                return Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, member_id));
            }
        }
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(req, now, cfg, log),
            GroupState::CompletingRebalance => {
                let member = &self.members[&member_id];
                if member.matches(&req.protocols) {
                    // The member lost our JoinGroup response: give it the current generation again.
                    Reply::Now(self.current_join_result(&member_id))
                } else {
                    self.update_member_and_rebalance(req, now, cfg, log)
                }
            }
            GroupState::Stable => {
                let member = &self.members[&member_id];
                if self.leader_id.as_deref() == Some(member_id.as_str())
                    || !member.matches(&req.protocols)
                {
                    // A leader's rejoin always rebalances: it is how a consumer leader reacts to
                    // metadata changes that its own subscription does not show.
                    self.update_member_and_rebalance(req, now, cfg, log)
                } else {
                    let mut r = self.current_join_result(&member_id);
                    r.members.clear();
                    Reply::Now(r)
                }
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, member_id))
            }
        }
    }

    /// The join response of the current generation for `member_id`.
    fn current_join_result(&self, member_id: &str) -> JoinResult {
        let is_leader = self.leader_id.as_deref() == Some(member_id);
        JoinResult {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            skip_assignment: false,
            members: if is_leader {
                self.current_member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    fn current_member_metadata(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Reply<JoinResult> {
        self.pending_members.remove(&member_id);
        let (tx, rx) = oneshot::channel();
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            heartbeat_deadline: now.instant + NEW_MEMBER_JOIN_TIMEOUT,
            is_new: true,
            supports_skip_assignment: req.supports_skip_assignment,
        };
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type);
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        // Only the very first generation of a group is worth waiting longer for.
        if self.is(GroupState::PreparingRebalance) && self.generation_id == 0 {
            self.new_member_added = true;
        }
        self.members.insert(member_id.clone(), member);
        tracing::info!(group = %self.group_id, member = %member_id, instance = ?req.group_instance_id, reason = ?req.reason, "member joins");
        self.rebalance_or_complete(now, cfg, log, "a member joined");
        Reply::Wait(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let member = self
            .members
            .get_mut(&req.member_id)
            .expect("validated member");
        member.protocols = req.protocols;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.supports_skip_assignment = req.supports_skip_assignment;
        if let Some(old) = member.awaiting_join.replace(tx) {
            // A retried JoinGroup (the client gave up on the first): the newer request wins.
            let _ = old.send(JoinResult::error(
                ResponseError::RebalanceInProgress,
                req.member_id.clone(),
            ));
        }
        tracing::debug!(group = %self.group_id, member = %req.member_id, reason = ?req.reason, "member rejoins");
        self.rebalance_or_complete(now, cfg, log, "a member rejoined");
        Reply::Wait(rx)
    }

    fn rebalance_or_complete(
        &mut self,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
        reason: &str,
    ) {
        if self.is(GroupState::PreparingRebalance) {
            self.try_complete_join(now, log);
        } else {
            self.maybe_prepare_rebalance(now, cfg, log, reason);
        }
    }

    /// A known static member joined with an unknown member id (its client restarted): the new
    /// member id replaces the old, which is fenced (KIP-345).
    #[allow(clippy::too_many_arguments)]
    fn replace_static_member(
        &mut self,
        instance: &str,
        old_member_id: &str,
        new_member_id: &str,
        req: JoinRequest,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Reply<JoinResult> {
        let old_leader = self.leader_id.clone();
        let mut member = self
            .members
            .remove(old_member_id)
            .expect("static member is a member");
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(
                ResponseError::FencedInstanceId,
                old_member_id,
            ));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        let old_protocols = std::mem::replace(&mut member.protocols, req.protocols);
        let old_timeouts = (member.rebalance_timeout_ms, member.session_timeout_ms);
        member.member_id = new_member_id.to_string();
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.supports_skip_assignment = req.supports_skip_assignment;
        member.heartbeat_deadline = now.instant + member.session_timeout();
        let (tx, rx) = oneshot::channel();
        member.awaiting_join = Some(tx);
        self.members.insert(new_member_id.to_string(), member);
        self.static_members
            .insert(instance.to_string(), new_member_id.to_string());
        if self.leader_id.as_deref() == Some(old_member_id) {
            self.leader_id = Some(new_member_id.to_string());
        }
        if self.pending_sync.remove(old_member_id) {
            self.pending_sync.insert(new_member_id.to_string());
        }
        tracing::info!(group = %self.group_id, instance, old = old_member_id, new = new_member_id, "static member replaced");
        match self.state {
            GroupState::Stable => {
                if self.protocol_name.as_deref() != Some(self.select_protocol().as_str()) {
                    self.maybe_prepare_rebalance(
                        now,
                        cfg,
                        log,
                        "a static member rejoined with other protocols",
                    );
                    return Reply::Wait(rx);
                }
                // Same protocol: no rebalance, but the new member id must be durable.
                let record = self.metadata_record(now);
                let member = self.members.get_mut(new_member_id).expect("just inserted");
                let tx = member.awaiting_join.take().expect("just set");
                if let Err(e) = log.append(&self.group_id, &[record]) {
                    // Put the old member back, as if this join never happened.
                    let mut member = self.members.remove(new_member_id).expect("just inserted");
                    member.member_id = old_member_id.to_string();
                    member.protocols = old_protocols;
                    (member.rebalance_timeout_ms, member.session_timeout_ms) = old_timeouts;
                    self.members.insert(old_member_id.to_string(), member);
                    self.static_members
                        .insert(instance.to_string(), old_member_id.to_string());
                    if self.leader_id.as_deref() == Some(new_member_id) {
                        self.leader_id = Some(old_member_id.to_string());
                    }
                    if self.pending_sync.remove(new_member_id) {
                        self.pending_sync.insert(old_member_id.to_string());
                    }
                    let _ = tx.send(JoinResult::error(e, ""));
                    return Reply::Wait(rx);
                }
                let was_leader = old_leader.as_deref() == Some(old_member_id);
                let skip = was_leader && self.members[new_member_id].supports_skip_assignment;
                let result = JoinResult {
                    error: None,
                    generation_id: self.generation_id,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    // Before KIP-814 the old leader id is returned so that the rejoined leader
                    // does not compute an assignment a stable group would never distribute.
                    leader: if skip {
                        new_member_id.to_string()
                    } else {
                        old_leader.unwrap_or_default()
                    },
                    member_id: new_member_id.to_string(),
                    skip_assignment: skip,
                    members: if skip {
                        self.current_member_metadata()
                    } else {
                        Vec::new()
                    },
                };
                let _ = tx.send(result);
            }
            GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(
                    now,
                    cfg,
                    log,
                    "a static member rejoined during the sync phase",
                );
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, log),
            GroupState::Empty | GroupState::Dead => {
                unreachable!(
                    "group {} has a static member while {:?}",
                    self.group_id, self.state
                )
            }
        }
        Reply::Wait(rx)
    }

    /// Kafka's fencing checks for a request naming a member: a static member whose instance id
    /// now belongs to another member id is fenced; an unknown member id is unknown.
    pub fn validate_member(&self, member_id: &str, group_instance_id: Option<&str>) -> Res<()> {
        if let Some(instance) = group_instance_id {
            if let Some(current) = self.static_members.get(instance) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    // --- Rebalance phases --------------------------------------------------------------------

    fn maybe_prepare_rebalance(
        &mut self,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
        reason: &str,
    ) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now, cfg, log, reason);
        }
    }

    fn prepare_rebalance(&mut self, now: Now, cfg: &GroupConfig, log: &dyn GroupLog, reason: &str) {
        if self.is(GroupState::CompletingRebalance) {
            // Members waiting for the assignment of a generation that will not complete rejoin.
            self.reset_and_propagate_assignment_error(ResponseError::RebalanceInProgress);
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        if self.is(GroupState::Empty) {
            let delay = cfg.initial_rebalance_delay;
            self.initial_delay = Some(InitialDelay {
                remaining: self.rebalance_timeout().saturating_sub(delay),
            });
            self.new_member_added = false;
            self.join_deadline = Some(now.instant + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now.instant + self.rebalance_timeout());
        }
        self.transition(GroupState::PreparingRebalance);
        tracing::info!(group = %self.group_id, generation = self.generation_id, members = self.members.len(), reason, "preparing to rebalance");
        self.try_complete_join(now, log);
    }

    /// Completes the join phase early once every member (and no pending one) has rejoined —
    /// except during the initial delay, which always runs its course.
    fn try_complete_join(&mut self, now: Now, log: &dyn GroupLog) {
        if !self.is(GroupState::PreparingRebalance) || self.initial_delay.is_some() {
            return;
        }
        if self.pending_members.is_empty()
            && self.members.values().all(|m| m.awaiting_join.is_some())
        {
            self.complete_join(now, log);
        }
    }

    /// The join deadline passed, or everyone rejoined.
    fn complete_join(&mut self, now: Now, log: &dyn GroupLog) {
        self.join_deadline = None;
        self.initial_delay = None;
        // Dynamic members that did not rejoin in time are gone; static ones keep their place.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.group_id, member = %id, "member did not rejoin in time; removed");
            self.remove_member(&id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Only static members that have not rejoined: give them another rebalance timeout
            // rather than completing a generation nobody is waiting for.
            self.join_deadline = Some(now.instant + self.rebalance_timeout());
            return;
        }
        self.generation_id += 1;
        self.current_state_timestamp_ms = Some(now.wall_ms);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = None;
            self.transition(GroupState::Empty);
            tracing::info!(group = %self.group_id, generation = self.generation_id, "group is empty");
            if let Err(e) = log.append(&self.group_id, &[self.metadata_record(now)]) {
                tracing::warn!(group = %self.group_id, error = ?e, "cannot store the empty group");
            }
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        self.subscribed_topics = self.compute_subscribed_topics();
        self.transition(GroupState::CompletingRebalance);
        tracing::info!(group = %self.group_id, generation = self.generation_id, protocol = ?self.protocol_name, members = self.members.len(), leader = ?self.leader_id, "join phase complete");
        let leader = self.leader_id.clone();
        let members = self.current_member_metadata();
        for member in self.members.values_mut() {
            if let Some(tx) = member.awaiting_join.take() {
                let is_leader = leader.as_deref() == Some(member.member_id.as_str());
                let _ = tx.send(JoinResult {
                    error: None,
                    generation_id: self.generation_id,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: leader.clone().unwrap_or_default(),
                    member_id: member.member_id.clone(),
                    skip_assignment: false,
                    members: if is_leader {
                        members.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
            member.is_new = false;
            member.heartbeat_deadline = now.instant + member.session_timeout();
            self.pending_sync.insert(member.member_id.clone());
        }
        self.sync_deadline = Some(now.instant + self.rebalance_timeout());
    }

    /// Keeps the leader if it rejoined, else picks a member that did. False if none did.
    fn elect_joined_leader(&mut self) -> bool {
        if let Some(l) = &self.leader_id {
            if self
                .members
                .get(l)
                .is_some_and(|m| m.awaiting_join.is_some())
            {
                return true;
            }
        }
        let next = self
            .members
            .values()
            .find(|m| m.awaiting_join.is_some())
            .map(|m| m.member_id.clone());
        let found = next.is_some();
        if found {
            tracing::info!(group = %self.group_id, leader = ?next, "new group leader");
        }
        self.leader_id = next;
        found
    }

    /// Kafka's protocol selection: among the protocols every member supports, each member votes
    /// for its most preferred one; the most votes win (ties go to the leader's preference order).
    fn select_protocol(&self) -> String {
        let leader = self
            .leader_id
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next());
        let Some(leader) = leader else {
            return String::new();
        };
        let candidates: Vec<&str> = leader
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|p| p.name == *name))
            })
            .collect();
        if candidates.is_empty() {
            // Join validation prevents this; a group replayed from an older broker could still
            // get here. Keep what the group had.
            tracing::warn!(group = %self.group_id, "no protocol is supported by every member");
            return self.protocol_name.clone().unwrap_or_else(|| {
                leader
                    .protocols
                    .first()
                    .map(|p| p.name.clone())
                    .unwrap_or_default()
            });
        }
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some(p) = m
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let best = candidates
            .iter()
            .copied()
            .max_by(|a, b| {
                let (va, vb) = (
                    votes.get(a).copied().unwrap_or(0),
                    votes.get(b).copied().unwrap_or(0),
                );
                // max_by keeps the last of equals; reversing the position keeps the first.
                va.cmp(&vb).then_with(|| {
                    let pa = candidates.iter().position(|c| c == a);
                    let pb = candidates.iter().position(|c| c == b);
                    pb.cmp(&pa)
                })
            })
            .expect("candidates is not empty");
        best.to_string()
    }

    /// The topics every consumer member subscribes to, from their ConsumerProtocolSubscription;
    /// `None` for another protocol type or metadata we cannot parse.
    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let mut buf = m.metadata_for(protocol);
            if buf.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([buf[0], buf[1]]);
            let _ = bytes::Buf::get_i16(&mut buf);
            // Newer subscription versions only append fields: read what we know.
            let sub = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(t) => t.contains(topic),
            // Unknown: assume subscribed, so nothing is deleted from under a consumer.
            None => true,
        }
    }

    fn reset_and_propagate_assignment_error(&mut self, error: ResponseError) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(error));
            }
        }
    }

    /// Removes a member with no further effect on the group's state.
    fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        Some(member)
    }

    /// Removes a member (left, expired, fenced) and moves the group on: a stable or syncing
    /// group rebalances; a joining group may now be complete.
    fn remove_member_and_update(
        &mut self,
        member_id: &str,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
        reason: &str,
    ) {
        if let Some(mut member) = self.remove_member(member_id) {
            tracing::info!(group = %self.group_id, member = member_id, reason, "member removed");
            if let Some(tx) = member.awaiting_join.take() {
                let _ = tx.send(JoinResult::error(ResponseError::UnknownMemberId, ""));
            }
            if let Some(tx) = member.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(ResponseError::UnknownMemberId));
            }
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, cfg, log, reason)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, log),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // --- SyncGroup ---------------------------------------------------------------------------

    pub fn sync(
        &mut self,
        req: SyncRequest,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Reply<SyncResult> {
        if self.is(GroupState::Dead) {
            return Reply::Now(SyncResult::error(ResponseError::CoordinatorNotAvailable));
        }
        if let Err(e) = self.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            return Reply::Now(SyncResult::error(e));
        }
        if req.generation_id != self.generation_id {
            return Reply::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        if req.protocol_type.is_some() && req.protocol_type != self.protocol_type
            || req.protocol_name.is_some() && req.protocol_name != self.protocol_name
        {
            return Reply::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty => Reply::Now(SyncResult::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let member = self
                    .members
                    .get_mut(&req.member_id)
                    .expect("validated member");
                if let Some(old) = member.awaiting_sync.replace(tx) {
                    let _ = old.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
                self.remove_pending_sync(&req.member_id);
                if self.leader_id.as_deref() == Some(req.member_id.as_str()) {
                    self.apply_leader_assignment(req.assignments, now, cfg, log);
                }
                Reply::Wait(rx)
            }
            GroupState::Stable => {
                self.remove_pending_sync(&req.member_id);
                let member = self
                    .members
                    .get_mut(&req.member_id)
                    .expect("validated member");
                member.heartbeat_deadline = now.instant + member.session_timeout();
                Reply::Now(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::Dead => unreachable!("checked above"),
        }
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    /// The leader's SyncGroup: store the assignment, then hand every waiting member its part.
    fn apply_leader_assignment(
        &mut self,
        assignments: Vec<(String, Bytes)>,
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) {
        let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
        for m in self.members.values_mut() {
            // Members the leader left out get an empty assignment, as in Kafka.
            m.assignment = given.remove(&m.member_id).unwrap_or_default();
        }
        if !given.is_empty() {
            tracing::debug!(group = %self.group_id, unknown = ?given.keys().collect::<Vec<_>>(), "leader assigned to members not in the group");
        }
        match log.append(&self.group_id, &[self.metadata_record(now)]) {
            Ok(()) => {
                for m in self.members.values_mut() {
                    if let Some(tx) = m.awaiting_sync.take() {
                        let _ = tx.send(SyncResult {
                            error: None,
                            protocol_type: self.protocol_type.clone(),
                            protocol_name: self.protocol_name.clone(),
                            assignment: m.assignment.clone(),
                        });
                        m.heartbeat_deadline = now.instant + m.session_timeout();
                    }
                }
                self.transition(GroupState::Stable);
                tracing::info!(group = %self.group_id, generation = self.generation_id, "group is stable");
            }
            Err(e) => {
                tracing::warn!(group = %self.group_id, error = ?e, "cannot store the group assignment");
                self.reset_and_propagate_assignment_error(e);
                self.prepare_rebalance(now, cfg, log, "the group assignment could not be stored");
            }
        }
    }

    /// The group as a `GroupMetadataValue` record.
    pub fn metadata_record(&self, now: Now) -> CoordinatorRecord {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        CoordinatorRecord::GroupMetadata {
            group: self.group_id.clone(),
            value: Some(GroupMetadataValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation: self.generation_id,
                protocol: self.protocol_name.clone(),
                leader: self.leader_id.clone(),
                current_state_timestamp_ms: self.current_state_timestamp_ms.unwrap_or(now.wall_ms),
                members: self
                    .members
                    .values()
                    .map(|m| MemberMetadata {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        session_timeout_ms: m.session_timeout_ms,
                        subscription: m.metadata_for(protocol),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            }),
        }
    }

    // --- Heartbeat, LeaveGroup ---------------------------------------------------------------

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now: Now,
    ) -> Res<()> {
        if self.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        self.validate_member(member_id, group_instance_id)?;
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        let member = self.members.get_mut(member_id).expect("validated member");
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                member.heartbeat_deadline = now.instant + member.session_timeout();
                Err(ResponseError::RebalanceInProgress)
            }
            // Consumers heartbeat between their JoinGroup and SyncGroup responses too.
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.heartbeat_deadline = now.instant + member.session_timeout();
                Ok(())
            }
        }
    }

    /// Keeps a member alive on a successful offset commit in a stable group, as Kafka does.
    pub fn touch_member(&mut self, member_id: &str, now: Now) {
        if self.is(GroupState::Stable) {
            if let Some(m) = self.members.get_mut(member_id) {
                m.heartbeat_deadline = now.instant + m.session_timeout();
            }
        }
    }

    /// LeaveGroup for a batch of `(member_id, group_instance_id)`: one result per member.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: Now,
        cfg: &GroupConfig,
        log: &dyn GroupLog,
    ) -> Res<Vec<Option<ResponseError>>> {
        if self.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(leaving.len());
        for (member_id, instance) in leaving {
            let result = match instance {
                Some(instance) => match self.static_members.get(instance).cloned() {
                    None => Some(ResponseError::UnknownMemberId),
                    Some(current) if !member_id.is_empty() && *member_id != current => {
                        Some(ResponseError::FencedInstanceId)
                    }
                    Some(current) => {
                        self.remove_member_and_update(
                            &current,
                            now,
                            cfg,
                            log,
                            "static member left the group",
                        );
                        None
                    }
                },
                None if self.pending_members.remove(member_id).is_some() => {
                    self.try_complete_join(now, log);
                    None
                }
                None if !self.members.contains_key(member_id) => {
                    Some(ResponseError::UnknownMemberId)
                }
                None => {
                    self.remove_member_and_update(
                        member_id,
                        now,
                        cfg,
                        log,
                        "member left the group",
                    );
                    None
                }
            };
            results.push(result);
        }
        Ok(results)
    }

    // --- Timers ------------------------------------------------------------------------------

    /// The earliest moment [`Self::on_timer`] has work to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self.members.values().filter_map(Member::expiry);
        let pending = self.pending_members.values().copied();
        let join = self
            .join_deadline
            .filter(|_| self.is(GroupState::PreparingRebalance));
        let sync = self.sync_deadline.filter(|_| {
            matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            )
        });
        members.chain(pending).chain(join).chain(sync).min()
    }

    /// Expires sessions and pending members, and ends join and sync phases whose time is up.
    pub fn on_timer(&mut self, now: Now, cfg: &GroupConfig, log: &dyn GroupLog) {
        let t = now.instant;
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, d)| **d <= t)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            tracing::debug!(group = %self.group_id, member = %id, "pending member did not rejoin in time");
            self.pending_members.remove(&id);
            self.try_complete_join(now, log);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expiry().is_some_and(|d| d <= t))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update(&id, now, cfg, log, "session timed out");
        }
        if self.is(GroupState::PreparingRebalance) && self.join_deadline.is_some_and(|d| d <= t) {
            match self.initial_delay {
                Some(delay) if self.new_member_added && !delay.remaining.is_zero() => {
                    // Members are still arriving: wait a little longer, within the rebalance
                    // timeout.
                    let next = cfg.initial_rebalance_delay.min(delay.remaining);
                    self.initial_delay = Some(InitialDelay {
                        remaining: delay.remaining - next,
                    });
                    self.new_member_added = false;
                    self.join_deadline = Some(t + next);
                }
                _ => self.complete_join(now, log),
            }
        }
        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && self.sync_deadline.is_some_and(|d| d <= t)
        {
            self.sync_deadline = None;
            let late: Vec<String> = self.pending_sync.drain().collect();
            if !late.is_empty() {
                for id in &late {
                    tracing::info!(group = %self.group_id, member = %id, "member did not send SyncGroup in time; removed");
                    if let Some(mut m) = self.remove_member(id) {
                        if let Some(tx) = m.awaiting_sync.take() {
                            let _ = tx.send(SyncResult::error(ResponseError::UnknownMemberId));
                        }
                    }
                }
                self.prepare_rebalance(now, cfg, log, "members did not sync in time");
            }
        }
    }

    /// Answers every waiting request with `error` (the coordinator is shutting down).
    pub fn fail_all_waiters(&mut self, error: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult::error(error, m.member_id.clone()));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(error));
            }
        }
    }

    // --- Offsets -----------------------------------------------------------------------------

    /// Kafka's `ClassicGroup.validateOffsetCommit` (non-transactional).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Res<()> {
        if self.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.is(GroupState::Empty) {
            // A simple commit: the group is not managed by this coordinator.
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if !self.is(GroupState::Empty) {
            return Err(ResponseError::UnknownMemberId);
        }
        if self.is(GroupState::CompletingRebalance) {
            // The member has its new generation but not its assignment yet.
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Offsets whose retention has passed (Kafka's `getExpiredOffsets`): all offsets of an empty
    /// group, counted from when it became empty; in a stable consumer group, offsets of topics
    /// no member subscribes to any more; an explicit expire timestamp always wins.
    pub fn expired_offsets(&self, now_ms: i64, retention_ms: i64) -> Vec<TopicPartition> {
        let eligible = |tp: &TopicPartition| -> Option<i64> {
            match self.state {
                GroupState::Empty => Some(match self.protocol_type {
                    Some(_) => self.current_state_timestamp_ms.unwrap_or(i64::MIN),
                    None => i64::MIN,
                }),
                GroupState::Stable
                    if self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
                        && self.subscribed_topics.is_some()
                        && !self.is_subscribed_to(&tp.topic) =>
                {
                    Some(i64::MIN)
                }
                _ => None,
            }
        };
        self.offsets
            .iter()
            .filter(|(tp, o)| {
                let Some(base) = eligible(tp) else {
                    return false;
                };
                match o.expire_timestamp_ms {
                    Some(expire) => now_ms >= expire,
                    None => now_ms.saturating_sub(base.max(o.commit_timestamp_ms)) >= retention_ms,
                }
            })
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Dead is terminal: the coordinator drops the group from its map at the same time.
    pub fn mark_dead(&mut self) {
        self.fail_all_waiters(ResponseError::CoordinatorNotAvailable);
        self.transition(GroupState::Dead);
    }

    // --- Describe ----------------------------------------------------------------------------

    /// Kafka's group summary: metadata and assignments only in a stable group.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.is(GroupState::Stable);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata_for(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}
