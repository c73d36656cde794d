//! Who may share a data directory. A server without a broker keeps its
//! orders in its own memory, so it is alone on its data directory (it holds
//! `queue.lock` exclusively for its life): a second server, with or without
//! a broker, and a worker process are refused at start, and take none of
//! its orders. Processes with a broker share it (they hold the lock
//! shared), and a server without one is refused beside them. A server that
//! dies lets go, and the next one puts its unfinished orders back.

use crate::support::rabbit::Rabbit;
use crate::support::{DEADLINE, ServerProcess, WorkerProcess, run_to_exit, wait_until};

/// A second server on a busy data directory used to start, put the first
/// one's unfinished orders in its own line ("6 unfinished orders go back to
/// the kitchen") and cook them a second time while their worker lived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_busy_data_directory_is_refused_and_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut first =
        ServerProcess::spawn(dir.path(), &["--workers", "1", "--prep-time", "10m"]).await;
    let mut tickets = Vec::new();
    for n in 0..3 {
        tickets.push(first.place(&format!("burger {n}")).await);
    }
    wait_until(DEADLINE, "the first order to be PREPARING", || async {
        first.order_json(tickets[0]).await["status"] == "PREPARING"
    })
    .await;
    let before = first.board().await;

    let second = run_to_exit(dir.path(), &["--prep-time", "0"]).await;
    assert!(!second.status.success());
    assert!(
        second.stderr.contains(&format!(
            "another `fastfood serve` without --broker (pid {}) keeps the orders of the data directory {}",
            first.pid,
            dir.path().display()
        )) && second.stderr.contains("--broker amqp://"),
        "{}",
        second.stderr
    );
    assert!(!second.stderr.contains("go back to the kitchen"));

    if let Some(rabbit) = Rabbit::vhost("sharing-busy").await {
        // Nor may a process with a broker take them to RabbitMQ.
        let with_broker = run_to_exit(dir.path(), &["--broker", &rabbit.url]).await;
        assert!(!with_broker.status.success());
        assert!(
            with_broker.stderr.contains(&format!(
                "is served by `fastfood serve` without --broker (pid {})",
                first.pid
            )),
            "{}",
            with_broker.stderr
        );
        let mut worker = WorkerProcess::start(dir.path(), &rabbit.url, &["--prep-time", "0"]);
        assert!(!worker.wait(DEADLINE).await.expect("it stops").success());
        assert!(
            worker.stderr().contains("without --broker"),
            "{}",
            worker.stderr()
        );
        assert_eq!(
            rabbit.depth("orders").await,
            (0, 0),
            "nothing went to RabbitMQ"
        );
    }

    let after = first.board().await;
    assert_eq!(after.version, before.version, "nothing changed meanwhile");
    let order = first.order_json(tickets[0]).await;
    assert_eq!(
        order["deliveries"], 1,
        "cooked once, by its worker: {order}"
    );
    assert_eq!(
        order["worker"],
        format!("worker 1 (pid {})", first.pid),
        "{order}"
    );

    // The first server dies for good: the next one puts back all it held,
    // and each order is READY once.
    first.kill9().await;
    let next = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    assert!(
        next.stderr()
            .contains("3 unfinished orders go back to the kitchen")
    );
    next.wait_all_ready(&tickets).await;
    assert_eq!(next.order_json(tickets[0]).await["deliveries"], 2);
    for ticket in &tickets[1..] {
        assert_eq!(next.order_json(*ticket).await["deliveries"], 1);
    }
}

/// Beside processes with a broker, a server without one is refused: it
/// would put their orders, which RabbitMQ holds, in its own line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_broker_is_refused_beside_processes_with_one() {
    let Some(rabbit) = Rabbit::vhost("sharing-mixed").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let _cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "10m"], &[]).await;
    let ticket = server.place("a burger").await;
    wait_until(DEADLINE, "the order to be PREPARING", || async {
        server.order_json(ticket).await["status"] == "PREPARING"
    })
    .await;
    let alone = run_to_exit(dir.path(), &["--prep-time", "0"]).await;
    assert!(!alone.status.success());
    assert!(
        alone
            .stderr
            .contains("is used by processes with --broker (servers or workers)")
            && alone.stderr.contains("Give this server --broker too"),
        "{}",
        alone.stderr
    );
    assert_eq!(server.order_json(ticket).await["deliveries"], 1);
    assert_eq!(server.order_json(ticket).await["status"], "PREPARING");
}

/// A server without a broker dies for good with orders in its line (two
/// PREPARING, one TAKEN), and the restaurant goes on with RabbitMQ: the
/// first process with a broker takes them over into the `orders` queue,
/// and each is READY once. Before, the PREPARING ones stayed so for ever
/// (only a TAKEN order never confirmed was swept into the queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_of_a_dead_server_without_a_broker_goes_on_in_rabbitmq() {
    let Some(rabbit) = Rabbit::vhost("sharing-handover").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut alone =
        ServerProcess::spawn(dir.path(), &["--workers", "2", "--prep-time", "10m"]).await;
    let mut tickets = Vec::new();
    for n in 0..3 {
        tickets.push(alone.place(&format!("burger {n}")).await);
    }
    wait_until(DEADLINE, "two orders PREPARING", || async {
        alone
            .board()
            .await
            .statuses()
            .values()
            .filter(|s| *s == "PREPARING")
            .count()
            == 2
    })
    .await;
    alone.kill9().await;

    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    wait_until(DEADLINE, "the server to hand the line over", || async {
        server.stderr().contains(
            "3 unfinished orders of a server without a broker, which is gone, go to RabbitMQ",
        )
    })
    .await;
    let _cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "0"], &[]).await;
    server.wait_all_ready(&tickets).await;
    rabbit.wait_drained("orders").await;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("queue.lock")).unwrap(),
        "",
        "handed over once and for all"
    );
    // A second process with a broker finds nothing more to hand over.
    let again =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    assert!(!again.stderr().contains("go to RabbitMQ"));
    for ticket in &tickets {
        let order = server.order_json(*ticket).await;
        assert_eq!(order["status"], "READY", "{order}");
    }
}
