//! Broker configuration: one struct, filled from defaults, then `shale.toml`, then `SHALE_*`
//! environment variables and command-line flags (flags win over the environment).
//!
//! Every setting is declared once, in [`broker_settings!`], with its type, default, environment
//! variable, Kafka name and meaning; the TOML struct, the clap overrides and the DescribeConfigs
//! listing are all generated from that one table so they can never drift apart.

use std::path::{Path, PathBuf};

use shale_formats::ids::NodeId;

/// Errors that stop startup. Each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("setting `{setting}` is invalid: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

macro_rules! broker_settings {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident : $ty:ty = $default:expr, env = $env:literal, kafka = $kafka:literal;
    )*) => {
        /// The broker's settings. Field names are the TOML keys; see `infra/shale.example.toml`.
        #[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct BrokerConfig {
            $( $(#[doc = $doc])+ pub $field: $ty, )*
        }

        impl Default for BrokerConfig {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// Command-line / environment overrides; each is optional and wins over the file.
        #[derive(Debug, Default, Clone, clap::Args)]
        pub struct BrokerConfigArgs {
            $(
                $(#[doc = $doc])+
                #[arg(long, env = $env, help = with_default(
                    concat!($($doc, " ",)+),
                    &{ let default: $ty = $default; default },
                ))]
                pub $field: Option<$ty>,
            )*
        }

        impl BrokerConfigArgs {
            /// Applies the overrides that were given.
            pub fn apply(&self, config: &mut BrokerConfig) {
                $( if let Some(v) = &self.$field { config.$field = v.clone(); } )*
            }
        }

        impl BrokerConfig {
            /// `(kafka name, value, documentation)` for every setting, for DescribeConfigs.
            pub fn describe(&self) -> Vec<(&'static str, String, &'static str)> {
                vec![ $( ($kafka, setting_value(&self.$field), concat!($($doc, " ",)+).trim()), )* ]
            }
        }
    };
}

/// A flag's help: its documentation and its default, as `--help` shows them.
fn with_default<T: std::fmt::Debug + serde::Serialize>(doc: &str, default: &T) -> String {
    let value = setting_value(default);
    let value = if value.is_empty() {
        "\"\"".to_owned()
    } else {
        value
    };
    format!("{} [default: {value}]", doc.trim())
}

fn setting_value<T: std::fmt::Debug + serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => format!("{v:?}"),
    }
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

broker_settings! {
    /// Directory holding the log, the cluster metadata and producer ids.
    data_dir: PathBuf = PathBuf::from("./data"), env = "SHALE_DATA_DIR", kafka = "log.dirs";
    /// Address the Kafka listener binds, `HOST:PORT`.
    listen: String = "127.0.0.1:9092".to_string(), env = "SHALE_LISTEN", kafka = "listeners";
    /// `HOST:PORT` that clients are told to connect to; empty means the bound address.
    advertised_listener: String = String::new(), env = "SHALE_ADVERTISED_LISTENER", kafka = "advertised.listeners";
    /// This broker's node id.
    node_id: NodeId = NodeId::new(0), env = "SHALE_NODE_ID", kafka = "node.id";
    /// `HOST:PORT` the controller listener binds: the metadata quorum's RPC between nodes. Required with `controller_quorum_voters`; empty = a private loopback port (a cluster of one).
    controller_listen: String = String::new(), env = "SHALE_CONTROLLER_LISTEN", kafka = "shale.controller.listen";
    /// The metadata quorum's voters, `ID@HOST:PORT,...` (their controller listeners). Empty = this node alone is the quorum, a cluster of one. A node whose id is not listed runs as a broker only.
    controller_quorum_voters: String = String::new(), env = "SHALE_CONTROLLER_QUORUM_VOTERS", kafka = "controller.quorum.voters";
    /// A broker the active controller has not heard from for this long is fenced: it leads nothing until it heartbeats again (ms).
    broker_session_timeout_ms: i64 = 9000, env = "SHALE_BROKER_SESSION_TIMEOUT_MS", kafka = "broker.session.timeout.ms";
    /// How often this broker heartbeats to the active controller (ms).
    broker_heartbeat_interval_ms: i64 = 2000, env = "SHALE_BROKER_HEARTBEAT_INTERVAL_MS", kafka = "broker.heartbeat.interval.ms";
    /// The rack (or zone) of this broker, registered in the cluster metadata and reported to clients; empty = none.
    broker_rack: String = String::new(), env = "SHALE_BROKER_RACK", kafka = "broker.rack";
    /// Partitions of an auto-created topic, and the default for CreateTopics with -1.
    num_partitions: i32 = 1, env = "SHALE_NUM_PARTITIONS", kafka = "num.partitions";
    /// Replication factor of a topic created without one (auto-created, or CreateTopics with -1); -1 = min(3, live brokers).
    default_replication_factor: i16 = -1, env = "SHALE_DEFAULT_REPLICATION_FACTOR", kafka = "default.replication.factor";
    /// A follower that has not caught up with its leader for this long leaves the ISR (ms).
    replica_lag_time_max_ms: i64 = 30_000, env = "SHALE_REPLICA_LAG_TIME_MAX_MS", kafka = "replica.lag.time.max.ms";
    /// Bytes a follower asks for per partition in one fetch from its leader.
    replica_fetch_max_bytes: i32 = 1_048_576, env = "SHALE_REPLICA_FETCH_MAX_BYTES", kafka = "replica.fetch.max.bytes";
    /// Bytes a follower asks for in one fetch from its leader, all partitions together.
    replica_fetch_response_max_bytes: i32 = 10_485_760, env = "SHALE_REPLICA_FETCH_RESPONSE_MAX_BYTES", kafka = "replica.fetch.response.max.bytes";
    /// How long a follower's fetch waits at the leader for new records (ms).
    replica_fetch_wait_max_ms: i32 = 500, env = "SHALE_REPLICA_FETCH_WAIT_MAX_MS", kafka = "replica.fetch.wait.max.ms";
    /// How long a follower waits after a failed fetch before the next (ms).
    replica_fetch_backoff_ms: i32 = 1_000, env = "SHALE_REPLICA_FETCH_BACKOFF_MS", kafka = "replica.fetch.backoff.ms";
    /// Create a topic when a client asks Metadata or Produce for one that does not exist.
    auto_create_topics_enable: bool = true, env = "SHALE_AUTO_CREATE_TOPICS_ENABLE", kafka = "auto.create.topics.enable";
    /// Largest record batch accepted (bytes), the default for the topic's `max.message.bytes`.
    message_max_bytes: i32 = 1_048_588, env = "SHALE_MESSAGE_MAX_BYTES", kafka = "message.max.bytes";
    /// Largest request frame accepted (bytes); a bigger frame closes the connection.
    socket_request_max_bytes: i32 = 104_857_600, env = "SHALE_SOCKET_REQUEST_MAX_BYTES", kafka = "socket.request.max.bytes";
    /// Bytes of request frames being read or waiting to be handled, across all connections; reading pauses at the limit. Must be at least `socket_request_max_bytes`.
    queued_max_request_bytes: u64 = 256 * 1024 * 1024, env = "SHALE_QUEUED_MAX_REQUEST_BYTES", kafka = "queued.max.request.bytes";
    /// Close a connection that has sent nothing and waited for nothing this long (ms).
    connections_max_idle_ms: i64 = 600_000, env = "SHALE_CONNECTIONS_MAX_IDLE_MS", kafka = "connections.max.idle.ms";
    /// Close a connection whose request stops arriving for this long in the middle of a frame (ms).
    request_read_timeout_ms: i64 = 30_000, env = "SHALE_REQUEST_READ_TIMEOUT_MS", kafka = "shale.request.read.timeout.ms";
    /// Most client connections open at once; more are accepted and closed immediately.
    max_connections: u32 = 10_000, env = "SHALE_MAX_CONNECTIONS", kafka = "max.connections";
    /// Requests read ahead per connection before the broker stops reading from it.
    max_inflight_requests_per_connection: u32 = 100, env = "SHALE_MAX_INFLIGHT_REQUESTS_PER_CONNECTION", kafka = "queued.max.requests";
    /// Incremental fetch sessions (KIP-227) the broker keeps at once; more clients fetch without one.
    max_incremental_fetch_session_cache_slots: u32 = 1000, env = "SHALE_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS", kafka = "max.incremental.fetch.session.cache.slots";
    /// Most array elements in one request; bounds what decoding a request can allocate.
    request_max_array_elements: u64 = 1_000_000, env = "SHALE_REQUEST_MAX_ARRAY_ELEMENTS", kafka = "shale.request.max.array.elements";
    /// Largest decompressed size of one batch when the broker must decode records (bytes).
    decompressed_batch_max_bytes: usize = 256 * 1024 * 1024, env = "SHALE_DECOMPRESSED_BATCH_MAX_BYTES", kafka = "shale.decompressed.batch.max.bytes";
    /// Segment size at which the log rolls (bytes); default for topic `segment.bytes`.
    log_segment_bytes: i64 = 1 << 30, env = "SHALE_LOG_SEGMENT_BYTES", kafka = "log.segment.bytes";
    /// Age at which the active segment rolls (ms); default for topic `segment.ms`.
    log_roll_ms: i64 = 7 * DAY_MS, env = "SHALE_LOG_ROLL_MS", kafka = "log.roll.ms";
    /// Time to keep data (ms), -1 forever; default for topic `retention.ms`.
    log_retention_ms: i64 = 7 * DAY_MS, env = "SHALE_LOG_RETENTION_MS", kafka = "log.retention.ms";
    /// Size to keep per partition (bytes), -1 unlimited; default for topic `retention.bytes`.
    log_retention_bytes: i64 = -1, env = "SHALE_LOG_RETENTION_BYTES", kafka = "log.retention.bytes";
    /// How often retention and time-based flush run (ms).
    log_retention_check_interval_ms: i64 = 300_000, env = "SHALE_LOG_RETENTION_CHECK_INTERVAL_MS", kafka = "log.retention.check.interval.ms";
    /// Free bytes below which the data dir's filesystem counts as full: produce is refused and uploaded segments of tiered topics are deleted locally; 0 = only a full disk stops produce.
    storage_min_free_bytes: u64 = 1 << 30, env = "SHALE_STORAGE_MIN_FREE_BYTES", kafka = "shale.storage.min.free.bytes";
    /// How often the data dir's free space is checked (ms).
    storage_space_check_interval_ms: i64 = 1_000, env = "SHALE_STORAGE_SPACE_CHECK_INTERVAL_MS", kafka = "shale.storage.space.check.interval.ms";
    /// fsync after this many messages; the default leaves flushing to the OS, as Kafka does.
    log_flush_interval_messages: i64 = i64::MAX, env = "SHALE_LOG_FLUSH_INTERVAL_MESSAGES", kafka = "log.flush.interval.messages";
    /// fsync when data is older than this (ms); the default leaves flushing to the OS.
    log_flush_interval_ms: i64 = i64::MAX, env = "SHALE_LOG_FLUSH_INTERVAL_MS", kafka = "log.flush.interval.ms";
    /// Default of the topic config `write.caching`: false answers acks=all after the batch is fsynced (group commit); true answers once it is written, as Kafka does.
    write_caching_default: bool = false, env = "SHALE_WRITE_CACHING_DEFAULT", kafka = "shale.write.caching.default";
    /// Bytes between sparse offset/time index entries.
    log_index_interval_bytes: i32 = 4096, env = "SHALE_LOG_INDEX_INTERVAL_BYTES", kafka = "log.index.interval.bytes";
    /// Largest index file (bytes); a full index rolls the segment.
    log_index_size_max_bytes: i32 = 10 * 1024 * 1024, env = "SHALE_LOG_INDEX_SIZE_MAX_BYTES", kafka = "log.index.size.max.bytes";
    /// `CreateTime` keeps the producer's timestamps; `LogAppendTime` stamps batches on append.
    log_message_timestamp_type: String = "CreateTime".to_string(), env = "SHALE_LOG_MESSAGE_TIMESTAMP_TYPE", kafka = "log.message.timestamp.type";
    /// Default cleanup policy for new topics: `delete` or `compact`.
    log_cleanup_policy: String = "delete".to_string(), env = "SHALE_LOG_CLEANUP_POLICY", kafka = "log.cleanup.policy";
    /// Tier sealed segments to object storage at all (topics opt out with `remote.storage.enable=false`).
    remote_storage_enable: bool = true, env = "SHALE_REMOTE_STORAGE_ENABLE", kafka = "remote.log.storage.system.enable";
    /// Object store URL: empty = the directory `<data_dir>/remote` on local disk; `s3://BUCKET[/PREFIX]` for S3-compatible stores; `memory://` for tests.
    remote_storage_url: String = String::new(), env = "SHALE_REMOTE_STORAGE_URL", kafka = "shale.remote.storage.url";
    /// S3 endpoint for non-AWS stores (MinIO, SeaweedFS, Ceph), e.g. `http://127.0.0.1:9000`; empty = AWS or `AWS_ENDPOINT`.
    remote_storage_endpoint: String = String::new(), env = "SHALE_REMOTE_STORAGE_ENDPOINT", kafka = "shale.remote.storage.endpoint";
    /// S3 region; empty = `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1.
    remote_storage_region: String = String::new(), env = "SHALE_REMOTE_STORAGE_REGION", kafka = "shale.remote.storage.region";
    /// Path-style S3 requests (`endpoint/bucket/key`), which MinIO, SeaweedFS and Ceph usually need.
    remote_storage_path_style: bool = false, env = "SHALE_REMOTE_STORAGE_PATH_STYLE", kafka = "shale.remote.storage.path.style";
    /// How often each partition's sealed segments are uploaded and remote/local retention applied (ms).
    remote_log_manager_task_interval_ms: i64 = 30_000, env = "SHALE_REMOTE_LOG_MANAGER_TASK_INTERVAL_MS", kafka = "remote.log.manager.task.interval.ms";
    /// Bounded RPO of the object store: a tiered topic's active segment holding records older than this is rolled and uploaded, however small (ms).
    remote_log_max_upload_interval_ms: i64 = 60_000, env = "SHALE_REMOTE_LOG_MAX_UPLOAD_INTERVAL_MS", kafka = "shale.remote.log.max.upload.interval.ms";
    /// Upload bandwidth cap across all partitions (bytes/s); 0 = unlimited.
    remote_log_manager_copy_max_bytes_per_second: u64 = 0, env = "SHALE_REMOTE_LOG_MANAGER_COPY_MAX_BYTES_PER_SECOND", kafka = "remote.log.manager.copy.max.bytes.per.second";
    /// Segments uploading at once across all partitions.
    remote_log_manager_copier_concurrency: u32 = 4, env = "SHALE_REMOTE_LOG_MANAGER_COPIER_CONCURRENCY", kafka = "remote.log.manager.copier.thread.pool.size";
    /// Bytes of remote data the read cache holds in memory.
    remote_log_reader_cache_bytes: u64 = 512 * 1024 * 1024, env = "SHALE_REMOTE_LOG_READER_CACHE_BYTES", kafka = "shale.remote.log.reader.cache.bytes";
    /// Size of one cached chunk and of one ranged GET (bytes).
    remote_log_reader_chunk_bytes: u64 = 4 * 1024 * 1024, env = "SHALE_REMOTE_LOG_READER_CHUNK_BYTES", kafka = "shale.remote.log.reader.chunk.bytes";
    /// Chunks read ahead of a sequential remote reader.
    remote_log_reader_readahead_chunks: u32 = 4, env = "SHALE_REMOTE_LOG_READER_READAHEAD_CHUNKS", kafka = "shale.remote.log.reader.readahead.chunks";
    /// How often the scrub job looks for orphaned objects and stale staging files in the object store (ms); it runs after a tiering pass.
    remote_log_scrub_interval_ms: i64 = 600_000, env = "SHALE_REMOTE_LOG_SCRUB_INTERVAL_MS", kafka = "shale.remote.log.scrub.interval.ms";
    /// Merge small remote segments (below half of the topic's `segment.bytes`, as the bounded RPO uploads them) into segments of up to `segment.bytes`, one merge per partition per task interval.
    remote_log_segment_merge_enable: bool = true, env = "SHALE_REMOTE_LOG_SEGMENT_MERGE_ENABLE", kafka = "shale.remote.log.segment.merge.enable";
    /// Small remote segments merged into one at a time; a partition's small segments are merged once it has this many (size-tiered: each byte is rewritten about log_fanout(segment.bytes / upload size) times).
    remote_log_segment_merge_fanout: u32 = 8, env = "SHALE_REMOTE_LOG_SEGMENT_MERGE_FANOUT", kafka = "shale.remote.log.segment.merge.fanout";
    /// How long the objects of segments replaced by a merge are kept for readers in flight before they are deleted (ms).
    remote_log_segment_merge_grace_ms: i64 = 300_000, env = "SHALE_REMOTE_LOG_SEGMENT_MERGE_GRACE_MS", kafka = "shale.remote.log.segment.merge.grace.ms";
    /// How old an unreferenced object must be before the scrub job deletes it (ms).
    remote_log_scrub_grace_ms: i64 = 3_600_000, env = "SHALE_REMOTE_LOG_SCRUB_GRACE_MS", kafka = "shale.remote.log.scrub.grace.ms";
    /// Archive tiered topics as Parquet files in the object store; default for topic `archive.enable`.
    archive_enable: bool = true, env = "SHALE_ARCHIVE_ENABLE", kafka = "shale.archive.enable";
    /// Record-batch bytes per Parquet archive file; default for topic `archive.file.bytes`.
    archive_file_bytes: i64 = 128 * 1024 * 1024, env = "SHALE_ARCHIVE_FILE_BYTES", kafka = "shale.archive.file.bytes";
    /// Uploaded data older than this is archived even if it does not fill a file (ms); default for topic `archive.max.lag.ms`.
    archive_max_lag_ms: i64 = 600_000, env = "SHALE_ARCHIVE_MAX_LAG_MS", kafka = "shale.archive.max.lag.ms";
    /// Parquet row groups of the archive close at about this encoded size (bytes).
    archive_row_group_bytes: u64 = 64 * 1024 * 1024, env = "SHALE_ARCHIVE_ROW_GROUP_BYTES", kafka = "shale.archive.row.group.bytes";
    /// ZSTD level of archive files, 1-22: 1 writes about twice as fast as 3 with slightly larger files.
    archive_zstd_level: i32 = 3, env = "SHALE_ARCHIVE_ZSTD_LEVEL", kafka = "shale.archive.zstd.level";
    /// Partitions archived at once; each keeps about one core busy while it encodes.
    archive_concurrency: u32 = 1, env = "SHALE_ARCHIVE_CONCURRENCY", kafka = "shale.archive.concurrency";
    /// Producer ids claimed from the metadata file at a time.
    producer_id_block_size: i64 = 1000, env = "SHALE_PRODUCER_ID_BLOCK_SIZE", kafka = "shale.producer.id.block.size";
    /// How long a new group's first rebalance waits for more members to join (ms).
    group_initial_rebalance_delay_ms: i64 = 3000, env = "SHALE_GROUP_INITIAL_REBALANCE_DELAY_MS", kafka = "group.initial.rebalance.delay.ms";
    /// Smallest session timeout a group member may ask for (ms).
    group_min_session_timeout_ms: i32 = 6000, env = "SHALE_GROUP_MIN_SESSION_TIMEOUT_MS", kafka = "group.min.session.timeout.ms";
    /// Largest session timeout a group member may ask for (ms).
    group_max_session_timeout_ms: i32 = 1_800_000, env = "SHALE_GROUP_MAX_SESSION_TIMEOUT_MS", kafka = "group.max.session.timeout.ms";
    /// Most members in one consumer group.
    group_max_size: i32 = i32::MAX, env = "SHALE_GROUP_MAX_SIZE", kafka = "group.max.size";
    /// Largest metadata string of a committed offset (bytes).
    offset_metadata_max_bytes: i32 = 4096, env = "SHALE_OFFSET_METADATA_MAX_BYTES", kafka = "offset.metadata.max.bytes";
    /// How long an empty group's committed offsets are kept (minutes).
    offsets_retention_minutes: i32 = 10080, env = "SHALE_OFFSETS_RETENTION_MINUTES", kafka = "offsets.retention.minutes";
    /// How often expired committed offsets are removed (ms).
    offsets_retention_check_interval_ms: i64 = 600_000, env = "SHALE_OFFSETS_RETENTION_CHECK_INTERVAL_MS", kafka = "offsets.retention.check.interval.ms";
    /// Partitions of `__consumer_offsets` when it is created.
    offsets_topic_num_partitions: i32 = 50, env = "SHALE_OFFSETS_TOPIC_NUM_PARTITIONS", kafka = "offsets.topic.num.partitions";
    /// Segment size of `__consumer_offsets` when it is created (bytes).
    offsets_topic_segment_bytes: i64 = 104_857_600, env = "SHALE_OFFSETS_TOPIC_SEGMENT_BYTES", kafka = "offsets.topic.segment.bytes";
}

impl BrokerConfig {
    /// Reads a TOML file; unknown keys are an error naming the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks every setting's range; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(setting: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.into(),
            })
        }
        fn at_least<T: PartialOrd + std::fmt::Display>(
            setting: &'static str,
            value: T,
            min: T,
        ) -> Result<(), ConfigError> {
            if value < min {
                return bad(setting, format!("must be >= {min}"));
            }
            Ok(())
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() && !self.listen.contains(':') {
            return bad("listen", format!("`{}` is not HOST:PORT", self.listen));
        }
        if !self.advertised_listener.is_empty()
            && parse_host_port(&self.advertised_listener).is_none()
        {
            return bad(
                "advertised_listener",
                format!("`{}` is not HOST:PORT", self.advertised_listener),
            );
        }
        at_least("node_id", self.node_id, NodeId::new(0))?;
        let voters = self.quorum_voters()?;
        if !voters.is_empty() && self.controller_listen.is_empty() {
            return bad(
                "controller_listen",
                "is required with controller_quorum_voters: the other nodes reach this one's controller there",
            );
        }
        if !self.controller_listen.is_empty() && parse_host_port(&self.controller_listen).is_none()
        {
            return bad(
                "controller_listen",
                format!("`{}` is not HOST:PORT", self.controller_listen),
            );
        }
        at_least("num_partitions", self.num_partitions, 1)?;
        at_least("replica_lag_time_max_ms", self.replica_lag_time_max_ms, 1)?;
        at_least("replica_fetch_max_bytes", self.replica_fetch_max_bytes, 1)?;
        at_least(
            "replica_fetch_response_max_bytes",
            self.replica_fetch_response_max_bytes,
            1,
        )?;
        at_least(
            "replica_fetch_wait_max_ms",
            self.replica_fetch_wait_max_ms,
            0,
        )?;
        at_least("replica_fetch_backoff_ms", self.replica_fetch_backoff_ms, 0)?;
        at_least("archive_row_group_bytes", self.archive_row_group_bytes, 1)?;
        if !(1..=22).contains(&self.archive_zstd_level) {
            return bad("archive_zstd_level", "must be 1 to 22");
        }
        at_least("archive_concurrency", self.archive_concurrency, 1)?;
        if self.default_replication_factor == 0 || self.default_replication_factor < -1 {
            return bad(
                "default_replication_factor",
                "must be at least 1, or -1 for min(3, live brokers)",
            );
        }
        at_least(
            "socket_request_max_bytes",
            self.socket_request_max_bytes,
            1024,
        )?;
        if self.queued_max_request_bytes < self.socket_request_max_bytes as u64 {
            return bad(
                "queued_max_request_bytes",
                format!(
                    "must be at least socket_request_max_bytes ({}), or a request that size could never be read",
                    self.socket_request_max_bytes
                ),
            );
        }
        at_least(
            "remote_log_scrub_interval_ms",
            self.remote_log_scrub_interval_ms,
            1,
        )?;
        at_least(
            "broker_heartbeat_interval_ms",
            self.broker_heartbeat_interval_ms,
            1,
        )?;
        if self.broker_session_timeout_ms <= self.broker_heartbeat_interval_ms {
            return bad(
                "broker_session_timeout_ms",
                format!(
                    "must be larger than broker_heartbeat_interval_ms ({})",
                    self.broker_heartbeat_interval_ms
                ),
            );
        }
        at_least(
            "remote_log_segment_merge_fanout",
            self.remote_log_segment_merge_fanout,
            2,
        )?;
        at_least(
            "remote_log_segment_merge_grace_ms",
            self.remote_log_segment_merge_grace_ms,
            0,
        )?;
        at_least(
            "remote_log_max_upload_interval_ms",
            self.remote_log_max_upload_interval_ms,
            1,
        )?;
        at_least(
            "storage_space_check_interval_ms",
            self.storage_space_check_interval_ms,
            1,
        )?;
        at_least("connections_max_idle_ms", self.connections_max_idle_ms, 1)?;
        at_least("request_read_timeout_ms", self.request_read_timeout_ms, 1)?;
        at_least("message_max_bytes", self.message_max_bytes, 64)?;
        at_least("max_connections", self.max_connections, 1)?;
        at_least(
            "max_inflight_requests_per_connection",
            self.max_inflight_requests_per_connection,
            1,
        )?;
        at_least(
            "request_max_array_elements",
            self.request_max_array_elements,
            1,
        )?;
        at_least(
            "decompressed_batch_max_bytes",
            self.decompressed_batch_max_bytes,
            1024,
        )?;
        at_least(
            "log_retention_check_interval_ms",
            self.log_retention_check_interval_ms,
            1,
        )?;
        at_least("producer_id_block_size", self.producer_id_block_size, 1)?;
        at_least(
            "group_initial_rebalance_delay_ms",
            self.group_initial_rebalance_delay_ms,
            0,
        )?;
        if self.group_min_session_timeout_ms < 0
            || self.group_min_session_timeout_ms > self.group_max_session_timeout_ms
        {
            return bad(
                "group_min_session_timeout_ms",
                "must be >= 0 and <= group_max_session_timeout_ms",
            );
        }
        at_least("group_max_size", self.group_max_size, 1)?;
        if !(0..=i32::from(i16::MAX)).contains(&self.offset_metadata_max_bytes) {
            // The metadata is a Kafka string (int16 length) in __consumer_offsets.
            return bad("offset_metadata_max_bytes", "must be between 0 and 32767");
        }
        at_least(
            "offsets_retention_minutes",
            self.offsets_retention_minutes,
            1,
        )?;
        at_least(
            "offsets_retention_check_interval_ms",
            self.offsets_retention_check_interval_ms,
            1,
        )?;
        at_least(
            "offsets_topic_num_partitions",
            self.offsets_topic_num_partitions,
            1,
        )?;
        if let Err(reason) = crate::topic_config::validate_value(
            "segment.bytes",
            &self.offsets_topic_segment_bytes.to_string(),
        ) {
            return bad("offsets_topic_segment_bytes", reason);
        }
        // The per-topic defaults are validated by the same rules as topic configs.
        if let Err((setting, reason)) = crate::topic_config::validate_broker_defaults(self) {
            return bad(setting, reason);
        }
        Ok(())
    }
}

/// Splits `HOST:PORT` (IPv6 in brackets allowed).
impl BrokerConfig {
    /// `controller_quorum_voters` parsed: node id -> controller `HOST:PORT`.
    pub fn quorum_voters(&self) -> Result<std::collections::BTreeMap<i32, String>, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "controller_quorum_voters",
            reason,
        };
        let mut voters = std::collections::BTreeMap::new();
        for entry in self
            .controller_quorum_voters
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (id, address) = entry
                .split_once('@')
                .ok_or_else(|| invalid(format!("`{entry}` is not ID@HOST:PORT")))?;
            let id: i32 = id
                .parse()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| invalid(format!("`{id}` in `{entry}` is not a node id")))?;
            if parse_host_port(address).is_none() {
                return Err(invalid(format!(
                    "`{address}` in `{entry}` is not HOST:PORT"
                )));
            }
            if voters.insert(id, address.to_string()).is_some() {
                return Err(invalid(format!("node {id} is listed twice")));
            }
        }
        Ok(voters)
    }
}

pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BrokerConfig::default().validate().unwrap();
    }

    #[test]
    fn example_config_lists_every_setting_at_its_default() {
        let text = include_str!("../../../infra/shale.example.toml");
        let parsed: BrokerConfig = toml::from_str(text).unwrap();
        let listed: toml::Table = toml::from_str(text).unwrap();
        let defaults = serde_json::to_value(BrokerConfig::default()).unwrap();
        let fields = defaults.as_object().unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), defaults);
        for name in fields.keys() {
            assert!(
                listed.contains_key(name),
                "infra/shale.example.toml does not document `{name}`"
            );
        }
    }

    #[test]
    fn unknown_toml_key_names_the_key() {
        let err = toml::from_str::<BrokerConfig>("num_partitons = 3").unwrap_err();
        assert!(err.to_string().contains("num_partitons"), "{err}");
    }

    #[test]
    fn bad_value_names_the_setting() {
        let config = BrokerConfig {
            num_partitions: 0,
            ..Default::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("num_partitions"), "{err}");
        let config = BrokerConfig {
            log_message_timestamp_type: "Sometime".into(),
            ..Default::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("log_message_timestamp_type"), "{err}");
    }
}
