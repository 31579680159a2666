//! The daemon end to end against the real broker and the real ClickHouse engine (`scripts/services.sh up`):
//! real input in, exact events, dead letters and counters out; bad commands; tenant isolation. The main job
//! runs as in production: Kafka over SASL_SSL (SCRAM) and ClickHouse over HTTPS with the local CA, secrets
//! from files, and the variables Kubernetes injects for a Service named `reprocessor`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use raw_events_reprocessor::config::Config;
use raw_events_reprocessor::daemon;
use raw_events_reprocessor::job::Disposition;
use raw_events_reprocessor::transform::{self, Outcome};
use serde_json::Value;
use support::harness::{
    Env, InsertRow, assert_exactly_once, expected_events, realistic_payload, realistic_rows,
    reprocess_command, rfc3339,
};
use support::{DAY, T0};

/// What the transformation oracle says one row must become.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Expect {
    Event(String),
    Dead { stage: String, reason: String },
}

fn expect_of(payload: &[u8], tenant: &str, env: &str) -> Expect {
    let outcome = transform::transform(payload, tenant, env);
    match (Disposition::of(&outcome), outcome) {
        (_, Outcome::Event(e)) => Expect::Event(e.json),
        (Disposition::DeadLetter { stage, reason }, _) => Expect::Dead {
            stage: stage.as_str().into(),
            reason: reason.into(),
        },
        (Disposition::Publish, other) => panic!("published without an event: {other:?}"),
    }
}

/// The vector cases of tenant_test/env_test, with what the reference says they become.
fn vector_rows() -> Vec<(String, Expect)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/transform_reference.jsonl"
    ))
    .expect("tests/fixtures/transform_reference.jsonl");
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["tenant_id"] != "tenant_test" || v["environment_id"] != "env_test" {
            continue;
        }
        let payload = v["payload"].as_str().unwrap().to_string();
        let exp = &v["expect"];
        let e = match exp["outcome"].as_str().unwrap() {
            "event" => Expect::Event(
                exp.get("event_product")
                    .unwrap_or(&exp["event"])
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            "dropped" => match expect_of(payload.as_bytes(), "tenant_test", "env_test") {
                // The vectors say "dropped"; which rule dropped it is the transformation's (tested there).
                d @ Expect::Dead { .. } => d,
                other => panic!("vector {} is dropped, transform says {other:?}", v["name"]),
            },
            "error" => Expect::Dead {
                stage: "transformation".into(),
                reason: if exp["hint"].as_str().unwrap_or("").contains("createdAt") {
                    "timestamp".into()
                } else {
                    "decode".into()
                },
            },
            "marshal_error" => Expect::Dead {
                stage: "publish".into(),
                reason: "encode".into(),
            },
            o => panic!("unknown outcome {o}"),
        };
        out.push((payload, e));
    }
    out
}

/// Runs `reprocessor health` until it reports ready (exit 0); returns its output.
fn wait_ready(env: &Env, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let out = env.cli(&["health"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon is not ready after {timeout:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn counts<T: std::hash::Hash + Eq + Clone>(
    items: impl IntoIterator<Item = T>,
) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_input_end_to_end_is_exact() {
    let secure = support::secure();
    let mut env = Env::secure("e2e_real", secure).await;
    // What Kubernetes injects for a Service named `reprocessor`: ignored, with one warning.
    for (k, v) in [
        ("REPROCESSOR_PORT", "tcp://10.0.0.7:9464"),
        ("REPROCESSOR_PORT_9464_TCP", "tcp://10.0.0.7:9464"),
        ("REPROCESSOR_SERVICE_HOST", "10.0.0.7"),
    ] {
        env.extra_env.push((k.into(), v.into()));
    }
    let tenant = "tenant_test";
    let envid = "env_test";
    let mut rows = Vec::new();
    let mut expected: Vec<(String, Expect)> = Vec::new(); // (raw id, expectation)

    for (i, (payload, e)) in vector_rows().into_iter().enumerate() {
        let id = format!("vec-{i:04}");
        let ts = T0 + (i as i64 % 3) * DAY + i as i64 * 1_000;
        rows.push(InsertRow::new(
            &id,
            tenant,
            envid,
            &format!("cust-{}", i % 7),
            ts,
            payload.as_bytes(),
        ));
        expected.push((id, e));
    }
    let sample = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sample_payload.json"
    ))
    .expect("tests/fixtures/sample_payload.json");
    rows.push(InsertRow::new(
        "sample-1",
        tenant,
        envid,
        "cust-sample",
        T0 + 5_000,
        &sample,
    ));
    expected.push(("sample-1".into(), expect_of(&sample, tenant, envid)));
    for i in 0..20_000u64 {
        let id = format!("gen-{i:06}");
        let ts = T0 + (i as i64 * 37_003) % (3 * DAY);
        let payload = if i.is_multiple_of(997) {
            // Some invalid rows among the realistic ones: not JSON, bad time, missing orgId, not UTF-8.
            match (i / 997) % 4 {
                0 => b"{not json".to_vec(),
                1 => realistic_payload(i, "org-1", "yesterday").into_bytes(),
                2 => realistic_payload(i, "", &rfc3339(ts)).into_bytes(),
                _ => {
                    let mut p = realistic_payload(i, "org-1", &rfc3339(ts)).into_bytes();
                    p.insert(p.len() - 1, 0xff);
                    p
                }
            }
        } else {
            realistic_payload(i, &format!("org-{}", i % 50), &rfc3339(ts)).into_bytes()
        };
        expected.push((id.clone(), expect_of(&payload, tenant, envid)));
        rows.push(InsertRow::new(
            &id,
            tenant,
            envid,
            &format!("cust-{}", i % 50),
            ts,
            &payload,
        ));
    }
    // Rows outside the job: another tenant, another environment, and the range's end (exclusive).
    rows.push(InsertRow::new(
        "other-tenant",
        "tenant_other",
        envid,
        "cust-0",
        T0 + 1,
        &sample,
    ));
    rows.push(InsertRow::new(
        "other-env",
        tenant,
        "env_other",
        "cust-0",
        T0 + 1,
        &sample,
    ));
    rows.push(InsertRow::new(
        "at-end",
        tenant,
        envid,
        "cust-0",
        T0 + 3 * DAY,
        &sample,
    ));
    env.insert(&rows).await;

    let mut daemon = env.running_daemon();
    let health = wait_ready(&env, Duration::from_secs(60));
    assert!(health.starts_with("ready: "), "{health}");
    let cmd = format!(
        r#"{{"type":"reprocess","job_id":"real-1","tenant_id":"{tenant}","environment_id":"{envid}","start_date":"{}","end_date":"{}","batch_size":1000}}"#,
        rfc3339(T0),
        rfc3339(T0 + 3 * DAY)
    );
    env.submit("real-1", &cmd).await;
    let fin = env.wait_final("real-1", Duration::from_secs(300));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());

    // Output: exactly the expected events, bytes equal, each once; headers and key as the transformation says.
    let out = env.read_all("output");
    let got_events = counts(
        out.iter()
            .map(|r| String::from_utf8(r.value.clone()).unwrap()),
    );
    let want_events = counts(expected.iter().filter_map(|(_, e)| match e {
        Expect::Event(j) => Some(j.clone()),
        _ => None,
    }));
    assert_eq!(
        got_events.len(),
        want_events.len(),
        "distinct events differ"
    );
    assert!(
        got_events == want_events,
        "output events differ from the expectation"
    );
    for r in &out {
        let v = r.json();
        let key = format!(
            "{}:{}",
            v["tenant_id"].as_str().unwrap(),
            v["external_customer_id"].as_str().unwrap()
        );
        assert_eq!(r.key.as_deref(), Some(key.as_str()));
        assert_eq!(
            r.headers["_watermill_message_uuid"],
            v["id"].as_str().unwrap()
        );
        assert_eq!(r.headers["tenant_id"], tenant);
        assert_eq!(r.headers["environment_id"], envid);
    }

    // Dead letters: exactly the rows that were not published, with stage and reason.
    let dlq = env.read_all("dlq");
    let got_dead: HashMap<String, (String, String)> = dlq
        .iter()
        .map(|r| {
            let v = r.json();
            assert_eq!(v["job_id"], "real-1");
            assert_eq!(r.headers["stage"], v["stage"].as_str().unwrap());
            assert_eq!(r.key.as_deref(), v["raw_event"]["id"].as_str());
            (
                v["raw_event"]["id"].as_str().unwrap().to_string(),
                (
                    v["stage"].as_str().unwrap().to_string(),
                    v["reason"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(got_dead.len(), dlq.len(), "a row was dead-lettered twice");
    let want_dead: HashMap<String, (String, String)> = expected
        .iter()
        .filter_map(|(id, e)| match e {
            Expect::Dead { stage, reason } => Some((id.clone(), (stage.clone(), reason.clone()))),
            _ => None,
        })
        .collect();
    assert_eq!(got_dead, want_dead);
    let invalid_utf8 = dlq
        .iter()
        .map(|r| r.json())
        .find(|v| v["raw_event"]["payload_base64"].is_string());
    assert!(
        invalid_utf8.is_some(),
        "the non-UTF-8 payload travels as payload_base64"
    );

    // Counters.
    let n = |f: fn(&Expect) -> bool| expected.iter().filter(|(_, e)| f(e)).count() as i64;
    let published = n(|e| matches!(e, Expect::Event(_)));
    let dropped = n(|e| matches!(e, Expect::Dead { stage, .. } if stage == "validation"));
    let terr = n(|e| matches!(e, Expect::Dead { stage, .. } if stage == "transformation"));
    let failed = n(|e| matches!(e, Expect::Dead { stage, .. } if stage == "publish"));
    assert_eq!(fin["total_events_found"], expected.len() as i64, "{fin}");
    assert_eq!(fin["total_events_published"], published, "{fin}");
    assert_eq!(fin["total_events_dropped"], dropped, "{fin}");
    assert_eq!(fin["total_transformation_errors"], terr, "{fin}");
    assert_eq!(fin["total_events_failed"], failed, "{fin}");
    assert_eq!(fin["total_events_sampled_out"], 0);
    assert!(fin["processed_batches"].as_i64().unwrap() >= 21, "{fin}");
    assert!(
        fin["started_at"].is_string() && fin["completed_at"].is_string(),
        "{fin}"
    );
    assert!(fin["cursor"]["id"].is_string(), "{fin}");
    let statuses: Vec<String> = env
        .results("real-1")
        .iter()
        .map(|v| v["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("accepted"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("completed"),
        "{statuses:?}"
    );

    // The per-row log lines carry the original design's messages.
    let log = daemon.log();
    assert!(log.contains("batch processing complete"), "{log}");
    assert!(log.contains("validation failed - event dropped"));
    assert!(log.contains("transformation error - event skipped"));
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ignoring environment variables"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line: {warnings:?}");
    assert!(
        warnings[0]
            .contains("REPROCESSOR_PORT, REPROCESSOR_PORT_9464_TCP, REPROCESSOR_SERVICE_HOST"),
        "{}",
        warnings[0]
    );
    assert!(
        !log.contains(&secure.sasl_password()),
        "the SASL password is in the daemon's log"
    );
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon did not exit cleanly on SIGTERM: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_are_rejected_and_good_ones_complete() {
    let env = Env::new("e2e_cmds").await;
    let tenant = "t_cmds";
    let sample = realistic_payload(1, "org-1", &rfc3339(T0 + 10));
    let rows: Vec<InsertRow> = (0..50)
        .map(|i| {
            InsertRow::new(
                &format!("r{i}"),
                tenant,
                "e1",
                "c1",
                T0 + i * 1000,
                realistic_payload(i as u64, "org-1", &rfc3339(T0 + i)).as_bytes(),
            )
        })
        .collect();
    env.insert(&rows).await;
    let _ = sample;
    let mut daemon = env.running_daemon();
    let start = rfc3339(T0);
    let end = rfc3339(T0 + DAY);
    let good = |id: &str| {
        format!(
            r#"{{"type":"reprocess","job_id":"{id}","tenant_id":"{tenant}","environment_id":"e1","start_date":"{start}","end_date":"{end}","batch_size":7}}"#
        )
    };
    let base = format!(
        r#""type":"reprocess","tenant_id":"{tenant}","environment_id":"e1","start_date":"{start}""#
    );
    let bad: Vec<(String, &str)> = vec![
        ("not json at all".into(), "JSON"),
        ("[]".into(), "object"),
        ("{}".into(), "type"),
        (r#"{"type":"explode","job_id":"b3"}"#.into(), "type"),
        (
            format!(r#"{{{base},"job_id":"b4","tenantt":"x"}}"#),
            "tenantt",
        ),
        (
            format!(r#"{{{base},"job_id":"b5","batch_size":0}}"#),
            "batch_size",
        ),
        (
            format!(r#"{{{base},"job_id":"b6","batch_size":100000}}"#),
            "batch_size",
        ),
        (
            format!(r#"{{{base},"job_id":"b7","batch_size":"10"}}"#),
            "batch_size",
        ),
        (format!(r#"{{{base},"job_id":"b8","mode":"some"}}"#), "mode"),
        (
            format!(r#"{{{base},"job_id":"b9","end_date":"{start}"}}"#),
            "end_date",
        ),
        (
            format!(r#"{{{base},"job_id":"b10","end_date":"2020-01-01T00:00:00Z"}}"#),
            "end_date",
        ),
        (
            format!(r#"{{{base},"job_id":"b11","end_date":"soon"}}"#),
            "end_date",
        ),
        (
            format!(
                r#"{{"type":"reprocess","job_id":"b12","tenant_id":"{tenant}","environment_id":"e1"}}"#
            ),
            "start_date",
        ),
        (
            format!(
                r#"{{"type":"reprocess","job_id":"b13","tenant_id":"{tenant}","environment_id":"e1","start_date":"2024-02-30T00:00:00Z"}}"#
            ),
            "start_date",
        ),
        (
            format!(
                r#"{{"type":"reprocess","job_id":"b14","tenant_id":"","environment_id":"e1","start_date":"{start}"}}"#
            ),
            "tenant_id",
        ),
        (
            format!(
                r#"{{"type":"reprocess","job_id":"b15","tenant_id":"{tenant}","start_date":"{start}"}}"#
            ),
            "environment_id",
        ),
        (
            format!(
                r#"{{"type":"reprocess","job_id":"b16","tenant_id":"{tenant}","environment_id":"  ","start_date":"{start}"}}"#
            ),
            "environment_id",
        ),
        (
            format!(r#"{{{base},"job_id":"b17","event_names":[]}}"#),
            "event_names",
        ),
        (
            format!(r#"{{{base},"job_id":"b18","external_customer_ids":[]}}"#),
            "external_customer_ids",
        ),
        (
            format!(r#"{{{base},"job_id":"b19","event_ids":[1]}}"#),
            "event_ids",
        ),
        (
            format!(r#"{{{base},"job_id":"b20","event_name":"a","event_names":["b"]}}"#),
            "not both",
        ),
        (
            format!(r#"{{{base},"job_id":"b21","sample_rate":0}}"#),
            "sample_rate",
        ),
        (
            format!(r#"{{{base},"job_id":"b22","sample_rate":2}}"#),
            "sample_rate",
        ),
        (
            format!(r#"{{{base},"job_id":"b23","max_events_per_second":0}}"#),
            "max_events_per_second",
        ),
        (
            format!(r#"{{{base},"job_id":"b24","dry_run":"no"}}"#),
            "dry_run",
        ),
        (format!(r#"{{{base},"job_id":"bad id!"}}"#), "job_id"),
        (
            r#"{"type":"cancel","job_id":"nope-unknown"}"#.into(),
            "unknown job",
        ),
        (
            r#"{"type":"pause","job_id":"nope-unknown"}"#.into(),
            "unknown job",
        ),
        (r#"{"type":"resume"}"#.into(), "job_id"),
        (
            r#"{"type":"cancel","job_id":"x","extra":1}"#.into(),
            "extra",
        ),
        (
            format!(r#"{{{base},"job_id":"b31","external_customer_id":5}}"#),
            "external_customer_id",
        ),
        // A job attached to a split job that does not list it (good-1 is no split job), and a part's id taken.
        (
            format!(r#"{{{base},"job_id":"good-1.part-0","parent_job_id":"good-1"}}"#),
            "parent_job_id",
        ),
        (
            format!(r#"{{{base},"job_id":"b32.part-3"}}"#),
            "parts of split jobs",
        ),
    ];
    // Interleave: good, bad, bad, ..., on one key so they share a partition and its order.
    env.submit("k", &good("good-1")).await;
    for (i, (cmd, _)) in bad.iter().enumerate() {
        env.submit("k", cmd).await;
        if i == 10 {
            env.submit("k", &good("good-2")).await;
        }
    }
    env.submit("k", &good("good-1")).await; // duplicate job id
    env.submit("k", &good("good-3")).await;
    for id in ["good-1", "good-2", "good-3"] {
        let fin = env.wait_final(id, Duration::from_secs(120));
        assert_eq!(fin["status"], "completed", "{id}: {fin}\n{}", daemon.log());
        assert_eq!(fin["total_events_found"], 50);
        assert_eq!(fin["total_events_published"], 50);
    }
    let results = env.read_all("results");
    let rejected: Vec<Value> = results
        .iter()
        .map(|r| r.json())
        .filter(|v| v["status"] == "rejected")
        .collect();
    assert_eq!(
        rejected.len(),
        bad.len(),
        "one rejection per bad command: {rejected:#?}"
    );
    for (cmd, needle) in &bad {
        assert!(
            rejected
                .iter()
                .any(|v| v["reason"].as_str().unwrap_or("").contains(needle)),
            "no rejection mentions {needle:?} for {cmd}"
        );
    }
    for v in &rejected {
        assert!(
            v["offset"].is_i64() && v["partition"].is_i64() && v["topic"].is_string(),
            "{v}"
        );
    }
    let dup: Vec<Value> = results
        .iter()
        .map(|r| r.json())
        .filter(|v| v["status"] == "duplicate")
        .collect();
    assert_eq!(dup.len(), 1, "{dup:?}");
    assert_eq!(dup[0]["job_id"], "good-1");
    // good-1 published its 50 events once (not again for the duplicate); good-2 and good-3 theirs.
    assert_eq!(env.read_all("output").len(), 150);
    assert!(daemon.alive(), "the daemon must survive bad commands");
    // Every command's offset is committed: nothing is re-read after a restart.
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()));
    let mut again = env.start_daemon();
    std::thread::sleep(Duration::from_secs(8));
    let results_after = env.read_all("results").len();
    assert_eq!(
        results_after,
        results.len(),
        "commands were handled again after a restart\n{}",
        again.log()
    );
    again.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_never_reads_another_tenants_rows() {
    let env = Env::new("e2e_tenants").await;
    let mut rows = Vec::new();
    for i in 0..300i64 {
        for (tenant, org) in [("tenant_a", "org-a"), ("tenant_b", "org-b")] {
            rows.push(InsertRow::new(
                &format!("{tenant}-{i}"),
                tenant,
                "env",
                &format!("cust-{}", i % 5),
                T0 + i * 60_000,
                realistic_payload(i as u64, org, &rfc3339(T0 + i)).as_bytes(),
            ));
        }
    }
    env.insert(&rows).await;
    let _daemon = env.running_daemon();
    env.submit(
        "ta",
        &format!(
            r#"{{"type":"reprocess","job_id":"ta","tenant_id":"tenant_a","environment_id":"env","start_date":"{}","end_date":"{}","batch_size":50}}"#,
            rfc3339(T0),
            rfc3339(T0 + DAY)
        ),
    )
    .await;
    let fin = env.wait_final("ta", Duration::from_secs(120));
    assert_eq!(fin["total_events_found"], 300, "{fin}");
    let out = env.read_all("output");
    assert_eq!(out.len(), 300);
    for r in &out {
        assert_eq!(r.headers["tenant_id"], "tenant_a");
        let v = r.json();
        assert_eq!(v["tenant_id"], "tenant_a");
        assert!(r.key.as_deref().unwrap().starts_with("tenant_a:"));
    }
    assert!(env.read_all("dlq").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_beyond_the_concurrency_limit_queue_and_start_in_acceptance_order() {
    let mut env = Env::new("e2e_queue").await;
    env.extra_env
        .push(("REPROCESSOR_PROCESSING__CONCURRENCY".into(), "1".into()));
    let rows = support::harness::realistic_rows("t_q", "e1", 3_000, T0, DAY);
    env.insert(&rows).await;
    let _daemon = env.running_daemon();
    let ids = ["q-1", "q-2", "q-3"];
    for id in ids {
        env.submit(
            "same-key",
            &format!(
                r#"{{"type":"reprocess","job_id":"{id}","tenant_id":"t_q","environment_id":"e1","start_date":"{}","end_date":"{}","batch_size":100}}"#,
                rfc3339(T0),
                rfc3339(T0 + DAY)
            ),
        )
        .await;
    }
    let mut windows = Vec::new();
    for id in ids {
        let fin = env.wait_final(id, Duration::from_secs(180));
        assert_eq!(fin["status"], "completed", "{fin}");
        assert_eq!(fin["total_events_found"], 3_000);
        windows.push((
            fin["started_at"].as_str().unwrap().to_string(),
            fin["completed_at"].as_str().unwrap().to_string(),
        ));
    }
    // One at a time, in acceptance order: each starts after the previous one completed.
    for w in windows.windows(2) {
        assert!(w[1].0 >= w[0].1, "jobs overlapped: {windows:?}");
    }
    for id in ["q-2", "q-3"] {
        let statuses: Vec<String> = env
            .results(id)
            .iter()
            .map(|v| v["status"].as_str().unwrap().to_string())
            .collect();
        assert!(
            statuses.contains(&"queued".to_string()),
            "{id}: {statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_too_large_for_the_real_topic_are_dead_lettered() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let env = Env::new("e2e_large").await;
    // The output topic exists with a small limit that the configuration (1 MiB by default) does not know.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &env.kafka)
        .create()
        .unwrap();
    let out = env.topic("output");
    let r =
        admin
            .create_topics(
                [&NewTopic::new(&out, 3, TopicReplication::Fixed(1))
                    .set("max.message.bytes", "4096")],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let mut rows = Vec::new();
    for i in 0..40i64 {
        let ts = T0 + i * 1000;
        let mut payload = realistic_payload(i as u64, "org-1", &rfc3339(ts));
        if i % 10 == 3 {
            // A data member of 6 KB makes an event larger than the topic accepts.
            let big = "x".repeat(6_000);
            payload = payload.replacen("\"data\":{", &format!("\"data\":{{\"note\":\"{big}\","), 1);
        }
        rows.push(InsertRow::new(
            &format!("r{i:02}"),
            "t_large",
            "e1",
            "c1",
            ts,
            payload.as_bytes(),
        ));
    }
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit(
        "large",
        &format!(
            r#"{{"type":"reprocess","job_id":"large","tenant_id":"t_large","environment_id":"e1","start_date":"{}","end_date":"{}","batch_size":15}}"#,
            rfc3339(T0),
            rfc3339(T0 + DAY)
        ),
    )
    .await;
    let fin = env.wait_final("large", Duration::from_secs(120));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());
    assert_eq!(fin["total_events_found"], 40);
    assert_eq!(fin["total_events_published"], 36, "{fin}");
    assert_eq!(fin["total_events_failed"], 4, "{fin}");
    assert_eq!(env.read_all("output").len(), 36);
    let dlq: Vec<Value> = env.read_all("dlq").iter().map(|r| r.json()).collect();
    assert_eq!(dlq.len(), 4);
    for d in &dlq {
        assert_eq!(d["stage"], "publish");
        assert_eq!(d["reason"], "too_large", "{d}");
        assert!(d["raw_event"]["id"].as_str().unwrap().ends_with('3'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_assignment_is_not_lost() {
    let env = Env::new("e2e_sigterm").await;
    let mut daemon = env.start_daemon();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !daemon.log().contains("control partitions assigned") {
        assert!(
            std::time::Instant::now() < deadline,
            "no assignment:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = daemon.terminate(Duration::from_secs(35));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM during the assignment did not stop the daemon: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_broker_cannot_store_is_rejected_and_blocks_nothing() {
    let mut env = Env::new("e2e_poison").await;
    env.extra_env.push((
        "REPROCESSOR_TOPICS__STATE__MAX_MESSAGE_BYTES".into(),
        "100000".into(),
    ));
    env.insert(&support::harness::realistic_rows("t_p", "e1", 100, T0, DAY))
        .await;
    let mut daemon = env.running_daemon();
    // 10,000 event ids: the job's checkpoint is far larger than the state topic accepts.
    // Random-looking ids, so that compression cannot shrink the record under the limit.
    let ids: Vec<String> = (0..10_000u64)
        .map(|i| {
            let a = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
            let b = xxhash_rust::xxh3::xxh3_64(&a.to_le_bytes());
            format!("\"{a:016x}{b:016x}\"")
        })
        .collect();
    let range = format!(
        r#""start_date":"{}","end_date":"{}""#,
        rfc3339(T0),
        rfc3339(T0 + DAY)
    );
    env.submit(
        "k",
        &format!(
            r#"{{"type":"reprocess","job_id":"huge","tenant_id":"t_p","environment_id":"e1",{range},"event_ids":[{}]}}"#,
            ids.join(",")
        ),
    )
    .await;
    // A rate so low that its waits overflow: the job neither panics nor blocks a cancel.
    env.submit(
        "k",
        &format!(
            r#"{{"type":"reprocess","job_id":"crawl","tenant_id":"t_p","environment_id":"e1",{range},"batch_size":10,"max_events_per_second":1e-300}}"#
        ),
    )
    .await;
    env.submit(
        "k",
        &format!(r#"{{"type":"reprocess","job_id":"after","tenant_id":"t_p","environment_id":"e1",{range}}}"#),
    )
    .await;
    let rej = env.wait_final("huge", Duration::from_secs(120));
    assert_eq!(rej["status"], "rejected", "{rej}\n{}", daemon.log());
    assert!(
        rej["reason"]
            .as_str()
            .unwrap()
            .contains("max.message.bytes"),
        "{rej}"
    );
    let after = env.wait_final("after", Duration::from_secs(120));
    assert_eq!(after["status"], "completed", "{after}");
    assert_eq!(after["total_events_found"], 100);
    env.wait_status("crawl", &["accepted"], Duration::from_secs(60));
    env.submit("k", r#"{"type":"cancel","job_id":"crawl"}"#)
        .await;
    let crawl = env.wait_final("crawl", Duration::from_secs(120));
    assert_eq!(crawl["status"], "cancelled", "{crawl}\n{}", daemon.log());
    assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
    let status = daemon.terminate(Duration::from_secs(35));
    assert!(status.is_some_and(|s| s.success()));
}

/// Rows whose key columns are not valid UTF-8 (SPEC §4) are dead-lettered with reason `invalid_utf8` and never
/// fail a page: the job completes with exact counters, resuming from cursors that hold their bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_with_key_columns_that_are_not_utf8_are_dead_lettered() {
    let env = Env::new("e2e_badkeys").await;
    let rows: Vec<InsertRow> = (0..8)
        .map(|i| {
            let ts = T0 + i * 1000;
            let payload = realistic_payload(i as u64, "org-1", &rfc3339(ts));
            InsertRow::new(
                &format!("r{i}"),
                "t_bad",
                "e1",
                &format!("c{}", i % 3),
                ts,
                payload.as_bytes(),
            )
        })
        .collect();
    env.insert(&rows).await;
    let good = realistic_payload(99, "org-1", &rfc3339(T0 + 500));
    let sql = format!(
        "INSERT INTO {db}.raw_events (id, tenant_id, environment_id, external_customer_id, event_name, payload, timestamp, version) VALUES \
         (unhex('ff01'), 't_bad', 'e1', 'c1', 'usage', {{p:String}}, fromUnixTimestamp64Milli(toInt64({t}), 'UTC'), 1), \
         ('odd-customer', 't_bad', 'e1', unhex('63ff'), 'usage', {{p:String}}, fromUnixTimestamp64Milli(toInt64({t}), 'UTC'), 1), \
         ('odd-name', 't_bad', 'e1', 'c2', unhex('fe'), {{p:String}}, fromUnixTimestamp64Milli(toInt64({t}), 'UTC'), 1)",
        db = env.database,
        t = T0 + 500
    );
    env.client()
        .query(&sql)
        .param("p", &good)
        .execute()
        .await
        .unwrap();
    let daemon = env.running_daemon();
    env.submit(
        "badkeys",
        &format!(
            r#"{{"type":"reprocess","job_id":"badkeys","tenant_id":"t_bad","environment_id":"e1","start_date":"{}","end_date":"{}","batch_size":2}}"#,
            rfc3339(T0),
            rfc3339(T0 + DAY)
        ),
    )
    .await;
    let fin = env.wait_final("badkeys", Duration::from_secs(120));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());
    assert_eq!(fin["total_events_found"], 11, "{fin}");
    assert_eq!(fin["total_events_published"], 8, "{fin}");
    assert_eq!(fin["total_events_dropped"], 3, "{fin}");
    let dlq: Vec<Value> = env.read_all("dlq").iter().map(|r| r.json()).collect();
    assert_eq!(dlq.len(), 3, "{dlq:?}");
    for d in &dlq {
        assert_eq!(
            (d["stage"].as_str(), d["reason"].as_str()),
            (Some("validation"), Some("invalid_utf8")),
            "{d}"
        );
        assert!(
            d["message"].as_str().unwrap().contains("not valid UTF-8"),
            "{d}"
        );
    }
    let columns: Vec<&str> = dlq
        .iter()
        .map(|d| d["message"].as_str().unwrap().split('`').nth(1).unwrap())
        .collect();
    assert_eq!(
        columns
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        ["event_name", "external_customer_id", "id"]
            .into_iter()
            .collect()
    );
    support::harness::assert_exactly_once(&env, &support::harness::expected_events(&rows));
}

/// The daemon as a library (`daemon::run`) in the test's own runtime, configured like the binary from the
/// environment's variables: it completes a job exactly once and returns once its shutdown future completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_in_process_and_stops_when_asked() {
    let env = Env::new("in_process").await;
    let rows = realistic_rows("t_inproc", "e1", 3_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let cfg = Config::load_from(None, env.daemon_env()).expect("the test's configuration");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon::run(cfg, async {
        let _ = stopped.await;
    }));
    // The harness waits block: off the runtime's workers, which the daemon shares.
    tokio::task::block_in_place(|| env.wait_topics(Duration::from_secs(60)));
    env.submit(
        "inproc-1",
        &reprocess_command("inproc-1", "t_inproc", 1, r#","batch_size":500"#),
    )
    .await;
    let fin = tokio::task::block_in_place(|| env.wait_final("inproc-1", Duration::from_secs(120)));
    assert_eq!(fin["status"], "completed", "{fin}");
    assert_eq!(fin["total_events_found"], rows.len() as i64, "{fin}");
    assert_exactly_once(&env, &expected);

    stop.send(()).expect("the daemon listens for its shutdown");
    let ended = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the daemon returns within its shutdown grace")
        .expect("the daemon task does not panic");
    assert!(ended.is_ok(), "{ended:?}");
}
