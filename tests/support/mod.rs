//! Shared helpers of the integration tests: where the local services are, and a guard that fails a test
//! (never skips it) when they are not running.
//!
//! The services come from `scripts/services.sh up` (Apache Kafka on 127.0.0.1:9092, the ClickHouse HTTP
//! front end on 127.0.0.1:8123). `KAFKA_BOOTSTRAP` and `CLICKHOUSE_URL` point the tests elsewhere; the secure
//! endpoints ([`secure`]: Kafka SASL_SSL and mTLS, ClickHouse HTTPS, their CA) are what `scripts/services.sh env`
//! prints for the same environment (`KAFKA_PORT`, `CLICKHOUSE_PORT`, `RER_SERVICES_DIR`, ...).
//! A test that stops or restarts a service must use its own instance ([`OwnServices`]), never the shared one.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The first of `n` consecutive loopback ports that are free now, below the kernel's ephemeral range
/// (32768-60999 on Linux), so that no client connection of a test takes one as its local port between this
/// check and the server's bind (a port the OS handed out by `bind(0)` could be, and a broker then failed to
/// start).
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const LOW: u64 = 20_000;
    const HIGH: u64 = 32_000;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 20;
    loop {
        // A spread of starts (xorshift of a per-process counter), so concurrent tests and binaries differ.
        let mut x = seed.wrapping_add(NEXT.fetch_add(0x9E37_79B9, Ordering::Relaxed)) | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let start = (LOW + x % (HIGH - LOW - u64::from(n))) as u16;
        if (start..start + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return start;
        }
    }
}

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

/// How clients reach the secure endpoints of one set of local services (`scripts/services.sh env`).
#[derive(Debug, Clone)]
pub struct Secure {
    /// Kafka's SASL_SSL listener (SCRAM-SHA-512/256, PLAIN, OAUTHBEARER with unsecured JWTs).
    pub kafka_sasl_ssl: String,
    /// Kafka's SSL listener that requires a client certificate.
    pub kafka_mtls: String,
    pub sasl_user: String,
    /// The file holding the SASL user's password.
    pub sasl_password_file: PathBuf,
    /// `https://...` of the ClickHouse front end.
    pub clickhouse_https: String,
    /// The local CA that signed the servers' and the client's certificates.
    pub ca_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

impl Secure {
    fn parse(text: &str) -> Secure {
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| {
            vars.get(k)
                .unwrap_or_else(|| panic!("scripts/services.sh env printed no {k}:\n{text}"))
                .to_string()
        };
        Secure {
            kafka_sasl_ssl: get("KAFKA_SASL_SSL_BOOTSTRAP"),
            kafka_mtls: get("KAFKA_MTLS_BOOTSTRAP"),
            sasl_user: get("KAFKA_SASL_USER"),
            sasl_password_file: get("KAFKA_SASL_PASSWORD_FILE").into(),
            clickhouse_https: get("CLICKHOUSE_HTTPS_URL"),
            ca_file: get("TLS_CA_FILE").into(),
            client_cert_file: get("TLS_CLIENT_CERT_FILE").into(),
            client_key_file: get("TLS_CLIENT_KEY_FILE").into(),
        }
    }

    /// The SASL user's password.
    pub fn sasl_password(&self) -> String {
        std::fs::read_to_string(&self.sasl_password_file)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (start the services with scripts/services.sh up)",
                    self.sasl_password_file.display()
                )
            })
            .trim_end()
            .to_string()
    }

    /// librdkafka properties of a SCRAM-SHA-512 client of the SASL_SSL listener trusting only the local CA.
    pub fn scram_properties(&self) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL".to_string()),
            ("ssl.ca.location", self.ca_file.display().to_string()),
            ("sasl.mechanisms", "SCRAM-SHA-512".to_string()),
            ("sasl.username", self.sasl_user.clone()),
            ("sasl.password", self.sasl_password()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Panics with a clear message unless the SASL_SSL, mTLS and HTTPS endpoints accept connections.
    pub fn require(&self) {
        for (what, address) in [
            ("Kafka's SASL_SSL listener", self.kafka_sasl_ssl.clone()),
            ("Kafka's mTLS listener", self.kafka_mtls.clone()),
            ("ClickHouse HTTPS", url_address(&self.clickhouse_https)),
        ] {
            assert!(
                answers(&address),
                "{what} does not answer on {address}: run scripts/services.sh up; a service started by an \
                 older scripts/services.sh lacks it and must be restarted (scripts/services.sh down && scripts/services.sh up)"
            );
        }
    }
}

/// The secure endpoints of the shared services (`scripts/services.sh env` with this environment), checked to
/// answer.
pub fn secure() -> &'static Secure {
    static SECURE: OnceLock<Secure> = OnceLock::new();
    let secure = SECURE.get_or_init(|| {
        let output = Command::new(services_script())
            .arg("env")
            .output()
            .expect("run scripts/services.sh env");
        assert!(output.status.success(), "scripts/services.sh env failed");
        Secure::parse(&String::from_utf8_lossy(&output.stdout))
    });
    secure.require();
    secure
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

    /// Like [`OwnServices::new`] with ports that are free now (Kafka: four consecutive ones, for plaintext,
    /// the controller, SASL_SSL and mTLS; ClickHouse: two, for HTTP and HTTPS).
    pub fn with_free_ports() -> Self {
        let kafka_port = free_ports(4);
        let clickhouse_port = loop {
            let port = free_ports(2);
            if port + 1 < kafka_port || port > kafka_port + 3 {
                break port;
            }
        };
        Self::new(kafka_port, clickhouse_port)
    }

    /// The secure endpoints of this instance (`scripts/services.sh env`).
    pub fn secure(&self) -> Secure {
        let output = self
            .command(&["env"])
            .output()
            .expect("run scripts/services.sh env");
        Secure::parse(&String::from_utf8_lossy(&output.stdout))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(services_script());
        c.args(args)
            .env("KAFKA_PORT", self.kafka_port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.kafka_port + 1).to_string())
            .env("KAFKA_SASL_PORT", (self.kafka_port + 2).to_string())
            .env("KAFKA_SSL_PORT", (self.kafka_port + 3).to_string())
            .env("CLICKHOUSE_PORT", self.clickhouse_port.to_string())
            .env(
                "CLICKHOUSE_HTTPS_PORT",
                (self.clickhouse_port + 1).to_string(),
            )
            .env("RER_SERVICES_DIR", self.dir.path())
            .env("KAFKA_EXTRA_PROPERTIES", &self.kafka_extra_properties);
        c
    }

    pub fn kafka_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn clickhouse_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.clickhouse_port)
    }

    /// Runs `scripts/services.sh <args>` for this instance; panics with its output on failure.
    pub fn run(&self, args: &[&str]) {
        let output = self
            .command(args)
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
        let _ = self.command(&["down"]).output();
    }
}

pub mod harness;

/// A fault a [`clickhouse_proxy`] injects.
#[derive(Clone, Copy)]
pub enum Fault {
    /// None: a plain proxy.
    None,
    /// When the function returns true for what a connection has sent of its current request, the proxy answers
    /// that request with HTTP 500 and ClickHouse's `TIMEOUT_EXCEEDED` (code 159, which clients retry) and closes
    /// the connection: a server that cannot run a kind of query.
    Refuse(fn(&[u8]) -> bool),
    /// Every connection is cut after this many bytes of answers: a network that breaks long reads.
    CutAfter(usize),
}

/// A TCP proxy in front of ClickHouse (`target` = `host:port`) injecting `fault`: returns its base URL and the
/// task serving it (abort the task to make the server disappear under connected clients).
pub async fn clickhouse_proxy(
    target: String,
    fault: Fault,
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
                let (refuse, cut_after) = match fault {
                    Fault::None => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                    Fault::Refuse(f) => (Some(f), usize::MAX),
                    Fault::CutAfter(n) => (None, n),
                };
                let mut answered = 0usize;
                let (mut a, mut b) = (vec![0u8; 16384], vec![0u8; 16384]);
                let mut request = Vec::new();
                loop {
                    tokio::select! {
                        n = inbound.read(&mut a) => {
                            let Ok(n @ 1..) = n else { return };
                            request.extend_from_slice(&a[..n]);
                            if refuse.is_some_and(|refuse| refuse(&request)) {
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
                            let n = n.min(cut_after - answered);
                            if inbound.write_all(&b[..n]).await.is_err() { return }
                            answered += n;
                            if answered >= cut_after { return }
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), task)
}
