//! The state topic, read continuously into a table of jobs (SPEC §5). Reading only: the sink writes.
//!
//! A background thread tails every partition of the compacted state topic from the beginning with
//! `isolation.level=read_committed`, decoding checkpoints and control requests. [`StateStore::sync`] waits
//! until the tail has reached the end of the topic as it is *now*; under `read_committed` that end is the
//! last stable offset (LSO), so a transaction left open by a crashed instance holds it back instead of
//! making start-up wait forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

use crate::config::Config;
use crate::job::{Checkpoint, ControlRequest, StateRecord, decode_state};
use crate::sink::{KafkaLogContext, client_config};

/// Something that changed in the state table, for the daemon to react to.
#[derive(Debug, Clone)]
pub enum StateEvent {
    /// A control request arrived (or was re-read).
    Control(ControlRequest),
    /// A job's checkpoint changed.
    Checkpoint(String),
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state topic `{topic}`: {error}")]
    Kafka { topic: String, error: String },
    #[error("state topic `{topic}` not read to its end within {secs} s")]
    SyncTimeout { topic: String, secs: u64 },
}

#[derive(Default)]
struct Table {
    checkpoints: HashMap<String, Checkpoint>,
    controls: HashMap<String, ControlRequest>,
    /// Next offset to read, per partition.
    positions: HashMap<i32, i64>,
}

struct Inner {
    topic: String,
    partitions: Vec<i32>,
    consumer: BaseConsumer<KafkaLogContext>,
    table: Mutex<Table>,
    progressed: Notify,
}

/// The job table built from the state topic. Cheap to clone.
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<Inner>,
}

impl StateStore {
    /// Starts tailing the state topic. Events about changed jobs and control requests are sent to the
    /// returned receiver. Errors when the topic's metadata cannot be read.
    pub async fn start(
        cfg: &Config,
    ) -> Result<(StateStore, mpsc::UnboundedReceiver<StateEvent>), StateError> {
        let topic = cfg.topics.state.name.clone();
        let kerr = |e: rdkafka::error::KafkaError| StateError::Kafka {
            topic: topic.clone(),
            error: e.to_string(),
        };
        let consumer: BaseConsumer<KafkaLogContext> = client_config(cfg)
            .set(
                "group.id",
                format!("{}-state-reader", cfg.kafka.consumer_group),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .create_with_context(KafkaLogContext::default())
            .map_err(kerr)?;
        let timeout = Duration::from_millis(cfg.kafka.operation_timeout_ms);
        let (consumer, partitions) = {
            let t = topic.clone();
            tokio::task::spawn_blocking(move || {
                let md = consumer.fetch_metadata(Some(&t), timeout)?;
                let parts: Vec<i32> = md
                    .topics()
                    .iter()
                    .flat_map(|mt| mt.partitions().iter().map(|p| p.id()))
                    .collect();
                let mut tpl = TopicPartitionList::new();
                for p in &parts {
                    tpl.add_partition_offset(&t, *p, Offset::Beginning)?;
                }
                consumer.assign(&tpl)?;
                Ok::<_, rdkafka::error::KafkaError>((consumer, parts))
            })
            .await
            .expect("state assign task does not panic")
            .map_err(kerr)?
        };
        if partitions.is_empty() {
            return Err(StateError::Kafka {
                topic,
                error: "topic has no partitions (does it exist?)".into(),
            });
        }
        let inner = Arc::new(Inner {
            topic,
            partitions,
            consumer,
            table: Mutex::new(Table::default()),
            progressed: Notify::new(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let tail = inner.clone();
        std::thread::Builder::new()
            .name("state-tail".into())
            .spawn(move || tail_loop(tail, tx))
            .expect("spawn state tail thread");
        Ok((StateStore { inner }, rx))
    }

    /// Waits until every partition has been read up to its last stable offset as measured on entry.
    pub async fn sync(&self, timeout: Duration) -> Result<(), StateError> {
        let deadline = Instant::now() + timeout;
        // Right after topic creation or a broker restart the partitions may have no leader for a moment:
        // such errors are retried until the deadline.
        let targets = loop {
            let inner = self.inner.clone();
            let r = tokio::task::spawn_blocking(move || {
                let mut t = HashMap::new();
                for p in &inner.partitions {
                    let (_, high) = inner.consumer.fetch_watermarks(
                        &inner.topic,
                        *p,
                        Duration::from_secs(10),
                    )?;
                    t.insert(*p, high);
                }
                Ok::<_, rdkafka::error::KafkaError>(t)
            })
            .await
            .expect("watermark task does not panic");
            match r {
                Ok(t) => break t,
                Err(e) if Instant::now() < deadline => {
                    debug!(error = %e, "state topic end not known yet; retrying");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => {
                    return Err(StateError::Kafka {
                        topic: self.inner.topic.clone(),
                        error: e.to_string(),
                    });
                }
            }
        };
        loop {
            let notified = self.inner.progressed.notified();
            {
                let table = self.inner.table.lock().expect("state table lock");
                let done = targets.iter().all(|(p, high)| {
                    *high <= 0 || table.positions.get(p).copied().unwrap_or(0) >= *high
                });
                if done {
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StateError::SyncTimeout {
                    topic: self.inner.topic.clone(),
                    secs: timeout.as_secs(),
                });
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// The latest checkpoint of a job.
    pub fn checkpoint(&self, job_id: &str) -> Option<Checkpoint> {
        self.inner
            .table
            .lock()
            .expect("state table lock")
            .checkpoints
            .get(job_id)
            .cloned()
    }

    /// The latest control request of a job.
    pub fn control(&self, job_id: &str) -> Option<ControlRequest> {
        self.inner
            .table
            .lock()
            .expect("state table lock")
            .controls
            .get(job_id)
            .cloned()
    }

    /// Every job's latest checkpoint.
    pub fn jobs(&self) -> Vec<Checkpoint> {
        self.inner
            .table
            .lock()
            .expect("state table lock")
            .checkpoints
            .values()
            .cloned()
            .collect()
    }

    /// Records a checkpoint this process has just committed, so that readers see it before the tail does.
    /// Ignored when the table already holds a later revision.
    pub fn record_committed(&self, cp: &Checkpoint) {
        let mut table = self.inner.table.lock().expect("state table lock");
        upsert(&mut table, cp.clone());
    }

    /// Records a control request this process has just committed.
    pub fn record_control(&self, req: &ControlRequest) {
        let mut table = self.inner.table.lock().expect("state table lock");
        table.controls.insert(req.job_id.clone(), req.clone());
    }
}

fn upsert(table: &mut Table, cp: Checkpoint) -> bool {
    match table.checkpoints.get(&cp.job_id) {
        Some(old) if old.revision > cp.revision => false,
        _ => {
            table.checkpoints.insert(cp.job_id.clone(), cp);
            true
        }
    }
}

fn tail_loop(inner: Arc<Inner>, events: mpsc::UnboundedSender<StateEvent>) {
    let mut last_position_check = Instant::now();
    // The tail ends when every `StateStore` handle is gone.
    while Arc::strong_count(&inner) > 1 {
        match inner.consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                let partition = msg.partition();
                let next = msg.offset() + 1;
                let event = match msg.payload() {
                    None => {
                        // A tombstone: this product writes none, but honour one written by an operator.
                        let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
                        let mut table = inner.table.lock().expect("state table lock");
                        if let Some(k) = key {
                            table.checkpoints.remove(&k);
                        }
                        table.positions.insert(partition, next);
                        None
                    }
                    Some(bytes) => match decode_state(bytes) {
                        Ok(StateRecord::Checkpoint(cp)) => {
                            let id = cp.job_id.clone();
                            let mut table = inner.table.lock().expect("state table lock");
                            let changed = upsert(&mut table, *cp);
                            table.positions.insert(partition, next);
                            changed.then_some(StateEvent::Checkpoint(id))
                        }
                        Ok(StateRecord::Control(req)) => {
                            let mut table = inner.table.lock().expect("state table lock");
                            table.controls.insert(req.job_id.clone(), req.clone());
                            table.positions.insert(partition, next);
                            Some(StateEvent::Control(req))
                        }
                        Err(e) => {
                            warn!(partition, offset = msg.offset(), error = %e, "unreadable state record skipped");
                            inner
                                .table
                                .lock()
                                .expect("state table lock")
                                .positions
                                .insert(partition, next);
                            None
                        }
                    },
                };
                if let Some(ev) = event {
                    let _ = events.send(ev);
                }
                inner.progressed.notify_waiters();
            }
            Some(Err(e)) => {
                debug!(error = %e, "state tail poll error");
            }
            None => {}
        }
        // Positions also move over transaction markers and aborted records, which are never handed to us.
        if last_position_check.elapsed() >= Duration::from_millis(50) {
            last_position_check = Instant::now();
            if let Ok(pos) = inner.consumer.position() {
                let mut table = inner.table.lock().expect("state table lock");
                for e in pos.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        let cur = table.positions.entry(e.partition()).or_insert(0);
                        if o > *cur {
                            *cur = o;
                        }
                    }
                }
                drop(table);
                inner.progressed.notify_waiters();
            }
        }
    }
}
