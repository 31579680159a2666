//! `reprocessor cancel|pause|resume JOB`: refuses locally what the daemon would reject (the job's status in
//! the state topic, judged by [`control_problem`], the daemon's own rule), produces the command, then waits
//! briefly for the job's owner to apply it (or reject it).

use std::time::Duration;

use super::error::{CliError, CliResult, Exit};
use super::kafka::{Sent, load_state, produce_command, wait_for_result};
use super::{block_on, print_json};
use crate::command::{ControlAction, format_ms, now_ms};
use crate::config::Config;
use crate::job::lifecycle::control_problem;
use crate::job::{ResultRecord, ResultStatus};

/// How long to wait for the owner to apply the command (it does so between batches).
const APPLY_WAIT: Duration = Duration::from_secs(20);

/// Arguments of `cancel`, `pause` and `resume`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit codes: 0 sent (and applied, or still to be applied), 5 refused \
locally or rejected by the daemon, 1 other errors (all: `reprocessor --help`)."
)]
pub struct ControlArgs {
    /// The job id.
    pub job: String,
    /// JSON lines: where the command landed, then the daemon's answer record when it came within 20 s.
    #[arg(long)]
    pub json: bool,
}

/// The control command for `job_id`, validated like the daemon does.
pub fn control_command(
    cfg: &Config,
    action: ControlAction,
    job_id: &str,
) -> Result<Vec<u8>, CliError> {
    crate::control_client::control_command(cfg, action, job_id)
        .map_err(|e| CliError::Refused(format!("the command would be rejected: {}", e.reason)))
}

/// Refuses `action` when the daemon would reject it, by the job's checkpoint and pending requests.
async fn check(cfg: &Config, action: ControlAction, job_id: &str) -> Result<(), CliError> {
    let store = load_state(cfg).await?;
    let refused = |why: String| CliError::Refused(format!("{job_id}: refused: {why}"));
    let Some(cp) = store.checkpoint(job_id) else {
        return Err(refused(format!(
            "unknown job `{job_id}` (not in state topic `{}`)",
            cfg.topics.state.name
        )));
    };
    let lookup = |id: &str| store.lookup(id);
    match control_problem(action, &cp, &store.pending(job_id), &lookup) {
        Some(p) => Err(refused(p)),
        None => Ok(()),
    }
}

/// The result that shows `action` applied.
fn applied_status(action: ControlAction) -> ResultStatus {
    match action {
        ControlAction::Cancel => ResultStatus::Cancelled,
        ControlAction::Pause => ResultStatus::Paused,
        ControlAction::Resume => ResultStatus::Resumed,
    }
}

/// Runs `cancel`, `pause` or `resume`.
pub fn run(cfg: &Config, action: ControlAction, a: &ControlArgs) -> CliResult {
    let job = a.job.as_str();
    let bytes = control_command(cfg, action, job)?;
    block_on(check(cfg, action, job))?;
    // Results are stamped by the daemon's clock: allow for a little skew.
    let sent_at = format_ms(now_ms() - 2_000);
    let sent = block_on(produce_command(cfg, action.as_str(), job, &bytes))?;
    if a.json {
        print_json(&sent)?;
    } else {
        println!(
            "{action} {job}: sent (control partition {}, offset {})",
            sent.partition,
            sent.offset,
            action = action.as_str()
        );
    }
    let done = applied_status(action);
    let answer = wait_for_result(cfg, job, APPLY_WAIT, |r| {
        (r.status == ResultStatus::Rejected && sent.answered_by(r))
            || (r.status == done && r.at >= sent_at)
    })?;
    report(&sent, answer, a.json)
}

/// Shows the daemon's answer (if any came) and picks the exit status.
fn report(sent: &Sent, answer: Option<(ResultRecord, serde_json::Value)>, json: bool) -> CliResult {
    let job = &sent.job_id;
    let Some((r, raw)) = answer else {
        if !json {
            println!(
                "{job}: requested; the job's owner applies it after its current batch \
                 (`reprocessor status {job}`)"
            );
        }
        return Ok(Exit::Ok);
    };
    let rejected = r.status == ResultStatus::Rejected;
    if json {
        print_json(&raw)?;
    } else if rejected {
        println!(
            "{} {job}: rejected: {}",
            r.at,
            r.reason.as_deref().unwrap_or("")
        );
    } else {
        println!("{} {job}: {}", r.at, r.status);
    }
    Ok(if rejected { Exit::Rejected } else { Exit::Ok })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_commands_are_validated_like_the_daemon_does() {
        let cfg = Config::default();
        let e = control_command(&cfg, ControlAction::Pause, "bad id").unwrap_err();
        assert_eq!(e.exit(), Exit::Rejected);
        assert!(e.to_string().contains("job_id"), "{e}");
        let ok = control_command(&cfg, ControlAction::Resume, "good-id").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(v, json!({"type": "resume", "job_id": "good-id"}));
    }
}
