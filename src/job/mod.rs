//! A job's state and the records the daemon writes about it, with no I/O (SPEC §5, §6, §8).
//!
//! - this module: [`Checkpoint`] (the value of the state topic under the job id), [`JobStatus`], [`Counters`],
//!   [`ControlRequest`] and the state-topic keys;
//! - [`codec`]: Avro single-object encoding of checkpoints and control requests (`schemas/avro/`);
//! - [`result`]: the results topic's [`result::ResultRecord`] and [`result::ResultStatus`];
//! - [`dead_letter`]: the dead-letter record and what a transformation outcome means for a row
//!   ([`dead_letter::Disposition`]);
//! - [`lifecycle`]: every decision about a job as a pure function returning a [`lifecycle::Transition`];
//! - [`records`]: every Kafka record the daemon produces, built in one place ([`records::Records`]).

pub mod codec;
pub mod dead_letter;
pub mod lifecycle;
pub mod records;
pub mod result;
pub mod split;

use serde::{Deserialize, Serialize};

use crate::command::{ControlAction, JobSpec};
use crate::source::Cursor;

pub use codec::{StateDecodeError, StateRecord, decode_state};
pub use dead_letter::{DeadLetter, DeadLetterStage, Disposition, RawEventJson};
pub use result::{ResultRecord, ResultStatus};

/// Status of a job in its checkpoint (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order (for metrics initialised to 0 and tables).
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Paused,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// `completed`, `cancelled`: nothing can change the job any more. (`failed` can be resumed.)
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Cancelled)
    }

    /// `queued`, `running`: the job wants a task that reads and publishes.
    pub fn is_active(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// Lowercase name, as in results and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Row counters of a job, with the original design's meaning (SPEC §6). Invariant:
/// `found = published + dropped + transformation_errors + failed + sampled_out`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub found: i64,
    pub published: i64,
    pub dropped: i64,
    pub transformation_errors: i64,
    pub failed: i64,
    pub sampled_out: i64,
    pub processed_batches: i64,
}

impl Counters {
    /// Adds `other` to `self`, field by field.
    pub fn add(&mut self, other: &Counters) {
        self.found += other.found;
        self.published += other.published;
        self.dropped += other.dropped;
        self.transformation_errors += other.transformation_errors;
        self.failed += other.failed;
        self.sampled_out += other.sampled_out;
        self.processed_batches += other.processed_batches;
    }

    /// Whether the invariant of SPEC §6 holds.
    pub fn balanced(&self) -> bool {
        self.found
            == self.published
                + self.dropped
                + self.transformation_errors
                + self.failed
                + self.sampled_out
    }

    /// published / found × 100 (100 when nothing was found).
    pub fn success_rate_percent(&self) -> f64 {
        if self.found == 0 {
            100.0
        } else {
            self.published as f64 * 100.0 / self.found as f64
        }
    }
}

/// The latest state of one job: the value of the state topic under key `job_id` (schema
/// `schemas/avro/checkpoint.avsc`). Times are UTC milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub job_id: String,
    /// Incremented by every write; the state table keeps the highest (our own writes are recorded before the
    /// tail reads them back).
    pub revision: i64,
    pub status: JobStatus,
    pub spec: JobSpec,
    pub cursor: Option<Cursor>,
    pub counters: Counters,
    pub estimated_total: Option<i64>,
    pub owner_partition: i32,
    pub command_offset: i64,
    pub accepted_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    pub error: Option<String>,
    /// `request_id` of the last [`ControlRequest`] honoured.
    pub control_handled: Option<String>,
    /// A split job's parts, by job id (`<job_id>.part-<k>`; SPEC §5a); empty for any other job.
    #[serde(default)]
    pub parts: Vec<String>,
    /// The daemon instance that wrote this checkpoint (`instance_id`).
    #[serde(default)]
    pub instance: Option<String>,
}

/// A cancel/pause/resume on its way to the job's owner (schema `schemas/avro/control_request.avsc`),
/// stored under key [`control_key`]. The owner honours pending requests in order ([`ControlRequest::order`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// `<topic>-<partition>-<offset>` of the command: unique, so the owner honours each request once.
    pub request_id: String,
    pub job_id: String,
    pub action: ControlAction,
    pub at_ms: i64,
}

impl ControlRequest {
    /// The order in which pending requests of a job are honoured: time of recording, then request id.
    pub fn order(&self) -> (i64, &str) {
        (self.at_ms, self.request_id.as_str())
    }
}

/// State-topic key of one control request: `<job_id>/control/<request_id>` (`/` cannot occur in a job id).
/// Each request has its own key, so two requests recorded at once never overwrite each other; the owner
/// writes a tombstone for the key in the transaction that honours it.
pub fn control_key(req: &ControlRequest) -> String {
    format!("{}/control/{}", req.job_id, req.request_id)
}

/// What a state-topic key names: a job's checkpoint (the job id) or one of its control requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKey<'a> {
    Checkpoint(&'a str),
    /// `job_id`; the request id when the key carries one (keys of older versions were `<job_id>/control`).
    Control(&'a str, Option<&'a str>),
}

impl<'a> StateKey<'a> {
    /// Parses a state-topic key.
    pub fn parse(key: &'a str) -> StateKey<'a> {
        match key.split_once('/') {
            None => StateKey::Checkpoint(key),
            Some((job, rest)) => match rest.strip_prefix("control") {
                Some("") => StateKey::Control(job, None),
                Some(r) if r.starts_with('/') => StateKey::Control(job, Some(&r[1..])),
                _ => StateKey::Checkpoint(key),
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::Mode;

    pub(crate) fn spec() -> JobSpec {
        JobSpec {
            job_id: "j1".into(),
            tenant_id: "t".into(),
            environment_id: "e".into(),
            external_customer_ids: vec!["c1".into()],
            event_names: vec![],
            event_ids: vec![],
            start_ms: 1,
            end_ms: 2,
            batch_size: 10,
            mode: Mode::Pending,
            dry_run: false,
            sample_rate: 0.5,
            max_events_per_second: Some(3.5),
            parallelism: 1,
            parent_job_id: None,
            external_customer_id_from: None,
            external_customer_id_to: None,
            pending_start_ms: None,
            pending_end_ms: None,
        }
    }

    pub(crate) fn checkpoint() -> Checkpoint {
        Checkpoint {
            job_id: "j1".into(),
            revision: 4,
            status: JobStatus::Running,
            spec: spec(),
            cursor: Some(Cursor {
                external_customer_id: "c1".into(),
                timestamp_ms: 1_704_067_200_123,
                event_name: "ev".into(),
                id: "id-9".into(),
            }),
            counters: Counters {
                found: 10,
                published: 7,
                dropped: 1,
                transformation_errors: 1,
                failed: 1,
                sampled_out: 0,
                processed_batches: 2,
            },
            estimated_total: Some(100),
            owner_partition: 3,
            command_offset: 17,
            accepted_at_ms: 5,
            started_at_ms: Some(6),
            updated_at_ms: 7,
            completed_at_ms: None,
            error: None,
            control_handled: Some("cmds-1-2".into()),
            parts: Vec::new(),
            instance: Some("host-1".into()),
        }
    }

    #[test]
    fn counters_balance() {
        let mut c = checkpoint().counters;
        assert!(c.balanced());
        c.add(&Counters {
            found: 1,
            sampled_out: 1,
            ..Default::default()
        });
        assert!(c.balanced());
        c.found += 1;
        assert!(!c.balanced());
        assert_eq!(Counters::default().success_rate_percent(), 100.0);
    }

    #[test]
    fn state_keys_parse() {
        let req = ControlRequest {
            request_id: "cmds-1-7".into(),
            job_id: "j.1".into(),
            action: ControlAction::Pause,
            at_ms: 3,
        };
        let key = control_key(&req);
        assert_eq!(key, "j.1/control/cmds-1-7");
        for (key, want) in [
            ("j.1", StateKey::Checkpoint("j.1")),
            (key.as_str(), StateKey::Control("j.1", Some("cmds-1-7"))),
            ("j.1/control", StateKey::Control("j.1", None)),
            ("j.1/other", StateKey::Checkpoint("j.1/other")),
            ("j.1/controls", StateKey::Checkpoint("j.1/controls")),
        ] {
            assert_eq!(StateKey::parse(key), want, "{key}");
        }
    }

    #[test]
    fn statuses() {
        let finals: Vec<_> = JobStatus::ALL.iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [&JobStatus::Completed, &JobStatus::Cancelled]);
        let active: Vec<_> = JobStatus::ALL.iter().filter(|s| s.is_active()).collect();
        assert_eq!(active, [&JobStatus::Queued, &JobStatus::Running]);
        for s in JobStatus::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
