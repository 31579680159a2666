//! Kafka side of the daemon: topic creation and limits, and [`TxnProducer`], which commits one batch of
//! records (events, dead letters, results, checkpoint, optionally consumer offsets) as a single Kafka
//! transaction (SPEC §5).
//!
//! Transactional ids are stable (`<prefix>-<job_id>` for jobs, `<prefix>-control-<partition>` for the
//! control handler of one command partition), so creating a [`TxnProducer`] fences any zombie that used the
//! same id and aborts what it left open. Every transactional call runs on the blocking pool with the
//! configured timeout.

use std::time::Duration;

use backon::{BlockingRetryable, ConstantBuilder, ExponentialBuilder, Retryable};
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ThreadedProducer};
use tracing::{debug, warn};

use crate::config::Config;
use crate::job::records::OutRecord;
use crate::kafka::{KafkaLogContext, Role, client_config, error_name};

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
    client_config(cfg, Role::Admin)
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
    Ok(topic_partitions(cfg)
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// Every topic on the cluster with its number of partitions, read from metadata.
///
/// Errors: as [`existing_topics`].
pub async fn topic_partitions(cfg: &Config) -> Result<Vec<(String, i32)>, TopicError> {
    // A producer rather than an admin client: polling it hands the client's errors to its context.
    let client: BaseProducer<KafkaLogContext> = client_config(cfg, Role::Admin)
        .create_with_context(KafkaLogContext::default())
        .map_err(|e| TopicError::Metadata {
            servers: cfg.kafka.bootstrap_servers.clone(),
            error: e.to_string(),
        })?;
    let timeout = cfg.kafka.operation_timeout();
    let md = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(None, timeout)
            .map(|md| {
                md.topics()
                    .iter()
                    .map(|t| (t.name().to_string(), t.partitions().len() as i32))
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
    let opts = AdminOptions::new().operation_timeout(Some(cfg.kafka.operation_timeout()));
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
    let (output, dlq) = broker_limits(cfg).await;
    for (topic, actual) in [(&mut cfg.topics.output, output), (&mut cfg.topics.dlq, dlq)] {
        if let Some(actual) = actual
            && actual < topic.max_message_bytes
        {
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

/// The `max.message.bytes` of the output and dead-letter topics on the broker, bytes (`None` where it could
/// not be read).
pub async fn broker_limits(cfg: &Config) -> (Option<i64>, Option<i64>) {
    let Ok(admin) = admin_client(cfg) else {
        return (None, None);
    };
    let opts = AdminOptions::new().request_timeout(Some(cfg.kafka.operation_timeout()));
    let names = [cfg.topics.output.name.clone(), cfg.topics.dlq.name.clone()];
    let specs: Vec<ResourceSpecifier> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
    let Ok(results) = admin.describe_configs(specs.iter(), &opts).await else {
        return (None, None);
    };
    let mut limits = results.into_iter().map(|r| {
        r.ok()?
            .get("max.message.bytes")?
            .value
            .as_deref()?
            .parse::<i64>()
            .ok()
    });
    (limits.next().flatten(), limits.next().flatten())
}

/// Why a transaction did not commit. In every case nothing of it is visible to `read_committed` readers,
/// except [`TxnError::Retry`] after the commit call itself, whose outcome is unknown.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The broker refused these records (tag, librdkafka error name); the transaction was aborted.
    #[error("{} record(s) refused by the broker", .0.len())]
    Refused(Vec<(Option<usize>, String)>),
    /// Another producer with the same transactional id took over.
    #[error("producer fenced: another producer initialised this transactional id")]
    Fenced,
    /// The consumer group no longer counts this member as the owner of the offsets it commits (its
    /// generation is gone: a rebalance moved the partition, e.g. after a stall past the session timeout).
    #[error("consumer group generation lost: {0}")]
    GroupLost(String),
    /// The producer cannot be used any more; build a new one and redo the transaction.
    #[error("fatal producer error: {0}")]
    Fatal(String),
    /// Not committed, or outcome unknown: rebuild the producer, read the outcome back, then go on.
    #[error("transaction not committed: {0}")]
    Retry(String),
}

/// The client context of a transactional producer: logs, and the delivery failures of the open transaction
/// by record index (`DeliveryOpaque`), recorded by the producer's polling thread. No future or channel per
/// record: a transaction sends its records, flushes once, then reads what failed.
#[derive(Default)]
pub struct DeliveryContext {
    log: KafkaLogContext,
    failed: std::sync::Mutex<Vec<(usize, KafkaError)>>,
}

impl rdkafka::ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl rdkafka::producer::ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, index: usize) {
        if let Err((e, _)) = result {
            self.failed
                .lock()
                .expect("delivery lock")
                .push((index, e.clone()));
        }
    }
}

type Inner = ThreadedProducer<DeliveryContext>;

/// A transactional producer with a stable transactional id.
pub struct TxnProducer {
    producer: Inner,
    op_timeout: Duration,
}

fn classify(e: &KafkaError) -> TxnError {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::ProducerFenced | C::InvalidProducerEpoch | C::Fenced) => return TxnError::Fenced,
        Some(
            C::IllegalGeneration
            | C::UnknownMemberId
            | C::FencedInstanceId
            | C::RebalanceInProgress,
        ) => return TxnError::GroupLost(e.to_string()),
        _ => {}
    }
    match e {
        KafkaError::Transaction(re) if re.is_fatal() => TxnError::Fatal(re.to_string()),
        _ => TxnError::Retry(e.to_string()),
    }
}

/// Error codes that concern one record only (the broker or the client will never take it): the record is
/// dead-lettered and the batch redone without it.
fn refuses_the_record(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
    )
}

/// Whether a refusal (a librdkafka error name of [`TxnError::Refused`]) is about a record's or a record
/// batch's size: the topic's `max.message.bytes` may be smaller than the daemon knows, and the broker refuses a
/// whole record batch over it, naming every record in it, however small.
pub fn is_size_refusal(name: &str) -> bool {
    [
        RDKafkaErrorCode::MessageSizeTooLarge,
        RDKafkaErrorCode::MessageBatchTooLarge,
        RDKafkaErrorCode::InvalidMessageSize,
    ]
    .into_iter()
    .any(|code| error_name(code) == name)
}

/// What producing a transaction's records came to.
#[derive(Debug, Default)]
struct Produced {
    /// Records the broker (or the client) refused: (tag, librdkafka error name).
    refused: Vec<(Option<usize>, String)>,
    /// The first failure that is not about one record (e.g. the transaction became abortable).
    other: Option<KafkaError>,
}

impl Produced {
    /// Sorts the failures of a transaction's records (`tags`: each record's [`OutRecord::tag`]; a failure: the
    /// index of the record, its send's or delivery's error):
    /// an error that concerns the record itself ([`refuses_the_record`]) names it; any other (`_STATE` once
    /// the transaction is abortable, a timeout, …) names no record, whichever record it was reported for.
    fn of(
        tags: &[Option<usize>],
        failures: impl IntoIterator<Item = (usize, KafkaError)>,
    ) -> Produced {
        let mut out = Produced::default();
        for (i, e) in failures {
            match e.rdkafka_error_code() {
                Some(code) if refuses_the_record(code) => {
                    out.refused.push((tags[i], error_name(code)))
                }
                _ => {
                    out.other.get_or_insert(e);
                }
            }
        }
        out
    }
}

impl TxnProducer {
    /// Creates the producer and initialises transactions, which fences older producers of the same id and
    /// aborts their open transaction. Retries transient failures until `kafka.init_timeout()` has passed.
    pub async fn new(cfg: &Config, transactional_id: &str) -> Result<TxnProducer, TxnError> {
        let limits = cfg.topics.all().map(|(_, t)| t.max_message_bytes);
        let max_bytes = limits
            .iter()
            .copied()
            .max()
            .unwrap_or(1_048_588)
            .max(1_048_588);
        // A record batch must fit the smallest topic limit, or the broker refuses the whole batch.
        let min_bytes = limits.iter().copied().min().unwrap_or(1_048_588);
        let role = Role::Transactional {
            id: transactional_id,
            max_message_bytes: max_bytes,
            batch_bytes: (min_bytes - 512).clamp(1024, 1_000_000),
        };
        let producer: Inner = client_config(cfg, role)
            .create_with_context(DeliveryContext::default())
            .map_err(|e| TxnError::Fatal(e.to_string()))?;
        let op_timeout = cfg.kafka.operation_timeout();
        let init = || {
            let p = producer.clone();
            async move {
                tokio::task::spawn_blocking(move || p.init_transactions(op_timeout))
                    .await
                    .expect("init task does not panic")
            }
        };
        init.retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(250))
                .with_max_delay(Duration::from_secs(2))
                .without_max_times()
                .with_total_delay(Some(cfg.kafka.init_timeout())),
        )
        .sleep(tokio::time::sleep)
        .when(|e| matches!(classify(e), TxnError::Retry(_)))
        .notify(|e, _| warn!(transactional_id, error = %e, "init_transactions failed; retrying"))
        .await
        .map_err(|e| classify(&e))?;
        Ok(TxnProducer {
            producer,
            op_timeout,
        })
    }

    /// Produces `records` and, when given, commits consumer `offsets` in one transaction.
    ///
    /// Returns once the transaction is committed. When the broker refuses records, the transaction is
    /// aborted and the refused records' tags are returned, so the caller can dead-letter them and redo the
    /// batch; the producer should then be replaced (librdkafka bumps the idempotent epoch after such an error,
    /// which can make the next transaction of the same producer abortable). Only records the broker or the
    /// client really refused are named: once one record fails, the transaction is abortable and every later
    /// send fails with `_STATE`, which blames nobody.
    pub async fn commit(
        &self,
        records: Vec<OutRecord>,
        offsets: Option<(TopicPartitionList, ConsumerGroupMetadata)>,
    ) -> Result<(), TxnError> {
        self.producer
            .begin_transaction()
            .map_err(|e| classify(&e))?;
        let produced = self.produce(records).await;
        if let Some(e) = produced.other {
            let err = classify(&e);
            if produced.refused.is_empty() {
                return Err(self.abort_after(err).await);
            }
            debug!(error = %e, "later sends failed because of the refused records");
        }
        if !produced.refused.is_empty() {
            self.abort().await?;
            return Err(TxnError::Refused(produced.refused));
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
                return Err(self.abort_after(classify(&e)).await);
            }
        }
        self.commit_open().await
    }

    /// Sends every record of the open transaction and waits for their delivery reports: one blocking flush
    /// (librdkafka sends at once, ignoring `linger.ms`, and returns when every report was served).
    async fn produce(&self, records: Vec<OutRecord>) -> Produced {
        self.producer
            .context()
            .failed
            .lock()
            .expect("delivery lock")
            .clear();
        let mut send_failure = None;
        for (i, r) in records.iter().enumerate() {
            if let Err(e) = self.send(i, r).await {
                send_failure = Some((i, e));
                break;
            }
        }
        // librdkafka holds copies now: the records' memory is not kept while the transaction is in flight.
        let tags: Vec<Option<usize>> = records.iter().map(|r| r.tag).collect();
        drop(records);
        let flushed = self.flush().await;
        let failed = std::mem::take(
            &mut *self
                .producer
                .context()
                .failed
                .lock()
                .expect("delivery lock"),
        );
        let mut out = Produced::of(&tags, send_failure.into_iter().chain(failed));
        if let Err(e) = flushed {
            out.other.get_or_insert(e);
        }
        out
    }

    /// Waits until every record sent has its delivery report (served by the producer's polling thread).
    async fn flush(&self) -> Result<(), KafkaError> {
        let p = self.producer.clone();
        let ms = self.op_timeout.as_millis().min(i32::MAX as u128) as i32;
        let code = tokio::task::spawn_blocking(move || {
            // SAFETY: the client pointer is valid while `p` (a clone of the producer) lives. With delivery
            // reports as events (how rdkafka sets up producers), rd_kafka_flush only waits for the count of
            // messages in flight to reach zero; the polling thread serves the reports. (The crate's own
            // `flush` polls the event queue in 100 ms windows instead, adding up to 100 ms per call.)
            unsafe { rdkafka::bindings::rd_kafka_flush(p.client().native_ptr(), ms) }
        })
        .await
        .expect("flush task does not panic");
        match RDKafkaErrorCode::from(code) {
            RDKafkaErrorCode::NoError => Ok(()),
            other => Err(KafkaError::Flush(other)),
        }
    }

    /// Enqueues one record (its index in the transaction is its delivery opaque), waiting while librdkafka's
    /// queue is full.
    async fn send(&self, index: usize, r: &OutRecord) -> Result<(), KafkaError> {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.bytes(&r.key)),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&r.topic, index)
                .key(r.key.as_slice())
                .headers(headers);
        if let Some(value) = &r.value {
            record = record.payload(value.as_slice());
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Commits the open transaction. A retriable commit error leaves the outcome to a later commit call
    /// (librdkafka docs), so those are retried a few times; any other failure leaves the outcome to be read
    /// back by the caller (the records carry the checkpoint or the consumer offset that tells).
    async fn commit_open(&self) -> Result<(), TxnError> {
        let p = self.producer.clone();
        let t = self.op_timeout;
        let r = tokio::task::spawn_blocking(move || {
            (|| p.commit_transaction(t))
                .retry(ConstantBuilder::default().with_delay(Duration::ZERO).with_max_times(5))
                .when(|e| {
                    matches!(e, KafkaError::Transaction(e) if e.is_retriable() && !e.txn_requires_abort())
                })
                .call()
        })
        .await
        .expect("commit task does not panic");
        r.map_err(|e| classify(&e))
    }

    /// Aborts after `err` unless the producer is unusable anyway; returns `err` (or the abort's failure).
    async fn abort_after(&self, err: TxnError) -> TxnError {
        if matches!(err, TxnError::Fenced | TxnError::Fatal(_)) {
            return err;
        }
        match self.abort().await {
            Ok(()) => err,
            Err(e) => e,
        }
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
    use rdkafka::ClientConfig;

    /// Once one record is refused the transaction is abortable and every later send or delivery fails with
    /// `_STATE`: only the refused record is named, never a valid row nor the checkpoint after it.
    #[test]
    fn only_errors_about_a_record_name_it() {
        let tags = [Some(0), Some(1), Some(2), None];
        let err = |code| KafkaError::MessageProduction(code);
        // (failures by record index) → (refused tags and names, whether another error remains)
        type Case = (
            Vec<(usize, RDKafkaErrorCode)>,
            Vec<(Option<usize>, &'static str)>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (vec![], vec![], false),
            (
                vec![
                    (1, RDKafkaErrorCode::MessageSizeTooLarge),
                    (2, RDKafkaErrorCode::State),
                    (3, RDKafkaErrorCode::State),
                ],
                vec![(Some(1), "MSG_SIZE_TOO_LARGE")],
                true,
            ),
            (vec![(3, RDKafkaErrorCode::State)], vec![], true),
            (vec![(0, RDKafkaErrorCode::MessageTimedOut)], vec![], true),
            (
                vec![(2, RDKafkaErrorCode::InvalidRecord)],
                vec![(Some(2), "INVALID_RECORD")],
                false,
            ),
        ];
        for (failures, refused, other) in cases {
            let p = Produced::of(&tags, failures.iter().map(|(i, c)| (*i, err(*c))));
            let names: Vec<(Option<usize>, &str)> =
                p.refused.iter().map(|(t, n)| (*t, n.as_str())).collect();
            assert_eq!((names, p.other.is_some()), (refused, other), "{failures:?}");
        }
    }

    #[test]
    fn size_refusals_are_told_from_other_refusals() {
        assert!(is_size_refusal("MSG_SIZE_TOO_LARGE"));
        assert!(is_size_refusal(&error_name(
            RDKafkaErrorCode::MessageBatchTooLarge
        )));
        assert!(!is_size_refusal(&error_name(
            RDKafkaErrorCode::InvalidRecord
        )));
        assert!(!is_size_refusal("_STATE"));
    }

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
