//! `reprocessor completions SHELL` (clap_complete) and `reprocessor man [--dir DIR]` (clap_mangen): both are
//! generated from the command line's own definition ([`Args`]), so they never fall behind it.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Args;
use super::error::{CliResult, Exit};

/// `completions`' arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `man`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ManArgs {
    /// Write reprocessor.1 and one reprocessor-SUBCOMMAND.1 per subcommand into this directory instead of
    /// printing reprocessor.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `shell` on standard output.
pub fn completions(a: &CompletionsArgs) -> CliResult {
    let mut cmd = Args::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(a.shell, &mut cmd, name, &mut std::io::stdout().lock());
    Ok(Exit::Ok)
}

/// Prints the manual page (roff) on standard output, or writes every page into `--dir`.
pub fn man(a: &ManArgs) -> CliResult {
    match &a.dir {
        None => clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout().lock())?,
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(Args::command(), dir)?;
        }
    }
    Ok(Exit::Ok)
}
