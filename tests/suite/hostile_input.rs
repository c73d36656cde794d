//! Bad input: malformed `/take` queries, parameters a route does not take,
//! bodies too large or endless, unknown routes and methods, requests from a
//! foreign site's page or through DNS rebinding, bytes that are not text,
//! text that shows nothing or holds control characters, other charsets.
//! Against the real app on port 0.
//!
//! After every scenario, invariant **E** (docs/guarantees.md) is checked by a
//! [`Ledger`]: each failure was a JSON error `{"error", "message"}` with the
//! right status (checked by `expect_error` as it happens), the board
//! (`GET /orders`, version included) is exactly as before, the counter has not
//! moved, and the next accepted order gets the very next ticket number: no
//! rejected request created an order or burnt a ticket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{Board, DEADLINE, TestApp, expect_error, header, read_counter, ticket_of};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A restaurant with `--prep-time 0` and what it must still look like after
/// a rejected request.
struct Ledger {
    app: TestApp,
    /// Orders on the board, all READY between scenarios.
    live: Vec<u32>,
    /// Orders accepted so far: the counter's value.
    taken: u32,
    /// The board after the last accepted change.
    before: Board,
}

impl Ledger {
    async fn new() -> Ledger {
        let app = TestApp::spawn(&["--prep-time", "0"]).await;
        let before = app.board().await;
        Ledger {
            app,
            live: Vec::new(),
            taken: 0,
            before,
        }
    }

    /// The next ticket number the counter will hand out.
    fn next_ticket(&self) -> u32 {
        read_counter(&self.app.data_dir) + 1
    }

    /// Places an order that must be accepted with the very next number, and
    /// waits until the board is quiet again (every order READY).
    async fn accept(&mut self, body: impl Into<reqwest::Body>) -> Value {
        let expected = self.next_ticket();
        let response = self.app.order(body).await;
        assert_eq!(header(&response, "location"), format!("/orders/{expected}"));
        let text = response.text().await.unwrap();
        let order: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            order["order"], expected,
            "the next accepted order gets the next ticket: none was burnt ({text})"
        );
        self.live.push(expected);
        self.taken += 1;
        self.before = self.app.wait_all_ready(&self.live).await;
        order
    }

    /// A READY order on the board, to aim bad requests at, and its pickup
    /// code.
    async fn ready_order(&mut self) -> (u32, String) {
        let order = self.accept("a burger to aim at").await;
        (
            order["order"].as_u64().unwrap() as u32,
            order["pickup_code"].as_str().unwrap().to_owned(),
        )
    }

    /// Invariant E after a rejected request: nothing changed, and the next
    /// order gets the next number.
    async fn unchanged(&mut self, scenario: &str) {
        let board = self.app.board().await;
        assert_eq!(
            (board.version, &board.orders),
            (self.before.version, &self.before.orders),
            "{scenario}: a rejected request changed the board"
        );
        assert_eq!(
            read_counter(&self.app.data_dir),
            self.taken,
            "{scenario}: a rejected request took a ticket number"
        );
        self.accept(format!("the order after {scenario}")).await;
    }

    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "a JSON answer: {:?}",
            self.headers
        );
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Sends `request` as it is on a new connection and reads one response (its
/// head and a `Content-Length` body), without sending anything more.
async fn raw_exchange(base: &str, request: &[u8]) -> Raw {
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status = lines.next().unwrap().split(' ').nth(1).unwrap();
                let headers: Vec<(String, String)> = lines
                    .map(|l| {
                        let (k, v) = l.split_once(':').unwrap();
                        (k.trim().to_owned(), v.trim().to_owned())
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if buf.len() >= end + 4 + length {
                    return Raw {
                        status: status.parse().unwrap(),
                        headers,
                        body: buf[end + 4..end + 4 + length].to_vec(),
                    };
                }
            }
            let n = stream.read(&mut chunk).await.expect("read the answer");
            assert!(
                n > 0,
                "the connection closed before a whole answer: {buf:?}"
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("an answer without sending the rest")
}

/// `POST /take?QUERY` with QUERY sent byte for byte (reqwest would encode it).
fn raw_take(query: &[u8]) -> Vec<u8> {
    let mut request = b"POST /take?".to_vec();
    request.extend_from_slice(query);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_refuses_every_malformed_order_parameter() {
    let mut ledger = Ledger::new().await;
    // Every query below that holds a number names this READY order, so a
    // wrongly accepted one would collect it and show.
    let (ready, code) = ledger.ready_order().await;
    assert_eq!(ready, 1);
    let client = ledger.app.client.clone();

    // No `?` at all, and `?` with nothing after it.
    let bare = client.post(ledger.url("/take")).send().await.unwrap();
    expect_error(bare, 400, "bad_ticket").await;
    ledger.unchanged("POST /take").await;

    let huge = format!("order={}", "9".repeat(1000));
    let zeros_then_overflow = format!("order={}4294967296", "0".repeat(50));
    let cases: &[(&str, &str)] = &[
        ("", "bad_ticket"),
        ("order", "bad_ticket"),
        ("order=", "bad_ticket"),
        ("ORDER=1", "bad_ticket"),
        ("order%5B%5D=1", "bad_ticket"),
        ("order=-1", "bad_ticket"),
        ("order=-0", "bad_ticket"),
        ("order=0", "bad_ticket"),
        ("order=1.5", "bad_ticket"),
        ("order=1.0", "bad_ticket"),
        ("order=1e0", "bad_ticket"),
        ("order=+1", "bad_ticket"),
        ("order=%2B1", "bad_ticket"),
        ("order=0x1", "bad_ticket"),
        ("order=1_000", "bad_ticket"),
        ("order=4294967296", "bad_ticket"),
        ("order=18446744073709551617", "bad_ticket"),
        (&huge, "bad_ticket"),
        (&zeros_then_overflow, "bad_ticket"),
        ("order=1&order=1", "bad_ticket"),
        ("order=1&order=2", "bad_ticket"),
        ("order=1&order=", "bad_ticket"),
        ("order=%00", "bad_ticket"),
        ("order=1%00", "bad_ticket"),
        ("order=%001", "bad_ticket"),
        ("order=1%20", "bad_ticket"),
        ("order=%201", "bad_ticket"),
        ("order=1%0A", "bad_ticket"),
        ("order=1;x=y", "bad_ticket"),
        // Digits that are not ASCII: fullwidth 1, Arabic-Indic 1, superscript 1.
        ("order=%EF%BC%91", "bad_ticket"),
        ("order=%D9%A1", "bad_ticket"),
        ("order=%C2%B9", "bad_ticket"),
        // Unknown parameters next to a good number: refused, nothing collected.
        ("order=1&x=y", "unknown_parameter"),
        ("x=y&order=1", "unknown_parameter"),
        ("order=1&Order=1", "unknown_parameter"),
        ("order=1&=", "unknown_parameter"),
        ("order=1&callback=alert", "unknown_parameter"),
        ("order=1&%00=1", "unknown_parameter"),
    ];
    for (query, code) in cases {
        let shown: String = query.chars().take(60).collect();
        let response = ledger.app.take_query(query).await;
        let body = expect_error(response, 400, code).await;
        if *code == "bad_ticket" && query.contains("order=1&order") {
            assert!(body["message"].as_str().unwrap().contains("once"), "{body}");
        }
        ledger.unchanged(&format!("POST /take?{shown}")).await;
    }

    // Leading zeros and percent-encoded digits are the same number: this one
    // does collect (the positive control for every refusal above).
    let ok = ledger
        .app
        .take_query(&format!("order=0%31&code={code}"))
        .await;
    assert_eq!(ok.status(), 200);
    let collected: Value = ok.json().await.unwrap();
    assert_eq!(
        (collected["order"].as_u64(), collected["status"].as_str()),
        (Some(ready as u64), Some("COLLECTED"))
    );
    ledger.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_text_in_a_query_or_a_path() {
    let mut ledger = Ledger::new().await;
    let (ready, _) = ledger.ready_order().await;
    // Percent-encoded bytes that are not UTF-8, and broken escapes.
    for query in [
        "order=%FF",
        "order=1%FF",
        "order=%C3%28",
        "order=%C0%B1",
        "order=%ED%A0%80",
        "order=%E2%82",
        "order=%ZZ",
        "order=%",
        "order=1%",
        "order=%3",
        "order=%%31",
        "%FF=1",
    ] {
        let response = ledger.app.take_query(query).await;
        expect_error(response, 400, "bad_ticket").await;
        ledger.unchanged(&format!("POST /take?{query}")).await;
    }
    for path in [
        "/orders/%FF",
        "/orders/%00",
        "/orders/%E2%82",
        "/orders/1%FF",
    ] {
        let response = ledger
            .app
            .client
            .get(ledger.url(path))
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "bad_ticket").await;
    }
    ledger.unchanged("GET /orders/%FF and friends").await;

    // Raw bytes that are not ASCII in the request line are not HTTP at all
    // (RFC 9112: the request target is ASCII). The HTTP library refuses them
    // before any route runs, with a bare 400 and the connection closed: the
    // one error that cannot be JSON. Nothing is collected and the server
    // carries on.
    for query in [&b"order=\xff"[..], b"order=1\x80", b"order=\xc3\xa9"] {
        let raw = raw_exchange(&ledger.app.base, &raw_take(query)).await;
        assert_eq!(raw.status, 400, "{query:?}");
    }
    // Control characters are not allowed either.
    let raw = raw_exchange(&ledger.app.base, &raw_take(b"order=1\x01")).await;
    assert_eq!(raw.status, 400);
    ledger.unchanged("raw bytes in the request line").await;
    assert_eq!(ledger.app.order_json(ready).await["status"], "READY");
    ledger.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_takes_of_one_ready_order_collect_it_once() {
    let mut ledger = Ledger::new().await;
    for round in 0..10 {
        let (ticket, code) = ledger.ready_order().await;
        // Two customers at once, then (every other round) eight.
        let customers = if round % 2 == 0 { 2 } else { 8 };
        let takes = (0..customers).map(|_| ledger.app.take(ticket, &code));
        let answers = futures_util::future::join_all(takes).await;
        let mut collected = 0;
        for response in answers {
            if response.status() == 200 {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["status"], "COLLECTED");
                assert_eq!(body["order"], ticket);
                collected += 1;
            } else {
                expect_error(response, 410, "already_collected").await;
            }
        }
        assert_eq!(
            collected, 1,
            "round {round}: exactly one of {customers} customers gets order {ticket}"
        );
        assert_eq!(
            ledger.app.order_json(ticket).await,
            serde_json::json!({"order": ticket, "status": "COLLECTED"})
        );
        ledger.live.retain(|t| *t != ticket);
        ledger.before = ledger.app.board().await;
        assert!(!ledger.before.statuses().contains_key(&ticket));
    }
    ledger.unchanged("concurrent takes").await;
    ledger.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_body_is_refused_without_being_read() {
    const TEN_MB: usize = 10 * 1024 * 1024;
    let mut ledger = Ledger::new().await;

    // Only the head is sent, announcing 10 MB: the answer must come without
    // any of the body (a server that read it all would wait forever here).
    let head = format!(
        "POST /order HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: {TEN_MB}\r\n\r\n"
    );
    let raw = raw_exchange(&ledger.app.base, head.as_bytes()).await;
    assert_eq!(raw.status, 413);
    assert_eq!(raw.json()["error"], "too_large");
    ledger
        .unchanged("a 10 MB Content-Length, body not sent")
        .await;

    // The same after 100 KB of it.
    let mut request = head.into_bytes();
    request.extend(std::iter::repeat_n(b'x', 100 * 1024));
    let raw = raw_exchange(&ledger.app.base, &request).await;
    assert_eq!(raw.status, 413);
    assert_eq!(raw.json()["error"], "too_large");
    ledger
        .unchanged("a 10 MB Content-Length, 100 KB sent")
        .await;

    // And a client that sends all 10 MB still gets the JSON answer.
    let response = ledger.app.order(vec![b'y'; TEN_MB]).await;
    expect_error(response, 413, "too_large").await;
    ledger.unchanged("a 10 MB body").await;

    // Just over the 64 KiB limit, and well under it but over 1000 characters.
    expect_error(
        ledger.app.order(vec![b'z'; 64 * 1024 + 1]).await,
        413,
        "too_large",
    )
    .await;
    expect_error(
        ledger.app.order("z".repeat(60 * 1024)).await,
        413,
        "order_too_long",
    )
    .await;
    ledger.unchanged("bodies around the limit").await;
    ledger.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_body_is_cut_off() {
    let mut ledger = Ledger::new().await;
    for chunk_size in [1, 8 * 1024] {
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        // A body that never ends, with no Content-Length: chunked.
        let endless = futures_util::stream::repeat_with(move || {
            counter.fetch_add(chunk_size, Ordering::Relaxed);
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; chunk_size]))
        });
        let request = ledger
            .app
            .client
            .post(ledger.url("/order"))
            .body(reqwest::Body::wrap_stream(endless))
            .send();
        let response = tokio::time::timeout(DEADLINE, request)
            .await
            .expect("an endless body is answered in bounded time")
            .expect("an answer, not a broken connection");
        expect_error(response, 413, "too_large").await;
        eprintln!(
            "{chunk_size}-byte chunks: {} bytes offered before the answer",
            sent.load(Ordering::Relaxed)
        );
        ledger
            .unchanged(&format!("an endless body in {chunk_size}-byte chunks"))
            .await;
    }
    ledger.app.shutdown().await;
}

/// The routes and the methods each answers; anything else is a 405 on these
/// paths and a 404 elsewhere.
const ROUTES: &[(&str, &[&str])] = &[
    ("/order", &["POST"]),
    ("/take", &["POST"]),
    ("/orders", &["GET", "HEAD"]),
    ("/orders/1", &["GET", "HEAD"]),
    ("/updates", &["GET", "HEAD"]),
    ("/healthz", &["GET", "HEAD"]),
    ("/readyz", &["GET", "HEAD"]),
    ("/", &["GET", "HEAD"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let mut ledger = Ledger::new().await;
    let client = ledger.app.client.clone();
    let methods = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW",
    ];
    let mut tried = 0;
    for (path, allowed) in ROUTES {
        for method in methods {
            if allowed.contains(&method) {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = client
                .request(m, ledger.url(path))
                .body("burger")
                .send()
                .await
                .unwrap();
            let allow = header(&response, "allow");
            let mut listed: Vec<&str> = allow.split(',').map(str::trim).collect();
            listed.sort_unstable();
            let mut expected = allowed.to_vec();
            expected.sort_unstable();
            assert_eq!(listed, expected, "{method} {path}: the Allow header");
            if method == "HEAD" {
                // A HEAD answer has no body, but it is still a JSON 405.
                assert_eq!(response.status(), 405, "HEAD {path}");
                assert!(header(&response, "content-type").starts_with("application/json"));
                assert!(response.bytes().await.unwrap().is_empty());
            } else {
                let body = expect_error(response, 405, "method_not_allowed").await;
                assert!(body["message"].as_str().unwrap().contains(method), "{body}");
            }
            tried += 1;
        }
    }
    for path in [
        "/nothing",
        "/order/",
        "/ORDER",
        "/orders/1/extra",
        "/take/1",
        "/updates/x",
        "/%FF",
        "/..%2F..%2Fetc%2Fpasswd",
        "/static/../Cargo.toml",
    ] {
        for method in methods {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = client.request(m, ledger.url(path)).send().await.unwrap();
            if method == "HEAD" {
                assert_eq!(response.status(), 404, "HEAD {path}");
                assert!(header(&response, "content-type").starts_with("application/json"));
            } else {
                expect_error(response, 404, "not_found").await;
            }
            tried += 1;
        }
    }
    assert!(tried > 100);
    ledger.unchanged("unknown routes and methods").await;
    ledger.app.shutdown().await;
}

/// Fails if any `Access-Control-Allow-*` header is in the answer.
fn assert_no_cors(response: &reqwest::Response, what: &str) {
    let granted: Vec<_> = response
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(granted.is_empty(), "{what}: grants {granted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_another_site_can_neither_ask_nor_order() {
    let mut ledger = Ledger::new().await;
    let (ready, code) = ledger.ready_order().await;
    let client = ledger.app.client.clone();
    let evil = "http://evil.example";
    let options = reqwest::Method::OPTIONS;

    // The preflight a browser sends before a cross-site fetch with a JSON
    // body: refused, in JSON, granting nothing.
    for (path, asked) in [
        ("/order", "POST"),
        ("/take?order=1", "POST"),
        ("/orders", "GET"),
    ] {
        let response = client
            .request(options.clone(), ledger.url(path))
            .header("Origin", evil)
            .header("Access-Control-Request-Method", asked)
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_no_cors(&response, path);
        let body = expect_error(response, 403, "cross_origin").await;
        assert!(body["message"].as_str().unwrap().contains(evil), "{body}");
    }
    ledger.unchanged("preflights from another site").await;

    // The requests a browser sends without any preflight (a form, or a fetch
    // with a text body): refused before they reach the kitchen.
    let other_port = {
        let base = &ledger.app.base;
        let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
        format!("http://127.0.0.1:{}", port.wrapping_add(1))
    };
    let foreign: &[(&str, &str)] = &[
        ("Origin", evil),
        ("Origin", "null"),
        ("Origin", &other_port),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    ];
    for (name, value) in foreign {
        let order = client
            .post(ledger.url("/order"))
            .header(*name, *value)
            .header("Content-Type", "text/plain")
            .body("a burger, paid by someone else")
            .send()
            .await
            .unwrap();
        assert_no_cors(&order, "POST /order");
        expect_error(order, 403, "cross_origin").await;
        let take = client
            .post(ledger.url(&format!("/take?order={ready}")))
            .header(*name, *value)
            .send()
            .await
            .unwrap();
        expect_error(take, 403, "cross_origin").await;
        ledger
            .unchanged(&format!("POST from {name}: {value}"))
            .await;
    }
    assert_eq!(ledger.app.order_json(ready).await["status"], "READY");

    // Reading the public board is allowed, but grants a foreign page nothing.
    let board = client
        .get(ledger.url("/orders"))
        .header("Origin", evil)
        .send()
        .await
        .unwrap();
    assert_eq!(board.status(), 200);
    assert_no_cors(&board, "GET /orders");

    // The restaurant's own pages (same origin) still order and collect.
    let next = ledger.next_ticket();
    let own = client
        .post(ledger.url("/order"))
        .header("Origin", &ledger.app.base)
        .header("Sec-Fetch-Site", "same-origin")
        .body("from the kiosk")
        .send()
        .await
        .unwrap();
    assert_eq!(ticket_of(own).await, next);
    ledger.live.push(next);
    ledger.taken += 1;
    ledger.before = ledger.app.wait_all_ready(&ledger.live).await;
    let take = client
        .post(ledger.url(&format!("/take?order={ready}&code={code}")))
        .header("Origin", &ledger.app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(take.status(), 200);
    ledger.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_body_is_text_whatever_its_content_type() {
    let mut ledger = Ledger::new().await;
    for (content_type, body) in [
        (
            "application/json",
            r#"{"item": "burger", "extra": ["cheese"]}"#,
        ),
        ("application/json", r#"{"not json"#),
        (
            "application/x-www-form-urlencoded",
            "item=burger&size=large",
        ),
        ("multipart/form-data; boundary=x", "--x\r\nburger\r\n--x--"),
        ("application/octet-stream", "fries"),
        ("text/html; charset=utf-8", "<b>cola</b>"),
        ("nonsense", "ice cream"),
    ] {
        let expected = ledger.next_ticket();
        let response = ledger
            .app
            .client
            .post(ledger.url("/order"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(ticket_of(response).await, expected, "{content_type}");
        ledger.taken += 1;
        assert_eq!(
            ledger.app.order_json(expected).await["content"],
            body,
            "{content_type}: the body is the order, as text"
        );
        ledger.live.push(expected);
        ledger.before = ledger.app.wait_all_ready(&ledger.live).await;
    }
    // A JSON content type does not make bytes that are not text acceptable.
    let response = ledger
        .app
        .client
        .post(ledger.url("/order"))
        .header("Content-Type", "application/json")
        .body(vec![b'"', 0xff, b'"'])
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "not_text").await;
    ledger
        .unchanged("a JSON content type with bytes that are not text")
        .await;
    ledger.app.shutdown().await;
}

/// A raw `METHOD PATH` with `Host: host` and `headers`, and a body.
fn raw_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    request.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_name_can_neither_order_nor_collect() {
    let mut ledger = Ledger::new().await;
    let (ready, code) = ledger.ready_order().await;
    let port = ledger.app.base.rsplit(':').next().unwrap().to_owned();
    // Even the right pickup code does not help a page of another site.
    let take = format!("/take?order={ready}&code={code}");
    // DNS rebinding: evil.example served the page, then resolved to this
    // server. The browser sees one origin, so Origin and Host agree, and
    // Sec-Fetch-Site says same-origin; only the name gives it away.
    for name in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.nip.example:{port}"),
    ] {
        let origin = format!("http://{name}");
        for headers in [
            vec![("Origin", origin.as_str())],
            vec![("Sec-Fetch-Site", "same-origin")],
            vec![
                ("Origin", origin.as_str()),
                ("Sec-Fetch-Site", "same-origin"),
            ],
        ] {
            for (path, body) in [("/order", "a burger for the attacker"), (take.as_str(), "")] {
                let raw = raw_exchange(
                    &ledger.app.base,
                    &raw_request("POST", path, &name, &headers, body),
                )
                .await;
                assert_eq!(raw.status, 403, "{path} as {name} with {headers:?}");
                let json = raw.json();
                assert_eq!(json["error"], "cross_origin", "{json}");
                let message = json["message"].as_str().unwrap();
                assert!(message.contains("not a name it answers to"), "{message}");
            }
        }
        ledger.unchanged(&format!("POST as {name}")).await;
    }
    assert_eq!(ledger.app.order_json(ready).await["status"], "READY");

    // The loopback names a browser on this machine uses pass.
    for name in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let origin = format!("http://{name}");
        let headers = [
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ];
        let raw = raw_exchange(
            &ledger.app.base,
            &raw_request("POST", "/order", &name, &headers, "from this machine"),
        )
        .await;
        assert_eq!(
            raw.status,
            201,
            "as {name}: {:?}",
            String::from_utf8_lossy(&raw.body)
        );
        let ticket = raw.json()["order"].as_u64().unwrap() as u32;
        ledger.live.push(ticket);
        ledger.taken += 1;
        ledger.before = ledger.app.wait_all_ready(&ledger.live).await;
    }

    // curl and scripts (no Origin, no Sec-Fetch-Site) may say any Host.
    let raw = raw_exchange(
        &ledger.app.base,
        &raw_request("POST", "/order", "evil.example", &[], "from a script"),
    )
    .await;
    assert_eq!(raw.status, 201, "{:?}", String::from_utf8_lossy(&raw.body));
    ledger
        .live
        .push(raw.json()["order"].as_u64().unwrap() as u32);
    ledger.taken += 1;
    ledger.before = ledger.app.wait_all_ready(&ledger.live).await;
    ledger.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_name_the_pages_a_browser_may_order_from() {
    let app = TestApp::spawn(&[
        "--prep-time",
        "0",
        "--allowed-hosts",
        "Restaurant.example,menu.example",
    ])
    .await;
    for name in ["restaurant.example", "menu.example:8080"] {
        let origin = format!("http://{name}");
        let headers = [
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ];
        let raw = raw_exchange(
            &app.base,
            &raw_request("POST", "/order", name, &headers, "fries"),
        )
        .await;
        assert_eq!(
            raw.status,
            201,
            "as {name}: {:?}",
            String::from_utf8_lossy(&raw.body)
        );
    }
    for (name, origin) in [
        ("other.example", "http://other.example"),
        ("restaurant.example", "http://other.example"),
        (
            "restaurant.example.evil.example",
            "http://restaurant.example.evil.example",
        ),
    ] {
        let raw = raw_exchange(
            &app.base,
            &raw_request("POST", "/order", name, &[("Origin", origin)], "fries"),
        )
        .await;
        assert_eq!(raw.status, 403, "as {name} from {origin}");
        assert_eq!(raw.json()["error"], "cross_origin");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_shows_nothing_or_hides_controls_is_refused() {
    let mut ledger = Ledger::new().await;
    // Nothing visible: a ticket nobody could read.
    for invisible in [
        "\u{200B}",
        " \u{200B}\u{200D}\u{2060}\u{FEFF} ",
        "\u{FEFF}",
        "\u{3164}",
        "\u{2800}",
        "\u{202E}",
        "\u{0301}",
    ] {
        let response = ledger.app.order(invisible.to_owned()).await;
        expect_error(response, 400, "empty_order").await;
        ledger
            .unchanged(&format!("an order of {invisible:?}"))
            .await;
    }
    // Control characters: refused, never stored (the board and terminal
    // logs would run them).
    for hostile in [
        "fries\0",
        "\u{1b}[2J\u{1b}[31mfree burgers\u{1b}[0m",
        "cola\rburger",
        "bell\u{7}",
        "c1 \u{9b}2J",
    ] {
        let response = ledger.app.order(hostile.to_owned()).await;
        let body = expect_error(response, 400, "control_character").await;
        assert!(body["message"].as_str().unwrap().contains("U+"), "{body}");
        ledger.unchanged(&format!("an order of {hostile:?}")).await;
    }
    // A leading BOM goes; new lines, tabs and joiners inside visible text
    // stay.
    for (sent, stored) in [
        ("\u{FEFF}burger", "burger"),
        ("burger\r\nfries\tx2", "burger\r\nfries\tx2"),
        ("👩\u{200D}🍳 special", "👩\u{200D}🍳 special"),
    ] {
        let order = ledger.accept(sent.to_owned()).await;
        assert_eq!(order["content"], stored, "{sent:?}");
    }
    // A charset other than UTF-8 is not decoded as if it were.
    let utf16: Vec<u8> = "fries".encode_utf16().flat_map(u16::to_le_bytes).collect();
    for content_type in [
        "text/plain; charset=utf-16le",
        "text/plain;charset=\"UTF-16\"",
        "text/html; charset=latin1",
    ] {
        let response = ledger
            .app
            .client
            .post(ledger.url("/order"))
            .header("Content-Type", content_type)
            .body(utf16.clone())
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 415, "unsupported_charset").await;
        assert!(
            body["message"].as_str().unwrap().contains("UTF-8"),
            "{body}"
        );
        ledger.unchanged(content_type).await;
    }
    let response = ledger
        .app
        .client
        .post(ledger.url("/order"))
        .header("Content-Type", "text/plain; charset=UTF-8")
        .body("fries")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    ledger.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_parameter_it_does_not_take() {
    let mut ledger = Ledger::new().await;
    let (ready, code) = ledger.ready_order().await;
    let client = ledger.app.client.clone();
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let take = format!("/take?order={ready}&code={code}&ordr={ready}");
    let orders_n = format!("/orders/{ready}?x=1");
    for (method, path, quoted) in [
        (&post, "/order?content=fries", "content"),
        (&post, take.as_str(), "ordr"),
        (&get, orders_n.as_str(), "x"),
        (&get, "/orders?x", "x"),
        (&get, "/updates?x", "x"),
        (&get, "/healthz?x", "x"),
        (&get, "/readyz?verbose=1", "verbose"),
        (&get, "/orders?%78=1", "%78"),
    ] {
        let response = client
            .request(method.clone(), ledger.url(path))
            .body("fries")
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 400, "unknown_parameter").await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("\"{quoted}\"")),
            "{path}: {message}"
        );
        ledger.unchanged(&format!("{method} {path}")).await;
    }
    assert_eq!(ledger.app.order_json(ready).await["status"], "READY");
    // A route's own parameters, and no query at all, are fine.
    for path in ["/orders?", "/healthz", "/orders"] {
        let response = client.get(ledger.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // A refused ticket number is quoted as it was sent: `+` is not a space
    // the customer typed.
    for (query, quoted) in [("order=+1", "\"+1\""), ("order=%2B1", "\"%2B1\"")] {
        let response = ledger.app.take_query(query).await;
        let body = expect_error(response, 400, "bad_ticket").await;
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(quoted), "{query}: {message}");
        assert!(!message.contains("\" 1\""), "{query}: {message}");
    }
    ledger.unchanged("ticket numbers with a plus").await;
    let take = ledger.app.take(ready, &code).await;
    assert_eq!(take.status(), 200);
    ledger.app.shutdown().await;
}

/// The framing rules and what every answer tells a browser, through the
/// real server: requests this server would read wrongly are refused before
/// any route; pages cannot be framed or sniffed; answers carrying a pickup
/// code are never cached; `/take` and `/cancel` read a form body and name
/// themselves in their errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_browser_headers_and_codes_in_a_form_body() {
    let mut ledger = Ledger::new().await;
    let base = ledger.app.base.clone();

    // Two Host headers: 400, and the connection closed after it.
    let raw = raw_exchange(
        &base,
        b"POST /order HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nContent-Length: 5\r\n\r\nfries",
    )
    .await;
    assert_eq!(raw.status, 400, "{raw:?}");
    assert_eq!(raw.json()["error"], "duplicate_host");
    assert_eq!(raw.header("connection"), Some("close"));
    ledger.unchanged("two Host headers").await;

    // A transfer coding other than plain chunked: never read raw.
    for coding in ["gzip, chunked", "chunked, chunked", "identity, chunked"] {
        let request = format!(
            "POST /order HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {coding}\r\n\r\n5\r\nfries\r\n0\r\n\r\n"
        );
        let raw = raw_exchange(&base, request.as_bytes()).await;
        // hyper itself refuses some (400); what it passes on, the server does.
        assert!(
            raw.status == 501 || (raw.status == 400 && coding != "gzip, chunked"),
            "{coding}: {raw:?}"
        );
        if raw.status == 501 {
            assert_eq!(raw.json()["error"], "unsupported_transfer_encoding");
        }
        ledger.unchanged(coding).await;
    }
    // Plain chunked still works.
    let raw = raw_exchange(
        &base,
        b"POST /order HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfries\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 201, "{raw:?}");
    assert_eq!(raw.json()["content"], "fries");
    ledger.taken += 1;
    ledger
        .live
        .push(raw.json()["order"].as_u64().unwrap() as u32);
    ledger.before = ledger.app.wait_all_ready(&ledger.live).await;

    // A request Content-Encoding: 415, nothing stored.
    let client = &ledger.app.client.clone();
    for coding in ["gzip", "br", "identity, gzip"] {
        let response = client
            .post(ledger.url("/order"))
            .header("content-encoding", coding)
            .body("fries")
            .send()
            .await
            .unwrap();
        expect_error(response, 415, "unsupported_encoding").await;
        ledger.unchanged(coding).await;
    }

    // Every page: no sniffing, no framing, scripts from here only.
    for page in ["/", "/kiosk", "/kitchen", "/my/1", "/kiosk.js", "/orders"] {
        let response = client.get(ledger.url(page)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{page}");
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{page}"
        );
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{page}");
        let csp = header(&response, "content-security-policy");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
            "{page}: {csp}"
        );
    }

    // The 201 with the pickup code, and /take and /cancel answers: no-store.
    let placed = client
        .post(ledger.url("/order"))
        .body("a burger, form-collected")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&placed, "cache-control"), "no-store");
    let placed: Value = placed.json().await.unwrap();
    let ticket = placed["order"].as_u64().unwrap() as u32;
    let code = placed["pickup_code"].as_str().unwrap().to_owned();
    ledger.taken += 1;
    ledger.live.push(ticket);
    ledger.before = ledger.app.wait_all_ready(&ledger.live).await;

    // The code in a form body (as the pages send it); another body type is
    // refused; /cancel's errors name /cancel.
    let form = |path: &str, body: String| {
        client
            .post(format!("{base}{path}"))
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=UTF-8",
            )
            .body(body)
    };
    let wrong = form("/cancel", format!("order={ticket}&code=000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&wrong, "cache-control"), "no-store");
    let wrong = expect_error(wrong, 403, "wrong_code").await;
    let message = wrong["message"].as_str().unwrap();
    assert!(
        message.contains("/cancel?order=") && !message.contains("/take"),
        "{message}"
    );
    for (body, code) in [
        (String::new(), "bad_ticket"),
        (format!("order={ticket}&pickup=1"), "unknown_parameter"),
    ] {
        let refused = form("/cancel", body).send().await.unwrap();
        let refused = expect_error(refused, 400, code).await;
        let message = refused["message"].as_str().unwrap();
        assert!(
            message.contains("/cancel") && !message.contains("/take"),
            "{message}"
        );
    }
    let text = client
        .post(ledger.url("/take"))
        .header("content-type", "text/plain")
        .body(format!("order={ticket}&code={code}"))
        .send()
        .await
        .unwrap();
    expect_error(text, 415, "unsupported_media_type").await;
    ledger.unchanged("a code in a text body").await;
    let taken = form("/take", format!("order={ticket}&code={code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 200);
    assert_eq!(header(&taken, "cache-control"), "no-store");
    let taken: Value = taken.json().await.unwrap();
    assert_eq!(taken["status"], "COLLECTED");
    ledger.live.retain(|t| *t != ticket);
    ledger.before = ledger.app.board().await;

    // The order in the query, the code in the body: one set of parameters.
    let order = ledger.accept("to cancel").await;
    let (n, code) = (
        order["order"].as_u64().unwrap(),
        order["pickup_code"].as_str().unwrap(),
    );
    let cancelled = client
        .post(ledger.url(&format!("/cancel?order={n}")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={code}"))
        .send()
        .await
        .unwrap();
    // READY already (prep time 0): too late, and it says so about /cancel.
    let too_late = expect_error(cancelled, 409, "too_late").await;
    assert_eq!(too_late["status"], "READY");

    // The 415 for a charset names a charset, and never repeats anything else.
    for (content_type, shown, hidden) in [
        ("text/plain; charset=utf-16le", "charset utf-16le", ""),
        (
            "text/plain; charset=\"<b>x</b>\"",
            "the charset it names",
            "<b>",
        ),
    ] {
        let response = client
            .post(ledger.url("/order"))
            .header("content-type", content_type)
            .body("fries")
            .send()
            .await
            .unwrap();
        let error = expect_error(response, 415, "unsupported_charset").await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(shown), "{message}");
        assert!(hidden.is_empty() || !message.contains(hidden), "{message}");
    }
}

/// `POST /qr` draws what the kiosk sends, a phone page of this restaurant,
/// and nothing else, under the rules of every route; a burst gets drawings
/// or `503 busy` with `Retry-After`, never a queue of CPU work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_draws_only_this_restaurants_phone_pages() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    let host = app.base.strip_prefix("http://").unwrap().to_owned();
    let qr = |body: Vec<u8>, path: &str| {
        app.client
            .post(app.url(path))
            .header("content-type", "text/plain; charset=utf-8")
            .body(body)
            .send()
    };
    let good = format!("http://{host}/my/7#code=482913");
    let response = qr(good.clone().into_bytes(), "/qr").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "image/svg+xml");
    assert!(response.text().await.unwrap().contains("<svg"));

    let mut utf16 = Vec::new();
    for unit in good.encode_utf16() {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    for (body, status, code) in [
        (
            b"http://evil.example/my/7#code=482913".to_vec(),
            400,
            "not_a_phone_page",
        ),
        (
            format!("http://{host}/my/7").into_bytes(),
            400,
            "not_a_phone_page",
        ),
        (
            format!("http://{host}/my/7#code=482913\0").into_bytes(),
            400,
            "not_a_phone_page",
        ),
        (
            format!("http://{host}/my/7#code=482913\x1b[2J").into_bytes(),
            400,
            "not_a_phone_page",
        ),
        (
            format!("http://{host}/my/7?x=1#code=482913").into_bytes(),
            400,
            "not_a_phone_page",
        ),
        (
            "\u{200B}\u{2060}".as_bytes().to_vec(),
            400,
            "not_a_phone_page",
        ),
        (
            "anything at all, a kilobyte of it".repeat(30).into_bytes(),
            413,
            "text_too_long",
        ),
        (utf16.clone(), 400, "not_a_phone_page"),
        (Vec::new(), 400, "empty_text"),
    ] {
        let response = qr(body, "/qr").await.unwrap();
        expect_error(response, status, code).await;
    }
    let response = qr(good.clone().into_bytes(), "/qr?size=9000")
        .await
        .unwrap();
    expect_error(response, 400, "unknown_parameter").await;

    // A burst: each answer is a drawing or a refusal that says when to ask
    // again.
    let answers =
        futures_util::future::join_all((0..40).map(|_| qr(good.clone().into_bytes(), "/qr"))).await;
    let mut drawn = 0;
    for response in answers {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => drawn += 1,
            503 => {
                assert_eq!(header(&response, "retry-after"), "1");
                expect_error(response, 503, "busy").await;
            }
            other => panic!("a burst of /qr answered {other}"),
        }
    }
    assert!(drawn > 0, "no QR code drawn in a burst of 40");
    app.shutdown().await;
}
