//! Topic configs: Kafka's names, types, defaults and validation, and how a topic's overrides
//! combine with the broker's defaults into the effective settings of its log.

use std::collections::BTreeMap;

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

/// One topic config: name, type, static default (when the broker has no synonym) and meaning.
struct ConfigDef {
    name: &'static str,
    kind: Kind,
    default: &'static str,
    doc: &'static str,
}

const LONG0: Kind = Kind::Long { min: 0 };
const LONG_ANY: Kind = Kind::Long { min: -1 };

const DEFS: &[ConfigDef] = &[
    ConfigDef {
        name: "archive.enable",
        kind: Kind::Bool,
        default: "true",
        doc: "Write the topic's uploaded segments as Parquet files under archive/<topic>/ (tiered topics only).",
    },
    ConfigDef {
        name: "archive.file.bytes",
        kind: Kind::Long { min: 1 },
        default: "134217728",
        doc: "Record-batch bytes per Parquet archive file; the file itself is smaller (ZSTD, columnar).",
    },
    ConfigDef {
        name: "archive.json.fields",
        kind: Kind::JsonFields,
        default: "",
        doc: "Top-level JSON value fields archived as typed columns of value_json: name:type,... with types string, long, double, boolean, json.",
    },
    ConfigDef {
        name: "archive.max.lag.ms",
        kind: LONG0,
        default: "600000",
        doc: "Uploaded data older than this is archived even if it does not fill a file (ms).",
    },
    ConfigDef {
        name: "cleanup.policy",
        kind: Kind::List(&["delete", "compact"]),
        default: "delete",
        doc: "delete: drop old segments; compact: keep the latest record per key.",
    },
    ConfigDef {
        name: "compression.type",
        kind: Kind::Choice(&["producer"]),
        default: "producer",
        doc: "Batches are stored as the producer compressed them; Shale never recompresses.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: LONG0,
        default: "86400000",
        doc: "How long tombstones stay readable in a compacted topic (ms).",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        kind: LONG0,
        default: "60000",
        doc: "Delay before a deleted segment file is removed (ms).",
    },
    ConfigDef {
        name: "flush.messages",
        kind: Kind::Long { min: 1 },
        default: "9223372036854775807",
        doc: "fsync after this many messages.",
    },
    ConfigDef {
        name: "flush.ms",
        kind: LONG0,
        default: "9223372036854775807",
        doc: "fsync when unflushed data is older than this (ms).",
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: Kind::Int { min: 0 },
        default: "4096",
        doc: "Bytes between offset index entries.",
    },
    ConfigDef {
        name: "local.retention.bytes",
        kind: Kind::Long { min: -2 },
        default: "-2",
        doc: "Local-tier size limit; -2 means use retention.bytes.",
    },
    ConfigDef {
        name: "local.retention.ms",
        kind: Kind::Long { min: -2 },
        default: "-2",
        doc: "Local-tier age limit (ms); -2 means use retention.ms.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: Kind::Long { min: 1 },
        default: "9223372036854775807",
        doc: "Longest a record stays uncompacted (ms).",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: Kind::Int { min: 0 },
        default: "1048588",
        doc: "Largest record batch accepted (bytes).",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        kind: LONG0,
        default: "3600000",
        doc: "How far in the future a CreateTime timestamp may be (ms).",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        kind: LONG0,
        default: "9223372036854775807",
        doc: "How far in the past a CreateTime timestamp may be (ms).",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        doc: "Keep producer timestamps or stamp batches on append.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Double { min: 0.0, max: 1.0 },
        default: "0.5",
        doc: "Dirty fraction that makes a log eligible for compaction.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: LONG0,
        default: "0",
        doc: "Shortest time a record stays uncompacted (ms).",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: Kind::Int { min: 1 },
        default: "1",
        doc: "Replicas that must have a write for acks=all to succeed.",
    },
    ConfigDef {
        name: "preallocate",
        kind: Kind::Bool,
        default: "false",
        doc: "Preallocate segment files.",
    },
    ConfigDef {
        name: "remote.storage.enable",
        kind: Kind::Bool,
        default: "true",
        doc: "Upload sealed segments to object storage.",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: LONG_ANY,
        default: "-1",
        doc: "Size to keep per partition (bytes); -1 unlimited.",
    },
    ConfigDef {
        name: "retention.ms",
        kind: LONG_ANY,
        default: "604800000",
        doc: "Time to keep data (ms); -1 forever.",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: Kind::Int { min: 14 },
        default: "1073741824",
        doc: "Segment size at which the log rolls (bytes).",
    },
    ConfigDef {
        name: "segment.index.bytes",
        kind: Kind::Int { min: 8 },
        default: "10485760",
        doc: "Largest offset index file (bytes).",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        kind: LONG0,
        default: "0",
        doc: "Random jitter subtracted from segment.ms (ms).",
    },
    ConfigDef {
        name: "segment.ms",
        kind: Kind::Long { min: 1 },
        default: "604800000",
        doc: "Age at which the active segment rolls (ms).",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: "false",
        doc: "Allow an out-of-sync replica to become leader.",
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
            if let Err(reason) = shale_formats::archive::JsonProjection::parse(value) {
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

impl Defaults<'_> {
    /// `(broker setting's Kafka name, value, source)` of this topic config's broker default.
    fn broker_default(&self, name: &str) -> Option<(&'static str, String, i8)> {
        let d = self
            .broker
            .topic_defaults()
            .into_iter()
            .find(|d| d.topic == name)?;
        if let Some(v) = self.dynamic.get(d.kafka) {
            return Some((d.kafka, v.clone(), source::DYNAMIC_BROKER_CONFIG));
        }
        let built_in = BrokerConfig::default()
            .topic_defaults()
            .into_iter()
            .find(|b| b.topic == name)
            .map(|b| b.value);
        let src = if built_in.as_deref() == Some(d.value.as_str()) {
            source::DEFAULT_CONFIG
        } else {
            source::STATIC_BROKER_CONFIG
        };
        Some((d.kafka, d.value, src))
    }
}

/// The topic config that a dynamically alterable broker config is the default of.
pub fn topic_synonym_of_broker_config(kafka_name: &str) -> Option<&'static str> {
    BrokerConfig::default()
        .topic_defaults()
        .into_iter()
        .find(|d| d.kafka == kafka_name)
        .map(|d| d.topic)
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
            let from_broker = defaults.broker_default(d.name);
            if let Some((kafka, v, src)) = &from_broker {
                synonyms.push((kafka.to_string(), v.clone(), *src));
            }
            let (value, source) = match (topic, &from_broker) {
                (Some(v), _) => (v.clone(), source::DYNAMIC_TOPIC_CONFIG),
                (None, Some((_, v, src))) => (v.clone(), *src),
                (None, None) => (d.default.to_string(), source::DEFAULT_CONFIG),
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

/// The effective value of one topic config.
pub fn effective(
    defaults: Defaults<'_>,
    overrides: &BTreeMap<String, String>,
    name: &str,
) -> String {
    if let Some(v) = overrides.get(name) {
        return v.clone();
    }
    if let Some((_, v, _)) = defaults.broker_default(name) {
        return v;
    }
    def(name).map(|d| d.default.to_string()).unwrap_or_default()
}

fn effective_i64(defaults: Defaults<'_>, overrides: &BTreeMap<String, String>, name: &str) -> i64 {
    let v = effective(defaults, overrides, name);
    // Values were validated on the way in, so a parse failure is a broken invariant.
    v.parse()
        .unwrap_or_else(|_| panic!("topic config {name} holds unvalidated value {v:?}"))
}

/// The settings of a partition's log, from the topic's overrides over the broker's defaults.
pub fn log_config(
    defaults: Defaults<'_>,
    overrides: &BTreeMap<String, String>,
) -> shale_log::LogConfig {
    let timestamp_type =
        if effective(defaults, overrides, "message.timestamp.type") == "LogAppendTime" {
            shale_log::TimestampType::LogAppendTime
        } else {
            shale_log::TimestampType::CreateTime
        };
    shale_log::LogConfig {
        segment_bytes: effective_i64(defaults, overrides, "segment.bytes") as u64,
        segment_ms: effective_i64(defaults, overrides, "segment.ms"),
        index_interval_bytes: effective_i64(defaults, overrides, "index.interval.bytes") as u64,
        segment_index_bytes: effective_i64(defaults, overrides, "segment.index.bytes") as u64,
        retention_ms: effective_i64(defaults, overrides, "retention.ms"),
        retention_bytes: effective_i64(defaults, overrides, "retention.bytes"),
        flush_messages: effective_i64(defaults, overrides, "flush.messages"),
        flush_ms: effective_i64(defaults, overrides, "flush.ms"),
        message_timestamp_type: timestamp_type,
        max_message_bytes: effective_i64(defaults, overrides, "max.message.bytes") as usize,
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
        assert_eq!(log_config(defaults, &o).segment_bytes, 1_000_000);
    }
}
