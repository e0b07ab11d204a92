//! The admin commands against an in-process broker on 127.0.0.1:0, through real TCP.

use std::sync::Arc;

use clap::Parser;
use serde_json::Value;

use super::{run, AdminArgs};
use crate::{AdminError, EXIT_BROKER, EXIT_USAGE};
use shale_server::broker::Broker;
use shale_server::config::BrokerConfig;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
}

struct TestBroker {
    addr: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().join("data"),
            ..BrokerConfig::default()
        };
        let broker: Arc<Broker> =
            Broker::open(config, (addr.ip().to_string(), addr.port())).unwrap();
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(shale_server::server::serve(listener, broker, rx));
        TestBroker {
            addr: addr.to_string(),
            shutdown,
            server,
            _dir: dir,
        }
    }

    /// Runs `shale admin ARGS --bootstrap ADDR`; JSON output, parsed.
    async fn admin(&self, args: &[&str]) -> Result<Value, AdminError> {
        let mut argv = vec!["admin", "--bootstrap", &self.addr, "--json"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("arguments parse");
        let text = run(cli.admin).await?;
        Ok(serde_json::from_str(&text).expect("--json output is JSON"))
    }

    async fn admin_text(&self, args: &[&str]) -> String {
        let mut argv = vec!["admin", "--bootstrap", &self.addr];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("arguments parse");
        run(cli.admin).await.expect("command succeeds")
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        self.server.await.unwrap();
    }
}

#[tokio::test]
async fn topics_create_list_describe_delete() {
    let b = TestBroker::start().await;
    let created = b
        .admin(&[
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=60000",
        ])
        .await
        .unwrap();
    assert_eq!(created["name"], "orders");
    assert_eq!(created["partitions"], 3);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 22, "Kafka's base64 topic id: {id}");

    let list = b.admin(&["topics", "list"]).await.unwrap();
    let row = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert_eq!(row["partitions"], 3);
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["internal"], false);

    let d = b.admin(&["topics", "describe", "orders"]).await.unwrap();
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0]["log_start_offset"], 0);
    assert_eq!(parts[0]["log_end_offset"], 0);
    let retention = d["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retention.ms")
        .unwrap();
    assert_eq!(retention["value"], "60000");
    assert_eq!(retention["source"], "DYNAMIC_TOPIC_CONFIG");

    let text = b.admin_text(&["topics", "describe", "orders"]).await;
    assert!(text.contains("LOG-END-OFFSET"), "{text}");
    assert!(
        text.contains("retention.ms  60000  DYNAMIC_TOPIC_CONFIG"),
        "{text}"
    );

    b.admin(&["topics", "delete", "orders"]).await.unwrap();
    let e = b
        .admin(&["topics", "describe", "orders"])
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), EXIT_BROKER);
    assert_eq!(
        e.kafka_code().as_deref(),
        Some("UNKNOWN_TOPIC_OR_PARTITION")
    );
    let e = b.admin(&["topics", "delete", "orders"]).await.unwrap_err();
    assert_eq!(
        e.kafka_code().as_deref(),
        Some("UNKNOWN_TOPIC_OR_PARTITION")
    );
    b.stop().await;
}

#[tokio::test]
async fn configs_alter_and_describe() {
    let b = TestBroker::start().await;
    b.admin(&["topics", "create", "t", "--partitions", "1"])
        .await
        .unwrap();
    b.admin(&[
        "configs",
        "alter",
        "topic",
        "t",
        "--set",
        "retention.bytes=1048576",
        "--set",
        "cleanup.policy=compact,delete",
    ])
    .await
    .unwrap();
    let d = b
        .admin(&["configs", "describe", "topic", "t", "--dynamic"])
        .await
        .unwrap();
    let configs = d["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 2, "{d}");
    assert!(configs
        .iter()
        .all(|c| c["source"] == "DYNAMIC_TOPIC_CONFIG"));

    b.admin(&[
        "configs",
        "alter",
        "topic",
        "t",
        "--delete",
        "retention.bytes",
    ])
    .await
    .unwrap();
    let d = b
        .admin(&["configs", "describe", "topic", "t"])
        .await
        .unwrap();
    let rb = d["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "retention.bytes")
        .unwrap();
    assert_ne!(rb["source"], "DYNAMIC_TOPIC_CONFIG");

    let e = b
        .admin(&[
            "configs",
            "alter",
            "topic",
            "t",
            "--set",
            "no.such.config=1",
        ])
        .await
        .unwrap_err();
    assert_eq!(e.kafka_code().as_deref(), Some("INVALID_CONFIG"));
    assert!(e.to_string().contains("no.such.config"), "{e}");
    let e = b
        .admin(&[
            "configs",
            "alter",
            "topic",
            "t",
            "--set",
            "retention.ms=soon",
        ])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("retention.ms"), "{e}");

    // The broker with no id given is the controller.
    let d = b.admin(&["configs", "describe", "broker"]).await.unwrap();
    assert_eq!(d["resource_name"], "0");
    assert!(d["configs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "log.retention.ms"));
    let e = b
        .admin(&["configs", "alter", "topic", "t"])
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE);
    b.stop().await;
}

#[tokio::test]
async fn cluster_describe_and_unreachable_broker() {
    let b = TestBroker::start().await;
    let d = b.admin(&["cluster", "describe"]).await.unwrap();
    assert_eq!(d["controller_id"], 0);
    assert_eq!(d["brokers"].as_array().unwrap().len(), 1);
    assert_eq!(
        format!(
            "{}:{}",
            d["brokers"][0]["host"].as_str().unwrap(),
            d["brokers"][0]["port"]
        ),
        b.addr
    );
    let addr = b.addr.clone();
    b.stop().await;

    let cli = Cli::try_parse_from(["admin", "--bootstrap", &addr, "topics", "list"]).unwrap();
    let e = run(cli.admin).await.unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE);
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to {addr}")),
        "{e}"
    );
}

#[tokio::test]
async fn reset_offsets_creates_a_group_that_list_and_describe_show() {
    let b = TestBroker::start().await;
    b.admin(&["topics", "create", "t", "--partitions", "2"])
        .await
        .unwrap();
    let e = b.admin(&["groups", "describe", "g"]).await.unwrap_err();
    assert!(matches!(e, AdminError::GroupNotFound { .. }), "{e}");

    let dry = b
        .admin(&[
            "groups",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-latest",
            "--dry-run",
        ])
        .await
        .unwrap();
    assert_eq!(dry["partitions"].as_array().unwrap().len(), 2);
    assert!(
        b.admin(&["groups", "describe", "g"]).await.is_err(),
        "a dry run committed"
    );

    let reset = b
        .admin(&[
            "groups",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--partition",
            "1",
            "--to-offset",
            "7",
        ])
        .await
        .unwrap();
    // Clamped to the (empty) log.
    assert_eq!(reset["partitions"][0]["partition"], 1);
    assert_eq!(reset["partitions"][0]["new_offset"], 0);
    assert_eq!(reset["partitions"][0]["previous_offset"], Value::Null);

    let list = b.admin(&["groups", "list"]).await.unwrap();
    assert_eq!(list["groups"][0]["group"], "g");
    assert_eq!(list["groups"][0]["state"], "Empty");
    let d = b.admin(&["groups", "describe", "g"]).await.unwrap();
    let offsets = d["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 1, "{d}");
    assert_eq!(
        (
            offsets[0]["committed_offset"].as_i64(),
            offsets[0]["lag"].as_i64()
        ),
        (Some(0), Some(0))
    );
    b.stop().await;
}
