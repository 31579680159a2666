//! Outages of a dependency mid-job, each on the test's own instance of that service (the shared ones stay up
//! for the other tests): the job neither hangs nor loses anything, and completes with every event once.

mod support;

use std::time::Duration;

use support::harness::{
    Env, assert_exactly_once, expected_events, realistic_rows, reprocess_command,
};
use support::{DAY, T0};
use support::{OwnServices, clickhouse_url, kafka_bootstrap, require_services};

/// Batches of 300 rows at 3,000 events/s: a 30,000-row job takes about 10 s, so an outage that starts at its
/// first progress result falls inside it.
const THROTTLED: &str = r#","batch_size":300,"max_events_per_second":3000"#;

/// The outage must start while the job runs, or the test proves nothing.
fn assert_not_final(env: &Env, job: &str) {
    let results = env.results(job);
    assert!(
        results.iter().all(|v| v["status"] != "completed"),
        "job {job} completed before the outage: {:?}",
        results.last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_for_ten_seconds_mid_job() {
    require_services();
    let own = OwnServices::new(19_292, 18_323);
    own.up("clickhouse");
    let env = Env::on("ch_outage", kafka_bootstrap(), own.clickhouse_url()).await;
    let rows = realistic_rows("t_cho", "e1", 30_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit("cho", &reprocess_command("cho", "t_cho", 1, THROTTLED))
        .await;
    env.wait_status("cho", &["progress"], Duration::from_secs(120));
    assert_not_final(&env, "cho");
    own.down("clickhouse");
    std::thread::sleep(Duration::from_secs(10));
    own.up("clickhouse");
    let fin = env.wait_final("cho", Duration::from_secs(300));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());
    assert_eq!(fin["total_events_found"], 30_000);
    assert_exactly_once(&env, &expected);
    assert!(
        daemon.log().contains("retry")
            || daemon.log().contains("Retry")
            || daemon.log().contains("retrying"),
        "the outage left no trace in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_fifteen_seconds_mid_job() {
    require_services();
    let own = OwnServices::new(19_392, 18_423);
    own.up("kafka");
    let env = Env::on("kafka_outage", own.kafka_bootstrap(), clickhouse_url()).await;
    let rows = realistic_rows("t_ko", "e1", 30_000, T0, DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let mut daemon = env.running_daemon();
    env.submit("ko", &reprocess_command("ko", "t_ko", 1, THROTTLED))
        .await;
    env.wait_status("ko", &["progress"], Duration::from_secs(120));
    assert_not_final(&env, "ko");
    own.down("kafka");
    std::thread::sleep(Duration::from_secs(15));
    own.up("kafka");
    let fin = env.wait_final("ko", Duration::from_secs(300));
    assert_eq!(fin["status"], "completed", "{fin}\n{}", daemon.log());
    assert_eq!(fin["total_events_found"], 30_000);
    assert_exactly_once(&env, &expected);
    assert!(daemon.alive(), "the daemon must survive a broker outage");
}
