//! Throughput of the transformation on the realistic vector payloads
//! (`gen/realistic/`, `upstream/`, `sample/`), single thread.
//! Run with `cargo bench --bench transform`; prints events/s per core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use raw_events_reprocessor::transform::{Outcome, transform};

const VECTORS: &str = include_str!("../tests/fixtures/transform_reference.jsonl");

/// CPU time of this thread in seconds (Linux `/proc/thread-self/stat`, clock
/// ticks of 10 ms), so the figure is per core even on a busy machine.
fn thread_cpu_secs() -> Option<f64> {
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
    // Warm-up.
    for (t, e, p) in &cases {
        black_box(transform(p, t, e));
    }
    let budget = Duration::from_secs(3);
    let cpu0 = thread_cpu_secs();
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut events: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            for (t, e, p) in &cases {
                if let Outcome::Event(ev) = black_box(transform(black_box(p), t, e)) {
                    events += 1;
                    black_box(ev);
                }
                n += 1;
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let secs = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    println!(
        "transform: {} payloads ({} events) in {:.2}s CPU ({:.2}s wall) on one thread: {:.0} payloads/s per core, {:.1} MB/s (avg payload {} B)",
        n,
        events,
        secs,
        wall,
        n as f64 / secs,
        (n as f64 / cases.len() as f64) * bytes as f64 / secs / 1e6,
        bytes / cases.len()
    );
}
