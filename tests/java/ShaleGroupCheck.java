import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentSkipListSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListConsumerGroupOffsetsSpec;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Consumer-group checks of a Kafka-compatible broker with the Kafka Java client (4.3, classic
 * group protocol), driven by tests/e2e/test_groups.py. Every subcommand exits 0 after printing
 * "OK" when all checks pass, and 1 with "CHECK FAILED: ..." on stderr otherwise.
 *
 * <pre>
 *   share BOOTSTRAP TOPIC GROUP MEMBERS ASSIGNOR
 *         MEMBERS consumers of GROUP (one thread each, partition.assignment.strategy ASSIGNOR:
 *         range, roundrobin, sticky or cooperative-sticky) read the already-filled TOPIC until
 *         every record up to its end offsets is read; checks no offset was read twice, none was
 *         missed, the final assignments are disjoint, cover the topic and are balanced, and the
 *         committed offsets (through Admin) equal the end offsets
 *   static-fencing BOOTSTRAP TOPIC GROUP
 *         two static members (group.instance.id) share TOPIC; a new consumer with the second
 *         one's instance id takes over its assignment without a rebalance (same generation, the
 *         first member's assignment untouched), and the old consumer is fenced
 *         (FencedInstanceIdException)
 *   admin BOOTSTRAP TOPIC GROUP_PREFIX
 *         Admin APIs: offsets altered for two simple groups, read back in one multi-group
 *         request, groups listed by state and described, OffsetDelete, DeleteGroups; a live
 *         group cannot be deleted (GroupNotEmptyException) nor have a subscribed topic's offsets
 *         deleted (GroupSubscribedToTopicException)
 * </pre>
 */
public final class ShaleGroupCheck {
    static final PrintStream OUT = System.out;

    static final class CheckFailed extends Exception {
        CheckFailed(String msg) {
            super(msg);
        }
    }

    public static void main(String[] args) {
        try {
            if (args.length < 4) {
                throw new IllegalArgumentException("usage: see the class comment");
            }
            switch (args[0]) {
                case "share" -> share(args[1], args[2], args[3], Integer.parseInt(args[4]), args[5]);
                case "static-fencing" -> staticFencing(args[1], args[2], args[3]);
                case "admin" -> admin(args[1], args[2], args[3]);
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

    static void check(boolean ok, String message) throws CheckFailed {
        if (!ok) {
            throw new CheckFailed(message);
        }
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "shale-group-check-admin");
        return Admin.create(p);
    }

    static String assignorClass(String name) {
        return switch (name) {
            case "range" -> "org.apache.kafka.clients.consumer.RangeAssignor";
            case "roundrobin" -> "org.apache.kafka.clients.consumer.RoundRobinAssignor";
            case "sticky" -> "org.apache.kafka.clients.consumer.StickyAssignor";
            case "cooperative-sticky" -> "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
            default -> throw new IllegalArgumentException("unknown assignor " + name);
        };
    }

    static KafkaConsumer<byte[], byte[]> groupConsumer(String bootstrap, String group, String assignor,
                                                       String instanceId) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "shale-group-check-" + UUID.randomUUID().toString().substring(0, 8));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignorClass(assignor));
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
        p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, 30_000);
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50);
        if (instanceId != null) {
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        }
        return new KafkaConsumer<>(p);
    }

    static Map<TopicPartition, Long> endOffsets(String bootstrap, String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : c.partitionsFor(topic, Duration.ofSeconds(30))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            Map<TopicPartition, Long> out = new TreeMap<>((a, b) -> Integer.compare(a.partition(), b.partition()));
            out.putAll(c.endOffsets(tps, Duration.ofSeconds(30)));
            return out;
        }
    }

    // --- share -------------------------------------------------------------------------------

    static void share(String bootstrap, String topic, String group, int members, String assignor) throws Exception {
        Map<TopicPartition, Long> ends = endOffsets(bootstrap, topic);
        long expected = ends.values().stream().mapToLong(Long::longValue).sum();
        check(expected > 0, "topic " + topic + " is empty");
        Map<TopicPartition, ConcurrentSkipListSet<Long>> seen = new ConcurrentHashMap<>();
        for (TopicPartition tp : ends.keySet()) {
            seen.put(tp, new ConcurrentSkipListSet<>());
        }
        AtomicLong distinct = new AtomicLong();
        List<String> duplicates = java.util.Collections.synchronizedList(new ArrayList<>());
        AtomicBoolean done = new AtomicBoolean();
        List<Set<TopicPartition>> finalAssignments = java.util.Collections.synchronizedList(new ArrayList<>());
        List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        long started = System.currentTimeMillis();
        List<Thread> threads = new ArrayList<>();
        for (int m = 0; m < members; m++) {
            final int member = m;
            Thread t = new Thread(() -> {
                try (KafkaConsumer<byte[], byte[]> c = groupConsumer(bootstrap, group, assignor, null)) {
                    AtomicInteger rebalances = new AtomicInteger();
                    c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                        @Override
                        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                            OUT.printf("member %d revoked %s%n", member, partitions);
                        }

                        @Override
                        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                            rebalances.incrementAndGet();
                            OUT.printf("member %d assigned %s after %d ms (generation %d)%n", member, partitions,
                                    System.currentTimeMillis() - started, c.groupMetadata().generationId());
                        }
                    });
                    long deadline = System.currentTimeMillis() + 120_000;
                    while (!done.get() && System.currentTimeMillis() < deadline) {
                        for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(200))) {
                            TopicPartition tp = new TopicPartition(r.topic(), r.partition());
                            if (!seen.get(tp).add(r.offset())) {
                                duplicates.add(tp + "@" + r.offset() + " (member " + member + ")");
                            } else if (distinct.incrementAndGet() == expected) {
                                done.set(true);
                            }
                        }
                    }
                    c.commitSync(Duration.ofSeconds(30));
                    Set<TopicPartition> assigned = new TreeSet<>((a, b) -> Integer.compare(a.partition(), b.partition()));
                    assigned.addAll(c.assignment());
                    finalAssignments.add(assigned);
                    OUT.printf("member %d final assignment %s, generation %d, %d rebalance callbacks%n", member,
                            c.assignment(), c.groupMetadata().generationId(), rebalances.get());
                } catch (Throwable e) {
                    failures.add(e);
                }
            }, "member-" + m);
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join(180_000);
        }
        if (!failures.isEmpty()) {
            failures.get(0).printStackTrace();
            throw new CheckFailed("a member failed: " + failures.get(0));
        }
        check(duplicates.isEmpty(), duplicates.size() + " records read twice, first " + duplicates.subList(0,
                Math.min(10, duplicates.size())));
        for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
            Set<Long> got = seen.get(e.getKey());
            check(got.size() == e.getValue(), e.getKey() + ": read " + got.size() + " of " + e.getValue() + " records");
        }
        // The final assignments are disjoint, cover the topic and are balanced.
        Set<TopicPartition> union = new HashSet<>();
        int total = 0;
        for (Set<TopicPartition> a : finalAssignments) {
            union.addAll(a);
            total += a.size();
            check(a.size() == ends.size() / members, "unbalanced assignment " + finalAssignments);
        }
        check(total == union.size() && union.equals(ends.keySet()), "assignments overlap or miss partitions: "
                + finalAssignments);
        try (Admin admin = admin(bootstrap)) {
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
                OffsetAndMetadata o = committed.get(e.getKey());
                check(o != null && o.offset() == e.getValue(), e.getKey() + ": committed " + o + ", expected "
                        + e.getValue());
            }
        }
        OUT.printf("%d members read %d records exactly once in %d ms%n", members, expected,
                System.currentTimeMillis() - started);
    }

    // --- static-fencing ----------------------------------------------------------------------

    /** Polls every consumer once, briefly. */
    static void pollAll(List<KafkaConsumer<byte[], byte[]>> consumers) {
        for (KafkaConsumer<byte[], byte[]> c : consumers) {
            c.poll(Duration.ofMillis(100));
        }
    }

    static void staticFencing(String bootstrap, String topic, String group) throws Exception {
        int partitions = endOffsets(bootstrap, topic).size();
        AtomicInteger aCallbacks = new AtomicInteger();
        KafkaConsumer<byte[], byte[]> a = groupConsumer(bootstrap, group, "range", "static-a");
        KafkaConsumer<byte[], byte[]> b = groupConsumer(bootstrap, group, "range", "static-b");
        KafkaConsumer<byte[], byte[]> b2 = null;
        try {
            a.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> p) {
                    if (!p.isEmpty()) {
                        aCallbacks.incrementAndGet();
                    }
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> p) {
                    aCallbacks.incrementAndGet();
                }
            });
            b.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (a.assignment().size() + b.assignment().size() != partitions || a.assignment().isEmpty()
                    || b.assignment().isEmpty()) {
                check(System.currentTimeMillis() < deadline, "static members not assigned: " + a.assignment()
                        + " " + b.assignment());
                pollAll(List.of(a, b));
            }
            int generation = a.groupMetadata().generationId();
            Set<TopicPartition> aAssigned = new HashSet<>(a.assignment());
            Set<TopicPartition> bAssigned = new HashSet<>(b.assignment());
            int callbacksBefore = aCallbacks.get();
            OUT.printf("generation %d: a=%s b=%s%n", generation, aAssigned, bAssigned);

            // b's process is replaced by a new one with the same instance id; the old one is
            // still running (not polled), as after a network partition.
            b2 = groupConsumer(bootstrap, group, "range", "static-b");
            b2.subscribe(List.of(topic));
            deadline = System.currentTimeMillis() + 60_000;
            while (b2.assignment().isEmpty()) {
                check(System.currentTimeMillis() < deadline, "the replacement static member got no assignment");
                pollAll(List.of(a, b2));
            }
            for (int i = 0; i < 20; i++) {
                pollAll(List.of(a, b2));
            }
            OUT.printf("replacement: generation %d, assignment %s%n", b2.groupMetadata().generationId(),
                    b2.assignment());
            check(b2.assignment().equals(bAssigned), "replacement got " + b2.assignment() + ", expected " + bAssigned);
            check(b2.groupMetadata().generationId() == generation, "the replacement is in generation "
                    + b2.groupMetadata().generationId() + ", expected " + generation + " (no rebalance)");
            check(a.groupMetadata().generationId() == generation && a.assignment().equals(aAssigned)
                    && aCallbacks.get() == callbacksBefore, "the other static member was rebalanced");

            // The old b is fenced: its next heartbeat or commit fails.
            deadline = System.currentTimeMillis() + 30_000;
            boolean fenced = false;
            while (!fenced && System.currentTimeMillis() < deadline) {
                try {
                    b.poll(Duration.ofMillis(200));
                    b.commitSync(Map.of(bAssigned.iterator().next(), new OffsetAndMetadata(0)), Duration.ofSeconds(10));
                } catch (FencedInstanceIdException e) {
                    fenced = true;
                    OUT.println("old member fenced: " + e.getMessage());
                }
            }
            check(fenced, "the replaced static member was not fenced");
        } finally {
            a.close();
            if (b2 != null) {
                b2.close();
            }
            try {
                b.close();
            } catch (Exception e) {
                // A fenced consumer may throw on close.
            }
        }
    }

    // --- admin -------------------------------------------------------------------------------

    static void admin(String bootstrap, String topic, String prefix) throws Exception {
        String g1 = prefix + "-one", g2 = prefix + "-two", live = prefix + "-live";
        TopicPartition tp0 = new TopicPartition(topic, 0), tp1 = new TopicPartition(topic, 1);
        try (Admin admin = admin(bootstrap)) {
            admin.alterConsumerGroupOffsets(g1, Map.of(tp0, new OffsetAndMetadata(5, "meta-5"), tp1,
                    new OffsetAndMetadata(7))).all().get(30, TimeUnit.SECONDS);
            admin.alterConsumerGroupOffsets(g2, Map.of(tp0, new OffsetAndMetadata(11))).all().get(30, TimeUnit.SECONDS);

            // Both groups in one OffsetFetch (v8+ batches groups on one coordinator).
            Map<String, ListConsumerGroupOffsetsSpec> specs = new HashMap<>();
            specs.put(g1, new ListConsumerGroupOffsetsSpec());
            specs.put(g2, new ListConsumerGroupOffsetsSpec().topicPartitions(List.of(tp0, tp1)));
            Map<String, Map<TopicPartition, OffsetAndMetadata>> all = admin.listConsumerGroupOffsets(specs).all()
                    .get(30, TimeUnit.SECONDS);
            OUT.println("offsets: " + all);
            check(all.get(g1).get(tp0).offset() == 5 && "meta-5".equals(all.get(g1).get(tp0).metadata()),
                    "g1 " + tp0 + ": " + all.get(g1).get(tp0));
            check(all.get(g1).get(tp1).offset() == 7, "g1 " + tp1 + ": " + all.get(g1).get(tp1));
            check(all.get(g2).get(tp0).offset() == 11, "g2 " + tp0 + ": " + all.get(g2).get(tp0));
            check(all.get(g2).get(tp1) == null, "g2 " + tp1 + " should have no offset: " + all.get(g2).get(tp1));

            Collection<GroupListing> empty = admin.listGroups(
                    ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.EMPTY))).all()
                    .get(30, TimeUnit.SECONDS);
            Set<String> emptyIds = new HashSet<>();
            empty.forEach(l -> emptyIds.add(l.groupId()));
            check(emptyIds.containsAll(List.of(g1, g2)), "listConsumerGroups(EMPTY) = " + empty);
            Collection<GroupListing> stable = admin.listGroups(
                    ListGroupsOptions.forConsumerGroups().inGroupStates(Set.of(GroupState.STABLE))).all()
                    .get(30, TimeUnit.SECONDS);
            check(stable.stream().noneMatch(l -> l.groupId().equals(g1)), "g1 listed as stable: " + stable);

            admin.deleteConsumerGroupOffsets(g1, Set.of(tp0)).all().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> left = admin.listConsumerGroupOffsets(g1)
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            check(!left.containsKey(tp0) && left.containsKey(tp1), "after OffsetDelete: " + left);

            // A live group: describe it, and see that it cannot be deleted.
            try (KafkaConsumer<byte[], byte[]> c = groupConsumer(bootstrap, live, "range", null)) {
                c.subscribe(List.of(topic));
                long deadline = System.currentTimeMillis() + 60_000;
                while (c.assignment().isEmpty()) {
                    check(System.currentTimeMillis() < deadline, "live group member got no assignment");
                    c.poll(Duration.ofMillis(200));
                }
                c.commitSync(Map.of(tp0, new OffsetAndMetadata(1)));
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(live)).all()
                        .get(30, TimeUnit.SECONDS).get(live);
                OUT.println("described: " + d);
                check(d.groupState() == GroupState.STABLE, "state " + d.groupState());
                check("range".equals(d.partitionAssignor()), "assignor " + d.partitionAssignor());
                check(d.members().size() == 1, "members " + d.members());
                MemberDescription m = d.members().iterator().next();
                check(m.assignment().topicPartitions().equals(c.assignment()), "described assignment "
                        + m.assignment().topicPartitions() + " != " + c.assignment());
                check(m.host().startsWith("/"), "host " + m.host());
                try {
                    admin.deleteConsumerGroups(List.of(live)).all().get(30, TimeUnit.SECONDS);
                    throw new CheckFailed("deleted a group with a member");
                } catch (ExecutionException e) {
                    check(e.getCause() instanceof GroupNotEmptyException, "delete live group: " + e.getCause());
                }
                try {
                    admin.deleteConsumerGroupOffsets(live, Set.of(tp0)).all().get(30, TimeUnit.SECONDS);
                    throw new CheckFailed("deleted the offsets of a subscribed topic");
                } catch (ExecutionException e) {
                    check(e.getCause() instanceof GroupSubscribedToTopicException, "delete subscribed offsets: "
                            + e.getCause());
                }
            }
            admin.deleteConsumerGroups(List.of(g1, g2, live)).all().get(30, TimeUnit.SECONDS);
            Map<String, Map<TopicPartition, OffsetAndMetadata>> after = admin.listConsumerGroupOffsets(specs).all()
                    .get(30, TimeUnit.SECONDS);
            check(after.get(g1).isEmpty(), "g1 offsets after delete: " + after.get(g1));
            Collection<GroupListing> listed = admin.listGroups(ListGroupsOptions.forConsumerGroups()).all()
                    .get(30, TimeUnit.SECONDS);
            check(listed.stream().noneMatch(l -> l.groupId().startsWith(prefix)), "deleted groups listed: " + listed);
        }
    }
}
