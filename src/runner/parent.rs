//! A split job's task (SPEC §5a): it publishes no events; it follows its parts' checkpoints in the state
//! table and records what it is of them ([`lifecycle::follow`]: summed counters, estimate, status, the final
//! result once every part is final), with `progress` results at the progress interval, and hands its control
//! requests on to its parts ([`lifecycle::hand_on`]). Every write goes through the job's one commit path, so
//! its results are written once however often the task is restarted.

use std::ops::ControlFlow::{self, Break, Continue};
use std::time::{Duration, Instant};

use tracing::info;

use super::{Commit, JobExit, Runner, sleep_or_stop};
use crate::batch;
use crate::command::now_ms;
use crate::job::lifecycle::{self, Transition};
use crate::job::split::{self, Aggregate};
use crate::job::{Checkpoint, ControlRequest, ResultStatus};

/// How often a split job looks at its parts.
const LOOK_EVERY: Duration = Duration::from_millis(500);

impl Runner {
    /// Follows the parts until the split job is final (completed or cancelled; a failed split job waits for
    /// a resume of its parts).
    pub(super) async fn follow(&mut self) -> ControlFlow<JobExit, JobExit> {
        self.begin().await?;
        info!(
            parts = self.cp.parts.len(),
            "following the parts of the split job"
        );
        let mut rate = (Instant::now(), self.cp.counters.found);
        loop {
            self.hand_on().await?;
            let parts = self.parts();
            let refs: Vec<Option<&Checkpoint>> =
                parts.iter().map(|p| p.as_ref().map(|(cp, _)| cp)).collect();
            let agg = split::aggregate(&refs);
            // Requests handed on and not yet honoured by a part: its status is about to change.
            let settled = parts
                .iter()
                .flatten()
                .all(|(_, pending)| pending.is_empty());
            if settled && let Some(t) = lifecycle::follow(&self.cp, &agg, self.ctx.stamp()) {
                self.record(t, &agg, &mut rate).await?;
            }
            if self.cp.status.is_final() {
                let message = match self.cp.status {
                    crate::job::JobStatus::Completed => "reprocessing job completed",
                    _ => "reprocessing job cancelled",
                };
                batch::log_summary(&self.cp, message);
                return Continue(super::exit_of(self.cp.status));
            }
            if sleep_or_stop(&self.stop, LOOK_EVERY).await {
                return Break(JobExit::Stopped);
            }
        }
    }

    /// The parts' checkpoints and pending requests, in part order (`None`: not accepted yet).
    fn parts(&self) -> Vec<Option<(Checkpoint, Vec<ControlRequest>)>> {
        self.cp
            .parts
            .iter()
            .map(|id| self.ctx.state.lookup(id))
            .collect()
    }

    /// Commits what the split job now is, with a `progress` result when it is due.
    async fn record(
        &mut self,
        t: Transition,
        agg: &Aggregate,
        rate: &mut (Instant, i64),
    ) -> ControlFlow<JobExit> {
        let records = &self.ctx.records;
        let mut out = records.transition(&t, now_ms());
        let now = Instant::now();
        if t.results.is_empty() && self.progress.due(now) {
            let secs = now.duration_since(rate.0).as_secs_f64().max(0.001);
            let rows_per_second = (agg.counters.found - rate.1).max(0) as f64 / secs;
            let mut r = records.job_result(&t.next, ResultStatus::Progress, now_ms());
            r.rows_per_second = Some((rows_per_second * 10.0).round() / 10.0);
            if let Some(total) = t.next.estimated_total {
                let left = (total - t.next.counters.found).max(0) as f64;
                r.eta_seconds = Some(if rows_per_second > 0.0 {
                    (left / rows_per_second).round()
                } else {
                    0.0
                });
            }
            out.push(records.result(&r));
            self.progress.committed(0, true, now);
            *rate = (now, agg.counters.found);
        }
        match self.commit(out, t.next, &t.honoured).await? {
            Commit::Done | Commit::Reloaded => Continue(()),
            Commit::Refused { list, .. } => Break(self.refused_job_records(list).await),
        }
    }

    /// Hands the split job's pending control requests on to its parts, in one transaction with the split
    /// job's checkpoint that marks them honoured.
    async fn hand_on(&mut self) -> ControlFlow<JobExit> {
        let pending = self.ctx.state.pending(&self.cp.job_id);
        let Some((t, requests)) =
            lifecycle::hand_on(&self.cp, &pending, &self.parts(), self.ctx.stamp())
        else {
            return Continue(());
        };
        let records = &self.ctx.records;
        let mut out = records.transition(&t, now_ms());
        out.extend(requests.iter().map(|r| records.control_request(r)));
        for r in &requests {
            info!(part = %r.job_id, action = r.action.as_str(), "control request handed on to a part");
        }
        match self.commit(out, t.next, &t.honoured).await? {
            Commit::Done => {
                for r in &requests {
                    self.ctx.state.record_control(r);
                }
                Continue(())
            }
            Commit::Reloaded => Continue(()),
            Commit::Refused { list, .. } => Break(self.refused_job_records(list).await),
        }
    }
}
