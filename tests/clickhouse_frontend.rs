//! The local ClickHouse HTTP front end (tests/support/clickhouse_http.py over chdb) against the `clickhouse`
//! crate the daemon uses: LZ4 inserts (`decompress=1`), schema validation (RowBinaryWithNamesAndTypes),
//! `.bind()`, `.param()` (multipart bodies), settings, errors, and the flexprice schema of SPEC §4.
//!
//! Needs `scripts/services.sh up` (or `CLICKHOUSE_URL`); fails, never skips, when ClickHouse is not there.

mod support;

use clickhouse::{Client, Compression, Row};
use serde::{Deserialize, Serialize};

const DATABASE: &str = "rer_test_frontend";

fn client() -> Client {
    support::require_clickhouse();
    Client::default()
        .with_url(support::clickhouse_url())
        .with_compression(Compression::Lz4)
}

/// A fresh table `DATABASE.<name>_<pid>` and a client bound to `DATABASE`.
async fn fresh_table(name: &str) -> (Client, String) {
    let client = client();
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"))
        .execute()
        .await
        .expect("create test database");
    let client = client.with_database(DATABASE);
    let table = format!("{name}_{}", std::process::id());
    client
        .query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute()
        .await
        .expect("drop old test table");
    client
        .query(&format!(
            "CREATE TABLE {table} (
                id String,
                tenant_id String,
                source Nullable(String),
                timestamp DateTime64(3),
                version UInt64
            ) ENGINE = ReplacingMergeTree(version)
            PARTITION BY toYYYYMMDD(timestamp)
            ORDER BY (tenant_id, timestamp, id)"
        ))
        .execute()
        .await
        .expect("create test table");
    (client, table)
}

async fn drop_table(client: &Client, table: &str) {
    client
        .query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute()
        .await
        .expect("drop test table");
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct Event {
    id: String,
    tenant_id: String,
    source: Option<String>,
    /// `DateTime64(3)` as UTC milliseconds.
    timestamp: i64,
    version: u64,
}

/// 2025-01-01T00:00:00Z (the literals below name it).
const START_MS: i64 = 1_735_689_600_000;

fn event(i: usize) -> Event {
    Event {
        id: format!("evt-{i:06}-{}", "x".repeat(40)),
        tenant_id: if i.is_multiple_of(2) {
            "tenant-a"
        } else {
            "tenant-b"
        }
        .to_string(),
        source: i.is_multiple_of(3).then(|| format!("src-{i}")),
        timestamp: START_MS + (i as i64) * 17_000,
        version: i as u64,
    }
}

#[tokio::test]
async fn ping_and_select_one() {
    let client = client();
    let one: u8 = client
        .query("SELECT 1")
        .fetch_one()
        .await
        .expect("SELECT 1");
    assert_eq!(one, 1);
    let version: String = client
        .query("SELECT version()")
        .fetch_one()
        .await
        .expect("SELECT version()");
    assert!(version.starts_with("26."), "engine version {version}");
}

#[tokio::test]
async fn lz4_insert_then_select_with_bind_param_and_settings() {
    let (client, table) = fresh_table("events").await;
    // Enough rows for several compressed blocks and a chunked upload.
    let rows: Vec<Event> = (0..20_000).map(event).collect();
    let mut insert = client.insert::<Event>(&table).await.expect("begin insert");
    for row in &rows {
        insert.write(row).await.expect("write row");
    }
    insert.end().await.expect("end insert");

    let count: u64 = client
        .query(&format!("SELECT count() FROM {table}"))
        .fetch_one()
        .await
        .expect("count");
    assert_eq!(count, rows.len() as u64);

    // `?` placeholders bound by the client, half-open time range as in SPEC §4.
    let from = START_MS + support::DAY / 4;
    let to = START_MS + support::DAY / 2;
    let got: Vec<Event> = client
        .query(&format!(
            "SELECT ?fields FROM {table} FINAL
             WHERE tenant_id = ? AND timestamp >= fromUnixTimestamp64Milli(?, 'UTC')
               AND timestamp < fromUnixTimestamp64Milli(?, 'UTC')
             ORDER BY tenant_id, timestamp, id LIMIT ?"
        ))
        .bind("tenant-a")
        .bind(from)
        .bind(to)
        .bind(100u32)
        .with_setting("max_block_size", "100")
        .fetch_all()
        .await
        .expect("select with bind");
    let expected: Vec<Event> = rows
        .iter()
        .filter(|e| e.tenant_id == "tenant-a" && e.timestamp >= from && e.timestamp < to)
        .take(100)
        .cloned()
        .collect();
    assert_eq!(got.len(), 100);
    assert_eq!(got, expected);

    // Server-side `{name:Type}` parameters (sent as a multipart body), including a DateTime64(3) value
    // and a string that needs escaping.
    let got: Vec<Event> = client
        .query(&format!(
            "SELECT ?fields FROM {table}
             WHERE tenant_id = {{tenant:String}} AND timestamp >= {{from:DateTime64(3, 'UTC')}}
               AND id != {{odd:String}}
             ORDER BY tenant_id, timestamp, id LIMIT 3"
        ))
        .param("tenant", "tenant-b")
        .param("from", "2025-01-01 00:00:00.017")
        .param("odd", "it's\ta \"test\"\\")
        .fetch_all()
        .await
        .expect("select with param");
    let expected: Vec<Event> = rows
        .iter()
        .filter(|e| e.tenant_id == "tenant-b" && e.timestamp >= START_MS + 17)
        .take(3)
        .cloned()
        .collect();
    assert_eq!(got, expected);

    let echoed: String = client
        .query("SELECT {s:String}")
        .param("s", "it's\ta \"test\"\\ ü")
        .fetch_one()
        .await
        .expect("echo a parameter");
    assert_eq!(echoed, "it's\ta \"test\"\\ ü");

    // Settings travel per request and do not leak into the next one.
    let block: String = client
        .query("SELECT toString(getSetting('max_block_size'))")
        .with_setting("max_block_size", "1234")
        .fetch_one()
        .await
        .expect("setting");
    assert_eq!(block, "1234");
    let block: String = client
        .query("SELECT toString(getSetting('max_block_size'))")
        .fetch_one()
        .await
        .expect("setting reset");
    assert_ne!(block, "1234");

    // FORMAT JSON gives the engine's statistics (how the reader measures rows read per page).
    let json = client
        .query(&format!(
            "SELECT id FROM {table} WHERE tenant_id = ? LIMIT 5"
        ))
        .bind("tenant-a")
        .fetch_bytes("JSON")
        .expect("fetch_bytes")
        .collect()
        .await
        .expect("collect JSON");
    let json: serde_json::Value = serde_json::from_slice(&json).expect("JSON answer");
    assert_eq!(json["rows"], 5);
    assert!(json["statistics"]["rows_read"].as_u64().expect("rows_read") >= 5);

    drop_table(&client, &table).await;
}

#[tokio::test]
async fn datetime64_round_trips_and_replacing_merge_tree_deduplicates() {
    let (client, table) = fresh_table("versions").await;
    let mut insert = client.insert::<Event>(&table).await.expect("begin insert");
    let mut old = event(1);
    old.version = 1;
    let mut new = old.clone();
    new.version = 2;
    new.source = Some("newest".to_string());
    new.timestamp = old.timestamp; // same key, newer version
    insert.write(&old).await.expect("write");
    insert.write(&new).await.expect("write");
    insert.end().await.expect("end");

    let got: Vec<Event> = client
        .query(&format!("SELECT ?fields FROM {table} FINAL"))
        .fetch_all()
        .await
        .expect("select FINAL");
    assert_eq!(got, vec![new.clone()]);

    let iso: String = client
        .query(&format!(
            "SELECT formatDateTime(timestamp, '%Y-%m-%dT%H:%i:%S', 'UTC') || '.' || \
             leftPad(toString(toUnixTimestamp64Milli(timestamp) % 1000), 3, '0') FROM {table} FINAL"
        ))
        .fetch_one()
        .await
        .expect("format timestamp");
    assert_eq!(iso, "2025-01-01T00:00:17.000");
    drop_table(&client, &table).await;
}

#[tokio::test]
async fn query_error_returns_clickhouse_message() {
    let client = client();
    let err = client
        .query("SELECT * FROM rer_test_frontend.no_such_table_at_all")
        .fetch_all::<u8>()
        .await
        .expect_err("unknown table must fail");
    let text = err.to_string();
    assert!(
        text.contains("no_such_table_at_all") && text.contains("Code: 60"),
        "error should carry ClickHouse's message and code: {text}"
    );

    let err = client
        .query("SELEC 1")
        .execute()
        .await
        .expect_err("syntax error must fail");
    assert!(
        err.to_string().contains("SYNTAX_ERROR"),
        "syntax error text: {err}"
    );

    // Schema validation: a Rust row that does not match the table is refused before any insert.
    #[derive(Debug, Row, Serialize)]
    struct Wrong {
        id: u64,
    }
    let (client, table) = fresh_table("wrong").await;
    let result = async {
        let mut insert = client.insert::<Wrong>(&table).await?;
        insert.write(&Wrong { id: 1 }).await?;
        insert.end().await
    }
    .await;
    assert!(result.is_err(), "mismatched row type must be refused");
    drop_table(&client, &table).await;
}

#[derive(Debug, Row, Deserialize)]
struct TableInfo {
    name: String,
    engine: String,
    sorting_key: String,
    primary_key: String,
    partition_key: String,
}

#[tokio::test]
async fn flexprice_tables_exist_with_spec_keys() {
    let client = client();
    let tables: Vec<TableInfo> = client
        .query(
            "SELECT ?fields FROM system.tables WHERE database = 'flexprice' AND name IN ('raw_events', 'events') \
             ORDER BY name",
        )
        .fetch_all()
        .await
        .expect("read system.tables");
    assert_eq!(
        tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["events", "raw_events"],
        "flexprice tables missing: run scripts/services.sh up (it applies schemas/clickhouse)"
    );
    let events = &tables[0];
    assert_eq!(events.engine, "ReplacingMergeTree");
    assert_eq!(
        events.sorting_key,
        "tenant_id, environment_id, timestamp, id"
    );
    assert_eq!(events.primary_key, "tenant_id, environment_id");
    assert_eq!(events.partition_key, "toYYYYMMDD(timestamp)");
    let raw = &tables[1];
    assert_eq!(raw.engine, "ReplacingMergeTree");
    assert_eq!(
        raw.sorting_key,
        "tenant_id, environment_id, external_customer_id, timestamp, id"
    );
    assert_eq!(
        raw.primary_key,
        "tenant_id, environment_id, external_customer_id, timestamp"
    );
    assert_eq!(raw.partition_key, "toYYYYMMDD(timestamp)");

    let granularity: String = client
        .query("SELECT engine_full FROM system.tables WHERE database = 'flexprice' AND name = 'raw_events'")
        .fetch_one()
        .await
        .expect("engine_full");
    assert!(
        granularity.contains("index_granularity = 16384"),
        "{granularity}"
    );
}

/// A private ClickHouse instance (never the shared one) keeps its data across a stop and a start.
#[tokio::test]
async fn restart_keeps_data_on_own_instance() {
    let own = support::OwnServices::with_free_ports();
    own.up("clickhouse");
    let client = Client::default()
        .with_url(own.clickhouse_url())
        .with_database("flexprice");
    client
        .query(
            "INSERT INTO raw_events (id, tenant_id, environment_id, external_customer_id, payload, timestamp, version) \
             VALUES ('kept-1', 't', 'e', 'c', '{}', '2025-01-01 00:00:00.000', 1)",
        )
        .execute()
        .await
        .expect("insert");

    own.down("clickhouse");
    assert!(
        client.query("SELECT 1").execute().await.is_err(),
        "stopped instance must refuse queries"
    );
    own.up("clickhouse");
    let ids: Vec<String> = client
        .query("SELECT id FROM raw_events")
        .fetch_all()
        .await
        .expect("select after restart");
    assert_eq!(ids, ["kept-1"]);
}
