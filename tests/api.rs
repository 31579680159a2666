//! The HTTP API (issue 14, SPEC §11) against a real daemon, broker and ClickHouse, over loopback HTTP: the
//! original design's request replays a tenant's rows and `GET` reports them `completed` with the counters;
//! pause, resume and cancel; every error answer (400 naming the field, 401, 403, 404 also for another tenant's
//! job, 409, 413); a key for one tenant can neither replay nor see another tenant's jobs; the keys never appear
//! in the daemon's log or on the results topic.
//!
//! One daemon serves every case (they use distinct job ids), so the file costs one start-up.

mod support;

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::harness::{
    Env, InsertRow, assert_exactly_once, expected_events, free_port, realistic_rows, rfc3339,
};
use support::{DAY, T0};

const TENANT_A: &str = "t_api_a";
const TENANT_B: &str = "t_api_b";
const KEY_A: &str = "rer-test-key-a-6c1f0e3b9d";
const KEY_B: &str = "rer-test-key-b-0a7d52e4c8";
/// A key that is configured nowhere.
const KEY_GUESS: &str = "rer-test-key-guess-33aa91";
const MAX_BODY: usize = 4096;

/// A loopback HTTP client of the daemon's API.
struct Http {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One answer: status code and JSON body (a JSON string of the text when it is not JSON).
type Answer = (u16, Value);

impl Http {
    async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        environment: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(e) = environment {
            req = req.header("X-Environment-ID", e);
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(120), self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("no answer to {path} within 120 s"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn post(&self, path: &str, key: Option<&str>, env: Option<&str>, body: &Value) -> Answer {
        self.call(Method::POST, path, key, env, Some(body.to_string()))
            .await
    }

    async fn get(&self, path: &str, key: Option<&str>, env: Option<&str>) -> Answer {
        self.call(Method::GET, path, key, env, None).await
    }

    /// Polls `GET /events/raw/reprocess/JOB` until its status is `status`; the last view.
    async fn wait_job(&self, job: &str, key: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, v) = self.get(&job_path(job), Some(key), None).await;
            if code == 200 && v["status"] == status {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} not {status} within {timeout:?}: {code} {v}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn job_path(job: &str) -> String {
    format!("/events/raw/reprocess/{job}")
}

fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Asserts an error answer: its code and `field` (`None`: null), and that `error` is text.
fn assert_error(answer: &Answer, code: u16, field: Option<&str>, what: &str) {
    let (got, v) = answer;
    assert_eq!(*got, code, "{what}: {v}");
    assert!(v["error"].is_string(), "{what}: {v}");
    assert_eq!(v["field"].as_str(), field, "{what}: {v}");
}

/// The original design's request, for `customer` over the test day.
fn original_request(customer: &str) -> Value {
    json!({"external_customer_id": customer, "event_name": "usage", "start_date": rfc3339(T0),
           "end_date": rfc3339(T0 + DAY), "batch_size": 7})
}

/// Tenant A's rows (a third of customer `cust-3`'s cannot be decoded) and tenant B's.
fn rows() -> (Vec<InsertRow>, Vec<InsertRow>) {
    let mut a = realistic_rows(TENANT_A, "e1", 1_200, T0, DAY);
    for (n, r) in a
        .iter_mut()
        .filter(|r| r.external_customer_id == "cust-3")
        .enumerate()
    {
        if n % 3 == 0 {
            r.payload = b"{not json".to_vec();
        }
    }
    let b = realistic_rows(TENANT_B, "e1", 300, T0, DAY);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_replays_a_tenant_and_refuses_what_its_key_does_not_cover() {
    let mut env = Env::new("api").await;
    let (rows_a, rows_b) = rows();
    env.insert(&rows_a).await;
    env.insert(&rows_b).await;
    let port = free_port();
    env.config_file(&format!(
        "[api]\naddress = \"127.0.0.1:{port}\"\nmax_body_bytes = {MAX_BODY}\nverdict_timeout_secs = 60\n\n\
         [[api.keys]]\nname = \"team-a\"\nsha256 = \"{}\"\ntenant_id = \"{TENANT_A}\"\nenvironments = [\"e1\"]\n\n\
         [[api.keys]]\nname = \"team-b\"\nsha256 = \"{}\"\ntenant_id = \"{TENANT_B}\"\nenvironments = [\"*\"]\n",
        sha256_hex(KEY_A),
        sha256_hex(KEY_B)
    ));
    let daemon = env.start_daemon();
    daemon.wait_log("HTTP API listening", Duration::from_secs(90));
    daemon.wait_log("control partitions assigned", Duration::from_secs(60));
    let http = Http {
        base: format!("http://127.0.0.1:{port}"),
        client: Client::builder(TokioExecutor::new()).build_http(),
    };

    refusals_before_the_daemon(&http).await;
    let job = original_request_replays_tenant_a(&env, &http, &rows_a).await;
    tenant_b_neither_replays_nor_sees_tenant_a(&http, &job).await;
    controls_follow_the_job(&http).await;
    a_split_job_shows_its_parts(&http).await;

    // The keys (and the guessed one) are in no log line and no result record.
    let log = daemon.log();
    assert!(log.contains("API: reprocess command produced"), "{log}");
    let results: Vec<String> = env
        .read_all("results")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    assert!(!results.is_empty());
    for secret in [KEY_A, KEY_B, KEY_GUESS] {
        assert!(!log.contains(secret), "the daemon logged a key");
        assert!(
            results.iter().all(|r| !r.contains(secret)),
            "a result record holds a key"
        );
    }
}

/// Everything refused before a command is produced: 401, 403, 400 naming the field, 413, unknown paths and
/// queries; and `/openapi.json`.
async fn refusals_before_the_daemon(http: &Http) {
    let path = "/events/raw/reprocess";
    let body = original_request("cust-3");
    assert_error(
        &http.post(path, None, None, &body).await,
        401,
        None,
        "no key",
    );
    assert_error(
        &http.post(path, Some(KEY_GUESS), None, &body).await,
        401,
        None,
        "unknown key",
    );
    assert_error(
        &http.get(path, None, None).await,
        401,
        None,
        "list without a key",
    );
    assert_error(
        &http.post(path, Some(KEY_A), Some("e2"), &body).await,
        403,
        Some("environment_id"),
        "an environment outside the key",
    );
    assert_error(
        &http.get(path, Some(KEY_A), Some("e2")).await,
        403,
        Some("environment_id"),
        "listing an environment outside the key",
    );
    let with = |k: &str, v: Value| {
        let mut b = body.clone();
        b.as_object_mut().unwrap().insert(k.into(), v);
        b
    };
    for (bad, field) in [
        (with("batch_size", json!(0)), "batch_size"),
        (with("start_date", json!("last tuesday")), "start_date"),
        (with("customer", json!("cust-3")), "customer"),
        (with("mode", json!("some")), "mode"),
        (with("job_id", json!("no spaces allowed")), "job_id"),
    ] {
        let answer = http.post(path, Some(KEY_A), None, &bad).await;
        assert_error(&answer, 400, Some(field), &bad.to_string());
        assert!(
            answer.1["error"].as_str().unwrap().contains(field),
            "{}",
            answer.1
        );
    }
    let answer = http
        .call(
            Method::POST,
            path,
            Some(KEY_A),
            None,
            Some("{not json".into()),
        )
        .await;
    assert_error(&answer, 400, None, "a body that is not JSON");
    let huge = with("job_id", json!("x".repeat(MAX_BODY)));
    assert_error(
        &http.post(path, Some(KEY_A), None, &huge).await,
        413,
        None,
        "a body over api.max_body_bytes",
    );
    assert_error(
        &http
            .get(&format!("{path}?status=done"), Some(KEY_A), None)
            .await,
        400,
        Some("status"),
        "an unknown status",
    );
    assert_error(
        &http
            .get("/events/raw/reprocess/nope/cancel", Some(KEY_A), None)
            .await,
        405,
        None,
        "GET of a POST endpoint",
    );
    assert_error(
        &http.get("/events/raw/nope", Some(KEY_A), None).await,
        404,
        None,
        "an unknown path",
    );

    let (code, doc) = http.get("/openapi.json", None, None).await;
    assert_eq!(code, 200, "{doc}");
    for p in [
        "/events/raw/reprocess",
        "/events/raw/reprocess/{job_id}",
        "/events/raw/reprocess/{job_id}/{action}",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from /openapi.json"
        );
    }
}

/// The original request with tenant A's key (its single environment): 202 with the original design's
/// names, then `GET` reports it `completed` with the counters of exactly tenant A's matching rows, and the
/// output topic holds exactly their events. Returns the job id.
async fn original_request_replays_tenant_a(env: &Env, http: &Http, rows_a: &[InsertRow]) -> String {
    let (code, v) = http
        .post(
            "/events/raw/reprocess",
            Some(KEY_A),
            None,
            &original_request("cust-3"),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let job = v["job_id"].as_str().expect("job_id").to_string();
    assert_eq!(v["workflow_id"], job.as_str(), "{v}");
    assert!(job.starts_with(&format!("{TENANT_A}-")), "{v}");
    assert!(
        v["status"] == "accepted" || v["status"] == "queued",
        "the daemon's verdict: {v}"
    );
    let commands = env.topic("commands");
    let run_id = v["run_id"].as_str().unwrap();
    assert!(run_id.starts_with(&format!("{commands}-")), "{v}");
    assert_eq!(v["task_queue"], commands.as_str(), "{v}");
    assert_eq!(v["status_url"], job_path(&job).as_str(), "{v}");

    let view = http
        .wait_job(&job, KEY_A, "completed", Duration::from_secs(120))
        .await;
    let selected: Vec<InsertRow> = rows_a
        .iter()
        .filter(|r| r.external_customer_id == "cust-3")
        .cloned()
        .collect();
    let expected = expected_events(&selected);
    let found = selected.len() as i64;
    let published = expected.len() as i64;
    assert!(
        found > published && published > 0,
        "the data has unpublishable rows"
    );
    assert_eq!(view["total_events_found"], found, "{view}");
    assert_eq!(view["total_events_published"], published, "{view}");
    assert_eq!(
        view["total_transformation_errors"],
        found - published,
        "{view}"
    );
    assert_eq!(view["total_events_dropped"], 0, "{view}");
    assert_eq!(view["total_events_failed"], 0, "{view}");
    assert!(
        view["processed_batches"].as_i64().unwrap() >= found / 7,
        "{view}"
    );
    assert!(view["completed_at"].is_string(), "{view}");
    assert_eq!(view["eta_seconds"], 0.0, "{view}");
    assert_eq!(view["parts"], json!([]), "{view}");
    assert_eq!(view["cursor"]["external_customer_id"], "cust-3", "{view}");
    assert_eq!(
        (&view["tenant_id"], &view["environment_id"]),
        (&json!(TENANT_A), &json!("e1"))
    );
    // The same counters as the job's final result record.
    let last = env.wait_final(&job, Duration::from_secs(10));
    for k in [
        "total_events_found",
        "total_events_published",
        "processed_batches",
        "completed_at",
    ] {
        assert_eq!(view[k], last[k], "{k}: {view} vs {last}");
    }
    assert_exactly_once(env, &expected);

    // Listed for its tenant, by status.
    let (code, list) = http
        .get("/events/raw/reprocess?status=completed", Some(KEY_A), None)
        .await;
    assert_eq!(code, 200, "{list}");
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [job.as_str()], "{list}");
    let (_, running) = http
        .get(
            "/events/raw/reprocess?status=running,queued",
            Some(KEY_A),
            None,
        )
        .await;
    assert_eq!(running["jobs"], json!([]), "{running}");

    // The same job id again: the daemon's `duplicate` verdict, 409, nothing started.
    let mut again = original_request("cust-3");
    again["job_id"] = json!(job);
    assert_error(
        &http
            .post("/events/raw/reprocess", Some(KEY_A), Some("e1"), &again)
            .await,
        409,
        Some("job_id"),
        "an existing job id",
    );
    assert_exactly_once(env, &expected);
    job
}

/// Tenant B's key: its tenant is the key's (a body naming tenant A is refused), tenant A's job is unknown to
/// it (the same 404 as a job that does not exist), and its list holds none of tenant A's jobs.
async fn tenant_b_neither_replays_nor_sees_tenant_a(http: &Http, job_a: &str) {
    let mut body = original_request("cust-3");
    body["tenant_id"] = json!(TENANT_A);
    assert_error(
        &http
            .post("/events/raw/reprocess", Some(KEY_B), Some("e1"), &body)
            .await,
        403,
        Some("tenant_id"),
        "another tenant in the body",
    );
    let not_found = |job: &str| {
        (
            404u16,
            json!({"error": format!("unknown job `{job}`"), "field": "job_id"}),
        )
    };
    assert_eq!(
        http.get(&job_path(job_a), Some(KEY_B), None).await,
        not_found(job_a)
    );
    assert_eq!(
        http.get(&job_path("no-such-job"), Some(KEY_B), None).await,
        not_found("no-such-job"),
        "another tenant's job and an unknown one get the same answer"
    );
    assert_eq!(
        http.get(&job_path("no-such-job"), Some(KEY_A), None).await,
        not_found("no-such-job")
    );
    let cancel = format!("{}/cancel", job_path(job_a));
    assert_eq!(
        http.post(&cancel, Some(KEY_B), None, &json!({})).await,
        not_found(job_a)
    );
    let (code, list) = http.get("/events/raw/reprocess", Some(KEY_B), None).await;
    assert_eq!((code, &list["jobs"]), (200, &json!([])), "{list}");
    // Tenant A's own view is untouched.
    let (code, v) = http.get(&job_path(job_a), Some(KEY_A), Some("e1")).await;
    assert_eq!((code, &v["status"]), (200, &json!("completed")), "{v}");
}

/// A throttled job: pause (202, then 409 while paused), resume, cancel (202), then 409 once final.
async fn controls_follow_the_job(http: &Http) {
    let job = "api-slow-1";
    let body = json!({"job_id": job, "start_date": rfc3339(T0), "end_date": rfc3339(T0 + DAY),
                      "batch_size": 10, "max_events_per_second": 25});
    let (code, v) = http
        .post("/events/raw/reprocess", Some(KEY_A), None, &body)
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["job_id"], job);
    http.wait_job(job, KEY_A, "running", Duration::from_secs(60))
        .await;
    let control = |action: &str| format!("{}/{action}", job_path(job));
    let (code, v) = http
        .post(&control("pause"), Some(KEY_A), None, &json!({}))
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(
        (&v["action"], &v["status"]),
        (&json!("pause"), &json!("requested"))
    );
    let paused = http
        .wait_job(job, KEY_A, "paused", Duration::from_secs(60))
        .await;
    assert!(paused["cursor"].is_object(), "{paused}");
    assert_error(
        &http
            .post(&control("pause"), Some(KEY_A), None, &json!({}))
            .await,
        409,
        None,
        "pausing a paused job",
    );
    let (code, v) = http
        .post(&control("resume"), Some(KEY_A), None, &json!({}))
        .await;
    assert_eq!(code, 202, "{v}");
    http.wait_job(job, KEY_A, "running", Duration::from_secs(60))
        .await;
    let (code, v) = http
        .post(&control("cancel"), Some(KEY_A), None, &json!({}))
        .await;
    assert_eq!(code, 202, "{v}");
    let cancelled = http
        .wait_job(job, KEY_A, "cancelled", Duration::from_secs(60))
        .await;
    assert!(
        cancelled["total_events_found"].as_i64().unwrap() < 1_200,
        "cancelled before the end: {cancelled}"
    );
    assert_error(
        &http
            .post(&control("cancel"), Some(KEY_A), None, &json!({}))
            .await,
        409,
        None,
        "cancelling a cancelled job",
    );
}

/// A request with `parallelism`: the split job's view holds its parts, each a job of its own naming the split
/// job, whose counters add up to the split job's.
async fn a_split_job_shows_its_parts(http: &Http) {
    let job = "api-split-1";
    let body = json!({"job_id": job, "environment_id": "e1", "start_date": rfc3339(T0),
                      "end_date": rfc3339(T0 + DAY), "batch_size": 50, "parallelism": 2});
    let (code, v) = http
        .post("/events/raw/reprocess", Some(KEY_B), None, &body)
        .await;
    assert_eq!(code, 202, "{v}");
    let view = http
        .wait_job(job, KEY_B, "completed", Duration::from_secs(120))
        .await;
    assert_eq!(view["total_events_found"], 300, "{view}");
    let parts = view["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2, "{view}");
    let mut found = 0;
    for (k, part) in parts.iter().enumerate() {
        assert_eq!(part["job_id"], format!("{job}.part-{k}"), "{part}");
        assert_eq!(part["parent_job_id"], job, "{part}");
        assert_eq!(part["status"], "completed", "{part}");
        assert!(part["instance"].is_string(), "{part}");
        found += part["total_events_found"].as_i64().unwrap();
    }
    assert_eq!(found, 300, "{view}");
}
