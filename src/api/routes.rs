//! The handlers of the HTTP API (SPEC §11) and the router that serves them. Each handler authenticates
//! first (401), then resolves the environment (403), then reads the body (413 over `api.max_body_bytes`);
//! every error is an [`ApiError`] (`{"error", "field"}`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tracing::info;

use super::Api;
use super::Verdict;
use super::auth::environment_header;
use super::request::reprocess_command;
use super::response::{ApiError, ControlRequested, JobList, JobView, SubmitStatus, Submitted};
use crate::command::ControlAction;
use crate::control_client::control_command;
use crate::job::lifecycle::control_problem;
use crate::job::{Checkpoint, JobStatus};

type Shared = State<Arc<Api>>;

/// Every route, with the body limit of `api.max_body_bytes`.
pub fn router(api: Arc<Api>) -> Router {
    let limit = api.cfg.api.max_body_bytes;
    Router::new()
        .route("/events/raw/reprocess", post(submit).get(list))
        .route("/events/raw/reprocess/{job_id}", get(job))
        .route("/events/raw/reprocess/{job_id}/{action}", post(control))
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { no_such_endpoint() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path (see /openapi.json)".into(),
                None,
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

/// A body the server could not take: 413 over the limit, else 400.
fn body_error(api: &Api, e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body larger than {} bytes (api.max_body_bytes)",
                api.cfg.api.max_body_bytes
            ),
            None,
        )
    } else {
        ApiError::bad_request(
            format!("cannot read the request body: {}", e.body_text()),
            None,
        )
    }
}

/// Starts a replay of the key's tenant: the original design's request.
#[utoipa::path(
    post,
    path = "/events/raw/reprocess",
    tag = "reprocess",
    request_body(
        content = Object,
        description = "The original request (`external_customer_id`, `event_name`, `start_date`, `end_date`, \
            `batch_size`) plus any other field of a reprocess command: `external_customer_ids`, `event_names`, \
            `event_ids`, `mode` (all|pending), `dry_run`, `sample_rate`, `max_events_per_second`, `parallelism`, `job_id`. \
            `tenant_id` comes from the API key (a different one is refused with 403); `environment_id` from \
            X-Environment-ID, the body, or the key's single environment.",
        example = json!({"external_customer_id": "cust_1", "event_name": "openai-modeling-gpt-4.1",
            "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-02-01T00:00:00Z", "batch_size": 1000})
    ),
    params(("X-Environment-ID" = Option<String>, Header, description = "The environment (required when the key covers several)")),
    responses(
        (status = 202, description = "Accepted or queued by the daemon, or `submitted` when its verdict did not come within api.verdict_timeout_secs", body = Submitted),
        (status = 400, description = "A bad request; `field` names the field", body = ApiError),
        (status = 401, description = "Missing or unknown x-api-key", body = ApiError),
        (status = 403, description = "An environment or tenant outside the key", body = ApiError),
        (status = 409, description = "A job with this job_id exists; nothing started", body = ApiError),
        (status = 413, description = "Body larger than api.max_body_bytes", body = ApiError),
        (status = 503, description = "Kafka did not take the command, or replays are disabled", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn submit(
    State(api): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = api.keys.caller(&headers)?;
    let env_header = environment_header(&headers)?;
    let body = body.map_err(|e| body_error(&api, e))?;
    let (job_id, command) = reprocess_command(&api.cfg, &caller, env_header, &body)?;
    let (sent, verdict) = api
        .submit(&job_id, &command)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    let status = match verdict {
        Verdict::Accepted { queued: false } => Ok(SubmitStatus::Accepted),
        Verdict::Accepted { queued: true } => Ok(SubmitStatus::Queued),
        Verdict::Pending => Ok(SubmitStatus::Submitted),
        Verdict::Duplicate(reason) => {
            Err(ApiError::new(StatusCode::CONFLICT, reason, Some("job_id")))
        }
        Verdict::Rejected(reason) if reason == "disabled" => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "disabled: replays are switched off (enabled = false)".into(),
            None,
        )),
        Verdict::Rejected(reason) => Err(ApiError::invalid_command(&reason)),
    };
    let outcome = match &status {
        Ok(s) => s.as_str().to_string(),
        Err(e) => e.status.as_u16().to_string(),
    };
    info!(
        key = caller.name(),
        tenant_id = caller.tenant(),
        job_id,
        partition = sent.partition,
        offset = sent.offset,
        outcome,
        "API: reprocess command produced"
    );
    let status = status?;
    let answer = Submitted::new(&sent, status);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, answer.status_url.clone())],
        Json(answer),
    )
        .into_response())
}

/// The view of a checkpoint, its cursor named by the table's sorting key, with a split job's parts as the
/// state topic holds them.
fn view(api: &Api, cp: &Checkpoint) -> JobView {
    let one =
        |cp: &Checkpoint| JobView::new(cp, cp.cursor.as_ref().map(|c| api.records.cursor_json(c)));
    let mut v = one(cp);
    v.parts = cp
        .parts
        .iter()
        .filter_map(|id| api.state.checkpoint(id))
        .map(|part| serde_json::to_value(one(&part)).expect("a job view serializes"))
        .collect();
    v
}

/// One job: the original workflow result plus its state.
#[utoipa::path(
    get,
    path = "/events/raw/reprocess/{job_id}",
    tag = "reprocess",
    params(
        ("job_id" = String, Path, description = "The job id (workflow_id)"),
        ("X-Environment-ID" = Option<String>, Header, description = "Only a job of this environment"),
    ),
    responses(
        (status = 200, description = "The job's latest checkpoint", body = JobView),
        (status = 401, description = "Missing or unknown x-api-key", body = ApiError),
        (status = 403, description = "X-Environment-ID outside the key", body = ApiError),
        (status = 404, description = "No such job for this key (also a job of another tenant)", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn job(
    State(api): Shared,
    headers: HeaderMap,
    Path(job_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let caller = api.keys.caller(&headers)?;
    let scope = caller.scope(environment_header(&headers)?)?;
    let (cp, _) = api
        .visible_job(&caller, &scope, &job_id)
        .await
        .ok_or_else(|| ApiError::unknown_job(&job_id))?;
    Ok(Json(view(&api, &cp)))
}

/// `GET /events/raw/reprocess`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs of these statuses, comma-separated: queued, running, paused, completed, failed, cancelled.
    pub status: Option<String>,
}

/// The statuses a `status=` filter names; 400 naming `status` for an unknown one.
fn statuses(filter: Option<&str>) -> Result<Option<Vec<JobStatus>>, ApiError> {
    let Some(filter) = filter else {
        return Ok(None);
    };
    filter
        .split(',')
        .map(|s| {
            JobStatus::ALL
                .into_iter()
                .find(|st| st.as_str() == s.trim())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        format!(
                            "field `status`: unknown status {s:?} (queued, running, paused, completed, failed, cancelled)"
                        ),
                        Some("status"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The caller's jobs (its tenant, its key's environments or X-Environment-ID), newest first.
#[utoipa::path(
    get,
    path = "/events/raw/reprocess",
    tag = "reprocess",
    params(
        ListQuery,
        ("X-Environment-ID" = Option<String>, Header, description = "Only jobs of this environment"),
    ),
    responses(
        (status = 200, description = "The jobs", body = JobList),
        (status = 400, description = "An unknown status or query parameter", body = ApiError),
        (status = 401, description = "Missing or unknown x-api-key", body = ApiError),
        (status = 403, description = "X-Environment-ID outside the key", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(api): Shared,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let caller = api.keys.caller(&headers)?;
    let scope = caller.scope(environment_header(&headers)?)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text(), None))?;
    let wanted = statuses(query.status.as_deref())?;
    let mut jobs: Vec<Checkpoint> = api
        .state
        .jobs()
        .into_iter()
        .filter(|cp| caller.sees(cp, &scope))
        .filter(|cp| wanted.as_ref().is_none_or(|w| w.contains(&cp.status)))
        .collect();
    jobs.sort_by_key(|cp| std::cmp::Reverse((cp.accepted_at_ms, cp.command_offset)));
    Ok(Json(JobList {
        jobs: jobs.iter().map(|cp| view(&api, cp)).collect(),
    }))
}

/// Cancels, pauses or resumes a job. Refused as the daemon would refuse it (404 for a job the key cannot see,
/// 409 for one already final or in a status the action cannot apply to), else produced for the job's owner,
/// which applies it after its current batch: `cancel` ends the job (`cancelled`), `pause` holds a running or
/// queued one, `resume` queues a paused or failed one again from its checkpoint.
#[utoipa::path(
    post,
    path = "/events/raw/reprocess/{job_id}/{action}",
    tag = "reprocess",
    params(
        ("job_id" = String, Path, description = "The job id"),
        ("action" = String, Path, description = "`cancel`, `pause` or `resume`", example = "cancel"),
        ("X-Environment-ID" = Option<String>, Header, description = "Only a job of this environment"),
    ),
    responses(
        (status = 202, description = "Requested; the job's owner applies it after its current batch", body = ControlRequested),
        (status = 401, description = "Missing or unknown x-api-key", body = ApiError),
        (status = 403, description = "X-Environment-ID outside the key", body = ApiError),
        (status = 404, description = "No such job for this key, or no such action", body = ApiError),
        (status = 409, description = "The job is already final (completed, cancelled), or the action does not apply to its status (pause of a paused or failed job, resume of a running one)", body = ApiError),
    ),
    security(("api_key" = []))
)]
pub async fn control(
    State(api): Shared,
    headers: HeaderMap,
    Path((job_id, action)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ControlRequested>), ApiError> {
    let caller = api.keys.caller(&headers)?;
    let scope = caller.scope(environment_header(&headers)?)?;
    let action = match action.as_str() {
        "cancel" => ControlAction::Cancel,
        "pause" => ControlAction::Pause,
        "resume" => ControlAction::Resume,
        _ => return Err(no_such_endpoint()),
    };
    let command = control_command(&api.cfg, action, &job_id)
        .map_err(|e| ApiError::invalid_command(&e.reason))?;
    let (cp, pending) = api
        .visible_job(&caller, &scope, &job_id)
        .await
        .ok_or_else(|| ApiError::unknown_job(&job_id))?;
    let lookup = |id: &str| api.state.lookup(id);
    if let Some(problem) = control_problem(action, &cp, &pending, &lookup) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{}: {problem}", action.as_str()),
            None,
        ));
    }
    let sent = api
        .producer
        .send(action.as_str(), &job_id, &command)
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    info!(
        key = caller.name(),
        job_id,
        action = action.as_str(),
        partition = sent.partition,
        offset = sent.offset,
        "API: control command produced"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(ControlRequested::new(&sent, action)),
    ))
}

/// 404 for a path that is no endpoint.
fn no_such_endpoint() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint (see /openapi.json)".into(),
        None,
    )
}

/// This document: the OpenAPI description of every endpoint (no key needed).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    Json(super::openapi::document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::response::status_url;

    #[test]
    fn a_status_filter_names_known_statuses() {
        assert_eq!(statuses(None).unwrap(), None);
        assert_eq!(
            statuses(Some("running, queued")).unwrap(),
            Some(vec![JobStatus::Running, JobStatus::Queued])
        );
        let e = statuses(Some("done")).unwrap_err();
        assert_eq!(
            (e.status, e.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("status"))
        );
        assert_eq!(status_url("j"), "/events/raw/reprocess/j");
    }
}
