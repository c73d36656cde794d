//! The HTTP contract (every route, its answers and `/updates`), end to end
//! against the real app on port 0 with a temporary data directory.

use crate::support::{
    DEADLINE, SseEvent, TestApp, expect_error, header, place_orders, read_counter, wait_until,
};
use serde_json::{Value, json};

/// The changes an `/updates` client saw, checked to be well formed: `id` is
/// the version, versions increase, and each change is reflected in the board
/// it carries.
fn changes(events: &[SseEvent]) -> Vec<(u32, String)> {
    let mut last = None;
    let mut out = Vec::new();
    for event in events {
        assert_eq!(
            event.event, "message",
            "default event type, for EventSource.onmessage"
        );
        assert_eq!(event.id, event.version().to_string(), "id is the version");
        if let Some(last) = last {
            assert!(
                event.version() > last,
                "versions increase: {last} then {}",
                event.version()
            );
        }
        last = Some(event.version());
        if let Some((ticket, status)) = event.change() {
            let shown = event.board().statuses().get(&ticket).cloned();
            match status.as_str() {
                "COLLECTED" | "CANCELLED" => assert_eq!(shown, None, "{status} leaves the board"),
                _ => assert_eq!(
                    shown.as_deref(),
                    Some(status.as_str()),
                    "the board shows the change"
                ),
            }
            out.push((ticket, status));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_boards_both_see_every_change_of_an_order_in_order() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    let mut boards = [app.updates().await, app.updates().await];
    for board in &mut boards {
        let first = board.next_event().await;
        assert_eq!(
            first.data,
            json!({"version": 0, "change": null, "orders": []})
        );
        assert_eq!(first.id, "0");
    }

    let response = app.order("  double cheeseburger, no pickles \n").await;
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "location"), "/orders/1");
    assert!(header(&response, "content-type").starts_with("application/json"));
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["order"], 1);
    assert_eq!(order["status"], "TAKEN");
    assert_eq!(
        order["content"], "double cheeseburger, no pickles",
        "the order is trimmed"
    );
    assert!(
        order["taken_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{order}"
    );
    let code = order["pickup_code"].as_str().unwrap().to_owned();

    let mut seen = [Vec::new(), Vec::new()];
    for (board, seen) in boards.iter_mut().zip(&mut seen) {
        while seen.last().and_then(SseEvent::change) != Some((1, "READY".into())) {
            seen.push(board.next_event().await);
        }
    }
    let collected = app.take(1, &code).await;
    assert_eq!(collected.status(), 200);
    let collected: Value = collected.json().await.unwrap();
    assert_eq!(collected["order"], 1);
    assert_eq!(collected["status"], "COLLECTED");
    assert_eq!(collected["content"], "double cheeseburger, no pickles");

    let expected: Vec<(u32, String)> = ["TAKEN", "PREPARING", "READY", "COLLECTED"]
        .iter()
        .map(|s| (1, s.to_string()))
        .collect();
    for (board, seen) in boards.iter_mut().zip(&mut seen) {
        seen.push(board.next_event().await);
        assert_eq!(changes(seen), expected);
        assert!(
            seen.last().unwrap().board().orders.is_empty(),
            "a collected order leaves the board"
        );
    }
    assert_eq!(
        seen[0].iter().map(|e| &e.data).collect::<Vec<_>>(),
        seen[1].iter().map(|e| &e.data).collect::<Vec<_>>(),
        "both boards got the same events"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_before_the_first_order_answers_at_once_with_an_empty_board() {
    let app = TestApp::spawn(&[]).await;
    let mut board = app.updates().await;
    let first = board.next_event().await;
    assert_eq!(
        first.data,
        json!({"version": 0, "change": null, "orders": []})
    );
    assert_eq!(first.id, "0");
    let orders = app.get_json("/orders").await;
    assert_eq!(orders, json!({"version": 0, "orders": []}));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_and_board_shapes() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    let placed = [
        app.place_coded("cola").await,
        app.place_coded("fries").await,
        app.place_coded("ice cream").await,
    ];
    let tickets = placed.clone().map(|p| p.ticket);
    assert_eq!(tickets, [1, 2, 3]);
    let board = app.wait_all_ready(&tickets).await;

    for (ticket, content) in tickets.iter().zip(["cola", "fries", "ice cream"]) {
        let order = app.order_json(*ticket).await;
        let keys: Vec<&str> = order
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "content",
                "deliveries",
                "order",
                "preparing_at",
                "ready_at",
                "status",
                "taken_at",
                "worker"
            ],
            "{order}"
        );
        assert_eq!(order["deliveries"], 1, "{order}");
        let worker = order["worker"].as_str().unwrap();
        assert!(
            worker.starts_with("worker ")
                && worker.ends_with(&format!("(pid {})", std::process::id())),
            "{order}"
        );
        assert_eq!(order["order"], *ticket);
        assert_eq!(order["status"], "READY");
        assert_eq!(order["content"], content);
        let times: Vec<&str> = ["taken_at", "preparing_at", "ready_at"]
            .map(|k| order[k].as_str().unwrap())
            .into();
        for time in &times {
            assert!(
                time.len() == 24 && time.ends_with('Z'),
                "RFC 3339 UTC with milliseconds: {time}"
            );
        }
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "steps in time order: {times:?}"
        );
        let listed = board.orders.iter().find(|o| o["order"] == *ticket).unwrap();
        assert_eq!(
            listed, &order,
            "GET /orders shows each order as GET /orders/N does"
        );
    }
    let collected = app.take(2, &placed[1].code).await;
    assert_eq!(collected.status(), 200);
    let collected: Value = collected.json().await.unwrap();
    assert!(collected["closed_at"].is_string(), "{collected}");

    let board = app.board().await;
    assert_eq!(
        board.statuses().keys().copied().collect::<Vec<_>>(),
        [1, 3],
        "collected orders leave the board"
    );
    assert_eq!(board.version, 3 * 3 + 1, "one version per change");
    assert_eq!(
        app.order_json(2).await,
        json!({"order": 2, "status": "COLLECTED"})
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_bodies_are_checked() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;

    expect_error(app.order("").await, 400, "empty_order").await;
    expect_error(app.order(" \n\t \r\n").await, 400, "empty_order").await;
    expect_error(
        app.order(vec![b'b', b'u', 0xff, 0xfe, b'r']).await,
        400,
        "not_text",
    )
    .await;
    let long = expect_error(app.order("x".repeat(1001)).await, 413, "order_too_long").await;
    assert!(long["message"].as_str().unwrap().contains("1001"), "{long}");
    expect_error(app.order("é".repeat(1001)).await, 413, "order_too_long").await;
    expect_error(app.order("y".repeat(100 * 1024)).await, 413, "too_large").await;

    let multibyte = "é".repeat(999) + "🍔";
    let response = app.order(format!("\n  {multibyte}  \n")).await;
    assert_eq!(
        response.status(),
        201,
        "1000 characters fit, however many bytes"
    );
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["content"], multibyte.as_str());
    assert_eq!(order["order"], 1, "refused orders cost no ticket");
    let exactly = "z".repeat(1000);
    let order: Value = app
        .order(format!("\t{exactly}\n"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        order["content"],
        exactly.as_str(),
        "whitespace around 1000 characters is trimmed, not counted"
    );
    assert_eq!(order["order"], 2);

    let board = app.wait_all_ready(&[1, 2]).await;
    assert_eq!(board.orders.len(), 2, "no refused order is on the board");
    assert_eq!(read_counter(&app.data_dir), 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_checks_its_ticket_and_the_order_status() {
    // One worker and a long preparation: order 1 stays PREPARING, order 2 TAKEN.
    let app = TestApp::spawn(&["--workers", "1", "--prep-time", "60s"]).await;
    for query in [
        "",
        "x=1",
        "order=",
        "order=abc",
        "order=0",
        "order=-1",
        "order=1.0",
        "order=%201",
    ] {
        expect_error(app.take_query(query).await, 400, "bad_ticket").await;
    }
    expect_error(app.take_query("order=4294967296").await, 400, "bad_ticket").await;
    expect_error(
        app.take_query("order=99999999999999999999999").await,
        400,
        "bad_ticket",
    )
    .await;
    let twice = expect_error(app.take_query("order=1&order=1").await, 400, "bad_ticket").await;
    assert!(
        twice["message"].as_str().unwrap().contains("once"),
        "{twice}"
    );
    let unknown = expect_error(
        app.take(4_294_967_295, "123456").await,
        404,
        "unknown_order",
    )
    .await;
    assert!(
        unknown["message"].as_str().unwrap().contains("4294967295"),
        "{unknown}"
    );

    let codes = [
        app.place_coded("burger").await.code,
        app.place_coded("fries").await.code,
    ];
    wait_until(DEADLINE, "order 1 is PREPARING", || async {
        app.order_json(1).await["status"] == "PREPARING"
    })
    .await;
    for (ticket, status) in [(1, "PREPARING"), (2, "TAKEN")] {
        let code = &codes[ticket as usize - 1];
        let body = expect_error(app.take(ticket, code).await, 409, "not_ready").await;
        assert!(
            body["message"].as_str().unwrap().contains(status),
            "the message says its status: {body}"
        );
        assert_eq!(body["status"], status);
        assert_eq!(
            app.order_json(ticket).await["status"],
            status,
            "a refused collection changes nothing"
        );
    }
    expect_error(app.take(3, &codes[0]).await, 404, "unknown_order").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_collected_once() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    let placed = app.place_coded("milkshake").await;
    let (ticket, code) = (placed.ticket, placed.code);
    app.wait_all_ready(&[ticket]).await;
    assert_eq!(app.take(ticket, &code).await.status(), 200);
    let gone = expect_error(app.take(ticket, &code).await, 410, "already_collected").await;
    assert!(
        gone["message"]
            .as_str()
            .unwrap()
            .contains(&ticket.to_string()),
        "{gone}"
    );
    expect_error(app.take(ticket, &code).await, 410, "already_collected").await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    use reqwest::Method;
    let cases = [
        (Method::GET, "/nothing/here", 404, "not_found"),
        (Method::POST, "/orders/1/extra", 404, "not_found"),
        (Method::GET, "/order", 405, "method_not_allowed"),
        (Method::GET, "/take?order=1", 405, "method_not_allowed"),
        (Method::DELETE, "/orders/1", 405, "method_not_allowed"),
        (Method::POST, "/orders", 405, "method_not_allowed"),
        (Method::POST, "/updates", 405, "method_not_allowed"),
        (Method::GET, "/orders/1", 404, "unknown_order"),
        (Method::GET, "/orders/abc", 400, "bad_ticket"),
        (Method::GET, "/orders/0", 400, "bad_ticket"),
    ];
    for (method, path, status, code) in cases {
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        expect_error(response, status, code).await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_leaving_no_ghost_and_burning_no_ticket() {
    let app = TestApp::spawn(&[
        "--queue-capacity",
        "1",
        "--workers",
        "1",
        "--prep-time",
        "60s",
    ])
    .await;
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..3 {
        let response = app.order(format!("order {i}")).await;
        if response.status() == 503 {
            refused = Some(response);
            break;
        }
        accepted.push(crate::support::ticket_of(response).await);
    }
    let refused = refused.expect("the second or third order is refused");
    let retry_after = header(&refused, "retry-after");
    assert!(
        retry_after.parse::<u32>().is_ok_and(|s| s > 0),
        "Retry-After in seconds: {retry_after:?}"
    );
    expect_error(refused, 503, "queue_unavailable").await;
    // Once full, it stays full while the order is prepared.
    let again = app.order("one more").await;
    assert_eq!(header(&again, "retry-after"), retry_after);
    expect_error(again, 503, "queue_unavailable").await;

    let expected: Vec<u32> = (1..=accepted.len() as u32).collect();
    assert_eq!(accepted, expected);
    let board = app.board().await;
    assert_eq!(
        board.statuses().keys().copied().collect::<Vec<_>>(),
        expected,
        "no ghost order on the board"
    );
    assert_eq!(
        read_counter(&app.data_dir),
        accepted.len() as u32,
        "no ticket was burnt for a refused order"
    );
    for ticket in accepted.len() as u32 + 1..=accepted.len() as u32 + 2 {
        expect_error(app.get_order(ticket).await, 404, "unknown_order").await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_orders_with_no_board_all_get_ready() {
    // More workers only make it quicker: the point is that nothing deadlocks
    // when no board is connected.
    let app = TestApp::spawn(&["--prep-time", "0", "--workers", "8"]).await;
    let start = std::time::Instant::now();
    let tickets = place_orders(&[&app.base], 3000, 32).await;
    eprintln!("placed in {:?}", start.elapsed());
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=3000).collect::<Vec<_>>(),
        "every order got its own consecutive ticket"
    );
    let board = app.wait_all_ready(&sorted).await;
    assert_eq!(
        board.version,
        3 * 3000,
        "every order went TAKEN, PREPARING, READY"
    );
    app.shutdown().await;
}

/// Reads `screen` until it shows version `last`; each event's version and
/// whether it was a change, and the last event's board.
async fn read_until(
    screen: &mut crate::support::SseClient,
    last: u64,
) -> (Vec<(u64, bool)>, crate::support::Board) {
    let mut seen = Vec::new();
    loop {
        let event = screen.next_event().await;
        assert_eq!(event.id, event.version().to_string(), "id is the version");
        seen.push((event.version(), !event.is_whole()));
        if event.version() >= last {
            return (seen, event.board());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_that_never_reads_slows_nobody() {
    const ORDERS: usize = 2000;
    let app = TestApp::spawn(&["--prep-time", "0"]).await;
    // Connected, and not read until the very end.
    let mut stalled = app.updates().await;
    let mut reading = app.updates().await;
    // The reading board keeps up as best it can while the orders go through,
    // applying each change to its copy of the board: what it saw, and the
    // board it ends with.
    let reader = tokio::spawn(async move {
        let end = tokio::time::Duration::from_secs(300);
        tokio::time::timeout(end, read_until(&mut reading, 3 * ORDERS as u64)).await
    });

    let start = std::time::Instant::now();
    let tickets = place_orders(&[&app.base], ORDERS, 32).await;
    eprintln!("placed in {:?}", start.elapsed());
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    let board = app.wait_all_ready(&sorted).await;
    eprintln!("ready in {:?}", start.elapsed());
    assert_eq!(board.version, 3 * ORDERS as u64);

    let (seen, last) = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the reading board shows the final state")
        .unwrap()
        .expect("the reading board reaches the last version");
    eprintln!("reader caught up in {:?}", start.elapsed());
    assert!(
        last.all_ready(&sorted),
        "the reading board ends with every order READY"
    );
    assert_eq!(seen[0], (0, false), "the first event is the empty board");
    for pair in seen.windows(2) {
        let ((before, _), (after, is_change)) = (pair[0], pair[1]);
        assert!(
            after == before + 1 || (after > before && !is_change),
            "every change, or a resync with the whole board: {before} then {after} (change: {is_change})"
        );
    }

    // The stalled board, once it reads, gets through what was buffered for
    // it (6,000 changes alone are ~1.5 MB: mostly in the sockets' buffers)
    // and, if it fell behind the changes kept, the whole board as it is now.
    let (seen, last) = tokio::time::timeout(DEADLINE, read_until(&mut stalled, board.version))
        .await
        .expect("the stalled board catches up");
    eprintln!(
        "stalled caught up in {:?}, {} resyncs",
        start.elapsed(),
        seen.iter()
            .skip(1)
            .filter(|(_, is_change)| !is_change)
            .count()
    );
    assert!(last.all_ready(&sorted));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = TestApp::spawn(&[]).await;
    let health = app.get_json("/healthz").await;
    assert_eq!(health["status"], "ok");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["store"], "ok");
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_text_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_at(dir.path(), &["--prep-time", "0"]).await;
    let mut board = app.updates().await;
    board.next_event().await;
    let text = "two \"specials\",\nno onions\r\n\t½ cola 🍔 \u{2028} end\\ \u{200D} </script>";
    // A NUL is a control character: refused, never stored (it used to
    // round-trip like the rest).
    let with_nul = app.order(format!("  {text} \u{0}\n")).await;
    expect_error(with_nul, 400, "control_character").await;
    let response = app.order(format!("  {text}\n")).await;
    let placed = crate::support::placed_of(response).await;
    let ticket = placed.ticket;
    assert_eq!(app.order_json(ticket).await["content"], text);
    let event = board.next_event().await;
    assert_eq!(event.change(), Some((ticket, "TAKEN".to_owned())));
    assert_eq!(
        event.data["change"]["content"], text,
        "the board shows it as typed"
    );
    app.wait_all_ready(&[ticket]).await;
    app.shutdown().await;

    // And as the log replays it.
    let app = TestApp::spawn_at(dir.path(), &["--prep-time", "0"]).await;
    assert_eq!(app.order_json(ticket).await["content"], text);
    let collected: Value = app.take(ticket, &placed.code).await.json().await.unwrap();
    assert_eq!(collected["content"], text);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_ticket_number_is_handed_out_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("counter"), (u32::MAX - 1).to_be_bytes()).unwrap();
    let app = TestApp::spawn_at(dir.path(), &["--prep-time", "0", "--queue-capacity", "1"]).await;
    let last = app.place_coded("the last one").await;
    assert_eq!(last.ticket, u32::MAX);
    app.wait_all_ready(&[u32::MAX]).await;
    for _ in 0..3 {
        expect_error(app.order("one too many").await, 503, "tickets_exhausted").await;
    }
    assert_eq!(
        read_counter(dir.path()),
        u32::MAX,
        "the counter never wraps"
    );
    let board = app.board().await;
    assert_eq!(
        board.statuses().keys().copied().collect::<Vec<_>>(),
        [u32::MAX]
    );
    assert_eq!(app.take(u32::MAX, &last.code).await.status(), 200);
    app.shutdown().await;
}
