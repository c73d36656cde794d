//! The restaurant with its orders in PostgreSQL (`--database`): the same
//! walk on both backends from one harness, several processes on one
//! database, and the database's faults (not answering, not ours, newer,
//! lost while running, a statement that hangs), each with its sentence and
//! never the password.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::pg::{Backend, Database};
use crate::support::rabbit::Rabbit;
use crate::support::{
    DEADLINE, ServerProcess, SseClient, TestApp, WorkerProcess, expect_error, header, run_to_exit,
    wait_until,
};

/// The longest `/order` may take while the database is away: its batch's
/// timeout, and some room for a small shared machine.
const BOUNDED: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_walk_holds_on_both_backends_and_across_a_restart() {
    for backend in Backend::both("walk") {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--prep-time", "0"];
        args.extend(backend.args());
        let app = TestApp::spawn_at(dir.path(), &args).await;
        let name = backend.name();
        let first = app.place_coded("fries").await;
        let second = app.place_coded("shake").await;
        assert_eq!(
            (first.ticket, second.ticket),
            (1, 2),
            "{name}: tickets from 1"
        );
        app.wait_all_ready(&[1, 2]).await;
        expect_error(app.take(1, "000000").await, 403, "wrong_code").await;
        let taken = app.take(1, &first.code).await;
        assert_eq!(taken.status(), 200, "{name}");
        expect_error(app.take(1, &first.code).await, 410, "already_collected").await;
        expect_error(app.cancel(2, &second.code).await, 409, "too_late").await;
        let order = app.order_json(2).await;
        assert_eq!(order["status"], "READY", "{name}: {order}");
        assert_eq!(order["deliveries"], 1, "{name}: {order}");
        app.shutdown().await;

        // The same restaurant again: everything is where it was, and the
        // next ticket follows the last.
        let app = TestApp::spawn_at(dir.path(), &args).await;
        expect_error(app.take(1, &first.code).await, 410, "already_collected").await;
        expect_error(app.take(2, "000000").await, 403, "wrong_code").await;
        assert_eq!(app.take(2, &second.code).await.status(), 200, "{name}");
        assert_eq!(app.place("burger").await, 3, "{name}: the counter goes on");
        app.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_in_process_queue_is_refused_with_a_sentence() {
    let db = Database::create("alone");
    let dir = tempfile::tempdir().unwrap();
    let first = ServerProcess::spawn(dir.path(), &["--database", &db.url]).await;
    let other = tempfile::tempdir().unwrap();
    let second = run_to_exit(other.path(), &["--database", &db.url]).await;
    assert!(!second.status.success());
    assert!(
        second
            .stderr
            .contains("another fastfood process already uses the database")
            && second.stderr.contains("--broker"),
        "{}",
        second.stderr
    );
    // The first one still takes orders, and is the only one with a line.
    let ticket = first.place("fries").await;
    first.wait_all_ready(&[ticket]).await;
}

/// `(version, ticket, status)` of every change a screen saw after its first
/// board, until `count` orders have gone by COLLECTED.
async fn follow_screen(mut screen: SseClient, count: usize) -> (u64, Vec<(u64, u32, String)>) {
    let first = screen.next_event().await;
    let start = first.version();
    let mut seen = Vec::new();
    let mut collected = 0;
    while collected < count {
        let event = screen.next_event().await;
        let (ticket, status) = event
            .change()
            .unwrap_or_else(|| panic!("a whole board in the middle: {:?}", event.data));
        if status == "COLLECTED" {
            collected += 1;
        }
        seen.push((event.version(), ticket, status));
    }
    (start, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_two_workers_on_one_database_see_every_change_in_one_order() {
    let Some(rabbit) = Rabbit::vhost("pg_two_servers").await else {
        return;
    };
    let db = Database::create("two_servers");
    let args = [
        "--database",
        db.url.as_str(),
        "--broker",
        rabbit.url.as_str(),
        "--workers",
        "0",
    ];
    let (dir_a, dir_b, dir_w) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = ServerProcess::spawn(dir_a.path(), &args).await;
    let b = ServerProcess::spawn(dir_b.path(), &args).await;
    let worker_args = ["--database", db.url.as_str(), "--prep-time", "20ms"];
    let mut w1 = WorkerProcess::spawn(dir_w.path(), &rabbit.url, &worker_args, &[]).await;
    let _w2 = WorkerProcess::spawn(dir_w.path(), &rabbit.url, &worker_args, &[]).await;
    const ORDERS: usize = 40;
    let screens = [
        tokio::spawn(follow_screen(a.updates().await, ORDERS)),
        tokio::spawn(follow_screen(b.updates().await, ORDERS)),
    ];

    let mut placed = Vec::new();
    for i in 0..ORDERS {
        if i == ORDERS / 2 {
            // A worker dies holding whatever it had: the other cooks it.
            w1.kill9().await;
        }
        let server = if i % 2 == 0 { &a } else { &b };
        placed.push((server, server.place_coded(&format!("order {i}")).await));
    }
    let tickets: Vec<u32> = placed.iter().map(|(_, p)| p.ticket).collect();
    assert_eq!(
        tickets.iter().collect::<BTreeSet<_>>().len(),
        ORDERS,
        "no ticket twice: {tickets:?}"
    );
    a.wait_all_ready(&tickets).await;
    b.wait_all_ready(&tickets).await;
    for (i, (_, p)) in placed.iter().enumerate() {
        // Collected at the other server than the one that took it.
        let server = if i % 2 == 0 { &b } else { &a };
        assert_eq!(server.take(p.ticket, &p.code).await.status(), 200);
    }
    // What every board must show: each change in the database's log that
    // moved an order's status (a restatement, such as the broker's
    // confirmation, moves nothing a screen shows), in version order.
    let log =
        db.sql("select version, ticket, body->>'status' from fastfood_changes order by version");
    let mut last_status = std::collections::BTreeMap::new();
    let mut expected = Vec::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        let (version, ticket) = (
            fields[0].parse::<u64>().unwrap(),
            fields[1].parse::<u32>().unwrap(),
        );
        if last_status.insert(ticket, fields[2].to_owned()).as_deref() != Some(fields[2]) {
            expected.push((version, ticket, fields[2].to_owned()));
        }
    }
    for screen in screens {
        let (start, seen) = tokio::time::timeout(DEADLINE, screen)
            .await
            .expect("every change reaches both screens")
            .unwrap();
        let from_start: Vec<_> = expected
            .iter()
            .filter(|(v, _, _)| *v > start)
            .cloned()
            .collect();
        assert_eq!(
            seen, from_start,
            "a board saw every status change, in the log's version order, no gap, no repeat"
        );
    }
    let rows = db.sql("select count(*) from fastfood_orders where status = 'COLLECTED'");
    assert_eq!(rows, ORDERS.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_does_not_answer_at_start_is_refused_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    for (url, says) in [
        (
            "postgres://postgres:hunter2@127.0.0.1:1/fastfood",
            "Connection refused",
        ),
        // An address nobody answers on: the connection times out.
        ("postgres://postgres:hunter2@10.255.255.1:5432/fastfood", ""),
    ] {
        let started = Instant::now();
        let exited = run_to_exit(dir.path(), &["--database", url]).await;
        assert!(!exited.status.success());
        assert!(
            started.elapsed() < BOUNDED,
            "refused in {:?}",
            started.elapsed()
        );
        assert!(
            exited
                .stderr
                .contains("cannot open the order store: PostgreSQL at postgres://postgres:***@")
                && exited.stderr.contains(says),
            "{}",
            exited.stderr
        );
        assert!(!exited.stderr.contains("hunter2"), "{}", exited.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_ours_or_newer_is_refused_and_left_alone() {
    let db = Database::create("not_ours");
    db.sql("create table fastfood_orders (id int, name text); insert into fastfood_orders values (1, 'mine')");
    let dir = tempfile::tempdir().unwrap();
    let exited = run_to_exit(dir.path(), &["--database", &db.url]).await;
    assert!(!exited.status.success());
    assert!(
        exited.stderr.contains(
            "the table fastfood_orders has other columns than fastfood's (id integer, name text)"
        ) && exited
            .stderr
            .contains("never alters a table it did not make"),
        "{}",
        exited.stderr
    );
    assert_eq!(db.sql("select name from fastfood_orders"), "mine");
    assert_eq!(
        db.sql("select count(*) from pg_tables where tablename like 'fastfood_%'"),
        "1",
        "nothing created next to it"
    );

    let newer = Database::create("newer");
    let app = TestApp::spawn(&["--database", &newer.url]).await;
    app.shutdown().await;
    newer.sql("update fastfood_meta set schema_version = 99");
    let exited = run_to_exit(dir.path(), &["--database", &newer.url]).await;
    assert!(!exited.status.success());
    assert!(
        exited.stderr.contains(
            "the database's schema is version 99, newer than this fastfood knows (version 1)"
        ),
        "{}",
        exited.stderr
    );
}

/// `POST /order`, timed: its status and its `Retry-After`.
async fn timed_order(app: &TestApp) -> (u16, String, Value) {
    let started = Instant::now();
    let response = app.order("fries".to_owned()).await;
    assert!(
        started.elapsed() < BOUNDED,
        "/order took {:?}",
        started.elapsed()
    );
    let status = response.status().as_u16();
    let retry = header(&response, "retry-after");
    (status, retry, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_lost_while_running_answers_503_then_comes_back_by_itself() {
    let db = Database::create("lost");
    // Trust auth ignores the password; it is there to be kept out of sight.
    let url = db.url.replace("postgres@", "postgres:hunter2@");
    let app = TestApp::spawn(&["--database", &url, "--prep-time", "0"]).await;
    let placed = app.place_coded("before").await;
    app.wait_all_ready(&[placed.ticket]).await;

    db.refuse_connections();
    let (status, retry, body) = timed_order(&app).await;
    assert_eq!((status, retry.as_str()), (503, "1"), "{body}");
    assert!(!body.to_string().contains("hunter2"));
    let take = app.take(placed.ticket, &placed.code).await;
    assert_eq!(take.status(), 503);
    assert_eq!(header(&take, "retry-after"), "1");
    wait_until(DEADLINE, "/readyz says 503", || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 503)
    })
    .await;
    // The board stays up with what it had.
    let board = app.board().await;
    assert_eq!(
        board.statuses().get(&placed.ticket).map(String::as_str),
        Some("READY")
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("hunter2"));

    db.allow();
    wait_until(DEADLINE, "/order answers 201 again", || async {
        timed_order(&app).await.0 == 201
    })
    .await;
    wait_until(DEADLINE, "/readyz says 200", || async {
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert_eq!(app.take(placed.ticket, &placed.code).await.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_hangs_on_a_lock_is_bounded_by_a_timeout() {
    let db = Database::create("hangs");
    let app = TestApp::spawn(&["--database", &db.url, "--prep-time", "0"]).await;
    let first = app.place("before").await;
    app.wait_all_ready(&[first]).await;

    let meddler = db.connect().await;
    meddler
        .batch_execute("begin; lock table fastfood_changes in access exclusive mode")
        .await
        .unwrap();
    let (status, retry, body) = timed_order(&app).await;
    assert_eq!((status, retry.as_str()), (503, "1"), "{body}");
    meddler.batch_execute("rollback").await.unwrap();

    wait_until(DEADLINE, "/order answers 201 again", || async {
        timed_order(&app).await.0 == 201
    })
    .await;
    app.shutdown().await;
}
