//! Exactly-once under concurrency (issue 10), against the real broker and ClickHouse engine: transactions of
//! other producers on the state topic, a job's transactional id taken over by another producer, several daemons
//! of one group killed and stopped at random while several jobs run.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;
use support::harness::{
    Env, InsertRow, assert_exactly_once, counters, expected_events, realistic_payload,
    realistic_rows, reprocess_command, rfc3339, try_http_get,
};
use support::{DAY, T0};

fn command(job: &str, tenant: &str, extra: &str) -> String {
    reprocess_command(job, tenant, 1, extra)
}

/// A transactional producer of the test's own, on the test's broker.
fn transactional_producer(env: &Env, id: &str) -> ThreadedProducer<DefaultProducerContext> {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.kafka)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "120000")
        .create()
        .expect("test producer");
    p.init_transactions(Duration::from_secs(30))
        .expect("init_transactions of the test producer");
    p
}

/// A transaction of the test's own holding one record on every partition of the state topic, left open.
fn hold_state_partitions(env: &Env) -> ThreadedProducer<DefaultProducerContext> {
    let foreign = transactional_producer(env, &format!("foreign_{}", env.name));
    foreign.begin_transaction().unwrap();
    let state = env.topic("state");
    for p in 0..3 {
        foreign
            .send(
                BaseRecord::to(&state)
                    .key("not-a-job")
                    .payload("held open")
                    .partition(p),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    foreign.flush(Duration::from_secs(30)).unwrap();
    foreign
}

fn published_so_far(env: &Env, job: &str) -> i64 {
    env.counter_so_far(job, "total_events_published")
}

fn wait_published(env: &Env, job: &str, at_least: i64, timeout: Duration) {
    env.wait_counter(job, "total_events_published", at_least, timeout)
}

fn assert_completed_exactly(env: &Env, fin: &Value, rows: usize, expected: &[String]) {
    assert_eq!(fin["status"], "completed", "{fin}");
    assert_eq!(fin["total_events_found"], rows as i64, "{fin}");
    assert_eq!(
        fin["total_events_published"],
        expected.len() as i64,
        "{fin}"
    );
    assert_exactly_once(env, expected);
}

/// A producer of someone else holds a transaction open on every state partition while the daemon is killed and
/// restarted: the restarted job must not resume from the checkpoint visible below that transaction (the last
/// stable offset) but from its own latest one, once it is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_foreign_transaction_on_the_state_topic_hides_no_checkpoint() {
    let env = Env::new("eo_lso").await;
    let rows = realistic_rows("t_lso", "e1", 20_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let mut daemon = env.running_daemon();
    env.submit(
        "lso-1",
        &command(
            "lso-1",
            "t_lso",
            r#","batch_size":500,"max_events_per_second":2000"#,
        ),
    )
    .await;
    wait_published(&env, "lso-1", 1_000, Duration::from_secs(120));

    // One record on every state partition, in a transaction left open.
    let foreign = hold_state_partitions(&env);
    // The job commits several more batches behind the open transaction, then the daemon dies.
    let before = published_so_far(&env, "lso-1");
    wait_published(&env, "lso-1", before + 3_000, Duration::from_secs(60));
    daemon.kill();
    let mut daemon = env.start_daemon();
    // The restarted daemon must wait for the open transaction rather than resume from an older checkpoint,
    // and say so in /readyz.
    let held_until = Instant::now() + Duration::from_secs(12);
    let mut shown = None;
    while Instant::now() < held_until {
        if let Ok((_, body)) = try_http_get(env.metrics_port, "/readyz")
            && body.contains("\"waited_secs\"")
        {
            shown.get_or_insert(body);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    foreign.abort_transaction(Duration::from_secs(30)).unwrap();
    assert!(
        shown.is_some(),
        "/readyz never showed the wait for the state partition:\n{}",
        daemon.log()
    );

    let fin = env.wait_final("lso-1", Duration::from_secs(180));
    let log = daemon.log();
    assert_completed_exactly(&env, &fin, rows.len(), &expected);
    assert!(
        log.contains("waiting for the state topic"),
        "the wait is not reported in the log:\n{log}"
    );
    daemon.terminate(Duration::from_secs(30));
}

/// Another producer initialises the job's own transactional id once, mid-job (what a stale instance does when it
/// restarts the job): the owner is fenced, takes the job back, and the job completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_fenced_by_a_stale_producer_is_taken_back_and_completes() {
    let env = Env::new("eo_fence").await;
    let rows = realistic_rows("t_fence", "e1", 15_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit(
        "fence-1",
        &command(
            "fence-1",
            "t_fence",
            r#","batch_size":500,"max_events_per_second":2500"#,
        ),
    )
    .await;
    wait_published(&env, "fence-1", 1_000, Duration::from_secs(120));
    let stale = transactional_producer(&env, &format!("tx_{}-fence-1", env.name));
    drop(stale);

    let fin = env.wait_final("fence-1", Duration::from_secs(120));
    assert_completed_exactly(&env, &fin, rows.len(), &expected);
    assert!(
        daemon.log().contains("fenced"),
        "the fence is not reported:\n{}",
        daemon.log()
    );
}

/// Item 1: a stale instance keeps initialising the control producer's transactional id of a partition while
/// commands arrive on it. A fenced command transaction must be handled again, never skipped: every command
/// gets exactly one verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_command_transaction_is_handled_again_not_skipped() {
    let env = Env::new("eo_cmdfence").await;
    let daemon = env.running_daemon();
    daemon.wait_log("control partitions assigned", Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let fencer = {
        let (stop, env_kafka, id) = (
            stop.clone(),
            env.kafka.clone(),
            format!("tx_{}-control-0", env.name),
        );
        std::thread::spawn(move || {
            let mut fences = 0;
            while !stop.load(Ordering::Relaxed) {
                let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                    .set("bootstrap.servers", &env_kafka)
                    .set("transactional.id", &id)
                    .create()
                    .unwrap();
                if p.init_transactions(Duration::from_secs(10)).is_ok() {
                    fences += 1;
                }
                drop(p);
                std::thread::sleep(Duration::from_millis(15));
            }
            fences
        })
    };
    let mut sent = Vec::new();
    for i in 0..40 {
        let job = format!("ghost-{i}");
        let (p, o) = env
            .produce(
                &job,
                Some(0),
                &format!(r#"{{"type":"pause","job_id":"{job}"}}"#),
            )
            .await;
        sent.push((job, p, o));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let fences = fencer.join().unwrap();
    assert!(fences >= 10, "only {fences} fences happened");
    // Every command of the partition has one verdict (`rejected`: unknown job), with its coordinates.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let results = env.read_all("results");
        let verdicts = |job: &str| -> Vec<Value> {
            results
                .iter()
                .filter(|r| r.key.as_deref() == Some(job))
                .map(|r| r.json())
                .collect()
        };
        let missing: Vec<&str> = sent
            .iter()
            .filter(|(job, ..)| verdicts(job).is_empty())
            .map(|(job, ..)| job.as_str())
            .collect();
        if missing.is_empty() {
            for (job, p, o) in &sent {
                let v = verdicts(job);
                assert_eq!(v.len(), 1, "{job}: {v:?}");
                assert_eq!(v[0]["status"], "rejected", "{v:?}");
                assert_eq!(
                    (v[0]["partition"].as_i64(), v[0]["offset"].as_i64()),
                    (Some(*p as i64), Some(*o))
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commands without a verdict: {missing:?}\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Item 2: a job accepted while a transaction holds its state partition back is invisible at the next
/// start (the state read stops at the last stable offset); it must start once its checkpoint is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_hidden_at_start_by_an_open_transaction_runs_once_readable() {
    let env = Env::new("eo_hidden").await;
    let rows = realistic_rows("t_hidden", "e1", 4_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let mut daemon = env.running_daemon();
    let foreign = hold_state_partitions(&env);
    env.submit(
        "hidden-1",
        &command(
            "hidden-1",
            "t_hidden",
            r#","batch_size":500,"max_events_per_second":1000"#,
        ),
    )
    .await;
    env.wait_status("hidden-1", &["accepted"], Duration::from_secs(60));
    daemon.kill();
    let mut daemon = env.start_daemon();
    daemon.wait_log("control partitions assigned", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    foreign.abort_transaction(Duration::from_secs(30)).unwrap();
    let fin = env.wait_final("hidden-1", Duration::from_secs(90));
    assert_completed_exactly(&env, &fin, rows.len(), &expected);
    daemon.terminate(Duration::from_secs(30));
}

/// Item 3: once the broker refuses a record, the transaction is abortable and every later send fails with
/// `_STATE`. Only the rows too large for the topic are dead-lettered; every other row is published exactly once
/// and the job completes. (A short producer queue: later records are sent only after the earlier ones'
/// answers arrived.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_records_the_broker_refused_are_dead_lettered() {
    rows_too_large_for_the_topic(
        "eo_refused",
        "[kafka.properties]\n\"queue.buffering.max.messages\" = \"50\"\n",
        None,
    )
    .await;
}

/// The broker refuses a whole record batch when it exceeds the topic's limit, naming every record in it.
/// With every event on one partition, the large events share record batches with small ones: the daemon
/// learns the topic's new limit from the broker and dead-letters only the rows too large for it, not their
/// batch neighbours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_batch_dead_letters_only_the_rows_too_large() {
    rows_too_large_for_the_topic("eo_batch_refused", "", Some("org-one")).await;
}

/// 1,500 rows of which five make events of ~200 KB; the output topic's `max.message.bytes` drops to 100 KB
/// after the daemon read it. `org`: one organisation (so one output partition) for every row.
async fn rows_too_large_for_the_topic(name: &str, config: &str, org: Option<&str>) {
    use base64::Engine;
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let mut env = Env::new(name).await;
    if !config.is_empty() {
        env.config_file(config);
    }
    let mut rows = realistic_rows("t_ref", "e1", 1_500, T0, DAY);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut big = Vec::new();
    for (i, r) in rows.iter_mut().enumerate() {
        let at = rfc3339(r.timestamp);
        if i % 300 != 7 {
            if let Some(org) = org {
                r.payload = realistic_payload(i as u64, org, &at).into_bytes();
            }
            continue;
        }
        // An event of ~200 KB that lz4 cannot shrink below the topic's new limit of 100 KB.
        let noise: Vec<u8> = (0..150_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let blob = base64::engine::general_purpose::STANDARD.encode(noise);
        let p = realistic_payload(i as u64, org.unwrap_or("org-big"), &at);
        r.payload = p
            .replacen("\"data\":{", &format!("\"data\":{{\"blob\":\"{blob}\","), 1)
            .into_bytes();
        big.push(r.id.clone());
    }
    let expected: Vec<String> = expected_events(&rows)
        .into_iter()
        .filter(|e| !e.contains("\"blob\""))
        .collect();
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    daemon.wait_log("daemon started", Duration::from_secs(60));
    // The broker's limit drops below those events after the daemon read it.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.kafka)
        .create()
        .unwrap();
    let out = env.topic("output");
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&out)).set("max.message.bytes", "100000");
    let r = admin
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.submit("ref-1", &command("ref-1", "t_ref", r#","batch_size":1000"#))
        .await;
    let fin = env.wait_final("ref-1", Duration::from_secs(120));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());
    let dlq: Vec<Value> = env.read_all("dlq").iter().map(|r| r.json()).collect();
    let reasons: Vec<(&str, &str, &str)> = dlq
        .iter()
        .map(|d| {
            (
                d["raw_event"]["id"].as_str().unwrap(),
                d["reason"].as_str().unwrap(),
                d["message"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let mut dead: Vec<String> = reasons.iter().map(|(id, ..)| id.to_string()).collect();
    dead.sort();
    assert_eq!(dead, big, "dead letters: {reasons:?}");
    // Judged against the limit the daemon learned from the broker.
    assert!(
        reasons
            .iter()
            .all(|(_, r, e)| *r == "too_large" && e.contains("max.message.bytes 100000")),
        "{reasons:?}"
    );
    assert_eq!(fin["total_events_failed"], big.len() as i64, "{fin}");
    assert_exactly_once(&env, &expected);

    // The operator raises the limit again: a later job judges by it (a dry run, which judges sizes the same
    // and publishes nothing); the lowered limit once stayed until a restart, failing every large event.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&out)).set("max.message.bytes", "1048588");
    let r = admin
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    env.submit(
        "ref-2",
        &command("ref-2", "t_ref", r#","batch_size":1000,"dry_run":true"#),
    )
    .await;
    let again = env.wait_final("ref-2", Duration::from_secs(120));
    assert_eq!(
        (
            again["total_events_failed"].as_i64(),
            again["total_events_published"].as_i64()
        ),
        (Some(0), Some(expected.len() as i64 + big.len() as i64)),
        "{again}\n{}",
        daemon.log()
    );
}

/// Item 4: the row-count estimate is best effort: a ClickHouse that cannot count (here: every count query
/// times out) never fails the job, which completes without an estimate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_row_count_never_fails_the_job() {
    support::require_services();
    let target = support::clickhouse_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let refuse_counts: fn(&[u8]) -> bool = |req| {
        let has = |needle: &[u8]| req.windows(needle.len()).any(|w| w == needle);
        has(b"count()") && !has(b"system.")
    };
    let (url, _proxy) =
        support::clickhouse_proxy(target, support::Fault::Refuse(refuse_counts)).await;
    let mut env = Env::on("eo_count", support::kafka_bootstrap(), url).await;
    env.extra_env.push((
        "REPROCESSOR_CLICKHOUSE__RETRY_BUDGET_SECS".into(),
        "3".into(),
    ));
    let rows = realistic_rows("t_count", "e1", 3_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit(
        "count-1",
        &command("count-1", "t_count", r#","batch_size":500"#),
    )
    .await;
    let fin = env.wait_final("count-1", Duration::from_secs(120));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());
    assert!(
        fin.get("estimated_total").is_none_or(Value::is_null),
        "{fin}"
    );
    assert_completed_exactly(&env, &fin, rows.len(), &expected);
}

/// Item 5: control requests of a job recorded one right after the other are all honoured, in order, and each is
/// judged against the status the job will have once the earlier ones are honoured. A paused job gets a cancel
/// and at once a resume: the cancel is not lost (the job ends `cancelled`, it never resumes) and the resume is
/// rejected, since the job is cancelled once its pending request is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_followed_at_once_by_a_resume_cancels() {
    let env = Env::new("eo_ctl").await;
    let rows = realistic_rows("t_ctl", "e1", 6_000, T0, DAY);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit(
        "ctl-1",
        &command(
            "ctl-1",
            "t_ctl",
            r#","batch_size":200,"max_events_per_second":400"#,
        ),
    )
    .await;
    wait_published(&env, "ctl-1", 400, Duration::from_secs(60));
    env.produce("ctl-1", None, r#"{"type":"pause","job_id":"ctl-1"}"#)
        .await;
    env.wait_status("ctl-1", &["paused"], Duration::from_secs(60));
    let (_, cancel_at) = env
        .produce("ctl-1", None, r#"{"type":"cancel","job_id":"ctl-1"}"#)
        .await;
    let (_, resume_at) = env
        .produce("ctl-1", None, r#"{"type":"resume","job_id":"ctl-1"}"#)
        .await;
    // (`rejected` is not the job's end here: it answers the resume.)
    let fin = env.wait_status(
        "ctl-1",
        &["cancelled", "completed"],
        Duration::from_secs(60),
    );
    assert_eq!(fin["status"], "cancelled", "{fin}\n{}", daemon.log());
    std::thread::sleep(Duration::from_secs(3));
    let results = env.results("ctl-1");
    let rejected: Vec<&Value> = results
        .iter()
        .filter(|v| v["status"] == "rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{results:?}");
    assert_eq!(
        rejected[0]["offset"].as_i64(),
        Some(resume_at),
        "{rejected:?}"
    );
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{rejected:?}"
    );
    assert!(cancel_at < resume_at);
    assert!(
        !results
            .iter()
            .any(|v| v["status"] == "resumed" || v["status"] == "completed"),
        "{results:?}"
    );
}

/// A small seeded generator for the chaos schedule (xorshift64*): `EO_CHAOS_SEED` replays a run.
struct Chaos(u64);

impl Chaos {
    fn new() -> Chaos {
        let seed = std::env::var("EO_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("chaos schedule seed: EO_CHAOS_SEED={seed}");
        Chaos(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Four throttled jobs on two daemons of one group (`a` a static member, `b` a dynamic one, so that its
/// deaths move control partitions too), 5 SIGKILLs and 2 SIGSTOPs of 15 s (past the session timeout) at
/// random moments and instances, each while jobs still run: every job completes once with exact counters,
/// every command has one verdict, and every event is published exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_jobs_two_daemons_kills_and_stalls_lose_and_duplicate_nothing() {
    let env = Env::new("eo_chaos").await;
    let jobs = ["chaos-a", "chaos-b", "chaos-c", "chaos-d"];
    let rows_of = |k: usize| 11_000 + 500 * k as u64;
    let mut rows: Vec<Vec<InsertRow>> = Vec::new();
    for (k, job) in jobs.iter().enumerate() {
        rows.push(realistic_rows(
            &format!("t_{job}"),
            "e1",
            rows_of(k),
            T0,
            DAY,
        ));
    }
    let all_rows: Vec<InsertRow> = rows.concat();
    env.insert(&all_rows).await;
    let start = |who: &str| {
        if who == "a" {
            env.start_instance("a")
        } else {
            env.start_dynamic_instance("b")
        }
    };
    let mut a = start("a");
    env.wait_topics(Duration::from_secs(60));
    let mut b = start("b");
    for job in jobs {
        env.submit(
            job,
            &command(
                job,
                &format!("t_{job}"),
                r#","batch_size":300,"max_events_per_second":250"#,
            ),
        )
        .await;
    }
    // 5 kills and 2 stalls in a random order, on random instances, 2 to 5 s apart.
    let mut chaos = Chaos::new();
    let mut steps = vec!["kill"; 5];
    steps.extend(["stop"; 2]);
    for i in (1..steps.len()).rev() {
        steps.swap(i, chaos.below(i as u64 + 1) as usize);
    }
    for step in steps {
        std::thread::sleep(Duration::from_secs(2 + chaos.below(4)));
        let running = jobs
            .iter()
            .filter(|j| {
                !env.results(j)
                    .iter()
                    .any(|v| v["status"] == "completed" || v["status"] == "failed")
            })
            .count();
        assert!(
            running > 0,
            "every job ended before the chaos did: the schedule no longer tests anything"
        );
        let who = if chaos.below(2) == 0 { "a" } else { "b" };
        eprintln!("chaos: {step} {who} ({running} jobs running)");
        let daemon = if who == "a" { &mut a } else { &mut b };
        if step == "kill" {
            daemon.kill();
            *daemon = start(who);
        } else {
            daemon.stop();
            std::thread::sleep(Duration::from_secs(15));
            daemon.cont();
        }
    }
    let finals: Vec<Value> = jobs
        .iter()
        .map(|job| env.wait_final(job, Duration::from_secs(300)))
        .collect();
    let dead_letters = env.read_all("dlq");
    for (k, (job, fin)) in jobs.iter().zip(&finals).enumerate() {
        let logs = || format!("{}\n{}", a.log(), b.log());
        assert_eq!(fin["status"], "completed", "{job}: {fin}\n{}", logs());
        let published = expected_events(&rows[k]).len() as i64;
        let found = rows_of(k) as i64;
        let [seen, sent, dropped, errors, failed, sampled_out] = counters(fin);
        assert_eq!(
            (seen, sent, failed, sampled_out),
            (found, published, 0, 0),
            "{job}: {fin}"
        );
        assert_eq!(dropped + errors, found - published, "{job}: {fin}");
        let results = env.results(job);
        for (status, n) in [
            ("accepted", 1),
            ("completed", 1),
            ("rejected", 0),
            ("duplicate", 0),
        ] {
            let got = results.iter().filter(|v| v["status"] == status).count();
            assert_eq!(got, n, "{job}: {n} `{status}` expected: {results:?}");
        }
        let job_dead_letters = dead_letters
            .iter()
            .filter(|r| r.headers.get("job_id").map(String::as_str) == Some(*job))
            .count() as i64;
        assert_eq!(job_dead_letters, found - published, "{job}: dead letters");
    }
    assert_exactly_once(&env, &expected_events(&all_rows));
}
