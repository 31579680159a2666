//! Every Kafka record the daemon produces, built in one place: checkpoints, control requests and their
//! tombstones (state topic), results, dead letters, and events (SPEC §2, §5–§8). Pure: the sink sends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::lifecycle::Transition;
use super::{Checkpoint, ControlRequest, DeadLetter, RawEventJson, ResultRecord, ResultStatus};
use crate::command::JobSpec;
use crate::config::Config;
use crate::source::{Cursor, RawRow, SortingKey};
use crate::transform::Event;

/// Bytes allowed for a record's framing on top of key, value and headers when checking `max.message.bytes`
/// before producing (record batch header plus record overhead).
pub const RECORD_OVERHEAD_BYTES: usize = 128;

/// The value of a record header. Values every record of a batch shares (tenant, environment) are shared, and
/// a header equal to the record's key refers to it, so an event's headers allocate nothing of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Text(String),
    Shared(Arc<str>),
    /// The record's key.
    Key,
}

impl HeaderValue {
    /// The value's bytes; `key` is the record's key.
    pub fn bytes<'a>(&'a self, key: &'a [u8]) -> &'a [u8] {
        match self {
            HeaderValue::Text(s) => s.as_bytes(),
            HeaderValue::Shared(s) => s.as_bytes(),
            HeaderValue::Key => key,
        }
    }
}

impl From<String> for HeaderValue {
    fn from(s: String) -> HeaderValue {
        HeaderValue::Text(s)
    }
}

/// One record of a transaction. `tag` is handed back when the broker refuses this record.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: Arc<str>,
    /// The partition, when the record must land on a given one (state records: [`state_partition`]);
    /// `None` lets the producer's partitioner (`fnv1a_random`) choose by key.
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, HeaderValue)>,
    /// Position of the row in its batch (0-based) for rows' records; `None` for records about the job.
    pub tag: Option<usize>,
}

impl OutRecord {
    /// Bytes this record needs on the wire, for the `max.message.bytes` check.
    pub fn wire_size(&self) -> usize {
        self.key.len()
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.bytes(&self.key).len() + 8)
                .sum::<usize>()
            + RECORD_OVERHEAD_BYTES
    }
}

/// The partition of the state topic a key lives on: librdkafka's `fnv1a` partitioner (FNV-1a 32-bit, absolute
/// value as Sarama takes it, modulo the partition count), so the state records of a job always land on one
/// partition that anyone can compute, including for state topics written before records named their partition.
pub fn state_partition(key: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0x811C_9DC5_u32 as i32;
    for b in key.as_bytes() {
        h ^= i32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    if h < 0 {
        h = h.wrapping_neg();
    }
    ((h as u32) % partitions.max(1) as u32) as i32
}

/// The `max.message.bytes` of the output topic (events) and of the dead-letter topic, bytes: the configured
/// limit, or the broker's where it is smaller, read at start, at every job start and whenever the broker refuses
/// records for their size (an operator changed the topic under the running daemon; a limit raised again is
/// followed up to the configured one). Rows whose event exceeds the output limit are dead-lettered before
/// producing; dead letters are cut to fit theirs (SPEC §5, §8).
#[derive(Debug)]
pub struct TopicLimits {
    configured: (usize, usize),
    event: AtomicUsize,
    dead_letter: AtomicUsize,
}

impl TopicLimits {
    /// The configured limits, `event` and `dead_letter` bytes.
    pub fn new(event: usize, dead_letter: usize) -> TopicLimits {
        TopicLimits {
            configured: (event, dead_letter),
            event: AtomicUsize::new(event),
            dead_letter: AtomicUsize::new(dead_letter),
        }
    }

    /// The output topic's limit.
    pub fn event_bytes(&self) -> usize {
        self.event.load(Ordering::Relaxed)
    }

    /// The dead-letter topic's limit.
    pub fn dead_letter_bytes(&self) -> usize {
        self.dead_letter.load(Ordering::Relaxed)
    }

    /// Takes the broker's limits as read now (`None`: not known, the limit stays): each limit becomes the
    /// smaller of the configured one and the broker's. True when one became smaller.
    pub fn follow_broker(&self, event: Option<usize>, dead_letter: Option<usize>) -> bool {
        let set = |current: &AtomicUsize, configured: usize, broker: Option<usize>| {
            broker.is_some_and(|b| {
                let before = current.swap(configured.min(b), Ordering::Relaxed);
                configured.min(b) < before
            })
        };
        let e = set(&self.event, self.configured.0, event);
        let d = set(&self.dead_letter, self.configured.1, dead_letter);
        e || d
    }
}

/// Topic names, shared cheaply by every record.
#[derive(Debug, Clone, PartialEq)]
pub struct Topics {
    pub commands: Arc<str>,
    pub output: Arc<str>,
    pub state: Arc<str>,
    pub results: Arc<str>,
    pub dlq: Arc<str>,
}

impl Topics {
    /// From configuration.
    pub fn of(cfg: &Config) -> Topics {
        let t = &cfg.topics;
        Topics {
            commands: t.commands.name.as_str().into(),
            output: t.output.name.as_str().into(),
            state: t.state.name.as_str().into(),
            results: t.results.name.as_str().into(),
            dlq: t.dlq.name.as_str().into(),
        }
    }
}

/// Builds the records of one daemon: topic names, the state topic's partition count, the table's sorting key
/// (cursors in results are named by it), and the dead-letter topic's limits.
#[derive(Debug, Clone)]
pub struct Records {
    pub topics: Topics,
    /// Partitions of the state topic (as read from the broker).
    pub state_partitions: i32,
    pub sorting_key: SortingKey,
    /// `max.message.bytes` of the output and dead-letter topics as the daemon knows them (shared by every
    /// job and lowered when the broker shows smaller ones).
    pub limits: Arc<TopicLimits>,
    /// `processing.dlq_max_payload_bytes`: the first cut of a payload that makes a dead letter too large.
    pub dead_letter_payload_bytes: usize,
    /// This daemon instance's id, named in every result record (SPEC §5a).
    pub instance: String,
    /// Partitions of the control topic (as read from the broker at start; the configured count until then),
    /// over which a split job's parts' commands are spread.
    pub command_partitions: i32,
}

impl Records {
    /// The builder for this configuration, `state_partitions` and `sorting_key` as found at start, and this
    /// instance's id.
    pub fn new(
        cfg: &Config,
        state_partitions: i32,
        sorting_key: SortingKey,
        instance: String,
    ) -> Records {
        Records {
            topics: Topics::of(cfg),
            state_partitions,
            sorting_key,
            limits: Arc::new(TopicLimits::new(
                cfg.topics.output.max_message_bytes as usize,
                cfg.topics.dlq.max_message_bytes as usize,
            )),
            dead_letter_payload_bytes: cfg.processing.dlq_max_payload_bytes,
            instance,
            command_partitions: cfg.topics.commands.partitions,
        }
    }

    fn state(&self, key: String, value: Option<Vec<u8>>) -> OutRecord {
        OutRecord {
            topic: self.topics.state.clone(),
            partition: Some(state_partition(&key, self.state_partitions)),
            key: key.into_bytes(),
            value,
            headers: Vec::new(),
            tag: None,
        }
    }

    /// The state partition of a job's checkpoint (and of its control requests' keys' job).
    pub fn state_partition_of(&self, job_id: &str) -> i32 {
        state_partition(job_id, self.state_partitions)
    }

    /// A job's checkpoint, keyed by job id (SPEC §5).
    pub fn checkpoint(&self, cp: &Checkpoint) -> OutRecord {
        self.state(cp.job_id.clone(), Some(cp.encode()))
    }

    /// A control request, keyed `<job_id>/control/<request_id>`, on its job's state partition.
    pub fn control_request(&self, req: &ControlRequest) -> OutRecord {
        let mut r = self.state(super::control_key(req), Some(req.encode()));
        r.partition = Some(self.state_partition_of(&req.job_id));
        r
    }

    /// A tombstone for a honoured control request's key (on its job's state partition).
    pub fn tombstone(&self, job_id: &str, key: &str) -> OutRecord {
        let mut r = self.state(key.to_string(), None);
        r.partition = Some(self.state_partition_of(job_id));
        r
    }

    /// A result record, keyed by job id, with a `status` header, naming this instance.
    pub fn result(&self, r: &ResultRecord) -> OutRecord {
        let mut value = r.clone();
        value.instance = Some(self.instance.clone());
        OutRecord {
            topic: self.topics.results.clone(),
            partition: None,
            key: r.job_id.clone().into_bytes(),
            value: Some(value.to_json()),
            headers: vec![("status", r.status.as_str().to_string().into())],
            tag: None,
        }
    }

    /// The command of a split job's `k`-th part `spec`, keyed by the part's job id, on control partition
    /// `k mod command_partitions`: consecutive parts land on consecutive partitions, so the instances that
    /// share the control topic share the parts (SPEC §5a).
    pub fn part_command(&self, spec: &JobSpec, k: usize) -> OutRecord {
        OutRecord {
            topic: self.topics.commands.clone(),
            partition: Some((k % self.command_partitions.max(1) as usize) as i32),
            key: spec.job_id.clone().into_bytes(),
            value: Some(super::split::part_command(spec)),
            headers: Vec::new(),
            tag: None,
        }
    }

    /// The cursor as results show it: a JSON object named by the sorting-key columns (SPEC §6).
    pub fn cursor_json(&self, c: &Cursor) -> serde_json::Map<String, serde_json::Value> {
        match self.sorting_key.cursor_json(c) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    /// A result about a job's state (counters, cursor, times) with `status`.
    pub fn job_result(&self, cp: &Checkpoint, status: ResultStatus, at_ms: i64) -> ResultRecord {
        let cursor = cp.cursor.as_ref().map(|c| self.cursor_json(c));
        ResultRecord::of_checkpoint(cp, status, cursor, at_ms)
    }

    /// The records of a transition: tombstones for the honoured control requests, then the next checkpoint
    /// (on the same partition, so a reader that sees the checkpoint has seen the tombstones), then its results.
    pub fn transition(&self, t: &Transition, at_ms: i64) -> Vec<OutRecord> {
        let mut out = Vec::with_capacity(1 + t.results.len() + t.honoured.len());
        for key in &t.honoured {
            out.push(self.tombstone(&t.next.job_id, key));
        }
        out.push(self.checkpoint(&t.next));
        for status in &t.results {
            out.push(self.result(&self.job_result(&t.next, *status, at_ms)));
        }
        out
    }

    /// The event of a row, keyed `tenant_id:external_customer_id` with the four Flexprice headers in their
    /// order (SPEC §7, as [`Event::headers`] names them): `tenant_id`, `environment_id`, `partition_key` (the
    /// key, or the tenant alone when the customer is empty) and `_watermill_message_uuid` (the event id).
    /// `tag` is the row's position in its batch.
    pub fn event(
        &self,
        ev: Event,
        tenant: &Arc<str>,
        environment: &Arc<str>,
        tag: usize,
    ) -> OutRecord {
        let partition_key = if ev.external_customer_id.is_empty() {
            HeaderValue::Shared(tenant.clone())
        } else {
            HeaderValue::Key
        };
        OutRecord {
            topic: self.topics.output.clone(),
            partition: None,
            key: ev.key(tenant).into_bytes(),
            headers: vec![
                ("tenant_id", HeaderValue::Shared(tenant.clone())),
                ("environment_id", HeaderValue::Shared(environment.clone())),
                ("partition_key", partition_key),
                ("_watermill_message_uuid", HeaderValue::Text(ev.id)),
            ],
            value: Some(ev.json.into_bytes()),
            tag: Some(tag),
        }
    }

    /// A row's dead letter, keyed by the raw row's id with `job_id`, `stage` and `reason` headers (SPEC §8).
    /// The payload is cut (halving from `dead_letter_payload_bytes`) while the record would exceed the
    /// dead-letter topic's `max.message.bytes`.
    pub fn dead_letter(&self, mut dl: DeadLetter, row: &RawRow) -> OutRecord {
        let headers = vec![
            ("job_id", dl.job_id.clone().into()),
            ("stage", dl.stage.as_str().to_string().into()),
            ("reason", dl.reason.clone().into()),
        ];
        let mut value = dl.to_json();
        let mut max_payload = self.dead_letter_payload_bytes;
        while value.len() + RECORD_OVERHEAD_BYTES + 512 > self.limits.dead_letter_bytes()
            && max_payload > 0
        {
            dl.raw_event = RawEventJson::of(row, max_payload);
            value = dl.to_json();
            max_payload /= 2;
        }
        OutRecord {
            topic: self.topics.dlq.clone(),
            partition: None,
            key: row.id.clone(),
            value: Some(value),
            headers,
            tag: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::dead_letter::RowPlace;
    use crate::job::lifecycle;
    use crate::job::tests::checkpoint;
    use crate::job::{StateRecord, decode_state};

    #[test]
    fn limits_follow_the_broker_below_the_configured_ones() {
        let l = TopicLimits::new(1000, 500);
        // (broker's limits) → (limits, whether one became smaller)
        let steps = [
            ((Some(2000), Some(500)), (1000, 500), false),
            ((Some(800), Some(900)), (800, 500), true),
            ((None, Some(100)), (800, 100), true),
            // Raised again by the operator: followed, up to the configured limits (it stayed lowered until a
            // restart, dead-lettering every valid event of the later jobs).
            ((Some(300_000), Some(300_000)), (1000, 500), false),
            ((None, None), (1000, 500), false),
        ];
        for ((event, dead_letter), want, lowered) in steps {
            assert_eq!(
                l.follow_broker(event, dead_letter),
                lowered,
                "{event:?} {dead_letter:?}"
            );
            assert_eq!((l.event_bytes(), l.dead_letter_bytes()), want);
        }
    }

    fn records() -> Records {
        let mut cfg = Config::default();
        cfg.topics.dlq.max_message_bytes = 4096;
        let key = SortingKey::new(
            "raw_events",
            &[
                "external_customer_id".into(),
                "timestamp".into(),
                "id".into(),
            ],
        )
        .unwrap();
        Records::new(&cfg, 6, key, "host-1".into())
    }

    #[test]
    fn state_partition_is_fnv1a_as_librdkafka_computes_it() {
        // Values of librdkafka's rd_fnv1a unit test (rdfnv1a.c) modulo the partition count.
        let cases = [
            ("kafka", 0x0d33_c4e1_u32),
            ("giberish123456789", 0x77a5_8295),
            ("1234", 0x023b_dd03),
            ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x65cb_d69c),
            ("", 0x7ee3_623b),
        ];
        for (key, hash) in cases {
            for n in [1, 3, 6, 7, 64] {
                assert_eq!(
                    state_partition(key, n) as u32,
                    hash % n as u32,
                    "{key:?} % {n}"
                );
            }
        }
        for key in ["j1", "backfill-2024-01-acme", "x/control/cmds-0-1"] {
            let p = state_partition(key, 6);
            assert!((0..6).contains(&p));
        }
    }

    #[test]
    fn a_transition_writes_checkpoint_results_and_tombstones_on_the_jobs_partition() {
        let r = records();
        let cp = checkpoint();
        let req = ControlRequest {
            request_id: "cmds-1-5".into(),
            job_id: cp.job_id.clone(),
            action: crate::command::ControlAction::Cancel,
            at_ms: 1,
        };
        let at = lifecycle::Stamp {
            now_ms: 10,
            instance: "host-1",
        };
        let t = lifecycle::honour(&cp, std::slice::from_ref(&req), at).unwrap();
        let out = r.transition(&t, 10);
        assert_eq!(out.len(), 3);
        let p = r.state_partition_of(&cp.job_id);
        assert_eq!(out[0].key, b"j1/control/cmds-1-5");
        assert_eq!((out[0].value.as_ref(), out[0].partition), (None, Some(p)));
        assert_eq!(out[1].partition, Some(p));
        assert_eq!(out[1].key, b"j1");
        assert!(matches!(
            decode_state(out[1].value.as_ref().unwrap()).unwrap(),
            StateRecord::Checkpoint(c) if c.status == crate::job::JobStatus::Cancelled
        ));
        assert_eq!(&*out[2].topic, "raw_events_reprocess_results");
        assert_eq!(out[2].headers, [("status", "cancelled".to_string().into())]);
        let json: serde_json::Value =
            serde_json::from_slice(out[2].value.as_ref().unwrap()).unwrap();
        assert_eq!(json["cursor"]["id"], "id-9");
        assert_eq!(json["instance"], "host-1");
        assert_eq!(r.control_request(&req).partition, Some(p));
    }

    #[test]
    fn event_headers_are_the_flexprice_ones() {
        let r = records();
        let (tenant, env): (Arc<str>, Arc<str>) = ("t1".into(), "e1".into());
        let payloads: [&[u8]; 2] = [
            br#"{"id":"e1","orgId":"o","methodName":"m","providerName":"p","createdAt":"2024-01-01T00:00:00Z"}"#,
            br#"{"id":"e2","orgId":" ","methodName":"m","providerName":"p","createdAt":"2024-01-01T00:00:00Z"}"#,
        ];
        for payload in payloads {
            let crate::transform::Outcome::Event(ev) =
                crate::transform::transform(payload, "t1", "e1")
            else {
                panic!()
            };
            let want = ev.headers("t1", "e1");
            let rec = r.event(ev.clone(), &tenant, &env, 0);
            let got: Vec<(&str, &[u8])> = rec
                .headers
                .iter()
                .map(|(k, v)| (*k, v.bytes(&rec.key)))
                .collect();
            let want: Vec<(&str, &[u8])> = want.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
            assert_eq!(got, want);
            assert_eq!(rec.key, ev.key("t1").into_bytes());
        }
    }

    #[test]
    fn dead_letters_are_cut_to_fit_their_topic() {
        let r = records();
        let row = RawRow {
            id: b"r1".to_vec(),
            payload: vec![b'x'; 10_000],
            ..Default::default()
        };
        let place = RowPlace {
            job_id: "j",
            batch: 2,
            batch_position: 3,
            at: "t",
        };
        let dl = DeadLetter::publish(
            &place,
            "too_large",
            "m".into(),
            RawEventJson::of(&row, usize::MAX),
        );
        let rec = r.dead_letter(dl, &row);
        assert!(rec.wire_size() <= 4096, "{}", rec.wire_size());
        assert_eq!(rec.key, b"r1");
        let json: serde_json::Value = serde_json::from_slice(rec.value.as_ref().unwrap()).unwrap();
        assert_eq!(json["raw_event"]["payload_truncated"], true);
        assert_eq!(json["batch_position"], 3);
        assert_eq!(
            rec.headers,
            [
                ("job_id", "j".to_string().into()),
                ("stage", "publish".to_string().into()),
                ("reason", "too_large".to_string().into())
            ]
        );
    }
}
