//! Prometheus metrics (names prefixed `reprocessor_`, SPEC §9) and the HTTP endpoint serving `/metrics`,
//! `/healthz` (process alive) and `/readyz` (connected to Kafka and ClickHouse, state topic loaded).
//!
//! Counters count, and rates come from PromQL's `rate()`: no metric is a per-second figure. Every series whose
//! labels are known at start (outcomes, stages, transaction results, job statuses, command outcomes) is
//! created at 0 by [`Metrics::new`], so `rate()` and `increase()` see a counter's first increment. The series
//! of one job (`reprocessor_job_rows{job_id,kind}`) exist while its task reads ([`JobSeries`]).
//!
//! The daemon owns one [`Metrics`]; the source records its reads through [`ReadMetrics`], the job tasks their
//! batches and transactions through [`Metrics::record_batch`] and [`Metrics::transaction`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::job::{Counters, DeadLetterStage, JobStatus};

/// The values of `reprocessor_events_total{outcome}` (SPEC §9), in the order of [`Metrics::record_batch`]: every
/// row read and committed has exactly one, so their sum is the rows of committed batches.
pub const EVENT_OUTCOMES: [&str; 5] = [
    "published",
    "dropped",
    "transformation_error",
    "failed",
    "sampled_out",
];

/// The values of `reprocessor_commands_total{outcome}`: the verdicts of SPEC §3 and `control` for a pause,
/// resume or cancel request recorded.
pub const COMMAND_OUTCOMES: [&str; 4] = ["accepted", "rejected", "duplicate", "control"];

/// How a job's transaction ended, as `reprocessor_transactions_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnResult {
    /// Committed: at once, or found committed when its checkpoint was read back.
    Committed,
    /// Not committed: aborted (the broker refused records, the producer was fenced, a send failed), or its
    /// checkpoint read back was the previous one.
    Aborted,
    /// Never learned: the task stopped, or another instance wrote the job's checkpoint, before the outcome
    /// was read back.
    Unknown,
}

impl TxnResult {
    pub const ALL: [TxnResult; 3] = [TxnResult::Committed, TxnResult::Aborted, TxnResult::Unknown];

    /// The label value: `committed`, `aborted`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnResult::Committed => "committed",
            TxnResult::Aborted => "aborted",
            TxnResult::Unknown => "unknown",
        }
    }
}

/// Label of `reprocessor_events_total` and `reprocessor_commands_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Label of `reprocessor_jobs`: a job status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: &'static str,
}

/// Label of `reprocessor_dead_letters_total`: a dead-letter stage (SPEC §8).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

/// Label of `reprocessor_transactions_total`: a [`TxnResult`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Labels of `reprocessor_job_rows`: the job and `done` (rows read and committed) or `estimated` (the
/// row-count estimate).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobRowsLabel {
    pub job_id: String,
    pub kind: &'static str,
}

/// Label of `reprocessor_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
}

/// What the source records about its reads of the raw table: `reprocessor_rows_read_total` and
/// `reprocessor_clickhouse_query_duration_seconds`. Cheap to clone (the metrics are shared handles).
#[derive(Clone, Debug)]
pub struct ReadMetrics {
    rows: Counter,
    query_seconds: Histogram,
}

impl ReadMetrics {
    /// One attempt of a stream query: the `rows` it took from ClickHouse and the time ClickHouse took for it
    /// (from sending the query to its last row or its failure, less the time spent waiting for the job to take
    /// a batch).
    pub fn record_query(&self, rows: u64, clickhouse_time: Duration) {
        self.rows.inc_by(rows);
        self.query_seconds.observe(clickhouse_time.as_secs_f64());
    }
}

/// Every metric of the daemon, registered once.
pub struct Metrics {
    registry: Registry,
    /// `reprocessor_events_total` by outcome, in the order of [`EVENT_OUTCOMES`].
    events: [Counter; 5],
    /// `reprocessor_dead_letters_total` by stage, in the order of [`DeadLetterStage::ALL`].
    dead_letters: [Counter; 3],
    /// `reprocessor_transactions_total` by result, in the order of [`TxnResult::ALL`].
    transactions: [Counter; 3],
    batch_seconds: Histogram,
    last_commit: Gauge<f64, AtomicU64>,
    reads: ReadMetrics,
    job_rows: Family<JobRowsLabel, Gauge>,
    /// `reprocessor_jobs{status}`: jobs of the control partitions assigned to this instance, by status.
    pub jobs: Family<StatusLabel, Gauge>,
    /// `reprocessor_control_topic_lag`: commands not yet handled, over the assigned control partitions.
    pub control_lag: Gauge,
    /// `reprocessor_commands_total{outcome}`: commands handled, by [`COMMAND_OUTCOMES`].
    pub commands: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates the series of `family` for each label set of `labels` (at 0) and returns their handles.
fn series<S, M, const N: usize>(family: &Family<S, M>, labels: [S; N]) -> [M; N]
where
    S: Clone + std::hash::Hash + Eq,
    M: Clone + Default,
{
    labels.map(|l| family.get_or_create(&l).clone())
}

impl Metrics {
    /// Creates and registers every metric, each labelled series at 0.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("reprocessor");
        let build = Info::new(BuildLabel {
            version: env!("CARGO_PKG_VERSION"),
        });
        registry.register("build", "Version of the running reprocessor", build);

        let rows = Counter::default();
        registry.register(
            "rows_read",
            "Rows taken from ClickHouse by job streams (rows read again after a transaction that did not commit count again)",
            rows.clone(),
        );
        let family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "events",
            "Rows of committed batches by outcome: published, dropped (validation), transformation_error, failed (publish), sampled_out",
            family.clone(),
        );
        let events = series(
            &family,
            EVENT_OUTCOMES.map(|outcome| OutcomeLabel { outcome }),
        );
        let family = Family::<StageLabel, Counter>::default();
        registry.register(
            "dead_letters",
            "Dead-letter records committed, by stage (validation, transformation, publish)",
            family.clone(),
        );
        let dead_letters = series(
            &family,
            DeadLetterStage::ALL.map(|s| StageLabel { stage: s.as_str() }),
        );
        let family = Family::<ResultLabel, Counter>::default();
        registry.register(
            "transactions",
            "Transactions of job tasks (batches and job state changes) by result: committed, aborted (not committed), unknown (outcome never read back)",
            family.clone(),
        );
        let transactions = series(
            &family,
            TxnResult::ALL.map(|r| ResultLabel { result: r.as_str() }),
        );
        let batch_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register_with_unit(
            "batch_duration",
            "Time to read, transform and commit one batch, throttle waits excluded; committed batches only",
            Unit::Seconds,
            batch_seconds.clone(),
        );
        let query_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        registry.register_with_unit(
            "clickhouse_query_duration",
            "ClickHouse time of one stream query attempt: from sending it to its last row or failure, less the time waiting for the job to take a batch",
            Unit::Seconds,
            query_seconds.clone(),
        );
        let last_commit = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "last_commit_timestamp",
            "Unix time of the last committed transaction of a job task (0: none since start)",
            Unit::Seconds,
            last_commit.clone(),
        );
        let jobs = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "jobs",
            "Jobs of the control partitions assigned to this instance, by status",
            jobs.clone(),
        );
        series(
            &jobs,
            JobStatus::ALL.map(|s| StatusLabel { status: s.as_str() }),
        );
        let job_rows = Family::<JobRowsLabel, Gauge>::default();
        registry.register(
            "job_rows",
            "Rows of each job being read here: done (read and committed) and estimated (row-count estimate, once known)",
            job_rows.clone(),
        );
        let control_lag = Gauge::default();
        registry.register(
            "control_topic_lag",
            "Commands waiting on the assigned control partitions",
            control_lag.clone(),
        );
        let commands = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "commands",
            "Commands handled, by outcome: accepted, rejected, duplicate, control",
            commands.clone(),
        );
        series(
            &commands,
            COMMAND_OUTCOMES.map(|outcome| OutcomeLabel { outcome }),
        );
        Metrics {
            registry,
            events,
            dead_letters,
            transactions,
            batch_seconds,
            last_commit,
            reads: ReadMetrics {
                rows,
                query_seconds,
            },
            job_rows,
            jobs,
            control_lag,
            commands,
        }
    }

    /// Adds one committed batch: its rows by outcome, its dead letters by stage (none when `dead_lettered` is
    /// false, as for a dry run, which writes none) and its duration.
    pub fn record_batch(&self, delta: &Counters, dead_lettered: bool, duration: Duration) {
        let [
            published,
            dropped,
            transformation_error,
            failed,
            sampled_out,
        ] = &self.events;
        published.inc_by(delta.published as u64);
        dropped.inc_by(delta.dropped as u64);
        transformation_error.inc_by(delta.transformation_errors as u64);
        failed.inc_by(delta.failed as u64);
        sampled_out.inc_by(delta.sampled_out as u64);
        if dead_lettered {
            let [validation, transformation, publish] = &self.dead_letters;
            validation.inc_by(delta.dropped as u64);
            transformation.inc_by(delta.transformation_errors as u64);
            publish.inc_by(delta.failed as u64);
        }
        self.batch_seconds.observe(duration.as_secs_f64());
    }

    /// Starts counting one job transaction: resolve it with [`Transaction::committed`] or
    /// [`Transaction::aborted`]; dropped unresolved, it counts as `unknown`.
    pub fn transaction(self: &Arc<Self>) -> Transaction {
        Transaction {
            metrics: Some(self.clone()),
        }
    }

    fn count_transaction(&self, result: TxnResult) {
        let i = TxnResult::ALL
            .iter()
            .position(|r| *r == result)
            .expect("every result is listed");
        self.transactions[i].inc();
        if result == TxnResult::Committed {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.last_commit.set(now.as_secs_f64());
        }
    }

    /// The handles the source records its reads with.
    pub fn reads(&self) -> ReadMetrics {
        self.reads.clone()
    }

    /// The series of a job whose task reads here, removed when the returned guard is dropped (SPEC §9: running
    /// jobs only).
    pub fn job_series(self: &Arc<Self>, job_id: &str) -> JobSeries {
        JobSeries {
            metrics: self.clone(),
            job_id: job_id.to_string(),
        }
    }

    /// The Prometheus text exposition (OpenMetrics) of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// One job transaction being counted (see [`Metrics::transaction`]).
#[must_use = "an unresolved transaction counts as unknown"]
pub struct Transaction {
    metrics: Option<Arc<Metrics>>,
}

impl Transaction {
    /// The transaction committed (also sets `reprocessor_last_commit_timestamp_seconds`).
    pub fn committed(mut self) {
        if let Some(m) = self.metrics.take() {
            m.count_transaction(TxnResult::Committed);
        }
    }

    /// The transaction did not commit.
    pub fn aborted(mut self) {
        if let Some(m) = self.metrics.take() {
            m.count_transaction(TxnResult::Aborted);
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            m.count_transaction(TxnResult::Unknown);
        }
    }
}

/// `reprocessor_job_rows{job_id,kind}` of one job while its task reads; dropping it removes the series.
pub struct JobSeries {
    metrics: Arc<Metrics>,
    job_id: String,
}

impl JobSeries {
    fn label(&self, kind: &'static str) -> JobRowsLabel {
        JobRowsLabel {
            job_id: self.job_id.clone(),
            kind,
        }
    }

    /// Sets the rows `done` (read and committed: the checkpoint's `found`) and the row-count estimate, when
    /// there is one.
    pub fn set(&self, done: i64, estimated: Option<i64>) {
        let rows = &self.metrics.job_rows;
        rows.get_or_create(&self.label("done")).set(done);
        if let Some(n) = estimated {
            rows.get_or_create(&self.label("estimated")).set(n);
        }
    }
}

impl Drop for JobSeries {
    fn drop(&mut self) {
        for kind in ["done", "estimated"] {
            self.metrics.job_rows.remove(&self.label(kind));
        }
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
    use std::collections::BTreeMap;

    use super::*;

    fn scrape(m: &Metrics) -> prometheus_parse::Scrape {
        let text = m.render();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("the exposition does not parse: {e}\n{text}"))
    }

    /// The value of the sample `name` whose labels include `labels`; `None` when there is none.
    fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let sample = s.samples.iter().find(|x| {
            x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        })?;
        match &sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(*v),
            other => panic!("{name} is not a single value: {other:?}"),
        }
    }

    /// The `# TYPE` lines: metric family → type.
    fn types(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (name, kind) = l.split_once(' ').expect("# TYPE name type");
                (name.to_string(), kind.to_string())
            })
            .collect()
    }

    #[test]
    fn every_metric_of_spec_9_is_exported_with_its_type_and_no_other() {
        let m = Arc::new(Metrics::new());
        // A family without series is not rendered: one job reading.
        let job = m.job_series("j");
        job.set(1, Some(2));
        let text = m.render();
        let types = types(&text);
        let expected: BTreeMap<String, String> = [
            ("reprocessor_build", "info"),
            ("reprocessor_rows_read", "counter"),
            ("reprocessor_events", "counter"),
            ("reprocessor_dead_letters", "counter"),
            ("reprocessor_transactions", "counter"),
            ("reprocessor_batch_duration_seconds", "histogram"),
            ("reprocessor_clickhouse_query_duration_seconds", "histogram"),
            ("reprocessor_last_commit_timestamp_seconds", "gauge"),
            ("reprocessor_jobs", "gauge"),
            ("reprocessor_job_rows", "gauge"),
            ("reprocessor_control_topic_lag", "gauge"),
            ("reprocessor_commands", "counter"),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
        assert_eq!(types, expected);
    }

    #[test]
    fn every_labelled_series_starts_at_zero() {
        let m = Metrics::new();
        let s = scrape(&m);
        let zero = |name: &str, label: &str, values: &[&str]| {
            for v in values {
                assert_eq!(
                    value(&s, name, &[(label, v)]),
                    Some(0.0),
                    "{name}{{{label}=\"{v}\"}}\n{}",
                    m.render()
                );
            }
            let n = s.samples.iter().filter(|x| x.metric == name).count();
            assert_eq!(n, values.len(), "{name}: only the listed series");
        };
        zero("reprocessor_events_total", "outcome", &EVENT_OUTCOMES);
        let stages = DeadLetterStage::ALL.map(|s| s.as_str());
        zero("reprocessor_dead_letters_total", "stage", &stages);
        let results = TxnResult::ALL.map(|r| r.as_str());
        zero("reprocessor_transactions_total", "result", &results);
        zero(
            "reprocessor_jobs",
            "status",
            &JobStatus::ALL.map(|s| s.as_str()),
        );
        zero("reprocessor_commands_total", "outcome", &COMMAND_OUTCOMES);
        for name in [
            "reprocessor_rows_read_total",
            "reprocessor_last_commit_timestamp_seconds",
            "reprocessor_control_topic_lag",
            "reprocessor_batch_duration_seconds_count",
            "reprocessor_clickhouse_query_duration_seconds_count",
        ] {
            assert_eq!(value(&s, name, &[]), Some(0.0), "{name}");
        }
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            value(&s, "reprocessor_build_info", &[("version", version)]),
            Some(1.0)
        );
        assert!(!s.samples.iter().any(|x| x.metric == "reprocessor_job_rows"));
    }

    #[test]
    fn a_batch_counts_every_row_once_and_its_dead_letters_by_stage() {
        let m = Metrics::new();
        let delta = Counters {
            found: 10,
            published: 3,
            dropped: 2,
            transformation_errors: 1,
            failed: 1,
            sampled_out: 3,
            processed_batches: 1,
        };
        m.record_batch(&delta, true, Duration::from_millis(200));
        // A dry run: the same outcomes, no dead letters written.
        m.record_batch(&delta, false, Duration::from_millis(100));
        m.reads().record_query(20, Duration::from_millis(30));
        let s = scrape(&m);
        let events: f64 = EVENT_OUTCOMES
            .iter()
            .map(|o| value(&s, "reprocessor_events_total", &[("outcome", o)]).unwrap())
            .sum();
        assert_eq!(events, 20.0);
        assert_eq!(value(&s, "reprocessor_rows_read_total", &[]), Some(events));
        for (outcome, n) in [("published", 6.0), ("sampled_out", 6.0), ("failed", 2.0)] {
            let got = value(&s, "reprocessor_events_total", &[("outcome", outcome)]);
            assert_eq!(got, Some(n), "{outcome}");
        }
        for (stage, n) in [
            ("validation", 2.0),
            ("transformation", 1.0),
            ("publish", 1.0),
        ] {
            let got = value(&s, "reprocessor_dead_letters_total", &[("stage", stage)]);
            assert_eq!(got, Some(n), "{stage}");
        }
        let count = value(&s, "reprocessor_batch_duration_seconds_count", &[]);
        assert_eq!(count, Some(2.0));
        let sum = value(&s, "reprocessor_batch_duration_seconds_sum", &[]).unwrap();
        assert!((sum - 0.3).abs() < 1e-9, "{sum}");
        let queries = value(
            &s,
            "reprocessor_clickhouse_query_duration_seconds_count",
            &[],
        );
        assert_eq!(queries, Some(1.0));
    }

    #[test]
    fn transactions_count_by_result_and_a_commit_sets_its_time() {
        let m = Arc::new(Metrics::new());
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        m.transaction().committed();
        m.transaction().committed();
        m.transaction().aborted();
        drop(m.transaction());
        let s = scrape(&m);
        for (result, n) in [("committed", 2.0), ("aborted", 1.0), ("unknown", 1.0)] {
            let got = value(&s, "reprocessor_transactions_total", &[("result", result)]);
            assert_eq!(got, Some(n), "{result}");
        }
        let at = value(&s, "reprocessor_last_commit_timestamp_seconds", &[]).unwrap();
        assert!(
            at >= before.floor() && at < before + 60.0,
            "{at} vs {before}"
        );
    }

    #[test]
    fn a_job_series_lives_as_long_as_its_guard() {
        let m = Arc::new(Metrics::new());
        let a = m.job_series("job-a");
        let b = m.job_series("job-b");
        a.set(5, None);
        b.set(7, Some(100));
        a.set(40, Some(90));
        let s = scrape(&m);
        let rows = |job: &str, kind: &str| {
            value(
                &s,
                "reprocessor_job_rows",
                &[("job_id", job), ("kind", kind)],
            )
        };
        assert_eq!(rows("job-a", "done"), Some(40.0));
        assert_eq!(rows("job-a", "estimated"), Some(90.0));
        assert_eq!(rows("job-b", "done"), Some(7.0));
        drop(a);
        let s = scrape(&m);
        let left: Vec<_> = s
            .samples
            .iter()
            .filter(|x| x.metric == "reprocessor_job_rows")
            .map(|x| x.labels.get("job_id").unwrap().to_string())
            .collect();
        assert_eq!(left, ["job-b", "job-b"]);
        drop(b);
        assert!(!m.render().contains("reprocessor_job_rows{"));
    }
}
