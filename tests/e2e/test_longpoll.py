"""Fetch long polling: an empty fetch waits, and a produce wakes it up."""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, TopicPartition

import kafka_wire as wire
from clients import cf_consumer, cf_create_topic, cf_producer, unique

MAX_WAIT_MS = 3000
SLACK_S = 2.0


def test_fetch_long_poll_returns_when_a_record_arrives(broker):
    """A consumer waiting in a long-poll fetch (fetch.wait.max.ms=3000) on an empty partition receives a record produced meanwhile."""
    topic = unique("longpoll")
    cf_create_topic(broker.bootstrap, topic, 2)
    producer = cf_producer(broker.bootstrap, linger_ms=0, acks="1")
    # Warm the producer's metadata and connection on the other partition, so the timed produce
    # below is a single round trip.
    producer.produce(topic, value=b"warm-up", partition=1)
    assert producer.flush(30) == 0

    consumer = cf_consumer(broker.bootstrap, fetch_wait_max_ms=MAX_WAIT_MS, fetch_min_bytes=1,
                           enable_partition_eof=True)
    received: list[tuple[float, bytes]] = []
    errors: list[str] = []
    reached_eof = threading.Event()
    stop = threading.Event()

    def consume():
        consumer.assign([TopicPartition(topic, 0, 0)])
        while not stop.is_set() and not received:
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    reached_eof.set()
                else:
                    errors.append(str(msg.error()))
                continue
            received.append((time.monotonic(), msg.value()))

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        assert reached_eof.wait(30), f"consumer never reached the end of the empty partition: {errors}"
        time.sleep(1.0)  # let the next fetch settle into its long poll at the broker
        assert not received, f"a record arrived from an empty partition: {received}"
        acked = []
        sent_at = time.monotonic()
        producer.produce(topic, value=b"wake up", partition=0,
                         on_delivery=lambda err, msg: acked.append((time.monotonic(), err)))
        producer.flush(30)
        t.join(MAX_WAIT_MS / 1000 + SLACK_S + 10)
    finally:
        stop.set()
        t.join(5)
        consumer.close()

    assert acked and acked[0][1] is None, f"produce failed: {acked}"
    assert not errors, errors
    assert received, "the record was never delivered to the waiting consumer"
    latency = received[0][0] - sent_at
    print(f"long poll: record delivered {latency * 1000:.0f} ms after produce() "
          f"(ack after {(acked[0][0] - sent_at) * 1000:.0f} ms; fetch.wait.max.ms={MAX_WAIT_MS})")
    assert received[0][1] == b"wake up"
    assert latency < MAX_WAIT_MS / 1000 + SLACK_S, (
        f"record took {latency:.2f}s to reach a consumer; even a broker that ignores new data "
        f"until fetch.wait.max.ms expires should deliver within {MAX_WAIT_MS / 1000 + SLACK_S}s")


def test_empty_fetch_waits_for_max_wait(broker):
    """A Fetch on an empty partition with min_bytes=1 is held until max_wait_ms (Kafka's long poll), while a Fetch that has data to return answers without waiting."""
    topic = unique("longpoll-raw")
    cf_create_topic(broker.bootstrap, topic, 1)
    versions = wire.supported_versions(broker.host, broker.port)
    wire.pick_version(versions, wire.API_FETCH, [4])

    with wire.Conn(broker.host, broker.port, timeout=30) as c:
        started = time.monotonic()
        r = wire.parse_fetch_response_v4(c.roundtrip(
            wire.fetch_request_v4(1, topic, 0, 0, max_wait_ms=1500), timeout=30))
        waited = time.monotonic() - started
    print(f"empty fetch with max_wait_ms=1500 answered after {waited * 1000:.0f} ms")
    assert (r.correlation_id, r.error_code, r.high_watermark) == (1, 0, 0), r
    assert not r.records, r
    assert waited >= 1.0, (f"empty fetch answered after {waited * 1000:.0f} ms; a long poll holds "
                           f"it for max_wait_ms (1500) when min_bytes is not reached")

    producer = cf_producer(broker.bootstrap)
    producer.produce(topic, value=b"now there is data", partition=0)
    assert producer.flush(30) == 0
    with wire.Conn(broker.host, broker.port, timeout=30) as c:
        started = time.monotonic()
        r = wire.parse_fetch_response_v4(c.roundtrip(
            wire.fetch_request_v4(2, topic, 0, 0, max_wait_ms=10_000), timeout=30))
        took = time.monotonic() - started
    print(f"fetch with data available answered after {took * 1000:.0f} ms")
    assert r.error_code == 0 and r.high_watermark == 1 and r.records, r
    assert took < 5.0, f"fetch with data available waited {took:.1f}s (max_wait_ms=10000)"
