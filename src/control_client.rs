//! The client side of the control topic, shared by the operator CLI and the HTTP API: a command is
//! validated with the daemon's own rules ([`limits`], [`validation_origin`]), produced keyed by its job id
//! ([`CommandProducer`], SPEC §2, §3), and the daemon's verdict on that very command is read back from the
//! results topic ([`Reader`], [`Sent::answered_by`]: verdicts carry the command's topic, partition and offset,
//! SPEC §6). Every client is configured by [`client_config`], so `-b`, `-X` and `kafka.properties` reach each
//! one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;

use crate::command::{self, Command, CommandError, CommandOrigin, ControlAction, Limits};
use crate::config::{Config, is_id_char};
use crate::job::ResultRecord;
use crate::kafka::{Role, client_config};

/// The limits commands are validated against, from `processing` configuration (the daemon's own).
pub fn limits(cfg: &Config) -> Limits {
    Limits {
        default_batch_size: cfg.processing.default_batch_size,
        max_batch_size: cfg.processing.max_batch_size,
    }
}

/// The origin a command validated before sending is given (it has no partition and offset yet).
pub fn validation_origin(cfg: &Config) -> CommandOrigin {
    CommandOrigin {
        topic: cfg.topics.commands.name.clone(),
        partition: -1,
        offset: -1,
    }
}

/// Validates a command before it is sent, exactly as the daemon will ([`command::parse`] with the configured
/// limits, the time of now as the default `end_date`). Errors name the field and the problem.
pub fn validate(cfg: &Config, bytes: &[u8]) -> Result<Command, CommandError> {
    command::parse(
        bytes,
        &validation_origin(cfg),
        limits(cfg),
        command::now_ms(),
    )
}

/// The command JSON of a `cancel`, `pause` or `resume` of `job_id`, validated like the daemon does (a bad
/// job id is refused naming `job_id`).
pub fn control_command(
    cfg: &Config,
    action: ControlAction,
    job_id: &str,
) -> Result<Vec<u8>, CommandError> {
    let bytes = serde_json::to_vec(&serde_json::json!({"type": action.as_str(), "job_id": job_id}))
        .expect("JSON serializes");
    validate(cfg, &bytes)?;
    Ok(bytes)
}

/// A job id for a submission that names none: `<tenant>-<UTC yyyymmddThhmmssZ>-<6 hex>`, the tenant part
/// reduced to `[A-Za-z0-9._-]` and at most 100 characters (so the id is valid: SPEC §3).
pub fn generate_job_id(tenant: &str) -> String {
    let t: String = tenant
        .chars()
        .map(|c| if is_id_char(c) { c } else { '_' })
        .take(100)
        .collect();
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("a UTC time formats");
    let r: u32 = rand::random::<u32>() & 0xff_ffff;
    format!("{t}-{stamp}-{r:06x}")
}

/// Where a produced command landed: the first JSON line of `submit --json` and `cancel|pause|resume --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub job_id: String,
    /// The command's `type`: `reprocess`, `cancel`, `pause`, `resume`.
    pub command: &'static str,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Sent {
    /// Whether `r` is the daemon's answer to this command (answers carry the command's coordinates).
    pub fn answered_by(&self, r: &ResultRecord) -> bool {
        r.topic.as_deref() == Some(self.topic.as_str())
            && r.partition == Some(self.partition)
            && r.offset == Some(self.offset)
    }

    /// The command's coordinates as a command origin (`run_id` of the HTTP API is its derived id).
    pub fn origin(&self) -> CommandOrigin {
        CommandOrigin {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// A producer of commands on the control topic, keyed by job id, with the `murmur2_random` partitioner
/// (SPEC §2: Java and librdkafka clients agree on a job id's partition). Cheap to share: one per process.
pub struct CommandProducer {
    producer: FutureProducer,
    topic: String,
    bootstrap_servers: String,
    timeout: Duration,
}

impl CommandProducer {
    /// A producer for `cfg`'s control topic. Errors when librdkafka refuses the configuration.
    pub fn new(cfg: &Config) -> anyhow::Result<CommandProducer> {
        let producer: FutureProducer = client_config(cfg, Role::CommandProducer)
            .create()
            .context("cannot create a Kafka producer")?;
        Ok(CommandProducer {
            producer,
            topic: cfg.topics.commands.name.clone(),
            bootstrap_servers: cfg.kafka.bootstrap_servers.clone(),
            timeout: cfg.kafka.operation_timeout(),
        })
    }

    /// Produces one command (`command` is its `type`), waiting at most `kafka.operation_timeout_ms` for the
    /// broker's acknowledgement. Errors name the topic and the bootstrap servers.
    pub async fn send(
        &self,
        command: &'static str,
        job_id: &str,
        value: &[u8],
    ) -> anyhow::Result<Sent> {
        let topic = &self.topic;
        let delivery = self
            .producer
            .send(
                FutureRecord::to(topic).key(job_id).payload(value),
                self.timeout,
            )
            .await
            .map_err(|(e, _)| {
                anyhow::anyhow!(
                    "cannot produce to control topic `{topic}` on {}: {e}",
                    self.bootstrap_servers
                )
            })?;
        Ok(Sent {
            job_id: job_id.to_string(),
            command,
            topic: topic.clone(),
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }
}

/// Produces one command with a producer of its own (the CLI sends one command per run).
pub async fn produce_command(
    cfg: &Config,
    command: &'static str,
    job_id: &str,
    value: &[u8],
) -> anyhow::Result<Sent> {
    CommandProducer::new(cfg)?
        .send(command, job_id, value)
        .await
}

/// A `read_committed` consumer assigned to every partition of one topic, with each partition's high
/// watermark when reading began.
pub struct Reader {
    pub topic: String,
    consumer: BaseConsumer,
    highs: HashMap<i32, i64>,
}

impl Reader {
    /// Reads `topic` from the beginning, or with `tail` from `high - tail` of each partition (`Some(0)`: only
    /// what is written from now on). Errors when the topic does not exist or its metadata or watermarks
    /// cannot be read. Blocking: at most a few `kafka.operation_timeout_ms`.
    pub fn open(cfg: &Config, topic: &str, tail: Option<i64>) -> anyhow::Result<Reader> {
        let group = format!("{}-cli", cfg.kafka.consumer_group);
        let consumer: BaseConsumer = client_config(cfg, Role::Reader { group: &group })
            .create()
            .context("cannot create a Kafka consumer")?;
        let timeout = cfg.kafka.operation_timeout();
        let servers = &cfg.kafka.bootstrap_servers;
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("cannot read metadata of topic `{topic}` from {servers}"))?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            bail!("topic `{topic}` does not exist on {servers} (has the daemon started?)");
        }
        let mut tpl = TopicPartitionList::new();
        let mut highs = HashMap::new();
        for p in parts {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .with_context(|| format!("cannot read the end of `{topic}` partition {p}"))?;
            highs.insert(p, high);
            let start = match tail {
                Some(n) => Offset::Offset((high - n).max(low)),
                None => Offset::Beginning,
            };
            tpl.add_partition_offset(topic, p, start)?;
        }
        consumer.assign(&tpl)?;
        Ok(Reader {
            topic: topic.to_string(),
            consumer,
            highs,
        })
    }

    /// Whether every partition has been read up to the high watermark it had when reading began.
    pub fn caught_up(&self) -> bool {
        let Ok(pos) = self.consumer.position() else {
            return false;
        };
        self.highs.iter().all(|(p, high)| {
            *high == 0
                || matches!(
                    pos.find_partition(&self.topic, *p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= *high
                )
        })
    }

    /// Whether the read began at the start of every partition although `tail` was asked for (every partition
    /// is shorter than the tail).
    pub fn whole_topic(&self, tail: i64) -> bool {
        self.highs.values().all(|h| *h <= tail)
    }

    /// The next record, waiting at most `wait`; `None` when there was none.
    pub fn poll(&self, wait: Duration) -> anyhow::Result<Option<BorrowedMessage<'_>>> {
        match self.consumer.poll(wait) {
            None => Ok(None),
            Some(m) => {
                Ok(Some(m.with_context(|| {
                    format!("cannot read `{}`", self.topic)
                })?))
            }
        }
    }

    /// Reads on (a results topic) until a result record of `job_id` satisfies `wanted`, or `deadline` passes
    /// (`None`).
    pub fn wait_for(
        &self,
        job_id: &str,
        deadline: Instant,
        wanted: impl Fn(&ResultRecord) -> bool,
    ) -> anyhow::Result<Option<(ResultRecord, Value)>> {
        while Instant::now() < deadline {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            if let Some(m) = self.poll(wait)?
                && let Some((r, v)) = result_of(&m, job_id)
                && wanted(&r)
            {
                return Ok(Some((r, v)));
            }
        }
        Ok(None)
    }
}

/// The result record of `job_id` in `m`, with its JSON value as written; `None` for another job's record or
/// one that is not a result record.
pub fn result_of(m: &BorrowedMessage<'_>, job_id: &str) -> Option<(ResultRecord, Value)> {
    if m.key() != Some(job_id.as_bytes()) {
        return None;
    }
    let payload = m.payload().unwrap_or_default();
    let record = serde_json::from_slice::<ResultRecord>(payload).ok()?;
    let value = serde_json::from_slice::<Value>(payload).ok()?;
    Some((record, value))
}

/// Reads the job's records on the results topic (from the beginning) until one satisfies `wanted`, or
/// `timeout` passes (`None`).
pub fn wait_for_result(
    cfg: &Config,
    job_id: &str,
    timeout: Duration,
    wanted: impl Fn(&ResultRecord) -> bool,
) -> anyhow::Result<Option<(ResultRecord, Value)>> {
    let reader = Reader::open(cfg, &cfg.topics.results.name, None)?;
    reader.wait_for(job_id, Instant::now() + timeout, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ResultStatus;

    #[test]
    fn generated_job_ids_are_valid_and_distinct() {
        let a = generate_job_id("tenant/with space");
        let b = generate_job_id("tenant/with space");
        assert_ne!(a, b);
        assert!(a.starts_with("tenant_with_space-20"), "{a}");
        assert_eq!(a.len(), "tenant_with_space-".len() + 16 + 7, "{a}");
        assert!(a.chars().all(is_id_char) && a.len() <= 128, "{a}");
        assert!(generate_job_id(&"x".repeat(500)).len() <= 128);
    }

    #[test]
    fn a_verdict_answers_the_command_at_its_coordinates_only() {
        let sent = Sent {
            job_id: "j".into(),
            command: "reprocess",
            topic: "c".into(),
            partition: 2,
            offset: 41,
        };
        let at = |partition, offset| {
            ResultRecord::about_command(
                "j",
                ResultStatus::Duplicate,
                None,
                &CommandOrigin {
                    topic: "c".into(),
                    partition,
                    offset,
                },
                0,
            )
        };
        assert!(sent.answered_by(&at(2, 41)));
        assert!(
            !sent.answered_by(&at(2, 40)),
            "an earlier command's verdict"
        );
        assert!(!sent.answered_by(&at(1, 41)));
        assert!(!sent.answered_by(&ResultRecord::new("j", ResultStatus::Queued, 0)));
        assert_eq!(sent.origin().derived_job_id(), "c-2-41");
        assert_eq!(
            serde_json::to_value(&sent).unwrap(),
            serde_json::json!({"job_id": "j", "command": "reprocess", "topic": "c", "partition": 2, "offset": 41}),
            "the line `submit --json` prints"
        );
    }
}
