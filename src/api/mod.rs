//! The HTTP API (SPEC §11): the original design's `POST /events/raw/reprocess` and the job endpoints, served
//! by the daemon when `api.address` is set, for callers holding an API key scoped to one tenant.
//!
//! It is a second door to the control topic, not a second way of running jobs: every request becomes a
//! command (SPEC §3) validated by the same rules as the CLI's and the daemon's, produced keyed by its job id
//! ([`CommandProducer`]), and decided by whichever instance owns its control partition. A `POST` then waits
//! (at most `api.verdict_timeout_secs`) for the daemon's verdict on that very command on the results topic
//! (matched by its topic, partition and offset). Reads come from the daemon's own state table
//! ([`StateStore`]), in process.
//!
//! - [`auth`]: API keys (SHA-256 digests compared in constant time) and the environment of a request;
//! - [`request`]: a request body → a command;
//! - [`response`]: every answer's shape and [`response::ApiError`];
//! - [`routes`]: the handlers; [`openapi`]: `GET /openapi.json`.

pub mod auth;
pub mod openapi;
pub mod request;
pub mod response;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::control_client::{CommandProducer, Reader, Sent};
use crate::job::records::Records;
use crate::job::{Checkpoint, ControlRequest, ResultRecord, ResultStatus};
use crate::state::StateStore;
use auth::{Caller, Keys, Scope};

/// How long, after an `accepted` verdict, the next record of the job may take to say `queued` (both are
/// written in the same transaction, so it is read at once when it exists).
const QUEUED_WAIT: Duration = Duration::from_millis(300);

/// How long a read of a job the state table does not know waits for the state topic's end (a job accepted
/// moments ago by another instance).
const MISS_SYNC: Duration = Duration::from_secs(2);

/// What every handler shares.
pub struct Api {
    pub cfg: Arc<Config>,
    pub keys: Keys,
    pub state: StateStore,
    /// For cursors named by the table's sorting key, and a job's state partition.
    pub records: Records,
    pub producer: CommandProducer,
    /// The daemon's shutdown: verdict waits end with it.
    pub shutdown: CancellationToken,
}

/// The daemon's verdict on a `reprocess` command.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Accepted; `queued` when it waits for a running slot.
    Accepted {
        queued: bool,
    },
    Rejected(String),
    Duplicate(String),
    /// No verdict within the wait.
    Pending,
}

impl Verdict {
    /// The verdict a result record answering the command gives.
    pub fn of(r: &ResultRecord) -> Verdict {
        let reason = || r.reason.clone().unwrap_or_default();
        match r.status {
            ResultStatus::Rejected => Verdict::Rejected(reason()),
            ResultStatus::Duplicate => Verdict::Duplicate(reason()),
            _ => Verdict::Accepted { queued: false },
        }
    }
}

impl Api {
    /// The job `job_id` with its pending control requests, if `caller` may see it within `scope` (otherwise
    /// `None`, exactly as for a job that does not exist). A job the table does not know yet is looked up again
    /// once the state topic is read to its current end.
    pub async fn visible_job(
        &self,
        caller: &Caller<'_>,
        scope: &Scope,
        job_id: &str,
    ) -> Option<(Checkpoint, Vec<ControlRequest>)> {
        let found = match self.state.lookup(job_id) {
            Some(found) => found,
            None => {
                let _ = self.state.sync(MISS_SYNC).await;
                self.state.lookup(job_id)?
            }
        };
        caller.sees(&found.0, scope).then_some(found)
    }

    /// Produces a `reprocess` command and waits for the daemon's verdict on it. The results topic is read from
    /// its end as it was just before producing, so the verdict cannot be missed and no older record is read.
    pub async fn submit(&self, job_id: &str, command: &[u8]) -> anyhow::Result<(Sent, Verdict)> {
        let cfg = self.cfg.clone();
        let reader = tokio::task::spawn_blocking(move || {
            Reader::open(&cfg, &cfg.topics.results.name, Some(0))
        })
        .await
        .context("results reader task")??;
        let sent = self.producer.send("reprocess", job_id, command).await?;
        let deadline = Instant::now() + self.cfg.api.verdict_timeout();
        let stop = self.shutdown.clone();
        let waiting = sent.clone();
        let verdict =
            tokio::task::spawn_blocking(move || await_verdict(&reader, &waiting, deadline, &stop))
                .await
                .context("verdict task")??;
        Ok((sent, verdict))
    }
}

/// Reads the results topic until the verdict on `sent`, `deadline` or shutdown; after `accepted`, whether the
/// job was also `queued`.
fn await_verdict(
    reader: &Reader,
    sent: &Sent,
    deadline: Instant,
    stop: &CancellationToken,
) -> anyhow::Result<Verdict> {
    let job = sent.job_id.as_str();
    while Instant::now() < deadline && !stop.is_cancelled() {
        let slice = deadline.min(Instant::now() + Duration::from_millis(500));
        let Some((r, _)) = reader.wait_for(job, slice, |r| sent.answered_by(r))? else {
            continue;
        };
        let verdict = Verdict::of(&r);
        if verdict != (Verdict::Accepted { queued: false }) {
            return Ok(verdict);
        }
        let next = reader.wait_for(job, Instant::now() + QUEUED_WAIT, |_| true)?;
        let queued = next.is_some_and(|(r, _)| r.status == ResultStatus::Queued);
        return Ok(Verdict::Accepted { queued });
    }
    Ok(Verdict::Pending)
}

/// Starts the HTTP API when `api.address` is set: binds it (an error names the address) and serves until
/// `shutdown`. Returns the address bound, or `None` when the API is off.
pub async fn serve(
    cfg: Arc<Config>,
    state: StateStore,
    records: Records,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(address) = cfg.api.address.clone() else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on api.address {address}"))?;
    let bound = listener.local_addr()?;
    if cfg.api.keys.is_empty() {
        warn!("api.address is set but api.keys is empty: every request is refused with 401");
    }
    let api = Arc::new(Api {
        keys: Keys::new(&cfg.api.keys),
        producer: CommandProducer::new(&cfg)?,
        cfg,
        state,
        records,
        shutdown: shutdown.clone(),
    });
    let app = routes::router(api);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "HTTP API stopped");
        }
    });
    info!(address = %bound, "HTTP API listening");
    Ok(Some(bound))
}
