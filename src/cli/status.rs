//! `reprocessor status [JOB]`: the jobs of the state topic, newest first, as a table (or JSON lines, one job
//! per line), or one job in full (key–value lines, or one JSON object).

use serde_json::{Value, json};

use super::error::{CliError, CliResult, Exit};
use super::kafka::load_state;
use super::render::{self, cell, count};
use super::{block_on, print_json};
use crate::command::{format_ms, now_ms};
use crate::config::Config;
use crate::job::{Checkpoint, ControlRequest};

/// `status`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Show this job in full.
    pub job: Option<String>,
    /// JSON: one object for a job; for the table, one object per job per line (JSON lines).
    #[arg(long)]
    pub json: bool,
}

/// The cursor of a checkpoint, named by column (the daemon's sorting key is not known here: `event_name` is
/// shown when the cursor carries one).
fn cursor_json(cp: &Checkpoint) -> Value {
    cp.cursor.as_ref().map_or(Value::Null, |c| c.to_json())
}

/// Who runs the job, as `status` shows it: the instance that last wrote its checkpoint and the control
/// partition its command arrived on, whose assignee owns it (SPEC §5, §5a).
pub fn owner_text(cp: &Checkpoint) -> String {
    match &cp.instance {
        Some(i) => format!("{i} (partition {})", cp.owner_partition),
        None => format!("partition {}", cp.owner_partition),
    }
}

/// The jobs in the order `status` lists them: most recently accepted first, each split job's parts right
/// after it in part order (parts whose split job is not in the list stay where their time puts them).
pub fn listing_order(mut jobs: Vec<Checkpoint>) -> Vec<Checkpoint> {
    jobs.sort_by_key(|cp| std::cmp::Reverse((cp.accepted_at_ms, cp.command_offset)));
    let parents: std::collections::HashSet<String> = jobs
        .iter()
        .filter(|cp| !cp.parts.is_empty())
        .map(|cp| cp.job_id.clone())
        .collect();
    let (parts, top): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|cp| {
        cp.spec
            .parent_job_id
            .as_ref()
            .is_some_and(|p| parents.contains(p))
    });
    let mut parts: std::collections::HashMap<String, Checkpoint> = parts
        .into_iter()
        .map(|cp| (cp.job_id.clone(), cp))
        .collect();
    let mut out = Vec::new();
    for cp in top {
        let ids = cp.parts.clone();
        out.push(cp);
        out.extend(ids.iter().filter_map(|id| parts.remove(id)));
    }
    out
}

/// One job in full, as `status JOB --json` prints it.
pub fn job_json(cp: &Checkpoint, pending: &[ControlRequest]) -> Value {
    let s = &cp.spec;
    let c = &cp.counters;
    let pending: Vec<Value> = pending
        .iter()
        .map(|r| json!({"action": r.action.as_str(), "at": format_ms(r.at_ms), "request_id": r.request_id}))
        .collect();
    json!({
        "job_id": cp.job_id,
        "status": cp.status.as_str(),
        "tenant_id": s.tenant_id,
        "environment_id": s.environment_id,
        "command": {
            "external_customer_ids": s.external_customer_ids,
            "event_names": s.event_names,
            "event_ids": s.event_ids,
            "start_date": format_ms(s.start_ms),
            "end_date": format_ms(s.end_ms),
            "batch_size": s.batch_size,
            "mode": match s.mode { crate::source::Mode::All => "all", crate::source::Mode::Pending => "pending" },
            "dry_run": s.dry_run,
            "sample_rate": s.sample_rate,
            "max_events_per_second": s.max_events_per_second,
            "parallelism": s.parallelism,
            "parent_job_id": s.parent_job_id,
            "external_customer_id_from": s.external_customer_id_from,
            "external_customer_id_to": s.external_customer_id_to,
        },
        "parts": cp.parts,
        "instance": cp.instance,
        "cursor": cursor_json(cp),
        "total_events_found": c.found,
        "total_events_published": c.published,
        "total_events_dropped": c.dropped,
        "total_transformation_errors": c.transformation_errors,
        "total_events_failed": c.failed,
        "total_events_sampled_out": c.sampled_out,
        "processed_batches": c.processed_batches,
        "success_rate_percent": (c.success_rate_percent() * 100.0).round() / 100.0,
        "estimated_total": cp.estimated_total,
        "owner_partition": cp.owner_partition,
        "command_offset": cp.command_offset,
        "accepted_at": format_ms(cp.accepted_at_ms),
        "started_at": cp.started_at_ms.map(format_ms),
        "updated_at": format_ms(cp.updated_at_ms),
        "completed_at": cp.completed_at_ms.map(format_ms),
        "error": cp.error,
        "pending_control": pending,
        "revision": cp.revision,
    })
}

/// The table row of a job: JOB, TENANT, STATUS, FOUND/ESTIMATED, CURSOR, OWNER, AGE.
fn table_row(cp: &Checkpoint, now: i64) -> Vec<String> {
    let progress = match cp.estimated_total {
        Some(t) => format!("{}/{}", count(cp.counters.found), count(t)),
        None => count(cp.counters.found),
    };
    let cursor = cp.cursor.as_ref().map_or_else(
        || "-".to_string(),
        |c| {
            format!(
                "{} {} {}",
                crate::source::text(&c.external_customer_id),
                format_ms(c.timestamp_ms),
                crate::source::text(&c.id)
            )
        },
    );
    vec![
        cp.job_id.clone(),
        cp.spec.tenant_id.clone(),
        cp.status.to_string(),
        progress,
        cursor,
        owner_text(cp),
        render::duration(((now - cp.accepted_at_ms).max(0) as f64) / 1000.0),
    ]
}

/// The jobs as a table, in the order given.
pub fn jobs_table(jobs: &[Checkpoint], now: i64) -> String {
    let rows = jobs.iter().map(|cp| table_row(cp, now)).collect();
    render::table(
        &[
            "JOB",
            "TENANT",
            "STATUS",
            "FOUND/ESTIMATED",
            "CURSOR",
            "OWNER",
            "AGE",
        ],
        rows,
        &[3, 6],
    )
}

/// Runs `status`. Errors when `JOB` is not in the state topic.
pub fn run(cfg: &Config, a: &StatusArgs) -> CliResult {
    let store = block_on(load_state(cfg))?;
    if let Some(id) = &a.job {
        let Some(cp) = store.checkpoint(id) else {
            return Err(CliError::Other(anyhow::anyhow!(
                "job `{id}` is not in state topic `{}`",
                cfg.topics.state.name
            )));
        };
        let v = job_json(&cp, &store.pending(id));
        if a.json {
            print_json(&v)?;
        } else {
            let rows = v
                .as_object()
                .expect("object")
                .iter()
                .map(|(k, val)| (k.clone(), cell(val)))
                .collect();
            print!("{}", render::key_values(rows, 0));
        }
        return Ok(Exit::Ok);
    }
    let jobs = listing_order(store.jobs());
    if a.json {
        for cp in &jobs {
            print_json(&job_json(cp, &store.pending(&cp.job_id)))?;
        }
    } else {
        print!("{}", jobs_table(&jobs, now_ms()));
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandOrigin;
    use crate::job::lifecycle::accept;

    fn checkpoint(job_id: &str, tenant: &str, partition: i32) -> Checkpoint {
        let mut spec = crate::job::tests::spec();
        spec.job_id = job_id.into();
        spec.tenant_id = tenant.into();
        let origin = CommandOrigin {
            topic: "c".into(),
            partition,
            offset: 7,
        };
        let at = crate::job::lifecycle::Stamp {
            now_ms: 1_000,
            instance: "host-1",
        };
        accept(spec, &origin, at)
    }

    #[test]
    fn the_table_shows_long_ids_whole_and_the_owner() {
        let long = "j".repeat(128);
        let tenant = "0b9c7f43-5a1e-4b4e-9d2c-1f6a8e3b2c7d";
        let jobs = [checkpoint(&long, tenant, 4), checkpoint("short", "t", 0)];
        let text = jobs_table(&jobs, 61_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("JOB ") && lines[0].contains("OWNER"),
            "{text}"
        );
        assert!(
            lines[1].starts_with(&format!("{long}  {tenant}  queued")),
            "{text}"
        );
        assert!(
            lines[1].contains("partition 4") && lines[1].ends_with("1m"),
            "{text}"
        );
        assert!(lines[2].contains("partition 0"), "{text}");
    }

    #[test]
    fn job_json_names_the_owner_partition_and_pending_requests() {
        let cp = checkpoint("j1", "t", 2);
        let req = ControlRequest {
            request_id: "c-2-9".into(),
            job_id: "j1".into(),
            action: crate::command::ControlAction::Pause,
            at_ms: 0,
        };
        let v = job_json(&cp, &[req]);
        assert_eq!(v["owner_partition"], 2);
        assert_eq!(v["status"], "queued");
        assert_eq!(v["pending_control"][0]["action"], "pause");
        assert_eq!(v["command"]["mode"], "pending");
    }

    #[test]
    fn parts_follow_their_split_job_and_the_owner_names_the_instance() {
        let mut parent = checkpoint("big", "t", 1);
        parent.accepted_at_ms = 1_000;
        parent.parts = vec!["big.part-0".into(), "big.part-1".into()];
        let mut parts = Vec::new();
        for (k, at) in [(1, 3_000), (0, 2_000)] {
            let mut p = checkpoint(&format!("big.part-{k}"), "t", 2);
            p.spec.parent_job_id = Some("big".into());
            p.accepted_at_ms = at;
            p.instance = Some(format!("host-{k}"));
            parts.push(p);
        }
        let mut newer = checkpoint("newer", "t", 0);
        newer.accepted_at_ms = 5_000;
        let mut orphan = checkpoint("gone.part-0", "t", 0);
        orphan.spec.parent_job_id = Some("gone".into());
        orphan.accepted_at_ms = 4_000;
        let mut all = parts;
        all.extend([parent, newer, orphan]);
        let ids: Vec<String> = listing_order(all).into_iter().map(|c| c.job_id).collect();
        assert_eq!(
            ids,
            ["newer", "gone.part-0", "big", "big.part-0", "big.part-1"]
        );
        let mut p = checkpoint("p", "t", 3);
        p.instance = Some("box-7".into());
        assert_eq!(owner_text(&p), "box-7 (partition 3)");
        p.instance = None;
        assert_eq!(owner_text(&p), "partition 3");
    }
}
