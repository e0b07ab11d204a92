"""Throughput of the Parquet archive job, per core; run by scripts/bench-archive.sh.

One run, one release broker with the local-directory store (<data_dir>/remote), the same bytes
throughout:
  1. load     : ~BYTES of realistic records (key `user-NNNNNN`, a JSON-ish value of RECORD_BYTES
                with structure and randomness, 2 headers; producer codec COMPRESSION) into a topic
                with archive.enable=false; the active segments are rolled (segment.ms=1 and one
                small record per partition) and the run waits until every sealed segment is
                uploaded. The archive covers exactly the uploaded segments.
  2. baselines: on the uploaded .log objects: `cat` to /dev/null (read rate) and
                `zstd -1/-3 -T1 -c` to a pipe (what one core of this machine compresses), in MiB
                of input per CPU-second of that process; and `zstd -3 -T1` of the first 256 MiB
                of the records themselves, uncompressed (keys, values, header values
                concatenated): the reference when the producer compressed the batches.
  3. archive  : IncrementalAlterConfigs archive.enable=true (archive.file.bytes FILE_BYTES,
                archive.max.lag.ms=0); the run polls `shale archive describe TOPIC --json` every
                0.5 s until every partition's archived end offset reaches its last uploaded
                offset. Wall time and the broker's CPU seconds (/proc/<pid>/stat) are taken at
                the alter and at the end: the broker is otherwise idle, so the CPU is the
                archive job's (plus the 1 s tiering loop's, measured while idle and reported).
  4. checks   : the broker log's "archive pass finished" lines agree with describe; rows =
                records produced; one archive file read with pyarrow has the rows describe
                says, and its offsets; the broker exits 0 on SIGTERM.

    bench_archive.py --shale target/release/shale --workdir DIR [--bytes N] [--partitions N]
        [--segment-bytes N] [--record-bytes N] [--compression none|lz4|zstd|gzip|snappy]
        [--file-bytes N] [--concurrency N] [--perf]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import kafka_wire as wire  # noqa: E402
# The broker process and topic creation are the tiering benchmark's.
from bench_tiering import Broker, create_topic  # noqa: E402

GIB = 1 << 30
MIB = 1 << 20
TICKS = os.sysconf("SC_CLK_TCK")
TOPIC = "events"


def log(msg: str) -> None:
    print(f"[bench-archive] {msg}", file=sys.stderr, flush=True)


def thread_cpu(pid: int) -> dict[str, tuple[str, float]]:
    """{tid: (thread name, CPU seconds)} of the live threads of pid."""
    out = {}
    for d in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (d / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[d.name] = (name, (int(fields[11]) + int(fields[12])) / TICKS)
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat, idle and iowait
    excluded)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / TICKS


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# --- Broker --------------------------------------------------------------------------------------

def alter_topic(bootstrap: str, topic: str, configs: dict[str, str]) -> None:
    from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                       ConfigResource, ResourceType)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
               for k, v in configs.items()]
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    for f in admin.incremental_alter_configs([res]).values():
        f.result(30)


# --- Records -------------------------------------------------------------------------------------

class Records:
    """Event-like records: key `user-NNNNNN`; a JSON object value of exactly `size` bytes with
    ids, a random 128-bit event id and 64-bit session (hex), numbers, categorical strings,
    base64 of size/16 random bytes, and text from a 256-word vocabulary filling the rest; headers
    trace-id (random hex) and source. ZSTD takes it to about a third, LZ4 to a half."""

    LETTERS = "abcdefghijklmnopqrstuvwxyz"
    EVENTS = ["page_view", "click", "add_to_cart", "purchase", "search", "login", "logout", "share"]
    COUNTRIES = ["DE", "FR", "US", "GB", "NL", "SE", "PL", "ES", "IT", "JP", "BR", "IN"]
    OS = [("android", "14"), ("android", "13"), ("ios", "17.4"), ("ios", "18.1"),
          ("windows", "11"), ("macos", "15.1"), ("linux", "6.8")]

    def __init__(self, size: int, seed: int = 42):
        self.size = size
        self.rng = random.Random(seed)
        self.words = ["".join(self.rng.choice(self.LETTERS) for _ in range(self.rng.randint(3, 9)))
                      for _ in range(256)]
        self.ts = int(time.time() * 1000)

    def make(self, i: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        rng, words, urandom = self.rng, self.words, os.urandom
        user = rng.randrange(1000000)
        os_name, os_version = rng.choice(self.OS)
        head = ('{"event_id":"%s","user":"user-%06d","type":"%s","ts":%d,"session":"%s",'
                '"price":%d.%02d,"qty":%d,"country":"%s","device":{"os":"%s","version":"%s",'
                '"model":"%s"},"page":"/products/%s/%d","tags":["%s","%s","%s"],"blob":"%s",'
                '"text":"' % (
                    urandom(16).hex(), user, rng.choice(self.EVENTS), self.ts + i,
                    urandom(8).hex(), rng.randrange(10000), rng.randrange(100),
                    rng.randrange(1, 10), rng.choice(self.COUNTRIES), os_name, os_version,
                    rng.choice(words), rng.choice(words), rng.randrange(100000),
                    rng.choice(words), rng.choice(words), rng.choice(words),
                    base64.b64encode(urandom(self.size // 16)).decode()))
        room = self.size - len(head) - 2
        text = " ".join(rng.choices(words, k=max(room, 0) // 6 + 1))[:max(room, 0)]
        value = (head + text + '"}').encode()
        headers = [("trace-id", urandom(8).hex().encode()), ("source", b"bench-archive")]
        return b"user-%06d" % user, value, headers


def produce(bootstrap: str, topic: str, partitions: int, n: int, gen: Records,
            compression: str, sample: Path, sample_bytes: int) -> tuple[float, int]:
    """Produces n records round-robin; (seconds, bytes of keys + values + headers). The first
    `sample_bytes` of them, uncompressed, also go to the file `sample`."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 10,
                  "batch.size": 1 << 20, "compression.type": compression,
                  "queue.buffering.max.kbytes": 1 << 20, "message.max.bytes": 8 << 20})
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    record_bytes = 0
    raw = open(sample, "wb")
    t0 = time.perf_counter()
    for i in range(n):
        key, value, headers = gen.make(i)
        record_bytes += len(key) + len(value) + sum(len(k) + len(v) for k, v in headers)
        if raw is not None:
            raw.write(key + value + b"".join(k.encode() + v for k, v in headers))
            if record_bytes >= sample_bytes:
                raw.close()
                raw = None
        while True:
            try:
                p.produce(topic, value, key, partition=i % partitions, headers=headers,
                          on_delivery=cb)
                break
            except BufferError:
                p.poll(0.005)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(600) == 0
    if raw is not None:
        raw.close()
    if errors:
        raise SystemExit(f"{len(errors)} produce errors, first {errors[0]}")
    return time.perf_counter() - t0, record_bytes


def roll(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Rolls every partition's active segment: segment.ms=1, then one small record each (a
    segment rolls on the next append). {partition: offset of that record}."""
    from confluent_kafka import Producer
    alter_topic(bootstrap, topic, {"segment.ms": "1"})
    time.sleep(0.1)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0})
    offsets: dict[int, int] = {}

    def cb(err, msg):
        if err is not None:
            raise SystemExit(f"roll record failed: {err}")
        offsets[msg.partition()] = msg.offset()

    for part in range(partitions):
        p.produce(topic, b"roll", b"roll", partition=part, on_delivery=cb)
    assert p.flush(60) == 0
    alter_topic(bootstrap, topic, {"segment.ms": "604800000"})
    return offsets


def remote_logs(data: Path, topic: str, partition: int) -> list[Path]:
    """The uploaded .log objects of a partition, by base offset (local-directory store)."""
    return sorted((data / "remote" / "topics").glob(f"{topic}-*/{partition}/*.log"))


# --- Baselines -----------------------------------------------------------------------------------

def run_cat(files: list[Path]) -> tuple[float, float]:
    c0, t0 = children_cpu(), time.perf_counter()
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0, children_cpu() - c0


def run_zstd(files: list[Path], level: int) -> tuple[float, float, int]:
    """zstd -LEVEL -T1 of the files, concatenated, into a pipe; (seconds, CPU s, output bytes)."""
    c0, t0 = children_cpu(), time.perf_counter()
    p = subprocess.Popen(["zstd", f"-{level}", "-T1", "-q", "-c", *map(str, files)],
                         stdout=subprocess.PIPE)
    out = 0
    while chunk := p.stdout.read(1 << 20):
        out += len(chunk)
    if p.wait() != 0:
        raise SystemExit(f"zstd -{level} failed with {p.returncode}")
    return time.perf_counter() - t0, children_cpu() - c0, out


# --- Archive -------------------------------------------------------------------------------------

def describe(shale: Path, b: Broker) -> dict:
    r = subprocess.run([str(shale), "archive", "describe", TOPIC, "--json", "--data-dir",
                        str(b.data_dir), "--listen", b.bootstrap], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("SHALE_")})
    if r.returncode != 0:
        raise SystemExit(f"shale archive describe exited {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


PASS_RE = re.compile(r"archive pass finished.*$", re.M)


def pass_lines(text: str) -> list[dict[str, float]]:
    out = []
    for m in PASS_RE.finditer(text):
        fields = dict(re.findall(r"(\w+)=([0-9.]+)\b", m.group(0)))
        out.append({k: float(fields.get(k, 0)) for k in
                    ("files", "rows", "input_bytes", "output_bytes", "mib_per_second")})
    return out


def perf_top(perf_data: Path, limit: int = 15) -> list[str]:
    r = subprocess.run(["perf", "report", "-i", str(perf_data), "--stdio", "--no-children",
                        "--sort", "dso,symbol", "--percent-limit", "1"],
                       capture_output=True, text=True)
    rows = [ln.rstrip() for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    return [re.sub(r"( -)+$", "", re.sub(r"\s+", " ", ln).strip())[:150] for ln in rows[:limit]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shale", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--bytes", type=int, default=GIB, help="record value bytes to produce")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--segment-bytes", type=int, default=64 * MIB)
    ap.add_argument("--record-bytes", type=int, default=1024, help="value bytes per record")
    ap.add_argument("--compression", default="lz4",
                    choices=["none", "lz4", "zstd", "gzip", "snappy"])
    ap.add_argument("--file-bytes", type=int, default=128 * MIB, help="archive.file.bytes")
    ap.add_argument("--concurrency", type=int, default=1, help="archive_concurrency")
    ap.add_argument("--zstd-level", type=int, default=3, help="archive_zstd_level")
    ap.add_argument("--perf", action="store_true",
                    help="perf record the broker during the archive phase (costs CPU itself)")
    a = ap.parse_args()
    work = Path(a.workdir).resolve()
    shale = Path(a.shale)
    data = work / "data"
    settings = {
        "remote_log_manager_task_interval_ms": 1000,
        "log_segment_bytes": a.segment_bytes,
        "message_max_bytes": 8 << 20,
        "archive_enable": "false",
        "archive_max_lag_ms": 0,
        "archive_file_bytes": a.file_bytes,
        "archive_concurrency": a.concurrency,
        "archive_zstd_level": a.zstd_level,
    }
    status = 0
    b = Broker(shale, data, work / "shale.log", {}, settings)
    perf = None
    try:
        # --- 1. load --------------------------------------------------------------------------
        create_topic(b.bootstrap, TOPIC, a.partitions, {
            "segment.bytes": str(a.segment_bytes), "remote.storage.enable": "true",
            "archive.enable": "false", "retention.ms": "-1", "retention.bytes": "-1"})
        n = a.bytes // a.record_bytes
        log(f"producing {n} records of {a.record_bytes} B ({a.compression}) into {a.partitions} "
            f"partitions, {a.segment_bytes / MIB:.0f} MiB segments")
        gen = Records(a.record_bytes)
        cpu_p0 = b.cpu()
        sample = work / "records-sample.raw"
        produce_s, record_bytes = produce(b.bootstrap, TOPIC, a.partitions, n, gen, a.compression,
                                          sample, 256 * MIB)
        cpu_produce = b.cpu() - cpu_p0
        ends = {p: o - 1 for p, o in roll(b.bootstrap, TOPIC, a.partitions).items()}
        log(f"produced in {produce_s:.1f} s; rolled; waiting for the uploads up to {ends}")
        t0 = time.monotonic()
        while True:
            tiered = {p: r.offset for p, r in wire.list_offsets(
                "127.0.0.1", b.port, TOPIC, {p: -5 for p in range(a.partitions)}).items()}
            if all(tiered[p] == ends[p] for p in range(a.partitions)):
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit(f"uploads did not finish: tiered {tiered}, want {ends}")
            time.sleep(0.5)
        upload_wait = time.monotonic() - t0
        files = [f for p in range(a.partitions) for f in remote_logs(data, TOPIC, p)]
        seg_bytes = sum(f.stat().st_size for f in files)
        seg_mib = seg_bytes / MIB
        log(f"{len(files)} segments, {seg_mib:.0f} MiB uploaded {upload_wait:.1f} s after the roll")

        # --- 2. baselines (the broker idles meanwhile: its CPU is the loops' overhead) ----------
        time.sleep(1)
        idle_c0, idle_t0 = b.cpu(), time.monotonic()
        cat_s, cat_cpu = run_cat(files)
        zstd = {lvl: run_zstd(files, lvl) for lvl in (1, 3)}
        sample_mib = sample.stat().st_size / MIB
        zstd_raw = run_zstd([sample], 3)
        time.sleep(max(0.0, 5 - (time.monotonic() - idle_t0)))
        idle_rate = (b.cpu() - idle_c0) / (time.monotonic() - idle_t0)

        # --- 3. archive -----------------------------------------------------------------------
        mark = len(b.log_text())
        if a.perf:
            perf = subprocess.Popen(["perf", "record", "-F", "499", "-p", str(b.proc.pid), "-o",
                                     str(work / "perf.data")], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(1)
        threads0 = thread_cpu(b.proc.pid)
        cpu0, busy0, t0 = b.cpu(), machine_busy(), time.monotonic()
        alter_topic(b.bootstrap, TOPIC, {"archive.enable": "true",
                                         "archive.file.bytes": str(a.file_bytes),
                                         "archive.max.lag.ms": "0"})
        log("archive.enable=true; polling shale archive describe")
        polls = 0
        poll_cpu0 = children_cpu()
        while True:
            time.sleep(0.5)
            d = describe(shale, b)
            polls += 1
            got = {p["partition"]: p["archived_end_offset"] for p in d["partitions"]}
            if all(got.get(p) is not None and got[p] >= ends[p] for p in range(a.partitions)):
                break
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"archive did not finish: archived {got}, want {ends}")
        wall = time.monotonic() - t0
        cpu = b.cpu() - cpu0
        busy = machine_busy() - busy0
        threads1 = thread_cpu(b.proc.pid)
        poll_cpu = children_cpu() - poll_cpu0
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        time.sleep(0.5)  # the last pass's log line follows its manifest write
        passes = pass_lines(b.log_text()[mark:])

        parts = d["partitions"]
        rows = sum(p["rows"] for p in parts)
        nfiles = sum(len(p["files"]) for p in parts)
        in_bytes = sum(p["input_bytes"] for p in parts)
        out_bytes = sum(p["size_bytes"] for p in parts)
        in_mib, out_mib = in_bytes / MIB, out_bytes / MIB
        log_in = sum(x["input_bytes"] for x in passes)
        log_out = sum(x["output_bytes"] for x in passes)
        pass_s = sum(x["input_bytes"] / MIB / x["mib_per_second"] for x in passes
                     if x["mib_per_second"] > 0)
        checks: list[str] = []
        failures: list[str] = []
        if rows != n:
            failures.append(f"describe says {rows} rows, {n} records were produced")
        if (log_in, log_out, int(sum(x["files"] for x in passes))) != (in_bytes, out_bytes, nfiles):
            failures.append(f"log lines sum to {log_in:.0f} in / {log_out:.0f} out bytes, "
                            f"{sum(x['files'] for x in passes):.0f} files; describe "
                            f"{in_bytes} / {out_bytes}, {nfiles}")
        checks.append(f"describe: {rows} rows = records produced; {len(passes)} \"archive pass "
                      f"finished\" lines sum to the same input/output bytes and files")

        # --- 4. one file read with pyarrow ----------------------------------------------------
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        sample = max((f for p in parts for f in p["files"]), key=lambda f: f["rows"])
        path = data / "remote" / sample["path"]
        table = pq.read_table(path, columns=["offset", "key", "value", "headers"])
        meta = pq.read_metadata(path)
        lo, hi = pc.min(table["offset"]).as_py(), pc.max(table["offset"]).as_py()
        if (meta.num_rows, table.num_rows, lo, hi) != (sample["rows"], sample["rows"],
                                                       sample["first_offset"], sample["last_offset"]):
            failures.append(f"{sample['path']}: pyarrow {meta.num_rows} rows, offsets {lo}..{hi}; "
                            f"describe {sample['rows']} rows, {sample['first_offset']}.."
                            f"{sample['last_offset']}")
        checks.append(f"{sample['path'].split('/', 2)[-1]}: pyarrow reads {table.num_rows} rows "
                      f"in {meta.num_row_groups} row groups, offsets {lo}..{hi}, as describe says")
        bad_lines = [ln for ln in b.log_text().splitlines()
                     if re.search(r"\b(WARN|ERROR)\b", ln)]
        rc = b.stop()
        if rc != 0:
            failures.append(f"broker exit code on SIGTERM: {rc}")
    finally:
        if perf is not None and perf.poll() is None:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()

    per_core = in_mib / cpu
    raw_s, raw_cpu, raw_out = zstd_raw
    rec_mib = record_bytes / MIB
    top = sorted(((c - threads0.get(t, ("", 0.0))[1], name) for t, (name, c) in threads1.items()),
                 reverse=True)
    top_s = ", ".join(f"{name} {c:.1f}" for c, name in top[:4] if c >= 0.05)
    gone = cpu - sum(max(c, 0) for c, _ in top)
    print()
    print(f"Shale Parquet archive benchmark ({time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, "
          f"{os.cpu_count()} cores, release build, local store <data_dir>/remote)")
    print(f"  workload   : {n} records, {a.record_bytes} B JSON-ish values, key user-NNNNNN, 2 "
          f"headers = {rec_mib:.0f} MiB of records; producer {a.compression}; {a.partitions} "
          f"partitions, {a.segment_bytes / MIB:.0f} MiB segments; archive.file.bytes "
          f"{a.file_bytes / MIB:.0f} MiB, archive_concurrency {a.concurrency}, "
          f"archive_zstd_level {a.zstd_level}")
    print(f"  uploaded   : {len(files)} segments, {seg_mib:.1f} MiB of .log objects "
          f"(records / batches = {rec_mib / seg_mib:.2f}); produced in {produce_s:.1f} s (broker "
          f"CPU {cpu_produce:.1f} s), all uploaded {upload_wait:.1f} s after the roll")
    print(f"  read (cat) : {seg_mib / cat_s:8.1f} MiB/s          cat of the .log objects to "
          f"/dev/null, {cat_s:.2f} s, CPU {cat_cpu:.2f} s (page cache)")
    for lvl, (s, c, out) in zstd.items():
        print(f"  zstd -{lvl} -T1: {seg_mib / c:8.1f} MiB/s per core {seg_mib / s:6.1f} MiB/s wall, "
              f"{s:.1f} s, CPU {c:.1f} s; ratio {seg_bytes / out:.2f}")
    print(f"  zstd -3 raw: {sample_mib / raw_cpu:8.1f} MiB/s per core {sample_mib / raw_s:6.1f} MiB/s "
          f"wall, {raw_s:.1f} s, CPU {raw_cpu:.1f} s; ratio {sample_mib * MIB / raw_out:.2f} "
          f"(the first {sample_mib:.0f} MiB of the records, uncompressed)")
    print(f"  archive    : {per_core:8.1f} MiB/s per core {in_mib / wall:6.1f} MiB/s wall "
          f"({wall:.1f} s from the alter to the last manifest, passes {pass_s:.1f} s), broker CPU "
          f"{cpu:.1f} s")
    print(f"               = {rec_mib / cpu:.1f} MiB/s of uncompressed records per core, "
          f"{rec_mib / cpu / (sample_mib / raw_cpu) * 100:.0f} % of zstd -3 raw")
    print(f"               input {in_mib:.1f} MiB of record batches -> {out_mib:.1f} MiB of "
          f"Parquet (ratio {in_mib / out_mib:.2f}; {rec_mib / out_mib:.2f} of uncompressed "
          f"records), {rows} rows, {nfiles} files, {len(passes)} passes")
    print(f"               busiest broker threads (CPU s): {top_s}"
          + (f"; {gone:.1f} s in threads that exited" if gone >= 0.1 else ""))
    print(f"               idle broker (tiering + archive loops, 1 s interval): "
          f"{idle_rate * 1000:.0f} CPU-ms/s, ~{idle_rate * wall:.2f} s of the CPU above; "
          f"{polls} describe polls ({poll_cpu:.1f} CPU-s, outside the broker)")
    print(f"               machine: {busy:.1f} CPU-s busy over the {wall:.1f} s = "
          f"{busy / wall:.2f} of {os.cpu_count()} cores; {busy - cpu:.1f} s of it not the broker "
          f"(this script, the polls, anything else running)")
    if a.perf:
        print("  perf (broker, archive phase, --no-children, dso/symbol >= 1 %):")
        for ln in perf_top(work / "perf.data"):
            print(f"    {ln}")
    for c in checks:
        print(f"  check      : {c}")
    print(f"  shutdown   : {'clean (exit 0)' if rc == 0 else f'exit {rc}'}")
    if bad_lines:
        print(f"  broker log : {len(bad_lines)} WARN/ERROR lines, first: {bad_lines[0][:200]}")
    else:
        print("  broker log : no WARN or ERROR lines")
    print("  (MiB = 2^20 bytes of record batches as stored, the .log objects, unless it says "
          "uncompressed records: keys + values + header keys and values)")
    if failures:
        for f in failures:
            print(f"FAILED: {f}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
