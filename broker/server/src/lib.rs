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
//! - [`metadata_log`]: the bridge from that view to the metadata log of the controller quorum
//!   (`shale_metadata` records): the records for a change, and the view of an image.
//! - [`api_error`]: `ApiError` and `now_ms`, shared by every module (a leaf: no cycles through
//!   the broker).
//! - [`data_dir_lock`]: one process per data dir (an exclusive `flock` held while serving).
//! - [`disk_space`]: free space as a managed resource: produce refused below a minimum, a reserve
//!   file for metadata writes on a full disk.
//! - [`blocking`]: the blocking boundary: file I/O leaves the Tokio workers here, and only here.
//! - [`group_commit`]: acks=all answered after fdatasync, one fsync per partition per round.
//! - [`broker`]: shared broker state and the operations that change it; background maintenance.
//! - [`group`]: the group coordinator: classic consumer groups and committed offsets, stored in
//!   `__consumer_offsets`.
//! - [`partition`]: one hosted topic-partition and its whole log (Kafka's `UnifiedLog`): the
//!   local log, the remote handle, every offset of both tiers, long-poll wakeups.
//! - [`replica_fetcher`]: followers' fetchers, one per leader: copy, truncate by leader epoch.
//! - [`tiered`]: the broker side of tiered storage: store setup, the copy/retention job, the
//!   Parquet archive job, restore from a bucket.
//! - [`server`]: the listener and connection limit; graceful shutdown.
//! - [`connection`]: one client connection: bounded read-ahead, in-order responses.
//! - [`fetch_session`]: the incremental fetch session cache (KIP-227), state the broker holds.
//! - [`frame`]: size-prefixed framing with a maximum frame size.
//! - [`handlers`]: request validation, decoding, dispatch, and one file per Kafka API.
//!
//! # Dependencies between the modules
//! They point one way, from the edges to the state (no module cycle through the broker):
//!
//! ```text
//! server -> connection -> handlers -> tiered -> broker -> group -> partition -> shale-log
//!                                  \-> blocking       \-> metadata, topic_config, fetch_session
//! ```
//!
//! The group coordinator reaches the broker only through the `group::OffsetsTopicHost` trait
//! that the broker implements, and `api_error` is a leaf everyone may use. (`config` and
//! `topic_config` still use each other: broker settings are validated by topic-config rules.)

pub mod api_error;
pub mod blocking;
pub mod broker;
pub mod config;
pub mod connection;
pub mod data_dir_lock;
pub mod disk_space;
pub mod fetch_session;
pub mod frame;
pub mod group;
pub mod group_commit;
pub mod handlers;
pub mod metadata;
pub mod metadata_log;
pub mod partition;
pub mod replica_fetcher;
pub mod server;
pub mod tiered;
pub mod topic_config;
