import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.common.config.ConfigResource;

/**
 * Topic and broker configs through the Kafka Java AdminClient (4.3), for the pytest suite in
 * tests/e2e/test_admin_cli.py, which checks them against `shale admin configs`.
 *
 * <pre>
 *   describe BOOTSTRAP topic|broker NAME
 *       describeConfigs; prints one config a line: NAME TAB VALUE TAB SOURCE
 *       (VALUE is &lt;null&gt; for a null value, SOURCE is Kafka's ConfigSource name)
 *   alter BOOTSTRAP topic|broker NAME [--set KEY=VALUE | --delete KEY]...
 *       incrementalAlterConfigs with SET / DELETE operations; prints OK
 *   quorum BOOTSTRAP
 *       describeMetadataQuorum (for tests/e2e/test_cluster.py); prints "leader ID", "epoch N",
 *       "high-watermark N", then "voter ID LOG_END_OFFSET" and "observer ID LOG_END_OFFSET" lines
 * </pre>
 *
 * Exit codes: 0 done; 1 the broker rejected the request, with "REJECTED: ExceptionClass: message"
 * on stderr; 2 bad arguments or an unexpected failure.
 */
public final class ShaleConfigCheck {
    public static void main(String[] args) {
        int code;
        try {
            code = run(args);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            System.err.println("REJECTED: " + cause.getClass().getSimpleName() + ": " + cause.getMessage());
            code = 1;
        } catch (IllegalArgumentException e) {
            System.err.println("USAGE: " + e.getMessage());
            code = 2;
        } catch (Throwable e) {
            System.err.println("FAILED: unexpected exception");
            e.printStackTrace();
            code = 2;
        }
        System.out.flush();
        System.exit(code);
    }

    static int run(String[] args) throws Exception {
        if (args.length == 2 && args[0].equals("quorum")) {
            try (Admin admin = admin(args[1])) {
                quorum(admin);
            }
            return 0;
        }
        if (args.length < 4) {
            throw new IllegalArgumentException("describe|alter BOOTSTRAP topic|broker NAME [...]");
        }
        ConfigResource resource = new ConfigResource(resourceType(args[2]), args[3]);
        try (Admin admin = admin(args[1])) {
            switch (args[0]) {
                case "describe" -> describe(admin, resource);
                case "alter" -> alter(admin, resource, List.of(args).subList(4, args.length));
                default -> throw new IllegalArgumentException("unknown subcommand " + args[0]);
            }
        }
        return 0;
    }

    static ConfigResource.Type resourceType(String s) {
        return switch (s) {
            case "topic" -> ConfigResource.Type.TOPIC;
            case "broker" -> ConfigResource.Type.BROKER;
            default -> throw new IllegalArgumentException("resource type must be topic or broker, not " + s);
        };
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "shale-config-check");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        return Admin.create(p);
    }

    static void describe(Admin admin, ConfigResource resource) throws Exception {
        Map<ConfigResource, Config> result =
                admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS);
        Map<String, ConfigEntry> sorted = new TreeMap<>();
        for (ConfigEntry e : result.get(resource).entries()) {
            sorted.put(e.name(), e);
        }
        for (ConfigEntry e : sorted.values()) {
            String value = e.value() == null ? "<null>" : e.value();
            System.out.println(e.name() + "\t" + value + "\t" + e.source().name());
        }
    }

    static void alter(Admin admin, ConfigResource resource, List<String> ops) throws Exception {
        Collection<AlterConfigOp> changes = new ArrayList<>();
        for (int i = 0; i < ops.size(); i += 2) {
            if (i + 1 >= ops.size()) {
                throw new IllegalArgumentException(ops.get(i) + " needs an argument");
            }
            String arg = ops.get(i + 1);
            switch (ops.get(i)) {
                case "--set" -> {
                    int eq = arg.indexOf('=');
                    if (eq <= 0) {
                        throw new IllegalArgumentException("--set needs KEY=VALUE, not " + arg);
                    }
                    changes.add(new AlterConfigOp(
                            new ConfigEntry(arg.substring(0, eq), arg.substring(eq + 1)),
                            AlterConfigOp.OpType.SET));
                }
                case "--delete" -> changes.add(new AlterConfigOp(new ConfigEntry(arg, null), AlterConfigOp.OpType.DELETE));
                default -> throw new IllegalArgumentException("unknown option " + ops.get(i));
            }
        }
        admin.incrementalAlterConfigs(Map.of(resource, changes)).all().get(30, TimeUnit.SECONDS);
        System.out.println("OK");
    }

    static void quorum(Admin admin) throws Exception {
        QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get(30, TimeUnit.SECONDS);
        System.out.println("leader " + q.leaderId());
        System.out.println("epoch " + q.leaderEpoch());
        System.out.println("high-watermark " + q.highWatermark());
        for (QuorumInfo.ReplicaState r : q.voters()) {
            System.out.println("voter " + r.replicaId() + " " + r.logEndOffset());
        }
        for (QuorumInfo.ReplicaState r : q.observers()) {
            System.out.println("observer " + r.replicaId() + " " + r.logEndOffset());
        }
    }
}
