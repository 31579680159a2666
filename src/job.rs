//! A job's state and the records the daemon writes about it, with no I/O:
//! checkpoints and control requests (Avro, state topic, SPEC §5), results (JSON, SPEC §6) and dead letters
//! (JSON, SPEC §8). Schemas live in `schemas/avro/`.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::command::{ControlAction, JobSpec, format_ms};
use crate::source::{Cursor, RawRow};

/// Status of a job in its checkpoint (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// `completed`, `cancelled`: nothing can change the job any more. (`failed` can be resumed.)
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Cancelled)
    }

    /// Lowercase name, as in results and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

/// Why a control command cannot apply to a job in `status`, or `None` when it can (SPEC §3). Used by the daemon
/// to reject it and by the CLI to refuse it before sending.
pub fn control_problem(action: ControlAction, status: JobStatus) -> Option<String> {
    match (action, status) {
        (_, s) if s.is_final() => Some(format!("job is already {}", s.as_str())),
        (ControlAction::Pause, JobStatus::Paused) => Some("job is already paused".into()),
        (ControlAction::Pause, JobStatus::Failed) => {
            Some("job has failed; resume or cancel it".into())
        }
        (ControlAction::Resume, JobStatus::Running | JobStatus::Queued) => Some(format!(
            "job is {}; only a paused or failed job can be resumed",
            status.as_str()
        )),
        _ => None,
    }
}

/// Row counters of a job, with the original design's meaning (SPEC §6). Invariant:
/// `found = published + dropped + transformation_errors + failed + sampled_out`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub found: i64,
    pub published: i64,
    pub dropped: i64,
    pub transformation_errors: i64,
    pub failed: i64,
    pub sampled_out: i64,
    pub processed_batches: i64,
}

impl Counters {
    /// Adds `other` to `self`, field by field.
    pub fn add(&mut self, other: &Counters) {
        self.found += other.found;
        self.published += other.published;
        self.dropped += other.dropped;
        self.transformation_errors += other.transformation_errors;
        self.failed += other.failed;
        self.sampled_out += other.sampled_out;
        self.processed_batches += other.processed_batches;
    }

    /// Whether the invariant of SPEC §6 holds.
    pub fn balanced(&self) -> bool {
        self.found
            == self.published
                + self.dropped
                + self.transformation_errors
                + self.failed
                + self.sampled_out
    }

    /// published / found × 100 (100 when nothing was found).
    pub fn success_rate_percent(&self) -> f64 {
        if self.found == 0 {
            100.0
        } else {
            self.published as f64 * 100.0 / self.found as f64
        }
    }
}

/// The latest state of one job: the value of the state topic under key `job_id` (schema
/// `schemas/avro/checkpoint.avsc`). Times are UTC milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub job_id: String,
    /// Incremented by every write; the state table keeps the highest (our own writes are recorded before the
    /// tail reads them back).
    pub revision: i64,
    pub status: JobStatus,
    pub spec: JobSpec,
    pub cursor: Option<Cursor>,
    pub counters: Counters,
    pub estimated_total: Option<i64>,
    pub owner_partition: i32,
    pub command_offset: i64,
    pub accepted_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    pub error: Option<String>,
    pub control_handled: Option<String>,
}

/// A cancel/pause/resume on its way to the job's owner (schema `schemas/avro/control_request.avsc`),
/// stored under key [`control_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// `<topic>-<partition>-<offset>` of the command: unique, so the owner honours each request once.
    pub request_id: String,
    pub job_id: String,
    pub action: ControlAction,
    pub at_ms: i64,
}

/// State-topic key of a job's control request: `<job_id>/control` (`/` cannot occur in a job id).
pub fn control_key(job_id: &str) -> String {
    format!("{job_id}/control")
}

/// A decoded state-topic value.
#[derive(Debug, Clone, PartialEq)]
pub enum StateRecord {
    Checkpoint(Box<Checkpoint>),
    Control(ControlRequest),
}

/// Why a state-topic value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateDecodeError {
    #[error("not Avro single-object encoding (missing C3 01 marker)")]
    NotSingleObject,
    #[error("written with an unknown schema (fingerprint {0:016x}); upgrade the reprocessor")]
    UnknownSchema(u64),
    #[error("Avro decoding failed: {0}")]
    Avro(String),
}

struct KnownSchema {
    schema: Schema,
    fingerprint: [u8; 8],
}

impl KnownSchema {
    fn parse(text: &str) -> KnownSchema {
        let schema = Schema::parse_str(text).expect("schemas/avro/*.avsc are valid Avro schemas");
        let fp = schema.fingerprint::<Rabin>();
        let mut fingerprint = [0u8; 8];
        fingerprint.copy_from_slice(&fp.bytes[..8]);
        KnownSchema {
            schema,
            fingerprint,
        }
    }

    fn encode<T: Serialize>(&self, value: &T) -> Vec<u8> {
        let avro = apache_avro::to_value(value)
            .and_then(|v| v.resolve(&self.schema))
            .expect("records match their schema (checked by tests)");
        let body = apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|w| w.write_value_to_vec(avro))
            .expect("resolved values encode (checked by tests)");
        let mut out = Vec::with_capacity(body.len() + 10);
        out.extend_from_slice(&[0xC3, 0x01]);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&body);
        out
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, StateDecodeError> {
        let mut reader = body;
        let value = apache_avro::reader::datum::GenericDatumReader::builder(&self.schema)
            .build()
            .and_then(|r| r.read_value(&mut reader))
            .map_err(|e| StateDecodeError::Avro(e.to_string()))?;
        apache_avro::from_value(&value).map_err(|e| StateDecodeError::Avro(e.to_string()))
    }
}

/// Checkpoint schema v1 (`schemas/avro/checkpoint.avsc`, embedded at build time).
static CHECKPOINT_V1: LazyLock<KnownSchema> =
    LazyLock::new(|| KnownSchema::parse(include_str!("../schemas/avro/checkpoint.avsc")));
/// Control request schema v1 (`schemas/avro/control_request.avsc`).
static CONTROL_V1: LazyLock<KnownSchema> =
    LazyLock::new(|| KnownSchema::parse(include_str!("../schemas/avro/control_request.avsc")));

impl Checkpoint {
    /// Avro single-object encoding: `C3 01`, the schema's CRC-64-AVRO fingerprint (8 bytes, little-endian),
    /// then the binary datum.
    pub fn encode(&self) -> Vec<u8> {
        CHECKPOINT_V1.encode(self)
    }
}

impl ControlRequest {
    /// Avro single-object encoding, as [`Checkpoint::encode`].
    pub fn encode(&self) -> Vec<u8> {
        CONTROL_V1.encode(self)
    }
}

/// Decodes a state-topic value by its schema fingerprint. New schema versions are added here, each with the
/// conversion of its records into the current types, so older checkpoints stay readable.
pub fn decode_state(bytes: &[u8]) -> Result<StateRecord, StateDecodeError> {
    if bytes.len() < 10 || bytes[0] != 0xC3 || bytes[1] != 0x01 {
        return Err(StateDecodeError::NotSingleObject);
    }
    let fp: [u8; 8] = bytes[2..10].try_into().expect("8 bytes");
    let body = &bytes[10..];
    if fp == CHECKPOINT_V1.fingerprint {
        Ok(StateRecord::Checkpoint(Box::new(
            CHECKPOINT_V1.decode(body)?,
        )))
    } else if fp == CONTROL_V1.fingerprint {
        Ok(StateRecord::Control(CONTROL_V1.decode(body)?))
    } else {
        Err(StateDecodeError::UnknownSchema(u64::from_le_bytes(fp)))
    }
}

/// One record of the results topic (schema `schemas/avro/result.avsc`); absent members are omitted from the
/// JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub job_id: String,
    pub status: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<serde_json::Map<String, Json>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_events_found: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_events_published: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_events_dropped: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_transformation_errors: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_events_failed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_events_sampled_out: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_batches: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

impl ResultRecord {
    /// A record with only `job_id`, `status` and `at`.
    pub fn new(job_id: &str, status: &str, at_ms: i64) -> ResultRecord {
        ResultRecord {
            job_id: job_id.into(),
            status: status.into(),
            at: format_ms(at_ms),
            ..Default::default()
        }
    }

    /// A `rejected` or `duplicate` record, with the command's coordinates.
    pub fn about_command(
        job_id: &str,
        status: &str,
        reason: &str,
        origin: &crate::command::CommandOrigin,
        at_ms: i64,
    ) -> ResultRecord {
        ResultRecord {
            reason: Some(reason.into()),
            topic: Some(origin.topic.clone()),
            partition: Some(origin.partition),
            offset: Some(origin.offset),
            ..ResultRecord::new(job_id, status, at_ms)
        }
    }

    /// A record about a job's state: counters, cursor (rendered by the sorting key), start/end times.
    /// `status` is the result's status (it may differ from the checkpoint's, e.g. `progress`).
    pub fn of_checkpoint(
        cp: &Checkpoint,
        status: &str,
        cursor: Option<serde_json::Map<String, Json>>,
        at_ms: i64,
    ) -> ResultRecord {
        let c = &cp.counters;
        ResultRecord {
            cursor,
            dry_run: cp.spec.dry_run.then_some(true),
            error: cp.error.clone(),
            total_events_found: Some(c.found),
            total_events_published: Some(c.published),
            total_events_dropped: Some(c.dropped),
            total_transformation_errors: Some(c.transformation_errors),
            total_events_failed: Some(c.failed),
            total_events_sampled_out: Some(c.sampled_out),
            processed_batches: Some(c.processed_batches),
            success_rate_percent: Some((c.success_rate_percent() * 100.0).round() / 100.0),
            estimated_total: cp.estimated_total,
            started_at: cp.started_at_ms.map(format_ms),
            completed_at: cp.completed_at_ms.map(format_ms),
            ..ResultRecord::new(&cp.job_id, status, at_ms)
        }
    }

    /// The JSON value of the record.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a result record serializes")
    }
}

/// Stage of a dead letter (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeadLetterStage {
    Validation,
    Transformation,
    Publish,
}

impl DeadLetterStage {
    /// Lowercase name, as in the record and its `stage` header.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStage::Validation => "validation",
            DeadLetterStage::Transformation => "transformation",
            DeadLetterStage::Publish => "publish",
        }
    }
}

/// A selected row that was not published (schema `schemas/avro/dead_letter.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job_id: String,
    /// 0-based batch number within the job.
    pub batch: i64,
    /// 1-based position of the row in its batch.
    pub batch_position: i64,
    pub stage: DeadLetterStage,
    pub reason: String,
    pub message: String,
    pub raw_event: RawEventJson,
    pub at: String,
}

/// Every column of a raw row, as SPEC §8 writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEventJson {
    pub id: String,
    pub tenant_id: String,
    pub environment_id: String,
    pub external_customer_id: String,
    pub event_name: String,
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_truncated: Option<bool>,
    pub field1: Option<String>,
    pub field2: Option<String>,
    pub field3: Option<String>,
    pub field4: Option<String>,
    pub field5: Option<String>,
    pub field6: Option<String>,
    pub field7: Option<String>,
    pub field8: Option<String>,
    pub field9: Option<String>,
    pub field10: Option<String>,
    pub timestamp: String,
    pub ingested_at: String,
    pub version: String,
    pub sign: i32,
}

impl RawEventJson {
    /// Renders a row; the payload is cut to `max_payload_bytes` (at a character boundary when it is text)
    /// with `payload_truncated: true` when longer.
    pub fn of(row: &RawRow, max_payload_bytes: usize) -> RawEventJson {
        let truncated = row.payload.len() > max_payload_bytes;
        let (payload, payload_base64) = match std::str::from_utf8(&row.payload) {
            Ok(text) => {
                let mut end = text.len().min(max_payload_bytes);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                (Some(text[..end].to_string()), None)
            }
            Err(_) => {
                let end = row.payload.len().min(max_payload_bytes);
                (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(&row.payload[..end])),
                )
            }
        };
        RawEventJson {
            id: row.id.clone(),
            tenant_id: row.tenant_id.clone(),
            environment_id: row.environment_id.clone(),
            external_customer_id: row.external_customer_id.clone(),
            event_name: row.event_name.clone(),
            source: row.source.clone(),
            payload,
            payload_base64,
            payload_truncated: truncated.then_some(true),
            field1: row.field1.clone(),
            field2: row.field2.clone(),
            field3: row.field3.clone(),
            field4: row.field4.clone(),
            field5: row.field5.clone(),
            field6: row.field6.clone(),
            field7: row.field7.clone(),
            field8: row.field8.clone(),
            field9: row.field9.clone(),
            field10: row.field10.clone(),
            timestamp: format_ms(row.timestamp_ms),
            ingested_at: format_ms(row.ingested_at_ms),
            version: row.version.to_string(),
            sign: i32::from(row.sign),
        }
    }
}

impl DeadLetter {
    /// The JSON value of the record.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dead letter serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Mode;

    fn spec() -> JobSpec {
        JobSpec {
            job_id: "j1".into(),
            tenant_id: "t".into(),
            environment_id: "e".into(),
            external_customer_ids: vec!["c1".into()],
            event_names: vec![],
            event_ids: vec![],
            start_ms: 1,
            end_ms: 2,
            batch_size: 10,
            mode: Mode::Pending,
            dry_run: false,
            sample_rate: 0.5,
            max_events_per_second: Some(3.5),
        }
    }

    pub(crate) fn checkpoint() -> Checkpoint {
        Checkpoint {
            job_id: "j1".into(),
            revision: 4,
            status: JobStatus::Running,
            spec: spec(),
            cursor: Some(Cursor {
                external_customer_id: "c1".into(),
                timestamp_ms: 1_704_067_200_123,
                event_name: "ev".into(),
                id: "id-9".into(),
            }),
            counters: Counters {
                found: 10,
                published: 7,
                dropped: 1,
                transformation_errors: 1,
                failed: 1,
                sampled_out: 0,
                processed_batches: 2,
            },
            estimated_total: Some(100),
            owner_partition: 3,
            command_offset: 17,
            accepted_at_ms: 5,
            started_at_ms: Some(6),
            updated_at_ms: 7,
            completed_at_ms: None,
            error: None,
            control_handled: Some("cmds-1-2".into()),
        }
    }

    #[test]
    fn checkpoint_round_trips_through_single_object_encoding() {
        let cp = checkpoint();
        let bytes = cp.encode();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(
            decode_state(&bytes).unwrap(),
            StateRecord::Checkpoint(Box::new(cp.clone()))
        );
        let mut other = cp;
        other.cursor = None;
        other.status = JobStatus::Cancelled;
        other.spec.max_events_per_second = None;
        assert_eq!(
            decode_state(&other.encode()).unwrap(),
            StateRecord::Checkpoint(Box::new(other))
        );
    }

    #[test]
    fn control_request_round_trips_and_differs_from_checkpoint() {
        let r = ControlRequest {
            request_id: "c-0-1".into(),
            job_id: "j".into(),
            action: ControlAction::Resume,
            at_ms: 9,
        };
        assert_eq!(decode_state(&r.encode()).unwrap(), StateRecord::Control(r));
    }

    #[test]
    fn unknown_fingerprint_and_garbage_are_errors() {
        let mut bytes = checkpoint().encode();
        bytes[3] ^= 0xff;
        assert!(matches!(
            decode_state(&bytes),
            Err(StateDecodeError::UnknownSchema(_))
        ));
        assert!(matches!(
            decode_state(b"{\"json\":1}"),
            Err(StateDecodeError::NotSingleObject)
        ));
    }

    /// Converts a JSON record into an Avro value following the schema, so tests can check the JSON we write
    /// against the `.avsc` that documents it.
    fn json_to_avro(json: &Json, schema: &Schema) -> apache_avro::types::Value {
        use apache_avro::types::Value as V;
        match (schema, json) {
            (Schema::Union(u), Json::Null) if u.variants().contains(&Schema::Null) => {
                V::Union(0, Box::new(V::Null))
            }
            (Schema::Union(u), j) => {
                let (i, s) = u
                    .variants()
                    .iter()
                    .enumerate()
                    .find(|(_, s)| **s != Schema::Null)
                    .unwrap();
                V::Union(i as u32, Box::new(json_to_avro(j, s)))
            }
            (Schema::Record(r), Json::Object(m)) => V::Record(
                r.fields
                    .iter()
                    .map(|f| {
                        let j = m.get(&f.name).cloned().unwrap_or(Json::Null);
                        (f.name.clone(), json_to_avro(&j, &f.schema))
                    })
                    .collect(),
            ),
            (Schema::Map(m), Json::Object(o)) => V::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), json_to_avro(v, &m.types)))
                    .collect(),
            ),
            (Schema::Enum(e), Json::String(s)) => {
                let i = e.symbols.iter().position(|x| x == s).unwrap_or(usize::MAX);
                V::Enum(i as u32, s.clone())
            }
            (Schema::String, Json::String(s)) => V::String(s.clone()),
            (Schema::Long, Json::Number(n)) if n.is_i64() => V::Long(n.as_i64().unwrap()),
            (Schema::Int, Json::Number(n)) if n.is_i64() => V::Int(n.as_i64().unwrap() as i32),
            (Schema::Double, Json::Number(n)) => V::Double(n.as_f64().unwrap()),
            (Schema::Boolean, Json::Bool(b)) => V::Boolean(*b),
            (_, j) => V::String(format!("<{j} does not fit {schema:?}>")),
        }
    }

    fn assert_matches_schema(json: &[u8], schema_text: &str) {
        let schema = Schema::parse_str(schema_text).unwrap();
        let json: Json = serde_json::from_slice(json).unwrap();
        let Json::Object(m) = &json else { panic!() };
        let Schema::Record(r) = &schema else { panic!() };
        for k in m.keys() {
            assert!(
                r.fields.iter().any(|f| &f.name == k),
                "member {k} is not in the schema"
            );
        }
        let v = json_to_avro(&json, &schema);
        assert!(v.validate(&schema), "{json} does not match {}", r.name);
    }

    #[test]
    fn results_match_their_schema() {
        let cp = checkpoint();
        let mut cursor = serde_json::Map::new();
        cursor.insert("id".into(), Json::String("x".into()));
        let schema = include_str!("../schemas/avro/result.avsc");
        let origin = crate::command::CommandOrigin {
            topic: "t".into(),
            partition: 1,
            offset: 2,
        };
        for rec in [
            ResultRecord::new("j", "accepted", 0),
            ResultRecord::of_checkpoint(&cp, "completed", Some(cursor), 0),
            ResultRecord::about_command("j", "rejected", "bad", &origin, 0),
            ResultRecord {
                rows_per_second: Some(1.5),
                eta_seconds: Some(2.0),
                ..ResultRecord::of_checkpoint(&cp, "progress", None, 0)
            },
        ] {
            assert_matches_schema(&rec.to_json(), schema);
        }
        let json: Json = serde_json::from_slice(
            &ResultRecord::of_checkpoint(&cp, "completed", None, 0).to_json(),
        )
        .unwrap();
        assert_eq!(json["total_events_found"], 10);
        assert_eq!(json["success_rate_percent"], 70.0);
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn dead_letters_match_their_schema_and_keep_bad_payloads() {
        let mut row = RawRow {
            id: "r1".into(),
            payload: b"{\"a\":1}".to_vec(),
            timestamp_ms: 1_704_067_200_123,
            version: u64::MAX,
            field3: Some("f".into()),
            ..Default::default()
        };
        let schema = include_str!("../schemas/avro/dead_letter.avsc");
        let dl = |row: &RawRow, max| DeadLetter {
            job_id: "j".into(),
            batch: 0,
            batch_position: 1,
            stage: DeadLetterStage::Validation,
            reason: "missing_org_id".into(),
            message: "m".into(),
            raw_event: RawEventJson::of(row, max),
            at: format_ms(0),
        };
        let d = dl(&row, 1000);
        assert_matches_schema(&d.to_json(), schema);
        assert_eq!(d.raw_event.payload.as_deref(), Some("{\"a\":1}"));
        assert_eq!(d.raw_event.version, "18446744073709551615");
        assert_eq!(d.raw_event.timestamp, "2024-01-01T00:00:00.123Z");

        row.payload = vec![b'{', 0xff, 0xfe, b'}'];
        let d = dl(&row, 1000);
        assert_matches_schema(&d.to_json(), schema);
        assert_eq!(d.raw_event.payload, None);
        assert_eq!(d.raw_event.payload_base64.as_deref(), Some("e//+fQ=="));

        row.payload = "ééé".as_bytes().to_vec();
        let d = dl(&row, 3);
        assert_eq!(d.raw_event.payload.as_deref(), Some("é"));
        assert_eq!(d.raw_event.payload_truncated, Some(true));
    }

    #[test]
    fn counters_balance() {
        let mut c = checkpoint().counters;
        assert!(c.balanced());
        c.add(&Counters {
            found: 1,
            sampled_out: 1,
            ..Default::default()
        });
        assert!(c.balanced());
        c.found += 1;
        assert!(!c.balanced());
    }
}
