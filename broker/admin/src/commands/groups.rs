//! `shale admin groups`: list, describe, and reset the committed offsets of consumer groups
//! (ListGroups, FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets, OffsetCommit).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use serde::Serialize;

use crate::client::Client;
use crate::output::{fields, opt, Align, Report, Table};
use crate::parse;
use crate::session::{unknown_partition, Session, EARLIEST, LATEST};
use crate::AdminError;

#[derive(clap::Subcommand, Debug)]
pub enum GroupsCommand {
    /// Every consumer group: state and protocol type.
    List {
        /// Only groups in this state (Empty, Stable, PreparingRebalance, …); repeatable.
        #[arg(long)]
        state: Vec<String>,
    },
    /// One group: members and their assignments; committed offset, log end and lag per partition.
    Describe {
        /// The consumer group (group.id).
        group: String,
    },
    /// Move an inactive group's committed offsets for one topic.
    ResetOffsets(ResetArgs),
}

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime"])
))]
pub struct ResetArgs {
    /// The consumer group (group.id).
    pub group: String,
    /// The topic whose offsets move.
    #[arg(long)]
    pub topic: String,
    /// Only these partitions (default: all); repeatable.
    #[arg(long = "partition", value_name = "P")]
    pub partitions: Vec<i32>,
    /// To each partition's log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// To each partition's end (the high watermark): skip everything not yet consumed.
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset, clamped to each partition's [log start, log end].
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// To the first record at or after this time: RFC 3339 with a zone, or epoch milliseconds.
    #[arg(long, value_name = "TIME", value_parser = parse::datetime_ms)]
    pub to_datetime: Option<i64>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub dry_run: bool,
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

// --- list ----------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct GroupList {
    pub groups: Vec<GroupRow>,
}

#[derive(Serialize)]
pub struct GroupRow {
    pub group: String,
    /// Absent when the broker predates ListGroups v4.
    pub state: Option<String>,
    pub protocol_type: String,
}

impl Report for GroupList {
    fn human(&self) -> String {
        let mut t = Table::new(&[
            ("GROUP", Align::Left),
            ("STATE", Align::Left),
            ("PROTOCOL-TYPE", Align::Left),
        ]);
        for g in &self.groups {
            t.row(vec![
                g.group.clone(),
                opt(g.state.as_ref()),
                g.protocol_type.clone(),
            ]);
        }
        t.render()
    }
}

/// ListGroups on every broker: each lists the groups it coordinates.
pub async fn list(s: &mut Session, states: &[String]) -> Result<GroupList, AdminError> {
    let view = s.metadata(Some(&[])).await?;
    let mut groups = BTreeMap::new();
    for broker in &view.brokers {
        let client = s.node(&view, broker.id).await?;
        let version = client.version::<ListGroupsRequest>()?;
        if !states.is_empty() && version < 4 {
            return Err(AdminError::Usage(format!(
                "{} does not report group states (ListGroups v{version}); drop --state",
                client.addr()
            )));
        }
        let mut request = ListGroupsRequest::default();
        if version >= 4 {
            request.states_filter = states
                .iter()
                .map(|s| StrBytes::from_string(s.clone()))
                .collect();
        }
        let response = client.send_at(&request, version).await?;
        AdminError::check(response.error_code, None, || {
            format!("list the groups on broker {}", broker.id)
        })?;
        for g in response.groups {
            let state = (version >= 4).then(|| g.group_state.to_string());
            if !states.is_empty()
                && !state
                    .as_ref()
                    .is_some_and(|st| states.iter().any(|w| w.eq_ignore_ascii_case(st)))
            {
                continue;
            }
            let row = GroupRow {
                group: g.group_id.0.to_string(),
                state,
                protocol_type: g.protocol_type.to_string(),
            };
            groups.insert(row.group.clone(), row);
        }
    }
    Ok(GroupList {
        groups: groups.into_values().collect(),
    })
}

// --- shared lookups ------------------------------------------------------------------------------

/// DescribeGroups for one group on its coordinator; `None` when the group does not exist.
async fn describe_group(
    client: &mut Client,
    group: &str,
) -> Result<Option<DescribedGroup>, AdminError> {
    let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
    let response = client.send(&request).await?;
    let described = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| AdminError::IncompleteResponse {
            api: "DescribeGroups",
            what: format!("group `{group}`"),
        })?;
    // Before DescribeGroups v6 Kafka reports an unknown group as state Dead; from v6 as
    // GROUP_ID_NOT_FOUND.
    if described.error_code == ResponseError::GroupIdNotFound.code()
        || (described.error_code == 0 && described.group_state.as_str() == "Dead")
    {
        return Ok(None);
    }
    AdminError::check(
        described.error_code,
        described.error_message.as_deref(),
        || format!("describe group `{group}`"),
    )?;
    Ok(Some(described))
}

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone)]
struct Committed {
    topic: String,
    partition: i32,
    offset: Option<i64>,
}

/// OffsetFetch for `group`: every committed offset (`topic: None`), or those of some partitions.
async fn fetch_committed(
    client: &mut Client,
    group: &str,
    topic: Option<(&str, &[i32])>,
) -> Result<Vec<Committed>, AdminError> {
    let version = client.version::<OffsetFetchRequest>()?;
    let context = || format!("fetch the committed offsets of group `{group}`");
    let mut out = Vec::new();
    let mut push = |topic: &str, partition: i32, offset: i64, error_code: i16| {
        AdminError::check(error_code, None, || {
            format!("fetch the committed offset of group `{group}` for {topic}-{partition}")
        })?;
        out.push(Committed {
            topic: topic.to_string(),
            partition,
            offset: (offset >= 0).then_some(offset),
        });
        Ok::<(), AdminError>(())
    };
    if version >= 8 {
        let topics = topic.map(|(t, parts)| {
            vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name(t))
                .with_partition_indexes(parts.to_vec())]
        });
        let request =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(topics)]);
        let response = client.send_at(&request, version).await?;
        let g = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| AdminError::IncompleteResponse {
                api: "OffsetFetch",
                what: format!("group `{group}`"),
            })?;
        AdminError::check(g.error_code, None, context)?;
        for t in g.topics {
            for p in t.partitions {
                push(
                    t.name.0.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )?;
            }
        }
    } else {
        let topics = topic.map(|(t, parts)| {
            vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(t))
                .with_partition_indexes(parts.to_vec())]
        });
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(topics);
        let response = client.send_at(&request, version).await?;
        AdminError::check(response.error_code, None, context)?;
        for t in response.topics {
            for p in t.partitions {
                push(
                    t.name.0.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                )?;
            }
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// The partitions a consumer-protocol member assignment names, or `None` if the bytes are not
/// one. Parsed by hand with every count checked against the bytes left, because they come from
/// some other client through the broker and a decoder that trusts counts would allocate them.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    let mut r = bytes;
    let mut take = |n: usize| -> Option<&[u8]> {
        if r.len() < n {
            return None;
        }
        let (head, tail) = r.split_at(n);
        r = tail;
        Some(head)
    };
    let i16_at = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
    let i32_at = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let version = i16_at(take(2)?);
    if version < 0 {
        return None;
    }
    let topics = usize::try_from(i32_at(take(4)?)).ok()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let len = usize::try_from(i16_at(take(2)?)).ok()?;
        let name = String::from_utf8(take(len)?.to_vec()).ok()?;
        let count = usize::try_from(i32_at(take(4)?)).ok()?;
        let raw = take(count.checked_mul(4)?)?;
        let partitions = raw.chunks_exact(4).map(i32_at).collect();
        out.push((name, partitions));
    }
    Some(out)
}

// --- describe ------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `cooperative-sticky`, …).
    pub protocol: String,
    pub coordinator: String,
    pub members: Vec<MemberRow>,
    pub offsets: Vec<OffsetRow>,
}

#[derive(Serialize)]
pub struct MemberRow {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// `None` when the assignment is not in the consumer protocol's format.
    pub assignment: Option<Vec<AssignedTopic>>,
}

#[derive(Serialize)]
pub struct AssignedTopic {
    pub topic: String,
    pub partitions: Vec<i32>,
}

#[derive(Serialize)]
pub struct OffsetRow {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    pub member_id: Option<String>,
}

impl Report for GroupDescription {
    fn human(&self) -> String {
        let mut out = fields(&[
            ("Group", self.group.clone()),
            ("State", self.state.clone()),
            ("Protocol type", self.protocol_type.clone()),
            (
                "Assignor",
                opt(Some(&self.protocol).filter(|p| !p.is_empty())),
            ),
            ("Coordinator", self.coordinator.clone()),
            ("Members", self.members.len().to_string()),
        ]);
        if !self.members.is_empty() {
            let mut t = Table::new(&[
                ("MEMBER-ID", Align::Left),
                ("INSTANCE-ID", Align::Left),
                ("CLIENT-ID", Align::Left),
                ("HOST", Align::Left),
                ("ASSIGNMENT", Align::Left),
            ]);
            for m in &self.members {
                let assignment = match &m.assignment {
                    None => "(not consumer protocol)".to_string(),
                    Some(a) if a.is_empty() => "-".to_string(),
                    Some(a) => a
                        .iter()
                        .map(|t| {
                            let parts: Vec<String> =
                                t.partitions.iter().map(i32::to_string).collect();
                            format!("{}:{}", t.topic, parts.join(","))
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                t.row(vec![
                    m.member_id.clone(),
                    opt(m.group_instance_id.as_ref()),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    assignment,
                ]);
            }
            out.push('\n');
            out.push_str(&t.render());
        }
        out.push('\n');
        if self.offsets.is_empty() {
            out.push_str("No committed offsets and no assigned partitions.\n");
            return out;
        }
        let mut t = Table::new(&[
            ("TOPIC", Align::Left),
            ("PARTITION", Align::Right),
            ("COMMITTED-OFFSET", Align::Right),
            ("LOG-END-OFFSET", Align::Right),
            ("LAG", Align::Right),
            ("MEMBER-ID", Align::Left),
        ]);
        for o in &self.offsets {
            t.row(vec![
                o.topic.clone(),
                o.partition.to_string(),
                opt(o.committed_offset),
                opt(o.log_end_offset),
                opt(o.lag),
                opt(o.member_id.as_ref()),
            ]);
        }
        out.push_str(&t.render());
        out
    }
}

pub async fn describe(s: &mut Session, group: &str) -> Result<GroupDescription, AdminError> {
    let coordinator = s.coordinator(group).await?;
    let client = s.client(&coordinator).await?;
    let described =
        describe_group(client, group)
            .await?
            .ok_or_else(|| AdminError::GroupNotFound {
                group: group.to_string(),
            })?;
    let committed = fetch_committed(client, group, None).await?;
    let is_consumer = described.protocol_type.as_str() == "consumer";
    let members: Vec<MemberRow> = described
        .members
        .iter()
        .map(|m| MemberRow {
            member_id: m.member_id.to_string(),
            group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: is_consumer
                .then(|| decode_assignment(&m.member_assignment))
                .flatten()
                .map(|a| {
                    a.into_iter()
                        .map(|(topic, partitions)| AssignedTopic { topic, partitions })
                        .collect()
                }),
        })
        .collect();
    // Every partition that is committed or assigned, with its owner if any.
    let mut rows: BTreeMap<(String, i32), (Option<i64>, Option<String>)> = BTreeMap::new();
    for c in &committed {
        rows.insert((c.topic.clone(), c.partition), (c.offset, None));
    }
    for m in &members {
        for t in m.assignment.iter().flatten() {
            for &p in &t.partitions {
                rows.entry((t.topic.clone(), p)).or_default().1 = Some(m.member_id.clone());
            }
        }
    }
    let ends = log_end_offsets(s, rows.keys()).await?;
    let offsets = rows
        .into_iter()
        .map(|((topic, partition), (committed_offset, member_id))| {
            let log_end_offset = ends.get(&(topic.clone(), partition)).copied();
            OffsetRow {
                lag: committed_offset.zip(log_end_offset).map(|(c, e)| e - c),
                topic,
                partition,
                committed_offset,
                log_end_offset,
                member_id,
            }
        })
        .collect();
    Ok(GroupDescription {
        group: group.to_string(),
        state: described.group_state.to_string(),
        protocol_type: described.protocol_type.to_string(),
        protocol: described.protocol_data.to_string(),
        coordinator,
        members,
        offsets,
    })
}

/// The log end offsets of `partitions`; a topic or partition that no longer exists is left out.
async fn log_end_offsets<'a>(
    s: &mut Session,
    partitions: impl Iterator<Item = &'a (String, i32)>,
) -> Result<BTreeMap<(String, i32), i64>, AdminError> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut out = BTreeMap::new();
    if by_topic.is_empty() {
        return Ok(out);
    }
    let names: Vec<String> = by_topic.keys().cloned().collect();
    let view = s.metadata(Some(&names)).await?;
    for (topic, parts) in by_topic {
        let Some(info) = view.topic(&topic) else {
            continue;
        };
        let present: Vec<i32> = parts
            .into_iter()
            .filter(|p| info.partitions.iter().any(|i| i.partition == *p))
            .collect();
        let ends = s.list_offsets(&view, &topic, &present, LATEST).await?;
        for (p, end) in ends {
            if let Some(end) = end {
                out.insert((topic.clone(), p), end);
            }
        }
    }
    Ok(out)
}

// --- reset-offsets -------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct OffsetReset {
    pub group: String,
    pub topic: String,
    pub dry_run: bool,
    pub partitions: Vec<ResetRow>,
}

#[derive(Serialize)]
pub struct ResetRow {
    pub partition: i32,
    pub previous_offset: Option<i64>,
    pub new_offset: i64,
}

impl Report for OffsetReset {
    fn human(&self) -> String {
        let mut t = Table::new(&[
            ("TOPIC", Align::Left),
            ("PARTITION", Align::Right),
            ("PREVIOUS-OFFSET", Align::Right),
            ("NEW-OFFSET", Align::Right),
        ]);
        for r in &self.partitions {
            t.row(vec![
                self.topic.clone(),
                r.partition.to_string(),
                opt(r.previous_offset),
                r.new_offset.to_string(),
            ]);
        }
        let mut out = t.render();
        if self.dry_run {
            out.push_str("Dry run: nothing was committed.\n");
        } else {
            out.push_str(&format!(
                "Committed the new offsets for group `{}`.\n",
                self.group
            ));
        }
        out
    }
}

/// Where the reset moves each partition.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
}

impl ResetArgs {
    fn target(&self) -> Target {
        match (
            self.to_earliest,
            self.to_latest,
            self.to_offset,
            self.to_datetime,
        ) {
            (true, ..) => Target::Earliest,
            (_, true, ..) => Target::Latest,
            (_, _, Some(o), _) => Target::Offset(o),
            (_, _, _, Some(t)) => Target::Time(t),
            _ => unreachable!("clap requires one of the --to-* options"),
        }
    }
}

pub async fn reset_offsets(s: &mut Session, a: ResetArgs) -> Result<OffsetReset, AdminError> {
    let group = a.group.as_str();
    let coordinator = s.coordinator(group).await?;
    // Kafka resets only an inactive group: one that is Empty, or does not exist yet.
    if let Some(g) = describe_group(s.client(&coordinator).await?, group).await? {
        if g.group_state.as_str() != "Empty" {
            return Err(AdminError::GroupActive {
                group: group.to_string(),
                state: g.group_state.to_string(),
                members: g.members.len(),
            });
        }
    }
    let view = s.metadata(Some(std::slice::from_ref(&a.topic))).await?;
    let info = view.require(&a.topic)?;
    let partitions: Vec<i32> = if a.partitions.is_empty() {
        info.partitions.iter().map(|p| p.partition).collect()
    } else {
        let set: BTreeSet<i32> = a.partitions.iter().copied().collect();
        for &p in &set {
            if !info.partitions.iter().any(|i| i.partition == p) {
                return Err(unknown_partition(&a.topic, p));
            }
        }
        set.into_iter().collect()
    };
    let targets = target_offsets(s, &view, &a.topic, &partitions, a.target()).await?;
    let client = s.client(&coordinator).await?;
    let previous: BTreeMap<i32, Option<i64>> =
        fetch_committed(client, group, Some((&a.topic, &partitions)))
            .await?
            .into_iter()
            .map(|c| (c.partition, c.offset))
            .collect();
    if !a.dry_run {
        commit(client, group, &a.topic, &targets).await?;
    }
    Ok(OffsetReset {
        group: a.group.clone(),
        topic: a.topic.clone(),
        dry_run: a.dry_run,
        partitions: targets
            .iter()
            .map(|(&partition, &new_offset)| ResetRow {
                partition,
                previous_offset: previous.get(&partition).copied().flatten(),
                new_offset,
            })
            .collect(),
    })
}

/// The offset each partition moves to. A time after the last record, like Kafka's tool, means
/// the log end; an explicit offset is clamped to the log's range.
async fn target_offsets(
    s: &mut Session,
    view: &crate::session::ClusterView,
    topic: &str,
    partitions: &[i32],
    target: Target,
) -> Result<BTreeMap<i32, i64>, AdminError> {
    let required = |offsets: BTreeMap<i32, Option<i64>>, what: &str| {
        offsets
            .into_iter()
            .map(|(p, o)| {
                o.map(|o| (p, o))
                    .ok_or_else(|| AdminError::IncompleteResponse {
                        api: "ListOffsets",
                        what: format!("the {what} offset of {topic}-{p}"),
                    })
            })
            .collect::<Result<BTreeMap<i32, i64>, AdminError>>()
    };
    let latest = required(
        s.list_offsets(view, topic, partitions, LATEST).await?,
        "latest",
    )?;
    Ok(match target {
        Target::Latest => latest,
        Target::Earliest => required(
            s.list_offsets(view, topic, partitions, EARLIEST).await?,
            "earliest",
        )?,
        Target::Offset(o) => {
            let earliest = required(
                s.list_offsets(view, topic, partitions, EARLIEST).await?,
                "earliest",
            )?;
            latest
                .into_iter()
                .map(|(p, end)| (p, o.clamp(earliest[&p].min(end), end)))
                .collect()
        }
        Target::Time(ms) => {
            let at = s.list_offsets(view, topic, partitions, ms).await?;
            latest
                .into_iter()
                .map(|(p, end)| (p, at.get(&p).copied().flatten().unwrap_or(end)))
                .collect()
        }
    })
}

/// OffsetCommit as an admin: generation -1 and no member id, which a coordinator accepts only
/// for a group with no members.
async fn commit(
    client: &mut Client,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> Result<(), AdminError> {
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(&p, &o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)
                    })
                    .collect(),
            )]);
    let response = client.send(&request).await?;
    for t in response.topics {
        for p in t.partitions {
            let hint = if [
                ResponseError::UnknownMemberId.code(),
                ResponseError::IllegalGeneration.code(),
                ResponseError::RebalanceInProgress.code(),
            ]
            .contains(&p.error_code)
            {
                " (a consumer joined the group after the check that it was inactive)"
            } else {
                ""
            };
            AdminError::check(p.error_code, None, || {
                format!(
                    "commit the new offset of group `{group}` for {topic}-{}{hint}",
                    p.partition_index
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(version.to_be_bytes());
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, parts) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in *parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes()); // user data: null
        b
    }

    #[test]
    fn assignments_decode() {
        let b = assignment(3, &[("orders", &[0, 2]), ("audit", &[1])]);
        assert_eq!(
            decode_assignment(&b).unwrap(),
            vec![
                ("orders".to_string(), vec![0, 2]),
                ("audit".to_string(), vec![1])
            ]
        );
        assert_eq!(decode_assignment(&assignment(0, &[])).unwrap(), vec![]);
    }

    #[test]
    fn hostile_assignments_are_refused_without_allocating() {
        // A topic count of i32::MAX in a 6-byte assignment.
        assert_eq!(decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        // A partition count far beyond the bytes.
        let mut b = assignment(0, &[("t", &[])]);
        b[9..13].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_assignment(&b), None);
        assert_eq!(decode_assignment(&[]), None);
        assert_eq!(decode_assignment(&[0xff, 0xff, 0, 0, 0, 0]), None);
    }
}
