//! Every decision about a job, as pure functions (no I/O, time passed in): what a command becomes
//! ([`decide_command`]), whether a control request applies ([`control_problem`]), and each step of a job's life
//! ([`honour`], [`start`], [`after_batch`], [`complete`], [`fail`]) as a [`Transition`]: the next checkpoint, the
//! result records that announce it, and the control requests it honoured. The daemon and the runner only carry
//! these out (one Kafka transaction per transition), so the rules are tested here, table-driven.

use crate::command::{Command, CommandError, CommandOrigin, ControlAction, JobSpec};
use crate::source::Cursor;

use super::{Checkpoint, ControlRequest, Counters, JobStatus, ResultStatus, control_key};

/// One step of a job: its next checkpoint (revision incremented, `updated_at_ms` = now), the statuses of the
/// result records that announce it, and the state-topic keys of the control requests it honoured (they get a
/// tombstone in the same transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub next: Checkpoint,
    pub results: Vec<ResultStatus>,
    pub honoured: Vec<String>,
}

impl Transition {
    fn of(cp: &Checkpoint, at: Stamp<'_>) -> Transition {
        Transition {
            next: bumped(cp, at),
            results: Vec::new(),
            honoured: Vec::new(),
        }
    }
}

/// When and by whom a checkpoint is written: UTC ms, and the daemon instance's id (SPEC §5a).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub now_ms: i64,
    pub instance: &'a str,
}

/// A copy of `cp` as its next revision, written `at`.
fn bumped(cp: &Checkpoint, at: Stamp<'_>) -> Checkpoint {
    let mut next = cp.clone();
    next.revision = cp.revision + 1;
    next.updated_at_ms = at.now_ms;
    next.instance = Some(at.instance.to_string());
    next
}

/// The first checkpoint of an accepted job: `queued`, revision 1, owned by the control partition the command
/// arrived on (SPEC §5).
pub fn accept(spec: JobSpec, origin: &CommandOrigin, at: Stamp<'_>) -> Checkpoint {
    let now_ms = at.now_ms;
    Checkpoint {
        job_id: spec.job_id.clone(),
        revision: 1,
        status: JobStatus::Queued,
        spec,
        cursor: None,
        counters: Counters::default(),
        estimated_total: None,
        owner_partition: origin.partition,
        command_offset: origin.offset,
        accepted_at_ms: now_ms,
        started_at_ms: None,
        updated_at_ms: now_ms,
        completed_at_ms: None,
        error: None,
        control_handled: None,
        parts: Vec::new(),
        instance: Some(at.instance.to_string()),
    }
}

/// A job's latest checkpoint and its pending control requests, by job id.
pub type Lookup<'a> = &'a (dyn Fn(&str) -> Option<(Checkpoint, Vec<ControlRequest>)> + Sync);

/// What the daemon knows when it decides a command.
pub struct CommandContext<'a> {
    /// `false`: every command is rejected with reason `disabled` (SPEC §3).
    pub enabled: bool,
    /// Whether every running slot of this instance is taken (an accepted job then also gets `queued`).
    pub slots_full: bool,
    /// A job's latest checkpoint and its pending control requests (in [`ControlRequest::order`]).
    pub lookup: Lookup<'a>,
}

/// The verdict on one command (SPEC §3).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A new job: its first checkpoint; `queued` when no running slot is free.
    Accept {
        checkpoint: Box<Checkpoint>,
        queued: bool,
    },
    /// Not accepted: `reason` names the field or the problem.
    Reject { job_id: String, reason: String },
    /// A `reprocess` for a job that exists: nothing starts.
    Duplicate { job_id: String, reason: String },
    /// A cancel/pause/resume to record for the job's owner.
    Control(ControlRequest),
}

/// Decides a parsed command (SPEC §3): disabled → reject; a bad command → reject naming the field; an existing
/// job id → duplicate; a control request for an unknown job, or one that cannot apply to the job's status once
/// its pending requests are honoured → reject.
///
/// A command with `parent_job_id` is a part of a split job, written by the split job's owner in its acceptance
/// transaction: it is accepted only as a part the split job lists (so nobody can attach a job of their own to a
/// split job, whose counters and status would then miss it), and it is no new replay: it is decided as if
/// enabled, since rejecting it would leave its split job waiting for it for ever (instances may differ in
/// `enabled` during a rollout).
pub fn decide_command(
    parsed: Result<Command, CommandError>,
    ctx: &CommandContext<'_>,
    origin: &CommandOrigin,
    at: Stamp<'_>,
) -> Verdict {
    let listed_part = |spec: &JobSpec| {
        spec.parent_job_id
            .as_deref()
            .is_some_and(|p| (ctx.lookup)(p).is_some_and(|(cp, _)| cp.parts.contains(&spec.job_id)))
    };
    let part_of_accepted = matches!(&parsed, Ok(Command::Reprocess(spec)) if listed_part(spec));
    if !ctx.enabled && !part_of_accepted {
        let job_id = match &parsed {
            Ok(c) => c.job_id().to_string(),
            Err(e) => e.job_id.clone(),
        };
        return Verdict::Reject {
            job_id,
            reason: "disabled".into(),
        };
    }
    match parsed {
        Err(e) => Verdict::Reject {
            job_id: e.job_id,
            reason: e.reason,
        },
        Ok(Command::Reprocess(spec)) => match (ctx.lookup)(&spec.job_id) {
            Some(_) => Verdict::Duplicate {
                reason: format!(
                    "job `{}` already exists; a reprocess command with its id starts nothing",
                    spec.job_id
                ),
                job_id: spec.job_id,
            },
            None if spec.parent_job_id.is_some() && !part_of_accepted => Verdict::Reject {
                reason: format!(
                    "field `parent_job_id`: `{}` is no split job listing the part `{}` (parts are written by their split job)",
                    spec.parent_job_id.as_deref().unwrap_or_default(),
                    spec.job_id
                ),
                job_id: spec.job_id,
            },
            None => Verdict::Accept {
                checkpoint: Box::new(accept(*spec, origin, at)),
                queued: ctx.slots_full,
            },
        },
        Ok(Command::Control { action, job_id }) => {
            let Some((cp, pending)) = (ctx.lookup)(&job_id) else {
                return Verdict::Reject {
                    reason: format!("{}: unknown job `{job_id}`", action.as_str()),
                    job_id,
                };
            };
            match control_problem(action, &cp, &pending, ctx.lookup) {
                Some(problem) => Verdict::Reject {
                    reason: format!("{}: {problem}", action.as_str()),
                    job_id,
                },
                None => Verdict::Control(ControlRequest {
                    request_id: origin.derived_job_id(),
                    job_id,
                    action,
                    at_ms: at.now_ms,
                }),
            }
        }
    }
}

/// The status a job will have once its pending control requests are honoured ([`honour`]'s result).
pub fn effective_status(cp: &Checkpoint, pending: &[ControlRequest]) -> JobStatus {
    after(cp.status, pending)
}

/// `status` once `pending` is honoured, in order.
fn after(status: JobStatus, pending: &[ControlRequest]) -> JobStatus {
    pending
        .iter()
        .fold(status, |status, req| apply(status, req.action).0)
}

/// Like [`effective_status`], for any job: a split job's status follows its parts, so it is what its parts will
/// be once their own pending requests (those it handed on) are honoured ([`super::split::status_of`]), then
/// its own pending requests. (A split job that handed a pause on is still `running` in its checkpoint until
/// its parts pause: judged on the checkpoint alone, a resume right after the pause was refused and the job
/// stayed paused.) `lookup` finds the parts.
pub fn effective_status_of(
    cp: &Checkpoint,
    pending: &[ControlRequest],
    lookup: Lookup<'_>,
) -> JobStatus {
    let own = if cp.spec.is_split() && !cp.status.is_final() && !cp.parts.is_empty() {
        let parts: Vec<Option<JobStatus>> = cp
            .parts
            .iter()
            .map(|id| lookup(id).map(|(part, part_pending)| effective_status(&part, &part_pending)))
            .collect();
        super::split::status_of(&parts)
    } else {
        cp.status
    };
    after(own, pending)
}

/// One control action on a status: the status after it, and the result it announces (`None`: no effect).
fn apply(status: JobStatus, action: ControlAction) -> (JobStatus, Option<ResultStatus>) {
    match (action, status) {
        (_, s) if s.is_final() => (s, None),
        (ControlAction::Cancel, _) => (JobStatus::Cancelled, Some(ResultStatus::Cancelled)),
        (ControlAction::Pause, JobStatus::Running | JobStatus::Queued) => {
            (JobStatus::Paused, Some(ResultStatus::Paused))
        }
        (ControlAction::Resume, JobStatus::Paused | JobStatus::Failed) => {
            (JobStatus::Queued, Some(ResultStatus::Resumed))
        }
        (_, s) => (s, None),
    }
}

/// Why `action` cannot apply to the job, judged on its status once its pending requests are honoured
/// ([`effective_status_of`]; `lookup` finds a split job's parts); `None` when it can. The daemon rejects such a
/// command and the CLI and the API refuse it before sending (SPEC §3).
pub fn control_problem(
    action: ControlAction,
    cp: &Checkpoint,
    pending: &[ControlRequest],
    lookup: Lookup<'_>,
) -> Option<String> {
    let status = effective_status_of(cp, pending, lookup);
    let when = if status == cp.status {
        ""
    } else {
        " once its pending requests are honoured"
    };
    match (action, status) {
        (_, s) if s.is_final() => Some(format!("job is already {s}{when}")),
        (ControlAction::Pause, JobStatus::Paused) => Some(format!("job is already paused{when}")),
        (ControlAction::Pause, JobStatus::Failed) => {
            Some(format!("job has failed{when}; resume or cancel it"))
        }
        (ControlAction::Resume, JobStatus::Running | JobStatus::Queued) => Some(format!(
            "job is {status}{when}; only a paused or failed job can be resumed"
        )),
        _ => None,
    }
}

/// Honours the job's pending control requests, in order: `cancel` ends it (`cancelled`), `pause` of a running
/// or queued job pauses it, `resume` of a paused or failed job queues it again (error cleared). A request with
/// no effect (e.g. a pause after a cancel) is honoured all the same. `None` when nothing is pending.
pub fn honour(cp: &Checkpoint, pending: &[ControlRequest], at: Stamp<'_>) -> Option<Transition> {
    let last = pending.last()?;
    let now_ms = at.now_ms;
    let mut t = Transition::of(cp, at);
    for req in pending {
        let (status, announced) = apply(t.next.status, req.action);
        if let Some(result) = announced {
            t.next.status = status;
            t.results.push(result);
            match status {
                JobStatus::Cancelled => t.next.completed_at_ms = Some(now_ms),
                JobStatus::Queued => t.next.error = None,
                _ => {}
            }
        }
        t.honoured.push(control_key(req));
    }
    t.next.control_handled = Some(last.request_id.clone());
    Some(t)
}

/// A queued job takes its running slot: `running`, `started_at_ms` set the first time. `None` unless queued.
pub fn start(cp: &Checkpoint, at: Stamp<'_>) -> Option<Transition> {
    if cp.status != JobStatus::Queued {
        return None;
    }
    let mut t = Transition::of(cp, at);
    t.next.status = JobStatus::Running;
    t.next.started_at_ms.get_or_insert(at.now_ms);
    Some(t)
}

/// The checkpoint after one batch: counters added, cursor moved to the batch's last row, and the row-count
/// estimate when one became known.
pub fn after_batch(
    cp: &Checkpoint,
    delta: &Counters,
    cursor: Option<Cursor>,
    estimated_total: Option<i64>,
    at: Stamp<'_>,
) -> Checkpoint {
    let mut next = bumped(cp, at);
    next.counters.add(delta);
    next.cursor = cursor;
    if estimated_total.is_some() {
        next.estimated_total = estimated_total;
    }
    next
}

/// Every row was read: `completed`.
pub fn complete(cp: &Checkpoint, at: Stamp<'_>) -> Transition {
    let mut t = Transition::of(cp, at);
    t.next.status = JobStatus::Completed;
    t.next.completed_at_ms = Some(at.now_ms);
    t.results.push(ResultStatus::Completed);
    t
}

/// The job cannot go on (e.g. ClickHouse refused its query): `failed` with the error, keeping the cursor so
/// that `resume` continues from it.
pub fn fail(cp: &Checkpoint, error: &str, at: Stamp<'_>) -> Transition {
    let mut t = Transition::of(cp, at);
    t.next.status = JobStatus::Failed;
    t.next.error = Some(error.to_string());
    t.results.push(ResultStatus::Failed);
    t
}

/// A split job follows its parts (SPEC §5a): its checkpoint takes their summed counters and estimates and the
/// status [`super::split::aggregate`] derives, announcing `paused`, `resumed` (from paused or failed back to
/// running) and the final `completed`, `cancelled` or `failed` (naming the failed parts). `None` when nothing
/// changed. A queued split job starts running first ([`start`]).
pub fn follow(
    cp: &Checkpoint,
    parts: &super::split::Aggregate,
    at: Stamp<'_>,
) -> Option<Transition> {
    let status = match parts.status {
        JobStatus::Queued => JobStatus::Running,
        s => s,
    };
    if status == cp.status
        && parts.counters == cp.counters
        && parts.estimated_total == cp.estimated_total
    {
        return None;
    }
    let mut t = Transition::of(cp, at);
    t.next.counters = parts.counters;
    t.next.estimated_total = parts.estimated_total;
    t.next.status = status;
    t.next.error = parts.error.clone();
    if status != cp.status {
        let announced = match (cp.status, status) {
            (_, JobStatus::Paused) => Some(ResultStatus::Paused),
            (JobStatus::Paused | JobStatus::Failed, JobStatus::Running) => {
                Some(ResultStatus::Resumed)
            }
            (_, JobStatus::Completed) => Some(ResultStatus::Completed),
            (_, JobStatus::Cancelled) => Some(ResultStatus::Cancelled),
            (_, JobStatus::Failed) => Some(ResultStatus::Failed),
            _ => None,
        };
        t.results.extend(announced);
        if status.is_final() {
            t.next.completed_at_ms = Some(at.now_ms);
        }
    }
    Some(t)
}

/// A split job's control requests, handed on to its parts: each request for each part it applies to (judged as
/// the part's own would be, [`control_problem`]), with request id `<request_id>.<k>`; and the transition that
/// marks them honoured on the split job. Its status then follows its parts ([`follow`]), except that a
/// resume of a paused or failed split job is announced at once (`resumed`, error cleared): its parts may finish
/// before the split job looks at them again. `None` while a part is not accepted yet (its request would be
/// lost) or nothing is pending.
pub fn hand_on(
    cp: &Checkpoint,
    pending: &[ControlRequest],
    parts: &[Option<(Checkpoint, Vec<ControlRequest>)>],
    at: Stamp<'_>,
) -> Option<(Transition, Vec<ControlRequest>)> {
    let last = pending.last()?;
    if parts.iter().any(Option::is_none) {
        return None;
    }
    let mut requests = Vec::new();
    // Each part's pending requests grow by those handed on, so a request is judged after the ones before it
    // (a pause then a resume reach a running part both).
    let mut parts: Vec<(&Checkpoint, Vec<ControlRequest>)> = parts
        .iter()
        .flatten()
        .map(|(cp, pending)| (cp, pending.clone()))
        .collect();
    for req in pending {
        for (k, (part_cp, part_pending)) in parts.iter_mut().enumerate() {
            if control_problem(req.action, part_cp, part_pending, &|_| None).is_none() {
                let handed = ControlRequest {
                    request_id: format!("{}.{k}", req.request_id),
                    job_id: part_cp.job_id.clone(),
                    action: req.action,
                    at_ms: req.at_ms,
                };
                part_pending.push(handed.clone());
                requests.push(handed);
            }
        }
    }
    let mut t = Transition::of(cp, at);
    t.honoured = pending.iter().map(control_key).collect();
    t.next.control_handled = Some(last.request_id.clone());
    for req in pending {
        if req.action == ControlAction::Resume
            && matches!(t.next.status, JobStatus::Paused | JobStatus::Failed)
        {
            t.next.status = JobStatus::Running;
            t.next.error = None;
            t.results.push(ResultStatus::Resumed);
        }
    }
    Some((t, requests))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandError, ControlAction};
    use crate::job::tests::{checkpoint, spec};

    use ControlAction::{Cancel, Pause, Resume};
    use JobStatus::{Cancelled, Completed, Failed, Paused, Queued, Running};

    fn at(now_ms: i64) -> Stamp<'static> {
        Stamp {
            now_ms,
            instance: "host-1",
        }
    }

    fn origin() -> CommandOrigin {
        CommandOrigin {
            topic: "cmds".into(),
            partition: 2,
            offset: 9,
        }
    }

    fn req(n: i64, action: ControlAction) -> ControlRequest {
        ControlRequest {
            request_id: format!("cmds-0-{n}"),
            job_id: "j1".into(),
            action,
            at_ms: n,
        }
    }

    fn with_status(status: JobStatus) -> Checkpoint {
        Checkpoint {
            status,
            ..checkpoint()
        }
    }

    #[test]
    fn control_actions_by_status() {
        // (status, action) → rejected?
        let table = [
            (Queued, Cancel, false),
            (Running, Cancel, false),
            (Paused, Cancel, false),
            (Failed, Cancel, false),
            (Completed, Cancel, true),
            (Cancelled, Cancel, true),
            (Queued, Pause, false),
            (Running, Pause, false),
            (Paused, Pause, true),
            (Failed, Pause, true),
            (Completed, Pause, true),
            (Cancelled, Pause, true),
            (Queued, Resume, true),
            (Running, Resume, true),
            (Paused, Resume, false),
            (Failed, Resume, false),
            (Completed, Resume, true),
            (Cancelled, Resume, true),
        ];
        for (status, action, rejected) in table {
            let p = control_problem(action, &with_status(status), &[], &|_| None);
            assert_eq!(p.is_some(), rejected, "{action:?} on {status}: {p:?}");
        }
        assert_eq!(
            control_problem(Pause, &with_status(Completed), &[], &|_| None).unwrap(),
            "job is already completed"
        );
    }

    #[test]
    fn control_is_judged_after_pending_requests() {
        // (status, pending, action) → rejected?
        let table: [(JobStatus, &[ControlAction], ControlAction, bool); 8] = [
            (Running, &[Cancel], Pause, true),
            (Running, &[Cancel], Resume, true),
            (Running, &[Cancel], Cancel, true),
            (Running, &[Pause], Resume, false),
            (Running, &[Pause], Pause, true),
            (Running, &[Pause, Resume], Pause, false),
            (Paused, &[Resume], Resume, true),
            (Failed, &[Resume], Cancel, false),
        ];
        for (status, pending, action, rejected) in table {
            let pending: Vec<_> = pending
                .iter()
                .enumerate()
                .map(|(i, a)| req(i as i64, *a))
                .collect();
            let p = control_problem(action, &with_status(status), &pending, &|_| None);
            assert_eq!(p.is_some(), rejected, "{action:?} after {pending:?}: {p:?}");
            if let Some(p) = p {
                assert!(p.contains("pending"), "{p}");
            }
        }
    }

    #[test]
    fn honouring_applies_every_pending_request_in_order() {
        // (status, pending) → (status after, results, error cleared)
        let table: [(JobStatus, &[ControlAction], JobStatus, &[ResultStatus]); 9] = [
            (Running, &[Cancel], Cancelled, &[ResultStatus::Cancelled]),
            (Running, &[Pause], Paused, &[ResultStatus::Paused]),
            (Queued, &[Pause], Paused, &[ResultStatus::Paused]),
            (Paused, &[Resume], Queued, &[ResultStatus::Resumed]),
            (Failed, &[Resume], Queued, &[ResultStatus::Resumed]),
            (Running, &[Resume], Running, &[]),
            (
                Running,
                &[Pause, Resume],
                Queued,
                &[ResultStatus::Paused, ResultStatus::Resumed],
            ),
            (
                Running,
                &[Cancel, Pause],
                Cancelled,
                &[ResultStatus::Cancelled],
            ),
            (Completed, &[Cancel], Completed, &[]),
        ];
        for (status, actions, after, results) in table {
            let mut cp = with_status(status);
            cp.error = Some("boom".into());
            let pending: Vec<_> = actions
                .iter()
                .enumerate()
                .map(|(i, a)| req(i as i64, *a))
                .collect();
            let t = honour(&cp, &pending, at(100)).unwrap();
            assert_eq!(t.next.status, after, "{status} after {actions:?}");
            assert_eq!(t.results, results, "{status} after {actions:?}");
            assert_eq!(t.next.revision, cp.revision + 1);
            assert_eq!(t.next.updated_at_ms, 100);
            assert_eq!(
                t.next.control_handled.as_deref(),
                Some(pending.last().unwrap().request_id.as_str())
            );
            assert_eq!(
                t.honoured,
                pending.iter().map(control_key).collect::<Vec<_>>()
            );
            assert_eq!(t.next.error.is_none(), after == Queued);
            assert_eq!(t.next.completed_at_ms.is_some(), after == Cancelled);
            assert_eq!(effective_status(&cp, &pending), after);
        }
        assert_eq!(honour(&checkpoint(), &[], at(1)), None);
    }

    #[test]
    fn steps_of_a_job() {
        let queued = with_status(Queued);
        let t = start(&queued, at(50)).unwrap();
        assert_eq!(
            (t.next.status, t.next.started_at_ms),
            (Running, Some(6)),
            "started_at kept from the first start"
        );
        let mut fresh = with_status(Queued);
        fresh.started_at_ms = None;
        assert_eq!(start(&fresh, at(50)).unwrap().next.started_at_ms, Some(50));
        assert!(start(&with_status(Running), at(1)).is_none());
        assert!(t.results.is_empty());

        let cp = checkpoint();
        let delta = Counters {
            found: 3,
            published: 3,
            processed_batches: 1,
            ..Default::default()
        };
        let next = after_batch(&cp, &delta, None, None, at(60));
        assert_eq!(next.counters.found, 13);
        assert_eq!(next.counters.processed_batches, 3);
        assert_eq!(next.cursor, None);
        assert_eq!(next.estimated_total, Some(100), "kept");
        assert_eq!(
            after_batch(&cp, &delta, None, Some(7), at(60)).estimated_total,
            Some(7)
        );
        assert_eq!(next.revision, 5);
        assert_eq!(
            next.instance.as_deref(),
            Some("host-1"),
            "the writer is named"
        );

        let t = complete(&cp, at(70));
        assert_eq!(
            (t.next.status, t.next.completed_at_ms),
            (Completed, Some(70))
        );
        assert_eq!(t.results, [ResultStatus::Completed]);
        let t = fail(&cp, "no table", at(80));
        assert_eq!(t.next.status, Failed);
        assert_eq!(t.next.error.as_deref(), Some("no table"));
        assert_eq!(t.next.cursor, cp.cursor, "resume continues from the cursor");
        assert_eq!(t.results, [ResultStatus::Failed]);
    }

    #[test]
    fn a_split_job_follows_its_parts() {
        use crate::job::split::Aggregate;
        let agg = |status, found| Aggregate {
            status,
            counters: Counters {
                found,
                published: found,
                ..Default::default()
            },
            estimated_total: Some(100),
            error: (status == Failed).then(|| "parts failed: p: x".to_string()),
        };
        // (split job's status, parts' status) → (status after, results)
        let table: [(JobStatus, JobStatus, JobStatus, &[ResultStatus]); 7] = [
            (Queued, Queued, Running, &[]),
            (Running, Running, Running, &[]),
            (Running, Paused, Paused, &[ResultStatus::Paused]),
            (Paused, Running, Running, &[ResultStatus::Resumed]),
            (Failed, Running, Running, &[ResultStatus::Resumed]),
            (Running, Failed, Failed, &[ResultStatus::Failed]),
            (Running, Completed, Completed, &[ResultStatus::Completed]),
        ];
        for (before, parts, after, results) in table {
            let cp = with_status(before);
            let t = follow(&cp, &agg(parts, 42), at(9)).unwrap();
            assert_eq!(t.next.status, after, "{before} with parts {parts}");
            assert_eq!(t.results, results, "{before} with parts {parts}");
            assert_eq!(t.next.counters.found, 42);
            assert_eq!(t.next.completed_at_ms.is_some(), after.is_final());
            assert_eq!(t.next.error.is_some(), after == Failed);
        }
        let mut same = with_status(Running);
        same.counters = agg(Running, 42).counters;
        same.estimated_total = Some(100);
        assert_eq!(follow(&same, &agg(Running, 42), at(9)), None);
    }

    /// A split job's pause handed on is still `running` in its checkpoint until its parts pause: a resume
    /// right after it is judged on the parts' pending requests, not refused.
    #[test]
    fn a_split_job_is_judged_by_its_parts_pending_requests() {
        let parent = Checkpoint {
            job_id: "j1".into(),
            status: Running,
            spec: JobSpec {
                parallelism: 2,
                ..spec()
            },
            parts: vec!["j1.part-0".into(), "j1.part-1".into()],
            ..checkpoint()
        };
        let part = |k: usize, status, pending: Vec<ControlRequest>| {
            let cp = Checkpoint {
                job_id: format!("j1.part-{k}"),
                status,
                ..checkpoint()
            };
            (cp, pending)
        };
        // (parts: status and whether a pause is pending on them) → the split job's status, resume allowed
        let cases = [
            ([(Running, true), (Running, true)], Paused, true),
            ([(Running, true), (Completed, false)], Paused, true),
            ([(Running, false), (Running, true)], Running, false),
            ([(Paused, false), (Paused, false)], Paused, true),
            ([(Completed, false), (Completed, false)], Completed, false),
        ];
        for (parts, status, resumable) in cases {
            let table: Vec<(Checkpoint, Vec<ControlRequest>)> = parts
                .iter()
                .enumerate()
                .map(|(k, (s, paused))| {
                    part(k, *s, if *paused { vec![req(1, Pause)] } else { vec![] })
                })
                .collect();
            let lookup = |id: &str| table.iter().find(|(cp, _)| cp.job_id == id).cloned();
            assert_eq!(
                effective_status_of(&parent, &[], &lookup),
                status,
                "{parts:?}"
            );
            let final_parent = status == Completed;
            let judged = Checkpoint {
                status: if final_parent { Completed } else { Running },
                ..parent.clone()
            };
            assert_eq!(
                control_problem(Resume, &judged, &[], &lookup).is_none(),
                resumable,
                "{parts:?}"
            );
        }
        // Without its parts (none found) the split job is judged on its checkpoint.
        assert_eq!(
            effective_status_of(&parent, &[req(2, Pause)], &|_| None),
            Paused
        );
    }

    #[test]
    fn a_split_jobs_requests_reach_the_parts_they_apply_to() {
        let part = |k: usize, status| {
            (
                Checkpoint {
                    job_id: format!("j1.part-{k}"),
                    status,
                    ..checkpoint()
                },
                vec![],
            )
        };
        let parts = vec![
            Some(part(0, Running)),
            Some(part(1, Completed)),
            Some(part(2, Paused)),
        ];
        let (t, requests) =
            hand_on(&with_status(Running), &[req(4, Pause)], &parts, at(9)).unwrap();
        assert_eq!(t.next.control_handled.as_deref(), Some("cmds-0-4"));
        assert_eq!(t.honoured.len(), 1);
        assert_eq!(t.next.status, Running, "its status follows its parts");
        let ids: Vec<_> = requests
            .iter()
            .map(|r| (r.job_id.as_str(), r.request_id.as_str()))
            .collect();
        assert_eq!(
            ids,
            [("j1.part-0", "cmds-0-4.0")],
            "only the running part pauses"
        );
        let (_, requests) =
            hand_on(&with_status(Running), &[req(5, Cancel)], &parts, at(9)).unwrap();
        assert_eq!(requests.len(), 2, "every part not final is cancelled");
        let (t, requests) =
            hand_on(&with_status(Paused), &[req(6, Resume)], &parts, at(9)).unwrap();
        assert_eq!(requests[0].job_id, "j1.part-2");
        assert_eq!(
            (t.next.status, t.results.as_slice()),
            (Running, [ResultStatus::Resumed].as_slice()),
            "a resume is announced at once"
        );
        // Requests in a row are judged one after the other: a pause then a resume both reach the running
        // part (judged each on the part's checkpoint, the resume was refused and the part stayed paused).
        let (_, requests) = hand_on(
            &with_status(Running),
            &[req(8, Pause), req(9, Resume)],
            &parts,
            at(9),
        )
        .unwrap();
        let handed: Vec<_> = requests
            .iter()
            .map(|r| (r.job_id.as_str(), r.action))
            .collect();
        assert_eq!(
            handed,
            [
                ("j1.part-0", Pause),
                ("j1.part-0", Resume),
                ("j1.part-2", Resume)
            ]
        );
        let waiting = vec![Some(part(0, Running)), None];
        assert!(hand_on(&with_status(Running), &[req(7, Cancel)], &waiting, at(9)).is_none());
        assert!(hand_on(&with_status(Running), &[], &parts, at(9)).is_none());
    }

    #[test]
    fn commands_become_verdicts() {
        let existing = checkpoint();
        let split = Checkpoint {
            job_id: "split".into(),
            parts: vec!["split.part-0".into(), "split.part-1".into()],
            ..checkpoint()
        };
        let lookup = |id: &str| match id {
            "j1" => Some((existing.clone(), vec![])),
            "split" => Some((split.clone(), vec![])),
            _ => None,
        };
        let ctx = |enabled, slots_full| CommandContext {
            enabled,
            slots_full,
            lookup: &lookup,
        };
        let new_spec = JobSpec {
            job_id: "j2".into(),
            ..spec()
        };
        let v = decide_command(
            Ok(Command::Reprocess(Box::new(new_spec.clone()))),
            &ctx(true, false),
            &origin(),
            at(5),
        );
        let Verdict::Accept { checkpoint, queued } = v else {
            panic!("{v:?}")
        };
        assert!(!queued);
        assert_eq!(
            (
                checkpoint.status,
                checkpoint.revision,
                checkpoint.owner_partition,
                checkpoint.command_offset
            ),
            (Queued, 1, 2, 9)
        );
        assert!(matches!(
            decide_command(
                Ok(Command::Reprocess(Box::new(new_spec.clone()))),
                &ctx(true, true),
                &origin(),
                at(5),
            ),
            Verdict::Accept { queued: true, .. }
        ));
        assert!(matches!(
            decide_command(Ok(Command::Reprocess(Box::new(spec()))), &ctx(true, false), &origin(), at(5)),
            Verdict::Duplicate { job_id, .. } if job_id == "j1"
        ));
        assert!(matches!(
            decide_command(Ok(Command::Reprocess(Box::new(new_spec.clone()))), &ctx(false, false), &origin(), at(5)),
            Verdict::Reject { reason, .. } if reason == "disabled"
        ));
        // A part is accepted only when its split job lists it (`split` lists `split.part-1`), and then also
        // by a disabled instance.
        for (part_id, parent, enabled, accepted) in [
            ("split.part-1", "split", true, true),
            ("split.part-1", "split", false, true),
            ("split.part-7", "split", true, false),
            ("j1.part-1", "j1", true, false),
            ("gone.part-1", "gone", true, false),
        ] {
            let part = JobSpec {
                job_id: part_id.into(),
                parent_job_id: Some(parent.into()),
                ..new_spec.clone()
            };
            let v = decide_command(
                Ok(Command::Reprocess(Box::new(part))),
                &ctx(enabled, false),
                &origin(),
                at(5),
            );
            assert_eq!(
                matches!(v, Verdict::Accept { .. }),
                accepted,
                "{part_id}: {v:?}"
            );
            if !accepted && enabled {
                assert!(
                    matches!(&v, Verdict::Reject { reason, .. } if reason.contains("parent_job_id")),
                    "{v:?}"
                );
            }
        }
        let bad = CommandError {
            job_id: "x".into(),
            reason: "field `tenant_id`: required".into(),
        };
        assert_eq!(
            decide_command(Err(bad), &ctx(true, false), &origin(), at(5)),
            Verdict::Reject {
                job_id: "x".into(),
                reason: "field `tenant_id`: required".into()
            }
        );
        let control = |action, job: &str| {
            decide_command(
                Ok(Command::Control {
                    action,
                    job_id: job.into(),
                }),
                &ctx(true, false),
                &origin(),
                at(5),
            )
        };
        assert_eq!(
            control(Pause, "j1"),
            Verdict::Control(ControlRequest {
                request_id: "cmds-2-9".into(),
                job_id: "j1".into(),
                action: Pause,
                at_ms: 5
            })
        );
        assert!(
            matches!(control(Resume, "j1"), Verdict::Reject { reason, .. } if reason.starts_with("resume: job is running"))
        );
        assert!(
            matches!(control(Cancel, "nope"), Verdict::Reject { reason, .. } if reason == "cancel: unknown job `nope`")
        );
    }
}
