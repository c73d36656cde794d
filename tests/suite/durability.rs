//! Processes, crashes and files (the guarantees): the real binary as
//! child processes, killed, stopped and restarted on one data directory.

use std::path::Path;
use std::time::Duration;

use crate::support::invariants::{
    StoreAt, check_all_at, check_forward_in_store, check_shape, read_at,
};
use crate::support::pg::Backend;
use crate::support::rabbit::Rabbit;
use crate::support::{
    Damage, ServerProcess, code_for, each_damage_is_refused, log_line, place_orders, placed_orders,
    read_counter, read_store, stored_order, write_store,
};
use fastfood::order::Status;
use serde_json::{Value, json};

/// Checks what `jq` would see: `orders.json` is one JSON document shaped like
/// `GET /orders`, `orders.log` a header then one change per line with
/// consecutive versions. Returns the records.
fn check_store_files(dir: &Path) -> Vec<Value> {
    let (snapshot, header, records) = read_store(dir);
    let base = snapshot["version"]
        .as_u64()
        .expect("the snapshot's version");
    assert!(snapshot["orders"].is_array(), "{snapshot}");
    assert_eq!(
        header,
        json!({ "base": base }),
        "the log continues from the snapshot"
    );
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            record["version"],
            base + 1 + i as u64,
            "consecutive versions in the log"
        );
        assert!(
            record["order"]["order"].is_u64() && record["order"]["status"].is_string(),
            "{record}"
        );
    }
    records
}

async fn kill_9_mid_run(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let args = backend.with(&["--prep-time", "500ms"]);
    let mut server = ServerProcess::spawn(dir.path(), &args).await;
    let placed = placed_orders(&[&server.base], 20, 20).await;
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=20).collect::<Vec<_>>());
    let before = server.board().await.statuses();
    assert_eq!(before.len(), 20);
    let unfinished = before
        .values()
        .filter(|s| *s == "TAKEN" || *s == "PREPARING")
        .count();
    assert!(unfinished > 0, "the kill must happen mid-run: {before:?}");
    server.kill9().await;

    // The store a crash left behind is whole, and holds every order.
    let at = backend.store_at(dir.path());
    if let StoreAt::Files(dir) = &at {
        check_store_files(dir);
    }
    let store = read_at(&at);
    check_shape(&at, &store);
    check_forward_in_store(&store);
    let taken = store
        .log
        .iter()
        .filter(|l| l.order.status == Status::Taken)
        .count();
    assert_eq!(taken, 20, "every acknowledged order is stored");
    assert_eq!(store.counter, 20);

    // (On the database, the dead server's lock went with its connection.)
    let server = ServerProcess::spawn(dir.path(), &args).await;
    let board = server.wait_all_ready(&sorted).await;
    for order in &board.orders {
        assert!(
            order["preparing_at"].is_string() && order["ready_at"].is_string(),
            "{order}"
        );
    }
    // Each step once; the orders the two workers held when the server died
    // were claimed again after the restart, one more record each.
    let again: u64 = board
        .orders
        .iter()
        .map(|o| o["deliveries"].as_u64().expect("deliveries") - 1)
        .sum();
    assert!(again <= 2, "only what the two workers held: {again}");
    assert_eq!(
        board.version,
        3 * 20 + again,
        "each step recorded once, and each claim again once, across the crash"
    );
    let code = code_for(&placed, 1);
    assert_eq!(server.take(1, code).await.status(), 200);
    assert_eq!(
        server.place("after the restart").await,
        21,
        "the count goes on, no reuse, no gap"
    );
    assert!(
        server
            .stderr()
            .contains("unfinished orders go back to the kitchen"),
        "{}",
        server.stderr()
    );
    let store = read_at(&at);
    check_shape(&at, &store);
    check_forward_in_store(&store);
}

crate::on_both_backends!(
    kill_9_mid_run_loses_no_order_and_keeps_counting,
    kill_9_mid_run
);

/// Four servers on one store (on the files one directory; on the database
/// one data directory each, as on machines of their own), started together,
/// 2,000 orders from 32 customers at once.
async fn four_processes_share_one_counter(backend: Backend) {
    const ORDERS: usize = 2000;
    // Servers that share a store share their line in RabbitMQ: a server
    // without a broker keeps its orders in its own memory, alone.
    let Some(rabbit) = Rabbit::vhost(&format!("four-processes-{}", backend.tag())).await else {
        return;
    };
    let dirs = backend.data_dirs(4);
    // Started together on an empty store: they race to create it.
    let args = backend.with(&[
        "--prep-time",
        "0",
        "--workers",
        "4",
        "--broker",
        &rabbit.url,
    ]);
    let servers =
        futures_util::future::join_all((0..4).map(|i| ServerProcess::spawn(dirs.of(i), &args)))
            .await;
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let tickets = place_orders(&bases, ORDERS, 32).await;
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=ORDERS as u32).collect::<Vec<_>>(),
        "tickets are exactly 1..={ORDERS}"
    );

    // The workers of every process prepare them; every board follows all.
    let mut versions = Vec::new();
    for server in &servers {
        versions.push(server.wait_all_ready(&sorted).await.version);
    }
    for (i, ticket) in [1, ORDERS as u32 / 2, ORDERS as u32]
        .into_iter()
        .enumerate()
    {
        assert_eq!(servers[i].order_json(ticket).await["status"], "READY");
    }
    let at = backend.store_at(dirs.of(0));
    let store = check_all_at(&at, &[]);
    if let StoreAt::Files(dir) = &at {
        check_store_files(dir);
    }
    assert_eq!(store.counter, ORDERS as u32);
    let count = |status: Status| {
        store
            .history
            .iter()
            .chain(&store.log)
            .filter(|l| l.order.status == status)
            .count()
    };
    assert_eq!(
        (count(Status::Preparing), count(Status::Ready)),
        (ORDERS, ORDERS),
        "each order was claimed and made ready exactly once"
    );
    // TAKEN once each, and again where the broker's confirm was recorded
    // before the claim.
    assert!(
        (ORDERS..=2 * ORDERS).contains(&count(Status::Taken)),
        "{}",
        count(Status::Taken)
    );
    for version in versions {
        assert!(
            version <= store.version(),
            "a board never runs ahead of the store"
        );
    }
    rabbit.wait_drained("orders").await;
}

crate::on_both_backends!(
    four_processes_share_one_counter_and_one_store,
    four_processes_share_one_counter
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_store_loads() {
    // The control for the corruption cases below: unbroken, the same files load.
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    let board = server.board().await;
    assert_eq!(board.version, 9);
    assert!(board.all_ready(&[1, 2, 3]));
    assert_eq!(server.place("one more").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_or_counter_stops_the_program_and_is_left_alone() {
    let cases: &[(&str, Damage, &str, &[&str])] = &[
        (
            "garbage snapshot",
            |d| std::fs::write(d.join("orders.json"), b"\x00\xffthis is not JSON at all").unwrap(),
            "orders.json",
            &["not a valid order snapshot"],
        ),
        (
            "truncated snapshot",
            |d| {
                let bytes = std::fs::read(d.join("orders.json")).unwrap();
                std::fs::write(d.join("orders.json"), &bytes[..bytes.len() / 2]).unwrap();
            },
            "orders.json",
            &["truncated or damaged"],
        ),
        (
            "empty snapshot",
            |d| std::fs::write(d.join("orders.json"), b"").unwrap(),
            "orders.json",
            &["empty"],
        ),
        (
            "unknown status",
            |d| {
                let order = r#"{"order":1,"status":"COOKING","content":"x","taken_at":"2026-01-01T12:00:00.000Z"}"#;
                std::fs::write(
                    d.join("orders.json"),
                    format!(r#"{{"version":1,"orders":[{order}]}}"#),
                )
                .unwrap();
            },
            "orders.json",
            &["COOKING"],
        ),
        (
            "an order twice",
            |d| {
                let text = std::fs::read_to_string(d.join("orders.json")).unwrap();
                std::fs::write(
                    d.join("orders.json"),
                    text.replace(r#""order":2,"#, r#""order":1,"#),
                )
                .unwrap();
            },
            "orders.json",
            &["order 1 twice"],
        ),
        (
            "a collected order in the snapshot",
            |d| {
                let text = std::fs::read_to_string(d.join("orders.json")).unwrap();
                let text = text.replacen(r#""status":"READY""#, r#""status":"COLLECTED""#, 1);
                std::fs::write(d.join("orders.json"), text).unwrap();
            },
            "orders.json",
            &["COLLECTED"],
        ),
        (
            "a log that skips changes",
            |d| std::fs::write(d.join("orders.log"), "{\"base\":12}\n").unwrap(),
            "orders.log",
            &["missing"],
        ),
        (
            "a log line that breaks the rules",
            |d| {
                let line = r#"{"version":10,"order":{"order":1,"status":"PREPARING","content":"burger 1","taken_at":"2026-01-01T12:00:00.000Z","preparing_at":"2026-01-01T12:00:01.000Z"}}"#;
                std::fs::write(d.join("orders.log"), format!("{{\"base\":9}}\n{line}\n")).unwrap();
            },
            "orders.log",
            &["line 2", "READY", "PREPARING"],
        ),
        (
            "a garbled log line",
            |d| {
                std::fs::write(
                    d.join("orders.log"),
                    "{\"base\":9}\n{\"version\":10,\"ord\n{}\n",
                )
                .unwrap()
            },
            "orders.log",
            &["line 2"],
        ),
        (
            "the snapshot and the log gone, the history kept",
            |d| {
                let line = r#"{"version":5,"order":{"order":1,"status":"COLLECTED","content":"burger 1","taken_at":"2026-01-01T12:00:00.000Z","closed_at":"2026-01-01T12:00:03.000Z"}}"#;
                std::fs::write(d.join("history.jsonl"), format!("{line}\n")).unwrap();
                std::fs::remove_file(d.join("orders.json")).unwrap();
                std::fs::remove_file(d.join("orders.log")).unwrap();
            },
            "orders.json",
            &["missing", "history.jsonl"],
        ),
        (
            "a 3-byte counter",
            |d| std::fs::write(d.join("counter"), [0, 0, 3]).unwrap(),
            "counter",
            &["4 bytes", "3 bytes"],
        ),
        (
            "a missing counter",
            |d| std::fs::remove_file(d.join("counter")).unwrap(),
            "counter",
            &["missing"],
        ),
    ];
    each_damage_is_refused(cases).await;
}

/// A counter behind the store is raised to the store's highest ticket at
/// start-up, never refused nor lowered: the counter's fsync runs in parallel
/// with the store's, so a crash of the machine may keep the store's last
/// write and lose the counter's (no customer was answered for that number).
/// Counting on from the store never hands out a number it holds. This used
/// to be refused, when the counter was fsynced before the store was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_behind_the_store_is_raised_to_its_highest_ticket() {
    let behind: &[(&str, Damage, u32)] = &[
        (
            "behind the orders in the snapshot",
            |d| std::fs::write(d.join("counter"), 2u32.to_be_bytes()).unwrap(),
            3,
        ),
        (
            "behind an order only in the log",
            |d| {
                let log = format!(
                    "{{\"base\":9}}\n{}\n",
                    log_line(10, stored_order(4, "TAKEN"))
                );
                std::fs::write(d.join("orders.log"), log).unwrap();
            },
            4,
        ),
    ];
    for (name, damage, highest) in behind {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_store(d);
        damage(d);
        let server = ServerProcess::spawn(d, &["--prep-time", "0"]).await;
        assert_eq!(read_counter(d), *highest, "{name}: raised before any order");
        assert_eq!(server.place("after the raise").await, highest + 1, "{name}");
        assert_eq!(read_counter(d), highest + 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_boards_connected_exits_promptly_and_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    let mut reading = server.updates().await;
    // Never read: with a few hundred orders its socket fills up and the
    // server has a write to it pending when the signal comes.
    let _stalled = server.updates().await;
    reading.next_event().await;
    let reading = tokio::spawn(async move { reading.wait_end(crate::support::DEADLINE).await });
    let tickets = place_orders(&[&server.base], 400, 32).await;
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    server.wait_all_ready(&sorted).await;

    let asked = std::time::Instant::now();
    server.terminate();
    let status = server
        .wait(Duration::from_secs(10))
        .await
        .expect("it exits within 10 s of SIGTERM");
    eprintln!("exited {:?} after SIGTERM", asked.elapsed());
    assert_eq!(
        status.code(),
        Some(0),
        "a SIGTERM is a clean stop; stderr:\n{}",
        server.stderr()
    );
    assert_eq!(
        reading.await.unwrap(),
        Some(true),
        "the reading board's stream ends cleanly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_back_the_order_being_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        ServerProcess::spawn(dir.path(), &["--prep-time", "60s", "--workers", "1"]).await;
    let first = server.place("burger").await;
    let second = server.place("fries").await;
    crate::support::wait_until(crate::support::DEADLINE, "order 1 is PREPARING", || async {
        server.order_json(first).await["status"] == "PREPARING"
    })
    .await;
    server.terminate();
    let status = server
        .wait(Duration::from_secs(10))
        .await
        .expect("it exits within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", server.stderr());
    assert!(
        server.stderr().contains("goes back to the front"),
        "{}",
        server.stderr()
    );

    // Not lost: cooked after a restart.
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    server.wait_all_ready(&[first, second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_compaction_leaves_a_store_that_loads() {
    // Compaction appends the collected orders to history.jsonl, then replaces
    // orders.json, then orders.log. A crash between the first two steps leaves
    // the old snapshot and log, plus history lines for changes the log holds too.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let steps = [
        (1, "TAKEN"),
        (2, "TAKEN"),
        (1, "PREPARING"),
        (1, "READY"),
        (1, "COLLECTED"),
        (2, "PREPARING"),
        (2, "READY"),
    ];
    let lines: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, (n, status))| log_line(i as u64 + 1, stored_order(*n, status)))
        .collect();
    std::fs::write(d.join("orders.json"), "{\"version\":0,\"orders\":[\n]}\n").unwrap();
    std::fs::write(
        d.join("orders.log"),
        format!("{{\"base\":0}}\n{}\n", lines.join("\n")),
    )
    .unwrap();
    std::fs::write(d.join("history.jsonl"), format!("{}\n", lines[4])).unwrap();
    std::fs::write(d.join("counter"), 2u32.to_be_bytes()).unwrap();

    let server = ServerProcess::spawn(d, &["--prep-time", "0"]).await;
    let board = server.board().await;
    assert_eq!(board.version, 7);
    assert!(board.all_ready(&[2]), "{:?}", board.statuses());
    assert_eq!(
        server.order_json(1).await,
        json!({"order": 1, "status": "COLLECTED"})
    );
    // Collected: whatever the code, there is nothing left to hand over.
    let again = server.take(1, "000000").await;
    crate::support::expect_error(again, 410, "already_collected").await;
    assert_eq!(server.place("after the crash").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_moves_collected_orders_to_history_and_every_process_follows() {
    // A log just short of the 20,000 changes that make it worth compacting:
    // 4,999 orders taken, prepared, made ready and collected.
    const OLD: u32 = 4999;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut log = String::from("{\"base\":0}\n");
    let mut version = 0;
    for n in 1..=OLD {
        for status in ["TAKEN", "PREPARING", "READY", "COLLECTED"] {
            version += 1;
            log.push_str(&log_line(version, stored_order(n, status)));
            log.push('\n');
        }
    }
    std::fs::write(d.join("orders.json"), "{\"version\":0,\"orders\":[\n]}\n").unwrap();
    std::fs::write(d.join("orders.log"), log).unwrap();
    std::fs::write(d.join("counter"), OLD.to_be_bytes()).unwrap();

    // Two servers on one data directory share their line in RabbitMQ.
    let Some(rabbit) = Rabbit::vhost("compaction-follows").await else {
        return;
    };
    let args = ["--prep-time", "0", "--broker", &rabbit.url];
    let mut a = ServerProcess::spawn(d, &args).await;
    let b = ServerProcess::spawn(d, &args).await;
    let mut board = b.updates().await;
    assert_eq!(board.next_event().await.version(), version);

    // Process A's next changes cross the line and it compacts; B follows.
    let placed = [a.place_coded("fries").await, a.place_coded("cola").await];
    let new = [placed[0].ticket, placed[1].ticket];
    assert_eq!(new, [OLD + 1, OLD + 2]);
    // Taken, claimed, made ready; and marked queued where the broker's
    // confirm was recorded before the claim.
    let final_version = a.wait_all_ready(&new).await.version;
    assert!(
        (version + 6..=version + 8).contains(&final_version),
        "{final_version}"
    );
    crate::support::wait_until(crate::support::DEADLINE, "B follows", || async {
        b.board().await.version == final_version
    })
    .await;
    let history =
        std::fs::read_to_string(d.join("history.jsonl")).expect("compaction wrote the history");
    let left: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        left.len(),
        OLD as usize,
        "every collected order is in the history, once"
    );
    assert!(left.iter().all(|r| r["order"]["status"] == "COLLECTED"));
    let (snapshot, header, records) = read_store(d);
    assert!(
        snapshot["version"].as_u64().unwrap() > version,
        "a new snapshot: {}",
        snapshot["version"]
    );
    assert_eq!(header["base"], snapshot["version"]);
    assert_eq!(
        snapshot["version"].as_u64().unwrap() + records.len() as u64,
        final_version
    );
    assert!(
        records.len() < 10,
        "the log starts afresh after compaction ({} changes)",
        records.len()
    );
    assert!(
        snapshot["orders"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["order"].as_u64().unwrap() > OLD as u64)
    );

    // B writes to the new log; A sees it.
    let taken = b.take(new[0], &placed[0].code).await;
    assert_eq!(taken.status(), 200);
    // Taken before there were codes, and collected: 410 whatever the code.
    let old = b.take(1, "000000").await;
    crate::support::expect_error(old, 410, "already_collected").await;
    crate::support::wait_until(crate::support::DEADLINE, "A sees B's change", || async {
        a.board()
            .await
            .statuses()
            .keys()
            .copied()
            .collect::<Vec<_>>()
            == [new[1]]
    })
    .await;

    // B's board got every change, in order.
    let mut versions = Vec::new();
    while versions.last() != Some(&(final_version + 1)) {
        let event = board.next_event().await;
        assert!(
            event.change().is_some(),
            "a change, not a resync: {}",
            event.data
        );
        versions.push(event.version());
    }
    // In order, with no change of status missed: the only versions a board
    // gets no event for are the broker's confirms recorded before the
    // claim (an order restated TAKEN and queued), at most one per order.
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    let missed = (version + 1..=final_version + 1)
        .filter(|v| !versions.contains(v))
        .count();
    assert!(
        missed <= new.len(),
        "{missed} versions missed, more than the {} queued marks: {versions:?}",
        new.len()
    );

    // And the compacted files load after a crash.
    a.kill9().await;
    let a = ServerProcess::spawn(d, &args).await;
    assert_eq!(
        a.order_json(1).await,
        json!({"order": 1, "status": "COLLECTED"})
    );
    assert_eq!(a.order_json(new[0]).await["status"], "COLLECTED");
    assert_eq!(a.board().await.version, final_version + 1);
    assert_eq!(a.place("after").await, OLD + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_cut_short_by_a_crash_is_dropped() {
    // A crash in the middle of an append leaves half a line, never
    // acknowledged: it is cut off, with a warning, and the rest loads.
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path());
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("orders.log"))
        .unwrap();
    std::io::Write::write_all(&mut log, br#"{"version":10,"order":{"order":4,"sta"#).unwrap();
    drop(log);
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    assert!(server.board().await.all_ready(&[1, 2, 3]));
    assert!(server.stderr().contains("cut short"), "{}", server.stderr());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("orders.log")).unwrap(),
        "{\"base\":9}\n"
    );
    assert_eq!(server.place("next").await, 4);
    server.wait_all_ready(&[1, 2, 3, 4]).await;
    check_store_files(dir.path());
}

async fn an_order_is_collected_once_whichever_process(backend: Backend) {
    let Some(rabbit) = Rabbit::vhost(&format!("collected-once-{}", backend.tag())).await else {
        return;
    };
    let dirs = backend.data_dirs(2);
    let args = backend.with(&["--prep-time", "0", "--broker", &rabbit.url]);
    let a = ServerProcess::spawn(dirs.of(0), &args).await;
    let b = ServerProcess::spawn(dirs.of(1), &args).await;
    let placed = placed_orders(&[&a.base, &b.base], 20, 20).await;
    let tickets: Vec<u32> = placed.iter().map(|p| p.ticket).collect();
    let mut sorted = tickets.clone();
    sorted.sort_unstable();
    a.wait_all_ready(&sorted).await;
    b.wait_all_ready(&sorted).await;
    // Two customers per ticket, one at each process, at the same time.
    let client = crate::support::http_client();
    let attempts = sorted
        .iter()
        .flat_map(|t| [(t, &a.base), (t, &b.base)])
        .map(|(t, base)| {
            let code = code_for(&placed, *t);
            let request = client
                .post(format!("{base}/take?order={t}&code={code}"))
                .send();
            async move { (*t, request.await.unwrap().status().as_u16()) }
        });
    let answers = futures_util::future::join_all(attempts).await;
    for ticket in &sorted {
        let mut statuses: Vec<u16> = answers
            .iter()
            .filter(|(t, _)| t == ticket)
            .map(|(_, s)| *s)
            .collect();
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 410],
            "order {ticket} is handed over exactly once"
        );
    }
    let at = backend.store_at(dirs.of(0));
    let store = check_all_at(&at, &[]);
    if let StoreAt::Files(dir) = &at {
        check_store_files(dir);
    }
    let collected = store
        .log
        .iter()
        .filter(|l| l.order.status == Status::Collected)
        .count();
    assert_eq!(collected, 20, "each order collected once, in one change");
}

crate::on_both_backends!(
    an_order_is_collected_once_whichever_processes_customers_ask,
    an_order_is_collected_once_whichever_process
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_follows_the_orders_not_the_ticket_numbers() {
    // A counter can start anywhere (an operator may number from 4,000,000,000):
    // collecting the highest ticket must not cost memory for every number below.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("counter"), (u32::MAX - 2).to_be_bytes()).unwrap();
    let server = ServerProcess::spawn(dir.path(), &["--prep-time", "0"]).await;
    let placed = [
        server.place_coded("one").await,
        server.place_coded("two").await,
    ];
    let tickets = [placed[0].ticket, placed[1].ticket];
    assert_eq!(tickets, [u32::MAX - 1, u32::MAX]);
    server.wait_all_ready(&tickets).await;
    for p in &placed {
        assert_eq!(server.take(p.ticket, &p.code).await.status(), 200);
    }
    assert_eq!(server.order_json(u32::MAX).await["status"], "COLLECTED");
    let peak = crate::support::proc_status_bytes(server.pid, "VmHWM");
    assert!(
        peak < 200 << 20,
        "two orders took {} MiB at the peak",
        peak >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_start_is_a_clean_stop_too() {
    // The signal handlers are in place before `listening on` is printed, so a
    // SIGTERM at once is a clean stop (exit 0), never the default kill (143).
    for _ in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fastfood"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--prep-time",
                "0",
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = tokio::io::AsyncBufReadExt::lines(stdout);
        let line = tokio::time::timeout(crate::support::DEADLINE, lines.next_line()).await;
        assert!(matches!(line, Ok(Ok(Some(l))) if l.starts_with("listening on")));
        let pid = child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0), "SIGTERM at start-up: {status}");
    }
}
