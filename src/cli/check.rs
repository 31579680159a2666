//! `reprocessor check`: connects to Kafka and ClickHouse and reports, per dependency, OK or what is wrong
//! (`--json`: one JSON line per dependency).

use serde::Serialize;

use super::error::{CliResult, Exit};
use super::{block_on, print_json};
use crate::config::Config;
use crate::sink::existing_topics;
use crate::source::Source;

/// `check`'s arguments.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit codes: 0 every dependency OK (a WARN line is OK), 1 one is not \
(all: `reprocessor --help`)."
)]
pub struct CheckArgs {
    /// JSON lines: {"dependency", "status": "ok"|"warn"|"fail", "problem"} per dependency.
    #[arg(long)]
    pub json: bool,
}

/// How a dependency is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Not there yet, but the daemon mends it at start (a topic it creates).
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckLine {
    /// `kafka <servers>`, `topic <name>`, `clickhouse <url> (<database>.<table>)`.
    pub dependency: String,
    pub status: Level,
    /// `None` when OK, else what is wrong.
    pub problem: Option<String>,
}

impl CheckLine {
    fn new(dependency: String, problem: Option<String>) -> CheckLine {
        let status = if problem.is_some() {
            Level::Fail
        } else {
            Level::Ok
        };
        CheckLine {
            dependency,
            status,
            problem,
        }
    }
}

/// Runs every check. Never fails itself: problems are lines of the report.
pub async fn run_checks(cfg: &Config) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    // An unreachable broker is reported within seconds rather than after the daemon's long timeout.
    let mut quick = cfg.clone();
    quick.kafka.operation_timeout_ms = quick.kafka.operation_timeout_ms.min(5_000);
    match existing_topics(&quick).await {
        Ok(topics) => {
            lines.push(CheckLine::new(
                format!("kafka {}", cfg.kafka.bootstrap_servers),
                None,
            ));
            for (key, t) in cfg.topics.all() {
                let mut line = CheckLine::new(format!("topic {}", t.name), None);
                if !topics.contains(&t.name) {
                    line.status = if cfg.topics.create_topics {
                        Level::Warn
                    } else {
                        Level::Fail
                    };
                    line.problem = Some(if cfg.topics.create_topics {
                        "missing (the daemon creates it at start: topics.create_topics = true)"
                            .to_string()
                    } else {
                        format!("missing, and topics.create_topics = false (topics.{key}.name)")
                    });
                }
                lines.push(line);
            }
        }
        Err(e) => lines.push(CheckLine::new(
            format!("kafka {}", cfg.kafka.bootstrap_servers),
            Some(e.to_string()),
        )),
    }
    let mut ch = cfg.clickhouse.clone();
    ch.retry_budget_secs = ch.retry_budget_secs.min(5);
    let problem = match Source::connect(&ch).await {
        Ok(source) => source.ping().await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    lines.push(CheckLine::new(
        format!(
            "clickhouse {} ({}.{})",
            crate::config::redact_url(&cfg.clickhouse.url),
            cfg.clickhouse.database,
            cfg.clickhouse.table
        ),
        problem,
    ));
    lines
}

/// Runs `check`: prints the report; exits 0 when no dependency failed.
pub fn run(cfg: &Config, a: &CheckArgs) -> CliResult {
    let lines = block_on(run_checks(cfg));
    for l in &lines {
        if a.json {
            print_json(l)?;
            continue;
        }
        let label = match l.status {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        match &l.problem {
            None => println!("{label}  {}", l.dependency),
            Some(p) => println!("{label}  {}: {p}", l.dependency),
        }
    }
    let failed = lines.iter().any(|l| l.status == Level::Fail);
    Ok(if failed { Exit::Error } else { Exit::Ok })
}
