//! The `fastfood` binary: parse the command line, start logging, run.

use std::process::ExitCode;

use clap::Parser;
use fastfood::cli::Command;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = fastfood::cli::Cli::parse();
    // lapin logs every connection error itself; the broker module reports
    // them once, in words a student can act on. RUST_LOG=lapin=debug shows them.
    // A rush keeps its embedded server quiet, so its progress bar stays whole.
    let default = match cli.command {
        Command::Rush(_) => "warn,lapin=off",
        _ => "info,lapin=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    match runtime.block_on(fastfood::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fastfood: {e:#}");
            ExitCode::FAILURE
        }
    }
}
