//! A lunch rush from the examples, until `fastfood rush` is wired in:
//! `cargo run --release --example rush -- --rate 500 --duration 10s`.

use clap::Parser;
use fastfood::rush::{self, RushConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "rush",
    about = "Run a simulated lunch rush and report how the restaurant coped."
)]
struct Args {
    #[command(flatten)]
    rush: RushConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    rush::run(args.rush, shutdown).await
}
