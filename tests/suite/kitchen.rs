//! The kitchen view (`/kitchen/now`, `/kitchen/updates`) and what the store
//! records of the kitchen (`worker`, `deliveries`), against the real
//! binary: in one process, and in complex mode with worker processes behind
//! RabbitMQ, one of them killed mid-order.

use std::time::Duration;

use serde_json::Value;

use crate::support::pg::Backend;
use crate::support::rabbit::{HOST, Rabbit, rabbitmqctl};
use crate::support::{
    DEADLINE, ServerProcess, SseClient, TestApp, WorkerProcess, wait_for, wait_until,
};

/// The lanes of `/kitchen/now`.
fn lanes(kitchen: &Value) -> Vec<Value> {
    kitchen["workers"].as_array().cloned().unwrap_or_default()
}

/// The texts of the kitchen's log.
fn log(kitchen: &Value) -> Vec<String> {
    kitchen["log"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| m["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kitchen_shows_each_worker_its_order_and_the_line() {
    let app = TestApp::spawn(&["--prep-time", "3s", "--workers", "2"]).await;
    let tickets: Vec<u32> = {
        let mut t = Vec::new();
        for i in 0..5 {
            t.push(app.place(&format!("burger {i}")).await);
        }
        t
    };
    let kitchen = wait_for(DEADLINE, "two workers preparing", || async {
        let k = app.get_json("/kitchen/now").await;
        let busy = lanes(&k)
            .iter()
            .filter(|l| l["state"] == "preparing")
            .count();
        (busy == 2).then_some(k)
    })
    .await;
    let busy = lanes(&kitchen);
    assert_eq!(busy.len(), 2, "{kitchen}");
    let pid = std::process::id();
    for lane in &busy {
        assert_eq!(lane["here"], true);
        assert_eq!(lane["process"], "server");
        assert_eq!(lane["pid"], pid);
        assert_eq!(lane["delivery"], 1);
        assert!(lane["since"].is_string());
        let name = lane["name"].as_str().unwrap();
        assert!(name.ends_with(&format!("(pid {pid})")), "{name}");
        // The store names the same worker on the order.
        let order = app.order_json(lane["order"].as_u64().unwrap() as u32).await;
        assert_eq!(order["status"], "PREPARING");
        assert_eq!(order["worker"], name, "{order}");
        assert_eq!(order["deliveries"], 1, "{order}");
    }
    let held: Vec<u64> = busy.iter().map(|l| l["order"].as_u64().unwrap()).collect();
    let queue = &kitchen["queue"];
    assert_eq!(queue["kind"], "in-process");
    assert_eq!(queue["in_flight"], 2);
    assert_eq!(queue["waiting"], 3);
    assert_eq!(queue["next_from"], "queue");
    let next: Vec<u64> = queue["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = tickets
        .iter()
        .map(|t| u64::from(*t))
        .filter(|t| !held.contains(t))
        .collect();
    assert_eq!(next, expected, "the line, first first");
    let texts = log(&kitchen);
    assert!(
        texts.iter().any(|t| t.contains("joined the kitchen")),
        "{texts:?}"
    );

    // A page following the kitchen hears the first orders finish.
    let mut updates = SseClient::connect(&app.url("/kitchen/updates")).await;
    let first = updates.next_event().await.data;
    assert!(first["workers"].is_array(), "{first}");
    let done = tokio::time::timeout(DEADLINE, async {
        loop {
            let k = updates.next_event().await.data;
            let done: u64 = lanes(&k).iter().filter_map(|l| l["done"].as_u64()).sum();
            if done >= 2 {
                return k;
            }
        }
    })
    .await
    .expect("the page hears two orders done");
    assert!(done["queue"]["waiting"].as_u64().unwrap() <= 1, "{done}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_order_and_a_dropped_one_are_told_in_words() {
    // Every give-back counts as a delivery: no order set aside here.
    let app = TestApp::spawn(&[
        "--prep-time",
        "1s",
        "--workers",
        "1",
        "--fail-rate",
        "0.5",
        "--max-deliveries",
        "100",
    ])
    .await;
    let busy = app.place("first").await;
    let waiting = app.place_coded("second").await;
    assert_eq!(
        app.cancel(waiting.ticket, &waiting.code).await.status(),
        200
    );
    let mut others = Vec::new();
    for i in 0..6 {
        others.push(app.place(&format!("more {i}")).await);
    }
    let mut all = vec![busy];
    all.extend(&others);
    app.wait_all_ready(&all).await;
    // The lane counts an order done once it is acknowledged, after READY.
    let kitchen = wait_for(DEADLINE, "the lane counts every order done", || async {
        let k = app.get_json("/kitchen/now").await;
        (lanes(&k)[0]["done"].as_u64() == Some(all.len() as u64)).then_some(k)
    })
    .await;
    let texts = log(&kitchen);
    let skipped = format!(
        "order {} was cancelled while waiting: skipped",
        waiting.ticket
    );
    assert!(texts.iter().any(|t| t.contains(&skipped)), "{texts:?}");
    // Every order dropped on the floor is in the log, and was delivered
    // again: its deliveries count each time a worker took it.
    let dropped: Vec<&String> = texts
        .iter()
        .filter(|t| t.contains("on the floor (--fail-rate)"))
        .collect();
    let lane = &lanes(&kitchen)[0];
    assert_eq!(lane["gave_back"].as_u64().unwrap() as usize, dropped.len());
    let mut deliveries = 0;
    for ticket in &all {
        deliveries += app.order_json(*ticket).await["deliveries"]
            .as_u64()
            .unwrap() as usize;
    }
    assert_eq!(
        deliveries,
        all.len() + dropped.len(),
        "one delivery per order, and one more per order dropped: {texts:?}"
    );
    app.shutdown().await;
}

/// A time of the API (RFC 3339).
fn time(value: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(value.as_str().unwrap_or_else(|| panic!("a time: {value}")))
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_rate_drops_an_order_in_the_middle_of_its_preparation() {
    const PREP: Duration = Duration::from_secs(4);
    let app = TestApp::spawn(&[
        "--prep-time",
        "4s",
        "--workers",
        "1",
        "--fail-rate",
        "0.9",
        // Every drop is a delivery: at 0.9 it would often be set aside.
        "--max-deliveries",
        "100",
    ])
    .await;
    // At 0.9 the first attempt at an order is dropped 9 times in 10; an
    // order that was not is READY, and the next one is tried.
    for i in 0..4 {
        let ticket = app.place(&format!("burger {i}")).await;
        let since = wait_for(DEADLINE, "the worker prepares the order", || async {
            let k = app.get_json("/kitchen/now").await;
            let lane = lanes(&k).into_iter().next()?;
            (lane["order"] == ticket).then(|| time(&lane["since"]))
        })
        .await;
        let said = format!("dropped order {ticket} on the floor");
        let dropped = wait_for(DEADLINE, "the order dropped or READY", || async {
            let k = app.get_json("/kitchen/now").await;
            let log = k["log"].as_array().cloned().unwrap_or_default();
            if let Some(m) = log
                .iter()
                .find(|m| m["text"].as_str().unwrap().contains(&said))
            {
                return Some(Some(time(&m["at"])));
            }
            let status = app.order_json(ticket).await["status"].clone();
            (status == "READY").then_some(None)
        })
        .await;
        let Some(at) = dropped else { continue };
        let after = at.duration_since(since).unwrap();
        assert!(
            after >= PREP / 5 && after <= PREP * 4 / 5,
            "dropped {after:?} into a {PREP:?} preparation: not in its middle"
        );
        // Not waited for READY: at 0.9 that takes ten tries on average,
        // unbounded in the worst case (the give-back tests cover it at
        // lower rates).
        app.shutdown().await;
        return;
    }
    panic!("no order was dropped in four at --fail-rate 0.9");
}

async fn a_worker_process_killed_mid_order_shows_as_gone(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("kitchen-view-{}", backend.tag())).await else {
        return;
    };
    // The server and the two workers (on the database, a machine each).
    let dirs = backend.data_dirs(3);
    let args = backend.with(&["--workers", "0", "--broker", &rabbit.url]);
    let server = ServerProcess::spawn(dirs.of(0), &args).await;
    let cook_args = backend.with(&["--prep-time", "4s"]);
    let mut cooks = [
        WorkerProcess::spawn(dirs.of(1), &rabbit.url, &cook_args, &[]).await,
        WorkerProcess::spawn(dirs.of(2), &rabbit.url, &cook_args, &[]).await,
    ];
    wait_until(DEADLINE, "both worker processes in the kitchen", || async {
        lanes(&server.get_json("/kitchen/now").await).len() == 2
    })
    .await;
    let ticket = server.place("a burger").await;
    let lane = wait_for(DEADLINE, "a lane preparing the order", || async {
        lanes(&server.get_json("/kitchen/now").await)
            .into_iter()
            .find(|l| l["order"] == ticket && l["state"] == "preparing")
    })
    .await;
    assert_eq!(lane["process"], "worker");
    assert_eq!(lane["here"], false);
    let name = lane["name"].as_str().unwrap().to_owned();
    let pid = lane["pid"].as_u64().unwrap() as u32;
    let victim = cooks
        .iter()
        .position(|c| c.pid == pid)
        .expect("a worker we started");
    cooks[victim].kill9().await;

    // The other worker takes it again, as its second delivery.
    let order = wait_for(DEADLINE, "another worker claims the order", || async {
        let order = server.order_json(ticket).await;
        (order["deliveries"] == 2).then_some(order)
    })
    .await;
    assert_ne!(order["worker"], name.as_str(), "{order}");
    let kitchen = wait_for(
        DEADLINE,
        "the killed worker's lane shows as gone",
        || async {
            let k = server.get_json("/kitchen/now").await;
            let gone = lanes(&k)
                .iter()
                .any(|l| l["name"] == name.as_str() && l["state"] == "gone");
            gone.then_some(k)
        },
    )
    .await;
    let other = lanes(&kitchen)
        .into_iter()
        .find(|l| l["name"] != name.as_str())
        .expect("the other lane");
    assert!(
        other["order"] == ticket || other["done"].as_u64() == Some(1),
        "the order went to the other lane: {kitchen}"
    );
    let texts = log(&kitchen);
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with(&format!("{name} stopped answering; order {ticket}"))),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.contains(&format!(
            "took order {ticket} again (delivery 2 of at most 5): {name} had it"
        ))),
        "{texts:?}"
    );
    wait_until(DEADLINE, "the order READY", || async {
        server.order_json(ticket).await["status"] == "READY"
    })
    .await;
    assert_eq!(server.order_json(ticket).await["deliveries"], 2);
    // The queue is empty again; nothing in flight.
    wait_until(Duration::from_secs(10), "nothing in flight", || async {
        let k = server.get_json("/kitchen/now").await;
        k["queue"]["in_flight"] == 0 && k["queue"]["waiting"] == 0
    })
    .await;
}

crate::on_both_backends!(
    a_worker_process_killed_mid_order_shows_as_gone_and_its_order_moves_to_another_lane,
    a_worker_process_killed_mid_order_shows_as_gone
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moment_told_while_the_server_was_cut_off_reaches_its_page_afterwards() {
    let Some(rabbit) = Rabbit::vhost("kitchen-cut-off").await else {
        return;
    };
    // The server connects as a user of its own, so it alone can be kept
    // off the broker while the worker (guest) reconnects at once: as after
    // a broker restart, when a worker is back before a server listens.
    let user = format!("fastfood-cut-off-{}", std::process::id());
    let _ = rabbitmqctl(&["delete_user", &user]).await;
    rabbitmqctl(&["add_user", &user, "cut-off"])
        .await
        .expect("add_user");
    let allow = [
        "set_permissions",
        "-p",
        &rabbit.vhost,
        &user,
        ".*",
        ".*",
        ".*",
    ];
    rabbitmqctl(&allow).await.expect("set_permissions");
    let url = format!("amqp://{user}:cut-off@{HOST}/{}", rabbit.vhost);
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &url]).await;
    // Long enough to be cut off mid-order: once it is READY, the worker
    // is handed the order again, and recognises it.
    let cook = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "15s"], &[]).await;
    let ticket = server.place("a burger").await;
    wait_until(DEADLINE, "the worker prepares the order", || async {
        lanes(&server.get_json("/kitchen/now").await)
            .iter()
            .any(|l| l["order"] == ticket)
    })
    .await;

    // Both connections closed; only the worker may come back. RabbitMQ
    // hands it the order again, and it says so, while no server listens.
    rabbitmqctl(&["clear_permissions", "-p", &rabbit.vhost, &user])
        .await
        .expect("clear_permissions");
    rabbitmqctl(&["close_all_connections", "-p", &rabbit.vhost, "cut off"])
        .await
        .expect("close_all_connections");
    let said = format!("order {ticket} ");
    let moment = wait_for(DEADLINE, "the worker tells of the order again", || async {
        cook.stderr()
            .lines()
            .find(|l| l.contains(&said) && l.contains("again"))
            .map(str::to_owned)
    })
    .await;
    // Its reports meanwhile go nowhere: a few heartbeats' worth.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let texts = log(&server.get_json("/kitchen/now").await);
    assert!(
        !texts
            .iter()
            .any(|t| t.contains(&said) && t.contains("again")),
        "the server heard it while cut off: {texts:?}"
    );

    // The server is let back: the moment reaches its page.
    rabbitmqctl(&allow).await.expect("set_permissions");
    let texts = wait_for(DEADLINE, "the moment on the page", || async {
        let texts = log(&server.get_json("/kitchen/now").await);
        texts
            .iter()
            .any(|t| t.contains(&said) && t.contains("again") && moment.contains(t.as_str()))
            .then_some(texts)
    })
    .await;
    let told = texts
        .iter()
        .filter(|t| t.contains(&said) && t.contains("again"))
        .count();
    assert_eq!(told, 1, "told once: {texts:?}");
    server.wait_all_ready(&[ticket]).await;
    drop(cook);
    drop(server);
    let _ = rabbitmqctl(&["delete_user", &user]).await;
}

/// The data directory moved away under a running server: the kitchen's log
/// says what happened, never where (no path, no OS error), on
/// `/kitchen/now` and `/kitchen/updates`; the server's own log keeps the
/// detail; and a worker that cannot write backs off instead of taking the
/// order back and forth twice a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_written_is_told_without_paths_and_workers_back_off() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let server = ServerProcess::spawn(&dir, &["--prep-time", "1s", "--workers", "1"]).await;
    let mut updates = SseClient::connect(&server.url("/kitchen/updates")).await;
    server.place("burger").await;
    server.place("fries").await;
    let moved = parent.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();

    // Watch for 8 s: every moment, from the JSON and from the stream.
    let secret = parent.path().to_str().unwrap().to_owned();
    let watch = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut streamed = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout_at(watch, async { updates.try_next_event(DEADLINE).await }).await
    {
        streamed.push(event.data.to_string());
    }
    let kitchen = server.get_json("/kitchen/now").await;
    let moments = log(&kitchen);
    let given_back: Vec<_> = moments
        .iter()
        .filter(|m| m.contains("goes back to the front of the line"))
        .collect();
    assert!(!given_back.is_empty(), "no give-back told: {moments:?}");
    assert!(
        given_back
            .iter()
            .any(|m| m.contains("a file of the order store is missing")),
        "{given_back:?}"
    );
    for text in moments.iter().chain(&streamed) {
        assert!(
            !text.contains(&secret) && !text.contains("os error") && !text.contains("orders.log"),
            "a path or an OS error on a public page: {text}"
        );
    }
    // Backing off from 500 ms, doubling: a handful in 8 s, not 16 or more.
    assert!(
        given_back.len() <= 7,
        "{} give-backs in 8 s: {given_back:#?}",
        given_back.len()
    );
    // The log keeps the detail.
    let log = server.stderr();
    assert!(log.contains("orders.log"), "{log}");
}
