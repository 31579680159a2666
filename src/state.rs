//! The state topic, read continuously into a table of jobs (SPEC §5). Reading only: the sink writes.
//!
//! A background thread tails every partition of the compacted state topic from the beginning with
//! `isolation.level=read_committed`, decoding checkpoints and control requests; tombstones remove what their
//! key names.
//!
//! Two ways to wait for the end of the topic:
//! - [`StateStore::sync`]: every partition read up to its last stable offset (LSO) as it is now. Any open
//!   transaction holds the LSO back, so this never waits on a crashed instance's transaction, but what lies
//!   behind an open transaction is not read yet. Good for start-up and for the job table as a whole.
//! - [`StateStore::sync_partition`]: one partition read past its `read_uncommitted` high watermark taken now,
//!   i.e. every transaction open at that moment has ended (committed, aborted, or timed out by the broker).
//!   A job reads its checkpoint only this way, after fencing its previous producer, so no transaction of
//!   anyone can hide its latest checkpoint (a job's state records all live on one partition:
//!   [`crate::job::records::state_partition`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ConstantBuilder, Retryable};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

use crate::config::Config;
use crate::job::{Checkpoint, ControlRequest, StateKey, StateRecord, control_key, decode_state};
use crate::kafka::{KafkaLogContext, Role, client_config};

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
    /// Control requests by job id, then by state-topic key.
    controls: HashMap<String, BTreeMap<String, ControlRequest>>,
    /// Keys this process tombstoned (honoured requests) whose tombstone the tail has not read yet: a request
    /// record read meanwhile is already honoured.
    tombstoned: HashSet<String>,
    /// Next offset to read, per partition.
    positions: HashMap<i32, i64>,
}

impl Table {
    fn upsert(&mut self, cp: Checkpoint) -> bool {
        match self.checkpoints.get(&cp.job_id) {
            Some(old) if old.revision > cp.revision => false,
            _ => {
                self.checkpoints.insert(cp.job_id.clone(), cp);
                true
            }
        }
    }

    fn insert_control(&mut self, key: String, req: ControlRequest) -> bool {
        if self.tombstoned.contains(&key) {
            return false;
        }
        self.controls
            .entry(req.job_id.clone())
            .or_default()
            .insert(key, req);
        true
    }

    fn remove(&mut self, key: &str) {
        self.tombstoned.remove(key);
        match StateKey::parse(key) {
            StateKey::Checkpoint(job) => {
                self.checkpoints.remove(job);
            }
            StateKey::Control(job, _) => {
                if let Some(m) = self.controls.get_mut(job) {
                    m.remove(key);
                    if m.is_empty() {
                        self.controls.remove(job);
                    }
                }
            }
        }
    }

    /// The job's control requests not honoured yet, in the order they are honoured.
    fn pending(&self, job_id: &str) -> Vec<ControlRequest> {
        let handled = self
            .checkpoints
            .get(job_id)
            .and_then(|cp| cp.control_handled.as_deref());
        let mut out: Vec<ControlRequest> = self
            .controls
            .get(job_id)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|r| Some(r.request_id.as_str()) != handled)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.order().cmp(&b.order()));
        out
    }

    fn advance(&mut self, partition: i32, next: i64) {
        let cur = self.positions.entry(partition).or_insert(0);
        if next > *cur {
            *cur = next;
        }
    }
}

struct Inner {
    topic: String,
    partitions: Vec<i32>,
    consumer: BaseConsumer<KafkaLogContext>,
    /// `read_uncommitted` watermarks: the true end of a partition.
    watermarks: BaseConsumer<KafkaLogContext>,
    table: Mutex<Table>,
    progressed: Notify,
    /// The waits of [`StateStore::sync_partition`] calls (for `/readyz` detail): since when, by (partition,
    /// waiter), so that several jobs waiting on one partition each keep theirs.
    waits: Mutex<BTreeMap<(i32, u64), Instant>>,
    /// The next waiter's number.
    waiters: std::sync::atomic::AtomicU64,
}

/// One [`StateStore::sync_partition`] call's entry in the waits, removed when the call ends or its future is
/// dropped (a caller's timeout or `select!`), so `/readyz` never shows a wait nobody waits any more.
struct Waiting<'a> {
    inner: &'a Inner,
    key: (i32, u64),
}

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner, partition: i32, since: Instant) -> Waiting<'a> {
        let n = inner
            .waiters
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = (partition, n);
        inner.waits.lock().expect("waits lock").insert(key, since);
        Waiting { inner, key }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner
            .waits
            .lock()
            .expect("waits lock")
            .remove(&self.key);
    }
}

/// Per partition, the longest of `waits` in seconds at `now`.
fn longest_waits(waits: &BTreeMap<(i32, u64), Instant>, now: Instant) -> Vec<(i32, u64)> {
    let mut out: BTreeMap<i32, u64> = BTreeMap::new();
    for ((partition, _), since) in waits {
        let secs = now.saturating_duration_since(*since).as_secs();
        let e = out.entry(*partition).or_default();
        *e = (*e).max(secs);
    }
    out.into_iter().collect()
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
        let group = format!("{}-state-reader", cfg.kafka.consumer_group);
        let consumer: BaseConsumer<KafkaLogContext> =
            client_config(cfg, Role::Reader { group: &group })
                .create_with_context(KafkaLogContext::default())
                .map_err(kerr)?;
        let watermarks: BaseConsumer<KafkaLogContext> =
            client_config(cfg, Role::UncommittedWatermarks)
                .create_with_context(KafkaLogContext::default())
                .map_err(kerr)?;
        let timeout = cfg.kafka.operation_timeout();
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
            watermarks,
            table: Mutex::new(Table::default()),
            progressed: Notify::new(),
            waits: Mutex::new(BTreeMap::new()),
            waiters: Default::default(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let tail = inner.clone();
        std::thread::Builder::new()
            .name("state-tail".into())
            .spawn(move || tail_loop(tail, tx))
            .expect("spawn state tail thread");
        Ok((StateStore { inner }, rx))
    }

    /// The number of partitions of the state topic.
    pub fn partition_count(&self) -> i32 {
        self.inner.partitions.len() as i32
    }

    /// The end of each of `partitions` under the given reader, retried while the partition has no leader
    /// (right after topic creation or a broker restart) until `deadline`.
    async fn ends(
        &self,
        partitions: Vec<i32>,
        uncommitted: bool,
        deadline: Instant,
    ) -> Result<HashMap<i32, i64>, StateError> {
        let fetch = || {
            let inner = self.inner.clone();
            let parts = partitions.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let c = if uncommitted {
                        &inner.watermarks
                    } else {
                        &inner.consumer
                    };
                    let mut t = HashMap::new();
                    for p in parts {
                        let (_, high) =
                            c.fetch_watermarks(&inner.topic, p, Duration::from_secs(10))?;
                        t.insert(p, high);
                    }
                    Ok::<_, rdkafka::error::KafkaError>(t)
                })
                .await
                .expect("watermark task does not panic")
            }
        };
        fetch
            .retry(
                ConstantBuilder::default()
                    .with_delay(Duration::from_millis(300))
                    .without_max_times(),
            )
            .sleep(tokio::time::sleep)
            .when(|_| Instant::now() < deadline)
            .notify(|e, _| debug!(error = %e, "state topic end not known yet; retrying"))
            .await
            .map_err(|e| StateError::Kafka {
                topic: self.inner.topic.clone(),
                error: e.to_string(),
            })
    }

    /// Waits until the tail has read every partition in `targets` up to its offset, or `deadline` passes
    /// (`false`).
    async fn reach(&self, targets: &HashMap<i32, i64>, deadline: Instant) -> bool {
        loop {
            let notified = self.inner.progressed.notified();
            {
                let table = self.inner.table.lock().expect("state table lock");
                let done = targets.iter().all(|(p, high)| {
                    *high <= 0 || table.positions.get(p).copied().unwrap_or(0) >= *high
                });
                if done {
                    return true;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Waits until every partition has been read up to its last stable offset as measured on entry.
    pub async fn sync(&self, timeout: Duration) -> Result<(), StateError> {
        let deadline = Instant::now() + timeout;
        let targets = self
            .ends(self.inner.partitions.clone(), false, deadline)
            .await?;
        if self.reach(&targets, deadline).await {
            Ok(())
        } else {
            Err(StateError::SyncTimeout {
                topic: self.inner.topic.clone(),
                secs: timeout.as_secs(),
            })
        }
    }

    /// Waits until `partition` has been read past its `read_uncommitted` high watermark as measured on entry:
    /// every record written before this call, in a transaction open or not, has been read (or skipped as
    /// aborted). An open transaction delays this until it ends; the broker aborts it at its transaction
    /// timeout at the latest. Logs (and shows in `/readyz`) every 10 s while waiting; gives up only when
    /// `timeout` passes ([`StateError::SyncTimeout`]).
    pub async fn sync_partition(
        &self,
        partition: i32,
        timeout: Duration,
    ) -> Result<(), StateError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let targets = self.ends(vec![partition], true, deadline).await?;
        let target = targets.get(&partition).copied().unwrap_or(0);
        if self
            .reach(&targets, deadline.min(started + Duration::from_secs(2)))
            .await
        {
            return Ok(());
        }
        let waiting = Waiting::new(&self.inner, partition, started);
        let reached = loop {
            let position = self.position(partition);
            warn!(
                topic = %self.inner.topic,
                partition,
                position,
                target,
                waited_secs = started.elapsed().as_secs(),
                "waiting for the state topic: an open transaction holds back the end of the partition \
                 (it ends when its producer commits or aborts, or at its transaction timeout)"
            );
            let step = (Instant::now() + Duration::from_secs(10)).min(deadline);
            if self.reach(&targets, step).await {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
        };
        drop(waiting);
        if reached {
            tracing::info!(
                partition,
                waited_secs = started.elapsed().as_secs(),
                "state topic partition read to its end"
            );
            Ok(())
        } else {
            Err(StateError::SyncTimeout {
                topic: self.inner.topic.clone(),
                secs: timeout.as_secs(),
            })
        }
    }

    /// Partitions [`StateStore::sync_partition`] is waiting on, with the longest wait on each so far in
    /// seconds.
    pub fn waits(&self) -> Vec<(i32, u64)> {
        longest_waits(
            &self.inner.waits.lock().expect("waits lock"),
            Instant::now(),
        )
    }

    /// The next offset the tail reads on `partition`.
    pub fn position(&self, partition: i32) -> i64 {
        let table = self.inner.table.lock().expect("state table lock");
        table.positions.get(&partition).copied().unwrap_or(0)
    }

    /// The latest checkpoint of a job.
    pub fn checkpoint(&self, job_id: &str) -> Option<Checkpoint> {
        let table = self.inner.table.lock().expect("state table lock");
        table.checkpoints.get(job_id).cloned()
    }

    /// A job's control requests not honoured yet, in the order they are honoured.
    pub fn pending(&self, job_id: &str) -> Vec<ControlRequest> {
        self.inner
            .table
            .lock()
            .expect("state table lock")
            .pending(job_id)
    }

    /// A job's latest checkpoint with its pending control requests.
    pub fn lookup(&self, job_id: &str) -> Option<(Checkpoint, Vec<ControlRequest>)> {
        let table = self.inner.table.lock().expect("state table lock");
        let cp = table.checkpoints.get(job_id)?.clone();
        Some((cp, table.pending(job_id)))
    }

    /// Every job's latest checkpoint.
    pub fn jobs(&self) -> Vec<Checkpoint> {
        let table = self.inner.table.lock().expect("state table lock");
        table.checkpoints.values().cloned().collect()
    }

    /// Records what this process has just committed: a checkpoint and the control requests it honoured
    /// (tombstoned), so that readers see them before the tail does. An older revision than the table's is
    /// ignored.
    pub fn record_committed(&self, cp: &Checkpoint, honoured: &[String]) {
        let mut table = self.inner.table.lock().expect("state table lock");
        for key in honoured {
            table.remove(key);
            table.tombstoned.insert(key.clone());
        }
        table.upsert(cp.clone());
    }

    /// Records a control request this process has just committed.
    pub fn record_control(&self, req: &ControlRequest) {
        let mut table = self.inner.table.lock().expect("state table lock");
        table.insert_control(control_key(req), req.clone());
    }
}

/// Applies one record of the state topic to the table; the event to report, if any.
fn apply(
    table: &mut Table,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    partition: i32,
    offset: i64,
) -> Option<StateEvent> {
    let key = key.map(|k| String::from_utf8_lossy(k).into_owned());
    match (payload, key) {
        // A tombstone: of a honoured control request, or one an operator wrote for a job.
        (None, Some(k)) => {
            table.remove(&k);
            None
        }
        (None, None) => None,
        (Some(bytes), key) => match decode_state(bytes) {
            Ok(StateRecord::Checkpoint(cp)) => {
                let id = cp.job_id.clone();
                table.upsert(*cp).then_some(StateEvent::Checkpoint(id))
            }
            Ok(StateRecord::Control(req)) => {
                let key = key.unwrap_or_else(|| control_key(&req));
                table
                    .insert_control(key, req.clone())
                    .then_some(StateEvent::Control(req))
            }
            Err(e) => {
                warn!(partition, offset, error = %e, "unreadable state record skipped");
                None
            }
        },
    }
}

fn tail_loop(inner: Arc<Inner>, events: mpsc::UnboundedSender<StateEvent>) {
    let mut last_position_check = Instant::now();
    // The tail ends when every `StateStore` handle is gone.
    while Arc::strong_count(&inner) > 1 {
        match inner.consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                let partition = msg.partition();
                let event = {
                    let mut table = inner.table.lock().expect("state table lock");
                    let ev = apply(
                        &mut table,
                        msg.key(),
                        msg.payload(),
                        partition,
                        msg.offset(),
                    );
                    table.advance(partition, msg.offset() + 1);
                    ev
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
                        table.advance(e.partition(), o);
                    }
                }
                drop(table);
                inner.progressed.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::ControlAction;
    use crate::job::tests::checkpoint;

    fn req(n: i64, action: ControlAction) -> ControlRequest {
        ControlRequest {
            request_id: format!("c-0-{n}"),
            job_id: "j1".into(),
            action,
            at_ms: 100 - n,
        }
    }

    fn put(table: &mut Table, r: &ControlRequest) {
        let key = control_key(r);
        apply(table, Some(key.as_bytes()), Some(&r.encode()), 0, 0);
    }

    #[test]
    fn waits_on_one_partition_are_each_kept() {
        let now = Instant::now();
        let ago = |s| now - Duration::from_secs(s);
        let mut waits = BTreeMap::from([((2, 0), ago(30)), ((2, 1), ago(5)), ((4, 2), ago(1))]);
        assert_eq!(longest_waits(&waits, now), [(2, 30), (4, 1)]);
        // The first waiter on partition 2 is done: the second still waits (one entry per partition lost it).
        waits.remove(&(2, 0));
        assert_eq!(longest_waits(&waits, now), [(2, 5), (4, 1)]);
    }

    #[test]
    fn pending_requests_in_order_until_tombstoned() {
        let mut t = Table::default();
        let cp = checkpoint();
        apply(&mut t, Some(b"j1"), Some(&cp.encode()), 0, 0);
        let (a, b) = (req(1, ControlAction::Pause), req(2, ControlAction::Cancel));
        put(&mut t, &a);
        put(&mut t, &b);
        // Honoured in the order they were recorded (at_ms), not by key.
        assert_eq!(t.pending("j1"), [b.clone(), a.clone()]);
        apply(&mut t, Some(control_key(&b).as_bytes()), None, 0, 0);
        assert_eq!(t.pending("j1"), std::slice::from_ref(&a));
        // A checkpoint naming a request as handled hides it (requests of older versions have no tombstone).
        let mut handled = cp.clone();
        handled.revision += 1;
        handled.control_handled = Some(a.request_id.clone());
        apply(&mut t, Some(b"j1"), Some(&handled.encode()), 0, 0);
        assert!(t.pending("j1").is_empty());
        assert!(t.pending("other").is_empty());
    }

    #[test]
    fn a_request_tombstoned_here_stays_honoured_when_the_tail_reads_it_late() {
        let mut t = Table::default();
        let a = req(1, ControlAction::Pause);
        let key = control_key(&a);
        // Honoured and tombstoned locally before the tail read the request.
        t.remove(&key);
        t.tombstoned.insert(key.clone());
        put(&mut t, &a);
        assert!(t.pending("j1").is_empty());
        // The tail reads the tombstone: forgotten for good.
        apply(&mut t, Some(key.as_bytes()), None, 0, 0);
        assert!(t.tombstoned.is_empty());
    }

    #[test]
    fn older_revisions_and_garbage_do_not_replace_a_checkpoint() {
        let mut t = Table::default();
        let cp = checkpoint();
        assert!(matches!(
            apply(&mut t, Some(b"j1"), Some(&cp.encode()), 0, 0),
            Some(StateEvent::Checkpoint(_))
        ));
        let mut old = cp.clone();
        old.revision -= 1;
        assert!(apply(&mut t, Some(b"j1"), Some(&old.encode()), 0, 1).is_none());
        assert!(apply(&mut t, Some(b"j1"), Some(b"junk"), 0, 2).is_none());
        assert_eq!(t.checkpoints["j1"], cp);
        apply(&mut t, Some(b"j1"), None, 0, 3);
        assert!(t.checkpoints.is_empty());
    }
}
