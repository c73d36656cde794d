//! A counter a restaurant would run: pickup codes (only the customer who got
//! the `201` can collect or cancel, wrong guesses are throttled, and the code
//! appears nowhere else), cancelling (decided by the store against a
//! worker's claim, never cooked afterwards, in every mode) and the wait
//! (`ahead` and `estimated_ready_at`, checked against the real READY times).

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

use crate::support::invariants::{
    Accepted, StoreAt, check_files, check_forward_in_store, check_shape, check_unique, read_at,
    read_files,
};
use crate::support::pg::Backend;
use crate::support::rabbit::Rabbit;
use crate::support::{
    Api, DEADLINE, Placed, ServerProcess, WorkerProcess, expect_error, header, placed_orders,
    wait_until,
};

/// The throttle's window in these tests (a minute in a restaurant).
const WINDOW: &str = "2s";

fn time(value: &Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().unwrap_or_else(|| panic!("a time: {value}")))
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// The code with its last digit changed: a wrong code.
fn wrong(code: &str) -> String {
    let (head, last) = code.split_at(5);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// Asserts that none of `codes` appears in `text`, naming `what`.
fn no_code_in(text: &str, codes: &[&str], what: &str) {
    for code in codes {
        assert!(
            !text.contains(code),
            "pickup code {code} found in {what}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_codes_guard_the_counter_and_never_leave_the_201() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with_env(
        dir.path(),
        &["--prep-time", "0"],
        &[("FASTFOOD_CODE_WINDOW", WINDOW)],
    )
    .await;
    let mut screen = server.updates().await;
    let placed: Vec<Placed> = [
        server.place_coded("burger").await,
        server.place_coded("fries").await,
        server.place_coded("cola").await,
    ]
    .into();
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    let codes: Vec<&str> = placed.iter().map(|p| p.code.as_str()).collect();
    server.wait_all_ready(&tickets).await;
    let (ticket, code) = (placed[0].ticket, placed[0].code.as_str());

    // Missing and wrong: 403, nothing handed over.
    let mut seen = String::new();
    let missing = expect_error(
        server.take_query(&format!("order={ticket}")).await,
        403,
        "wrong_code",
    )
    .await;
    seen.push_str(&missing.to_string());
    // The message shows where the code goes, not a code of its own: six
    // digits in it would read as if the server had revealed one.
    let message = missing["message"].as_str().unwrap();
    let digits = |w: &[u8]| w.iter().all(u8::is_ascii_digit);
    assert!(
        !message.as_bytes().windows(6).any(digits),
        "no code-like number in {message:?}"
    );
    for _ in 0..4 {
        let body = expect_error(server.take(ticket, &wrong(code)).await, 403, "wrong_code").await;
        seen.push_str(&body.to_string());
    }
    // Five wrong: the order is closed to codes until the window passes,
    // even to the right one.
    let throttled = server.take(ticket, code).await;
    let retry: u64 = header(&throttled, "retry-after")
        .parse()
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    expect_error(throttled, 429, "too_many_attempts").await;
    expect_error(server.cancel(ticket, code).await, 429, "too_many_attempts").await;
    assert_eq!(server.order_json(ticket).await["status"], "READY");
    // Other orders are not affected: typed with a space, and with a hyphen.
    for (p, typed) in [(&placed[1], " "), (&placed[2], "-")] {
        let split = format!("{}{typed}{}", &p.code[..3], &p.code[3..]);
        let encoded = split.replace(' ', "%20");
        let collected = server.take(p.ticket, &encoded).await;
        assert_eq!(collected.status(), 200, "{split}");
        seen.push_str(&collected.text().await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let collected = server.take(ticket, code).await;
    assert_eq!(
        collected.status(),
        200,
        "allowed again once the window passed"
    );
    let collected: Value = collected.json().await.unwrap();
    assert_eq!(collected["status"], "COLLECTED");
    seen.push_str(&collected.to_string());

    // The code was in the 201 only: not in any other answer, board event or
    // log line. (The 201's own body holds it.)
    assert!(placed[0].body.to_string().contains(code));
    for t in &tickets {
        seen.push_str(&server.order_json(*t).await.to_string());
    }
    seen.push_str(&server.get_json("/orders").await.to_string());
    seen.push_str(&server.metrics_text().await);
    while let Some(event) = screen.try_next_event(Duration::from_millis(500)).await {
        seen.push_str(&event.data.to_string());
    }
    assert!(seen.contains("COLLECTED"), "the events were read");
    no_code_in(&seen, &codes, "an answer or an event");
    no_code_in(&server.stderr(), &codes, "the server's log");
    // The store's files do hold them: that is where they are checked.
    let log = std::fs::read_to_string(dir.path().join("orders.log")).unwrap();
    assert!(
        codes.iter().all(|c| log.contains(c)),
        "the log keeps the codes"
    );
}

/// Connects to `rabbit` and binds a queue of the test's own to the changes
/// exchange: every change notice any process publishes, as raw bytes.
async fn listen_to_changes(rabbit: &Rabbit) -> (Connection, lapin::Consumer) {
    let connection = Connection::connect(&rabbit.url, ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            "fastfood.changes".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    (connection, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_codes_never_reach_the_broker() {
    let Some(rabbit) = Rabbit::vhost("codes").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        dir.path(),
        &[
            "--workers",
            "0",
            "--broker",
            &rabbit.url,
            "--prep-time",
            "0",
        ],
    )
    .await;
    let (connection, mut changes) = listen_to_changes(&rabbit).await;
    let placed = placed_orders(&[&server.base], 3, 3).await;
    let codes: Vec<&str> = placed.iter().map(|p| p.code.as_str()).collect();

    // Nobody cooks yet: the orders' messages wait in `orders`; read them
    // raw, and leave them there (unacknowledged, they go back on close).
    let peek = connection.create_channel().await.unwrap();
    let mut bodies = Vec::new();
    while let Some(message) = peek
        .basic_get("orders".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
    {
        bodies.push(message.delivery.data.clone());
    }
    assert_eq!(bodies.len(), 3, "one message per order");
    peek.close(200, "bye".into()).await.unwrap();

    let worker = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await;
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    server.wait_all_ready(&tickets).await;
    for p in &placed {
        assert_eq!(server.take(p.ticket, &p.code).await.status(), 200);
    }
    // Every change is announced: 3 orders × TAKEN, PREPARING, READY, COLLECTED.
    let mut notices = Vec::new();
    let mut lines = 0;
    while lines < 12 {
        let delivery = tokio::time::timeout(DEADLINE, changes.next())
            .await
            .expect("change notices")
            .expect("the stream goes on")
            .expect("a notice");
        lines += delivery.data.iter().filter(|b| **b == b'\n').count();
        notices.extend_from_slice(&delivery.data);
    }
    for body in bodies.iter().chain([&notices]) {
        for code in &codes {
            assert!(
                !body.windows(code.len()).any(|w| w == code.as_bytes()),
                "pickup code {code} in a broker message: {}",
                String::from_utf8_lossy(body)
            );
        }
    }
    no_code_in(&server.stderr(), &codes, "the server's log");
    no_code_in(&worker.stderr(), &codes, "the worker's log");
    let _ = connection.close(200, "bye".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_taken_then_too_late_then_gone() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--workers", "1", "--prep-time", "2s"]).await;
    let mut screen = server.updates().await;
    screen.next_event().await;
    let first = server.place_coded("burger").await;
    wait_until(DEADLINE, "order 1 is PREPARING", || async {
        server.order_json(first.ticket).await["status"] == "PREPARING"
    })
    .await;
    let second = server.place_coded("fries").await;
    assert_eq!(second.body["ahead"], 0, "{}", second.body);

    expect_error(
        server.cancel(second.ticket, &wrong(&second.code)).await,
        403,
        "wrong_code",
    )
    .await;
    let cancelled = server.cancel(second.ticket, &second.code).await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "CANCELLED");
    assert!(cancelled["closed_at"].is_string(), "{cancelled}");
    expect_error(
        server.cancel(second.ticket, &second.code).await,
        410,
        "already_cancelled",
    )
    .await;
    expect_error(
        server.take(second.ticket, &second.code).await,
        410,
        "already_cancelled",
    )
    .await;
    assert_eq!(
        server.order_json(second.ticket).await,
        json!({"order": second.ticket, "status": "CANCELLED", "cancelled_by": "customer"})
    );
    // The board drops it at once, in one event.
    let mut events = Vec::new();
    while !events.contains(&(second.ticket, "CANCELLED".to_owned())) {
        let change = screen.next_event().await.change();
        events.extend(change.filter(|(t, _)| *t == second.ticket));
    }
    assert_eq!(
        events,
        [(2, "TAKEN".to_owned()), (2, "CANCELLED".to_owned())],
        "nothing else happened meanwhile"
    );
    assert!(!server.board().await.statuses().contains_key(&second.ticket));

    let too_late = expect_error(
        server.cancel(first.ticket, &first.code).await,
        409,
        "too_late",
    )
    .await;
    assert_eq!(too_late["status"], "PREPARING");
    let third = server.place_coded("cola").await;
    server.wait_all_ready(&[first.ticket, third.ticket]).await;
    let too_late = expect_error(
        server.cancel(first.ticket, &first.code).await,
        409,
        "too_late",
    )
    .await;
    assert_eq!(too_late["status"], "READY");
    assert_eq!(server.take(first.ticket, &first.code).await.status(), 200);
    expect_error(
        server.cancel(first.ticket, &first.code).await,
        410,
        "already_collected",
    )
    .await;

    // The worker met the cancelled order in the queue and skipped it.
    assert!(
        server
            .stderr()
            .contains("order 2 was cancelled while waiting: skipped"),
        "{}",
        server.stderr()
    );
    let files = read_files(dir.path());
    check_files(&files);
    check_forward_in_store(&files);
    let steps: Vec<_> = files
        .log
        .iter()
        .filter(|l| l.order.ticket == second.ticket)
        .map(|l| l.order.status.to_string())
        .collect();
    assert_eq!(steps, ["TAKEN", "CANCELLED"], "never cooked");
    let taken = files.log.iter().find(|l| l.order.ticket == second.ticket);
    assert_eq!(
        taken.and_then(|l| l.pickup_code.as_deref()),
        Some(second.code.as_str()),
        "the line that took it keeps its code"
    );
}

/// Places `count` orders at `api` and cancels each right after its `201`,
/// while the kitchen claims them: for each, exactly one of the cancel and
/// the claim wins. Then checks the store (files or database): a cancelled
/// order was never PREPARING, a claimed one was never CANCELLED and reached
/// READY.
async fn cancel_racing_claims(api: &Api, at: &StoreAt, count: usize) {
    let outcomes: Vec<(Placed, u16)> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let placed = api.place_coded(&format!("race {i}")).await;
            let cancel = api.cancel(placed.ticket, &placed.code).await;
            let status = cancel.status().as_u16();
            if status != 200 {
                let body = expect_error(cancel, 409, "too_late").await;
                assert!(["PREPARING", "READY"].contains(&body["status"].as_str().unwrap()));
            }
            (placed, status)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let won = outcomes.iter().filter(|(_, s)| *s == 200).count();
    eprintln!("{won} of {count} cancels came before the claim");
    let cooked: Vec<u32> = outcomes
        .iter()
        .filter(|(_, s)| *s != 200)
        .map(|(p, _)| p.ticket)
        .collect();
    api.wait_all_ready(&cooked).await;
    let accepted: Vec<Accepted> = outcomes
        .iter()
        .map(|(p, _)| Accepted {
            ticket: p.ticket,
            content: p.body["content"].as_str().unwrap().to_owned(),
            code: p.code.clone(),
        })
        .collect();
    // Any worker that was handed a cancelled order has settled it by now
    // (the READY orders came after it in the line); read the store.
    let files = read_at(at);
    check_shape(at, &files);
    check_forward_in_store(&files);
    check_unique(&files, &accepted);
    for (placed, status) in &outcomes {
        // (With RabbitMQ a TAKEN order is restated once, marked queued.)
        let steps = files.steps(placed.ticket);
        if *status == 200 {
            assert_eq!(
                steps,
                ["TAKEN", "CANCELLED"],
                "order {}: cancelled, never cooked",
                placed.ticket
            );
            assert_eq!(api.order_json(placed.ticket).await["status"], "CANCELLED");
        } else {
            assert!(
                !steps.contains(&"CANCELLED".to_owned()),
                "order {}: {steps:?}",
                placed.ticket
            );
            assert!(
                steps.contains(&"READY".to_owned()),
                "order {}: {steps:?}",
                placed.ticket
            );
        }
    }
}

async fn a_cancel_racing_a_claim_ends_one_way(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let args = backend.with(&["--prep-time", "0"]);
    let server = ServerProcess::spawn(dir.path(), &args).await;
    cancel_racing_claims(&server, &backend.store_at(dir.path()), 200).await;
}

crate::on_both_backends!(
    a_cancel_racing_a_claim_ends_one_way_only,
    a_cancel_racing_a_claim_ends_one_way
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_skip_cancelled_orders() {
    let Some(rabbit) = Rabbit::vhost("cancel").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        dir.path(),
        &[
            "--workers",
            "0",
            "--broker",
            &rabbit.url,
            "--prep-time",
            "0",
        ],
    )
    .await;
    // Cancelled while its message waits in RabbitMQ, before any worker runs.
    let waiting = server.place_coded("a cancelled burger").await;
    assert_eq!(
        server.cancel(waiting.ticket, &waiting.code).await.status(),
        200
    );
    let workers = [
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "1s"], &[]).await,
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "1s"], &[]).await,
    ];
    rabbit.wait_drained("orders").await;
    let skipped = format!(
        "order {} was cancelled while waiting: skipped",
        waiting.ticket
    );
    assert!(
        workers.iter().any(|w| w.stderr().contains(&skipped)),
        "a worker acknowledged it uncooked"
    );
    // And racing the workers' claims.
    cancel_racing_claims(&server, &StoreAt::Files(dir.path().to_owned()), 40).await;
    rabbit.wait_drained("orders").await;
}

/// The wait: `blockers` orders PREPARING, then four placed behind them, one
/// after the other: `ahead` is 0, 1, 2, 3 and each estimate lands within
/// half the actual wait plus a second of the real READY time. `on_board`:
/// READY orders already there.
async fn the_estimate_holds(api: &Api, blockers: usize, on_board: &[u32]) {
    let blocking = placed_orders(&[&api.base], blockers, blockers).await;
    for b in &blocking {
        wait_until(DEADLINE, "the blockers are PREPARING", || async {
            api.order_json(b.ticket).await["status"] != "TAKEN"
        })
        .await;
    }
    let mut placed = Vec::new();
    for i in 0..4 {
        placed.push(api.place_coded(&format!("order {i}")).await);
    }
    let aheads: Vec<u64> = placed
        .iter()
        .map(|p| p.body["ahead"].as_u64().unwrap())
        .collect();
    assert_eq!(aheads, [0, 1, 2, 3], "{placed:?}");
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    let shown = api.order_json(tickets[3]).await;
    assert!(
        shown["ahead"].is_u64() && shown["estimated_ready_at"].is_string(),
        "{shown}"
    );
    let everything: Vec<u32> = on_board
        .iter()
        .copied()
        .chain(blocking.iter().map(|b| b.ticket))
        .chain(tickets.iter().copied())
        .collect();
    api.wait_all_ready(&everything).await;
    for p in &placed {
        let order = api.order_json(p.ticket).await;
        assert!(order.get("ahead").is_none(), "READY has no wait: {order}");
        let ready = time(&order["ready_at"]);
        let wait = ready.duration_since(time(&order["taken_at"])).unwrap();
        let estimate = time(&p.body["estimated_ready_at"]);
        let off = match ready.duration_since(estimate) {
            Ok(late) => late,
            Err(early) => early.duration(),
        };
        eprintln!(
            "order {}: waited {wait:?}, estimate off by {off:?}",
            p.ticket
        );
        assert!(
            off <= wait / 2 + Duration::from_secs(1),
            "order {}: ready at {:?}, estimated {:?}, after a wait of {wait:?}",
            p.ticket,
            order["ready_at"],
            p.body["estimated_ready_at"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_is_estimated_from_the_kitchen() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--workers", "1", "--prep-time", "1s"]).await;
    the_estimate_holds(&server, 1, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_is_estimated_behind_rabbitmq_too() {
    let Some(rabbit) = Rabbit::vhost("wait").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        dir.path(),
        &[
            "--workers",
            "0",
            "--broker",
            &rabbit.url,
            "--prep-time",
            "1s",
        ],
    )
    .await;
    let _workers = [
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "1s"], &[]).await,
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "1s"], &[]).await,
    ];
    // Two orders cooked at once: both workers consume, and by the time they
    // are READY the server has asked RabbitMQ how many there are.
    let warm = placed_orders(&[&server.base], 2, 2).await;
    let warm: Vec<u32> = warm.iter().map(|p| p.ticket).collect();
    server.wait_all_ready(&warm).await;
    the_estimate_holds(&server, 2, &warm).await;
    rabbit.wait_drained("orders").await;
}

/// The status and error code of an answer to `/take` or `/cancel`.
async fn outcome(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON answer");
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

/// Of two answers given at once about order `ticket`, one is `200` and the
/// other `410 loser`.
async fn one_wins(ticket: u32, first: reqwest::Response, second: reqwest::Response, loser: &str) {
    let mut answers = vec![outcome(first).await, outcome(second).await];
    answers.sort();
    assert_eq!(
        answers,
        [(200, String::new()), (410, loser.to_owned())],
        "order {ticket}: exactly one changes it"
    );
}

/// The answer about order `ticket` is one of `allowed` (status, code).
async fn one_of(ticket: u32, response: reqwest::Response, allowed: &[(u16, &str)]) {
    let (status, code) = outcome(response).await;
    assert!(
        allowed.contains(&(status, code.as_str())),
        "order {ticket}: {status} {code}"
    );
}

/// Two servers on one store (RabbitMQ holds their line): customers with the
/// right code, and a stranger with a wrong one, at both at once. The code
/// is checked in the step that collects or cancels, so exactly one of them
/// changes the order, whichever process each asked.
async fn the_pickup_code_is_checked_in_the_step_that_collects_or_cancels(backend: Backend) {
    const ORDERS: usize = 10;
    let Some(rabbit) = Rabbit::vhost(&format!("code-race-{}", backend.tag())).await else {
        return;
    };
    let dirs = backend.data_dirs(3);
    let args = backend.with(&["--workers", "0", "--broker", &rabbit.url]);
    let a = ServerProcess::spawn(dirs.of(0), &args).await;
    let b = ServerProcess::spawn(dirs.of(1), &args).await;

    // Waiting orders (nobody cooks yet): two cancels at once, one at each
    // server, and a wrong code beside them.
    let waiting = placed_orders(&[&a.base, &b.base], ORDERS, ORDERS).await;
    for p in &waiting {
        let guess = wrong(&p.code);
        let (first, second, stranger) = futures_util::join!(
            a.cancel(p.ticket, &p.code),
            b.cancel(p.ticket, &p.code),
            b.cancel(p.ticket, &guess),
        );
        one_wins(p.ticket, first, second, "already_cancelled").await;
        let allowed = [(403, "wrong_code"), (410, "already_cancelled")];
        one_of(p.ticket, stranger, &allowed).await;
    }

    // READY orders: a take at each server, a cancel and a wrong code, at once.
    let worker_args = backend.with(&["--prep-time", "0"]);
    let _worker = WorkerProcess::spawn(dirs.of(2), &rabbit.url, &worker_args, &[]).await;
    let ready = placed_orders(&[&a.base, &b.base], ORDERS, ORDERS).await;
    let tickets: Vec<u32> = ready.iter().map(|p| p.ticket).collect();
    a.wait_all_ready(&tickets).await;
    b.wait_all_ready(&tickets).await;
    for p in &ready {
        // (The wrong codes split between the servers: each process lets
        // one address try 20 before it closes every order to it.)
        let guess = wrong(&p.code);
        let (first, second, cancel, stranger) = futures_util::join!(
            a.take(p.ticket, &p.code),
            b.take(p.ticket, &p.code),
            a.cancel(p.ticket, &p.code),
            a.take(p.ticket, &guess),
        );
        one_wins(p.ticket, first, second, "already_collected").await;
        let allowed = [(409, "too_late"), (410, "already_collected")];
        one_of(p.ticket, cancel, &allowed).await;
        let allowed = [(403, "wrong_code"), (410, "already_collected")];
        one_of(p.ticket, stranger, &allowed).await;
    }

    // The store says the same: one change each, never undone.
    let at = backend.store_at(dirs.of(0));
    let store = read_at(&at);
    check_shape(&at, &store);
    check_forward_in_store(&store);
    for p in &waiting {
        assert_eq!(
            store.steps(p.ticket),
            ["TAKEN", "CANCELLED"],
            "{}",
            p.ticket
        );
    }
    for p in &ready {
        assert_eq!(
            store.steps(p.ticket),
            ["TAKEN", "PREPARING", "READY", "COLLECTED"],
            "{}",
            p.ticket
        );
    }
    rabbit.wait_drained("orders").await;
}

crate::on_both_backends!(
    the_pickup_code_is_checked_in_the_step_that_collects_or_cancels_whichever_process_is_asked,
    the_pickup_code_is_checked_in_the_step_that_collects_or_cancels
);
