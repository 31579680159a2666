//! Read speed of the ClickHouse source against the local engine (`scripts/services.sh up clickhouse`).
//!
//! Loads 200,000 rows with ~700-byte realistic payloads (one tenant, 200 customers, two days) into the database
//! `src_bench`, then reads them all through `Source::stream` with batch sizes 1,000 and 10,000 (queries of 50
//! batches, as a job reads) and prints rows/s, and ClickHouse's rows read per row returned for those queries.
//! For one query of each size it also compares the source's wall time with a raw HTTP fetch of the same SQL
//! (RowBinary bytes, no decoding) and with the engine's own `statistics.elapsed`, to show how much of the time
//! is the engine, the (Python) HTTP front end, and decoding.
//!
//! Run: `cargo bench --bench source` (set `CLICKHOUSE_URL` for another server; `BENCH_ROWS` to change the size).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use raw_events_reprocessor::config::ClickHouseConfig;
use raw_events_reprocessor::source::{Cursor, Filters, Source, StreamShape};
use support::harness::InsertRow;
use support::{DAY, T0 as D0};

fn payload(id: &str, cust: &str, ts: i64, i: u64) -> String {
    format!(
        concat!(
            "{{\"id\":\"{id}\",\"orgId\":\"org_01HZX9K3M4N5P6Q7R8S9T0V1W2\",\"createdAt\":\"{ts}\",",
            "\"methodName\":\"chat.completions.create\",\"providerName\":\"openai\",\"serviceName\":\"llm-gateway\",",
            "\"customerId\":\"{cust}\",\"model\":\"gpt-4.1-2025-04-14\",\"requestId\":\"req_{i:016x}\",",
            "\"usage\":{{\"promptTokens\":{p},\"completionTokens\":{c},\"totalTokens\":{t},",
            "\"cachedTokens\":{k},\"reasoningTokens\":0}},\"latencyMs\":{l},\"status\":\"success\",",
            "\"region\":\"us-east-1\",\"environment\":\"production\",\"userAgent\":\"flexprice-sdk-go/1.8.2\",",
            "\"metadata\":{{\"project\":\"proj_7fa2c1\",\"feature\":\"assistant\",\"team\":\"platform\",",
            "\"traceId\":\"{i:032x}\",\"spanId\":\"{s:016x}\",\"tags\":[\"billing\",\"llm\",\"prod\"]}}}}"
        ),
        id = id,
        cust = cust,
        ts = ts,
        i = i,
        p = 100 + i % 4000,
        c = 10 + i % 900,
        t = 110 + i % 4900,
        k = i % 64,
        l = 200 + i % 3000,
        s = i.wrapping_mul(2_654_435_761),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    let n: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let admin = clickhouse::Client::default().with_url(&url);
    if let Err(e) = admin.query("SELECT 1").fetch_all::<u8>().await {
        panic!("ClickHouse not reachable at {url} ({e}) — run scripts/services.sh up");
    }
    let db = "src_bench";
    support::harness::create_schema(&admin, db, &|ddl| ddl).await;

    let started = Instant::now();
    let client = admin.clone().with_database(db);
    let mut bytes = 0usize;
    for chunk in 0..4u64 {
        let mut insert = client.insert::<InsertRow>("raw_events").await.unwrap();
        for i in (chunk * n / 4)..((chunk + 1) * n / 4) {
            let id = format!("evt_{i:010}");
            let cust = format!("cust_{:04}", i % 200);
            let ts = D0 + (i * 7919 % (2 * DAY as u64)) as i64;
            let p = payload(&id, &cust, ts, i);
            bytes += p.len();
            let row = InsertRow {
                event_name: "openai-modeling-gpt-4.1".into(),
                source: Some("api".into()),
                ingested_at: ts + 150,
                ..InsertRow::new(&id, "tenant_bench", "env_prod", &cust, ts, p.as_bytes())
            };
            insert.write(&row).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    println!(
        "loaded {n} rows (payload mean {} bytes) in {:.1} s",
        bytes as u64 / n.max(1),
        started.elapsed().as_secs_f64()
    );

    let cfg = ClickHouseConfig {
        url: url.clone(),
        database: db.into(),
        ..ClickHouseConfig::default()
    };
    let src = Source::connect(&cfg).await.unwrap();
    let f = Filters::new("tenant_bench", "env_prod", D0, D0 + 2 * DAY);
    for batch in [1_000u32, 10_000] {
        let shape = StreamShape {
            batch_size: batch,
            rows_per_query: u64::from(batch) * 50,
            buffered_batches: 1,
        };
        let started = Instant::now();
        let mut stream = src.stream(f.clone(), None, shape);
        let (mut rows, mut batches, mut cursors) = (0usize, 0usize, vec![None]);
        while let Some(b) = stream.next().await {
            let b = b.unwrap();
            rows += b.len();
            batches += 1;
            if batches % 50 == 0 {
                cursors.push(b.last().map(Cursor::of));
            }
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(rows as u64, n);
        // The job's queries again, with FORMAT JSON: rows ClickHouse read for the rows it returned.
        let (mut read, mut returned) = (0u64, 0u64);
        for c in &cursors {
            let stats = src
                .query_stats(&src.page_sql(&f, c.as_ref(), batch * 50))
                .await
                .unwrap();
            read += stats.rows_read;
            returned += stats.rows;
        }
        println!(
            "source, batch {batch:>6}: {rows} rows in {batches} batches, {secs:.2} s, {:.0} rows/s;              {:.2} rows read per row returned (first query of each day and chunk)",
            rows as f64 / secs,
            read as f64 / returned.max(1) as f64
        );

        // One query from the middle of the first day: source vs raw HTTP vs engine.
        let mid = Cursor {
            external_customer_id: b"cust_0100".to_vec(),
            timestamp_ms: D0,
            event_name: Vec::new(),
            id: Vec::new(),
        };
        let one = StreamShape {
            rows_per_query: u64::from(batch),
            ..shape
        };
        let sql = src.page_sql(&f, Some(&mid), batch);
        let reps = 5;
        let mut t_source = 0.0;
        let mut t_raw = 0.0;
        let mut t_engine = 0.0;
        let mut raw_bytes = 0usize;
        for _ in 0..reps {
            let s = Instant::now();
            let got = src
                .stream(f.clone(), Some(mid.clone()), one)
                .next()
                .await
                .unwrap()
                .unwrap();
            t_source += s.elapsed().as_secs_f64();
            assert_eq!(got.len(), batch as usize);

            let s = Instant::now();
            let mut q = client.query(&sql.text);
            for (name, value) in &sql.params {
                q = q.param(name, value);
            }
            let mut cur = q.fetch_bytes("RowBinary").unwrap();
            raw_bytes = 0;
            while let Some(chunk) = cur.next().await.unwrap() {
                raw_bytes += chunk.len();
            }
            t_raw += s.elapsed().as_secs_f64();

            t_engine += src.query_stats(&sql).await.unwrap().elapsed_secs;
        }
        let r = reps as f64;
        println!(
            "  one {batch}-row query ({} KB): source {:.1} ms, raw HTTP fetch {:.1} ms, engine {:.1} ms \
             => HTTP front end + transfer {:.1} ms, decoding {:.1} ms",
            raw_bytes / 1024,
            t_source / r * 1e3,
            t_raw / r * 1e3,
            t_engine / r * 1e3,
            (t_raw - t_engine) / r * 1e3,
            (t_source - t_raw) / r * 1e3,
        );
    }
}
