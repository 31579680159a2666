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

/// Milliseconds in a day.
pub const DAY: i64 = 86_400_000;
/// 2024-03-01T00:00:00Z: the first day of the tests' data.
pub const T0: i64 = 1_709_251_200_000;

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

/// A TCP proxy in front of ClickHouse (`target` = `host:port`): returns its base URL and the task serving it
/// (abort the task to make the server disappear under connected clients). When `refuse` is given and returns
/// true for what a connection has sent of its current request, the proxy answers that request with HTTP 500
/// and ClickHouse's `TIMEOUT_EXCEEDED` (code 159, which clients retry) and closes the connection: a server that
/// cannot run a kind of query.
pub async fn clickhouse_proxy(
    target: String,
    refuse: Option<fn(&[u8]) -> bool>,
) -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TIMEOUT: &[u8] = b"Code: 159. DB::Exception: Timeout exceeded: elapsed 61.2 seconds, maximum: 60. (TIMEOUT_EXCEEDED)";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                break;
            };
            let target = target.clone();
            conns.spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let Some(refuse) = refuse else {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                };
                let (mut a, mut b) = (vec![0u8; 16384], vec![0u8; 16384]);
                let mut request = Vec::new();
                loop {
                    tokio::select! {
                        n = inbound.read(&mut a) => {
                            let Ok(n @ 1..) = n else { return };
                            request.extend_from_slice(&a[..n]);
                            if refuse(&request) {
                                let head = format!(
                                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
                                     X-ClickHouse-Exception-Code: 159\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                    TIMEOUT.len()
                                );
                                let _ = inbound.write_all(head.as_bytes()).await;
                                let _ = inbound.write_all(TIMEOUT).await;
                                return;
                            }
                            if outbound.write_all(&a[..n]).await.is_err() { return }
                        }
                        n = outbound.read(&mut b) => {
                            let Ok(n @ 1..) = n else { return };
                            // An answer: the next bytes from the client are a new request.
                            request.clear();
                            if inbound.write_all(&b[..n]).await.is_err() { return }
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), task)
}
