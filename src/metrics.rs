//! Prometheus metrics (names prefixed `reprocessor_`, SPEC §9) and the HTTP endpoint serving `/metrics`,
//! `/healthz` (process alive) and `/readyz` (connected to Kafka and ClickHouse, state topic loaded).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::job::Counters;

/// Label of [`Metrics::events`]: one of `found`, `published`, `dropped`, `transformation_error`, `failed`,
/// `sampled_out`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Label of [`Metrics::jobs`]: a job status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

/// Every metric of the daemon, registered once.
pub struct Metrics {
    registry: Registry,
    /// `reprocessor_events_total{outcome}`: rows by outcome, over all jobs of this process.
    pub events: Family<OutcomeLabel, Counter>,
    /// `reprocessor_batches_total`: committed batch transactions.
    pub batches: Counter,
    /// `reprocessor_batch_duration_seconds`: read + transform + commit time of one batch.
    pub batch_seconds: Histogram,
    /// `reprocessor_rows_per_second`: rows per second over all running jobs, from the latest batches.
    pub rows_per_second: Gauge<f64, AtomicU64>,
    /// `reprocessor_jobs{status}`: jobs known in the state topic, by status.
    pub jobs: Family<StatusLabel, Gauge>,
    /// `reprocessor_control_topic_lag`: commands not yet handled, over the assigned control partitions.
    pub control_lag: Gauge,
    /// `reprocessor_commands_total{outcome}`: commands handled (accepted, rejected, duplicate, control).
    pub commands: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("reprocessor");
        let events = Family::<OutcomeLabel, Counter>::default();
        registry.register("events", "Rows by outcome", events.clone());
        let batches = Counter::default();
        registry.register("batches", "Committed batch transactions", batches.clone());
        let batch_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "batch_duration_seconds",
            "Time to read, transform and commit one batch",
            batch_seconds.clone(),
        );
        let rows_per_second = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "rows_per_second",
            "Rows per second over running jobs",
            rows_per_second.clone(),
        );
        let jobs = Family::<StatusLabel, Gauge>::default();
        registry.register("jobs", "Jobs in the state topic by status", jobs.clone());
        let control_lag = Gauge::default();
        registry.register(
            "control_topic_lag",
            "Commands waiting on the assigned control partitions",
            control_lag.clone(),
        );
        let commands = Family::<OutcomeLabel, Counter>::default();
        registry.register("commands", "Commands handled by outcome", commands.clone());
        Metrics {
            registry,
            events,
            batches,
            batch_seconds,
            rows_per_second,
            jobs,
            control_lag,
            commands,
        }
    }

    /// Adds one committed batch's counters.
    pub fn record_batch(&self, delta: &Counters, seconds: f64) {
        for (outcome, n) in [
            ("found", delta.found),
            ("published", delta.published),
            ("dropped", delta.dropped),
            ("transformation_error", delta.transformation_errors),
            ("failed", delta.failed),
            ("sampled_out", delta.sampled_out),
        ] {
            if n > 0 {
                self.events
                    .get_or_create(&OutcomeLabel { outcome })
                    .inc_by(n as u64);
            }
        }
        self.batches.inc();
        self.batch_seconds.observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What `/readyz` reports; set by the daemon.
#[derive(Default)]
pub struct Readiness {
    pub kafka: AtomicBool,
    pub clickhouse: AtomicBool,
    pub state_loaded: AtomicBool,
    /// State partitions a job waits on (an open transaction holds back their end): (partition, seconds waited).
    /// Detail only: the daemon is ready all the same.
    pub state_waits: std::sync::Mutex<Vec<(i32, u64)>>,
}

impl Readiness {
    /// All three conditions hold.
    pub fn ready(&self) -> bool {
        self.kafka.load(Ordering::Acquire)
            && self.clickhouse.load(Ordering::Acquire)
            && self.state_loaded.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

async fn metrics_handler(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let r = &s.readiness;
    let waits: Vec<String> = r
        .state_waits
        .lock()
        .expect("readiness lock")
        .iter()
        .map(|(p, secs)| format!("{{\"partition\":{p},\"waited_secs\":{secs}}}"))
        .collect();
    let body = format!(
        "{{\"ready\":{},\"kafka\":{},\"clickhouse\":{},\"state_loaded\":{},\"waiting_for_state_partitions\":[{}]}}\n",
        r.ready(),
        r.kafka.load(Ordering::Acquire),
        r.clickhouse.load(Ordering::Acquire),
        r.state_loaded.load(Ordering::Acquire),
        waits.join(",")
    );
    let code = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

/// Binds the HTTP endpoint and serves it until the process ends; returns the address actually bound (port 0
/// picks a free one). Errors when the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { metrics, readiness });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_counters_appear_in_the_exposition() {
        let m = Metrics::new();
        m.record_batch(
            &Counters {
                found: 5,
                published: 3,
                dropped: 2,
                ..Default::default()
            },
            0.2,
        );
        let text = m.render();
        assert!(
            text.contains("reprocessor_events_total{outcome=\"published\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("reprocessor_events_total{outcome=\"dropped\"} 2"),
            "{text}"
        );
        assert!(text.contains("reprocessor_batches_total 1"), "{text}");
        assert!(
            text.contains("reprocessor_batch_duration_seconds_count 1"),
            "{text}"
        );
    }
}
