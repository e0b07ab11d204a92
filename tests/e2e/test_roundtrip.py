"""Round trips with three real client implementations: librdkafka, kafka-python, the Java client.

Each creates a 3-partition topic with its own admin API, produces keyed records with headers in
every codec, reads everything back with manual assignment from the earliest offset, and compares
byte for byte; then looks offsets up by timestamp.
"""

from __future__ import annotations

import time

from clients import (
    CODECS, assert_verified, cf_consume_all, cf_create_topic, cf_produce, end_offsets_of,
    expected_offset_for_time, kp_admin, kp_consume_all, kp_consumer, kp_produce, make_records,
    now_ms, run_java, unique,
)

PER_CODEC = 300
PARTITIONS = [0, 1, 2]


def _produce_every_codec(produce, bootstrap, topic, tag):
    delivered = []
    ts_base = now_ms() - 600_000
    for i, codec in enumerate(CODECS):
        recs = make_records(f"{tag}-{codec}", PER_CODEC, seed=i,
                            ts_base=ts_base + i * PER_CODEC * 10)
        delivered += produce(bootstrap, topic, recs, codec)
    return delivered


def _time_targets(delivered):
    ts = sorted(d.rec.timestamp for d in delivered)
    middle = ts[len(ts) // 2]
    # exactly a record's timestamp, between two records, before everything, after everything
    return [middle, middle + 5, ts[0] - 1000, ts[-1] + 1000]


def test_librdkafka_roundtrip_all_codecs(broker):
    """librdkafka (confluent-kafka) reads back byte for byte what it produced in every codec, at dense offsets, and finds offsets by timestamp."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    from clients import cf_admin, cf_consumer

    topic = unique("rt-librdkafka")
    cf_create_topic(broker.bootstrap, topic, 3)
    delivered = _produce_every_codec(cf_produce, broker.bootstrap, topic, "cf")
    consumed = cf_consume_all(broker.bootstrap, topic, PARTITIONS, end_offsets_of(delivered))
    assert_verified(delivered, consumed, PARTITIONS)

    c = cf_consumer(broker.bootstrap)
    try:
        for target in _time_targets(delivered):
            got = c.offsets_for_times([TopicPartition(topic, p, target) for p in PARTITIONS], timeout=30)
            for tp in got:
                assert tp.error is None, f"offsets_for_times({target}) partition {tp.partition}: {tp.error}"
                want = expected_offset_for_time(delivered, tp.partition, target)
                assert tp.offset == (-1 if want is None else want), (
                    f"offsets_for_times({target}) partition {tp.partition}: got {tp.offset}, "
                    f"expected {want} (first record with timestamp >= target)")
    finally:
        c.close()

    admin = cf_admin(broker.bootstrap)
    ends = end_offsets_of(delivered)
    for name, spec in [("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest()),
                       ("max_timestamp", OffsetSpec.max_timestamp())]:
        futures = admin.list_offsets({TopicPartition(topic, p): spec for p in PARTITIONS},
                                     request_timeout=30)
        for tp, f in futures.items():
            info = f.result(30)
            in_p = [d for d in delivered if d.partition == tp.partition]
            if name == "earliest":
                assert info.offset == 0, f"earliest offset of partition {tp.partition}: {info.offset}"
            elif name == "latest":
                assert info.offset == ends[tp.partition], (
                    f"latest offset of partition {tp.partition}: {info.offset}, "
                    f"expected {ends[tp.partition]}")
            else:
                top = max(in_p, key=lambda d: (d.rec.timestamp, -d.offset))
                assert (info.offset, info.timestamp) == (top.offset, top.rec.timestamp), (
                    f"max timestamp of partition {tp.partition}: got offset {info.offset} ts "
                    f"{info.timestamp}, expected {top.offset} ts {top.rec.timestamp}")


def test_kafka_python_roundtrip_all_codecs(broker):
    """kafka-python reads back byte for byte what it produced in every codec, at dense offsets, and finds offsets by timestamp."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    topic = unique("rt-kafka-python")
    admin = kp_admin(broker.bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}})
        deadline = time.monotonic() + 30
        while True:
            described = admin.describe_topics([topic])
            if described and described[0]["error_code"] == 0 and len(described[0]["partitions"]) == 3:
                break
            assert time.monotonic() < deadline, f"topic not visible: {described}"
            time.sleep(0.2)

        delivered = _produce_every_codec(kp_produce, broker.bootstrap, topic, "kp")
        consumed = kp_consume_all(broker.bootstrap, topic, PARTITIONS, end_offsets_of(delivered))
        assert_verified(delivered, consumed, PARTITIONS)

        c = kp_consumer(broker.bootstrap)
        try:
            for target in _time_targets(delivered):
                got = c.offsets_for_times({TopicPartition(topic, p): target for p in PARTITIONS})
                for tp, ot in got.items():
                    want = expected_offset_for_time(delivered, tp.partition, target)
                    have = None if ot is None else ot.offset
                    assert have == want, (f"offsets_for_times({target}) partition {tp.partition}: "
                                          f"got {ot}, expected offset {want}")
                    if ot is not None:
                        want_ts = next(d.rec.timestamp for d in delivered
                                       if d.partition == tp.partition and d.offset == want)
                        assert ot.timestamp == want_ts, f"timestamp of the found record: {ot}"
        finally:
            c.close()

        ends = end_offsets_of(delivered)
        got = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.MAX_TIMESTAMP
                                            for p in PARTITIONS})
        for tp, ot in got.items():
            in_p = [d for d in delivered if d.partition == tp.partition]
            top = max(in_p, key=lambda d: (d.rec.timestamp, -d.offset))
            assert (ot.offset, ot.timestamp) == (top.offset, top.rec.timestamp), (
                f"max timestamp of partition {tp.partition}: {ot}, expected {top.offset}")
        got = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.LATEST
                                            for p in PARTITIONS})
        for tp, ot in got.items():
            assert ot.offset == ends[tp.partition], f"latest of partition {tp.partition}: {ot}"
    finally:
        admin.close()


def test_java_client_roundtrip_all_codecs(broker, java_cmd):
    """The Java client 4.3 (idempotent producer, the default) reads back byte for byte what it produced in every codec, at dense offsets, and finds offsets by timestamp and max timestamp."""
    topic = unique("rt-java")
    proc = run_java(java_cmd, "produce-consume-verify", broker.bootstrap, topic)
    print(proc.stdout)


def test_acks_levels(broker):
    """Records produced with acks=0, acks=1 and acks=all all land, in order, at dense offsets."""
    import kafka_wire as wire
    from clients import cf_producer

    topic = unique("acks")
    cf_create_topic(broker.bootstrap, topic, 1)
    sent = []
    for acks in ["0", "1", "all"]:
        p = cf_producer(broker.bootstrap, acks=acks, linger_ms=2)
        for i in range(200):
            value = f"acks={acks} #{i}".encode()
            p.produce(topic, value=value, partition=0)
            sent.append(value)
        assert p.flush(30) == 0
        if acks == "0":
            time.sleep(0.5)  # nothing tells an acks=0 producer when the broker has the records
    consumed = cf_consume_all(broker.bootstrap, topic, [0], {0: len(sent)})
    got = [(c.offset, c.value) for c in consumed[0]]
    assert got == list(enumerate(sent)), (
        f"{len(got)} records read back of {len(sent)}; first difference at "
        f"{next((i for i, (a, b) in enumerate(zip(got, enumerate(sent))) if a != b), len(got))}")

    # On the wire: acks=0 gets no response at all, so the next response on the connection is the
    # one for the request after it.
    versions = wire.supported_versions(broker.host, broker.port)
    v = wire.pick_version(versions, wire.API_PRODUCE, [7, 8, 6, 5, 4, 3])
    batch = wire.simple_batch([wire.Record(b"raw", b"acks=0 raw")])
    with wire.Conn(broker.host, broker.port) as c:
        c.send(wire.produce_request(100, topic, 0, batch, acks=0, version=v))
        resp = c.roundtrip(wire.api_versions_request(101, 0))
        corr = wire.parse_api_versions_v0(resp).correlation_id
        assert corr == 101, f"expected only the ApiVersions response (101), got correlation {corr}"
    consumed = cf_consume_all(broker.bootstrap, topic, [0], {0: len(sent) + 1})
    assert consumed[0][-1].value == b"acks=0 raw" and consumed[0][-1].offset == len(sent)
