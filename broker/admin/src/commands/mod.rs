//! The `shale admin` subcommands: their arguments, and the dispatch from arguments to a report.
//!
//! Each subcommand lives with its requests in one file below and returns a report
//! ([`super::output::Report`]); [`main`] prints it, or the error, and picks the exit code.

mod cluster;
mod configs;
mod groups;
mod topics;

use std::io::Write;
use std::time::Duration;

use super::client::ClientOptions;
use super::output::{render, Report};
use super::session::Session;
use super::{AdminError, EXIT_OK};

pub use configs::ResourceKind;

/// `shale admin`: operate a running broker over the Kafka protocol.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(clap::Args, Debug)]
pub struct ConnectionArgs {
    /// The broker to connect to first, as HOST:PORT.
    #[arg(
        long,
        env = "SHALE_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true,
        display_order = 100
    )]
    pub bootstrap: String,
    /// Print JSON instead of tables (errors too, as {"error": ...}).
    #[arg(long, global = true, display_order = 101)]
    pub json: bool,
    /// How long connecting and each request may take, in milliseconds.
    #[arg(
        long,
        default_value_t = 30_000,
        global = true,
        value_name = "MS",
        display_order = 102
    )]
    pub timeout_ms: u64,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// List, describe, create and delete topics.
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Describe and alter topic and broker configs.
    #[command(subcommand)]
    Configs(configs::ConfigsCommand),
    /// List and describe consumer groups; reset their committed offsets.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// The cluster id, controller and brokers.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// Runs one admin command, prints its report (stdout) or error (stderr), and returns the exit
/// code: 0 done, 1 the broker refused or failed, 2 bad arguments or no usable connection.
pub async fn main(args: AdminArgs) -> i32 {
    let json = args.connection.json;
    let result = run(args).await;
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is not worth a panic; the exit code still tells the story.
    match result {
        Ok(text) => {
            let _ = stdout.write_all(text.as_bytes());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            if json {
                let body = serde_json::json!({
                    "error": { "message": e.to_string(), "code": e.kafka_code() }
                });
                let _ = writeln!(stdout, "{body:#}");
            }
            e.exit_code()
        }
    }
}

/// Runs one admin command and renders its report.
pub async fn run(args: AdminArgs) -> Result<String, AdminError> {
    let c = &args.connection;
    let options = ClientOptions {
        request_timeout: Duration::from_millis(c.timeout_ms.max(1)),
        ..ClientOptions::default()
    };
    let mut session = Session::connect(&c.bootstrap, options).await?;
    let json = c.json;
    let timeout_ms = i32::try_from(c.timeout_ms).unwrap_or(i32::MAX);
    let s = &mut session;
    Ok(match args.command {
        AdminCommand::Topics(cmd) => match cmd {
            topics::TopicsCommand::List => out(topics::list(s).await?, json),
            topics::TopicsCommand::Describe { name } => {
                out(topics::describe(s, &name).await?, json)
            }
            topics::TopicsCommand::Create(a) => out(topics::create(s, a, timeout_ms).await?, json),
            topics::TopicsCommand::Delete { name } => {
                out(topics::delete(s, &name, timeout_ms).await?, json)
            }
        },
        AdminCommand::Configs(cmd) => match cmd {
            configs::ConfigsCommand::Describe(a) => out(configs::describe(s, a).await?, json),
            configs::ConfigsCommand::Alter(a) => out(configs::alter(s, a).await?, json),
        },
        AdminCommand::Groups(cmd) => match cmd {
            groups::GroupsCommand::List { state } => out(groups::list(s, &state).await?, json),
            groups::GroupsCommand::Describe { group } => {
                out(groups::describe(s, &group).await?, json)
            }
            groups::GroupsCommand::ResetOffsets(a) => out(groups::reset_offsets(s, a).await?, json),
        },
        AdminCommand::Cluster(cluster::ClusterCommand::Describe) => {
            out(cluster::describe(s).await?, json)
        }
    })
}

fn out<R: Report>(report: R, json: bool) -> String {
    render(&report, json)
}

#[cfg(test)]
mod tests;
