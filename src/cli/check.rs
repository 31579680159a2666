//! `reprocessor check`: connects to Kafka and ClickHouse and reports, per dependency, OK or what is wrong.

use crate::config::Config;
use crate::sink::existing_topics;
use crate::source::Source;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// `kafka`, `topic <name>`, `clickhouse`.
    pub dependency: String,
    /// `None` when OK, else what is wrong.
    pub problem: Option<String>,
}

/// Runs every check. Never fails itself: problems are lines of the report.
pub async fn run_checks(cfg: &Config) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    // An unreachable broker is reported within seconds rather than after the daemon's long timeout.
    let mut quick = cfg.clone();
    quick.kafka.operation_timeout_ms = quick.kafka.operation_timeout_ms.min(5_000);
    match existing_topics(&quick).await {
        Ok(topics) => {
            lines.push(CheckLine {
                dependency: format!("kafka {}", cfg.kafka.bootstrap_servers),
                problem: None,
            });
            for (key, t) in cfg.topics.all() {
                let problem = (!topics.contains(&t.name)).then(|| {
                    if cfg.topics.create_topics {
                        "missing (the daemon creates it at start: topics.create_topics = true)"
                            .to_string()
                    } else {
                        format!("missing, and topics.create_topics = false (topics.{key}.name)")
                    }
                });
                lines.push(CheckLine {
                    dependency: format!("topic {}", t.name),
                    problem,
                });
            }
        }
        Err(e) => lines.push(CheckLine {
            dependency: format!("kafka {}", cfg.kafka.bootstrap_servers),
            problem: Some(e.to_string()),
        }),
    }
    let mut ch = cfg.clickhouse.clone();
    ch.retry_budget_secs = ch.retry_budget_secs.min(5);
    let problem = match Source::connect(&ch).await {
        Ok(source) => source.ping().await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    lines.push(CheckLine {
        dependency: format!(
            "clickhouse {} ({}.{})",
            crate::config::redact_url(&cfg.clickhouse.url),
            cfg.clickhouse.database,
            cfg.clickhouse.table
        ),
        problem,
    });
    lines
}

/// Prints the report; returns whether every dependency is OK.
pub async fn run(cfg: &Config) -> bool {
    let lines = run_checks(cfg).await;
    let mut ok = true;
    for l in &lines {
        match &l.problem {
            None => println!("OK    {}", l.dependency),
            Some(p) if p.contains("create_topics = true") => {
                println!("WARN  {}: {p}", l.dependency)
            }
            Some(p) => {
                ok = false;
                println!("FAIL  {}: {p}", l.dependency);
            }
        }
    }
    ok
}
