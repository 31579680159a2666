//! How a subcommand ends: its [`Exit`] status (the one table of exit codes, README "Exit codes") and the
//! [`CliError`] that carries a failure to it.

use std::process::ExitCode;

/// The exit status of every `reprocessor` subcommand. The job outcomes (3–7) are those `watch` reports; the
/// numbers are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// 0: done; `watch`: the job completed.
    Ok,
    /// 1: any other error: Kafka or ClickHouse unreachable, a topic missing, I/O; `check`: a dependency is
    /// not OK; `transform`: every input line failed.
    Error,
    /// 2: usage error: unknown subcommand or flag, a missing or malformed argument (clap's own code).
    Usage,
    /// 3: the job failed (it can be resumed once the cause is fixed).
    Failed,
    /// 4: the job was cancelled.
    Cancelled,
    /// 5: the command was rejected, by the daemon or refused locally because the daemon would reject it.
    Rejected,
    /// 6: `watch --timeout` passed before a final result; `submit --watch`: no answer from the daemon.
    Timeout,
    /// 7: `submit --watch` of a job id that already exists: nothing started (SPEC §3).
    Duplicate,
    /// 78: the configuration cannot be used (file, environment, `-b`, `-X`), named by its key.
    /// (`EX_CONFIG` of sysexits.h.)
    Config,
}

impl Exit {
    /// Every status, in the order of the table.
    pub const ALL: [Exit; 9] = [
        Exit::Ok,
        Exit::Error,
        Exit::Usage,
        Exit::Failed,
        Exit::Cancelled,
        Exit::Rejected,
        Exit::Timeout,
        Exit::Duplicate,
        Exit::Config,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Error => 1,
            Exit::Usage => 2,
            Exit::Failed => 3,
            Exit::Cancelled => 4,
            Exit::Rejected => 5,
            Exit::Timeout => 6,
            Exit::Duplicate => 7,
            Exit::Config => 78,
        }
    }

    /// One line for `--help` and the man page.
    pub const fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success; watch: the job completed",
            Exit::Error => {
                "other errors (Kafka or ClickHouse unreachable, I/O); check: a dependency is not OK; \
                 transform: every input line failed"
            }
            Exit::Usage => "usage error (unknown flag, missing or malformed argument)",
            Exit::Failed => "the job failed (resume it once the cause is fixed)",
            Exit::Cancelled => "the job was cancelled",
            Exit::Rejected => "the command was rejected (by the daemon, or refused locally)",
            Exit::Timeout => "watch --timeout passed; submit --watch: no answer from the daemon",
            Exit::Duplicate => "submit --watch: the job id already exists, nothing started",
            Exit::Config => "bad configuration (file, environment, -b, -X)",
        }
    }

    /// The table of exit codes as text (`--help`, man page).
    pub fn table() -> String {
        let mut s = String::from("Exit codes:\n");
        for e in Exit::ALL {
            s.push_str(&format!("  {:>2}  {}\n", e.code(), e.meaning()));
        }
        s
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// Why a subcommand could not do its work; [`CliError::exit`] is its exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration cannot be used; the text names the key or flag.
    #[error("{0}")]
    Config(String),
    /// A usage error found after parsing (e.g. a flag that does not apply to the subcommand).
    #[error("{0}")]
    Usage(Box<clap::Error>),
    /// Refused before sending: the daemon would reject it (the text says why).
    #[error("{0}")]
    Refused(String),
    /// Everything else: Kafka, ClickHouse, I/O.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl CliError {
    /// The exit status this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Config(_) => Exit::Config,
            CliError::Usage(_) => Exit::Usage,
            CliError::Refused(_) => Exit::Rejected,
            CliError::Other(_) => Exit::Error,
        }
    }

    /// Whether the error is standard output closed by its reader (`reprocessor peek … | head`).
    pub fn is_broken_pipe(&self) -> bool {
        let CliError::Other(e) = self else {
            return false;
        };
        e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        })
    }

    /// Prints the error for subcommand `name` to standard error and returns its exit status. Usage errors
    /// are printed by clap (with the usage line); a reader that closed standard output early is no error.
    pub fn report(self, name: &str) -> Exit {
        if self.is_broken_pipe() {
            return Exit::Ok;
        }
        let exit = self.exit();
        match self {
            CliError::Usage(e) => {
                let _ = e.print();
            }
            other => eprintln!("reprocessor {name}: {other}"),
        }
        exit
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::Other(e.into())
    }
}

/// What a subcommand returns: its exit status, or the error that ends it.
pub type CliResult = Result<Exit, CliError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn exit_codes_are_distinct_and_the_job_outcomes_stable() {
        let codes: HashSet<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), Exit::ALL.len());
        let outcomes: Vec<u8> = [
            Exit::Ok,
            Exit::Failed,
            Exit::Cancelled,
            Exit::Rejected,
            Exit::Timeout,
            Exit::Duplicate,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(outcomes, [0, 3, 4, 5, 6, 7]);
        // clap exits 2 on usage errors: configuration errors must not share it.
        assert_eq!(Exit::Usage.code(), 2);
        assert_ne!(Exit::Config.code(), 2);
    }

    #[test]
    fn errors_map_to_their_exit_status() {
        assert_eq!(CliError::Config("k".into()).exit(), Exit::Config);
        assert_eq!(CliError::Refused("r".into()).exit(), Exit::Rejected);
        assert_eq!(CliError::from(anyhow::anyhow!("x")).exit(), Exit::Error);
        let usage = clap::Error::new(clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(CliError::Usage(Box::new(usage)).exit(), Exit::Usage);
        assert!(Exit::table().contains("78  bad configuration"));
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(CliError::from(pipe).is_broken_pipe());
        assert!(!CliError::from(anyhow::anyhow!("x")).is_broken_pipe());
    }
}
