//! kill -9 at each step of `/order` and of a compaction: the real
//! binary with `FASTFOOD_CRASH_AT=<point>` aborts there, as abruptly as
//! `kill -9`; then it is started again on the same data directory, and the
//! invariants (`support::invariants`) must hold: U, L, S, M, F.
//! The broker cases skip without RabbitMQ unless `FASTFOOD_REQUIRE_BROKER=1`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::invariants::{
    Accepted, Attempt, BoardWatch, ORDER_UNAVAILABLE, accept, check_files, check_forward_in_store,
    check_shape, check_unique, order_once, read_at, read_files, wait_settled, wait_settled_at,
};
use crate::support::pg::Backend;
use crate::support::rabbit::Rabbit;
use crate::support::{DEADLINE, ServerProcess, http_client, wait_until};
use fastfood::order::Status;

/// How long an order may stay TAKEN or PREPARING after the restart: with a
/// broker, an order stored but never confirmed is queued again by the sweep
/// after 9 s (checked every 5 s); far less without.
const SETTLE: Duration = Duration::from_secs(60);

/// One crash in `/order` at `point`, with the in-process queue (`rabbit` is
/// `None`) or RabbitMQ (`serve --broker`, its workers in the same process),
/// on the files or the database.
async fn crash_in_order(point: &str, rabbit: Option<&Rabbit>, backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let at = backend.store_at(d);
    let mut args = vec!["--prep-time", "50ms"];
    if let Some(rabbit) = rabbit {
        args.extend(["--broker", &rabbit.url]);
    }
    args.extend(backend.args());
    let client = http_client();
    let base = Arc::new(Mutex::new(String::new()));
    let watch = BoardWatch::start(base.clone());

    // Three orders before, and a kill -9 while they are being prepared.
    let mut server = ServerProcess::spawn(d, &args).await;
    *base.lock().unwrap() = server.base.clone();
    watch.wait_watching(&server.base).await;
    let mut accepted = Vec::new();
    for i in 1..=3 {
        accepted.push(accept(&client, &server.base, &format!("before {i}")).await);
    }
    server.kill9().await;

    // The server that crashes at `point` during the next order.
    let mut doomed = ServerProcess::spawn_with_env(d, &args, &[("FASTFOOD_CRASH_AT", point)]).await;
    *base.lock().unwrap() = doomed.base.clone();
    watch.wait_watching(&doomed.base).await;
    let attempt = order_once(&client, &doomed.base, "doomed", ORDER_UNAVAILABLE).await;
    assert!(
        matches!(attempt, Attempt::NoAnswer(_)),
        "{point}: the crashed request gets no answer, never a 201: {attempt:?}"
    );
    doomed.wait_crashed_at(point).await;

    // What the crash left: a whole store, the counter past the doomed order.
    let files = read_at(&at);
    check_shape(&at, &files);
    check_forward_in_store(&files);
    check_unique(&files, &accepted);
    assert_eq!(files.counter, 4, "{point}: the doomed order was numbered");
    let stored = files.fates().get(&4).map(|f| f.status);
    match point {
        "after-ticket" => assert_eq!(stored, None, "{point}: numbered, never stored"),
        _ => assert!(
            matches!(stored, Some(Status::Taken | Status::Preparing)),
            "{point}: the doomed order is stored: {stored:?}"
        ),
    }

    // Restarted: the count goes on, and everything settles.
    let server = ServerProcess::spawn(d, &args).await;
    *base.lock().unwrap() = server.base.clone();
    watch.wait_watching(&server.base).await;
    let after = accept(&client, &server.base, "after the crash").await;
    assert_eq!(
        after.ticket, 5,
        "{point}: no number reused, no gap but the doomed one"
    );
    accepted.push(after);
    let files = wait_settled_at(&at, &accepted, SETTLE).await;
    let doomed_fate = files.fates().get(&4).map(|f| f.status);
    match point {
        "after-ticket" => {
            assert_eq!(doomed_fate, None, "{point}: a gap, nothing more");
            let response = client.get(server.url("/orders/4")).send().await.unwrap();
            assert_eq!(response.status(), 404);
        }
        // Stored: recovered and prepared, although its customer got no 201.
        _ => {
            assert_eq!(doomed_fate, Some(Status::Ready), "{point}");
            assert_eq!(server.order_json(4).await["status"], "READY");
        }
    }
    let mut tickets: Vec<u32> = accepted.iter().map(|a| a.ticket).collect();
    if point != "after-ticket" {
        tickets.push(4);
    }
    tickets.sort_unstable();
    server.wait_all_ready(&tickets).await;
    if let Some(rabbit) = rabbit {
        rabbit.wait_drained("orders").await;
    }
    watch.finish().await;
}

/// For each point, `MEMORY::files`, `MEMORY::postgres`, `BROKER::files`
/// and `BROKER::postgres`.
macro_rules! order_crash_tests {
    ($($memory:ident, $broker:ident, $point:literal;)*) => {$(
        mod $memory {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn files() {
                crash_in_order($point, None, Backend::Files).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(backend) = Backend::postgres(stringify!($memory)) else {
                    return;
                };
                crash_in_order($point, None, backend).await;
            }
        }

        mod $broker {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn files() {
                let Some(rabbit) = Rabbit::vhost(concat!("crash-", $point)).await else {
                    return;
                };
                crash_in_order($point, Some(&rabbit), Backend::Files).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(rabbit) = Rabbit::vhost(concat!("crash-pg-", $point)).await else {
                    return;
                };
                let Some(backend) = Backend::postgres(stringify!($broker)) else {
                    return;
                };
                crash_in_order($point, Some(&rabbit), backend).await;
            }
        }
    )*};
}

order_crash_tests! {
    order_crash_after_ticket, order_crash_after_ticket_broker, "after-ticket";
    order_crash_after_store, order_crash_after_store_broker, "after-store";
    order_crash_after_queue, order_crash_after_queue_broker, "after-queue";
    order_crash_before_reply, order_crash_before_reply_broker, "before-reply";
}

/// Compact after this many changes (the `FASTFOOD_COMPACT_AFTER` test knob).
const COMPACT_AFTER: &str = "12";

/// Orders, prepares and collects orders at `server` until a request gets no
/// answer (the server crashed) or `rounds` are done. Leaves the first order
/// READY, uncollected, so the snapshot holds something. Returns the `201`s
/// and the orders collected (`200`).
async fn rush(server: &ServerProcess, tag: &str, rounds: usize) -> (Vec<Accepted>, Vec<u32>) {
    let client = http_client();
    let (mut accepted, mut collected) = (Vec::new(), Vec::new());
    'rounds: for i in 0..rounds {
        let content = format!("{tag} {i}");
        let order = match order_once(&client, &server.base, &content, &[]).await {
            Attempt::Accepted(a) => a,
            Attempt::NoAnswer(_) => break,
            Attempt::Refused(status, code) => panic!("{content}: {status} {code}"),
        };
        accepted.push(order.clone());
        let url = server.url(&format!("/orders/{}", order.ticket));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let Ok(response) = client.get(&url).send().await else {
                break 'rounds;
            };
            let Ok(body) = response.json::<serde_json::Value>().await else {
                break 'rounds;
            };
            if body["status"] == "READY" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{content}: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if i == 0 {
            continue;
        }
        let take = server.url(&format!("/take?order={}&code={}", order.ticket, order.code));
        match client.post(&take).send().await {
            Ok(response) if response.status() == 200 => collected.push(order.ticket),
            Ok(response) => panic!("{take}: {}", response.status()),
            Err(_) => break,
        }
    }
    (accepted, collected)
}

/// One crash in a compaction at `point`, on a store that was compacted
/// before, with orders live and collected.
async fn crash_in_compaction(point: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = ["--prep-time", "0"];
    let knob = ("FASTFOOD_COMPACT_AFTER", COMPACT_AFTER);

    // A first run compacts once at least, cleanly.
    let mut server = ServerProcess::spawn_with_env(d, &args, &[knob]).await;
    let (mut accepted, mut collected) = rush(&server, "first", 6).await;
    assert_eq!(
        accepted.len(),
        6,
        "{point}: the first run has no crash point"
    );
    assert!(
        read_files(d).snapshot_version > 0,
        "{point}: the first run compacted"
    );
    server.kill9().await;

    // The second crashes at `point` in its first compaction.
    let mut doomed =
        ServerProcess::spawn_with_env(d, &args, &[knob, ("FASTFOOD_CRASH_AT", point)]).await;
    let before = read_files(d).snapshot_version;
    let (more, taken) = rush(&doomed, "second", 40).await;
    accepted.extend(more);
    collected.extend(taken);
    doomed.wait_crashed_at(point).await;

    // The files it left: the old state or the new, each whole, where the
    // crash point says.
    let files = read_files(d);
    check_files(&files);
    check_forward_in_store(&files);
    check_unique(&files, &accepted);
    let temp = |name: &str| d.join(format!(".{name}.tmp")).exists();
    let replaced = files.snapshot_version > before;
    match point {
        "history-written" => assert!(!replaced && !temp("orders.json") && !temp("orders.log")),
        "snapshot-written" | "snapshot-synced" => assert!(!replaced && temp("orders.json")),
        "snapshot-renamed" => assert!(replaced && !temp("orders.json") && !temp("orders.log")),
        "log-written" | "log-synced" => assert!(replaced && temp("orders.log")),
        "log-renamed" => assert!(replaced && files.log_base == files.snapshot_version),
        other => panic!("no expectations for {other}"),
    }

    // Restarted (still compacting often): nothing lost, nothing twice, and
    // the next compactions go through.
    let server = ServerProcess::spawn_with_env(d, &args, &[knob]).await;
    let files = wait_settled(d, &accepted, SETTLE).await;
    for ticket in &collected {
        assert_eq!(
            files.fates()[ticket].status,
            Status::Collected,
            "{point}: {ticket} stays collected"
        );
        assert_eq!(server.order_json(*ticket).await["status"], "COLLECTED");
    }
    let version = files.version();
    let (more, _) = rush(&server, "third", 8).await;
    assert_eq!(
        more.len(),
        8,
        "{point}: the restarted server has no crash point"
    );
    accepted.extend(more);
    wait_until(DEADLINE, "a compaction after the restart", || async {
        read_files(d).snapshot_version > version
    })
    .await;
    let files = wait_settled(d, &accepted, SETTLE).await;
    assert!(
        !files.history.is_empty(),
        "{point}: collected orders went to the history"
    );
    // Every order that left is in the history or still in the log, once.
    let left: Vec<u32> = files
        .fates()
        .iter()
        .filter(|(_, f)| f.status == Status::Collected)
        .map(|(t, _)| *t)
        .collect();
    for ticket in &collected {
        assert!(left.contains(ticket), "{point}: {ticket} is collected");
    }
    check_no_stray_temp(d);
}

/// Once a compaction has gone through, no temp file is left behind.
fn check_no_stray_temp(d: &Path) {
    for name in ["orders.json", "orders.log"] {
        assert!(
            !d.join(format!(".{name}.tmp")).exists(),
            "a later compaction replaced the temp {name}"
        );
    }
}

macro_rules! compaction_crash_tests {
    ($($name:ident, $point:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            crash_in_compaction($point).await;
        }
    )*};
}

compaction_crash_tests! {
    compaction_crash_history_written, "history-written";
    compaction_crash_snapshot_written, "snapshot-written";
    compaction_crash_snapshot_synced, "snapshot-synced";
    compaction_crash_snapshot_renamed, "snapshot-renamed";
    compaction_crash_log_written, "log-written";
    compaction_crash_log_synced, "log-synced";
    compaction_crash_log_renamed, "log-renamed";
}
