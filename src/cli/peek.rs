//! `reprocessor peek output|dlq|results`: the first (or last) committed records of a topic as JSON lines with
//! topic, partition, offset, timestamp, key, headers and value.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use serde_json::{Map, Value, json};

use super::error::{CliResult, Exit};
use super::kafka::Reader;
use crate::command::format_ms;
use crate::config::Config;

/// Which topic `peek` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeekTopic {
    Output,
    Dlq,
    Results,
}

/// `peek`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PeekArgs {
    /// Which topic.
    #[arg(value_enum)]
    pub topic: PeekTopic,
    /// How many records.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// The last records instead of the first.
    #[arg(long)]
    pub last: bool,
    /// Only this job's records (dead letters by their job_id header, results by key).
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
}

/// One record as `peek` prints it.
fn record_json(m: &BorrowedMessage<'_>) -> Value {
    let mut headers = Map::new();
    if let Some(h) = m.headers() {
        for hd in h.iter() {
            headers.insert(
                hd.key.to_string(),
                json!(String::from_utf8_lossy(hd.value.unwrap_or_default())),
            );
        }
    }
    let payload = m.payload().unwrap_or_default();
    let value = serde_json::from_slice::<Value>(payload)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(payload)));
    json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis().map(format_ms),
        "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "value": value,
    })
}

/// Whether `m` belongs to `job` (dead letters by their `job_id` header, results by key).
fn of_job(m: &BorrowedMessage<'_>, which: PeekTopic, job: &str) -> bool {
    match which {
        PeekTopic::Results => m.key() == Some(job.as_bytes()),
        _ => {
            m.headers()
                .and_then(|h| h.iter().find(|hd| hd.key == "job_id"))
                .and_then(|hd| hd.value)
                == Some(job.as_bytes())
        }
    }
}

/// Prints the first (or with `last`, the last) `limit` committed records of a topic as JSON lines; returns
/// how many were printed.
pub fn peek(cfg: &Config, a: &PeekArgs, out: &mut dyn Write) -> anyhow::Result<usize> {
    let topic = match a.topic {
        PeekTopic::Output => &cfg.topics.output.name,
        PeekTopic::Dlq => &cfg.topics.dlq.name,
        PeekTopic::Results => &cfg.topics.results.name,
    };

    // The last records: read from `high - span` per partition, widening the span until enough records
    // are found (transaction markers take offsets too) or every partition is read from its start.
    let mut span = (a.limit as i64).saturating_mul(2).saturating_add(2);
    loop {
        let tail = (a.last && a.job.is_none()).then_some(span);
        let (picked, whole) = pass(cfg, topic, a, tail)?;
        if tail.is_none() || picked.len() >= a.limit || whole {
            let mut v: Vec<_> = picked.into_iter().collect();
            v.sort_by_key(|(t, _)| *t);
            let skip = if a.last {
                v.len().saturating_sub(a.limit)
            } else {
                0
            };
            let mut n = 0;
            for (_, rec) in v.into_iter().skip(skip).take(a.limit) {
                writeln!(out, "{rec}")?;
                n += 1;
            }
            return Ok(n);
        }
        span = span.saturating_mul(4);
    }
}

type Picked = VecDeque<(i64, Value)>;

/// One read of `peek`: the records kept (with their timestamps), and whether every partition was read from
/// its start.
fn pass(
    cfg: &Config,
    topic: &str,
    a: &PeekArgs,
    tail: Option<i64>,
) -> anyhow::Result<(Picked, bool)> {
    let reader = Reader::open(cfg, topic, tail)?;
    let whole = tail.is_none_or(|span| reader.whole_topic(span));
    let mut picked = Picked::new();
    let deadline = Instant::now() + cfg.kafka.operation_timeout() * 4;
    while !reader.caught_up() {
        if Instant::now() > deadline {
            bail!("reading `{topic}` to its end timed out");
        }
        let Some(m) = reader.poll(Duration::from_millis(200))? else {
            continue;
        };
        if a.job.as_deref().is_some_and(|j| !of_job(&m, a.topic, j)) {
            continue;
        }
        picked.push_back((m.timestamp().to_millis().unwrap_or(0), record_json(&m)));
        if !a.last && picked.len() >= a.limit {
            break;
        }
        // Partitions are read in no particular order: keep everything of a tail read, sort, then cut.
        if a.last && picked.len() > a.limit * 8 + 1024 {
            let mut v: Vec<_> = picked.drain(..).collect();
            v.sort_by_key(|(t, _)| *t);
            picked = v.into_iter().rev().take(a.limit).rev().collect();
        }
    }
    Ok((picked, whole))
}

/// Runs `peek`.
pub fn run(cfg: &Config, a: &PeekArgs) -> CliResult {
    if a.job.is_some() && a.topic == PeekTopic::Output {
        let e = <super::Args as clap::CommandFactory>::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "--job cannot select output events: they do not name the job that published them",
        );
        return Err(super::CliError::Usage(Box::new(e)));
    }
    let mut out = std::io::stdout().lock();
    peek(cfg, a, &mut out)?;
    Ok(Exit::Ok)
}
