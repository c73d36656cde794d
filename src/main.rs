//! The `fastfood` binary: parse the command line, start logging, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use fastfood::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let default = cli.command.default_log_filter();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal; plain text in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fastfood: {e:#}");
            ExitCode::FAILURE
        }
    }
}
