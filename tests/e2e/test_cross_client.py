"""Records produced by one client implementation, read back by another.

Each client compresses and frames batches its own way (the Java client writes snappy in the
xerial framing, librdkafka and kafka-python raw; LZ4 frames differ in block settings), so each
pair checks that the broker stores what it was given and serves it to a different decoder.
"""

from __future__ import annotations

import pytest

from clients import (
    assert_verified, cf_consume_all, cf_create_topic, cf_produce, end_offsets_of, kp_consume_all,
    kp_produce, make_records, now_ms, read_manifest, run_java, unique, write_manifest,
)

PAIRS = [
    # producer, consumer, codecs
    ("java", "librdkafka", ["snappy", "lz4"]),
    ("java", "kafka-python", ["zstd", "gzip", "snappy"]),
    ("librdkafka", "java", ["snappy", "lz4", "zstd"]),
    ("librdkafka", "kafka-python", ["gzip", "lz4"]),
    ("kafka-python", "java", ["snappy", "lz4", "gzip"]),
    ("kafka-python", "librdkafka", ["zstd", "snappy"]),
]
PARTITIONS = [0, 1, 2]
COUNT = 200


@pytest.mark.parametrize("producer,consumer,codecs", PAIRS,
                         ids=[f"{p}-to-{c}" for p, c, _ in PAIRS])
def test_cross_client(broker, java_cmd, tmp_path, producer, consumer, codecs):
    """What one client produced (in the listed codecs) another reads back byte for byte, at the acknowledged offsets."""
    topic = unique(f"x-{producer}-{consumer}")
    cf_create_topic(broker.bootstrap, topic, 3)
    manifest = tmp_path / "manifest.tsv"

    if producer == "java":
        run_java(java_cmd, "produce", broker.bootstrap, topic, ",".join(codecs), COUNT, 7, manifest)
        delivered = read_manifest(manifest)
    else:
        produce = cf_produce if producer == "librdkafka" else kp_produce
        delivered = []
        ts = now_ms() - 600_000
        for i, codec in enumerate(codecs):
            recs = make_records(f"{producer}-{codec}", COUNT, seed=100 + i, ts_base=ts + i * COUNT * 10)
            delivered += produce(broker.bootstrap, topic, recs, codec)
    assert len(delivered) == COUNT * len(codecs)

    if consumer == "java":
        write_manifest(manifest, delivered)
        run_java(java_cmd, "consume-verify", broker.bootstrap, topic, manifest)
    else:
        consume = cf_consume_all if consumer == "librdkafka" else kp_consume_all
        consumed = consume(broker.bootstrap, topic, PARTITIONS, end_offsets_of(delivered))
        assert_verified(delivered, consumed, PARTITIONS)
