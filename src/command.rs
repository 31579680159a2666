//! Control-topic commands (SPEC §3): parsing, validation, and the [`JobSpec`] an accepted `reprocess` becomes.
//!
//! A command is one JSON object. Unknown fields are rejected, so a typo cannot silently widen a replay; every
//! rejection names the field and what was wrong ([`CommandError`]), because the operator reads it in the
//! `rejected` result.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::is_id_char;
use crate::source::{Filters, Mode};

/// Longest job id (SPEC §3: `[A-Za-z0-9._-]{1,128}`).
pub const MAX_JOB_ID_LEN: usize = 128;

/// Where a command was read from: used for derived job ids and in `rejected`/`duplicate` results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOrigin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl CommandOrigin {
    /// The job id of a command that gives none: `<topic>-<partition>-<offset>` (SPEC §3).
    pub fn derived_job_id(&self) -> String {
        format!("{}-{}-{}", self.topic, self.partition, self.offset)
    }
}

/// What a `reprocess` command asks for, validated. Times are UTC milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub job_id: String,
    pub tenant_id: String,
    pub environment_id: String,
    /// Empty = every customer.
    pub external_customer_ids: Vec<String>,
    /// Empty = every event name.
    pub event_names: Vec<String>,
    /// Empty = every event id.
    pub event_ids: Vec<String>,
    /// Inclusive lower bound of `timestamp`, ms.
    pub start_ms: i64,
    /// Exclusive upper bound of `timestamp`, ms.
    pub end_ms: i64,
    /// Rows per page and per transaction.
    pub batch_size: u32,
    pub mode: Mode,
    /// Read and transform, publish nothing.
    pub dry_run: bool,
    /// Keep rows whose id hashes below this fraction, `0 < r <= 1` (SPEC §7).
    pub sample_rate: f64,
    /// Publish-rate ceiling, events per second (for a split job: the sum of its parts').
    pub max_events_per_second: Option<f64>,
    /// How many parts the job is split into (1: it is not; SPEC §5a).
    #[serde(default = "one")]
    pub parallelism: u32,
    /// The split job this job is a part of.
    #[serde(default)]
    pub parent_job_id: Option<String>,
    /// Only customers `>=` this (a part of a split day; SPEC §5a).
    #[serde(default)]
    pub external_customer_id_from: Option<String>,
    /// Only customers `<` this.
    #[serde(default)]
    pub external_customer_id_to: Option<String>,
    /// The window of `pending` mode's anti-join when it is not `[start_ms, end_ms)` (a part: its split job's
    /// window), UTC ms.
    #[serde(default)]
    pub pending_start_ms: Option<i64>,
    #[serde(default)]
    pub pending_end_ms: Option<i64>,
}

fn one() -> u32 {
    1
}

impl JobSpec {
    /// The ClickHouse filters of this job (SPEC §4).
    pub fn filters(&self) -> Filters {
        Filters {
            tenant_id: self.tenant_id.clone(),
            environment_id: self.environment_id.clone(),
            external_customer_ids: self.external_customer_ids.clone(),
            event_names: self.event_names.clone(),
            event_ids: self.event_ids.clone(),
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            mode: self.mode.clone(),
            customer_from: self.external_customer_id_from.clone(),
            customer_to: self.external_customer_id_to.clone(),
            pending_window: match (self.pending_start_ms, self.pending_end_ms) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            },
        }
    }

    /// Whether the job is split into parts that do its work (SPEC §5a).
    pub fn is_split(&self) -> bool {
        self.parallelism > 1
    }
}

/// The four kinds of job control that are not `reprocess`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlAction {
    Cancel,
    Pause,
    Resume,
}

impl ControlAction {
    /// The command's `type` text.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Cancel => "cancel",
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
        }
    }
}

/// A valid command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Reprocess(Box<JobSpec>),
    Control {
        action: ControlAction,
        job_id: String,
    },
}

impl Command {
    /// The job the command is about.
    pub fn job_id(&self) -> &str {
        match self {
            Command::Reprocess(spec) => &spec.job_id,
            Command::Control { job_id, .. } => job_id,
        }
    }
}

/// Why a command was rejected. `job_id` is the command's own when it had a readable one, else the derived id.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct CommandError {
    pub job_id: String,
    /// Text for a person: which field, what was wrong.
    pub reason: String,
}

/// Limits a command is validated against (from `processing` configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_batch_size: u32,
    pub max_batch_size: u32,
}

const REPROCESS_FIELDS: &[&str] = &[
    "type",
    "job_id",
    "tenant_id",
    "environment_id",
    "external_customer_ids",
    "external_customer_id",
    "event_names",
    "event_name",
    "event_ids",
    "start_date",
    "end_date",
    "batch_size",
    "mode",
    "dry_run",
    "sample_rate",
    "max_events_per_second",
    "parallelism",
    // Written by a split job for its parts (SPEC §5a); usable by anyone.
    "parent_job_id",
    "external_customer_id_from",
    "external_customer_id_to",
    "pending_start_date",
    "pending_end_date",
];

/// Most parts a job is split into (SPEC §3).
pub const MAX_PARALLELISM: u64 = 64;

/// Characters a part's id adds to its split job's: `.part-63`.
pub const PART_SUFFIX_LEN: usize = 8;

/// Parses and validates one command value.
///
/// `now_ms` is the time of acceptance (the default `end_date`). Errors name the field and the problem.
pub fn parse(
    bytes: &[u8],
    origin: &CommandOrigin,
    limits: Limits,
    now_ms: i64,
) -> Result<Command, CommandError> {
    let derived = origin.derived_job_id();
    let value: Value = serde_json::from_slice(bytes).map_err(|e| CommandError {
        job_id: derived.clone(),
        reason: format!("command is not valid JSON: {e}"),
    })?;
    let Value::Object(obj) = value else {
        return Err(CommandError {
            job_id: derived,
            reason: "command must be a JSON object".into(),
        });
    };
    // A member given twice would silently keep only its last value (e.g. a second `job_id`): refused like an
    // unknown field.
    if let Err(e) = serde_json::from_slice::<UniqueKeys>(bytes) {
        return Err(CommandError {
            job_id: derived,
            reason: format!("command is not valid: {e}"),
        });
    }
    // The job id is read first so that a rejection can name the job the operator meant.
    let readable_id = match obj.get("job_id") {
        Some(Value::String(s)) if valid_job_id(s) => Some(s.clone()),
        _ => None,
    };
    let job_id_for_errors = readable_id.clone().unwrap_or(derived.clone());
    let fail = |reason: String| CommandError {
        job_id: job_id_for_errors.clone(),
        reason,
    };
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(fail(format!(
                "field `type`: must be a string (reprocess, cancel, pause or resume), got {other}"
            )));
        }
        None => {
            return Err(fail(
                "field `type`: missing (reprocess, cancel, pause or resume)".into(),
            ));
        }
    };
    let check_job_id = || -> Result<(), CommandError> {
        match obj.get("job_id") {
            None => Ok(()),
            Some(Value::String(s)) if valid_job_id(s) => Ok(()),
            Some(other) => Err(fail(format!(
                "field `job_id`: must match [A-Za-z0-9._-]{{1,{MAX_JOB_ID_LEN}}}, got {}",
                shorten(&other.to_string())
            ))),
        }
    };
    match kind {
        "reprocess" => {
            check_job_id()?;
            reject_unknown(&obj, REPROCESS_FIELDS).map_err(fail)?;
            let spec =
                reprocess(&obj, readable_id.unwrap_or(derived), limits, now_ms).map_err(fail)?;
            Ok(Command::Reprocess(Box::new(spec)))
        }
        "cancel" | "pause" | "resume" => {
            check_job_id()?;
            reject_unknown(&obj, &["type", "job_id"]).map_err(fail)?;
            let action = match kind {
                "cancel" => ControlAction::Cancel,
                "pause" => ControlAction::Pause,
                _ => ControlAction::Resume,
            };
            let Some(job_id) = readable_id else {
                return Err(fail(format!("field `job_id`: required for `{kind}`")));
            };
            Ok(Command::Control { action, job_id })
        }
        other => Err(fail(format!(
            "field `type`: unknown command type {:?} (expected reprocess, cancel, pause or resume)",
            shorten(other)
        ))),
    }
}

/// Deserializes a JSON object's top level only to refuse a member name given twice (`serde_json` would keep
/// the last value silently). [`parse`] applies it to every command; the HTTP API to a request body before it
/// adds members of its own. The error names the member.
pub struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "field `{}` is given twice",
                            shorten(&key)
                        )));
                    }
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UniqueKeys)
            }
        }
        d.deserialize_map(Visitor)
    }
}

fn valid_job_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_JOB_ID_LEN && s.chars().all(is_id_char)
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(80).collect();
        format!("{cut}…")
    } else {
        s.to_string()
    }
}

fn reject_unknown(obj: &Map<String, Value>, known: &[&str]) -> Result<(), String> {
    let unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown field{} {}: allowed fields are {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown
                .iter()
                .map(|k| format!("`{}`", shorten(k)))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        ))
    }
}

fn required_string(obj: &Map<String, Value>, field: &str) -> Result<String, String> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(format!("field `{field}`: must not be empty")),
        Some(other) => Err(format!(
            "field `{field}`: must be a string, got {}",
            shorten(&other.to_string())
        )),
        None => Err(format!("field `{field}`: required")),
    }
}

/// A list given either as `plural: [..]` or `singular: ".."` (not both). A present but empty list is
/// rejected: it would otherwise silently mean "all" (SPEC §3).
fn string_list(
    obj: &Map<String, Value>,
    plural: &str,
    singular: Option<&str>,
) -> Result<Vec<String>, String> {
    let single = singular.and_then(|s| obj.get(s).map(|v| (s, v)));
    match (obj.get(plural), single) {
        (Some(_), Some((s, _))) => Err(format!("fields `{plural}` and `{s}`: give one, not both")),
        (None, None) => Ok(Vec::new()),
        (None, Some((_, Value::String(v)))) if !v.is_empty() => Ok(vec![v.clone()]),
        (None, Some((s, v))) => Err(format!(
            "field `{s}`: must be a non-empty string, got {}",
            shorten(&v.to_string())
        )),
        (Some(Value::Array(items)), None) => {
            if items.is_empty() {
                return Err(format!(
                    "field `{plural}`: an empty list would mean every value; omit the field instead"
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    other => {
                        return Err(format!(
                            "field `{plural}[{i}]`: must be a non-empty string, got {}",
                            shorten(&other.to_string())
                        ));
                    }
                }
            }
            Ok(out)
        }
        (Some(other), None) => Err(format!(
            "field `{plural}`: must be a list of strings, got {}",
            shorten(&other.to_string())
        )),
    }
}

/// Parses an RFC 3339 date into UTC milliseconds (sub-millisecond digits are truncated).
pub fn parse_date_ms(field: &str, text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!(
            "field `{field}`: {:?} is not an RFC 3339 date-time such as 2024-01-01T00:00:00Z ({e})",
            shorten(text)
        )
    })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn date(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_date_ms(field, s).map(Some),
        Some(other) => Err(format!(
            "field `{field}`: must be an RFC 3339 string, got {}",
            shorten(&other.to_string())
        )),
    }
}

fn reprocess(
    obj: &Map<String, Value>,
    job_id: String,
    limits: Limits,
    now_ms: i64,
) -> Result<JobSpec, String> {
    let start_ms = date(obj, "start_date")?.ok_or("field `start_date`: required")?;
    let end_ms = date(obj, "end_date")?.unwrap_or(now_ms);
    if end_ms <= start_ms {
        return Err(format!(
            "field `end_date`: must be after start_date (end_date {} is not after start_date {})",
            format_ms(end_ms),
            format_ms(start_ms)
        ));
    }
    let max = u64::from(limits.max_batch_size);
    let parallelism = integer(obj, "parallelism", 1, MAX_PARALLELISM)?.unwrap_or(1) as u32;
    if parallelism > 1 && job_id.len() > MAX_JOB_ID_LEN - PART_SUFFIX_LEN {
        return Err(format!(
            "field `job_id`: a split job's id has at most {} characters (its parts are `<job_id>.part-<k>`)",
            MAX_JOB_ID_LEN - PART_SUFFIX_LEN
        ));
    }
    let spec = JobSpec {
        tenant_id: required_string(obj, "tenant_id")?,
        environment_id: required_string(obj, "environment_id")?,
        external_customer_ids: string_list(
            obj,
            "external_customer_ids",
            Some("external_customer_id"),
        )?,
        event_names: string_list(obj, "event_names", Some("event_name"))?,
        event_ids: string_list(obj, "event_ids", None)?,
        start_ms,
        end_ms,
        batch_size: integer(obj, "batch_size", 1, max)?
            .map_or(limits.default_batch_size, |b| b as u32),
        mode: match obj.get("mode") {
            None | Some(Value::Null) => Mode::All,
            Some(Value::String(s)) if s == "all" => Mode::All,
            Some(Value::String(s)) if s == "pending" => Mode::Pending,
            Some(other) => return Err(got("mode", "\"all\" or \"pending\"", other)),
        },
        dry_run: match obj.get("dry_run") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(got("dry_run", "true or false", other)),
        },
        sample_rate: number(obj, "sample_rate", "> 0 and <= 1", |r| r > 0.0 && r <= 1.0)?
            .unwrap_or(1.0),
        max_events_per_second: number(obj, "max_events_per_second", "> 0", |r| r > 0.0)?,
        parallelism,
        parent_job_id: optional_string(obj, "parent_job_id")?,
        external_customer_id_from: optional_string(obj, "external_customer_id_from")?,
        external_customer_id_to: optional_string(obj, "external_customer_id_to")?,
        pending_start_ms: date(obj, "pending_start_date")?,
        pending_end_ms: date(obj, "pending_end_date")?,
        job_id,
    };
    if parallelism > 1 && spec.parent_job_id.is_some() {
        return Err("field `parallelism`: a part of a split job is not split again".into());
    }
    match (part_of(&spec.job_id), spec.parent_job_id.as_deref()) {
        (Some(parent), Some(given)) if parent == given => {}
        (None, None) => {}
        // A job named like another's part would take that part's place: the split job would follow it.
        (Some(parent), _) => {
            return Err(format!(
                "field `job_id`: ids ending in `.part-<k>` are the parts of split jobs; `{}` is a part of `{parent}` (set `parent_job_id` to `{parent}`, or choose another id)",
                spec.job_id
            ));
        }
        (None, Some(given)) => {
            return Err(format!(
                "field `parent_job_id`: a part's id is `<parent_job_id>.part-<k>`, here `{given}.part-<k>`"
            ));
        }
    }
    Ok(spec)
}

/// The split job whose part `job_id` is, by its form `<parent>.part-<k>` (SPEC §5a); `None` for any other
/// id. Such ids are reserved for parts, so a split job's parts are always its own.
pub fn part_of(job_id: &str) -> Option<&str> {
    let (parent, k) = job_id.rsplit_once(".part-")?;
    let digits = !k.is_empty() && k.len() <= 2 && k.bytes().all(|b| b.is_ascii_digit());
    (digits && !parent.is_empty()).then_some(parent)
}

/// `field: must be <what>, got <value>`.
fn got(field: &str, what: &str, value: &Value) -> String {
    format!(
        "field `{field}`: must be {what}, got {}",
        shorten(&value.to_string())
    )
}

/// An optional integer field within `[lo, hi]`.
fn integer(obj: &Map<String, Value>, field: &str, lo: u64, hi: u64) -> Result<Option<u64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| (lo..=hi).contains(&v)) => {
            Ok(n.as_u64())
        }
        Some(other) => Err(got(field, &format!("an integer from {lo} to {hi}"), other)),
    }
}

/// An optional finite number field for which `ok` holds (`what` says what is allowed).
fn number(
    obj: &Map<String, Value>,
    field: &str,
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<Option<f64>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_f64().is_some_and(|v| v.is_finite() && ok(v)) => {
            Ok(n.as_f64())
        }
        Some(other) => Err(got(field, &format!("a number {what}"), other)),
    }
}

/// An optional non-empty string field.
fn optional_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(other) => Err(got(field, "a non-empty string", other)),
    }
}

/// Formats UTC milliseconds as RFC 3339 with exactly three fractional digits and `Z`
/// (the form of every time this product writes: results, dead letters, cursors); `<ms>ms` for an instant
/// outside the years 0000-9999.
pub fn format_ms(ms: i64) -> String {
    const MILLIS_Z: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .and_then(|t| t.format(MILLIS_Z).ok())
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// The current time, UTC milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        default_batch_size: 1000,
        max_batch_size: 10_000,
    };

    fn origin() -> CommandOrigin {
        CommandOrigin {
            topic: "cmds".into(),
            partition: 2,
            offset: 41,
        }
    }

    fn parse_str(s: &str) -> Result<Command, CommandError> {
        parse(s.as_bytes(), &origin(), LIMITS, 1_800_000_000_000)
    }

    #[test]
    fn full_reprocess_command_parses() {
        let c = parse_str(
            r#"{"type":"reprocess","job_id":"backfill-1","tenant_id":"t","environment_id":"e",
                "external_customer_id":"c1","event_names":["a","b"],"event_ids":["x"],
                "start_date":"2024-01-01T00:00:00.123Z","end_date":"2024-01-02T01:00:00+01:00",
                "batch_size":500,"mode":"pending","dry_run":true,"sample_rate":0.5,
                "max_events_per_second":100}"#,
        )
        .unwrap();
        let Command::Reprocess(s) = c else { panic!() };
        assert_eq!(s.job_id, "backfill-1");
        assert_eq!(s.external_customer_ids, vec!["c1"]);
        assert_eq!(s.event_names, vec!["a", "b"]);
        assert_eq!(s.start_ms, 1_704_067_200_123);
        assert_eq!(s.end_ms, 1_704_153_600_000);
        assert_eq!(s.batch_size, 500);
        assert_eq!(s.mode, Mode::Pending);
        assert!(s.dry_run);
        assert_eq!(s.sample_rate, 0.5);
        assert_eq!(s.max_events_per_second, Some(100.0));
    }

    #[test]
    fn defaults_fill_missing_optional_fields() {
        let Command::Reprocess(s) = parse_str(
            r#"{"type":"reprocess","tenant_id":"t","environment_id":"e","start_date":"2023-01-01T00:00:00Z"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(s.job_id, "cmds-2-41");
        assert_eq!(s.end_ms, 1_800_000_000_000);
        assert_eq!(s.batch_size, 1000);
        assert_eq!(s.mode, Mode::All);
        assert_eq!(s.sample_rate, 1.0);
        assert!(s.external_customer_ids.is_empty());
    }

    fn rejected(s: &str) -> CommandError {
        parse_str(s).expect_err(s)
    }

    #[test]
    fn bad_commands_name_the_field() {
        let base = r#""type":"reprocess","tenant_id":"t","environment_id":"e","start_date":"2024-01-01T00:00:00Z""#;
        let cases = [
            (format!("{{{base},\"tenant\":\"x\"}}"), "unknown field `tenant`"),
            (format!("{{{base},\"batch_size\":0}}"), "batch_size"),
            (format!("{{{base},\"batch_size\":10001}}"), "batch_size"),
            (format!("{{{base},\"batch_size\":1.5}}"), "batch_size"),
            (format!("{{{base},\"mode\":\"some\"}}"), "mode"),
            (format!("{{{base},\"end_date\":\"2023-01-01T00:00:00Z\"}}"), "end_date"),
            (format!("{{{base},\"end_date\":\"2024-01-01T00:00:00Z\"}}"), "end_date"),
            (format!("{{{base},\"event_names\":[]}}"), "event_names"),
            (format!("{{{base},\"event_ids\":[\"\"]}}"), "event_ids[0]"),
            (format!("{{{base},\"event_name\":\"a\",\"event_names\":[\"b\"]}}"), "not both"),
            (format!("{{{base},\"sample_rate\":0}}"), "sample_rate"),
            (format!("{{{base},\"sample_rate\":1.5}}"), "sample_rate"),
            (format!("{{{base},\"max_events_per_second\":-1}}"), "max_events_per_second"),
            (format!("{{{base},\"dry_run\":\"yes\"}}"), "dry_run"),
            (format!("{{{base},\"job_id\":\"has space\"}}"), "job_id"),
            (format!("{{{base},\"job_id\":\"big.part-0\"}}"), "parts of split jobs"),
            (
                format!("{{{base},\"job_id\":\"big.part-1\",\"parent_job_id\":\"other\"}}"),
                "a part of `big`",
            ),
            (
                format!("{{{base},\"job_id\":\"mine\",\"parent_job_id\":\"big\"}}"),
                "field `parent_job_id`",
            ),
            (
                r#"{"type":"reprocess","tenant_id":"","environment_id":"e","start_date":"2024-01-01T00:00:00Z"}"#.into(),
                "tenant_id",
            ),
            (
                r#"{"type":"reprocess","tenant_id":"t","start_date":"2024-01-01T00:00:00Z"}"#.into(),
                "environment_id",
            ),
            (r#"{"type":"reprocess","tenant_id":"t","environment_id":"e"}"#.into(), "start_date"),
            (
                r#"{"type":"reprocess","tenant_id":"t","environment_id":"e","start_date":"2024-13-01"}"#.into(),
                "start_date",
            ),
            (r#"{"type":"explode"}"#.into(), "type"),
            (r#"{"job_id":"j"}"#.into(), "type"),
            (r#"{"type":"cancel"}"#.into(), "job_id"),
            (r#"{"type":"pause","job_id":"j","now":true}"#.into(), "now"),
            (format!("{{{base},\"job_id\":\"a\",\"job_id\":\"b\"}}"), "`job_id` is given twice"),
            ("[1,2]".into(), "JSON object"),
            ("not json".into(), "not valid JSON"),
        ];
        for (cmd, needle) in cases {
            let e = rejected(&cmd);
            assert!(
                e.reason.contains(needle),
                "{cmd}: {} lacks {needle}",
                e.reason
            );
        }
    }

    #[test]
    fn rejection_carries_the_readable_job_id_or_the_derived_one() {
        assert_eq!(
            rejected(r#"{"type":"reprocess","job_id":"mine","tenant_id":""}"#).job_id,
            "mine"
        );
        assert_eq!(
            rejected(r#"{"type":"reprocess","job_id":7}"#).job_id,
            "cmds-2-41"
        );
        assert_eq!(rejected("{").job_id, "cmds-2-41");
    }

    #[test]
    fn part_ids_name_their_split_job() {
        assert_eq!(part_of("big.part-0"), Some("big"));
        assert_eq!(part_of("a.part-1.part-63"), Some("a.part-1"));
        for other in [
            "big",
            "big.part-",
            "big.part-x",
            "big.part-123",
            ".part-1",
            "big.parts-1",
        ] {
            assert_eq!(part_of(other), None, "{other}");
        }
        let part = r#"{"type":"reprocess","job_id":"big.part-3","parent_job_id":"big","tenant_id":"t","environment_id":"e","start_date":"2024-01-01T00:00:00Z"}"#;
        assert!(parse_str(part).is_ok());
    }

    #[test]
    fn control_commands_parse() {
        assert_eq!(
            parse_str(r#"{"type":"pause","job_id":"j-1"}"#).unwrap(),
            Command::Control {
                action: ControlAction::Pause,
                job_id: "j-1".into()
            }
        );
    }

    #[test]
    fn format_ms_keeps_milliseconds() {
        assert_eq!(format_ms(1_704_067_200_123), "2024-01-01T00:00:00.123Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_ms(i64::MAX), format!("{}ms", i64::MAX));
    }
}
