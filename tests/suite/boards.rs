//! Boards under stress (the `/updates` stream): a board that never
//! reads, thousands of boards at once, reconnecting boards with any
//! `Last-Event-ID`, and a SIGTERM with boards open. The server runs as a
//! child process where its memory, file descriptors or exit status matter.
//!
//! Invariant **M** (docs/guarantees.md) is checked on every board by a
//! [`Watcher`]: event ids are the versions and strictly increase, and each
//! order's status only moves forward (TAKEN → PREPARING → READY →
//! COLLECTED), whether it is told as a change or seen on a whole board.

use std::time::Duration;

use crate::support::invariants::Forward;
use crate::support::{
    DEADLINE, Placed, ServerProcess, SseClient, SseEvent, TestApp, http_client, place_orders,
    placed_orders, proc_status_bytes, streams_client,
};
use fastfood::order::Status;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// What one board has seen, checking invariant M as events arrive.
#[derive(Default)]
struct Watcher {
    last: Option<u64>,
    /// Each order's furthest status so far; leaving the board counts as
    /// reaching COLLECTED.
    forward: Forward,
    /// Changes told one by one (not counting whole-board events).
    changes: usize,
    /// Whole-board events after the first (the board fell behind).
    resyncs: usize,
}

impl Watcher {
    fn step(&mut self, ticket: u32, status: &str, how: &str) {
        if let Err(e) = self.forward.see(ticket, status) {
            panic!("{e} ({how})");
        }
    }

    fn watch(&mut self, event: &SseEvent) {
        assert_eq!(event.event, "message");
        let version = event.version();
        assert_eq!(event.id, version.to_string(), "the id is the version");
        if let Some(last) = self.last {
            assert!(
                version > last,
                "ids strictly increase: {last} then {version}"
            );
        }
        if let Some((ticket, status)) = event.change()
            && !event.is_whole()
        {
            // A change alone: only that order moved.
            self.changes += 1;
            self.step(ticket, &status, "a change");
            self.last = Some(version);
            return;
        }
        let board = event.board();
        let on_board = board.statuses();
        match event.change() {
            Some((ticket, status)) => {
                self.changes += 1;
                self.step(ticket, &status, "a change");
            }
            None if self.last.is_some() => self.resyncs += 1,
            None => {}
        }
        for (ticket, status) in &on_board {
            self.step(*ticket, status, "on the board");
        }
        // An order this board knew that is no longer on it has left.
        let left = Status::Collected.rank();
        let gone: Vec<u32> = self
            .forward
            .furthest()
            .iter()
            .filter(|(t, r)| **r < left && !on_board.contains_key(t))
            .map(|(t, _)| *t)
            .collect();
        for ticket in gone {
            if let Err(from) = self.forward.reach(ticket, left) {
                panic!(
                    "order {ticket} went backward on a board (left the board): rank {from} then {left}"
                );
            }
        }
        self.last = Some(version);
    }

    /// Reads `screen` until it shows version `until`; the last event.
    async fn read_until(&mut self, screen: &mut SseClient, until: u64) -> SseEvent {
        loop {
            let event = screen.next_event().await;
            self.watch(&event);
            if event.version() >= until {
                return event;
            }
        }
    }
}

/// `POST /take?order=N&code=C` for each order, expecting 200s.
async fn collect_all(base: &str, placed: &[Placed]) {
    let client = http_client();
    futures_util::stream::iter(placed.iter().map(|p| (p.ticket, p.code.clone())))
        .map(|(t, code)| {
            let client = client.clone();
            async move {
                let response = client
                    .post(format!("{base}/take?order={t}&code={code}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200, "POST /take?order={t}");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_that_never_reads_costs_bounded_memory_over_ten_thousand_changes() {
    const ORDERS: usize = 2500;
    const CHANGES: u64 = 4 * ORDERS as u64;
    /// Generous: the requirement is "bounded", not "small". (Growth is ~20 MB
    /// here; when the board kept its last 256 frames whatever their size, a
    /// 2,500-order board made it ~130 MB, and a 10,000-order one ~500 MB.)
    const MAX_GROWTH: u64 = 100 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    // Connected, read once, then never again until the very end.
    let mut stalled = server.updates().await;
    let mut stalled_watch = Watcher::default();
    stalled_watch.watch(&stalled.next_event().await);
    let reading = server.updates().await;
    let before = proc_status_bytes(server.pid, "VmRSS");

    let reader = tokio::spawn(async move {
        let mut reading = reading;
        let mut watch = Watcher::default();
        let last = watch.read_until(&mut reading, CHANGES).await;
        (watch, last)
    });

    let placed = placed_orders(&[&server.base], ORDERS, 32).await;
    let mut sorted: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    sorted.sort_unstable();
    server.wait_all_ready(&sorted).await;
    collect_all(&server.base, &placed).await;
    let board = server.board().await;
    assert_eq!((board.version, board.orders.len()), (CHANGES, 0));
    let after = proc_status_bytes(server.pid, "VmRSS");
    eprintln!(
        "VmRSS {} MB before, {} MB after {CHANGES} changes with a board that never reads",
        before >> 20,
        after >> 20
    );
    assert!(
        after.saturating_sub(before) < MAX_GROWTH,
        "a board that never reads costs bounded memory: VmRSS grew from {} MB to {} MB",
        before >> 20,
        after >> 20
    );

    // The reading board saw the restaurant through to the empty board, every
    // order moving only forward, and (keeping up) nearly every change.
    let (watch, last) = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the reading board reaches the last change")
        .unwrap();
    assert!(last.board().orders.is_empty(), "{:?}", last.data);
    assert_eq!(watch.forward.orders(), ORDERS, "it saw every order");
    assert!(
        watch
            .forward
            .furthest()
            .values()
            .all(|r| *r >= Status::Collected.rank()),
        "it saw every order leave"
    );
    eprintln!(
        "the reading board: {} changes one by one, {} resyncs",
        watch.changes, watch.resyncs
    );

    // The stalled board, reading at last, gets what was kept for it (10,000
    // changes alone are ~2 MB: most wait in the sockets' buffers) and, if
    // it fell behind the kept changes, the board as it is now.
    let last = stalled_watch.read_until(&mut stalled, CHANGES).await;
    assert!(last.board().orders.is_empty(), "{:?}", last.data);
    eprintln!(
        "the stalled board: {} changes one by one, {} resyncs",
        stalled_watch.changes, stalled_watch.resyncs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_boards_each_get_the_board_then_every_change() {
    const BOARDS: usize = 5000;
    // Each board is a socket here and one in the server (a child: it inherits
    // this limit), plus what the test harness itself holds.
    let wanted = (BOARDS + 1000) as u64;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < wanted {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(wanted.max(soft)), hard).unwrap();
    }
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(
        soft >= wanted,
        "{BOARDS} boards need {wanted} open files; the hard limit is {hard}"
    );

    let dir = tempfile::tempdir().unwrap();
    // Every board connects from 127.0.0.1: room for them all under the caps.
    let server = ServerProcess::spawn(
        dir.path(),
        &["--prep-time", "0", "--max-connections-per-client", "6000"],
    )
    .await;
    let client = streams_client();
    let url = server.url("/updates");
    let mut boards: Vec<(SseClient, Watcher)> = futures_util::stream::iter(0..BOARDS)
        .map(|_| {
            let request = client.get(&url);
            async move {
                let mut board = SseClient::from_request(request).await;
                let first = board.next_event().await;
                assert_eq!(
                    first.data,
                    json!({"version": 0, "change": null, "orders": []})
                );
                let mut watch = Watcher::default();
                watch.watch(&first);
                (board, watch)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(boards.len(), BOARDS);

    let ticket = server.place("one burger for five thousand screens").await;
    server.wait_all_ready(&[ticket]).await;
    let results: Vec<Vec<(u32, String)>> = futures_util::stream::iter(boards.iter_mut())
        .map(|(board, watch)| async move {
            let mut changes = Vec::new();
            while changes.len() < 3 {
                let event = board.next_event().await;
                watch.watch(&event);
                changes.extend(event.change());
            }
            changes
        })
        .buffer_unordered(256)
        .collect()
        .await;
    let expected: Vec<(u32, String)> = ["TAKEN", "PREPARING", "READY"]
        .iter()
        .map(|s| (ticket, s.to_string()))
        .collect();
    for changes in &results {
        assert_eq!(
            changes, &expected,
            "every board gets every change, in order"
        );
    }
    assert_eq!(results.len(), BOARDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_last_event_id_still_starts_with_the_whole_board() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    let placed = [
        app.place_coded("cola").await,
        app.place_coded("fries").await,
    ];
    let tickets = [placed[0].ticket, placed[1].ticket];
    let board = app.wait_all_ready(&tickets).await;
    assert_eq!(board.version, 6);

    let ids: &[&[u8]] = &[
        b"0",
        b"1",
        b"5",
        b"6",
        b"7",
        b"999999",
        b"18446744073709551615",
        b"18446744073709551616",
        b"-1",
        b"garbage",
        b"",
        b" 3 ",
        b"3.5",
        b"\xff\xfe",
    ];
    let client = streams_client();
    let mut screens = Vec::new();
    for id in ids {
        let request = client.get(app.url("/updates")).header(
            "Last-Event-ID",
            reqwest::header::HeaderValue::from_bytes(id).unwrap(),
        );
        let mut screen = SseClient::from_request(request).await;
        let first = screen.next_event().await;
        let shown = String::from_utf8_lossy(id);
        assert_eq!(
            first.change(),
            None,
            "Last-Event-ID {shown:?}: the whole board first"
        );
        assert_eq!(
            first.version(),
            6,
            "Last-Event-ID {shown:?}: the board as it is now"
        );
        assert_eq!(
            first.data["orders"],
            json!(board.orders),
            "Last-Event-ID {shown:?}"
        );
        let mut watch = Watcher::default();
        watch.watch(&first);
        screens.push((shown.into_owned(), screen, watch));
    }

    // Then they carry on like any board.
    let next = app.place("ice cream").await;
    app.take(tickets[0], &placed[0].code).await;
    for (id, screen, watch) in &mut screens {
        let mut changes = Vec::new();
        while changes.len() < 4 {
            let event = screen.next_event().await;
            watch.watch(&event);
            changes.extend(event.change());
        }
        changes.sort();
        let mut expected = vec![
            (tickets[0], "COLLECTED".to_string()),
            (next, "TAKEN".into()),
            (next, "PREPARING".into()),
            (next, "READY".into()),
        ];
        expected.sort();
        assert_eq!(
            changes, expected,
            "Last-Event-ID {id:?}: every change after"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hundred_boards_open_exits_within_five_seconds() {
    const BOARDS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    // One worker with a long preparation: an order is being prepared when the
    // signal comes, and the rest wait.
    let mut server =
        ServerProcess::spawn(dir.path(), &["--workers", "1", "--prep-time", "60s"]).await;
    let client = streams_client();
    let mut boards = Vec::new();
    for _ in 0..BOARDS {
        let mut board = SseClient::from_request(client.get(server.url("/updates"))).await;
        board.next_event().await;
        boards.push(board);
    }
    let tickets = place_orders(&[&server.base], 200, 16).await;
    crate::support::wait_until(DEADLINE, "an order is PREPARING", || async {
        server
            .board()
            .await
            .statuses()
            .values()
            .any(|s| s == "PREPARING")
    })
    .await;
    // Half the boards read along; the other half never read again, so the
    // server has writes pending to them when the signal comes.
    let mut reading = boards.split_off(BOARDS / 2);
    let mut watches: Vec<Watcher> = (0..reading.len()).map(|_| Watcher::default()).collect();
    for (board, watch) in reading.iter_mut().zip(&mut watches) {
        watch.read_until(board, 200).await;
    }

    server.terminate();
    let status = server
        .wait(Duration::from_secs(5))
        .await
        .expect("the server exits within 5 s of SIGTERM with 100 boards open");
    assert_eq!(
        status.code(),
        Some(0),
        "a SIGTERM is a clean stop; stderr:\n{}",
        server.stderr()
    );
    for board in &mut reading {
        assert_eq!(
            board.wait_end(Duration::from_secs(5)).await,
            Some(true),
            "each board's stream ends cleanly"
        );
    }

    // Nothing was lost: every order is still there after a restart.
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    let mut sorted = tickets;
    sorted.sort_unstable();
    let board = server.wait_all_ready(&sorted).await;
    assert_eq!(board.orders.len(), 200);
    let _: Value = server.order_json(sorted[0]).await;
}

/// A restaurant holding `n` orders of about 1,000 characters, none cooked
/// (`--workers 1 --prep-time 1h`: one PREPARING, the rest TAKEN).
async fn full_of(n: usize) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--workers", "1", "--prep-time", "1h"]).await;
    let client = http_client();
    let url = server.url("/order");
    futures_util::stream::iter(0..n)
        .map(|i| {
            let request = client.post(&url).body(format!("{i} {}", "x".repeat(990)));
            async move { assert_eq!(request.send().await.unwrap().status(), 201) }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    (dir, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_costs_the_same_however_full_the_restaurant_is() {
    let (_dir, server) = full_of(1000).await;
    let mut board = server.updates().await;
    let whole = board.next_event().await;
    assert!(whole.is_whole() && whole.change().is_none());
    assert_eq!(whole.board().orders.len(), 1000);
    let mut every = SseClient::connect(&server.url("/updates?board=every")).await;
    assert_eq!(every.next_event().await.board().orders.len(), 1000);

    let placed = server.place_coded("one more cola").await;
    let change = board.next_raw().await;
    assert!(
        change.data.len() < 600,
        "a change with 1,000 orders live is {} bytes: {}",
        change.data.len(),
        change.data
    );
    let data: Value = serde_json::from_str(&change.data).unwrap();
    assert_eq!(data["change"]["order"], placed.ticket);
    assert_eq!(data["change"]["status"], "TAKEN");
    assert_eq!(
        data["change"]["content"], "one more cola",
        "the whole order"
    );
    assert!(data.get("orders").is_none(), "{data}");
    // The opt-in gets the whole board with the change, as the original did.
    let with_board = every.next_event().await;
    assert_eq!(with_board.change(), Some((placed.ticket, "TAKEN".into())));
    assert_eq!(with_board.data["orders"].as_array().unwrap().len(), 1001);
    // The copy a board keeps from changes is the board.
    let cancelled = server.cancel(placed.ticket, &placed.code).await;
    assert_eq!(cancelled.status(), 200);
    let after = board.next_event().await;
    assert_eq!(after.change(), Some((placed.ticket, "CANCELLED".into())));
    let copy = after.board();
    let asked = server.board().await;
    assert_eq!(copy.statuses(), asked.statuses());
    assert_eq!(json!(copy.orders), json!(asked.orders));
    // A value other than first or every is refused.
    let refused = http_client()
        .get(server.url("/updates?board=all"))
        .send()
        .await
        .unwrap();
    crate::support::expect_error(refused, 400, "bad_parameter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_of_a_full_restaurant_cost_bounded_memory() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // 2,000 orders: a board of about 2 MB.
    const READERS: usize = 40;
    let (_dir, server) = full_of(2000).await;
    let size = http_client()
        .get(server.url("/orders"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    assert!(size > 2_000_000, "{size} bytes");
    let before = proc_status_bytes(server.pid, "VmRSS");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = Vec::new();
    for i in 0..READERS {
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let path = if i % 2 == 0 { "/orders" } else { "/updates" };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        // Read the head only, then never again.
        let mut head = [0u8; 64];
        let _ = socket.read(&mut head).await.unwrap();
        stalled.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = proc_status_bytes(server.pid, "VmRSS");
    let grown = after.saturating_sub(before);
    eprintln!(
        "{READERS} stalled readers of a {} KB board: VmRSS {} MB before, {} MB after",
        size >> 10,
        before >> 20,
        after >> 20
    );
    // A copy of the board each would be 80 MB.
    assert!(
        grown < (READERS * size) as u64 / 4,
        "stalled readers grew VmRSS by {} MB",
        grown >> 20
    );
    // Nobody else waits for them.
    let board = server.board().await;
    assert_eq!(board.orders.len(), 2000);
    drop(stalled);
}
