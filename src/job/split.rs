//! Split jobs (SPEC §5a), pure: how a job with `parallelism` N becomes N parts that cover its selection
//! exactly ([`plan`], [`ranges`], [`part_specs`], [`part_command`]), and what a split job is while its parts
//! run ([`aggregate`]).
//!
//! A part is a rectangle of the selection: a time range, and within it, optionally, a range of
//! `external_customer_id`. Planning walks the UTC days of the range with their row counts: consecutive days
//! are grouped into one part until it holds about `total / N` rows; a day holding much more than that is cut
//! into several parts by customer ranges (from the day's rows per customer). Without counts (ClickHouse did
//! not answer in time), the range is cut into N equal time slices. Either way the parts are disjoint and their
//! union is the job's selection, whatever the data.

use serde_json::{Map, Value, json};

use super::{Checkpoint, Counters, JobStatus};
use crate::command::{JobSpec, format_ms};
use crate::source::Mode;
use crate::source::key::DAY_MS;

/// One piece of a plan: whole days `first..=last` (UTC day numbers) in one part, or one day cut into `parts`
/// parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Days { first: i64, last: i64, rows: u64 },
    DayCut { day: i64, parts: usize, rows: u64 },
}

impl Piece {
    fn parts(&self) -> usize {
        match self {
            Piece::Days { .. } => 1,
            Piece::DayCut { parts, .. } => *parts,
        }
    }

    fn rows(&self) -> u64 {
        match self {
            Piece::Days { rows, .. } | Piece::DayCut { rows, .. } => *rows,
        }
    }

    fn first_day(&self) -> i64 {
        match self {
            Piece::Days { first, .. } => *first,
            Piece::DayCut { day, .. } => *day,
        }
    }

    /// Rows per part.
    fn load(&self) -> f64 {
        self.rows() as f64 / self.parts() as f64
    }
}

/// The pieces of `n` parts for the days `first_day..=last_day`, given rows per day (`counts`, days without an
/// entry hold none). Every day is in exactly one piece, in order, and the pieces hold `n` parts in all.
pub fn plan(first_day: i64, last_day: i64, counts: &[(i64, u64)], n: usize) -> Vec<Piece> {
    let n = n.max(1);
    let rows_of = |d: i64| {
        counts
            .iter()
            .filter(|(day, _)| *day == d)
            .map(|(_, c)| c)
            .sum::<u64>()
    };
    let total: u64 = (first_day..=last_day).map(rows_of).sum();
    let target = (total as f64 / n as f64).max(1.0);
    let mut pieces = Vec::new();
    let mut group: Option<(i64, i64, u64)> = None;
    for d in first_day..=last_day {
        let c = rows_of(d);
        if c as f64 > target * 1.5 {
            if let Some((first, last, rows)) = group.take() {
                pieces.push(Piece::Days { first, last, rows });
            }
            let parts = ((c as f64 / target).round() as usize).max(1);
            pieces.push(Piece::DayCut {
                day: d,
                parts,
                rows: c,
            });
            continue;
        }
        let g = group.get_or_insert((d, d, 0));
        g.1 = d;
        g.2 += c;
        if g.2 as f64 >= target {
            let (first, last, rows) = group.take().expect("set");
            pieces.push(Piece::Days { first, last, rows });
        }
    }
    if let Some((first, last, rows)) = group {
        match pieces.last_mut() {
            // Days left over with no rows join the piece before them.
            Some(Piece::Days {
                last: l, rows: r, ..
            }) if rows == 0 => {
                *l = last;
                *r += rows;
            }
            _ => pieces.push(Piece::Days { first, last, rows }),
        }
    }
    balance(&mut pieces, n);
    pieces
}

/// Merges or splits pieces until they hold exactly `n` parts.
fn balance(pieces: &mut Vec<Piece>, n: usize) {
    loop {
        let m: usize = pieces.iter().map(Piece::parts).sum();
        if m == n {
            return;
        }
        if m > n {
            shrink(pieces);
        } else {
            grow(pieces);
        }
    }
}

/// One part fewer: a cut day loses a part, or the two lightest neighbouring pieces merge.
fn shrink(pieces: &mut Vec<Piece>) {
    // The lightest cut day with parts to spare, compared with the lightest neighbouring pair.
    let cut = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.parts() > 1)
        .min_by(|a, b| a.1.load().total_cmp(&b.1.load()))
        .map(|(i, p)| (i, p.rows() as f64 / (p.parts() - 1) as f64));
    let pair = (0..pieces.len().saturating_sub(1))
        .map(|i| (i, (pieces[i].rows() + pieces[i + 1].rows()) as f64))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match (cut, pair) {
        (Some((i, load)), Some((_, merged))) if load <= merged => decrement(&mut pieces[i]),
        (Some((i, _)), None) => decrement(&mut pieces[i]),
        (_, Some((i, _))) => {
            let b = pieces.remove(i + 1);
            let a = &pieces[i];
            let last = match &b {
                Piece::Days { last, .. } => *last,
                Piece::DayCut { day, .. } => *day,
            };
            // A merged piece is whole days, so neither may keep a cut (a cut day of one part is a whole day).
            pieces[i] = Piece::Days {
                first: a.first_day(),
                last,
                rows: a.rows() + b.rows(),
            };
        }
        (None, None) => unreachable!("more parts than one piece holds"),
    }
}

fn decrement(p: &mut Piece) {
    if let Piece::DayCut { day, parts, rows } = *p {
        *p = if parts == 2 {
            Piece::Days {
                first: day,
                last: day,
                rows,
            }
        } else {
            Piece::DayCut {
                day,
                parts: parts - 1,
                rows,
            }
        };
    }
}

/// One part more: the heaviest piece per part is split (a group of days in two, a day cut once more).
fn grow(pieces: &mut Vec<Piece>) {
    let i = pieces
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.load().total_cmp(&b.1.load()))
        .map(|(i, _)| i)
        .expect("at least one piece");
    match pieces[i].clone() {
        Piece::DayCut { day, parts, rows } => {
            pieces[i] = Piece::DayCut {
                day,
                parts: parts + 1,
                rows,
            }
        }
        Piece::Days { first, last, rows } if first == last => {
            pieces[i] = Piece::DayCut {
                day: first,
                parts: 2,
                rows,
            }
        }
        Piece::Days { first, last, rows } => {
            // Halves by days (counts within the group are not known here: by day number).
            let mid = first + (last - first) / 2;
            let half = rows / 2;
            pieces[i] = Piece::Days {
                first,
                last: mid,
                rows: half,
            };
            pieces.insert(
                i + 1,
                Piece::Days {
                    first: mid + 1,
                    last,
                    rows: rows - half,
                },
            );
        }
    }
}

/// `parts - 1` customer ids cutting a day's rows into `parts` ranges of about equal count: the range before
/// the first boundary, between boundaries (`from` inclusive, `to` exclusive), and from the last. `counts`:
/// rows per customer of the day, sorted by customer. Fewer boundaries when there are fewer customers.
pub fn customer_boundaries(counts: &[(String, u64)], parts: usize) -> Vec<String> {
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let mut out: Vec<String> = Vec::new();
    let mut before = 0u64;
    let mut j = 1usize;
    for (customer, n) in counts {
        while j < parts && before as f64 >= total as f64 * j as f64 / parts as f64 {
            if before > 0 && out.last() != Some(customer) {
                out.push(customer.clone());
            }
            j += 1;
        }
        before += n;
    }
    out
}

/// One part's share of the selection: `[start_ms, end_ms)` and, when set, `customer_from <= customer <
/// customer_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub customer_from: Option<String>,
    pub customer_to: Option<String>,
}

/// How a cut day is cut: by customers at these boundaries, or (without counts) into equal time slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    Customers(Vec<String>),
    Time,
}

/// The part ranges of `pieces` within `[start_ms, end_ms)`; `cut` says how each cut day is cut.
pub fn ranges(
    start_ms: i64,
    end_ms: i64,
    pieces: &[Piece],
    cut: &dyn Fn(i64, usize) -> Cut,
) -> Vec<PartRange> {
    let clip = |a: i64, b: i64| (a.max(start_ms), b.min(end_ms));
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Days { first, last, .. } => {
                let (a, b) = clip(first * DAY_MS, (last + 1) * DAY_MS);
                out.push(whole(a, b));
            }
            Piece::DayCut { day, parts, .. } => {
                let (a, b) = clip(day * DAY_MS, (day + 1) * DAY_MS);
                match cut(*day, *parts) {
                    // Customers that give every part rows of its own: ranges between the boundaries.
                    Cut::Customers(bounds) if bounds.len() + 1 == *parts => {
                        let mut from = None;
                        for to in bounds.iter().map(|b| Some(b.clone())).chain([None]) {
                            out.push(PartRange {
                                customer_from: from.clone(),
                                customer_to: to.clone(),
                                ..whole(a, b)
                            });
                            from = to;
                        }
                    }
                    // Too few customers to share the day (one customer, or one holding most rows): the day
                    // is cut by time instead, which any data divides.
                    Cut::Customers(_) | Cut::Time => out.extend(time_slices(a, b, *parts)),
                }
            }
        }
    }
    out
}

fn whole(start_ms: i64, end_ms: i64) -> PartRange {
    PartRange {
        start_ms,
        end_ms,
        customer_from: None,
        customer_to: None,
    }
}

/// A part that selects nothing: the whole of `[start_ms, end_ms)` (a valid time range, as every command
/// needs) and the customer range `"empty" <= c < "empty"`, which no customer is in (any narrowing by the split
/// job's own range keeps it empty; an empty string is no valid command field).
fn empty(start_ms: i64, end_ms: i64) -> PartRange {
    PartRange {
        customer_from: Some(EMPTY_RANGE_AT.into()),
        customer_to: Some(EMPTY_RANGE_AT.into()),
        ..whole(start_ms, end_ms)
    }
}

/// Where an [`empty`] part's customer range starts and ends.
const EMPTY_RANGE_AT: &str = "empty";

/// `[start_ms, end_ms)` (non-empty) in `n` equal time slices at millisecond boundaries; a slice narrower
/// than a millisecond (a range shorter than `n` ms) is an [`empty`] part instead.
pub fn time_slices(start_ms: i64, end_ms: i64, n: usize) -> Vec<PartRange> {
    let n = n.max(1) as i64;
    let span = end_ms - start_ms;
    (0..n)
        .map(|k| {
            let (a, b) = (start_ms + span * k / n, start_ms + span * (k + 1) / n);
            if a < b {
                whole(a, b)
            } else {
                empty(start_ms, end_ms)
            }
        })
        .collect()
}

/// The job id of a split job's `k`-th part: `<job_id>.part-<k>`.
pub fn part_id(job_id: &str, k: usize) -> String {
    format!("{job_id}.part-{k}")
}

/// The parts' specs: the split job's spec on each range, with the part's id, the split job as parent, a
/// customer range narrowed by the split job's own, the rate divided among the parts, and `pending` mode's
/// anti-join on the split job's window (so a part's window does not change which rows are pending).
pub fn part_specs(parent: &JobSpec, ranges: &[PartRange]) -> Vec<JobSpec> {
    let narrow_from = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b).clone()),
        (a, b) => a.clone().or(b.clone()),
    };
    let narrow_to = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b).clone()),
        (a, b) => a.clone().or(b.clone()),
    };
    let n = ranges.len().max(1) as f64;
    ranges
        .iter()
        .enumerate()
        .map(|(k, r)| JobSpec {
            job_id: part_id(&parent.job_id, k),
            start_ms: r.start_ms,
            end_ms: r.end_ms,
            external_customer_id_from: narrow_from(
                &parent.external_customer_id_from,
                &r.customer_from,
            ),
            external_customer_id_to: narrow_to(&parent.external_customer_id_to, &r.customer_to),
            max_events_per_second: parent.max_events_per_second.map(|rate| rate / n),
            parallelism: 1,
            parent_job_id: Some(parent.job_id.clone()),
            pending_start_ms: (parent.mode == Mode::Pending)
                .then(|| parent.pending_start_ms.unwrap_or(parent.start_ms)),
            pending_end_ms: (parent.mode == Mode::Pending)
                .then(|| parent.pending_end_ms.unwrap_or(parent.end_ms)),
            ..parent.clone()
        })
        .collect()
}

/// A part's share of its split job's `max_events_per_second` (`total`): the total divided among the parts
/// that run or will (`None`: not accepted yet; queued; running), so a part's rate grows as its siblings finish,
/// pause or fail, and the parts together stay within the total (SPEC §3, §5a). `parts` includes the part
/// asking, which always counts.
pub fn rate_share(total: f64, parts: &[Option<JobStatus>]) -> f64 {
    let sharing = parts
        .iter()
        .filter(|s| matches!(s, None | Some(JobStatus::Queued | JobStatus::Running)))
        .count();
    total / sharing.max(1) as f64
}

/// The command a part is: a `reprocess` of the control topic that validates as any other (SPEC §3).
pub fn part_command(spec: &JobSpec) -> Vec<u8> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    put("type", json!("reprocess"));
    put("job_id", json!(spec.job_id));
    put("tenant_id", json!(spec.tenant_id));
    put("environment_id", json!(spec.environment_id));
    for (k, v) in [
        ("external_customer_ids", &spec.external_customer_ids),
        ("event_names", &spec.event_names),
        ("event_ids", &spec.event_ids),
    ] {
        if !v.is_empty() {
            put(k, json!(v));
        }
    }
    put("start_date", json!(format_ms(spec.start_ms)));
    put("end_date", json!(format_ms(spec.end_ms)));
    put("batch_size", json!(spec.batch_size));
    put("mode", json!(spec.mode));
    put("dry_run", json!(spec.dry_run));
    put("sample_rate", json!(spec.sample_rate));
    if let Some(r) = spec.max_events_per_second {
        put("max_events_per_second", json!(r));
    }
    for (k, v) in [
        ("parent_job_id", &spec.parent_job_id),
        ("external_customer_id_from", &spec.external_customer_id_from),
        ("external_customer_id_to", &spec.external_customer_id_to),
    ] {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    for (k, v) in [
        ("pending_start_date", spec.pending_start_ms),
        ("pending_end_date", spec.pending_end_ms),
    ] {
        if let Some(ms) = v {
            put(k, json!(format_ms(ms)));
        }
    }
    serde_json::to_vec(&Value::Object(m)).expect("JSON serializes")
}

/// What a split job is while its parts run: their summed counters and estimates, and its status: `completed`
/// once every part completed; `cancelled` once every part is completed or cancelled and one was cancelled;
/// `failed` once no part runs, waits or is paused and one failed (naming the failed parts); `paused` when no
/// part runs or waits and one is paused; else `running`. A part not yet accepted counts as waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub status: JobStatus,
    pub counters: Counters,
    /// The sum of the parts' estimates, once every part has one.
    pub estimated_total: Option<i64>,
    /// `failed`: `<part>: <error>` of each failed part.
    pub error: Option<String>,
}

/// A split job's status from its parts' (`None`: not accepted yet, which counts as waiting): `completed` once
/// every part completed; `cancelled` once every part is completed or cancelled and one was cancelled; `failed`
/// once no part runs, waits or is paused and one failed; `paused` when no part runs or waits and one is paused;
/// else `running` (never `queued`: a split job runs while its parts wait).
pub fn status_of(parts: &[Option<JobStatus>]) -> JobStatus {
    let (mut active, mut paused, mut failed, mut cancelled, mut completed) = (0, 0, 0, 0, 0);
    for p in parts {
        match p {
            None | Some(JobStatus::Queued | JobStatus::Running) => active += 1,
            Some(JobStatus::Paused) => paused += 1,
            Some(JobStatus::Failed) => failed += 1,
            Some(JobStatus::Cancelled) => cancelled += 1,
            Some(JobStatus::Completed) => completed += 1,
        }
    }
    if completed == parts.len() {
        JobStatus::Completed
    } else if active + paused + failed == 0 && cancelled > 0 {
        JobStatus::Cancelled
    } else if active + paused == 0 && failed > 0 {
        JobStatus::Failed
    } else if active == 0 && paused > 0 {
        JobStatus::Paused
    } else {
        JobStatus::Running
    }
}

/// The aggregate of a split job's `parts` (`None`: not accepted yet), in part order.
pub fn aggregate(parts: &[Option<&Checkpoint>]) -> Aggregate {
    let mut counters = Counters::default();
    let mut estimated = Some(0i64);
    let mut errors = Vec::new();
    for p in parts {
        let Some(cp) = p else {
            estimated = None;
            continue;
        };
        counters.add(&cp.counters);
        estimated = estimated.zip(cp.estimated_total).map(|(a, b)| a + b);
        if cp.status == JobStatus::Failed {
            errors.push(format!(
                "{}: {}",
                cp.job_id,
                cp.error.as_deref().unwrap_or("failed")
            ));
        }
    }
    let statuses: Vec<Option<JobStatus>> = parts.iter().map(|p| p.map(|cp| cp.status)).collect();
    let status = status_of(&statuses);
    Aggregate {
        status,
        counters,
        estimated_total: estimated,
        error: (status == JobStatus::Failed)
            .then(|| format!("parts failed: {}", errors.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::tests::{checkpoint, spec};

    #[test]
    fn the_rate_is_shared_among_the_parts_that_run() {
        use JobStatus::*;
        assert_eq!(
            rate_share(900.0, &[Some(Running), None, Some(Queued)]),
            300.0
        );
        assert_eq!(
            rate_share(900.0, &[Some(Running), Some(Completed), Some(Paused)]),
            900.0
        );
        assert_eq!(
            rate_share(900.0, &[Some(Running), Some(Failed), Some(Running)]),
            450.0
        );
        assert_eq!(rate_share(900.0, &[]), 900.0);
    }

    fn parts_of(pieces: &[Piece]) -> usize {
        pieces.iter().map(Piece::parts).sum()
    }

    fn covers(pieces: &[Piece], first: i64, last: i64) {
        let days: Vec<i64> = pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Days { first, last, .. } => (*first..=*last).collect::<Vec<_>>(),
                Piece::DayCut { day, .. } => vec![*day],
            })
            .collect();
        assert_eq!(days, (first..=last).collect::<Vec<_>>(), "{pieces:?}");
    }

    #[test]
    fn plans_hold_exactly_n_parts_and_cover_every_day_once() {
        // (days, counts, n) → the plan covers the days and holds n parts
        type Case = (i64, i64, Vec<(i64, u64)>, usize);
        let cases: Vec<Case> = vec![
            (0, 3, vec![(0, 25), (1, 25), (2, 25), (3, 25)], 4),
            (0, 3, vec![(0, 97), (1, 1), (2, 1), (3, 1)], 4),
            (0, 0, vec![(0, 1000)], 4),
            (0, 9, vec![(3, 10)], 3),
            (0, 9, vec![], 5),
            (0, 1, vec![(0, 5), (1, 5)], 7),
            (
                5,
                40,
                (5..=40).map(|d| (d, (d as u64 * 37) % 11)).collect(),
                64,
            ),
            (0, 2, vec![(0, 10), (1, 1000), (2, 10)], 2),
        ];
        for (first, last, counts, n) in cases {
            let pieces = plan(first, last, &counts, n);
            assert_eq!(parts_of(&pieces), n, "{counts:?} n={n}: {pieces:?}");
            covers(&pieces, first, last);
        }
    }

    #[test]
    fn even_days_make_one_part_each_and_a_heavy_day_is_cut() {
        let even = plan(0, 3, &[(0, 25), (1, 25), (2, 25), (3, 25)], 4);
        assert!(
            even.iter()
                .all(|p| matches!(p, Piece::Days { first, last, .. } if first == last)),
            "{even:?}"
        );
        let heavy = plan(0, 3, &[(0, 97), (1, 1), (2, 1), (3, 1)], 4);
        assert!(
            matches!(
                heavy[0],
                Piece::DayCut {
                    day: 0,
                    parts: 3,
                    ..
                }
            ),
            "{heavy:?}"
        );
        assert_eq!(
            heavy[1],
            Piece::Days {
                first: 1,
                last: 3,
                rows: 3
            }
        );
    }

    #[test]
    fn customer_boundaries_balance_a_day() {
        let counts: Vec<(String, u64)> = (0..10).map(|i| (format!("c{i}"), 10)).collect();
        assert_eq!(customer_boundaries(&counts, 2), ["c5"]);
        assert_eq!(customer_boundaries(&counts, 4), ["c3", "c5", "c8"]);
        let skew = vec![
            ("a".to_string(), 90),
            ("b".to_string(), 5),
            ("c".to_string(), 5),
        ];
        assert_eq!(customer_boundaries(&skew, 2), ["b"]);
        assert_eq!(
            customer_boundaries(&[("a".to_string(), 9)], 3),
            Vec::<String>::new()
        );
    }

    #[test]
    fn ranges_are_disjoint_and_cover_the_selection() {
        let day = DAY_MS;
        let pieces = vec![
            Piece::Days {
                first: 0,
                last: 1,
                rows: 2,
            },
            Piece::DayCut {
                day: 2,
                parts: 3,
                rows: 9,
            },
            Piece::DayCut {
                day: 3,
                parts: 2,
                rows: 9,
            },
        ];
        let cut = |d: i64, _k: usize| {
            if d == 2 {
                Cut::Customers(vec!["m".into(), "t".into()])
            } else {
                Cut::Time
            }
        };
        let r = ranges(day / 2, 4 * day - 1, &pieces, &cut);
        assert_eq!(r.len(), 6);
        assert_eq!(
            (r[0].start_ms, r[0].end_ms),
            (day / 2, 2 * day),
            "clipped to the job's start"
        );
        assert_eq!(
            (r[1].customer_from.as_deref(), r[1].customer_to.as_deref()),
            (None, Some("m"))
        );
        assert_eq!(
            (r[2].customer_from.as_deref(), r[2].customer_to.as_deref()),
            (Some("m"), Some("t"))
        );
        assert_eq!(
            (r[3].customer_from.as_deref(), r[3].customer_to.as_deref()),
            (Some("t"), None)
        );
        assert_eq!(
            (r[4].start_ms, r[4].end_ms, r[5].end_ms),
            (3 * day, 3 * day + (day - 1) / 2, 4 * day - 1)
        );
        // Every instant of the range is in exactly one time slice or one day's customer ranges.
        let fewer = ranges(
            0,
            day,
            &[Piece::DayCut {
                day: 0,
                parts: 3,
                rows: 1,
            }],
            &|_, _| Cut::Customers(vec!["m".into()]),
        );
        assert_eq!(fewer.len(), 3);
        assert!(
            fewer.iter().all(|r| r.customer_from.is_none()),
            "too few customers for the parts: cut by time, {fewer:?}"
        );
    }

    /// Every part of `ranges` (of a split job with a customer range of its own, or without) is a command the
    /// daemon accepts: a part it rejected left its split job waiting for ever.
    fn commands_parse(ranges: &[PartRange]) {
        let limits = crate::command::Limits {
            default_batch_size: 1000,
            max_batch_size: 10_000,
        };
        let origin = crate::command::CommandOrigin {
            topic: "c".into(),
            partition: 0,
            offset: 0,
        };
        for from in [None, Some("b".to_string())] {
            let parent = JobSpec {
                job_id: "big".into(),
                parallelism: ranges.len() as u32,
                external_customer_id_from: from,
                ..spec()
            };
            for part in part_specs(&parent, ranges) {
                let command = part_command(&part);
                let parsed = crate::command::parse(&command, &origin, limits, 0);
                assert!(
                    parsed.is_ok(),
                    "{}: {parsed:?}",
                    String::from_utf8_lossy(&command)
                );
            }
        }
    }

    /// How many of `ranges` hold a row at `t` of customer `c`.
    fn holders(ranges: &[PartRange], t: i64, c: &str) -> usize {
        ranges
            .iter()
            .filter(|r| {
                r.start_ms <= t
                    && t < r.end_ms
                    && r.customer_from.as_deref().is_none_or(|f| f <= c)
                    && r.customer_to.as_deref().is_none_or(|to| c < to)
            })
            .count()
    }

    #[test]
    fn every_row_is_in_exactly_one_part_whatever_the_counts() {
        // (rows per customer of the cut day, parts, the job's range) → each probe (instant, customer) of the
        // range is in exactly one part. One customer, or one holding most rows, gave no boundary and
        // every part the whole day (each row published `parts` times).
        type Case = (Vec<(&'static str, u64)>, usize, (i64, i64));
        let day = DAY_MS;
        let cases: Vec<Case> = vec![
            (vec![("acme", 50_000)], 4, (0, day)),
            (vec![("a", 1), ("b", 100)], 2, (0, day)),
            (vec![("a", 10), ("b", 10), ("c", 10)], 4, (0, day)),
            (vec![("a", 5), ("b", 5), ("c", 5), ("d", 5)], 4, (0, day)),
            (vec![], 3, (0, day)),
            (vec![("a", 9)], 8, (day - 3, day)),
            (vec![("a", 90), ("b", 5), ("c", 5)], 3, (17, day - 17)),
        ];
        let customers = ["", "a", "acme", "b", "bb", "c", "d", "zz"];
        for (counts, parts, (start, end)) in cases {
            let counts: Vec<(String, u64)> =
                counts.iter().map(|(c, n)| (c.to_string(), *n)).collect();
            let bounds = customer_boundaries(&counts, parts);
            let rows = counts.iter().map(|(_, n)| n).sum();
            let pieces = [Piece::DayCut {
                day: 0,
                parts,
                rows,
            }];
            let r = ranges(start, end, &pieces, &|_, _| Cut::Customers(bounds.clone()));
            assert_eq!(r.len(), parts, "{counts:?}: {r:?}");
            commands_parse(&r);
            let span = end - start;
            for t in [
                start,
                start + 1,
                start + span / 3,
                start + span / 2,
                end - 1,
            ] {
                for c in customers {
                    assert_eq!(holders(&r, t, c), 1, "{counts:?} t={t} c={c:?}: {r:?}");
                }
            }
            assert_eq!(holders(&r, end, "a"), 0);
        }
        // Without counts the range is cut by time, also when it is shorter than the parts are many.
        for (start, end, n) in [(0, day, 4), (5, 8, 7), (0, 1, 64)] {
            let r = time_slices(start, end, n);
            assert_eq!(r.len(), n);
            commands_parse(&r);
            for t in start..end.min(start + 10) {
                assert_eq!(holders(&r, t, "x"), 1, "{r:?}");
            }
        }
    }

    #[test]
    fn parts_divide_the_rate_and_keep_the_anti_join_window() {
        let parent = JobSpec {
            job_id: "big".into(),
            parallelism: 2,
            max_events_per_second: Some(100.0),
            start_ms: 0,
            end_ms: 2 * DAY_MS,
            external_customer_id_from: Some("b".into()),
            ..spec()
        };
        let r = time_slices(0, 2 * DAY_MS, 2);
        let parts = part_specs(&parent, &r);
        assert_eq!(parts[1].job_id, "big.part-1");
        assert_eq!(parts[0].parent_job_id.as_deref(), Some("big"));
        assert_eq!(parts[0].max_events_per_second, Some(50.0));
        assert_eq!((parts[1].start_ms, parts[1].end_ms), (DAY_MS, 2 * DAY_MS));
        assert_eq!(
            (parts[0].pending_start_ms, parts[0].pending_end_ms),
            (Some(0), Some(2 * DAY_MS))
        );
        assert_eq!(parts[0].external_customer_id_from.as_deref(), Some("b"));
        assert_eq!(parts[0].parallelism, 1);
        // A part's command validates as any command and gives back the part's spec.
        let origin = crate::command::CommandOrigin {
            topic: "c".into(),
            partition: 0,
            offset: 0,
        };
        let limits = crate::command::Limits {
            default_batch_size: 1000,
            max_batch_size: 10_000,
        };
        let back = crate::command::parse(&part_command(&parts[1]), &origin, limits, 0).unwrap();
        assert_eq!(
            back,
            crate::command::Command::Reprocess(Box::new(parts[1].clone()))
        );
    }

    #[test]
    fn a_split_job_is_what_its_parts_are() {
        let with = |status, found| Checkpoint {
            status,
            error: (status == JobStatus::Failed).then(|| "no table".to_string()),
            counters: Counters {
                found,
                published: found,
                ..Default::default()
            },
            ..checkpoint()
        };
        use JobStatus::*;
        // (part statuses; None = not accepted yet) → the split job's status
        let table: Vec<(Vec<Option<JobStatus>>, JobStatus)> = vec![
            (vec![Some(Completed), Some(Completed)], Completed),
            (vec![Some(Completed), Some(Running)], Running),
            (vec![Some(Completed), None], Running),
            (vec![Some(Completed), Some(Cancelled)], Cancelled),
            (vec![Some(Failed), Some(Completed)], Failed),
            (vec![Some(Failed), Some(Running)], Running),
            (vec![Some(Failed), Some(Paused)], Paused),
            (vec![Some(Paused), Some(Completed)], Paused),
            (vec![Some(Cancelled), Some(Failed)], Failed),
        ];
        for (statuses, want) in table {
            let cps: Vec<Option<Checkpoint>> =
                statuses.iter().map(|s| s.map(|s| with(s, 10))).collect();
            let refs: Vec<Option<&Checkpoint>> = cps.iter().map(Option::as_ref).collect();
            let a = aggregate(&refs);
            assert_eq!(a.status, want, "{statuses:?}");
            assert_eq!(a.error.is_some(), want == Failed, "{statuses:?}");
            assert_eq!(
                a.counters.found,
                10 * statuses.iter().filter(|s| s.is_some()).count() as i64
            );
        }
        let cps = [with(Completed, 5), with(Completed, 7)];
        let a = aggregate(&[Some(&cps[0]), Some(&cps[1])]);
        assert_eq!(a.estimated_total, Some(200), "both parts' estimates");
        assert!(a.counters.balanced());
    }
}
