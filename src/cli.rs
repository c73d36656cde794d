//! The command line. Every flag also reads an environment variable, so the
//! same binary is configured the same way by hand, by compose, or by a test.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    /// Simulate a lunch rush against a running restaurant (--target) or one
    /// started in this process, and report how it coped.
    Rush(crate::rush::RushConfig),
}

#[derive(Parser, Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on for HTTP (port 0 picks a free port).
    #[arg(long, env = "FASTFOOD_LISTEN", default_value = "127.0.0.1:7777")]
    pub listen: String,

    /// Kitchen workers in this process; 0 for complex mode (needs --broker).
    #[arg(long, env = "FASTFOOD_WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// Most orders that may wait in the in-process queue; past it `/order`
    /// answers 503.
    #[arg(long, env = "FASTFOOD_QUEUE_CAPACITY", default_value_t = 100_000, value_parser = parse_capacity)]
    pub queue_capacity: usize,

    #[command(flatten)]
    pub kitchen: KitchenConfig,
}

#[derive(Parser, Debug, Clone)]
pub struct WorkerConfig {
    /// Kitchen workers in this process, each preparing one order at a time.
    #[arg(long, env = "FASTFOOD_WORKERS", default_value_t = 1)]
    pub workers: usize,

    #[command(flatten)]
    pub kitchen: KitchenConfig,
}

/// What every process that touches orders needs.
#[derive(Args, Debug, Clone)]
pub struct KitchenConfig {
    /// Directory of the counter and the order store, shared by every process
    /// of one restaurant.
    #[arg(long, env = "FASTFOOD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// How long preparing one order takes: `10s`, `250ms`, `0`.
    #[arg(long, env = "FASTFOOD_PREP_TIME", default_value = "10s", value_parser = humantime::parse_duration)]
    pub prep_time: Duration,

    /// RabbitMQ to queue orders in, e.g. amqp://guest:guest@127.0.0.1:5672
    /// (without it, orders wait in this process).
    #[arg(long, env = "AMQP_URL")]
    pub broker: Option<String>,

    /// Chance (0 to 1) that a worker fails in the middle of an order and gives
    /// it back, to watch redelivery happen.
    #[arg(long, env = "FASTFOOD_FAIL_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{text:?} is not a rate between 0 and 1 (e.g. 0.1)")),
    }
}

fn parse_capacity(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a queue size: give a whole number from 1 up"
        )),
    }
}
