//! The CLI's Kafka clients: the command producer, `read_committed` readers of whole topics, the results of
//! one job, and the state topic's job table. Every client is configured by
//! [`client_config`] (so `-b`, `-X` and `kafka.properties` reach each one).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::job::ResultRecord;
use crate::kafka::{Role, client_config};
use crate::state::StateStore;

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
}

/// Produces a command on the control topic, keyed by the job id, with the `murmur2_random` partitioner
/// (SPEC §2).
pub async fn produce_command(
    cfg: &Config,
    command: &'static str,
    job_id: &str,
    value: &[u8],
) -> anyhow::Result<Sent> {
    let producer: FutureProducer = client_config(cfg, Role::CommandProducer)
        .create()
        .context("cannot create a Kafka producer")?;
    let topic = &cfg.topics.commands.name;
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(job_id).payload(value),
            cfg.kafka.operation_timeout(),
        )
        .await
        .map_err(|(e, _)| {
            anyhow::anyhow!(
                "cannot produce to control topic `{topic}` on {}: {e}",
                cfg.kafka.bootstrap_servers
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

/// The job table of the state topic, read to its end.
pub async fn load_state(cfg: &Config) -> anyhow::Result<StateStore> {
    let (store, _events) = StateStore::start(cfg).await?;
    store.sync(cfg.kafka.operation_timeout() * 2).await?;
    Ok(store)
}

/// A `read_committed` consumer assigned to every partition of one topic, with each partition's high
/// watermark when reading began.
pub struct Reader {
    pub topic: String,
    consumer: BaseConsumer,
    highs: HashMap<i32, i64>,
}

impl Reader {
    /// Reads `topic` from the beginning, or with `tail` from `high - tail` of each partition. Errors when the
    /// topic does not exist or its metadata or watermarks cannot be read.
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
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(m) = reader.poll(Duration::from_millis(200))?
            && let Some((r, v)) = result_of(&m, job_id)
            && wanted(&r)
        {
            return Ok(Some((r, v)));
        }
    }
    Ok(None)
}
