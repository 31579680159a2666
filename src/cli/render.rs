//! What the CLI shows a person: counts and durations, the progress of a job (an `indicatif` bar on a
//! terminal's standard error, else one line per progress record on standard output), the final summary, and
//! tables sized to their content (`comfy-table`). JSON output does not come through here.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use comfy_table::{CellAlignment, ColumnConstraint, Table, Width};
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::job::ResultRecord;

/// `12,345`.
pub fn count(n: i64) -> String {
    match u64::try_from(n) {
        Ok(n) => HumanCount(n).to_string(),
        Err(_) => format!("-{}", HumanCount(n.unsigned_abs())),
    }
}

/// A duration in whole seconds, e.g. `2m 41s` (humantime).
pub fn duration(secs: f64) -> String {
    let s = if secs.is_finite() {
        secs.max(0.0).round() as u64
    } else {
        0
    };
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// Whether coloured output may be used: on a terminal, unless `NO_COLOR` is set to a non-empty value
/// (<https://no-color.org>).
pub fn color_allowed(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `5,432 rows/s, ETA 2m 41s` of a progress record: the daemon's own figures (SPEC §6).
fn rate_and_eta(r: &ResultRecord) -> String {
    let mut parts = Vec::new();
    if let Some(rate) = r.rows_per_second {
        parts.push(format!("{} rows/s", count(rate.round() as i64)));
    }
    if let Some(eta) = r.eta_seconds {
        parts.push(format!("ETA {}", duration(eta)));
    }
    parts.join(", ")
}

/// The line of a `progress` record when progress is not drawn as a bar:
/// `job: 12,345 / 100,000 rows (12.3%), 5,432 rows/s, ETA 2m 41s`.
pub fn progress_line(r: &ResultRecord) -> String {
    let done = r.total_events_found.unwrap_or(0);
    let mut line = match r.estimated_total {
        Some(total) if total > 0 => {
            let pct = (done as f64 * 100.0 / total as f64).min(100.0);
            format!(
                "{}: {} / {} rows ({pct:.1}%)",
                r.job_id,
                count(done),
                count(total)
            )
        }
        _ => format!("{}: {} rows", r.job_id, count(done)),
    };
    let tail = rate_and_eta(r);
    if !tail.is_empty() {
        line.push_str(", ");
        line.push_str(&tail);
    }
    line
}

/// How `watch` shows progress: a bar on standard error when it is a terminal, else lines on `out`.
pub enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    /// A bar when standard error is a terminal (indicatif hides it otherwise, and on `TERM=dumb`), else lines.
    pub fn new() -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            Progress::Bar(bar)
        } else {
            Progress::Lines
        }
    }

    /// Shows a `progress` record.
    pub fn update(&self, r: &ResultRecord, out: &mut dyn Write) -> std::io::Result<()> {
        match self {
            Progress::Lines => writeln!(out, "{}", progress_line(r)),
            Progress::Bar(bar) => {
                let done = r.total_events_found.unwrap_or(0).max(0) as u64;
                let template = match r.estimated_total {
                    Some(total) if total > 0 => {
                        bar.set_length(total as u64);
                        "[{wide_bar}] {human_pos}/{human_len} rows ({percent}%) {msg}"
                    }
                    _ => "{spinner} {human_pos} rows {msg}",
                };
                bar.set_style(ProgressStyle::with_template(template).expect("valid template"));
                bar.set_position(done);
                bar.set_message(rate_and_eta(r));
                Ok(())
            }
        }
    }

    /// Writes a line to `out` (the bar, if any, is cleared first and drawn again after).
    pub fn note(&self, out: &mut dyn Write, text: &str) -> std::io::Result<()> {
        match self {
            Progress::Lines => writeln!(out, "{text}"),
            Progress::Bar(bar) => bar.suspend(|| writeln!(out, "{text}").and_then(|_| out.flush())),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// A table without borders whose columns are as wide as their content (job ids of 128 characters and UUID
/// tenants fit); `right` lists the columns aligned right (numbers).
pub fn table(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_header(header.iter().copied());
    for row in rows {
        t.add_row(row);
    }
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, 2));
        if right.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    if let Some(last) = t.column_iter_mut().last() {
        last.set_padding((0, 0));
    }
    lines_trimmed(&t.to_string())
}

/// Key–value lines, the keys in one column: the summary of a job and `status JOB`.
pub fn key_values(rows: Vec<(String, String)>, indent: u16) -> String {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    for (k, v) in rows {
        t.add_row(vec![k, v]);
    }
    if let Some(c) = t.column_mut(0) {
        c.set_padding((indent, 2))
            .set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(20)));
    }
    if let Some(c) = t.column_mut(1) {
        c.set_padding((0, 0));
    }
    lines_trimmed(&t.to_string())
}

/// Every line without trailing blanks, each ending in a newline.
fn lines_trimmed(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 1);
    for line in text.lines() {
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// A JSON value as a table cell: strings as they are, `null` as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The final summary of a job's last result: `job J: completed`, then its reason or error, counters, cursor
/// and times, one per line.
pub fn summary(r: &ResultRecord) -> String {
    let mut s = format!("job {}: {}", r.job_id, r.status);
    if r.dry_run == Some(true) {
        s.push_str(" (dry run: nothing published)");
    }
    s.push('\n');
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
    if let Some(reason) = &r.reason {
        row("reason", reason.clone());
    }
    if let Some(e) = &r.error {
        row("error", e.clone());
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
            row(k, count(v));
        }
    }
    if let Some(p) = r.success_rate_percent {
        row("success_rate_percent", format!("{p:.2}"));
    }
    if let Some(c) = &r.cursor {
        row("cursor", Value::Object(c.clone()).to_string());
    }
    for (k, v) in [
        ("started_at", &r.started_at),
        ("completed_at", &r.completed_at),
    ] {
        if let Some(t) = v {
            row(k, t.clone());
        }
    }
    if !rows.is_empty() {
        s.push_str(&key_values(rows, 2));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ResultStatus;

    #[test]
    fn counts_and_durations() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1_000), "-1,000");
        assert_eq!(duration(161.4), "2m 41s");
        assert_eq!(duration(-3.0), "0s");
        assert_eq!(duration(f64::NAN), "0s");
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
        assert_eq!(
            l,
            "j: 12,345 / 100,000 rows (12.3%), 5,432 rows/s, ETA 2m 41s"
        );
        let r = ResultRecord {
            total_events_found: Some(7),
            ..ResultRecord::new("j", ResultStatus::Progress, 0)
        };
        assert_eq!(progress_line(&r), "j: 7 rows");
    }

    #[test]
    fn the_bar_follows_progress_records() {
        let bar = ProgressBar::hidden();
        let p = Progress::Bar(bar.clone());
        let mut out = Vec::new();
        let mut r = ResultRecord {
            total_events_found: Some(50),
            rows_per_second: Some(10.0),
            ..ResultRecord::new("j", ResultStatus::Progress, 0)
        };
        p.update(&r, &mut out).unwrap();
        assert_eq!((bar.position(), bar.length()), (50, None));
        r.estimated_total = Some(200);
        r.total_events_found = Some(120);
        p.update(&r, &mut out).unwrap();
        assert_eq!((bar.position(), bar.length()), (120, Some(200)));
        assert_eq!(bar.message(), "10 rows/s");
        p.note(&mut out, "a note").unwrap();
        assert_eq!(
            out, b"a note\n",
            "progress itself goes to the bar, not to out"
        );
        p.finish();
        assert!(bar.is_finished());
    }

    #[test]
    fn tables_are_as_wide_as_their_content() {
        let long_id = "j".repeat(128);
        let tenant = "0b9c7f43-5a1e-4b4e-9d2c-1f6a8e3b2c7d";
        let text = table(
            &["JOB", "TENANT", "FOUND"],
            vec![
                vec![long_id.clone(), tenant.into(), "1,000".into()],
                vec!["short".into(), "t".into(), "5".into()],
            ],
            &[2],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with(&format!("{long_id}  {tenant}  1,000")),
            "{text}"
        );
        // Columns line up: the tenant column starts at the same place on every line.
        let at = long_id.len() + 2;
        assert_eq!(&lines[0][at..at + 6], "TENANT");
        assert_eq!(&lines[2][at..at + 1], "t");
        assert!(lines[2].ends_with("    5"), "numbers align right: {text}");
    }

    #[test]
    fn summary_lists_reason_counters_and_times() {
        let r = ResultRecord {
            total_events_found: Some(1_500),
            total_events_published: Some(1_499),
            dry_run: Some(true),
            error: Some("boom".into()),
            completed_at: Some("2024-01-01T00:00:00.000Z".into()),
            ..ResultRecord::new("j1", ResultStatus::Failed, 0)
        };
        let s = summary(&r);
        assert!(
            s.starts_with("job j1: failed (dry run: nothing published)\n"),
            "{s}"
        );
        for needle in [
            "  error ",
            "  total_events_found ",
            "1,500",
            "1,499",
            "completed_at",
        ] {
            assert!(s.contains(needle), "{needle} missing: {s}");
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(color_allowed(true, None));
        assert!(color_allowed(true, Some(OsStr::new(""))));
        assert!(!color_allowed(true, Some(OsStr::new("1"))));
        assert!(!color_allowed(false, None));
    }
}
