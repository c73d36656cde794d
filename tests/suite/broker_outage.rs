//! RabbitMQ stopped, killed, or blocking publishers under a running
//! restaurant (`rabbitmqctl stop_app` / `start_app`, `kill -9` of the node,
//! a disk alarm). These break the broker for everyone, so each takes the
//! broker alone ([`Rabbit::vhost_alone`]): it waits until no other test uses
//! it, and none starts to until it is done, whatever `--test-threads` says.
//! Each test leaves the broker running, its
//! application started and un-alarmed ([`Restore`]), even when it fails.
//! Skips without a broker unless `FASTFOOD_REQUIRE_BROKER=1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::WorkerProcess;
use crate::support::invariants::{
    Attempt, BoardWatch, Ledger, ORDER_UNAVAILABLE, check_no_ghost, crowd, order_once, wait_settled,
};
use crate::support::rabbit::{Rabbit, rabbitmqctl};
use crate::support::{
    DEADLINE, ServerProcess, expect_error, http_client, placed_orders, wait_until,
};

/// How long RabbitMQ may take to start again (after a kill -9 it recovers
/// its queues first).
const BROKER_START: Duration = Duration::from_secs(180);

/// Leaves the broker as every other test expects it, even if the test fails
/// while it is stopped, killed or alarmed: the node running (started again
/// if it is gone), its application started, the disk limit back to 50 MB.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ensure_broker_running();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .status();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "set_disk_free_limit", "50MB"])
            .status();
    }
}

/// Starts the RabbitMQ node if it is not running, and waits (bounded) until
/// it has started.
fn ensure_broker_running() {
    let status = |args: &[&str]| {
        std::process::Command::new("rabbitmqctl")
            .arg("-q")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !status(&["status"]) {
        eprintln!("starting RabbitMQ again: rabbitmq-server -detached");
        let _ = std::process::Command::new("rabbitmq-server")
            .arg("-detached")
            .status();
    }
    let deadline = Instant::now() + BROKER_START;
    while !status(&["await_startup", "--timeout", "30"]) {
        if Instant::now() >= deadline {
            eprintln!("RabbitMQ did not start again within {BROKER_START:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The OS pid of the running RabbitMQ node (its `beam.smp`).
async fn broker_pid() -> u32 {
    let status = rabbitmqctl(&["status"]).await.expect("rabbitmqctl status");
    status
        .lines()
        .find_map(|l| l.trim().strip_prefix("OS PID:"))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no OS PID in rabbitmqctl status:\n{status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_no_confirmed_order_and_everything_reconnects() {
    let Some(rabbit) = Rabbit::vhost_alone("outage").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let _cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "20ms"], &[]).await;
    let placed = placed_orders(std::slice::from_ref(&server.base), 10, 2).await;
    let before: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    server.wait_all_ready(&before).await;

    // Customers keep ordering all through the outage.
    let stop = Arc::new(AtomicBool::new(false));
    let customers = tokio::spawn({
        let (stop, url, client) = (stop.clone(), server.url("/order"), http_client());
        async move {
            let mut confirmed = Vec::new();
            for i in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = client
                    .post(&url)
                    .body(format!("order {i}"))
                    .send()
                    .await
                    .expect("the server answers");
                match response.status().as_u16() {
                    201 => confirmed.push(
                        response.json::<serde_json::Value>().await.unwrap()["order"]
                            .as_u64()
                            .unwrap() as u32,
                    ),
                    503 => {}
                    other => panic!("POST /order answered {other} during an outage"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            confirmed
        }
    });

    let _restore = Restore;
    rabbitmqctl(&["stop_app"]).await.expect("stop_app");
    wait_until(DEADLINE, "/order to answer 503", || async {
        server.order("x").await.status() == 503
    })
    .await;
    let refused = server.order("x").await;
    expect_error(refused, 503, "queue_unavailable").await;
    // The board stays up, and customers can still collect.
    let statuses = server.board().await.statuses();
    assert!(
        before.iter().all(|t| statuses[t] == "READY"),
        "the board stays up: {statuses:?}"
    );
    let collected = server.take(before[0], &placed[0].code).await;
    assert_eq!(collected.status(), 200, "/take works without the broker");

    rabbitmqctl(&["start_app"]).await.expect("start_app");
    rabbitmqctl(&["await_startup"])
        .await
        .expect("await_startup");
    wait_until(DEADLINE, "orders to be accepted again", || async {
        server.order("after").await.status() == 201
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let confirmed = customers.await.unwrap();

    // Every order that got a 201 is prepared: none was lost with the broker.
    wait_until(DEADLINE, "every confirmed order to be READY", || async {
        let statuses = server.board().await.statuses();
        confirmed
            .iter()
            .chain(&before[1..])
            .all(|t| statuses.get(t).map(String::as_str) == Some("READY"))
    })
    .await;
    rabbit.wait_drained("orders").await;
    let statuses = server.board().await.statuses();
    assert!(
        statuses.values().all(|s| s == "READY"),
        "nothing is stuck TAKEN or PREPARING: {statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_rabbitmq_under_load_loses_no_confirmed_order() {
    let Some(rabbit) = Rabbit::vhost_alone("broker-kill").await else {
        return;
    };
    let _restore = Restore;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ServerProcess::spawn(d, &["--workers", "0", "--broker", &rabbit.url]).await;
    let watch = BoardWatch::start(Arc::new(std::sync::Mutex::new(server.base.clone())));
    watch.wait_watching(&server.base).await;
    let cook = WorkerProcess::spawn(d, &rabbit.url, &["--prep-time", "20ms"], &[]).await;

    let (ledger, stop) = (
        Arc::new(Ledger::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let crowd = crowd(&server.base, "", 4, &ledger, &stop);
    wait_until(DEADLINE, "orders flow", || async {
        ledger.accepted().len() >= 20
    })
    .await;

    // kill -9 of the broker's node, mid-rush.
    let pid = broker_pid().await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -9 {pid}");
    wait_until(DEADLINE, "the node is gone", || async {
        rabbitmqctl(&["status"]).await.is_err()
    })
    .await;
    wait_until(DEADLINE, "/order answers 503 while it is gone", || async {
        !ledger.refused().is_empty()
    })
    .await;
    let board = server.board().await;
    assert!(!board.orders.is_empty(), "the board stays up");

    // Started again: everything reconnects by itself and orders flow.
    tokio::task::spawn_blocking(ensure_broker_running)
        .await
        .unwrap();
    let before = ledger.accepted().len();
    wait_until(BROKER_START, "orders are accepted again", || async {
        ledger.accepted().len() > before + 10
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for customer in crowd {
        customer.await.expect("a customer failed");
    }
    eprintln!("{}", ledger.summary());
    assert_eq!(ledger.no_answer(), 0, "the server answered every request");

    // No confirmed order lost: every 201 reaches READY, nothing is left
    // TAKEN or PREPARING, the queue drains.
    let accepted = ledger.accepted();
    wait_settled(d, &accepted, Duration::from_secs(120)).await;
    rabbit.wait_drained("orders").await;
    watch.finish().await;
    drop(cook);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_at_start_up_everything_runs_and_catches_up() {
    let Some(rabbit) = Rabbit::vhost_alone("down-at-start").await else {
        return;
    };
    let _restore = Restore;
    rabbitmqctl(&["stop_app"]).await.expect("stop_app");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Both start and run without it.
    let server = ServerProcess::spawn(d, &["--workers", "0", "--broker", &rabbit.url]).await;
    let mut cook = WorkerProcess::start(d, &rabbit.url, &["--prep-time", "0"]);
    wait_until(
        DEADLINE,
        "the worker says the broker is unreachable",
        || async { cook.stderr().contains("not reachable") },
    )
    .await;
    assert!(cook.is_running(), "the worker runs:\n{}", cook.stderr());
    let client = http_client();
    for _ in 0..3 {
        let refused = server.order("early").await;
        assert_eq!(crate::support::header(&refused, "retry-after"), "1");
        expect_error(refused, 503, "queue_unavailable").await;
    }
    assert!(server.board().await.orders.is_empty(), "no ghost order");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without the broker");
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // The broker comes: orders flow, and the worker prepares them.
    rabbitmqctl(&["start_app"]).await.expect("start_app");
    rabbitmqctl(&["await_startup"])
        .await
        .expect("await_startup");
    let mut i = 0;
    let first = crate::support::wait_for(DEADLINE, "/order is accepted", || {
        i += 1;
        let (client, base) = (client.clone(), server.base.clone());
        let content = format!("after {i}");
        async move {
            match order_once(&client, &base, &content, ORDER_UNAVAILABLE).await {
                Attempt::Accepted(a) => Some(a),
                Attempt::Refused(..) => None,
                Attempt::NoAnswer(e) => panic!("the server answers: {e}"),
            }
        }
    })
    .await;
    let mut accepted = vec![first];
    for i in 0..10 {
        match order_once(&client, &server.base, &format!("then {i}"), &[]).await {
            Attempt::Accepted(a) => accepted.push(a),
            other => panic!("{other:?}"),
        }
    }
    wait_until(DEADLINE, "the worker connected", || async {
        cook.stderr().contains("connected to RabbitMQ")
    })
    .await;
    let tickets: Vec<u32> = accepted.iter().map(|a| a.ticket).collect();
    wait_until(DEADLINE, "the orders are READY", || async {
        let statuses = server.board().await.statuses();
        tickets
            .iter()
            .all(|t| statuses.get(t).map(String::as_str) == Some("READY"))
    })
    .await;
    rabbit.wait_drained("orders").await;
    let files = crate::support::invariants::read_files(d);
    crate::support::invariants::check_files(&files);
    crate::support::invariants::check_forward_in_store(&files);
    crate::support::invariants::check_settled(&files);
    crate::support::invariants::check_landed(&files, &accepted);
    crate::support::invariants::check_unique(&files, &accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_blocking_publishers_gets_503_in_bounded_time_and_no_ghost() {
    let Some(rabbit) = Rabbit::vhost_alone("disk-alarm").await else {
        return;
    };
    let _restore = Restore;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ServerProcess::spawn(d, &["--workers", "0", "--broker", &rabbit.url]).await;
    let _cook = WorkerProcess::spawn(d, &rabbit.url, &["--prep-time", "0"], &[]).await;
    let client = http_client();
    let mut accepted = Vec::new();
    for i in 0..5 {
        match order_once(&client, &server.base, &format!("before {i}"), &[]).await {
            Attempt::Accepted(a) => accepted.push(a),
            other => panic!("{other:?}"),
        }
    }

    // A disk alarm: RabbitMQ blocks every publisher.
    rabbitmqctl(&["set_disk_free_limit", "1000GB"])
        .await
        .expect("set_disk_free_limit");
    let bound = Duration::from_secs(10);
    let answer = |i: usize| {
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            let asked = Instant::now();
            let attempt =
                order_once(&client, &base, &format!("blocked {i}"), ORDER_UNAVAILABLE).await;
            let took = asked.elapsed();
            assert!(
                took < bound,
                "/order answered after {took:?} while the broker blocks publishers"
            );
            attempt
        }
    };
    // Until the alarm is raised, orders still go through.
    let deadline = Instant::now() + DEADLINE;
    let mut i = 0;
    loop {
        i += 1;
        match answer(i).await {
            Attempt::Accepted(a) => accepted.push(a),
            Attempt::Refused(503, code) => {
                assert_eq!(code, "queue_unavailable");
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the disk alarm never blocked /order"
        );
    }
    for _ in 0..3 {
        i += 1;
        let attempt = answer(i).await;
        assert!(
            matches!(&attempt, Attempt::Refused(503, code) if code == "queue_unavailable"),
            "{attempt:?}"
        );
    }
    // No ghost: the board holds only orders that got a 201.
    check_no_ghost(&server.board().await, &accepted);

    // The alarm lifts: orders flow again, and every 201 is prepared.
    rabbitmqctl(&["set_disk_free_limit", "50MB"])
        .await
        .expect("set_disk_free_limit");
    let deadline = Instant::now() + DEADLINE;
    loop {
        i += 1;
        match answer(i).await {
            Attempt::Accepted(a) => {
                accepted.push(a);
                break;
            }
            Attempt::Refused(..) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "/order never recovered");
    }
    wait_settled(d, &accepted, Duration::from_secs(60)).await;
    rabbit.wait_drained("orders").await;
}
