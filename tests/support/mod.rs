//! Shared helpers of the integration tests: where the local services are, and a guard that fails a test
//! (never skips it) when they are not running.
//!
//! The services come from `scripts/services.sh up` (Apache Kafka on 127.0.0.1:9092, the ClickHouse HTTP
//! front end on 127.0.0.1:8123). `KAFKA_BOOTSTRAP` and `CLICKHOUSE_URL` point the tests elsewhere.
//! A test that stops or restarts a service must use its own instance ([`OwnServices`]), never the shared one.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Base URL of the ClickHouse HTTP interface (`CLICKHOUSE_URL`, default `http://127.0.0.1:8123`).
pub fn clickhouse_url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_string())
}

/// Kafka `bootstrap.servers` (`KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`).
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// `scripts/services.sh` of this checkout.
pub fn services_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh")
}

fn answers(address: &str) -> bool {
    let addrs: Vec<SocketAddr> = match address.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(_) => return false,
    };
    addrs
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, Duration::from_secs(2)).is_ok())
}

/// `host:port` of a URL such as `http://127.0.0.1:8123/`.
fn url_address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:80")
    }
}

/// Panics with a clear message unless Kafka and ClickHouse both accept connections.
pub fn require_services() {
    require_kafka();
    require_clickhouse();
}

/// Panics unless the first Kafka bootstrap server accepts connections.
pub fn require_kafka() {
    let bootstrap = kafka_bootstrap();
    let first = bootstrap
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        answers(&first),
        "Kafka does not answer on {first}: run scripts/services.sh up (see scripts/services.sh status)"
    );
}

/// Panics unless the ClickHouse HTTP interface accepts connections.
pub fn require_clickhouse() {
    let url = clickhouse_url();
    assert!(
        answers(&url_address(&url)),
        "ClickHouse does not answer on {url}: run scripts/services.sh up (see scripts/services.sh status)"
    );
}

/// A private Kafka + ClickHouse pair on their own ports and folders, for tests that stop, kill or restart a
/// service. Restarting reuses the same Kafka log folder and ClickHouse data folder. Dropping it stops both.
pub struct OwnServices {
    pub kafka_port: u16,
    pub clickhouse_port: u16,
    pub dir: tempfile::TempDir,
    /// `KAFKA_EXTRA_PROPERTIES` for this instance's broker (`k=v,k=v`), e.g. a short transactional-id
    /// expiration; empty for none.
    pub kafka_extra_properties: String,
}

impl OwnServices {
    /// Starts nothing yet; pick two free port bases (Kafka uses `kafka_port` and `kafka_port + 1`).
    pub fn new(kafka_port: u16, clickhouse_port: u16) -> Self {
        OwnServices {
            kafka_port,
            clickhouse_port,
            dir: tempfile::tempdir().expect("temp dir for own services"),
            kafka_extra_properties: String::new(),
        }
    }

    /// Like [`OwnServices::new`] with ports that are free now (Kafka: two consecutive ones).
    pub fn with_free_ports() -> Self {
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let pick = || loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("ask the OS for a free port")
                .port();
            if port < 65000 && free(port + 1) {
                return port;
            }
        };
        let kafka_port = pick();
        let clickhouse_port = loop {
            let port = pick();
            if port != kafka_port && port != kafka_port + 1 && port + 1 != kafka_port {
                break port;
            }
        };
        Self::new(kafka_port, clickhouse_port)
    }

    pub fn kafka_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn clickhouse_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.clickhouse_port)
    }

    /// Runs `scripts/services.sh <args>` for this instance; panics with its output on failure.
    pub fn run(&self, args: &[&str]) {
        let output = Command::new(services_script())
            .args(args)
            .env("KAFKA_PORT", self.kafka_port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.kafka_port + 1).to_string())
            .env("CLICKHOUSE_PORT", self.clickhouse_port.to_string())
            .env("RER_SERVICES_DIR", self.dir.path())
            .env("KAFKA_EXTRA_PROPERTIES", &self.kafka_extra_properties)
            .output()
            .expect("run scripts/services.sh");
        assert!(
            output.status.success(),
            "scripts/services.sh {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `up` (both), `up kafka`, `up clickhouse` ...
    pub fn up(&self, which: &str) {
        self.run(&["up", which]);
    }

    pub fn down(&self, which: &str) {
        self.run(&["down", which]);
    }
}

impl Drop for OwnServices {
    fn drop(&mut self) {
        let _ = Command::new(services_script())
            .args(["down"])
            .env("KAFKA_PORT", self.kafka_port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.kafka_port + 1).to_string())
            .env("CLICKHOUSE_PORT", self.clickhouse_port.to_string())
            .env("RER_SERVICES_DIR", self.dir.path())
            .output();
    }
}

pub mod harness;
