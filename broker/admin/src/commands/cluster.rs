//! `shale admin cluster describe`: cluster id, controller and brokers.

use kafka_protocol::messages::DescribeClusterRequest;
use serde::Serialize;

use crate::output::{fields, opt, Align, Report, Table};
use crate::session::{BrokerInfo, Session};
use crate::AdminError;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Cluster id, controller and brokers.
    Describe,
}

#[derive(Serialize)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub controller_id: Option<i32>,
    pub brokers: Vec<BrokerInfo>,
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
        ]);
        for b in &self.brokers {
            t.row(vec![
                b.id.to_string(),
                b.host.clone(),
                b.port.to_string(),
                opt(b.rack.as_ref()),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
        out
    }
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
        });
    }
    let r = s
        .bootstrap()
        .send(&DescribeClusterRequest::default())
        .await?;
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
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    Ok(ClusterDescription {
        cluster_id: Some(r.cluster_id.to_string()),
        controller_id: (r.controller_id.0 >= 0).then_some(r.controller_id.0),
        brokers,
    })
}
