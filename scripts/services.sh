#!/usr/bin/env bash
# Local services for raw-events-reprocessor: a real Apache Kafka broker (KRaft, from Maven Central) and the
# real ClickHouse engine (PyPI chdb-core) behind a small ClickHouse HTTP front end
# (tests/support/clickhouse_http.py). No Docker needed; docker/compose.yaml is the containerised alternative.
#
#   scripts/services.sh up     [kafka|clickhouse]   start (idempotent) and wait until they answer
#   scripts/services.sh down   [kafka|clickhouse]   stop what `up` started (by PID) and wait until gone
#   scripts/services.sh status [kafka|clickhouse]   print address and state; exit 1 if one is not running
#
# Environment (all optional):
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), CLICKHOUSE_PORT (8123)
#   RER_CACHE_DIR     downloaded Kafka jars and the chdb venv  (default ~/.cache/raw-events-reprocessor)
#   RER_SERVICES_DIR  instance folders: kafka-<port>/ (log folder, broker.log, pid) and
#                     clickhouse-<port>/ (data folder, server.log, pid)   (default RER_CACHE_DIR)
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
CLICKHOUSE_PORT="${CLICKHOUSE_PORT:-8123}"
CACHE_DIR="${RER_CACHE_DIR:-$HOME/.cache/raw-events-reprocessor}"
SERVICES_DIR="${RER_SERVICES_DIR:-$CACHE_DIR}"
TIMEOUT="${SERVICES_TIMEOUT:-90}"

# The jar folder is named after the pom's content, so editing the pom resolves the jars again.
JARS_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION-jars-$(sha1sum "$ROOT/tests/support/kafka/pom.xml" | cut -c1-10)"
VENV_DIR="$CACHE_DIR/chdb-$CHDB_VERSION-venv"
KAFKA_DIR="$SERVICES_DIR/kafka-$KAFKA_PORT"
CLICKHOUSE_DIR="$SERVICES_DIR/clickhouse-$CLICKHOUSE_PORT"

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
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/services.sh: single-node KRaft broker + controller for tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
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

kafka_up() {
    local pid
    if pid="$(running_pid "$KAFKA_DIR")"; then
        if kafka_probe; then
            log "kafka: already running (pid $pid) on $HOST:$KAFKA_PORT, nothing to do"
            return 0
        fi
        log "kafka: running (pid $pid) but not answering yet"
    else
        port_in_use "$KAFKA_PORT" && die "kafka: port $KAFKA_PORT is in use by a process this script did not start"
        port_in_use "$KAFKA_CONTROLLER_PORT" &&
            die "kafka: controller port $KAFKA_CONTROLLER_PORT is in use by a process this script did not start"
        with_lock "$CACHE_DIR/.install.lock" kafka_resolve_jars
        kafka_write_config
        if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
            local cluster_id
            cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
            log "kafka: formatting log folder $KAFKA_DIR/data (cluster $cluster_id)"
            java -cp "$JARS_DIR/*" kafka.tools.StorageTool format -t "$cluster_id" \
                -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1 || {
                show_log_tail "$KAFKA_DIR/format.log"
                die "kafka: formatting the log folder failed"
            }
        fi
        log "kafka: starting on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT), log $KAFKA_DIR/broker.log"
        echo "=== $(date -u +%FT%TZ) start" >>"$KAFKA_DIR/broker.log"
        setsid java -Xms512m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
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
            show_log_tail "$KAFKA_DIR/broker.log"
            rm -f "$KAFKA_DIR/pid"
            die "kafka: the broker exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$KAFKA_DIR/broker.log"
            die "kafka: no answer on $HOST:$KAFKA_PORT after ${TIMEOUT}s"
        fi
        sleep 0.3
    done
    log "kafka: ready on $HOST:$KAFKA_PORT (pid $pid)"
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
        clickhouse_apply_schema
        return 0
    fi
    if [[ -z "${pid:-}" ]]; then
        port_in_use "$CLICKHOUSE_PORT" &&
            die "clickhouse: port $CLICKHOUSE_PORT is in use by a process this script did not start"
        with_lock "$CACHE_DIR/.install.lock" clickhouse_install
        mkdir -p "$CLICKHOUSE_DIR/data"
        log "clickhouse: starting on $HOST:$CLICKHOUSE_PORT, data $CLICKHOUSE_DIR/data, log $CLICKHOUSE_DIR/server.log"
        echo "=== $(date -u +%FT%TZ) start" >>"$CLICKHOUSE_DIR/server.log"
        setsid "$VENV_DIR/bin/python" "$ROOT/tests/support/clickhouse_http.py" --host "$HOST" \
            --port "$CLICKHOUSE_PORT" --data "$CLICKHOUSE_DIR/data" --log "$CLICKHOUSE_DIR/server.log" \
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
    log "clickhouse: ready on $HOST:$CLICKHOUSE_PORT (pid $pid)"
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
    sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
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
    *) usage ;;
    esac
}

main "$@"
