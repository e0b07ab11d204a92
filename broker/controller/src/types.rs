//! The openraft type configuration: what the metadata log carries.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use shale_metadata::VersionedRecord;

/// A node of the controller quorum (`node.id`).
pub type NodeId = u64;

/// One entry's command: records applied together or not at all (a CreateTopics is its topic
/// record and one record per partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub records: Vec<VersionedRecord>,
}

/// What applying an entry did: `refused` says why a proposal changed nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub refused: Option<String>,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
