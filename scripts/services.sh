#!/usr/bin/env bash
# Local services for raw-events-reprocessor: a real Apache Kafka broker (KRaft, from Maven Central) and the
# real ClickHouse engine (PyPI chdb-core) behind a small ClickHouse HTTP front end
# (tests/support/clickhouse_http.py). No Docker needed; docker/compose.yaml is the containerised alternative.
#
#   scripts/services.sh up     [kafka|clickhouse]   start (idempotent) and wait until they answer
#   scripts/services.sh down   [kafka|clickhouse]   stop what `up` started (by PID) and wait until gone
#   scripts/services.sh status [kafka|clickhouse]   print address and state; exit 1 if one is not running
#   scripts/services.sh env                         print how clients reach them: KEY=VALUE lines of addresses,
#                                                   the CA and client certificate files, the SASL user and the
#                                                   file holding its password
#
# Besides plaintext, Kafka has a SASL_SSL listener (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, OAUTHBEARER with
# unsecured JWTs) and an SSL listener that requires a client certificate (mTLS); ClickHouse also serves HTTPS.
# Their certificates come from a CA made here at first start (tls/ in the services folder); the SCRAM users
# are created when Kafka's log folder is formatted. `up` declares Kafka up only when a client that trusts
# that CA has logged in over SASL_SSL and over mTLS.
#
# Environment (all optional):
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_SASL_PORT (KAFKA_PORT+2: SASL_SSL),
#   KAFKA_SSL_PORT (KAFKA_PORT+3: SSL with client certificates), CLICKHOUSE_PORT (8123),
#   CLICKHOUSE_HTTPS_PORT (CLICKHOUSE_PORT+1)
#   RER_CACHE_DIR     downloaded Kafka jars and the chdb venv  (default ~/.cache/raw-events-reprocessor)
#   RER_SERVICES_DIR  instance folders: kafka-<port>/ (log folder, broker.log, pid, SASL password),
#                     clickhouse-<port>/ (data folder, server.log, pid) and tls/ (the local CA, the
#                     server and client certificates)   (default RER_CACHE_DIR)
#   SERVICES_TIMEOUT  seconds to wait for a service to answer (90)
#   KAFKA_EXTRA_PROPERTIES  "k=v,k=v" appended to the broker's server.properties (e.g. a short
#                     transactional.id.expiration.ms for a test on a broker of its own)
# A test that stops or restarts a service starts its own instance on other ports; the instance folders are per
# port, so restarting reuses the same Kafka log folder and the same ClickHouse data folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION=4.4.0
CHDB_VERSION=26.9.0
HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-$((KAFKA_PORT + 3))}"
CLICKHOUSE_PORT="${CLICKHOUSE_PORT:-8123}"
CLICKHOUSE_HTTPS_PORT="${CLICKHOUSE_HTTPS_PORT:-$((CLICKHOUSE_PORT + 1))}"
CACHE_DIR="${RER_CACHE_DIR:-$HOME/.cache/raw-events-reprocessor}"
SERVICES_DIR="${RER_SERVICES_DIR:-$CACHE_DIR}"
TIMEOUT="${SERVICES_TIMEOUT:-90}"

# The jar folder is named after the pom's content, so editing the pom resolves the jars again.
JARS_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION-jars-$(sha1sum "$ROOT/tests/support/kafka/pom.xml" | cut -c1-10)"
VENV_DIR="$CACHE_DIR/chdb-$CHDB_VERSION-venv"
KAFKA_DIR="$SERVICES_DIR/kafka-$KAFKA_PORT"
CLICKHOUSE_DIR="$SERVICES_DIR/clickhouse-$CLICKHOUSE_PORT"
TLS_DIR="$SERVICES_DIR/tls"
# The SCRAM/PLAIN user of the SASL_SSL listener; its password is made when the log folder is formatted.
KAFKA_SASL_USER=reprocessor

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# Runs "$@" holding an exclusive lock on file $1 (so parallel `up`s do not race). The lock's descriptor is
# LOCK_FD; the services started meanwhile close it ({LOCK_FD}>&-) so they never hold the lock.
LOCK_FD=
with_lock() {
    local lock="$1" outer="$LOCK_FD" rc=0
    shift
    mkdir -p "$(dirname "$lock")"
    exec {LOCK_FD}>"$lock"
    flock "$LOCK_FD"
    "$@" || rc=$?
    flock -u "$LOCK_FD"
    exec {LOCK_FD}>&-
    LOCK_FD="$outer"
    return $rc
}

# PID from $1/pid if that process is alive and is ours (its command line names the instance folder).
running_pid() {
    local dir="$1" pid
    [[ -f "$dir/pid" ]] || return 1
    pid="$(cat "$dir/pid")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir" || return 1
    echo "$pid"
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

show_log_tail() {
    local file="$1"
    if [[ -f "$file" ]]; then
        printf '[services] --- last lines of %s ---\n' "$file" >&2
        tail -n 40 "$file" >&2
        printf '[services] ---\n' >&2
    fi
}

stop_pid() {
    local name="$1" dir="$2" pid
    if ! pid="$(running_pid "$dir")"; then
        log "$name: not running"
        rm -f "$dir/pid"
        return 0
    fi
    log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= 600)); then # 60 s
            log "$name: still running after 60 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$dir/pid"
    log "$name: stopped"
}

# ---------------------------------------------------------------------------------------------------------
# TLS: a local CA, one server certificate (127.0.0.1 and localhost) for Kafka and ClickHouse, and a client
# certificate (CN=reprocessor) for Kafka's mTLS listener. Made once per services folder; PEM files, keys
# unencrypted (PKCS#8), readable by the owner only.

tls_make() {
    [[ -f "$TLS_DIR/.complete" ]] && return 0
    command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
    log "tls: making a local CA and certificates in $TLS_DIR"
    rm -rf "$TLS_DIR.tmp"
    mkdir -p "$TLS_DIR.tmp"
    (
        cd "$TLS_DIR.tmp"
        umask 077
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=raw-events-reprocessor local CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.pem
        sign() { # name subject extensions
            openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr"
            openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
                -extfile <(printf '%s\n' "$3") -out "$1.pem"
            rm -f "$1.csr"
        }
        sign server "/CN=localhost" \
            "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
        sign client "/CN=reprocessor" "extendedKeyUsage=clientAuth"
        # Kafka's PEM keystore: the private key followed by the certificate chain; the chain alone for HTTPS.
        cat server.pem ca.pem >server-chain.pem
        cat server.key server-chain.pem >server-keystore.pem
        chmod 644 ca.pem server.pem server-chain.pem client.pem
    ) >"$TLS_DIR.log" 2>&1 || {
        show_log_tail "$TLS_DIR.log"
        die "tls: openssl failed"
    }
    rm -rf "$TLS_DIR"
    mv "$TLS_DIR.tmp" "$TLS_DIR"
    touch "$TLS_DIR/.complete"
}

# ---------------------------------------------------------------------------------------------------------
# Kafka

kafka_resolve_jars() {
    if [[ -f "$JARS_DIR/.complete" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    command -v java >/dev/null || die "java not found (apt-get install openjdk-17-jre-headless)"
    log "kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central into $JARS_DIR"
    rm -rf "$JARS_DIR.tmp"
    mvn -q -B -Dstyle.color=never -f "$ROOT/tests/support/kafka/pom.xml" dependency:copy-dependencies \
        -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$JARS_DIR.tmp" >&2 ||
        die "kafka: maven could not resolve the broker jars"
    rm -rf "$JARS_DIR"
    mv "$JARS_DIR.tmp" "$JARS_DIR"
    touch "$JARS_DIR/.complete"
}

kafka_write_config() {
    mkdir -p "$KAFKA_DIR/data"
    (umask 077 && : >"$KAFKA_DIR/server.properties")
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/services.sh: single-node KRaft broker + controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT,SSL://$HOST:$KAFKA_SSL_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT,SSL://$HOST:$KAFKA_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
# TLS of the SASL_SSL and SSL listeners: certificates of the local CA (tls/); the SSL listener requires a
# client certificate from that CA (mTLS).
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
listener.name.ssl.ssl.client.auth=required
# SASL_SSL: SCRAM users live in the cluster metadata (added when the log folder is formatted); PLAIN checks
# the same user and password here; OAUTHBEARER accepts unsecured JWTs (Kafka's default validator).
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$(cat "$KAFKA_DIR/sasl-password")";
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
log.dirs=$KAFKA_DIR/data
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.cleaner.dedupe.buffer.size=16777216
EOF
    # KAFKA_EXTRA_PROPERTIES="k=v,k=v": extra broker settings (later lines win), e.g. a short transactional-id
    # expiration for a test that needs it.
    if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
        printf '# KAFKA_EXTRA_PROPERTIES\n' >>"$KAFKA_DIR/server.properties"
        tr ',' '\n' <<<"$KAFKA_EXTRA_PROPERTIES" | sed '/^[[:space:]]*$/d' >>"$KAFKA_DIR/server.properties"
    fi
}

# Metadata request (v1) over a plain socket: succeeds when the broker answers with itself and a controller.
kafka_probe() {
    python3 - "$HOST" "$KAFKA_PORT" <<'EOF'
import socket, struct, sys

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data

try:
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    client = b"services.sh"
    # Metadata v1: header (api_key 3, version 1, correlation id, client id), body: topics = null (all)
    msg = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", -1)
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    resp = recv_exact(sock, size)
    corr, brokers = struct.unpack_from(">ii", resp, 0)
    pos = 8
    for _ in range(brokers):
        pos += 4
        (host_len,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + host_len + 4
        (rack_len,) = struct.unpack_from(">h", resp, pos)
        pos += 2 + max(rack_len, 0)
    (controller,) = struct.unpack_from(">i", resp, pos)
    sys.exit(0 if corr == 7 and brokers >= 1 and controller >= 0 else 1)
except Exception:
    sys.exit(1)
EOF
}

# The SASL password of the instance: made once, kept with the log folder, readable by the owner only.
kafka_password() {
    if [[ ! -s "$KAFKA_DIR/sasl-password" ]]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$KAFKA_DIR/sasl-password")
    fi
}

# Kafka's Java client against the secure listeners (tests/support/kafka/SecureListeners.java): `probe` logs in
# over SASL_SSL (SCRAM-SHA-512) and over mTLS trusting only the local CA; `add-scram` adds the SCRAM users to
# a log folder formatted before the SASL_SSL listener existed.
kafka_secure() {
    SCRAM_PASSWORD="$(cat "$KAFKA_DIR/sasl-password")" java -cp "$JARS_DIR/*" \
        "$ROOT/tests/support/kafka/SecureListeners.java" "$@"
}

kafka_probe_secure() {
    [[ -s "$KAFKA_DIR/sasl-password" && -f "$TLS_DIR/.complete" ]] || return 1
    port_in_use "$KAFKA_SASL_PORT" && port_in_use "$KAFKA_SSL_PORT" || return 1
    kafka_secure probe "$HOST:$KAFKA_SASL_PORT" "$HOST:$KAFKA_SSL_PORT" "$TLS_DIR" "$KAFKA_SASL_USER" \
        >"$KAFKA_DIR/probe.log" 2>&1
}

kafka_add_scram_users() {
    [[ -f "$KAFKA_DIR/scram-users" ]] && return 0
    log "kafka: adding SCRAM user $KAFKA_SASL_USER to the existing log folder"
    kafka_secure add-scram "$HOST:$KAFKA_PORT" "$KAFKA_SASL_USER" >"$KAFKA_DIR/scram-users.log" 2>&1 || {
        show_log_tail "$KAFKA_DIR/scram-users.log"
        die "kafka: adding the SCRAM users failed"
    }
    touch "$KAFKA_DIR/scram-users"
}

kafka_up() {
    local pid
    if pid="$(running_pid "$KAFKA_DIR")"; then
        if kafka_probe; then
            log "kafka: already running (pid $pid) on $HOST:$KAFKA_PORT, nothing to do"
            if ! kafka_probe_secure; then
                log "kafka: WARNING: the running broker has no working SASL_SSL listener on $HOST:$KAFKA_SASL_PORT" \
                    "or mTLS listener on $HOST:$KAFKA_SSL_PORT (it was started by an older scripts/services.sh);" \
                    "the tests of secure connections fail until it is restarted:" \
                    "scripts/services.sh down kafka && scripts/services.sh up kafka"
            fi
            return 0
        fi
        log "kafka: running (pid $pid) but not answering yet"
    else
        port_in_use "$KAFKA_PORT" && die "kafka: port $KAFKA_PORT is in use by a process this script did not start"
        local port
        for port in "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT" "$KAFKA_SSL_PORT"; do
            port_in_use "$port" && die "kafka: port $port is in use by a process this script did not start"
        done
        with_lock "$CACHE_DIR/.install.lock" kafka_resolve_jars
        with_lock "$TLS_DIR.lock" tls_make
        mkdir -p "$KAFKA_DIR"
        kafka_password
        kafka_write_config
        if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
            local cluster_id password
            cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
            password="$(cat "$KAFKA_DIR/sasl-password")"
            log "kafka: formatting log folder $KAFKA_DIR/data (cluster $cluster_id, SCRAM user $KAFKA_SASL_USER)"
            java -cp "$JARS_DIR/*" kafka.tools.StorageTool format -t "$cluster_id" \
                -c "$KAFKA_DIR/server.properties" \
                --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$password]" \
                --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$password]" \
                >"$KAFKA_DIR/format.log" 2>&1 || {
                show_log_tail "$KAFKA_DIR/format.log"
                die "kafka: formatting the log folder failed"
            }
            touch "$KAFKA_DIR/scram-users"
        fi
        log "kafka: starting on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT), log $KAFKA_DIR/broker.log"
        echo "=== $(date -u +%FT%TZ) start" >>"$KAFKA_DIR/broker.log"
        setsid java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
            -XX:ErrorFile="$KAFKA_DIR/hs_err_pid%p.log" \
            -Dorg.slf4j.simpleLogger.showDateTime=true \
            -Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd'T'HH:mm:ss.SSS" \
            -cp "$JARS_DIR/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
            </dev/null >>"$KAFKA_DIR/broker.log" 2>&1 {LOCK_FD}>&- &
        pid=$!
        echo "$pid" >"$KAFKA_DIR/pid"
    fi
    local deadline=$((SECONDS + TIMEOUT))
    until kafka_probe; do
        if ! kill -0 "$pid" 2>/dev/null; then
            local status=unknown
            # Our own child when this run started it: its exit status tells a crash (134), a kill (137), ...
            wait "$pid" 2>/dev/null && status=0 || status=$?
            show_log_tail "$KAFKA_DIR/broker.log"
            local crash
            for crash in "$KAFKA_DIR"/hs_err_pid*.log "$ROOT"/hs_err_pid*.log; do
                [[ -f "$crash" ]] && show_log_tail "$crash"
            done
            rm -f "$KAFKA_DIR/pid"
            die "kafka: the broker exited during start-up (exit status $status)"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$KAFKA_DIR/broker.log"
            die "kafka: no answer on $HOST:$KAFKA_PORT after ${TIMEOUT}s"
        fi
        sleep 0.3
    done
    kafka_add_scram_users
    if ! kafka_probe_secure; then
        grep -v ' INFO \|^\s' "$KAFKA_DIR/probe.log" | tail -n 5 >&2 || true
        show_log_tail "$KAFKA_DIR/broker.log"
        die "kafka: a client trusting only $TLS_DIR/ca.pem cannot log in over SASL_SSL ($HOST:$KAFKA_SASL_PORT) or mTLS ($HOST:$KAFKA_SSL_PORT)"
    fi
    log "kafka: ready on $HOST:$KAFKA_PORT (pid $pid); SASL_SSL on $HOST:$KAFKA_SASL_PORT, mTLS on $HOST:$KAFKA_SSL_PORT"
}

# ---------------------------------------------------------------------------------------------------------
# ClickHouse

clickhouse_install() {
    if [[ -f "$VENV_DIR/.complete" ]]; then
        return 0
    fi
    log "clickhouse: installing chdb-core==$CHDB_VERSION and lz4 into $VENV_DIR"
    rm -rf "$VENV_DIR"
    python3 -m venv "$VENV_DIR" >&2 || die "clickhouse: python3 -m venv failed (apt-get install python3-venv)"
    # --no-deps: chdb's numpy/pandas/pyarrow are only for DataFrame/Arrow results, which the front end never uses.
    "$VENV_DIR/bin/pip" install -q --disable-pip-version-check --no-deps "chdb-core==$CHDB_VERSION" lz4 >&2 ||
        die "clickhouse: pip install chdb-core==$CHDB_VERSION lz4 failed"
    touch "$VENV_DIR/.complete"
}

clickhouse_ping() {
    [[ "$(curl -s --max-time 2 "http://$HOST:$CLICKHOUSE_PORT/ping" 2>/dev/null)" == "Ok." ]]
}

# HTTPS with a client that trusts only the local CA.
clickhouse_ping_https() {
    [[ -f "$TLS_DIR/ca.pem" ]] &&
        [[ "$(curl -s --max-time 5 --cacert "$TLS_DIR/ca.pem" "https://$HOST:$CLICKHOUSE_HTTPS_PORT/ping" 2>/dev/null)" == "Ok." ]]
}

clickhouse_apply_schema() {
    local file out
    for file in "$ROOT"/schemas/clickhouse/*.sql; do
        if ! out="$(curl -sS --max-time 60 --fail-with-body --data-binary @"$file" "http://$HOST:$CLICKHOUSE_PORT/" 2>&1)"; then
            die "clickhouse: $file failed: $out"
        fi
    done
    log "clickhouse: schema applied ($(ls "$ROOT"/schemas/clickhouse/*.sql | wc -l) files from schemas/clickhouse)"
}

clickhouse_up() {
    local pid
    if pid="$(running_pid "$CLICKHOUSE_DIR")" && clickhouse_ping; then
        log "clickhouse: already running (pid $pid) on $HOST:$CLICKHOUSE_PORT, nothing to do"
        if ! clickhouse_ping_https; then
            log "clickhouse: WARNING: the running front end does not serve HTTPS on $HOST:$CLICKHOUSE_HTTPS_PORT" \
                "(it was started by an older scripts/services.sh); the tests of HTTPS fail until it is restarted:" \
                "scripts/services.sh down clickhouse && scripts/services.sh up clickhouse"
        fi
        clickhouse_apply_schema
        return 0
    fi
    if [[ -z "${pid:-}" ]]; then
        local port
        for port in "$CLICKHOUSE_PORT" "$CLICKHOUSE_HTTPS_PORT"; do
            port_in_use "$port" && die "clickhouse: port $port is in use by a process this script did not start"
        done
        with_lock "$CACHE_DIR/.install.lock" clickhouse_install
        with_lock "$TLS_DIR.lock" tls_make
        mkdir -p "$CLICKHOUSE_DIR/data"
        log "clickhouse: starting on $HOST:$CLICKHOUSE_PORT (HTTPS $HOST:$CLICKHOUSE_HTTPS_PORT), data $CLICKHOUSE_DIR/data, log $CLICKHOUSE_DIR/server.log"
        echo "=== $(date -u +%FT%TZ) start" >>"$CLICKHOUSE_DIR/server.log"
        setsid "$VENV_DIR/bin/python" "$ROOT/tests/support/clickhouse_http.py" --host "$HOST" \
            --port "$CLICKHOUSE_PORT" --data "$CLICKHOUSE_DIR/data" --log "$CLICKHOUSE_DIR/server.log" \
            --https-port "$CLICKHOUSE_HTTPS_PORT" --cert "$TLS_DIR/server-chain.pem" --key "$TLS_DIR/server.key" \
            </dev/null >>"$CLICKHOUSE_DIR/server.log" 2>&1 {LOCK_FD}>&- &
        pid=$!
        echo "$pid" >"$CLICKHOUSE_DIR/pid"
    fi
    local deadline=$((SECONDS + TIMEOUT))
    until clickhouse_ping; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail "$CLICKHOUSE_DIR/server.log"
            rm -f "$CLICKHOUSE_DIR/pid"
            die "clickhouse: the front end exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$CLICKHOUSE_DIR/server.log"
            die "clickhouse: no answer on $HOST:$CLICKHOUSE_PORT after ${TIMEOUT}s"
        fi
        sleep 0.2
    done
    clickhouse_ping_https || {
        show_log_tail "$CLICKHOUSE_DIR/server.log"
        die "clickhouse: a client trusting only $TLS_DIR/ca.pem cannot reach https://$HOST:$CLICKHOUSE_HTTPS_PORT"
    }
    log "clickhouse: ready on $HOST:$CLICKHOUSE_PORT (pid $pid); HTTPS on $HOST:$CLICKHOUSE_HTTPS_PORT"
    clickhouse_apply_schema
}

# ---------------------------------------------------------------------------------------------------------

status_line() {
    local name="$1" address="$2" dir="$3" pid
    if pid="$(running_pid "$dir")"; then
        printf '%-11s %-16s running (pid %s)  %s\n' "$name" "$address" "$pid" "$dir"
    else
        printf '%-11s %-16s not running       %s\n' "$name" "$address" "$dir"
        return 1
    fi
}

usage() {
    sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# How clients reach this instance (the tests read these; the password stays in its file).
print_env() {
    cat <<EOF
KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT
KAFKA_SASL_SSL_BOOTSTRAP=$HOST:$KAFKA_SASL_PORT
KAFKA_MTLS_BOOTSTRAP=$HOST:$KAFKA_SSL_PORT
KAFKA_SASL_USER=$KAFKA_SASL_USER
KAFKA_SASL_PASSWORD_FILE=$KAFKA_DIR/sasl-password
CLICKHOUSE_URL=http://$HOST:$CLICKHOUSE_PORT
CLICKHOUSE_HTTPS_URL=https://$HOST:$CLICKHOUSE_HTTPS_PORT
TLS_CA_FILE=$TLS_DIR/ca.pem
TLS_CLIENT_CERT_FILE=$TLS_DIR/client.pem
TLS_CLIENT_KEY_FILE=$TLS_DIR/client.key
EOF
}

main() {
    local command="${1:-}" which="${2:-all}"
    case "$which" in all | kafka | clickhouse) ;; *) usage ;; esac
    case "$command" in
    up)
        mkdir -p "$CACHE_DIR" "$SERVICES_DIR"
        if [[ "$which" != clickhouse ]]; then with_lock "$KAFKA_DIR.lock" kafka_up; fi
        if [[ "$which" != kafka ]]; then with_lock "$CLICKHOUSE_DIR.lock" clickhouse_up; fi
        ;;
    down)
        if [[ "$which" != clickhouse ]]; then stop_pid kafka "$KAFKA_DIR"; fi
        if [[ "$which" != kafka ]]; then stop_pid clickhouse "$CLICKHOUSE_DIR"; fi
        ;;
    status)
        local rc=0
        if [[ "$which" != clickhouse ]]; then status_line kafka "$HOST:$KAFKA_PORT" "$KAFKA_DIR" || rc=1; fi
        if [[ "$which" != kafka ]]; then status_line clickhouse "$HOST:$CLICKHOUSE_PORT" "$CLICKHOUSE_DIR" || rc=1; fi
        return $rc
        ;;
    env) print_env ;;
    *) usage ;;
    esac
}

main "$@"
