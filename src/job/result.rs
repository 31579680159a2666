//! The results topic (SPEC §6): one JSON record per lifecycle step of a job, keyed by job id
//! (shape documented by `schemas/avro/result.avsc`).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::Checkpoint;
use crate::command::{CommandOrigin, format_ms};

/// `status` of a result record (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Accepted,
    Queued,
    Progress,
    Paused,
    Resumed,
    Completed,
    Failed,
    Cancelled,
    Rejected,
    Duplicate,
    /// A status this version does not know (written by a newer one); only ever read, never written.
    #[serde(other)]
    Unknown,
}

impl ResultStatus {
    /// Lowercase name, as in the record and its `status` header.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Accepted => "accepted",
            ResultStatus::Queued => "queued",
            ResultStatus::Progress => "progress",
            ResultStatus::Paused => "paused",
            ResultStatus::Resumed => "resumed",
            ResultStatus::Completed => "completed",
            ResultStatus::Failed => "failed",
            ResultStatus::Cancelled => "cancelled",
            ResultStatus::Rejected => "rejected",
            ResultStatus::Duplicate => "duplicate",
            ResultStatus::Unknown => "unknown",
        }
    }

    /// The job's last word: `completed`, `failed`, `cancelled`, or `rejected` (its command was not accepted).
    /// (`failed` can still be resumed; `duplicate` is not final: SPEC §3.)
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ResultStatus::Completed
                | ResultStatus::Failed
                | ResultStatus::Cancelled
                | ResultStatus::Rejected
        )
    }
}

impl std::fmt::Display for ResultStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record of the results topic; absent members are omitted from the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub job_id: String,
    pub status: ResultStatus,
    /// RFC 3339 UTC with milliseconds.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<serde_json::Map<String, Json>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_events_found: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_events_published: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_events_dropped: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_transformation_errors: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_events_failed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_events_sampled_out: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_batches: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// The daemon instance that wrote the record (SPEC §5a).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A split job's parts, by job id (SPEC §5a).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<String>>,
    /// For a part of a split job: the split job's id (SPEC §5a).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job_id: Option<String>,
}

impl ResultRecord {
    /// A record with only `job_id`, `status` and `at`.
    pub fn new(job_id: &str, status: ResultStatus, at_ms: i64) -> ResultRecord {
        ResultRecord {
            job_id: job_id.into(),
            status,
            at: format_ms(at_ms),
            reason: None,
            topic: None,
            partition: None,
            offset: None,
            error: None,
            cursor: None,
            dry_run: None,
            total_events_found: None,
            total_events_published: None,
            total_events_dropped: None,
            total_transformation_errors: None,
            total_events_failed: None,
            total_events_sampled_out: None,
            processed_batches: None,
            success_rate_percent: None,
            estimated_total: None,
            rows_per_second: None,
            eta_seconds: None,
            started_at: None,
            completed_at: None,
            instance: None,
            parts: None,
            parent_job_id: None,
        }
    }

    /// A record about a command (`accepted`, `rejected`, `duplicate`), with its coordinates so a submitter can
    /// tell its own command's verdict from an earlier one's; `reason` for rejections and duplicates.
    pub fn about_command(
        job_id: &str,
        status: ResultStatus,
        reason: Option<&str>,
        origin: &CommandOrigin,
        at_ms: i64,
    ) -> ResultRecord {
        ResultRecord {
            reason: reason.map(str::to_string),
            topic: Some(origin.topic.clone()),
            partition: Some(origin.partition),
            offset: Some(origin.offset),
            ..ResultRecord::new(job_id, status, at_ms)
        }
    }

    /// A record about a job's state: counters, cursor (rendered by the sorting key), start/end times, error.
    /// `status` is the result's status (it may differ from the checkpoint's, e.g. `progress`).
    pub fn of_checkpoint(
        cp: &Checkpoint,
        status: ResultStatus,
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
            parts: (!cp.parts.is_empty()).then(|| cp.parts.clone()),
            parent_job_id: cp.spec.parent_job_id.clone(),
            ..ResultRecord::new(&cp.job_id, status, at_ms)
        }
    }

    /// The JSON value of the record.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a result record serializes")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::job::tests::checkpoint;
    use apache_avro::Schema;

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
            (Schema::Array(a), Json::Array(items)) => {
                V::Array(items.iter().map(|j| json_to_avro(j, &a.items)).collect())
            }
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

    /// Asserts that a JSON record has only members of the schema and that their values fit it.
    pub(crate) fn assert_matches_schema(json: &[u8], schema_text: &str) {
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
        let schema = include_str!("../../schemas/avro/result.avsc");
        let origin = CommandOrigin {
            topic: "t".into(),
            partition: 1,
            offset: 2,
        };
        for rec in [
            ResultRecord::new("j", ResultStatus::Accepted, 0),
            ResultRecord::of_checkpoint(&cp, ResultStatus::Completed, Some(cursor), 0),
            ResultRecord::about_command("j", ResultStatus::Rejected, Some("bad"), &origin, 0),
            ResultRecord {
                rows_per_second: Some(1.5),
                eta_seconds: Some(2.0),
                instance: Some("host-1".into()),
                parts: Some(vec!["j.part-0".into()]),
                ..ResultRecord::of_checkpoint(&cp, ResultStatus::Progress, None, 0)
            },
        ] {
            assert_matches_schema(&rec.to_json(), schema);
        }
        let json: Json = serde_json::from_slice(
            &ResultRecord::of_checkpoint(&cp, ResultStatus::Completed, None, 0).to_json(),
        )
        .unwrap();
        assert_eq!(json["status"], "completed");
        assert_eq!(json["total_events_found"], 10);
        assert_eq!(json["success_rate_percent"], 70.0);
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_status_is_in_the_schema_and_unknown_ones_are_read() {
        let schema = include_str!("../../schemas/avro/result.avsc");
        for s in [
            ResultStatus::Accepted,
            ResultStatus::Queued,
            ResultStatus::Progress,
            ResultStatus::Paused,
            ResultStatus::Resumed,
            ResultStatus::Completed,
            ResultStatus::Failed,
            ResultStatus::Cancelled,
            ResultStatus::Rejected,
            ResultStatus::Duplicate,
        ] {
            assert!(schema.contains(&format!("\"{s}\"")), "{s}");
            let back: ResultRecord =
                serde_json::from_slice(&ResultRecord::new("j", s, 0).to_json()).unwrap();
            assert_eq!(back.status, s);
        }
        let r: ResultRecord =
            serde_json::from_str(r#"{"job_id":"j","status":"exploded","at":"x"}"#).unwrap();
        assert_eq!(r.status, ResultStatus::Unknown);
    }
}
