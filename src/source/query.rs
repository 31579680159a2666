//! The SQL of the source, built as text plus server-side query parameters (pure, no I/O).
//!
//! Every value that comes from a command (tenant, environment, customers, event names, event ids, cursor values,
//! time bounds) travels as a ClickHouse query parameter (`{name:Type}` in the text, `param_name` on the wire,
//! sent by `clickhouse::Query::param`), never spliced into the SQL text (SPEC §4). The only things written into
//! the text are identifiers that configuration validated as `[A-Za-z0-9_]+` (database and tables), the supported
//! sorting-key column names, and integers this crate computed (`LIMIT`, `max_block_size`).
//!
//! The text never contains `?`, which the `clickhouse` crate would take for a `.bind()` placeholder.

use serde::{Deserialize, Serialize};

use super::key::SortingKey;
use super::{Cursor, Filters, Mode};

/// One query parameter's value. Serialized as the bare value (strings unquoted, arrays as `['a','b']`), which is
/// what `clickhouse::Query::param` expects (and, as JSON, what the debug log of a query shows).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Str(String),
    Int(i64),
    List(Vec<String>),
}

/// A query: its text and its parameters, in the order they were added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<(String, ParamValue)>,
}

impl Sql {
    fn param(&mut self, name: &str, value: ParamValue) {
        if !self.params.iter().any(|(n, _)| n == name) {
            self.params.push((name.to_string(), value));
        }
    }
}

/// Where the data lives: `database`, the raw events table and the events table (pending mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    pub database: String,
    pub table: String,
    pub events_table: String,
}

impl Tables {
    /// `` `db`.`table` `` (names were validated as plain identifiers by the configuration).
    pub fn raw(&self) -> String {
        format!("`{}`.`{}`", self.database, self.table)
    }
    fn events(&self) -> String {
        format!("`{}`.`{}`", self.database, self.events_table)
    }
}

/// The columns of [`super::RawRow`], in its field order (the crate validates names and types against it).
pub const SELECT_COLUMNS: &str = "id, tenant_id, environment_id, external_customer_id, event_name, source, payload, \
field1, field2, field3, field4, field5, field6, field7, field8, field9, field10, \
toUnixTimestamp64Milli(timestamp) AS timestamp_ms, toUnixTimestamp64Milli(ingested_at) AS ingested_at_ms, \
version, sign";

/// A `DateTime64(3)` instant from a bound number of UTC milliseconds. Binding milliseconds as `Int64` keeps
/// the precision exact and does not depend on the server's time zone (a `DateTime64` text parameter would be
/// read in the server's zone).
fn ms_expr(param: &str) -> String {
    format!("fromUnixTimestamp64Milli({{{param}:Int64}}, 'UTC')")
}

/// The filters of SPEC §4 in primary-key order, for the half-open window `[lo_ms, hi_ms)`.
fn push_filters(sql: &mut Sql, tables: &Tables, f: &Filters, lo_ms: i64, hi_ms: i64) {
    sql.param("tenant", ParamValue::Str(f.tenant_id.clone()));
    sql.param("env", ParamValue::Str(f.environment_id.clone()));
    sql.text
        .push_str("tenant_id = {tenant:String} AND environment_id = {env:String}");
    if !f.external_customer_ids.is_empty() {
        sql.param(
            "customers",
            ParamValue::List(f.external_customer_ids.clone()),
        );
        sql.text
            .push_str(" AND external_customer_id IN {customers:Array(String)}");
    }
    if let Some(from) = &f.customer_from {
        sql.param("customer_from", ParamValue::Str(from.clone()));
        sql.text
            .push_str(" AND external_customer_id >= {customer_from:String}");
    }
    if let Some(to) = &f.customer_to {
        sql.param("customer_to", ParamValue::Str(to.clone()));
        sql.text
            .push_str(" AND external_customer_id < {customer_to:String}");
    }
    sql.param("lo", ParamValue::Int(lo_ms));
    sql.param("hi", ParamValue::Int(hi_ms));
    sql.text.push_str(&format!(
        " AND timestamp >= {} AND timestamp < {}",
        ms_expr("lo"),
        ms_expr("hi")
    ));
    if !f.event_names.is_empty() {
        sql.param("event_names", ParamValue::List(f.event_names.clone()));
        sql.text
            .push_str(" AND event_name IN {event_names:Array(String)}");
    }
    if !f.event_ids.is_empty() {
        sql.param("event_ids", ParamValue::List(f.event_ids.clone()));
        sql.text.push_str(" AND id IN {event_ids:Array(String)}");
    }
    if f.mode == Mode::Pending {
        // Anti-join (SPEC §4): ids already in `events` for the same tenant and environment, with
        // `events.timestamp` in the job's whole window (not only the current day; a part of a split job: its
        // split job's window).
        let (start, end) = f.pending_window.unwrap_or((f.start_ms, f.end_ms));
        sql.param("start", ParamValue::Int(start));
        sql.param("end", ParamValue::Int(end));
        sql.text.push_str(&format!(
            " AND id NOT IN (SELECT id FROM {} WHERE tenant_id = {{tenant:String}} \
             AND environment_id = {{env:String}} AND timestamp >= {} AND timestamp < {}",
            tables.events(),
            ms_expr("start"),
            ms_expr("end")
        ));
        if !f.event_ids.is_empty() {
            sql.text.push_str(" AND id IN {event_ids:Array(String)}");
        }
        sql.text.push(')');
    }
}

/// The value expression of a cursor column. String columns are the row's exact bytes, which need not be
/// UTF-8: they travel hex-encoded and are compared as `unhex(…)` (a constant, so the primary index still
/// applies).
fn key_value(sql: &mut Sql, column: &str, c: &Cursor) -> String {
    let name = format!("k_{column}");
    let bytes = match column {
        "timestamp" => {
            sql.param(&name, ParamValue::Int(c.timestamp_ms));
            return ms_expr(&name);
        }
        "external_customer_id" => &c.external_customer_id,
        "event_name" => &c.event_name,
        _ => &c.id,
    };
    sql.param(&name, ParamValue::Str(hex(bytes)));
    format!("unhex({{{name}:String}})")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `key > cursor` in the expanded form the primary index can use (SPEC §4: a tuple comparison is not used by
/// the index): `a > ? OR (a = ? AND (b > ? OR (b = ? AND c > ?)))`.
fn push_keyset(sql: &mut Sql, key: &SortingKey, c: &Cursor) {
    let cols = key.columns();
    let values: Vec<String> = cols.iter().map(|col| key_value(sql, col, c)).collect();
    let mut expr = String::new();
    for (i, col) in cols.iter().enumerate().rev() {
        expr = if i + 1 == cols.len() {
            format!("{col} > {}", values[i])
        } else {
            format!("({col} > {v} OR ({col} = {v} AND {expr}))", v = values[i])
        };
    }
    sql.text.push_str(" AND ");
    sql.text.push_str(&expr);
}

/// Which rows of a job one query reads: the window `[lo_ms, hi_ms)` (one UTC day at most), strictly after
/// `after`, at most `limit` rows, in blocks of `block_size` rows.
#[derive(Clone, Copy, Debug)]
pub struct Slice<'a> {
    pub lo_ms: i64,
    pub hi_ms: i64,
    pub after: Option<&'a Cursor>,
    pub limit: u64,
    pub block_size: u64,
}

/// The rows of a [`Slice`] in sorting-key order, newest version of each row (`FINAL`), `LIMIT limit`, with a
/// small `max_block_size` so that reading in sorting-key order stops early (SPEC §4). Each query reads one day
/// (one partition, few parts) with the expanded keyset condition.
///
/// Deduplication uses `FINAL`, not `ORDER BY …, version DESC LIMIT 1 BY key`, chosen by measurement on the
/// local engine (ClickHouse 26.9; one day of 500 customers × 2,000 rows plus 100,000 rows of other tenants,
/// index granularity 1,024, three parts; 1,000-row pages, `statistics.rows_read` of `FORMAT JSON`):
///
/// | cursor position | `FINAL` | `version DESC` + `LIMIT 1 BY` |
/// |---|---|---|
/// | first page | 14,336 rows (18–54 ms) | 186,368–230,400 rows (110–186 ms) |
/// | middle (customer 250) | 10,240–11,264 | 173,056–176,128 |
/// | last customer | 6,144 | 3,072 |
///
/// `version DESC` does not stop early (its `LIMIT 1 BY` keeps reading past the page), so it reads 10–20×
/// more except at the very end. It would also apply `WHERE` to every version before picking the newest, so a
/// filter on a column outside the key (`event_name` in the current table) could return an older version whose
/// `event_name` matched while the newest did not; `FINAL` picks the newest version first (filters on non-key
/// columns are not moved before `FINAL`), which is what a ReplacingMergeTree row means (tested in
/// `tests/source_keyset.rs`, `newest_version_decides_the_event_name_filter`).
pub fn page(tables: &Tables, key: &SortingKey, f: &Filters, slice: &Slice<'_>) -> Sql {
    let mut sql = Sql {
        text: format!("SELECT {SELECT_COLUMNS} FROM {} FINAL WHERE ", tables.raw()),
        params: Vec::new(),
    };
    push_filters(&mut sql, tables, f, slice.lo_ms, slice.hi_ms);
    if let Some(c) = slice.after {
        push_keyset(&mut sql, key, c);
    }
    let order = std::iter::once("tenant_id")
        .chain(std::iter::once("environment_id"))
        .chain(key.columns().iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    let limit = slice.limit.max(1);
    let block = slice.block_size.clamp(1, limit);
    sql.text.push_str(&format!(
        " ORDER BY {order} LIMIT {limit} SETTINGS max_block_size = {block}, optimize_read_in_order = 1"
    ));
    sql
}

/// The number of rows (newest versions) matching `f` over its whole range, for progress and ETA.
pub fn count(tables: &Tables, f: &Filters) -> Sql {
    let mut sql = Sql {
        text: format!("SELECT count() AS n FROM {} FINAL WHERE ", tables.raw()),
        params: Vec::new(),
    };
    push_filters(&mut sql, tables, f, f.start_ms, f.end_ms);
    sql
}

/// Rows per UTC day (`day` = `YYYYMMDD`) matching `f`, without `FINAL`: unmerged versions of a row count more
/// than once, which makes it an estimate that reads only the key columns of the matching granules (for
/// progress, ETA and the split of a job into parts).
pub fn day_counts(tables: &Tables, f: &Filters) -> Sql {
    let mut sql = Sql {
        text: format!(
            "SELECT toUInt32(toYYYYMMDD(timestamp, 'UTC')) AS day, count() AS n FROM {} WHERE ",
            tables.raw()
        ),
        params: Vec::new(),
    };
    push_filters(&mut sql, tables, f, f.start_ms, f.end_ms);
    sql.text.push_str(" GROUP BY day ORDER BY day");
    sql
}

/// Rows per customer matching `f` (a day of it), sorted by customer, without `FINAL` (an estimate, as
/// [`day_counts`]): where to cut a day among the parts of a split job.
pub fn customer_counts(tables: &Tables, f: &Filters) -> Sql {
    let mut sql = Sql {
        text: format!(
            "SELECT external_customer_id AS customer, count() AS n FROM {} WHERE ",
            tables.raw()
        ),
        params: Vec::new(),
    };
    push_filters(&mut sql, tables, f, f.start_ms, f.end_ms);
    sql.text.push_str(" GROUP BY customer ORDER BY customer");
    sql
}

/// Active partitions of the raw table (metadata only: no data is read), and whether the table exists (a
/// dropped table must fail the job, not look empty).
pub fn partitions(tables: &Tables) -> Sql {
    Sql {
        text: "SELECT groupUniqArray(partition_id) AS ids, \
               ifNull((SELECT count() FROM system.tables WHERE database = {db:String} AND name = {tbl:String}), 0) AS tables \
               FROM system.parts WHERE database = {db:String} AND table = {tbl:String} AND active"
            .into(),
        params: vec![
            ("db".into(), ParamValue::Str(tables.database.clone())),
            ("tbl".into(), ParamValue::Str(tables.table.clone())),
        ],
    }
}

/// The table's sorting key, partition key and the type of `timestamp`, plus the server's time zone.
pub fn table_info(tables: &Tables) -> Sql {
    Sql {
        text: "SELECT sorting_key, partition_key, \
               ifNull((SELECT any(type) FROM system.columns WHERE database = {db:String} \
               AND table = {tbl:String} AND name = 'timestamp'), '') AS timestamp_type, timezone() AS server_tz \
               FROM system.tables WHERE database = {db:String} AND name = {tbl:String}"
            .into(),
        params: vec![
            ("db".into(), ParamValue::Str(tables.database.clone())),
            ("tbl".into(), ParamValue::Str(tables.table.clone())),
        ],
    }
}

/// Whether a table exists (for `ping`).
pub fn table_exists(database: &str, table: &str) -> Sql {
    Sql {
        text: "SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name = {tbl:String}".into(),
        params: vec![
            ("db".into(), ParamValue::Str(database.into())),
            ("tbl".into(), ParamValue::Str(table.into())),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        Tables {
            database: "flexprice".into(),
            table: "raw_events".into(),
            events_table: "events".into(),
        }
    }

    fn filters() -> Filters {
        Filters::new("t' OR 1=1 --", "e", 1_700_000_000_000, 1_700_086_400_000)
    }

    fn cursor() -> Cursor {
        Cursor {
            external_customer_id: b"c'1".to_vec(),
            timestamp_ms: 1_700_000_000_123,
            event_name: b"ev".to_vec(),
            id: b"id\\1".to_vec(),
        }
    }

    fn slice<'a>(f: &Filters, after: Option<&'a Cursor>, limit: u64) -> Slice<'a> {
        Slice {
            lo_ms: f.start_ms,
            hi_ms: f.end_ms,
            after,
            limit,
            block_size: limit,
        }
    }

    fn current_key() -> SortingKey {
        SortingKey::new(
            "raw_events",
            &[
                "external_customer_id".into(),
                "timestamp".into(),
                "id".into(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn values_never_reach_the_text() {
        let mut f = filters();
        f.external_customer_ids = vec!["x' OR 1=1 --".into()];
        f.event_names = vec!["n\\".into()];
        f.event_ids = vec!["i\0".into()];
        f.mode = Mode::Pending;
        let c = cursor();
        let sql = page(&tables(), &current_key(), &f, &slice(&f, Some(&c), 10));
        for needle in ["OR 1=1", "c'1", "id\\1", "n\\", "i\0", "1700000000123"] {
            assert!(!sql.text.contains(needle), "{needle:?} in {}", sql.text);
        }
        assert!(
            !sql.text.contains('?'),
            "a `?` would be taken for a bind placeholder"
        );
        assert!(
            sql.params
                .contains(&("tenant".into(), ParamValue::Str("t' OR 1=1 --".into())))
        );
        assert!(
            sql.params
                .contains(&("k_timestamp".into(), ParamValue::Int(1_700_000_000_123)))
        );
    }

    #[test]
    fn keyset_is_expanded_not_a_tuple() {
        let f = filters();
        let c = cursor();
        let sql = page(&tables(), &current_key(), &f, &slice(&f, Some(&c), 1000));
        let ts = "fromUnixTimestamp64Milli({k_timestamp:Int64}, 'UTC')";
        let c = "unhex({k_external_customer_id:String})";
        let expected = format!(
            "(external_customer_id > {c} OR (external_customer_id = {c} AND (timestamp > {ts} OR \
             (timestamp = {ts} AND id > unhex({{k_id:String}})))))"
        );
        assert!(sql.text.contains(&expected), "{}", sql.text);
        assert!(sql.text.contains(
            "ORDER BY tenant_id, environment_id, external_customer_id, timestamp, id LIMIT 1000 \
             SETTINGS max_block_size = 1000"
        ));
        assert!(sql.text.contains(" FINAL WHERE "));
        assert!(!sql.text.contains("OFFSET"));
    }

    #[test]
    fn older_key_orders_event_name_before_id() {
        let key = SortingKey::new(
            "raw_events",
            &[
                "external_customer_id".into(),
                "timestamp".into(),
                "event_name".into(),
                "id".into(),
            ],
        )
        .unwrap();
        let f = filters();
        let c = cursor();
        let sql = page(&tables(), &key, &f, &slice(&f, Some(&c), 7));
        assert!(sql.text.contains("(event_name > unhex({k_event_name:String}) OR (event_name = unhex({k_event_name:String}) AND id > unhex({k_id:String})))"), "{}", sql.text);
        assert!(sql.text.contains("ORDER BY tenant_id, environment_id, external_customer_id, timestamp, event_name, id LIMIT 7"));
    }

    #[test]
    fn optional_filters_appear_only_when_given() {
        let f = filters();
        let sql = page(
            &tables(),
            &current_key(),
            &f,
            &Slice {
                lo_ms: 1,
                hi_ms: 2,
                after: None,
                limit: 5,
                block_size: 5,
            },
        );
        assert!(!sql.text.contains("IN {"));
        assert!(!sql.text.contains("NOT IN"));
        assert!(!sql.text.contains("{k_"));
        assert!(sql.params.contains(&("lo".into(), ParamValue::Int(1))));
        assert!(sql.params.contains(&("hi".into(), ParamValue::Int(2))));

        let mut f = filters();
        f.external_customer_ids = vec!["a".into()];
        f.event_names = vec!["b".into()];
        f.event_ids = vec!["c".into()];
        f.mode = Mode::Pending;
        f.customer_from = Some("k".into());
        f.customer_to = Some("q".into());
        f.pending_window = Some((5, 9));
        let sql = count(&tables(), &f);
        assert!(
            sql.text
                .contains("external_customer_id IN {customers:Array(String)}")
        );
        assert!(
            sql.text
                .contains("event_name IN {event_names:Array(String)}")
        );
        assert!(sql.text.contains("AND id IN {event_ids:Array(String)}"));
        assert!(sql.text.contains(
            "id NOT IN (SELECT id FROM `flexprice`.`events` WHERE tenant_id = {tenant:String}"
        ));
        assert!(sql.text.contains(
            "AND external_customer_id >= {customer_from:String} AND external_customer_id < {customer_to:String}"
        ));
        // The anti-join's window is the split job's, the rows' window the part's.
        assert!(sql.params.contains(&("start".into(), ParamValue::Int(5))));
        assert!(sql.params.contains(&("end".into(), ParamValue::Int(9))));
        assert!(
            sql.params
                .contains(&("lo".into(), ParamValue::Int(f.start_ms)))
        );
        // Each parameter is sent once even when used twice.
        let names: Vec<_> = sql.params.iter().map(|(n, _)| n.as_str()).collect();
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(names.len(), dedup.len());
    }

    #[test]
    fn params_serialize_as_clickhouse_expects() {
        assert_eq!(serde_json::to_string(&ParamValue::Int(-5)).unwrap(), "-5");
        assert_eq!(
            serde_json::to_string(&ParamValue::List(vec!["a".into()])).unwrap(),
            "[\"a\"]"
        );
    }
}
