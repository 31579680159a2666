//! What the API answers (SPEC §11): the shapes of its JSON bodies, pure functions of what the daemon knows.
//!
//! - [`Submitted`]: `POST /events/raw/reprocess` → 202, the original design's `{workflow_id, run_id,
//!   task_queue}` plus `job_id`, `status` and `status_url`;
//! - [`JobView`]: a job's latest checkpoint as the original workflow result (`total_events_*`,
//!   `processed_batches`, `completed_at`) plus `status`, `cursor`, `estimated_total`, `eta_seconds`, `parts`;
//! - [`ControlRequested`]: `POST …/{job_id}/cancel|pause|resume` → 202;
//! - [`ApiError`]: every error, `{"error": text for a person, "field": the request field at fault or null}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::command::{ControlAction, format_ms};
use crate::control_client::Sent;
use crate::job::{Checkpoint, JobStatus};

/// The path of a job's status: `GET` it.
pub fn status_url(job_id: &str) -> String {
    format!("/events/raw/reprocess/{job_id}")
}

/// An error answer: the HTTP status and `{"error", "field"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// What was wrong, for a person.
    pub error: String,
    /// The request field (or header) at fault, when one is: e.g. `batch_size`, `environment_id`, `job_id`.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: String, field: Option<&str>) -> ApiError {
        ApiError {
            status,
            error,
            field: field.map(str::to_string),
        }
    }

    /// 400.
    pub fn bad_request(error: String, field: Option<&str>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, field)
    }

    /// 400 for a command the daemon's rules refuse: the field is the first one the reason names in
    /// backquotes (every reason of `command::parse` names its field so: "field `batch_size`: …").
    pub fn invalid_command(reason: &str) -> ApiError {
        let field = reason.split('`').nth(1).filter(|f| !f.is_empty());
        ApiError::bad_request(reason.to_string(), field)
    }

    /// 401.
    pub fn unauthorized(error: String) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, error, None)
    }

    /// 403.
    pub fn forbidden(error: String, field: Option<&str>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, error, field)
    }

    /// 404 for a job this caller cannot see: the same answer whether it does not exist or belongs to another
    /// tenant or environment.
    pub fn unknown_job(job_id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown job `{job_id}`"),
            Some("job_id"),
        )
    }

    /// 503: Kafka could not take or answer the request.
    pub fn unavailable(e: &anyhow::Error) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"), None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

/// What became of a submitted `reprocess` command, as `status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubmitStatus {
    /// The daemon accepted the job; it starts when a running slot is free.
    Accepted,
    /// Accepted, and waiting for a running slot (`processing.concurrency`).
    Queued,
    /// Produced on the control topic, no verdict within `api.verdict_timeout_secs`: follow `status_url`.
    Submitted,
}

impl SubmitStatus {
    /// The lowercase name, as in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            SubmitStatus::Accepted => "accepted",
            SubmitStatus::Queued => "queued",
            SubmitStatus::Submitted => "submitted",
        }
    }
}

/// `POST /events/raw/reprocess` → 202: the original design's answer (`workflow_id`, `run_id`, `task_queue`)
/// with this product's names beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    /// The job id (the original design's workflow id).
    pub workflow_id: String,
    pub job_id: String,
    /// `<topic>-<partition>-<offset>` of the command on the control topic.
    pub run_id: String,
    /// The control topic.
    pub task_queue: String,
    pub status: SubmitStatus,
    /// `GET` this for the job's progress and result.
    pub status_url: String,
}

impl Submitted {
    pub fn new(sent: &Sent, status: SubmitStatus) -> Submitted {
        Submitted {
            workflow_id: sent.job_id.clone(),
            job_id: sent.job_id.clone(),
            run_id: sent.origin().derived_job_id(),
            task_queue: sent.topic.clone(),
            status,
            status_url: status_url(&sent.job_id),
        }
    }
}

/// `POST /events/raw/reprocess/{job_id}/cancel|pause|resume` → 202: the request is on the control topic;
/// the job's owner applies it after its current batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ControlRequested {
    pub job_id: String,
    /// `cancel`, `pause` or `resume`.
    pub action: String,
    /// Always `requested`.
    pub status: String,
    /// `<topic>-<partition>-<offset>` of the command on the control topic.
    pub run_id: String,
    pub status_url: String,
}

impl ControlRequested {
    pub fn new(sent: &Sent, action: ControlAction) -> ControlRequested {
        ControlRequested {
            job_id: sent.job_id.clone(),
            action: action.as_str().into(),
            status: "requested".into(),
            run_id: sent.origin().derived_job_id(),
            status_url: status_url(&sent.job_id),
        }
    }
}

/// One job: its latest checkpoint as the original workflow result, plus this product's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// The job id (the original design's workflow id).
    pub workflow_id: String,
    pub job_id: String,
    /// `queued`, `running`, `paused`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub tenant_id: String,
    pub environment_id: String,
    pub total_events_found: i64,
    pub total_events_published: i64,
    pub total_events_dropped: i64,
    pub total_transformation_errors: i64,
    pub total_events_failed: i64,
    pub total_events_sampled_out: i64,
    pub processed_batches: i64,
    /// published / found × 100, two decimals.
    pub success_rate_percent: f64,
    pub dry_run: bool,
    /// RFC 3339 UTC with milliseconds.
    pub accepted_at: String,
    pub started_at: Option<String>,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// The last row done, named by the sorting-key columns (SPEC §6); a failed job resumes after it.
    #[schema(value_type = Option<Object>)]
    pub cursor: Option<Map<String, Value>>,
    /// Rows the job's selection holds, counted at its start (absent when the count failed).
    pub estimated_total: Option<i64>,
    /// Seconds left at the rate so far (0 once final; absent without an estimate or a rate).
    pub eta_seconds: Option<f64>,
    /// Why the job failed.
    pub error: Option<String>,
    /// The parts of a split job (SPEC §5a), each as its own job (a part not accepted yet is left out); empty
    /// for a job that is not split.
    #[schema(value_type = Vec<Object>)]
    pub parts: Vec<Value>,
    /// For a part of a split job: the split job's id.
    pub parent_job_id: Option<String>,
    /// The daemon instance that last wrote the job's checkpoint.
    pub instance: Option<String>,
}

impl JobView {
    /// The view of `cp`, its cursor already named by the sorting key.
    pub fn new(cp: &Checkpoint, cursor: Option<Map<String, Value>>) -> JobView {
        let c = &cp.counters;
        JobView {
            workflow_id: cp.job_id.clone(),
            job_id: cp.job_id.clone(),
            status: cp.status.as_str().into(),
            tenant_id: cp.spec.tenant_id.clone(),
            environment_id: cp.spec.environment_id.clone(),
            total_events_found: c.found,
            total_events_published: c.published,
            total_events_dropped: c.dropped,
            total_transformation_errors: c.transformation_errors,
            total_events_failed: c.failed,
            total_events_sampled_out: c.sampled_out,
            processed_batches: c.processed_batches,
            success_rate_percent: (c.success_rate_percent() * 100.0).round() / 100.0,
            dry_run: cp.spec.dry_run,
            accepted_at: format_ms(cp.accepted_at_ms),
            started_at: cp.started_at_ms.map(format_ms),
            updated_at: format_ms(cp.updated_at_ms),
            completed_at: cp.completed_at_ms.map(format_ms),
            cursor,
            estimated_total: cp.estimated_total,
            eta_seconds: eta_seconds(cp),
            error: cp.error.clone(),
            parts: Vec::new(),
            parent_job_id: cp.spec.parent_job_id.clone(),
            instance: cp.instance.clone(),
        }
    }
}

/// Seconds left for `cp`: 0 once final; for a job with an estimate that has run, the rows left at its rate
/// so far (rows found between `started_at` and the checkpoint's `updated_at`); otherwise unknown.
pub fn eta_seconds(cp: &Checkpoint) -> Option<f64> {
    if cp.status.is_final() {
        return Some(0.0);
    }
    let total = cp.estimated_total?;
    let started = cp.started_at_ms?;
    let secs = (cp.updated_at_ms - started) as f64 / 1000.0;
    let found = cp.counters.found;
    if cp.status != JobStatus::Running || secs <= 0.0 || found <= 0 {
        return None;
    }
    Some(((total - found).max(0) as f64 / (found as f64 / secs)).round())
}

/// `GET /events/raw/reprocess`: the caller's jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sent() -> Sent {
        Sent {
            job_id: "j1".into(),
            command: "reprocess",
            topic: "raw_events_reprocess_commands".into(),
            partition: 4,
            offset: 17,
        }
    }

    #[test]
    fn a_submission_answers_with_the_original_designs_names() {
        let v = serde_json::to_value(Submitted::new(&sent(), SubmitStatus::Queued)).unwrap();
        assert_eq!(
            v,
            json!({"workflow_id": "j1", "job_id": "j1", "run_id": "raw_events_reprocess_commands-4-17",
                   "task_queue": "raw_events_reprocess_commands", "status": "queued",
                   "status_url": "/events/raw/reprocess/j1"})
        );
        for s in [
            SubmitStatus::Accepted,
            SubmitStatus::Queued,
            SubmitStatus::Submitted,
        ] {
            let v = serde_json::to_value(Submitted::new(&sent(), s)).unwrap();
            assert_eq!(v["status"], s.as_str());
        }
        let v = serde_json::to_value(ControlRequested::new(&sent(), ControlAction::Pause)).unwrap();
        assert_eq!(v["action"], "pause");
        assert_eq!(v["status"], "requested");
        assert_eq!(v["run_id"], "raw_events_reprocess_commands-4-17");
    }

    #[test]
    fn errors_name_the_field_the_reason_names() {
        let e = ApiError::invalid_command(
            "field `batch_size`: must be an integer from 1 to 10000, got 0",
        );
        assert_eq!(e.field.as_deref(), Some("batch_size"));
        let e =
            ApiError::invalid_command("unknown field `tenant`: allowed fields are type, job_id");
        assert_eq!(e.field.as_deref(), Some("tenant"));
        let e =
            ApiError::invalid_command("fields `event_names` and `event_name`: give one, not both");
        assert_eq!(e.field.as_deref(), Some("event_names"));
        let e = ApiError::invalid_command("command is not valid JSON: EOF");
        assert_eq!(e.field, None);
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"error": "command is not valid JSON: EOF", "field": null})
        );
    }

    #[test]
    fn a_job_view_is_the_workflow_result_plus_state() {
        let mut cp = crate::job::tests::checkpoint();
        cp.started_at_ms = Some(1_000);
        cp.updated_at_ms = 6_000; // 10 rows in 5 s: 2 rows/s, 90 rows left
        let mut cursor = Map::new();
        cursor.insert("id".into(), json!("id-9"));
        let v = serde_json::to_value(JobView::new(&cp, Some(cursor))).unwrap();
        for (k, want) in [
            ("workflow_id", json!("j1")),
            ("status", json!("running")),
            ("total_events_found", json!(10)),
            ("total_events_published", json!(7)),
            ("total_events_dropped", json!(1)),
            ("total_transformation_errors", json!(1)),
            ("total_events_failed", json!(1)),
            ("processed_batches", json!(2)),
            ("success_rate_percent", json!(70.0)),
            ("completed_at", Value::Null),
            ("cursor", json!({"id": "id-9"})),
            ("estimated_total", json!(100)),
            ("eta_seconds", json!(45.0)),
            ("parts", json!([])),
        ] {
            assert_eq!(v[k], want, "{k} in {v}");
        }
    }

    #[test]
    fn eta_is_known_only_while_running_with_an_estimate() {
        let mut cp = crate::job::tests::checkpoint();
        cp.started_at_ms = Some(0);
        cp.updated_at_ms = 10_000;
        assert_eq!(eta_seconds(&cp), Some(90.0));
        cp.counters.found = 200;
        assert_eq!(eta_seconds(&cp), Some(0.0), "past the estimate");
        cp.estimated_total = None;
        assert_eq!(eta_seconds(&cp), None);
        cp.estimated_total = Some(100);
        cp.status = JobStatus::Paused;
        assert_eq!(eta_seconds(&cp), None);
        cp.status = JobStatus::Completed;
        assert_eq!(eta_seconds(&cp), Some(0.0));
        cp.status = JobStatus::Queued;
        cp.started_at_ms = None;
        assert_eq!(eta_seconds(&cp), None);
    }
}
