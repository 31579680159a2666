//! `reprocessor watch JOB`: follows the results topic for one job from its beginning (nothing produced before
//! the watch started is missed) until the job's final result. The rules of what ends a watch are
//! [`Follow`]'s; what is shown is a [`View`]'s: text (progress, notes, the summary) or JSON lines (every
//! record as read, the final one last).

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::{CliResult, Exit};
use super::kafka::{Reader, result_of};
use super::render::{self, Progress};
use crate::config::Config;
use crate::job::{ResultRecord, ResultStatus};

/// While catching up with records that already exist, a read that stays idle this long ends the catch-up
/// (the high watermarks can lie past the last readable record: transaction markers, aborted records).
const CATCH_UP_IDLE: Duration = Duration::from_secs(10);

/// `watch`'s arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit codes: 0 completed, 3 failed, 4 cancelled, 5 rejected, 6 --timeout \
passed, 1 other errors (all: `reprocessor --help`). A `duplicate` record is reported but is not final."
)]
pub struct WatchArgs {
    /// The job id.
    pub job: String,
    /// Give up after this long (exit code 6): seconds, or a duration such as 90s, 5m, 1h.
    #[arg(long, value_name = "DURATION", value_parser = super::args::parse_duration)]
    pub timeout: Option<Duration>,
    /// JSON lines: every result record of the job as it is read, the final record last.
    #[arg(long)]
    pub json: bool,
}

/// The outcome a watch ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    Completed,
    Failed,
    Cancelled,
    Rejected,
    Timeout,
}

impl WatchEnd {
    /// The exit status of this outcome.
    pub fn exit(self) -> Exit {
        match self {
            WatchEnd::Completed => Exit::Ok,
            WatchEnd::Failed => Exit::Failed,
            WatchEnd::Cancelled => Exit::Cancelled,
            WatchEnd::Rejected => Exit::Rejected,
            WatchEnd::Timeout => Exit::Timeout,
        }
    }
}

/// What one result record means for the watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A final result: the watch ends with it once the records that already existed are read.
    Final(WatchEnd),
    /// The job goes on (`progress`, `resumed`): an earlier final result was not the last word.
    Goes,
    /// Anything else: shown, changes nothing.
    Note,
}

/// The rules of a watch, without I/O. While catching up, a `failed` result followed by `resumed` is not
/// final; a `rejected` result is final only when the job was never accepted (otherwise it rejected a later
/// cancel/pause/resume); `duplicate` is not final (SPEC §3).
#[derive(Debug, Default)]
pub struct Follow {
    accepted: bool,
    pending: Option<(WatchEnd, ResultRecord)>,
}

impl Follow {
    /// Takes one record of the job, in topic order.
    pub fn observe(&mut self, r: &ResultRecord) -> Effect {
        let effect = match r.status {
            ResultStatus::Progress | ResultStatus::Resumed => Effect::Goes,
            ResultStatus::Completed => Effect::Final(WatchEnd::Completed),
            ResultStatus::Cancelled => Effect::Final(WatchEnd::Cancelled),
            ResultStatus::Failed => Effect::Final(WatchEnd::Failed),
            ResultStatus::Rejected if !self.accepted => Effect::Final(WatchEnd::Rejected),
            ResultStatus::Accepted => {
                self.accepted = true;
                Effect::Note
            }
            _ => Effect::Note,
        };
        match effect {
            Effect::Final(end) => self.pending = Some((end, r.clone())),
            Effect::Goes => self.pending = None,
            Effect::Note => {}
        }
        effect
    }

    /// The final result seen last, if the job has not gone on since (taken).
    pub fn take_final(&mut self) -> Option<(WatchEnd, ResultRecord)> {
        self.pending.take()
    }
}

/// How a watch shows what it reads.
pub trait View {
    /// One record of the job, in topic order, with what it means.
    fn record(&mut self, r: &ResultRecord, raw: &Value, effect: Effect) -> std::io::Result<()>;
    /// The watch ends with the final record `r`.
    fn end(&mut self, r: &ResultRecord) -> std::io::Result<()>;
    /// `--timeout` passed first.
    fn timed_out(&mut self, job_id: &str, after: Duration) -> std::io::Result<()>;
}

/// Text: progress (bar or lines, [`Progress`]), a line per lifecycle step, then the summary.
pub struct TextView<W: Write> {
    pub progress: Progress,
    pub out: W,
}

impl<W: Write> TextView<W> {
    fn note(&mut self, text: &str) -> std::io::Result<()> {
        self.progress.note(&mut self.out, text)
    }
}

impl<W: Write> View for TextView<W> {
    fn record(&mut self, r: &ResultRecord, _raw: &Value, effect: Effect) -> std::io::Result<()> {
        let job = &r.job_id;
        let text = match (r.status, effect) {
            (ResultStatus::Progress, _) => return self.progress.update(r, &mut self.out),
            (ResultStatus::Failed, _) => {
                format!(
                    "{} {job}: failed: {}",
                    r.at,
                    r.error.as_deref().unwrap_or("")
                )
            }
            // The summary shows it at the end.
            (_, Effect::Final(_)) => return Ok(()),
            (ResultStatus::Rejected | ResultStatus::Duplicate, _) => format!(
                "{} {job}: {} command ({}:{}@{}): {}",
                r.at,
                r.status,
                r.topic.as_deref().unwrap_or("?"),
                r.partition.unwrap_or(-1),
                r.offset.unwrap_or(-1),
                r.reason.as_deref().unwrap_or("")
            ),
            (status, _) => format!("{} {job}: {status}", r.at),
        };
        self.note(&text)?;
        self.out.flush()
    }

    fn end(&mut self, r: &ResultRecord) -> std::io::Result<()> {
        self.progress.finish();
        write!(self.out, "{}", render::summary(r))?;
        self.out.flush()
    }

    fn timed_out(&mut self, job_id: &str, after: Duration) -> std::io::Result<()> {
        self.progress.finish();
        writeln!(
            self.out,
            "job {job_id}: no final result within {}",
            render::duration(after.as_secs_f64())
        )
    }
}

/// JSON lines: every record of the job as written, one per line; the final record is always the last line
/// (records that arrive after a final one without changing the outcome, e.g. the rejection of a later
/// cancel, are printed before it).
pub struct JsonView<W: Write> {
    pub out: W,
    held_final: Option<Value>,
    held_notes: Vec<Value>,
}

impl<W: Write> JsonView<W> {
    pub fn new(out: W) -> JsonView<W> {
        JsonView {
            out,
            held_final: None,
            held_notes: Vec::new(),
        }
    }

    fn line(&mut self, v: &Value) -> std::io::Result<()> {
        writeln!(self.out, "{v}")
    }

    /// Prints what was held back, in topic order.
    fn flush_held(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.held_final.take() {
            self.line(&f)?;
        }
        for n in std::mem::take(&mut self.held_notes) {
            self.line(&n)?;
        }
        Ok(())
    }
}

impl<W: Write> View for JsonView<W> {
    fn record(&mut self, _r: &ResultRecord, raw: &Value, effect: Effect) -> std::io::Result<()> {
        match effect {
            Effect::Final(_) => {
                self.flush_held()?;
                self.held_final = Some(raw.clone());
            }
            Effect::Goes => {
                self.flush_held()?;
                self.line(raw)?;
            }
            Effect::Note if self.held_final.is_some() => self.held_notes.push(raw.clone()),
            Effect::Note => self.line(raw)?,
        }
        self.out.flush()
    }

    fn end(&mut self, r: &ResultRecord) -> std::io::Result<()> {
        for n in std::mem::take(&mut self.held_notes) {
            self.line(&n)?;
        }
        let last = self.held_final.take().unwrap_or_else(|| {
            serde_json::from_slice(&r.to_json()).expect("a result record is JSON")
        });
        self.line(&last)?;
        self.out.flush()
    }

    fn timed_out(&mut self, job_id: &str, after: Duration) -> std::io::Result<()> {
        self.flush_held()?;
        self.out.flush()?;
        eprintln!(
            "reprocessor watch: job {job_id}: no final result within {}",
            render::duration(after.as_secs_f64())
        );
        Ok(())
    }
}

/// Follows `job_id` on the results topic until its final result (or `timeout`), showing it through `view`.
pub fn follow(
    cfg: &Config,
    job_id: &str,
    timeout: Option<Duration>,
    view: &mut dyn View,
) -> anyhow::Result<WatchEnd> {
    let reader = Reader::open(cfg, &cfg.topics.results.name, None)?;
    let started = Instant::now();
    let mut rules = Follow::default();
    let mut catching_up = true;
    let mut idle_since = Instant::now();
    let mut seen = false;
    loop {
        let was_catching_up = catching_up;
        catching_up = catching_up && !reader.caught_up() && idle_since.elapsed() <= CATCH_UP_IDLE;
        if was_catching_up && !catching_up && !seen && timeout.is_none() {
            // A typo in the id would otherwise wait silently for ever.
            eprintln!(
                "no record of job {job_id} on {} yet; waiting for one (--timeout gives up)",
                cfg.topics.results.name
            );
        }
        if !catching_up && let Some((end, r)) = rules.take_final() {
            view.end(&r)?;
            return Ok(end);
        }
        if let Some(t) = timeout
            && started.elapsed() > t
        {
            view.timed_out(job_id, t)?;
            return Ok(WatchEnd::Timeout);
        }
        let Some(m) = reader.poll(Duration::from_millis(250))? else {
            continue;
        };
        idle_since = Instant::now();
        if let Some((r, raw)) = result_of(&m, job_id) {
            seen = true;
            let effect = rules.observe(&r);
            view.record(&r, &raw, effect)?;
        }
    }
}

/// Runs `watch`.
pub fn run(cfg: &Config, a: &WatchArgs) -> CliResult {
    let stdout = std::io::stdout().lock();
    let end = if a.json {
        follow(cfg, &a.job, a.timeout, &mut JsonView::new(stdout))?
    } else {
        let mut view = TextView {
            progress: Progress::new(),
            out: stdout,
        };
        follow(cfg, &a.job, a.timeout, &mut view)?
    };
    Ok(end.exit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResultStatus as S;

    fn rec(status: ResultStatus) -> ResultRecord {
        ResultRecord::new("j", status, 0)
    }

    #[test]
    fn timeouts_are_seconds_or_durations() {
        use super::super::args::parse_duration;
        assert_eq!(parse_duration("180"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn what_ends_a_watch() {
        // (records in topic order, the outcome once caught up)
        let cases: &[(&[ResultStatus], Option<WatchEnd>)] = &[
            (
                &[S::Accepted, S::Progress, S::Completed],
                Some(WatchEnd::Completed),
            ),
            (&[S::Accepted, S::Failed, S::Resumed, S::Progress], None),
            (
                &[S::Accepted, S::Failed, S::Resumed, S::Cancelled],
                Some(WatchEnd::Cancelled),
            ),
            (
                &[S::Accepted, S::Cancelled, S::Rejected],
                Some(WatchEnd::Cancelled),
            ),
            (&[S::Rejected], Some(WatchEnd::Rejected)),
            (&[S::Accepted, S::Paused], None),
            (
                &[S::Accepted, S::Completed, S::Duplicate],
                Some(WatchEnd::Completed),
            ),
            (
                &[S::Accepted, S::Progress, S::Failed],
                Some(WatchEnd::Failed),
            ),
        ];
        for (records, want) in cases {
            let mut f = Follow::default();
            for s in *records {
                f.observe(&rec(*s));
            }
            assert_eq!(f.take_final().map(|x| x.0), *want, "{records:?}");
        }
    }

    fn feed(view: &mut dyn View, statuses: &[ResultStatus]) -> Option<ResultRecord> {
        let mut f = Follow::default();
        for (i, s) in statuses.iter().enumerate() {
            let r = ResultRecord {
                offset: Some(i as i64),
                ..rec(*s)
            };
            let raw = serde_json::from_slice(&r.to_json()).unwrap();
            let e = f.observe(&r);
            view.record(&r, &raw, e).unwrap();
        }
        f.take_final().map(|(_, r)| r)
    }

    #[test]
    fn json_lines_end_with_the_final_record_and_lose_none() {
        let mut view = JsonView::new(Vec::new());
        let statuses = [
            S::Accepted,
            S::Progress,
            S::Failed,
            S::Resumed,
            S::Cancelled,
            S::Rejected,
            S::Duplicate,
        ];
        let fin = feed(&mut view, &statuses).unwrap();
        view.end(&fin).unwrap();
        let text = String::from_utf8(view.out).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<&str> = lines
            .iter()
            .map(|v| v["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "accepted",
                "progress",
                "failed",
                "resumed",
                "rejected",
                "duplicate",
                "cancelled"
            ]
        );
        assert_eq!(
            lines.last().unwrap()["offset"],
            4,
            "the final record itself"
        );
    }

    #[test]
    fn text_shows_progress_lines_notes_and_the_summary() {
        let mut view = TextView {
            progress: Progress::Lines,
            out: Vec::new(),
        };
        let fin = feed(&mut view, &[S::Accepted, S::Progress, S::Completed]).unwrap();
        view.end(&fin).unwrap();
        let text = String::from_utf8(view.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(" j: accepted"), "{text}");
        assert_eq!(lines[1], "j: 0 rows", "{text}");
        assert_eq!(lines[2], "job j: completed", "{text}");
    }
}
