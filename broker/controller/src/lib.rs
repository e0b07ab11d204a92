//! # Layout
//! - [`types`]: the openraft type configuration: a [`Proposal`] (metadata records applied
//!   together) and its [`Outcome`].
//! - [`log_store`]: the durable Raft log and vote in the node's metadata directory.
//! - [`state_machine`]: the metadata image (`shale_metadata`) as openraft's state machine, its
//!   snapshots on disk.
//! - [`network`]: the controller RPC between nodes, length-prefixed JSON over TCP.
//! - [`controller`]: [`Controller`], a node of the quorum: start, bootstrap, propose, publish.
//! - [`liveness`]: broker heartbeats and the leader's fencing of silent brokers.
//!
//! # What it is
//!
//! Shale's controller quorum (KRaft's, KIP-500/595/631): the cluster metadata log replicated
//! by openraft (0.9, storage-v2), no consensus code of our own. Our part is the storage (the
//! log, the vote, snapshots), the state machine over `shale_metadata`, the RPC, and the
//! bootstrap of a new cluster without a format step. The broker side (registration,
//! heartbeats, serving Metadata from the image, forwarding admin requests) builds on
//! [`Controller::propose`] and [`Controller::subscribe`].

pub mod controller;
pub mod liveness;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

pub use controller::{Controller, ControllerConfig, ControllerError, Heartbeater, ProposeError};
pub use log_store::NoSpaceHook;
pub use types::{NodeId, Outcome, Proposal};
