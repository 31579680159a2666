//! `POST /events/raw/reprocess`'s body → a `reprocess` command (SPEC §3, §11), pure.
//!
//! The body is the original design's request (`external_customer_id`, `event_name`, `start_date`,
//! `end_date`, `batch_size`) plus any other field of a `reprocess` command (`external_customer_ids`,
//! `event_names`, `event_ids`, `mode`, `dry_run`, `sample_rate`, `max_events_per_second`, `parallelism`, `job_id`, …). The
//! caller's key supplies `tenant_id`, the request its environment ([`Caller::environment`]); a body that
//! names a tenant other than the key's is refused with 403, so a key can replay its own tenant only. The
//! command is then validated by the daemon's own rules ([`crate::control_client::validate`]): what the CLI
//! refuses and the daemon rejects, this door refuses with 400 naming the same field.

use serde_json::{Map, Value};

use super::auth::Caller;
use super::response::ApiError;
use crate::command::UniqueKeys;
use crate::config::Config;
use crate::control_client::{generate_job_id, validate};

/// The command JSON of a request body, with its job id (the body's, else a new one:
/// `<tenant>-<UTC stamp>-<6 hex>`). `env_header` is `X-Environment-ID` when sent.
///
/// Errors: 400 for a body that is not one JSON object, names a member twice, carries `type`, or fails the
/// command's validation (naming the field); 400/403 for the environment ([`Caller::environment`]); 403 for a
/// `tenant_id` other than the key's.
pub fn reprocess_command(
    cfg: &Config,
    caller: &Caller<'_>,
    env_header: Option<&str>,
    body: &[u8],
) -> Result<(String, Vec<u8>), ApiError> {
    let mut obj = body_object(body)?;
    if obj.contains_key("type") {
        return Err(ApiError::bad_request(
            "field `type`: not a field of this request (this endpoint always asks for a reprocess)"
                .into(),
            Some("type"),
        ));
    }
    if obj.contains_key("parent_job_id") {
        return Err(ApiError::bad_request(
            "field `parent_job_id`: not a field of this request (the daemon writes it on a split job's parts; ask for `parallelism` instead)"
                .into(),
            Some("parent_job_id"),
        ));
    }
    match obj.get("tenant_id") {
        None => {}
        Some(Value::String(t)) if t == caller.tenant() => {}
        Some(other) => {
            return Err(ApiError::forbidden(
                format!(
                    "field `tenant_id`: {other} is not the API key's tenant; leave it out, the key decides the tenant"
                ),
                Some("tenant_id"),
            ));
        }
    }
    let body_env = match obj.get("environment_id") {
        None => None,
        Some(Value::String(e)) => Some(e.as_str()),
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("field `environment_id`: must be a string, got {other}"),
                Some("environment_id"),
            ));
        }
    };
    let environment = caller.environment(env_header, body_env)?;
    let job_id = match obj.get("job_id") {
        Some(Value::String(id)) => id.clone(),
        // A non-string id is refused by the validation below, naming `job_id`.
        Some(_) => String::new(),
        None => generate_job_id(caller.tenant()),
    };
    obj.insert("type".into(), Value::String("reprocess".into()));
    obj.insert("tenant_id".into(), Value::String(caller.tenant().into()));
    obj.insert("environment_id".into(), Value::String(environment));
    if !obj.contains_key("job_id") {
        obj.insert("job_id".into(), Value::String(job_id.clone()));
    }
    let bytes = serde_json::to_vec(&Value::Object(obj)).expect("JSON serializes");
    validate(cfg, &bytes).map_err(|e| ApiError::invalid_command(&e.reason))?;
    Ok((job_id, bytes))
}

/// The body as one JSON object whose members are each given once.
fn body_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}"), None))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::bad_request(
            "body must be a JSON object".into(),
            None,
        ));
    };
    if let Err(e) = serde_json::from_slice::<UniqueKeys>(body) {
        return Err(ApiError::invalid_command(&format!(
            "body is not valid: {e}"
        )));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{self, Command};
    use crate::config::ApiKeyConfig;
    use axum::http::StatusCode;
    use serde_json::json;

    fn key(envs: &[&str]) -> ApiKeyConfig {
        ApiKeyConfig {
            name: "team-a".into(),
            sha256: "0".repeat(64),
            tenant_id: "tenant_01".into(),
            environments: envs.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn build(body: &Value, envs: &[&str], header: Option<&str>) -> Result<Value, ApiError> {
        let k = key(envs);
        let (job_id, bytes) = reprocess_command(
            &Config::default(),
            &Caller { key: &k },
            header,
            body.to_string().as_bytes(),
        )?;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["job_id"], job_id.as_str());
        Ok(v)
    }

    fn original() -> Value {
        json!({"external_customer_id": "cust_1", "event_name": "openai-modeling-gpt-4.1",
               "start_date": "2024-01-01T00:00:00Z", "end_date": "2024-02-01T00:00:00Z", "batch_size": 500})
    }

    #[test]
    fn the_original_request_becomes_a_command_of_the_keys_tenant() {
        let v = build(&original(), &["env_01"], None).unwrap();
        assert_eq!(v["type"], "reprocess");
        assert_eq!(v["tenant_id"], "tenant_01");
        assert_eq!(v["environment_id"], "env_01");
        assert_eq!(v["external_customer_id"], "cust_1");
        assert_eq!(v["batch_size"], 500);
        let id = v["job_id"].as_str().unwrap();
        assert!(id.starts_with("tenant_01-20"), "{id}");
        // The daemon reads it as the same replay.
        let origin = command::CommandOrigin {
            topic: "c".into(),
            partition: 0,
            offset: 0,
        };
        let limits = crate::control_client::limits(&Config::default());
        let Ok(Command::Reprocess(spec)) =
            command::parse(v.to_string().as_bytes(), &origin, limits, 0)
        else {
            panic!("{v}");
        };
        assert_eq!(spec.external_customer_ids, ["cust_1"]);
        assert_eq!(spec.event_names, ["openai-modeling-gpt-4.1"]);
        assert_eq!(spec.batch_size, 500);
    }

    #[test]
    fn every_command_field_passes_and_the_job_id_is_kept() {
        let mut body = original();
        let o = body.as_object_mut().unwrap();
        o.remove("external_customer_id");
        o.insert("external_customer_ids".into(), json!(["c1", "c2"]));
        o.insert("job_id".into(), json!("my-job"));
        o.insert("mode".into(), json!("pending"));
        o.insert("dry_run".into(), json!(true));
        o.insert("sample_rate".into(), json!(0.5));
        o.insert("max_events_per_second".into(), json!(100));
        o.insert("tenant_id".into(), json!("tenant_01"));
        o.insert("environment_id".into(), json!("e2"));
        let v = build(&body, &["e1", "e2"], None).unwrap();
        assert_eq!(v["job_id"], "my-job");
        assert_eq!(v["environment_id"], "e2");
        assert_eq!(v["external_customer_ids"], json!(["c1", "c2"]));
        assert_eq!(v["mode"], "pending");
    }

    #[test]
    fn refusals_name_the_field() {
        let with = |k: &str, val: Value| {
            let mut b = original();
            b.as_object_mut().unwrap().insert(k.into(), val);
            b
        };
        let cases: Vec<(Value, Option<&str>, StatusCode, Option<&str>)> = vec![
            (
                with("batch_size", json!(0)),
                None,
                StatusCode::BAD_REQUEST,
                Some("batch_size"),
            ),
            (
                with("start_date", json!("yesterday")),
                None,
                StatusCode::BAD_REQUEST,
                Some("start_date"),
            ),
            (
                with("end_date", json!("2023-01-01T00:00:00Z")),
                None,
                StatusCode::BAD_REQUEST,
                Some("end_date"),
            ),
            (
                with("customer", json!("x")),
                None,
                StatusCode::BAD_REQUEST,
                Some("customer"),
            ),
            (
                with("job_id", json!("a b")),
                None,
                StatusCode::BAD_REQUEST,
                Some("job_id"),
            ),
            (
                with("job_id", json!(7)),
                None,
                StatusCode::BAD_REQUEST,
                Some("job_id"),
            ),
            (
                with("parent_job_id", json!("someone-elses")),
                None,
                StatusCode::BAD_REQUEST,
                Some("parent_job_id"),
            ),
            (
                with("external_customer_ids", json!(["c"])),
                None,
                StatusCode::BAD_REQUEST,
                Some("external_customer_ids"),
            ),
            (
                with("type", json!("cancel")),
                None,
                StatusCode::BAD_REQUEST,
                Some("type"),
            ),
            (
                with("tenant_id", json!("tenant_02")),
                None,
                StatusCode::FORBIDDEN,
                Some("tenant_id"),
            ),
            (
                with("environment_id", json!("env_02")),
                None,
                StatusCode::FORBIDDEN,
                Some("environment_id"),
            ),
            (
                with("environment_id", json!(3)),
                None,
                StatusCode::BAD_REQUEST,
                Some("environment_id"),
            ),
            (
                original(),
                Some("env_02"),
                StatusCode::FORBIDDEN,
                Some("environment_id"),
            ),
            (json!([1]), None, StatusCode::BAD_REQUEST, None),
        ];
        for (body, header, status, field) in cases {
            let e = build(&body, &["env_01"], header).unwrap_err();
            assert_eq!(
                (e.status, e.field.as_deref()),
                (status, field),
                "{body}: {}",
                e.error
            );
        }
        let k = key(&["env_01"]);
        let caller = Caller { key: &k };
        let cfg = Config::default();
        let twice = br#"{"start_date":"2024-01-01T00:00:00Z","batch_size":1,"batch_size":5}"#;
        let e = reprocess_command(&cfg, &caller, None, twice).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("batch_size"), "{}", e.error);
        let e = reprocess_command(&cfg, &caller, None, b"{not json").unwrap_err();
        assert_eq!((e.status, e.field), (StatusCode::BAD_REQUEST, None));
    }
}
