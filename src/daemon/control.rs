//! The command transaction (SPEC §3, §5): each command of a control partition is handled in offset order, in a
//! short transaction of the partition's control producer (`<prefix>-control-<partition>`) that writes its
//! verdict (a job's first checkpoint and `accepted`, a rejection, a duplicate notice, or a control request) and
//! commits the command's offset (`send_offsets_to_transaction`), so the offset never passes a command without a
//! verdict and never a verdict twice.
//!
//! Only the partition's owner may write it. Before every attempt the handler checks that the partition is
//! still assigned and the assignment not lost (a stall past the session timeout); a fenced producer or a
//! consumer-group generation error means the partition moved: the handler seeks back to the command (so that,
//! if the partition is still or again ours, it is handled again rather than skipped) and leaves it. After a
//! failure whose outcome is unknown it fences its own previous producer and reads the outcome back from the
//! group's committed offset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{ControlConsumer, plan};
use crate::command::{self, CommandOrigin, JobSpec, Limits, now_ms};
use crate::job::ResultRecord;
use crate::job::ResultStatus;
use crate::job::lifecycle::{self, CommandContext, Verdict};
use crate::job::records::OutRecord;
use crate::metrics::OutcomeLabel;
use crate::runner::JobContext;
use crate::sink::{TxnError, TxnProducer};

/// What a command comes to: its verdict, and for an accepted split job its parts (their commands travel in
/// the acceptance transaction, SPEC §5a).
struct Decision {
    verdict: Verdict,
    parts: Vec<JobSpec>,
}

/// How handling a command ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// This instance committed the verdict; the job it concerns, if any.
    Committed { job_id: String },
    /// A transaction whose outcome was unknown had committed (read back from the group's offset); what it
    /// wrote reaches the state table through the tail.
    ReadBack { job_id: String },
    /// The partition is no longer this instance's: nothing was written; its owner handles the command.
    Lost,
    /// Shutdown came first.
    Shutdown,
}

/// The control producers of this instance, one per assigned control partition.
pub struct Control {
    ctx: Arc<JobContext>,
    producers: HashMap<i32, TxnProducer>,
}

impl Control {
    pub fn new(ctx: Arc<JobContext>) -> Control {
        Control {
            ctx,
            producers: HashMap::new(),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            default_batch_size: self.ctx.cfg.processing.default_batch_size,
            max_batch_size: self.ctx.cfg.processing.max_batch_size,
        }
    }

    /// The partition's control producer, created (fencing the previous owner's and aborting its open
    /// transaction) when there is none.
    pub async fn producer(&mut self, partition: i32) -> Result<&TxnProducer, TxnError> {
        if !self.producers.contains_key(&partition) {
            let id = format!(
                "{}-control-{partition}",
                self.ctx.cfg.kafka.transactional_id_prefix
            );
            let p = TxnProducer::new(&self.ctx.cfg, &id).await?;
            self.producers.insert(partition, p);
        }
        Ok(&self.producers[&partition])
    }

    /// Drops the producers of revoked partitions.
    pub fn forget(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.producers.remove(p);
        }
    }

    /// Decides a command with what the state table knows, after reading the job's state partition to its
    /// true end (so a job accepted moments ago elsewhere is known), waiting at most
    /// `kafka.command_state_wait()` for transactions open on it, so that a transaction left open by a crashed
    /// producer cannot hold the control partition for its whole timeout.
    async fn decide(&self, origin: &CommandOrigin, payload: &[u8], slots_full: bool) -> Decision {
        let now = now_ms();
        let parsed = command::parse(payload, origin, self.limits(), now);
        if let Ok(c) = &parsed {
            // The job's state partition, and a part's split job's (which must list the part).
            let parent = match c {
                command::Command::Reprocess(spec) => spec.parent_job_id.as_deref(),
                _ => None,
            };
            let timeout = self.ctx.cfg.kafka.command_state_wait();
            for id in std::iter::once(c.job_id()).chain(parent) {
                let partition = self.ctx.records.state_partition_of(id);
                if let Err(e) = self.ctx.state.sync_partition(partition, timeout).await {
                    warn!(error = %e, "deciding the command with the state read so far");
                }
            }
        }
        let state = &self.ctx.state;
        let lookup = |id: &str| state.lookup(id);
        let ctx = CommandContext {
            enabled: self.ctx.cfg.enabled,
            slots_full,
            lookup: &lookup,
        };
        let at = lifecycle::Stamp {
            now_ms: now,
            instance: &self.ctx.instance,
        };
        let mut verdict = lifecycle::decide_command(parsed, &ctx, origin, at);
        let parts = match &mut verdict {
            Verdict::Accept { checkpoint, .. } if checkpoint.spec.is_split() => {
                let parts = plan::parts(&self.ctx, &checkpoint.spec).await;
                checkpoint.parts = parts.iter().map(|p| p.job_id.clone()).collect();
                parts
            }
            _ => Vec::new(),
        };
        Decision { verdict, parts }
    }

    /// The records of a decision: of its verdict, and a split job's parts' commands.
    fn records(&self, decision: &Decision, origin: &CommandOrigin) -> Vec<OutRecord> {
        let mut out = self.verdict_records(&decision.verdict, origin);
        let r = &self.ctx.records;
        out.extend(
            decision
                .parts
                .iter()
                .enumerate()
                .map(|(k, spec)| r.part_command(spec, k)),
        );
        out
    }

    /// The records of a verdict.
    fn verdict_records(&self, verdict: &Verdict, origin: &CommandOrigin) -> Vec<OutRecord> {
        let r = &self.ctx.records;
        let now = now_ms();
        let about = |job: &str, status, reason: Option<&str>| {
            r.result(&ResultRecord::about_command(
                job, status, reason, origin, now,
            ))
        };
        match verdict {
            Verdict::Accept { checkpoint, queued } => {
                let mut out = vec![
                    r.checkpoint(checkpoint),
                    about(&checkpoint.job_id, ResultStatus::Accepted, None),
                ];
                if *queued {
                    out.push(r.result(&ResultRecord::new(
                        &checkpoint.job_id,
                        ResultStatus::Queued,
                        now,
                    )));
                }
                out
            }
            Verdict::Reject { job_id, reason } => {
                warn!(
                    job_id,
                    partition = origin.partition,
                    offset = origin.offset,
                    reason,
                    "command rejected"
                );
                vec![about(job_id, ResultStatus::Rejected, Some(reason))]
            }
            Verdict::Duplicate { job_id, reason } => {
                info!(job_id, "duplicate job id: nothing started");
                vec![about(job_id, ResultStatus::Duplicate, Some(reason))]
            }
            Verdict::Control(req) => vec![r.control_request(req)],
        }
    }

    /// Handles one command of `origin.partition`; retries its transaction until it commits, the partition is
    /// lost, or `shutdown` fires. `owned(partition)` tells whether the partition is (still) this instance's.
    pub async fn handle(
        &mut self,
        consumer: &Arc<ControlConsumer>,
        owned: &(dyn Fn(i32) -> bool + Sync),
        origin: &CommandOrigin,
        payload: &[u8],
        slots_full: bool,
        shutdown: &CancellationToken,
    ) -> Handled {
        let partition = origin.partition;
        let mut decision = self.decide(origin, payload, slots_full).await;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .without_max_times()
            .build();
        loop {
            if shutdown.is_cancelled() {
                return Handled::Shutdown;
            }
            if !owned(partition) {
                info!(
                    partition,
                    offset = origin.offset,
                    "control partition no longer assigned here; its new owner handles the command"
                );
                return Handled::Lost;
            }
            let Some(group) = consumer.group_metadata() else {
                warn!("no consumer group metadata yet; retrying the command");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let records = self.records(&decision, origin);
            let result = match self.producer(partition).await {
                Ok(p) => p.commit(records, Some((next_offset(origin), group))).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return self.committed(decision.verdict, origin),
                Err(TxnError::Refused(refused)) => {
                    // The broker will never take these records (e.g. a checkpoint over the state topic's
                    // max.message.bytes): the command is rejected instead, so it cannot block its partition.
                    let names: Vec<String> = refused.into_iter().map(|(_, n)| n).collect();
                    self.producers.remove(&partition);
                    let verdict = Verdict::Reject {
                        job_id: verdict_job(&decision.verdict).to_string(),
                        reason: format!(
                            "the broker refused the records this command produces ({}); e.g. its checkpoint is larger than the state topic's max.message.bytes",
                            names.join(", ")
                        ),
                    };
                    decision = Decision {
                        verdict,
                        parts: Vec::new(),
                    };
                }
                Err(e @ (TxnError::Fenced | TxnError::GroupLost(_))) => {
                    warn!(partition, offset = origin.offset, error = %e, "control partition lost: leaving the command to its owner");
                    self.producers.remove(&partition);
                    seek_back(consumer, origin);
                    return Handled::Lost;
                }
                Err(e) => {
                    warn!(partition, offset = origin.offset, error = %e, "command transaction not committed or outcome unknown; retrying");
                    self.producers.remove(&partition);
                    match self
                        .outcome(consumer, owned, origin, shutdown, &mut delays)
                        .await
                    {
                        Outcome::Committed => {
                            info!(
                                partition,
                                offset = origin.offset,
                                "the command's transaction had committed"
                            );
                            return Handled::ReadBack {
                                job_id: verdict_job(&decision.verdict).to_string(),
                            };
                        }
                        Outcome::NotCommitted => {
                            decision = self.decide(origin, payload, slots_full).await
                        }
                        Outcome::Lost => {
                            seek_back(consumer, origin);
                            return Handled::Lost;
                        }
                        Outcome::Shutdown => return Handled::Shutdown,
                    }
                }
            }
        }
    }

    /// The outcome of a command transaction that failed with its outcome unknown, learned before anything is
    /// written again (a second attempt of a transaction that had committed would give the command a second
    /// verdict): a new producer fences the old one, so the outcome is final, and the group's committed offset
    /// tells it. Retried (after `delays`) until the offset is read, the partition is lost, or shutdown.
    async fn outcome(
        &mut self,
        consumer: &Arc<ControlConsumer>,
        owned: &(dyn Fn(i32) -> bool + Sync),
        origin: &CommandOrigin,
        shutdown: &CancellationToken,
        delays: &mut impl Iterator<Item = Duration>,
    ) -> Outcome {
        let partition = origin.partition;
        loop {
            let delay = delays.next().unwrap_or(Duration::from_secs(10));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Outcome::Shutdown,
            }
            if !owned(partition) {
                return Outcome::Lost;
            }
            let read = match self.producer(partition).await {
                Err(TxnError::Fenced) => return Outcome::Lost,
                Err(e) => Err(e.to_string()),
                Ok(_) => offset_committed(consumer, origin).await,
            };
            match Outcome::of(read) {
                Some(outcome) => return outcome,
                None => warn!(
                    partition,
                    offset = origin.offset,
                    "the outcome of the command's transaction is not known yet; asking again"
                ),
            }
        }
    }

    /// Applies a committed verdict locally (the tail reads it later) and counts it.
    fn committed(&self, verdict: Verdict, origin: &CommandOrigin) -> Handled {
        let (outcome, job_id) = match &verdict {
            Verdict::Accept { checkpoint, .. } => {
                info!(job_id = %checkpoint.job_id, tenant_id = %checkpoint.spec.tenant_id, environment_id = %checkpoint.spec.environment_id, partition = origin.partition, offset = origin.offset, "job accepted");
                self.ctx.state.record_committed(checkpoint, &[]);
                ("accepted", checkpoint.job_id.clone())
            }
            Verdict::Reject { job_id, .. } => ("rejected", job_id.clone()),
            Verdict::Duplicate { job_id, .. } => ("duplicate", job_id.clone()),
            Verdict::Control(req) => {
                info!(job_id = %req.job_id, action = req.action.as_str(), "control request recorded");
                self.ctx.state.record_control(req);
                ("control", req.job_id.clone())
            }
        };
        self.ctx
            .metrics
            .commands
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        Handled::Committed { job_id }
    }
}

fn verdict_job(v: &Verdict) -> &str {
    match v {
        Verdict::Accept { checkpoint, .. } => &checkpoint.job_id,
        Verdict::Reject { job_id, .. } | Verdict::Duplicate { job_id, .. } => job_id,
        Verdict::Control(req) => &req.job_id,
    }
}

/// The offset to commit for a handled command: the next one.
fn next_offset(origin: &CommandOrigin) -> TopicPartitionList {
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(
            &origin.topic,
            origin.partition,
            Offset::Offset(origin.offset + 1),
        )
        .expect("valid offset");
    offsets
}

/// Moves the consumer back to the command, so that it is read again if the partition is (still) ours.
fn seek_back(consumer: &ControlConsumer, origin: &CommandOrigin) {
    if let Err(e) = consumer.seek(
        &origin.topic,
        origin.partition,
        Offset::Offset(origin.offset),
        Duration::from_secs(5),
    ) {
        info!(partition = origin.partition, error = %e, "cannot seek back to the command (the partition is not assigned here)");
    }
}

/// What became of a command transaction whose outcome was unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The group's offset is past the command: the command has its verdict (this transaction's; or, were
    /// the partition lost meanwhile, its new owner's: either way it must not be decided again).
    Committed,
    /// The offset is not past the command: nothing was written; decide it again.
    NotCommitted,
    /// The partition is not this instance's any more.
    Lost,
    Shutdown,
}

impl Outcome {
    /// The outcome a read of the committed offset tells (`Ok(true)`: past the command); `None` when the read
    /// failed, which tells nothing (taking it for "not committed" decided a committed command again).
    fn of(read: Result<bool, String>) -> Option<Outcome> {
        match read {
            Ok(true) => Some(Outcome::Committed),
            Ok(false) => Some(Outcome::NotCommitted),
            Err(_) => None,
        }
    }
}

/// Whether the group has committed an offset past `origin` (so a transaction whose outcome was unknown did
/// commit); an error when the offset could not be read. With `isolation.level=read_committed` the fetch waits
/// for pending transactional offsets. No committed offset at all is "not past".
async fn offset_committed(
    consumer: &Arc<ControlConsumer>,
    origin: &CommandOrigin,
) -> Result<bool, String> {
    let (consumer, origin) = (consumer.clone(), origin.clone());
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&origin.topic, origin.partition);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let element = committed.elements().into_iter().next();
        match element.map(|e| (e.error(), e.offset())) {
            Some((Err(e), _)) => Err(e.to_string()),
            Some((Ok(()), Offset::Offset(x))) => Ok(x > origin.offset),
            Some((Ok(()), Offset::Invalid | Offset::Beginning | Offset::Stored)) | None => {
                Ok(false)
            }
            Some((Ok(()), other)) => Err(format!("unexpected committed offset {other:?}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn an_unread_offset_tells_no_outcome() {
        assert_eq!(Outcome::of(Ok(true)), Some(Outcome::Committed));
        assert_eq!(Outcome::of(Ok(false)), Some(Outcome::NotCommitted));
        assert_eq!(Outcome::of(Err("coordinator moving".into())), None);
    }
}
