//! A restaurant on a three-node RabbitMQ cluster with a quorum `orders`
//! queue (`--broker URL1,URL2,URL3 --queue-type quorum`), on the cluster the
//! test process shares ([`Cluster`]): a node killed mid-rush, a majority
//! stopped, a given-back order going first; and a queue of the other type
//! refused with a sentence. Tests that kill or stop nodes have the cluster
//! alone and leave every node running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::cluster::Cluster;
use crate::support::invariants::{
    Attempt, BoardWatch, Ledger, ORDER_UNAVAILABLE, crowd, order_once, wait_settled,
};
use crate::support::rabbit::Rabbit;
use crate::support::{
    DEADLINE, ServerProcess, WorkerProcess, http_client, place_orders, run_to_exit, wait_until,
};

const QUORUM: [&str; 2] = ["--queue-type", "quorum"];

/// The arguments of a complex-mode server on `urls` with a quorum queue.
fn server_args(urls: &str) -> Vec<&str> {
    let mut args = vec!["--workers", "0", "--broker", urls];
    args.extend(QUORUM);
    args
}

/// A server and two workers on node 1 (their first URL), a second server on
/// node 2; customers order all the while. Node 1, which also leads the
/// quorum queue (it was declared there), is killed with `kill -9`: every
/// process moves to another node by itself, `/order` answers 201 again
/// within 15 s, every confirmed order is READY once, nothing moves backward,
/// and both boards end the same.
///
/// RabbitMQ 3.10 sometimes loses a confirmed order here: once the node is
/// gone, the message is neither ready nor unacknowledged anywhere. The
/// store still has it TAKEN, and a server sends it again once no queue has
/// held it for `--lost-after` (30 s by default): the test counts on that,
/// and says how many orders it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_rush_loses_no_confirmed_order_and_orders_flow_again_within_15s() {
    let Some(cv) = Cluster::vhost_alone("node-kill").await else {
        return;
    };
    let cluster = cv.cluster();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let urls = cv.urls();
    let from_node_2 = [cv.url(2), cv.url(3), cv.url(1)].join(",");
    let server = ServerProcess::spawn(d, &server_args(&urls)).await;
    let other = ServerProcess::spawn(d, &server_args(&from_node_2)).await;
    let watch = BoardWatch::start(Arc::new(Mutex::new(server.base.clone())));
    watch.wait_watching(&server.base).await;
    let mut cook_args = vec!["--prep-time", "20ms"];
    cook_args.extend(QUORUM);
    let cooks = [
        WorkerProcess::spawn(d, &urls, &cook_args, &[]).await,
        WorkerProcess::spawn(d, &urls, &cook_args, &[]).await,
    ];
    let nodes = cv.connection_nodes(2).await;
    let on = |n: u8| nodes.iter().filter(|x| **x == n).count();
    assert!(
        on(1) >= 3 && on(2) >= 1,
        "the first server and both workers on node 1, the other server on node 2: {nodes:?}"
    );

    let (ledger, stop) = (
        Arc::new(Ledger::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let mut customers = crowd(&server.base, "server 1", 3, &ledger, &stop);
    customers.extend(crowd(&other.base, "server 2", 1, &ledger, &stop));
    wait_until(DEADLINE, "orders flow", || async {
        ledger.accepted().len() >= 30
    })
    .await;

    cluster.kill(1).await;
    let killed = Instant::now();
    let before = ledger.accepted().len();
    // Four customers, one order each in flight at the kill: more than that
    // is orders placed after it.
    wait_until(
        Duration::from_secs(15),
        "/order to answer 201 again within 15 s of the kill",
        || async { ledger.accepted().len() >= before + 10 },
    )
    .await;
    eprintln!("orders flow again {:?} after the kill", killed.elapsed());
    wait_until(
        DEADLINE,
        "every process to be on the nodes left",
        || async {
            let nodes = cv.connection_nodes(2).await;
            nodes.iter().all(|n| *n != 1) && nodes.len() >= 4
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for customer in customers {
        customer.await.expect("a customer failed");
    }
    eprintln!("{}", ledger.summary());
    assert_eq!(ledger.no_answer(), 0, "the servers answered every request");

    // Every 201 READY exactly once, nothing TAKEN or PREPARING left, nothing
    // backward in the store; the queue empties.
    let accepted = ledger.accepted();
    let tickets: Vec<u32> = accepted.iter().map(|a| a.ticket).collect();
    let settled = tokio::time::timeout(Duration::from_secs(90), async {
        while !server.board().await.all_ready(&tickets) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if settled.is_err() {
        // Which orders, placed where, and what the queue still holds.
        let statuses = server.board().await.statuses();
        let stuck: Vec<_> = accepted
            .iter()
            .filter(|a| statuses.get(&a.ticket).map(String::as_str) != Some("READY"))
            .map(|a| {
                (
                    a.ticket,
                    a.content.clone(),
                    statuses.get(&a.ticket).cloned(),
                )
            })
            .collect();
        // What every process said of them.
        let said: Vec<String> = stuck
            .iter()
            .flat_map(|(ticket, _, _)| {
                let needle = format!("order {ticket}");
                [
                    server.stderr(),
                    other.stderr(),
                    cooks[0].stderr(),
                    cooks[1].stderr(),
                ]
                .into_iter()
                .flat_map(|log| {
                    log.lines()
                        .filter(|l| {
                            l.split(&needle)
                                .nth(1)
                                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
                        })
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
            })
            .collect();
        panic!(
            "confirmed orders not READY: {stuck:?}; orders queue (ready, unacked) {:?}, orders.dead {:?}, \
             orders.orphaned {:?}; what the processes said of them: {said:#?}",
            cv.depth(2, "orders").await,
            cv.depth(2, "orders.dead").await,
            cv.depth(2, "orders.orphaned").await
        );
    }
    let sent_again = [server.stderr(), other.stderr()]
        .iter()
        .flat_map(|log| log.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.contains("no queue has held it"))
        .collect::<Vec<_>>();
    eprintln!(
        "orders the line lost and a server sent again: {}{sent_again:#?}",
        sent_again.len()
    );
    wait_settled(d, &accepted, Duration::from_secs(30)).await;
    wait_until(DEADLINE, "the orders queue to drain", || async {
        cv.depth(2, "orders").await == Some((0, 0))
    })
    .await;
    // Both boards converge on the store, and the watched one never went backward.
    let first = server.wait_all_ready(&tickets).await.statuses();
    let second = other.wait_all_ready(&tickets).await.statuses();
    assert_eq!(first, second, "both boards show the same");
    watch.finish().await;
    drop(cooks);
}

/// Nodes 1 and 2 stopped: the queue has no majority, so no order can be
/// confirmed. `/order` answers 503 (quickly: no hang), the board stays up;
/// once node 2 is back, 201 again, and every confirmed order is prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_of_three_nodes_down_order_answers_503_and_201_once_one_is_back() {
    let Some(cv) = Cluster::vhost_alone("minority").await else {
        return;
    };
    let cluster = cv.cluster();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let urls = cv.urls();
    let mut args = vec!["--workers", "2", "--prep-time", "0", "--broker", &urls];
    args.extend(QUORUM);
    let server = ServerProcess::spawn(d, &args).await;
    let client = http_client();
    let mut accepted = Vec::new();
    for i in 0..3 {
        match order_once(&client, &server.base, &format!("before {i}"), &[]).await {
            Attempt::Accepted(a) => accepted.push(a),
            other => panic!("{other:?}"),
        }
    }

    cluster.stop(1).await;
    cluster.stop(2).await;
    let mut refused = 0;
    for i in 0..5 {
        let asked = Instant::now();
        let content = format!("no quorum {i}");
        let attempt = order_once(&client, &server.base, &content, ORDER_UNAVAILABLE).await;
        let took = asked.elapsed();
        match attempt {
            Attempt::Refused(503, code) => {
                assert_eq!(code, "queue_unavailable");
                refused += 1;
            }
            other => panic!("with two nodes of three down, /order answered {other:?}"),
        }
        assert!(
            took < Duration::from_secs(10),
            "a refusal comes quickly, took {took:?}"
        );
    }
    assert_eq!(refused, 5);
    assert!(
        !server.board().await.orders.is_empty(),
        "the board stays up"
    );

    cluster.start_node(2).await;
    let mut i = 0;
    let again = crate::support::wait_for(DEADLINE, "/order to answer 201 again", || {
        i += 1;
        let (client, base) = (client.clone(), server.base.clone());
        async move {
            match order_once(&client, &base, &format!("after {i}"), ORDER_UNAVAILABLE).await {
                Attempt::Accepted(a) => Some(a),
                Attempt::Refused(..) => None,
                Attempt::NoAnswer(e) => panic!("the server answers: {e}"),
            }
        }
    })
    .await;
    accepted.push(again);
    wait_settled(d, &accepted, DEADLINE).await;
}

/// One slow worker has the first order in the oven, three more wait; the
/// worker then lets go of it (`let_go`), and a quick worker prepares the
/// first order before every order that was waiting.
async fn given_back_goes_first(test: &str, let_go: impl AsyncFnOnce(&mut WorkerProcess, u32)) {
    let Some(cv) = Cluster::vhost(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let urls = cv.urls();
    let server = ServerProcess::spawn(d, &server_args(&urls)).await;
    let mut slow_args = vec!["--prep-time", "10m"];
    slow_args.extend(QUORUM);
    let mut slow = WorkerProcess::spawn(d, &urls, &slow_args, &[]).await;
    let first = server.place("the order in the oven").await;
    wait_until(DEADLINE, "the first order to be PREPARING", || async {
        server.order_json(first).await["status"] == "PREPARING"
    })
    .await;
    let waiting = place_orders(std::slice::from_ref(&server.base), 3, 1).await;
    wait_until(DEADLINE, "three orders waiting, one held", || async {
        cv.depth(1, "orders").await == Some((3, 1))
    })
    .await;

    let_go(&mut slow, first).await;
    let mut quick_args = vec!["--prep-time", "100ms"];
    quick_args.extend(QUORUM);
    let _quick = WorkerProcess::spawn(d, &urls, &quick_args, &[]).await;
    let all: Vec<u32> = std::iter::once(first).chain(waiting.clone()).collect();
    let board = server.wait_all_ready(&all).await;
    let ready_at = |ticket: u32| {
        board.orders.iter().find(|o| o["order"] == ticket).unwrap()["ready_at"].clone()
    };
    for ticket in &waiting {
        assert!(
            ready_at(first).as_str() < ready_at(*ticket).as_str(),
            "order {first} was given back, yet order {ticket} went ahead of it"
        );
    }
    wait_until(DEADLINE, "the orders queue to drain", || async {
        cv.depth(1, "orders").await == Some((0, 0))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_given_back_on_a_quorum_queue_goes_before_the_orders_waiting() {
    given_back_goes_first("quorum-give-back", async |slow, first| {
        // Asked to stop mid-order, the worker gives it back (a nack).
        slow.terminate();
        assert!(slow.wait(DEADLINE).await.expect("it stops").success());
        let gave_back = format!("order {first} goes back to the front");
        assert!(slow.stderr().contains(&gave_back), "{}", slow.stderr());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_left_by_a_killed_worker_on_a_quorum_queue_goes_before_the_orders_waiting() {
    given_back_goes_first("quorum-kill-9", async |slow, _| {
        // The connection dies with the order unacknowledged.
        slow.kill9().await;
    })
    .await;
}

/// An `orders` queue that exists with the other type: a server refuses to
/// start with a sentence that names both types and what to do, never
/// RabbitMQ's raw PRECONDITION_FAILED. (A single node can hold a quorum
/// queue: the machine's own RabbitMQ is enough.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_of_the_other_type_is_refused_with_what_to_do() {
    let Some(rabbit) = Rabbit::vhost("queue-type").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (existing, asked) in [("classic", "quorum"), ("quorum", "classic")] {
        let _ =
            crate::support::rabbit::rabbitmqctl(&["delete_queue", "-p", &rabbit.vhost, "orders"])
                .await;
        let mut first = ServerProcess::spawn(
            dir.path(),
            &["--broker", &rabbit.url, "--queue-type", existing],
        )
        .await;
        first.terminate();
        first.wait(DEADLINE).await.expect("it stops");
        let refused = run_to_exit(
            dir.path(),
            &["--broker", &rabbit.url, "--queue-type", asked],
        )
        .await;
        assert!(!refused.status.success());
        // The program's own last word (lapin's log lines, on at the tests'
        // RUST_LOG=info, are off by default).
        let said = refused
            .stderr
            .lines()
            .rfind(|line| line.starts_with("fastfood: "))
            .unwrap_or_else(|| panic!("no error line: {}", refused.stderr))
            .to_owned();
        assert!(
            said.contains(&format!("`orders` queue of type {existing}"))
                && said.contains(&format!("started with --queue-type {asked}"))
                && said.contains(&format!("--queue-type {existing}"))
                && said.contains("rabbitmqctl delete_queue orders"),
            "{said}"
        );
        assert!(!said.contains("PRECONDITION_FAILED"), "{said}");
    }
    // Without a broker there is no queue type to choose.
    let refused = run_to_exit(dir.path(), &["--queue-type", "quorum"]).await;
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("add --broker"),
        "{}",
        refused.stderr
    );
}

/// `--broker` with several URLs, the first on a port where nothing answers:
/// the server connects to one that answers, and no password of the list
/// shows in its log or its answers, whatever happens to each address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_brokers_uses_one_that_answers_and_hides_every_password() {
    let Some(rabbit) = Rabbit::vhost("broker-list").await else {
        return;
    };
    // A port that was free a moment ago: nothing answers there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first_secret = "Pw7x-quince-0c1d2e3f";
    let down = format!(
        "amqp://guest:{first_secret}@127.0.0.1:{dead}/{}",
        rabbit.vhost
    );
    let dir = tempfile::tempdir().unwrap();

    // Nothing answers at all: it runs, says so for every address, and 503s.
    let also_down = format!("amqp://guest:{first_secret}-2@127.0.0.1:{dead}/x");
    let alone =
        ServerProcess::spawn(dir.path(), &["--broker", &format!("{down},{also_down}")]).await;
    wait_until(DEADLINE, "the server to say no broker answers", || async {
        alone.stderr().contains("not reachable")
    })
    .await;
    let refused = alone.order("fries").await;
    assert_eq!(refused.status(), 503);
    let said = alone.stderr() + &refused.text().await.unwrap();
    assert!(
        said.contains(&format!(
            "amqp://guest:***@127.0.0.1:{dead}/{}",
            rabbit.vhost
        )),
        "{said}"
    );
    assert!(!said.contains(first_secret), "{said}");
    drop(alone);

    // The second answers: it is used, and orders are prepared.
    let list = format!("{down},{}", rabbit.url);
    let server = ServerProcess::spawn(dir.path(), &["--broker", &list, "--prep-time", "0"]).await;
    let ticket = server.place("fries from the second node").await;
    server.wait_all_ready(&[ticket]).await;
    let said = server.stderr();
    assert!(
        said.contains(&format!(
            "connected to RabbitMQ at amqp://guest:***@{}",
            crate::support::rabbit::HOST
        )),
        "{said}"
    );
    assert!(
        !said.contains(first_secret) && !said.contains("guest:guest"),
        "{said}"
    );
}

/// Two worker processes on `urls` with a quorum queue, 20 ms an order.
async fn quick_cooks(d: &std::path::Path, urls: &str) -> [WorkerProcess; 2] {
    let mut args = vec!["--prep-time", "20ms"];
    args.extend(QUORUM);
    [
        WorkerProcess::spawn(d, urls, &args, &[]).await,
        WorkerProcess::spawn(d, urls, &args, &[]).await,
    ]
}

/// The worker lanes of `/kitchen/now` that run in the processes `pids`, and
/// not shown as gone: `(pid, orders done)`.
async fn live_lanes(server: &ServerProcess, pids: &[u32]) -> Vec<(u32, u64)> {
    let kitchen = server.get_json("/kitchen/now").await;
    kitchen["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|lane| lane["state"] != "gone")
        .filter_map(|lane| {
            let pid = lane["pid"].as_u64()? as u32;
            pids.contains(&pid)
                .then(|| (pid, lane["done"].as_u64().unwrap_or_default()))
        })
        .collect()
}

/// A server and two workers on node 1 (their first URL), two customers
/// ordering; node 1 is stopped cleanly. The server reconnects to another
/// node by itself; its kitchen view shows both workers again, each having
/// done more than before the stop (their reports flow through the new
/// node); `/order` answers 201 again; and a board that watched throughout,
/// on one connection, saw every change of status the store records, in
/// version order, with no gap and no whole board again (it catches up from
/// the store, not from the broker's notices).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_node_stops_moves_to_another_its_board_misses_no_change_and_its_kitchen_shows_the_workers_again()
 {
    let Some(cv) = Cluster::vhost_alone("node-stop").await else {
        return;
    };
    let cluster = cv.cluster();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let urls = cv.urls();
    let server = ServerProcess::spawn(d, &server_args(&urls)).await;
    let watch = BoardWatch::start(Arc::new(Mutex::new(server.base.clone())));
    watch.wait_watching(&server.base).await;
    let cooks = quick_cooks(d, &urls).await;
    let pids = [cooks[0].pid, cooks[1].pid];
    let nodes = cv.connection_nodes(2).await;
    assert!(
        nodes.iter().filter(|n| **n == 1).count() >= 3,
        "the server and both workers on node 1: {nodes:?}"
    );

    let (ledger, stop) = (
        Arc::new(Ledger::default()),
        Arc::new(AtomicBool::new(false)),
    );
    let customers = crowd(&server.base, "", 2, &ledger, &stop);
    wait_until(
        DEADLINE,
        "orders flow, both workers on /kitchen",
        || async {
            let lanes = live_lanes(&server, &pids).await;
            let both = pids.iter().all(|p| lanes.iter().any(|(l, _)| l == p));
            ledger.accepted().len() >= 20 && both
        },
    )
    .await;

    cluster.stop(1).await;
    let stopped = Instant::now();
    let accepted_at_stop = ledger.accepted().len();
    let bound = Duration::from_secs(30);
    wait_until(bound, "every process on the nodes left", || async {
        let nodes = cv.connection_nodes(2).await;
        nodes.len() >= 3 && !nodes.contains(&1)
    })
    .await;
    // Both workers listed, each with more orders done than when every
    // process had moved: reports that went through another node.
    let moved = live_lanes(&server, &pids).await;
    let done = |lanes: &[(u32, u64)], pid: u32| {
        lanes
            .iter()
            .filter(|(p, _)| *p == pid)
            .map(|(_, d)| d)
            .sum::<u64>()
    };
    wait_until(
        bound.saturating_sub(stopped.elapsed()),
        "/kitchen to show both workers again, each with more orders done, within 30 s of the stop",
        || async {
            let now = live_lanes(&server, &pids).await;
            pids.iter().all(|pid| done(&now, *pid) > done(&moved, *pid))
        },
    )
    .await;
    eprintln!(
        "the kitchen shows both workers again {:?} after the stop",
        stopped.elapsed()
    );
    wait_until(
        Duration::from_secs(15).saturating_sub(stopped.elapsed()),
        "/order to answer 201 again within 15 s of the stop",
        || async { ledger.accepted().len() >= accepted_at_stop + 10 },
    )
    .await;
    let said = server.stderr();
    assert!(
        said.contains("reconnecting to another node"),
        "the server says it moves:\n{said}"
    );

    stop.store(true, Ordering::Relaxed);
    for customer in customers {
        customer.await.expect("a customer failed");
    }
    eprintln!("{}", ledger.summary());
    assert_eq!(ledger.no_answer(), 0, "the server answered every request");
    let accepted = ledger.accepted();
    let tickets: Vec<u32> = accepted.iter().map(|a| a.ticket).collect();
    server.wait_all_ready(&tickets).await;
    let files = wait_settled(d, &accepted, DEADLINE).await;

    // The board that watched throughout: one connection, every change of
    // status since its first board, in order, none missed, none twice.
    let expected_last = files.version();
    wait_until(
        DEADLINE,
        "the board to reach the store's last change",
        || async {
            watch.streams().last().is_some_and(|s| {
                s.changes
                    .last()
                    .is_some_and(|(v, _, _)| *v >= expected_last)
            })
        },
    )
    .await;
    let streams = watch.streams();
    assert_eq!(streams.len(), 1, "one connection throughout");
    let board = &streams[0];
    assert_eq!(board.base, server.base);
    assert!(board.first >= files.snapshot_version);
    assert_eq!(board.resyncs, 0, "no whole board after the first");
    let expected: Vec<_> = files
        .status_changes()
        .into_iter()
        .filter(|(v, _, _)| *v > board.first)
        .collect();
    assert_eq!(
        board.changes, expected,
        "the board sent every change of status in the store, in order, no gap"
    );
    watch.finish().await;
    drop(cooks);
}
