//! The `shale` binary: parses configuration, binds the listener and calls
//! `shale_server::server::run` until SIGTERM or Ctrl-C; `shale admin` and `shale archive` are
//! `shale-admin`'s.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shale_server::config::{BrokerConfig, BrokerConfigArgs};

#[derive(Parser)]
#[command(
    name = "shale",
    version,
    about = "A Kafka-compatible broker with tiered storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
// Parsed once per process; boxing a variant to save a few hundred bytes would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the broker (the default when no subcommand is given).
    #[command(next_line_help = true)]
    Serve(ServeArgs),
    /// Operate a running broker over the Kafka protocol: topics, configs, groups, cluster.
    Admin(shale_admin::AdminArgs),
    /// Show a topic's Parquet archive (files, offset ranges, rows, lag) from the object store.
    #[command(name = "archive")]
    Archive(shale_admin::archive_cli::ArchiveArgs),
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// TOML config file; flags and SHALE_* variables override it.
    #[arg(long, env = "SHALE_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: BrokerConfigArgs,
}

/// Startup and configuration errors are one line on stderr and exit code 1, whatever
/// `RUST_BACKTRACE` says: they are the operator's to fix, not a bug (panics keep their backtraces).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SHALE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Admin(a)) => return Ok(exit_code(admin(a)?)),
        Some(Command::Archive(a)) => return Ok(exit_code(shale_admin::archive_cli::main(a))),
        None => ServeArgs::parse_default(),
    };
    let mut config = match &args.config {
        Some(path) => BrokerConfig::from_file(path)?,
        None => BrokerConfig::default(),
    };
    args.settings.apply(&mut config);
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn exit_code(code: i32) -> std::process::ExitCode {
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `shale admin ...`: the exit code is the command's (0 ok, 1 broker error, 2 usage/connection).
fn admin(args: shale_admin::AdminArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(shale_admin::main(args)))
}

impl ServeArgs {
    /// `shale` with no subcommand: defaults plus SHALE_* environment variables.
    fn parse_default() -> Self {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Only::parse_from(["shale"]).serve
    }
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot bind `listen` address {}", config.listen))?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        let _ = shutdown_tx.send(true);
    });
    shale_server::server::run(config, listener, shutdown_rx)
        .await
        .map_err(anyhow::Error::msg)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
