//! Kafka side of the daemon: client configuration, topic creation, and [`TxnProducer`], which commits one
//! batch of records (events, dead letters, results, checkpoint, optionally consumer offsets) as a single
//! Kafka transaction (SPEC §5).
//!
//! Transactional ids are stable (`<prefix>-<job_id>` for jobs, `<prefix>-control-<partition>` for the
//! control handler of one command partition), so creating a [`TxnProducer`] fences any zombie that used the
//! same id and aborts what it left open. Every transactional call runs on the blocking pool with the
//! configured timeout.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use tracing::{debug, warn};

use crate::config::Config;

/// Bytes allowed for a record's framing on top of key, value and headers when checking
/// `max.message.bytes` before producing (record batch header plus record overhead).
pub const RECORD_OVERHEAD_BYTES: usize = 128;

/// Base librdkafka configuration of every Kafka client (daemon and CLI): bootstrap servers plus every
/// `kafka.properties` entry and every value read from `kafka.property_files` (SASL, TLS, ...).
pub fn client_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka.bootstrap_servers);
    for (k, v) in cfg.kafka.client_properties() {
        c.set(k, v);
    }
    c
}

/// Client context of every long-lived Kafka client: forwards librdkafka's logs and errors to `tracing`, at most
/// once per 10 seconds per kind (facility or error), so that a broker outage is reported without flooding the
/// log with one line per reconnect attempt. It also keeps the latest client error, so that a request that
/// only times out can say why (e.g. `SASL authentication error: Authentication failed ...`, `SSL handshake
/// failed ...`).
#[derive(Default)]
pub struct KafkaLogContext {
    last: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
    last_error: std::sync::Mutex<Option<String>>,
}

impl KafkaLogContext {
    /// The latest error librdkafka reported for this client (its own text: no configuration values).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("last error lock").clone()
    }

    /// Whether a line of this kind may be written now, and how many were suppressed since the last one.
    fn admit(&self, kind: &str) -> Option<u64> {
        let mut last = self.last.lock().expect("log rate lock");
        let now = std::time::Instant::now();
        match last.get_mut(kind) {
            Some((at, suppressed)) if now.duration_since(*at) < Duration::from_secs(10) => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                last.insert(kind.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for KafkaLogContext {}

impl rdkafka::producer::ProducerContext for KafkaLogContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl rdkafka::ClientContext for KafkaLogContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let Some(suppressed) = self.admit(fac) else {
            return;
        };
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, suppressed, "{message}")
            }
            L::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, suppressed, "{message}")
            }
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", facility = fac, suppressed, "{message}")
            }
            L::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, suppressed, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        *self.last_error.lock().expect("last error lock") = Some(reason.to_string());
        let kind = format!("{:?}", error.rdkafka_error_code());
        if let Some(suppressed) = self.admit(&kind) {
            warn!(target: "librdkafka", error = %error, suppressed, "Kafka client error: {reason}");
        }
    }
}

/// The librdkafka name of an error code, e.g. `MSG_SIZE_TOO_LARGE` (SPEC §8 spells broker errors so).
pub fn error_name(code: RDKafkaErrorCode) -> String {
    let Ok(raw) = rdkafka::types::RDKafkaRespErr::try_from(code as i32) else {
        return format!("{code:?}");
    };
    // SAFETY: rd_kafka_err2name returns a pointer to a static, NUL-terminated string for every code.
    unsafe {
        let ptr = rdkafka::bindings::rd_kafka_err2name(raw);
        std::ffi::CStr::from_ptr(ptr).to_string_lossy().into_owned()
    }
}

/// Errors of topic checks at start.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic `{topic}` (topics.{key}.name) does not exist and topics.create_topics = false")]
    Missing { key: &'static str, topic: String },
    #[error("cannot create topic `{topic}`: {error}")]
    Create { topic: String, error: String },
    #[error("cannot read Kafka metadata from {servers}: {error}")]
    Metadata { servers: String, error: String },
}

/// An admin client for the configured cluster.
fn admin_client(cfg: &Config) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    client_config(cfg)
        .create()
        .map_err(|e| TopicError::Metadata {
            servers: cfg.kafka.bootstrap_servers.clone(),
            error: e.to_string(),
        })
}

/// Names of the configured topics that exist on the cluster, read from metadata.
///
/// Errors: [`TopicError::Metadata`] with librdkafka's error and, when the client reported one meanwhile, its
/// latest error (refused SASL credentials, a TLS handshake failure, ...).
pub async fn existing_topics(cfg: &Config) -> Result<Vec<String>, TopicError> {
    // A producer rather than an admin client: polling it hands the client's errors to its context.
    let client: BaseProducer<KafkaLogContext> = client_config(cfg)
        .create_with_context(KafkaLogContext::default())
        .map_err(|e| TopicError::Metadata {
            servers: cfg.kafka.bootstrap_servers.clone(),
            error: e.to_string(),
        })?;
    let timeout = Duration::from_millis(cfg.kafka.operation_timeout_ms);
    let md = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(None, timeout)
            .map(|md| {
                md.topics()
                    .iter()
                    .map(|t| t.name().to_string())
                    .collect::<Vec<_>>()
            })
            .map_err(|e| {
                client.poll(Duration::from_millis(100));
                match client.context().last_error() {
                    Some(cause) => format!("{cause} ({e})"),
                    None => e.to_string(),
                }
            })
    })
    .await
    .expect("metadata task does not panic");
    md.map_err(|error| TopicError::Metadata {
        servers: cfg.kafka.bootstrap_servers.clone(),
        error,
    })
}

/// Makes sure the five topics exist: creates the missing ones with their configured settings when
/// `topics.create_topics` is true (the state topic always compacted), else fails naming the first missing one.
pub async fn ensure_topics(cfg: &Config) -> Result<(), TopicError> {
    let existing = existing_topics(cfg).await?;
    let missing: Vec<_> = cfg
        .topics
        .all()
        .into_iter()
        .filter(|(_, t)| !existing.contains(&t.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !cfg.topics.create_topics {
        let (key, t) = missing[0];
        return Err(TopicError::Missing {
            key,
            topic: t.name.clone(),
        });
    }
    let admin = admin_client(cfg)?;
    let settings: Vec<(String, String, String)> = missing
        .iter()
        .map(|(key, t)| {
            (
                t.retention_ms.to_string(),
                t.max_message_bytes.to_string(),
                if *key == "state" { "compact" } else { "delete" }.to_string(),
            )
        })
        .collect();
    let new_topics: Vec<NewTopic> = missing
        .iter()
        .zip(&settings)
        .map(|((_, t), (retention, max_bytes, policy))| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            )
            .set("cleanup.policy", policy)
            .set("retention.ms", retention)
            .set("max.message.bytes", max_bytes)
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_millis(cfg.kafka.operation_timeout_ms)));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .map_err(|e| TopicError::Create {
            topic: missing[0].1.name.clone(),
            error: e.to_string(),
        })?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                debug!(topic = %name, "topic created concurrently")
            }
            Err((name, code)) => {
                return Err(TopicError::Create {
                    topic: name,
                    error: error_name(code),
                });
            }
        }
    }
    Ok(())
}

/// Lowers `topics.<key>.max_message_bytes` of the output and dead-letter topics to the broker's own
/// `max.message.bytes` of each topic when that is smaller, so rows too large for the real topic are
/// dead-lettered before producing (SPEC §5) even when the configuration overstates the limit. Topics whose
/// configuration cannot be read keep the configured value.
pub async fn apply_broker_limits(cfg: &mut Config) {
    let Ok(admin) = admin_client(cfg) else {
        return;
    };
    let opts = AdminOptions::new()
        .request_timeout(Some(Duration::from_millis(cfg.kafka.operation_timeout_ms)));
    let names = [cfg.topics.output.name.clone(), cfg.topics.dlq.name.clone()];
    let specs: Vec<ResourceSpecifier> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let Ok(results) = admin.describe_configs(specs.iter(), &opts).await else {
        return;
    };
    for (i, r) in results.into_iter().enumerate() {
        let Ok(resource) = r else { continue };
        let Some(actual) = resource
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<i64>().ok())
        else {
            continue;
        };
        let topic = if i == 0 {
            &mut cfg.topics.output
        } else {
            &mut cfg.topics.dlq
        };
        if actual < topic.max_message_bytes {
            warn!(
                topic = %topic.name,
                configured = topic.max_message_bytes,
                broker = actual,
                "the topic's max.message.bytes on the broker is smaller than configured; using the broker's"
            );
            topic.max_message_bytes = actual;
        }
    }
}

/// One record of a batch transaction. `tag` is handed back when the broker refuses this record.
#[derive(Debug, Clone)]
pub struct OutRecord {
    pub topic: Arc<str>,
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    /// Position of the row in its batch (0-based) for rows' records; `None` for records about the job.
    pub tag: Option<usize>,
}

impl OutRecord {
    /// Bytes this record needs on the wire, for the `max.message.bytes` check.
    pub fn wire_size(&self) -> usize {
        self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>()
            + RECORD_OVERHEAD_BYTES
    }
}

/// Why a batch transaction did not commit. In every case nothing of the batch is visible to
/// `read_committed` readers.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The broker refused these records (tag, librdkafka error name); the transaction was aborted.
    #[error("{} record(s) refused by the broker", .0.len())]
    Refused(Vec<(Option<usize>, String)>),
    /// Another producer with the same transactional id took over: this owner must stop.
    #[error("producer fenced: another instance owns this transactional id")]
    Fenced,
    /// The producer cannot be used any more; build a new one and redo the batch.
    #[error("fatal producer error: {0}")]
    Fatal(String),
    /// Not committed, or outcome unknown: rebuild the producer, reload the checkpoint, then go on.
    #[error("transaction not committed: {0}")]
    Retry(String),
}

/// A transactional producer with a stable transactional id.
pub struct TxnProducer {
    producer: FutureProducer<KafkaLogContext>,
    op_timeout: Duration,
}

fn classify(e: &KafkaError) -> TxnError {
    let fenced = matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::ProducerFenced)
            | Some(RDKafkaErrorCode::InvalidProducerEpoch)
            | Some(RDKafkaErrorCode::Fenced)
    );
    if fenced {
        return TxnError::Fenced;
    }
    match e {
        KafkaError::Transaction(re) if re.is_fatal() => TxnError::Fatal(re.to_string()),
        _ => TxnError::Retry(e.to_string()),
    }
}

impl TxnProducer {
    /// Creates the producer and initialises transactions, which fences older producers of the same id and
    /// aborts their open transaction. Retries transient failures until `op_timeout` × 4 has passed.
    pub async fn new(cfg: &Config, transactional_id: &str) -> Result<TxnProducer, TxnError> {
        let max_bytes = cfg
            .topics
            .all()
            .iter()
            .map(|(_, t)| t.max_message_bytes)
            .max()
            .unwrap_or(1_048_588)
            .max(1_048_588);
        // A record batch must fit the smallest topic limit, or the broker refuses the whole batch.
        let min_bytes = cfg
            .topics
            .all()
            .iter()
            .map(|(_, t)| t.max_message_bytes)
            .min()
            .unwrap_or(1_048_588);
        let batch_size = (min_bytes - 512).clamp(1024, 1_000_000);
        let mut c = client_config(cfg);
        c.set("transactional.id", transactional_id)
            .set("enable.idempotence", "true")
            .set(
                "transaction.timeout.ms",
                cfg.kafka.transaction_timeout_ms.to_string(),
            )
            .set(
                "message.timeout.ms",
                cfg.kafka.transaction_timeout_ms.to_string(),
            )
            .set("message.max.bytes", (max_bytes + 1024).to_string())
            .set("partitioner", "fnv1a_random")
            .set("batch.size", batch_size.to_string())
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        let producer: FutureProducer<KafkaLogContext> = c
            .create_with_context(KafkaLogContext::default())
            .map_err(|e| TxnError::Fatal(e.to_string()))?;
        let op_timeout = Duration::from_millis(cfg.kafka.operation_timeout_ms);
        let deadline = std::time::Instant::now() + op_timeout * 4;
        loop {
            let p = producer.clone();
            let r = tokio::task::spawn_blocking(move || p.init_transactions(op_timeout))
                .await
                .expect("init task does not panic");
            match r {
                Ok(()) => break,
                Err(e)
                    if std::time::Instant::now() < deadline
                        && !matches!(classify(&e), TxnError::Fatal(_)) =>
                {
                    warn!(transactional_id, error = %e, "init_transactions failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(classify(&e)),
            }
        }
        Ok(TxnProducer {
            producer,
            op_timeout,
        })
    }

    /// Produces `records` and, when given, commits consumer `offsets` in one transaction.
    ///
    /// Returns once the transaction is committed. On a refused record the transaction is aborted and the
    /// refused records' tags are returned, so the caller can dead-letter them and redo the batch.
    pub async fn commit(
        &self,
        records: &[OutRecord],
        offsets: Option<(TopicPartitionList, ConsumerGroupMetadata)>,
    ) -> Result<(), TxnError> {
        self.producer
            .begin_transaction()
            .map_err(|e| classify(&e))?;
        let mut futures = Vec::with_capacity(records.len());
        for r in records {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut record = FutureRecord::to(&r.topic)
                .key(r.key.as_bytes())
                .payload(&r.value)
                .headers(headers);
            loop {
                match self.producer.send_result(record) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        self.abort().await?;
                        return match e.rdkafka_error_code() {
                            Some(code) if !matches!(classify(&e), TxnError::Fenced) => {
                                Err(TxnError::Refused(vec![(r.tag, error_name(code))]))
                            }
                            _ => Err(classify(&e)),
                        };
                    }
                }
            }
        }
        let results = join_all(futures).await;
        let mut refused = Vec::new();
        let mut other: Option<KafkaError> = None;
        for (r, res) in records.iter().zip(results) {
            match res {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    let per_record = matches!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::MessageSizeTooLarge)
                            | Some(RDKafkaErrorCode::InvalidRecord)
                            | Some(RDKafkaErrorCode::InvalidMessage)
                            | Some(RDKafkaErrorCode::MessageBatchTooLarge)
                    );
                    if per_record {
                        refused.push((r.tag, error_name(e.rdkafka_error_code().unwrap())));
                    } else if other.is_none() {
                        other = Some(e);
                    }
                }
                Err(_) => {
                    if other.is_none() {
                        other = Some(KafkaError::Canceled);
                    }
                }
            }
        }
        if let Some(e) = other {
            let err = classify(&e);
            if !matches!(err, TxnError::Fenced | TxnError::Fatal(_)) {
                self.abort().await?;
            }
            return Err(err);
        }
        if !refused.is_empty() {
            self.abort().await?;
            return Err(TxnError::Refused(refused));
        }
        if let Some((offsets, group)) = offsets {
            let p = self.producer.clone();
            let t = self.op_timeout;
            let r = tokio::task::spawn_blocking(move || {
                p.send_offsets_to_transaction(&offsets, &group, t)
            })
            .await
            .expect("offsets task does not panic");
            if let Err(e) = r {
                let err = classify(&e);
                if !matches!(err, TxnError::Fenced | TxnError::Fatal(_)) {
                    self.abort().await?;
                }
                return Err(err);
            }
        }
        let p = self.producer.clone();
        let t = self.op_timeout;
        let r = tokio::task::spawn_blocking(move || {
            // A retriable commit error leaves the outcome to a later commit call (librdkafka docs).
            let mut tries = 0;
            loop {
                match p.commit_transaction(t) {
                    Err(KafkaError::Transaction(e))
                        if e.is_retriable() && !e.txn_requires_abort() && tries < 5 =>
                    {
                        tries += 1;
                    }
                    other => return other,
                }
            }
        })
        .await
        .expect("commit task does not panic");
        // Any failure here leaves the outcome to be read back from the state topic: the caller rebuilds the
        // producer (fencing this one) and reloads the job's checkpoint, which is part of this transaction.
        r.map_err(|e| classify(&e))
    }

    /// Aborts the open transaction.
    pub async fn abort(&self) -> Result<(), TxnError> {
        let p = self.producer.clone();
        let t = self.op_timeout;
        let r = tokio::task::spawn_blocking(move || p.abort_transaction(t))
            .await
            .expect("abort task does not panic");
        r.map_err(|e| match classify(&e) {
            TxnError::Retry(m) => TxnError::Fatal(format!("abort failed: {m}")),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build supports what production clusters need (SPEC §10): librdkafka refuses a property its build
    /// lacks when the client is created (e.g. "ssl.ca.location not supported in this build: OpenSSL not
    /// available at build time"), so creating a client with each setup proves the support is compiled in.
    /// Creating a client connects to nothing.
    #[test]
    fn the_build_supports_tls_and_every_sasl_mechanism() {
        let setups: [&[(&str, &str)]; 5] = [
            &[("security.protocol", "SSL"), ("ssl.ca.location", "probe")],
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "OAUTHBEARER"),
                ("sasl.oauthbearer.method", "oidc"),
                ("sasl.oauthbearer.client.id", "id"),
                ("sasl.oauthbearer.client.secret", "secret"),
                (
                    "sasl.oauthbearer.token.endpoint.url",
                    "https://idp.example/oauth2/token",
                ),
            ],
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "GSSAPI"),
                ("sasl.kerberos.service.name", "kafka"),
                ("sasl.kerberos.keytab", "/etc/krb5.keytab"),
                // No kinit at start (this test has no Kerberos).
                ("sasl.kerberos.min.time.before.relogin", "0"),
            ],
        ];
        for setup in setups {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", "127.0.0.1:1");
            for (k, v) in setup {
                c.set(*k, *v);
            }
            if let Err(e) = c.create::<BaseProducer>() {
                panic!("{setup:?}: {e}");
            }
        }
    }
}
