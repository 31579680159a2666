//! One job's task: read a batch → build its records ([`crate::batch`]) → commit it with the job's next
//! checkpoint in one transaction → throttle / honour control requests → next batch. Every step of the job's
//! life is a [`Transition`] decided by [`crate::job::lifecycle`]; this module only carries them out, through
//! one commit path ([`Runner::commit`]). It touches no other job.
//!
//! Exactly-once rests on three facts: the checkpoint travels in the same transaction as the batch's events;
//! the job's transactional id is stable, so creating the producer fences any zombie and ends its open
//! transaction; and the checkpoint is only ever read after that fence, once the job's state partition has been
//! read past its `read_uncommitted` end ([`StateStore::sync_partition`]), so no open transaction of anyone can
//! hide the latest checkpoint. After a failure whose outcome is unknown the runner fences again and reads the
//! checkpoint back: the batch is redone only if its transaction did not commit.

use std::collections::HashMap;
use std::future::Future;
use std::ops::ControlFlow::{self, Break, Continue};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ConstantBuilder, ExponentialBuilder, Retryable};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

mod parent;

use crate::batch::throttle::{self, Throttle};
use crate::batch::{self, Progress};
use crate::command::now_ms;
use crate::config::Config;
use crate::job::lifecycle::{self, Stamp, Transition};
use crate::job::records::{OutRecord, Records};
use crate::job::split;
use crate::job::{Checkpoint, Counters, JobStatus};
use crate::metrics::{JobSeries, Metrics};
use crate::sink::{TxnError, TxnProducer, is_size_refusal};
use crate::source::{Cursor, RawRow, RowStream, Source, SourceError, StreamShape};
use crate::state::StateStore;

/// Everything job tasks share.
pub struct JobContext {
    pub cfg: Arc<Config>,
    pub source: Source,
    pub state: StateStore,
    pub metrics: Arc<Metrics>,
    /// Running-job slots (`processing.concurrency`); FIFO, so queued jobs start in acceptance order.
    pub permits: Arc<Semaphore>,
    pub records: Records,
    /// This daemon instance's id ([`Config::instance`]).
    pub instance: String,
}

impl JobContext {
    /// Now, by this instance: what every checkpoint it writes carries.
    pub fn stamp(&self) -> Stamp<'_> {
        Stamp {
            now_ms: now_ms(),
            instance: &self.instance,
        }
    }

    /// Reads the output and dead-letter topics' `max.message.bytes` from the broker and makes them the limits
    /// every job judges its records by ([`Records::limits`], never above the configured ones); true when one
    /// was lowered. Called when a job starts and when the broker refuses records for their size.
    pub async fn refresh_topic_limits(&self) -> bool {
        let (output, dlq) = crate::sink::broker_limits(&self.cfg).await;
        let bytes = |b: Option<i64>| b.and_then(|b| usize::try_from(b).ok());
        self.records.limits.follow_broker(bytes(output), bytes(dlq))
    }

    /// The configuration job producers are made with: the output and dead-letter topics' limits as now known,
    /// so that a record batch never exceeds them.
    fn producer_config(&self) -> Config {
        let mut cfg = (*self.cfg).clone();
        let limits = &self.records.limits;
        cfg.topics.output.max_message_bytes = limits.event_bytes() as i64;
        cfg.topics.dlq.max_message_bytes = limits.dead_letter_bytes() as i64;
        cfg
    }

    /// The transactional id of a job's producer: `<prefix>-<job_id>` (SPEC §5).
    pub fn transactional_id(&self, job_id: &str) -> String {
        format!("{}-{job_id}", self.cfg.kafka.transactional_id_prefix)
    }
}

/// How a job task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobExit {
    Completed,
    Failed,
    Cancelled,
    Paused,
    /// Another producer took the job's transactional id, or another instance wrote its checkpoint: the
    /// daemon takes the job back if it still owns it.
    Fenced,
    /// Shutdown or partition revoked: the job stays `running` and resumes elsewhere or later.
    Stopped,
    /// Nothing to do (unknown, final, paused or failed without a resume request).
    Idle,
}

/// A job's place in the queue for a running slot: a semaphore acquire that the daemon has already polled once,
/// so places are taken in acceptance order however long each task takes to start.
pub type Slot = Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>;

/// Takes a place in the queue for a running slot now (SPEC §3: queued jobs start in acceptance order).
pub fn queue_for_slot(permits: &Arc<Semaphore>) -> Slot {
    let mut acquire = Box::pin(permits.clone().acquire_owned());
    // The first poll registers the waiter in the semaphore's FIFO queue; later polls come from the job task.
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    match acquire.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(permit) => {
            Box::pin(std::future::ready(permit.expect("semaphore never closed")))
        }
        std::task::Poll::Pending => {
            Box::pin(async move { acquire.await.expect("semaphore never closed") })
        }
    }
}

/// The job task. Runs until the job completes, fails, is paused or cancelled, is fenced, or `stop` fires.
/// `slot` is the job's place in the running-slot queue ([`queue_for_slot`]). Its log lines carry `job_id`
/// through the task's span.
pub async fn run_job(
    ctx: Arc<JobContext>,
    job_id: String,
    stop: CancellationToken,
    slot: Slot,
) -> JobExit {
    let span = info_span!("job", job_id = %job_id);
    async move {
        let exit = match Runner::start(ctx, job_id, stop).await {
            Continue(mut runner) => match runner.run(slot).await {
                Continue(exit) | Break(exit) => exit,
            },
            Break(exit) => exit,
        };
        info!(exit = ?exit, "job task ended");
        exit
    }
    .instrument(span)
    .await
}

/// What [`Runner::commit`] came to, when the task goes on.
enum Commit {
    Done,
    /// Not committed: the checkpoint was read back and is the one the task had (`self.cp`).
    Reloaded,
    /// The broker refused these records (tag = row position, `None` for records about the job).
    /// `limits_lowered`: for their size, and the broker's topic limits turned out smaller than known (now
    /// lowered): the records must be built again against them rather than dead-lettered.
    Refused {
        list: Vec<(Option<usize>, String)>,
        limits_lowered: bool,
    },
}

/// A row-count estimate being made in the background (best effort: never a reason to fail the job).
type Estimate = Option<JoinHandle<Result<Vec<(u32, u64)>, SourceError>>>;

struct Runner {
    ctx: Arc<JobContext>,
    producer: TxnProducer,
    cp: Checkpoint,
    stop: CancellationToken,
    progress: Progress,
    /// Rows of the current page the broker refused (by their sorting key, librdkafka error name): they stay
    /// dead-lettered when the page is read again after a failed attempt, until the page commits.
    refused: HashMap<Cursor, String>,
    /// The job's `reprocessor_job_rows` series: set while it reads, removed when the task ends.
    series: JobSeries,
}

impl Runner {
    async fn start(
        ctx: Arc<JobContext>,
        job_id: String,
        stop: CancellationToken,
    ) -> ControlFlow<JobExit, Runner> {
        ctx.refresh_topic_limits().await;
        let producer = connect(&ctx, &job_id, &stop).await?;
        let cp = load(&ctx, &job_id, &stop).await?;
        let progress = Progress::new(ctx.cfg.processing.progress_interval(), Instant::now());
        let series = ctx.metrics.job_series(&job_id);
        Continue(Runner {
            ctx,
            producer,
            cp,
            stop,
            progress,
            refused: HashMap::new(),
            series,
        })
    }

    async fn run(&mut self, slot: Slot) -> ControlFlow<JobExit, JobExit> {
        if self.cp.status.is_final() {
            return Break(JobExit::Idle);
        }
        if self.cp.spec.is_split() {
            // A split job reads nothing itself: it follows its parts and takes no running slot.
            drop(slot);
            return self.follow().await;
        }
        self.honour().await?;
        if !self.cp.status.is_active() {
            return Break(JobExit::Idle);
        }
        let _permit = self.wait_for_slot(slot).await?;
        self.honour().await?;
        self.batches().await
    }

    /// Commits `records`, which carry the job's next checkpoint `next` and tombstones for `honoured` control
    /// requests. On success adopts `next`. After a failure whose outcome is unknown, fences the producer and
    /// reads the checkpoint back: `Done` if it is `next`, `Reloaded` if it is still `self.cp`; anything else
    /// means another instance wrote it, and the task stops (`Fenced`).
    async fn commit(
        &mut self,
        records: Vec<OutRecord>,
        next: Checkpoint,
        honoured: &[String],
    ) -> ControlFlow<JobExit, Commit> {
        // Counted `unknown` unless resolved below (e.g. the task stops before reading the outcome back).
        let txn = self.ctx.metrics.transaction();
        let err = match self.producer.commit(records, None).await {
            Ok(()) => {
                txn.committed();
                self.adopt(next, honoured);
                return Continue(Commit::Done);
            }
            Err(TxnError::Refused(list)) => {
                txn.aborted();
                let limits_lowered = list.iter().any(|(_, name)| is_size_refusal(name))
                    && self.ctx.refresh_topic_limits().await;
                // A fresh producer for the redo (see `TxnProducer::commit`), whose record batches fit the
                // limits as now known.
                self.producer = connect(&self.ctx, &self.cp.job_id, &self.stop).await?;
                return Continue(Commit::Refused {
                    list,
                    limits_lowered,
                });
            }
            Err(TxnError::Fenced) => {
                txn.aborted();
                warn!("producer fenced: another producer initialised the job's transactional id");
                return Break(JobExit::Fenced);
            }
            Err(e) => e,
        };
        warn!(error = %err, "transaction not committed or outcome unknown; fencing and reading the checkpoint back");
        if sleep_or_stop(&self.stop, Duration::from_secs(1)).await {
            return Break(JobExit::Stopped);
        }
        self.producer = connect(&self.ctx, &self.cp.job_id, &self.stop).await?;
        let found = load(&self.ctx, &self.cp.job_id, &self.stop).await?;
        if found == next {
            info!("the transaction had committed");
            txn.committed();
            self.adopt(next, honoured);
            Continue(Commit::Done)
        } else if found == self.cp {
            txn.aborted();
            Continue(Commit::Reloaded)
        } else {
            warn!(
                revision = found.revision,
                "the job's checkpoint was written by another instance"
            );
            Break(JobExit::Fenced)
        }
    }

    fn adopt(&mut self, next: Checkpoint, honoured: &[String]) {
        self.ctx.state.record_committed(&next, honoured);
        self.cp = next;
    }

    /// Carries out the transition `make` decides for the current checkpoint (again after a reload), until it
    /// commits or no longer applies.
    async fn transition(
        &mut self,
        make: impl Fn(&Runner) -> Option<Transition>,
    ) -> ControlFlow<JobExit> {
        loop {
            let Some(t) = make(self) else {
                return Continue(());
            };
            let records = self.ctx.records.transition(&t, now_ms());
            match self.commit(records, t.next, &t.honoured).await? {
                Commit::Done => return Continue(()),
                Commit::Reloaded => continue,
                Commit::Refused { list, .. } => return Break(self.refused_job_records(list).await),
            }
        }
    }

    /// Honours the pending control requests, if any: stops the task when the job is now cancelled or paused;
    /// takes the job back to `running` when a pause and a resume were both pending.
    async fn honour(&mut self) -> ControlFlow<JobExit> {
        if self.ctx.state.pending(&self.cp.job_id).is_empty() {
            return Continue(());
        }
        let running = self.cp.status == JobStatus::Running;
        self.transition(|r| {
            lifecycle::honour(&r.cp, &r.ctx.state.pending(&r.cp.job_id), r.ctx.stamp())
        })
        .await?;
        match self.cp.status {
            JobStatus::Cancelled => {
                info!("job cancelled");
                batch::log_summary(&self.cp, "reprocessing job cancelled");
                Break(JobExit::Cancelled)
            }
            JobStatus::Paused => {
                info!("job paused");
                Break(JobExit::Paused)
            }
            JobStatus::Queued if running => self.begin().await,
            _ => Continue(()),
        }
    }

    /// Waits for a running slot; control requests are honoured while waiting.
    async fn wait_for_slot(
        &mut self,
        mut slot: Slot,
    ) -> ControlFlow<JobExit, OwnedSemaphorePermit> {
        loop {
            tokio::select! {
                p = &mut slot => return Continue(p),
                _ = self.stop.cancelled() => return Break(JobExit::Stopped),
                _ = tokio::time::sleep(Duration::from_millis(500)) => self.honour().await?,
            }
        }
    }

    /// A queued job takes its slot: `running`.
    async fn begin(&mut self) -> ControlFlow<JobExit> {
        if self.cp.status == JobStatus::Queued {
            self.transition(|r| lifecycle::start(&r.cp, r.ctx.stamp()))
                .await?;
            info!(estimated_total = ?self.cp.estimated_total, "job started");
        }
        Continue(())
    }

    /// The batch loop, from the checkpoint's cursor to the end of the job's range: batches come from one
    /// stream of rows ([`Source::stream`]), opened again from the checkpoint's cursor whenever a transaction
    /// did not commit.
    async fn batches(&mut self) -> ControlFlow<JobExit, JobExit> {
        self.begin().await?;
        let rate = self.cp.spec.max_events_per_second;
        let mut throttle = rate.map(|r| Throttle::new(r, Instant::now()));
        let shape = stream_shape(&self.ctx.cfg, self.cp.spec.batch_size, rate);
        let mut stream = self.open_stream(shape);
        let mut estimate = self.estimate();
        self.progress = Progress::new(self.ctx.cfg.processing.progress_interval(), Instant::now());
        self.series
            .set(self.cp.counters.found, self.cp.estimated_total);
        loop {
            if self.stop.is_cancelled() {
                return Break(JobExit::Stopped);
            }
            self.honour().await?;
            let started = Instant::now();
            let next = tokio::select! {
                b = stream.next() => b,
                _ = self.stop.cancelled() => return Break(JobExit::Stopped),
            };
            let rows = match next {
                None => return self.complete().await,
                Some(Err(e)) => return Break(self.fail(&e.to_string()).await),
                Some(Ok(rows)) => rows,
            };
            let read = started.elapsed();
            if let Some(th) = throttle.as_mut() {
                if let Some(rate) = self.rate_share() {
                    th.set_rate(rate, Instant::now());
                }
                loop {
                    let wait = th.wait_before(rows.len() as i64, Instant::now());
                    if wait.is_zero() {
                        break;
                    }
                    self.wait_between_batches(wait).await?;
                }
            }
            let building = Instant::now();
            let Some(delta) = self.commit_batch(&rows, &mut estimate).await? else {
                // Not committed: reading starts again from the checkpoint's cursor.
                stream = self.open_stream(shape);
                continue;
            };
            let dead_lettered = !self.cp.spec.dry_run;
            let took = read + building.elapsed();
            self.ctx.metrics.record_batch(&delta, dead_lettered, took);
            self.series
                .set(self.cp.counters.found, self.cp.estimated_total);
            if let Some(th) = throttle.as_mut() {
                th.committed(delta.published, Instant::now());
                let wait = th.wait_after(Instant::now());
                self.wait_between_batches(wait).await?;
            }
        }
    }

    /// For a part of a throttled split job: its share of the split job's rate now ([`split::rate_share`]),
    /// from the checkpoints on the state topic; `None` for other jobs, or while the split job's checkpoint is
    /// not known here (the part keeps the share it was planned with).
    fn rate_share(&self) -> Option<f64> {
        let parent = self
            .ctx
            .state
            .checkpoint(self.cp.spec.parent_job_id.as_deref()?)?;
        let total = parent.spec.max_events_per_second?;
        let statuses: Vec<Option<JobStatus>> = parent
            .parts
            .iter()
            .map(|id| {
                if *id == self.cp.job_id {
                    Some(JobStatus::Running)
                } else {
                    self.ctx.state.checkpoint(id).map(|cp| cp.status)
                }
            })
            .collect();
        Some(split::rate_share(total, &statuses))
    }

    /// The job's rows after its checkpoint's cursor.
    fn open_stream(&self, shape: StreamShape) -> RowStream {
        let filters = self.cp.spec.filters();
        self.ctx
            .source
            .stream(filters, self.cp.cursor.clone(), shape)
    }

    /// Builds and commits one batch; redoes it with refused rows dead-lettered. Returns the committed counters,
    /// or `None` when the transaction did not commit and the checkpoint was read back.
    async fn commit_batch(
        &mut self,
        rows: &[RawRow],
        estimate: &mut Estimate,
    ) -> ControlFlow<JobExit, Option<Counters>> {
        let cursor = rows.last().map(Cursor::of);
        let estimated = take_estimate(estimate).await;
        loop {
            let refused: HashMap<usize, String> = if self.refused.is_empty() {
                HashMap::new()
            } else {
                let of = |(i, row)| self.refused.get(&Cursor::of(row)).map(|n| (i, n.clone()));
                rows.iter().enumerate().filter_map(of).collect()
            };
            let batch_no = self.cp.counters.processed_batches;
            let records = &self.ctx.records;
            let mut built = batch::build(records, &self.cp.spec, rows, batch_no, &refused);
            let next = lifecycle::after_batch(
                &self.cp,
                &built.delta,
                cursor.clone(),
                estimated,
                self.ctx.stamp(),
            );
            let mut out = std::mem::take(&mut built.records);
            let now = Instant::now();
            let report = self.progress.due(now);
            if report {
                let r = self
                    .progress
                    .result(records, &next, built.delta.found, now, now_ms());
                out.push(records.result(&r));
            }
            out.push(records.checkpoint(&next));
            match self.commit(out, next, &[]).await? {
                Commit::Done => {
                    self.refused.clear();
                    self.progress
                        .committed(built.delta.found, report, Instant::now());
                    let dry_run = self.cp.spec.dry_run;
                    batch::emit_logs(&self.cp.job_id, rows, batch_no, &built, dry_run);
                    return Continue(Some(built.delta));
                }
                Commit::Reloaded => return Continue(None),
                Commit::Refused {
                    limits_lowered: true,
                    list,
                } => {
                    warn!(
                        batch = batch_no,
                        refused = list.len(),
                        "the broker refused records for their size under a limit smaller than known; redoing the batch against its limits"
                    );
                }
                Commit::Refused { list, .. } if list.iter().all(|(tag, _)| tag.is_some()) => {
                    for (tag, name) in list {
                        let i = tag.expect("checked");
                        warn!(batch = batch_no, batch_position = i + 1, error = %name, "broker refused a record; redoing the batch with it dead-lettered");
                        self.refused.insert(Cursor::of(&rows[i]), name);
                    }
                }
                Commit::Refused { list, .. } => return Break(self.refused_job_records(list).await),
            }
        }
    }

    /// Starts the row-count estimate in the background when the job has none.
    fn estimate(&self) -> Estimate {
        if self.cp.estimated_total.is_some() {
            return None;
        }
        let source = self.ctx.source.clone();
        let filters = self.cp.spec.filters();
        Some(tokio::spawn(async move { source.estimate(&filters).await }))
    }

    /// Sleeps between two transactions (throttling), honouring control requests and `stop` at least every
    /// half second, so a throttled job is paused or cancelled as promptly as a running one.
    async fn wait_between_batches(&mut self, wait: Duration) -> ControlFlow<JobExit> {
        let until = Instant::now() + wait.min(Duration::from_secs(365 * 86_400));
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Continue(());
            }
            if sleep_or_stop(&self.stop, left.min(Duration::from_millis(500))).await {
                return Break(JobExit::Stopped);
            }
            self.honour().await?;
        }
    }

    async fn complete(&mut self) -> ControlFlow<JobExit, JobExit> {
        self.transition(|r| Some(lifecycle::complete(&r.cp, r.ctx.stamp())))
            .await?;
        batch::log_summary(&self.cp, "reprocessing job completed");
        Continue(JobExit::Completed)
    }

    /// Ends the job as `failed`, keeping its cursor so a `resume` continues from it.
    async fn fail(&mut self, error: &str) -> JobExit {
        error!(error, "reprocessing job failed");
        let error = error.to_string();
        match self
            .transition(|r| Some(lifecycle::fail(&r.cp, &error, r.ctx.stamp())))
            .await
        {
            Continue(()) => {
                batch::log_summary(&self.cp, "reprocessing job failed");
                JobExit::Failed
            }
            Break(exit) => exit,
        }
    }

    /// The broker refused a checkpoint or result record: the job cannot be recorded and fails.
    async fn refused_job_records(&mut self, list: Vec<(Option<usize>, String)>) -> JobExit {
        let names: Vec<String> = list.into_iter().map(|(_, n)| n).collect();
        let error = format!(
            "the broker refused a checkpoint or result record: {}",
            names.join(", ")
        );
        error!(error, "reprocessing job failed");
        let t = lifecycle::fail(&self.cp, &error, self.ctx.stamp());
        let records = self.ctx.records.transition(&t, now_ms());
        // One attempt, through the one commit path: were `failed` not recorded either, the last checkpoint
        // stands and the job's next task redoes the batch.
        match self.commit(records, t.next, &t.honoured).await {
            Break(exit) => exit,
            Continue(_) => JobExit::Failed,
        }
    }
}

/// The estimate if it is ready; a failed estimate is logged and dropped (never a reason to fail the job).
async fn take_estimate(estimate: &mut Estimate) -> Option<i64> {
    if !estimate.as_ref().is_some_and(|h| h.is_finished()) {
        return None;
    }
    match estimate.take().expect("checked").await {
        Ok(Ok(days)) => Some(days.iter().map(|(_, n)| *n as i64).sum()),
        Ok(Err(e)) => {
            warn!(error = %e, "row-count estimate failed; progress goes on without an ETA");
            None
        }
        Err(_) => None,
    }
}

/// How a job reads (SPEC §4): queries of `clickhouse.max_rows_per_query` rows (large, since each query
/// starting mid-day reads a few granules per part it does not return: measured 2.75 rows read per row with
/// queries of 50,000 rows, 1.36 with 250,000, on granules of 16,384), and for a throttled job at most 30 s of
/// its rate (so a query does not wait minutes on the throttle); one batch read ahead.
fn stream_shape(cfg: &Config, batch_size: u32, rate: Option<f64>) -> StreamShape {
    let batch_size = throttle::batch_size(batch_size, rate);
    let mut rows = cfg.clickhouse.max_rows_per_query;
    if let Some(rate) = rate {
        rows = rows.min((rate * 30.0) as u64);
    }
    StreamShape {
        batch_size,
        rows_per_query: rows.max(u64::from(batch_size)),
        buffered_batches: 1,
    }
}

/// How a task whose job reached `status` ends.
fn exit_of(status: JobStatus) -> JobExit {
    match status {
        JobStatus::Completed => JobExit::Completed,
        JobStatus::Cancelled => JobExit::Cancelled,
        JobStatus::Failed => JobExit::Failed,
        JobStatus::Paused => JobExit::Paused,
        JobStatus::Queued | JobStatus::Running => JobExit::Stopped,
    }
}

/// Sleeps; true when `stop` fired first.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

/// Creates the job's producer, fencing any other producer of its transactional id; retries while Kafka is
/// unreachable (exponential backoff 0.5 s → 10 s), until `stop`.
async fn connect(
    ctx: &JobContext,
    job_id: &str,
    stop: &CancellationToken,
) -> ControlFlow<JobExit, TxnProducer> {
    let id = ctx.transactional_id(job_id);
    let cfg = ctx.producer_config();
    let attempt = || TxnProducer::new(&cfg, &id);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times();
    let retried = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(|e| !matches!(e, TxnError::Fenced))
        .notify(|e, _| warn!(error = %e, "cannot initialise the job's transactional producer; retrying"));
    tokio::select! {
        r = retried => match r {
            Ok(p) => Continue(p),
            Err(_) => Break(JobExit::Fenced),
        },
        _ = stop.cancelled() => Break(JobExit::Stopped),
    }
}

/// The job's latest checkpoint, read after its state partition has been read to its true end (see the module
/// docs); `Idle` when the job is unknown.
async fn load(
    ctx: &JobContext,
    job_id: &str,
    stop: &CancellationToken,
) -> ControlFlow<JobExit, Checkpoint> {
    let partition = ctx.records.state_partition_of(job_id);
    // Never from an older checkpoint: retried (each attempt waits up to twice the transaction timeout for
    // the transactions open on the partition to end) until it is read, or `stop`.
    let sync = || {
        ctx.state
            .sync_partition(partition, ctx.cfg.kafka.transaction_timeout() * 2)
    };
    let synced = sync
        .retry(
            ConstantBuilder::default()
                .with_delay(Duration::from_secs(1))
                .without_max_times(),
        )
        .sleep(tokio::time::sleep)
        .notify(
            |e, _| warn!(error = %e, "cannot read the job's state partition to its end; retrying"),
        );
    tokio::select! {
        r = synced => r.expect("retried without end"),
        _ = stop.cancelled() => return Break(JobExit::Stopped),
    }
    match ctx.state.checkpoint(job_id) {
        Some(cp) => Continue(cp),
        None => Break(JobExit::Idle),
    }
}
