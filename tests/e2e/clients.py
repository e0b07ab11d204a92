"""Record generation, real-client produce/consume helpers, and byte-for-byte verification.

Three client implementations are driven from here: librdkafka (confluent-kafka), kafka-python,
and the Java client (through tests/java/ShaleClientCheck, a separate process). Whatever produced
them, delivered records are described as `Delivered(partition, offset, Rec)`, and a manifest file
carries them between processes in a format the Java tool reads and writes too.
"""

from __future__ import annotations

import logging
import random
import subprocess
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
_RDKAFKA_LOG = logging.getLogger("librdkafka")


@dataclass(frozen=True)
class Rec:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    partition: int | None  # None: the client's partitioner chooses
    timestamp: int  # CreateTime, ms


@dataclass(frozen=True)
class Delivered:
    partition: int
    offset: int
    rec: Rec


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int
    timestamp_type: str  # "create" or "append"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def make_records(tag: str, count: int, seed: int, ts_base: int, partitions: int = 3) -> list[Rec]:
    """Deterministic records covering the shapes that break codecs and decoders.

    Null keys (every 10th), null values (17th), empty values (13th), sizes from 1 byte to 150 KB,
    compressible text and incompressible random bytes, no headers (5th) or several: empty, null,
    duplicate names, binary, non-ASCII names. Every 4th record names its partition; the others
    are placed by the client's partitioner. Timestamps rise by 10 ms per record.
    """
    rng = random.Random(seed)
    recs = []
    for i in range(count):
        key = None if i % 10 == 0 else f"{tag}-key-{i % 37}".encode()
        if i % 17 == 0:
            value = None
        elif i % 13 == 0:
            value = b""
        else:
            size = 150_000 if i % 97 == 0 else rng.choice([1, 7, 100, 1000, 4096, 20000])
            if i % 3 == 0:
                value = rng.randbytes(size)
            else:
                value = (f"{tag}:{i}:" * (size // 4 + 1)).encode()[:size]
        headers: list[tuple[str, bytes | None]] = []
        if i % 5 != 0:
            headers.append(("trace-id", f"{tag}-{i}".encode()))
            if i % 2 == 0:
                headers.append(("empty", b""))
            if i % 7 == 0:
                headers.append(("null", None))
            if i % 11 == 0:
                headers += [("dup", b"first"), ("dup", b"second")]
            if i % 23 == 0:
                headers.append(("bin", rng.randbytes(64)))
            if i % 29 == 0:
                headers.append(("ключ-ü", "värde".encode()))
        partition = (i % partitions) if i % 4 == 0 else None
        recs.append(Rec(key, value, tuple(headers), partition, ts_base + i * 10))
    return recs


# --- Manifest: delivered records as text, shared with the Java tool ------------------------------
# One record a line, tab-separated: partition, offset, timestamp, key, value, headers.
# key/value: "-" for null, else lowercase hex ("" for empty). headers: "" for none, else
# comma-separated name-hex ":" value-hex, value "-" for null.

def _hex(b: bytes | None) -> str:
    return "-" if b is None else b.hex()


def _unhex(s: str) -> bytes | None:
    return None if s == "-" else bytes.fromhex(s)


def write_manifest(path: Path, delivered: list[Delivered]) -> None:
    with open(path, "w") as f:
        for d in delivered:
            hdrs = ",".join(f"{n.encode().hex()}:{_hex(v)}" for n, v in d.rec.headers)
            f.write(f"{d.partition}\t{d.offset}\t{d.rec.timestamp}\t{_hex(d.rec.key)}\t"
                    f"{_hex(d.rec.value)}\t{hdrs}\n")


def read_manifest(path: Path) -> list[Delivered]:
    out = []
    for line in Path(path).read_text().splitlines():
        p, off, ts, key, value, hdrs = line.split("\t")
        headers = []
        if hdrs:
            for h in hdrs.split(","):
                n, v = h.split(":")
                headers.append((bytes.fromhex(n).decode(), _unhex(v)))
        rec = Rec(_unhex(key), _unhex(value), tuple(headers), int(p), int(ts))
        out.append(Delivered(int(p), int(off), rec))
    return out


# --- Verification --------------------------------------------------------------------------------

def _preview(b: bytes | None) -> str:
    if b is None:
        return "null"
    return f"{len(b)}B:{b[:24].hex()}{'…' if len(b) > 24 else ''}"


def verify(delivered: list[Delivered], consumed: dict[int, list[Consumed]],
           partitions: list[int], log_start: dict[int, int] | None = None) -> list[str]:
    """Problems found comparing what was acknowledged with what was read back.

    Checks, per partition: offsets are dense and ordered from the log start (0 unless given);
    every acknowledged record is there at its acknowledged offset with the same key, value,
    headers (order included) and CreateTime timestamp; nothing unexpected is there.
    """
    problems: list[str] = []
    expected = {(d.partition, d.offset): d.rec for d in delivered}
    if len(expected) != len(delivered):
        problems.append(f"the client acknowledged {len(delivered) - len(expected)} records at an "
                        f"offset already acknowledged for another record")
    seen = set()
    for p in partitions:
        start = (log_start or {}).get(p, 0)
        recs = consumed.get(p, [])
        for i, c in enumerate(recs):
            if c.offset != start + i:
                problems.append(f"partition {p}: offsets not dense: position {i} has offset "
                                f"{c.offset}, expected {start + i} (previous "
                                f"{recs[i - 1].offset if i else 'none'})")
                break
        for c in recs:
            if c.partition != p:
                problems.append(f"record at offset {c.offset} came back from partition "
                                f"{c.partition} while reading partition {p}")
            seen.add((p, c.offset))
            rec = expected.get((p, c.offset))
            if rec is None:
                problems.append(f"partition {p} offset {c.offset}: record not acknowledged to "
                                f"the producer (key {_preview(c.key)})")
                continue
            where = f"partition {p} offset {c.offset}"
            if c.key != rec.key:
                problems.append(f"{where}: key {_preview(c.key)} != sent {_preview(rec.key)}")
            if c.value != rec.value:
                problems.append(f"{where}: value {_preview(c.value)} != sent {_preview(rec.value)}")
            if tuple(c.headers) != tuple(rec.headers):
                problems.append(f"{where}: headers {c.headers!r:.300} != sent {rec.headers!r:.300}")
            if c.timestamp != rec.timestamp or c.timestamp_type != "create":
                problems.append(f"{where}: timestamp {c.timestamp} ({c.timestamp_type}) != sent "
                                f"{rec.timestamp} (create)")
    missing = sorted(k for k in expected if k not in seen)
    if missing:
        problems.append(f"{len(missing)} acknowledged records not read back, first: {missing[:10]}")
    return problems


def assert_verified(delivered, consumed, partitions, log_start=None) -> None:
    problems = verify(delivered, consumed, partitions, log_start)
    total = sum(len(v) for v in consumed.values())
    assert not problems, (f"{len(problems)} problems ({len(delivered)} acknowledged, {total} "
                          f"read back):\n" + "\n".join(problems[:30]))


def end_offsets_of(delivered: list[Delivered]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for d in delivered:
        ends[d.partition] = max(ends.get(d.partition, 0), d.offset + 1)
    return ends


def expected_offset_for_time(delivered: list[Delivered], partition: int, target: int) -> int | None:
    """Kafka's answer: the earliest offset whose timestamp is >= target, or None."""
    hits = [d.offset for d in delivered if d.partition == partition and d.rec.timestamp >= target]
    return min(hits) if hits else None


# --- librdkafka (confluent-kafka) ----------------------------------------------------------------

def cf_admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "logger": _RDKAFKA_LOG})


def cf_create_topic(bootstrap: str, topic: str, partitions: int, config: dict | None = None,
                    replication_factor: int = 1) -> None:
    from confluent_kafka.admin import NewTopic
    admin = cf_admin(bootstrap)  # must outlive the futures
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor,
                  config=config or {})],
        operation_timeout=30, request_timeout=30)
    fs[topic].result(30)
    cf_wait_topic(bootstrap, topic, partitions)


def cf_wait_topic(bootstrap: str, topic: str, partitions: int, timeout: float = 30) -> None:
    """Waits until metadata shows the topic with that many partitions, each with a leader."""
    admin = cf_admin(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        last = t
        if (t is not None and t.error is None and len(t.partitions) == partitions
                and all(pm.leader >= 0 and pm.error is None for pm in t.partitions.values())):
            return
        time.sleep(0.2)
    raise AssertionError(f"topic {topic} not visible with {partitions} partitions with a leader "
                         f"within {timeout}s: {last and (last.error, len(last.partitions))}")


def _cf_conf(conf: dict) -> dict:
    """Python-style keys to librdkafka's (linger_ms -> linger.ms); callbacks keep their names."""
    return {k if k.endswith("_cb") or k == "logger" else k.replace("_", "."): v
            for k, v in conf.items()}


def cf_producer(bootstrap: str, **conf):
    from confluent_kafka import Producer
    # librdkafka's log lines go to Python logging, so pytest shows them with a failed test only.
    base = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "logger": _RDKAFKA_LOG}
    base.update(_cf_conf(conf))
    return Producer(base)


def cf_produce(bootstrap: str, topic: str, recs: list[Rec], codec: str = "none",
               timeout: float = 120, **conf) -> list[Delivered]:
    """Produces recs in order with librdkafka; returns them as acknowledged, in send order."""
    p = cf_producer(bootstrap, compression_type=codec, **conf)
    results: list = [None] * len(recs)

    def cb_for(i):
        def cb(err, msg):
            results[i] = err if err is not None else (msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(recs):
        kw = {"value": r.value, "key": r.key, "timestamp": r.timestamp, "on_delivery": cb_for(i)}
        if r.headers:
            kw["headers"] = list(r.headers)
        if r.partition is not None:
            kw["partition"] = r.partition
        while True:
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0, f"{left} records not delivered within {timeout}s"
    errors = [(i, e) for i, e in enumerate(results) if not isinstance(e, tuple)]
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"
    return [Delivered(part, off, r) for (part, off), r in zip(results, recs)]


def cf_consumer(bootstrap: str, **conf):
    from confluent_kafka import Consumer
    # A group.id is required by the client; offsets are never committed and subscribe() is never
    # called, so no group coordinator is used (Shale has none yet).
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": unique("e2e-assign-only"),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "check.crcs": True,
        "logger": _RDKAFKA_LOG,
    }
    base.update(_cf_conf(conf))
    return Consumer(base)


def _cf_consumed(msg) -> Consumed:
    from confluent_kafka import TIMESTAMP_CREATE_TIME
    ts_type, ts = msg.timestamp()
    headers = tuple((k, v) for k, v in (msg.headers() or []))
    return Consumed(msg.partition(), msg.offset(), msg.key(), msg.value(), headers, ts,
                    "create" if ts_type == TIMESTAMP_CREATE_TIME else "append")


def cf_consume_all(bootstrap: str, topic: str, partitions: list[int],
                   ends: dict[int, int] | None = None, timeout: float = 60,
                   **conf) -> dict[int, list[Consumed]]:
    """Reads each partition from the earliest offset with assign(), up to its end.

    The end is the larger of the high watermark when reading starts and `ends` (what the caller
    knows was acknowledged), so a broker that under-reports its high watermark still shows up as
    missing records rather than a short read.
    """
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
    c = cf_consumer(bootstrap, **conf)
    try:
        target = {}
        for p in partitions:
            _lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            target[p] = max(hi, (ends or {}).get(p, 0))
        out: dict[int, list[Consumed]] = {p: [] for p in partitions}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        nxt = {p: -1 for p in partitions}
        deadline = time.monotonic() + timeout
        while any(nxt[p] < target[p] for p in partitions if target[p] > 0):
            if time.monotonic() > deadline:
                break
            for msg in c.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consumer error on partition {msg.partition()}: "
                                         f"{msg.error()}")
                out[msg.partition()].append(_cf_consumed(msg))
                nxt[msg.partition()] = msg.offset() + 1
        return out
    finally:
        c.close()


# --- kafka-python --------------------------------------------------------------------------------

def kp_admin(bootstrap: str):
    from kafka import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id=unique("e2e-kp-admin"))


def kp_produce(bootstrap: str, topic: str, recs: list[Rec], codec: str = "none",
               **conf) -> list[Delivered]:
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                      compression_type=None if codec == "none" else codec,
                      max_request_size=4 << 20, **conf)
    try:
        futures = []
        # kafka-python refuses a record whose key and value are both null (Kafka allows it; the
        # other clients test it): send an empty key instead.
        # Nor does it take null header values: send them empty.
        recs = [replace(r, key=b"") if r.key is None and r.value is None else r for r in recs]
        recs = [replace(r, headers=tuple((k, b"" if v is None else v) for k, v in r.headers))
                for r in recs]
        for r in recs:
            futures.append(p.send(topic, value=r.value, key=r.key, headers=list(r.headers),
                                  partition=r.partition, timestamp_ms=r.timestamp))
        p.flush(timeout=120)
        out = []
        for f, r in zip(futures, recs):
            md = f.get(timeout=60)
            out.append(Delivered(md.partition, md.offset, r))
        return out
    finally:
        p.close(timeout=10)


def kp_consumer(bootstrap: str, **conf):
    from kafka import KafkaConsumer
    base = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", check_crcs=True,
                fetch_max_bytes=16 << 20, max_partition_fetch_bytes=4 << 20)
    base.update(conf)
    return KafkaConsumer(**base)


def kp_consume_all(bootstrap: str, topic: str, partitions: list[int],
                   ends: dict[int, int] | None = None, timeout: float = 60) -> dict[int, list[Consumed]]:
    from kafka import TopicPartition
    c = kp_consumer(bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        hw = c.end_offsets(tps)
        target = {tp.partition: max(hw[tp], (ends or {}).get(tp.partition, 0)) for tp in tps}
        out: dict[int, list[Consumed]] = {p: [] for p in partitions}
        nxt = {p: -1 for p in partitions}
        deadline = time.monotonic() + timeout
        while any(nxt[p] < target[p] for p in partitions if target[p] > 0):
            if time.monotonic() > deadline:
                break
            for tp, records in c.poll(timeout_ms=500, max_records=1000).items():
                for r in records:
                    headers = tuple((k, v) for k, v in (r.headers or []))
                    out[tp.partition].append(Consumed(
                        tp.partition, r.offset, r.key, r.value, headers, r.timestamp,
                        "create" if r.timestamp_type == 0 else "append"))
                    nxt[tp.partition] = r.offset + 1
        return out
    finally:
        c.close()


# --- Java client (tests/java/ShaleClientCheck) ---------------------------------------------------

def run_java(java_cmd: list[str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Runs one ShaleClientCheck subcommand; fails the test with its output if it exits non-zero."""
    cmd = java_cmd + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"Java client check failed (exit {proc.returncode}): {' '.join(args)}\n"
        f"--- stdout ---\n{proc.stdout[-8000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")
    return proc


def assert_serves(bootstrap: str) -> None:
    """The broker still works for a real client: create a topic, produce, read it back."""
    topic = unique("health")
    cf_create_topic(bootstrap, topic, 1)
    recs = [Rec(b"k", f"healthy {i}".encode(), (("h", b"v"),), 0, now_ms()) for i in range(3)]
    delivered = cf_produce(bootstrap, topic, recs, "none", timeout=30)
    consumed = cf_consume_all(bootstrap, topic, [0], end_offsets_of(delivered), timeout=30)
    assert_verified(delivered, consumed, [0])
