import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Produce/consume throughput benchmark with the Kafka Java client, run by scripts/bench.sh.
 * The client does no per-record work beyond the client library's own (one shared payload array,
 * byte-array serializers), so on loopback it measures the broker rather than the client.
 *
 * <pre>
 *   produce BOOTSTRAP TOPIC PARTITIONS TOTAL_BYTES RECORD_BYTES
 *       creates the topic, sends TOTAL_BYTES/RECORD_BYTES records (acks=1, no compression,
 *       linger.ms=10, batch.size=1 MiB), waits for every ack
 *   consume BOOTSTRAP TOPIC RECORDS
 *       reads RECORDS records from all partitions with assign() from the beginning
 * </pre>
 * Each prints one line: "RESULT op=... records=N bytes=B seconds=S mb_per_s=X records_per_s=Y"
 * (bytes are record values; MB = 10^6 bytes).
 */
public final class ShaleBench {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "produce" -> produce(args[1], args[2], Integer.parseInt(args[3]), Long.parseLong(args[4]),
                    Integer.parseInt(args[5]));
            case "consume" -> consume(args[1], args[2], Long.parseLong(args[3]));
            default -> throw new IllegalArgumentException("unknown subcommand " + args[0]);
        }
        System.exit(0);
    }

    static void produce(String bootstrap, String topic, int partitions, long totalBytes, int recordBytes)
            throws Exception {
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
        }
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.ACKS_CONFIG, "1");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 10);
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, 1 << 20);
        p.put(ProducerConfig.BUFFER_MEMORY_CONFIG, 256L << 20);
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 8 << 20);
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5);
        long records = totalBytes / recordBytes;
        byte[] payload = new byte[recordBytes];
        new Random(42).nextBytes(payload); // incompressible, though compression is off
        AtomicLong acked = new AtomicLong();
        AtomicReference<Exception> error = new AtomicReference<>();
        long start;
        long end;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            // Warm up metadata and connections outside the timed section.
            for (PartitionInfo pi : producer.partitionsFor(topic)) {
                producer.send(new ProducerRecord<>(topic, pi.partition(), null, new byte[0])).get(30, TimeUnit.SECONDS);
            }
            start = System.nanoTime();
            for (long i = 0; i < records; i++) {
                producer.send(new ProducerRecord<>(topic, (int) (i % partitions), null, payload), (md, e) -> {
                    if (e != null) {
                        error.compareAndSet(null, e);
                    } else {
                        acked.incrementAndGet();
                    }
                });
            }
            producer.flush();
            end = System.nanoTime();
        }
        if (error.get() != null) {
            throw new RuntimeException("produce failed", error.get());
        }
        report("produce", acked.get(), acked.get() * recordBytes, end - start);
    }

    static void consume(String bootstrap, String topic, long records) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.FETCH_MAX_BYTES_CONFIG, 64 << 20);
        p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 16 << 20);
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 10_000);
        p.put(ConsumerConfig.RECEIVE_BUFFER_CONFIG, 4 << 20);
        p.put(ConsumerConfig.CHECK_CRCS_CONFIG, false); // as in kafka-consumer-perf-test; CRCs are tested elsewhere
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            long n = 0;
            long bytes = 0;
            long start = System.nanoTime();
            long deadline = start + TimeUnit.MINUTES.toNanos(10);
            while (n < records && System.nanoTime() < deadline) {
                ConsumerRecords<byte[], byte[]> batch = c.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    if (r.value() != null && r.value().length > 0) { // skip the warm-up records
                        n++;
                        bytes += r.value().length;
                    }
                }
            }
            long end = System.nanoTime();
            if (n < records) {
                throw new RuntimeException("consumed only " + n + " of " + records + " records");
            }
            report("consume", n, bytes, end - start);
        }
    }

    static void report(String op, long records, long bytes, long nanos) {
        double s = nanos / 1e9;
        System.out.printf("RESULT op=%s records=%d bytes=%d seconds=%.3f mb_per_s=%.1f records_per_s=%.0f%n",
                op, records, bytes, s, bytes / 1e6 / s, records / s);
    }
}
