//! `shale admin configs`: describe and alter topic and broker configs
//! (DescribeConfigs, IncrementalAlterConfigs).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::output::{Align, Report, Table};
use crate::parse;
use crate::session::Session;
use crate::AdminError;

/// The kinds of resource whose configs can be described and altered.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Topic,
    Broker,
}

impl ResourceKind {
    /// Kafka's `ConfigResource.Type` code.
    fn code(self) -> i8 {
        match self {
            ResourceKind::Topic => 2,
            ResourceKind::Broker => 4,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ResourceKind::Topic => "topic",
            ResourceKind::Broker => "broker",
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum ConfigsCommand {
    /// Every config of a topic or broker with its value and source.
    Describe(DescribeArgs),
    /// Set or delete configs of a topic or broker (IncrementalAlterConfigs).
    Alter(AlterArgs),
}

#[derive(clap::Args, Debug)]
pub struct ResourceArgs {
    /// `topic` or `broker`.
    #[arg(value_enum)]
    pub kind: ResourceKind,
    /// The topic name, or the broker id (default: the controller).
    pub name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Only the resource's own dynamic overrides (set with `configs alter` or AlterConfigs), as
    /// Kafka's kafka-configs.sh shows without --all.
    #[arg(long)]
    pub dynamic: bool,
}

#[derive(clap::Args, Debug)]
pub struct AlterArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Set a config: --set retention.ms=3600000; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub set: Vec<(String, String)>,
    /// Remove a dynamic config, restoring its default: --delete retention.ms; repeatable.
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
    /// Add items to a list config: --append cleanup.policy=compact; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub append: Vec<(String, String)>,
    /// Remove items from a list config: --subtract cleanup.policy=delete; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub subtract: Vec<(String, String)>,
    /// Ask the broker to validate the change without applying it.
    #[arg(long)]
    pub validate_only: bool,
}

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// One config as DescribeConfigs reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRow {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's `ConfigSource` name: `DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ….
    pub source: String,
    pub read_only: bool,
    pub sensitive: bool,
}

/// Kafka's name for a DescribeConfigs `config_source`.
pub fn source_name(code: i8) -> String {
    match code {
        1 => "DYNAMIC_TOPIC_CONFIG".into(),
        2 => "DYNAMIC_BROKER_CONFIG".into(),
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG".into(),
        4 => "STATIC_BROKER_CONFIG".into(),
        5 => "DEFAULT_CONFIG".into(),
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG".into(),
        7 => "CLIENT_METRICS_CONFIG".into(),
        8 => "GROUP_CONFIG".into(),
        other => format!("UNKNOWN_CONFIG({other})"),
    }
}

/// The table of `rows`: name, value, source.
pub fn config_table(rows: &[ConfigRow]) -> String {
    let mut t = Table::new(&[
        ("CONFIG", Align::Left),
        ("VALUE", Align::Left),
        ("SOURCE", Align::Left),
    ]);
    for r in rows {
        let value = if r.sensitive {
            "(sensitive)".to_string()
        } else {
            r.value.clone().unwrap_or_else(|| "(null)".to_string())
        };
        t.row(vec![r.name.clone(), value, r.source.clone()]);
    }
    t.render()
}

/// The resource name a command addresses: a topic name, or a broker id (the controller's when
/// none is given, so Kafka brokers, which need a concrete id, answer too).
async fn resource_name(s: &mut Session, r: &ResourceArgs) -> Result<String, AdminError> {
    match (r.kind, &r.name) {
        (ResourceKind::Topic, Some(name)) => Ok(name.clone()),
        (ResourceKind::Topic, None) => Err(AdminError::Usage(
            "a topic name is required: `configs ... topic NAME`".into(),
        )),
        (ResourceKind::Broker, Some(id)) => match id.parse::<i32>() {
            Ok(_) => Ok(id.clone()),
            Err(_) => Err(AdminError::Usage(format!(
                "`{id}` is not a broker id (a number)"
            ))),
        },
        (ResourceKind::Broker, None) => {
            let view = s.metadata(Some(&[])).await?;
            let id = view
                .broker(view.controller_id)
                .or(view.brokers.first())
                .map(|b| b.id)
                .ok_or_else(|| AdminError::IncompleteResponse {
                    api: "Metadata",
                    what: "any broker".into(),
                })?;
            Ok(id.to_string())
        }
    }
}

/// Every config of one resource, as DescribeConfigs reports it, sorted by name.
pub async fn describe_resource(
    s: &mut Session,
    kind: ResourceKind,
    name: &str,
) -> Result<Vec<ConfigRow>, AdminError> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(kind.code())
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
    let response = s.bootstrap().send(&request).await?;
    let result = response
        .results
        .into_iter()
        .find(|r| r.resource_name.as_str() == name && r.resource_type == kind.code())
        .ok_or_else(|| AdminError::IncompleteResponse {
            api: "DescribeConfigs",
            what: format!("{} `{name}`", kind.noun()),
        })?;
    AdminError::check(result.error_code, result.error_message.as_deref(), || {
        format!("describe the configs of {} `{name}`", kind.noun())
    })?;
    let mut rows: Vec<ConfigRow> = result
        .configs
        .into_iter()
        .map(|c| ConfigRow {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: source_name(c.config_source),
            read_only: c.read_only,
            sensitive: c.is_sensitive,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

// --- describe ------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct ConfigsDescription {
    pub resource_type: ResourceKind,
    pub resource_name: String,
    pub configs: Vec<ConfigRow>,
}

impl Report for ConfigsDescription {
    fn human(&self) -> String {
        let mut out = format!(
            "Configs of {} {}:\n",
            self.resource_type.noun(),
            self.resource_name
        );
        out.push_str(&config_table(&self.configs));
        out
    }
}

pub async fn describe(s: &mut Session, a: DescribeArgs) -> Result<ConfigsDescription, AdminError> {
    let name = resource_name(s, &a.resource).await?;
    let mut configs = describe_resource(s, a.resource.kind, &name).await?;
    if a.dynamic {
        let own: &[&str] = match a.resource.kind {
            ResourceKind::Topic => &["DYNAMIC_TOPIC_CONFIG"],
            ResourceKind::Broker => &["DYNAMIC_BROKER_CONFIG", "DYNAMIC_DEFAULT_BROKER_CONFIG"],
        };
        configs.retain(|c| own.contains(&c.source.as_str()));
    }
    Ok(ConfigsDescription {
        resource_type: a.resource.kind,
        resource_name: name,
        configs,
    })
}

// --- alter ---------------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct ConfigsAltered {
    pub resource_type: ResourceKind,
    pub resource_name: String,
    pub set: BTreeMap<String, String>,
    pub deleted: Vec<String>,
    pub appended: BTreeMap<String, String>,
    pub subtracted: BTreeMap<String, String>,
    pub validate_only: bool,
}

impl Report for ConfigsAltered {
    fn human(&self) -> String {
        let mut changes: Vec<String> = Vec::new();
        changes.extend(self.set.iter().map(|(k, v)| format!("set {k}={v}")));
        changes.extend(self.deleted.iter().map(|k| format!("deleted {k}")));
        changes.extend(
            self.appended
                .iter()
                .map(|(k, v)| format!("appended {v} to {k}")),
        );
        changes.extend(
            self.subtracted
                .iter()
                .map(|(k, v)| format!("removed {v} from {k}")),
        );
        let verb = if self.validate_only {
            "The broker accepts (but did not apply) these changes to"
        } else {
            "Altered"
        };
        format!(
            "{verb} the configs of {} {}: {}.\n",
            self.resource_type.noun(),
            self.resource_name,
            changes.join(", ")
        )
    }
}

/// The IncrementalAlterConfigs entries for the requested changes, refusing a key named twice
/// (the broker would apply them in an order the operator did not choose).
fn alterations(a: &AlterArgs) -> Result<Vec<AlterableConfig>, AdminError> {
    let with_value = |ops: &[(String, String)], op: i8| {
        ops.iter()
            .map(move |(k, v)| (k.clone(), op, Some(v.clone())))
            .collect::<Vec<_>>()
    };
    let mut all = with_value(&a.set, OP_SET);
    all.extend(a.delete.iter().map(|k| (k.clone(), OP_DELETE, None)));
    all.extend(with_value(&a.append, OP_APPEND));
    all.extend(with_value(&a.subtract, OP_SUBTRACT));
    if all.is_empty() {
        return Err(AdminError::Usage(
            "nothing to change: give --set KEY=VALUE, --delete KEY, --append or --subtract".into(),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, ..) in &all {
        if !seen.insert(k.as_str()) {
            return Err(AdminError::Usage(format!(
                "config `{k}` is named more than once; change each config once per command"
            )));
        }
    }
    Ok(all
        .into_iter()
        .map(|(k, op, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k))
                .with_config_operation(op)
                .with_value(v.map(StrBytes::from_string))
        })
        .collect())
}

pub async fn alter(s: &mut Session, a: AlterArgs) -> Result<ConfigsAltered, AdminError> {
    let configs = alterations(&a)?;
    let name = resource_name(s, &a.resource).await?;
    let kind = a.resource.kind;
    let request = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(kind.code())
            .with_resource_name(StrBytes::from_string(name.clone()))
            .with_configs(configs)])
        .with_validate_only(a.validate_only);
    let response = s.bootstrap().send(&request).await?;
    let result = response
        .responses
        .into_iter()
        .find(|r| r.resource_name.as_str() == name && r.resource_type == kind.code())
        .ok_or_else(|| AdminError::IncompleteResponse {
            api: "IncrementalAlterConfigs",
            what: format!("{} `{name}`", kind.noun()),
        })?;
    AdminError::check(result.error_code, result.error_message.as_deref(), || {
        format!("alter the configs of {} `{name}`", kind.noun())
    })?;
    Ok(ConfigsAltered {
        resource_type: kind,
        resource_name: name,
        set: a.set.into_iter().collect(),
        deleted: a.delete,
        appended: a.append.into_iter().collect(),
        subtracted: a.subtract.into_iter().collect(),
        validate_only: a.validate_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(set: &[(&str, &str)], delete: &[&str]) -> AlterArgs {
        AlterArgs {
            resource: ResourceArgs {
                kind: ResourceKind::Topic,
                name: Some("t".into()),
            },
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            delete: delete.iter().map(|k| k.to_string()).collect(),
            append: vec![],
            subtract: vec![],
            validate_only: false,
        }
    }

    #[test]
    fn alterations_map_to_incremental_operations() {
        let ops = alterations(&args(&[("retention.ms", "5")], &["segment.bytes"])).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].name.as_str(), ops[0].config_operation),
            ("retention.ms", OP_SET)
        );
        assert_eq!(ops[0].value.as_deref(), Some("5"));
        assert_eq!(
            (ops[1].name.as_str(), ops[1].config_operation),
            ("segment.bytes", OP_DELETE)
        );
        assert_eq!(ops[1].value, None);
    }

    #[test]
    fn alterations_refuse_nothing_and_duplicates() {
        let e = alterations(&args(&[], &[])).unwrap_err();
        assert!(e.to_string().contains("nothing to change"), "{e}");
        let e = alterations(&args(&[("a", "1")], &["a"])).unwrap_err();
        assert!(e.to_string().contains("`a` is named more than once"), "{e}");
    }

    #[test]
    fn config_table_shows_sources_and_hides_secrets() {
        let rows = vec![
            ConfigRow {
                name: "retention.ms".into(),
                value: Some("1000".into()),
                source: source_name(1),
                read_only: false,
                sensitive: false,
            },
            ConfigRow {
                name: "ssl.key".into(),
                value: None,
                source: source_name(4),
                read_only: true,
                sensitive: true,
            },
        ];
        assert_eq!(
            config_table(&rows),
            "CONFIG        VALUE        SOURCE\n\
             retention.ms  1000         DYNAMIC_TOPIC_CONFIG\n\
             ssl.key       (sensitive)  STATIC_BROKER_CONFIG\n"
        );
    }
}
