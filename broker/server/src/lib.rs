//! The Shale broker as a library: the Kafka-protocol server, partitions, coordinators and
//! tiered-storage wiring over the local log of `shale-log`.
//!
//! `broker/` is a folder of crates along its seams: `shale-log` (the local log, no network),
//! this crate (everything a running broker is), `shale-admin` (the operator's client and CLI
//! commands, which share nothing with the server but its config), and `shale-broker` (the thin
//! `shale` binary).
//!
//! # Layout
//! - [`config`]: broker settings (TOML file, `SHALE_*` environment, flags) and their validation.
//! - [`topic_config`]: topic configs by Kafka name: types, defaults, validation, effective values.
//! - [`metadata`]: cluster metadata (topics, ids, configs, producer-id blocks), persisted atomically.
//! - [`broker`]: shared broker state and the operations that change it; background maintenance.
//! - [`group`]: the group coordinator: classic consumer groups and committed offsets, stored in
//!   `__consumer_offsets`.
//! - [`partition`]: one hosted topic-partition: its log, high watermark and long-poll wakeups.
//! - [`tiered`]: the broker side of tiered storage: store setup, the copy/retention job, the
//!   Parquet archive job, remote reads, restore from a bucket.
//! - [`server`]: the listener and connection limit; graceful shutdown.
//! - [`connection`]: one client connection: bounded read-ahead, in-order responses.
//! - [`frame`]: size-prefixed framing with a maximum frame size.
//! - [`handlers`]: request validation, decoding, dispatch, and one file per Kafka API.

pub mod broker;
pub mod config;
pub mod connection;
pub mod frame;
pub mod group;
pub mod handlers;
pub mod metadata;
pub mod partition;
pub mod server;
pub mod tiered;
pub mod topic_config;
