//! AlterConfigs v0–2 (replace a resource's whole set of dynamic configs) and
//! IncrementalAlterConfigs v0–1 (SET / DELETE / APPEND / SUBTRACT single keys), for topics and
//! for the broker's dynamically alterable settings. Changes are validated as a whole (an unknown
//! key or bad value is INVALID_CONFIG naming it), persisted, and applied to the logs at once.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;

use super::{sb, RequestContext};
use crate::broker::{ApiError, Broker};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;
pub const INCREMENTAL_MIN_VERSION: i16 = 0;
pub const INCREMENTAL_MAX_VERSION: i16 = 1;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let mut configs = BTreeMap::new();
            let mut result = Ok(());
            for c in &r.configs {
                match &c.value {
                    Some(v) => {
                        configs.insert(c.name.to_string(), v.to_string());
                    }
                    None => {
                        result = Err(ApiError::new(
                            ResponseError::InvalidRequest,
                            format!("config `{}` has a null value", c.name.as_str()),
                        ))
                    }
                }
            }
            let result = result.and_then(|()| {
                apply(
                    broker,
                    r.resource_type,
                    r.resource_name.as_str(),
                    configs,
                    req.validate_only,
                )
            });
            let resp = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match result {
                Ok(()) => resp,
                Err(e) => resp
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(e.message))),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub fn handle_incremental(
    broker: &Broker,
    _ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.as_str();
            let result = current(broker, r.resource_type, name).and_then(|mut configs| {
                for c in &r.configs {
                    let key = c.name.to_string();
                    let value = c.value.as_ref().map(|v| v.to_string());
                    edit(&mut configs, &key, c.config_operation, value)?;
                }
                apply(broker, r.resource_type, name, configs, req.validate_only)
            });
            let resp = IncrementalResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match result {
                Ok(()) => resp,
                Err(e) => resp
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(e.message))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// One incremental operation on a resource's overrides.
fn edit(
    configs: &mut BTreeMap<String, String>,
    key: &str,
    op: i8,
    value: Option<String>,
) -> Result<(), ApiError> {
    let need = |v: Option<String>| {
        v.ok_or_else(|| {
            ApiError::new(
                ResponseError::InvalidRequest,
                format!("operation on `{key}` needs a value"),
            )
        })
    };
    match op {
        OP_SET => {
            configs.insert(key.to_string(), need(value)?);
        }
        OP_DELETE => {
            configs.remove(key);
        }
        OP_APPEND | OP_SUBTRACT => {
            if key != "cleanup.policy" {
                return Err(ApiError::new(
                    ResponseError::InvalidConfig,
                    format!("`{key}` is not a list config; APPEND and SUBTRACT apply only to list configs"),
                ));
            }
            let value = need(value)?;
            let mut items: Vec<String> = configs
                .get(key)
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if op == OP_APPEND {
                    if !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                } else {
                    items.retain(|i| i != item);
                }
            }
            if items.is_empty() {
                configs.remove(key);
            } else {
                configs.insert(key.to_string(), items.join(","));
            }
        }
        other => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("unknown config operation {other}"),
            ));
        }
    }
    Ok(())
}

/// The resource's current overrides.
fn current(
    broker: &Broker,
    resource_type: i8,
    name: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let meta = broker.metadata();
    match resource_type {
        RESOURCE_TOPIC => meta
            .topics
            .get(name)
            .map(|t| t.configs.clone())
            .ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic `{name}` does not exist"),
                )
            }),
        RESOURCE_BROKER => {
            check_broker_name(broker, name)?;
            Ok(meta.dynamic_broker_configs.clone())
        }
        other => Err(unsupported_resource(other)),
    }
}

fn apply(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), ApiError> {
    match resource_type {
        RESOURCE_TOPIC => broker.alter_topic_configs(name, configs, validate_only),
        RESOURCE_BROKER => {
            check_broker_name(broker, name)?;
            broker.alter_broker_configs(configs, validate_only)
        }
        other => Err(unsupported_resource(other)),
    }
}

/// "" is the cluster-wide default; on a single broker it is the same as this broker's id.
fn check_broker_name(broker: &Broker, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name == broker.config.node_id.to_string() {
        Ok(())
    } else {
        Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!(
                "broker `{name}` is not this broker ({})",
                broker.config.node_id
            ),
        ))
    }
}

fn unsupported_resource(resource_type: i8) -> ApiError {
    ApiError::new(
        ResponseError::InvalidRequest,
        format!("resource type {resource_type} is not supported; use 2 (topic) or 4 (broker)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_list_operations() {
        let mut c = BTreeMap::new();
        edit(&mut c, "cleanup.policy", OP_APPEND, Some("delete".into())).unwrap();
        edit(&mut c, "cleanup.policy", OP_APPEND, Some("compact".into())).unwrap();
        assert_eq!(c["cleanup.policy"], "delete,compact");
        edit(&mut c, "cleanup.policy", OP_SUBTRACT, Some("delete".into())).unwrap();
        assert_eq!(c["cleanup.policy"], "compact");
        edit(&mut c, "retention.ms", OP_SET, Some("5".into())).unwrap();
        edit(&mut c, "retention.ms", OP_DELETE, None).unwrap();
        assert!(!c.contains_key("retention.ms"));
        assert!(edit(&mut c, "retention.ms", OP_APPEND, Some("5".into())).is_err());
    }
}
