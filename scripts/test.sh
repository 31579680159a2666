#!/usr/bin/env bash
# The project's test command: every test (unit, integration, doc) against the local services.
#   scripts/test.sh [cargo test arguments]
# It installs missing Debian packages (scripts/install-deps.sh) and starts the local services
# (scripts/services.sh up: Kafka on 127.0.0.1:9092, ClickHouse HTTP on 127.0.0.1:8123), leaving them running.
# Tests that need the services fail (never skip) when they are down. Tests run in parallel threads within
# each test binary (RUST_TEST_THREADS, default 4: the machines this runs on have few cores, and most tests
# wait on Kafka or ClickHouse rather than compute). Tests that stop or restart a service use their own
# instances on other ports (tests/support/mod.rs: OwnServices), so nothing needs to run serially.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What a fresh machine lacks, and the local services (both idempotent: nothing happens when present/running).
# RER_TEST_NO_SETUP=1 skips both (the tests then fail, never skip, when a service is down).
if [[ "${RER_TEST_NO_SETUP:-}" != 1 ]]; then
    scripts/install-deps.sh
    scripts/services.sh up
elif ! scripts/services.sh status >/dev/null 2>&1; then
    echo "[test] warning: local services are not all running; tests that need them will fail." >&2
    echo "[test]          start them with: scripts/services.sh up" >&2
fi

export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
exec cargo test --no-fail-fast "$@"
