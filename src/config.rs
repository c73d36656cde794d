//! What a restaurant process is configured with: the settings of `serve` and
//! `worker`. They live on the engine side, so that [`crate::app`] starts a
//! restaurant from them without knowing the command line; the command line
//! ([`crate::cli`]) and the load tester embed them. Every flag also reads an
//! environment variable, so the same binary is configured the same way by
//! hand, by compose, or by a test. Bad values are refused while parsing, with
//! a sentence that says what to write instead.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

/// `fastfood serve`: the restaurant.
#[derive(Parser, Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on for HTTP: 127.0.0.1:7777 for this machine only,
    /// 0.0.0.0:7777 for every interface; port 0 picks a free port.
    #[arg(long, env = "FASTFOOD_LISTEN", default_value = "127.0.0.1:7777", value_parser = parse_listen)]
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

/// `fastfood worker`: kitchen workers in their own process (complex mode),
/// so `--broker` is required here.
#[derive(Parser, Debug, Clone)]
#[command(mut_arg("broker", |arg| arg.required(true)))]
pub struct WorkerConfig {
    /// Kitchen workers in this process, each preparing one order at a time.
    #[arg(long, env = "FASTFOOD_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Serve GET /metrics for a Prometheus scraper on this address (e.g.
    /// 0.0.0.0:9101); without it a worker process has no HTTP at all.
    #[arg(long, env = "FASTFOOD_METRICS", value_parser = parse_listen)]
    pub metrics: Option<String>,

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
    #[arg(long, env = "FASTFOOD_PREP_TIME", default_value = "10s", allow_hyphen_values = true, value_parser = parse_prep_time)]
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

/// An address to listen on: `HOST:PORT` that resolves. `:0` (a port without
/// a host) is refused with the two addresses people usually mean.
pub fn parse_listen(text: &str) -> Result<String, String> {
    const EXAMPLES: &str = "127.0.0.1:7777 listens on this machine only, 0.0.0.0:7777 on every interface, and port 0 picks a free port";
    if text.starts_with(':') {
        return Err(format!(
            "{text:?} has a port but no address: write 127.0.0.1{text} or 0.0.0.0{text} ({EXAMPLES})"
        ));
    }
    match text.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(text.to_owned()),
        _ => Err(format!(
            "{text:?} is not an address to listen on: write IP:PORT ({EXAMPLES})"
        )),
    }
}

/// A preparation time: `10s`, `250ms`, `0`; never negative.
pub fn parse_prep_time(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "{text:?}: a preparation time cannot be negative; give 0 or more, e.g. 10s, 250ms or 0"
        ));
    }
    humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is not a preparation time: give a duration such as 10s, 250ms or 0")
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_checked_while_parsing() {
        assert_eq!(parse_listen("127.0.0.1:0").unwrap(), "127.0.0.1:0");
        assert!(parse_listen("0.0.0.0:7777").is_ok());
        let no_host = parse_listen(":0").unwrap_err();
        assert!(
            no_host.contains("127.0.0.1:0") && no_host.contains("0.0.0.0:0"),
            "{no_host}"
        );
        assert!(parse_listen("127.0.0.1").is_err(), "no port");
        assert!(parse_listen("127.0.0.1:99999").is_err(), "port too large");
    }

    #[test]
    fn a_preparation_time_is_never_negative() {
        assert_eq!(parse_prep_time("0").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_prep_time("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(
            parse_prep_time("-1")
                .unwrap_err()
                .contains("cannot be negative")
        );
        assert!(parse_prep_time("soon").is_err());
    }
}
