//! One job's loop: next page → transform → one transaction (events, dead letters, progress, checkpoint) →
//! throttle / control checks → next page. It touches no other job.
//!
//! Exactly-once rests on three facts: the checkpoint travels in the same transaction as the batch's events,
//! the job's transactional id is stable (creating the producer fences any zombie), and after any failure
//! whose outcome is unknown the runner rebuilds its producer and reloads the checkpoint from the state topic
//! before going on, so a batch is redone only if its transaction did not commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Level, debug, error, info, warn};

use crate::command::{ControlAction, now_ms};
use crate::config::Config;
use crate::job::{
    Checkpoint, ControlRequest, Counters, DeadLetter, DeadLetterStage, JobStatus, RawEventJson,
    ResultRecord,
};
use crate::metrics::Metrics;
use crate::sink::{OutRecord, TxnError, TxnProducer};
use crate::source::{Page, RawRow, Source};
use crate::state::StateStore;
use crate::transform::{self, ErrorStage, Outcome};

/// Everything job tasks share.
pub struct JobContext {
    pub cfg: Arc<Config>,
    pub source: Source,
    pub state: StateStore,
    pub metrics: Arc<Metrics>,
    /// Running-job slots (`processing.concurrency`); FIFO, so queued jobs start in acceptance order.
    pub permits: Arc<Semaphore>,
    pub topics: Topics,
}

/// Topic names, shared cheaply by every record.
#[derive(Clone)]
pub struct Topics {
    pub output: Arc<str>,
    pub state: Arc<str>,
    pub results: Arc<str>,
    pub dlq: Arc<str>,
}

impl Topics {
    /// From configuration.
    pub fn of(cfg: &Config) -> Topics {
        Topics {
            output: cfg.topics.output.name.as_str().into(),
            state: cfg.topics.state.name.as_str().into(),
            results: cfg.topics.results.name.as_str().into(),
            dlq: cfg.topics.dlq.name.as_str().into(),
        }
    }
}

/// How a job task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobExit {
    Completed,
    Failed,
    Cancelled,
    Paused,
    /// Another instance owns the job now.
    Fenced,
    /// Shutdown or partition revoked: the job stays `running` and resumes elsewhere or later.
    Stopped,
    /// Nothing to do (unknown, final, paused or failed without a resume request).
    Idle,
    /// The task panicked (a bug): the job keeps its last checkpoint and resumes at the next start.
    Panicked,
}

impl JobContext {
    /// The transactional id of a job's producer: `<prefix>-<job_id>`.
    pub fn transactional_id(&self, job_id: &str) -> String {
        format!("{}-{job_id}", self.cfg.kafka.transactional_id_prefix)
    }

    fn checkpoint_record(&self, cp: &Checkpoint) -> OutRecord {
        OutRecord {
            topic: self.topics.state.clone(),
            key: cp.job_id.clone(),
            value: cp.encode(),
            headers: Vec::new(),
            tag: None,
        }
    }

    fn result_record(&self, r: &ResultRecord) -> OutRecord {
        OutRecord {
            topic: self.topics.results.clone(),
            key: r.job_id.clone(),
            value: r.to_json(),
            headers: vec![("status", r.status.clone())],
            tag: None,
        }
    }

    fn result_of(&self, cp: &Checkpoint, status: &str) -> ResultRecord {
        let cursor = cp
            .cursor
            .as_ref()
            .map(|c| match self.source.sorting_key().cursor_json(c) {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            });
        ResultRecord::of_checkpoint(cp, status, cursor, now_ms())
    }
}

/// The control request a job has not honoured yet, if any.
fn pending_control(state: &StateStore, cp: &Checkpoint) -> Option<ControlRequest> {
    let req = state.control(&cp.job_id)?;
    (cp.control_handled.as_deref() != Some(req.request_id.as_str())).then_some(req)
}

/// Keeps a row when `xxh3_64(id) / 2^64 < rate` (SPEC §7): the same subset on every run.
pub fn sampled_in(id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    let h = xxhash_rust::xxh3::xxh3_64(id.as_bytes());
    (h as f64) / 18_446_744_073_709_551_616.0 < rate
}

/// A per-row log line kept until its batch commits (so a redone batch logs once).
struct RowLog {
    level: Level,
    row: usize,
    detail: String,
}

/// What one page becomes.
struct BuiltBatch {
    records: Vec<OutRecord>,
    delta: Counters,
    logs: Vec<RowLog>,
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
/// `slot` is the job's place in the running-slot queue ([`queue_for_slot`]).
pub async fn run_job(
    ctx: Arc<JobContext>,
    job_id: String,
    stop: CancellationToken,
    slot: Slot,
) -> JobExit {
    let mut runner = match Runner::start(ctx, job_id, stop).await {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let exit = runner.run(slot).await;
    info!(job_id = %runner.cp.job_id, exit = ?exit, "job task ended");
    exit
}

struct Runner {
    ctx: Arc<JobContext>,
    producer: TxnProducer,
    cp: Checkpoint,
    stop: CancellationToken,
    /// Rows read by this task, and when it started reading (for rates and ETA).
    run_rows: i64,
    run_published: i64,
    run_started: Instant,
    last_progress: Instant,
}

impl Runner {
    async fn start(
        ctx: Arc<JobContext>,
        job_id: String,
        stop: CancellationToken,
    ) -> Result<Runner, JobExit> {
        let producer = connect(&ctx, &job_id, &stop).await?;
        let cp = reload(&ctx, &job_id, &stop).await?;
        Ok(Runner {
            ctx,
            producer,
            cp,
            stop,
            run_rows: 0,
            run_published: 0,
            run_started: Instant::now(),
            last_progress: Instant::now(),
        })
    }

    /// Commits records about the job (no rows) with the new checkpoint `next`; on success adopts it.
    async fn commit_job_records(
        &mut self,
        mut next: Checkpoint,
        results: &[&str],
    ) -> Result<(), JobExit> {
        loop {
            next.revision = self.cp.revision + 1;
            next.updated_at_ms = now_ms();
            let mut records = vec![self.ctx.checkpoint_record(&next)];
            for status in results {
                records.push(self.ctx.result_record(&self.ctx.result_of(&next, status)));
            }
            match self.producer.commit(&records, None).await {
                Ok(()) => {
                    self.ctx.state.record_committed(&next);
                    self.cp = next;
                    return Ok(());
                }
                Err(e) => {
                    let base = self.cp.revision;
                    self.recover(e).await?;
                    if self.cp.revision > base {
                        // Our transaction did commit before the failure was reported.
                        return Ok(());
                    }
                }
            }
        }
    }

    /// After a failed commit: stop if fenced; otherwise wait, rebuild the producer (fencing the old one),
    /// and reload the checkpoint, which tells whether the transaction committed.
    async fn recover(&mut self, e: TxnError) -> Result<(), JobExit> {
        if let TxnError::Fenced = e {
            warn!(job_id = %self.cp.job_id, "producer fenced: another instance owns the job");
            return Err(JobExit::Fenced);
        }
        warn!(job_id = %self.cp.job_id, error = %e, "batch transaction not committed; reconnecting and reloading the checkpoint");
        if sleep_or_stop(&self.stop, Duration::from_secs(1)).await {
            return Err(JobExit::Stopped);
        }
        self.producer = connect(&self.ctx, &self.cp.job_id, &self.stop).await?;
        self.cp = reload(&self.ctx, &self.cp.job_id, &self.stop).await?;
        Ok(())
    }

    /// Honours the pending control request, if any. `Err` ends the task.
    async fn honour_control(&mut self) -> Result<(), JobExit> {
        let Some(req) = pending_control(&self.ctx.state, &self.cp) else {
            return Ok(());
        };
        let mut next = self.cp.clone();
        next.control_handled = Some(req.request_id.clone());
        let job_id = self.cp.job_id.clone();
        match req.action {
            ControlAction::Cancel => {
                next.status = JobStatus::Cancelled;
                next.completed_at_ms = Some(now_ms());
                self.commit_job_records(next, &["cancelled"]).await?;
                info!(job_id = %job_id, "job cancelled");
                self.log_summary("reprocessing job cancelled");
                Err(JobExit::Cancelled)
            }
            ControlAction::Pause => {
                if matches!(self.cp.status, JobStatus::Running | JobStatus::Queued) {
                    next.status = JobStatus::Paused;
                    self.commit_job_records(next, &["paused"]).await?;
                    info!(job_id = %job_id, "job paused");
                    Err(JobExit::Paused)
                } else {
                    self.commit_job_records(next, &[]).await
                }
            }
            ControlAction::Resume => {
                if matches!(self.cp.status, JobStatus::Paused | JobStatus::Failed) {
                    next.status = JobStatus::Queued;
                    next.error = None;
                    self.commit_job_records(next, &["resumed"]).await?;
                    info!(job_id = %job_id, "job resumed");
                    Ok(())
                } else {
                    self.commit_job_records(next, &[]).await
                }
            }
        }
    }

    async fn run(&mut self, slot: Slot) -> JobExit {
        match self.run_inner(slot).await {
            Ok(exit) | Err(exit) => exit,
        }
    }

    async fn run_inner(&mut self, slot: Slot) -> Result<JobExit, JobExit> {
        if self.cp.status.is_final() {
            return Ok(JobExit::Idle);
        }
        self.honour_control().await?;
        if matches!(self.cp.status, JobStatus::Paused | JobStatus::Failed) {
            return Ok(JobExit::Idle);
        }
        // Wait for a running slot; control requests are honoured while waiting.
        let mut slot = slot;
        let _permit = loop {
            tokio::select! {
                p = &mut slot => break p,
                _ = self.stop.cancelled() => return Err(JobExit::Stopped),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    self.honour_control().await?;
                }
            }
        };
        self.honour_control().await?;
        if self.cp.status == JobStatus::Queued {
            let mut next = self.cp.clone();
            next.status = JobStatus::Running;
            if next.started_at_ms.is_none() {
                next.started_at_ms = Some(now_ms());
            }
            if next.estimated_total.is_none() {
                match self.ctx.source.count(&next.spec.filters()).await {
                    Ok(n) => next.estimated_total = Some(n as i64),
                    Err(e) => return Err(self.fail(e).await),
                }
            }
            self.commit_job_records(next, &[]).await?;
            info!(job_id = %self.cp.job_id, estimated_total = ?self.cp.estimated_total, "job started");
        }
        self.run_started = Instant::now();
        self.last_progress = Instant::now();
        self.batches().await
    }

    /// The batch loop, with the next page read while the current one is committed.
    async fn batches(&mut self) -> Result<JobExit, JobExit> {
        let spec = self.cp.spec.clone();
        let filters = Arc::new(spec.filters());
        let batch_size = match spec.max_events_per_second {
            // Each transaction holds at most one second's worth of events, so no window sees a burst.
            Some(rate) => (spec.batch_size as f64).min(rate.ceil().max(1.0)) as u32,
            None => spec.batch_size,
        };
        let source = self.ctx.source.clone();
        let fetch = |cursor: Option<crate::source::Cursor>| {
            let source = source.clone();
            let filters = filters.clone();
            tokio::spawn(async move {
                source
                    .next_page(&filters, cursor.as_ref(), batch_size)
                    .await
            })
        };
        // Batches committed within the last throttle window: (when the commit returned, events published).
        let mut recent: std::collections::VecDeque<(Instant, i64)> = Default::default();
        let mut prefetch = Some(fetch(self.cp.cursor.clone()));
        let mut prefetch_base = self.cp.cursor.clone();
        loop {
            if self.stop.is_cancelled() {
                return Ok(JobExit::Stopped);
            }
            self.honour_control().await?;
            let batch_started = Instant::now();
            // A prefetched page is valid only if it was read from where the checkpoint stands now.
            let handle = match prefetch.take() {
                Some(h) if prefetch_base == self.cp.cursor => h,
                Some(h) => {
                    h.abort();
                    fetch(self.cp.cursor.clone())
                }
                None => fetch(self.cp.cursor.clone()),
            };
            let page: Page = tokio::select! {
                r = handle => match r.expect("page task does not panic") {
                    Ok(p) => p,
                    Err(e) => return Err(self.fail(e).await),
                },
                _ = self.stop.cancelled() => return Ok(JobExit::Stopped),
            };
            if page.rows.is_empty() {
                return self.complete().await;
            }
            if !page.done {
                prefetch = Some(fetch(page.cursor.clone()));
                prefetch_base = page.cursor.clone();
            }
            if let Some(rate) = spec.max_events_per_second {
                self.throttle_window(&mut recent, rate, page.rows.len() as i64)
                    .await?;
            }
            let base_revision = self.cp.revision;
            let delta = self.commit_page(&page).await?;
            if spec.max_events_per_second.is_some() {
                recent.push_back((Instant::now(), delta.published));
            }
            if self.cp.revision == base_revision || self.cp.cursor != page.cursor {
                // Reloaded to an older checkpoint: the page is read again from there.
                continue;
            }
            let elapsed = batch_started.elapsed().as_secs_f64();
            self.ctx.metrics.record_batch(&delta, elapsed);
            if elapsed > 0.0 {
                self.ctx
                    .metrics
                    .rows_per_second
                    .set(delta.found as f64 / elapsed);
            }
            if page.done {
                return self.complete().await;
            }
            if let Some(rate) = spec.max_events_per_second {
                let due = seconds(self.run_published as f64 / rate);
                let wait = due.saturating_sub(self.run_started.elapsed());
                self.wait_between_batches(wait).await?;
            }
        }
    }

    /// Waits (between transactions) until publishing up to `next` more events cannot put more than
    /// `rate` × 10 s into any 10-second window (SPEC: the rate is measured over any 10-second window).
    /// The pacing by average rate alone can let an 11th one-second batch into the window that starts at the
    /// first batch when later pages are prefetched. `Err` when the job stops or is paused or cancelled while
    /// waiting.
    async fn throttle_window(
        &mut self,
        recent: &mut std::collections::VecDeque<(Instant, i64)>,
        rate: f64,
        next: i64,
    ) -> Result<(), JobExit> {
        let window = seconds((10.0f64).max(next as f64 / rate));
        let budget = (rate * window.as_secs_f64()).floor() as i64;
        loop {
            while recent.front().is_some_and(|(t, _)| t.elapsed() >= window) {
                recent.pop_front();
            }
            let used: i64 = recent.iter().map(|(_, n)| n).sum();
            if used + next <= budget || recent.is_empty() {
                return Ok(());
            }
            let (oldest, _) = recent.front().copied().expect("not empty");
            let wait = window.saturating_sub(oldest.elapsed()) + Duration::from_millis(1);
            self.wait_between_batches(wait).await?;
        }
    }

    /// Sleeps between two transactions (throttling), honouring control requests and `stop` at least every
    /// half second, so a throttled job is paused or cancelled as promptly as a running one.
    async fn wait_between_batches(&mut self, wait: Duration) -> Result<(), JobExit> {
        let until = Instant::now() + wait.min(Duration::from_secs(365 * 86_400));
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if sleep_or_stop(&self.stop, left.min(Duration::from_millis(500))).await {
                return Err(JobExit::Stopped);
            }
            self.honour_control().await?;
        }
    }

    /// Builds and commits one page; redoes it with refused rows dead-lettered; recovers from other failures.
    /// Returns the committed counters delta (zero when recovery reloaded an older checkpoint).
    async fn commit_page(&mut self, page: &Page) -> Result<Counters, JobExit> {
        let mut refused: HashMap<usize, String> = HashMap::new();
        loop {
            let batch_no = self.cp.counters.processed_batches;
            let mut built = self.build(&page.rows, batch_no, &refused);
            let mut next = self.cp.clone();
            next.counters.add(&built.delta);
            next.cursor = page.cursor.clone();
            next.revision = self.cp.revision + 1;
            next.updated_at_ms = now_ms();
            let mut records = std::mem::take(&mut built.records);
            let progress_due = self.last_progress.elapsed()
                >= Duration::from_secs(self.ctx.cfg.processing.progress_interval_secs);
            if progress_due {
                let mut r = self.ctx.result_of(&next, "progress");
                let secs = self.run_started.elapsed().as_secs_f64().max(0.001);
                let rate = (self.run_rows + built.delta.found) as f64 / secs;
                r.rows_per_second = Some((rate * 10.0).round() / 10.0);
                if let Some(total) = next.estimated_total {
                    let left = (total - next.counters.found).max(0) as f64;
                    r.eta_seconds = Some(if rate > 0.0 {
                        (left / rate).round()
                    } else {
                        0.0
                    });
                }
                records.push(self.ctx.result_record(&r));
            }
            records.push(self.ctx.checkpoint_record(&next));
            match self.producer.commit(&records, None).await {
                Ok(()) => {
                    self.ctx.state.record_committed(&next);
                    self.cp = next;
                    self.run_rows += built.delta.found;
                    self.run_published += built.delta.published;
                    if progress_due {
                        self.last_progress = Instant::now();
                    }
                    self.emit_logs(&page.rows, batch_no, &built);
                    return Ok(built.delta);
                }
                Err(TxnError::Refused(list)) if list.iter().all(|(tag, _)| tag.is_some()) => {
                    for (tag, name) in list {
                        warn!(job_id = %self.cp.job_id, batch = batch_no, batch_position = tag.unwrap_or(0) + 1, error = %name, "broker refused a record; redoing the batch with it dead-lettered");
                        refused.insert(tag.expect("checked"), name);
                    }
                }
                Err(TxnError::Refused(list)) => {
                    let names: Vec<String> = list.into_iter().map(|(_, n)| n).collect();
                    return Err(self
                        .fail(format!(
                            "the broker refused a checkpoint or result record: {}",
                            names.join(", ")
                        ))
                        .await);
                }
                Err(e) => {
                    let base = self.cp.revision;
                    self.recover(e).await?;
                    if self.cp.revision > base && self.cp.cursor == page.cursor {
                        // It had committed after all.
                        self.run_rows += built.delta.found;
                        self.run_published += built.delta.published;
                        self.emit_logs(&page.rows, batch_no, &built);
                        return Ok(built.delta);
                    }
                    return Ok(Counters::default());
                }
            }
        }
    }

    /// Transforms a page into records and counters. `refused` holds rows the broker refused on an earlier
    /// attempt (position → librdkafka error name): they are dead-lettered instead of published.
    fn build(
        &self,
        rows: &[RawRow],
        batch_no: i64,
        refused: &HashMap<usize, String>,
    ) -> BuiltBatch {
        let spec = &self.cp.spec;
        let cfg = &self.ctx.cfg;
        let topics = &self.ctx.topics;
        let dry = spec.dry_run;
        let max_event = cfg.topics.output.max_message_bytes as usize;
        let mut records = Vec::with_capacity(rows.len() + 2);
        let mut delta = Counters {
            processed_batches: 1,
            ..Default::default()
        };
        let mut logs = Vec::new();
        let at = crate::command::format_ms(now_ms());
        let debug_on = tracing::enabled!(Level::DEBUG);
        for (i, row) in rows.iter().enumerate() {
            delta.found += 1;
            if !sampled_in(&row.id, spec.sample_rate) {
                delta.sampled_out += 1;
                continue;
            }
            let dead =
                |stage: DeadLetterStage, reason: &str, message: String| -> (DeadLetter, RowLog) {
                    let level = match stage {
                        DeadLetterStage::Validation => Level::INFO,
                        DeadLetterStage::Transformation => Level::WARN,
                        DeadLetterStage::Publish => Level::ERROR,
                    };
                    (
                        DeadLetter {
                            job_id: spec.job_id.clone(),
                            batch: batch_no,
                            batch_position: i as i64 + 1,
                            stage,
                            reason: reason.to_string(),
                            message: message.clone(),
                            raw_event: RawEventJson::of(row, usize::MAX),
                            at: at.clone(),
                        },
                        RowLog {
                            level,
                            row: i,
                            detail: if stage == DeadLetterStage::Validation {
                                reason.to_string()
                            } else {
                                format!("{reason}: {message}")
                            },
                        },
                    )
                };
            let outcome = if let Some(name) = refused.get(&i) {
                Err(dead(
                    DeadLetterStage::Publish,
                    name,
                    format!("the broker refused the event: {name}"),
                ))
            } else {
                match transform::transform(&row.payload, &row.tenant_id, &row.environment_id) {
                    Outcome::Event(ev) => {
                        let rec = OutRecord {
                            topic: topics.output.clone(),
                            key: ev.key(&row.tenant_id),
                            headers: ev.headers(&row.tenant_id, &row.environment_id).into(),
                            value: ev.json.into_bytes(),
                            tag: Some(i),
                        };
                        if rec.wire_size() > max_event {
                            Err(dead(
                                DeadLetterStage::Publish,
                                "too_large",
                                format!(
                                    "event of {} bytes exceeds max.message.bytes {} of topic {}",
                                    rec.wire_size(),
                                    max_event,
                                    topics.output
                                ),
                            ))
                        } else {
                            Ok(rec)
                        }
                    }
                    Outcome::Dropped(reason) => Err(dead(
                        DeadLetterStage::Validation,
                        reason.code(),
                        format!("validation failed: {}", reason.code()),
                    )),
                    Outcome::Error(e) => match e.stage {
                        ErrorStage::Encode => {
                            Err(dead(DeadLetterStage::Publish, "encode", e.message))
                        }
                        stage => Err(dead(
                            DeadLetterStage::Transformation,
                            stage.code(),
                            e.message,
                        )),
                    },
                }
            };
            match outcome {
                Ok(rec) => {
                    delta.published += 1;
                    if debug_on {
                        logs.push(RowLog {
                            level: Level::DEBUG,
                            row: i,
                            detail: String::new(),
                        });
                    }
                    if !dry {
                        records.push(rec);
                    }
                }
                Err((dl, log)) => {
                    match dl.stage {
                        DeadLetterStage::Validation => delta.dropped += 1,
                        DeadLetterStage::Transformation => delta.transformation_errors += 1,
                        DeadLetterStage::Publish => delta.failed += 1,
                    }
                    logs.push(log);
                    if !dry {
                        records.push(self.dead_letter_record(dl, row));
                    }
                }
            }
        }
        BuiltBatch {
            records,
            delta,
            logs,
        }
    }

    /// The dead-letter record of a row, its payload cut when the record would exceed the topic's limit.
    fn dead_letter_record(&self, mut dl: DeadLetter, row: &RawRow) -> OutRecord {
        let cfg = &self.ctx.cfg;
        let limit = cfg.topics.dlq.max_message_bytes as usize;
        let headers = vec![
            ("job_id", dl.job_id.clone()),
            ("stage", dl.stage.as_str().to_string()),
            ("reason", dl.reason.clone()),
        ];
        let mut value = dl.to_json();
        let mut max_payload = cfg.processing.dlq_max_payload_bytes;
        while value.len() + crate::sink::RECORD_OVERHEAD_BYTES + 512 > limit && max_payload > 0 {
            dl.raw_event = RawEventJson::of(row, max_payload);
            value = dl.to_json();
            max_payload /= 2;
        }
        OutRecord {
            topic: self.ctx.topics.dlq.clone(),
            key: row.id.clone(),
            value,
            headers,
            tag: None,
        }
    }

    fn emit_logs(&self, rows: &[RawRow], batch_no: i64, built: &BuiltBatch) {
        let job_id = &self.cp.job_id;
        for l in &built.logs {
            let row = &rows[l.row];
            let ts = crate::command::format_ms(row.timestamp_ms);
            let pos = l.row + 1;
            match l.level {
                Level::DEBUG => {
                    debug!(job_id = %job_id, raw_event_id = %row.id, external_customer_id = %row.external_customer_id, event_name = %row.event_name, timestamp = %ts, batch = batch_no, batch_position = pos, "published transformed event")
                }
                Level::INFO => {
                    info!(job_id = %job_id, raw_event_id = %row.id, external_customer_id = %row.external_customer_id, event_name = %row.event_name, timestamp = %ts, batch = batch_no, batch_position = pos, reason = %l.detail, "validation failed - event dropped")
                }
                Level::WARN => {
                    warn!(job_id = %job_id, raw_event_id = %row.id, external_customer_id = %row.external_customer_id, event_name = %row.event_name, timestamp = %ts, batch = batch_no, batch_position = pos, error = %l.detail, "transformation error - event skipped")
                }
                _ => {
                    error!(job_id = %job_id, raw_event_id = %row.id, external_customer_id = %row.external_customer_id, event_name = %row.event_name, timestamp = %ts, batch = batch_no, batch_position = pos, error = %l.detail, "failed to publish transformed event")
                }
            }
        }
        let d = &built.delta;
        info!(
            job_id = %job_id,
            batch = batch_no,
            batch_size = d.found,
            batch_published = d.published,
            batch_dropped = d.dropped,
            batch_transform_errors = d.transformation_errors,
            batch_publish_failed = d.failed,
            batch_sampled_out = d.sampled_out,
            dry_run = self.cp.spec.dry_run,
            "batch processing complete"
        );
    }

    fn log_summary(&self, message: &'static str) {
        let c = &self.cp.counters;
        info!(
            job_id = %self.cp.job_id,
            status = self.cp.status.as_str(),
            total_events_found = c.found,
            total_events_published = c.published,
            total_events_dropped = c.dropped,
            total_transformation_errors = c.transformation_errors,
            total_events_failed = c.failed,
            total_events_sampled_out = c.sampled_out,
            processed_batches = c.processed_batches,
            success_rate_percent = c.success_rate_percent(),
            dry_run = self.cp.spec.dry_run,
            "{message}"
        );
    }

    async fn complete(&mut self) -> Result<JobExit, JobExit> {
        let mut next = self.cp.clone();
        next.status = JobStatus::Completed;
        next.completed_at_ms = Some(now_ms());
        self.commit_job_records(next, &["completed"]).await?;
        self.log_summary("reprocessing job completed");
        Ok(JobExit::Completed)
    }

    /// Ends the job as `failed`, keeping its cursor so a `resume` continues from it.
    async fn fail(&mut self, e: impl std::fmt::Display) -> JobExit {
        error!(job_id = %self.cp.job_id, error = %e, "reprocessing job failed");
        let mut next = self.cp.clone();
        next.status = JobStatus::Failed;
        next.error = Some(e.to_string());
        match self.commit_job_records(next, &["failed"]).await {
            Ok(()) => {
                self.log_summary("reprocessing job failed");
                JobExit::Failed
            }
            Err(exit) => exit,
        }
    }
}

/// A duration of `secs` seconds, saturating at one year (a rate so low that the wait overflows `Duration`
/// waits as good as forever instead of panicking).
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.min(365.0 * 86_400.0)).unwrap_or(Duration::ZERO)
}

/// Sleeps; true when `stop` fired first.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

/// Creates the job's producer (fencing any zombie), retrying while Kafka is unreachable.
async fn connect(
    ctx: &JobContext,
    job_id: &str,
    stop: &CancellationToken,
) -> Result<TxnProducer, JobExit> {
    let id = ctx.transactional_id(job_id);
    let mut wait = Duration::from_millis(500);
    loop {
        match TxnProducer::new(&ctx.cfg, &id).await {
            Ok(p) => return Ok(p),
            Err(TxnError::Fenced) => return Err(JobExit::Fenced),
            Err(e) => {
                warn!(job_id, error = %e, "cannot initialise the job's transactional producer; retrying");
                if sleep_or_stop(stop, wait).await {
                    return Err(JobExit::Stopped);
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Reads the state topic to its end and returns the job's latest checkpoint.
async fn reload(
    ctx: &JobContext,
    job_id: &str,
    stop: &CancellationToken,
) -> Result<Checkpoint, JobExit> {
    let timeout = Duration::from_millis(ctx.cfg.kafka.operation_timeout_ms * 2);
    loop {
        match ctx.state.sync(timeout).await {
            Ok(()) => break,
            Err(e) => {
                warn!(job_id, error = %e, "cannot read the state topic to its end; retrying");
                if sleep_or_stop(stop, Duration::from_secs(1)).await {
                    return Err(JobExit::Stopped);
                }
            }
        }
    }
    ctx.state.checkpoint(job_id).ok_or(JobExit::Idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_is_deterministic_and_close_to_the_rate() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("evt-{i}")).collect();
        let kept: Vec<&String> = ids.iter().filter(|id| sampled_in(id, 0.25)).collect();
        let again: Vec<&String> = ids.iter().filter(|id| sampled_in(id, 0.25)).collect();
        assert_eq!(kept, again);
        let share = kept.len() as f64 / ids.len() as f64;
        assert!((0.23..0.27).contains(&share), "{share}");
        assert!(ids.iter().all(|id| sampled_in(id, 1.0)));
        // A smaller rate keeps a subset of a larger one.
        assert!(
            ids.iter()
                .filter(|id| sampled_in(id, 0.1))
                .all(|id| sampled_in(id, 0.25))
        );
    }
}
