//! Operating the daemon (issue 6), against the real broker and ClickHouse engine: the operator CLI
//! (`submit`, `watch`, `status`, `cancel`/`pause`/`resume`, `peek`), pause → restart → resume, cancel,
//! control commands on another partition, dry run, sampling, throttling, `/metrics` and `/readyz`.
//! Every test has its own namespace and daemon; tests that stop a service use their own instance of it.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use raw_events_reprocessor::batch::sampled_in;
use serde_json::Value;
use support::harness::{
    Env, InsertRow, assert_exactly_once, counters, expected_events, http_get, realistic_payload,
    realistic_rows, reprocess_command, rfc3339,
};
use support::{DAY, T0};
use support::{OwnServices, clickhouse_url, require_services};

fn command(job: &str, tenant: &str, extra: &str) -> String {
    reprocess_command(job, tenant, 1, extra)
}

/// Runs a CLI command, asserts it succeeded, returns its standard output.
fn cli_ok(env: &Env, args: &[&str]) -> String {
    let out = env.cli(args);
    assert!(
        out.status.success(),
        "reprocessor {} failed ({:?}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `reprocessor status JOB --json`.
fn status_of(env: &Env, job: &str) -> Value {
    serde_json::from_str(&cli_ok(env, &["status", job, "--json"])).unwrap()
}

/// Produces a command with `key`, on `partition` when given; returns the partition it landed on.
async fn produce(env: &Env, key: &str, partition: Option<i32>, value: &str) -> i32 {
    env.produce(key, partition, value).await.0
}

fn statuses(env: &Env, job: &str) -> Vec<String> {
    env.results(job)
        .iter()
        .map(|v| v["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The body of `GET /metrics`, asserting 200.
fn scrape_text(port: u16) -> String {
    let (code, body) = http_get(port, "/metrics");
    assert_eq!(code, 200, "/metrics: {body}");
    body
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

/// The value of the sample `name` having `labels`, if there is one.
fn sample(m: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let s = m
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))?;
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Rows of one tenant with some that are not published (bad JSON, bad time, missing orgId).
fn mixed_rows(tenant: &str, n: u64) -> Vec<InsertRow> {
    let mut rows = realistic_rows(tenant, "e1", n, T0, DAY);
    for (i, r) in rows.iter_mut().enumerate() {
        if i % 53 == 0 {
            let ts = rfc3339(r.timestamp);
            r.payload = match (i / 53) % 3 {
                0 => b"{not json".to_vec(),
                1 => realistic_payload(i as u64, "org-1", "yesterday").into_bytes(),
                _ => realistic_payload(i as u64, "", &ts).into_bytes(),
            };
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_restart_resume_completes_with_exact_counters() {
    let env = Env::new("op_pause").await;
    let rows = mixed_rows("t_pause", 8_000);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let mut daemon = env.running_daemon();

    let out = cli_ok(
        &env,
        &[
            "submit",
            "--tenant",
            "t_pause",
            "--environment",
            "e1",
            "--start",
            &rfc3339(T0),
            "--end",
            &rfc3339(T0 + DAY),
            "--batch-size",
            "200",
            "--max-events-per-second",
            "1000",
            "--job-id",
            "pause-1",
        ],
    );
    assert_eq!(out.trim(), "pause-1");
    env.wait_status("pause-1", &["progress"], Duration::from_secs(120));
    let sent = cli_ok(&env, &["pause", "pause-1"]);
    assert!(sent.contains("pause pause-1: sent"), "{sent}");
    env.wait_status("pause-1", &["paused"], Duration::from_secs(60));
    let paused = status_of(&env, "pause-1");
    assert_eq!(paused["status"], "paused", "{paused}");
    let found_at_pause = paused["total_events_found"].as_i64().unwrap();
    assert!(
        found_at_pause > 0 && found_at_pause < 8_000,
        "paused mid-way: {paused}"
    );
    assert!(paused["cursor"]["id"].is_string(), "{paused}");
    // The table lists the job too.
    let table = cli_ok(&env, &["status"]);
    assert!(
        table.contains("pause-1") && table.contains("paused"),
        "{table}"
    );

    // A restart keeps it paused, where it was.
    assert!(daemon.terminate(Duration::from_secs(60)).is_some());
    let mut daemon = env.start_daemon();
    std::thread::sleep(Duration::from_secs(6));
    let still = status_of(&env, "pause-1");
    assert_eq!(still["status"], "paused", "{still}\n{}", daemon.log());
    assert_eq!(still["total_events_found"], found_at_pause);

    cli_ok(&env, &["resume", "pause-1"]);
    let w = env.cli(&["watch", "pause-1", "--timeout", "180"]);
    let text = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(w.status.code(), Some(0), "{text}\n{}", daemon.log());
    assert!(text.contains("job pause-1: completed"), "{text}");
    assert!(
        text.contains("rows/s"),
        "progress lines are printed: {text}"
    );

    let fin = env.wait_final("pause-1", Duration::from_secs(10));
    assert_eq!(fin["status"], "completed");
    assert_eq!(fin["total_events_found"], 8_000, "{fin}");
    assert_eq!(
        fin["total_events_published"],
        expected.len() as i64,
        "{fin}"
    );
    let c = counters(&fin);
    assert_eq!(c[0], c[1] + c[2] + c[3] + c[4] + c[5], "{fin}");
    assert_eq!(
        env.read_all("dlq").len() as i64,
        c[2] + c[3] + c[4],
        "one dead letter per unpublished row"
    );
    assert_exactly_once(&env, &expected);
    let st = statuses(&env, "pause-1");
    for s in ["accepted", "paused", "resumed", "completed"] {
        assert!(st.iter().any(|x| x == s), "{s} missing from {st:?}");
    }
    // peek shows committed records as JSON lines with key and headers.
    let peek = cli_ok(&env, &["peek", "output", "--limit", "3"]);
    let lines: Vec<Value> = peek
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{peek}");
    assert!(lines[0]["key"].as_str().unwrap().starts_with("t_pause:"));
    assert!(lines[0]["headers"]["_watermill_message_uuid"].is_string());
    let dlq = cli_ok(&env, &["peek", "dlq", "--limit", "2", "--job", "pause-1"]);
    assert_eq!(dlq.lines().count(), 2, "{dlq}");
    let last = cli_ok(&env, &["peek", "results", "--last", "--limit", "1"]);
    assert!(last.contains("\"completed\""), "{last}");
    daemon.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_on_other_partitions_reach_the_job_and_cancel_ends_it() {
    let env = Env::new("op_cancel").await;
    let rows = realistic_rows("t_cancel", "e1", 8_000, T0, DAY);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    let p = produce(
        &env,
        "cancel-1",
        None,
        &command(
            "cancel-1",
            "t_cancel",
            r#","batch_size":100,"max_events_per_second":400"#,
        ),
    )
    .await;
    env.wait_status("cancel-1", &["progress"], Duration::from_secs(120));
    // kcat -k something-else -p <another partition>
    for (key, partition, action, status) in [
        ("not-the-job-id", (p + 1) % 3, "pause", "paused"),
        ("also-not-the-job-id", (p + 2) % 3, "resume", "resumed"),
    ] {
        let command = format!(r#"{{"type":"{action}","job_id":"cancel-1"}}"#);
        produce(&env, key, Some(partition), &command).await;
        env.wait_status("cancel-1", &[status], Duration::from_secs(60));
    }
    env.wait_status("cancel-1", &["progress"], Duration::from_secs(60));
    cli_ok(&env, &["cancel", "cancel-1"]);
    let fin = env.wait_final("cancel-1", Duration::from_secs(60));
    assert_eq!(fin["status"], "cancelled", "{fin}\n{}", daemon.log());
    let found = fin["total_events_found"].as_i64().unwrap();
    assert!(found < 8_000, "cancelled before the end: {fin}");
    // What was done before the cancel is published exactly once.
    assert_eq!(
        env.read_all("output").len() as i64,
        fin["total_events_published"].as_i64().unwrap()
    );
    let w = env.cli(&["watch", "cancel-1", "--timeout", "60"]);
    assert_eq!(w.status.code(), Some(4), "watch exits 4 for cancelled");

    // Cancelling again: the CLI refuses it locally (exit 5); sent anyway, the daemon rejects it, and the job
    // stays cancelled for watch.
    let again = env.cli(&["cancel", "cancel-1"]);
    assert_eq!(again.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already cancelled"));
    produce(
        &env,
        "cancel-1",
        None,
        r#"{"type":"cancel","job_id":"cancel-1"}"#,
    )
    .await;
    let rej = env.wait_status("cancel-1", &["rejected"], Duration::from_secs(60));
    assert!(
        rej["reason"]
            .as_str()
            .unwrap()
            .contains("already cancelled"),
        "{rej}"
    );
    let w = env.cli(&["watch", "cancel-1", "--timeout", "60"]);
    assert_eq!(
        w.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&w.stdout)
    );
    let st = status_of(&env, "cancel-1");
    assert_eq!(st["status"], "cancelled");
    assert_eq!(st["total_events_found"], found);

    // A control command for an unknown job: the CLI refuses it (exit 5); the daemon rejects it; watch exits 5.
    let refused = env.cli(&["pause", "no-such-job"]);
    assert_eq!(refused.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown job"));
    produce(
        &env,
        "no-such-job",
        None,
        r#"{"type":"pause","job_id":"no-such-job"}"#,
    )
    .await;
    let w = env.cli(&["watch", "no-such-job", "--timeout", "60"]);
    assert_eq!(
        w.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&w.stdout)
    );
    // A reprocess command the daemon rejects: watch exits 5; submit refuses it locally.
    produce(
        &env,
        "bad-1",
        None,
        &command("bad-1", "t_cancel", r#","batch_size":0"#),
    )
    .await;
    let w = env.cli(&["watch", "bad-1", "--timeout", "60"]);
    let text = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(w.status.code(), Some(5), "{text}");
    assert!(text.contains("batch_size"), "{text}");
    let local = env.cli(&[
        "submit",
        "--tenant",
        "t",
        "--environment",
        "e",
        "--start",
        "2024-01-01T00:00:00Z",
        "--batch-size",
        "0",
    ]);
    assert_eq!(local.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&local.stderr).contains("batch_size"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_publishes_nothing_and_reports_what_a_real_run_does() {
    let env = Env::new("op_dry").await;
    let rows = mixed_rows("t_dry", 3_000);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    let base = [
        "submit",
        "--tenant",
        "t_dry",
        "--environment",
        "e1",
        "--start",
        &rfc3339(T0),
        "--end",
        &rfc3339(T0 + DAY),
        "--batch-size",
        "500",
    ];
    let mut args = base.to_vec();
    args.extend(["--job-id", "dry-1", "--dry-run", "--watch"]);
    let w = env.cli(&args);
    let text = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(w.status.code(), Some(0), "{text}\n{}", daemon.log());
    assert!(text.starts_with("dry-1\n"), "{text}");
    assert!(text.contains("dry run"), "{text}");
    let dry = env.wait_final("dry-1", Duration::from_secs(10));
    assert!(
        env.read_all("output").is_empty(),
        "a dry run publishes no event"
    );
    assert!(
        env.read_all("dlq").is_empty(),
        "a dry run writes no dead letter"
    );

    let mut args = base.to_vec();
    args.extend(["--job-id", "real-1", "--watch"]);
    let w = env.cli(&args);
    assert_eq!(
        w.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&w.stdout)
    );
    let real = env.wait_final("real-1", Duration::from_secs(10));
    assert_eq!(counters(&dry), counters(&real), "dry {dry}\nreal {real}");
    assert_eq!(real["total_events_found"], 3_000);
    assert!(real["total_events_dropped"].as_i64().unwrap() > 0);
    assert!(real["total_transformation_errors"].as_i64().unwrap() > 0);
    assert_exactly_once(&env, &expected);

    // Submitting an existing job id again is a duplicate: `submit --watch` says so and exits 7, nothing
    // starts; for `watch` the record is reported but not final.
    let mut args = base.to_vec();
    args.extend(["--job-id", "real-1", "--watch"]);
    let dup = env.cli(&args);
    let dup_text = String::from_utf8_lossy(&dup.stdout).into_owned();
    assert_eq!(dup.status.code(), Some(7), "{dup_text}");
    assert!(dup_text.contains("duplicate"), "{dup_text}");
    let w = env.cli(&["watch", "real-1", "--timeout", "60"]);
    let text = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(w.status.code(), Some(0), "{text}");
    assert!(text.contains("duplicate"), "{text}");
    assert_exactly_once(&env, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_sample_twice_is_the_same_set() {
    let env = Env::new("op_sample").await;
    let rows = realistic_rows("t_sample", "e1", 4_000, T0, DAY);
    let kept: Vec<InsertRow> = rows
        .iter()
        .filter(|r| sampled_in(r.id.as_bytes(), 0.3))
        .cloned()
        .collect();
    let want: BTreeSet<String> = expected_events(&kept)
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    let ids = |records: &[support::harness::Record]| -> Vec<String> {
        records
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap().to_string())
            .collect()
    };
    env.submit(
        "s-1",
        &command("s-1", "t_sample", r#","sample_rate":0.3,"batch_size":700"#),
    )
    .await;
    let a = env.wait_final("s-1", Duration::from_secs(180));
    assert_eq!(a["status"], "completed", "{a}\n{}", daemon.log());
    let first = env.read_all("output");
    let seen: HashSet<(i32, i64)> = first.iter().map(|r| (r.partition, r.offset)).collect();
    env.submit(
        "s-2",
        &command("s-2", "t_sample", r#","sample_rate":0.3,"batch_size":300"#),
    )
    .await;
    let b = env.wait_final("s-2", Duration::from_secs(180));
    assert_eq!(b["status"], "completed", "{b}");
    let second: Vec<_> = env
        .read_all("output")
        .into_iter()
        .filter(|r| !seen.contains(&(r.partition, r.offset)))
        .collect();
    let (ia, ib) = (ids(&first), ids(&second));
    assert_eq!(ia.len(), ib.len());
    let (sa, sb): (BTreeSet<String>, BTreeSet<String>) =
        (ia.into_iter().collect(), ib.into_iter().collect());
    assert_eq!(sa, sb, "two runs of the same sample differ");
    assert_eq!(sa, want, "the sample is not the one of SPEC §7");
    assert_eq!(counters(&a), counters(&b));
    let out = a["total_events_sampled_out"].as_i64().unwrap();
    assert_eq!(out, 4_000 - kept.len() as i64, "{a}");
    assert!((2_400..3_200).contains(&out), "about 70% sampled out: {a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_job_stays_under_its_rate_and_metrics_match_its_counters() {
    let env = Env::new("op_throttle").await;
    let rows = mixed_rows("t_thr", 3_000);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    let rate = 150i64;
    let started = Instant::now();
    env.submit(
        "thr-1",
        &command(
            "thr-1",
            "t_thr",
            &format!(r#","batch_size":1000,"max_events_per_second":{rate}"#),
        ),
    )
    .await;
    // While the job reads, its progress is exported.
    let port = env.metrics_port;
    let mut running = String::new();
    wait_until(
        "job_rows{job_id=thr-1,kind=done} > 0 in /metrics",
        Duration::from_secs(60),
        || {
            running = scrape_text(port);
            let m = parse(&running);
            sample(
                &m,
                "reprocessor_job_rows",
                &[("job_id", "thr-1"), ("kind", "done")],
            )
            .is_some_and(|n| n > 0.0)
        },
    );
    let fin = env.wait_final("thr-1", Duration::from_secs(240));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());
    assert!(
        started.elapsed() >= Duration::from_secs(15),
        "{} events at {rate}/s took only {:?}",
        expected.len(),
        started.elapsed()
    );
    assert_exactly_once(&env, &expected);
    let mut times: Vec<i64> = env
        .read_all("output")
        .iter()
        .map(|r| r.timestamp_ms.expect("record timestamp"))
        .collect();
    times.sort();
    let mut worst = 0usize;
    for (i, t) in times.iter().enumerate() {
        let n = times[i..].partition_point(|x| *x < t + 10_000);
        worst = worst.max(n);
    }
    assert!(
        worst as i64 <= rate * 10,
        "{worst} events published within one 10-second window; limit {}",
        rate * 10
    );
    assert!(
        worst as i64 >= rate * 10 / 2,
        "throttled far below the limit: {worst} per 10 s"
    );

    // /metrics, parsed as Prometheus text, agrees with the job's counters (SPEC §9).
    let c = counters(&fin);
    let mut last = String::new();
    wait_until(
        "jobs{status=completed} = 1 in /metrics",
        Duration::from_secs(20),
        || {
            last = scrape_text(port);
            last.contains("reprocessor_jobs{status=\"completed\"} 1")
        },
    );
    let m = parse(&last);
    let value = |name: &str, labels: &[(&str, &str)]| sample(&m, name, labels).unwrap_or(f64::NAN);
    let read = value("reprocessor_rows_read_total", &[]);
    let mut events = 0.0;
    for (outcome, n) in [
        ("published", c[1]),
        ("dropped", c[2]),
        ("transformation_error", c[3]),
        ("failed", c[4]),
        ("sampled_out", c[5]),
    ] {
        let got = value("reprocessor_events_total", &[("outcome", outcome)]);
        assert_eq!(got, n as f64, "outcome {outcome}\n{last}");
        events += got;
    }
    assert_eq!(events, c[0] as f64, "{last}");
    let txn = |result: &str| value("reprocessor_transactions_total", &[("result", result)]);
    let batches = fin["processed_batches"].as_f64().unwrap();
    // Every checkpoint the task wrote is one committed transaction: `running`, each batch, `completed`.
    assert_eq!(txn("committed"), batches + 2.0, "{last}");
    if txn("aborted") + txn("unknown") == 0.0 {
        assert_eq!(
            read, events,
            "rows read = rows of committed batches\n{last}"
        );
    } else {
        assert!(read >= events, "a redone batch is read again\n{last}");
    }
    assert_eq!(
        value("reprocessor_batch_duration_seconds_count", &[]),
        batches,
        "{last}"
    );
    assert!(value("reprocessor_clickhouse_query_duration_seconds_count", &[]) >= 1.0);
    for (stage, n) in [
        ("validation", c[2]),
        ("transformation", c[3]),
        ("publish", c[4]),
    ] {
        let got = value("reprocessor_dead_letters_total", &[("stage", stage)]);
        assert_eq!(got, n as f64, "dead letters of stage {stage}\n{last}");
    }
    assert!(
        c[2] > 0 && c[3] > 0,
        "the job dead-letters rows of two stages: {fin}"
    );
    assert_eq!(
        env.read_all("dlq").len() as i64,
        c[2] + c[3] + c[4],
        "dead-letter topic"
    );
    let since_commit = now_secs() - value("reprocessor_last_commit_timestamp_seconds", &[]);
    assert!(
        (0.0..60.0).contains(&since_commit),
        "last commit {since_commit} s ago"
    );
    assert!(
        !m.samples.iter().any(|s| s.metric == "reprocessor_job_rows"),
        "the job's series are removed when it ends:\n{last}"
    );
    assert_eq!(value("reprocessor_control_topic_lag", &[]), 0.0, "{last}");
    assert_eq!(
        value("reprocessor_commands_total", &[("outcome", "accepted")]),
        1.0,
        "{last}"
    );
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/readyz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_false_while_clickhouse_is_down_and_a_failed_job_resumes() {
    require_services();
    let own = OwnServices::with_free_ports();
    own.up("clickhouse");
    let mut env = Env::on("op_ready", support::kafka_bootstrap(), own.clickhouse_url()).await;
    env.extra_env.push((
        "REPROCESSOR_CLICKHOUSE__RETRY_BUDGET_SECS".into(),
        "3".into(),
    ));
    env.extra_env.push((
        "REPROCESSOR_CLICKHOUSE__REQUEST_TIMEOUT_SECS".into(),
        "3".into(),
    ));
    let rows = realistic_rows("t_ready", "e1", 2_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    let port = env.metrics_port;
    wait_until("/readyz 200 at start", Duration::from_secs(60), || {
        http_get(port, "/readyz").0 == 200
    });

    own.down("clickhouse");
    wait_until(
        "/readyz 503 with ClickHouse down",
        Duration::from_secs(30),
        || http_get(port, "/readyz").0 == 503,
    );
    let (_, body) = http_get(port, "/readyz");
    assert!(body.contains("\"clickhouse\":false"), "{body}");
    assert_eq!(http_get(port, "/healthz").0, 200, "alive all the same");

    // A job started now fails (ClickHouse unreachable past the retry budget): watch exits 3.
    env.submit(
        "ready-1",
        &command("ready-1", "t_ready", r#","batch_size":500"#),
    )
    .await;
    let w = env.cli(&["watch", "ready-1", "--timeout", "120"]);
    let text = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(w.status.code(), Some(3), "{text}\n{}", daemon.log());

    own.up("clickhouse");
    wait_until("/readyz 200 again", Duration::from_secs(30), || {
        http_get(port, "/readyz").0 == 200
    });
    // A failed job resumes once the cause is fixed, and watch then follows it to completion.
    cli_ok(&env, &["resume", "ready-1"]);
    // (watch right after `resume` could still see `failed` as the job's last word: wait for `resumed`.)
    env.wait_status("ready-1", &["resumed"], Duration::from_secs(60));
    let w = env.cli(&["watch", "ready-1", "--timeout", "120"]);
    let text = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(w.status.code(), Some(0), "{text}\n{}", daemon.log());
    let last = env.results("ready-1").last().cloned().unwrap();
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["total_events_found"], 2_000, "{last}");
    assert_exactly_once(&env, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_longer_than_transactional_id_expiration_then_resume() {
    require_services();
    let mut own = OwnServices::with_free_ports();
    own.kafka_extra_properties = "transactional.id.expiration.ms=5000,\
transaction.remove.expired.transaction.cleanup.interval.ms=2000"
        .into();
    own.up("kafka");
    let env = Env::on("op_expire", own.kafka_bootstrap(), clickhouse_url()).await;
    let rows = realistic_rows("t_exp", "e1", 6_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit(
        "exp-1",
        &command(
            "exp-1",
            "t_exp",
            r#","batch_size":200,"max_events_per_second":800"#,
        ),
    )
    .await;
    env.wait_status("exp-1", &["progress"], Duration::from_secs(120));
    cli_ok(&env, &["pause", "exp-1"]);
    env.wait_status("exp-1", &["paused"], Duration::from_secs(60));
    // Well past the expiration plus a few cleanup rounds.
    std::thread::sleep(Duration::from_secs(15));
    cli_ok(&env, &["resume", "exp-1"]);
    let w = env.cli(&["watch", "exp-1", "--timeout", "180"]);
    let text = String::from_utf8_lossy(&w.stdout).into_owned();
    assert_eq!(w.status.code(), Some(0), "{text}\n{}", daemon.log());
    let fin = env.wait_final("exp-1", Duration::from_secs(10));
    assert_eq!(fin["total_events_found"], 6_000, "{fin}");
    assert_exactly_once(&env, &expected);
}
