"""The Parquet archive end to end: sealed segments tiered to the object store become
`archive/<topic>/partition=<p>/<first:020>-<last:020>.parquet` files in the same store, on the
local-directory default (<data_dir>/remote) and on SeaweedFS (S3).

Records are produced by librdkafka (every codec, one producer idempotent), kafka-python and the
Java client into small segments. Only sealed segments are tiered and archived, so after the
records under test each test produces filler records that roll the segment holding them, then
waits until every sealed segment is uploaded and archived (the archive's end equals the latest
tiered offset, right below the active segment). Then every file is read with pyarrow (one by one,
and as a hive-partitioned dataset) and with DuckDB, and compared row by row with what the clients
were told was stored: partition, offset, key, value, headers in order, timestamp and its type,
the batch columns (codec bits, base/max timestamps, offsets), producer ids and sequences. The
files of a partition must cover a dense run of offsets from the log start, with no offset twice,
each file's rows inside the range in its name; footers must say ZSTD, carry offset statistics
and the shale.* key-value metadata.

Also: SIGKILL in the middle of a several-MB archive backlog (several times), the JSON projection
(`archive.json.fields`), DeleteRecords and retention rewriting/deleting files, topic deletion,
`archive.enable=false` and untiered topics, and `shale archive describe`.

The brokers run the tiering and archive tasks every 500 ms with archive_max_lag_ms=0, so data is
archived as soon as its segment is uploaded; topics use 512 KiB segments and 200 kB files.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import subprocess
import time
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from clients import (
    CODECS, Delivered, Rec, cf_admin, cf_consume_all, cf_create_topic, cf_produce, cf_producer,
    end_offsets_of, kp_produce, make_records, now_ms, read_manifest, run_java, unique,
)
from conftest import shale_bin
from test_tiering import (  # noqa: F401  (backend and s3_env are fixtures used here)
    EARLIEST, LATEST, backend, error_lines_since, list_offsets, s3_env, start_tiered, tier_state,
)
from tiering_support import LocalStore, Store, wait_for

PARTITIONS = [0, 1, 2]
SEGMENT_BYTES = 512 << 10
FILE_BYTES = 200_000
# A batch larger than segment.bytes is refused (as by Kafka); librdkafka batches up to 1 MB.
BATCH = {"batch_size": 128 << 10}
ARCHIVE_WAIT_S = 120
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
NAME_RE = re.compile(r"^(\d{20})-(\d{20})\.parquet$")
PART_RE = re.compile(r"^partition=(\d+)$")
ATTR_LOG_APPEND_TIME = 0x08
ATTR_CONTROL = 0x20
ARCHIVE_ERRORS = r"(?i)archiv|parquet"


def topic_config(extra: dict | None = None, segment_bytes: int = SEGMENT_BYTES,
                 file_bytes: int = FILE_BYTES) -> dict:
    cfg = {"segment.bytes": str(segment_bytes), "archive.file.bytes": str(file_bytes),
           "retention.ms": "-1", "retention.bytes": "-1"}
    cfg.update(extra or {})
    return cfg


def start_archiving(factory, store: Store, start: bool = True, **settings):
    """A broker tiering and archiving to store every 500 ms, archiving as soon as uploaded."""
    return start_tiered(factory, store, start=start, **{"archive_max_lag_ms": 0, **settings})


# --- What was produced ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Want:
    """One record as a consumer sees it, and the codec its batch was produced with (if known;
    a tuple: any of these)."""
    key: bytes | None
    value: bytes | None
    headers: tuple
    timestamp: int
    timestamp_type: str = "CreateTime"
    codec: str | tuple | None = None


def wants(delivered: list[Delivered], codec: str | tuple | None = None) -> dict[tuple[int, int], Want]:
    return {(d.partition, d.offset): Want(d.rec.key, d.rec.value, tuple(d.rec.headers),
                                          d.rec.timestamp, "CreateTime", codec)
            for d in delivered}


def last_offsets(delivered: list[Delivered]) -> dict[int, int]:
    """partition -> the last offset of a record of interest (what must end up archived)."""
    return {p: end - 1 for p, end in end_offsets_of(delivered).items()}


def seal(bootstrap: str, topic: str, partitions, segment_bytes: int = SEGMENT_BYTES,
         tag: str = "filler") -> list[Delivered]:
    """Rolls the active segment of each partition: three incompressible records of over half a
    segment each, in separate batches, so the segment holding the records before them is sealed
    whether the log rolls before an append that does not fit or after one that fills it."""
    rng = random.Random(zlib.crc32(f"{topic}-{tag}".encode()))
    producer = cf_producer(bootstrap, linger_ms=0)
    out: list[Delivered] = []
    for p in partitions:
        for i in range(3):
            rec = Rec(f"{tag}-{p}-{i}".encode(), rng.randbytes(segment_bytes // 2 + 1024),
                      (("filler", str(i).encode()),), p, now_ms())
            got: list = []
            producer.produce(topic, key=rec.key, value=rec.value, headers=list(rec.headers),
                             partition=p, timestamp=rec.timestamp,
                             on_delivery=lambda err, msg: got.append((err, msg)))
            assert producer.flush(60) == 0, "filler record not delivered within 60 s"
            err, msg = got[0]
            assert err is None, f"filler record: {err}"
            out.append(Delivered(msg.partition(), msg.offset(), rec))
    return out


def binary_records(tag: str, count: int, size: int, partitions: int = 1,
                   ts_base: int | None = None) -> list[Rec]:
    """Incompressible values of `size` bytes, keyed, one header each, round-robin partitions."""
    rng = random.Random(zlib.crc32(tag.encode()))
    ts = now_ms() - 600_000 if ts_base is None else ts_base
    return [Rec(f"{tag}-{i}".encode(), rng.randbytes(size), (("i", str(i).encode()),),
                i % partitions, ts + i) for i in range(count)]


# --- What the store holds ------------------------------------------------------------------------

@dataclass(frozen=True)
class AFile:
    partition: int
    first: int
    last: int
    rel: str  # relative to the topic's archive dir: partition=<p>/<first>-<last>.parquet
    size: int


@dataclass
class Listing:
    files: list[AFile]
    strays: list[str]  # other objects an engine reading the directory would pick up

    def of(self, p: int) -> list[AFile]:
        return sorted((f for f in self.files if f.partition == p), key=lambda f: f.first)

    def end(self, p: int) -> int:
        """The last offset archived in partition p, -1 if none."""
        return max((f.last for f in self.files if f.partition == p), default=-1)


def norm_uuid(s: str) -> uuid.UUID:
    """A topic id in any usual spelling: hyphenated, 32 hex digits, or Kafka's base64."""
    s = s.strip()
    try:
        return uuid.UUID(s)
    except ValueError:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))


class ArchiveStore:
    """The archive in a tiering Store: listing, and reading with pyarrow (S3: S3FileSystem)."""

    def __init__(self, store: Store):
        self.store = store
        self._s3 = None

    @property
    def local(self) -> bool:
        return self.store.kind == "local"

    def fs_base(self):
        if self.local:
            assert self.store.root is not None, "no broker was started on this store yet"
            return pafs.LocalFileSystem(), str(self.store.root)
        if self._s3 is None:
            e = self.store.server_env
            scheme, _, hostport = e["SHALE_TEST_S3_ENDPOINT"].partition("://")
            self._s3 = pafs.S3FileSystem(
                access_key=e["AWS_ACCESS_KEY_ID"], secret_key=e["AWS_SECRET_ACCESS_KEY"],
                region=e.get("AWS_REGION", "us-east-1"), endpoint_override=hostport,
                scheme=scheme or "http")
        return self._s3, f"{self.store.bucket}/{self.store.prefix}"

    def topic_dir(self, topic: str) -> str:
        return f"{self.fs_base()[1]}/archive/{topic}"

    def keys(self, topic: str) -> dict[str, int]:
        """Every object under archive/<topic>/ (relative to it) -> size."""
        if self.local:
            root = self.store.root / "archive" / topic
            out = {}
            for dirpath, _dirs, names in os.walk(root):
                for n in names:
                    path = Path(dirpath) / n
                    try:
                        out[str(path.relative_to(root))] = path.stat().st_size
                    except FileNotFoundError:
                        pass
            return out
        prefix = f"archive/{topic}/"
        return {k[len(prefix):]: v for k, v in self.store.objects().under(prefix).items()}

    def listing(self, topic: str) -> Listing:
        files, strays = [], []
        for rel, size in sorted(self.keys(topic).items()):
            parts = rel.split("/")
            m = NAME_RE.match(parts[-1]) if len(parts) == 2 else None
            pm = PART_RE.match(parts[0]) if len(parts) == 2 else None
            if m and pm:
                files.append(AFile(int(pm[1]), int(m[1]), int(m[2]), rel, size))
                continue
            # pyarrow's dataset discovery skips names starting with "." or "_"; DuckDB's
            # */*.parquet glob takes any *.parquet two levels down.
            hidden = any(x.startswith((".", "_")) for x in parts)
            if not hidden or (len(parts) == 2 and parts[1].endswith(".parquet")):
                strays.append(rel)
        return Listing(files, strays)

    def read(self, topic: str, f: AFile):
        """(footer metadata, arrow schema, table) of one file."""
        fs, _ = self.fs_base()
        with fs.open_input_file(f"{self.topic_dir(topic)}/{f.rel}") as fh:
            pf = pq.ParquetFile(fh)
            return pf.metadata, pf.schema_arrow, pf.read()

    def dataset(self, topic: str):
        fs, _ = self.fs_base()
        return ds.dataset(self.topic_dir(topic), format="parquet", partitioning="hive",
                          filesystem=fs)

    def duckdb_source(self, con, topic: str) -> str:
        """A FROM clause for DuckDB: read_parquet over the files (local), or the pyarrow
        dataset handed to DuckDB (S3: this DuckDB has no httpfs)."""
        if self.local:
            return f"read_parquet('{self.topic_dir(topic)}/*/*.parquet', hive_partitioning=true)"
        con.register("archive_ds", self.dataset(topic))
        return "archive_ds"

    def topic_id(self, topic: str) -> uuid.UUID:
        ids = {k.split("/")[1][len(topic) + 1:] for k in self.store.objects().sizes
               if k.startswith(f"topics/{topic}-") and len(k.split("/")[1]) == len(topic) + 37}
        assert len(ids) == 1, f"topic ids of {topic} in the store: {ids}"
        return uuid.UUID(ids.pop())


# --- Rows ----------------------------------------------------------------------------------------

MISSING = "absent"


@dataclass(frozen=True)
class Row:
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: bytes | None
    value: bytes | None
    headers: tuple
    producer_id: int
    producer_epoch: int
    sequence: int
    batch_base_offset: int
    batch_last_offset_delta: int
    batch_partition_leader_epoch: int
    batch_attributes: int
    batch_base_timestamp: int
    batch_max_timestamp: int
    value_json: object = MISSING


def rows_of(table, partition: int | None = None) -> list[Row]:
    """Rows of an archive table (partition from the argument, or a hive `partition` column)."""
    names = table.column_names
    if "timestamp" in names:
        i = names.index("timestamp")
        table = table.set_column(i, "timestamp", table.column(i).cast(pa.int64()))
    out = []
    for d in table.to_pylist():
        out.append(Row(
            partition if partition is not None else d["partition"], d["offset"], d["timestamp"],
            d["timestamp_type"], d["key"], d["value"],
            tuple((h["key"], h["value"]) for h in d["headers"]),
            d["producer_id"], d["producer_epoch"], d["sequence"], d["batch_base_offset"],
            d["batch_last_offset_delta"], d["batch_partition_leader_epoch"],
            d["batch_attributes"], d["batch_base_timestamp"], d["batch_max_timestamp"],
            d.get("value_json", MISSING)))
    return out


def record_tuple(r) -> tuple:
    return (r.partition, r.offset, r.key, r.value, r.headers, r.timestamp, r.timestamp_type)


def preview(b: bytes | None) -> str:
    if b is None:
        return "null"
    return f"{len(b)}B:{b[:20].hex()}{'…' if len(b) > 20 else ''}"


JSON_TYPES = {"long": "int64", "string": "string", "double": "double", "boolean": "bool",
              "json": "string"}


def schema_problems(schema, json_fields: list[tuple[str, str]] | None) -> list[str]:
    """The file's Arrow schema against the spec (Parquet's BYTE_ARRAY may come back as the
    large_ variants; those are the same column to every engine)."""
    want = [("offset", "int64"), ("timestamp", "timestamp[ms, tz=UTC]"),
            ("timestamp_type", "string"), ("key", "binary"), ("value", "binary"),
            ("headers", "headers"), ("producer_id", "int64"), ("producer_epoch", "int16"),
            ("sequence", "int32"), ("batch_base_offset", "int64"),
            ("batch_last_offset_delta", "int32"), ("batch_partition_leader_epoch", "int32"),
            ("batch_attributes", "int16"), ("batch_base_timestamp", "int64"),
            ("batch_max_timestamp", "int64")]
    if json_fields:
        want.append(("value_json", "struct"))

    def norm(t) -> str:
        s = str(t)
        return {"large_string": "string", "large_binary": "binary",
                "timestamp[ms, tz=+00:00]": "timestamp[ms, tz=UTC]",
                "timestamp[ms, tz=Etc/UTC]": "timestamp[ms, tz=UTC]"}.get(s, s)

    problems = []
    got_names = schema.names
    if got_names != [n for n, _ in want]:
        problems.append(f"columns {got_names}, expected {[n for n, _ in want]}")
        return problems
    for name, kind in want:
        field = schema.field(name)
        t = field.type
        if kind == "headers":
            ok = (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type)
            st = t.value_type if ok else None
            if not ok or [st.field(i).name for i in range(st.num_fields)] != ["key", "value"] \
                    or norm(st.field(0).type) != "string" or norm(st.field(1).type) != "binary" \
                    or not st.field(1).nullable:
                problems.append(f"headers: {t}, expected list<struct<key: utf8, value: binary "
                                f"nullable>>")
        elif kind == "struct":
            fields = [(t.field(i).name, norm(t.field(i).type), t.field(i).nullable)
                      for i in range(t.num_fields)] if pa.types.is_struct(t) else None
            expect = [(n, JSON_TYPES[k], True) for n, k in json_fields]
            if fields != expect or not field.nullable:
                problems.append(f"value_json: {t} (nullable {field.nullable}), expected a "
                                f"nullable struct of {expect}")
        elif norm(t) != kind:
            problems.append(f"{name}: {t}, expected {kind}")
    for name in ("key", "value"):
        if not schema.field(name).nullable:
            problems.append(f"{name} is not nullable")
    if "partition" in got_names:
        problems.append("a physical partition column (the hive directory provides it)")
    return problems


@dataclass
class ArchiveRead:
    listing: Listing
    file_rows: dict[str, list[Row]]  # rel -> rows
    meta: dict[str, object]  # rel -> parquet FileMetaData
    schemas: dict[str, object]

    def rows(self, p: int) -> list[Row]:
        out = []
        for f in self.listing.of(p):
            out += self.file_rows[f.rel]
        return out

    def all_rows(self) -> list[Row]:
        return [r for p in sorted({f.partition for f in self.listing.files}) for r in self.rows(p)]


def read_archive(view: ArchiveStore, topic: str, attempts: int = 10) -> ArchiveRead:
    """Lists and reads every archive file of topic; lists again if a file vanished meanwhile."""
    for attempt in range(attempts):
        listing = view.listing(topic)
        file_rows, meta, schemas = {}, {}, {}
        try:
            for f in listing.files:
                md, schema, table = view.read(topic, f)
                file_rows[f.rel] = rows_of(table, f.partition)
                meta[f.rel], schemas[f.rel] = md, schema
        except OSError as e:  # a file deleted (retention) or replaced between list and read
            gone = isinstance(e, FileNotFoundError) or re.search(
                r"(?i)does not exist|not found|NoSuchKey", str(e))
            if attempt == attempts - 1 or not gone:
                raise
            time.sleep(0.2)
            continue
        return ArchiveRead(listing, file_rows, meta, schemas)
    raise AssertionError("unreachable")


def footer_problems(f: AFile, md, rows: list[Row], topic: str, topic_id: uuid.UUID | None) -> list[str]:
    where = f"{f.rel}"
    problems = []
    kv = {k.decode(errors="replace"): v.decode(errors="replace")
          for k, v in (md.metadata or {}).items()}
    for k, v in (("shale.archive.format", "1"), ("shale.topic", topic),
                 ("shale.partition", str(f.partition))):
        if kv.get(k) != v:
            problems.append(f"{where}: key-value metadata {k}={kv.get(k)!r}, expected {v!r}")
    if topic_id is not None:
        try:
            got = norm_uuid(kv.get("shale.topic_id", ""))
        except (ValueError, TypeError):
            got = kv.get("shale.topic_id")
        if got != topic_id:
            problems.append(f"{where}: shale.topic_id={kv.get('shale.topic_id')!r}, expected "
                            f"{topic_id}")
    if md.num_rows != len(rows):
        problems.append(f"{where}: footer says {md.num_rows} rows, read {len(rows)}")
    start = 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        bad = sorted({rg.column(j).compression for j in range(rg.num_columns)} - {"ZSTD"})
        if bad:
            problems.append(f"{where}: row group {i} has columns compressed with {bad}, not ZSTD")
        c0 = rg.column(0)
        group = rows[start:start + rg.num_rows]
        start += rg.num_rows
        if c0.path_in_schema != "offset":
            problems.append(f"{where}: column 0 is {c0.path_in_schema}, not offset")
            continue
        st = c0.statistics
        if not group:
            continue
        if st is None or not st.has_min_max:
            problems.append(f"{where}: row group {i}: no min/max statistics on offset")
        elif (st.min, st.max) != (group[0].offset, group[-1].offset):
            problems.append(f"{where}: row group {i}: offset statistics {st.min}..{st.max}, rows "
                            f"{group[0].offset}..{group[-1].offset}")
    return problems


def file_problems(f: AFile, rows: list[Row], exact_first: bool = True) -> list[str]:
    """A file's rows lie inside the range in its name, in increasing offset order, and (records
    being dense data records in these tests) end at its last offset and start at its first."""
    problems = []
    offsets = [r.offset for r in rows]
    if f.first > f.last:
        problems.append(f"{f.rel}: first offset after the last")
    if any(b <= a for a, b in zip(offsets, offsets[1:])):
        problems.append(f"{f.rel}: offsets not strictly increasing")
    outside = [o for o in offsets if not f.first <= o <= f.last]
    if outside:
        problems.append(f"{f.rel}: {len(outside)} rows outside its range, e.g. {outside[:5]}")
    if not rows:
        problems.append(f"{f.rel}: no rows")
    else:
        if offsets[-1] != f.last:
            problems.append(f"{f.rel}: last row at {offsets[-1]}, the name says {f.last}")
        if exact_first and offsets[0] != f.first:
            problems.append(f"{f.rel}: first row at {offsets[0]}, the name says {f.first}")
        if any(r.partition != f.partition for r in rows):
            problems.append(f"{f.rel}: rows of another partition")
    return problems


def check_archive(ar: ArchiveRead, topic: str, partitions, want: dict[tuple[int, int], Want],
                  need: dict[int, int], log_start: dict[int, int] | None = None,
                  topic_id: uuid.UUID | None = None, json_fields=None,
                  fresh_idempotent: bool = False) -> list[str]:
    """Every problem found in the archive of topic: layout, files, footers, rows against want.

    need: partition -> offset up to which every wanted record must be archived. log_start:
    nothing below it may be archived and rows must start exactly there (default 0).
    fresh_idempotent: every idempotent producer wrote only these records, all archived, so its
    sequences in each partition run 0, 1, 2, … in offset order."""
    problems: list[str] = []
    log_start = log_start or {}
    listing = ar.listing
    if listing.strays:
        problems.append(f"objects in the archive dir that are not <first>-<last>.parquet files in "
                        f"a partition=<p> dir (engines reading the dir pick them up): "
                        f"{listing.strays[:10]}")
    extra_parts = sorted({f.partition for f in listing.files} - set(partitions))
    if extra_parts:
        problems.append(f"files for partitions that do not exist: {extra_parts}")
    for f in listing.files:
        problems += schema_problems(ar.schemas[f.rel], json_fields)[:3]
        problems += footer_problems(f, ar.meta[f.rel], ar.file_rows[f.rel], topic, topic_id)
    for p in partitions:
        start = log_start.get(p, 0)
        files = listing.of(p)
        for a, b in zip(files, files[1:]):
            if b.first != a.last + 1:
                problems.append(f"partition {p}: {a.rel} then {b.rel}: "
                                f"{'overlap' if b.first <= a.last else 'gap'}")
        if files and not files[0].first <= start <= files[0].last:
            problems.append(f"partition {p}: the first file {files[0].rel} does not hold the log "
                            f"start {start}")
        for f in files:
            problems += file_problems(f, ar.file_rows[f.rel], exact_first=f.first >= start)
        rows = ar.rows(p)
        dups = [o for o, n in Counter(r.offset for r in rows).items() if n > 1]
        if dups:
            problems.append(f"partition {p}: offsets archived twice: {sorted(dups)[:10]}")
        offsets = sorted(r.offset for r in rows)
        end = listing.end(p)
        if offsets != list(range(start, end + 1)):
            missing = sorted(set(range(start, end + 1)) - set(offsets))
            extra = sorted(set(offsets) - set(range(start, end + 1)))
            problems.append(f"partition {p}: archived offsets are not exactly {start}..{end}: "
                            f"missing {missing[:10]} ({len(missing)}), unexpected {extra[:10]}")
        if end < need.get(p, -1):
            problems.append(f"partition {p}: archived up to {end}, records up to {need[p]} were "
                            f"produced and sealed")
        bad = 0
        for r in rows:
            w = want.get((p, r.offset))
            where = f"partition {p} offset {r.offset}"
            if w is None:
                problems.append(f"{where}: archived, but no record was acknowledged there")
                bad += 1
            else:
                diffs = []
                if r.key != w.key:
                    diffs.append(f"key {preview(r.key)} != produced {preview(w.key)}")
                if r.value != w.value:
                    diffs.append(f"value {preview(r.value)} != produced {preview(w.value)}")
                if r.headers != w.headers:
                    diffs.append(f"headers {r.headers!r:.200} != produced {w.headers!r:.200}")
                if (r.timestamp, r.timestamp_type) != (w.timestamp, w.timestamp_type):
                    diffs.append(f"timestamp {r.timestamp} {r.timestamp_type} != "
                                 f"{w.timestamp} {w.timestamp_type}")
                codecs = (w.codec,) if isinstance(w.codec, str) else w.codec
                if codecs and r.batch_attributes & 7 not in {CODEC_IDS[c] for c in codecs}:
                    diffs.append(f"batch_attributes {r.batch_attributes:#x}: codec bits "
                                 f"{r.batch_attributes & 7}, produced with {w.codec}")
                if diffs:
                    problems.append(f"{where}: " + "; ".join(diffs))
                    bad += 1
            if bad >= 20:
                problems.append("… (stopped comparing rows)")
                break
        archived = set(offsets)
        unarchived = sorted(wo for (wp, wo) in want
                            if wp == p and start <= wo <= need.get(p, -1) and wo not in archived)
        if unarchived:
            problems.append(f"partition {p}: {len(unarchived)} produced records not archived, "
                            f"first {unarchived[:10]}")
        problems += batch_problems(p, rows, start)
        problems += producer_problems(p, rows, fresh_idempotent)
    return problems


def batch_problems(p: int, rows: list[Row], start: int) -> list[str]:
    """The batch columns describe the stored batches: rows of one batch share them, cover its
    offsets (from the log start), and its max timestamp is its records' (or the append time)."""
    problems = []
    by_batch: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        by_batch[r.batch_base_offset].append(r)
    for base, rs in sorted(by_batch.items()):
        where = f"partition {p} batch {base}"
        shared = {(r.batch_last_offset_delta, r.batch_partition_leader_epoch, r.batch_attributes,
                   r.batch_base_timestamp, r.batch_max_timestamp, r.producer_id,
                   r.producer_epoch, r.timestamp_type) for r in rs}
        if len(shared) != 1:
            problems.append(f"{where}: rows disagree on the batch columns: {sorted(shared)[:3]}")
            continue
        delta, _epoch, attrs, base_ts, max_ts, _pid, _pe, tt = shared.pop()
        offsets = [r.offset for r in rs]
        if offsets != list(range(max(base, start), base + delta + 1)):
            problems.append(f"{where}: last_offset_delta {delta} but rows at {offsets[:5]}…"
                            f"{offsets[-1:]} ({len(offsets)} rows)")
        if attrs & ATTR_CONTROL:
            problems.append(f"{where}: a control batch archived as data (attributes {attrs:#x})")
        if bool(attrs & ATTR_LOG_APPEND_TIME) != (tt == "LogAppendTime"):
            problems.append(f"{where}: attributes {attrs:#x} but timestamp_type {tt}")
        if tt == "LogAppendTime":
            if any(r.timestamp != max_ts for r in rs):
                problems.append(f"{where}: LogAppendTime rows with a timestamp other than the "
                                f"batch's {max_ts}")
        elif tt == "CreateTime":
            if max_ts != max(r.timestamp for r in rs):
                problems.append(f"{where}: batch_max_timestamp {max_ts}, its records' max "
                                f"{max(r.timestamp for r in rs)}")
            if offsets[0] == base and base_ts != rs[0].timestamp:
                problems.append(f"{where}: batch_base_timestamp {base_ts}, the first record's "
                                f"timestamp {rs[0].timestamp}")
        else:
            problems.append(f"{where}: timestamp_type {tt!r}")
        if len(problems) > 10:
            break
    return problems


def producer_problems(p: int, rows: list[Row], fresh_idempotent: bool) -> list[str]:
    problems = []
    by_pid: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        if r.producer_id < 0:
            if (r.producer_id, r.producer_epoch, r.sequence) != (-1, -1, -1):
                problems.append(f"partition {p} offset {r.offset}: not idempotent but producer "
                                f"{r.producer_id} epoch {r.producer_epoch} sequence {r.sequence}")
                break
        else:
            by_pid[r.producer_id].append(r)
    for pid, rs in by_pid.items():
        seqs = [r.sequence for r in rs]
        first = 0 if fresh_idempotent else seqs[0]
        if seqs != list(range(first, first + len(seqs))):
            problems.append(f"partition {p} producer {pid}: sequences {seqs[:8]}… in offset "
                            f"order, expected {first}, {first + 1}, …")
        if any(r.producer_epoch < 0 for r in rs):
            problems.append(f"partition {p} producer {pid}: negative producer_epoch")
    return problems


def assert_no_problems(problems: list[str], what: str) -> None:
    assert not problems, f"{len(problems)} problems in {what}:\n" + "\n".join(problems[:40])


# --- Waiting -------------------------------------------------------------------------------------

def wait_settled(broker, view: ArchiveStore, topic: str, partitions, need: dict[int, int],
                 timeout: float = ARCHIVE_WAIT_S) -> Listing:
    """Waits until, in every partition, every sealed segment is uploaded (the latest tiered
    offset is right below the active segment), the archive ends exactly there, and that is at
    or past need[p]. Nothing changes after that until the next append."""
    last: list = []

    def check():
        # The broker stops uploading a fenced partition until it restarts: no use waiting.
        fenced = error_lines_since(broker, 0, r"another writer owns|is fenced")
        assert not fenced, (f"tiering of a partition was fenced while waiting for {topic} to be "
                            f"archived:\n" + "\n".join(fenced[:3]) + f"\n{broker.log_tail(40)}")
        state = tier_state(broker, topic, partitions)
        listing = view.listing(topic)
        last[:] = [state, listing]
        for p in partitions:
            active = state.local[p][-1][0] if state.local[p] else 0
            if not (state.tiered[p] == active - 1 == listing.end(p) >= need.get(p, -1)):
                return None
        return listing

    def describe():
        if not last:
            return "?"
        state, listing = last
        return (f"{topic} to be archived up to its sealed end (records up to {need}): "
                f"{state.describe()}; archive ends "
                f"{ {p: listing.end(p) for p in partitions} } ({len(listing.files)} files)\n"
                f"{broker.log_tail(40)}")

    return wait_for(check, timeout, describe, interval=0.25)


def alter_topic(bootstrap: str, topic: str, **configs: str) -> None:
    """IncrementalAlterConfigs SET on a topic (config names with _ for .)."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    entries = [ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
               for k, v in configs.items()]
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    admin = cf_admin(bootstrap)
    list(admin.incremental_alter_configs([res]).values())[0].result(30)


# --- `shale archive` -----------------------------------------------------------------------------

def archive_cli(view: ArchiveStore, broker, *args, bootstrap: bool = True,
                store_flags: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """`shale archive ARGS` pointed at the broker's store (--data-dir for the local default, the
    broker's remote_storage_* flags and AWS_* env for S3) and at the broker."""
    cmd = [str(shale_bin()), "archive", *map(str, args)]
    if store_flags:
        if view.local:
            cmd += ["--data-dir", str(broker.data_dir)]
        else:
            for k, v in view.store.settings().items():
                v = ("true" if v else "false") if isinstance(v, bool) else v
                cmd.append(f"--{k.replace('_', '-')}={v}")
    if bootstrap:
        cmd += ["--bootstrap-server", broker.bootstrap]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHALE_")}
    env.update(view.store.env())
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def describe_json(view: ArchiveStore, broker, topic: str, **kw) -> dict:
    proc = archive_cli(view, broker, "describe", topic, "--json", **kw)
    assert proc.returncode == 0, (f"shale archive describe {topic} --json exited "
                                  f"{proc.returncode}\n{proc.args}\nstdout: {proc.stdout[-3000:]}\n"
                                  f"stderr: {proc.stderr[-3000:]}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"describe --json printed no JSON object ({e}):\n{proc.stdout[-3000:]}")


def describe_problems(report: dict, view: ArchiveStore, broker, topic: str, partitions,
                      ar: ArchiveRead) -> list[str]:
    """`describe --json` against what pyarrow read and the broker's log end offsets."""
    problems = []
    if report.get("topic") != topic:
        problems.append(f"topic {report.get('topic')!r}")
    try:
        if norm_uuid(str(report.get("topic_id"))) != view.topic_id(topic):
            problems.append(f"topic_id {report.get('topic_id')}, expected {view.topic_id(topic)}")
    except ValueError:
        problems.append(f"topic_id {report.get('topic_id')!r} is not a UUID")
    if not str(report.get("archive_dir", "")).rstrip("/").endswith(f"archive/{topic}"):
        problems.append(f"archive_dir {report.get('archive_dir')!r} does not end with "
                        f"archive/{topic}")
    parts = {x.get("partition"): x for x in report.get("partitions", [])}
    if sorted(parts) != sorted(partitions):
        problems.append(f"partitions {sorted(parts)}, expected {sorted(partitions)}")
        return problems
    latest = list_offsets(broker, topic, partitions, LATEST)
    for p in partitions:
        x = parts[p]
        files = ar.listing.of(p)
        got = sorted(x.get("files", []), key=lambda g: g.get("first_offset", -1))
        if len(got) != len(files):
            problems.append(f"partition {p}: {len(got)} files reported, {len(files)} in the store")
        for f, g in zip(files, got):
            rows = ar.file_rows[f.rel]
            ts = [r.timestamp for r in rows]
            expect = {"first_offset": f.first, "last_offset": f.last, "rows": len(rows),
                      "size_bytes": f.size, "min_timestamp": min(ts) if ts else None,
                      "max_timestamp": max(ts) if ts else None}
            diff = {k: (g.get(k), v) for k, v in expect.items() if g.get(k) != v}
            if diff:
                problems.append(f"partition {p} file {f.rel}: reported vs read {diff}")
            if not str(g.get("path", "")).endswith(f"archive/{topic}/{f.rel}"):
                problems.append(f"partition {p}: file path {g.get('path')!r} does not end with "
                                f"archive/{topic}/{f.rel}")
        end = files[-1].last if files else None
        expect = {"archived_end_offset": end, "log_end_offset": latest[p],
                  "lag": latest[p] - (end + 1) if end is not None else latest[p],
                  "rows": sum(len(ar.file_rows[f.rel]) for f in files),
                  "size_bytes": sum(f.size for f in files)}
        diff = {k: (x.get(k), v) for k, v in expect.items() if x.get(k) != v}
        if diff:
            problems.append(f"partition {p}: reported vs expected {diff}")
    return problems


# --- Engines -------------------------------------------------------------------------------------

def dataset_tuples(view: ArchiveStore, topic: str, listing: Listing) -> list[tuple]:
    """Every row through pyarrow.dataset over the topic's directory (hive partitioning)."""
    dset = view.dataset(topic)
    base = view.topic_dir(topic)
    found = sorted(str(f)[len(base) + 1:] if str(f).startswith(base) else str(f)
                   for f in dset.files)
    assert found == sorted(f.rel for f in listing.files), (
        f"pyarrow.dataset over {base} found other files than the archive's:\n{found}\n"
        f"vs {sorted(f.rel for f in listing.files)}")
    assert "partition" in dset.schema.names, dset.schema
    return sorted(record_tuple(r) for r in rows_of(dset.to_table()))


DUCK_SELECT = ('SELECT "partition", "offset", "key", "value", headers, '
               'epoch_ms("timestamp") AS ts, timestamp_type FROM {src}')


def duckdb_tuples(view: ArchiveStore, topic: str, where: str = "") -> list[tuple]:
    con = duckdb.connect()
    try:
        src = view.duckdb_source(con, topic)
        got = con.execute(DUCK_SELECT.format(src=src) + (f" WHERE {where}" if where else "")
                          + ' ORDER BY 1, 2').fetchall()
    finally:
        con.close()
    return [(int(p), o, k, v, tuple((h["key"], h["value"]) for h in hs), ts, tt)
            for p, o, k, v, hs, ts, tt in got]


# --- 1. Every codec, both backends -----------------------------------------------------------

def test_every_codec_archived(backend, broker_factory):
    """librdkafka records in every codec (keyed and null-key, tombstones, empty values, 0–6 headers incl. null values; the zstd producer idempotent) across 3 partitions end up in several Parquet files per partition: pyarrow (per file and as a hive dataset) and DuckDB read exactly the acknowledged records, each offset once, dense from 0, each file within the range in its name, batch and producer columns right; footers ZSTD with offset statistics and shale.* metadata; `shale archive describe --json` agrees."""
    store = backend.new_store()
    view = ArchiveStore(store)
    b = start_archiving(broker_factory, store)
    topic = unique("arch-codecs")
    cf_create_topic(b.bootstrap, topic, len(PARTITIONS), topic_config())
    ts = now_ms() - 3_600_000
    want: dict = {}
    data: list[Delivered] = []
    for i, codec in enumerate(CODECS):
        recs = make_records(f"{codec}", 200, seed=zlib.crc32(f"arch-{codec}".encode()),
                            ts_base=ts + i * 200 * 10, partitions=len(PARTITIONS))
        conf = {"enable_idempotence": True} if codec == "zstd" else {}
        got = cf_produce(b.bootstrap, topic, recs, codec, **BATCH, **conf)
        # librdkafka, like kafka-python, sends a batch uncompressed when compressing it does not
        # make it smaller (a batch of one or two records); the broker stores what it receives.
        want.update(wants(got, (codec, "none")))
        data += got
    need = last_offsets(data)
    fill = seal(b.bootstrap, topic, PARTITIONS)
    want.update(wants(fill, "none"))
    t0 = time.monotonic()
    wait_settled(b, view, topic, PARTITIONS, need)
    settled_s = time.monotonic() - t0

    ar = read_archive(view, topic)
    tid = view.topic_id(topic)
    assert_no_problems(check_archive(ar, topic, PARTITIONS, want, need, topic_id=tid,
                                     fresh_idempotent=True), f"the archive of {topic}")
    for p in PARTITIONS:
        assert len(ar.listing.of(p)) >= 2, (
            f"partition {p}: only {[f.rel for f in ar.listing.of(p)]} with archive.file.bytes "
            f"{FILE_BYTES}: files are not cut by size")
    assert any(r.producer_id >= 0 for r in ar.all_rows()), "no row of the idempotent producer"
    # Small batches may go uncompressed, but each codec's producer stored most in its codec.
    seen_codecs = {r.batch_attributes & 7 for r in ar.all_rows()}
    assert {CODEC_IDS[c] for c in CODECS} <= seen_codecs, (
        f"codec bits seen in the archive: {sorted(seen_codecs)}; every producer codec should "
        f"appear ({CODECS})")

    # The same rows through pyarrow.dataset and DuckDB over the directory.
    per_file = sorted(record_tuple(r) for r in ar.all_rows())
    assert dataset_tuples(view, topic, ar.listing) == per_file, "pyarrow.dataset rows differ"
    duck = duckdb_tuples(view, topic)
    assert duck == per_file, (
        f"DuckDB rows differ from the files' ({len(duck)} vs {len(per_file)}), first difference: "
        f"{next(((a, b) for a, b in zip(duck, per_file) if a != b), None)!r:.600}")

    # Pruning by partition and offset gives exactly those rows.
    f = ar.listing.of(1)[1]
    lo, hi = f.first + 1, f.last + 3
    want_slice = [t for t in per_file if t[0] == 1 and lo <= t[1] <= hi]
    pruned = view.dataset(topic).to_table(
        filter=(ds.field("partition") == 1) & (ds.field("offset") >= lo) & (ds.field("offset") <= hi))
    assert sorted(record_tuple(r) for r in rows_of(pruned)) == want_slice
    assert duckdb_tuples(view, topic, f'"partition" = 1 AND "offset" BETWEEN {lo} AND {hi}') \
        == want_slice

    report = describe_json(view, b, topic)
    assert_no_problems(describe_problems(report, view, b, topic, PARTITIONS, ar),
                       "shale archive describe --json")
    assert not error_lines_since(b, 0, ARCHIVE_ERRORS), error_lines_since(b, 0, ARCHIVE_ERRORS)
    print(f"[{backend.name}] {len(data)} records + {len(fill)} fillers; archived {settled_s:.1f}s "
          f"after the last append: {len(ar.listing.files)} files, "
          f"{sum(f.size for f in ar.listing.files)} B")


# --- 2. kafka-python, Java, LogAppendTime ----------------------------------------------------

def test_other_clients_and_log_append_time(broker_factory, java_cmd, tmp_path):
    """kafka-python (gzip, lz4) and the Java client (snappy, zstd, idempotent) records are archived exactly; on a LogAppendTime topic the rows carry the append time consumers see, typed LogAppendTime."""
    store = LocalStore()
    view = ArchiveStore(store)
    b = start_archiving(broker_factory, store)
    topic = unique("arch-clients")
    lat = unique("arch-lat")
    cf_create_topic(b.bootstrap, topic, len(PARTITIONS), topic_config())
    cf_create_topic(b.bootstrap, lat, 1, topic_config({"message.timestamp.type": "LogAppendTime"}))

    want: dict = {}
    data: list[Delivered] = []
    ts = now_ms() - 1_800_000
    for i, codec in enumerate(["gzip", "lz4"]):
        recs = make_records(f"kp-{codec}", 150, seed=300 + i, ts_base=ts + i * 1500)
        got = kp_produce(b.bootstrap, topic, recs, codec)
        # kafka-python sends a batch uncompressed when compressing does not make it smaller.
        want.update(wants(got, (codec, "none")))
        data += got
    java_codecs = ["snappy", "zstd"]
    manifest = tmp_path / "java.manifest"
    run_java(java_cmd, "produce", b.bootstrap, topic, ",".join(java_codecs), 150, 11, manifest)
    java = read_manifest(manifest)
    assert len(java) == 150 * len(java_codecs)
    for i, codec in enumerate(java_codecs):
        want.update(wants(java[i * 150:(i + 1) * 150], codec))
    data += java

    lat_recs = make_records("lat", 300, seed=77, ts_base=now_ms() - 7_200_000, partitions=1)
    lat_data = cf_produce(b.bootstrap, lat, lat_recs, "lz4", **BATCH)

    need = last_offsets(data)
    want.update(wants(seal(b.bootstrap, topic, PARTITIONS), "none"))
    lat_fill = seal(b.bootstrap, lat, [0])
    wait_settled(b, view, topic, PARTITIONS, need)
    wait_settled(b, view, lat, [0], last_offsets(lat_data))

    ar = read_archive(view, topic)
    assert_no_problems(check_archive(ar, topic, PARTITIONS, want, need,
                                     topic_id=view.topic_id(topic), fresh_idempotent=True),
                       "the archive of kafka-python and Java records")
    java_rows = [r for r in ar.all_rows() if (r.partition, r.offset) in wants(java)]
    assert java_rows and all(r.producer_id >= 0 for r in java_rows), (
        "rows of the idempotent Java producer without a producer id")

    # What a consumer sees on the LogAppendTime topic is what the archive must hold.
    consumed = cf_consume_all(b.bootstrap, lat, [0], end_offsets_of(lat_data + lat_fill))[0]
    assert len(consumed) == len(lat_data + lat_fill)
    assert all(c.timestamp_type == "append" for c in consumed)
    assert all(c.timestamp > now_ms() - 600_000 for c in consumed), "not the append time"
    lat_want = {(0, c.offset): Want(c.key, c.value, tuple(c.headers), c.timestamp,
                                    "LogAppendTime", None) for c in consumed}
    lar = read_archive(view, lat)
    assert_no_problems(check_archive(lar, lat, [0], lat_want, last_offsets(lat_data),
                                     topic_id=view.topic_id(lat)),
                       "the archive of the LogAppendTime topic")
    assert all(r.timestamp_type == "LogAppendTime" for r in lar.all_rows())
    assert not error_lines_since(b, 0, ARCHIVE_ERRORS), error_lines_since(b, 0, ARCHIVE_ERRORS)


# --- 3. SIGKILL in the middle of the archive job ---------------------------------------------

def test_sigkill_during_archive_backlog(broker_factory):
    """A ~6 MB backlog is uploaded with archiving off, then archived in ~100 small files; the broker is SIGKILLed as soon as the job has made progress, up to three times. At every look, no offset is in two visible files and every file reads whole; at the end every offset is archived exactly once, dense, equal to what was produced."""
    store = LocalStore()
    view = ArchiveStore(store)
    seg = 1 << 20
    b = start_archiving(broker_factory, store, archive_enable=False, archive_concurrency=1)
    topic = unique("arch-crash")
    parts = [0, 1]
    cf_create_topic(b.bootstrap, topic, len(parts),
                    topic_config(segment_bytes=seg, file_bytes=64 * 1024))
    # Small batches, so files (cut at the first batch boundary after 64 KiB) stay small.
    data = cf_produce(b.bootstrap, topic, binary_records("crash", 3000, 2000, len(parts)),
                      "none", batch_size=16384)
    want = wants(data, "none")
    need = last_offsets(data)
    want.update(wants(seal(b.bootstrap, topic, parts, segment_bytes=seg), "none"))

    def uploaded():
        st = tier_state(b, topic, parts)
        return all(st.tiered[p] >= need[p] for p in parts)

    wait_for(uploaded, ARCHIVE_WAIT_S, lambda: f"the backlog to be uploaded: "
             f"{tier_state(b, topic, parts).describe()}\n{b.log_tail(30)}")
    time.sleep(1.5)  # three task intervals with archiving off
    assert view.listing(topic).files == [], "archived although archive_enable=false"

    b.settings["archive_enable"] = True
    b.restart()
    violations: list[str] = []
    checked: dict[str, int] = {}  # rel -> size when read
    kills: list[str] = []
    looks = 0
    progress_mark = 0  # files seen when the current run started
    t0 = time.monotonic()
    deadline = t0 + ARCHIVE_WAIT_S
    while True:
        listing = view.listing(topic)
        looks += 1
        for p in parts:
            files = listing.of(p)
            for a, c in zip(files, files[1:]):
                if c.first <= a.last:
                    violations.append(f"look {looks} (after {len(kills)} kills): {a.rel} and "
                                      f"{c.rel} overlap")
        for f in listing.files:
            if checked.get(f.rel) == f.size:
                continue
            try:
                md, _schema, table = view.read(topic, f)
            except FileNotFoundError:
                continue
            except Exception as e:  # noqa: BLE001  a partial or corrupt visible file
                violations.append(f"look {looks}: {f.rel} ({f.size} B) does not read: {e}")
                checked[f.rel] = f.size
                continue
            rows = rows_of(table, f.partition)
            problems = file_problems(f, rows)
            if md.num_rows != len(rows):
                problems.append(f"{f.rel}: footer {md.num_rows} rows, read {len(rows)}")
            violations += [f"look {looks}: {x}" for x in problems]
            checked[f.rel] = f.size
        done = all(listing.end(p) >= need[p] for p in parts)
        if done:
            break
        if len(kills) < 3 and b.alive() and len(listing.files) > progress_mark:
            b.kill()
            kills.append(f"{time.monotonic() - t0:.1f}s: {len(listing.files)} files, ends "
                         f"{ {p: listing.end(p) for p in parts} }")
            progress_mark = len(listing.files)
            b.start()
        assert time.monotonic() < deadline, (
            f"the archive did not catch up within {ARCHIVE_WAIT_S}s: ends "
            f"{ {p: listing.end(p) for p in parts} }, need {need}; kills: {kills}\n{b.log_tail(40)}")
        time.sleep(0.02)
    total = len(view.listing(topic).files)
    print(f"archived {total} files in {time.monotonic() - t0:.1f}s with {len(kills)} SIGKILLs "
          f"({looks} looks): {kills}")
    assert kills, (f"the archive job finished ({total} files) before the first file was seen: "
                   f"the backlog is too small to kill the job in its middle")
    assert not violations, "\n".join(violations[:30])

    wait_settled(b, view, topic, parts, need)
    ar = read_archive(view, topic)
    assert_no_problems(check_archive(ar, topic, parts, want, need, topic_id=view.topic_id(topic)),
                       f"the archive after {len(kills)} SIGKILLs")
    assert dataset_tuples(view, topic, ar.listing) == sorted(record_tuple(r) for r in ar.all_rows())
    assert duckdb_tuples(view, topic) == sorted(record_tuple(r) for r in ar.all_rows())


# --- 4. JSON projection --------------------------------------------------------------------------

JSON_FIELDS = [("id", "long"), ("name", "string"), ("price", "double"), ("ok", "boolean"),
               ("tags", "json")]
JSON_VALUES: list[bytes | None] = [
    b'{"id": 1, "name": "widget", "price": 9.5, "ok": true, "tags": ["a", "b"]}',
    json.dumps({"id": -42, "name": "h\u00e4agen \u00e9 \U0001f600", "price": 0, "ok": False,
                "tags": {"z": 1, "a": [1, None, "x"]}}, ensure_ascii=False).encode(),
    b'{"id": "7", "name": 5, "price": "cheap", "ok": "true", "tags": "just text"}',
    b'{"id": 1.5, "price": 3, "name": true, "tags": 12.25}',
    b'{"id": 9223372036854775807, "name": {"first": "a", "n": [1]}, "price": -0.125}',
    b'{"id": 9223372036854775808, "name": [1, 2], "ok": false}',
    b'{"id": null, "name": null, "price": null, "ok": null, "tags": null}',
    b'{"other": {"id": 5, "deep": [1, 2, {"ok": true}]}, "id": 2, "name": "\\"quoted\\"\\n"}',
    b'{}',
    b'  {"id": 3, "price": 1e3}\n ',
    b'{"id": 1,',
    b'{"id": 1} trailing',
    b'[1, 2, 3]',
    b'[{"id": 1}]',
    b'"a string"',
    b'42',
    b'null',
    b'true',
    b'',
    None,
    b'\xff\xfe{"id": 1}',
    b'not json at all',
    ('{"id": 77, "name": "' + "x" * 5000 + '", "tags": ' + json.dumps(list(range(300)))
     + '}').encode(),
]


def project(value: bytes | None) -> dict | None:
    """The spec's value_json for a value: null unless a JSON object; long: an integer that fits
    in an int64; double: any number; boolean: true/false; string: a JSON string, any other
    non-null JSON value as its JSON text; json: the JSON text of any non-null value.
    (JSON texts are compared by meaning, see json_matches.)"""
    if value is None:
        return None
    try:
        obj = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    out = {}
    for name, kind in JSON_FIELDS:
        v = obj.get(name)
        if kind == "long":
            out[name] = v if isinstance(v, int) and not isinstance(v, bool) \
                and -2**63 <= v < 2**63 else None
        elif kind == "double":
            out[name] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        elif kind == "boolean":
            out[name] = v if isinstance(v, bool) else None
        elif kind == "string":
            out[name] = None if v is None else v if isinstance(v, str) else ("json", v)
        else:
            out[name] = None if v is None else ("json", v)
    return out


def json_matches(got, expect) -> bool:
    if isinstance(expect, tuple) and expect and expect[0] == "json":
        try:
            return isinstance(got, str) and json.loads(got) == expect[1]
        except ValueError:
            return False
    if isinstance(expect, float) or isinstance(got, float):
        return type(got) is float and got == expect
    return type(got) is type(expect) and got == expect


def test_json_projection(broker_factory):
    """archive.json.fields projects top-level fields of JSON-object values into typed value_json columns (long, string, double, boolean, json): right types in the schema, right values (wrong types and unfitting numbers null) in pyarrow and in DuckDB (value_json.id …); values that are not JSON objects (invalid JSON, arrays, scalars, empty, tombstones, non-UTF-8) get a null value_json and keep their raw value; a bad archive.json.fields is refused."""
    from confluent_kafka.admin import NewTopic

    store = LocalStore()
    view = ArchiveStore(store)
    b = start_archiving(broker_factory, store)
    spec = ",".join(f"{n}:{t}" for n, t in JSON_FIELDS)
    topic = unique("arch-json")
    cf_create_topic(b.bootstrap, topic, 1, topic_config({"archive.json.fields": spec}))
    ts = now_ms() - 600_000
    recs = [Rec(f"k{i}".encode(), v, (), 0, ts + i) for i, v in enumerate(JSON_VALUES * 3)]
    data = cf_produce(b.bootstrap, topic, recs, "lz4", **BATCH)
    want = wants(data, "lz4")
    need = last_offsets(data)
    fill = seal(b.bootstrap, topic, [0])
    want.update(wants(fill, "none"))
    wait_settled(b, view, topic, [0], need)

    ar = read_archive(view, topic)
    assert_no_problems(check_archive(ar, topic, [0], want, need, topic_id=view.topic_id(topic),
                                     json_fields=JSON_FIELDS), "the archive of the JSON topic")
    fill_offsets = {d.offset for d in fill}
    problems = []
    for r in ar.all_rows():
        if r.offset in fill_offsets:
            expect = None
        else:
            expect = project(want[(0, r.offset)].value)
        got = r.value_json
        if expect is None or got is None:
            ok = expect is None and got is None
        else:
            ok = set(got) == {n for n, _ in JSON_FIELDS} and all(
                json_matches(got[n], expect[n]) if expect[n] is not None else got[n] is None
                for n, _ in JSON_FIELDS)
        if not ok:
            problems.append(f"offset {r.offset} value {preview(r.value)} "
                            f"{(r.value or b'')[:80]!r}: value_json {got!r:.300}, expected "
                            f"{expect!r:.300}")
    assert not problems, "\n".join(problems[:30])

    # DuckDB sees the typed struct and queries its fields.
    con = duckdb.connect()
    try:
        src = view.duckdb_source(con, topic)
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()}
        assert str(types.get("value_json")).replace('"', "") == (
            "STRUCT(id BIGINT, name VARCHAR, price DOUBLE, ok BOOLEAN, tags VARCHAR)"), types
        got = con.execute(
            f'SELECT "offset", value_json IS NULL, value_json.id, value_json.name, '
            f'value_json.price, value_json.ok, value_json.tags FROM {src} ORDER BY 1').fetchall()
        n_ok = con.execute(f"SELECT count(*) FROM {src} WHERE value_json.ok").fetchone()[0]
    finally:
        con.close()
    by_offset = {r.offset: r for r in ar.all_rows()}
    assert [g[0] for g in got] == sorted(by_offset)
    for off, is_null, *fields in got:
        vj = by_offset[off].value_json
        assert is_null == (vj is None), (off, is_null, vj)
        if vj is not None:
            assert tuple(fields) == tuple(vj[n] for n, _ in JSON_FIELDS), (off, fields, vj)
    assert n_ok == sum(1 for r in ar.all_rows() if r.value_json and r.value_json["ok"] is True) == 3

    # A projection that does not parse is refused like any bad topic config.
    for bad in ("id:date", "id", "id:long,id:string"):
        admin = cf_admin(b.bootstrap)
        t = unique("arch-badjson")
        fs = admin.create_topics([NewTopic(t, 1, 1, config={"archive.json.fields": bad})],
                                 request_timeout=30)
        with pytest.raises(Exception) as e:
            fs[t].result(30)
        assert "archive.json.fields" in str(e.value), f"{bad!r}: {e.value}"
    assert not error_lines_since(b, 0, ARCHIVE_ERRORS), error_lines_since(b, 0, ARCHIVE_ERRORS)


# --- 5. DeleteRecords, retention, topic deletion ---------------------------------------------

def produce_archived(b, view: ArchiveStore, topic: str, count: int = 600, size: int = 1500,
                     partitions=(0,)):
    """count incompressible records in small batches, sealed and archived; returns (want,
    need, ArchiveRead) after checking the archive."""
    data = cf_produce(b.bootstrap, topic, binary_records(topic, count, size, len(partitions)),
                      "none", batch_size=16384)
    want = wants(data, "none")
    need = last_offsets(data)
    want.update(wants(seal(b.bootstrap, topic, list(partitions)), "none"))
    wait_settled(b, view, topic, list(partitions), need)
    ar = read_archive(view, topic)
    assert_no_problems(check_archive(ar, topic, list(partitions), want, need,
                                     topic_id=view.topic_id(topic)), f"the archive of {topic}")
    return want, need, ar


def wait_archive_from(b, view: ArchiveStore, topic: str, rewrite: bool, timeout: float = 60):
    """Waits until the partition's log start has moved (stable over three looks) and no archive
    file lies wholly below it; with rewrite (DeleteRecords), also until the file straddling it
    holds no row below it. Returns (log start, ArchiveRead)."""
    seen: list = []

    def check():
        start = list_offsets(b, topic, [0], EARLIEST)[0]
        ar = read_archive(view, topic)
        rows = ar.rows(0)
        files = ar.listing.of(0)
        seen.append((start, [f.rel for f in files], rows[0].offset if rows else None))
        stable = len(seen) >= 3 and len({s[0] for s in seen[-3:]}) == 1
        ok = start > 0 and stable and files and files[0].last >= start and rows
        if ok and rewrite:
            ok = rows[0].offset == start
        return (start, ar) if ok else None

    return wait_for(check, timeout, lambda: (
        f"the archive of {topic} to drop what is below the log start"
        f"{' (the straddling file rewritten from it)' if rewrite else ''}: (log start, files, "
        f"first archived offset) {seen[-1] if seen else '?'}\n{b.log_tail(30)}"), interval=0.5)


def test_delete_records_rewrites_archive(backend, broker_factory):
    """DeleteRecords to an offset in the middle of an archive file: files wholly below it are deleted, that file is rewritten under the same name without the rows below the new log start, and every row above is unchanged (pyarrow and DuckDB). With archive_row_group_bytes=32 KiB the files have several row groups, each with its offset statistics."""
    from confluent_kafka import TopicPartition

    store = backend.new_store()
    view = ArchiveStore(store)
    rg_bytes = 32 << 10
    b = start_archiving(broker_factory, store, archive_row_group_bytes=rg_bytes)
    topic = unique("arch-delrec")
    cf_create_topic(b.bootstrap, topic, 1, topic_config())
    want, need, before = produce_archived(b, view, topic)
    for f in before.listing.files:
        md = before.meta[f.rel]
        sizes = [md.row_group(i).total_byte_size for i in range(md.num_row_groups)]
        # ~1.6 kB rows: a file of ~200 kB of them holds several row groups of about 32 KiB.
        if md.num_rows > 100:
            assert md.num_row_groups >= 3 and max(sizes) <= 2 * rg_bytes, (
                f"{f.rel}: {md.num_rows} rows in row groups of {sizes} B with "
                f"archive_row_group_bytes={rg_bytes}")
    files = before.listing.of(0)
    assert len(files) >= 3, [f.rel for f in files]
    straddle = files[1]
    target = (straddle.first + straddle.last) // 2
    assert straddle.first < target < straddle.last, straddle

    admin = cf_admin(b.bootstrap)
    fs = admin.delete_records([TopicPartition(topic, 0, target)], request_timeout=30)
    assert list(fs.values())[0].result(30).low_watermark == target

    start, after = wait_archive_from(b, view, topic, rewrite=True)
    assert start == target
    assert [f.rel for f in after.listing.of(0)] == [f.rel for f in files[1:]], (
        f"files after DeleteRecords({target}): {[f.rel for f in after.listing.of(0)]}; before: "
        f"{[f.rel for f in files]}: expected all but the first, the straddling one under its name")
    assert_no_problems(check_archive(after, topic, [0], want, need, log_start={0: target},
                                     topic_id=view.topic_id(topic)),
                       f"the archive after DeleteRecords({target})")
    assert after.rows(0) == [r for r in before.rows(0) if r.offset >= target], (
        "rows at or above the new log start changed")
    duck = duckdb_tuples(view, topic)
    assert duck == sorted(record_tuple(r) for r in after.rows(0))
    assert not error_lines_since(b, 0, ARCHIVE_ERRORS), error_lines_since(b, 0, ARCHIVE_ERRORS)


def test_retention_and_topic_deletion_remove_archive(broker_factory):
    """Lowering retention.bytes moves the log start up: archive files wholly below it disappear, the others stay (under their names, rows unchanged); deleting the topic removes all its archive files, and another topic's archive stays as it was."""
    store = LocalStore()
    view = ArchiveStore(store)
    b = start_archiving(broker_factory, store)
    topic = unique("arch-ret")
    keep = unique("arch-keep")
    for t in (topic, keep):
        cf_create_topic(b.bootstrap, t, 1, topic_config())
    want, need, before = produce_archived(b, view, topic, count=800)
    _, _, kept = produce_archived(b, view, keep, count=200)
    kept_files = {f.rel: f.size for f in kept.listing.files}

    alter_topic(b.bootstrap, topic, retention_bytes=str(300_000))
    start, after = wait_archive_from(b, view, topic, rewrite=False, timeout=90)
    # Retention deletes the files wholly below the log start; the one straddling it may keep
    # its rows below (only DeleteRecords promises a rewrite), or be rewritten from the start.
    first = after.listing.of(0)[0]
    kept_from = after.rows(0)[0].offset
    assert kept_from in (first.first, start), (
        f"after retention moved the log start to {start}, {first.rel} starts at {kept_from}")
    assert_no_problems(check_archive(after, topic, [0], want, need, log_start={0: kept_from},
                                     topic_id=view.topic_id(topic)),
                       f"the archive after retention moved the log start to {start}")
    assert after.rows(0) == [r for r in before.rows(0) if r.offset >= kept_from]
    assert [f.rel for f in after.listing.of(0)] == [f.rel for f in before.listing.of(0)
                                                    if f.last >= start]

    admin = cf_admin(b.bootstrap)
    admin.delete_topics([topic], operation_timeout=30)[topic].result(30)
    wait_for(lambda: not [k for k in view.keys(topic) if k.endswith(".parquet")], 60,
             lambda: f"the archive files of the deleted {topic} to go: "
                     f"{sorted(view.keys(topic))[:10]}\n{b.log_tail(30)}")
    assert {f.rel: f.size for f in view.listing(keep).files} == kept_files, (
        "the archive of another topic changed when a topic was deleted")
    assert not error_lines_since(b, 0, ARCHIVE_ERRORS), error_lines_since(b, 0, ARCHIVE_ERRORS)


# --- 6. archive.enable ---------------------------------------------------------------------------

def test_archive_enable_false_and_untiered_topics(broker_factory):
    """A topic with archive.enable=false, and one with remote.storage.enable=false, get no archive files while an enabled topic on the same broker is archived; describe reports nothing archived (lag = log end); setting archive.enable=true at runtime archives the disabled topic."""
    store = LocalStore()
    view = ArchiveStore(store)
    b = start_archiving(broker_factory, store)
    on, off, untiered = unique("arch-on"), unique("arch-off"), unique("arch-untiered")
    cf_create_topic(b.bootstrap, on, 1, topic_config())
    cf_create_topic(b.bootstrap, off, 1, topic_config({"archive.enable": "false"}))
    cf_create_topic(b.bootstrap, untiered, 1, topic_config({"remote.storage.enable": "false"}))
    res = {}
    for t in (on, off, untiered):
        data = cf_produce(b.bootstrap, t, binary_records(t, 300, 1500), "none", batch_size=16384)
        want = wants(data, "none")
        want.update(wants(seal(b.bootstrap, t, [0]), "none"))
        res[t] = (want, last_offsets(data))
    wait_settled(b, view, on, [0], res[on][1])
    wait_for(lambda: tier_state(b, off, [0]).tiered[0] >= res[off][1][0], 60,
             lambda: f"{off} to be tiered: {tier_state(b, off, [0]).describe()}")
    time.sleep(2.0)  # four more task intervals
    for t in (off, untiered):
        assert not [k for k in view.keys(t) if k.endswith(".parquet")], (
            f"{t} was archived: {sorted(view.keys(t))[:10]}")
    report = describe_json(view, b, off)
    p0 = report["partitions"][0]
    log_end = list_offsets(b, off, [0], LATEST)[0]
    assert (p0["archived_end_offset"], p0["rows"], p0["files"], p0["log_end_offset"],
            p0["lag"]) == (None, 0, [], log_end, log_end), p0

    alter_topic(b.bootstrap, off, archive_enable="true")
    wait_settled(b, view, off, [0], res[off][1])
    ar = read_archive(view, off)
    assert_no_problems(check_archive(ar, off, [0], res[off][0], res[off][1],
                                     topic_id=view.topic_id(off)),
                       "the archive of the topic enabled at runtime")
    assert not [k for k in view.keys(untiered) if k.endswith(".parquet")]
    assert not error_lines_since(b, 0, ARCHIVE_ERRORS), error_lines_since(b, 0, ARCHIVE_ERRORS)


# --- 7. shale archive describe -------------------------------------------------------------------

def test_archive_describe(broker_factory):
    """`shale archive describe --json` reports every file (range, rows, bytes, timestamps) as pyarrow reads it, the archived end equal to the latest tiered offset, log end offsets from the broker, lag = log end - (archived end + 1) (only the active segment's records); a partition that never uploaded anything is absent or has lag 0; the table form shows the same numbers; the bootstrap defaults to --listen; an unknown topic exits 1, bad usage and a bad store exit 2."""
    store = LocalStore()
    view = ArchiveStore(store)
    b = start_archiving(broker_factory, store)
    topic = unique("arch-describe")
    cf_create_topic(b.bootstrap, topic, 3, topic_config())
    data = []
    for p in (0, 1):
        recs = [Rec(f"k{i}".encode(), f"describe {p} {i} ".encode() * 40 + random.randbytes(600),
                    (), p, now_ms() - 60_000 + i) for i in range(700)]
        data += cf_produce(b.bootstrap, topic, recs, "snappy", **BATCH)
    want = wants(data, "snappy")
    need = last_offsets(data)
    want.update(wants(seal(b.bootstrap, topic, [0, 1]), "none"))
    wait_settled(b, view, topic, PARTITIONS, need)
    ar = read_archive(view, topic)
    assert_no_problems(check_archive(ar, topic, PARTITIONS, want, need,
                                     topic_id=view.topic_id(topic)), "the archive")

    report = describe_json(view, b, topic)
    # Partition 2 never uploaded anything, so nothing of it is in the store: the spec does not
    # say whether such a partition is listed; if it is, it has nothing archived and no lag.
    parts = {x["partition"]: x for x in report.get("partitions", [])}
    if 2 in parts:
        assert (parts[2]["archived_end_offset"], parts[2]["log_end_offset"], parts[2]["lag"],
                parts[2]["rows"], parts[2]["files"]) == (None, 0, 0, 0, []), parts[2]
        report = {**report, "partitions": [x for x in report["partitions"] if x["partition"] != 2]}
    assert_no_problems(describe_problems(report, view, b, topic, [0, 1], ar), "describe --json")
    state = tier_state(b, topic, PARTITIONS)
    for p in (0, 1):
        active = state.local[p][-1][0]
        assert parts[p]["archived_end_offset"] == state.tiered[p] == active - 1, (parts[p], state.describe())
        assert parts[p]["lag"] == parts[p]["log_end_offset"] - active, parts[p]

    # More records in the active segment are lag, not archive.
    more = cf_produce(b.bootstrap, topic, [Rec(b"m", b"more", (), 0, now_ms()) for _ in range(5)])
    again = describe_json(view, b, topic)
    a0 = {x["partition"]: x for x in again["partitions"]}[0]
    assert a0["log_end_offset"] == more[-1].offset + 1
    assert a0["lag"] == a0["log_end_offset"] - (a0["archived_end_offset"] + 1), a0

    # The table form shows the same numbers, a row per partition.
    proc = archive_cli(view, b, "describe", topic)
    assert proc.returncode == 0, proc.stderr
    assert topic in proc.stdout, proc.stdout
    lines = [set(line.split()) for line in proc.stdout.splitlines()]
    for p in (0, 1):
        x = a0 if p == 0 else parts[1]
        tokens = {str(p), str(x["archived_end_offset"]), str(x["log_end_offset"]), str(x["lag"])}
        assert any(tokens <= line for line in lines), (
            f"no line of the table shows partition {p} with {tokens}:\n{proc.stdout}")

    # Without --bootstrap-server it asks the configured listener.
    proc = archive_cli(view, b, "describe", topic, "--json", f"--listen={b.bootstrap}",
                       bootstrap=False)
    assert proc.returncode == 0, proc.stderr
    assert {x["partition"]: x["log_end_offset"] for x in json.loads(proc.stdout)["partitions"]} \
        == {x["partition"]: x["log_end_offset"] for x in again["partitions"]}

    proc = archive_cli(view, b, "describe", unique("no-such-topic"), "--json")
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    proc = archive_cli(view, b, "describe")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    proc = archive_cli(view, b, "describe", topic, "--json", "--remote-storage-url=ftp://nowhere/x")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
