//! ClickHouse source: reads the rows of `raw_events` a job selects, each exactly once, in a stable order
//! (SPEC §4).
//!
//! - Keyset pagination on the table's own sorting key after `tenant_id, environment_id` ([`SortingKey`],
//!   read from `system.tables` or configuration), ascending, one UTC day at a time, never `OFFSET`.
//! - One version per row, the newest, with `FINAL` (see [`query::page`] for why not `version DESC`).
//! - Rows come as a stream of batches ([`Source::stream`], [`stream`]): one query reads many batches.
//! - `pending` mode: an anti-join against the events table.
//! - Every value is a server-side query parameter ([`query`]).
//! - Transient failures are retried with exponential backoff and jitter within `retry_budget_secs` ([`retry`]).
//!
//! Submodules: [`query`] builds the SQL (pure), [`key`] parses sorting keys and maps partitions to days,
//! [`retry`] classifies failures and retries, [`http`] is the HTTP(S) client.

pub mod http;
pub mod key;
pub mod query;
pub mod retry;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ClickHouseConfig;
use crate::metrics::ReadMetrics;
pub use key::SortingKey;
use key::{Calendar, DAY_MS, day_of};
use query::{Sql, Tables};
use retry::{Class, Failure};
pub use stream::{RowStream, StreamShape};

/// One row of `raw_events` (SPEC §4), newest version.
///
/// Every string column is read as bytes: a value that is not valid UTF-8 never fails a page (SPEC §4). The
/// payload is transformed as it is; a row whose key columns (`id`, `external_customer_id`, `event_name`) are
/// not valid UTF-8 is dead-lettered ([`RawRow::invalid_utf8_key`]) and its cursor keeps the exact bytes. Times
/// are UTC milliseconds since the epoch (`DateTime64(3)` precision kept end to end).
#[derive(Clone, Debug, Default, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct RawRow {
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub tenant_id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub environment_id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub external_customer_id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub event_name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub source: Option<Vec<u8>>,
    /// The payload's bytes, untouched.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub field1: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field2: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field3: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field4: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field5: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field6: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field7: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field8: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field9: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub field10: Option<Vec<u8>>,
    /// `timestamp`, UTC milliseconds.
    pub timestamp_ms: i64,
    /// `ingested_at`, UTC milliseconds.
    pub ingested_at_ms: i64,
    pub version: u64,
    /// Not interpreted (as in the original design).
    pub sign: i8,
}

/// A column's bytes as text: the UTF-8 they hold, with U+FFFD for invalid sequences (for logs and dead
/// letters; never for keys or cursors, which keep the bytes).
pub fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

impl RawRow {
    /// The first key column (`id`, `external_customer_id`, `event_name`) that is not valid UTF-8, if any:
    /// such a row cannot be named in an event and is dead-lettered with reason `invalid_utf8`.
    pub fn invalid_utf8_key(&self) -> Option<&'static str> {
        [
            ("id", &self.id),
            ("external_customer_id", &self.external_customer_id),
            ("event_name", &self.event_name),
        ]
        .into_iter()
        .find(|(_, v)| std::str::from_utf8(v).is_err())
        .map(|(name, _)| name)
    }
}

/// Which rows of the range a job replays (SPEC §3, §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every matching row.
    All,
    /// Only rows whose `id` is absent from the events table for the same tenant and environment with
    /// `events.timestamp` in the job's window.
    Pending,
}

/// What a job selects. Empty lists mean "no filter on this column" (the command layer rejects present-but-empty
/// lists, SPEC §3).
#[derive(Clone, Debug, PartialEq)]
pub struct Filters {
    pub tenant_id: String,
    pub environment_id: String,
    pub external_customer_ids: Vec<String>,
    pub event_names: Vec<String>,
    pub event_ids: Vec<String>,
    /// Inclusive start, UTC milliseconds.
    pub start_ms: i64,
    /// Exclusive end, UTC milliseconds.
    pub end_ms: i64,
    pub mode: Mode,
    /// Only customers `>=` this (inclusive).
    pub customer_from: Option<String>,
    /// Only customers `<` this (exclusive).
    pub customer_to: Option<String>,
    /// `pending` mode's anti-join window, UTC ms, when it is not `[start_ms, end_ms)`.
    pub pending_window: Option<(i64, i64)>,
}

impl Filters {
    /// A tenant's and environment's rows of `[start_ms, end_ms)`, every other filter off.
    pub fn new(tenant_id: &str, environment_id: &str, start_ms: i64, end_ms: i64) -> Filters {
        Filters {
            tenant_id: tenant_id.into(),
            environment_id: environment_id.into(),
            external_customer_ids: Vec::new(),
            event_names: Vec::new(),
            event_ids: Vec::new(),
            start_ms,
            end_ms,
            mode: Mode::All,
            customer_from: None,
            customer_to: None,
            pending_window: None,
        }
    }
}

/// The key columns of the last row returned: the position a replay resumes strictly after, and what the
/// checkpoint stores (SPEC §4, §5). All four columns are kept so that any supported sorting key works; only
/// the key's own columns take part in the comparison. String columns are the row's exact bytes (they need not
/// be UTF-8); `timestamp_ms` is UTC milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(with = "serde_bytes")]
    pub external_customer_id: Vec<u8>,
    pub timestamp_ms: i64,
    #[serde(with = "serde_bytes")]
    pub event_name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub id: Vec<u8>,
}

impl Cursor {
    /// The cursor's columns as a JSON object when the sorting key is not known (the CLI): every column, with
    /// `event_name` only when it is set; text as [`text`] renders it, the timestamp as RFC 3339 UTC ms.
    /// (Results name the cursor by the table's sorting key: [`SortingKey::cursor_json`].)
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        let t = |b: &[u8]| serde_json::Value::String(text(b).into_owned());
        m.insert("external_customer_id".into(), t(&self.external_customer_id));
        m.insert(
            "timestamp".into(),
            serde_json::Value::String(key::rfc3339_ms(self.timestamp_ms)),
        );
        if !self.event_name.is_empty() {
            m.insert("event_name".into(), t(&self.event_name));
        }
        m.insert("id".into(), t(&self.id));
        serde_json::Value::Object(m)
    }

    /// The cursor of a row.
    pub fn of(row: &RawRow) -> Cursor {
        Cursor {
            external_customer_id: row.external_customer_id.clone(),
            timestamp_ms: row.timestamp_ms,
            event_name: row.event_name.clone(),
            id: row.id.clone(),
        }
    }
}

/// Failures of the source. Every message names the table (or the server) and carries the server's error text.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached within the retry budget (connection refused or reset, timeouts,
    /// HTTP 5xx that ClickHouse marks retryable).
    #[error(
        "ClickHouse query on {table} at {url} still failing after {attempts} attempts in {elapsed_ms} ms \
         (retry budget {budget_secs} s): {message}"
    )]
    RetriesExhausted {
        url: String,
        table: String,
        attempts: u32,
        elapsed_ms: u64,
        budget_secs: u64,
        message: String,
    },
    /// The server refused the query for good (syntax, unknown column, type mismatch, …): not retried.
    #[error("ClickHouse query on {table} at {url} failed: {message}")]
    Permanent {
        url: String,
        table: String,
        message: String,
    },
    /// The server refused the credentials or denied access.
    #[error("ClickHouse at {url} refused user `{user}` (reading {table}): {message}")]
    Auth {
        url: String,
        user: String,
        table: String,
        message: String,
    },
    /// The table (or its database) does not exist.
    #[error("ClickHouse table {table} does not exist at {url}: {message}")]
    MissingTable {
        url: String,
        table: String,
        message: String,
    },
    /// The server is not reachable at all (`ping`: a single attempt).
    #[error("ClickHouse not reachable at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// TLS cannot be set up, or the server's certificate was refused (not retried).
    #[error(
        "ClickHouse at {url}: TLS failed (server certificate checked against {trusted}): {message}"
    )]
    Tls {
        url: String,
        trusted: String,
        message: String,
    },
    /// The table's sorting key cannot be paginated with a [`Cursor`].
    #[error("sorting key of {table} ({sorting_key}) is not supported: {reason}")]
    UnsupportedSortingKey {
        table: String,
        sorting_key: String,
        reason: String,
    },
    /// The `timestamp` column is not `DateTime64(3)`: a millisecond cursor would re-read (or skip) rows of
    /// another precision (SPEC §4).
    #[error(
        "column `timestamp` of {table} is {column_type}; only DateTime64(3) is supported (cursors and \
         checkpoints hold UTC milliseconds)"
    )]
    UnsupportedTimestamp { table: String, column_type: String },
    /// A request the source cannot serve (e.g. `batch_size` 0).
    #[error("invalid source request: {0}")]
    InvalidRequest(String),
}

struct Inner {
    client: clickhouse::Client,
    url: String,
    user: String,
    /// What server certificates are checked against, for messages ([`http::trust_anchor`]).
    trusted: String,
    tables: Tables,
    key: SortingKey,
    calendar: Calendar,
    request_timeout: Duration,
    retry_budget: Duration,
}

/// A connected source. Cheap to clone and share between jobs (an `Arc` inside; the HTTP client pools
/// connections).
#[derive(Clone)]
pub struct Source {
    inner: Arc<Inner>,
    /// Where streams record the rows they take and their query times, if anywhere.
    reads: Option<ReadMetrics>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("url", &self.inner.url)
            .field("table", &self.inner.tables.raw())
            .field("sorting_key", &self.inner.key)
            .finish_non_exhaustive()
    }
}

/// Figures of one query, as ClickHouse reports them with `FORMAT JSON` (`statistics`).
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq)]
pub struct QueryStats {
    pub rows: u64,
    pub rows_read: u64,
    pub bytes_read: u64,
    pub elapsed_secs: f64,
}

#[derive(clickhouse::Row, Deserialize)]
struct TableInfo {
    sorting_key: String,
    partition_key: String,
    timestamp_type: String,
    server_tz: String,
}

#[derive(clickhouse::Row, Deserialize)]
struct Partitions {
    ids: Vec<String>,
    tables: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct Count {
    n: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct DayCount {
    day: u32,
    n: u64,
}

#[derive(clickhouse::Row, Deserialize)]
struct CustomerCount {
    #[serde(with = "serde_bytes")]
    customer: Vec<u8>,
    n: u64,
}

fn bind(mut q: clickhouse::query::Query, sql: &Sql) -> clickhouse::query::Query {
    for (name, value) in &sql.params {
        q = q.param(name, value);
    }
    q
}

impl Source {
    /// Builds the client (`url`, `user`, `password`, `database` of [`ClickHouseConfig`]) and reads the table's
    /// sorting key (`system.tables.sorting_key`, unless `cfg.sorting_key` is set) and partition key, retrying
    /// transient errors within `retry_budget_secs`.
    ///
    /// Errors: [`SourceError::MissingTable`] when the table does not exist, [`SourceError::UnsupportedSortingKey`]
    /// when the key is not `tenant_id, environment_id` followed by columns a [`Cursor`] carries,
    /// [`SourceError::RetriesExhausted`] when the server stays unreachable, [`SourceError::Auth`],
    /// [`SourceError::Tls`] when the server's certificate is refused or `ca_file` is unusable.
    pub async fn connect(cfg: &ClickHouseConfig) -> Result<Source, SourceError> {
        let trusted = http::trust_anchor(cfg);
        let client = http::client(cfg).map_err(|message| SourceError::Tls {
            url: crate::config::redact_url(&cfg.url),
            trusted: trusted.clone(),
            message,
        })?;
        let tables = Tables {
            database: cfg.database.clone(),
            table: cfg.table.clone(),
            events_table: cfg.events_table.clone(),
        };
        let mut inner = Inner {
            client,
            // Kept for messages only: a password in the URL's user info is never shown.
            url: crate::config::redact_url(&cfg.url),
            user: cfg.user.clone(),
            trusted,
            tables,
            key: SortingKey::new("-", &["id".to_string()])?,
            calendar: Calendar::Unknown,
            request_timeout: Duration::from_secs(cfg.request_timeout_secs.max(1)),
            retry_budget: Duration::from_secs(cfg.retry_budget_secs),
        };
        let table = inner.tables.raw();
        let sql = query::table_info(&inner.tables);
        let infos: Vec<TableInfo> = inner
            .run(&table, || {
                bind(inner.client.query(&sql.text), &sql).fetch_all::<TableInfo>()
            })
            .await?;
        let Some(info) = infos.into_iter().next() else {
            return Err(SourceError::MissingTable {
                url: inner.url.clone(),
                table,
                message: "not listed in system.tables".into(),
            });
        };
        inner.key = if cfg.sorting_key.is_empty() {
            SortingKey::parse(&table, &info.sorting_key)?
        } else {
            SortingKey::new(&table, &cfg.sorting_key)?
        };
        if !key::millisecond_timestamp(&info.timestamp_type) {
            return Err(SourceError::UnsupportedTimestamp {
                table,
                column_type: info.timestamp_type,
            });
        }
        inner.calendar = Calendar::new(&info.partition_key, &info.timestamp_type, &info.server_tz);
        tracing::debug!(table = %table, sorting_key = ?inner.key.columns(), calendar = ?inner.calendar, "ClickHouse source connected");
        Ok(Source {
            inner: Arc::new(inner),
            reads: None,
        })
    }

    /// This source, with its streams recording the rows they take from ClickHouse and the time of each query
    /// attempt in `reads` (`reprocessor_rows_read_total`, `reprocessor_clickhouse_query_duration_seconds`).
    pub fn with_read_metrics(mut self, reads: ReadMetrics) -> Source {
        self.reads = Some(reads);
        self
    }

    /// The sorting-key columns pages are ordered and resumed by.
    pub fn sorting_key(&self) -> &SortingKey {
        &self.inner.key
    }

    /// Rows matching `f` per UTC day (`YYYYMMDD`, count), cheaply: one query without `FINAL` (unmerged versions
    /// count more than once), one attempt within `request_timeout_secs`, no retries. For progress, ETA and
    /// splitting; never a reason to fail a job (SPEC §4, §6).
    pub async fn estimate(&self, f: &Filters) -> Result<Vec<(u32, u64)>, SourceError> {
        if f.start_ms >= f.end_ms {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let sql = query::day_counts(&inner.tables, f);
        let rows: Vec<DayCount> = retry::retry(Duration::ZERO, inner.request_timeout, || {
            bind(inner.client.query(&sql.text), &sql).fetch_all::<DayCount>()
        })
        .await
        .map_err(|e| inner.error(&inner.tables.raw(), e))?;
        Ok(rows.into_iter().map(|r| (r.day, r.n)).collect())
    }

    /// Rows per customer matching `f`, sorted by customer (bytewise), as cheaply as [`Source::estimate`]; for
    /// cutting a day among the parts of a split job. One attempt, no retries.
    pub async fn customer_counts(&self, f: &Filters) -> Result<Vec<(Vec<u8>, u64)>, SourceError> {
        let inner = &self.inner;
        let sql = query::customer_counts(&inner.tables, f);
        let rows: Vec<CustomerCount> = retry::retry(Duration::ZERO, inner.request_timeout, || {
            bind(inner.client.query(&sql.text), &sql).fetch_all::<CustomerCount>()
        })
        .await
        .map_err(|e| inner.error(&inner.tables.raw(), e))?;
        Ok(rows.into_iter().map(|r| (r.customer, r.n)).collect())
    }

    /// The exact number of rows (newest version of each) matching `f` over its whole range: one `FINAL` count,
    /// retried within the budget. Same filters as the pages, including `pending` mode's anti-join. (Jobs use
    /// the cheaper [`Source::estimate`].)
    pub async fn count(&self, f: &Filters) -> Result<u64, SourceError> {
        if f.start_ms >= f.end_ms {
            return Ok(0);
        }
        let sql = query::count(&self.inner.tables, f);
        let rows: Vec<Count> = self
            .inner
            .run(&self.inner.tables.raw(), || {
                bind(self.inner.client.query(&sql.text), &sql).fetch_all::<Count>()
            })
            .await?;
        Ok(rows.first().map(|r| r.n).unwrap_or(0))
    }

    /// Readiness (`/readyz`, `reprocessor check`): one attempt each, no retries. Distinguishes an unreachable
    /// server ([`SourceError::Unreachable`]), refused credentials ([`SourceError::Auth`]) and a missing raw or
    /// events table ([`SourceError::MissingTable`]).
    pub async fn ping(&self) -> Result<(), SourceError> {
        let inner = &self.inner;
        let one = retry::retry(Duration::ZERO, inner.request_timeout, || {
            inner.client.query("SELECT 1").fetch_all::<u8>()
        })
        .await;
        if let Err(f) = one {
            return Err(match f.class {
                Class::Auth => inner.error(&inner.url, f),
                Class::Transient => SourceError::Unreachable {
                    url: inner.url.clone(),
                    message: f.error.to_string(),
                },
                _ => inner.error(&inner.url, f),
            });
        }
        for table in [&inner.tables.table, &inner.tables.events_table] {
            let name = format!("`{}`.`{}`", inner.tables.database, table);
            let sql = query::table_exists(&inner.tables.database, table);
            let n: Vec<Count> = retry::retry(Duration::ZERO, inner.request_timeout, || {
                bind(inner.client.query(&sql.text), &sql).fetch_all::<Count>()
            })
            .await
            .map_err(|f| inner.error(&name, f))?;
            if n.first().map(|c| c.n).unwrap_or(0) == 0 {
                return Err(SourceError::MissingTable {
                    url: inner.url.clone(),
                    table: name,
                    message: "not listed in system.tables".into(),
                });
            }
        }
        Ok(())
    }

    /// The SQL and parameters of a query of `limit` rows (blocks of `limit`) after `after`, on its day (or the
    /// range's first day), as the stream runs them. For tests and `EXPLAIN`.
    #[doc(hidden)]
    pub fn page_sql(&self, f: &Filters, after: Option<&Cursor>, limit: u32) -> Sql {
        let day = after
            .map(|c| day_of(c.timestamp_ms))
            .unwrap_or_else(|| day_of(f.start_ms));
        let slice = query::Slice {
            lo_ms: f.start_ms.max(day * DAY_MS),
            hi_ms: f.end_ms.min((day + 1) * DAY_MS),
            after,
            limit: u64::from(limit),
            block_size: u64::from(limit),
        };
        query::page(&self.inner.tables, &self.inner.key, f, &slice)
    }

    /// Runs `sql` with `FORMAT JSON` and returns ClickHouse's `statistics` (rows read from storage).
    #[doc(hidden)]
    pub async fn query_stats(&self, sql: &Sql) -> Result<QueryStats, SourceError> {
        let inner = &self.inner;
        let table = inner.tables.raw();
        let body = inner
            .run(&table, || async {
                let mut cursor = bind(inner.client.query(&sql.text), sql).fetch_bytes("JSON")?;
                let mut out = Vec::new();
                while let Some(chunk) = cursor.next().await? {
                    out.extend_from_slice(&chunk);
                }
                Ok(out)
            })
            .await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| SourceError::Permanent {
                url: inner.url.clone(),
                table: table.clone(),
                message: format!("FORMAT JSON answer not JSON: {e}"),
            })?;
        let stat = |k: &str| v["statistics"][k].as_u64().unwrap_or(0);
        Ok(QueryStats {
            rows: v["rows"].as_u64().unwrap_or(0),
            rows_read: stat("rows_read"),
            bytes_read: stat("bytes_read"),
            elapsed_secs: v["statistics"]["elapsed"].as_f64().unwrap_or(0.0),
        })
    }

    /// Days of `[first_day, last_day]` that have active parts (`None`: every day is a candidate).
    async fn candidate_days(
        &self,
        first_day: i64,
        last_day: i64,
    ) -> Result<Option<Vec<i64>>, SourceError> {
        let inner = &self.inner;
        if inner.calendar == Calendar::Unknown {
            return Ok(None);
        }
        let sql = query::partitions(&inner.tables);
        let found: Vec<Partitions> = inner
            .run(&inner.tables.raw(), || {
                bind(inner.client.query(&sql.text), &sql).fetch_all::<Partitions>()
            })
            .await?;
        let Some(Partitions { ids, tables: 1.. }) = found.into_iter().next() else {
            return Err(SourceError::MissingTable {
                url: inner.url.clone(),
                table: inner.tables.raw(),
                message: "no longer listed in system.tables".into(),
            });
        };
        Ok(inner.calendar.candidate_days(&ids, first_day, last_day))
    }
}

/// The first candidate day after `day` (not beyond `last_day`).
fn next_day(candidates: Option<&[i64]>, day: i64, last_day: i64) -> Option<i64> {
    let next = match candidates {
        None => day + 1,
        Some(list) => *list.iter().find(|&&d| d > day)?,
    };
    (next <= last_day).then_some(next)
}

impl Inner {
    /// Runs one operation with retries and maps the final failure to a [`SourceError`] naming `table`.
    async fn run<T, F, Fut>(&self, table: &str, op: F) -> Result<T, SourceError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = clickhouse::error::Result<T>>,
    {
        retry::retry(self.retry_budget, self.request_timeout, op)
            .await
            .map_err(|f| self.error(table, f))
    }

    fn error(&self, table: &str, f: Failure) -> SourceError {
        let url = self.url.clone();
        let table = table.to_string();
        let message = f.error.to_string();
        match f.class {
            Class::Transient => SourceError::RetriesExhausted {
                url,
                table,
                attempts: f.attempts,
                elapsed_ms: f.elapsed.as_millis() as u64,
                budget_secs: self.retry_budget.as_secs(),
                message,
            },
            Class::Auth => SourceError::Auth {
                url,
                user: self.user.clone(),
                table,
                message,
            },
            Class::Tls => SourceError::Tls {
                url,
                trusted: self.trusted.clone(),
                message,
            },
            Class::MissingTable => SourceError::MissingTable {
                url,
                table,
                message,
            },
            Class::Permanent => SourceError::Permanent {
                url,
                table,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_day_walks_candidates() {
        assert_eq!(next_day(None, 3, 5), Some(4));
        assert_eq!(next_day(None, 5, 5), None);
        assert_eq!(next_day(Some(&[1, 7, 9]), 3, 10), Some(7));
        assert_eq!(next_day(Some(&[1, 7, 9]), 3, 6), None);
        assert_eq!(next_day(Some(&[]), 3, 6), None);
    }

    #[test]
    fn mode_serializes_lowercase() {
        assert_eq!(
            serde_json::to_string(&Mode::Pending).unwrap(),
            "\"pending\""
        );
        assert_eq!(serde_json::from_str::<Mode>("\"all\"").unwrap(), Mode::All);
    }

    #[tokio::test]
    async fn closed_port_exhausts_retries_naming_the_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let cfg = ClickHouseConfig {
            url: format!("http://127.0.0.1:{port}"),
            retry_budget_secs: 1,
            request_timeout_secs: 2,
            ..ClickHouseConfig::default()
        };
        let started = std::time::Instant::now();
        let e = Source::connect(&cfg).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        let text = e.to_string();
        assert!(
            matches!(e, SourceError::RetriesExhausted { attempts, .. } if attempts >= 2),
            "{text}"
        );
        assert!(
            text.contains("raw_events") && text.to_lowercase().contains("refused"),
            "{text}"
        );
    }
}
