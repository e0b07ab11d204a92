//! `shale admin topics`: list, describe, create, delete.

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::{CreateTopicsRequest, DeleteTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::configs::{self, ConfigRow, ResourceKind};
use crate::output::{fields, opt, Align, Report, Table};
use crate::parse::{self, kafka_uuid};
use crate::session::{Session, EARLIEST, LATEST};
use crate::AdminError;

#[derive(clap::Subcommand, Debug)]
pub enum TopicsCommand {
    /// Every topic: name, id, partition count, whether it is internal.
    List,
    /// One topic: partitions with leader and log start/end offsets, and its non-default configs.
    Describe {
        /// The topic.
        name: String,
    },
    /// Create a topic.
    Create(CreateArgs),
    /// Delete a topic and its data.
    Delete {
        /// The topic.
        name: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The topic.
    pub name: String,
    /// Partition count (default: the broker's num.partitions).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor (default: the broker's default.replication.factor).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// A topic config, e.g. --config retention.ms=86400000; repeatable.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub configs: Vec<(String, String)>,
    /// Ask the broker to validate the request without creating the topic.
    #[arg(long)]
    pub validate_only: bool,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

// --- list ----------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct TopicList {
    pub topics: Vec<TopicRow>,
}

#[derive(Serialize)]
pub struct TopicRow {
    pub name: String,
    pub id: Option<String>,
    pub partitions: usize,
    pub internal: bool,
}

impl Report for TopicList {
    fn human(&self) -> String {
        let mut t = Table::new(&[
            ("TOPIC", Align::Left),
            ("ID", Align::Left),
            ("PARTITIONS", Align::Right),
            ("INTERNAL", Align::Left),
        ]);
        for r in &self.topics {
            t.row(vec![
                r.name.clone(),
                opt(r.id.as_ref()),
                r.partitions.to_string(),
                r.internal.to_string(),
            ]);
        }
        t.render()
    }
}

pub async fn list(s: &mut Session) -> Result<TopicList, AdminError> {
    let view = s.metadata(None).await?;
    Ok(TopicList {
        topics: view
            .topics
            .into_iter()
            .map(|t| TopicRow {
                partitions: t.partitions.len(),
                name: t.name,
                id: t.id,
                internal: t.internal,
            })
            .collect(),
    })
}

// --- describe ------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct TopicDescription {
    pub name: String,
    pub id: Option<String>,
    pub internal: bool,
    pub partitions: Vec<PartitionRow>,
    /// Configs whose value is not the built-in default, with where the value comes from.
    pub configs: Vec<ConfigRow>,
}

#[derive(Serialize)]
pub struct PartitionRow {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub log_start_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

impl Report for TopicDescription {
    fn human(&self) -> String {
        let mut out = fields(&[
            ("Topic", self.name.clone()),
            ("Id", opt(self.id.as_ref())),
            ("Partitions", self.partitions.len().to_string()),
            ("Internal", self.internal.to_string()),
        ]);
        let mut t = Table::new(&[
            ("PARTITION", Align::Right),
            ("LEADER", Align::Right),
            ("REPLICAS", Align::Left),
            ("ISR", Align::Left),
            ("LOG-START-OFFSET", Align::Right),
            ("LOG-END-OFFSET", Align::Right),
        ]);
        for p in &self.partitions {
            t.row(vec![
                p.partition.to_string(),
                p.leader.to_string(),
                ids(&p.replicas),
                ids(&p.isr),
                opt(p.log_start_offset),
                opt(p.log_end_offset),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
        out.push('\n');
        if self.configs.is_empty() {
            out.push_str("Every config has its default value.\n");
        } else {
            out.push_str(&configs::config_table(&self.configs));
        }
        out
    }
}

pub async fn describe(s: &mut Session, name: &str) -> Result<TopicDescription, AdminError> {
    let view = s.metadata(Some(&[name.to_string()])).await?;
    let topic = view.require(name)?.clone();
    let indexes: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    let starts = s.list_offsets(&view, name, &indexes, EARLIEST).await?;
    let ends = s.list_offsets(&view, name, &indexes, LATEST).await?;
    let configs = configs::describe_resource(s, ResourceKind::Topic, name)
        .await?
        .into_iter()
        .filter(|c| c.source != "DEFAULT_CONFIG")
        .collect();
    Ok(TopicDescription {
        name: topic.name,
        id: topic.id,
        internal: topic.internal,
        partitions: topic
            .partitions
            .into_iter()
            .map(|p| PartitionRow {
                log_start_offset: starts.get(&p.partition).copied().flatten(),
                log_end_offset: ends.get(&p.partition).copied().flatten(),
                partition: p.partition,
                leader: p.leader,
                replicas: p.replicas,
                isr: p.isr,
            })
            .collect(),
        configs,
    })
}

// --- create --------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct TopicCreated {
    pub name: String,
    pub id: Option<String>,
    /// As the broker reports it (CreateTopics v5+), else as requested.
    pub partitions: Option<i32>,
    pub validate_only: bool,
}

impl Report for TopicCreated {
    fn human(&self) -> String {
        let verb = if self.validate_only {
            "The broker would create"
        } else {
            "Created"
        };
        let partitions = match self.partitions {
            Some(n) => format!(" with {n} partition{}", if n == 1 { "" } else { "s" }),
            None => String::new(),
        };
        let id = match &self.id {
            Some(id) if !self.validate_only => format!(" (id {id})"),
            _ => String::new(),
        };
        format!("{verb} topic `{}`{partitions}{id}.\n", self.name)
    }
}

pub async fn create(
    s: &mut Session,
    args: CreateArgs,
    timeout_ms: i32,
) -> Result<TopicCreated, AdminError> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(&args.name))
        .with_num_partitions(args.partitions.unwrap_or(-1))
        .with_replication_factor(args.replication_factor.unwrap_or(-1))
        .with_configs(
            args.configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(timeout_ms)
        .with_validate_only(args.validate_only);
    let client = s.bootstrap();
    let version = client.version::<CreateTopicsRequest>()?;
    let response = client.send_at(&request, version).await?;
    let result = response
        .topics
        .into_iter()
        .find(|t| t.name.0.as_str() == args.name)
        .ok_or_else(|| missing_result("CreateTopics", &args.name))?;
    AdminError::check(result.error_code, result.error_message.as_deref(), || {
        format!("create topic `{}`", args.name)
    })?;
    Ok(TopicCreated {
        id: (version >= 7 && !result.topic_id.is_nil())
            .then(|| kafka_uuid(result.topic_id.as_bytes())),
        partitions: if version >= 5 {
            Some(result.num_partitions)
        } else {
            args.partitions
        },
        name: args.name,
        validate_only: args.validate_only,
    })
}

fn missing_result(api: &'static str, name: &str) -> AdminError {
    AdminError::IncompleteResponse {
        api,
        what: format!("topic `{name}`"),
    }
}

// --- delete --------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct TopicDeleted {
    pub name: String,
}

impl Report for TopicDeleted {
    fn human(&self) -> String {
        format!("Deleted topic `{}`.\n", self.name)
    }
}

pub async fn delete(
    s: &mut Session,
    name: &str,
    timeout_ms: i32,
) -> Result<TopicDeleted, AdminError> {
    let client = s.bootstrap();
    let version = client.version::<DeleteTopicsRequest>()?;
    let mut request = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
    if version >= 6 {
        request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
    } else {
        request.topic_names = vec![topic_name(name)];
    }
    let response = client.send_at(&request, version).await?;
    let result = response
        .responses
        .into_iter()
        .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == name))
        .ok_or_else(|| missing_result("DeleteTopics", name))?;
    AdminError::check(result.error_code, result.error_message.as_deref(), || {
        format!("delete topic `{name}`")
    })?;
    Ok(TopicDeleted {
        name: name.to_string(),
    })
}
