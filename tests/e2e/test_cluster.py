"""The cluster metadata log, end to end against the real binary.

Today a node is a controller quorum of one (the same code path a cluster will take): its topics,
configs and producer ids live in the metadata log under <data_dir>/__cluster_metadata-0, not in
cluster-metadata.json. These tests check that a data dir written by a single-node Shale from
before the metadata log is adopted whole, and that the log is what a restart reads.
"""

from __future__ import annotations

import base64
import json
import shutil
import uuid

from clients import (
    assert_verified, cf_admin, cf_consume_all, cf_create_topic, cf_produce, end_offsets_of,
    make_records, unique,
)
from clients import run_java
from test_admin_cli import admin_json

PARTITIONS = 3


def kafka_id_to_uuid(kafka_id: str) -> str:
    """Kafka's 22-character URL-safe base64 topic id as the hyphenated UUID the file stores."""
    return str(uuid.UUID(bytes=base64.urlsafe_b64decode(kafka_id + "==")))


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def describe(bootstrap: str, topic: str) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource, ResourceType
    admin = cf_admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([res], request_timeout=30)[res].result(30)
    return {k: v.value for k, v in entries.items()}


def describe_broker(bootstrap: str) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource, ResourceType
    admin = cf_admin(bootstrap)
    res = ConfigResource(ResourceType.BROKER, "0")
    entries = admin.describe_configs([res], request_timeout=30)[res].result(30)
    return {k: v.value for k, v in entries.items()}


def test_a_single_node_data_dir_is_adopted_by_the_metadata_log(broker_factory):
    """A data dir as a single-node Shale left it (cluster-metadata.json, no metadata log) starts
    with everything: the cluster id, every topic with its id, partition count and configs, the
    records, committed offsets and the dynamic broker configs. The file is renamed *.adopted, and a second restart reads the same from the log."""
    from confluent_kafka import Consumer, TopicPartition

    b = broker_factory()
    topic, group = unique("legacy"), unique("legacy-group")
    cf_create_topic(b.bootstrap, topic, PARTITIONS, {"retention.ms": "123456789"})
    delivered = cf_produce(b.bootstrap, topic, make_records(topic, 300, seed=5, ts_base=1_700_000_000_000,
                                                            partitions=PARTITIONS))
    ends = end_offsets_of(delivered)
    positions = {p: ends[p] // 2 for p in range(PARTITIONS)}
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in positions.items()], asynchronous=False)
    c.close()
    topics = {t["name"]: t for t in admin_json(b.bootstrap, "topics", "list")["topics"]}
    assert "__consumer_offsets" in topics, topics
    b.stop()

    # What the single-node build left behind: its metadata file, and no metadata log.
    shutil.rmtree(b.data_dir / "__cluster_metadata-0")
    legacy = {
        "cluster_id": "LegacyClusterId-0123456",
        "topics": {
            name: {"name": name, "id": kafka_id_to_uuid(t["id"]), "partitions": t["partitions"],
                   "configs": {"retention.ms": "123456789"} if name == topic else
                   {"cleanup.policy": "compact"}}
            for name, t in topics.items()
        },
        "producer_id_reserved_until": 5000,
        "dynamic_broker_configs": {"log.retention.ms": "999999999"},
    }
    (b.data_dir / "cluster-metadata.json").write_text(json.dumps(legacy))

    for run in range(2):
        b.start()
        admin = cf_admin(b.bootstrap)
        assert admin.list_topics(timeout=30).cluster_id == legacy["cluster_id"], f"run {run}"
        now = {t["name"]: t for t in admin_json(b.bootstrap, "topics", "list")["topics"]}
        assert {n: (t["id"], t["partitions"]) for n, t in now.items()} == \
            {n: (t["id"], t["partitions"]) for n, t in topics.items()}, f"run {run}"
        assert describe(b.bootstrap, topic)["retention.ms"] == "123456789"
        consumed = cf_consume_all(b.bootstrap, topic, list(range(PARTITIONS)), ends, timeout=60)
        assert_verified(delivered, consumed, list(range(PARTITIONS)))
        assert committed(b.bootstrap, group, topic) == positions, f"run {run}"
        assert not (b.data_dir / "cluster-metadata.json").exists()
        assert (b.data_dir / "cluster-metadata.json.adopted").exists()
        assert describe_broker(b.bootstrap)["log.retention.ms"] == "999999999", f"run {run}"
        b.stop()
    text = b.log_text(run=1)
    assert "the metadata log adopted the single-node metadata file" in text, b.log_tail(40)


def test_the_broker_registers_with_its_rack_and_is_the_controller(broker_factory):
    """A node registers in the metadata log with its listener and `broker_rack`: DescribeCluster
    (librdkafka) lists it with its rack, as the controller, under the cluster id Metadata
    reports; after a restart it is registered again (a new broker epoch), not twice."""
    b = broker_factory(broker_rack="rack-a", node_id=3)
    for run in range(2):
        admin = cf_admin(b.bootstrap)
        cluster = admin.describe_cluster(request_timeout=30).result(30)
        nodes = [(n.id, n.host, n.port, n.rack) for n in cluster.nodes]
        assert nodes == [(3, b.host, b.port, "rack-a")], f"run {run}: {nodes}"
        assert cluster.controller.id == 3
        assert cluster.cluster_id == admin.list_topics(timeout=30).cluster_id
        b.restart()


def test_describe_metadata_quorum_with_the_java_admin(broker_factory, java_cmd):
    """The Java AdminClient's describeMetadataQuorum (DescribeQuorum) reports the node as the
    leader and only voter of the quorum, with the Raft term as epoch, and a high watermark and
    log end offset that move on when metadata changes (a topic is created). `shale admin cluster
    describe` shows the same quorum."""
    b = broker_factory(node_id=2)
    quorum_java = java_cmd[:-1] + ["ShaleConfigCheck"]

    def quorum() -> dict:
        out = run_java(quorum_java, "quorum", b.bootstrap).stdout.split("\n")
        fields = dict(line.split(" ", 1) for line in out if line.strip())
        voters = [line.split()[1:] for line in out if line.startswith("voter ")]
        return {"leader": int(fields["leader"]), "epoch": int(fields["epoch"]),
                "hw": int(fields["high-watermark"]),
                "voters": {int(v[0]): int(v[1]) for v in voters}}

    before = quorum()
    assert before["leader"] == 2 and before["epoch"] >= 1, before
    assert set(before["voters"]) == {2} and before["voters"][2] >= before["hw"] > 0, before
    cf_create_topic(b.bootstrap, unique("quorum"), 2)
    after = quorum()
    assert after["hw"] > before["hw"] and after["voters"][2] > before["voters"][2], (before, after)
    described = admin_json(b.bootstrap, "cluster", "describe")
    assert described["quorum"]["leader_id"] == 2, described
    assert [v["id"] for v in described["quorum"]["voters"]] == [2], described
