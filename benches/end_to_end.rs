//! End-to-end benchmark against the local services (`scripts/services.sh up`): the daemon (release build of
//! this checkout, as a child process) replays a job of generated rows into Kafka.
//!
//! Prints, for a 200,000-row job at batch size 1,000 and 5,000, the events per second from the job's
//! `started_at` to its `completed_at` (the replay itself: read, transform, transactional publish), and the
//! daemon's peak resident memory (VmHWM) for a 200,000-row and a 1,000,000-row job, to show it does not grow
//! with the job's size. Rows are generated inside ClickHouse (`INSERT … SELECT … FROM numbers(n)`), realistic
//! Bento payloads of about 700 bytes.
//!
//! Run: `cargo bench --bench end_to_end` (set `E2E_BENCH_SIZES=200000,1000000` to change the job sizes).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::harness::{Env, rfc3339};
use support::{DAY, T0};

/// Generates `n` rows of `tenant` inside ClickHouse, spread over two days and 500 customers.
async fn generate(env: &Env, tenant: &str, n: u64) {
    let sql = format!(
        "INSERT INTO {db}.raw_events (id, tenant_id, environment_id, external_customer_id, event_name, payload, timestamp, version)
         SELECT concat('row-', toString(number)), '{tenant}', 'e1', concat('cust-', toString(number % 500)), 'usage',
           concat('{{\"id\":\"evt-', toString(number), '-', hex(cityHash64(number)),
                  '\",\"orgId\":\"org-', toString(number % 500),
                  '\",\"targetItemType\":\"call\",\"targetItemId\":\"', lower(hex(cityHash64(number, 1))),
                  '\",\"referenceType\":\"completion\",\"providerName\":\"', ['openai','anthropic','deepgram','11labs'][number % 4 + 1],
                  '\",\"methodName\":\"', ['modeling','transcription','synthesizer'][number % 3 + 1],
                  '\",\"createdAt\":\"', formatDateTime(toDateTime64({{t0:Int64}} / 1000 + (number * 17) % 172800, 3, 'UTC'), '%Y-%m-%dT%H:%i:%S.000Z', 'UTC'),
                  '\",\"updatedAt\":\"2026-01-02T16:17:31.458Z\",\"startedAt\":\"2026-01-02T16:17:11.674Z\",\"endedAt\":\"2026-01-02T16:17:31.458Z\",\"dataInterface\":\"MODEL_USAGE_DATA_TYPE\",\"byok\":false,\"isSubscribed\":false,\"data\":{{\"modelName\":\"gpt-4.1\",\"promptTokens\":', toString(number % 200000),
                  ',\"cachedPromptTokens\":', toString(number % 7000),
                  ',\"completionTokens\":', toString(number % 5000),
                  '}},\"referenceCost\":0.001994}}'),
           fromUnixTimestamp64Milli(toInt64({{t0:Int64}} + (number * 17) % {{span:Int64}}), 'UTC'), 1
         FROM numbers({{n:UInt64}})",
        db = env.database,
    );
    env.client()
        .query(&sql)
        .param("t0", T0)
        .param("span", 2 * DAY)
        .param("n", n)
        .execute()
        .await
        .expect("generate rows");
}

struct Run {
    rows: i64,
    seconds: f64,
    peak_rss_kib: u64,
}

async fn run_job(rows: u64, batch: u32) -> Run {
    let mut env = Env::new(&format!("bench_{rows}_{batch}")).await;
    env.extra_env
        .push(("REPROCESSOR_OBSERVABILITY__LOG_LEVEL".into(), "warn".into()));
    env.extra_env.push((
        "REPROCESSOR_PROCESSING__PROGRESS_INTERVAL_SECS".into(),
        "5".into(),
    ));
    let tenant = "t_bench";
    let loaded = Instant::now();
    generate(&env, tenant, rows).await;
    eprintln!(
        "generated {rows} rows in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );
    let daemon = env.start_daemon();
    env.wait_topics(Duration::from_secs(60));
    let job = format!("bench-{rows}-{batch}");
    env.submit(
        &job,
        &format!(
            r#"{{"type":"reprocess","job_id":"{job}","tenant_id":"{tenant}","environment_id":"e1","start_date":"{}","end_date":"{}","batch_size":{batch}}}"#,
            rfc3339(T0),
            rfc3339(T0 + 2 * DAY)
        ),
    )
    .await;
    let fin = env.wait_final(&job, Duration::from_secs(3600));
    assert_eq!(fin["status"], "completed", "{fin}");
    let peak = daemon.peak_rss_kib().unwrap_or(0);
    let parse = |k: &str| {
        time::OffsetDateTime::parse(
            fin[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let seconds = (parse("completed_at") - parse("started_at")).as_seconds_f64();
    Run {
        rows: fin["total_events_found"].as_i64().unwrap(),
        seconds,
        peak_rss_kib: peak,
    }
}

fn main() {
    let sizes: Vec<u64> = std::env::var("E2E_BENCH_SIZES")
        .unwrap_or_else(|_| "200000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("E2E_BENCH_SIZES: numbers"))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "end-to-end replay (daemon in release build, local Kafka + chdb front end, 2 cores shared)"
    );
    for &rows in &sizes {
        let batches: &[u32] = if rows <= 200_000 {
            &[1000, 5000]
        } else {
            &[5000]
        };
        for &batch in batches {
            let r = rt.block_on(run_job(rows, batch));
            println!(
                "job of {:>9} rows, batch {:>5}: {:>8.0} events/s ({:.1} s); daemon peak RSS {:.1} MiB",
                r.rows,
                batch,
                r.rows as f64 / r.seconds.max(0.001),
                r.seconds,
                r.peak_rss_kib as f64 / 1024.0
            );
        }
    }
}
