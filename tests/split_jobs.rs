//! Split jobs (issue 13, SPEC §5a) against the real broker and ClickHouse engine: a job with `parallelism`
//! runs as parts on several instances, survives the death of one, is cancelled as a whole, fails when a part
//! fails and completes once resumed.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::harness::{
    COUNTERS, Env, InsertEvent, assert_exactly_once, expected_events, realistic_rows,
    reprocess_command, rfc3339,
};
use support::{DAY, T0};

fn command(job: &str, tenant: &str, days: i64, extra: &str) -> String {
    reprocess_command(job, tenant, days, extra)
}

/// The part ids a split job's results name.
fn parts_of(env: &Env, job: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(parts) = env.results(job).iter().find_map(|v| {
            v["parts"]
                .as_array()
                .filter(|p| !p.is_empty())
                .map(|p| p.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        }) {
            return parts;
        }
        assert!(
            Instant::now() < deadline,
            "split job {job} named no parts in {timeout:?}: {:?}",
            env.results(job)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn wait_found(env: &Env, job: &str, at_least: i64, timeout: Duration) {
    env.wait_counter(job, "total_events_found", at_least, timeout)
}

/// 100,000 rows over four days, parallelism 4, two instances of one group; one is killed mid-job and started
/// again (a new instance id). The split job completes once, with its parts' counters summed exactly; every
/// event is published exactly once; the parts ran on more than one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_job_runs_on_two_instances_and_survives_a_kill() {
    let env = Env::new("split_kill").await;
    let rows = realistic_rows("t_split", "e1", 100_000, T0, 4 * DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let mut a = env.start_instance("a");
    env.wait_topics(Duration::from_secs(60));
    let b = env.start_instance("b");
    env.submit(
        "big",
        &command(
            "big",
            "t_split",
            4,
            r#","batch_size":1000,"parallelism":4,"max_events_per_second":8000"#,
        ),
    )
    .await;
    let parts = parts_of(&env, "big", Duration::from_secs(60));
    assert_eq!(parts.len(), 4, "{parts:?}");
    wait_found(&env, "big", 20_000, Duration::from_secs(120));
    a.kill();
    a = env.start_instance("a");

    let fin = env.wait_status("big", &["completed"], Duration::from_secs(300));
    let results = env.results("big");
    assert_eq!(
        results
            .iter()
            .filter(|v| v["status"] == "completed")
            .count(),
        1,
        "{results:?}"
    );
    assert_eq!(fin["total_events_found"], 100_000, "{fin}");
    assert_eq!(
        fin["total_events_published"],
        expected.len() as i64,
        "{fin}"
    );
    let mut sums: HashMap<&str, i64> = HashMap::new();
    let mut instances = BTreeSet::new();
    for part in &parts {
        let part_results = env.results(part);
        let done: Vec<&Value> = part_results
            .iter()
            .filter(|v| v["status"] == "completed")
            .collect();
        assert_eq!(done.len(), 1, "{part}: {part_results:?}");
        for c in COUNTERS {
            *sums.entry(c).or_default() += done[0][c].as_i64().unwrap_or(0);
        }
        assert_eq!(done[0]["parent_job_id"], "big", "{part}: {}", done[0]);
        instances.extend(
            part_results
                .iter()
                .filter_map(|v| v["instance"].as_str().map(str::to_string)),
        );
    }
    for c in COUNTERS {
        assert_eq!(fin[c].as_i64().unwrap_or(0), sums[c], "{c}: {fin}");
    }
    assert_eq!(
        instances,
        BTreeSet::from(["a".to_string(), "b".to_string()]),
        "the parts ran on one instance only\n{}\n{}",
        a.log(),
        b.log()
    );
    assert_exactly_once(&env, &expected);
}

/// The instances named by the results of `job`.
fn instances_of(env: &Env, job: &str) -> BTreeSet<String> {
    env.results(job)
        .iter()
        .filter_map(|v| v["instance"].as_str().map(str::to_string))
        .collect()
}

/// One customer on one day, split in two on two instances: the customers cannot share the day, so it is cut
/// by time (each part once had the whole day: every event twice), and the two parts, on control partitions
/// 0 and 1, run on different instances (a range assignor gave both partitions to one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_job_of_one_customer_on_one_day_runs_once_on_both_instances() {
    let env = Env::new("split_one").await;
    let rows: Vec<_> = realistic_rows("t_sone", "e1", 6_000, T0, DAY)
        .into_iter()
        .map(|mut r| {
            r.external_customer_id = "acme".into();
            r
        })
        .collect();
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let a = env.start_instance("a");
    env.wait_topics(Duration::from_secs(60));
    a.wait_log("control partitions assigned", Duration::from_secs(60));
    let b = env.start_instance("b");
    b.wait_log("control partitions assigned", Duration::from_secs(60));
    env.submit(
        "one",
        &command("one", "t_sone", 1, r#","batch_size":500,"parallelism":2"#),
    )
    .await;
    // The job ended `completed` having found `rows` rows.
    let completed = |job: &str, rows: i64, timeout: Duration| {
        let fin = env.wait_final(job, timeout);
        let logs = format!("{}\n{}", a.log(), b.log());
        assert_eq!(fin["status"], "completed", "{fin}\n{logs}");
        assert_eq!(fin["total_events_found"], rows, "{fin}");
    };
    completed("one", rows.len() as i64, Duration::from_secs(120));
    assert_exactly_once(&env, &expected);
    let parts = parts_of(&env, "one", Duration::from_secs(5));
    let ran_on: Vec<BTreeSet<String>> = parts.iter().map(|p| instances_of(&env, p)).collect();
    assert!(
        ran_on.iter().all(|i| i.len() == 1) && ran_on[0] != ran_on[1],
        "each part on its own instance: {ran_on:?}"
    );

    // Three milliseconds in four parts: one part has nothing to read (a part whose range the planner wrote
    // as an empty customer string was rejected, and its split job waited for it for ever).
    let tiny = format!(
        r#"{{"type":"reprocess","job_id":"tiny","tenant_id":"t_sone","environment_id":"e1","start_date":"{}","end_date":"{}","parallelism":4}}"#,
        rfc3339(T0),
        rfc3339(T0 + 3)
    );
    env.submit("tiny", &tiny).await;
    let in_range = rows.iter().filter(|r| r.timestamp < T0 + 3).count() as i64;
    completed("tiny", in_range, Duration::from_secs(60));
}

/// Cancelling a split job cancels every part: the split job and each part end `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_split_job_cancels_every_part() {
    let env = Env::new("split_cancel").await;
    let rows = realistic_rows("t_scancel", "e1", 18_000, T0, 2 * DAY);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit(
        "sc",
        &command(
            "sc",
            "t_scancel",
            2,
            r#","batch_size":200,"parallelism":3,"max_events_per_second":600"#,
        ),
    )
    .await;
    let parts = parts_of(&env, "sc", Duration::from_secs(60));
    assert_eq!(parts.len(), 3, "{parts:?}");
    wait_found(&env, "sc", 600, Duration::from_secs(60));
    // A pause and, a moment later, a resume: once the split job has handed the pause on, its checkpoint still
    // says running until its parts pause; the resume must be judged on the parts' pending pause, not refused.
    env.produce("sc", None, r#"{"type":"pause","job_id":"sc"}"#)
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    env.produce("sc", None, r#"{"type":"resume","job_id":"sc"}"#)
        .await;
    let before = env.counter_so_far("sc", "total_events_found");
    env.wait_counter(
        "sc",
        "total_events_found",
        before + 600,
        Duration::from_secs(60),
    );
    let refused: Vec<Value> = env
        .results("sc")
        .into_iter()
        .filter(|v| v["status"] == "rejected")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    env.produce("sc", None, r#"{"type":"cancel","job_id":"sc"}"#)
        .await;
    let fin = env.wait_final("sc", Duration::from_secs(60));
    assert_eq!(fin["status"], "cancelled", "{fin}\n{}", daemon.log());
    for part in &parts {
        let r = env.wait_final(part, Duration::from_secs(10));
        assert_eq!(r["status"], "cancelled", "{part}: {r}");
    }
    assert!(
        fin["total_events_found"].as_i64().unwrap() < rows.len() as i64,
        "{fin}"
    );
}

/// While set, the proxy refuses the source's queries for the fourth day.
static REFUSE_DAY_4: AtomicBool = AtomicBool::new(true);

/// Whether a request reads the fourth day of the test's range (its `lo` parameter lies in it).
fn reads_day_4(req: &[u8]) -> bool {
    if !REFUSE_DAY_4.load(Ordering::SeqCst) {
        return false;
    }
    // `param_lo=<ms>` in a URL or `name="param_lo"\r\n\r\n<ms>` in a multipart body.
    let needle = b"param_lo";
    let Some(at) = req.windows(needle.len()).position(|w| w == needle) else {
        return false;
    };
    let digits: String = req[at + needle.len()..]
        .iter()
        .skip_while(|b| matches!(b, b'=' | b'"' | b'\r' | b'\n'))
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    digits
        .parse::<i64>()
        .is_ok_and(|lo| (T0 + 3 * DAY..T0 + 4 * DAY).contains(&lo))
}

/// A part that fails (ClickHouse cannot read its day) fails the split job, naming the part; once the day is
/// readable again, resuming the split job resumes the part and the split job completes, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_fails_the_split_job_and_a_resume_completes_it() {
    support::require_services();
    let target = support::clickhouse_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (url, _proxy) =
        support::clickhouse_proxy(target, support::Fault::Refuse(reads_day_4)).await;
    let mut env = Env::on("split_fail", support::kafka_bootstrap(), url).await;
    env.extra_env.push((
        "REPROCESSOR_CLICKHOUSE__RETRY_BUDGET_SECS".into(),
        "3".into(),
    ));
    let rows = realistic_rows("t_sfail", "e1", 12_000, T0, 4 * DAY);
    let expected = expected_events(&rows);
    env.insert(&rows).await;
    let daemon = env.running_daemon();
    env.submit(
        "sf",
        &command("sf", "t_sfail", 4, r#","batch_size":500,"parallelism":4"#),
    )
    .await;
    let failed = env.wait_final("sf", Duration::from_secs(120));
    assert_eq!(failed["status"], "failed", "{failed}\n{}", daemon.log());
    let parts = parts_of(&env, "sf", Duration::from_secs(5));
    let error = failed["error"].as_str().unwrap_or_default();
    let named: Vec<&String> = parts
        .iter()
        .filter(|p| error.contains(p.as_str()))
        .collect();
    assert!(!named.is_empty(), "the error names no part: {failed}");
    for p in &parts {
        let r = env.wait_final(p, Duration::from_secs(10));
        let expect = if named.contains(&p) {
            "failed"
        } else {
            "completed"
        };
        assert_eq!(r["status"], expect, "{p}: {r}");
    }

    REFUSE_DAY_4.store(false, Ordering::SeqCst);
    env.produce("sf", None, r#"{"type":"resume","job_id":"sf"}"#)
        .await;
    let fin = env.wait_status("sf", &["completed"], Duration::from_secs(120));
    assert_eq!(fin["total_events_found"], rows.len() as i64, "{fin}");
    assert!(
        env.results("sf").iter().any(|v| v["status"] == "resumed"),
        "{:?}",
        env.results("sf")
    );
    assert_exactly_once(&env, &expected);
}

/// A split job selects exactly what the same job unsplit selects: `pending` mode (ids already in `events` within
/// the job's window hide rows of any day, ids outside it hide none), `sample_rate`, `dry_run`, `event_ids`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_job_selects_exactly_what_the_unsplit_job_does() {
    let env = Env::new("split_exact").await;
    let rows = realistic_rows("t_sx", "e1", 9_000, T0, 3 * DAY);
    env.insert(&rows).await;
    // Every 4th row is stored already, a day later than its raw row: inside the job's window for the first two
    // days, outside it for the third (so those rows stay pending).
    let stored: Vec<InsertEvent> = rows
        .iter()
        .step_by(4)
        .map(|r| InsertEvent::of(r, r.timestamp + DAY))
        .collect();
    env.insert_events(&stored).await;
    let daemon = env.running_daemon();
    let ids: Vec<String> = rows
        .iter()
        .step_by(7)
        .map(|r| format!("{:?}", r.id))
        .collect();
    let cases = [
        (
            "pend",
            r#","mode":"pending","sample_rate":0.5,"dry_run":true"#.to_string(),
        ),
        (
            "ids",
            format!(r#","event_ids":[{}],"dry_run":true"#, ids.join(",")),
        ),
    ];
    for (name, extra) in &cases {
        for parallelism in [1, 3] {
            let job = format!("{name}-{parallelism}");
            let extra = format!(r#"{extra},"batch_size":400,"parallelism":{parallelism}"#);
            env.submit(&job, &command(&job, "t_sx", 3, &extra)).await;
        }
    }
    for (name, _) in &cases {
        let whole = env.wait_final(&format!("{name}-1"), Duration::from_secs(120));
        let split = env.wait_final(&format!("{name}-3"), Duration::from_secs(120));
        assert_eq!(whole["status"], "completed", "{whole}\n{}", daemon.log());
        assert_eq!(split["status"], "completed", "{split}\n{}", daemon.log());
        for c in COUNTERS {
            assert_eq!(whole[c], split[c], "{name} {c}: {whole} vs {split}");
        }
        let found = whole["total_events_found"].as_i64().unwrap();
        assert!(found > 0 && found < rows.len() as i64, "{name}: {whole}");
    }
    // The window matters: of the 9,000 rows, the stored ones of the first two days are hidden, those of the
    // third are not.
    let hidden = rows
        .iter()
        .step_by(4)
        .filter(|r| r.timestamp + DAY < T0 + 3 * DAY)
        .count() as i64;
    let pend = env.wait_final("pend-3", Duration::from_secs(5));
    let seen = pend["total_events_found"].as_i64().unwrap();
    assert_eq!(seen, rows.len() as i64 - hidden, "{pend}");
    assert!(
        pend["total_events_sampled_out"].as_i64().unwrap() > 0,
        "{pend}"
    );
    assert_eq!(env.read_all("output").len(), 0, "dry runs publish nothing");
}
