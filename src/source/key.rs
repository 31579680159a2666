//! Sorting-key discovery and the day calendar of the table (pure parts; the queries live in `mod.rs`).

use std::collections::BTreeSet;

use time::OffsetDateTime;
use time::macros::format_description;

use super::{Cursor, SourceError};

/// Milliseconds in a UTC day: pages walk one day (one partition of `toYYYYMMDD(timestamp)`) at a time.
pub const DAY_MS: i64 = 86_400_000;

/// The columns of the table's sorting key after the fixed `tenant_id, environment_id` prefix (SPEC §4), e.g.
/// `["external_customer_id", "timestamp", "id"]` for the current table and
/// `["external_customer_id", "timestamp", "event_name", "id"]` for the older one.
///
/// Only `external_customer_id`, `timestamp`, `event_name` and `id` are supported, since those are the columns
/// a [`Cursor`] carries; anything else is refused when the source connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortingKey {
    columns: Vec<String>,
}

/// Columns a cursor can hold.
pub const SUPPORTED_COLUMNS: [&str; 4] = ["external_customer_id", "timestamp", "event_name", "id"];

impl SortingKey {
    /// A key from the columns after `tenant_id, environment_id` (e.g. from `ClickHouseConfig::sorting_key`).
    /// Errors: empty, repeated or unsupported columns ([`SourceError::UnsupportedSortingKey`]).
    pub fn new(table: &str, columns: &[String]) -> Result<SortingKey, SourceError> {
        let bad = |reason: String| SourceError::UnsupportedSortingKey {
            table: table.to_string(),
            sorting_key: columns.join(", "),
            reason,
        };
        if columns.is_empty() {
            return Err(bad("no columns after tenant_id, environment_id".into()));
        }
        let mut seen = BTreeSet::new();
        for c in columns {
            if !SUPPORTED_COLUMNS.contains(&c.as_str()) {
                return Err(bad(format!(
                    "column `{c}` is not supported (supported: {})",
                    SUPPORTED_COLUMNS.join(", ")
                )));
            }
            if !seen.insert(c.as_str()) {
                return Err(bad(format!("column `{c}` appears twice")));
            }
        }
        Ok(SortingKey {
            columns: columns.to_vec(),
        })
    }

    /// Parses `system.tables.sorting_key` (e.g. `tenant_id, environment_id, external_customer_id, timestamp, id`):
    /// it must start with `tenant_id, environment_id` and continue with supported plain columns.
    pub fn parse(table: &str, sorting_key: &str) -> Result<SortingKey, SourceError> {
        let cols: Vec<String> = sorting_key
            .split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if cols.len() < 2 || cols[0] != "tenant_id" || cols[1] != "environment_id" {
            return Err(SourceError::UnsupportedSortingKey {
                table: table.to_string(),
                sorting_key: sorting_key.to_string(),
                reason: "must start with tenant_id, environment_id".into(),
            });
        }
        SortingKey::new(table, &cols[2..]).map_err(|e| match e {
            SourceError::UnsupportedSortingKey { table, reason, .. } => {
                SourceError::UnsupportedSortingKey {
                    table,
                    sorting_key: sorting_key.to_string(),
                    reason,
                }
            }
            other => other,
        })
    }

    /// The columns after `tenant_id, environment_id`, in key order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The cursor as the results topic shows it (SPEC §6): a JSON object named by the sorting-key columns,
    /// e.g. `{"external_customer_id":"c1","timestamp":"2024-01-01T00:00:00.123Z","id":"e1"}`; timestamps are
    /// RFC 3339 UTC with milliseconds; bytes that are not UTF-8 show as U+FFFD (the checkpoint keeps them).
    pub fn cursor_json(&self, c: &Cursor) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for col in &self.columns {
            let v = match col.as_str() {
                "external_customer_id" => super::text(&c.external_customer_id).into_owned(),
                "timestamp" => rfc3339_ms(c.timestamp_ms),
                "event_name" => super::text(&c.event_name).into_owned(),
                _ => super::text(&c.id).into_owned(),
            };
            map.insert(col.clone(), serde_json::Value::String(v));
        }
        serde_json::Value::Object(map)
    }
}

/// Whether a `timestamp` column type holds milliseconds: `DateTime64(3)`, with or without a time zone.
pub fn millisecond_timestamp(column_type: &str) -> bool {
    let t = column_type.trim();
    t == "DateTime64(3)" || (t.starts_with("DateTime64(3,") && t.ends_with(')'))
}

/// `2024-01-01T00:00:00.123Z` for UTC milliseconds since the epoch.
pub fn rfc3339_ms(ms: i64) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The UTC day (days since the epoch) of a millisecond instant.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// How partition ids map to UTC days, from `system.tables.partition_key` and the time zone of `timestamp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Calendar {
    /// `toYYYYMMDD(timestamp)`; `exact` when the column's zone is UTC (else a partition may hold parts of the
    /// UTC days either side of its local day).
    Daily { exact: bool },
    /// `toYYYYMM(timestamp)`.
    Monthly { exact: bool },
    /// Anything else: every UTC day of the range is a candidate.
    Unknown,
}

impl Calendar {
    /// From `partition_key`, the column type of `timestamp` (e.g. `DateTime64(3)` or `DateTime64(3, 'UTC')`)
    /// and the server's time zone.
    pub fn new(partition_key: &str, timestamp_type: &str, server_tz: &str) -> Calendar {
        let pk: String = partition_key
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let zone = timestamp_type
            .split_once('\'')
            .and_then(|(_, rest)| rest.split_once('\''))
            .map(|(z, _)| z.to_string())
            .unwrap_or_else(|| server_tz.to_string());
        let exact = matches!(
            zone.as_str(),
            "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "UCT" | "Zulu" | "Etc/Universal" | "Universal"
        );
        match pk.as_str() {
            "toYYYYMMDD(timestamp)" => Calendar::Daily { exact },
            "toYYYYMM(timestamp)" => Calendar::Monthly { exact },
            _ => Calendar::Unknown,
        }
    }

    /// The UTC days in `[first_day, last_day]` that may hold rows, given the table's active partition ids.
    /// `None` when the calendar is unknown (then every day is a candidate).
    pub fn candidate_days(
        &self,
        partition_ids: &[String],
        first_day: i64,
        last_day: i64,
    ) -> Option<Vec<i64>> {
        let (exact, monthly) = match self {
            Calendar::Daily { exact } => (*exact, false),
            Calendar::Monthly { exact } => (*exact, true),
            Calendar::Unknown => return None,
        };
        let mut days = BTreeSet::new();
        for id in partition_ids {
            let Some((lo, hi)) = partition_days(id, monthly) else {
                // A partition id we cannot read: be safe, every day is a candidate.
                return None;
            };
            let (lo, hi) = if exact { (lo, hi) } else { (lo - 1, hi + 1) };
            for d in lo.max(first_day)..=hi.min(last_day) {
                days.insert(d);
            }
        }
        Some(days.into_iter().collect())
    }
}

/// The UTC day number (days since the epoch) of a `YYYYMMDD` date, as [`super::Source::estimate`] names days.
pub fn day_of_yyyymmdd(date: u32) -> Option<i64> {
    partition_days(&date.to_string(), false).map(|(day, _)| day)
}

/// The UTC days covered by a partition id `YYYYMMDD` (or `YYYYMM`).
fn partition_days(id: &str, monthly: bool) -> Option<(i64, i64)> {
    let digits = |s: &str| s.parse::<i32>().ok();
    if monthly {
        if id.len() != 6 {
            return None;
        }
        let y = digits(&id[..4])?;
        let m = time::Month::try_from(digits(&id[4..6])? as u8).ok()?;
        let first = time::Date::from_calendar_date(y, m, 1).ok()?;
        let last = time::Date::from_calendar_date(y, m, m.length(y)).ok()?;
        Some((date_day(first), date_day(last)))
    } else {
        if id.len() != 8 {
            return None;
        }
        let y = digits(&id[..4])?;
        let m = time::Month::try_from(digits(&id[4..6])? as u8).ok()?;
        let d = time::Date::from_calendar_date(y, m, digits(&id[6..8])? as u8).ok()?;
        let day = date_day(d);
        Some((day, day))
    }
}

fn date_day(d: time::Date) -> i64 {
    (d.to_julian_day()
        - time::Date::from_calendar_date(1970, time::Month::January, 1)
            .map(|e| e.to_julian_day())
            .unwrap_or(2_440_588)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_current_and_older_keys() {
        let k = SortingKey::parse(
            "raw_events",
            "tenant_id, environment_id, external_customer_id, timestamp, id",
        )
        .unwrap();
        assert_eq!(k.columns(), ["external_customer_id", "timestamp", "id"]);
        let k = SortingKey::parse(
            "raw_events",
            "tenant_id, environment_id, external_customer_id, timestamp, event_name, id",
        )
        .unwrap();
        assert_eq!(k.columns().len(), 4);
    }

    #[test]
    fn refuses_unsupported_keys_naming_the_table() {
        for bad in [
            "environment_id, tenant_id, id",
            "tenant_id, environment_id, toDate(timestamp), id",
            "tenant_id, environment_id, source",
            "tenant_id, environment_id",
            "tenant_id, environment_id, id, id",
        ] {
            let e = SortingKey::parse("raw_events", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("raw_events"), "{e}");
        }
    }

    #[test]
    fn cursor_json_names_key_columns_with_rfc3339_millis() {
        let k = SortingKey::new(
            "t",
            &[
                "external_customer_id".into(),
                "timestamp".into(),
                "id".into(),
            ],
        )
        .unwrap();
        let c = Cursor {
            external_customer_id: b"c1".to_vec(),
            timestamp_ms: 1_704_067_200_123,
            event_name: b"n".to_vec(),
            id: b"e1".to_vec(),
        };
        assert_eq!(
            k.cursor_json(&c),
            serde_json::json!({"external_customer_id":"c1","timestamp":"2024-01-01T00:00:00.123Z","id":"e1"})
        );
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        let odd = Cursor {
            id: vec![b'x', 0xff],
            ..c
        };
        assert_eq!(k.cursor_json(&odd)["id"], "x\u{fffd}");
        for (t, ok) in [
            ("DateTime64(3)", true),
            ("DateTime64(3, 'UTC')", true),
            ("DateTime64(6)", false),
            ("DateTime64(6, 'UTC')", false),
            ("DateTime", false),
        ] {
            assert_eq!(millisecond_timestamp(t), ok, "{t}");
        }
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn days_and_partitions() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(partition_days("19700102", false), Some((1, 1)));
        assert_eq!(day_of_yyyymmdd(20240301), Some(day_of(1_709_251_200_000)));
        assert_eq!(day_of_yyyymmdd(2024), None);
        assert_eq!(partition_days("197002", true), Some((31, 58)));
        let cal = Calendar::new("toYYYYMMDD(timestamp)", "DateTime64(3)", "UTC");
        assert_eq!(cal, Calendar::Daily { exact: true });
        let ids = vec![
            "19700105".to_string(),
            "19700102".to_string(),
            "19700301".to_string(),
        ];
        assert_eq!(cal.candidate_days(&ids, 0, 10), Some(vec![1, 4]));
        let cal = Calendar::new("toYYYYMMDD(timestamp)", "DateTime64(3)", "Europe/Paris");
        assert_eq!(
            cal.candidate_days(&ids, 0, 10),
            Some(vec![0, 1, 2, 3, 4, 5])
        );
        let cal = Calendar::new(
            "toYYYYMMDD(timestamp)",
            "DateTime64(3, 'UTC')",
            "Europe/Paris",
        );
        assert_eq!(cal, Calendar::Daily { exact: true });
        assert_eq!(
            Calendar::new("id", "DateTime64(3)", "UTC"),
            Calendar::Unknown
        );
        assert_eq!(Calendar::Unknown.candidate_days(&ids, 0, 10), None);
    }
}
