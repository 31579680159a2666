//! The daemon (`reprocessor run`): the control-topic consumer, partition assignment → resuming owned jobs,
//! job tasks, metrics, graceful shutdown. No per-row work happens here.
//!
//! Commands of one control partition are handled strictly in offset order, each in a short transaction of
//! the partition's control producer (`<prefix>-control-<partition>`) that also commits the command's offset
//! (`send_offsets_to_transaction`): an accepted command's first checkpoint and `accepted` result, a
//! rejection, a duplicate notice, or a control request. A job belongs to the control partition its command
//! arrived on; whoever is assigned that partition runs it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::command::{self, Command, CommandError, CommandOrigin, Limits, now_ms};
use crate::config::Config;
use crate::job::{
    Checkpoint, ControlRequest, Counters, JobStatus, ResultRecord, control_key, control_problem,
};
use crate::metrics::{Metrics, OutcomeLabel, Readiness, StatusLabel};
use crate::runner::{JobContext, JobExit, Topics, queue_for_slot, run_job};
use crate::sink::{
    KafkaLogContext, OutRecord, TxnError, TxnProducer, client_config, ensure_topics,
};
use crate::source::Source;
use crate::state::{StateEvent, StateStore};

/// Assignment changes of the control topic, forwarded from librdkafka's rebalance callback.
enum GroupEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

struct ControlContext {
    events: mpsc::UnboundedSender<GroupEvent>,
    log: KafkaLogContext,
}

impl ClientContext for ControlContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for ControlContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let _ = self.events.send(GroupEvent::Revoked(partitions_of(tpl)));
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let _ = self.events.send(GroupEvent::Assigned(partitions_of(tpl)));
        }
    }
}

type ControlConsumer = StreamConsumer<ControlContext>;

struct RunningJob {
    partition: i32,
    token: CancellationToken,
    handle: JoinHandle<()>,
}

struct Daemon {
    cfg: Arc<Config>,
    ctx: Arc<JobContext>,
    consumer: Arc<ControlConsumer>,
    control_producers: HashMap<i32, TxnProducer>,
    assigned: Vec<i32>,
    jobs: HashMap<String, RunningJob>,
    exits: mpsc::UnboundedSender<(String, JobExit)>,
    shutdown: CancellationToken,
    readiness: Arc<Readiness>,
}

/// Runs the daemon until SIGTERM/SIGINT. Errors at start name what is wrong (topic, ClickHouse, Kafka).
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let cfg = Arc::new(cfg);
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let addr = cfg
        .observability
        .metrics_address
        .parse()
        .expect("validated at load");
    let bound = crate::metrics::serve(addr, metrics.clone(), readiness.clone())
        .await
        .with_context(|| format!("cannot listen on observability.metrics_address {addr}"))?;
    info!(address = %bound, "metrics endpoint listening");

    ensure_topics(&cfg).await?;
    let cfg = {
        let mut c = (*cfg).clone();
        crate::sink::apply_broker_limits(&mut c).await;
        Arc::new(c)
    };
    readiness.kafka.store(true, Ordering::Release);
    let source = Source::connect(&cfg.clickhouse)
        .await
        .context("cannot use ClickHouse")?;
    readiness.clickhouse.store(true, Ordering::Release);
    let (state, mut state_events) = StateStore::start(&cfg).await?;
    state
        .sync(Duration::from_millis(cfg.kafka.operation_timeout_ms * 4))
        .await?;
    readiness.state_loaded.store(true, Ordering::Release);
    info!(jobs = state.jobs().len(), "state topic loaded");

    let (group_tx, mut group_rx) = mpsc::unbounded_channel();
    let mut cc = client_config(&cfg);
    cc.set("group.id", &cfg.kafka.consumer_group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            cfg.kafka.session_timeout_ms.to_string(),
        );
    if let Some(id) = &cfg.kafka.group_instance_id {
        cc.set("group.instance.id", id);
    }
    let consumer: ControlConsumer = cc
        .create_with_context(ControlContext {
            events: group_tx,
            log: KafkaLogContext::default(),
        })
        .context("cannot create the control-topic consumer")?;
    consumer
        .subscribe(&[&cfg.topics.commands.name])
        .context("cannot subscribe to the control topic")?;

    let ctx = Arc::new(JobContext {
        cfg: cfg.clone(),
        source,
        state,
        metrics,
        permits: Arc::new(Semaphore::new(cfg.processing.concurrency as usize)),
        topics: Topics::of(&cfg),
    });
    let (exits_tx, mut exits_rx) = mpsc::unbounded_channel();
    let mut d = Daemon {
        cfg: cfg.clone(),
        ctx,
        consumer: Arc::new(consumer),
        control_producers: HashMap::new(),
        assigned: Vec::new(),
        jobs: HashMap::new(),
        exits: exits_tx,
        shutdown: CancellationToken::new(),
        readiness,
    };
    info!(topic = %cfg.topics.commands.name, group = %cfg.kafka.consumer_group, "daemon started; waiting for commands");

    // One signal listener for the whole run: a signal that arrives while the loop is busy (an assignment, a
    // command transaction being retried) is not lost, and whatever is retrying sees the token.
    let stop = d.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown requested: no more commands; finishing in-flight batches");
        stop.cancel();
    });
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let consumer = d.consumer.clone();
    let stop = d.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(ev) = group_rx.recv() => d.on_group_event(ev).await,
            Some((job_id, exit)) = exits_rx.recv() => d.on_job_exit(&job_id, exit),
            Some(ev) = state_events.recv() => d.on_state_event(ev),
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let origin = CommandOrigin {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                    };
                    let payload = m.payload().unwrap_or_default().to_vec();
                    drop(m);
                    d.on_command(origin, &payload).await;
                }
                Err(e) => warn!(error = %e, "control-topic consumer error"),
            },
            _ = tick.tick() => d.on_tick(),
        }
    }
    d.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// What handling a command writes.
struct Handled {
    records: Vec<OutRecord>,
    outcome: &'static str,
    after: AfterCommit,
}

enum AfterCommit {
    Nothing,
    Accepted(Box<Checkpoint>),
    Control(ControlRequest),
}

impl Daemon {
    fn limits(&self) -> Limits {
        Limits {
            default_batch_size: self.cfg.processing.default_batch_size,
            max_batch_size: self.cfg.processing.max_batch_size,
        }
    }

    fn result_record(&self, r: &ResultRecord) -> OutRecord {
        OutRecord {
            topic: self.ctx.topics.results.clone(),
            key: r.job_id.clone(),
            value: r.to_json(),
            headers: vec![("status", r.status.clone())],
            tag: None,
        }
    }

    fn rejected(&self, e: &CommandError, origin: &CommandOrigin) -> Handled {
        warn!(job_id = %e.job_id, partition = origin.partition, offset = origin.offset, reason = %e.reason, "command rejected");
        let r = ResultRecord::about_command(&e.job_id, "rejected", &e.reason, origin, now_ms());
        Handled {
            records: vec![self.result_record(&r)],
            outcome: "rejected",
            after: AfterCommit::Nothing,
        }
    }

    /// Decides what a command writes. Pure apart from reading the state table.
    fn decide(&self, origin: &CommandOrigin, payload: &[u8]) -> Handled {
        let now = now_ms();
        let parsed = command::parse(payload, origin, self.limits(), now);
        if !self.cfg.enabled {
            let job_id = match &parsed {
                Ok(c) => c.job_id().to_string(),
                Err(e) => e.job_id.clone(),
            };
            return self.rejected(
                &CommandError {
                    job_id,
                    reason: "disabled".into(),
                },
                origin,
            );
        }
        match parsed {
            Err(e) => self.rejected(&e, origin),
            Ok(Command::Reprocess(spec)) => {
                if self.ctx.state.checkpoint(&spec.job_id).is_some() {
                    info!(job_id = %spec.job_id, "duplicate job id: nothing started");
                    let r = ResultRecord::about_command(
                        &spec.job_id,
                        "duplicate",
                        &format!(
                            "job `{}` already exists; a reprocess command with its id starts nothing",
                            spec.job_id
                        ),
                        origin,
                        now,
                    );
                    return Handled {
                        records: vec![self.result_record(&r)],
                        outcome: "duplicate",
                        after: AfterCommit::Nothing,
                    };
                }
                let cp = Checkpoint {
                    job_id: spec.job_id.clone(),
                    revision: 1,
                    status: JobStatus::Queued,
                    spec,
                    cursor: None,
                    counters: Counters::default(),
                    estimated_total: None,
                    owner_partition: origin.partition,
                    command_offset: origin.offset,
                    accepted_at_ms: now,
                    started_at_ms: None,
                    updated_at_ms: now,
                    completed_at_ms: None,
                    error: None,
                    control_handled: None,
                };
                let mut records = vec![
                    OutRecord {
                        topic: self.ctx.topics.state.clone(),
                        key: cp.job_id.clone(),
                        value: cp.encode(),
                        headers: Vec::new(),
                        tag: None,
                    },
                    // The command's coordinates let a submitter tell its own acceptance from an earlier one.
                    self.result_record(&ResultRecord {
                        topic: Some(origin.topic.clone()),
                        partition: Some(origin.partition),
                        offset: Some(origin.offset),
                        ..ResultRecord::new(&cp.job_id, "accepted", now)
                    }),
                ];
                // Every job task of this process either runs or waits for a running slot.
                if self.jobs.len() >= self.cfg.processing.concurrency as usize {
                    records.push(self.result_record(&ResultRecord::new(&cp.job_id, "queued", now)));
                }
                Handled {
                    records,
                    outcome: "accepted",
                    after: AfterCommit::Accepted(Box::new(cp)),
                }
            }
            Ok(Command::Control { action, job_id }) => {
                let Some(cp) = self.ctx.state.checkpoint(&job_id) else {
                    return self.rejected(
                        &CommandError {
                            job_id: job_id.clone(),
                            reason: format!("{}: unknown job `{job_id}`", action.as_str()),
                        },
                        origin,
                    );
                };
                let problem = control_problem(action, cp.status);
                if let Some(p) = problem {
                    return self.rejected(
                        &CommandError {
                            job_id,
                            reason: format!("{}: {p}", action.as_str()),
                        },
                        origin,
                    );
                }
                let req = ControlRequest {
                    request_id: origin.derived_job_id(),
                    job_id: job_id.clone(),
                    action,
                    at_ms: now,
                };
                info!(job_id = %job_id, action = action.as_str(), "control request recorded");
                Handled {
                    records: vec![OutRecord {
                        topic: self.ctx.topics.state.clone(),
                        key: control_key(&job_id),
                        value: req.encode(),
                        headers: Vec::new(),
                        tag: None,
                    }],
                    outcome: "control",
                    after: AfterCommit::Control(req),
                }
            }
        }
    }

    async fn control_producer(&mut self, partition: i32) -> Result<&TxnProducer, TxnError> {
        if !self.control_producers.contains_key(&partition) {
            let id = format!(
                "{}-control-{partition}",
                self.cfg.kafka.transactional_id_prefix
            );
            let p = TxnProducer::new(&self.cfg, &id).await?;
            self.control_producers.insert(partition, p);
        }
        Ok(&self.control_producers[&partition])
    }

    /// Whether the group has committed an offset past `origin` (so a transaction whose outcome was unknown
    /// did commit).
    async fn offset_committed(&self, origin: &CommandOrigin) -> bool {
        let consumer = self.consumer.clone();
        let o = origin.clone();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            let _ = tpl.add_partition(&o.topic, o.partition);
            let committed = consumer.committed_offsets(tpl, Duration::from_secs(10));
            let result = committed.ok().and_then(|c| {
                c.elements().first().and_then(|e| match e.offset() {
                    Offset::Offset(x) => Some(x > o.offset),
                    _ => None,
                })
            });
            result.unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    /// Handles one command; retries its transaction until it commits, so the partition never moves past an
    /// unhandled command.
    async fn on_command(&mut self, origin: CommandOrigin, payload: &[u8]) {
        // Read the state topic to its end first: a job accepted moments ago by another instance (a command
        // with the same job id on another partition) is then known, and this one is a duplicate. Two such
        // commands handled at the very same moment can still both be accepted; the job's transactional id
        // then lets only one of them publish.
        if let Err(e) = self.ctx.state.sync(Duration::from_secs(5)).await {
            warn!(error = %e, "state topic not read to its end before handling a command");
        }
        let mut wait = Duration::from_millis(200);
        let mut refused_reason: Option<String> = None;
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let handled = match &refused_reason {
                None => self.decide(&origin, payload),
                Some(reason) => {
                    let job_id = command::parse(payload, &origin, self.limits(), now_ms())
                        .map(|c| c.job_id().to_string())
                        .unwrap_or_else(|e| e.job_id);
                    self.rejected(
                        &CommandError {
                            job_id,
                            reason: reason.clone(),
                        },
                        &origin,
                    )
                }
            };
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(
                    &origin.topic,
                    origin.partition,
                    Offset::Offset(origin.offset + 1),
                )
                .expect("valid offset");
            let Some(group) = self.consumer.group_metadata() else {
                warn!("no consumer group metadata yet; retrying the command");
                tokio::time::sleep(wait).await;
                continue;
            };
            let result = match self.control_producer(origin.partition).await {
                Ok(p) => p.commit(&handled.records, Some((offsets, group))).await,
                Err(e) => Err(e),
            };
            let committed = match result {
                Ok(()) => true,
                Err(TxnError::Refused(refused)) => {
                    // The broker will never take these records (e.g. a checkpoint over the state topic's
                    // max.message.bytes): the command is rejected instead, so it cannot block its partition.
                    let names: Vec<String> = refused.into_iter().map(|(_, n)| n).collect();
                    warn!(partition = origin.partition, offset = origin.offset, errors = ?names, "the broker refused the command's records; rejecting the command");
                    refused_reason = Some(format!(
                        "the broker refused the records this command produces ({}); e.g. its checkpoint is larger than the state topic's max.message.bytes",
                        names.join(", ")
                    ));
                    continue;
                }
                Err(TxnError::Fenced) => {
                    warn!(
                        partition = origin.partition,
                        "control producer fenced: the partition moved to another instance"
                    );
                    self.control_producers.remove(&origin.partition);
                    return;
                }
                Err(e) => {
                    warn!(partition = origin.partition, offset = origin.offset, error = %e, "command transaction not committed; retrying");
                    self.control_producers.remove(&origin.partition);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                    // The outcome may have been a commit after all: the group's offset tells.
                    let _ = self
                        .ctx
                        .state
                        .sync(Duration::from_millis(self.cfg.kafka.operation_timeout_ms))
                        .await;
                    self.offset_committed(&origin).await
                }
            };
            if !committed {
                continue;
            }
            self.ctx
                .metrics
                .commands
                .get_or_create(&OutcomeLabel {
                    outcome: handled.outcome,
                })
                .inc();
            match handled.after {
                AfterCommit::Nothing => {}
                AfterCommit::Accepted(cp) => {
                    info!(job_id = %cp.job_id, tenant_id = %cp.spec.tenant_id, environment_id = %cp.spec.environment_id, partition = origin.partition, offset = origin.offset, "job accepted");
                    self.ctx.state.record_committed(&cp);
                    let id = cp.job_id.clone();
                    self.spawn_job(&id, cp.owner_partition);
                }
                AfterCommit::Control(req) => {
                    self.ctx.state.record_control(&req);
                    self.route_control(&req);
                }
            }
            return;
        }
    }

    fn spawn_job(&mut self, job_id: &str, partition: i32) {
        if self.jobs.contains_key(job_id) || self.shutdown.is_cancelled() {
            return;
        }
        let token = self.shutdown.child_token();
        let ctx = self.ctx.clone();
        let exits = self.exits.clone();
        let id = job_id.to_string();
        let t = token.clone();
        let slot = queue_for_slot(&self.ctx.permits);
        let handle = tokio::spawn(async move {
            use futures::FutureExt as _;
            let exit = match std::panic::AssertUnwindSafe(run_job(ctx, id.clone(), t, slot))
                .catch_unwind()
                .await
            {
                Ok(exit) => exit,
                Err(_) => {
                    error!(job_id = %id, "job task panicked; the job stays as its last checkpoint says until the daemon restarts");
                    JobExit::Panicked
                }
            };
            let _ = exits.send((id, exit));
        });
        self.jobs.insert(
            job_id.to_string(),
            RunningJob {
                partition,
                token,
                handle,
            },
        );
    }

    /// Starts the task of a job owned here that a control request concerns, if none is running (a running
    /// task honours the request itself between batches).
    fn route_control(&mut self, req: &ControlRequest) {
        if self.jobs.contains_key(&req.job_id) {
            return;
        }
        if let Some(cp) = self.ctx.state.checkpoint(&req.job_id)
            && self.assigned.contains(&cp.owner_partition)
            && !cp.status.is_final()
            && cp.control_handled.as_deref() != Some(req.request_id.as_str())
        {
            self.spawn_job(&req.job_id, cp.owner_partition);
        }
    }

    fn on_state_event(&mut self, ev: StateEvent) {
        if let StateEvent::Control(req) = ev {
            self.route_control(&req);
        }
    }

    fn on_job_exit(&mut self, job_id: &str, exit: JobExit) {
        self.jobs.remove(job_id);
        info!(job_id, exit = ?exit, "job task finished");
        // A task stopped by a revocation whose partition came back (the same member re-joined after a
        // session timeout) must run again: the assignment saw the old task still running and started none.
        if exit == JobExit::Stopped
            && let Some(cp) = self.ctx.state.checkpoint(job_id)
            && self.assigned.contains(&cp.owner_partition)
            && matches!(cp.status, JobStatus::Running | JobStatus::Queued)
        {
            info!(job_id, "resuming job");
            self.spawn_job(job_id, cp.owner_partition);
            return;
        }
        // A control request may have arrived while the task was ending.
        if let Some(req) = self.ctx.state.control(job_id) {
            self.route_control(&req);
        }
    }

    async fn on_group_event(&mut self, ev: GroupEvent) {
        match ev {
            GroupEvent::Revoked(parts) => {
                info!(partitions = ?parts, "control partitions revoked");
                self.assigned.retain(|p| !parts.contains(p));
                for p in &parts {
                    self.control_producers.remove(p);
                }
                for job in self.jobs.values().filter(|j| parts.contains(&j.partition)) {
                    job.token.cancel();
                }
            }
            GroupEvent::Assigned(parts) => {
                info!(partitions = ?parts, "control partitions assigned");
                for p in &parts {
                    if !self.assigned.contains(p) {
                        self.assigned.push(*p);
                    }
                }
                // Fence the previous owner's control transactions first, so the state read below cannot stop
                // short of a checkpoint hidden behind one of them.
                for p in &parts {
                    if let Err(e) = self.control_producer(*p).await {
                        warn!(partition = p, error = %e, "cannot initialise the control producer yet");
                    }
                }
                let timeout = Duration::from_millis(self.cfg.kafka.operation_timeout_ms * 4);
                if let Err(e) = self.ctx.state.sync(timeout).await {
                    warn!(error = %e, "state topic not read to its end; resuming from what was read");
                }
                let mut owned: Vec<Checkpoint> = self
                    .ctx
                    .state
                    .jobs()
                    .into_iter()
                    .filter(|cp| parts.contains(&cp.owner_partition) && !cp.status.is_final())
                    .filter(|cp| {
                        matches!(cp.status, JobStatus::Running | JobStatus::Queued)
                            || self.ctx.state.control(&cp.job_id).is_some_and(|r| {
                                cp.control_handled.as_deref() != Some(r.request_id.as_str())
                            })
                    })
                    .collect();
                owned.sort_by_key(|cp| (cp.accepted_at_ms, cp.command_offset));
                for cp in owned {
                    info!(job_id = %cp.job_id, status = cp.status.as_str(), "resuming job");
                    self.spawn_job(&cp.job_id, cp.owner_partition);
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        for cp in self.ctx.state.jobs() {
            *counts.entry(cp.status.as_str()).or_default() += 1;
        }
        for status in [
            "queued",
            "running",
            "paused",
            "completed",
            "failed",
            "cancelled",
        ] {
            self.ctx
                .metrics
                .jobs
                .get_or_create(&StatusLabel { status })
                .set(counts.get(status).copied().unwrap_or(0));
        }
        let consumer = self.consumer.clone();
        let metrics = self.ctx.metrics.clone();
        let readiness = self.readiness.clone();
        let source = self.ctx.source.clone();
        let topic = self.cfg.topics.commands.name.clone();
        let assigned = self.assigned.clone();
        tokio::spawn(async move {
            let ok = source.ping().await.is_ok();
            readiness.clickhouse.store(ok, Ordering::Release);
            let lag = tokio::task::spawn_blocking(move || {
                let mut lag = 0i64;
                let position = consumer.position().ok();
                for p in &assigned {
                    let Ok((_, high)) =
                        consumer.fetch_watermarks(&topic, *p, Duration::from_secs(2))
                    else {
                        return None;
                    };
                    let pos = position
                        .as_ref()
                        .and_then(|tpl| tpl.find_partition(&topic, *p))
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or(high);
                    lag += (high - pos).max(0);
                }
                Some(lag)
            })
            .await
            .ok()
            .flatten();
            readiness.kafka.store(lag.is_some(), Ordering::Release);
            if let Some(l) = lag {
                metrics.control_lag.set(l);
            }
        });
    }

    async fn shutdown(mut self) {
        self.shutdown.cancel();
        let grace = Duration::from_secs(self.cfg.processing.shutdown_grace_secs);
        let handles: Vec<(String, JoinHandle<()>)> =
            self.jobs.drain().map(|(id, j)| (id, j.handle)).collect();
        let all = futures::future::join_all(handles.into_iter().map(|(id, h)| async move {
            let _ = h.await;
            id
        }));
        match tokio::time::timeout(grace, all).await {
            Ok(ids) => info!(jobs = ids.len(), "all job tasks stopped"),
            Err(_) => error!(
                grace_secs = grace.as_secs(),
                "job tasks did not stop within the grace period; exiting (open transactions are aborted by the next owner or the transaction timeout)"
            ),
        }
        self.consumer.unsubscribe();
        info!("daemon stopped");
    }
}
