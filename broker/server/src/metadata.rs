//! Cluster metadata: topics (names, ids, partition counts, config overrides), the cluster id and
//! the producer-id high-water mark, persisted as one JSON file written atomically.
//!
//! This is the single-node stand-in for the replicated metadata log DESIGN.md describes; the
//! shape (an in-memory state applied from whole-state snapshots) is what a Raft state machine will
//! hold later.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The single-node metadata file, read once to be adopted by the metadata log.
pub const FILE_NAME: &str = "cluster-metadata.json";

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot {action} cluster metadata at {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster metadata at {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

impl MetadataError {
    /// Whether the write failed because the filesystem is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Io { source, .. } if crate::disk_space::is_no_space(source))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Replicas of each new partition (the first partition's count, for an existing topic).
    #[serde(default = "one_replica")]
    pub replication_factor: i16,
}

fn one_replica() -> i16 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// Producer ids below this have been handed out (or reserved in a block).
    pub producer_id_reserved_until: i64,
    /// Broker configs changed at runtime (AlterConfigs on the broker), by Kafka name.
    #[serde(default)]
    pub dynamic_broker_configs: BTreeMap<String, String>,
}

impl ClusterMetadata {
    fn new() -> Self {
        // Kafka cluster ids are 22-character URL-safe base64 UUIDs; any unique string works.
        let cluster_id = Uuid::new_v4().simple().to_string()[..22].to_string();
        Self {
            cluster_id,
            topics: BTreeMap::new(),
            producer_id_reserved_until: 0,
            dynamic_broker_configs: BTreeMap::new(),
        }
    }

    /// The state before anything was recorded, cluster id included (the metadata log's
    /// starting point).
    pub fn empty() -> Self {
        Self {
            cluster_id: String::new(),
            topics: BTreeMap::new(),
            producer_id_reserved_until: 0,
            dynamic_broker_configs: BTreeMap::new(),
        }
    }

    /// Loads the metadata of `data_dir`, or starts empty when there is none.
    pub fn load(data_dir: &Path) -> Result<Self, MetadataError> {
        let path = data_dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MetadataError::Corrupt {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(source) => Err(MetadataError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// [`persist`](Self::persist) unless the file already holds exactly this state.
    pub fn persist_if_changed(&self, data_dir: &Path) -> Result<(), MetadataError> {
        let bytes = serde_json::to_vec_pretty(self).expect("metadata serializes");
        match std::fs::read(data_dir.join(FILE_NAME)) {
            Ok(stored) if stored == bytes => Ok(()),
            _ => self.persist(data_dir),
        }
    }

    /// Writes the whole state: temp file, fsync, rename over the old one, fsync the directory.
    pub fn persist(&self, data_dir: &Path) -> Result<(), MetadataError> {
        let path = data_dir.join(FILE_NAME);
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        let io = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| MetadataError::Io {
                action,
                path: p,
                source,
            }
        };
        let bytes = serde_json::to_vec_pretty(self).expect("metadata serializes");
        let written = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(&bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))
        })();
        if let Err(e) = written {
            // A half-written temp file on a full disk holds space the next attempt needs.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync directory of", &path))?;
        Ok(())
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicMetadata> {
        self.topics.values().find(|t| t.id == id)
    }
}

/// Kafka's topic name rules: 1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name `{name}` is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{name}` contains `{c}`; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ClusterMetadata::load(dir.path()).unwrap();
        m.topics.insert(
            "t".into(),
            TopicMetadata {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: 3,
                configs: BTreeMap::from([("retention.ms".into(), "5".into())]),
                replication_factor: 1,
            },
        );
        m.persist(dir.path()).unwrap();
        assert_eq!(ClusterMetadata::load(dir.path()).unwrap(), m);
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("bad name").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
