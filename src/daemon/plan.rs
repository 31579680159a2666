//! Planning a split job's parts at its acceptance (SPEC §5a): the rows per day and, for a day cut among several
//! parts, per customer, from ClickHouse's estimates ([`Source::estimate`], [`Source::customer_counts`]), then
//! the pure plan of [`crate::job::split`]. Each ClickHouse question waits at most
//! `kafka.command_state_wait()` (the command's partition waits meanwhile); without an answer the plan falls
//! back to equal time slices, which cover the selection as exactly, only less evenly.

use std::collections::HashMap;

use tracing::{info, warn};

use crate::command::JobSpec;
use crate::job::split::{self, Cut, Piece};
use crate::runner::JobContext;
use crate::source::key::{DAY_MS, day_of, day_of_yyyymmdd};

/// The parts of the split job `spec` (`spec.parallelism` of them), covering its selection exactly.
pub async fn parts(ctx: &JobContext, spec: &JobSpec) -> Vec<JobSpec> {
    let n = spec.parallelism as usize;
    let (start, end) = (spec.start_ms, spec.end_ms);
    let wait = ctx.cfg.kafka.command_state_wait();
    let filters = spec.filters();
    let counts = match tokio::time::timeout(wait, ctx.source.estimate(&filters)).await {
        Ok(Ok(days)) => Some(
            days.into_iter()
                .filter_map(|(d, n)| day_of_yyyymmdd(d).map(|d| (d, n)))
                .collect::<Vec<_>>(),
        ),
        Ok(Err(e)) => {
            warn!(job_id = %spec.job_id, error = %e, "no row counts to plan the parts by; cutting the range in equal time slices");
            None
        }
        Err(_) => {
            warn!(job_id = %spec.job_id, "no row counts in time to plan the parts by; cutting the range in equal time slices");
            None
        }
    };
    let ranges = match counts {
        None => split::time_slices(start, end, n),
        Some(counts) => {
            let pieces = split::plan(day_of(start), day_of(end - 1), &counts, n);
            let mut cuts = HashMap::new();
            for p in &pieces {
                if let Piece::DayCut { day, parts, .. } = p {
                    cuts.insert(*day, cut(ctx, spec, *day, *parts).await);
                }
            }
            split::ranges(start, end, &pieces, &|day, _| {
                cuts.get(&day).cloned().unwrap_or(Cut::Time)
            })
        }
    };
    let parts = split::part_specs(spec, &ranges);
    info!(job_id = %spec.job_id, parts = parts.len(), "split job planned");
    parts
}

/// How a day of the job is cut into `parts` parts: at the customers where its rows divide evenly (only
/// customer ids that are valid UTF-8 can be boundaries), or in equal time slices without an answer.
async fn cut(ctx: &JobContext, spec: &JobSpec, day: i64, parts: usize) -> Cut {
    let mut f = spec.filters();
    f.start_ms = f.start_ms.max(day * DAY_MS);
    f.end_ms = f.end_ms.min((day + 1) * DAY_MS);
    let wait = ctx.cfg.kafka.command_state_wait();
    match tokio::time::timeout(wait, ctx.source.customer_counts(&f)).await {
        Ok(Ok(counts)) => {
            let counts: Vec<(String, u64)> = counts
                .into_iter()
                .filter_map(|(c, n)| String::from_utf8(c).ok().map(|c| (c, n)))
                .collect();
            Cut::Customers(split::customer_boundaries(&counts, parts))
        }
        _ => Cut::Time,
    }
}
