//! The operator CLI: every subcommand but `run` (the daemon, started by the binary itself).
//!
//! One file per subcommand ([`submit`], [`watch`], [`status`], [`control`] for cancel/pause/resume,
//! [`peek`], [`check`], [`health`], [`transform`], [`docs`] for completions and the man page); [`args`] is the command
//! line and how `--config`, `-b` and `-X` make the effective configuration; [`kafka`] the CLI's Kafka
//! clients; [`render`] what a person sees (progress, summary, tables); [`error`] the exit codes.
//!
//! The subcommands talk to Kafka only (the topics of the configuration), never to the daemon directly:
//! commands are produced on the control topic keyed by job id (SPEC §2, §3), results and checkpoints are
//! read back with `isolation.level=read_committed`. `--json` output is JSON lines on standard output.

pub mod args;
pub mod check;
pub mod control;
pub mod docs;
pub mod error;
pub mod health;
pub mod kafka;
pub mod peek;
pub mod render;
pub mod status;
pub mod submit;
pub mod transform;
pub mod watch;

use std::future::Future;

use clap::CommandFactory;

pub use args::{Args, Cmd, GlobalOpts};
pub use error::{CliError, CliResult, Exit};

use crate::command::ControlAction;

/// Runs one subcommand other than `run` (the binary starts the daemon itself), loading the effective
/// configuration ([`GlobalOpts::config`]) for those that use one ([`Cmd::uses_config`]).
pub fn execute(cmd: &Cmd, global: &GlobalOpts) -> CliResult {
    if !cmd.uses_config() {
        if global.overrides_kafka() {
            let e = Args::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "-b/-X do not apply to `{}`: it talks to no Kafka broker",
                    cmd.name()
                ),
            );
            return Err(CliError::Usage(Box::new(e)));
        }
        return match cmd {
            Cmd::Transform(a) => transform::run(a),
            Cmd::Completions(a) => docs::completions(a),
            Cmd::Man(a) => docs::man(a),
            _ => unreachable!("every subcommand without configuration is listed"),
        };
    }
    let cfg = global.config()?;
    // Variables such as Kubernetes' REPROCESSOR_PORT are ignored, with one warning line (`config` prints it as
    // a comment).
    if let Some(line) = cfg.origin().ignored_env_warning()
        && !matches!(cmd, Cmd::Config)
    {
        eprintln!("reprocessor: warning: {line}");
    }
    match cmd {
        Cmd::Config => {
            print!("{}", cfg.redacted_toml());
            Ok(Exit::Ok)
        }
        Cmd::Check(a) => check::run(&cfg, a),
        Cmd::Health(a) => health::run(&cfg, a),
        Cmd::Submit(a) => submit::run(&cfg, a),
        Cmd::Watch(a) => watch::run(&cfg, a),
        Cmd::Status(a) => status::run(&cfg, a),
        Cmd::Cancel(a) => control::run(&cfg, ControlAction::Cancel, a),
        Cmd::Pause(a) => control::run(&cfg, ControlAction::Pause, a),
        Cmd::Resume(a) => control::run(&cfg, ControlAction::Resume, a),
        Cmd::Peek(a) => peek::run(&cfg, a),
        Cmd::Run | Cmd::Transform(_) | Cmd::Completions(_) | Cmd::Man(_) => {
            unreachable!("`run` is the binary's; the others need no configuration")
        }
    }
}

/// Runs a future to completion on a runtime of its own (the CLI is synchronous around its Kafka calls).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(fut)
}

/// Writes `v` as one JSON line on standard output.
pub fn print_json(v: &impl serde::Serialize) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    out.write_all(b"\n")?;
    out.flush()
}
