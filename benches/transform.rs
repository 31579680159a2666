//! Throughput of the transformation on the realistic vector payloads
//! (`gen/realistic/`, `upstream/`, `sample/`), single thread.
//!
//! Run with `cargo bench --bench transform`; prints payloads/s per core, from
//! the CPU time of the benchmark thread (so the figure holds on a busy
//! machine) and, for reference, from wall-clock time.
//!
//! `TRANSFORM_BENCH_ROUNDS=N` runs exactly `N` rounds over the payloads
//! instead of a 3 s time budget (for instruction counting, e.g. under
//! `valgrind --tool=callgrind`: the difference between `N` and `0` rounds,
//! divided by `N` × payloads, is the instruction count per payload).

use std::hint::black_box;
use std::time::{Duration, Instant};

use raw_events_reprocessor::transform::{Outcome, transform};

const VECTORS: &str = include_str!("../tests/fixtures/transform_reference.jsonl");

/// CPU time of this thread in seconds (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`
/// through `/proc/thread-self/schedstat`, nanoseconds; falls back to the
/// 10 ms ticks of `/proc/thread-self/stat`).
fn thread_cpu_secs() -> Option<f64> {
    if let Ok(s) = std::fs::read_to_string("/proc/thread-self/schedstat")
        && let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<u64>().ok())
    {
        return Some(ns as f64 / 1e9);
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() {
    let cases: Vec<(String, String, Vec<u8>)> = VECTORS
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            let n = v["name"].as_str().unwrap_or("");
            n.starts_with("gen/realistic/")
                || n.starts_with("upstream/")
                || n.starts_with("sample/")
        })
        .map(|v| {
            (
                v["tenant_id"].as_str().unwrap_or("").to_string(),
                v["environment_id"].as_str().unwrap_or("").to_string(),
                v["payload"].as_str().unwrap_or("").as_bytes().to_vec(),
            )
        })
        .collect();
    assert!(!cases.is_empty());
    let bytes: usize = cases.iter().map(|c| c.2.len()).sum();
    let rounds: Option<u64> = std::env::var("TRANSFORM_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok());
    // Warm-up.
    for (t, e, p) in &cases {
        black_box(transform(p, t, e));
    }
    let budget = Duration::from_secs(3);
    let cpu0 = thread_cpu_secs();
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut events: u64 = 0;
    let round = |n: &mut u64, events: &mut u64| {
        for (t, e, p) in &cases {
            if let Outcome::Event(ev) = black_box(transform(black_box(p), t, e)) {
                *events += 1;
                black_box(ev);
            }
            *n += 1;
        }
    };
    match rounds {
        Some(r) => {
            for _ in 0..r {
                round(&mut n, &mut events);
            }
        }
        None => {
            while start.elapsed() < budget {
                for _ in 0..100 {
                    round(&mut n, &mut events);
                }
            }
        }
    }
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let cpu = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    println!(
        "transform: {n} payloads ({events} events, {} distinct, avg {} B) on one thread, {cpu:.2}s CPU, {wall:.2}s wall",
        cases.len(),
        bytes / cases.len()
    );
    println!(
        "transform: {:.0} payloads/s per core (CPU time); {:.0} payloads/s (wall clock); {:.1} MB/s per core",
        n as f64 / cpu,
        n as f64 / wall,
        (n as f64 / cases.len() as f64) * bytes as f64 / cpu / 1e6,
    );
}
