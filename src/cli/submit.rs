//! `reprocessor submit`: builds a `reprocess` command (SPEC §3), validates it with the daemon's own rules,
//! produces it on the control topic and prints the job id (`--json`: the [`Sent`](super::kafka::Sent)
//! line); with `--watch` it waits for the daemon's verdict on this very command and then follows the job
//! like `watch`.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::error::{CliError, CliResult, Exit};
use super::kafka::{produce_command, wait_for_result};
use super::watch::{self, WatchArgs};
use super::{block_on, print_json, render};
use crate::config::Config;
use crate::control_client::generate_job_id;
use crate::job::{ResultRecord, ResultStatus};

/// How long `submit --watch` waits for the daemon's `accepted`, `rejected` or `duplicate`.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);

/// What `submit` asks for: the fields of a `reprocess` command (SPEC §3), and what to do after sending it.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(after_help = "Exit codes: see `reprocessor --help`.")]
pub struct SubmitArgs {
    /// tenant_id (required).
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// environment_id (required).
    #[arg(long, value_name = "E")]
    pub environment: String,
    /// Start of the range, inclusive, RFC 3339 (e.g. 2024-01-01T00:00:00Z).
    #[arg(long, value_name = "DATE")]
    pub start: String,
    /// End of the range, exclusive, RFC 3339; default: when the daemon accepts the command.
    #[arg(long, value_name = "DATE")]
    pub end: Option<String>,
    /// Only this external_customer_id (repeatable).
    #[arg(long = "customer", value_name = "C")]
    pub customers: Vec<String>,
    /// Only this event_name (repeatable).
    #[arg(long = "event-name", value_name = "N")]
    pub event_names: Vec<String>,
    /// Only this event id (repeatable).
    #[arg(long = "event-id", value_name = "ID")]
    pub event_ids: Vec<String>,
    /// all: every matching row; pending: only rows missing from the events table.
    #[arg(long, value_parser = ["all", "pending"])]
    pub mode: Option<String>,
    /// Rows per page and per transaction (default: processing.default_batch_size).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<u32>,
    /// Read and transform, publish nothing; report the counters a real run would.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the deterministic subset of rows whose id hashes below R (0 < R <= 1).
    #[arg(long, value_name = "R")]
    pub sample_rate: Option<f64>,
    /// Publish at most N events per second (a split job's parts share it: the queued and running ones).
    #[arg(long, value_name = "N")]
    pub max_events_per_second: Option<f64>,
    /// Split the job into N parts (1-64) that run in parallel on the instances of the group.
    #[arg(long, value_name = "N")]
    pub parallelism: Option<u32>,
    /// The job id; default: TENANT-YYYYMMDDTHHMMSSZ-RANDOM (UTC).
    #[arg(long, value_name = "ID")]
    pub job_id: Option<String>,
    /// Go on as `watch` for the new job (exit codes as watch's; 7 when the job id already exists).
    #[arg(long)]
    pub watch: bool,
    /// JSON lines: where the command landed, then (with --watch) every result record as `watch --json`.
    #[arg(long)]
    pub json: bool,
}

/// The command JSON of a submission (job id filled in), validated with the daemon's own rules
/// ([`command::parse`] with the configured limits). Errors name the field and the problem.
pub fn build_command(cfg: &Config, a: &SubmitArgs) -> anyhow::Result<(String, Vec<u8>)> {
    let job_id = a
        .job_id
        .clone()
        .unwrap_or_else(|| generate_job_id(&a.tenant));
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    put("type", json!("reprocess"));
    put("job_id", json!(job_id));
    put("tenant_id", json!(a.tenant));
    put("environment_id", json!(a.environment));
    for (k, list) in [
        ("external_customer_ids", &a.customers),
        ("event_names", &a.event_names),
        ("event_ids", &a.event_ids),
    ] {
        if !list.is_empty() {
            put(k, json!(list));
        }
    }
    put("start_date", json!(a.start));
    let optional = [
        ("end_date", a.end.as_ref().map(|e| json!(e))),
        ("batch_size", a.batch_size.map(|b| json!(b))),
        ("mode", a.mode.as_ref().map(|m| json!(m))),
        ("dry_run", a.dry_run.then_some(json!(true))),
        ("sample_rate", a.sample_rate.map(|r| json!(r))),
        (
            "max_events_per_second",
            a.max_events_per_second.map(|r| json!(r)),
        ),
        ("parallelism", a.parallelism.map(|n| json!(n))),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            put(k, v);
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(m)).expect("JSON serializes");
    crate::control_client::validate(cfg, &bytes)
        .map_err(|e| anyhow::anyhow!("the command would be rejected: {}", e.reason))?;
    Ok((job_id, bytes))
}

/// Runs `submit`.
pub fn run(cfg: &Config, a: &SubmitArgs) -> CliResult {
    let (job_id, bytes) = build_command(cfg, a).map_err(|e| CliError::Refused(format!("{e:#}")))?;
    let sent = block_on(produce_command(cfg, "reprocess", &job_id, &bytes))?;
    if a.json {
        print_json(&sent)?;
    } else {
        println!("{job_id}");
    }
    if !a.watch {
        return Ok(Exit::Ok);
    }
    // Our own command's verdict first: a duplicate job id must not pass for the old job's success.
    let verdict = wait_for_result(cfg, &job_id, VERDICT_TIMEOUT, |r| sent.answered_by(r))?;
    let Some((r, raw)) = verdict else {
        eprintln!(
            "reprocessor submit: no answer from the daemon within {} (is `reprocessor run` running?); \
             follow it with `reprocessor watch {job_id}`",
            render::duration(VERDICT_TIMEOUT.as_secs_f64())
        );
        return Ok(Exit::Timeout);
    };
    match r.status {
        ResultStatus::Duplicate => refused_by_daemon(&r, &raw, a.json, Exit::Duplicate),
        ResultStatus::Rejected => refused_by_daemon(&r, &raw, a.json, Exit::Rejected),
        _ => watch::run(
            cfg,
            &WatchArgs {
                job: job_id,
                timeout: None,
                json: a.json,
            },
        ),
    }
}

/// Reports a `duplicate` or `rejected` verdict and ends with `exit`.
fn refused_by_daemon(r: &ResultRecord, raw: &Value, json: bool, exit: Exit) -> CliResult {
    if json {
        print_json(raw)?;
    } else {
        println!(
            "{} {}: {}: {}",
            r.at,
            r.job_id,
            r.status,
            r.reason.as_deref().unwrap_or("")
        );
    }
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SubmitArgs {
        SubmitArgs {
            tenant: "t 1".into(),
            environment: "e".into(),
            start: "2024-01-01T00:00:00Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn submit_builds_a_command_the_daemon_accepts() {
        let cfg = Config::default();
        let mut a = args();
        a.customers = vec!["c1".into(), "c2".into()];
        a.dry_run = true;
        a.sample_rate = Some(0.5);
        a.max_events_per_second = Some(100.0);
        a.job_id = Some("my-job".into());
        a.parallelism = Some(4);
        let (id, bytes) = build_command(&cfg, &a).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap()["parallelism"],
            4
        );
        assert_eq!(id, "my-job");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["external_customer_ids"], json!(["c1", "c2"]));
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["sample_rate"], 0.5);
        assert!(v.get("end_date").is_none(), "the daemon fills end_date");
        assert!(v.get("event_names").is_none(), "empty lists are left out");
    }

    #[test]
    fn submit_rejects_what_the_daemon_would_reject() {
        let cfg = Config::default();
        type Edit = Box<dyn Fn(&mut SubmitArgs)>;
        let cases: [(Edit, &str); 8] = [
            (Box::new(|a| a.batch_size = Some(10_001)), "batch_size"),
            (Box::new(|a| a.parallelism = Some(65)), "parallelism"),
            (Box::new(|a| a.start = "yesterday".into()), "start_date"),
            (
                Box::new(|a| a.end = Some("2023-01-01T00:00:00Z".into())),
                "end_date",
            ),
            (Box::new(|a| a.sample_rate = Some(0.0)), "sample_rate"),
            (Box::new(|a| a.mode = Some("some".into())), "mode"),
            (Box::new(|a| a.job_id = Some("a b".into())), "job_id"),
            (
                Box::new(|a| a.environment = String::new()),
                "environment_id",
            ),
        ];
        for (edit, needle) in cases {
            let mut a = args();
            edit(&mut a);
            let e = build_command(&cfg, &a).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} lacks {needle}");
        }
    }
}
