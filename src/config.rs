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

use crate::broker::QueueType;

/// `fastfood serve`: the restaurant.
#[derive(Parser, Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on for HTTP: 127.0.0.1:7777 for this machine only,
    /// 0.0.0.0:7777 for every interface; port 0 picks a free port.
    #[arg(long, env = "FASTFOOD_LISTEN", default_value = "127.0.0.1:7777", value_parser = parse_listen)]
    pub listen: String,

    /// Kitchen workers in this process (at most 64); 0 for complex mode
    /// (needs --broker).
    #[arg(long, env = "FASTFOOD_WORKERS", default_value_t = 2, value_parser = parse_workers)]
    pub workers: usize,

    /// Most orders that may wait in the in-process queue (1 to 1000000);
    /// past it `/order` answers 503.
    #[arg(long, env = "FASTFOOD_QUEUE_CAPACITY", default_value_t = 100_000, value_parser = parse_capacity)]
    pub queue_capacity: usize,

    /// Most orders in the restaurant at once, waiting, being prepared or
    /// ready to collect (1 to 1000000); past it `/order` answers `503
    /// restaurant_full` until one is collected or cancelled.
    #[arg(long, env = "FASTFOOD_MAX_ORDERS", default_value_t = 10_000, value_parser = parse_max_orders)]
    pub max_orders: usize,

    /// Host names the restaurant's pages are reached by, comma-separated
    /// (e.g. restaurant.example): a browser may place and collect orders only
    /// from a page of this server under one of these names, or of
    /// localhost/127.0.0.1/[::1] when listening there.
    #[arg(long, env = "FASTFOOD_ALLOWED_HOSTS", value_delimiter = ',', value_parser = parse_allowed_host)]
    pub allowed_hosts: Vec<String>,

    /// With --broker: how long an order the broker confirmed may be missing
    /// from the `orders` queue (TAKEN, not in the queue, no worker preparing
    /// it) before this server sends it again (5s to 1h). RabbitMQ can lose a
    /// confirmed message when a node dies; the store still has the order.
    /// Keep it well above --prefetch times --prep-time: an order a worker
    /// holds unclaimed looks missing too (sent twice, it is recognised, but
    /// may be prepared twice).
    #[arg(long, env = "FASTFOOD_LOST_AFTER", default_value = "30s", value_parser = parse_lost_after)]
    pub lost_after: Duration,

    #[command(flatten)]
    pub connections: ConnectionConfig,

    #[command(flatten)]
    pub kitchen: KitchenConfig,
}

/// What one HTTP connection may take, so that one client cannot hold every
/// socket. Past a cap, a new connection is closed at once.
#[derive(Args, Debug, Clone)]
pub struct ConnectionConfig {
    /// Time a request's headers may take to arrive, from its first byte
    /// (1s to 5m); then the connection is closed.
    #[arg(long, env = "FASTFOOD_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_timeout: Duration,

    /// Time a request's body may take to arrive, after its headers (1s to
    /// 5m); then it is answered 408 and the connection closed.
    #[arg(long, env = "FASTFOOD_BODY_TIMEOUT", default_value = "15s", value_parser = parse_timeout)]
    pub body_timeout: Duration,

    /// Time a kept-alive connection may wait for its next request (1s to 5m);
    /// an answer being streamed (/updates) is not idle.
    #[arg(long, env = "FASTFOOD_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// Open connections in all, boards included (1 to 1000000); kept below
    /// the process's limit on open files.
    #[arg(long, env = "FASTFOOD_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = parse_connections)]
    pub max_connections: usize,

    /// Open connections from one client address (1 to 1000000).
    #[arg(long, env = "FASTFOOD_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256, value_parser = parse_connections)]
    pub max_connections_per_client: usize,
}

/// The longest connection timeout: past it a stuck client holds a socket
/// for nothing.
pub const MAX_CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// The most connections a cap may allow.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// A connection timeout: 1s to [`MAX_CONNECTION_TIMEOUT`].
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(time) if (Duration::from_secs(1)..=MAX_CONNECTION_TIMEOUT).contains(&time) => Ok(time),
        _ => Err(format!(
            "{text:?} is not a connection timeout: give a duration from 1s to 5m, e.g. 10s"
        )),
    }
}

fn parse_connections(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of connections: give a whole number from 1 to {MAX_CONNECTIONS}"
        )),
    }
}

/// What a worker process started without a broker is told.
pub const WORKER_NEEDS_BROKER: &str = "a worker process takes its orders from RabbitMQ: give it \
     --broker amqp://guest:guest@127.0.0.1:5672 (or AMQP_URL), and the same --data-dir as the server";

/// What `--broker` is, in `fastfood worker --help`: the shared text says
/// what a server does without it, which a worker cannot.
const WORKER_BROKER_HELP: &str = "RabbitMQ to take orders from, e.g. \
     amqp://guest:guest@127.0.0.1:5672: required, a worker process takes its orders only from there";

/// `fastfood worker`: kitchen workers in their own process (complex mode),
/// so `--broker` is required here.
#[derive(Parser, Debug, Clone)]
#[command(mut_arg("broker", |arg| arg.required(true).help(WORKER_BROKER_HELP)))]
pub struct WorkerConfig {
    /// Kitchen workers in this process, each preparing one order at a time
    /// (at most 64).
    #[arg(long, env = "FASTFOOD_WORKERS", default_value_t = 1, value_parser = parse_workers)]
    pub workers: usize,

    /// Serve GET /metrics for a Prometheus scraper on this address (e.g.
    /// 0.0.0.0:9101); without it a worker process has no HTTP at all.
    #[arg(long, env = "FASTFOOD_METRICS", value_parser = parse_listen)]
    pub metrics: Option<String>,

    #[command(flatten)]
    pub kitchen: KitchenConfig,
}

/// `fastfood import`: a restaurant's files copied into an empty database.
#[derive(Parser, Debug, Clone)]
pub struct ImportConfig {
    /// The data directory to copy from; no process may be using it.
    #[arg(long, env = "FASTFOOD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// The PostgreSQL database to copy into (empty: no orders yet), e.g.
    /// postgres://fastfood:PASSWORD@db1/fastfood.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database: String,
}

/// What every process that touches orders needs.
#[derive(Args, Debug, Clone)]
pub struct KitchenConfig {
    /// Directory of the counter and the order store, shared by every process
    /// of one restaurant. Created if missing, but its parent must exist.
    #[arg(long, env = "FASTFOOD_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// How long preparing one order takes: `10s`, `250ms`, `0`; at most 1h.
    #[arg(long, env = "FASTFOOD_PREP_TIME", default_value = "10s", allow_hyphen_values = true, value_parser = parse_prep_time)]
    pub prep_time: Duration,

    /// PostgreSQL to keep the tickets and orders in, instead of --data-dir,
    /// e.g. postgres://USER:PASSWORD@HOST/fastfood (a standby too:
    /// HOST1,HOST2 and ?target_session_attrs=read-write); any number of
    /// servers and workers, on any machines, then share it.
    // Checked when the store opens, not by a value parser: clap's error
    // would print the URL, password and all.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,

    /// With --database: how many of the latest changes the database's log
    /// keeps for the processes that follow it (older ones are pruned); a
    /// process that falls further behind loads the orders again, as at start.
    #[arg(long, env = "FASTFOOD_KEEP_CHANGES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_changes: u64,

    /// RabbitMQ to queue orders in, e.g. amqp://guest:guest@127.0.0.1:5672
    /// (without it, orders wait in this process); for a cluster, its nodes'
    /// URLs, comma-separated: the process uses one that answers, and another
    /// when that node is lost.
    #[arg(long, env = "AMQP_URL")]
    pub broker: Option<String>,

    /// Chance (0 to 0.9) that a worker fails in the middle of an order and
    /// gives it back, to watch redelivery happen.
    #[arg(long, env = "FASTFOOD_FAIL_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,

    /// With --broker: orders RabbitMQ hands each worker before it has
    /// acknowledged the first (1 to 1000). 1 is fair dispatch: an order goes
    /// to whichever worker is free. More lets a worker claim its next order
    /// while the last one's READY is being written (faster at short
    /// preparation times), but orders then wait behind a busy worker while
    /// another is idle, and a worker that dies hands back all it held.
    #[arg(long, env = "FASTFOOD_PREFETCH", default_value_t = 1, value_parser = parse_prefetch)]
    pub prefetch: u16,

    /// Deliveries an order may have (1 to 100): one delivered this many
    /// times without being finished (it takes its workers down, or they keep
    /// giving it back) is set aside instead of prepared again: CANCELLED by
    /// the kitchen, its message to the `orders.dead` queue, its customer
    /// told to see the counter. A server restarted mid-order counts as a
    /// delivery too.
    #[arg(long, env = "FASTFOOD_MAX_DELIVERIES", default_value_t = 5, value_parser = parse_max_deliveries)]
    pub max_deliveries: u32,

    /// The poison pill of the experiments: a worker that starts preparing an
    /// order whose text contains TEXT aborts its whole process, as a bug
    /// would (no give-back, no goodbye).
    #[arg(long, env = "FASTFOOD_CRASH_ON", value_name = "TEXT", value_parser = parse_crash_on)]
    pub crash_on: Option<String>,

    /// With --broker: the AMQP heartbeat, in whole seconds from 1s to 5min.
    /// RabbitMQ gives the orders of a process silent for about two of them
    /// (frozen, cut off) to another worker; a `heartbeat=` in the broker URL
    /// wins over this.
    #[arg(long, env = "FASTFOOD_HEARTBEAT", default_value = "10s", value_parser = parse_heartbeat)]
    pub heartbeat: Duration,

    /// With --broker: the kind of RabbitMQ queue orders wait in: classic (on
    /// one node) or quorum (replicated over a cluster's nodes; a confirmed
    /// order survives the loss of a minority of them). Every process of a
    /// restaurant must give the same.
    #[arg(long, env = "FASTFOOD_QUEUE_TYPE", default_value = "classic", value_parser = parse_queue_type)]
    pub queue_type: QueueType,
}

/// The most deliveries `--max-deliveries` allows.
pub const MAX_MAX_DELIVERIES: u32 = 100;

/// A delivery limit: 1 to [`MAX_MAX_DELIVERIES`].
pub fn parse_max_deliveries(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_MAX_DELIVERIES).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a delivery limit: give a whole number from 1 (never deliver an order twice) to {MAX_MAX_DELIVERIES}"
        )),
    }
}

/// A poison pill: text that an order can hold (something visible, at most
/// an order's length).
fn parse_crash_on(text: &str) -> Result<String, String> {
    let pill = text.trim();
    if pill.is_empty() || pill.chars().count() > crate::order::MAX_CONTENT_CHARS {
        return Err(format!(
            "{text:?} is not a poison pill: give some text an order can contain, e.g. --crash-on poison"
        ));
    }
    Ok(pill.to_owned())
}

/// The longest AMQP heartbeat: past it a frozen worker holds its order for
/// many minutes.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(300);

/// An AMQP heartbeat: whole seconds, 1s to [`MAX_HEARTBEAT`].
pub fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(time)
            if time.subsec_nanos() == 0
                && (Duration::from_secs(1)..=MAX_HEARTBEAT).contains(&time) =>
        {
            Ok(time)
        }
        _ => Err(format!(
            "{text:?} is not a heartbeat: give whole seconds from 1s to 5min, e.g. 10s \
             (RabbitMQ gives a silent process's orders away after about two)"
        )),
    }
}

/// A RabbitMQ queue type: `classic` or `quorum`.
pub fn parse_queue_type(text: &str) -> Result<QueueType, String> {
    text.parse()
}

/// The most orders RabbitMQ may hand one worker ahead.
pub const MAX_PREFETCH: u16 = 1000;

/// A prefetch count: 1 to [`MAX_PREFETCH`].
pub fn parse_prefetch(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(n) if (1..=MAX_PREFETCH).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a prefetch count: give a whole number from 1 (fair dispatch) to {MAX_PREFETCH}"
        )),
    }
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

/// The longest preparation time: a kitchen that takes longer is a typo.
pub const MAX_PREP_TIME: Duration = Duration::from_secs(3600);
/// The most workers in one process: each is a task and a broker channel, and
/// more than this many cooks in one kitchen is a typo. Start more
/// `fastfood worker` processes to cook more at once.
pub const MAX_WORKERS: usize = 64;
/// The largest in-process queue: a million tickets waiting (a few MB).
pub const MAX_QUEUE_CAPACITY: usize = 1_000_000;
/// The most orders a restaurant may be told to hold: each costs its JSON on
/// every board and in the store's memory.
pub const MAX_MAX_ORDERS: usize = 1_000_000;
/// The highest failure rate: at 1 no order would ever be finished.
pub const MAX_FAIL_RATE: f64 = 0.9;

/// A preparation time: `10s`, `250ms`, `0`; never negative, at most an hour.
pub fn parse_prep_time(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "{text:?}: a preparation time cannot be negative; give 0 or more, e.g. 10s, 250ms or 0"
        ));
    }
    match humantime::parse_duration(text) {
        Ok(time) if time <= MAX_PREP_TIME => Ok(time),
        Ok(_) => Err(format!(
            "{text:?} is longer than a kitchen takes: give at most 1h (e.g. 10s, 250ms or 0)"
        )),
        Err(_) => Err(format!(
            "{text:?} is not a preparation time: give a duration such as 10s, 250ms or 0, at most 1h"
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=MAX_FAIL_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a failure rate between 0 and {MAX_FAIL_RATE} (e.g. 0.1); at 1 no order would ever be finished"
        )),
    }
}

fn parse_capacity(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_QUEUE_CAPACITY).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a queue size: give a whole number from 1 to {MAX_QUEUE_CAPACITY}"
        )),
    }
}

/// The longest `--lost-after`.
const MAX_LOST_AFTER: Duration = Duration::from_secs(3600);

fn parse_lost_after(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(time) if (Duration::from_secs(5)..=MAX_LOST_AFTER).contains(&time) => Ok(time),
        _ => Err(format!(
            "{text:?} is not a time to wait for a missing order: give a duration from 5s to 1h, e.g. 30s"
        )),
    }
}

fn parse_max_orders(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_MAX_ORDERS).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of orders: give a whole number from 1 to {MAX_MAX_ORDERS}"
        )),
    }
}

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of workers: give a whole number from 0 to {MAX_WORKERS} \
             (start more `fastfood worker` processes to cook more at once)"
        )),
    }
}

/// One name of `--allowed-hosts`: a host name or address, as a browser's
/// address bar shows it, without a scheme or a path.
pub fn parse_allowed_host(text: &str) -> Result<String, String> {
    let host = text.trim();
    let bad = host.is_empty()
        || host.contains("://")
        || host.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#' | ',')
        });
    if bad {
        return Err(format!(
            "{text:?} is not a host name: give names such as restaurant.example or 192.168.1.20, \
             comma-separated, without http:// or a path"
        ));
    }
    Ok(host.to_owned())
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

    #[test]
    fn every_number_has_a_bound_that_the_refusal_names() {
        assert_eq!(parse_prep_time("1h").unwrap(), MAX_PREP_TIME);
        assert!(parse_prep_time("61min").unwrap_err().contains("at most 1h"));
        assert!(parse_prep_time("500000000000y").unwrap_err().contains("1h"));
        assert_eq!(parse_workers("64").unwrap(), 64);
        assert!(parse_workers("65").unwrap_err().contains("0 to 64"));
        assert!(parse_workers("100000").unwrap_err().contains("0 to 64"));
        assert_eq!(parse_capacity("1000000").unwrap(), 1_000_000);
        assert!(
            parse_capacity("1000001")
                .unwrap_err()
                .contains("1 to 1000000")
        );
        assert!(parse_capacity("0").is_err());
        assert_eq!(parse_max_orders("1000000").unwrap(), 1_000_000);
        for bad in ["0", "1000001", "-1", "lots"] {
            assert!(
                parse_max_orders(bad).unwrap_err().contains("1 to 1000000"),
                "{bad}"
            );
        }
        assert_eq!(parse_prefetch("1000").unwrap(), 1000);
        for bad in ["0", "1001", "65536", "-1"] {
            assert!(
                parse_prefetch(bad)
                    .unwrap_err()
                    .contains("1 (fair dispatch) to 1000"),
                "{bad}"
            );
        }
        assert_eq!(parse_max_deliveries("100").unwrap(), 100);
        for bad in ["0", "101", "-1", "five"] {
            assert!(
                parse_max_deliveries(bad).unwrap_err().contains("1 (never"),
                "{bad}"
            );
        }
        assert_eq!(parse_crash_on(" poison ").unwrap(), "poison");
        assert!(parse_crash_on("  ").is_err());
        assert_eq!(parse_heartbeat("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_heartbeat("5min").unwrap(), MAX_HEARTBEAT);
        for bad in ["0", "0s", "500ms", "1.5s", "301s", "1h", "-1s", "soon"] {
            assert!(
                parse_heartbeat(bad).unwrap_err().contains("1s to 5min"),
                "{bad}"
            );
        }
        assert_eq!(parse_timeout("5m").unwrap(), MAX_CONNECTION_TIMEOUT);
        for bad in ["0", "999ms", "301s", "soon"] {
            assert!(
                parse_timeout(bad).unwrap_err().contains("1s to 5m"),
                "{bad}"
            );
        }
        assert_eq!(parse_connections("1000000").unwrap(), MAX_CONNECTIONS);
        for bad in ["0", "1000001", "-1"] {
            assert!(
                parse_connections(bad).unwrap_err().contains("1 to 1000000"),
                "{bad}"
            );
        }
        assert_eq!(parse_rate("0.9").unwrap(), 0.9);
        for bad in ["1", "0.95", "NaN", "-0.1", "inf"] {
            assert!(parse_rate(bad).unwrap_err().contains("0 and 0.9"), "{bad}");
        }
        assert_eq!(
            parse_allowed_host(" Restaurant.example ").unwrap(),
            "Restaurant.example"
        );
        for bad in ["", "http://a.example", "a.example/x", "a b"] {
            assert!(parse_allowed_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_queue_type("quorum").unwrap(), QueueType::Quorum);
        assert!(parse_queue_type("Quorum").unwrap_err().contains("classic"));
    }
}
