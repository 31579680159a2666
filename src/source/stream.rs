//! Reading a job's rows as a stream of batches (SPEC §4): one query reads many batches' worth of rows (`LIMIT`
//! a chunk, [`StreamShape::rows_per_query`]), cut into batches as the rows arrive, while the consumer commits
//! the previous batch. Days are walked in order, one UTC day of the range at a time; days without active parts
//! are skipped without reading data (their partitions are listed from `system.parts`). Each query is
//! [`super::query::page`] (keyset after the last row, `FINAL`, bound parameters); a query that breaks off is
//! resumed from the last row read, with retries within the budget.
//!
//! A batch and a query are different units: a batch (one transaction) may span queries and days. The consumer
//! drops the stream on any failure of its own and opens a new one from its checkpoint's cursor.
//!
//! With [`Source::with_read_metrics`], every query attempt records the rows it took and its ClickHouse time
//! ([`crate::metrics::ReadMetrics::record_query`]).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::key::{DAY_MS, day_of};
use super::query::{self, Slice};
use super::retry::{AttemptError, Schedule};
use super::{Cursor, Filters, RawRow, Source, SourceError, bind, next_day};

/// How a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamShape {
    /// Rows per batch (at least 1).
    pub batch_size: u32,
    /// Rows one query reads at most (`LIMIT`); at least `batch_size`.
    pub rows_per_query: u64,
    /// Batches read ahead of the consumer (at least 1): a job holds the rows of the batch it commits and of
    /// this many more.
    pub buffered_batches: usize,
}

/// Batches of rows in replay order: days ascending, then the sorting key. Dropping it stops the reading.
pub struct RowStream {
    rx: mpsc::Receiver<Result<Vec<RawRow>, SourceError>>,
    task: JoinHandle<()>,
}

impl RowStream {
    /// The next batch (never empty); `None` once every row of the range has been read; an error ends the
    /// stream.
    pub async fn next(&mut self) -> Option<Result<Vec<RawRow>, SourceError>> {
        self.rx.recv().await
    }
}

impl Drop for RowStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Source {
    /// Streams the rows of `f` strictly after `after` (`None`: from the start of the range) in batches of
    /// `shape.batch_size` rows.
    pub fn stream(&self, f: Filters, after: Option<Cursor>, shape: StreamShape) -> RowStream {
        let (tx, rx) = mpsc::channel(shape.buffered_batches.max(1));
        let reader = Reader {
            source: self.clone(),
            f,
            shape: StreamShape {
                batch_size: shape.batch_size.max(1),
                rows_per_query: shape.rows_per_query.max(u64::from(shape.batch_size.max(1))),
                buffered_batches: shape.buffered_batches.max(1),
            },
            tx,
            batch: Vec::new(),
            after,
            attempt: None,
        };
        RowStream {
            rx,
            task: tokio::spawn(reader.run()),
        }
    }
}

/// Why reading stopped before the end.
enum Stop {
    /// The consumer dropped the stream.
    Closed,
    Failed(SourceError),
}

impl From<SourceError> for Stop {
    fn from(e: SourceError) -> Stop {
        Stop::Failed(e)
    }
}

struct Reader {
    source: Source,
    f: Filters,
    shape: StreamShape,
    tx: mpsc::Sender<Result<Vec<RawRow>, SourceError>>,
    /// The batch being filled.
    batch: Vec<RawRow>,
    /// The last row sent (or where the stream started): with the last row of `batch`, where reading resumes.
    after: Option<Cursor>,
    /// The query attempt being read, if any.
    attempt: Option<Attempt>,
}

/// One query attempt, for the read metrics: when it was sent, the rows taken, the time spent waiting for the
/// consumer to take a batch (and since when it waits now, if it does).
struct Attempt {
    started: Instant,
    rows: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
}

impl Attempt {
    /// Time of the attempt so far, waits for the consumer excluded.
    fn clickhouse_time(&self) -> Duration {
        let waiting = self.waiting_since.map_or(Duration::ZERO, |t| t.elapsed());
        self.started.elapsed().saturating_sub(self.waited + waiting)
    }
}

impl Drop for Reader {
    /// A stream dropped by its consumer (the task is aborted mid-query) still counts the rows it took.
    fn drop(&mut self) {
        self.end_attempt();
    }
}

impl Reader {
    async fn run(mut self) {
        match self.read_all().await {
            Ok(()) => {
                if !self.batch.is_empty() {
                    let _ = self.tx.send(Ok(std::mem::take(&mut self.batch))).await;
                }
            }
            Err(Stop::Failed(e)) => {
                let _ = self.tx.send(Err(e)).await;
            }
            Err(Stop::Closed) => {}
        }
    }

    /// Every day of the range that may hold rows, from the cursor's day on.
    async fn read_all(&mut self) -> Result<(), Stop> {
        let f = &self.f;
        if f.start_ms >= f.end_ms {
            return Ok(());
        }
        let (first_day, last_day) = (day_of(f.start_ms), day_of(f.end_ms - 1));
        let candidates = self.source.candidate_days(first_day, last_day).await?;
        let mut day = match &self.after {
            Some(c) => Some(day_of(c.timestamp_ms).max(first_day)),
            None => next_day(candidates.as_deref(), first_day - 1, last_day),
        };
        while let Some(d) = day {
            if d > last_day {
                break;
            }
            self.read_day(d).await?;
            day = next_day(candidates.as_deref(), d, last_day);
        }
        Ok(())
    }

    /// One day: queries of `rows_per_query` rows until one returns fewer.
    async fn read_day(&mut self, day: i64) -> Result<(), Stop> {
        let limit = self.shape.rows_per_query;
        loop {
            if self.query_resumed(day, limit).await? < limit {
                return Ok(());
            }
        }
    }

    /// One query of the day from the last row read; when it breaks off (a transient failure), it is run again
    /// from the row it had reached, on a retry schedule that starts afresh whenever an attempt made progress.
    /// Returns the rows the last attempt read.
    async fn query_resumed(&mut self, day: i64, limit: u64) -> Result<u64, Stop> {
        let inner = self.source.inner.clone();
        let mut schedule = Schedule::new(inner.retry_budget);
        loop {
            let (n, error) = self.query(day, limit).await?;
            let Some(error) = error else {
                return Ok(n);
            };
            if n > 0 {
                schedule = Schedule::new(inner.retry_budget);
            }
            match schedule.next(error) {
                Ok(delay) => tokio::time::sleep(delay).await,
                Err(failure) => {
                    return Err(Stop::Failed(inner.error(&inner.tables.raw(), failure)));
                }
            }
        }
    }

    /// Runs one query of the day after the last row read, passing its rows on: the rows it read, and the error
    /// when it broke off. Waiting for a row longer than the request timeout breaks it off; waiting for the
    /// consumer to take a batch does not count. Records the attempt's rows and ClickHouse time (waits for the
    /// consumer excluded) when the source has read metrics.
    async fn query(&mut self, day: i64, limit: u64) -> Result<(u64, Option<AttemptError>), Stop> {
        self.attempt = Some(Attempt {
            started: Instant::now(),
            rows: 0,
            waited: Duration::ZERO,
            waiting_since: None,
        });
        let result = self.query_rows(day, limit).await;
        let n = self.end_attempt();
        result.map(|error| (n, error))
    }

    /// Ends the current query attempt, if any: records it when the source has read metrics; returns its rows.
    fn end_attempt(&mut self) -> u64 {
        let Some(a) = self.attempt.take() else {
            return 0;
        };
        if let Some(reads) = &self.source.reads {
            reads.record_query(a.rows, a.clickhouse_time());
        }
        a.rows
    }

    /// The body of [`Reader::query`]; counts the rows it passes on in the current attempt.
    async fn query_rows(&mut self, day: i64, limit: u64) -> Result<Option<AttemptError>, Stop> {
        let inner = self.source.inner.clone();
        let after = self
            .batch
            .last()
            .map(Cursor::of)
            .or_else(|| self.after.clone())
            .filter(|c| day_of(c.timestamp_ms) == day);
        let slice = Slice {
            lo_ms: self.f.start_ms.max(day * DAY_MS),
            hi_ms: self.f.end_ms.min((day + 1) * DAY_MS),
            after: after.as_ref(),
            limit,
            block_size: u64::from(self.shape.batch_size).max(1024),
        };
        let sql = query::page(&inner.tables, &inner.key, &self.f, &slice);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let params = serde_json::to_string(&sql.params).unwrap_or_default();
            tracing::debug!(sql = %sql.text, params = %params, "ClickHouse stream query");
        }
        let mut cursor = match bind(inner.client.query(&sql.text), &sql).fetch::<RawRow>() {
            Ok(c) => c,
            Err(e) => return Ok(Some(AttemptError::Client(e))),
        };
        loop {
            let row = match tokio::time::timeout(inner.request_timeout, cursor.next()).await {
                Err(_) => return Ok(Some(AttemptError::Timeout(inner.request_timeout))),
                Ok(Err(e)) => return Ok(Some(AttemptError::Client(e))),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(row))) => row,
            };
            if let Some(a) = self.attempt.as_mut() {
                a.rows += 1;
            }
            self.push(row).await?;
        }
    }

    /// Adds a row to the batch; sends the batch when it is full.
    async fn push(&mut self, row: RawRow) -> Result<(), Stop> {
        self.batch.push(row);
        if self.batch.len() < self.shape.batch_size as usize {
            return Ok(());
        }
        let full = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.shape.batch_size as usize),
        );
        self.after = full.last().map(Cursor::of);
        if let Some(a) = self.attempt.as_mut() {
            a.waiting_since = Some(Instant::now());
        }
        // Sent, then no row more until the consumer has taken it: rows of at most `buffered_batches + 1`
        // batches are held (those queued, and the one being filled), not one more batch waiting for a slot.
        let sent = match self.tx.send(Ok(full)).await {
            Ok(()) => self.tx.reserve().await.map(drop),
            Err(_) => Err(mpsc::error::SendError(())),
        };
        if let Some(a) = self.attempt.as_mut()
            && let Some(since) = a.waiting_since.take()
        {
            a.waited += since.elapsed();
        }
        sent.map_err(|_| Stop::Closed)
    }
}
