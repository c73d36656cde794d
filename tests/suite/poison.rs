//! Poison orders: an order whose preparation takes its worker down
//! (`--crash-on`, an abort) comes back after every crash, and after
//! `--max-deliveries` deliveries it is set aside instead of prepared again:
//! CANCELLED by the kitchen, its message in `orders.dead` (with a broker),
//! `410 set_aside` to its customer, a line in the kitchen's log,
//! `fastfood_set_aside_total`. Every other order is served. In each mode,
//! with the processes started again in a loop as a supervisor would.

use std::os::unix::process::ExitStatusExt;

use fastfood::order::{CancelledBy, Status};
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use serde_json::Value;

use crate::support::cluster::Cluster;
use crate::support::invariants::{StoreAt, read_at};
use crate::support::pg::Backend;
use crate::support::rabbit::Rabbit;
use crate::support::{
    Api, DEADLINE, Placed, ServerProcess, WorkerProcess, expect_error, wait_for, wait_until,
};

/// How many deliveries the tests allow: small, so a loop of crashes is short.
const MAX: u32 = 3;
/// The pill.
const PILL: &str = "poison";

/// The orders of a test: the pill second, so that another order is being
/// prepared beside it when it takes its process down.
const MENU: [&str; 6] = [
    "burger",
    "a poison burger",
    "fries",
    "cola",
    "salad",
    "ice cream",
];

/// How a process ended that the pill took down: an abort (SIGABRT), after
/// its log said why.
fn assert_aborted_on_the_pill(status: std::process::ExitStatus, stderr: &str, ticket: u32) {
    assert_eq!(
        status.signal(),
        Some(6),
        "the pill aborts the process ({status}):\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("order {ticket} holds \"{PILL}\" (--crash-on)")),
        "it said why:\n{stderr}"
    );
}

/// The worker that aborted, as its log line names it.
fn aborted_worker(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.contains("(--crash-on)"))
        .expect("the abort's log line");
    line.split("fastfood::kitchen::worker: ")
        .nth(1)
        .and_then(|rest| rest.split(": order").next())
        .expect("the line names its worker")
        .to_owned()
}

/// The order's last line in the store (files: log, then history; the
/// database: its change log).
fn last_line(at: &StoreAt, ticket: u32) -> fastfood::order::Order {
    let files = read_at(at);
    files
        .history
        .iter()
        .chain(&files.log)
        .filter(|l| l.order.ticket == ticket)
        .max_by_key(|l| l.version)
        .map(|l| l.order.clone())
        .unwrap_or_else(|| panic!("order {ticket} is in the files"))
}

/// What every mode shows once the pill is set aside, asked of `api` (a
/// server): CANCELLED by the kitchen after exactly [`MAX`] deliveries,
/// dropped by the workers `took_down`, every other order READY and
/// collectable, `410 set_aside` on `/take` and `/cancel`, and the kitchen's
/// log saying so.
async fn check_set_aside(
    api: &Api,
    at: &StoreAt,
    placed: &[Placed],
    pill: &Placed,
    took_down: &[String],
) {
    let others: Vec<u32> = placed
        .iter()
        .map(|p| p.ticket)
        .filter(|t| *t != pill.ticket)
        .collect();
    let board = api.wait_all_ready(&others).await;
    assert!(
        !board.statuses().contains_key(&pill.ticket),
        "the pill left the board"
    );
    let shown = api.order_json(pill.ticket).await;
    assert_eq!(shown["status"], "CANCELLED", "{shown}");
    assert_eq!(shown["cancelled_by"], "kitchen", "{shown}");

    let stored = last_line(at, pill.ticket);
    assert_eq!(stored.status, Status::Cancelled);
    assert_eq!(stored.cancelled_by, Some(CancelledBy::Kitchen));
    assert_eq!(
        stored.deliveries, MAX,
        "set aside after exactly {MAX} deliveries"
    );
    assert_eq!(
        stored.dropped_by, took_down,
        "the store names the workers it took down, in order"
    );

    for path in ["/take", "/cancel"] {
        let response = api
            .client
            .post(api.url(&format!("{path}?order={}&code={}", pill.ticket, pill.code)))
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 410, "set_aside").await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("kitchen could not make order") && message.contains("see the counter"),
            "{path}: {message}"
        );
    }
    for p in placed.iter().filter(|p| p.ticket != pill.ticket) {
        let taken = api.take(p.ticket, &p.code).await;
        assert_eq!(taken.status(), 200, "order {} is collected", p.ticket);
    }

    let log = wait_for(
        DEADLINE,
        "the kitchen's log tells of the set-aside",
        || async {
            let now = api.get_json("/kitchen/now").await;
            now["log"].as_array().unwrap().iter().find_map(|m| {
                let text = m["text"].as_str()?;
                text.contains(&format!(
                    "order {} set aside after {MAX} deliveries",
                    pill.ticket
                ))
                .then(|| text.to_owned())
            })
        },
    )
    .await;
    for worker in took_down {
        assert!(log.contains(worker.as_str()), "{worker} is named in: {log}");
    }
}

/// Places [`MENU`], in order.
async fn place_menu(api: &Api) -> Vec<Placed> {
    let mut placed = Vec::new();
    for text in MENU {
        placed.push(api.place_coded(text).await);
    }
    placed
}

/// `fastfood_set_aside_total` in a metrics text.
fn set_aside_total(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix("fastfood_set_aside_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fastfood_set_aside_total in:\n{text}"))
}

async fn in_process_a_poison_pill_is_set_aside(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let at = backend.store_at(dir.path());
    let max = MAX.to_string();
    // Two workers: the pill's crash takes the other worker's order down too,
    // and that order must still be made, not set aside with the pill.
    let args = backend.with(&[
        "--workers",
        "2",
        "--prep-time",
        "300ms",
        "--crash-on",
        PILL,
        "--max-deliveries",
        &max,
    ]);
    // The first server has no pill: it takes the orders, its two workers
    // start the first two (a burger and the pill), and it is killed in the
    // middle of them: a crash that counts as a delivery for both.
    let first_args = backend.with(&["--workers", "2", "--prep-time", "10m"]);
    let mut first = ServerProcess::spawn(dir.path(), &first_args).await;
    let placed = place_menu(&first).await;
    let pill = placed[1].clone();
    let burger = placed[0].ticket;
    let pill_worker = wait_for(DEADLINE, "the burger and the pill PREPARING", || async {
        let (b, p) = (
            first.order_json(burger).await,
            first.order_json(pill.ticket).await,
        );
        (b["status"] == "PREPARING" && p["status"] == "PREPARING")
            .then(|| p["worker"].as_str().unwrap().to_owned())
    })
    .await;
    first.kill9().await;
    let mut took_down = vec![pill_worker];

    // A supervisor's loop: start it again until it stays up.
    let server = loop {
        assert!(
            took_down.len() <= MAX as usize,
            "taken down more than {MAX} times: {took_down:?}"
        );
        match ServerProcess::try_spawn(dir.path(), &args).await {
            Err(ended) => {
                assert_aborted_on_the_pill(ended.status, &ended.stderr, pill.ticket);
                took_down.push(aborted_worker(&ended.stderr));
            }
            Ok(mut server) => {
                let aside = wait_for(DEADLINE, "the pill set aside, or the server down", || {
                    let api = Api::at(server.base.clone());
                    let running = server.is_running();
                    async move {
                        let url = api.url(&format!("/orders/{}", pill.ticket));
                        let shown = match api.client.get(url).send().await {
                            Ok(shown) => shown.json::<Value>().await.ok(),
                            Err(_) => None,
                        };
                        if shown.is_some_and(|s| s["status"] == "CANCELLED") {
                            return Some(true);
                        }
                        (!running).then_some(false)
                    }
                })
                .await;
                if aside {
                    break server;
                }
                let status = server.wait(DEADLINE).await.expect("it ended");
                assert_aborted_on_the_pill(status, &server.stderr(), pill.ticket);
                took_down.push(aborted_worker(&server.stderr()));
            }
        }
    };
    assert_eq!(
        took_down.len(),
        MAX as usize,
        "the pill was delivered exactly {MAX} times: the kill, then the aborts"
    );
    let made = last_line(&at, burger);
    assert!(
        made.status == Status::Ready && made.deliveries <= 2,
        "the burger caught in the pill's crashes is made, delivered at most twice: {made:?}"
    );
    check_set_aside(&server, &at, &placed, &pill, &took_down).await;
    assert!(
        server
            .stderr()
            .contains("the store keeps it, CANCELLED by the kitchen"),
        "the in-process queue's dead letter is the store:\n{}",
        server.stderr()
    );
    let metrics = server.metrics_text().await;
    assert_eq!(set_aside_total(&metrics), 1.0);
}

async fn classic_queue_a_poison_pill_is_set_aside(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("poison-classic-{}", backend.tag())).await else {
        return;
    };
    set_aside_and_dead_lettered(&backend, &rabbit.url, &[], async |queue: &str| {
        rabbit.depth(queue).await
    })
    .await;
}

/// The pill on a RabbitMQ `orders` queue: a server with `--workers 0` on
/// `urls` (`--broker`), worker processes started one at a time in a loop,
/// every process also given `queue_args`; `depth` counts a queue's messages
/// (ready, unacknowledged). Exactly [`MAX`] workers abort, the next sets the
/// pill aside ([`check_set_aside`]), the board drops it in one event, and its
/// message, with headers that say why, is the one message in `orders.dead`.
async fn set_aside_and_dead_lettered(
    backend: &Backend,
    urls: &str,
    queue_args: &[&str],
    depth: impl AsyncFn(&str) -> (u64, u64),
) {
    // The server, and the worker processes (on the database, on another
    // machine).
    let dirs = backend.data_dirs(2);
    let at = backend.store_at(dirs.of(0));
    let mut server_args = backend.with(&["--workers", "0", "--broker", urls]);
    server_args.extend(queue_args);
    let server = ServerProcess::spawn(dirs.of(0), &server_args).await;
    let placed = place_menu(&server).await;
    let pill = placed[1].clone();
    let mut board = server.updates().await;
    board.next_event().await; // the whole board, first

    let max = MAX.to_string();
    let mut args = backend.with(&[
        "--workers",
        "2",
        "--prep-time",
        "200ms",
        "--crash-on",
        PILL,
        "--max-deliveries",
        &max,
        "--metrics",
        "127.0.0.1:0",
    ]);
    args.extend(queue_args);
    // A supervisor's loop of worker processes, one at a time.
    let mut took_down = Vec::new();
    let worker = loop {
        assert!(
            took_down.len() <= MAX as usize,
            "taken down more than {MAX} times: {took_down:?}"
        );
        let mut worker = WorkerProcess::spawn(dirs.of(1), urls, &args, &[]).await;
        let aside = wait_for(DEADLINE, "the pill set aside, or the worker down", || {
            let running = worker.is_running();
            let api = Api::at(server.base.clone());
            async move {
                let shown = api.order_json(pill.ticket).await;
                if shown["status"] == "CANCELLED" {
                    return Some(true);
                }
                (!running).then_some(false)
            }
        })
        .await;
        if aside {
            break worker;
        }
        let status = worker.wait(DEADLINE).await.expect("it ended");
        assert_aborted_on_the_pill(status, &worker.stderr(), pill.ticket);
        took_down.push(aborted_worker(&worker.stderr()));
    };
    assert_eq!(took_down.len(), MAX as usize);

    // The board dropped it in one event: CANCELLED, then nothing more of it.
    let mut pill_events = Vec::new();
    let others = placed.len() - 1;
    let mut ready = 0;
    while ready < others || pill_events.is_empty() {
        let event = board.next_event().await;
        match event.change() {
            Some((t, status)) if t == pill.ticket => pill_events.push(status),
            Some((_, status)) if status == "READY" => ready += 1,
            _ => {}
        }
    }
    assert_eq!(
        pill_events.last().map(String::as_str),
        Some("CANCELLED"),
        "{pill_events:?}"
    );
    assert_eq!(
        pill_events.iter().filter(|s| *s == "CANCELLED").count(),
        1,
        "{pill_events:?}"
    );

    check_set_aside(&server, &at, &placed, &pill, &took_down).await;

    // The worker that set it aside counted it.
    let metrics_at = worker
        .stderr()
        .split("metrics on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the worker says where its metrics are")
        .to_owned();
    let metrics = reqwest::get(&metrics_at)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(set_aside_total(&metrics), 1.0);

    // Its message is in orders.dead, read back over AMQP, and no longer in
    // orders (a quorum queue's counts are a few seconds behind: waited for).
    wait_until(
        DEADLINE,
        "orders empty, one message in orders.dead",
        || async { depth("orders").await == (0, 0) && depth("orders.dead").await == (1, 0) },
    )
    .await;
    let first_node = urls.split(',').next().unwrap();
    let connection = lapin::Connection::connect(first_node, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let message = channel
        .basic_get("orders.dead".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("a message in orders.dead");
    assert_eq!(message.delivery.data, pill.ticket.to_be_bytes());
    let headers = message
        .delivery
        .properties
        .headers()
        .clone()
        .expect("headers that say why");
    let headers = headers.inner();
    assert_eq!(
        headers.get("x-fastfood-deliveries"),
        Some(&AMQPValue::LongUInt(MAX))
    );
    let Some(AMQPValue::FieldArray(dropped)) = headers.get("x-fastfood-dropped-by") else {
        panic!("x-fastfood-dropped-by: {headers:?}");
    };
    let dropped: Vec<String> = dropped
        .as_slice()
        .iter()
        .map(|v| match v {
            AMQPValue::LongString(s) => s.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(dropped, took_down);
    drop(worker);
    let _ = connection.close(200, "done".into()).await;
}

crate::on_both_backends!(
    in_process_a_poison_pill_is_set_aside_after_exactly_max_deliveries_of_server_restarts,
    in_process_a_poison_pill_is_set_aside
);

crate::on_both_backends!(
    classic_queue_a_poison_pill_is_set_aside_after_exactly_max_deliveries_and_dead_lettered,
    classic_queue_a_poison_pill_is_set_aside
);

/// The same on a quorum `orders` queue replicated over the three nodes of a
/// cluster (`--broker URL1,URL2,URL3 --queue-type quorum`): the kitchen's
/// own count sets the pill aside after exactly [`MAX`] deliveries, long
/// before the queue's backstop delivery limit, and `orders.dead` is a quorum
/// queue too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queue_a_poison_pill_is_set_aside_after_exactly_max_deliveries_and_dead_lettered() {
    let Some(cv) = Cluster::vhost("poison-quorum").await else {
        return;
    };
    set_aside_and_dead_lettered(
        &Backend::Files,
        &cv.urls(),
        &["--queue-type", "quorum"],
        async |queue: &str| {
            cv.depth(1, queue)
                .await
                .unwrap_or_else(|| panic!("no queue {queue} in {}", cv.vhost))
        },
    )
    .await;
    let types = cv
        .cluster()
        .ctl(1, &["list_queues", "-p", &cv.vhost, "name", "type"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for queue in ["orders", "orders.dead"] {
        assert!(
            types
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [queue, "quorum"]),
            "{queue} is a quorum queue: {types}"
        );
    }
}
