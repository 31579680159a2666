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
        Map<String, Object> sasl = new HashMap<>();
        sasl.put("bootstrap.servers", args[1]);
        sasl.put("security.protocol", "SASL_SSL");
        sasl.put("ssl.truststore.type", "PEM");
        sasl.put("ssl.truststore.location", tls + "/ca.pem");
        sasl.put("sasl.mechanism", "SCRAM-SHA-512");
        sasl.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + args[4] + "\" password=\"" + password + "\";");
        Map<String, Object> mtls = new HashMap<>();
        mtls.put("bootstrap.servers", args[2]);
        mtls.put("security.protocol", "SSL");
        mtls.put("ssl.truststore.type", "PEM");
        mtls.put("ssl.truststore.location", tls + "/ca.pem");
        mtls.put("ssl.keystore.type", "PEM");
        mtls.put("ssl.keystore.certificate.chain", java.nio.file.Files.readString(java.nio.file.Path.of(tls, "client.pem")));
        mtls.put("ssl.keystore.key", java.nio.file.Files.readString(java.nio.file.Path.of(tls, "client.key")));
        for (Map<String, Object> props : List.of(sasl, mtls)) {
            props.put("request.timeout.ms", 10000);
            props.put("default.api.timeout.ms", 20000);
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
}
