"""Cold-read benchmark of the remote tier against SeaweedFS (S3); run by scripts/bench-tiering.sh.

One run, one SeaweedFS server and the same bytes throughout:
  1. upload : a release broker gets ~BYTES of incompressible records in a topic with small
              local retention; its sealed segments go to the S3 server and local disk keeps only
              the active segment of each partition. PUT requests are counted.
  2. GET    : the server's plain GET rate for exactly those segment objects (the .log files),
              ranged GETs of CHUNK bytes, CONCURRENCY at a time: the ceiling for cold reads.
  3. cold   : a fresh broker process (empty cache) serves a librdkafka consumer reading every
              partition from offset 0 to the last tiered offset: all of it from the remote tier.
  4. warm   : the same broker, the same read again (twice: the cache admits a chunk into its
              protected part only when it is read a second time).
  5. local  : the same broker reads the same amount from a topic with remote.storage.enable=false
              (page cache): what "as fast as local" means on this machine.
Request counts come from the server (SeaweedFS_s3_request_total from its metrics endpoint, by
request type) and from the broker's own per-topic counters (its "remote storage requests" log
line, printed at most once a minute, which is why the run waits for it).

    bench_tiering.py --shale target/release/shale --workdir DIR [--bytes N] [--partitions N]
        [--segment-bytes N] [--record-bytes N] [--cache-bytes N] [--chunk-bytes N]
        [--concurrency N] [--no-local] [--no-warm]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import kafka_wire as wire  # noqa: E402
from s3client import S3Client  # noqa: E402
from tiering_support import S3Server, local_segments  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
# Bytes a fetch asks for per partition (librdkafka's max.partition.fetch.bytes), 64 MiB a fetch.
PARTITION_FETCH_BYTES = 16 << 20
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench-tiering] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- SeaweedFS request counts ------------------------------------------------------------------

def server_counts(metrics_url: str, bucket: str) -> dict[str, int]:
    """Requests the S3 server answered for the bucket, by type (GET, PUT, LIST, ...)."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    out: dict[str, int] = {}
    for m in re.finditer(r'^SeaweedFS_s3_request_total\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("bucket") != bucket:
            continue
        out[labels["type"]] = out.get(labels["type"], 0) + int(float(m.group(2)))
    return out


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before))
            if after.get(k, 0) - before.get(k, 0)}


# --- Broker --------------------------------------------------------------------------------------

LIVE: list["Broker"] = []


class Broker:
    def __init__(self, shale: Path, data_dir: Path, log_path: Path, env: dict, settings: dict):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = data_dir
        args = [str(shale), "serve", "--data-dir", str(data_dir), "--listen", self.bootstrap]
        for k, v in settings.items():
            args.append(f"--{k.replace('_', '-')}={v}")
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("SHALE_")}
        run_env.update(env)
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=run_env)
        LIVE.append(self)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"shale exited with {self.proc.returncode} at startup; see {log_path}")
            if "shale listening" in self.log_text():
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"shale did not start within 60 s; see {log_path}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(60)
        self.logf.close()
        return rc

    def counters_after(self, mark: int, topic: str, timeout: float = 75) -> dict[str, int]:
        """The first "remote storage requests" line for topic logged after byte `mark` of the
        log (the broker logs them at most once a minute, when they changed)."""
        pat = re.compile(r"remote storage requests.*topic=" + re.escape(topic) + r"\b(.*)$", re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = pat.search(self.log_text()[mark:])
            if m:
                return {k: int(v) for k, v in re.findall(r"(\w+_(?:requests|bytes))=(\d+)", m.group(1))}
            time.sleep(1)
        return {}


def list_offsets(b: Broker, topic: str, partitions: int, spec: int) -> dict[int, int]:
    got = wire.list_offsets("127.0.0.1", b.port, topic, {p: spec for p in range(partitions)})
    return {p: r.offset for p, r in got.items()}


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1, config=config)])[topic].result(30)
    time.sleep(0.5)


def produce(bootstrap: str, topic: str, partitions: int, total: int, record_bytes: int) -> float:
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 10,
                  "batch.size": 1 << 20, "compression.type": "none",
                  "queue.buffering.max.kbytes": 1 << 20, "message.max.bytes": 8 << 20})
    payloads = [os.urandom(record_bytes) for _ in range(64)]
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    n = total // record_bytes
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(topic, payloads[i % 64], partition=i % partitions, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.005)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(600) == 0
    if errors:
        raise SystemExit(f"{len(errors)} produce errors, first {errors[0]}")
    return time.perf_counter() - t0


def consume_range(bootstrap: str, topic: str, ends: dict[int, int]) -> tuple[float, int, int]:
    """Reads offsets 0..ends[p] of every partition; (seconds, records, value bytes)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": PARTITION_FETCH_BYTES,
                  "queued.max.messages.kbytes": 256 << 10, "fetch.wait.max.ms": 100,
                  "check.crcs": False})
    todo = {p: e for p, e in ends.items() if e >= 0}
    records = nbytes = 0
    c.list_topics(topic, timeout=30)  # metadata and the connection first, outside the timing
    t0 = time.perf_counter()
    c.assign([TopicPartition(topic, p, 0) for p in todo])
    deadline = time.monotonic() + 1800
    while todo:
        if time.monotonic() > deadline:
            raise SystemExit(f"consume did not finish: left {todo}")
        # consume() waits for the whole batch or the timeout: small ones, so the end is not padded.
        for m in c.consume(500, 0.02):
            if m.error():
                raise SystemExit(f"consumer error: {m.error()}")
            p = m.partition()
            if p not in todo:
                continue
            records += 1
            nbytes += len(m.value() or b"")
            if m.offset() >= todo[p]:
                del todo[p]
                c.pause([TopicPartition(topic, p)])
    seconds = time.perf_counter() - t0
    c.close()
    return seconds, records, nbytes


def plain_get(env: dict, keys: list[tuple[str, int]], chunk: int, concurrency: int) -> float:
    """Ranged GETs of `chunk` bytes over every object, `concurrency` threads; seconds."""
    jobs = [(k, off, min(off + chunk, size) - 1) for k, size in keys for off in range(0, size, chunk)]
    lock = threading.Lock()
    got = [0]
    errors: list[str] = []

    def worker():
        c = S3Client(env["SHALE_TEST_S3_ENDPOINT"], env["SHALE_TEST_S3_BUCKET"],
                     env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        while True:
            with lock:
                if not jobs:
                    break
                key, start, end = jobs.pop(0)
            try:
                body = c.get(key, start, end)
                with lock:
                    got[0] += len(body)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))
                break
        c.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"plain GET failed: {errors[0]}")
    want = sum(s for _, s in keys)
    if got[0] != want:
        raise SystemExit(f"plain GET read {got[0]} bytes, expected {want}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shale", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--bytes", type=int, default=GIB, help="bytes to tier (about)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--segment-bytes", type=int, default=128 * MIB)
    ap.add_argument("--record-bytes", type=int, default=16 * 1024)
    ap.add_argument("--cache-bytes", type=int, default=2 * GIB)
    ap.add_argument("--chunk-bytes", type=int, default=4 * MIB)
    ap.add_argument("--concurrency", type=int, default=8, help="plain GET threads")
    ap.add_argument("--no-local", action="store_true")
    ap.add_argument("--no-warm", action="store_true")
    a = ap.parse_args()
    work = Path(a.workdir).resolve()
    shale = Path(a.shale)

    log("starting SeaweedFS")
    server = S3Server(work / "s3")
    env = server.start()
    weed_pid = int((work / "s3" / "pid").read_text())
    metrics = env.get("SHALE_TEST_S3_METRICS")
    bucket = env["SHALE_TEST_S3_BUCKET"]
    prefix = f"bench-{int(time.time())}"
    broker_env = {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}
    settings = {
        "remote_storage_url": f"s3://{bucket}/{prefix}",
        "remote_storage_endpoint": env["SHALE_TEST_S3_ENDPOINT"],
        "remote_storage_path_style": "true",
        "remote_log_manager_task_interval_ms": 1000,
        "remote_log_reader_cache_bytes": a.cache_bytes,
        "remote_log_reader_chunk_bytes": a.chunk_bytes,
        "message_max_bytes": 8 << 20,
    }
    data = work / "data"
    rows: list[tuple[str, str, str]] = []
    status = 0
    try:
        # --- 1. upload --------------------------------------------------------------------------
        b = Broker(shale, data, work / "shale-a.log", broker_env, settings)
        topic = "tiered"
        create_topic(b.bootstrap, topic, a.partitions, {
            "segment.bytes": str(a.segment_bytes), "local.retention.bytes": "1",
            "retention.bytes": "-1", "retention.ms": "-1"})
        # Enough that --bytes fills whole segments, plus a little for each active segment.
        total = a.bytes + a.partitions * 8 * MIB
        s0 = server_counts(metrics, bucket)
        cpu_b0, cpu_w0 = b.cpu(), proc_cpu(weed_pid)
        log(f"producing {total / MIB:.0f} MiB of {a.record_bytes} B records into {a.partitions} "
            f"partitions ({a.segment_bytes / MIB:.0f} MiB segments, local.retention.bytes=1)")
        t0 = time.monotonic()
        produce_s = produce(b.bootstrap, topic, a.partitions, total, a.record_bytes)
        log(f"produced in {produce_s:.1f}s; waiting for the uploads")
        while True:
            tiered = list_offsets(b, topic, a.partitions, -5)
            segs = {p: local_segments(data, topic, p) for p in range(a.partitions)}
            if all(segs[p] and tiered[p] == segs[p][-1][0] - 1 and len(segs[p]) == 1
                   for p in range(a.partitions)):
                break
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"uploads did not finish: tiered {tiered}, local {segs}")
            time.sleep(0.5)
        upload_s = time.monotonic() - t0 - produce_s
        cpu_b1, cpu_w1 = b.cpu(), proc_cpu(weed_pid)
        s1 = server_counts(metrics, bucket)
        mark = len(b.log_text())
        with S3Client(env["SHALE_TEST_S3_ENDPOINT"], bucket, env["AWS_ACCESS_KEY_ID"],
                      env["AWS_SECRET_ACCESS_KEY"]) as c:
            objects = c.list(prefix + "/")
        logs = sorted((o.key, o.size) for o in objects if o.key.endswith(".log"))
        seg_bytes = sum(s for _, s in logs)
        log(f"{len(logs)} segments, {seg_bytes / MIB:.0f} MiB in the store after {upload_s:.1f}s "
            f"more; waiting for the broker's request counters (logged once a minute)")
        up_counts = b.counters_after(mark, topic)
        rc = b.stop()
        put_server = s1.get("PUT", 0) + s1.get("POST", 0) - s0.get("PUT", 0) - s0.get("POST", 0)
        gib = seg_bytes / GIB
        rows.append(("upload", f"{put_server / gib:.0f} PUT/GiB",
                     f"{len(logs)} segments, {seg_bytes / MIB:.0f} MiB (produced in {produce_s:.1f} s, "
                     f"all in the store {upload_s:.1f} s after that); PUT-class requests: broker {up_counts.get('put_requests', '?')} "
                     f"({up_counts.get('put_requests', 0) / gib:.0f}/GiB = 1 per "
                     f"{seg_bytes / MIB / max(up_counts.get('put_requests', 1), 1):.1f} MiB), "
                     f"server {put_server} (all types {delta(s1, s0)}); CPU broker "
                     f"{cpu_b1 - cpu_b0:.1f} s, SeaweedFS {cpu_w1 - cpu_w0:.1f} s"))

        # --- 2. plain GET -----------------------------------------------------------------------
        s2 = server_counts(metrics, bucket)
        cpu_w2, cpu_s2 = proc_cpu(weed_pid), self_cpu()
        get_s = plain_get(env, logs, a.chunk_bytes, a.concurrency)
        s3 = server_counts(metrics, bucket)
        get_mbs = seg_bytes / 1e6 / get_s
        rows.append(("plain GET", f"{get_mbs:.1f} MB/s",
                     f"{seg_bytes / MIB:.0f} MiB in {get_s:.1f} s, ranged GETs of "
                     f"{a.chunk_bytes / MIB:.0f} MiB, {a.concurrency} at a time; server GETs "
                     f"{delta(s3, s2).get('GET', 0)}; CPU client {self_cpu() - cpu_s2:.1f} s, "
                     f"SeaweedFS {proc_cpu(weed_pid) - cpu_w2:.1f} s"))

        # --- 3./4. cold and warm reads ----------------------------------------------------------
        ends = tiered
        b = Broker(shale, data, work / "shale-b.log", broker_env, settings)
        mark = len(b.log_text())
        passes = ["cold"] + ([] if a.no_warm else ["warm", "warm 2"])
        results = {}
        for name in passes:
            sa = server_counts(metrics, bucket)
            cb, cw, cs = b.cpu(), proc_cpu(weed_pid), self_cpu()
            secs, records, value_bytes = consume_range(b.bootstrap, topic, ends)
            sb = server_counts(metrics, bucket)
            gets = delta(sb, sa).get("GET", 0)
            mbs = seg_bytes / 1e6 / secs
            results[name] = mbs
            label = {"cold": "cold read", "warm": "warm read", "warm 2": "warm read 2"}[name]
            rows.append((label, f"{mbs:.1f} MB/s",
                         f"{records} records ({value_bytes / MIB:.0f} MiB of values) from offset 0 in "
                         f"{secs:.1f} s = {mbs / get_mbs * 100:.0f}% of plain GET; server GETs {gets} "
                         f"({gets / gib:.0f}/GiB = 1 per {seg_bytes / MIB / max(gets, 1):.1f} MiB); CPU "
                         f"broker {b.cpu() - cb:.1f} s, client {self_cpu() - cs:.1f} s, SeaweedFS "
                         f"{proc_cpu(weed_pid) - cw:.1f} s"))
            log(f"{name}: {mbs:.1f} MB/s, {gets} GETs")
            if name == "cold":
                cold_counts = b.counters_after(mark, topic)
                mark = len(b.log_text())
                rows.append(("", "", f"broker counters after the cold read (since its start, "
                                     f"startup included): GET {cold_counts.get('get_requests', '?')}, "
                                     f"{cold_counts.get('get_bytes', 0) / MIB:.0f} MiB, LIST "
                                     f"{cold_counts.get('list_requests', '?')}"))

        # --- 5. local read ----------------------------------------------------------------------
        if not a.no_local:
            create_topic(b.bootstrap, "local", a.partitions, {
                "segment.bytes": str(a.segment_bytes), "remote.storage.enable": "false"})
            produce(b.bootstrap, "local", a.partitions, seg_bytes, a.record_bytes)
            local_ends = {p: v - 1 for p, v in list_offsets(b, "local", a.partitions, -1).items()}
            cb, cs = b.cpu(), self_cpu()
            secs, records, value_bytes = consume_range(b.bootstrap, "local", local_ends)
            local_bytes = sum(s for p in range(a.partitions) for _, s in local_segments(data, "local", p))
            mbs = local_bytes / 1e6 / secs
            rows.append(("local read", f"{mbs:.1f} MB/s",
                         f"{records} records, {local_bytes / MIB:.0f} MiB of local segments (page "
                         f"cache) in {secs:.1f} s; CPU broker {b.cpu() - cb:.1f} s, client "
                         f"{self_cpu() - cs:.1f} s"))
        rc_b = b.stop()
        if rc or rc_b:
            log(f"broker exit codes on SIGTERM: {rc}, {rc_b}")
            status = 1
    finally:
        for live in LIVE:
            if live.proc.poll() is None:
                live.proc.kill()
                live.proc.wait()
        server.stop()

    print()
    print(f"Shale cold-read benchmark ({time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, "
          f"{os.cpu_count()} cores, release build, SeaweedFS on 127.0.0.1)")
    print(f"  workload : {a.partitions} partitions, {a.record_bytes} B incompressible records, "
          f"{a.segment_bytes / MIB:.0f} MiB segments; cache {a.cache_bytes / MIB:.0f} MiB in "
          f"{a.chunk_bytes / MIB:.0f} MiB chunks")
    for name, rate, detail in rows:
        print(f"  {name:<11}: {rate:>12}   {detail}" if name else f"  {'':<11}  {'':>12}   {detail}")
    print("  (MB = 10^6 bytes of segment data, the .log objects; reads are librdkafka from offset 0 "
          "to the last tiered offset; SeaweedFS's files are in the page cache, as they are for "
          "the plain GET)")
    return status


if __name__ == "__main__":
    sys.exit(main())
