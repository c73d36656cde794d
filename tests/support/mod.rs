//! The one test harness: everything talks to a real restaurant on
//! 127.0.0.1 port 0 with a fresh data directory, started in this process
//! ([`TestApp`], the library's `serve`) or as the real binary
//! ([`ServerProcess`], in [`process`], for crashes, signals and several
//! processes on one directory). Both answer the same HTTP helpers, one
//! method per endpoint ([`Api`]). [`sse`] reads `/updates` like a lobby
//! screen, [`files`] reads and writes a data directory by hand,
//! [`invariants`] checks the guarantees afterwards, [`rabbit`] gives a test
//! a RabbitMQ of its own, [`cluster`] a vhost on a shared three-node cluster.
//! Nothing waits a fixed time to assert something:
//! [`wait_until`] and [`wait_for`] poll with a deadline instead.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use futures_util::StreamExt;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod cluster;
pub mod faults;
pub mod files;
pub mod invariants;
pub mod pg;
pub mod process;
pub mod rabbit;
pub mod sse;

pub use files::{
    Damage, dir_contents, each_damage_is_refused, log_line, read_counter, read_store, stored_order,
    write_store,
};
pub use process::{ServerProcess, WorkerProcess, proc_status_bytes, run_to_exit};
pub use sse::{SseClient, SseEvent, streams_client};

/// The longest any single step of a test may take before it fails: generous,
/// because the machine is small and shared. Only a failing test waits this long.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// How long to wait for one SSE event.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20);
/// How often pollers look again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// A plain HTTP client for short requests (never through a proxy).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .expect("an HTTP client")
}

/// Polls `check` until it is true; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it gives a value; panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("gave up after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// An error answer: the status and the parsed `{"error", "message"}` body,
/// checked to be exactly that shape (plus `status` on a 409).
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let text = response.text().await.expect("an error body");
    assert_eq!(got, status, "expected {status} {code}, got {got}: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "an error is JSON, got content-type {content_type:?}: {text}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["error"], code, "{text}");
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {text}"));
    assert!(
        message.len() > 5,
        "the message is a sentence for a person: {text}"
    );
    for key in body.as_object().expect("an object").keys() {
        assert!(
            ["error", "message", "status"].contains(&key.as_str()),
            "unexpected field {key} in {text}"
        );
    }
    body
}

/// A response header as text ("" when missing).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header").to_owned())
        .unwrap_or_default()
}

/// A `201` to `POST /order`: the ticket, its pickup code, and the body.
#[derive(Debug, Clone)]
pub struct Placed {
    pub ticket: u32,
    pub code: String,
    pub body: Value,
}

/// Reads a `201` answer to `POST /order`: its ticket number, checking the
/// `Location` header and the body's shape.
pub async fn ticket_of(response: reqwest::Response) -> u32 {
    placed_of(response).await.ticket
}

/// Reads a `201` answer to `POST /order`, checking the `Location` header and
/// the body's shape: the ticket, its six-digit pickup code and the wait.
pub async fn placed_of(response: reqwest::Response) -> Placed {
    let status = response.status().as_u16();
    let location = header(&response, "location");
    let text = response.text().await.expect("an order body");
    assert_eq!(status, 201, "POST /order answered {status}: {text}");
    let body: Value = serde_json::from_str(&text).expect("a JSON order");
    let ticket = body["order"]
        .as_u64()
        .unwrap_or_else(|| panic!("no ticket in {text}")) as u32;
    assert_eq!(
        location,
        format!("/orders/{ticket}"),
        "the Location of {text}"
    );
    assert_eq!(body["status"], "TAKEN", "{text}");
    let code = body["pickup_code"]
        .as_str()
        .unwrap_or_else(|| panic!("no pickup_code in {text}"))
        .to_owned();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "a pickup code is six digits: {text}"
    );
    assert!(body["ahead"].is_u64(), "ahead in {text}");
    assert!(
        body["estimated_ready_at"]
            .as_str()
            .is_some_and(|t| humantime::parse_rfc3339(t).is_ok()),
        "estimated_ready_at in {text}"
    );
    Placed { ticket, code, body }
}

/// `POST /order` to one of `bases` (round robin), `count` orders with at most
/// `concurrency` in flight; every one must get a `201`. Returns the tickets in
/// the order they were asked for. `bases` may be `&[&app.base]` or a
/// `Vec<String>`.
pub async fn place_orders<S: AsRef<str>>(
    bases: &[S],
    count: usize,
    concurrency: usize,
) -> Vec<u32> {
    placed_orders(bases, count, concurrency)
        .await
        .into_iter()
        .map(|p| p.ticket)
        .collect()
}

/// The pickup code `placed` got for `ticket`.
pub fn code_for(placed: &[Placed], ticket: u32) -> &str {
    &placed
        .iter()
        .find(|p| p.ticket == ticket)
        .unwrap_or_else(|| panic!("order {ticket} was not placed here"))
        .code
}

/// [`place_orders`], with each order's pickup code.
pub async fn placed_orders<S: AsRef<str>>(
    bases: &[S],
    count: usize,
    concurrency: usize,
) -> Vec<Placed> {
    let client = http_client();
    futures_util::stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            let url = format!("{}/order", bases[i % bases.len()].as_ref());
            async move {
                let response = client
                    .post(&url)
                    .body(format!("order {i}: burger and fries"))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("POST {url}: {e}"));
                placed_of(response).await
            }
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// The board as `GET /orders` or an `/updates` event shows it.
#[derive(Debug, Clone)]
pub struct Board {
    pub version: u64,
    pub orders: Vec<Value>,
}

impl Board {
    pub fn from_value(value: &Value) -> Board {
        let version = value["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in a board: {value}"));
        let orders = value["orders"]
            .as_array()
            .unwrap_or_else(|| panic!("no orders in a board: {value}"))
            .clone();
        let tickets: Vec<u64> = orders
            .iter()
            .map(|o| o["order"].as_u64().expect("a ticket"))
            .collect();
        assert!(
            tickets.windows(2).all(|w| w[0] < w[1]),
            "the board lists orders by number: {tickets:?}"
        );
        Board { version, orders }
    }

    /// Each order's status, by ticket.
    pub fn statuses(&self) -> BTreeMap<u32, String> {
        self.orders
            .iter()
            .map(|o| {
                (
                    o["order"].as_u64().unwrap() as u32,
                    o["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Whether exactly `tickets` are on the board and all are READY.
    pub fn all_ready(&self, tickets: &[u32]) -> bool {
        let statuses = self.statuses();
        statuses.len() == tickets.len()
            && tickets
                .iter()
                .all(|t| statuses.get(t).map(String::as_str) == Some("READY"))
    }
}

/// A restaurant's HTTP face, whichever way it runs: one method per endpoint.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    /// The restaurant answering at `base`.
    pub fn at(base: String) -> Api {
        Api {
            base,
            client: http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /order` with `body` (text, or any bytes).
    pub async fn order(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url("/order"))
            .body(body)
            .send()
            .await
            .expect("POST /order")
    }

    /// `POST /order`, expecting a `201`; the ticket.
    pub async fn place(&self, text: &str) -> u32 {
        ticket_of(self.order(text.to_owned()).await).await
    }

    /// `POST /order`, expecting a `201`; the ticket and its pickup code.
    pub async fn place_coded(&self, text: &str) -> Placed {
        placed_of(self.order(text.to_owned()).await).await
    }

    /// `POST /take?order=N&code=C`: collects with the pickup code.
    pub async fn take(&self, ticket: u32, code: &str) -> reqwest::Response {
        self.take_query(&format!("order={ticket}&code={code}"))
            .await
    }

    /// `POST /cancel?order=N&code=C`.
    pub async fn cancel(&self, ticket: u32, code: &str) -> reqwest::Response {
        self.cancel_query(&format!("order={ticket}&code={code}"))
            .await
    }

    /// `POST /cancel?QUERY`.
    pub async fn cancel_query(&self, query: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/cancel?{query}")))
            .send()
            .await
            .expect("POST /cancel")
    }

    /// `POST /take?QUERY`, for queries that are not a plain number.
    pub async fn take_query(&self, query: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/take?{query}")))
            .send()
            .await
            .expect("POST /take")
    }

    /// `GET /orders/N`.
    pub async fn get_order(&self, ticket: u32) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/orders/{ticket}")))
            .send()
            .await
            .expect("GET /orders/N")
    }

    /// `GET /orders/N`, expecting a `200`; the order.
    pub async fn order_json(&self, ticket: u32) -> Value {
        let response = self.get_order(ticket).await;
        assert_eq!(response.status(), 200, "GET /orders/{ticket}");
        response.json().await.expect("a JSON order")
    }

    /// `GET PATH`, expecting a `200` with a JSON body (`/healthz`, `/orders`).
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
            .text()
            .await
            .expect("the metrics' text")
    }

    /// `GET /orders`, parsed and checked for shape.
    pub async fn board(&self) -> Board {
        let response = self
            .client
            .get(self.url("/orders"))
            .send()
            .await
            .expect("GET /orders");
        assert_eq!(response.status(), 200);
        assert!(header(&response, "content-type").starts_with("application/json"));
        Board::from_value(&response.json().await.expect("a JSON board"))
    }

    /// Waits until exactly `tickets` are on the board, all READY.
    pub async fn wait_all_ready(&self, tickets: &[u32]) -> Board {
        let what = format!("all {} orders are READY on {}", tickets.len(), self.base);
        let mut last = None;
        let found = tokio::time::timeout(DEADLINE, async {
            loop {
                let board = self.board().await;
                if board.all_ready(tickets) {
                    return board;
                }
                last = Some(board.statuses());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            let summary = last.map(|s| {
                let mut counts = BTreeMap::new();
                for status in s.values() {
                    *counts.entry(status.clone()).or_insert(0) += 1;
                }
                counts
            });
            panic!("gave up waiting until {what}; the board last had {summary:?}")
        })
    }

    /// Connects a screen to `GET /updates`.
    pub async fn updates(&self) -> SseClient {
        SseClient::connect(&self.url("/updates")).await
    }
}

/// The restaurant running inside the test's runtime.
pub struct TestApp {
    /// Owned when the app made its own directory.
    _dir: Option<TempDir>,
    pub data_dir: PathBuf,
    api: Api,
    token: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    /// `fastfood serve` on port 0 with a fresh data directory and `args`.
    pub async fn spawn(args: &[&str]) -> TestApp {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().to_owned();
        let mut app = TestApp::spawn_at(&path, args).await;
        app._dir = Some(dir);
        app
    }

    /// `fastfood serve` on port 0 with the data in `data_dir` (left in place).
    /// The options are read from `args` alone, never from the environment,
    /// as a [`ServerProcess`] starts without the program's variables.
    pub async fn spawn_at(data_dir: &Path, args: &[&str]) -> TestApp {
        let data = data_dir.to_str().expect("a UTF-8 path");
        let argv = ["serve", "--listen", "127.0.0.1:0", "--data-dir", data]
            .into_iter()
            .chain(args.iter().copied());
        let command = fastfood::config::ServeConfig::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(argv);
        let config =
            fastfood::config::ServeConfig::from_arg_matches(&matches).expect("the options");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token = CancellationToken::new();
        let handle = tokio::spawn(fastfood::app::serve(config, listener, token.clone()));
        let app = TestApp {
            _dir: None,
            data_dir: data_dir.to_owned(),
            api: Api::at(base),
            token,
            handle: Some(handle),
        };
        app.wait_healthy().await;
        app
    }

    async fn wait_healthy(&self) {
        let handle = self.handle.as_ref().expect("running");
        let url = self.url("/healthz");
        wait_until(DEADLINE, "the app answers /healthz", || async {
            if handle.is_finished() {
                return true;
            }
            matches!(self.client.get(&url).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        assert!(!handle.is_finished(), "the app stopped at start-up");
    }

    /// Stops the app as SIGTERM would, and waits (bounded) until it has.
    pub async fn shutdown(mut self) {
        self.token.cancel();
        let handle = self.handle.take().expect("running");
        match tokio::time::timeout(Duration::from_secs(15), handle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the app failed: {e:#}"),
            Ok(Err(e)) => panic!("the app panicked: {e}"),
            Err(_) => panic!("the app did not stop within 15 s of shutdown"),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
