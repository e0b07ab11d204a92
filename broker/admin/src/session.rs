//! A command's connections: the bootstrap broker, plus connections opened on demand to the
//! partition leaders and group coordinators that metadata names, each reused for the command.
//! Also the lookups several commands share (metadata, offsets, coordinators).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, ListOffsetsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::client::{Client, ClientOptions};
use super::parse::kafka_uuid;
use super::AdminError;

/// ListOffsets timestamps with a special meaning.
pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

/// FindCoordinator `key_type` for a consumer group.
const COORDINATOR_GROUP: i8 = 0;
/// Retries of a FindCoordinator answered with a retriable error, 200 ms apart and growing.
const COORDINATOR_RETRIES: u64 = 5;

/// One broker as metadata describes it.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered but fenced (missed heartbeats, shut down): listed by DescribeCluster v2 only.
    pub fenced: bool,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition as metadata describes it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// One topic as metadata describes it.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub name: String,
    /// Kafka's printed form (URL-safe base64), absent before Metadata v10.
    pub id: Option<String>,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

/// The cluster as one Metadata response describes it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicInfo>,
    /// Topics the broker answered with an error code instead of a description.
    pub topic_errors: Vec<(String, i16)>,
}

impl ClusterView {
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The topic, or the error the broker gave for it.
    pub fn require(&self, name: &str) -> Result<&TopicInfo, AdminError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        match self.topic_errors.iter().find(|(n, _)| n == name) {
            Some((_, code)) if *code != 0 => {
                AdminError::check(*code, None, || {
                    format!("read the metadata of topic `{name}`")
                })?;
                Err(unknown_topic(name))
            }
            _ => Err(unknown_topic(name)),
        }
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.id == id)
    }
}

pub struct Session {
    options: ClientOptions,
    bootstrap: String,
    /// Open connections by address; the bootstrap connection is one of them.
    clients: HashMap<String, Client>,
}

impl Session {
    /// Connects to the bootstrap broker.
    pub async fn connect(bootstrap: &str, options: ClientOptions) -> Result<Session, AdminError> {
        let client = Client::connect(bootstrap, options.clone()).await?;
        let mut clients = HashMap::new();
        clients.insert(bootstrap.to_string(), client);
        Ok(Session {
            options,
            bootstrap: bootstrap.to_string(),
            clients,
        })
    }

    pub fn bootstrap(&mut self) -> &mut Client {
        self.clients
            .get_mut(&self.bootstrap)
            .expect("the bootstrap connection is opened with the session")
    }

    /// The connection to `addr`, opened on first use.
    pub async fn client(&mut self, addr: &str) -> Result<&mut Client, AdminError> {
        if !self.clients.contains_key(addr) {
            let client = Client::connect(addr, self.options.clone()).await?;
            self.clients.insert(addr.to_string(), client);
        }
        Ok(self.clients.get_mut(addr).expect("inserted above"))
    }

    /// The connection to broker `id` as `view` names it.
    pub async fn node(&mut self, view: &ClusterView, id: i32) -> Result<&mut Client, AdminError> {
        let broker = view.broker(id).ok_or_else(|| AdminError::Broker {
            context: format!("reach broker {id}"),
            code: kafka_protocol::ResponseError::BrokerNotAvailable,
            message: Some(format!("broker {id} is not in the cluster's metadata")),
        })?;
        let addr = broker.addr();
        self.client(&addr).await
    }

    /// Metadata for `topics` (all topics when `None`); never creates a topic.
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<ClusterView, AdminError> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let client = self.bootstrap();
        let version = client.version::<MetadataRequest>()?;
        let response = client.send_at(&request, version).await?;
        let mut view = ClusterView {
            cluster_id: response.cluster_id.map(|s| s.to_string()),
            controller_id: response.controller_id.0,
            brokers: response
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                    fenced: false,
                })
                .collect(),
            topics: Vec::new(),
            topic_errors: Vec::new(),
        };
        for t in response.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                view.topic_errors.push((name, t.error_code));
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            view.topics.push(TopicInfo {
                name,
                id: (version >= 10).then(|| kafka_uuid(t.topic_id.as_bytes())),
                internal: t.is_internal,
                partitions,
            });
        }
        view.topics.sort_by(|a, b| a.name.cmp(&b.name));
        view.brokers.sort_by_key(|b| b.id);
        Ok(view)
    }

    /// ListOffsets for `partitions` of `topic` at `timestamp` ([`EARLIEST`], [`LATEST`] or ms),
    /// asked of each partition's leader. `None` where no record is at or after the timestamp.
    pub async fn list_offsets(
        &mut self,
        view: &ClusterView,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, Option<i64>>, AdminError> {
        let info = view.require(topic)?;
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let leader = info
                .partitions
                .iter()
                .find(|i| i.partition == p)
                .map(|i| i.leader)
                .ok_or_else(|| unknown_partition(topic, p))?;
            by_leader.entry(leader).or_default().push(p);
        }
        let mut out = BTreeMap::new();
        for (leader, parts) in by_leader {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            let response = self.node(view, leader).await?.send(&request).await?;
            for t in response.topics {
                for p in t.partitions {
                    AdminError::check(p.error_code, None, || {
                        format!("list offsets of {topic}-{}", p.partition_index)
                    })?;
                    let offset = (p.offset >= 0).then_some(p.offset);
                    out.insert(p.partition_index, offset);
                }
            }
        }
        for &p in partitions {
            if !out.contains_key(&p) {
                return Err(AdminError::IncompleteResponse {
                    api: "ListOffsets",
                    what: format!("partition {topic}-{p}"),
                });
            }
        }
        Ok(out)
    }

    /// The address (HOST:PORT) of the coordinator of consumer group `group`; connect with
    /// [`Session::client`]. A retriable answer (the coordinator is still loading, or moving) is
    /// retried a few times, as Kafka's clients do.
    pub async fn coordinator(&mut self, group: &str) -> Result<String, AdminError> {
        let mut attempt = 0;
        loop {
            match self.find_coordinator(group).await {
                Err(AdminError::Broker { code, .. })
                    if code.is_retriable() && attempt < COORDINATOR_RETRIES =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn find_coordinator(&mut self, group: &str) -> Result<String, AdminError> {
        let client = self.bootstrap();
        let version = client.version::<FindCoordinatorRequest>()?;
        let key = StrBytes::from_string(group.to_string());
        let mut request = FindCoordinatorRequest::default().with_key_type(COORDINATOR_GROUP);
        if version >= 4 {
            request.coordinator_keys = vec![key];
        } else {
            request.key = key;
        }
        let response = client.send_at(&request, version).await?;
        coordinator_addr(group, version, response)
    }
}

fn coordinator_addr(
    group: &str,
    version: i16,
    r: FindCoordinatorResponse,
) -> Result<String, AdminError> {
    let context = || format!("find the coordinator of group `{group}`");
    if version >= 4 {
        let c = r
            .coordinators
            .into_iter()
            .find(|c| c.key.as_str() == group)
            .ok_or_else(|| AdminError::Broker {
                context: context(),
                code: kafka_protocol::ResponseError::CoordinatorNotAvailable,
                message: Some("the response does not name the group".into()),
            })?;
        AdminError::check(c.error_code, c.error_message.as_deref(), context)?;
        Ok(format!("{}:{}", c.host.as_str(), c.port))
    } else {
        AdminError::check(r.error_code, r.error_message.as_deref(), context)?;
        Ok(format!("{}:{}", r.host.as_str(), r.port))
    }
}

pub fn unknown_topic(topic: &str) -> AdminError {
    AdminError::Broker {
        context: format!("find topic `{topic}`"),
        code: kafka_protocol::ResponseError::UnknownTopicOrPartition,
        message: Some(format!("topic `{topic}` does not exist")),
    }
}

pub fn unknown_partition(topic: &str, partition: i32) -> AdminError {
    AdminError::Broker {
        context: format!("find partition {topic}-{partition}"),
        code: kafka_protocol::ResponseError::UnknownTopicOrPartition,
        message: Some(format!("topic `{topic}` has no partition {partition}")),
    }
}
