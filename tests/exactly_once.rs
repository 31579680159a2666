//! Exactly-once under concurrency (issue 10), against the real broker and ClickHouse engine: transactions of
//! other producers on the state topic, a job's transactional id taken over by another producer, several daemons
//! of one group killed and stopped at random while several jobs run.

mod support;

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::Value;
use support::harness::{Env, assert_exactly_once, expected_events, realistic_rows, rfc3339};

const DAY: i64 = 86_400_000;
/// 2024-03-01T00:00:00Z
const T0: i64 = 1_709_251_200_000;

fn command(job: &str, tenant: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"reprocess","job_id":"{job}","tenant_id":"{tenant}","environment_id":"e1","start_date":"{}","end_date":"{}"{extra}}}"#,
        rfc3339(T0),
        rfc3339(T0 + DAY)
    )
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

/// The latest `progress` (or other) record of a job that carries counters.
fn published_so_far(env: &Env, job: &str) -> i64 {
    env.results(job)
        .iter()
        .filter_map(|v| v["total_events_published"].as_i64())
        .max()
        .unwrap_or(0)
}

fn wait_published(env: &Env, job: &str, at_least: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while published_so_far(env, job) < at_least {
        assert!(
            Instant::now() < deadline,
            "job {job} did not publish {at_least} events within {timeout:?}: {:?}",
            env.results(job).last()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
    let mut daemon = env.start_daemon();
    env.wait_topics(Duration::from_secs(60));
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
    let foreign = transactional_producer(&env, &format!("foreign_{}", env.name));
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
    // The job commits several more batches behind the open transaction, then the daemon dies.
    let before = published_so_far(&env, "lso-1");
    wait_published(&env, "lso-1", before + 3_000, Duration::from_secs(60));
    daemon.kill();
    let mut daemon = env.start_daemon();
    // The restarted daemon must wait for the open transaction rather than resume from an older checkpoint.
    std::thread::sleep(Duration::from_secs(12));
    foreign.abort_transaction(Duration::from_secs(30)).unwrap();

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
    let daemon = env.start_daemon();
    env.wait_topics(Duration::from_secs(60));
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
