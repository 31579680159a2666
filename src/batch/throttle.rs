//! `max_events_per_second` (SPEC §3): a job publishes at most `rate × 10 s` events in any 10-second window.
//! Throttling sleeps between transactions, never inside one (SPEC §5). Pure: the time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The rows per transaction of a throttled job: at most one second's worth of events, so that no window sees a
/// burst (and at least one row).
pub fn batch_size(batch_size: u32, rate: Option<f64>) -> u32 {
    match rate {
        Some(rate) => (f64::from(batch_size)).min(rate.ceil().max(1.0)) as u32,
        None => batch_size,
    }
}

/// A duration of `secs` seconds, saturating at one year (a rate so low that the wait overflows `Duration`
/// waits as good as forever instead of panicking).
pub fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.min(365.0 * 86_400.0)).unwrap_or(Duration::ZERO)
}

/// The throttle of one job task: the transactions committed within the last window and the events published
/// since the task started.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Events per second.
    rate: f64,
    /// (when the commit returned, events it published), oldest first.
    recent: VecDeque<(Instant, i64)>,
    published: i64,
    started: Instant,
}

impl Throttle {
    /// A throttle at `rate` events per second (> 0), starting at `now`.
    pub fn new(rate: f64, now: Instant) -> Throttle {
        Throttle {
            rate,
            recent: VecDeque::new(),
            published: 0,
            started: now,
        }
    }

    /// How long to wait from `now` before a transaction of `next` more events may commit (zero: go now), so
    /// that no window of `max(10 s, next / rate)` holds more than `rate` × its length. Pacing by the average
    /// rate alone could let an 11th one-second batch into the window that starts at the first one.
    pub fn wait_before(&mut self, next: i64, now: Instant) -> Duration {
        let window = seconds(10f64.max(next as f64 / self.rate));
        let budget = (self.rate * window.as_secs_f64()).floor() as i64;
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            self.recent.pop_front();
        }
        let used: i64 = self.recent.iter().map(|(_, n)| n).sum();
        match self.recent.front() {
            Some((oldest, _)) if used + next > budget => {
                window.saturating_sub(now.duration_since(*oldest)) + Duration::from_millis(1)
            }
            _ => Duration::ZERO,
        }
    }

    /// Changes the rate to `rate` (> 0) from `now` on: the average is measured again from `now`, while the
    /// window keeps the transactions it holds (a lower rate waits for them to leave it).
    pub fn set_rate(&mut self, rate: f64, now: Instant) {
        if rate != self.rate {
            self.rate = rate;
            self.published = 0;
            self.started = now;
        }
    }

    /// Counts a committed transaction of `published` events at `now`.
    pub fn committed(&mut self, published: i64, now: Instant) {
        self.recent.push_back((now, published));
        self.published += published;
    }

    /// How long to wait from `now` so that the average rate since the start stays at most `rate`.
    pub fn wait_after(&self, now: Instant) -> Duration {
        let due = seconds(self.published as f64 / self.rate);
        due.saturating_sub(now.duration_since(self.started))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_at_most_a_second_of_events() {
        assert_eq!(batch_size(1000, None), 1000);
        assert_eq!(batch_size(1000, Some(150.0)), 150);
        assert_eq!(batch_size(1000, Some(0.01)), 1);
        assert_eq!(batch_size(100, Some(2500.5)), 100);
        assert_eq!(seconds(1e300), Duration::from_secs(365 * 86_400));
    }

    /// Simulates a job committing as soon as the throttle lets it (each commit taking `commit`), and returns
    /// the most events committed within any 10-second window.
    fn worst_window(rate: f64, batch: i64, commit: Duration, total: i64) -> (i64, Duration) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut th = Throttle::new(rate, t0);
        let mut commits = Vec::new();
        let mut left = total;
        while left > 0 {
            let n = batch.min(left);
            now += th.wait_before(n, now);
            now += commit;
            th.committed(n, now);
            commits.push((now, n));
            left -= n;
            now += th.wait_after(now);
        }
        let worst = commits
            .iter()
            .map(|(t, _)| {
                commits
                    .iter()
                    .filter(|(u, _)| *u >= *t && u.duration_since(*t) < Duration::from_secs(10))
                    .map(|(_, n)| n)
                    .sum::<i64>()
            })
            .max()
            .unwrap_or(0);
        (worst, now.duration_since(t0))
    }

    #[test]
    fn no_window_holds_more_than_rate_times_ten_seconds() {
        // (rate, batch, commit time)
        for (rate, batch, commit_ms) in [
            (150.0, 150, 5),
            (150.0, 150, 900),
            (1000.0, 1000, 0),
            (2.5, 3, 10),
            (800.0, 200, 50),
        ] {
            let (worst, took) = worst_window(rate, batch, Duration::from_millis(commit_ms), 5_000);
            assert!(
                worst as f64 <= rate * 10.0,
                "rate {rate} batch {batch}: {worst} in 10 s"
            );
            // ... while not throttling far below the rate (a batch that does not divide the window's budget
            // leaves part of it unused).
            let expected = Duration::from_secs_f64(5_000.0 / rate);
            assert!(
                took.as_secs_f64() <= expected.as_secs_f64() * 1.05 + 11.0,
                "rate {rate}: {took:?} for {expected:?}"
            );
        }
    }

    #[test]
    fn the_first_batch_goes_at_once() {
        let t0 = Instant::now();
        let mut th = Throttle::new(100.0, t0);
        assert_eq!(th.wait_before(100, t0), Duration::ZERO);
        th.committed(100, t0);
        assert_eq!(th.wait_after(t0), Duration::from_secs(1));
        assert_eq!(th.wait_after(t0 + Duration::from_secs(3)), Duration::ZERO);
    }

    #[test]
    fn a_new_rate_counts_from_its_change_and_the_window_remembers() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut th = Throttle::new(100.0, t0);
        th.committed(900, t0);
        // Doubling the rate: the average starts again, the 900 events stay in the 10 s window (budget 2,000).
        th.set_rate(200.0, t0 + s(1));
        assert_eq!(th.wait_after(t0 + s(1)), Duration::ZERO);
        assert_eq!(th.wait_before(1_100, t0 + s(1)), Duration::ZERO);
        assert!(th.wait_before(1_200, t0 + s(1)) > s(8));
        // Halving it: the window's 900 events now fill most of a budget of 500.
        th.set_rate(50.0, t0 + s(2));
        assert!(th.wait_before(100, t0 + s(2)) > s(7));
    }
}
