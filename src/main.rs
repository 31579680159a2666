//! `reprocessor`: the daemon and its operator tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raw_events_reprocessor::config::{Config, LogFormat};
use raw_events_reprocessor::{cli, daemon};

/// Replays usage events from ClickHouse into Kafka, on command.
#[derive(Parser)]
#[command(name = "reprocessor", version, about)]
struct Args {
    /// Configuration file layered over config/default.toml (environment variables still win).
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
    /// Show what raw payloads become: JSON lines {tenant_id, environment_id, payload} in, one outcome per line out.
    Transform {
        /// Read from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
    },
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
    match args.command {
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
        Cmd::Run => {
            init_logging(&cfg);
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
