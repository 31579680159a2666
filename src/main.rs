//! `reprocessor`: the daemon (`run`) and its operator tools ([`cli`]).

use std::process::ExitCode;

use clap::Parser;
use raw_events_reprocessor::cli::{self, Args, CliError, CliResult, Cmd, Exit, GlobalOpts};
use raw_events_reprocessor::config::{Config, LogFormat};
use raw_events_reprocessor::daemon;

fn main() -> ExitCode {
    // Usage errors exit 2 here, help and version 0 (clap's own codes).
    let args = Args::parse();
    let name = args.command.name();
    let result = match &args.command {
        Cmd::Run => run(&args.global),
        cmd => cli::execute(cmd, &args.global),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(e) => e.report(name).into(),
    }
}

/// `reprocessor run`: the daemon, until SIGTERM/SIGINT.
fn run(global: &GlobalOpts) -> CliResult {
    let cfg = global.config()?;
    init_logging(&cfg);
    // Variables such as Kubernetes' REPROCESSOR_PORT are ignored, with one warning line.
    if let Some(line) = cfg.origin().ignored_env_warning() {
        tracing::warn!("{line}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(daemon::run(cfg, daemon::shutdown_signal())) {
        Ok(()) => Ok(Exit::Ok),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "daemon cannot start");
            Err(CliError::Other(e))
        }
    }
}

/// Logs on standard error, text or JSON (`observability.log_format`), filtered by `RUST_LOG` or
/// `observability.log_level`; text is coloured only on a terminal and without `NO_COLOR`.
fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.observability.log_level));
    let ansi = cli::render::color_allowed(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match cfg.observability.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
