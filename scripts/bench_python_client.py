"""librdkafka (confluent-kafka) produce/consume throughput client, scripts/bench.sh's default.

Prints the same RESULT line as tests/java/ShaleBench.java. The Python side is one produce() call
per record (~2 us) and one consume() call per 10,000 records; measured on the 2-core development
machine with 1 KiB records it used less CPU per record than the Java client or kcat (see
docs/bench.md), so it is the one that leaves the most CPU to the broker.

    bench_python_client.py produce BOOTSTRAP TOPIC PARTITIONS TOTAL_BYTES RECORD_BYTES
    bench_python_client.py consume BOOTSTRAP TOPIC RECORDS
"""

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic


def report(op, records, nbytes, seconds):
    print(f"RESULT op={op} records={records} bytes={nbytes} seconds={seconds:.3f} "
          f"mb_per_s={nbytes / 1e6 / seconds:.1f} records_per_s={records / seconds:.0f}", flush=True)


def produce(bootstrap, topic, partitions, total_bytes, record_bytes):
    # Keep the admin client alive until the future resolves: a destroyed handle fails it.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    acks = os.environ.get("BENCH_ACKS", "1")  # scripts/bench.sh --acks
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "enable.idempotence": False,
                  "compression.type": "none", "linger.ms": 10, "batch.size": 1 << 20,
                  "queue.buffering.max.kbytes": 1 << 20, "queue.buffering.max.messages": 1_000_000,
                  "message.max.bytes": 8 << 20})
    for part in range(partitions):  # warm up metadata and connections
        p.produce(topic, b"", partition=part)
    p.flush(30)
    payload = os.urandom(record_bytes)
    n = total_bytes // record_bytes
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                p.produce(topic, payload, partition=i % partitions, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.001)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(600)
    seconds = time.perf_counter() - start
    if errors:
        sys.exit(f"{len(errors)} produce errors, first: {errors[0]}")
    report("produce", n, n * record_bytes, seconds)


def consume(bootstrap, topic, records):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                  "max.partition.fetch.bytes": 16 << 20, "check.crcs": False})
    md = c.list_topics(topic, timeout=30)
    parts = sorted(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    n = nbytes = 0
    start = time.perf_counter()
    deadline = start + 600
    while n < records and time.perf_counter() < deadline:
        for m in c.consume(10000, 0.5):
            if m.error() is None and m.value():
                n += 1
                nbytes += len(m.value())
    seconds = time.perf_counter() - start
    c.close()
    if n < records:
        sys.exit(f"consumed only {n} of {records} records")
    report("consume", n, nbytes, seconds)


if __name__ == "__main__":
    op = sys.argv[1]
    if op == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif op == "consume":
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
