//! `fastfood rush`: a simulated lunch rush against a running restaurant, or
//! against one it starts in this process.
//!
//! Customers arrive at a set rate whether or not the restaurant keeps up
//! (open loop: a slow restaurant shows up as a growing line and longer waits,
//! not as fewer customers). Each one orders, watches the board until their
//! number is READY, and collects. With `--closed-loop`, `--connections`
//! counters instead order back to back as fast as the server answers, which
//! measures throughput.
//!
//! - `watch`: the one `/updates` stream a rush follows, fanned out to its customers.
//! - `stats`: what is recorded while it runs (hdrhistogram, a timeline).
//! - `report`: the summary, for a person or as JSON. Every customer counts:
//!   one still waiting when the rush ends counts with the time waited so far,
//!   and a figure the rush did not watch is "not measured", never 0.
//! - `chart`: the SVG chart: arrival and ready rates, orders waiting, waits
//!   (the unserved shown apart).
//! - [`sse`]: the crate's one Server-Sent Events reader (the examples and
//!   tests use it too).
//! - `history` and [`verdict`]: with `--history`, every answer and every
//!   board event per server is recorded, and after the rush (and a settle
//!   wait) the checker says whether anything acknowledged was lost, and how
//!   long each server refused orders.

mod chart;
mod history;
mod report;
pub mod sse;
mod stats;
pub mod verdict;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use report::{Latency, Summary, per_second};

use crate::app;
use crate::config::{self, ServeConfig};
use crate::order::Ticket;
use history::Tape;
use stats::{BUCKET, Gauge, InLine, Request, Stats};
use verdict::Answer;
use watch::Watch;

/// Run a simulated lunch rush and report how the restaurant coped.
#[derive(clap::Args, Debug, Clone)]
pub struct RushConfig {
    /// The restaurant to rush, e.g. http://127.0.0.1:7777; several servers
    /// of one restaurant separated by commas: customers are spread across
    /// them, each watching its own server's board. Without it, the rush
    /// starts its own in this process, with a temporary data directory.
    #[arg(long, env = "FASTFOOD_RUSH_TARGET", value_parser = parse_target, value_delimiter = ',')]
    pub target: Vec<String>,

    /// Record every answer and every board event, per server, in FILE
    /// (JSON); after the rush, wait for the acknowledged orders to settle
    /// (--settle), then print the verdict: nothing acknowledged lost, or
    /// exactly what broke, and how long each server refused orders. Exits
    /// with an error when the verdict finds a problem.
    #[arg(long, env = "FASTFOOD_RUSH_HISTORY")]
    pub history: Option<PathBuf>,

    /// With --history: how long to wait, after the rush, for every
    /// acknowledged order to be READY (or COLLECTED where it was collected).
    #[arg(long, env = "FASTFOOD_RUSH_SETTLE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub settle: Duration,

    /// Customers arriving per second. They come whether or not the
    /// restaurant keeps up (open loop), so queueing shows as waiting.
    #[arg(long, env = "FASTFOOD_RUSH_RATE", default_value_t = 100.0, value_parser = parse_rate)]
    pub rate: f64,

    /// How long customers keep arriving: `10s`, `1m`.
    #[arg(long, env = "FASTFOOD_RUSH_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Stop after this many customers (or at --duration, whichever is first).
    #[arg(long, env = "FASTFOOD_RUSH_CUSTOMERS")]
    pub customers: Option<u64>,

    /// Closed loop: --connections counters order back to back, each as soon
    /// as its last order was answered, instead of customers arriving at
    /// --rate. Measures throughput; hides queueing.
    #[arg(long, env = "FASTFOOD_RUSH_CLOSED_LOOP")]
    pub closed_loop: bool,

    /// Connections ordering at once with --closed-loop.
    #[arg(long, env = "FASTFOOD_RUSH_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Customers do not collect: orders pile up on the board as READY.
    #[arg(long, env = "FASTFOOD_RUSH_NO_COLLECT")]
    pub no_collect: bool,

    /// Do not follow /updates at all (needs --no-collect): customers leave
    /// with their ticket. Measures /order alone.
    #[arg(long, env = "FASTFOOD_RUSH_NO_BOARD", requires = "no_collect")]
    pub no_board: bool,

    /// Most customers inside at once. Past it, arrivals are turned away and
    /// counted (open loop), or the counters pause (closed loop).
    #[arg(long, env = "FASTFOOD_RUSH_MAX_INSIDE", default_value_t = 100_000)]
    pub max_inside: u64,

    /// How long to wait, after the last arrival, for the last orders.
    #[arg(long, env = "FASTFOOD_RUSH_DRAIN", default_value = "60s", value_parser = humantime::parse_duration)]
    pub drain: Duration,

    /// How long one request may take before it counts as failed.
    #[arg(long, env = "FASTFOOD_RUSH_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Where to write the chart of the rush (SVG).
    #[arg(long, env = "FASTFOOD_RUSH_CHART", default_value = "rush.svg")]
    pub chart: PathBuf,

    /// Write no chart.
    #[arg(long, env = "FASTFOOD_RUSH_NO_CHART")]
    pub no_chart: bool,

    /// Print the figures as JSON on stdout instead of the summary.
    #[arg(long, env = "FASTFOOD_RUSH_JSON")]
    pub json: bool,

    /// Kitchen workers of the embedded restaurant (2 when not given). With
    /// --target, how many the target has: the report then estimates the
    /// workers that would have kept up (capacity while busy / workers = rate
    /// per worker; arrival rate / rate per worker, rounded up = workers
    /// needed). Without it, that estimate is "not measured".
    #[arg(long, env = "FASTFOOD_RUSH_WORKERS")]
    pub workers: Option<usize>,

    /// Preparation time of the embedded restaurant: `10ms`, `0`.
    #[arg(long, env = "FASTFOOD_RUSH_PREP_TIME", default_value = "10ms", allow_hyphen_values = true, value_parser = config::parse_prep_time)]
    pub prep_time: Duration,

    /// Data directory of the embedded restaurant (kept afterwards); a
    /// temporary one, removed at the end, when not given.
    #[arg(long, env = "FASTFOOD_RUSH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl RushConfig {
    /// Workers of the restaurant the rush starts itself.
    fn embedded_workers(&self) -> usize {
        self.workers.unwrap_or(2)
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: give customers per second, e.g. 100 or 0.5"
        )),
    }
}

/// A restaurant's URL: `http://HOST:PORT` (a bare address is refused with a
/// sentence, rather than reqwest's "relative URL without a base").
fn parse_target(text: &str) -> Result<String, String> {
    let url = text.trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && reqwest::Url::parse(url).is_ok() => Ok(url.to_owned()),
        Some(_) => Err(format!(
            "{text:?} is not a URL of a restaurant: write it as http://HOST:PORT, e.g. http://127.0.0.1:7777"
        )),
        None => Err(format!(
            "{text:?} needs its scheme: write http://{} (a URL that starts with http://)",
            text.split("://").last().unwrap_or(text)
        )),
    }
}

/// Runs one rush and prints its summary (or JSON). Ctrl-C (`shutdown`) ends
/// it early, and what was measured so far is still reported.
pub async fn run(config: RushConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (bases, embedded) = match config.target.is_empty() {
        false => (config.target.clone(), None),
        true => {
            let embedded = Embedded::start(&config).await?;
            (vec![embedded.url.clone()], Some(embedded))
        }
    };
    let label = match &embedded {
        Some(_) => format!(
            "an embedded restaurant ({}, prep time {})",
            app::workers(config.embedded_workers()),
            humantime::format_duration(config.prep_time)
        ),
        None => bases.join(", "),
    };
    let tape = config
        .history
        .as_ref()
        .map(|_| Arc::new(Tape::new(bases.clone(), config.timeout)));
    let result = Rush::new(&config, bases, label, tape.clone())?
        .run(&config, &shutdown)
        .await;
    let judged = match (&tape, &result) {
        (Some(tape), Ok(_)) => Some(judge(&config, tape).await?),
        _ => None,
    };
    if let Some(embedded) = embedded {
        embedded.stop().await?;
    }
    let summary = result?;
    if config.json {
        let mut json = serde_json::to_value(&summary)?;
        if let Some(verdict) = &judged {
            json["verdict"] = serde_json::to_value(verdict)?;
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", summary.text());
        if let Some(verdict) = &judged {
            print!("\n{}", verdict.text());
        }
    }
    match judged {
        Some(verdict) if !verdict.ok => bail!("the verdict found problems (see above)"),
        _ => Ok(()),
    }
}

/// After a rush with `--history`: waits for the acknowledged orders to
/// settle, writes the history, and judges it.
async fn judge(config: &RushConfig, tape: &Tape) -> anyhow::Result<verdict::Verdict> {
    let client = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(connect_timeout(config.timeout))
        .build()?;
    let settled = history::settle(tape, &client, config.settle).await;
    if !settled {
        eprintln!(
            "fastfood rush: after {} some acknowledged orders are still not READY",
            humantime::format_duration(config.settle)
        );
    }
    let recorded = tape.history();
    let path = config.history.as_deref().expect("a history was asked for");
    history::write(path, &recorded)?;
    Ok(verdict::judge(&recorded))
}

/// How long a connection may take to open: a server out of reach counts as
/// unreachable, not as a request that hung.
fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(Duration::from_secs(3))
}

/// A restaurant started by the rush, in this process.
struct Embedded {
    url: String,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _temp: Option<tempfile::TempDir>,
}

impl Embedded {
    async fn start(config: &RushConfig) -> anyhow::Result<Embedded> {
        let (dir, temp) = match &config.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("fastfood-rush-")
                    .tempdir()
                    .context("cannot make a temporary data directory")?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let serve = ServeConfig::try_parse_from([
            "fastfood serve".to_owned(),
            format!("--listen={addr}"),
            format!("--data-dir={}", dir.display()),
            format!("--workers={}", config.embedded_workers()),
            // A rush measures the kitchen, not the bound on orders waiting.
            format!("--max-orders={}", config::MAX_MAX_ORDERS),
            format!(
                "--prep-time={}",
                humantime::format_duration(config.prep_time)
            ),
            // Every customer is this one client: the caps are the
            // descriptor limit's alone.
            format!("--max-connections={}", config::MAX_CONNECTIONS),
            format!("--max-connections-per-client={}", config::MAX_CONNECTIONS),
        ])
        .context("the embedded restaurant's settings")?;
        let stop = CancellationToken::new();
        let mut task = tokio::spawn(app::serve(serve, listener, stop.clone()));
        let url = format!("http://{addr}");
        // Ready when it answers; a restaurant that cannot start says why.
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tokio::select! {
                ended = &mut task => {
                    ended.context("the embedded restaurant panicked")??;
                    bail!("the embedded restaurant stopped at once");
                }
                answer = client.get(format!("{url}/healthz")).send() => {
                    if answer.is_ok_and(|a| a.status().is_success()) {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("the embedded restaurant did not answer within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Embedded {
            url,
            stop,
            task,
            _temp: temp,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task
            .await
            .context("the embedded restaurant panicked")?
    }
}

/// Why a rush stopped early on Ctrl-C.
const INTERRUPTED: &str = "interrupted (Ctrl-C)";

/// The menu customers order from.
const MENU: &[&str] = &[
    "cheeseburger, fries, cola",
    "veggie wrap and a lemonade",
    "9 chicken nuggets, barbecue sauce",
    "fish burger, no onions",
    "large fries",
    "double burger, milkshake (vanilla)",
    "garden salad, water",
];

/// One server of the restaurant, as the rush's customers see it.
struct Counter {
    base: String,
    order_url: String,
    /// This server's board.
    watch: Watch,
}

/// What every customer of one rush shares.
struct Shop {
    /// The servers; customer `n` goes to `n % len`.
    counters: Vec<Counter>,
    /// Connections for `/order` (closed loop: exactly --connections of them).
    orders: reqwest::Client,
    /// Connections for `/take`.
    takes: reqwest::Client,
    stats: Stats,
    /// With `--history`: where every answer is recorded.
    tape: Option<Arc<Tape>>,
    board: bool,
    collect: bool,
    /// Cancelled when the rush ends: customers still waiting leave.
    leave: CancellationToken,
    /// When the rush ended: a customer still waiting counts as having
    /// waited until then.
    ended: OnceLock<Instant>,
}

#[derive(Deserialize)]
struct Ticketed {
    order: Ticket,
    /// The code `/take` asks for, on restaurants that hand one out.
    #[serde(default)]
    pickup_code: Option<serde_json::Value>,
}

/// What a customer holds once the restaurant took their order.
struct Receipt {
    /// The server that took it.
    server: usize,
    ticket: Ticket,
    /// `pickup_code` as `/take` wants it back (a string, or a number's digits).
    code: Option<String>,
    /// When it was in hand.
    at: Instant,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl Shop {
    /// Orders; the receipt, or `None` (recorded).
    async fn order(&self, n: u64, arrival: Instant) -> Option<Receipt> {
        let line = InLine::join(&self.stats);
        let server = n as usize % self.counters.len();
        let menu = MENU[n as usize % MENU.len()];
        // With a history, every order is told apart by its text: the
        // checker sees a ticket that holds another customer's order.
        let body = match &self.tape {
            Some(_) => format!("{menu} (customer {n})"),
            None => menu.to_owned(),
        };
        let sent_at = Instant::now();
        let sent = self
            .orders
            .post(&self.counters[server].order_url)
            .body(body.clone())
            .send()
            .await;
        let record = |answer: Answer| {
            if let Some(tape) = &self.tape {
                tape.ordered(server, sent_at, answer);
            }
        };
        let failure = match sent {
            Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                match response.json::<Ticketed>().await {
                    Ok(t) => {
                        let at = Instant::now();
                        drop(line);
                        record(Answer::Created {
                            ticket: t.order,
                            content: body,
                        });
                        self.stats.lock().ordered(
                            self.stats.since_start(at),
                            at.saturating_duration_since(arrival),
                        );
                        let code = t.pickup_code.map(|code| match code {
                            serde_json::Value::String(code) => code,
                            other => other.to_string(),
                        });
                        return Some(Receipt {
                            server,
                            ticket: t.order,
                            code,
                            at,
                        });
                    }
                    Err(e) => {
                        let reason = format!("201 without a ticket: {e}");
                        record(Answer::Broken {
                            status: 201,
                            detail: reason.clone(),
                        });
                        reason
                    }
                }
            }
            Ok(response) => {
                let (reason, answer) = refusal(response).await;
                record(answer);
                reason
            }
            Err(e) => {
                record(failed(&e));
                error_reason(&e)
            }
        };
        self.stats.error(Request::Order, failure);
        None
    }

    /// A customer leaves unserved as the rush ends: counted with the time
    /// they waited until then (and since their ticket, if they had one).
    fn unserved(&self, arrival: Instant, ticket: Option<(Ticket, Instant)>) {
        let end = *self.ended.get_or_init(Instant::now);
        self.stats.lock().unserved(
            ticket.map(|(t, at)| (t, end.saturating_duration_since(at))),
            end.saturating_duration_since(arrival),
        );
    }

    /// Watches the board for the receipt's order, then collects it.
    async fn wait_and_collect(&self, receipt: Receipt, arrival: Instant) {
        if !self.board {
            return;
        }
        let (server, ticket, ticketed) = (receipt.server, receipt.ticket, receipt.at);
        let counter = &self.counters[server];
        let ready = {
            let _cooking = Gauge::up(&self.stats.cooking);
            let ready = counter.watch.ready(ticket);
            tokio::select! {
                _ = self.leave.cancelled() => None,
                at = ready => at.ok(),
            }
        };
        let Some(ready) = ready else {
            self.unserved(arrival, Some((ticket, ticketed)));
            return;
        };
        self.stats.lock().ready(
            ticket,
            self.stats.since_start(ready),
            ready.saturating_duration_since(ticketed),
            ready.saturating_duration_since(arrival),
        );
        if !self.collect {
            return;
        }
        let sent = Instant::now();
        let mut query = vec![("order", ticket.to_string())];
        query.extend(receipt.code.map(|code| ("code", code)));
        let take = self
            .takes
            .post(format!("{}/take", counter.base))
            .query(&query)
            .send();
        let answer = tokio::select! {
            _ = self.leave.cancelled() => return,
            answer = take => answer,
        };
        if let Some(tape) = &self.tape {
            let status = answer.as_ref().ok().map(|r| r.status().as_u16());
            tape.took(server, ticket, status);
        }
        match answer {
            Ok(response) if response.status().is_success() => {
                let mut recorder = self.stats.lock();
                recorder
                    .collect_latency
                    .saturating_record(stats::micros(sent.elapsed()));
                recorder.collected += 1;
            }
            Ok(response) => {
                let reason = status_reason(response).await;
                self.stats.error(Request::Collect, reason);
            }
            Err(e) => self.stats.error(Request::Collect, error_reason(&e)),
        }
    }

    /// One customer, from arrival to leaving.
    async fn customer(self: Arc<Self>, n: u64, arrival: Instant) {
        let _inside = Gauge::up(&self.stats.inside);
        let receipt = tokio::select! {
            _ = self.leave.cancelled() => {
                self.unserved(arrival, None);
                return;
            }
            receipt = self.order(n, arrival) => receipt,
        };
        if let Some(receipt) = receipt {
            self.wait_and_collect(receipt, arrival).await;
        }
    }
}

/// A refused `/order`: its reason for the summary (`503 queue_full`) and
/// its answer for the history (a 5xx other than 503, or an error that is
/// not a JSON refusal, is broken).
async fn refusal(response: reqwest::Response) -> (String, Answer) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) if status < 500 || status == 503 => (
            format!("{status} {}", body.error),
            Answer::Refused {
                status,
                error: body.error,
            },
        ),
        Ok(body) => (
            format!("{status} {}", body.error),
            Answer::Broken {
                status,
                detail: body.error,
            },
        ),
        Err(_) => (
            status.to_string(),
            Answer::Broken {
                status,
                detail: text.chars().take(200).collect(),
            },
        ),
    }
}

/// A request that got no answer, for the history.
fn failed(e: &reqwest::Error) -> Answer {
    if e.is_connect() {
        Answer::Unreachable
    } else if e.is_timeout() {
        Answer::TimedOut
    } else {
        Answer::Dropped
    }
}

/// `503 queue_full`, from a refusal.
async fn status_reason(response: reqwest::Response) -> String {
    let status = response.status().as_u16();
    match response.json::<ErrorBody>().await {
        Ok(body) => format!("{status} {}", body.error),
        Err(_) => status.to_string(),
    }
}

fn error_reason(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "cannot connect".into()
    } else if e.is_timeout() {
        "timeout".into()
    } else {
        "connection lost".into()
    }
}

struct Rush {
    shop: Arc<Shop>,
    label: String,
}

impl Rush {
    fn new(
        config: &RushConfig,
        bases: Vec<String>,
        label: String,
        tape: Option<Arc<Tape>>,
    ) -> anyhow::Result<Rush> {
        let client = |pool: usize| {
            reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(pool)
                .timeout(config.timeout)
                .connect_timeout(connect_timeout(config.timeout))
                .build()
        };
        let orders_pool = if config.closed_loop {
            config.connections as usize
        } else {
            usize::MAX
        };
        let counters = bases
            .into_iter()
            .enumerate()
            .map(|(i, base)| Counter {
                order_url: format!("{base}/order"),
                base,
                watch: match &tape {
                    Some(tape) => Watch::recording(i, tape.clone()),
                    None => Watch::default(),
                },
            })
            .collect();
        let shop = Shop {
            counters,
            orders: client(orders_pool)?,
            takes: client(usize::MAX)?,
            stats: Stats::new(Instant::now()),
            tape,
            board: !config.no_board,
            collect: !config.no_collect,
            leave: CancellationToken::new(),
            ended: OnceLock::new(),
        };
        Ok(Rush {
            shop: Arc::new(shop),
            label,
        })
    }

    async fn run(
        mut self,
        config: &RushConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Summary> {
        let stop_board = CancellationToken::new();
        let mut followers = Vec::new();
        if self.shop.board {
            for counter in &self.shop.counters {
                followers.push(follow_board(counter, &stop_board).await?);
            }
        }
        // The clock starts once the board is followed, so no READY is missed.
        Arc::get_mut(&mut self.shop).expect("not shared yet").stats = Stats::new(Instant::now());
        let shop = self.shop.clone();

        let progress = progress_bar();
        let ticker_stop = CancellationToken::new();
        let ticker = tokio::spawn(tick(shop.clone(), progress.clone(), ticker_stop.clone()));

        let customers = TaskTracker::new();
        let (arrivals, stopped_early) = if config.closed_loop {
            self.closed_loop(config, &customers, shutdown).await
        } else {
            self.open_loop(config, &customers, shutdown).await
        };
        customers.close();
        tokio::select! {
            _ = customers.wait() => {}
            _ = tokio::time::sleep(config.drain) => {}
            _ = shutdown.cancelled() => {}
        }
        let end = *shop.ended.get_or_init(Instant::now);
        let elapsed = end.saturating_duration_since(shop.stats.start);
        // The timeline stops here: the customers leaving next are the
        // unserved, not a line that cleared.
        ticker_stop.cancel();
        let _ = ticker.await;
        shop.leave.cancel();
        customers.wait().await;
        progress.finish_and_clear();
        stop_board.cancel();
        for follower in followers {
            match follower.await {
                Ok(Err(e)) => tracing::warn!("following the board: {e:#}"),
                Err(e) => tracing::warn!("following the board: {e}"),
                Ok(Ok(())) => {}
            }
        }

        let recorder = shop.stats.lock();
        let (mode, rate, connections) = match config.closed_loop {
            true => ("closed", None, Some(config.connections as usize)),
            false => ("open", Some(config.rate), None),
        };
        let workers = match config.target.is_empty() {
            false => config.workers,
            true => Some(config.embedded_workers()),
        };
        let seen = shop.counters.iter().map(|c| c.watch.seen()).fold(
            watch::Seen::default(),
            |all, one| watch::Seen {
                events: all.events + one.events,
                resyncs: all.resyncs + one.resyncs,
                reconnects: all.reconnects + one.reconnects,
                version: all.version.max(one.version),
            },
        );
        let mut summary = Summary::new(
            &recorder,
            report::Context {
                mode: mode.into(),
                stopped_early,
                target: self.label.clone(),
                rate,
                connections,
                arrivals,
                elapsed,
                board: shop.board,
                collect: shop.collect,
                workers,
                max_inside: config.max_inside,
                seen,
                chart: None,
            },
        );
        if !config.no_chart {
            match chart::draw(&config.chart, &self.label, &recorder, &summary) {
                Ok(()) => summary.chart = Some(config.chart.display().to_string()),
                Err(e) => eprintln!("fastfood rush: {e:#}"),
            }
        }
        Ok(summary)
    }

    /// Customers arrive every 1/rate seconds; returns how long arrivals ran
    /// (--duration, unless they stopped early) and why they stopped early.
    async fn open_loop(
        &self,
        config: &RushConfig,
        customers: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> (Duration, Option<String>) {
        let start = self.shop.stats.start;
        let end = start + config.duration;
        let limit = config.customers.unwrap_or(u64::MAX);
        let interrupted = || {
            (
                Instant::now().min(end).saturating_duration_since(start),
                Some(INTERRUPTED.to_owned()),
            )
        };
        let mut n = 0u64;
        while n < limit {
            let due = start + Duration::from_secs_f64(n as f64 / config.rate);
            if due >= end {
                break;
            }
            if due > Instant::now() {
                tokio::select! {
                    _ = shutdown.cancelled() => return interrupted(),
                    _ = tokio::time::sleep_until(due.into()) => {}
                }
            }
            let inside = self.shop.stats.inside.load(Ordering::Relaxed);
            {
                let mut recorder = self.shop.stats.lock();
                recorder.arrived += 1;
                recorder
                    .bucket(due.saturating_duration_since(start))
                    .arrived += 1;
                if inside >= config.max_inside {
                    recorder.turned_away += 1;
                    n += 1;
                    continue;
                }
            }
            customers.spawn(self.shop.clone().customer(n, due));
            n += 1;
        }
        // The arrivals last until the next customer would have come (the
        // last one's 1/rate is part of the arrivals too): --duration, or
        // n / rate when --customers stopped them. Waiting for that moment
        // makes the rush last what it says, and n / that time the rate.
        let span = match n >= limit {
            true => Duration::from_secs_f64(n as f64 / config.rate).min(config.duration),
            false => config.duration,
        };
        tokio::select! {
            _ = shutdown.cancelled() => return interrupted(),
            _ = tokio::time::sleep_until((start + span).into()) => {}
        }
        let early = (span < config.duration).then(|| format!("--customers {limit} reached"));
        (span, early)
    }

    /// --connections counters order back to back; returns how long they ran
    /// and why they stopped before --duration, if they did.
    async fn closed_loop(
        &self,
        config: &RushConfig,
        customers: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> (Duration, Option<String>) {
        let start = self.shop.stats.start;
        let end = start + config.duration;
        let limit = config.customers.unwrap_or(u64::MAX);
        let next = Arc::new(AtomicU64::new(0));
        let counters = TaskTracker::new();
        for _ in 0..config.connections {
            let (shop, next, customers, shutdown) = (
                self.shop.clone(),
                next.clone(),
                customers.clone(),
                shutdown.clone(),
            );
            let max_inside = config.max_inside;
            counters.spawn(async move {
                while Instant::now() < end && !shutdown.is_cancelled() {
                    if shop.stats.inside.load(Ordering::Relaxed) >= max_inside {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= limit {
                        break;
                    }
                    let arrival = Instant::now();
                    {
                        let mut recorder = shop.stats.lock();
                        recorder.arrived += 1;
                        recorder.bucket(shop.stats.since_start(arrival)).arrived += 1;
                    }
                    let inside = Gauge::up(&shop.stats.inside);
                    let receipt = tokio::select! {
                        _ = shutdown.cancelled() => {
                            shop.unserved(arrival, None);
                            break;
                        }
                        receipt = shop.order(n, arrival) => receipt,
                    };
                    drop(inside);
                    match receipt {
                        Some(receipt) if shop.board => {
                            let shop = shop.clone();
                            customers.spawn(async move {
                                let _inside = Gauge::up(&shop.stats.inside);
                                shop.wait_and_collect(receipt, arrival).await;
                            });
                        }
                        Some(_) => {}
                        // Do not spin against a restaurant that is down.
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            });
        }
        counters.close();
        counters.wait().await;
        let now = Instant::now();
        let early = match () {
            _ if shutdown.is_cancelled() && now < end => Some(INTERRUPTED.to_owned()),
            _ if now < end => Some(format!("--customers {limit} reached")),
            _ => None,
        };
        (now.min(end).saturating_duration_since(start), early)
    }
}

/// Starts following `counter`'s `/updates` and waits for its first board.
async fn follow_board(
    counter: &Counter,
    stop: &CancellationToken,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let mut follower = tokio::spawn(counter.watch.clone().follow(
        client,
        counter.base.clone(),
        stop.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.watch.seen().events == 0 {
        if Instant::now() > deadline {
            bail!("{}/updates sent no board within 10 s", counter.base);
        }
        tokio::select! {
            ended = &mut follower => {
                ended.context("following the board panicked")??;
                bail!("{}/updates ended at once", counter.base);
            }
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    Ok(follower)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("a valid template"),
    );
    bar
}

/// Every [`BUCKET`]: write the gauges into the timeline and show progress.
async fn tick(shop: Arc<Shop>, bar: ProgressBar, stop: CancellationToken) {
    let mut every = tokio::time::interval(BUCKET);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = (Instant::now(), 0u64);
    let mut rate = 0.0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let now = Instant::now();
        shop.stats.sample(now);
        let (ordered, ready, collected, errors) = {
            let r = shop.stats.lock();
            let errors: u64 = r.order_errors.values().chain(r.take_errors.values()).sum();
            (r.ordered, r.ready, r.collected, errors)
        };
        if now.duration_since(last.0) >= Duration::from_secs(1) {
            rate = per_second(ordered - last.1, now.duration_since(last.0));
            last = (now, ordered);
        }
        let waiting =
            shop.stats.in_line.load(Ordering::Relaxed) + shop.stats.cooking.load(Ordering::Relaxed);
        bar.set_message(format!(
            "{ordered} ordered ({rate:.0}/s) · {ready} ready · {collected} collected · {waiting} waiting · {errors} failed"
        ));
        bar.tick();
    }
}
