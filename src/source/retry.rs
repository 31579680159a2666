//! Which ClickHouse failures are worth retrying, and the retry loop itself (`backon`, exponential backoff with
//! jitter, bounded by `ClickHouseConfig::retry_budget_secs`).

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

/// One failed attempt.
#[derive(Debug)]
pub enum AttemptError {
    /// The client's error (network, HTTP, server exception, decoding).
    Client(clickhouse::error::Error),
    /// No complete answer within `request_timeout_secs`.
    Timeout(Duration),
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Client(e) => {
                // hyper's errors hide the OS cause (e.g. "Connection refused") in their source chain; each
                // text is written once (a wrapper often repeats its source's text).
                let mut text = e.to_string();
                let mut src = std::error::Error::source(e);
                while let Some(s) = src {
                    let more = s.to_string();
                    if !more.is_empty() && !text.contains(&more) {
                        text.push_str(": ");
                        text.push_str(&more);
                    }
                    src = s.source();
                }
                f.write_str(&text)
            }
            AttemptError::Timeout(d) => write!(
                f,
                "no answer within {} s (request timeout)",
                d.as_secs_f64()
            ),
        }
    }
}

/// What kind of failure an attempt was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Worth another attempt: the server is down or overloaded, the connection broke, a timeout.
    Transient,
    /// Credentials refused or access denied.
    Auth,
    /// TLS refused: the server's certificate is not trusted or does not match the host, or the server does
    /// not speak TLS on that port.
    Tls,
    /// The database or table does not exist.
    MissingTable,
    /// Anything else the server or the client refused (syntax, unknown column, type mismatch, …).
    Permanent,
}

/// ClickHouse error codes that are worth retrying (server busy, network, timeouts, replicas or Keeper away).
const TRANSIENT_CODES: &[u32] = &[
    3,    // UNEXPECTED_END_OF_FILE
    32,   // ATTEMPT_TO_READ_AFTER_EOF
    159,  // TIMEOUT_EXCEEDED
    164,  // READONLY (replica temporarily read-only)
    202,  // TOO_MANY_SIMULTANEOUS_QUERIES
    203,  // NO_FREE_CONNECTION
    209,  // SOCKET_TIMEOUT
    210,  // NETWORK_ERROR
    236,  // ABORTED
    241,  // MEMORY_LIMIT_EXCEEDED (server-wide pressure; another attempt may fit)
    242,  // TABLE_IS_READ_ONLY
    252,  // TOO_MANY_PARTS
    285,  // TOO_FEW_LIVE_REPLICAS
    319,  // UNKNOWN_STATUS_OF_INSERT
    394,  // QUERY_WAS_CANCELLED
    425,  // SYSTEM_ERROR
    439,  // CANNOT_SCHEDULE_TASK
    999,  // KEEPER_EXCEPTION
    1000, // POCO_EXCEPTION
];
const AUTH_CODES: &[u32] = &[192, 193, 194, 195, 497, 516];
const MISSING_TABLE_CODES: &[u32] = &[60, 81];

/// The `Code: N` of a ClickHouse exception text, if any.
pub fn error_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Classifies a failed attempt by the client's error kind, then the server's error code, then its text.
pub fn classify(e: &AttemptError) -> Class {
    use clickhouse::error::Error as E;
    let err = match e {
        AttemptError::Timeout(_) => return Class::Transient,
        AttemptError::Client(err) => err,
    };
    match err {
        E::Network(e) if super::http::is_tls_refusal(e.as_ref()) => Class::Tls,
        E::Network(_) | E::TimedOut | E::Other(_) => Class::Transient,
        E::BadResponse(text) => classify_text(text),
        _ => Class::Permanent,
    }
}

/// Classifies a server's error answer (the body, or `Code: N`, or the bare HTTP status when the body was empty).
pub fn classify_text(text: &str) -> Class {
    if let Some(code) = error_code(text) {
        if TRANSIENT_CODES.contains(&code) {
            return Class::Transient;
        }
        if AUTH_CODES.contains(&code) {
            return Class::Auth;
        }
        if MISSING_TABLE_CODES.contains(&code) {
            return Class::MissingTable;
        }
        return Class::Permanent;
    }
    let lower = text.to_ascii_lowercase();
    const TRANSIENT_TEXT: &[&str] = &[
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "service unavailable",
        "bad gateway",
        "gateway timeout",
        "connection refused",
        "connection reset",
        "broken pipe",
        "timed out",
        "too many simultaneous queries",
    ];
    if TRANSIENT_TEXT.iter().any(|t| lower.contains(t)) {
        return Class::Transient;
    }
    if lower.starts_with("401")
        || lower.starts_with("403")
        || lower.contains("authentication failed")
    {
        return Class::Auth;
    }
    Class::Permanent
}

/// The final failure of a retried operation.
#[derive(Debug)]
pub struct Failure {
    pub class: Class,
    pub error: AttemptError,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// The retry schedule of one operation (exponential backoff with jitter, 100 ms doubling up to 10 s, from
/// `backon`) within a time budget. [`retry`] runs an operation with it; a stream resumed by hand from where it
/// broke uses it directly.
pub struct Schedule {
    started: Instant,
    budget: Duration,
    delays: backon::ExponentialBackoff,
    attempts: u32,
}

impl Schedule {
    /// A schedule whose retries stop once `budget` has elapsed since now.
    pub fn new(budget: Duration) -> Schedule {
        Schedule {
            started: Instant::now(),
            budget,
            delays: ExponentialBuilder::default()
                .with_jitter()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(10))
                .with_factor(2.0)
                .without_max_times()
                .build(),
            attempts: 0,
        }
    }

    /// After a failed attempt: the delay before the next one when the failure is transient and the budget
    /// allows, else the final [`Failure`].
    pub fn next(&mut self, error: AttemptError) -> Result<Duration, Failure> {
        self.attempts += 1;
        let class = classify(&error);
        let elapsed = self.started.elapsed();
        match self.delays.next() {
            Some(d) if class == Class::Transient && elapsed + d < self.budget => {
                tracing::warn!(error = %error, retry_in_ms = d.as_millis() as u64, "transient ClickHouse error, retrying");
                Ok(d)
            }
            _ => Err(Failure {
                class,
                error,
                attempts: self.attempts,
                elapsed,
            }),
        }
    }
}

/// Runs `op` (each attempt bounded by `timeout`) and retries transient failures on a [`Schedule`] until
/// `budget` has elapsed. Permanent failures return at once.
pub async fn retry<T, F, Fut>(budget: Duration, timeout: Duration, mut op: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, clickhouse::error::Error>>,
{
    let mut schedule = Schedule::new(budget);
    loop {
        let error = match tokio::time::timeout(timeout, op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => AttemptError::Client(e),
            Err(_) => AttemptError::Timeout(timeout),
        };
        tokio::time::sleep(schedule.next(error)?).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_texts() {
        assert_eq!(
            error_code("Code: 60. DB::Exception: Unknown table"),
            Some(60)
        );
        assert_eq!(error_code("nothing"), None);
        assert_eq!(
            classify_text("Code: 60. DB::Exception: Table x does not exist"),
            Class::MissingTable
        );
        assert_eq!(
            classify_text("Code: 62. DB::Exception: Syntax error"),
            Class::Permanent
        );
        assert_eq!(
            classify_text("Code: 47. DB::Exception: Unknown identifier"),
            Class::Permanent
        );
        assert_eq!(
            classify_text("Code: 516. DB::Exception: default: Authentication failed"),
            Class::Auth
        );
        assert_eq!(
            classify_text("Code: 202. DB::Exception: Too many simultaneous queries"),
            Class::Transient
        );
        assert_eq!(classify_text("Code: 159"), Class::Transient);
        assert_eq!(classify_text("503 Service Unavailable"), Class::Transient);
        assert_eq!(
            classify_text("<html>502 Bad Gateway</html>"),
            Class::Transient
        );
        assert_eq!(classify_text("400 Bad Request"), Class::Permanent);
        assert_eq!(
            classify(&AttemptError::Timeout(Duration::from_secs(1))),
            Class::Transient
        );
        assert_eq!(
            classify(&AttemptError::Client(
                clickhouse::error::Error::SchemaMismatch("x".into())
            )),
            Class::Permanent
        );
    }

    #[tokio::test]
    async fn permanent_is_not_retried_and_transient_stops_at_budget() {
        let mut calls = 0;
        let r: Result<(), _> = retry(Duration::from_secs(30), Duration::from_secs(1), || {
            calls += 1;
            async {
                Err(clickhouse::error::Error::BadResponse(
                    "Code: 62. DB::Exception: Syntax error".into(),
                ))
            }
        })
        .await;
        let f = r.unwrap_err();
        assert_eq!((f.class, f.attempts, calls), (Class::Permanent, 1, 1));

        let started = Instant::now();
        let r: Result<(), _> = retry(
            Duration::from_millis(500),
            Duration::from_secs(1),
            || async {
                Err(clickhouse::error::Error::BadResponse(
                    "503 Service Unavailable".into(),
                ))
            },
        )
        .await;
        let f = r.unwrap_err();
        assert_eq!(f.class, Class::Transient);
        assert!(f.attempts >= 2, "{}", f.attempts);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
