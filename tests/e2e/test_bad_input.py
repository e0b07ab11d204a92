"""Hostile and malformed input on raw sockets: the broker drops that connection, never itself.

Expected behaviour is Kafka's: a frame over socket.request.max.bytes, an unparsable request, an
unknown API key or an unsupported version of an API other than ApiVersions closes the
connection without a response (SocketServer treats them as InvalidRequestException); ApiVersions
at an unsupported version gets a v0 response with UNSUPPORTED_VERSION (35) and the supported
range of ApiVersions itself (KIP-511), and the connection stays open; a batch with a bad CRC gets
CORRUPT_MESSAGE (2) for its partition. After each case the broker must still serve a real client.
"""

from __future__ import annotations

import random
import select
import socket
import struct
import time
import zlib

import pytest

import kafka_wire as wire
from clients import assert_serves, cf_consume_all, cf_create_topic, unique

MAX_REQUEST = 1048576
PEAK_RSS_LIMIT = 1 << 30  # bytes; a bomb must not be inflated into memory whole


@pytest.fixture
def small_broker(broker_factory):
    """A broker that refuses requests over 1 MiB."""
    return broker_factory(socket_request_max_bytes=MAX_REQUEST)


def conn(b) -> wire.Conn:
    return wire.Conn(b.host, b.port)


def assert_closed(c: wire.Conn, what: str, timeout: float = 10.0) -> None:
    closed, got = c.wait_closed(timeout)
    assert closed, f"{what}: connection still open after {timeout}s (received {got[:64]!r})"


# --- Framing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [MAX_REQUEST + 1, 64 << 20, 0x7FFFFFFF, -1, -0x80000000],
                         ids=["max+1", "64MiB", "int32max", "minus1", "int32min"])
def test_oversized_or_negative_frame_closes_connection(small_broker, size):
    """A frame whose size prefix exceeds socket.request.max.bytes (or is negative) closes the connection at once, without the broker reading or buffering the body."""
    with conn(small_broker) as c:
        # A plausible ApiVersions header after the size, as a client would send.
        c.send(struct.pack(">i", size) + struct.pack(">hhi", 18, 0, 1) + wire.string("big"))
        assert_closed(c, f"frame size {size}")
    small_broker.assert_alive()
    assert_serves(small_broker.bootstrap)


def test_truncated_frames_then_close(small_broker):
    """Frames cut short (in the size prefix, in the header, in the body) followed by a close leave the broker serving."""
    full = wire.api_versions_request(1, 0)
    metadata = wire.metadata_request_v4(2, ["some-topic"], False)
    for cut in [full[:2], full[:4], full[:9], metadata[:-3], struct.pack(">i", 100) + b"x" * 10]:
        with conn(small_broker) as c:
            c.send(cut)
            time.sleep(0.05)
    small_broker.assert_alive()
    assert_serves(small_broker.bootstrap)


@pytest.mark.parametrize("case", ["produce-body-cut", "metadata-string-overrun", "empty-frame",
                                  "header-only-2-bytes"])
def test_well_framed_unparsable_request_closes_connection(small_broker, case):
    """A complete frame whose request cannot be parsed closes the connection, as Kafka does."""
    if case == "produce-body-cut":
        batch = wire.simple_batch([wire.Record(b"k", b"v")])
        frame = wire.produce_request(1, "t", 0, batch)
        body = frame[4:4 + (len(frame) - 4) // 2]
    elif case == "metadata-string-overrun":
        # one topic whose name claims 30000 bytes, followed by 5
        body = struct.pack(">hhi", 3, 4, 1) + wire.string("e2e") + struct.pack(">ih", 1, 30000) + b"abcde"
    elif case == "empty-frame":
        body = b""
    else:
        body = struct.pack(">h", 18)
    with conn(small_broker) as c:
        c.send(struct.pack(">i", len(body)) + body)
        assert_closed(c, case)
    small_broker.assert_alive()
    assert_serves(small_broker.bootstrap)


def test_random_garbage(small_broker):
    """Random bytes, raw or wrapped in a correct size prefix, on many connections, do not take the broker down."""
    rng = random.Random(20261126)
    for i in range(60):
        payload = rng.randbytes(rng.randint(1, 4096))
        if i % 2:
            payload = struct.pack(">i", len(payload)) + payload
        if i % 3 == 0 and len(payload) > 8:
            # a real-looking header in front of garbage: valid key, random version
            key = rng.choice([0, 1, 2, 3, 18, 19, 20, 22, 32, 37, 60])
            hdr = struct.pack(">hhi", key, rng.randint(-2, 20), i) + wire.string("fuzz")
            payload = struct.pack(">i", len(hdr) + len(payload)) + hdr + payload
        with conn(small_broker) as c:
            try:
                c.send(payload)
            except wire.Closed:
                continue
            c.wait_closed(0.2)  # read whatever comes back; open or closed are both acceptable
        small_broker.assert_alive()
    assert_serves(small_broker.bootstrap)


# --- API keys and versions -----------------------------------------------------------------------

@pytest.mark.parametrize("api_key", [9999, 32767, -1, 500])
def test_unknown_api_key_closes_connection(small_broker, api_key):
    """A request with an API key Kafka does not define closes the connection without a response (Kafka: InvalidRequestException in SocketServer)."""
    with conn(small_broker) as c:
        c.send(wire.request_frame(api_key, 0, 42, b"\x00" * 8))
        closed, got = c.wait_closed(10)
        assert closed, f"api key {api_key}: connection left open (received {got[:64]!r})"
    assert_serves(small_broker.bootstrap)


def test_unsupported_version_of_metadata_closes_connection(small_broker):
    """A Metadata request at a version the broker does not support closes the connection (only ApiVersions gets an error response)."""
    versions = wire.supported_versions(small_broker.host, small_broker.port)
    too_high = versions[wire.API_METADATA][1] + 50
    with conn(small_broker) as c:
        c.send(wire.request_frame(wire.API_METADATA, too_high, 9, b"\x00" * 8, flexible_header=True))
        assert_closed(c, f"Metadata v{too_high}")
    assert_serves(small_broker.bootstrap)


def test_api_versions_supported_and_advertised(small_broker):
    """ApiVersions v0 lists every API the broker implements, with ranges real clients can use."""
    versions = wire.supported_versions(small_broker.host, small_broker.port)
    implemented = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 18: "ApiVersions",
                   19: "CreateTopics", 20: "DeleteTopics", 22: "InitProducerId",
                   32: "DescribeConfigs", 37: "CreatePartitions", 60: "DescribeCluster"}
    missing = [name for key, name in implemented.items() if key not in versions]
    assert not missing, f"not advertised: {missing}; advertised: {versions}"
    for key, (lo, hi) in versions.items():
        assert 0 <= lo <= hi, f"api {key}: bad range {lo}..{hi}"
    assert versions[18][1] >= 3, "ApiVersions v3 (flexible) is what current clients send first"


@pytest.mark.parametrize("version", [127, 4 + 60, 32767])
def test_api_versions_unsupported_version(small_broker, version):
    """ApiVersions at an unsupported version gets a v0-format response with UNSUPPORTED_VERSION (35) and ApiVersions' supported range, and the connection stays usable."""
    body = wire.compact_string("e2e") + wire.compact_string("1") + wire.uvarint(0)
    with conn(small_broker) as c:
        resp = wire.parse_api_versions_v0(c.roundtrip(
            wire.request_frame(wire.API_API_VERSIONS, version, 77, body, flexible_header=True)))
        assert resp.correlation_id == 77
        assert resp.error_code == wire.ERROR_UNSUPPORTED_VERSION, resp
        assert resp.trailing_bytes == 0, (
            f"response is not in v0 format: {resp.trailing_bytes} bytes after the v0 body")
        assert wire.API_API_VERSIONS in resp.api_keys, f"no ApiVersions range in {resp.api_keys}"
        lo, hi = resp.api_keys[wire.API_API_VERSIONS]
        assert lo == 0 and hi >= 3, (lo, hi)
        # A client now retries at a version in that range, on the same connection.
        again = wire.parse_api_versions_v0(c.roundtrip(wire.api_versions_request(78, 0)))
        assert (again.correlation_id, again.error_code) == (78, 0), again
    assert_serves(small_broker.bootstrap)


# --- Counts that would make a naive decoder allocate ---------------------------------------------

@pytest.mark.parametrize("form", ["v4-int32", "v4-int32-plus-2", "flexible-uvarint"])
def test_metadata_huge_array_count_closes_connection(small_broker, form):
    """A Metadata request claiming 0x7fffffff topics in a few bytes closes the connection; the broker does not try to reserve room for them."""
    versions = wire.supported_versions(small_broker.host, small_broker.port)
    lo, hi = versions[wire.API_METADATA]
    if form == "flexible-uvarint":
        v = max(9, lo)
        if v > hi:
            pytest.skip(f"broker supports Metadata {lo}..{hi}, no flexible version")
        body = wire.uvarint(0x7FFFFFFF + 1) + b"\x00"  # compact array: count + 1
        frame = wire.request_frame(wire.API_METADATA, v, 3, body, flexible_header=True)
    else:
        v = wire.pick_version(versions, wire.API_METADATA, [4, 5, 6, 7, 8, 1])
        body = struct.pack(">i", 0x7FFFFFFF) + (b"\x00\x01" if form.endswith("plus-2") else b"")
        frame = wire.request_frame(wire.API_METADATA, v, 3, body)
    with conn(small_broker) as c:
        c.send(frame)
        assert_closed(c, f"Metadata v{v} with 0x7fffffff topics")
    small_broker.assert_alive()
    assert_serves(small_broker.bootstrap)


def test_produce_huge_topic_count_closes_connection(small_broker):
    """A Produce request claiming 0x7fffffff topics closes the connection."""
    body = wire.string(None) + struct.pack(">hii", -1, 1000, 0x7FFFFFFF) + b"\x00\x01t"
    with conn(small_broker) as c:
        c.send(wire.request_frame(wire.API_PRODUCE, 7, 4, body))
        assert_closed(c, "Produce with 0x7fffffff topics")
    assert_serves(small_broker.bootstrap)


# --- Record batches ------------------------------------------------------------------------------

def _produce_raw(b, topic: str, batch: bytes, corr: int, timeout: float = 30) -> wire.ProducePartitionResult:
    versions = wire.supported_versions(b.host, b.port)
    v = wire.pick_version(versions, wire.API_PRODUCE, [7, 8, 6, 5, 4, 3])
    with conn(b) as c:
        resp = c.roundtrip(wire.produce_request(corr, topic, 0, batch, version=v), timeout)
    r = wire.parse_produce_response(resp, v)
    assert (r.correlation_id, r.topic, r.partition) == (corr, topic, 0), r
    return r


def test_produce_batch_with_bad_crc(small_broker):
    """A batch whose CRC does not match is refused with CORRUPT_MESSAGE and not stored; good batches around it are stored at consecutive offsets."""
    topic = unique("crc")
    cf_create_topic(small_broker.bootstrap, topic, 1)
    good1 = wire.simple_batch([wire.Record(b"k1", b"first good", [("h", b"1")])])
    bad = wire.simple_batch([wire.Record(b"k2", b"corrupt", [])], corrupt_crc=True)
    good2 = wire.simple_batch([wire.Record(b"k3", b"second good", [])])

    r = _produce_raw(small_broker, topic, good1, 1)
    assert (r.error_code, r.base_offset) == (0, 0), r
    r = _produce_raw(small_broker, topic, bad, 2)
    assert r.error_code == wire.ERROR_CORRUPT_MESSAGE, r
    r = _produce_raw(small_broker, topic, good2, 3)
    assert (r.error_code, r.base_offset) == (0, 1), r

    consumed = cf_consume_all(small_broker.bootstrap, topic, [0], {0: 2}, timeout=20)
    assert [(c.offset, c.key, c.value) for c in consumed[0]] == [
        (0, b"k1", b"first good"), (1, b"k3", b"second good")]


def test_produce_batch_claiming_too_many_records(small_broker):
    """A batch whose record count claims 0x7fffffff records but holds one is refused (CORRUPT_MESSAGE or INVALID_RECORD) and nothing is stored."""
    topic = unique("count")
    cf_create_topic(small_broker.bootstrap, topic, 1)
    payload = wire.encode_record(0, 0, wire.Record(b"k", b"v"))
    batch = wire.encode_batch(payload, 0x7FFFFFFF, last_offset_delta=0)
    r = _produce_raw(small_broker, topic, batch, 1)
    assert r.error_code in (wire.ERROR_CORRUPT_MESSAGE, 87), r
    small_broker.assert_alive()
    consumed = cf_consume_all(small_broker.bootstrap, topic, [0], timeout=5)
    assert consumed[0] == [], consumed


def _compress(codec: str, data: bytes) -> tuple[bytes, int]:
    import gzip as gz
    import cramjam
    import lz4.frame
    import zstandard
    if codec == "none":
        return data, 0
    if codec == "gzip":
        return gz.compress(data), 1
    if codec == "snappy":
        return bytes(cramjam.snappy.compress_raw(data)), 2
    if codec == "lz4":
        return lz4.frame.compress(data), 3
    return zstandard.ZstdCompressor().compress(data), 4


# Known gap, kept visible: DESIGN.md makes record batches opaque on the produce path, so Shale
# checks compressed batches' sizes, magic and CRC but never decompresses them there. Kafka
# decompresses and rejects garbage; Shale stores it (uncompressed batches are walked and refused).
OPAQUE_COMPRESSED = ("compressed record bodies are not decoded on produce (DESIGN.md: batches are "
                     "opaque on the hot path); garbage inside a CRC-valid compressed batch is stored")


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("garbage", ["zeros", "random"])
def test_produce_batch_with_invalid_records(request, small_broker, codec, garbage):
    """A batch with a correct CRC whose (decompressed) records section is not valid records is refused (CORRUPT_MESSAGE or INVALID_RECORD) and nothing is stored, as Kafka's validator does."""
    if codec != "none":
        request.applymarker(pytest.mark.xfail(strict=True, reason=OPAQUE_COMPRESSED))
    topic = unique("badrec")
    cf_create_topic(small_broker.bootstrap, topic, 1)
    raw = bytes(1024) if garbage == "zeros" else random.Random(7).randbytes(1024)
    payload, attr = _compress(codec, raw)
    batch = wire.encode_batch(payload, 10, compression=attr)
    r = _produce_raw(small_broker, topic, batch, 1)
    assert r.error_code in (wire.ERROR_CORRUPT_MESSAGE, 87), (
        f"{codec} batch of {garbage} declared as 10 records: {r}")
    small_broker.assert_alive()
    good = wire.simple_batch([wire.Record(b"k", b"after the bad batch")])
    r = _produce_raw(small_broker, topic, good, 2)
    assert (r.error_code, r.base_offset) == (0, 0), f"the bad batch took offsets: {r}"
    consumed = cf_consume_all(small_broker.bootstrap, topic, [0], {0: 1}, timeout=20)
    assert [(c.offset, c.value) for c in consumed[0]] == [(0, b"after the bad batch")]


def gzip_of_zeros(prefix: bytes, zero_bytes: int, chunk: int = 16 << 20) -> bytes:
    """A valid gzip stream of `prefix` followed by `zero_bytes` zeros, built in ~1 s.

    Each 16 MiB chunk of zeros is deflated once with a full flush; after a full flush the
    compressor's output for identical input is identical, so the chunk's output is repeated.
    """
    assert zero_bytes % chunk == 0
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(chunk)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix)
    for _ in range(zero_bytes // chunk):
        crc = zlib.crc32(zeros, crc)
    total = len(prefix) + zero_bytes
    return head + block * (zero_bytes // chunk) + b"\x03\x00" + struct.pack("<II", crc, total & 0xFFFFFFFF)


def test_gzip_of_zeros_is_valid():
    """The bomb builder makes a correct gzip stream (checked small, by zlib itself)."""
    data = gzip_of_zeros(b"abc", 3 * 4096, chunk=4096)
    assert zlib.decompress(data, 31) == b"abc" + bytes(3 * 4096)


def zstd_of_zeros(zero_bytes: int, chunk: int = 16 << 20) -> bytes:
    """Concatenated zstd frames, each 16 MiB of zeros; a conforming decoder reads them all."""
    import zstandard
    frame = zstandard.ZstdCompressor(level=3).compress(bytes(chunk))
    return frame * (zero_bytes // chunk)


def _bomb(kind: str) -> tuple[bytes, int, int]:
    """(compressed records section, codec, declared record count)."""
    if kind == "gzip-zeros-4GiB":
        return gzip_of_zeros(b"", 4 << 30), wire.COMPRESSION_GZIP, 1_000_000
    if kind == "gzip-one-2GB-record":
        # A structurally valid record whose value is ~2 GB of zeros (and a 0 header count).
        value_len = 127 * (16 << 20) - 1
        body = b"\x00" + wire.varint(0) + wire.varint(0) + wire.varint(-1) + wire.varint(value_len)
        prefix = wire.varint(len(body) + value_len + 1) + body
        return gzip_of_zeros(prefix, 127 * (16 << 20)), wire.COMPRESSION_GZIP, 1
    if kind == "zstd-zeros-4GiB":
        return zstd_of_zeros(4 << 30), wire.COMPRESSION_ZSTD, 1_000_000
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["gzip-zeros-4GiB", "gzip-one-2GB-record", "zstd-zeros-4GiB"])
def test_compression_bomb(request, broker_factory, kind):
    """A small compressed batch that inflates to gigabytes neither crashes the broker nor makes it hold the inflated data in memory."""
    if kind == "zstd-zeros-4GiB":
        request.applymarker(pytest.mark.xfail(strict=True, reason=OPAQUE_COMPRESSED))
    b = broker_factory(message_max_bytes=16 << 20)  # let the compressed batch past the size check
    topic = unique("bomb")
    cf_create_topic(b.bootstrap, topic, 1)
    payload, codec, count = _bomb(kind)
    batch = wire.encode_batch(payload, count, compression=codec)
    print(f"{kind}: {len(batch)} bytes on the wire")
    started = time.monotonic()
    outcome = "closed"
    try:
        r = _produce_raw(b, topic, batch, 1, timeout=120)
        outcome = f"error code {r.error_code}"
    except wire.Closed:
        pass
    print(f"{kind}: {outcome} after {time.monotonic() - started:.1f}s; "
          f"peak RSS {b.peak_rss_bytes() >> 20} MiB")
    b.assert_alive()
    if kind.endswith("zeros-4GiB"):
        # zeros are not valid records: Kafka answers CORRUPT_MESSAGE / INVALID_RECORD
        assert outcome != "error code 0", f"{kind} was accepted"
    peak = b.peak_rss_bytes()
    assert peak < PEAK_RSS_LIMIT, (
        f"broker peak RSS reached {peak >> 20} MiB handling {kind}: decompression output is not "
        f"bounded (limit for this test {PEAK_RSS_LIMIT >> 20} MiB)")
    assert_serves(b.bootstrap)


# --- Connections ---------------------------------------------------------------------------------

def test_connection_limit(broker_factory):
    """With --max-connections 20, connections beyond 20 are not served (refused, closed or left waiting) and the broker serves normally once they go."""
    b = broker_factory(max_connections=20)
    time.sleep(0.5)  # the readiness probe's connection is gone
    socks: list[socket.socket] = []
    refused = 0
    for _ in range(40):
        try:
            s = socket.create_connection((b.host, b.port), timeout=2)
            socks.append(s)
        except OSError:
            refused += 1
    for i, s in enumerate(socks):
        try:
            s.sendall(wire.api_versions_request(i, 0))
        except OSError:
            pass
    answered, closed = set(), set()
    buffers = {s: b"" for s in socks}
    deadline = time.monotonic() + 5
    pending = set(socks)
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending), [], [], 0.2)
        for s in ready:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                closed.add(s)
                pending.discard(s)
                continue
            buffers[s] += chunk
            data = buffers[s]
            if len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
                answered.add(s)
                pending.discard(s)
    print(f"40 connection attempts: {len(answered)} answered, {len(closed)} closed by the broker, "
          f"{refused} refused, {len(pending)} left waiting")
    for s in socks:
        s.close()
    b.assert_alive()
    assert len(answered) <= 20, f"{len(answered)} connections served with max-connections 20"
    assert len(answered) >= 18, f"only {len(answered)} of the first 20 connections were served"
    time.sleep(0.5)
    assert_serves(b.bootstrap)
