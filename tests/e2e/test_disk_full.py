"""A full disk as an operator meets it: the data dir is a small tmpfs mounted by the test.

Produce is refused (KAFKA_STORAGE_ERROR) once free space drops below storage_min_free_bytes,
before the filesystem is full; DeleteRecords and DeleteTopics free space even when something
else has filled the disk to the last byte; produce resumes by itself; the broker restarts on a full disk; with
tiering, uploaded segments are deleted locally at once. Every acknowledged record is read back.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

import kafka_wire as wire
from clients import cf_admin, cf_consume_all, cf_create_topic, unique

MiB = 1 << 20
FS_BYTES = 64 * MiB
MIN_FREE = 12 * MiB
CHECK_MS = 200
KAFKA_STORAGE_ERROR = 56


def mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")


@pytest.fixture
def small_broker(broker_factory, request):
    """A broker (not started) whose data dir is a 64 MiB tmpfs; unmounted at teardown."""
    mounted: list[Path] = []

    def make(**settings):
        b = broker_factory(start=False, storage_min_free_bytes=MIN_FREE,
                           storage_space_check_interval_ms=CHECK_MS, **settings)
        mount_tmpfs(b.data_dir, FS_BYTES)
        mounted.append(b.data_dir)
        b.start()
        return b

    yield make
    # The broker factory's teardown (which stops the brokers) runs after this one: stop here.
    for b in broker_factory.brokers:
        if b.proc is not None and b.proc.poll() is None:
            b.stop()
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path) -> int:
    """Writes zeros into path until the filesystem is full; returns the bytes written."""
    written = 0
    chunk = b"\0" * (64 << 10)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        # The last blocks: smaller writes until not even one byte fits.
        for size in (4096, 512, 1):
            while True:
                try:
                    written += f.write(b"\0" * size)
                except OSError:
                    break
    return written


class Producer:
    """Produce v7 on one connection, acks=all; remembers what was acknowledged."""

    def __init__(self, b):
        self.conn = wire.Conn(b.host, b.port, timeout=30)
        self.corr = 0
        self.acked: dict[tuple[str, int], list[tuple[int, bytes]]] = {}

    def send(self, topic: str, values: list[bytes], partition: int = 0) -> int:
        """Returns the error code; an acknowledged batch is remembered with its base offset."""
        self.corr += 1
        batch = wire.simple_batch([wire.Record(None, v) for v in values])
        frame = wire.produce_request(self.corr, topic, partition, batch, acks=-1)
        r = wire.parse_produce_response(self.conn.roundtrip(frame, timeout=30), 7)
        assert r.correlation_id == self.corr
        if r.error_code == 0:
            base = r.base_offset
            self.acked.setdefault((topic, partition), []).extend(
                (base + i, v) for i, v in enumerate(values))
        return r.error_code

    def close(self):
        self.conn.close()


def value(topic: str, n: int, size: int = 64 << 10) -> bytes:
    seed = hashlib.sha256(f"{topic}-{n}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def fill_with_produce(p: Producer, topics: list[str], limit: int = 2000) -> dict[str, int]:
    """Produces 4 x 64 KiB batches round-robin over topics until the broker refuses; returns
    the error code of the refusal per topic and checks that nothing but KAFKA_STORAGE_ERROR
    came back."""
    n = 0
    while n < limit:
        for t in topics:
            code = p.send(t, [value(t, n * 4 + i) for i in range(4)])
            if code != 0:
                assert code == KAFKA_STORAGE_ERROR, f"produce to {t} answered {code}"
                return {t2: p.send(t2, [b"x"]) for t2 in topics}
        n += 1
    raise AssertionError(f"{limit} rounds of produce were all accepted on a {FS_BYTES} B disk")


def read_all(b, topic: str, partition: int = 0) -> list[tuple[int, bytes]]:
    return [(c.offset, c.value) for c in cf_consume_all(b.bootstrap, topic, [partition])[partition]]


def wait_produce_accepted(p: Producer, topic: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if p.send(topic, [b"resumed"]) == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"produce to {topic} still refused after {timeout} s")


def assert_acked_present(b, p: Producer, topic: str) -> None:
    got = dict(read_all(b, topic))
    acked = p.acked.get((topic, 0), [])
    missing = [o for o, v in acked if got.get(o) != v]
    assert not missing, f"{len(missing)} acknowledged records of {topic} lost, first {missing[:5]}"


def test_full_disk_refuses_produce_early_frees_on_delete_and_restarts(small_broker):
    from confluent_kafka import TopicPartition

    b = small_broker(log_segment_bytes=MiB)
    filler, keeper, trimmed = unique("filler"), unique("keeper"), unique("trimmed")
    for t in (filler, keeper, trimmed):
        cf_create_topic(b.bootstrap, t, 1)
    p = Producer(b)
    refused = fill_with_produce(p, [filler, keeper, trimmed])
    free = free_bytes(b.data_dir)
    print(f"refused with {free} B free (storage_min_free_bytes {MIN_FREE}); "
          f"acked {sum(len(v) for v in p.acked.values())} records")
    assert set(refused.values()) == {KAFKA_STORAGE_ERROR}, refused
    assert free > MIN_FREE // 2, f"produce was refused only with {free} B left"
    assert "disk space is low" in b.log_text()

    # Something else takes the rest, to the last byte. DeleteRecords still frees space (its
    # segments go before its checkpoint is written)...
    fill(b.data_dir / "zz-other-process")
    assert free_bytes(b.data_dir) == 0
    admin = cf_admin(b.bootstrap)
    end = p.acked[(trimmed, 0)][-1][0] + 1
    fs = admin.delete_records([TopicPartition(trimmed, 0, end)], request_timeout=30)
    assert list(fs.values())[0].result(30).low_watermark == end
    freed = free_bytes(b.data_dir)
    print(f"DeleteRecords on a full disk freed {freed} B")
    assert freed > 4 * MiB, f"DeleteRecords freed only {freed} B"
    # ...and so does DeleteTopics, whose metadata write then needs the reserve.
    fill(b.data_dir / "zz-other-process-1")
    assert free_bytes(b.data_dir) == 0
    admin.delete_topics([filler], operation_timeout=30)[filler].result(30)
    waited = wait_produce_accepted(p, keeper, timeout=10)
    print(f"produce resumed {waited:.2f} s after DeleteTopics; {free_bytes(b.data_dir)} B free")
    assert_acked_present(b, p, keeper)

    # Full again, to the last byte, and a restart: it comes up, refuses produce, and serves.
    p.close()
    fill(b.data_dir / "zz-other-process-2")
    b.stop()
    b.start()
    p.conn = wire.Conn(b.host, b.port, timeout=30)  # the same history of acknowledgements
    assert p.send(keeper, [b"on a full disk"]) == KAFKA_STORAGE_ERROR
    assert_acked_present(b, p, keeper)

    # The operator frees space: produce resumes by itself, and a restart after it is clean.
    for name in ("zz-other-process", "zz-other-process-1", "zz-other-process-2"):
        (b.data_dir / name).unlink()
    wait_produce_accepted(p, keeper, timeout=10)
    p.close()
    b.stop()  # an exit code other than 0 is reported by the factory at teardown
    b.start()
    assert_acked_present(b, p, keeper)


def test_tiered_full_disk_empties_itself_of_uploaded_segments(small_broker, tmp_path):
    task_ms = 1000
    remote = tmp_path / "remote"
    remote.mkdir()
    b = small_broker(log_segment_bytes=MiB, remote_storage_url=f"file://{remote}",
                     remote_log_manager_task_interval_ms=task_ms)
    topic = unique("tiered-full")
    # Local retention would keep everything: only the disk-pressure rule frees space.
    cf_create_topic(b.bootstrap, topic, 1, {"local.retention.bytes": "-1",
                                             "local.retention.ms": "-1",
                                             "retention.ms": "-1", "retention.bytes": "-1"})
    p = Producer(b)
    # Twice what the disk holds: it can only be taken if uploaded segments leave the disk.
    # Produce may be refused for a moment when it outruns the uploads, or never, when the
    # pressure rule frees space between two produces.
    batch = 4 * len(value(topic, 0))
    acked_bytes, refusals, n = 0, [], 0
    while acked_bytes < 2 * FS_BYTES:
        n += 1
        assert n < 4 * FS_BYTES // batch, f"only {acked_bytes} B acknowledged in {n} produces"
        code = p.send(topic, [value(topic, n * 4 + i) for i in range(4)])
        if code == 0:
            acked_bytes += batch
            continue
        assert code == KAFKA_STORAGE_ERROR, code
        refusals.append(wait_produce_accepted(p, topic, timeout=30))
    print(f"{acked_bytes >> 20} MiB acknowledged on a {FS_BYTES >> 20} MiB disk; produce "
          f"refused {len(refusals)} times, resumed after {[round(w, 2) for w in refusals]} s "
          f"(task interval {task_ms} ms)")
    for waited in refusals:
        assert waited <= 2 * task_ms / 1000 + 1.0, (
            f"the disk emptied itself of uploaded segments only after {waited:.2f} s")
    assert "already in remote storage" in b.log_text()
    assert_acked_present(b, p, topic)
    p.close()
