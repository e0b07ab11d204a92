//! The records of the metadata log.
//!
//! Each is stored as JSON in a [`VersionedRecord`]: `{"v":1,"type":"topic",...}`. A reader
//! refuses a version it does not know (a newer node wrote it) rather than guess at its meaning;
//! within a version, new optional fields may be added (`#[serde(default)]`), anything that
//! changes meaning is a new version or a new record type. Later issues add record types (ACLs,
//! SCRAM credentials, transaction state) the same way.
//!
//! Epochs follow KRaft: a broker's epoch is assigned by the image when it registers and fences
//! every request of an earlier incarnation; a partition's leader epoch goes up with every
//! leader change, its partition epoch with every change at all.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::BrokerId;

/// The envelope version this build writes and reads.
pub const RECORD_VERSION: u16 = 1;

/// One record as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedRecord {
    pub v: u16,
    #[serde(flatten)]
    pub record: MetadataRecord,
}

impl VersionedRecord {
    pub fn new(record: MetadataRecord) -> Self {
        Self {
            v: RECORD_VERSION,
            record,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a metadata record always serializes")
    }

    /// Decodes one stored record; the error says why it cannot be read.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON: {e}"))?;
        let v = value.get("v").and_then(serde_json::Value::as_u64);
        if v != Some(u64::from(RECORD_VERSION)) {
            return Err(format!(
                "it is record version {v:?}; this build reads version {RECORD_VERSION} (was it \
                 written by a newer Shale?)"
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("it is not a metadata record: {e}"))
    }
}

/// A command of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The cluster's id, written once, by the first controller of a new cluster.
    ClusterId { cluster_id: String },
    /// A broker (re)registers: a new incarnation gets the next broker epoch and starts fenced.
    RegisterBroker(BrokerRegistration),
    /// A broker leaves the cluster for good (or its registration is replaced).
    UnregisterBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// A broker missed its heartbeats or is shutting down: it may lead nothing.
    FenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// A broker has caught up with the metadata and may lead partitions.
    UnfenceBroker {
        broker_id: BrokerId,
        broker_epoch: i64,
    },
    /// A topic: its partitions follow as [`MetadataRecord::Partition`] records.
    Topic { name: String, topic_id: Uuid },
    /// A new partition of a topic.
    Partition(PartitionRecord),
    /// A change of a partition's leader, ISR or replicas.
    PartitionChange(PartitionChange),
    /// A topic and its partitions and configs are deleted.
    RemoveTopic { topic_id: Uuid },
    /// A dynamic config is set (`value: Some`) or removed (`None`).
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// Producer ids below `next_producer_id` are handed out; the block up to it went to the
    /// broker named.
    ProducerIds {
        broker_id: BrokerId,
        broker_epoch: i64,
        next_producer_id: i64,
    },
}

/// A listener a broker advertises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Endpoint {
    /// The listener name (`PLAINTEXT`).
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// What a broker registers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: BrokerId,
    /// Random per process start: tells a restarted broker from a retried registration.
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub rack: Option<String>,
}

/// A new partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// [`crate::NO_LEADER`] for none.
    pub leader: BrokerId,
    /// The offset a broker starts the partition's log at when it first opens it empty: set for
    /// a topic restored from remote storage (just after what the bucket holds), so that its
    /// leader, on whichever broker, appends after the restored records. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<i64>,
}

/// A new leader, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderChange {
    /// [`crate::NO_LEADER`] for none.
    pub leader: BrokerId,
}

/// What changes in a partition; absent fields stay. Fenced by `partition_epoch`: a change
/// built from an older state of the partition is refused (AlterPartition's rule, KIP-497).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The partition epoch the change was computed from.
    pub partition_epoch: i32,
    #[serde(default)]
    pub leader: Option<LeaderChange>,
    #[serde(default)]
    pub isr: Option<Vec<BrokerId>>,
    #[serde(default)]
    pub replicas: Option<Vec<BrokerId>>,
}

/// What a dynamic config applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum ConfigResource {
    Topic(String),
    /// A broker's id as a string, or the empty string for the cluster-wide default.
    Broker(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_name_their_version() {
        let record = VersionedRecord::new(MetadataRecord::Topic {
            name: "orders".to_string(),
            topic_id: Uuid::from_u128(7),
        });
        let bytes = record.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""v":1"#) && text.contains(r#""type":"topic""#),
            "{text}"
        );
        assert_eq!(VersionedRecord::decode(&bytes).unwrap(), record);
        let newer = text.replace(r#""v":1"#, r#""v":2"#);
        let err = VersionedRecord::decode(newer.as_bytes()).unwrap_err();
        assert!(err.contains("version Some(2)"), "{err}");
        assert!(VersionedRecord::decode(br#"{"v":1,"type":"warp_drive"}"#).is_err());
        assert!(VersionedRecord::decode(b"\xff").is_err());
    }

    #[test]
    fn configs_name_their_resource() {
        let record = VersionedRecord::new(MetadataRecord::Config {
            resource: ConfigResource::Broker(String::new()),
            name: "log.retention.ms".to_string(),
            value: None,
        });
        let bytes = record.encode();
        assert_eq!(VersionedRecord::decode(&bytes).unwrap(), record);
    }
}
