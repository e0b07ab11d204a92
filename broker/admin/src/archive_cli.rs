//! `shale archive describe TOPIC`: a topic's Parquet archive as the partition manifests record it
//! (files, offset ranges, rows, bytes), and how far it lags behind the log.
//!
//! It reads the object store named by the same settings as `shale serve` (`--config`, flags,
//! `SHALE_*`), without writing to it, and asks the broker (`--bootstrap-server`, default the
//! configured listener) for each partition's log end offset. If the broker cannot be reached,
//! it says so on stderr and reports no lag.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use shale_cache::CacheConfig;
use shale_tiering::{RemoteLogManager, RemoteLogManagerConfig, RemotePartition};

use crate::client::ClientOptions;
use crate::output::{opt, render, Align, Report, Table};
use crate::session::{Session, LATEST};
use crate::{EXIT_BROKER, EXIT_OK, EXIT_USAGE};
use shale_server::config::{BrokerConfig, BrokerConfigArgs};

#[derive(clap::Args)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    command: ArchiveCommand,
}

#[derive(clap::Subcommand)]
enum ArchiveCommand {
    /// Show a topic's archive: files, offset ranges, rows, bytes and lag behind the log.
    Describe(DescribeArgs),
}

#[derive(clap::Args)]
struct DescribeArgs {
    /// The topic.
    topic: String,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// The broker to ask for log end offsets (HOST:PORT); default: the configured listener.
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// TOML config file of the broker, naming its object store; flags and SHALE_* override it.
    #[arg(long, env = "SHALE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: BrokerConfigArgs,
}

#[derive(Debug, Serialize)]
struct ArchiveReport {
    topic: String,
    /// The hyphenated UUID from the store; Kafka's printed form (base64) when only the broker
    /// knows the topic yet.
    topic_id: String,
    archive_dir: String,
    partitions: Vec<PartitionReport>,
}

#[derive(Debug, Serialize)]
struct PartitionReport {
    partition: i32,
    /// The last offset the archive covers, inclusive.
    archived_end_offset: Option<i64>,
    log_end_offset: Option<i64>,
    /// Offsets in the log and not (yet) in the archive.
    lag: Option<i64>,
    rows: u64,
    size_bytes: u64,
    /// Record-batch bytes the files were made from.
    input_bytes: u64,
    files: Vec<FileReport>,
}

#[derive(Debug, Serialize)]
struct FileReport {
    path: String,
    first_offset: i64,
    last_offset: i64,
    rows: u64,
    size_bytes: u64,
    input_bytes: u64,
    min_timestamp: Option<i64>,
    max_timestamp: Option<i64>,
}

impl Report for ArchiveReport {
    fn human(&self) -> String {
        let mut out = format!(
            "topic {} (id {}), archive under {}\n\n",
            self.topic, self.topic_id, self.archive_dir
        );
        let mut partitions = Table::new(&[
            ("PARTITION", Align::Right),
            ("FILES", Align::Right),
            ("ROWS", Align::Right),
            ("BYTES", Align::Right),
            ("ARCHIVED-END", Align::Right),
            ("LOG-END", Align::Right),
            ("LAG", Align::Right),
        ]);
        let mut files = Table::new(&[
            ("PARTITION", Align::Right),
            ("FIRST", Align::Right),
            ("LAST", Align::Right),
            ("ROWS", Align::Right),
            ("BYTES", Align::Right),
            ("PATH", Align::Left),
        ]);
        for p in &self.partitions {
            partitions.row(vec![
                p.partition.to_string(),
                p.files.len().to_string(),
                p.rows.to_string(),
                p.size_bytes.to_string(),
                opt(p.archived_end_offset),
                opt(p.log_end_offset),
                opt(p.lag),
            ]);
            for f in &p.files {
                files.row(vec![
                    p.partition.to_string(),
                    f.first_offset.to_string(),
                    f.last_offset.to_string(),
                    f.rows.to_string(),
                    f.size_bytes.to_string(),
                    f.path.clone(),
                ]);
            }
        }
        out.push_str(&partitions.render());
        if !files.is_empty() {
            out.push('\n');
            out.push_str(&files.render());
        }
        out
    }
}

/// Runs the command; the exit status is 0 ok, 1 unknown topic, 2 usage or store error.
pub fn main(args: ArchiveArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    let ArchiveCommand::Describe(describe) = args.command;
    match runtime.block_on(run_describe(describe)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
    }
}

async fn run_describe(args: DescribeArgs) -> Result<i32, String> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::from_file(path).map_err(|e| e.to_string())?,
        None => BrokerConfig::default(),
    };
    args.settings.apply(&mut config);
    config.validate().map_err(|e| e.to_string())?;
    let (store_config, prefix) = shale_server::tiered::store_config(&config)
        .map_err(|e| format!("setting `remote_storage_url`: {e}"))?;
    let store = shale_tiering::store::open_store(&store_config)
        .map_err(|e| format!("the object store cannot be opened: {e}"))?;
    let store_name = store.to_string();
    let manager = RemoteLogManager::new(
        store,
        CacheConfig {
            capacity_bytes: 16 << 20,
            ..CacheConfig::default()
        },
        RemoteLogManagerConfig {
            prefix: prefix.clone(),
            ..RemoteLogManagerConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let mut live: BTreeMap<i32, Arc<RemotePartition>> = BTreeMap::new();
    let mut topic_id = None;
    for tp in manager
        .discover_partitions()
        .await
        .map_err(|e| e.to_string())?
    {
        if tp.topic != args.topic {
            continue;
        }
        let partition = manager
            .open_partition(&tp)
            .await
            .map_err(|e| e.to_string())?;
        if partition.manifest().deleted {
            continue;
        }
        topic_id = Some(tp.topic_id);
        live.insert(tp.partition, partition);
    }
    let bootstrap = args.bootstrap_server.clone().unwrap_or_else(|| {
        if config.advertised_listener.is_empty() {
            config.listen.clone()
        } else {
            config.advertised_listener.clone()
        }
    });
    // The broker knows partitions that have uploaded nothing yet, and every log end offset.
    let from_broker = match broker_view(&bootstrap, &args.topic).await {
        Ok(view) => view,
        Err(e) => {
            eprintln!("warning: no lag: cannot ask {bootstrap} for log end offsets: {e}");
            None
        }
    };
    let topic_id = match (topic_id, &from_broker) {
        (Some(id), _) => id.hyphenated().to_string(),
        (None, Some(view)) => view.topic_id.clone().unwrap_or_default(),
        (None, None) => {
            eprintln!(
                "error: topic `{}` is unknown: the broker does not have it and the object store \
                 ({store_name}) has nothing of it",
                args.topic
            );
            return Ok(EXIT_BROKER);
        }
    };
    let log_ends = from_broker
        .as_ref()
        .map(|v| v.log_ends.clone())
        .unwrap_or_default();
    let mut partitions: std::collections::BTreeSet<i32> = live.keys().copied().collect();
    partitions.extend(log_ends.keys().copied());
    let archive_dir =
        shale_tiering::layout::archive_root(&object_store::path::Path::from(prefix.as_str()))
            .join(args.topic.as_str());
    let mut report = ArchiveReport {
        topic: args.topic.clone(),
        topic_id,
        archive_dir: archive_dir.to_string(),
        partitions: Vec::new(),
    };
    for p in partitions {
        let remote = live.get(&p);
        let files: Vec<FileReport> = remote
            .map(|r| r.archive_files())
            .unwrap_or_default()
            .iter()
            .map(|f| FileReport {
                path: remote
                    .map(|r| r.archive_path(f).to_string())
                    .unwrap_or_default(),
                first_offset: f.first_offset.get(),
                last_offset: f.last_offset.get(),
                rows: f.rows,
                size_bytes: f.size_bytes,
                input_bytes: f.input_bytes,
                min_timestamp: f.min_timestamp,
                max_timestamp: f.max_timestamp,
            })
            .collect();
        let archived_end_offset = remote
            .and_then(|r| r.archived_end_offset())
            .map(|a| a.get());
        let log_end_offset = log_ends.get(&p).copied().flatten();
        let lag = log_end_offset.map(|end| {
            end.saturating_sub(archived_end_offset.map_or(0, |a| a + 1))
                .max(0)
        });
        report.partitions.push(PartitionReport {
            partition: p,
            archived_end_offset,
            log_end_offset,
            lag,
            rows: files.iter().map(|f| f.rows).sum(),
            size_bytes: files.iter().map(|f| f.size_bytes).sum(),
            input_bytes: files.iter().map(|f| f.input_bytes).sum(),
            files,
        });
    }
    print!("{}", render(&report, args.json));
    Ok(EXIT_OK)
}

/// What the broker says of the topic: `None` if it does not have it.
struct BrokerView {
    topic_id: Option<String>,
    log_ends: BTreeMap<i32, Option<i64>>,
}

async fn broker_view(bootstrap: &str, topic: &str) -> Result<Option<BrokerView>, String> {
    let options = ClientOptions {
        request_timeout: std::time::Duration::from_secs(10),
        client_id: "shale-archive".to_string(),
        ..ClientOptions::default()
    };
    let mut session = Session::connect(bootstrap, options)
        .await
        .map_err(|e| e.to_string())?;
    let view = session
        .metadata(Some(&[topic.to_string()]))
        .await
        .map_err(|e| e.to_string())?;
    let Some(info) = view.topic(topic) else {
        return Ok(None);
    };
    let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
    let topic_id = info.id.clone();
    let log_ends = session
        .list_offsets(&view, topic, &partitions, LATEST)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(BrokerView { topic_id, log_ends }))
}
