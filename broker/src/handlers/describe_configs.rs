//! DescribeConfigs v1–4: topic configs (with sources and synonyms) and broker configs.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::Broker;
use crate::topic_config::{self, config_type, source, ConfigEntry};

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 4;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => match broker.metadata().topics.get(r.resource_name.as_str()) {
                    Some(t) => topic_config::describe(&broker.config, &t.configs),
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(sb(format!(
                                "topic `{}` does not exist",
                                r.resource_name.as_str()
                            ))))
                    }
                },
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if !name.is_empty() && name != broker.config.node_id.to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(sb(format!(
                                "broker `{name}` is not this broker ({})",
                                broker.config.node_id
                            ))));
                    }
                    broker_entries(broker)
                }
                other => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(format!(
                            "resource type {other} is not supported"
                        ))))
                }
            };
            let configs = entries
                .into_iter()
                .filter(|e| {
                    r.configuration_keys
                        .as_ref()
                        .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                })
                .map(|e| {
                    to_result(
                        e,
                        req.include_synonyms,
                        req.include_documentation,
                        r.resource_type == RESOURCE_BROKER,
                    )
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn broker_entries(broker: &Broker) -> Vec<ConfigEntry> {
    let defaults = crate::config::BrokerConfig::default().describe();
    broker
        .config
        .describe()
        .into_iter()
        .map(|(name, value, doc)| {
            let is_default = defaults.iter().any(|(n, v, _)| *n == name && *v == value);
            let src = if is_default {
                source::DEFAULT_CONFIG
            } else {
                source::STATIC_BROKER_CONFIG
            };
            let ty = if value == "true" || value == "false" {
                config_type::BOOLEAN
            } else if value.parse::<i64>().is_ok() {
                config_type::LONG
            } else {
                config_type::STRING
            };
            ConfigEntry {
                name,
                synonyms: vec![(name.to_string(), value.clone(), src)],
                value,
                source: src,
                config_type: ty,
                doc,
            }
        })
        .collect()
}

/// Broker settings are static (file, flags, environment), so they are read-only here.
fn to_result(
    e: ConfigEntry,
    synonyms: bool,
    documentation: bool,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(sb(e.name))
        .with_value(Some(sb(e.value)))
        .with_read_only(read_only)
        .with_config_source(e.source)
        .with_config_type(e.config_type);
    if synonyms {
        r.synonyms = e
            .synonyms
            .into_iter()
            .map(|(n, v, s)| {
                DescribeConfigsSynonym::default()
                    .with_name(sb(n))
                    .with_value(Some(sb(v)))
                    .with_source(s)
            })
            .collect();
    }
    if documentation {
        r.documentation = Some(sb(e.doc));
    }
    r
}
