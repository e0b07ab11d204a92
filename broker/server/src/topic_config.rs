//! Topic configs: Kafka's names, types, defaults and validation, and how a topic's overrides
//! combine with the broker's defaults into its effective, typed [`TopicConfig`].
//!
//! # Layout
//! - `DEFS`: the one table of topic configs (name, kind = type and validation, default — a fixed
//!   value or a broker setting with its Kafka synonym — and meaning).
//! - [`validate_value`] / [`validate_all`]: the checks every stored value passed.
//! - [`Defaults`]: the broker's static settings and dynamic configs a topic falls back to.
//! - [`describe`]: DescribeConfigs' view, with sources and synonyms.
//! - [`TopicConfig::resolve`]: the typed config, resolved once per metadata change.

use std::collections::BTreeMap;
use std::sync::Arc;

use shale_formats::archive::JsonProjection;

use crate::config::BrokerConfig;

/// DescribeConfigs `config_source` values (Kafka `ConfigSource`).
pub mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// DescribeConfigs `config_type` values (Kafka `ConfigType`).
pub mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Long {
        min: i64,
    },
    Int {
        min: i64,
    },
    Bool,
    Double {
        min: f64,
        max: f64,
    },
    Choice(&'static [&'static str]),
    List(&'static [&'static str]),
    /// `archive.json.fields`: `name:type,…`, checked by the archive encoder's parser.
    JsonFields,
}

/// One topic config: name, type (which is also its validation), default and meaning. This
/// table is the only definition of topic configs: validation, DescribeConfigs, the broker
/// settings that are their defaults, and [`TopicConfig::resolve`] all read it.
struct ConfigDef {
    name: &'static str,
    kind: Kind,
    default: DefaultValue,
    doc: &'static str,
}

/// Where a topic config without a topic override gets its value.
enum DefaultValue {
    /// A fixed value: the broker has no setting for it.
    Fixed(&'static str),
    /// A broker setting, which a dynamic broker config may override in turn.
    Broker(BrokerSynonym),
}

/// A broker setting that holds a topic config's default.
struct BrokerSynonym {
    /// The TOML key / flag, e.g. `log_retention_ms`.
    setting: &'static str,
    /// Kafka's broker config name, e.g. `log.retention.ms`: its synonym in DescribeConfigs, and
    /// the key for changing it at runtime with AlterConfigs on the broker.
    kafka: &'static str,
    value: fn(&BrokerConfig) -> String,
}

const LONG0: Kind = Kind::Long { min: 0 };
const LONG_ANY: Kind = Kind::Long { min: -1 };

const DEFS: &[ConfigDef] = &[
    ConfigDef {
        name: "archive.enable",
        kind: Kind::Bool,
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "archive_enable",
            kafka: "shale.archive.enable",
            value: |c| c.archive_enable.to_string(),
        }),
        doc: "Write the topic's uploaded segments as Parquet files under archive/<topic>/ (tiered topics only).",
    },
    ConfigDef {
        name: "archive.file.bytes",
        kind: Kind::Long { min: 1 },
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "archive_file_bytes",
            kafka: "shale.archive.file.bytes",
            value: |c| c.archive_file_bytes.to_string(),
        }),
        doc: "Record-batch bytes per Parquet archive file; the file itself is smaller (ZSTD, columnar).",
    },
    ConfigDef {
        name: "archive.json.fields",
        kind: Kind::JsonFields,
        default: DefaultValue::Fixed(""),
        doc: "Top-level JSON value fields archived as typed columns of value_json: name:type,... with types string, long, double, boolean, json.",
    },
    ConfigDef {
        name: "archive.max.lag.ms",
        kind: LONG0,
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "archive_max_lag_ms",
            kafka: "shale.archive.max.lag.ms",
            value: |c| c.archive_max_lag_ms.to_string(),
        }),
        doc: "Uploaded data older than this is archived even if it does not fill a file (ms).",
    },
    ConfigDef {
        name: "cleanup.policy",
        kind: Kind::List(&["delete", "compact"]),
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_cleanup_policy",
            kafka: "log.cleanup.policy",
            value: |c| c.log_cleanup_policy.clone(),
        }),
        doc: "delete: drop old segments; compact: keep the latest record per key.",
    },
    ConfigDef {
        name: "compression.type",
        kind: Kind::Choice(&["producer"]),
        default: DefaultValue::Fixed("producer"),
        doc: "Batches are stored as the producer compressed them; Shale never recompresses.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: LONG0,
        default: DefaultValue::Fixed("86400000"),
        doc: "How long tombstones stay readable in a compacted topic (ms).",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        kind: LONG0,
        default: DefaultValue::Fixed("60000"),
        doc: "Delay before a deleted segment file is removed (ms).",
    },
    ConfigDef {
        name: "flush.messages",
        kind: Kind::Long { min: 1 },
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_flush_interval_messages",
            kafka: "log.flush.interval.messages",
            value: |c| c.log_flush_interval_messages.to_string(),
        }),
        doc: "fsync after this many messages.",
    },
    ConfigDef {
        name: "flush.ms",
        kind: LONG0,
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_flush_interval_ms",
            kafka: "log.flush.interval.ms",
            value: |c| c.log_flush_interval_ms.to_string(),
        }),
        doc: "fsync when unflushed data is older than this (ms).",
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: Kind::Int { min: 0 },
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_index_interval_bytes",
            kafka: "log.index.interval.bytes",
            value: |c| c.log_index_interval_bytes.to_string(),
        }),
        doc: "Bytes between offset index entries.",
    },
    ConfigDef {
        name: "local.retention.bytes",
        kind: Kind::Long { min: -2 },
        default: DefaultValue::Fixed("-2"),
        doc: "Local-tier size limit; -2 means use retention.bytes.",
    },
    ConfigDef {
        name: "local.retention.ms",
        kind: Kind::Long { min: -2 },
        default: DefaultValue::Fixed("-2"),
        doc: "Local-tier age limit (ms); -2 means use retention.ms.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: Kind::Long { min: 1 },
        default: DefaultValue::Fixed("9223372036854775807"),
        doc: "Longest a record stays uncompacted (ms).",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: Kind::Int { min: 0 },
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "message_max_bytes",
            kafka: "message.max.bytes",
            value: |c| c.message_max_bytes.to_string(),
        }),
        doc: "Largest record batch accepted (bytes).",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        kind: LONG0,
        default: DefaultValue::Fixed("3600000"),
        doc: "How far in the future a CreateTime timestamp may be (ms).",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        kind: LONG0,
        default: DefaultValue::Fixed("9223372036854775807"),
        doc: "How far in the past a CreateTime timestamp may be (ms).",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_message_timestamp_type",
            kafka: "log.message.timestamp.type",
            value: |c| c.log_message_timestamp_type.clone(),
        }),
        doc: "Keep producer timestamps or stamp batches on append.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Double { min: 0.0, max: 1.0 },
        default: DefaultValue::Fixed("0.5"),
        doc: "Dirty fraction that makes a log eligible for compaction.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: LONG0,
        default: DefaultValue::Fixed("0"),
        doc: "Shortest time a record stays uncompacted (ms).",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: Kind::Int { min: 1 },
        default: DefaultValue::Fixed("1"),
        doc: "Replicas that must have a write for acks=all to succeed.",
    },
    ConfigDef {
        name: "preallocate",
        kind: Kind::Bool,
        default: DefaultValue::Fixed("false"),
        doc: "Preallocate segment files.",
    },
    ConfigDef {
        name: "remote.storage.enable",
        kind: Kind::Bool,
        default: DefaultValue::Fixed("true"),
        doc: "Upload sealed segments to object storage.",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: LONG_ANY,
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_retention_bytes",
            kafka: "log.retention.bytes",
            value: |c| c.log_retention_bytes.to_string(),
        }),
        doc: "Size to keep per partition (bytes); -1 unlimited.",
    },
    ConfigDef {
        name: "retention.ms",
        kind: LONG_ANY,
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_retention_ms",
            kafka: "log.retention.ms",
            value: |c| c.log_retention_ms.to_string(),
        }),
        doc: "Time to keep data (ms); -1 forever.",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: Kind::Int { min: 14 },
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_segment_bytes",
            kafka: "log.segment.bytes",
            value: |c| c.log_segment_bytes.to_string(),
        }),
        doc: "Segment size at which the log rolls (bytes).",
    },
    ConfigDef {
        name: "segment.index.bytes",
        kind: Kind::Int { min: 8 },
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_index_size_max_bytes",
            kafka: "log.index.size.max.bytes",
            value: |c| c.log_index_size_max_bytes.to_string(),
        }),
        doc: "Largest offset index file (bytes).",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        kind: LONG0,
        default: DefaultValue::Fixed("0"),
        doc: "Random jitter subtracted from segment.ms (ms).",
    },
    ConfigDef {
        name: "segment.ms",
        kind: Kind::Long { min: 1 },
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "log_roll_ms",
            kafka: "log.roll.ms",
            value: |c| c.log_roll_ms.to_string(),
        }),
        doc: "Age at which the active segment rolls (ms).",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: DefaultValue::Fixed("false"),
        doc: "Allow an out-of-sync replica to become leader.",
    },
    ConfigDef {
        name: "write.caching",
        kind: Kind::Bool,
        default: DefaultValue::Broker(BrokerSynonym {
            setting: "write_caching_default",
            kafka: "shale.write.caching.default",
            value: |c| c.write_caching_default.to_string(),
        }),
        doc: "true: acks=all is answered once the batch is written, before it is fsynced (Kafka's behaviour); false: after it is fsynced, with group commit.",
    },
];

fn def(name: &str) -> Option<&'static ConfigDef> {
    DEFS.iter().find(|d| d.name == name)
}

/// Checks one topic config value; the error is a sentence naming the key.
pub fn validate_value(name: &str, value: &str) -> Result<(), String> {
    let Some(d) = def(name) else {
        return Err(format!("unknown topic config `{name}`"));
    };
    check(d, value)
}

/// Checks `value` against `d`'s kind.
fn check(d: &ConfigDef, value: &str) -> Result<(), String> {
    let name = d.name;
    let ok = match d.kind {
        Kind::Long { min } => value.parse::<i64>().is_ok_and(|v| v >= min),
        Kind::Int { min } => value.parse::<i32>().is_ok_and(|v| i64::from(v) >= min),
        Kind::Bool => matches!(value.to_ascii_lowercase().as_str(), "true" | "false"),
        Kind::Double { min, max } => value.parse::<f64>().is_ok_and(|v| v >= min && v <= max),
        Kind::Choice(choices) => choices.contains(&value),
        Kind::List(choices) => {
            !value.trim().is_empty() && value.split(',').all(|v| choices.contains(&v.trim()))
        }
        Kind::JsonFields => {
            if let Err(reason) = JsonProjection::parse(value) {
                return Err(format!(
                    "invalid value `{value}` for topic config `{name}`: {reason}"
                ));
            }
            true
        }
    };
    if ok {
        return Ok(());
    }
    let expected = match d.kind {
        Kind::Long { min } => format!("an integer >= {min}"),
        Kind::Int { min } => format!("a 32-bit integer >= {min}"),
        Kind::Bool => "true or false".to_string(),
        Kind::Double { min, max } => format!("a number in [{min}, {max}]"),
        Kind::Choice(c) => format!("one of {}", c.join(", ")),
        Kind::List(c) => format!("a comma-separated list of {}", c.join(", ")),
        Kind::JsonFields => "name:type,... (string, long, double, boolean, json)".to_string(),
    };
    Err(format!(
        "invalid value `{value}` for topic config `{name}`: expected {expected}"
    ))
}

/// Validates a whole set of overrides.
pub fn validate_all<'a>(
    configs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    for (k, v) in configs {
        validate_value(k, v)?;
    }
    Ok(())
}

/// Where topic configs without a topic override get their value: the broker's dynamic
/// overrides (set with AlterConfigs on the broker, by Kafka name), then its static config.
#[derive(Clone, Copy)]
pub struct Defaults<'a> {
    pub broker: &'a BrokerConfig,
    pub dynamic: &'a BTreeMap<String, String>,
}

/// The broker's built-in settings, to tell a configured default from the built-in one.
static BUILT_IN: std::sync::LazyLock<BrokerConfig> =
    std::sync::LazyLock::new(BrokerConfig::default);

impl Defaults<'_> {
    /// `(broker setting's Kafka name, value, source)` of this topic config's broker default.
    fn broker_default(&self, d: &ConfigDef) -> Option<(&'static str, String, i8)> {
        let DefaultValue::Broker(synonym) = &d.default else {
            return None;
        };
        let value = self.value(d);
        let src = if self.dynamic.contains_key(synonym.kafka) {
            source::DYNAMIC_BROKER_CONFIG
        } else if value == (synonym.value)(&BUILT_IN) {
            source::DEFAULT_CONFIG
        } else {
            source::STATIC_BROKER_CONFIG
        };
        Some((synonym.kafka, value, src))
    }

    /// The value a topic without an override of `d` gets: the fixed default, or the broker
    /// setting's dynamic value, else its static one.
    fn value(&self, d: &ConfigDef) -> String {
        match &d.default {
            DefaultValue::Fixed(v) => v.to_string(),
            DefaultValue::Broker(synonym) => match self.dynamic.get(synonym.kafka) {
                Some(v) => v.clone(),
                None => (synonym.value)(self.broker),
            },
        }
    }
}

/// The topic config that a dynamically alterable broker config is the default of.
pub fn topic_synonym_of_broker_config(kafka_name: &str) -> Option<&'static str> {
    DEFS.iter()
        .find(|d| matches!(&d.default, DefaultValue::Broker(s) if s.kafka == kafka_name))
        .map(|d| d.name)
}

/// Checks the broker settings that are topic config defaults by the topic configs' rules; the
/// error is `(the setting's TOML key, reason)`.
pub fn validate_broker_defaults(broker: &BrokerConfig) -> Result<(), (&'static str, String)> {
    for d in DEFS {
        if let DefaultValue::Broker(synonym) = &d.default {
            validate_value(d.name, &(synonym.value)(broker)).map_err(|r| (synonym.setting, r))?;
        }
    }
    Ok(())
}

/// One entry of a DescribeConfigs answer.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub config_type: i8,
    pub doc: &'static str,
    /// `(name, value, source)`, most specific first, as Kafka lists synonyms.
    pub synonyms: Vec<(String, String, i8)>,
    /// Static broker settings cannot be changed through the protocol.
    pub read_only: bool,
}

fn kind_type(kind: Kind) -> i8 {
    match kind {
        Kind::Long { .. } => config_type::LONG,
        Kind::Int { .. } => config_type::INT,
        Kind::Bool => config_type::BOOLEAN,
        Kind::Double { .. } => config_type::DOUBLE,
        Kind::Choice(_) => config_type::STRING,
        Kind::List(_) => config_type::LIST,
        Kind::JsonFields => config_type::STRING,
    }
}

/// Every topic config with its effective value and where it came from.
pub fn describe(defaults: Defaults<'_>, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    DEFS.iter()
        .map(|d| {
            let mut synonyms = Vec::new();
            let topic = overrides.get(d.name);
            if let Some(v) = topic {
                synonyms.push((d.name.to_string(), v.clone(), source::DYNAMIC_TOPIC_CONFIG));
            }
            let from_broker = defaults.broker_default(d);
            if let Some((kafka, v, src)) = &from_broker {
                synonyms.push((kafka.to_string(), v.clone(), *src));
            }
            let (value, source) = match (topic, &from_broker) {
                (Some(v), _) => (v.clone(), source::DYNAMIC_TOPIC_CONFIG),
                (None, Some((_, v, src))) => (v.clone(), *src),
                (None, None) => (defaults.value(d), source::DEFAULT_CONFIG),
            };
            ConfigEntry {
                name: d.name,
                value,
                source,
                config_type: kind_type(d.kind),
                doc: d.doc,
                synonyms,
                read_only: false,
            }
        })
        .collect()
}

/// `cleanup.policy`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

/// A topic's effective configuration, typed: its overrides over the broker's defaults, resolved
/// once whenever the topic's configs or the broker's dynamic configs change (see
/// `Broker::topic_config`), so that the hot path reads fields instead of parsing strings.
/// Every value was validated while resolving, so there is nothing to fall back from.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    /// What the partition's local log needs.
    pub log: shale_log::LogConfig,
    pub cleanup_policy: CleanupPolicy,
    pub remote_storage_enable: bool,
    /// `local.retention.ms` with -2 ("as `retention.ms`") resolved.
    pub local_retention_ms: i64,
    /// `local.retention.bytes` with -2 ("as `retention.bytes`") resolved.
    pub local_retention_bytes: i64,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_after_max_ms: i64,
    pub archive_enable: bool,
    pub archive_file_bytes: u64,
    pub archive_max_lag_ms: i64,
    /// `archive.json.fields`, parsed; `None` when empty.
    pub archive_projection: Option<Arc<JsonProjection>>,
    pub min_insync_replicas: i32,
    /// `write.caching`: acks=all answered before the fsync.
    pub write_caching: bool,
}

impl TopicConfig {
    /// Resolves `overrides` over `defaults`. The error names the config at fault: a value that
    /// is invalid alone, or a combination the log refuses.
    pub fn resolve(
        defaults: Defaults<'_>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let r = Resolver {
            defaults,
            overrides,
        };
        let retention_ms = r.long("retention.ms")?;
        let retention_bytes = r.long("retention.bytes")?;
        let as_total = |local: i64, total: i64| if local == -2 { total } else { local };
        let cleanup = r.string("cleanup.policy")?;
        let cleanup_policy = CleanupPolicy {
            delete: cleanup.split(',').any(|p| p.trim() == "delete"),
            compact: cleanup.split(',').any(|p| p.trim() == "compact"),
        };
        let message_timestamp_type = match r.string("message.timestamp.type")?.as_str() {
            "LogAppendTime" => shale_log::TimestampType::LogAppendTime,
            _ => shale_log::TimestampType::CreateTime,
        };
        let log = shale_log::LogConfig {
            segment_bytes: r.long("segment.bytes")? as u64,
            segment_ms: r.long("segment.ms")?,
            index_interval_bytes: r.long("index.interval.bytes")? as u64,
            segment_index_bytes: r.long("segment.index.bytes")? as u64,
            retention_ms,
            retention_bytes,
            flush_messages: r.long("flush.messages")?,
            flush_ms: r.long("flush.ms")?,
            message_timestamp_type,
            max_message_bytes: r.long("max.message.bytes")? as usize,
        };
        log.validate()?;
        let archive_projection = JsonProjection::parse(&r.string("archive.json.fields")?)
            .map_err(|reason| format!("topic config `archive.json.fields` is invalid: {reason}"))?
            .map(Arc::new);
        Ok(Self {
            log,
            cleanup_policy,
            remote_storage_enable: r.bool("remote.storage.enable")?,
            local_retention_ms: as_total(r.long("local.retention.ms")?, retention_ms),
            local_retention_bytes: as_total(r.long("local.retention.bytes")?, retention_bytes),
            message_timestamp_before_max_ms: r.long("message.timestamp.before.max.ms")?,
            message_timestamp_after_max_ms: r.long("message.timestamp.after.max.ms")?,
            archive_enable: r.bool("archive.enable")?,
            archive_file_bytes: r.long("archive.file.bytes")? as u64,
            archive_max_lag_ms: r.long("archive.max.lag.ms")?,
            archive_projection,
            min_insync_replicas: r.long("min.insync.replicas")? as i32,
            write_caching: r.bool("write.caching")?,
        })
    }

    /// Whether the topic's sealed segments go to the remote tier (when the broker has one):
    /// compacted topics stay local, since compaction across tiers is not built yet.
    pub fn tiered(&self) -> bool {
        self.remote_storage_enable && !self.cleanup_policy.compact
    }
}

/// Reads validated, typed values of one topic's configs.
struct Resolver<'a> {
    defaults: Defaults<'a>,
    overrides: &'a BTreeMap<String, String>,
}

impl Resolver<'_> {
    /// The effective value of `name`, validated by its definition.
    fn string(&self, name: &str) -> Result<String, String> {
        let d = def(name).ok_or_else(|| format!("unknown topic config `{name}`"))?;
        let value = match self.overrides.get(name) {
            Some(v) => v.clone(),
            None => self.defaults.value(d),
        };
        check(d, &value)?;
        Ok(value)
    }

    fn long(&self, name: &str) -> Result<i64, String> {
        let value = self.string(name)?;
        value
            .parse()
            .map_err(|_| format!("topic config `{name}` is not an integer: `{value}`"))
    }

    fn bool(&self, name: &str) -> Result<bool, String> {
        Ok(self.string(name)?.eq_ignore_ascii_case("true"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_and_bad_values_with_the_name() {
        assert!(validate_value("retention.ms", "-1").is_ok());
        assert!(validate_value("retention.ms", "abc")
            .unwrap_err()
            .contains("retention.ms"));
        assert!(validate_value("retention.mss", "1")
            .unwrap_err()
            .contains("retention.mss"));
        assert!(validate_value("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_value("cleanup.policy", "shred").is_err());
    }

    #[test]
    fn topic_override_wins_over_broker_default() {
        let broker = BrokerConfig::default();
        let dynamic = BTreeMap::from([("log.segment.bytes".to_string(), "1000000".to_string())]);
        let defaults = Defaults {
            broker: &broker,
            dynamic: &dynamic,
        };
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        let entries = describe(defaults, &o);
        let e = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(e.value, "1000");
        assert_eq!(e.source, source::DYNAMIC_TOPIC_CONFIG);
        assert_eq!(e.synonyms.len(), 2);
        let e = entries.iter().find(|e| e.name == "segment.ms").unwrap();
        assert_eq!(e.source, source::DEFAULT_CONFIG);
        let e = entries.iter().find(|e| e.name == "segment.bytes").unwrap();
        assert_eq!(
            (e.value.as_str(), e.source),
            ("1000000", source::DYNAMIC_BROKER_CONFIG)
        );
        assert_eq!(
            TopicConfig::resolve(defaults, &o)
                .unwrap()
                .log
                .segment_bytes,
            1_000_000
        );
    }

    /// Resolving types every value once: -2 local retention follows the total, the cleanup
    /// policy is split, a dynamic broker config is a default, and a stored value that does not
    /// validate is an error naming the config instead of a silent fallback.
    #[test]
    fn resolve_types_values_and_names_bad_ones() {
        let broker = BrokerConfig::default();
        let dynamic = BTreeMap::from([("log.retention.bytes".to_string(), "5000".to_string())]);
        let defaults = Defaults {
            broker: &broker,
            dynamic: &dynamic,
        };
        let overrides = BTreeMap::from([
            ("retention.ms".to_string(), "1000".to_string()),
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("archive.json.fields".to_string(), "user:string".to_string()),
        ]);
        let c = TopicConfig::resolve(defaults, &overrides).unwrap();
        assert_eq!((c.log.retention_ms, c.local_retention_ms), (1000, 1000));
        assert_eq!(
            (c.log.retention_bytes, c.local_retention_bytes),
            (5000, 5000)
        );
        assert_eq!(
            c.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert!(!c.tiered(), "compacted topics stay local");
        assert!(c.archive_projection.is_some());
        assert_eq!(c.log.max_message_bytes, broker.message_max_bytes as usize);

        let plain = TopicConfig::resolve(defaults, &BTreeMap::new()).unwrap();
        assert!(plain.tiered() && plain.archive_enable && plain.archive_projection.is_none());
        assert_eq!(plain.archive_file_bytes, broker.archive_file_bytes as u64);

        for (key, value) in [
            ("max.message.bytes", "lots"),
            ("archive.json.fields", "user:uuid"),
            ("local.retention.ms", "-3"),
        ] {
            let bad = BTreeMap::from([(key.to_string(), value.to_string())]);
            let err = TopicConfig::resolve(defaults, &bad).unwrap_err();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    /// The broker settings that default topic configs are found by their Kafka names, and are
    /// validated by the topic configs' rules.
    #[test]
    fn broker_synonyms_come_from_the_one_table() {
        assert_eq!(
            topic_synonym_of_broker_config("log.retention.ms"),
            Some("retention.ms")
        );
        assert_eq!(topic_synonym_of_broker_config("log.dirs"), None);
        let bad = BrokerConfig {
            log_cleanup_policy: "shred".to_string(),
            ..BrokerConfig::default()
        };
        let (setting, reason) = validate_broker_defaults(&bad).unwrap_err();
        assert_eq!(setting, "log_cleanup_policy");
        assert!(reason.contains("cleanup.policy"), "{reason}");
        assert!(validate_broker_defaults(&BrokerConfig::default()).is_ok());
    }
}
