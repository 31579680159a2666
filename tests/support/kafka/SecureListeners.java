// The secure listeners of the local broker (scripts/services.sh), with Kafka's own Java client:
//
//   java -cp 'JARS/*' SecureListeners.java add-scram BOOTSTRAP USER
//       adds SCRAM-SHA-512 and SCRAM-SHA-256 credentials for USER over the plaintext listener BOOTSTRAP, for a
//       log folder formatted before the SASL_SSL listener existed (new folders get the users from the storage
//       tool's --add-scram);
//   java -cp 'JARS/*' SecureListeners.java probe SASL_SSL_BOOTSTRAP SSL_BOOTSTRAP TLS_DIR USER
//       logs in over SASL_SSL (SCRAM-SHA-512) and over SSL with the client certificate (mTLS), trusting only
//       TLS_DIR/ca.pem, and reads the cluster's nodes; exit code 1 with the reason when either fails.
//
// The password comes from the environment (SCRAM_PASSWORD), never from the command line.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

public class SecureListeners {
    public static void main(String[] args) throws Exception {
        String password = System.getenv("SCRAM_PASSWORD");
        if (args[0].equals("add-scram")) {
            try (Admin admin = Admin.create(Map.<String, Object>of("bootstrap.servers", args[1]))) {
                // One request per mechanism: the broker refuses two changes of one user in the same request.
                for (ScramMechanism mechanism : List.of(ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256)) {
                    admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(
                            args[2], new ScramCredentialInfo(mechanism, 8192), password))).all().get();
                }
            }
            System.out.println("SCRAM credentials of " + args[2] + " added");
            return;
        }
        String tls = args[3];
        Map<String, Object> sasl = client(args[1], "SASL_SSL", tls);
        sasl.put("sasl.mechanism", "SCRAM-SHA-512");
        sasl.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + args[4] + "\" password=\"" + password + "\";");
        Map<String, Object> mtls = client(args[2], "SSL", tls);
        mtls.put("ssl.keystore.type", "PEM");
        mtls.put("ssl.keystore.certificate.chain", Files.readString(Path.of(tls, "client.pem")));
        mtls.put("ssl.keystore.key", Files.readString(Path.of(tls, "client.key")));
        for (Map<String, Object> props : List.of(sasl, mtls)) {
            try (Admin admin = Admin.create(props)) {
                int nodes = admin.describeCluster().nodes().get(20, TimeUnit.SECONDS).size();
                System.out.println(props.get("security.protocol") + " " + props.get("bootstrap.servers") + ": " + nodes + " node(s)");
            } catch (Exception e) {
                Throwable cause = e.getCause() != null ? e.getCause() : e;
                System.out.println(props.get("security.protocol") + " " + props.get("bootstrap.servers") + ": " + cause);
                System.exit(1);
            }
        }
    }

    /** A client of `bootstrap` over `protocol` that trusts only TLS_DIR/ca.pem. */
    static Map<String, Object> client(String bootstrap, String protocol, String tls) {
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", bootstrap);
        props.put("security.protocol", protocol);
        props.put("ssl.truststore.type", "PEM");
        props.put("ssl.truststore.location", tls + "/ca.pem");
        props.put("request.timeout.ms", 10000);
        props.put("default.api.timeout.ms", 20000);
        return props;
    }
}
