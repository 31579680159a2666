//! Job supervision: one task per job on a [`JoinSet`], started for the jobs this instance owns, stopped when
//! their control partition is revoked, and reconciled with the state table: every owned job that wants a task
//! (queued or running, or with a control request pending) has one, whatever the reason it had none (missed at
//! assignment because its checkpoint was behind an open transaction, an acceptance whose outcome was read back,
//! a task fenced by a stale instance, a task that panicked).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::job::Checkpoint;
use crate::runner::{JobContext, JobExit, queue_for_slot, run_job};

struct Running {
    partition: i32,
    token: CancellationToken,
    task: Id,
}

/// The job tasks of this instance.
pub struct Jobs {
    ctx: Arc<JobContext>,
    set: JoinSet<(String, JobExit)>,
    running: HashMap<String, Running>,
    /// Jobs not to be restarted before a given time (after a fence or a panic), with the next delay.
    backoff: HashMap<String, (Instant, Duration)>,
    shutdown: CancellationToken,
}

/// Whether a job wants a task on its owner: not final, and active or with a control request pending; a split
/// job always until it is final (it follows its parts, which can be resumed when it failed).
pub fn wants_task(cp: &Checkpoint, pending_controls: bool) -> bool {
    !cp.status.is_final() && (cp.status.is_active() || pending_controls || cp.spec.is_split())
}

impl Jobs {
    pub fn new(ctx: Arc<JobContext>, shutdown: CancellationToken) -> Jobs {
        Jobs {
            ctx,
            set: JoinSet::new(),
            running: HashMap::new(),
            backoff: HashMap::new(),
            shutdown,
        }
    }

    /// Job tasks alive (running or waiting for a slot).
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether no job task is alive.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Starts the job's task unless one runs, it is in backoff, or the daemon is shutting down.
    fn spawn(&mut self, job_id: &str, partition: i32) {
        if self.running.contains_key(job_id) || self.shutdown.is_cancelled() {
            return;
        }
        if let Some((until, _)) = self.backoff.get(job_id)
            && Instant::now() < *until
        {
            return;
        }
        let token = self.shutdown.child_token();
        let slot = queue_for_slot(&self.ctx.permits);
        let (ctx, id, t) = (self.ctx.clone(), job_id.to_string(), token.clone());
        let task = self
            .set
            .spawn(async move { (id.clone(), run_job(ctx, id, t, slot).await) })
            .id();
        self.running.insert(
            job_id.to_string(),
            Running {
                partition,
                token,
                task,
            },
        );
    }

    /// Stops the tasks of jobs owned by `partitions` (revoked): they end after their in-flight transaction.
    pub fn stop_partitions(&mut self, partitions: &[i32]) {
        for job in self.running.values() {
            if partitions.contains(&job.partition) {
                job.token.cancel();
            }
        }
    }

    /// Starts a task for every job of the table that this instance owns (`owned(partition)`) and that wants
    /// one, in acceptance order (so queued jobs take running slots in that order).
    pub fn reconcile_all(&mut self, owned: &dyn Fn(i32) -> bool) {
        let mut jobs: Vec<Checkpoint> = self
            .ctx
            .state
            .jobs()
            .into_iter()
            .filter(|cp| owned(cp.owner_partition) && !self.running.contains_key(&cp.job_id))
            .collect();
        jobs.sort_by_key(|cp| (cp.accepted_at_ms, cp.command_offset));
        for cp in jobs {
            self.reconcile_checkpoint(&cp);
        }
    }

    /// The same for one job (after its checkpoint or a control request changed).
    pub fn reconcile(&mut self, job_id: &str, owned: &dyn Fn(i32) -> bool) {
        if self.running.contains_key(job_id) {
            return;
        }
        if let Some(cp) = self.ctx.state.checkpoint(job_id)
            && owned(cp.owner_partition)
        {
            self.reconcile_checkpoint(&cp);
        }
    }

    fn reconcile_checkpoint(&mut self, cp: &Checkpoint) {
        let pending = !self.ctx.state.pending(&cp.job_id).is_empty();
        if wants_task(cp, pending) {
            info!(job_id = %cp.job_id, status = cp.status.as_str(), "starting job task");
            self.spawn(&cp.job_id, cp.owner_partition);
        }
    }

    /// The next task to end: its job id and how it ended (an `Err` is a panic). `None` when no task runs.
    pub async fn join_next(&mut self) -> Option<(String, Result<JobExit, JoinError>)> {
        let joined = self.set.join_next_with_id().await?;
        let (job_id, result) = match joined {
            Ok((_, (job_id, exit))) => (job_id, Ok(exit)),
            Err(e) => {
                let id = e.id();
                let job_id = self
                    .running
                    .iter()
                    .find(|(_, r)| r.task == id)
                    .map(|(j, _)| j.clone())
                    .unwrap_or_default();
                (job_id, Err(e))
            }
        };
        self.running.remove(&job_id);
        Some((job_id, result))
    }

    /// Notes how a task ended: a fenced or panicked job is restarted by the next reconciliation, after a
    /// delay that doubles each time (1 s → 60 s), so that two instances that both think they own a job do
    /// not take it from each other in a tight loop while the group settles.
    pub fn ended(&mut self, job_id: &str, result: &Result<JobExit, JoinError>) {
        match result {
            Ok(JobExit::Fenced) => {
                warn!(
                    job_id,
                    "job task fenced; the job is taken back if this instance still owns it"
                );
                self.back_off(job_id);
            }
            Ok(exit) => {
                info!(job_id, exit = ?exit, "job task finished");
                self.backoff.remove(job_id);
            }
            Err(e) => {
                error!(job_id, error = %e, "job task panicked; the job keeps its last checkpoint and is restarted");
                self.back_off(job_id);
            }
        }
    }

    fn back_off(&mut self, job_id: &str) {
        let delay = self
            .backoff
            .get(job_id)
            .map(|(_, d)| (*d * 2).min(Duration::from_secs(60)))
            .unwrap_or(Duration::from_secs(1));
        self.backoff
            .insert(job_id.to_string(), (Instant::now() + delay, delay));
    }

    /// Stops every task and waits up to `grace` for them to end.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.cancel();
        let all = async {
            let mut n = 0;
            while self.set.join_next().await.is_some() {
                n += 1;
            }
            n
        };
        match tokio::time::timeout(grace, all).await {
            Ok(n) => info!(jobs = n, "all job tasks stopped"),
            Err(_) => {
                error!(
                    grace_secs = grace.as_secs(),
                    "job tasks did not stop within the grace period; exiting (open transactions are aborted by the next owner or the transaction timeout)"
                );
                self.set.abort_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobStatus;
    use crate::job::tests::checkpoint;

    #[test]
    fn which_jobs_want_a_task() {
        // (status, control pending) → wants a task
        let table = [
            (JobStatus::Queued, false, true),
            (JobStatus::Running, false, true),
            (JobStatus::Paused, false, false),
            (JobStatus::Paused, true, true),
            (JobStatus::Failed, false, false),
            (JobStatus::Failed, true, true),
            (JobStatus::Completed, true, false),
            (JobStatus::Cancelled, true, false),
        ];
        for (status, pending, want) in table {
            let cp = Checkpoint {
                status,
                ..checkpoint()
            };
            assert_eq!(wants_task(&cp, pending), want, "{status} pending={pending}");
            let mut split = cp.clone();
            split.spec.parallelism = 4;
            assert_eq!(
                wants_task(&split, false),
                !status.is_final(),
                "split {status}"
            );
        }
    }
}
