"""Consumer groups and committed offsets with real clients.

librdkafka (confluent-kafka), the Java client 4.3 (tests/java/ShaleGroupCheck, classic group
protocol) and kafka-python join groups through Shale's group coordinator, split topics between
members with their client-side assignors, rebalance when members come and go, and commit offsets
that survive a broker SIGKILL. Timings that matter to users (how long a rebalance takes, how soon a
new member reads) are printed rather than asserted against wall time, except for the bound that a
rebalance completes within the configured timeouts.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter

import pytest

import kafka_wire as wire
from clients import _RDKAFKA_LOG, cf_admin, cf_create_topic, run_java, unique

PARTITIONS = 6
# Member settings of the rebalance tests: short sessions and heartbeats so that rebalances are
# noticed quickly; the rebalance timeout (max.poll.interval.ms) is the bound asserted.
SESSION_TIMEOUT_MS = 10_000
REBALANCE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def group_java_cmd(java_cmd) -> list[str]:
    """`java -cp ... ShaleGroupCheck`, compiled by scripts/setup-test-env.sh."""
    from conftest import JAVA_DIR
    if not (JAVA_DIR / "classes" / "ShaleGroupCheck.class").is_file():
        pytest.fail("ShaleGroupCheck is not compiled: run scripts/setup-test-env.sh", pytrace=False)
    return java_cmd[:-1] + ["ShaleGroupCheck"]


def produce_per_partition(bootstrap: str, topic: str, per_partition: int, start: int = 0) -> dict[int, int]:
    """Produces `per_partition` records to each partition (value "p:i"); returns the end offsets."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "logger": _RDKAFKA_LOG})
    ends: dict[int, int] = {}
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for i in range(start, start + per_partition):
        for part in range(PARTITIONS):
            while True:
                try:
                    p.produce(topic, value=f"{part}:{i}".encode(), partition=part, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.1)
    assert p.flush(60) == 0
    assert not errors, errors[:5]
    return ends


class Member:
    """One librdkafka group member, polled by its own thread.

    Records every (partition, offset) it reads, its current assignment (kept from the
    assign/revoke/lost callbacks, which run on the polling thread) and when each callback ran.
    `stop()` makes the thread leave the group with close(), which commits (auto-commit) and
    sends LeaveGroup.
    """

    def __init__(self, name: str, bootstrap: str, group: str, topic: str, **conf):
        from confluent_kafka import Consumer
        self.name = name
        self.topic = topic
        base = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 500,
            "logger": _RDKAFKA_LOG,
        }
        base.update(conf)
        self.consumer = Consumer(base)
        self.records: list[tuple[int, int]] = []
        self.assignment: set[int] = set()
        self.events: list[tuple[float, str, list[int]]] = []
        self.first_record_at: float | None = None
        self.errors: list[str] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._calls: list[tuple] = []
        self.assignment_at_stop: set[int] | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _event(self, kind: str, partitions) -> None:
        parts = sorted(tp.partition for tp in partitions)
        self.events.append((time.monotonic(), kind, parts))
        if kind == "assigned":
            self.assignment |= set(parts)
        else:
            self.assignment -= set(parts)

    def _run(self) -> None:
        c = self.consumer
        c.subscribe([self.topic],
                    on_assign=lambda _c, ps: self._event("assigned", ps),
                    on_revoke=lambda _c, ps: self._event("revoked", ps),
                    on_lost=lambda _c, ps: self._event("lost", ps))
        try:
            while not self._stop.is_set():
                while self._calls:
                    fn, done, out = self._calls.pop(0)
                    try:
                        out.append(fn(c))
                    except Exception as e:  # handed to the caller
                        out.append(e)
                    done.set()
                msg = c.poll(0.1)
                if msg is None:
                    continue
                if msg.error():
                    self.errors.append(str(msg.error()))
                    continue
                if self.first_record_at is None:
                    self.first_record_at = time.monotonic()
                self.records.append((msg.partition(), msg.offset()))
            self.assignment_at_stop = set(self.assignment)
        finally:
            c.close()

    def assigned_at(self) -> float | None:
        """When the first non-empty assignment arrived."""
        return next((t for t, kind, parts in self.events if kind == "assigned" and parts), None)

    def call(self, fn, timeout: float = 60):
        """Runs fn(consumer) on the polling thread (the client is not used from two threads)."""
        done, out = threading.Event(), []
        self._calls.append((fn, done, out))
        assert done.wait(timeout), f"{self.name}: call did not run within {timeout}s"
        if isinstance(out[0], Exception):
            raise out[0]
        return out[0]

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), f"{self.name} did not close within 60 s"


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> float:
    """Waits until predicate() is true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def partitions_covered(members: list[Member]) -> bool:
    """The members' assignments are disjoint and cover the topic."""
    sets = [m.assignment for m in members]
    union = set().union(*sets)
    return union == set(range(PARTITIONS)) and sum(len(s) for s in sets) == PARTITIONS


def read_counts(members: list[Member]) -> Counter:
    return Counter(r for m in members for r in m.records)


def expected_records(ends: dict[int, int]) -> set[tuple[int, int]]:
    return {(p, o) for p, end in ends.items() for o in range(end)}


def committed(bootstrap: str, group: str, topic: str) -> dict[int, tuple[int, str | None]]:
    """The group's committed offsets (and metadata) per partition, -1001 when none."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": _RDKAFKA_LOG})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        return {tp.partition: (tp.offset, tp.metadata) for tp in tps}
    finally:
        c.close()


# --- Sharing a topic -----------------------------------------------------------------------------

def test_librdkafka_cooperative_sticky_members_share_a_topic(broker):
    """Three librdkafka members with cooperative-sticky split a 6-partition topic two partitions each, read every record exactly once between them, and commit the end offsets."""
    topic, group = unique("share"), unique("group")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    ends = produce_per_partition(broker.bootstrap, topic, 300)
    want = expected_records(ends)
    members = [Member(f"m{i}", broker.bootstrap, group, topic,
                      **{"partition.assignment.strategy": "cooperative-sticky"})
               for i in range(3)]
    try:
        took = wait_for(lambda: set(read_counts(members)) >= want, 90, "every record to be read")
    finally:
        for m in members:
            m.stop()
    counts = read_counts(members)
    twice = sorted(r for r, n in counts.items() if n > 1)
    missing = sorted(want - set(counts))
    for m in members:
        print(f"{m.name}: {len(m.records)} records, assignment at stop {sorted(m.assignment_at_stop)}, "
              f"callbacks {[(kind, parts) for _, kind, parts in m.events]}")
    print(f"3 librdkafka members read {len(want)} records in {took:.2f}s")
    assert not twice, f"{len(twice)} records read twice, first {twice[:10]}"
    assert not missing, f"{len(missing)} records never read, first {missing[:10]}"
    finals = [m.assignment_at_stop for m in members]
    assert sorted(len(a) for a in finals) == [2, 2, 2], finals
    assert set().union(*finals) == set(range(PARTITIONS)), finals
    assert not [e for m in members for e in m.errors], [m.errors for m in members]
    got = committed(broker.bootstrap, group, topic)
    assert {p: o for p, (o, _) in got.items()} == ends


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "sticky", "cooperative-sticky"])
def test_java_members_share_a_topic(broker, group_java_cmd, assignor):
    """Three Java-client members (classic protocol) split a 6-partition topic with each client-side assignor: every record read exactly once, assignments disjoint, complete and balanced, committed offsets equal to the end offsets."""
    topic, group = unique("jshare"), unique(f"jgroup-{assignor}")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_per_partition(broker.bootstrap, topic, 200)
    proc = run_java(group_java_cmd, "share", broker.bootstrap, topic, group, 3, assignor)
    print("\n".join(line for line in proc.stdout.splitlines() if not line.startswith("member")
                    or "final" in line or "assigned" in line))


def test_kafka_python_group_consumer(broker):
    """kafka-python's group consumer reads a topic through the coordinator, commits, and a second consumer of the same group resumes exactly after the committed offsets."""
    from kafka import KafkaConsumer
    topic, group = unique("kp"), unique("kp-group")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    ends = produce_per_partition(broker.bootstrap, topic, 100)
    total = sum(ends.values())

    def consumer():
        return KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=1000,
                             max_poll_records=50)

    first: list[tuple[int, int]] = []
    c = consumer()
    try:
        deadline = time.monotonic() + 60
        while len(first) < total // 2 and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                first += [(tp.partition, r.offset) for r in recs]
        assert len(first) >= total // 2, f"kafka-python read only {len(first)} records"
        assert {tp.partition for tp in c.assignment()} == set(range(PARTITIONS))
        c.commit()
    finally:
        c.close()

    second: list[tuple[int, int]] = []
    c = consumer()
    try:
        deadline = time.monotonic() + 60
        while len(first) + len(second) < total and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500).items():
                second += [(tp.partition, r.offset) for r in recs]
        c.commit()
    finally:
        c.close()
    both = Counter(first + second)
    assert not [r for r, n in both.items() if n > 1], "a record was read by both consumers"
    assert set(both) == expected_records(ends)
    got = committed(broker.bootstrap, group, topic)
    assert {p: o for p, (o, _) in got.items()} == ends


# --- Rebalances ----------------------------------------------------------------------------------

def test_member_leaving_and_joining_rebalances_within_the_timeouts(broker):
    """With records flowing, a member leaving and a new member joining each trigger a cooperative rebalance that completes within the configured rebalance timeout, and no record is missed or read twice."""
    topic, group = unique("churn"), unique("churn-group")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    conf = {"partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000,
            "max.poll.interval.ms": REBALANCE_TIMEOUT_MS}

    delivered: dict[int, int] = {}
    stop_producing = threading.Event()

    def produce():
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "logger": _RDKAFKA_LOG})

        def cb(err, msg):
            if err is None:
                delivered[msg.partition()] = max(delivered.get(msg.partition(), 0), msg.offset() + 1)

        i = 0
        while not stop_producing.is_set():
            p.produce(topic, value=str(i).encode(), partition=i % PARTITIONS, on_delivery=cb)
            p.poll(0)
            i += 1
            time.sleep(0.002)
        p.flush(30)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    a, b, c = (Member(n, broker.bootstrap, group, topic, **conf) for n in ("a", "b", "c"))
    members = [a, b, c]
    d = None
    try:
        wait_for(lambda: partitions_covered([a, b, c]) and all(len(m.assignment) == 2 for m in members),
                 60, "three members with two partitions each")
        time.sleep(1)

        c.stop()
        leave = wait_for(lambda: partitions_covered([a, b]), REBALANCE_TIMEOUT_MS / 1000,
                         "the two remaining members to take over the leaver's partitions")
        print(f"member left: the others own all partitions {leave:.2f}s later "
              f"({sorted(a.assignment)} / {sorted(b.assignment)})")
        time.sleep(1)

        d = Member("d", broker.bootstrap, group, topic, **conf)
        members.append(d)
        join = wait_for(lambda: len(d.assignment) == 2 and partitions_covered([a, b, d]),
                        REBALANCE_TIMEOUT_MS / 1000, "the new member to get its share")
        first = (d.first_record_at - d.started) if d.first_record_at else None
        print(f"member joined: balanced again {join:.2f}s after it subscribed "
              f"({sorted(a.assignment)} / {sorted(b.assignment)} / {sorted(d.assignment)}); "
              f"its first record arrived after {first if first is None else round(first, 2)}s")
        time.sleep(1)
    finally:
        stop_producing.set()
        producer.join(60)
    try:
        want = expected_records(delivered)
        wait_for(lambda: set(read_counts(members)) >= want, 60, "every delivered record to be read")
    finally:
        for m in (a, b, d):
            if m is not None:
                m.stop()
    counts = read_counts(members)
    twice = sorted(r for r, n in counts.items() if n > 1)
    print(f"{len(want)} records produced during the churn, {sum(counts.values())} reads, "
          f"{len(twice)} read twice")
    assert not twice, f"{len(twice)} records read twice, first {twice[:10]}"
    assert not [e for m in members for e in m.errors], [m.errors for m in members]


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_time_from_join_to_first_fetch_of_a_new_member(broker, strategy):
    """Logs how long after subscribing a new member of an otherwise idle group gets its assignment and its first record (librdkafka defaults: 3 s heartbeats); the only assertion is that it does."""
    topic, group = unique("latency"), unique("latency-group")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_per_partition(broker.bootstrap, topic, 10)
    # The first member never commits, so every partition it gives up still has records to read.
    conf = {"partition.assignment.strategy": strategy, "enable.auto.commit": False}
    first = Member("first", broker.bootstrap, group, topic, **conf)
    second = None
    try:
        wait_for(lambda: len(first.records) == 10 * PARTITIONS, 60, "the first member to read everything")
        print(f"[{strategy}] first member of a new group: assigned after "
              f"{first.assigned_at() - first.started:.2f}s (includes group.initial.rebalance.delay.ms), "
              f"first record after {first.first_record_at - first.started:.2f}s")
        time.sleep(2)  # idle
        second = Member("second", broker.bootstrap, group, topic, **conf)
        wait_for(lambda: second.first_record_at is not None, 60, "the new member's first record")
        print(f"[{strategy}] new member of an idle group: assigned after "
              f"{second.assigned_at() - second.started:.2f}s, first record after "
              f"{second.first_record_at - second.started:.2f}s")
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_java_static_member_replaced_without_rebalance_and_old_one_fenced(broker, group_java_cmd):
    """A Java consumer restarted with the same group.instance.id takes over its predecessor's partitions in the same generation (no rebalance of the other member), and the predecessor is fenced with FENCED_INSTANCE_ID."""
    topic = unique("static")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_per_partition(broker.bootstrap, topic, 50)
    proc = run_java(group_java_cmd, "static-fencing", broker.bootstrap, topic, unique("static-group"))
    print("\n".join(line for line in proc.stdout.splitlines() if not line.startswith("0")))


# --- Durability ----------------------------------------------------------------------------------

def test_committed_offsets_survive_sigkill_and_restart(broker):
    """Offsets (with metadata) committed by group members survive a broker SIGKILL: after restart a new member resumes exactly at them, and a member that stayed up keeps consuming in its group without starting over."""
    from confluent_kafka import TopicPartition
    topic, group, live_group = unique("durable"), unique("durable-group"), unique("live-group")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    ends = produce_per_partition(broker.bootstrap, topic, 100)

    # A member commits explicit offsets with metadata, then leaves.
    m = Member("committer", broker.bootstrap, group, topic, **{"enable.auto.commit": False})
    wait_for(lambda: len(m.assignment) == PARTITIONS, 60, "the committer's assignment")
    positions = {p: 10 + 7 * p for p in range(PARTITIONS)}
    m.call(lambda c: c.commit(offsets=[TopicPartition(topic, p, o, metadata=f"meta-{p}")
                                       for p, o in positions.items()], asynchronous=False))
    m.stop()
    # Another group's member reads everything and stays up across the restart.
    live = Member("live", broker.bootstrap, live_group, topic,
                  **{"session.timeout.ms": SESSION_TIMEOUT_MS, "heartbeat.interval.ms": 1000})
    wait_for(lambda: len(live.records) == sum(ends.values()), 60, "the live member to read everything")
    time.sleep(1.5)  # an auto-commit interval

    broker.kill()
    broker.start()
    # The listener binds before the data is opened: wait for the replay to be logged.
    wait_for(lambda: "group coordinator loaded __consumer_offsets" in broker.log_text(), 30,
             "the coordinator to replay __consumer_offsets")

    got = committed(broker.bootstrap, group, topic)
    assert got == {p: (o, f"meta-{p}") for p, o in positions.items()}
    resumed = Member("resumed", broker.bootstrap, group, topic)
    try:
        want = {(p, o) for p in range(PARTITIONS) for o in range(positions[p], ends[p])}
        wait_for(lambda: set(resumed.records) >= want, 60, "the resumed member to read the rest")
        firsts = {p: min(o for q, o in resumed.records if q == p) for p in range(PARTITIONS)}
        assert firsts == positions, f"resumed at {firsts}, committed {positions}"
        assert len(resumed.records) == len(want), "the resumed member read records before its offsets"

        # The member that stayed up reads what is produced after the restart, and nothing twice.
        before = len(live.records)
        new_ends = produce_per_partition(broker.bootstrap, topic, 10, start=100)
        wait_for(lambda: len(live.records) >= before + 10 * PARTITIONS, 60,
                 "the live member to read records produced after the restart")
        dup = [r for r, n in Counter(live.records).items() if n > 1]
        assert not dup, f"the live member read {len(dup)} records twice after the restart: {dup[:10]}"
        assert set(live.records) == expected_records(new_ends)
    finally:
        resumed.stop()
        live.stop()


# --- Admin APIs and the wire -----------------------------------------------------------------------

def test_java_admin_group_apis(broker, group_java_cmd):
    """The Java AdminClient's group APIs work: offsets altered for simple groups and read back in one multi-group OffsetFetch, ListGroups by state, DescribeGroups of a live group, OffsetDelete, DeleteGroups, and the refusals for a live group (GroupNotEmpty, GroupSubscribedToTopic)."""
    topic = unique("admin")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_per_partition(broker.bootstrap, topic, 5)
    run_java(group_java_cmd, "admin", broker.bootstrap, topic, unique("adm"))


def test_librdkafka_admin_lists_and_describes_groups(broker):
    """librdkafka's AdminClient lists groups with a state filter, describes a stable group with its member and assignment, and cannot delete it until its member leaves."""
    from confluent_kafka import ConsumerGroupState, KafkaException
    topic, group = unique("cfadmin"), unique("cfadmin-group")
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = cf_admin(broker.bootstrap)
    m = Member("described", broker.bootstrap, group, topic)
    try:
        wait_for(lambda: len(m.assignment) == PARTITIONS, 60, "the member's assignment")
        listed = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(30)
        assert group in [g.group_id for g in listed.valid]
        listed_empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(30)
        assert group not in [g.group_id for g in listed_empty.valid]
        d = admin.describe_consumer_groups([group])[group].result(30)
        assert d.state == ConsumerGroupState.STABLE
        assert d.partition_assignor == "range"
        assert len(d.members) == 1
        assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == list(range(PARTITIONS))
        with pytest.raises(KafkaException) as e:
            admin.delete_consumer_groups([group])[group].result(30)
        assert e.value.args[0].name() == "NON_EMPTY_GROUP"
    finally:
        m.stop()
    d = admin.describe_consumer_groups([group])[group].result(30)
    assert d.state == ConsumerGroupState.EMPTY
    admin.delete_consumer_groups([group])[group].result(30)
    assert group not in [g.group_id for g in admin.list_consumer_groups().result(30).valid]


def _find_coordinator_v4(conn: wire.Conn, key_type: int, keys: list[str]) -> list[tuple]:
    body = struct.pack(">b", key_type) + wire.uvarint(len(keys) + 1)
    body += b"".join(wire.compact_string(k) for k in keys) + wire.uvarint(0)
    resp = wire.Reader(conn.roundtrip(wire.request_frame(10, 4, 7, body, flexible_header=True)))
    assert resp.int32() == 7
    assert resp.take(1) == b"\x00"  # response header tagged fields

    def compact_string():
        n = _uvarint(resp) - 1
        return None if n < 0 else resp.take(n).decode()

    resp.int32()  # throttle
    out = []
    for _ in range(_uvarint(resp) - 1):
        key = compact_string()
        node, host, port, error = resp.int32(), compact_string(), resp.int32(), resp.int16()
        compact_string()  # message
        _uvarint(resp)
        out.append((key, node, host, port, error))
    return out


def _uvarint(r: wire.Reader) -> int:
    shift = value = 0
    while True:
        b = r.take(1)[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7


def test_find_coordinator_batched_and_by_key_type(broker):
    """FindCoordinator v4 answers each key of a batch: groups are coordinated by this broker, transactional ids get COORDINATOR_NOT_AVAILABLE (no transaction coordinator yet), an unknown key type INVALID_REQUEST; v1 answers a single key at the top level."""
    with wire.Conn(broker.host, broker.port) as conn:
        groups = _find_coordinator_v4(conn, 0, ["a", "b", ""])
        assert [g[0] for g in groups] == ["a", "b", ""]
        assert all(g[1:] == (0, broker.host, broker.port, 0) for g in groups), groups
        txn = _find_coordinator_v4(conn, 1, ["tx"])
        assert txn == [("tx", -1, "", -1, 15)], txn
        assert _find_coordinator_v4(conn, 9, ["x"])[0][4] == 42
        body = wire.string("g") + struct.pack(">b", 0)
        r = wire.Reader(conn.roundtrip(wire.request_frame(10, 1, 8, body)))
        assert r.int32() == 8
        r.int32()
        assert r.int16() == 0
        r.string()
        assert (r.int32(), r.string(), r.int32()) == (0, broker.host, broker.port)


def _java_string_hash(s: str) -> int:
    h = 0
    for unit in struct.unpack(f"<{len(s.encode('utf-16-le')) // 2}H", s.encode("utf-16-le")):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def test_offsets_topic_is_internal_compacted_and_keyed_like_kafka(broker):
    """__consumer_offsets is created on first use with 50 partitions, compacted, reported internal in Metadata, and a group's records land in partition abs(groupId.hashCode()) % 50 as in Kafka."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import ConfigResource
    from kafka import KafkaAdminClient
    topic, group = unique("keyed"), "my-group"
    cf_create_topic(broker.bootstrap, topic, PARTITIONS)
    assert "__consumer_offsets" not in cf_admin(broker.bootstrap).list_topics(timeout=10).topics
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "logger": _RDKAFKA_LOG})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        lows_highs = {p: c.get_watermark_offsets(TopicPartition("__consumer_offsets", p), timeout=10)[1]
                      for p in range(50)}
    finally:
        c.close()
    h = _java_string_hash(group)
    assert h == -1906497762  # Java: "my-group".hashCode()
    expected = (0 if h == -(1 << 31) else abs(h)) % 50
    assert [p for p, hw in lows_highs.items() if hw > 0] == [expected]

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        (described,) = kp.describe_topics(["__consumer_offsets"])
        assert described["is_internal"] is True
        assert len(described["partitions"]) == 50
    finally:
        kp.close()
    res = ConfigResource("TOPIC", "__consumer_offsets")
    admin = cf_admin(broker.bootstrap)  # must outlive the future
    configs = admin.describe_configs([res])[res].result(30)
    assert configs["cleanup.policy"].value == "compact"
