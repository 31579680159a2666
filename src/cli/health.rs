//! `reprocessor health`: asks a running daemon whether it is ready (`GET /readyz`, SPEC §9), for container
//! health checks and Kubernetes exec probes that have no HTTP client of their own.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::block_on;
use super::error::{CliResult, Exit};
use crate::config::Config;

/// `health`'s arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit codes: 0 ready, 1 not ready or no answer (all: `reprocessor --help`)."
)]
pub struct HealthArgs {
    /// Default: http://<observability.metrics_address>/readyz (0.0.0.0 is asked on 127.0.0.1).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Give up after this long (seconds, or a duration such as 500ms).
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = super::args::parse_duration)]
    pub timeout: Duration,
}

/// `reprocessor health`: prints `ready: <detail>` and exits 0, or `not ready: <why>` and exits 1.
pub fn run(cfg: &Config, a: &HealthArgs) -> CliResult {
    let url = a.url.clone().unwrap_or_else(|| default_url(cfg));
    match block_on(probe(&url, a.timeout)) {
        Ok(body) => {
            println!("ready: {body}");
            Ok(Exit::Ok)
        }
        Err(e) => {
            println!("not ready: {e}");
            Ok(Exit::Error)
        }
    }
}

/// `http://<observability.metrics_address>/readyz`, with an unspecified address (`0.0.0.0`, `[::]`) read as
/// the loopback address of its family.
pub fn default_url(cfg: &Config) -> String {
    let mut addr: SocketAddr = cfg
        .observability
        .metrics_address
        .parse()
        .expect("validated at load");
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/readyz")
}

/// GETs `url`: `Ok` with the body when the answer is 200, `Err` with what went wrong otherwise (another
/// status and its body, no answer within `timeout`, no connection).
pub async fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("{url}: not a URL: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let answer = async {
        let response = client.get(uri).await.map_err(|e| {
            // The cause (e.g. "Connection refused") is at the end of the source chain.
            let mut text = format!("{url}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                text.push_str(&format!(": {s}"));
                src = s.source();
            }
            text
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the answer: {e}"))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).trim().to_string();
        if status.is_success() {
            Ok(body)
        } else {
            Err(format!("{url}: {status} {body}"))
        }
    };
    tokio::time::timeout(timeout, answer)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{url}: no answer within {} s",
                timeout.as_secs_f64()
            ))
        })
}
