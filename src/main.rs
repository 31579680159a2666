//! `reprocessor`: the daemon and its operator tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use raw_events_reprocessor::command::ControlAction;
use raw_events_reprocessor::config::{Config, LogFormat};
use raw_events_reprocessor::{cli, daemon};

/// Replays usage events from ClickHouse into Kafka, on command.
#[derive(Parser)]
#[command(name = "reprocessor", version, about)]
struct Args {
    /// Configuration file layered over config/default.toml (environment variables still win); default: the
    /// file REPROCESSOR_CONFIG names, if set.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: consume commands, replay jobs, until SIGTERM/SIGINT.
    Run,
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Check Kafka (and the topics) and ClickHouse, one line per dependency.
    Check,
    /// Ask the running daemon whether it is ready (GET /readyz): exit 0 ready, 1 not ready or no answer.
    Health {
        /// Default: http://<observability.metrics_address>/readyz (0.0.0.0 is asked on 127.0.0.1).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        timeout: u64,
    },
    /// Show what raw payloads become: JSON lines {tenant_id, environment_id, payload} in, one outcome per line out.
    Transform {
        /// Read from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Submit a replay: build the reprocess command, validate it as the daemon would, produce it and print
    /// the job id.
    #[command(after_help = WATCH_EXIT_CODES)]
    Submit(Box<SubmitOpts>),
    /// Follow a job's results until its final one: progress (rows done / estimated total, rows/s, ETA),
    /// then the summary.
    #[command(after_help = WATCH_EXIT_CODES)]
    Watch {
        /// The job id.
        job: String,
        /// Give up after this many seconds (exit code 6).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Jobs from the state topic: a table of all, or one job in full.
    Status {
        /// Show this job in full.
        job: Option<String>,
        /// JSON instead of text (one object for a job, an array for the table).
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: it stops after its current batch and ends `cancelled`.
    Cancel(ControlOpts),
    /// Pause a job after its current batch; its checkpoint is kept for `resume`.
    Pause(ControlOpts),
    /// Resume a paused or failed job from its checkpoint.
    Resume(ControlOpts),
    /// Print committed records of the output, dead-letter or results topic as JSON lines (key, headers, value).
    Peek {
        /// Which topic.
        #[arg(value_enum)]
        topic: PeekWhich,
        /// How many records.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// The last records instead of the first.
        #[arg(long)]
        last: bool,
        /// Only this job's records (dead letters by their job_id header, results by key).
        #[arg(long, value_name = "JOB")]
        job: Option<String>,
    },
}

const WATCH_EXIT_CODES: &str = "Exit codes of watch (and submit --watch): 0 completed, 3 failed, \
4 cancelled, 5 rejected (by the daemon, or refused locally by submit/cancel/pause/resume), 6 --timeout passed \
(submit --watch: no answer from the daemon in 120 s), 7 submit --watch of an existing job id (duplicate: \
nothing started), 1 other errors (e.g. Kafka unreachable), 2 bad configuration. For watch, a `duplicate` \
record is reported but is not final.";

#[derive(clap::Args)]
struct SubmitOpts {
    /// tenant_id (required).
    #[arg(long, value_name = "T")]
    tenant: String,
    /// environment_id (required).
    #[arg(long, value_name = "E")]
    environment: String,
    /// Start of the range, inclusive, RFC 3339 (e.g. 2024-01-01T00:00:00Z).
    #[arg(long, value_name = "DATE")]
    start: String,
    /// End of the range, exclusive, RFC 3339; default: when the daemon accepts the command.
    #[arg(long, value_name = "DATE")]
    end: Option<String>,
    /// Only this external_customer_id (repeatable).
    #[arg(long = "customer", value_name = "C")]
    customers: Vec<String>,
    /// Only this event_name (repeatable).
    #[arg(long = "event-name", value_name = "N")]
    event_names: Vec<String>,
    /// Only this event id (repeatable).
    #[arg(long = "event-id", value_name = "ID")]
    event_ids: Vec<String>,
    /// all: every matching row; pending: only rows missing from the events table.
    #[arg(long, value_parser = ["all", "pending"])]
    mode: Option<String>,
    /// Rows per page and per transaction (default: processing.default_batch_size).
    #[arg(long, value_name = "N")]
    batch_size: Option<u32>,
    /// Read and transform, publish nothing; report the counters a real run would.
    #[arg(long)]
    dry_run: bool,
    /// Keep the deterministic subset of rows whose id hashes below R (0 < R <= 1).
    #[arg(long, value_name = "R")]
    sample_rate: Option<f64>,
    /// Publish at most N events per second.
    #[arg(long, value_name = "N")]
    max_events_per_second: Option<f64>,
    /// The job id; default: <tenant>-<UTC time>-<random>.
    #[arg(long, value_name = "ID")]
    job_id: Option<String>,
    /// Go on as `watch` for the new job.
    #[arg(long)]
    watch: bool,
}

#[derive(clap::Args)]
struct ControlOpts {
    /// The job id.
    job: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PeekWhich {
    Output,
    Dlq,
    Results,
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.observability.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cfg.observability.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reprocessor: {e}");
            return ExitCode::from(2);
        }
    };
    // Variables such as Kubernetes' REPROCESSOR_PORT are ignored, with one warning line (the daemon logs it).
    let ignored = cfg.origin().ignored_env_warning();
    if let Some(line) = &ignored
        && !matches!(args.command, Cmd::Run | Cmd::Config)
    {
        eprintln!("reprocessor: warning: {line}");
    }
    match args.command {
        Cmd::Health { url, timeout } => {
            let url = url.unwrap_or_else(|| cli::health::default_url(&cfg));
            let rt = runtime();
            match rt.block_on(cli::health::probe(&url, Duration::from_secs(timeout))) {
                Ok(body) => {
                    println!("ready: {body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("not ready: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Config => {
            print!("{}", cfg.redacted_toml());
            ExitCode::SUCCESS
        }
        Cmd::Transform { input } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match cli::transform::run(input.as_deref(), &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("reprocessor transform: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Check => {
            let rt = runtime();
            if rt.block_on(cli::check::run(&cfg)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Submit(o) => {
            let a = cli::ops::SubmitArgs {
                tenant: o.tenant,
                environment: o.environment,
                start: o.start,
                end: o.end,
                customers: o.customers,
                event_names: o.event_names,
                event_ids: o.event_ids,
                mode: o.mode,
                batch_size: o.batch_size,
                dry_run: o.dry_run,
                sample_rate: o.sample_rate,
                max_events_per_second: o.max_events_per_second,
                job_id: o.job_id,
            };
            let (job_id, bytes) = match cli::ops::build_command(&cfg, &a) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("reprocessor submit: {e:#}");
                    return ExitCode::from(cli::ops::EXIT_REJECTED);
                }
            };
            let rt = runtime();
            let (partition, offset) =
                match rt.block_on(cli::ops::produce_command(&cfg, &job_id, &bytes)) {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("reprocessor submit: {e:#}");
                        return ExitCode::from(cli::ops::EXIT_ERROR);
                    }
                };
            println!("{job_id}");
            if !o.watch {
                return ExitCode::SUCCESS;
            }
            // Our own command's verdict first: a duplicate job id must not pass for the old job's success.
            match cli::ops::command_verdict(
                &cfg,
                &job_id,
                partition,
                offset,
                Duration::from_secs(120),
            ) {
                Ok(Some(r)) if r.status == "duplicate" => {
                    println!(
                        "{} {job_id}: duplicate: {}",
                        r.at,
                        r.reason.as_deref().unwrap_or("")
                    );
                    ExitCode::from(cli::ops::EXIT_DUPLICATE)
                }
                Ok(Some(r)) if r.status == "rejected" => {
                    println!(
                        "{} {job_id}: rejected: {}",
                        r.at,
                        r.reason.as_deref().unwrap_or("")
                    );
                    ExitCode::from(cli::ops::EXIT_REJECTED)
                }
                Ok(None) => {
                    eprintln!(
                        "reprocessor submit: no answer from the daemon within 120 s (is `reprocessor run` running?); \
                         follow it with `reprocessor watch {job_id}`"
                    );
                    ExitCode::from(cli::ops::EXIT_TIMEOUT)
                }
                Ok(Some(_)) => watch(&cfg, &job_id, None),
                Err(e) => {
                    eprintln!("reprocessor submit: {e:#}");
                    ExitCode::from(cli::ops::EXIT_ERROR)
                }
            }
        }
        Cmd::Watch { job, timeout } => watch(&cfg, &job, timeout.map(Duration::from_secs)),
        Cmd::Status { job, json } => {
            let rt = runtime();
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match rt.block_on(cli::ops::status(&cfg, job.as_deref(), json, &mut out)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("reprocessor status: {e:#}");
                    ExitCode::from(cli::ops::EXIT_ERROR)
                }
            }
        }
        Cmd::Cancel(o) => control(&cfg, "cancel", &o.job),
        Cmd::Pause(o) => control(&cfg, "pause", &o.job),
        Cmd::Resume(o) => control(&cfg, "resume", &o.job),
        Cmd::Peek {
            topic,
            limit,
            last,
            job,
        } => {
            let which = match topic {
                PeekWhich::Output => cli::ops::PeekTopic::Output,
                PeekWhich::Dlq => cli::ops::PeekTopic::Dlq,
                PeekWhich::Results => cli::ops::PeekTopic::Results,
            };
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match cli::ops::peek(&cfg, which, limit, last, job.as_deref(), &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("reprocessor peek: {e:#}");
                    ExitCode::from(cli::ops::EXIT_ERROR)
                }
            }
        }
        Cmd::Run => {
            init_logging(&cfg);
            if let Some(line) = ignored {
                tracing::warn!("{line}");
            }
            let rt = runtime();
            match rt.block_on(daemon::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "daemon cannot start");
                    eprintln!("reprocessor: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn watch(cfg: &Config, job: &str, timeout: Option<Duration>) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli::ops::watch(cfg, job, timeout, &mut out) {
        Ok(end) => ExitCode::from(end.exit_code()),
        Err(e) => {
            eprintln!("reprocessor watch: {e:#}");
            ExitCode::from(cli::ops::EXIT_ERROR)
        }
    }
}

fn control(cfg: &Config, action: &str, job: &str) -> ExitCode {
    let bytes = match cli::ops::control_command(cfg, action, job) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("reprocessor {action}: {e:#}");
            return ExitCode::from(cli::ops::EXIT_REJECTED);
        }
    };
    let kind = match action {
        "cancel" => ControlAction::Cancel,
        "pause" => ControlAction::Pause,
        _ => ControlAction::Resume,
    };
    let rt = runtime();
    if let Err(e) = rt.block_on(cli::ops::check_control(cfg, kind, job)) {
        eprintln!("reprocessor {action} {job}: refused: {e:#}");
        return ExitCode::from(cli::ops::EXIT_REJECTED);
    }
    let sent_at = raw_events_reprocessor::command::format_ms(
        raw_events_reprocessor::command::now_ms() - 2_000,
    );
    let (partition, offset) = match rt.block_on(cli::ops::produce_command(cfg, job, &bytes)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("reprocessor {action}: {e:#}");
            return ExitCode::from(cli::ops::EXIT_ERROR);
        }
    };
    println!("{action} {job}: sent (control partition {partition}, offset {offset})");
    // The job's owner honours it between batches: wait a little for that, or for a rejection.
    let done = match kind {
        ControlAction::Cancel => "cancelled",
        ControlAction::Pause => "paused",
        ControlAction::Resume => "resumed",
    };
    let topic = cfg.topics.commands.name.clone();
    let answer = cli::ops::wait_for_result(cfg, job, Duration::from_secs(20), |r| {
        (r.status == "rejected"
            && r.topic.as_deref() == Some(topic.as_str())
            && r.partition == Some(partition)
            && r.offset == Some(offset))
            || (r.status == done && r.at >= sent_at)
    });
    match answer {
        Ok(Some(r)) if r.status == "rejected" => {
            println!(
                "{} {job}: rejected: {}",
                r.at,
                r.reason.as_deref().unwrap_or("")
            );
            ExitCode::from(cli::ops::EXIT_REJECTED)
        }
        Ok(Some(r)) => {
            println!("{} {job}: {}", r.at, r.status);
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!(
                "{job}: requested; the job's owner applies it after its current batch (`reprocessor status {job}`)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("reprocessor {action}: {e:#}");
            ExitCode::from(cli::ops::EXIT_ERROR)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
