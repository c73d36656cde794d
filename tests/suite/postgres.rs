//! The restaurant with its orders in PostgreSQL (`--database`): the same
//! walk on both backends from one harness, two servers and two workers on
//! one store as on four machines (on both backends too), and the database's
//! faults (not answering, not ours, newer, a wrong password, lost while
//! running, a statement that hangs, a failover), each with its sentence and
//! never the password. The other guarantees run on both backends where
//! they are tested (`on_both_backends!`, docs/guarantees.md).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::invariants::{Accepted, wait_settled_at};
use crate::support::pg::{Backend, Cluster, Database};
use crate::support::rabbit::Rabbit;
use crate::support::{
    DEADLINE, ServerProcess, SseClient, TestApp, WorkerProcess, expect_error, header, run_to_exit,
    wait_until,
};
use fastfood::order::Status;

/// The longest `/order` may take while the database is away: its batch's
/// timeout, and some room for a small shared machine.
const BOUNDED: Duration = Duration::from_secs(12);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_walk_holds_on_both_backends_and_across_a_restart() {
    for backend in Backend::both("walk") {
        let dir = tempfile::tempdir().unwrap();
        let args = backend.with(&["--prep-time", "0"]);
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
    let Some(db) = Database::create("alone") else {
        return;
    };
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

    // A process killed a moment ago can leave its session, and the line's
    // lock, behind for a while: the database ends it once it reads the
    // closed socket. A restart in that moment waits for it instead of
    // refusing. Here the lingering session is the test's own, holding the
    // line's lock as the binary takes it, for two seconds.
    let mut first = first;
    first.kill9().await;
    let lingering = db.connect().await;
    lingering
        .execute("select pg_advisory_lock($1)", &[&0x6661_7374_666f_6f01_i64])
        .await
        .unwrap();
    let ends = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(lingering);
    });
    let restarted = ServerProcess::spawn(dir.path(), &["--database", &db.url]).await;
    ends.await.unwrap();
    let second_ticket = restarted.place("fries").await;
    restarted.wait_all_ready(&[ticket, second_ticket]).await;
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
    let Some(db) = Database::create("not_ours") else {
        return;
    };
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

    let Some(newer) = Database::create("newer") else {
        return;
    };
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
    let Some(db) = Database::create("lost") else {
        return;
    };
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
    let metrics = app.metrics_text().await;
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

    // /cancel too, of an order waiting behind one that takes ten minutes.
    let app = TestApp::spawn(&["--database", &url, "--prep-time", "10m", "--workers", "1"]).await;
    let cooking = app.place("slow").await;
    let waiting = app.place_coded("waiting").await;
    wait_until(DEADLINE, "the first order to be cooking", || async {
        app.order_json(cooking).await["status"] == "PREPARING"
    })
    .await;
    db.refuse_connections();
    let started = Instant::now();
    let cancel = app.cancel(waiting.ticket, &waiting.code).await;
    assert!(
        started.elapsed() < BOUNDED,
        "/cancel took {:?}",
        started.elapsed()
    );
    assert_eq!(header(&cancel, "retry-after"), "1");
    let body = expect_error(cancel, 503, "store_unavailable").await;
    assert!(!body.to_string().contains("hunter2"));
    db.allow();
    wait_until(DEADLINE, "/cancel answers 200 again", || async {
        app.cancel(waiting.ticket, &waiting.code).await.status() == 200
    })
    .await;
    assert_eq!(app.order_json(waiting.ticket).await["status"], "CANCELLED");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_hangs_on_a_lock_is_bounded_by_a_timeout() {
    let Some(db) = Database::create("hangs") else {
        return;
    };
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

/// What the rush's clients saw.
#[derive(Default)]
struct Rush {
    /// `(ticket, code, when)` of every 201.
    accepted: Vec<(u32, String, Instant)>,
    /// `(status, when)` of every other answer.
    refused: Vec<(u16, Instant)>,
    /// The longest any answer took.
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_synchronous_standby_loses_no_201_and_takes_orders_again_within_10s() {
    use std::sync::{Arc, Mutex};

    if !as_root("the failover test") {
        return;
    }
    let Some(rabbit) = Rabbit::vhost("pg_failover").await else {
        return;
    };
    let Some((primary, standby)) = synchronous_pair("failover").await else {
        return;
    };
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/fastfood?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let args = [
        "--database",
        url.as_str(),
        "--broker",
        rabbit.url.as_str(),
        "--workers",
        "0",
    ];
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let a = ServerProcess::spawn(dirs[0].path(), &args).await;
    let b = ServerProcess::spawn(dirs[1].path(), &args).await;
    let worker_args = ["--database", url.as_str(), "--prep-time", "10ms"];
    let _w1 = WorkerProcess::spawn(dirs[2].path(), &rabbit.url, &worker_args, &[]).await;
    let _w2 = WorkerProcess::spawn(dirs[2].path(), &rabbit.url, &worker_args, &[]).await;

    // Four customers at each server, ordering as fast as they are answered.
    let rush = Arc::new(Mutex::new(Rush::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut customers = Vec::new();
    for i in 0..8 {
        let api = crate::support::Api::at(if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        });
        let (rush, stop) = (rush.clone(), stop.clone());
        customers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let started = Instant::now();
                let response = api.order(format!("customer {i}")).await;
                let took = started.elapsed();
                let status = response.status().as_u16();
                let retry = header(&response, "retry-after");
                let body: Value = response.json().await.unwrap();
                let accepted = (status == 201).then(|| {
                    (
                        body["order"].as_u64().unwrap() as u32,
                        body["pickup_code"].as_str().unwrap().to_owned(),
                        Instant::now(),
                    )
                });
                {
                    let mut rush = rush.lock().unwrap();
                    rush.slowest = rush.slowest.max(took);
                    match accepted {
                        Some(order) => rush.accepted.push(order),
                        None => rush.refused.push((status, Instant::now())),
                    }
                }
                if status != 201 {
                    assert_eq!(status, 503, "only 201 or 503, never a 500: {body}");
                    assert_eq!(retry, "1");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rush.lock().unwrap().accepted.len();
    assert!(before > 0, "orders are taken before the failover");
    primary.kill9();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    standby.promote();
    let promoted = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "a 201 within 10 s of the promotion",
        || async {
            rush.lock()
                .unwrap()
                .accepted
                .iter()
                .any(|(_, _, at)| *at > promoted)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    for customer in customers {
        customer.await.expect("a customer saw only 201 or 503");
    }
    let rush = Arc::try_unwrap(rush).ok().unwrap().into_inner().unwrap();
    assert!(
        rush.slowest < BOUNDED,
        "an answer took {:?}: never a hang",
        rush.slowest
    );
    assert!(
        rush.refused
            .iter()
            .any(|(_, at)| *at > killed && *at < promoted),
        "503s while there was no primary"
    );
    let tickets: Vec<u32> = rush.accepted.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(
        tickets.iter().collect::<BTreeSet<_>>().len(),
        tickets.len(),
        "no ticket twice"
    );

    // Every 201 is in the promoted database and reaches READY, on both boards.
    for server in [&a, &b] {
        wait_until(
            DEADLINE,
            "every accepted order READY on every board",
            || async {
                let board = server.board().await.statuses();
                tickets
                    .iter()
                    .all(|t| board.get(t).map(String::as_str) == Some("READY"))
            },
        )
        .await;
    }
    let in_db = standby
        .sql("fastfood", "select ticket from fastfood_orders")
        .unwrap();
    let in_db: BTreeSet<u32> = in_db.lines().map(|l| l.parse().unwrap()).collect();
    assert!(
        tickets.iter().all(|t| in_db.contains(t)),
        "every 201 is in the database"
    );

    // No status backward, no version missing: the log replays.
    let log = standby
        .sql(
            "fastfood",
            "select version, ticket, body->>'status' from fastfood_changes order by version",
        )
        .unwrap();
    let rank = |s: &str| {
        ["TAKEN", "PREPARING", "READY", "COLLECTED", "CANCELLED"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    let mut furthest = std::collections::BTreeMap::new();
    for (i, line) in log.lines().enumerate() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f[0].parse::<usize>().unwrap(), i + 1, "versions 1, 2, 3, …");
        let (ticket, r) = (f[1].parse::<u32>().unwrap(), rank(f[2]));
        let before = furthest.insert(ticket, r).unwrap_or(0);
        assert!(r >= before, "order {ticket} went back to {}", f[2]);
    }

    // The boards converge: the same orders at the same version.
    wait_until(DEADLINE, "both boards show the same thing", || async {
        let (x, y) = (a.get_json("/orders").await, b.get_json("/orders").await);
        x == y
    })
    .await;
}

/// `fastfood import --data-dir DIR --database URL`: its exit status, stdout
/// and stderr.
async fn import(dir: &std::path::Path, url: &str) -> (bool, String, String) {
    let out = crate::support::process::fastfood(
        [
            "import",
            "--data-dir",
            dir.to_str().unwrap(),
            "--database",
            url,
        ],
        &[],
    )
    .output()
    .await
    .expect("run fastfood import");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_copies_a_restaurant_from_its_files_into_an_empty_database_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_at(dir.path(), &["--prep-time", "0"]).await;
    let placed = [
        app.place_coded("fries").await,
        app.place_coded("shake").await,
        app.place_coded("burger").await,
    ];
    app.wait_all_ready(&[1, 2, 3]).await;
    assert_eq!(app.take(1, &placed[0].code).await.status(), 200);
    app.shutdown().await;

    // Refused while a server uses the directory.
    let Some(db) = Database::create("import") else {
        return;
    };
    let mut running = ServerProcess::spawn(dir.path(), &[]).await;
    let (ok, _, stderr) = import(dir.path(), &db.url).await;
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "process {} is using the data directory",
            running.pid
        )),
        "{stderr}"
    );
    running.terminate();
    running.wait(DEADLINE).await.expect("the server stops");

    let (ok, stdout, stderr) = import(dir.path(), &db.url).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("copied 2 live orders (with their pickup codes) and 1 that left")
            && stdout.contains("the next ticket is 4"),
        "{stdout}"
    );

    // The restaurant keeps its identity: orders already in RabbitMQ carry it.
    let identity = std::fs::read_to_string(dir.path().join("restaurant_id")).unwrap();
    assert_eq!(
        db.sql("select restaurant_id from fastfood_meta").trim(),
        identity.trim()
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_at(elsewhere.path(), &["--database", &db.url]).await;
    expect_error(app.take(1, &placed[0].code).await, 410, "already_collected").await;
    expect_error(app.take(2, "000000").await, 403, "wrong_code").await;
    assert_eq!(app.take(2, &placed[1].code).await.status(), 200);
    assert_eq!(app.order_json(3).await["status"], "READY");
    assert_eq!(app.place("next").await, 4, "the counter goes on");
    app.shutdown().await;

    let (ok, _, stderr) = import(dir.path(), &db.url).await;
    assert!(!ok);
    assert!(
        stderr.contains("the database already holds a restaurant"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_in_one_sentence_and_no_password_ever_shows() {
    use crate::support::process::fastfood;

    // Passwords nothing else would print.
    let right = "Pg7x-quince-41c9e0d2";
    let wrong = "Pg7x-medlar-8b3f6a15";
    let Some(cluster) = Cluster::with_password("password", right) else {
        return;
    };
    cluster
        .sql("postgres", "create database fastfood")
        .expect("create database");
    let wrong_url = format!(
        "postgres://postgres:{wrong}@127.0.0.1:{}/fastfood",
        cluster.port
    );
    let shown = format!(
        "PostgreSQL at postgres://postgres:***@127.0.0.1:{}/fastfood",
        cluster.port
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let serve = ["serve", "--listen", "127.0.0.1:0", "--data-dir", data];
    let mut seen = String::new();

    // The wrong one, in --database and in DATABASE_URL, at info and debug.
    for (database, env) in [
        (Some(wrong_url.as_str()), vec![]),
        (
            None,
            vec![("DATABASE_URL", wrong_url.as_str()), ("RUST_LOG", "debug")],
        ),
    ] {
        let mut args = serve.to_vec();
        args.extend(
            database
                .map(|url| ["--database", url])
                .into_iter()
                .flatten(),
        );
        let started = Instant::now();
        let output = tokio::time::timeout(DEADLINE, fastfood(&args, &env).output())
            .await
            .expect("refused by itself")
            .expect("run fastfood");
        assert!(!output.status.success());
        assert!(
            started.elapsed() < BOUNDED,
            "refused in {:?}",
            started.elapsed()
        );
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let refusals: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("cannot open the order store"))
            .collect();
        assert!(
            refusals.len() == 1
                && refusals[0].contains(&shown)
                && refusals[0].contains("the server refused the password of user \"postgres\""),
            "one sentence naming the database and what went wrong:\n{stderr}"
        );
        seen += &String::from_utf8_lossy(&output.stdout);
        seen += &stderr;
    }

    // The right one: a server at debug takes, cooks and hands over an
    // order, and answers every route.
    let server = ServerProcess::spawn_with_env(
        dir.path(),
        &["--database", &cluster.url("fastfood"), "--prep-time", "0"],
        &[("RUST_LOG", "debug")],
    )
    .await;
    let placed = server.place_coded("fries").await;
    server.wait_all_ready(&[placed.ticket]).await;
    assert_eq!(server.take(placed.ticket, &placed.code).await.status(), 200);
    let order = format!("/orders/{}", placed.ticket);
    for path in [
        "/",
        "/orders",
        order.as_str(),
        "/metrics",
        "/readyz",
        "/healthz",
        "/kitchen/now",
    ] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        seen += &response.text().await.unwrap();
    }
    seen += &server.stderr();
    assert!(
        seen.contains(&shown),
        "the output was read, and names the database"
    );
    for password in [right, wrong] {
        assert!(!seen.contains(password), "{password} shown:\n{seen}");
    }
}

/// `(version, ticket, status)` of every change a screen saw after its first
/// board (the version it started at), until `count` orders have gone by
/// COLLECTED or the stream ends (its server killed).
async fn follow_screen(mut screen: SseClient, count: usize) -> (u64, Vec<(u64, u32, String)>) {
    let start = screen.next_event().await.version();
    let mut seen = Vec::new();
    let mut collected = 0;
    while collected < count {
        let Some(event) = screen.next_until_end().await else {
            break;
        };
        let data: Value = serde_json::from_str(&event.data).expect("JSON");
        let change = &data["change"];
        assert!(!change.is_null(), "a whole board in the middle: {data}");
        let status = change["status"].as_str().unwrap().to_owned();
        if status == "COLLECTED" {
            collected += 1;
        }
        let version = event.id.parse().expect("the id is the version");
        seen.push((version, change["order"].as_u64().unwrap() as u32, status));
    }
    (start, seen)
}

/// What a new user does, as if on four machines: two servers and two
/// workers on one store and one RabbitMQ (on PostgreSQL a data directory
/// and a port each; on the files one shared directory), a board on each
/// server; a worker `kill -9`ed mid-rush and started again, then a server,
/// started again on a new port with a new board. Nothing is lost (U L S M
/// F on the store), every board shows every status change of the store's
/// log after it connected, in version order, no gap, no repeat (the killed
/// server's board a gapless beginning of it), and each order is collected
/// at the other server than the one that took it.
async fn two_servers_and_two_workers_on_one_store(backend: Backend) {
    const ORDERS: usize = 60;
    let Some(rabbit) = Rabbit::vhost(&format!("two-servers-{}", backend.tag())).await else {
        return;
    };
    let dirs = backend.data_dirs(4);
    let args = backend.with(&["--broker", rabbit.url.as_str(), "--workers", "0"]);
    let a = ServerProcess::spawn(dirs.of(0), &args).await;
    let mut b = ServerProcess::spawn(dirs.of(1), &args).await;
    let worker_args = backend.with(&["--prep-time", "20ms"]);
    let mut w1 = WorkerProcess::spawn(dirs.of(2), &rabbit.url, &worker_args, &[]).await;
    let _w2 = WorkerProcess::spawn(dirs.of(3), &rabbit.url, &worker_args, &[]).await;
    let mut screens = vec![
        tokio::spawn(follow_screen(a.updates().await, ORDERS)),
        tokio::spawn(follow_screen(b.updates().await, ORDERS)),
    ];

    let mut placed = Vec::new();
    for i in 0..ORDERS {
        if i == ORDERS / 3 {
            // A worker dies holding whatever it had: the other cooks it,
            // and it comes back.
            w1.kill9().await;
            w1 = WorkerProcess::spawn(dirs.of(2), &rabbit.url, &worker_args, &[]).await;
        }
        if i == 2 * ORDERS / 3 {
            // A server dies with its board open; it comes back elsewhere.
            b.kill9().await;
            b = ServerProcess::spawn(dirs.of(1), &args).await;
            screens.push(tokio::spawn(follow_screen(b.updates().await, ORDERS)));
        }
        let at_a = i % 2 == 0;
        let server = if at_a { &a } else { &b };
        placed.push((at_a, server.place_coded(&format!("order {i}")).await));
    }
    let tickets: Vec<u32> = placed.iter().map(|(_, p)| p.ticket).collect();
    assert_eq!(
        tickets.iter().collect::<BTreeSet<_>>().len(),
        ORDERS,
        "no ticket twice: {tickets:?}"
    );
    a.wait_all_ready(&tickets).await;
    b.wait_all_ready(&tickets).await;
    for (at_a, p) in &placed {
        // Collected at the other server than the one that took it.
        let server = if *at_a { &b } else { &a };
        assert_eq!(server.take(p.ticket, &p.code).await.status(), 200);
    }
    let accepted: Vec<Accepted> = placed
        .iter()
        .map(|(_, p)| Accepted {
            ticket: p.ticket,
            content: p.body["content"].as_str().unwrap().to_owned(),
            code: p.code.clone(),
        })
        .collect();
    let store = wait_settled_at(&backend.store_at(dirs.of(0)), &accepted, DEADLINE).await;
    rabbit.wait_drained("orders").await;

    // What every board must show: each change in the store's log that
    // moved an order's status (a restatement, such as the broker's
    // confirmation, moves nothing a screen shows), in version order.
    let mut last_status = std::collections::BTreeMap::new();
    let mut expected = Vec::new();
    for line in store.history.iter().chain(&store.log) {
        let (ticket, status) = (line.order.ticket, line.order.status.to_string());
        if last_status.insert(ticket, status.clone()).as_ref() != Some(&status) {
            expected.push((line.version, ticket, status));
        }
    }
    let killed = 1;
    for (i, screen) in screens.into_iter().enumerate() {
        let (start, seen) = tokio::time::timeout(DEADLINE, screen)
            .await
            .expect("every change reaches every screen")
            .unwrap();
        let mut from_start: Vec<_> = expected
            .iter()
            .filter(|(v, _, _)| *v > start)
            .cloned()
            .collect();
        if i == killed {
            assert!(
                seen.len() >= ORDERS,
                "the killed server's board saw the first orders"
            );
            from_start.truncate(seen.len());
        }
        assert_eq!(
            seen,
            from_start,
            "{}: board {i} saw every status change, in the log's version order, no gap, no repeat",
            backend.name()
        );
    }
    assert_eq!(
        store
            .fates()
            .values()
            .filter(|f| f.status == Status::Collected)
            .count(),
        ORDERS
    );
}

crate::on_both_backends!(
    two_servers_and_two_workers_on_one_store_see_every_change_in_one_order_and_lose_nothing,
    two_servers_and_two_workers_on_one_store
);

/// A primary and its synchronous standby, clusters of the test's own, with
/// an empty database `fastfood` on the primary; `None` where PostgreSQL's
/// programs are missing.
async fn synchronous_pair(test: &str) -> Option<(Cluster, Cluster)> {
    let primary = Cluster::primary(test)?;
    let standby = Cluster::standby_of(&primary);
    primary
        .sql(
            "postgres",
            "alter system set synchronous_standby_names = '*'",
        )
        .unwrap();
    primary.sql("postgres", "select pg_reload_conf()").unwrap();
    wait_synchronous(&primary).await;
    primary.sql("postgres", "create database fastfood").unwrap();
    Some((primary, standby))
}

/// Waits until `primary`'s standby is synchronous.
async fn wait_synchronous(primary: &Cluster) {
    wait_until(DEADLINE, "the standby is synchronous", || async {
        primary
            .sql("postgres", "select sync_state from pg_stat_replication")
            .is_ok_and(|s| s == "sync")
    })
    .await;
}

/// Whether the tests run as root, which clusters of a test's own need (they
/// run as the `postgres` user, which only root can become); says so loudly
/// when not, and fails if `FASTFOOD_REQUIRE_ROOT=1`.
fn as_root(test: &str) -> bool {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        assert!(
            std::env::var("FASTFOOD_REQUIRE_ROOT").as_deref() != Ok("1"),
            "FASTFOOD_REQUIRE_ROOT=1 but the tests do not run as root"
        );
        eprintln!(
            "SKIPPED {test}: it starts PostgreSQL clusters as the postgres user; run the tests as root"
        );
    }
    root
}

/// A primary whose one synchronous standby is gone cannot confirm a commit:
/// `/order` answers `503` within its bound, but the primary has committed
/// the order locally, and it shows once the standby is back. Its customer
/// has no ticket and no code, so it must never be cooked: the server cancels
/// it as soon as the store answers again. Orders before and after are
/// READY as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_whose_commit_could_not_be_confirmed_is_cancelled_not_cooked() {
    if !as_root("the unconfirmed-commit test") {
        return;
    }
    let Some((primary, standby)) = synchronous_pair("unconfirmed").await else {
        return;
    };
    let url = primary.url("fastfood");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        dir.path(),
        &["--database", &url, "--workers", "2", "--prep-time", "0"],
    )
    .await;
    let before = server.place("before").await;
    wait_until(DEADLINE, "the first order READY", || async {
        server.order_json(before).await["status"] == "READY"
    })
    .await;

    standby.kill9();
    let asked = Instant::now();
    let refused = server
        .client
        .post(server.url("/order"))
        .body("unconfirmed")
        .send()
        .await
        .expect("an answer");
    assert_eq!(refused.status(), 503, "{:?}", refused.text().await);
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "{:?}",
        asked.elapsed()
    );
    let unconfirmed = before + 1;

    standby.start();
    wait_synchronous(&primary).await;
    wait_until(DEADLINE, "the unconfirmed order cancelled", || async {
        let shown = server.get_order(unconfirmed).await;
        shown.status() == 200 && shown.json::<Value>().await.unwrap()["status"] == "CANCELLED"
    })
    .await;
    let after = server.place("after").await;
    wait_until(DEADLINE, "the next order READY", || async {
        server.order_json(after).await["status"] == "READY"
    })
    .await;
    let statuses = primary
        .sql(
            "fastfood",
            &format!(
                "select string_agg(body->>'status', ' ' order by version) \
                 from fastfood_changes where ticket = {unconfirmed}"
            ),
        )
        .unwrap();
    assert_eq!(statuses, "TAKEN CANCELLED", "never cooked");
}

/// With the in-process queue, alone on its database, a server answers its
/// worker's first claim before the claim commits, as the file store answers
/// it before its fsync: the worker cooks while the claim is written. Here
/// that commit then fails: a session of the test holds the lock every batch
/// takes, until the batches give up on it. The database still has the
/// order TAKEN, nothing of the failed batches is written, and the worker
/// gives its orders back. Once the lock is free both orders are claimed
/// again and made READY, and the second one's log shows it moving once
/// through each status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_answered_before_its_commit_that_then_fails_goes_back_and_is_cooked() {
    let Some(db) = Database::create("early_claim") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        dir.path(),
        &["--database", &db.url, "--workers", "1", "--prep-time", "3s"],
    )
    .await;
    let first = server.place("burger").await;
    wait_until(
        DEADLINE,
        "the worker to start on the first order",
        || async { server.order_json(first).await["status"] == "PREPARING" },
    )
    .await;
    // Waits in the line while the worker cooks the first.
    let second = server.place("fries").await;

    // The lock every batch of the restaurant takes, as the binary takes it:
    // the first order's READY, due in 3 s, waits for it, and the worker
    // takes the second meanwhile.
    let holder = db.connect().await;
    holder
        .execute("select pg_advisory_lock($1)", &[&0x6661_7374_666f_6f03_i64])
        .await
        .unwrap();
    wait_until(
        DEADLINE,
        "the worker to start on the second order",
        || async {
            server
                .stderr()
                .contains(&format!("preparing order {second}"))
        },
    )
    .await;
    let stored = |t: u32| {
        db.sql(&format!(
            "select status from fastfood_orders where ticket = {t}"
        ))
    };
    assert_eq!(
        stored(second),
        "TAKEN",
        "the claim was answered before its commit"
    );
    wait_until(DEADLINE, "the batches to give up on the lock", || async {
        server
            .stderr()
            .contains(&format!("cannot mark order {first} READY"))
    })
    .await;
    assert_eq!(stored(first), "PREPARING", "its READY was not written");
    assert_eq!(stored(second), "TAKEN", "nor the second one's claim");
    drop(holder);

    server.wait_all_ready(&[first, second]).await;
    let statuses = db.sql(&format!(
        "select string_agg(body->>'status', ' ' order by version) \
         from fastfood_changes where ticket = {second}"
    ));
    assert_eq!(
        statuses, "TAKEN PREPARING READY",
        "once through each status after the failed claim"
    );
}

/// Signals `pid` (`STOP`, `CONT`) with kill(1).
fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_stays_bounded_and_followers_still_miss_nothing() {
    let Some(rabbit) = Rabbit::vhost("pg_prune").await else {
        return;
    };
    let Some(db) = Database::create("prune") else {
        return;
    };
    // Far fewer changes kept than the test makes.
    const KEEP: u64 = 40;
    let keep = KEEP.to_string();
    let args = |workers| {
        vec![
            "--database",
            db.url.as_str(),
            "--broker",
            rabbit.url.as_str(),
            "--keep-changes",
            keep.as_str(),
            "--prep-time",
            "0",
            "--workers",
            workers,
        ]
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = ServerProcess::spawn(dir_a.path(), &args("2")).await;
    let b = ServerProcess::spawn(dir_b.path(), &args("0")).await;

    // B follows while A's batches prune the log behind it: its board sees
    // every status of every order, in order.
    const ORDERS: usize = 60;
    let screen = tokio::spawn(follow_screen(b.updates().await, ORDERS));
    let mut placed = Vec::new();
    for i in 0..ORDERS {
        placed.push(a.place_coded(&format!("order {i}")).await);
    }
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    a.wait_all_ready(&tickets).await;
    for p in &placed {
        assert_eq!(b.take(p.ticket, &p.code).await.status(), 200);
    }
    let (_, seen) = tokio::time::timeout(DEADLINE, screen)
        .await
        .expect("every change reaches B's screen")
        .unwrap();
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "versions only grow: {seen:?}"
    );
    for t in &tickets {
        let steps: Vec<&str> = seen
            .iter()
            .filter(|(_, ticket, _)| ticket == t)
            .map(|(_, _, status)| status.as_str())
            .collect();
        assert_eq!(
            steps,
            ["TAKEN", "PREPARING", "READY", "COLLECTED"],
            "order {t} on B's screen"
        );
    }
    // At most what it keeps, a step of pruning and a batch, once the
    // pruner (off the batches' way) has caught up.
    async fn bounded(db: &Database) -> u64 {
        let rows = || -> u64 {
            db.sql("select count(*) from fastfood_changes")
                .parse()
                .unwrap()
        };
        wait_until(DEADLINE, "the log pruned to what it keeps", || async {
            rows() <= 2 * KEEP
        })
        .await;
        db.sql("select max(version) from fastfood_changes")
            .parse()
            .unwrap()
    }
    let last = bounded(&db).await;
    assert!(
        last >= 4 * ORDERS as u64,
        "the log went far past what it keeps: {last}"
    );

    // B stopped while A goes on far further than the log keeps: B cannot
    // read what it missed, and loads the orders again, as at start.
    signal(b.pid, "STOP");
    let mut missed = Vec::new();
    for i in 0..ORDERS / 2 {
        missed.push(a.place_coded(&format!("missed {i}")).await);
    }
    let tickets: Vec<u32> = missed.iter().map(|p| p.ticket).collect();
    a.wait_all_ready(&tickets).await;
    for p in &missed[1..] {
        assert_eq!(a.take(p.ticket, &p.code).await.status(), 200);
    }
    assert!(bounded(&db).await > last + 2 * KEEP);
    signal(b.pid, "CONT");
    let waiting = &missed[0];
    wait_until(DEADLINE, "B knows what it missed", || async {
        b.board().await.all_ready(&[waiting.ticket])
    })
    .await;
    for p in &missed[1..] {
        expect_error(b.take(p.ticket, &p.code).await, 410, "already_collected").await;
    }
    assert_eq!(b.take(waiting.ticket, &waiting.code).await.status(), 200);
    assert!(
        b.stderr().contains("the orders were loaded again"),
        "{}",
        b.stderr()
    );
    // And A sees what B did.
    expect_error(
        a.take(waiting.ticket, &waiting.code).await,
        410,
        "already_collected",
    )
    .await;
}
