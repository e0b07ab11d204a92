//! `shale admin cluster describe`: cluster id, controller, brokers and the controller quorum.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeClusterRequest, DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::output::{fields, opt, Align, Report, Table};
use crate::session::{BrokerInfo, Session};
use crate::AdminError;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller, brokers and the controller quorum.
    Describe,
}

#[derive(Serialize)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub brokers: Vec<BrokerInfo>,
    /// The controller quorum (DescribeQuorum), when the broker serves it.
    pub quorum: Option<QuorumDescription>,
}

#[derive(Serialize)]
pub struct QuorumDescription {
    pub leader_id: i32,
    /// The leader's epoch: the Raft term.
    pub epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<QuorumVoter>,
}

#[derive(Serialize)]
pub struct QuorumVoter {
    pub id: i32,
    /// -1 when the leader does not know it.
    pub log_end_offset: i64,
    /// Entries behind the leader's high watermark.
    pub lag: Option<i64>,
}

impl Report for ClusterDescription {
    fn human(&self) -> String {
        let mut out = fields(&[
            ("Cluster id", opt(self.cluster_id.as_ref())),
            ("Controller", opt(self.controller_id)),
        ]);
        let mut t = Table::new(&[
            ("BROKER", Align::Right),
            ("HOST", Align::Left),
            ("PORT", Align::Right),
            ("RACK", Align::Left),
            ("STATE", Align::Left),
        ]);
        for b in &self.brokers {
            t.row(vec![
                b.id.to_string(),
                b.host.clone(),
                b.port.to_string(),
                opt(b.rack.as_ref()),
                if b.fenced { "fenced" } else { "active" }.to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
        if let Some(q) = &self.quorum {
            out.push('\n');
            out.push_str(&fields(&[
                ("Quorum leader", q.leader_id.to_string()),
                ("Epoch", q.epoch.to_string()),
                ("High watermark", q.high_watermark.to_string()),
            ]));
            let mut t = Table::new(&[
                ("VOTER", Align::Right),
                ("LOG END", Align::Right),
                ("LAG", Align::Right),
            ]);
            for v in &q.voters {
                t.row(vec![
                    v.id.to_string(),
                    v.log_end_offset.to_string(),
                    opt(v.lag),
                ]);
            }
            out.push('\n');
            out.push_str(&t.render());
        }
        out
    }
}

/// DescribeQuorum of `__cluster_metadata-0`, if the broker serves it.
async fn quorum(s: &mut Session) -> Result<Option<QuorumDescription>, AdminError> {
    if s.bootstrap().version::<DescribeQuorumRequest>().is_err() {
        return Ok(None);
    }
    let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let r = s.bootstrap().send(&request).await?;
    AdminError::check(r.error_code, r.error_message.as_deref(), || {
        "describe the controller quorum".into()
    })?;
    let Some(p) = r.topics.first().and_then(|t| t.partitions.first()) else {
        return Ok(None);
    };
    AdminError::check(p.error_code, p.error_message.as_deref(), || {
        "describe the controller quorum".into()
    })?;
    Ok(Some(QuorumDescription {
        leader_id: p.leader_id.0,
        epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: p
            .current_voters
            .iter()
            .map(|v| QuorumVoter {
                id: v.replica_id.0,
                log_end_offset: v.log_end_offset,
                lag: (v.log_end_offset >= 0).then(|| (p.high_watermark - v.log_end_offset).max(0)),
            })
            .collect(),
    }))
}

/// DescribeCluster where the broker serves it (it names the controller as the admin API sees
/// it), otherwise Metadata.
pub async fn describe(s: &mut Session) -> Result<ClusterDescription, AdminError> {
    if s.bootstrap().version::<DescribeClusterRequest>().is_err() {
        let view = s.metadata(Some(&[])).await?;
        return Ok(ClusterDescription {
            cluster_id: view.cluster_id,
            controller_id: (view.controller_id >= 0).then_some(view.controller_id),
            brokers: view.brokers,
            quorum: quorum(s).await?,
        });
    }
    // v2 lists the fenced brokers too, marked (KIP-1073).
    let version = s.bootstrap().version::<DescribeClusterRequest>()?;
    let request = DescribeClusterRequest::default().with_include_fenced_brokers(version >= 2);
    let r = s.bootstrap().send_at(&request, version).await?;
    AdminError::check(r.error_code, r.error_message.as_deref(), || {
        "describe the cluster".into()
    })?;
    let mut brokers: Vec<BrokerInfo> = r
        .brokers
        .iter()
        .map(|b| BrokerInfo {
            id: b.broker_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
            fenced: b.is_fenced,
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    Ok(ClusterDescription {
        cluster_id: Some(r.cluster_id.to_string()),
        controller_id: (r.controller_id.0 >= 0).then_some(r.controller_id.0),
        brokers,
        quorum: quorum(s).await?,
    })
}
