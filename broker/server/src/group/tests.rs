//! The group coordinator against an in-memory log, with tokio's clock paused so session,
//! rebalance and initial-delay timeouts run in virtual time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError as E;
use shale_formats::ids::LeaderEpoch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};

use super::state::GroupState as S;
use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const INITIAL_DELAY_MS: u64 = 3_000;

#[derive(Default)]
struct MemLog {
    records: Mutex<Vec<CoordinatorRecord>>,
    fail: AtomicBool,
}

impl GroupLog for MemLog {
    fn append(&self, _group_id: &str, records: &[CoordinatorRecord]) -> Result<(), E> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(E::CoordinatorNotAvailable);
        }
        self.records.lock().unwrap().extend_from_slice(records);
        Ok(())
    }
}

impl MemLog {
    fn last_group_record(&self) -> Option<store::GroupMetadataValue> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|r| match r {
                CoordinatorRecord::GroupMetadata { value, .. } => value.clone(),
                _ => None,
            })
    }
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        group: GroupConfig {
            initial_rebalance_delay: Duration::from_millis(INITIAL_DELAY_MS),
            max_size: 100,
        },
        session_timeout_ms_min: 6_000,
        session_timeout_ms_max: 1_800_000,
        offset_metadata_max_bytes: 4096,
        offsets_retention_ms: 7 * 24 * 3600 * 1000,
        offsets_retention_check_interval: Duration::from_secs(600),
        offsets_topic_num_partitions: 1,
        offsets_topic_segment_bytes: 100 << 20,
        decompressed_batch_max_bytes: 1 << 20,
    }
}

fn coordinator() -> (Arc<GroupCoordinator>, Arc<MemLog>) {
    let log = Arc::new(MemLog::default());
    (
        Arc::new(GroupCoordinator::with_log(config(), log.clone())),
        log,
    )
}

fn protocols(list: &[(&str, &'static [u8])]) -> Vec<Protocol> {
    list.iter()
        .map(|(n, m)| Protocol {
            name: n.to_string(),
            metadata: Bytes::from_static(m),
        })
        .collect()
}

fn join_req(member_id: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols(&[("range", b"r"), ("roundrobin", b"rr")]),
        require_known_member_id: true,
        supports_skip_assignment: true,
        reason: None,
    }
}

fn spawn_join(c: &Arc<GroupCoordinator>, req: JoinRequest) -> JoinHandle<JoinResult> {
    let c = c.clone();
    tokio::spawn(async move { c.join_group("g", req).await })
}

fn spawn_sync(
    c: &Arc<GroupCoordinator>,
    member_id: &str,
    generation_id: i32,
    assignments: Vec<(String, Bytes)>,
) -> JoinHandle<SyncResult> {
    let c = c.clone();
    let req = SyncRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        generation_id,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments,
    };
    tokio::spawn(async move { c.sync_group("g", req).await })
}

/// A dynamic member's first JoinGroup (v4+): MEMBER_ID_REQUIRED with the id to use.
async fn member_id(c: &GroupCoordinator) -> String {
    let r = c.join_group("g", join_req("", None)).await;
    assert_eq!(r.error, Some(E::MemberIdRequired));
    assert!(r.member_id.starts_with("client-"), "{}", r.member_id);
    r.member_id
}

/// Lets spawned tasks run without moving the clock.
/// Lets spawned joins and syncs run up to their next wait. They run the group's state machine on
/// the blocking pool (crate::blocking); with the clock paused, Tokio does not auto-advance time
/// while a blocking task runs, so each 1 ms sleep returns only once those tasks are done.
async fn settle() {
    for _ in 0..3 {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        sleep(Duration::from_millis(1)).await;
    }
}

fn state(c: &GroupCoordinator) -> S {
    c.describe_group("g").map(|d| d.state).unwrap_or(S::Dead)
}

/// Brings `n` dynamic members to a Stable generation; returns their ids (leader first) and
/// the generation.
async fn stable_group(c: &Arc<GroupCoordinator>, n: usize) -> (Vec<String>, i32) {
    let mut ids = Vec::new();
    let mut joins = Vec::new();
    for _ in 0..n {
        let id = member_id(c).await;
        joins.push(spawn_join(c, join_req(&id, None)));
        ids.push(id);
    }
    sleep(Duration::from_millis(INITIAL_DELAY_MS * 2 + 10)).await;
    let mut results = Vec::new();
    for j in joins {
        results.push(j.await.unwrap());
    }
    let generation = results[0].generation_id;
    let leader = results[0].leader.clone();
    assert!(results
        .iter()
        .all(|r| r.error.is_none() && r.generation_id == generation && r.leader == leader));
    let assignments: Vec<(String, Bytes)> = ids
        .iter()
        .map(|id| (id.clone(), Bytes::from(format!("a-{id}"))))
        .collect();
    let mut syncs = Vec::new();
    for id in ids.iter().filter(|id| **id != leader) {
        syncs.push(spawn_sync(c, id, generation, Vec::new()));
    }
    settle().await;
    syncs.push(spawn_sync(c, &leader, generation, assignments));
    for s in syncs {
        assert_eq!(s.await.unwrap().error, None);
    }
    assert_eq!(state(c), S::Stable);
    ids.retain(|id| *id != leader);
    ids.insert(0, leader);
    (ids, generation)
}

#[test]
fn state_transitions_follow_kafka() {
    use S::*;
    assert!(Empty.can_transition_to(PreparingRebalance));
    assert!(PreparingRebalance.can_transition_to(CompletingRebalance));
    assert!(PreparingRebalance.can_transition_to(Empty));
    assert!(CompletingRebalance.can_transition_to(Stable));
    assert!(Stable.can_transition_to(PreparingRebalance));
    assert!(CompletingRebalance.can_transition_to(PreparingRebalance));
    for s in S::ALL {
        assert!(s.can_transition_to(Dead));
    }
    assert!(!Empty.can_transition_to(Stable));
    assert!(!Stable.can_transition_to(CompletingRebalance));
    assert!(!Stable.can_transition_to(Empty));
    assert!(!Dead.can_transition_to(Empty));
    assert!(!PreparingRebalance.can_transition_to(PreparingRebalance));
}

#[tokio::test(start_paused = true)]
async fn first_join_needs_a_member_id_and_waits_for_the_initial_delay() {
    let (c, _) = coordinator();
    let id = member_id(&c).await;
    let start = Instant::now();
    let join = spawn_join(&c, join_req(&id, None));
    sleep(Duration::from_millis(INITIAL_DELAY_MS - 100)).await;
    assert!(
        !join.is_finished(),
        "the join completed before the initial delay"
    );
    assert_eq!(state(&c), S::PreparingRebalance);
    let r = join.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(INITIAL_DELAY_MS));
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, id);
    assert_eq!(r.member_id, id);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1, "the leader gets the member list");
    assert_eq!(&r.members[0].metadata[..], b"r");
    assert_eq!(state(&c), S::CompletingRebalance);
}

#[tokio::test(start_paused = true)]
async fn initial_delay_extends_while_members_keep_arriving() {
    let (c, _) = coordinator();
    let start = Instant::now();
    let a = member_id(&c).await;
    let ja = spawn_join(&c, join_req(&a, None));
    sleep(Duration::from_millis(2_000)).await;
    let b = member_id(&c).await;
    let jb = spawn_join(&c, join_req(&b, None));
    // At 3 s the delay is extended because b arrived; it ends at 6 s.
    sleep(Duration::from_millis(3_900)).await;
    assert!(!ja.is_finished() && !jb.is_finished());
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    assert_eq!(start.elapsed(), Duration::from_millis(2 * INITIAL_DELAY_MS));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty(), "followers get no member list");
}

#[tokio::test(start_paused = true)]
async fn sync_hands_out_the_leaders_assignment_and_stores_the_group() {
    let (c, log) = coordinator();
    let (ids, generation) = stable_group(&c, 3).await;
    let stored = log
        .last_group_record()
        .expect("group metadata stored on sync");
    assert_eq!(stored.generation, generation);
    assert_eq!(stored.protocol.as_deref(), Some("range"));
    assert_eq!(stored.members.len(), 3);
    for m in &stored.members {
        assert_eq!(m.assignment, Bytes::from(format!("a-{}", m.member_id)));
        assert_eq!(&m.subscription[..], b"r");
    }
    // A SyncGroup in a stable group returns the member's assignment at once.
    let r = spawn_sync(&c, &ids[1], generation, Vec::new())
        .await
        .unwrap();
    assert_eq!(r.assignment, Bytes::from(format!("a-{}", ids[1])));
    let d = c.describe_group("g").unwrap();
    assert_eq!(d.protocol_data, "range");
    assert_eq!(d.members.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn follower_sync_waits_for_the_leader() {
    let (c, _) = coordinator();
    let a = member_id(&c).await;
    let b = member_id(&c).await;
    let (ja, jb) = (
        spawn_join(&c, join_req(&a, None)),
        spawn_join(&c, join_req(&b, None)),
    );
    let (ra, rb) = (ja.await.unwrap(), jb.await.unwrap());
    let (leader, follower) = if ra.leader == a { (a, b) } else { (b, a) };
    let gen = rb.generation_id;
    let fs = spawn_sync(&c, &follower, gen, Vec::new());
    sleep(Duration::from_millis(1_000)).await;
    assert!(
        !fs.is_finished(),
        "a follower's sync must wait for the leader"
    );
    let ls = spawn_sync(
        &c,
        &leader,
        gen,
        vec![(follower.clone(), Bytes::from_static(b"F"))],
    );
    assert_eq!(&fs.await.unwrap().assignment[..], b"F");
    let l = ls.await.unwrap();
    assert_eq!(l.error, None);
    assert!(
        l.assignment.is_empty(),
        "a member the leader left out gets an empty assignment"
    );
    assert_eq!(ra.generation_id, gen);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_answers_by_state_and_generation() {
    let (c, _) = coordinator();
    assert_eq!(c.heartbeat("g", "nobody", None, 1), Err(E::UnknownMemberId));
    let (ids, gen) = stable_group(&c, 2).await;
    assert_eq!(c.heartbeat("g", &ids[0], None, gen), Ok(()));
    assert_eq!(
        c.heartbeat("g", &ids[0], None, gen - 1),
        Err(E::IllegalGeneration)
    );
    assert_eq!(
        c.heartbeat("g", "nobody", None, gen),
        Err(E::UnknownMemberId)
    );
    assert_eq!(c.heartbeat("", &ids[0], None, gen), Err(E::InvalidGroupId));
    // The leader rejoins: the follower learns of the rebalance from its heartbeat.
    let j = spawn_join(&c, join_req(&ids[0], None));
    settle().await;
    assert_eq!(state(&c), S::PreparingRebalance);
    assert_eq!(
        c.heartbeat("g", &ids[1], None, gen),
        Err(E::RebalanceInProgress)
    );
    let j2 = spawn_join(&c, join_req(&ids[1], None));
    let (r1, r2) = (j.await.unwrap(), j2.await.unwrap());
    assert_eq!((r1.generation_id, r2.generation_id), (gen + 1, gen + 1));
    // Heartbeats between JoinGroup and SyncGroup are fine.
    assert_eq!(state(&c), S::CompletingRebalance);
    assert_eq!(c.heartbeat("g", &ids[1], None, gen + 1), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn session_expiry_removes_the_member_and_rebalances() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 2).await;
    let (alive, silent) = (&ids[0], &ids[1]);
    // `alive` heartbeats every 3 s; `silent` never does.
    for _ in 0..3 {
        sleep(Duration::from_millis(3_000)).await;
        assert_eq!(c.heartbeat("g", alive, None, gen), Ok(()));
    }
    sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        state(&c),
        S::PreparingRebalance,
        "the silent member's session expired"
    );
    assert_eq!(
        c.heartbeat("g", alive, None, gen),
        Err(E::RebalanceInProgress)
    );
    assert_eq!(c.heartbeat("g", silent, None, gen), Err(E::UnknownMemberId));
    // The only remaining member rejoins: the join completes at once.
    let r = spawn_join(&c, join_req(alive, None)).await.unwrap();
    assert_eq!(r.generation_id, gen + 1);
    assert_eq!(r.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn rebalance_timeout_completes_the_join_with_the_members_who_rejoined() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 2).await;
    let start = Instant::now();
    let j = spawn_join(&c, join_req(&ids[0], None));
    // The other member keeps heartbeating but never rejoins.
    loop {
        sleep(Duration::from_millis(2_000)).await;
        if j.is_finished() {
            break;
        }
        assert_eq!(
            c.heartbeat("g", &ids[1], None, gen),
            Err(E::RebalanceInProgress)
        );
    }
    let r = j.await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(REBALANCE_MS as u64));
    assert_eq!(r.generation_id, gen + 1);
    assert_eq!(r.members.len(), 1);
    assert_eq!(
        c.heartbeat("g", &ids[1], None, gen),
        Err(E::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn unchanged_follower_rejoin_in_a_stable_group_does_not_rebalance() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 2).await;
    let r = spawn_join(&c, join_req(&ids[1], None)).await.unwrap();
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, gen);
    assert!(r.members.is_empty());
    assert_eq!(state(&c), S::Stable);
    // Changed metadata (e.g. a cooperative member that revoked partitions) does rebalance.
    let mut changed = join_req(&ids[1], None);
    changed.protocols = protocols(&[("range", b"r2"), ("roundrobin", b"rr")]);
    let j = spawn_join(&c, changed);
    settle().await;
    assert_eq!(state(&c), S::PreparingRebalance);
    let j0 = spawn_join(&c, join_req(&ids[0], None));
    assert_eq!(j.await.unwrap().generation_id, gen + 1);
    let leader = j0.await.unwrap();
    let meta: Vec<&[u8]> = leader.members.iter().map(|m| &m.metadata[..]).collect();
    assert!(
        meta.contains(&&b"r2"[..]),
        "the leader sees the new metadata: {meta:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn leave_group_rebalances_and_reports_each_member() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 3).await;
    let results = c
        .leave_group("g", &[(ids[2].clone(), None), ("ghost".into(), None)])
        .unwrap();
    assert_eq!(results, vec![None, Some(E::UnknownMemberId)]);
    assert_eq!(state(&c), S::PreparingRebalance);
    let (j0, j1) = (
        spawn_join(&c, join_req(&ids[0], None)),
        spawn_join(&c, join_req(&ids[1], None)),
    );
    let r = j0.await.unwrap();
    assert_eq!(r.generation_id, gen + 1);
    assert_eq!(r.members.len(), 2);
    j1.await.unwrap();
    // Everyone leaves: the group is empty, and stored so.
    assert_eq!(
        c.leave_group("g", &[(ids[0].clone(), None), (ids[1].clone(), None)])
            .unwrap(),
        vec![None, None]
    );
    assert_eq!(state(&c), S::Empty);
    assert_eq!(
        c.leave_group("nope", &[("x".into(), None)]).unwrap(),
        vec![Some(E::UnknownMemberId)]
    );
}

#[tokio::test(start_paused = true)]
async fn leaving_during_the_join_phase_lets_it_complete() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 2).await;
    let j = spawn_join(&c, join_req(&ids[0], None));
    settle().await;
    assert!(!j.is_finished());
    c.leave_group("g", &[(ids[1].clone(), None)]).unwrap();
    let r = j.await.unwrap();
    assert_eq!(r.generation_id, gen + 1);
    assert_eq!(r.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn static_member_rejoin_keeps_its_assignment_and_fences_the_old_id() {
    let (c, log) = coordinator();
    let js = spawn_join(&c, join_req("", Some("instance-1")));
    let d = member_id(&c).await;
    let jd = spawn_join(&c, join_req(&d, None));
    let (rs, rd) = (js.await.unwrap(), jd.await.unwrap());
    assert!(rs.member_id.starts_with("instance-1-"), "{}", rs.member_id);
    let gen = rs.generation_id;
    let leader = rs.leader.clone();
    let old = rs.member_id.clone();
    let assignments = vec![
        (old.clone(), Bytes::from_static(b"S")),
        (d.clone(), Bytes::from_static(b"D")),
    ];
    let follower = if leader == old {
        d.clone()
    } else {
        old.clone()
    };
    let fs = spawn_sync(&c, &follower, gen, Vec::new());
    settle().await;
    spawn_sync(&c, &leader, gen, assignments).await.unwrap();
    fs.await.unwrap();
    assert_eq!(rd.generation_id, gen);

    // The static member's client restarts: same instance id, no member id.
    let r = spawn_join(&c, join_req("", Some("instance-1")))
        .await
        .unwrap();
    assert_eq!(r.error, None);
    assert_ne!(r.member_id, old);
    assert_eq!(r.generation_id, gen, "no rebalance");
    assert_eq!(state(&c), S::Stable);
    let stored = log.last_group_record().unwrap();
    assert!(
        stored.members.iter().any(|m| m.member_id == r.member_id),
        "the new member id is stored"
    );
    // It gets its old assignment back.
    let mut sync = spawn_sync(&c, &r.member_id, gen, Vec::new());
    assert_eq!(&(&mut sync).await.unwrap().assignment[..], b"S");
    // The old member id is fenced.
    assert_eq!(
        c.heartbeat("g", &old, Some("instance-1"), gen),
        Err(E::FencedInstanceId)
    );
    let fenced = c.join_group("g", join_req(&old, Some("instance-1"))).await;
    assert_eq!(fenced.error, Some(E::FencedInstanceId));
    assert_eq!(
        c.leave_group("g", &[(old.clone(), Some("instance-1".into()))])
            .unwrap(),
        vec![Some(E::FencedInstanceId)]
    );
    // Leaving by instance id alone works.
    assert_eq!(
        c.leave_group("g", &[(String::new(), Some("instance-1".into()))])
            .unwrap(),
        vec![None]
    );
    assert_eq!(state(&c), S::PreparingRebalance);
}

#[tokio::test(start_paused = true)]
async fn a_static_member_that_does_not_rejoin_keeps_its_place() {
    let (c, _) = coordinator();
    let js = spawn_join(&c, join_req("", Some("i1")));
    let d = member_id(&c).await;
    let jd = spawn_join(&c, join_req(&d, None));
    let (rs, rd) = (js.await.unwrap(), jd.await.unwrap());
    let gen = rd.generation_id;
    // The dynamic member rejoins with new metadata; the static one stays away (but within
    // its session: it heartbeats).
    let mut changed = join_req(&d, None);
    changed.protocols = protocols(&[("range", b"x")]);
    let j = spawn_join(&c, changed);
    let mut r = None;
    for _ in 0..20 {
        sleep(Duration::from_millis(2_000)).await;
        let _ = c.heartbeat("g", &rs.member_id, Some("i1"), gen);
        if j.is_finished() {
            r = Some(j.await.unwrap());
            break;
        }
    }
    let r = r.expect("join completed at the rebalance timeout");
    assert_eq!(r.generation_id, gen + 1);
    let d_desc = c.describe_group("g").unwrap();
    assert_eq!(
        d_desc.members.len(),
        2,
        "the static member is still in the group"
    );
}

#[tokio::test(start_paused = true)]
async fn protocol_is_chosen_by_votes_among_common_protocols() {
    let (c, _) = coordinator();
    let lists: [&[(&str, &'static [u8])]; 3] = [
        &[("range", b"1"), ("roundrobin", b"1"), ("sticky", b"1")],
        &[("roundrobin", b"2"), ("range", b"2")],
        &[("sticky", b"3"), ("roundrobin", b"3"), ("range", b"3")],
    ];
    let mut joins = Vec::new();
    for list in lists {
        let id = member_id(&c).await;
        let mut req = join_req(&id, None);
        req.protocols = protocols(list);
        joins.push(spawn_join(&c, req));
    }
    for j in joins {
        // sticky is not supported by all; roundrobin gets 2 votes (members 2 and 3), range 1.
        assert_eq!(
            j.await.unwrap().protocol_name.as_deref(),
            Some("roundrobin")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn inconsistent_protocols_and_bad_timeouts_are_refused() {
    let (c, _) = coordinator();
    let _ = stable_group(&c, 1).await;
    let mut other_type = join_req("", None);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        c.join_group("g", other_type).await.error,
        Some(E::InconsistentGroupProtocol)
    );
    let mut disjoint = join_req("", None);
    disjoint.protocols = protocols(&[("sticky", b"")]);
    assert_eq!(
        c.join_group("g", disjoint).await.error,
        Some(E::InconsistentGroupProtocol)
    );
    let mut short = join_req("", None);
    short.session_timeout_ms = 100;
    assert_eq!(
        c.join_group("g", short).await.error,
        Some(E::InvalidSessionTimeout)
    );
    assert_eq!(
        c.join_group("", join_req("", None)).await.error,
        Some(E::InvalidGroupId)
    );
    assert_eq!(
        c.join_group("g", join_req("made-up", None)).await.error,
        Some(E::UnknownMemberId)
    );
    assert_eq!(
        c.join_group("other", join_req("made-up", None)).await.error,
        Some(E::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn a_pending_member_holds_the_join_until_its_session_expires() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 1).await;
    let start = Instant::now();
    let _pending = member_id(&c).await; // never comes back
    let j = spawn_join(&c, join_req(&ids[0], None));
    settle().await;
    assert!(!j.is_finished(), "the join waits for the pending member");
    let r = j.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(SESSION_MS as u64));
    assert_eq!(r.generation_id, gen + 1);
}

#[tokio::test(start_paused = true)]
async fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let (c, _) = coordinator();
    let a = member_id(&c).await;
    let b = member_id(&c).await;
    let (ja, jb) = (
        spawn_join(&c, join_req(&a, None)),
        spawn_join(&c, join_req(&b, None)),
    );
    let (ra, _rb) = (ja.await.unwrap(), jb.await.unwrap());
    let leader = ra.leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    spawn_sync(&c, &leader, ra.generation_id, Vec::new())
        .await
        .unwrap();
    assert_eq!(state(&c), S::Stable);
    // Both heartbeat, but the follower never sends SyncGroup: it is removed once the
    // rebalance timeout has passed since the join phase ended.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(REBALANCE_MS as u64 - 3_000) {
        sleep(Duration::from_millis(2_500)).await;
        assert_eq!(c.heartbeat("g", &leader, None, ra.generation_id), Ok(()));
        assert_eq!(c.heartbeat("g", &follower, None, ra.generation_id), Ok(()));
    }
    sleep(Duration::from_millis(3_100)).await;
    assert_eq!(state(&c), S::PreparingRebalance);
    assert_eq!(
        c.heartbeat("g", &follower, None, ra.generation_id),
        Err(E::UnknownMemberId)
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_store_of_the_assignment_fails_the_sync_and_rebalances() {
    let (c, log) = coordinator();
    let id = member_id(&c).await;
    let r = spawn_join(&c, join_req(&id, None)).await.unwrap();
    log.fail.store(true, Ordering::SeqCst);
    let s = spawn_sync(
        &c,
        &id,
        r.generation_id,
        vec![(id.clone(), Bytes::from_static(b"x"))],
    )
    .await
    .unwrap();
    assert_eq!(s.error, Some(E::CoordinatorNotAvailable));
    assert_eq!(state(&c), S::PreparingRebalance);
}

#[tokio::test(start_paused = true)]
async fn sync_checks_generation_protocol_and_state() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 1).await;
    let sync = |member: &str,
                generation: i32,
                protocol_type: Option<&str>,
                protocol_name: Option<&str>| SyncRequest {
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: protocol_type.map(str::to_string),
        protocol_name: protocol_name.map(str::to_string),
        assignments: Vec::new(),
    };
    assert_eq!(
        c.sync_group("g", sync(&ids[0], gen + 1, None, None))
            .await
            .error,
        Some(E::IllegalGeneration)
    );
    assert_eq!(
        c.sync_group("g", sync("x", gen, None, None)).await.error,
        Some(E::UnknownMemberId)
    );
    assert_eq!(
        c.sync_group("g", sync(&ids[0], gen, Some("connect"), None))
            .await
            .error,
        Some(E::InconsistentGroupProtocol)
    );
    assert_eq!(
        c.sync_group("g", sync(&ids[0], gen, None, Some("roundrobin")))
            .await
            .error,
        Some(E::InconsistentGroupProtocol)
    );
    let ok = c
        .sync_group("g", sync(&ids[0], gen, Some("consumer"), Some("range")))
        .await;
    assert_eq!(ok.error, None);
    assert_eq!(ok.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        c.sync_group("nope", sync(&ids[0], gen, None, None))
            .await
            .error,
        Some(E::UnknownMemberId)
    );
}

// --- Offsets ---------------------------------------------------------------------------------

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

fn commit(
    member: &str,
    generation: i32,
    version: i16,
    offsets: &[(TopicPartition, i64)],
) -> OffsetCommit {
    OffsetCommit {
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        api_version: version,
        offsets: offsets
            .iter()
            .map(|(tp, o)| {
                (
                    tp.clone(),
                    OffsetAndMetadata {
                        offset: *o,
                        leader_epoch: 0,
                        metadata: format!("m{o}"),
                        commit_timestamp_ms: crate::api_error::now_ms(),
                        expire_timestamp_ms: None,
                    },
                )
            })
            .collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn commits_are_fenced_by_member_and_generation() {
    let (c, log) = coordinator();
    // No group yet: a member commit is refused (v8: ILLEGAL_GENERATION, v9: GROUP_ID_NOT_FOUND).
    assert_eq!(
        c.commit_offsets("g", commit("m", 1, 8, &[(tp("t", 0), 5)])),
        Err(E::IllegalGeneration)
    );
    assert_eq!(
        c.commit_offsets("g", commit("m", 1, 9, &[(tp("t", 0), 5)])),
        Err(E::GroupIdNotFound)
    );
    let (ids, gen) = stable_group(&c, 2).await;
    assert_eq!(
        c.commit_offsets("g", commit(&ids[0], gen, 9, &[(tp("t", 0), 5)])),
        Ok(())
    );
    assert_eq!(
        c.commit_offsets("g", commit(&ids[0], gen - 1, 9, &[(tp("t", 0), 6)])),
        Err(E::IllegalGeneration)
    );
    assert_eq!(
        c.commit_offsets("g", commit("stranger", gen, 9, &[(tp("t", 0), 6)])),
        Err(E::UnknownMemberId)
    );
    assert_eq!(
        c.commit_offsets("g", commit("", -1, 9, &[(tp("t", 0), 6)])),
        Err(E::UnknownMemberId)
    );
    let fetched = c.fetch_offsets("g", Some(&[tp("t", 0), tp("t", 1)]));
    assert_eq!(fetched[0].1.as_ref().unwrap().offset, 5);
    assert_eq!(fetched[0].1.as_ref().unwrap().metadata, "m5");
    assert!(fetched[1].1.is_none());
    // During a rebalance, members of the current generation may still commit (what they
    // consumed before rejoining)...
    let j = spawn_join(&c, join_req(&ids[0], None));
    settle().await;
    assert_eq!(
        c.commit_offsets("g", commit(&ids[1], gen, 9, &[(tp("t", 1), 7)])),
        Ok(())
    );
    // ...but not between JoinGroup and SyncGroup of the next generation.
    let j1 = spawn_join(&c, join_req(&ids[1], None));
    let r = j.await.unwrap();
    j1.await.unwrap();
    assert_eq!(
        c.commit_offsets("g", commit(&ids[1], r.generation_id, 9, &[(tp("t", 1), 8)])),
        Err(E::RebalanceInProgress)
    );
    let stored = log
        .records
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r, CoordinatorRecord::OffsetCommit { .. }))
        .count();
    assert_eq!(stored, 2);
}

#[tokio::test(start_paused = true)]
async fn simple_commits_create_a_group_without_members() {
    let (c, _) = coordinator();
    assert_eq!(
        c.commit_offsets(
            "simple",
            commit("", -1, 9, &[(tp("t", 0), 1), (tp("u", 2), 2)])
        ),
        Ok(())
    );
    let all = c.fetch_offsets("simple", None);
    assert_eq!(all.len(), 2);
    let listed = c.list_groups();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, S::Empty);
    assert_eq!(listed[0].protocol_type, "");
    // A failing log refuses the commit and leaves the offsets as they were.
    let (c2, log2) = coordinator();
    log2.fail.store(true, Ordering::SeqCst);
    assert_eq!(
        c2.commit_offsets("s", commit("", -1, 9, &[(tp("t", 0), 1)])),
        Err(E::CoordinatorNotAvailable)
    );
    assert!(c2.fetch_offsets("s", None).is_empty());
}

#[tokio::test(start_paused = true)]
async fn offsets_of_empty_groups_expire_and_the_group_goes_away() {
    let (c, log) = coordinator();
    c.commit_offsets("simple", commit("", -1, 9, &[(tp("t", 0), 1)]))
        .unwrap();
    let retention = config().offsets_retention_ms;
    let now = Now::get();
    assert_eq!(c.expire_offsets(now), 0);
    let later = Now {
        instant: now.instant,
        wall_ms: now.wall_ms + retention + 1,
    };
    assert_eq!(c.expire_offsets(later), 1);
    assert!(c.list_groups().is_empty());
    let records = log.records.lock().unwrap();
    let n = records.len();
    assert!(matches!(
        &records[n - 2],
        CoordinatorRecord::OffsetCommit { value: None, .. }
    ));
    assert!(matches!(
        &records[n - 1],
        CoordinatorRecord::GroupMetadata { value: None, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn offsets_of_active_groups_do_not_expire() {
    let (c, _) = coordinator();
    let (ids, gen) = stable_group(&c, 1).await;
    c.commit_offsets("g", commit(&ids[0], gen, 9, &[(tp("t", 0), 1)]))
        .unwrap();
    let now = Now::get();
    let later = Now {
        instant: now.instant,
        wall_ms: now.wall_ms + config().offsets_retention_ms * 2,
    };
    // Subscriptions in these tests are not real ConsumerProtocolSubscriptions, so the topics
    // are unknown and nothing is considered unsubscribed.
    assert_eq!(c.expire_offsets(later), 0);
    assert_eq!(c.fetch_offsets("g", None).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn delete_group_and_offset_delete_follow_the_group_state() {
    let (c, _) = coordinator();
    assert_eq!(c.delete_group("g"), Err(E::GroupIdNotFound));
    let (ids, gen) = stable_group(&c, 1).await;
    c.commit_offsets(
        "g",
        commit(&ids[0], gen, 9, &[(tp("t", 0), 1), (tp("t", 1), 2)]),
    )
    .unwrap();
    assert_eq!(c.delete_group("g"), Err(E::NonEmptyGroup));
    // Unparseable subscriptions count as subscribed to everything.
    assert_eq!(
        c.delete_offsets("g", &[tp("t", 0)]),
        Ok(vec![Some(E::GroupSubscribedToTopic)])
    );
    c.leave_group("g", &[(ids[0].clone(), None)]).unwrap();
    assert_eq!(state(&c), S::Empty);
    assert_eq!(c.delete_offsets("g", &[tp("t", 0)]), Ok(vec![None]));
    assert_eq!(c.fetch_offsets("g", None).len(), 1);
    assert_eq!(c.delete_group("g"), Ok(()));
    assert!(c.describe_group("g").is_none());
    assert!(c.fetch_offsets("g", None).is_empty());
    assert_eq!(
        c.delete_offsets("g", &[tp("t", 0)]),
        Err(E::GroupIdNotFound)
    );
}

#[tokio::test(start_paused = true)]
async fn offset_delete_uses_consumer_subscriptions() {
    use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let (c, _) = coordinator();
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("subscribed")]);
    let mut buf = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, 1);
    sub.encode(&mut buf, 1).unwrap();
    let _ = TopicName::default();
    let id = member_id(&c).await;
    let mut req = join_req(&id, None);
    req.protocols = vec![Protocol {
        name: "range".into(),
        metadata: buf.freeze(),
    }];
    let r = spawn_join(&c, req).await.unwrap();
    spawn_sync(&c, &id, r.generation_id, Vec::new())
        .await
        .unwrap();
    c.commit_offsets(
        "g",
        commit(
            &id,
            r.generation_id,
            9,
            &[(tp("subscribed", 0), 1), (tp("old", 0), 2)],
        ),
    )
    .unwrap();
    assert_eq!(
        c.delete_offsets("g", &[tp("subscribed", 0), tp("old", 0)]),
        Ok(vec![Some(E::GroupSubscribedToTopic), None])
    );
    // Offsets of topics nobody subscribes to expire even while the group is active.
    c.commit_offsets("g", commit(&id, r.generation_id, 9, &[(tp("old", 1), 2)]))
        .unwrap();
    let now = Now::get();
    let later = Now {
        instant: now.instant,
        wall_ms: now.wall_ms + config().offsets_retention_ms + 1,
    };
    assert_eq!(c.expire_offsets(later), 1);
    assert_eq!(c.fetch_offsets("g", None).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_waiting_joins() {
    let (c, _) = coordinator();
    let id = member_id(&c).await;
    let j = spawn_join(&c, join_req(&id, None));
    settle().await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = {
        let c = c.clone();
        tokio::spawn(async move { c.run(rx).await })
    };
    settle().await;
    tx.send(true).unwrap();
    run.await.unwrap();
    assert_eq!(j.await.unwrap().error, Some(E::NotCoordinator));
}

// --- Replay ----------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_restarted_coordinator_resumes_groups_and_offsets_from_the_log() {
    use shale_log::{Log, LogConfig};
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let partitions = (0..3)
            .map(|p| {
                let log = Log::open(
                    dir.path().join(format!("{OFFSETS_TOPIC}-{p}")),
                    LogConfig::default(),
                    0,
                )
                .unwrap();
                Partition::new(
                    tp(OFFSETS_TOPIC, p),
                    uuid::Uuid::nil(),
                    LeaderEpoch::new(0),
                    log,
                )
            })
            .collect::<Vec<_>>();
        OffsetsTopic::new(partitions)
    };
    let (ids, gen) = {
        let c = Arc::new(GroupCoordinator::with_log(config(), Arc::new(open())));
        let (ids, gen) = stable_group(&c, 2).await;
        c.commit_offsets(
            "g",
            commit(&ids[0], gen, 9, &[(tp("t", 0), 10), (tp("t", 1), 20)]),
        )
        .unwrap();
        c.commit_offsets("g", commit(&ids[1], gen, 9, &[(tp("t", 0), 11)]))
            .unwrap();
        c.commit_offsets("simple", commit("", -1, 9, &[(tp("t", 0), 99)]))
            .unwrap();
        c.commit_offsets("gone", commit("", -1, 9, &[(tp("t", 0), 1)]))
            .unwrap();
        c.delete_group("gone").unwrap();
        (ids, gen)
    };
    let c = Arc::new(GroupCoordinator::new(config()));
    c.load(open()).unwrap();
    let offsets: Vec<(TopicPartition, i64)> = c
        .fetch_offsets("g", None)
        .into_iter()
        .map(|(tp, o)| (tp, o.unwrap().offset))
        .collect();
    assert_eq!(offsets, vec![(tp("t", 0), 11), (tp("t", 1), 20)]);
    assert_eq!(
        c.fetch_offsets("simple", None)[0]
            .1
            .as_ref()
            .unwrap()
            .offset,
        99
    );
    assert!(c.describe_group("gone").is_none());
    let d = c.describe_group("g").unwrap();
    assert_eq!(d.state, S::Stable);
    assert_eq!(d.members.len(), 2);
    // Members carry on with the same generation, without a rebalance...
    assert_eq!(c.heartbeat("g", &ids[0], None, gen), Ok(()));
    let s = spawn_sync(&c, &ids[1], gen, Vec::new()).await.unwrap();
    assert_eq!(s.assignment, Bytes::from(format!("a-{}", ids[1])));
    // ...and one that does not come back expires (timers start with `run`).
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let run = {
        let c = c.clone();
        tokio::spawn(async move { c.run(rx).await })
    };
    for _ in 0..4 {
        sleep(Duration::from_millis(3_000)).await;
        assert!(c.heartbeat("g", &ids[0], None, gen).is_ok() || state(&c) == S::PreparingRebalance);
    }
    assert_eq!(state(&c), S::PreparingRebalance);
    run.abort();
}

#[tokio::test(start_paused = true)]
async fn a_replaced_static_leader_skips_the_assignment_only_from_v9() {
    let (c, _) = coordinator();
    let r = spawn_join(&c, join_req("", Some("leader"))).await.unwrap();
    assert_eq!(r.leader, r.member_id);
    spawn_sync(
        &c,
        &r.member_id,
        r.generation_id,
        vec![(r.member_id.clone(), Bytes::from_static(b"L"))],
    )
    .await
    .unwrap();
    // v9 client: told it leads, with the members, but to skip computing an assignment.
    let v9 = spawn_join(&c, join_req("", Some("leader"))).await.unwrap();
    assert_eq!(v9.error, None);
    assert_eq!(v9.generation_id, r.generation_id);
    assert!(v9.skip_assignment);
    assert_eq!(v9.leader, v9.member_id);
    assert_eq!(v9.members.len(), 1);
    // An older client gets the previous leader id, so it does not act as leader.
    let mut old = join_req("", Some("leader"));
    old.supports_skip_assignment = false;
    let v8 = spawn_join(&c, old).await.unwrap();
    assert!(!v8.skip_assignment);
    assert_eq!(v8.leader, v9.member_id);
    assert_ne!(v8.member_id, v9.member_id);
    assert!(v8.members.is_empty());
    assert_eq!(state(&c), S::Stable);
    let s = spawn_sync(&c, &v8.member_id, r.generation_id, Vec::new())
        .await
        .unwrap();
    assert_eq!(&s.assignment[..], b"L");
}

/// In a cluster the coordinator holds only the groups of the `__consumer_offsets` partitions
/// its broker leads: a group of a partition led elsewhere gets NOT_COORDINATOR; a partition
/// lost drops its groups; gained again, its groups come back from the log.
#[tokio::test]
async fn the_coordinator_serves_only_the_partitions_it_hosts() {
    use shale_log::{Log, LogConfig};
    let dir = tempfile::tempdir().unwrap();
    let partitions: BTreeMap<i32, Arc<Partition>> = (0..2)
        .map(|p| {
            let log = Log::open(
                dir.path().join(format!("{OFFSETS_TOPIC}-{p}")),
                LogConfig::default(),
                0,
            )
            .unwrap();
            let partition = Partition::new(
                tp(OFFSETS_TOPIC, p),
                uuid::Uuid::nil(),
                LeaderEpoch::new(0),
                log,
            );
            (p, partition)
        })
        .collect();
    // Two groups, one in each partition.
    let group_in = |p: i32| {
        (0..)
            .map(|i| format!("g{i}"))
            .find(|g| store::partition_for(g, 2) == p)
            .unwrap()
    };
    let (here, there) = (group_in(0), group_in(1));
    let c = GroupCoordinator::new(config());
    let only_0: BTreeMap<i32, Arc<Partition>> = partitions
        .iter()
        .filter(|(p, _)| **p == 0)
        .map(|(p, x)| (*p, x.clone()))
        .collect();
    c.sync_offsets_partitions(Some(2), only_0.clone()).unwrap();
    assert!(c.coordinates(&here) && !c.coordinates(&there));
    c.commit_offsets(&here, commit("", -1, 9, &[(tp("t", 0), 7)]))
        .unwrap();
    assert_eq!(
        c.commit_offsets(&there, commit("", -1, 9, &[(tp("t", 0), 8)])),
        Err(E::NotCoordinator)
    );
    // Partition 1 gained: its (empty) groups load and it is served.
    c.sync_offsets_partitions(Some(2), partitions.clone())
        .unwrap();
    c.commit_offsets(&there, commit("", -1, 9, &[(tp("t", 0), 8)]))
        .unwrap();
    // Partition 0 lost: its group is gone from memory and refused.
    let only_1: BTreeMap<i32, Arc<Partition>> = partitions
        .iter()
        .filter(|(p, _)| **p == 1)
        .map(|(p, x)| (*p, x.clone()))
        .collect();
    c.sync_offsets_partitions(Some(2), only_1).unwrap();
    assert!(!c.coordinates(&here));
    assert!(c.describe_group(&here).is_none());
    assert_eq!(c.heartbeat(&here, "m", None, 1), Err(E::NotCoordinator));
    // Gained back: replayed from its log.
    c.sync_offsets_partitions(Some(2), partitions.clone())
        .unwrap();
    let offsets = c.fetch_offsets(&here, None);
    assert_eq!(offsets.len(), 1);
    assert_eq!(offsets[0].1.as_ref().unwrap().offset, 7);
    // The topic deleted: nothing is coordinated from a log any more.
    c.sync_offsets_partitions(None, BTreeMap::new()).unwrap();
    assert!(c.describe_group(&there).is_none());
}
