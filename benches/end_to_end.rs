//! End-to-end benchmark against the local services (`scripts/services.sh up`): the daemon (release build of
//! this checkout, as a child process) replays jobs of generated rows into Kafka, and the same broker's
//! transactional-produce ceiling is measured in the same run with Apache Kafka's own
//! `org.apache.kafka.tools.ProducerPerformance` (Maven Central's `kafka-tools`, resolved into the services'
//! cache on first use): 700-byte lz4 records in transactions of 100 ms.
//!
//! For each job it prints: events/s from the job's `started_at` to its `completed_at` (the replay itself:
//! read, transform, transactional publish), that rate as a share of the ceiling measured just before (the
//! figure that counts on a noisy machine), the daemon's CPU time per event (`/proc/<pid>/stat`, user + system,
//! over the job), ClickHouse's rows read per row published (the daemon's own queries, logged at DEBUG, run
//! again with `FORMAT JSON` for `statistics.rows_read`), and the daemon's peak resident memory (VmHWM).
//!
//! Rows are generated inside ClickHouse (`INSERT … SELECT … FROM numbers(n)`): realistic Bento payloads of
//! about 700 bytes over two days and 500 customers.
//!
//! Run: `cargo bench --bench end_to_end` (`E2E_BENCH_JOBS=400000x1000,400000x5000,...` changes the jobs:
//! rows × batch size, optionally `pN` for a split job of `parallelism` N and `iM` for M daemon instances of
//! one group, e.g. `1000000x5000p4i2`; CPU is then summed over the instances and the peak RSS is the
//! largest).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use raw_events_reprocessor::config::ClickHouseConfig;
use raw_events_reprocessor::source::Source;
use raw_events_reprocessor::source::query::{ParamValue, Sql};
use support::harness::{DaemonProcess, Env, rfc3339};
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

/// The jar folders `ProducerPerformance` runs from: the broker's (from `scripts/services.sh`) and
/// `kafka-tools`, resolved with Maven into the same cache on first use.
fn kafka_tools_classpath() -> String {
    let cache = std::env::var("RER_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME"))
                .join(".cache/raw-events-reprocessor")
        });
    let broker = std::fs::read_dir(&cache)
        .expect("the services' cache (run scripts/services.sh up)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("kafka-4.4.0-jars-"))
        })
        .expect("the broker's jars (run scripts/services.sh up)");
    let tools = cache.join("kafka-tools-4.4.0");
    if !tools.join("kafka-tools-4.4.0.jar").is_file() {
        let ok = Command::new("mvn")
            .args([
                "-q",
                "-B",
                "dependency:copy",
                "-Dartifact=org.apache.kafka:kafka-tools:4.4.0",
                &format!("-DoutputDirectory={}", tools.display()),
            ])
            .status()
            .expect("run mvn")
            .success();
        assert!(ok, "cannot resolve org.apache.kafka:kafka-tools:4.4.0");
    }
    format!("{}/*:{}/*", broker.display(), tools.display())
}

/// Records/s of `ProducerPerformance` on the broker: `n` records of 700 bytes, lz4, `acks=all`, in
/// transactions of 100 ms, onto a fresh topic of 6 partitions.
async fn ceiling(env: &Env, classpath: &str, n: u64) -> f64 {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let topic = env.topic("ceiling");
    let admin: AdminClient<DefaultClientContext> = env.kafka_config().create().unwrap();
    admin
        .create_topics(
            [&NewTopic::new(&topic, 6, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let out = Command::new("java")
        .args([
            "-Xmx512m",
            "-cp",
            classpath,
            "org.apache.kafka.tools.ProducerPerformance",
        ])
        .args(["--topic", &topic, "--num-records", &n.to_string()])
        .args(["--record-size", "700", "--throughput", "-1"])
        .args(["--transactional-id", &format!("ceiling-{}", env.name)])
        .args(["--transaction-duration-ms", "100", "--producer-props"])
        .arg(format!("bootstrap.servers={}", env.kafka))
        .args(["compression.type=lz4", "acks=all", "linger.ms=5"])
        .output()
        .expect("run ProducerPerformance");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .unwrap_or_else(|| {
            panic!(
                "no summary from ProducerPerformance:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // "400000 records sent, 108430.1 records/sec (72.61 MB/sec), …"
    last.split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable summary: {last}"))
}

/// User + system CPU time of a process, seconds (`/proc/<pid>/stat`, fields 14 and 15, in clock ticks of
/// 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields from 3 (state) on: utime is field 14, stime 15.
    let ticks = |i: usize| fields[i - 3].parse::<f64>().expect("ticks");
    (ticks(14) + ticks(15)) / 100.0
}

/// Rows ClickHouse read for the daemons' stream queries (from their DEBUG logs), and the rows they returned:
/// each query is run again with `FORMAT JSON`.
async fn rows_read(env: &Env, daemons: &[DaemonProcess]) -> (u64, u64) {
    let cfg = ClickHouseConfig {
        url: env.clickhouse.clone(),
        database: env.database.clone(),
        ..ClickHouseConfig::default()
    };
    let src = Source::connect(&cfg).await.expect("connect to ClickHouse");
    let (mut read, mut returned) = (0, 0);
    let logs: Vec<String> = daemons.iter().map(DaemonProcess::log).collect();
    for line in logs.iter().flat_map(|l| l.lines()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["message"] != "ClickHouse stream query" {
            continue;
        }
        let params: Vec<(String, ParamValue)> =
            serde_json::from_str(v["params"].as_str().unwrap()).unwrap();
        let sql = Sql {
            text: v["sql"].as_str().unwrap().to_string(),
            params,
        };
        let stats = src.query_stats(&sql).await.expect("query statistics");
        read += stats.rows_read;
        returned += stats.rows;
    }
    (read, returned)
}

struct Run {
    rows: i64,
    seconds: f64,
    cpu_us_per_event: f64,
    rows_read_per_row: f64,
    peak_rss_kib: u64,
}

/// One benchmark job: rows, batch size, parallelism, daemon instances.
#[derive(Debug, Clone, Copy)]
struct Job {
    rows: u64,
    batch: u32,
    parallelism: u32,
    instances: usize,
}

impl Job {
    /// `ROWSxBATCH[pN][iM]`.
    fn parse(text: &str) -> Job {
        let usage = format!("E2E_BENCH_JOBS: ROWSxBATCH[pN][iM],… (got {text:?})");
        let (rows, rest) = text.trim().split_once('x').expect(&usage);
        let (rest, instances) = rest.split_once('i').unwrap_or((rest, "1"));
        let (batch, parallelism) = rest.split_once('p').unwrap_or((rest, "1"));
        Job {
            rows: rows.parse().expect(&usage),
            batch: batch.parse().expect(&usage),
            parallelism: parallelism.parse().expect(&usage),
            instances: instances.parse().expect(&usage),
        }
    }
}

async fn run_job(spec: Job) -> Run {
    let Job {
        rows,
        batch,
        parallelism,
        instances,
    } = spec;
    let mut env = Env::new(&format!("bench_{rows}_{batch}_{parallelism}_{instances}")).await;
    env.extra_env.push((
        "REPROCESSOR_OBSERVABILITY__LOG_LEVEL".into(),
        "warn,raw_events_reprocessor::source::stream=debug,raw_events_reprocessor::daemon=info"
            .into(),
    ));
    env.extra_env.push((
        "REPROCESSOR_PROCESSING__PROGRESS_INTERVAL_SECS".into(),
        "5".into(),
    ));
    let tenant = "t_bench";
    generate(&env, tenant, rows).await;
    let mut daemons = vec![env.start_instance("i0")];
    env.wait_topics(Duration::from_secs(60));
    for k in 1..instances {
        daemons.push(env.start_instance(&format!("i{k}")));
    }
    // Every instance holds control partitions before the command (or its parts) arrive.
    for d in &daemons {
        d.wait_log("control partitions assigned", Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_secs(2));
    let pids: Vec<u32> = daemons
        .iter()
        .map(|d| d.pid().expect("daemon running"))
        .collect();
    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let job = format!("bench-{rows}-{batch}-{parallelism}-{instances}");
    env.submit(
        &job,
        &format!(
            r#"{{"type":"reprocess","job_id":"{job}","tenant_id":"{tenant}","environment_id":"e1","start_date":"{}","end_date":"{}","batch_size":{batch},"parallelism":{parallelism}}}"#,
            rfc3339(T0),
            rfc3339(T0 + 2 * DAY)
        ),
    )
    .await;
    let fin = env.wait_final(&job, Duration::from_secs(3600));
    assert_eq!(fin["status"], "completed", "{fin}");
    let cpu = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
    let peak = daemons
        .iter()
        .filter_map(DaemonProcess::peak_rss_kib)
        .max()
        .unwrap_or(0);
    let parse = |k: &str| {
        time::OffsetDateTime::parse(
            fin[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let seconds = (parse("completed_at") - parse("started_at")).as_seconds_f64();
    let published = fin["total_events_published"].as_i64().unwrap();
    let (read, _) = rows_read(&env, &daemons).await;
    Run {
        rows: fin["total_events_found"].as_i64().unwrap(),
        seconds,
        cpu_us_per_event: cpu * 1e6 / published.max(1) as f64,
        rows_read_per_row: read as f64 / published.max(1) as f64,
        peak_rss_kib: peak,
    }
}

fn main() {
    let jobs: Vec<Job> = std::env::var("E2E_BENCH_JOBS")
        .unwrap_or_else(|_| "400000x1000,400000x5000,200000x10000,1000000x10000".into())
        .split(',')
        .map(Job::parse)
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let classpath = kafka_tools_classpath();
    println!(
        "end-to-end replay (daemon in release build, local Kafka 4.4 + ClickHouse engine, 2 shared cores)"
    );
    for job in jobs {
        let env = rt.block_on(Env::new(&format!("ceiling_{}_{}", job.rows, job.batch)));
        let ceiling = rt.block_on(ceiling(&env, &classpath, job.rows.min(400_000)));
        let r = rt.block_on(run_job(job));
        let rate = r.rows as f64 / r.seconds.max(0.001);
        println!(
            "job of {:>9} rows, batch {:>5}, parallelism {}, {} instance(s): {:>8.0} events/s ({:.1} s) = {:.2} of the ceiling ({:.0} records/s); \
             daemon CPU {:.2} µs/event; {:.2} rows read per row published; peak RSS {:.1} MiB",
            r.rows,
            job.batch,
            job.parallelism,
            job.instances,
            rate,
            r.seconds,
            rate / ceiling,
            ceiling,
            r.cpu_us_per_event,
            r.rows_read_per_row,
            r.peak_rss_kib as f64 / 1024.0
        );
    }
}
