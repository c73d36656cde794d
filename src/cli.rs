//! The command line, the top of the crate: `serve`, `worker` and (with the
//! `rush` feature) `rush`. It parses the arguments, installs the signal
//! handler, and hands each command to the part that runs it: [`crate::app`]
//! for the restaurant, [`crate::rush`] for the load tester. Nothing below
//! depends on this module.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Restaurant};
use crate::config::{ImportConfig, ServeConfig, WORKER_NEEDS_BROKER, WorkerConfig};

/// A fast-food restaurant in one binary: customers order and get a ticket,
/// the kitchen prepares orders from a queue, and a lobby board shows every
/// change live.
#[derive(Parser, Debug)]
#[command(name = "fastfood", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the restaurant: take orders, serve the board and the pages, and
    /// cook with --workers worker tasks (--workers 0 --broker URL: complex
    /// mode, where `fastfood worker` processes cook).
    Serve(ServeConfig),
    /// Run kitchen workers in their own process, for complex mode: they take
    /// orders from RabbitMQ and share the data directory with the server.
    Worker(WorkerConfig),
    /// Copy a restaurant from its data directory into an empty PostgreSQL
    /// database (live orders with their pickup codes, history, the ticket
    /// counter), then run `serve` and `worker` with --database. The files
    /// are left as they were.
    Import(ImportConfig),
    /// Simulate a lunch rush against a running restaurant (--target) or one
    /// started in this process, and report how it coped.
    #[cfg(feature = "rush")]
    Rush(crate::rush::RushConfig),
}

impl Cli {
    /// Parses the process's arguments, exiting with clap's message (and
    /// status 2) on a bad one. Unlike [`Parser::parse`], `--help` shows
    /// `[env: NAME]` for a variable that is not set, where clap would show an
    /// empty `[env: NAME=]`, and never shows the broker URL (it may hold a
    /// password).
    pub fn parse_args() -> Cli {
        let matches = env_shown(Cli::command())
            .try_get_matches()
            .unwrap_or_else(|e| {
                // A worker without a broker gets one sentence that says what
                // to add, not clap's usage line (whose options then all look
                // required). Same status as any refused command line.
                if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
                    && e.to_string().contains("--broker")
                {
                    eprintln!("fastfood worker: {WORKER_NEEDS_BROKER}");
                    std::process::exit(2);
                }
                e.exit()
            });
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// Hides the value of every environment variable that is unset (clap
/// would print it as `NAME=`), and of `AMQP_URL`, in `cmd` and below.
fn env_shown(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        let hide = match arg.get_env() {
            Some(name) => {
                name == "AMQP_URL" || name == "DATABASE_URL" || std::env::var_os(name).is_none()
            }
            None => false,
        };
        arg.hide_env_values(hide)
    })
    .mut_subcommands(env_shown)
}

impl Command {
    /// The log filter when `RUST_LOG` is not set. lapin logs every
    /// connection error itself; the broker module reports them once, in
    /// words a student can act on (RUST_LOG=lapin=debug shows lapin's). A
    /// rush keeps its embedded server quiet, so its progress line stays whole.
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            #[cfg(feature = "rush")]
            Command::Rush(_) => "warn,lapin=off",
            _ => "info,lapin=off",
        }
    }
}

/// Runs the command until it fails or Ctrl-C / SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    // Installed before anything else, so that a SIGTERM from the very first
    // moment is a clean stop rather than the default kill.
    tokio::spawn(cancel_on_signal(shutdown.clone())?);
    match cli.command {
        Command::Serve(config) => {
            let listener = TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let addr = listener.local_addr()?;
            let restaurant = Restaurant::open(config, shutdown).await?;
            // Printed once the store and the counter are checked: tests and
            // scripts read this line to know the server is up, and where.
            println!("listening on http://{addr}");
            restaurant.serve(listener).await
        }
        Command::Worker(config) => app::work(config, shutdown).await,
        Command::Import(config) => app::import(config).await,
        #[cfg(feature = "rush")]
        Command::Rush(config) => crate::rush::run(config, shutdown).await,
    }
}

/// A future that cancels `shutdown` on Ctrl-C or SIGTERM; the handlers are
/// in place once this returns.
fn cancel_on_signal(shutdown: CancellationToken) -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
        shutdown.cancel();
    })
}
