"""A minimal, hand-written Kafka wire codec for the bad-input tests.

Only what those tests need: request framing (header v1 and v2), ApiVersions, Metadata (v4-v8 and
the flexible v9+ body for the huge-count test), Produce v7/v8, and magic-v2 record batches with a
CRC-32C we compute ourselves, so a test can build exactly the malformed bytes it wants. Real
clients cover the happy path; this exists to send what a real client never would.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERROR_LEADER_NOT_AVAILABLE = 5
ERROR_UNSUPPORTED_VERSION = 35

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_ZSTD = 4


# --- CRC-32C (Castagnoli), as Kafka's record batch v2 uses ---------------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


# --- Primitive encoders --------------------------------------------------------------------------

def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n: int) -> bytes:
    """Zig-zag signed varint (record fields); works for 64-bit values too."""
    return uvarint((n << 1) ^ (n >> 63))


def string(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return struct.pack(">i", -1)
    return struct.pack(">i", len(b)) + b


# --- Record batch (magic 2) ----------------------------------------------------------------------

@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def encode_record(offset_delta: int, timestamp_delta: int, rec: Record) -> bytes:
    body = bytearray()
    body += b"\x00"  # attributes
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    for part in (rec.key, rec.value):
        if part is None:
            body += varint(-1)
        else:
            body += varint(len(part)) + part
    body += varint(len(rec.headers))
    for name, value in rec.headers:
        nb = name.encode()
        body += varint(len(nb)) + nb
        body += varint(-1) if value is None else varint(len(value)) + value
    return varint(len(body)) + bytes(body)


def encode_batch(
    records_payload: bytes,
    record_count: int,
    *,
    compression: int = COMPRESSION_NONE,
    base_offset: int = 0,
    base_timestamp: int | None = None,
    last_offset_delta: int | None = None,
    corrupt_crc: bool = False,
) -> bytes:
    """Wraps an already encoded (and maybe compressed) records section into a batch.

    The CRC covers everything from the attributes to the end, as in Kafka; corrupt_crc flips one
    bit of it after computing it, leaving the rest of the batch valid.
    """
    ts = int(time.time() * 1000) if base_timestamp is None else base_timestamp
    if last_offset_delta is None:
        last_offset_delta = max(record_count - 1, 0)
    after_crc = struct.pack(
        ">hiqqqhii",
        compression,        # attributes: codec in the low 3 bits, CreateTime, not transactional
        last_offset_delta,
        ts,                 # base timestamp
        ts,                 # max timestamp
        -1,                 # producer id
        -1,                 # producer epoch
        -1,                 # base sequence
        record_count,
    ) + records_payload
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0x00010000
    # batch length counts from the partition leader epoch to the end
    batch_length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", base_offset, batch_length, -1, 2, crc) + after_crc


def simple_batch(records: list[Record], **kw) -> bytes:
    payload = b"".join(encode_record(i, 0, r) for i, r in enumerate(records))
    return encode_batch(payload, len(records), **kw)


# --- Requests ------------------------------------------------------------------------------------

def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes,
                  *, flexible_header: bool = False, client_id: str | None = "shale-e2e") -> bytes:
    """A size-prefixed request: header v1, or v2 (v1 plus empty tagged fields)."""
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + string(client_id)
    if flexible_header:
        header += uvarint(0)
    msg = header + body
    return struct.pack(">i", len(msg)) + msg


def api_versions_request(correlation_id: int, version: int = 0) -> bytes:
    if version >= 3:
        body = compact_string("shale-e2e") + compact_string("1.0") + uvarint(0)
        return request_frame(API_API_VERSIONS, version, correlation_id, body, flexible_header=True)
    return request_frame(API_API_VERSIONS, version, correlation_id, b"")


def metadata_request_v4(correlation_id: int, topics: list[str] | None, allow_auto_create: bool,
                        version: int = 4) -> bytes:
    """Metadata v4..v8 (non-flexible). v8 adds two authorized-operations booleans."""
    assert 4 <= version <= 8, version
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
    body += struct.pack(">?", allow_auto_create)
    if version >= 8:
        body += struct.pack(">??", False, False)
    return request_frame(API_METADATA, version, correlation_id, body)


def produce_request(correlation_id: int, topic: str, partition: int, batch: bytes,
                    *, acks: int = -1, timeout_ms: int = 30000, version: int = 7) -> bytes:
    """Produce v3..v8 (non-flexible; topics by name)."""
    assert 3 <= version <= 8, version
    body = string(None)  # transactional id
    body += struct.pack(">hi", acks, timeout_ms)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition) + nbytes(batch)
    return request_frame(API_PRODUCE, version, correlation_id, body)


def fetch_request_v4(correlation_id: int, topic: str, partition: int, offset: int, *,
                     max_wait_ms: int, min_bytes: int = 1, max_bytes: int = 1 << 20) -> bytes:
    """Fetch v4 (non-flexible, topics by name, read-uncommitted)."""
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
    return request_frame(API_FETCH, 4, correlation_id, body)


# --- Responses -----------------------------------------------------------------------------------

class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos}, have {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))

    def int8(self) -> int: return self.unpack(">b")[0]
    def int16(self) -> int: return self.unpack(">h")[0]
    def int32(self) -> int: return self.unpack(">i")[0]
    def int64(self) -> int: return self.unpack(">q")[0]

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

    def remaining(self) -> int:
        return len(self.data) - self.pos


@dataclass
class ApiVersionsV0:
    correlation_id: int
    error_code: int
    api_keys: dict[int, tuple[int, int]]  # api key -> (min, max)
    trailing_bytes: int  # bytes left after the v0 body; 0 for a true v0 response


def parse_api_versions_v0(resp: bytes) -> ApiVersionsV0:
    r = Reader(resp)
    corr = r.int32()
    err = r.int16()
    n = r.int32()
    keys = {}
    for _ in range(max(n, 0)):
        k, lo, hi = r.unpack(">hhh")
        keys[k] = (lo, hi)
    return ApiVersionsV0(corr, err, keys, r.remaining())


def parse_metadata_first_topic(resp: bytes, version: int) -> tuple[int, int, str | None]:
    """(correlation id, first topic's error code, its name) of a Metadata v4..v8 response."""
    r = Reader(resp)
    corr = r.int32()
    r.int32()  # throttle
    for _ in range(r.int32()):  # brokers
        r.int32(); r.string(); r.int32(); r.string()
    r.string()  # cluster id
    r.int32()   # controller id
    n_topics = r.int32()
    if n_topics < 1:
        raise ValueError("metadata response has no topics")
    err = r.int16()
    name = r.string()
    return corr, err, name


@dataclass
class FetchPartitionResult:
    correlation_id: int
    partition: int
    error_code: int
    high_watermark: int
    records: bytes | None


def parse_fetch_response_v4(resp: bytes) -> FetchPartitionResult:
    """First partition of a Fetch v4 response."""
    r = Reader(resp)
    corr = r.int32()
    r.int32()  # throttle
    if r.int32() < 1:
        raise ValueError("fetch response has no topics")
    r.string()
    if r.int32() < 1:
        raise ValueError("fetch response has no partitions")
    partition = r.int32()
    err = r.int16()
    hw = r.int64()
    r.int64()  # last stable offset
    for _ in range(max(r.int32(), 0)):  # aborted transactions
        r.int64(); r.int64()
    n = r.int32()
    records = None if n < 0 else r.take(n)
    return FetchPartitionResult(corr, partition, err, hw, records)


@dataclass
class ProducePartitionResult:
    correlation_id: int
    topic: str | None
    partition: int
    error_code: int
    base_offset: int


def parse_produce_response(resp: bytes, version: int) -> ProducePartitionResult:
    """First partition result of a Produce v3..v8 response."""
    r = Reader(resp)
    corr = r.int32()
    if r.int32() < 1:
        raise ValueError("produce response has no topics")
    topic = r.string()
    if r.int32() < 1:
        raise ValueError("produce response has no partitions")
    partition = r.int32()
    err = r.int16()
    base_offset = r.int64()
    return ProducePartitionResult(corr, topic, partition, err, base_offset)


# --- Connection ----------------------------------------------------------------------------------

class Closed(Exception):
    """The broker closed (or reset) the connection."""


class Conn:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e)) from e

    def _recv_exact(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete response within the timeout ({len(buf)}/{n} bytes)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                continue
            except ConnectionResetError as e:
                raise Closed(str(e)) from e
            if not chunk:
                raise Closed(f"EOF after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_response(self, timeout: float = 10.0) -> bytes:
        """One response without its size prefix; raises Closed or TimeoutError."""
        deadline = time.monotonic() + timeout
        (size,) = struct.unpack(">i", self._recv_exact(4, deadline))
        if size < 0 or size > 256 << 20:
            raise ValueError(f"implausible response size {size}")
        return self._recv_exact(size, deadline)

    def roundtrip(self, frame: bytes, timeout: float = 10.0) -> bytes:
        self.send(frame)
        return self.recv_response(timeout)

    def wait_closed(self, timeout: float = 10.0) -> tuple[bool, bytes]:
        """Reads until the broker closes the connection; (closed?, bytes it sent before that)."""
        deadline = time.monotonic() + timeout
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, bytes(got)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return True, bytes(got)
            if not chunk:
                return True, bytes(got)
            got += chunk

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def supported_versions(host: str, port: int) -> dict[int, tuple[int, int]]:
    """The broker's ApiVersions v0 answer, api key -> (min, max)."""
    with Conn(host, port) as c:
        resp = parse_api_versions_v0(c.roundtrip(api_versions_request(1, 0)))
    if resp.error_code != 0:
        raise AssertionError(f"ApiVersions v0 returned error {resp.error_code}")
    return resp.api_keys


def pick_version(versions: dict[int, tuple[int, int]], api_key: int, wanted: list[int]) -> int:
    """The first of `wanted` the broker supports for api_key."""
    lo, hi = versions.get(api_key, (1, 0))
    for v in wanted:
        if lo <= v <= hi:
            return v
    raise AssertionError(f"broker supports api {api_key} versions {lo}..{hi}, none of {wanted}")


# --- Multi-partition Fetch, ListOffsets v9, record batch headers (the tiered-storage tests) ------

API_LIST_OFFSETS = 2


def fetch_request_multi_v4(correlation_id: int, topic: str, offsets: dict[int, int], *,
                           max_wait_ms: int = 500, min_bytes: int = 1, max_bytes: int = 64 << 20,
                           partition_max_bytes: int = 1 << 20) -> bytes:
    """Fetch v4 for several partitions of one topic: {partition: fetch offset}."""
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", len(offsets))
    for p, off in offsets.items():
        body += struct.pack(">iqi", p, off, partition_max_bytes)
    return request_frame(API_FETCH, 4, correlation_id, body)


def parse_fetch_response_v4_all(resp: bytes) -> list[FetchPartitionResult]:
    """Every partition of every topic of a Fetch v4 response."""
    r = Reader(resp)
    corr = r.int32()
    r.int32()  # throttle
    out = []
    for _ in range(r.int32()):
        r.string()
        for _ in range(r.int32()):
            partition = r.int32()
            err = r.int16()
            hw = r.int64()
            r.int64()  # last stable offset
            for _ in range(max(r.int32(), 0)):  # aborted transactions
                r.int64(); r.int64()
            n = r.int32()
            records = None if n < 0 else r.take(n)
            out.append(FetchPartitionResult(corr, partition, err, hw, records))
    return out


@dataclass
class BatchHeader:
    base_offset: int
    last_offset: int
    record_count: int
    max_timestamp: int
    crc_ok: bool


def batch_headers(records: bytes, check_crc: bool = True) -> list[BatchHeader]:
    """The complete magic-2 batches in a fetch response's records (a trailing partial batch,
    which a broker may send when it truncates at max_bytes, is left out)."""
    out = []
    pos = 0
    while pos + 61 <= len(records):
        base_offset, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        if end > len(records):
            break
        magic = records[pos + 16]
        if magic != 2:
            raise ValueError(f"batch at {base_offset}: magic {magic}")
        (crc,) = struct.unpack_from(">I", records, pos + 17)
        last_delta, = struct.unpack_from(">i", records, pos + 23)
        max_ts, = struct.unpack_from(">q", records, pos + 35)
        count, = struct.unpack_from(">i", records, pos + 57)
        ok = crc32c(records[pos + 21:end]) == crc if check_crc else True
        out.append(BatchHeader(base_offset, base_offset + last_delta, count, max_ts, ok))
        pos = end
    return out


def list_offsets_request_v9(correlation_id: int, topic: str, queries: dict[int, int],
                            isolation_level: int = 0) -> bytes:
    """ListOffsets v9 (flexible): {partition: timestamp}, where -1 latest, -2 earliest,
    -3 max timestamp, -4 earliest local, -5 latest tiered, >= 0 by time."""
    body = struct.pack(">ib", -1, isolation_level)
    body += uvarint(2) + compact_string(topic)
    body += uvarint(len(queries) + 1)
    for p, ts in queries.items():
        body += struct.pack(">iiq", p, -1, ts) + uvarint(0)
    body += uvarint(0)  # topic tagged fields
    body += uvarint(0)  # request tagged fields
    return request_frame(API_LIST_OFFSETS, 9, correlation_id, body, flexible_header=True)


@dataclass
class ListOffsetsResult:
    partition: int
    error_code: int
    timestamp: int
    offset: int
    leader_epoch: int


def _read_uvarint(r: Reader) -> int:
    shift = result = 0
    while True:
        b = r.take(1)[0]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result
        shift += 7


def _skip_tagged(r: Reader) -> None:
    for _ in range(_read_uvarint(r)):
        _read_uvarint(r)
        r.take(_read_uvarint(r))


def parse_list_offsets_v9(resp: bytes) -> dict[int, ListOffsetsResult]:
    """{partition: result} of a ListOffsets v9 response (response header v1)."""
    r = Reader(resp)
    r.int32()  # correlation id
    _skip_tagged(r)  # response header tagged fields
    r.int32()  # throttle
    out = {}
    for _ in range(_read_uvarint(r) - 1):
        r.take(_read_uvarint(r) - 1)  # topic name
        for _ in range(_read_uvarint(r) - 1):
            p = r.int32()
            err = r.int16()
            ts = r.int64()
            off = r.int64()
            epoch = r.int32()
            _skip_tagged(r)
            out[p] = ListOffsetsResult(p, err, ts, off, epoch)
        _skip_tagged(r)
    return out


def list_offsets(host: str, port: int, topic: str, queries: dict[int, int]) -> dict[int, ListOffsetsResult]:
    """One ListOffsets v9 round trip."""
    with Conn(host, port) as c:
        return parse_list_offsets_v9(c.roundtrip(list_offsets_request_v9(7, topic, queries), 30))
