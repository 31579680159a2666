#!/usr/bin/env bash
# Installs the Debian packages the build and the local services need, only those missing:
# cmake, pkg-config, libcurl4-openssl-dev, libssl-dev and libsasl2-dev (librdkafka's vendored build with TLS,
# SASL and OAUTHBEARER OIDC; the ClickHouse client's HTTPS), python3-venv (the ClickHouse engine's venv),
# Java and Maven (Apache Kafka from Maven Central), openssl (the local services' test CA), kcat and curl
# (operator tools), a C/C++ toolchain.
# Needs a Rust toolchain already (rustup). Uses sudo when not root.
set -euo pipefail
wanted=(cmake pkg-config libcurl4-openssl-dev libssl-dev libsasl2-dev openssl python3-venv kcat curl ca-certificates maven)
missing=()
for package in "${wanted[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
if ! { command -v cc >/dev/null && command -v c++ >/dev/null && command -v make >/dev/null; }; then
    missing+=(build-essential)
fi
command -v cargo >/dev/null || {
    echo "install-deps: cargo not found: install Rust first (https://rustup.rs)" >&2
    exit 1
}
if ((${#missing[@]} == 0)); then
    echo "[deps] all present: ${wanted[*]} java cc c++ make cargo"
    exit 0
fi
echo "[deps] installing: ${missing[*]}"
sudo=()
((EUID == 0)) || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
