//! Every Kafka client's configuration, in one place: [`client_config`] builds it for a [`Role`] from the
//! bootstrap servers, every `kafka.properties` entry (security settings reach every client) and what the role
//! needs. Also the client context that forwards librdkafka's logs to `tracing` ([`KafkaLogContext`]) and
//! librdkafka's error names ([`error_name`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::warn;

use crate::config::Config;

/// What a Kafka client is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// The daemon's consumer of the control topic: the consumer group, `read_committed`, offsets committed
    /// only inside command transactions (`send_offsets_to_transaction`).
    ControlConsumer,
    /// A transactional producer with a stable `transactional.id` (a job's or a control partition's),
    /// idempotent, `fnv1a_random` partitioner (SPEC §2), lz4. `max_message_bytes`: the largest topic limit;
    /// `batch_bytes`: what one record batch may hold (the smallest topic limit, less framing).
    Transactional {
        id: &'a str,
        max_message_bytes: i64,
        batch_bytes: i64,
    },
    /// A reader of whole topics without a consumer group's offsets (the state topic's tail, the CLI's readers):
    /// `read_committed`, nothing committed. `group` names it for the broker's logs.
    Reader { group: &'a str },
    /// Watermark queries under `read_uncommitted`: the true end of a partition, open transactions included.
    UncommittedWatermarks,
    /// The CLI's producer of commands: `murmur2_random` partitioner so Java and librdkafka clients agree on
    /// a job id's partition (SPEC §2), idempotent, `acks=all`.
    CommandProducer,
    /// Admin and metadata requests.
    Admin,
}

/// The librdkafka configuration of a client in `role`: the role's tunable defaults (batching, linger,
/// compression), then every `kafka.properties` entry and value read from `kafka.property_files` (security,
/// tuning), then what the product relies on (transactions, isolation, offsets, partitioners), which no property
/// overrides.
pub fn client_config(cfg: &Config, role: Role<'_>) -> ClientConfig {
    let k = &cfg.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers);
    if let Role::Transactional { batch_bytes, .. } = role {
        // A transaction's records are sent at its flush at the latest, so a long linger costs no latency and
        // spares the broker threads a wakeup per few records.
        c.set("batch.size", batch_bytes.to_string())
            .set("linger.ms", "100")
            .set("compression.type", "lz4");
    }
    if let Role::ControlConsumer = role {
        // Round robin spreads consecutive control partitions over the instances, so a split job's parts
        // (on partitions 0, 1, 2, …) land on as many instances as there are (the default, range, gives an
        // instance a block of consecutive partitions: two parts of four on the first of two instances).
        c.set("partition.assignment.strategy", "roundrobin");
    }
    for (name, value) in k.client_properties() {
        c.set(name, value);
    }
    match role {
        Role::ControlConsumer => {
            c.set("group.id", &k.consumer_group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "earliest")
                .set("session.timeout.ms", k.session_timeout_ms.to_string());
            if let Some(id) = &k.group_instance_id {
                c.set("group.instance.id", id);
            }
        }
        Role::Transactional {
            id,
            max_message_bytes,
            ..
        } => {
            c.set("transactional.id", id)
                .set("enable.idempotence", "true")
                .set(
                    "transaction.timeout.ms",
                    k.transaction_timeout_ms.to_string(),
                )
                .set("message.timeout.ms", k.transaction_timeout_ms.to_string())
                .set("message.max.bytes", (max_message_bytes + 1024).to_string())
                .set("partitioner", "fnv1a_random")
                // Only failures matter to a transaction (its flush waits for every record either way): no
                // report, and no work on the polling thread, per record delivered.
                .set("delivery.report.only.error", "true");
        }
        Role::Reader { group } => {
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "earliest")
                .set("enable.partition.eof", "false");
        }
        Role::UncommittedWatermarks => {
            c.set("isolation.level", "read_uncommitted");
        }
        Role::CommandProducer => {
            c.set("partitioner", "murmur2_random")
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("message.timeout.ms", k.operation_timeout_ms.to_string());
        }
        Role::Admin => {}
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
    last: Mutex<HashMap<String, (Instant, u64)>>,
    last_error: Mutex<Option<String>>,
}

impl KafkaLogContext {
    /// The latest error librdkafka reported for this client (its own text: no configuration values).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("last error lock").clone()
    }

    /// Whether a line of this kind may be written now, and how many were suppressed since the last one.
    fn admit(&self, kind: &str) -> Option<u64> {
        let mut last = self.last.lock().expect("log rate lock");
        let now = Instant::now();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &ClientConfig, k: &str) -> Option<String> {
        c.get(k).map(str::to_string)
    }

    #[test]
    fn every_role_gets_the_security_properties_and_its_own_settings() {
        let mut cfg = Config::default();
        cfg.kafka
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        cfg.kafka.group_instance_id = Some("i-1".into());
        let roles = [
            Role::ControlConsumer,
            Role::Transactional {
                id: "p-j1",
                max_message_bytes: 2_000_000,
                batch_bytes: 1_000_000,
            },
            Role::Reader { group: "g-cli" },
            Role::UncommittedWatermarks,
            Role::CommandProducer,
            Role::Admin,
        ];
        for role in roles {
            let c = client_config(&cfg, role);
            assert_eq!(get(&c, "security.protocol").as_deref(), Some("SASL_SSL"));
            assert_eq!(
                get(&c, "bootstrap.servers").as_deref(),
                Some("127.0.0.1:9092")
            );
        }
        let c = client_config(&cfg, Role::ControlConsumer);
        assert_eq!(
            get(&c, "isolation.level").as_deref(),
            Some("read_committed")
        );
        assert_eq!(get(&c, "group.instance.id").as_deref(), Some("i-1"));
        assert_eq!(
            get(&c, "partition.assignment.strategy").as_deref(),
            Some("roundrobin")
        );
        assert_eq!(get(&c, "enable.auto.commit").as_deref(), Some("false"));
        let c = client_config(&cfg, roles[1]);
        assert_eq!(get(&c, "transactional.id").as_deref(), Some("p-j1"));
        assert_eq!(get(&c, "linger.ms").as_deref(), Some("100"));
        // Tuning properties win over the role's defaults; what the product relies on does not move.
        cfg.kafka.properties.insert("linger.ms".into(), "20".into());
        cfg.kafka
            .properties
            .insert("transactional.id".into(), "mine".into());
        cfg.kafka
            .properties
            .insert("isolation.level".into(), "read_uncommitted".into());
        let c = client_config(&cfg, roles[1]);
        assert_eq!(get(&c, "linger.ms").as_deref(), Some("20"));
        assert_eq!(get(&c, "transactional.id").as_deref(), Some("p-j1"));
        let c = client_config(&cfg, Role::ControlConsumer);
        assert_eq!(
            get(&c, "isolation.level").as_deref(),
            Some("read_committed")
        );
        let c = client_config(&cfg, roles[1]);
        assert_eq!(get(&c, "partitioner").as_deref(), Some("fnv1a_random"));
        assert_eq!(get(&c, "message.max.bytes").as_deref(), Some("2001024"));
        let c = client_config(&cfg, Role::UncommittedWatermarks);
        assert_eq!(
            get(&c, "isolation.level").as_deref(),
            Some("read_uncommitted")
        );
        let c = client_config(&cfg, Role::CommandProducer);
        assert_eq!(get(&c, "partitioner").as_deref(), Some("murmur2_random"));
    }

    #[test]
    fn error_names_are_librdkafkas() {
        assert_eq!(
            error_name(RDKafkaErrorCode::MessageSizeTooLarge),
            "MSG_SIZE_TOO_LARGE"
        );
        assert_eq!(error_name(RDKafkaErrorCode::State), "_STATE");
    }
}
