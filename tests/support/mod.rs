//! Helpers shared by the end-to-end test crates (`mod support;` in each).
//!
//! Everything talks to a real restaurant: [`TestApp`] runs `fastfood::app::serve`
//! in the test's own runtime on port 0 with a temporary data directory;
//! [`ServerProcess`] runs the real binary as a child, for crashes, signals and
//! several processes on one directory. [`SseClient`] reads `/updates` like a
//! lobby screen. Nothing waits a fixed time to assert something: [`wait_until`]
//! and [`wait_for`] poll with a deadline instead.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
pub use eventsource_stream::Event;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod invariants;
pub mod rabbit;

/// The longest any single step of a test may take before it fails: generous,
/// because the machine is small and shared. Only a failing test waits this long.
pub const DEADLINE: Duration = Duration::from_secs(60);
/// How long to wait for one SSE event.
pub const EVENT_DEADLINE: Duration = Duration::from_secs(20);
/// How often pollers look again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Environment variables that would change what a child process does.
const INHERITED_CONFIG: &[&str] = &[
    "FASTFOOD_LISTEN",
    "FASTFOOD_WORKERS",
    "FASTFOOD_QUEUE_CAPACITY",
    "FASTFOOD_DATA_DIR",
    "FASTFOOD_PREP_TIME",
    "FASTFOOD_FAIL_RATE",
    "FASTFOOD_BROKER",
    "AMQP_URL",
];

/// A plain HTTP client for short requests (never through a proxy).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .expect("an HTTP client")
}

/// A client for streams: no overall timeout (each event has its own deadline).
fn stream_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
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

/// Reads a `201` answer to `POST /order`: its ticket number, checking the
/// `Location` header and the body's shape.
pub async fn ticket_of(response: reqwest::Response) -> u32 {
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
    ticket
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
                ticket_of(response).await
            }
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// `GET {base}/orders`, parsed and checked for shape.
pub async fn fetch_board(client: &reqwest::Client, base: &str) -> Board {
    let response = client
        .get(format!("{base}/orders"))
        .send()
        .await
        .expect("GET /orders");
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("application/json"));
    Board::from_value(&response.json().await.expect("a JSON board"))
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

/// The restaurant running inside the test's runtime.
pub struct TestApp {
    /// Owned when the app made its own directory.
    _dir: Option<TempDir>,
    pub data_dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub client: reqwest::Client,
    token: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
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
    pub async fn spawn_at(data_dir: &Path, args: &[&str]) -> TestApp {
        let data = data_dir.to_str().expect("a UTF-8 path");
        let argv = ["serve", "--listen", "127.0.0.1:0", "--data-dir", data]
            .into_iter()
            .chain(args.iter().copied());
        let config = fastfood::cli::ServeConfig::parse_from(argv);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token = CancellationToken::new();
        let handle = tokio::spawn(fastfood::app::serve(config, listener, token.clone()));
        let app = TestApp {
            _dir: None,
            data_dir: data_dir.to_owned(),
            base,
            client: http_client(),
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

    /// `POST /take?order=N`.
    pub async fn take(&self, ticket: u32) -> reqwest::Response {
        self.take_query(&format!("order={ticket}")).await
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

    /// `GET /orders`.
    pub async fn board(&self) -> Board {
        fetch_board(&self.client, &self.base).await
    }

    /// Waits until exactly `tickets` are on the board, all READY.
    pub async fn wait_all_ready(&self, tickets: &[u32]) -> Board {
        wait_ready(&self.client, &self.base, tickets).await
    }

    /// Connects a screen to `GET /updates`.
    pub async fn updates(&self) -> SseClient {
        SseClient::connect(&self.url("/updates")).await
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

/// Waits until the board at `base` holds exactly `tickets`, all READY.
pub async fn wait_ready(client: &reqwest::Client, base: &str, tickets: &[u32]) -> Board {
    let what = format!("all {} orders are READY on {base}", tickets.len());
    let mut last = None;
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let board = fetch_board(client, base).await;
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

/// One event from `/updates`.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `id:` field.
    pub id: String,
    /// The `event:` type ("message" when none was given).
    pub event: String,
    pub data: Value,
}

impl SseEvent {
    pub fn version(&self) -> u64 {
        self.data["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {}", self.data))
    }

    /// `(ticket, status)` of the change, or `None` for a whole-board event.
    pub fn change(&self) -> Option<(u32, String)> {
        let change = &self.data["change"];
        if change.is_null() {
            return None;
        }
        Some((
            change["order"].as_u64().unwrap() as u32,
            change["status"].as_str().unwrap().to_owned(),
        ))
    }

    pub fn board(&self) -> Board {
        Board::from_value(&self.data)
    }
}

type EventStream =
    Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// A lobby screen on `/updates`.
pub struct SseClient {
    events: EventStream,
}

impl SseClient {
    /// Connects; returns once the server has answered with the stream's
    /// headers, so every change after this is sent to it.
    pub async fn connect(url: &str) -> SseClient {
        let response = stream_client().get(url).send().await.expect("GET /updates");
        assert_eq!(response.status(), 200, "GET /updates");
        assert_eq!(header(&response, "content-type"), "text/event-stream");
        SseClient {
            events: Box::pin(whole_events(response.bytes_stream()).eventsource()),
        }
    }

    /// The next event; panics if none comes within [`EVENT_DEADLINE`].
    pub async fn next_event(&mut self) -> SseEvent {
        match self.try_next_event(EVENT_DEADLINE).await {
            Some(event) => event,
            None => panic!("no SSE event within {EVENT_DEADLINE:?}"),
        }
    }

    /// The next event, or `None` after `timeout`; panics if the stream ends or
    /// breaks.
    pub async fn try_next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let event = self.try_next_raw(timeout).await?;
        let data = serde_json::from_str(&event.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", event.data));
        Some(SseEvent {
            id: event.id,
            event: event.event,
            data,
        })
    }

    /// The next event unparsed (for screens that read thousands of big
    /// boards); panics if none comes within [`EVENT_DEADLINE`].
    pub async fn next_raw(&mut self) -> Event {
        match self.try_next_raw(EVENT_DEADLINE).await {
            Some(event) => event,
            None => panic!("no SSE event within {EVENT_DEADLINE:?}"),
        }
    }

    async fn try_next_raw(&mut self, timeout: Duration) -> Option<Event> {
        match tokio::time::timeout(timeout, self.events.next()).await {
            Err(_) => None,
            Ok(None) => panic!("the /updates stream ended"),
            Ok(Some(Err(e))) => panic!("the /updates stream broke: {e}"),
            Ok(Some(Ok(event))) => Some(event),
        }
    }

    /// Reads (and drops) events until the stream ends: `Some(true)` when the
    /// server ended it cleanly, `Some(false)` when the connection broke,
    /// `None` if it is still open after `timeout`.
    pub async fn wait_end(&mut self, timeout: Duration) -> Option<bool> {
        tokio::time::timeout(timeout, async {
            while let Some(item) = self.events.next().await {
                if item.is_err() {
                    return false;
                }
            }
            true
        })
        .await
        .ok()
    }
}

/// Regroups a byte stream so each chunk ends at an event boundary (a blank
/// line). eventsource-stream re-parses an unfinished line from its start on
/// every chunk, which for a board of thousands of orders arriving in many
/// small chunks costs far more than the test itself.
fn whole_events<S>(inner: S) -> impl Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send
where
    S: Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + Unpin,
{
    futures_util::stream::unfold((inner, Vec::new()), |(mut inner, mut buf)| async move {
        loop {
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let from = buf.len().saturating_sub(1);
                    buf.extend_from_slice(&chunk);
                    if let Some(end) = after_last_blank_line(&buf[from..]) {
                        let rest = buf.split_off(from + end);
                        let whole = std::mem::replace(&mut buf, rest);
                        return Some((Ok(whole.into()), (inner, buf)));
                    }
                }
                Some(Err(e)) => return Some((Err(e), (inner, buf))),
                None if buf.is_empty() => return None,
                None => return Some((Ok(std::mem::take(&mut buf).into()), (inner, buf))),
            }
        }
    })
}

/// Where the text after the last `\n\n` in `bytes` starts.
fn after_last_blank_line(bytes: &[u8]) -> Option<usize> {
    let mut offset = 0;
    let mut found = None;
    for chunk in bytes.utf8_chunks() {
        if let Some(at) = chunk.valid().rfind("\n\n") {
            found = Some(offset + at + 2);
        }
        offset += chunk.valid().len() + chunk.invalid().len();
    }
    found
}

/// The real `fastfood` binary, running as a child. Killed on drop; its stderr
/// is printed if the test fails while it is alive.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub client: reqwest::Client,
    stderr: Arc<Mutex<String>>,
    stderr_done: Option<JoinHandle<()>>,
}

/// `fastfood` with the inherited configuration removed and logs at `info`.
fn fastfood_command(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fastfood"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in INHERITED_CONFIG {
        command.env_remove(name);
    }
    command
}

impl ServerProcess {
    /// Starts `fastfood serve --listen 127.0.0.1:0 --data-dir DIR ARGS` and
    /// waits for its `listening on` line.
    pub async fn spawn(data_dir: &Path, args: &[&str]) -> ServerProcess {
        ServerProcess::spawn_with_env(data_dir, args, &[]).await
    }

    /// [`ServerProcess::spawn`] with extra environment variables (crash points).
    pub async fn spawn_with_env(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut command = fastfood_command(data_dir, args);
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("start fastfood");
        let pid = child.id().expect("a pid");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        let stderr_done = tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = tokio::time::timeout(DEADLINE, stdout.next_line()).await;
        let mut process = ServerProcess {
            child,
            pid,
            base: String::new(),
            client: http_client(),
            stderr,
            stderr_done: Some(stderr_done),
        };
        let line = match first {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "fastfood printed no `listening on` line ({other:?}); stderr:\n{}",
                process.stderr()
            ),
        };
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the first line is {line:?}, not `listening on http://…`"));
        process.base = base.to_owned();
        // Keep reading stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let (client, url) = (process.client.clone(), process.url("/healthz"));
        let ready = tokio::time::timeout(DEADLINE, async {
            loop {
                if matches!(client.get(&url).send().await, Ok(r) if r.status() == 200) {
                    return true;
                }
                if process.child.try_wait().expect("try_wait").is_some() {
                    return false;
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "fastfood did not come up; stderr:\n{}",
            process.stderr()
        );
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /orders`.
    pub async fn board(&self) -> Board {
        fetch_board(&self.client, &self.base).await
    }

    /// `POST /order`, expecting a `201`; the ticket.
    pub async fn place(&self, text: &str) -> u32 {
        let response = self
            .client
            .post(self.url("/order"))
            .body(text.to_owned())
            .send()
            .await;
        ticket_of(response.expect("POST /order")).await
    }

    /// `GET /orders/N`, expecting a `200`; the order.
    pub async fn order_json(&self, ticket: u32) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/orders/{ticket}")))
            .send()
            .await
            .expect("GET /orders/N");
        assert_eq!(response.status(), 200, "GET /orders/{ticket}");
        response.json().await.expect("a JSON order")
    }

    /// Waits until exactly `tickets` are on the board, all READY.
    pub async fn wait_all_ready(&self, tickets: &[u32]) -> Board {
        wait_ready(&self.client, &self.base, tickets).await
    }

    pub async fn updates(&self) -> SseClient {
        SseClient::connect(&self.url("/updates")).await
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self.wait(DEADLINE).await.expect("a killed process exits");
        assert!(!status.success(), "a SIGKILLed process does not exit 0");
    }

    /// SIGTERM (a polite stop); does not wait.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits for the process to exit, at most `timeout`; `None` if it is still
    /// running then. Once it has exited, its stderr is complete.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .expect("wait");
        if let Some(done) = self.stderr_done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
        Some(status)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- stderr of fastfood (pid {}, {}) ---\n{}",
                self.pid,
                self.base,
                self.stderr()
            );
        }
        let _ = self.child.start_kill();
    }
}

/// What a run of the binary that is expected to stop by itself left behind.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `fastfood serve` on `data_dir` expecting it to exit by itself (it
/// refuses to start); panics if it is still running after [`DEADLINE`].
pub async fn run_to_exit(data_dir: &Path, args: &[&str]) -> Exited {
    let child = fastfood_command(data_dir, args)
        .spawn()
        .expect("start fastfood");
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("fastfood should have stopped by itself")
        .expect("its output");
    Exited {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every file in `dir` (not recursive) with its bytes.
pub fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read the data dir")
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

/// The counter file's number.
pub fn read_counter(data_dir: &Path) -> u32 {
    let bytes = std::fs::read(data_dir.join("counter")).expect("the counter file");
    u32::from_be_bytes(bytes.try_into().expect("a 4-byte counter"))
}

/// `orders.json` and `orders.log` parsed as `jq` would: the snapshot, and the
/// log's header and records. Panics if either is not valid JSON.
pub fn read_store(data_dir: &Path) -> (Value, Value, Vec<Value>) {
    let snapshot_text = std::fs::read_to_string(data_dir.join("orders.json")).expect("orders.json");
    let snapshot: Value =
        serde_json::from_str(&snapshot_text).expect("orders.json is one JSON document");
    let log_text = std::fs::read_to_string(data_dir.join("orders.log")).expect("orders.log");
    assert!(
        log_text.ends_with('\n'),
        "orders.log ends with a whole line"
    );
    let mut lines = log_text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("each log line is JSON"));
    let header = lines.next().expect("a header line");
    (snapshot, header, lines.collect())
}

impl SseClient {
    /// Connects with a prepared request (a shared client for thousands of
    /// screens, extra headers such as `Last-Event-ID`); like [`SseClient::connect`].
    pub async fn from_request(request: reqwest::RequestBuilder) -> SseClient {
        let response = request.send().await.expect("GET /updates");
        assert_eq!(response.status(), 200, "GET /updates");
        assert_eq!(header(&response, "content-type"), "text/event-stream");
        SseClient {
            events: Box::pin(whole_events(response.bytes_stream()).eventsource()),
        }
    }
}

/// A client for many long-lived streams at once (no overall timeout).
pub fn streams_client() -> reqwest::Client {
    stream_client()
}

/// The resident memory of process `pid` in bytes (`VmRSS` in
/// `/proc/PID/status`).
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb * 1024
}

/// A whole order as the store writes it, with the timestamps its status has
/// reached.
pub fn stored_order(n: u32, status: &str) -> Value {
    let mut o = serde_json::json!({"order": n, "status": status, "content": format!("burger {n}"), "taken_at": "2026-01-01T12:00:00.000Z"});
    let rank = |s: &str| {
        ["TAKEN", "PREPARING", "READY", "COLLECTED"]
            .iter()
            .position(|x| *x == s)
    };
    for (key, from) in [
        ("preparing_at", "PREPARING"),
        ("ready_at", "READY"),
        ("closed_at", "COLLECTED"),
    ] {
        if rank(status) >= rank(from) {
            o[key] = serde_json::json!("2026-01-01T12:00:01.000Z");
        }
    }
    o
}

/// A store the way a run leaves it, written by hand: three READY orders in
/// the snapshot (version 9), an empty log, and the counter at 3.
pub fn write_store(dir: &Path) {
    let orders: Vec<String> = (1..=3)
        .map(|n| stored_order(n, "READY").to_string())
        .collect();
    let snapshot = format!(
        "{{\"version\":9,\"orders\":[\n{}\n]}}\n",
        orders.join(",\n")
    );
    std::fs::write(dir.join("orders.json"), snapshot).unwrap();
    std::fs::write(dir.join("orders.log"), "{\"base\":9}\n").unwrap();
    std::fs::write(dir.join("orders.lock"), "").unwrap();
    std::fs::write(dir.join("counter"), 3u32.to_be_bytes()).unwrap();
}

/// How a test damages a store [`write_store`] wrote.
pub type Damage = fn(&Path);

/// For each `(name, damage, file, reasons)`: a fresh hand-written store,
/// damaged; the program must refuse to start, name `file` and say each of
/// `reasons` on stderr, and leave every file exactly as it was.
pub async fn each_damage_is_refused(cases: &[(&str, Damage, &str, &[&str])]) {
    for (name, damage, file, reasons) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path());
        damage(dir.path());
        let before = dir_contents(dir.path());
        let run = run_to_exit(dir.path(), &["--prep-time", "0"]).await;
        assert!(
            !run.status.success(),
            "{name}: it must not start\n{}",
            run.stderr
        );
        let path = dir.path().join(file).display().to_string();
        assert!(
            run.stderr.contains(&path),
            "{name}: stderr names {path}:\n{}",
            run.stderr
        );
        for reason in *reasons {
            assert!(
                run.stderr.contains(reason),
                "{name}: stderr says {reason:?}:\n{}",
                run.stderr
            );
        }
        assert!(
            dir_contents(dir.path()) == before,
            "{name}: the files are left exactly as they were"
        );
    }
}
