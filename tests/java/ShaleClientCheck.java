import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * End-to-end checks of a Kafka-compatible broker with the Kafka Java client (4.3), driven by the
 * pytest suite in tests/e2e. Every subcommand exits 0 when all checks pass and 1 with a
 * "CHECK FAILED: ..." message on stderr otherwise.
 *
 * <pre>
 *   produce-consume-verify BOOTSTRAP TOPIC      create a 3-partition topic with Admin, produce
 *                                               records in every codec (idempotent producer),
 *                                               read them back with assign(), compare byte for
 *                                               byte, check offsets and ListOffsets/offsetsForTimes
 *   produce BOOTSTRAP TOPIC CODECS COUNT SEED MANIFEST
 *                                               produce COUNT generated records with each codec
 *                                               (comma-separated); write what was
 *                                               acknowledged to MANIFEST (see tests/e2e/clients.py)
 *   consume-verify BOOTSTRAP TOPIC MANIFEST     read the topic back and compare with MANIFEST
 *   idempotent-restart BOOTSTRAP TOPIC COUNT    produce COUNT records with an idempotent producer,
 *                                               printing "ACKED n" as acks arrive (the caller
 *                                               restarts the broker meanwhile); then check each
 *                                               record is there exactly once, offsets dense
 * </pre>
 */
public final class ShaleClientCheck {
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    static final int[] SIZES = {1, 7, 100, 1000, 4096, 20000};
    static final PrintStream OUT = System.out;

    record Hdr(String name, byte[] value) {}

    record Rec(Integer partition, long timestamp, byte[] key, byte[] value, List<Hdr> headers) {}

    record Delivered(int partition, long offset, Rec rec) {}

    static final class CheckFailed extends Exception {
        CheckFailed(String msg) {
            super(msg);
        }
    }

    public static void main(String[] args) {
        try {
            if (args.length < 3) {
                throw new IllegalArgumentException("usage: see the class comment");
            }
            switch (args[0]) {
                case "produce-consume-verify" -> produceConsumeVerify(args[1], args[2]);
                case "produce" -> produceToManifest(args[1], args[2], args[3],
                        Integer.parseInt(args[4]), Long.parseLong(args[5]), Path.of(args[6]));
                case "consume-verify" -> consumeVerify(args[1], args[2], Path.of(args[3]));
                case "idempotent-restart" -> idempotentRestart(args[1], args[2], Integer.parseInt(args[3]));
                default -> throw new IllegalArgumentException("unknown subcommand " + args[0]);
            }
        } catch (CheckFailed e) {
            System.err.println("CHECK FAILED: " + e.getMessage());
            System.exit(1);
        } catch (Throwable e) {
            System.err.println("CHECK FAILED: unexpected exception");
            e.printStackTrace();
            System.exit(2);
        }
        OUT.println("OK");
        OUT.flush();
        System.exit(0);
    }

    // --- Subcommands -------------------------------------------------------------------------

    static void produceConsumeVerify(String bootstrap, String topic) throws Exception {
        createTopic(bootstrap, topic, 3);
        long tsBase = System.currentTimeMillis() - 600_000;
        List<Delivered> delivered = new ArrayList<>();
        int perCodec = 300;
        for (int c = 0; c < CODECS.length; c++) {
            List<Rec> recs = generate("java-" + CODECS[c], perCodec, 1000 + c, tsBase + (long) c * perCodec * 10, 3);
            delivered.addAll(produce(bootstrap, topic, CODECS[c], recs, true));
            OUT.printf("produced %d records with %s%n", recs.size(), CODECS[c]);
        }
        Map<Integer, List<ConsumerRecord<byte[], byte[]>>> consumed = consumeAll(bootstrap, topic, delivered);
        List<String> problems = verify(delivered, consumed);
        problems.addAll(checkOffsetLookups(bootstrap, topic, delivered));
        fail(problems, delivered.size(), consumed);
        OUT.printf("verified %d records in %d partitions%n", delivered.size(), consumed.size());
    }

    /** CODECS is one codec or several, comma-separated: COUNT records are produced with each. */
    static void produceToManifest(String bootstrap, String topic, String codecs, int count, long seed,
                                  Path manifest) throws Exception {
        waitForTopic(bootstrap, topic);
        long tsBase = System.currentTimeMillis() - 600_000;
        List<Delivered> delivered = new ArrayList<>();
        for (String codec : codecs.split(",")) {
            List<Rec> recs = generate("java-" + codec, count, seed++, tsBase, 3);
            tsBase += count * 10L;
            delivered.addAll(produce(bootstrap, topic, codec, recs, true));
            OUT.printf("produced %d records with %s%n", recs.size(), codec);
        }
        writeManifest(manifest, delivered);
    }

    static void consumeVerify(String bootstrap, String topic, Path manifest) throws Exception {
        List<Delivered> delivered = readManifest(manifest);
        Map<Integer, List<ConsumerRecord<byte[], byte[]>>> consumed = consumeAll(bootstrap, topic, delivered);
        fail(verify(delivered, consumed), delivered.size(), consumed);
        OUT.printf("verified %d records%n", delivered.size());
    }

    static void idempotentRestart(String bootstrap, String topic, int count) throws Exception {
        createTopic(bootstrap, topic, 3);
        Properties p = producerProps(bootstrap, "none", true);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);
        p.put(ProducerConfig.RETRY_BACKOFF_MAX_MS_CONFIG, 500);
        Map<Integer, long[]> acked = new ConcurrentHashMap<>(); // record index -> {partition, offset}
        Map<Integer, String> errors = new ConcurrentHashMap<>();
        AtomicLong ackCount = new AtomicLong();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < count; i++) {
                final int idx = i;
                byte[] value = ("idem-" + i + "-" + "x".repeat(200)).getBytes(StandardCharsets.UTF_8);
                byte[] key = ("k" + (i % 50)).getBytes(StandardCharsets.UTF_8);
                producer.send(new ProducerRecord<>(topic, key, value), (md, e) -> {
                    if (e != null) {
                        errors.put(idx, e.toString());
                    } else {
                        acked.put(idx, new long[] {md.partition(), md.offset()});
                        long n = ackCount.incrementAndGet();
                        if (n % 100 == 0) {
                            synchronized (OUT) {
                                OUT.println("ACKED " + n);
                                OUT.flush();
                            }
                        }
                    }
                });
                Thread.sleep(1); // spread sends over a few seconds so the restart lands mid-stream
            }
            producer.flush();
        }
        OUT.printf("PRODUCED acked=%d errors=%d%n", acked.size(), errors.size());
        List<String> problems = new ArrayList<>();
        if (!errors.isEmpty()) {
            problems.add(errors.size() + " sends failed, first: " + new TreeMap<>(errors).firstEntry());
        }
        // Read everything back: each value exactly once, and at its acknowledged offset.
        Map<Integer, List<ConsumerRecord<byte[], byte[]>>> consumed = consumeAll(bootstrap, topic, List.of());
        Map<String, List<String>> where = new HashMap<>();
        for (List<ConsumerRecord<byte[], byte[]>> recs : consumed.values()) {
            problems.addAll(checkDense(recs));
            for (ConsumerRecord<byte[], byte[]> r : recs) {
                String v = new String(r.value(), StandardCharsets.UTF_8);
                String id = v.substring(0, v.indexOf('-', 5));
                where.computeIfAbsent(id, k -> new ArrayList<>()).add(r.partition() + "@" + r.offset());
            }
        }
        int dups = 0;
        for (Map.Entry<String, List<String>> e : where.entrySet()) {
            if (e.getValue().size() > 1 && dups++ < 10) {
                problems.add("duplicate: " + e.getKey() + " at " + e.getValue());
            }
        }
        if (dups > 0) {
            problems.add(dups + " records stored more than once");
        }
        for (Map.Entry<Integer, long[]> e : acked.entrySet()) {
            List<String> at = where.get("idem-" + e.getKey());
            String want = e.getValue()[0] + "@" + e.getValue()[1];
            if (at == null || !at.contains(want)) {
                problems.add("idem-" + e.getKey() + " acknowledged at " + want + " but found at " + at);
                if (problems.size() > 40) {
                    break;
                }
            }
        }
        int total = consumed.values().stream().mapToInt(List::size).sum();
        if (total != count) {
            problems.add("read back " + total + " records, produced " + count);
        }
        fail(problems, acked.size(), consumed);
        OUT.printf("verified %d records, no duplicates%n", total);
    }

    // --- Records -----------------------------------------------------------------------------

    /** Deterministic records: null/empty keys and values, 1 B..150 KB, varied headers. */
    static List<Rec> generate(String tag, int count, long seed, long tsBase, int partitions) {
        Random rng = new Random(seed);
        List<Rec> out = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            byte[] key = i % 10 == 0 ? null : (tag + "-key-" + (i % 37)).getBytes(StandardCharsets.UTF_8);
            byte[] value;
            if (i % 17 == 0) {
                value = null;
            } else if (i % 13 == 0) {
                value = new byte[0];
            } else {
                int size = i % 97 == 0 ? 150_000 : SIZES[rng.nextInt(SIZES.length)];
                value = new byte[size];
                if (i % 3 == 0) {
                    rng.nextBytes(value);
                } else {
                    byte[] pattern = (tag + ":" + i + ":").getBytes(StandardCharsets.UTF_8);
                    for (int j = 0; j < size; j++) {
                        value[j] = pattern[j % pattern.length];
                    }
                }
            }
            List<Hdr> headers = new ArrayList<>();
            if (i % 5 != 0) {
                headers.add(new Hdr("trace-id", (tag + "-" + i).getBytes(StandardCharsets.UTF_8)));
                if (i % 2 == 0) {
                    headers.add(new Hdr("empty", new byte[0]));
                }
                if (i % 7 == 0) {
                    headers.add(new Hdr("null", null));
                }
                if (i % 11 == 0) {
                    headers.add(new Hdr("dup", "first".getBytes(StandardCharsets.UTF_8)));
                    headers.add(new Hdr("dup", "second".getBytes(StandardCharsets.UTF_8)));
                }
                if (i % 23 == 0) {
                    byte[] bin = new byte[64];
                    rng.nextBytes(bin);
                    headers.add(new Hdr("bin", bin));
                }
                if (i % 29 == 0) {
                    headers.add(new Hdr("ключ-ü", "värde".getBytes(StandardCharsets.UTF_8)));
                }
            }
            Integer partition = i % 4 == 0 ? i % partitions : null;
            out.add(new Rec(partition, tsBase + i * 10L, key, value, headers));
        }
        return out;
    }

    // --- Client operations -------------------------------------------------------------------

    static Properties producerProps(String bootstrap, String codec, boolean idempotent) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "shale-check-producer");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, idempotent);
        p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, 4 << 20);
        return p;
    }

    static List<Delivered> produce(String bootstrap, String topic, String codec, List<Rec> recs,
                                   boolean idempotent) throws Exception {
        List<Future<RecordMetadata>> futures = new ArrayList<>(recs.size());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(producerProps(bootstrap, codec, idempotent))) {
            for (Rec r : recs) {
                List<Header> headers = new ArrayList<>();
                for (Hdr h : r.headers()) {
                    headers.add(new RecordHeader(h.name(), h.value()));
                }
                futures.add(producer.send(new ProducerRecord<>(topic, r.partition(), r.timestamp(), r.key(), r.value(), headers)));
            }
            producer.flush();
            List<Delivered> out = new ArrayList<>(recs.size());
            for (int i = 0; i < recs.size(); i++) {
                RecordMetadata md;
                try {
                    md = futures.get(i).get(60, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    throw new CheckFailed("send " + i + " (" + codec + ") failed: " + e.getCause());
                }
                out.add(new Delivered(md.partition(), md.offset(), recs.get(i)));
            }
            return out;
        }
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "shale-check-admin");
        return Admin.create(p);
    }

    static void createTopic(String bootstrap, String topic, int partitions) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
                // The Admin client retries CreateTopics after a lost connection, and the retry
                // finds the topic its first attempt created. The partition count is checked below.
                System.err.println("WARNING: createTopics(" + topic + "): " + e.getCause().getMessage());
            }
            long deadline = System.currentTimeMillis() + 30_000;
            while (true) {
                try {
                    int n = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS)
                            .get(topic).partitions().size();
                    if (n == partitions) {
                        return;
                    }
                } catch (ExecutionException e) {
                    if (System.currentTimeMillis() > deadline) {
                        throw e;
                    }
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new CheckFailed("topic " + topic + " not visible with " + partitions + " partitions");
                }
                Thread.sleep(200);
            }
        }
    }

    static void waitForTopic(String bootstrap, String topic) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS);
        }
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "shale-check-consumer-" + UUID.randomUUID());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.CHECK_CRCS_CONFIG, true);
        // No group.id: assign() only, no group coordinator (Shale has none yet).
        return new KafkaConsumer<>(p);
    }

    /**
     * Reads every partition of the topic from the beginning with assign(), up to the larger of
     * the end offset at start and what `delivered` says was acknowledged.
     */
    static Map<Integer, List<ConsumerRecord<byte[], byte[]>>> consumeAll(String bootstrap, String topic,
                                                                         List<Delivered> delivered) throws Exception {
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = new HashMap<>(c.endOffsets(tps, Duration.ofSeconds(30)));
            for (Delivered d : delivered) {
                end.merge(new TopicPartition(topic, d.partition()), d.offset() + 1, Math::max);
            }
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> out = new TreeMap<>();
            for (TopicPartition tp : tps) {
                out.put(tp.partition(), new ArrayList<>());
            }
            long deadline = System.currentTimeMillis() + 60_000;
            while (System.currentTimeMillis() < deadline) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (c.position(tp) < end.get(tp)) {
                        done = false;
                    }
                }
                if (done) {
                    break;
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    out.get(r.partition()).add(r);
                }
            }
            return out;
        }
    }

    // --- Checks ------------------------------------------------------------------------------

    static List<String> checkDense(List<ConsumerRecord<byte[], byte[]>> recs) {
        List<String> problems = new ArrayList<>();
        for (int i = 0; i < recs.size(); i++) {
            if (recs.get(i).offset() != i) {
                problems.add("partition " + recs.get(i).partition() + ": offsets not dense: position " + i
                        + " has offset " + recs.get(i).offset());
                break;
            }
        }
        return problems;
    }

    static List<String> verify(List<Delivered> delivered, Map<Integer, List<ConsumerRecord<byte[], byte[]>>> consumed) {
        List<String> problems = new ArrayList<>();
        Map<String, Rec> expected = new HashMap<>();
        for (Delivered d : delivered) {
            if (expected.put(d.partition() + "@" + d.offset(), d.rec()) != null) {
                problems.add("two records acknowledged at " + d.partition() + "@" + d.offset());
            }
        }
        Set<String> seen = new HashSet<>();
        for (List<ConsumerRecord<byte[], byte[]>> recs : consumed.values()) {
            problems.addAll(checkDense(recs));
            for (ConsumerRecord<byte[], byte[]> c : recs) {
                String at = c.partition() + "@" + c.offset();
                seen.add(at);
                Rec r = expected.get(at);
                if (r == null) {
                    problems.add(at + ": record not acknowledged to the producer");
                    continue;
                }
                if (!Arrays.equals(c.key(), r.key())) {
                    problems.add(at + ": key " + preview(c.key()) + " != sent " + preview(r.key()));
                }
                if (!Arrays.equals(c.value(), r.value())) {
                    problems.add(at + ": value " + preview(c.value()) + " != sent " + preview(r.value()));
                }
                List<Hdr> got = new ArrayList<>();
                for (Header h : c.headers()) {
                    got.add(new Hdr(h.key(), h.value()));
                }
                if (!sameHeaders(got, r.headers())) {
                    problems.add(at + ": headers " + describe(got) + " != sent " + describe(r.headers()));
                }
                if (c.timestamp() != r.timestamp() || c.timestampType() != TimestampType.CREATE_TIME) {
                    problems.add(at + ": timestamp " + c.timestamp() + " (" + c.timestampType() + ") != sent "
                            + r.timestamp() + " (CreateTime)");
                }
            }
        }
        int missing = 0;
        for (String k : expected.keySet()) {
            if (!seen.contains(k) && missing++ < 10) {
                problems.add("acknowledged record at " + k + " not read back");
            }
        }
        if (missing > 0) {
            problems.add(missing + " acknowledged records not read back");
        }
        return problems;
    }

    /** offsetsForTimes and Admin.listOffsets (earliest, latest, max timestamp, by time). */
    static List<String> checkOffsetLookups(String bootstrap, String topic, List<Delivered> delivered) throws Exception {
        List<String> problems = new ArrayList<>();
        Map<Integer, List<Delivered>> byPartition = new TreeMap<>();
        for (Delivered d : delivered) {
            byPartition.computeIfAbsent(d.partition(), k -> new ArrayList<>()).add(d);
        }
        List<Delivered> sorted = new ArrayList<>(delivered);
        sorted.sort((a, b) -> Long.compare(a.rec().timestamp(), b.rec().timestamp()));
        long middle = sorted.get(sorted.size() / 2).rec().timestamp();
        long[] targets = {middle, middle + 5, sorted.get(0).rec().timestamp() - 1000,
                          sorted.get(sorted.size() - 1).rec().timestamp() + 1000};
        try (KafkaConsumer<byte[], byte[]> c = consumer(bootstrap); Admin admin = admin(bootstrap)) {
            for (long target : targets) {
                Map<TopicPartition, Long> query = new HashMap<>();
                for (int p : byPartition.keySet()) {
                    query.put(new TopicPartition(topic, p), target);
                }
                Map<TopicPartition, OffsetAndTimestamp> got = c.offsetsForTimes(query, Duration.ofSeconds(30));
                for (int p : byPartition.keySet()) {
                    Delivered want = null;
                    for (Delivered d : byPartition.get(p)) {
                        if (d.rec().timestamp() >= target && (want == null || d.offset() < want.offset())) {
                            want = d;
                        }
                    }
                    OffsetAndTimestamp g = got.get(new TopicPartition(topic, p));
                    String gs = g == null ? "none" : g.offset() + "/" + g.timestamp();
                    String ws = want == null ? "none" : want.offset() + "/" + want.rec().timestamp();
                    if (!gs.equals(ws)) {
                        problems.add("offsetsForTimes(" + target + ") partition " + p + ": got " + gs + ", expected " + ws);
                    }
                }
            }
            Map<TopicPartition, OffsetSpec> specs = new HashMap<>();
            for (String kind : List.of("earliest", "latest", "max")) {
                for (int p : byPartition.keySet()) {
                    specs.put(new TopicPartition(topic, p), switch (kind) {
                        case "earliest" -> OffsetSpec.earliest();
                        case "latest" -> OffsetSpec.latest();
                        default -> OffsetSpec.maxTimestamp();
                    });
                }
                Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> got =
                        admin.listOffsets(specs).all().get(30, TimeUnit.SECONDS);
                for (int p : byPartition.keySet()) {
                    List<Delivered> ds = byPartition.get(p);
                    Delivered maxTs = ds.get(0);
                    long maxOffset = -1;
                    for (Delivered d : ds) {
                        if (d.rec().timestamp() > maxTs.rec().timestamp()) {
                            maxTs = d;
                        }
                        maxOffset = Math.max(maxOffset, d.offset());
                    }
                    long want = switch (kind) {
                        case "earliest" -> 0;
                        case "latest" -> maxOffset + 1;
                        default -> maxTs.offset();
                    };
                    ListOffsetsResult.ListOffsetsResultInfo g = got.get(new TopicPartition(topic, p));
                    if (g.offset() != want) {
                        problems.add("listOffsets(" + kind + ") partition " + p + ": got " + g.offset() + ", expected " + want);
                    }
                    if (kind.equals("max") && g.timestamp() != maxTs.rec().timestamp()) {
                        problems.add("listOffsets(max timestamp) partition " + p + ": timestamp " + g.timestamp()
                                + ", expected " + maxTs.rec().timestamp());
                    }
                }
            }
        }
        return problems;
    }

    static boolean sameHeaders(List<Hdr> a, List<Hdr> b) {
        if (a.size() != b.size()) {
            return false;
        }
        for (int i = 0; i < a.size(); i++) {
            if (!a.get(i).name().equals(b.get(i).name()) || !Arrays.equals(a.get(i).value(), b.get(i).value())) {
                return false;
            }
        }
        return true;
    }

    static String describe(List<Hdr> hs) {
        StringBuilder sb = new StringBuilder("[");
        for (Hdr h : hs) {
            sb.append(h.name()).append('=').append(preview(h.value())).append(' ');
        }
        return sb.append(']').toString();
    }

    static String preview(byte[] b) {
        if (b == null) {
            return "null";
        }
        return b.length + "B:" + hex(Arrays.copyOf(b, Math.min(b.length, 24))) + (b.length > 24 ? "…" : "");
    }

    static void fail(List<String> problems, int acknowledged, Map<Integer, ? extends Collection<?>> consumed)
            throws CheckFailed {
        if (problems.isEmpty()) {
            return;
        }
        int total = consumed.values().stream().mapToInt(Collection::size).sum();
        StringBuilder sb = new StringBuilder(problems.size() + " problems (" + acknowledged
                + " acknowledged, " + total + " read back):");
        for (String p : problems.subList(0, Math.min(problems.size(), 30))) {
            sb.append("\n  ").append(p);
        }
        throw new CheckFailed(sb.toString());
    }

    // --- Manifest (format in tests/e2e/clients.py) -------------------------------------------

    static String hex(byte[] b) {
        if (b == null) {
            return "-";
        }
        StringBuilder sb = new StringBuilder(b.length * 2);
        for (byte x : b) {
            sb.append(Character.forDigit((x >> 4) & 0xf, 16)).append(Character.forDigit(x & 0xf, 16));
        }
        return sb.toString();
    }

    static byte[] unhex(String s) {
        if (s.equals("-")) {
            return null;
        }
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    static void writeManifest(Path path, List<Delivered> delivered) throws IOException {
        try (BufferedWriter w = Files.newBufferedWriter(path, StandardCharsets.UTF_8)) {
            for (Delivered d : delivered) {
                List<String> hs = new ArrayList<>();
                for (Hdr h : d.rec().headers()) {
                    hs.add(hex(h.name().getBytes(StandardCharsets.UTF_8)) + ":" + hex(h.value()));
                }
                w.write(d.partition() + "\t" + d.offset() + "\t" + d.rec().timestamp() + "\t" + hex(d.rec().key())
                        + "\t" + hex(d.rec().value()) + "\t" + String.join(",", hs) + "\n");
            }
        }
    }

    static List<Delivered> readManifest(Path path) throws IOException {
        List<Delivered> out = new ArrayList<>();
        for (String line : Files.readAllLines(path, StandardCharsets.UTF_8)) {
            String[] f = line.split("\t", -1);
            List<Hdr> hs = new ArrayList<>();
            if (!f[5].isEmpty()) {
                for (String h : f[5].split(",")) {
                    String[] kv = h.split(":", -1);
                    hs.add(new Hdr(new String(unhex(kv[0]), StandardCharsets.UTF_8), unhex(kv[1])));
                }
            }
            int partition = Integer.parseInt(f[0]);
            Rec r = new Rec(partition, Long.parseLong(f[2]), unhex(f[3]), unhex(f[4]), hs);
            out.add(new Delivered(partition, Long.parseLong(f[1]), r));
        }
        return out;
    }
}
