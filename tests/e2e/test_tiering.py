"""Tiered storage end to end, over two object stores: the local-directory default
(<data_dir>/remote) and SeaweedFS speaking S3 on 127.0.0.1 (scripts/s3-test-server.sh).

Topics get 1 MiB segments and a small local retention, so tens of MiB end up almost entirely in
the remote tier and only the last few segments stay on local disk; the brokers run the tiering
task every 500 ms. Then real clients read everything from offset 0 (byte for byte, dense
offsets), before and after restarts, from a fresh broker restored from the bucket alone, and
around an object-store outage; offset lookups, multi-partition fetches, retention, DeleteRecords
and topic deletion are checked against what the store holds.

SeaweedFS: if SHALE_TEST_S3_ENDPOINT is set (scripts/test.sh starts a server), that server is
used; otherwise one is started for the session and stopped at its end. The outage test always
starts a server of its own, which it stops and starts again.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

import kafka_wire as wire
from clients import (
    Delivered, Rec, assert_verified, cf_admin, cf_consume_all, cf_consumer, cf_create_topic,
    cf_produce, cf_wait_topic, end_offsets_of, expected_offset_for_time, make_records, now_ms,
    run_java, unique, write_manifest,
)
from conftest import BrokerFactory, free_port
from tiering_support import (
    S3_VARS, LocalStore, S3Server, S3Store, Store, local_segments, wait_for,
)

SEGMENT_BYTES = 1 << 20
LOCAL_RETENTION_BYTES = 2 << 20
TASK_INTERVAL_MS = 500
PARTITIONS = [0, 1, 2]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
# Records per codec round of the main history: ~5.7 MB of keys/values/headers a round, about
# half of it incompressible, so the 5 rounds put ~30 MiB on disk across the 3 partitions.
ROUND_RECORDS = 2800

TIERED_TOPIC = {
    "segment.bytes": str(SEGMENT_BYTES),
    "local.retention.bytes": str(LOCAL_RETENTION_BYTES),
    "retention.bytes": "-1",
    "retention.ms": "-1",
}

LATEST, EARLIEST, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -4, -5


# --- Backends ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_env(tmp_path_factory):
    """The S3 test server's variables: the one named by SHALE_TEST_S3_ENDPOINT, or one started
    for this session (and stopped at its end)."""
    if os.environ.get("SHALE_TEST_S3_ENDPOINT"):
        missing = [k for k in S3_VARS if not os.environ.get(k)]
        assert not missing, f"SHALE_TEST_S3_ENDPOINT is set but not {missing}"
        yield {k: os.environ[k] for k in S3_VARS}
        return
    server = S3Server(tmp_path_factory.mktemp("s3-test-server"))
    try:
        env = server.start()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"cannot start the S3 test server: {e}", pytrace=False)
    yield env
    server.stop()


class Backend:
    def __init__(self, name: str, request):
        self.name = name
        self.request = request

    def new_store(self) -> Store:
        if self.name == "local":
            return LocalStore()
        return S3Store(self.request.getfixturevalue("s3_env"))


@pytest.fixture(scope="module", params=["local", "s3"])
def backend(request) -> Backend:
    return Backend(request.param, request)


def start_tiered(factory, store: Store, start: bool = True, **settings):
    """A broker tiering to store every 500 ms."""
    merged = {"remote_log_manager_task_interval_ms": TASK_INTERVAL_MS, **store.settings(),
              **settings}
    b = factory(env=store.env(), start=start, **merged)
    store.bind(b)
    return b


# --- Helpers -------------------------------------------------------------------------------------

def produce_rounds(bootstrap: str, topic: str, rounds: int, per_round: int, tag: str,
                   ts_base: int | None = None) -> list[Delivered]:
    """rounds x per_round records from clients.make_records (keys, headers, 1 B..150 KB values,
    half of them incompressible), each round in the next codec; timestamps keep rising."""
    ts = (now_ms() - 3_600_000) if ts_base is None else ts_base
    delivered: list[Delivered] = []
    for i in range(rounds):
        codec = CODECS[i % len(CODECS)]
        recs = make_records(f"{tag}-{i}-{codec}", per_round, seed=zlib.crc32(f"{tag}-{i}".encode()),
                            ts_base=ts, partitions=len(PARTITIONS))
        ts += per_round * 10
        delivered += cf_produce(bootstrap, topic, recs, codec, timeout=180)
    return delivered


def list_offsets(broker, topic: str, partitions, spec: int) -> dict[int, int]:
    got = wire.list_offsets(broker.host, broker.port, topic, {p: spec for p in partitions})
    bad = {p: r.error_code for p, r in got.items() if r.error_code}
    assert not bad, f"ListOffsets({spec}) errors by partition: {bad}"
    return {p: r.offset for p, r in got.items()}


@dataclass
class TierState:
    local: dict[int, list[tuple[int, int]]]  # partition -> local (base offset, bytes)
    tiered: dict[int, int]  # partition -> latest tiered offset (ListOffsets -5)

    def local_bytes(self, p: int) -> int:
        return sum(s for _, s in self.local[p])

    def describe(self) -> str:
        return "; ".join(f"p{p}: {len(segs)} local segments ({self.local_bytes(p)} B) from "
                         f"{segs[0][0] if segs else '-'}, active {segs[-1][0] if segs else '-'}, "
                         f"latest tiered {self.tiered.get(p)}"
                         for p, segs in sorted(self.local.items()))


def tier_state(broker, topic: str, partitions) -> TierState:
    local = {p: local_segments(broker.data_dir, topic, p) for p in partitions}
    tiered = list_offsets(broker, topic, partitions, LATEST_TIERED)
    return TierState(local, tiered)


def local_trimmed(state: TierState, p: int, local_retention: int, segment_bytes: int) -> bool:
    """Every sealed segment is uploaded (the latest tiered offset is right below the active
    segment) and local retention has trimmed local disk to local.retention.bytes plus at most
    one segment (Kafka's rule: the oldest segment goes while the rest still exceed the limit)."""
    segs = state.local[p]
    return (bool(segs) and state.tiered[p] == segs[-1][0] - 1
            and state.local_bytes(p) <= local_retention + segment_bytes)


def wait_tiered(broker, topic: str, partitions, local_retention=LOCAL_RETENTION_BYTES,
                segment_bytes=SEGMENT_BYTES, timeout: float = 120) -> TierState:
    """Waits until every partition's sealed segments are uploaded and local disk is trimmed."""
    last: list[TierState] = []

    def check():
        s = tier_state(broker, topic, partitions)
        last[:] = [s]
        return s if all(local_trimmed(s, p, local_retention, segment_bytes)
                        for p in partitions) else None

    return wait_for(check, timeout, lambda: (
        f"tiering of {topic} to settle (all sealed segments uploaded, local disk <= "
        f"{local_retention} + {segment_bytes} B): {last[0].describe() if last else '?'}\n"
        f"{broker.log_tail(40)}"))


def java_verify(java_cmd, bootstrap: str, topic: str, delivered: list[Delivered], tmp: Path,
                name: str) -> None:
    manifest = tmp / f"{name}.manifest"
    write_manifest(manifest, delivered)
    proc = run_java(java_cmd, "consume-verify", bootstrap, topic, manifest, timeout=300)
    assert "OK" in proc.stdout, proc.stdout


def read_all_verified(broker, topic: str, delivered: list[Delivered], partitions,
                      log_start: dict[int, int] | None = None, timeout: float = 180) -> None:
    """librdkafka reads every partition from the earliest offset; must match delivered."""
    consumed = cf_consume_all(broker.bootstrap, topic, list(partitions), end_offsets_of(delivered),
                              timeout=timeout)
    if log_start:
        delivered = [d for d in delivered if d.offset >= log_start.get(d.partition, 0)]
    assert_verified(delivered, consumed, list(partitions), log_start)


def error_lines_since(broker, run_offset: int, pattern: str) -> list[str]:
    text = broker.log_text()[run_offset:]
    return [line for line in text.splitlines() if " ERROR " in line and re.search(pattern, line)]


# --- The main history: ~30 MiB tiered, read back in every way ----------------------------------

@dataclass
class History:
    broker: object
    store: Store
    topic: str
    delivered: list[Delivered]
    settled: TierState
    tmp: Path


@pytest.fixture(scope="module")
def history(backend, tmp_path_factory, request):
    """One broker per backend with a 3-partition topic of ~30 MiB (5 codecs), tiered until
    only the last few segments of each partition are local. Shared by the read-only tests and
    the restart tests (which run last)."""
    tmp = tmp_path_factory.mktemp(f"history-{backend.name}")
    factory = BrokerFactory(tmp)
    failed_before = request.session.testsfailed
    store = backend.new_store()
    try:
        broker = start_tiered(factory, store)
        topic = unique("tiered")
        cf_create_topic(broker.bootstrap, topic, len(PARTITIONS), TIERED_TOPIC)
        t0 = time.monotonic()
        delivered = produce_rounds(broker.bootstrap, topic, len(CODECS), ROUND_RECORDS, "hist")
        produced_s = time.monotonic() - t0
        settled = wait_tiered(broker, topic, PARTITIONS)
        h = History(broker, store, topic, delivered, settled, tmp)
        objects = store.objects()
        remote_bytes = sum(sum(s for _, _, s in objects.segment_logs(topic, p)) for p in PARTITIONS)
        print(f"[{backend.name}] {len(delivered)} records produced in {produced_s:.1f}s; "
              f"{remote_bytes / 2**20:.1f} MiB in remote segments; settled after "
              f"{time.monotonic() - t0:.1f}s: {settled.describe()}")
    except BaseException:
        factory.teardown(test_failed=True)
        raise
    yield h
    problems = factory.teardown(test_failed=request.session.testsfailed > failed_before)
    if problems:
        pytest.fail("broker shutdown check failed:\n" + "\n".join(problems), pytrace=False)


def test_history_is_mostly_remote(history):
    """Tens of MiB went to the object store; local disk keeps only the last few segments of each partition, every segment below them is in the store, and offset 0 is no longer on local disk."""
    h = history
    objects = h.store.objects()
    total_remote = 0
    for p in PARTITIONS:
        segs = h.settled.local[p]
        remote = objects.segment_logs(h.topic, p)
        total_remote += sum(s for _, _, s in remote)
        assert len(segs) <= 5, f"partition {p}: {len(segs)} local segments: {segs}"
        assert segs[0][0] > 0, f"partition {p}: offset 0 is still on local disk: {segs}"
        assert remote, f"partition {p}: no segments in {h.store.describe()}"
        assert remote[0][0] == 0, f"partition {p}: the first remote segment starts at {remote[0]}"
        # Each commit collected the manifest versions more than 3 behind it.
        manifests = sorted(int(k.rsplit("/", 1)[1]) for k in objects.sizes
                           if k.startswith(f"topics/{h.topic}-") and f"/{p}/manifest/" in k)
        assert len(manifests) <= 4 and manifests[-1] >= len(remote), (
            f"partition {p}: manifest versions {manifests} for {len(remote)} segments")
        # The remote segments and the local ones together cover the log without a gap.
        assert h.settled.tiered[p] + 1 >= segs[0][0], (
            f"partition {p}: gap between the remote end {h.settled.tiered[p]} and the local start "
            f"{segs[0][0]}")
    assert total_remote >= 20 << 20, f"only {total_remote} bytes of segments in the store"


def test_librdkafka_reads_history_from_remote(history):
    """librdkafka reads all ~30 MiB from offset 0, mostly from the remote tier: every record byte for byte (key, value, headers, timestamp) at dense offsets."""
    read_all_verified(history.broker, history.topic, history.delivered, PARTITIONS)


def test_java_reads_history_from_remote(history, java_cmd):
    """The Java client reads all ~30 MiB from offset 0, mostly from the remote tier: every record byte for byte at dense offsets."""
    java_verify(java_cmd, history.broker.bootstrap, history.topic, history.delivered,
                history.tmp, "history-java")


def test_offsets_for_times_in_remote_data(history):
    """offsets_for_times (librdkafka) and ListOffsets by timestamp (raw v9) on timestamps that lie in remote-only data return the first record at or after them, with its timestamp."""
    from confluent_kafka import TopicPartition

    h = history
    local_start = list_offsets(h.broker, h.topic, PARTITIONS, EARLIEST_LOCAL)
    targets: list[tuple[int, int]] = []  # (partition, timestamp)
    for p in PARTITIONS:
        remote_only = sorted((d for d in h.delivered
                              if d.partition == p and d.offset < local_start[p]),
                             key=lambda d: d.offset)
        assert len(remote_only) > 100, f"partition {p}: only {len(remote_only)} remote-only records"
        for frac in (0.1, 0.5, 0.9):
            d = remote_only[int(len(remote_only) * frac)]
            targets += [(p, d.rec.timestamp), (p, d.rec.timestamp - 1)]
        targets.append((p, remote_only[0].rec.timestamp - 60_000))  # before everything: offset 0
    c = cf_consumer(h.broker.bootstrap)
    problems = []
    try:
        for p, ts in targets:
            want = expected_offset_for_time(h.delivered, p, ts)
            assert want is not None and want < local_start[p], (p, ts, want)
            want_ts = next(d.rec.timestamp for d in h.delivered
                           if d.partition == p and d.offset == want)
            got = c.offsets_for_times([TopicPartition(h.topic, p, ts)], timeout=30)[0]
            if got.error is not None or got.offset != want:
                problems.append(f"librdkafka offsets_for_times(p{p}, {ts}): got {got.offset} "
                                f"({got.error}), expected {want}")
            raw = wire.list_offsets(h.broker.host, h.broker.port, h.topic, {p: ts})[p]
            if (raw.error_code, raw.offset, raw.timestamp) != (0, want, want_ts):
                problems.append(f"ListOffsets v9 (p{p}, {ts}): got error {raw.error_code} offset "
                                f"{raw.offset} timestamp {raw.timestamp}, expected {want} / {want_ts}")
    finally:
        c.close()
    assert not problems, "\n".join(problems)


def test_one_fetch_spans_remote_partitions(history):
    """A single Fetch asking for remote-only offsets of all three partitions returns records for every one of them (not one remote partition per fetch), starting at the requested offset, CRCs intact."""
    h = history
    local_start = list_offsets(h.broker, h.topic, PARTITIONS, EARLIEST_LOCAL)
    for label, offsets in [
        ("offset 0", {p: 0 for p in PARTITIONS}),
        ("mid-remote offsets", {p: local_start[p] // 2 for p in PARTITIONS}),
    ]:
        assert all(offsets[p] < local_start[p] for p in PARTITIONS), (offsets, local_start)
        with wire.Conn(h.broker.host, h.broker.port, timeout=60) as c:
            resp = c.roundtrip(wire.fetch_request_multi_v4(
                11, h.topic, offsets, max_wait_ms=1000, max_bytes=16 << 20,
                partition_max_bytes=1 << 20), timeout=60)
        results = {r.partition: r for r in wire.parse_fetch_response_v4_all(resp)}
        problems = []
        for p in PARTITIONS:
            r = results.get(p)
            if r is None:
                problems.append(f"partition {p}: missing from the response")
                continue
            if r.error_code != 0:
                problems.append(f"partition {p}: error {r.error_code}")
                continue
            batches = wire.batch_headers(r.records or b"")
            if not batches:
                problems.append(f"partition {p}: no records ({len(r.records or b'')} bytes) for "
                                f"offset {offsets[p]}")
                continue
            first = batches[0]
            if not first.base_offset <= offsets[p] <= first.last_offset:
                problems.append(f"partition {p}: first batch {first.base_offset}..{first.last_offset} "
                                f"does not hold the requested offset {offsets[p]}")
            for a, b in zip(batches, batches[1:]):
                if b.base_offset != a.last_offset + 1:
                    problems.append(f"partition {p}: batches not contiguous: {a.last_offset} then "
                                    f"{b.base_offset}")
                    break
            bad = [b.base_offset for b in batches if not b.crc_ok]
            if bad:
                problems.append(f"partition {p}: bad CRC in batches at {bad[:5]}")
        assert not problems, f"fetch at {label} {offsets}:\n" + "\n".join(problems)


def test_fetch_max_bytes_is_one_budget_across_remote_partitions(history):
    """A Fetch of remote-only offsets of three partitions, each allowed 1 MiB, with a response limit of 1.5 MiB returns at most 1.5 MiB of records in all (KIP-74: the response limit is shared, not granted to each remote partition again); the first partition gets data and every partition's data is whole batches from its fetch offset."""
    h = history
    max_bytes = 3 << 19  # 1.5 MiB
    offsets = {p: 0 for p in PARTITIONS}
    with wire.Conn(h.broker.host, h.broker.port, timeout=60) as c:
        resp = c.roundtrip(wire.fetch_request_multi_v4(
            12, h.topic, offsets, max_wait_ms=1000, max_bytes=max_bytes,
            partition_max_bytes=1 << 20), timeout=60)
    results = {r.partition: r for r in wire.parse_fetch_response_v4_all(resp)}
    sizes = {p: len(results[p].records or b"") for p in PARTITIONS}
    assert all(results[p].error_code == 0 for p in PARTITIONS), {
        p: results[p].error_code for p in PARTITIONS}
    assert sum(sizes.values()) <= max_bytes, f"{sum(sizes.values())} bytes > max_bytes {max_bytes}: {sizes}"
    assert sizes[PARTITIONS[0]] > 0, f"the first partition got nothing: {sizes}"
    for p in PARTITIONS:
        batches = wire.batch_headers(results[p].records or b"")
        if batches:
            assert batches[0].base_offset == 0, (p, batches[0])
            assert all(b.crc_ok for b in batches), p


def test_list_offsets_across_tiers(history):
    """ListOffsets: earliest (-2) is the remote log start (0), earliest-local (-4) is the first local segment, latest-tiered (-5) is past -1 and right below the active segment, latest (-1) is the log end."""
    h = history
    state = tier_state(h.broker, h.topic, PARTITIONS)
    earliest = list_offsets(h.broker, h.topic, PARTITIONS, EARLIEST)
    earliest_local = list_offsets(h.broker, h.topic, PARTITIONS, EARLIEST_LOCAL)
    latest = list_offsets(h.broker, h.topic, PARTITIONS, LATEST)
    ends = end_offsets_of(h.delivered)
    for p in PARTITIONS:
        segs = state.local[p]
        assert earliest[p] == 0, f"partition {p}: earliest {earliest[p]}, expected the remote start 0"
        assert earliest_local[p] == segs[0][0], (
            f"partition {p}: earliest-local {earliest_local[p]}, first local segment {segs[0][0]}")
        assert state.tiered[p] > -1, f"partition {p}: nothing tiered according to ListOffsets -5"
        assert state.tiered[p] == segs[-1][0] - 1, (
            f"partition {p}: latest tiered {state.tiered[p]}, active segment starts {segs[-1][0]}")
        assert earliest_local[p] <= state.tiered[p] + 1 < latest[p] + 1
        assert latest[p] == ends[p], f"partition {p}: latest {latest[p]}, expected {ends[p]}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_reads_history_again(history, java_cmd, sig):
    """After a restart (SIGTERM, then SIGKILL) the remote history is read again from offset 0 by librdkafka (and the Java client after SIGKILL); new records then tier on without a gap."""
    h = history
    h.broker.restart(sig)
    assert list_offsets(h.broker, h.topic, PARTITIONS, EARLIEST) == {p: 0 for p in PARTITIONS}
    read_all_verified(h.broker, h.topic, h.delivered, PARTITIONS)
    if sig == signal.SIGKILL:
        java_verify(java_cmd, h.broker.bootstrap, h.topic, h.delivered, h.tmp, "after-kill")
        before = tier_state(h.broker, h.topic, PARTITIONS)
        more = produce_rounds(h.broker.bootstrap, h.topic, 2, 600, "after-kill",
                              ts_base=max(d.rec.timestamp for d in h.delivered) + 1000)
        h.delivered += more
        after = wait_tiered(h.broker, h.topic, PARTITIONS)
        for p in PARTITIONS:
            assert after.tiered[p] > before.tiered[p], (
                f"partition {p}: nothing tiered after the restart: {after.describe()}")
        # The store's segments of each partition follow each other without a gap or overlap.
        objects = h.store.objects()
        for p in PARTITIONS:
            bases = [b for b, _, _ in objects.segment_logs(h.topic, p)]
            assert bases[0] == 0 and len(bases) == len(set(bases)), bases
        read_all_verified(h.broker, h.topic, h.delivered, PARTITIONS)


# --- Restore from the bucket alone ---------------------------------------------------------------

def test_restore_into_empty_data_dir(backend, broker_factory, java_cmd, tmp_path):
    """A new broker with an empty data dir, pointed at the same store, serves the topic: librdkafka and the Java client read the tiered history from offset 0 byte for byte, and new records continue right after it."""
    store = backend.new_store()
    a = start_tiered(broker_factory, store)
    topic = unique("restore")
    cf_create_topic(a.bootstrap, topic, len(PARTITIONS), TIERED_TOPIC)
    delivered = produce_rounds(a.bootstrap, topic, 3, 1500, "restore")
    settled = wait_tiered(a, topic, PARTITIONS)
    tiered_end = settled.tiered
    assert a.stop() == 0
    in_store = [d for d in delivered if d.offset <= tiered_end[d.partition]]
    remote = store.objects()
    for p in PARTITIONS:
        # The active segment and the last sealed ones stay local; the rest is only in the store.
        assert len(remote.segment_logs(topic, p)) >= 3, (
            f"partition {p}: too little in the store to test a restore: {settled.describe()}")

    b = start_tiered(broker_factory, store)
    cf_wait_topic(b.bootstrap, topic, len(PARTITIONS))
    assert list_offsets(b, topic, PARTITIONS, EARLIEST) == {p: 0 for p in PARTITIONS}
    latest = list_offsets(b, topic, PARTITIONS, LATEST)
    assert latest == {p: tiered_end[p] + 1 for p in PARTITIONS}, (
        f"restored log ends {latest}, expected right after the tiered ends {tiered_end}")
    read_all_verified(b, topic, in_store, PARTITIONS)
    java_verify(java_cmd, b.bootstrap, topic, in_store, tmp_path, "restored")

    # New records continue the restored log densely.
    recs = [Rec(f"k{i}".encode(), f"after restore {i}".encode(), (("h", b"v"),), i % 3, now_ms())
            for i in range(300)]
    more = cf_produce(b.bootstrap, topic, recs, "zstd")
    for p in PARTITIONS:
        offsets = sorted(d.offset for d in more if d.partition == p)
        assert offsets == list(range(tiered_end[p] + 1, tiered_end[p] + 1 + len(offsets))), (
            f"partition {p}: new records at {offsets[:3]}…, expected from {tiered_end[p] + 1}")
    read_all_verified(b, topic, in_store + more, PARTITIONS)


RPO_MS = 2000


def test_restore_after_sigkill_loses_nothing_older_than_the_rpo(backend, broker_factory, tmp_path):
    """Produce continuously (acks=all) to a tiered topic with large segments, SIGKILL the broker,
    delete its data dir and start a new one on the bucket: every record acknowledged more than
    remote_log_max_upload_interval_ms plus one task interval before the kill is restored byte for
    byte (the active segment was rolled and uploaded by the RPO rule, not by size), the restored
    log is a dense prefix of what was acknowledged, and the topic comes back with its configs,
    including one changed after creation."""
    import shutil
    import threading
    from confluent_kafka.admin import (
        AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType,
    )

    store = backend.new_store()
    a = start_tiered(broker_factory, store, remote_log_max_upload_interval_ms=RPO_MS)
    topic = unique("rpo")
    configs = {"segment.bytes": str(256 << 20), "retention.ms": "-1", "retention.bytes": "-1",
               "max.message.bytes": "2000000", "local.retention.ms": "3600000"}
    cf_create_topic(a.bootstrap, topic, len(PARTITIONS), configs)
    admin = cf_admin(a.bootstrap)
    changed = ConfigEntry("max.message.bytes", "3000000",
                          incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[changed])
    list(admin.incremental_alter_configs([res]).values())[0].result(30)
    configs["max.message.bytes"] = "3000000"

    acked: list[tuple[float, Delivered]] = []  # (monotonic time of the acknowledgement, record)
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            recs = [Rec(f"k{i + j}".encode(), f"rpo {i + j} ".encode() * (1 + (i + j) % 40),
                        (("n", str(i + j).encode()),), (i + j) % len(PARTITIONS), now_ms())
                    for j in range(30)]
            i += len(recs)
            try:
                got = cf_produce(a.bootstrap, topic, recs, timeout=10)
            except Exception:  # noqa: BLE001 - the kill cuts the last send short
                return
            at = time.monotonic()
            acked.extend((at, d) for d in got)
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(4 * RPO_MS / 1000)
    a.kill()
    killed_at = time.monotonic()
    stop.set()
    producer.join(30)
    assert a.log_text().count("segment copied to remote storage") >= len(PARTITIONS), (
        "no active segment was rolled and uploaded\n" + a.log_tail(40))
    # Everything local goes, but the embedded store, which lives in the data dir by default.
    for entry in a.data_dir.iterdir():
        if store.kind == "local" and entry == store.root:
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    b = start_tiered(broker_factory, store)
    cf_wait_topic(b.bootstrap, topic, len(PARTITIONS))
    latest = list_offsets(b, topic, PARTITIONS, LATEST)
    delivered = [d for _, d in acked]
    restored = [d for d in delivered if d.offset < latest[d.partition]]
    # Dense: the restored log of each partition is exactly the acknowledged records below its end.
    for p in PARTITIONS:
        offsets = sorted(d.offset for d in restored if d.partition == p)
        assert offsets == list(range(latest[p])), f"partition {p}: restored log has holes"
    read_all_verified(b, topic, restored, PARTITIONS)
    bound = (RPO_MS + TASK_INTERVAL_MS) / 1000
    lost = [(killed_at - at, d) for at, d in acked if d.offset >= latest[d.partition]]
    oldest_lost = max((age for age, _ in lost), default=0.0)
    print(f"{len(delivered)} acknowledged, {len(restored)} restored; the oldest record not "
          f"restored was acknowledged {oldest_lost:.2f} s before the kill (bound {bound:.2f} s)")
    assert len(restored) > 0
    too_old = [(round(age, 2), d.partition, d.offset) for age, d in lost if age > bound]
    assert not too_old, f"acknowledged more than {bound} s before the kill but not restored: {too_old[:5]}"

    res = ConfigResource(ResourceType.TOPIC, topic)
    admin_b = cf_admin(b.bootstrap)  # must outlive the future
    entries = admin_b.describe_configs([res], request_timeout=30)[res].result(30)
    got = {k: entries[k].value for k in configs}
    assert got == configs, f"restored topic configs {got}, expected {configs}"
    assert all(not entries[k].is_default for k in configs)


def test_small_rpo_segments_are_merged_in_the_store(backend, broker_factory):
    """A quiet tiered topic under a 1 s RPO uploads a small segment per partition every pass or
    two; the merge job (fanout 3 here) folds them together, deletes the replaced objects once
    their 1 s grace has passed, and logs the requests each merge made. The store then holds
    exactly uploads - merged + merges segments per partition (no orphan, nothing lost), fewer
    than the uploads, and every record reads back byte for byte from offset 0 out of the remote
    tier alone (local retention has deleted every uploaded local segment)."""
    store = backend.new_store()
    b = start_tiered(broker_factory, store, remote_log_max_upload_interval_ms=1000,
                     remote_log_segment_merge_grace_ms=1000, remote_log_segment_merge_fanout=3)
    topic = unique("merge")
    cf_create_topic(b.bootstrap, topic, len(PARTITIONS),
                    {"segment.bytes": str(1 << 20), "retention.ms": "-1", "retention.bytes": "-1",
                     "local.retention.ms": "1"})
    delivered: list[Delivered] = []
    for i in range(8):
        recs = [Rec(f"m{i}-{j}".encode(), f"merge {i} {j} ".encode() * (1 + j % 50),
                    (("round", str(i).encode()),), j % len(PARTITIONS), now_ms())
                for j in range(30)]
        delivered += cf_produce(b.bootstrap, topic, recs, timeout=30)
        time.sleep(1.5)
    ends = end_offsets_of(delivered)
    tp_re = {p: re.compile(rf"tp={re.escape(topic)}-{p}\b") for p in PARTITIONS}

    def accounting():
        """Per partition: (uploads, segments merged away, merges, replaced deleted)."""
        out = {}
        lines = b.log_text().splitlines()
        for p in PARTITIONS:
            mine = [line for line in lines if tp_re[p].search(line)]
            merges = [line for line in mine if "remote segment merge" in line]
            num = lambda field, line: int(re.search(rf"{field}=(\d+)", line).group(1))
            out[p] = (sum("segment copied to remote storage" in line for line in mine),
                      sum(num("merged_segments", line) for line in merges),
                      sum(num("merged_segments", line) > 0 for line in merges),
                      sum(num("replaced_deleted", line) for line in merges))
        return out

    def settled():
        objects = store.objects()
        logs = {p: objects.segment_logs(topic, p) for p in PARTITIONS}
        tiered = list_offsets(b, topic, PARTITIONS, LATEST_TIERED)
        acct = accounting()
        for p in PARTITIONS:
            uploads, merged_away, merges, deleted = acct[p]
            indexes = [k for k in objects.sizes if k.startswith(f"topics/{topic}-")
                       and f"/{p}/" in k and k.endswith(".indexes")]
            if not (tiered[p] == ends[p] - 1 and merges > 0 and deleted == merged_away
                    and len(logs[p]) == len(indexes) == uploads - merged_away + merges):
                return None
        return logs, acct

    logs, acct = wait_for(settled, 60, lambda: f"merges settled: {accounting()} vs objects "
                          f"{ {p: len(store.objects().segment_logs(topic, p)) for p in PARTITIONS} }\n"
                          + b.log_tail(30))
    for p in PARTITIONS:
        uploads, merged_away, merges, _ = acct[p]
        assert uploads >= 4 and len(logs[p]) < uploads, (p, acct[p], logs[p])
        assert logs[p][0][0] == 0, f"partition {p}: the first segment starts at {logs[p][0]}"
    merge_lines = [line for line in b.log_text().splitlines()
                   if "remote segment merge" in line and re.search(r"merged_segments=[1-9]", line)]
    assert all(re.search(r"get_requests=[1-9]\d* put_requests=[1-9]", line) for line in merge_lines)
    print(f"(uploads, merged away, merges, replaced deleted) per partition: {acct}; "
          f"the first merge: {merge_lines[0]}")
    local_start = list_offsets(b, topic, PARTITIONS, EARLIEST_LOCAL)
    assert all(local_start[p] == ends[p] for p in PARTITIONS), (
        f"local segments remain: local start {local_start}, ends {ends}")
    read_all_verified(b, topic, delivered, PARTITIONS)


# --- Retention across tiers, DeleteRecords, topic deletion ---------------------------------------

def incompressible(topic_tag: str, count: int, size: int, partition: int = 0):
    rng = random.Random(zlib.crc32(topic_tag.encode()))
    ts = now_ms() - 600_000
    return [Rec(f"{topic_tag}-{i}".encode(), rng.randbytes(size), (("i", str(i).encode()),),
                partition, ts + i) for i in range(count)]


def test_total_retention_deletes_remote_segments(backend, broker_factory):
    """retention.bytes counts both tiers: old remote segments are deleted from the store until the partition holds at most retention.bytes plus one segment (Kafka's rule, the active segment included), the earliest offset moves up to the first remaining remote segment, and what is left reads back densely from there."""
    store = backend.new_store()
    b = start_tiered(broker_factory, store)
    topic = unique("retention")
    retention = 4 << 20
    cf_create_topic(b.bootstrap, topic, 1, {**TIERED_TOPIC, "local.retention.bytes": str(1 << 20),
                                            "retention.bytes": str(retention)})
    delivered = cf_produce(b.bootstrap, topic, incompressible("ret", 240, 50_000), "none")

    seen: list[dict] = []

    def snapshot() -> dict:
        state = tier_state(b, topic, [0])
        remote = store.objects().segment_logs(topic, 0)
        # What Kafka counts against retention.bytes: the remote segments plus the local ones
        # not in the store yet (the active segment included).
        local_only = sum(s for base, s in state.local[0] if base > state.tiered[0])
        return dict(state=state, earliest=list_offsets(b, topic, [0], EARLIEST)[0],
                    remote=[(x, s) for x, _, s in remote],
                    total=sum(s for _, _, s in remote) + local_only)

    def applied():
        snap = snapshot()
        seen.append(snap)
        stable = len(seen) >= 4 and all(x["remote"] == snap["remote"] for x in seen[-4:])
        return (local_trimmed(snap["state"], 0, 1 << 20, SEGMENT_BYTES) and snap["remote"]
                and snap["earliest"] > 0 and snap["earliest"] == snap["remote"][0][0] and stable)

    wait_for(applied, 120, lambda: f"total retention to apply and settle: {seen[-1] if seen else '?'}"
             f"\n{b.log_tail(30)}", interval=0.5)
    snap = seen[-1]
    read_all_verified(b, topic, delivered, [0], log_start={0: snap["earliest"]})
    assert snap["total"] <= retention + SEGMENT_BYTES, (
        f"after total retention the partition holds {snap['total']} B (remote segments "
        f"{snap['remote']} + local-only {snap['state'].describe()}), more than retention.bytes "
        f"{retention} + one segment {SEGMENT_BYTES}: the oldest remote segment should have gone")


def test_delete_records_moves_remote_log_start(backend, broker_factory):
    """DeleteRecords to an offset inside the remote tier moves the earliest offset there (also after a restart), deletes the remote segments wholly below it, and reads start there."""
    from confluent_kafka import TopicPartition

    store = backend.new_store()
    b = start_tiered(broker_factory, store)
    topic = unique("delrec")
    cf_create_topic(b.bootstrap, topic, 1, {**TIERED_TOPIC, "local.retention.bytes": str(1 << 20)})
    delivered = cf_produce(b.bootstrap, topic, incompressible("delrec", 200, 50_000), "none")
    wait_tiered(b, topic, [0], local_retention=1 << 20)
    remote = store.objects().segment_logs(topic, 0)
    assert len(remote) >= 4, remote
    target = remote[2][0] + 5  # inside the third remote segment
    local_start = list_offsets(b, topic, [0], EARLIEST_LOCAL)[0]
    assert target < local_start, (target, local_start)

    admin = cf_admin(b.bootstrap)
    fs = admin.delete_records([TopicPartition(topic, 0, target)], request_timeout=30)
    result = list(fs.values())[0].result(30)
    assert result.low_watermark == target, f"DeleteRecords low watermark {result.low_watermark}"
    assert list_offsets(b, topic, [0], EARLIEST)[0] == target

    def below_gone():
        logs = store.objects().segment_logs(topic, 0)
        return logs and logs[0][0] == remote[2][0]

    wait_for(below_gone, 60, lambda: f"remote segments below {remote[2][0]} to be deleted: "
             f"{[(x, s) for x, _, s in store.objects().segment_logs(topic, 0)]}")
    # Reading below the log start is out of range; from the earliest offset it starts at target.
    with wire.Conn(b.host, b.port) as c:
        r = wire.parse_fetch_response_v4(c.roundtrip(
            wire.fetch_request_v4(5, topic, 0, remote[1][0], max_wait_ms=100), 30))
    assert r.error_code == 1, f"fetch below the log start: error {r.error_code}, expected 1"
    read_all_verified(b, topic, delivered, [0], log_start={0: target})

    b.restart(signal.SIGTERM)
    assert list_offsets(b, topic, [0], EARLIEST)[0] == target, "log start lost by the restart"
    read_all_verified(b, topic, delivered, [0], log_start={0: target})


def test_topic_deletion_removes_remote_objects(backend, broker_factory):
    """Deleting a tiered topic removes its objects from the store (segments, indexes, manifests) and its local partition dirs."""
    store = backend.new_store()
    b = start_tiered(broker_factory, store)
    topic = unique("deltopic")
    keep = unique("keep")
    for t in (topic, keep):
        cf_create_topic(b.bootstrap, t, 2, {**TIERED_TOPIC, "local.retention.bytes": str(1 << 20)})
        cf_produce(b.bootstrap, t, incompressible(t, 100, 50_000, 0)
                   + incompressible(t + "1", 100, 50_000, 1), "none")
    wait_tiered(b, topic, [0, 1], local_retention=1 << 20)
    wait_tiered(b, keep, [0, 1], local_retention=1 << 20)
    ours = [k for k in store.objects().sizes if k.startswith(f"topics/{topic}-")]
    assert len(ours) >= 8, ours
    kept_before = {k: v for k, v in store.objects().sizes.items()
                   if k.startswith(f"topics/{keep}-")}

    admin = cf_admin(b.bootstrap)
    admin.delete_topics([topic], operation_timeout=30)[topic].result(30)
    wait_for(lambda: not [k for k in store.objects().sizes if k.startswith(f"topics/{topic}-")],
             60, lambda: (f"the objects of {topic} to be deleted: "
                          f"{[k for k in store.objects().sizes if k.startswith(f'topics/{topic}-')][:10]}"))
    for p in (0, 1):
        assert not (b.data_dir / f"{topic}-{p}").exists(), f"local dir of {topic}-{p} left"
    kept_after = {k: v for k, v in store.objects().sizes.items() if k.startswith(f"topics/{keep}-")}
    missing = [k for k in kept_before if "/manifest/" not in k and k not in kept_after]
    assert not missing, f"objects of the other topic {keep} deleted: {missing[:5]}"


# --- Object store outage ---------------------------------------------------------------------------

@pytest.fixture
def breakable_store(backend, tmp_path_factory):
    """A store the test may take down: for S3, a SeaweedFS server of its own."""
    if backend.name == "local":
        yield LocalStore()
        return
    server = S3Server(tmp_path_factory.mktemp("s3-outage"))
    env = server.start()
    yield S3Store(env, server)
    server.stop()


def test_store_outage_keeps_local_data_until_uploaded(backend, breakable_store, broker_factory):
    """With the object store down, produce keeps working, local segments are kept past local.retention.bytes (nothing un-uploaded is deleted), the broker logs the failing uploads and a growing backlog at ERROR; once the store is back, uploads resume, local disk shrinks, and every acknowledged record reads back from offset 0."""
    store = breakable_store
    b = start_tiered(broker_factory, store)
    topic = unique("outage")
    cf_create_topic(b.bootstrap, topic, len(PARTITIONS), TIERED_TOPIC)
    delivered = produce_rounds(b.bootstrap, topic, 1, 1500, "before")
    before = wait_tiered(b, topic, PARTITIONS)

    backlog_re = re.compile(r"tp=(\S+).*?(?:backlog_bytes|local_bytes)=(\d+)")

    def backlog_lines(since: int) -> list[tuple[str, int, str]]:
        out = []
        for line in error_lines_since(b, since, r"(?i)upload|tiering"):
            m = backlog_re.search(line)
            if m:
                out.append((m.group(1), int(m.group(2)), line))
        return out

    log_mark = len(b.log_text())
    store.break_()
    t_down = time.monotonic()
    try:
        ts = max(d.rec.timestamp for d in delivered) + 1000
        t0 = time.monotonic()
        burst1 = produce_rounds(b.bootstrap, topic, 2, 1500, "during1", ts_base=ts)
        produce_s = time.monotonic() - t0
        delivered += burst1
        # The tiering task retries each upload with backoff before it gives up on the pass.
        first = wait_for(lambda: backlog_lines(log_mark), 150, lambda: (
            f"an ERROR line about failing uploads with a backlog figure (backlog_bytes= or "
            f"local_bytes=) after the store went down:\n{b.log_tail(30)}"), interval=0.5)
        tp, first_backlog, first_line = first[0]
        first_after_s = time.monotonic() - t_down
        mark2 = len(b.log_text())
        burst2 = produce_rounds(b.bootstrap, topic, 1, 1500, "during2",
                                ts_base=ts + 2 * 1500 * 10 + 1000)
        delivered += burst2
        later = wait_for(lambda: [x for x in backlog_lines(mark2) if x[0] == tp], 150, lambda: (
            f"a later ERROR line for {tp} after more records arrived:\n{b.log_tail(30)}"),
            interval=0.5)
        assert later[-1][1] > first_backlog, (
            f"the reported backlog of {tp} did not grow after more records arrived:\n"
            f"{first_line}\n{later[-1][2]}")
        state = tier_state(b, topic, PARTITIONS)
        for p in PARTITIONS:
            # Nothing that is not in the store was deleted: local data still reaches back to
            # right after the last tiered offset, and local disk grew past its retention.
            assert state.local[p][0][0] <= state.tiered[p] + 1, (
                f"partition {p}: local segments deleted before upload: {state.describe()}")
            assert state.tiered[p] == before.tiered[p], (
                f"partition {p}: tiered offset moved during the outage: {state.describe()}")
            assert state.local_bytes(p) > LOCAL_RETENTION_BYTES + SEGMENT_BYTES, (
                f"partition {p}: local disk did not grow past local.retention.bytes: "
                f"{state.describe()}")
        print(f"[{backend.name}] produced {len(burst1)} records in {produce_s:.1f}s with the "
              f"store down; first ERROR with a backlog after {first_after_s:.0f}s: "
              f"{tp} {first_backlog} B, later {later[-1][1]} B; {state.describe()}")
    finally:
        store.fix()
    t_up = time.monotonic()
    after = wait_tiered(b, topic, PARTITIONS, timeout=180)
    print(f"[{backend.name}] store back: uploads caught up in {time.monotonic() - t_up:.0f}s: "
          f"{after.describe()}")
    for p in PARTITIONS:
        assert after.tiered[p] > before.tiered[p]
    read_all_verified(b, topic, delivered, PARTITIONS)


# --- Startup with a store that cannot work --------------------------------------------------------

# (No "bucket does not exist" case: SeaweedFS creates a bucket on the first PUT by an admin.)
BAD_STORES = ["s3-unreachable-endpoint", "s3-wrong-secret", "bad-url-scheme", "s3-url-without-bucket",
              "local-dir-is-a-file"]


@pytest.mark.parametrize("case", BAD_STORES)
def test_startup_fails_clearly_on_a_bad_store(case, broker_factory, request):
    """A broker whose object store is unreachable or misconfigured exits non-zero at startup, in bounded time, with a message naming the setting (or credentials) at fault."""
    settings: dict = {}
    env: dict = {}
    if case.startswith("s3-"):
        s3 = request.getfixturevalue("s3_env")
        env = {k: s3[k] for k in S3_VARS[2:]}
        settings = {"remote_storage_url": f"s3://{s3['SHALE_TEST_S3_BUCKET']}/bad-{uuid.uuid4().hex[:8]}",
                    "remote_storage_endpoint": s3["SHALE_TEST_S3_ENDPOINT"],
                    "remote_storage_path_style": True}
    expect = r"remote_storage_url"
    if case == "s3-unreachable-endpoint":
        settings["remote_storage_endpoint"] = f"http://127.0.0.1:{free_port()}"
        expect = r"remote_storage_endpoint"
    elif case == "s3-wrong-secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
        expect = r"AWS_|credential"
    elif case == "bad-url-scheme":
        settings = {"remote_storage_url": "ftp://example/x"}
    elif case == "s3-url-without-bucket":
        settings = {"remote_storage_url": "s3:///prefix"}
    b = broker_factory(env=env, start=False, **settings)
    if case == "local-dir-is-a-file":
        (b.data_dir / "remote").write_text("not a directory\n")
        expect = r"remote_storage"
    # Run directly rather than with b.start(): the broker binds its port before it checks the
    # store, so "accepts connections" does not mean "started".
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("SHALE_")}
    run_env.update(env, RUST_BACKTRACE="0")
    t0 = time.monotonic()
    proc = subprocess.run(b.args(), env=run_env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    text = proc.stdout + proc.stderr
    assert proc.returncode not in (None, 0), f"expected a non-zero exit, got {proc.returncode}:\n{text[-3000:]}"
    assert took < 60, f"took {took:.0f}s to give up"
    assert re.search(expect, text), f"the startup error does not name {expect!r}:\n{text[-3000:]}"
    assert "panicked" not in text, text[-3000:]
    print(f"{case}: exit {proc.returncode} after {took:.1f}s: {text.strip().splitlines()[-1][:400]}")
