//! # Layout
//! - [`record`]: [`MetadataRecord`], the versioned commands of the metadata log, in their
//!   [`VersionedRecord`] envelope.
//! - [`image`]: [`MetadataImage`], the state the records build, and [`MetadataImage::apply`].
//! - [`snapshot`]: the checksummed encoding of an image, which lets the log be truncated.
//! - [`placement`]: where the replicas of new partitions go.
//!
//! # What it is
//!
//! The replicated state machine of Shale's cluster metadata, KRaft's `__cluster_metadata`
//! (KIP-500, KIP-631) in our own records: the controller quorum orders them, every node applies
//! the committed ones in order to its own image, and serves Metadata and routing from it. The
//! consensus (openraft), its log storage and the RPC live in the server crate; this crate is
//! sync, does no I/O and knows nothing of the network, so that "apply, snapshot, restore and
//! replay give the same image" can be tested over random record sequences.
//!
//! # Guarantees
//! - [`MetadataImage::apply`] is deterministic and all-or-nothing: a record either changes the
//!   image as documented or is refused with an [`ApplyError`] and changes nothing, identically
//!   on every node. The controller validates before it proposes, so a refused record in a
//!   committed log is a bug made harmless, not a divergence.
//! - The image's invariants ([`MetadataImage::check_invariants`]) hold after every apply:
//!   names and ids map one to one, every partition's ISR is within its replicas and its leader
//!   is in its ISR (or it has none), epochs only go up.
//! - A snapshot restores exactly the image it was taken of.

pub mod image;
pub mod placement;
pub mod record;
pub mod snapshot;

pub use image::{ApplyError, BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use placement::{place_replicas, BrokerLoad, PlacementError};
pub use record::{
    BrokerRegistration, ConfigResource, Endpoint, LeaderChange, MetadataRecord, PartitionChange,
    PartitionRecord, VersionedRecord, RECORD_VERSION,
};
pub use snapshot::{decode_snapshot, encode_snapshot, SnapshotError};

/// A broker's id (`node.id`).
pub type BrokerId = i32;

/// "No leader" in a partition's leader field, as in Kafka.
pub const NO_LEADER: BrokerId = -1;
