#!/usr/bin/env bash
# The main job end to end on sample data, on this machine:
#   1. starts the local services (Apache Kafka on 127.0.0.1:9092, ClickHouse HTTP on 127.0.0.1:8123),
#   2. builds the reprocessor (release),
#   3. loads sample raw events into flexprice.raw_events (the real sample payload, realistic generated
#      payloads, and a few invalid rows),
#   4. starts the daemon, submits a replay command and watches it to its final result,
#   5. prints the result, a few output events and a few dead letters,
#   6. stops the daemon and leaves the services running.
# Usage: scripts/demo.sh [number of generated rows, default 5000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROWS="${1:-5000}"
LOG_DIR="${RER_DEMO_DIR:-target/demo}"
mkdir -p "$LOG_DIR"

echo "== 1/6 system packages and local services"
scripts/install-deps.sh
scripts/services.sh up

echo "== 2/6 building the reprocessor (release; the first build takes a few minutes)"
cargo build --release --quiet --bin reprocessor
BIN=target/release/reprocessor

echo "== 3/6 loading sample raw events"
scripts/load_sample.py --rows "$ROWS"

echo "== 4/6 starting the daemon (log: $LOG_DIR/daemon.log) and submitting a replay"
"$BIN" run >"$LOG_DIR/daemon.log" 2>&1 &
DAEMON_PID=$!
stop_daemon() {
    if kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
}
trap stop_daemon EXIT
for _ in $(seq 1 120); do
    if curl -fsS http://127.0.0.1:9464/readyz >/dev/null 2>&1; then break; fi
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
        echo "the daemon exited; its log:" >&2
        cat "$LOG_DIR/daemon.log" >&2
        exit 1
    fi
    sleep 0.5
done
curl -fsS http://127.0.0.1:9464/readyz || { echo "daemon not ready; see $LOG_DIR/daemon.log" >&2; exit 1; }

JOB="demo-$(date -u +%Y%m%dT%H%M%SZ)"
set +e
"$BIN" submit --job-id "$JOB" --tenant demo_tenant --environment demo_env \
    --start 2024-03-01T00:00:00Z --end 2024-03-04T00:00:00Z --batch-size 1000 --watch
WATCH_STATUS=$?
set -e

echo "== 5/6 what the job wrote"
echo "-- the last 3 events on prod_events_v4:"
"$BIN" peek output --last --limit 3
echo "-- dead letters of $JOB (first 4):"
"$BIN" peek dlq --job "$JOB" --limit 4

echo "== 6/6 stopping the daemon"
stop_daemon
trap - EXIT
echo
echo "Done (job $JOB, watch exit code $WATCH_STATUS). Try the operator commands with: alias reprocessor=$PWD/$BIN"
echo "The services are still running:"
scripts/services.sh status || true
echo "Stop them with: scripts/services.sh down"
exit "$WATCH_STATUS"
