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
    let meta = broker.metadata();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => match meta.topics.get(r.resource_name.as_str()) {
                    Some(t) => topic_config::describe(broker.topic_defaults(&meta), &t.configs),
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
                    broker_entries(broker, &meta.dynamic_broker_configs)
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
                .map(|e| to_result(e, req.include_synonyms, req.include_documentation))
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn broker_entries(
    broker: &Broker,
    dynamic: &std::collections::BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    let defaults = crate::config::BrokerConfig::default().describe();
    broker
        .config
        .describe()
        .into_iter()
        .map(|(name, value, doc)| {
            let is_default = defaults.iter().any(|(n, v, _)| *n == name && *v == value);
            let static_src = if is_default {
                source::DEFAULT_CONFIG
            } else {
                source::STATIC_BROKER_CONFIG
            };
            let mut synonyms = vec![(name.to_string(), value.clone(), static_src)];
            let (value, src) = match dynamic.get(name) {
                Some(v) => {
                    synonyms.insert(
                        0,
                        (name.to_string(), v.clone(), source::DYNAMIC_BROKER_CONFIG),
                    );
                    (v.clone(), source::DYNAMIC_BROKER_CONFIG)
                }
                None => (value, static_src),
            };
            let ty = if value == "true" || value == "false" {
                config_type::BOOLEAN
            } else if value.parse::<i64>().is_ok() {
                config_type::LONG
            } else {
                config_type::STRING
            };
            let read_only = topic_config::topic_synonym_of_broker_config(name).is_none();
            ConfigEntry {
                name,
                synonyms,
                value,
                source: src,
                config_type: ty,
                doc,
                read_only,
            }
        })
        .collect()
}

fn to_result(e: ConfigEntry, synonyms: bool, documentation: bool) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(sb(e.name))
        .with_value(Some(sb(e.value)))
        .with_read_only(e.read_only)
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
