"""`shale admin` against a running broker, checked with real clients.

Topics made by `shale admin` are seen by librdkafka; config changes made by the Java AdminClient
(tests/java/ShaleConfigCheck) are seen by `shale admin configs describe` and the other way round,
across restarts; invalid changes are refused by both paths; a live retention.bytes change makes the
broker delete old segments; a real consumer group is listed, described and reset, and a new member
resumes where the reset put it. Output is read through `--json` unless the text form is the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest
from confluent_kafka import Consumer, TopicPartition

from clients import cf_admin, cf_create_topic, cf_producer, unique
from conftest import JAVA_DIR, free_port, shale_bin

# --- helpers -------------------------------------------------------------------------------------


def shale_admin(bootstrap: str | None, *args: str, env: dict | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs `shale admin ARGS` (with --bootstrap unless None) and returns the finished process."""
    cmd = [str(shale_bin()), "admin"]
    if bootstrap is not None:
        cmd += ["--bootstrap", bootstrap]
    cmd += [str(a) for a in args]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("SHALE_")}
    run_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=run_env)


def admin_json(bootstrap: str, *args: str):
    """`shale admin --json ARGS`, which must succeed; its stdout parsed."""
    proc = shale_admin(bootstrap, "--json", *args)
    assert proc.returncode == 0, (f"shale admin {' '.join(args)} exited {proc.returncode}\n"
                                  f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return json.loads(proc.stdout)


def admin_fails(bootstrap: str, *args: str, rc: int = 1) -> subprocess.CompletedProcess:
    """`shale admin ARGS`, which must exit with `rc`."""
    proc = shale_admin(bootstrap, *args)
    assert proc.returncode == rc, (f"shale admin {' '.join(args)}: expected exit {rc}, got "
                                   f"{proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def configs_by_name(report) -> dict[str, dict]:
    return {c["name"]: c for c in report["configs"]}


@pytest.fixture(scope="session")
def java_configs():
    """Runs tests/java/ShaleConfigCheck: returns (exit code, {name: (value, source)} or stdout, stderr)."""
    classes, lib = JAVA_DIR / "classes", JAVA_DIR / "lib"
    if not (classes / "ShaleConfigCheck.class").is_file() or not list(lib.glob("*.jar")):
        pytest.fail("Java test tools are not built: run scripts/setup-test-env.sh", pytrace=False)
    base = ["java", "-cp", f"{classes}:{lib}/*", "ShaleConfigCheck"]

    def run(*args: str):
        proc = subprocess.run(base + [str(a) for a in args], capture_output=True, text=True,
                              timeout=120)
        if args[0] == "describe" and proc.returncode == 0:
            table = {}
            for line in proc.stdout.splitlines():
                name, value, source = line.split("\t")
                table[name] = (value, source)
            return proc.returncode, table, proc.stderr
        return proc.returncode, proc.stdout, proc.stderr

    return run


def java_ok(java_configs, *args: str):
    rc, out, err = java_configs(*args)
    assert rc == 0, f"ShaleConfigCheck {' '.join(args)} exited {rc}\n{out}\n{err}"
    return out


def produce(bootstrap: str, topic: str, values: list[tuple[int, bytes, int | None]], **conf) -> None:
    """Produces (partition, value, timestamp ms or None) in order and waits for every ack."""
    p = cf_producer(bootstrap, **conf)
    errors = []
    for partition, value, ts in values:
        kw = {"partition": partition, "value": value,
              "on_delivery": lambda err, _msg: err and errors.append(err)}
        if ts is not None:
            kw["timestamp"] = ts
        p.produce(topic, **kw)
        p.poll(0)
    assert p.flush(60) == 0, "records still in flight after 60 s"
    assert not errors, errors


def group_consumer(bootstrap: str, group: str, **conf) -> Consumer:
    base = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 10_000}
    base.update(conf)
    return Consumer(base)


def consume_n(c: Consumer, n: int, timeout: float = 30) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m)
    assert len(got) == n, f"consumed {len(got)} of {n} records within {timeout}s"
    return got


# --- topics --------------------------------------------------------------------------------------


def test_topics_create_list_describe_delete(broker_factory):
    """Topics created with `shale admin` are what librdkafka sees; list/describe report partitions, offsets and overrides; delete removes the topic."""
    # Otherwise a metadata request for the deleted topic (a client's refresh) would re-create it.
    broker = broker_factory(auto_create_topics_enable=False)
    topic = unique("cli-topic")
    created = admin_json(broker.bootstrap, "topics", "create", topic, "--partitions", "3",
                         "--config", "retention.ms=3600000")
    assert created["name"] == topic and created["partitions"] == 3
    md = cf_admin(broker.bootstrap).list_topics(topic, timeout=10).topics[topic]
    assert md.error is None and len(md.partitions) == 3

    produce(broker.bootstrap, topic, [(i % 3, b"x%d" % i, None) for i in range(7)])

    listed = {t["name"]: t for t in admin_json(broker.bootstrap, "topics", "list")["topics"]}
    assert listed[topic]["partitions"] == 3 and listed[topic]["internal"] is False
    assert listed[topic]["id"] == created["id"] and len(created["id"]) == 22

    d = admin_json(broker.bootstrap, "topics", "describe", topic)
    assert [p["partition"] for p in d["partitions"]] == [0, 1, 2]
    assert [p["log_end_offset"] for p in d["partitions"]] == [3, 2, 2]
    assert all(p["log_start_offset"] == 0 and p["leader"] == 0 for p in d["partitions"])
    overrides = configs_by_name(d)
    assert overrides["retention.ms"]["value"] == "3600000"
    assert overrides["retention.ms"]["source"] == "DYNAMIC_TOPIC_CONFIG"
    assert all(c["source"] != "DEFAULT_CONFIG" for c in d["configs"])

    text = shale_admin(broker.bootstrap, "topics", "describe", topic).stdout
    assert "LOG-END-OFFSET" in text and "retention.ms" in text, text

    admin_fails(broker.bootstrap, "topics", "create", topic)  # already exists
    assert admin_json(broker.bootstrap, "topics", "delete", topic) == {"name": topic}
    deadline = time.monotonic() + 15
    while topic in cf_admin(broker.bootstrap).list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{topic} still listed 15 s after delete"
        time.sleep(0.2)
    gone = admin_fails(broker.bootstrap, "topics", "describe", topic)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in gone.stderr, gone.stderr


def test_errors_exit_codes_and_json(broker):
    """Broker errors exit 1 (and are JSON with --json), usage and connection errors exit 2, and SHALE_BOOTSTRAP picks the broker."""
    missing = unique("missing")
    proc = shale_admin(broker.bootstrap, "--json", "topics", "describe", missing)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)["error"]
    assert err["code"] == "UNKNOWN_TOPIC_OR_PARTITION" and missing in err["message"]
    assert missing in proc.stderr

    closed = f"127.0.0.1:{free_port()}"
    proc = admin_fails(closed, "topics", "list", rc=2)
    assert f"cannot connect to {closed}" in proc.stderr, proc.stderr

    proc = admin_fails(broker.bootstrap, "groups", "reset-offsets", "g", "--topic", "t", rc=2)
    assert "--to-earliest" in proc.stderr
    proc = admin_fails(broker.bootstrap, "groups", "reset-offsets", "g", "--topic", "t",
                       "--to-datetime", "last tuesday", rc=2)
    assert "RFC 3339" in proc.stderr
    admin_fails(broker.bootstrap, "configs", "alter", "topic", "t", "--set", "novalue", rc=2)

    via_env = shale_admin(None, "--json", "cluster", "describe",
                          env={"SHALE_BOOTSTRAP": broker.bootstrap})
    assert via_env.returncode == 0, via_env.stderr
    cluster = json.loads(via_env.stdout)
    assert cluster["controller_id"] == 0
    assert [(b["host"], b["port"]) for b in cluster["brokers"]] == [(broker.host, broker.port)]
    assert cluster["cluster_id"] == cf_admin(broker.bootstrap).list_topics(timeout=10).cluster_id


# --- configs -------------------------------------------------------------------------------------


def test_java_admin_changes_are_seen_by_shale_admin_and_survive_restart(broker, java_configs):
    """Topic and broker configs altered through the Java AdminClient show in `shale admin configs describe` with Kafka's sources, before and after a restart."""
    topic = unique("java-cfg")
    cf_create_topic(broker.bootstrap, topic, 1)
    java_ok(java_configs, "alter", broker.bootstrap, "topic", topic,
            "--set", "retention.ms=4321000", "--set", "cleanup.policy=compact")
    java_ok(java_configs, "alter", broker.bootstrap, "broker", "0",
            "--set", "log.retention.bytes=987654321")

    def check():
        t = configs_by_name(admin_json(broker.bootstrap, "configs", "describe", "topic", topic))
        assert (t["retention.ms"]["value"], t["retention.ms"]["source"]) == (
            "4321000", "DYNAMIC_TOPIC_CONFIG")
        assert (t["cleanup.policy"]["value"], t["cleanup.policy"]["source"]) == (
            "compact", "DYNAMIC_TOPIC_CONFIG")
        # Not set on the topic: inherited from the dynamic broker default.
        assert (t["retention.bytes"]["value"], t["retention.bytes"]["source"]) == (
            "987654321", "DYNAMIC_BROKER_CONFIG")
        assert t["segment.ms"]["source"] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG")
        b = configs_by_name(admin_json(broker.bootstrap, "configs", "describe", "broker", "0"))
        assert (b["log.retention.bytes"]["value"], b["log.retention.bytes"]["source"]) == (
            "987654321", "DYNAMIC_BROKER_CONFIG")
        dynamic = admin_json(broker.bootstrap, "configs", "describe", "topic", topic, "--dynamic")
        assert sorted(configs_by_name(dynamic)) == ["cleanup.policy", "retention.ms"]

    check()
    broker.restart()
    check()

    java_ok(java_configs, "alter", broker.bootstrap, "topic", topic, "--delete", "cleanup.policy")
    t = configs_by_name(admin_json(broker.bootstrap, "configs", "describe", "topic", topic))
    assert (t["cleanup.policy"]["value"], t["cleanup.policy"]["source"]) == (
        "delete", "DEFAULT_CONFIG")


def test_shale_admin_changes_are_seen_by_java_admin_and_survive_restart(broker, java_configs):
    """Topic and broker configs altered with `shale admin configs alter` show in the Java AdminClient's describeConfigs, before and after a restart, and deleting one restores the default."""
    topic = unique("cli-cfg")
    admin_json(broker.bootstrap, "topics", "create", topic, "--partitions", "1")
    out = shale_admin(broker.bootstrap, "configs", "alter", "topic", topic,
                      "--set", "retention.ms=7200000", "--set", "max.message.bytes=2000000")
    assert out.returncode == 0, out.stderr
    assert "set max.message.bytes=2000000, set retention.ms=7200000" in out.stdout, out.stdout
    altered = admin_json(broker.bootstrap, "configs", "alter", "broker",
                         "--set", "log.retention.ms=86400001")
    assert altered["resource_name"] == "0" and altered["set"] == {"log.retention.ms": "86400001"}

    def check():
        t = java_ok(java_configs, "describe", broker.bootstrap, "topic", topic)
        assert t["retention.ms"] == ("7200000", "DYNAMIC_TOPIC_CONFIG")
        assert t["max.message.bytes"] == ("2000000", "DYNAMIC_TOPIC_CONFIG")
        b = java_ok(java_configs, "describe", broker.bootstrap, "broker", "0")
        assert b["log.retention.ms"] == ("86400001", "DYNAMIC_BROKER_CONFIG")

    check()
    broker.restart()
    check()

    admin_json(broker.bootstrap, "configs", "alter", "topic", topic, "--delete", "retention.ms")
    t = java_ok(java_configs, "describe", broker.bootstrap, "topic", topic)
    # Back to the broker's (dynamic) log.retention.ms, as Kafka reports an inherited value.
    assert t["retention.ms"] == ("86400001", "DYNAMIC_BROKER_CONFIG")
    admin_json(broker.bootstrap, "configs", "alter", "broker", "0", "--delete", "log.retention.ms")
    b = java_ok(java_configs, "describe", broker.bootstrap, "broker", "0")
    assert b["log.retention.ms"][1] != "DYNAMIC_BROKER_CONFIG"


@pytest.mark.parametrize("kind,name,change,key", [
    ("topic", None, "retention.msx=1000", "retention.msx"),
    ("topic", None, "retention.ms=forever", "retention.ms"),
    ("topic", None, "cleanup.policy=shred", "cleanup.policy"),
    ("broker", "0", "log.bogus.setting=1", "log.bogus.setting"),
    ("broker", "0", "log.retention.ms=abc", "log.retention.ms"),
])
def test_invalid_config_changes_are_rejected_by_both_paths(broker, java_configs, kind, name,
                                                           change, key):
    """An unknown key or a bad value is refused with INVALID_CONFIG and a message naming the key, through `shale admin` (exit 1) and through the Java AdminClient, and nothing changes."""
    if kind == "topic":
        name = unique("bad-cfg")
        cf_create_topic(broker.bootstrap, name, 1)
    proc = admin_fails(broker.bootstrap, "configs", "alter", kind, name, "--set", change)
    assert "INVALID_CONFIG" in proc.stderr and f"`{key}`" in proc.stderr, proc.stderr

    rc, _out, err = java_configs("alter", broker.bootstrap, kind, name, "--set", change)
    assert rc == 1, err
    assert "REJECTED: InvalidConfigurationException" in err and key in err, err

    dynamic = admin_json(broker.bootstrap, "configs", "describe", kind, name, "--dynamic")
    assert dynamic["configs"] == [], dynamic


def test_live_retention_bytes_change_deletes_old_segments(broker_factory):
    """Lowering retention.bytes on a live topic makes the broker drop its oldest segments at the next retention check, without a restart; readers then start at the new log start."""
    # Topics are tiered by default, so retention runs in the tiering job (local segments go only
    # once uploaded; retention.bytes counts both tiers): run both jobs often.
    broker = broker_factory(log_retention_check_interval_ms=200,
                            remote_log_manager_task_interval_ms=200)
    topic = unique("retention")
    admin_json(broker.bootstrap, "topics", "create", topic, "--partitions", "1",
               "--config", "segment.bytes=16384")
    # Small batches: a batch may not exceed the segment size.
    produce(broker.bootstrap, topic, [(0, bytes([i % 251]) * 1000, None) for i in range(200)],
            batch_size=4096, linger_ms=0)

    def offsets():
        p = admin_json(broker.bootstrap, "topics", "describe", topic)["partitions"][0]
        return p["log_start_offset"], p["log_end_offset"]

    time.sleep(1.0)  # several retention checks with no limit: nothing goes
    assert offsets() == (0, 200)

    admin_json(broker.bootstrap, "configs", "alter", "topic", topic, "--set", "retention.bytes=40000")
    deadline = time.monotonic() + 20
    while offsets()[0] == 0:
        assert time.monotonic() < deadline, "no segment deleted 20 s after lowering retention.bytes"
        time.sleep(0.2)
    start, end = offsets()
    assert end == 200
    # About 40 KB of 1 KB records stay, rounded to whole 16 KB segments.
    assert 120 <= start < 200 - 30, (start, end)

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("ret"),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
        first = consume_n(c, 1)[0]
        assert first.offset() == start
    finally:
        c.close()


# --- groups --------------------------------------------------------------------------------------


def test_groups_list_describe_and_reset_to_earliest(broker):
    """A real consumer group that committed and left is listed as Empty, described with committed offset, log end and lag per partition, reset to earliest (a dry run changes nothing), and a new member resumes from the reset offsets."""
    topic, group = unique("grp-topic"), unique("grp")
    cf_create_topic(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [(i % 3, b"r%d" % i, None) for i in range(30)])

    c = group_consumer(broker.bootstrap, group)
    c.subscribe([topic])
    consume_n(c, 30)
    c.commit(asynchronous=False)
    c.close()

    groups = {g["group"]: g for g in admin_json(broker.bootstrap, "groups", "list")["groups"]}
    assert groups[group]["state"] == "Empty" and groups[group]["protocol_type"] == "consumer"
    empty_only = admin_json(broker.bootstrap, "groups", "list", "--state", "Empty")["groups"]
    assert group in [g["group"] for g in empty_only]
    stable_only = admin_json(broker.bootstrap, "groups", "list", "--state", "Stable")["groups"]
    assert group not in [g["group"] for g in stable_only]

    d = admin_json(broker.bootstrap, "groups", "describe", group)
    assert d["state"] == "Empty" and d["members"] == []
    assert [(o["topic"], o["partition"], o["committed_offset"], o["log_end_offset"], o["lag"])
            for o in d["offsets"]] == [(topic, p, 10, 10, 0) for p in range(3)]

    dry = admin_json(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                     "--to-earliest", "--dry-run")
    assert dry["dry_run"] is True
    assert [(r["partition"], r["previous_offset"], r["new_offset"]) for r in dry["partitions"]] == [
        (p, 10, 0) for p in range(3)]
    d = admin_json(broker.bootstrap, "groups", "describe", group)
    assert [o["committed_offset"] for o in d["offsets"]] == [10, 10, 10], "the dry run committed"

    reset = admin_json(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                       "--to-earliest")
    assert [r["new_offset"] for r in reset["partitions"]] == [0, 0, 0]
    d = admin_json(broker.bootstrap, "groups", "describe", group)
    assert [(o["committed_offset"], o["lag"]) for o in d["offsets"]] == [(0, 10)] * 3

    # auto.offset.reset=latest: only the committed offsets can make it read the old records.
    c = group_consumer(broker.bootstrap, group, **{"auto.offset.reset": "latest"})
    try:
        c.subscribe([topic])
        got = consume_n(c, 30)
        firsts = {}
        for m in got:
            firsts.setdefault(m.partition(), m.offset())
        assert firsts == {0: 0, 1: 0, 2: 0}
    finally:
        c.close()


def test_reset_offsets_to_datetime_and_offset(broker):
    """--to-datetime (RFC 3339 or epoch ms) moves to the first record at or after that time, --to-offset is clamped to the log, and --partition limits the reset; a consumer resumes there."""
    topic, group = unique("grp-time"), unique("grp-time")
    cf_create_topic(broker.bootstrap, topic, 2)
    t0 = int(time.time() * 1000) - 3 * 3600_000
    # Per partition: offsets 0-9 at t0 + i s, offsets 10-19 one hour later.
    values = [(p, b"p%d-%d" % (p, i), t0 + (i // 10) * 3600_000 + i * 1000)
              for p in range(2) for i in range(20)]
    produce(broker.bootstrap, topic, values)

    between = datetime.fromtimestamp((t0 + 1800_000) / 1000, tz=timezone.utc)
    rfc3339 = between.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    r = admin_json(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                   "--to-datetime", rfc3339)
    assert [(x["partition"], x["previous_offset"], x["new_offset"]) for x in r["partitions"]] == [
        (0, None, 10), (1, None, 10)]

    # Epoch ms of offset 15's timestamp, partition 1 only.
    r = admin_json(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                   "--partition", "1", "--to-datetime", str(t0 + 3600_000 + 15_000))
    assert [(x["partition"], x["new_offset"]) for x in r["partitions"]] == [(1, 15)]
    # After the last record: the log end.
    later = datetime.fromtimestamp(time.time() + 60, tz=timezone.utc).isoformat()
    r = admin_json(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                   "--partition", "0", "--to-datetime", later)
    assert [(x["partition"], x["new_offset"]) for x in r["partitions"]] == [(0, 20)]
    r = admin_json(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                   "--partition", "0", "--to-offset", "999")
    assert [(x["partition"], x["previous_offset"], x["new_offset"]) for x in r["partitions"]] == [
        (0, 20, 20)]
    r = admin_json(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                   "--partition", "0", "--to-offset", "3")
    assert r["partitions"][0]["new_offset"] == 3
    admin_fails(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                "--partition", "7", "--to-earliest")

    c = group_consumer(broker.bootstrap, group, **{"auto.offset.reset": "latest"})
    try:
        c.subscribe([topic])
        got = consume_n(c, (20 - 3) + (20 - 15))
        firsts = {}
        for m in got:
            firsts.setdefault(m.partition(), m.offset())
        assert firsts == {0: 3, 1: 15}
    finally:
        c.close()


def test_reset_offsets_refused_while_group_is_active(broker):
    """While a consumer is in the group, reset-offsets is refused with a message saying the group must be inactive, and the committed offsets stay; describe shows the member and its assignment."""
    topic, group = unique("grp-active"), unique("grp-active")
    cf_create_topic(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, [(i % 2, b"a%d" % i, None) for i in range(10)])

    c = group_consumer(broker.bootstrap, group, **{"client.id": "active-member"})
    c.subscribe([topic])
    consume_n(c, 10)
    c.commit(asynchronous=False)
    stop = threading.Event()

    def keep_polling():
        while not stop.is_set():
            c.poll(0.2)

    poller = threading.Thread(target=keep_polling)
    poller.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            d = admin_json(broker.bootstrap, "groups", "describe", group)
            if d["state"] == "Stable" and d["members"]:
                break
            assert time.monotonic() < deadline, f"group never became Stable: {d}"
            time.sleep(0.2)
        (member,) = d["members"]
        assert member["client_id"] == "active-member"
        assert member["assignment"] == [{"topic": topic, "partitions": [0, 1]}]
        assert {(o["partition"], o["member_id"]) for o in d["offsets"]} == {
            (0, member["member_id"]), (1, member["member_id"])}

        proc = admin_fails(broker.bootstrap, "groups", "reset-offsets", group, "--topic", topic,
                           "--to-earliest")
        assert "inactive" in proc.stderr and "Stable" in proc.stderr, proc.stderr
        text = shale_admin(broker.bootstrap, "groups", "describe", group).stdout
        assert "active-member" in text and f"{topic}:0,1" in text, text
    finally:
        stop.set()
        poller.join()
        c.close()
    d = admin_json(broker.bootstrap, "groups", "describe", group)
    assert [o["committed_offset"] for o in d["offsets"]] == [5, 5]


def test_groups_describe_unknown_group(broker):
    """Describing a group that does not exist is a broker-side error (exit 1) naming the group."""
    group = unique("no-such-group")
    proc = admin_fails(broker.bootstrap, "groups", "describe", group)
    assert f"consumer group `{group}` does not exist" in proc.stderr, proc.stderr
