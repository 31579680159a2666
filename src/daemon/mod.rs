//! The daemon (`reprocessor run`): the control-topic consumer, partition assignment → owned jobs, job tasks,
//! metrics, graceful shutdown. No per-row work happens here.
//!
//! A job belongs to the control partition its command arrived on; whoever is assigned that partition runs it.
//! - [`control`]: the command transaction of one control partition;
//! - [`jobs`]: the job tasks, reconciled with the state table on every change;
//! - this module: [`run`] and its event loop (assignments, commands, state changes, task exits, a tick).

mod control;
mod jobs;
mod plan;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::command::CommandOrigin;
use crate::config::Config;
use crate::job::JobStatus;
use crate::job::records::{Records, TopicLimits};
use crate::kafka::{KafkaLogContext, Role, client_config};
use crate::metrics::{Metrics, Readiness, StatusLabel};
use crate::runner::{JobContext, JobExit};
use crate::sink::ensure_topics;
use crate::source::Source;
use crate::state::{StateEvent, StateStore};
use control::{Control, Handled};
use jobs::Jobs;

/// Assignment changes of the control topic, forwarded from librdkafka's rebalance callback.
enum GroupEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// The control consumer's context: rebalance events to the daemon's loop, logs to `tracing`.
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

/// What woke the event loop.
enum Event {
    Group(GroupEvent),
    JobEnded(String, Result<JobExit, JoinError>),
    State(StateEvent),
    Command(CommandOrigin, Vec<u8>),
    Tick,
}

struct Daemon {
    cfg: Arc<Config>,
    ctx: Arc<JobContext>,
    consumer: Arc<ControlConsumer>,
    control: Control,
    jobs: Jobs,
    assigned: BTreeSet<i32>,
    shutdown: CancellationToken,
    readiness: Arc<Readiness>,
}

/// Runs the daemon until `shutdown` completes (the binary passes SIGTERM/SIGINT; tests pass their own
/// future). Errors at start name what is wrong (the metrics address, a topic, ClickHouse, Kafka).
pub async fn run(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (mut daemon, group_rx, state_rx) = Daemon::start(cfg).await?;
    // One listener for the whole run: a shutdown that arrives while the loop is busy (an assignment, a command
    // transaction being retried) is not lost, and whatever is retrying sees the token.
    let stop = daemon.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        info!("shutdown requested: no more commands; finishing in-flight batches");
        stop.cancel();
    });
    daemon.serve(group_rx, state_rx).await;
    daemon.stop().await;
    Ok(())
}

/// SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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

impl Daemon {
    /// Serves `/metrics`, makes sure the topics exist, connects to ClickHouse, loads the state topic,
    /// subscribes to the control topic and starts the HTTP API.
    async fn start(
        cfg: Config,
    ) -> anyhow::Result<(
        Daemon,
        mpsc::UnboundedReceiver<GroupEvent>,
        mpsc::UnboundedReceiver<StateEvent>,
    )> {
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
        // Records judge events and dead letters by the configured limits, or the broker's where smaller
        // (followed while the daemon runs); the rest of the daemon by the broker's at start.
        let configured_limits = TopicLimits::new(
            cfg.topics.output.max_message_bytes as usize,
            cfg.topics.dlq.max_message_bytes as usize,
        );
        let mut cfg = cfg;
        crate::sink::apply_broker_limits(&mut cfg).await;
        configured_limits.follow_broker(
            Some(cfg.topics.output.max_message_bytes as usize),
            Some(cfg.topics.dlq.max_message_bytes as usize),
        );
        let cfg = Arc::new(cfg);
        readiness.kafka.store(true, Ordering::Release);
        let source = Source::connect(&cfg.clickhouse)
            .await
            .context("cannot use ClickHouse")?
            .with_read_metrics(metrics.reads());
        readiness.clickhouse.store(true, Ordering::Release);
        let (state, state_rx) = StateStore::start(&cfg).await?;
        state.sync(cfg.kafka.state_load_timeout()).await?;
        readiness.state_loaded.store(true, Ordering::Release);
        info!(jobs = state.jobs().len(), "state topic loaded");

        let (group_tx, group_rx) = mpsc::unbounded_channel();
        let consumer: ControlConsumer = client_config(&cfg, Role::ControlConsumer)
            .create_with_context(ControlContext {
                events: group_tx,
                log: KafkaLogContext::default(),
            })
            .context("cannot create the control-topic consumer")?;
        consumer
            .subscribe(&[&cfg.topics.commands.name])
            .context("cannot subscribe to the control topic")?;

        let instance = cfg.instance();
        let mut records = Records::new(
            &cfg,
            state.partition_count(),
            source.sorting_key().clone(),
            instance.clone(),
        );
        records.limits = Arc::new(configured_limits);
        if let Some((_, n)) = crate::sink::topic_partitions(&cfg)
            .await?
            .into_iter()
            .find(|(name, _)| *name == cfg.topics.commands.name)
        {
            records.command_partitions = n;
        }
        let ctx = Arc::new(JobContext {
            cfg: cfg.clone(),
            source,
            state,
            metrics,
            permits: Arc::new(Semaphore::new(cfg.processing.concurrency as usize)),
            records,
            instance,
        });
        let shutdown = CancellationToken::new();
        // The HTTP API (when `api.address` is set) reads the state table loaded above.
        crate::api::serve(
            cfg.clone(),
            ctx.state.clone(),
            ctx.records.clone(),
            shutdown.clone(),
        )
        .await?;
        let daemon = Daemon {
            cfg: cfg.clone(),
            control: Control::new(ctx.clone()),
            jobs: Jobs::new(ctx.clone(), shutdown.clone()),
            ctx,
            consumer: Arc::new(consumer),
            assigned: BTreeSet::new(),
            shutdown,
            readiness,
        };
        info!(topic = %cfg.topics.commands.name, group = %cfg.kafka.consumer_group, "daemon started; waiting for commands");
        Ok((daemon, group_rx, state_rx))
    }

    /// The event loop, until shutdown.
    async fn serve(
        &mut self,
        mut group_rx: mpsc::UnboundedReceiver<GroupEvent>,
        mut state_rx: mpsc::UnboundedReceiver<StateEvent>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let consumer = self.consumer.clone();
        let stop = self.shutdown.clone();
        loop {
            let busy = !self.jobs.is_empty();
            let event = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(ev) = group_rx.recv() => Event::Group(ev),
                Some((job, exit)) = self.jobs.join_next(), if busy => Event::JobEnded(job, exit),
                Some(ev) = state_rx.recv() => Event::State(ev),
                msg = consumer.recv() => match msg {
                    Ok(m) => Event::Command(
                        CommandOrigin {
                            topic: m.topic().to_string(),
                            partition: m.partition(),
                            offset: m.offset(),
                        },
                        m.payload().unwrap_or_default().to_vec(),
                    ),
                    Err(e) => {
                        warn!(error = %e, "control-topic consumer error");
                        continue;
                    }
                },
                _ = tick.tick() => Event::Tick,
            };
            match event {
                Event::Group(ev) => self.on_group_event(ev).await,
                Event::JobEnded(job, exit) => {
                    self.jobs.ended(&job, &exit);
                    self.reconcile(Some(&job));
                }
                Event::State(StateEvent::Checkpoint(job)) => self.reconcile(Some(&job)),
                Event::State(StateEvent::Control(req)) => self.reconcile(Some(&req.job_id)),
                Event::Command(origin, payload) => self.on_command(origin, &payload).await,
                Event::Tick => self.on_tick(),
            }
        }
    }

    /// Starts the tasks of owned jobs that want one: of `job`, or of every job.
    fn reconcile(&mut self, job: Option<&str>) {
        let (assigned, consumer) = (&self.assigned, &self.consumer);
        let owned = |p: i32| assigned.contains(&p) && !consumer.assignment_lost();
        match job {
            Some(job) => self.jobs.reconcile(job, &owned),
            None => self.jobs.reconcile_all(&owned),
        }
    }

    async fn on_command(&mut self, origin: CommandOrigin, payload: &[u8]) {
        let (assigned, consumer) = (&self.assigned, &self.consumer);
        let owned = |p: i32| assigned.contains(&p) && !consumer.assignment_lost();
        let slots_full = self.jobs.len() >= self.cfg.processing.concurrency as usize;
        let handled = self
            .control
            .handle(
                consumer,
                &owned,
                &origin,
                payload,
                slots_full,
                &self.shutdown,
            )
            .await;
        if let Handled::Committed { job_id } | Handled::ReadBack { job_id } = handled {
            self.reconcile(Some(&job_id));
        }
    }

    async fn on_group_event(&mut self, ev: GroupEvent) {
        match ev {
            GroupEvent::Revoked(parts) => {
                info!(partitions = ?parts, "control partitions revoked");
                self.assigned.retain(|p| !parts.contains(p));
                self.control.forget(&parts);
                self.jobs.stop_partitions(&parts);
            }
            GroupEvent::Assigned(parts) => {
                info!(partitions = ?parts, "control partitions assigned");
                self.assigned.extend(parts.iter().copied());
                // Fence the previous owner's control transactions first, so that what they wrote is final
                // before the state table is read.
                for p in &parts {
                    if let Err(e) = self.control.producer(*p).await {
                        warn!(partition = p, error = %e, "cannot initialise the control producer yet");
                    }
                }
                if let Err(e) = self
                    .ctx
                    .state
                    .sync(self.cfg.kafka.state_load_timeout())
                    .await
                {
                    warn!(error = %e, "state topic not read to its end; owned jobs start as their checkpoints arrive");
                }
                self.reconcile(None);
            }
        }
    }

    fn on_tick(&mut self) {
        self.reconcile(None);
        let metrics = &self.ctx.metrics;
        let owned: Vec<_> = self
            .ctx
            .state
            .jobs()
            .into_iter()
            .filter(|cp| self.assigned.contains(&cp.owner_partition))
            .collect();
        for status in JobStatus::ALL {
            let n = owned.iter().filter(|cp| cp.status == status).count();
            metrics
                .jobs
                .get_or_create(&StatusLabel {
                    status: status.as_str(),
                })
                .set(n as i64);
        }
        *self.readiness.state_waits.lock().expect("readiness lock") = self.ctx.state.waits();
        let consumer = self.consumer.clone();
        let metrics = self.ctx.metrics.clone();
        let readiness = self.readiness.clone();
        let source = self.ctx.source.clone();
        let topic = self.cfg.topics.commands.name.clone();
        let assigned: Vec<i32> = self.assigned.iter().copied().collect();
        tokio::spawn(async move {
            let ok = source.ping().await.is_ok();
            readiness.clickhouse.store(ok, Ordering::Release);
            let lag =
                tokio::task::spawn_blocking(move || control_lag(&consumer, &topic, &assigned))
                    .await
                    .ok()
                    .flatten();
            readiness.kafka.store(lag.is_some(), Ordering::Release);
            if let Some(l) = lag {
                metrics.control_lag.set(l);
            }
        });
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let grace = Duration::from_secs(self.cfg.processing.shutdown_grace_secs);
        self.jobs.shutdown(grace).await;
        self.consumer.unsubscribe();
        info!("daemon stopped");
    }
}

/// Commands not yet handled on the assigned control partitions; `None` when Kafka does not answer.
fn control_lag(consumer: &ControlConsumer, topic: &str, assigned: &[i32]) -> Option<i64> {
    let position = consumer.position().ok();
    let mut lag = 0i64;
    for p in assigned {
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(2))
            .ok()?;
        let pos = position
            .as_ref()
            .and_then(|tpl| tpl.find_partition(topic, *p))
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(high);
        lag += (high - pos).max(0);
    }
    Some(lag)
}
