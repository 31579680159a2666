//! One batch of rows → the records of its transaction and its counters (SPEC §5, §7, §8), with the per-row log
//! lines kept until the transaction commits; progress results (rate, ETA); the throttle window ([`throttle`]).
//! Pure apart from logging.

pub mod throttle;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::{Level, debug, error, info, warn};

use crate::command::{JobSpec, format_ms};
use crate::job::dead_letter::RowPlace;
use crate::job::records::{OutRecord, Records};
use crate::job::{
    Checkpoint, Counters, DeadLetter, DeadLetterStage, RawEventJson, ResultRecord, ResultStatus,
};
use crate::source::{RawRow, text};
use crate::transform::{self, Outcome};

/// Keeps a row when `xxh3_64(id) / 2^64 < rate` (SPEC §7): the same subset on every run, and a smaller rate
/// keeps a subset of a larger one's.
pub fn sampled_in(id: &[u8], rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let h = xxhash_rust::xxh3::xxh3_64(id);
    (h as f64) / 18_446_744_073_709_551_616.0 < rate
}

/// A per-row log line, written once its batch commits (so a redone batch logs once).
#[derive(Debug, Clone, PartialEq)]
pub struct RowLog {
    /// Position of the row in the batch (0-based).
    pub row: usize,
    /// `None`: the event was published (a DEBUG line); else the stage that stopped the row.
    pub stage: Option<DeadLetterStage>,
    /// The reason code (validation) or `reason: message` (other stages).
    pub detail: String,
}

/// What one batch becomes.
#[derive(Debug, Default)]
pub struct Built {
    /// Events and dead letters (none for a dry run), in row order.
    pub records: Vec<OutRecord>,
    pub delta: Counters,
    pub logs: Vec<RowLog>,
}

/// Transforms a batch's rows into records and counters. `batch_no` is the job's 0-based batch number; `refused`
/// holds rows the broker refused on an earlier attempt (position → librdkafka error name): they are
/// dead-lettered (publish stage) instead of published. Events larger than the output topic's
/// `max.message.bytes` are dead-lettered as `too_large` before producing (SPEC §5).
pub fn build(
    records: &Records,
    spec: &JobSpec,
    rows: &[RawRow],
    batch_no: i64,
    refused: &HashMap<usize, String>,
) -> Built {
    let mut out = Built {
        records: Vec::with_capacity(rows.len()),
        delta: Counters {
            processed_batches: 1,
            ..Default::default()
        },
        logs: Vec::new(),
    };
    let at = format_ms(crate::command::now_ms());
    let debug_on = tracing::enabled!(Level::DEBUG);
    // The row's tenant and environment are the job's (the query filters on them).
    let shared = Shared {
        tenant: spec.tenant_id.as_str().into(),
        environment: spec.environment_id.as_str().into(),
    };
    for (i, row) in rows.iter().enumerate() {
        out.delta.found += 1;
        if !sampled_in(&row.id, spec.sample_rate) {
            out.delta.sampled_out += 1;
            continue;
        }
        let place = RowPlace {
            job_id: &spec.job_id,
            batch: batch_no,
            batch_position: i as i64 + 1,
            at: &at,
        };
        match row_record(records, &shared, &place, row, i, refused) {
            Ok(event) => {
                out.delta.published += 1;
                if debug_on {
                    out.logs.push(RowLog {
                        row: i,
                        stage: None,
                        detail: String::new(),
                    });
                }
                if !spec.dry_run {
                    out.records.push(event);
                }
            }
            Err(dl) => {
                match dl.stage {
                    DeadLetterStage::Validation => out.delta.dropped += 1,
                    DeadLetterStage::Transformation => out.delta.transformation_errors += 1,
                    DeadLetterStage::Publish => out.delta.failed += 1,
                }
                out.logs.push(RowLog {
                    row: i,
                    stage: Some(dl.stage),
                    detail: if dl.stage == DeadLetterStage::Validation {
                        dl.reason.clone()
                    } else {
                        format!("{}: {}", dl.reason, dl.message)
                    },
                });
                if !spec.dry_run {
                    out.records.push(records.dead_letter(*dl, row));
                }
            }
        }
    }
    out
}

/// Header values every event of a batch shares.
struct Shared {
    tenant: std::sync::Arc<str>,
    environment: std::sync::Arc<str>,
}

/// The event record of one row, or its dead letter.
fn row_record(
    records: &Records,
    shared: &Shared,
    place: &RowPlace<'_>,
    row: &RawRow,
    i: usize,
    refused: &HashMap<usize, String>,
) -> Result<OutRecord, Box<DeadLetter>> {
    let raw = || RawEventJson::of(row, usize::MAX);
    if let Some(column) = row.invalid_utf8_key() {
        return Err(Box::new(DeadLetter::invalid_utf8(place, column, raw())));
    }
    if let Some(name) = refused.get(&i) {
        let message = format!("the broker refused the event: {name}");
        return Err(Box::new(DeadLetter::publish(place, name, message, raw())));
    }
    let outcome = transform::transform(&row.payload, &shared.tenant, &shared.environment);
    let Outcome::Event(ev) = outcome else {
        let dl = DeadLetter::of_outcome(place, &outcome, raw).expect("not an event");
        return Err(Box::new(dl));
    };
    let rec = records.event(ev, &shared.tenant, &shared.environment, i);
    let limit = records.limits.event_bytes();
    if rec.wire_size() > limit {
        let message = format!(
            "event of {} bytes exceeds max.message.bytes {} of topic {}",
            rec.wire_size(),
            limit,
            records.topics.output
        );
        return Err(Box::new(DeadLetter::publish(
            place,
            "too_large",
            message,
            raw(),
        )));
    }
    Ok(rec)
}

/// Writes a committed batch's log lines: one per row not published (the original design's messages and
/// fields), one DEBUG line per published event, then `batch processing complete` with the batch's counters.
pub fn emit_logs(job_id: &str, rows: &[RawRow], batch_no: i64, built: &Built, dry_run: bool) {
    for l in &built.logs {
        let row = &rows[l.row];
        let ts = format_ms(row.timestamp_ms);
        let pos = l.row + 1;
        let (id, customer, name) = (
            text(&row.id),
            text(&row.external_customer_id),
            text(&row.event_name),
        );
        match l.stage {
            None => {
                debug!(job_id, raw_event_id = %id, external_customer_id = %customer, event_name = %name, timestamp = %ts, batch = batch_no, batch_position = pos, "published transformed event")
            }
            Some(DeadLetterStage::Validation) => {
                info!(job_id, raw_event_id = %id, external_customer_id = %customer, event_name = %name, timestamp = %ts, batch = batch_no, batch_position = pos, reason = %l.detail, "validation failed - event dropped")
            }
            Some(DeadLetterStage::Transformation) => {
                warn!(job_id, raw_event_id = %id, external_customer_id = %customer, event_name = %name, timestamp = %ts, batch = batch_no, batch_position = pos, error = %l.detail, "transformation error - event skipped")
            }
            Some(DeadLetterStage::Publish) => {
                error!(job_id, raw_event_id = %id, external_customer_id = %customer, event_name = %name, timestamp = %ts, batch = batch_no, batch_position = pos, error = %l.detail, "failed to publish transformed event")
            }
        }
    }
    let d = &built.delta;
    info!(
        job_id,
        batch = batch_no,
        batch_size = d.found,
        batch_published = d.published,
        batch_dropped = d.dropped,
        batch_transform_errors = d.transformation_errors,
        batch_publish_failed = d.failed,
        batch_sampled_out = d.sampled_out,
        dry_run,
        "batch processing complete"
    );
}

/// The final summary line of a job, with the result counters.
pub fn log_summary(cp: &Checkpoint, message: &'static str) {
    let c = &cp.counters;
    info!(
        job_id = %cp.job_id,
        status = cp.status.as_str(),
        total_events_found = c.found,
        total_events_published = c.published,
        total_events_dropped = c.dropped,
        total_transformation_errors = c.transformation_errors,
        total_events_failed = c.failed,
        total_events_sampled_out = c.sampled_out,
        processed_batches = c.processed_batches,
        success_rate_percent = c.success_rate_percent(),
        dry_run = cp.spec.dry_run,
        "{message}"
    );
}

/// Progress of one job task: rows read since it started reading, for `progress` results (rows/s, ETA) at most
/// every `interval`.
#[derive(Debug, Clone)]
pub struct Progress {
    interval: Duration,
    started: Instant,
    last: Instant,
    rows: i64,
}

impl Progress {
    /// Starts counting at `now`.
    pub fn new(interval: Duration, now: Instant) -> Progress {
        Progress {
            interval,
            started: now,
            last: now,
            rows: 0,
        }
    }

    /// Whether a `progress` result is due with the batch committed at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now.duration_since(self.last) >= self.interval
    }

    /// Rows per second read by this task so far, with `pending` rows of a batch about to commit.
    pub fn rate(&self, pending: i64, now: Instant) -> f64 {
        let secs = now.duration_since(self.started).as_secs_f64().max(0.001);
        (self.rows + pending) as f64 / secs
    }

    /// The `progress` result for the checkpoint `next` (which already counts the batch of `pending` rows):
    /// counters, cursor, `rows_per_second` (one decimal) and, with an estimate, `eta_seconds`.
    pub fn result(
        &self,
        records: &Records,
        next: &Checkpoint,
        pending: i64,
        now: Instant,
        at_ms: i64,
    ) -> ResultRecord {
        let mut r = records.job_result(next, ResultStatus::Progress, at_ms);
        let rate = self.rate(pending, now);
        r.rows_per_second = Some((rate * 10.0).round() / 10.0);
        if let Some(total) = next.estimated_total {
            let left = (total - next.counters.found).max(0) as f64;
            r.eta_seconds = Some(if rate > 0.0 {
                (left / rate).round()
            } else {
                0.0
            });
        }
        r
    }

    /// Counts a committed batch of `rows` rows; `reported`: it carried a `progress` result.
    pub fn committed(&mut self, rows: i64, reported: bool, now: Instant) {
        self.rows += rows;
        if reported {
            self.last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::job::tests::checkpoint;
    use crate::source::SortingKey;

    fn records(max_event: usize) -> Records {
        let key = SortingKey::new(
            "t",
            &[
                "external_customer_id".into(),
                "timestamp".into(),
                "id".into(),
            ],
        )
        .unwrap();
        let mut r = Records::new(&Config::default(), 3, key, "host-1".into());
        r.limits = std::sync::Arc::new(crate::job::records::TopicLimits::new(max_event, 1 << 20));
        r
    }

    fn payload(id: &str, org: &str) -> Vec<u8> {
        format!(r#"{{"id":"{id}","orgId":"{org}","methodName":"m","providerName":"p","createdAt":"2024-01-01T00:00:00Z"}}"#).into_bytes()
    }

    fn rows() -> Vec<RawRow> {
        let row = |id: &str, payload: Vec<u8>| RawRow {
            id: id.as_bytes().to_vec(),
            tenant_id: b"t".to_vec(),
            environment_id: b"e".to_vec(),
            payload,
            ..Default::default()
        };
        vec![
            row("r0", payload("e0", "o")),
            row("r1", payload("e1", "")),
            row("r2", b"{oops".to_vec()),
            row("r3", payload("e3", "o")),
        ]
    }

    #[test]
    fn a_batch_counts_every_row_once_and_dead_letters_the_rest() {
        let spec = crate::job::tests::spec();
        let spec = JobSpec {
            sample_rate: 1.0,
            ..spec
        };
        let rows = rows();
        let built = build(&records(1 << 20), &spec, &rows, 4, &HashMap::new());
        let d = built.delta;
        assert_eq!(
            (
                d.found,
                d.published,
                d.dropped,
                d.transformation_errors,
                d.failed
            ),
            (4, 2, 1, 1, 0)
        );
        assert!(d.balanced());
        assert_eq!(d.processed_batches, 1);
        let topics: Vec<&str> = built.records.iter().map(|r| &*r.topic).collect();
        assert_eq!(
            topics,
            [
                "prod_events_v4",
                "raw_events_reprocess_dlq",
                "raw_events_reprocess_dlq",
                "prod_events_v4"
            ]
        );
        assert_eq!(built.records[0].tag, Some(0));
        let dl: serde_json::Value =
            serde_json::from_slice(built.records[1].value.as_ref().unwrap()).unwrap();
        assert_eq!(
            (dl["batch"].as_i64(), dl["batch_position"].as_i64()),
            (Some(4), Some(2))
        );
        assert_eq!(
            built.logs.iter().map(|l| l.stage).collect::<Vec<_>>(),
            [
                Some(DeadLetterStage::Validation),
                Some(DeadLetterStage::Transformation)
            ]
        );

        // A refused row is dead-lettered as a publish failure; a dry run produces nothing but counts the same.
        let refused = HashMap::from([(3usize, "MSG_SIZE_TOO_LARGE".to_string())]);
        let built = build(&records(1 << 20), &spec, &rows, 4, &refused);
        assert_eq!((built.delta.published, built.delta.failed), (1, 1));
        assert_eq!(
            built.records[3].headers[2],
            ("reason", "MSG_SIZE_TOO_LARGE".to_string().into())
        );
        let dry = JobSpec {
            dry_run: true,
            ..spec.clone()
        };
        let built = build(&records(1 << 20), &dry, &rows, 4, &HashMap::new());
        assert!(built.records.is_empty());
        assert_eq!(
            built.delta,
            build(&records(1 << 20), &spec, &rows, 4, &HashMap::new()).delta
        );

        // Events over the output topic's limit are dead-lettered before producing.
        let built = build(&records(300), &spec, &rows, 0, &HashMap::new());
        assert_eq!((built.delta.published, built.delta.failed), (0, 2));
        assert!(
            built.logs[0].detail.starts_with("too_large: event of"),
            "{:?}",
            built.logs[0]
        );
    }

    #[test]
    fn sampling_is_deterministic_and_close_to_the_rate() {
        let ids: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("evt-{i}").into_bytes())
            .collect();
        let kept: Vec<&Vec<u8>> = ids.iter().filter(|id| sampled_in(id, 0.25)).collect();
        let again: Vec<&Vec<u8>> = ids.iter().filter(|id| sampled_in(id, 0.25)).collect();
        assert_eq!(kept, again);
        let share = kept.len() as f64 / ids.len() as f64;
        assert!((0.23..0.27).contains(&share), "{share}");
        assert!(ids.iter().all(|id| sampled_in(id, 1.0)));
        assert!(
            ids.iter()
                .filter(|id| sampled_in(id, 0.1))
                .all(|id| sampled_in(id, 0.25))
        );

        let spec = JobSpec {
            sample_rate: 0.5,
            ..crate::job::tests::spec()
        };
        let rows = rows();
        let built = build(&records(1 << 20), &spec, &rows, 0, &HashMap::new());
        let sampled = rows.iter().filter(|r| !sampled_in(&r.id, 0.5)).count() as i64;
        assert_eq!(built.delta.sampled_out, sampled);
        assert!(built.delta.balanced());
    }

    #[test]
    fn progress_reports_rate_and_eta_at_its_interval() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::from_secs(5), t0);
        assert!(!p.due(t0 + Duration::from_secs(4)));
        assert!(p.due(t0 + Duration::from_secs(5)));
        let mut cp = checkpoint();
        cp.counters.found = 400;
        cp.estimated_total = Some(1_000);
        let r = p.result(&records(1 << 20), &cp, 400, t0 + Duration::from_secs(2), 0);
        assert_eq!(r.status, ResultStatus::Progress);
        assert_eq!(r.rows_per_second, Some(200.0));
        assert_eq!(r.eta_seconds, Some(3.0));
        p.committed(400, true, t0 + Duration::from_secs(2));
        assert!(!p.due(t0 + Duration::from_secs(6)));
        assert_eq!(p.rate(0, t0 + Duration::from_secs(4)), 100.0);
    }
}
