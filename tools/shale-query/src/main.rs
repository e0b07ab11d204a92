//! `shale-query`: SQL over Shale's Parquet archive, with DataFusion.
//!
//! # Layout
//! One file: arguments, opening the store (a local directory or S3), registering each archived
//! topic as a table, running the query and printing the result.
//!
//! Every topic under `<store>/<prefix>/archive/` is a table named after the topic, with the
//! archive's columns plus `partition` (from the hive directories `partition=<p>`). With
//! `--from-offset` / `--to-offset` each table is a view pinned to that offset range: the
//! predicate reaches the Parquet scan, which skips files and row groups by their `offset`
//! statistics, so a query over a narrow range reads little of a large archive.
//!
//! ```text
//! shale-query --data-dir data 'SELECT "partition", count(*) FROM orders GROUP BY 1'
//! shale-query --url s3://bucket/prefix --endpoint http://127.0.0.1:9000 --path-style \
//!     --from-offset 1000 --to-offset 1999 'SELECT "offset", value FROM orders'
//! ```
//!
//! Read-only: it never writes to the store. It reads the directory, not the partition
//! manifests: a file that a crash left unrecorded shows until the broker's next archive pass
//! removes it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

#[derive(Parser)]
#[command(
    name = "shale-query",
    version,
    about = "SQL over a Shale Parquet archive (each archived topic is a table)"
)]
struct Args {
    /// The query. Quote `"offset"`, `"partition"` and `"timestamp"`: they are SQL keywords.
    sql: String,
    /// The broker's data directory, whose `remote/` is the default local store.
    #[arg(long, default_value = "data", env = "SHALE_DATA_DIR")]
    data_dir: PathBuf,
    /// The object store as the broker's `remote_storage_url`: `s3://BUCKET[/PREFIX]` or
    /// `file:///DIR`; empty for `<data_dir>/remote`.
    #[arg(long, env = "SHALE_REMOTE_STORAGE_URL", default_value = "")]
    url: String,
    /// S3 endpoint for MinIO, SeaweedFS, Ceph… (credentials from the usual AWS_* variables).
    #[arg(long, env = "SHALE_REMOTE_STORAGE_ENDPOINT")]
    endpoint: Option<String>,
    /// S3 region; default AWS_REGION, else us-east-1.
    #[arg(long, env = "SHALE_REMOTE_STORAGE_REGION")]
    region: Option<String>,
    /// Path-style S3 requests (MinIO, SeaweedFS and Ceph usually need them).
    #[arg(long, env = "SHALE_REMOTE_STORAGE_PATH_STYLE")]
    path_style: bool,
    /// Register only these topics (repeatable); default every archived topic.
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Pin every table to offsets >= this.
    #[arg(long)]
    from_offset: Option<i64>,
    /// Pin every table to offsets <= this.
    #[arg(long)]
    to_offset: Option<i64>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let ctx = SessionContext::new();
    let (base, store, prefix) = open_store(&args)?;
    ctx.register_object_store(&base, store.clone());
    let archive = prefix.clone().join("archive");
    let topics = if args.topics.is_empty() {
        archived_topics(store.as_ref(), &archive).await?
    } else {
        args.topics.clone()
    };
    if topics.is_empty() {
        bail!("no archived topic under {base}{archive}");
    }
    for topic in &topics {
        register_topic(&ctx, &base, &archive, topic, &args).await?;
    }
    let frame = ctx.sql(&args.sql).await.context("planning the query")?;
    let batches = frame.collect().await.context("running the query")?;
    println!("{}", pretty_format_batches(&batches)?);
    Ok(())
}

/// The store's base URL (what DataFusion resolves table URLs against), the store, and the
/// prefix inside it.
fn open_store(args: &Args) -> anyhow::Result<(Url, Arc<dyn ObjectStore>, Path)> {
    let url = args.url.trim();
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("`{url}` names no bucket; expected s3://BUCKET[/PREFIX]");
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &args.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &args.region {
            builder = builder.with_region(region);
        }
        if args.path_style {
            builder = builder.with_virtual_hosted_style_request(false);
        }
        let store = builder.build().context("opening the S3 store")?;
        let base = Url::parse(&format!("s3://{bucket}/"))?;
        return Ok((base, Arc::new(store), Path::from(prefix.trim_matches('/'))));
    }
    let root = match url.strip_prefix("file://") {
        Some(dir) => PathBuf::from(dir),
        None if url.is_empty() => args.data_dir.join("remote"),
        None => bail!("`{url}` is not s3://BUCKET[/PREFIX], file:///DIR or empty"),
    };
    let root = root
        .canonicalize()
        .with_context(|| format!("the store directory {} is not readable", root.display()))?;
    // DataFusion maps file:///a/b to the path a/b of the file:// store: the root store, with
    // the directory as the prefix.
    let prefix = Path::from_filesystem_path(&root)
        .with_context(|| format!("{} is not a usable path", root.display()))?;
    let base = Url::parse("file:///")?;
    Ok((base, Arc::new(LocalFileSystem::new()), prefix))
}

/// Topic directories under `archive/` (names starting with `_` are not topics' archives).
async fn archived_topics(store: &dyn ObjectStore, archive: &Path) -> anyhow::Result<Vec<String>> {
    let listed = store
        .list_with_delimiter(Some(archive))
        .await
        .with_context(|| format!("listing {archive}"))?;
    let mut topics: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|name| !name.starts_with('_'))
        .collect();
    topics.sort();
    Ok(topics)
}

async fn register_topic(
    ctx: &SessionContext,
    base: &Url,
    archive: &Path,
    topic: &str,
    args: &Args,
) -> anyhow::Result<()> {
    let dir = archive.clone().join(topic);
    let table_url = ListingTableUrl::parse(base.join(&format!("{dir}/"))?.as_str())?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("partition".to_string(), DataType::Int32)]);
    let schema = options
        .infer_schema(&ctx.state(), &table_url)
        .await
        .with_context(|| format!("reading the archive schema of topic `{topic}` at {table_url}"))?;
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = Arc::new(ListingTable::try_new(config)?);
    let pinned = args.from_offset.is_some() || args.to_offset.is_some();
    if !pinned {
        ctx.register_table(sql_ident(topic).as_str(), table)?;
        return Ok(());
    }
    let hidden = format!("{topic}__archive");
    ctx.register_table(sql_ident(&hidden).as_str(), table)?;
    let from = args.from_offset.unwrap_or(i64::MIN);
    let to = args.to_offset.unwrap_or(i64::MAX);
    let view = format!(
        "CREATE VIEW {} AS SELECT * FROM {} WHERE \"offset\" >= {from} AND \"offset\" <= {to}",
        sql_ident(topic),
        sql_ident(&hidden)
    );
    ctx.sql(&view).await?.collect().await?;
    Ok(())
}

/// A quoted SQL identifier: keeps the topic name as it is (dots, dashes, case).
fn sql_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
