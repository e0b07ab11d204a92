//! The operator's side of Shale: `shale admin` (commands that talk to a running broker as a
//! Kafka-protocol client) and `shale archive` (a topic's Parquet archive, read from the store).
//!
//! Nothing here reads the data directory; every admin command is a sequence of Kafka requests
//! over TCP, so it works against any reachable Shale. It depends on `shale-server` only for the
//! broker's settings (so `shale archive` finds the same store as `shale serve`) and, in tests,
//! to boot a broker in-process.
//!
//! # Layout
//! - [`archive_cli`]: `shale archive describe`: archive files, ranges, rows and lag per partition.
//! - [`client`]: one connection to one broker: framing, ApiVersions negotiation, time and size bounds.
//! - [`session`]: the bootstrap connection plus connections to the leaders and coordinators it names.
//! - [`commands`]: the subcommands and their arguments, each producing a report.
//! - [`output`]: reports as aligned tables or `--json`.
//! - [`parse`]: parsers for arguments: `key=value` pairs, datetimes, topic ids.

pub mod archive_cli;
pub mod client;
pub mod commands;
pub mod output;
pub mod parse;
pub mod session;

use kafka_protocol::ResponseError;

pub use commands::{main, AdminArgs};

/// Exit status: the command did what was asked.
pub const EXIT_OK: i32 = 0;
/// Exit status: the broker refused or failed the request.
pub const EXIT_BROKER: i32 = 1;
/// Exit status: bad arguments, or the broker could not be reached or understood.
pub const EXIT_USAGE: i32 = 2;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("the connection to {addr} failed during a {api} request: {source}")]
    Io {
        addr: String,
        api: &'static str,
        source: std::io::Error,
    },
    #[error("{addr} did not answer a {api} request within {timeout_ms} ms")]
    Timeout {
        addr: String,
        api: &'static str,
        timeout_ms: u64,
    },
    #[error("{addr} sent a {size}-byte {api} response; the limit is {limit} bytes")]
    ResponseTooLarge {
        addr: String,
        api: &'static str,
        size: i64,
        limit: usize,
    },
    #[error("{addr} sent a {api} v{version} response that cannot be decoded: {reason}")]
    Protocol {
        addr: String,
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("the broker's {api} response has no result for {what}")]
    IncompleteResponse { api: &'static str, what: String },
    #[error("cannot encode a {api} v{version} request: {reason}")]
    Encode {
        api: &'static str,
        version: i16,
        reason: String,
    },
    #[error("{addr} {}", unsupported(api, *broker, *ours_min, *ours_max))]
    Unsupported {
        addr: String,
        api: &'static str,
        /// The versions the broker serves, if any.
        broker: Option<(i16, i16)>,
        ours_min: i16,
        ours_max: i16,
    },
    #[error("cannot {context}: the broker answered {}{}", kafka_error_name(*code), detail(message))]
    Broker {
        /// What was being done, to follow "cannot": "delete topic `orders`".
        context: String,
        code: ResponseError,
        message: Option<String>,
    },
    #[error("consumer group `{group}` does not exist")]
    GroupNotFound { group: String },
    #[error(
        "consumer group `{group}` is {state} with {members} member(s); offsets can only be reset \
         while the group is inactive (Empty): stop its consumers first"
    )]
    GroupActive {
        group: String,
        state: String,
        members: usize,
    },
    #[error("{0}")]
    Usage(String),
}

fn unsupported(api: &str, broker: Option<(i16, i16)>, ours_min: i16, ours_max: i16) -> String {
    match broker {
        None => format!("does not serve {api} requests"),
        Some((lo, hi)) => format!(
            "serves {api} v{lo} to v{hi}, and shale admin speaks only v{ours_min} to v{ours_max}"
        ),
    }
}

fn detail(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl AdminError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AdminError::Broker { .. }
            | AdminError::GroupNotFound { .. }
            | AdminError::GroupActive { .. }
            | AdminError::Unsupported { .. } => EXIT_BROKER,
            AdminError::Connect { .. }
            | AdminError::Io { .. }
            | AdminError::Timeout { .. }
            | AdminError::ResponseTooLarge { .. }
            | AdminError::Protocol { .. }
            | AdminError::Encode { .. }
            | AdminError::IncompleteResponse { .. }
            | AdminError::Usage(_) => EXIT_USAGE,
        }
    }

    /// Kafka's name for the error code the broker answered, if it answered one.
    pub fn kafka_code(&self) -> Option<String> {
        match self {
            AdminError::Broker { code, .. } => Some(kafka_error_name(*code)),
            _ => None,
        }
    }

    /// The error for a non-zero `code`, or `Ok` for 0.
    pub fn check(
        code: i16,
        message: Option<&str>,
        context: impl FnOnce() -> String,
    ) -> Result<(), AdminError> {
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(code) => Err(AdminError::Broker {
                context: context(),
                code,
                message: message.map(str::to_string),
            }),
        }
    }
}

/// Kafka's spelling of an error code: `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn kafka_error_name(code: ResponseError) -> String {
    if let ResponseError::Unknown(n) = code {
        return format!("unknown error code {n}");
    }
    // kafka-protocol's Display is the variant name in CamelCase.
    let camel = code.to_string();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(
            kafka_error_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            kafka_error_name(ResponseError::InvalidConfig),
            "INVALID_CONFIG"
        );
        assert_eq!(
            kafka_error_name(ResponseError::Unknown(9999)),
            "unknown error code 9999"
        );
    }

    #[test]
    fn broker_errors_read_as_sentences_and_exit_1() {
        let e = AdminError::check(40, Some("`retention.ms` must be a number"), || {
            "alter the configs of topic `t`".into()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot alter the configs of topic `t`: the broker answered INVALID_CONFIG: `retention.ms` must be a number"
        );
        assert_eq!(e.exit_code(), EXIT_BROKER);
        assert!(AdminError::check(0, None, || unreachable!()).is_ok());
    }
}
