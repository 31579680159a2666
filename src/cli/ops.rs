//! Operator commands: `submit`, `watch`, `status`, `cancel`/`pause`/`resume`, `peek`.
//!
//! They talk to Kafka only (the topics of the configuration), never to the daemon directly: commands are
//! produced on the control topic keyed by job id with the `murmur2_random` partitioner (SPEC §2), results and
//! checkpoints are read back with `isolation.level=read_committed`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Map, Value, json};

use crate::command::ControlAction;
use crate::command::{self, CommandOrigin, Limits, format_ms, now_ms};
use crate::config::{Config, is_id_char};
use crate::job::lifecycle::control_problem;
use crate::job::{Checkpoint, ResultRecord, ResultStatus};
use crate::kafka::{Role, client_config};
use crate::state::StateStore;

/// Exit code of `watch` when the job completed.
pub const EXIT_COMPLETED: u8 = 0;
/// Exit code for errors that are not a job outcome (Kafka unreachable, bad arguments).
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `watch` when the job failed (it can be resumed after the cause is fixed).
pub const EXIT_FAILED: u8 = 3;
/// Exit code of `watch` when the job was cancelled.
pub const EXIT_CANCELLED: u8 = 4;
/// Exit code of `watch` (and `submit`) when the command was rejected.
pub const EXIT_REJECTED: u8 = 5;
/// Exit code of `watch` when `--timeout` passed before a final result.
pub const EXIT_TIMEOUT: u8 = 6;
/// Exit code of `submit --watch` when the job id already exists: the daemon started nothing (SPEC §3).
pub const EXIT_DUPLICATE: u8 = 7;

/// What `submit` asks for (the fields of a `reprocess` command, SPEC §3).
#[derive(Debug, Clone, Default)]
pub struct SubmitArgs {
    pub tenant: String,
    pub environment: String,
    pub start: String,
    pub end: Option<String>,
    pub customers: Vec<String>,
    pub event_names: Vec<String>,
    pub event_ids: Vec<String>,
    pub mode: Option<String>,
    pub batch_size: Option<u32>,
    pub dry_run: bool,
    pub sample_rate: Option<f64>,
    pub max_events_per_second: Option<f64>,
    pub job_id: Option<String>,
}

fn limits(cfg: &Config) -> Limits {
    Limits {
        default_batch_size: cfg.processing.default_batch_size,
        max_batch_size: cfg.processing.max_batch_size,
    }
}

/// A job id for a submission that names none: `<tenant>-<UTC yyyymmddThhmmssZ>-<6 hex>`, the tenant part
/// reduced to `[A-Za-z0-9._-]` and at most 100 characters.
pub fn generate_job_id(tenant: &str) -> String {
    let t: String = tenant
        .chars()
        .map(|c| if is_id_char(c) { c } else { '_' })
        .take(100)
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let r: u32 = rand::random::<u32>() & 0xff_ffff;
    format!("{t}-{stamp}-{r:06x}")
}

/// The command JSON of a submission (job id filled in), validated with the daemon's own rules
/// ([`command::parse`] with the configured limits). Errors name the field and the problem.
pub fn build_command(cfg: &Config, a: &SubmitArgs) -> anyhow::Result<(String, Vec<u8>)> {
    let job_id = a
        .job_id
        .clone()
        .unwrap_or_else(|| generate_job_id(&a.tenant));
    let mut m = Map::new();
    m.insert("type".into(), json!("reprocess"));
    m.insert("job_id".into(), json!(job_id));
    m.insert("tenant_id".into(), json!(a.tenant));
    m.insert("environment_id".into(), json!(a.environment));
    if !a.customers.is_empty() {
        m.insert("external_customer_ids".into(), json!(a.customers));
    }
    if !a.event_names.is_empty() {
        m.insert("event_names".into(), json!(a.event_names));
    }
    if !a.event_ids.is_empty() {
        m.insert("event_ids".into(), json!(a.event_ids));
    }
    m.insert("start_date".into(), json!(a.start));
    if let Some(e) = &a.end {
        m.insert("end_date".into(), json!(e));
    }
    if let Some(b) = a.batch_size {
        m.insert("batch_size".into(), json!(b));
    }
    if let Some(mode) = &a.mode {
        m.insert("mode".into(), json!(mode));
    }
    if a.dry_run {
        m.insert("dry_run".into(), json!(true));
    }
    if let Some(r) = a.sample_rate {
        m.insert("sample_rate".into(), json!(r));
    }
    if let Some(r) = a.max_events_per_second {
        m.insert("max_events_per_second".into(), json!(r));
    }
    let bytes = serde_json::to_vec(&Value::Object(m)).expect("JSON serializes");
    let origin = CommandOrigin {
        topic: cfg.topics.commands.name.clone(),
        partition: -1,
        offset: -1,
    };
    command::parse(&bytes, &origin, limits(cfg), now_ms())
        .map_err(|e| anyhow::anyhow!("the command would be rejected: {}", e.reason))?;
    Ok((job_id, bytes))
}

/// A control command (`cancel`, `pause`, `resume`) for `job_id`, validated like the daemon does.
pub fn control_command(cfg: &Config, action: &str, job_id: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = serde_json::to_vec(&json!({"type": action, "job_id": job_id})).expect("JSON");
    let origin = CommandOrigin {
        topic: cfg.topics.commands.name.clone(),
        partition: -1,
        offset: -1,
    };
    command::parse(&bytes, &origin, limits(cfg), now_ms())
        .map_err(|e| anyhow::anyhow!("the command would be rejected: {}", e.reason))?;
    Ok(bytes)
}

/// Produces a command on the control topic, keyed by `key`, with the `murmur2_random` partitioner.
pub async fn produce_command(cfg: &Config, key: &str, value: &[u8]) -> anyhow::Result<(i32, i64)> {
    let producer: FutureProducer = client_config(cfg, Role::CommandProducer)
        .create()
        .context("cannot create a Kafka producer")?;
    let topic = &cfg.topics.commands.name;
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_millis(cfg.kafka.operation_timeout_ms),
        )
        .await
        .map_err(|(e, _)| {
            anyhow::anyhow!(
                "cannot produce to control topic `{topic}` on {}: {e}",
                cfg.kafka.bootstrap_servers
            )
        })?;
    Ok((delivery.partition, delivery.offset))
}

/// Reads the job's records on the results topic (from the beginning) until one satisfies `wanted`, or
/// `timeout` passes (`None`).
pub fn wait_for_result(
    cfg: &Config,
    job_id: &str,
    timeout: Duration,
    wanted: impl Fn(&ResultRecord) -> bool,
) -> anyhow::Result<Option<ResultRecord>> {
    let topic = cfg.topics.results.name.clone();
    let (c, _) = reader(cfg, &topic, None)?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.with_context(|| format!("cannot read results topic `{topic}`"))?;
        if m.key() != Some(job_id.as_bytes()) {
            continue;
        }
        if let Ok(r) = serde_json::from_slice::<ResultRecord>(m.payload().unwrap_or_default())
            && wanted(&r)
        {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// The daemon's answer to the command at `partition`/`offset` of the control topic: its `accepted`,
/// `rejected` or `duplicate` record (each carries the command's coordinates), or `None` after `timeout`.
pub fn command_verdict(
    cfg: &Config,
    job_id: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> anyhow::Result<Option<ResultRecord>> {
    let topic = cfg.topics.commands.name.clone();
    wait_for_result(cfg, job_id, timeout, |r| {
        r.topic.as_deref() == Some(topic.as_str())
            && r.partition == Some(partition)
            && r.offset == Some(offset)
    })
}

/// Refuses a cancel/pause/resume that the daemon would reject, by the job's status in the state topic.
pub async fn check_control(
    cfg: &Config,
    action: ControlAction,
    job_id: &str,
) -> anyhow::Result<()> {
    let (store, _events) = StateStore::start(cfg).await?;
    store.sync(cfg.kafka.operation_timeout() * 2).await?;
    let Some(cp) = store.checkpoint(job_id) else {
        bail!(
            "unknown job `{job_id}` (not in state topic `{}`)",
            cfg.topics.state.name
        );
    };
    if let Some(p) = control_problem(action, &cp, &store.pending(job_id)) {
        bail!("{p}");
    }
    Ok(())
}

/// A read_committed consumer assigned to every partition of `topic`, from the beginning (or from
/// `high - tail` per partition when `tail` is given). Returns it with each partition's high watermark.
fn reader(
    cfg: &Config,
    topic: &str,
    tail: Option<i64>,
) -> anyhow::Result<(BaseConsumer, HashMap<i32, i64>)> {
    let group = format!("{}-cli", cfg.kafka.consumer_group);
    let c: BaseConsumer = client_config(cfg, Role::Reader { group: &group })
        .create()
        .context("cannot create a Kafka consumer")?;
    let timeout = Duration::from_millis(cfg.kafka.operation_timeout_ms);
    let md = c.fetch_metadata(Some(topic), timeout).with_context(|| {
        format!(
            "cannot read metadata of topic `{topic}` from {}",
            cfg.kafka.bootstrap_servers
        )
    })?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        bail!(
            "topic `{topic}` does not exist on {} (has the daemon started?)",
            cfg.kafka.bootstrap_servers
        );
    }
    let mut tpl = TopicPartitionList::new();
    let mut highs = HashMap::new();
    for p in &parts {
        let (low, high) = c
            .fetch_watermarks(topic, *p, timeout)
            .with_context(|| format!("cannot read the end of `{topic}` partition {p}"))?;
        highs.insert(*p, high);
        let start = match tail {
            Some(n) => Offset::Offset((high - n).max(low)),
            None => Offset::Beginning,
        };
        tpl.add_partition_offset(topic, *p, start)?;
    }
    c.assign(&tpl)?;
    Ok((c, highs))
}

/// Whether every partition has been read up to the high watermark it had when reading began.
fn caught_up(c: &BaseConsumer, topic: &str, highs: &HashMap<i32, i64>) -> bool {
    let Ok(pos) = c.position() else { return false };
    highs.iter().all(|(p, high)| {
        *high == 0
            || matches!(pos.find_partition(topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *high)
    })
}

/// One record as `peek` prints it.
fn record_json(m: &rdkafka::message::BorrowedMessage<'_>) -> Value {
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

/// Which topic `peek` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekTopic {
    Output,
    Dlq,
    Results,
}

/// Prints the first (or with `last`, the last) `limit` committed records of a topic as JSON lines, with key
/// and headers. `job` keeps only that job's records (dead letters by their `job_id` header, results by key).
pub fn peek(
    cfg: &Config,
    which: PeekTopic,
    limit: usize,
    last: bool,
    job: Option<&str>,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let topic = match which {
        PeekTopic::Output => &cfg.topics.output.name,
        PeekTopic::Dlq => &cfg.topics.dlq.name,
        PeekTopic::Results => &cfg.topics.results.name,
    };
    if job.is_some() && which == PeekTopic::Output {
        bail!("--job cannot select output events: they do not name the job that published them");
    }
    // The last records: read from `high - span` per partition, widening the span until enough records
    // are found (transaction markers take offsets too) or every partition is read from its start.
    let mut span = (limit as i64).saturating_mul(2).saturating_add(2);
    loop {
        let tail = (last && job.is_none()).then_some(span);
        let (picked, from_start) = peek_pass(cfg, topic, which, limit, last, job, tail)?;
        if tail.is_none() || picked.len() >= limit || from_start {
            let mut v: Vec<_> = picked.into_iter().collect();
            v.sort_by_key(|(t, _)| *t);
            let start = if last {
                v.len().saturating_sub(limit)
            } else {
                0
            };
            let mut n = 0;
            for (_, rec) in v.into_iter().skip(start).take(limit) {
                writeln!(out, "{rec}")?;
                n += 1;
            }
            return Ok(n);
        }
        span = span.saturating_mul(4);
    }
}

type Picked = std::collections::VecDeque<(i64, Value)>;

/// One read of `peek`: the records kept, and whether every partition was read from its start.
fn peek_pass(
    cfg: &Config,
    topic: &str,
    which: PeekTopic,
    limit: usize,
    last: bool,
    job: Option<&str>,
    tail: Option<i64>,
) -> anyhow::Result<(Picked, bool)> {
    let (c, highs) = reader(cfg, topic, tail)?;
    let from_start = match tail {
        None => true,
        Some(span) => highs.values().all(|h| *h <= span),
    };
    let mut picked: Picked = Default::default();
    let deadline = Instant::now() + Duration::from_millis(cfg.kafka.operation_timeout_ms * 4);
    while !caught_up(&c, topic, &highs) {
        if Instant::now() > deadline {
            bail!("reading `{topic}` to its end timed out");
        }
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.with_context(|| format!("cannot read `{topic}`"))?;
        let keep = match (job, which) {
            (None, _) => true,
            (Some(j), PeekTopic::Results) => m.key() == Some(j.as_bytes()),
            (Some(j), _) => {
                m.headers()
                    .and_then(|h| h.iter().find(|hd| hd.key == "job_id"))
                    .and_then(|hd| hd.value)
                    == Some(j.as_bytes())
            }
        };
        if !keep {
            continue;
        }
        picked.push_back((m.timestamp().to_millis().unwrap_or(0), record_json(&m)));
        if last {
            // Partitions are read in no particular order: keep everything of a tail read, sort, then cut.
            if job.is_some() && picked.len() > limit * 8 + 1024 {
                let mut v: Vec<_> = picked.drain(..).collect();
                v.sort_by_key(|(t, _)| *t);
                picked = v.into_iter().rev().take(limit).rev().collect();
            }
        } else if picked.len() >= limit {
            break;
        }
    }
    Ok((picked, from_start))
}

/// The outcome `watch` ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    Completed,
    Failed,
    Cancelled,
    Rejected,
    Timeout,
}

impl WatchEnd {
    /// The process exit code of this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            WatchEnd::Completed => EXIT_COMPLETED,
            WatchEnd::Failed => EXIT_FAILED,
            WatchEnd::Cancelled => EXIT_CANCELLED,
            WatchEnd::Rejected => EXIT_REJECTED,
            WatchEnd::Timeout => EXIT_TIMEOUT,
        }
    }
}

fn thousands(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn duration_text(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The progress line of a `progress` result.
pub fn progress_line(r: &ResultRecord) -> String {
    let done = r.total_events_found.unwrap_or(0);
    let mut line = format!("{}: {}", r.job_id, thousands(done));
    match r.estimated_total {
        Some(total) if total > 0 => {
            let pct = (done as f64 * 100.0 / total as f64).min(100.0);
            let width = 24usize;
            let filled = ((pct / 100.0) * width as f64).round() as usize;
            line = format!(
                "{}: [{}{}] {} / {} rows ({pct:.1}%)",
                r.job_id,
                "#".repeat(filled.min(width)),
                "-".repeat(width - filled.min(width)),
                thousands(done),
                thousands(total)
            );
        }
        _ => line.push_str(" rows"),
    }
    if let Some(rate) = r.rows_per_second {
        line.push_str(&format!(", {} rows/s", thousands(rate.round() as i64)));
    }
    if let Some(eta) = r.eta_seconds {
        line.push_str(&format!(", ETA {}", duration_text(eta)));
    }
    line
}

/// The final summary of a job's last result.
pub fn summary(r: &ResultRecord) -> String {
    let mut s = format!("job {}: {}", r.job_id, r.status);
    if r.dry_run == Some(true) {
        s.push_str(" (dry run: nothing published)");
    }
    s.push('\n');
    let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<28} {v}\n"));
    if let Some(reason) = &r.reason {
        line("reason", reason.clone());
    }
    if let Some(e) = &r.error {
        line("error", e.clone());
    }
    for (k, v) in [
        ("total_events_found", r.total_events_found),
        ("total_events_published", r.total_events_published),
        ("total_events_dropped", r.total_events_dropped),
        ("total_transformation_errors", r.total_transformation_errors),
        ("total_events_failed", r.total_events_failed),
        ("total_events_sampled_out", r.total_events_sampled_out),
        ("processed_batches", r.processed_batches),
    ] {
        if let Some(v) = v {
            line(k, thousands(v));
        }
    }
    if let Some(p) = r.success_rate_percent {
        line("success_rate_percent", format!("{p:.2}"));
    }
    if let Some(c) = &r.cursor {
        line("cursor", Value::Object(c.clone()).to_string());
    }
    if let Some(t) = &r.started_at {
        line("started_at", t.clone());
    }
    if let Some(t) = &r.completed_at {
        line("completed_at", t.clone());
    }
    s
}

/// Follows the results topic for `job_id` from its beginning (nothing produced before `watch` started is
/// missed) until the job's final result, printing progress and the summary to `out`.
///
/// While catching up with records that already exist, a `failed` result followed by `resumed` is not final;
/// a `rejected` result is final only when the job was never accepted (otherwise it rejected a later
/// cancel/pause/resume); `duplicate` is reported and is not final.
pub fn watch(
    cfg: &Config,
    job_id: &str,
    timeout: Option<Duration>,
    out: &mut dyn Write,
) -> anyhow::Result<WatchEnd> {
    let topic = cfg.topics.results.name.clone();
    let (c, highs) = reader(cfg, &topic, None)?;
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut accepted = false;
    let mut pending_end: Option<(WatchEnd, ResultRecord)> = None;
    let mut catching_up = true;
    let mut progress_shown = false;
    let mut idle_since = Instant::now();
    loop {
        if catching_up
            && (caught_up(&c, &topic, &highs) || idle_since.elapsed() > Duration::from_secs(10))
        {
            catching_up = false;
        }
        if !catching_up && let Some((end, r)) = pending_end.take() {
            if progress_shown && tty {
                writeln!(out)?;
            }
            write!(out, "{}", summary(&r))?;
            out.flush()?;
            return Ok(end);
        }
        if let Some(t) = timeout
            && started.elapsed() > t
        {
            if progress_shown && tty {
                writeln!(out)?;
            }
            writeln!(
                out,
                "job {job_id}: no final result within {}",
                duration_text(t.as_secs_f64())
            )?;
            return Ok(WatchEnd::Timeout);
        }
        let Some(m) = c.poll(Duration::from_millis(250)) else {
            continue;
        };
        idle_since = Instant::now();
        let m = m.with_context(|| format!("cannot read results topic `{topic}`"))?;
        if m.key() != Some(job_id.as_bytes()) {
            continue;
        }
        let Ok(r) = serde_json::from_slice::<ResultRecord>(m.payload().unwrap_or_default()) else {
            continue;
        };
        let mut note = |text: String| -> std::io::Result<()> {
            if progress_shown && tty {
                writeln!(out)?;
            }
            progress_shown = false;
            writeln!(out, "{text}")
        };
        match r.status {
            ResultStatus::Progress => {
                pending_end = None;
                let line = progress_line(&r);
                if tty {
                    write!(out, "\r\x1b[2K{line}")?;
                } else {
                    writeln!(out, "{line}")?;
                }
                progress_shown = true;
            }
            ResultStatus::Accepted => {
                accepted = true;
                note(format!("{} {job_id}: accepted", r.at))?;
            }
            ResultStatus::Resumed => {
                pending_end = None;
                note(format!("{} {job_id}: resumed", r.at))?;
            }
            ResultStatus::Completed => pending_end = Some((WatchEnd::Completed, r)),
            ResultStatus::Cancelled => pending_end = Some((WatchEnd::Cancelled, r)),
            ResultStatus::Failed => {
                note(format!(
                    "{} {job_id}: failed: {}",
                    r.at,
                    r.error.as_deref().unwrap_or("")
                ))?;
                pending_end = Some((WatchEnd::Failed, r));
            }
            ResultStatus::Rejected if !accepted => pending_end = Some((WatchEnd::Rejected, r)),
            ResultStatus::Rejected | ResultStatus::Duplicate => note(format!(
                "{} {job_id}: {} command ({}:{}@{}): {}",
                r.at,
                r.status,
                r.topic.as_deref().unwrap_or("?"),
                r.partition.unwrap_or(-1),
                r.offset.unwrap_or(-1),
                r.reason.as_deref().unwrap_or("")
            ))?,
            other => note(format!("{} {job_id}: {other}", r.at))?,
        }
        out.flush()?;
    }
}

/// The cursor of a checkpoint, named by column (the daemon's sorting key is not known here: `event_name` is
/// shown when the cursor carries one).
fn cursor_json(cp: &Checkpoint) -> Value {
    cp.cursor.as_ref().map_or(Value::Null, |c| c.to_json())
}

/// One job in full, as `status JOB --json` prints it.
pub fn job_json(cp: &Checkpoint, store: Option<&StateStore>) -> Value {
    let s = &cp.spec;
    let c = &cp.counters;
    let pending: Vec<Value> = store
        .map(|st| st.pending(&cp.job_id))
        .unwrap_or_default()
        .iter()
        .map(|r| json!({"action": r.action.as_str(), "at": format_ms(r.at_ms), "request_id": r.request_id}))
        .collect();
    json!({
        "job_id": cp.job_id,
        "status": cp.status.as_str(),
        "tenant_id": s.tenant_id,
        "environment_id": s.environment_id,
        "command": {
            "external_customer_ids": s.external_customer_ids,
            "event_names": s.event_names,
            "event_ids": s.event_ids,
            "start_date": format_ms(s.start_ms),
            "end_date": format_ms(s.end_ms),
            "batch_size": s.batch_size,
            "mode": match s.mode { crate::source::Mode::All => "all", crate::source::Mode::Pending => "pending" },
            "dry_run": s.dry_run,
            "sample_rate": s.sample_rate,
            "max_events_per_second": s.max_events_per_second,
        },
        "cursor": cursor_json(cp),
        "total_events_found": c.found,
        "total_events_published": c.published,
        "total_events_dropped": c.dropped,
        "total_transformation_errors": c.transformation_errors,
        "total_events_failed": c.failed,
        "total_events_sampled_out": c.sampled_out,
        "processed_batches": c.processed_batches,
        "success_rate_percent": (c.success_rate_percent() * 100.0).round() / 100.0,
        "estimated_total": cp.estimated_total,
        "owner_partition": cp.owner_partition,
        "command_offset": cp.command_offset,
        "accepted_at": format_ms(cp.accepted_at_ms),
        "started_at": cp.started_at_ms.map(format_ms),
        "updated_at": format_ms(cp.updated_at_ms),
        "completed_at": cp.completed_at_ms.map(format_ms),
        "error": cp.error,
        "pending_control": pending,
        "revision": cp.revision,
    })
}

fn age_text(since_ms: i64) -> String {
    duration_text(((now_ms() - since_ms).max(0) as f64) / 1000.0)
}

/// Reads the state topic and prints a table of jobs, or one job in full (`job`), as text or JSON.
/// Errors when `job` is not in the state topic.
pub async fn status(
    cfg: &Config,
    job: Option<&str>,
    as_json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (store, _events) = StateStore::start(cfg).await?;
    store.sync(cfg.kafka.operation_timeout() * 2).await?;
    if let Some(id) = job {
        let Some(cp) = store.checkpoint(id) else {
            bail!(
                "job `{id}` is not in state topic `{}`",
                cfg.topics.state.name
            );
        };
        let v = job_json(&cp, Some(&store));
        if as_json {
            writeln!(out, "{v}")?;
        } else {
            for (k, val) in v.as_object().expect("object") {
                let text = match val {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                };
                writeln!(out, "{k:<28} {text}")?;
            }
        }
        return Ok(());
    }
    let mut jobs = store.jobs();
    jobs.sort_by_key(|cp| std::cmp::Reverse((cp.accepted_at_ms, cp.command_offset)));
    if as_json {
        let all: Vec<Value> = jobs.iter().map(|cp| job_json(cp, Some(&store))).collect();
        writeln!(out, "{}", Value::Array(all))?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<40} {:<16} {:<10} {:>24} {:<48} {:>10}",
        "JOB", "TENANT", "STATUS", "FOUND/ESTIMATED", "CURSOR", "AGE"
    )?;
    for cp in &jobs {
        let progress = match cp.estimated_total {
            Some(t) => format!("{}/{}", thousands(cp.counters.found), thousands(t)),
            None => thousands(cp.counters.found),
        };
        let cursor = cp
            .cursor
            .as_ref()
            .map(|c| {
                format!(
                    "{} {} {}",
                    crate::source::text(&c.external_customer_id),
                    format_ms(c.timestamp_ms),
                    crate::source::text(&c.id)
                )
            })
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<40} {:<16} {:<10} {:>24} {:<48} {:>10}",
            cp.job_id,
            cp.spec.tenant_id,
            cp.status.as_str(),
            progress,
            cursor,
            age_text(cp.accepted_at_ms)
        )?;
    }
    Ok(())
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
    fn generated_job_ids_are_valid_and_distinct() {
        let a = generate_job_id("tenant/with space");
        let b = generate_job_id("tenant/with space");
        assert_ne!(a, b);
        assert!(a.starts_with("tenant_with_space-"), "{a}");
        assert!(a.chars().all(is_id_char) && a.len() <= 128, "{a}");
        assert!(generate_job_id(&"x".repeat(500)).len() <= 128);
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
        let (id, bytes) = build_command(&cfg, &a).unwrap();
        assert_eq!(id, "my-job");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["external_customer_ids"], json!(["c1", "c2"]));
        assert_eq!(v["dry_run"], true);
        assert!(v.get("end_date").is_none(), "the daemon fills end_date");
    }

    #[test]
    fn submit_rejects_what_the_daemon_would_reject() {
        let cfg = Config::default();
        for (edit, needle) in [
            (
                Box::new(|a: &mut SubmitArgs| a.batch_size = Some(10_001))
                    as Box<dyn Fn(&mut SubmitArgs)>,
                "batch_size",
            ),
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
        ] {
            let mut a = args();
            edit(&mut a);
            let e = build_command(&cfg, &a).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} lacks {needle}");
        }
        assert!(control_command(&cfg, "pause", "bad id").is_err());
        assert!(control_command(&cfg, "pause", "good-id").is_ok());
    }

    #[test]
    fn progress_line_shows_done_total_rate_and_eta() {
        let r = ResultRecord {
            total_events_found: Some(12_345),
            estimated_total: Some(100_000),
            rows_per_second: Some(5432.4),
            eta_seconds: Some(161.0),
            ..ResultRecord::new("j", ResultStatus::Progress, 0)
        };
        let l = progress_line(&r);
        assert!(l.contains("12,345 / 100,000 rows (12.3%)"), "{l}");
        assert!(l.contains("5,432 rows/s") && l.contains("ETA 2m41s"), "{l}");
    }
}
