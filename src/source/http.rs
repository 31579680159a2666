//! The HTTP(S) client of the ClickHouse source (SPEC §10): `http://` and `https://` URLs (e.g. ClickHouse Cloud
//! on port 8443). TLS goes through the system's OpenSSL (the library librdkafka links as well) and checks the
//! server's certificate and host name against the system's CA roots, or, when `clickhouse.ca_file` is set,
//! against the CA certificates of that PEM file only.

use std::time::Duration;

use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ClickHouseConfig;

/// TCP keep-alive of pooled connections (the `clickhouse` crate's default).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Idle pooled connections are dropped after this: below ClickHouse's own HTTP keep-alive timeout (3 s by
/// default), so a request never goes out on a connection the server is closing (the crate's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server's certificate is checked against, for messages: `clickhouse.ca_file <path>` or the system's
/// CA roots.
pub fn trust_anchor(cfg: &ClickHouseConfig) -> String {
    match &cfg.ca_file {
        Some(path) => format!(
            "the CA certificates of clickhouse.ca_file {}",
            path.display()
        ),
        None => "the system's CA roots".to_string(),
    }
}

/// A `clickhouse::Client` for `cfg` (URL, user, password, database) over an HTTP client that speaks TLS for
/// `https://` URLs.
///
/// Errors (text naming the key): `clickhouse.ca_file` unreadable or holding no PEM certificate, or OpenSSL
/// refusing to build the TLS context.
pub fn client(cfg: &ClickHouseConfig) -> Result<clickhouse::Client, String> {
    let mut tls = native_tls::TlsConnector::builder();
    tls.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("clickhouse.ca_file {}: cannot read: {e}", path.display()))?;
        let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|e| {
            format!(
                "clickhouse.ca_file {}: not PEM certificates: {e}",
                path.display()
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "clickhouse.ca_file {}: holds no certificate",
                path.display()
            ));
        }
        tls.disable_built_in_roots(true);
        for cert in certs {
            tls.add_root_certificate(cert);
        }
    }
    let tls = tls
        .build()
        .map_err(|e| format!("cannot set up TLS for ClickHouse: {e}"))?;
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let https = hyper_tls::HttpsConnector::from((http, tokio_native_tls::TlsConnector::from(tls)));
    let hyper = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https);
    Ok(clickhouse::Client::with_http_client(hyper)
        .with_url(&cfg.url)
        .with_user(&cfg.user)
        .with_password(&cfg.password)
        .with_database(&cfg.database))
}

/// Whether a failed request's error chain holds a TLS failure that another attempt cannot fix (the server's
/// certificate refused, no common protocol, not TLS at all), as opposed to a connection broken mid-handshake.
pub fn is_tls_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<native_tls::Error>().is_some() {
            let text = e.to_string().to_ascii_lowercase();
            const BROKEN: [&str; 4] = [
                "unexpected eof",
                "connection reset",
                "broken pipe",
                "timed out",
            ];
            return !BROKEN.iter().any(|b| text.contains(b));
        }
        next = e.source();
    }
    false
}
