"""Admin APIs through librdkafka's AdminClient, plus topic auto-creation, checked like Kafka does it."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic, ResourceType

import kafka_wire as wire
from clients import (
    cf_admin, cf_consume_all, cf_create_topic, cf_producer, cf_wait_topic, unique,
)


def _error_code(excinfo) -> int:
    err = excinfo.value.args[0]
    return err.code()


def _topic_names(bootstrap) -> set[str]:
    return set(cf_admin(bootstrap).list_topics(timeout=10).topics)


def _produce_one(bootstrap, topic, value: bytes, partition: int | None = None, **conf):
    conf.setdefault("message_timeout_ms", 30_000)
    p = cf_producer(bootstrap, **conf)
    result = []
    kw = {"value": value, "on_delivery": lambda err, msg: result.append((err, msg))}
    if partition is not None:
        kw["partition"] = partition
    p.produce(topic, **kw)
    p.flush(60)
    assert result, "no delivery report"
    return result[0]


def test_create_and_delete_topic(broker):
    """A created topic appears in metadata with its partitions; a deleted one disappears with its data, and its name can be reused."""
    topic = unique("admin-cd")
    cf_create_topic(broker.bootstrap, topic, 2)
    err, msg = _produce_one(broker.bootstrap, topic, b"before delete", partition=0)
    assert err is None, err

    admin = cf_admin(broker.bootstrap)
    fs = admin.delete_topics([topic], operation_timeout=30)
    fs[topic].result(30)
    deadline = time.monotonic() + 15
    while topic in _topic_names(broker.bootstrap):
        assert time.monotonic() < deadline, f"{topic} still listed 15s after DeleteTopics"
        time.sleep(0.2)

    cf_create_topic(broker.bootstrap, topic, 4)
    consumed = cf_consume_all(broker.bootstrap, topic, [0, 1, 2, 3], timeout=10)
    assert all(not v for v in consumed.values()), (
        f"recreated topic still has the deleted topic's records: {consumed}")


def test_delete_unknown_topic(broker):
    """Deleting a topic that does not exist fails with UNKNOWN_TOPIC_OR_PARTITION."""
    admin = cf_admin(broker.bootstrap)
    fs = admin.delete_topics([unique("never-created")], operation_timeout=30)
    with pytest.raises(KafkaException) as e:
        list(fs.values())[0].result(30)
    assert _error_code(e) == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value


def test_create_partitions_then_produce_to_new_partition(broker):
    """CreatePartitions grows a topic; the new partition takes records at offset 0; shrinking is refused with INVALID_PARTITIONS."""
    topic = unique("admin-cp")
    cf_create_topic(broker.bootstrap, topic, 2)
    admin = cf_admin(broker.bootstrap)
    fs = admin.create_partitions([NewPartitions(topic, 4)], operation_timeout=30)
    fs[topic].result(30)
    cf_wait_topic(broker.bootstrap, topic, 4)

    err, msg = _produce_one(broker.bootstrap, topic, b"into partition 3", partition=3)
    assert err is None, err
    assert (msg.partition(), msg.offset()) == (3, 0)
    consumed = cf_consume_all(broker.bootstrap, topic, [3], {3: 1})
    assert [(c.offset, c.value) for c in consumed[3]] == [(0, b"into partition 3")]

    admin = cf_admin(broker.bootstrap)
    fs = admin.create_partitions([NewPartitions(topic, 3)], operation_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(30)
    assert _error_code(e) == KafkaError.INVALID_PARTITIONS, e.value


def test_describe_configs_of_topic_and_broker(broker_factory):
    """DescribeConfigs returns a topic's overrides and defaults, and the broker's settings as it was started."""
    b = broker_factory(num_partitions=2, message_max_bytes=2_000_000)
    topic = unique("admin-dc")
    cf_create_topic(b.bootstrap, topic, 1, config={"retention.ms": "86400000",
                                                   "cleanup.policy": "delete"})
    admin = cf_admin(b.bootstrap)

    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([res], request_timeout=30)[res].result(30)
    assert entries["retention.ms"].value == "86400000", entries["retention.ms"]
    assert not entries["retention.ms"].is_default, entries["retention.ms"]
    assert "segment.bytes" in entries, sorted(entries)
    assert entries["segment.bytes"].value == str(b.settings["log_segment_bytes"]), (
        f"topic segment.bytes should default to the broker's log.segment.bytes: "
        f"{entries['segment.bytes']}")
    assert entries["max.message.bytes"].value == "2000000", entries["max.message.bytes"]

    node_id = next(iter(admin.list_topics(timeout=10).brokers))
    res = ConfigResource(ResourceType.BROKER, str(node_id))
    entries = admin.describe_configs([res], request_timeout=30)[res].result(30)
    expected = {
        "log.segment.bytes": str(b.settings["log_segment_bytes"]),
        "num.partitions": "2",
        "message.max.bytes": "2000000",
    }
    got = {k: entries[k].value if k in entries else None for k in expected}
    assert got == expected, f"broker configs: {got}, expected {expected}"


def test_describe_configs_unknown_topic(broker):
    """DescribeConfigs of a topic that does not exist fails with UNKNOWN_TOPIC_OR_PARTITION."""
    res = ConfigResource(ResourceType.TOPIC, unique("never-created"))
    with pytest.raises(KafkaException) as e:
        admin = cf_admin(broker.bootstrap)
        admin.describe_configs([res], request_timeout=30)[res].result(30)
    assert _error_code(e) == KafkaError.UNKNOWN_TOPIC_OR_PART, e.value


@pytest.mark.parametrize("name", ["bad name!", "a" * 250, ".", "..", "slash/topic", "ümlaut"])
def test_create_topic_invalid_name(broker, name):
    """Creating a topic with a name Kafka forbids fails with INVALID_TOPIC_EXCEPTION."""
    admin = cf_admin(broker.bootstrap)
    fs = admin.create_topics(
        [NewTopic(name, num_partitions=1, replication_factor=1)], operation_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[name].result(30)
    assert _error_code(e) == KafkaError.TOPIC_EXCEPTION, e.value  # 17 INVALID_TOPIC_EXCEPTION
    assert name not in _topic_names(broker.bootstrap)


def test_create_existing_topic(broker):
    """Creating a topic that already exists fails with TOPIC_ALREADY_EXISTS and leaves it unchanged."""
    topic = unique("admin-dup")
    cf_create_topic(broker.bootstrap, topic, 2)
    admin = cf_admin(broker.bootstrap)
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=5, replication_factor=1)], operation_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(30)
    assert _error_code(e) == KafkaError.TOPIC_ALREADY_EXISTS, e.value
    admin = cf_admin(broker.bootstrap)
    md = admin.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == 2


def test_create_topic_invalid_partitions(broker):
    """Creating a topic with zero partitions fails with INVALID_PARTITIONS."""
    topic = unique("admin-zero")
    admin = cf_admin(broker.bootstrap)
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=0, replication_factor=1)], operation_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(30)
    assert _error_code(e) == KafkaError.INVALID_PARTITIONS, e.value


def test_describe_cluster(broker):
    """DescribeCluster names one node at the address clients were given, and a cluster id."""
    admin = cf_admin(broker.bootstrap)
    desc = admin.describe_cluster(request_timeout=30).result(30)
    assert desc.cluster_id, desc
    assert [(n.host, n.port) for n in desc.nodes] == [(broker.host, broker.port)], desc.nodes


def _raw_metadata(broker, topic: str, allow_auto_create: bool) -> int:
    versions = wire.supported_versions(broker.host, broker.port)
    v = wire.pick_version(versions, wire.API_METADATA, [4, 5, 6, 7, 8])
    with wire.Conn(broker.host, broker.port) as c:
        resp = c.roundtrip(wire.metadata_request_v4(7, [topic], allow_auto_create, version=v))
    corr, err, name = wire.parse_metadata_first_topic(resp, v)
    assert corr == 7 and name == topic, (corr, name)
    return err


def test_auto_create_on_produce(broker_factory):
    """With auto.create.topics.enable, producing to an unknown topic creates it with num.partitions partitions."""
    b = broker_factory(auto_create_topics_enable=True, num_partitions=2)
    topic = unique("auto-created")
    err, msg = _produce_one(b.bootstrap, topic, b"first record")
    assert err is None, err
    assert msg.offset() == 0
    cf_wait_topic(b.bootstrap, topic, 2)


def test_auto_create_respects_request_flag(broker_factory):
    """Metadata with allow_auto_topic_creation=false does not create a topic even when auto-creation is enabled; with true it does."""
    b = broker_factory(auto_create_topics_enable=True)
    topic = unique("auto-flag")
    assert _raw_metadata(b, topic, allow_auto_create=False) == wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION
    assert topic not in _topic_names(b.bootstrap)
    deadline = time.monotonic() + 15
    while True:
        err = _raw_metadata(b, topic, allow_auto_create=True)
        if err == wire.ERROR_NONE:
            break
        # Kafka answers LEADER_NOT_AVAILABLE while the topic is being created
        assert err == wire.ERROR_LEADER_NOT_AVAILABLE, f"error {err}"
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_auto_create_disabled(broker_factory):
    """With --auto-create-topics-enable false, an unknown topic stays unknown: Metadata says UNKNOWN_TOPIC_OR_PARTITION and produce fails."""
    b = broker_factory(auto_create_topics_enable=False)
    topic = unique("not-auto-created")
    assert _raw_metadata(b, topic, allow_auto_create=True) == wire.ERROR_UNKNOWN_TOPIC_OR_PARTITION
    err, _msg = _produce_one(b.bootstrap, topic, b"nowhere to go",
                             message_timeout_ms=5000, topic_metadata_propagation_max_ms=2000)
    assert err is not None and err.code() in (
        KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), err
    assert topic not in _topic_names(b.bootstrap)
