//! A frozen worker (`kill -STOP`) loses its order within the AMQP heartbeat
//! (`--heartbeat`), not RabbitMQ's default of a minute or two; `/kitchen`
//! counts the order in flight while the frozen worker still holds it; and
//! after `kill -CONT` the frozen worker's late finish changes nothing: the
//! order is READY once, never backward. Against the real RabbitMQ.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::rabbit::Rabbit;
use crate::support::{DEADLINE, ServerProcess, WorkerProcess, read_store, wait_for, wait_until};

/// The heartbeat the frozen worker asks for.
const HEARTBEAT: Duration = Duration::from_secs(5);

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// The lane of `/kitchen/now` named `name`.
fn lane<'k>(kitchen: &'k Value, name: &str) -> Option<&'k Value> {
    kitchen["workers"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_its_order_within_the_heartbeat() {
    let Some(rabbit) = Rabbit::vhost("heartbeat").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::spawn(dir.path(), &["--workers", "0", "--broker", &rabbit.url]).await;
    let frozen = WorkerProcess::spawn(
        dir.path(),
        &rabbit.url,
        &["--prep-time", "15s", "--heartbeat", "5s"],
        &[],
    )
    .await;
    let frozen_name = format!("worker 1 (pid {})", frozen.pid);
    let ticket = server.place("a burger").await;
    wait_until(DEADLINE, "the order to be PREPARING", || async {
        server.order_json(ticket).await["worker"] == frozen_name.as_str()
    })
    .await;
    // Its crew has reported the order (a report goes every 200 ms at most).
    wait_until(
        DEADLINE,
        "the kitchen to show the order in its lane",
        || async {
            let k = server.get_json("/kitchen/now").await;
            lane(&k, &frozen_name).is_some_and(|l| l["order"] == ticket)
        },
    )
    .await;
    let other = WorkerProcess::spawn(dir.path(), &rabbit.url, &["--prep-time", "1s"], &[]).await;
    let other_name = format!("worker 1 (pid {})", other.pid);

    signal(frozen.pid, "-STOP");
    let stopped = Instant::now();

    // Silent for 3 s, its lane is gone; RabbitMQ still holds its order
    // (the connection is open), so it counts in flight, and is not next.
    let kitchen = wait_for(DEADLINE, "the frozen lane to be gone", || async {
        let k = server.get_json("/kitchen/now").await;
        (lane(&k, &frozen_name)?["state"] == "gone").then_some(k)
    })
    .await;
    assert!(
        stopped.elapsed() < HEARTBEAT,
        "the lane went before RabbitMQ could act"
    );
    let order = server.order_json(ticket).await;
    assert_eq!(order["deliveries"], 1, "still the frozen worker's: {order}");
    assert_eq!(kitchen["queue"]["in_flight"], 1, "{kitchen}");
    assert!(
        !kitchen["queue"]["next"]
            .as_array()
            .unwrap()
            .contains(&Value::from(ticket)),
        "{kitchen}"
    );

    // RabbitMQ misses its heartbeats, closes its connection and hands the
    // order to the other worker.
    wait_until(DEADLINE, "the other worker to take the order", || async {
        server.order_json(ticket).await["worker"] == other_name.as_str()
    })
    .await;
    let moved = stopped.elapsed();
    eprintln!("the order moved {moved:?} after kill -STOP (heartbeat {HEARTBEAT:?})");
    assert!(
        moved <= 3 * HEARTBEAT + Duration::from_secs(5),
        "it took {moved:?}, beyond about two heartbeats of {HEARTBEAT:?}"
    );
    server.wait_all_ready(&[ticket]).await;

    // Woken, the frozen worker finishes its sleep, finds the order READY
    // already, and changes nothing; its acknowledgement goes nowhere (its
    // connection is gone). It reconnects and cooks again.
    signal(frozen.pid, "-CONT");
    wait_until(
        DEADLINE,
        "the woken worker to put its order down",
        || async {
            let k = server.get_json("/kitchen/now").await;
            lane(&k, &frozen_name).is_some_and(|l| l["state"] == "idle" && l["order"].is_null())
        },
    )
    .await;
    let (_, _, records) = read_store(dir.path());
    let mine: Vec<&Value> = records
        .iter()
        .filter(|r| r["order"]["order"] == ticket)
        .map(|r| &r["order"])
        .collect();
    let readies: Vec<&&Value> = mine.iter().filter(|o| o["status"] == "READY").collect();
    assert_eq!(readies.len(), 1, "READY once: {mine:?}");
    assert_eq!(readies[0]["worker"], other_name.as_str(), "{mine:?}");
    assert_eq!(readies[0]["deliveries"], 2, "{mine:?}");
    assert_eq!(
        mine.last().unwrap()["status"],
        "READY",
        "nothing after READY: {mine:?}"
    );
    rabbit.wait_drained("orders").await;
    let kitchen = server.get_json("/kitchen/now").await;
    assert_eq!(kitchen["queue"]["in_flight"], 0, "{kitchen}");
}
