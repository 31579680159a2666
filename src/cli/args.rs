//! The command line: [`Args`] (global flags and the subcommand), and how `--config`, `-b` and `-X` become the
//! effective [`Config`] ([`GlobalOpts::config`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::error::{CliError, Exit};
use super::{check, control, docs, health, peek, status, submit, transform, watch};
use crate::config::Config;

/// Replays usage events from ClickHouse into Kafka, on command.
#[derive(Debug, Parser)]
#[command(name = "reprocessor", version, about, after_long_help = Exit::table())]
pub struct Args {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Flags of every subcommand that reads configuration. `-b` and `-X` win over the configuration (its file and
/// environment), like kcat's and Kafka's own tools.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalOpts {
    /// Configuration file layered over config/default.toml (environment variables still win); default: the
    /// file REPROCESSOR_CONFIG names, if set.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (host:port[,host:port…]); wins over kafka.bootstrap_servers.
    #[arg(short = 'b', long = "bootstrap-server", global = true, value_name = "HOST:PORT",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub bootstrap_server: Option<String>,
    /// A librdkafka property for every Kafka client, e.g. -X security.protocol=SASL_SSL (repeatable); wins
    /// over kafka.properties.
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE", value_parser = parse_property)]
    pub property: Vec<(String, String)>,
}

/// A duration flag (`--timeout`): a number of seconds, or a humantime duration (`90s`, `5m`, `1h 30m`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<u64>() {
        Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 90, 90s, 5m)")),
    }
}

/// `KEY=VALUE` of `-X`, split at the first `=`; the key must not be empty.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "`{text}` is not KEY=VALUE (e.g. -X security.protocol=SSL)"
        )),
    }
}

impl GlobalOpts {
    /// Whether `-b` or `-X` was given.
    pub fn overrides_kafka(&self) -> bool {
        self.bootstrap_server.is_some() || !self.property.is_empty()
    }

    /// The effective configuration: the layers of [`Config::load`], then `-b` and `-X` over them.
    /// Errors ([`CliError::Config`]): a bad layer (named by its key), or a `-X` property librdkafka does not
    /// accept (named by the flag and property).
    pub fn config(&self) -> Result<Config, CliError> {
        let mut cfg =
            Config::load(self.config.as_deref()).map_err(|e| CliError::Config(e.to_string()))?;
        self.apply(&mut cfg)?;
        Ok(cfg)
    }

    /// Applies `-b` (to `kafka.bootstrap_servers`) and each `-X` (to `kafka.properties`, later ones win) to
    /// `cfg`, checking every property with librdkafka itself (no connection is made).
    pub fn apply(&self, cfg: &mut Config) -> Result<(), CliError> {
        if let Some(b) = &self.bootstrap_server {
            cfg.kafka.bootstrap_servers = b.clone();
        }
        for (key, value) in &self.property {
            let mut probe = rdkafka::ClientConfig::new();
            probe.set(key, value);
            if let Err(e) = probe.create_native_config() {
                let why = match e {
                    rdkafka::error::KafkaError::ClientConfig(_, desc, _, _) => desc,
                    other => other.to_string(),
                };
                return Err(CliError::Config(format!("-X {key}: {why}")));
            }
            cfg.kafka.properties.insert(key.clone(), value.clone());
        }
        cfg.validate().map_err(|e| CliError::Config(e.to_string()))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon: consume commands, replay jobs, until SIGTERM/SIGINT.
    Run,
    /// Print the effective configuration (secrets redacted), -b and -X included.
    Config,
    /// Check Kafka (and the topics) and ClickHouse, one line per dependency.
    Check(check::CheckArgs),
    /// Ask the running daemon whether it is ready (GET /readyz), e.g. for a container health check.
    Health(health::HealthArgs),
    /// Show what raw payloads become: JSON lines {tenant_id, environment_id, payload} in, one outcome per line
    /// out.
    Transform(transform::TransformArgs),
    /// Submit a replay: build the reprocess command, validate it as the daemon would, produce it and print
    /// the job id.
    Submit(Box<submit::SubmitArgs>),
    /// Follow a job's results until its final one: progress (rows done / estimated total, rows/s, ETA),
    /// then the summary.
    Watch(watch::WatchArgs),
    /// Jobs from the state topic: a table of all, or one job in full.
    Status(status::StatusArgs),
    /// Cancel a job: it stops after its current batch and ends `cancelled`.
    Cancel(control::ControlArgs),
    /// Pause a job after its current batch; its checkpoint is kept for `resume`.
    Pause(control::ControlArgs),
    /// Resume a paused or failed job from its checkpoint.
    Resume(control::ControlArgs),
    /// Print committed records of the output, dead-letter or results topic as JSON lines (key, headers, value).
    Peek(peek::PeekArgs),
    /// Print a shell completion script (e.g. `reprocessor completions bash > /etc/bash_completion.d/reprocessor`).
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff), or write one page per subcommand into a directory.
    Man(docs::ManArgs),
}

impl Cmd {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Run => "run",
            Cmd::Config => "config",
            Cmd::Check(_) => "check",
            Cmd::Health(_) => "health",
            Cmd::Transform(_) => "transform",
            Cmd::Submit(_) => "submit",
            Cmd::Watch(_) => "watch",
            Cmd::Status(_) => "status",
            Cmd::Cancel(_) => "cancel",
            Cmd::Pause(_) => "pause",
            Cmd::Resume(_) => "resume",
            Cmd::Peek(_) => "peek",
            Cmd::Completions(_) => "completions",
            Cmd::Man(_) => "man",
        }
    }

    /// Whether the subcommand reads the configuration (and so `--config`, `-b`, `-X` apply to it).
    pub fn uses_config(&self) -> bool {
        !matches!(self, Cmd::Transform(_) | Cmd::Completions(_) | Cmd::Man(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn kafka_flags_parse_anywhere_and_win_over_configuration() {
        let a = Args::try_parse_from([
            "reprocessor",
            "-b",
            "broker:9093",
            "status",
            "-X",
            "socket.keepalive.enable=true",
            "-X",
            "client.id=a=b",
        ])
        .unwrap();
        let mut cfg = Config::default();
        a.global.apply(&mut cfg).unwrap();
        assert_eq!(cfg.kafka.bootstrap_servers, "broker:9093");
        assert_eq!(cfg.kafka.properties["socket.keepalive.enable"], "true");
        assert_eq!(
            cfg.kafka.properties["client.id"], "a=b",
            "split at the first ="
        );
    }

    #[test]
    fn malformed_or_unknown_properties_are_refused() {
        for bad in [["-X", "novalue"], ["-X", "=v"], ["-b", ""]] {
            let e = Args::try_parse_from(["reprocessor", "status", bad[0], bad[1]]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        for (bad, needle) in [
            ("no.such.property=1", "No such configuration property"),
            ("socket.timeout.ms=soon", "Invalid value"),
        ] {
            let a = Args::try_parse_from(["reprocessor", "status", "-X", bad]).unwrap();
            let e = a.global.apply(&mut Config::default()).unwrap_err();
            assert_eq!(e.exit(), Exit::Config);
            let key = bad.split('=').next().unwrap();
            let text = e.to_string();
            assert!(
                text.contains(&format!("-X {key}")) && text.contains(needle),
                "{text}"
            );
        }
    }
}
