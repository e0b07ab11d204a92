"""Clusters of real `shale` processes on 127.0.0.1: every node a broker and a controller voter
(Kafka's combined mode), started with --node-id, --controller-listen and
--controller-quorum-voters as scripts/cluster.sh starts them.

What is checked: partitions are spread over the brokers and every broker routes clients to
their leaders (librdkafka and the Java client 4.3); a consumer group works while its
coordinator is on another node than most partitions; metadata changes through one broker are
seen by the others; the Raft leader can be SIGKILLed (a new controller takes over, the killed
node catches up when it comes back); the whole cluster can be SIGKILLed and restarted with
nothing lost; the Raft leader cut off from the others by link proxies (a network partition)
is replaced and commits nothing; a fresh cluster restores the topics of a bucket. Figures (propagation delay, failover time) are printed for the closing note.
"""

from __future__ import annotations

import collections
import shutil
import struct
import time

import pytest

from clients import (
    Rec, assert_verified, cf_admin, cf_consume_all, cf_create_topic, cf_produce, cf_producer,
    cf_wait_topic, end_offsets_of,
    make_records, now_ms, run_java, unique,
)
from conftest import free_port
from link_proxy import LinkProxy
from test_admin_cli import admin_json
import kafka_wire as kw

OFFSETS_PARTITIONS = 50


def java_string_hash(s: str) -> int:
    h = 0
    for unit in struct.unpack(f"<{len(s.encode('utf-16-le')) // 2}H", s.encode("utf-16-le")):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def group_partition(group: str, partitions: int = OFFSETS_PARTITIONS) -> int:
    """Kafka's partition of a group in __consumer_offsets: abs(hashCode) % partitions."""
    h = java_string_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


class Cluster:
    """N shale processes with ids 1..N, all voters, on free loopback ports.

    With `links=True` every node reaches every other through a proxy of its own
    (`self.links[(i, j)]`: node i's link to node j), named in node i's controller.quorum.voters,
    so that a test can cut the network between two nodes in one direction or both.
    """

    def __init__(self, factory, n: int, links: bool = False, **settings):
        ports = {i: free_port() for i in range(1, n + 1)}
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in ports.items())
        self.factory, self.voters, self.settings = factory, voters, settings
        self.links: dict[tuple[int, int], LinkProxy] = {}
        per_node = {i: voters for i in ports}
        if links:
            self.links = {(i, j): LinkProxy(("127.0.0.1", ports[j]))
                          for i in ports for j in ports if i != j}
            per_node = {i: ",".join(f"{j}@127.0.0.1:{ports[j]}" if i == j
                                    else f"{j}@{self.links[(i, j)].address}" for j in ports)
                        for i in ports}
        self.nodes = {
            i: factory(start=False, node_id=i, controller_listen=f"127.0.0.1:{ports[i]}",
                       controller_quorum_voters=per_node[i], **settings)
            for i in ports
        }
        for node in self.nodes.values():
            node.start()
        self.wait_registered(set(self.nodes))

    def isolate(self, node_id: int) -> None:
        """Cuts every link to and from `node_id` (its clients still reach it)."""
        for (i, j), link in self.links.items():
            if node_id in (i, j):
                link.cut()

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    def close_links(self) -> None:
        for link in self.links.values():
            link.close()

    def add_broker(self, node_id: int):
        """Starts a broker-only node (not a voter): it joins the quorum as an observer."""
        node = self.factory(start=False, node_id=node_id,
                            controller_listen=f"127.0.0.1:{free_port()}",
                            controller_quorum_voters=self.voters, **self.settings)
        self.nodes[node_id] = node
        node.start()
        return node

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def live(self):
        return {i: n for i, n in self.nodes.items() if n.alive()}

    def brokers_seen_by(self, node) -> set[int]:
        admin = cf_admin(node.bootstrap)  # kept alive until the future is done
        cluster = admin.describe_cluster(request_timeout=10).result(10)
        return {b.id for b in cluster.nodes}

    def wait_registered(self, ids: set[int], timeout: float = 60) -> None:
        """Every live node lists exactly `ids` as its live brokers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                seen = {i: self.brokers_seen_by(n) for i, n in self.live().items()}
                if all(s == ids for s in seen.values()):
                    return
            except Exception as e:  # noqa: BLE001 - a node still starting
                seen = repr(e)
            assert time.monotonic() < deadline, f"brokers not all registered: {seen}"
            time.sleep(0.2)

    def quorum(self, node) -> dict:
        return admin_json(node.bootstrap, "cluster", "describe")["quorum"]

    def leader(self, timeout: float = 30, among: dict | None = None) -> int:
        """The Raft leader that all of `among` (default: the live nodes) agree on, itself one of
        them: with `among` the nodes left after a pause or a cut, the one they elected."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = self.live() if among is None else among
            try:
                leaders = {i: self.quorum(n)["leader_id"] for i, n in nodes.items()}
                values = set(leaders.values())
                if len(values) == 1 and next(iter(values)) in nodes:
                    return next(iter(values))
            except AssertionError as e:
                leaders = str(e)[:200]
            assert time.monotonic() < deadline, f"no agreed leader: {leaders}"
            time.sleep(0.1)


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    md = cf_admin(bootstrap).list_topics(topic, timeout=10)
    t = md.topics[topic]
    assert t.error is None, t.error
    return {p: pm.leader for p, pm in t.partitions.items()}


def wait_visible(node, topic: str, partitions: int, timeout: float = 10) -> float:
    """Seconds until `node`'s Metadata shows `topic` with every partition led."""
    start = time.monotonic()
    while True:
        md = cf_admin(node.bootstrap).list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions \
                and all(p.leader >= 0 for p in t.partitions.values()):
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"{topic} not visible on {node.bootstrap}"
        time.sleep(0.005)


def consume_with_group(bootstrap: str, group: str, topic: str, total: int,
                       timeout: float = 90) -> dict[int, list]:
    """Subscribes as `group`, reads `total` records, commits them synchronously."""
    from confluent_kafka import Consumer, KafkaError
    from clients import _cf_consumed
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out: dict[int, list] = collections.defaultdict(list)
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout
        got = 0
        while got < total:
            assert time.monotonic() < deadline, f"group {group} read {got} of {total}"
            for msg in c.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    continue
                out[msg.partition()].append(_cf_consumed(msg))
                got += 1
        c.commit(asynchronous=False)
        return dict(out)
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource, ResourceType
    res = ConfigResource(ResourceType.TOPIC, topic)
    admin = cf_admin(bootstrap)
    entries = admin.describe_configs([res], request_timeout=30)[res].result(30)
    return {k: v.value for k, v in entries.items()}


def alter_topic_config(bootstrap: str, topic: str, name: str, value: str) -> None:
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)])
    admin = cf_admin(bootstrap)
    admin.incremental_alter_configs([res])[res].result(30)


def raw_produce_error(node, topic: str, partition: int) -> int:
    """Produce v3 of one record straight to `node`; the partition's error code."""
    batch = kw.simple_batch([kw.Record(key=b"k", value=b"v")])
    conn = kw.Conn(node.host, node.port)
    try:
        resp = conn.roundtrip(kw.produce_request(7, topic, partition, batch, version=3))
    finally:
        conn.sock.close()
    r = kw.Reader(resp)
    assert r.int32() == 7  # correlation id
    assert r.int32() == 1  # topics
    assert r.string() == topic
    assert r.int32() == 1  # partitions
    assert r.int32() == partition
    return r.int16()


def test_three_nodes_share_partitions_and_route_every_client(broker_factory, java_cmd):
    """A 12-partition topic created through node 1 gets 4 leaders per broker and is in the
    Metadata of the other two well within a second; librdkafka produces through node 3 only
    and consumes as a group through node 2 (whose coordinator leads 4 of the 12 partitions at
    most); a broker asked for a partition it does not lead answers NOT_LEADER_OR_FOLLOWER; the
    Java client produces and consumes through node 2; an AlterConfigs through node 1 is seen by
    DescribeConfigs on node 3."""
    cluster = Cluster(broker_factory, 3)
    n1, n2, n3 = cluster.nodes[1], cluster.nodes[2], cluster.nodes[3]
    topic, group = unique("spread"), unique("spread-group")

    created = time.monotonic()
    cf_create_topic(n1.bootstrap, topic, 12)
    delays = [wait_visible(n, topic, 12) for n in (n2, n3)]
    propagation = time.monotonic() - created
    print(f"FIGURE metadata propagation: created through node 1, led in node 2/3 Metadata "
          f"{[round(d * 1000, 1) for d in delays]} ms after CreateTopics returned "
          f"({propagation * 1000:.1f} ms from the call)")
    assert max(delays) < 1.0, delays
    leaders = partition_leaders(n2.bootstrap, topic)
    assert collections.Counter(leaders.values()) == {1: 4, 2: 4, 3: 4}, leaders
    assert partition_leaders(n3.bootstrap, topic) == leaders

    # A client that asks the wrong broker is sent on (a topic of its own: the record it
    # writes is not one the producer below acknowledges).
    probe = unique("probe")
    cf_create_topic(n1.bootstrap, probe, 3)
    wait_visible(n2, probe, 3)
    probe_leaders = partition_leaders(n2.bootstrap, probe)
    p_on_1 = next(p for p, leader in probe_leaders.items() if leader == 1)
    assert raw_produce_error(n2, probe, p_on_1) == 6  # NOT_LEADER_OR_FOLLOWER
    assert raw_produce_error(n1, probe, p_on_1) == 0

    # make_records names only some partitions; the partitioner may leave a partition without
    # a record (a few keys, sticky null keys): five records more for each, named.
    recs = make_records(topic, 3000, seed=11, ts_base=now_ms() - 60_000, partitions=12)
    recs += [Rec(f"p{p}-{i}".encode(), b"one for every partition", (), p, now_ms())
             for p in range(12) for i in range(5)]
    delivered = cf_produce(n3.bootstrap, topic, recs)
    ends = end_offsets_of(delivered)
    assert {p for p in ends if ends[p] > 0} == set(range(12)), ends
    consumed = consume_with_group(n2.bootstrap, group, topic, len(delivered))
    assert_verified(delivered, {p: consumed.get(p, []) for p in range(12)}, list(range(12)))
    admin = cf_admin(n1.bootstrap)
    coordinator = admin.describe_consumer_groups([group])[group].result(30).coordinator.id
    offsets_leader = partition_leaders(n1.bootstrap, "__consumer_offsets")[group_partition(group)]
    assert coordinator == offsets_leader, (coordinator, offsets_leader)
    assert sum(1 for leader in leaders.values() if leader != coordinator) == 8
    assert committed(n3.bootstrap, group, topic, 12) == {p: ends[p] for p in range(12)}

    java_topic = unique("spread-java")
    run_java(java_cmd, "produce-consume-verify", n2.bootstrap, java_topic)
    assert len(set(partition_leaders(n1.bootstrap, java_topic).values())) == 3

    alter_topic_config(n1.bootstrap, topic, "retention.ms", "86400001")
    deadline = time.monotonic() + 1.0
    while topic_config(n3.bootstrap, topic)["retention.ms"] != "86400001":
        assert time.monotonic() < deadline, topic_config(n3.bootstrap, topic)
        time.sleep(0.01)


def test_controller_failover_and_rejoin(broker_factory):
    """SIGKILL the Raft leader: the two others elect a new controller within a few election
    timeouts (1-2 s each) and CreateTopics works again; the partitions of the killed broker
    read LEADER_NOT_AVAILABLE once it is fenced; restarted, it catches up with what changed
    while it was down and leads its partitions again."""
    cluster = Cluster(broker_factory, 3, broker_session_timeout_ms=3000,
                      broker_heartbeat_interval_ms=500)
    before = unique("before")
    cf_create_topic(cluster.nodes[1].bootstrap, before, 6)
    old = cluster.leader()
    killed = cluster.nodes[old]
    killed.kill()
    killed_at = time.monotonic()
    survivor = next(n for i, n in cluster.nodes.items() if i != old)
    new = cluster.leader(timeout=30)
    elected = time.monotonic() - killed_at
    after = unique("after")
    while True:
        try:
            cf_create_topic(survivor.bootstrap, after, 6)
            break
        except Exception as e:  # noqa: BLE001
            assert time.monotonic() - killed_at < 30, f"CreateTopics still failing: {e}"
            time.sleep(0.1)
    writable = time.monotonic() - killed_at
    print(f"FIGURE controller failover: node {old} SIGKILLed, node {new} leads after "
          f"{elected:.2f} s (seen through DescribeQuorum), CreateTopics works after {writable:.2f} s")
    assert new != old
    assert elected < 10, elected
    # The survivors place the new topic on themselves only (the dead broker gets fenced).
    cluster.wait_registered(set(cluster.live()), timeout=30)
    described = admin_json(survivor.bootstrap, "cluster", "describe")["brokers"]
    assert {b["id"]: b["fenced"] for b in described} == {1: old == 1, 2: old == 2, 3: old == 3}, (
        f"cluster describe should list the killed broker {old} as fenced: {described}")
    leaders = partition_leaders(survivor.bootstrap, before)
    md = cf_admin(survivor.bootstrap).list_topics(before, timeout=10).topics[before]
    for p, pm in md.partitions.items():
        if old in pm.replicas:
            assert pm.leader == -1, (p, pm)

    killed.start()
    cluster.wait_registered(set(cluster.nodes), timeout=60)
    described = admin_json(killed.bootstrap, "cluster", "describe")["brokers"]
    assert not any(b["fenced"] for b in described), described
    wait_visible(killed, after, 6)
    deadline = time.monotonic() + 30
    while True:
        quorum = cluster.quorum(killed)
        lag = {v["id"]: v.get("lag") for v in quorum["voters"]}
        if quorum["leader_id"] == new and all(v == 0 for v in lag.values()):
            break
        assert time.monotonic() < deadline, quorum
        time.sleep(0.2)
    recovered = partition_leaders(killed.bootstrap, before)
    assert collections.Counter(recovered.values()) == {1: 2, 2: 2, 3: 2}, (leaders, recovered)
    recs = make_records(before, 300, seed=3, ts_base=now_ms(), partitions=6)
    delivered = cf_produce(cluster.bootstrap, before, recs)
    consumed = cf_consume_all(killed.bootstrap, before, list(range(6)), end_offsets_of(delivered))
    assert_verified(delivered, consumed, list(range(6)))


def test_full_cluster_sigkill_and_restart_keeps_everything(broker_factory):
    """Every node SIGKILLed at once and started again: the topics with their ids and configs,
    the records, the committed offsets and a dynamic broker config all survive."""
    from confluent_kafka.admin import ConfigResource, ResourceType
    cluster = Cluster(broker_factory, 3)
    topic, group = unique("whole"), unique("whole-group")
    cf_create_topic(cluster.nodes[2].bootstrap, topic, 6, {"retention.ms": "987654321"})
    recs = make_records(topic, 1200, seed=21, ts_base=now_ms() - 60_000, partitions=6)
    delivered = cf_produce(cluster.bootstrap, topic, recs)
    ends = end_offsets_of(delivered)
    consume_with_group(cluster.nodes[1].bootstrap, group, topic, len(delivered))
    res = ConfigResource(ResourceType.BROKER, "3", set_config={"log.retention.ms": "555555555"})
    admin = cf_admin(cluster.nodes[3].bootstrap)
    admin.alter_configs([res])[res].result(30)
    topics_before = {t["name"]: (t["id"], t["partitions"])
                     for t in admin_json(cluster.nodes[1].bootstrap, "topics", "list")["topics"]}
    leaders_before = partition_leaders(cluster.nodes[1].bootstrap, topic)

    for node in cluster.nodes.values():
        node.kill()
    for node in cluster.nodes.values():
        node.start()
    cluster.wait_registered(set(cluster.nodes), timeout=60)
    for i, node in cluster.nodes.items():
        now = {t["name"]: (t["id"], t["partitions"])
               for t in admin_json(node.bootstrap, "topics", "list")["topics"]}
        assert now == topics_before, f"node {i}"
        assert topic_config(node.bootstrap, topic)["retention.ms"] == "987654321"
        wait_visible(node, topic, 6)
    assert partition_leaders(cluster.nodes[3].bootstrap, topic) == leaders_before
    consumed = cf_consume_all(cluster.nodes[2].bootstrap, topic, list(range(6)), ends)
    assert_verified(delivered, consumed, list(range(6)))
    assert committed(cluster.nodes[3].bootstrap, group, topic, 6) == {p: ends[p] for p in range(6)}
    from confluent_kafka.admin import ConfigResource as CR
    b = CR(ResourceType.BROKER, "1")
    admin = cf_admin(cluster.nodes[1].bootstrap)
    entries = admin.describe_configs([b])[b].result(30)
    assert entries["log.retention.ms"].value == "555555555"


@pytest.mark.parametrize("voters, message", [
    ("1@127.0.0.1", "controller_quorum_voters"),
    ("1@127.0.0.1:1,1@127.0.0.1:2", "listed twice"),
])
def test_bad_voters_stop_startup_naming_the_setting(broker_factory, voters, message):
    b = broker_factory(start=False, node_id=1, controller_listen="127.0.0.1:1",
                       controller_quorum_voters=voters)
    with pytest.raises(Exception) as failed:
        b.start()
    assert message in str(failed.value), str(failed.value)
    b.runs[-1]["ended"] = "refused to start (expected)"


def test_a_fourth_node_joins_a_running_cluster(broker_factory):
    """A node whose id is not among the voters starts as a broker only: it joins the quorum as
    an observer, registers, is listed by every node, gets its share of a new topic's
    partitions, serves them, and restarts as a member."""
    cluster = Cluster(broker_factory, 3)
    old_topic = unique("old")
    cf_create_topic(cluster.nodes[1].bootstrap, old_topic, 3)
    fourth = cluster.add_broker(4)
    cluster.wait_registered({1, 2, 3, 4}, timeout=60)
    wait_visible(fourth, old_topic, 3)
    topic = unique("joined")
    cf_create_topic(fourth.bootstrap, topic, 8)
    for node in cluster.nodes.values():
        wait_visible(node, topic, 8)
    leaders = partition_leaders(cluster.nodes[2].bootstrap, topic)
    assert collections.Counter(leaders.values()) == {1: 2, 2: 2, 3: 2, 4: 2}, leaders
    recs = make_records(topic, 800, seed=8, ts_base=now_ms() - 60_000, partitions=8)
    delivered = cf_produce(cluster.nodes[1].bootstrap, topic, recs)
    consumed = cf_consume_all(fourth.bootstrap, topic, list(range(8)), end_offsets_of(delivered))
    assert_verified(delivered, consumed, list(range(8)))
    quorum = cluster.quorum(fourth)
    assert sorted(v["id"] for v in quorum["voters"]) == [1, 2, 3], quorum
    fourth.restart()
    cluster.wait_registered({1, 2, 3, 4}, timeout=60)
    assert partition_leaders(fourth.bootstrap, topic) == leaders


def offline_partitions(node, topic: str) -> set[int]:
    admin = cf_admin(node.bootstrap)
    t = admin.list_topics(topic, timeout=10).topics[topic]
    return {p for p, pm in t.partitions.items() if pm.leader < 0}


def test_a_paused_leader_is_replaced_and_steps_down_when_it_resumes(broker_factory):
    """SIGSTOP the Raft leader (a stalled process, not a dead one): the others elect a new
    controller and fence the paused broker; CreateTopics works meanwhile. On SIGCONT the old
    leader steps down (one leader, agreed by all), catches up, is unfenced, and every record
    acknowledged before the pause is still there."""
    import signal
    cluster = Cluster(broker_factory, 3, broker_session_timeout_ms=3000,
                      broker_heartbeat_interval_ms=500)
    topic = unique("paused")
    cf_create_topic(cluster.nodes[1].bootstrap, topic, 6)
    recs = make_records(topic, 600, seed=31, ts_base=now_ms() - 60_000, partitions=6)
    delivered = cf_produce(cluster.bootstrap, topic, recs)
    old = cluster.leader()
    paused = cluster.nodes[old]
    survivors = {i: n for i, n in cluster.nodes.items() if i != old}
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        survivor = next(iter(survivors.values()))
        elected = cluster.leader(timeout=30, among=survivors)
        print(f"FIGURE paused leader: node {old} SIGSTOPped, new leader {elected} after "
              f"{time.monotonic() - t0:.2f} s")
        during = unique("during-pause")
        cf_create_topic(survivor.bootstrap, during, 3)
        deadline = time.monotonic() + 30
        while old in cluster.brokers_seen_by(survivor):
            assert time.monotonic() < deadline, "the paused broker was not fenced"
            time.sleep(0.2)
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    new = cluster.leader(timeout=30)
    assert new != old
    cluster.wait_registered(set(cluster.nodes), timeout=30)
    wait_visible(paused, during, 3)
    after = unique("after-pause")
    cf_create_topic(paused.bootstrap, after, 3)  # forwarded by the old leader to the new one
    for node in cluster.nodes.values():
        wait_visible(node, after, 3)
    listed = [sorted(t["name"] for t in admin_json(n.bootstrap, "topics", "list")["topics"])
              for n in cluster.nodes.values()]
    assert all(names == listed[0] for names in listed), listed
    consumed = cf_consume_all(cluster.nodes[new].bootstrap, topic, list(range(6)),
                              end_offsets_of(delivered))
    assert_verified(delivered, consumed, list(range(6)))


def test_sigterm_is_a_controlled_shutdown(broker_factory):
    """A broker stopped with SIGTERM has the controller fence it before it closes: the other
    brokers report its partitions offline at once, not after the 9 s session timeout; started
    again it leads them again."""
    cluster = Cluster(broker_factory, 3)
    topic = unique("controlled")
    cf_create_topic(cluster.nodes[1].bootstrap, topic, 6)
    leaders = partition_leaders(cluster.nodes[1].bootstrap, topic)
    on_3 = {p for p, leader in leaders.items() if leader == 3}
    t0 = time.monotonic()
    assert cluster.nodes[3].stop() == 0
    stopped = time.monotonic() - t0
    while offline_partitions(cluster.nodes[1], topic) != on_3:
        assert time.monotonic() - t0 < 5, offline_partitions(cluster.nodes[1], topic)
        time.sleep(0.05)
    offline_after = time.monotonic() - t0
    print(f"FIGURE controlled shutdown: stopped in {stopped:.2f} s, its partitions offline "
          f"on the others {offline_after:.2f} s after SIGTERM (session timeout 9 s)")
    assert "controlled shutdown: this broker is fenced" in cluster.nodes[3].log_text()
    cluster.nodes[3].start()
    cluster.wait_registered({1, 2, 3})
    deadline = time.monotonic() + 10
    while partition_leaders(cluster.nodes[2].bootstrap, topic) != leaders:
        assert time.monotonic() < deadline
        time.sleep(0.1)


class BackgroundProducer:
    """Produces records with unique values round-robin over `partitions` from a thread (an
    idempotent librdkafka producer, acks=all) until stopped; keeps what was acknowledged where
    and what failed, for the history check."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: float = 200):
        import threading
        self.topic, self.partitions, self.interval = topic, partitions, 1 / rate
        self.sent: dict[bytes, int] = {}  # value -> partition it was sent to
        self.acked: dict[bytes, tuple[int, int]] = {}  # value -> (partition, offset)
        self.failed: dict[bytes, str] = {}
        self.ack_times: list[float] = []
        self._producer = cf_producer(bootstrap, enable_idempotence=True, linger_ms=5,
                                     message_timeout_ms=120_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _delivered(self, err, msg) -> None:
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
            self.ack_times.append(time.monotonic())
        else:
            self.failed[msg.value()] = str(err)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            value = f"{self.topic}/{i}".encode()
            partition = i % self.partitions
            try:
                self._producer.produce(self.topic, value=value, key=b"k%d" % i,
                                       partition=partition, on_delivery=self._delivered)
                self.sent[value] = partition
                i += 1
            except BufferError:
                pass
            self._producer.poll(self.interval)

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for t in list(self.ack_times) if start <= t < end)

    def stop(self, timeout: float = 150) -> None:
        self._stop.set()
        self._thread.join(10)
        left = self._producer.flush(timeout)
        assert left == 0, f"{left} records still queued {timeout}s after the producer stopped"


def history_problems(producer: BackgroundProducer, consumed: dict[int, list]) -> list[str]:
    """Every acknowledged record read back exactly once, at the partition and offset it was
    acknowledged at; nothing read back twice; nothing read back that was never sent (a record
    whose delivery failed may or may not be there: its outcome is unknown)."""
    problems, where = [], {}
    for p, records in consumed.items():
        for c in records:
            if c.value in where:
                problems.append(f"{c.value!r} read twice: at {where[c.value]} and {(p, c.offset)}")
            where[c.value] = (p, c.offset)
            if producer.sent.get(c.value) != p:
                problems.append(f"{c.value!r} at {(p, c.offset)} was never sent to partition {p}")
    for value, at in producer.acked.items():
        if value not in where:
            problems.append(f"acknowledged {value!r} at {at} is lost")
        elif where[value] != at:
            problems.append(f"acknowledged {value!r} at {at} was read at {where[value]}")
    return problems


def test_a_leader_cut_off_from_the_quorum_is_replaced_and_loses_nothing(broker_factory):
    """Cut every link between the Raft leader and the two other nodes (its clients still reach
    it) while a producer writes to all partitions. The majority elects a new controller, fences
    the cut-off broker and takes admin requests; the cut-off node, which still believes it
    leads, cannot commit anything: a CreateTopics sent to it fails with REQUEST_TIMED_OUT and
    never takes effect. After the heal it steps down, catches up and is unfenced, all nodes
    agree on one leader and one set of topics, and a history check finds every acknowledged
    record exactly once."""
    from confluent_kafka import KafkaError, KafkaException
    cluster = Cluster(broker_factory, 3, links=True, broker_session_timeout_ms=3000,
                      broker_heartbeat_interval_ms=500)
    try:
        topic = unique("cut")
        cf_create_topic(cluster.nodes[1].bootstrap, topic, 6)
        for node in cluster.nodes.values():
            wait_visible(node, topic, 6)
        producer = BackgroundProducer(cluster.bootstrap, topic, 6)
        time.sleep(1.5)
        old = cluster.leader()
        cut_off = cluster.nodes[old]
        majority = {i: n for i, n in cluster.nodes.items() if i != old}
        survivor = next(iter(majority.values()))
        cluster.isolate(old)
        t0 = time.monotonic()
        try:
            cluster.leader(timeout=30, among=majority)
            elected = time.monotonic() - t0
            while old in cluster.brokers_seen_by(survivor):
                assert time.monotonic() - t0 < 30, "the cut-off broker was not fenced"
                time.sleep(0.2)
            fenced = time.monotonic() - t0
            during = unique("during-cut")
            cf_create_topic(survivor.bootstrap, during, 3)
            doomed = unique("doomed")
            asked = time.monotonic()
            with pytest.raises(KafkaException) as refused:
                cf_create_topic(cut_off.bootstrap, doomed, 3)
            answered = time.monotonic() - asked
            assert refused.value.args[0].code() == KafkaError.REQUEST_TIMED_OUT, refused.value
            cut_for = time.monotonic() - t0
        finally:
            cluster.heal()
        healed = time.monotonic()
        new = cluster.leader(timeout=30)
        assert new != old
        cluster.wait_registered(set(cluster.nodes), timeout=30)
        rejoined = time.monotonic() - healed
        for node in cluster.nodes.values():
            wait_visible(node, during, 3)
        deadline = time.monotonic() + 30
        while True:
            quorum = cluster.quorum(cut_off)
            if quorum["leader_id"] == new and all(v.get("lag") == 0 for v in quorum["voters"]):
                break
            assert time.monotonic() < deadline, quorum
            time.sleep(0.2)
        listed = {i: sorted(t["name"] for t in admin_json(n.bootstrap, "topics", "list")["topics"])
                  for i, n in cluster.nodes.items()}
        assert all(names == listed[old] for names in listed.values()), listed
        assert during in listed[old] and doomed not in listed[old], listed[old]
        time.sleep(1)
        producer.stop()
        during_cut = producer.acked_between(t0, healed)
        ends: dict[int, int] = {}
        for p, off in producer.acked.values():
            ends[p] = max(ends.get(p, 0), off + 1)
        consumed = cf_consume_all(survivor.bootstrap, topic, list(range(6)), ends, timeout=120)
        problems = history_problems(producer, consumed)
        print(f"FIGURE cut links: node {old} cut off from the quorum; node {new} leads after "
              f"{elected:.2f} s, the cut-off broker fenced after {fenced:.2f} s; CreateTopics "
              f"on the cut-off node answered REQUEST_TIMED_OUT after {answered:.1f} s; cut for "
              f"{cut_for:.1f} s; all registered {rejoined:.2f} s after the heal; "
              f"{len(producer.acked)} acknowledged ({during_cut} during the cut), "
              f"{len(producer.failed)} failed, {sum(len(v) for v in consumed.values())} read back")
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:30])
        assert during_cut > 0, "nothing was acknowledged while the links were cut"
    finally:
        cluster.close_links()


def test_a_fresh_cluster_restores_its_topics_from_the_bucket(broker_factory, tmp_path):
    """Three nodes tier to one bucket (a local directory here); every node is SIGKILLed and its
    data dir deleted. A fresh three-node cluster started against the bucket adopts the topic
    with its id, partition count and configs, spreads its partitions over its brokers, serves
    every acknowledged record byte for byte from whichever broker leads it (out of the remote
    tier), and appends new records after them, not over their offsets."""
    import kafka_wire as wire
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    settings = dict(remote_storage_url=f"file://{bucket}", remote_log_manager_task_interval_ms=500,
                    remote_log_max_upload_interval_ms=1000)
    first = Cluster(broker_factory, 3, **settings)
    topic = unique("restored")
    cf_create_topic(first.nodes[1].bootstrap, topic, 6,
                    {"retention.ms": "-1", "retention.bytes": "-1",
                     "max.message.bytes": "3000000"})
    recs = make_records(topic, 600, seed=41, ts_base=now_ms() - 60_000, partitions=6)
    delivered = cf_produce(first.bootstrap, topic, recs)
    ends = end_offsets_of(delivered)
    leaders = partition_leaders(first.nodes[1].bootstrap, topic)
    def topic_row(node) -> dict:
        rows = admin_json(node.bootstrap, "topics", "list")["topics"]
        return next(t for t in rows if t["name"] == topic)
    old_id = topic_row(first.nodes[1])["id"]
    assert old_id, "the topic has no id"
    deadline = time.monotonic() + 60
    while True:  # everything acknowledged is in the bucket (the RPO rolls the active segments)
        tiered = {}
        for p, leader in leaders.items():
            node = first.nodes[leader]
            got = wire.list_offsets(node.host, node.port, topic, {p: -5})  # latest tiered
            tiered[p] = got[p].offset
        if all(tiered[p] == ends[p] - 1 for p in ends):
            break
        assert time.monotonic() < deadline, f"not all uploaded: {tiered} vs ends {ends}"
        time.sleep(0.2)
    for node in first.nodes.values():
        node.kill()
    for node in first.nodes.values():
        for entry in node.data_dir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    t0 = time.monotonic()
    second = Cluster(broker_factory, 3, **settings)
    cf_wait_topic(second.nodes[2].bootstrap, topic, 6)
    restored_in = time.monotonic() - t0
    restored = partition_leaders(second.nodes[2].bootstrap, topic)
    assert collections.Counter(restored.values()) == {1: 2, 2: 2, 3: 2}, restored
    assert topic_config(second.nodes[3].bootstrap, topic)["max.message.bytes"] == "3000000"
    assert topic_row(second.nodes[1])["id"] == old_id, "the topic came back with another id"
    consumed = cf_consume_all(second.bootstrap, topic, list(range(6)), ends)
    assert_verified(delivered, consumed, list(range(6)))
    more = make_records(topic + "-after", 120, seed=42, ts_base=now_ms(), partitions=6)
    appended = cf_produce(second.bootstrap, topic, more)
    for p in range(6):
        first_new = min(d.offset for d in appended if d.partition == p)
        assert first_new == ends[p], f"partition {p}: appended at {first_new}, restored end {ends[p]}"
    consumed = cf_consume_all(second.bootstrap, topic, list(range(6)), end_offsets_of(appended))
    assert_verified(delivered + appended, consumed, list(range(6)))
    print(f"FIGURE cluster restore: a fresh 3-node cluster served the bucket's topic "
          f"{restored_in:.2f} s after its first node started; leaders {restored}")
