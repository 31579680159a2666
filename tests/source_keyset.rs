//! The ClickHouse source against the real engine (`scripts/services.sh up clickhouse`): keyset pagination with
//! FINAL, every filter, pending mode, injection-proof parameters, cost per page, retries (SPEC §4).
//!
//! Each test uses its own database `src_test_<name>` with both tables created from `schemas/clickhouse/*.sql`,
//! so tests run in parallel. A missing service fails the test with a message saying how to start it.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use raw_events_reprocessor::config::ClickHouseConfig;
use raw_events_reprocessor::source::{
    Cursor, Filters, Mode, RawRow, Source, SourceError, StreamShape,
};

use support::harness::{InsertEvent, InsertRow};
use support::{DAY, T0 as D0};

fn url() -> String {
    support::clickhouse_url()
}

type InsEvent = InsertEvent;
type Ins = InsertRow;

fn ins(tenant: &str, env: &str, cust: &str, ts: i64, id: &str, name: &str, version: u64) -> Ins {
    let payload = format!("{{\"id\":\"{id}\",\"v\":{version}}}");
    Ins {
        event_name: name.into(),
        source: (!version.is_multiple_of(2)).then(|| "api".into()),
        field1: Some(format!("f{version}")),
        field10: Some("ten".into()),
        ingested_at: ts + 5,
        version,
        ..Ins::new(id, tenant, env, cust, ts, payload.as_bytes())
    }
}

fn to_raw(r: &Ins) -> RawRow {
    r.to_raw()
}

/// Which ORDER BY the test table has.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    Current,
    Older,
}

struct Db {
    name: String,
    admin: clickhouse::Client,
}

/// Fails (never skips) when ClickHouse is not there.
async fn admin() -> clickhouse::Client {
    let client = clickhouse::Client::default().with_url(url());
    if let Err(e) = client.query("SELECT 1").fetch_all::<u8>().await {
        panic!(
            "ClickHouse not reachable at {} ({e}) — run scripts/services.sh up",
            url()
        );
    }
    client
}

/// A fresh database `src_test_<name>` with `raw_events` (current or older ORDER BY, index granularity
/// `granularity`) and `events`, from the schema files.
async fn setup(name: &str, key: Key, granularity: u32) -> Db {
    let admin = admin().await;
    let db = format!("src_test_{name}");
    support::harness::create_schema(&admin, &db, &|ddl| {
        let ddl = ddl.replace(
            "index_granularity = 16384",
            &format!("index_granularity = {granularity}"),
        );
        match key {
            Key::Older => ddl.replace(
                "ORDER BY (tenant_id, environment_id, external_customer_id, timestamp, id)",
                "ORDER BY (tenant_id, environment_id, external_customer_id, timestamp, event_name, id)",
            ),
            Key::Current => ddl,
        }
    })
    .await;
    // Keep inserted parts apart, so FINAL really has unmerged versions to deduplicate.
    admin
        .query(&format!("SYSTEM STOP MERGES {db}.raw_events"))
        .execute()
        .await
        .unwrap();
    Db { name: db, admin }
}

impl Db {
    fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url(),
            database: self.name.clone(),
            retry_budget_secs: 5,
            ..ClickHouseConfig::default()
        }
    }

    async fn source(&self) -> Source {
        Source::connect(&self.config()).await.unwrap()
    }

    /// One INSERT (one part per partition touched).
    async fn insert(&self, rows: &[Ins]) {
        let client = self.admin.clone().with_database(&self.name);
        let mut insert = client.insert::<Ins>("raw_events").await.unwrap();
        for r in rows {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    async fn insert_events(&self, rows: &[InsEvent]) {
        let client = self.admin.clone().with_database(&self.name);
        let mut insert = client.insert::<InsEvent>("events").await.unwrap();
        for r in rows {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    async fn count_unmerged(&self) -> u64 {
        self.admin
            .query(&format!("SELECT count() FROM {}.raw_events", self.name))
            .fetch_one::<u64>()
            .await
            .unwrap()
    }
}

/// A deterministic pseudo-random sequence.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// A database of the current table (granularity 1,024) holding [`dataset`], inserted in its two INSERTs.
async fn loaded(name: &str) -> (Db, Vec<Ins>, Vec<Ins>) {
    let db = setup(name, Key::Current, 1024).await;
    let (first, second) = dataset(Key::Current);
    db.insert(&first).await;
    db.insert(&second).await;
    (db, first, second)
}

/// The main data set. Returns (first insert, second insert with newer versions).
///
/// Tenant `t1`/`e1`: 20,000 rows over three days (D0, D0+1, D0+3): 1,000 rows on five identical timestamps
/// (customers c000..c004), 3,000 rows 1 ms apart for customer `cseq`, the rest random; 300 of them get a second
/// version (different payload, event name and field1) in a separate INSERT. Plus 2,000 rows of tenant `t2`,
/// 1,000 of `t1`/`e2`, and 500 of `t10` (a tenant whose id has `t1` as a prefix).
fn dataset(key: Key) -> (Vec<Ins>, Vec<Ins>) {
    let mut rng = Lcg(42);
    let mut first = Vec::new();
    let names = ["gpt-4.1", "gpt-4o", "claude", "embed"];
    let days = [D0, D0 + DAY, D0 + 3 * DAY];
    for i in 0..20_000u64 {
        let (cust, ts) = if i < 1_000 {
            (
                format!("c{:03}", i % 5),
                days[(i % 3) as usize] + 3_600_000 * (i % 5) as i64,
            )
        } else if i < 4_000 {
            ("cseq".to_string(), days[1] + 1_000 + (i - 1_000) as i64)
        } else {
            (
                format!("c{:03}", rng.next() % 60),
                days[(rng.next() % 3) as usize] + (rng.next() % DAY as u64) as i64,
            )
        };
        let name = names[(rng.next() % 4) as usize];
        first.push(ins("t1", "e1", &cust, ts, &format!("ev{i:06}"), name, 1));
    }
    // Other tenants and environments, which no filter of t1/e1 may return.
    for (tenant, env, prefix, n) in [
        ("t2", "e1", "x", 2_000u64),
        ("t1", "e2", "y", 1_000),
        ("t10", "e1", "z", 500),
    ] {
        for i in 0..n {
            let ts = days[(i % 3) as usize] + (rng.next() % DAY as u64) as i64;
            let (cust, id) = (format!("c{:03}", i % 60), format!("{prefix}{i:06}"));
            first.push(ins(tenant, env, &cust, ts, &id, "gpt-4o", 1));
        }
    }
    let mut second = Vec::new();
    for i in (0..20_000usize).step_by(20_000 / 300).take(300) {
        let mut r = first[i].clone();
        r.version = 2;
        if key == Key::Current {
            // Under the older key `event_name` is part of the row's identity: keep it.
            r.event_name = "renamed".into();
        }
        r.payload = format!("{{\"id\":\"{}\",\"v\":2}}", r.id).into_bytes();
        r.field1 = Some("second".into());
        r.source = None;
        second.push(r);
    }
    assert_eq!(second.len(), 300);
    (first, second)
}

/// A column of a row read back, as text (the test data is UTF-8).
fn s(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("test data is UTF-8")
}

fn key_tuple(key: Key, r: &RawRow) -> (i64, Vec<u8>, i64, Vec<u8>, Vec<u8>) {
    let day = r.timestamp_ms.div_euclid(DAY);
    match key {
        Key::Current => (
            day,
            r.external_customer_id.clone(),
            r.timestamp_ms,
            r.id.clone(),
            Vec::new(),
        ),
        Key::Older => (
            day,
            r.external_customer_id.clone(),
            r.timestamp_ms,
            r.event_name.clone(),
            r.id.clone(),
        ),
    }
}

/// Newest version of every row matching `f`, in replay order (day, then sorting key).
fn expected(key: Key, inserts: &[&[Ins]], f: &Filters, events: &[InsEvent]) -> Vec<RawRow> {
    // The ReplacingMergeTree identity of a row is its full sorting key.
    let mut newest: BTreeMap<(String, String, String, i64, String, String), RawRow> =
        BTreeMap::new();
    for rows in inserts {
        for r in rows.iter() {
            let en = if key == Key::Older {
                r.event_name.clone()
            } else {
                String::new()
            };
            let k = (
                r.tenant_id.clone(),
                r.environment_id.clone(),
                r.external_customer_id.clone(),
                r.timestamp,
                en,
                r.id.clone(),
            );
            let raw = to_raw(r);
            match newest.get(&k) {
                Some(old) if old.version > raw.version => {}
                _ => {
                    newest.insert(k, raw);
                }
            }
        }
    }
    let done: HashSet<&str> = events
        .iter()
        .filter(|e| {
            e.tenant_id == f.tenant_id
                && e.environment_id == f.environment_id
                && e.timestamp >= f.start_ms
                && e.timestamp < f.end_ms
        })
        .map(|e| e.id.as_str())
        .collect();
    let mut out: Vec<RawRow> = newest
        .into_values()
        .filter(|r| {
            let id = s(&r.id).to_string();
            s(&r.tenant_id) == f.tenant_id
                && s(&r.environment_id) == f.environment_id
                && (f.external_customer_ids.is_empty()
                    || f.external_customer_ids
                        .contains(&s(&r.external_customer_id).to_string()))
                && (f.event_names.is_empty()
                    || f.event_names.contains(&s(&r.event_name).to_string()))
                && (f.event_ids.is_empty() || f.event_ids.contains(&id))
                && r.timestamp_ms >= f.start_ms
                && r.timestamp_ms < f.end_ms
                && (f.mode == Mode::All || !done.contains(id.as_str()))
        })
        .collect();
    out.sort_by_key(|r| key_tuple(key, r));
    out
}

fn filters(tenant: &str, env: &str) -> Filters {
    Filters::new(tenant, env, D0 - DAY, D0 + 10 * DAY)
}

/// A stream of batches of `batch` rows whose queries read 3 batches each (so that every replay crosses many
/// query boundaries as well as days).
fn shape(batch: u32) -> StreamShape {
    StreamShape {
        batch_size: batch,
        rows_per_query: u64::from(batch) * 3,
        buffered_batches: 1,
    }
}

/// The first batch of the stream after `after` (`None` when it is empty).
async fn first_batch(
    src: &Source,
    f: &Filters,
    after: Option<Cursor>,
    batch: u32,
) -> Option<Result<Vec<RawRow>, SourceError>> {
    src.stream(f.clone(), after, shape(batch)).next().await
}

/// Reads every batch of the stream; checks the batch contract (never empty, `batch` rows except the last) and
/// returns the concatenated rows and the number of batches.
async fn read_all(src: &Source, f: &Filters, batch: u32) -> (Vec<RawRow>, usize) {
    let mut out = Vec::new();
    let mut stream = src.stream(f.clone(), None, shape(batch));
    let mut sizes = Vec::new();
    while let Some(rows) = stream.next().await {
        let rows = rows.unwrap();
        sizes.push(rows.len());
        out.extend(rows);
    }
    if let Some((_, full)) = sizes.split_last() {
        assert!(full.iter().all(|n| *n == batch as usize), "{sizes:?}");
    }
    assert!(
        sizes.iter().all(|n| (1..=batch as usize).contains(n)),
        "{sizes:?}"
    );
    (out, sizes.len())
}

fn assert_same(got: &[RawRow], want: &[RawRow], what: &str) {
    let ids: HashSet<&[u8]> = got.iter().map(|r| r.id.as_slice()).collect();
    assert_eq!(ids.len(), got.len(), "{what}: a row came twice");
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} rows, want {}; first difference at {first:?}: got {:?} want {:?}",
            got.len(),
            want.len(),
            first.map(|i| &got[i]),
            first.map(|i| &want[i]),
        );
    }
}

async fn full_replay(name: &str, key: Key) {
    let db = setup(name, key, 1024).await;
    let (first, second) = dataset(key);
    db.insert(&first).await;
    db.insert(&second).await;
    assert_eq!(
        db.count_unmerged().await,
        (first.len() + second.len()) as u64,
        "versions must stay unmerged"
    );
    let src = db.source().await;
    let want_cols: Vec<&str> = match key {
        Key::Current => vec!["external_customer_id", "timestamp", "id"],
        Key::Older => vec!["external_customer_id", "timestamp", "event_name", "id"],
    };
    assert_eq!(src.sorting_key().columns(), want_cols.as_slice());

    let f = filters("t1", "e1");
    let want = expected(key, &[&first, &second], &f, &[]);
    assert_eq!(want.len(), 20_000);
    assert_eq!(want.iter().filter(|r| r.version == 2).count(), 300);
    assert_eq!(src.count(&f).await.unwrap(), 20_000);
    for batch in [7u32, 1000, 10_000] {
        // Every query is one HTTP round trip to the (serialized, Python) local front end, about 60-70 ms on the
        // 2-core test machine: batch 7 (queries of 21 rows) reads one day (about 6,600 rows, with ties, second
        // versions and the 1 ms run).
        let (f, want) = if batch == 7 {
            let mut f7 = f.clone();
            f7.start_ms = D0 + DAY;
            f7.end_ms = D0 + 2 * DAY;
            let want7 = expected(key, &[&first, &second], &f7, &[]);
            (f7, want7)
        } else {
            (f.clone(), want.clone())
        };
        let started = Instant::now();
        let (got, pages) = read_all(&src, &f, batch).await;
        assert_same(&got, &want, &format!("batch {batch}"));
        eprintln!(
            "{name}: batch {batch}: {} rows, {pages} pages in {:?}",
            got.len(),
            started.elapsed()
        );
    }
    // Batch size 1 on a subset (every page is one HTTP round trip): the tie customers c000..c004 (1,000 rows on
    // five timestamps per day, plus their random rows), and `cseq` rows 1 ms apart on a 600 ms window.
    let mut f1 = f.clone();
    f1.external_customer_ids = vec!["c000".into(), "c003".into()];
    let want1 = expected(key, &[&first, &second], &f1, &[]);
    assert!(want1.len() > 500, "{}", want1.len());
    let (got, _) = read_all(&src, &f1, 1).await;
    assert_same(&got, &want1, "batch 1, ties");
    let mut f2 = f.clone();
    f2.external_customer_ids = vec!["cseq".into()];
    f2.start_ms = D0 + DAY + 1_000;
    f2.end_ms = D0 + DAY + 1_600;
    let want2 = expected(key, &[&first, &second], &f2, &[]);
    assert_eq!(want2.len(), 600);
    let (got, _) = read_all(&src, &f2, 1).await;
    assert_same(&got, &want2, "batch 1, 1 ms apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_once_in_key_order_current_table() {
    full_replay("current", Key::Current).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_once_in_key_order_older_table() {
    full_replay("older", Key::Older).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_alone_and_combined() {
    let (db, first, second) = loaded("filters").await;
    let src = db.source().await;
    let base = filters("t1", "e1");
    let all = [&first[..], &second[..]];

    let mut cases: Vec<(&str, Filters)> = Vec::new();
    let mut f = base.clone();
    f.external_customer_ids = vec!["c007".into(), "c042".into(), "nobody".into()];
    cases.push(("customers", f));
    let mut f = base.clone();
    f.event_names = vec!["claude".into(), "renamed".into()];
    cases.push(("event names (incl. the newest version's)", f));
    let mut f = base.clone();
    f.event_names = vec!["renamed".into()];
    cases.push(("event name only in newest versions", f));
    let mut f = base.clone();
    f.event_ids = vec![
        "ev000000".into(),
        "ev019999".into(),
        "x000001".into(),
        "ev004321".into(),
    ];
    cases.push(("event ids (one of another tenant)", f));
    let mut f = base.clone();
    f.start_ms = D0 + DAY + 1_000;
    f.end_ms = D0 + DAY + 1_500;
    cases.push(("range", f));
    let mut f = base.clone();
    f.start_ms = D0 + 12 * 3_600_000;
    f.end_ms = D0 + 3 * DAY + 6 * 3_600_000;
    cases.push(("range across days", f));
    let mut f = base.clone();
    f.environment_id = "e2".into();
    cases.push(("other environment", f));
    let mut f = base.clone();
    f.tenant_id = "t10".into();
    cases.push(("tenant with t1 as prefix", f));
    let mut f = base.clone();
    f.external_customer_ids = vec!["c001".into(), "c003".into(), "cseq".into()];
    f.event_names = vec!["gpt-4.1".into(), "embed".into()];
    f.start_ms = D0 + 3_600_000;
    f.end_ms = D0 + 3 * DAY + 3 * 3_600_000;
    cases.push(("combined", f));
    let mut f = base.clone();
    f.external_customer_ids = vec!["cseq".into()];
    f.event_ids = vec!["ev001000".into(), "ev001001".into(), "ev003999".into()];
    f.event_names = vec![
        "gpt-4.1".into(),
        "gpt-4o".into(),
        "claude".into(),
        "embed".into(),
        "renamed".into(),
    ];
    cases.push(("combined with ids", f));

    for (what, f) in &cases {
        let want = expected(Key::Current, &all, f, &[]);
        let (got, _) = read_all(&src, f, 97).await;
        assert_same(&got, &want, what);
        assert_eq!(
            src.count(f).await.unwrap(),
            want.len() as u64,
            "count: {what}"
        );
    }

    // Range bounds: `start` included, `end` excluded, to the millisecond.
    let t = D0 + DAY + 1_000 + 17; // ev001017 of cseq
    let mut f = base.clone();
    f.external_customer_ids = vec!["cseq".into()];
    f.start_ms = t;
    f.end_ms = t + 1;
    let (got, _) = read_all(&src, &f, 10).await;
    assert_eq!(
        got.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(),
        vec![t]
    );
    f.start_ms = t + 1;
    f.end_ms = t + 3;
    let (got, _) = read_all(&src, &f, 10).await;
    assert_eq!(
        got.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(),
        vec![t + 1, t + 2]
    );
    f.end_ms = f.start_ms;
    assert!(first_batch(&src, &f, None, 10).await.is_none());
    // Millisecond precision is kept end to end.
    assert!(got.iter().all(|r| r.ingested_at_ms == r.timestamp_ms + 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_version_decides_the_event_name_filter() {
    let db = setup("final_filter", Key::Current, 1024).await;
    let a = ins("t1", "e1", "c1", D0 + 10, "id1", "old-name", 1);
    let mut b = a.clone();
    b.version = 2;
    b.event_name = "new-name".into();
    db.insert(&[a]).await;
    db.insert(&[b]).await;
    let src = db.source().await;
    let mut f = filters("t1", "e1");
    f.event_names = vec!["old-name".into()];
    let (got, _) = read_all(&src, &f, 10).await;
    assert!(
        got.is_empty(),
        "an older version must not come back: {got:?}"
    );
    f.event_names = vec!["new-name".into()];
    let (got, _) = read_all(&src, &f, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_mode_skips_ids_already_in_events() {
    let (db, first, second) = loaded("pending").await;
    let mut events = Vec::new();
    let mut rng = Lcg(7);
    for r in first
        .iter()
        .filter(|r| r.tenant_id == "t1" && r.environment_id == "e1")
    {
        if rng.next() % 10 < 3 {
            let mut tenant = r.tenant_id.clone();
            // Some ids are in `events` for another tenant or environment, or outside the window: they must not
            // hide the row.
            let k = rng.next() % 10;
            let mut env = r.environment_id.clone();
            let mut ts = r.timestamp;
            if k == 0 {
                tenant = "t2".into();
            } else if k == 1 {
                env = "e2".into();
            } else if k == 2 {
                ts = D0 + 30 * DAY;
            }
            events.push(InsEvent {
                id: r.id.clone(),
                tenant_id: tenant,
                external_customer_id: r.external_customer_id.clone(),
                environment_id: env,
                event_name: r.event_name.clone(),
                customer_id: None,
                source: None,
                timestamp: ts,
                ingested_at: ts,
                properties: "{}".into(),
            });
        }
    }
    assert!(events.len() > 5_000);
    db.insert_events(&events).await;
    let src = db.source().await;
    let all = [&first[..], &second[..]];
    let mut f = filters("t1", "e1");
    f.mode = Mode::Pending;
    let want = expected(Key::Current, &all, &f, &events);
    let hidden = 20_000 - want.len();
    assert!((4_000..6_000).contains(&hidden), "{hidden}");
    for batch in [13u32, 1000] {
        let (got, _) = read_all(&src, &f, batch).await;
        assert_same(&got, &want, &format!("pending, batch {batch}"));
    }
    assert_eq!(src.count(&f).await.unwrap(), want.len() as u64);
    f.external_customer_ids = vec!["c000".into(), "cseq".into()];
    let want = expected(Key::Current, &all, &f, &events);
    let (got, _) = read_all(&src, &f, 50).await;
    assert_same(&got, &want, "pending with customers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_filter_values_match_only_literally() {
    let db = setup("injection", Key::Current, 1024).await;
    let long = "x".repeat(100_000);
    let hostile: Vec<String> = vec![
        "x' OR 1=1 --".into(),
        "x\\' OR 1=1 --".into(),
        "back\\slash".into(),
        "quote'\"`".into(),
        "nul\0byte".into(),
        "tab\tnew\nline\r".into(),
        "{tenant:String}".into(),
        "?".into(),
        "ünïcødé ✓".into(),
        long.clone(),
    ];
    let mut rows = Vec::new();
    for (i, v) in hostile.iter().enumerate() {
        rows.push(ins("t1", "e1", v, D0 + i as i64, &format!("h{i}"), v, 1));
        rows.push(ins(v, v, v, D0 + i as i64, v, v, 1));
    }
    rows.push(ins("t1", "e1", "plain", D0, "p1", "plain", 1));
    db.insert(&rows).await;
    let src = db.source().await;
    for v in &hostile {
        let label = &v[..v.len().min(20)];
        // As tenant and environment: only the row with exactly those values.
        let f = filters(v, v);
        let (got, _) = read_all(&src, &f, 3).await;
        assert_eq!(got.len(), 1, "{label:?}");
        assert_eq!(s(&got[0].id), v);
        // As customer, event name and id lists.
        let mut f = filters("t1", "e1");
        f.external_customer_ids = vec![v.clone()];
        let (got, _) = read_all(&src, &f, 3).await;
        assert_eq!(got.len(), 1, "customer {label:?}");
        assert_eq!(s(&got[0].external_customer_id), v);
        let mut f = filters("t1", "e1");
        f.event_names = vec![v.clone(), "nothing".into()];
        f.event_ids = vec![s(&got[0].id).to_string(), v.clone()];
        f.mode = Mode::Pending;
        let (got, _) = read_all(&src, &f, 3).await;
        assert_eq!(got.len(), 1, "event name {label:?}");
        assert_eq!(src.count(&f).await.unwrap(), 1);
        // As a cursor: resuming after the hostile row skips exactly it.
        let c = Cursor::of(&got[0]);
        let f = filters("t1", "e1");
        if let Some(rest) = first_batch(&src, &f, Some(c), 100).await {
            assert!(rest.unwrap().iter().all(|r| r.id != got[0].id));
        }
    }
    let (got, _) = read_all(&src, &filters("t1", "e1"), 4).await;
    assert_eq!(got.len(), hostile.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_arriving_during_a_replay() {
    let db = setup("arrivals", Key::Current, 1024).await;
    let mut rows = Vec::new();
    for i in 0..2_000i64 {
        rows.push(ins(
            "t1",
            "e1",
            &format!("c{:02}", i % 20),
            D0 + i * 1000,
            &format!("a{i:05}"),
            "n",
            1,
        ));
    }
    db.insert(&rows).await;
    let src = db.source().await;
    let f = filters("t1", "e1");
    let mut got: Vec<RawRow> = Vec::new();
    let mut late_ahead = Vec::new();
    let mut round = 0;
    // One batch per query, so that each query starts after rows were inserted.
    let mut stream = src.stream(
        f.clone(),
        None,
        StreamShape {
            batch_size: 150,
            rows_per_query: 150,
            buffered_batches: 1,
        },
    );
    while let Some(read) = stream.next().await {
        let read = read.unwrap();
        got.extend(read.iter().cloned());
        let cursor = read.last().map(Cursor::of);
        let c = cursor.as_ref().unwrap();
        round += 1;
        // Behind the cursor: same customer earlier in time, an earlier customer, a newer version of a row
        // already read, and a row equal to the cursor's key but a smaller id. Ahead: a later customer.
        let behind = vec![
            ins(
                "t1",
                "e1",
                s(&c.external_customer_id),
                c.timestamp_ms - 1,
                &format!("late{round}a"),
                "n",
                1,
            ),
            ins("t1", "e1", "c00", D0 + 5, &format!("late{round}b"), "n", 1),
            {
                let mut r = rows[0].clone();
                r.version = 10 + round;
                r
            },
        ];
        let ahead = ins(
            "t1",
            "e1",
            "zz",
            D0 + 3_000_000 + round as i64,
            &format!("late{round}z"),
            "n",
            1,
        );
        late_ahead.push(to_raw(&ahead));
        let mut batch = behind;
        batch.push(ahead);
        db.insert(&batch).await;
    }
    let ids: Vec<&str> = got.iter().map(|r| s(&r.id)).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a row was read twice");
    for r in &rows {
        assert!(unique.contains(r.id.as_str()), "{} was skipped", r.id);
    }
    assert!(
        !ids.iter()
            .any(|id| id.starts_with("late") && (id.ends_with('a') || id.ends_with('b')))
    );
    // Rows that arrived ahead of the reading position are read (the customer `zz` sorts last in its day). The
    // stream reads at most two batches ahead of the consumer (one waiting in the channel, one waiting to be
    // sent), so the query after those sees the rows inserted in a round: every round's but the last three's.
    let expected_ahead = &late_ahead[..late_ahead.len().saturating_sub(3)];
    assert!(expected_ahead.len() >= 5, "{}", late_ahead.len());
    assert!(expected_ahead.iter().all(|r| unique.contains(s(&r.id))));
    let ahead_read = got.len() - rows.len();
    assert!((expected_ahead.len()..=late_ahead.len()).contains(&ahead_read));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_per_page_is_flat() {
    // 500 customers × 2,000 rows in one day, plus other tenants' rows; index_granularity 1,024; three parts
    // (three INSERTs).
    let db = setup("cost", Key::Current, 1024).await;
    let mut rng = Lcg(3);
    let mut all = Vec::new();
    for c in 0..500 {
        for j in 0..2_000i64 {
            let ts = D0 + (rng.next() % DAY as u64) as i64;
            let mut r = ins(
                "t1",
                "e1",
                &format!("cust{c:03}"),
                ts,
                &format!("r{c:03}-{j:04}"),
                "n",
                1,
            );
            r.payload = Vec::new();
            all.push(r);
        }
    }
    for j in 0..100_000i64 {
        let mut r = ins(
            if j % 2 == 0 { "t0" } else { "t2" },
            "e1",
            &format!("cust{:03}", j % 500),
            D0 + (rng.next() % DAY as u64) as i64,
            &format!("o{j:06}"),
            "n",
            1,
        );
        r.payload = Vec::new();
        all.push(r);
    }
    let third = all.len() / 3;
    for chunk in all.chunks(third + 1) {
        db.insert(chunk).await;
    }
    let src = db.source().await;
    let f = Filters {
        start_ms: D0,
        end_ms: D0 + DAY,
        ..filters("t1", "e1")
    };
    let batch = 1_000u32;
    // Page positions from the first page to the last: the cursors are the rows just before each page, taken
    // from the data itself (in key order), so the test does not have to walk all 1,000 pages.
    let mut mine: Vec<RawRow> = all
        .iter()
        .filter(|r| r.tenant_id == "t1")
        .map(to_raw)
        .collect();
    mine.sort_by_key(|r| key_tuple(Key::Current, r));
    let pages = mine.len() / batch as usize;
    let mut reads = Vec::new();
    for p in (0..pages)
        .step_by(pages / 20)
        .chain(std::iter::once(pages - 1))
    {
        let cursor = (p > 0).then(|| Cursor::of(&mine[p * batch as usize - 1]));
        let stats = src
            .query_stats(&src.page_sql(&f, cursor.as_ref(), batch))
            .await
            .unwrap();
        let rows = first_batch(&src, &f, cursor, batch).await.unwrap().unwrap();
        assert_eq!(rows.len(), batch as usize);
        assert_eq!(rows[0], mine[p * batch as usize]);
        reads.push(stats.rows_read);
    }
    let first = reads[0];
    let middle = reads[reads.len() / 2];
    let last = *reads.last().unwrap();
    let max = *reads.iter().max().unwrap();
    eprintln!(
        "rows_read per 1,000-row page (sampled {} pages of {pages}): first {first}, middle {middle}, last {last}, max {max}: {reads:?}",
        reads.len()
    );
    // batch + a few granules per part touched (3 parts, granularity 1,024).
    let bound = batch as u64 + 3 * 8 * 1024;
    assert!(
        max <= bound,
        "a page read {max} rows (bound {bound}): {reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_payload_comes_through() {
    let db = setup("utf8", Key::Current, 1024).await;
    let mut r = ins("t1", "e1", "c1", D0 + 1, "bad", "n", 1);
    r.payload = vec![b'{', 0xff, 0xfe, b'"', 0xc3, b'}', 0];
    db.insert(&[r.clone()]).await;
    let src = db.source().await;
    let (got, _) = read_all(&src, &filters("t1", "e1"), 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, r.payload);
}

/// Key columns that are not valid UTF-8 never fail a page: the rows come through with their exact bytes, in
/// bytewise key order, and a cursor on such a row resumes exactly after it (SPEC §4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_columns_that_are_not_utf8_page_and_resume_exactly() {
    let db = setup("badkeys", Key::Current, 1024).await;
    let mut rows: Vec<Ins> = (0..6)
        .map(|i| {
            ins(
                "t1",
                "e1",
                &format!("c{i}"),
                D0 + i,
                &format!("r{i}"),
                "n",
                1,
            )
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.external_customer_id, a.timestamp).cmp(&(&b.external_customer_id, b.timestamp))
    });
    db.insert(&rows).await;
    // Three rows with bytes that are not UTF-8 in the id, the customer and the event name.
    let sql = format!(
        "INSERT INTO {}.raw_events (id, tenant_id, environment_id, external_customer_id, event_name, payload, timestamp, version) VALUES \
         (unhex('ff01'), 't1', 'e1', 'c2', 'n', '{{}}', fromUnixTimestamp64Milli(toInt64({}), 'UTC'), 1), \
         ('r-odd-cust', 't1', 'e1', unhex('63ff'), 'n', '{{}}', fromUnixTimestamp64Milli(toInt64({}), 'UTC'), 1), \
         (unhex('72c3'), 't1', 'e1', 'c4', unhex('fe'), '{{}}', fromUnixTimestamp64Milli(toInt64({}), 'UTC'), 1)",
        db.name,
        D0 + 2,
        D0 + 7,
        D0 + 4
    );
    db.admin.query(&sql).execute().await.unwrap();
    let src = db.source().await;
    let (got, pages) = read_all(&src, &filters("t1", "e1"), 1).await;
    assert_eq!(got.len(), 9, "{got:?}");
    assert!(pages >= 9);
    let keys: Vec<(Vec<u8>, i64, Vec<u8>)> = got
        .iter()
        .map(|r| (r.external_customer_id.clone(), r.timestamp_ms, r.id.clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "bytewise key order");
    let odd: Vec<&RawRow> = got
        .iter()
        .filter(|r| r.invalid_utf8_key().is_some())
        .collect();
    assert_eq!(odd.len(), 3);
    assert!(got.iter().any(|r| r.id == [0xff, 0x01]));
    assert!(got.iter().any(|r| r.external_customer_id == [b'c', 0xff]));
    assert!(
        got.iter()
            .any(|r| r.event_name == [0xfe] && r.id == [b'r', 0xc3])
    );
}

/// A `timestamp` of another precision than `DateTime64(3)` is refused when the source connects, naming the type
/// (a millisecond cursor would re-read rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamp_of_another_precision_is_refused_at_start() {
    let db = setup("micros", Key::Current, 1024).await;
    db.admin
        .query(&format!("DROP TABLE {}.raw_events", db.name))
        .execute()
        .await
        .unwrap();
    let ddl = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/clickhouse/002_raw_events.sql"
    ))
    .unwrap()
    .replace("flexprice.", &format!("{}.", db.name))
    .replace("timestamp DateTime64(3)", "timestamp DateTime64(6)");
    assert!(ddl.contains("DateTime64(6)"), "{ddl}");
    let ddl: String = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    db.admin.query(&ddl).execute().await.unwrap();
    let e = Source::connect(&db.config()).await.unwrap_err();
    assert!(matches!(e, SourceError::UnsupportedTimestamp { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("DateTime64(6)") && text.contains("raw_events"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_days_cost_little_on_long_ranges() {
    let db = setup("sparse", Key::Current, 1024).await;
    let days = [D0 - 300 * DAY, D0, D0 + 400 * DAY];
    let rows: Vec<Ins> = days
        .iter()
        .enumerate()
        .flat_map(|(d, &t)| {
            (0..5).map(move |i| ins("t1", "e1", "c1", t + i, &format!("s{d}{i}"), "n", 1))
        })
        .collect();
    db.insert(&rows).await;
    let src = db.source().await;
    let f = Filters {
        start_ms: D0 - 365 * DAY,
        end_ms: D0 + 365 * DAY + 100 * DAY,
        ..filters("t1", "e1")
    };
    let started = Instant::now();
    let (got, pages) = read_all(&src, &f, 4).await;
    let took = started.elapsed();
    assert_eq!(got.len(), 15);
    assert!(pages <= 7, "{pages} pages");
    eprintln!("2-year range with data on 3 days: {pages} pages in {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_transient_retried_permanent_at_once() {
    // A closed port with a tiny retry budget: RetriesExhausted naming the cause, not a hang.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = ClickHouseConfig {
        url: format!("http://127.0.0.1:{port}"),
        retry_budget_secs: 1,
        request_timeout_secs: 2,
        ..ClickHouseConfig::default()
    };
    let started = Instant::now();
    let e = Source::connect(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let text = e.to_string();
    assert!(matches!(e, SourceError::RetriesExhausted { .. }), "{text}");
    assert!(text.to_lowercase().contains("connection refused"), "{text}");

    // A missing table at connect: at once, naming the table.
    let db = setup("errors", Key::Current, 1024).await;
    let mut cfg = db.config();
    cfg.retry_budget_secs = 60;
    cfg.table = "no_such_table".into();
    let started = Instant::now();
    let e = Source::connect(&cfg).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(e, SourceError::MissingTable { .. }), "{e}");
    assert!(e.to_string().contains("no_such_table"), "{e}");

    // The table disappears after connect: the server's "unknown table" error fails the page at once.
    let mut cfg = db.config();
    cfg.retry_budget_secs = 60;
    let src = Source::connect(&cfg).await.unwrap();
    src.ping().await.unwrap();
    db.admin
        .query(&format!("DROP TABLE {}.raw_events", db.name))
        .execute()
        .await
        .unwrap();
    let started = Instant::now();
    let e = first_batch(&src, &filters("t1", "e1"), None, 10)
        .await
        .unwrap()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let text = e.to_string();
    assert!(matches!(e, SourceError::MissingTable { .. }), "{text}");
    assert!(text.contains("raw_events"), "{text}");
    let mut f = filters("t1", "e1");
    f.start_ms = D0;
    f.end_ms = D0 + 1;
    let e = src.count(&f).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SourceError::MissingTable { .. }), "{text}");
    assert!(
        text.contains("raw_events") && text.contains("Code: 60"),
        "{text}"
    );
    let e = src.ping().await.unwrap_err();
    assert!(matches!(e, SourceError::MissingTable { .. }), "{e}");

    // A missing events table fails pending mode at once, naming the server's error.
    let db = setup("errors2", Key::Current, 1024).await;
    db.insert(&[ins("t1", "e1", "c1", D0, "i1", "n", 1)]).await;
    db.admin
        .query(&format!("DROP TABLE {}.events", db.name))
        .execute()
        .await
        .unwrap();
    let src = db.source().await;
    let mut f = filters("t1", "e1");
    f.mode = Mode::Pending;
    let e = first_batch(&src, &f, None, 10).await.unwrap().unwrap_err();
    assert!(e.to_string().contains("events"), "{e}");

    // An unsupported sorting key is refused at connect.
    let mut cfg = db.config();
    cfg.sorting_key = vec!["external_customer_id".into(), "source".into()];
    let e = Source::connect(&cfg).await.unwrap_err();
    assert!(
        matches!(e, SourceError::UnsupportedSortingKey { .. }),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_sorting_key_wins() {
    let db = setup("configured", Key::Older, 1024).await;
    let (first, _) = dataset(Key::Older);
    let subset: Vec<Ins> = first
        .iter()
        .filter(|r| r.external_customer_id == "c001")
        .cloned()
        .collect();
    db.insert(&subset).await;
    let mut cfg = db.config();
    cfg.sorting_key = vec![
        "external_customer_id".into(),
        "timestamp".into(),
        "event_name".into(),
        "id".into(),
    ];
    let src = Source::connect(&cfg).await.unwrap();
    assert_eq!(src.sorting_key().columns().len(), 4);
    let f = filters("t1", "e1");
    let want = expected(Key::Older, &[&subset], &f, &[]);
    let (got, _) = read_all(&src, &f, 9).await;
    assert_same(&got, &want, "configured key");
    let c = Cursor::of(&got[0]);
    let json = src.sorting_key().cursor_json(&c);
    assert_eq!(json.as_object().unwrap().len(), 4);
    assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_tells_unreachable_from_missing_table() {
    let db = setup("ping", Key::Current, 1024).await;
    let target = url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (proxied, task) = support::clickhouse_proxy(target, support::Fault::None).await;
    let mut cfg = db.config();
    cfg.url = proxied;
    cfg.retry_budget_secs = 1;
    cfg.request_timeout_secs = 2;
    let src = Source::connect(&cfg).await.unwrap();
    src.ping().await.unwrap();
    // The server goes away (listener and open connections closed): Unreachable, quickly.
    task.abort();
    let _ = task.await;
    let started = Instant::now();
    let e = src.ping().await.unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("not reachable"), "{e}");
    // A read while it is away: transient, retried within the budget, then RetriesExhausted naming the table.
    let e = first_batch(&src, &filters("t1", "e1"), None, 10)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, SourceError::RetriesExhausted { .. }), "{e}");
    assert!(e.to_string().contains("raw_events"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // Missing events table: ping names it.
    db.admin
        .query(&format!("DROP TABLE {}.events", db.name))
        .execute()
        .await
        .unwrap();
    let src = db.source().await;
    let e = src.ping().await.unwrap_err();
    assert!(matches!(e, SourceError::MissingTable { .. }), "{e}");
    assert!(e.to_string().contains("`events`"), "{e}");
}

/// The estimate counts rows per day cheaply: the newest versions and more (unmerged versions count again),
/// never fewer than the exact count, and only the days of the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_counts_per_day_at_least_the_rows() {
    let (db, _, second) = loaded("estimate").await;
    let src = db.source().await;
    let f = filters("t1", "e1");
    let days = src.estimate(&f).await.unwrap();
    let exact = src.count(&f).await.unwrap();
    let total: u64 = days.iter().map(|(_, n)| n).sum();
    assert!(
        total >= exact && total <= exact + second.len() as u64,
        "{total} vs {exact}"
    );
    assert_eq!(
        days.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [20240301, 20240302, 20240304]
    );
    let mut one_day = f.clone();
    one_day.start_ms = D0 + DAY;
    one_day.end_ms = D0 + 2 * DAY;
    assert_eq!(src.estimate(&one_day).await.unwrap().len(), 1);
}

/// A network that cuts every connection after 64 KB of answers: each query breaks off mid-stream, and the
/// stream resumes from the last row read, so every row still comes exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_where_a_broken_query_stopped() {
    let db = setup("cut", Key::Current, 1024).await;
    let rows: Vec<Ins> = (0..3_000i64)
        .map(|i| {
            let mut r = ins(
                "t1",
                "e1",
                &format!("c{:02}", i % 17),
                D0 + i * 7,
                &format!("r{i:05}"),
                "n",
                1,
            );
            r.payload = format!("{{\"id\":\"r{i}\",\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes();
            r
        })
        .collect();
    db.insert(&rows).await;
    let target = url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (proxied, _task) =
        support::clickhouse_proxy(target, support::Fault::CutAfter(64 * 1024)).await;
    let mut cfg = db.config();
    cfg.url = proxied;
    let src = Source::connect(&cfg).await.unwrap();
    let f = filters("t1", "e1");
    let mut want: Vec<RawRow> = rows.iter().map(to_raw).collect();
    want.sort_by_key(|r| key_tuple(Key::Current, r));
    let mut got = Vec::new();
    let mut stream = src.stream(
        f,
        None,
        StreamShape {
            batch_size: 250,
            rows_per_query: 2_000,
            buffered_batches: 1,
        },
    );
    while let Some(batch) = stream.next().await {
        got.extend(batch.unwrap());
    }
    assert_same(&got, &want, "through a cutting network");
}

/// `(rows_read_total, query attempts, sum of query seconds)` as `/metrics` shows them.
fn read_figures(m: &raw_events_reprocessor::metrics::Metrics) -> (f64, f64, f64) {
    let text = m.render();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("Prometheus text format");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    (
        value("reprocessor_rows_read_total"),
        value("reprocessor_clickhouse_query_duration_seconds_count"),
        value("reprocessor_clickhouse_query_duration_seconds_sum"),
    )
}

/// The read metrics (SPEC §9): every row taken from ClickHouse counts once, every query attempt is timed
/// without the time the consumer takes, and a stream dropped mid-query still counts what it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_metrics_count_rows_taken_and_time_queries_without_the_consumer() {
    let db = setup("read_metrics", Key::Current, 1024).await;
    let rows: Vec<Ins> = (0..1_000i64)
        .map(|i| ins("t1", "e1", "c", D0 + i, &format!("r{i:04}"), "n", 1))
        .collect();
    db.insert(&rows).await;
    let metrics = raw_events_reprocessor::metrics::Metrics::new();
    let src = db.source().await.with_read_metrics(metrics.reads());
    let f = filters("t1", "e1");
    // Queries of 300 rows: 300, 300, 300, 100.
    let shape = StreamShape {
        batch_size: 100,
        rows_per_query: 300,
        buffered_batches: 1,
    };
    let mut stream = src.stream(f.clone(), None, shape);
    let mut got = stream.next().await.unwrap().unwrap().len();
    let pause = Duration::from_secs(3);
    tokio::time::sleep(pause).await;
    while let Some(batch) = stream.next().await {
        got += batch.unwrap().len();
    }
    assert_eq!(got, 1_000);
    let (read, queries, seconds) = read_figures(&metrics);
    assert_eq!((read, queries), (1_000.0, 4.0));
    assert!(
        seconds < pause.as_secs_f64(),
        "the first query waited {pause:?} for the consumer, which is not ClickHouse time: {seconds} s"
    );

    // A consumer that takes one batch and drops the stream while its first query is being read.
    let mut stream = src.stream(f, None, shape);
    assert_eq!(stream.next().await.unwrap().unwrap().len(), 100);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_figures(&metrics).1 < 5.0 {
        assert!(
            Instant::now() < deadline,
            "the dropped stream's query was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (read, queries, _) = read_figures(&metrics);
    assert_eq!(queries, 5.0);
    assert!(
        (1_100.0..=1_300.0).contains(&read),
        "the dropped stream took 100 to 300 rows: {read} - 1000"
    );
}
