"""Settings reach the broker from a TOML file, SHALE_* variables and flags, in that precedence."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from clients import cf_admin, cf_producer, cf_wait_topic, unique
from conftest import BrokerExited


def _broker_config(b, name: str) -> str | None:
    admin = cf_admin(b.bootstrap)
    res = ConfigResource(ResourceType.BROKER, "0")
    entries = admin.describe_configs([res], request_timeout=30)[res].result(30)
    return entries[name].value if name in entries else None


def _auto_created_partitions(b) -> int:
    topic = unique("cfg")
    p = cf_producer(b.bootstrap, message_timeout_ms=30_000)
    p.produce(topic, value=b"x")
    assert p.flush(30) == 0
    admin = cf_admin(b.bootstrap)
    deadline = time.monotonic() + 15
    while True:
        t = admin.list_topics(timeout=10).topics.get(topic)
        if t is not None and t.error is None:
            return len(t.partitions)
        assert time.monotonic() < deadline, f"{topic} not created"
        time.sleep(0.2)


@pytest.mark.parametrize("source", ["file", "env", "flag"])
def test_setting_precedence(broker_factory, source):
    """num_partitions from the TOML file applies; SHALE_NUM_PARTITIONS overrides the file; --num-partitions overrides both."""
    toml = "num_partitions = 4\nauto_create_topics_enable = true\n"
    env = {"SHALE_NUM_PARTITIONS": "5"} if source in ("env", "flag") else None
    flags = {"num_partitions": 6} if source == "flag" else {}
    b = broker_factory(env=env, config_toml=toml, **flags)
    want = {"file": 4, "env": 5, "flag": 6}[source]
    assert _broker_config(b, "num.partitions") == str(want)
    assert _auto_created_partitions(b) == want


def test_advertised_listener(broker_factory):
    """--advertised-listener is the address clients are told in Metadata and DescribeCluster."""
    b = broker_factory(start=False)
    b.settings["advertised_listener"] = f"localhost:{b.port}"
    b.start()
    admin = cf_admin(b.bootstrap)
    md = admin.list_topics(timeout=10)
    assert [(m.host, m.port) for m in md.brokers.values()] == [("localhost", b.port)]
    desc = admin.describe_cluster(request_timeout=30).result(30)
    assert [(n.host, n.port) for n in desc.nodes] == [("localhost", b.port)]
    # and clients that follow it still work
    topic = unique("adv")
    p = cf_producer(b.bootstrap, message_timeout_ms=30_000)
    p.produce(topic, value=b"via localhost")
    assert p.flush(30) == 0
    cf_wait_topic(b.bootstrap, topic, 1)


@pytest.mark.parametrize("flag,value", [("num_partitions", "0"), ("num_partitions", "many"),
                                        ("log_segment_bytes", "-1")])
def test_invalid_setting_stops_startup(broker_factory, flag, value):
    """An out-of-range or unparsable setting stops startup with a non-zero exit and a message naming it."""
    b = broker_factory(start=False, **{flag: value})
    with pytest.raises(BrokerExited):
        b.start(timeout=15)
    assert b.proc.returncode not in (0, None)
    text = b.log_text()
    assert flag.replace("_", "-") in text or flag in text, f"error does not name {flag}:\n{text}"
