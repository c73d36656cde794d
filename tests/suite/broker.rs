//! The broker modes against the real RabbitMQ on 127.0.0.1:5672: simple mode
//! with the broker, complex mode with worker processes, two servers sharing a
//! restaurant, workers killed at the worst moments, and broker passwords kept
//! out of everything the program writes. Each test has a vhost
//! of its own. Without a broker these tests skip with a loud message, unless
//! `FASTFOOD_REQUIRE_BROKER=1` (as in CI) makes that a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::WorkerProcess;
use crate::support::invariants::read_at;
use crate::support::pg::{Backend, DataDirs};
use crate::support::process::fastfood;
use crate::support::rabbit::{HOST, Rabbit, rabbitmqctl};
use crate::support::{
    DEADLINE, ServerProcess, SseClient, TestApp, code_for, expect_error, place_orders,
    placed_orders, wait_until,
};
use fastfood::order::Status;
use serde_json::Value;

/// Each order's statuses as its change events announced them, in order.
async fn follow(board: &mut SseClient, tickets: &[u32], until: &str) -> BTreeMap<u32, Vec<String>> {
    let mut seen: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut last_id = 0;
    while !tickets.iter().all(|t| {
        seen.get(t)
            .is_some_and(|s| s.last().map(String::as_str) == Some(until))
    }) {
        let event = board.next_event().await;
        assert!(
            event.version() > last_id,
            "ids increase: {} after {last_id}",
            event.version()
        );
        last_id = event.version();
        let (ticket, status) = event
            .change()
            .expect("a change per event, not a resync, while the test keeps up");
        seen.entry(ticket).or_default().push(status);
    }
    seen
}

/// The status changes `orders.log` records for `ticket`, in order (a record
/// that only marks the order queued is not a change of status).
fn logged(data_dir: &Path, ticket: u32) -> Vec<String> {
    let log = std::fs::read_to_string(data_dir.join("orders.log")).expect("orders.log");
    let mut statuses: Vec<String> = log
        .lines()
        .skip(1)
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .filter(|record| record["order"]["order"] == ticket)
        .map(|record| record["order"]["status"].as_str().unwrap().to_owned())
        .collect();
    statuses.dedup();
    statuses
}

/// Whether `statuses` only ever move forward (or stay).
fn forward(statuses: &[String]) -> bool {
    let rank = |s: &str| match serde_json::from_value::<Status>(Value::from(s)).unwrap() {
        Status::Cancelled => panic!("these orders are never cancelled: {statuses:?}"),
        status => status.rank(),
    };
    statuses.windows(2).all(|w| rank(&w[0]) <= rank(&w[1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_mode_queues_orders_in_the_broker() {
    let Some(rabbit) = Rabbit::vhost("simple").await else {
        return;
    };
    let app = TestApp::spawn(&["--broker", &rabbit.url, "--prep-time", "0"]).await;
    let mut board = app.updates().await;
    assert_eq!(
        board.next_event().await.change(),
        None,
        "the whole board comes first"
    );

    let placed = placed_orders(std::slice::from_ref(&app.base), 5, 5).await;
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    let seen = follow(&mut board, &tickets, "READY").await;
    for ticket in &tickets {
        assert_eq!(
            seen[ticket],
            ["TAKEN", "PREPARING", "READY"],
            "order {ticket}"
        );
        let code = code_for(&placed, *ticket);
        let taken: Value = app.take(*ticket, code).await.json().await.unwrap();
        assert_eq!(taken["status"], "COLLECTED");
    }
    rabbit.wait_drained("orders").await;
    let ready = app.board().await;
    assert!(
        ready.orders.is_empty(),
        "collected orders leave the board: {:?}",
        ready.orders
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complex_mode_cooks_in_worker_processes_and_every_change_reaches_the_board() {
    let Some(rabbit) = Rabbit::vhost("complex").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let _cooks = [
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "50ms"], &[]).await,
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "50ms"], &[]).await,
    ];
    let mut board = server.updates().await;
    board.next_event().await;

    let tickets = place_orders(std::slice::from_ref(&server.base), 20, 4).await;
    assert_eq!(
        tickets.iter().copied().collect::<BTreeSet<_>>(),
        (1..=20).collect()
    );
    let seen = follow(&mut board, &tickets, "READY").await;
    for ticket in &tickets {
        assert_eq!(
            seen[ticket],
            ["TAKEN", "PREPARING", "READY"],
            "order {ticket}: made by a worker, seen by the server"
        );
    }
    rabbit.wait_drained("orders").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_two_workers_share_one_restaurant() {
    let Some(rabbit) = Rabbit::vhost("two-servers").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let servers = [
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await,
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await,
    ];
    let _cooks = [
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await,
        WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await,
    ];
    let mut boards = [servers[0].updates().await, servers[1].updates().await];
    for board in &mut boards {
        board.next_event().await;
    }

    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let tickets = place_orders(&bases, 60, 8).await;
    assert_eq!(
        tickets.iter().copied().collect::<BTreeSet<_>>(),
        (1..=60).collect(),
        "tickets never collide"
    );
    for board in &mut boards {
        let seen = follow(board, &tickets, "READY").await;
        for ticket in &tickets {
            assert_eq!(
                seen[ticket],
                ["TAKEN", "PREPARING", "READY"],
                "order {ticket}: every board sees every change"
            );
        }
    }
}

/// A complex-mode restaurant with one slow worker that has the first order
/// in the oven, and three more orders waiting behind it (on the database,
/// the server and each worker on a machine of its own).
struct OrderInTheOven {
    backend: Backend,
    dirs: DataDirs,
    server: ServerProcess,
    cook: WorkerProcess,
    first: u32,
    waiting: Vec<u32>,
}

impl OrderInTheOven {
    async fn start(rabbit: &Rabbit, backend: Backend) -> OrderInTheOven {
        let dirs = backend.data_dirs(3);
        let args = backend.with(&["--workers", "0", "--broker", &rabbit.url]);
        let server = ServerProcess::spawn(dirs.of(0), &args).await;
        let cook_args = backend.with(&["--prep-time", "10m"]);
        let cook = WorkerProcess::spawn(dirs.of(1), &rabbit.url, &cook_args, &[]).await;
        let first = server.place("the order in the oven").await;
        wait_until(DEADLINE, "the first order to be PREPARING", || async {
            server.order_json(first).await["status"] == "PREPARING"
        })
        .await;
        let waiting = place_orders(std::slice::from_ref(&server.base), 3, 1).await;
        OrderInTheOven {
            backend,
            dirs,
            server,
            cook,
            first,
            waiting,
        }
    }

    /// Starts a quick worker and checks the first order is READY before
    /// every order that was waiting: it went to the front of the line.
    async fn first_goes_first(&self, rabbit: &Rabbit) {
        let next_args = self.backend.with(&["--prep-time", "100ms"]);
        let _next = WorkerProcess::spawn(self.dirs.of(2), &rabbit.url, &next_args, &[]).await;
        let all: Vec<u32> = std::iter::once(self.first)
            .chain(self.waiting.iter().copied())
            .collect();
        let board = self.server.wait_all_ready(&all).await;
        let ready_at = |ticket: u32| {
            board.orders.iter().find(|o| o["order"] == ticket).unwrap()["ready_at"].clone()
        };
        for ticket in &self.waiting {
            assert!(
                ready_at(self.first).as_str() < ready_at(*ticket).as_str(),
                "order {} went ahead of order {ticket}",
                self.first
            );
        }
        let store = read_at(&self.backend.store_at(self.dirs.of(0)));
        assert_eq!(
            store.steps(self.first),
            ["TAKEN", "PREPARING", "READY"],
            "prepared to the end once, nothing backward"
        );
        rabbit.wait_drained("orders").await;
    }
}

async fn a_worker_killed_mid_order(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("kill-preparing-{}", backend.tag())).await else {
        return;
    };
    let mut oven = OrderInTheOven::start(&rabbit, backend).await;
    // The broker sees the connection die and hands the unacknowledged order
    // back where it was: at the front.
    oven.cook.kill9().await;
    oven.first_goes_first(&rabbit).await;
}

crate::on_both_backends!(
    a_worker_killed_mid_order_loses_nothing_and_its_order_goes_first,
    a_worker_killed_mid_order
);

/// `--prefetch 8`: RabbitMQ hands a worker eight orders at once (the fair
/// line is given up). Killed while it holds them, one in the oven and seven
/// not started, it loses none: the broker hands all eight to the next
/// worker, which prepares the one left PREPARING again and the rest once.
async fn a_worker_killed_holding_prefetched_orders(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("kill-prefetched-{}", backend.tag())).await else {
        return;
    };
    // The server and the two workers (on the database, a machine each).
    let dirs = backend.data_dirs(3);
    let args = backend.with(&["--workers", "0", "--broker", &rabbit.url]);
    let server = ServerProcess::spawn(dirs.of(0), &args).await;
    let slow_args = backend.with(&["--prep-time", "10m", "--prefetch", "8"]);
    let mut slow = WorkerProcess::spawn(dirs.of(1), &rabbit.url, &slow_args, &[]).await;
    let tickets = place_orders(std::slice::from_ref(&server.base), 10, 1).await;
    wait_until(DEADLINE, "the slow worker to hold eight orders", || async {
        rabbit.depth("orders").await == (2, 8)
    })
    .await;
    slow.kill9().await;
    let quick_args = backend.with(&["--prep-time", "0", "--prefetch", "8"]);
    let _quick = WorkerProcess::spawn(dirs.of(2), &rabbit.url, &quick_args, &[]).await;
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    server.wait_all_ready(&sorted).await;
    rabbit.wait_drained("orders").await;
    let store = read_at(&backend.store_at(dirs.of(0)));
    for ticket in &tickets {
        let steps = store.steps(*ticket);
        assert!(forward(&steps), "order {ticket}: {steps:?}");
    }
}

crate::on_both_backends!(
    a_worker_killed_holding_prefetched_orders_loses_none_of_them,
    a_worker_killed_holding_prefetched_orders
);

async fn an_order_given_back(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("give-back-{}", backend.tag())).await else {
        return;
    };
    let mut oven = OrderInTheOven::start(&rabbit, backend).await;
    // Asked to stop mid-order, the worker gives the order back: it is
    // published again at high priority, ahead of the three waiting.
    oven.cook.terminate();
    assert!(oven.cook.wait(DEADLINE).await.expect("it stops").success());
    let gave_back = format!("order {} goes back to the front", oven.first);
    assert!(oven.cook.stderr().contains(&gave_back));
    oven.first_goes_first(&rabbit).await;
}

crate::on_both_backends!(
    an_order_given_back_goes_to_the_front_of_the_line,
    an_order_given_back
);

async fn a_worker_killed_after_ready_before_its_ack(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("kill-ready-{}", backend.tag())).await else {
        return;
    };
    // The server, the doomed worker and the next one (on machines of their
    // own with the database).
    let dirs = backend.data_dirs(3);
    let args = backend.with(&["--workers", "0", "--broker", &rabbit.url]);
    let server = ServerProcess::spawn(dirs.of(0), &args).await;
    let crash = [("FASTFOOD_CRASH_AT", "after-ready")];
    let worker_args = backend.with(&["--prep-time", "0"]);
    let mut doomed = WorkerProcess::spawn(dirs.of(1), &rabbit.url, &worker_args, &crash).await;

    let ticket = server.place("a burger").await;
    let status = doomed
        .wait(DEADLINE)
        .await
        .expect("the worker dies at its crash point");
    assert!(!status.success());
    assert!(
        doomed.stderr().contains("FASTFOOD_CRASH_AT=after-ready"),
        "it died where it was told to"
    );
    // It died before announcing the change; the server reads it from the store.
    wait_until(DEADLINE, "the server to see the order READY", || async {
        server.order_json(ticket).await["status"] == "READY"
    })
    .await;

    // The broker gives the unacknowledged order to the next worker, which
    // recognises it as done and acknowledges it.
    let next = WorkerProcess::spawn(dirs.of(2), &rabbit.url, &worker_args, &[]).await;
    rabbit.wait_drained("orders").await;
    assert_eq!(server.order_json(ticket).await["status"], "READY");
    let history = read_at(&backend.store_at(dirs.of(0))).steps(ticket);
    assert!(forward(&history), "never backward: {history:?}");
    assert_eq!(history, ["TAKEN", "PREPARING", "READY"]);
    let log = next.stderr();
    assert!(
        log.lines()
            .all(|l| !l.contains(&format!("took order {ticket} again"))),
        "a READY order is not prepared again:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "order {ticket} was delivered again, to worker 1 (pid {}), and recognised as already READY",
            next.pid
        )),
        "{log}"
    );
}

crate::on_both_backends!(
    a_worker_killed_after_ready_before_its_ack_moves_nothing_backward,
    a_worker_killed_after_ready_before_its_ack
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_stored_but_never_queued_is_queued_again() {
    let Some(rabbit) = Rabbit::vhost("never-queued").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut doomed = ServerProcess::spawn_with_env(
        dir.path(),
        &["--workers", "0", "--broker", &rabbit.url],
        &[("FASTFOOD_CRASH_AT", "after-store")],
    )
    .await;
    // The server dies between storing the order and publishing it: the
    // customer gets no answer, and the order sits TAKEN with no message.
    assert!(
        doomed
            .client
            .post(doomed.url("/order"))
            .body("lost?")
            .send()
            .await
            .is_err()
    );
    assert!(!doomed.wait(DEADLINE).await.expect("it died").success());
    assert_eq!(
        rabbit.depth("orders").await,
        (0, 0),
        "nothing reached the queue"
    );

    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let _cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await;
    assert_eq!(server.order_json(1).await["status"], "TAKEN");
    wait_until(
        DEADLINE,
        "the stranded order to be queued again and prepared",
        || async { server.order_json(1).await["status"] == "READY" },
    )
    .await;
    assert!(server.stderr().contains("order 1 never reached the queue"));
    assert_eq!(
        logged(dir.path(), 1).last().map(String::as_str),
        Some("READY")
    );
}

async fn workers_that_drop_orders_give_them_back(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("fail-rate-{}", backend.tag())).await else {
        return;
    };
    let app = TestApp::spawn(&backend.with(&[
        "--broker",
        &rabbit.url,
        "--prep-time",
        "0",
        "--fail-rate",
        "0.5",
        // Every give-back counts as a delivery: no order set aside here.
        "--max-deliveries",
        "100",
    ]))
    .await;
    let tickets = place_orders(std::slice::from_ref(&app.base), 12, 4).await;
    app.wait_all_ready(&tickets).await;
    let store = read_at(&backend.store_at(&app.data_dir));
    for ticket in tickets {
        let history = store.steps(ticket);
        assert_eq!(
            history.iter().filter(|s| *s == "READY").count(),
            1,
            "order {ticket}: {history:?}"
        );
        assert!(forward(&history), "order {ticket}: {history:?}");
    }
    rabbit.wait_drained("orders").await;
    app.shutdown().await;
}

crate::on_both_backends!(
    workers_that_drop_orders_give_them_back_and_each_is_ready_once,
    workers_that_drop_orders_give_them_back
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_orders_get_503_and_the_rest_keeps_working() {
    // A port nothing listens on: the broker is "down", from the start.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("amqp://guest:guest@{}", closed.local_addr().unwrap());
    drop(closed);
    let app = TestApp::spawn(&["--broker", &url]).await;

    let response = app.order("a burger").await;
    assert_eq!(crate::support::header(&response, "retry-after"), "1");
    let error = expect_error(response, 503, "queue_unavailable").await;
    assert!(
        error["message"].as_str().unwrap().contains("broker"),
        "{error}"
    );
    assert!(app.board().await.orders.is_empty(), "no ghost order");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let checks: Value = ready.json().await.unwrap();
    assert_eq!(checks["checks"]["broker"], "disconnected");
    // The message is the one docs/api.md shows for this 503.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let message = checks["message"].as_str().unwrap();
    assert!(
        doc.contains(&format!("\"message\":\"{message}\"")),
        "docs/api.md does not show /readyz's message {message:?}"
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.shutdown().await;
}

#[tokio::test]
async fn complex_mode_refuses_to_start_without_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let run = async |args: &[&str]| {
        crate::support::process::fastfood(args, &[])
            .output()
            .await
            .unwrap()
    };
    let data = dir.path().to_str().unwrap();
    let serve = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
        "--data-dir",
        data,
    ])
    .await;
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("needs a broker: add --broker"));
    let worker = run(&["worker", "--data-dir", data]).await;
    assert!(!worker.status.success());
    assert!(String::from_utf8_lossy(&worker.stderr).contains("give it --broker"));
    let bad = run(&["worker", "--data-dir", data, "--broker", "http://nope"]).await;
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a broker URL"));
}

/// Everything a run of `fastfood ARGS` (with `env`) that stops by itself
/// wrote, stdout and stderr.
async fn all_output(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = tokio::time::timeout(DEADLINE, fastfood(args, env).output())
        .await
        .expect("it stops by itself")
        .expect("run fastfood");
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_password_never_shows_in_logs_metrics_or_answers() {
    let Some(rabbit) = Rabbit::vhost("secret").await else {
        return;
    };
    // A user of the test's own, with a password nothing else would print.
    let user = format!("fastfood-secret-{}", std::process::id());
    let password = "Pw7x-kumquat-93f1c2e8";
    let wrong = "Pw7x-persimmon-5a0d7b64";
    let _ = rabbitmqctl(&["delete_user", &user]).await;
    rabbitmqctl(&["add_user", &user, password])
        .await
        .expect("add_user");
    rabbitmqctl(&[
        "set_permissions",
        "-p",
        &rabbit.vhost,
        &user,
        ".*",
        ".*",
        ".*",
    ])
    .await
    .expect("set_permissions");
    let url = |pass: &str| format!("amqp://{user}:{pass}@{HOST}/{}", rabbit.vhost);
    let (right_url, wrong_url) = (url(password), url(wrong));
    let mut seen = String::new();

    // The right password: a server and a worker process run, at info and at
    // debug level, take and cook an order, and answer every route.
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with_env(
        dir.path(),
        &["--workers", "0", "--broker", &right_url, "--prep-time", "0"],
        &[("RUST_LOG", "debug,lapin=off")],
    )
    .await;
    let worker = WorkerProcess::spawn(dir.path(), &right_url, &["--prep-time", "0"], &[]).await;
    let ticket = server.place("fries, secretly").await;
    server.wait_all_ready(&[ticket]).await;
    for path in [
        "/metrics",
        "/readyz",
        "/orders",
        "/healthz",
        &format!("/orders/{ticket}"),
    ] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        seen += &response.text().await.unwrap();
    }
    // A refused credential mid-run is an error answer too: the broker drops
    // the user, and the server says so.
    rabbitmqctl(&["delete_user", &user])
        .await
        .expect("delete_user");
    let _ = rabbitmqctl(&["close_all_connections", "-p", &rabbit.vhost, "test"]).await;
    wait_until(
        DEADLINE,
        "the server to notice the broker is gone",
        || async {
            server
                .client
                .get(server.url("/readyz"))
                .send()
                .await
                .unwrap()
                .status()
                == 503
        },
    )
    .await;
    let refused = server
        .client
        .post(server.url("/order"))
        .body("more fries")
        .send()
        .await
        .unwrap();
    seen += &refused.text().await.unwrap();
    seen += &server
        .client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    seen += &server.metrics_text().await;
    seen += &server.stderr();
    seen += &worker.stderr();
    drop(worker);
    drop(server);

    // The wrong password (the user is gone now: refused either way), in a
    // flag and in AMQP_URL, for a server and a worker, at info and debug.
    let other = tempfile::tempdir().unwrap();
    let data = other.path().to_str().unwrap();
    for log in ["info", "debug,lapin=off"] {
        for pass in [wrong_url.as_str(), right_url.as_str()] {
            seen += &all_output(
                &[
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    data,
                    "--broker",
                    pass,
                ],
                &[("RUST_LOG", log)],
            )
            .await;
            seen += &all_output(
                &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                &[("RUST_LOG", log), ("AMQP_URL", pass)],
            )
            .await;
            seen += &all_output(
                &["worker", "--data-dir", data, "--broker", pass],
                &[("RUST_LOG", log)],
            )
            .await;
        }
    }
    // `--help` shows the variable, never its value.
    let help = fastfood(["serve", "--help"], &[("AMQP_URL", wrong_url.as_str())])
        .output()
        .await
        .unwrap();
    seen += &String::from_utf8_lossy(&help.stdout);

    assert!(
        seen.contains(&user),
        "the output was read: the user name is in it"
    );
    assert!(
        seen.contains("RabbitMQ refused"),
        "the refusal was seen: {seen}"
    );
    for secret in [password, wrong] {
        assert!(
            !seen.contains(secret),
            "a password shows in the output: {}",
            seen.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The store, not the queue, is the source of truth: an order the broker
/// confirmed and then lost (here the `orders` queue is purged, as a dying
/// RabbitMQ node can do to a message) is found TAKEN by the server, which
/// sends it again once no queue has held it for `--lost-after`; it is
/// prepared once. A long line, orders waiting ready in the queue with no
/// worker, is never taken for lost: nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_order_the_queue_lost_is_sent_again_but_a_long_line_is_not() {
    let Some(rabbit) = Rabbit::vhost("lost-by-the-line").await else {
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
            "--lost-after",
            "5s",
        ],
    )
    .await;
    let tickets = place_orders(&[&server.base], 3, 1).await;
    wait_until(DEADLINE, "three orders in the queue", || async {
        rabbit.depth("orders").await == (3, 0)
    })
    .await;
    // Twice --lost-after and more: the sweep looks every 5 s.
    tokio::time::sleep(std::time::Duration::from_secs(13)).await;
    assert_eq!(
        rabbit.depth("orders").await,
        (3, 0),
        "orders waiting in the line are not sent again"
    );
    assert!(!server.stderr().contains("no queue has held it"));

    rabbitmqctl(&["purge_queue", "-p", &rabbit.vhost, "orders"])
        .await
        .expect("purge_queue");
    assert_eq!(rabbit.depth("orders").await, (0, 0));
    wait_until(DEADLINE, "the lost orders to be sent again", || async {
        rabbit.depth("orders").await == (3, 0)
    })
    .await;
    let said = server.stderr();
    for ticket in &tickets {
        assert!(
            said.contains(&format!(
                "order {ticket} was confirmed by the broker, but no queue has held it for 5s"
            )),
            "{said}"
        );
    }
    assert!(
        server
            .metrics_text()
            .await
            .contains("fastfood_lost_by_the_line_total 3")
    );

    let _cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await;
    for ticket in &tickets {
        wait_until(DEADLINE, "each lost order READY", || async {
            server.order_json(*ticket).await["status"] == "READY"
        })
        .await;
        assert_eq!(server.order_json(*ticket).await["deliveries"], 1);
    }
    rabbit.wait_drained("orders").await;
}
